#!/usr/bin/env python3
"""trio-chat against the seed server it grew out of, side by side, in one run.

    .venv/bin/python scripts/bench.py --baseline ../shared/baseline/seed_server.py [--quick]

Both servers run as subprocesses on free ports of 127.0.0.1 (trio-chat on a fresh
temporary database, with limits raised so they do not shape the results), one at a time,
and the same workloads drive each:

- fanout: 50 receivers, one sender, 2000 public messages in closed-loop batches of 5
  (the next batch leaves once every receiver has the previous one);
- latency: 50 receivers, 2000 messages per second offered; send-to-receipt times;
- isolation: the latency stream again, while 200 logins arrive at once;
- scale: 10,000 idle sessions kept alive: login time, memory, idle CPU;
- persistence: messages per second acknowledged only once on disk (trio-chat only);
- loss: 20 messages per second for 15 s to 5 receivers through a seeded fault proxy
  dropping 20% of datagrams each way: say-to-ack and delivery times, delivered share.

The clients are raw non-blocking sockets spread over processes: seed clients speak its
space-separated commands, trio-chat clients are the project's client core
(`ClientConnection`) on a socket. The result is one table of absolute figures with the
ratio trio-chat/seed, then `fanout ratio vs seed: X.XX`. The code is in `benchmarks/`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _use_project_environment() -> None:
    """Run under the project's virtualenv when started by another interpreter."""
    try:
        import trio_chat  # noqa: F401
    except ImportError:
        venv_python = ROOT / ".venv" / "bin" / "python"
        if venv_python.exists() and Path(sys.executable) != venv_python:
            os.execv(venv_python, [str(venv_python), __file__, *sys.argv[1:]])
        sys.exit("trio-chat is not installed; run the README's setup first.")


def _main() -> int:
    _use_project_environment()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchmarks.cli import main

    return main()


if __name__ == "__main__":
    sys.exit(_main())
