"""The window's Trio side (`gui/session.py`) against a stand-in client: what it asks for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import cast

import pytest
import trio
import trio.testing
from pytestqt.qtbot import QtBot

from tests.gui_support import gui_test, messages, pending, texts
from trio_chat import commands
from trio_chat.client import ChatClient
from trio_chat.errors import (
    AccountRemoved,
    Banned,
    Busy,
    ChatError,
    ConnectionLost,
    Throttled,
    WrongPassword,
)
from trio_chat.events import (
    ChatMessage,
    Disconnected,
    Event,
    History,
    Joined,
    Left,
    Missed,
    Notice,
    PrivateMessage,
    PublicMessage,
    Reconnected,
)
from trio_chat.gui import room_window
from trio_chat.gui.password_dialog import PasswordDialog
from trio_chat.gui.room_window import RoomWindow
from trio_chat.gui.server_info import ServerInfo
from trio_chat.gui.session import RoomSession
from trio_chat.gui.status import Link
from trio_chat.records import unix_time

TS = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


class _Receipt:
    """A line on its way, as `ChatClient.say_nowait` gives it."""

    def __init__(self) -> None:
        self._answered = trio.Event()
        self._error: ChatError | None = None

    @property
    def done(self) -> bool:
        return self._answered.is_set()

    def fail(self, error: ChatError) -> None:
        self._error = error
        self._answered.set()

    async def wait(self) -> ChatMessage:
        await self._answered.wait()
        assert self._error is not None
        raise self._error


class _Chat:
    """Just what a `RoomSession` uses here: events in, pages of history asked for."""

    name, host, port = "alice", "127.0.0.1", 1600
    failure: ChatError | None = None

    def __init__(self) -> None:
        self.events_in, self._events_out = trio.open_memory_channel[Event](16)
        self.pages_before: list[int | None] = []
        """The `before` of each page of history asked for."""
        self.pages: list[list[ChatMessage]] = []
        """The answers to those, in turn (then nothing)."""
        self.unanswered: list[_Receipt] = []
        """The lines said, which the daemon has not answered."""
        self.history_refused: ChatError | None = None
        """Raised when a page is asked for."""
        self.logged_out = False
        self.last_words: tuple[Event, ...] = ()
        """What comes after the logout's answer, before the session's end."""
        self._logged_out = trio.Event()
        self.password_answered = trio.Event()
        """Set, the daemon answers a new password: changed, or `password_refused`."""
        self.password_refused: ChatError | None = None

    async def events(self) -> AsyncIterator[Event]:
        async for event in self._events_out:
            yield event

    async def history(self, count: int, before: int | None = None) -> list[ChatMessage]:
        self.pages_before.append(before)
        if self.history_refused is not None:
            raise self.history_refused
        return self.pages.pop(0) if self.pages else []

    async def who(self) -> list[str]:
        await trio.lowlevel.checkpoint()  # an answer comes from the daemon, a while later
        return ["alice", "bob"]

    def close(self) -> None:
        self.events_in.close()
        for receipt in self.unanswered:
            receipt.fail(ConnectionLost("The session ended before the daemon answered."))

    def say_nowait(self, text: str) -> _Receipt:
        receipt = _Receipt()
        self.unanswered.append(receipt)
        return receipt

    async def logout(self) -> None:
        self.logged_out = True
        if self.last_words:
            self._logged_out.set()  # they come after the answer
        else:
            self.close()

    async def say_last_words(self) -> None:
        """After the logout's answer, the events the session still had, then its end."""
        await self._logged_out.wait()
        for event in self.last_words:
            for _turn in range(10):  # each a while after the one before
                await trio.lowlevel.checkpoint()
            await self.events_in.send(event)
        self.close()

    async def change_password(self, old: str, new: str) -> None:
        await self.password_answered.wait()
        if self.password_refused is not None:
            raise self.password_refused


def alices_room(qtbot: QtBot) -> tuple[_Chat, RoomWindow, RoomSession]:
    """Alice's window and its session, on a stand-in client."""
    chat = _Chat()
    window = RoomWindow("alice", lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    qtbot.addWidget(window)
    return chat, window, RoomSession(cast(ChatClient, chat), window)


def said_aloud(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the window announces (to a screen reader) from now on, in order."""
    said: list[str] = []
    monkeypatch.setattr(room_window, "announce", lambda _w, text, urgent=False: said.append(text))
    return said


@asynccontextmanager
async def entered(session: RoomSession, chat: _Chat) -> AsyncIterator[trio.Nursery]:
    """Alice's session running (ten seconds at most), its first history, empty, taken in."""
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await chat.events_in.send(History((), more=False))
            await trio.testing.wait_all_tasks_blocked()
            yield nursery


WHISPERS = tuple(PrivateMessage(n, TS, "bob", "alice", f"w{n}") for n in (40, 41))


@gui_test
@pytest.mark.parametrize(
    ("came", "gap", "filled_before"),
    [
        # All of it was private: the gap was filled from the oldest room message, of
        # which there was none, so it was never filled. It ends before the oldest.
        (WHISPERS, None, 40),
        # The daemon says where it ends: not at 30 (whispers 31-44 were left out).
        ((PublicMessage(30, TS, "bob", "meanwhile"),), 45, 45),
    ],
)
async def test_a_resume_cut_short_fills_in_the_gap_up_to_where_it_ends(
    qtbot: QtBot, came: tuple[ChatMessage, ...], gap: int | None, filled_before: int
) -> None:
    # The daemon sent only the newest of what was missed (`more`).
    chat, window, session = alices_room(qtbot)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            said = PublicMessage(5, TS, "bob", "before")
            await chat.events_in.send(History((said,), more=False))
            await chat.events_in.send(Disconnected("the daemon went away"))
            await chat.events_in.send(Reconnected())
            await chat.events_in.send(History(came, more=True, resumed=True, gap=gap))
            await trio.testing.wait_all_tasks_blocked()
            assert chat.pages_before == [filled_before]  # the gap: after 5, before this
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


@gui_test
async def test_closing_while_a_new_password_is_on_its_way_logs_out_after_its_answer(
    qtbot: QtBot,
) -> None:
    # Logged out first, the answer would never come: the change made or not, unsaid.
    chat, window, session = alices_room(qtbot)
    async with entered(session, chat):
        window.password_wanted.emit("old password", "new password")
        window.closed.emit(False)
        await trio.testing.wait_all_tasks_blocked()
        assert not chat.logged_out
        chat.password_answered.set()
    assert chat.logged_out
    assert texts(window)[-1].endswith("Your password is changed; your other sessions have ended.")


@gui_test
async def test_what_comes_as_the_logout_ends_the_session_is_shown_before_the_window_goes(
    qtbot: QtBot,
) -> None:
    chat, window, session = alices_room(qtbot)
    chat.last_words = (
        PublicMessage(7, TS, "bob", "see you"),
        PublicMessage(8, TS, "bob", "bye alice"),
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            nursery.start_soon(chat.say_last_words)
            await chat.events_in.send(History((), more=False))
            await trio.testing.wait_all_tasks_blocked()
            window.closed.emit(False)
    assert chat.logged_out
    shown = messages(window)
    assert len(shown) == 2
    assert shown[0].endswith("see you")
    assert shown[1].endswith("bye alice")


@gui_test
async def test_a_resume_that_brought_all_that_was_missed_asks_for_no_page(qtbot: QtBot) -> None:
    chat, window, session = alices_room(qtbot)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await chat.events_in.send(History((PublicMessage(5, TS, "bob", "before"),), False))
            await chat.events_in.send(Disconnected("the daemon went away"))
            await chat.events_in.send(Reconnected())
            missed = tuple(PublicMessage(n, TS, "bob", f"meanwhile {n}") for n in (6, 7))
            await chat.events_in.send(History(missed, more=False, resumed=True))
            await trio.testing.wait_all_tasks_blocked()
            assert chat.pages_before == []
            assert messages(window)[-1].endswith("meanwhile 7")
            window.closed.emit(True)


@pytest.mark.parametrize("more", [True, False])
@gui_test
async def test_signed_in_again_what_came_between_fills_in_below_the_oldest_the_login_brought(
    more: bool, qtbot: QtBot
) -> None:
    # The window showed up to 5 before its session ended; the login brings the latest
    # (20 and 21, and a whisper older than them), and says whether there are older ones.
    chat = _Chat()
    window = RoomWindow("alice", lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    qtbot.addWidget(window)
    session = RoomSession(cast(ChatClient, chat), window, shown_up_to=5)
    latest = (
        PrivateMessage(12, TS, "bob", "alice", "psst"),
        PublicMessage(20, TS, "bob", "latest"),
        PublicMessage(21, TS, "bob", "newest"),
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await chat.events_in.send(History(latest, more=more))
            await trio.testing.wait_all_tasks_blocked()
            assert chat.pages_before == ([20] if more else [])
            window.closed.emit(True)


@gui_test
async def test_the_operators_word_is_said_aloud_wherever_the_person_is(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    said = said_aloud(monkeypatch)
    chat, window, session = alices_room(qtbot)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await chat.events_in.send(History((), more=False))
            await chat.events_in.send(Notice("The operator muted you.", muted=True))
            await trio.testing.wait_all_tasks_blocked()
            assert said[-1] == "The operator muted you."
            assert window.muted
            window.closed.emit(True)


@gui_test
async def test_a_connection_lost_says_why_in_the_room(qtbot: QtBot) -> None:
    chat, window, session = alices_room(qtbot)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await chat.events_in.send(History((), more=False))
            await chat.events_in.send(Disconnected("no answer from the daemon."))
            await trio.testing.wait_all_tasks_blocked()
            assert window.link is Link.RECONNECTING
            assert texts(window)[-1].endswith(
                "Lost the connection to 127.0.0.1:1600 (no answer from the daemon); trying "
                "again. What you send goes out when it is back."
            )
            window.closed.emit(True)


@gui_test
async def test_what_a_command_typed_in_a_private_tab_answers_is_shown_in_that_tab(
    qtbot: QtBot,
) -> None:
    # The tab's person as the daemon spells the name ("Bob"), its conversation as names
    # are told apart ("bob"): an answer sent to "Bob" would land in the room.
    chat, window, session = alices_room(qtbot)
    async with entered(session, chat):
        window.open_conversation("Bob")
        in_the_room = texts(window)
        window.line_entered.emit("/frobnicate", "Bob")
        await trio.testing.wait_all_tasks_blocked()
        assert texts(window, "bob")[-1].endswith(
            "Unknown command /frobnicate; /help lists the commands, //text says /text."
        )
        window.line_entered.emit("/help", "Bob")
        await trio.testing.wait_all_tasks_blocked()
        assert texts(window, "bob")[-1] == commands.WINDOW_HELP.splitlines()[-1]
        window.line_entered.emit("/who", "Bob")
        await trio.testing.wait_all_tasks_blocked()
        assert "bob" in texts(window, "bob")[-1]
        assert texts(window) == in_the_room
        window.closed.emit(True)


@gui_test
async def test_a_new_password_whose_answer_was_lost_is_said_unsure_in_the_room(
    qtbot: QtBot,
) -> None:
    # Not "not changed": it may have been, and the dialog, asked again, would be wrong.
    chat, window, session = alices_room(qtbot)
    lost = "The connection was lost before the daemon answered; the password may be changed."
    chat.password_refused = ConnectionLost(lost)
    chat.password_answered.set()
    async with entered(session, chat):
        window.password_wanted.emit("old password", "new password")
        await trio.testing.wait_all_tasks_blocked()
        said = texts(window)[-1]
        assert said.endswith(lost)
        assert "not changed" not in said
        window.closed.emit(True)


@pytest.mark.parametrize(
    "refusal",
    [
        Busy("The daemon is busy; try again in a moment.", retry_after=1.0),
        Throttled("Too many wrong passwords; wait a moment.", retry_after=1.0),
        WrongPassword("Wrong password."),
    ],
)
@gui_test
async def test_a_refused_current_password_or_a_daemon_too_busy_points_at_the_current_one(
    refusal: ChatError, qtbot: QtBot
) -> None:
    # Busy, the daemon never judged the new one either.
    chat, window, session = alices_room(qtbot)
    busy = refusal.message
    chat.password_refused = refusal
    chat.password_answered.set()
    async with entered(session, chat):
        window.ask_password()
        dialog = window.findChild(PasswordDialog)
        assert dialog is not None
        window.password_wanted.emit("old password", "new password")
        await trio.testing.wait_all_tasks_blocked()
        assert dialog.current.accessibleDescription() == busy
        assert dialog.new.accessibleDescription() == ""
        window.closed.emit(True)


async def back_after_an_outage(chat: _Chat, newest: int = 30) -> None:
    """Alice saw message 5; the connection went; the resumed history brought only the
    newest of what was missed (`newest` and the one after), and pages fill in the rest."""
    await chat.events_in.send(History((PublicMessage(5, TS, "bob", "before"),), False))
    await chat.events_in.send(Disconnected("the daemon went away"))
    await chat.events_in.send(Reconnected())
    latest = tuple(PublicMessage(n, TS, "bob", f"newest {n}") for n in (newest, newest + 1))
    await chat.events_in.send(History(latest, more=True, resumed=True))
    await trio.testing.wait_all_tasks_blocked()


def missed_notes(window: RoomWindow) -> list[str]:
    return [line for line in texts(window) if "missed" in line]


@pytest.mark.parametrize(
    ("between", "told"),
    [
        ((), None),
        ((6,), "The 1 other message missed is above too."),
        ((6, 7), "The 2 other messages missed are above too."),
    ],
)
@gui_test
async def test_the_rest_of_what_was_missed_is_counted_when_it_fills_in(
    between: tuple[int, ...], told: str | None, qtbot: QtBot
) -> None:
    chat, window, session = alices_room(qtbot)
    page = [PublicMessage(n, TS, "bob", f"meanwhile {n}") for n in reversed(between)]
    chat.pages = [[*page, PublicMessage(5, TS, "bob", "before")]]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await back_after_an_outage(chat)
            assert chat.pages_before == [30]
            notes = missed_notes(window)
            assert notes[0].endswith(
                "More than 2 messages were missed while away; the latest 2 are above."
            )
            if told is None:
                assert len(notes) == 1
            else:
                assert notes[-1].endswith(told)
            window.closed.emit(True)


@gui_test
async def test_what_was_missed_and_could_not_be_loaded_is_said_with_why(qtbot: QtBot) -> None:
    chat, window, session = alices_room(qtbot)
    chat.history_refused = ConnectionLost("The daemon went away again.")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await back_after_an_outage(chat)
            assert missed_notes(window)[-1].endswith(
                "Could not load the rest of what was missed: The daemon went away again."
            )
            window.closed.emit(True)


@gui_test
async def test_what_was_missed_beyond_the_pages_read_is_said_not_shown(qtbot: QtBot) -> None:
    # Forty full pages (2,000 messages) and still newer than what was seen: the rest
    # is not read, and the room says so.
    chat, window, session = alices_room(qtbot)
    ids = iter(range(3029, 3029 - 40 * 50, -1))
    chat.pages = [
        [PublicMessage(next(ids), TS, "bob", "meanwhile") for _ in range(50)] for _ in range(40)
    ]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await back_after_an_outage(chat, newest=3030)
            assert len(chat.pages_before) == 40
            assert chat.pages_before[:3] == [3030, 2980, 2930]  # each below the one before
            assert missed_notes(window)[-1].endswith(
                "2000 more messages missed are above; the oldest of what was missed are not shown."
            )
            window.closed.emit(True)


@gui_test
async def test_a_line_cut_off_by_leaving_at_once_is_not_said_refused(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Closed again while the logout waits for it: the daemon may have it, or not; the
    # window goes, and says nothing of it (aloud neither).
    said = said_aloud(monkeypatch)
    chat, window, session = alices_room(qtbot)
    async with entered(session, chat):
        window.line_entered.emit("hello", "")
        await trio.testing.wait_all_tasks_blocked()
        window.closed.emit(False)
        await trio.testing.wait_all_tasks_blocked()
        assert not chat.logged_out  # waiting for the line
        window.closed.emit(True)
    assert len(chat.unanswered) == 1
    assert pending(window)[0].endswith("hello")
    assert not [text for text in said if text.startswith("Not sent")]


@gui_test
async def test_a_window_closed_at_once_does_not_wait_for_what_was_typed(qtbot: QtBot) -> None:
    # A stop signal, or Close chosen to leave at once: a line the daemon has not answered
    # is given up (the session closed), not waited for as a plain close would.
    chat, window, session = alices_room(qtbot)
    async with entered(session, chat):
        window.line_entered.emit("hello", "")
        await trio.testing.wait_all_tasks_blocked()
        window.closed.emit(True)
    assert [receipt.done for receipt in chat.unanswered] == [True]


@gui_test
async def test_closing_waits_for_every_new_password_on_its_way(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The dialog closed while its change was on its way, opened again and sent another:
    # the logout waits for both answers, not just the first.
    chat, window, session = alices_room(qtbot)
    answers = [trio.Event(), trio.Event()]
    waiting = list(answers)

    async def change_password(old: str, new: str) -> None:
        await waiting.pop(0).wait()

    monkeypatch.setattr(chat, "change_password", change_password)
    async with entered(session, chat):
        window.password_wanted.emit("old password", "new password")
        window.password_wanted.emit("new password", "newer password")
        window.closed.emit(False)
        answers[0].set()
        await trio.testing.wait_all_tasks_blocked()
        assert not chat.logged_out
        answers[1].set()
    assert chat.logged_out


@gui_test
async def test_a_second_outage_fills_in_from_what_was_shown_before_it(qtbot: QtBot) -> None:
    # Each outage's gap starts after the newest message shown when it began (31 here,
    # the first outage's resumed history): not after the first outage's start (5).
    chat, window, session = alices_room(qtbot)
    chat.pages = [[PublicMessage(5, TS, "bob", "before")]]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await back_after_an_outage(chat)
            whisper = PrivateMessage(35, TS, "bob", "alice", "psst")  # in its tab, not counted
            room = [PublicMessage(n, TS, "bob", f"meanwhile {n}") for n in (31, 30)]
            chat.pages = [[PublicMessage(40, TS, "bob", "meanwhile 40"), whisper, *room]]
            await chat.events_in.send(Disconnected("the daemon went away"))
            await chat.events_in.send(Reconnected())
            latest = tuple(PublicMessage(n, TS, "bob", f"newest {n}") for n in (60, 61))
            await chat.events_in.send(History(latest, more=True, resumed=True))
            await trio.testing.wait_all_tasks_blocked()
            assert chat.pages_before == [30, 60]
            assert missed_notes(window)[-1].endswith("The 1 other message missed is above too.")
            window.closed.emit(True)


@gui_test
async def test_someone_who_left_after_an_outage_and_came_back_is_said_to_join(
    qtbot: QtBot,
) -> None:
    # Bob was in the room as the connection went: his join as everyone comes back is
    # not news, but once he has left, coming in again is.
    chat, window, session = alices_room(qtbot)
    async with entered(session, chat):
        assert window.online.names == ["alice", "bob"]  # asked on entering
        await chat.events_in.send(Disconnected("the daemon went away"))
        await chat.events_in.send(Reconnected())
        await chat.events_in.send(History((), more=False, resumed=True))
        await chat.events_in.send(Left("bob", TS, "quit"))
        await chat.events_in.send(Joined("bob", TS))
        await trio.testing.wait_all_tasks_blocked()
        assert texts(window)[-1].endswith("* bob joined the room")
        window.closed.emit(True)


@gui_test
async def test_events_skipped_and_a_session_ended_without_a_reason_are_said(
    qtbot: QtBot,
) -> None:
    chat, window, session = alices_room(qtbot)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await chat.events_in.send(History((), more=False))
            await chat.events_in.send(Missed(3))
            await trio.testing.wait_all_tasks_blocked()
            assert texts(window)[-1].endswith(
                "Too much came in at once: 3 events skipped; /history shows the messages "
                "among them."
            )
            chat.close()  # ended, and the client says no why
            await trio.testing.wait_all_tasks_blocked()
            assert window.link is Link.LOST
            assert "The session has ended: the session ended." in texts(window)[-2]
            window.close()


@gui_test
async def test_a_session_ended_by_the_accounts_removal_asks_for_another_account(
    qtbot: QtBot,
) -> None:
    # Signing in again as the account removed would be refused: the window says so.
    chat, window, session = alices_room(qtbot)
    removed = "The daemon's operator removed this account; it can no longer log in."
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await chat.events_in.send(History((), more=False))
            await trio.testing.wait_all_tasks_blocked()
            chat.failure = AccountRemoved(removed)
            chat.close()
            await trio.testing.wait_all_tasks_blocked()
            assert window.link is Link.LOST
            assert texts(window)[-2].endswith(f"The session has ended: {removed}")
            assert texts(window)[-1].endswith(
                "Sign in with another account (Chat › Sign in again, Ctrl+R) to go on."
            )
            assert window.composer.editor.placeholderText() == room_window.GONE_HINT
            window.close()


@gui_test
async def test_a_who_the_daemon_refuses_is_said_where_it_was_asked_and_the_room_goes_on(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Asked on entering too: refused then, the room goes on as it was.
    chat, window, session = alices_room(qtbot)
    busy = "The daemon is busy; try again in a moment."

    async def who() -> list[str]:
        raise Busy(busy, retry_after=1.0)

    monkeypatch.setattr(chat, "who", who)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await chat.events_in.send(History((), more=False))
            await chat.events_in.send(PublicMessage(7, TS, "bob", "still here"))
            await trio.testing.wait_all_tasks_blocked()
            assert messages(window)[-1].endswith("still here")
            assert window.link is not Link.LOST
            window.open_conversation("Bob")
            window.line_entered.emit("/who", "Bob")
            await trio.testing.wait_all_tasks_blocked()
            assert texts(window, "bob")[-1].endswith(busy)
            assert busy not in " ".join(texts(window))
            window.closed.emit(True)


@gui_test
async def test_a_line_the_session_ended_under_is_said_not_sent(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not leaving: the session ended on its own, and the line it took with it is told.
    said = said_aloud(monkeypatch)
    chat, window, session = alices_room(qtbot)
    async with entered(session, chat):
        window.line_entered.emit("hello", "")
        await trio.testing.wait_all_tasks_blocked()
        chat.close()
        await trio.testing.wait_all_tasks_blocked()
        assert pending(window) == []
        assert "Not sent: The session ended before the daemon answered." in said
        window.close()


@gui_test
async def test_lines_refused_while_the_window_leaves_are_still_said_not_sent(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only a line cut off by the leaving itself goes unsaid: a refusal is the daemon's.
    # The logout waits for every line, not only the last one typed.
    said = said_aloud(monkeypatch)
    chat, window, session = alices_room(qtbot)
    async with entered(session, chat):
        window.line_entered.emit("hello", "")
        window.line_entered.emit("again", "")
        await trio.testing.wait_all_tasks_blocked()
        window.closed.emit(False)
        await trio.testing.wait_all_tasks_blocked()
        chat.unanswered[1].fail(Throttled("Slow down.", retry_after=1.0))
        await trio.testing.wait_all_tasks_blocked()
        assert "Not sent: Slow down." in said
        assert not chat.logged_out  # the first line is still on its way
        chat.unanswered[0].fail(Throttled("Slow down.", retry_after=1.0))
    assert chat.logged_out


@gui_test
async def test_what_was_missed_ends_where_a_page_reaches_what_was_shown(qtbot: QtBot) -> None:
    # A full page (50) down to 5, the newest shown before the outage: nothing older is
    # asked for.
    chat, window, session = alices_room(qtbot)
    chat.pages = [[PublicMessage(n, TS, "bob", f"meanwhile {n}") for n in range(54, 4, -1)]]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await back_after_an_outage(chat, newest=55)
            assert chat.pages_before == [55]
            assert missed_notes(window)[-1].endswith("The 49 other messages missed are above too.")
            window.closed.emit(True)


def whole_pages(ids: range, whispered: int = 0) -> list[list[ChatMessage]]:
    """Pages of 50 room messages with these ids, newest first; `whispered` is Bob's to Alice."""
    said: list[ChatMessage] = [
        PrivateMessage(n, TS, "bob", "alice", "psst")
        if n == whispered
        else PublicMessage(n, TS, "carol", f"said {n}")
        for n in ids
    ]
    return [said[start : start + 50] for start in range(0, len(said), 50)]


@gui_test
async def test_a_private_tab_scrolled_to_its_top_reads_a_few_pages_at_a_time(
    qtbot: QtBot,
) -> None:
    # Five pages at most an ask, each from the oldest the one before brought; the ask
    # ends at the page that brings the tab something; a short page is the last.
    chat, window, session = alices_room(qtbot)
    pages = whole_pages(range(1000, 650, -1), whispered=690)
    chat.pages = [*pages, [PublicMessage(9, TS, "carol", "first")]]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await chat.events_in.send(History((), more=True))
            await trio.testing.wait_all_tasks_blocked()
            window.open_conversation("bob")
            chat.history_refused = ConnectionLost("The daemon went away.")
            window.line_entered.emit("/history", "bob")
            await trio.testing.wait_all_tasks_blocked()
            said = texts(window, "bob")
            assert said[-2].endswith(
                "Scroll up to see older messages; they load as you reach the top."
            )
            assert said[-1].endswith("Could not load older messages: The daemon went away.")
            chat.history_refused = None
            chat.pages_before.clear()
            window.older_wanted.emit("bob")
            await trio.testing.wait_all_tasks_blocked()
            assert chat.pages_before == [None, 951, 901, 851, 801]
            window.older_wanted.emit("bob")
            await trio.testing.wait_all_tasks_blocked()
            assert chat.pages_before[5:] == [751, 701]  # the second brought Bob's whisper
            assert messages(window, "bob")[-1].endswith("psst")
            window.older_wanted.emit("bob")
            await trio.testing.wait_all_tasks_blocked()
            assert chat.pages_before[7:] == [651]  # a short page: the last
            model = window.model("bob")
            assert model is not None and not model.more
            window.closed.emit(True)


@gui_test
async def test_older_messages_asked_for_again_while_a_page_loads_are_read_once(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Scrolled to the top again (or in another tab) while a page is on its way.
    chat, window, session = alices_room(qtbot)
    answered = trio.Event()

    async def history(count: int, before: int | None = None) -> list[ChatMessage]:
        chat.pages_before.append(before)
        await answered.wait()
        return []

    monkeypatch.setattr(chat, "history", history)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            await chat.events_in.send(History((), more=True))
            await trio.testing.wait_all_tasks_blocked()
            window.older_wanted.emit("")
            window.older_wanted.emit("")
            await trio.testing.wait_all_tasks_blocked()
            answered.set()
            await trio.testing.wait_all_tasks_blocked()
            assert chat.pages_before == [None]
            window.closed.emit(True)
