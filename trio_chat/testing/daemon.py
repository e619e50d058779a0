"""The real daemon as a child process (`python -m trio_chat serve`), for tests and scripts.

    async with trio.open_nursery() as nursery:
        daemon = DaemonProcess(nursery, tmp_path / "chat.db", "--message-rate", "100")
        host, port = await daemon.start()
        ...
        await daemon.kill()          # SIGKILL, no goodbye
        await daemon.start(port)     # the same port, the same database

Its standard error is collected in `output`; the bound address is read from the line
the daemon logs when ready (at level `info`, so the log level may not be above it).
`stop()` ends it politely (SIGTERM).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import trio

from ..client import register

CLI = [sys.executable, "-m", "trio_chat"]
"""The `trio-chat` command, run by this Python."""


def private_client_data() -> Path:
    """Give this process, and those it starts, a client data folder of its own (removed
    at exit): the `known_servers` for the daemons a script starts. Their keys are new on
    every run and their ports the system's pick, so in the user's own file they would
    pile up, and a port used again by a later run's daemon would read as a changed key."""
    folder = Path(tempfile.mkdtemp(prefix="trio-chat-client-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["XDG_DATA_HOME"] = str(folder)
    return folder


def cli_env(port: int, **extra: str) -> dict[str, str]:
    """The environment for a `trio-chat` subprocess talking to the daemon on `port`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIO_CHAT_")}
    env.update(TRIO_CHAT_HOST="127.0.0.1", TRIO_CHAT_PORT=str(port), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


LISTENING = re.compile(r"trio-chat is listening on \[?([^\]\s]+?)\]?:(\d+) ")


async def reap(process: trio.Process) -> None:
    """Wait for a child; if the nursery this runs in ends first (a test failed, a run was
    interrupted), kill it, so that no child ever outlives its test or script."""
    try:
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


class DaemonProcess:
    """One daemon at a time on a database; see the module docstring."""

    def __init__(
        self,
        nursery: trio.Nursery,
        database: Path,
        *options: str,
        log_level: str = "info",
        start_timeout: float = 20.0,
        program: Sequence[str] = CLI,
    ) -> None:
        """`program` is the command that stands for `trio-chat` (`serve` and the options
        follow it)."""
        self.nursery = nursery
        self.program = list(program)
        self.database = database
        self.options = options
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.output: list[str] = []
        self._more = trio.Event()
        self.process: trio.Process | None = None
        self.address: tuple[str, int] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(
        self, port: int = 0, *, accounts: Sequence[str] = (), password: str = ""
    ) -> tuple[str, int]:
        """Start the daemon and wait until it listens; return `(host, port)`. With
        `accounts`, each is registered, with `password`, once it listens."""
        assert not self.running, "the daemon is already running"
        command = [
            *self.program,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            str(self.database),
            "--log-level",
            self.log_level,
            *self.options,
        ]
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.process = process
        ready = trio.Event()
        found: list[tuple[str, int]] = []
        self.nursery.start_soon(reap, process)
        self.nursery.start_soon(self._read, process, ready, found)
        with trio.move_on_after(self.start_timeout):
            await ready.wait()
        if not found:
            await self.kill()
            tail = "".join(self.output[-20:])
            raise RuntimeError(f"the daemon did not start listening:\n{tail}")
        self.address = found[0]
        for name in accounts:
            await register(*found[0], name, password)
        return found[0]

    async def _read(
        self, process: trio.Process, ready: trio.Event, found: list[tuple[str, int]]
    ) -> None:
        assert process.stdout is not None
        pending = b""
        async for chunk in process.stdout:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace") + "\n"
                self.output.append(line)
                self._more.set()
                self._more = trio.Event()
                match = LISTENING.search(line)
                if match and not ready.is_set():
                    found.append((match.group(1), int(match.group(2))))
                    ready.set()
        if pending:
            self.output.append(pending.decode("utf-8", "replace"))
        ready.set()

    async def kill(self) -> int:
        """SIGKILL: the daemon gets no chance to flush or say goodbye."""
        return await self._end(signal.SIGKILL)

    async def stop(self) -> int:
        """SIGTERM: the daemon shuts down cleanly; return its exit status."""
        return await self._end(signal.SIGTERM)

    async def _end(self, signum: int) -> int:
        process = self.process
        assert process is not None
        if process.returncode is None:
            process.send_signal(signum)
        with trio.move_on_after(15):
            return await process.wait()
        process.kill()
        return await process.wait()

    @property
    def text(self) -> str:
        """Everything the daemon wrote so far."""
        return "".join(self.output)

    async def wait_for(self, text: str) -> str:
        """Wait until the daemon has written `text` (put a time limit around this); return
        the first line holding it."""
        while text not in self.text:
            await self._more.wait()
        return next(line for line in self.text.splitlines() if text in line)
