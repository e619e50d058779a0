"""The `trio-chat` command: parses, prompts, and calls the daemon or the client API."""

from __future__ import annotations

import enum
import io
import logging
import math
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import trio
import typer

from . import __version__
from .client import connect
from .client import register as client_register
from .conversation import Outcome
from .display import (
    Line,
    info_line,
    names_line,
    safe,
    to_ansi,
    to_plain,
)
from .engine import ServerConfig
from .errors import (
    ChatError,
    ConnectionLost,
    InvalidName,
    MailboxFull,
    NameTaken,
    PasswordTooLong,
    PasswordTooShort,
    RateLimited,
    ServerUnreachable,
    TextEmpty,
    TextTooLong,
    Throttled,
    TooManyRegistrations,
    TooManySessions,
    UnknownUser,
    WrongPassword,
)
from .rules import RuleError, check_name
from .server import serve
from .store import StorageError, default_database
from .terminal import run_interactive, run_pipe

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
    ADDRESS_IN_USE = 12
    REJECTED = 13
    MESSAGE_REFUSED = 14
    INTERRUPTED = 130


app = typer.Typer(
    name="trio-chat",
    help="A chat room over UDP: run the daemon, register, log in and chat.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    epilog="Exit codes: 0 done, 1 failure, 2 usage, 3 daemon unreachable, 4 wrong password, "
    "5 unknown user, 6 name taken, 7 invalid name, 8 invalid password, 9 rate limited, "
    "10 connection lost, 11 database, 12 address in use, 13 refused, 14 message refused, "
    "130 interrupted.",
    context_settings={"help_option_names": ["-h", "--help"]},
)

HostOption = Annotated[
    str,
    typer.Option("--host", envvar="TRIO_CHAT_HOST", help="Address of the daemon (IPv4 or IPv6)."),
]
PortOption = Annotated[
    int,
    typer.Option("--port", envvar="TRIO_CHAT_PORT", min=0, max=65535, help="UDP port."),
]
NameOption = Annotated[
    str | None,
    typer.Option(
        "--name", "-n", envvar="TRIO_CHAT_NAME", help="Your account name (prompted if not given)."
    ),
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        dir_okay=False,
        help="Read the password from the first line of this file. Without it the password "
        "comes from TRIO_CHAT_PASSWORD, else it is prompted (hidden).",
    ),
]


def fail(message: str, code: ExitCode) -> typer.Exit:
    """Print one sentence to stderr and give the exit to raise."""
    typer.echo(message, err=True)
    return typer.Exit(int(code))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"trio-chat {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """A chat room over UDP: run the daemon, register, log in and chat."""


def _serve_command(
    host: Annotated[
        str,
        typer.Option(envvar="TRIO_CHAT_HOST", help="Address to listen on ('::1' for IPv6)."),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(envvar="TRIO_CHAT_PORT", min=0, max=65535, help="UDP port.")
    ] = 1600,
    db: Annotated[
        Path | None,
        typer.Option(
            envvar="TRIO_CHAT_DB",
            help="SQLite database file [default: ~/.local/share/trio-chat/chat.db].",
            dir_okay=False,
        ),
    ] = None,
    log_level: Annotated[
        str,
        typer.Option(help="debug, info, warning or error."),
    ] = "info",
    message_rate: Annotated[
        float, typer.Option(help="Messages per second each session may send, steadily.")
    ] = 5.0,
    message_burst: Annotated[
        int, typer.Option(help="Messages a session may send at once before the rate applies.")
    ] = 20,
    register_rate: Annotated[
        float, typer.Option(help="Registrations per minute from one address, steadily.")
    ] = 1.0,
    register_burst: Annotated[
        int, typer.Option(help="Registrations from one address at once.")
    ] = 5,
    login_free_failures: Annotated[
        int, typer.Option(help="Failed logins (per account and per address) before delays.")
    ] = 3,
    login_delay: Annotated[
        float, typer.Option(help="The first delay after those failures, doubling each time.")
    ] = 1.0,
    sessions_per_address: Annotated[
        int, typer.Option(help="Sessions one IP address may hold at once.")
    ] = 16,
    idle_timeout: Annotated[
        float, typer.Option(help="Seconds of silence after which a session is closed.")
    ] = 45.0,
    notice_limit: Annotated[
        int,
        typer.Option(help="Join and leave notices are sent while at most this many are online."),
    ] = 200,
) -> None:
    """Run the chat daemon (stop it with Ctrl-C or SIGTERM)."""
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise fail(
            f"Unknown log level {log_level!r}; use debug, info, warning or error.", ExitCode.USAGE
        )
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = ServerConfig(
        message_rate=message_rate,
        message_burst=message_burst,
        register_rate=register_rate / 60,
        register_burst=register_burst,
        login_free_failures=login_free_failures,
        login_delay=login_delay,
        max_sessions_per_address=sessions_per_address,
        idle_timeout=idle_timeout,
        notice_limit=notice_limit,
    )
    database = db or default_database()
    try:
        trio.run(_serve_until_signal, host, port, database, config)
    except StorageError as error:
        raise fail(str(error), ExitCode.DATABASE) from None
    except OSError as error:
        if error.errno in (98, 48):  # EADDRINUSE on Linux and macOS
            raise fail(
                f"Cannot listen on {host}:{port}: the port is in use; "
                "is another trio-chat running? Choose another with --port.",
                ExitCode.ADDRESS_IN_USE,
            ) from None
        raise fail(f"Cannot listen on {host}:{port}: {error.strerror}.", ExitCode.FAILURE) from None


async def _serve_until_signal(host: str, port: int, database: Path, config: ServerConfig) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(serve, host, port, database, config)
            host_shown = f"[{address[0]}]" if ":" in address[0] else address[0]
            shown = f"{host_shown}:{address[1]}"
            typer.echo(
                f"trio-chat is listening on {shown} (database {database}); Ctrl-C stops it.",
                err=True,
            )
            async for signum in signals:
                typer.echo(f"Stopping ({signal.Signals(signum).name}).", err=True)
                nursery.cancel_scope.cancel()
                break


app.command("serve")(_serve_command)
app.command("server", hidden=True)(_serve_command)


# --- the client commands -----------------------------------------------------------------------

_EXIT_FOR: dict[type[ChatError], ExitCode] = {
    ServerUnreachable: ExitCode.UNREACHABLE,
    WrongPassword: ExitCode.WRONG_PASSWORD,
    UnknownUser: ExitCode.UNKNOWN_USER,
    NameTaken: ExitCode.NAME_TAKEN,
    InvalidName: ExitCode.INVALID_NAME,
    PasswordTooShort: ExitCode.INVALID_PASSWORD,
    PasswordTooLong: ExitCode.INVALID_PASSWORD,
    RateLimited: ExitCode.LIMITED,
    Throttled: ExitCode.LIMITED,
    TooManySessions: ExitCode.LIMITED,
    TooManyRegistrations: ExitCode.LIMITED,
    MailboxFull: ExitCode.LIMITED,
    ConnectionLost: ExitCode.CONNECTION_LOST,
    TextEmpty: ExitCode.MESSAGE_REFUSED,
    TextTooLong: ExitCode.MESSAGE_REFUSED,
}


def exit_code_for(error: ChatError) -> ExitCode:
    """The exit status for a failure the client API reported."""
    return _EXIT_FOR.get(type(error), ExitCode.REJECTED)


def _sentence(error: ChatError, name: str) -> str:
    """What to tell the person, as one sentence they can act on."""
    shown = safe(name)
    if isinstance(error, UnknownUser):
        return (
            f"There is no account named {shown!r}; "
            f"create it with `trio-chat register --name {shown}`."
        )
    if isinstance(error, WrongPassword):
        return f"Wrong password for {shown!r}."
    message = safe(error.message)
    if error.retry_after is not None and isinstance(error, Throttled | TooManyRegistrations):
        message = f"{message.rstrip('.')} (about {math.ceil(error.retry_after)} s)."
    return message


def _chat_failure(error: ChatError, name: str) -> typer.Exit:
    return fail(_sentence(error, name), exit_code_for(error))


def _leaf(error: BaseException) -> BaseException:
    """The one exception inside nested exception groups (Trio's nurseries wrap them)."""
    while isinstance(error, BaseExceptionGroup):
        leaves = error.exceptions
        chat_errors = [leaf for leaf in leaves if isinstance(_leaf(leaf), ChatError)]
        error = (chat_errors or list(leaves))[0]
    return error


def _run(function: Callable[..., Awaitable[T]], *args: Any) -> T:
    """`trio.run`, raising a `ChatError` plainly, and never showing a traceback."""
    try:
        return trio.run(function, *args)
    except BaseException as error:  # every failure becomes one sentence
        leaf = _leaf(error)
        if isinstance(leaf, ChatError):
            raise leaf from None
        if isinstance(leaf, KeyboardInterrupt):
            raise fail("Interrupted.", ExitCode.INTERRUPTED) from None
        if isinstance(leaf, typer.Exit | SystemExit):
            raise leaf from None
        if isinstance(leaf, OSError):
            raise fail(f"Network error: {leaf.strerror or leaf}.", ExitCode.FAILURE) from None
        raise fail(
            f"trio-chat stopped on an unexpected error ({type(leaf).__name__}: {leaf}); "
            "please report it.",
            ExitCode.FAILURE,
        ) from None


def _checked_name(name: str) -> str:
    try:
        return check_name(name)
    except RuleError as error:
        raise fail(error.message, ExitCode.INVALID_NAME) from None


def _given_password(password_file: Path | None) -> str | None:
    """The password from --password-file or TRIO_CHAT_PASSWORD, if either gives one."""
    if password_file is not None:
        try:
            text = password_file.read_text(encoding="utf-8")
        except OSError as error:
            raise fail(
                f"Cannot read the password file {password_file}: {error.strerror}.",
                ExitCode.USAGE,
            ) from None
        except UnicodeDecodeError:
            raise fail(
                f"The password file {password_file} is not UTF-8 text.", ExitCode.USAGE
            ) from None
        return text.splitlines()[0] if text else ""
    return os.environ.get("TRIO_CHAT_PASSWORD")


def _password(password_file: Path | None, *, confirm: bool) -> str:
    given = _given_password(password_file)
    if given is not None:
        return given
    password: str = typer.prompt(
        "Password", hide_input=True, confirmation_prompt="Repeat the password" if confirm else False
    )
    return password


def _tolerant_output() -> None:
    """Never fail on a character the terminal's encoding lacks: show it as an escape."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def _echo_line(line: Line) -> None:
    typer.echo(to_ansi(line) if sys.stdout.isatty() else to_plain(line))


@app.command()
def register(
    name: Annotated[
        str,
        typer.Option(
            "--name", "-n", envvar="TRIO_CHAT_NAME", prompt=True, help="The account name to create."
        ),
    ],
    host: HostOption = "127.0.0.1",
    port: PortOption = 1600,
    password_file: PasswordFileOption = None,
) -> None:
    """Create an account (the password is prompted twice, hidden)."""
    _tolerant_output()
    _checked_name(name)
    password = _password(password_file, confirm=True)
    try:
        created = _run(client_register, host, port, name, password)
    except ChatError as error:
        raise _chat_failure(error, name) from None
    typer.echo(
        f"Registered {safe(created)} at {host}:{port}; "
        f"enter the room with `trio-chat chat --name {safe(created)}`."
    )


async def _check_login(host: str, port: int, name: str, password: str) -> list[Line]:
    # A quiet session only looks: nobody sees us come and go, and the private messages
    # stay waiting for `trio-chat chat`.
    async with connect(host, port, name, password, quiet=True) as chat:
        names = await chat.who()
        me = chat.name
        lines: list[Line] = [
            info_line(f"Logged in as {safe(me)} at {host}:{port}."),
            names_line(names, me),
        ]
        count = chat.unread
        if count == 0:
            lines.append(info_line("No private messages are waiting for you."))
        else:
            plural = "message is" if count == 1 else "messages are"
            lines.append(
                info_line(
                    f"{count} private {plural} waiting for you; "
                    f"`trio-chat chat --name {safe(me)}` shows them."
                )
            )
        return lines


@app.command()
def login(
    name: Annotated[
        str,
        typer.Option("--name", "-n", envvar="TRIO_CHAT_NAME", prompt=True, help="Your account."),
    ],
    host: HostOption = "127.0.0.1",
    port: PortOption = 1600,
    password_file: PasswordFileOption = None,
) -> None:
    """Check your name and password; show who is online and how many private messages wait."""
    _tolerant_output()
    _checked_name(name)
    password = _password(password_file, confirm=False)
    try:
        lines = _run(_check_login, host, port, name, password)
    except ChatError as error:
        raise _chat_failure(error, name) from None
    for line in lines:
        _echo_line(line)


async def _enter(host: str, port: int, name: str, password: str, interactive: bool) -> Outcome:
    async with connect(host, port, name, password) as chat:
        if interactive:
            return await run_interactive(chat)
        return await run_pipe(chat, sys.stdin.fileno())


def _offer_registration(host: str, port: int, name: str, password: str, typed: bool) -> None:
    """Ask whether to create the unknown account `name`; exit if not.

    A password that was typed is asked once more, as `register` does.
    """
    shown = safe(name)
    if not typer.confirm(f"There is no account named {shown!r}. Create it?", default=False):
        raise fail(f"No account named {shown!r}; nothing was changed.", ExitCode.UNKNOWN_USER)
    if typed and typer.prompt("Repeat the password", hide_input=True) != password:
        raise fail("The two passwords differ; no account was created.", ExitCode.INVALID_PASSWORD)
    try:
        created = _run(client_register, host, port, name, password)
    except ChatError as error:
        raise _chat_failure(error, name) from None
    typer.echo(f"Registered {safe(created)}.")


@app.command(
    help="Enter the room: type to talk, /help lists the commands, Exit leaves.\n\n"
    "When input is not a terminal, each line is handled as if typed (commands too), each "
    "event is printed as one plain line, and at the end of input the command waits until "
    "the daemon has acknowledged everything sent, then exits (0 if all was accepted)."
)
def chat(
    name: NameOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 1600,
    password_file: PasswordFileOption = None,
) -> None:
    """Enter the room: type to talk, /help lists the commands, Exit leaves."""
    _tolerant_output()
    can_ask = sys.stdin.isatty()
    interactive = can_ask and sys.stdout.isatty()
    if name is None:
        if not can_ask:
            raise fail(
                "Give your name with --name (or TRIO_CHAT_NAME) when input is not a terminal.",
                ExitCode.USAGE,
            )
        name = typer.prompt("Name")
    _checked_name(name)
    password = _given_password(password_file)
    typed = password is None
    if password is None:
        if not can_ask:
            raise fail(
                "Give the password in TRIO_CHAT_PASSWORD or with --password-file "
                "when input is not a terminal.",
                ExitCode.USAGE,
            )
        password = _password(None, confirm=False)
    try:
        try:
            outcome = _run(_enter, host, port, name, password, interactive)
        except UnknownUser:
            if not can_ask:
                raise
            _offer_registration(host, port, name, password, typed)
            outcome = _run(_enter, host, port, name, password, interactive)
    except ChatError as error:
        raise _chat_failure(error, name) from None
    if outcome.ended is not None:
        raise _chat_failure(outcome.ended, name)
    if outcome.refused is not None and not interactive:
        raise fail("Some lines were not sent (see above).", exit_code_for(outcome.refused))


@app.command()
def gui(
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            "-n",
            envvar="TRIO_CHAT_NAME",
            help="Your account name (default: the last one used).",
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            envvar="TRIO_CHAT_HOST",
            help="Address of the daemon (default: the last one used, else 127.0.0.1).",
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            envvar="TRIO_CHAT_PORT",
            min=1,
            max=65535,
            help="UDP port (default: the last one used, else 1600).",
        ),
    ] = None,
) -> None:
    """Chat in a window: sign in, talk in the room and in private tabs (needs PySide6)."""
    from .gui import GuiUnavailable, launch

    try:
        code = launch(host, port, name)
    except GuiUnavailable as error:
        raise fail(str(error), ExitCode.USAGE) from None
    raise typer.Exit(code)


def main() -> None:
    """The console script's entry point."""
    app(prog_name="trio-chat")


if __name__ == "__main__":
    main()
