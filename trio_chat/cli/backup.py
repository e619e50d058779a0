"""`trio-chat backup`: the daemon's database and keys, copied while it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..backup import BackupError, back_up
from ..display import counted
from ..store import default_database
from .exits import ExitCode, fail
from .options import DatabaseOption


def backup_command(
    folder: Annotated[
        Path, typer.Argument(metavar="FOLDER", help="Where to write the copies (made if need be).")
    ],
    db: DatabaseOption = None,
) -> None:
    """Copy the daemon's database and its keys into FOLDER, while it runs or not.

    To restore, stop the daemon, delete the database's -wal and -shm files if they are
    there, and put the files back beside it.
    """
    database = db or default_database()
    try:
        done = back_up(database, folder)
    except BackupError as error:
        raise fail(str(error), ExitCode.DATABASE) from None
    names = ", ".join(path.name for path in done.files)
    # A write-ahead log left by a daemon that crashed would be laid over the copy.
    logs = f"{database.name}-wal and {database.name}-shm"
    typer.echo(
        f"Backed up {database} ({counted(done.accounts, 'account')}, "
        f"{counted(done.messages, 'message')}) to {folder}: {names}. To restore, stop the "
        f"daemon, delete {logs} beside its database if they are there, and put these back "
        "beside it."
    )
