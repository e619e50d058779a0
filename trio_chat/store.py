"""SQLite storage.

`SqliteStore` is synchronous: the daemon commits on its event loop while the disk is quick
and reads history in worker threads (`persistence.py`), so its connection is shared under
a lock. The `Storage` protocol is all the daemon needs from a store, so another backend is
one more class, not a rewrite. The schema and its migrations are `store_schema`; the
database as a file (its default place, why a file cannot be trio-chat's, the operator's
read-only queries) is `store_files`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from .records import (
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
    Snapshot,
    StoreOp,
    network_name,
    unix_time,
)
from .store_files import (
    DAMAGED,
    DatabaseInUse,
    StorageError,
    advised,
    disk_full,
    explained,
    free_bytes,
    log_of,
    other_schema,
    shared_memory_of,
    why_unfit,
)
from .store_schema import (
    ACCOUNT_COLUMNS,
    MIGRATIONS,
    RELEASED,
    SCHEMA_VERSION,
    SELECT_HELD,
    SELECT_MESSAGES,
    account_of,
    message_of,
)

REMOVALS_LOADED = 1000
"""The latest removals a daemon loads at its start, to tell clients coming back."""
LOG_PAGES = 1000
"""Pages in the write-ahead log that make a commit checkpoint it (SQLite's default)."""
LOG_SPARE_PAGES = 32
"""...and a few more that `presize_log` writes: its small cache keeps some back."""
PRESIZE_ROOM = 4
"""`presize_log` grows the log only on a disk with this many times its size free."""
WAL_HEADER_BYTES = 32
WAL_FRAME_HEADER_BYTES = 24


def log_bytes(page_size: int) -> int:
    """The size of a write-ahead log of `LOG_PAGES` pages."""
    return WAL_HEADER_BYTES + LOG_PAGES * (WAL_FRAME_HEADER_BYTES + page_size)


log = logging.getLogger(__name__)

FORGETTING = (AccountRemoval, MessageRemoval)
"""The changes whose deleted text must leave the files at once (`_forget_log`)."""

_INSERT_MESSAGE = (
    "INSERT INTO messages (id, ts, sender_id, recipient_id, text, cid) VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_MESSAGE_ONCE = (
    _INSERT_MESSAGE + " ON CONFLICT (sender_id, cid) WHERE cid IS NOT NULL DO NOTHING"
)
"""A second copy (the same sender and `cid`) is skipped, not an error: any client can
resend an old `cid`, and an error would send the whole commit down the slow path."""


class Storage(Protocol):
    def load(self, window: int) -> Snapshot: ...

    def write(self, ops: Sequence[StoreOp]) -> list[StoreOp]:
        """Commit `ops` in one transaction; return those that could not be stored."""
        ...

    def history(self, account_id: int, before: int | None, limit: int) -> list[Message]: ...

    def mailbox(self, account_id: int) -> list[Message]:
        """The private messages waiting for the account, oldest first."""
        ...

    def sent(self, sender_id: int, cid: str) -> Message | None:
        """The message stored from `sender_id` under the client's id `cid`, if any."""
        ...

    def close(self) -> None: ...


def _time(value: object) -> float | None:
    """The Unix time a row's text (maybe edited by hand) names; None if it names none."""
    if not isinstance(value, str):
        return None
    try:
        return unix_time(value)
    except ValueError:
        return None


def _ends_later(until: str | None, other: str | None) -> bool:
    """Whether a ban ending `until` (None: never) ends after one ending `other`."""
    if other is None:
        return False
    if until is None:
        return True
    ends, others = _time(until), _time(other)
    return ends is not None and others is not None and ends > others


def _ended(until: object, at: str) -> bool:
    """Whether a ban's row ending `until` has ended by the time `at` (one whose end is
    not a time never has)."""
    ends, now = _time(until), _time(at)
    return ends is not None and now is not None and ends <= now


def _names(row: object, network: str) -> bool:
    """Whether a ban's row (maybe edited by hand) names `network`."""
    if not isinstance(row, str):
        return False
    try:
        return network_name(row) == network
    except ValueError:
        return False


def _identity(status: os.stat_result) -> tuple[int, int]:
    return status.st_dev, status.st_ino


class SqliteStore:
    """One SQLite file in WAL mode; every method may be called from any one thread at a time."""

    def __init__(self, connection: sqlite3.Connection, path: Path, held: int | None = None) -> None:
        self._db = connection
        self._lock = threading.Lock()
        self.path = path
        self._held = held
        """A descriptor of the database file, locked while the store is open (`open`)."""
        self._identity = _identity(os.fstat(held)) if held is not None else None
        """The file opened: what the path must still name for a write to count."""

    @classmethod
    def open(cls, path: Path | str, *, migrate: bool = True) -> SqliteStore:
        """Open (creating, readable by its owner only) and migrate the database at `path`;
        without `migrate`, a database of another schema is refused (`StorageError`).

        The file is locked (`flock`) until `close`: a second store on it, another daemon's,
        is refused. Two daemons on one database would each number accounts and messages
        from what they loaded, and refuse the other's rows as clashes.
        """
        path = Path(path)
        held: int | None = None
        connection: sqlite3.Connection | None = None
        try:
            if path.parent != Path():
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Kept open until the connection is closed: closing a descriptor of the file
            # would drop the POSIX locks SQLite holds on it in this process.
            held = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(held)
                held = None
                raise DatabaseInUse(
                    f"Cannot open the database {str(path)!r}: another trio-chat daemon (or a "
                    "restore) is using it; stop that one first, or choose another with --db."
                ) from None
            except OSError as error:  # a file system without flock (some network ones)
                log.warning(
                    "cannot lock the database (%s): nothing keeps a second daemon off it",
                    (error.strerror or str(error)).lower(),
                )
            unfit = why_unfit(path)
            if unfit is not None:
                raise StorageError(f"Cannot open the database {str(path)!r}: {unfit}.")
            connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")
            connection.execute("PRAGMA foreign_keys = ON")
            connection.execute("PRAGMA busy_timeout = 5000")
            # What is deleted (an account removed, a message the operator removed) is
            # written over, not left in free pages: some builds of SQLite do not by default.
            connection.execute("PRAGMA secure_delete = ON")
            store = cls(connection, path, held)
            if migrate:
                store._migrate()
            else:
                store._check_schema()
            store._check_writable()
        except BaseException as error:
            if connection is not None:
                connection.close()
            if held is not None:
                os.close(held)
            if isinstance(error, OSError | sqlite3.Error):
                why = disk_full(error, path) or advised(explained(error, path))
                raise StorageError(f"Cannot open the database {str(path)!r}: {why}.") from error
            raise
        return store

    def presize_log(self) -> None:
        """Grow the write-ahead log to its working size now, before the first commit.

        SQLite deletes the log when the last connection closes, and a fresh log grows
        with every commit until the first checkpoint lets the next ones write over it
        (`LOG_PAGES`, SQLite's default checkpoint threshold: ~900 small commits). While
        it grows, each commit's sync must also record the file's new size: measured,
        0.21-0.26 ms a commit against 0.12-0.14 ms once commits write over the log. So
        a transaction that writes a little more than that many pages, with a cache too
        small to hold them, spills them into the log and is rolled back: nothing is
        stored, and the commits that follow write over the frames it left (which no
        reader, and no recovery after a crash, takes for committed: they end in no
        commit record). The log is synced here, so that the first commit's sync does
        not flush it all on the daemon's event loop. Only a head start: whatever goes
        wrong is one warning, and the log then grows as commits come.
        """
        wal = log_of(self.path)
        with self._lock:
            db = self._db
            try:
                (page_size,) = db.execute("PRAGMA page_size").fetchone()
                if wal.exists() and wal.stat().st_size >= log_bytes(page_size):
                    return
                free = free_bytes(self.path)
                if free is not None and free < PRESIZE_ROOM * log_bytes(page_size):
                    # Grown now, the log could take what little room the commits have.
                    log.warning(
                        "the disk holding the database has %d KiB free: the write-ahead "
                        "log grows as commits come",
                        free // 1024,
                    )
                    return
                (cache_size,) = db.execute("PRAGMA cache_size").fetchone()
                (busy_timeout,) = db.execute("PRAGMA busy_timeout").fetchone()
                # Not worth waiting for another writer's lock over.
                db.execute("PRAGMA busy_timeout = 0")
                db.execute("PRAGMA cache_size = 16")
                try:
                    self._spill((LOG_PAGES + LOG_SPARE_PAGES) * page_size)
                finally:
                    db.execute(f"PRAGMA cache_size = {int(cache_size)}")
                    db.execute(f"PRAGMA busy_timeout = {int(busy_timeout)}")
                descriptor = os.open(wal, os.O_RDONLY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
            except (sqlite3.Error, OSError) as error:
                log.warning("could not grow the write-ahead log ahead of time (%s)", error)

    def _spill(self, size: int) -> None:
        """Write `size` bytes in a transaction that is then rolled back."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE log_room (b BLOB)")
            db.execute("INSERT INTO log_room VALUES (zeroblob(?))", (size,))
        finally:
            if db.in_transaction:  # SQLite rolls back by itself after some errors
                db.execute("ROLLBACK")

    def _check_writable(self) -> None:
        """Fail now, not at the first registration, on a database opened read-only (a
        read-only mount, a file its user may not write): write a header field as it is,
        then roll back."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            (version,) = db.execute("PRAGMA user_version").fetchone()
            db.execute(f"PRAGMA user_version = {int(version)}")
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")

    def _check_schema(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version != SCHEMA_VERSION:
            raise StorageError(other_schema(self.path, version))

    def _step(self, statement: str) -> None:
        """One statement of an upgrade. A column it adds that is there already (put there
        by a trio-chat that numbered its schema otherwise) counts as added."""
        try:
            self._db.execute(statement)
        except sqlite3.OperationalError as error:
            if not str(error).startswith("duplicate column name"):
                raise

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"The database {str(self.path)!r} was written by a newer trio-chat "
                f"(schema {version}); upgrade trio-chat to use it."
            )
        if version == SCHEMA_VERSION:
            return
        if version > 0:
            # Said before, too: a large database takes a while, with nothing else said.
            log.warning(
                "upgrading the database %s from schema %d to %d (a large one takes a "
                "while; stopped meanwhile, it is left as it was)",
                self.path,
                version,
                SCHEMA_VERSION,
            )
        # Every step in one transaction: one that fails leaves the file as it was.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[target - 1].split(";"):
                    if statement.strip():
                        self._step(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        if 0 < version < SCHEMA_VERSION:
            # Said, since an older trio-chat refuses the database from now on: going back
            # takes a backup from before.
            log.warning(
                "upgraded the database %s from schema %d to %d; older trio-chat versions "
                "no longer open it",
                self.path,
                version,
                SCHEMA_VERSION,
            )

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock; a file found damaged while read is a
        `StorageError` that says so (whatever opening it could not see)."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.DatabaseError as error:
                why = explained(error, self.path)
                if "malformed" in why:
                    why = DAMAGED
                raise StorageError(
                    f"Cannot read the database {str(self.path)!r}: {why}."
                ) from error

    def load(self, window: int) -> Snapshot:
        with self._reading() as db:
            accounts = [
                account_of(row)
                for row in db.execute(
                    f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE removed IS NULL ORDER BY id"
                )
            ]
            held = self._held_names(db)
            recent = [
                message_of(r)
                for r in db.execute(
                    SELECT_MESSAGES + " WHERE m.removed = 0 ORDER BY m.id DESC LIMIT ?", (window,)
                )
            ]
            recent.reverse()
            unread = dict(
                db.execute(
                    "SELECT recipient_id, count(*) FROM messages"
                    " WHERE recipient_id IS NOT NULL AND delivered = 0"
                    # A note to yourself waits in no mailbox.
                    " AND recipient_id != sender_id GROUP BY recipient_id"
                )
            )
            (public_count,) = db.execute(
                "SELECT count(*) FROM messages WHERE recipient_id IS NULL AND removed = 0"
            ).fetchone()
            (last_message,) = db.execute("SELECT coalesce(max(id), 0) FROM messages").fetchone()
            last_account = self._last_account_id(db)
            sessions = [
                SessionOpened(sid, host, port)
                for sid, host, port in db.execute("SELECT sid, host, port FROM sessions")
            ]
            bans = self._bans(db)
            removals = db.execute(
                "SELECT removed, id FROM messages WHERE removed > 0 ORDER BY removed DESC, id DESC"
                " LIMIT ?",
                (REMOVALS_LOADED,),
            ).fetchall()
        return Snapshot(
            accounts=accounts,
            recent=recent,
            unread=unread,
            public_count=public_count,
            next_message_id=last_message + 1,
            stored_up_to=last_message,
            next_account_id=last_account + 1,
            sessions=sessions,
            bans=bans,
            held=held,
            removals=[(int(point), int(message_id)) for point, message_id in reversed(removals)],
        )

    def accounts(self) -> list[tuple[Account, int]]:
        """Every account, in name order, with the private messages waiting for it (for
        the operator's `trio-chat accounts list`)."""
        with self._reading() as db:
            rows = db.execute(
                f"SELECT {ACCOUNT_COLUMNS},"
                " (SELECT count(*) FROM messages m WHERE m.recipient_id = accounts.id"
                "  AND m.delivered = 0 AND m.sender_id != accounts.id)"
                " FROM accounts WHERE removed IS NULL ORDER BY key"
            ).fetchall()
        return [(account_of(row), row[-1]) for row in rows]

    def bans(self) -> list[BanRecord]:
        """The networks turned away, oldest first, ended bans too (for `trio-chat bans
        list`, which leaves those out)."""
        with self._reading() as db:
            return self._bans(db)

    def _bans(self, db: sqlite3.Connection) -> list[BanRecord]:
        """Each ban as `network_name` writes it (a row edited by hand may not be), oldest
        first; a row that names no network is left out, and one whose end is not a time
        taken as for good, each said."""
        bans: dict[str, BanRecord] = {}
        rows = db.execute("SELECT network, created, until FROM bans ORDER BY created")
        for network, created, until in rows:
            try:
                if not isinstance(network, str):
                    raise ValueError(network)  # NULL, or a blob: no network
                name = network_name(network)
            except ValueError:
                log.warning("left out a ban of %r in the database: it names no network", network)
                continue
            if until is not None and _time(until) is None:
                log.warning("took the ban of %s for good: its end %r is not a time", name, until)
                until = None
            kept = bans.get(name)
            if kept is None or _ends_later(until, kept.until):
                bans[name] = BanRecord(name, str(created), until)  # the longest counts
        return list(bans.values())

    def account(self, key: str) -> Account | None:
        """The account whose name key is `key`, if there is one (not a removed one)."""
        with self._reading() as db:
            row = db.execute(
                f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE key = ? AND removed IS NULL",
                (key,),
            ).fetchone()
        return None if row is None else account_of(row)

    def last_account_id(self) -> int:
        """The newest account's id, removed or not (0: none)."""
        with self._reading() as db:
            return self._last_account_id(db)

    @staticmethod
    def _last_account_id(db: sqlite3.Connection) -> int:
        (last,) = db.execute("SELECT coalesce(max(id), 0) FROM accounts").fetchone()
        return int(last)

    def held(self) -> list[tuple[str, str]]:
        """The names (display form, key) removed accounts hold (`Snapshot.held`)."""
        with self._reading() as db:
            return self._held_names(db)

    @staticmethod
    def _held_names(db: sqlite3.Connection) -> list[tuple[str, str]]:
        return [(str(name), str(key)) for name, key, _removed in db.execute(SELECT_HELD)]

    def write(self, ops: Sequence[StoreOp]) -> list[StoreOp]:
        with self._lock:
            self._check_in_place()
            failed: list[StoreOp] = []
            try:
                self._transaction(lambda: failed.extend(self._apply_all(ops)))
            except sqlite3.IntegrityError:
                failed = []  # rare: find the change at fault, one savepoint per change
                self._transaction(lambda: failed.extend(self._apply_each(ops)))
            if any(isinstance(op, FORGETTING) and op not in failed for op in ops):
                self._forget_log()
        return failed

    def _forget_log(self) -> None:
        """Empty the write-ahead log, which holds what a removal deleted (an account's
        password hash and the messages sent to it, a room message's text) until commits
        write over it, maybe long after: its pages go to the database, where the deletion
        is written over them.
        Readers reading meanwhile may keep the log as it is (then it is written over as
        commits come); rare enough not to matter, and never an error."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as error:
            log.warning("could not empty the write-ahead log after a removal (%s)", error)

    def _replaced(self) -> bool:
        """Whether the path no longer names the file opened (removed, moved, replaced)."""
        if self._identity is None:
            return False
        try:
            there = _identity(os.stat(self.path))
        except OSError:
            there = None
        return there != self._identity

    def _check_in_place(self) -> None:
        """Refuse to write into a file no longer at its path (removed, moved, replaced):
        all written there would be lost when the daemon stops, though acknowledged."""
        if self._replaced():
            raise StorageError(
                f"the database {str(self.path)!r} was removed or replaced while the daemon "
                "ran; put it back, or restart the daemon to use the file now there"
            )

    def _transaction(self, body: Callable[[], object]) -> None:
        db = self._db
        db.execute("BEGIN")
        try:
            body()
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _apply_all(self, ops: Sequence[StoreOp]) -> list[Message]:
        """Every change at once; the messages, the bulk of a batch, in one statement.
        Returns the messages skipped as second copies."""
        db = self._db
        messages = [op for op in ops if isinstance(op, Message)]
        copies: list[Message] = []
        if messages:
            before = db.total_changes
            db.executemany(
                _INSERT_MESSAGE_ONCE,
                [(m.id, m.ts, m.sender_id, m.recipient_id, m.text, m.cid) for m in messages],
            )
            if db.total_changes - before < len(messages):
                stored = {
                    row[0]
                    for row in db.execute(
                        "SELECT id FROM messages WHERE id >= ? AND id <= ?",
                        (min(m.id for m in messages), max(m.id for m in messages)),
                    )
                }
                copies = [m for m in messages if m.id not in stored]
        for op in ops:
            if not isinstance(op, Message):
                self._apply(op)
        return copies

    def _apply_each(self, ops: Sequence[StoreOp]) -> list[StoreOp]:
        failed: list[StoreOp] = []
        db = self._db
        for op in ops:
            db.execute("SAVEPOINT op")
            try:
                self._apply(op)
            except sqlite3.IntegrityError:
                db.execute("ROLLBACK TO op")
                failed.append(op)
            db.execute("RELEASE op")
        return failed

    def _apply(self, op: StoreOp) -> None:
        if isinstance(op, Message):
            self._db.execute(
                _INSERT_MESSAGE, (op.id, op.ts, op.sender_id, op.recipient_id, op.text, op.cid)
            )
        elif isinstance(op, MarkDelivered):
            self._db.executemany(
                "UPDATE messages SET delivered = 1 WHERE id = ?",
                [(message_id,) for message_id in op.message_ids],
            )
        elif isinstance(op, SessionOpened):
            self._db.execute(
                "INSERT OR REPLACE INTO sessions (sid, host, port) VALUES (?, ?, ?)",
                (op.sid, op.host, op.port),
            )
        elif isinstance(op, SessionClosed):
            self._db.execute("DELETE FROM sessions WHERE sid = ?", (op.sid,))
        elif isinstance(op, MuteSet):
            self._db.execute(
                "UPDATE accounts SET muted = ? WHERE id = ? AND removed IS NULL",
                (int(op.muted), op.account_id),
            )
        elif isinstance(op, AccountRemoval):
            # What is kept for it alone goes: its password hash and flags, the request that
            # registered it, the private messages sent to it (waiting or read; their
            # delivery marks with them). Its row stays, the author of what it said.
            self._db.execute("DELETE FROM messages WHERE recipient_id = ?", (op.account_id,))
            self._db.execute(
                "UPDATE accounts SET password_hash = '', rid = NULL, muted = 0, removed = ?"
                " WHERE id = ? AND removed IS NULL",
                (op.removed, op.account_id),
            )
        elif isinstance(op, MessageRemoval):
            # Marked with the newest message stored now: a client that had seen up to
            # it or less is told of the removal when it comes back (`Snapshot.removals`).
            self._db.execute(
                "UPDATE messages SET text = '',"
                " removed = (SELECT max(id) FROM messages)"
                " WHERE id = ? AND recipient_id IS NULL AND removed = 0",
                (op.message_id,),
            )
        elif isinstance(op, BanSet):
            # The network's ban before (in whichever form a hand wrote it) goes, and so
            # does every ban ended by the time of this change.
            self._db.executemany(
                "DELETE FROM bans WHERE network = ?",
                [
                    (network,)
                    for network, until in self._db.execute("SELECT network, until FROM bans")
                    if _names(network, op.network) or _ended(until, op.changed)
                ],
            )
            if op.banned:
                self._db.execute(
                    "INSERT INTO bans (network, created, until) VALUES (?, ?, ?)",
                    (op.network, op.created, op.until),
                )
        elif isinstance(op, PasswordSet):
            row = self._db.execute(
                "SELECT password_hash FROM accounts WHERE id = ?", (op.account_id,)
            ).fetchone()
            if row is not None:
                self._db.execute(
                    "UPDATE accounts SET password_hash = ? WHERE id = ? AND removed IS NULL",
                    (op.applied(row[0]), op.account_id),
                )
        else:
            # A removed account's name given out again: its row lets go of the name.
            self._db.execute(
                "UPDATE accounts SET key = ? || id WHERE key = ? AND removed IS NOT NULL",
                (RELEASED, op.key),
            )
            self._db.execute(
                "INSERT INTO accounts (id, name, key, password_hash, created, rid)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (op.id, op.name, op.key, op.password_hash, op.created, op.rid),
            )

    def history(self, account_id: int, before: int | None, limit: int) -> list[Message]:
        """Up to `limit` messages older than `before` that the account may see, oldest first."""
        with self._lock:
            rows = self._db.execute(
                SELECT_MESSAGES + " WHERE m.id < ? AND m.removed = 0"
                " AND (m.recipient_id IS NULL OR m.recipient_id = ?"
                " OR (m.sender_id = ? AND m.recipient_id IS NOT NULL))"
                " ORDER BY m.id DESC LIMIT ?",
                (before if before is not None else 2**63 - 1, account_id, account_id, limit),
            ).fetchall()
        return [message_of(row) for row in reversed(rows)]

    def mailbox(self, account_id: int) -> list[Message]:
        with self._lock:
            rows = self._db.execute(
                SELECT_MESSAGES + " WHERE m.recipient_id = ? AND m.delivered = 0"
                " AND m.sender_id != ? ORDER BY m.id",
                (account_id, account_id),
            ).fetchall()
        return [message_of(row) for row in rows]

    def sent(self, sender_id: int, cid: str) -> Message | None:
        with self._lock:
            row = self._db.execute(
                SELECT_MESSAGES + " WHERE m.sender_id = ? AND m.cid = ?", (sender_id, cid)
            ).fetchone()
        return None if row is None else message_of(row)

    def close(self) -> None:
        """Close the database: SQLite folds the write-ahead log into it and removes the
        log, unless it cannot (a full disk, another process reading it), which is said.
        A log left beside a file put in the database's place while it was open is the
        replaced file's: it is moved away, not to be laid over the new one."""
        with self._lock:
            replaced = self._replaced()
            self._db.close()
            if self._held is not None:
                os.close(self._held)  # the lock with it
                self._held = None
        wal = log_of(self.path)
        with contextlib.suppress(OSError):
            if replaced and wal.stat().st_size > 0:
                kept = wal.with_name(f"{wal.name}.of-replaced-{secrets.token_hex(4)}")
                os.rename(wal, kept)
                shared_memory_of(self.path).unlink(missing_ok=True)
                log.warning(
                    "moved the write-ahead log of the database replaced while the daemon ran "
                    "to %s, so that it is not laid over the file now at %s",
                    kept,
                    self.path,
                )
                return
            if wal.stat().st_size > 0:
                log.warning(
                    "the write-ahead log %s still holds changes to the database (they could "
                    "not be folded into it: a full disk, or another process reading it): "
                    "keep it beside %s, whose copy alone lacks them",
                    wal,
                    self.path,
                )
