"""What stands between a password guess and the hash that checks it.

Every password check is counted before it starts, against three allowances:

- **the address** (the client's IP): at most `checks_per_address` checks queued or running
  at once (more are answered `busy`, to be sent again shortly), and after
  `login_free_failures` failures a doubling delay (`throttled`). A check in flight counts
  as a failure until it is known not to be one, so sending many guesses at once buys
  nothing over sending them one by one.
- **the account at that address**: the same failure rule, so one address cannot try one
  account faster than the documented allowance whatever else it does.
- **the account**: its failures from every address add up to a doubling delay too, but
  it applies only to addresses that have failed: an address with no failure is never
  shut out by others' guessing (an owner is not locked out of their own account), and a
  resumption ticket needs no check at all. The owner's successful login clears their
  address's record, not the account's (that would hand the guessers a fresh allowance);
  the account's is forgotten after 15 minutes without a failure.

A login for a name that has no account costs the same check (against a hash of nothing)
under the same allowances, so names cannot be tested faster than passwords.

Checks then wait in `HashQueue`: one queue per address, served round robin, at most
`hash_slots` handed to the shell's hashing threads at once and `hash_queue_limit` waiting
in all; past that, `busy`. A flood from a few addresses fills only their own queues; a
login from anywhere else is served within one round.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass

from ..limits import FailureThrottle
from .config import ServerConfig
from .effects import CheckPassword, HashPassword

PasswordWork = CheckPassword | HashPassword


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    """`busy` (send it again after `retry_after`) or `throttled` (failures)."""
    retry_after: float


BUSY_WAIT = 0.5
"""Seconds a `busy` answer asks the client to wait before it sends the request again."""
BUSY = Refusal("busy", BUSY_WAIT)
BUSY_MESSAGE = "The daemon is busy checking passwords; this is sent again in a moment."
ACCOUNT_FAILURES_FORGOTTEN = 15 * 60.0
"""Seconds without a failed login after which an account's failures are forgotten."""


class LoginGuard:
    """The allowances above; `admit` counts a check in, `finish` counts it out."""

    def __init__(self, config: ServerConfig) -> None:
        throttle = (config.login_free_failures, config.login_delay, config.login_delay_max)
        capacity = config.tracked_addresses
        self._address = FailureThrottle(*throttle, capacity=capacity)
        self._pair = FailureThrottle(*throttle, capacity=capacity)
        # No success clears an account's record (the owner's login would hand the guessers
        # a fresh allowance): it is forgotten after a quiet spell instead.
        self._account = FailureThrottle(
            *throttle, capacity=capacity, forget_after=ACCOUNT_FAILURES_FORGOTTEN
        )
        self._per_address = config.checks_per_address
        self._in_flight: OrderedDict[Hashable, int] = OrderedDict()

    def admit(self, ip: str, account: str, now: float) -> Refusal | None:
        """Count a check for `account` (the key of the name asked for, whether or not it has
        an account) from `ip` in, or say why not."""
        if self._in_flight.get(ip, 0) >= self._per_address:
            return BUSY
        waits = [self._address.retry_after(ip, now), self._pair.retry_after((account, ip), now)]
        if account and self._address.has_failed(ip):
            waits.append(self._account.retry_after(account, now))
        wait = max(waits)
        if wait > 0:
            return Refusal("throttled", wait)
        self._in_flight[ip] = self._in_flight.get(ip, 0) + 1
        for throttle, key in self._keys(ip, account):
            throttle.begin(key)
        return None

    def finish(self, ip: str, account: str, ok: bool, now: float) -> None:
        """A check counted in by `admit` is done: it passed, or it failed."""
        count = self._in_flight.pop(ip, 1) - 1
        if count > 0:
            self._in_flight[ip] = count
        for throttle, key in self._keys(ip, account):
            throttle.end(key)
            if not ok:
                throttle.failed(key, now)
            elif throttle is not self._account:
                throttle.succeeded(key)

    def _keys(self, ip: str, account: str) -> list[tuple[FailureThrottle, Hashable]]:
        keys: list[tuple[FailureThrottle, Hashable]] = [
            (self._address, ip),
            (self._pair, (account, ip)),
        ]
        if account:
            keys.append((self._account, account))
        return keys


class HashQueue:
    """Password work waiting for the shell's hashing threads, fair across addresses."""

    def __init__(self, slots: int, limit: int) -> None:
        self._slots = slots
        self._limit = limit
        self._running = 0
        self._waiting = 0
        self._queues: OrderedDict[str, deque[PasswordWork]] = OrderedDict()

    @property
    def full(self) -> bool:
        return self._waiting >= self._limit

    @property
    def waiting(self) -> int:
        return self._waiting

    def push(self, ip: str, work: PasswordWork) -> list[PasswordWork]:
        """Queue `work` from `ip`; return what may start now."""
        queue = self._queues.get(ip)
        if queue is None:
            queue = self._queues[ip] = deque()
        queue.append(work)
        self._waiting += 1
        return self._start()

    def done(self) -> list[PasswordWork]:
        """A piece of work came back from the shell; return what may start now."""
        self._running -= 1
        return self._start()

    def _start(self) -> list[PasswordWork]:
        started: list[PasswordWork] = []
        queues = self._queues
        while self._running < self._slots and queues:
            ip, queue = next(iter(queues.items()))
            started.append(queue.popleft())
            del queues[ip]
            if queue:
                queues[ip] = queue  # to the back of the round
            self._waiting -= 1
            self._running += 1
        return started
