"""The daemon and the client API over real UDP on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import functools
import sqlite3
from pathlib import Path
from typing import TypeVar

import pytest
import trio
import trio.testing

import trio_chat
from tests.conftest import TEST_CONFIG
from trio_chat import wire
from trio_chat.client import ChatClient, ClientConfig
from trio_chat.engine import ServerConfig
from trio_chat.keys import daemon_keys
from trio_chat.secure import DaemonKeys
from trio_chat.server import serve
from trio_chat.trust import fetch_key

PASSWORD = "correct horse"
FAST = ClientConfig(timeout=2.0)
E = TypeVar("E")


async def next_event(chat: ChatClient, kind: type[E]) -> E:
    """The next event of `kind` (others are skipped), within a few seconds."""
    with trio.fail_after(5):
        async for event in chat.events():
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the event stream ended before a {kind.__name__}")


async def register_all(host: str, port: int, *names: str) -> None:
    for name in names:
        await trio_chat.register(host, port, name, PASSWORD)


async def test_register_login_chat_whisper_who_and_leave(daemon: tuple[str, int]) -> None:
    host, port = daemon
    with trio.fail_after(20):
        assert await trio_chat.register(host, port, "Alice", PASSWORD) == "Alice"
        await register_all(host, port, "bob", "carol")
        with pytest.raises(trio_chat.NameTaken, match="taken"):
            await trio_chat.register(host, port, "alice", PASSWORD)
        async with (
            trio_chat.connect(host, port, "alice", PASSWORD) as alice,
            trio_chat.connect(host, port, "bob", PASSWORD) as bob,
        ):
            assert alice.name == "Alice"
            assert (await next_event(alice, trio_chat.Joined)).name == "bob"
            assert await bob.who() == ["Alice", "bob"]

            said = await alice.say("你好，世界 🙂")
            heard = await next_event(bob, trio_chat.PublicMessage)
            assert (heard.id, heard.sender, heard.text) == (said.id, "Alice", "你好，世界 🙂")
            assert heard.ts == said.ts and heard.ts.tzinfo is not None

            whispered = await bob.whisper("ALICE", "just between us")
            assert whispered.recipient == "Alice"  # the name as the daemon keeps it
            private = await next_event(alice, trio_chat.PrivateMessage)
            assert (private.sender, private.recipient, private.text) == (
                "bob",
                "Alice",
                "just between us",
            )
            assert private.id == whispered.id

            with pytest.raises(trio_chat.UnknownUser):
                await alice.whisper("nobody", "hello?")
            with pytest.raises(trio_chat.TextTooLong):
                await alice.say("x" * 501)
            # 251 characters, 251 bytes of UTF-8: a quote counts 2 (JSON escapes it), and
            # the sentence says so, not only "500 bytes of UTF-8".
            with pytest.raises(trio_chat.TextTooLong, match="a quote, backslash or tab counting 2"):
                await alice.say('"' * 251)

            await bob.logout()
            left = await next_event(alice, trio_chat.Left)
            assert (left.name, left.reason) == ("bob", "quit")
            assert await alice.who() == ["Alice"]


async def test_two_sessions_of_one_account_both_get_its_private_messages(
    daemon: tuple[str, int],
) -> None:
    host, port = daemon
    with trio.fail_after(20):
        await register_all(host, port, "alice", "bob")
        async with (
            trio_chat.connect(host, port, "bob", PASSWORD) as bob_laptop,
            trio_chat.connect(host, port, "bob", PASSWORD) as bob_phone,
            trio_chat.connect(host, port, "alice", PASSWORD) as alice,
        ):
            await alice.whisper("bob", "both of you")
            for session in (bob_laptop, bob_phone):
                message = await next_event(session, trio_chat.PrivateMessage)
                assert message.text == "both of you"
            # A message from one of bob's sessions shows on the other.
            await bob_laptop.say("from the laptop")
            echo = await next_event(bob_phone, trio_chat.PublicMessage)
            assert (echo.sender, echo.text) == ("bob", "from the laptop")
            assert await alice.who() == ["alice", "bob"]


async def test_offline_private_messages_wait_for_the_next_login(daemon: tuple[str, int]) -> None:
    host, port = daemon
    with trio.fail_after(20):
        await register_all(host, port, "alice", "bob")
        async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
            await alice.whisper("bob", "read this when you are back")
            await alice.say("public while bob is away")
        async with trio_chat.connect(host, port, "bob", PASSWORD) as bob:
            assert bob.unread == 1
            history = await next_event(bob, trio_chat.History)
            assert [(type(m).__name__, m.text, m.history) for m in history.messages] == [
                ("PrivateMessage", "read this when you are back", True),
                ("PublicMessage", "public while bob is away", True),
            ]
        # Delivered once: the next login does not show the private message again.
        async with trio_chat.connect(host, port, "bob", PASSWORD) as bob:
            assert bob.unread == 0
            history = await next_event(bob, trio_chat.History)
            assert [m.text for m in history.messages] == ["public while bob is away"]


async def test_history_on_login_and_older_pages(daemon: tuple[str, int]) -> None:
    host, port = daemon
    with trio.fail_after(30):
        await register_all(host, port, "alice", "bob")
        async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
            for n in range(30):
                alice.say_nowait(f"message {n:02d}")
            await alice.drain()
        async with trio_chat.connect(host, port, "bob", PASSWORD) as bob:
            history = await next_event(bob, trio_chat.History)
            assert [m.text for m in history.messages] == [f"message {n:02d}" for n in range(10, 30)]
            assert history.more
            older = await bob.history(limit=8, before=history.messages[0].id)
            assert [m.text for m in older] == [f"message {n:02d}" for n in range(2, 10)]
            assert all(m.history for m in older)
            oldest = await bob.history(limit=100, before=older[0].id)
            assert [m.text for m in oldest] == ["message 00", "message 01"]


async def test_a_restarted_daemon_keeps_accounts_and_history(db_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(serve, "127.0.0.1", 0, db_path, TEST_CONFIG)
            await register_all(host, port, "alice", "bob")
            async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
                await alice.say("before the restart")
                await alice.whisper("bob", "private, before the restart")
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(serve, "127.0.0.1", 0, db_path, TEST_CONFIG)
            with pytest.raises(trio_chat.NameTaken):
                await trio_chat.register(host, port, "ALICE", PASSWORD)
            with pytest.raises(trio_chat.WrongPassword):
                async with trio_chat.connect(host, port, "bob", "not the password"):
                    pass
            async with trio_chat.connect(host, port, "bob", PASSWORD) as bob:
                history = await next_event(bob, trio_chat.History)
                assert [m.text for m in history.messages] == [
                    "before the restart",
                    "private, before the restart",
                ]
                said = await bob.say("after the restart")
                assert said.id > history.messages[-1].id
            nursery.cancel_scope.cancel()
    check_database(db_path, accounts=2)


def check_database(db_path: Path, accounts: int) -> None:
    """Passwords only as argon2id hashes, WAL mode, readable by the owner only."""
    with sqlite3.connect(db_path) as db:
        hashes = [row[0] for row in db.execute("SELECT password_hash FROM accounts")]
        (mode,) = db.execute("PRAGMA journal_mode").fetchone()
    assert all(h.startswith("$argon2id$") for h in hashes) and len(hashes) == accounts
    assert PASSWORD.encode() not in db_path.read_bytes()
    assert mode == "wal"
    assert db_path.stat().st_mode & 0o777 == 0o600


async def test_an_absent_daemon_is_reported_as_unreachable() -> None:
    with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with trio.fail_after(10):
        with pytest.raises(trio_chat.ServerUnreachable, match="is `trio-chat serve` running"):
            await trio_chat.register("127.0.0.1", port, "alice", PASSWORD, config=FAST)
        with pytest.raises(trio_chat.ServerUnreachable):
            async with trio_chat.connect("127.0.0.1", port, "alice", PASSWORD, config=FAST):
                pass


async def test_a_first_contact_gives_up_within_a_timeout_shorter_than_the_key_probe(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A bot told to give up after 0.2 s waited 2.5 s when it had not met the daemon
    # before: the daemon's key was asked for with a fixed patience of its own.
    with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    quick = ClientConfig(timeout=0.2)
    began = trio.current_time()
    with pytest.raises(trio_chat.ServerUnreachable):
        await trio_chat.register("127.0.0.1", port, "alice", PASSWORD, config=quick)
    assert trio.current_time() - began <= quick.timeout * 1.25
    began = trio.current_time()
    with pytest.raises(trio_chat.ServerUnreachable):
        async with trio_chat.connect("127.0.0.1", port, "alice", PASSWORD, config=quick):
            pass
    assert trio.current_time() - began <= quick.timeout * 1.25


async def test_rules_are_checked_before_anything_is_sent() -> None:
    with trio.fail_after(5):
        with pytest.raises(trio_chat.InvalidName):
            await trio_chat.register("127.0.0.1", 9, "no spaces please", PASSWORD)
        with pytest.raises(trio_chat.PasswordTooShort):
            await trio_chat.register("127.0.0.1", 9, "alice", "short")


async def test_ipv6(nursery: trio.Nursery, db_path: Path) -> None:
    with trio.socket.socket(trio.socket.AF_INET6, trio.socket.SOCK_DGRAM) as probe:
        try:
            await probe.bind(("::1", 0))
        except OSError as error:  # pragma: no cover - depends on the machine
            pytest.fail(f"IPv6 loopback is not available here: {error}")
    with trio.fail_after(15):
        address = await nursery.start(serve, "[::1]", 0, db_path, TEST_CONFIG)
        host, port = address[0], address[1]
        assert host == "::1"
        await register_all(host, port, "alice")
        async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
            said = await alice.say("over IPv6")
            assert said.text == "over IPv6"
        # Written as beside a port, in brackets: the same address, and the same label.
        async with trio_chat.connect("[::1]", port, "alice", PASSWORD) as alice:
            assert (await alice.say("in brackets")).text == "in brackets"
            assert alice.connection.where == f"[::1]:{port}"


async def test_messages_refused_as_too_fast_are_resent_in_the_order_written(
    nursery: trio.Nursery, db_path: Path
) -> None:
    tight = ServerConfig(register_burst=10, message_burst=3, message_rate=50.0)
    host, port = await nursery.start(serve, "127.0.0.1", 0, db_path, tight)
    with trio.fail_after(30):
        await register_all(host, port, "alice", "bob")
        async with (
            trio_chat.connect(host, port, "alice", PASSWORD) as alice,
            trio_chat.connect(host, port, "bob", PASSWORD) as bob,
        ):
            receipts = []
            for n in range(30):
                receipts.append(alice.say_nowait(f"m{n:02d}"))
                if n % 4 == 0:
                    await trio.sleep(0.005)  # sent in uneven bursts, as a script would
            sent = [await receipt.wait() for receipt in receipts]
            assert [m.id for m in sent] == sorted(m.id for m in sent)
            heard: list[str] = []
            while len(heard) < 30:
                heard.append((await next_event(bob, trio_chat.PublicMessage)).text)
            assert heard == [f"m{n:02d}" for n in range(30)]


async def test_drain_waits_for_every_answer_not_only_the_first(
    nursery: trio.Nursery, db_path: Path
) -> None:
    """Messages refused as too fast wait to go again: `drain` returns once the last of
    them is stored, not once the first is."""
    tight = ServerConfig(register_burst=10, message_burst=2, message_rate=8.0)
    host, port = await nursery.start(serve, "127.0.0.1", 0, db_path, tight)
    with trio.fail_after(30):
        await register_all(host, port, "alice")
        async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
            receipts = [alice.say_nowait(f"m{n}") for n in range(8)]
            assert alice.pending == 8
            await alice.drain()
            assert alice.pending == 0
            assert [receipt.result.text for receipt in receipts if receipt.result] == [
                f"m{n}" for n in range(8)
            ]


async def test_a_cancelled_session_leaves_at_once_and_the_room_is_told(
    daemon: tuple[str, int],
) -> None:
    host, port = daemon
    with trio.fail_after(20):
        await register_all(host, port, "alice", "bob")
        async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
            with trio.CancelScope() as scope:
                async with trio_chat.connect(host, port, "bob", PASSWORD, config=FAST):
                    assert (await next_event(alice, trio_chat.Joined)).name == "bob"
                    started = trio.current_time()
                    scope.cancel()
                    await trio.sleep_forever()
            assert trio.current_time() - started < FAST.timeout  # no wait for an answer
            left = await next_event(alice, trio_chat.Left)
            assert (left.name, left.reason) == ("bob", "quit")


async def test_a_message_resent_after_many_newer_ones_is_stored_and_shown_once(
    nursery: trio.Nursery, db_path: Path
) -> None:
    """A `say` whose answer was lost comes again, with its `cid`, after more messages than
    the daemon keeps in memory (a laptop that slept through a busy day): it is answered
    with the first copy's id and time, and neither stored nor shown a second time. So is
    a whisper that filled its recipient's mailbox: not refused as one too many."""
    config = dataclasses.replace(TEST_CONFIG, window_messages=3, mailbox_limit=1)
    host, port = await nursery.start(serve, "127.0.0.1", 0, db_path, config)
    with trio.fail_after(20):
        await register_all(host, port, "alice", "bob", "carol")
        async with (
            trio_chat.connect(host, port, "alice", PASSWORD) as alice,
            trio_chat.connect(host, port, "bob", PASSWORD) as bob,
        ):
            whisper = wire.Whisper(to="carol", text="for later", cid="slept-through-0")
            whispered = await alice._submitted(alice.connection.request(whisper)).wait()
            once = wire.Say(text="said once", cid="slept-through-1")
            first = await alice._submitted(alice.connection.request(once)).wait()
            for n in range(5):
                await alice.say(f"newer {n}")
            again = await alice._submitted(alice.connection.request(once)).wait()
            assert (again.id, again.ts) == (first.id, first.ts)
            late = await alice._submitted(alice.connection.request(whisper)).wait()
            assert (late.id, late.ts) == (whispered.id, whispered.ts)
            last = await alice.say("after it")
            heard: list[str] = []
            while not heard or heard[-1] != "after it":
                heard.append((await next_event(bob, trio_chat.PublicMessage)).text)
            assert heard == ["said once", *(f"newer {n}" for n in range(5)), "after it"]
            assert last.id > first.id
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT id FROM messages WHERE text = 'said once'").fetchall()
        whispers = db.execute("SELECT id FROM messages WHERE text = 'for later'").fetchall()
    assert rows == [(first.id,)] and whispers == [(whispered.id,)]


async def test_keys_given_to_serve_are_its_keys_beside_a_key_file_of_another(
    tmp_path: Path,
) -> None:
    """A program that runs the daemon with keys of its own (`serve(keys=...)`) on a
    database that has a key file beside it gets a daemon with the keys it gave."""
    db_path = tmp_path / "chat.db"
    on_disk = daemon_keys(db_path).public  # made beside the database
    given = DaemonKeys.generate()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            start = functools.partial(serve, "127.0.0.1", 0, db_path, TEST_CONFIG, keys=given)
            host, port = await nursery.start(start)
            assert await fetch_key(host, port) == given.public != on_disk
            nursery.cancel_scope.cancel()
    assert daemon_keys(db_path).public == on_disk  # the file is left as it was
