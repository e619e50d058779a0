"""A run started with SIGHUP ignored (`nohup pytest &`) still tests what trio-chat does
when its terminal closes.

Ignored, SIGHUP stays ignored in every program the tests start, and `stop_signals()`
leaves it out by design (`nohup trio-chat serve &` goes on when the terminal closes): the
tests of a daemon, a chat or the window leaving at SIGHUP then failed. So the run takes
SIGHUP with a handler of its own that does nothing: the run still goes on when its
terminal closes, as `nohup` meant, while a handled signal, unlike an ignored one, is back
to its default in each program started (exec) and counts as not ignored in this one.
"""

from __future__ import annotations

import signal
from types import FrameType


def _go_on(signum: int, frame: FrameType | None) -> None:
    """The run's terminal closed: the run goes on (the tests that send SIGHUP to this
    process install their own handler first)."""


def pytest_configure() -> None:
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _go_on)
