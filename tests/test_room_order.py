"""The order a person sees things in after an outage: what was missed and their own, as stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import cast

import pytest
import trio
import trio.testing

from trio_chat import wire
from trio_chat.client import ChatClient
from trio_chat.conversation import RETURN_SETTLE, Room
from trio_chat.display import Line, to_plain
from trio_chat.errors import ChatError, ConnectionLost, Muted, UnknownUser
from trio_chat.event_buffer import EventBuffer
from trio_chat.events import (
    Disconnected,
    Event,
    History,
    Joined,
    MessageRemoved,
    Notice,
    PrivateMessage,
    PublicMessage,
    Reconnected,
)
from trio_chat.terminal import wait_to_leave


class _Answer:
    """A receipt the test answers when it likes."""

    def __init__(self) -> None:
        self.answered = trio.Event()
        self.message: PublicMessage | None = None
        self.refusal: ChatError | None = None
        """Raised by `wait` instead, if set."""

    @property
    def done(self) -> bool:
        return self.answered.is_set()

    @property
    def result(self) -> PublicMessage | None:
        return self.message if self.done else None

    async def wait(self) -> PublicMessage:
        await self.answered.wait()
        if self.refusal is not None:
            raise self.refusal
        assert self.message is not None
        return self.message


class _Names:
    """A `who` answered at once."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    done = True

    async def wait(self) -> list[str]:
        return self.names


class _Refused:
    """A receipt for a private message to nobody."""

    done = True
    result = None

    def __init__(self, message: str) -> None:
        self.message = message

    async def wait(self) -> PublicMessage:
        raise UnknownUser(self.message)


class _Events:
    """The test's end of a stand-in client's events: put into an `EventBuffer`, as the
    client's are."""

    def __init__(self) -> None:
        self.buffer = EventBuffer(16)

    def send_nowait(self, event: Event) -> None:
        self.buffer.put(event)

    async def send(self, event: Event) -> None:
        self.buffer.put(event)
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self.buffer.close()
        await trio.lowlevel.checkpoint()


class _Chat:
    """Just what `Room` uses of a `ChatClient`: events in, a `say` answered on demand."""

    name = "alice"
    host, port = "127.0.0.1", 1600
    failure = None

    def __init__(self) -> None:
        self.events_in = _Events()
        self.answer = _Answer()
        self.online: list[str] | None = None
        """Who the daemon says is here, once the test says."""
        self.history_asked: list[int | None] = []
        """The `before` of each history asked for (answered at once, with nothing)."""

    async def events(self) -> AsyncIterator[Event]:
        while (event := await self.events_in.buffer.get()) is not None:
            yield event

    async def events_read(self) -> None:
        await self.events_in.buffer.read_through(self.events_in.buffer.arrived)

    def say_nowait(self, text: str) -> _Answer:
        return self.answer

    def whisper_nowait(self, to: str, text: str) -> _Refused:
        return _Refused(f"There is no account named '{to}'.")

    def who_nowait(self) -> _Answer | _Names:
        if self.online is None:
            return _Answer()  # never answered: the names are not what is looked at here
        return _Names(list(self.online))

    def history_nowait(self, count: int, before: int | None = None) -> _Names:
        self.history_asked.append(before)
        return _Names([])

    async def drain(self) -> None:
        pass


def message(n: int, sender: str, text: str) -> PublicMessage:
    return PublicMessage(n, datetime(2026, 12, 4, 12, 0, n, tzinfo=UTC), sender, text)


def seen(shown: list[Line]) -> list[str]:
    """The lines shown that matter here, without their time (`[HH:MM:SS]`, or
    `[YYYY-MM-DD HH:MM:SS]` on any day but the messages' own)."""
    said = ["".join(text for _style, text in line) for line in shown]
    return [line.split("] ", 1)[1] for line in said if "typed" in line or "missed" in line]


async def type_while_away(chat: _Chat, room: Room, stored_as: int = 3) -> None:
    """The connection drops; alice types a line; its answer comes back (with the
    history, in the same datagrams: its waiter may well run first)."""
    await chat.events_in.send(Disconnected("the daemon went away"))
    await trio.testing.wait_all_tasks_blocked()
    room.handle("typed while away")
    chat.answer.message = message(stored_as, "alice", "typed while away")
    chat.answer.answered.set()
    await trio.testing.wait_all_tasks_blocked()


@asynccontextmanager
async def room_on_screen(
    *, interactive: bool = False, within: float = 5
) -> AsyncIterator[tuple[_Chat, Room, list[Line]]]:
    """A room showing what a stand-in client's events say, for at most `within` seconds;
    it finishes once the block has closed the events."""
    shown: list[Line] = []
    chat = _Chat()
    room = Room(cast(ChatClient, chat), shown.append, lambda _text: None, interactive=interactive)
    with trio.fail_after(within):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(room.show_events)
            nursery.start_soon(room.run_results)
            yield chat, room, shown
            if interactive:
                nursery.cancel_scope.cancel()  # its question of who is here stays unanswered
            else:
                await room.finish()


async def test_a_line_typed_while_away_shows_after_what_was_missed_meanwhile() -> None:
    async with room_on_screen() as (chat, room, shown):
        await type_while_away(chat, room)
        await chat.events_in.send(Reconnected())
        missed = message(2, "bob", "missed one")
        await chat.events_in.send(History((missed,), more=False, resumed=True))
        await chat.events_in.aclose()
    assert seen(shown) == ["bob: missed one", "alice: typed while away"]


@pytest.mark.parametrize("interactive", [False, True])
async def test_a_line_typed_while_away_stored_before_what_was_missed_shows_before_it(
    interactive: bool,
) -> None:
    """The daemon stalled while three people typed: their lines were stored in the order
    they came, and each screen showed the others' (missed) first, then its own."""
    async with room_on_screen(interactive=interactive) as (chat, room, shown):
        await type_while_away(chat, room)  # stored as message 3
        await chat.events_in.send(Reconnected())
        missed = (message(4, "bob", "missed 4"), message(5, "carol", "missed 5"))
        await chat.events_in.send(History(missed, more=False, resumed=True))
        await chat.events_in.aclose()
    mine = ["alice: typed while away"]
    if interactive:  # marked as it waits, and once it went
        mine = [f"{mine[0]} (goes out once connected)", f"{mine[0]} (sent; it was waiting)"]
    assert seen(shown) == [*mine, "bob: missed 4", "carol: missed 5"]


async def test_a_line_older_than_the_latest_of_what_was_missed_shows_after_it() -> None:
    """Only the latest of what was missed came (`more`): a line stored before all of it
    is not shown among it, as if it were among the latest."""
    async with room_on_screen() as (chat, room, shown):
        await type_while_away(chat, room)  # stored as message 3
        await chat.events_in.send(Reconnected())
        missed = (message(7, "bob", "missed 7"), message(8, "carol", "missed 8"))
        await chat.events_in.send(History(missed, more=True, resumed=True))
        await chat.events_in.aclose()
    assert seen(shown) == ["bob: missed 7", "carol: missed 8", "alice: typed while away"]


async def test_a_line_among_the_latest_of_what_was_missed_shows_in_its_place() -> None:
    """`more`, and a whisper that waited older than the room's missed messages: a line
    stored between two of those is shown between them (every answered line was put
    after the history, and the whisper's id taken for where the gap begins)."""
    async with room_on_screen() as (chat, room, shown):
        await type_while_away(chat, room, stored_as=8)
        await chat.events_in.send(Reconnected())
        whisper = PrivateMessage(2, message(2, "bob", "").ts, "bob", "alice", "missed whisper")
        missed = (whisper, message(7, "bob", "missed 7"), message(9, "carol", "missed 9"))
        await chat.events_in.send(History(missed, more=True, resumed=True))
        await chat.events_in.aclose()
    assert [line.split(": ", 1)[-1] for line in seen(shown)] == [
        "[bob -> you] missed whisper",
        "missed 7",
        "typed while away",
        "missed 9",
    ]


async def test_a_line_answered_between_two_outages_is_shown_after_the_second() -> None:
    """The connection drops again before the history of the first outage arrives: the
    line waits for the history that comes after the second, and is shown, not lost."""
    async with room_on_screen() as (chat, room, shown):
        await type_while_away(chat, room)
        await chat.events_in.send(Disconnected("the daemon went away again"))
        await chat.events_in.send(Reconnected())
        missed = message(2, "bob", "missed one")
        await chat.events_in.send(History((missed,), more=False, resumed=True))
        await trio.testing.wait_all_tasks_blocked()
        assert seen(shown) == ["bob: missed one", "alice: typed while away"]
        await chat.events_in.aclose()


async def test_a_terminal_says_when_what_was_missed_is_more_than_it_was_shown() -> None:
    """After a long absence the daemon sends only the newest of what was missed (`more`):
    the heading does not pass them off as all of it."""
    async with room_on_screen(interactive=True) as (chat, _room, shown):
        await chat.events_in.send(Disconnected("the daemon went away"))
        await chat.events_in.send(Reconnected())
        missed = (message(7, "bob", "missed 7"), message(8, "bob", "missed 8"))
        await chat.events_in.send(History(missed, more=True, resumed=True))
        await trio.testing.wait_all_tasks_blocked()
    lines = ["".join(text for _style, text in line) for line in shown]
    assert "-- Missed while away: more than 2 messages; the latest 2 --" in lines


async def test_older_after_a_gap_in_what_was_missed_goes_back_into_the_gap() -> None:
    """ "Missed while away: more than 2 messages; the latest 2": `/older` then goes back
    from the first of those two, into what was missed, not from the oldest message shown
    before the absence (which left the gap out of reach)."""
    async with room_on_screen(interactive=True) as (chat, room, _shown):
        await chat.events_in.send(History((message(1, "bob", "before"),), more=False))
        await chat.events_in.send(Disconnected("the daemon went away"))
        await chat.events_in.send(Reconnected())
        missed = (message(7, "bob", "missed 7"), message(8, "bob", "missed 8"))
        await chat.events_in.send(History(missed, more=True, resumed=True))
        await trio.testing.wait_all_tasks_blocked()
        room.handle("/older 5")
        await trio.testing.wait_all_tasks_blocked()
    assert chat.history_asked == [7]


async def test_older_after_a_gap_goes_back_from_where_the_daemon_says_it_ends() -> None:
    # Whispers of one's other sessions newer than every room message shown were left out:
    # the daemon says the gap ends at 9, and `/older` goes back from there.
    async with room_on_screen(interactive=True) as (chat, room, _shown):
        await chat.events_in.send(History((message(1, "bob", "before"),), more=False))
        await chat.events_in.send(Disconnected("the daemon went away"))
        await chat.events_in.send(Reconnected())
        missed = (message(7, "bob", "missed 7"), message(8, "bob", "missed 8"))
        await chat.events_in.send(History(missed, more=True, resumed=True, gap=9))
        await trio.testing.wait_all_tasks_blocked()
        room.handle("/older 5")
        await trio.testing.wait_all_tasks_blocked()
    assert chat.history_asked == [9]


async def test_history_lists_ones_own_private_message_newer_than_any_shown() -> None:
    """alice's whisper to bob was the room's newest message when she logged in again: read
    by bob, it is not in her login's history, and `/history` asked only up to the newest
    message shown, leaving her last words out of "the last 5 messages"."""
    async with room_on_screen(interactive=True) as (chat, room, _shown):
        said = (message(1, "bob", "hi"), message(3, "bob", "bye"))
        await chat.events_in.send(History(said, more=False, newest=4))
        await trio.testing.wait_all_tasks_blocked()
        room.handle("/history 5")
        await chat.events_in.send(message(6, "bob", "later"))
        await trio.testing.wait_all_tasks_blocked()
        room.handle("/history 5")
        await trio.testing.wait_all_tasks_blocked()
    assert chat.history_asked == [5, 7]


async def test_a_refused_line_is_quoted_as_typed() -> None:
    """A backslash is shown once and an apostrophe as it is, not as `repr` has them."""
    async with room_on_screen(interactive=True) as (_chat, room, shown):
        room.handle("s/nobody/it's in C:\\temp")
        await trio.testing.wait_all_tasks_blocked()
    assert [to_plain(line) for line in shown][-1] == (
        "Not sent to nobody ('it's in C:\\temp'): There is no account named 'nobody'."
    )


async def test_a_refused_private_message_names_its_addressee_with_what_hides_in_it_shown() -> None:
    """A joiner typed in a name: `al` + U+200D + `ice` shown raw reads as `alice`, a real
    account, beside the daemon's sentence that there is no such account."""
    async with room_on_screen(interactive=True) as (_chat, room, shown):
        room.handle("s/al\u200dice/hi")
        await trio.testing.wait_all_tasks_blocked()
    assert [to_plain(line) for line in shown][-1] == (
        "Not sent to al\\u200dice ('hi'): There is no account named 'al\\u200dice'."
    )


@pytest.mark.parametrize("interactive", [False, True])
async def test_a_line_refused_for_a_mute_set_while_away_shows_after_the_notice(
    interactive: bool,
) -> None:
    """The account was muted while the line waited for the daemon: the notice that says so
    and the line's refusal come in together (the notice first), and are shown in that order,
    though a task of its own shows the refusal."""
    async with room_on_screen(interactive=interactive) as (chat, room, shown):
        room.complain = lambda text: shown.append((("", text),))  # a script's, in turn
        await chat.events_in.send(Disconnected("the daemon went away"))
        await trio.testing.wait_all_tasks_blocked()
        room.handle("typed while away")
        chat.events_in.send_nowait(Reconnected())
        chat.events_in.send_nowait(History((), more=False, resumed=True))
        chat.events_in.send_nowait(Notice(wire.MUTED_NOTICE, muted=True))
        chat.answer.refusal = Muted("The daemon's operator muted this account.")
        chat.answer.answered.set()
        await trio.testing.wait_all_tasks_blocked()
        await chat.events_in.aclose()
    lines = [to_plain(line) for line in shown]
    notice = next(n for n, line in enumerate(lines) if "you can read the room" in line)
    refusal = next(n for n, line in enumerate(lines) if "Not sent ('typed while away')" in line)
    assert notice < refusal, lines


def online_lines(shown: list[Line]) -> list[str]:
    return [line for line in map(to_plain, shown) if line.startswith("Online")]


async def test_who_is_here_after_an_outage_is_said_once_everyone_is_back() -> None:
    """Everyone comes back within moments of a daemon restart, the first before the
    rest: a `who` asked at once said "Online (1): alice", and as the returns of the
    others are not news, nothing ever said they were back."""
    async with room_on_screen(interactive=True) as (chat, _room, shown):
        chat.online = ["alice", "bob", "carol"]
        await chat.events_in.send(History((), more=False))
        await trio.testing.wait_all_tasks_blocked()
        assert online_lines(shown) == ["Online (3): alice, bob, carol"]
        await chat.events_in.send(Disconnected("the daemon went away"))
        await chat.events_in.send(Reconnected())
        chat.online = ["alice"]
        await chat.events_in.send(History((), more=False, resumed=True))
        await trio.testing.wait_all_tasks_blocked()
        chat.online = ["alice", "bob"]
        await chat.events_in.send(Joined("bob", datetime.now(UTC)))
        await trio.testing.wait_all_tasks_blocked()
        assert len(online_lines(shown)) == 1  # carol is not back yet
        chat.online = ["alice", "bob", "carol"]
        await chat.events_in.send(Joined("carol", datetime.now(UTC)))
        await trio.testing.wait_all_tasks_blocked()
        assert online_lines(shown)[1:] == ["Online (3): alice, bob, carol"]
        assert not any("joined" in to_plain(line) for line in shown)  # returns, not news


async def test_who_is_here_after_an_outage_is_said_in_time_if_someone_stays_away(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with room_on_screen(interactive=True, within=RETURN_SETTLE + 5) as (chat, _r, shown):
        chat.online = ["alice", "bob"]
        await chat.events_in.send(History((), more=False))
        await trio.testing.wait_all_tasks_blocked()
        await chat.events_in.send(Disconnected("the daemon went away"))
        await chat.events_in.send(Reconnected())
        chat.online = ["alice"]
        await chat.events_in.send(History((), more=False, resumed=True))
        await trio.sleep(RETURN_SETTLE - 1)
        assert len(online_lines(shown)) == 1
        await trio.sleep(2)
        assert online_lines(shown)[1:] == ["Online (1): alice"]


async def test_who_is_here_after_an_outage_is_said_at_once_if_everyone_is_back_already() -> None:
    """Back after the others, nobody's join comes (they entered before): the answer to
    `who` is what tells that everyone is here."""
    async with room_on_screen(interactive=True) as (chat, _room, shown):
        chat.online = ["alice", "bob", "carol"]
        await chat.events_in.send(History((), more=False))
        await trio.testing.wait_all_tasks_blocked()
        await chat.events_in.send(Disconnected("the daemon went away"))
        await chat.events_in.send(Reconnected())
        await chat.events_in.send(History((), more=False, resumed=True))
        await trio.testing.wait_all_tasks_blocked()
        assert online_lines(shown)[1:] == ["Online (3): alice, bob, carol"]


@pytest.mark.parametrize(
    ("typed", "awaited"), [("/who", "answers"), ("hello", "acknowledges 1 message")]
)
async def test_leaving_while_a_question_waits_says_what_it_waits_for(
    autojump_clock: trio.testing.MockClock, typed: str, awaited: str
) -> None:
    """Only `/who` unanswered, the daemon away: leaving waited, silent, for good. A
    message unanswered is counted."""
    shown: list[Line] = []
    room = Room(cast(ChatClient, _Chat()), shown.append, lambda _text: None, interactive=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(room.run_results)
        room.handle(typed)  # never answered
        with trio.move_on_after(60):
            await wait_to_leave(room, shown.append)
        nursery.cancel_scope.cancel()
    assert [to_plain(line) for line in shown] == [
        f"Leaving once the daemon {awaited} (Ctrl-C: leave now)."
    ]


async def test_leaving_with_everything_answered_says_nothing_of_waiting() -> None:
    chat = _Chat()
    shown: list[Line] = []
    room = Room(cast(ChatClient, chat), shown.append, lambda _text: None, interactive=True)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(room.run_results)
            room.handle("answered at once")
            chat.answer.message = message(3, "alice", "answered at once")
            chat.answer.answered.set()
            await wait_to_leave(room, shown.append)
            nursery.cancel_scope.cancel()
    lines = [to_plain(line) for line in shown]
    assert len(lines) == 1 and lines[0].endswith("] alice: answered at once"), lines


def said(shown: list[Line]) -> list[str]:
    """The messages shown, without their time."""
    lines = ["".join(text for _style, text in line) for line in shown]
    return [line.split("] ", 1)[1] for line in lines if ": " in line and "said" in line]


@pytest.mark.parametrize("interactive", [False, True])
async def test_ones_own_message_answered_before_a_later_one_is_shown_before_it(
    interactive: bool,
) -> None:
    """Under loss the `ok` of alice's message (id 3) and bob's next message (id 4) come
    together, in that order: her screen shows them in that order too, as everyone
    else's does (her own is shown by a task of its own, which may run later)."""
    async with room_on_screen(interactive=interactive) as (chat, room, shown):
        room.handle("mine, said first")
        await trio.testing.wait_all_tasks_blocked()
        chat.answer.message = message(3, "alice", "mine, said first")
        chat.answer.answered.set()
        chat.events_in.send_nowait(message(4, "bob", "his, said after"))
        await trio.testing.wait_all_tasks_blocked()
        await chat.events_in.aclose()
    assert said(shown) == ["alice: mine, said first", "bob: his, said after"]


@pytest.mark.parametrize("interactive", [False, True])
async def test_a_message_stored_before_ones_own_answered_one_is_shown_before_it(
    interactive: bool,
) -> None:
    async with room_on_screen(interactive=interactive) as (chat, room, shown):
        room.handle("mine, said second")
        await trio.testing.wait_all_tasks_blocked()
        chat.events_in.send_nowait(message(3, "bob", "his, said first"))
        chat.answer.message = message(4, "alice", "mine, said second")
        chat.answer.answered.set()
        await trio.testing.wait_all_tasks_blocked()
        await chat.events_in.aclose()
    assert said(shown) == ["bob: his, said first", "alice: mine, said second"]


async def test_a_script_is_not_told_that_those_there_before_it_joined_after_an_outage() -> None:
    """After a daemon restart everyone comes back: a script, which never printed who was
    there, printed "* bob joined the room" for each of them."""
    async with room_on_screen(interactive=False) as (chat, _room, shown):
        chat.online = ["alice", "bob"]
        await chat.events_in.send(History((), more=False))
        await trio.testing.wait_all_tasks_blocked()
        await chat.events_in.send(Disconnected("the daemon went away"))
        await chat.events_in.send(Reconnected())
        await chat.events_in.send(History((), more=False, resumed=True))
        await chat.events_in.send(Joined("bob", datetime.now(UTC), back=True))
        await chat.events_in.send(Joined("carol", datetime.now(UTC)))  # new: told
        await trio.testing.wait_all_tasks_blocked()
        await chat.events_in.aclose()
    joins = [to_plain(line) for line in shown if "joined" in to_plain(line)]
    assert len(joins) == 1 and "carol joined" in joins[0]


async def test_a_line_refused_before_sending_is_given_back_and_only_that_line() -> None:
    """A mistyped command comes back to be mended; a line that could not be read as text
    has nothing to give back (the line typed before it is not handed back again)."""
    async with room_on_screen(interactive=True) as (_chat, room, _shown):
        given: list[str] = []
        room.give_back = given.append
        room.handle("/histroy 5")
        room.handle("hello")
        room.refuse("Not sent: the line is not UTF-8 text.")
        assert given == ["/histroy 5"]


async def test_help_on_a_screen_comes_at_once_while_a_message_waits() -> None:
    """A script's `/help` waits its turn; a person's does not wait for a daemon away."""
    async with room_on_screen(interactive=True) as (_chat, room, shown):
        room.handle("never answered")
        room.handle("/help")
        assert any("/history [n]" in to_plain(line) for line in shown)


@pytest.mark.parametrize(
    ("text", "quoted"),
    [("x" * 40, "x" * 40), ("y" * 41, "y" * 39 + "…")],
)
async def test_a_refused_line_is_quoted_whole_up_to_40_characters(text: str, quoted: str) -> None:
    async with room_on_screen(interactive=True) as (_chat, room, shown):
        room.handle(f"s/nobody/{text}")
        await trio.testing.wait_all_tasks_blocked()
    assert to_plain(shown[-1]).startswith(f"Not sent to nobody ('{quoted}'):")


async def test_a_line_refused_as_the_person_leaves_is_still_told() -> None:
    """Leaving hides only the lost connection's refusals (told already): a private
    message to nobody, refused as the person pressed Ctrl-D, was not delivered."""
    async with room_on_screen(interactive=True) as (_chat, room, shown):
        room.handle("s/nobody/hi")
        room.leaving = True
        await trio.testing.wait_all_tasks_blocked()
    assert to_plain(shown[-1]).startswith("Not sent to nobody ('hi')")


async def test_a_question_the_lost_connection_leaves_unanswered_is_not_told_after_leaving() -> None:
    async with room_on_screen(interactive=True) as (chat, room, shown):
        question = _Answer()
        chat.who_nowait = lambda: question  # type: ignore[method-assign]
        room.handle("/who")
        room.leaving = True
        question.refusal = ConnectionLost("The connection to trio-chat was lost.")
        question.answered.set()
        await trio.testing.wait_all_tasks_blocked()
    assert shown == []


async def test_older_goes_back_from_the_oldest_room_message_not_a_private_one() -> None:
    """A whisper that waited since long before is not where the room's pages begin."""
    async with room_on_screen(interactive=True) as (chat, room, _shown):
        whisper = PrivateMessage(2, message(2, "bob", "").ts, "bob", "alice", "waited")
        await chat.events_in.send(History((whisper, message(5, "bob", "hi")), more=False))
        await trio.testing.wait_all_tasks_blocked()
        room.handle("/older 5")
        await trio.testing.wait_all_tasks_blocked()
    assert chat.history_asked == [5]


@pytest.mark.parametrize("back", [["alice", "bob"], ["alice"]], ids=["all-back", "bob-away"])
async def test_leaving_after_an_outage_does_not_say_who_is_here(
    autojump_clock: trio.testing.MockClock, back: list[str]
) -> None:
    async with room_on_screen(interactive=True, within=RETURN_SETTLE + 5) as (chat, room, shown):
        chat.online = ["alice", "bob"]
        await chat.events_in.send(History((), more=False))
        await trio.testing.wait_all_tasks_blocked()
        await chat.events_in.send(Disconnected("the daemon went away"))
        await chat.events_in.send(Reconnected())
        chat.online = back
        room.leaving = True
        await chat.events_in.send(History((), more=False, resumed=True))
        await trio.sleep(RETURN_SETTLE + 1)
    assert online_lines(shown) == ["Online (2): alice, bob"]


async def test_a_line_typed_while_away_is_shown_when_the_session_ends_before_the_history() -> None:
    """Its answer came, then the session ended before what was missed: shown, not
    waited for until the end of time."""
    async with room_on_screen() as (chat, room, shown):
        await type_while_away(chat, room)
        await chat.events_in.aclose()
    assert seen(shown) == ["alice: typed while away"]


async def test_a_message_removed_is_said_to_be_once() -> None:
    """The removal comes again to a client back from an outage: told once."""
    async with room_on_screen() as (chat, _room, shown):
        await chat.events_in.send(message(1, "bob", "oops"))
        await chat.events_in.send(MessageRemoved(1))
        await chat.events_in.send(MessageRemoved(1))
        await chat.events_in.aclose()
    removed = [to_plain(line) for line in shown if "removed" in to_plain(line)]
    assert len(removed) == 1 and "bob's message" in removed[0], removed


async def test_a_line_typed_once_back_goes_out_at_once_unmarked() -> None:
    async with room_on_screen(interactive=True) as (chat, room, shown):
        await chat.events_in.send(Disconnected("the daemon went away"))
        await chat.events_in.send(Reconnected())
        await chat.events_in.send(History((), more=False, resumed=True))
        await trio.testing.wait_all_tasks_blocked()
        assert room.connected
        room.handle("typed once back")
        chat.answer.message = message(3, "alice", "typed once back")
        chat.answer.answered.set()
        await trio.testing.wait_all_tasks_blocked()
    assert seen(shown) == ["* No message was missed meanwhile.", "alice: typed once back"]
    # Nothing was missed: no heading for what was, nor where it ends.
    assert not any("--" in to_plain(line) for line in shown)


async def test_a_message_removed_before_it_came_is_shown_as_removed() -> None:
    """The removal overtook the message (an answer to a resend, a page read meanwhile):
    its words, which the operator took out of the room, are not shown."""
    async with room_on_screen() as (chat, _room, shown):
        await chat.events_in.send(MessageRemoved(1))
        await chat.events_in.send(message(1, "bob", "a secret pasted by mistake"))
        await chat.events_in.aclose()
    lines = [to_plain(line) for line in shown]
    assert len(lines) == 1 and "the operator removed bob's message" in lines[0], lines


class _Ended(_Chat):
    """A session the daemon ends."""

    async def events(self) -> AsyncIterator[Event]:
        raise ConnectionLost("The daemon ended the session.")
        yield


@pytest.mark.parametrize("interactive", [False, True])
async def test_a_session_ending_as_one_leaves_is_a_failure_for_a_script_only(
    interactive: bool,
) -> None:
    """A person who left is not told the session ended after that; a script is: what
    never reached the daemon is its failure."""
    quiet = lambda _said: None  # noqa: E731
    room = Room(cast(ChatClient, _Ended()), quiet, quiet, interactive=interactive)
    room.leaving = True
    with trio.fail_after(5):
        await room.show_events()
    assert isinstance(room.fatal, ConnectionLost) is not interactive


async def test_older_after_a_whole_resumed_history_goes_back_from_the_oldest_shown() -> None:
    """A resume that brought all that was missed (no `more`, no gap): `/older` goes back
    from the oldest message shown, not from a gap there is none of."""
    async with room_on_screen(interactive=True) as (chat, room, shown):
        await chat.events_in.send(History((message(5, "bob", "before"),), more=False))
        await chat.events_in.send(Disconnected("the daemon went away"))
        await chat.events_in.send(Reconnected())
        await chat.events_in.send(History((message(6, "bob", "missed"),), more=False, resumed=True))
        await trio.testing.wait_all_tasks_blocked()
        room.handle("/older 5")
        await trio.testing.wait_all_tasks_blocked()
    assert chat.history_asked == [5]
    lines = ["".join(text for _style, text in line) for line in shown]
    assert [line for line in lines if "Missed while away" in line] == [
        "-- Missed while away: 1 message --"
    ]


async def test_older_after_a_history_of_only_what_was_shown_goes_back_from_the_gap() -> None:
    """The unread whisper, shown before the absence and sent again as unread, took all
    the room the history had: it brought nothing new, and said more was missed, up to 12
    (`gap`). `/older` goes back from there, and the terminal does not say that nothing
    was missed."""
    async with room_on_screen(interactive=True) as (chat, room, shown):
        whisper = PrivateMessage(2, message(2, "bob", "").ts, "bob", "alice", "waiting")
        await chat.events_in.send(History((message(1, "bob", "before"), whisper), more=False))
        await chat.events_in.send(Disconnected("the daemon went away"))
        await chat.events_in.send(Reconnected())
        await chat.events_in.send(History((whisper,), more=True, resumed=True, gap=12))
        await trio.testing.wait_all_tasks_blocked()
        room.handle("/older 5")
        await trio.testing.wait_all_tasks_blocked()
    assert chat.history_asked == [12]
    lines = ["".join(text for _style, text in line) for line in shown]
    assert not [line for line in lines if "No message was missed" in line]
    assert [line for line in lines if "Missed while away" in line] == [
        "-- Missed while away: older messages; /older shows them --"
    ]
