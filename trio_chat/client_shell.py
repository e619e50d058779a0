"""The Trio plumbing every client call shares: a connected UDP socket to the daemon, a
loop that pumps a sans-I/O core's datagrams and timers over it (`drive`, `Wire`), and the
wait for an answer that pings the daemon and follows it across channels
(`answer_on_channels`). `client` and `trust` are written over it."""

from __future__ import annotations

import contextlib
import math
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio

from . import wire
from .client_handshake import unreachable
from .client_protocol import (
    ClientConnection,
)
from .errors import ServerUnreachable
from .keys import unbracketed
from .reliability import Link
from .wire import Endpoint


class SansIO(Protocol):
    """What the shell drives: a `ClientConnection`, or a `KeyProbe` (`fetch_key`)."""

    def receive_datagram(self, data: bytes, now: float) -> None: ...
    def connection_refused(self, now: float) -> None: ...
    def datagrams_to_send(self, now: float) -> list[bytes]: ...
    def next_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...


def take_datagrams(sock: socket.socket, core: SansIO, now: float, most: int = 256) -> None:
    """Hand a client core what waits on its connected, non-blocking socket (at most `most`
    datagrams), then fire its timer if it is due."""
    for _ in range(most):
        try:
            data = sock.recv(wire.RECEIVE_BUFFER)
        except BlockingIOError:
            break
        except ConnectionRefusedError:
            core.connection_refused(now)  # nothing listens at the daemon's address
        except OSError:
            continue
        else:
            core.receive_datagram(data, now)
    deadline = core.next_timer()
    if deadline is not None and deadline <= now:
        core.handle_timer(now)


async def _resolve(host: str, port: int) -> tuple[socket.AddressFamily, Any]:
    try:
        infos = await trio.socket.getaddrinfo(unbracketed(host), port, type=socket.SOCK_DGRAM)
    except OSError as error:
        raise ServerUnreachable(
            f"Cannot resolve {host}: {error.strerror or error}; check the daemon's address."
        ) from None
    except UnicodeError as error:  # a name IDNA cannot encode (`chat_é`): no host has it
        raise ServerUnreachable(
            f"Cannot resolve {host}: {error}; check the daemon's address."
        ) from None
    family, _kind, _proto, _name, address = infos[0]
    return family, address


async def open_socket(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket connected to the daemon at `host`:`port`."""
    family, address = await _resolve(host, port)
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(address)
    return sock


def local_address(sock: socket.socket) -> Endpoint | None:
    """The address a connected UDP socket sends from: its IP (the one the route to the
    daemon chose) and port."""
    try:
        host, port = sock.getsockname()[:2]
    except OSError:
        return None
    return (str(host).split("%")[0], int(port))


class Wire:
    """A connected UDP socket, read and written without blocking."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def exchange(self, core: SansIO) -> None:
        """Hand the core what arrived, fire its timer if due, send what it has."""
        take_datagrams(self.sock, core, trio.current_time())
        self.send(core)

    def send(self, core: SansIO) -> None:
        for datagram in core.datagrams_to_send(trio.current_time()):
            # Nobody listening yet, or a full buffer: retransmission covers both.
            with contextlib.suppress(OSError):
                self.sock.send(datagram)

    async def wait(self, core: SansIO) -> trio.CancelScope:
        """Wait until a datagram arrives or the core's timer is due."""
        deadline = core.next_timer()
        with trio.CancelScope(deadline=math.inf if deadline is None else deadline) as scope:
            await trio.lowlevel.wait_readable(self.sock)
        return scope


async def drive(sock: socket.socket, core: SansIO, done: Callable[[], bool]) -> None:
    """Run a sans-I/O exchange over `sock` (from `open_socket`) until `done()` holds;
    what is due then is still sent."""
    udp = Wire(sock)
    while True:
        udp.exchange(core)
        if done():
            return
        await udp.wait(core)


PROBES = 4
"""While an answer is awaited on a channel, the daemon is asked whether it still holds
the channel (a `ping`) this many times per timeout. A daemon that restarted after taking
the request answers `RESET`, and the request goes again on a new channel; one that says
nothing for a timeout and a quarter is gone."""
PATIENCE = 12
"""How many timeouts a request waits on one channel while the daemon acknowledges the
pings but does not answer (a long queue of password checks, or a daemon that never
will): 60 s with the default timeout."""


def _no_answer(where: str, patience: float) -> ServerUnreachable:
    return ServerUnreachable(
        f"trio-chat at {where} took the request but has not answered it in {patience:.0f} s; "
        "try again later (a registration may have been made meanwhile: try logging in)."
    )


class Waiting:
    """A request's wait for its answer on one channel: quarters of the timeout, a ping
    after each, and how long the daemon has been silent."""

    def __init__(self, link: Link, timeout: float) -> None:
        self.link = link
        self.quarter = timeout / PROBES
        self._quarters_left = PATIENCE * PROBES
        self._quiet = 0
        self._heard = link.last_received

    def passed(self, connection: ClientConnection, where: str) -> None:
        """A quarter passed without the answer: ping, or raise why the wait is over."""
        heard = self.link.last_received
        self._quiet = self._quiet + 1 if heard == self._heard else 0
        self._heard = heard
        self._quarters_left -= 1
        if self._quiet > PROBES:
            raise unreachable(where)  # nothing at all for a timeout and a quarter
        if self._quarters_left <= 0:
            raise _no_answer(where, PATIENCE * PROBES * self.quarter)
        connection.probe()


async def answer_on_channels(
    connection: ClientConnection,
    seconds: float,
    done: Callable[[], bool],
    progress: Callable[[Callable[[], bool]], Awaitable[None]],
    probed: Callable[[], None] = lambda: None,
) -> None:
    """Wait until `done()`, `progress(until)` moving the connection on until `until()`.
    On each open channel the daemon is pinged every quarter of `seconds` (`PROBES`,
    `PATIENCE`; `probed()` sends the ping if `progress` does not): `ServerUnreachable` if
    it says nothing for `seconds` and a quarter, or acknowledges but does not answer for
    `PATIENCE` times `seconds`. While a channel is being opened (again, after the daemon
    restarted) the handshake's own timeout counts; each new channel starts afresh."""
    while not done():
        channel = connection.link
        if channel is None:
            await progress(lambda: done() or connection.link is not None)
            continue
        waiting = Waiting(channel, seconds)

        def settled(channel: Link = channel) -> bool:
            return done() or connection.link is not channel

        while not settled():
            with trio.move_on_after(waiting.quarter):
                await progress(settled)
            if not settled():
                waiting.passed(connection, connection.where)
                probed()


def wall_offset() -> float:
    """What to add to Trio's clock to read the wall clock, for a `ClientConnection`."""
    return time.time() - trio.current_time()
