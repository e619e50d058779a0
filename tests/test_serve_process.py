"""`trio-chat serve` as a process: it starts, says where, and stops cleanly on signals."""

from __future__ import annotations

import json
import logging
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from typer.testing import CliRunner

import trio_chat
from tests.cli_support import ignore_hangups
from trio_chat.cli import ExitCode, app
from trio_chat.cli import serve as serve_cli
from trio_chat.client import ClientConfig
from trio_chat.engine import ServerConfig
from trio_chat.logs import event
from trio_chat.server import serve
from trio_chat.store_files import StorageError
from trio_chat.testing.daemon import CLI, DaemonProcess

LISTENING = re.compile(rb"listening on (\S+):(\d+) ")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
async def test_a_signal_tells_sessions_drains_and_exits_zero(
    tmp_path: Path, signum: signal.Signals
) -> None:
    db = tmp_path / "chat.db"
    command = [sys.executable, "-m", "trio_chat", "serve", "--port", "0", "--db", str(db)]
    with trio.fail_after(30):
        process = await trio.lowlevel.open_process(command, stderr=-1)
        assert process.stderr is not None
        output = bytearray()
        while not (found := LISTENING.search(output)):
            chunk = await process.stderr.receive_some()
            assert chunk, output.decode()
            output += chunk
        port = int(found.group(2))
        try:
            await trio_chat.register("127.0.0.1", port, "alice", "correct horse")
            config = ClientConfig(timeout=2.0)
            async with trio_chat.connect(
                "127.0.0.1", port, "alice", "correct horse", config=config
            ) as alice:
                await alice.say("saved before the signal")
                process.send_signal(signum)
                async for event in alice.events():
                    if isinstance(event, trio_chat.Disconnected):
                        # A reason, shown inside a sentence: "Lost the connection (...)".
                        assert event.reason == "the daemon is stopping"
                        break
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        async for chunk in process.stderr:
            output += chunk
    assert f"Stopping ({signum.name})".encode() in output
    assert b"Traceback" not in output
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            host, port2 = await nursery.start(serve, "127.0.0.1", 0, db)
            async with trio_chat.connect(host, port2, "alice", "correct horse") as alice:
                history = None
                async for event in alice.events():
                    if isinstance(event, trio_chat.History):
                        history = event
                        break
                assert history is not None
                assert [m.text for m in history.messages] == ["saved before the signal"]
            nursery.cancel_scope.cancel()


def test_limits_that_make_no_sense_are_refused_before_the_daemon_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = [
        ("--summary-every", "0"),  # a summary line at every turn of the loop: a core busy
        ("--summary-every", "-1"),
        ("--idle-timeout", "0"),
        ("--idle-timeout", "-5"),
        ("--idle-timeout", "2"),  # clients could not ping three times in it
        # Not numbers a limit can be: a rate of inf refills by inf x 0 = nan, a timeout
        # of inf has no whole second to be checked on.
        ("--idle-timeout", "inf"),
        ("--message-rate", "inf"),
        ("--register-rate-total", "inf"),
        ("--login-delay", "inf"),
        ("--summary-every", "inf"),
        ("--message-rate", "-1"),
        ("--register-rate", "nan"),
        ("--message-rate", "nan"),
        ("--idle-timeout", "nan"),
        ("--summary-every", "nan"),
        ("--sessions-per-address", "-1"),
        # Limits under which no client could ever do what they limit: each would wait
        # for ever, or be told to try again later when later never comes.
        ("--message-burst", "0"),
        ("--message-rate", "0"),
        ("--register-burst", "0"),
        ("--checks-per-address", "0"),
        ("--handshake-burst", "0"),
        ("--handshake-rate", "0"),
        ("--handshake-rate", "inf"),
        ("--sessions-per-address", "0"),
        ("--sessions-per-account", "0"),
        # Counts and times below 0 no limit can be.
        ("--register-rate", "-1"),
        ("--register-rate", "inf"),
        ("--register-rate-total", "-1"),
        # Registrations at a rate of 0: the burst, then never one more.
        ("--register-rate", "0"),
        ("--register-rate-total", "0"),
        ("--login-free-failures", "-1"),
        ("--login-delay", "-1"),
        ("--notice-limit", "-1"),
    ]
    started: list[str] = []

    async def daemon(*_args: object, **_kwargs: object) -> None:
        started.append("the daemon")

    monkeypatch.setattr(serve_cli, "serve", daemon)
    for index, (option, value) in enumerate(cases):
        database = tmp_path / f"{index}.db"
        done = CliRunner().invoke(
            app, ["serve", "--port", "0", "--db", str(database), option, value]
        )
        assert done.exit_code == ExitCode.USAGE, (option, value, done.output)
        lines = done.output.splitlines()
        assert len(lines) == 1 and option in lines[0], (option, value, lines)
        assert not started and not database.exists(), (option, value)
    # As a process too: one sentence on standard error, no traceback, status 2.
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "trio_chat",
            "serve",
            "--port",
            "0",
            "--idle-timeout",
            "2",
            "--db",
            str(tmp_path / "process.db"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == ExitCode.USAGE, refused.stderr
    assert refused.stderr.splitlines() == ["--idle-timeout must be 3 seconds or more, not 2.0."], (
        refused.stderr
    )
    assert refused.stdout == ""


async def test_a_second_daemon_on_the_same_database_is_refused(tmp_path: Path) -> None:
    """Two daemons on one database would give the same account and message numbers to
    different things, each refusing the other's as a clash: the second is refused."""
    database = tmp_path / "chat.db"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            first = DaemonProcess(nursery, database)
            host, port = await first.start()
            second = await trio.run_process(
                [*CLI, "serve", "--port", "0", "--db", str(database)],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            assert second.returncode == ExitCode.DATABASE
            assert second.stderr.decode().splitlines() == [
                f"Cannot open the database {str(database)!r}: another trio-chat daemon (or a "
                "restore) is using it; stop that one first, or choose another with --db."
            ]
            # The first one is untouched: it registers and stores as before.
            await trio_chat.register(host, port, "alice", "correct horse")
            async with trio_chat.connect(host, port, "alice", "correct horse") as alice:
                await alice.say("still here")
            assert await first.stop() == 0
    assert "Traceback" not in first.text


def _take_away(database: Path, how: str) -> None:
    """Remove the database (and its log), or put another database in its place."""
    if how == "removed":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink()
    else:
        other = database.with_name("other.db")
        sqlite3.connect(other).close()
        other.replace(database)


@pytest.mark.parametrize("how", ["removed", "replaced"])
async def test_a_database_removed_or_replaced_under_the_daemon_is_not_written_in_vain(
    tmp_path: Path, how: str
) -> None:
    """What the daemon would store in a file no longer at its path is lost when it
    stops: it refuses to store it, and says why; and once stopped it exits with the
    database's status, saying what was not written, so that a supervisor knows too."""
    database = tmp_path / "chat.db"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, database)
            host, port = await daemon.start(accounts=["alice"], password="correct horse")
            _take_away(database, how)
            with pytest.raises(trio_chat.ChatError) as refused:
                await trio_chat.register(host, port, "bob", "correct horse")
            assert "could not save" in str(refused.value)
            line = await daemon.wait_for("could not write")
            assert "was removed or replaced while the daemon ran" in line
            assert await daemon.stop() == ExitCode.DATABASE
    last = daemon.text.splitlines()[-1]
    assert re.match(r"Stopped, but \d+ changes? could not be written to the database \(", last)
    assert "was removed or replaced while the daemon ran" in last
    assert daemon.text.index("stopped; the database is closed") < daemon.text.index(last)
    assert "Traceback" not in daemon.text


async def test_a_second_signal_during_the_shutdown_changes_nothing(tmp_path: Path) -> None:
    """An impatient operator's second signal (Ctrl-C, then `kill`) asks for what the
    first already does: the daemon still stops cleanly and exits 0, not killed by it."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, tmp_path / "chat.db")
            await daemon.start()
            process = daemon.process
            assert process is not None
            process.send_signal(signal.SIGINT)
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
            await daemon.wait_for("stopped; the database is closed")
    assert daemon.text.count("Stopping (") == 1
    assert "Traceback" not in daemon.text


async def test_a_daemon_started_under_nohup_outlives_its_terminal(tmp_path: Path) -> None:
    """`nohup trio-chat serve &` starts the daemon with SIGHUP ignored, so that it goes on
    once the terminal closes: the daemon leaves it ignored, and still stops on SIGTERM."""
    db = tmp_path / "chat.db"
    command = [*CLI, "serve", "--port", "0", "--db", str(db)]
    with trio.fail_after(30):
        process = await trio.lowlevel.open_process(
            command, stderr=subprocess.PIPE, preexec_fn=ignore_hangups
        )
        assert process.stderr is not None
        output = bytearray()
        try:
            while not (found := LISTENING.search(output)):
                chunk = await process.stderr.receive_some()
                assert chunk, output.decode()
                output += chunk
            port = int(found.group(2))
            process.send_signal(signal.SIGHUP)  # the terminal closed
            await trio_chat.register("127.0.0.1", port, "alice", "correct horse")
            assert process.returncode is None
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        async for chunk in process.stderr:
            output += chunk
    assert b"SIGHUP" not in output
    assert b"Stopping (SIGTERM)" in output


async def test_ctrl_c_twice_stops_the_daemon_at_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A stop that hangs (a final commit on a disk that no longer answers) can be cut
    short by pressing Ctrl-C again, as with most daemons run in a terminal; nothing
    acknowledged is lost by it, since an answer goes out only once it is on disk. Other
    signals (a `kill`, the terminal closing) change nothing while it stops."""
    exits: list[int] = []
    monkeypatch.setattr(serve_cli, "_exit_now", exits.append)

    async def told(first: int, stopped: bool = False) -> list[str]:
        """What the log says of SIGTERM, SIGHUP, SIGINT, SIGINT coming after `first`."""

        async def signals() -> AsyncIterator[int]:
            for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGINT):
                yield signum

        done = trio.Event()
        if stopped:
            done.set()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="trio_chat"):
            await serve_cli._already_stopping(signals(), first, done)
        return [r.getMessage() for r in caplog.records]

    assert await told(signal.SIGINT) == [
        "Already stopping (SIGTERM).",
        "Already stopping (SIGHUP).",
        "Stopping now (SIGINT again); what was not yet on disk was never acknowledged.",
    ]
    assert exits == [130]
    # A stop that a `kill` began is not cut short by a Ctrl-C: sent together, the two
    # may arrive in either order.
    assert await told(signal.SIGTERM) == [
        "Already stopping (SIGTERM).",
        "Already stopping (SIGHUP).",
        "Already stopping (SIGINT).",
        "Already stopping (SIGINT).",
    ]
    assert exits == [130]
    # A Ctrl-C that comes once the stop is complete (the database closed) is too late to
    # cut anything short: it changes nothing, and the exit status stays the clean stop's.
    assert await told(signal.SIGINT, stopped=True) == [
        "Already stopped (SIGTERM).",
        "Already stopped (SIGHUP).",
        "Already stopped (SIGINT).",
        "Already stopped (SIGINT).",
    ]
    assert exits == [130]


async def test_a_service_manager_is_told_when_the_daemon_listens_and_when_it_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a systemd unit of `Type=notify`, units ordered after the daemon wait for its
    `READY=1`, sent once it listens (with a large database, a second or more after it
    starts); `STOPPING=1` comes as it begins to stop. The log's first line names the
    version and the process."""
    path = str(tmp_path / "notify")
    manager = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_DGRAM)
    await manager.bind(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    with manager, trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, tmp_path / "chat.db")
            _host, port = await daemon.start()
            ready = (await manager.recv(4096)).decode()
            assert ready.splitlines() == ["READY=1", f"STATUS=Listening on 127.0.0.1:{port}"]
            assert daemon.process is not None
            started = await daemon.wait_for("is listening on")
            assert f"version {trio_chat.__version__}, process {daemon.process.pid})" in started
            async with trio.open_nursery() as stopping_side:
                stopping_side.start_soon(daemon.stop)
                stopping = (await manager.recv(4096)).decode()
            assert stopping.splitlines() == ["STOPPING=1", "STATUS=Stopping (SIGTERM)"]
            assert daemon.process.returncode == 0


def test_the_options_reach_the_daemon_and_the_log_keeps_their_level_and_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each limit given is the daemon's (registrations per minute kept per second, and a
    total under one a minute still lets one through); `--log-level WARNING` and
    `--log-format JSON`, in capitals too, keep warnings and above, as JSON; an idle
    timeout of 3 s, the least, is taken."""
    given: list[tuple[ServerConfig, float]] = []

    async def daemon(
        host: str,
        port: int,
        database: Path,
        config: ServerConfig,
        *,
        summary_every: float,
        task_status: trio.TaskStatus[Any],
    ) -> None:
        given.append((config, summary_every))
        event(logging.INFO, "listening", "an info line")
        event(logging.WARNING, "no_control", "a warning line")
        raise StorageError("The database went away; choose another with --db.")

    monkeypatch.setattr(serve_cli, "serve", daemon)
    options = {
        "--message-rate": "2",
        "--message-burst": "3",
        "--register-rate": "6",
        "--register-burst": "4",
        "--login-free-failures": "5",
        "--login-delay": "0.5",
        "--sessions-per-address": "7",
        "--sessions-per-account": "6",
        "--checks-per-address": "9",
        "--register-rate-total": "0.2",
        "--handshake-rate": "11",
        "--handshake-burst": "12",
        "--idle-timeout": "3",
        "--notice-limit": "13",
        "--summary-every": "14",
        "--log-level": "WARNING",
        "--log-format": "JSON",
    }
    arguments = [part for pair in options.items() for part in pair]
    done = CliRunner().invoke(
        app, ["serve", "--port", "0", "--db", str(tmp_path / "chat.db"), *arguments]
    )
    assert done.exit_code == ExitCode.DATABASE, done.output
    entries = [json.loads(line) for line in done.output.splitlines()]
    assert [(entry["level"], entry["message"]) for entry in entries] == [
        ("warning", "a warning line"),
        ("error", "The database went away; choose another with --db."),
    ]
    assert given == [
        (
            ServerConfig(
                message_rate=2.0,
                message_burst=3,
                register_rate=6.0 / 60,
                register_burst=4,
                login_free_failures=5,
                login_delay=0.5,
                max_sessions_per_address=7,
                max_sessions_per_account=6,
                checks_per_address=9,
                register_rate_total=0.2 / 60,
                register_burst_total=1,
                handshake_rate=11.0,
                handshake_burst=12,
                idle_timeout=3.0,
                notice_limit=13,
            ),
            14.0,
        )
    ]


def test_an_unknown_log_level_or_format_is_a_usage_error(tmp_path: Path) -> None:
    for option, value, told in (
        ("--log-level", "loud", "Unknown log level 'loud'; use debug, info, warning or error."),
        ("--log-format", "xml", "Unknown log format 'xml'; use text or json."),
    ):
        done = CliRunner().invoke(
            app, ["serve", "--port", "0", "--db", str(tmp_path / "chat.db"), option, value]
        )
        assert done.exit_code == ExitCode.USAGE
        assert done.output.splitlines() == [told]
        assert not (tmp_path / "chat.db").exists()


def test_limits_at_their_least_are_taken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No failed login free of delay, no delay, no join notices, one at a time of each
    count: all limits a daemon may have. A total rate of registrations a minute not whole
    is rounded for how many may come at once (2.7: 3). The database is the one named."""
    given: list[tuple[ServerConfig, Path]] = []

    async def daemon(
        host: str,
        port: int,
        database: Path,
        config: ServerConfig,
        *,
        summary_every: float,
        task_status: trio.TaskStatus[Any],
    ) -> None:
        given.append((config, database))
        raise StorageError("The database went away; choose another with --db.")

    monkeypatch.setattr(serve_cli, "serve", daemon)
    least = ["--login-free-failures", "--login-delay", "--notice-limit"]
    ones = [
        "--message-burst",
        "--register-burst",
        "--sessions-per-address",
        "--sessions-per-account",
        "--checks-per-address",
        "--handshake-burst",
    ]
    arguments = [*(f"{option}=0" for option in least), *(f"{option}=1" for option in ones)]
    arguments.extend(("--register-rate-total", "2.7"))
    done = CliRunner().invoke(
        app, ["serve", "--port", "0", "--db", str(tmp_path / "chat.db"), *arguments]
    )
    assert done.exit_code == ExitCode.DATABASE, done.output
    ((config, database),) = given
    assert database == tmp_path / "chat.db"
    assert (config.login_free_failures, config.login_delay, config.notice_limit) == (0, 0, 0)
    assert (
        config.message_burst,
        config.register_burst,
        config.max_sessions_per_address,
        config.max_sessions_per_account,
        config.checks_per_address,
        config.handshake_burst,
    ) == (1, 1, 1, 1, 1, 1)
    assert config.register_burst_total == 3
