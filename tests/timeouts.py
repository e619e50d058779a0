"""A test that runs past its timeout (pytest-timeout) inside Trio is stopped the way Trio
stops: by its own Ctrl-C, which unwinds the run, then failed as timed out.

pytest-timeout's own way raises its failure wherever SIGALRM lands, often in Trio's
scheduler: that run never ends cleanly, and every later Trio test in the process fails
with "Attempted to call run() from inside a run()". Outside Trio (a test of plain code,
or the window's event loop between Trio's ticks), pytest-timeout's way is kept.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Generator
from types import FrameType
from typing import Any

import pytest
import pytest_timeout  # type: ignore[import-untyped]
import trio

TIMED_OUT = pytest.StashKey[float]()
"""The timeout a test ran past, once Trio was asked to stop it."""
UNWIND_GRACE = 10.0
"""Seconds a Trio run has to unwind after its Ctrl-C before pytest-timeout's own way is
taken after all (a task that ignores cancellation)."""


def _trio_stops_it() -> bool:
    """A Trio run is under way in this thread, with its own Ctrl-C handler installed."""
    return trio.lowlevel.in_trio_run() and (
        signal.getsignal(signal.SIGINT)
        not in (signal.default_int_handler, signal.SIG_IGN, signal.SIG_DFL)
    )


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    if settings.method != "signal" or threading.current_thread() is not threading.main_thread():
        return None  # pytest-timeout's own

    def fallback(signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True
        pytest_timeout.timeout_sigalrm(item, settings)

    def expired(signum: int, frame: FrameType | None) -> None:
        __tracebackhide__ = True
        if not _trio_stops_it():
            pytest_timeout.timeout_sigalrm(item, settings)
            return
        item.stash[TIMED_OUT] = settings.timeout
        signal.signal(signal.SIGALRM, fallback)
        signal.setitimer(signal.ITIMER_REAL, UNWIND_GRACE)
        signal.raise_signal(signal.SIGINT)

    # A run started in the background ignores Ctrl-C, and Trio then installs no handler of
    # its own: for the test's time, Ctrl-C is Python's, so that Trio takes it over.
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def cancel() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # what pytest-timeout calls
    signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    return True


def _interrupted(error: BaseException) -> bool:
    if isinstance(error, KeyboardInterrupt):
        return True
    if isinstance(error, BaseExceptionGroup):
        return any(_interrupted(inner) for inner in error.exceptions)
    return False


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    try:
        return (yield)
    except BaseException as error:
        timeout = pyfuncitem.stash.get(TIMED_OUT, None)
        if timeout is None or not _interrupted(error):
            raise
        pytest.fail(pytest_timeout.PYTEST_FAILURE_MESSAGE % timeout)
