"""`trio-chat accounts`: the operator's look at the accounts, and what they can do to one.

These work on the database itself, so the daemon must be stopped (its lock on the file
says whether it runs): a running daemon keeps the accounts it loaded. Started again, it
refuses a locked account's logins, and its tickets: sessions it had come back as
everyone else's do, but the locked account's, whose client is told why.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from ..auth import hash_password
from ..client_protocol.requests import check_sendable_password
from ..display import counted, quoted, safe_name
from ..errors import ChatError
from ..records import LOCK_MARK, Account
from ..rules import RuleError, check_password, name_key
from ..store import (
    DatabaseInUse,
    SqliteStore,
    StorageError,
    default_database,
    is_trio_chat_database,
)
from .exits import ExitCode, fail, sentence
from .options import DatabaseOption
from .prompts import ask, given_password

accounts_app = typer.Typer(
    name="accounts",
    help="List the accounts, lock or unlock one, or set its password (the daemon stopped).",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The account's name.")]


@contextmanager
def _stopped_daemons_store(db: Path | None) -> Iterator[SqliteStore]:
    database = db or default_database()
    if not database.exists():
        raise fail(
            f"There is no database at {str(database)!r}; name the daemon's with --db.",
            ExitCode.DATABASE,
        )
    if not is_trio_chat_database(database):
        # Looked at read-only first: opened, any file would be made one (an empty file,
        # another program's database), in the mode a new database has.
        raise fail(
            f"{str(database)!r} is not a trio-chat database; name the daemon's with --db.",
            ExitCode.DATABASE,
        )
    try:
        store = SqliteStore.open(database, migrate=False)
    except DatabaseInUse:
        raise fail(
            f"The daemon is running on {str(database)!r}; stop it first (these commands "
            "change the database itself), then start it again.",
            ExitCode.DATABASE,
        ) from None
    except StorageError as error:
        raise fail(str(error), ExitCode.DATABASE) from None
    try:
        yield store
    finally:
        store.close()


def _account(store: SqliteStore, name: str) -> Account:
    account = store.account(name_key(name))
    if account is not None:
        return account
    raise fail(
        f"There is no account named {quoted(name)}; `trio-chat accounts list` shows them.",
        ExitCode.UNKNOWN_USER,
    )


@accounts_app.command("list")
def list_command(db: DatabaseOption = None) -> None:
    """Every account: its name, when it was made, private messages waiting, locked."""
    with _stopped_daemons_store(db) as store:
        accounts = store.accounts()
    for account, waiting in accounts:
        notes = [f"made {account.created}"]
        if waiting:
            notes.append(f"{counted(waiting, 'private message')} waiting")
        if account.locked:
            notes.append("locked")
        typer.echo(f"{safe_name(account.name)}  ({', '.join(notes)})")
    typer.echo(f"{counted(len(accounts), 'account')}.", err=True)


@accounts_app.command("lock")
def lock_command(name: NameArgument, db: DatabaseOption = None) -> None:
    """Lock an account: it logs in no more (its tickets neither), its name stays taken,
    and what waits for it is kept; `unlock` gives it back as it was."""
    with _stopped_daemons_store(db) as store:
        account = _account(store, name)
        if not account.locked:
            store.set_password_hash(account.id, LOCK_MARK + account.password_hash)
    shown = safe_name(account.name)
    was = " (it was already)" if account.locked else ""
    typer.echo(f"Locked {shown}{was}; `trio-chat accounts unlock {shown}` undoes it.")


@accounts_app.command("unlock")
def unlock_command(name: NameArgument, db: DatabaseOption = None) -> None:
    """Unlock an account: it logs in with the password it had."""
    with _stopped_daemons_store(db) as store:
        account = _account(store, name)
        if account.locked:
            store.set_password_hash(account.id, account.hash_to_check)
    was = "" if account.locked else " (it was not locked)"
    typer.echo(f"Unlocked {safe_name(account.name)}{was}.")


@accounts_app.command("password")
def password_command(
    name: NameArgument,
    db: DatabaseOption = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            "--password-file",
            dir_okay=False,
            help="Read the new password from the first line of this file (else it is prompted "
            "twice, hidden; TRIO_CHAT_PASSWORD is not read).",
        ),
    ] = None,
) -> None:
    """Set an account's password (prompted twice, hidden): for someone who forgot theirs.
    Its tickets stop working, so its sessions log in again; a locked account stays locked."""
    with _stopped_daemons_store(db) as store:
        account = _account(store, name)  # before the password is asked for
    # Not TRIO_CHAT_PASSWORD: an operator's own, exported for chatting, would be given away.
    given = given_password(password_file, from_environment=False)
    password = given if given is not None else ask("New password", hide=True, confirm=True)
    try:
        checked = check_password(password)
        check_sendable_password(account.name, password)  # a login must carry it
    except RuleError as error:
        raise fail(error.message, ExitCode.INVALID_PASSWORD) from None
    except ChatError as error:
        raise fail(sentence(error, account.name), ExitCode.INVALID_PASSWORD) from None
    hashed = hash_password(checked)
    with _stopped_daemons_store(db) as store:
        account = _account(store, name)  # as it is now: locked or not
        store.set_password_hash(account.id, (LOCK_MARK if account.locked else "") + hashed)
    typer.echo(f"Set the password of {safe_name(account.name)}.")
