"""Client processes: one per role and job, forked, each steered over its own pipe."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection
from typing import Any

from .config import BenchError, Context, Target
from .roles import run_role


class Worker:
    """A client process and the pipe that steers it; what it reported, by kind."""

    def __init__(self, ctx: Context, role: str, target: Target, job: Any) -> None:
        self.role = role
        parent, child = ctx.mp.Pipe()
        self.conn: Connection[Any, Any] = parent
        self.proc = ctx.mp.Process(target=run_role, args=(role, target, job, child), daemon=True)
        self.proc.start()
        child.close()
        self.inbox: dict[str, Any] = {}

    def _read(self, timeout: float) -> bool:
        if not self.conn.poll(max(0.0, timeout)):
            return False
        try:
            kind, payload = self.conn.recv()
        except EOFError:
            raise BenchError(f"the {self.role} process ended unexpectedly") from None
        if kind == "error":
            raise BenchError(f"the {self.role} process failed:\n{payload}")
        self.inbox[kind] = payload
        return True

    def has(self, kind: str) -> bool:
        while kind not in self.inbox and self._read(0):
            pass
        return kind in self.inbox

    def expect(self, kind: str, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while kind not in self.inbox:
            if not self._read(deadline - time.monotonic()) and time.monotonic() >= deadline:
                raise BenchError(f"the {self.role} process did not report {kind!r} in time")
        return self.inbox[kind]

    def send(self, *message: Any) -> None:
        with suppress(OSError):
            self.conn.send(message)

    def close(self) -> None:
        self.proc.join(2)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(2)
        self.conn.close()


Spawn = Callable[[str, Target, Any], Worker]


@contextmanager
def workers(ctx: Context) -> Iterator[Spawn]:
    """`spawn(role, target, job)` starts a worker; all of them are ended on the way out."""
    started: list[Worker] = []

    def spawn(role: str, target: Target, job: Any) -> Worker:
        worker = Worker(ctx, role, target, job)
        started.append(worker)
        return worker

    try:
        yield spawn
    finally:
        for worker in started:
            worker.close()
