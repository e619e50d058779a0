"""The commands of a person's account: `register`, `login`, `password` and `chat`."""

from __future__ import annotations

import functools
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import trio
import typer

from ..client import connect
from ..client import register as client_register
from ..client_protocol import ClientConfig
from ..client_protocol.requests import check_new_password
from ..conversation import Outcome
from ..display import Line, info_line, names_line, quoted, safe, safe_name, to_ansi, to_plain
from ..errors import (
    ChatError,
    NameTaken,
    RegistrationsClosed,
    ServerUnreachable,
    UnknownUser,
    WrongPassword,
)
from ..keys import address_label
from ..rules import HELD, name_problem
from ..stop_signals import stop_signals
from ..wire import MUTED_NOTICE, REGISTRATIONS_CLOSED
from .daemon_key import trusted, trusted_key
from .exits import ExitCode, chat_failure, exit_code_for, fail, run, sentence
from .options import (
    GiveUpOption,
    HostOption,
    KeepaliveOption,
    NameOption,
    PasswordFileOption,
    PortOption,
    ServerKeyOption,
)
from .prompts import ATTEMPTS, agree, ask, attempts, checked_name, given_password

SCRIPT_GIVES_UP_AFTER = 60.0
"""Seconds a command that is not a person at a terminal (`chat` from a pipe, `password`)
waits for a daemon that went away to answer again (`chat`'s `--give-up-after`): a restart
takes a few; a script left waiting for good would hold its cron job or CI step."""


def _credentials(name: str | None, given: str | None, label: str = "Password") -> tuple[str, str]:
    """The name (asked if not given) and the password (`given`, else asked, hidden)."""
    if name is None:
        name = ask("Name")
    return name, given if given is not None else ask(label, hide=True)


def register(
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            "-n",
            envvar="TRIO_CHAT_NAME",
            help="The account name to create (prompted if not given).",
        ),
    ] = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 1600,
    password_file: PasswordFileOption = None,
    server_key: ServerKeyOption = None,
) -> None:
    """Create an account (the password is prompted twice, hidden)."""
    can_ask = sys.stdin.isatty()
    if name is not None:
        checked_name(name)
    given = given_password(password_file)
    trust = trusted(host, port, server_key)
    if trust.no_registrations:
        # Said with the key: no name or password asked for only to be refused. (A daemon
        # that says nothing, or opens meanwhile, answers the registration itself.)
        closed = RegistrationsClosed(REGISTRATIONS_CLOSED)
        raise chat_failure(closed, name or "")
    key = trust.key
    if name is None:
        name = checked_name(ask("Name"))
    password = given if given is not None else ask("Password", hide=True, confirm=True)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            created = _register(host, port, key, name, password)
            break
        except NameTaken as error:
            if not can_ask or attempt == ATTEMPTS:
                raise chat_failure(error, name) from None
            # The daemon's sentence: taken, or too like an account's name (which it names).
            typer.echo(safe(error.message), err=True)
            name = ask("Name")
            checked_name(name)
        except ChatError as error:
            raise chat_failure(error, name) from None
    typer.echo(
        f"Registered {safe_name(created)} at {host}:{port}; "
        f"enter the room with `trio-chat chat --name {safe_name(created)}`."
    )


def _register(host: str, port: int, key: bytes, name: str, password: str) -> str:
    """Create the account; its name as the daemon keeps it."""
    return run(functools.partial(client_register, server_key=key), host, port, name, password)


async def _check_login(host: str, port: int, key: bytes, name: str, password: str) -> list[Line]:
    # A quiet session only looks: nobody sees us come and go, and the private messages
    # stay waiting for `trio-chat chat`.
    async with connect(host, port, name, password, quiet=True, server_key=key) as chat:
        names: list[str] | None = None
        with trio.move_on_after(chat.config.timeout):
            names = await chat.who()
        if names is None:  # a daemon that logs in but does not answer would hold us forever
            raise ServerUnreachable(
                f"Logged in as {safe_name(chat.name)} at {address_label(host, port)}, but "
                f"the daemon did not say who is here within {chat.config.timeout:.0f} s; "
                "try again later."
            )
        me = chat.name
        lines: list[Line] = [
            info_line(f"Logged in as {safe_name(me)} at {host}:{port}."),
            names_line(names, me),
        ]
        count = chat.unread
        if count == 0:
            lines.append(info_line("No private messages are waiting for you."))
        else:
            plural = "message is" if count == 1 else "messages are"
            them = "it" if count == 1 else "them"
            lines.append(
                info_line(
                    f"{count} private {plural} waiting for you; "
                    f"`trio-chat chat --name {safe_name(me)}` shows {them}."
                )
            )
        if chat.muted:
            lines.append(info_line(MUTED_NOTICE))
        return lines


def login(
    name: NameOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 1600,
    password_file: PasswordFileOption = None,
    server_key: ServerKeyOption = None,
) -> None:
    """Check your name and password; show who is online and how many private messages wait."""
    key = trusted_key(host, port, server_key)
    given = given_password(password_file)
    name, password = _credentials(name, given)
    again = given is None and sys.stdin.isatty()

    def check(name: str, password: str) -> list[Line]:
        return run(_check_login, host, port, key, name, password)

    try:
        lines = attempts(check, name, password, again=again)
    except ChatError as error:
        raise chat_failure(error, name) from None
    for line in lines:
        _echo_line(line)


NEW_PASSWORD_MISSING = (
    "The input ended before the new password; give it on a line of its own, or with "
    "--new-password-file."
)


async def _change_password(
    host: str, port: int, key: bytes, name: str, old: str, new: str | None
) -> None:
    """Log in with `old` (quietly: nobody sees this session, nothing waiting is taken);
    without a `new` one, only that, so that a wrong current password is told before the
    new one is asked for; with it, change it."""
    config = ClientConfig(reconnect_for=SCRIPT_GIVES_UP_AFTER)  # a daemon gone: not forever
    async with connect(host, port, name, old, quiet=True, server_key=key, config=config) as chat:
        if new is not None:
            try:
                await chat.change_password(old, new)
            except WrongPassword as error:  # logged in with it: another change came first
                raise _ChangedMeanwhile(error.message) from None


class _ChangedMeanwhile(ChatError):
    """A change refused though the password it gave had just logged in."""


def password(
    name: NameOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 1600,
    password_file: PasswordFileOption = None,
    new_password_file: Annotated[
        Path | None,
        typer.Option(
            "--new-password-file",
            dir_okay=False,
            readable=False,  # `given_password` says what is wrong
            help="Read the new password from the first line of this file (else it is "
            "prompted twice, hidden).",
        ),
    ] = None,
    server_key: ServerKeyOption = None,
) -> None:
    """Change your password: the one you have (as `login` takes it), then the new one
    twice, hidden. Your other sessions end; they log in again with the new one."""
    key = trusted_key(host, port, server_key)
    given = given_password(password_file)
    name, old = _credentials(name, given, "Current password")
    new = given_password(new_password_file, from_environment=False)
    if new is None:
        # The current password checked first (asked again at a terminal), then the new.
        def check(name: str, old: str) -> str:
            run(_change_password, host, port, key, name, old, None)
            return old

        again = given is None and sys.stdin.isatty()
        try:
            old = attempts(check, name, old, again=again, label="Current password")
        except ChatError as error:
            raise chat_failure(error, name) from None
        new = ask("New password", hide=True, confirm=True, missing=NEW_PASSWORD_MISSING)
    try:
        check_new_password(name, old, new)  # before anything is sent
    except ChatError as error:
        raise fail(sentence(error, name), ExitCode.INVALID_PASSWORD) from None
    try:
        run(_change_password, host, port, key, name, old, new)
    except _ChangedMeanwhile as error:
        raise fail(error.message, ExitCode.WRONG_PASSWORD) from None
    except ChatError as error:
        raise chat_failure(error, name) from None
    typer.echo(f"Changed the password of {safe_name(name)}; any other session of it has ended.")


class _LeftNow(Exception):
    """The person left without waiting for the daemon's answers: `connect`'s block is left
    by an exception, which says goodbye and waits for nothing."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__()
        self.outcome = outcome


async def _enter(
    host: str,
    port: int,
    key: bytes,
    name: str,
    password: str,
    interactive: bool,
    config: ClientConfig,
) -> Outcome:
    # The terminal's code (prompt_toolkit) is read only by `chat`: every other command
    # starts 60-80 ms of CPU sooner without it.
    from ..terminal import run_interactive, run_pipe

    if interactive:
        try:
            async with connect(host, port, name, password, server_key=key, config=config) as chat:
                outcome = await run_interactive(chat)
                if outcome.left_now:
                    raise _LeftNow(outcome)  # asked not to wait: no logout's wait either
                return outcome
        except _LeftNow as left:
            return left.outcome
    # A script stopped by Ctrl-C, SIGTERM or SIGHUP (unless run under `nohup`) leaves the
    # room and exits 130, rather than staying in it, silent, until the daemon gives up on
    # it. They are taken by one task, so that none lands halfway through the start of another.
    with trio.open_signal_receiver(*stop_signals()) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_interrupt_on, signals)
            async with connect(host, port, name, password, server_key=key, config=config) as chat:
                outcome = await run_pipe(chat, sys.stdin.fileno())
            nursery.cancel_scope.cancel()
    return outcome


async def _interrupt_on(signals: AsyncIterator[int]) -> None:
    async for _ in signals:
        raise KeyboardInterrupt


def _offer_registration(
    host: str, port: int, key: bytes, name: str, password: str, typed: bool
) -> None:
    """Ask whether to create the unknown account `name`; exit if not.

    A password that was typed is asked once more, as `register` does.
    """
    if not agree(f"There is no account named {quoted(name)}. Create it?"):
        raise fail(f"No account named {quoted(name)}; nothing was changed.", ExitCode.UNKNOWN_USER)
    if typed and ask("Repeat the password", hide=True) != password:
        raise fail("The two passwords differ; no account was created.", ExitCode.INVALID_PASSWORD)
    try:
        created = _register(host, port, key, name, password)
    except ChatError as error:
        raise chat_failure(error, name) from None
    typer.echo(f"Registered {safe_name(created)}.")


CHAT_HELP = (
    "Enter the room: type to talk, /help lists the commands, Exit leaves.\n\n"
    "When input is not a terminal, each line is handled as if typed (commands too), each "
    "event is printed as one plain line, and at the end of input the command waits until "
    "the daemon has acknowledged everything sent, then exits (0 if all was accepted)."
)
"""The help of `trio-chat chat`, longer than its docstring."""


def chat(
    name: NameOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 1600,
    password_file: PasswordFileOption = None,
    server_key: ServerKeyOption = None,
    keepalive: KeepaliveOption = None,
    give_up_after: GiveUpOption = None,
) -> None:
    """Enter the room: type to talk, /help lists the commands, Exit leaves."""
    can_ask = sys.stdin.isatty()
    interactive = can_ask and sys.stdout.isatty()
    if name is None and not can_ask:
        raise fail(
            "Give your name with --name (or TRIO_CHAT_NAME) when input is not a terminal.",
            ExitCode.USAGE,
        )
    password = given_password(password_file)
    typed = password is None
    if password is None and not can_ask:
        raise fail(
            "Give the password in TRIO_CHAT_PASSWORD or with --password-file "
            "when input is not a terminal.",
            ExitCode.USAGE,
        )
    key = trusted_key(host, port, server_key)
    name, password = _credentials(name, password)

    if give_up_after is None and not interactive:
        give_up_after = SCRIPT_GIVES_UP_AFTER
    config = ClientConfig(keepalive=keepalive, reconnect_for=give_up_after)

    def enter(name: str, password: str) -> Outcome:
        return run(_enter, host, port, key, name, password, interactive, config)

    try:
        try:
            outcome = attempts(enter, name, password, again=typed and can_ask)
        except UnknownUser as unknown:
            held = HELD in unknown.message  # an account the operator removed had it
            if not can_ask or name_problem(name) is not None or unknown.no_registrations or held:
                raise
            _offer_registration(host, port, key, name, password, typed)
            outcome = enter(name, password)
    except ChatError as error:
        raise chat_failure(error, name) from None
    if outcome.ended is not None:
        raise chat_failure(outcome.ended, name)
    if outcome.refused is not None and not interactive:
        raise fail("Some lines were not sent (see above).", exit_code_for(outcome.refused))
    if outcome.unacknowledged:
        raise typer.Exit(ExitCode.INTERRUPTED)  # the room has said what may be lost


def _echo_line(line: Line) -> None:
    from ..terminal import wants_colour

    typer.echo(to_ansi(line, colour=wants_colour()) if sys.stdout.isatty() else to_plain(line))
