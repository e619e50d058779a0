"""The database as a file, apart from the daemon's use of it: where it is by default,
and its log beside it; why a file cannot be trio-chat's, in a sentence (a full disk, a
read-only mount, another program's database, a newer schema, damage); and the read-only
queries of the operator's commands (`room_messages`, `counts`)."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from .keys import data_folder
from .records import Message
from .store_schema import (
    SCHEMA_VERSION,
    SELECT_ACCOUNT_KEYS,
    SELECT_HELD,
    SELECT_MESSAGES,
    message_of,
)


class StorageError(Exception):
    """The database cannot be opened or used; the message says what to do."""


class DatabaseInUse(StorageError):
    """Another daemon holds the database (its lock)."""


FULL_BELOW = 1 << 20
"""Free bytes under which a file system that fails a write is said to be full."""


def free_bytes(path: Path) -> int | None:
    """Bytes free (to an unprivileged writer) on the file system holding `path`."""
    try:
        status = os.statvfs(path if path.is_dir() else path.parent)
    except OSError:
        return None
    return status.f_bavail * status.f_frsize


def disk_full(error: OSError | sqlite3.Error, path: Path) -> str | None:
    """Why a database cannot be opened, and what to do, if its disk is full; else None."""
    free = free_bytes(path)
    full = getattr(error, "errno", None) == errno.ENOSPC or (
        # SQLITE_FULL; an OSError's text would hold the path, which may say "full" too
        isinstance(error, sqlite3.Error) and "database or disk is full" in str(error)
    )
    io_error = isinstance(error, sqlite3.Error) and "disk I/O error" in str(error)
    if not (full or (free is not None and free < FULL_BELOW and io_error)):
        return None
    # SQLite says "disk I/O error" when it cannot make its shared-memory file.
    left = "" if free is None else f", {free // 1024} KiB free"
    return f"the disk holding it is full{left}; free some space and start it again"


def _read_only_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def explained(error: OSError | sqlite3.Error, path: Path) -> str:
    """What is wrong with a database that cannot be opened, in a few words."""
    if path.is_dir():
        return "it is a folder"
    if isinstance(error, OSError):
        if error.errno in (errno.EEXIST, errno.ENOTDIR):
            return "a part of its folder is a file"
        if error.errno == errno.EROFS:
            return "its file system is read-only"
        if error.errno in (errno.EACCES, errno.EPERM):
            return "permission denied"
        if error.errno == errno.EISDIR:
            return "it is a folder"
        return (error.strerror or str(error)).lower()
    text = str(error)
    if isinstance(error, sqlite3.DatabaseError) and "not a database" in text:
        return "the file is not an SQLite database"
    if getattr(error, "sqlite_errorname", None) == "SQLITE_READONLY_DIRECTORY":
        return f"its folder {str(path.parent)!r} may not be written (SQLite keeps its log there)"
    if "readonly" in text or "unable to open" in text:
        if not path.exists():
            return "it cannot be created"
        return "its file system is read-only" if _read_only_mount(path) else "permission denied"
    return text


NOT_TRIO_CHAT = "it is not a trio-chat database"
DAMAGED = "it is damaged; put a backup back (`trio-chat backup` makes them)"


def advised(why: str) -> str:
    """What is wrong with a database that cannot be opened, and what to do."""
    if why == "permission denied":
        return f"{why}; run the daemon as the user it is for, or choose another with --db"
    if "may not be written" in why:
        return why  # the folder's, which the words say
    return f"{why}; choose another with --db"


def why_not_trio_chat(path: Path) -> str | None:
    """Why the file at `path` cannot be read as a trio-chat database (of any schema),
    looked at read-only: `NOT_TRIO_CHAT`, or what kept it from being read; None if it is
    one."""
    try:
        version, tables, _damage = _look(path, whole=False)
    except (sqlite3.Error, OSError) as error:
        why = explained(error, path)
        return NOT_TRIO_CHAT if why == "the file is not an SQLite database" else why
    return None if _trio_chats(version, tables) else NOT_TRIO_CHAT


def read_only(path: Path) -> sqlite3.Connection:
    """A connection that only reads the database at `path`: it never makes one, nor
    changes it (a URI names the path from the root: `--db chat.db` is the current
    folder's)."""
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)


def room_messages(path: Path, last: int, *, sender_key: str | None = None) -> list[Message]:
    """The room's newest `last` messages in the database at `path` (the daemon running or
    not: read-only), oldest first, removed ones left out: all, or `sender_key`'s (one by
    its id: `room_message`). `StorageError` with a sentence if they cannot be read;
    `LookupError` if no account has the name key `sender_key`."""
    where = ["m.recipient_id IS NULL", "m.removed = 0"]
    arguments: list[str | int] = []
    if sender_key is not None:
        where.append("s.key = ?")
        arguments.append(sender_key)
    query = f"{SELECT_MESSAGES} WHERE {' AND '.join(where)} ORDER BY m.id DESC LIMIT ?"
    with _reading(path) as db:
        rows = db.execute(query, (*arguments, last)).fetchall()
        if not rows and sender_key is not None:
            if db.execute("SELECT 1 FROM accounts WHERE key = ?", (sender_key,)).fetchone():
                return []
            raise LookupError(sender_key)
    return [message_of(row) for row in reversed(rows)]


def room_message(path: Path, message_id: int) -> Message | bool:
    """The room's message numbered `message_id` in the database at `path` (read-only);
    if its history does not have it, whether the operator removed it (its mark is
    there). `StorageError` as `room_messages`."""
    removed = "SELECT 1 FROM messages WHERE id = ? AND recipient_id IS NULL AND removed != 0"
    with _reading(path) as db:
        kept = f"{SELECT_MESSAGES} WHERE m.id = ? AND m.recipient_id IS NULL AND m.removed = 0"
        row = db.execute(kept, (message_id,)).fetchone()
        if row is not None:
            return message_of(row)
        return db.execute(removed, (message_id,)).fetchone() is not None


def _held(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """The names removed accounts hold: each with its key and when it was removed."""
    return [(str(name), str(key), str(removed)) for name, key, removed in db.execute(SELECT_HELD)]


def held_names(path: Path) -> list[tuple[str, str]]:
    """The names removed accounts hold in the database at `path` (the daemon running or
    not: read-only), each with when it was removed, by name key. `StorageError` as
    `room_messages`."""
    with _reading(path) as db:
        return [(name, removed) for name, _key, removed in _held(db)]


def held_name(path: Path, key: str) -> tuple[str, str] | None:
    """The name a removed account holds under name key `key` in the database at `path`,
    and when it was removed, or None if none holds it (read-only, as `held_names`)."""
    with _reading(path) as db:
        return next(((name, when) for name, held, when in _held(db) if held == key), None)


def back_again(restored: Path, before: Path) -> list[str]:
    """The names removed accounts held in the database at `before` that accounts in the
    one at `restored` have (a backup made before they were removed, restored), read-only.
    `StorageError` as `room_messages`."""
    with _reading(before) as db:
        held = {key: name for name, key, _removed in _held(db)}
    if not held:
        return []
    with _reading(restored) as db:
        keys = {str(key) for (key,) in db.execute(SELECT_ACCOUNT_KEYS)}
    return [held[key] for key in sorted(held) if key in keys]


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[sqlite3.Connection]:
    """The database at `path`, read-only, if it is of this trio-chat's schema;
    `StorageError` with a sentence if it cannot be read."""
    try:
        with contextlib.closing(read_only(path)) as db:
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version != SCHEMA_VERSION:
                raise StorageError(other_schema(path, version))
            yield db
    except (sqlite3.Error, OSError) as error:
        raise StorageError(
            f"Cannot read the database {str(path)!r}: {explained(error, path)}."
        ) from None


def counts(db: sqlite3.Connection) -> tuple[int, int]:
    """The accounts and the messages (not those the operator removed) in a trio-chat
    database of any schema, as a backup or a restore says them."""
    account_columns = {row[1] for row in db.execute("PRAGMA table_info(accounts)")}
    # Older schemas remove none.
    present = " WHERE removed IS NULL" if "removed" in account_columns else ""
    (accounts,) = db.execute("SELECT count(*) FROM accounts" + present).fetchone()
    message_columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
    kept = " WHERE removed = 0" if "removed" in message_columns else ""
    (messages,) = db.execute("SELECT count(*) FROM messages" + kept).fetchone()
    return int(accounts), int(messages)


def first_damage(db: sqlite3.Connection) -> str:
    """The first damage SQLite's check finds in `db`, on one line ("ok" for none): it puts
    a heading on a line of its own before it."""
    (found,) = db.execute("PRAGMA quick_check(1)").fetchone()
    return str(found).splitlines()[-1]


def other_schema(path: Path, version: int) -> str:
    """Why a database of another schema version is not read (nor written) as it is."""
    if version > SCHEMA_VERSION:
        return (
            f"The database {str(path)!r} was written by a newer trio-chat (schema "
            f"{version}, this one's {SCHEMA_VERSION}); use the trio-chat its daemon runs."
        )
    return (
        f"The database {str(path)!r} is of schema {version}, this trio-chat's "
        f"{SCHEMA_VERSION}; use the trio-chat its daemon runs (a daemon upgrades its "
        "database when it starts)."
    )


def _look(path: Path, *, whole: bool) -> tuple[int, set[str], str]:
    """The schema version and the tables of the database at `path`, and, if `whole`, the
    first damage SQLite finds in it ("ok" for none), read-only."""
    with contextlib.closing(read_only(path)) as db:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        damage = db.execute("PRAGMA quick_check(1)").fetchone()[0] if whole else "ok"
    return int(version), tables, str(damage)


def _trio_chats(version: int, tables: set[str]) -> bool:
    """Whether a database of this schema version and these tables is trio-chat's."""
    return version > 0 and "accounts" in tables


def log_of(database: Path) -> Path:
    """The database's write-ahead log, beside it: `chat.db-wal`."""
    return database.with_name(database.name + "-wal")


def shared_memory_of(database: Path) -> Path:
    """The log's index, beside the database: `chat.db-shm`."""
    return database.with_name(database.name + "-shm")


def why_unfit(path: Path) -> str | None:
    """Why the file at `path` must not be opened as trio-chat's database, found read-only;
    None if nothing was found (a file not there or empty is a new database).

    Read-only, so that nothing is written to a file that turns out to be another
    program's, and no write-ahead log is folded into it: SQLite folds the log into the
    file when its last writer closes, and a log left beside a database that was put back
    by hand from a backup (`chat.db-wal`, from the one it replaced) would damage it for
    good. A log is there after a stop that was not clean: the whole file is then checked.
    Only a log that does not fit the file is caught so; one that fits it is taken for its
    own (SQLite cannot tell whose a log is), which `trio-chat restore` rules out.
    """
    try:
        if path.stat().st_size == 0:
            return None
    except OSError:
        return None  # opening it will say why
    # Read read-only, a database in WAL mode gets a log and a shared memory that the reader
    # cannot remove: not taken for a log left beside it, and removed (its daemon holds the
    # database's lock, so no other has them).
    log_file = log_of(path)
    made = [file for file in (log_file, shared_memory_of(path)) if not file.exists()]
    try:
        return _why_unfit(path, logged=log_file not in made)
    finally:
        with contextlib.suppress(OSError):
            if log_file not in made or log_file.stat().st_size == 0:  # nothing written
                for file in made:
                    file.unlink(missing_ok=True)


def _why_unfit(path: Path, *, logged: bool) -> str | None:
    """`why_unfit` of a file with something in it; `logged`: whether a log was beside it."""
    log_file = log_of(path)
    try:
        after_a_crash = log_file.exists() and log_file.stat().st_size > 0
        version, tables, damage = _look(path, whole=after_a_crash)
    except sqlite3.DatabaseError as error:
        text = str(error)
        if "malformed" in text or "not a database" in text:
            damage = text
        else:
            return None  # not readable so (a folder it may not write): opening it says why
    except (OSError, ValueError):
        return None
    else:
        if tables and not _trio_chats(version, tables):
            return "it is another program's SQLite database; name trio-chat's with --db"
        if damage == "ok":
            return None
    if logged:
        return (
            "it is damaged, with the write-ahead log beside it; if it was put back from a "
            f"backup, move {str(log_file)!r} and {str(shared_memory_of(path))!r} away first (they "
            "belong to the database it replaced), else put a backup back"
        )
    if "not a database" in damage:
        return "the file is not an SQLite database; choose another with --db"
    return DAMAGED


def default_database() -> Path:
    """`$XDG_DATA_HOME/trio-chat/chat.db`, by default under `~/.local/share`: in
    `keys.data_folder`, beside the daemon's key and the daemons a client trusts."""
    return data_folder() / "chat.db"
