"""The quick attack scripts, run as a person runs them, against a daemon of their own.

The long ones (the login flood, the lockout, name probing, memory pinning) are measured
by hand; docs/reliability.md has their figures and commands.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def run(script: str, *arguments: str) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


def test_look_alike_names_are_all_refused_with_a_reason() -> None:
    status, output = run("attack_lookalike_names.py")
    assert status == 0, output
    assert "could be mistaken for 'alice'" in output
    assert "U+3164 HANGUL FILLER, which is invisible" in output
    assert "-> ok: alicia" in output


def test_guesses_sent_at_once_are_checked_no_faster_than_the_allowance() -> None:
    status, output = run("attack_pipelined_guesses.py", "--guesses", "48", "--seconds", "3")
    assert status == 0, output
    checked = re.search(r"checked: (\d+) of 48", output)
    assert checked is not None, output
    assert 3 <= int(checked.group(1)) <= 5  # 3 at once, then after 1 s and 3 s


def test_sessions_per_account_and_address_are_capped_and_a_move_onto_a_full_address_ends() -> None:
    status, output = run("attack_sessions.py")
    assert status == 0, output
    assert "8 welcomed" in output and "channels from one address: 20 opened" in output
    assert "ended: too_many_sessions" in output


def test_guesses_through_a_session_are_checked_no_faster_than_a_logins() -> None:
    status, output = run("attack_session_guesses.py", "--guesses", "48", "--seconds", "3")
    assert status == 0, output
    checked = re.search(r"checked: (\d+) of 48", output)
    assert checked is not None, output
    assert 3 <= int(checked.group(1)) <= 5  # 3 at once, then after 1 s and 3 s
    assert "alice's own password afterwards: welcome" in output


def test_no_secret_is_left_where_it_can_be_read() -> None:
    """The log, the answers, the operator's command, the files and the reprs, after a
    password changed from a session and another set by the operator."""
    status, output = run("attack_secrets.py")
    assert status == 0, output
    assert "the operator's `accounts password`: exit 0" in output
    assert "PROBLEM" not in output and output.count("no secret") >= 20


def test_the_soak_run_samples_the_daemon_and_reports_its_growth(tmp_path: Path) -> None:
    """The soak script at its smallest: a few seconds of churn, its table and its summary,
    the daemon's Python heap traced (`heap_watch.py`, from the moment it listens) and what
    grew in it said."""
    heap = tmp_path / "heap"
    status, output = run(
        "soak.py",
        "--minutes",
        "0.1",
        "--clients",
        "2",
        "--accounts",
        "4",
        "--prefill",
        "20",
        "--sample-every",
        "1",
        "--operator-every",
        "2",
        "--heap",
        str(heap),
        "--heap-every",
        "0.5",
    )
    assert status == 0, output
    assert "room filled with 20 messages" in output
    header = output.index("rss_kib   fds threads   cpu_s")
    rows = re.findall(r"^ +\d+\.\d +(\d+) +(\d+) +(\d+) ", output[header:], re.MULTILINE)
    assert len(rows) >= 4, output
    assert all(int(rss) > 1000 and int(fds) > 3 and int(threads) >= 1 for rss, fds, threads in rows)
    assert "growth per hour over the second half:" in output
    assert re.search(r"rss_kib: \d+ -> \d+, [+-]\d+\.\d an hour", output), output
    welcomed = re.search(r"api welcome: (\d+)", output)
    assert welcomed is not None and int(welcomed.group(1)) >= 1, output
    taken = sorted(heap.glob("heap-*.pickle"))
    assert len(taken) >= 2, output  # as many as a loaded machine let it take
    first = taken[len(taken) // 2] if len(taken) >= 4 else taken[0]
    assert f"the daemon's heap from {first.name} to {taken[-1].name}:" in output
    said = re.search(r"Python heap traced: (\d+\.\d) MiB -> (\d+\.\d) MiB", output)
    assert said is not None and float(said.group(2)) > 0, output
    grew = re.findall(r"^ +\+\d+\.\d KiB +[+-]\d+ blocks  \S+:\d+$", output, re.MULTILINE)
    assert grew, output
    rows = (heap / "heap.tsv").read_text().splitlines()
    assert len(rows) >= len(taken) and all(int(row.split("\t")[1]) > 0 for row in rows)
