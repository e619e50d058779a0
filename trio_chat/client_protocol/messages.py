"""The daemon's messages as the events the client hands on, and its timestamps as times."""

from __future__ import annotations

import array
import functools
from datetime import UTC, datetime

from .. import wire
from ..events import ChatMessage, PrivateMessage, PublicMessage

_EARLIEST = datetime(2, 1, 1, tzinfo=UTC)
_LATEST = datetime(9998, 12, 31, tzinfo=UTC)
"""Times a screen can show: a day off the ends of `datetime`'s range, so that no local
time zone pushes them out of it."""


def parse_time(stamp: str) -> datetime:
    """A wire timestamp as an aware UTC datetime; `WireError` if it does not parse, or
    lies beyond what local time can show."""
    try:
        return _parsed_time(stamp)
    except (ValueError, OverflowError):
        raise wire.WireError("bad_field", "A timestamp could not be read.") from None


@functools.lru_cache(maxsize=64)
def _parsed_time(stamp: str) -> datetime:
    # Remembered: the messages of one moment share their stamp, and a program with many
    # connections sees each of them once per connection.
    parsed = datetime.fromisoformat(stamp).astimezone(UTC)
    if not _EARLIEST <= parsed <= _LATEST:
        raise ValueError("out of range")
    return parsed


def message_event(frame: wire.Msg | wire.Pm) -> ChatMessage:
    if isinstance(frame, wire.Msg):
        return PublicMessage(
            frame.id, parse_time(frame.ts), frame.sender, frame.text, history=frame.history
        )
    return PrivateMessage(
        frame.id, parse_time(frame.ts), frame.sender, frame.to, frame.text, history=frame.history
    )


SEEN_PAGE_BITS = 10
"""Slots of a `SeenIds` ring are made 2**10 at a time, as ids first reach them."""
_SEEN_PAGE_MASK = (1 << SEEN_PAGE_BITS) - 1
_EMPTY = -1
"""What an empty slot holds: no message id (`wire.Seq`, 0 to 2**53 - 1) is negative."""


class SeenIds:
    """The ids of the messages already handed on: so that a message the daemon sends
    again (a resumed session's history overlapping what came live) is shown once.

    A ring of `span` slots, each id in the slot `id % span`. An id is remembered until an
    id a multiple of `span` newer takes its slot, so every id within `span` of the newest
    one seen is remembered; an older id that comes after a newer one in its slot is not.
    The slots are made a page (`SEEN_PAGE_BITS`) at a time, as ids reach them: a
    connection that has seen few messages holds little for them, one that has seen many
    8 bytes a slot (160 KB for 20,000), and nothing is ever rebuilt (a set grows its
    table in steps, and every connection of a process that receives one room would grow
    it at the same message: docs/performance.md).
    """

    __slots__ = ("_pages", "span")

    def __init__(self, span: int) -> None:
        if span < 1:
            raise ValueError("a SeenIds ring needs at least one slot")
        self.span = span
        pages = (span + _SEEN_PAGE_MASK) >> SEEN_PAGE_BITS
        self._pages: list[array.array[int] | None] = [None] * pages

    def __contains__(self, message_id: int) -> bool:
        slot = message_id % self.span
        page = self._pages[slot >> SEEN_PAGE_BITS]
        return page is not None and page[slot & _SEEN_PAGE_MASK] == message_id

    def add(self, message_id: int) -> bool:
        """Remember `message_id`; whether it is news (not `in` the ring before), found in
        the same look at its slot."""
        slot = message_id % self.span
        number, index = slot >> SEEN_PAGE_BITS, slot & _SEEN_PAGE_MASK
        page = self._pages[number]
        if page is None:
            page = self._pages[number] = array.array("q", [_EMPTY]) * (1 << SEEN_PAGE_BITS)
        there = page[index]
        if message_id > there:  # an older id never pushes out a newer one
            page[index] = message_id
        return message_id != there
