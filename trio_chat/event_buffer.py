"""The events a program has not read yet, at most so many: `EventBuffer`."""

from __future__ import annotations

from collections import deque
from typing import Final

import msgspec
import trio

from .events import Disconnected, Event, History, Missed, Reconnected, gap_end

_KEPT: Final = (History, Disconnected, Reconnected)
"""Events not dropped one by one: a reader waits for the `History` after `Reconnected`,
and shows a session as lost until it is told otherwise. An outage that is over (from its
`Disconnected` to the `History` after it) goes whole, as what it missed, once it is the
oldest: it tells nothing of the session now, and a bot that never reads, running for days
through restarts, would otherwise keep every one of them. Only a `History` that says
`more` stays, emptied: where its gap ends is for no other event to tell."""


class EventBuffer:
    """A queue of events from the connection to `events()` that keeps the newest `kept`.

    A program that never reads (a bot that only posts) would otherwise keep everything the
    room says for as long as it runs. Past `kept` the oldest unread message, join, leave,
    notice or removal goes (or the oldest outage that is over, with what it missed), and
    a `Missed` takes its place (or counts it, next to one already there), so that a reader
    learns how many went, and where."""

    def __init__(self, kept: int) -> None:
        if kept < 1:
            raise ValueError(f"events_kept must be at least 1, not {kept}")
        self._kept = kept
        self._events: deque[Event] = deque()
        self._count = 0
        """Events waiting, the `Missed` among them not counted."""
        self._gone = 0
        """Events that went before being read, each counted in a `Missed`."""
        self._taken = 0
        """Events read (a `Missed` not counted)."""
        self._read = 0
        """Events read and done with: `_taken` when the reader last came back for more."""
        self._closed = False
        self._lot = trio.lowlevel.ParkingLot()
        self._reads = trio.lowlevel.ParkingLot()
        """Who waits for events to be read (`read_through`)."""

    def __len__(self) -> int:
        """Events waiting to be read (a `Missed` not counted)."""
        return self._count

    def put(self, event: Event) -> None:
        if self._closed:
            return
        self._events.append(event)
        self._count += 1
        if self._count > self._kept:
            self._drop_oldest()
        self._lot.unpark_all()

    def _drop_oldest(self) -> None:
        events = self._events
        outage: int | None = None  # where the oldest outage waiting began (`Disconnected`)
        for end, event in enumerate(events):
            if isinstance(event, Disconnected):
                outage = end if outage is None else outage
            elif isinstance(event, History) and outage is not None:
                at = outage  # it is over, and nothing in it can go alone: all of it goes
                break
            elif not isinstance(event, (*_KEPT, Missed)):
                at = end
                break
        else:
            return  # only events that are kept: a few more than `kept`, then
        if end == at:  # one event: the common case, in place
            before = events[at - 1] if at else None
            if isinstance(before, Missed):
                events[at - 1] = Missed(before.count + 1)
                del events[at]
            else:
                events[at] = Missed(1)
            dropped = 1
        else:
            dropped = self._drop_outage(at, end)
        self._count -= dropped
        self._gone += dropped
        self._reads.unpark_all()

    def _drop_outage(self, at: int, end: int) -> int:
        """Drop the events from `at` to `end` (an outage that is over) for a `Missed` that
        counts the messages its `History` brought; return how many events went. A
        `History` that brought only the newest of what was missed (`more`) stays, its
        messages gone: what was missed before its `gap`, no event brought, and a reader
        pages back for it from there."""
        events = self._events
        missed = dropped = 0
        gap: History | None = None
        for _ in range(end - at + 1):
            gone = events[at]
            del events[at]
            if isinstance(gone, Missed):
                missed += gone.count
                continue
            if isinstance(gone, History):
                missed += len(gone.messages)
                if gone.more:
                    where = gap_end(gone.messages, gone.gap)
                    gap = msgspec.structs.replace(gone, messages=(), gap=where or gone.gap)
                    continue  # kept, emptied
            elif not isinstance(gone, (Disconnected, Reconnected)):
                missed += 1
            dropped += 1
        for beside in (at, at - 1):  # a `Missed` next to the place counts these too
            if 0 <= beside < len(events) and isinstance(near := events[beside], Missed):
                missed += near.count
                del events[beside]
                at = beside
        if gap is not None:
            events.insert(at, gap)
        if missed:
            events.insert(at, Missed(missed))
        return dropped

    @property
    def arrived(self) -> int:
        """How many events have been put so far: a mark for `read_through` (each one is
        waiting, read, or gone for a `Missed`)."""
        return self._count + self._taken + self._gone

    async def read_through(self, mark: int) -> None:
        """Wait until `mark` events have been read (or counted in a `Missed`), each read
        one done with: its reader has come back for the next. With nobody reading, that
        is for good."""
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = False
        while self._read + self._gone < mark:
            await self._reads.park()
            parked = True
        if not parked:
            await trio.lowlevel.cancel_shielded_checkpoint()

    def close(self) -> None:
        """No more events come: readers get what is here, then the end."""
        self._closed = True
        self._lot.unpark_all()

    async def get(self) -> Event | None:
        """The next event, waiting for one if need be; None once closed and read out."""
        if self._read != self._taken:
            self._read = self._taken  # the reader is done with what it had
            self._reads.unpark_all()
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = False
        while not (self._events or self._closed):
            await self._lot.park()
            parked = True
        event: Event | None = None
        if self._events:
            event = self._events.popleft()
            if not isinstance(event, Missed):
                self._count -= 1
                self._taken += 1
        if not parked:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return event
