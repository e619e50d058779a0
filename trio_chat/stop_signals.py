"""The signals that stop a command: Ctrl-C, SIGTERM, and SIGHUP unless it is ignored."""

from __future__ import annotations

import signal


def stop_signals() -> tuple[signal.Signals, ...]:
    """SIGINT and SIGTERM, and SIGHUP (the terminal closed) unless this process was
    started with it ignored: `nohup` ignores it so that a command goes on once the
    terminal closes, and taking it would stop the command all the same."""
    signals = (signal.SIGINT, signal.SIGTERM)
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        return signals
    return (*signals, signal.SIGHUP)
