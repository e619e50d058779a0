"""Private messages waiting for their recipient: counted for every account, in memory
for the accounts someone is logged in to, read from the disk when one logs in.

`Mailbox` keeps the counts and the messages in memory. `MailboxReads` keeps the reads
under way and what waits for them: a session whose account's unread messages are on disk
only enters once they are read (`Chat.enter`), and until then what it would have been
sent as it entered waits with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..records import Message
from .effects import JobTable, LoadMailbox

Entering = tuple[int, int | None, bool]
"""A session waiting for its account's read: its sid, the `since` of its login, and
whether it comes back (`back`)."""


class Mailbox:
    """Private messages that no session of their recipient has acknowledged yet.

    Every account's count is kept, but the messages themselves only for the accounts
    that are loaded (someone is logged in to them: `load`), and, until they are on disk,
    for the others: an account that stays away costs a number, not its unread messages.
    Its messages are read from the database when it logs in again.
    """

    def __init__(self, counts: Iterable[tuple[int, int]] = ()) -> None:
        self._counts: dict[int, int] = {account: n for account, n in counts if n > 0}
        self._boxes: dict[int, dict[int, Message]] = {}
        self._loaded: set[int] = set()

    def add(self, message: Message) -> None:
        account = message.recipient_id
        assert account is not None
        self._boxes.setdefault(account, {})[message.id] = message
        self._counts[account] = self._counts.get(account, 0) + 1

    def stored(self, message: Message, *, keep: bool) -> None:
        """`message` is on disk: an account not loaded no longer needs it in memory
        (unless `keep`: it is being loaded)."""
        account = message.recipient_id
        if account is None or keep or account in self._loaded:
            return
        box = self._boxes.get(account)
        if box is not None and box.pop(message.id, None) is not None and not box:
            del self._boxes[account]

    def take_out(self, account_id: int, message_id: int) -> bool:
        """Take a message out (delivered, or never stored); False if it was already out
        (or, for an account not loaded, was never in memory)."""
        box = self._boxes.get(account_id)
        if box is None or box.pop(message_id, None) is None:
            return False
        if not box:
            del self._boxes[account_id]
        left = self._counts.get(account_id, 1) - 1
        if left > 0:
            self._counts[account_id] = left
        else:
            self._counts.pop(account_id, None)
        return True

    def needs_loading(self, account_id: int) -> bool:
        """Whether some of the account's messages may be on disk only."""
        if account_id in self._loaded:
            return False
        if self._counts.get(account_id, 0) <= len(self._boxes.get(account_id, ())):
            self._loaded.add(account_id)  # all of them in memory: nothing to read
            return False
        return True

    def load(self, account_id: int, read: Iterable[Message]) -> None:
        """The account's messages as read from the disk, beside those in memory (and
        counted again: should the count and the disk differ, the disk is right)."""
        box = self._boxes.setdefault(account_id, {})
        for message in read:
            box.setdefault(message.id, message)
        self._counts[account_id] = len(box)
        if not box:
            del self._boxes[account_id]
            del self._counts[account_id]
        self._loaded.add(account_id)

    def unload(self, account_id: int, keep: Callable[[Message], bool]) -> None:
        """No one is logged in to the account: keep its count, and of its messages only
        those `keep` says (the ones not on disk yet)."""
        self._loaded.discard(account_id)
        box = self._boxes.pop(account_id, None)
        if box:
            kept = {i: m for i, m in box.items() if keep(m)}
            if kept:
                self._boxes[account_id] = kept

    def forget(self, account_id: int) -> None:
        """The account was removed: what waited for it is gone, from the disk too."""
        self._counts.pop(account_id, None)
        self._boxes.pop(account_id, None)
        self._loaded.discard(account_id)

    def waiting(self, account_id: int) -> list[Message]:
        return sorted(self._boxes.get(account_id, {}).values(), key=lambda m: m.id)

    def count(self, account_id: int) -> int:
        return self._counts.get(account_id, 0)

    def in_memory(self) -> int:
        """How many messages are kept in memory, all accounts together."""
        return sum(len(box) for box in self._boxes.values())


class MailboxReads:
    """The mailbox reads under way, the sessions waiting for them, and what waits with
    those sessions."""

    def __init__(self, jobs: JobTable[int]) -> None:
        self._jobs = jobs
        self._loading: dict[int, int] = {}
        """Account -> the job reading its mailbox from the disk."""
        self._entering: dict[int, list[Entering]] = {}
        """Account -> the sessions waiting for that read to enter."""
        self._held: dict[int, list[bytes]] = {}
        """Session -> the answers to its messages, sent after its history: a client
        resumes from the newest id it was answered with, which must not pass messages its
        history is still to show it (were the session lost before its history came, they
        would never be)."""
        self._missed: dict[int, list[Message]] = {}
        """Session -> the private messages of another session of its account (sent, or
        notes to itself) stored meanwhile, which it would have been shown had it entered:
        shown in its history."""
        self._marked_meanwhile: dict[int, set[int]] = {}
        """Job -> the deliveries marked on disk since it was handed out: it may have found
        them waiting (a delivery whose mark the disk refused goes with the next mark,
        anyone's, which may reach the disk while the read runs)."""
        self.marking: set[int] = set()
        """Private messages delivered whose mark is not on disk yet (or never will be,
        let go of after the disk refused it): a read meanwhile still finds them waiting,
        and must not show them again."""

    def wait(self, account_id: int, entering: Entering) -> LoadMailbox | None:
        """A session waits for its account's read: the read to hand out, if it is the
        first to."""
        self._entering.setdefault(account_id, []).append(entering)
        sid = entering[0]
        self._held[sid] = []
        self._missed[sid] = []
        if account_id in self._loading:
            return None
        job = self._jobs.add(account_id)
        self._loading[account_id] = job
        self._marked_meanwhile[job] = set()
        return LoadMailbox(job, account_id)

    def reading(self, account_id: int) -> bool:
        return account_id in self._loading

    def wanted(self, job: int) -> bool:
        """Whether the read of `job` is still waited for (a session of its account is
        still there to enter)."""
        account_id = self._jobs.peek(job)
        return account_id is not None and self._loading.get(account_id) == job

    def done(
        self, job: int, messages: Iterable[Message]
    ) -> tuple[int, list[Message], list[Entering]] | None:
        """The read of `job` came back: its account, what it found that still waits, and
        the sessions to let in; None if nobody waits for it any more."""
        account_id = self._jobs.pop(job)
        marked = self._marked_meanwhile.pop(job, set())
        if self._loading.get(account_id) != job:
            return None
        del self._loading[account_id]
        gone = self.marking | marked
        found = [message for message in messages if message.id not in gone]
        return account_id, found, self._entering.pop(account_id, [])

    def logged_out(self, account_id: int) -> None:
        """No session of the account is left: its read, if any, is waited for no more."""
        job = self._loading.pop(account_id, None)
        if job is not None:
            self._marked_meanwhile.pop(job, None)
        self._entering.pop(account_id, None)

    def left(self, sid: int) -> None:
        self._held.pop(sid, None)
        self._missed.pop(sid, None)

    def entered(self, sid: int) -> tuple[list[Message], list[bytes]]:
        """A session enters: what its account sent meanwhile, for its history, and the
        answers held for after it."""
        return self._missed.pop(sid, []), self._held.pop(sid, [])

    def hold(self, sid: int, frame: bytes) -> bool:
        """Keep an answer for after the session's history, if it waits for one."""
        held = self._held.get(sid)
        if held is None:
            return False
        held.append(frame)
        return True

    def hold_for_all(self, frame: bytes) -> None:
        """What every waiting session is told after the answers it has held (a removal)."""
        for held in self._held.values():
            held.append(frame)

    def sent(self, message: Message, sender_sid: int) -> None:
        """A private message of an account is stored: its sessions still waiting (but
        the one that sent it) are shown it in their history."""
        for sid, _since, _back in self._entering.get(message.sender_id, ()):
            missed = self._missed.get(sid)
            if missed is not None and sid != sender_sid:
                missed.append(message)

    def delivered(self, message_ids: Iterable[int]) -> None:
        self.marking.update(message_ids)

    def marked(self, message_ids: Iterable[int]) -> None:
        """These deliveries are on disk."""
        ids = tuple(message_ids)
        self.marking.difference_update(ids)
        for meanwhile in self._marked_meanwhile.values():
            meanwhile.update(ids)
