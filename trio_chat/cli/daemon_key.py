"""The daemon's key: `trio-chat key` shows it, `trio-chat trust` trusts it anew,
`trio-chat ping` checks that the daemon answers with it, and each client command checks it
before anything else (`trusted_key`)."""

from __future__ import annotations

import base64
import functools
import time
from typing import Annotated

import typer

from ..errors import ChatError
from ..keys import (
    KeyFileError,
    KnownServers,
    Trust,
    address_label,
    daemon_public_key,
    first_use_notice,
    parse_key,
)
from ..noise import fingerprint
from ..store_files import default_database
from ..trust import fetch_key, prove_key, trust_server
from .exits import ExitCode, exit_code_for, fail, run, sentence
from .options import DatabaseOption, HostOption, PortOption, TrustedKeyOption
from .prompts import agree


def _given_key(server_key: str | None) -> bytes | str | None:
    """The key `--server-key` gives (its fingerprint or the key), or one sentence and exit
    status 2 if it is neither."""
    try:
        return None if server_key is None else parse_key(server_key)
    except KeyFileError as error:
        raise fail(str(error), ExitCode.USAGE) from None


def trusted_key(host: str, port: int, server_key: str | None) -> bytes:
    """The daemon's key, checked with one datagram before anything else is asked.

    An unreachable daemon is reported within 2.5 s, before a password is typed; a key
    met for the first time is shown and remembered; a changed one stops here.
    """
    return trusted(host, port, server_key).key


def trusted(host: str, port: int, server_key: str | None) -> Trust:
    """`trusted_key`'s key, with what the daemon said of registrations as it showed it."""
    given = _given_key(server_key)
    try:
        trust = run(functools.partial(trust_server, server_key=given, probe=True), host, port)
    except ChatError as error:
        raise fail(sentence(error, ""), exit_code_for(error)) from None
    if trust.new:
        typer.echo(first_use_notice(host, port, trust, KnownServers().path), err=True)
    return trust


def key_command(db: DatabaseOption = None) -> None:
    """Show the daemon's key: the fingerprint to publish, and the key for --server-key."""
    database = db or default_database()
    try:
        public = daemon_public_key(database)
    except KeyFileError as error:
        raise fail(str(error), ExitCode.DATABASE) from None
    typer.echo(f"fingerprint: {fingerprint(public)}")
    typer.echo(f"public key:  {base64.b64encode(public).decode()}")


def ping_command(
    host: HostOption = "127.0.0.1",
    port: PortOption = 1600,
    server_key: Annotated[
        str | None,
        typer.Option(
            "--server-key",
            envvar="TRIO_CHAT_SERVER_KEY",
            help="The key the daemon must answer with (its fingerprint SHA256:... or its "
            "base64 public key). Without it, the key trusted for it in known_servers, if any.",
        ),
    ] = None,
) -> None:
    """Check that the daemon answers, with the key expected of it: for a health check
    (exit 0; 3 if it does not answer within 2.5 s, or its port is closed; 15 if it shows
    another key; 18 if its operator turned this address away). It says the daemon's loop
    answers, not that its disk takes writes. No account is needed, the daemon logs
    nothing of it (its datagram is counted in the minute's summary), and nothing is
    remembered."""
    where = address_label(host, port)
    given = _given_key(server_key)
    check = functools.partial(
        trust_server, server_key=given, probe=True, remember=False, refused_ends=True
    )
    started = time.monotonic()
    try:
        shown = run(check, host, port).key
    except ChatError as error:
        raise fail(sentence(error, ""), exit_code_for(error)) from None
    except KeyFileError as error:  # known_servers, damaged
        raise fail(str(error), ExitCode.DATABASE) from None
    took = (time.monotonic() - started) * 1000
    typer.echo(f"trio-chat at {where} answered in {took:.1f} ms (key {fingerprint(shown)}).")


def trust_command(
    host: HostOption = "127.0.0.1",
    port: PortOption = 1600,
    server_key: TrustedKeyOption = None,
    forget: Annotated[
        bool, typer.Option("--forget", help="Stop trusting any key for this daemon.")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Trust the key the daemon shows without asking.")
    ] = False,
) -> None:
    """Trust a daemon's key anew: after its operator changed it on purpose, say.

    The key the daemon shows is checked against --server-key if given, else shown for you
    to compare with the fingerprint its operator publishes ("trio-chat key").
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
    given = _given_key(server_key)
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
        missing = "The input ended before an answer; give --yes, or --server-key to check it."
        if not agree(question, missing=missing):
            raise fail("Nothing was changed.", ExitCode.REJECTED)
    try:
        run(prove_key, host, port, shown)  # a `KEY` proves nothing: a handshake does
    except ChatError as error:
        raise fail(sentence(error, ""), exit_code_for(error)) from None
    try:
        known.remember(host, port, shown)
    except KeyFileError as error:
        raise fail(str(error), ExitCode.DATABASE) from None
    typer.echo(f"Trusting {fingerprint(shown)} for {where} (remembered in {known.path}).")
