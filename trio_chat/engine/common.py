"""Small things every part of the engine uses: addresses, the outbox, timestamps."""

from __future__ import annotations

import functools
import ipaddress
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Address = tuple[Any, ...]
"""A socket address as the socket module gives it: `(host, port)` or IPv6's 4-tuple."""


def network_of(address: Address) -> str:
    """What per-address limits count by: the IPv4 address, or an IPv6 address's /64 (one
    host, or one home or office network, holds a whole /64; it could rotate within it).

    An IPv4-mapped address (an IPv4 client as a dual-stack socket shows it) is its IPv4
    address: its /64 would be one network for every IPv4 client there is."""
    host = str(address[0])
    if ":" not in host:
        return host
    try:
        ip = ipaddress.IPv6Address(host.split("%")[0])
    except ValueError:
        return host
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))


def same_endpoint(via: tuple[str, int], address: Address) -> bool:
    """Whether a client's own socket address `via` is the `address` its datagrams come
    from: the same port and the same IP (an IPv4 address the same as its IPv6-mapped
    form, as a dual-stack socket shows it)."""
    if via[1] != address[1]:
        return False
    try:
        mine = ipaddress.ip_address(via[0].split("%")[0])
        seen = ipaddress.ip_address(str(address[0]).split("%")[0])
    except ValueError:
        return False
    if isinstance(seen, ipaddress.IPv6Address) and seen.ipv4_mapped is not None:
        seen = seen.ipv4_mapped
    if isinstance(mine, ipaddress.IPv6Address) and mine.ipv4_mapped is not None:
        mine = mine.ipv4_mapped
    return mine == seen


Outbox = list[tuple[bytes, Address]]
"""Datagrams the engine has decided to send, in order, waiting for the shell."""
Send = Callable[[Outbox], None]
"""Where the engine hands datagrams as they are sealed: the shell's sending."""
SEND_EARLY = 8
"""Datagrams sealed before they are handed on, while more are sealed: a message to the
room is sealed once per recipient, and the first recipients then have it while the
engine seals it for the last (in the bench's latency stream, a median a fifth lower
than with every copy sealed before the first is sent)."""


@functools.lru_cache(maxsize=8)
def iso_time(wall: float) -> str:
    """A Unix time as the wire's timestamp: UTC, milliseconds, `Z`.

    Kept for the last few times asked: the daemon stamps every message of a turn with
    the turn's time, so a burst of messages makes the string once (~1.5 us each)."""
    stamp = datetime.fromtimestamp(wall, tz=UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def round_up(seconds: float) -> float:
    """Seconds for a `retry_after`: to the millisecond, never below what is needed, and a
    wait of whole milliseconds as it is (a delay of 60 s is 60.0, not 60.001)."""
    if math.isinf(seconds):  # a rate of 0: never
        return seconds
    return math.ceil(round(seconds * 1000, 6)) / 1000
