#!/usr/bin/env python3
"""trio-chat against the seed server it grew out of, side by side, in one run.

    .venv/bin/python scripts/bench.py --baseline ../shared/baseline/seed_server.py [--quick]

Both servers run as subprocesses on free ports of 127.0.0.1 (trio-chat on a fresh
temporary database, with limits raised so they do not shape the results), one at a time,
and the same workloads drive each:

- fanout: 50 receivers, one sender, 2000 public messages in closed-loop batches of 5
  (the next batch leaves once every receiver has the previous one);
- latency: 50 receivers, 2000 messages per second offered; send-to-receipt times;
- isolation: the latency stream again, while 200 logins arrive at once;
- scale: 10,000 idle sessions kept alive: login time, memory, idle CPU;
- persistence: messages per second acknowledged only once on disk (trio-chat only).

The clients are raw non-blocking sockets spread over processes: seed clients speak its
space-separated commands, trio-chat clients speak the wire protocol with the project's
own `Link` (login, session datagrams, acknowledgements, keepalives). The result is one
table of absolute figures with the ratio trio-chat/seed, then `fanout ratio vs seed: X.XX`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _use_project_environment() -> None:
    """Run under the project's virtualenv when started by another interpreter."""
    try:
        import trio_chat  # noqa: F401
    except ImportError:
        venv_python = ROOT / ".venv" / "bin" / "python"
        if venv_python.exists() and Path(sys.executable) != venv_python:
            os.execv(venv_python, [str(venv_python), __file__, *sys.argv[1:]])
        sys.exit("trio-chat is not installed; run the README's setup first.")


if __name__ == "__main__":
    _use_project_environment()

import argparse  # noqa: E402
import array  # noqa: E402
import dataclasses  # noqa: E402
import heapq  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import pstats  # noqa: E402
import select  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable, Iterator, Sequence  # noqa: E402
from contextlib import contextmanager, suppress  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from multiprocessing.connection import Connection  # noqa: E402
from typing import Any  # noqa: E402

import msgspec  # noqa: E402

from trio_chat import wire  # noqa: E402
from trio_chat.auth import hash_password  # noqa: E402
from trio_chat.client import ClientConfig  # noqa: E402
from trio_chat.engine import iso_time  # noqa: E402
from trio_chat.records import Account  # noqa: E402
from trio_chat.reliability import Link  # noqa: E402
from trio_chat.rules import name_key  # noqa: E402
from trio_chat.store import SqliteStore  # noqa: E402

HOST = "127.0.0.1"
PASSWORD = "bench-password"
SEED, TRIO = "seed", "trio-chat"
SOCKET_BUFFER = 4 * 1024 * 1024
KEEPALIVE = ClientConfig().keepalive
LINK_CONFIG = ClientConfig().link
WORKLOADS = ("fanout", "latency", "scale", "persistence")


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    kind: str
    port: int


@dataclass(frozen=True, slots=True)
class Settings:
    receivers: int = 50
    messages: int = 2000
    batch: int = 5
    rate: float = 2000.0
    quiet: float = 5.0
    """Seconds of the latency stream before the login storm."""
    storm: int = 200
    sessions: int = 10_000
    idle_window: float = 10.0
    persist_messages: int = 20_000
    processes: int = 2
    """Processes the receivers (and the idle sessions, twice as many) are spread over."""


FULL = Settings()
QUICK = Settings(quiet=2.0, storm=100, sessions=300, idle_window=3.0, persist_messages=5000)


# --- the clients' side: raw sockets, one process per worker -----------------------------


def _udp_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
    sock.setblocking(False)
    sock.connect((HOST, port))
    return sock


def _drain(sock: socket.socket) -> Iterator[bytes]:
    recv = sock.recv
    while True:
        try:
            yield recv(2048)
        except BlockingIOError:
            return
        except OSError:
            continue  # an ICMP error for an earlier send


def _send(sock: socket.socket, data: bytes) -> None:
    with suppress(OSError):
        sock.send(data)


def _text(index: int, sent: float) -> str:
    """A message body both servers carry unchanged (the seed splits on spaces)."""
    return f"m{index}_{sent:.6f}"


def _parse_text(text: str | bytes) -> tuple[int, float] | None:
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if not text.startswith("m"):
        return None
    number, _, sent = text[1:].partition("_")
    try:
        return int(number), float(sent)
    except ValueError:
        return None


@dataclass(slots=True)
class Tally:
    """What one receiver got, kept raw: it is checked (once each, in order) at the end.

    Parsing while receiving would make the bench's clients slower than the servers.
    """

    texts: list[str | bytes] = field(default_factory=list)
    times: array.array[float] = field(default_factory=lambda: array.array("d"))

    def add(self, text: str | bytes, now: float) -> None:
        self.texts.append(text)
        self.times.append(now)

    @property
    def count(self) -> int:
        return len(self.texts)

    def newest(self) -> int:
        """The number of the newest message received (-1 before the first)."""
        for text in reversed(self.texts):
            parsed = _parse_text(text)
            if parsed is not None:
                return parsed[0]
        return -1

    def summary(self) -> dict[str, Any]:
        seen: set[int] = set()
        duplicates = reordered = 0
        newest = -1
        first_at, last_at = math.inf, 0.0
        sent, delays = array.array("d"), array.array("d")
        for text, now in zip(self.texts, self.times, strict=True):
            parsed = _parse_text(text)
            if parsed is None:
                continue
            index, stamp = parsed
            if index in seen:
                duplicates += 1
                continue
            seen.add(index)
            if index < newest:
                reordered += 1
            newest = max(newest, index)
            first_at = min(first_at, now)
            last_at = now
            sent.append(stamp)
            delays.append(now - stamp)
        return {
            "unique": len(seen),
            "duplicates": duplicates,
            "reordered": reordered,
            "first_at": first_at,
            "last_at": last_at,
            "sent": sent.tobytes(),
            "delays": delays.tobytes(),
        }


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
        self.sock = _udp_socket(port)
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
        _send(self.sock, wire.encode(request))
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
            _send(self.sock, datagram)

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
            for data in _drain(conn.sock):
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
        self.sock = _udp_socket(port)
        self.fd = self.sock.fileno()
        self.name = name
        self.tally = Tally()
        self.replied_at = math.inf

    def command(self, line: str) -> None:
        _send(self.sock, line.encode("ascii"))

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
            for data in _drain(conn.sock):
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


def _wait_for_go(control: Connection[Any, Any]) -> float:
    message = control.recv()
    if message[0] != "go":
        raise BenchError(f"expected go, got {message[0]}")
    start: float = message[1]
    return start


def _sleep_until(at: float) -> None:
    delay = at - time.monotonic()
    if delay > 0:
        time.sleep(delay)


# --- worker roles -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceiverJob:
    names: tuple[str, ...]
    expected: int
    progress: Connection[Any, Any] | None = None
    """Where to report the newest message every receiver here has (for the closed loop)."""


def _seed_connections(
    target: Target, names: Sequence[str], control: Connection[Any, Any]
) -> tuple[SeedPump, list[SeedConn]]:
    """One socket per name towards the seed, all polled by one pump."""
    seed = SeedPump(control)
    conns = [SeedConn(target.port, name) for name in names]
    for conn in conns:
        seed.add(conn)
    return seed, conns


def receivers_role(target: Target, job: ReceiverJob, control: Connection[Any, Any]) -> None:
    """Receive the stream on one socket per receiver until told to stop."""
    deadline = time.monotonic() + 60
    if target.kind == SEED:
        seed, seed_conns = _seed_connections(target, job.names, control)
        seed.register(seed_conns, 64, deadline)
        tallies = [conn.tally for conn in seed_conns]
        poll: Callable[[float], float] = seed.poll
        stopped: Callable[[], bool] = lambda: seed.stop  # noqa: E731
        lost: Callable[[], int] = lambda: 0  # noqa: E731
    else:
        pump = Pump(control)
        conns = [TrioConn(target.port, name) for name in job.names]
        for conn in conns:
            pump.add(conn)
        pump.log_in(conns, 64, deadline)
        tallies = [conn.tally for conn in conns]
        poll = pump.poll
        stopped = lambda: pump.stop  # noqa: E731
        lost = lambda: sum(1 for conn in conns if conn.lost)  # noqa: E731
    control.send(("ready", None))
    _wait_for_go(control)
    cpu = time.process_time()
    complete = False
    reported = -1
    while not stopped():
        poll(0.1)
        if job.progress is not None and not complete:
            everyone = min(t.newest() for t in tallies)
            if everyone > reported:
                reported = everyone
                job.progress.send(everyone)
        if not complete and job.expected and all(t.count >= job.expected for t in tallies):
            complete = True
            control.send(("complete", time.monotonic()))
    spent = time.process_time() - cpu
    result = {"tallies": [t.summary() for t in tallies], "cpu": spent, "lost": lost()}
    control.send(("done", result))


@dataclass(frozen=True, slots=True)
class SenderJob:
    name: str
    watcher: str
    """One of the receivers, in the sender's own process (logged in last)."""
    messages: int
    batch: int
    rate: float = 0.0
    """Messages per second, paced; 0 sends in closed-loop batches instead."""
    duration: float = 0.0
    progress: tuple[Connection[Any, Any], ...] = ()
    """The receiver processes' reports: a batch leaves once every receiver has the last."""


class Everyone:
    """The newest message every receiver has, from the reports and the sender's watcher."""

    def __init__(self, pump: Pump | SeedPump, job: SenderJob, watcher: Tally) -> None:
        self._watcher = watcher
        self._reports = {conn.fileno(): -1 for conn in job.progress}
        for conn in job.progress:
            pump.watch(conn, lambda conn=conn: self._read(conn))  # type: ignore[misc]

    def _read(self, conn: Connection[Any, Any]) -> None:
        while conn.poll():
            self._reports[conn.fileno()] = conn.recv()

    def have(self, index: int) -> bool:
        if self._watcher.newest() < index:
            return False
        return all(newest >= index for newest in self._reports.values())


def sender_role(target: Target, job: SenderJob, control: Connection[Any, Any]) -> None:
    deadline = time.monotonic() + 60
    if target.kind == SEED:
        _seed_sender(target, job, control, deadline)
    else:
        _trio_sender(target, job, control, deadline)


def _due(job: SenderJob, start: float, now: float, sent: int, total: int) -> int:
    """How many messages should have left by `now`."""
    if job.rate <= 0:
        return total
    return min(total, int((now - start) * job.rate) + 1)


def _seed_sender(
    target: Target, job: SenderJob, control: Connection[Any, Any], deadline: float
) -> None:
    pump = SeedPump(control)
    watcher = SeedConn(target.port, job.watcher)
    sender = SeedConn(target.port, job.name)
    for conn in (watcher, sender):
        pump.add(conn)
        pump.register([conn], 1, deadline)
    everyone = Everyone(pump, job, watcher.tally)
    control.send(("ready", None))
    start = _wait_for_go(control)
    total = job.messages if job.rate <= 0 else int(job.rate * job.duration)
    _sleep_until(start)
    cpu = time.process_time()
    first = time.monotonic()
    stalls = 0
    sent = 0
    prefix = f"3 {job.name} {HOST} "
    send = sender.sock.send
    while sent < total:
        now = time.monotonic()
        if job.rate > 0:
            due = _due(job, start, now, sent, total)
            while sent < due:
                with suppress(OSError):
                    send((prefix + _text(sent, now)).encode("ascii"))
                sent += 1
            pump.poll((sent / job.rate + start) - time.monotonic())
            continue
        end = min(total, sent + job.batch)
        while sent < end:
            with suppress(OSError):
                send((prefix + _text(sent, now)).encode("ascii"))
            sent += 1
        # Wait until every receiver has the batch, or give up on it after a while: the
        # seed may drop datagrams (and never answers a public message anyway).
        give_up = time.monotonic() + 0.05
        while not everyone.have(end - 1):
            now = pump.poll(give_up - time.monotonic())
            if now >= give_up:
                stalls += 1
                break
    finished = time.monotonic()
    linger = finished + 0.5
    while time.monotonic() < linger:
        pump.poll(linger - time.monotonic())
    result = {
        "first": first,
        "finished": finished,
        "sent": total,
        "stalls": stalls,
        "acked": None,
        "lost": 0,
        "cpu": time.process_time() - cpu,  # before the summaries, which parse
        "tallies": [watcher.tally.summary()],
    }
    control.send(("done", result))
    pump.close()


def _trio_sender(
    target: Target, job: SenderJob, control: Connection[Any, Any], deadline: float
) -> None:
    pump = Pump(control)
    watcher = TrioConn(target.port, job.watcher)
    sender = TrioConn(target.port, job.name)
    for conn in (watcher, sender):
        pump.add(conn)
        pump.log_in([conn], 1, deadline)
    everyone = Everyone(pump, job, watcher.tally)
    link = sender.link
    assert link is not None
    control.send(("ready", None))
    start = _wait_for_go(control)
    total = job.messages if job.rate <= 0 else int(job.rate * job.duration)
    _sleep_until(start)
    cpu = time.process_time()
    first = time.monotonic()
    stalls = 0
    sent = 0

    def say(index: int, now: float) -> None:
        link.send(wire.encode(wire.Say(text=_text(index, now), cid=f"c{index}")))

    while sent < total:
        now = time.monotonic()
        if job.rate > 0:
            due = _due(job, start, now, sent, total)
            while sent < due:
                say(sent, now)
                sent += 1
            sender.flush(now)
            pump.schedule(sender)
            pump.poll((sent / job.rate + start) - time.monotonic())
            continue
        end = min(total, sent + job.batch)
        while sent < end:
            say(sent, now)
            sent += 1
        sender.flush(now)
        pump.schedule(sender)
        give_up = now + 1.0
        while not everyone.have(end - 1):
            now = pump.poll(give_up - now)
            if now >= give_up:
                stalls += 1
                break
    finished = time.monotonic()
    # Every message is acknowledged once it is on disk; wait for the last of them.
    linger = finished + 10.0
    while sender.oks < total and time.monotonic() < linger:
        pump.poll(0.05)
    acked_at = time.monotonic()
    result = {
        "first": first,
        "finished": finished,
        "acked_at": acked_at,
        "sent": total,
        "stalls": stalls,
        "acked": sender.oks,
        "lost": int(watcher.lost) + int(sender.lost),
        "cpu": time.process_time() - cpu,  # before the summaries, which parse
        "tallies": [watcher.tally.summary()],
    }
    control.send(("done", result))
    pump.close()


@dataclass(frozen=True, slots=True)
class StormJob:
    names: tuple[str, ...]
    delay: float
    """Seconds after the start at which every login leaves at once."""


def storm_role(target: Target, job: StormJob, control: Connection[Any, Any]) -> None:
    """Many logins at the same moment (each logging out at once, so the room stays as it was)."""
    if target.kind == SEED:
        seed, seed_conns = _seed_connections(target, job.names, control)
        control.send(("ready", None))
        _sleep_until(_wait_for_go(control) + job.delay)
        begin = time.monotonic()
        for seed_conn in seed_conns:
            # The seed has no password hashing; its login is a dictionary lookup.
            seed_conn.command(f"2 {seed_conn.name} {PASSWORD}")
        while not all(c.replied_at < math.inf for c in seed_conns):
            if seed.poll(0.05) - begin > 10:
                break
        answered = [c.replied_at for c in seed_conns if c.replied_at < math.inf]
        seed.close()
    else:
        pump = Pump(control)
        conns = [TrioConn(target.port, name) for name in job.names]
        for conn in conns:
            pump.add(conn)
        control.send(("ready", None))
        _sleep_until(_wait_for_go(control) + job.delay)
        begin = time.monotonic()
        for conn in conns:
            conn.login(begin)
            pump.schedule(conn)
        left: set[TrioConn] = set()
        while len(left) < len(conns) and time.monotonic() - begin < 60:
            now = pump.poll(0.05)
            for conn in conns:
                if conn.link is not None and conn not in left:
                    conn.link.send(wire.encode(wire.Logout()))
                    conn.flush(now)
                    left.add(conn)
        answered = [c.welcomed_at for c in conns if c.welcomed_at < math.inf]
        pump.close()
    result = {"begin": begin, "end": max(answered, default=begin), "answered": len(answered)}
    control.send(("done", result))


@dataclass(frozen=True, slots=True)
class IdleJob:
    names: tuple[str, ...]
    window: int


def idle_role(target: Target, job: IdleJob, control: Connection[Any, Any]) -> None:
    """Log many sessions in, then keep them alive (pings) and quiet until told to stop."""
    if target.kind == SEED:
        seed, seed_conns = _seed_connections(target, job.names, control)
        control.send(("ready", None))
        _sleep_until(_wait_for_go(control))
        seed.register(seed_conns, job.window, time.monotonic() + 600)
        control.send(("complete", time.monotonic()))
        while not seed.stop:
            seed.poll(1.0)
        result = {"lost": 0, "logged_in": len(seed_conns)}
        seed.close()
    else:
        pump = Pump(control)
        # Each session pings when it has sent nothing for the client's keepalive interval.
        conns = [TrioConn(target.port, name, keepalive=KEEPALIVE) for name in job.names]
        for conn in conns:
            pump.add(conn)
        control.send(("ready", None))
        _sleep_until(_wait_for_go(control))
        pump.log_in(conns, job.window, time.monotonic() + 3600)
        control.send(("complete", time.monotonic()))
        while not pump.stop:
            pump.poll(1.0)
        lost = sum(1 for conn in conns if conn.lost)
        result = {"lost": lost, "logged_in": sum(1 for c in conns if c.ready)}
        pump.close()
    control.send(("done", result))


@dataclass(frozen=True, slots=True)
class PersistJob:
    name: str
    messages: int
    window: int


def persist_role(target: Target, job: PersistJob, control: Connection[Any, Any]) -> None:
    """Send as fast as the durable acknowledgements allow, `window` unacknowledged at most."""
    pump = Pump(control)
    conn = TrioConn(target.port, job.name)
    pump.add(conn)
    pump.log_in([conn], 1, time.monotonic() + 60)
    link = conn.link
    assert link is not None
    control.send(("ready", None))
    _sleep_until(_wait_for_go(control))
    cpu = time.process_time()
    first = time.monotonic()
    sent = 0
    while conn.oks < job.messages and time.monotonic() - first < 120:
        now = time.monotonic()
        while sent < job.messages and sent - conn.oks < job.window:
            link.send(wire.encode(wire.Say(text=_text(sent, now), cid=f"p{sent}")))
            sent += 1
        conn.flush(now)
        pump.schedule(conn)
        pump.poll(0.05)
    result = {
        "first": first,
        "last": time.monotonic(),
        "acked": conn.oks,
        "cpu": time.process_time() - cpu,
    }
    control.send(("done", result))
    pump.close()


ROLES: dict[str, Callable[[Target, Any, Connection[Any, Any]], None]] = {
    "receivers": receivers_role,
    "sender": sender_role,
    "storm": storm_role,
    "idle": idle_role,
    "persist": persist_role,
}


NICED = frozenset({"receivers", "storm", "idle"})


def _worker(role: str, target: Target, job: Any, control: Connection[Any, Any]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if role in NICED:
        # Load generators give way to the server under test (and to the closed loop's
        # sender): on a machine with few cores they would otherwise preempt it.
        os.nice(5)
    try:
        ROLES[role](target, job, control)
    except Exception:
        with suppress(OSError):
            control.send(("error", traceback.format_exc()))


# --- the parent's side: servers and workers ----------------------------------------------


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """A server subprocess: its port, CPU time and memory, read from /proc."""

    def __init__(self, kind: str, command: list[str], port: int, log: Path) -> None:
        self.kind = kind
        self.port = port
        self.log = log
        with log.open("wb") as sink:
            self.proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    @property
    def target(self) -> Target:
        return Target(self.kind, self.port)

    def _wait_ready(self) -> None:
        """Ask for an account that does not exist until the server answers."""
        if self.kind == SEED:
            probe = b"2 nobody x"
        else:
            probe = wire.encode(wire.Login(rid="probe", name="nobody", password="x" * 8))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.1)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    output = self.log.read_text(errors="replace").strip()
                    raise BenchError(f"{self.kind} exited at start: {output[-500:]}")
                sock.sendto(probe, (HOST, self.port))
                try:
                    sock.recvfrom(2048)
                    return
                except (TimeoutError, OSError):
                    continue
        raise BenchError(f"{self.kind} did not answer on port {self.port}")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15 of the whole line; 12 and 13 after the name.
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def cpu_split(self) -> tuple[float, float]:
        """User and system CPU seconds."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) / _CLOCK_TICKS, int(fields[12]) / _CLOCK_TICKS

    def memory_mb(self) -> tuple[float, float]:
        """Resident memory now and at its peak, in MiB."""
        values: dict[str, float] = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
        return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Context:
    baseline: Path
    settings: Settings
    workdir: Path
    profile: Path | None
    mp: Any = field(default_factory=lambda: multiprocessing.get_context("fork"))
    profiles: list[Path] = field(default_factory=list)


def _seed_accounts(database: Path, names: Sequence[str]) -> None:
    """Create the accounts in the database before the daemon starts (no hashing per account)."""
    password_hash = hash_password(PASSWORD)
    created = iso_time(time.time())
    store = SqliteStore.open(database)
    try:
        accounts = [
            Account(
                id=i, name=name, key=name_key(name), password_hash=password_hash, created=created
            )
            for i, name in enumerate(names, start=1)
        ]
        for start in range(0, len(accounts), 5000):
            if store.write(accounts[start : start + 5000]):
                raise BenchError("could not create the benchmark accounts")
    finally:
        store.close()


@contextmanager
def running(ctx: Context, kind: str, label: str, accounts: Sequence[str]) -> Iterator[Server]:
    """One server for one workload, stopped (and its database removed) afterwards."""
    port = _free_port()
    log = ctx.workdir / f"{kind}-{label}.log"
    if kind == SEED:
        command = [sys.executable, str(ctx.baseline), str(port)]
    else:
        database = ctx.workdir / f"{label}.db"
        _seed_accounts(database, accounts)
        command = [sys.executable]
        if ctx.profile is not None:
            output = ctx.profile.with_name(f"{ctx.profile.name}-{label}.prof")
            ctx.profiles.append(output)
            command += ["-m", "cProfile", "-o", str(output)]
        command += ["-m", "trio_chat", "serve", "--host", HOST, "--port", str(port)]
        command += ["--db", str(database), "--log-level", "warning"]
        # Limits far above what the workloads need, so they measure speed, not policy.
        for option, value in (
            ("--message-rate", "1000000"),
            ("--message-burst", "1000000"),
            ("--register-rate", "1000000"),
            ("--register-burst", "1000000"),
            ("--sessions-per-address", "1000000"),
            ("--login-free-failures", "1000000"),
        ):
            command += [option, value]
    server = Server(kind, command, port, log)
    _progress(f"{kind} serving on port {port}, pid {server.proc.pid}")
    try:
        yield server
    finally:
        server.stop()
        for suffix in ("", "-wal", "-shm"):
            with suppress(FileNotFoundError):
                (ctx.workdir / f"{label}.db{suffix}").unlink()


class Worker:
    """A client process and the pipe that steers it."""

    def __init__(self, ctx: Context, role: str, target: Target, job: Any) -> None:
        self.role = role
        parent, child = ctx.mp.Pipe()
        self.conn: Connection[Any, Any] = parent
        self.proc = ctx.mp.Process(target=_worker, args=(role, target, job, child), daemon=True)
        self.proc.start()
        child.close()
        self.inbox: dict[str, Any] = {}

    def _read(self, timeout: float) -> bool:
        if not self.conn.poll(max(0.0, timeout)):
            return False
        try:
            kind, payload = self.conn.recv()
        except EOFError:
            raise BenchError(f"the {self.role} process ended unexpectedly") from None
        if kind == "error":
            raise BenchError(f"the {self.role} process failed:\n{payload}")
        self.inbox[kind] = payload
        return True

    def has(self, kind: str) -> bool:
        while kind not in self.inbox and self._read(0):
            pass
        return kind in self.inbox

    def expect(self, kind: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while kind not in self.inbox:
            if not self._read(deadline - time.monotonic()) and time.monotonic() >= deadline:
                raise BenchError(f"the {self.role} process did not report {kind!r} in time")
        return self.inbox[kind]

    def send(self, *message: Any) -> None:
        with suppress(OSError):
            self.conn.send(message)

    def close(self) -> None:
        self.proc.join(2)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(2)
        self.conn.close()


@contextmanager
def workers(ctx: Context) -> Iterator[Callable[[str, Target, Any], Worker]]:
    started: list[Worker] = []

    def spawn(role: str, target: Target, job: Any) -> Worker:
        worker = Worker(ctx, role, target, job)
        started.append(worker)
        return worker

    try:
        yield spawn
    finally:
        for worker in started:
            worker.close()


def _progress(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def _split(names: Sequence[str], parts: int) -> list[tuple[str, ...]]:
    parts = max(1, min(parts, len(names)))
    return [tuple(names[i::parts]) for i in range(parts)]


def _go(group: Sequence[Worker], lead: float = 0.3) -> float:
    start = time.monotonic() + lead
    for worker in group:
        worker.send("go", start)
    return start


def _wait_all(group: Sequence[Worker], kind: str, timeout: float) -> list[Any]:
    return [worker.expect(kind, timeout) for worker in group]


def _tallies(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [tally for result in results for tally in result["tallies"]]


def _samples(tallies: Sequence[dict[str, Any]]) -> tuple[array.array[float], array.array[float]]:
    sent, delays = array.array("d"), array.array("d")
    for tally in tallies:
        sent.frombytes(tally["sent"])
        delays.frombytes(tally["delays"])
    return sent, delays


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (`share` in 0..1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


Figures = dict[str, float]


def fanout(ctx: Context, kind: str) -> Figures:
    """50 receivers, one sender, closed-loop batches: deliveries per second."""
    s = ctx.settings
    names = [f"r{i}" for i in range(s.receivers)]
    with running(ctx, kind, "fanout", [*names, "sender"]) as server, workers(ctx) as spawn:
        target = server.target
        # The closed loop: each receiver process reports the newest message all its
        # receivers have; the next batch leaves once every receiver has the last one.
        parts = _split(names[:-1], s.processes)
        pipes = [ctx.mp.Pipe(duplex=False) for _part in parts]
        group = [
            spawn("receivers", target, ReceiverJob(part, s.messages, progress=writer))
            for part, (_reader, writer) in zip(parts, pipes, strict=True)
        ]
        _wait_all(group, "ready", 120)
        readers = tuple(reader for reader, _writer in pipes)
        job = SenderJob("sender", names[-1], s.messages, s.batch, progress=readers)
        sender = spawn("sender", target, job)
        sender.expect("ready", 60)
        everyone = [*group, sender]
        cpu = server.cpu_seconds()
        _go(everyone)
        sent = sender.expect("done", 300)
        # Receivers that have everything say so; the seed may have dropped some for good.
        grace = time.monotonic() + 2.0
        while not all(w.has("complete") for w in group) and time.monotonic() < grace:
            time.sleep(0.02)
        server_cpu = server.cpu_seconds() - cpu
        rss, _peak = server.memory_mb()
        for worker in group:
            worker.send("stop")
        results = [*_wait_all(group, "done", 30), sent]
    tallies = _tallies(results)
    unique = sum(t["unique"] for t in tallies)
    end = max(t["last_at"] for t in tallies)
    elapsed = end - sent["first"]
    return {
        "rate": unique / elapsed if elapsed > 0 else 0.0,
        "share": unique / (s.messages * s.receivers),
        "duplicates": sum(t["duplicates"] for t in tallies),
        "reordered": sum(t["reordered"] for t in tallies),
        "elapsed": elapsed,
        "server_cpu": server_cpu,
        "client_cpu": sum(r["cpu"] for r in results),
        "rss": rss,
        "stalls": sent["stalls"],
        "acked": sent["acked"],
        "lost": sum(r["lost"] for r in results),
    }


def latency(ctx: Context, kind: str) -> Figures:
    """A paced stream to 50 receivers; after a quiet spell, a storm of logins arrives."""
    s = ctx.settings
    names = [f"r{i}" for i in range(s.receivers)]
    stormers = [f"storm{i}" for i in range(s.storm)]
    # Long enough for the storm to pass: hashing takes ~25 ms a login on one core.
    storm_span = 1.0 + 0.04 * s.storm if kind == TRIO else 1.0
    duration = s.quiet + storm_span
    total = int(s.rate * duration)
    accounts = [*names, "sender", *stormers]
    with running(ctx, kind, "latency", accounts) as server, workers(ctx) as spawn:
        target = server.target
        group = [
            spawn("receivers", target, ReceiverJob(part, total))
            for part in _split(names[:-1], s.processes)
        ]
        _wait_all(group, "ready", 120)
        job = SenderJob("sender", names[-1], total, 1, rate=s.rate, duration=duration)
        sender = spawn("sender", target, job)
        storm = spawn("storm", target, StormJob(tuple(stormers), s.quiet))
        _wait_all([sender, storm], "ready", 60)
        cpu = server.cpu_seconds()
        _go([*group, sender, storm])
        sent = sender.expect("done", duration + 120)
        stormed = storm.expect("done", 120)
        grace = time.monotonic() + 1.0
        while not all(w.has("complete") for w in group) and time.monotonic() < grace:
            time.sleep(0.02)
        server_cpu = server.cpu_seconds() - cpu
        for worker in group:
            worker.send("stop")
        results = [*_wait_all(group, "done", 30), sent]
    tallies = _tallies(results)
    sent_at, delays = _samples(tallies)
    start = sent["first"]
    quiet = [d for t, d in zip(sent_at, delays, strict=True) if start + 0.5 <= t < stormed["begin"]]
    # The storm lasts until the last login is answered (at least 100 ms, for the seed).
    storm_end = max(stormed["end"], stormed["begin"] + 0.1)
    during = [d for t, d in zip(sent_at, delays, strict=True) if stormed["begin"] <= t < storm_end]
    if os.environ.get("BENCH_DEBUG"):
        for q in (0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
            print(f"  {kind} quiet q{q}: {percentile(quiet, q) * 1000:.2f} ms", file=sys.stderr)
    quiet_p99 = percentile(quiet, 0.99)
    storm_p99 = percentile(during, 0.99)
    return {
        "p50": percentile(quiet, 0.5) * 1000,
        "p99": quiet_p99 * 1000,
        "storm_p99": storm_p99 * 1000,
        "storm_ratio": storm_p99 / quiet_p99 if quiet_p99 > 0 else math.nan,
        "storm_time": stormed["end"] - stormed["begin"],
        "storm_answered": stormed["answered"],
        "share": sum(t["unique"] for t in tallies) / (total * s.receivers),
        "server_cpu": server_cpu,
        "client_cpu": sum(r["cpu"] for r in results),
    }


def scale(ctx: Context, kind: str) -> Figures:
    """Many idle sessions with keepalives: how long to log in, memory, idle CPU."""
    s = ctx.settings
    names = [f"idle{i}" for i in range(s.sessions)]
    with running(ctx, kind, "scale", names) as server, workers(ctx) as spawn:
        target = server.target
        # A few logins in flight per process keep the hashing thread busy without a flood.
        window = 64 if kind == SEED else 4
        group = [
            spawn("idle", target, IdleJob(part, window)) for part in _split(names, 2 * s.processes)
        ]
        _wait_all(group, "ready", 120)
        start = _go(group)
        done = _wait_all(group, "complete", 3600)
        login_time = max(done) - start
        _progress(f"{len(names)} sessions logged in after {login_time:.1f} s; idle now")
        time.sleep(1.0)  # let the last logins' backlogs and acks settle
        cpu = server.cpu_seconds()
        split = server.cpu_split()
        began = time.monotonic()
        time.sleep(s.idle_window)
        idle_cpu = (server.cpu_seconds() - cpu) / (time.monotonic() - began)
        if os.environ.get("BENCH_DEBUG"):
            user, system = (b - a for a, b in zip(split, server.cpu_split(), strict=True))
            _progress(f"idle: user {user:.2f} s, system {system:.2f} s")
        rss, peak = server.memory_mb()
        for worker in group:
            worker.send("stop")
        results = _wait_all(group, "done", 60)
    return {
        "sessions": sum(r["logged_in"] for r in results),
        "lost": sum(r["lost"] for r in results),
        "login_time": login_time,
        "rss": rss,
        "peak": peak,
        "idle_cpu": idle_cpu * 100,
    }


def persistence(ctx: Context, kind: str) -> Figures:
    """Messages per second acknowledged only after the commit that stores them."""
    s = ctx.settings
    with running(ctx, kind, "persistence", ["writer"]) as server, workers(ctx) as spawn:
        writer = spawn("persist", server.target, PersistJob("writer", s.persist_messages, 256))
        writer.expect("ready", 60)
        cpu = server.cpu_seconds()
        _go([writer])
        result = writer.expect("done", 300)
        server_cpu = server.cpu_seconds() - cpu
    elapsed = result["last"] - result["first"]
    return {
        "rate": result["acked"] / elapsed if elapsed > 0 else 0.0,
        "acked": result["acked"],
        "server_cpu": server_cpu,
    }


# --- the report ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    workload: str
    metric: str
    key: str
    fmt: str
    goal: str = ""
    ratio: bool = True
    source: str = ""
    """The workload whose figures the row shows, when not its own."""


ROWS: tuple[Row, ...] = (
    Row("fanout", "deliveries/s", "rate", "{:,.0f}", ">= 2x seed"),
    Row("fanout", "delivered share", "share", "{:.2%}", "100%, once"),
    Row("fanout", "duplicates / reordered", "dup_order", "{}", "0 / 0", ratio=False),
    Row("fanout", "durable acks to sender", "acked", "{:.0f}", ratio=False),
    Row("fanout", "sessions lost", "lost", "{:.0f}", "0", ratio=False),
    Row("fanout", "time s", "elapsed", "{:.2f}"),
    Row("fanout", "server CPU s", "server_cpu", "{:.2f}"),
    Row("fanout", "clients CPU s", "client_cpu", "{:.2f}"),
    Row("fanout", "server RSS MB", "rss", "{:.1f}"),
    Row("latency", "p50 ms", "p50", "{:.2f}"),
    Row("latency", "p99 ms", "p99", "{:.2f}", "< 5 ms"),
    Row("latency", "delivered share", "share", "{:.2%}"),
    Row("latency", "server CPU s", "server_cpu", "{:.2f}"),
    Row("isolation", "p99 ms during logins", "storm_p99", "{:.2f}", source="latency"),
    Row("isolation", "p99 storm / quiet", "storm_ratio", "{:.2f}", "<= 2.00", source="latency"),
    Row("isolation", "logins answered", "storm_answered", "{:.0f}", source="latency"),
    Row("isolation", "storm lasted s", "storm_time", "{:.2f}", source="latency"),
    Row("scale", "sessions", "sessions", "{:.0f}"),
    Row("scale", "sessions lost", "lost", "{:.0f}", "0", ratio=False),
    Row("scale", "time to log in s", "login_time", "{:.2f}"),
    Row("scale", "RSS MB", "rss", "{:.1f}", "< 150"),
    Row("scale", "peak RSS MB", "peak", "{:.1f}"),
    Row("scale", "idle CPU % of a core", "idle_cpu", "{:.2f}", "< 5"),
    Row("persistence", "durable msgs/s", "rate", "{:,.0f}"),
    Row("persistence", "server CPU s", "server_cpu", "{:.2f}"),
)


def _cell(row: Row, figures: dict[str, Any] | None) -> str:
    if figures is None:
        return "n/a"
    if row.key == "dup_order":
        if "duplicates" not in figures:
            return "n/a"
        return f"{figures['duplicates']:.0f} / {figures['reordered']:.0f}"
    value = figures.get(row.key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return row.fmt.format(value)


def _ratio(row: Row, seed: dict[str, Any] | None, trio: dict[str, Any] | None) -> str:
    if not row.ratio or seed is None or trio is None:
        return "n/a"
    a, b = trio.get(row.key), seed.get(row.key)
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return "n/a"
    return f"{a / b:.2f}"


def render(results: dict[str, dict[str, Figures | None]]) -> str:
    header = ("workload", "metric", SEED, TRIO, "trio/seed", "goal")
    lines: list[tuple[str, ...]] = [header]
    for row in ROWS:
        by_kind = results.get(row.source or row.workload)
        if by_kind is None:
            continue
        seed, trio = by_kind.get(SEED), by_kind.get(TRIO)
        lines.append(
            (
                row.workload,
                row.metric,
                _cell(row, seed),
                _cell(row, trio),
                _ratio(row, seed, trio),
                row.goal,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        cells = [
            cell.ljust(width) if i < 2 or i == 5 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("| " + " | ".join(cells) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def _describe_machine() -> str:
    import platform

    return (
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def _show_profiles(paths: Sequence[Path]) -> None:
    for path in paths:
        if path.exists():
            print(f"\n--- {path.name}: the daemon's 25 costliest functions (own time) ---")
            stats = pstats.Stats(str(path), stream=sys.stdout)
            stats.sort_stats("tottime").print_stats(25)


RUNNERS: dict[str, Callable[[Context, str], Figures]] = {
    "fanout": fanout,
    "latency": latency,
    "scale": scale,
    "persistence": persistence,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    default_seed = ROOT.parent / "shared" / "baseline" / "seed_server.py"
    parser.add_argument("--baseline", type=Path, default=default_seed, help="the seed server")
    parser.add_argument("--quick", action="store_true", help="a shorter run (under a minute)")
    parser.add_argument(
        "--only", default=",".join(WORKLOADS), help=f"comma-separated, of {','.join(WORKLOADS)}"
    )
    parser.add_argument("--receivers", type=int, help="fan-out and latency receivers")
    parser.add_argument("--messages", type=int, help="fan-out messages")
    parser.add_argument("--rate", type=float, help="latency stream, messages per second")
    parser.add_argument("--quiet", type=float, help="latency seconds before the login storm")
    parser.add_argument("--storm", type=int, help="logins arriving at once")
    parser.add_argument("--sessions", type=int, help="idle sessions for the scale workload")
    parser.add_argument("--idle-window", type=float, help="seconds idle CPU is measured over")
    parser.add_argument("--persist-messages", type=int, help="messages for persistence")
    parser.add_argument("--processes", type=int, help="client processes per role")
    parser.add_argument(
        "--skip-seed",
        action="store_true",
        help="run trio-chat alone (while profiling; there are no ratios then)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="run trio-chat under cProfile, writing PREFIX-<workload>.prof, and show the top",
    )
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace) -> Settings:
    base = QUICK if args.quick else FULL
    overrides = {
        name: getattr(args, name)
        for name in (
            "receivers",
            "messages",
            "rate",
            "quiet",
            "storm",
            "sessions",
            "idle_window",
            "persist_messages",
            "processes",
        )
        if getattr(args, name) is not None
    }
    settings = dataclasses.replace(base, **overrides)
    if settings.receivers < 2:
        raise BenchError("--receivers must be at least 2 (one watches for the closed loop)")
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = _settings(args)
        chosen = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(chosen) - set(WORKLOADS))
        if unknown:
            raise BenchError(
                f"Unknown workload {unknown[0]!r}; choose from {', '.join(WORKLOADS)}."
            )
        if not args.baseline.is_file():
            raise BenchError(
                f"The seed server {str(args.baseline)!r} does not exist; give it with --baseline."
            )
    except BenchError as error:
        print(error, file=sys.stderr)
        return 2
    limit = _raise_file_limit()
    needed = settings.sessions // max(1, 2 * settings.processes) + 64
    if "scale" in chosen and limit < needed:
        print(f"Open-file limit {limit} is below the {needed} a process needs.", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="trio-chat-bench-"))
    ctx = Context(args.baseline.resolve(), settings, workdir, args.profile)
    results: dict[str, dict[str, Figures | None]] = {}
    began = time.monotonic()
    try:
        for name in chosen:
            results[name] = {}
            for kind in (SEED, TRIO) if not args.skip_seed else (TRIO,):
                if name == "persistence" and kind == SEED:
                    results[name][kind] = None  # the seed keeps nothing on disk
                    continue
                print(f"{name}: {kind} ...", file=sys.stderr, flush=True)
                results[name][kind] = RUNNERS[name](ctx, kind)
    except BenchError as error:
        print(f"The benchmark stopped: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - began
    if ctx.profiles:
        _show_profiles(ctx.profiles)
    print(f"\ntrio-chat vs seed, {'quick' if args.quick else 'full'} run, {elapsed:.0f} s")
    print(f"machine: {_describe_machine()}")
    print(render(results))
    fan = results.get("fanout", {})
    seed_fan, trio_fan = fan.get(SEED), fan.get(TRIO)
    if seed_fan and trio_fan and seed_fan["rate"] > 0:
        print(f"fanout ratio vs seed: {trio_fan['rate'] / seed_fan['rate']:.2f}")
    return 0


def _raise_file_limit() -> int:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


if __name__ == "__main__":
    sys.exit(main())
