"""`trio-chat accounts` on a running daemon, through its control socket: a lock, a new
password and a kick taken at once, the socket's own rules (its user alone, one request at
a time, bad input answered, left behind by a crash, gone after a stop), and a daemon that
could not make one."""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import re
import socket
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import msgspec
import pytest
import trio
from typer.testing import CliRunner

import trio_chat
from trio_chat import control, wire
from trio_chat.auth import hash_password, is_password_hash
from trio_chat.cli import ExitCode
from trio_chat.cli import accounts as accounts_command
from trio_chat.cli import app as cli_app
from trio_chat.cli.accounts import EXIT_FOR_REPLY
from trio_chat.control import (
    NOT_STORED,
    READ_WITHIN,
    SOCKET_PATH_BYTES,
    STORED_WITHIN,
    ControlRefused,
    ControlUnavailable,
    Desk,
    Peer,
    Reply,
    Request,
    ask,
    control_path,
    may_have,
    open_control,
    serve_control,
)
from trio_chat.engine import Persist
from trio_chat.errors import AccountLocked, AccountRemoved, Muted, Removed, WrongPassword
from trio_chat.events import Left
from trio_chat.records import (
    Account,
    AccountRemoval,
    BanSet,
    Message,
    MessageRemoval,
    MuteSet,
    PasswordSet,
)
from trio_chat.server import Daemon
from trio_chat.testing.daemon import DaemonProcess
from trio_chat.testing.driver import EngineDriver
from trio_chat.testing.driver import Peer as Client
from trio_chat.wire import MUTED_NOTICE

from .test_operator_accounts import NEW_PASSWORD, PASSWORD, accounts, add_account, login


async def until_ended(client: trio_chat.ChatClient, left: list[str] | None = None) -> None:
    """Follow `client`'s events until its session ends (raising why); the names of those
    who left, with why, go into `left`."""
    async for event in client.events():
        if isinstance(event, Left) and left is not None:
            left.append(f"{event.name} {event.reason}")


async def test_an_operator_locks_gives_a_password_and_kicks_while_the_daemon_runs(
    tmp_path: Path,
) -> None:
    database = tmp_path / "chat.db"
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, database)
            host, port = await daemon.start()
            assert stat.S_IMODE(os.stat(control_path(database)).st_mode) == 0o600
            for name in ("alice", "bob"):
                await trio_chat.register(host, port, name, PASSWORD)
            async with (
                trio_chat.connect(host, port, "alice", PASSWORD) as alice,
                trio_chat.connect(host, port, "bob", PASSWORD) as bob,
            ):
                listed = await accounts(database, "list")
                assert listed.returncode == 0, listed.stderr
                lines = listed.stdout.splitlines()
                assert [line.split("  ")[0] for line in lines] == ["alice", "bob"]
                assert all(line.endswith(", in the room)") for line in lines)

                locked = await accounts(database, "lock", "alice")
                assert locked.returncode == 0, locked.stderr
                assert locked.stdout == (
                    "Locked alice (1 session ended); `trio-chat accounts unlock alice` undoes it.\n"
                )
                with pytest.raises(AccountLocked):
                    await until_ended(alice)
                left: list[str] = []
                with trio.move_on_after(2):
                    await until_ended(bob, left)  # bob stays, told alice was taken out
                assert left == ["alice removed"]
                with pytest.raises(AccountLocked):
                    async with trio_chat.connect(host, port, "alice", PASSWORD):
                        pass

                renewed = await accounts(
                    database, "password", "bob", given=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n"
                )
                assert renewed.returncode == 0, renewed.stderr
                assert renewed.stdout == "Set the password of bob (1 session ended).\n"
                with pytest.raises(Removed):
                    await until_ended(bob)
            with pytest.raises(WrongPassword):
                async with trio_chat.connect(host, port, "bob", PASSWORD):
                    pass
            async with trio_chat.connect(host, port, "bob", NEW_PASSWORD) as bob:
                kicked = await accounts(database, "kick", "bob")
                assert kicked.stdout == (
                    "Took bob out of the room (1 session ended); `trio-chat accounts lock bob` "
                    "keeps them out.\n"
                )
                with pytest.raises(Removed):
                    await until_ended(bob)
            absent = await accounts(database, "kick", "bob")
            assert (absent.returncode, absent.stdout) == (0, "bob is not in the room.\n")
            unknown = await accounts(database, "lock", "carol")
            assert unknown.returncode == ExitCode.UNKNOWN_USER
            assert "`trio-chat accounts list` shows them" in unknown.stderr

            unlocked = await accounts(database, "unlock", "alice")
            assert unlocked.stdout == "Unlocked alice.\n"
            async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
                assert "alice" in await alice.who()
            # Who did it: the command's process, as the kernel tells the daemon.
            uid = os.getuid()
            assert re.search(
                rf"the operator \(user id {uid}, process \d+\) locked alice \(1 session ended\)",
                daemon.text,
            )
            assert await daemon.stop() == 0
            assert not control_path(database).exists()
            stopped = await accounts(database, "kick", "alice")
            assert stopped.returncode == ExitCode.UNREACHABLE
            assert "The daemon is not running on" in stopped.stderr


async def test_a_daemon_reached_by_a_long_path_or_a_link_answers_and_one_without_says_why(
    tmp_path: Path,
) -> None:
    """A database path too long for a Unix socket's address (108 bytes), started through a
    symbolic link and asked through the real path: its socket is reached all the same.
    A file in the socket's place: the daemon runs without one, says why, and the
    commands, which would change the database under it, refuse."""
    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    database = deep / "chat.db"
    link = tmp_path / "link.db"
    link.symlink_to(database)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, link)
            _host, port = await daemon.start(accounts=["alice"], password=PASSWORD)
            assert len(str(control_path(database))) > 108
            assert control_path(link) == control_path(database)
            locked = await accounts(database, "lock", "alice")
            assert locked.returncode == 0, locked.stderr
            assert await daemon.stop() == 0
            assert not control_path(database).exists()

            control_path(database).write_text("in the way")
            await daemon.start(port)
            # Said right after the line that it listens, which `start` waits for.
            warning = await daemon.wait_for("no control socket at")
            assert "a file that is not a socket is in its place" in warning
            refused = await accounts(database, "unlock", "alice")
            assert refused.returncode == ExitCode.DATABASE
            assert refused.stderr == (
                f"The daemon is running on {str(database)!r} but not answering at "
                f"{str(control_path(database))!r} (see its log), or a restore is putting it "
                "back; stop the daemon to do this, then start it again.\n"
            )
            assert await daemon.stop() == 0
            assert control_path(database).read_text() == "in the way"
            unlocked = await accounts(database, "unlock", "alice")
            assert unlocked.returncode == 0, unlocked.stderr


async def ask_here(path: Path, data: bytes) -> Reply:
    """What the control socket answers to `data` (trio's own socket, for autojump_clock)."""
    from trio_chat.control import _replies

    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(data)
        received = b""
        while not received.endswith(b"\n"):
            chunk = await stream.receive_some()
            if not chunk:
                break
            received += chunk
    return _replies.decode(received)


async def test_the_control_socket_answers_one_at_a_time_and_cleans_up(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    path = tmp_path / "chat.db.control"
    # A socket left by a daemon that was killed: replaced.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left:
        left.bind(str(path))
    asked: list[Request] = []

    async def answer(request: Request, peer: Peer | None) -> Reply:
        assert peer is None or peer.pid > 0
        asked.append(request)
        if request.name == "boom":
            raise RuntimeError("a bug")
        return Reply(True, message=f"{request.action} {request.name}")

    async with trio.open_nursery() as nursery:
        listener = open_control(path)
        nursery.start_soon(serve_control, listener, path, answer)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        silent = await trio.open_unix_socket(str(path))  # says nothing: dropped in time
        started = trio.current_time()
        reply = await ask_here(path, b'{"action":"lock","name":"alice"}\n')
        assert reply == Reply(True, message="lock alice")
        assert trio.current_time() - started == pytest.approx(READ_WITHIN, abs=0.5)
        await silent.aclose()
        for garbage in (b"\xff\xfe\n", b'{"action":"explode"}\n', b'{"name":"x","extra":1}\n'):
            refused = await ask_here(path, garbage)
            assert (refused.ok, refused.code) == (False, "bad_request")
        failed = await ask_here(path, b'{"action":"kick","name":"boom"}\n')
        assert (failed.ok, failed.message) == (False, "The daemon failed to answer; see its log.")
        assert await ask_here(path, b'{"action":"list"}\n') == Reply(True, message="list ")
        assert [r.action for r in asked] == ["lock", "kick", "list"]
        nursery.cancel_scope.cancel()
    assert not path.exists()


async def test_a_file_in_the_control_sockets_place_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "chat.db.control"
    path.write_text("not a socket")
    with pytest.raises(ControlUnavailable) as refused:
        open_control(path)
    assert str(refused.value) == (
        f"a file that is not a socket is in its place; remove {str(path)!r}"
    )
    assert path.read_text() == "not a socket"
    # A link, even to a listening socket: not followed, and left as it is.
    elsewhere = tmp_path / "elsewhere.control"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(elsewhere))
        other.listen(1)
        path.unlink()
        path.symlink_to(elsewhere)
        with pytest.raises(ControlUnavailable):
            open_control(path)
        assert path.is_symlink() and stat.S_ISSOCK(os.lstat(elsewhere).st_mode)


async def test_a_socket_in_the_way_that_cannot_be_removed_is_named_with_its_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "chat.db.control"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left:
        left.bind(str(path))

    def refused(where: Path) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(where))

    monkeypatch.setattr(os, "unlink", refused)  # another user's, in a folder of many
    with pytest.raises(ControlUnavailable) as unavailable:
        open_control(path)
    assert str(unavailable.value) == (
        f"a socket of user id {os.getuid()} is in its place and cannot be removed "
        f"({os.strerror(errno.EACCES)}); remove {str(path)!r}"
    )


async def test_a_socket_that_cannot_be_made_keeps_no_descriptor(tmp_path: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(ControlUnavailable) as unavailable:
        open_control(tmp_path / "no such folder" / "chat.db.control")
    assert len(os.listdir("/proc/self/fd")) == before, unavailable.value


async def test_a_stop_leaves_a_socket_that_is_no_longer_this_daemons(tmp_path: Path) -> None:
    """A daemon started on the database once this one's socket was gone (removed by
    hand) made its own: this one's stop leaves it."""
    path = tmp_path / "chat.db.control"
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await _answering(path, [], nursery)
            await trio.testing.wait_all_tasks_blocked()
            path.unlink()
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
                other.bind(str(path))
                nursery.cancel_scope.cancel()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)


async def test_a_command_told_nothing_says_so_at_once_and_a_stale_socket_is_no_daemon(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chat.db.control"
    listener = open_control(path)

    async def cut_off() -> None:  # reads the request, and closes without a word
        stream = await listener.accept()
        async with stream:
            await stream.receive_some()

    asked = functools.partial(ask, path, Request("lock", "alice"))
    with trio.fail_after(10):  # not read on and on
        async with listener, trio.open_nursery() as nursery:
            nursery.start_soon(cut_off)
            with pytest.raises(ControlRefused) as refused:
                await trio.to_thread.run_sync(asked, abandon_on_cancel=True)
    assert str(refused.value).startswith(f"The daemon's answer at {str(path)!r} could not be read")
    assert refused.value.unanswered
    # Its socket left behind, nothing listening: no daemon runs (the database is used).
    stale = tmp_path / "stale.control"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left:
        left.bind(str(stale))
    assert ask(stale, Request("list"), timeout=1) is None


OPERATOR_CHANGES = (PasswordSet, MuteSet, AccountRemoval, BanSet, MessageRemoval, Account)


class Stored:
    """What the daemon's store does with a `Desk`'s changes: commits them, fails them,
    or takes forever."""

    def __init__(self, driver: EngineDriver, outcome: str) -> None:
        self.driver = driver
        self.outcome = outcome
        self.desk = Desk(driver.engine, self.wake, lambda: (driver.now, driver.wall))

    def wake(self) -> None:
        engine = self.driver.engine
        for effect in engine.take_effects():
            if not isinstance(effect, Persist) or not isinstance(effect.op, OPERATOR_CHANGES):
                continue
            if self.outcome == "commit":
                engine.committed(effect.op, self.driver.now, self.driver.wall)
                self.desk.reported(effect.op, stored=True)
            elif self.outcome == "fail":
                engine.failed(effect.op)
                self.desk.reported(effect.op, stored=False)


def _alice_said_hello() -> tuple[EngineDriver, Message]:
    """An engine with alice, whose "hello" is stored: its driver, and the message."""
    driver = EngineDriver()
    driver.add_account("alice")
    alice = Client(driver, "alice")
    alice.settle()
    alice.connection.say("hello")
    alice.settle()
    (hello,) = driver.stored_messages()
    return driver, hello


async def test_the_desk_says_when_a_change_was_not_stored(autojump_clock: trio.abc.Clock) -> None:
    driver, hello = _alice_said_hello()
    before = driver.engine.accounts["alice"]
    failing = Stored(driver, "fail")
    reply = await failing.desk.answer(Request("lock", "alice"))
    assert (reply.ok, reply.code) == (False, "not_stored")
    assert reply.message == "The daemon could not store the change (see its log)."
    assert driver.engine.accounts["alice"] is before
    # A ban, a message's removal and an account's, the store refused: none is said to be
    # made, and the account is back.
    for refused in (
        Request("ban", "203.0.113.7"),
        Request("unsay", message=hello.id),
        Request("remove", "alice"),
    ):
        reply = await failing.desk.answer(refused)
        assert (reply.ok, reply.code, reply.message) == (False, "not_stored", NOT_STORED)
    assert driver.engine.accounts["alice"] is before
    slow = Stored(driver, "never")
    started = trio.current_time()
    reply = await slow.desk.answer(Request("lock", "alice"))
    assert (reply.ok, reply.code) == (False, "not_stored")
    assert trio.current_time() - started == pytest.approx(STORED_WITHIN)
    assert "has not stored the change within 10 s" in reply.message
    # A ban too: it may yet be stored, so it is not said to have failed.
    ban = await slow.desk.answer(Request("ban", "203.0.113.7"))
    assert (ban.ok, ban.code) == (False, "not_stored")
    assert "has not stored the change within 10 s" in ban.message
    bad = await Stored(driver, "commit").desk.answer(Request("password", "alice", "plain"))
    assert (bad.ok, bad.code) == (False, "bad_request")
    unknown = await Stored(driver, "commit").desk.answer(Request("unlock", "nobody"))
    assert (unknown.ok, unknown.code) == (False, "unknown_user")
    assert driver.engine.accounts["alice"] is before


class TaskSteps(trio.abc.Instrument):
    def __init__(self) -> None:
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.count += 1


async def test_a_change_waited_for_leaves_the_daemon_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    """The desk sleeps until its change is reported, however many were reported before
    (once woken for one, it was woken for every later one: the daemon spun)."""
    monkeypatch.setattr(control, "STORED_WITHIN", 0.2)
    driver = EngineDriver()
    driver.add_account("alice")
    stored = Stored(driver, "commit")
    assert (await stored.desk.answer(Request("lock", "alice"))).ok
    stored.outcome = "never"  # a disk that does not answer
    steps = TaskSteps()
    trio.lowlevel.add_instrument(steps)
    try:
        reply = await stored.desk.answer(Request("unlock", "alice"))
    finally:
        trio.lowlevel.remove_instrument(steps)
    assert (reply.ok, reply.code) == (False, "not_stored")
    assert steps.count < 20


class Operated:
    """A `Desk` on a driven engine whose store takes the operator's changes at once, as
    the daemon's does; `wakes` counts the times the desk had the daemon's loop send."""

    def __init__(self, driver: EngineDriver, database: Path | None = None) -> None:
        self.driver = driver
        self.wakes = 0
        self.desk = Desk(driver.engine, self.wake, lambda: (driver.now, driver.wall), database)

    def wake(self) -> None:
        self.wakes += 1
        driver = self.driver
        for effect in driver.engine.take_effects():
            if isinstance(effect, Persist) and isinstance(effect.op, OPERATOR_CHANGES):
                driver.stored.append(effect.op)
                driver.engine.committed(effect.op, driver.now, driver.wall)
                self.desk.reported(effect.op, stored=True)
            else:
                driver.perform(effect)
        driver.pump()


def operator_said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "operator"]


async def test_the_desk_answers_with_each_account_as_it_was_and_the_sessions_ended(
    caplog: pytest.LogCaptureFixture,
) -> None:
    driver = EngineDriver()
    for name in ("bob", "alice", "carol"):
        driver.add_account(name)
    alice = Client(driver, "alice", address=("10.0.0.1", 1))
    laptop = Client(driver, "alice", address=("10.0.0.2", 1))
    carol = Client(driver, "carol", address=("10.0.0.3", 1))
    for client in (alice, laptop, carol):
        client.settle()
    carol.connection.whisper("bob", "psst")  # bob is away: it waits for him
    carol.settle()
    operated = Operated(driver)
    desk = operated.desk
    listed = await desk.answer(Request("list"))
    assert [(a.name, a.sessions, a.waiting) for a in listed.accounts] == [
        ("alice", 2, 0),
        ("bob", 0, 1),
        ("carol", 1, 0),
    ]
    found = await desk.answer(Request("find", "BOB"))
    assert [(a.name, a.waiting, a.sessions) for a in found.accounts] == [("bob", 1, 0)]
    assert operated.wakes == 0  # nothing to send
    with caplog.at_level(logging.INFO, logger="trio_chat"):
        kicked = await desk.answer(Request("kick", "alice"))
        assert (kicked.ok, kicked.ended, kicked.accounts[0].sessions) == (True, 2, 2)
        assert driver.inbox[alice.address] and driver.inbox[laptop.address]  # told at once
        alice.settle()
        assert isinstance(alice.connection.failure, Removed)
        absent = await desk.answer(Request("kick", "bob"))
        assert (absent.ok, absent.ended, absent.accounts[0].name) == (True, 0, "bob")
        locked = await desk.answer(Request("lock", "carol"))
        assert (locked.accounts[0].locked, locked.ended) == (False, 1)  # as it was
        assert driver.engine.accounts["carol"].locked
        again = await desk.answer(Request("lock", "carol"))
        assert (again.accounts[0].locked, again.ended) == (True, 0)
        unlocked = await desk.answer(Request("unlock", "carol"))
        assert unlocked.accounts[0].locked and not driver.engine.accounts["carol"].locked
        muted = await desk.answer(Request("mute", "bob"))
        assert not muted.accounts[0].muted and driver.engine.accounts["bob"].muted
        unmuted = await desk.answer(Request("unmute", "bob"))
        assert unmuted.accounts[0].muted and not driver.engine.accounts["bob"].muted
    assert operator_said(caplog) == [
        "the operator took alice out of the room (2 sessions ended)",
        "the operator locked carol (1 session ended)",
        "the operator locked carol",
        "the operator unlocked carol",
        "the operator muted bob",
        "the operator unmuted bob",
    ]


async def test_a_desk_without_a_database_removes_only_ids_the_room_has_given() -> None:
    driver, hello = _alice_said_hello()
    desk = Operated(driver).desk
    for missing in (0, hello.id + 1):  # none yet, or the next to be given
        reply = await desk.answer(Request("unsay", message=missing))
        assert (reply.ok, reply.code) == (False, "unknown_message")
    assert await desk.answer(Request("unsay", message=hello.id)) == Reply(True)


async def test_a_request_met_by_the_daemons_stop_is_told_so(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    path = tmp_path / "chat.db.control"
    asked = trio.Event()

    async def answer(request: Request, _peer: Peer | None) -> Reply:
        asked.set()
        await trio.sleep_forever()  # a change on its way to the disk
        raise AssertionError

    replies: list[Reply] = []

    async def operator() -> None:
        replies.append(await ask_here(path, b'{"action":"lock","name":"alice"}\n'))

    listener = open_control(path)
    async with trio.open_nursery() as outside, trio.open_nursery() as daemon:
        daemon.start_soon(serve_control, listener, path, answer)
        outside.start_soon(operator)
        await asked.wait()
        daemon.cancel_scope.cancel()  # the daemon stops
    assert [(r.ok, r.code) for r in replies] == [(False, "stopping")]
    assert replies[0].message == (
        "The daemon is stopping; the change may have been made: `trio-chat accounts list` "
        "shows whether."
    )


def test_a_request_left_unanswered_says_what_may_have_been_made() -> None:
    # A list changes nothing: it once said "it may have been made", and sent the operator
    # to the command that had just failed.
    assert may_have("bans") == "nothing was changed; see the daemon's log, and try again"
    assert may_have("list") == may_have("find") == may_have("bans")
    assert may_have("ban").endswith("`trio-chat bans list` shows whether")
    assert may_have("unsay").endswith("`trio-chat messages list` shows whether")
    assert may_have("kick").endswith("`trio-chat accounts list` shows whether")


async def test_an_operator_mutes_and_unmutes_while_the_daemon_runs_or_not(
    tmp_path: Path,
) -> None:
    database = tmp_path / "chat.db"
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, database)
            host, port = await daemon.start(accounts=["carol"], password=PASSWORD)
            async with trio_chat.connect(host, port, "carol", PASSWORD) as carol:
                muted = await accounts(database, "mute", "carol")
                assert muted.stdout == (
                    "Muted carol; `trio-chat accounts unmute carol` undoes it.\n"
                ), muted.stderr
                with pytest.raises(Muted):
                    await carol.say("still here?")
                assert carol.muted  # told
                listed = await accounts(database, "list")
                assert listed.stdout.endswith(", muted, in the room)\n")
                unmuted = await accounts(database, "unmute", "carol")
                assert unmuted.stdout == "Unmuted carol.\n"
                await carol.say("back")
            assert re.search(r"the operator \(user id \d+, process \d+\) muted carol", daemon.text)
            assert await daemon.stop() == 0
            stopped = await accounts(database, "mute", "carol")
            assert stopped.returncode == 0, stopped.stderr
            await daemon.start(port)
            async with trio_chat.connect(host, port, "carol", PASSWORD) as carol:
                assert carol.muted  # told at the login
                with pytest.raises(Muted):
                    await carol.say("after the restart")
            told = await login(port, tmp_path, "carol")
            assert told.returncode == 0, told.stderr
            assert told.stdout.decode().splitlines()[-1] == MUTED_NOTICE  # `login` says so too
            assert await daemon.stop() == 0


async def test_a_long_path_to_no_database_is_one_sentence(tmp_path: Path) -> None:
    database = tmp_path / ("x" * 120) / "chat.db"
    listed = await accounts(database, "list")
    assert listed.returncode == ExitCode.DATABASE
    assert listed.stderr == (
        f"There is no database at {str(database)!r}; name the daemon's with --db.\n"
    )


def test_a_request_sends_only_what_it_uses() -> None:
    # A daemon older than a field refuses a request that names it (unknown fields are
    # refused): a command of a newer trio-chat sent `"until": null` with every request,
    # and every `accounts` and `bans` command failed against it.
    assert msgspec.json.encode(Request("list")) == b'{"action":"list"}'
    assert msgspec.json.encode(Request("ban", "192.0.2.1", until="2026-12-06T18:00:00Z")) == (
        b'{"action":"ban","name":"192.0.2.1","until":"2026-12-06T18:00:00Z"}'
    )


async def test_a_message_the_daemon_cannot_look_up_is_a_database_problem(tmp_path: Path) -> None:
    driver, hello = _alice_said_hello()
    broken = tmp_path / "chat.db"
    broken.write_bytes(b"not a database at all" * 100)
    desk = Desk(driver.engine, lambda: None, lambda: (driver.now, driver.wall), broken)
    reply = await desk.answer(Request("unsay", message=hello.id))
    assert (reply.ok, reply.code) == (False, "unreadable")
    assert reply.message.startswith(f"Cannot read the database {str(broken)!r}")
    assert EXIT_FOR_REPLY["unreadable"] is ExitCode.DATABASE  # exit 11, as the command's own


async def _answering(
    path: Path, asked: list[Request], nursery: trio.Nursery, fails: bool = False
) -> None:
    async def answer(request: Request, peer: Peer | None) -> Reply:
        asked.append(request)
        if fails:
            raise RuntimeError("a bug")
        return Reply(True, message=f"{request.action} {request.name}")

    nursery.start_soon(serve_control, open_control(path), path, answer)


async def test_a_socket_a_little_too_long_for_an_address_is_reached_through_its_folder(
    tmp_path: Path,
) -> None:
    name = "chat.db.control"
    pad = SOCKET_PATH_BYTES + 10 - len(os.fsencode(str(tmp_path / "x" / name)))
    path = tmp_path / ("x" * (1 + pad)) / name
    path.parent.mkdir()
    assert len(os.fsencode(str(path))) == SOCKET_PATH_BYTES + 10
    asked: list[Request] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await _answering(path, asked, nursery)
            reply = await trio.to_thread.run_sync(ask, path, Request("find", "alice"))
            nursery.cancel_scope.cancel()
    assert reply == Reply(True, message="find alice")
    assert not path.exists()


async def test_a_request_too_long_or_naming_a_field_the_daemon_lacks_is_refused(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    """The daemon reads a few KiB of a request at most, and takes nothing it does not
    know (a newer command's field is refused, not ignored)."""
    path = tmp_path / "chat.db.control"
    asked: list[Request] = []
    async with trio.open_nursery() as nursery:
        await _answering(path, asked, nursery)
        long_name = b"x" * 12_000  # three times what is read of a request
        for refused in (
            b'{"action":"find","name":"' + long_name + b'"}\n',
            b'{"action":"list","extra":1}\n',
        ):
            started = trio.current_time()
            reply = await ask_here(path, refused)
            assert (reply.ok, reply.code) == (False, "bad_request")
            assert trio.current_time() - started < READ_WITHIN  # read to its line's end
        assert asked == []
        nursery.cancel_scope.cancel()


async def test_another_users_process_is_not_answered(
    tmp_path: Path, autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "chat.db.control"
    asked: list[Request] = []
    monkeypatch.setattr(control, "_peer", lambda sock: Peer(4242, os.getuid() + 4242))
    async with trio.open_nursery() as nursery:
        await _answering(path, asked, nursery)
        stream = await trio.open_unix_socket(str(path))
        said = b""
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError):  # closed, maybe unread
                await stream.send_all(b'{"action":"list"}\n')
                said = await stream.receive_some()
        assert said == b""
        assert asked == []
        nursery.cancel_scope.cancel()


async def test_a_request_that_fails_is_logged_without_its_password_hash(
    tmp_path: Path, autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "chat.db.control"
    secret = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"
    asked: list[Request] = []
    with caplog.at_level(logging.ERROR, logger="trio_chat.control"):
        async with trio.open_nursery() as nursery:
            await _answering(path, asked, nursery, fails=True)
            data = control._encode(Request("password", "alice", password_hash=secret))
            reply = await ask_here(path, data + b"\n")
            assert (reply.ok, reply.code) == (False, "failed")
            nursery.cancel_scope.cancel()
    assert "error answering Request(action='password', name='alice')" in caplog.text
    assert "argon2id" not in caplog.text


async def test_making_the_socket_leaves_the_daemons_umask_as_it_was(tmp_path: Path) -> None:
    """Files the daemon makes later (a database, its keys) get the modes they ask for,
    not the socket's."""
    before = os.umask(0o027)
    try:
        listener = open_control(tmp_path / "chat.db.control")
        await listener.aclose()
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(before)


async def test_the_daemon_tells_the_desk_whether_a_change_was_stored() -> None:
    """A change the database refused is answered as not stored, one it took as stored."""
    reports: list[bool] = []
    daemon = SimpleNamespace(
        engine=SimpleNamespace(failed=lambda op, earlier: None, committed=lambda *a: None),
        desk=SimpleNamespace(reported=lambda op, stored: reports.append(stored)),
        _flush_soon=lambda: None,
    )
    Daemon.failed(cast(Daemon, daemon), PasswordSet(1, lock=True), None)
    Daemon.committed(cast(Daemon, daemon), PasswordSet(1, lock=True))
    made = Account(2, "bob", "bob", "hash", "2026-12-07T10:00:00.000Z")  # `accounts add`
    Daemon.failed(cast(Daemon, daemon), made, None)
    Daemon.committed(cast(Daemon, daemon), made)
    assert reports == [False, True, False, True]


def test_a_command_sends_nothing_to_another_users_socket_and_says_when_none_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request (a password hash, say) goes only to a listener of root, this user or the
    database's owner; one taken and never answered is said to be, for its exit status."""
    path = tmp_path / "chat.db.control"
    other = os.getuid() + 4242
    monkeypatch.setattr(control, "_peer", lambda sock: Peer(1, other))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listening:
        listening.bind(str(path))
        listening.listen(4)
        with pytest.raises(ControlRefused) as refused:
            ask(path, Request("list"), timeout=0.5)
        assert "is another user's (user id" in str(refused.value)
        assert not refused.value.unanswered
        with pytest.raises(ControlRefused) as refused:  # the database's owner's: asked
            ask(path, Request("list"), owners={other}, timeout=0.5)
        assert str(refused.value).startswith("The daemon did not answer")
        assert refused.value.unanswered


async def test_the_desk_makes_an_account_with_the_commands_hash_once_stored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    driver = EngineDriver()
    driver.add_account("alice")
    hashed = hash_password(PASSWORD)
    failing = Stored(driver, "fail")
    refused = await failing.desk.answer(Request("add", "bob", hashed))
    assert (refused.ok, refused.code, refused.message) == (False, "not_stored", NOT_STORED)
    assert "bob" not in driver.engine.accounts
    desk = Operated(driver).desk
    with caplog.at_level(logging.INFO, logger="trio_chat"):
        made = await desk.answer(Request("add", "bob", hashed))  # the name free again
    assert made.ok and [(a.name, a.locked, a.sessions) for a in made.accounts] == [
        ("bob", False, 0)
    ]
    assert driver.engine.accounts["bob"].password_hash == hashed
    assert operator_said(caplog) == ["the operator made the account bob"]
    assert await desk.answer(Request("add", "Bob", hashed)) == Reply(
        False, "name_taken", "The name 'Bob' is taken; choose another."
    )
    assert await desk.answer(Request("add", "aIice", hashed)) == Reply(
        False, "name_taken", "The name 'aIice' could be mistaken for 'alice'; choose another."
    )
    unhashed = await desk.answer(Request("add", "carol", PASSWORD))
    assert (unhashed.ok, unhashed.code) == (False, "bad_request")
    for hash_given in (hashed, ""):  # made, or only asked whether it could be
        invalid = await desk.answer(Request("add", "no one", hash_given))
        assert (invalid.ok, invalid.code) == (False, "invalid_name")
        assert invalid.message.startswith("A name may hold only letters")
    assert "carol" not in driver.engine.accounts


def test_a_name_a_running_daemon_would_refuse_is_refused_before_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`accounts add` on a running daemon: a name too like an account's, or one a
    registration is making, is refused before the password is asked for, as on a
    stopped daemon; a free one is made."""
    driver = EngineDriver()
    driver.add_account("alice")
    driver.auto_hash = False
    registering = Client(driver, None, address=("10.0.0.1", 1))
    registering.send(wire.Register(rid="r1", name="dave", password=PASSWORD))
    desk = Operated(driver).desk
    asked: list[Request] = []

    def ask(path: Path, request: Request, owners: set[int] | None = None) -> Reply:
        asked.append(request)
        return trio.run(desk.answer, request)

    monkeypatch.setattr(accounts_command, "ask", ask)
    add = functools.partial(add_account, tmp_path)
    # Nothing is given for a password: asked for it, each would say the input ended.
    assert add("aIice") == (
        ExitCode.NAME_TAKEN,
        "",
        "The name 'aIice' could be mistaken for 'alice'; choose another.\n",
    )
    assert add("Dave") == (ExitCode.NAME_TAKEN, "", "The name 'Dave' is taken; choose another.\n")
    assert [request.password_hash for request in asked] == ["", ""]
    assert add("erin", f"{PASSWORD}\n{PASSWORD}\n")[:2] == (0, "Made the account erin.\n")
    assert is_password_hash(driver.engine.accounts["erin"].password_hash)


def test_a_running_daemon_removes_an_account_at_once_and_logs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    driver = EngineDriver()
    for name in ("alice", "bob"):
        driver.add_account(name)
    alice = Client(driver, "alice", address=("10.0.0.1", 1))
    laptop = Client(driver, "alice", address=("10.0.0.2", 1))
    for client in (alice, laptop):
        client.settle()
    desk = Operated(driver).desk

    def ask(path: Path, request: Request, owners: set[int] | None = None) -> Reply:
        return trio.run(desk.answer, request)

    monkeypatch.setattr(accounts_command, "ask", ask)
    command = ["accounts", "remove", "alice", "--yes", "--db", str(tmp_path / "chat.db")]
    with caplog.at_level(logging.INFO, logger="trio_chat"):
        removed = CliRunner().invoke(cli_app, command)
    assert (removed.exit_code, removed.stdout) == (0, "Removed alice; 2 sessions ended.\n")
    for client in (alice, laptop):
        client.settle()
        assert isinstance(client.connection.failure, AccountRemoved)
    assert operator_said(caplog) == ["the operator removed the account alice (2 sessions ended)"]
    listed = trio.run(desk.answer, Request("list"))
    assert [line.name for line in listed.accounts] == ["bob"]
    again = CliRunner().invoke(cli_app, command)
    assert again.exit_code == ExitCode.UNKNOWN_USER
