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


class SeenIds:
    """The ids of the messages already handed on: so that a message the daemon sends
    again (a resumed session's history overlapping what came live) is shown once.

    A ring of `span` ids, each id in the slot `id % span`: an id is remembered until one
    `span` or more newer takes its slot, so the `span` newest ids always are. A set of
    the last ids would grow its table in steps (to 2 MB for 20,000 ids, rebuilt now and
    then as ids come and go), and every connection of a process that receives the same
    room grew and rebuilt it at the same message: a pause of a millisecond each, all at
    once. Ids come from one counter on the daemon and only grow on a connection.
    """

    __slots__ = ("_ids", "span")

    def __init__(self, span: int) -> None:
        self.span = span
        self._ids = array.array("q", [-1]) * span

    def __contains__(self, message_id: int) -> bool:
        return self._ids[message_id % self.span] == message_id

    def add(self, message_id: int) -> None:
        slot = message_id % self.span
        if message_id > self._ids[slot]:  # an older id never pushes out a newer one
            self._ids[slot] = message_id
