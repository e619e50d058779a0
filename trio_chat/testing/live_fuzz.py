"""Fuzz a live daemon over UDP with `Garbage`, then check that it still serves people.

The fuzzer logs in a few sessions of its own (so that much of what it sends carries a
real session id and token), then sends `count` datagrams from several sockets. Every
`barrier_every` datagrams it waits for the answer to a request sent last: the daemon
reads its socket in order, so by then it has handled everything sent before, and the
kernel's buffers never overflow. `/proc/net/udp` confirms no datagram was dropped.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from trio_chat import wire
from trio_chat.testing.garbage import Garbage

FUZZ_PASSWORD = "fuzzing-password"


@dataclass
class FuzzReport:
    sent: int = 0
    bytes: int = 0
    replies: int = 0
    logins: int = 0
    barriers: int = 0
    seconds: float = 0.0
    kinds: dict[str, int] = field(default_factory=dict)
    kernel_drops: int | None = None


def kernel_drops(port: int) -> int | None:
    """Datagrams the kernel dropped for the UDP socket bound to `port` (Linux), or None."""
    path = Path("/proc/net/udp")
    if not path.exists():
        return None
    for line in path.read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            return int(fields[-1])
    return None


class _Fuzzer:
    def __init__(self, address: tuple[str, int], seed: int, sockets: int, names: list[str]):
        self.address = address
        self.garbage = Garbage(seed)
        self.names = names
        self.report = FuzzReport()
        self.socks = []
        for _ in range(sockets):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            sock.setblocking(False)
            sock.connect(address)
            self.socks.append(sock)
        self._rid = 0

    def close(self) -> None:
        for sock in self.socks:
            sock.close()

    def drain(self, sock: socket.socket) -> list[bytes]:
        got: list[bytes] = []
        while True:
            try:
                got.append(sock.recv(4096))
            except BlockingIOError:
                return got
            except OSError:
                continue

    async def request(self, sock: socket.socket, request: wire.Login) -> wire.ServerDatagram:
        """Send a request until its answer comes back (other datagrams are counted)."""
        data = wire.encode(request)
        while True:
            sock.send(data)
            with trio.move_on_after(1.0):
                while True:
                    await trio.lowlevel.wait_readable(sock)
                    for raw in self.drain(sock):
                        self.report.replies += 1
                        try:
                            reply = wire.decode_server_datagram_untrusted(raw)
                        except wire.WireError:
                            continue
                        if getattr(reply, "rid", None) == request.rid:
                            return reply

    def next_rid(self) -> str:
        self._rid += 1
        return f"fuzz-{self._rid}"

    async def login_all(self) -> None:
        """A fresh session on every socket, its address proven by one ping."""
        sessions = []
        for n, sock in enumerate(self.socks):
            name = self.names[n % len(self.names)]
            reply = await self.request(
                sock, wire.Login(rid=self.next_rid(), name=name, password=FUZZ_PASSWORD)
            )
            self.report.logins += 1
            if isinstance(reply, wire.Welcome):
                sessions.append((reply.sid, reply.token))
                ping = {"v": 1, "t": "s", "sid": reply.sid, "token": reply.token, "pn": 1}
                sock.send(wire.encode(ping))
        self.garbage.sessions = sessions

    async def barrier(self, sock: socket.socket) -> None:
        # An unknown account's login is answered at once, and its size buys the budget.
        padding = "p" * 900
        await self.request(
            sock, wire.Login(rid=self.next_rid(), name="no-such-account", password=padding)
        )
        self.report.barriers += 1

    async def run(self, count: int, barrier_every: int, relogin_every: int) -> FuzzReport:
        started = time.monotonic()
        await self.login_all()
        socks = self.socks
        garbage = self.garbage
        for n in range(count):
            sock = socks[n % len(socks)]
            data = garbage.datagram()
            try:
                sock.send(data)
            except OSError:
                # Too big for UDP, or an ICMP error from an earlier send. Not counted.
                continue
            self.report.sent += 1
            self.report.bytes += len(data)
            if n % 16 == 0:
                for each in socks:
                    self.report.replies += len(self.drain(each))
            if (n + 1) % barrier_every == 0:
                await self.barrier(sock)
            if (n + 1) % relogin_every == 0:
                await self.login_all()
        await self.barrier(socks[0])
        self.report.seconds = time.monotonic() - started
        self.report.kinds = dict(garbage.counts)
        self.report.kernel_drops = kernel_drops(self.address[1])
        return self.report


async def fuzz_daemon(
    address: tuple[str, int],
    *,
    count: int,
    seed: int,
    names: list[str],
    sockets: int = 6,
    barrier_every: int = 200,
    relogin_every: int = 2000,
) -> FuzzReport:
    """Send `count` hostile datagrams to the daemon at `address`; see the module docstring.

    `names` are accounts (password `FUZZ_PASSWORD`) the fuzzer logs in as.
    """
    fuzzer = _Fuzzer(address, seed, sockets, names)
    try:
        return await fuzzer.run(count, barrier_every, relogin_every)
    finally:
        fuzzer.close()
