"""Group commits: on the event loop while the disk is quick, in a worker thread when slow."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.test_store import account, message
from trio_chat.persistence import SLOW_COMMIT, SLOW_IN_A_ROW, THREADED_AT_LEAST, Persistence
from trio_chat.records import MarkDelivered, Message, Snapshot, StoreOp
from trio_chat.store import SqliteStore


class Clock:
    """Time that moves only when a test, or a write it scripted, moves it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ScriptedDisk:
    """A real store whose commits take the (fake) time the test says, on whichever thread
    runs them; `reading` holds a history read until the test lets it go."""

    def __init__(self, inner: SqliteStore, clock: Clock) -> None:
        self.inner = inner
        self.clock = clock
        self.delays: list[float] = []
        self.threads: list[bool] = []
        self.reading = threading.Event()
        self.entered = 0
        """History reads begun (each on its worker thread)."""
        self.release = threading.Event()
        self.release.set()

    def load(self, window: int) -> Snapshot:
        return self.inner.load(window)

    def write(self, ops: Sequence[StoreOp]) -> list[StoreOp]:
        self.threads.append(threading.current_thread() is not threading.main_thread())
        self.clock.now += self.delays.pop(0) if self.delays else 0.0
        return self.inner.write(ops)

    def history(self, account_id: int, before: int | None, limit: int) -> list[Message]:
        self.entered += 1
        self.reading.set()
        self.release.wait(10)
        return self.inner.history(account_id, before, limit)

    def mailbox(self, account_id: int) -> list[Message]:
        return self.inner.mailbox(account_id)

    def sent(self, sender_id: int, cid: str) -> Message | None:
        return self.inner.sent(sender_id, cid)

    def close(self) -> None:
        self.inner.close()


class Reports:
    def __init__(self) -> None:
        self.committed: list[StoreOp] = []
        self.failed: list[StoreOp] = []
        self.earlier: list[Message | None] = []
        self.changed = trio.Event()

    def on_committed(self, op: StoreOp) -> None:
        self.committed.append(op)
        self.changed.set()

    def on_failed(self, op: StoreOp, earlier: Message | None) -> None:
        self.failed.append(op)
        self.earlier.append(earlier)
        self.changed.set()

    async def until(self, count: int) -> None:
        while len(self.committed) + len(self.failed) < count:
            self.changed = trio.Event()
            await self.changed.wait()


class Reads:
    """History reads of account 1 asked of `persistence`, and what each returned."""

    def __init__(self, persistence: Persistence) -> None:
        self.persistence = persistence
        self.results: list[list[Message] | None] = []
        self.done = trio.Event()
        """Set once a read has returned."""

    async def one(self) -> None:
        self.results.append(await self.persistence.history(1, None, 10))
        self.done.set()


def setup(
    tmp_path: Path, kind: type[ScriptedDisk] = ScriptedDisk
) -> tuple[Persistence, ScriptedDisk, Clock, Reports]:
    clock = Clock()
    disk = kind(SqliteStore.open(tmp_path / "chat.db"), clock)
    reports = Reports()
    return (
        Persistence(disk, reports.on_committed, reports.on_failed, clock=clock),
        disk,
        clock,
        reports,
    )


async def test_a_quick_disk_commits_on_the_loop_in_one_transaction_in_order(
    tmp_path: Path,
) -> None:
    persistence, disk, _clock, reports = setup(tmp_path)
    ops: list[StoreOp] = [account(1, "alice"), *(message(n, 1) for n in range(1, 51))]
    for op in ops:
        persistence.add(op)
    assert persistence.commit_here()
    assert reports.committed == ops and reports.failed == []
    assert disk.threads == [False] and persistence.queued == 0
    assert not persistence.commit_here()  # nothing queued, nothing done
    assert [m.id for m in disk.inner.history(1, None, 100)] == list(range(1, 51))


async def test_slow_commits_in_a_row_send_the_next_ones_to_a_thread_and_the_loop_tries_again(
    tmp_path: Path,
) -> None:
    persistence, disk, clock, reports = setup(tmp_path)
    slow = 2 * SLOW_COMMIT

    def commit(n: int) -> bool:
        persistence.add(message(n, 1))
        return persistence.commit_here()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(persistence.run)
            persistence.add(account(1, "alice"))
            assert persistence.commit_here()
            disk.delays = [slow, 0.0, *[slow] * SLOW_IN_A_ROW]
            assert commit(1) and commit(2)  # one slow fsync among quick ones changes nothing
            assert all(commit(n) for n in range(3, 3 + SLOW_IN_A_ROW))  # slow, but done
            assert not commit(10)  # the next ones go to a thread
            await reports.until(4 + SLOW_IN_A_ROW)
            assert disk.threads[-1] and disk.threads.count(True) == 1

            clock.now += THREADED_AT_LEAST + SLOW_COMMIT  # the loop tries again: still slow
            disk.delays = [slow]
            assert commit(11)
            clock.now += THREADED_AT_LEAST  # the pause has doubled
            assert not commit(12)
            await reports.until(6 + SLOW_IN_A_ROW)

            clock.now += THREADED_AT_LEAST + SLOW_COMMIT  # quick again: back on the loop
            assert commit(13) and commit(14)
            persistence.close()
    assert disk.threads == [False] * (3 + SLOW_IN_A_ROW) + [True, False, True, False, False]
    ids = [1, 1, 2, *range(3, 3 + SLOW_IN_A_ROW), 10, 11, 12, 13, 14]
    assert [getattr(op, "id", None) for op in reports.committed] == ids
    assert reports.failed == []


class HeldWrites(ScriptedDisk):
    """Holds each commit made in the worker thread until the test lets it go."""

    def __init__(self, inner: SqliteStore, clock: Clock) -> None:
        super().__init__(inner, clock)
        self.writing = threading.Event()
        self.let_go = threading.Event()

    def write(self, ops: Sequence[StoreOp]) -> list[StoreOp]:
        if threading.current_thread() is not threading.main_thread():
            self.writing.set()
            self.let_go.wait(10)
        return super().write(ops)


async def held_in_the_thread(persistence: Persistence, disk: HeldWrites) -> None:
    """Alice's account, then slow commits until the next ones go to the worker thread;
    then message 10 there, its commit begun and held."""
    persistence.add(account(1, "alice"))
    assert persistence.commit_here()
    disk.delays = [2 * SLOW_COMMIT] * SLOW_IN_A_ROW
    for n in range(1, 1 + SLOW_IN_A_ROW):
        persistence.add(message(n, 1))
        assert persistence.commit_here()
    persistence.add(message(10, 1))
    assert not persistence.commit_here()
    await trio.to_thread.run_sync(disk.writing.wait, 10)


@asynccontextmanager
async def commit_held_in_the_thread(
    tmp_path: Path,
) -> AsyncIterator[tuple[Persistence, HeldWrites, Clock, Reports]]:
    """Persistence running, with message 10's commit begun in the worker thread and held
    (`held_in_the_thread`) until the test lets it go; at the end it is closed, then let go
    (`run` is shielded: a failure in the test must not hang)."""
    persistence, disk, clock, reports = setup(tmp_path, HeldWrites)
    assert isinstance(disk, HeldWrites)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(persistence.run)
            try:
                await held_in_the_thread(persistence, disk)
                yield persistence, disk, clock, reports
            finally:
                persistence.close()
                disk.let_go.set()


async def test_the_loop_commits_nothing_while_a_commit_is_in_the_thread(tmp_path: Path) -> None:
    """The loop's pause is over, but the commit sent to the thread has not finished: the
    next one waits for it rather than commit on the loop ahead of it (out of order)."""
    async with commit_held_in_the_thread(tmp_path) as (persistence, disk, clock, reports):
        clock.now += THREADED_AT_LEAST + SLOW_COMMIT  # the loop may try again
        persistence.add(message(11, 1))
        assert not persistence.commit_here()  # not while the thread's commit runs
        disk.let_go.set()
        await reports.until(3 + SLOW_IN_A_ROW)
    ids = [1, *range(1, 1 + SLOW_IN_A_ROW), 10, 11]
    assert [getattr(op, "id", None) for op in reports.committed] == ids


async def test_closing_while_a_commit_is_in_the_thread_commits_what_was_queued_meanwhile(
    tmp_path: Path,
) -> None:
    """The daemon stops while a slow disk's commit is in the thread: what was added in
    the meantime (the last turns' messages, delivery marks) is committed too."""
    async with commit_held_in_the_thread(tmp_path) as (persistence, disk, _clock, reports):
        persistence.add(message(11, 1))
        assert not persistence.commit_here()
    ids = [1, *range(1, 1 + SLOW_IN_A_ROW), 10, 11]
    assert [getattr(op, "id", None) for op in reports.committed] == ids
    assert [m.id for m in disk.inner.history(1, None, 100)] == ids[1:]


@asynccontextmanager
async def reads_held(
    tmp_path: Path,
) -> AsyncIterator[tuple[Persistence, ScriptedDisk, Reports, Reads, trio.Nursery]]:
    """Persistence running, each history read held at the disk until the test releases
    them (`disk.release`); everything released and closed at the end."""
    persistence, disk, _clock, reports = setup(tmp_path)
    disk.release.clear()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(persistence.run)
            try:
                yield persistence, disk, reports, Reads(persistence), nursery
            finally:
                disk.release.set()
                persistence.close()  # `run` is shielded: a failure above must not hang


async def test_a_history_read_keeps_commits_off_the_loop(tmp_path: Path) -> None:
    async with reads_held(tmp_path) as (persistence, disk, reports, reads, nursery):
        nursery.start_soon(reads.one)
        await trio.to_thread.run_sync(disk.reading.wait)
        persistence.add(account(1, "alice"))
        assert not persistence.commit_here()  # the loop would wait for the read's lock
        disk.release.set()
        await reports.until(1)
    assert disk.threads == [True] and reads.results == [[]]


async def test_history_reads_queue_one_at_a_time_and_never_ahead_of_a_commit(
    tmp_path: Path,
) -> None:
    """Forty reads asked at once (a flood of `history` requests from many sessions): one
    holds a worker thread and the database at a time, the others wait without a thread,
    and a commit added meanwhile goes through at once in its own thread."""
    async with reads_held(tmp_path) as (persistence, disk, reports, reads, nursery):
        for _read in range(40):
            nursery.start_soon(reads.one)
        await trio.to_thread.run_sync(disk.reading.wait)
        await trio.testing.wait_all_tasks_blocked()
        assert disk.entered == 1
        persistence.add(account(1, "alice"))
        assert not persistence.commit_here()  # a read holds the database
        await reports.until(1)  # while all forty still wait
        assert reads.results == [] and disk.threads == [True]
    assert len(reads.results) == 40 and disk.entered == 40


async def test_a_history_read_sees_what_was_added_before_it(tmp_path: Path) -> None:
    """Someone says something, then asks for the history, in one turn of the loop: the
    message waits for the turn's commit, and the read waits for it (not the other way
    round, which would have the commit go to a thread while the read runs, and the read
    miss the message)."""
    persistence, disk, _clock, reports = setup(tmp_path)
    reads = Reads(persistence)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(persistence.run)
            try:
                persistence.add(account(1, "alice"))
                assert persistence.commit_here()
                said = message(1, 1)
                persistence.add(said)
                nursery.start_soon(reads.one)
                await trio.testing.wait_all_tasks_blocked()
                assert reads.results == [] and not disk.reading.is_set()  # not before the commit
                assert persistence.commit_here()  # on the loop: no read holds the database
                await reports.until(2)
                await reads.done.wait()
            finally:
                persistence.close()  # `run` is shielded: a failure above must not hang
    assert reads.results == [[said]] and disk.threads == [False, False]


async def test_a_mailbox_read_waits_for_the_deliveries_marked_before_it(tmp_path: Path) -> None:
    """Bob read alice's whisper and logged out; he logs in again before the mark of its
    delivery is on disk: the read of his mailbox waits for it, and finds nothing."""
    persistence, _disk, _clock, _reports = setup(tmp_path)
    results: list[list[Message] | None] = []
    second = trio.Event()

    async def read() -> None:
        results.append(await persistence.mailbox(2))
        if len(results) == 2:
            second.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(persistence.run)
            try:
                whisper = message(1, 1, recipient=2)
                for op in (account(1, "alice"), account(2, "bob"), whisper):
                    persistence.add(op)
                assert persistence.commit_here()
                await read()
                persistence.add(MarkDelivered((whisper.id,)))
                nursery.start_soon(read)
                await trio.testing.wait_all_tasks_blocked()
                assert results == [[whisper]]  # not before the commit
                assert persistence.commit_here()
                await second.wait()
            finally:
                persistence.close()
    assert results == [[whisper], []]


async def test_closing_commits_what_is_queued_then_the_task_ends(tmp_path: Path) -> None:
    persistence, disk, _clock, reports = setup(tmp_path)
    ops: list[StoreOp] = [account(1, "alice"), message(1, 1), message(2, 1)]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(persistence.run)
            for op in ops:
                persistence.add(op)
            persistence.close()
    assert reports.committed == ops and disk.threads == [True]
    with pytest.raises(RuntimeError, match="closing"):
        persistence.add(message(3, 1))


class BrokenDisk(ScriptedDisk):
    def write(self, ops: Sequence[StoreOp]) -> list[StoreOp]:
        raise sqlite3.OperationalError("disk I/O error")


async def test_a_failed_write_fails_its_changes_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    persistence, _disk, _clock, reports = setup(tmp_path, BrokenDisk)
    ops: list[StoreOp] = [account(1, "alice"), message(1, 1)]
    for op in ops:
        persistence.add(op)
    with caplog.at_level(logging.ERROR):
        assert persistence.commit_here()
    assert reports.failed == ops and reports.committed == []
    assert reports.earlier == [None, None]
    (line,) = caplog.records
    assert line.getMessage() == (
        "could not write 2 changes to the database (OperationalError: disk I/O error)"
    )
    assert line.exc_info is None


class UnreadableDisk(ScriptedDisk):
    def history(self, account_id: int, before: int | None, limit: int) -> list[Message]:
        raise sqlite3.DatabaseError("database disk image is malformed")

    def mailbox(self, account_id: int) -> list[Message]:
        raise sqlite3.OperationalError("disk I/O error")


async def test_a_failed_history_read_is_one_log_line_and_no_messages(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    persistence, _disk, _clock, _reports = setup(tmp_path, UnreadableDisk)
    with caplog.at_level(logging.ERROR):
        assert await persistence.history(1, None, 10) is None
    (line,) = caplog.records
    assert line.getMessage() == (
        "could not read history from the database (DatabaseError: database disk image is malformed)"
    )
    assert line.exc_info is None


async def test_a_failed_mailbox_read_nobody_waits_for_is_one_log_line_and_no_messages(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    persistence, _disk, _clock, _reports = setup(tmp_path, UnreadableDisk)
    with caplog.at_level(logging.ERROR):
        assert await persistence.mailbox(1, wanted=lambda: False) is None
    (line,) = caplog.records
    assert line.getMessage() == (
        "could not read unread messages from the database (OperationalError: disk I/O error)"
    )
    assert line.exc_info is None


class FlakyMailboxDisk(ScriptedDisk):
    """Its first two mailbox reads fail."""

    failures = 2

    def mailbox(self, account_id: int) -> list[Message]:
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("disk I/O error")
        return super().mailbox(account_id)


async def test_a_failed_mailbox_read_is_tried_again_while_a_login_waits_for_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    persistence, disk, _clock, _reports = setup(tmp_path, FlakyMailboxDisk)
    whisper = message(1, 1, recipient=2)
    disk.inner.write([account(1, "alice"), account(2, "bob"), whisper])
    start = trio.current_time()
    with caplog.at_level(logging.ERROR):
        assert await persistence.mailbox(2) == [whisper]
    assert trio.current_time() - start == pytest.approx(1.0 + 2.0)  # a second, then two
    assert len(caplog.records) == 2


async def test_a_failed_mailbox_read_is_given_up_once_nobody_waits_for_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    persistence, disk, _clock, _reports = setup(tmp_path, FlakyMailboxDisk)
    assert isinstance(disk, FlakyMailboxDisk)
    asked: list[float] = []

    def wanted() -> bool:
        asked.append(trio.current_time())
        return len(asked) == 1  # the login left during the wait after the first failure

    start = trio.current_time()
    assert await persistence.mailbox(2, wanted) is None
    assert [at - start for at in asked] == [0.0, pytest.approx(1.0)]
    assert disk.failures == 1  # not read again


def stored_then_resent(persistence: Persistence) -> tuple[Message, Message, Message]:
    """Alice's first message committed; then, queued, a copy of it sent again under its
    `cid` (long after: the daemon's memory no longer knew it) and a new message."""
    first = message(1, 1)
    persistence.add(account(1, "alice"))
    persistence.add(first)
    assert persistence.commit_here()
    resent = dataclasses.replace(message(7, 1), cid=first.cid, text="sent again")
    other = message(8, 1)
    persistence.add(resent)
    persistence.add(other)
    return first, resent, other


def test_a_message_resent_under_a_stored_cid_is_refused_with_the_copy_stored_before(
    tmp_path: Path,
) -> None:
    persistence, _disk, _clock, reports = setup(tmp_path)
    first, resent, other = stored_then_resent(persistence)
    assert persistence.commit_here()
    assert reports.failed == [resent] and reports.earlier == [first]
    assert reports.committed[-1] == other


def test_a_resent_message_refused_beside_another_refused_change_gets_its_copy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A change that is not a message refused in the same commit (here an account stored
    already) has no copy to look up: the resent message is still answered with its own,
    and nothing is logged as failed."""
    persistence, _disk, _clock, reports = setup(tmp_path)
    first = message(1, 1)
    persistence.add(account(1, "alice"))
    persistence.add(first)
    assert persistence.commit_here()
    twice = account(1, "alice")
    resent = dataclasses.replace(message(7, 1), cid=first.cid, text="sent again")
    other = message(8, 1)
    for op in (twice, resent, other):
        persistence.add(op)
    with caplog.at_level(logging.ERROR):
        assert persistence.commit_here()
    assert reports.failed == [twice, resent] and reports.earlier == [None, first]
    assert reports.committed[-1] == other
    assert caplog.records == []


class LookupFailsDisk(ScriptedDisk):
    """Commits, then cannot read back the copy a resent message was refused for."""

    def sent(self, sender_id: int, cid: str) -> Message | None:
        raise sqlite3.OperationalError("disk I/O error")


async def test_a_failed_look_up_of_a_refused_copy_fails_only_that_copy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The commit went through: what it stored is reported stored (shown, answered), and
    only the resent copy, whose first one could not be read, is reported as failed."""
    persistence, disk, _clock, reports = setup(tmp_path, LookupFailsDisk)
    _first, resent, other = stored_then_resent(persistence)
    with caplog.at_level(logging.ERROR):
        assert persistence.commit_here()
    assert reports.failed == [resent] and reports.earlier == [None]
    assert reports.committed[-1] == other
    assert [m.id for m in disk.inner.load(window=10).recent] == [1, 8]
    (line,) = caplog.records
    assert line.getMessage() == (
        "could not read messages stored before from the database (OperationalError: disk I/O error)"
    )


async def test_a_message_sent_before_is_looked_up_after_the_commits_before_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A message sent again that the daemon would refuse as new (a full mailbox) is
    looked for on disk: found once the commit before the look-up is in, not found under
    another `cid`, and not found, with one log line, when the disk cannot be read."""
    persistence, _disk, _clock, reports = setup(tmp_path)
    first = message(1, 1)
    found: list[Message | None] = []
    done = trio.Event()

    async def look_up() -> None:
        found.append(await persistence.sent(1, str(first.cid)))
        done.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(persistence.run)
            try:
                persistence.add(account(1, "alice"))
                persistence.add(first)
                nursery.start_soon(look_up)
                await trio.testing.wait_all_tasks_blocked()
                assert found == []  # not before the commit
                assert persistence.commit_here()
                await reports.until(2)
                await done.wait()
                assert found == [first]
                assert await persistence.sent(1, "c2") is None
                assert await persistence.sent(2, str(first.cid)) is None
            finally:
                persistence.close()
    failing, _disk, _clock, _reports = setup(tmp_path / "other", LookupFailsDisk)
    with caplog.at_level(logging.ERROR):
        assert await failing.sent(1, "c1") is None
    (line,) = caplog.records
    assert line.getMessage() == (
        "could not read a message sent before from the database (OperationalError: disk I/O error)"
    )


class FailingForAWhile(ScriptedDisk):
    """Fails while `broken` is set (a full disk), then writes again (space was freed)."""

    broken = True

    def write(self, ops: Sequence[StoreOp]) -> list[StoreOp]:
        if self.broken:
            raise sqlite3.OperationalError("database or disk is full")
        return super().write(ops)


def test_failures_not_logged_yet_are_told_once_the_disk_writes_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The commits that failed after the minute's line are counted in the log when the
    disk works again: the operator learns how many failed, not just that one did."""
    persistence, disk, clock, _reports = setup(tmp_path, FailingForAWhile)
    persistence.add(account(1, "alice"))
    with caplog.at_level(logging.INFO):
        for n in range(1, 11):
            persistence.add(message(n, 1))
            assert persistence.commit_here()
            clock.now += 1.0
        assert isinstance(disk, FailingForAWhile)
        disk.broken = False
        clock.now += 60.0  # past the minute of the line before: the count can be told
        persistence.add(account(1, "alice"))
        persistence.add(message(11, 1))
        assert persistence.commit_here()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("could not write 2 changes to the database")
    assert lines[1] == (
        "the database is written again; 9 more commits failed since the line before"
    )


def test_a_disk_that_keeps_failing_is_one_log_line_a_minute(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk fails every commit, a few a second: the log says so once a minute,
    with how many failed meanwhile, not once a commit."""
    persistence, _disk, clock, reports = setup(tmp_path, BrokenDisk)
    with caplog.at_level(logging.ERROR):
        for n in range(1, 101):
            persistence.add(message(n, 1))
            assert persistence.commit_here()
            clock.now += 1.0  # a hundred commits, one a second
    assert len(reports.failed) == 100
    first, second = [r.getMessage() for r in caplog.records]
    assert first == "could not write 1 change to the database (OperationalError: disk I/O error)"
    assert second == (
        "could not write 1 change to the database (OperationalError: disk I/O error); "
        "59 more commits failed in the minute before"
    )


async def test_failures_not_logged_yet_are_told_as_the_daemon_stops(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A disk that fails to the end: the commits that failed after the minute's line are
    counted in the last line the persistence writes, not lost with the daemon."""
    persistence, _disk, clock, _reports = setup(tmp_path, BrokenDisk)
    with caplog.at_level(logging.ERROR):
        for n in range(1, 6):
            persistence.add(message(n, 1))
            assert persistence.commit_here()
            clock.now += 1.0
        async with trio.open_nursery() as nursery:
            await nursery.start(persistence.run)
            persistence.add(message(6, 1))  # failing too, as the daemon stops
            persistence.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("could not write 1 change to the database")
    assert lines[1] == "stopping with 5 more commits failed since the line before"


def test_a_disk_that_works_again_after_one_failure_is_told_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One failed commit, its line logged, then the disk works again: the log says so at
    the first commit that goes through (not a minute after the failure's line, when no
    commit may come), rather than leaving the failure as its last word."""
    persistence, disk, clock, _reports = setup(tmp_path, FailingForAWhile)
    persistence.add(account(1, "alice"))
    with caplog.at_level(logging.INFO):
        persistence.add(message(1, 1))
        assert persistence.commit_here()
        assert isinstance(disk, FailingForAWhile)
        disk.broken = False
        for n in range(2, 5):
            clock.now += 1.0
            persistence.add(account(1, "alice"))
            persistence.add(message(n, 1))
            assert persistence.commit_here()
            if n == 2:
                assert len(caplog.records) == 2  # at once
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("could not write 2 changes to the database")
    assert lines[1] == "the database is written again"


def test_what_a_stop_would_leave_unwritten_is_the_changes_failed_since_the_last_commit(
    tmp_path: Path,
) -> None:
    """`unstored` counts the changes of the failed commits since the last one that went
    through, with the last error: what the daemon's exit status reports at the stop. A
    commit that goes through clears it (the log has told of the failures by then)."""
    persistence, disk, clock, _reports = setup(tmp_path, FailingForAWhile)
    assert persistence.unstored() is None
    persistence.add(account(1, "alice"))
    persistence.add(message(1, 1))
    assert persistence.commit_here()
    clock.now += 1.0
    persistence.add(message(2, 1))
    assert persistence.commit_here()
    error = persistence.unstored()
    assert error is not None and str(error) == (
        "Stopped, but 3 changes could not be written to the database (OperationalError: "
        "database or disk is full); see the errors logged above, and check the disk "
        "before starting the daemon again."
    )
    assert isinstance(disk, FailingForAWhile)
    disk.broken = False
    persistence.add(account(1, "alice"))
    persistence.add(message(3, 1))
    assert persistence.commit_here()
    assert persistence.unstored() is None
