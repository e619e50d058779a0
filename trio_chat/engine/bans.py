"""The networks the operator turned away (`trio-chat bans`).

A banned network's first flights (`KEY_REQUEST`, `INIT`) are answered `REFUSED`
(`banned`), before any key exchange and never with more bytes than they came with; its
sessions end when it is banned, and a session that moves into it ends. Addresses are
looked up only there, never per datagram of a session, and a look-up costs one set
membership test a prefix length in use, however many networks are banned.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

BANNED = "The daemon's operator turned your address away; ask them why."


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address `host` (as a socket gives it) names, IPv4 for a mapped one."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # without an IPv6 scope
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's IPv4 peer
    return address


class Bans:
    """The banned networks, looked up by host."""

    def __init__(self, bans: Iterable[tuple[str, str]] = ()) -> None:
        self._since: dict[str, str] = {}
        self._by_prefix: dict[tuple[int, int], set[int]] = {}
        """The banned networks' first addresses (as integers), by IP version and prefix."""
        for name, created in bans:
            self.add(name, created)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """Each banned network (as `network_name` writes it) and when it was banned."""
        return iter(self._since.items())

    def add(self, name: str, created: str) -> None:
        """Ban the network `name` (as `network_name` writes it), banned at `created`."""
        if name in self._since:
            return
        network = ipaddress.ip_network(name)
        self._since[name] = created
        key = (network.version, network.prefixlen)
        self._by_prefix.setdefault(key, set()).add(int(network.network_address))

    def remove(self, name: str) -> None:
        if self._since.pop(name, None) is None:
            return
        network = ipaddress.ip_network(name)
        key = (network.version, network.prefixlen)
        starts = self._by_prefix[key]
        starts.discard(int(network.network_address))
        if not starts:
            del self._by_prefix[key]

    def covers(self, host: str) -> bool:
        """Whether the address `host` (as the socket gives it) is in a banned network."""
        if not self._since:
            return False
        address = _address(host)
        if address is None:
            return False
        number, bits = int(address), address.max_prefixlen
        for (version, prefix), starts in self._by_prefix.items():
            if version == address.version:
                shift = bits - prefix
                if (number >> shift) << shift in starts:
                    return True
        return False

    def banning(self, host: str, name: str) -> bool:
        """Whether the address `host` is in the network `name`."""
        address = _address(host)
        return address is not None and address in ipaddress.ip_network(name)

    def covering(self, name: str) -> list[str]:
        """The banned networks that hold all of the network `name` (itself included)."""
        network = ipaddress.ip_network(name)
        return [
            banned
            for banned in self._since
            if (other := ipaddress.ip_network(banned)).version == network.version
            and network.subnet_of(other)  # type: ignore[arg-type]
        ]
