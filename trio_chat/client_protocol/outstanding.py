"""The requests a connection made that the daemon has not answered yet.

Kept in the order they were made, found by the sequence number of each copy sent (an
answer names it) and a message's by its `cid` (the daemon's copy of it, stored before a
session was lost, answers it). Requests refused as too fast wait here to go again: a
question alone, when the daemon said; a message with every message and question made
after it, in order. What is sent, and when, is the connection's.
"""

from __future__ import annotations

from collections.abc import Iterator

from .requests import Handle

QUESTIONS = frozenset({"who", "history", "raw"})
"""Requests answered in parts, then an `ok`: the questions (`who`, `history`), and any
frame sent as bytes (`raw`, for tests and tools), which may be one."""
IN_TURN = frozenset({"say", "whisper"}) | QUESTIONS
"""Requests answered in the order they were made: a message refused as too fast holds
back those after it (the daemon holds the messages, the client the questions)."""
TAKES_NAMES = frozenset({"who", "raw"})
"""Requests answered in parts that may be names (a `names` frame)."""
TAKES_MESSAGES = frozenset({"history", "raw"})
"""Requests answered in parts that may be messages (`msg` and `pm` frames naming them)."""
WHO_NAMES_MAX = 100_000
"""The most names an answer to `who` may hold (five times the daemon's default
`max_connections`): past it, the answer is a `ProtocolError`, not memory without end."""


class Outstanding:
    """See the module docstring. Iterating gives the requests in the order they were made."""

    def __init__(self) -> None:
        self._requests: list[Handle] = []
        self._by_seq: dict[int, Handle] = {}
        self._by_cid: dict[str, Handle] = {}
        self._made = 0
        self._paused: list[Handle] = []
        """Messages refused as too fast, and the messages and questions after them: sent
        again together, in order, at `_paused_until`."""
        self._paused_until = 0.0
        self._asking_again: list[Handle] = []
        """Questions refused as asked too fast: each asked again alone at `_ask_again_at`
        (a question has no order to keep, and holds nothing back)."""
        self._ask_again_at = 0.0
        self._superseded: set[int] = set()
        """Numbers of copies whose answers are waited on no more: questions asked after a
        message refused as too fast, to be asked again after it. Their answers, or
        refusals, may still come; they are known, and ignored (`superseded`)."""

    def __iter__(self) -> Iterator[Handle]:
        return iter(self._requests)

    def __len__(self) -> int:
        return len(self._requests)

    def add(self, handle: Handle) -> bool:
        """Take a new request in; whether it may go now (not held behind messages refused
        as too fast)."""
        self._made += 1
        handle.order = self._made
        self._requests.append(handle)
        if handle.cid is not None:
            self._by_cid[handle.cid] = handle
        if self._paused and handle.kind in IN_TURN:
            self._paused.append(handle)  # behind the messages waiting to be resent
            return False
        return True

    def sent(self, handle: Handle) -> None:
        """A copy of `handle` went out as its `seq`: an answer naming it is its."""
        self._by_seq[handle.seq] = handle

    def answering(self, seq: int) -> Handle | None:
        """The request an answer naming `seq` answers (any copy of it sent on this channel)."""
        return self._by_seq.get(seq)

    def sent_here(self, handle: Handle) -> bool:
        """Whether `handle`'s latest copy went out on this channel."""
        return self._by_seq.get(handle.seq) is handle

    def numbers(self) -> dict[int, Handle]:
        """Every sequence number an answer is awaited under, with its request."""
        return dict(self._by_seq)

    def superseded(self, seq: int) -> bool:
        """Whether an answer naming `seq` is to a copy asked again since (and no news):
        forgotten once its last word (an `ok` or an error) has come, which this is."""
        if seq in self._superseded:
            self._superseded.discard(seq)
            return True
        return False

    def by_cid(self, cid: str) -> Handle | None:
        """The message request sent with `cid`, if it is not answered yet."""
        return self._by_cid.get(cid)

    def forget_copy(self, seq: int) -> None:
        """The answer to an earlier copy came: that number is not waited on any more."""
        del self._by_seq[seq]

    def remove(self, handle: Handle) -> None:
        """`handle` is answered (or failed): it is outstanding no more."""
        self._by_seq.pop(handle.seq, None)
        if handle.cid is not None:
            self._by_cid.pop(handle.cid, None)
        if handle in self._requests:
            self._requests.remove(handle)

    def keep_number(self, handle: Handle) -> None:
        """`handle` was answered by an earlier copy's answer; the latest copy's is still to
        come, and is known when it does, not taken for news."""
        self._by_seq[handle.seq] = handle

    def new_channel(self) -> None:
        """A new channel: no copy sent on the old one is answered, and every request not
        answered goes again (nothing waits any more for a refusal's time)."""
        self._by_seq = {}
        self._paused = []
        self._paused_until = 0.0  # a refusal on the new channel waits its own time
        self._asking_again = []
        self._ask_again_at = 0.0
        self._superseded = set()

    def too_fast(self, handle: Handle, until: float) -> None:
        """`handle` was refused as too fast, or as busy: it goes again at `until`. A question
        alone; a message with every message and question made after it, in order (the
        questions asked again then: answered now, they would tell of the room before
        it)."""
        self._by_seq.pop(handle.seq, None)
        handle.parts = []
        if handle.kind in QUESTIONS:
            self._asking_again.append(handle)
            self._ask_again_at = max(self._ask_again_at, until)
            return
        self._paused.append(handle)
        for later in self._requests:
            if later.order > handle.order and later.kind in QUESTIONS:
                if self._by_seq.pop(later.seq, None) is not None:
                    self._superseded.add(later.seq)
                later.parts = []
                if later in self._asking_again:
                    self._asking_again.remove(later)  # asked again after the message now
        self._paused_until = max(self._paused_until, until)

    def next_due(self) -> float | None:
        """When requests refused as too fast next go again, if any wait."""
        due = self._ask_again_at if self._asking_again else None
        if self._paused and (due is None or self._paused_until < due):
            due = self._paused_until
        return due

    def due(self, now: float) -> list[Handle]:
        """The requests refused as too fast that go again now, in the order to send them."""
        again: list[Handle] = []
        if self._asking_again and now >= self._ask_again_at:
            again = [handle for handle in self._asking_again if not handle.done]
            self._asking_again = []
        if self._paused and now >= self._paused_until:
            paused, self._paused = set(self._paused), []
            first = min(handle.order for handle in paused)
            # The refused requests and every message written after them, in order (as
            # the daemon's rate limit asks): one sent meanwhile may have been refused
            # too, its answer still on the way, and must not be overtaken.
            again += [
                handle
                for handle in self._requests
                if handle.order >= first
                and not handle.done
                and (handle in paused or handle.kind in IN_TURN)
            ]
        return again
