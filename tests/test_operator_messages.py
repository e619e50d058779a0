"""The operator removing a message of the room (`trio-chat messages`): kept as a mark with
its text gone, left out of every history from then on, and told to everyone in the room
(`unsaid`), whose programs show it no more."""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
import trio
from pytestqt.qtbot import QtBot
from typer.testing import CliRunner

import trio_chat
import trio_chat.store as store_module
from trio_chat import wire
from trio_chat.cli import ExitCode
from trio_chat.cli import app as cli_app
from trio_chat.cli import messages as messages_command
from trio_chat.client import ChatClient
from trio_chat.control import Reply, Request, ask, control_path
from trio_chat.conversation import Room
from trio_chat.display import Line, stamp, to_plain, unsaid_line
from trio_chat.events import History, MessageRemoved, PublicMessage
from trio_chat.gui.message_view import MessageModel
from trio_chat.gui.rows import UNSAID, Span, message_row, note_row, unsaid_row
from trio_chat.gui.transcript import Transcript
from trio_chat.records import Account, Message, MessageRemoval, Snapshot
from trio_chat.store import REMOVALS_LOADED, SqliteStore
from trio_chat.store_files import StorageError, room_message, room_messages
from trio_chat.store_schema import MIGRATIONS, SCHEMA_VERSION
from trio_chat.testing.daemon import DaemonProcess
from trio_chat.testing.driver import EngineDriver, Peer

from .test_operator_accounts import PASSWORD, operator
from .test_operator_control import Operated, operator_said

TS = "2026-12-06T16:00:00.000Z"


def _stored(path: Path) -> SqliteStore:
    store = SqliteStore.open(path)
    store.write(
        [
            Account(1, "alice", "alice", "hash", TS),
            Account(2, "bob", "bob", "hash", TS),
            Message(10, TS, 1, "alice", "hello", cid="c1"),
            Message(11, TS, 2, "bob", "buy cheap watches", cid="c2"),
            Message(12, TS, 1, "alice", "psst", recipient_id=2, recipient="bob", cid="c3"),
            Message(13, TS, 1, "alice", "bye", cid="c4"),
        ]
    )
    return store


def test_a_removed_message_is_kept_as_a_mark_and_left_out_of_every_history(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chat.db"
    store = _stored(path)
    store.write([MessageRemoval(11), MessageRemoval(12)])  # 12 is private: not the room's
    snapshot = store.load(window=10)
    assert [m.id for m in snapshot.recent] == [10, 12, 13]
    assert snapshot.removals == [(13, 11)]  # the private one was not the room's to remove
    assert snapshot.public_count == 2
    assert [m.id for m in store.history(2, None, 10)] == [10, 12, 13]
    assert [m.text for m in room_messages(path, 10)] == ["hello", "bye"]
    assert room_message(path, 11) is True  # removed: its mark is there
    assert room_message(path, 12) is False  # a private message is no room message
    assert room_message(path, 99) is False
    assert isinstance(room_message(path, 10), Message)
    assert [m.id for m in room_messages(path, 10, sender_key="alice")] == [10, 13]
    assert room_messages(path, 10, sender_key="bob") == []  # bob's only one is removed
    with pytest.raises(LookupError):
        room_messages(path, 10, sender_key="carol")  # no such account
    assert [m.id for m in room_messages(path, 1)] == [13]  # the latest
    # Its sender sending it again is answered with it, not given a new copy.
    earlier = store.sent(2, "c2")
    assert earlier is not None and (earlier.id, earlier.text) == (11, "")
    store.close()
    with sqlite3.connect(path) as db:
        # Marked with the newest message stored then, for clients that come back.
        assert db.execute("SELECT text, removed FROM messages WHERE id = 11").fetchone() == ("", 13)
    db.close()


def test_a_start_loads_the_latest_removals_each_marked_once_oldest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that had seen up to a removal's mark is told of it when it comes back."""
    monkeypatch.setattr(store_module, "REMOVALS_LOADED", 2)
    store = _stored(tmp_path / "chat.db")
    store.write([MessageRemoval(11)])  # marked 13, the newest then
    store.write([Message(14, TS, 2, "bob", "more", cid="c5"), MessageRemoval(13)])
    store.write([MessageRemoval(10)])
    store.write([MessageRemoval(11)])  # removed already: its mark stays
    snapshot = store.load(window=10)
    assert snapshot.removals == [(14, 10), (14, 13)]  # the latest two, not 11's
    assert [m.id for m in snapshot.recent] == [12, 14]
    store.close()


def test_an_old_database_is_read_once_a_daemon_upgraded_it(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    with sqlite3.connect(path) as db:
        for migration in MIGRATIONS[: SCHEMA_VERSION - 1]:
            db.executescript(migration)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    db.close()
    with pytest.raises(StorageError, match="a daemon upgrades its database when it starts"):
        room_messages(path, 10)
    SqliteStore.open(path).close()
    assert room_messages(path, 10) == []


def test_an_upgrade_takes_a_column_there_already_as_added(tmp_path: Path) -> None:
    # A database whose schema 7 had the removal mark already (numbered so by a trio-chat
    # before this one), and one whose schema 7 had bans' ends only: both upgrade.
    for has_mark in (True, False):
        path = tmp_path / f"chat-{has_mark}.db"
        with sqlite3.connect(path) as db:
            for migration in MIGRATIONS[:7]:
                db.executescript(migration)
            if has_mark:
                db.execute("ALTER TABLE messages ADD COLUMN removed INTEGER NOT NULL DEFAULT 0")
            db.execute("PRAGMA user_version = 7")
        db.close()
        SqliteStore.open(path).close()
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
            columns = [row[1] for row in db.execute("PRAGMA table_info(messages)")]
        db.close()
        assert columns.count("removed") == 1


def test_the_room_is_told_and_history_leaves_it_out() -> None:
    driver = EngineDriver()
    for name in ("alice", "bob"):
        driver.add_account(name)
    alice = Peer(driver, "alice", address=("198.51.100.1", 1))
    bob = Peer(driver, "bob", address=("198.51.100.2", 1))
    for peer in (alice, bob):
        peer.settle()
    for text in ("hello", "buy cheap watches", "bye"):
        alice.connection.say(text)
        alice.settle()
    bob.settle()
    spam = next(m for m in driver.stored_messages() if m.text == "buy cheap watches")
    driver.auto_commit = False
    op = MessageRemoval(spam.id)
    driver.engine.remove_message(op)
    driver.pump()
    assert driver.uncommitted == [op]
    bob.settle()
    assert MessageRemoved(spam.id) not in bob.events  # not before it is stored
    driver.commit_held()
    for peer in (alice, bob):
        peer.settle()
        assert peer.events[-1] == MessageRemoved(spam.id)
    # Those who come later are not shown it: on entering, or asking for history (read
    # here from a store that still has it, as a read made before the removal does).
    driver.add_account("carol")
    carol = Peer(driver, "carol", address=("198.51.100.3", 1))
    carol.settle()
    (entered,) = [e for e in carol.events if isinstance(e, History)]
    assert [m.text for m in entered.messages] == ["hello", "bye"]
    receipt = carol.connection.history(10)
    carol.settle()
    assert receipt.done and [m.text for m in receipt.result] == ["hello", "bye"]


def _room(*names: str) -> tuple[EngineDriver, list[Peer]]:
    driver = EngineDriver()
    for name in names:
        driver.add_account(name)
    peers = [Peer(driver, name, address=(f"198.51.100.{n}", 1)) for n, name in enumerate(names)]
    for peer in peers:
        peer.settle()
    return driver, peers


def test_a_message_removed_twice_at_once_is_told_and_counted_once() -> None:
    driver, (alice, bob) = _room("alice", "bob")
    for text in ("m1", "m2", "m3", "m4"):
        alice.connection.say(text)
        alice.settle()
    bob.settle()
    newest = driver.stored_messages()[-1]
    for _ in range(2):
        driver.engine.remove_message(MessageRemoval(newest.id))
    driver.pump()
    bob.settle()
    assert [e for e in bob.events if isinstance(e, MessageRemoved)] == [MessageRemoved(newest.id)]
    assert driver.engine.chat.window.public_count == 3


def test_a_history_read_while_a_message_is_removed_is_still_a_whole_page() -> None:
    driver, (alice, bob) = _room("alice", "bob")
    for text in ("m1", "m2", "m3", "m4", "m5"):
        alice.connection.say(text)
        alice.settle()
    bob.settle()
    m4, m5 = driver.stored_messages()[3:5]
    driver.auto_read = False
    receipt = bob.connection.history(3, before=m5.id)
    bob.settle()
    driver.engine.remove_message(MessageRemoval(m4.id))  # stored while the page is read
    driver.pump()
    driver.finish_reads()
    bob.settle()
    assert receipt.done and [m.text for m in receipt.result] == ["m1", "m2", "m3"]


def _spam_said_and_removed() -> tuple[EngineDriver, Peer, Message]:
    """Alice says spam in a room with bob, and the operator removes it."""
    driver, (alice, _bob) = _room("alice", "bob")
    alice.connection.say("buy cheap watches")
    alice.settle()
    spam = driver.stored_messages()[-1]
    driver.engine.remove_message(MessageRemoval(spam.id))
    driver.pump()
    return driver, alice, spam


def test_a_removed_message_sent_again_is_answered_and_said_removed() -> None:
    # Its `ok` lost, its client sends it again after the operator removed it: answered
    # (not stored anew), and told it is removed, else its client shows it again.
    driver, alice, spam = _spam_said_and_removed()
    alice.settle()
    assert spam.cid is not None
    handle = alice.request(wire.Say(text=spam.text, cid=spam.cid))
    alice.settle()
    ok, unsaid = alice.frames[-2:]
    assert isinstance(ok, wire.Ok) and (ok.re, ok.id) == (handle.seq, spam.id)
    assert unsaid == wire.Unsaid(id=spam.id)
    assert len(driver.stored_messages()) == 1
    # After a restart, the store's copy of a removed message has no text: the same.
    stored = dataclasses.replace(spam, text="")
    assert driver.engine.chat.removed(stored)
    assert not driver.engine.chat.removed(dataclasses.replace(spam, id=spam.id + 1))


def test_a_removed_message_sent_again_after_a_restart_is_answered_and_said_removed() -> None:
    """The restarted daemon no longer has it in memory: the store refuses the resend as
    a copy and hands back what it holds, a removed message with no text. Its `ok` comes
    with its `unsaid` all the same."""
    driver, _alice, spam = _spam_said_and_removed()
    accounts = driver.stored_accounts()
    restarted = EngineDriver(
        snapshot=Snapshot(
            accounts=accounts,
            next_message_id=spam.id + 1,
            next_account_id=len(accounts) + 1,
            removals=[(spam.id, spam.id)],
        )
    )
    back = Peer(restarted, "alice", address=("198.51.100.9", 1))
    back.settle()
    restarted.auto_commit = False
    assert spam.cid is not None
    handle = back.request(wire.Say(text=spam.text, cid=spam.cid))
    back.flush()
    (copy,) = restarted.uncommitted  # not known in memory: taken to the store
    assert isinstance(copy, Message)
    restarted.uncommitted = []
    restarted.engine.failed(copy, dataclasses.replace(spam, text=""))
    restarted.pump()
    back.settle()
    ok, unsaid = back.frames[-2:]
    assert isinstance(ok, wire.Ok) and (ok.re, ok.id) == (handle.seq, spam.id)
    assert unsaid == wire.Unsaid(id=spam.id)


def test_a_client_coming_back_is_told_the_removals_made_while_it_was_away() -> None:
    driver, (alice, bob) = _room("alice", "bob")
    for text in ("hello", "buy cheap watches", "bye"):
        alice.connection.say(text)
        alice.settle()
    bob.settle()
    hello, spam, bye = driver.stored_messages()
    driver.engine.remove_message(MessageRemoval(hello.id))  # while bob is there
    driver.pump()
    bob.settle()
    bob.connection.close()  # bob goes, having seen up to `bye`
    bob.settle()
    driver.engine.remove_message(MessageRemoval(spam.id))
    driver.pump()
    back = Peer(driver, "bob", address=("198.51.100.9", 1), since=bye.id)
    back.settle()
    removed = [e for e in back.events if isinstance(e, MessageRemoved)]
    assert MessageRemoved(spam.id) in removed
    (history,) = [e for e in back.events if isinstance(e, History)]
    assert history.messages == ()  # nothing newer than `bye` to show
    # After a restart too: the removals come from the store's marks.
    restarted = EngineDriver(snapshot=Snapshot(removals=[(bye.id, spam.id)]))
    restarted.add_account("bob")
    again = Peer(restarted, "bob", address=("198.51.100.11", 1), since=bye.id)
    again.settle()
    assert MessageRemoved(spam.id) in again.events
    # A client that had shown nothing (`since` 0), or not that message, is told nothing.
    for since in (0, hello.id):
        none = Peer(restarted, "bob", address=("198.51.100.12", since + 1), since=since)
        none.settle()
        assert none.connection.ready
        assert not [e for e in none.events if isinstance(e, MessageRemoved)]
    # A first login, which shows nothing it had, is told of none.
    fresh = Peer(driver, "bob", address=("198.51.100.10", 1))
    fresh.settle()
    assert fresh.connection.ready
    assert not [e for e in fresh.events if isinstance(e, MessageRemoved)]


def test_a_client_shows_a_removed_message_no_more() -> None:
    # Today's: a line stamped another day shows its date (a fixed day failed from the next).
    when = datetime.now(UTC).replace(second=1, microsecond=0)
    shown = PublicMessage(11, when, "bob", "buy cheap watches")
    line = to_plain(unsaid_line(shown, "alice", when))
    assert re.fullmatch(
        r"\[\d\d:\d\d:01\] \* the operator removed bob's message of \d\d:\d\d:01", line
    )
    assert "removed your message" in to_plain(unsaid_line(shown, "bob", when))
    transcript = Transcript()
    for message in (PublicMessage(10, when, "alice", "hi"), shown):
        row = message_row(message, "alice")
        transcript.apply(transcript.plan_message(row) or pytest.fail("not planned"))
    transcript.apply(transcript.plan_note(note_row("bob joined", when)))
    index = transcript.index_of_message(11)
    assert index == 1 and transcript.index_of_message(12) is None
    transcript.replace_message(unsaid_row(transcript[1]))
    assert transcript[1].plain.endswith("bob: " + UNSAID) and transcript[1].message_id == 11
    assert transcript[1].spans[-1] == Span(UNSAID, transcript[1].spans[-1].style)
    assert transcript.plan_message(message_row(shown, "alice")) is None  # sent again: no copy
    assert [row.plain.split("  ", 1)[1] for row in transcript.rows[:1]] == ["alice: hi"]


async def messages(database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await operator("messages", database, *args)


async def test_an_operator_removes_a_message_while_the_daemon_runs_and_while_stopped(
    tmp_path: Path,
) -> None:
    database = tmp_path / "chat.db"
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, database)
            host, port = await daemon.start(accounts=("alice", "bob"), password=PASSWORD)
            async with (
                trio_chat.connect(host, port, "alice", PASSWORD) as alice,
                trio_chat.connect(host, port, "bob", PASSWORD) as bob,
            ):
                said = [await alice.say(text) for text in ("hello", "buy \x1b[31mwatches", "bye")]
                spam = said[1].id
                listed = await messages(database, "list", "--last", "2")
                assert listed.returncode == 0, listed.stderr
                assert listed.stdout == (
                    f"{spam}  {said[1].ts:%Y-%m-%dT%H:%M:%S.%f}"[:-3]
                    + "Z  alice: buy \\x1b[31mwatches\n"
                    f"{said[2].id}  {said[2].ts:%Y-%m-%dT%H:%M:%S.%f}"[:-3]
                    + "Z  alice: bye\n"
                )
                assert listed.stderr == "2 messages.\n"
                spam_as_stored = room_message(database, spam)
                assert isinstance(spam_as_stored, Message)
                removed = await messages(database, "remove", str(spam))
                assert removed.returncode == 0, removed.stderr
                assert removed.stdout.startswith(f"Removed the message {spam} (alice, 20")
                async for event in bob.events():
                    if isinstance(event, MessageRemoved):
                        assert event.id == spam
                        break
                page = await bob.history(10)
                assert [m.text for m in page] == ["hello", "bye"]
                assert re.search(
                    rf"the operator \(user id \d+, process \d+\) removed the message {spam}",
                    daemon.text,
                )
                unknown = said[2].id + 10**6
                again = await messages(database, "remove", str(said[0].id), str(spam), str(unknown))
                assert (again.returncode, again.stderr) == (
                    ExitCode.UNKNOWN_MESSAGE,
                    f"There is no message {unknown} in the room's history, so none of those "
                    "given was removed; `trio-chat messages list` shows them.\n",
                )
                assert [m.text for m in await bob.history(10)] == ["hello", "bye"]  # not one
                already = await messages(database, "remove", str(spam))
                assert (already.returncode, already.stdout) == (
                    0,
                    f"The message {spam} was removed already.\n",
                )
                # Removed by another command between this one's look and its request:
                # the daemon says so, and the command too, as done.
                with pytest.MonkeyPatch.context() as patch:
                    patch.setattr(messages_command, "_look_up", lambda *_a: spam_as_stored)
                    raced = await trio.to_thread.run_sync(
                        functools.partial(
                            CliRunner().invoke,
                            cli_app,
                            ["messages", "remove", str(spam), "--db", str(database)],
                        )
                    )
                assert (raced.exit_code, raced.stdout) == (
                    0,
                    f"The message {spam} was removed already.\n",
                )
                # Asked directly (not through the command, which looks first): a private
                # message is no room message to remove; one removed already is said so
                # (removed by another command meanwhile).
                psst = await alice.whisper("bob", "psst")
                for message_id, code in ((psst.id, "unknown_message"), (spam, "removed_already")):
                    reply = await trio.to_thread.run_sync(
                        ask, control_path(database), Request("unsay", message=message_id)
                    )
                    assert reply is not None
                    assert (reply.ok, reply.code) == (False, code)
                assert [m.text for m in await bob.history(10)] == ["hello", "bye", "psst"]
            assert await daemon.stop() == 0
    # Stopped: the database itself.
    mine = await messages(database, "list", "--from", "ALICE")
    assert mine.stdout.count("alice: ") == 2 and mine.stderr == "2 messages from alice.\n"
    removed = await messages(database, "remove", str(spam), str(said[0].id))
    assert removed.returncode == 0, removed.stderr
    first, second = removed.stdout.splitlines()
    assert first == f"The message {spam} was removed already."
    assert second.startswith(f"Removed the message {said[0].id} (alice, 20")
    # bye stays (`left`, below): nothing goes when an id is unknown.
    gone = [str(said[2].id + n * 10**6) for n in (1, 2)]
    with_unknown = await messages(database, "remove", gone[0], str(said[2].id), gone[1])
    assert (with_unknown.returncode, with_unknown.stdout, with_unknown.stderr) == (
        ExitCode.UNKNOWN_MESSAGE,
        "",
        f"There are no messages {gone[0]} and {gone[1]} in the room's history, so none of "
        "those given was removed; `trio-chat messages list` shows them.\n",
    )
    both = await messages(database, "remove", str(spam), str(said[0].id))
    assert (both.returncode, both.stdout) == (
        0,
        f"The message {spam} was removed already.\nThe message {said[0].id} was removed already.\n",
    )
    left = await messages(database, "list")
    assert left.stdout.endswith("alice: bye\n") and left.stderr == "1 message.\n"
    nobody = await messages(database, "list", "--from", "carol")
    assert (nobody.returncode, nobody.stderr) == (
        ExitCode.UNKNOWN_USER,
        "There is no account named 'carol'; `trio-chat accounts list` shows them.\n",
    )
    quiet = await messages(database, "list", "--from", "bob")
    assert (quiet.returncode, quiet.stderr) == (0, "No messages from bob in the room's history.\n")
    # A backup and its restore count what the room's history and mailboxes hold: bye and
    # the private psst, not the two marks.
    backed = await operator("backup", database, str(tmp_path / "bk"))
    assert "(2 accounts, 2 messages)" in backed.stdout, backed.stderr
    restored = await operator("restore", tmp_path / "new" / "chat.db", str(tmp_path / "bk"))
    assert "(2 accounts, 2 messages)" in restored.stdout, restored.stderr
    huge = await messages(database, "remove", str(2**63))
    assert huge.returncode == ExitCode.USAGE and "Traceback" not in huge.stderr
    missing = await messages(tmp_path / "none.db", "list")
    assert missing.returncode == ExitCode.DATABASE


def test_a_window_told_first_shows_the_message_removed_when_it_comes(qtbot: QtBot) -> None:
    # A page read meanwhile, or the answer to a message sent again, may come after its
    # removal was told: it is shown removed, not as it was.
    model = MessageModel()
    when = datetime(2026, 12, 6, 16, 0, 1, tzinfo=UTC)
    model.unsay(11)  # not shown yet: nothing to change
    assert model.rows == []
    model.add_message(message_row(PublicMessage(11, when, "bob", "buy cheap watches"), "alice"))
    model.add_message(message_row(PublicMessage(12, when, "bob", "sorry"), "alice"))
    assert [row.plain.split("  ", 1)[1] for row in model.rows] == [f"bob: {UNSAID}", "bob: sorry"]


def test_a_terminal_says_a_removal_once_however_often_it_is_told() -> None:
    # A client coming back is told again of removals made while it was there.
    lines: list[Line] = []
    chat = cast(ChatClient, SimpleNamespace(name="alice"))
    room = Room(chat, lines.append, print, interactive=False)
    when = datetime(2026, 12, 6, 16, 0, 1, tzinfo=UTC)
    room._show_event(PublicMessage(11, when, "bob", "buy cheap watches"))
    for _ in range(2):
        room._show_event(MessageRemoved(11))
    said = [to_plain(line) for line in lines if "the operator removed" in to_plain(line)]
    assert len(said) == 1 and said[0].endswith(f"bob's message of {stamp(when)[1:-1]}")


def test_a_client_coming_back_is_told_of_the_latest_1000_removals() -> None:
    # "of the latest 1,000 removals, a restart between or not": 1,001 removals made while
    # bob was away (each of a message he had seen), the oldest beyond what is kept.
    removals = [(5000 + n, n) for n in range(1, 1002)]
    driver = EngineDriver(snapshot=Snapshot(removals=removals))
    driver.add_account("bob")
    back = Peer(driver, "bob", address=("198.51.100.13", 1), since=1001)
    back.settle(rounds=100)  # 1,000 frames, 64 at a time
    assert back.connection.ready
    told = [e for e in back.events if isinstance(e, MessageRemoved)]
    assert told == [MessageRemoved(n) for n in range(2, 1002)]
    assert len(told) <= REMOVALS_LOADED  # a daemon started since reads as many from its store


async def test_the_desk_removes_a_room_message_its_database_has_and_says_why_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "chat.db"
    store = _stored(path)  # 10 hello, 11 spam, 12 private, 13 bye
    driver = EngineDriver(snapshot=store.load(window=10))
    store.write([MessageRemoval(10)])  # by a stopped daemon's command, as this one started
    desk = Operated(driver, path).desk
    with caplog.at_level(logging.INFO, logger="trio_chat"):
        removed = await desk.answer(Request("unsay", message=11))
        assert removed == Reply(True)
        again = await desk.answer(Request("unsay", message=11))  # the database has it still
        earlier = await desk.answer(Request("unsay", message=10))  # this daemon never saw it
        for reply, message_id in ((again, 11), (earlier, 10)):
            assert (reply.ok, reply.code) == (False, "removed_already")
            assert reply.message == f"The message {message_id} was removed already."
        for missing in (12, 99, 0):
            reply = await desk.answer(Request("unsay", message=missing))
            assert (reply.ok, reply.code) == (False, "unknown_message")
            assert reply.message == (
                f"There is no message {missing} in the room's history; "
                "`trio-chat messages list` shows them."
            )
    store.close()
    assert [op for op in driver.stored if isinstance(op, MessageRemoval)] == [MessageRemoval(11)]
    assert operator_said(caplog) == ["the operator removed the message 11"]
    told = [r for r in caplog.records if getattr(r, "event", None) == "operator"]
    assert [getattr(r, "fields", {}).get("message_id") for r in told] == ["11"]


def test_an_id_given_twice_is_removed_once_and_one_unknown_of_two_stops_both(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chat.db"
    _stored(path).close()  # 10 hello, 11 spam, 12 private, 13 bye; no daemon runs
    runner = CliRunner()
    unknown = runner.invoke(cli_app, ["messages", "remove", "10", "99", "--db", str(path)])
    assert (unknown.exit_code, unknown.stdout, unknown.stderr) == (
        ExitCode.UNKNOWN_MESSAGE,
        "",
        "There is no message 99 in the room's history, so none of those given was removed; "
        "`trio-chat messages list` shows them.\n",
    )
    twice = runner.invoke(cli_app, ["messages", "remove", "11", "11", "--db", str(path)])
    assert (twice.exit_code, twice.stdout) == (0, f"Removed the message 11 (bob, {TS}).\n")
    assert [m.id for m in room_messages(path, 10)] == [10, 13]
