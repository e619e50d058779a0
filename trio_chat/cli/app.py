"""The Typer app of `trio-chat`, its commands in the order `--help` lists them, and the
console script's entry point."""

from __future__ import annotations

import io
import signal
import sys
from typing import Annotated

import typer

from .. import __version__
from .account import CHAT_HELP, chat, login, password, register
from .accounts import accounts_app
from .backup import backup_command, restore_command
from .bans import bans_app
from .daemon_key import key_command, ping_command, trust_command
from .exits import exit_codes_summary
from .gui import gui
from .messages import messages_app
from .serve import serve_command

app = typer.Typer(
    name="trio-chat",
    help="A chat room over UDP: run the daemon, register, log in and chat.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,
    epilog=exit_codes_summary(),
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
    _tolerant_output()


def _tolerant_output() -> None:
    """Never fail on a character the terminal's encoding lacks (a name in Chinese listed in a
    Latin-1 terminal): show it as an escape, `\\u5f20`."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


app.command("serve")(serve_command)
app.command("server", hidden=True)(serve_command)
app.command()(register)
app.command()(login)
app.command()(password)
app.command(help=CHAT_HELP)(chat)
app.command("key")(key_command)
app.command("trust")(trust_command)
app.command("ping")(ping_command)
app.command("backup")(backup_command)
app.command("restore")(restore_command)
app.add_typer(accounts_app)
app.add_typer(bans_app)
app.add_typer(messages_app)
app.command()(gui)


def main() -> None:
    """The console script's entry point."""
    try:
        app(prog_name="trio-chat")
    finally:
        # Done: a Ctrl-C pressed now (a second one as the room is left, say) would kill
        # the process in its last moments (Python re-raises an interrupt it did not
        # handle at exit), with no word and no exit status of ours.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
