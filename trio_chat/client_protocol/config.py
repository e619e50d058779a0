"""What the client core is told to do: `ClientConfig`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..reliability import LinkConfig


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """How a client waits, keeps its session alive, and comes back after losing it."""

    timeout: float = 5.0
    """Give up (`ServerUnreachable`) when the daemon has not answered a handshake this long
    (meeting a daemon whose key is not yet known, its key is waited for 2.5 s at most, or
    this if shorter)."""
    keepalive: float | None = None
    """Send a ping after this long without sending anything, or as soon as the daemon
    asks if that is sooner; None: as long as the daemon allows (`wire.KEEPALIVE`, 15 s, or
    more when no NAT is on the way)."""
    link: LinkConfig = field(
        # A client mostly listens: acknowledging every 16 frames (or after 25 ms) spares
        # a busy daemon most of the acks, at no cost to delivery. Sixteen is a quarter of
        # the daemon's window, so that its window never fills while an ack waits, and one
        # lost ack is covered by the next; a frame out of order is acknowledged at once,
        # as always. (`ack_frames` decides: every datagram counted brings a frame or more,
        # so 16 frames come no later than 16 datagrams.) The daemon acknowledges within
        # 10 ms, which the probe timeout counts in.
        default_factory=lambda: LinkConfig(
            ack_every=16,
            ack_frames=16,
            ack_delay=0.025,
            peer_ack_delay=0.010,
            max_pto=2.0,
            give_up_after=10.0,
        )
    )
    reconnect: bool = True
    """Log in again when the session is lost, instead of ending with `ConnectionLost`."""
    reconnect_delay_max: float = 5.0
    """While the daemon does not answer a new login, the wait before trying again doubles
    from half a second up to this long."""
    reconnect_for: float | None = None
    """Give up coming back (`ConnectionLost`) once the session has been lost this long
    without a new one (the daemon silent, busy or refusing meanwhile), at the next try
    that fails after it: up to `timeout` and `reconnect_delay_max` later. None: keep trying
    for as long as the program runs (a person sees that it is trying, and can leave)."""
    events_kept: int = 10_000
    """Events kept for `events()` while the program does not read them (the login's
    `History` among them): past this many the oldest messages, joins, leaves, notices and
    removals go (an outage that is over, whole, with what it brought, but for its `History`
    if that says `more`: emptied, its `gap` kept), and a `Missed`
    event says how many, where they were. A bot that only sends keeps no more."""
    retry_rate_limited: bool = True
    """Wait and resend a message the daemon refused as too fast, rather than failing. Off,
    the refusal (`RateLimited`) also holds back the messages sent after it for its
    `retry_after` and 10 s more: the daemon keeps them in order behind the refused one."""

    def __post_init__(self) -> None:
        for name in ("reconnect", "retry_rate_limited"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(
                    f"ClientConfig.{name} is True or False, not {getattr(self, name)!r}"
                )
        if not isinstance(self.link, LinkConfig):
            raise TypeError(f"ClientConfig.link must be a LinkConfig, not {self.link!r}")
        _seconds("timeout", self.timeout)
        if self.keepalive is not None:
            _seconds("keepalive", self.keepalive)
        _seconds("reconnect_delay_max", self.reconnect_delay_max)
        if self.reconnect_for is not None:
            _seconds("reconnect_for", self.reconnect_for)
        if isinstance(self.events_kept, bool) or not isinstance(self.events_kept, int):
            raise TypeError(
                f"ClientConfig.events_kept must be a whole number, not {self.events_kept!r}"
            )
        if self.events_kept < 1:
            raise ValueError(
                f"ClientConfig.events_kept must be at least 1, not {self.events_kept!r}"
            )


def _seconds(name: str, value: float) -> None:
    """Refuse a time no client could wait (nan, inf, zero or less), naming the field; a
    value that is no number at all (`"5"`) is of the wrong type, as elsewhere in the API."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"ClientConfig.{name} must be a number of seconds, not {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"ClientConfig.{name} must be a positive, finite number of seconds, not {value!r}"
        )
