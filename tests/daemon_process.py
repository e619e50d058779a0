"""Run `trio-chat serve` as a separate process, for tests that kill or signal it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import trio

LISTENING = re.compile(rb"listening on (\S+):(\d+) ")


class DaemonProcess:
    """`python -m trio_chat serve` on 127.0.0.1; `port` is known once `start` returns."""

    def __init__(self, db: Path, *extra: str) -> None:
        self.db = db
        self.extra = extra
        self.port = 0
        self.process: trio.Process | None = None
        self.output = bytearray()

    async def start(self, port: int = 0) -> int:
        command = [sys.executable, "-m", "trio_chat", "serve", "--port", str(port)]
        command += ["--db", str(self.db), *self.extra]
        self.output = bytearray()
        process = await trio.lowlevel.open_process(command, stderr=-1)
        self.process = process
        assert process.stderr is not None
        while not (found := LISTENING.search(self.output)):
            chunk = await process.stderr.receive_some()
            if not chunk:
                raise AssertionError(f"the daemon did not start: {self.output.decode()}")
            self.output += chunk
        self.port = int(found.group(2))
        return self.port

    async def stop(self) -> int:
        """Wait for the process to end (after a signal); its exit status."""
        assert self.process is not None
        status = await self.process.wait()
        assert self.process.stderr is not None
        async for chunk in self.process.stderr:
            self.output += chunk
        return status

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    async def aclose(self) -> None:
        self.kill()
        if self.process is not None:
            await self.process.wait()
