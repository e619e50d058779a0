"""The workloads: each runs against one server (of either kind) and returns its figures."""

from __future__ import annotations

import array
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from trio_chat.client_protocol import ClientConfig

from .config import SEED, TRIO, Context, Target
from .roles import IdleJob, PersistJob, ProxyJob, ReceiverJob, SenderJob, StormJob
from .servers import Server, progress, running
from .workers import Worker, workers

Figures = dict[str, float]


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


def _until_complete(group: Sequence[Worker], grace: float) -> None:
    """Wait up to `grace` seconds for every receiver process to have every message."""
    until = time.monotonic() + grace
    while not all(w.has("complete") for w in group) and time.monotonic() < until:
        time.sleep(0.02)


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


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


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
        _until_complete(group, 2.0)
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


TIMELINE_STEP = 0.1
"""Seconds of the latency stream in each line of `BENCH_TIMELINE`'s output."""


def _print_timeline(
    kind: str, sent_at: Sequence[float], delays: Sequence[float], begin: float, end: float
) -> None:
    """The deliveries of the messages sent from half a second before the storm to its
    end, tenth of a second by tenth: whether a long tail is the storm's or one moment's."""
    bins: dict[int, list[float]] = {}
    for sent, delay in zip(sent_at, delays, strict=True):
        if begin - 0.5 <= sent < end:
            bins.setdefault(math.floor((sent - begin) / TIMELINE_STEP), []).append(delay)
    for number, found in sorted(bins.items()):
        p50, p99, most = (percentile(found, q) * 1000 for q in (0.5, 0.99, 1.0))
        print(
            f"  {kind} storm{number * TIMELINE_STEP:+5.1f}s: {len(found):6d} deliveries, "
            f"p50 {p50:6.2f} p99 {p99:7.2f} max {most:7.2f} ms",
            file=sys.stderr,
        )


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
        _until_complete(group, 1.0)
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
    if os.environ.get("BENCH_TIMELINE"):
        _print_timeline(kind, sent_at, delays, stormed["begin"], storm_end)
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
            spawn("idle", target, IdleJob(part, window, s.clock_skew))
            for part in _split(names, 2 * s.processes)
        ]
        _wait_all(group, "ready", 120)
        start = _go(group)
        done = _wait_all(group, "complete", 3600)
        login_time = max(done) - start
        progress(f"{len(names)} sessions logged in after {login_time:.1f} s; idle now")
        time.sleep(1.0)  # let the last logins' backlogs and acks settle
        cpu = server.cpu_seconds()
        split = server.cpu_split()
        began = time.monotonic()
        time.sleep(s.idle_window)
        idle_cpu = (server.cpu_seconds() - cpu) / (time.monotonic() - began)
        if os.environ.get("BENCH_DEBUG"):
            user, system = (b - a for a, b in zip(split, server.cpu_split(), strict=True))
            progress(f"idle: user {user:.2f} s, system {system:.2f} s")
        rss, peak = server.memory_mb()
        figures = {"login_time": login_time, "rss": rss, "peak": peak, "idle_cpu": idle_cpu * 100}
        if kind == TRIO:  # the seed keeps nothing to come back to
            figures |= _restart(server, group)
        for worker in group:
            worker.send("stop")
        results = _wait_all(group, "done", 60)
    figures["sessions"] = sum(r["logged_in"] for r in results)
    figures["lost"] = sum(r["lost"] for r in results)
    return figures


def _restart(server: Server, group: Sequence[Worker]) -> Figures:
    """Restart the daemon under its idle sessions; time until every one is back in."""
    for worker in group:
        worker.send("restart")
    _wait_all(group, "restarting", 60)  # what was lost before is counted first
    stopping = time.monotonic()
    server.restart()
    ready = time.monotonic()
    progress(f"restarted in {ready - stopping:.1f} s; waiting for every session to resume")
    back = max(_wait_all(group, "back", 600))
    return {"back_after_ready": back - ready, "back_after_stop": back - stopping}


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
        "client_cpu": result["cpu"],
    }


def loss(ctx: Context, kind: str) -> Figures:
    """A steady trickle of messages through a proxy that drops a share of datagrams.

    The seeded fault proxy (the same seed for both servers) drops `settings.loss` of
    the datagrams each way; one sender says `loss_rate` messages a second, one at a
    time, to `loss_receivers` receivers (one of them in the sender's process).
    """
    s = ctx.settings
    names = [f"r{i}" for i in range(s.loss_receivers)]
    job = SenderJob(
        "sender", names[-1], 0, 1, rate=s.loss_rate, duration=s.loss_duration, ack_wait=30.0
    )
    total = job.total
    with running(ctx, kind, "loss", [*names, "sender"]) as server, workers(ctx) as spawn:
        proxy = spawn("proxy", server.target, ProxyJob(s.loss, s.loss_seed))
        # A login gives up after `timeout` (5 s) without an answer: at 20% loss each
        # way, seven round trips in a row fail about once in 1,300 logins. Give it 15 s.
        config = ClientConfig(timeout=15.0)
        target = Target(kind, proxy.expect("ready", 30), config, key=server.target.key)
        group = [spawn("receivers", target, ReceiverJob(tuple(names[:-1]), total))]
        _wait_all(group, "ready", 120)
        sender = spawn("sender", target, job)
        sender.expect("ready", 60)
        _go([*group, sender])
        sent = sender.expect("done", s.loss_duration + job.ack_wait + 60)
        # trio-chat resends until every receiver has everything; the seed never resends.
        _until_complete(group, 1.0 if kind == SEED else 30.0)
        for worker in group:
            worker.send("stop")
        results = [*_wait_all(group, "done", 30), sent]
        proxy.send("stop")
        network = proxy.expect("done", 30)
    tallies = _tallies(results)
    _sent_at, delays = _samples(tallies)
    figures: Figures = {
        "share": sum(t["unique"] for t in tallies) / (total * s.loss_receivers),
        "duplicates": sum(t["duplicates"] for t in tallies),
        "reordered": sum(t["reordered"] for t in tallies),
        "delivery_mean": _mean(delays) * 1000,
        "delivery_p99": percentile(delays, 0.99) * 1000,
        "dropped": _dropped_share(network),
        "lost": sum(r["lost"] for r in results),
    }
    if sent["ack_delays"] is not None:
        acks = array.array("d")
        acks.frombytes(sent["ack_delays"])
        figures["acked"] = sent["acked"] / total
        figures["ack_mean"] = _mean(acks) * 1000
        figures["ack_p99"] = percentile(acks, 0.99) * 1000
    return figures


def _dropped_share(network: dict[str, Any]) -> float:
    """The share of datagrams the proxy dropped, both ways together."""
    ways = (network["to_server"], network["to_client"])
    datagrams = sum(way["datagrams"] for way in ways)
    return sum(way["dropped"] for way in ways) / datagrams if datagrams else math.nan


RUNNERS: dict[str, Callable[[Context, str], Figures]] = {
    "fanout": fanout,
    "latency": latency,
    "scale": scale,
    "persistence": persistence,
    "loss": loss,
}
