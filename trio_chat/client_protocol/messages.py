"""The daemon's messages as the events the client hands on, and its timestamps as times."""

from __future__ import annotations

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
