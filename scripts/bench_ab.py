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

Exit status: 1 if a run failed, 2 for a revision git does not know or a seed server
that is not there, 3 if git could not make the worktree, 130 if interrupted (Ctrl-C or
SIGTERM: the run under way is stopped with its servers, and the worktree removed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT.parent / "shared" / "baseline" / "seed_server.py"
"""Where bench.py looks for the seed server by default, from this tree."""
TRIO_COLUMN = 3
"""trio-chat's figure in a row of bench.py's table (workload, metric, seed, trio-chat, ...)."""
STOP_WAIT = 30.0
"""Seconds an interrupted bench.py has to stop its servers and workers before it is killed."""

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
    """The median of figures, written as they are; a figure that is not a number stands
    if every run gave it, and `n/a` if the runs differ."""
    numbers = [n for n in map(number, figures) if n is not None]
    if not figures or len(numbers) < len(figures):
        return figures[0] if figures and len(set(figures)) == 1 else "n/a"
    decimals = max(len(figure.removesuffix("%").partition(".")[2]) for figure in figures)
    grouping = "," if any("," in figure for figure in figures) else ""
    percent = "%" if figures[0].endswith("%") else ""
    return f"{statistics.median(numbers):{grouping}.{decimals}f}{percent}"


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
    )


def commit_of(rev: str) -> str:
    """The commit `rev` names, shortened; AbError if git does not know it."""
    found = git("rev-parse", "--verify", "--quiet", "--short", f"{rev}^{{commit}}")
    if found.returncode != 0:
        raise AbError(f"Cannot check out {rev!r}: give a commit, branch or tag git knows.", 2)
    return found.stdout.strip()


def this_tree() -> str:
    """This tree's commit, and whether it has changes not committed."""
    changed = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return commit_of("HEAD") + (", with changes not committed" if changed else "")


def add_worktree(commit: str, where: Path) -> None:
    made = git("worktree", "add", "--detach", str(where), commit)
    if made.returncode != 0:
        last = (made.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise AbError(f"git could not check {commit} out into {where}: {last}", 3)


def remove_worktree(where: Path) -> None:
    """The worktree gone, and git's record of it with it, whatever state it is in."""
    removed = git("worktree", "remove", "--force", str(where))
    if removed.returncode != 0 and where.exists():
        print(f"could not remove the worktree {where}; remove it by hand", file=sys.stderr)
    git("worktree", "prune")


def run_bench(tree: Path, options: Sequence[str]) -> Figures:
    """One bench.py run of `tree` (its own script and package); its figures.

    bench.py runs in a process group of its own, so that when this one is interrupted
    it is told once (SIGINT: it stops its servers and workers), then killed with all it
    started if it has not stopped in `STOP_WAIT`.
    """
    env = dict(os.environ, PYTHONPATH=str(tree))
    command = [sys.executable, str(tree / "scripts" / "bench.py"), *options]
    with subprocess.Popen(
        command,
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_answer_interrupts,
    ) as process:
        try:
            stdout, stderr = process.communicate()
        except BaseException:
            _stop(process)
            raise
    if process.returncode != 0:
        last = (stderr.strip().splitlines() or ["(nothing on standard error)"])[-1]
        raise AbError(f"bench.py failed in {tree} (exit status {process.returncode}): {last}", 1)
    return parse_table(stdout)


def _answer_interrupts() -> None:
    """In bench.py's process, before it starts: SIGINT interrupts it, even if this one
    was started with SIGINT ignored (in the background, say)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop(process: subprocess.Popen[str]) -> None:
    for sig, wait in ((signal.SIGINT, STOP_WAIT), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.communicate(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGINT:
            # bench.py has stopped; anything of its group still there goes with it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        return


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


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def compare(rev: str, rounds: int, options: Sequence[str]) -> dict[str, list[Figures]]:
    """Every run of each side, taking turns; the worktree removed however it ends."""
    commits = {rev: commit_of(rev), "this tree": this_tree()}
    runs: dict[str, list[Figures]] = {rev: [], "this tree": []}
    with tempfile.TemporaryDirectory(prefix="trio-chat-ab-") as scratch:
        other = Path(scratch) / "tree"
        try:
            add_worktree(commits[rev], other)
            sides = [(rev, other), ("this tree", ROOT)]
            for round_number in range(rounds):
                for name, tree in sides if round_number % 2 == 0 else sides[::-1]:
                    print(
                        f"round {round_number + 1}: {name} ({commits[name]}) ...", file=sys.stderr
                    )
                    runs[name].append(run_bench(tree, options))
        finally:
            remove_worktree(other)
    return runs


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
    if not args.baseline.is_file():
        print(
            f"The seed server {str(args.baseline)!r} does not exist; give it with --baseline.",
            file=sys.stderr,
        )
        return 2
    # trio-chat alone; bench.py still wants to know where the seed is, and a worktree in
    # a temporary folder has no `shared/` beside it.
    options = [*given[cut + 1 :], f"--baseline={args.baseline.resolve()}", "--skip-seed"]
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        runs = compare(args.rev, args.rounds, options)
    except AbError as error:
        print(error, file=sys.stderr)
        return error.status
    except KeyboardInterrupt:
        print(
            "Interrupted: the run under way was stopped and the worktree removed.", file=sys.stderr
        )
        return 130
    print(report(args.rev, runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
