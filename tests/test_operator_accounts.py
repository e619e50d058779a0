"""The operator acting on an account: `trio-chat accounts list`, `lock`, `unlock` and
`password`, on a stopped daemon's database, and what the daemon does with them (on a
running daemon: test_operator_control.py)."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import sqlite3
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio
from typer.testing import CliRunner

import trio_chat
from trio_chat.auth import is_password_hash
from trio_chat.cli import ExitCode
from trio_chat.cli import accounts as accounts_command
from trio_chat.cli import app as cli_app
from trio_chat.client_protocol.endings import PASSWORD_CHANGED_AWAY
from trio_chat.control import NOT_STORED, AccountLine, ControlRefused, Reply, Request
from trio_chat.errors import AccountLocked, WrongPassword
from trio_chat.keys import daemon_keys
from trio_chat.records import LOCK_MARK, Account, Message, Snapshot
from trio_chat.secure import Ticket, password_mark
from trio_chat.store import SqliteStore
from trio_chat.store_schema import MIGRATIONS, SCHEMA_VERSION
from trio_chat.testing.daemon import CLI, DaemonProcess, cli_env
from trio_chat.testing.driver import EngineDriver, Peer

from .test_cli import at_a_terminal

PASSWORD = "correct horse"
NEW_PASSWORD = "battery staple"


def locked_room() -> EngineDriver:
    """A daemon started again on alice's account locked (bob's as it was)."""
    driver = EngineDriver()
    for name in ("alice", "bob"):
        driver.add_account(name, PASSWORD)
    accounts = [
        dataclasses.replace(a, password_hash=LOCK_MARK + a.password_hash) if a.key == "alice" else a
        for a in driver.stored_accounts()
    ]
    return EngineDriver(
        snapshot=Snapshot(accounts=accounts, next_account_id=3), keys=driver.keys, first_sid=5000
    )


def test_a_locked_account_is_told_so_only_with_its_right_password() -> None:
    driver = locked_room()
    driver.auto_hash = True
    alice = Peer(driver, "alice", PASSWORD, address=("10.0.0.1", 1))
    alice.settle()
    assert isinstance(alice.connection.failure, AccountLocked)
    assert "locked by the daemon's operator" in str(alice.connection.failure)
    guesser = Peer(driver, "alice", "not her password", address=("10.0.0.2", 1))
    guesser.settle()
    assert isinstance(guesser.connection.failure, WrongPassword)  # to others, any account
    bob = Peer(driver, "bob", PASSWORD, address=("10.0.0.3", 1))
    bob.settle()
    assert bob.connection.ready


async def accounts(
    database: Path, *args: str, given: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`trio-chat accounts ARGS --db DATABASE`, its output as text."""
    return await operator("accounts", database, *args, given=given, env=env)


async def login(port: int, home: Path, name: str) -> subprocess.CompletedProcess[bytes]:
    """`trio-chat login --name NAME` against the daemon on `port`, run by someone whose
    home is `home`, with the accounts' `PASSWORD`."""
    return await trio.run_process(
        [*CLI, "login", "--name", name],
        env=cli_env(port, HOME=str(home), TRIO_CHAT_PASSWORD=PASSWORD),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


async def operator(
    command: str,
    database: Path,
    *args: str,
    given: str = "",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`trio-chat COMMAND ARGS --db DATABASE` (an operator's command), its output as text."""
    result = await trio.run_process(
        [*CLI, command, *args, "--db", str(database)],
        stdin=given.encode(),
        env={**os.environ, **(env or {})},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


async def test_an_account_locked_while_the_daemon_is_stopped_stays_out_until_unlocked(
    tmp_path: Path,
) -> None:
    """Alice is in the room when the operator stops the daemon, locks her account and
    starts it again: her client, coming back with its ticket, is refused and told why,
    and so is every later login of hers; bob is back as before. Unlocked, she logs in
    with the password she had; given a new one, the old one no longer works."""
    database = tmp_path / "chat.db"
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, database)
            host, port = await daemon.start(accounts=("alice", "bob"), password=PASSWORD)
            async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
                assert await daemon.stop() == 0
                locked = await accounts(database, "lock", "alice")
                assert locked.returncode == 0, locked.stderr
                assert locked.stdout == (
                    "Locked alice; `trio-chat accounts unlock alice` undoes it.\n"
                )
                listed = await accounts(database, "list")
                assert [line.split("  ")[0] for line in listed.stdout.splitlines()] == [
                    "alice",
                    "bob",
                ]
                assert listed.stdout.splitlines()[0].endswith(", locked)")
                await daemon.start(port)
                with trio.fail_after(20), pytest.raises(AccountLocked):
                    async for _event in alice.events():
                        pass  # until the session ends, with why
            with pytest.raises(AccountLocked):
                async with trio_chat.connect(host, port, "alice", PASSWORD):
                    pass
            async with trio_chat.connect(host, port, "bob", PASSWORD) as bob:
                assert "bob" in await bob.who()
            login = await trio.run_process(
                [*CLI, "login", "--name", "alice", "--host", host, "--port", str(port)],
                stdin=f"{PASSWORD}\n".encode(),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            assert login.returncode == ExitCode.ACCOUNT_LOCKED
            assert b"locked by the daemon's operator" in login.stderr

            async with trio_chat.connect(host, port, "bob", PASSWORD) as away:
                assert await daemon.stop() == 0
                unlocked = await accounts(database, "unlock", "alice")
                assert unlocked.stdout == "Unlocked alice.\n"
                renewed = await accounts(  # the operator's own password is not taken
                    database,
                    "password",
                    "bob",
                    given=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n",
                    env={"TRIO_CHAT_PASSWORD": "the operator's own"},
                )
                assert renewed.returncode == 0, renewed.stderr
                unknown = await accounts(database, "lock", "carol")
                assert unknown.returncode == ExitCode.UNKNOWN_USER
                assert "`trio-chat accounts list` shows them" in unknown.stderr
                await daemon.start(port)
                # Bob's client, coming back, is told why his password no longer works
                # (it said only "Wrong password", though he had typed nothing).
                with trio.fail_after(20), pytest.raises(WrongPassword) as changed:
                    async for _event in away.events():
                        pass
                assert str(changed.value) == PASSWORD_CHANGED_AWAY
            async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
                assert "alice" in await alice.who()
            async with trio_chat.connect(host, port, "bob", NEW_PASSWORD) as bob:
                assert "bob" in await bob.who()
            with pytest.raises(WrongPassword):
                async with trio_chat.connect(host, port, "bob", PASSWORD):
                    pass
            assert await daemon.stop() == 0


def test_no_ticket_lets_a_locked_account_in_whatever_its_mark() -> None:
    """A ticket marked with the password the account still has under its lock, or with
    the lock's own hash, does not open the account (a ticket without a mark, taken once
    until it expired, did, and the new ticket it was given worked on)."""
    driver = locked_room()
    account = driver.engine.accounts["alice"]
    assert account.locked
    for ticket in (
        Ticket(account.id, account.key, driver.wall + 3600, password_mark(account.hash_to_check)),
        Ticket(account.id, account.key, driver.wall + 3600, password_mark(account.password_hash)),
    ):
        alice = Peer(driver, "alice", "not her password", login=False)
        alice.connection.ticket = driver.keys.tickets.seal(ticket)
        alice.login()
        alice.settle()
        assert not alice.connection.ready
        assert isinstance(alice.connection.failure, WrongPassword)  # the password, tried next


async def test_accounts_leave_a_database_of_another_version_as_it_is(tmp_path: Path) -> None:
    """`list` sounds read-only: run from a newer trio-chat than the daemon's, it would have
    upgraded the database for good, and the daemon refused it from then on."""
    database = tmp_path / "chat.db"
    with sqlite3.connect(database) as db:
        for statement in MIGRATIONS[0].split(";"):
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
    listed = await accounts(database, "list")
    assert listed.returncode == ExitCode.DATABASE
    assert f"is of schema 1, this trio-chat's {SCHEMA_VERSION}" in listed.stderr
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
    missing = await accounts(tmp_path / "nothing.db", "list")
    assert missing.returncode == ExitCode.DATABASE
    assert "There is no database at" in missing.stderr
    # An empty file, another program's database: left as they were (opened, they would
    # have been made trio-chat's).
    empty, other = tmp_path / "empty.db", tmp_path / "other.db"
    empty.touch()
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    before = other.read_bytes()
    for path in (empty, other):
        refused = await accounts(path, "lock", "bob")
        assert refused.returncode == ExitCode.DATABASE
        assert refused.stderr == (
            f"{str(path)!r} is not a trio-chat database; name the daemon's with --db.\n"
        )
    assert empty.read_bytes() == b"" and other.read_bytes() == before


async def test_names_the_terminal_cannot_show_are_escaped_not_a_traceback(
    tmp_path: Path,
) -> None:
    """An operator's terminal in Latin-1: `Džemal` and `张伟` are listed as escapes (the
    listing stopped at the first with a traceback)."""
    database = tmp_path / "chat.db"
    store = SqliteStore.open(database)
    made = "2026-11-30T00:00:00.000Z"
    for n, name in enumerate(["José", "Džemal", "张伟"], start=1):
        store.write([Account(n, name, name.casefold(), f"$argon2id$fake{n}", made)])
    store.write([Message(1, made, 3, "张伟", "你好 🙂", None, None, "c1")])
    store.close()
    for command in ("accounts", "messages"):
        result = await trio.run_process(
            [*CLI, command, "list", "--db", str(database)],
            env={**os.environ, "PYTHONIOENCODING": "latin-1"},
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr
        listed = result.stdout.decode("latin-1")
        assert "\\u5f20\\u4f1f" in listed  # 张伟
        if command == "accounts":
            assert "José" in listed and "D\\u017eemal" in listed
        else:
            assert "\\u4f60\\u597d \\U0001f642" in listed  # 你好 🙂


async def test_a_database_damaged_past_its_first_page_is_a_sentence_not_a_traceback(
    tmp_path: Path,
) -> None:
    database = tmp_path / "chat.db"
    driver = EngineDriver()
    driver.add_account("alice", PASSWORD)
    store = SqliteStore.open(database)
    store.write(driver.stored_accounts())
    store.close()
    with sqlite3.connect(database) as db:
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
    with database.open("r+b") as file:
        file.seek(page_size)
        file.write(b"\xa5" * (database.stat().st_size - page_size))
    damaged = (
        f"Cannot read the database {str(database)!r}: it is damaged; put a backup back "
        "(`trio-chat backup` makes them).\n"
    )
    listed = await accounts(database, "list")
    assert (listed.returncode, listed.stderr) == (ExitCode.DATABASE, damaged)
    with trio.fail_after(30):
        served = await trio.run_process(
            [*CLI, "serve", "--host", "127.0.0.1", "--port", "0", "--db", str(database)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert served.returncode == ExitCode.DATABASE
    assert served.stderr.decode().endswith(damaged)
    assert b"Traceback" not in served.stderr


async def test_a_new_password_the_input_ends_before_is_asked_of_the_right_place(
    tmp_path: Path,
) -> None:
    # It said to give it in TRIO_CHAT_PASSWORD, which `accounts password` never reads.
    database = tmp_path / "chat.db"
    store = SqliteStore.open(database)
    driver = EngineDriver()
    driver.add_account("bob", PASSWORD)
    store.write(driver.stored_accounts())
    store.close()
    refused = await accounts(database, "password", "bob", env={"TRIO_CHAT_PASSWORD": "x" * 12})
    assert refused.returncode == ExitCode.INTERRUPTED
    assert refused.stderr.endswith(
        "The input ended before the new password; give it on a line of its own, or with "
        "--password-file.\n"
    )


def daemon_answers(
    monkeypatch: pytest.MonkeyPatch, *answers: Reply | ControlRefused | None
) -> list[Any]:
    """Have the commands' running daemon answer `answers`, in turn (None: no daemon
    runs); what they asked of it (each request, with the users its socket may be of) is
    returned."""
    asked: list[Any] = []
    waiting = list(answers)

    def ask(path: Path, request: Request, owners: set[int] | None = None) -> Reply | None:
        asked.append((request, owners))
        answer = waiting.pop(0)
        if isinstance(answer, ControlRefused):
            raise answer
        return answer

    monkeypatch.setattr(accounts_command, "ask", ask)
    return asked


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (Reply(False, "stopping", "The daemon is stopping; it may have."), ExitCode.UNREACHABLE),
        (Reply(False, "not_stored", NOT_STORED), ExitCode.DATABASE),
        (Reply(False, "unknown_message", "There is no message 7."), ExitCode.UNKNOWN_MESSAGE),
        (Reply(False, "bad_request", "That is not a request."), ExitCode.FAILURE),
        (ControlRefused("It did not answer.", unanswered=True), ExitCode.UNREACHABLE),
        (ControlRefused("It is another user's."), ExitCode.REJECTED),
    ],
)
def test_a_running_daemons_refusal_is_its_sentence_and_exit_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: Reply | ControlRefused, code: int
) -> None:
    daemon_answers(monkeypatch, answer)
    locked = CliRunner().invoke(cli_app, ["accounts", "lock", "alice", "--db", str(tmp_path)])
    assert (locked.exit_code, locked.stdout) == (code, "")
    assert locked.stderr == f"{answer.message if isinstance(answer, Reply) else answer}\n"


def test_what_a_running_daemon_answers_is_said_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "chat.db"
    made = "2026-12-06T16:00:00.000Z"
    store = SqliteStore.open(database)
    store.write([Account(1, "alice", "alice", "hash", made)])
    store.close()
    locked = AccountLine("alice", made, 0, locked=True)
    free = AccountLine("alice", made, 0, locked=False)
    asked = daemon_answers(
        monkeypatch,
        Reply(False, "unknown_user", "There is no account named 'carol'."),
        Reply(True, accounts=[locked]),
        Reply(True, accounts=[free]),
        Reply(True, accounts=[locked]),  # find, before the password is asked for
        Reply(True, accounts=[locked], ended=2),
        Reply(
            True,
            accounts=[
                AccountLine("alice", made, 3, False, 2),
                AccountLine("bob", made, 0, False, 1),
                AccountLine("carol", made, 0, False),
            ],
        ),
        None,  # the daemon stopped
    )
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str, str]:
        done = runner.invoke(cli_app, ["accounts", *args, "--db", str(database)])
        return done.exit_code, done.stdout, done.stderr

    assert run("lock", "carol") == (
        ExitCode.UNKNOWN_USER,
        "",
        "There is no account named 'carol'; `trio-chat accounts list` shows them.\n",
    )
    assert run("lock", "alice")[1] == (
        "Locked alice (it was already); `trio-chat accounts unlock alice` undoes it.\n"
    )
    assert run("unlock", "alice")[1] == "Unlocked alice (it was not locked).\n"
    new = tmp_path / "new"
    new.write_text(f"{NEW_PASSWORD}\n")
    assert run("password", "alice", "--password-file", str(new))[1] == (
        "Set the password of alice (it stays locked) (2 sessions ended).\n"
    )
    assert run("list") == (
        0,
        f"alice  (made {made}, 3 private messages waiting, in the room, 2 sessions)\n"
        f"bob  (made {made}, in the room)\n"
        f"carol  (made {made})\n",
        "3 accounts.\n",
    )
    assert run("kick", "carol") == (  # its database is asked who that is
        ExitCode.UNKNOWN_USER,
        "",
        "There is no account named 'carol'; `trio-chat accounts list` shows them.\n",
    )
    owner = {database.stat().st_uid}
    assert [(request.action, owners) for request, owners in asked] == [
        ("lock", owner),
        ("lock", owner),
        ("unlock", owner),
        ("find", owner),
        ("password", owner),
        ("list", owner),
        ("kick", owner),
    ]


async def test_a_daemon_closed_to_registrations_lets_in_the_accounts_its_operator_makes(
    tmp_path: Path,
) -> None:
    """Made before the daemon's first start (the database and its key with them), and
    while it runs: each logs in; a registration is refused in one sentence, exit 20."""
    database = tmp_path / "chat.db"
    password_file = tmp_path / "password"
    password_file.write_text(f"{PASSWORD}\n")
    made = CliRunner().invoke(
        cli_app, ["accounts", "add", "alice", "--db", str(database)], f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert (made.exit_code, made.stdout) == (0, "Made the account alice.\n")
    assert stat.S_IMODE(database.with_suffix(".key").stat().st_mode) == 0o600
    home = tmp_path / "home"
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, database, "--no-registrations")
            _host, port = await daemon.start()
            assert not any("new key" in line for line in daemon.output)
            bob = await accounts(database, "add", "bob", "--password-file", str(password_file))
            assert (bob.returncode, bob.stdout) == (0, "Made the account bob.\n")
            for name in ("alice", "bob"):
                logged_in = await login(port, home, name)
                assert logged_in.returncode == 0, logged_in.stderr
            registered = await trio.run_process(
                [*CLI, "register", "--name", "carol"],
                env=cli_env(port, HOME=str(home), TRIO_CHAT_PASSWORD=PASSWORD),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            assert registered.returncode == ExitCode.REGISTRATIONS_CLOSED
            assert registered.stderr.decode().endswith(
                "This daemon takes no registrations; ask its operator for an account.\n"
            )
            assert await daemon.stop() == 0
    listed = CliRunner().invoke(cli_app, ["accounts", "list", "--db", str(database)])
    assert [line.split("  ")[0] for line in listed.stdout.splitlines()] == ["alice", "bob"]


def add_account(database: Path, name: str, given: str = "") -> tuple[int, str, str]:
    """`trio-chat accounts add NAME --db DATABASE`, in this process, with `given` for its
    input: its exit status, output and errors."""
    done = CliRunner().invoke(cli_app, ["accounts", "add", name, "--db", str(database)], given)
    return done.exit_code, done.stdout, done.stderr


def test_a_name_taken_or_no_account_may_have_is_refused_before_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "chat.db"
    store = SqliteStore.open(database)
    store.write([Account(4, "alice", "alice", "hash", "2026-12-06T16:00:00.000Z")])
    store.close()
    add = functools.partial(add_account, database)
    # Nothing is given for a password: asked for it, each would say the input ended.
    assert add("ALICE") == (
        ExitCode.NAME_TAKEN,
        "",
        "The name 'ALICE' is taken; choose another.\n",
    )
    assert add("aIice") == (
        ExitCode.NAME_TAKEN,
        "",
        "The name 'aIice' could be mistaken for 'alice'; choose another.\n",
    )
    assert add("no one") == (
        ExitCode.INVALID_NAME,
        "",
        "A name may hold only letters, digits, '_', '-' and '.', not spaces.\n",
    )
    assert add("bob", "short\nshort\n")[0] == ExitCode.INVALID_PASSWORD
    assert add("bob", f"{PASSWORD}\n{PASSWORD}\n")[1] == "Made the account bob.\n"
    store = SqliteStore.open(database)
    (bob,) = [account for account, _ in store.accounts() if account.key == "bob"]
    store.close()
    assert bob.id == 5 and bob.rid is None and is_password_hash(bob.password_hash)
    # A running daemon is asked: whether the name is free (no hash), then to make the
    # account (taken meanwhile, it says so then).
    asked = daemon_answers(
        monkeypatch,
        Reply(False, "name_taken", "The name 'carol' is taken; choose another."),
        Reply(True),
        Reply(False, "name_taken", "The name 'dave' could be mistaken for 'davе'."),
        Reply(True),
        None,  # stopped meanwhile: the database is changed
    )
    assert add("carol") == (
        ExitCode.NAME_TAKEN,
        "",
        "The name 'carol' is taken; choose another.\n",
    )
    code, said, problem = add("dave", f"{PASSWORD}\n{PASSWORD}\n")
    assert (code, said) == (ExitCode.NAME_TAKEN, "")
    assert problem.endswith("password: \nThe name 'dave' could be mistaken for 'davе'.\n")
    assert add("erin", f"{PASSWORD}\n{PASSWORD}\n")[:2] == (0, "Made the account erin.\n")
    assert [request.action for request, _owners in asked] == ["add"] * 5
    assert [is_password_hash(request.password_hash) for request, _owners in asked] == [
        False,
        False,
        True,
        False,
        True,
    ]
    store = SqliteStore.open(database)
    assert [account.name for account, _ in store.accounts()] == ["alice", "bob", "erin"]
    store.close()


def test_an_account_not_made_leaves_no_new_database_behind(tmp_path: Path) -> None:
    """With no database yet, one is made (and the daemon's key) with the account, not
    before: a password refused or not given leaves the folder as it was (a mistyped
    --db makes nothing)."""
    database = tmp_path / "chat.db"
    runner = CliRunner()
    for given, code in [
        ("", ExitCode.INTERRUPTED),  # the input ended before the password
        ("short\nshort\n", ExitCode.INVALID_PASSWORD),
        (f"{PASSWORD}\n{NEW_PASSWORD}\n", ExitCode.INVALID_PASSWORD),
    ]:
        done = runner.invoke(cli_app, ["accounts", "add", "bob", "--db", str(database)], given)
        assert done.exit_code == code
        assert list(tmp_path.iterdir()) == []
    made = runner.invoke(
        cli_app, ["accounts", "add", "bob", "--db", str(database)], f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert (made.exit_code, made.stdout) == (0, "Made the account bob.\n")
    assert database.exists() and database.with_suffix(".key").exists()


def test_a_database_made_by_accounts_add_is_said_to_be_new(tmp_path: Path) -> None:
    """A mistyped --db makes a database no daemon serves: `accounts add` says it made one
    (the account made, as output says), and says nothing of it for one already there."""
    database = tmp_path / "my room" / "chta.db"
    given = f"{PASSWORD}\n{PASSWORD}\n"
    assert add_account(database, "bob", given) == (
        0,
        "Made the account bob.\n",
        "New password: \nRepeat the password: \n"
        f"There was no database at {str(database)!r}: it was made, with the daemon's key, "
        f"as a first start would; `trio-chat serve --db '{database}'` serves it.\n",
    )
    assert add_account(database, "carol", given) == (
        0,
        "Made the account carol.\n",
        "New password: \nRepeat the password: \n",
    )


def test_a_database_link_to_nothing_or_a_key_others_may_read_makes_no_account(
    tmp_path: Path,
) -> None:
    """`accounts add` where --db is a link to nothing is refused before the password is
    asked for (nothing is made through the link); next to a key file that others may read,
    in one sentence, exit 11, as `serve` would refuse it."""
    runner = CliRunner()
    link = tmp_path / "link.db"
    link.symlink_to(tmp_path / "elsewhere" / "chat.db")
    linked = runner.invoke(cli_app, ["accounts", "add", "bob", "--db", str(link)])  # no input
    assert (linked.exit_code, linked.stdout) == (ExitCode.DATABASE, "")
    assert linked.stderr == f"There is no database at {str(link)!r}; name the daemon's with --db.\n"
    database = tmp_path / "chat.db"
    daemon_keys(database)
    key = database.with_suffix(".key")
    key.chmod(0o644)
    shown = runner.invoke(
        cli_app, ["accounts", "add", "bob", "--db", str(database)], f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert (shown.exit_code, shown.stdout) == (ExitCode.DATABASE, "")
    said = shown.stderr.splitlines()[-1]
    assert said.startswith(f"The key file {str(key)!r} may be read by others (mode 0644)")
    # No database was made beside it: the same command again is refused as this one was,
    # not let through to make the account beside the key as it is.
    assert not database.exists()
    again = runner.invoke(
        cli_app, ["accounts", "add", "bob", "--db", str(database)], f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert (again.exit_code, again.stderr.splitlines()[-1]) == (ExitCode.DATABASE, said)
    assert not database.exists()
    # So with the static key alone beside it, its ticket key not there yet.
    database.with_suffix(".tickets").unlink()
    alone = runner.invoke(
        cli_app, ["accounts", "add", "bob", "--db", str(database)], f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert (alone.exit_code, alone.stderr.splitlines()[-1]) == (ExitCode.DATABASE, said)
    assert not database.exists()


def test_a_password_no_login_could_carry_or_a_name_the_daemon_refuses_makes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`accounts add`: a password the rules allow (256 characters) but no login could
    carry (4 bytes each) is refused, exit 8, the folder left as it was; a running daemon
    that refuses the name (one of another version, with other rules) is said as it
    answered, exit 7."""
    database = tmp_path / "chat.db"
    password_file = tmp_path / "password"
    password_file.write_text("\U0001f642" * 256 + "\n")
    runner = CliRunner()
    args = ["accounts", "add", "bob", "--db", str(database)]
    done = runner.invoke(cli_app, [*args, "--password-file", str(password_file)])
    assert (done.exit_code, done.stdout) == (ExitCode.INVALID_PASSWORD, "")
    assert done.stderr.startswith("A password must fit in ")
    assert list(tmp_path.iterdir()) == [password_file]
    daemon_answers(monkeypatch, Reply(False, "invalid_name", "No account may be named 'bob'."))
    refused = runner.invoke(cli_app, args)
    assert (refused.exit_code, refused.stdout, refused.stderr) == (
        ExitCode.INVALID_NAME,
        "",
        "No account may be named 'bob'.\n",
    )


def test_a_new_password_is_measured_with_the_accounts_own_name(tmp_path: Path) -> None:
    """`accounts password` with the name typed in another form (full-width letters): the
    password is measured against a login under the account's own name, so one that such
    a login carries (183 characters of 4 bytes, the most for `alice`) is taken."""
    database = tmp_path / "chat.db"
    store = SqliteStore.open(database)
    store.write([Account(1, "alice", "alice", "hash", "2026-12-06T16:00:00.000Z")])
    store.close()
    password_file = tmp_path / "password"
    password_file.write_text("\U0001f642" * 183 + "\n")
    given = ["--password-file", str(password_file)]
    done = CliRunner().invoke(
        cli_app, ["accounts", "password", "ＡＬＩＣＥ", "--db", str(database), *given]
    )
    assert (done.exit_code, done.stderr) == (0, "")
    assert done.stdout.startswith("Set the password of alice")


def remove_account(database: Path, *args: str, given: str = "") -> tuple[int, str, str]:
    """`trio-chat accounts remove ARGS --db DATABASE`, in this process: its exit status,
    output and errors."""
    done = CliRunner().invoke(cli_app, ["accounts", "remove", *args, "--db", str(database)], given)
    return done.exit_code, done.stdout, done.stderr


def listed(database: Path, *args: str) -> tuple[int, str, str]:
    """`trio-chat accounts list ARGS --db DATABASE`, in this process: its exit status,
    output and errors."""
    done = CliRunner().invoke(cli_app, ["accounts", "list", *args, "--db", str(database)])
    return done.exit_code, done.stdout, done.stderr


def test_an_account_removed_while_the_daemon_is_stopped_is_gone_at_its_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "chat.db"
    made = "2026-12-06T16:00:00.000Z"
    store = SqliteStore.open(database)
    psst = Message(1, made, 1, "alice", "psst", recipient_id=2, recipient="bob", cid="c1")
    store.write([Account(1, "alice", "alice", "hash", made), Account(2, "bob", "bob", "h", made)])
    store.write([psst])
    store.close()
    # Without a terminal to ask at, only with --yes.
    assert remove_account(database, "bob") == (
        ExitCode.USAGE,
        "",
        f"{accounts_command.NOT_CONFIRMED}\n",
    )
    assert remove_account(database, "carol", "--yes") == (
        ExitCode.UNKNOWN_USER,
        "",
        "There is no account named 'carol'; `trio-chat accounts list` shows them.\n",
    )
    at_a_terminal(monkeypatch)
    kept = remove_account(database, "bob", given="n\n")
    assert kept[0] == ExitCode.REJECTED and kept[1].startswith("Remove bob for good")
    assert kept[2] == "Nothing was removed.\n"
    store = SqliteStore.open(database, migrate=False)
    assert [a.name for a, _waiting in store.accounts()] == ["alice", "bob"]
    store.close()
    removed = remove_account(database, "BOB", given="y\n")
    assert removed[0] == 0 and removed[1].endswith("? [y/N]: y\nRemoved bob; 0 sessions ended.\n")
    assert remove_account(database, "bob", "--yes")[0] == ExitCode.UNKNOWN_USER
    store = SqliteStore.open(database)  # as the daemon starts
    snapshot = store.load(window=10)
    store.close()
    assert [a.name for a in snapshot.accounts] == ["alice"]
    assert (snapshot.held, snapshot.recent, snapshot.unread) == ([("bob", "bob")], [], {})
    held = listed(database, "--removed")
    assert held[0] == 0 and held[2] == "1 removed account holding a name.\n"
    assert re.fullmatch(r"bob  \(removed 20\d\d-\d\d-\d\dT[\d:.]+Z; its name held\)\n", held[1])
    assert "bob" not in listed(database)[1]
    # Held from registrations, the operator may give the name out again, as a new account.
    assert add_account(database, "b0b")[0] == ExitCode.NAME_TAKEN
    when = held_when(database)
    given_out = add_account(database, "bob", f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    assert given_out[0] == 0 and given_out[1].endswith("Made the account bob.\n")
    # Its room messages stay under the name, now another's: the operator is told.
    assert given_out[2].endswith(
        f"The name was held by the account removed {when}: what that one said in the room "
        "is still shown under the name bob, now this account's.\n"
    )
    assert listed(database, "--removed") == (0, "", "0 removed accounts holding a name.\n")
    store = SqliteStore.open(database)
    assert [(a.id, a.name) for a in store.load(window=10).accounts] == [(1, "alice"), (3, "bob")]
    store.close()


def test_an_account_command_on_a_removed_name_says_it_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `accounts list` does not show a removed account: told only "no account", the operator
    # would look there for it in vain.
    database = tmp_path / "chat.db"
    made = "2026-12-06T16:00:00.000Z"
    store = SqliteStore.open(database)
    store.write([Account(1, "alice", "alice", "hash", made), Account(2, "bob", "bob", "h", made)])
    store.close()
    assert remove_account(database, "bob", "--yes")[0] == 0
    when = re.escape(held_when(database))
    held = (
        rf"There is no account named '(bob|BOB)': bob's was removed \({when}\), and the name is "
        r"held \(`trio-chat accounts list --removed`; `trio-chat accounts add bob` gives it "
        r"out again, as a new account\)\.\n"
    )
    again = remove_account(database, "BOB", "--yes")
    assert again[0] == ExitCode.UNKNOWN_USER and re.fullmatch(held, again[2])
    for action in ("lock", "unlock", "mute", "unmute", "kick"):
        done = CliRunner().invoke(cli_app, ["accounts", action, "bob", "--db", str(database)])
        assert done.exit_code == ExitCode.UNKNOWN_USER and re.fullmatch(held, done.stderr)
    at_a_terminal(monkeypatch)
    password = CliRunner().invoke(cli_app, ["accounts", "password", "bob", "--db", str(database)])
    assert password.exit_code == ExitCode.UNKNOWN_USER and re.fullmatch(held, password.stderr)
    # A name no account ever had is told as before.
    assert remove_account(database, "carol", "--yes")[2] == (
        "There is no account named 'carol'; `trio-chat accounts list` shows them.\n"
    )


def held_when(database: Path) -> str:
    """When the one account removed from `database` was removed, as `list --removed` says."""
    listing = listed(database, "--removed")[1]
    found = re.fullmatch(r"\S+  \(removed (\S+); its name held\)\n", listing)
    assert found is not None, listing
    return found.group(1)


def test_a_held_name_kept_from_before_the_rules_is_shown_escaped_wherever_it_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A removed account's name with a character that only hides (U+2066, kept from before
    the rules) is escaped in `list --removed`, in a command's "no account" (the daemon
    stopped or running) and in the note of `add` giving the name out again; `list
    --removed` on what is not this trio-chat's database says so (exit 11)."""
    database = tmp_path / "chat.db"
    made = "2026-12-06T16:00:00.000Z"
    store = SqliteStore.open(database)
    store.write(
        [Account(1, "alice", "alice", "h", made), Account(2, "bob\u2066", "bob", "h", made)]
    )
    store.close()
    assert remove_account(database, "bob", "--yes")[0] == 0
    held = listed(database, "--removed")
    assert re.fullmatch(r"bob\\u2066  \(removed \S+; its name held\)\n", held[1]), held
    when = held_when(database)
    said = (
        f"There is no account named 'bob': bob\\u2066's was removed ({when}), and the name is "
        "held (`trio-chat accounts list --removed`; `trio-chat accounts add bob\\u2066` gives "
        "it out again, as a new account).\n"
    )
    stopped = CliRunner().invoke(cli_app, ["accounts", "lock", "bob", "--db", str(database)])
    assert (stopped.exit_code, stopped.stderr) == (ExitCode.UNKNOWN_USER, said)
    given_out = add_account(database, "BOB", f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    # Given out in another case: the held name's key is the same.
    assert given_out[0] == 0 and given_out[2].endswith(
        f"The name was held by the account removed {when}: what that one said in the room "
        "is still shown under the name bob\\u2066, now this account's.\n"
    )
    # Not this trio-chat's database: no database at all, or one of another schema.
    missing = listed(tmp_path / "nothing.db", "--removed")
    assert missing[0] == ExitCode.DATABASE and "There is no database at" in missing[2]
    older = tmp_path / "older.db"
    with sqlite3.connect(older) as db:
        for statement in MIGRATIONS[0].split(";"):
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
    other = listed(older, "--removed")
    assert other[0] == ExitCode.DATABASE
    assert f"is of schema 1, this trio-chat's {SCHEMA_VERSION}" in other[2]


def test_a_running_daemons_no_account_for_a_held_name_says_it_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The running daemon answers `unknown_user` for a removed account's name: the command
    says the name is held, read from the database, as it does with the daemon stopped."""
    database = tmp_path / "chat.db"
    made = "2026-12-06T16:00:00.000Z"
    store = SqliteStore.open(database)
    store.write([Account(1, "alice", "alice", "h", made), Account(2, "bob", "bob", "h", made)])
    store.close()
    assert remove_account(database, "bob", "--yes")[0] == 0
    when = held_when(database)
    daemon_answers(monkeypatch, Reply(False, "unknown_user", "There is no account named 'bob'."))
    done = CliRunner().invoke(cli_app, ["accounts", "mute", "bob", "--db", str(database)])
    assert (done.exit_code, done.stderr) == (
        ExitCode.UNKNOWN_USER,
        f"There is no account named 'bob': bob's was removed ({when}), and the name is held "
        "(`trio-chat accounts list --removed`; `trio-chat accounts add bob` gives it out "
        "again, as a new account).\n",
    )
