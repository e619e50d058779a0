"""The table: one row per figure, the seed and trio-chat side by side, their ratio, the goal."""

from __future__ import annotations

import math
import os
import platform
import pstats
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import SEED, TRIO
from .workloads import Figures

Results = dict[str, dict[str, Figures | None]]
"""Figures by workload, then by server kind (None: the workload does not apply)."""


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
    Row("latency", "p50 ms", "p50", "{:.2f}", "< 1 ms"),
    Row("latency", "p99 ms", "p99", "{:.2f}", "< 5 ms"),
    Row("latency", "delivered share", "share", "{:.2%}"),
    Row("latency", "server CPU s", "server_cpu", "{:.2f}"),
    Row("latency", "clients CPU s", "client_cpu", "{:.2f}"),
    Row("isolation", "p99 ms during logins", "storm_p99", "{:.2f}", source="latency"),
    Row("isolation", "p99 storm / quiet", "storm_ratio", "{:.2f}", "<= 1.50", source="latency"),
    Row("isolation", "logins answered", "storm_answered", "{:.0f}", source="latency"),
    Row("isolation", "storm lasted s", "storm_time", "{:.2f}", source="latency"),
    Row("scale", "sessions", "sessions", "{:.0f}"),
    Row("scale", "sessions lost", "lost", "{:.0f}", "0", ratio=False),
    Row("scale", "time to log in s", "login_time", "{:.2f}"),
    Row("scale", "RSS MB", "rss", "{:.1f}", "< 150"),
    Row("scale", "peak RSS MB", "peak", "{:.1f}"),
    Row("scale", "idle CPU % of a core", "idle_cpu", "{:.2f}", "< 2"),
    Row("scale", "all back after a restart s", "back_after_ready", "{:.2f}", "< 30", ratio=False),
    Row("scale", "  counted from the stop s", "back_after_stop", "{:.2f}", ratio=False),
    Row("persistence", "durable msgs/s", "rate", "{:,.0f}", "31-45k (v1)"),
    Row("persistence", "server CPU s", "server_cpu", "{:.2f}"),
    Row("persistence", "writer CPU s", "client_cpu", "{:.2f}"),
    Row("loss", "datagrams dropped", "dropped", "{:.1%}", ratio=False),
    Row("loss", "delivered share", "share", "{:.2%}", "100%, once"),
    Row("loss", "duplicates / reordered", "dup_order", "{}", "0 / 0", ratio=False),
    Row("loss", "says acknowledged", "acked", "{:.2%}", "100%", ratio=False),
    Row("loss", "say to ack mean ms", "ack_mean", "{:.2f}", "<= 50 ms"),
    Row("loss", "say to ack p99 ms", "ack_p99", "{:.2f}", "<= 1000 ms"),
    Row("loss", "delivery mean ms", "delivery_mean", "{:.2f}", "<= 50 ms"),
    Row("loss", "delivery p99 ms", "delivery_p99", "{:.2f}", "<= 1000 ms"),
    Row("loss", "sessions lost", "lost", "{:.0f}", "0", ratio=False),
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


def render(results: Results) -> str:
    """The table, in Markdown, with a row for every figure of the workloads that ran."""
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


def fanout_ratio(results: Results) -> str | None:
    """The report's last line, when both servers ran the fan-out."""
    fan = results.get("fanout", {})
    seed, trio = fan.get(SEED), fan.get(TRIO)
    if not seed or not trio or seed["rate"] <= 0:
        return None
    return f"fanout ratio vs seed: {trio['rate'] / seed['rate']:.2f}"


def describe_machine() -> str:
    return (
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def show_profiles(paths: Sequence[Path]) -> None:
    for path in paths:
        if path.exists():
            print(f"\n--- {path.name}: the daemon's 25 costliest functions (own time) ---")
            stats = pstats.Stats(str(path), stream=sys.stdout)
            stats.sort_stats("tottime").print_stats(25)
