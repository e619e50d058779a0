"""A chat run over a bad network: the real daemon, real client processes, and the fault
proxy between them; then a count of what arrived, how often, and in which order.

Receivers log in first (through the proxy); once all are in the room, the senders are
released at once and each says `count` numbered messages. Every receiver must see each
message exactly once, and each sender's messages in the order they were sent.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from trio_chat import ClientConfig, register
from trio_chat.testing.daemon import DaemonProcess, reap
from trio_chat.testing.fault_proxy import FaultProxy, ProxyStats, Weather

PASSWORD = "load-run-password"  # the same as trio_chat/testing/chat_peer.py's


@dataclass
class LossResult:
    loss: float
    senders: int
    receivers: int
    count: int
    seconds: float = 0.0
    """From the senders' start until every message was acknowledged and delivered."""
    wall_seconds: float = 0.0
    """The whole run, daemon start and client processes' exit included."""
    expected: int = 0
    """Deliveries that should happen: messages x receivers."""
    delivered: int = 0
    """Distinct messages the receivers' applications saw."""
    duplicates: int = 0
    """Messages an application saw more than once."""
    out_of_order: int = 0
    """Receivers that saw some sender's messages out of its order."""
    acknowledged: int = 0
    stored: int = 0
    stored_duplicates: int = 0
    disconnects: int = 0
    login_attempts: int = 0
    errors: list[str] = field(default_factory=list)
    finished: dict[str, float] = field(default_factory=dict)
    """Seconds from the start until each client was done (every message in or acknowledged)."""
    proxy: ProxyStats = field(default_factory=ProxyStats)

    @property
    def fraction(self) -> float:
        return self.delivered / self.expected if self.expected else 0.0

    @property
    def perfect(self) -> bool:
        return (
            self.delivered == self.expected
            and self.duplicates == 0
            and self.out_of_order == 0
            and self.acknowledged == self.senders * self.count
            and self.stored == self.senders * self.count
            and self.stored_duplicates == 0
            and not self.errors
        )


class _PeerProcess:
    """One `trio_chat/testing/chat_peer.py` process and the JSON lines it prints."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.ready = trio.Event()
        self.done = trio.Event()
        self.result: dict[str, Any] = {}
        self.stderr = b""

    async def read(self) -> None:
        assert self.process.stdout is not None
        pending = b""
        async for chunk in self.process.stdout:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                message = json.loads(line)
                if message["event"] == "ready":
                    self.ready.set()
                elif message["event"] == "done":
                    self.result = message
        self.ready.set()
        self.done.set()

    async def read_errors(self) -> None:
        assert self.process.stderr is not None
        async for chunk in self.process.stderr:
            self.stderr += chunk


async def _spawn(nursery: trio.Nursery, arguments: list[str]) -> _PeerProcess:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "trio_chat.testing.chat_peer", *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    peer = _PeerProcess(process)
    nursery.start_soon(reap, process)
    nursery.start_soon(peer.read)
    nursery.start_soon(peer.read_errors)
    return peer


def _check(result: LossResult, clients: list[dict[str, Any]], senders: list[str]) -> None:
    for client in clients:
        result.finished[client["name"]] = client["seconds"]
        result.disconnects += client["disconnects"]
        result.login_attempts += client["login_attempts"]
        result.errors += [f"{client['name']}: {error}" for error in client["errors"]]
        if client["role"] == "sender":
            result.acknowledged += len(client["acked"])
            continue
        seen = Counter((sender, n) for sender, n, _id in client["messages"])
        result.delivered += len(seen)
        result.duplicates += sum(times - 1 for times in seen.values())
        for sender in senders:
            numbers = [n for name, n, _id in client["messages"] if name == sender]
            if numbers != sorted(numbers):
                result.out_of_order += 1


def _stored(database: Path) -> tuple[int, int, str]:
    with sqlite3.connect(database) as db:
        texts = [text for (text,) in db.execute("SELECT text FROM messages")]
        (integrity,) = db.execute("PRAGMA integrity_check").fetchone()
    return len(texts), len(texts) - len(set(texts)), integrity


async def loss_run(
    workdir: Path,
    *,
    loss: float,
    senders: int,
    receivers: int,
    count: int,
    seed: int,
    receivers_per_process: int = 5,
    duplicate: float = 0.02,
    reorder: float = 0.05,
    delay: float = 0.001,
    jitter: float = 0.002,
    deadline: float = 900.0,
) -> LossResult:
    """Run once; see the module docstring. Raises nothing for a bad result: check it."""
    result = LossResult(loss, senders, receivers, count)
    database = workdir / f"loss-{loss}-{seed}.db"
    sender_names = [f"s{n}" for n in range(senders)]
    receiver_names = [f"r{n}" for n in range(receivers)]
    weather = Weather(loss=loss, duplicate=duplicate, reorder=reorder, delay=delay, jitter=jitter)
    limits = ["--message-rate", "100000", "--message-burst", "100000"]
    limits += ["--register-burst", "1000", "--sessions-per-address", "1000"]
    limits += ["--handshake-burst", "1000"]
    async with trio.open_nursery() as nursery:
        daemon = DaemonProcess(nursery, database, *limits)
        host, port = await daemon.start()
        config = ClientConfig(timeout=10.0)
        async with trio.open_nursery() as signups:
            for name in sender_names + receiver_names:
                signups.start_soon(
                    functools.partial(register, config=config), host, port, name, PASSWORD
                )
        proxy = FaultProxy((host, port), seed=seed, to_server=weather, to_client=weather)
        proxy_host, proxy_port = await nursery.start(proxy.run)
        common = ["--host", proxy_host, "--port", str(proxy_port), "--deadline", str(deadline)]
        expect = [f"--expect={name}:{count}" for name in sender_names]
        peers: list[_PeerProcess] = []
        for first in range(0, receivers, receivers_per_process):
            names = receiver_names[first : first + receivers_per_process]
            arguments = [*common, *expect, *(f"--receive={name}" for name in names)]
            peers.append(await _spawn(nursery, arguments))
        for peer in peers:
            await peer.ready.wait()
        talkers = [
            await _spawn(nursery, [*common, f"--send={name}", f"--count={count}"])
            for name in sender_names
        ]
        for peer in talkers:
            await peer.ready.wait()
        started = time.monotonic()
        for peer in [*peers, *talkers]:
            assert peer.process.stdin is not None
            await peer.process.stdin.send_all(b"go\n")
        clients: list[dict[str, Any]] = []
        for peer in [*peers, *talkers]:
            await peer.done.wait()
            await peer.process.wait()
            if peer.process.returncode != 0 or not peer.result:
                result.errors.append(peer.stderr.decode("utf-8", "replace")[-2000:])
            clients += peer.result.get("clients", [])
        result.wall_seconds = time.monotonic() - started
        result.proxy = proxy.stats
        await daemon.stop()
        nursery.cancel_scope.cancel()
    result.expected = senders * count * receivers
    _check(result, clients, sender_names)
    result.seconds = max(result.finished.values(), default=0.0)
    result.stored, result.stored_duplicates, integrity = _stored(database)
    if integrity != "ok":
        result.errors.append(f"integrity_check: {integrity}")
    return result
