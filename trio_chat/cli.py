"""The `trio-chat` command: parses, prompts, and calls the daemon or the client API."""

from __future__ import annotations

import enum
import logging
import signal
from pathlib import Path
from typing import Annotated

import trio
import typer

from . import __version__
from .engine import ServerConfig
from .server import serve
from .store import StorageError, default_database


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


app = typer.Typer(
    name="trio-chat",
    help="A chat room over UDP: run the daemon, register, log in and chat.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
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


def main() -> None:
    """The console script's entry point."""
    app(prog_name="trio-chat")


if __name__ == "__main__":
    main()
