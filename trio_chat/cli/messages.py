"""`trio-chat messages`: the room's latest messages, and removing one from its history.

They are read from the database itself, read-only, whether the daemon runs or not. A
removal goes as `trio-chat accounts` changes do: a running daemon is asked through its
control socket, and tells everyone in the room at once; a stopped daemon's database is
changed directly. Private messages are their two people's: neither listed nor removed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..control import Request, no_message, removed_already
from ..display import safe, safe_name
from ..records import Message, MessageRemoval
from ..rules import name_key
from ..store_files import StorageError, default_database, room_message, room_messages
from .accounts import ask_daemon, check_database, no_account, stopped_daemons_store
from .exits import ExitCode, fail
from .options import DatabaseOption

messages_app = typer.Typer(
    name="messages",
    help="List the room's latest messages; remove one from its history (the daemon running "
    "or stopped).",
    no_args_is_help=True,
)

MOST_LISTED = 10_000
MOST_ID = 2**63 - 1
"""The largest id SQLite can hold."""


@messages_app.command("list")
def list_command(
    db: DatabaseOption = None,
    last: Annotated[
        int,
        typer.Option(
            "--last", min=1, max=MOST_LISTED, help="How many of the latest messages to list."
        ),
    ] = 20,
    sender: Annotated[
        str | None,
        typer.Option("--from", metavar="NAME", help="Only those this account sent."),
    ] = None,
) -> None:
    """The room's latest messages, oldest first: each one's id (for `remove`), when it was
    sent (UTC), who sent it and what it says."""
    messages = _read(db or default_database(), last, sender=sender)
    for message in messages:
        typer.echo(f"{message.id}  {message.ts}  {safe_name(message.sender)}: {safe(message.text)}")
    shown = sender if sender is None or not messages else messages[0].sender  # its spelling
    whose = "" if shown is None else f" from {safe_name(shown)}"
    count = f"{len(messages)} message{'s' if len(messages) != 1 else ''}{whose}."
    typer.echo(count if messages else f"No messages{whose} in the room's history.", err=True)


@messages_app.command("remove")
def remove_command(
    ids: Annotated[
        list[int],
        typer.Argument(metavar="ID", help="The ids `messages list` shows.", min=1, max=MOST_ID),
    ],
    db: DatabaseOption = None,
) -> None:
    """Remove messages from the room's history: nobody is shown them from now on, and
    those in the room see them removed. Each is kept as a mark, its text gone (so that a
    client sending it again is answered, not given a new copy). One removed before is
    said to be, and counts as done; an id the room's history does not have is exit 19,
    and then none of those given is removed."""
    database = db or default_database()
    found: list[Message | int] = []
    """Each given, in order: the message to remove, or the id of one removed already."""
    given = list(dict.fromkeys(ids))  # each once, in the order given
    unknown: list[int] = []
    for message_id in given:  # all looked up before any goes
        looked = _look_up(database, message_id)
        if isinstance(looked, Message):
            found.append(looked)
        elif looked:
            found.append(message_id)  # removed already
        else:
            unknown.append(message_id)
    if unknown:
        raise fail(no_message(*unknown, others=len(given) > 1), ExitCode.UNKNOWN_MESSAGE)
    for message in found:
        if isinstance(message, int):
            typer.echo(removed_already(message))
            continue
        request = Request("unsay", message=message.id)
        reply = ask_daemon(database, request, answers={"removed_already"})
        if reply is None:
            with stopped_daemons_store(database) as store:
                store.write([MessageRemoval(message.id)])
        elif not reply.ok:
            typer.echo(reply.message)  # by another command meanwhile
            continue
        typer.echo(f"Removed the message {message.id} ({safe_name(message.sender)}, {message.ts}).")


def _look_up(database: Path, message_id: int) -> Message | bool:
    """`store_files.room_message`, its problems told in one sentence (exit 11)."""
    check_database(database)
    try:
        return room_message(database, message_id)
    except StorageError as error:
        raise fail(str(error), ExitCode.DATABASE) from None


def _read(database: Path, last: int, *, sender: str | None = None) -> list[Message]:
    sender_key = None if sender is None else name_key(sender)
    check_database(database)
    try:
        return room_messages(database, last, sender_key=sender_key)
    except StorageError as error:
        raise fail(str(error), ExitCode.DATABASE) from None
    except LookupError:
        raise no_account(sender or "") from None
