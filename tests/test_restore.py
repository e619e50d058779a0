"""`trio-chat restore`: a backup put back, what was there moved aside, and a daemon started
meanwhile refused at every step (the end-to-end restore after a crash is in
test_backup.py)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sqlite3
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import trio_chat.restore as restore_module
from trio_chat.backup import BackupError, back_up
from trio_chat.cli import app
from trio_chat.keys import daemon_keys, daemon_public_key
from trio_chat.noise import fingerprint
from trio_chat.records import Account
from trio_chat.restore import Stopped, restore
from trio_chat.store import SqliteStore
from trio_chat.store_files import DatabaseInUse
from trio_chat.store_schema import SCHEMA_VERSION

NOW = datetime(2026, 12, 6, 14, 30, tzinfo=UTC)


def account(n: int) -> Account:
    return Account(n, f"user{n}", f"user{n}", f"$argon2id$fake{n}", "2026-12-06T00:00:00.000Z")


def made(database: Path, accounts: int) -> None:
    """A stopped daemon's database with `accounts` accounts, and its keys."""
    database.parent.mkdir(parents=True, exist_ok=True)
    store = SqliteStore.open(database)
    store.write([account(n) for n in range(1, accounts + 1)])
    store.close()
    daemon_keys(database)


def backed_up(tmp_path: Path, accounts: int) -> tuple[Path, Path]:
    """A stopped daemon's database with `accounts` accounts, and the folder of its backup."""
    database, folder = tmp_path / "live" / "chat.db", tmp_path / "backups"
    made(database, accounts)
    back_up(database, folder)
    return database, folder


def names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def crashed(database: Path) -> None:
    """Leave `database` as a daemon killed after one more account leaves it: its log."""
    store = SqliteStore.open(database)
    store.write([account(99)])
    left = {path: path.read_bytes() for path in (database, Path(f"{database}-wal"))}
    store.close()  # which folds the log in: put back as it was
    for path, data in left.items():
        path.write_bytes(data)


def contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def files(folder: Path) -> dict[str, bytes]:
    """`contents` of the files alone (the folders a restore moved things aside into left out)."""
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


def test_a_restore_moves_what_was_there_aside_and_puts_the_copy_in_place(tmp_path: Path) -> None:
    database, folder = backed_up(tmp_path, 2)
    store = SqliteStore.open(database)
    store.write([account(3)])  # after the backup; the daemon then crashes, its log left
    left = ("chat.db", "chat.db-wal", "chat.key")
    crashed = {name: (database.parent / name).read_bytes() for name in left}
    with pytest.raises(BackupError) as caught:
        restore(folder, database, NOW)
    assert str(caught.value) == f"A daemon or a restore is using {database}; stop it first."
    store.close()
    for name, data in crashed.items():  # as a crash leaves them (a close folds the log in)
        (database.parent / name).write_bytes(data)
    done = restore(folder, database, NOW)
    assert (done.accounts, done.messages) == (2, 0)
    assert done.aside == database.with_name("chat.db.before-restore-20261206T143000Z")
    assert names(done.aside) == ["chat.db", "chat.db-wal", "chat.key", "chat.tickets"]
    assert {name: (done.aside / name).read_bytes() for name in crashed} == crashed
    assert names(database.parent) == [
        "chat.db",
        "chat.db.before-restore-20261206T143000Z",
        "chat.key",
        "chat.tickets",
    ]
    store = SqliteStore.open(database)
    assert len(store.load(window=10).accounts) == 2
    store.close()
    # Put back what was moved aside (the crashed database with its log): read whole.
    again = restore(done.aside, database, NOW)
    assert again.accounts == 3
    assert again.aside == database.with_name("chat.db.before-restore-20261206T143000Z-2")


def test_a_daemon_started_during_a_restore_is_refused_at_every_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A daemon started while the files changed places made a new database and a log,
    # which then lay beside the copy: the next start laid the log over it (0 accounts).
    database, folder = backed_up(tmp_path, 2)
    crashed(database)  # its log lies beside it, to be moved aside too
    tried: list[str] = []

    def then_a_daemon_starts(name: str, step: Callable[..., Any]) -> Callable[..., Any]:
        def stepped(*args: Any) -> Any:
            result = step(*args)
            with pytest.raises(DatabaseInUse):
                SqliteStore.open(database)
            tried.append(name)
            return result

        return stepped

    for name in ("link", "replace", "rename"):
        monkeypatch.setattr(os, name, then_a_daemon_starts(name, getattr(os, name)))
    restore(folder, database, NOW)
    assert {"link", "replace", "rename"} <= set(tried)
    fresh = tmp_path / "new-machine" / "chat.db"  # nothing there: a locked file in its place
    tried.clear()
    database = fresh
    assert restore(folder, fresh, NOW).aside is None
    assert "replace" in tried
    monkeypatch.undo()
    store = SqliteStore.open(fresh)
    assert len(store.load(window=10).accounts) == 2
    store.close()


def test_nothing_changes_places_until_everything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full disk while the keys were copied left no database, the backup's key, and no
    # ticket key: a daemon started then had the right key over an empty database.
    database, folder = backed_up(tmp_path, 2)
    before = contents(database.parent)
    real_write = Path.write_bytes

    def full(path: Path, data: bytes) -> int:
        if path.name.startswith("chat.tickets."):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(BackupError) as caught:
        restore(folder, database, NOW)
    assert str(caught.value) == (
        f"Cannot put {folder / 'chat.db'} back as {database}: its disk is full; nothing was "
        "changed."
    )
    monkeypatch.undo()
    assert contents(database.parent) == before
    itself = f"{database.parent} holds the database itself; give the backup's folder."
    nowhere = f"There is no chat.db in {tmp_path / 'nowhere'}: give the folder "
    for wrong, why in [(database.parent, itself), (tmp_path / "nowhere", nowhere)]:
        with pytest.raises(BackupError) as caught:
            restore(wrong, database, NOW)
        assert str(caught.value).startswith(why)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for path in folder.iterdir():
        (damaged / path.name).write_bytes(path.read_bytes())
    with (damaged / "chat.db").open("r+b") as file:
        file.write(b"not SQLite at all" * 10)
    with pytest.raises(BackupError) as caught:
        restore(damaged, database, NOW)
    assert str(caught.value) == (
        f"{damaged / 'chat.db'} is not a trio-chat database (file is not a database)."
    )
    assert contents(database.parent) == before


def test_a_database_reached_through_a_link_is_restored_where_it_is(tmp_path: Path) -> None:
    real, folder = tmp_path / "real" / "chat.db", tmp_path / "backups"
    made(real, 2)
    back_up(real, folder)
    linked = tmp_path / "service" / "chat.db"
    linked.parent.mkdir()
    linked.symlink_to(Path("..") / "real" / "chat.db")
    for key in ("chat.key", "chat.tickets"):  # the daemon reads them beside the name it is given
        (linked.parent / key).write_bytes((real.parent / key).read_bytes())
    done = restore(folder, linked, NOW)
    assert linked.is_symlink() and linked.resolve() == real
    assert done.aside is not None and done.aside.parent == real.parent
    assert names(done.aside) == ["chat.db", "chat.key", "chat.tickets"]
    assert names(linked.parent) == ["chat.db", "chat.key", "chat.tickets"]


def test_a_restore_that_fails_on_a_new_machine_leaves_nothing_behind(tmp_path: Path) -> None:
    # It left an empty database file: a daemon started then made a room of no one with a
    # new key, and said nothing of a new database.
    _database, folder = backed_up(tmp_path, 2)
    with (folder / "chat.db").open("r+b") as file:
        file.truncate(20_000)
    fresh = tmp_path / "new-machine" / "chat.db"
    with pytest.raises(BackupError, match="is damaged"):
        restore(folder, fresh, NOW)
    assert not fresh.parent.exists()


def test_a_restore_through_a_link_can_be_undone_by_restoring_what_it_moved_aside(
    tmp_path: Path,
) -> None:
    real, folder = tmp_path / "real" / "store.db", tmp_path / "backups"
    linked = tmp_path / "service" / "chat.db"
    made(real, 3)
    linked.parent.mkdir()
    linked.symlink_to(real)
    daemon_keys(linked)  # the daemon reads its keys beside the name it is given
    back_up(linked, folder)
    made(linked, 4)  # one more account since the backup
    done = restore(folder, linked, NOW)
    assert done.aside is not None and names(done.aside) == ["chat.db", "chat.key", "chat.tickets"]
    undone = restore(done.aside, linked, NOW)
    assert undone.accounts == 4
    assert linked.is_symlink() and names(real.parent)[0] == "store.db"


def test_the_copys_keys_are_checked_and_a_changed_key_is_said(tmp_path: Path) -> None:
    database, folder = tmp_path / "live" / "chat.db", tmp_path / "backups"
    made(database, 1)
    back_up(database, folder)
    before = contents(database.parent)
    (folder / "chat.tickets").write_text("")
    with pytest.raises(BackupError) as caught:
        restore(folder, database, NOW)
    assert str(caught.value) == (
        f"The key file {str(folder / 'chat.tickets')!r} is damaged. Nothing was changed."
    )
    assert contents(database.parent) == before
    other = tmp_path / "other" / "chat.db"
    made(other, 1)
    back_up(other, tmp_path / "other-backup")
    own = fingerprint(daemon_public_key(database))
    changed = restore(tmp_path / "other-backup", database, NOW)
    assert changed.key_changed and changed.was == own
    assert changed.key == fingerprint(daemon_public_key(database)) != own
    assert not restore(tmp_path / "other-backup", database, NOW).key_changed


def test_a_restore_stopped_by_sigterm_removes_what_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An ssh connection that dropped (SIGHUP), or a SIGTERM, left a full-size copy and its
    # journal beside the database; only Ctrl-C cleaned up.
    database, folder = backed_up(tmp_path, 2)
    before = contents(database.parent)
    copy_checked = restore_module._copy_checked

    def stopped_midway(*args: Any) -> tuple[int, int]:
        counts = copy_checked(*args)
        os.kill(os.getpid(), signal.SIGTERM)
        return counts

    monkeypatch.setattr(restore_module, "_copy_checked", stopped_midway)
    result = CliRunner().invoke(app, ["restore", str(folder), "--db", str(database)])
    assert (result.exit_code, result.stderr) == (130, "Stopped; nothing was changed.\n")
    assert contents(database.parent) == before
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_damaged_key_is_mended_by_a_restore_and_kept_aside_as_it_was(tmp_path: Path) -> None:
    # Putting the backup's key back is how a damaged key is mended: the restore refused.
    database, folder = backed_up(tmp_path, 1)
    (database.parent / "chat.key").write_bytes(b"\xff\xfe garbage")
    done = restore(folder, database, NOW)
    assert done.key_changed and done.aside is not None
    assert (done.aside / "chat.key").read_bytes() == b"\xff\xfe garbage"
    assert (database.parent / "chat.key").read_bytes() == (folder / "chat.key").read_bytes()


def test_a_restore_that_fails_before_the_swap_leaves_no_folder_aside(tmp_path: Path) -> None:
    database, folder = backed_up(tmp_path, 1)
    tickets = database.parent / "chat.tickets"
    tickets.unlink()
    tickets.mkdir()  # what cannot be copied aside
    with pytest.raises(BackupError, match="nothing was changed"):
        restore(folder, database, NOW)
    assert names(database.parent) == ["chat.db", "chat.key", "chat.tickets"]


def test_a_stop_as_the_files_change_places_waits_for_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database, folder = backed_up(tmp_path, 2)
    replace = os.replace
    stopped: list[bool] = []

    def stopped_then_replaced(*args: Any) -> None:
        if not stopped:
            stopped.append(True)
            os.kill(os.getpid(), signal.SIGTERM)  # as the files change places
        replace(*args)

    monkeypatch.setattr(os, "replace", stopped_then_replaced)
    result = CliRunner().invoke(app, ["restore", str(folder), "--db", str(database)])
    assert result.exit_code == 130
    assert result.stdout.startswith(f"Restored {database} (2 accounts, 0 messages)")
    assert names(database.parent)[0] == "chat.db"
    assert (database.parent / "chat.db").stat().st_size > 0


def test_a_restore_asked_to_stop_stops_before_anything_changes_places(tmp_path: Path) -> None:
    database, folder = backed_up(tmp_path, 2)
    before = contents(database.parent)
    looks: list[bool] = []

    def stopping() -> bool:
        looks.append(True)
        return len(looks) > 1  # while the copy is written

    with pytest.raises(Stopped, match="nothing was changed"):
        restore(folder, database, NOW, stopping)
    assert contents(database.parent) == before
    fresh = tmp_path / "new" / "machine" / "chat.db"
    with pytest.raises(Stopped):
        restore(folder, fresh, NOW, lambda: True)
    assert names(tmp_path / "new") == []  # nothing made there, the folder of it neither


def test_a_restore_on_a_new_machine_makes_a_private_folder_and_no_key_changed(
    tmp_path: Path,
) -> None:
    _database, folder = backed_up(tmp_path, 2)
    fresh = tmp_path / "new-machine" / "chat.db"
    done = restore(folder, fresh, NOW)
    assert (done.aside, done.key_changed, done.was) == (None, False, "")
    assert done.key == fingerprint(daemon_public_key(fresh))
    assert stat.S_IMODE(fresh.parent.stat().st_mode) == 0o700
    assert names(fresh.parent) == ["chat.db", "chat.key", "chat.tickets"]


def test_what_is_there_alone_is_kept_aside_keys_or_database(tmp_path: Path) -> None:
    # Keys without their database (it was lost), or a database without its keys: each is
    # moved aside before the backup's take their names, never written over.
    database, folder = backed_up(tmp_path, 2)
    database.unlink()
    for key in ("chat.key", "chat.tickets"):
        (database.parent / key).unlink()
    daemon_keys(database)  # keys of the daemon's own, since the backup
    keys = {name: (database.parent / name).read_bytes() for name in ("chat.key", "chat.tickets")}
    done = restore(folder, database, NOW)
    assert done.aside is not None and done.key_changed
    assert contents(done.aside) == keys
    made(database, 3)
    for key in ("chat.key", "chat.tickets"):
        (database.parent / key).unlink()
    alone = database.read_bytes()
    again = restore(folder, database, NOW)
    assert again.aside is not None and contents(again.aside) == {"chat.db": alone}


def test_everything_a_restore_puts_in_place_is_on_the_disk_before_it_takes_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Renamed before it is synced, a file may be found empty under its new name after a
    # power cut: a database of no one, or a damaged key.
    database, folder = backed_up(tmp_path, 2)
    synced: list[str] = []
    replaced: list[tuple[str, list[str]]] = []
    fsync, replace = os.fsync, os.replace

    def syncing(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    def replacing(source: Any, target: Any) -> None:
        replaced.append((os.path.realpath(source), list(synced)))
        replace(source, target)

    monkeypatch.setattr(os, "fsync", syncing)
    monkeypatch.setattr(os, "replace", replacing)
    done = restore(folder, database, NOW)
    assert done.aside is not None
    assert len(replaced) == 3  # the database's copy, then its two keys
    for name, synced_before in replaced:
        assert name in synced_before
    kept_aside = [os.path.realpath(done.aside / key) for key in ("chat.key", "chat.tickets")]
    assert set(kept_aside) <= set(replaced[0][1])  # the keys kept, before the copy is in place
    assert synced[-1] == os.path.realpath(database.parent)  # the new names, last


def test_what_a_restore_writes_and_keeps_aside_is_its_users_alone(tmp_path: Path) -> None:
    database, folder = backed_up(tmp_path, 2)
    done = restore(folder, database, NOW)
    assert done.aside is not None
    assert stat.S_IMODE(done.aside.stat().st_mode) == 0o700
    for path in (database, *(database.parent / key for key in ("chat.key", "chat.tickets"))):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert stat.S_IMODE((done.aside / path.name).stat().st_mode) == 0o600, path


def test_a_restore_is_refused_while_another_runs_or_a_daemon_runs_on_the_backup(
    tmp_path: Path,
) -> None:
    database, folder = backed_up(tmp_path, 2)
    refusals: list[str] = []

    def a_second_restore_starts() -> bool:
        if not refusals:
            with pytest.raises(BackupError) as caught:
                restore(folder, database, NOW)
            refusals.append(str(caught.value))
        return False

    restore(folder, database, NOW, a_second_restore_starts)
    assert refusals == [f"A daemon or a restore is using {database}; stop it first."]
    before = files(database.parent)
    running = SqliteStore.open(folder / "chat.db")  # a daemon started on the backup's copy
    try:
        with pytest.raises(BackupError) as caught:
            restore(folder, database, NOW)
        assert str(caught.value) == f"A daemon is running on {folder / 'chat.db'}; stop it first."
    finally:
        running.close()
    assert files(database.parent) == before


def test_a_backup_of_no_or_a_newer_schema_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    database, folder = backed_up(tmp_path, 2)
    before = contents(database.parent)
    copy = folder / "chat.db"
    for version in (0, SCHEMA_VERSION + 1):  # another program's database; a newer trio-chat's
        with contextlib.closing(sqlite3.connect(copy)) as db:
            db.execute(f"PRAGMA user_version = {version}")
        with pytest.raises(BackupError) as caught:
            restore(folder, database, NOW)
        assert str(caught.value) == f"{copy} is not a trio-chat database this one can use."
        assert contents(database.parent) == before


def test_a_full_disk_while_the_copy_is_written_is_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database, folder = backed_up(tmp_path, 2)
    before = contents(database.parent)

    def full(_db: sqlite3.Connection) -> tuple[int, int]:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(restore_module, "counts", full)
    with pytest.raises(BackupError) as caught:
        restore(folder, database, NOW)
    assert str(caught.value) == f"Cannot copy {folder / 'chat.db'} in: its disk is full."
    assert contents(database.parent) == before


def test_a_damaged_backup_is_refused_in_one_line_and_nothing_changes(tmp_path: Path) -> None:
    # SQLite's check says where the damage is on a line of its own after a heading: the
    # refusal was two lines.
    database, folder = backed_up(tmp_path, 2)
    before = contents(database.parent)
    copy = folder / "chat.db"
    data = bytearray(copy.read_bytes())
    # One page more than any table uses: SQLite's check finds it, reading does not.
    pages = int.from_bytes(data[28:32], "big")
    data[28:32] = (pages + 1).to_bytes(4, "big")
    copy.write_bytes(bytes(data) + bytes(int.from_bytes(data[16:18], "big")))
    with pytest.raises(BackupError) as caught:
        restore(folder, database, NOW)
    assert str(caught.value) == (
        f"{copy} is damaged (Page {pages + 1} is never used); give another backup."
    )
    assert contents(database.parent) == before


def remove_account(database: Path, name: str) -> None:
    """`trio-chat accounts remove NAME --yes` on the database, which takes it."""
    removal = ["accounts", "remove", name, "--yes", "--db", str(database)]
    assert CliRunner().invoke(app, removal).exit_code == 0


def brought_back(name: str, database: str) -> str:
    """What `restore` says of an account removed since its backup was made."""
    return (
        f"{name}, removed after this backup was made, has its account again (its password and "
        f"the private messages sent to it); `trio-chat accounts remove {name} --db "
        f"{database}` removes it anew."
    )


def test_a_restore_says_which_removed_accounts_it_brought_back(tmp_path: Path) -> None:
    database, folder = backed_up(tmp_path, 3)
    for name in ("user2", "USER3"):
        remove_account(database, name)
    result = CliRunner().invoke(app, ["restore", str(folder), "--db", str(database)])
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        brought_back(name, str(database)) for name in ("user2", "user3")
    ]
    # Restored again, the same backup brings back nobody removed since.
    again = CliRunner().invoke(app, ["restore", str(folder), "--db", str(database)])
    assert (again.exit_code, again.stderr) == (0, "")


def test_a_restore_names_only_the_accounts_it_brings_back_escaped_and_quoted(
    tmp_path: Path,
) -> None:
    """Named: the accounts removed since the backup, in the order of their names, a name
    kept from before the rules (U+2066, which only hides) escaped and the database's path
    quoted for the shell; not the account removed before the backup, removed still."""
    database, folder = tmp_path / "live chat" / "chat.db", tmp_path / "backups"
    made(database, 1)
    made_at = "2026-12-06T00:00:00.000Z"
    store = SqliteStore.open(database)
    store.write(
        [
            Account(n, name, key, "$argon2id$x", made_at)
            for n, name, key in [(2, "zed\u2066", "zed"), (3, "amy", "amy"), (4, "carol", "carol")]
        ]
    )
    store.close()
    remove_account(database, "carol")
    back_up(database, folder)
    remove_account(database, "zed")
    remove_account(database, "amy")
    result = CliRunner().invoke(app, ["restore", str(folder), "--db", str(database)])
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        brought_back(name, f"'{database}'") for name in ("amy", "zed\\u2066")
    ]
