"""Putting a backup back (`trio-chat restore`), the daemon stopped.

Everything is written first: the database copied in beside its place (through SQLite,
so that a copy with a write-ahead log is read whole) and checked, the keys beside
theirs. Then it changes places, and nothing is deleted: the database that was there is
linked into a folder beside it (`chat.db.before-restore-TIME`), the copy takes its name
in one rename, and the write-ahead log, its shared memory and the keys follow the old
database into that folder. All the while the database's path names a file this command
holds the lock of, so a daemon started meanwhile is refused, as a second daemon on one
database is, instead of making a new database whose log would then lie beside the copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import os.path
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .backup import BackupError, why_failed
from .keys import KeyFileError, key_paths, secret_in
from .noise import fingerprint, public_key
from .store_files import counts, first_damage, log_of, shared_memory_of
from .store_schema import SCHEMA_VERSION

COPY_PAGES = 4096
"""Pages copied between two looks at whether the restore must stop."""
UNREADABLE = "unreadable"
"""What `Restored.was` says of a key that could not be read (damaged, or not allowed)."""


@dataclass(frozen=True, slots=True)
class Restored:
    aside: Path | None
    """The folder what was there went into (None: nothing was there)."""
    accounts: int
    messages: int
    key_changed: bool
    """The daemon's key is not the one it had: clients that trusted that one refuse it."""
    key: str = ""
    """The fingerprint of the daemon's key now."""
    was: str = ""
    """The fingerprint of the key it had, if it changed (`damaged` if it could not be read)."""


class Stopped(BackupError):
    """The restore was asked to stop (`stopping`) before the files changed places: what
    it wrote is removed, and nothing else was changed."""


def restore(
    folder: Path,
    database: Path,
    now: datetime,
    stopping: Callable[[], bool] = lambda: False,
) -> Restored:
    """Put the copies in `folder` (`back_up`'s, or a folder a restore moved aside) back
    as `database` and its keys, the daemon stopped; what is there goes into a folder
    beside the database named for `now`, under the names `database` and its keys have, so
    that a restore from that folder puts it back in turn.

    `stopping` is asked as the copy is written and before the files change places; once
    it says yes, the restore stops there (`Stopped`). The caller keeps signals from
    interrupting anything else (a stop halfway through removing what was written, or
    through the renames, would leave a mix)."""
    # The file itself, wherever a link leads: its log lies beside it. The keys lie
    # beside the name the daemon is given, as the daemon reads them.
    real = Path(os.path.realpath(database))
    keys = key_paths(database)
    source = folder / database.name
    source_keys = [folder / key.name for key in keys]
    try:
        for path in (source, *source_keys):
            if not path.is_file():
                raise BackupError(
                    f"There is no {path.name} in {folder}: give the folder `trio-chat backup` "
                    f"wrote to, with the --db it was given (the copy has that database's name)."
                )
        if real.exists() and source.samefile(real):
            raise BackupError(f"{folder} holds the database itself; give the backup's folder.")
    except OSError as error:  # a look refused: a name too long, a folder not ours
        raise BackupError(f"Cannot look at {error.filename}: {why_failed(error)}.") from None
    try:
        secrets_there = [secret_in(key) for key in source_keys]
    except KeyFileError as error:
        raise BackupError(f"{error} Nothing was changed.") from None
    new_key = fingerprint(public_key(secrets_there[0]))
    try:
        was = fingerprint(public_key(secret_in(keys[0]))) if keys[0].exists() else new_key
    except KeyFileError:
        was = UNREADABLE  # putting the backup's back is how a damaged one is mended
    key_changed = was != new_key
    new_folder = not real.parent.exists()
    real.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    swapped = False
    with contextlib.ExitStack() as stack:
        if new_folder:
            stack.callback(_remove_if_empty_folder, real.parent)
        created = False
        if not real.exists():
            # Held from now on, so that a daemon started meanwhile finds it taken; gone
            # again, before it is let go, if the restore goes no further.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(real, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                created = True
        placeholder = real.stat().st_size == 0
        _hold(real, stack, f"A daemon or a restore is using {real}; stop it first.")
        if created:
            stack.callback(_remove_if_empty, real)
        try:
            copy = _staged(real, stack)
            accounts, messages = _copy_checked(source, copy, stack, stopping)
            _hold(copy, stack, f"Cannot lock the copy {copy}.")
            staged_keys = []
            for source_key, key in zip(source_keys, keys, strict=True):
                staged = _staged(key, stack)
                staged.write_bytes(source_key.read_bytes())
                _sync(staged)
                staged_keys.append(staged)
            logs = [log_of(real), shared_memory_of(real)]
            there = [path for path in (*logs, *keys) if path.exists()]
            aside = _aside_folder(real, now) if there or not placeholder else None
            if aside is not None:
                made = aside

                def unless_swapped() -> None:
                    # Removed if the restore stops before the files change places.
                    if not swapped:
                        _remove_folder(made)

                stack.callback(unless_swapped)
                # Kept there under the names the daemon gives them, the keys copied (they
                # may lie on another file system, beside a link to the database).
                if not placeholder:
                    os.link(real, aside / database.name)
                for key in keys:
                    if key.exists():
                        _copy_private(key, aside / key.name)  # as it is, damaged or not
        except OSError as error:
            raise BackupError(
                f"Cannot put {source} back as {real}: {why_failed(error)}; nothing was changed."
            ) from None
        if stopping():
            raise Stopped("Stopped; nothing was changed.")
        try:
            os.replace(copy, real)
        except OSError as error:
            raise BackupError(
                f"Cannot put {source} back as {real}: {why_failed(error)}; nothing was changed."
            ) from None
        swapped = True
        try:
            for log in logs:
                if log.exists():
                    assert aside is not None
                    os.rename(log, aside / (database.name + log.name[len(real.name) :]))
            for staged, key in zip(staged_keys, keys, strict=True):
                os.replace(staged, key)
            _sync_folder(real.parent)
        except OSError as error:
            kept = "" if aside is None else f"; what was there is in {aside}"
            raise BackupError(
                f"Cannot put {source} back as {real} ({why_failed(error)}), midway: do not start "
                f"the daemon before its files are back in place{kept}."
            ) from None
    return Restored(aside, accounts, messages, key_changed, new_key, was if key_changed else "")


def _copy_private(source: Path, target: Path) -> None:
    """Copy a file's bytes into a new file (mode 0600)."""
    data = source.read_bytes()
    fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_folder(aside: Path) -> None:
    """Remove the folder a restore made and did not use: what it holds is a second name
    of the database, and copies."""
    with contextlib.suppress(OSError):
        for path in aside.iterdir():
            path.unlink()
        aside.rmdir()


def _remove_if_empty_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()  # only if empty


def _remove_if_empty(path: Path) -> None:
    """Remove the file this restore made in the database's place, if it is still that."""
    with contextlib.suppress(OSError):
        if path.stat().st_size == 0:
            path.unlink()


def _hold(path: Path, stack: contextlib.ExitStack, busy: str) -> None:
    """Lock `path` (as a daemon locks its database) until the restore ends."""
    fd = os.open(path, os.O_RDONLY)
    stack.callback(os.close, fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise BackupError(busy) from None


def _staged(path: Path, stack: contextlib.ExitStack) -> Path:
    """A new file (mode 0600) beside `path`, to take its name; removed if the restore
    fails before it does."""
    staged = path.with_name(f"{path.name}.{secrets.token_hex(8)}.restore")
    os.close(os.open(staged, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    stack.callback(lambda: staged.unlink(missing_ok=True))
    return staged


def _copy_checked(
    source: Path, copy: Path, stack: contextlib.ExitStack, stopping: Callable[[], bool]
) -> tuple[int, int]:
    """Copy the database at `source` into the file `copy` through SQLite, check it whole;
    how many accounts and messages it holds. `BackupError` if it is no trio-chat database
    this one can use, or a daemon runs on it; `Stopped` once `stopping` says so."""

    def progress(_status: int, _remaining: int, _total: int) -> None:
        if stopping():
            raise Stopped("Stopped; nothing was changed.")

    if log_of(source).exists():
        # A database as a daemon left it (a folder a restore moved aside, say): read
        # with its log, once no daemon holds it.
        _hold(source, stack, f"A daemon is running on {source}; stop it first.")
        uri = f"{source.absolute().as_uri()}?mode=ro"
    else:
        # A backup's copy: nothing to read beside it, and nothing is made there.
        uri = f"{source.absolute().as_uri()}?mode=ro&immutable=1"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as original:
            (version,) = original.execute("PRAGMA user_version").fetchone()
            if not 0 < version <= SCHEMA_VERSION:
                raise BackupError(f"{source} is not a trio-chat database this one can use.")
            with contextlib.closing(sqlite3.connect(copy)) as db:
                original.backup(db, pages=COPY_PAGES, progress=progress)
                check = first_damage(db)
                if check != "ok":
                    raise BackupError(f"{source} is damaged ({check}); give another backup.")
                accounts, messages = counts(db)
    except sqlite3.Error as error:
        why = why_failed(error)
        if "disk is full" in why:
            raise BackupError(f"Cannot copy {source} in: {why}.") from None
        if "malformed" in why:
            raise BackupError(f"{source} is damaged ({why}); give another backup.") from None
        raise BackupError(f"{source} is not a trio-chat database ({why}).") from None
    _sync(copy)
    return int(accounts), int(messages)


def _aside_folder(database: Path, now: datetime) -> Path:
    """A new folder (mode 0700) beside `database`, named for it and `now`."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    for number in range(1, 100):
        name = f"{database.name}.before-restore-{stamp}" + (f"-{number}" if number > 1 else "")
        aside = database.with_name(name)
        try:
            aside.mkdir(mode=0o700)
        except FileExistsError:
            continue
        return aside
    raise BackupError(f"Too many folders named {database.name}.before-restore-{stamp}.")


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    """Make the folder's new names durable (where its file system can)."""
    with contextlib.suppress(OSError):
        _sync(folder)
