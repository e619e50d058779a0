"""The bench's clients: raw non-blocking sockets, many to a process.

trio-chat clients speak the wire protocol with the project's `Link` (login, session
datagrams, acknowledgements, keepalives); seed clients write its space-separated
commands. A pump per kind waits on their sockets (and timers) with `select.epoll`.
"""

from __future__ import annotations

import heapq
import math
import os
import select
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from trio_chat import wire
from trio_chat.client import ClientConfig
from trio_chat.reliability import Link

from .config import HOST, PASSWORD, BenchError
from .tally import Tally

SOCKET_BUFFER = 4 * 1024 * 1024
KEEPALIVE = ClientConfig().keepalive
LINK_CONFIG = ClientConfig().link


def udp_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    sock.setblocking(False)
    sock.connect((HOST, port))
    return sock


def drain(sock: socket.socket) -> Iterator[bytes]:
    recv = sock.recv
    while True:
        try:
            yield recv(2048)
        except BlockingIOError:
            return
        except OSError:
            continue  # an ICMP error for an earlier send


def send(sock: socket.socket, data: bytes) -> None:
    with suppress(OSError):
        sock.send(data)


class _Frame(msgspec.Struct):
    """The fields of a server frame the bench looks at; the rest are skipped unparsed."""

    t: str
    text: str = ""


class _Packet(msgspec.Struct, tag_field="t", tag="s"):
    """A session datagram as the bench reads it: frames decoded in the same pass."""

    sid: int
    pn: int
    ack: int = 0
    sack: list[tuple[int, int]] = []
    frames: list[tuple[int, _Frame]] = []
    challenge: str | None = None


_ServerDatagram = _Packet | wire.Registered | wire.Welcome | wire.Pending | wire.ErrorReply
_server_datagram = msgspec.json.Decoder(_ServerDatagram)


class TrioConn:
    """One socket and one trio-chat session, driven by hand: login, link, keepalive."""

    def __init__(self, port: int, name: str, *, keepalive: float | None = None) -> None:
        self.sock = udp_socket(port)
        self.fd = self.sock.fileno()
        self.name = name
        self.keepalive = keepalive
        self.rid = f"{name}.{os.getpid()}.{time.monotonic_ns()}"
        self.link: Link | None = None
        self.sid = 0
        self.ready = False
        """The login backlog has arrived (the server sent `ready`)."""
        self.error: str | None = None
        self.lost = False
        self.login_at = math.inf
        self.retry_at = math.inf
        self.welcomed_at = math.inf
        self.last_ping = 0.0
        self.timer_at = math.inf
        self.oks = 0
        self.tally = Tally()

    def login(self, now: float) -> None:
        request = wire.Login(rid=self.rid, name=self.name, password=PASSWORD)
        send(self.sock, wire.encode(request))
        self.login_at = min(self.login_at, now)
        self.retry_at = now + 1.0

    def handle(self, data: bytes, now: float) -> list[_Frame]:
        """Take one datagram from the server; return the frames it delivered in order."""
        try:
            datagram = _server_datagram.decode(data)
        except msgspec.MsgspecError:
            return []
        link = self.link
        if isinstance(datagram, _Packet):
            if link is None or datagram.sid != self.sid:
                return []
            if datagram.challenge is not None:
                link.extra = b',"response":%b' % wire.encode(datagram.challenge)
            # The link only orders and counts frames; it carries them as they are given.
            frames: Any = datagram.frames
            delivered: Any = link.receive(datagram.pn, datagram.ack, datagram.sack, frames, now)
            return [frame for _seq, frame in delivered]
        if isinstance(datagram, wire.Welcome):
            if link is None and datagram.rid == self.rid:
                self._start_session(datagram, now)
        elif isinstance(datagram, wire.Pending):
            self.retry_at = now + 5.0
        elif isinstance(datagram, wire.ErrorReply):
            if datagram.code == "session_unknown" and datagram.sid == self.sid:
                self.lost = True
            elif datagram.rid == self.rid:
                self.error = datagram.code
                self.retry_at = math.inf
        return []

    def _start_session(self, welcome: wire.Welcome, now: float) -> None:
        self.sid = welcome.sid
        header = b'{"v":%d,"t":"s","sid":%d,"token":%b' % (
            wire.PROTOCOL_VERSION,
            welcome.sid,
            wire.encode(welcome.token),
        )
        self.link = Link(header, LINK_CONFIG)
        self.link.send(wire.encode(wire.Ping()))  # proves this address receives
        self.last_ping = now
        self.welcomed_at = now
        self.retry_at = math.inf

    def on_frames(self, frames: list[_Frame], now: float) -> None:
        """Count what arrived: the sender's messages, `ok`s, the end of the backlog."""
        for frame in frames:
            kind = frame.t
            if kind == "msg":
                self.tally.add(frame.text, now)
            elif kind == "ok":
                self.oks += 1
            elif kind == "ready":
                self.ready = True
            elif kind == "bye":
                self.lost = True

    def flush(self, now: float) -> None:
        link = self.link
        if link is None:
            return
        for datagram in link.datagrams_to_send(now):
            send(self.sock, datagram)

    def next_timer(self) -> float:
        link = self.link
        if link is None:
            return self.retry_at
        deadline = link.next_timer()
        at = math.inf if deadline is None else deadline
        if self.keepalive is not None:
            at = min(at, self.last_ping + self.keepalive)
        return at

    def on_timer(self, now: float) -> None:
        link = self.link
        if link is None:
            if now >= self.retry_at and self.error is None:
                self.login(now)
            return
        link.handle_timer(now)
        if self.keepalive is not None and now >= self.last_ping + self.keepalive:
            link.send(wire.encode(wire.Ping()))
            self.last_ping = now
        if link.failure is not None:
            self.lost = True

    def close(self) -> None:
        self.sock.close()


class Pump:
    """Many sessions in one process: waits on their sockets, acknowledges, fires timers."""

    def __init__(self, control: Connection[Any, Any]) -> None:
        self.epoll = select.epoll()
        self.control = control
        self.epoll.register(control.fileno(), select.EPOLLIN)
        self.conns: dict[int, TrioConn] = {}
        self._timers: list[tuple[float, int]] = []
        self.stop = False
        self.watched: dict[int, Callable[[], None]] = {}

    def watch(self, conn: Connection[Any, Any], ready: Callable[[], None]) -> None:
        """Call `ready` whenever `conn` has something to read."""
        self.watched[conn.fileno()] = ready
        self.epoll.register(conn.fileno(), select.EPOLLIN)

    def add(self, conn: TrioConn) -> None:
        self.conns[conn.fd] = conn
        self.epoll.register(conn.fd, select.EPOLLIN)

    def schedule(self, conn: TrioConn) -> None:
        at = conn.next_timer()
        if at < conn.timer_at:
            conn.timer_at = at
            heapq.heappush(self._timers, (at, conn.fd))

    def poll(self, timeout: float) -> float:
        """Wait up to `timeout` for datagrams or a timer, handle what came; return the time."""
        timers = self._timers
        if timers:
            timeout = min(timeout, timers[0][0] - time.monotonic())
        events = self.epoll.poll(max(0.0, timeout))
        control = self.control.fileno()
        now = time.monotonic()
        for fd, _mask in events:
            if fd == control:
                self._on_control()
                continue
            if fd in self.watched:
                self.watched[fd]()
                continue
            now = time.monotonic()  # per socket: the time a datagram was taken in
            conn = self.conns[fd]
            for data in drain(conn.sock):
                frames = conn.handle(data, now)
                if frames:
                    conn.on_frames(frames, now)
            conn.flush(now)
            self.schedule(conn)
        while timers and timers[0][0] <= now:
            at, fd = heapq.heappop(timers)
            conn = self.conns[fd]
            if conn.timer_at != at:
                continue
            conn.timer_at = math.inf
            conn.on_timer(now)
            conn.flush(now)
            self.schedule(conn)
        return now

    def _on_control(self) -> None:
        while self.control.poll():
            message = self.control.recv()
            if message[0] == "stop":
                self.stop = True

    def log_in(self, conns: Sequence[TrioConn], window: int, deadline: float) -> None:
        """Log `conns` in, `window` at a time, until each has its backlog (or gives up)."""
        pending = list(reversed(conns))
        waiting: list[TrioConn] = []
        while (pending or waiting) and not self.stop:
            now = time.monotonic()
            if now > deadline:
                raise BenchError(f"{len(pending) + len(waiting)} logins did not finish in time")
            while pending and len(waiting) < window:
                conn = pending.pop()
                conn.login(now)
                self.schedule(conn)
                waiting.append(conn)
            self.poll(0.05)
            failed = [conn for conn in waiting if conn.error is not None]
            if failed:
                raise BenchError(f"login of {failed[0].name} refused: {failed[0].error}")
            waiting = [conn for conn in waiting if not conn.ready]

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.epoll.close()


class SeedConn:
    """One socket speaking the seed's commands: `1 name pw` registers, `3 name addr word`."""

    def __init__(self, port: int, name: str) -> None:
        self.sock = udp_socket(port)
        self.fd = self.sock.fileno()
        self.name = name
        self.tally = Tally()
        self.replied_at = math.inf

    def command(self, line: str) -> None:
        send(self.sock, line.encode("ascii"))

    def on_datagram(self, data: bytes, now: float) -> None:
        _head, colon, word = data.partition(b"]:")
        if colon:
            self.tally.add(word, now)
        else:
            self.replied_at = min(self.replied_at, now)  # "OK" or an "Error_..." reply


class SeedPump:
    """Many seed clients in one process; there is nothing to acknowledge."""

    def __init__(self, control: Connection[Any, Any]) -> None:
        self.epoll = select.epoll()
        self.control = control
        self.epoll.register(control.fileno(), select.EPOLLIN)
        self.conns: dict[int, SeedConn] = {}
        self.stop = False
        self.watched: dict[int, Callable[[], None]] = {}

    def watch(self, conn: Connection[Any, Any], ready: Callable[[], None]) -> None:
        """Call `ready` whenever `conn` has something to read."""
        self.watched[conn.fileno()] = ready
        self.epoll.register(conn.fileno(), select.EPOLLIN)

    def add(self, conn: SeedConn) -> None:
        self.conns[conn.fd] = conn
        self.epoll.register(conn.fd, select.EPOLLIN)

    def poll(self, timeout: float) -> float:
        events = self.epoll.poll(max(0.0, timeout))
        control = self.control.fileno()
        now = time.monotonic()
        for fd, _mask in events:
            if fd == control:
                while self.control.poll():
                    if self.control.recv()[0] == "stop":
                        self.stop = True
                continue
            if fd in self.watched:
                self.watched[fd]()
                continue
            now = time.monotonic()
            conn = self.conns[fd]
            for data in drain(conn.sock):
                conn.on_datagram(data, now)
        return now

    def register(self, conns: Sequence[SeedConn], window: int, deadline: float) -> None:
        """Register `conns` (resending after 0.5 s: the seed may drop them) until all answer."""
        pending = list(reversed(conns))
        waiting: dict[SeedConn, float] = {}
        while pending or waiting:
            now = time.monotonic()
            if now > deadline:
                raise BenchError(f"{len(pending) + len(waiting)} seed registrations timed out")
            while pending and len(waiting) < window:
                conn = pending.pop()
                conn.command(f"1 {conn.name} {PASSWORD}")
                waiting[conn] = now
            self.poll(0.02)
            for conn, sent in list(waiting.items()):
                if conn.replied_at < math.inf:
                    del waiting[conn]
                elif now - sent > 0.5:
                    conn.command(f"1 {conn.name} {PASSWORD}")
                    waiting[conn] = now

    def close(self) -> None:
        for conn in self.conns.values():
            conn.sock.close()
        self.epoll.close()
