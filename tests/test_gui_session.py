"""The window's Trio side (`gui/session.py`) against a stand-in client: what it asks for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import cast

import pytest
import trio
import trio.testing
from pytestqt.qtbot import QtBot

from tests.gui_support import gui_test
from trio_chat.client import ChatClient
from trio_chat.errors import Banned
from trio_chat.events import (
    ChatMessage,
    Disconnected,
    Event,
    History,
    PrivateMessage,
    PublicMessage,
    Reconnected,
)
from trio_chat.gui.room_window import RoomWindow
from trio_chat.gui.server_info import ServerInfo
from trio_chat.gui.session import RoomSession
from trio_chat.gui.status import Link
from trio_chat.records import unix_time

TS = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


class _Chat:
    """Just what a `RoomSession` uses here: events in, pages of history asked for."""

    name, host, port = "alice", "127.0.0.1", 1600
    failure: Banned | None = None

    def __init__(self) -> None:
        self.events_in, self._events_out = trio.open_memory_channel[Event](16)
        self.pages_before: list[int | None] = []
        """The `before` of each page of history asked for."""
        self.pages: list[list[ChatMessage]] = []
        """The answers to those, in turn (then nothing)."""

    async def events(self) -> AsyncIterator[Event]:
        async for event in self._events_out:
            yield event

    async def history(self, count: int, before: int | None = None) -> list[ChatMessage]:
        self.pages_before.append(before)
        return self.pages.pop(0) if self.pages else []

    async def who(self) -> list[str]:
        return ["alice", "bob"]

    def close(self) -> None:
        self.events_in.close()

    async def logout(self) -> None:
        self.close()


def alices_room(qtbot: QtBot) -> tuple[_Chat, RoomWindow, RoomSession]:
    """Alice's window and its session, on a stand-in client."""
    chat = _Chat()
    window = RoomWindow("alice", lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    qtbot.addWidget(window)
    return chat, window, RoomSession(cast(ChatClient, chat), window)


@gui_test
async def test_a_resume_cut_short_with_no_room_message_fills_in_from_its_oldest(
    qtbot: QtBot,
) -> None:
    # The daemon sent only the newest of what was missed (`more`), and all of it was
    # private: the gap was filled from the oldest room message, of which there was none,
    # so it was never filled.
    chat, window, session = alices_room(qtbot)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            said = PublicMessage(5, TS, "bob", "before")
            await chat.events_in.send(History((said,), more=False))
            await chat.events_in.send(Disconnected("the daemon went away"))
            await chat.events_in.send(Reconnected())
            whispers = tuple(PrivateMessage(n, TS, "bob", "alice", f"w{n}") for n in (40, 41))
            await chat.events_in.send(History(whispers, more=True, resumed=True))
            await trio.testing.wait_all_tasks_blocked()
            assert chat.pages_before == [40]  # the gap: after 5, before the oldest that came
            window.closed.emit(True)


@gui_test
async def test_what_was_missed_is_told_when_older_pages_brought_it_first(
    qtbot: QtBot,
) -> None:
    # A tab scrolled to its top asks for older pages as the window signs in again; they
    # hold the room's messages too, and brought the gap's before its own page came. The
    # note counted only the rows its page added: none, so nothing was said of the gap.
    chat, window, session = alices_room(qtbot)
    gap = [PublicMessage(n, TS, "bob", f"meanwhile {n}") for n in range(6, 30)]
    chat.pages = [[*gap, PublicMessage(5, TS, "bob", "before")]]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await chat.events_in.send(History((PublicMessage(5, TS, "bob", "before"),), False))
            await chat.events_in.send(Disconnected("the daemon went away"))
            await chat.events_in.send(Reconnected())
            window.show_older(gap[:10], "bob")  # a page a tab asked for, come first
            newest = tuple(PublicMessage(n, TS, "bob", f"newest {n}") for n in (30, 31))
            await chat.events_in.send(History(newest, more=True, resumed=True))
            await trio.testing.wait_all_tasks_blocked()
            assert chat.pages_before == [30]
            room = window.model("")
            assert room is not None
            notes = [row.plain for row in room.rows if "missed" in row.plain]
            assert notes[-1].endswith("The 24 other messages missed are above too.")
            window.closed.emit(True)


@pytest.mark.usefixtures("two_hours_east")
@gui_test
async def test_a_ban_that_ends_the_session_says_its_end_in_the_local_time(
    qtbot: QtBot,
) -> None:
    # The daemon's sentence has it in UTC, beside messages stamped in the local time.
    chat, window, session = alices_room(qtbot)
    daemons = "The daemon's operator turned your address away until 2026-12-06 16:40:02 UTC; "
    chat.failure = Banned(f"{daemons}ask them why.", until=unix_time("2026-12-06T16:40:01.2Z"))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await chat.events_in.send(History((), more=False))
            chat.close()  # the session ended: `events()` is over
            await trio.testing.wait_all_tasks_blocked()
            assert window.link is Link.LOST
            assert window.status.text() == (
                "Connection lost: The daemon's operator turned your address away until "
                "2026-12-06 18:40:02 XYZ; ask them why"
            )
            window.close()
