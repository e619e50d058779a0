"""`trio-chat bans`: the networks the operator turned away, and turning one away or back.

As `trio-chat accounts`: a running daemon is asked through its control socket, and ends
the banned network's sessions at once; a stopped daemon's database is changed directly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import typer

from ..control import BanLine, Reply, Request
from ..engine.bans import Bans
from ..engine.common import iso_time
from ..records import BanSet, network_name
from ..store import default_database
from .accounts import ask_daemon, ended_note, stopped_daemons_store
from .exits import ExitCode, fail
from .options import DatabaseOption

bans_app = typer.Typer(
    name="bans",
    help="List the addresses the daemon turns away; turn one away, or let it in again (the "
    "daemon running or stopped).",
    no_args_is_help=True,
)

NetworkArgument = Annotated[
    str,
    typer.Argument(
        metavar="ADDRESS", help="An IP address, or a network: 203.0.113.0/24, 2001:db8::/64."
    ),
]


@bans_app.command("list")
def list_command(db: DatabaseOption = None) -> None:
    """Every address or network turned away, and since when."""
    bans = _listed(db)
    for ban in bans:
        typer.echo(f"{ban.network}  (since {ban.created})")
    typer.echo(f"{len(bans)} turned away." if bans else "Nobody is turned away.", err=True)


@bans_app.command("add")
def add_command(address: NetworkArgument, db: DatabaseOption = None) -> None:
    """Turn an address or network away: its connections are refused before any work is
    spent on them, and its sessions end now (a client of it is told, and stays out)."""
    network = _network(address)
    reply = _change(db, "ban", network)
    if reply.bans:
        typer.echo(f"{network} was turned away already.")
        return
    typer.echo(
        f"Turned {network} away{ended_note(reply.ended)}; `trio-chat bans remove {network}` "
        "lets it in again."
    )


@bans_app.command("remove")
def remove_command(address: NetworkArgument, db: DatabaseOption = None) -> None:
    """Let a network turned away in again (give it as "bans list" shows it)."""
    network = _network(address)
    reply = _change(db, "unban", network)
    wider = Bans((ban.network, ban.created) for ban in _listed(db)).covering(network)
    still = f"; {' and '.join(wider)} still turns it away" if wider else ""
    if reply.bans:
        typer.echo(f"Let {network} in again{still}.")
    else:
        typer.echo(f"{network} was not turned away by itself{still}.")


def _listed(db: DatabaseOption) -> list[BanLine]:
    """Every ban, the running daemon's or the stopped one's."""
    database = db or default_database()
    reply = ask_daemon(database, Request("bans"))
    if reply is not None:
        return reply.bans
    with stopped_daemons_store(database) as store:
        return [BanLine(network, created) for network, created in store.bans()]


def _network(address: str) -> str:
    try:
        return network_name(address)
    except ValueError as error:
        raise fail(str(error), ExitCode.USAGE) from None


def _change(db: DatabaseOption, action: Literal["ban", "unban"], network: str) -> Reply:
    """Ask the running daemon to ban or unban `network`; stopped, change its database.
    The reply's `bans` holds the network if it was banned before."""
    database = db or default_database()
    reply = ask_daemon(database, Request(action, network))
    if reply is not None:
        return reply
    with stopped_daemons_store(database) as store:
        before = [BanLine(name, created) for name, created in store.bans() if name == network]
        banning = action == "ban"
        if banning != bool(before):
            store.write([BanSet(network, banning, iso_time(datetime.now(UTC).timestamp()))])
    return Reply(True, bans=before)
