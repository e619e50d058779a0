"""What each client process does, against either server: its role and its job.

A role runs in a process of its own (see `workers`), steered over a pipe: it reports
`ready` once its clients are in, starts at the time `go` names, may report `complete`,
and ends with `done` and its results (or `error` and a traceback). The same role
drives trio-chat and the seed; only the clients differ (`clients.open_client`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import signal
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import trio

from trio_chat.testing.fault_proxy import FaultProxy, Weather

from .clients import Client, Pump, TrioClient, open_client
from .config import HOST, SEED, BenchError, Target
from .tally import Slowest, Tally, text_for


def _ready(control: Connection[Any, Any]) -> float:
    """Report that the clients are in, wait for `go`, and return the start time it names."""
    control.send(("ready", None))
    message = control.recv()
    if message[0] != "go":
        raise BenchError(f"expected go, got {message[0]}")
    start: float = message[1]
    return start


def _sleep_until(at: float) -> None:
    delay = at - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _clients(pump: Pump, target: Target, names: Sequence[str], storm: bool = False) -> list[Client]:
    return [pump.add(open_client(target, name, storm=storm)) for name in names]


# --- receivers -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceiverJob:
    names: tuple[str, ...]
    expected: int
    progress: Connection[Any, Any] | None = None
    """Where to report the newest message every receiver here has (for the closed loop)."""


def receivers_role(target: Target, job: ReceiverJob, control: Connection[Any, Any]) -> None:
    """Receive the stream on one socket per receiver until told to stop."""
    pump = Pump(control)
    clients = _clients(pump, target, job.names)
    pump.log_in(clients, 64, time.monotonic() + 60)
    tallies = [client.tally for client in clients]
    for tally in tallies:
        tally.reserve(tally.count + job.expected)
    _ready(control)
    cpu = time.process_time()
    complete = False
    reported = -1
    slowest = Slowest(tallies)
    while not pump.stop:
        pump.poll(0.1)
        if job.progress is not None and not complete:
            everyone = slowest.update()
            if everyone > reported:
                reported = everyone
                job.progress.send(everyone)
        if not complete and job.expected and all(t.count >= job.expected for t in tallies):
            complete = True
            control.send(("complete", time.monotonic()))
    spent = time.process_time() - cpu
    lost = sum(client.lost for client in clients)
    result = {"tallies": [t.summary() for t in tallies], "cpu": spent, "lost": lost}
    control.send(("done", result))
    pump.close()


# --- the sender ----------------------------------------------------------------------------


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
    ack_wait: float = 10.0
    """How long trio-chat's sender waits, after the last message, for the last `ok`."""

    @property
    def total(self) -> int:
        return self.messages if self.rate <= 0 else int(self.rate * self.duration)


class Everyone:
    """The newest message every receiver has, from the reports and the sender's watcher."""

    def __init__(self, pump: Pump, job: SenderJob, watcher: Tally) -> None:
        self._watcher = watcher
        self._reports = {conn.fileno(): -1 for conn in job.progress}
        for conn in job.progress:
            pump.watch(conn, self._reader(conn))

    def _reader(self, conn: Connection[Any, Any]) -> Callable[[], None]:
        def read() -> None:
            while conn.poll():
                self._reports[conn.fileno()] = conn.recv()

        return read

    def have(self, index: int) -> bool:
        if self._watcher.newest() < index:
            return False
        return all(newest >= index for newest in self._reports.values())


def sender_role(target: Target, job: SenderJob, control: Connection[Any, Any]) -> None:
    """Say `job.total` messages: paced at `job.rate`, or in closed-loop batches."""
    pump = Pump(control)
    deadline = time.monotonic() + 60
    watcher, sender = _clients(pump, target, (job.watcher, job.name))
    for client in (watcher, sender):
        pump.log_in([client], 1, deadline)
    everyone = Everyone(pump, job, watcher.tally)
    start = _ready(control)
    total = job.total
    # The seed may drop datagrams and never answers a public message: a batch it lost
    # is given up on soon. trio-chat resends: its batch is waited for much longer.
    give_up_after = 0.05 if target.kind == SEED else 1.0
    _sleep_until(start)
    cpu = time.process_time()
    first = time.monotonic()
    stalls = 0
    sent = 0
    while sent < total:
        now = time.monotonic()
        if job.rate > 0:
            due = min(total, int((now - start) * job.rate) + 1)
            while sent < due:
                sender.say(text_for(sent, now), now)
                sent += 1
            pump.kick(sender, now)
            pump.poll((sent / job.rate + start) - time.monotonic())
            continue
        end = min(total, sent + job.batch)
        while sent < end:
            sender.say(text_for(sent, now), now)
            sent += 1
        pump.kick(sender, now)
        give_up = now + give_up_after
        while not everyone.have(end - 1):
            now = pump.poll(give_up - now)
            if now >= give_up:
                stalls += 1
                break
    finished = time.monotonic()
    if target.kind == SEED:
        linger = finished + 0.5  # for the watcher's last receipts
        while time.monotonic() < linger:
            pump.poll(linger - time.monotonic())
    else:
        # Every message is acknowledged once it is on disk; wait for the last of them,
        # and for the watcher to have them all (resent ones may come after the `ok`).
        linger = finished + job.ack_wait
        while (sender.pending or watcher.tally.count < total) and time.monotonic() < linger:
            pump.poll(0.05)
    result: dict[str, Any] = {
        "first": first,
        "finished": finished,
        "sent": total,
        "stalls": stalls,
        "acked": None,
        "ack_delays": None,
        "lost": watcher.lost + sender.lost,
        "cpu": time.process_time() - cpu,  # before the summaries, which parse
        "tallies": [watcher.tally.summary()],
    }
    if isinstance(sender, TrioClient):
        result["acked"] = sender.acked
        result["ack_delays"] = sender.ack_delays.tobytes()
    control.send(("done", result))
    pump.close()


# --- logins at once, idle sessions, durable messages ---------------------------------------


@dataclass(frozen=True, slots=True)
class StormJob:
    names: tuple[str, ...]
    delay: float
    """Seconds after the start at which every login leaves at once."""


def storm_role(target: Target, job: StormJob, control: Connection[Any, Any]) -> None:
    """Many logins at the same moment (each logging out at once, so the room stays as it was)."""
    pump = Pump(control)
    clients = _clients(pump, target, job.names, storm=True)
    _sleep_until(_ready(control) + job.delay)
    begin = time.monotonic()
    for client in clients:
        client.start(begin)
        pump.kick(client, begin)
    # The seed may drop a login for good (it never resends): give up on it sooner.
    limit = 10.0 if target.kind == SEED else 60.0
    left: set[int] = set()
    while time.monotonic() - begin < limit:
        now = pump.poll(0.05)
        for n, client in enumerate(clients):
            if n not in left and client.answered_at < math.inf:
                client.leave(now)
                pump.kick(client, now)
                left.add(n)
        if len(left) == len(clients) and not any(client.pending for client in clients):
            break
    answered = [c.answered_at for c in clients if c.answered_at < math.inf]
    pump.close()
    result = {"begin": begin, "end": max(answered, default=begin), "answered": len(answered)}
    control.send(("done", result))


@dataclass(frozen=True, slots=True)
class IdleJob:
    names: tuple[str, ...]
    window: int
    clock_skew: float = 0.0


def idle_role(target: Target, job: IdleJob, control: Connection[Any, Any]) -> None:
    """Log many sessions in, then keep them alive (pings) and quiet until told to stop."""
    pump = Pump(control)
    # trio-chat's clients ping after the client core's keepalive interval of silence, on
    # whole seconds of the daemon's clock (as its `welcome` told it; of their own before).
    clients = _clients(pump, target, job.names)
    rng = random.Random(len(job.names))
    for client in clients:
        if isinstance(client, TrioClient):  # its clock is off by up to `clock_skew`
            client.core.wall_offset += rng.uniform(0.0, job.clock_skew)
    _sleep_until(_ready(control))
    pump.log_in(clients, job.window, time.monotonic() + 3600)
    control.send(("complete", time.monotonic()))
    lost: int | None = None
    restarting: list[TrioClient] = []
    while not pump.stop:
        pump.poll(0.2 if restarting else 1.0)
        if pump.messages and pump.messages.pop(0)[0] == "restart":
            # The daemon is about to restart: what was lost so far is the idle figure, and
            # from now on the question is when every session is back.
            lost = sum(client.lost for client in clients)
            restarting = [client for client in clients if isinstance(client, TrioClient)]
            control.send(("restarting", lost))
        if restarting and all(c.reconnects and c.core.connected for c in restarting):
            control.send(("back", time.monotonic()))
            restarting = []
    if lost is None:
        lost = sum(client.lost for client in clients)
    result = {"lost": lost, "logged_in": sum(1 for client in clients if client.ready)}
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
    client = pump.add(TrioClient(target.port, target.key, job.name, config=target.config))
    pump.log_in([client], 1, time.monotonic() + 60)
    _sleep_until(_ready(control))
    cpu = time.process_time()
    first = time.monotonic()
    sent = 0
    while sent - client.pending < job.messages and time.monotonic() - first < 120:
        now = time.monotonic()
        while sent < job.messages and client.pending < job.window:
            client.say(text_for(sent, now), now)
            sent += 1
        pump.kick(client, now)
        pump.poll(0.05)
    result = {
        "first": first,
        "last": time.monotonic(),
        "acked": client.acked,
        "cpu": time.process_time() - cpu,
    }
    control.send(("done", result))
    pump.close()


# --- the network in between ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProxyJob:
    loss: float
    """Share of datagrams dropped each way."""
    seed: int


def proxy_role(target: Target, job: ProxyJob, control: Connection[Any, Any]) -> None:
    """The project's seeded `FaultProxy` in front of `target`, until told to stop.

    Reports `ready` with the port the clients send to, and `done` with its counts.
    """
    proxy = FaultProxy(
        (HOST, target.port),
        seed=job.seed,
        to_server=Weather(loss=job.loss),
        to_client=Weather(loss=job.loss),
    )

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(proxy.run)
            control.send(("ready", address[1]))
            while not control.poll():
                await trio.lowlevel.wait_readable(control.fileno())
            nursery.cancel_scope.cancel()

    trio.run(serve)
    control.send(("done", dataclasses.asdict(proxy.stats)))


ROLES: dict[str, Callable[[Target, Any, Connection[Any, Any]], None]] = {
    "receivers": receivers_role,
    "sender": sender_role,
    "storm": storm_role,
    "idle": idle_role,
    "persist": persist_role,
    "proxy": proxy_role,
}

NICED = frozenset({"receivers", "storm", "idle"})


def run_role(role: str, target: Target, job: Any, control: Connection[Any, Any]) -> None:
    """A client process's life: its role, and any failure reported to the parent."""
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
