"""The networks the operator turned away (`trio-chat bans`).

A banned network's first flights (`KEY_REQUEST`, `INIT`) are answered `REFUSED`
(`banned`), before any key exchange and never with more bytes than they came with; its
sessions end when it is banned, and a session that moves into it ends. Addresses are
looked up only there, never per datagram of a session.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

BANNED = "The daemon's operator turned your address away; ask them why."


def network_name(text: str) -> str:
    """`text` (an address, or a network as `address/prefix`) in the one form it is kept
    in: `203.0.113.7/32`, `198.51.100.0/24`, `2001:db8::/64`. `ValueError` with a
    sentence for what is neither."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an IP address or network (such as 203.0.113.7, "
            "198.51.100.0/24 or 2001:db8::/64)."
        ) from None
    return str(network)


class Bans:
    """The banned networks, looked up by host."""

    def __init__(self, bans: Iterable[tuple[str, str]] = ()) -> None:
        self._networks: dict[str, Network] = {}
        self._since: dict[str, str] = {}
        for name, created in bans:
            self.add(name, created)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, name: str) -> bool:
        return name in self._networks

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """Each banned network (as `network_name` writes it) and when it was banned."""
        return iter(self._since.items())

    def add(self, name: str, created: str) -> None:
        """Ban the network `name` (as `network_name` writes it), banned at `created`."""
        self._networks[name] = ipaddress.ip_network(name)
        self._since.setdefault(name, created)

    def remove(self, name: str) -> None:
        self._networks.pop(name, None)
        self._since.pop(name, None)

    def covers(self, host: str, name: str | None = None) -> bool:
        """Whether the address `host` (as the socket gives it) is in a banned network, or
        in the network `name` only, if given."""
        if not self._networks:
            return False
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])  # without an IPv6 scope
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's IPv4 peer
        networks = self._networks.values() if name is None else [ipaddress.ip_network(name)]
        return any(address in network for network in networks)
