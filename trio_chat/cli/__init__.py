"""The `trio-chat` command: parses, prompts, and calls the daemon or the client API.

What the commands share: `exits` (exit statuses, and the one sentence each failure is told
in), `prompts` (a name, a password, yes or no), `options`.
"""

from __future__ import annotations

import base64
import errno
import functools
import io
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import trio
import typer

from .. import __version__
from ..client import connect, fetch_key, trust_server
from ..client import register as client_register
from ..client_handshake import unreachable
from ..client_protocol import ClientConfig
from ..conversation import Outcome
from ..display import Line, info_line, names_line, quoted, safe_name, to_ansi, to_plain
from ..engine import ServerConfig
from ..errors import ChatError, NameTaken, UnknownUser
from ..keys import (
    KeyFileError,
    KnownServers,
    address_label,
    daemon_public_key,
    first_use_notice,
    home_relative,
    parse_key,
)
from ..logs import FORMATS, LEVELS, configure, event
from ..noise import fingerprint
from ..server import serve
from ..store import StorageError, default_database
from ..terminal import run_interactive, run_pipe
from .exits import (
    ExitCode,
    chat_failure,
    exit_code_for,
    fail,
    name_problem,
    run,
    sentence,
)
from .options import (
    DatabaseOption,
    HostOption,
    KeepaliveOption,
    NameOption,
    PasswordFileOption,
    PortOption,
    ServerKeyOption,
    parse_port,
)
from .prompts import ATTEMPTS, agree, ask, attempts, checked_name, given_password

__all__ = ["ExitCode", "app", "exit_code_for", "fail", "main"]

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


def serve_command(
    host: Annotated[
        str,
        typer.Option(envvar="TRIO_CHAT_HOST", help="Address to listen on ('::1' for IPv6)."),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(envvar="TRIO_CHAT_PORT", parser=parse_port, metavar="PORT", help="UDP port."),
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


app.command("serve")(serve_command)
app.command("server", hidden=True)(serve_command)


def _tolerant_output() -> None:
    """Never fail on a character the terminal's encoding lacks: show it as an escape."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def _echo_line(line: Line) -> None:
    typer.echo(to_ansi(line) if sys.stdout.isatty() else to_plain(line))


def trusted_key(host: str, port: int, server_key: str | None) -> bytes:
    """The daemon's key, checked with one datagram before anything else is asked.

    An unreachable daemon is reported within 2.5 s, before a password is typed; a key
    met for the first time is shown and remembered; a changed one stops here.
    """
    try:
        given = None if server_key is None else parse_key(server_key)
    except KeyFileError as error:
        raise fail(str(error), ExitCode.USAGE) from None
    try:
        trusted = run(functools.partial(trust_server, server_key=given, probe=True), host, port)
    except ChatError as error:
        raise fail(sentence(error, ""), exit_code_for(error)) from None
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
        checked_name(name)
    given = given_password(password_file)
    key = trusted_key(host, port, server_key)
    if name is None:
        name = checked_name(ask("Name"))
    password = given if given is not None else ask("Password", hide=True, confirm=True)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            created = run(
                functools.partial(client_register, server_key=key), host, port, name, password
            )
            break
        except NameTaken as error:
            if not can_ask or attempt == ATTEMPTS:
                raise chat_failure(error, name) from None
            typer.echo(f"The name {quoted(name)} is taken; choose another.", err=True)
            name = ask("Name")
            checked_name(name)
        except ChatError as error:
            raise chat_failure(error, name) from None
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
    key = trusted_key(host, port, server_key)
    if name is None:
        name = ask("Name")
    given = given_password(password_file)
    password = given if given is not None else ask("Password", hide=True)
    again = given is None and sys.stdin.isatty()

    def check(name: str, password: str) -> list[Line]:
        return run(_check_login, host, port, key, name, password)

    try:
        lines = attempts(check, name, password, again=again)
    except ChatError as error:
        raise chat_failure(error, name) from None
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
        created = run(registering, host, port, name, password)
    except ChatError as error:
        raise chat_failure(error, name) from None
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
    password = given_password(password_file)
    typed = password is None
    if password is None and not can_ask:
        raise fail(
            "Give the password in TRIO_CHAT_PASSWORD or with --password-file "
            "when input is not a terminal.",
            ExitCode.USAGE,
        )
    key = trusted_key(host, port, server_key)
    if name is None:
        name = ask("Name")
    if password is None:
        password = ask("Password", hide=True)

    def enter(name: str, password: str) -> Outcome:
        return run(_enter, host, port, key, name, password, interactive, keepalive)

    try:
        try:
            outcome = attempts(enter, name, password, again=typed and can_ask)
        except UnknownUser:
            if not can_ask or name_problem(name) is not None:
                raise
            _offer_registration(host, port, key, name, password, typed)
            outcome = enter(name, password)
    except ChatError as error:
        raise chat_failure(error, name) from None
    if outcome.ended is not None:
        raise chat_failure(outcome.ended, name)
    if outcome.refused is not None and not interactive:
        raise fail("Some lines were not sent (see above).", exit_code_for(outcome.refused))


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
        shown = run(fetch_key, host, port)
    except ChatError as error:
        raise fail(sentence(error, ""), exit_code_for(error)) from None
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
    from ..gui import GuiUnavailable, launch

    try:
        code = launch(host, port, name)
    except GuiUnavailable as error:
        raise fail(str(error), ExitCode.USAGE) from None
    raise typer.Exit(code)


def main() -> None:
    """The console script's entry point."""
    app(prog_name="trio-chat")
