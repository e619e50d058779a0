"""The daemon's settings: every limit and timing the engine follows."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..reliability import LinkConfig


def daemon_link() -> LinkConfig:
    """The daemon's side of a session's link.

    It acknowledges within 10 ms (or every second datagram); clients within 25 ms (or
    every 16 frames), which its probe timeout counts in. It gives a client up after 20 s
    without an acknowledgement of anything it sent.
    """
    return LinkConfig(ack_delay=0.010, ack_every=2, peer_ack_delay=0.025, give_up_after=20.0)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    link: LinkConfig = field(default_factory=daemon_link)
    idle_timeout: float = 45.0
    """A session the daemon has not heard from for this long is closed (three of the
    protocol's 15 s keepalives)."""
    direct_keepalive: float = 60.0
    """The keepalive allowed a client whose own address is the one the daemon sees (no
    NAT on the way, whose mapping its pings would have to keep open); 15 s or less
    turns this off. Its session is closed after `direct_idle_timeout` of silence, and
    given up after this much more than the link's own `give_up_after`."""
    direct_idle_timeout: float = 180.0
    history_on_login: int = 20
    resume_limit: int = 500
    window_messages: int = 5000
    notice_limit: int = 200
    """Join and leave notices are sent only while at most this many accounts are online."""
    notice_burst: int = 4
    notice_rate: float = 1 / 30
    """Joins of one account the room is told of: `notice_burst` at once, then one every 30
    s (its leaves follow its joins: a join not told has no leave told either). Someone
    who comes and goes in a loop cannot fill everyone's screen."""
    max_sessions_per_address: int = 16
    max_sessions_per_account: int = 8
    max_queued_bytes: int = 64 * 1024 * 1024
    """Bytes all sessions' links hold (queued to send, or received early and waiting for a
    gap to fill); past it, the sessions holding most are closed until it is back under
    nine tenths."""
    message_rate: float = 5.0
    message_burst: int = 20
    question_rate: float = 10.0
    """`who`, `history` and `change_password` requests a session may make a second, after
    `question_burst`."""
    question_burst: int = 20
    reads_per_session: int = 2
    """`history` requests of one session read from the database at once; more are
    answered `rate_limited` (the client asks again shortly)."""
    registrations: bool = True
    """Whether anyone may register; closed (False), every `register` is refused
    `registrations_closed` before its name is looked at, and accounts are made by the
    operator (`trio-chat accounts add`)."""
    register_rate: float = 1 / 60
    """Registrations per second from one address, steadily (one a minute); rates here
    are per second, as the command's options are per minute where that reads better."""
    register_burst: int = 5
    login_free_failures: int = 3
    login_delay: float = 1.0
    login_delay_max: float = 60.0
    checks_per_address: int = 2
    """Login password checks one address may have queued or running. Registrations' hashes
    are bounded by the registration limits instead (`register_burst`, `register_rate`),
    and wait in the same fair queue."""
    hash_slots: int = 2
    """Password checks handed to the hashing threads at once; the rest wait, fairly."""
    hash_queue_limit: int = 256
    """Password checks waiting in all; past it, new ones are answered `busy`."""
    register_rate_total: float = 1.0
    """Registrations per second from all addresses together (60 a minute)."""
    register_burst_total: int = 60
    mailbox_limit: int = 1000
    amplification_factor: int = 3
    """A moved session's new address gets at most this many times what it sent, until it
    answers the path challenge."""
    tracked_addresses: int = 65536
    login_timeout: float = 10.0
    """A channel not logged in this long after its handshake is closed."""
    unproven_before_retry: int = 64
    """Once this many channels wait for their client's first record, a new handshake must
    first echo a cookie (`RETRY`): a spoofed flood then costs no state and no DH."""
    unproven_per_address: int = 4
    """Once an address's network has this many channels waiting for their first record,
    its next handshake must echo a cookie too; a channel opened with a cookie counts
    against the network's cap at once (its address is proven), so one address holds at
    most this many plus `max_sessions_per_address`, and spoofed INITs, which cannot echo a
    cookie, never take the room of the address they claim."""
    handshake_rate: float = 10.0
    handshake_burst: int = 20
    """Handshakes a second from one address's network, after a burst of this many, checked
    before the Diffie-Hellman each costs; past it, `busy` with `retry_after`. Spent only by
    a handshake that opens a channel (or fails after a cookie proved its address):
    `INIT`s spoofed from an address spend at most `unproven_per_address` of its allowance
    per `login_timeout` (the channels they open wait for a client that never answers, then
    close), and those that do not decrypt spend none."""
    max_connections: int = 20_000
    """Channels open at once, logged in or not; past it, handshakes are refused (`busy`)."""
    ticket_lifetime: float = 24 * 3600.0
    """Seconds a resumption ticket logs its owner in without the password."""
    ended_session_memory: float = 30.0
    """How long datagrams of an ended session are dropped quietly, not answered
    `session_unknown` (the acknowledgement of a logout's `ok`, say)."""
