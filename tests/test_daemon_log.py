"""What `trio-chat serve` tells its operator, read from a real daemon's standard error."""

from __future__ import annotations

import base64
import errno
import functools
import gc
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
import trio
import trio.testing
from typer.testing import CliRunner

from trio_chat import ClientConfig, WrongPassword, connect, logs, register, server
from trio_chat.auth import hash_password
from trio_chat.cli import ExitCode
from trio_chat.cli import app as cli_app
from trio_chat.engine import ServerConfig
from trio_chat.engine.notes import (
    AddressChanged,
    BanEnded,
    LoggedIn,
    LoginRefused,
    PasswordChanged,
    Registered,
    RegistrationRefused,
    SessionEnded,
)
from trio_chat.keys import daemon_keys, daemon_public_key, key_paths, secret_in
from trio_chat.logs import (
    REFUSALS_LOGGED_PER_MINUTE,
    JsonFormatter,
    NoteLog,
    Summary,
    limits_changed,
)
from trio_chat.noise import generate_keypair, public_key
from trio_chat.records import Account
from trio_chat.store import SqliteStore
from trio_chat.testing.daemon import DaemonProcess
from trio_chat.testing.driver import EngineDriver
from trio_chat.testing.raw_peer import RawPeer

PASSWORD = "correct horse battery"
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def lines_with(output: str, pattern: str) -> list[str]:
    return [line for line in output.splitlines() if re.search(pattern, line)]


async def test_the_log_tells_of_every_account_session_failure_and_throttle(
    tmp_path: Path,
) -> None:
    options = ("--login-free-failures", "1", "--idle-timeout", "3", "--summary-every", "0.5")
    fast = ClientConfig(timeout=2.0)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, tmp_path / "chat.db", *options)
            host, port = await daemon.start()
            await register(host, port, "alice", PASSWORD)
            async with connect(host, port, "alice", PASSWORD) as alice:
                await alice.say("hello")
            with pytest.raises(WrongPassword):
                async with connect(host, port, "alice", "not the password", config=fast):
                    pass
            # Put off after that failure (logged as a throttle); the client waits the
            # moment out by itself and is let in.
            async with connect(host, port, "alice", PASSWORD, config=fast) as alice:
                assert alice.connected
            # Garbage, a lot of it: counted in the summary, not a line each.
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for _ in range(50):
                    sock.sendto(b"\xff garbage", (host, port))
            # A client that logs in and then says nothing more is dropped for silence.
            silent = RawPeer(daemon_public_key(tmp_path / "chat.db"), "alice", PASSWORD)
            with silent.sock:
                await silent.log_in(host, port)
                ticket = silent.connection.ticket
                assert ticket
                await daemon.wait_for("ended: silent")
            await daemon.wait_for("datagrams in; dropped:")
            assert await daemon.stop() == 0
    out = daemon.text
    assert lines_with(out, rf"^{STAMP} info +trio-chat is listening on 127\.0\.0\.1:{port} ")
    assert lines_with(out, r"limits other than the defaults: .*idle_timeout=3\.0")
    assert lines_with(out, r"info +alice registered from 127\.0\.0\.1:\d+$")
    assert len(lines_with(out, r"info +alice logged in from 127\.0\.0\.1:\d+$")) == 3
    assert lines_with(out, r"info +alice logged out from 127\.0\.0\.1:\d+$")
    assert lines_with(out, r"warning +login as 'alice' from 127\.0\.0\.1:\d+ refused: wrong_pass")
    assert lines_with(out, r"warning +login as 'alice' .* refused: throttled \(retry after")
    assert lines_with(out, r"warning +session of alice at 127\.0\.0\.1:\d+ ended: silent")
    (garbage,) = lines_with(out, r"dropped: \d+ garbage")
    assert re.search(r"dropped: 50 garbage", garbage)
    assert len(lines_with(out, "garbage")) == 1  # one summary, not a line per datagram
    assert lines_with(out, r"info +Stopping \(SIGTERM\)\.$")
    assert lines_with(out, r"info +stopped; the database is closed$")
    assert PASSWORD not in out and "not the password" not in out and ticket not in out
    assert "Traceback" not in out


async def test_json_logs_are_one_object_a_line_with_the_event_and_its_fields(
    tmp_path: Path,
) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(
                nursery, tmp_path / "chat.db", "--log-format", "json", log_level="debug"
            )
            # The address is found in the JSON line's message, as in the text one.
            host, port = await daemon.start()
            await register(host, port, "zoë", PASSWORD)
            async with connect(host, port, "zoë", PASSWORD):
                pass
            assert await daemon.stop() == 0
    entries = [json.loads(line) for line in daemon.text.splitlines()]
    assert all({"ts", "level", "event", "message"} <= set(entry) for entry in entries)
    by_event = {entry["event"]: entry for entry in entries}
    assert by_event["listening"]["address"] == f"127.0.0.1:{port}"
    # Nothing was at the path: said, as a `--db` mistyped would start a daemon of no one.
    assert entries[0]["event"] == "new_database"
    assert entries[0]["database"] == str(tmp_path / "chat.db")
    assert by_event["registered"]["name"] == "zoë"
    assert by_event["login"]["name"] == "zoë" and by_event["login"]["quiet"] is False
    assert by_event["logout"]["address"].startswith("127.0.0.1:")
    assert {"stopping", "stopped"} <= set(by_event)
    assert "restarted" not in by_event  # a first start: no one to tell to log in again
    assert "limits" not in by_event  # every limit is the default's: nothing to list
    assert PASSWORD not in daemon.text


async def test_accounts_whose_names_collide_are_named_at_start(tmp_path: Path) -> None:
    database = tmp_path / "chat.db"
    store = SqliteStore.open(database)
    created = "2026-11-30T00:00:00.000Z"
    assert not store.write(
        [
            Account(1, "alice", "alice", hash_password(PASSWORD), created),
            Account(2, "aIice", "aiice", hash_password(PASSWORD), created),
        ]
    )
    store.close()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, database)
            host, port = await daemon.start()
            async with connect(host, port, "aIice", PASSWORD) as chat:
                assert chat.name == "aIice"
            assert await daemon.stop() == 0
    (line,) = lines_with(daemon.text, "could be mistaken")
    assert re.search(
        r"warning +the accounts 'aIice' and 'alice' could be mistaken for each other", line
    )


def serve(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "trio_chat", "serve", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_a_port_in_use_is_one_sentence_and_exit_status_12(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        done = serve("--port", str(port), "--db", str(tmp_path / "chat.db"))
    assert done.returncode == ExitCode.CANNOT_LISTEN
    assert done.stderr.splitlines() == [
        f"Cannot listen on 127.0.0.1:{port}: the port is in use; is another trio-chat "
        "running? Choose another with --port."
    ]


def test_a_port_in_use_leaves_no_socket_open_in_the_program_that_tried() -> None:
    """A program that runs the daemon, and tries again when the port is taken, is not
    left with a socket a try: the one that could not be bound is closed at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        gc.collect()  # what earlier tests left
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            with pytest.raises(OSError):
                server.bind_udp("127.0.0.1", port)
            gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


def refused_as_a_user(host: str, port: int) -> socket.socket:
    raise PermissionError(errno.EACCES, "Permission denied")


def test_a_port_that_needs_privileges_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As an ordinary user, port 80 is refused (EACCES): "Permission denied." alone did
    not say why, nor what to do. (The system is asked as root would be, so the refusal
    is made here.)"""

    monkeypatch.setattr(server, "bind_udp", refused_as_a_user)
    done = CliRunner().invoke(cli_app, ["serve", "--port", "80", "--db", str(tmp_path / "chat.db")])
    assert done.exit_code == ExitCode.CANNOT_LISTEN
    assert done.output.splitlines()[-1] == (
        "Cannot listen on 127.0.0.1:80: ports below 1024 need privileges; choose another "
        "with --port."
    )


@pytest.mark.parametrize(
    ("error", "port", "told"),
    [
        # Refused from 1024 up (a security module's rule, say): not for want of privileges.
        (PermissionError(errno.EACCES, "Permission denied"), 2000, "Permission denied"),
        (PermissionError(errno.EACCES, "Permission denied"), 1024, "Permission denied"),
        (OSError(errno.ENETDOWN, "Network is down"), 2000, "Network is down"),
    ],
)
def test_another_refusal_to_listen_is_the_systems_reason_and_exit_status_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, port: int, told: str
) -> None:
    def refused(host: str, port: int) -> socket.socket:
        raise error

    monkeypatch.setattr(server, "bind_udp", refused)
    done = CliRunner().invoke(
        cli_app, ["serve", "--port", str(port), "--db", str(tmp_path / "chat.db")]
    )
    assert done.exit_code == ExitCode.FAILURE
    assert done.output.splitlines()[-1] == f"Cannot listen on 127.0.0.1:{port}: {told}."


def test_a_database_folder_not_the_daemons_is_said_so_even_on_a_privileged_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run as root on port 80 with `--db` in a folder it may not search (on a network
    file system, say): the file's refusal, exit 11, not ports needing privileges. (The
    port is bound, and the folder refused, here.)"""
    database = tmp_path / "folder" / "chat.db"
    bind = server.bind_udp

    def not_ours(path: Path) -> bool:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(server, "bind_udp", lambda host, _port: bind(host, 0))
    monkeypatch.setattr(server, "_holds_something", not_ours)
    done = CliRunner().invoke(cli_app, ["serve", "--port", "80", "--db", str(database)])
    assert done.exit_code == ExitCode.DATABASE
    assert done.output.splitlines()[-1] == f"Cannot use {database}: permission denied."


def test_a_daemon_run_inside_a_program_leaves_its_logging_as_it_was(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`serve` sends the log to standard error while it runs, and gives the logging back
    after: run by a `CliRunner`, whose standard error is closed once it returns, it left
    a handler on that stream, and every later log line (another daemon's, in the same
    process) printed "--- Logging error ---" and a traceback instead."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    monkeypatch.setattr(server, "bind_udp", refused_as_a_user)
    done = CliRunner().invoke(cli_app, ["serve", "--port", "80", "--db", str(tmp_path / "chat.db")])
    assert done.exit_code == ExitCode.CANNOT_LISTEN
    assert (root.handlers, root.level) == (handlers, level)


@pytest.mark.parametrize(
    ("host", "why"),
    [("no-such-host.invalid", "no such host"), ("192.0.2.1", "not an address of this machine")],
)
def test_a_host_the_daemon_cannot_listen_on_is_one_sentence_and_exit_status_12(
    tmp_path: Path, host: str, why: str
) -> None:
    done = serve("--host", host, "--port", "0", "--db", str(tmp_path / "chat.db"))
    assert done.returncode == ExitCode.CANNOT_LISTEN
    assert done.stderr.splitlines() == [
        f"Cannot listen on {host}:0: {why}; choose another with --host."
    ]


@pytest.mark.parametrize("kind", ["folder is a file", "not sqlite", "a folder"])
def test_a_database_that_cannot_be_used_is_one_sentence_and_exit_status_11(
    tmp_path: Path, kind: str
) -> None:
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "junk.db").write_text("this is not a database, " * 100)
    path = {
        "folder is a file": tmp_path / "file" / "chat.db",
        "not sqlite": tmp_path / "junk.db",
        "a folder": tmp_path,
    }[kind]
    done = serve("--port", "0", "--db", str(path))
    assert done.returncode == ExitCode.DATABASE
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"Cannot open the database '{path}': ")
    assert line.endswith("; choose another with --db.")


def test_a_damaged_key_file_is_one_sentence_and_exit_status_11(tmp_path: Path) -> None:
    (tmp_path / "chat.key").write_text("not a key")
    done = serve("--port", "0", "--db", str(tmp_path / "chat.db"))
    assert done.returncode == ExitCode.DATABASE
    assert done.stderr.splitlines()[-1] == (
        f"The key file '{tmp_path / 'chat.key'}' is damaged; restore it, or remove it to make "
        "a new key (clients will then refuse the daemon until they trust the new one)."
    )
    assert "Traceback" not in done.stderr


def test_a_damaged_key_file_stops_the_start_before_a_database_is_made(tmp_path: Path) -> None:
    (tmp_path / "chat.key").write_text("not a key")
    done = serve("--port", "0", "--db", str(tmp_path / "chat.db"))
    assert done.returncode == ExitCode.DATABASE
    assert not (tmp_path / "chat.db").exists()
    assert "the database is closed" not in done.stderr  # it was never opened


@pytest.mark.parametrize(
    ("name", "mode", "new_key_means"),
    [
        ("chat.key", 0o644, "clients will then refuse the daemon until they trust the new one"),
        ("chat.tickets", 0o640, "every session will then log in with its password once more"),
        ("chat.key", 0o604, "clients will then refuse the daemon until they trust the new one"),
    ],
)
def test_a_key_file_others_may_read_stops_the_start_in_one_sentence(
    tmp_path: Path, name: str, mode: int, new_key_means: str
) -> None:
    """As sshd refuses such a host key: whoever read `chat.key` can pose as the daemon,
    `chat.tickets` log in as anyone. Refused before a database is made; made its owner's
    alone again, the same keys are the daemon's."""
    database = tmp_path / "chat.db"
    daemon_keys(database)
    secrets = [secret_in(path) for path in key_paths(database)]
    (tmp_path / name).chmod(mode)
    done = serve("--port", "0", "--db", str(database))
    assert done.returncode == ExitCode.DATABASE
    assert done.stderr.splitlines() == [
        f"The key file '{tmp_path / name}' may be read by others (mode {mode:04o}): make it "
        f"its owner's alone (chmod 600 {tmp_path / name}), and if someone else may have read "
        f"it, remove it to make a new key ({new_key_means})."
    ]
    assert not database.exists()
    (tmp_path / name).chmod(0o600)
    assert daemon_keys(database).static_private == secrets[0]
    assert [secret_in(path) for path in key_paths(database)] == secrets


async def test_a_key_made_for_a_database_that_has_accounts_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A key file lost (a backup restored without it): every client that knew the old key
    will refuse the daemon, so its start says so, once."""
    database = tmp_path / "chat.db"
    store = SqliteStore.open(database)
    store.write([Account(1, "alice", "alice", "hash", "2026-12-06T00:00:00Z")])
    store.close()

    async def start() -> list[logging.LogRecord]:
        caplog.clear()
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(functools.partial(server.serve, "127.0.0.1", 0, database))
                nursery.cancel_scope.cancel()
        return [r for r in caplog.records if getattr(r, "event", None) == "new_key"]

    with caplog.at_level(logging.INFO, logger="trio_chat"):
        (warning,) = await start()
        assert warning.levelno == logging.WARNING
        assert warning.getMessage().startswith(
            "made a new key for a database with 1 account: clients that knew the old key"
        )
        assert await start() == []  # the key is there now
    (tmp_path / "chat.key").unlink()
    with caplog.at_level(logging.INFO, logger="trio_chat"):
        assert await start() != []
        database = tmp_path / "empty.db"  # a first start: a new key, and nobody to tell
        assert await start() == []


async def test_a_key_kept_by_an_older_trio_chat_under_the_database_s_short_name_is_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A trio-chat before keys were named by the database's whole name kept `room.v2`'s
    key as `room.key`: upgraded, the daemon keeps that key, which every client trusts,
    rather than making one they would all refuse. A database made now takes none."""
    database = tmp_path / "room.v2"
    store = SqliteStore.open(database)
    store.write([Account(1, "alice", "alice", "hash", "2026-12-06T00:00:00Z")])
    store.close()
    older = tmp_path / "room.key"
    older.write_text(base64.b64encode(generate_keypair()[0]).decode() + "\n")
    trusted = public_key(secret_in(older))

    async def start(path: Path) -> list[str]:
        caplog.clear()
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(functools.partial(server.serve, "127.0.0.1", 0, path))
                nursery.cancel_scope.cancel()
        return [getattr(r, "event", "") for r in caplog.records]

    with caplog.at_level(logging.INFO, logger="trio_chat"):
        events = await start(database)
        assert "older_key" in events and "new_key" not in events
        assert daemon_public_key(database) == trusted
        assert older.exists()  # another database of the short name may use it too
        events = await start(database)
        assert "older_key" not in events and "new_key" not in events
        assert daemon_public_key(database) == trusted
        made_now = tmp_path / "room.v3"
        await start(made_now)
        assert daemon_public_key(made_now) != trusted


def test_in_json_a_failure_to_start_is_a_json_line_too(tmp_path: Path) -> None:
    """A log read as JSON (journald, Loki) keeps the one line that says why the daemon
    did not start, as it keeps every other."""
    (tmp_path / "chat.key").write_text("not a key")
    damaged = serve("--port", "0", "--db", str(tmp_path / "chat.db"), "--log-format", "json")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        in_use = serve(
            "--port", str(port), "--db", str(tmp_path / "other.db"), "--log-format", "json"
        )
    # A database path the system will not look at (a name too long): said to be, not
    # "cannot listen", exit 1.
    too_long = tmp_path / ("x" * 300)
    unusable = serve("--port", "0", "--db", str(too_long), "--log-format", "json")
    for done, code, sentence in (
        (damaged, ExitCode.DATABASE, "The key file "),
        (in_use, ExitCode.CANNOT_LISTEN, f"Cannot listen on 127.0.0.1:{port}: "),
        (unusable, ExitCode.DATABASE, f"Cannot use {too_long}"),
    ):
        assert done.returncode == code
        entries = [json.loads(line) for line in done.stderr.splitlines()]
        last = entries[-1]
        assert last["level"] == "error" and last["event"] == "failed", last
        assert last["message"].startswith(sentence)
        assert last["exit_status"] == code
    # The system's reason, as a sentence goes on ("File name too long" within it).
    assert json.loads(unusable.stderr.splitlines()[-1])["message"].endswith(": file name too long.")


@pytest.mark.parametrize("port", ["70000", "-1", "abc"])
def test_a_bad_port_is_a_sentence(port: str) -> None:
    done = serve("--port", port)
    assert done.returncode == ExitCode.USAGE
    assert done.stderr.splitlines() == [f"The port must be a number from 0 to 65535, not {port!r}."]


def test_help_shows_the_default_database_and_the_log_options() -> None:
    environment = {key: value for key, value in os.environ.items() if key != "XDG_DATA_HOME"}
    command = [sys.executable, "-m", "trio_chat", "serve", "--help"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=30, check=True, env=environment
    )
    text = "".join(done.stdout.replace("│", "").split())  # the help is boxed and wrapped
    assert "[default:(~/.local/share/trio-chat/chat.db)]" in text
    for option in ("--log-level", "--log-format", "--summary-every", "[default:text]"):
        assert option in text


def test_a_flood_of_refusals_is_logged_a_few_a_minute_and_counted_in_the_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notes = NoteLog()
    attacker, other = ("10.1.1.1", 5000), ("10.2.2.2", 5000)
    with caplog.at_level(logging.INFO, logger="trio_chat"):
        for n in range(1000):  # a thousand guesses in one second, from ports of one address
            notes.log(LoginRefused("alice", (attacker[0], 1000 + n), "throttled", 1.0), n / 1000)
        notes.log(LoginRefused("bob", other, "wrong_password"), 1.0)
        notes.log(LoginRefused("alice", attacker, "throttled", 1.0), 61.0)  # a minute on
        refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert len(refused) == REFUSALS_LOGGED_PER_MINUTE + 2
        assert REFUSALS_LOGGED_PER_MINUTE == 6  # a few: a line each ten seconds at most
        assert sum("10.2.2.2" in line for line in refused) == 1
        assert notes.unlogged == 1000 - REFUSALS_LOGGED_PER_MINUTE
        caplog.clear()
        summary = Summary()
        summary.line({"datagrams_in": 0}, 0, 0, 1.0)
        summary.line({"datagrams_in": 1001}, 1, 1, 1.0, notes.unlogged)
    (record,) = caplog.records
    assert record.getMessage().endswith(
        f"; {notes.unlogged} refused logins and registrations not logged one by one"
    )
    # A log kept at `warning` (which keeps refused logins) keeps this count too; a summary
    # with nothing refused unlogged stays at `info`.
    assert record.levelno == logging.WARNING
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="trio_chat"):
        summary.line({"datagrams_in": 1002}, 1, 1, 1.0, notes.unlogged)
    assert [r.levelno for r in caplog.records] == [logging.INFO]


def test_changed_limits_are_logged_in_the_units_they_are_given_in() -> None:
    """`--register-rate 2` is per minute: the log says 2, not the per-second 0.0333."""
    changed = limits_changed(ServerConfig(register_rate=2 / 60, idle_timeout=30.0))
    assert changed == {"register_rate": 2.0, "idle_timeout": 30.0}
    assert limits_changed(ServerConfig(register_rate_total=120 / 60)) == {
        "register_rate_total": 120.0
    }
    assert limits_changed(ServerConfig()) == {}
    # A value given that is the default's (`--idle-timeout 45`) is no change.
    assert limits_changed(ServerConfig(idle_timeout=float("45"))) == {}


def test_the_summary_counts_one_connection_and_one_person_in_the_singular(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        Summary().line({"datagrams_in": 3}, 1, 1, 1.0)
        Summary().line({"datagrams_in": 3}, 2, 1, 1.0)
        Summary().line({"datagrams_in": 3, "messages": 1}, 1, 1, 1.0)
        Summary().line({"datagrams_in": 3, "messages": 2}, 1, 1, 1.0)
    first, second, one, two = [r.getMessage() for r in caplog.records]
    assert first.startswith("1 connection (1 person online), 0 messages a minute")
    assert second.startswith("2 connections (1 person online)")
    assert one.startswith("1 connection (1 person online), 1 message a minute,")
    assert two.startswith("1 connection (1 person online), 2 messages a minute,")
    # For machines: `connections`, and `sessions` as it was called before (the same count).
    fields = caplog.records[1].__dict__["fields"]
    assert (fields["connections"], fields["sessions"], fields["online"]) == (2, 2, 1)


def test_the_summary_counts_connections_refused_as_too_many_from_one_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        summary = Summary()
        summary.line({"datagrams_in": 0, "handshakes_refused": 0}, 0, 0, 1.0)
        summary.line({"datagrams_in": 500, "handshakes_refused": 480}, 1, 1, 1.0)
        summary.line({"datagrams_in": 510, "handshakes_refused": 480}, 1, 1, 1.0)
    busy, quiet = [r.getMessage() for r in caplog.records]
    assert busy.endswith("; 480 connections refused as too many from one address")
    assert "dropped: nothing" in busy
    assert "refused as too many" not in quiet  # none since the line before


async def test_the_summary_counts_datagrams_the_socket_would_not_send(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    """A full send buffer, or a network that refuses: the link sends again later, and the
    operator learns of it from the summary, not from nowhere."""
    engine = EngineDriver().engine
    daemon = SimpleNamespace(engine=engine, send_errors=0, notes=SimpleNamespace(unlogged=0))
    with caplog.at_level(logging.INFO, logger="trio_chat"):
        with trio.move_on_after(90):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.log_summaries, cast(server.Daemon, daemon), 60.0)
                await trio.sleep(1)
                daemon.send_errors = 7
                engine.stats["datagrams_in"] += 5
    (line,) = [r.getMessage() for r in caplog.records]
    assert "dropped: 7 not sent (the send buffer full, or the network refused" in line


def test_a_json_line_keeps_its_own_message_whatever_its_fields_are_named() -> None:
    # The operator's removal once logged a field named `message`, which took the line's
    # sentence's place.
    record = logging.LogRecord(
        "trio_chat", logging.INFO, __file__, 1, "the operator removed the message 42", None, None
    )
    record.event = "operator"
    record.fields = {"message": "42", "message_id": "42"}
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "the operator removed the message 42"
    assert (entry["event"], entry["message_id"]) == ("operator", "42")


def test_a_json_line_holds_nothing_raw_that_would_hide_or_reorder_it() -> None:
    """A login tried as `\u202eneddih\u202c ok`: raw in the file, the override reversed
    the rest of the line in a viewer. Escaped, a JSON reader gets the same value."""
    name = "\u202eneddih\u202c ok 张伟 \x85\U000e0041"
    record = logging.LogRecord("trio_chat", logging.WARNING, __file__, 1, "refused", None, None)
    record.event = "login_refused"
    record.fields = {"name": name}
    line = JsonFormatter().format(record)
    assert not any(char in line for char in "\u202e\u202c\x85\U000e0041")
    assert "张伟" in line  # shown as it is: nothing hides in it
    assert json.loads(line)["name"] == name


@pytest.mark.parametrize("form", ["text", "json"])
def test_a_ban_ending_is_logged_with_the_bans_still_holding_it_or_within_it(form: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if form == "json" else logs.TextFormatter())
    level = logs.log.level
    logs.log.addHandler(handler)
    logs.log.setLevel(logging.INFO)
    try:
        logs.log_note(BanEnded("198.51.100.0/24", "2026-12-06T18:40:00.000Z"))
        wider = (("203.0.0.0/16", None), ("203.0.113.0/24", "2026-12-06T19:00:00.000Z"))
        logs.log_note(BanEnded("203.0.113.7/32", "2026-12-06T18:45:00.000Z", wider))
        one = (("192.0.2.7/32", "2026-12-06T19:00:00.000Z"),)
        logs.log_note(BanEnded("192.0.2.0/24", "2026-12-06T18:50:00.000Z", (), one, 1))
        first = tuple((f"10.0.0.{i}/32", None) for i in range(3))
        logs.log_note(BanEnded("10.0.0.0/8", "2026-12-06T18:55:00.000Z", (), first, 3))
        logs.log_note(BanEnded("10.0.0.0/8", "2026-12-06T18:56:00.000Z", (), first, 1000))
    finally:
        logs.log.removeHandler(handler)
        logs.log.setLevel(level)
    alone, within, one_inside, three_inside, many_inside = stream.getvalue().splitlines()
    if form == "text":  # a ban given for a while ended as the operator asked: no warning
        assert all(line.split()[1] == "info" for line in stream.getvalue().splitlines())
    if form == "json":
        entry = json.loads(within)
        assert (entry["event"], entry["network"], entry["still"]) == (
            "ban_ended",
            "203.0.113.7/32",
            ["203.0.0.0/16", "203.0.113.0/24"],
        )
        assert entry["until"] == "2026-12-06T18:45:00.000Z"
        many = json.loads(many_inside)
        assert (many["within"], many["within_count"]) == ([n for n, _ in first], 1000)
        alone, within = json.loads(alone)["message"], entry["message"]
        one_inside, three_inside, many_inside = (
            json.loads(line)["message"] for line in (one_inside, three_inside, many_inside)
        )
    # Never "let in again": a narrower ban may hold part of it, and is named.
    assert alone.endswith("the ban on 198.51.100.0/24 until 2026-12-06T18:40:00.000Z ended")
    assert one_inside.endswith(
        "ended; 192.0.2.7/32 (until 2026-12-06T19:00:00.000Z) within it stays turned away"
    )
    assert three_inside.endswith(
        "ended; 10.0.0.0/32, 10.0.0.1/32 and 10.0.0.2/32 within it stay turned away"
    )
    assert many_inside.endswith(
        "ended; 10.0.0.0/32, 10.0.0.1/32, 10.0.0.2/32 and 997 more within it stay turned away"
    )
    assert within.endswith(
        "the ban on 203.0.113.7/32 until 2026-12-06T18:45:00.000Z ended; 203.0.0.0/16 and "
        "203.0.113.0/24 (until 2026-12-06T19:00:00.000Z) still turn it away"
    )


@pytest.mark.parametrize(
    ("reason", "level"),
    [
        ("replaced", logging.INFO),  # the client came back on a new channel
        ("password_changed", logging.INFO),
        ("removed", logging.INFO),
        ("banned", logging.INFO),  # the operator's ban
        ("unresponsive", logging.WARNING),
        ("overloaded", logging.WARNING),
    ],
)
def test_a_session_ended_as_asked_is_not_a_warning(
    reason: str, level: int, caplog: pytest.LogCaptureFixture
) -> None:
    # Every client that resumed after the daemon stalled logged "ended: replaced" as a
    # warning, where nothing went wrong.
    with caplog.at_level(logging.INFO, logger="trio_chat"):
        logs.log_note(SessionEnded("alice", ("127.0.0.1", 4000), reason))
    (record,) = caplog.records
    assert record.getMessage().endswith(f"ended: {reason}")
    assert record.levelno == level


async def test_a_stop_with_a_session_open_tells_it_and_the_next_start_tells_no_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A clean stop says goodbye to the sessions open and forgets them on disk too: the
    next start has no one to tell to log in again (that is for a crash)."""
    database = tmp_path / "chat.db"

    def said(name: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if getattr(r, "event", None) == name]

    with caplog.at_level(logging.INFO, logger="trio_chat"), trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            running, stopped = trio.CancelScope(), trio.Event()

            async def daemon(task_status: trio.TaskStatus[tuple[str, int]]) -> None:
                with running:
                    await server.serve("127.0.0.1", 0, database, task_status=task_status)
                stopped.set()

            host, port = await nursery.start(daemon)
            await register(host, port, "alice", "correct horse")
            async with connect(host, port, "alice", "correct horse"):
                running.cancel()
                await stopped.wait()
        (stopping,) = said("stopping")
        assert stopping.fields["sessions"] == 1  # type: ignore[attr-defined]
        caplog.clear()
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(server.serve, "127.0.0.1", 0, database))
            nursery.cancel_scope.cancel()
        assert said("listening") and not said("restarted")


def test_a_bug_is_one_line_naming_its_error_in_either_format() -> None:
    """A bug while a datagram was handled is logged at `error` with its exception: in text
    the line ends with the exception's type and message, escaped (a stranger's datagram
    may have put a line break or a bidi control in it), never a traceback; in JSON it is
    the `error` field, and a line that is no event of trio-chat's is the event `log`."""
    try:
        raise ValueError("bad length\n1970-01-01T00:00:00.000Z info    forged \u202e")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "trio_chat.server",
        logging.ERROR,
        __file__,
        1,
        "error handling a datagram from %s",
        (("10.0.0.1", 5000),),
        exc_info,
    )
    record.created = 0.25
    assert logs.TextFormatter().format(record) == (
        "1970-01-01T00:00:00.250Z error   error handling a datagram from ('10.0.0.1', 5000) "
        "(ValueError: bad length\\n1970-01-01T00:00:00.000Z info    forged \\u202e)"
    )
    entry = json.loads(JsonFormatter().format(record))
    assert (entry["level"], entry["event"]) == ("error", "log")
    assert (
        entry["error"] == "ValueError: bad length\n1970-01-01T00:00:00.000Z info    forged \u202e"
    )
    # The level is a column: every message starts where the others do.
    info = logging.LogRecord("trio_chat", logging.INFO, __file__, 1, "alice logged in", None, None)
    info.created = 0.25
    assert logs.TextFormatter().format(info) == "1970-01-01T00:00:00.250Z info    alice logged in"


def test_the_log_level_keeps_what_it_names_and_above() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        logs.configure("warning", "text", stream)
        logs.event(logging.INFO, "login", "alice logged in from 127.0.0.1:4000")
        logs.event(logging.WARNING, "login_refused", "login as 'alice' refused: wrong_password")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    (line,) = stream.getvalue().splitlines()
    assert line.endswith("warning login as 'alice' refused: wrong_password")


def test_registrations_refused_in_bulk_are_a_warning_and_a_quiet_login_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A name taken is someone's mistake (info); registrations refused as too many from one
    address are accounts made in bulk (a warning, kept at `--log-level warning`), told
    with when they may come again. A login only to look says so."""
    with caplog.at_level(logging.INFO, logger="trio_chat"):
        logs.log_note(RegistrationRefused("bob", ("127.0.0.1", 4000), "name_taken"))
        logs.log_note(
            RegistrationRefused("bot7", ("10.0.0.7", 4000), "too_many_registrations", 2.5)
        )
        logs.log_note(LoggedIn("alice", ("127.0.0.1", 4001), quiet=True))
        logs.log_note(LoginRefused("alice", ("127.0.0.1", 4002), "wrong_password"))
    taken, bulk, quiet, wrong = caplog.records
    assert (taken.levelno, taken.getMessage()) == (
        logging.INFO,
        "registration of 'bob' from 127.0.0.1:4000 refused: name_taken",
    )
    assert (bulk.levelno, bulk.getMessage()) == (
        logging.WARNING,
        "registration of 'bot7' from 10.0.0.7:4000 refused: too_many_registrations "
        "(retry after 2.5 s)",
    )
    assert quiet.getMessage() == "alice logged in from 127.0.0.1:4001 to look (quiet)"
    assert quiet.__dict__["fields"]["quiet"] is True
    # No wait was given: none is told.
    assert wrong.getMessage() == "login as 'alice' from 127.0.0.1:4002 refused: wrong_password"


def test_a_new_password_and_a_new_address_are_told_as_they_happened(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Both are what a person did (info): a password changed from where, and a client
    that moved (a phone from Wi-Fi to mobile data) from which address to which."""
    with caplog.at_level(logging.INFO, logger="trio_chat"):
        logs.log_note(PasswordChanged("alice", ("127.0.0.1", 4000)))
        logs.log_note(AddressChanged("alice", ("192.0.2.1", 4000), ("2001:db8::1", 5000)))
    changed, moved = caplog.records
    assert (changed.levelno, changed.getMessage()) == (
        logging.INFO,
        "alice changed their password from 127.0.0.1:4000",
    )
    assert (moved.levelno, moved.getMessage()) == (
        logging.INFO,
        "alice moved from 192.0.2.1:4000 to [2001:db8::1]:5000",
    )
    fields = moved.__dict__["fields"]
    assert (fields["old"], fields["new"]) == ("192.0.2.1:4000", "[2001:db8::1]:5000")


def test_a_flood_of_one_refusal_hides_no_other_and_registrations_are_held_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The allowance is per address and reason: logins refused as throttled by the
    hundred do not silence the first wrong password from the same address, and a flood
    of registrations refused is held to six lines a minute as logins are."""
    notes = NoteLog()
    attacker = "10.1.1.1"
    with caplog.at_level(logging.INFO, logger="trio_chat"):
        for n in range(100):
            notes.log(LoginRefused("alice", (attacker, 1000 + n), "throttled", 1.0), n / 100)
        notes.log(LoginRefused("alice", (attacker, 2000), "wrong_password"), 1.0)
        for n in range(100):
            refused = RegistrationRefused(
                f"bot{n}", (attacker, 3000 + n), "too_many_registrations", 60.0
            )
            notes.log(refused, 1 + n / 100)
    reasons = [r.__dict__["fields"]["reason"] for r in caplog.records]
    assert reasons == ["throttled"] * 6 + ["wrong_password"] + ["too_many_registrations"] * 6
    assert notes.unlogged == 94 + 94


def test_the_summary_gives_messages_a_minute_whatever_its_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`--summary-every 120`: five messages in its two minutes are 2.5 a minute (the JSON
    field to a tenth, the sentence whole), and `--summary-every 30`: five are ten."""
    with caplog.at_level(logging.INFO):
        Summary().line({"datagrams_in": 3, "messages": 5}, 1, 1, 2.0)
        Summary().line({"datagrams_in": 3, "messages": 5}, 1, 1, 0.5)
    slow, fast = caplog.records
    assert ", 2 messages a minute, " in slow.getMessage()
    assert slow.__dict__["fields"]["messages_per_minute"] == 2.5
    assert ", 10 messages a minute, " in fast.getMessage()
    assert fast.__dict__["fields"]["messages_per_minute"] == 10.0


def test_the_summarys_fields_count_what_happened_since_the_line_before(
    caplog: pytest.LogCaptureFixture,
) -> None:
    summary = Summary()
    with caplog.at_level(logging.INFO):
        summary.line({"datagrams_in": 0, "bad_records": 0, "handshakes_refused": 0}, 0, 0, 1.0)
        summary.line(
            {"datagrams_in": 100, "bad_records": 4, "handshakes_refused": 30}, 1, 1, 1.0, 50
        )
        summary.line(
            {"datagrams_in": 200, "bad_records": 6, "handshakes_refused": 30}, 1, 1, 1.0, 70
        )
    first, second = caplog.records
    assert "; dropped: 4 forged; 50 refused logins" in first.getMessage()
    fields = first.__dict__["fields"]
    assert fields["dropped"]["bad_records"] == 4
    assert (fields["unlogged_refusals"], fields["handshakes_refused"]) == (50, 30)
    fields = second.__dict__["fields"]
    assert fields["dropped"]["bad_records"] == 2
    assert (fields["unlogged_refusals"], fields["handshakes_refused"]) == (20, 0)


def test_a_name_cannot_forge_a_line_of_the_text_log(caplog: pytest.LogCaptureFixture) -> None:
    """A name kept from before the rules, or one a login only tried, is shown escaped in
    every line that names it: a line break in it cannot start a line of its own."""
    name = "mallory\n1970-01-01T00:00:00.000Z info    alice logged in \u202e"
    here, there = ("127.0.0.1", 4000), ("127.0.0.1", 4001)
    with caplog.at_level(logging.INFO, logger="trio_chat"):
        for note in (
            Registered(name, here),
            RegistrationRefused(name, here, "name_taken"),
            LoggedIn(name, here, quiet=False),
            LoginRefused(name, here, "unknown_user"),
            PasswordChanged(name, here),
            AddressChanged(name, here, there),
            SessionEnded(name, here, "quit"),
            SessionEnded(name, here, "silent"),
        ):
            logs.log_note(note)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 8
    for message in messages:
        assert "\n" not in message and "\u202e" not in message, message
        assert "mallory\\n1970" in message, message


async def test_a_running_daemons_summary_gives_messages_a_minute_and_refusals_unlogged(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    """`--summary-every 30`: ten messages in its thirty seconds are twenty a minute; a
    connection not logged in is counted, not as someone online; and the refusals the
    flood's allowance kept out of the log are counted in the line."""
    stats = {"datagrams_in": 0, "messages": 0}
    engine = SimpleNamespace(
        stats=stats, sessions={1: None}, room=SimpleNamespace(accounts_online=0)
    )
    daemon = SimpleNamespace(engine=engine, send_errors=0, notes=SimpleNamespace(unlogged=0))
    with caplog.at_level(logging.INFO, logger="trio_chat"):
        with trio.move_on_after(45):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.log_summaries, cast(server.Daemon, daemon), 30.0)
                await trio.sleep(1)
                stats["datagrams_in"] += 40
                stats["messages"] += 10
                daemon.notes.unlogged = 25
    (record,) = caplog.records
    assert record.getMessage().startswith(
        "1 connection (0 people online), 20 messages a minute, 40 datagrams in; "
    )
    assert record.__dict__["fields"]["unlogged_refusals"] == 25
