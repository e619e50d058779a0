"""`trio-chat accounts`: the operator's look at the accounts, and what they can do to one.

A running daemon is asked through its control socket (`control.py`), beside the
database: it stores the change and takes it at once (a locked account's sessions end).
A stopped daemon's database is changed directly, and the daemon started again takes it.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from ..auth import hash_password
from ..client_protocol.requests import check_sendable_password
from ..control import (
    Action,
    ControlRefused,
    Reply,
    Request,
    account_line,
    ask,
    change_for,
    control_path,
)
from ..display import counted, quoted, safe_name
from ..engine.common import iso_time
from ..errors import ChatError
from ..keys import KeyFileError, daemon_keys, key_paths
from ..names import ConfusableIndex
from ..records import Account, AccountRemoval
from ..rules import RuleError, check_name, check_password, name_key, name_taken
from ..store import SqliteStore
from ..store_files import (
    NOT_TRIO_CHAT,
    DatabaseInUse,
    StorageError,
    default_database,
    held_name,
    held_names,
    why_not_trio_chat,
)
from .exits import ExitCode, fail, sentence
from .options import DatabaseOption
from .prompts import agree, given_password
from .prompts import ask as ask_person

accounts_app = typer.Typer(
    name="accounts",
    help="List the accounts; add one; lock, unlock, mute, unmute, kick or remove one, or "
    "set its password (the daemon running or stopped).",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The account's name.")]
NEW_PASSWORD_MISSING = (
    "The input ended before the new password; give it on a line of its own, or with "
    "--password-file."
)
"""Not TRIO_CHAT_PASSWORD: `accounts password` never reads it (an operator's own)."""


EXIT_FOR_REPLY = {
    "unknown_user": ExitCode.UNKNOWN_USER,
    "name_taken": ExitCode.NAME_TAKEN,
    "invalid_name": ExitCode.INVALID_NAME,
    "not_stored": ExitCode.DATABASE,
    "stopping": ExitCode.UNREACHABLE,
    "unknown_message": ExitCode.UNKNOWN_MESSAGE,
    "unreadable": ExitCode.DATABASE,
}


def ask_daemon(database: Path, request: Request, *, answers: Collection[str] = ()) -> Reply | None:
    """The running daemon's answer to `request`, or None if none answers on `database`;
    a refusal exits with its sentence, unless its code is one of `answers`."""
    try:
        owners = {database.stat().st_uid}
    except OSError:
        owners = set()
    try:
        reply = ask(control_path(database), request, owners)
    except ControlRefused as error:
        code = ExitCode.UNREACHABLE if error.unanswered else ExitCode.REJECTED
        raise fail(str(error), code) from None
    if reply is None or reply.ok or reply.code in answers:
        return reply
    if reply.code == "unknown_user":
        raise no_account(request.name, database)
    raise fail(reply.message, EXIT_FOR_REPLY.get(reply.code, ExitCode.FAILURE))


def check_database(database: Path) -> None:
    """Exit 11 with a sentence unless `database` is a trio-chat database that can be read
    (looked at read-only)."""
    if not database.exists():
        raise fail(
            f"There is no database at {str(database)!r}; name the daemon's with --db.",
            ExitCode.DATABASE,
        )
    why = why_not_trio_chat(database)
    if why == NOT_TRIO_CHAT:
        raise fail(
            f"{str(database)!r} is not a trio-chat database; name the daemon's with --db.",
            ExitCode.DATABASE,
        )
    if why is not None:
        raise fail(f"Cannot read the database {str(database)!r}: {why}.", ExitCode.DATABASE)


@contextmanager
def stopped_daemons_store(database: Path, *, create: bool = False) -> Iterator[SqliteStore]:
    """The database of a daemon that is not running, opened as it is (never upgraded), or
    (`create`) made new if there is none; its problems told in one sentence (exit 11)."""
    new = create and _nothing_at(database)
    if not new:
        # Looked at read-only first: opened, any file would be made one (an empty file,
        # another program's database), in the mode a new database has.
        check_database(database)
    elif key_paths(database)[0].exists():
        # A key file already there is looked at before anything is made, as `serve` does:
        # refused, it leaves no database, which a next try would take as the daemon's.
        _checked_keys(database)
    try:
        store = SqliteStore.open(database, migrate=new)
    except DatabaseInUse:
        raise fail(
            f"The daemon is running on {str(database)!r} but not answering at "
            f"{str(control_path(database))!r} (see its log), or a restore is putting it back; "
            "stop the daemon to do this, then start it again.",
            ExitCode.DATABASE,
        ) from None
    except StorageError as error:
        raise fail(str(error), ExitCode.DATABASE) from None
    try:
        if new:
            # A daemon's first start makes its key with its database; made later for a
            # database with accounts, the key would be taken for one lost.
            _checked_keys(database)
        yield store
    except StorageError as error:  # found damaged while read
        raise fail(str(error), ExitCode.DATABASE) from None
    finally:
        store.close()


def _nothing_at(database: Path) -> bool:
    """Whether nothing is at `database`, not even a link to nothing: a database to make."""
    return not database.exists() and not database.is_symlink()


def _checked_keys(database: Path) -> None:
    """The daemon's keys beside `database`, made if not there; exits 11 if refused."""
    try:
        daemon_keys(database)
    except KeyFileError as error:
        raise fail(str(error), ExitCode.DATABASE) from None


def _stored(store: SqliteStore, name: str, database: Path) -> Account:
    """The account named, as a stopped daemon's database (at `database`) has it."""
    account = store.account(name_key(name))
    if account is None:
        raise no_account(name, database)
    return account


def no_account(name: str, database: Path | None = None) -> typer.Exit:
    """No account has `name`: said so, and if a removed account holds the name in the
    database at `database`, that too (`accounts list` would not show it)."""
    held = None
    if database is not None:
        with contextlib.suppress(StorageError):  # unreadable: the sentence without it
            held = held_name(database, name_key(name))
    if held is not None:
        shown, removed = safe_name(held[0]), held[1]
        return fail(
            f"There is no account named {quoted(name)}: {shown}'s was removed ({removed}), "
            f"and the name is held (`trio-chat accounts list --removed`; `trio-chat accounts "
            f"add {shown}` gives it out again, as a new account).",
            ExitCode.UNKNOWN_USER,
        )
    return fail(
        f"There is no account named {quoted(name)}; `trio-chat accounts list` shows them.",
        ExitCode.UNKNOWN_USER,
    )


def ended_note(sessions: int) -> str:
    """How many sessions a change ended, for the sentence that says it."""
    return f" ({counted(sessions, 'session')} ended)" if sessions else ""


RemovedOption = Annotated[
    bool,
    typer.Option(
        "--removed",
        help="List the names removed accounts hold instead (`accounts add NAME` gives one "
        "out again).",
    ),
]


@accounts_app.command("list")
def list_command(db: DatabaseOption = None, removed: RemovedOption = False) -> None:
    """Every account: its name, when it was made, private messages waiting, locked,
    muted, and (the daemon running) in the room."""
    database = db or default_database()
    if removed:
        _list_held(database)
        return
    reply = ask_daemon(database, Request("list"))
    if reply is not None:
        lines = reply.accounts
    else:
        with stopped_daemons_store(database) as store:
            lines = [account_line(account, waiting) for account, waiting in store.accounts()]
    for line in lines:
        notes = [f"made {line.created}"]
        if line.waiting:
            notes.append(f"{counted(line.waiting, 'private message')} waiting")
        if line.locked:
            notes.append("locked")
        if line.muted:
            notes.append("muted")
        if line.sessions:
            many = f", {line.sessions} sessions" if line.sessions > 1 else ""
            notes.append(f"in the room{many}")
        typer.echo(f"{safe_name(line.name)}  ({', '.join(notes)})")
    typer.echo(f"{counted(len(lines), 'account')}.", err=True)


def _list_held(database: Path) -> None:
    """The names removed accounts hold, read from the database (read-only, the daemon
    running or not), with when each was removed."""
    check_database(database)
    try:
        held = held_names(database)
    except StorageError as error:
        raise fail(str(error), ExitCode.DATABASE) from None
    for name, when in held:
        typer.echo(f"{safe_name(name)}  (removed {when}; its name held)")
    typer.echo(f"{counted(len(held), 'removed account')} holding a name.", err=True)


def _change(database: Path, request: Request) -> Reply:
    """Ask the running daemon for `request` (a lock, a mute, a password, or undoing one);
    stopped, make the change in its database. Returns the account as it was, and the
    sessions ended."""
    reply = ask_daemon(database, request)
    if reply is not None:
        return reply
    with stopped_daemons_store(database) as store:
        account = _stored(store, request.name, database)
        store.write([change_for(request, account.id)])
    return Reply(True, accounts=[account_line(account, 0)])


_SWITCHES: dict[str, tuple[str, str, str | None]] = {
    # action: (what is said, the state, undone by)
    "lock": ("Locked", "locked", "unlock"),
    "unlock": ("Unlocked", "locked", None),
    "mute": ("Muted", "muted", "unmute"),
    "unmute": ("Unmuted", "muted", None),
}


def _switch(action: Action, name: str, db: Path | None) -> None:
    """Lock, unlock, mute or unmute an account, and say what was done."""
    reply = _change(db or default_database(), Request(action, name))
    was = reply.accounts[0]
    done, state, undo = _SWITCHES[action]
    shown = safe_name(was.name)
    on = getattr(was, state)
    if undo is not None:
        already = " (it was already)" if on else ""
        typer.echo(
            f"{done} {shown}{already}{ended_note(reply.ended)}; "
            f"`trio-chat accounts {undo} {shown}` undoes it."
        )
    else:
        typer.echo(f"{done} {shown}{'' if on else f' (it was not {state})'}.")


@accounts_app.command("lock")
def lock_command(name: NameArgument, db: DatabaseOption = None) -> None:
    """Lock an account: it logs in no more (its tickets neither), its sessions end, its
    name stays taken, and what waits for it is kept; `unlock` gives it back as it was."""
    _switch("lock", name, db)


@accounts_app.command("unlock")
def unlock_command(name: NameArgument, db: DatabaseOption = None) -> None:
    """Unlock an account: it logs in with the password it had."""
    _switch("unlock", name, db)


@accounts_app.command("mute")
def mute_command(name: NameArgument, db: DatabaseOption = None) -> None:
    """Mute an account: it still reads the room and its private messages, and may say
    nothing (its sessions are told); `unmute` lets it talk again."""
    _switch("mute", name, db)


@accounts_app.command("unmute")
def unmute_command(name: NameArgument, db: DatabaseOption = None) -> None:
    """Let a muted account talk again."""
    _switch("unmute", name, db)


@accounts_app.command("kick")
def kick_command(name: NameArgument, db: DatabaseOption = None) -> None:
    """Take an account out of the room now: its sessions end, and its clients are told
    (they may log in again; `lock` keeps them out). The daemon must be running."""
    database = db or default_database()
    reply = ask_daemon(database, Request("kick", name))
    if reply is None:
        with stopped_daemons_store(database) as store:
            _stored(store, name, database)
        raise fail(
            f"The daemon is not running on {str(database)!r}: nobody is in its room.",
            ExitCode.UNREACHABLE,
        )
    shown = safe_name(reply.accounts[0].name)
    if not reply.ended:
        typer.echo(f"{shown} is not in the room.")
        return
    typer.echo(
        f"Took {shown} out of the room{ended_note(reply.ended)}; "
        f"`trio-chat accounts lock {shown}` keeps them out."
    )


YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Remove it without asking (needed without a terminal).")
]
NOT_CONFIRMED = "Give --yes to remove an account without a terminal to confirm it at."


@accounts_app.command("remove")
def remove_command(name: NameArgument, db: DatabaseOption = None, yes: YesOption = False) -> None:
    """Remove an account for good, for someone who asks to be forgotten: its password,
    its tickets and the private messages sent to it are deleted, and its sessions end.
    Its room messages (and the private ones it sent) stay under its name, which no
    registration may take; `accounts add NAME` gives it out again."""
    database = db or default_database()
    found = ask_daemon(database, Request("find", name))  # before the question is asked
    if found is not None:
        shown = safe_name(found.accounts[0].name)
    else:
        with stopped_daemons_store(database) as store:
            shown = safe_name(_stored(store, name, database).name)
    if not yes:
        if not sys.stdin.isatty():
            raise fail(NOT_CONFIRMED, ExitCode.USAGE)
        if not agree(
            f"Remove {shown} for good (its password, tickets and the private messages sent "
            "to it are deleted)?"
        ):
            raise fail("Nothing was removed.", ExitCode.REJECTED)
    reply = ask_daemon(database, Request("remove", name))
    ended = 0
    if reply is not None:
        ended = reply.ended
    else:
        with stopped_daemons_store(database) as store:
            account = _stored(store, name, database)
            removal = AccountRemoval(account.id, iso_time(time.time()))
            if store.write([removal]):
                raise fail(
                    "The database did not take the removal; nothing was changed.",
                    ExitCode.DATABASE,
                )
    typer.echo(f"Removed {shown}; {counted(ended, 'session')} ended.")


PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        dir_okay=False,
        help="Read the new password from the first line of this file (else it is prompted "
        "twice, hidden; TRIO_CHAT_PASSWORD is not read).",
    ),
]


@accounts_app.command("add")
def add_command(
    name: NameArgument, db: DatabaseOption = None, password_file: PasswordFileOption = None
) -> None:
    """Make an account (its password prompted twice, hidden), as a registration would: for
    a daemon that takes no registrations (`serve --no-registrations`), say. With no
    database yet, one is made."""
    database = db or default_database()
    try:
        name = check_name(name)  # before the password is asked for
    except RuleError as error:
        raise fail(error.message, ExitCode.INVALID_NAME) from None
    # Asked whether the name is free (not taken, nor too like an account's or one being
    # registered) before the password is: refused now, if it would be then. A database
    # not there yet, where any name is free, is made with the account, not before (a
    # mistyped --db, or a password not given, makes nothing).
    running = ask_daemon(database, Request("add", name)) is not None
    if not running and not _nothing_at(database):
        with stopped_daemons_store(database) as store:
            _new_account(store, name, "")
    held = None
    if not _nothing_at(database):
        with contextlib.suppress(StorageError):  # unreadable: said as the account is made
            held = held_name(database, name_key(name))
    hashed = hash_password(_new_password(name, password_file))
    made = ask_daemon(database, Request("add", name, hashed), answers={"name_taken"})
    new_database = False
    if made is None:
        new_database = _nothing_at(database)
        with stopped_daemons_store(database, create=True) as store:
            account = _new_account(store, name, hashed)
            if store.write([account]):
                raise fail(NOT_STORED_STOPPED, ExitCode.DATABASE)
    elif not made.ok:
        raise fail(made.message, ExitCode.NAME_TAKEN)
    typer.echo(f"Made the account {safe_name(name)}.")
    if held is not None:
        # Its room messages stay under the name: read from now on as the new account's.
        typer.echo(
            f"The name was held by the account removed {held[1]}: what that one said in "
            f"the room is still shown under the name {safe_name(held[0])}, now this "
            "account's.",
            err=True,
        )
    if new_database:
        # A mistyped --db would otherwise make an account no daemon serves, unsaid.
        typer.echo(new_database_note(database), err=True)


def new_database_note(database: Path) -> str:
    """What `accounts add` says when it made the database, and the daemon's key with it."""
    return (
        f"There was no database at {str(database)!r}: it was made, with the daemon's key, "
        f"as a first start would; `trio-chat serve --db {shlex.quote(str(database))}` "
        "serves it."
    )


NOT_STORED_STOPPED = "The database did not take the new account; nothing was changed."


def _new_account(store: SqliteStore, name: str, password_hash: str) -> Account:
    """The account `name` (as `check_name` gave it) would be in a stopped daemon's
    database; exits `name_taken` if an account has it, or one it could be mistaken for."""
    key = name_key(name)
    accounts = [account for account, _waiting in store.accounts()]
    # A removed account's name is held: given out again here (the operator's to give),
    # and one too like it is refused as for an account's.
    names = {account.key: account.name for account in accounts} | dict(
        (held_key, held_name) for held_name, held_key in store.held()
    )
    index = ConfusableIndex()
    for account in accounts:
        if account.key == key:
            raise _refused(name_taken(name))
    for other_key, other_name in names.items():
        index.add(other_name, other_key)
    like = index.clash(name)
    if like is not None:
        raise _refused(name_taken(name, names[like]))
    return Account(
        id=store.last_account_id() + 1,
        name=name,
        key=key,
        password_hash=password_hash,
        created=iso_time(time.time()),
    )


def _refused(error: RuleError) -> typer.Exit:
    return fail(error.message, ExitCode.NAME_TAKEN)


def _new_password(name: str, password_file: Path | None) -> str:
    """The password for `name`, from the file or prompted twice; exits 8 if no login
    could carry it or the rules refuse it."""
    # Not TRIO_CHAT_PASSWORD: an operator's own, exported for chatting, would be given away.
    given = given_password(password_file, from_environment=False)
    password = (
        given
        if given is not None
        else ask_person("New password", hide=True, confirm=True, missing=NEW_PASSWORD_MISSING)
    )
    try:
        checked = check_password(password)
        check_sendable_password(name, password)  # a login must carry it
    except RuleError as error:
        raise fail(error.message, ExitCode.INVALID_PASSWORD) from None
    except ChatError as error:
        raise fail(sentence(error, name), ExitCode.INVALID_PASSWORD) from None
    return checked


@accounts_app.command("password")
def password_command(
    name: NameArgument, db: DatabaseOption = None, password_file: PasswordFileOption = None
) -> None:
    """Set an account's password (prompted twice, hidden): for someone who forgot theirs.
    Its sessions end and its tickets stop working; a locked account stays locked."""
    database = db or default_database()
    found = ask_daemon(database, Request("find", name))  # before the password is asked for
    if found is not None:
        shown_name = found.accounts[0].name
    else:
        with stopped_daemons_store(database) as store:
            shown_name = _stored(store, name, database).name
    hashed = hash_password(_new_password(shown_name, password_file))
    reply = _change(database, Request("password", name, hashed))
    locked = " (it stays locked)" if reply.accounts[0].locked else ""
    typer.echo(f"Set the password of {safe_name(shown_name)}{locked}{ended_note(reply.ended)}.")
