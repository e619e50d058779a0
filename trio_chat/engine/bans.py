"""The networks the operator turned away (`trio-chat bans`), for good or until a time.

A banned network's first flights (`KEY_REQUEST`, `INIT`) are answered `REFUSED`
(`banned`), before any key exchange and never with more bytes than they came with; its
sessions end when it is banned, and a session that moves into it ends. Addresses are
looked up only there, never per datagram of a session, and a look-up costs one dictionary
look-up a prefix length in use, however many networks are banned, and the bans inside a
network are found by two binary searches (`inside`). A ban with an end
(`until`) stops counting at that time of the wall clock the engine is given, which then
forgets it (`take_ended`) and tells the operator so.
"""

from __future__ import annotations

import bisect
import dataclasses
import ipaddress
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from .. import wire
from ..records import BanRecord, BanSet, unix_time
from .common import iso_time

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

BANNED = "The daemon's operator turned your address away; ask them why."
BANS_NAMED = 3
"""How many bans a sentence names (`bans_named`); it counts the rest."""


def banned_sentence(until: float) -> str:
    """What a client of a network banned until Unix time `until` (`math.inf`: for good)
    is told: the time its ban ends, to the second after it."""
    try:
        ends = datetime.fromtimestamp(math.ceil(until), tz=UTC)
    except (OverflowError, ValueError, OSError):
        return BANNED  # for good, or past the year 9999: as good as for good
    return wire.BANNED_UNTIL.format(f"{ends:%Y-%m-%d %H:%M:%S} UTC")


def ban_wait(until: float, wall: float) -> float | None:
    """A refusal's `retry_after` for a ban that ends at Unix time `until` (`math.inf`:
    never, None), seen at `wall`: to the millisecond after, so that it ends by then, and a
    client says the end as the daemon's sentence does."""
    return None if until == math.inf else math.ceil((until - wall) * 1000) / 1000


def bans_named(bans: Sequence[tuple[str, str | None]], count: int | None = None) -> str:
    """`A (until T), B and C`, or `A, B, C and 7 more` of `count` bans in all (None: as
    many as given): the first `BANS_NAMED` bans by network, each with its end if it has
    one."""
    shown = [f"{net} (until {until})" if until else net for net, until in bans[:BANS_NAMED]]
    more = (len(bans) if count is None else count) - len(shown)
    if more > 0:
        shown.append(f"{more} more")
    return ", ".join(shown[:-1]) + (" and " if len(shown) > 1 else "") + shown[-1]


def still_held(wider: Sequence[tuple[str, str | None]]) -> str:
    """`; A (until T) and B still turn it away`: the wider bans that hold a network."""
    if not wider:
        return ""
    return f"; {bans_named(wider)} still turn{'s' if len(wider) == 1 else ''} it away"


def held_within(inside: Sequence[tuple[str, str | None]], count: int) -> str:
    """`; A, B, C and 7 more within it stay turned away`: the bans inside a network
    (`count` in all, `inside` the first few of them)."""
    if not count:
        return ""
    return f"; {bans_named(inside, count)} within it stay{'s' if count == 1 else ''} turned away"


def ban_change(
    before: BanRecord | None, network: str, banning: bool, until: str | None, wall: float
) -> BanSet | None:
    """The change that bans `network` until `until` (None: for good), or lifts its ban,
    made at Unix time `wall`, given its ban in force `before`; None if it is so already.
    Given again, a ban keeps when it began and takes the new end."""
    if before is None:
        if not banning:
            return None
    elif banning and before.until == until:
        return None
    created = iso_time(wall) if before is None else before.created
    return BanSet(network, banning, created, until, changed=iso_time(wall))


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
    """The banned networks, looked up by host at a wall-clock time."""

    def __init__(self, bans: Iterable[BanRecord] = ()) -> None:
        self._bans: dict[str, BanRecord] = {}
        self._by_prefix: dict[tuple[int, int], dict[int, float]] = {}
        """The banned networks' first addresses (as integers), by IP version and prefix,
        each with when its ban ends (Unix time; `math.inf`: for good)."""
        self._in_order: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        """Each IP version's banned networks as (first address, prefix length), in order:
        the networks inside one are a run of it (`inside`)."""
        self.next_end = math.inf
        """When the first ban with an end ends (Unix time; `math.inf`: none has one)."""
        for ban in bans:
            self.add(ban)

    def add(self, ban: BanRecord) -> None:
        """Ban the network `ban.network` (as `network_name` writes it), in place of any
        ban of it before."""
        network = ipaddress.ip_network(ban.network)
        if ban.network != str(network):  # one name for each network, as `covering` finds it
            ban = dataclasses.replace(ban, network=str(network))
        self._bans[ban.network] = ban
        key = (network.version, network.prefixlen)
        ends = math.inf if ban.until is None else unix_time(ban.until)
        starts = self._by_prefix.setdefault(key, {})
        first = int(network.network_address)
        replaced = starts.get(first)
        starts[first] = ends
        if replaced is None:
            bisect.insort(self._in_order[network.version], (first, network.prefixlen))
        if ends < self.next_end:
            self.next_end = ends
        elif replaced is not None and replaced == self.next_end < ends:
            self._find_next_end()  # the first to end was this one, now ending later

    def remove(self, name: str) -> None:
        ends = self._forget(name)
        if ends is not None and ends == self.next_end < math.inf:
            self._find_next_end()

    def _forget(self, name: str) -> float | None:
        """Forget the ban of the network `name`; return when it ended (None: no ban)."""
        if self._bans.pop(name, None) is None:
            return None
        network = ipaddress.ip_network(name)
        key = (network.version, network.prefixlen)
        starts = self._by_prefix[key]
        first = int(network.network_address)
        ends = starts.pop(first)
        if not starts:
            del self._by_prefix[key]
        in_order = self._in_order[network.version]
        del in_order[bisect.bisect_left(in_order, (first, network.prefixlen))]
        return ends

    def _find_next_end(self) -> None:
        """A look at every ban: only when the first to end is gone or ends later."""
        self.next_end = min(
            (ends for starts in self._by_prefix.values() for ends in starts.values()),
            default=math.inf,
        )

    def in_force(self, wall: float) -> list[BanRecord]:
        """Every ban not ended at Unix time `wall`, oldest first."""
        return [ban for ban in self._bans.values() if not ban.ended(wall)]

    def get(self, name: str, wall: float) -> BanRecord | None:
        """The ban of the network `name` itself, if it is in force at `wall`."""
        ban = self._bans.get(name)
        return None if ban is None or ban.ended(wall) else ban

    def take_ended(self, wall: float) -> list[BanRecord]:
        """Forget the bans ended at Unix time `wall`, and return them."""
        if wall < self.next_end:
            return []  # once a turn of the daemon's loop: one comparison
        ended = [ban for ban in self._bans.values() if ban.ended(wall)]
        for ban in ended:
            self._forget(ban.network)
        self._find_next_end()  # once, however many ended together
        return ended

    def banned_until(self, host: str, wall: float) -> float | None:
        """When the last ban in force at Unix time `wall` that holds the address `host`
        (as the socket gives it) ends (`math.inf`: never); None if none holds it."""
        if not self._bans:
            return None
        address = _address(host)
        if address is None:
            return None
        number, bits = int(address), address.max_prefixlen
        until: float | None = None
        for (version, prefix), starts in self._by_prefix.items():
            if version == address.version:
                shift = bits - prefix
                ends = starts.get((number >> shift) << shift)
                if ends is not None and ends > wall and (until is None or ends > until):
                    until = ends
        return until

    def covers(self, host: str, wall: float) -> bool:
        """Whether the address `host` is in a network banned at Unix time `wall`."""
        return self.banned_until(host, wall) is not None

    def banning(self, host: str, name: str) -> bool:
        """Whether the address `host` is in the network `name`."""
        address = _address(host)
        return address is not None and address in ipaddress.ip_network(name)

    def covering(self, name: str, wall: float) -> list[BanRecord]:
        """The bans in force at `wall` that hold all of the network `name` (itself
        included), widest first: a look-up a prefix length in use, as `banned_until`."""
        network = ipaddress.ip_network(name)
        kind = ipaddress.IPv4Network if network.version == 4 else ipaddress.IPv6Network
        number, bits = int(network.network_address), network.max_prefixlen
        found: list[BanRecord] = []
        for (version, prefix), starts in sorted(self._by_prefix.items()):
            if version == network.version and prefix <= network.prefixlen:
                first = (number >> (bits - prefix)) << (bits - prefix)
                ends = starts.get(first)
                ban = self._bans.get(str(kind((first, prefix))))
                if ends is not None and ends > wall and ban is not None:
                    found.append(ban)
        return found

    def inside(self, name: str, most: int) -> tuple[list[BanRecord], int]:
        """The first `most` bans (by address) of networks inside the network `name`, not
        itself, and how many there are in all: two binary searches, however many are
        banned. Bans ended but not yet forgotten (`take_ended`) count."""
        network = ipaddress.ip_network(name)
        in_order = self._in_order[network.version]
        first, last = int(network.network_address), int(network.broadcast_address)
        # Ordered by first address, then prefix: a network that starts within this one and
        # is not wider (those that start where it does come first) lies inside it.
        low = bisect.bisect_left(in_order, (first, network.prefixlen + 1))
        high = bisect.bisect_right(in_order, (last, network.max_prefixlen))
        kind = ipaddress.IPv4Network if network.version == 4 else ipaddress.IPv6Network
        shown = [self._bans[str(kind(entry))] for entry in in_order[low : min(high, low + most)]]
        return shown, max(0, high - low)
