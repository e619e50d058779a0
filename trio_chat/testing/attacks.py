"""What the attack tests and `scripts/attack_*.py` share: what a spoofer sends, an
on-path tap, sockets at many loopback addresses, a client core driven over any socket, a
daemon to attack, and searches for secrets.

Everything here talks to 127.0.0.0/8 only: `loopback_socket` refuses any other address,
and `Tap` forwards only to the daemon it was given (itself on loopback).

- `first_flight_kinds` makes every kind of `KEY_REQUEST` and `INIT`, good and bad.
- `Tap` sits between one client and the daemon, as an attacker on the path would: it
  forwards and records every datagram, and can hold them back (to reorder or drop them),
  inject datagrams towards either side, and replay what it recorded.
- `bound_socket` binds a UDP socket at any 127.x.y.z address: many distinct source
  addresses without raw sockets, as a spoofer's many victims or a botnet would have.
- `drive` runs a sans-I/O `ClientConnection` (or `KeyProbe`) over such a socket.
- `start_daemon` runs the daemon in this process, so that its engine can be inspected.
- `secret_forms` and `leaks` look for a secret in bytes in every form it could take.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import math
import random
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import trio

from trio_chat import ChatClient, Event, PublicMessage, wire
from trio_chat.client_shell import SansIO
from trio_chat.engine import ServerConfig, ServerEngine
from trio_chat.noise import generate_keypair
from trio_chat.secure import initiate
from trio_chat.server import serve

Address = tuple[Any, ...]
TO_DAEMON = "to_daemon"
TO_CLIENT = "to_client"
RECEIVE_BUFFER = 65536

DATAGRAM_NAMES = {
    wire.KEY_REQUEST: "KEY_REQUEST",
    wire.KEY: "KEY",
    wire.INIT: "INIT",
    wire.RESPONSE: "RESPONSE",
    wire.RETRY: "RETRY",
    wire.REFUSED: "REFUSED",
    wire.DATA: "DATA",
    wire.RESET: "RESET",
}


def kind_of(data: bytes) -> str:
    """The datagram type named by the first byte (`?` for none)."""
    return DATAGRAM_NAMES.get(data[0], "?") if data else "?"


def require_loopback(host: str) -> None:
    """Refuse to aim at anything outside 127.0.0.0/8."""
    if not ipaddress.ip_address(host).is_loopback or ":" in host:
        raise ValueError(f"{host} is not an IPv4 loopback address; attacks stay on 127.0.0.0/8")


def loopback_socket(host: str = "127.0.0.1") -> trio.socket.SocketType:
    """A UDP socket for `host` (any 127.x.y.z), not yet bound."""
    require_loopback(host)
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    return sock


async def bound_socket(host: str = "127.0.0.1", port: int = 0) -> trio.socket.SocketType:
    """`loopback_socket`, bound."""
    sock = loopback_socket(host)
    await sock.bind((host, port))
    return sock


def spoofed_host(n: int) -> str:
    """The `n`th of many distinct loopback addresses (127.10.0.1 onwards)."""
    n += 1
    return f"127.10.{(n >> 8) & 255}.{n & 255}"


# --- what a spoofer sends --------------------------------------------------------------------


def padded(head: bytes, length: int = wire.FIRST_FLIGHT_BYTES) -> bytes:
    return head + bytes(length - len(head))


def first_flight_kinds(server_key: bytes) -> dict[str, Callable[[random.Random], bytes]]:
    """Every kind of first flight a spoofer can send, each made fresh from a seeded RNG.

    Each is answered with exactly one datagram, or (`SILENT_KINDS`) none; `random` may be
    either."""
    _private, other_key = generate_keypair()

    def index(rng: random.Random) -> int:
        return rng.randrange(1, 2**32)

    return {
        "key_request": lambda rng: wire.key_request_datagram(),
        "init": lambda rng: initiate(server_key, index(rng)).datagram(),
        "init_to_another_key": lambda rng: initiate(other_key, index(rng)).datagram(),
        "init_garbage": lambda rng: wire.init_datagram(index(rng), b"", rng.randbytes(48)),
        "init_with_a_forged_cookie": lambda rng: wire.init_datagram(
            index(rng), rng.randbytes(16), initiate(server_key, 1).message
        ),
        "bad_version": lambda rng: padded(bytes((wire.KEY_REQUEST, 1))),
        "short_key_request": lambda rng: padded(
            bytes((wire.KEY_REQUEST, wire.PROTOCOL_VERSION)), 1199
        ),
        "short_init": lambda rng: initiate(server_key, index(rng)).datagram()[:600],
        "oversized": lambda rng: padded(bytes((wire.INIT, wire.PROTOCOL_VERSION)), 1201),
        "unknown_index": lambda rng: wire.data_header(index(rng), 1) + rng.randbytes(40),
        "random": lambda rng: rng.randbytes(rng.randrange(1, 1300)),
    }


SILENT_KINDS = frozenset({"short_key_request", "short_init", "oversized"})
"""The first flights the daemon drops without a word: they are not 1200 bytes long."""


# --- the on-path attacker ------------------------------------------------------------------


@dataclass
class Tap:
    """An attacker on the path between one client and the daemon; see the module docstring.

    Clients send to the address `run` reports; the daemon sees them all at one address of
    the tap's.
    While `holding` holds for a direction, datagrams going that way are recorded and kept
    in `held` instead of being forwarded.
    """

    upstream: Address
    captured: list[tuple[str, bytes]] = field(default_factory=list)
    holding: set[str] = field(default_factory=set)
    held: list[tuple[str, bytes]] = field(default_factory=list)
    client: Address | None = None
    _front: trio.socket.SocketType | None = None
    _back: trio.socket.SocketType | None = None
    _changed: trio.Event = field(default_factory=trio.Event)

    def __post_init__(self) -> None:
        require_loopback(str(self.upstream[0]))

    async def run(
        self, *, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Forward until cancelled; `task_status.started` gets the address clients use."""
        self._front = await bound_socket()
        self._back = await bound_socket()
        with self._front, self._back:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump_to_daemon)
                nursery.start_soon(self._pump_to_client)
                task_status.started(self._front.getsockname())

    async def _pump_to_daemon(self) -> None:
        assert self._front is not None
        while True:
            try:
                data, self.client = await self._front.recvfrom(RECEIVE_BUFFER)
            except OSError:
                continue
            await self._pass(TO_DAEMON, data)

    async def _pump_to_client(self) -> None:
        assert self._back is not None
        while True:
            try:
                data = await self._back.recv(RECEIVE_BUFFER)
            except OSError:
                continue
            await self._pass(TO_CLIENT, data)

    async def _pass(self, direction: str, data: bytes) -> None:
        self.captured.append((direction, data))
        if direction in self.holding:
            self.held.append((direction, data))
        else:
            await self.inject(direction, data)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` holds, looking again after each datagram that passes."""
        while not condition():
            await self._changed.wait()

    async def inject(self, direction: str, data: bytes) -> None:
        """Send `data` towards the daemon (from the client's address as the daemon knows
        it) or towards the client (from the daemon's address as the client knows it)."""
        with contextlib.suppress(OSError):
            if direction == TO_DAEMON:
                assert self._back is not None
                await self._back.sendto(data, self.upstream)
            elif self.client is not None:
                assert self._front is not None
                await self._front.sendto(data, self.client)

    async def replay_and_alter(self) -> tuple[int, int]:
        """Send every record recorded so far again, each way, as it was and with one bit
        flipped (in the tag towards the daemon, in the ciphertext towards the client);
        return how many records were recorded towards the daemon and towards the client."""
        to_daemon = self.recorded(TO_DAEMON, "DATA")
        to_client = self.recorded(TO_CLIENT, "DATA")
        for data in to_daemon:
            await self.inject(TO_DAEMON, data)
            await self.inject(TO_DAEMON, data[:-1] + bytes([data[-1] ^ 1]))
        for data in to_client:
            await self.inject(TO_CLIENT, data)
            await self.inject(TO_CLIENT, data[:20] + bytes([data[20] ^ 4]) + data[21:])
        return len(to_daemon), len(to_client)

    async def release(self, order: Callable[[list[bytes]], Iterable[bytes]] = list) -> int:
        """Stop holding; forward what was held, each direction in the `order` given."""
        held, self.held = self.held, []
        self.holding.clear()
        for direction in (TO_DAEMON, TO_CLIENT):
            for data in order([d for way, d in held if way == direction]):
                await self.inject(direction, data)
        return len(held)

    def recorded(self, direction: str | None = None, kind: str | None = None) -> list[bytes]:
        """What passed, in order: one direction, one datagram type, or everything."""
        return [
            data
            for way, data in self.captured
            if (direction is None or way == direction) and (kind is None or kind_of(data) == kind)
        ]

    @property
    def all_bytes(self) -> bytes:
        return b"".join(data for _way, data in self.captured)


# --- a client core over any socket ---------------------------------------------------------------


async def drive(sock: trio.socket.SocketType, core: SansIO, done: Callable[[], bool]) -> None:
    """Exchange datagrams between `core` and the daemon `sock` is connected to until
    `done()` holds (what is due then is still sent).

    The client's own loop (`trio_chat.client_shell.drive`) over a Trio socket, which the
    attacks bind to the loopback address they pose as (`bound_socket`)."""
    while True:
        now = trio.current_time()
        deadline = core.next_timer()
        if deadline is not None and deadline <= now:
            core.handle_timer(now)
        for data in core.datagrams_to_send(now):
            with contextlib.suppress(OSError):
                await sock.send(data)
        if done():
            return
        deadline = core.next_timer()
        with trio.move_on_at(math.inf if deadline is None else deadline):
            try:
                data = await sock.recv(RECEIVE_BUFFER)
            except ConnectionRefusedError:
                core.connection_refused(trio.current_time())
                continue
            core.receive_datagram(data, trio.current_time())


# --- what a person is shown -------------------------------------------------------------------


class Seen:
    """What a client was shown, and a way to wait for a text to be among it."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = trio.Event()

    async def listen(self, chat: ChatClient) -> None:
        async for event in chat.events():
            self.events.append(event)
            self._changed.set()
            self._changed = trio.Event()

    @property
    def texts(self) -> list[str]:
        return [event.text for event in self.events if isinstance(event, PublicMessage)]

    async def wait_for(self, text: str) -> None:
        while text not in self.texts:
            await self._changed.wait()


# --- a daemon to attack --------------------------------------------------------------------------


async def start_daemon(
    nursery: trio.Nursery, database: Any, config: ServerConfig | None = None, port: int = 0
) -> tuple[Address, ServerEngine]:
    """The daemon, in this process, on 127.0.0.1 (a free port unless given): its address
    and its engine."""
    engines: list[ServerEngine] = []

    async def run(*, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED) -> None:
        await serve(
            "127.0.0.1",
            port,
            database,
            config,
            on_ready=engines.append,
            task_status=task_status,
        )

    address: Address = await nursery.start(run)
    return address, engines[0]


# --- secrets in bytes ---------------------------------------------------------------------------


def secret_forms(secret: bytes | str) -> list[bytes]:
    """The ways a secret could show up in a log, a repr or captured bytes."""
    raw = secret.encode() if isinstance(secret, str) else secret
    forms = {
        raw,
        raw.hex().encode(),
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw).rstrip(b"="),
        repr(raw).encode()[2:-1],
    }
    if isinstance(secret, str):
        forms.add(secret.encode("utf-16-le"))
        forms.add(secret.encode("unicode_escape"))
    # A base64 form ending in padding may appear cut short, or inside a longer one.
    return sorted({form for form in forms if len(form) >= 8}, key=len)


def leaks(haystack: bytes | str, secrets: dict[str, bytes | str]) -> list[str]:
    """The names of the `secrets` found in `haystack`, in any of their `secret_forms`."""
    data = haystack.encode() if isinstance(haystack, str) else haystack
    return [
        name for name, secret in secrets.items() if any(f in data for f in secret_forms(secret))
    ]
