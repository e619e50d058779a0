"""The limits that slow down abuse: pure rate limiters, with time passed in.

Nothing here reads the clock: each limiter takes `now` like the rest of the core.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """`burst` actions at once, then `rate` per second (the spirit of ergo's fakelag)."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float) -> float:
        """Spend one token: 0.0 if allowed, else the seconds until one is available."""
        wait = self.wait(now)
        if wait == 0.0:
            self.tokens -= 1.0
        return wait

    def wait(self, now: float) -> float:
        """Seconds until a token is available (0.0: one is), spending nothing."""
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
        if now > self.stamp:  # a clock that steps back earns nothing, then or later
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) / self.rate if self.rate > 0 else float("inf")

    def full(self, now: float) -> bool:
        """Whether it has every token again: it is then as good as a new one."""
        if self.tokens < 0:
            return True
        return self.tokens + max(0.0, now - self.stamp) * self.rate >= self.burst


class KeyedBuckets:
    """One token bucket per key (a source address, say), at most `capacity` remembered.

    A bucket that has every token again is as a new one: the least recently used is
    forgotten once it is, so that only the keys that acted lately are kept.
    """

    def __init__(self, rate: float, burst: float, capacity: int = 65536) -> None:
        self.rate, self.burst, self.capacity = rate, burst, capacity
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def take(self, key: Hashable, now: float) -> float:
        buckets = self._buckets
        bucket = buckets.pop(key, None) or TokenBucket(self.rate, self.burst)
        if buckets:
            oldest = next(iter(buckets.values()))
            if len(buckets) >= self.capacity or oldest.full(now):
                buckets.popitem(last=False)
        buckets[key] = bucket
        return bucket.take(now)

    def __len__(self) -> int:
        return len(self._buckets)

    def wait(self, key: Hashable, now: float) -> float:
        """Seconds until `key` may act (0.0: now), spending nothing."""
        bucket = self._buckets.get(key)
        return 0.0 if bucket is None else bucket.wait(now)


class FailureThrottle:
    """After `free` failures in a row, each attempt waits `base * 2**(n - free)` seconds
    (with `free` 0, as with 1: `base` after the first failure).

    Keyed by account or by source address; a success clears the key. Attempts begun and
    not yet judged (`begin`, `end`) count as failures until they are: sending many at
    once gets no further than sending them one by one. The wait is capped at `cap`; at
    most `capacity` keys are remembered (the oldest are forgotten first).
    """

    def __init__(
        self,
        free: int = 3,
        base: float = 1.0,
        cap: float = 60.0,
        capacity: int = 65536,
        forget_after: float = math.inf,
    ) -> None:
        self.free, self.base, self.capacity = free, base, capacity
        self.cap = max(cap, base)
        """The longest delay: a first delay longer than `cap` is kept whole, not cut down."""
        self._first = max(free, 1)
        """Failures after which the first delay (`base`) comes: with none free, after the
        first (there is no failure before it for a delay to run from)."""
        self.forget_after = forget_after
        """Failures this long past are forgotten (for keys no success clears)."""
        self._failures: OrderedDict[Hashable, tuple[int, float]] = OrderedDict()
        self._pending: dict[Hashable, int] = {}

    def _record(self, key: Hashable, now: float) -> tuple[int, float]:
        count, last = self._failures.get(key, (0, 0.0))
        if count and now - last >= self.forget_after:
            return 0, 0.0
        return count, last

    def retry_after(self, key: Hashable, now: float) -> float:
        """Seconds before another attempt for `key` is allowed (0.0: go ahead)."""
        count, last = self._record(key, now)
        pending = self._pending.get(key, 0)
        if count + pending < self.free:
            return 0.0
        wait = max(0.0, last + self._delay(count) - now) if count >= self._first else 0.0
        if pending:
            # Those in flight count as failures until they are judged: the delay after
            # them all, which runs from the last of them, now at the earliest.
            wait = max(wait, self._delay(count + pending))
        return wait

    def _delay(self, failures: int) -> float:
        """The delay after `failures` failures (at least `free`, and at least one)."""
        # It reaches the cap long before 2**n outgrows a float (n of 1024 would raise
        # OverflowError): a thousand failures are no more than the cap.
        return float(min(self.cap, self.base * 2 ** min(failures - self._first, 64)))

    def has_failed(self, key: Hashable) -> bool:
        """Whether `key` has failures on record (since its last success)."""
        return key in self._failures

    def begin(self, key: Hashable) -> None:
        self._pending[key] = self._pending.get(key, 0) + 1

    def end(self, key: Hashable) -> None:
        count = self._pending.pop(key, 1) - 1
        if count > 0:
            self._pending[key] = count

    def failed(self, key: Hashable, now: float) -> None:
        count, _last = self._record(key, now)
        self._failures.pop(key, None)
        self._failures[key] = (count + 1, now)
        if len(self._failures) > self.capacity:
            self._failures.popitem(last=False)

    def succeeded(self, key: Hashable) -> None:
        self._failures.pop(key, None)


class RecentKeys:
    """Keys seen in the last `memory` seconds (at most `capacity`, the oldest forgotten)."""

    def __init__(self, capacity: int, memory: float) -> None:
        self.capacity, self.memory = capacity, memory
        self._seen: OrderedDict[Hashable, float] = OrderedDict()

    def seen(self, key: Hashable, now: float) -> bool:
        when = self._seen.get(key)
        return when is not None and now - when < self.memory

    def add(self, key: Hashable, now: float) -> None:
        seen = self._seen
        seen[key] = now
        seen.move_to_end(key)
        while seen and (
            len(seen) > self.capacity or now - next(iter(seen.values())) >= self.memory
        ):
            seen.popitem(last=False)
