"""The client side of the protocol, with no I/O: the one implementation every client uses.

Shaped like aioquic's `QuicConnection`: feed it what the network delivered
(`receive_datagram(data, now)`, `connection_refused(now)`), send what
`datagrams_to_send(now)` returns, call `handle_timer(now)` at `next_timer()`, and read
what happened from `next_event()`. Requests (`say`, `whisper`, `who`, `history`,
`logout`) return a `Handle` that completes with the daemon's answer. Logging in again
after the session is lost, resending what was not acknowledged, and showing what was
missed in between are states of the core, not of the code that drives it.

    connection = ClientConnection("alice", password)
    connection.start(now)
    ...  # exchange datagrams until `connection.ready` (or `connection.failure`)
    handle = connection.say("hello")

`Registration` is the same shape for creating an account: one request, sent again until
it is answered. Nothing here reads the clock or touches a socket; `now` is any
monotonic time in seconds.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from . import wire
from .errors import (
    ChatError,
    ConnectionLost,
    ProtocolError,
    RateLimited,
    ServerUnreachable,
    error_for,
)
from .events import (
    ChatMessage,
    Disconnected,
    Event,
    History,
    Joined,
    Left,
    Notice,
    PrivateMessage,
    PublicMessage,
    Reconnected,
)
from .reliability import Link, LinkConfig
from .rules import RuleError, check_name, check_password, check_text

SEEN_MEMORY = 20_000
"""How many message ids a connection remembers, so that none is shown twice."""


@dataclass(frozen=True, slots=True)
class ClientConfig:
    timeout: float = 5.0
    """Give up (`ServerUnreachable`) when the daemon has not answered a request this long."""
    busy_timeout: float = 60.0
    """How long to wait once the daemon said it is working on the request."""
    keepalive: float = 15.0
    """Send a ping after this long without sending anything."""
    link: LinkConfig = field(
        # A client mostly listens: acknowledging every fourth datagram (or after 25 ms)
        # spares a busy daemon most of the acks, at no cost to delivery. The daemon
        # acknowledges within 10 ms, which the probe timeout counts in.
        default_factory=lambda: LinkConfig(
            ack_every=4, ack_delay=0.025, peer_ack_delay=0.010, max_pto=2.0, give_up_after=10.0
        )
    )
    reconnect: bool = True
    """Log in again when the session is lost, instead of ending with `ConnectionLost`."""
    reconnect_delay_max: float = 5.0
    retry_rate_limited: bool = True
    """Wait and resend a message the daemon refused as too fast, rather than failing."""


def new_id() -> str:
    """A request or message id: 96 random bits, URL-safe base64 (16 characters)."""
    return secrets.token_urlsafe(12)


def parse_time(stamp: str) -> datetime:
    """A wire timestamp as an aware UTC datetime."""
    return datetime.fromisoformat(stamp).astimezone(UTC)


def message_event(frame: wire.Msg | wire.Pm) -> ChatMessage:
    if isinstance(frame, wire.Msg):
        return PublicMessage(
            frame.id, parse_time(frame.ts), frame.sender, frame.text, history=frame.history
        )
    return PrivateMessage(
        frame.id, parse_time(frame.ts), frame.sender, frame.to, frame.text, history=frame.history
    )


def rule_error(error: RuleError) -> ChatError:
    return error_for(error.code, error.message)


def unreachable(where: str) -> ServerUnreachable:
    return ServerUnreachable(f"Cannot reach trio-chat at {where}; is `trio-chat serve` running?")


# --- requests outside a session ------------------------------------------------------------


class RequestExchange:
    """One request outside a session, sent again until its answer comes or time runs out.

    It is resent after 0.2 s, 0.4 s, 0.8 s, then every second. `pending` (the daemon is
    hashing a password) extends the wait by `busy_timeout`. `answer` is the reply, or
    `error` says why none came.
    """

    def __init__(
        self, request: wire.Register | wire.Login, config: ClientConfig, where: str, now: float
    ) -> None:
        self.request = request
        self.data = wire.encode(request)
        self._config = config
        self._where = where
        self._deadline = now + config.timeout
        self._interval = 0.2
        self._resend_at = now
        self._last_sent: float | None = None
        self.answer: wire.ServerDatagram | None = None
        self.error: ChatError | None = None
        self.rtt: float | None = None
        """The time from the latest sending of the request to its answer (an estimate of
        the round trip: at worst too short, when an earlier copy was answered)."""

    @property
    def done(self) -> bool:
        return self.answer is not None or self.error is not None

    def datagrams_to_send(self, now: float) -> list[bytes]:
        if self.done or now < self._resend_at:
            return []
        self._last_sent = now
        self._resend_at = min(now + self._interval, self._deadline)
        self._interval = min(self._interval * 2, 1.0)
        return [self.data]

    def next_timer(self) -> float | None:
        return None if self.done else self._resend_at

    def handle_timer(self, now: float) -> None:
        if not self.done and now >= self._deadline:
            self.error = unreachable(self._where)

    def receive(self, datagram: wire.ServerDatagram, now: float) -> bool:
        """Take an answer meant for this request; False if it is not one."""
        if self.done or getattr(datagram, "rid", None) != self.request.rid:
            return False
        if isinstance(datagram, wire.Pending):
            self._deadline = max(self._deadline, now + self._config.busy_timeout)
            self._resend_at = max(self._resend_at, min(now + 1.0, self._deadline))
        else:
            self.answer = datagram
            if self._last_sent is not None:
                self.rtt = now - self._last_sent
        return True


class Registration:
    """Create an account: `name` (as the daemon keeps it) or `error` once it is `done`."""

    def __init__(
        self,
        name: str,
        password: str,
        now: float,
        *,
        config: ClientConfig | None = None,
        where: str = "the daemon",
        new_id: Callable[[], str] = new_id,
    ) -> None:
        self.name: str | None = None
        self.error: ChatError | None = None
        try:
            check_name(name)
            check_password(password)
        except RuleError as error:
            self.error = rule_error(error)
        request = wire.Register(rid=new_id(), name=name, password=password)
        self._exchange = RequestExchange(request, config or ClientConfig(), where, now)

    @property
    def done(self) -> bool:
        return self.name is not None or self.error is not None

    def receive_datagram(self, data: bytes, now: float) -> None:
        try:
            datagram = wire.decode_server_datagram_untrusted(data)
        except wire.WireError:
            return
        if self.done or not self._exchange.receive(datagram, now):
            return
        if self._exchange.answer is None:
            return  # `pending`: the daemon is at work on it
        if isinstance(datagram, wire.Registered):
            self.name = datagram.name
        elif isinstance(datagram, wire.ErrorReply):
            self.error = error_for(datagram.code, datagram.message, datagram.retry_after)
        else:
            self.error = ProtocolError(
                f"Unexpected reply {type(datagram).__name__} to a registration."
            )

    def connection_refused(self, now: float) -> None:
        """Nothing listens at the daemon's address now; it may start soon: keep trying."""

    def datagrams_to_send(self, now: float) -> list[bytes]:
        return [] if self.done else self._exchange.datagrams_to_send(now)

    def next_timer(self) -> float | None:
        return None if self.done else self._exchange.next_timer()

    def handle_timer(self, now: float) -> None:
        if self.done:
            return
        self._exchange.handle_timer(now)
        self.error = self._exchange.error


# --- a session ------------------------------------------------------------------------------


class Handle:
    """A request on its way: it completes once with a `result` or an `error`."""

    __slots__ = (
        "_callbacks",
        "cid",
        "error",
        "frame",
        "kind",
        "order",
        "parts",
        "result",
        "seq",
        "text",
        "to",
    )

    def __init__(
        self,
        kind: str,
        frame: bytes,
        *,
        text: str = "",
        to: str | None = None,
        cid: str | None = None,
    ) -> None:
        self.kind = kind
        self.frame = frame
        self.text = text
        self.to = to
        self.cid = cid
        self.seq = 0
        self.order = 0
        self.parts: list[Any] = []
        self.result: Any = None
        self.error: ChatError | None = None
        self._callbacks: list[Callable[[Handle], None]] | None = []

    @property
    def done(self) -> bool:
        return self._callbacks is None

    def add_done_callback(self, callback: Callable[[Handle], None]) -> None:
        """Call `callback(handle)` once it completes (at once if it has)."""
        if self._callbacks is None:
            callback(self)
        else:
            self._callbacks.append(callback)

    def _complete(self, result: Any, error: ChatError | None) -> None:
        callbacks, self._callbacks = self._callbacks, None
        if callbacks is None:
            return
        self.result, self.error = result, error
        for callback in callbacks:
            callback(self)


class _SessionLost(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ClientConnection:
    """A person's connection to the daemon; see the module docstring.

    Its life: `start` sends the login; once the daemon welcomes it and has sent the
    history, `ready` is set. If the session is lost (the daemon stopped answering,
    restarted, or said goodbye) it emits `Disconnected`, logs in again (from the newest
    message it saw), resends every request not yet answered, and emits `Reconnected`
    then a `History` of what was missed. It ends (`closed`, `failure`) on `logout`,
    `close`, or a refusal it cannot wait out.
    """

    def __init__(
        self,
        name: str,
        password: str,
        *,
        config: ClientConfig | None = None,
        quiet: bool = False,
        where: str = "the daemon",
        new_id: Callable[[], str] = new_id,
    ) -> None:
        self.name = name
        self.unread = 0
        self.quiet = quiet
        self.config = config or ClientConfig()
        self.where = where
        self.sid = 0
        self.ready = False
        """The first login succeeded and its history arrived."""
        self.closed = False
        self.failure: ChatError | None = None
        """Why the connection ended: a refusal, a lost session, or `You logged out.`"""
        self._password = password
        self._new_id = new_id
        self._login: RequestExchange | None = None
        self._relogin_at: float | None = None
        self._relogin_delay = 0.5
        self._resuming = False
        self._link: Link | None = None
        self._requests: list[Handle] = []
        self._by_seq: dict[int, Handle] = {}
        self._by_cid: dict[str, Handle] = {}
        self._submitted = 0
        self._paused: list[Handle] = []
        """Messages refused as too fast, and those written after them: resent together."""
        self._resume_at = 0.0
        self._backlog: list[ChatMessage] = []
        self._last_seen = 0
        self._seen: set[int] = set()
        self._seen_order: deque[int] = deque()
        self._last_sent = 0.0
        self._leaving = False
        self._events: deque[Event] = deque()
        self.login_answer: wire.ServerDatagram | None = None
        """The daemon's answer to the latest login: `Welcome` or `ErrorReply`."""
        self.trace: Callable[[wire.ServerFrame], None] | None = None
        """Called with every frame the daemon sends, in order, before it is acted on."""

    # --- requests ---------------------------------------------------------------------------

    def start(self, now: float, since: int | None = None) -> None:
        """Log in for the first time (`since`: show what came after that message id)."""
        if since is not None:
            self._last_seen = since
        self._send_login(now, since=since)

    def say(self, text: str) -> Handle:
        """A public message, queued at once (keeping order); completes with it as stored."""
        self._check_text(text)
        cid = self._new_id()
        frame = wire.encode(wire.Say(text=text, cid=cid))
        return self._submit(Handle("say", frame, text=text, cid=cid))

    def whisper(self, to: str, text: str) -> Handle:
        """A private message to an account (online or not)."""
        self._check_text(text)
        cid = self._new_id()
        frame = wire.encode(wire.Whisper(to=to, text=text, cid=cid))
        return self._submit(Handle("whisper", frame, text=text, to=to, cid=cid))

    def who(self) -> Handle:
        """Who is online; completes with the sorted names."""
        return self._submit(Handle("who", wire.encode(wire.Who())))

    def request(self, frame: wire.ClientFrame | bytes) -> Handle:
        """Send any frame as it is (or bytes as a frame, valid or not): for tests and tools.

        It completes with the `ok` (its `count`, or the parts that came before it) or
        the `error`; a message sent this way is not matched to its echo by `cid`.
        """
        kind = "raw" if isinstance(frame, bytes) else type(frame).__name__.lower()
        return self._submit(Handle(kind, frame if isinstance(frame, bytes) else wire.encode(frame)))

    def history(self, limit: int = 20, before: int | None = None) -> Handle:
        """Up to `limit` messages older than id `before`, oldest first."""
        limit = max(1, min(limit, wire.HISTORY_LIMIT_MAX))
        frame = wire.encode(wire.HistoryRequest(limit=limit, before=before))
        return self._submit(Handle("history", frame))

    def logout(self) -> Handle:
        """Leave the room; completes once the daemon ended the session (or it was gone)."""
        self._leaving = True
        handle = self._submit(Handle("logout", wire.encode(wire.Logout())))
        if self._link is None:
            self._shut(ConnectionLost("You logged out."))
        return handle

    def close(self) -> None:
        """Leave now: say goodbye once if in a session, and wait for nothing."""
        if self.closed:
            return
        self._leaving = True
        if self._link is not None:
            self._link.send(wire.encode(wire.Logout()))
        self._shut(ConnectionLost("You logged out."))

    @property
    def pending(self) -> int:
        """Requests sent or queued that the daemon has not answered yet."""
        return len(self._requests)

    @property
    def link(self) -> Link | None:
        """The session's reliable link, while in a session."""
        return self._link

    @property
    def connected(self) -> bool:
        """In a session now (not logging in again)."""
        return self._link is not None and not self.closed

    def unanswered(self) -> list[Handle]:
        """The requests not answered yet, oldest first."""
        return list(self._requests)

    def _check_text(self, text: str) -> None:
        try:
            check_text(text)
        except RuleError as error:
            raise rule_error(error) from None

    def _submit(self, handle: Handle) -> Handle:
        if self.closed:
            raise self.failure or ConnectionLost("The session has ended.")
        self._submitted += 1
        handle.order = self._submitted
        self._requests.append(handle)
        if handle.cid is not None:
            self._by_cid[handle.cid] = handle
            if self._paused:
                self._paused.append(handle)  # behind the messages waiting to be resent
                return handle
        if self._link is not None:
            self._transmit(handle)
        return handle

    def _transmit(self, handle: Handle) -> None:
        assert self._link is not None
        handle.seq = self._link.send(handle.frame)
        self._by_seq[handle.seq] = handle

    def _finish(self, handle: Handle, result: Any = None, error: ChatError | None = None) -> None:
        if handle.done:
            return
        self._by_seq.pop(handle.seq, None)
        if handle.cid is not None:
            self._by_cid.pop(handle.cid, None)
        self._requests.remove(handle)
        handle._complete(result, error)

    # --- events -------------------------------------------------------------------------------

    def next_event(self) -> Event | None:
        """The next thing that happened in the room, or None."""
        return self._events.popleft() if self._events else None

    def _emit(self, event: Event) -> None:
        if not self.closed:
            self._events.append(event)

    # --- logging in -----------------------------------------------------------------------------

    def _send_login(self, now: float, since: int | None) -> None:
        login = wire.Login(
            rid=self._new_id(),
            name=self.name,
            password=self._password,
            since=since,
            quiet=self.quiet,
        )
        self._login = RequestExchange(login, self.config, self.where, now)
        self._relogin_at = None

    def _on_login_answer(self, answer: wire.ServerDatagram, rtt: float | None, now: float) -> None:
        self._login = None
        self.login_answer = answer
        if isinstance(answer, wire.ErrorReply):
            self._login_failed(error_for(answer.code, answer.message, answer.retry_after), now)
            return
        if not isinstance(answer, wire.Welcome):
            error = ProtocolError(f"Unexpected reply {type(answer).__name__} to a login.")
            self._login_failed(error, now)
            return
        self.name = answer.name
        self.unread = answer.unread
        self.sid = answer.sid
        self._link = Link(wire.session_prefix(answer.sid, answer.token), self.config.link)
        if rtt is not None:
            self._link.seed_rtt(rtt)
        self._backlog = []
        self._relogin_delay = 0.5
        # The first datagram proves to the daemon that this address receives.
        self._link.send(wire.encode(wire.Ping()))
        self._last_sent = now
        self._by_seq = {}
        self._paused = []
        for handle in self._requests:
            self._transmit(handle)
        if self._resuming:
            self._emit(Reconnected())

    def _login_failed(self, error: ChatError, now: float) -> None:
        if not self._resuming:
            self._shut(error)  # the first login: the caller hears why
        elif isinstance(error, ServerUnreachable):
            self._wait_to_relogin(now, self._relogin_delay)
        elif error.retry_after is not None:
            self._wait_to_relogin(now, error.retry_after)
        else:
            self._shut(error)  # the account or password is no longer good

    def _wait_to_relogin(self, now: float, delay: float) -> None:
        self._relogin_at = now + delay
        self._relogin_delay = min(self._relogin_delay * 2, self.config.reconnect_delay_max)

    def _lost(self, reason: str, now: float) -> None:
        """The session is gone: log in again, or end."""
        self._link = None
        if self._leaving:
            # It ended while we were leaving (the daemon closed it and its "ok" was lost,
            # or it went away): the logout is done.
            for handle in [h for h in self._requests if h.kind == "logout"]:
                self._finish(handle)
            self._shut(ConnectionLost("You logged out."))
            return
        if not self.config.reconnect:
            self._shut(ConnectionLost(f"Lost the connection to {self.where}: {reason}."))
            return
        self._emit(Disconnected(reason))
        self._resuming = True
        self._send_login(now, since=self._last_seen)

    # --- the network ----------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, now: float) -> None:
        """Take in one datagram from the daemon's address, whatever it holds."""
        if self.closed:
            return
        try:
            datagram = wire.decode_server_datagram_untrusted(data)
        except wire.WireError:
            return
        login = self._login
        if login is not None and login.receive(datagram, now):
            if login.answer is not None:
                self._on_login_answer(login.answer, login.rtt, now)
            return
        if isinstance(datagram, wire.ErrorReply):
            if datagram.code == "session_unknown" and datagram.sid == self.sid and self._link:
                self._lost("the daemon no longer knows this session", now)
            return
        link = self._link
        if not isinstance(datagram, wire.Packet) or link is None or datagram.sid != self.sid:
            return  # a late reply to an earlier request, or an old session's datagram
        if datagram.challenge is not None:
            link.extra = wire.response_field(datagram.challenge)
        try:
            for _seq, raw in link.receive(
                datagram.pn, datagram.ack, datagram.sack, datagram.frames, now, datagram.echo
            ):
                try:
                    frame = wire.decode_server_frame_untrusted(raw)
                except wire.WireError:
                    continue  # a frame this client cannot use; the link has acknowledged it
                if self.trace is not None:
                    self.trace(frame)
                self._on_frame(frame, now)
        except _SessionLost as lost:
            self._lost(lost.reason, now)

    def connection_refused(self, now: float) -> None:
        """The daemon's port is closed (ICMP): it stopped or crashed.

        A restarted daemon will not know this session, so log in again rather than
        retransmit into the void.
        """
        if self._link is not None and not self.closed:
            self._lost("the daemon is not running", now)

    def datagrams_to_send(self, now: float) -> list[bytes]:
        if self.closed and self._link is None:
            return []
        if self._login is not None:
            return self._login.datagrams_to_send(now)
        link = self._link
        if link is None:
            return []
        out = link.datagrams_to_send(now)
        if out:
            self._last_sent = now
        if self.closed:
            self._link = None  # the goodbye is out; nothing more will be sent
        return out

    def next_timer(self) -> float | None:
        if self.closed:
            return None
        if self._login is not None:
            return self._login.next_timer()
        if self._link is None:
            return self._relogin_at
        deadline = self._last_sent + self.config.keepalive
        timer = self._link.next_timer()
        if timer is not None and timer < deadline:
            deadline = timer
        if self._paused and self._resume_at < deadline:
            deadline = self._resume_at
        return deadline

    def handle_timer(self, now: float) -> None:
        if self.closed:
            return
        if self._login is not None:
            self._login.handle_timer(now)
            if self._login.error is not None:
                error, self._login = self._login.error, None
                self._login_failed(error, now)
            return
        link = self._link
        if link is None:
            if self._relogin_at is not None and now >= self._relogin_at:
                self._send_login(now, since=self._last_seen)
            return
        link.handle_timer(now)
        if link.failure is not None:
            self._lost("the daemon stopped answering", now)
            return
        if now >= self._last_sent + self.config.keepalive:
            link.send(wire.encode(wire.Ping()))
            self._last_sent = now
        if self._paused and now >= self._resume_at:
            paused, self._paused = self._paused, []
            for handle in sorted(paused, key=lambda h: h.order):
                if not handle.done:
                    self._transmit(handle)

    # --- what the daemon sends -------------------------------------------------------------------

    def _on_frame(self, frame: wire.ServerFrame, now: float) -> None:
        if isinstance(frame, wire.Msg | wire.Pm):
            self._on_message(frame)
        elif isinstance(frame, wire.Ok):
            self._on_ok(frame)
        elif isinstance(frame, wire.ErrorFrame):
            self._on_error(frame, now)
        elif isinstance(frame, wire.Names):
            handle = self._by_seq.get(frame.re)
            if handle is not None:
                handle.parts.extend(frame.names)
        elif isinstance(frame, wire.Ready):
            backlog = tuple(self._backlog)
            self._backlog = []
            self._emit(History(backlog, frame.more, resumed=self._resuming))
            self._resuming = False
            self.ready = True
        elif isinstance(frame, wire.Join):
            self._emit(Joined(frame.name, parse_time(frame.ts)))
        elif isinstance(frame, wire.Leave):
            self._emit(Left(frame.name, parse_time(frame.ts), frame.reason))
        elif isinstance(frame, wire.Notice):
            self._emit(Notice(frame.text))
        elif isinstance(frame, wire.Bye):
            raise _SessionLost(frame.message.rstrip("."))

    def _on_message(self, frame: wire.Msg | wire.Pm) -> None:
        message = message_event(frame)
        if frame.re is not None:
            handle = self._by_seq.get(frame.re)
            if handle is not None:
                handle.parts.append(message)
            return
        mine = self._by_cid.get(frame.cid) if frame.cid is not None else None
        if mine is not None and frame.sender == self.name:
            # Our own message, stored before the session was lost: it is the answer.
            self._remember(message.id)
            self._finish(mine, msgspec.structs.replace(message, history=False))
            return
        if message.id in self._seen:
            return
        self._remember(message.id)
        if frame.history:
            self._backlog.append(message)
        else:
            self._emit(message)

    def _on_ok(self, frame: wire.Ok) -> None:
        handle = self._by_seq.get(frame.re)
        if handle is None:
            return
        result: Any = None
        if handle.kind in ("say", "whisper") and frame.id is not None and frame.ts is not None:
            self._remember(frame.id)
            ts = parse_time(frame.ts)
            if handle.kind == "say":
                result = PublicMessage(frame.id, ts, self.name, handle.text)
            else:
                to = frame.to or handle.to or ""
                result = PrivateMessage(frame.id, ts, self.name, to, handle.text)
        elif handle.kind in ("who", "history", "raw"):
            result = handle.parts
        self._finish(handle, result)
        if handle.kind == "logout":
            self._link = None  # the daemon has ended the session
            self._shut(ConnectionLost("You logged out."))

    def _on_error(self, frame: wire.ErrorFrame, now: float) -> None:
        handle = self._by_seq.get(frame.re) if frame.re is not None else None
        if handle is None:
            self._emit(Notice(frame.message))
            return
        error = error_for(frame.code, frame.message, frame.retry_after)
        if isinstance(error, RateLimited) and self.config.retry_rate_limited:
            # Wait, then resend it with every message written after it, in order.
            self._by_seq.pop(handle.seq, None)
            self._paused.append(handle)
            self._resume_at = max(self._resume_at, now + (frame.retry_after or 1.0))
            return
        self._finish(handle, error=error)

    def _remember(self, message_id: int) -> None:
        if message_id > self._last_seen:
            self._last_seen = message_id
        if message_id not in self._seen:
            self._seen.add(message_id)
            self._seen_order.append(message_id)
            if len(self._seen_order) > SEEN_MEMORY:
                self._seen.discard(self._seen_order.popleft())

    def _shut(self, failure: ChatError) -> None:
        if self.closed:
            return
        self.closed = True
        self.failure = failure
        self._login = None
        for handle in list(self._requests):
            self._finish(handle, error=failure)
