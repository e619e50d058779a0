"""The daemon's settings: every limit and timing the engine follows."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..reliability import LinkConfig


def daemon_link() -> LinkConfig:
    """The daemon's side of a session's link.

    It acknowledges within 10 ms (or every second datagram); clients within 25 ms (or
    every fourth), which its probe timeout counts in. It gives a client up after 20 s
    without an acknowledgement of anything it sent.
    """
    return LinkConfig(ack_delay=0.010, ack_every=2, peer_ack_delay=0.025, give_up_after=20.0)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    link: LinkConfig = field(default_factory=daemon_link)
    idle_timeout: float = 45.0
    """A session the daemon has not heard from for this long is closed."""
    history_on_login: int = 20
    resume_limit: int = 500
    window_messages: int = 5000
    notice_limit: int = 200
    """Join and leave notices are sent only while at most this many accounts are online."""
    max_sessions_per_address: int = 16
    message_rate: float = 5.0
    message_burst: int = 20
    register_rate: float = 1 / 60
    register_burst: int = 5
    login_free_failures: int = 3
    login_delay: float = 1.0
    login_delay_max: float = 60.0
    mailbox_limit: int = 1000
    reply_cache_seconds: float = 60.0
    amplification_factor: int = 3
    tracked_addresses: int = 65536
    ended_session_memory: float = 30.0
    """How long datagrams of an ended session are dropped quietly, not answered
    `session_unknown` (the acknowledgement of a logout's `ok`, say)."""
