"""`trio-chat backup`: the database and its keys copied while the daemon runs, and a
daemon started on the copy that clients take for the same one."""

from __future__ import annotations

import errno
import fcntl
import os
import shlex
import sqlite3
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

import trio_chat
import trio_chat.backup as backup_module
from trio_chat.backup import BackupError, back_up
from trio_chat.cli import ExitCode
from trio_chat.events import PublicMessage
from trio_chat.keys import daemon_keys, daemon_public_key
from trio_chat.names import name_key
from trio_chat.records import Account, AccountRemoval
from trio_chat.store import SqliteStore
from trio_chat.store_files import log_of
from trio_chat.testing.daemon import CLI, DaemonProcess
from trio_chat.testing.listening import received

PASSWORD = "correct horse"
FAST_CHAT = ("--message-rate", "1000", "--message-burst", "1000")


async def backup(*args: str, command: str = "backup") -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [*CLI, command, *args], check=False, capture_stdout=True, capture_stderr=True
    )


async def everything_said(chat: trio_chat.ChatClient) -> list[PublicMessage]:
    """Every public message in the history, oldest first, read page by page."""
    said: list[PublicMessage] = []
    before: int | None = None
    while page := await chat.history(100, before=before):
        said[:0] = [m for m in page if isinstance(m, PublicMessage)]
        before = page[0].id
    return said


async def daemon_with_alice(
    nursery: trio.Nursery, database: Path
) -> tuple[DaemonProcess, str, int]:
    """A daemon (a process, which a backup runs beside) with alice registered."""
    daemon = DaemonProcess(nursery, database, *FAST_CHAT)
    host, port = await daemon.start(accounts=["alice"], password=PASSWORD)
    return daemon, host, port


def crashed(database: Path) -> None:
    """Leave `database` as a daemon killed after alice registered leaves it: its log."""
    store = SqliteStore.open(database)
    store.write([Account(1, "alice", name_key("alice"), "-", "")])
    left = {path: path.read_bytes() for path in (database, log_of(database))}
    store.close()  # which folds the log in: put back as it was
    for path, data in left.items():
        path.write_bytes(data)


async def test_a_backup_taken_while_the_daemon_writes_restores_as_the_same_daemon(
    tmp_path: Path,
) -> None:
    database, folder = tmp_path / "live" / "chat.db", tmp_path / "backups"
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            daemon, host, port = await daemon_with_alice(nursery, database)
            async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
                before = [await alice.say(f"before {n}") for n in range(20)]
                # The daemon goes on writing while the copy is taken.
                for n in range(200):
                    alice.say_nowait(f"during {n}")
                done = await backup("--db", str(database), str(folder))
                await alice.drain()
            assert await daemon.stop() == 0
            assert done.returncode == 0, done.stderr
            said = done.stdout.decode()
            assert said.startswith(f"Backed up {database} (1 account, ")
            assert str(folder) in said
            names = sorted(path.name for path in folder.iterdir())
            assert names == ["chat.db", "chat.key", "chat.tickets"]
            for path in folder.iterdir():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            assert daemon_public_key(folder / "chat.db") == daemon_public_key(database)

            # Restored: a daemon on the copy is the same daemon to clients that trusted
            # the first (its key), with the accounts and what was said up to the copy.
            restored = DaemonProcess(nursery, folder / "chat.db")
            host, port = await restored.start()
            async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
                kept = await everything_said(alice)
            assert await restored.stop() == 0
    texts = [m.text for m in kept]
    assert texts[: len(before)] == [m.text for m in before]
    assert texts[len(before) :] == [f"during {n}" for n in range(len(texts) - len(before))]


async def test_what_cannot_be_backed_up_is_told_in_one_sentence(tmp_path: Path) -> None:
    with trio.fail_after(30):
        missing = await backup("--db", str(tmp_path / "none.db"), str(tmp_path / "out"))
        assert missing.returncode == ExitCode.DATABASE
        assert missing.stderr.decode() == (
            f"There is no database at {tmp_path / 'none.db'}; give the daemon's with --db.\n"
        )
        assert not (tmp_path / "none.db").exists()  # not made by looking for it
        assert not (tmp_path / "out").exists()

        garbage = tmp_path / "garbage.db"
        garbage.write_bytes(b"not a database at all" * 100)
        daemon_keys(garbage)  # its keys sound: the database is what is damaged
        damaged = await backup("--db", str(garbage), str(tmp_path / "out"))
        assert damaged.returncode == ExitCode.DATABASE
        assert damaged.stderr.decode().startswith(f"Cannot back up {garbage}: ")
        assert damaged.stderr.decode().count("\n") == 1
        assert b"Traceback" not in damaged.stderr
        assert list((tmp_path / "out").iterdir()) == []  # nothing half-written left


async def test_a_database_named_relative_to_the_current_folder_is_backed_up(
    tmp_path: Path,
) -> None:
    # `trio-chat backup --db chat.db copies`, run in the daemon's folder.
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, tmp_path / "chat.db")
            await daemon.start()
            assert await daemon.stop() == 0
        done = await trio.run_process(
            [*CLI, "backup", "--db", "chat.db", "copies"],
            cwd=tmp_path,
            check=False,
            capture_stdout=True,
            capture_stderr=True,
        )
    assert done.returncode == 0, done.stderr
    # Named by its whole path, wherever the command was run.
    backed_up = f"Backed up {tmp_path / 'chat.db'} (0 accounts, 0 messages)"
    assert done.stdout.decode().startswith(backed_up)
    names = sorted(path.name for path in (tmp_path / "copies").iterdir())
    assert names == ["chat.db", "chat.key", "chat.tickets"]


async def test_a_backup_restored_after_a_crash_as_told_is_what_was_backed_up(
    tmp_path: Path,
) -> None:
    # The daemon killed (what a backup is restored after) leaves its write-ahead log
    # beside the database: put back under it, the copy would get the crashed database's
    # later pages laid over it at the next start, and be that database again, or a mix.
    database, folder = tmp_path / "live" / "chat.db", tmp_path / "backups"
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            daemon, host, port = await daemon_with_alice(nursery, database)
            async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
                for n in range(5):
                    await alice.say(f"kept {n}")
                done = await backup("--db", str(database), str(folder))
                for n in range(50):
                    await alice.say(f"lost {n}")
            await daemon.kill()
            assert done.returncode == 0, done.stderr
            # To paste into a shell as it is, the database named: not the default one.
            quoted = f"{shlex.quote(str(folder))} --db {shlex.quote(str(database))}"
            assert f"To restore, stop the daemon and run `trio-chat restore {quoted}`." in (
                done.stdout.decode()
            )
            crashed = {
                name: (database.parent / name).read_bytes()
                for name in ("chat.db", "chat.db-wal", "chat.key", "chat.tickets")
            }
            # As told: the crashed daemon's files, its log with them, moved aside.
            put_back = await backup("--db", str(database), str(folder), command="restore")
            assert put_back.returncode == 0, put_back.stderr
            (aside,) = database.parent.glob("chat.db.before-restore-*")
            assert put_back.stdout.decode() == (
                f"Restored {database} (1 account, 5 messages) and its keys from {folder}; what "
                f"was there is in {aside}.\n"
            )
            assert {name: (aside / name).read_bytes() for name in crashed} == crashed
            assert not (database.parent / "chat.db-wal").exists()
            assert (database.parent / "chat.db").read_bytes() == (folder / "chat.db").read_bytes()
            host, port = await daemon.start()
            async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
                kept = await everything_said(alice)
            assert await daemon.stop() == 0
    assert [m.text for m in kept] == [f"kept {n}" for n in range(5)]


async def test_a_client_that_stayed_through_a_restore_is_shown_what_comes_after_it(
    tmp_path: Path,
) -> None:
    """Bob listens while alice talks; a backup is taken, she says more, the daemon dies
    and the backup is restored. What she said after the backup is gone from the daemon,
    but bob was shown it: new messages must not come under its ids (a restored daemon
    counting on from its newest stored id gave them those, and bob's client dropped
    them as shown already, whispers included, which were then marked delivered)."""
    database, folder = tmp_path / "live" / "chat.db", tmp_path / "backups"
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            daemon, host, port = await daemon_with_alice(nursery, database)
            await trio_chat.register(host, port, "bob", PASSWORD)
            async with trio_chat.connect(host, port, "bob", PASSWORD) as bob:
                async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
                    await alice.say("kept")
                    done = await backup("--db", str(database), str(folder))
                    assert done.returncode == 0, done.stderr
                    for n in range(5):
                        await alice.say(f"lost {n}")
                    await alice.whisper("bob", "lost in private")
                seen = [m.text for m in await received(bob)]
                assert "lost 4" in seen and "lost in private" in seen
                await daemon.kill()
                restored = await backup("--db", str(database), str(folder), command="restore")
                assert restored.returncode == 0, restored.stderr
                await daemon.start(port)
                async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
                    await alice.say("after the restore")
                    await alice.whisper("bob", "after, in private")
                after = [m.text for m in await received(bob)]
            assert await daemon.stop() == 0
    assert "after the restore" in after and "after, in private" in after


def test_a_folder_that_cannot_be_one_is_named_not_the_database(tmp_path: Path) -> None:
    # The database is fine: saying "Cannot back up chat.db: file exists" sent people
    # to look at the database rather than at the folder they gave.
    database = tmp_path / "chat.db"
    store = SqliteStore.open(database)
    store.close()
    daemon_keys(database)
    a_file = tmp_path / "backups"
    a_file.write_text("not a folder\n")
    with pytest.raises(BackupError) as caught:
        back_up(database, a_file)
    assert str(caught.value) == f"{a_file} is a file, not a folder; give a folder to back up into."
    beneath = a_file / "daily"
    with pytest.raises(BackupError) as caught:
        back_up(database, beneath)
    assert str(caught.value) == f"Cannot make the folder {beneath}: not a directory."
    assert a_file.read_text() == "not a folder\n"


def test_a_folder_that_cannot_be_written_is_named_not_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database, folder = tmp_path / "chat.db", tmp_path / "backups"
    store = SqliteStore.open(database)
    store.close()
    daemon_keys(database)
    folder.mkdir()
    real_open = os.open

    def refused(path: Any, *args: Any, **kwargs: Any) -> int:
        if Path(path).parent == folder:  # what a folder of another user's does
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refused)
    with pytest.raises(BackupError) as caught:
        back_up(database, folder)
    assert str(caught.value) == f"Cannot write into {folder}: permission denied."


def test_backing_up_a_stopped_daemon_leaves_its_folder_as_it_was(tmp_path: Path) -> None:
    # Reading a database in WAL mode makes its `-wal` and `-shm` files; a read-only
    # reader cannot remove them as it leaves. They used to stay behind, empty.
    database = tmp_path / "chat.db"
    store = SqliteStore.open(database)
    store.close()
    daemon_keys(database)
    before = sorted(path.name for path in tmp_path.iterdir())
    made = back_up(database, tmp_path / "backups")
    assert made.accounts == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([*before, "backups"])


async def test_a_quiet_backup_says_nothing_when_it_works_and_why_when_it_does_not(
    tmp_path: Path,
) -> None:
    # For cron, which mails whatever a job prints.
    database = tmp_path / "chat.db"
    SqliteStore.open(database).close()
    daemon_keys(database)
    done = await backup("--quiet", "--db", str(database), str(tmp_path / "copies"))
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert (tmp_path / "copies" / "chat.db").exists()
    failed = await backup("-q", "--db", str(tmp_path / "none.db"), str(tmp_path / "more"))
    assert failed.returncode == ExitCode.DATABASE and failed.stderr and not failed.stdout


async def test_a_database_path_that_cannot_be_looked_at_is_one_sentence(tmp_path: Path) -> None:
    # A name too long (or a folder of the daemon's user's alone, for cron run as another)
    # was a traceback out of `Path.is_file`, exit 1.
    database = tmp_path / ("x" * 300)
    done = await backup("--quiet", "--db", str(database), str(tmp_path / "copies"))
    assert done.returncode == ExitCode.DATABASE
    assert done.stderr.decode() == f"Cannot use the database {database}: file name too long.\n"


def test_a_database_in_a_folder_this_user_cannot_enter_is_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "state" / "chat.db"
    database.parent.mkdir()
    SqliteStore.open(database).close()
    daemon_keys(database)
    real_stat = os.stat

    def refused(path: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(path).parent == database.parent:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", refused)
    with pytest.raises(BackupError) as refusal:
        back_up(database, tmp_path / "copies")
    assert str(refusal.value) == (
        f"Cannot back up {database}: permission denied; back up as the daemon's user."
    )


def test_a_running_daemons_log_is_left_to_it(tmp_path: Path) -> None:
    database = tmp_path / "chat.db"
    store = SqliteStore.open(database)
    try:
        daemon_keys(database)
        back_up(database, tmp_path / "backups")
        assert (tmp_path / "chat.db-wal").exists()
        assert (tmp_path / "chat.db-shm").exists()
        alice = Account(id=1, name="alice", key=name_key("alice"), password_hash="-", created="")
        assert store.write([alice]) == []  # the daemon's log still takes its commits
    finally:
        store.close()
    assert back_up(database, tmp_path / "backups").accounts == 1


def test_an_account_the_operator_removed_is_not_counted_in_a_backup(tmp_path: Path) -> None:
    """Its row stays, the author of what it said; the backup says the accounts there are."""
    database = tmp_path / "chat.db"
    store = SqliteStore.open(database)
    made = [
        Account(id=n, name=name, key=name, password_hash="-", created="")
        for n, name in ((1, "alice"), (2, "bob"))
    ]
    assert store.write([*made, AccountRemoval(1, "2026-12-08T00:00:00.000Z")]) == []
    store.close()
    daemon_keys(database)
    assert back_up(database, tmp_path / "backups").accounts == 1


def test_a_folder_holding_a_database_in_use_is_not_backed_up_into(tmp_path: Path) -> None:
    # `backup /srv/b --db /srv/a/chat.db` with a daemon running on /srv/b/chat.db put
    # a's database and keys over b's: b lost its key, and its own database.
    first, second = tmp_path / "a" / "chat.db", tmp_path / "b" / "chat.db"
    first.parent.mkdir()
    second.parent.mkdir()
    SqliteStore.open(first).close()
    daemon_keys(first)
    running = SqliteStore.open(second)  # another daemon's, running
    try:
        daemon_keys(second)
        kept = {path.name: path.read_bytes() for path in second.parent.iterdir()}
        with pytest.raises(BackupError) as caught:
            back_up(first, second.parent)
        assert str(caught.value) == (
            f"{second.parent} holds a database in use ({second} has its write-ahead log "
            "beside it, or a daemon running on it); back up into a folder of its own."
        )
        assert {path.name: path.read_bytes() for path in second.parent.iterdir()} == kept
    finally:
        running.close()
    back_up(first, tmp_path / "backups")
    back_up(first, tmp_path / "backups")  # an earlier backup's copy is replaced


def test_an_unreadable_key_is_named_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database, folder = tmp_path / "chat.db", tmp_path / "backups"
    SqliteStore.open(database).close()
    daemon_keys(database)
    key = tmp_path / "chat.key"
    real_open = Path.open

    def refused(path: Path, *args: Any, **kwargs: Any) -> Any:
        if path == key:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refused)
    with pytest.raises(BackupError) as caught:
        back_up(database, folder)
    assert str(caught.value) == (
        f"Cannot read the key file {key}: permission denied; back up as the daemon's user."
    )
    assert not (folder / "chat.db").exists()


def test_a_full_disk_under_the_folder_is_the_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database, folder = tmp_path / "chat.db", tmp_path / "backups"
    SqliteStore.open(database).close()
    daemon_keys(database)

    def full(_database: Path, _target: Path) -> tuple[int, int]:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(backup_module, "_copy_database", full)
    with pytest.raises(BackupError) as caught:
        back_up(database, folder)
    assert str(caught.value) == f"Cannot write into {folder}: its disk is full."


def test_a_missing_key_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    database, folder = tmp_path / "chat.db", tmp_path / "backups"
    SqliteStore.open(database).close()
    daemon_keys(database)
    for name in ("chat.key", "chat.tickets"):
        key = tmp_path / name
        kept = key.read_bytes()
        key.unlink()
        with pytest.raises(BackupError) as caught:
            back_up(database, folder)
        assert str(caught.value) == (
            f"There is no key file {key} beside the database; a daemon makes it on its first start."
        )
        key.write_bytes(kept)
    assert not folder.exists()


def test_the_folder_a_backup_makes_is_its_users_alone(tmp_path: Path) -> None:
    database, folder = tmp_path / "chat.db", tmp_path / "backups"
    SqliteStore.open(database).close()
    daemon_keys(database)
    back_up(database, folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_the_databases_own_folder_is_not_backed_up_into(tmp_path: Path) -> None:
    # Copied over itself, the database and its keys would be written while no one asked.
    database = tmp_path / "chat.db"
    SqliteStore.open(database).close()
    daemon_keys(database)
    kept = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    with pytest.raises(BackupError) as caught:
        back_up(database, tmp_path)
    assert str(caught.value) == f"{tmp_path} holds the database itself; back it up elsewhere."
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == kept


def test_a_folder_holding_a_crashed_or_locked_database_is_not_backed_up_into(
    tmp_path: Path,
) -> None:
    # A crashed daemon's log, or a restore holding the name (its log not yet beside it):
    # a copy put over either would lose what it stands for.
    first, second = tmp_path / "a" / "chat.db", tmp_path / "b" / "chat.db"
    first.parent.mkdir()
    second.parent.mkdir()
    SqliteStore.open(first).close()
    daemon_keys(first)
    crashed(second)
    daemon_keys(second)
    in_use = (
        f"{second.parent} holds a database in use ({second} has its write-ahead log beside "
        "it, or a daemon running on it); back up into a folder of its own."
    )
    kept = {path.name: path.read_bytes() for path in second.parent.iterdir()}
    with pytest.raises(BackupError) as caught:
        back_up(first, second.parent)
    assert str(caught.value) == in_use
    assert {path.name: path.read_bytes() for path in second.parent.iterdir()} == kept
    log_of(second).unlink()
    held = os.open(second, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BackupError) as caught:
            back_up(first, second.parent)
        assert str(caught.value) == in_use
    finally:
        os.close(held)
    assert (second.parent / "chat.key").read_bytes() == kept["chat.key"]


def test_backing_up_a_crashed_daemons_database_reads_its_log_and_changes_nothing(
    tmp_path: Path,
) -> None:
    # Written to, the log would be folded into the database and removed: the crashed
    # daemon's files are to stay as they are, for it or for a restore to move aside.
    database = tmp_path / "chat.db"
    crashed(database)
    daemon_keys(database)
    kept = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert "chat.db-wal" in kept
    assert back_up(database, tmp_path / "backups").accounts == 1
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()} == kept


def test_a_key_that_cannot_be_read_midway_is_the_databases_not_the_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database, folder = tmp_path / "chat.db", tmp_path / "backups"
    SqliteStore.open(database).close()
    daemon_keys(database)

    def failing(key: Path, _copy: Path) -> None:
        raise OSError(errno.EIO, "Input/output error", str(key))

    monkeypatch.setattr(backup_module, "copy_secret", failing)
    with pytest.raises(BackupError) as caught:
        back_up(database, folder)
    assert str(caught.value) == f"Cannot back up {database}: input/output error."


def test_a_damaged_key_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    # A ticket key of bytes that are not text was a traceback, after the database's copy
    # had been written: a backup that a restore refuses.
    database, folder = tmp_path / "chat.db", tmp_path / "backups"
    SqliteStore.open(database).close()
    daemon_keys(database)
    for name, damage in [("chat.tickets", b"\xff\xfe damaged\n"), ("chat.key", b"short\n")]:
        key = tmp_path / name
        kept = key.read_bytes()
        key.write_bytes(damage)
        with pytest.raises(BackupError) as caught:
            back_up(database, folder)
        assert str(caught.value) == f"The key file {str(key)!r} is damaged. Nothing was backed up."
        assert list(folder.iterdir()) == []
        key.write_bytes(kept)


def test_a_damaged_database_is_not_backed_up_as_a_good_one(tmp_path: Path) -> None:
    # Its log and shared memory, made by reading it, were left beside it when the copy
    # failed.
    database, folder = tmp_path / "chat.db", tmp_path / "backups"
    SqliteStore.open(database).close()
    daemon_keys(database)
    data = bytearray(database.read_bytes())
    # One page more than any table uses: SQLite's check finds it, counting does not.
    pages = int.from_bytes(data[28:32], "big")
    data[28:32] = (pages + 1).to_bytes(4, "big")
    database.write_bytes(bytes(data) + bytes(int.from_bytes(data[16:18], "big")))
    kept = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    with pytest.raises(BackupError) as caught:
        back_up(database, folder)
    assert str(caught.value) == (
        f"Cannot back up {database}: the copy is damaged (page {pages + 1} is never used)."
    )
    assert list(folder.iterdir()) == []
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir() if path.is_file()} == kept


def test_a_database_in_a_folder_that_may_not_be_written_is_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite reads a database in WAL mode with its log beside it: a read-only folder
    refuses the copy in SQLite's words, said as `accounts` and `serve` say them."""
    database = tmp_path / "chat.db"
    SqliteStore.open(database).close()
    daemon_keys(database)

    def refused(path: Path) -> sqlite3.Connection:
        error = sqlite3.OperationalError("attempt to write a readonly database")
        error.sqlite_errorname = "SQLITE_READONLY_DIRECTORY"
        raise error

    monkeypatch.setattr(backup_module, "read_only", refused)
    with pytest.raises(BackupError) as caught:
        back_up(database, tmp_path / "copies")
    assert str(caught.value) == (
        f"Cannot back up {database}: its folder {str(tmp_path)!r} may not be written "
        "(SQLite keeps its log there)."
    )
