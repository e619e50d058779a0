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
    folder: Annotated[Path, typer.Argument(help="Where to write the copies (made if need be).")],
    db: DatabaseOption = None,
) -> None:
    """Copy the daemon's database and its keys into FOLDER, while it runs or not.

    To restore, stop the daemon and put the files back beside its database.
    """
    database = db or default_database()
    try:
        done = back_up(database, folder)
    except BackupError as error:
        raise fail(str(error), ExitCode.DATABASE) from None
    names = ", ".join(path.name for path in done.files)
    typer.echo(
        f"Backed up {database} ({counted(done.accounts, 'account')}, "
        f"{counted(done.messages, 'message')}) to {folder}: {names}. To restore, stop the "
        "daemon and put them back beside its database."
    )
