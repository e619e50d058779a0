"""The order in which the daemon takes handshakes: a few per turn, after everything else.

An `INIT` costs the daemon a key pair and two Diffie-Hellman operations (0.15 ms of CPU
here, measured by `scripts/noise_speed.py`, more on a busy machine); a datagram of a
session costs a few microseconds. Taken in the order they arrive, a burst of 200 logins
would hold every chat datagram behind it for 30 ms or more. So the receive loop puts
`INIT`s aside here and answers a few per turn, once the turn's other datagrams are done;
a client waits a little longer for its channel, the room does not wait for it.

The backlog is bounded: past it, `INIT`s are taken as they come, as before (under a
flood of spoofed ones the daemon answers with cheap `RETRY`s anyway), so nothing is
dropped here and no one's handshake waits behind an unbounded queue.
"""

from __future__ import annotations

from collections import deque
from typing import Final, Generic, TypeVar

from . import wire

A = TypeVar("A")

PER_TURN: Final = 4
"""`INIT`s answered per turn of the receive loop (about 0.6 ms of work)."""
BACKLOG: Final = 512
"""`INIT`s set aside at most; past it they are answered at once."""


class HandshakeQueue(Generic[A]):
    """`INIT`s set aside for later turns, oldest first."""

    def __init__(self, per_turn: int = PER_TURN, backlog: int = BACKLOG) -> None:
        self.per_turn = per_turn
        self.backlog = backlog
        self._waiting: deque[tuple[bytes, A]] = deque()

    def __len__(self) -> int:
        return len(self._waiting)

    def defer(self, data: bytes, address: A) -> bool:
        """Set the datagram aside if it is an `INIT` and there is room; whether it was."""
        if data[:1] != _INIT or len(self._waiting) >= self.backlog:
            return False
        self._waiting.append((data, address))
        return True

    def turn(self) -> list[tuple[bytes, A]]:
        """The `INIT`s to answer this turn."""
        waiting = self._waiting
        return [waiting.popleft() for _ in range(min(self.per_turn, len(waiting)))]


_INIT: Final = bytes((wire.INIT,))
