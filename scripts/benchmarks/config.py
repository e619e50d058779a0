"""What a run is made of: the sizes of the workloads, the server under test, the errors."""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trio_chat.client_protocol import ClientConfig

HOST = "127.0.0.1"
PASSWORD = "bench-password"
SEED, TRIO = "seed", "trio-chat"
WORKLOADS = ("fanout", "latency", "scale", "persistence", "loss")


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where the clients send: a server (or the fault proxy in front of it) of one kind."""

    kind: str
    port: int
    config: ClientConfig | None = None
    """trio-chat clients' settings (None: the client core's defaults)."""
    key: bytes = b""
    """trio-chat's public key, as the daemon shows it (the seed has none)."""


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
    idle_window: float = 65.0
    """Seconds the idle sessions' CPU is measured over: a whole keepalive interval of a
    client with no NAT on the way (60 s), so that every session pings in it once."""
    clock_skew: float = 0.0
    """Seconds by which the idle sessions' clocks disagree (each is off by a random
    amount up to this). Clients ping on whole seconds of their clock: 0 is clocks kept by
    NTP, and 1 or more spreads their keepalives evenly, as if no clock agreed."""
    persist_messages: int = 100_000
    """Durable messages the writer sends: ~2.5 s, long enough to be steady (20,000 took
    ~0.5 s, and runs minutes apart differed by a third)."""
    processes: int = 2
    """Processes the receivers (and the idle sessions, twice as many) are spread over."""
    loss: float = 0.2
    """Share of datagrams the fault proxy drops, each way, in the loss workload."""
    loss_receivers: int = 5
    loss_rate: float = 20.0
    """Messages per second the loss workload's sender says, one at a time."""
    loss_duration: float = 15.0
    loss_seed: int = 1
    """The fault proxy's random seed, the same for both servers."""


FULL = Settings()
QUICK = Settings(
    quiet=2.0, storm=100, sessions=300, idle_window=3.0, persist_messages=5000, loss_duration=5.0
)


@dataclass
class Context:
    """One run: where the seed server is, the sizes, a scratch folder, profiling."""

    baseline: Path
    settings: Settings
    workdir: Path
    profile: Path | None
    mp: Any = field(default_factory=lambda: multiprocessing.get_context("fork"))
    profiles: list[Path] = field(default_factory=list)
