"""What the attack scripts share: a daemon to attack, clients on addresses of their own,
and the figures they print.

Every client here is the project's client core (`ClientConnection`) on a UDP socket bound
to one of the loopback addresses 127.0.0.2 to 127.0.0.250, so the daemon sees each as a
different IP; nothing is ever sent outside 127.0.0.0/8. A script starts its own daemon
(`DaemonProcess`, on 127.0.0.1, a free port, a temporary database) unless it is given
`--port`, and then attacks the daemon listening on 127.0.0.1 at that port instead (the
figures taken from the daemon's log or its memory are then left out).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import secrets
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from trio_chat import wire
from trio_chat.client_protocol import ClientConfig, ClientConnection, Handle
from trio_chat.client_shell import local_address, take_datagrams
from trio_chat.engine import ServerConfig
from trio_chat.events import Event
from trio_chat.keys import daemon_public_key
from trio_chat.testing.daemon import CLI, DaemonProcess, private_client_data
from trio_chat.trust import fetch_key

HOST = "127.0.0.1"
PASSWORD = "attack-scripts-password"
"""The password of every account the scripts make."""
LIMITS = ServerConfig()
"""The daemon's defaults, which the scripts' goals are computed from."""
ATTACKER_NICENESS = 19
"""The attackers' process runs at this CPU priority by default: on a machine it shares
with the daemon it then takes only what the daemon leaves, as a remote attacker's CPU
would (`--attacker-nice 0` lets it compete)."""


def address(n: int) -> str:
    """The loopback address 127.0.0.n, for n from 2 to 250: one client IP of the attack."""
    if not 2 <= n <= 250:
        raise ValueError(f"127.0.0.{n} is outside the addresses the scripts may use")
    return f"127.0.0.{n}"


def allowance(
    seconds: float,
    free: int = LIMITS.login_free_failures,
    delay: float = LIMITS.login_delay,
    cap: float = LIMITS.login_delay_max,
) -> int:
    """Most password checks one throttle key (an address, an account) gets in `seconds`:
    `free` at once, then one after each delay of `delay`, doubling, at most `cap`."""
    checks, waited, wait = free, 0.0, delay
    while waited + wait <= seconds:
        waited += wait
        checks += 1
        wait = min(wait * 2, cap)
    return checks


def schedule(seconds: float) -> str:
    """When the checks of `allowance(seconds)` may happen, from the first one: `0, 0, 0, 1, 3`."""
    times = [0.0] * LIMITS.login_free_failures
    at, wait = 0.0, LIMITS.login_delay
    while at + wait <= seconds:
        at += wait
        times.append(at)
        wait = min(wait * 2, LIMITS.login_delay_max)
    return ", ".join(f"{t:g}" for t in times)


def percentile(values: Sequence[float], share: float) -> float:
    """The value below which `share` of `values` lie (nearest rank); nan for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def verdict(goals: dict[str, bool]) -> int:
    """Print each goal as held or not; the exit status: 0 if all held, else 1."""
    for goal, held in goals.items():
        print(f"  goal {'HELD' if held else 'NOT HELD'}: {goal}")
    return 0 if all(goals.values()) else 1


def parser(description: str | None, *, attackers: bool = False) -> argparse.ArgumentParser:
    """The options every script takes; `attackers`: it runs its attackers in a process of
    their own (`run_attacker`)."""
    parser = argparse.ArgumentParser(description=(description or "").split("\n\n")[0])
    parser.add_argument(
        "--port", type=int, help="attack the daemon at 127.0.0.1:PORT instead of starting one"
    )
    if attackers:
        parser.add_argument(
            "--attacker-nice",
            type=int,
            default=ATTACKER_NICENESS,
            help="CPU niceness of the attackers' process",
        )
        # How `run_attacker` starts the script again, as the attackers' process.
        parser.add_argument("--attacker", action="store_true", help=argparse.SUPPRESS)
    return parser


def guess_arguments(description: str | None, guesses: int) -> argparse.Namespace:
    """The options of a script that sends `--guesses` wrong passwords for `--seconds`."""
    options = parser(description)
    options.add_argument("--guesses", type=int, default=guesses)
    options.add_argument("--seconds", type=float, default=30.0)
    return options.parse_args()


def run_script(
    args: argparse.Namespace,
    main: Callable[[argparse.Namespace], Awaitable[int]],
    attack: Callable[[argparse.Namespace], Awaitable[object]] | None = None,
) -> int:
    """Run a script's `main`, or, started again by `run_attacker`, its `attack`."""
    private_client_data()
    if attack is not None and getattr(args, "attacker", False):
        _yield_to_others()
        trio.run(attack, args)
        return 0
    status: int = trio.run(main, args)
    return status


def _yield_to_others() -> None:
    """At the lowest priority there is (the default), the attackers' process also takes
    Linux's idle scheduling class. Niceness alone decides shares of a core, not which core:
    a niced process running alone on one core kept it for 30 ms at a time while the
    daemon's threads and the measured clients queued on the other. A core running only
    an idle-class process counts as free, so whatever wakes is placed there at once."""
    if os.getpriority(os.PRIO_PROCESS, 0) >= ATTACKER_NICENESS and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


# --- the daemon --------------------------------------------------------------------------------


@dataclass
class Target:
    """The daemon under attack: where it listens, its key, and the process if ours."""

    host: str
    port: int
    key: bytes
    daemon: DaemonProcess | None = None

    @property
    def pid(self) -> int | None:
        process = self.daemon.process if self.daemon is not None else None
        return process.pid if process is not None else None

    def log_lines(self, text: str) -> list[str] | None:
        """The daemon's log lines holding `text` (None: not our daemon, no log)."""
        if self.daemon is None:
            return None
        return [line for line in self.daemon.output if text in line]

    def log_count(self, text: str) -> int | None:
        lines = self.log_lines(text)
        return None if lines is None else len(lines)

    def log_bytes(self) -> int | None:
        """Bytes the daemon has logged so far."""
        if self.daemon is None:
            return None
        return sum(len(line.encode()) for line in self.daemon.output)

    def memory_kib(self, field: str = "VmRSS") -> int | None:
        """The daemon's resident memory (`VmRSS`) or its peak (`VmHWM`), in KiB."""
        if self.pid is None:
            return None
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return None

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the daemon so far."""
        if self.pid is None:
            return None
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.asynccontextmanager
async def open_target(
    port: int | None, *options: str, program: Sequence[str] = CLI
) -> AsyncIterator[Target]:
    """The daemon at 127.0.0.1:`port`, or a new one started with `options` (by `program`,
    the command that stands for `trio-chat`) and stopped at the end."""
    if port is not None:
        yield Target(HOST, port, await fetch_key(HOST, port))
        return
    with tempfile.TemporaryDirectory() as workdir:
        database = Path(workdir) / "chat.db"
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, database, *options, program=program)
            host, bound = await daemon.start()
            try:
                yield Target(host, bound, daemon_public_key(database), daemon)
            finally:
                with trio.CancelScope(shield=True):
                    await daemon.stop()
                nursery.cancel_scope.cancel()


# --- clients -----------------------------------------------------------------------------------


def client_socket(target: Target, source: str) -> socket.socket:
    """A non-blocking UDP socket from `source` (any free port) to the daemon."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((source, 0))
        sock.connect((target.host, target.port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class Client:
    """A client core on a socket of its own, bound to `source`; `run()` drives it.

    Without a name it only opens a channel (for `register`, or for frames sent by hand
    with `send`). Its events go to `on_event`. Once `frozen`, it is no longer driven:
    nothing is received, acknowledged or sent again (the memory attacks then speak for
    it with `seal`).
    """

    def __init__(
        self,
        target: Target,
        source: str,
        name: str | None = None,
        password: str = PASSWORD,
        *,
        quiet: bool = False,
        timeout: float = 5.0,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        config = ClientConfig(reconnect=False, timeout=timeout)
        self.core = ClientConnection(target.key, name, password, config=config, quiet=quiet)
        self.sock = client_socket(target, source)
        self.core.local_address = local_address(self.sock)  # as `trio_chat.connect` does
        self.on_event = on_event
        self.frozen = False
        self._changed = trio.Event()
        self._wait: trio.CancelScope | None = None
        self._last_pn = 0
        """The highest packet number sent on the channel, by the core or by `seal`."""

    async def run(self) -> None:
        """Exchange datagrams and fire timers until the connection ends or is frozen."""
        core, sock = self.core, self.sock
        core.start(trio.current_time())
        while not self.frozen:
            take_datagrams(sock, core, trio.current_time(), most=64)
            self.flush()
            if core.closed:
                return
            with trio.CancelScope() as self._wait:
                self._set_deadline()
                await trio.lowlevel.wait_readable(sock)
            self._wait = None

    def flush(self) -> None:
        """Send what the core has, hand its events on, wake whoever waits on a change."""
        if self.frozen:
            return
        for datagram in self.core.datagrams_to_send(trio.current_time()):
            if datagram[0] == wire.DATA:
                self._last_pn = max(self._last_pn, wire.data_packet_number(datagram))
            with contextlib.suppress(OSError):
                self.sock.send(datagram)
        while (event := self.core.next_event()) is not None:
            if self.on_event is not None:
                self.on_event(event)
        self._changed.set()
        self._changed = trio.Event()
        self._set_deadline()

    def _set_deadline(self) -> None:
        if self._wait is not None:
            deadline = self.core.next_timer()
            self._wait.deadline = math.inf if deadline is None else deadline

    async def until(self, condition: Callable[[], bool], within: float = math.inf) -> bool:
        """Wait until `condition()` holds (checked at every change); False after `within` s."""
        with trio.move_on_after(within):
            while not condition():
                await self._changed.wait()
            return True
        return False

    async def logged_in(self, within: float = 30.0) -> str:
        """Wait for the login's outcome: `welcome`, or the code of the refusal."""
        core = self.core
        await self.until(lambda: core.connected or core.closed, within)
        return outcome(self.core)

    async def channel_open(self, within: float = 30.0) -> bool:
        """Wait until the channel is open (or the connection failed)."""
        core = self.core
        await self.until(lambda: core.channel is not None or core.closed, within)
        return core.channel is not None and not core.closed

    def send(self, frame: wire.ClientFrame) -> Handle:
        """Send any frame on the channel as it is; `answer` waits for the daemon's answer."""
        handle = self.core.request(frame)
        self.flush()
        return handle

    async def answer(self, handle: Handle, within: float = math.inf) -> str:
        """The code of the daemon's answer to `handle`: `ok`, an error code, or `none`."""
        core = self.core
        await self.until(lambda: handle.done or core.closed, within)
        if not handle.done:
            return "none"
        return "ok" if handle.error is None else handle.error.code

    def seal(self, ack: int, frames: bytes = b"", skip: int = 0) -> bytes:
        """A datagram of this channel made by hand (once `frozen`: the core sends no more),
        acknowledging frames up to `ack`, carrying `frames` (`wire.numbered_frame`s,
        comma-separated); its packet number is the next one, plus `skip`."""
        channel = self.core.channel
        assert channel is not None and self.frozen
        self._last_pn += 1 + skip
        payload = wire.close_payload(wire.payload_head(ack, 0, []), frames)
        return channel.seal(self._last_pn, payload)

    def close(self) -> None:
        """Leave: say goodbye once if the channel is open; wait for nothing."""
        if not self.frozen:
            self.core.close()
            self.flush()


@contextlib.asynccontextmanager
async def running(client: Client) -> AsyncIterator[Client]:
    """`client` driven for the length of the block, then closed."""
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run)
            try:
                yield client
            finally:
                client.close()
                nursery.cancel_scope.cancel()
    finally:
        client.sock.close()


class Crowd:
    """Many clients driven in one nursery, each from when it is added until the end."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.clients: list[Client] = []

    def add(self, client: Client) -> Client:
        self.clients.append(client)
        self.nursery.start_soon(client.run)
        return client


@contextlib.asynccontextmanager
async def crowd() -> AsyncIterator[Crowd]:
    """A `Crowd` for the length of the block; its clients are closed at the end, and
    whatever else was started in its nursery is cancelled."""
    group: Crowd | None = None
    try:
        async with trio.open_nursery() as nursery:
            group = Crowd(nursery)
            try:
                yield group
            finally:
                for client in group.clients:
                    client.close()
                nursery.cancel_scope.cancel()
    finally:
        for client in group.clients if group is not None else []:
            client.sock.close()


def outcome(core: ClientConnection) -> str:
    """`welcome` for a logged-in connection, else the code of why not (or `none`)."""
    if core.connected:
        return "welcome"
    return core.failure.code if core.failure is not None else "none"


async def log_in_once(
    target: Target, source: str, name: str, password: str = PASSWORD, within: float = 30.0
) -> tuple[str, float]:
    """One login on a channel of its own, logged out at once: its outcome and seconds."""
    began = time.monotonic()
    client = Client(target, source, name, password, timeout=min(within, 10.0))
    async with running(client):
        code = await client.logged_in(within)
        return code, time.monotonic() - began


def new_rid() -> str:
    return secrets.token_urlsafe(12)


async def register(target: Target, source: str, name: str, password: str = PASSWORD) -> str:
    """Register `name` from `source`, waiting out `too_many_registrations`; return the
    answer's code: `ok`, or `name_taken` (an account made by an earlier run on `--port`),
    or why no channel opened (`unreachable`, the daemon busy past the handshake's time)."""
    while True:
        client = Client(target, source)
        async with running(client):
            if not await client.channel_open():
                return outcome(client.core)
            handle = client.send(wire.Register(rid=new_rid(), name=name, password=password))
            code = await client.answer(handle, 60.0)
        if code != "too_many_registrations":
            return code
        assert handle.error is not None
        await trio.sleep(handle.error.retry_after or 1.0)


async def register_all(target: Target, names: Sequence[str], first: int = 41) -> None:
    """Register every name, five from each address from 127.0.0.`first` up (the per-address
    burst), all at once; an account already there is taken as made by an earlier run."""
    refused: list[str] = []

    async def one(name: str, source: str) -> None:
        code = await register(target, source, name)
        if code not in ("ok", "name_taken"):
            refused.append(f"{name}: {code}")

    burst = LIMITS.register_burst
    async with trio.open_nursery() as nursery:
        for n, name in enumerate(names):
            nursery.start_soon(one, name, address(first + (n // burst) % (61 - first)))
    if refused:
        raise RuntimeError("registrations refused: " + ", ".join(refused))


# --- guessing ------------------------------------------------------------------------------------

CHECKED = frozenset({"wrong_password", "unknown_user", "welcome"})
"""Answers to a login that took a password check (`throttled` and `busy` took none)."""
CHANNEL_LIFE = 8.0
"""Seconds a guessing channel is used before a new one is opened: the daemon closes a
channel that has not logged in after 10 s."""


@dataclass
class Tally:
    """What the daemon answered a stream of logins: counts by code, and when each answer
    that took a password check came (`time.monotonic()`)."""

    answers: Counter[str] = field(default_factory=Counter)
    checked: list[float] = field(default_factory=list)
    busy: int = 0
    """`busy` answers (the client core sent those logins again by itself)."""

    def record(self, code: str) -> None:
        self.answers[code] += 1
        if code in CHECKED:
            self.checked.append(time.monotonic())

    def watch(self, client: Client) -> None:
        """Count the `busy` answers `client` gets."""

        def seen(frame: wire.ServerFrame) -> None:
            if isinstance(frame, wire.ErrorFrame) and frame.code == "busy":
                self.busy += 1

        client.core.trace = seen

    def figures(self) -> dict[str, Any]:
        return {"answers": dict(self.answers), "checked": self.checked, "busy": self.busy}


async def hammer(
    target: Target,
    source: str,
    request: Callable[[], wire.ClientFrame],
    until: float,
    tally: Tally,
    *,
    login: str | None = None,
    quiet: bool = True,
    seen: Callable[[wire.ClientFrame, str], None] | None = None,
) -> None:
    """Send `request()` from `source` again and again, each as soon as the last was
    answered, until `until` (`time.monotonic()`); `seen(frame, code)` hears each answer.

    Without `login` the frames go on a channel not logged in, for `CHANNEL_LIFE` seconds,
    then on a new one: a refused login does not close a channel, so no handshake is spent
    per guess. With `login` they go in a session of that account (`quiet`: not in the
    room, which is enough for requests that do not speak).
    """
    while time.monotonic() < until:
        client = Client(target, source, login, quiet=quiet, timeout=10.0)
        tally.watch(client)
        async with running(client):
            if login is not None:
                opened = await client.logged_in() == "welcome"
            else:
                opened = await client.channel_open()
            if not opened:
                # The daemon had not yet freed this address's last channel: again.
                tally.answers["refused:" + outcome(client.core)] += 1
                await trio.sleep(0.05)
                continue
            end = until if login is not None else min(until, time.monotonic() + CHANNEL_LIFE)
            while time.monotonic() < end and not client.core.closed:
                frame = request()
                code = await client.answer(client.send(frame), CHANNEL_LIFE)
                tally.record(code)
                if seen is not None:
                    seen(frame, code)


# --- attackers in a process of their own ---------------------------------------------------------


async def run_attacker(script: str, niceness: int, *arguments: str) -> dict[str, Any]:
    """Run `script` (an attack script's own file) as an attacker process with `arguments`,
    at `niceness`, and return the JSON object it prints last.

    The attackers run in a process of their own, so that the clients whose experience is
    measured do not share an event loop with hundreds of attack tasks.
    """
    command = ["nice", "-n", str(niceness), sys.executable, script, *arguments]
    result = await trio.run_process(command, capture_stdout=True)
    lines = result.stdout.decode().strip().splitlines()
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def report(figures: dict[str, Any]) -> None:
    """What an attacker process hands back: one JSON object on the last line."""
    print(json.dumps(figures), flush=True)
