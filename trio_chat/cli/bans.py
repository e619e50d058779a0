"""`trio-chat bans`: the networks the operator turned away, and turning one away (for good
or for a while) or back.

As `trio-chat accounts`: a running daemon is asked through its control socket, and ends
the banned network's sessions at once; a stopped daemon's database is changed directly.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from typing import Annotated, Literal

import typer

from ..control import Reply, Request
from ..engine.bans import BANS_NAMED, Bans, ban_change, bans_named, held_within, still_held
from ..engine.common import iso_time
from ..records import BanRecord, network_name
from ..store_files import default_database
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
ForOption = Annotated[
    str | None,
    typer.Option(
        "--for",
        metavar="TIME",
        help="How long: 90s, 30m, 2h, 7d, 2w or 1h30m (without it, until it is removed).",
        show_default=False,
    ),
]

_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_SPAN = re.compile(r"(?=.)([0-9]{1,9}w)?([0-9]{1,9}d)?([0-9]{1,9}h)?([0-9]{1,9}m)?([0-9]{1,9}s)?")
"""A span as `2w3d4h5m6s` writes it: each unit once at most, the longest first."""
LONGEST_BAN = 100 * 365 * 86400
"""The longest span `--for` takes, in seconds (a longer one is meant for good)."""


def span_seconds(text: str) -> int:
    """The seconds a span such as `1h30m` names; `ValueError` with a sentence else."""
    span = text.strip().lower()
    seconds = 0
    if _SPAN.fullmatch(span):
        seconds = sum(int(n) * _UNITS[unit] for n, unit in re.findall(r"([0-9]+)([wdhms])", span))
    if not 0 < seconds <= LONGEST_BAN:
        shown = repr(text) if text.isprintable() else ascii(text)
        raise ValueError(
            f"{shown} is not a time span of up to 100 years (such as 90s, 30m, 2h, 7d, "
            "2w or 1h30m); leave out --for to turn it away until it is removed."
        )
    return seconds


def _ends(ban: BanRecord) -> str:
    """`, until T` for a ban that ends; nothing for one for good."""
    return "" if ban.until is None else f", until {ban.until}"


def _pairs(bans: list[BanRecord]) -> list[tuple[str, str | None]]:
    return [(ban.network, ban.until) for ban in bans]


def _wider(network: str, held: Bans) -> str:
    """`; 10.0.0.0/8 (until ...) still turns it away`: the bans in force, other than its
    own, that hold all of `network`."""
    wider = [ban for ban in held.covering(network, _now()) if ban.network != network]
    return still_held(_pairs(wider))


def _inside(network: str, held: Bans) -> str:
    """`; 10.0.0.7/32 within it stays turned away`: the bans inside `network`, which
    letting it in does not lift."""
    inside, count = held.inside(network, most=BANS_NAMED)
    return held_within(_pairs(inside), count)


def _but_for(network: str, held: Bans) -> str:
    """`, but for 10.0.0.7/32 within it`: what letting `network` in would not lift."""
    inside, count = held.inside(network, most=BANS_NAMED)
    return f", but for {bans_named(_pairs(inside), count)} within it" if count else ""


def _now() -> float:
    return datetime.now(UTC).timestamp()


@bans_app.command("list")
def list_command(db: DatabaseOption = None) -> None:
    """Every address or network turned away, since when, and until when (if it ends)."""
    bans = _listed(db)
    for ban in bans:
        typer.echo(f"{ban.network}  (since {ban.created}{_ends(ban)})")
    typer.echo(f"{len(bans)} turned away." if bans else "Nobody is turned away.", err=True)


@bans_app.command("add")
def add_command(
    address: NetworkArgument, db: DatabaseOption = None, for_: ForOption = None
) -> None:
    """Turn an address or network away, for good or (--for) a while: its connections are
    refused before any work is spent on them, and its sessions end now (a client of it
    is told until when, and stays out). Given again, its end is the one given."""
    network = _network(address)
    try:
        seconds = None if for_ is None else span_seconds(for_)
    except ValueError as error:
        raise fail(str(error), ExitCode.USAGE) from None
    until = None if seconds is None else iso_time(_now() + seconds)
    reply = _change(db, "ban", network, until)
    ending = "" if until is None else f" until {until}"
    if reply.bans and reply.bans[0].until == until:
        typer.echo(f"{network} was turned away{ending} already.")
        return
    before = ""
    if reply.bans:
        was = reply.bans[0].until
        before = f" (it was until {was})" if was is not None else " (it was for good)"
    held = Bans(_listed(db))
    typer.echo(
        f"Turned {network} away{ending}{before}{ended_note(reply.ended)}; "
        f"`trio-chat bans remove {network}` lets it in again{_but_for(network, held)}"
        f"{_wider(network, held)}."
    )
    every = ipaddress.ip_network(network)
    if every.prefixlen == 0:
        typer.echo(
            f"Note: that is every IPv{every.version} address; nobody can connect over "
            f"IPv{every.version} {'until it is removed' if until is None else ending.strip()}.",
            err=True,
        )


@bans_app.command("remove")
def remove_command(address: NetworkArgument, db: DatabaseOption = None) -> None:
    """Let a network turned away in again (give it as "bans list" shows it)."""
    network = _network(address)
    reply = _change(db, "unban", network)
    held = Bans(_listed(db))
    still = _wider(network, held)
    if reply.bans:
        if still:
            typer.echo(f"Lifted the ban on {network}{still}.")
        else:
            typer.echo(f"Let {network} in again{_inside(network, held)}.")
    elif still:
        typer.echo(f"{network} was not turned away by itself{still}.")
    else:
        typer.echo(f"{network} was not turned away; nothing to let in again.")


def _listed(db: DatabaseOption) -> list[BanRecord]:
    """Every ban in force, the running daemon's or the stopped one's."""
    database = db or default_database()
    reply = ask_daemon(database, Request("bans"))
    if reply is not None:
        return reply.bans
    with stopped_daemons_store(database) as store:
        return Bans(store.bans()).in_force(_now())


def _network(address: str) -> str:
    try:
        return network_name(address)
    except ValueError as error:
        raise fail(str(error), ExitCode.USAGE) from None


def _change(
    db: DatabaseOption,
    action: Literal["ban", "unban"],
    network: str,
    until: str | None = None,
) -> Reply:
    """Ask the running daemon to ban (until `until`) or unban `network`; stopped, change
    its database. The reply's `bans` holds the network's ban if there was one in force."""
    database = db or default_database()
    reply = ask_daemon(database, Request(action, network, until=until))
    if reply is not None:
        return reply
    with stopped_daemons_store(database) as store:
        wall = _now()
        was = Bans(store.bans()).get(network, wall)
        change = ban_change(was, network, action == "ban", until, wall)
        if change is not None:
            store.write([change])
    return Reply(True, bans=[] if was is None else [was])
