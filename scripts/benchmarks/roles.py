"""What each client process does, against either server: its role and its job.

A role runs in a process of its own (see `workers`), steered over a pipe: it reports
`ready` once its clients are in, starts at the time `go` names, may report `complete`,
and ends with `done` and its results (or `error` and a traceback).
"""

from __future__ import annotations

import math
import os
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from trio_chat import wire

from .clients import KEEPALIVE, Pump, SeedConn, SeedPump, TrioConn
from .config import HOST, PASSWORD, SEED, BenchError, Target
from .tally import Tally, text_for


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
                    send((prefix + text_for(sent, now)).encode("ascii"))
                sent += 1
            pump.poll((sent / job.rate + start) - time.monotonic())
            continue
        end = min(total, sent + job.batch)
        while sent < end:
            with suppress(OSError):
                send((prefix + text_for(sent, now)).encode("ascii"))
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
        link.send(wire.encode(wire.Say(text=text_for(index, now), cid=f"c{index}")))

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
            link.send(wire.encode(wire.Say(text=text_for(sent, now), cid=f"p{sent}")))
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


def run_role(role: str, target: Target, job: Any, control: Connection[Any, Any]) -> None:
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
