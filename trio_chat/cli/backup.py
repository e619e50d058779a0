"""`trio-chat backup`: the daemon's database and keys, copied while it runs; `trio-chat
restore`: put back, the daemon stopped."""

from __future__ import annotations

import contextlib
import shlex
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from ..backup import BackupError, back_up
from ..display import counted, safe_name
from ..restore import UNREADABLE, Stopped, restore
from ..stop_signals import stop_signals
from ..store_files import StorageError, back_again, default_database
from .exits import ExitCode, fail
from .options import DatabaseOption


def backup_command(
    folder: Annotated[
        Path, typer.Argument(metavar="FOLDER", help="Where to write the copies (made if need be).")
    ],
    db: DatabaseOption = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="Say nothing when it works (for cron, which mails what it says)."
        ),
    ] = False,
) -> None:
    """Copy the daemon's database and its keys into FOLDER, while it runs or not
    ("trio-chat restore FOLDER" puts them back)."""
    database = db or default_database()
    try:
        done = back_up(database, folder)
    except BackupError as error:
        raise fail(str(error), ExitCode.DATABASE) from None
    if quiet:
        return  # a failure is still said, on standard error, with its exit status
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
    stops: list[int] = []
    # Ctrl-C, SIGTERM and SIGHUP (a closed terminal, an ssh connection that dropped) are
    # noted, not raised: the restore stops where nothing is half done, and every
    # sentence is said before they take effect again.
    with _stops_noted(stops):
        try:
            done = restore(folder, database, datetime.now(UTC), lambda: bool(stops))
        except Stopped as stopped:
            raise fail(str(stopped), ExitCode.INTERRUPTED) from None
        except BackupError as error:
            raise fail(str(error), ExitCode.DATABASE) from None
        aside = "" if done.aside is None else f"; what was there is in {done.aside}"
        typer.echo(
            f"Restored {database} ({counted(done.accounts, 'account')}, "
            f"{counted(done.messages, 'message')}) and its keys from {folder}{aside}."
        )
        if done.aside is not None:
            _say_back_again(database, done.aside / database.name)
        if done.key_changed:
            was = "could not be read" if done.was == UNREADABLE else f"was {done.was}"
            typer.echo(
                f"The daemon's key is now {done.key} (its key {was}): clients that trust "
                "another will refuse it until they trust this one (`trio-chat trust`).",
                err=True,
            )
        if stops:
            raise typer.Exit(int(ExitCode.INTERRUPTED))  # asked to stop as it finished


def _say_back_again(database: Path, before: Path) -> None:
    """Say which accounts removed since the backup was made it brought back (someone who
    asked to be forgotten, with their password and what was sent to them)."""
    back: list[str] = []
    with contextlib.suppress(StorageError):  # one of another schema: nothing to compare
        back = back_again(database, before)
    for name in back:
        shown = safe_name(name)
        typer.echo(
            f"{shown}, removed after this backup was made, has its account again (its "
            f"password and the private messages sent to it); `trio-chat accounts remove "
            f"{shown} --db {shlex.quote(str(database))}` removes it anew.",
            err=True,
        )


@contextlib.contextmanager
def _stops_noted(stops: list[int]) -> Iterator[None]:
    """While the block runs, a stop signal is put in `stops` rather than acted on."""

    def note(number: int, _frame: object) -> None:
        stops.append(number)

    before = {stop: signal.signal(stop, note) for stop in stop_signals()}
    try:
        yield
    finally:
        for stop, handler in before.items():
            signal.signal(stop, handler)
