"""Helpers for the command-line tests: a daemon in a thread, a pausable relay, the CLI."""

from __future__ import annotations

import base64
import queue
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import trio

from trio_chat.engine import ServerConfig
from trio_chat.keys import daemon_public_key
from trio_chat.server import serve

PASSWORD = "correct horse"

# Tests register many accounts, and fail many logins, from one address: lift those limits
# (the others stay as they are by default).
TEST_CONFIG = ServerConfig(
    register_burst=10_000,
    register_rate=1000.0,
    register_burst_total=10_000,
    login_free_failures=10_000,
)


class Daemon(NamedTuple):
    """A daemon's address, and its public key (what `--server-key` takes, in base64)."""

    host: str
    port: int
    key: str


@contextmanager
def daemon_in_thread(database: Path, config: ServerConfig = TEST_CONFIG) -> Iterator[Daemon]:
    """Run the daemon on 127.0.0.1, port 0, in its own thread; yield its address and key."""
    ready: queue.Queue[Any] = queue.Queue()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(serve, "127.0.0.1", 0, database, config)
            ready.put((trio.lowlevel.current_trio_token(), nursery.cancel_scope, address))

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as error:
            ready.put(error)

    thread = threading.Thread(target=run, name="trio-chat daemon", daemon=True)
    thread.start()
    started = ready.get(timeout=30)
    if isinstance(started, BaseException):
        raise started
    token, scope, address = started
    try:
        key = base64.b64encode(daemon_public_key(database)).decode()
        yield Daemon(address[0], address[1], key)
    finally:
        trio.from_thread.run_sync(scope.cancel, trio_token=token)
        thread.join(timeout=30)
        assert not thread.is_alive(), "the daemon did not stop"


@contextmanager
def silent_port() -> Iterator[int]:
    """A UDP port where a socket is bound but nothing ever answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class Relay:
    """A UDP relay between one client and the daemon that a test can cut and restore.

    While cut, datagrams in both directions are dropped, as a broken network would.
    The daemon behind it can change (`target`), as after a restart on another port.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.cut = False
        self.port = 0
        self._client: Any = None
        self._outside = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._inside = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        with self._outside, self._inside:
            await self._outside.bind(("127.0.0.1", 0))
            await self._inside.bind(("127.0.0.1", 0))
            self.port = self._outside.getsockname()[1]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._client_to_daemon)
                nursery.start_soon(self._daemon_to_client)
                task_status.started(self.port)

    async def _client_to_daemon(self) -> None:
        while True:
            data, address = await self._outside.recvfrom(65536)
            self._client = address
            if not self.cut:
                await self._inside.sendto(data, self.target)

    async def _daemon_to_client(self) -> None:
        while True:
            data, _address = await self._inside.recvfrom(65536)
            if not self.cut and self._client is not None:
                await self._outside.sendto(data, self._client)


def ignore_hangups() -> None:
    """For `preexec_fn`: start a command as `nohup` does, with SIGHUP ignored."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
