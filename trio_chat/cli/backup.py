"""`trio-chat backup`: the daemon's database and keys, copied while it runs; `trio-chat
restore`: put back, the daemon stopped."""

from __future__ import annotations

import contextlib
import shlex
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from ..backup import BackupError, back_up
from ..display import counted
from ..restore import restore
from ..stop_signals import stop_signals
from ..store import default_database
from .exits import ExitCode, fail
from .options import DatabaseOption


def backup_command(
    folder: Annotated[
        Path, typer.Argument(metavar="FOLDER", help="Where to write the copies (made if need be).")
    ],
    db: DatabaseOption = None,
) -> None:
    """Copy the daemon's database and its keys into FOLDER, while it runs or not
    ("trio-chat restore FOLDER" puts them back)."""
    database = db or default_database()
    try:
        done = back_up(database, folder)
    except BackupError as error:
        raise fail(str(error), ExitCode.DATABASE) from None
    names = ", ".join(path.name for path in done.files)
    typer.echo(
        f"Backed up {database} ({counted(done.accounts, 'account')}, "
        f"{counted(done.messages, 'message')}) to {folder}: {names}. To restore, stop the "
        f"daemon and run `trio-chat restore {shlex.quote(str(folder))} --db "
        f"{shlex.quote(str(database))}`."
    )


def restore_command(
    folder: Annotated[
        Path,
        typer.Argument(metavar="FOLDER", help='The folder "trio-chat backup" wrote to.'),
    ],
    db: DatabaseOption = None,
) -> None:
    """Put the copies in FOLDER back as the daemon's database and keys, the daemon
    stopped; what was there is moved aside, beside it, not deleted."""
    database = db or default_database()
    try:
        stops: list[int] = []
        with _stopped_as_interrupted(stops) as swapping:
            done = restore(folder, database, datetime.now(UTC), swapping)
    except BackupError as error:
        raise fail(str(error), ExitCode.DATABASE) from None
    except KeyboardInterrupt:
        # Stopped while the copy was written: its files removed, nothing else changed.
        raise fail("Stopped; nothing was changed.", ExitCode.INTERRUPTED) from None
    aside = "" if done.aside is None else f"; what was there is in {done.aside}"
    typer.echo(
        f"Restored {database} ({counted(done.accounts, 'account')}, "
        f"{counted(done.messages, 'message')}) and its keys from {folder}{aside}."
    )
    if done.key_changed:
        typer.echo(
            f"The daemon's key is now {done.key} (it was {done.was}): clients that trust the "
            "one it was will refuse it until they trust this one (`trio-chat trust`).",
            err=True,
        )
    if stops:
        raise typer.Exit(int(ExitCode.INTERRUPTED))  # asked to stop as it finished


@contextlib.contextmanager
def _stopped_as_interrupted(later: list[int]) -> Iterator[Callable[[], None]]:
    """SIGTERM and SIGHUP (a closed terminal, an ssh connection that dropped) stop the
    block as Ctrl-C does, so that what it wrote is removed on the way out; once the
    function it gives is called, a stop (Ctrl-C too) is put in `later` instead, for the
    few renames that put the files in place, which must not stop halfway."""

    def interrupt(_signal: int, _frame: object) -> None:
        raise KeyboardInterrupt

    def put_off(number: int, _frame: object) -> None:
        later.append(number)

    def hold_on() -> None:
        for stop in stop_signals():
            signal.signal(stop, put_off)

    stops = stop_signals()
    before = {stop: signal.getsignal(stop) for stop in stops}
    for stop in stops:
        if stop != signal.SIGINT:
            signal.signal(stop, interrupt)
    try:
        yield hold_on
    finally:
        for stop, handler in before.items():
            signal.signal(stop, handler)
