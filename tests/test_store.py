"""The SQLite store: schema versions, group writes, what history shows to whom."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import trio_chat.store as store_module
import trio_chat.store_files as store_files
from trio_chat.records import (
    Account,
    AccountRemoval,
    BanRecord,
    BanSet,
    MarkDelivered,
    Message,
    MessageRemoval,
    MuteSet,
    PasswordSet,
    SessionClosed,
    SessionOpened,
    StoreOp,
)
from trio_chat.store import SqliteStore, log_bytes
from trio_chat.store_files import DatabaseInUse, StorageError
from trio_chat.store_schema import MIGRATIONS, SCHEMA_VERSION


def account(n: int, name: str) -> Account:
    return Account(n, name, name.casefold(), f"$argon2id$fake{n}", "2026-11-30T00:00:00.000Z")


def message(n: int, sender: int, recipient: int | None = None) -> Message:
    return Message(
        id=n,
        ts=f"2026-11-30T00:00:{n:02d}.000Z",
        sender_id=sender,
        sender="alice" if sender == 1 else "bob" if sender == 2 else "carol",
        text=f"text {n}",
        recipient_id=recipient,
        recipient=None if recipient is None else ("alice", "bob", "carol")[recipient - 1],
        cid=f"c{n}",
    )


def test_a_new_database_is_private_versioned_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "chat.db"
    store = SqliteStore.open(path)
    store.write([account(1, "alice")])
    wal = path.with_name("chat.db-wal")
    assert wal.exists() and wal.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700  # the folder made for it, too
    # A commit is on the disk once acknowledged, a power cut after it too: FULL (2) syncs
    # the log at every commit, not only at checkpoints.
    assert store._db.execute("PRAGMA synchronous").fetchone() == (2,)
    store.close()
    assert path.stat().st_mode & 0o777 == 0o600
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_database_from_a_newer_version_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StorageError, match="newer trio-chat"):
        SqliteStore.open(path)
    # Not upgraded by a daemon started (`accounts` on a stopped daemon's database):
    with pytest.raises(StorageError) as refused:
        SqliteStore.open(path, migrate=False)
    assert str(refused.value) == (
        f"The database {str(path)!r} was written by a newer trio-chat (schema "
        f"{SCHEMA_VERSION + 1}, this one's {SCHEMA_VERSION}); use the trio-chat its daemon runs."
    )


def test_a_file_that_is_not_a_database_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(StorageError, match="Cannot open the database"):
        SqliteStore.open(path)


def test_a_database_that_cannot_be_written_is_refused_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a read-only mount, or a file its user may not write, SQLite opens the database
    # read-only; the daemon must not start on it and then fail every registration and
    # message. (Opened here with mode=ro: a file mode alone does not stop root.)
    path = tmp_path / "chat.db"
    SqliteStore.open(path).close()
    connect = sqlite3.connect

    def read_only(database: Path | str, **options: Any) -> sqlite3.Connection:
        if options.pop("uri", False):  # opened read-only already (the look before opening)
            looked: sqlite3.Connection = connect(database, uri=True, **options)
            return looked
        opened: sqlite3.Connection = connect(f"file:{database}?mode=ro", uri=True, **options)
        return opened

    monkeypatch.setattr(sqlite3, "connect", read_only)
    with pytest.raises(StorageError, match=r"Cannot open the database .*: permission denied"):
        SqliteStore.open(path)


def test_a_full_disk_at_the_start_is_said_to_be_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon started again on a full disk: SQLite cannot make its shared-memory file
    and says "disk I/O error" (seen on an 8 MB tmpfs filled up); the operator is told the
    disk is full, not to choose another database."""
    path = tmp_path / "chat.db"
    SqliteStore.open(path).close()

    def failing(database: Path, **options: Any) -> sqlite3.Connection:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite3, "connect", failing)
    monkeypatch.setattr(store_files, "free_bytes", lambda _path: 300 * 1024)
    with pytest.raises(StorageError) as refused:
        SqliteStore.open(path)
    assert str(refused.value) == (
        f"Cannot open the database {str(path)!r}: the disk holding it is full, 300 KiB "
        "free; free some space and start it again."
    )
    monkeypatch.setattr(store_files, "free_bytes", lambda _path: 300 * 1024 * 1024)
    with pytest.raises(StorageError, match=r": disk I/O error; choose another with --db\.$"):
        SqliteStore.open(path)

    # Little space left, but SQLite refused it for another reason: no full disk is said.
    def not_opened(database: Path, **options: Any) -> sqlite3.Connection:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite3, "connect", not_opened)
    monkeypatch.setattr(store_files, "free_bytes", lambda _path: 300 * 1024)
    with pytest.raises(StorageError, match=r": permission denied; run the daemon as the user"):
        SqliteStore.open(path)
    # A folder SQLite may not write its log into: the words say what to do, nothing more.
    in_folder = sqlite3.OperationalError("attempt to write a readonly database")
    in_folder.sqlite_errorname = "SQLITE_READONLY_DIRECTORY"

    def folder_refused(database: Path, **options: Any) -> sqlite3.Connection:
        raise in_folder

    monkeypatch.setattr(sqlite3, "connect", folder_refused)
    with pytest.raises(StorageError) as refused:
        SqliteStore.open(path)
    assert str(refused.value) == (
        f"Cannot open the database {str(path)!r}: its folder {str(tmp_path)!r} may not be "
        "written (SQLite keeps its log there)."
    )


def test_a_path_that_says_full_is_no_full_disk(tmp_path: Path) -> None:
    """An error's text holds the path: a folder named like /home/bfuller is no disk full."""
    path = tmp_path / "bfuller" / "chat.db"
    path.parent.mkdir()
    error = PermissionError(errno.EACCES, "Permission denied", str(path))
    assert store_files.explained(error, path) == "permission denied"
    full = sqlite3.OperationalError("database or disk is full")
    assert store_files.disk_full(error, path) is None
    told = store_files.disk_full(full, path)
    assert told is not None and told.startswith("the disk holding it is full")


def test_a_file_system_that_cannot_lock_still_serves_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Some network and FUSE file systems have no `flock`: the daemon runs there as it
    did before it locked its database, with a warning that nothing keeps out a second."""

    def unsupported(fd: int, operation: int) -> None:
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(fcntl, "flock", unsupported)
    store = SqliteStore.open(tmp_path / "chat.db")
    try:
        assert not store.write([account(1, "alice")])
    finally:
        store.close()
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "cannot lock the database" in warning.getMessage()


def test_a_second_store_on_one_database_is_refused_until_the_first_closes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chat.db"
    first = SqliteStore.open(path)
    with pytest.raises(DatabaseInUse, match="another trio-chat daemon"):
        SqliteStore.open(path)
    assert first.write([account(1, "alice")]) == []  # the refused one took nothing from it
    first.close()
    second = SqliteStore.open(path)
    assert [a.name for a in second.load(window=10).accounts] == ["alice"]
    second.close()


def test_a_message_from_or_to_no_account_is_refused(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "chat.db")
    store.write([account(1, "alice")])
    from_nobody, to_nobody = message(1, 9), message(2, 1, recipient=2)
    assert store.write([from_nobody, to_nobody, message(3, 1)]) == [from_nobody, to_nobody]
    assert [m.id for m in store.load(window=10).recent] == [3]
    store.close()


def test_a_start_loads_the_newest_messages_and_the_mailboxes_in_order_and_numbers_on(
    tmp_path: Path,
) -> None:
    store = SqliteStore.open(tmp_path / "chat.db")
    empty = store.load(window=10)
    assert (empty.next_message_id, empty.stored_up_to, empty.next_account_id) == (1, 0, 1)
    store.write([account(1, "alice"), account(2, "bob")])
    store.write([message(1, 1), message(2, 1, recipient=2), message(3, 1, recipient=2)])
    store.write([message(4, 2)])
    snapshot = store.load(window=2)
    assert [m.id for m in snapshot.recent] == [3, 4]
    assert snapshot.unread == {2: 2}  # bob's
    assert [m.id for m in store.mailbox(2)] == [2, 3]  # in the order written
    assert store.mailbox(1) == []
    numbers = (snapshot.next_message_id, snapshot.stored_up_to, snapshot.next_account_id)
    assert numbers == (5, 4, 3)
    store.close()


def test_an_account_is_found_by_its_name_key_and_listed_with_its_mail_waiting(
    tmp_path: Path,
) -> None:
    store = SqliteStore.open(tmp_path / "chat.db")
    # rid: the request id its client sent, kept as sent (text, digits or not)
    alice = Account(1, "Alice", "alice", "$argon2id$fake1", "2026-11-30T00:00:00.000Z", "0042")
    store.write([alice, account(2, "bob")])
    store.write([message(1, 2, recipient=1), message(2, 2, recipient=1)])
    store.write([message(3, 1, recipient=1), message(4, 1, recipient=2)])  # 3: to herself
    store.write([MarkDelivered((1,))])
    assert store.account("alice") == alice
    assert store.account("Alice") is None  # names are looked up by their key
    assert [(a.name, waiting) for a, waiting in store.accounts()] == [("Alice", 1), ("bob", 1)]
    store.close()


def test_a_write_into_a_database_moved_away_while_open_is_refused(tmp_path: Path) -> None:
    """Written there, it would be lost when the daemon stops, though acknowledged."""
    path = tmp_path / "chat.db"
    store = SqliteStore.open(path)
    store.write([account(1, "alice")])
    os.rename(path, tmp_path / "moved.db")
    with pytest.raises(StorageError, match="was removed or replaced while the daemon ran"):
        store.write([account(2, "bob")])
    os.rename(tmp_path / "moved.db", path)  # put back: written again
    assert store.write([account(2, "bob")]) == []
    assert [a.name for a in store.load(window=10).accounts] == ["alice", "bob"]
    store.close()


def test_one_bad_write_does_not_sink_the_rest_of_its_batch(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "chat.db")
    duplicate = account(3, "alice")
    failed = store.write([account(1, "alice"), account(2, "bob"), duplicate, message(1, 1)])
    assert failed == [duplicate]
    snapshot = store.load(window=10)
    assert [a.name for a in snapshot.accounts] == ["alice", "bob"]
    assert [m.id for m in snapshot.recent] == [1]
    assert (snapshot.next_account_id, snapshot.next_message_id) == (3, 2)
    store.close()


def test_history_shows_public_messages_and_only_ones_own_private_ones(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "chat.db")
    store.write([account(1, "alice"), account(2, "bob"), account(3, "carol")])
    store.write(
        [
            message(1, 1),
            message(2, 1, recipient=2),  # alice -> bob
            message(3, 2, recipient=1),  # bob -> alice
            message(4, 3, recipient=2),  # carol -> bob
            message(5, 2),
        ]
    )
    assert [m.id for m in store.history(1, None, 10)] == [1, 2, 3, 5]
    assert [m.id for m in store.history(3, None, 10)] == [1, 4, 5]
    assert [m.id for m in store.history(2, 5, 2)] == [3, 4]
    assert store.history(1, 0, 10) == []  # nothing is older than the first
    (private,) = [m for m in store.history(3, None, 10) if m.private]
    assert (private.sender, private.recipient) == ("carol", "bob")
    store.close()


def test_undelivered_private_messages_survive_a_restart_until_marked(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    store = SqliteStore.open(path)
    store.write([account(1, "alice"), account(2, "bob")])
    store.write([message(1, 1, recipient=2), message(2, 1, recipient=2), message(3, 1)])
    store.write([message(4, 2, recipient=2)])  # a note to oneself waits in no mailbox
    store.write([MarkDelivered((1,))])
    store.close()
    reopened = SqliteStore.open(path)
    snapshot = reopened.load(window=10)
    assert snapshot.unread == {2: 1}
    assert [m.id for m in reopened.mailbox(2)] == [2]
    assert snapshot.public_count == 1
    reopened.close()


def test_a_version_1_database_is_migrated_and_keeps_its_accounts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "chat.db"
    with sqlite3.connect(path) as db:
        for statement in MIGRATIONS[0].split(";"):
            db.execute(statement)
        db.execute(
            "INSERT INTO accounts (id, name, key, password_hash, created)"
            " VALUES (1, 'alice', 'alice', '$argon2id$x', '2026-11-30T00:00:00.000Z')"
        )
        db.execute("PRAGMA user_version = 1")
    store = SqliteStore.open(path)
    # Said before (a large one takes a while), and after: an older trio-chat refuses the
    # database from now on.
    assert [record.getMessage() for record in caplog.records] == [
        f"upgrading the database {path} from schema 1 to {SCHEMA_VERSION} (a large one takes "
        "a while; stopped meanwhile, it is left as it was)",
        f"upgraded the database {path} from schema 1 to {SCHEMA_VERSION}; older trio-chat "
        "versions no longer open it",
    ]
    (alice,) = store.load(window=10).accounts
    assert (alice.name, alice.rid, alice.muted) == ("alice", None, False)
    store.write([Account(2, "bob", "bob", "$argon2id$y", "2026-11-30T00:00:01.000Z", "r-1")])
    assert store.load(window=10).accounts[1].rid == "r-1"
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_a_message_is_stored_once_per_sender_and_cid(tmp_path: Path) -> None:
    """However late a message comes again, its sender's `cid` finds the stored copy;
    another sender may use the same `cid`."""
    store = SqliteStore.open(tmp_path / "chat.db")
    first = message(1, 1)
    store.write([account(1, "alice"), account(2, "bob"), first])
    again = Message(9, "2026-11-30T01:00:00.000Z", 1, "alice", "again", cid=first.cid)
    bobs = Message(10, "2026-11-30T01:00:00.000Z", 2, "bob", "his own", cid=first.cid)
    assert store.write([again, bobs, message(11, 1)]) == [again]
    store.write([Message(14, "2026-11-30T01:00:00.000Z", 2, "bob", "mine", cid="b-only")])
    assert store.sent(1, "c1") == first
    assert store.sent(2, "c1") == bobs
    assert store.sent(1, "unknown") is None
    assert store.sent(1, "c") is None  # the cid itself, not one after it
    assert store.sent(1, "b-only") is None  # another's message is not its sender's copy
    # A copy in a batch whose first message is new: only the copy is refused.
    copy = Message(13, "2026-11-30T01:00:00.000Z", 1, "alice", "again", cid="c11")
    assert store.write([message(12, 1), copy]) == [copy]
    assert [m.id for m in store.load(window=10).recent] == [1, 10, 11, 12, 14]
    store.close()


def test_a_version_3_database_keeps_copies_stored_twice_and_stores_no_more(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chat.db"
    with sqlite3.connect(path) as db:
        for migration in MIGRATIONS[:3]:
            for statement in migration.split(";"):
                db.execute(statement)
        db.execute(
            "INSERT INTO accounts (id, name, key, password_hash, created)"
            " VALUES (1, 'alice', 'alice', '$argon2id$x', '2026-11-30T00:00:00.000Z')"
        )
        db.execute(
            "INSERT INTO accounts (id, name, key, password_hash, created)"
            " VALUES (2, 'bob', 'bob', '$argon2id$y', '2026-11-30T00:00:00.000Z')"
        )
        for n, cid in ((1, "a"), (2, "b"), (3, "a"), (4, None), (5, None)):
            db.execute(
                "INSERT INTO messages (id, ts, sender_id, text, cid) VALUES (?, ?, 1, ?, ?)",
                (n, f"2026-11-30T00:00:0{n}.000Z", f"text {n}", cid),
            )
        # bob's own "a": no copy of alice's, it keeps its cid.
        db.execute(
            "INSERT INTO messages (id, ts, sender_id, text, cid)"
            " VALUES (6, '2026-11-30T00:00:06.000Z', 2, 'his', 'a')"
        )
        db.execute("PRAGMA user_version = 3")
    store = SqliteStore.open(path)
    assert [(m.id, m.cid) for m in store.load(window=10).recent] == [
        (1, "a"),
        (2, "b"),
        (3, None),
        (4, None),
        (5, None),
        (6, "a"),
    ]
    resent = Message(7, "2026-11-30T00:00:07.000Z", 1, "alice", "text 1", cid="a")
    his = Message(8, "2026-11-30T00:00:08.000Z", 2, "bob", "his", cid="a")
    assert store.write([resent, his]) == [resent, his]
    store.close()


def test_open_sessions_are_kept_until_they_end(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    store = SqliteStore.open(path)
    store.write([SessionOpened(7, "127.0.0.1", 5000), SessionOpened(8, "::1", 5001)])
    store.write([SessionOpened(7, "10.0.0.9", 6000)])  # it moved
    store.close()
    store = SqliteStore.open(path)  # as a daemon restarting after a crash
    assert sorted(store.load(10).sessions, key=lambda s: s.sid) == [
        SessionOpened(7, "10.0.0.9", 6000),
        SessionOpened(8, "::1", 5001),
    ]
    store.write([SessionClosed(7)])
    assert store.load(10).sessions == [SessionOpened(8, "::1", 5001)]
    store.write([SessionClosed(8), SessionClosed(9)])
    assert store.load(10).sessions == []
    store.close()


def test_a_presized_log_is_written_over_and_stores_nothing_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    wal = tmp_path / "chat.db-wal"
    store = SqliteStore.open(path)
    store.write([account(1, "alice")])
    store.close()  # the log is gone: as after every clean stop
    store = SqliteStore.open(path)
    store.presize_log()
    presized = wal.stat().st_size
    assert presized >= log_bytes(4096)
    store.write([message(n, 1) for n in range(1, 51)])
    for n in range(51, 151):
        store.write([message(n, 1)])  # a hundred commits, each of its own
    assert wal.stat().st_size == presized  # they wrote over the log, not after it
    store.presize_log()  # already its size: nothing to do
    assert wal.stat().st_size == presized
    # As a crash would leave them: the database and its log, copied while still open.
    for name in ("chat.db", "chat.db-wal"):
        shutil.copy(tmp_path / name, tmp_path / f"crashed-{name}")
    store.close()
    crashed = SqliteStore.open(tmp_path / "crashed-chat.db")
    snapshot = crashed.load(window=200)
    assert [m.id for m in snapshot.recent] == list(range(1, 151))
    tables = {row[0] for row in crashed._db.execute("SELECT name FROM sqlite_master")}
    assert "log_room" not in tables
    crashed.close()


@pytest.mark.parametrize(
    ("obstacle", "why"),
    [
        ("CREATE TABLE log_room (b BLOB)", "table log_room already exists"),
        ("PRAGMA max_page_count = 50", "database or disk is full"),
    ],
)
def test_a_log_that_cannot_be_presized_is_one_warning_and_the_store_works_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, obstacle: str, why: str
) -> None:
    store = SqliteStore.open(tmp_path / "chat.db")
    store._db.execute(obstacle)
    store.presize_log()
    assert [r.getMessage() for r in caplog.records] == [
        f"could not grow the write-ahead log ahead of time ({why})"
    ]
    assert not store._db.in_transaction
    store.write([account(1, "alice"), message(1, 1)])
    assert [m.id for m in store.load(window=10).recent] == [1]
    store.close()


def test_presizing_does_not_wait_for_another_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "chat.db"
    store = SqliteStore.open(path)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock
    statements: list[str] = []
    (cache_size,) = store._db.execute("PRAGMA cache_size").fetchone()
    store._db.set_trace_callback(statements.append)
    store.presize_log()
    store._db.set_trace_callback(None)
    assert store._db.execute("PRAGMA cache_size").fetchone() == (cache_size,)  # given back
    # No waiting out `busy_timeout` (5 s) for the lock: it is 0 while the log grows.
    assert statements.index("PRAGMA busy_timeout = 0") < statements.index("BEGIN IMMEDIATE")
    assert [r.getMessage() for r in caplog.records] == [
        "could not grow the write-ahead log ahead of time (database is locked)"
    ]
    assert store._db.execute("PRAGMA busy_timeout").fetchone() == (5000,)
    other.execute("ROLLBACK")
    other.close()
    store.close()


def test_a_log_that_cannot_be_synced_ahead_of_time_is_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore.open(tmp_path / "chat.db")

    def failing(descriptor: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing)
    store.presize_log()
    monkeypatch.undo()
    assert [r.getMessage() for r in caplog.records] == [
        f"could not grow the write-ahead log ahead of time ([Errno {errno.EIO}] "
        f"{os.strerror(errno.EIO)})"
    ]
    store.write([account(1, "alice")])
    store.close()


def test_a_resent_copy_costs_its_batch_no_statement_per_change(tmp_path: Path) -> None:
    """A client may resend any `cid` it ever used, once the daemon's memory forgot it:
    the copy is refused without undoing the batch and storing the rest change by change,
    which would make every commit of everyone's messages slow at one message each."""
    store = SqliteStore.open(tmp_path / "chat.db")
    store.write([account(1, "alice"), account(2, "bob"), message(1, 1)])
    again = Message(2, "2026-11-30T01:00:00.000Z", 1, "alice", "again", cid="c1")
    others = [message(n, 2) for n in range(3, 203)]
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    batch: list[StoreOp] = [*others[:100], again, *others[100:], MarkDelivered((1,))]
    failed = store.write(batch)
    store._db.set_trace_callback(None)
    assert failed == [again]
    assert len(statements) <= len(batch) + 5  # a statement a change, and a few for the batch
    assert [m.id for m in store.load(window=300).recent] == [1, *range(3, 203)]
    assert store.sent(1, "c1") == message(1, 1)
    store.close()


def test_changes_to_an_account_are_kept_and_applied_to_what_is_stored(tmp_path: Path) -> None:
    """A mute, a lock and a new password, stored in one commit: each applied to what the
    one before left (a lock stays a lock, of the new password), kept across a restart."""
    path = tmp_path / "chat.db"
    store = SqliteStore.open(path)
    store.write([account(1, "alice"), account(2, "bob")])
    store.write([MuteSet(1, True), PasswordSet(1, lock=True), PasswordSet(1, "$argon2id$new")])
    store.close()
    store = SqliteStore.open(path)
    alice, bob = store.load(window=10).accounts
    assert alice.muted and alice.locked and alice.hash_to_check == "$argon2id$new"
    assert not bob.muted and not bob.locked
    store.write([MuteSet(1, False), PasswordSet(1, lock=False)])
    (listed, _waiting), _bob = store.accounts()
    assert not listed.muted and not listed.locked and listed.password_hash == "$argon2id$new"
    # A session's change, made on a hash the operator's replaced first: not made.
    store.write(
        [PasswordSet(1, "$argon2id$reset"), PasswordSet(1, "$argon2id$x", expect="$argon2id$new")]
    )
    assert store.account("alice") == dataclasses.replace(listed, password_hash="$argon2id$reset")
    store.close()


def test_a_log_left_by_the_database_a_backup_replaced_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    # A daemon crashed (its write-ahead log stays), and an older copy of the database was
    # put back without moving the log away. Opened for writing, SQLite read the log into
    # the copy and folded it in as the store closed: the copy was damaged for good.
    live = tmp_path / "live" / "chat.db"
    live.parent.mkdir()
    store = SqliteStore.open(live)

    def texts(first: int, last: int) -> list[StoreOp]:
        return [dataclasses.replace(message(n, 1), text="x" * 300) for n in range(first, last)]

    store.write([account(n, f"user{n}") for n in range(1, 4)])
    store.write(texts(1, 2))
    backup = tmp_path / "backup.db"
    source, copy = sqlite3.connect(live), sqlite3.connect(backup)
    with contextlib.closing(source), contextlib.closing(copy):
        source.backup(copy)
    store.write(texts(2, 400))
    store._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    store.write(texts(400, 420))
    crashed = tmp_path / "crashed" / "chat.db"
    crashed.parent.mkdir()
    shutil.copy(f"{live}-wal", f"{crashed}-wal")
    store.close()
    shutil.copy(backup, crashed)
    put_back = crashed.read_bytes()
    with pytest.raises(StorageError) as refused:
        SqliteStore.open(crashed)
    assert str(refused.value) == (
        f"Cannot open the database {str(crashed)!r}: it is damaged, with the write-ahead log "
        f"beside it; if it was put back from a backup, move {str(crashed) + '-wal'!r} and "
        f"{str(crashed) + '-shm'!r} away first (they belong to the database it replaced), "
        "else put a backup back."
    )
    assert crashed.read_bytes() == put_back
    os.rename(f"{crashed}-wal", tmp_path / "moved-away-wal")
    Path(f"{crashed}-shm").unlink(missing_ok=True)
    store = SqliteStore.open(crashed)  # as the backup had it
    assert [m.id for m in store.load(window=10).recent] == [1]
    store.close()


@pytest.mark.parametrize("version", [0, 2])
def test_another_programs_database_is_refused_and_left_as_it_was(
    tmp_path: Path, version: int
) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        db.execute("INSERT INTO notes (text) VALUES ('keep me')")
        db.execute(f"PRAGMA user_version = {version}")
    before = path.read_bytes()
    with pytest.raises(
        StorageError,
        match=r"Cannot open the database .*: it is another program's SQLite database; "
        r"name trio-chat's with --db\.",
    ):
        SqliteStore.open(path)
    assert path.read_bytes() == before  # no tables added, not switched to WAL mode
    assert not Path(f"{path}-wal").exists()


def test_an_upgrade_that_fails_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with sqlite3.connect(path) as db:
        for statement in MIGRATIONS[0].split(";"):
            db.execute(statement)
        db.execute("CREATE TABLE sessions (x)")  # in the way of schema 3's
        db.execute("PRAGMA user_version = 1")
    with pytest.raises(StorageError, match="table sessions already exists"):
        SqliteStore.open(path)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
        columns = [row[1] for row in db.execute("PRAGMA table_info(accounts)")]
        assert "rid" not in columns  # schema 2's step, taken back with the rest


def test_a_database_damaged_where_opening_does_not_look_is_a_sentence(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    store = SqliteStore.open(path)
    store.write([account(n, f"user{n}") for n in range(1, 300)])
    store.close()
    with sqlite3.connect(path) as db:
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
    with path.open("r+b") as file:
        file.seek(page_size)
        file.write(b"\xa5" * (path.stat().st_size - page_size))  # all but the schema's page
    store = SqliteStore.open(path)
    try:
        with pytest.raises(StorageError) as refused:
            store.load(window=10)
        assert str(refused.value) == (
            f"Cannot read the database {str(path)!r}: it is damaged; put a backup back "
            "(`trio-chat backup` makes them)."
        )
        with pytest.raises(StorageError, match="it is damaged"):
            store.accounts()
    finally:
        store.close()


def test_a_log_is_not_grown_on_a_disk_that_has_little_room(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a disk with 3 MB free, growing the log ahead of time filled it to the last byte.
    store = SqliteStore.open(tmp_path / "chat.db")
    monkeypatch.setattr(store_module, "free_bytes", lambda _path: 3 * 1024 * 1024)
    store.presize_log()
    assert [r.getMessage() for r in caplog.records] == [
        "the disk holding the database has 3072 KiB free: the write-ahead log grows as commits come"
    ]
    assert Path(f"{store.path}-wal").stat().st_size < 64 * 1024
    # Nor with less than four times its size free (12 MiB, for a 4 MiB log).
    caplog.clear()
    monkeypatch.setattr(store_module, "free_bytes", lambda _path: 12 * 1024 * 1024)
    store.presize_log()
    assert [r.getMessage() for r in caplog.records] == [
        "the disk holding the database has 12288 KiB free: the write-ahead log grows as "
        "commits come"
    ]
    store.write([account(1, "alice")])
    store.close()


def test_a_log_left_at_the_close_is_said_to_hold_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # After a clean stop the operator moves the database; a log SQLite could not fold in
    # (a full disk, here a backup reading it) holds acknowledged changes.
    path = tmp_path / "chat.db"
    store = SqliteStore.open(path)
    store.write([account(1, "alice")])
    reader = sqlite3.connect(path)
    with contextlib.closing(reader):
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM accounts").fetchone()
        store.close()
    assert [r.getMessage() for r in caplog.records] == [
        f"the write-ahead log {path}-wal still holds changes to the database (they could "
        "not be folded into it: a full disk, or another process reading it): keep it "
        f"beside {path}, whose copy alone lacks them"
    ]
    caplog.clear()
    SqliteStore.open(path).close()
    assert caplog.records == []
    assert not Path(f"{path}-wal").exists()


def test_a_folder_sqlite_may_not_write_in_is_named(tmp_path: Path) -> None:
    # A database in WAL mode is read through files beside it: in a folder its user may
    # not write, even reading fails. It was "not a trio-chat database" to `accounts`, and
    # "permission denied" about a file that could be written to `serve`.
    error = sqlite3.OperationalError("attempt to write a readonly database")
    error.sqlite_errorname = "SQLITE_READONLY_DIRECTORY"
    path = tmp_path / "chat.db"
    path.touch()
    assert store_files.explained(error, path) == (
        f"its folder {str(tmp_path)!r} may not be written (SQLite keeps its log there)"
    )


def test_a_log_beside_a_file_put_in_the_databases_place_is_moved_away(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A database renamed over the daemon's while it ran (noticed: its writes are refused)
    # left the daemon's log at the name, which was laid over the new file at the next start.
    path = tmp_path / "chat.db"
    store = SqliteStore.open(path)
    store.write([account(1, "alice")])
    reader = sqlite3.connect(path)  # keeps the log from being folded in at the close
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM accounts").fetchone()
    other = tmp_path / "other.db"
    replacement = SqliteStore.open(other)
    replacement.write([account(2, "bob")])
    replacement.close()
    os.replace(other, path)
    store.close()
    reader.close()
    (kept,) = tmp_path.glob("chat.db-wal.of-replaced-*")
    assert [r.getMessage() for r in caplog.records] == [
        f"moved the write-ahead log of the database replaced while the daemon ran to {kept}, "
        f"so that it is not laid over the file now at {path}"
    ]
    store = SqliteStore.open(path)
    assert [a.name for a in store.load(window=10).accounts] == ["bob"]
    store.close()


def test_a_read_only_file_system_is_named(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    path.touch()
    error = OSError(errno.EROFS, "Read-only file system", str(path))
    assert store_files.explained(error, path) == "its file system is read-only"


def test_bans_are_kept_until_lifted_or_ended(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    store = SqliteStore.open(path)
    store.write([BanSet("203.0.113.0/24", True, "2026-12-06T14:00:00.000Z")])
    store.write([BanSet("2001:db8::/64", True, "2026-12-06T14:01:00.000Z")])
    store.write(
        [BanSet("198.51.100.7/32", True, "2026-12-06T14:02:00.000Z", "2026-12-06T16:02:00.000Z")]
    )
    store.close()
    store = SqliteStore.open(path)
    kept = [
        BanRecord("203.0.113.0/24", "2026-12-06T14:00:00.000Z"),
        BanRecord("2001:db8::/64", "2026-12-06T14:01:00.000Z"),
        BanRecord("198.51.100.7/32", "2026-12-06T14:02:00.000Z", "2026-12-06T16:02:00.000Z"),
    ]
    assert store.load(window=10).bans == kept
    assert store.bans() == kept
    # Banned again: the new ban, with its end, in place of the one before.
    again = BanSet("203.0.113.0/24", True, "2026-12-06T15:00:00.000Z", "2026-12-06T17:00:00.000Z")
    store.write([again])
    assert store.bans() == [*kept[1:], again.record()]
    store.write([BanSet("2001:db8::/64", False, changed="2026-12-06T15:30:00.000Z")])
    assert store.bans() == [kept[2], again.record()]
    # A change made once a ban has ended forgets it; the one ending later stays.
    store.write([BanSet("192.0.2.0/24", False, changed="2026-12-06T16:30:00.000Z")])
    assert store.bans() == [again.record()]
    store.close()


def test_bans_made_before_they_could_end_are_kept_for_good(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with sqlite3.connect(path) as db:
        for migration in MIGRATIONS[:6]:
            db.executescript(migration)
        db.execute("PRAGMA user_version = 6")
        db.execute("INSERT INTO bans VALUES ('203.0.113.0/24', '2026-12-06T14:00:00.000Z')")
    db.close()
    store = SqliteStore.open(path)
    assert store.bans() == [BanRecord("203.0.113.0/24", "2026-12-06T14:00:00.000Z")]
    store.close()


def test_a_ban_edited_by_hand_is_taken_as_its_network_or_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A row with host bits set crashed the daemon at its start, and `bans remove` too.
    path = tmp_path / "chat.db"
    SqliteStore.open(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO bans VALUES ('203.0.113.5/24', '2026-12-06T14:00:00.000Z', NULL)")
        db.execute("INSERT INTO bans VALUES ('not a network', '2026-12-06T14:01:00.000Z', NULL)")
        db.execute("INSERT INTO bans (created) VALUES ('2026-12-06T14:02:00.000Z')")
        db.execute("INSERT INTO bans VALUES ('192.0.2.1', '2026-12-06T14:03:00.000Z', 'soon')")
    store = SqliteStore.open(path)
    assert store.load(window=10).bans == [
        BanRecord("203.0.113.0/24", "2026-12-06T14:00:00.000Z"),
        BanRecord("192.0.2.1/32", "2026-12-06T14:03:00.000Z"),  # for good: safer than none
    ]
    assert [r.getMessage() for r in caplog.records] == [
        "left out a ban of 'not a network' in the database: it names no network",
        "left out a ban of None in the database: it names no network",
        "took the ban of 192.0.2.1/32 for good: its end 'soon' is not a time",
    ]
    store.write([BanSet("192.0.2.1/32", False)])
    store.write([BanSet("203.0.113.0/24", False)])
    assert store.bans() == []
    store.close()
    # Two rows for one network: the one that ends last counts (an ended one hid one for
    # good), whichever was made first.
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO bans VALUES ('127.0.0.1', '2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z')"
        )
        db.execute("INSERT INTO bans VALUES ('127.0.0.1/32', '2026-06-01T00:00:00Z', NULL)")
        db.execute("INSERT INTO bans VALUES ('10.0.0.1', '2026-01-01T00:00:00Z', '2026-02-01')")
        db.execute("INSERT INTO bans VALUES ('10.0.0.1/32', '2026-06-01T00:00:00Z', '2026-01-05')")
    db.close()
    store = SqliteStore.open(path)
    assert store.bans() == [
        BanRecord("127.0.0.1/32", "2026-06-01T00:00:00Z"),
        BanRecord("10.0.0.1/32", "2026-01-01T00:00:00Z", "2026-02-01"),
    ]
    store.close()


def test_a_ban_for_good_outlasts_a_later_one_that_ends_and_a_ban_ends_at_its_end(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chat.db"
    SqliteStore.open(path).close()
    start, later, end = "2026-01-01T00:00:00Z", "2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z"
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO bans VALUES (?, ?, ?)",
            [
                ("127.0.0.1/32", start, None),
                ("127.0.0.1", later, end),
                ("10.0.0.1/32", start, end),
                ("10.0.0.1", later, end),  # ends with the first: the first counts
            ],
        )
    db.close()
    store = SqliteStore.open(path)
    assert store.bans() == [BanRecord("127.0.0.1/32", start), BanRecord("10.0.0.1/32", start, end)]
    # A change made at the very time a ban ends forgets it.
    store.write([BanSet("192.0.2.0/24", False, changed=end)])
    assert store.bans() == [BanRecord("127.0.0.1/32", start)]
    store.close()


def test_a_folder_or_a_file_of_garbage_is_named_for_what_it_is(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir()
    with pytest.raises(StorageError) as refused:
        SqliteStore.open(folder)
    assert str(refused.value) == (
        f"Cannot open the database {str(folder)!r}: it is a folder; choose another with --db."
    )
    with pytest.raises(StorageError) as refused:
        store_files.room_messages(folder, 5)  # the operator's look, read-only
    assert str(refused.value) == f"Cannot read the database {str(folder)!r}: it is a folder."
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StorageError) as refused:
        store_files.room_messages(garbage, 5)
    assert str(refused.value) == (
        f"Cannot read the database {str(garbage)!r}: the file is not an SQLite database."
    )
    assert store_files.why_not_trio_chat(garbage) == store_files.NOT_TRIO_CHAT
    with pytest.raises(StorageError) as refused:
        SqliteStore.open(garbage)  # no log beside it: not said to be damaged
    assert str(refused.value) == (
        f"Cannot open the database {str(garbage)!r}: the file is not an SQLite database; "
        "choose another with --db."
    )
    missing = tmp_path / "missing.db"  # looking at it must not make it
    with pytest.raises(StorageError) as refused:
        store_files.room_messages(missing, 5)
    assert str(refused.value) == f"Cannot read the database {str(missing)!r}: it cannot be created."
    assert not missing.exists()


def test_a_damaged_database_with_no_log_beside_it_is_said_damaged_and_left_so(
    tmp_path: Path,
) -> None:
    # Looking at it read-only made a log and a shared memory beside it, which it then
    # took for a log the database it replaced had left, and told the operator to move.
    path = tmp_path / "chat.db"
    SqliteStore.open(path).close()
    data = bytearray(path.read_bytes())
    data[100:108] = b"\xff" * 8  # the first page's header: where SQLite finds its tables
    path.write_bytes(bytes(data))
    for _start in range(2):
        with pytest.raises(StorageError) as refused:
            SqliteStore.open(path)
        assert str(refused.value) == (
            f"Cannot open the database {str(path)!r}: {store_files.DAMAGED}."
        )
        assert sorted(file.name for file in tmp_path.iterdir()) == ["chat.db"]


def test_a_removal_deletes_what_is_kept_for_the_account_alone(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "chat.db")
    alice = dataclasses.replace(account(1, "alice"), rid="r1")
    store.write([alice, account(2, "bob"), account(3, "carol"), MuteSet(1, True)])
    store.write([message(1, 1), message(2, 2, 1), message(3, 1, 2), message(4, 3, 1)])
    store.write([message(5, 1, 1), MarkDelivered((2,))])
    store.write([AccountRemoval(1, "2026-12-08T00:00:00.000Z")])
    store.write([PasswordSet(1, "$argon2id$later"), MuteSet(1, True)])  # changes too late
    snapshot = store.load(window=10)
    assert [a.name for a in snapshot.accounts] == ["bob", "carol"]
    assert snapshot.held == [("alice", "alice")]
    assert snapshot.next_account_id == 4  # its id is not given again
    # Its room messages and the private ones it sent stay, under its name; those sent to
    # it (read or waiting, its notes to itself) are gone, with their delivery marks.
    assert [(m.id, m.sender) for m in snapshot.recent] == [(1, "alice"), (3, "alice")]
    assert snapshot.unread == {2: 1}
    assert store.account("alice") is None
    assert [a.name for a, _waiting in store.accounts()] == ["bob", "carol"]
    with contextlib.closing(sqlite3.connect(tmp_path / "chat.db")) as db:
        row = db.execute("SELECT password_hash, rid, muted FROM accounts WHERE id = 1").fetchone()
    assert row == ("", None, 0)
    # Given out again: a new account, its name no longer held; the old one's messages
    # stay the old one's.
    store.write([account(4, "Alice")])
    assert store.held() == []
    again = store.load(window=10)
    assert [(a.id, a.name) for a in again.accounts] == [(2, "bob"), (3, "carol"), (4, "Alice")]
    assert [m.sender_id for m in again.recent] == [1, 1]
    assert again.held == []  # the first one's row holds nothing now, at a start either
    # Removed in its turn, and given out a third time.
    store.write([AccountRemoval(4, "2026-12-08T01:00:00.000Z")])
    assert store.load(window=10).held == [("Alice", "alice")]
    assert store.write([account(5, "alice")]) == []
    assert (store.load(window=10).held, store.last_account_id()) == ([], 5)
    store.close()


def not_zeroing(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite as most builds are: deleted rows are left in free pages, not zeroed."""
    connect = sqlite3.connect

    def opened(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db: sqlite3.Connection = connect(*args, **kwargs)
        db.execute("PRAGMA secure_delete = OFF")
        return db

    monkeypatch.setattr(sqlite3, "connect", opened)


def test_what_a_removal_deletes_is_left_in_no_file_of_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither in the database's free pages (with a SQLite built not to zero them, as
    most are) nor in its write-ahead log, while the daemon still runs."""
    not_zeroing(monkeypatch)
    store = SqliteStore.open(tmp_path / "chat.db")
    alice = Account(1, "alice", "alice", "$argon2id$alices-hash", "2026-11-30T00:00:00.000Z")
    store.write([dataclasses.replace(alice, rid="alices-rid"), account(2, "bob")])
    secret = dataclasses.replace(message(5, 2, 1), text="meet me at noon")
    store.write([message(n, 2) for n in range(1, 5)] + [secret])
    store.write([AccountRemoval(1, "2026-12-08T00:00:00.000Z")])
    deleted = (b"meet me at noon", b"alices-hash", b"alices-rid")

    def found() -> list[bytes]:
        written = b"".join(file.read_bytes() for file in tmp_path.iterdir())
        assert b"text 1" in written  # what stays is there to be found
        return [text for text in deleted if text in written]

    assert found() == []
    store.close()
    assert found() == []


def test_a_removed_room_messages_text_is_left_in_no_file_of_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator removes a message said by mistake (a password, say): its text goes
    from the database and from its write-ahead log at once, the daemon still running."""
    not_zeroing(monkeypatch)
    store = SqliteStore.open(tmp_path / "chat.db")
    store.write([account(1, "alice")])
    slip = dataclasses.replace(message(5, 1), text="my password is hunter2")
    store.write([message(n, 1) for n in range(1, 5)] + [slip])
    store.write([MessageRemoval(5)])

    def found() -> bool:
        written = b"".join(file.read_bytes() for file in tmp_path.iterdir())
        assert b"text 1" in written  # what stays is there to be found
        return b"hunter2" in written

    assert not found()
    store.close()
    assert not found()


def test_a_version_8_database_keeps_its_accounts_and_can_remove_one(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        for migration in MIGRATIONS[:8]:
            db.executescript(migration)
        for n, name in ((1, "alice"), (2, "bob")):
            db.execute(
                "INSERT INTO accounts (id, name, key, password_hash, created, muted)"
                " VALUES (?, ?, ?, '$argon2id$x', '2026-11-30T00:00:00.000Z', ?)",
                (n, name, name, n == 2),
            )
        db.execute(
            "INSERT INTO messages (id, ts, sender_id, recipient_id, text)"
            " VALUES (1, '2026-11-30T00:00:01.000Z', 2, 1, 'psst')"
        )
        db.execute("PRAGMA user_version = 8")
        db.commit()
    store = SqliteStore.open(path)
    snapshot = store.load(window=10)
    assert [(a.name, a.muted) for a in snapshot.accounts] == [("alice", False), ("bob", True)]
    assert (snapshot.held, snapshot.unread) == ([], {1: 1})
    store.write([AccountRemoval(1, "2026-12-08T00:00:00.000Z")])
    snapshot = store.load(window=10)
    assert [a.name for a in snapshot.accounts] == ["bob"]
    assert (snapshot.held, snapshot.unread, snapshot.recent) == ([("alice", "alice")], {}, [])
    store.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
