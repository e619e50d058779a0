"""The room: who is in it, and how a frame reaches them.

`Fanout` is the interface the engine talks to. `LocalRoom` keeps everyone in this
process; a room shared by several daemons would implement the same methods over a
message bus and deliver to its local sessions the same way.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence
from typing import Protocol


class Deliver(Protocol):
    """Hand encoded frames, in order, to one session (`tag` comes back once its client
    acknowledges them). `at_once`: a broadcast's, which hands each session its frames
    once a turn: they may be sealed and sent at once."""

    def __call__(
        self,
        sid: int,
        frames: Sequence[bytes],
        tag: Hashable | None = None,
        *,
        at_once: bool = False,
    ) -> None: ...


class Fanout(Protocol):
    def enter(self, session_id: int, account_id: int, name: str, *, batches: bool = False) -> bool:
        """Add a session; True if it is its account's first one (the account joined).
        `batches`: its client reads `msgs` frames (see `broadcast_run`)."""

    def leave(self, session_id: int, account_id: int) -> bool:
        """Remove a session; True if it was its account's last one (the account left)."""

    def broadcast(
        self, frame: bytes, exclude: int | None = None, *, except_account: int | None = None
    ) -> None:
        """Deliver to every session in the room but `exclude` and those of `except_account`."""

    def broadcast_run(
        self, frames: Sequence[bytes], batched: Sequence[bytes], except_accounts: Collection[int]
    ) -> None:
        """Deliver `frames` (messages stored together), in order, to every session but
        those of `except_accounts`: as `batched`, the same packed into `msgs` frames, to
        the sessions that read them.

        Room messages committed together come this way, not through `broadcast`: a room
        shared by several daemons publishes `frames` here, and each daemon packs them
        for its own sessions."""

    def to_account(
        self, account_id: int, frame: bytes, tag: Hashable | None = None, exclude: int | None = None
    ) -> int:
        """Deliver to every session of one account; return how many there were."""

    def online(self) -> list[str]:
        """The names of the accounts with at least one session, sorted."""

    @property
    def accounts_online(self) -> int:
        """How many accounts have at least one session."""


class LocalRoom:
    """Every session of the room lives in this process."""

    def __init__(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._sessions: dict[int, int] = {}
        self._by_account: dict[int, set[int]] = {}
        self._names: dict[int, str] = {}
        self._batches: set[int] = set()

    def enter(self, session_id: int, account_id: int, name: str, *, batches: bool = False) -> bool:
        self._sessions[session_id] = account_id
        if batches:
            self._batches.add(session_id)
        sessions = self._by_account.setdefault(account_id, set())
        sessions.add(session_id)
        self._names[account_id] = name
        return len(sessions) == 1

    def leave(self, session_id: int, account_id: int) -> bool:
        self._sessions.pop(session_id, None)
        self._batches.discard(session_id)
        sessions = self._by_account.get(account_id)
        if sessions is None:
            return False
        sessions.discard(session_id)
        if sessions:
            return False
        del self._by_account[account_id]
        del self._names[account_id]
        return True

    def broadcast(
        self, frame: bytes, exclude: int | None = None, *, except_account: int | None = None
    ) -> None:
        deliver, frames = self._deliver, (frame,)
        for session_id, account_id in self._sessions.items():
            if session_id != exclude and account_id != except_account:
                deliver(session_id, frames, at_once=True)

    def broadcast_run(
        self, frames: Sequence[bytes], batched: Sequence[bytes], except_accounts: Collection[int]
    ) -> None:
        deliver, batches = self._deliver, self._batches
        for session_id, account_id in self._sessions.items():
            if account_id not in except_accounts:
                deliver(session_id, batched if session_id in batches else frames, at_once=True)

    def to_account(
        self, account_id: int, frame: bytes, tag: Hashable | None = None, exclude: int | None = None
    ) -> int:
        sessions = self._by_account.get(account_id, ())
        frames = (frame,)
        for session_id in sessions:
            if session_id != exclude:
                self._deliver(session_id, frames, tag)
        return len(sessions)

    def online(self) -> list[str]:
        return sorted(self._names.values(), key=str.casefold)

    @property
    def accounts_online(self) -> int:
        return len(self._by_account)
