"""The room: who is in it, how a frame reaches them, what they missed.

`Fanout` is the interface the engine talks to. `LocalRoom` keeps everyone in this
process; a room shared by several daemons would implement the same methods over a
message bus and deliver to its local sessions the same way.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from typing import Protocol

from .records import Message

Deliver = Callable[[int, bytes, Hashable | None], None]
"""Hand an encoded frame to one session: `(session_id, frame, ack_tag)`."""


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
        deliver = self._deliver
        for session_id, account_id in self._sessions.items():
            if session_id != exclude and account_id != except_account:
                deliver(session_id, frame, None)

    def broadcast_run(
        self, frames: Sequence[bytes], batched: Sequence[bytes], except_accounts: Collection[int]
    ) -> None:
        deliver, batches = self._deliver, self._batches
        for session_id, account_id in self._sessions.items():
            if account_id in except_accounts:
                continue
            for frame in batched if session_id in batches else frames:
                deliver(session_id, frame, None)

    def to_account(
        self, account_id: int, frame: bytes, tag: Hashable | None = None, exclude: int | None = None
    ) -> int:
        sessions = self._by_account.get(account_id, ())
        for session_id in sessions:
            if session_id != exclude:
                self._deliver(session_id, frame, tag)
        return len(sessions)

    def online(self) -> list[str]:
        return sorted(self._names.values(), key=str.casefold)

    @property
    def accounts_online(self) -> int:
        return len(self._by_account)


class HistoryWindow:
    """The newest messages in memory: what a new session is shown, and resend detection."""

    def __init__(self, size: int, recent: Iterable[Message] = (), public_count: int = 0) -> None:
        self._public: deque[Message] = deque(maxlen=size)
        self._recent: deque[Message] = deque()
        self._by_cid: dict[tuple[int, str], Message] = {}
        self._size = size
        recent = list(recent)
        self.public_count = public_count - sum(1 for m in recent if not m.private)
        # Ids up to these may be those of messages the window no longer holds (public
        # ones, and private ones), so that a resume is told of a cut only when there is one: ids
        # have gaps (private messages, messages that could not be stored).
        older = recent[0].id - 1 if recent else 0
        self._public_forgotten = older if self.public_count > 0 else 0
        self._recent_forgotten = older
        for message in recent:
            self.add(message)

    def add(self, message: Message) -> None:
        if not message.private:
            if self._public and len(self._public) == self._public.maxlen:
                self._public_forgotten = self._public[0].id
            self._public.append(message)
            self.public_count += 1
        if message.cid is not None:
            self._recent.append(message)
            self._by_cid[(message.sender_id, message.cid)] = message
            if len(self._recent) > self._size:
                old = self._recent.popleft()
                if old.private:  # a public one is `_public`'s to count
                    self._recent_forgotten = old.id
                assert old.cid is not None
                self._by_cid.pop((old.sender_id, old.cid), None)

    def forget(self, message: Message) -> None:
        """Take out a message that could not be stored."""
        if message in self._public:
            self._public.remove(message)
            self.public_count -= 1
        if message in self._recent:
            self._recent.remove(message)
        if message.cid is not None:
            self._by_cid.pop((message.sender_id, message.cid), None)

    def find(self, sender_id: int, cid: str) -> Message | None:
        """A message this sender already sent with this client id, if it is recent."""
        return self._by_cid.get((sender_id, cid))

    def latest(self, count: int) -> tuple[list[Message], bool]:
        """The newest `count` public messages, and whether older ones exist."""
        shown = list(self._public)[-count:] if count > 0 else []
        return shown, self.public_count > len(shown)

    def after(self, since: int, limit: int) -> tuple[list[Message], bool]:
        """Public messages newer than `since` (at most `limit`), and whether some were cut."""
        newer = [m for m in self._public if m.id > since]
        # The window forgot its oldest messages; some of them may be newer than `since`.
        # (It may hold no public message at all: a restart loads the newest messages,
        # and they may all be private.)
        return newer[-limit:], len(newer) > limit or self._public_forgotten > since

    def private_after(self, account_id: int, since: int, limit: int) -> tuple[list[Message], bool]:
        """Private messages to or from an account newer than `since` (at most `limit`,
        the newest), and whether some were cut: what its other sessions had meanwhile."""
        newer: list[Message] = []
        for message in reversed(self._recent):
            if message.id <= since:
                break
            if message.private and account_id in (message.sender_id, message.recipient_id):
                newer.append(message)
        newer.reverse()
        return newer[-limit:], len(newer) > limit or self._recent_forgotten > since


class Mailbox:
    """Private messages that no session of their recipient has acknowledged yet."""

    def __init__(self, undelivered: Iterable[Message] = ()) -> None:
        self._boxes: dict[int, dict[int, Message]] = {}
        for message in undelivered:
            self.add(message)

    def add(self, message: Message) -> None:
        assert message.recipient_id is not None
        self._boxes.setdefault(message.recipient_id, {})[message.id] = message

    def take_out(self, account_id: int, message_id: int) -> bool:
        """Take a message out (delivered, or never stored); False if it was already out."""
        box = self._boxes.get(account_id)
        if box is None or box.pop(message_id, None) is None:
            return False
        if not box:
            del self._boxes[account_id]
        return True

    def waiting(self, account_id: int) -> list[Message]:
        return sorted(self._boxes.get(account_id, {}).values(), key=lambda m: m.id)

    def count(self, account_id: int) -> int:
        return len(self._boxes.get(account_id, ()))
