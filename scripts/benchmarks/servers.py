"""The servers under test as subprocesses: started fresh, probed, measured from /proc."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from trio_chat import wire
from trio_chat.auth import hash_password
from trio_chat.engine import iso_time
from trio_chat.records import Account
from trio_chat.rules import name_key
from trio_chat.store import SqliteStore

from .config import HOST, PASSWORD, SEED, BenchError, Context, Target

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process `pid` so far, every thread included."""
    # utime and stime are fields 14 and 15 of the whole line; 12 and 13 after the name.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / _CLOCK_TICKS, int(fields[12]) / _CLOCK_TICKS


def progress(line: str) -> None:
    """A progress line on standard error (standard output is for the table)."""
    print(f"  {line}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """A server subprocess: its port, CPU time and memory, read from /proc."""

    def __init__(self, kind: str, command: list[str], port: int, log: Path) -> None:
        self.kind = kind
        self.port = port
        self.log = log
        self.key = b""
        self.command = command
        self._start()

    def _start(self) -> None:
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(self.command, stdout=sink, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def restart(self) -> None:
        """Stop the server (SIGTERM) and start it again on the same port and database."""
        self.stop()
        self._start()

    @property
    def target(self) -> Target:
        return Target(self.kind, self.port, key=self.key)

    def _wait_ready(self) -> None:
        """Ask until the server answers: trio-chat for its key, the seed for an account
        that does not exist."""
        probe = b"2 nobody x" if self.kind == SEED else wire.key_request_datagram()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.1)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    output = self.log.read_text(errors="replace").strip()
                    raise BenchError(f"{self.kind} exited at start: {output[-500:]}")
                sock.sendto(probe, (HOST, self.port))
                try:
                    answer = sock.recvfrom(2048)[0]
                except (TimeoutError, OSError):
                    continue
                if self.kind != SEED:
                    key = wire.parse_datagram_untrusted(answer)
                    assert isinstance(key, wire.Key)
                    self.key = key.public_key
                return
        raise BenchError(f"{self.kind} did not answer on port {self.port}")

    def cpu_seconds(self) -> float:
        user, system = self.cpu_split()
        return user + system

    def cpu_split(self) -> tuple[float, float]:
        """User and system CPU seconds, every thread included."""
        return cpu_split(self.proc.pid)

    def memory_mb(self) -> tuple[float, float]:
        """Resident memory now and at its peak, in MiB."""
        values: dict[str, float] = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024
        return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _create_accounts(database: Path, names: Sequence[str]) -> None:
    """Create the accounts in the database before the daemon starts (no hashing per account)."""
    password_hash = hash_password(PASSWORD)
    created = iso_time(time.time())
    store = SqliteStore.open(database)
    try:
        accounts = [
            Account(
                id=i, name=name, key=name_key(name), password_hash=password_hash, created=created
            )
            for i, name in enumerate(names, start=1)
        ]
        for start in range(0, len(accounts), 5000):
            if store.write(accounts[start : start + 5000]):
                raise BenchError("could not create the benchmark accounts")
    finally:
        store.close()


def _trio_chat_command(ctx: Context, label: str, port: int, database: Path) -> list[str]:
    command = [sys.executable]
    if ctx.profile is not None:
        output = ctx.profile.with_name(f"{ctx.profile.name}-{label}.prof")
        ctx.profiles.append(output)
        command += ["-m", "cProfile", "-o", str(output)]
    command += ["-m", "trio_chat", "serve", "--host", HOST, "--port", str(port)]
    command += ["--db", str(database), "--log-level", "warning"]
    # Limits far above what the workloads need, so they measure speed, not policy.
    for option in (
        "--message-rate",
        "--message-burst",
        "--register-rate",
        "--register-burst",
        "--sessions-per-address",
        "--sessions-per-account",
        "--checks-per-address",
        "--register-rate-total",
        "--login-free-failures",
        "--handshake-rate",
        "--handshake-burst",
    ):
        command += [option, "1000000"]
    return command


@contextmanager
def running(ctx: Context, kind: str, label: str, accounts: Sequence[str]) -> Iterator[Server]:
    """One server for one workload, stopped (and its database removed) afterwards."""
    port = free_port()
    log = ctx.workdir / f"{kind}-{label}.log"
    if kind == SEED:
        command = [sys.executable, str(ctx.baseline), str(port)]
    else:
        database = ctx.workdir / f"{label}.db"
        _create_accounts(database, accounts)
        command = _trio_chat_command(ctx, label, port, database)
    server = Server(kind, command, port, log)
    progress(f"{kind} serving on port {port}, pid {server.proc.pid}")
    try:
        yield server
    finally:
        server.stop()
        for suffix in ("", "-wal", "-shm"):
            with suppress(FileNotFoundError):
                (ctx.workdir / f"{label}.db{suffix}").unlink()
