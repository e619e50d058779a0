"""A copy of a daemon's database and keys, taken while it runs (`trio-chat backup`; put
back by `restore`).

SQLite's online backup reads the whole database in one read transaction, so the copy is
the database as it was at one moment, whatever the daemon commits meanwhile (its
write-ahead log lets a reader and the writer go on together). The keys go with it:
restored without its key, the daemon would be refused by every client as a changed one;
without its ticket key, every session would need its password again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .keys import KeyFileError, copy_secret, key_paths, secret_in, written_whole
from .store_files import (
    counts,
    explained,
    first_damage,
    log_of,
    read_only,
    shared_memory_of,
)


class BackupError(Exception):
    """The backup could not be made (or put back); the message says why, in one sentence."""


@dataclass(frozen=True, slots=True)
class Backup:
    files: tuple[Path, ...]
    """What was written: the database's copy, then its keys."""
    accounts: int
    messages: int


def back_up(database: Path, folder: Path) -> Backup:
    """Copy `database` and its key files into `folder` (made, mode 0700, if need be),
    each file whole or not at all, replacing an earlier backup's."""
    try:
        return _back_up(database, folder)
    except OSError as error:
        # A look at a path refused: a folder of the daemon's user's alone (cron run as
        # another), a name too long. Said as the copy's own failures are.
        if _within(error.filename, folder):
            raise BackupError(f"Cannot write into {folder}: {why_failed(error)}.") from None
        hint = "; back up as the daemon's user" if error.errno == errno.EACCES else ""
        raise BackupError(f"Cannot back up {database}: {why_failed(error)}{hint}.") from None


def _back_up(database: Path, folder: Path) -> Backup:
    if not database.is_file():
        raise BackupError(f"There is no database at {database}; give the daemon's with --db.")
    keys = key_paths(database)
    for key in keys:
        if not key.is_file():
            raise BackupError(
                f"There is no key file {key} beside the database; "
                "a daemon makes it on its first start."
            )
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise BackupError(
            f"{folder} is a file, not a folder; give a folder to back up into."
        ) from None
    except OSError as error:
        raise BackupError(f"Cannot make the folder {folder}: {why_failed(error)}.") from None
    target = folder / database.name
    if target.exists() and target.samefile(database):
        raise BackupError(f"{folder} holds the database itself; back it up elsewhere.")
    if _in_use(target):
        raise BackupError(
            f"{folder} holds a database in use ({target} has its write-ahead log beside it, "
            "or a daemon running on it); back up into a folder of its own."
        )
    for key in keys:
        try:
            with key.open("rb"):
                pass
        except OSError as error:
            why = why_failed(error)
            raise BackupError(
                f"Cannot read the key file {key}: {why}; back up as the daemon's user."
            ) from None
        try:
            secret_in(key)  # a copy of a damaged key would be refused by a restore
        except KeyFileError as error:
            raise BackupError(f"{error} Nothing was backed up.") from None
    try:
        wal, shm = log_of(database), shared_memory_of(database)
        made = [log for log in (wal, shm) if not log.exists()]
        try:
            accounts, messages = _copy_database(database, target)
        finally:  # a copy that failed made them too
            if made:
                _remove_unused(database, wal, made)
        copies = [folder / key.name for key in keys]
        for key, copy in zip(keys, copies, strict=True):
            copy_secret(key, copy)
    except (OSError, sqlite3.Error) as error:
        if (isinstance(error, OSError) and _within(error.filename, folder)) or (
            # SQLITE_FULL: the database is only read, so the copy's disk is full.
            isinstance(error, sqlite3.Error) and "disk is full" in str(error)
        ):
            # The folder's fault (another user's, a full disk), not the database's.
            raise BackupError(f"Cannot write into {folder}: {why_failed(error)}.") from None
        why = why_failed(error)
        if getattr(error, "sqlite_errorname", None) == "SQLITE_READONLY_DIRECTORY":
            # A database in WAL mode is read with its log beside it, as the daemon has it.
            why = explained(error, database)
        raise BackupError(f"Cannot back up {database}: {why}.") from None
    return Backup((target, *copies), accounts, messages)


def why_failed(error: OSError | sqlite3.Error) -> str:
    """What went wrong, in a few words for a sentence."""
    why = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    if "disk is full" in why or (isinstance(error, OSError) and error.errno == errno.ENOSPC):
        return "its disk is full"
    return why.lower().rstrip(".")


def _in_use(database: Path) -> bool:
    """Whether `database` is a live database, not an earlier backup's copy: a backup's
    has no write-ahead log beside it, and no daemon holds its lock."""
    if log_of(database).exists():
        return True
    try:
        held = os.open(database, os.O_RDONLY)
    except OSError:
        return False  # not there (or not readable: writing the copy will say)
    try:
        fcntl.flock(held, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(held)
    return False


def _within(name: object, folder: Path) -> bool:
    """Whether the file an error names is one written in `folder`."""
    return isinstance(name, str | Path) and Path(name).parent == folder


def _remove_unused(database: Path, wal: Path, made: list[Path]) -> None:
    """Remove the write-ahead log files reading `database` made, if no daemon has it:
    a read-only reader cannot remove them as it leaves, and they would stay, empty."""
    with contextlib.suppress(OSError):
        held = os.open(database, os.O_RDONLY)
        try:
            # A daemon locks its database while it runs (`SqliteStore.open`): the log
            # is then its own. Unlocked, the log is empty: only this reader had it.
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if wal not in made or wal.stat().st_size == 0:
                for path in made:
                    path.unlink(missing_ok=True)
        finally:
            os.close(held)


def _copy_database(database: Path, target: Path) -> tuple[int, int]:
    """Copy the database into `target` through a file of its own, checked before it
    takes the name; return how many accounts and messages the copy holds."""
    with written_whole(target) as (temporary, _fd):
        source = read_only(database)  # looking must never change the daemon's database
        with contextlib.closing(source), contextlib.closing(sqlite3.connect(temporary)) as copy:
            source.backup(copy)
            check = first_damage(copy)
            if check != "ok":
                raise sqlite3.DatabaseError(f"the copy is damaged ({check})")
            return counts(copy)
