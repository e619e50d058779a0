"""The client API as a bot author uses it, against a real daemon: what leaves `connect`'s
block, what receipts say, and what the calls raise."""

from __future__ import annotations

import dataclasses
import importlib.resources
import inspect
import socket
import tomllib
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, cast

import pytest
import trio
import trio.testing

import trio_chat
from tests.cli_support import Relay
from trio_chat.client import ChatClient, ClientConfig, Receipt
from trio_chat.client_protocol import Handle
from trio_chat.client_shell import local_address
from trio_chat.events import Left
from trio_chat.server import serve

from .conftest import TEST_CONFIG

PASSWORD = "correct horse"
FAST = ClientConfig(timeout=2.0)


async def register_all(host: str, port: int, *names: str) -> None:
    for name in names:
        await trio_chat.register(host, port, name, PASSWORD)


@asynccontextmanager
async def alice_and_bob(host: str, port: int) -> AsyncIterator[tuple[ChatClient, ChatClient]]:
    """alice and bob registered, and in the room."""
    await register_all(host, port, "alice", "bob")
    async with (
        trio_chat.connect(host, port, "alice", PASSWORD) as alice,
        trio_chat.connect(host, port, "bob", PASSWORD) as bob,
    ):
        yield alice, bob


@asynccontextmanager
async def daemon_behind_relay(tmp_path: Path) -> AsyncIterator[tuple[trio.Nursery, Relay, int]]:
    """A daemon with alice registered, reached through a relay a test can cut: the
    nursery they run in (cancelled at the end), the relay, and the relay's port."""
    async with trio.open_nursery() as nursery:
        address = await nursery.start(serve, "127.0.0.1", 0, tmp_path / "chat.db", TEST_CONFIG)
        await register_all("127.0.0.1", address[1], "alice")
        relay = Relay(address)
        relayed = await nursery.start(relay.run)
        yield nursery, relay, relayed
        nursery.cancel_scope.cancel()


class BotGaveUp(Exception):
    pass


async def test_what_the_block_raises_leaves_it_as_itself(daemon: tuple[str, int]) -> None:
    host, port = daemon
    with trio.fail_after(20):
        await register_all(host, port, "alice")
        with pytest.raises(trio_chat.UnknownUser, match="no account named 'nobody'"):
            async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
                await alice.whisper("nobody", "hello?")
        with pytest.raises(BotGaveUp) as caught:
            async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
                raise BotGaveUp("enough")
        assert str(caught.value) == "enough"
        assert alice.failure is not None and alice.failure.message == "You logged out."


async def test_a_block_cancelled_from_outside_leaves_as_cancelled(
    daemon: tuple[str, int],
) -> None:
    # A bot that logs `trio.Cancelled` around its session and raises it again (its scope
    # cancelled, or a task beside it failed) met a BaseExceptionGroup of two instead: the
    # block's and that of the task that pumps the client's socket.
    host, port = daemon
    with trio.fail_after(20):
        await register_all(host, port, "alice")
        caught: list[BaseException] = []
        with trio.CancelScope() as scope:
            try:
                async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
                    scope.cancel()
                    await trio.sleep_forever()
            except BaseException as leaving:
                caught.append(leaving)
                raise
        assert scope.cancelled_caught
        assert [type(leaving) for leaving in caught] == [trio.Cancelled]
        assert alice.failure is not None and alice.failure.message == "You logged out."


async def test_a_wait_given_up_leaves_nothing_on_its_request() -> None:
    # A bot that waits for a receipt, or for drain(), a second at a time while the daemon
    # is away (the client coming back for hours) left a waker on the request for every
    # wait it gave up: 86,400 of them a day, kept until the request was answered.
    handle = Handle("say", b"")
    receipt: Receipt[str] = Receipt(handle)
    for wait in [receipt.wait] * 3:
        with trio.CancelScope() as scope:
            scope.cancel()
            await wait()
        assert scope.cancelled_caught
    assert handle._callbacks == []
    handle._complete("stored", None)
    assert await receipt.wait() == "stored"


async def test_leaving_the_block_waits_for_the_answers_to_what_was_sent(
    daemon: tuple[str, int],
) -> None:
    host, port = daemon
    with trio.fail_after(20):
        await register_all(host, port, "alice")
        async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
            receipts = [alice.say_nowait(f"m{n:03d}") for n in range(200)]
        assert all(receipt.done for receipt in receipts)
        said = [await receipt.wait() for receipt in receipts]  # none "You logged out."
        assert [message.text for message in said] == [f"m{n:03d}" for n in range(200)]
        async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
            newest = await alice.history(100)
            older = await alice.history(100, before=newest[0].id)
        assert [m.id for m in older + newest] == [m.id for m in said]


async def test_names_and_passwords_that_cannot_be_sent_are_refused_as_chat_errors(
    daemon: tuple[str, int],
) -> None:
    host, port = daemon
    with trio.fail_after(20):
        # 200 four-byte characters: within the 256 a password may have, but a login frame
        # carrying them (with the longest name) would not fit in a datagram.
        emoji = "🙂" * 200
        with pytest.raises(trio_chat.PasswordTooLong, match=r"^A password must fit in \d+ bytes"):
            await trio_chat.register(host, port, "a" * 32, emoji)
        with pytest.raises(trio_chat.ProtocolError, match="valid Unicode"):
            await trio_chat.register(host, port, "alice", "\ud800" * 8)
        await register_all(host, port, "alice")
        for name, password, error in [
            ("alice", emoji, trio_chat.PasswordTooLong),
            ("alice", "é" * 600, trio_chat.PasswordTooLong),
            ("alice", "\ud800" * 8, trio_chat.ProtocolError),
            ("\ud800", PASSWORD, trio_chat.UnknownUser),
            ("x" * 65, PASSWORD, trio_chat.UnknownUser),
            ("x" * 10_000, PASSWORD, trio_chat.UnknownUser),
        ]:
            with pytest.raises(error) as caught:
                async with trio_chat.connect(host, port, name, password, config=FAST):
                    pass
            assert caught.value.message.endswith(".") and "\n" not in caught.value.message
        async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
            with pytest.raises(trio_chat.UnknownUser, match="no account named"):
                alice.whisper_nowait("\ud800", "hello?")
            for send in (alice.say_nowait, partial(alice.whisper_nowait, "alice")):
                with pytest.raises(trio_chat.ProtocolError, match="valid Unicode"):
                    send("a lone \ud800 surrogate")
            assert alice.connected


def test_the_public_api_is_documented_and_typed_for_type_checkers() -> None:
    package = importlib.resources.files("trio_chat")
    assert package.joinpath("py.typed").is_file()
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["trio_chat"]
    undocumented = []
    for name in trio_chat.__all__:
        value = getattr(trio_chat, name)
        if isinstance(value, type):
            if not value.__dict__.get("__doc__"):  # its own, not a base class's
                undocumented.append(name)
        elif callable(value) and not value.__doc__:
            undocumented.append(name)
    for cls in (trio_chat.ChatClient, trio_chat.Receipt):
        for member, value in vars(cls).items():
            function = value.fget if isinstance(value, property) else value
            if not member.startswith("_") and callable(function):
                if not function.__doc__:
                    undocumented.append(f"{cls.__name__}.{member}")
                hints = inspect.get_annotations(function, eval_str=True)
                assert "return" in hints, f"{cls.__name__}.{member} has no return type"
    assert undocumented == []


async def test_a_say_whose_wait_is_cancelled_is_still_sent(daemon: tuple[str, int]) -> None:
    with trio.fail_after(20):
        async with alice_and_bob(*daemon) as (alice, bob):
            with trio.CancelScope() as scope:
                scope.cancel()
                await alice.say("sent all the same")
            assert scope.cancelled_caught
            await alice.drain()
            assert alice.pending == 0
            async for event in bob.events():
                if isinstance(event, trio_chat.PublicMessage):
                    assert (event.sender, event.text) == ("alice", "sent all the same")
                    break


async def stoppable_daemon(
    nursery: trio.Nursery, db_path: Path
) -> tuple[str, int, trio.CancelScope]:
    """A daemon the test can stop for good (by cancelling the scope returned)."""
    stop = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[tuple[str, int]]) -> None:
        with stop:
            await serve("127.0.0.1", 0, db_path, TEST_CONFIG, task_status=task_status)

    host, port = await nursery.start(run)
    return host, port, stop


async def test_events_raise_why_the_session_ended_unless_the_bot_left(db_path: Path) -> None:
    # A bot that iterates `events()` must not stop without a word when the daemon goes
    # away for good: like a socket read after the peer vanished, the iteration raises.
    config = ClientConfig(timeout=2.0, reconnect=False)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            host, port, stop_daemon = await stoppable_daemon(nursery, db_path)
            await register_all(host, port, "alice", "bob")
            async with (
                trio_chat.connect(host, port, "alice", PASSWORD, config=config) as alice,
                trio_chat.connect(host, port, "bob", PASSWORD, config=config) as bob,
            ):
                await bob.logout()
                # Leaving is no failure: the stream ends quietly, after what came before.
                assert [e for e in [e async for e in bob.events()] if isinstance(e, Left)] == []
                stop_daemon.cancel()  # the daemon stops, for good
                with pytest.raises(trio_chat.ConnectionLost, match="Lost the connection"):
                    async for _event in alice.events():
                        pass
                # Iterating again raises the same (an exception of its own each time).
                with pytest.raises(trio_chat.ConnectionLost) as again:
                    async for _event in alice.events():
                        pass
                assert alice.failure is not None
                assert str(again.value) == str(alice.failure)


async def test_requests_that_fail_together_raise_exceptions_of_their_own(db_path: Path) -> None:
    # When the session ends, every pending receipt and `events()` fail with why. Raising one
    # exception object at each of those places chained each raise onto its traceback (one
    # receipt's showed the frames of every receipt awaited before it, and of `events()` in
    # another task): each place raises an exception of its own, with its own traceback.
    config = ClientConfig(timeout=2.0, reconnect=False)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            host, port, stop_daemon = await stoppable_daemon(nursery, db_path)
            await register_all(host, port, "alice")
            async with trio_chat.connect(host, port, "alice", PASSWORD, config=config) as alice:
                receipts = [alice.say_nowait(f"m{n}") for n in range(50)]
                stop_daemon.cancel()  # before any of them could be answered
                raised: list[trio_chat.ChatError] = []
                for receipt in receipts:
                    with pytest.raises(trio_chat.ConnectionLost) as caught:
                        await receipt.wait()
                    raised.append(caught.value)
                for _ in range(2):
                    with pytest.raises(trio_chat.ConnectionLost) as caught:
                        async for _event in alice.events():
                            pass
                    raised.append(caught.value)
                for _ in range(2):  # a request made once the session has ended
                    with pytest.raises(trio_chat.ConnectionLost) as caught:
                        alice.say_nowait("too late")
                    raised.append(caught.value)
                failure = alice.failure
                assert failure is not None
                assert len({id(error) for error in raised} | {id(failure)}) == len(raised) + 1
                assert {str(error) for error in raised} == {str(failure)}
                depths = {len(traceback.extract_tb(error.__traceback__)) for error in raised}
                assert max(depths) <= 4, depths


async def test_a_key_that_is_no_key_is_refused_as_such(
    daemon: tuple[str, int], tmp_path: Path
) -> None:
    """A `server_key` that cannot be a daemon's key, or a `known_servers` that cannot be
    read, raises `trio_chat.KeyFileError`, saying which, before anything is sent."""
    host, port = daemon
    with trio.fail_after(20):
        for wrong in (b"\x01" * 31, "not a key", "AAAA"):
            with pytest.raises(trio_chat.KeyFileError, match="daemon key"):
                await trio_chat.register(host, port, "alice", PASSWORD, server_key=wrong)
            with pytest.raises(trio_chat.KeyFileError, match="daemon key"):
                async with trio_chat.connect(host, port, "alice", PASSWORD, server_key=wrong):
                    pass
        damaged = tmp_path / "known_servers"
        damaged.write_bytes(b"\xff\xfe not text")
        with pytest.raises(trio_chat.KeyFileError, match="damaged"):
            await trio_chat.register(host, port, "alice", PASSWORD, known_servers=damaged)


async def test_a_bot_that_does_not_read_events_keeps_only_the_newest(
    daemon: tuple[str, int],
) -> None:
    # A bot that only posts never reads `events()`: everything the room said used to
    # stay in its memory, for as long as it ran.
    host, port = daemon
    with trio.fail_after(20):
        await register_all(host, port, "alice", "bob")
        keeps_four = ClientConfig(timeout=2.0, events_kept=4)
        async with (
            trio_chat.connect(host, port, "bob", PASSWORD, config=keeps_four) as bob,
            trio_chat.connect(host, port, "alice", PASSWORD) as alice,
        ):
            said = [await alice.say(f"m{n}") for n in range(10)]
            await bob.who()  # answered after the messages stored before it reached bob
            assert bob.events_waiting == 4
            events = bob.events()
            assert isinstance(await anext(events), trio_chat.History)  # never dropped
            # alice's Joined and the first seven messages went, where they were.
            assert await anext(events) == trio_chat.Missed(8)
            assert [await anext(events) for _ in range(3)] == said[-3:]
            # Read in time, nothing more is missed.
            newest = await alice.say("m10")
            assert await anext(events) == newest
            assert bob.events_waiting == 0


async def test_what_a_bot_leaves_unanswered_may_have_arrived_and_says_so(
    daemon: tuple[str, int],
) -> None:
    # Raised out of the block, the bot does not wait for the answers; its receipts said
    # "You logged out.", though the daemon had the messages and showed them to the room.
    host, port = daemon
    with trio.fail_after(20):
        await register_all(host, port, "alice")
        with pytest.raises(BotGaveUp):
            async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
                receipts = [alice.say_nowait(f"m{n}") for n in range(5)]
                raise BotGaveUp("enough")
        failures: list[str] = []
        for receipt in receipts:
            try:
                await receipt.wait()
            except trio_chat.ConnectionLost as lost:
                failures.append(str(lost))
        assert failures, "every answer came before the block was left"
        assert set(failures) == {"You left before the daemon answered; it may or may not have it."}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", 0.0),
        ("timeout", float("nan")),
        ("keepalive", -1.0),
        ("keepalive", 0.0),
        ("keepalive", float("inf")),
        ("reconnect_delay_max", float("inf")),
        ("events_kept", 0),
    ],
)
def test_a_configuration_no_client_could_work_with_is_refused_when_made(
    field: str, value: float
) -> None:
    # `keepalive=-1` made an idle client send 7,800 pings a second; the others failed
    # later, inside `connect`, in another library's words.
    changed: dict[str, Any] = {field: value}
    with pytest.raises(ValueError, match=rf"^ClientConfig\.{field} must be "):
        ClientConfig(**changed)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", "5"),
        ("keepalive", b"1"),
        ("reconnect_for", True),
        ("events_kept", 2.5),
        ("reconnect", "no"),
        ("retry_rate_limited", 1),
        ("link", {"window": 64}),
    ],
)
def test_a_configuration_value_of_the_wrong_type_is_a_type_error(field: str, value: object) -> None:
    changed: dict[str, Any] = {field: value}
    with pytest.raises(TypeError, match=rf"^ClientConfig\.{field} (must be a|is True or False)"):
        ClientConfig(**changed)


async def test_arguments_of_the_wrong_type_are_refused_in_words_that_name_them(
    daemon: tuple[str, int], tmp_path: Path
) -> None:
    host, port = daemon
    with trio.fail_after(20):
        await register_all(host, port, "alice")
        wrong: list[tuple[str, dict[str, Any]]] = [
            ("name", {"name": None}),
            ("password", {"password": b"x" * 8}),
            ("host", {"host": None}),
            ("port", {"port": "1600"}),
            ("port", {"port": True}),  # an int to Python, port 1 to a socket
            ("server_key", {"server_key": 123}),
        ]
        for named, changed in wrong:
            arguments: dict[str, Any] = {"host": host, "port": port, "name": "bob"}
            arguments |= {"password": PASSWORD, **changed}
            with pytest.raises(TypeError, match=rf"^{named} must be "):
                await trio_chat.register(**arguments)
        with pytest.raises(TypeError, match=r"^name must be "):
            async with trio_chat.connect(host, port, b"alice", PASSWORD):  # type: ignore[arg-type]
                pass
        with pytest.raises(TypeError, match=r"^port must be an int, not str$"):
            async with trio_chat.connect(host, str(port), "alice", PASSWORD):  # type: ignore[arg-type]
                pass
        known = tmp_path / "known_servers"
        async with trio_chat.connect(
            host, port, "alice", PASSWORD, known_servers=str(known)
        ) as alice:
            assert known.exists()  # a path given as text is a path
            with pytest.raises(TypeError, match=r"^text must be a str, not bytes"):
                alice.say_nowait(b"hi")  # type: ignore[arg-type]
            with pytest.raises(TypeError, match=r"^text must be a str, not NoneType"):
                await alice.say(None)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match=r"^to must be a str, not bytes"):
                await alice.whisper(b"bob", "hi")  # type: ignore[arg-type]
            assert (await alice.say("still here")).text == "still here"


async def test_a_logout_cut_short_is_finished_not_sent_again(tmp_path: Path) -> None:
    """A logout whose wait was cancelled (Ctrl-C while a terminal leaves) is finished by
    leaving the block: it waits for the logout on its way, once (`timeout`, not a
    `timeout` for it as for a message sent before and one more for the logout), and sends
    no other. It used to wait for that one's answer, then send a second logout and wait
    again."""
    config = ClientConfig(timeout=2.0)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            address = await nursery.start(serve, "127.0.0.1", 0, tmp_path / "chat.db", TEST_CONFIG)
            await trio_chat.register("127.0.0.1", address[1], "alice", PASSWORD)
            relay = Relay(address)
            port = await nursery.start(relay.run)
            asked: list[object] = []
            async with trio_chat.connect(
                "127.0.0.1", port, "alice", PASSWORD, config=config
            ) as alice:
                core_logout = alice.connection.logout

                def recorded() -> Any:
                    asked.append(core_logout())
                    return asked[-1]

                alice.connection.logout = recorded  # type: ignore[method-assign]
                relay.cut = True  # the daemon goes silent
                with trio.move_on_after(0.2):
                    await alice.logout()  # cut short: its logout is on its way
                assert len(asked) == 1 and alice.connection.left
                leaving = trio.current_time()
            assert trio.current_time() - leaving < 1.5 * config.timeout
            nursery.cancel_scope.cancel()
    assert len(asked) == 2 and asked[0] is asked[1]  # the same logout, finished
    assert alice.failure is not None and alice.connection.closed


async def test_events_read_waits_for_the_reader_to_be_done_with_what_came(
    daemon: tuple[str, int],
) -> None:
    """A bot that shows events in one task and answers in another: `events_read()` returns
    once what came before has been read and done with, not while it is still unread."""
    with trio.fail_after(20):
        async with alice_and_bob(*daemon) as (alice, bob):
            taken, go_on, read = trio.Event(), trio.Event(), trio.Event()

            async def show() -> None:
                async for event in alice.events():
                    if isinstance(event, trio_chat.PublicMessage):
                        taken.set()
                        await go_on.wait()  # still busy with it

            async def wait_read() -> None:
                await alice.events_read()
                read.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(show)
                await bob.say("hello")
                await taken.wait()
                nursery.start_soon(wait_read)
                await trio.testing.wait_all_tasks_blocked()
                assert not read.is_set()  # the message is taken, not done with
                go_on.set()
                await read.wait()
                nursery.cancel_scope.cancel()


async def test_a_host_that_does_not_resolve_says_what_to_check() -> None:
    with trio.fail_after(20):
        with pytest.raises(trio_chat.ServerUnreachable) as caught:
            await trio_chat.register("no-such-host.invalid", 1600, "alice", PASSWORD)
    message = caught.value.message
    assert message.startswith("Cannot resolve no-such-host.invalid: ")
    assert message.endswith("; check the daemon's address.")
    with trio.fail_after(20):  # a name no host can have, which IDNA cannot encode
        with pytest.raises(trio_chat.ServerUnreachable) as caught:
            await trio_chat.register("chat_é", 1600, "alice", PASSWORD)
    message = caught.value.message
    assert message.startswith("Cannot resolve chat_é: ")
    assert message.endswith("; check the daemon's address.")


async def test_a_session_says_if_it_only_looks_is_connected_and_what_is_unanswered(
    tmp_path: Path,
) -> None:
    """`quiet`, `connected` and `pending` as a bot reads them: a quiet session is only
    looking; a session whose daemon falls silent is not connected while it logs in again,
    and what it said meanwhile stays unanswered until then, and is not lost."""
    quick = ClientConfig(timeout=1.0, keepalive=0.5, reconnect_delay_max=0.5)
    config = dataclasses.replace(
        quick, link=dataclasses.replace(quick.link, give_up_after=1.0, max_pto=0.5)
    )
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            address = await nursery.start(serve, "127.0.0.1", 0, tmp_path / "chat.db", TEST_CONFIG)
            host, port = address[0], address[1]
            await register_all(host, port, "alice", "bob")
            relay = Relay(address)
            relayed = await nursery.start(relay.run)
            async with (
                trio_chat.connect(host, port, "bob", PASSWORD, quiet=True) as bob,
                trio_chat.connect(host, relayed, "alice", PASSWORD, config=config) as alice,
            ):
                assert bob.quiet and not alice.quiet
                assert alice.connected and alice.pending == 0
                relay.cut = True  # the daemon falls silent
                receipts = [alice.say_nowait("said while away"), alice.who_nowait()]
                assert alice.pending == 2 and not any(receipt.done for receipt in receipts)
                async for event in alice.events():
                    if isinstance(event, trio_chat.Disconnected):
                        break
                assert not alice.connected and alice.pending == 2
                relay.cut = False
                said = await receipts[0].wait()
                assert await receipts[1].wait() == ["alice"]  # bob only looks
                assert alice.connected and alice.pending == 0
            assert [m.id for m in await _history(host, port)] == [said.id]
            nursery.cancel_scope.cancel()


async def _history(host: str, port: int) -> list[trio_chat.ChatMessage]:
    async with trio_chat.connect(host, port, "bob", PASSWORD) as bob:
        return await bob.history()


async def test_leaving_a_silent_daemon_waits_a_timeout_for_what_was_sent_then_goes(
    tmp_path: Path,
) -> None:
    """Leaving the block while the daemon has fallen silent waits `timeout` for the
    answers to what was sent (once, not once for each), and `timeout` for the logout's:
    the messages then say they may have arrived."""
    config = ClientConfig(timeout=1.0)
    with trio.fail_after(30):
        async with daemon_behind_relay(tmp_path) as (_nursery, relay, relayed):
            async with trio_chat.connect(
                "127.0.0.1", relayed, "alice", PASSWORD, config=config
            ) as alice:
                relay.cut = True
                receipts = [alice.say_nowait(f"m{n}") for n in range(4)]
                leaving = trio.current_time()
            took = trio.current_time() - leaving
            assert 2 * config.timeout <= took < 4 * config.timeout, took  # not 5: once each
            for receipt in receipts:
                with pytest.raises(trio_chat.ConnectionLost, match="may or may not have it"):
                    await receipt.wait()


async def test_leaving_the_block_sends_the_logout_at_once(daemon: tuple[str, int]) -> None:
    """The logout goes as soon as the block is left, even with nothing else due to be
    sent, and the daemon's answer ends the session: leaving takes a round trip, not a
    timeout."""
    host, port = daemon
    config = ClientConfig(timeout=4.0)
    with trio.fail_after(20):
        await register_all(host, port, "alice")
        async with trio_chat.connect(host, port, "alice", PASSWORD, config=config) as alice:
            await alice.say("leaving now")
            # Until the client has nothing left to send (its last acks); the core is plain
            # state, with no event to wait on.
            while (link := alice.connection.link) is None or not link.idle:  # noqa: ASYNC110
                await trio.sleep(0.01)
            leaving = trio.current_time()
        assert trio.current_time() - leaving < config.timeout / 2
        assert alice.failure is not None and alice.failure.message == "You logged out."


async def test_a_session_lost_while_leaving_ends_quietly(tmp_path: Path) -> None:
    """Without reconnecting, a daemon lost while the block waits for the answers to what
    was sent ends the session; leaving it then raises nothing (the block was left as
    the bot meant), and the messages say why they failed."""
    plain = ClientConfig(timeout=2.0, reconnect=False)
    config = dataclasses.replace(
        plain, link=dataclasses.replace(plain.link, give_up_after=0.5, max_pto=0.25)
    )
    with trio.fail_after(30):
        async with daemon_behind_relay(tmp_path) as (_nursery, relay, relayed):
            async with trio_chat.connect(
                "127.0.0.1", relayed, "alice", PASSWORD, config=config
            ) as alice:
                relay.cut = True
                receipt = alice.say_nowait("lost on the way")
            assert alice.connection.closed
            with pytest.raises(trio_chat.ConnectionLost, match=r"^Lost the connection to "):
                await receipt.wait()


async def test_a_message_lost_on_an_idle_session_goes_again_soon(tmp_path: Path) -> None:
    """An idle session waits for nothing but its next ping, a while away; a message said
    then has its datagram lost: it goes again after the link's retransmission time (a
    second here), not at the next ping."""
    plain = ClientConfig(timeout=2.0, keepalive=30.0)
    config = dataclasses.replace(plain, link=dataclasses.replace(plain.link, max_pto=0.5))
    with trio.fail_after(30):
        async with (
            daemon_behind_relay(tmp_path) as (_nursery, relay, relayed),
            trio_chat.connect("127.0.0.1", relayed, "alice", PASSWORD, config=config) as alice,
        ):
            # Until the client has nothing left to send (its last acks); the core is plain
            # state, with no event to wait on.
            while (link := alice.connection.link) is None or not link.idle:  # noqa: ASYNC110
                await trio.sleep(0.01)
            relay.cut = True
            receipt = alice.say_nowait("lost once")
            await trio.testing.wait_all_tasks_blocked()  # the relay dropped it
            relay.cut = False
            with trio.fail_after(3):
                assert (await receipt.wait()).text == "lost once"


async def test_a_cancel_while_the_block_logs_out_still_ends_the_session(tmp_path: Path) -> None:
    """A program cancelled while leaving the block (the daemon silent, the logout waiting)
    does not leave its session half open: the logout finishes, and what was unanswered
    fails."""
    config = ClientConfig(timeout=1.0)
    with trio.fail_after(30):
        async with daemon_behind_relay(tmp_path) as (nursery, relay, relayed):

            async def cancel_once_waiting(scope: trio.CancelScope) -> None:
                await trio.testing.wait_all_tasks_blocked()  # leaving, waiting for answers
                scope.cancel()

            with trio.CancelScope() as outer:
                async with trio_chat.connect(
                    "127.0.0.1", relayed, "alice", PASSWORD, config=config
                ) as alice:
                    relay.cut = True
                    receipt = alice.say_nowait("unanswered")
                    nursery.start_soon(cancel_once_waiting, outer)
            assert outer.cancelled_caught
            assert alice.connection.closed and receipt.done
            with pytest.raises(trio_chat.ConnectionLost, match="may or may not have it"):
                await receipt.wait()


async def test_change_password_returns_once_stored_and_raises_a_refusal(
    daemon: tuple[str, int],
) -> None:
    """`change_password` waits for the daemon's answer: a wrong current password raises
    `WrongPassword`, and once it returns the new password is the one that logs in."""
    host, port = daemon
    new = "a battery staple"
    with trio.fail_after(20):
        await register_all(host, port, "alice")
        async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
            with pytest.raises(trio_chat.WrongPassword):
                await alice.change_password("not the password", new)
            await alice.change_password(PASSWORD, new)
            async with trio_chat.connect(host, port, "alice", new) as again:
                assert again.name == "alice"


class _LinkLocal:
    """A socket bound to a link-local IPv6 address, as the system names it."""

    def getsockname(self) -> tuple[str, int, int, int]:
        return ("fe80::1%eth0", 5000, 0, 2)


def test_the_address_a_client_sends_from_is_told_without_its_interface() -> None:
    # The daemon compares it with the address it sees the datagrams come from, fe80::1,
    # to tell whether translation lies on the way: fe80::1%eth0 would never match.
    sock = cast(socket.socket, _LinkLocal())
    assert local_address(sock) == ("fe80::1", 5000)
