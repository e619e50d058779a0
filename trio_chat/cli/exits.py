"""Exit statuses, and each failure told as one sentence the person can act on."""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio
import typer

from ..display import cannot_exist, quoted, safe, safe_name, told
from ..errors import (
    AccountLocked,
    AccountRemoved,
    Banned,
    Busy,
    ChatError,
    ConnectionLost,
    InvalidName,
    KeyChanged,
    KeyUnproven,
    MailboxFull,
    Muted,
    NameTaken,
    PasswordChangedAway,
    PasswordTooLong,
    PasswordTooShort,
    PasswordUnchanged,
    RateLimited,
    RegistrationsClosed,
    Removed,
    ServerUnreachable,
    TextEmpty,
    TextTooLong,
    Throttled,
    TooManyRegistrations,
    TooManySessions,
    UnknownUser,
    WrongPassword,
)
from ..keys import KeyFileError
from ..rules import HELD

T = TypeVar("T")


class ExitCode(enum.IntEnum):
    """One exit status per kind of failure, so scripts can tell them apart."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    UNREACHABLE = 3
    WRONG_PASSWORD = 4
    UNKNOWN_USER = 5
    NAME_TAKEN = 6
    INVALID_NAME = 7
    INVALID_PASSWORD = 8
    LIMITED = 9
    CONNECTION_LOST = 10
    DATABASE = 11
    CANNOT_LISTEN = 12
    REJECTED = 13
    MESSAGE_REFUSED = 14
    KEY_CHANGED = 15
    ACCOUNT_LOCKED = 16
    REMOVED = 17
    BANNED = 18
    UNKNOWN_MESSAGE = 19
    REGISTRATIONS_CLOSED = 20
    INTERRUPTED = 130


_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "done",
    ExitCode.FAILURE: "failure",
    ExitCode.USAGE: "usage",
    ExitCode.UNREACHABLE: "daemon unreachable",
    ExitCode.WRONG_PASSWORD: "wrong password",
    ExitCode.UNKNOWN_USER: "unknown user",
    ExitCode.NAME_TAKEN: "name taken",
    ExitCode.INVALID_NAME: "invalid name",
    ExitCode.INVALID_PASSWORD: "invalid password",
    ExitCode.LIMITED: "a limit (rate, sessions, a full mailbox)",
    ExitCode.CONNECTION_LOST: "connection lost",
    ExitCode.DATABASE: "database or key file",
    ExitCode.CANNOT_LISTEN: "cannot listen there (port in use, not this machine's address)",
    ExitCode.REJECTED: "refused",
    ExitCode.MESSAGE_REFUSED: "message refused",
    ExitCode.KEY_CHANGED: "the daemon's key changed, or was not the one it showed",
    ExitCode.ACCOUNT_LOCKED: "the account is locked",
    ExitCode.REMOVED: "taken out of the room (by the operator, or a new password)",
    ExitCode.BANNED: "the operator turned this address away",
    ExitCode.UNKNOWN_MESSAGE: "no such message in the room's history",
    ExitCode.REGISTRATIONS_CLOSED: "the daemon takes no registrations",
    ExitCode.INTERRUPTED: "interrupted",
}


def exit_codes_summary() -> str:
    """`Exit codes: 0 done, 1 failure, ...`: the end of `trio-chat --help`, one phrase a
    code (the README's table says more)."""
    return "Exit codes: " + ", ".join(f"{int(code)} {_MEANINGS[code]}" for code in ExitCode) + "."


def fail(message: str, code: ExitCode) -> typer.Exit:
    """Print one sentence to stderr and give the exit to raise."""
    typer.echo(message, err=True)
    return typer.Exit(int(code))


_EXIT_FOR: dict[type[ChatError], ExitCode] = {
    ServerUnreachable: ExitCode.UNREACHABLE,
    WrongPassword: ExitCode.WRONG_PASSWORD,
    PasswordChangedAway: ExitCode.WRONG_PASSWORD,
    AccountLocked: ExitCode.ACCOUNT_LOCKED,
    AccountRemoved: ExitCode.UNKNOWN_USER,  # no account has its name any more
    Removed: ExitCode.REMOVED,
    Banned: ExitCode.BANNED,
    UnknownUser: ExitCode.UNKNOWN_USER,
    NameTaken: ExitCode.NAME_TAKEN,
    InvalidName: ExitCode.INVALID_NAME,
    PasswordTooShort: ExitCode.INVALID_PASSWORD,
    PasswordTooLong: ExitCode.INVALID_PASSWORD,
    PasswordUnchanged: ExitCode.INVALID_PASSWORD,
    RateLimited: ExitCode.LIMITED,
    Throttled: ExitCode.LIMITED,
    TooManySessions: ExitCode.LIMITED,
    TooManyRegistrations: ExitCode.LIMITED,
    RegistrationsClosed: ExitCode.REGISTRATIONS_CLOSED,
    MailboxFull: ExitCode.LIMITED,
    ConnectionLost: ExitCode.CONNECTION_LOST,
    KeyChanged: ExitCode.KEY_CHANGED,
    KeyUnproven: ExitCode.KEY_CHANGED,
    Busy: ExitCode.LIMITED,
    TextEmpty: ExitCode.MESSAGE_REFUSED,
    TextTooLong: ExitCode.MESSAGE_REFUSED,
    Muted: ExitCode.MESSAGE_REFUSED,
}


def exit_code_for(error: ChatError) -> ExitCode:
    """The exit status for a failure the client API reported."""
    return _EXIT_FOR.get(type(error), ExitCode.REJECTED)


def sentence(error: ChatError, name: str) -> str:
    """What to tell the person, as one sentence they can act on."""
    shown = safe_name(name)
    if isinstance(error, UnknownUser):
        cannot = cannot_exist(name)
        if cannot is not None:  # registering it would be refused too
            return cannot
        if HELD in error.message:  # an account the operator removed had it: held too
            return safe(error.message)
        if error.no_registrations:
            return (
                f"There is no account named {quoted(name)}, and this daemon takes no "
                "registrations; ask its operator for an account."
            )
        return (
            f"There is no account named {quoted(name)}; "
            f"create it with `trio-chat register --name {shown}`."
        )
    if isinstance(error, PasswordChangedAway):
        return safe(error.message)  # it was right before: the sentence says what changed
    if isinstance(error, Banned):
        return told(error)  # its end in the local time
    if isinstance(error, WrongPassword):
        return f"Wrong password for {quoted(name)}."
    message = safe(error.message)
    waits = error.retry_after is not None and isinstance(error, Throttled | TooManyRegistrations)
    if waits and not re.search(r"\b\d+ s\b", message):  # the daemon's may say it already
        message = f"{message.rstrip('.')} (about {math.ceil(error.retry_after or 0)} s)."
    return message


def chat_failure(error: ChatError, name: str) -> typer.Exit:
    return fail(sentence(error, name), exit_code_for(error))


def innermost(error: BaseException) -> BaseException:
    """The one exception inside nested exception groups (Trio's nurseries wrap them)."""
    while isinstance(error, BaseExceptionGroup):
        leaves = error.exceptions
        chat_errors = [leaf for leaf in leaves if isinstance(innermost(leaf), ChatError)]
        error = (chat_errors or list(leaves))[0]
    return error


def run(function: Callable[..., Awaitable[T]], *args: Any) -> T:
    """`trio.run`, raising a `ChatError` plainly, and never showing a traceback."""
    try:
        return trio.run(function, *args)
    except BaseException as error:  # every failure becomes one sentence
        leaf = innermost(error)
        if isinstance(leaf, ChatError):
            raise leaf from None
        if isinstance(leaf, KeyboardInterrupt):
            raise fail("Interrupted.", ExitCode.INTERRUPTED) from None
        if isinstance(leaf, typer.Exit | SystemExit):
            raise leaf from None
        if isinstance(leaf, KeyFileError):  # known_servers cannot be read or written
            raise fail(str(leaf), ExitCode.DATABASE) from None
        if isinstance(leaf, OSError):
            raise fail(
                f"Network error: {leaf.strerror or leaf}; check the daemon's address and this "
                "machine's network.",
                ExitCode.FAILURE,
            ) from None
        raise unexpected(leaf) from None


def unexpected(error: BaseException) -> typer.Exit:
    """A failure nothing foresaw, told in a sentence (never a traceback), exit status 1."""
    leaf = innermost(error)
    return fail(
        f"trio-chat stopped on an unexpected error ({type(leaf).__name__}: "
        f"{safe(str(leaf))}); please report it.",
        ExitCode.FAILURE,
    )
