"""The `trio-chat` command: parses, prompts, and calls the daemon or the client API."""

from __future__ import annotations

import base64
import enum
import errno
import functools
import io
import logging
import math
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import trio
import typer

from . import __version__
from .client import connect, fetch_key, trust_server
from .client import register as client_register
from .client_handshake import unreachable
from .client_protocol import ClientConfig
from .conversation import Outcome
from .display import (
    Line,
    info_line,
    names_line,
    quoted,
    safe,
    safe_name,
    to_ansi,
    to_plain,
)
from .engine import ServerConfig
from .errors import (
    Busy,
    ChatError,
    ConnectionLost,
    InvalidName,
    KeyChanged,
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
from .keys import (
    KeyFileError,
    KnownServers,
    address_label,
    daemon_public_key,
    first_use_notice,
    home_relative,
    parse_key,
)
from .logs import FORMATS, LEVELS, configure, event
from .noise import fingerprint
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
    KEY_CHANGED = 15
    INTERRUPTED = 130


app = typer.Typer(
    name="trio-chat",
    help="A chat room over UDP: run the daemon, register, log in and chat.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    epilog="Exit codes: 0 done, 1 failure, 2 usage, 3 daemon unreachable, 4 wrong password, "
    "5 unknown user, 6 name taken, 7 invalid name, 8 invalid password, 9 rate limited, "
    "10 connection lost, 11 database or key file, 12 address in use, 13 refused, "
    "14 message refused, 15 the daemon's key changed, 130 interrupted.",
    context_settings={"help_option_names": ["-h", "--help"]},
)

HostOption = Annotated[
    str,
    typer.Option("--host", envvar="TRIO_CHAT_HOST", help="Address of the daemon (IPv4 or IPv6)."),
]


def _port(text: str | int) -> int:
    """A port number, or one sentence and exit status 2. Typer hands over the default
    (an int) as it is, and what was typed as text."""
    value = str(text).strip()
    if not value.isdecimal() or not 0 <= int(value) <= 65535:
        typer.echo(f"The port must be a number from 0 to 65535, not {text!r}.", err=True)
        raise typer.Exit(int(ExitCode.USAGE))
    return int(value)


PortOption = Annotated[
    int,
    typer.Option("--port", envvar="TRIO_CHAT_PORT", parser=_port, metavar="PORT", help="UDP port."),
]
NameOption = Annotated[
    str | None,
    typer.Option(
        "--name", "-n", envvar="TRIO_CHAT_NAME", help="Your account name (prompted if not given)."
    ),
]
ServerKeyOption = Annotated[
    str | None,
    typer.Option(
        "--server-key",
        envvar="TRIO_CHAT_SERVER_KEY",
        help="The daemon's key (as `trio-chat key` prints it: its fingerprint SHA256:... or "
        "its base64 public key). Without it, the key is trusted the first time it is met "
        "and remembered in known_servers.",
    ),
]
KeepaliveOption = Annotated[
    float | None,
    typer.Option(
        "--keepalive",
        envvar="TRIO_CHAT_KEEPALIVE",
        min=1.0,
        max=3600.0,
        help="Send a ping after at most this many seconds without sending anything (on a "
        "whole second of the clock, up to a quarter of it sooner). By default, as long as "
        "the daemon allows: 15 s, or 60 s when nothing on the way translates addresses. "
        "Lower it behind a firewall that forgets a UDP flow sooner.",
        show_default=False,
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
        int,
        typer.Option(envvar="TRIO_CHAT_PORT", parser=_port, metavar="PORT", help="UDP port."),
    ] = 1600,
    db: Annotated[
        Path | None,
        typer.Option(
            envvar="TRIO_CHAT_DB",
            help="SQLite database file.",
            show_default=home_relative(default_database()),
        ),
    ] = None,
    log_level: Annotated[
        str,
        typer.Option(help="debug, info, warning or error."),
    ] = "info",
    log_format: Annotated[
        str,
        typer.Option(help="text (a line each) or json (one JSON object a line)."),
    ] = "text",
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
    sessions_per_account: Annotated[
        int, typer.Option(help="Sessions one account may hold at once.")
    ] = 8,
    checks_per_address: Annotated[
        int,
        typer.Option(help="Password checks one IP address may have waiting or running at once."),
    ] = 2,
    register_rate_total: Annotated[
        float, typer.Option(help="Registrations per minute from all addresses together.")
    ] = 60.0,
    idle_timeout: Annotated[
        float, typer.Option(help="Seconds of silence after which a session is closed.")
    ] = 45.0,
    notice_limit: Annotated[
        int,
        typer.Option(help="Join and leave notices are sent while at most this many are online."),
    ] = 200,
    summary_every: Annotated[
        float,
        typer.Option(help="Seconds between the log's summary lines (sessions, messages, drops)."),
    ] = 60.0,
) -> None:
    """Run the chat daemon (stop it with Ctrl-C or SIGTERM)."""
    if log_level.lower() not in LEVELS:
        raise fail(
            f"Unknown log level {log_level!r}; use debug, info, warning or error.", ExitCode.USAGE
        )
    if log_format.lower() not in FORMATS:
        raise fail(f"Unknown log format {log_format!r}; use text or json.", ExitCode.USAGE)
    numbers: dict[str, float] = {
        "--message-rate": message_rate,
        "--message-burst": message_burst,
        "--register-rate": register_rate,
        "--register-burst": register_burst,
        "--login-free-failures": login_free_failures,
        "--login-delay": login_delay,
        "--sessions-per-address": sessions_per_address,
        "--sessions-per-account": sessions_per_account,
        "--checks-per-address": checks_per_address,
        "--register-rate-total": register_rate_total,
        "--notice-limit": notice_limit,
    }
    for option, value in numbers.items():
        if not value >= 0:  # NaN too
            raise fail(f"{option} must be 0 or more, not {value}.", ExitCode.USAGE)
    for option, value in {"--idle-timeout": idle_timeout, "--summary-every": summary_every}.items():
        if not value > 0:
            raise fail(
                f"{option} must be a number of seconds above 0, not {value}.", ExitCode.USAGE
            )
    configure(log_level.lower(), log_format.lower())
    config = ServerConfig(
        message_rate=message_rate,
        message_burst=message_burst,
        register_rate=register_rate / 60,
        register_burst=register_burst,
        login_free_failures=login_free_failures,
        login_delay=login_delay,
        max_sessions_per_address=sessions_per_address,
        max_sessions_per_account=sessions_per_account,
        checks_per_address=checks_per_address,
        register_rate_total=register_rate_total,
        register_burst_total=max(1, round(register_rate_total)),
        idle_timeout=idle_timeout,
        notice_limit=notice_limit,
    )
    database = db or default_database()
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    failure: typer.Exit | None = None
    try:
        trio.run(_serve_until_signal, host, port, database, config, summary_every)
    except* (StorageError, KeyFileError) as group:
        failure = fail(str(_first(group)), ExitCode.DATABASE)
    except* OSError as group:
        error = _first(group)
        if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
            failure = fail(
                f"Cannot listen on {shown}: the port is in use; is another trio-chat "
                "running? Choose another with --port.",
                ExitCode.ADDRESS_IN_USE,
            )
        else:
            reason = error.strerror if isinstance(error, OSError) else None
            failure = fail(f"Cannot listen on {shown}: {reason or error}.", ExitCode.FAILURE)
    if failure is not None:
        raise failure


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    """The first exception inside (nested) exception groups."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


async def _serve_until_signal(
    host: str, port: int, database: Path, config: ServerConfig, summary_every: float
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            start = functools.partial(serve, summary_every=summary_every)
            await nursery.start(start, host, port, database, config)
            async for signum in signals:
                name = signal.Signals(signum).name
                event(logging.INFO, "signal", f"Stopping ({name}).", signal=name)
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
    KeyChanged: ExitCode.KEY_CHANGED,
    Busy: ExitCode.LIMITED,
    TextEmpty: ExitCode.MESSAGE_REFUSED,
    TextTooLong: ExitCode.MESSAGE_REFUSED,
}


def exit_code_for(error: ChatError) -> ExitCode:
    """The exit status for a failure the client API reported."""
    return _EXIT_FOR.get(type(error), ExitCode.REJECTED)


def _sentence(error: ChatError, name: str) -> str:
    """What to tell the person, as one sentence they can act on."""
    shown = safe_name(name)
    if isinstance(error, UnknownUser):
        problem = _name_problem(name)
        if problem is not None:  # registering it would be refused too
            return f"There is no account named {quoted(name)}: {problem}"
        return (
            f"There is no account named {quoted(name)}; "
            f"create it with `trio-chat register --name {shown}`."
        )
    if isinstance(error, WrongPassword):
        return f"Wrong password for {quoted(name)}."
    message = safe(error.message)
    if error.retry_after is not None and isinstance(error, Throttled | TooManyRegistrations):
        message = f"{message.rstrip('.')} (about {math.ceil(error.retry_after)} s)."
    return message


def _name_problem(name: str) -> str | None:
    """Why no account can have `name`, or None if one can."""
    try:
        check_name(name)
    except RuleError as error:
        return error.message
    return None


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
        if isinstance(leaf, KeyFileError):  # known_servers cannot be read or written
            raise fail(str(leaf), ExitCode.DATABASE) from None
        if isinstance(leaf, OSError):
            raise fail(f"Network error: {leaf.strerror or leaf}.", ExitCode.FAILURE) from None
        raise fail(
            f"trio-chat stopped on an unexpected error ({type(leaf).__name__}: "
            f"{safe(str(leaf))}); please report it.",
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
        first = text.splitlines()[0] if text else ""
        if not first:
            raise fail(
                f"The password file {password_file} has no password on its first line.",
                ExitCode.USAGE,
            )
        return first
    return os.environ.get("TRIO_CHAT_PASSWORD")


def ask(text: str, *, hide: bool = False, confirm: bool = False) -> str:
    """Prompt for a value; Ctrl-C or Ctrl-D leaves with a new line and exit status 130."""
    if hide and not sys.stdin.isatty():
        return _read_hidden(text, confirm=confirm)
    try:
        value: str = typer.prompt(
            text, hide_input=hide, confirmation_prompt="Repeat the password" if confirm else False
        )
    except typer.Abort:
        if not hide:  # a hidden prompt has ended its line already
            typer.echo("", err=True)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    return value


def _read_hidden(text: str, *, confirm: bool) -> str:
    """A password from input that is not a terminal (a pipe, a file): its next line.

    Nothing is echoed there, so the terminal's echo needs no turning off, and `getpass`
    would only warn that it cannot. With `confirm`, the line after must match it.
    """
    while True:
        typer.echo(f"{text}: ", nl=False)
        value = _next_line()
        if not confirm:
            return value
        typer.echo("Repeat the password: ", nl=False)
        if _next_line() == value:
            return value
        typer.echo("The two passwords do not match; type them again.")


def _next_line() -> str:
    line = sys.stdin.readline()
    if not line:
        typer.echo("", err=True)
        raise typer.Exit(int(ExitCode.INTERRUPTED))  # the input ended, as Ctrl-D ends it
    typer.echo("")  # where a terminal would have ended the line
    return line.rstrip("\r\n")


def agree(text: str) -> bool:
    """Ask a yes/no question (no by default); Ctrl-C leaves as `ask` does."""
    try:
        return typer.confirm(text, default=False)
    except typer.Abort:
        typer.echo("", err=True)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


ATTEMPTS = 3
"""How many times a person at a terminal may type a password or a name."""


def _attempts(function: Callable[[str, str], T], name: str, password: str, *, again: bool) -> T:
    """Call `function(name, password)`; at a terminal, ask again after a wrong password."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return function(name, password)
        except WrongPassword:
            if not again or attempt == ATTEMPTS:
                raise
            typer.echo(f"Wrong password for {quoted(name)}; try again.", err=True)
            password = ask("Password", hide=True)
    raise AssertionError("unreachable")


def _tolerant_output() -> None:
    """Never fail on a character the terminal's encoding lacks: show it as an escape."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def _echo_line(line: Line) -> None:
    typer.echo(to_ansi(line) if sys.stdout.isatty() else to_plain(line))


def _trusted_key(host: str, port: int, server_key: str | None) -> bytes:
    """The daemon's key, checked with one datagram before anything else is asked.

    An unreachable daemon is reported within 2.5 s, before a password is typed; a key
    met for the first time is shown and remembered; a changed one stops here.
    """
    try:
        given = None if server_key is None else parse_key(server_key)
    except KeyFileError as error:
        raise fail(str(error), ExitCode.USAGE) from None
    try:
        trusted = _run(functools.partial(trust_server, server_key=given, probe=True), host, port)
    except ChatError as error:
        raise fail(_sentence(error, ""), exit_code_for(error)) from None
    if trusted.new:
        typer.echo(first_use_notice(host, port, trusted, KnownServers().path), err=True)
    return trusted.key


@app.command()
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
    _tolerant_output()
    can_ask = sys.stdin.isatty()
    if name is not None:
        _checked_name(name)
    given = _given_password(password_file)
    key = _trusted_key(host, port, server_key)
    if name is None:
        name = _checked_name(ask("Name"))
    password = given if given is not None else ask("Password", hide=True, confirm=True)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            created = _run(
                functools.partial(client_register, server_key=key), host, port, name, password
            )
            break
        except NameTaken as error:
            if not can_ask or attempt == ATTEMPTS:
                raise _chat_failure(error, name) from None
            typer.echo(f"The name {quoted(name)} is taken; choose another.", err=True)
            name = ask("Name")
            _checked_name(name)
        except ChatError as error:
            raise _chat_failure(error, name) from None
    typer.echo(
        f"Registered {safe_name(created)} at {host}:{port}; "
        f"enter the room with `trio-chat chat --name {safe_name(created)}`."
    )


async def _check_login(host: str, port: int, key: bytes, name: str, password: str) -> list[Line]:
    # A quiet session only looks: nobody sees us come and go, and the private messages
    # stay waiting for `trio-chat chat`.
    async with connect(host, port, name, password, quiet=True, server_key=key) as chat:
        names: list[str] | None = None
        with trio.move_on_after(chat.config.timeout):
            names = await chat.who()
        if names is None:  # a daemon that logs in but does not answer would hold us forever
            raise unreachable(address_label(host, port))
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
            lines.append(
                info_line(
                    f"{count} private {plural} waiting for you; "
                    f"`trio-chat chat --name {safe_name(me)}` shows them."
                )
            )
        return lines


@app.command()
def login(
    name: NameOption = None,
    host: HostOption = "127.0.0.1",
    port: PortOption = 1600,
    password_file: PasswordFileOption = None,
    server_key: ServerKeyOption = None,
) -> None:
    """Check your name and password; show who is online and how many private messages wait."""
    _tolerant_output()
    key = _trusted_key(host, port, server_key)
    if name is None:
        name = ask("Name")
    given = _given_password(password_file)
    password = given if given is not None else ask("Password", hide=True)
    again = given is None and sys.stdin.isatty()

    def check(name: str, password: str) -> list[Line]:
        return _run(_check_login, host, port, key, name, password)

    try:
        lines = _attempts(check, name, password, again=again)
    except ChatError as error:
        raise _chat_failure(error, name) from None
    for line in lines:
        _echo_line(line)


async def _enter(
    host: str,
    port: int,
    key: bytes,
    name: str,
    password: str,
    interactive: bool,
    keepalive: float | None,
) -> Outcome:
    config = ClientConfig(keepalive=keepalive)
    if interactive:
        async with connect(host, port, name, password, server_key=key, config=config) as chat:
            return await run_interactive(chat)
    # A script stopped by Ctrl-C, SIGTERM or SIGHUP leaves the room and exits 130, rather
    # than staying in it, silent, until the daemon gives up on it. The three are taken
    # by one task, so that none lands halfway through the start of another.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
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
        registering = functools.partial(client_register, server_key=key)
        created = _run(registering, host, port, name, password)
    except ChatError as error:
        raise _chat_failure(error, name) from None
    typer.echo(f"Registered {safe_name(created)}.")


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
    server_key: ServerKeyOption = None,
    keepalive: KeepaliveOption = None,
) -> None:
    """Enter the room: type to talk, /help lists the commands, Exit leaves."""
    _tolerant_output()
    can_ask = sys.stdin.isatty()
    interactive = can_ask and sys.stdout.isatty()
    if name is None and not can_ask:
        raise fail(
            "Give your name with --name (or TRIO_CHAT_NAME) when input is not a terminal.",
            ExitCode.USAGE,
        )
    password = _given_password(password_file)
    typed = password is None
    if password is None and not can_ask:
        raise fail(
            "Give the password in TRIO_CHAT_PASSWORD or with --password-file "
            "when input is not a terminal.",
            ExitCode.USAGE,
        )
    key = _trusted_key(host, port, server_key)
    if name is None:
        name = ask("Name")
    if password is None:
        password = ask("Password", hide=True)

    def enter(name: str, password: str) -> Outcome:
        return _run(_enter, host, port, key, name, password, interactive, keepalive)

    try:
        try:
            outcome = _attempts(enter, name, password, again=typed and can_ask)
        except UnknownUser:
            if not can_ask or _name_problem(name) is not None:
                raise
            _offer_registration(host, port, key, name, password, typed)
            outcome = enter(name, password)
    except ChatError as error:
        raise _chat_failure(error, name) from None
    if outcome.ended is not None:
        raise _chat_failure(outcome.ended, name)
    if outcome.refused is not None and not interactive:
        raise fail("Some lines were not sent (see above).", exit_code_for(outcome.refused))


DatabaseOption = Annotated[
    Path | None,
    typer.Option(
        envvar="TRIO_CHAT_DB",
        help="The daemon's database: its key is the file beside it (NAME.key).",
        show_default=home_relative(default_database()),
    ),
]


@app.command("key")
def key_command(db: DatabaseOption = None) -> None:
    """Show the daemon's key: the fingerprint to publish, and the key for --server-key."""
    database = db or default_database()
    try:
        public = daemon_public_key(database)
    except KeyFileError as error:
        raise fail(str(error), ExitCode.DATABASE) from None
    typer.echo(f"fingerprint: {fingerprint(public)}")
    typer.echo(f"public key:  {base64.b64encode(public).decode()}")


@app.command("trust")
def trust_command(
    host: HostOption = "127.0.0.1",
    port: PortOption = 1600,
    server_key: ServerKeyOption = None,
    forget: Annotated[
        bool, typer.Option("--forget", help="Stop trusting any key for this daemon.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Trust the key the daemon shows without asking.")
    ] = False,
) -> None:
    """Trust a daemon's key anew: after its operator changed it on purpose, say.

    The key the daemon shows is checked against --server-key if given, else shown for you
    to compare with the fingerprint its operator publishes (`trio-chat key`).
    """
    known = KnownServers()
    where = address_label(host, port)
    if forget:
        try:
            forgotten = known.forget(host, port)
        except KeyFileError as error:
            raise fail(str(error), ExitCode.DATABASE) from None
        if forgotten:
            typer.echo(f"No key is trusted for {where} any more.")
        else:
            typer.echo(f"No key was trusted for {where}.")
        return
    given = None
    if server_key is not None:
        try:
            given = parse_key(server_key)
        except KeyFileError as error:
            raise fail(str(error), ExitCode.USAGE) from None
    try:
        shown = _run(fetch_key, host, port)
    except ChatError as error:
        raise fail(_sentence(error, ""), exit_code_for(error)) from None
    matches = given is not None and (
        shown == given if isinstance(given, bytes) else fingerprint(shown) == given
    )
    if given is not None and not matches:
        raise fail(
            f"The daemon at {where} shows the key {fingerprint(shown)}, not the one you gave; "
            "nothing was changed.",
            ExitCode.KEY_CHANGED,
        )
    if given is None and not yes:
        question = f"The daemon at {where} shows the key {fingerprint(shown)}. Trust it?"
        if not agree(question):
            raise fail("Nothing was changed.", ExitCode.REJECTED)
    try:
        known.remember(host, port, shown)
    except KeyFileError as error:
        raise fail(str(error), ExitCode.DATABASE) from None
    typer.echo(f"Trusting {fingerprint(shown)} for {where} (remembered in {known.path}).")


def _last_used(
    flag: str, *more: str, envvar: str, what: str, otherwise: str = "", **checks: Any
) -> Any:
    """An option of `trio-chat gui`: without it, the sign-in dialog offers the last one used."""
    default = f"the last one used, else {otherwise}" if otherwise else "the last one used"
    return typer.Option(flag, *more, envvar=envvar, help=f"{what} (default: {default}).", **checks)


@app.command()
def gui(
    name: Annotated[
        str | None, _last_used("--name", "-n", envvar="TRIO_CHAT_NAME", what="Your account name")
    ] = None,
    host: Annotated[
        str | None,
        _last_used(
            "--host", envvar="TRIO_CHAT_HOST", what="Address of the daemon", otherwise="127.0.0.1"
        ),
    ] = None,
    port: Annotated[
        int | None,
        _last_used(
            "--port", envvar="TRIO_CHAT_PORT", what="UDP port", otherwise="1600", min=1, max=65535
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
