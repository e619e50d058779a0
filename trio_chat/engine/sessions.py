"""Connections as the network sees them: channels, links, addresses, timers, output.

`Transport` owns every connection: its secure `Channel` (a record is opened, tag first,
before anything in it is believed), its reliable `Link`, the address it is reached at.
It follows a client whose address changes (the keys, not the address, say who it is:
the new address must then prove it receives before it gets more than 3 times what it
sent), fires the links' timers, ends connections that went silent or never logged in,
answers records for a connection it no longer has with `RESET`, and collects what every
connection has to send. What the frames mean is the lobby's and the room's business.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import msgspec

from .. import wire
from ..limits import TokenBucket
from ..records import Account
from ..reliability import Link
from ..secure import Channel, SecureError, challenge_answered, reset_token
from .bans import Bans
from .common import SEND_EARLY, Address, Outbox, Send, network_of, same_endpoint
from .config import ServerConfig
from .notes import AddressChanged, Note


@dataclass(eq=False, slots=True)
class Session:
    """One connection: a channel, and once logged in, an account in the room."""

    sid: int
    """The daemon's index of the connection: the receiver index of the client's records."""
    channel: Channel
    address: Address
    link: Link
    bucket: TokenBucket
    questions: TokenBucket
    """`who`, `history` and `change_password` requests, apart from messages (`bucket`)."""
    last_heard: float
    idle_check_at: float
    opened_at: float
    response: bytes
    """The handshake's RESPONSE, sent again to an INIT sent again (until proven)."""
    account: Account | None = None
    validated: bool = False
    """The address has sent an authentic record: it receives what is sent to it."""
    challenge: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    timer_at: float | None = None
    quiet: bool = False
    batches: bool = False
    """Its client reads `msgs` frames (it said so when it logged in)."""
    busy: int = 0
    """Requests of this connection being worked on (a password being hashed)."""
    reading: int = 0
    """Its `history` requests being read from the database."""
    counted: str | None = None
    """The network whose cap it is counted against: its address's, once that address is
    proven, not before (so that spoofed `INIT`s cannot fill a victim's address). After a
    move, still the old one until the new address is proven."""
    logging_in: bool = False
    """A login's password is being checked: no other login until it is answered."""
    blocked_cid: str | None = None
    """The first message refused as too fast: until it comes again, later ones are refused
    too, so that the client's resends keep the order the messages were written in."""
    blocked_until: float = 0.0
    """When the refused message may come back (and its client has been told so)."""
    blocked_told: bool = False
    """The client has acknowledged the refusal: until then it cannot have given up."""
    banned_until: float = 0.0
    """When the ban of the network it moved into ends (`math.inf`: never), once its
    link's failure is `banned`."""
    idle_timeout: float = 45.0
    """Closed after this long unheard: `ServerConfig.idle_timeout`, or, `direct`, the
    longer `direct_idle_timeout` (unless the idle timeout is longer still)."""
    recorded: Address | None = None
    """The address stored for it (`records.SessionOpened`), once logged in."""
    direct: bool = False
    """Its client's own address is the one its records come from (no NAT on the way):
    it may keep the longer `direct_keepalive`."""


PATH_CLOSED_AFTER = 2.0
"""Seconds a direct session's frames may go unanswered before the client's next datagram
shows that something on the way dropped them meanwhile (a firewall that forgot the
flow while the client was silent): the session then goes back to the default keepalive."""
SHORTEN_KEEPALIVE = wire.encode(wire.Keepalive(every=wire.KEEPALIVE))

WRAPPING = len(wire.NUMBERED_FRAME % (wire.MAX_SEQ, b""))
"""Bytes a link adds to a frame it queues (its sequence number and brackets), at most."""

FAREWELL_DATAGRAMS = 4
"""At most this many datagrams are kept, and sent again, for an ended connection."""
FAREWELL_BYTES = 16 * 1024 * 1024
"""Bytes of last datagrams kept for ended connections in all: past it, the oldest are
forgotten first (their records are then answered `RESET`, as after 30 s)."""


@dataclass(slots=True)
class _Ended:
    channel: Channel
    until: float
    """Until when its records are answered from here, not with `RESET`."""
    address: Address
    farewell: list[bytes]
    """Its last datagrams: every frame it had not acknowledged (the `ok` of its logout)."""
    budget: int | None
    """Bytes its address may still be sent, if that address never proved it receives
    (the session moved to it, and ended before answering the challenge): as for a live
    session, `amplification_factor` times what came from it. None: proven."""


class Transport:
    """Every open connection; see the module docstring."""

    def __init__(
        self,
        config: ServerConfig,
        outbox: Outbox,
        stats: dict[str, int],
        new_challenge: Callable[[], str],
        new_index: Callable[[], int],
        notes: list[Note],
        reset_secret: bytes,
    ) -> None:
        self.config = config
        self.keepalive = max(1.0, min(wire.KEEPALIVE, config.idle_timeout / 3))
        """What clients are asked to ping at, at most: the protocol's 15 s, or a third of
        a shorter `idle_timeout` (a second at least, the shortest the protocol allows), so
        that an idle session is never closed for silence."""
        self._direct_link = replace(
            config.link, give_up_after=config.link.give_up_after + config.direct_keepalive
        )
        """A direct session's link waits out a keepalive's silence before giving up: its
        client may be alive behind a firewall that dropped what was sent meanwhile."""
        self._notes = notes
        self.by_sid: dict[int, Session] = {}
        self._outbox = outbox
        self._stats = stats
        self._new_challenge = new_challenge
        self._new_index = new_index
        self._reset_secret = reset_secret
        self._per_ip: dict[object, int] = {}
        self.per_account: dict[int, int] = {}
        """Logged-in connections of each account, by account id."""
        self._by_init: dict[tuple[Address, int], int] = {}
        """Connections not proven yet, by (address, client index): an INIT sent again."""
        self._waiting_per_ip: dict[str, int] = {}
        """Channels waiting for their first record and not counted yet, by network."""
        self.bans = Bans()
        """The networks the operator turned away: a connection that moves into one ends."""
        self._dirty: set[Session] = set()
        self._at_once: tuple[float, Send | None] | None = None
        """While the engine sends (`sending`): the time, and where a few datagrams go at
        once; the room's broadcasts to idle links then go out at once (`deliver`)."""
        self._send_failed: Exception | None = None
        """What the send of a few datagrams raised during a broadcast (`sending`)."""
        self.growth = 0
        """At least as many bytes as links took to hold (frames queued, datagrams received)
        since the engine last counted them all (`ServerEngine._check_memory`)."""
        self._timers: list[tuple[float, int]] = []
        self._ended: OrderedDict[int, _Ended] = OrderedDict()
        """Recently ended connections, by index (QUIC's closing state)."""
        self._ended_long: OrderedDict[int, _Ended] = OrderedDict()
        """Those remembered longer than `ended_session_memory` (the operator's): apart, so
        that each list is ended oldest first."""
        self._farewell_bytes = 0
        """Bytes of their last datagrams, in all (`FAREWELL_BYTES` at most)."""

    def __len__(self) -> int:
        return len(self.by_sid)

    @property
    def unproven(self) -> int:
        """Connections whose client has not yet sent an authentic record."""
        return len(self._by_init)

    # --- opening and ending ----------------------------------------------------------------

    def waiting_from(self, address: Address) -> int:
        """Channels from the address's network still waiting for their first record (and
        not counted against its cap)."""
        return self._waiting_per_ip.get(network_of(address), 0)

    def full(self, address: Address) -> bool:
        """Whether the address's network (its IPv4 address, its IPv6 /64) holds as many
        proven connections as it may."""
        return self._per_ip.get(network_of(address), 0) >= self.config.max_sessions_per_address

    def new_index(self) -> int:
        """An index no connection has (nor had, recently)."""
        index = self._new_index()
        while index in self.by_sid or index in self._ended or index in self._ended_long:
            index = self._new_index()
        return index

    def token_for(self, index: int) -> bytes:
        """The reset token of the connection with this index (sent in its handshake)."""
        return reset_token(self._reset_secret, index)

    def answered(self, address: Address, client_index: int) -> Session | None:
        """The connection an INIT from `address` already opened, while not yet proven."""
        sid = self._by_init.get((address, client_index))
        return None if sid is None else self.by_sid.get(sid)

    def open(
        self,
        index: int,
        channel: Channel,
        address: Address,
        response: bytes,
        now: float,
        asked: int,
        *,
        cookie_checked: bool = False,
    ) -> Session:
        """A connection for a handshake just answered (its client not yet logged in).

        The `asked` bytes of its INIT count toward what the address may be sent before
        it proves it receives, as the RESPONSE counts against it. With `cookie_checked`
        the address is proven already and the connection counts against its cap now."""
        session = Session(
            sid=index,
            channel=channel,
            address=address,
            link=Link(channel.seal, self.config.link),
            bucket=TokenBucket(self.config.message_rate, self.config.message_burst),
            questions=TokenBucket(self.config.question_rate, self.config.question_burst),
            last_heard=now,
            idle_check_at=float(math.ceil(now + self.config.login_timeout)),
            opened_at=now,
            idle_timeout=self.config.idle_timeout,
            response=response,
            bytes_in=asked,
            bytes_out=len(response),
        )
        self.by_sid[index] = session
        self._by_init[(address, channel.remote_index)] = index
        if cookie_checked:
            self._count(session)  # the cookie proved the address: it counts at once
        else:
            network = network_of(address)
            self._waiting_per_ip[network] = self._waiting_per_ip.get(network, 0) + 1
        self._schedule(session, now)
        return session

    def _forget_init(self, session: Session) -> bool:
        """The connection no longer waits for its first record; whether it did."""
        key = (session.address, session.channel.remote_index)
        if self._by_init.get(key) != session.sid:
            return False  # not waiting, or the entry is another channel's (same index)
        del self._by_init[key]
        if not session.counted:
            network = network_of(session.address)
            waiting = self._waiting_per_ip.pop(network, 1) - 1
            if waiting > 0:
                self._waiting_per_ip[network] = waiting
        return True

    def remove(
        self, session: Session, now: float, *, flush: bool = False, remember: float | None = None
    ) -> None:
        """End a connection (after sending what it has, with `flush`); its datagrams are
        told the last words again for `remember` seconds (`ended_session_memory`)."""
        farewell = self._last_words(session, now) if flush else []
        self._dirty.discard(session)
        del self.by_sid[session.sid]
        self._forget_init(session)
        self._uncount(session)
        if session.account is not None:
            left = self.per_account.pop(session.account.id, 1) - 1
            if left > 0:
                self.per_account[session.account.id] = left
        ended = self._ended if remember is None else self._ended_long
        until = now + (self.config.ended_session_memory if remember is None else remember)
        budget = None if session.validated else self._budget_left(session)
        ended[session.sid] = _Ended(session.channel, until, session.address, farewell, budget)
        self._farewell_bytes += sum(map(len, farewell))
        self._forget_ended(self._ended, now)
        self._forget_ended(self._ended_long, now)  # the operator's last, past a cap

    def _forget_ended(self, ended: OrderedDict[int, _Ended], now: float) -> None:
        """Forget the oldest of `ended` while they are past their time, or too many."""
        while ended:
            oldest = next(iter(ended.values()))
            if (
                oldest.until > now
                and len(ended) <= self.config.tracked_addresses
                and self._farewell_bytes <= FAREWELL_BYTES
            ):
                break
            forgotten = ended.popitem(last=False)[1]
            forgotten.channel.forget()
            self._farewell_bytes -= sum(map(len, forgotten.farewell))

    def logged_in(self, session: Session, account: Account, now: float) -> None:
        """The connection is `account`'s now (counted against its cap).

        Its silence is looked at an idle timeout from now: not only once its time to log
        in has passed (with `--idle-timeout 3`, a client gone at once stayed 10 s), and
        not sooner, for the client said nothing while it waited for its password to be
        checked, however long that took, and its acknowledgement of the welcome is yet to
        come.
        """
        session.account = account
        session.idle_check_at = float(math.ceil(now + session.idle_timeout))
        self.per_account[account.id] = self.per_account.get(account.id, 0) + 1

    def _count(self, session: Session) -> bool:
        """Count a connection against its (just proven) address's cap, if there is room."""
        if self.full(session.address):
            return False
        network = network_of(session.address)
        self._per_ip[network] = self._per_ip.get(network, 0) + 1
        session.counted = network
        return True

    def _uncount(self, session: Session) -> None:
        network = session.counted
        if network is not None:
            count = self._per_ip.pop(network, 1) - 1
            if count > 0:
                self._per_ip[network] = count
            session.counted = None

    # --- receiving ----------------------------------------------------------------------------

    def receive(
        self, data: wire.Data, address: Address, now: float, wall: float
    ) -> tuple[Session, list[tuple[int, msgspec.Raw]]] | None:
        """Open a record; return its connection and the frames now in order (None: dropped).

        The tag is checked before anything else; a record of a connection ended moments
        ago gets that connection's last datagrams again if it carries frames; a record
        for an index the daemon does not know is answered `RESET`.
        """
        session = self.by_sid.get(data.receiver_index)
        if session is None:
            self._unknown(data, address, now)
            return None
        try:
            pn, plaintext = session.channel.open_untrusted(data.datagram)
        except SecureError:
            self._stats["bad_records"] += 1
            return None
        try:
            payload = wire.decode_payload_untrusted(plaintext)
        except wire.WireError:
            self._stats["bad_payloads"] += 1
            return None
        size = len(data.datagram)
        self.growth += size  # at most what frames received early can hold
        link = session.link
        if address != session.address and pn > link.highest_pn:
            banned_until = self.bans.banned_until(address[0], wall)
            if banned_until is not None:
                # Moved into a network the operator turned away: nothing it says from
                # there counts. Its `bye` goes where it was; a channel it opens from
                # there is refused `banned`.
                self._stats["migrations_refused"] += 1
                link.failure = "banned"
                session.banned_until = banned_until
                self._dirty.add(session)
                return None
            self._migrate(session, address, now)
        if address == session.address and not session.validated:
            session.bytes_in += size
            if session.challenge is None or challenge_answered(payload.response, session.challenge):
                self._proven(session, now)
        session.last_heard = now
        if session.direct and link.unanswered_for(now) >= PATH_CLOSED_AFTER:
            # What was sent went unanswered until the client spoke again: the way in
            # closes while the client is silent, so it must not stay silent as long.
            self._not_direct(session, now)
        delivered = link.receive(pn, payload.ack, payload.sack, payload.frames, now, payload.echo)
        if delivered or session.challenge is not None or link.wants_to_send(now):
            self._dirty.add(session)
        # Otherwise it was an ack that freed nothing to send: under fan-out, half the
        # datagrams that come in. Its timers can only have moved later, and a timer
        # that fires early finds nothing due and is set again.
        return session, delivered

    def _proven(self, session: Session, now: float) -> None:
        session.validated = True
        session.challenge = None
        # What waited for the address to earn it may go now, and the link's timers
        # count again (they were set aside for the idle check while the budget was out):
        # the answer to the challenge may carry no frame that would say so.
        self._dirty.add(session)
        first = self._forget_init(session)
        if session.counted != network_of(session.address):
            self._uncount(session)  # it moved: it leaves the old network's count now
        if session.counted is None and not self._count(session):
            self._stats["refused_when_proven"] += 1
            session.link.failure = "too_many_sessions"
            self._dirty.add(session)
        if first:
            # The first authentic record after the handshake: from our RESPONSE to it is
            # a round trip, to start the link's estimate with.
            session.link.seed_rtt(now - session.opened_at)

    def _unknown(self, data: wire.Data, address: Address, now: float) -> None:
        ended = self._ended.get(data.receiver_index) or self._ended_long.get(data.receiver_index)
        if ended is not None and ended.until > now:
            try:
                _pn, plaintext = ended.channel.open_untrusted(data.datagram)
                frames = wire.decode_payload_untrusted(plaintext).frames
            except (SecureError, wire.WireError):
                self._stats["bad_records"] += 1
                return
            self._stats["ended_sessions"] += 1
            # A logout sent again (its `ok` was lost) gets the last words again; a bare
            # ack gets nothing, and neither does another address (no amplification).
            if frames and address == ended.address:
                self._say_farewell(ended, len(data.datagram))
            return
        # Smaller than what it answers (RESET_BYTES < SEAL_OVERHEAD): no amplification.
        self._stats["unknown_sessions"] += 1
        token = self.token_for(data.receiver_index)
        self._outbox.append((wire.reset_datagram(data.receiver_index, token), address))

    def _say_farewell(self, ended: _Ended, asked: int) -> None:
        """Send an ended connection's last datagrams again, to an address that has not
        proven it receives only within what it earned (`asked` bytes more just now)."""
        if ended.budget is None:
            self._outbox.extend((datagram, ended.address) for datagram in ended.farewell)
            return
        ended.budget += self.config.amplification_factor * asked
        for datagram in ended.farewell:
            if len(datagram) > ended.budget:
                self._stats["unsent_for_amplification"] += 1
                return
            ended.budget -= len(datagram)
            self._outbox.append((datagram, ended.address))

    def _migrate(self, session: Session, address: Address, now: float) -> None:
        """The client's address changed (NAT rebinding): keep the session, check the path.

        An address that holds as many connections as it may takes no more this way: the
        session ends instead (its client may open a new one, under the same caps).
        """
        moving = network_of(address) != network_of(session.address)
        self._forget_init(session)
        # It stays counted where it was until the new address is proven (`_proven`): else
        # records sent from addresses that never answer would free the old one's places
        # for good. A channel not yet proven where it was opened takes its place there.
        if (moving and self.full(address)) or (
            session.counted is None and not self._count(session)
        ):
            self._stats["migrations_refused"] += 1
            session.link.failure = "too_many_sessions"
            self._dirty.add(session)
            return
        self._stats["migrations"] += 1
        if session.direct:
            self._not_direct(session, now)  # its new address may be a NAT's
        if session.account is not None:
            self._notes.append(AddressChanged(session.account.name, session.address, address))
        session.address = address
        session.validated = False
        session.bytes_in = session.bytes_out = 0
        session.challenge = self._new_challenge()
        session.link.extra = wire.challenge_field(session.challenge)

    def keepalive_for(self, session: Session, via: wire.Endpoint | None) -> float | None:
        """The keepalive a session is told at its welcome, given its client's own address
        `via`: a short one if the idle timeout is short; `direct_keepalive` if its records
        come from that very address (nothing on the way maps addresses, so no mapping
        needs its pings to stay open); else None (the protocol's default)."""
        config = self.config
        if self.keepalive < wire.KEEPALIVE:
            return self.keepalive
        if (
            via is None
            or config.direct_keepalive <= wire.KEEPALIVE
            or not same_endpoint(via, session.address)
        ):
            return None
        session.direct = True
        session.idle_timeout = max(config.direct_idle_timeout, config.idle_timeout)
        session.link.config = self._direct_link
        return config.direct_keepalive

    def _not_direct(self, session: Session, now: float) -> None:
        """Back to the default keepalive, and tell the client so (it spoke `now`)."""
        session.direct = False
        session.idle_timeout = self.config.idle_timeout
        session.idle_check_at = min(session.idle_check_at, self._idle_check(session))
        session.link.config = self.config.link
        # The shorter give-up counts from now: what was sent during the silence could not
        # be answered, and counted from then it would end the session before the probe
        # that goes now has had its round trip.
        session.link.give_up_from(now)
        self._stats["keepalives_shortened"] += 1
        self.send(session, SHORTEN_KEEPALIVE)

    # --- sending -----------------------------------------------------------------------------

    def send(self, session: Session, frame: bytes, tag: Hashable | None = None) -> None:
        """Queue an encoded frame on a session's link; it goes out at the next flush."""
        session.link.send(frame, tag)
        self.growth += len(frame) + WRAPPING
        self._dirty.add(session)

    def deliver(
        self,
        sid: int,
        frames: Sequence[bytes],
        tag: Hashable | None = None,
        *,
        at_once: bool = False,
    ) -> None:
        """`send` by session id, for frames in order: the room's way in, once per recipient
        of every message.

        `at_once`: while the engine sends (`sending`), frames to a link with nothing else
        to send are sealed and put in the outbox at once, skipping the queue and the
        flush. Only the room's broadcasts ask for it, for they hand each session its
        frames once a turn; what else a session is handed is queued, so that it shares a
        datagram with the rest.
        """
        session = self.by_sid[sid]
        link = session.link
        sending = self._at_once
        if at_once and sending is not None and session.validated and session.challenge is None:
            now, send = sending
            datagram = link.send_at_once(frames, tag, now)
            if datagram is not None:
                self.growth += sum(map(len, frames)) + WRAPPING * len(frames)
                outbox = self._outbox
                outbox.append((datagram, session.address))
                self._schedule(session, now)
                if send is not None and len(outbox) >= SEND_EARLY:
                    try:
                        self._send_early(send)
                    except Exception as error:
                        # Every recipient still gets its copy sealed; what is left goes
                        # with the next send, and the error once the broadcast is over.
                        self._at_once = (now, None)
                        self._send_failed = error
                return
        for frame in frames:
            link.send(frame, tag)
            self.growth += len(frame) + WRAPPING
        self._dirty.add(session)

    @contextmanager
    def sending(self, now: float, send: Send | None) -> Iterator[None]:
        """Within: the room's broadcasts go out at once where they can (`deliver`), to
        `send` whenever `SEND_EARLY` datagrams are in the outbox. What `send` raised is
        raised once the block is over, every copy sealed."""
        outer = self._at_once
        self._at_once = (now, send)
        try:
            yield
        finally:
            self._at_once = outer
            error, self._send_failed = self._send_failed, None  # never left for another
        if error is not None:
            raise error

    def _send_early(self, send: Send) -> None:
        outbox = self._outbox
        early = outbox[:]
        outbox.clear()  # first: a datagram is never handed on twice
        send(early)

    def touch(self, session: Session) -> None:
        """The session has something to send (an ack owed at once, say)."""
        self._dirty.add(session)

    def flush(self, now: float, send: Send | None = None) -> list[Session]:
        """Put every datagram due into the outbox; return the sessions whose link failed.

        With `send`, the outbox goes to it whenever `SEND_EARLY` datagrams are in it. If
        `send` raises, every session is still flushed (what is left waits in the outbox
        for the next send), and then the error is raised.
        """
        dirty, self._dirty = self._dirty, set()
        by_sid = self.by_sid
        outbox = self._outbox
        failed: list[Session] = []
        error: Exception | None = None
        for session in dirty:
            if session.sid not in by_sid:
                continue
            link = session.link
            if session.validated and session.challenge is None:
                # The common case, once per recipient of every message: no budget to keep.
                address = session.address
                for datagram in link.datagrams_to_send(now):
                    outbox.append((datagram, address))
                if send is not None and len(outbox) >= SEND_EARLY:
                    try:
                        self._send_early(send)
                    except Exception as raised:
                        send, error = None, raised
            else:
                self._flush(session, now)
            if link.failure is not None:
                failed.append(session)
            else:
                self._schedule(session, now)
        if error is not None:
            self._dirty.update(failed)  # ended at the next flush
            raise error
        return failed

    def _flush(self, session: Session, now: float) -> None:
        """Put what the session has due into the outbox."""
        self._to_outbox(session, session.link.datagrams_to_send(now, self._budget(session)))

    def _last_words(self, session: Session, now: float) -> list[bytes]:
        """Send everything the session has not acknowledged; return it (a few datagrams)."""
        datagrams = session.link.last_words(now, self._budget(session))
        self._to_outbox(session, datagrams)
        return datagrams[-FAREWELL_DATAGRAMS:]

    def _budget(self, session: Session) -> int | None:
        if session.challenge is not None and not session.link.extra:
            # Until the new address answers, every datagram to it repeats the challenge:
            # one that was lost must not leave the session unproven for good.
            session.link.extra = wire.challenge_field(session.challenge)
        return None if session.validated else self._budget_left(session)

    def _to_outbox(self, session: Session, datagrams: list[bytes]) -> None:
        for datagram in datagrams:
            if not session.validated:
                session.bytes_out += len(datagram)
            self._outbox.append((datagram, session.address))

    def _budget_left(self, session: Session) -> int:
        return self.config.amplification_factor * session.bytes_in - session.bytes_out

    # --- time ----------------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        """When `expire` must next run, or None."""
        deadline = None
        timers = self._timers
        while timers:
            at, sid = timers[0]
            session = self.by_sid.get(sid)
            if session is not None and session.timer_at == at:
                deadline = at
                break
            heapq.heappop(timers)
        for ended in (self._ended, self._ended_long):
            if ended:  # its keys are let go of on time, however quiet the daemon is
                until = next(iter(ended.values())).until
                if deadline is None or until < deadline:
                    deadline = until
        return deadline

    def expire(self, now: float) -> list[tuple[Session, str]]:
        """Run the links' timers; return the connections to end and why: `silent`,
        `unauthenticated` (not logged in in time), or the link's failure (`unresponsive`,
        `overloaded`)."""
        ending: list[tuple[Session, str]] = []
        self._forget_ended(self._ended, now)
        self._forget_ended(self._ended_long, now)
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, sid = heapq.heappop(timers)
            session = self.by_sid.get(sid)
            if session is None or session.timer_at != deadline:
                continue
            session.timer_at = None
            if now >= session.idle_check_at:
                if session.account is None and not session.busy:
                    # A channel that was given time to log in and did not: a stranger's.
                    ending.append((session, "unauthenticated"))
                    continue
                if session.account is None:
                    # Its password waits to be checked: the client, waiting for the
                    # answer, has nothing to say (its pings come every 15 s until it is
                    # welcomed), so silence shorter than that is no sign it has gone.
                    session.idle_check_at = float(math.ceil(now + session.idle_timeout))
                # The same sum as the deadline, not `now - last_heard`: in floating point
                # the two can disagree, and the check would then re-arm itself for `now`.
                elif now >= session.last_heard + session.idle_timeout:
                    ending.append((session, "silent"))
                    continue
                else:
                    session.idle_check_at = self._idle_check(session)
            session.link.handle_timer(now)
            if session.link.failure is not None:
                ending.append((session, session.link.failure))
                continue
            self._dirty.add(session)
        return ending

    def _idle_check(self, session: Session) -> float:
        """When to look again at a session whether it is silent: on a whole second.

        Sessions' checks then share wake-ups (10,000 sessions: one a second, not ~200),
        and a silent session is closed at most a second after `idle_timeout`.
        """
        # Never before `last_heard + idle_timeout`: the check then always finds it passed.
        return float(math.ceil(session.last_heard + session.idle_timeout))

    def _schedule(self, session: Session, now: float) -> None:
        # The idle check is not moved on every datagram heard: when it comes due, it
        # looks at `last_heard` and sets itself again. That keeps the heap small.
        deadline = session.link.next_timer()
        idle = session.idle_check_at
        if deadline is None or idle < deadline:
            deadline = idle
        set_aside = not session.validated and (self._budget_left(session) <= 0 or deadline <= now)
        if set_aside:
            # What is due does not fit what the address has earned: only the client's next
            # datagram can change that, so wait for it rather than fire the timer again.
            deadline = idle
        timer_at = session.timer_at
        if timer_at is None or deadline < timer_at or (set_aside and deadline != timer_at):
            # Only a deadline that moves earlier is pushed; one that moves later (every
            # datagram sent pushes its probe timeout back) leaves the earlier entry to
            # fire, find nothing due, and set the timer again from there. Not one set
            # aside, though: fired, it would count a probe that cannot be sent.
            session.timer_at = deadline
            heapq.heappush(self._timers, (deadline, session.sid))
            if len(self._timers) > 4 * len(self.by_sid) + 1024:
                self._timers = [
                    (s.timer_at, s.sid) for s in self.by_sid.values() if s.timer_at is not None
                ]
                heapq.heapify(self._timers)
