"""The suite's timeout (`timeout` in pyproject.toml, pytest-timeout): a test that never
ends fails, and the tests after it run as usual."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

STUCK = """
import pytest
import trio


@pytest.mark.timeout(1)
async def test_waits_for_good():
    await trio.sleep_forever()


@pytest.mark.timeout(1)
async def test_never_yields():
    while True:
        pass


async def test_a_trio_test_after_them():
    await trio.sleep(0)


def test_a_plain_test_after_them():
    pass
"""


def run_suite(test: Path, text: str, signum: signal.Signals, disposition: signal.Handlers) -> str:
    """Run `text` as the test file `test`, beside the suite's hooks, in a pytest of its own
    started with `signum` set to `disposition` (which is kept across exec); its report."""
    (test.parent / "conftest.py").write_text("from tests.conftest import *  # the suite's hooks\n")
    test.write_text(textwrap.dedent(text))
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore", "-rA"],
        cwd=test.parent,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: signal.signal(signum, disposition),
    )
    return run.stdout


@pytest.mark.parametrize("ctrl_c", ["taken", "ignored"])
def test_a_trio_test_past_its_timeout_fails_alone_and_the_next_ones_run(
    tmp_path: Path, ctrl_c: str
) -> None:
    # pytest-timeout's own way raises inside Trio's scheduler, which then never ends its
    # run: every later Trio test failed with "Attempted to call run() from inside a run()".
    # A run started in the background (`command &`) ignores Ctrl-C: the same holds there.
    disposition = signal.SIG_IGN if ctrl_c == "ignored" else signal.SIG_DFL
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    out = run_suite(tmp_path / "test_stuck.py", STUCK, signal.SIGINT, disposition)
    assert "FAILED test_stuck.py::test_waits_for_good - Failed: Timeout (>1.0s)" in out, out
    assert "FAILED test_stuck.py::test_never_yields - Failed: Timeout (>1.0s)" in out, out
    assert "PASSED test_stuck.py::test_a_trio_test_after_them" in out, out
    assert "PASSED test_stuck.py::test_a_plain_test_after_them" in out, out


HANGUP = """
import signal
import subprocess
import sys

from trio_chat.stop_signals import stop_signals


def test_a_hangup_is_taken_as_from_a_terminal():
    assert signal.SIGHUP in stop_signals()
    child = "import signal; print(signal.getsignal(signal.SIGHUP) is signal.SIG_DFL)"
    started = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    assert started.stdout == "True\\n"
"""


def test_a_run_started_with_sighup_ignored_still_tests_what_a_hangup_does(
    tmp_path: Path,
) -> None:
    # `nohup pytest &` ignores SIGHUP, and every daemon, chat and window the tests started
    # kept ignoring it, by design: the tests of what they do when their terminal closes
    # failed there (the window's own test of it first).
    out = run_suite(tmp_path / "test_hangup.py", HANGUP, signal.SIGHUP, signal.SIG_IGN)
    assert "PASSED test_hangup.py::test_a_hangup_is_taken_as_from_a_terminal" in out, out
