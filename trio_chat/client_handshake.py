"""Opening a channel, with no I/O: the first flights a client sends and what answers them.

`Handshake` is one attempt at the Noise NK handshake (`INIT` until `RESPONSE`, a `RETRY`
answered with its cookie, a `KEY` or a refusal ending it); `KeyProbe` asks a daemon for
its static key (`KEY_REQUEST`), to trust it on first use. Both send their datagram again
on the same schedule, and give up with `ServerUnreachable` after their timeout; both have
the shape of `client_protocol.ClientConnection`, which runs a `Handshake` for each channel
it opens.
"""

from __future__ import annotations

from . import wire
from .errors import Busy, ChatError, KeyChanged, ProtocolError, ServerUnreachable, error_for
from .noise import fingerprint
from .secure import Channel, Initiation, SecureError, initiate


def unreachable(where: str) -> ServerUnreachable:
    return ServerUnreachable(f"Cannot reach trio-chat at {where}; is `trio-chat serve` running?")


def refusal(refused: wire.Refused, where: str) -> ChatError:
    """The error a `REFUSED` stands for; from a daemon of another version, that alone."""
    if refused.version != wire.PROTOCOL_VERSION:
        return ProtocolError(
            f"The daemon at {where} speaks version {refused.version} of the trio-chat "
            f"protocol, and this program version {wire.PROTOCOL_VERSION}; run the same "
            "version of trio-chat on both sides."
        )
    return error_for(refused.code, refused.message, refused.retry_after)


def key_changed(where: str, expected: bytes, found: bytes) -> KeyChanged:
    return KeyChanged(
        f"The daemon at {where} has the key {fingerprint(found)}, not the trusted "
        f"{fingerprint(expected)}; if it was changed on purpose, trust the new one "
        "(see `trio-chat trust --help`, or give the new one as the server key), else "
        "someone may be in the middle."
    )


class _Schedule:
    """When to send a first-flight datagram again: after 0.2 s, 0.4 s, 0.8 s, then every
    second, until `timeout` passes without an answer."""

    def __init__(self, now: float, timeout: float) -> None:
        self.deadline = now + timeout
        self.due = now
        self.last_sent: float | None = None
        self._interval = 0.2

    def take(self, now: float) -> bool:
        """Whether to send now (and if so, when next)."""
        if now < self.due:
            return False
        self.last_sent = now
        self.due = min(now + self._interval, self.deadline)
        self._interval = min(self._interval * 2, 1.0)
        return True

    def expired(self, now: float) -> bool:
        return now >= self.deadline


class KeyProbe:
    """Ask the daemon for its static public key (`KEY_REQUEST`), to trust it on first use.

    Also the quickest way to learn whether a daemon answers at all: `key` once it has,
    `error` (`ServerUnreachable`) once `timeout` passed in silence; and whether it takes
    registrations (`no_registrations`, asked in the same datagram), before a client asks
    its person for a password to register with.
    """

    def __init__(
        self,
        now: float,
        *,
        timeout: float = 5.0,
        where: str = "the daemon",
        refused_ends: bool = False,
    ) -> None:
        self._schedule = _Schedule(now, timeout)
        self._where = where
        self._refused_ends = refused_ends
        """A closed port ends it at once (a health check), rather than being asked again."""
        self.key: bytes | None = None
        self.no_registrations = False
        """The `KEY` said the daemon takes no registrations (a daemon before it says
        nothing: false). Not authenticated, as the key is not: a daemon that does take
        them still answers a `register` for itself."""
        self.error: ChatError | None = None

    @property
    def done(self) -> bool:
        return self.key is not None or self.error is not None

    def receive_datagram(self, data: bytes, now: float) -> None:
        try:
            datagram = wire.parse_datagram_untrusted(data)
        except wire.WireError:
            return
        if self.done:
            return
        if isinstance(datagram, wire.Key):
            self.key = datagram.public_key
            self.no_registrations = datagram.no_registrations
        elif isinstance(datagram, wire.Refused):
            self.error = refusal(datagram, self._where)

    def connection_refused(self, now: float) -> None:
        """Nothing listens there now; it may start in a moment: keep asking (unless
        `refused_ends`)."""
        if self._refused_ends and not self.done:
            self.error = unreachable(self._where)

    def datagrams_to_send(self, now: float) -> list[bytes]:
        if self.done or not self._schedule.take(now):
            return []
        return [wire.key_request_datagram(asks_registrations=True)]

    def next_timer(self) -> float | None:
        return None if self.done else self._schedule.due

    def handle_timer(self, now: float) -> None:
        if not self.done and self._schedule.expired(now):
            self.error = unreachable(self._where)


class Handshake:
    """One attempt to open a channel: `INIT` sent again until `RESPONSE` (or a refusal).

    A `RETRY` is answered at once with the same Noise message and the cookie; a `KEY`
    (the daemon could not read our message) that is not the key we trust ends it with
    `KeyChanged`; a `busy` refusal is waited out and the message sent again, while the
    timeout allows (past it, the refusal is the error). Done once `channel` or `error` is
    set.
    """

    def __init__(
        self, server_key: bytes, now: float, timeout: float, where: str, index: int
    ) -> None:
        self.server_key = server_key
        self._initiation: Initiation = initiate(server_key, index)
        self._schedule = _Schedule(now, timeout)
        self._where = where
        self.channel: Channel | None = None
        self.reset_token = b""
        self.rtt: float | None = None
        """From the latest `INIT` to the `RESPONSE`: a first estimate of the round trip."""
        self.error: ChatError | None = None
        self._refused: ChatError | None = None
        """A `busy` being waited out, until the message goes again: the error if the
        timeout passes before it does (after it, an unanswered message is unreachable)."""

    @property
    def done(self) -> bool:
        return self.channel is not None or self.error is not None

    def receive(self, datagram: wire.Datagram, now: float) -> bool:
        """Take a first-flight answer meant for this handshake; False if it is not one."""
        if self.done:
            return False
        index = self._initiation.client_index
        if isinstance(datagram, wire.Response) and datagram.client_index == index:
            try:
                self.channel, self.reset_token = self._initiation.finish(datagram)
            except SecureError:
                return True  # forged or damaged: keep waiting for the real one
            if self._schedule.last_sent is not None:
                self.rtt = now - self._schedule.last_sent
        elif isinstance(datagram, wire.Retry) and datagram.client_index == index:
            self._initiation.cookie = datagram.cookie
            self._schedule.due = now  # send again at once, with the cookie
        elif isinstance(datagram, wire.Key):
            if datagram.public_key != self.server_key:
                self.error = key_changed(self._where, self.server_key, datagram.public_key)
        elif isinstance(datagram, wire.Refused):
            error = refusal(datagram, self._where)
            wait = datagram.retry_after
            sent = self._schedule.last_sent
            way = now - sent if sent is not None else 0.0  # the answer's round trip
            if (
                isinstance(error, Busy)
                and wait is not None
                and now + wait + way < self._schedule.deadline
            ):
                # Too many at once, from this address or in all: the same message again
                # once the daemon said it may be taken, if its answer can come in time.
                self._refused = error
                self._schedule.due = now + wait
            else:
                self.error = error
        else:
            return False
        return True

    def datagrams_to_send(self, now: float) -> list[bytes]:
        if self.done or not self._schedule.take(now):
            return []
        self._refused = None
        return [self._initiation.datagram()]

    def next_timer(self) -> float | None:
        return None if self.done else self._schedule.due

    def handle_timer(self, now: float) -> None:
        if not self.done and self._schedule.expired(now):
            self.error = self._refused or unreachable(self._where)
