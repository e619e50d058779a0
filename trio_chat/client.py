"""The Trio client API: register, connect, chat; used by the CLI, bots and tests.

    async with trio_chat.connect("127.0.0.1", 1600, "alice", password) as chat:
        await chat.say("hello")
        async for event in chat.events():
            ...

Every call returns once the server has acknowledged it (a message: once it is on disk)
and raises a `ChatError` subclass when the server refuses. If the daemon goes away the
client keeps trying to log in again, then resends what was not acknowledged and shows
what it missed, with nothing lost and nothing twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import secrets
import socket
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import trio

from . import wire
from .errors import (
    ChatError,
    ConnectionLost,
    ProtocolError,
    RateLimited,
    ServerUnreachable,
    WrongPassword,
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

_RECEIVE_BUFFER = 2048


@dataclass(frozen=True, slots=True)
class ClientConfig:
    timeout: float = 5.0
    """Give up (`ServerUnreachable`) when the daemon has not answered for this long."""
    busy_timeout: float = 60.0
    """How long to wait once the daemon said it is working on the request."""
    keepalive: float = 15.0
    """Send a ping after this long without sending anything."""
    link: LinkConfig = field(
        # A client mostly listens: acknowledging every fourth datagram (or after 25 ms)
        # spares a busy daemon most of the acks, at no cost to delivery.
        default_factory=lambda: LinkConfig(
            max_rto=2.0, max_retransmits=8, ack_every=4, ack_delay=0.025
        )
    )
    reconnect: bool = True
    """Log in again when the session is lost, instead of raising `ConnectionLost`."""
    reconnect_delay_max: float = 5.0
    retry_rate_limited: bool = True
    """Wait and resend a message the daemon refused as too fast, rather than failing."""


def _rule_error(error: RuleError) -> ChatError:
    return error_for(error.code, error.message)


def _new_id() -> str:
    return secrets.token_urlsafe(12)


def _parse_time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp).astimezone(UTC)


def _message_event(frame: wire.Msg | wire.Pm) -> ChatMessage:
    if isinstance(frame, wire.Msg):
        return PublicMessage(
            frame.id, _parse_time(frame.ts), frame.sender, frame.text, history=frame.history
        )
    return PrivateMessage(
        frame.id, _parse_time(frame.ts), frame.sender, frame.to, frame.text, history=frame.history
    )


# --- requests outside a session ---------------------------------------------------------------


async def _resolve(host: str, port: int) -> tuple[int, Any]:
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as error:
        raise ServerUnreachable(f"Cannot resolve {host}: {error.strerror or error}.") from None
    family, _kind, _proto, _name, address = infos[0]
    return family, address


def _open_socket(family: int, address: Any) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(address)
    return sock


class _Inbox:
    """Reads what is waiting on a connected socket; notes ICMP "port unreachable" errors."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.refused = False

    def take(self, limit: int = 256) -> list[bytes]:
        got: list[bytes] = []
        for _ in range(limit):
            try:
                got.append(self.sock.recv(_RECEIVE_BUFFER))
            except BlockingIOError:
                break
            except ConnectionRefusedError:
                self.refused = True  # nothing listens at the daemon's address right now
            except OSError:
                continue
        return got


def _send(sock: socket.socket, data: bytes) -> None:
    # Nobody listening yet, or a full buffer: retransmission covers both.
    with contextlib.suppress(OSError):
        sock.send(data)


def _unreachable(where: str) -> ServerUnreachable:
    return ServerUnreachable(f"Cannot reach trio-chat at {where}; is `trio-chat serve` running?")


async def _request(
    sock: socket.socket,
    request: wire.Register | wire.Login,
    config: ClientConfig,
    where: str,
) -> wire.ServerDatagram:
    """Send a request until its answer comes (retransmitting with backoff), or time out."""
    data = wire.encode(request)
    deadline = trio.current_time() + config.timeout
    interval = 0.2
    while True:
        _send(sock, data)
        resend_at = min(deadline, trio.current_time() + interval)
        interval = min(interval * 2, 1.0)
        while True:
            with trio.move_on_at(resend_at):
                await trio.lowlevel.wait_readable(sock)
            for raw in _Inbox(sock).take():
                try:
                    reply = wire.decode_server_datagram_untrusted(raw)
                except wire.WireError:
                    continue
                if getattr(reply, "rid", None) != request.rid:
                    continue
                if isinstance(reply, wire.Pending):
                    deadline = max(deadline, trio.current_time() + config.busy_timeout)
                    continue
                return reply
            if trio.current_time() >= resend_at:
                break
        if trio.current_time() >= deadline:
            raise _unreachable(where)


async def register(
    host: str, port: int, name: str, password: str, *, config: ClientConfig | None = None
) -> str:
    """Create an account; return its name as the server keeps it. Raises `ChatError`s."""
    config = config or ClientConfig()
    try:
        check_name(name)
        check_password(password)
    except RuleError as error:
        raise _rule_error(error) from None
    family, address = await _resolve(host, port)
    with _open_socket(family, address) as sock:
        request = wire.Register(rid=_new_id(), name=name, password=password)
        reply = await _request(sock, request, config, f"{host}:{port}")
    if isinstance(reply, wire.Registered):
        return reply.name
    if isinstance(reply, wire.ErrorReply):
        raise error_for(reply.code, reply.message, reply.retry_after)
    raise ProtocolError(f"Unexpected reply {type(reply).__name__} to a registration.")


# --- the session ---------------------------------------------------------------------------------


@dataclass(eq=False)
class _Request:
    kind: str
    frame: bytes
    text: str = ""
    to: str | None = None
    cid: str | None = None
    seq: int = 0
    order: int = 0
    parts: list[Any] = field(default_factory=list)
    result: Any = None
    error: ChatError | None = None
    done: trio.Event = field(default_factory=trio.Event)


class Receipt:
    """A request on its way; `await receipt.wait()` gives its result or raises its error."""

    def __init__(self, request: _Request) -> None:
        self._request = request

    @property
    def done(self) -> bool:
        return self._request.done.is_set()

    async def wait(self) -> Any:
        await self._request.done.wait()
        if self._request.error is not None:
            raise self._request.error
        return self._request.result


class _SessionLost(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ChatClient:
    """A logged-in session; make one with `connect()`."""

    def __init__(
        self,
        host: str,
        port: int,
        name: str,
        password: str,
        config: ClientConfig,
        *,
        quiet: bool = False,
    ) -> None:
        self.host, self.port = host, port
        self.quiet = quiet
        self.name = name
        self.unread = 0
        self.config = config
        self._password = password
        self._where = f"{host}:{port}"
        self._sock: socket.socket | None = None
        self._link: Link | None = None
        self._sid = 0
        self._requests: list[_Request] = []
        self._by_seq: dict[int, _Request] = {}
        self._by_cid: dict[str, _Request] = {}
        self._submitted = 0
        self._paused: list[_Request] = []
        """Messages refused as too fast, and those written after them: resent together."""
        self._resume_at = 0.0
        self._backlog: list[ChatMessage] = []
        self._resuming = False
        self._ready = trio.Event()
        self._last_seen = 0
        self._seen: set[int] = set()
        self._seen_order: deque[int] = deque()
        self._last_sent = 0.0
        self._wait: trio.CancelScope | None = None
        self._closed = False
        self._leaving = False
        self._events_in, self._events_out = trio.open_memory_channel[Event](math.inf)
        self.failure: ChatError | None = None

    # --- public API ---------------------------------------------------------------------------

    async def say(self, text: str) -> PublicMessage:
        """Send a public message; return it as the server stamped it."""
        result: PublicMessage = await self.say_nowait(text).wait()
        return result

    async def whisper(self, to: str, text: str) -> PrivateMessage:
        """Send a private message to an account (online or not)."""
        result: PrivateMessage = await self.whisper_nowait(to, text).wait()
        return result

    def say_nowait(self, text: str) -> Receipt:
        """Queue a public message at once (keeping order) and return its receipt."""
        self._check_text(text)
        cid = _new_id()
        frame = wire.encode(wire.Say(text=text, cid=cid))
        return Receipt(self._submit(_Request("say", frame, text=text, cid=cid)))

    def whisper_nowait(self, to: str, text: str) -> Receipt:
        self._check_text(text)
        cid = _new_id()
        frame = wire.encode(wire.Whisper(to=to, text=text, cid=cid))
        return Receipt(self._submit(_Request("whisper", frame, text=text, to=to, cid=cid)))

    async def who(self) -> list[str]:
        """The names of everyone online, sorted."""
        names: list[str] = await self.who_nowait().wait()
        return names

    def who_nowait(self) -> Receipt:
        """Ask who is online, in order with what was sent before; the receipt gives the names."""
        return Receipt(self._submit(_Request("who", wire.encode(wire.Who()))))

    async def history(self, limit: int = 20, before: int | None = None) -> list[ChatMessage]:
        """Up to `limit` (at most 100) messages older than message id `before`, oldest first."""
        messages: list[ChatMessage] = await self.history_nowait(limit, before).wait()
        return messages

    def history_nowait(self, limit: int = 20, before: int | None = None) -> Receipt:
        """Ask for history, in order with what was sent before; the receipt gives the messages."""
        limit = max(1, min(limit, wire.HISTORY_LIMIT_MAX))
        frame = wire.encode(wire.HistoryRequest(limit=limit, before=before))
        return Receipt(self._submit(_Request("history", frame)))

    async def drain(self) -> None:
        """Wait until everything sent so far has been answered."""
        for request in list(self._requests):
            await request.done.wait()

    async def events(self) -> AsyncIterator[Event]:
        """Everything that happens in the room, in order, starting with the login `History`."""
        async for event in self._events_out:
            yield event

    async def logout(self) -> None:
        """Leave the room; the session ends."""
        if self._closed:
            return
        if self._link is not None:
            self._leaving = True
            request = self._submit(_Request("logout", wire.encode(wire.Logout())))
            with trio.move_on_after(self.config.timeout):
                await request.done.wait()
        self._shut(ConnectionLost("You logged out."))

    def _leave_now(self) -> None:
        """Leaving in a hurry (cancelled, or an error): say goodbye once, wait for nothing."""
        if self._closed:
            return
        if self._link is not None:
            self._leaving = True
            self._link.send(wire.encode(wire.Logout()))
            self._flush()
        self._shut(ConnectionLost("You logged out."))

    # --- requests ------------------------------------------------------------------------------

    def _check_text(self, text: str) -> None:
        try:
            check_text(text)
        except RuleError as error:
            raise _rule_error(error) from None

    def _submit(self, request: _Request) -> _Request:
        if self._closed:
            raise self.failure or ConnectionLost("The session has ended.")
        self._submitted += 1
        request.order = self._submitted
        self._requests.append(request)
        if request.cid is not None:
            self._by_cid[request.cid] = request
            if self._paused:
                self._paused.append(request)  # behind the messages waiting to be resent
                return request
        if self._link is not None:
            self._transmit(request)
            self._flush()
        return request

    def _transmit(self, request: _Request) -> None:
        assert self._link is not None
        request.seq = self._link.send(request.frame)
        self._by_seq[request.seq] = request
        self._last_sent = trio.current_time()

    def _finish(
        self, request: _Request, result: Any = None, error: ChatError | None = None
    ) -> None:
        if request.done.is_set():
            return
        request.result, request.error = result, error
        request.done.set()
        self._by_seq.pop(request.seq, None)
        if request.cid is not None:
            self._by_cid.pop(request.cid, None)
        self._requests.remove(request)

    # --- the connection ------------------------------------------------------------------------

    async def _login(self, since: int | None) -> None:
        """Log in (again) and set up a fresh link; raises `ChatError` on refusal."""
        assert self._sock is not None
        try:
            check_password(self._password)
        except RuleError:
            raise WrongPassword("Wrong password.") from None
        login = wire.Login(
            rid=_new_id(), name=self.name, password=self._password, since=since, quiet=self.quiet
        )
        reply = await _request(self._sock, login, self.config, self._where)
        if isinstance(reply, wire.ErrorReply):
            raise error_for(reply.code, reply.message, reply.retry_after)
        if not isinstance(reply, wire.Welcome):
            raise ProtocolError(f"Unexpected reply {type(reply).__name__} to a login.")
        self.name = reply.name
        self.unread = reply.unread
        self._sid = reply.sid
        header = b'{"v":%d,"t":"s","sid":%d,"token":%b' % (
            wire.PROTOCOL_VERSION,
            reply.sid,
            wire.encode(reply.token),
        )
        self._link = Link(header, self.config.link)
        self._backlog = []
        # The first datagram proves to the server that this address receives.
        self._link.send(wire.encode(wire.Ping()))
        self._last_sent = trio.current_time()
        self._by_seq = {}
        self._paused = []
        for request in self._requests:
            self._transmit(request)
        self._flush()

    async def _open(self) -> None:
        family, address = await _resolve(self.host, self.port)
        self._sock = _open_socket(family, address)
        try:
            await self._login(since=None)
        except BaseException:
            self._sock.close()
            raise

    async def _run(self) -> None:
        """Pump datagrams and timers; on a lost session, log in again (if configured)."""
        while not self._closed:
            try:
                await self._pump()
            except _SessionLost as lost:
                self._link = None
                if self._leaving:
                    # The session ended while we were leaving (the daemon closed it and its
                    # "ok" was lost, or it went away): the logout is done, stop waiting.
                    self._shut(ConnectionLost("You logged out."))
                    return
                if self._closed:
                    return
                if not self.config.reconnect:
                    self._shut(
                        ConnectionLost(f"Lost the connection to {self._where}: {lost.reason}.")
                    )
                    return
                self._emit(Disconnected(lost.reason))
                await self._relogin()

    async def _relogin(self) -> None:
        delay = 0.5
        while not self._closed:
            try:
                self._resuming = True
                await self._login(since=self._last_seen)
                self._emit(Reconnected())
                return
            except ServerUnreachable:
                pass
            except ChatError as error:
                if error.retry_after is None:
                    self._shut(error)
                    return
                delay = error.retry_after
            await trio.sleep(delay)
            delay = min(delay * 2, self.config.reconnect_delay_max)

    async def _pump(self) -> None:
        assert self._sock is not None
        sock = self._sock
        inbox = _Inbox(sock)
        while not self._closed:
            for data in inbox.take():
                self._on_datagram(data)
            if inbox.refused:
                # The daemon's port is closed: it stopped or crashed. A restarted daemon
                # will not know this session, so log in again rather than retransmit.
                raise _SessionLost("the daemon is not running")
            self._on_timers(trio.current_time())
            self._flush()
            link = self._link
            if link is None or link.failure is not None:
                raise _SessionLost("the daemon stopped answering")
            deadline = self._next_timer()
            with trio.CancelScope(deadline=deadline) as wait:
                self._wait = wait
                await trio.lowlevel.wait_readable(sock)
            self._wait = None

    def _next_timer(self) -> float:
        assert self._link is not None
        deadline = self._last_sent + self.config.keepalive
        timer = self._link.next_timer()
        if timer is not None:
            deadline = min(deadline, timer)
        if self._paused:
            deadline = min(deadline, self._resume_at)
        return deadline

    def _on_timers(self, now: float) -> None:
        link = self._link
        if link is None:
            return
        link.handle_timer(now)
        if now >= self._last_sent + self.config.keepalive:
            link.send(wire.encode(wire.Ping()))
            self._last_sent = now
        if self._paused and now >= self._resume_at:
            paused, self._paused = self._paused, []
            for request in sorted(paused, key=lambda r: r.order):
                if not request.done.is_set():
                    self._transmit(request)

    def _flush(self) -> None:
        link, sock = self._link, self._sock
        if link is None or sock is None:
            return
        for datagram in link.datagrams_to_send(trio.current_time()):
            _send(sock, datagram)
        if self._wait is not None:
            self._wait.deadline = min(self._wait.deadline, self._next_timer())

    # --- what the server sends -------------------------------------------------------------------

    def _on_datagram(self, data: bytes) -> None:
        try:
            datagram = wire.decode_server_datagram_untrusted(data)
        except wire.WireError:
            return
        link = self._link
        if isinstance(datagram, wire.ErrorReply):
            if datagram.code == "session_unknown" and datagram.sid == self._sid:
                raise _SessionLost("the daemon no longer knows this session")
            return
        if not isinstance(datagram, wire.Packet) or link is None or datagram.sid != self._sid:
            return  # a late reply to an earlier request, or an old session's datagram
        if datagram.challenge is not None:
            link.extra = b',"response":%b' % wire.encode(datagram.challenge)
        now = trio.current_time()
        for _seq, raw in link.receive(
            datagram.pn, datagram.ack, datagram.sack, datagram.frames, now
        ):
            try:
                frame = wire.decode_server_frame_untrusted(raw)
                self._on_frame(frame)
            except (wire.WireError, ValueError):
                continue  # a frame this client cannot use; the link has acknowledged it

    def _on_frame(self, frame: wire.ServerFrame) -> None:
        if isinstance(frame, wire.Msg | wire.Pm):
            self._on_message(frame)
        elif isinstance(frame, wire.Ok):
            self._on_ok(frame)
        elif isinstance(frame, wire.ErrorFrame):
            self._on_error(frame)
        elif isinstance(frame, wire.Names):
            request = self._by_seq.get(frame.re)
            if request is not None:
                request.parts.extend(frame.names)
        elif isinstance(frame, wire.Ready):
            backlog = tuple(self._backlog)
            self._backlog = []
            self._emit(History(backlog, frame.more, resumed=self._resuming))
            self._resuming = False
            self._ready.set()
        elif isinstance(frame, wire.Join):
            self._emit(Joined(frame.name, _parse_time(frame.ts)))
        elif isinstance(frame, wire.Leave):
            self._emit(Left(frame.name, _parse_time(frame.ts), frame.reason))
        elif isinstance(frame, wire.Notice):
            self._emit(Notice(frame.text))
        elif isinstance(frame, wire.Bye):
            raise _SessionLost(frame.message.rstrip("."))

    def _on_message(self, frame: wire.Msg | wire.Pm) -> None:
        message = _message_event(frame)
        if frame.re is not None:
            request = self._by_seq.get(frame.re)
            if request is not None:
                request.parts.append(message)
            return
        mine = self._by_cid.get(frame.cid) if frame.cid is not None else None
        if mine is not None and frame.sender == self.name:
            # Our own message, resent after a reconnect and already stored: it is the answer.
            self._remember(message.id)
            self._finish(mine, dataclasses.replace(message, history=False))
            return
        if message.id in self._seen:
            return
        self._remember(message.id)
        if frame.history:
            self._backlog.append(message)
        else:
            self._emit(message)

    def _on_ok(self, frame: wire.Ok) -> None:
        request = self._by_seq.get(frame.re)
        if request is None:
            return
        result: Any = None
        if request.kind in ("say", "whisper") and frame.id is not None and frame.ts is not None:
            self._remember(frame.id)
            ts = _parse_time(frame.ts)
            if request.kind == "say":
                result = PublicMessage(frame.id, ts, self.name, request.text)
            else:
                to = frame.to or request.to or ""
                result = PrivateMessage(frame.id, ts, self.name, to, request.text)
        elif request.kind in ("who", "history"):
            result = request.parts
        self._finish(request, result)

    def _on_error(self, frame: wire.ErrorFrame) -> None:
        request = self._by_seq.get(frame.re) if frame.re is not None else None
        if request is None:
            self._emit(Notice(frame.message))
            return
        error = error_for(frame.code, frame.message, frame.retry_after)
        if isinstance(error, RateLimited) and self.config.retry_rate_limited:
            # Wait, then resend it with every message written after it, in order.
            self._by_seq.pop(request.seq, None)
            self._paused.append(request)
            wake = trio.current_time() + (frame.retry_after or 1.0)
            self._resume_at = max(self._resume_at, wake)
            return
        self._finish(request, error=error)

    def _remember(self, message_id: int) -> None:
        self._last_seen = max(self._last_seen, message_id)
        if message_id not in self._seen:
            self._seen.add(message_id)
            self._seen_order.append(message_id)
            if len(self._seen_order) > 20_000:
                self._seen.discard(self._seen_order.popleft())

    def _emit(self, event: Event) -> None:
        if not self._closed:
            self._events_in.send_nowait(event)

    def _shut(self, failure: ChatError) -> None:
        if self._closed:
            return
        self._closed = True
        self.failure = failure
        for request in list(self._requests):
            self._finish(request, error=failure)
        self._events_in.close()
        if self._wait is not None:
            self._wait.cancel()


@asynccontextmanager
async def connect(
    host: str,
    port: int,
    name: str,
    password: str,
    *,
    config: ClientConfig | None = None,
    quiet: bool = False,
) -> AsyncIterator[ChatClient]:
    """Log in and enter the room; leaving the block logs out. Raises `ChatError`s.

    With `quiet`, only look: the session can ask `who()` and sees `unread`, but it does
    not enter the room (no history, no messages, no join or leave notice for others).
    """
    config = config or ClientConfig()
    client = ChatClient(host, port, name, password, config, quiet=quiet)
    await client._open()
    assert client._sock is not None
    with client._sock:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client._run)
            with trio.move_on_after(config.timeout):
                await client._ready.wait()
            if not client._ready.is_set():
                nursery.cancel_scope.cancel()
                raise _unreachable(client._where)
            try:
                yield client
            except BaseException:
                client._leave_now()
                raise
            else:
                with trio.CancelScope(shield=True):
                    await client.logout()
            finally:
                nursery.cancel_scope.cancel()
