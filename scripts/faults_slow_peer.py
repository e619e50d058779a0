"""Dead and slow peers: how long until the daemon drops them, and what the others feel.

    nice .venv/bin/python -m scripts.faults_slow_peer
    nice .venv/bin/python -m scripts.faults_slow_peer --rate 300 --dead 10

A talker says `--rate` messages a second to `--listeners` clients; each message carries
its send time, so each listener measures its delivery latency. The run has phases:

  baseline   everyone is healthy
  dead+slow  `--dead` more peers, in the room until now, stop acknowledging anything
             (they still send a datagram a second, so they are not silent); and
             `--slow` clients, behind the fault proxy, start getting the daemon's
             datagrams `--slow-delay` late (plus jitter) with 30% of them lost
  after      the dead ones have been dropped by the daemon

It prints latency percentiles per phase, when the daemon dropped each dead peer and
why, and the daemon's CPU time per phase. Nothing here asserts: the tests do that.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from trio_chat import ChatClient, ClientConfig, Left, PublicMessage, connect, register
from trio_chat.keys import daemon_public_key
from trio_chat.testing.daemon import DaemonProcess, private_client_data
from trio_chat.testing.fault_proxy import FaultProxy, Weather
from trio_chat.testing.raw_peer import RawPeer

PASSWORD = "slow-peer-password"


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    started: float = 0.0
    cpu_started: float = 0.0
    seconds: float = 0.0
    cpu: float = 0.0

    def summary(self) -> str:
        if not self.latencies:
            return f"{self.name:9} no messages"
        ms = sorted(1000 * latency for latency in self.latencies)

        def at(share: float) -> float:
            return ms[min(len(ms) - 1, int(share * len(ms)))]

        return (
            f"{self.name:9} {len(ms):6} deliveries over {self.seconds:5.1f} s: "
            f"p50 {at(0.5):6.1f} ms  p95 {at(0.95):6.1f} ms  p99 {at(0.99):6.1f} ms  "
            f"max {ms[-1]:7.1f} ms  mean {statistics.fmean(ms):6.1f} ms; "
            f"daemon CPU {self.cpu:5.2f} s ({100 * self.cpu / max(self.seconds, 1e-9):.0f}%)"
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Run:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.phases: list[Phase] = []
        self.current: Phase | None = None
        self.dropped: dict[str, tuple[float, str]] = {}
        self.dead_since = 0.0
        self.all_dropped = trio.Event()
        self.dead: set[str] = set()
        self.slow_latencies: list[float] = []

    def begin(self, name: str) -> None:
        now = time.monotonic()
        if self.current is not None:
            self.current.seconds = now - self.current.started
            self.current.cpu = cpu_seconds(self.pid) - self.current.cpu_started
        if name:
            self.current = Phase(name, started=now, cpu_started=cpu_seconds(self.pid))
            self.phases.append(self.current)

    async def listen(self, chat: ChatClient, measure: bool, watch: bool) -> None:
        async for event in chat.events():
            if isinstance(event, PublicMessage) and event.text.startswith("t="):
                latency = time.monotonic() - float(event.text[2:])
                if not measure:
                    self.slow_latencies.append(latency)
                elif self.current is not None:
                    self.current.latencies.append(latency)
            elif watch and isinstance(event, Left) and self.dead_since:
                if event.name not in self.dropped:
                    self.dropped[event.name] = (time.monotonic() - self.dead_since, event.reason)
                if self.dropped.keys() >= self.dead:
                    self.all_dropped.set()


async def ghost(
    host: str,
    port: int,
    server_key: bytes,
    name: str,
    dead: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A peer that logs in, acknowledges like a client until `dead` is set, then never
    again: it still sends a datagram every second (it is not silent), with a frozen ack."""
    peer = RawPeer(server_key, name, PASSWORD)
    with peer.sock:
        await peer.log_in(host, port)
        task_status.started()
        while not dead.is_set():
            await peer.step()
        while True:
            await peer.send_frozen_ack()
            await trio.sleep(1.0)


async def talk(chat: ChatClient, rate: float) -> None:
    while True:
        chat.say_nowait(f"t={time.monotonic()!r}")
        await trio.sleep(1 / rate)


async def main(args: argparse.Namespace) -> None:
    config = ClientConfig(timeout=10.0)
    listeners = [f"listener{n}" for n in range(args.listeners)]
    dead = [f"dead{n}" for n in range(args.dead)]
    slow = [f"slow{n}" for n in range(args.slow)]
    with tempfile.TemporaryDirectory() as workdir:
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(
                nursery,
                Path(workdir) / "chat.db",
                *("--message-rate", "100000", "--message-burst", "100000"),
                *("--register-burst", "100000", "--sessions-per-address", "100000"),
                *("--handshake-burst", "100000"),
            )
            host, port = await daemon.start()
            server_key = daemon_public_key(Path(workdir) / "chat.db")
            assert daemon.process is not None
            for name in ["talker", *listeners, *dead, *slow]:
                await register(host, port, name, PASSWORD, config=config)
            proxy = FaultProxy((host, port), seed=args.seed)
            proxy_host, proxy_port = await nursery.start(proxy.run)
            run = Run(daemon.process.pid)
            run.dead = set(dead)
            async with trio.open_nursery() as room:

                async def join(
                    name: str,
                    through_proxy: bool,
                    measure: bool,
                    watch: bool = False,
                    *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                ) -> None:
                    to_host, to_port = (proxy_host, proxy_port) if through_proxy else (host, port)
                    async with connect(to_host, to_port, name, PASSWORD, config=config) as chat:
                        task_status.started()
                        await run.listen(chat, measure, watch)

                for n, name in enumerate(listeners):
                    await room.start(join, name, False, True, n == 0)
                for name in slow:
                    await room.start(join, name, True, False)
                dying = trio.Event()
                for name in dead:
                    await room.start(ghost, host, port, server_key, name, dying)
                async with connect(host, port, "talker", PASSWORD, config=config) as talker:
                    room.start_soon(talk, talker, args.rate)
                    run.begin("baseline")
                    await trio.sleep(args.phase)
                    run.begin("dead+slow")
                    run.dead_since = time.monotonic()
                    dying.set()  # from now on the ghosts acknowledge nothing
                    weather = Weather(loss=0.3, delay=args.slow_delay, jitter=args.slow_delay)
                    for client in proxy.clients:  # the slow peers' inbound path worsens
                        proxy.overrides[client] = (Weather(), weather)
                    with trio.move_on_after(args.give_up):
                        await run.all_dropped.wait()
                    run.begin("after")
                    await trio.sleep(args.phase)
                    run.begin("")
                    room.cancel_scope.cancel()
            await daemon.stop()
            nursery.cancel_scope.cancel()
    print(
        f"{args.listeners} healthy listeners, {args.dead} dead and {args.slow} slow peers "
        f"(slow: 30% lost, {1000 * args.slow_delay:.0f} ms + up to {1000 * args.slow_delay:.0f} "
        f"ms delay), {args.rate:.0f} messages/s"
    )
    for phase in run.phases:
        print("  " + phase.summary())
    for name in dead:
        when = run.dropped.get(name)
        shown = f"after {when[0]:.1f} s ({when[1]})" if when else "not within the run"
        print(f"  {name} dropped by the daemon {shown}")
    if run.slow_latencies:
        ms = sorted(1000 * latency for latency in run.slow_latencies)
        print(
            f"  the slow peers' own deliveries: p50 {ms[len(ms) // 2]:.0f} ms, "
            f"max {ms[-1]:.0f} ms, {len(ms)} in all"
        )
    for name in slow:
        when = run.dropped.get(name)
        shown = f"dropped after {when[0]:.1f} s ({when[1]})" if when else "kept"
        print(f"  {name} {shown}")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listeners", type=int, default=10)
    parser.add_argument("--dead", type=int, default=5)
    parser.add_argument("--slow", type=int, default=2)
    parser.add_argument("--slow-delay", type=float, default=0.2)
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second")
    parser.add_argument("--phase", type=float, default=10.0, help="baseline and after (s)")
    parser.add_argument("--give-up", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args()


if __name__ == "__main__":
    private_client_data()
    trio.run(main, parse_arguments())
    sys.exit(0)
