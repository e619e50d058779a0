"""Trio as a guest of Qt's loop (`trio_chat.gui.guest`): Qt's signals read as a Trio channel."""

from __future__ import annotations

import trio
import trio.testing
from PySide6.QtCore import QObject, Signal
from pytestqt.qtbot import QtBot

from tests.gui_support import gui_test
from trio_chat.gui import guest


class _Emitter(QObject):
    poked = Signal(int)


@gui_test
async def test_a_signal_emitted_while_its_listener_stops_is_dropped(qtbot: QtBot) -> None:
    # A listener leaving `signal_channel` closed its channel, then waited a checkpoint
    # before disconnecting: another task emitting meanwhile raised in Qt's loop (the
    # window's "closed" into the watch over an ended room, as a new session began).
    emitter = _Emitter()
    heard: list[tuple[object, ...]] = []

    async def listen_briefly() -> None:
        async with guest.signal_channel({"poke": emitter.poked}) as emissions:
            heard.append((await emissions.receive()).args)

    with trio.fail_after(10):
        for round_ in range(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(listen_briefly)
                await trio.testing.wait_all_tasks_blocked()
                for _ in range(4):  # one heard; the rest as it leaves, or after
                    emitter.poked.emit(round_)
                    await trio.lowlevel.checkpoint()
    assert heard == [(round_,) for round_ in range(20)]


def test_while_trio_runs_closing_the_last_window_leaves_qt_running(qtbot: QtBot) -> None:
    """Closing the last window does not end Qt's loop under Trio (the Trio function decides
    when the program ends); once it has returned, with its result, Qt's setting is back."""
    application = guest.application()
    application.setQuitOnLastWindowClosed(True)

    async def quits_on_close() -> bool:
        return application.quitOnLastWindowClosed()

    assert guest.run(quits_on_close) is False
    assert application.quitOnLastWindowClosed()
