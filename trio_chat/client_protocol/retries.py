"""When a connection tries again: a login the daemon put off, and a channel opened again
after a lost session, backing off while no daemon answers; and when, coming back, it
gives up (`ClientConfig.reconnect_for`)."""

from __future__ import annotations

from ..errors import Busy, ChatError, Throttled
from .config import ClientConfig

RELOGIN_DELAY = 0.5
"""Seconds before a channel is opened again after a try that found no daemon; doubled at
each try that fails, up to `reconnect_delay_max`."""
THROTTLE_WAITED_OUT = 5.0
"""Seconds at most a login told to wait (`throttled`, after failed ones from this address
or for this account) waits by itself before it is sent again. A first login told to wait
longer fails with the `Throttled` (the caller's to decide on); a login coming back after a
lost session waits it out (within `reconnect_for`)."""


def put_off(error: ChatError) -> bool:
    """The login was not checked, only put off: queued behind others' checks (`Busy`), or
    told to wait no longer than `THROTTLE_WAITED_OUT`; after the wait, it goes again."""
    return isinstance(error, Busy) or (
        isinstance(error, Throttled) and (error.retry_after or 0.0) <= THROTTLE_WAITED_OUT
    )


class Retries:
    """A connection's way back after a lost session: since when it has been away, and how
    long it waits before it opens a channel again."""

    __slots__ = ("delay", "lost_at")

    def __init__(self) -> None:
        self.lost_at: float | None = None
        """When the session was lost, while it has not come back (`reconnect_for`): set
        only while coming back (a first login has its own `timeout`)."""
        self.delay = RELOGIN_DELAY
        """The wait before the next channel if this one finds no daemon."""

    def lost(self, now: float) -> None:
        """The session was lost (again): the time away counts from the first loss."""
        if self.lost_at is None:
            self.lost_at = now

    def back(self) -> None:
        """Back in a session: no longer away."""
        self.lost_at = None

    def channel_opened(self) -> None:
        """A daemon answered: the next channel that finds none waits the least again."""
        self.delay = RELOGIN_DELAY

    def try_again_at(self, now: float, delay: float, config: ClientConfig) -> float:
        """`now + delay`, but while coming back no later than `reconnect_for` runs out: the
        try made then, if it fails too, gives up (a daemon that says to wait an hour does
        not hold a client told to give up after a minute)."""
        limit = config.reconnect_for
        if limit is None or self.lost_at is None:
            return now + delay
        return min(now + delay, max(now, self.lost_at + limit))

    def reopen_at(self, now: float, retry_after: float | None, config: ClientConfig) -> float:
        """When to open a channel again after one that found no daemon (or was told to wait
        `retry_after`); each such try waits twice as long as the one before, and never
        longer than `reconnect_delay_max` (the first one included, when it is set below
        `RELOGIN_DELAY`)."""
        delay = (
            retry_after if retry_after is not None else min(self.delay, config.reconnect_delay_max)
        )
        self.delay = min(self.delay * 2, config.reconnect_delay_max)
        return self.try_again_at(now, delay, config)

    def gone_for_good(self, now: float, config: ClientConfig) -> bool:
        """Not back in a session for `reconnect_for` since the session was lost."""
        limit = config.reconnect_for
        return limit is not None and self.lost_at is not None and now - self.lost_at >= limit
