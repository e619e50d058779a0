"""The command line of `scripts/bench.py`: options, the run, the table, the exit status.

Exit status 0 after the table, 1 if a workload could not finish, 2 for bad options.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from .config import FULL, QUICK, SEED, TRIO, WORKLOADS, BenchError, Context, Settings
from .report import Results, describe_machine, fanout_ratio, render, show_profiles
from .workloads import RUNNERS

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTION = "trio-chat against the seed server it grew out of, side by side, in one run."
SIZES = (
    "receivers",
    "messages",
    "rate",
    "quiet",
    "storm",
    "sessions",
    "idle_window",
    "clock_skew",
    "persist_messages",
    "processes",
    "loss",
    "loss_receivers",
    "loss_rate",
    "loss_duration",
    "loss_seed",
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
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
    parser.add_argument(
        "--clock-skew",
        type=float,
        help="seconds the idle sessions' own clocks disagree by, at most",
    )
    parser.add_argument("--persist-messages", type=int, help="messages for persistence")
    parser.add_argument("--processes", type=int, help="client processes per role")
    parser.add_argument("--loss", type=float, help="share of datagrams dropped each way (loss)")
    parser.add_argument("--loss-receivers", type=int, help="receivers in the loss workload")
    parser.add_argument("--loss-rate", type=float, help="loss workload, messages per second")
    parser.add_argument("--loss-duration", type=float, help="loss workload, seconds of sending")
    parser.add_argument("--loss-seed", type=int, help="the fault proxy's random seed")
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
    overrides = {name: getattr(args, name) for name in SIZES if getattr(args, name) is not None}
    settings = dataclasses.replace(base, **overrides)
    if settings.receivers < 2:
        raise BenchError("--receivers must be at least 2 (one watches for the closed loop)")
    if settings.loss_receivers < 2:
        raise BenchError("--loss-receivers must be at least 2 (one is in the sender's process)")
    if not 0 <= settings.loss < 1:
        raise BenchError("--loss must be at least 0 and below 1")
    return settings


def _raise_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


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
    results: Results = {}
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
        if os.environ.get("BENCH_KEEP"):
            print(f"kept the servers' logs and databases in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - began
    if ctx.profiles:
        show_profiles(ctx.profiles)
    print(f"\ntrio-chat vs seed, {'quick' if args.quick else 'full'} run, {elapsed:.0f} s")
    print(f"machine: {describe_machine()}")
    print(render(results))
    last = fanout_ratio(results)
    if last is not None:
        print(last)
    return 0
