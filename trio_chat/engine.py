"""The daemon's protocol engine: every rule of the server, with no I/O and no clock.

Feed it datagrams with `receive_datagram(data, address, now, wall)`, call
`handle_timers(now, wall)` at `next_timer()`, and send what `datagrams_to_send(now)`
returns. Slow or blocking work is handed out as *effects* (`take_effects()`): hashing and
checking passwords, writing to storage, reading old history. The shell performs them and
reports back (`password_hashed`, `password_checked`, `committed`, `history_loaded`).

`now` is a monotonic time in seconds for timers, `wall` the Unix time for timestamps.
"""

from __future__ import annotations

import heapq
import math
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from . import wire
from .auth import FailureThrottle, KeyedBuckets, TokenBucket, new_session_id, new_token
from .auth import tokens_equal as _tokens_equal
from .records import Account, MarkDelivered, Message, Snapshot, StoreOp
from .reliability import Link, LinkConfig
from .room import Deliver, Fanout, HistoryWindow, LocalRoom, Mailbox
from .rules import RuleError, check_name, check_password, check_text, name_key

Address = tuple[Any, ...]
"""A socket address as the socket module gives it: `(host, port)` or IPv6's 4-tuple."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    link: LinkConfig = field(default_factory=LinkConfig)
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


# --- effects: work the shell does for the engine ------------------------------------------


@dataclass(frozen=True, slots=True)
class HashPassword:
    job: int
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class CheckPassword:
    job: int
    password_hash: str = field(repr=False)
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Persist:
    op: StoreOp


@dataclass(frozen=True, slots=True)
class LoadHistory:
    job: int
    account_id: int
    before: int | None
    limit: int


Effect = HashPassword | CheckPassword | Persist | LoadHistory


# --- per-session and per-request state ---------------------------------------------------


@dataclass(eq=False, slots=True)
class Session:
    sid: int
    token: str
    account: Account
    address: Address
    link: Link
    bucket: TokenBucket
    last_heard: float
    idle_check_at: float
    validated: bool = False
    challenge: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    timer_at: float | None = None
    quiet: bool = False
    blocked_cid: str | None = None
    """The first message refused as too fast: until it comes again, later ones are refused
    too, so that the client's resends keep the order the messages were written in."""
    blocked_until: float = 0.0
    """When the refused message may come back."""


@dataclass(slots=True)
class _Registration:
    address: Address
    rid: str
    name: str
    key: str


@dataclass(slots=True)
class _LoginAttempt:
    address: Address
    rid: str
    account: Account
    since: int | None
    quiet: bool


@dataclass(slots=True)
class _AddressBudget:
    received: int = 0
    sent: int = 0


def iso_time(wall: float) -> str:
    """A Unix time as the wire's timestamp: UTC, milliseconds, `Z`."""
    stamp = datetime.fromtimestamp(wall, tz=UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _error_frame(
    code: str, message: str, re: int | None, retry_after: float | None = None
) -> bytes:
    return wire.encode(wire.ErrorFrame(code=code, message=message, re=re, retry_after=retry_after))


def _message_frame(message: Message, *, history: bool = False, re: int | None = None) -> bytes:
    if message.recipient is None:
        frame: wire.Msg | wire.Pm = wire.Msg(
            id=message.id,
            ts=message.ts,
            sender=message.sender,
            text=message.text,
            history=history,
            re=re,
        )
    else:
        frame = wire.Pm(
            id=message.id,
            ts=message.ts,
            sender=message.sender,
            to=message.recipient,
            text=message.text,
            history=history,
            re=re,
        )
    return wire.encode(frame)


_BLOCK_GRACE = 10.0
"""How long after it may come back a refused message holds back later ones (then it is
presumed abandoned, and the session's messages flow again)."""
_TOO_MANY_SESSIONS = "Too many sessions from your address; close one and try again."


def _stored_frame(message: Message, re: int) -> bytes:
    """The answer to a `say` or `whisper`: stored, with this id and time (and recipient)."""
    return wire.encode(wire.Ok(re=re, id=message.id, ts=message.ts, to=message.recipient))


def _round_up(seconds: float) -> float:
    return round(seconds + 0.0005, 3)


class ServerEngine:
    """See the module docstring."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        snapshot: Snapshot | None = None,
        *,
        new_token: Callable[[], str] = new_token,
        new_session_id: Callable[[], int] = new_session_id,
        room: Callable[[Deliver], Fanout] = LocalRoom,
    ) -> None:
        self.config = config = config or ServerConfig()
        snapshot = snapshot or Snapshot()
        self._new_token = new_token
        self._new_session_id = new_session_id
        self.accounts: dict[str, Account] = {a.key: a for a in snapshot.accounts}
        self._next_account_id = snapshot.next_account_id
        self._next_message_id = snapshot.next_message_id
        self.sessions: dict[int, Session] = {}
        self.room = room(self._deliver)
        self.window = HistoryWindow(config.window_messages, snapshot.recent, snapshot.public_count)
        self.mailbox = Mailbox(snapshot.undelivered)
        self._sessions_per_ip: dict[Any, int] = {}
        self._reserved_names: set[str] = set()
        self._jobs: dict[int, Any] = {}
        self._next_job = 1
        self._in_progress: dict[tuple[Address, str], int] = {}
        self._storing: dict[int, _Registration] = {}
        self._replies: OrderedDict[tuple[Address, str], tuple[bytes, float]] = OrderedDict()
        self._budgets: OrderedDict[Address, _AddressBudget] = OrderedDict()
        self._awaiting_commit: dict[int, list[tuple[int, int]]] = {}
        self._sent_by: dict[int, int] = {}
        """Messages not yet on disk: id -> the session that sent it."""
        self._effects: list[Effect] = []
        self._outbox: list[tuple[bytes, Address]] = []
        self._dirty: set[Session] = set()
        self._timers: list[tuple[float, int]] = []
        self._register_limit = KeyedBuckets(config.register_rate, config.register_burst)
        self._account_failures = FailureThrottle(
            config.login_free_failures, config.login_delay, config.login_delay_max
        )
        self._address_failures = FailureThrottle(
            config.login_free_failures, config.login_delay, config.login_delay_max
        )
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "datagrams_in",
                "bad_datagrams",
                "bad_frames",
                "bad_tokens",
                "unknown_sessions",
                "unsent_for_amplification",
                "migrations",
                "pings",
                "keepalives",
            ),
            0,
        )
        """Counters; `keepalives` counts datagrams that carried nothing but pings."""

    # --- input ------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, address: Address, now: float, wall: float) -> None:
        """Handle one datagram from the network, whatever it holds."""
        self.stats["datagrams_in"] += 1
        try:
            datagram = wire.decode_client_datagram_untrusted(data)
        except wire.WireError as error:
            self.stats["bad_datagrams"] += 1
            self._count_received(address, len(data))
            self._reply(address, wire.ErrorReply(code=error.code, message=error.message))
            return
        if isinstance(datagram, wire.Packet):
            self._on_packet(datagram, len(data), address, now, wall)
            return
        self._count_received(address, len(data))
        cached = self._cached_reply(address, datagram.rid, now)
        if cached is not None:
            self._send_unvalidated(address, cached)
        elif (address, datagram.rid) in self._in_progress:
            self._reply(address, wire.Pending(rid=datagram.rid))
        elif isinstance(datagram, wire.Register):
            self._on_register(datagram, address, now)
        else:
            self._on_login(datagram, address, now)

    def _on_packet(
        self, packet: wire.Packet, size: int, address: Address, now: float, wall: float
    ) -> None:
        session = self.sessions.get(packet.sid)
        if session is None:
            self.stats["unknown_sessions"] += 1
            self._count_received(address, size)
            message = "This session has ended; log in again."
            self._reply(
                address, wire.ErrorReply(code="session_unknown", message=message, sid=packet.sid)
            )
            return
        if not _tokens_equal(packet.token, session.token):
            self.stats["bad_tokens"] += 1
            return
        if address != session.address and packet.pn > session.link.highest_pn:
            self._migrate(session, address)
        if address == session.address and not session.validated:
            session.bytes_in += size
            if session.challenge is None or _tokens_equal(packet.response, session.challenge):
                session.validated = True
                session.challenge = None
        session.last_heard = now
        link = session.link
        delivered = link.receive(packet.pn, packet.ack, packet.sack, packet.frames, now)
        if link.acked_tags:
            self._on_acked(session, link.acked_tags)
            link.acked_tags = []
        if delivered or session.challenge is not None or link.wants_to_send(now):
            self._dirty.add(session)
        # Otherwise it was an ack that freed nothing to send: under fan-out, half the
        # datagrams that come in. Its timers can only have moved later, and a timer
        # that fires early finds nothing due and is set again.
        pings = self.stats["pings"]
        for seq, raw in delivered:
            if packet.sid not in self.sessions:
                break  # a logout earlier in this datagram ended the session
            self._on_frame(session, seq, raw, now, wall)
        if delivered and self.stats["pings"] - pings == len(delivered):
            self.stats["keepalives"] += 1

    def _migrate(self, session: Session, address: Address) -> None:
        """The client's address changed (NAT rebinding): keep the session, check the path."""
        self.stats["migrations"] += 1
        self._release_ip(session.address)
        session.address = address
        self._sessions_per_ip[address[0]] = self._sessions_per_ip.get(address[0], 0) + 1
        session.validated = False
        session.bytes_in = session.bytes_out = 0
        session.challenge = self._new_token()
        session.link.extra = b',"challenge":"%s"' % session.challenge.encode()

    def _on_frame(
        self, session: Session, seq: int, raw: msgspec.Raw, now: float, wall: float
    ) -> None:
        try:
            frame = wire.decode_client_frame_untrusted(raw)
        except wire.WireError as error:
            self.stats["bad_frames"] += 1
            session.link.send(_error_frame(error.code, error.message, seq))
            return
        try:
            if isinstance(frame, wire.Say):
                self._on_say(session, seq, frame.text, frame.cid, None, now, wall)
            elif isinstance(frame, wire.Whisper):
                self._on_say(session, seq, frame.text, frame.cid, frame.to, now, wall)
            elif isinstance(frame, wire.Who):
                self._on_who(session, seq)
            elif isinstance(frame, wire.HistoryRequest):
                job = self._job((session.sid, seq))
                # "Before" means before this request, not before the read happens to run.
                before = frame.before if frame.before is not None else self._next_message_id
                self._effects.append(LoadHistory(job, session.account.id, before, frame.limit))
            elif isinstance(frame, wire.Logout):
                session.link.send(wire.encode(wire.Ok(re=seq)))
                self._close(session, "quit", now, wall, flush=True)
            elif isinstance(frame, wire.Ping):
                self.stats["pings"] += 1
                # A ping needs nothing but the link's acknowledgement, and no reply will
                # carry it: acknowledge at once rather than on a timer after `ack_delay`.
                session.link.acknowledge_now(now)
        except RuleError as error:
            session.link.send(_error_frame(error.code, error.message, seq))

    # --- accounts ------------------------------------------------------------------------

    def _on_register(self, request: wire.Register, address: Address, now: float) -> None:
        wait = self._register_limit.take(address[0], now)
        if wait > 0:
            self._refuse(
                address,
                request.rid,
                now,
                "too_many_registrations",
                "Too many registrations from your address; try again later.",
                wait,
            )
            return
        try:
            name = check_name(request.name)
            password = check_password(request.password)
        except RuleError as error:
            self._refuse(address, request.rid, now, error.code, error.message)
            return
        key = name_key(name)
        existing = self.accounts.get(key)
        if existing is not None and existing.rid == request.rid:
            # Stored, but the answer was lost with a daemon that stopped: answer again.
            reply = wire.Registered(rid=request.rid, name=existing.name)
            self._finish_request(address, request.rid, reply, now)
            return
        if existing is not None or key in self._reserved_names:
            message = f"The name {name!r} is taken; choose another."
            self._refuse(address, request.rid, now, "name_taken", message)
            return
        self._reserved_names.add(key)
        job = self._job(_Registration(address, request.rid, name, key))
        self._in_progress[(address, request.rid)] = job
        self._effects.append(HashPassword(job, password))

    def password_hashed(self, job: int, password_hash: str, wall: float) -> None:
        """The shell hashed a new account's password: store the account."""
        registration = self._jobs.pop(job)
        assert isinstance(registration, _Registration)
        account = Account(
            id=self._next_account_id,
            name=registration.name,
            key=registration.key,
            password_hash=password_hash,
            created=iso_time(wall),
            rid=registration.rid,
        )
        self._next_account_id += 1
        self._storing[account.id] = registration
        self._effects.append(Persist(account))

    def _on_login(self, request: wire.Login, address: Address, now: float) -> None:
        account = self.accounts.get(name_key(request.name))
        if account is None:
            message = f"There is no account named {request.name!r}."
            self._refuse(address, request.rid, now, "unknown_user", message)
            return
        wait = max(
            self._account_failures.retry_after(account.key, now),
            self._address_failures.retry_after(address[0], now),
        )
        if wait > 0:
            self._refuse(
                address,
                request.rid,
                now,
                "throttled",
                "Too many failed logins; wait a little before trying again.",
                wait,
            )
            return
        if self._sessions_full(address):
            self._refuse(address, request.rid, now, "too_many_sessions", _TOO_MANY_SESSIONS)
            return
        attempt = _LoginAttempt(address, request.rid, account, request.since, request.quiet)
        job = self._job(attempt)
        self._in_progress[(address, request.rid)] = job
        # The form that was hashed at registration (NFC), whatever form this one came in.
        password = unicodedata.normalize("NFC", request.password)
        self._effects.append(CheckPassword(job, account.password_hash, password))

    def password_checked(self, job: int, ok: bool, now: float, wall: float) -> None:
        """The shell checked a login's password."""
        attempt = self._jobs.pop(job)
        assert isinstance(attempt, _LoginAttempt)
        address, account = attempt.address, attempt.account
        if not ok:
            self._account_failures.failed(account.key, now)
            self._address_failures.failed(address[0], now)
            self._refuse(address, attempt.rid, now, "wrong_password", "Wrong password.")
            return
        self._account_failures.succeeded(account.key)
        self._address_failures.succeeded(address[0])
        if self._sessions_full(address):
            self._refuse(address, attempt.rid, now, "too_many_sessions", _TOO_MANY_SESSIONS)
            return
        session = self._open_session(account, address, now)
        welcome = wire.Welcome(
            rid=attempt.rid,
            sid=session.sid,
            token=session.token,
            name=account.name,
            unread=self.mailbox.count(account.id),
        )
        self._finish_request(address, attempt.rid, welcome, now)
        if attempt.quiet:
            # A look from outside: who is there and what waits, without entering.
            session.quiet = True
            session.link.send(wire.encode(wire.Ready(count=0)))
            return
        self._send_backlog(session, attempt.since)
        if self.room.enter(session.sid, account.id, account.name) and self._notices_on():
            join = wire.encode(wire.Join(name=account.name, ts=iso_time(wall)))
            self.room.broadcast(join, exclude=session.sid)

    def _sessions_full(self, address: Address) -> bool:
        held = self._sessions_per_ip.get(address[0], 0)
        return held >= self.config.max_sessions_per_address

    def _refuse(
        self,
        address: Address,
        rid: str,
        now: float,
        code: str,
        message: str,
        retry_after: float | None = None,
    ) -> None:
        """Answer a request outside a session with an error (remembered like any answer)."""
        if retry_after is not None:
            retry_after = _round_up(retry_after)
        reply = wire.ErrorReply(code=code, message=message, rid=rid, retry_after=retry_after)
        self._finish_request(address, rid, reply, now)

    def _open_session(self, account: Account, address: Address, now: float) -> Session:
        sid = self._new_session_id()
        while sid in self.sessions:
            sid = self._new_session_id()
        header = b'{"v":%d,"t":"s","sid":%d' % (wire.PROTOCOL_VERSION, sid)
        session = Session(
            sid=sid,
            token=self._new_token(),
            account=account,
            address=address,
            link=Link(header, self.config.link),
            bucket=TokenBucket(self.config.message_rate, self.config.message_burst),
            last_heard=now,
            idle_check_at=self._idle_check(now),
        )
        self.sessions[sid] = session
        self._sessions_per_ip[address[0]] = self._sessions_per_ip.get(address[0], 0) + 1
        self._dirty.add(session)
        return session

    def _send_backlog(self, session: Session, since: int | None) -> None:
        if since is None:
            public, more = self.window.latest(self.config.history_on_login)
        else:
            public, more = self.window.after(since, self.config.resume_limit)
        waiting = self.mailbox.waiting(session.account.id)
        # What is not on disk yet is shown by `_fan_out` once it is, this session included.
        unstored = self._sent_by
        backlog = sorted(
            [m for m in (*public, *waiting) if m.id not in unstored], key=lambda m: m.id
        )
        link = session.link
        for message in backlog:
            tag = ("pm", message.id) if message.private else None
            link.send(_message_frame(message, history=True), tag)
        link.send(wire.encode(wire.Ready(count=len(backlog), more=more)))

    # --- chat ------------------------------------------------------------------------------

    def _on_say(
        self,
        session: Session,
        seq: int,
        text: str,
        cid: str,
        to: str | None,
        now: float,
        wall: float,
    ) -> None:
        account = session.account
        earlier = self.window.find(account.id, cid)
        if earlier is not None:
            self._acknowledge(session, seq, earlier)
            return
        check_text(text)
        recipient: Account | None = None
        if to is not None:
            recipient = self.accounts.get(name_key(to))
            if recipient is None:
                raise RuleError("unknown_user", f"There is no account named {to!r}.")
            if self.mailbox.count(recipient.id) >= self.config.mailbox_limit:
                raise RuleError(
                    "mailbox_full", f"{recipient.name} has too many unread messages already."
                )
        if session.quiet:
            raise RuleError("bad_request", "Log in without `quiet` to take part in the room.")
        if not self._may_send(session, cid, now, seq):
            return
        message = Message(
            id=self._next_message_id,
            ts=iso_time(wall),
            sender_id=account.id,
            sender=account.name,
            text=text,
            recipient_id=recipient.id if recipient else None,
            recipient=recipient.name if recipient else None,
            cid=cid,
        )
        self._next_message_id += 1
        self.window.add(message)
        self._awaiting_commit[message.id] = [(session.sid, seq)]
        self._sent_by[message.id] = session.sid
        self._effects.append(Persist(message))
        if recipient is not None:
            self.mailbox.add(message)

    def _fan_out(self, message: Message, sender_sid: int) -> None:
        """Show a stored message to the room (or to the two ends of a private one).

        Only once it is on disk: a crash before the commit loses it, and its sender then
        sends it again, so anyone shown it earlier would see it twice, or under an id
        the restarted daemon gives to another message.
        """
        frame = _message_frame(message)
        if message.recipient_id is None:
            self.room.broadcast(frame, exclude=sender_sid)
        else:
            self.room.to_account(message.recipient_id, frame, tag=("pm", message.id))
            if message.recipient_id != message.sender_id:
                self.room.to_account(message.sender_id, frame, exclude=sender_sid)

    def _may_send(self, session: Session, cid: str, now: float, seq: int) -> bool:
        """The per-session token bucket, keeping resent messages in their order."""
        blocked = session.blocked_cid
        if blocked is not None and now > session.blocked_until + _BLOCK_GRACE:
            blocked = None  # the client gave that message up
        if blocked is None or blocked == cid:
            wait = session.bucket.take(now)
            if wait == 0.0:
                session.blocked_cid = None
                return True
            session.blocked_cid, session.blocked_until = cid, now + wait
        else:
            wait = max(session.bucket.wait(now), 0.001)
        message = "You are sending too fast; slow down."
        session.link.send(_error_frame("rate_limited", message, seq, _round_up(wait)))
        return False

    def _acknowledge(self, session: Session, seq: int, message: Message) -> None:
        waiting = self._awaiting_commit.get(message.id)
        if waiting is not None:
            waiting.append((session.sid, seq))
        else:
            session.link.send(_stored_frame(message, seq))

    def _on_who(self, session: Session, seq: int) -> None:
        names = self.room.online()
        part: list[str] = []
        size = 0
        for name in names:
            if size + len(name.encode()) + 3 > 700 and part:
                session.link.send(wire.encode(wire.Names(re=seq, names=part)))
                part, size = [], 0
            part.append(name)
            size += len(name.encode()) + 3
        if part:
            session.link.send(wire.encode(wire.Names(re=seq, names=part)))
        session.link.send(wire.encode(wire.Ok(re=seq, count=len(names))))

    def history_loaded(self, job: int, messages: Iterable[Message] | None) -> None:
        """The shell read a page of history for a session's request (None: it could not)."""
        sid, seq = self._jobs.pop(job)
        session = self.sessions.get(sid)
        if session is None:
            return
        self._dirty.add(session)
        if messages is None:
            sorry = "The server could not read its history; try again later."
            session.link.send(_error_frame("storage_failed", sorry, seq))
            return
        count = 0
        for message in messages:
            session.link.send(_message_frame(message, history=True, re=seq))
            count += 1
        session.link.send(wire.encode(wire.Ok(re=seq, count=count)))

    def _on_acked(self, session: Session, tags: list[Hashable]) -> None:
        delivered: list[int] = []
        for tag in tags:
            if (
                isinstance(tag, tuple)
                and tag[0] == "pm"
                and self.mailbox.delivered(session.account.id, tag[1])
            ):
                delivered.append(tag[1])
        if delivered:
            self._effects.append(Persist(MarkDelivered(tuple(delivered))))

    # --- storage results ----------------------------------------------------------------------

    def committed(self, op: StoreOp, now: float) -> None:
        """The persistence task committed `op`: answer whoever waited for it."""
        if isinstance(op, Message):
            self._fan_out(op, self._sent_by.pop(op.id, 0))
            for sid, seq in self._awaiting_commit.pop(op.id, ()):
                session = self.sessions.get(sid)
                if session is not None:
                    session.link.send(_stored_frame(op, seq))
                    self._dirty.add(session)
        elif isinstance(op, Account):
            registration = self._storing.pop(op.id)
            self._reserved_names.discard(op.key)
            self.accounts[op.key] = op
            reply = wire.Registered(rid=registration.rid, name=op.name)
            self._finish_request(registration.address, registration.rid, reply, now)

    def failed(self, op: StoreOp, now: float) -> None:
        """The persistence task could not commit `op`: tell whoever waited for it."""
        message = "The server could not save this; try again later."
        if isinstance(op, Message):
            # Not stored, so never shown: forget it, and a resend is a new message.
            self._sent_by.pop(op.id, None)
            self.window.forget(op)
            if op.recipient_id is not None:
                self.mailbox.delivered(op.recipient_id, op.id)
            for sid, seq in self._awaiting_commit.pop(op.id, ()):
                session = self.sessions.get(sid)
                if session is not None:
                    session.link.send(_error_frame("storage_failed", message, seq))
                    self._dirty.add(session)
        elif isinstance(op, Account):
            registration = self._storing.pop(op.id)
            self._reserved_names.discard(op.key)
            reply = wire.ErrorReply(code="storage_failed", message=message, rid=registration.rid)
            self._finish_request(registration.address, registration.rid, reply, now)

    # --- sessions ending ----------------------------------------------------------------------

    def _close(
        self,
        session: Session,
        reason: str,
        now: float,
        wall: float,
        *,
        flush: bool = False,
        notify: bool = True,
    ) -> None:
        if flush:
            self._flush_session(session, now)
        self._dirty.discard(session)
        del self.sessions[session.sid]
        self._release_ip(session.address)
        account = session.account
        if self.room.leave(session.sid, account.id) and notify and self._notices_on():
            leave = wire.encode(wire.Leave(name=account.name, ts=iso_time(wall), reason=reason))
            self.room.broadcast(leave)

    def _release_ip(self, address: Address) -> None:
        count = self._sessions_per_ip.get(address[0], 0) - 1
        if count > 0:
            self._sessions_per_ip[address[0]] = count
        else:
            self._sessions_per_ip.pop(address[0], None)

    def shutdown(self, now: float, wall: float) -> None:
        """Tell every session the daemon is going away; the shell then sends the output."""
        bye = wire.encode(
            wire.Bye(reason="shutdown", message="The server is shutting down; it will be back.")
        )
        for session in list(self.sessions.values()):
            session.link.send(bye)
            self._close(session, "shutdown", now, wall, flush=True, notify=False)

    def _notices_on(self) -> bool:
        return self.room.accounts_online <= self.config.notice_limit

    # --- time ------------------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        """When `handle_timers` must next run, or None."""
        timers = self._timers
        while timers:
            deadline, sid = timers[0]
            session = self.sessions.get(sid)
            if session is not None and session.timer_at == deadline:
                return deadline
            heapq.heappop(timers)
        return None

    def handle_timers(self, now: float, wall: float) -> None:
        """Retransmit, acknowledge late, and close sessions that went silent or stuck."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, sid = heapq.heappop(timers)
            session = self.sessions.get(sid)
            if session is None or session.timer_at != deadline:
                continue
            session.timer_at = None
            if now >= session.idle_check_at:
                # The same sum as the deadline, not `now - last_heard`: in floating point
                # the two can disagree, and the check would then re-arm itself for `now`.
                silent_until = session.last_heard + self.config.idle_timeout
                if now >= silent_until:
                    self._close(session, "timeout", now, wall)
                    continue
                session.idle_check_at = self._idle_check(session.last_heard)
            session.link.handle_timer(now)
            if session.link.failure is not None:
                self._close(session, "timeout", now, wall)
                continue
            self._dirty.add(session)

    def _idle_check(self, heard: float) -> float:
        """When to look again at a session last heard at `heard`: on a whole second.

        Sessions' checks then share wake-ups (10,000 sessions: one a second, not ~200),
        and a silent session is closed at most a second after `idle_timeout`.
        """
        # Never before `heard + idle_timeout`: the check then always finds it passed.
        return float(math.ceil(heard + self.config.idle_timeout))

    def _schedule(self, session: Session, now: float) -> None:
        # The idle check is not moved on every datagram heard: when it comes due, it
        # looks at `last_heard` and sets itself again. That keeps the heap small.
        deadline = session.link.next_timer()
        idle = session.idle_check_at
        if deadline is None or idle < deadline:
            deadline = idle
        if not session.validated and (self._budget_left(session) <= 0 or deadline <= now):
            # What is due does not fit what the address has earned: only the client's next
            # datagram can change that, so wait for it rather than fire the timer again.
            deadline = idle
        if session.timer_at != deadline:
            session.timer_at = deadline
            heapq.heappush(self._timers, (deadline, session.sid))
            if len(self._timers) > 4 * len(self.sessions) + 1024:
                self._timers = [
                    (s.timer_at, s.sid) for s in self.sessions.values() if s.timer_at is not None
                ]
                heapq.heapify(self._timers)

    # --- output ----------------------------------------------------------------------------------

    def _deliver(self, sid: int, frame: bytes, tag: Hashable | None) -> None:
        session = self.sessions[sid]
        session.link.send(frame, tag)
        self._dirty.add(session)

    def datagrams_to_send(self, now: float, wall: float = 0.0) -> list[tuple[bytes, Address]]:
        """Everything due to be sent now, as `(datagram, address)` pairs."""
        dirty, self._dirty = self._dirty, set()
        for session in dirty:
            if session.sid in self.sessions:
                self._flush_session(session, now)
        for session in dirty:
            if session.link.failure is not None and session.sid in self.sessions:
                self._close(session, session.link.failure, now, wall)
            elif session.sid in self.sessions:
                self._schedule(session, now)
        out, self._outbox = self._outbox, []
        return out

    def _flush_session(self, session: Session, now: float) -> None:
        if session.challenge is not None and not session.link.extra:
            # Until the new address answers, every datagram to it repeats the challenge:
            # one that was lost must not leave the session unproven for good.
            session.link.extra = b',"challenge":"%s"' % session.challenge.encode()
        budget = None if session.validated else self._budget_left(session)
        for datagram in session.link.datagrams_to_send(now, budget):
            if not session.validated:
                session.bytes_out += len(datagram)
            self._outbox.append((datagram, session.address))

    def _budget_left(self, session: Session) -> int:
        return self.config.amplification_factor * session.bytes_in - session.bytes_out

    def take_effects(self) -> list[Effect]:
        """Work the shell must do (and report back on), in the order it arose."""
        effects, self._effects = self._effects, []
        return effects

    # --- replies outside sessions, and the anti-amplification rule ------------------------

    def _count_received(self, address: Address, size: int) -> None:
        budget = self._budgets.pop(address, None) or _AddressBudget()
        budget.received += size
        self._budgets[address] = budget
        if len(self._budgets) > self.config.tracked_addresses:
            self._budgets.popitem(last=False)

    def _reply(self, address: Address, reply: wire.ServerDatagram) -> None:
        self._send_unvalidated(address, wire.encode(reply))

    def _send_unvalidated(self, address: Address, data: bytes) -> None:
        """Send to an address that has not proven it receives: at most 3x what it sent."""
        budget = self._budgets.get(address)
        if budget is None:
            self.stats["unsent_for_amplification"] += 1
            return
        if budget.sent + len(data) > self.config.amplification_factor * budget.received:
            self.stats["unsent_for_amplification"] += 1
            return
        budget.sent += len(data)
        self._outbox.append((data, address))

    def _finish_request(
        self, address: Address, rid: str, reply: wire.ServerDatagram, now: float
    ) -> None:
        data = wire.encode(reply)
        self._in_progress.pop((address, rid), None)
        replies = self._replies
        replies[(address, rid)] = (data, now + self.config.reply_cache_seconds)
        while replies:
            _key, (_data, expires) = next(iter(replies.items()))
            if expires > now and len(replies) <= self.config.tracked_addresses:
                break
            replies.popitem(last=False)
        self._send_unvalidated(address, data)

    def _cached_reply(self, address: Address, rid: str, now: float) -> bytes | None:
        cached = self._replies.get((address, rid))
        if cached is None or cached[1] <= now:
            return None
        return cached[0]

    def _job(self, state: Any) -> int:
        job = self._next_job
        self._next_job += 1
        self._jobs[job] = state
        return job
