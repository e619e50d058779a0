"""The options the commands share, and the parser of a port number."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Annotated

import typer

from ..keys import home_relative
from ..store_files import default_database
from .exits import ExitCode, fail


def parse_port(text: str | int, lowest: int = 0) -> int:
    """A port number, or one sentence and exit status 2. Typer hands over the default
    (an int) as it is, and what was typed as text. 0, the lowest by default, has a daemon
    listen on any free port."""
    value = str(text).strip()
    if not value.isdecimal() or not lowest <= int(value) <= 65535:
        typer.echo(f"The port must be a number from {lowest} to 65535, not {text!r}.", err=True)
        raise typer.Exit(int(ExitCode.USAGE))
    return int(value)


def parse_daemon_port(text: str | int) -> int:
    """The daemon's port, for a client: a port it can be reached on (not 0)."""
    return parse_port(text, lowest=1)


HostOption = Annotated[
    str,
    typer.Option("--host", envvar="TRIO_CHAT_HOST", help="Address of the daemon (IPv4 or IPv6)."),
]
PortOption = Annotated[
    int,
    typer.Option(
        "--port",
        envvar="TRIO_CHAT_PORT",
        parser=parse_daemon_port,
        metavar="PORT",
        help="The daemon's UDP port.",
    ),
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
        help='The daemon\'s key (as "trio-chat key" prints it: its fingerprint SHA256:... or '
        "its base64 public key). Without it, the key is trusted the first time it is met "
        "and remembered in known_servers.",
    ),
]
TrustedKeyOption = Annotated[
    str | None,
    typer.Option(
        "--server-key",
        envvar="TRIO_CHAT_SERVER_KEY",
        help='The key the daemon should show (as "trio-chat key" prints it: its fingerprint '
        "SHA256:... or its base64 public key): trusted only if it does. Without it, the key "
        "the daemon shows is shown to you and trusted if you say so (or with --yes).",
    ),
]
GiveUpOption = Annotated[
    float | None,
    typer.Option(
        "--give-up-after",
        envvar="TRIO_CHAT_GIVE_UP_AFTER",
        min=1.0,
        max=86400.0,
        metavar="SECONDS",
        help="Once the connection is lost, leave (exit 10) if it is not back within about "
        "this long (the try under way when it runs out decides). By default a script gives "
        "up after 60 s; at a terminal it keeps trying until you leave.",
    ),
]
KeepaliveOption = Annotated[
    float | None,
    typer.Option(
        "--keepalive",
        envvar="TRIO_CHAT_KEEPALIVE",
        min=1.0,
        max=3600.0,
        metavar="SECONDS",
        help="Send a ping after at most this many seconds without sending anything (on a "
        "whole second of the clock, up to a quarter of it sooner). By default, as long as "
        "the daemon allows: 15 s, or 60 s when nothing on the way translates addresses "
        "(a longer one is held to that). Lower it behind a firewall that forgets a UDP flow "
        "sooner.",
        show_default=False,
    ),
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        dir_okay=False,
        readable=False,  # not Typer's usage error: `given_password` says what is wrong
        help="Read the password from the first line of this file. Without it the password "
        "comes from TRIO_CHAT_PASSWORD, else it is prompted (hidden).",
    ),
]


def database_path(ctx: typer.Context, path: Path | None) -> Path | None:
    """A database path as given, `~` expanded and made absolute: the help shows its
    default as `~/...`, and the log should name the file wherever the daemon was started.
    One the system will not look at (a name too long, a folder of another user's) is
    exit 11 with a sentence, before any command's work."""
    if path is None:
        return None
    path = path.expanduser().absolute()
    if ctx.info_name == "serve":
        return path  # the daemon says it as it says every failure (in its log's form)
    try:
        os.stat(path)
    except OSError as error:
        if error.errno not in (errno.ENOENT, errno.ENOTDIR):  # those each command says
            hint = "; run it as the daemon's user" if error.errno == errno.EACCES else ""
            why = (error.strerror or str(error)).lower()
            raise fail(f"Cannot use the database {path}: {why}{hint}.", ExitCode.DATABASE) from None
    return path


DatabaseOption = Annotated[
    Path | None,
    typer.Option(
        envvar="TRIO_CHAT_DB",
        help="The daemon's database; its keys are the files beside it (for room.db: room.key, "
        "room.tickets).",
        show_default=home_relative(default_database()),
        callback=database_path,
        readable=False,  # not Typer's usage error: the command says what is wrong
    ),
]
