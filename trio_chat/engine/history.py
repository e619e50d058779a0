"""What the room remembers in memory: its newest messages.

`HistoryWindow` answers a new session's history and a resume, and recognises a message
sent again. The database holds them for good; this is what the engine looks at while it
runs. (The private messages waiting for their recipient are `mailbox`'s.)
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable

from ..records import Message


class HistoryWindow:
    """The newest messages in memory: what a new session is shown, and resend detection."""

    def __init__(self, size: int, recent: Iterable[Message] = (), public_count: int = 0) -> None:
        self._public: deque[Message] = deque(maxlen=size)
        self._recent: deque[Message] = deque()
        self._by_cid: dict[tuple[int, str], Message] = {}
        self._removed: set[int] = set()
        """Accounts removed while the daemon runs: the private messages sent to them
        are shown to nobody (`forget_received`)."""
        self._size = size
        recent = list(recent)
        self.public_count = public_count - sum(1 for m in recent if not m.private)
        # Ids up to these may be those of messages the window no longer holds (public
        # ones, and private ones), so that a resume is told of a cut only when there is one: ids
        # have gaps (private messages, messages that could not be stored).
        older = recent[0].id - 1 if recent else 0
        self.complete = len(recent) < size
        """Whether every message stored is here (none forgotten): a `cid` of the sender's
        that `find` does not know is new."""
        self._public_forgotten = older if self.public_count > 0 else 0
        # A start loads the newest `size` messages: with fewer, none was left on disk.
        self._recent_forgotten = 0 if self.complete else older
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
                self.complete = False
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

    def unsay(self, message_id: int) -> None:
        """Leave the room's message `message_id` out from now on (the operator removed
        it). A resend of it is still known by its `cid`: its sender is answered as ever,
        and it is not taken anew."""
        for message in self._public:
            if message.id == message_id:
                self._public.remove(message)
                self.public_count -= 1
                return
        self.public_count = max(0, self.public_count - 1)  # older: only counted

    def forget_received(self, account_id: int) -> None:
        """The account was removed, and the private messages sent to it deleted: history
        leaves them out. A resend of one is still known by its `cid` while it is recent:
        its sender is answered as ever, and it is not taken anew (for an account given
        the name since). Their text is not kept."""
        self._removed.add(account_id)
        for at, message in enumerate(self._recent):
            if message.private and message.recipient_id == account_id:
                blank = dataclasses.replace(message, text="")
                self._recent[at] = blank
                assert message.cid is not None
                self._by_cid[(message.sender_id, message.cid)] = blank

    @property
    def public_known_from(self) -> int:
        """The public messages from this id on are all here."""
        return self._public_forgotten + 1

    @property
    def private_known_from(self) -> int:
        """The private messages from this id on are all here."""
        return self._recent_forgotten + 1

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
            if message.recipient_id in self._removed:
                continue  # deleted with its recipient
            if message.private and account_id in (message.sender_id, message.recipient_id):
                newer.append(message)
        newer.reverse()
        return newer[-limit:], len(newer) > limit or self._recent_forgotten > since
