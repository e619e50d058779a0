"""Where the daemon's writes commit: group commits, on the event loop while the disk is quick.

The engine's `Persist` effects queue here during a turn of the receive loop; at the end of
the turn everything queued commits as one transaction (group commit), and only then are
the acknowledgements and broadcasts it waited for sent.

A commit made on the event loop blocks it for the commit's duration: about a quarter of a
millisecond on a local SSD (one `fsync` of the WAL). A commit handed to a worker thread
costs far more than that once the loop is busy: CPython's GIL goes to a waiting thread
only when its holder stops for a whole switch interval, and a loop that sends and receives
without pause never does. Each of the commit's several SQLite calls then waited for the
loop to fall idle; during a flood of logins a chat message waited 15-30 ms for its commit,
against 0.3 ms on the loop.

A slow disk must not stall the loop, though: `SLOW_IN_A_ROW` commits in a row that each
take longer than `SLOW_COMMIT` send the following ones to a worker thread (where a slow
disk makes the groups larger, not the loop slower); one slow `fsync` among quick ones
does not. The loop tries again after a pause that doubles each time the disk is still
slow, up to `THREADED_AT_MOST`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import trio

from .display import counted
from .records import Message, StoreOp
from .store import Storage
from .store_files import StorageError

log = logging.getLogger(__name__)

SLOW_COMMIT = 0.004
"""Seconds: a commit on the event loop slower than this is slow."""
SLOW_IN_A_ROW = 3
"""Slow commits in a row that send the next ones to a worker thread."""
THREADED_AT_LEAST = 1.0
"""Seconds commits stay in the worker thread the first time they go there."""
THREADED_AT_MOST = 60.0
"""...doubling each time the next try on the loop is slow again, up to this."""

MAILBOX_RETRY_FIRST = 1.0
"""Seconds before a mailbox read that failed is tried again (a login waits for it)..."""
MAILBOX_RETRY_MOST = 60.0
"""...doubling each time it fails again, up to this."""

FAILURES_LOGGED_EVERY = 60.0
"""Seconds: failed commits after one that was logged are counted, then logged together."""

Report = Callable[[StoreOp], None]
Refusal = Callable[[StoreOp, Message | None], None]
"""A change that could not be stored, and for a message sent again (the same sender and
`cid`) after the daemon forgot it had it, the copy stored before."""
Written = tuple[Sequence[StoreOp], dict[int, Message]]
"""What a commit could not store, and the copies stored before of resent messages among
them (by the resent message's id)."""


class Persistence:
    """Everything the daemon reads from and writes to its storage.

    `add` queues a change; `commit_here` (at the end of a turn) commits the queue on the
    event loop, unless the disk has been slow, a commit is already in a thread, or a
    history read holds the database. Otherwise `run`, the background task, commits it in
    a worker thread. Changes commit in the order they were added; each is reported, once,
    to `committed` or `failed`.
    """

    def __init__(
        self,
        storage: Storage,
        committed: Report,
        failed: Refusal,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.storage = storage
        self._committed = committed
        self._failed = failed
        self._clock = clock
        self._queue: list[StoreOp] = []
        self._threaded_until = -float("inf")
        self._threaded_for = THREADED_AT_LEAST
        self._slow_in_a_row = 0
        self._in_thread = False
        self._writer = trio.CapacityLimiter(1)
        """The commits' worker thread: never queued behind anything else's."""
        self._reader = trio.CapacityLimiter(1)
        """One history read at a time: the rest wait their turn, in order, holding no
        thread and not the database's lock, which a commit would wait for."""
        self._reads = 0
        self._added = 0
        self._reported = 0
        """Changes added, and changes reported (committed or failed), since the start."""
        self._progress = trio.Event()
        """Set, and replaced, whenever changes are reported."""
        self._closed = False
        self._wake = trio.Event()
        self._failures_quiet_until = -float("inf")
        self._failures_unlogged = 0
        self._recovery_untold = False
        """A commit failed since the log last said the database is written."""
        self._recoveries_quiet_until = -float("inf")
        """The recoveries' own minute: the first is told at once, whatever the failures'."""
        self._unstored = 0
        self._last_error = ""
        """Changes that failed to commit since the last commit that went through, and why
        the last one failed: what the database lacks if the daemon stops now."""

    @property
    def queued(self) -> int:
        return len(self._queue)

    def add(self, op: StoreOp) -> None:
        if self._closed:
            raise RuntimeError("the storage is closing; nothing more can be written")
        self._queue.append(op)
        self._added += 1

    def commit_here(self) -> bool:
        """Commit the queue now, on the calling thread, if the disk has been quick.

        Returns whether a commit was made (its changes are reported by then). When it
        is not the moment, the background task is woken to commit in a thread instead.
        """
        if not self._queue:
            return False
        now = self._clock()
        if self._in_thread or self._reads or now < self._threaded_until:
            self._wake.set()
            return False
        batch, self._queue = self._queue, []
        written = self._write(batch)
        took = self._clock() - now  # the disk's time, not what the reports set off
        self._slow_in_a_row = self._slow_in_a_row + 1 if took > SLOW_COMMIT else 0
        if self._slow_in_a_row >= SLOW_IN_A_ROW:
            self._threaded_until = now + took + self._threaded_for
            self._threaded_for = min(2 * self._threaded_for, THREADED_AT_MOST)
            log.info(
                "commits take %.0f ms: the next ones go to a worker thread for %.0f s",
                1000 * took,
                self._threaded_until - now - took,
            )
        elif not self._slow_in_a_row:
            self._threaded_for = THREADED_AT_LEAST
        self._report(batch, written)
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit in a worker thread what `commit_here` leaves, until `close`, then drain.

        Shielded from cancellation: the daemon stops it with `close`, after which it
        commits what is still queued and returns.
        """
        with trio.CancelScope(shield=True):
            task_status.started()
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while self._queue:
                    batch, self._queue = self._queue, []
                    self._in_thread = True
                    try:
                        written = await trio.to_thread.run_sync(
                            self._write, batch, limiter=self._writer
                        )
                    finally:
                        self._in_thread = False
                    self._report(batch, written)
                if self._closed:
                    if self._failures_unlogged:
                        log.error(
                            "stopping with %d more commits failed since the line before",
                            self._failures_unlogged,
                        )
                    return

    def close(self) -> None:
        """No more changes: `run` commits what is queued, then returns."""
        self._closed = True
        self._wake.set()

    def unstored(self) -> StorageError | None:
        """Why the daemon stopped with changes not written, if the last commit failed
        (its changes and those of the failed ones just before it): a stop that needs the
        operator, though nothing acknowledged was lost (nothing unwritten is answered)."""
        if not self._unstored:
            return None
        return StorageError(
            f"Stopped, but {counted(self._unstored, 'change')} could not be written to the "
            f"database ({self._last_error}); see the errors logged above, and check the "
            "disk before starting the daemon again."
        )

    async def history(
        self, account_id: int, before: int | None, limit: int
    ) -> list[Message] | None:
        """Read history in a worker thread (the loop does not commit meanwhile); None, with
        one log line, if it cannot be read.

        The read waits until every change added before it is reported: a person who says
        something and then asks for the history sees what they said. (Committed in a
        thread, after a slow disk or beside another read, a message could otherwise
        still be on its way to the disk when this read ran.)
        """
        return await self._read("history", self.storage.history, account_id, before, limit)

    async def mailbox(
        self, account_id: int, wanted: Callable[[], bool] = lambda: True
    ) -> list[Message] | None:
        """Read the private messages waiting for an account, as `history` reads (after
        every change added before it is reported: a delivery marked is not read as
        waiting). A read that fails is tried again, after a second and then twice as long
        each time (at most a minute), for as long as `wanted()`; None once it is not."""
        delay = MAILBOX_RETRY_FIRST
        while True:
            messages = await self._read("unread messages", self.storage.mailbox, account_id)
            if messages is not None or not wanted():
                return messages
            await trio.sleep(delay)
            delay = min(2 * delay, MAILBOX_RETRY_MOST)
            if not wanted():
                return None

    async def sent(self, sender_id: int, cid: str) -> Message | None:
        """The message `sender_id` stored under `cid`, read as `history` reads; None if
        there is none, or it cannot be read (one log line)."""

        def find(sender_id: int, cid: str) -> list[Message]:
            message = self.storage.sent(sender_id, cid)
            return [] if message is None else [message]

        found = await self._read("a message sent before", find, sender_id, cid)
        return found[0] if found else None

    async def _read(
        self, what: str, read: Callable[..., list[Message]], *args: int | str | None
    ) -> list[Message] | None:
        added = self._added
        while self._reported < added:
            await self._progress.wait()
        async with self._reader:
            self._reads += 1
            try:
                return await trio.to_thread.run_sync(read, *args)
            except Exception as error:
                # One line, not a traceback, as for a failed write.
                log.error(
                    "could not read %s from the database (%s: %s)",
                    what,
                    type(error).__name__,
                    error,
                )
                return None
            finally:
                self._reads -= 1
                if self._queue:
                    self._wake.set()  # what waited for the read

    def _write(self, batch: Sequence[StoreOp]) -> Written:
        try:
            rejected = self.storage.write(batch)
        except Exception as error:
            self._write_failed(len(batch), error)
            return batch, {}
        self._unstored = 0
        self._written_again()
        # Refused as a second copy: a resend the daemon's memory no longer knew. The
        # rest is committed by now, whatever these reads meet: reported as stored.
        earlier: dict[int, Message] = {}
        try:
            for op in rejected:
                if isinstance(op, Message) and op.cid is not None:
                    stored = self.storage.sent(op.sender_id, op.cid)
                    if stored is not None:
                        earlier[op.id] = stored
        except Exception as error:
            # Those not found are told the disk failed; one line, as for a write.
            log.error(
                "could not read messages stored before from the database (%s: %s)",
                type(error).__name__,
                error,
            )
        return rejected, earlier

    def _write_failed(self, changes: int, error: Exception) -> None:
        """One line, not a traceback (a full disk is the operator's to fix), and at most
        one a minute: a failing disk fails every commit, several a second."""
        now = self._clock()
        self._recovery_untold = True
        self._unstored += changes
        # The daemon's own sentence as it is; what SQLite said with its kind.
        own = isinstance(error, StorageError)
        self._last_error = str(error) if own else f"{type(error).__name__}: {error}"
        if now < self._failures_quiet_until:
            self._failures_unlogged += 1
            return
        unlogged, self._failures_unlogged = self._failures_unlogged, 0
        self._failures_quiet_until = now + FAILURES_LOGGED_EVERY
        log.error(
            "could not write %s to the database (%s: %s)%s",
            counted(changes, "change"),
            type(error).__name__,
            error,
            f"; {unlogged} more commits failed in the minute before" if unlogged else "",
        )

    def _written_again(self) -> None:
        """A commit went through after failures: the log says so, with how many failed
        since its last line (within the same one line a minute), so that a failure is
        never the last word on a disk that works again."""
        if not self._recovery_untold:
            return
        now = self._clock()
        if now < self._recoveries_quiet_until:
            # A disk that fails and works by turns: told once the minute is over, with
            # the next commit that goes through (or the next failure's line).
            return
        unlogged, self._failures_unlogged = self._failures_unlogged, 0
        self._recovery_untold = False
        self._recoveries_quiet_until = now + FAILURES_LOGGED_EVERY
        log.warning(  # shown wherever the failure was, at --log-level warning too
            "the database is written again%s",
            f"; {unlogged} more commits failed since the line before" if unlogged else "",
        )

    def _report(self, batch: Sequence[StoreOp], written: Written) -> None:
        rejected, earlier = written
        rejected_ids = {id(op) for op in rejected}
        for op in batch:
            if id(op) not in rejected_ids:
                self._committed(op)
            else:
                self._failed(op, earlier.get(op.id) if isinstance(op, Message) else None)
        self._reported += len(batch)
        self._progress.set()
        self._progress = trio.Event()
