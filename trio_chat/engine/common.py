"""Small things every part of the engine uses: addresses, the outbox, timestamps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

Address = tuple[Any, ...]
"""A socket address as the socket module gives it: `(host, port)` or IPv6's 4-tuple."""

Outbox = list[tuple[bytes, Address]]
"""Datagrams the engine has decided to send, in order, waiting for the shell."""


def iso_time(wall: float) -> str:
    """A Unix time as the wire's timestamp: UTC, milliseconds, `Z`."""
    stamp = datetime.fromtimestamp(wall, tz=UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def round_up(seconds: float) -> float:
    """Seconds for a `retry_after`: to the millisecond, never below what is needed."""
    return round(seconds + 0.0005, 3)
