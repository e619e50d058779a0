"""Which key the daemon at an address has: fetched (`fetch_key`), proven by a handshake
(`prove_key`), checked against what was given or remembered, and remembered in
`known_servers` the first time (`trust_server`), as ssh does with `known_hosts`."""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import trio

from .client_handshake import KeyProbe, key_changed
from .client_protocol import (
    ClientConfig,
    ClientConnection,
    require_type,
)
from .client_shell import Wire, drive, open_socket, wall_offset
from .errors import Banned, KeyChanged, KeyUnproven, ServerUnreachable
from .keys import KnownServers, Trust, address_label, checked_key, parse_key
from .noise import fingerprint

ServerKey = bytes | str | None
"""A daemon's key as a caller may give it: the 32-byte key, its base64 form, its
fingerprint (`SHA256:...`, checked against the key the daemon shows), or None (trust it
on first use, remember it in `known_servers`)."""


KEY_WITHIN = 2.5
"""Seconds a daemon is given to show its key (`fetch_key`): it answers a key request at
once, without any state, so that silence this long is a daemon that is not there."""


def key_within(config: ClientConfig | None) -> float:
    """How long a client with `config` waits for a daemon's key: `KEY_WITHIN`, or its own
    timeout if that is shorter (a bot told to give up quickly does, on first contact too)."""
    return min(KEY_WITHIN, (config or ClientConfig()).timeout)


async def fetch_key(
    host: str, port: int, *, within: float = KEY_WITHIN, refused_ends: bool = False
) -> bytes:
    """Ask the daemon at `host:port` for its key: one datagram, answered or not
    `within` seconds (`ServerUnreachable`; at once on a closed port, with
    `refused_ends`). Proves nothing about who answered."""
    return (await _probe(host, port, within=within, refused_ends=refused_ends)).key


async def _probe(
    host: str, port: int, *, within: float = KEY_WITHIN, refused_ends: bool = False
) -> Trust:
    """`fetch_key`'s key, with what the daemon said of registrations (not trusted yet)."""
    where = address_label(host, port)
    probe = KeyProbe(trio.current_time(), timeout=within, where=where, refused_ends=refused_ends)
    with await open_socket(host, port) as sock:
        await drive(sock, probe, lambda: probe.done)
    if isinstance(probe.error, Banned):
        probe.error.dated(time.time())
    if probe.error is not None:
        raise probe.error
    assert probe.key is not None
    return Trust(probe.key, new=False, no_registrations=probe.no_registrations)


async def takes_no_registrations(host: str, port: int, *, within: float = KEY_WITHIN) -> bool:
    """Ask the daemon at `host:port` whether it takes registrations, before a person is
    asked for a password to register with: true if its `KEY` says it takes none, false if
    it takes them or says nothing (a daemon before the question). The key request every
    client sends first asks it (`trust_server` is told too: `Trust.no_registrations`);
    here nothing is trusted or remembered, as a `KEY` proves nothing. Raises as
    `fetch_key` does (a closed port at once)."""
    return (await _probe(host, port, within=within, refused_ends=True)).no_registrations


def where_to_trust(
    host: str, port: int, server_key: ServerKey, known_servers: Path | str | None
) -> Path | None:
    """Check the types of the arguments that say where the daemon is and which key it
    has (`TypeError`, naming the argument); a `known_servers` given as text is a path."""
    require_type("host", host, str)
    require_type("port", port, int)
    if server_key is not None:
        require_type("server_key", server_key, (str, bytes))
    if known_servers is not None:
        require_type("known_servers", known_servers, (Path, str))
        return Path(known_servers)
    return None


async def trust_server(
    host: str,
    port: int,
    server_key: ServerKey = None,
    *,
    known_servers: Path | None = None,
    within: float = KEY_WITHIN,
    probe: bool = False,
    remember: bool = True,
    refused_ends: bool = False,
    config: ClientConfig | None = None,
) -> Trust:
    """The key to use for the daemon at `host:port` (see `ServerKey`).

    A key given, or one remembered, is used as it is (the handshake proves it); with
    `probe`, the daemon is asked anyway, which tells at once (within `within` seconds)
    whether it answers and whether it shows another key. A fingerprint given is checked
    against the key the daemon shows. With neither, the daemon's key is fetched, proven
    by a handshake (`prove_key`, with `config`'s timeout), trusted and remembered: `Trust.new`
    says so. Raises `KeyChanged` for a key that does not match (`KeyUnproven` for one
    not proven), `ServerUnreachable` for silence, and `KeyFileError` (not a `ChatError`: this
    side's own) for a `server_key` that cannot be a key or a `known_servers` that cannot
    be read or written. Without `remember`, a key met for the first time is not
    remembered (`trio-chat ping`); with `refused_ends`, a closed port is `ServerUnreachable`
    at once. `Trust.no_registrations`: the daemon asked showed its key saying it takes no
    registrations (never set when it was not asked).
    """
    where = address_label(host, port)
    fetch = functools.partial(_probe, within=within, refused_ends=refused_ends)
    given: bytes | str | None = None
    if isinstance(server_key, str):
        given = parse_key(server_key)
    elif server_key is not None:
        given = checked_key(server_key)
    known = KnownServers(known_servers)
    if isinstance(given, str):
        shown = await fetch(host, port)
        if shown.fingerprint != given:
            raise KeyChanged(
                f"The daemon at {where} has the key {shown.fingerprint}, not {given}; "
                "check the address, or the fingerprint you were given."
            )
        return shown
    expected = given if given is not None else known.get(host, port)
    if expected is not None:
        if probe:
            shown = await fetch(host, port)
            if shown.key != expected:
                raise key_changed(where, expected, shown.key)
            return shown
        return Trust(expected, new=False)
    shown = await fetch(host, port)
    if remember:
        # A `KEY` is not authenticated: anyone who gets a datagram to this client first
        # could plant one, to be refused ever after. Kept only once a handshake proves
        # the daemon holds it.
        await prove_key(host, port, shown.key, config)
        known.remember(host, port, shown.key)
    return dataclasses.replace(shown, new=True)


async def prove_key(host: str, port: int, key: bytes, config: ClientConfig | None = None) -> None:
    """Open a channel (no login) to the daemon at `host:port` with `key`, within
    `config`'s timeout, and close it; raise why it could not be opened: `KeyUnproven` if
    the handshake was answered with another key (a daemon answers one it cannot read
    with its own: the first came from someone else), `ServerUnreachable` if it went
    unanswered, else the refusal (`Busy`, `Banned`, ...)."""
    where = address_label(host, port)
    config = dataclasses.replace(config or ClientConfig(), reconnect=False)
    connection = ClientConnection(key, config=config, where=where)
    connection.wall_offset = wall_offset()
    connection.start(trio.current_time())
    with await open_socket(host, port) as sock:
        await drive(sock, connection, lambda: connection.ready or connection.closed)
        failure = connection.failure
        connection.close()  # the channel proved the key: goodbye
        Wire(sock).send(connection)
    if isinstance(failure, KeyChanged):
        raise KeyUnproven(
            f"The daemon at {where} showed the key {fingerprint(key)} and then answered the "
            "handshake with another (someone on the way may have answered in its place); "
            "nothing was remembered: try again, and compare the fingerprint shown with the "
            "one its operator publishes."
        )
    if isinstance(failure, ServerUnreachable):
        raise ServerUnreachable(
            f"trio-chat at {where} showed its key but did not answer a handshake under it; "
            "nothing was remembered: try again, and check that `trio-chat serve` runs there."
        )
    if failure is not None:
        raise failure
