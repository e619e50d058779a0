"""The events a program has not read yet, at most so many: `EventBuffer`."""

from __future__ import annotations

from collections import deque

import trio

from .events import Event, Missed


class EventBuffer:
    """A queue of events from the connection to `events()` that keeps the newest `kept`.

    A program that never reads (a bot that only posts) would otherwise keep everything the
    room says for as long as it runs. Past `kept` the oldest unread event goes; the next
    read is then a `Missed` with how many went (they were older than every event still
    here, and newer than every event read, so that is where they were)."""

    def __init__(self, kept: int) -> None:
        if kept < 1:
            raise ValueError(f"events_kept must be at least 1, not {kept}")
        self._kept = kept
        self._events: deque[Event] = deque()
        self._missed = 0
        self._closed = False
        self._lot = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        """Events waiting to be read (a `Missed` not counted)."""
        return len(self._events)

    def put(self, event: Event) -> None:
        if self._closed:
            return
        if len(self._events) >= self._kept:
            self._events.popleft()
            self._missed += 1
        self._events.append(event)
        self._lot.unpark_all()

    def close(self) -> None:
        """No more events come: readers get what is here, then the end."""
        self._closed = True
        self._lot.unpark_all()

    async def get(self) -> Event | None:
        """The next event, waiting for one if need be; None once closed and read out."""
        await trio.lowlevel.checkpoint_if_cancelled()
        parked = False
        while not (self._missed or self._events or self._closed):
            await self._lot.park()
            parked = True
        event: Event | None
        if self._missed:
            event, self._missed = Missed(self._missed), 0
        elif self._events:
            event = self._events.popleft()
        else:
            event = None
        if not parked:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return event
