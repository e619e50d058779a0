"""Trio as a guest in Qt's event loop: one thread, no locks.

`run(async_fn, *args)` runs a Trio function while Qt's loop runs: Trio waits for I/O in a
helper thread and hands every step back to Qt's thread as an event
(`trio.lowlevel.start_guest_run`), so Trio code and widgets touch each other freely. It
takes `clock` and `instruments` as `trio.run` does, so pytest-trio can run tests with it:
`@pytest.mark.trio(run=guest.run)`.

`signal_channel()` turns Qt signals into a Trio channel of `Emission`s.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar, TypeVarTuple

import outcome
import trio
from PySide6.QtCore import QEvent, QObject, SignalInstance
from PySide6.QtWidgets import QApplication

T = TypeVar("T")
Args = TypeVarTuple("Args")

_CALL = QEvent.Type(QEvent.registerEventType())


class _Call(QEvent):
    """A step of Trio's to run in Qt's thread."""

    def __init__(self, step: Callable[[], object]) -> None:
        super().__init__(_CALL)
        self.step = step


class _Caller(QObject):
    def event(self, event: QEvent) -> bool:
        if event.type() == _CALL and isinstance(event, _Call):
            event.step()
            return True
        return super().event(event)


def application() -> QApplication:
    """The `QApplication`, made if there is none yet."""
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    return QApplication(sys.argv[:1])


def run(
    async_fn: Callable[[*Args], Awaitable[T]],
    *args: *Args,
    clock: trio.abc.Clock | None = None,
    instruments: Sequence[trio.abc.Instrument] = (),
) -> T:
    """Run `async_fn(*args)` in Trio, as a guest of Qt's event loop, and return its result.

    The loop runs until the Trio function returns; closing the last window does not end
    it (the Trio function decides: the room ends when its window says it closed).
    """
    app = application()
    quit_on_close = app.quitOnLastWindowClosed()
    app.setQuitOnLastWindowClosed(False)
    caller = _Caller()
    done: list[outcome.Outcome[T]] = []

    def finished(result: outcome.Outcome[T]) -> None:
        done.append(result)
        app.quit()

    def run_soon(step: Callable[[], object]) -> None:
        app.postEvent(caller, _Call(step))

    trio.lowlevel.start_guest_run(
        async_fn,
        *args,
        run_sync_soon_threadsafe=run_soon,
        done_callback=finished,
        clock=clock,
        instruments=instruments,
    )
    try:
        while not done:
            app.exec()  # again if something quit the loop early: Trio has to finish
    finally:
        app.setQuitOnLastWindowClosed(quit_on_close)
    return done[0].unwrap()


@dataclass(frozen=True, slots=True)
class Emission:
    source: str
    """The name the signal was given in `signal_channel()`."""
    args: tuple[object, ...]


class _Forward:
    def __init__(self, source: str, channel: trio.MemorySendChannel[Emission]) -> None:
        self.source = source
        self.channel = channel

    def slot(self, *args: object) -> None:
        with contextlib.suppress(trio.ClosedResourceError):
            self.channel.send_nowait(Emission(self.source, args))


@contextlib.asynccontextmanager
async def signal_channel(
    signals: Mapping[str, SignalInstance],
) -> AsyncIterator[trio.MemoryReceiveChannel[Emission]]:
    """Every emission of these signals, in order, named by their keys, while the block runs."""
    send, receive = trio.open_memory_channel[Emission](math.inf)
    forwards = [(signal, _Forward(source, send)) for source, signal in signals.items()]
    for signal, forward in forwards:
        signal.connect(forward.slot)
    try:
        yield receive
    finally:
        # Disconnected before the channel closes, and closed without a checkpoint (as
        # `aclose` would take): another task running between the two could emit into a
        # channel nobody reads, which raises in Qt's loop.
        for signal, forward in forwards:
            with contextlib.suppress(RuntimeError, TypeError):  # the sender is gone already
                signal.disconnect(forward.slot)
        send.close()
        receive.close()
