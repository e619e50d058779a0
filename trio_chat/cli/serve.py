"""`trio-chat serve`: run the daemon until Ctrl-C, SIGTERM or SIGHUP."""

from __future__ import annotations

import errno
import functools
import logging
import math
import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import trio
import typer

from ..engine import ServerConfig
from ..keys import KeyFileError, address_label
from ..logs import FORMATS, LEVELS, configured, event
from ..server import serve
from ..service_manager import notify
from ..stop_signals import stop_signals
from ..store_files import StorageError, default_database
from .exits import ExitCode, fail
from .options import DatabaseOption, parse_port


def serve_command(
    host: Annotated[
        str,
        typer.Option(envvar="TRIO_CHAT_HOST", help="Address to listen on ('::1' for IPv6)."),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            envvar="TRIO_CHAT_PORT",
            parser=parse_port,
            metavar="PORT",
            help="UDP port to listen on (0: any free one).",
        ),
    ] = 1600,
    db: DatabaseOption = None,
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
    no_registrations: Annotated[
        bool,
        typer.Option(
            "--no-registrations",
            help="Refuse every registration: the operator makes the accounts (`trio-chat "
            "accounts add`).",
        ),
    ] = False,
    register_rate: Annotated[
        float,
        typer.Option(
            help="Registrations per minute from one IP address (IPv6: its /64), steadily."
        ),
    ] = 1.0,
    register_burst: Annotated[
        int, typer.Option(help="Registrations from one IP address (IPv6: its /64) at once.")
    ] = 5,
    login_free_failures: Annotated[
        int, typer.Option(help="Failed logins (per account and per address) before delays.")
    ] = 3,
    login_delay: Annotated[
        float,
        typer.Option(
            help="Seconds: the first delay after those failures, doubling each time up to a "
            "minute (or this delay, if longer)."
        ),
    ] = 1.0,
    sessions_per_address: Annotated[
        int, typer.Option(help="Sessions one IP address (IPv6: its /64) may hold at once.")
    ] = 16,
    sessions_per_account: Annotated[
        int, typer.Option(help="Sessions one account may hold at once.")
    ] = 8,
    checks_per_address: Annotated[
        int,
        typer.Option(
            help="Password checks one IP address (IPv6: its /64) may have waiting or running "
            "at once."
        ),
    ] = 2,
    register_rate_total: Annotated[
        float, typer.Option(help="Registrations per minute from all addresses together.")
    ] = 60.0,
    handshake_rate: Annotated[
        float,
        typer.Option(
            help="Connections a second one IP address (IPv6: its /64) may open, steadily "
            "(each costs the daemon a key exchange)."
        ),
    ] = 10.0,
    handshake_burst: Annotated[
        int, typer.Option(help="Connections one IP address (IPv6: its /64) may open at once.")
    ] = 20,
    idle_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds of silence after which a session is closed (clients ping 3 times in "
            "it). At 45 s or more, a client reaching the daemon without address translation "
            "on the way (on its own machine or network) pings once a minute instead, and is "
            "closed after 180 s of silence, or after this if longer."
        ),
    ] = 45.0,
    notice_limit: Annotated[
        int,
        typer.Option(help="Join and leave notices are sent while at most this many are online."),
    ] = 200,
    summary_every: Annotated[
        float,
        typer.Option(
            help="Seconds between the log's summary lines (connections, messages, drops)."
        ),
    ] = 60.0,
) -> None:
    """Run the chat daemon (stop it with Ctrl-C, SIGTERM or SIGHUP)."""
    if log_level.lower() not in LEVELS:
        raise fail(
            f"Unknown log level {log_level!r}; use debug, info, warning or error.", ExitCode.USAGE
        )
    if log_format.lower() not in FORMATS:
        raise fail(f"Unknown log format {log_format!r}; use text or json.", ExitCode.USAGE)
    measures: dict[str, float] = {
        "--message-rate": message_rate,
        "--register-rate": register_rate,
        "--login-delay": login_delay,
        "--register-rate-total": register_rate_total,
        "--handshake-rate": handshake_rate,
        "--idle-timeout": idle_timeout,
        "--summary-every": summary_every,
    }
    for option, value in measures.items():
        if math.isinf(value):
            # A rate of inf refills by inf x 0 = nan; a time of inf never comes round.
            raise fail(f"{option} must be a finite number, not {value}.", ExitCode.USAGE)
    numbers: dict[str, float] = {
        "--login-free-failures": login_free_failures,
        "--login-delay": login_delay,
        "--notice-limit": notice_limit,
    }
    for option, value in numbers.items():
        if not value >= 0:  # NaN too
            raise fail(f"{option} must be 0 or more, not {value}.", ExitCode.USAGE)
    # Below 1, no client could ever do what these count: it would wait for ever, or be
    # told to try again later when later never comes.
    counts: dict[str, int] = {
        "--message-burst": message_burst,
        "--register-burst": register_burst,
        "--sessions-per-address": sessions_per_address,
        "--sessions-per-account": sessions_per_account,
        "--checks-per-address": checks_per_address,
        "--handshake-burst": handshake_burst,
    }
    for option, count in counts.items():
        if count < 1:
            raise fail(f"{option} must be 1 or more, not {count}.", ExitCode.USAGE)
    # A rate of 0 would keep every client waiting for ever (registrations: once the
    # burst is spent, every newcomer told to try again later, when later never comes).
    rates: dict[str, tuple[float, str]] = {
        "--message-rate": (message_rate, "messages a second"),
        "--handshake-rate": (handshake_rate, "connections a second"),
        "--register-rate": (register_rate, "registrations a minute"),
        "--register-rate-total": (register_rate_total, "registrations a minute"),
    }
    for option, (rate, what) in rates.items():
        if not rate > 0:  # NaN too
            raise fail(f"{option} must be above 0 ({what}), not {rate}.", ExitCode.USAGE)
    if not summary_every > 0:
        raise fail(
            f"--summary-every must be a number of seconds above 0, not {summary_every}.",
            ExitCode.USAGE,
        )
    if not idle_timeout >= 3:
        # Clients are asked to ping three times in it, at most once a second.
        raise fail(f"--idle-timeout must be 3 seconds or more, not {idle_timeout}.", ExitCode.USAGE)
    config = ServerConfig(
        message_rate=message_rate,
        message_burst=message_burst,
        registrations=not no_registrations,
        register_rate=register_rate / 60,
        register_burst=register_burst,
        login_free_failures=login_free_failures,
        login_delay=login_delay,
        max_sessions_per_address=sessions_per_address,
        max_sessions_per_account=sessions_per_account,
        checks_per_address=checks_per_address,
        register_rate_total=register_rate_total / 60,
        register_burst_total=max(1, round(register_rate_total)),
        handshake_rate=handshake_rate,
        handshake_burst=handshake_burst,
        idle_timeout=idle_timeout,
        notice_limit=notice_limit,
    )
    database = db or default_database()
    form = log_format.lower()
    with configured(log_level.lower(), form):
        failure = _run(host, port, database, config, summary_every, form)
    if failure is not None:
        raise failure


def _run(
    host: str, port: int, database: Path, config: ServerConfig, summary_every: float, form: str
) -> typer.Exit | None:
    """Run the daemon until it is stopped; why it could not run or went on no longer, as
    the exit to make (None: stopped as asked)."""
    shown = address_label(host, port)
    refuse = functools.partial(_failure, form=form)
    failure: typer.Exit | None = None
    try:
        trio.run(_serve_until_signal, host, port, database, config, summary_every)
    except* (StorageError, KeyFileError) as group:
        failure = refuse(str(_first(group)), ExitCode.DATABASE)
    except* OSError as group:
        error = _first(group)
        if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
            failure = refuse(
                f"Cannot listen on {shown}: the port is in use; is another trio-chat "
                "running? Choose another with --port.",
                ExitCode.CANNOT_LISTEN,
            )
        elif isinstance(error, socket.gaierror) or (
            isinstance(error, OSError) and error.errno == errno.EADDRNOTAVAIL
        ):
            unknown = isinstance(error, socket.gaierror)
            why = "no such host" if unknown else "not an address of this machine"
            failure = refuse(
                f"Cannot listen on {shown}: {why}; choose another with --host.",
                ExitCode.CANNOT_LISTEN,
            )
        elif isinstance(error, PermissionError) and error.filename is None and port < 1024:
            failure = refuse(
                f"Cannot listen on {shown}: ports below 1024 need privileges; choose another "
                "with --port.",
                ExitCode.CANNOT_LISTEN,
            )
        elif isinstance(error, OSError) and error.filename is not None:
            # A file's, not the socket's: a database path too long, a folder not ours.
            why = (error.strerror or str(error)).lower()
            failure = refuse(f"Cannot use {error.filename}: {why}.", ExitCode.DATABASE)
        else:
            reason = error.strerror if isinstance(error, OSError) else None
            failure = refuse(f"Cannot listen on {shown}: {reason or error}.", ExitCode.FAILURE)
    return failure


def _failure(message: str, code: ExitCode, form: str) -> typer.Exit:
    """Why the daemon stopped: one sentence, or in a JSON log one object like the others,
    so that whatever reads the log as JSON keeps the line that matters most."""
    if form == "json":
        event(logging.ERROR, "failed", message, exit_status=int(code))
        return typer.Exit(int(code))
    return fail(message, code)


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    """The first exception inside (nested) exception groups."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


async def _serve_until_signal(
    host: str, port: int, database: Path, config: ServerConfig, summary_every: float
) -> None:
    # SIGHUP too: a daemon started from a terminal that closes (an ssh session that
    # ends) would otherwise die at once, telling no one and logging nothing. Under
    # `nohup` it is ignored, and stays so: the daemon outlives the terminal.
    with trio.open_signal_receiver(*stop_signals()) as signals:
        stopped = trio.Event()
        async with trio.open_nursery() as stopping:
            async with trio.open_nursery() as nursery:
                start = functools.partial(serve, summary_every=summary_every)
                address = await nursery.start(start, host, port, database, config)
                notify(f"READY=1\nSTATUS=Listening on {address_label(*address[:2])}")
                async for signum in signals:
                    name = signal.Signals(signum).name
                    event(logging.INFO, "signal", f"Stopping ({name}).", signal=name)
                    notify(f"STOPPING=1\nSTATUS=Stopping ({name})")
                    nursery.cancel_scope.cancel()
                    # Signals that come while the daemon stops ask for what it does:
                    # left unread, each would kill it once it stopped (status 143).
                    stopping.start_soon(_already_stopping, signals, signum, stopped)
                    break
            stopped.set()
            await trio.lowlevel.checkpoint()  # what came just now is read first
            stopping.cancel_scope.cancel()


async def _already_stopping(signals: AsyncIterator[int], first: int, stopped: trio.Event) -> None:
    """Signals while the daemon stops (after `first`): Ctrl-C again (a person at the
    terminal, tired of waiting for a stop that hangs, on a disk that no longer answers,
    say) stops it at once; nothing acknowledged is lost, since an answer goes out only
    once it is on disk. Others ask for what it is doing already: a `kill`, the terminal
    closing, and a Ctrl-C after another signal (sent together, two signals may arrive in
    either order: Ctrl-C and then `kill` must not end it at once). Once `stopped` is set
    the stop is complete, the database closed: a Ctrl-C then changes nothing."""
    async for signum in signals:
        name = signal.Signals(signum).name
        if stopped.is_set():
            event(logging.INFO, "signal", f"Already stopped ({name}).", signal=name)
            continue
        if signum == first == signal.SIGINT:
            message = (
                f"Stopping now ({name} again); what was not yet on disk was never acknowledged."
            )
            event(logging.WARNING, "signal", message, signal=name, forced=True)
            _exit_now(128 + signum)
            return
        event(logging.INFO, "signal", f"Already stopping ({name}).", signal=name)


def _exit_now(status: int) -> None:
    """End the process at once, the log written out first: no cleanup that could hang."""
    logging.shutdown()
    os._exit(status)
