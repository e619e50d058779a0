"""A simulated datagram network for sans-I/O tests: seeded loss, duplication, reordering."""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field


@dataclass
class Conditions:
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    """Share of datagrams held back by an extra random delay, so later ones overtake them."""
    delay: float = 0.005
    jitter: float = 0.002


@dataclass(order=True)
class _InTransit:
    arrival: float
    order: int
    destination: str = field(compare=False)
    data: bytes = field(compare=False)
    source: str = field(compare=False, default="")


class Network:
    """Datagrams between named endpoints, delivered by `due(now)` at their arrival time."""

    def __init__(self, seed: int, conditions: dict[str, Conditions]) -> None:
        self.random = random.Random(seed)
        self.conditions = conditions
        self._queue: list[_InTransit] = []
        self._order = 0
        self.sent = 0
        self.dropped = 0
        self.duplicated = 0

    def send(self, destination: str, data: bytes, now: float, source: str = "") -> None:
        """Send towards `destination`, under the conditions of that direction."""
        rules = self.conditions[destination]
        self.sent += 1
        if self.random.random() < rules.loss:
            self.dropped += 1
            return
        copies = 1
        if self.random.random() < rules.duplicate:
            copies = 2
            self.duplicated += 1
        for _ in range(copies):
            delay = rules.delay + self.random.random() * rules.jitter
            if self.random.random() < rules.reorder:
                delay += self.random.random() * 10 * rules.delay
            self._order += 1
            transit = _InTransit(now + delay, self._order, destination, data, source)
            heapq.heappush(self._queue, transit)

    def next_arrival(self) -> float | None:
        return self._queue[0].arrival if self._queue else None

    def due(self, now: float) -> list[tuple[str, bytes]]:
        """What has arrived by `now`: `(destination, datagram)` in order of arrival."""
        return [(destination, data) for destination, data, _source in self.arrivals(now)]

    def arrivals(self, now: float) -> list[tuple[str, bytes, str]]:
        """What has arrived by `now`, with who sent it: `(destination, datagram, source)`."""
        arrived: list[tuple[str, bytes, str]] = []
        while self._queue and self._queue[0].arrival <= now:
            item = heapq.heappop(self._queue)
            arrived.append((item.destination, item.data, item.source))
        return arrived
