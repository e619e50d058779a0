"""What the engine asks its shell to do, as typed values, and the jobs waiting on them.

The engine never blocks: hashing a password, writing to storage, reading old history and
reading the private messages that wait for an account are handed to the shell as effects
(`ServerEngine.take_effects`). The shell does the work and reports back with the effect's
`job` number (`password_hashed`, `password_checked`, `history_loaded`, `mailbox_loaded`,
`sent_found`) or, for `Persist`, with the stored record (`committed`, `failed`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..records import StoreOp


@dataclass(frozen=True, slots=True)
class HashPassword:
    """Hash a new account's password (argon2id, slow on purpose)."""

    job: int
    password: str = field(repr=False)


NO_ACCOUNT = ""
"""The hash a `CheckPassword` carries for a name that has no account: the shell checks
the password against a hash of its own, at the same cost, and reports it wrong."""


@dataclass(frozen=True, slots=True)
class CheckPassword:
    """Check a login's password against the account's hash."""

    job: int
    password_hash: str = field(repr=False)
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Persist:
    """Commit a change; the shell reports it `committed` or `failed`."""

    op: StoreOp


@dataclass(frozen=True, slots=True)
class LoadHistory:
    """Read up to `limit` messages older than `before` that the account may see."""

    job: int
    account_id: int
    before: int | None
    limit: int


@dataclass(frozen=True, slots=True)
class LoadMailbox:
    """Read the private messages waiting for an account (delivered to none of its
    sessions), oldest first."""

    job: int
    account_id: int


@dataclass(frozen=True, slots=True)
class FindSent:
    """Read the message `sender_id` stored under `cid`, if any: a message sent again after
    more messages than the engine keeps in memory, which it would refuse if new."""

    job: int
    sender_id: int
    cid: str


Effect = HashPassword | CheckPassword | Persist | LoadHistory | LoadMailbox | FindSent

T = TypeVar("T")


class JobTable(Generic[T]):
    """What the engine remembers about each job of one kind until the shell reports back.

    Tables share one counter, so a job number names one job whatever its kind.
    """

    def __init__(self, numbers: itertools.count[int]) -> None:
        self._numbers = numbers
        self._jobs: dict[int, T] = {}

    def add(self, state: T) -> int:
        job = next(self._numbers)
        self._jobs[job] = state
        return job

    def pop(self, job: int) -> T:
        return self._jobs.pop(job)

    def peek(self, job: int) -> T | None:
        return self._jobs.get(job)

    def __len__(self) -> int:
        return len(self._jobs)
