"""Run `trio-chat` with its Python heap traced, and tell what grew between two moments.

    .venv/bin/python scripts/heap_watch.py --into DIR --every 300 -- serve --db chat.db
    .venv/bin/python scripts/heap_watch.py --compare DIR/heap-003.pickle DIR/heap-019.pickle

The first form runs the command as `trio-chat` would (the same process, so the daemon's
pid is this one's), with `tracemalloc` on from the moment the daemon listens (what it
holds by then is there from the start; traced, Python reads its modules and starts about
ten times slower) and a thread that writes a snapshot of what is allocated, and where,
every `--every` seconds: `DIR/heap-NNN.pickle`, and a line of `DIR/heap.tsv` (seconds
since the start, bytes traced, bytes `tracemalloc` itself holds: what the resident
memory owes to the tracing). The second prints the source lines whose allocations grew
most from one snapshot to another. `scripts/soak.py --heap DIR` runs its daemon this way
and prints that comparison over the run's second half.

Tracing costs the daemon CPU and memory (its own tables, in `heap.tsv`; and each snapshot,
built in the process, leaves the C allocator holding more: the resident memory steps up
at each, 40 MB at the first in a soak of 5,000 messages, then less): its figures are for
finding what grows in Python's heap, and the resident memory is to be compared between
two snapshots, not across them.
"""

from __future__ import annotations

import argparse
import logging
import runpy
import sys
import threading
import time
import tracemalloc
from pathlib import Path

FRAMES = 10
"""Frames kept of each allocation's stack."""

_LEFT_OUT = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, __file__),
)


def snapshot_path(folder: Path, index: int) -> Path:
    return folder / f"heap-{index:03d}.pickle"


def snapshots(folder: Path) -> list[Path]:
    """The snapshots written in `folder`, oldest first."""
    return sorted(folder.glob("heap-*.pickle"))


class _TraceOnceListening(logging.Filter):
    """Starts tracing when the daemon says it listens (the `listening` event)."""

    def __init__(self, tracing: threading.Event) -> None:
        super().__init__()
        self.tracing = tracing

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "event", None) == "listening" and not self.tracing.is_set():
            tracemalloc.start(FRAMES)
            self.tracing.set()
        return True


def _take(folder: Path, every: float, tracing: threading.Event) -> None:
    tracing.wait()
    began = time.monotonic()
    index = 0
    while True:
        time.sleep(every)
        taken = tracemalloc.take_snapshot().filter_traces(_LEFT_OUT)
        path = snapshot_path(folder, index)
        partial = path.with_suffix(".partial")
        taken.dump(str(partial))
        traced, _peak = tracemalloc.get_traced_memory()
        own = tracemalloc.get_tracemalloc_memory()
        with (folder / "heap.tsv").open("a") as table:
            table.write(f"{time.monotonic() - began:.0f}\t{traced}\t{own}\n")
        partial.rename(path)  # whole, or not there: the daemon may stop meanwhile
        index += 1


def run(folder: Path, every: float, command: list[str]) -> None:
    """Run `trio-chat command...` here, tracing the heap into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    tracing = threading.Event()
    logging.getLogger("trio_chat").addFilter(_TraceOnceListening(tracing))
    watch = threading.Thread(
        target=_take, args=(folder, every, tracing), daemon=True, name="heap-watch"
    )
    watch.start()
    sys.argv = ["trio-chat", *command]
    runpy.run_module("trio_chat", run_name="__main__", alter_sys=True)


def _where(frame: tracemalloc.Frame) -> str:
    """A frame's file, from its package's folder on (`trio_chat/engine/chat.py`)."""
    parts = Path(frame.filename).parts
    for root in ("trio_chat", "site-packages", "lib"):
        if root in parts[:-1]:
            last = len(parts) - 1 - parts[::-1].index(root)
            parts = parts[last + (root != "trio_chat") :]
            break
    return f"{'/'.join(parts)}:{frame.lineno}"


def compare(earlier: Path, later: Path, top: int = 15) -> list[str]:
    """What grew most from `earlier` to `later`, by the line that allocated it: a
    summary line (the heap traced at each), then one line each."""
    before = tracemalloc.Snapshot.load(str(earlier))
    after = tracemalloc.Snapshot.load(str(later))
    size = [sum(stat.size for stat in s.statistics("filename")) for s in (before, after)]
    lines = [
        f"Python heap traced: {size[0] / 2**20:.1f} MiB -> {size[1] / 2**20:.1f} MiB "
        f"({(size[1] - size[0]) / 2**10:+.0f} KiB); grew most, by the line allocating:"
    ]
    grew = [stat for stat in after.compare_to(before, "lineno") if stat.size_diff > 0]
    for stat in grew[:top]:
        lines.append(
            f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+8d} blocks  "
            f"{_where(stat.traceback[0])}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--into", type=Path, help="folder for the snapshots")
    parser.add_argument("--every", type=float, default=300.0, help="seconds between snapshots")
    parser.add_argument("--top", type=int, default=15, help="lines to show with --compare")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("EARLIER", "LATER"))
    parser.add_argument("command", nargs="*", help="trio-chat's arguments, after --")
    args = parser.parse_args()
    if args.compare:
        earlier, later = args.compare
        print("\n".join(compare(earlier, later, top=args.top)))
    elif args.into is None or not args.command:
        parser.error("give --into DIR and trio-chat's arguments after --, or --compare A B")
    else:
        run(args.into, args.every, args.command)


if __name__ == "__main__":
    main()
