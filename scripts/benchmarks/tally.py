"""The messages the senders write, and what each receiver got of them.

Each message carries its number and its send time (`time.monotonic()`, which all the
processes share) in one word, which the seed passes through: `m<number>_<seconds>`.
Receivers keep the texts and their arrival times raw and check them after the run:
parsing while receiving would make the bench's clients slower than the servers.
"""

from __future__ import annotations

import array
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def text_for(index: int, sent: float) -> str:
    """A message body both servers carry unchanged (the seed splits on spaces)."""
    return f"m{index}_{sent:.6f}"


def parse_text(text: str | bytes) -> tuple[int, float] | None:
    """The number and send time in a message text, or None for anything else."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if not text.startswith("m"):
        return None
    number, _, sent = text[1:].partition("_")
    try:
        return int(number), float(sent)
    except ValueError:
        return None


@dataclass(slots=True)
class Tally:
    """What one receiver got, kept raw: it is checked (once each, in order) at the end."""

    texts: list[str | bytes | None] = field(default_factory=list)
    """The texts in the order they came (`count` of them; the rest is room reserved)."""
    times: array.array[float] = field(default_factory=lambda: array.array("d"))
    count: int = 0
    _newest: int = field(default=-1, init=False, repr=False)
    _newest_at: int = field(default=0, init=False, repr=False)
    """`count` when `_newest` was found: it is found again only once more has come."""

    def reserve(self, expected: int) -> None:
        """Make room for `expected` messages before they come, so that the lists never
        grow meanwhile: every receiver of a process would grow its lists at the same
        message, copying them all at once (a pause of milliseconds at 20,000 messages)."""
        room = expected - len(self.texts)
        if room > 0:
            self.texts.extend([None] * room)
            self.times.extend(array.array("d", bytes(8 * room)))

    def add(self, text: str | bytes, now: float) -> None:
        count = self.count
        if count < len(self.texts):
            self.texts[count] = text
            self.times[count] = now
        else:
            self.texts.append(text)
            self.times.append(now)
        self.count = count + 1

    def newest(self) -> int:
        """The number of the newest message received (-1 before the first).

        The closed loop asks after every wake-up of a receiving process (5-7 a round for
        the seed's), for each of its receivers: the last text is parsed once for each
        new `count`, not at every asking.
        """
        if self._newest_at != self.count:
            self._newest_at = self.count
            self._newest = self._find_newest()
        return self._newest

    def _find_newest(self) -> int:
        for index in range(self.count - 1, -1, -1):
            parsed = parse_text(self.texts[index] or "")
            if parsed is not None:
                return parsed[0]
        return -1

    def summary(self) -> dict[str, Any]:
        """Unique messages, duplicates, reorderings, and each message's delay, as bytes."""
        seen: set[int] = set()
        duplicates = reordered = 0
        newest = -1
        first_at, last_at = math.inf, 0.0
        sent, delays = array.array("d"), array.array("d")
        count = self.count
        for text, now in zip(self.texts[:count], self.times[:count], strict=True):
            parsed = parse_text(text or "")
            if parsed is None:
                continue
            index, stamp = parsed
            if index in seen:
                duplicates += 1
                continue
            seen.add(index)
            if index < newest:
                reordered += 1
            newest = max(newest, index)
            first_at = min(first_at, now)
            last_at = now
            sent.append(stamp)
            delays.append(now - stamp)
        return {
            "unique": len(seen),
            "duplicates": duplicates,
            "reordered": reordered,
            "first_at": first_at,
            "last_at": last_at,
            "sent": sent.tobytes(),
            "delays": delays.tobytes(),
        }


class Slowest:
    """The newest message every one of some tallies has: what a receiving process
    reports in the closed loop.

    Looked for again only once the tally that held it back has more: a process's other
    receivers getting theirs cannot move it. (Numbers only grow on a stream in order; a
    reordered stream is counted as such in `Tally.summary`.)
    """

    def __init__(self, tallies: Sequence[Tally]) -> None:
        if not tallies:
            raise ValueError("no tallies to follow")
        self._tallies = tallies
        self._slowest = tallies[0]
        self._seen = -1
        """The slowest tally's `count` when it was found."""
        self.newest = -1

    def update(self) -> int:
        """`newest`, brought up to date."""
        if self._slowest.count != self._seen:
            self._slowest = min(self._tallies, key=Tally.newest)
            self._seen = self._slowest.count
            self.newest = self._slowest.newest()
        return self.newest
