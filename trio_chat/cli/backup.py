"""`trio-chat backup`: the daemon's database and keys, copied while it runs; `trio-chat
restore`: put back, the daemon stopped."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from ..backup import BackupError, back_up
from ..display import counted
from ..restore import restore
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
        f"daemon and run `trio-chat restore {shlex.quote(str(folder))}`."
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
        done = restore(folder, database, datetime.now(UTC))
    except BackupError as error:
        raise fail(str(error), ExitCode.DATABASE) from None
    aside = "" if done.aside is None else f"; what was there is in {done.aside}"
    typer.echo(
        f"Restored {database} ({counted(done.accounts, 'account')}, "
        f"{counted(done.messages, 'message')}) and its keys from {folder}{aside}."
    )
