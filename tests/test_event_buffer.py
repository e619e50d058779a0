"""`EventBuffer`: the events a program has not read, the newest `kept` of them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import trio
import trio.testing

from trio_chat.event_buffer import EventBuffer
from trio_chat.events import (
    Disconnected,
    Event,
    History,
    Missed,
    Notice,
    PublicMessage,
    Reconnected,
)


def notices(*texts: str) -> list[Event]:
    return [Notice(text) for text in texts]


async def read_all(buffer: EventBuffer) -> list[Event]:
    read: list[Event] = []
    while (event := await buffer.get()) is not None:
        read.append(event)
    return read


async def test_past_its_size_the_oldest_go_and_the_next_read_says_how_many() -> None:
    buffer = EventBuffer(3)
    for event in notices("a", "b", "c", "d", "e"):
        buffer.put(event)
    assert len(buffer) == 3
    assert await buffer.get() == Missed(2)
    assert await buffer.get() == Notice("c")
    for event in notices("f", "g", "h"):  # "d" and "e" go: after "c", before "f"
        buffer.put(event)
    buffer.close()
    assert await read_all(buffer) == [Missed(2), *notices("f", "g", "h")]


async def test_readers_wait_for_events_and_share_them_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    buffer = EventBuffer(10)
    got: dict[str, list[Event]] = {"one": [], "two": []}

    async def reader(name: str) -> None:
        while (event := await buffer.get()) is not None:
            got[name].append(event)
            await trio.sleep(1)  # busy with it meanwhile

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader, "one")
        nursery.start_soon(reader, "two")
        await trio.sleep(5)
        assert got == {"one": [], "two": []}  # waiting, not spinning
        for event in notices("a", "b", "c", "d"):
            buffer.put(event)
            await trio.sleep(0.5)
        buffer.close()
        buffer.put(Notice("after the end"))
    both = sorted([*got["one"], *got["two"]], key=lambda e: e.text)  # type: ignore[union-attr]
    assert both == notices("a", "b", "c", "d")
    assert got["one"] and got["two"]


async def test_a_waiting_read_can_be_cancelled_and_a_ready_one_is_a_checkpoint(
    autojump_clock: trio.testing.MockClock,
) -> None:
    buffer = EventBuffer(2)
    with trio.move_on_after(1) as waited:
        await buffer.get()
    assert waited.cancelled_caught
    buffer.put(Notice("a"))
    with trio.CancelScope() as scope:
        scope.cancel()
        await buffer.get()
    assert scope.cancelled_caught and len(buffer) == 1  # nothing taken by a cancelled read
    with trio.testing.assert_checkpoints():
        assert await buffer.get() == Notice("a")


def test_a_buffer_must_keep_something() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        EventBuffer(0)


async def test_what_says_how_the_session_goes_is_kept_and_what_went_is_told_where_it_was() -> None:
    # A History, Disconnected or Reconnected dropped would leave a reader (the terminal)
    # waiting for history that never comes, or showing a session as lost for good.
    buffer = EventBuffer(3)
    history = History((), more=False)
    for event in [history, *notices("a", "b"), Disconnected("gone"), *notices("c", "d")]:
        buffer.put(event)
    assert len(buffer) == 3
    buffer.close()
    assert await read_all(buffer) == [
        history,
        Missed(2),  # "a" and "b"
        Disconnected("gone"),
        Missed(1),  # "c"
        Notice("d"),
    ]


async def test_the_session_coming_back_is_kept_as_its_loss_is() -> None:
    buffer = EventBuffer(4)
    history = History((), more=False)
    events = [history, *notices("a", "b"), Disconnected("gone"), Notice("c"), Reconnected()]
    for event in [*events, *notices("d", "e")]:
        buffer.put(event)
    buffer.close()
    assert await read_all(buffer) == [
        history,
        Missed(2),  # "a" and "b"
        Disconnected("gone"),
        Missed(1),  # "c"
        Reconnected(),
        Missed(1),  # "d"
        Notice("e"),
    ]


async def test_an_outage_long_over_goes_as_what_it_missed_when_the_reader_is_behind() -> None:
    # A bot that only posts, running for days through daemon restarts and lost networks:
    # each outage's Disconnected, Reconnected and History stayed for good, so the buffer
    # grew past its size without end (each History with up to 500 messages).
    buffer = EventBuffer(4)
    login = History((), more=False)
    buffer.put(login)
    for n in range(100):
        said = PublicMessage(n, datetime(2026, 1, 1, tzinfo=UTC), "bob", f"m{n}", history=True)
        resumed = History((said,), more=False, resumed=True)
        outage: list[Event] = [Notice(f"n{n}"), Disconnected("gone"), Reconnected(), resumed]
        for event in outage:
            buffer.put(event)
        assert len(buffer) <= 4
    buffer.put(Disconnected("gone again"))  # an outage not over: kept
    buffer.put(Notice("last"))
    buffer.close()
    # The login's History stays; the outages that are over went whole, each counted as
    # the message it missed, beside the notices; the outage going on is kept.
    assert await read_all(buffer) == [
        login,
        Missed(100 + 100),
        Disconnected("gone again"),
        Notice("last"),
    ]


async def test_events_that_went_for_a_missed_count_as_read_through_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A reader busy with an event it took does not hold back `read_through` for events
    that went, unread, while it was busy."""
    buffer = EventBuffer(1)
    buffer.put(Notice("a"))
    mark = buffer.arrived
    released: list[float] = []

    async def wait_for_the_mark() -> None:
        await buffer.read_through(mark)
        released.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_for_the_mark)
        await trio.sleep(1)
        assert released == []
        buffer.put(Notice("b"))  # "a" goes for a Missed, unread
        await trio.testing.wait_all_tasks_blocked()
        assert released == [1.0]


async def test_events_read_through_a_mark_once_the_reader_came_back_for_more(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """`read_through`: the events put before the mark have been read and done with (the
    reader asked for the next), or went for a `Missed`; it waits, it does not spin."""
    buffer = EventBuffer(2)
    for event in notices("a", "b"):
        buffer.put(event)
    mark = buffer.arrived
    buffer.put(Notice("c"))  # "a" goes for a Missed: it counts as gone
    assert mark == 2 and buffer.arrived == 3
    released: list[float] = []

    async def wait_for_the_mark() -> None:
        await buffer.read_through(mark)
        released.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait_for_the_mark)
        assert await buffer.get() == Missed(1)
        await trio.sleep(1)
        assert await buffer.get() == Notice("b")
        await trio.sleep(1)
        assert released == []  # "b" is read, but its reader is still busy with it
        with trio.move_on_after(1):
            await buffer.get()  # back for more: "c"
        await trio.testing.wait_all_tasks_blocked()
        assert released == [2.0]
    with trio.testing.assert_checkpoints():
        await buffer.read_through(mark)  # passed already: at once, a checkpoint still


async def test_outages_over_go_whole_however_they_came_and_every_event_is_accounted_for() -> None:
    said = [
        PublicMessage(n, datetime(2026, 1, 1, tzinfo=UTC), "bob", f"m{n}", history=True)
        for n in range(4)
    ]
    # Lost again before the History came: both outages go with it, and the one message
    # missed is told.
    buffer = EventBuffer(3)
    twice: list[Event] = [
        Disconnected("gone"),
        Reconnected(),
        Disconnected("gone again"),
        Reconnected(),
        History((said[0],), more=False, resumed=True),
    ]
    for event in twice:
        buffer.put(event)
    assert (len(buffer), buffer.arrived) == (0, 5)
    buffer.put(Notice("last"))
    buffer.close()
    assert await read_all(buffer) == [Missed(1), Notice("last")]
    # A notice gone during the outage, and those gone before it, are counted with the
    # messages it missed, in one `Missed`.
    buffer = EventBuffer(2)
    for event in [
        *notices("a", "b", "c"),
        Disconnected("gone"),
        Notice("x"),
        Reconnected(),
        History(tuple(said[1:]), more=False, resumed=True),
    ]:
        buffer.put(event)
    assert (len(buffer), buffer.arrived) == (0, 7)
    buffer.put(Notice("last"))
    buffer.close()
    assert await read_all(buffer) == [Missed(4 + 3), Notice("last")]


async def test_an_outage_that_goes_keeps_where_its_gap_ends_for_paging_back() -> None:
    # Away long enough that the resumed History brought only the newest of what was
    # missed (`more`): the messages before its `gap` came in no event, and a reader told
    # only `Missed(2)` would never page back for them.
    said = [
        PublicMessage(n, datetime(2026, 1, 1, tzinfo=UTC), "bob", f"m{n}", history=True)
        for n in (40, 41)
    ]
    buffer = EventBuffer(3)
    resumed = History(tuple(said), more=True, resumed=True, newest=41, gap=40)
    outage: list[Event] = [Disconnected("gone"), Reconnected(), resumed, Notice("last")]
    for event in outage:
        buffer.put(event)
    assert (len(buffer), buffer.arrived) == (2, 4)
    # From a daemon that does not say where the gap ends: where the client takes it to.
    old = History(tuple(said), more=True, resumed=True, newest=41)
    outage = [Disconnected("gone"), Reconnected(), old, Notice("again")]
    for event in outage:
        buffer.put(event)
    buffer.close()
    emptied = History((), more=True, resumed=True, newest=41, gap=40)
    assert await read_all(buffer) == [Missed(2), emptied, Missed(1 + 2), emptied, Notice("again")]
