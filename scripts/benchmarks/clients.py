"""The bench's clients: raw non-blocking sockets, many to a process, one pump for all.

A trio-chat client is the project's own client core (`ClientConnection`) on a socket:
every datagram it sends or reads goes through the core, as in `trio_chat.client`, with
`select.epoll` and `time.monotonic()` in place of Trio. A seed client writes the seed's
space-separated commands. Both are `Endpoint`s to the `Pump`, which waits on their
sockets and timers; the worker roles use either through the `Client` interface.
"""

from __future__ import annotations

import array
import heapq
import math
import os
import select
import socket
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from multiprocessing.connection import Connection
from typing import Any, Protocol, TypeVar

from trio_chat.client_protocol import ClientConfig, ClientConnection, Handle
from trio_chat.client_shell import local_address
from trio_chat.events import Disconnected, History, PublicMessage, Reconnected

from .config import HOST, PASSWORD, SEED, BenchError, Target
from .tally import Tally

SOCKET_BUFFER = 4 * 1024 * 1024
RECEIVE_BUFFER = 2048


def udp_socket(port: int) -> socket.socket:
    """A non-blocking UDP socket connected to `port` on the bench's host."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    sock.setblocking(False)
    sock.connect((HOST, port))
    return sock


def receive(sock: socket.socket) -> bytes | None:
    """The next datagram waiting on `sock`, if there is one.

    One a wake-up: the pump's sockets are level-triggered, so what else waits is reported
    at the next `epoll` at once. Reading on until the socket is empty would cost every
    wake-up a failing `recv` and its exception (0.9 us here), and most wake-ups bring one.
    """
    try:
        return sock.recv(RECEIVE_BUFFER)
    except OSError:
        return None  # nothing after all, or an ICMP error for an earlier send


def send(sock: socket.socket, data: bytes) -> None:
    """Send, or drop it as the network would (a full buffer, nobody listening yet)."""
    with suppress(OSError):
        sock.send(data)


class Endpoint(Protocol):
    """What the pump drives: a socket, what to do with its datagrams, and a timer."""

    @property
    def sock(self) -> socket.socket: ...
    def on_datagram(self, data: bytes, now: float) -> None: ...
    def flush(self, now: float) -> None: ...
    def next_timer(self) -> float: ...
    def on_timer(self, now: float) -> None: ...


class Client(Endpoint, Protocol):
    """What the worker roles use: one person in the room, on either server."""

    @property
    def name(self) -> str: ...
    @property
    def tally(self) -> Tally: ...
    @property
    def ready(self) -> bool:
        """In the room: logged in (the seed: registered) and the backlog has arrived."""

    @property
    def error(self) -> str | None:
        """Why the server refused this client, if it did."""

    @property
    def answered_at(self) -> float:
        """When the server first answered the login (`math.inf` until then)."""

    @property
    def lost(self) -> int:
        """Sessions lost that the client did not end itself."""

    @property
    def pending(self) -> int:
        """Requests not yet answered (the seed answers none: always 0)."""

    def start(self, now: float) -> None:
        """Log in (the seed: register, or log in when made for a storm)."""

    def say(self, text: str, now: float) -> None: ...
    def leave(self, now: float) -> None: ...
    def close(self) -> None: ...


# --- trio-chat ---------------------------------------------------------------------------


class TrioClient:
    """A trio-chat client: the project's `ClientConnection` on one raw socket.

    Live public messages (and those a resumed session's `History` brings) go to the
    tally with their arrival time; `Disconnected` counts as a lost session. Each `say`
    records the time from the call to its handle completing: the daemon's `ok`, sent
    once the message is on disk.
    """

    def __init__(
        self, port: int, key: bytes, name: str, *, config: ClientConfig | None = None
    ) -> None:
        self.sock = udp_socket(port)
        self.name = name
        where = f"{HOST}:{port}"
        self.core = ClientConnection(key, name, PASSWORD, config=config, where=where)
        self.core.local_address = local_address(self.sock)  # as `trio_chat.connect` does
        self.core.wall_offset = time.time() - time.monotonic()  # the pump's clock
        self.tally = Tally()
        self.answered_at = math.inf
        self.disconnects = 0
        self.reconnects = 0
        self.ack_delays: array.array[float] = array.array("d")
        """Seconds from each `say` to its acknowledgement, in the order they came."""
        self.refused = 0
        """Requests the daemon answered with an error."""
        self._left = False
        self._now = 0.0

    @property
    def ready(self) -> bool:
        return self.core.ready

    @property
    def error(self) -> str | None:
        failure = self.core.failure
        return None if failure is None or self._left else str(failure)

    @property
    def lost(self) -> int:
        return self.disconnects + (self.error is not None)

    @property
    def pending(self) -> int:
        return self.core.pending

    @property
    def acked(self) -> int:
        return len(self.ack_delays)

    def start(self, now: float) -> None:
        self.core.start(now)

    def say(self, text: str, now: float) -> None:
        def acknowledged(handle: Handle) -> None:
            if handle.error is None:
                self.ack_delays.append(self._now - now)
            else:
                self.refused += 1

        self.core.say(text).add_done_callback(acknowledged)

    def leave(self, now: float) -> None:
        """Log out: the handle completes once the daemon has ended the session."""
        if not self.core.closed:
            self._left = True
            self.core.logout()

    def on_datagram(self, data: bytes, now: float) -> None:
        self._now = now
        core = self.core
        core.receive_datagram(data, now)
        if self.answered_at == math.inf and (core.ready or core.failure is not None):
            self.answered_at = now  # the login's answer, not the handshake's
        self._take_events(now)

    def _take_events(self, now: float) -> None:
        next_event = self.core.next_event
        add = self.tally.add
        while (event := next_event()) is not None:
            if isinstance(event, PublicMessage):
                add(event.text, now)
            elif isinstance(event, Disconnected):
                self.disconnects += 1
                if os.environ.get("BENCH_DEBUG"):
                    print(f"{self.name} disconnected: {event.reason}", file=sys.stderr)
            elif isinstance(event, Reconnected):
                self.reconnects += 1
            elif isinstance(event, History) and event.resumed:
                for message in event.messages:
                    if isinstance(message, PublicMessage):
                        add(message.text, now)

    def flush(self, now: float) -> None:
        sock = self.sock
        for datagram in self.core.datagrams_to_send(now):
            send(sock, datagram)

    def next_timer(self) -> float:
        at = self.core.next_timer()
        return math.inf if at is None else at

    def on_timer(self, now: float) -> None:
        self._now = now
        self.core.handle_timer(now)
        self._take_events(now)

    def close(self) -> None:
        self.sock.close()


# --- the seed ----------------------------------------------------------------------------


class SeedClient:
    """One socket speaking the seed's commands: `1 name pw` registers, `3 name addr word`.

    `start` sends `join` (`1`, register, by default: the only state the seed keeps) and,
    with `retry`, sends it again that often until the seed answers: it may drop it.
    """

    def __init__(self, port: int, name: str, *, join: str = "1", retry: float | None = 0.5) -> None:
        self.sock = udp_socket(port)
        self.name = name
        self.tally = Tally()
        self.answered_at = math.inf
        self.error: str | None = None
        self.lost = 0
        self.pending = 0
        self._join = f"{join} {name} {PASSWORD}".encode("ascii")
        self._say = f"3 {name} {HOST} "
        self._retry = retry
        self._retry_at = math.inf

    @property
    def ready(self) -> bool:
        return self.answered_at < math.inf

    def start(self, now: float) -> None:
        send(self.sock, self._join)
        if self._retry is not None:
            self._retry_at = now + self._retry

    def say(self, text: str, now: float) -> None:
        send(self.sock, (self._say + text).encode("ascii"))

    def leave(self, now: float) -> None:
        """The bench's seed clients just stop (as its storm of logins always has)."""

    def on_datagram(self, data: bytes, now: float) -> None:
        _head, colon, word = data.partition(b"]:")
        if colon:
            self.tally.add(word, now)
        elif self.answered_at == math.inf:
            self.answered_at = now  # "OK" or an "Error_..." reply
            self._retry_at = math.inf

    def flush(self, now: float) -> None:
        """Commands leave as they are written."""

    def next_timer(self) -> float:
        return self._retry_at

    def on_timer(self, now: float) -> None:
        if now >= self._retry_at:
            self.start(now)

    def close(self) -> None:
        self.sock.close()


def open_client(target: Target, name: str, *, storm: bool = False) -> Client:
    """A client of `target`'s kind; `storm` ones log in once (the seed: `2 name pw`)."""
    if target.kind == SEED:
        # The seed has no password hashing: its login is a dictionary lookup.
        return (
            SeedClient(target.port, name, join="2", retry=None)
            if storm
            else SeedClient(target.port, name)
        )
    return TrioClient(target.port, target.key, name, config=target.config)


# --- the pump ----------------------------------------------------------------------------

E = TypeVar("E", bound=Endpoint)


class Pump:
    """Many endpoints in one process: waits on their sockets, hands them datagrams, fires
    their timers, and sends what they have; also reads the process's control pipe."""

    def __init__(self, control: Connection[Any, Any]) -> None:
        self.epoll = select.epoll()
        self.control = control
        self.epoll.register(control.fileno(), select.EPOLLIN)
        self.endpoints: dict[int, Endpoint] = {}
        self.watched: dict[int, Callable[[], None]] = {}
        self.stop = False
        self.messages: list[tuple[Any, ...]] = []
        """Control messages other than `stop`, in the order they came."""
        self._timers: list[tuple[float, int]] = []
        self._timer_at: dict[int, float] = {}

    def add(self, endpoint: E) -> E:
        fd = endpoint.sock.fileno()
        self.endpoints[fd] = endpoint
        self._timer_at[fd] = math.inf
        self.epoll.register(fd, select.EPOLLIN)
        return endpoint

    def watch(self, conn: Connection[Any, Any], ready: Callable[[], None]) -> None:
        """Call `ready` whenever `conn` has something to read."""
        self.watched[conn.fileno()] = ready
        self.epoll.register(conn.fileno(), select.EPOLLIN)

    def kick(self, endpoint: Endpoint, now: float) -> None:
        """Send what `endpoint` has and mind its timer: after it was asked to do something."""
        endpoint.flush(now)
        self._schedule(endpoint.sock.fileno(), endpoint)

    def _schedule(self, fd: int, endpoint: Endpoint) -> None:
        at = endpoint.next_timer()
        if at < self._timer_at[fd]:
            self._timer_at[fd] = at
            heapq.heappush(self._timers, (at, fd))

    def poll(self, timeout: float) -> float:
        """Wait up to `timeout` for datagrams or a timer, handle what came; return the time."""
        timers = self._timers
        if timers:
            timeout = min(timeout, timers[0][0] - time.monotonic())
        events = self.epoll.poll(max(0.0, timeout))
        endpoints = self.endpoints
        now = time.monotonic()
        for fd, _mask in events:
            endpoint = endpoints.get(fd)
            if endpoint is None:
                if fd in self.watched:
                    self.watched[fd]()
                else:
                    self._on_control()
                continue
            data = receive(endpoint.sock)
            if data is None:
                continue
            now = time.monotonic()  # per datagram: the time it was taken in
            endpoint.on_datagram(data, now)
            endpoint.flush(now)
            self._schedule(fd, endpoint)
        timer_at = self._timer_at
        while timers and timers[0][0] <= now:
            at, fd = heapq.heappop(timers)
            if timer_at.get(fd) != at:
                continue  # superseded by an earlier one, or the endpoint is gone
            timer_at[fd] = math.inf
            endpoint = endpoints[fd]
            endpoint.on_timer(now)
            endpoint.flush(now)
            self._schedule(fd, endpoint)
        return now

    def _on_control(self) -> None:
        while self.control.poll():
            message = self.control.recv()
            if message[0] == "stop":
                self.stop = True
            else:
                self.messages.append(message)

    def log_in(self, clients: Sequence[Client], window: int, deadline: float) -> None:
        """Start `clients`, `window` at a time, until each is in the room (or one is refused)."""
        pending = list(reversed(clients))
        waiting: list[Client] = []
        while (pending or waiting) and not self.stop:
            now = time.monotonic()
            if now > deadline:
                raise BenchError(f"{len(pending) + len(waiting)} logins did not finish in time")
            while pending and len(waiting) < window:
                client = pending.pop()
                client.start(now)
                self.kick(client, now)
                waiting.append(client)
            self.poll(0.05)
            failed = [client for client in waiting if client.error is not None]
            if failed:
                raise BenchError(f"login of {failed[0].name} refused: {failed[0].error}")
            waiting = [client for client in waiting if not client.ready]

    def close(self) -> None:
        for endpoint in self.endpoints.values():
            endpoint.sock.close()
        self.epoll.close()
