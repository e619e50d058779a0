"""When a client's connection sends a `ping`: after `interval` seconds without sending,
on a whole second of the daemon's clock.

A daemon's idle sessions then ping on the same instants, and the daemon reads their
keepalives dozens at a time: each wake-up of its event loop costs far more than a
keepalive does (spread evenly, 10,000 sessions woke an idle daemon ~100 times a second).
The daemon's clock comes from its `welcome` (the moment it was sent, so this client's
estimate is late by the datagram's way here); the ping leaves a round trip early, which
that lateness and the ping's own way there make up. Before a `welcome` told the time,
this machine's Unix time serves (clocks kept by NTP agree within milliseconds). Each
connection pings up to a quarter of the interval early (its `lead` of it), so that
sessions that a message to the room set in step (every client acknowledges it at once)
do not all ping on the same second a minute later: they spread over up to 15 seconds (4
for the 15 s interval). The interval never grows.
"""

from __future__ import annotations

import math
import secrets

from .. import wire

KEEPALIVE_SPREAD = 0.25
"""Share of the keepalive interval over which connections spread their pings: each sends
its own up to this much early, by a whole number of seconds (see `Keepalive.due`)."""
KEEPALIVE_PATIENCE = 0.25
"""Seconds a lone keepalive waits for its acknowledgement beyond the probe timeout before
it goes again: a daemon answering the pings of thousands of sessions that came on the
same second takes tens of milliseconds to reach the last of them."""


class Keepalive:
    """One connection's keepalive: its interval, its clocks, and when it last sent."""

    __slots__ = (
        "daemon_offset",
        "interval",
        "last_sent",
        "lead",
        "stays_at_default",
        "wall_offset",
    )

    def __init__(self, configured: float | None) -> None:
        self.interval = configured or wire.KEEPALIVE
        """Seconds without sending after which a `ping` goes out, as the daemon allowed."""
        self.lead = secrets.randbelow(1 << 16) / (1 << 16)
        """Where this connection's pings fall in `KEEPALIVE_SPREAD` (0 to 1), drawn once."""
        self.wall_offset = 0.0
        """Unix time minus the clock `now` is read from (the shell sets it): pings go out on
        whole seconds of Unix time until the daemon's `welcome` tells its own time."""
        self.daemon_offset: float | None = None
        """The daemon's Unix time minus `now`'s clock, as its last `welcome` showed it
        (late by that datagram's way here), or None before one did."""
        self.last_sent = 0.0
        """When the connection last sent a datagram."""
        self.stays_at_default = False
        """The daemon found the way in closed after a long silence: stay at the default."""

    def may_lengthen(self, configured: float | None) -> bool:
        """Whether the daemon may be offered a longer interval (a login's `via`): not if
        the config sets one no longer than the protocol's (`configured`,
        `ClientConfig.keepalive`), nor after the way in was found closed."""
        longer = configured is None or configured > wire.KEEPALIVE
        return longer and not self.stays_at_default

    def channel_opened(self, now: float, configured: float | None) -> None:
        """A new channel: the interval the config sets, up to the protocol's, until
        welcomed (only a `welcome` may allow a longer one)."""
        self.last_sent = now
        self.interval = min(configured, wire.KEEPALIVE) if configured else wire.KEEPALIVE

    def sent(self, now: float) -> None:
        """The connection sent a datagram: the interval counts from now."""
        self.last_sent = now

    def welcomed(
        self, allowed: float | None, daemon_time: float | None, now: float, configured: float | None
    ) -> None:
        """The daemon's `welcome` allowed an interval (None: the protocol's) and told its
        time (`daemon_time`, its Unix time as it sent it); the config's own interval
        (`configured`), if it sets one, holds up to what the daemon allows."""
        allowance = allowed or wire.KEEPALIVE
        # The daemon closes a session silent for three times its allowance (45 s for the
        # protocol's 15 s, less after `serve --idle-timeout 9`): a longer interval of this
        # client's own would have the session closed again and again.
        self.interval = min(configured, allowance) if configured else allowance
        if daemon_time is not None:
            self.daemon_offset = daemon_time - now

    def found_closed(self, every: float) -> None:
        """What came while the connection was silent was dropped on the way: from now on,
        ping as often as the daemon asks (`every`)."""
        self.stays_at_default = True
        self.interval = min(self.interval, every)

    def due(self, srtt: float | None) -> float:
        """When the next `ping` goes out, given the link's smoothed RTT: on a whole second
        of the daemon's clock, up to `KEEPALIVE_SPREAD` of `interval` (this connection's
        `lead` of it) before `interval` has passed since the last datagram sent."""
        interval = self.interval
        due = self.last_sent + interval
        offset = self.wall_offset
        if self.daemon_offset is not None:
            offset = self.daemon_offset + (srtt or 0.0)
        early = math.floor(self.lead * KEEPALIVE_SPREAD * interval)
        aligned = math.floor(due + offset) - offset - early
        return aligned if aligned > self.last_sent else due
