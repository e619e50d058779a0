#!/usr/bin/env python3
"""Another commit against this tree, by `scripts/bench.py` runs that take turns.

    .venv/bin/python scripts/bench_ab.py REV [--rounds 3] [--baseline SEED] -- [options]

The machines this runs on are shared and noisy: a change is judged by runs of the code
before and after that alternate within the same minutes, not by one run against a
figure from another hour. This checks `REV` out into a temporary worktree and runs
each side's own `scripts/bench.py` (the instrument as of that commit) with the options
after `--`, this tree as it is (changes not yet committed included). The two sides take
turns, each round starting with the side the last one ended with. It prints, for every
figure of trio-chat's column, the runs of each side and their medians. trio-chat runs
alone (`--skip-seed`): the seed is the same on both sides, though bench.py wants its
path (`--baseline`, as bench.py's).
Exit status 1 if a run failed, 2 if `REV` cannot be checked out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "baseline" / "seed_server.py"
"""Where bench.py looks for the seed server by default, from this tree."""
TRIO_COLUMN = 3
"""trio-chat's figure in a row of bench.py's table (workload, metric, seed, trio-chat, ...)."""

Figures = dict[tuple[str, str], str]


class AbError(Exception):
    """What stops the comparison, as one sentence for the person running it."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def parse_table(output: str) -> Figures:
    """trio-chat's figures in bench.py's table, by (workload, metric)."""
    figures: Figures = {}
    for line in output.splitlines():
        if not line.startswith("|") or line.startswith("|--"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) > TRIO_COLUMN and cells[:2] != ["workload", "metric"]:
            figures[(cells[0], cells[1])] = cells[TRIO_COLUMN]
    return figures


def number(figure: str) -> float | None:
    """A figure as a number (`114,620`, `2.43`, `100.00%`), or None (`0 / 0`, `n/a`)."""
    try:
        return float(figure.replace(",", "").removesuffix("%"))
    except ValueError:
        return None


def median(figures: Sequence[str]) -> str:
    """The median of figures that are numbers, written as they are; else the last one."""
    numbers = [n for n in map(number, figures) if n is not None]
    if len(numbers) < len(figures) or not numbers:
        return figures[-1] if figures else ""
    first = figures[0].removesuffix("%")
    decimals = len(first.partition(".")[2])
    grouping = "," if any("," in figure for figure in figures) else ""
    percent = "%" if figures[0].endswith("%") else ""
    return f"{statistics.median(numbers):{grouping}.{decimals}f}{percent}"


def run_bench(tree: Path, options: Sequence[str]) -> Figures:
    """One bench.py run of `tree` (its own script and package); its figures."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    result = subprocess.run(
        [sys.executable, str(tree / "scripts" / "bench.py"), *options],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(nothing on standard error)"])[-1]
        raise AbError(f"bench.py failed in {tree} (exit status {result.returncode}): {last}", 1)
    return parse_table(result.stdout)


def worktree(rev: str, where: Path) -> None:
    """`rev` checked out at `where`, detached; AbError if git does not know it."""
    result = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise AbError(f"Cannot check out {rev!r}: give a commit, branch or tag git knows.", 2)


def report(rev: str, runs: dict[str, list[Figures]]) -> str:
    """The figures side by side: each side's runs, in order, then the medians."""
    keys = list(dict.fromkeys(key for side in runs.values() for run in side for key in run))
    header = ("workload", "metric", f"{rev} runs", "this tree's runs", rev, "this tree")
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for key in keys:
        theirs = [run.get(key, "") for run in runs[rev]]
        ours = [run.get(key, "") for run in runs["this tree"]]
        lines.append(
            " | ".join((*key, "; ".join(theirs), "; ".join(ours), median(theirs), median(ours)))
        )
    return "\n".join(f"| {line} |" for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="Options after -- go to bench.py."
    )
    parser.add_argument("rev", help="the commit to compare this tree with (HEAD~1, a tag...)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each side (3)")
    parser.add_argument(
        "--baseline", type=Path, default=SEED, help="the seed server, which bench.py asks for"
    )
    given = list(sys.argv[1:] if argv is None else argv)
    cut = given.index("--") if "--" in given else len(given)
    args = parser.parse_args(given[:cut])
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    options = given[cut + 1 :]
    # trio-chat alone; bench.py still wants to know where the seed is, and a worktree
    # in a temporary folder has no `shared/` beside it.
    options += [f"--baseline={args.baseline.resolve()}", "--skip-seed"]
    runs: dict[str, list[Figures]] = {args.rev: [], "this tree": []}
    try:
        with tempfile.TemporaryDirectory(prefix="trio-chat-ab-") as scratch:
            other = Path(scratch) / "tree"
            worktree(args.rev, other)
            try:
                sides = [(args.rev, other), ("this tree", ROOT)]
                for round_number in range(args.rounds):
                    for name, tree in sides if round_number % 2 == 0 else sides[::-1]:
                        print(f"round {round_number + 1}: {name} ...", file=sys.stderr)
                        runs[name].append(run_bench(tree, options))
            finally:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)],
                    capture_output=True,
                    check=False,
                )
    except AbError as error:
        print(error, file=sys.stderr)
        return error.status
    print(report(args.rev, runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
