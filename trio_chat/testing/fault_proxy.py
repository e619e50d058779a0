"""A UDP proxy that drops, duplicates, reorders and delays datagrams, with a seeded RNG.

It sits between real clients and a real server: clients send to the proxy's address,
and for each client address the proxy opens its own socket towards the server, so the
server sees one distinct address per client, as behind a NAT. Each direction has its
own `Weather`. Nothing here knows about trio-chat: it forwards bytes.

    proxy = FaultProxy(("127.0.0.1", 1600), seed=1, to_server=Weather(loss=0.1))
    address = await nursery.start(proxy.run)

`scripts/proxy.py` runs it from the command line.
"""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import trio

Address = tuple[Any, ...]
_BUFFER = 65536


@dataclass
class Weather:
    """What happens to datagrams going one way."""

    loss: float = 0.0
    """Share of datagrams dropped."""
    duplicate: float = 0.0
    """Share of datagrams delivered twice."""
    reorder: float = 0.0
    """Share of datagrams held back by up to `reorder_delay` more, so later ones overtake."""
    delay: float = 0.0
    """Fixed one-way delay, in seconds."""
    jitter: float = 0.0
    """Up to this much more delay, at random, in seconds."""
    reorder_delay: float = 0.05
    drop_next: int = 0
    """Drop this many datagrams first (counting down), whatever `loss` says."""


@dataclass
class DirectionStats:
    datagrams: int = 0
    bytes: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    delivered: int = 0


@dataclass
class ProxyStats:
    to_server: DirectionStats = field(default_factory=DirectionStats)
    to_client: DirectionStats = field(default_factory=DirectionStats)
    clients: int = 0


class FaultProxy:
    """See the module docstring. `upstream` may be changed while it runs."""

    def __init__(
        self,
        upstream: Address,
        *,
        seed: int,
        to_server: Weather | None = None,
        to_client: Weather | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.upstream = upstream
        self.random = random.Random(seed)
        self.to_server = to_server or Weather()
        self.to_client = to_client or Weather()
        self.host, self.port = host, port
        self.stats = ProxyStats()
        self.overrides: dict[Address, tuple[Weather, Weather]] = {}
        """Per-client weather `(to_server, to_client)`, e.g. to cut one client off."""
        self._front: socket.socket | None = None
        self._backs: dict[Address, socket.socket] = {}
        self._nursery: trio.Nursery | None = None

    @property
    def clients(self) -> list[Address]:
        """Client addresses seen so far, in order of their first datagram."""
        return list(self._backs)

    async def run(
        self, *, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Forward until cancelled; `task_status.started` gets the proxy's own address."""
        front = _udp_socket(self.host, self.port)
        self._front = front
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started(front.getsockname())
                async for data, client in _datagrams(front):
                    back = self._backs.get(client)
                    if back is None:
                        back = self._open_back(client)
                    weather = self.overrides.get(client, (self.to_server, self.to_client))[0]
                    self._forward(back, data, self.upstream, weather, self.stats.to_server)
        finally:
            front.close()
            for back in self._backs.values():
                back.close()

    def _open_back(self, client: Address) -> socket.socket:
        assert self._nursery is not None
        back = _udp_socket(self.host, 0)
        self._backs[client] = back
        self.stats.clients += 1
        self._nursery.start_soon(self._pump_back, client, back)
        return back

    async def _pump_back(self, client: Address, back: socket.socket) -> None:
        """Carry the server's datagrams for one client back to it."""
        assert self._front is not None
        async for data, _server in _datagrams(back):
            weather = self.overrides.get(client, (self.to_server, self.to_client))[1]
            self._forward(self._front, data, client, weather, self.stats.to_client)

    def _forward(
        self,
        sock: socket.socket,
        data: bytes,
        to: Address,
        weather: Weather,
        stats: DirectionStats,
    ) -> None:
        rng = self.random
        stats.datagrams += 1
        stats.bytes += len(data)
        if weather.drop_next > 0:
            weather.drop_next -= 1
            stats.dropped += 1
            return
        if rng.random() < weather.loss:
            stats.dropped += 1
            return
        copies = 1
        if weather.duplicate and rng.random() < weather.duplicate:
            copies = 2
            stats.duplicated += 1
        for _ in range(copies):
            delay = weather.delay + (rng.random() * weather.jitter if weather.jitter else 0.0)
            if weather.reorder and rng.random() < weather.reorder:
                delay += rng.random() * weather.reorder_delay
                stats.reordered += 1
            if delay > 0:
                assert self._nursery is not None
                self._nursery.start_soon(self._send_later, delay, sock, data, to, stats)
            else:
                self._send(sock, data, to, stats)

    async def _send_later(
        self,
        delay: float,
        sock: socket.socket,
        data: bytes,
        to: Address,
        stats: DirectionStats,
    ) -> None:
        await trio.sleep(delay)
        self._send(sock, data, to, stats)

    def _send(self, sock: socket.socket, data: bytes, to: Address, stats: DirectionStats) -> None:
        try:
            sock.sendto(data, to)
            stats.delivered += 1
        except OSError:  # a full buffer, or nobody there: dropped, as a router would
            stats.dropped += 1


def _udp_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, 4 * 1024 * 1024)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def _datagrams(sock: socket.socket) -> AsyncIterator[tuple[bytes, Address]]:
    """Every datagram arriving on `sock`, forever (ICMP errors for earlier sends skipped)."""
    while True:
        await trio.lowlevel.wait_readable(sock)
        for _ in range(256):
            try:
                data, address = sock.recvfrom(_BUFFER)
            except BlockingIOError:
                break
            except OSError:
                continue
            yield data, address
        await trio.lowlevel.checkpoint()
