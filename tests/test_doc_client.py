"""A minimal client following docs/protocol.md (`tests/doc_client.py`, kept independent of
the package so that the document is checked) against the real daemon, with a client of
the package's API as the other person in the room.

The document client blocks; it runs in a worker thread while the daemon (in this process
or a child) and the API client run on Trio. Every wait has a deadline: the document
client's socket timeouts, and `trio.fail_after` around each test.
"""

from __future__ import annotations

import dataclasses
import functools
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import trio

import trio_chat
from tests.conftest import TEST_CONFIG
from tests.doc_client import (
    DATA,
    RESET,
    ChannelLost,
    ChatError,
    DocClient,
    Frame,
    NoRegistrations,
    fingerprint,
)
from trio_chat.engine.config import daemon_link
from trio_chat.server import serve
from trio_chat.testing.daemon import DaemonProcess

PASSWORD = "correct horse"
T = TypeVar("T")


async def off(call: Callable[[], T]) -> T:
    """Run a blocking call of the document client in a worker thread."""
    return await trio.to_thread.run_sync(call, abandon_on_cancel=True)


class Watcher:
    """Collects an API client's events; `first()` waits for one that matches."""

    def __init__(self) -> None:
        self.events: list[trio_chat.Event] = []
        self._changed = trio.Event()

    async def run(self, chat: trio_chat.ChatClient) -> None:
        async for event in chat.events():
            self.events.append(event)
            self._changed.set()
            self._changed = trio.Event()

    async def first(self, match: Callable[[trio_chat.Event], bool]) -> trio_chat.Event:
        while True:
            for event in self.events:
                if match(event):
                    return event
            await self._changed.wait()


def texts(frames: list[Frame]) -> list[str]:
    return [str(frame["text"]) for frame in frames]


async def test_doc_client_chats_with_an_api_client(
    nursery: trio.Nursery, daemon: tuple[str, int]
) -> None:
    host, port = daemon
    doc = DocClient(host, port)
    with doc, trio.fail_after(15):
        key = await off(doc.fetch_key)
        assert len(key) == 32
        assert fingerprint(key).startswith("SHA256:") and not fingerprint(key).endswith("=")

        assert await trio_chat.register(host, port, "bob", PASSWORD, server_key=key) == "bob"
        async with trio_chat.connect(host, port, "bob", PASSWORD, server_key=key) as bob:
            watcher = Watcher()
            nursery.start_soon(watcher.run, bob)
            earlier = await bob.say("before you came")

            # Register, then log in on the same channel (names match after case folding).
            await off(doc.connect)
            registered = await off(lambda: doc.register("Dora", PASSWORD))
            assert registered["t"] == "registered" and registered["name"] == "Dora"
            welcome = await off(lambda: doc.login("DORA", PASSWORD))
            assert welcome.name == "Dora" and welcome.unread == 0 and welcome.ticket
            assert texts(welcome.history) == ["before you came"]
            assert welcome.history[0]["id"] == earlier.id and welcome.history[0]["history"]
            assert welcome.ready["count"] == 1
            joined = await watcher.first(lambda e: isinstance(e, trio_chat.Joined))
            assert isinstance(joined, trio_chat.Joined) and joined.name == "Dora"

            # Public messages, both ways.
            said = await off(lambda: doc.say("hello from the document"))
            assert said["t"] == "ok" and said["id"] > earlier.id and said["ts"].endswith("Z")
            heard = await watcher.first(
                lambda e: isinstance(e, trio_chat.PublicMessage) and e.sender == "Dora"
            )
            assert isinstance(heard, trio_chat.PublicMessage)
            assert (heard.id, heard.text) == (said["id"], "hello from the document")

            answer = await bob.say("hello, Dora")
            frame = await off(lambda: doc.next_frame(frozenset({"msg"})))
            assert (frame["id"], frame["from"], frame["text"]) == (answer.id, "bob", "hello, Dora")
            assert not frame.get("history", False)

            # Private messages, both ways.
            whispered = await off(lambda: doc.whisper("BOB", "psst, bob"))
            assert whispered["to"] == "bob"
            private = await watcher.first(lambda e: isinstance(e, trio_chat.PrivateMessage))
            assert isinstance(private, trio_chat.PrivateMessage)
            assert (private.id, private.sender, private.recipient, private.text) == (
                whispered["id"],
                "Dora",
                "bob",
                "psst, bob",
            )

            # who and history (private messages to or from this account included).
            assert await off(doc.who) == ["bob", "Dora"]
            history = await off(lambda: doc.history(limit=10))
            assert texts(history) == [
                "before you came",
                "hello from the document",
                "hello, Dora",
                "psst, bob",
            ]
            assert all(item["history"] and item["re"] for item in history)
            older = await off(lambda: doc.history(limit=2, before=history[2]["id"]))
            assert texts(older) == ["before you came", "hello from the document"]

            # The last frame before the channel is lost: acknowledged on its own, so the
            # whisper counts as delivered and does not come again on resume.
            sent = await bob.whisper("dora", "psst, Dora")
            frame = await off(lambda: doc.next_frame(frozenset({"pm"})))
            assert (frame["id"], frame["from"], frame["to"], frame["text"]) == (
                sent.id,
                "bob",
                "Dora",
                "psst, Dora",
            )

            # The channel is lost; what is said meanwhile comes with the resumed session.
            await off(doc.drop)
            away = await bob.say("while you were away")
            missed = await bob.whisper("Dora", "missed you")
            resumed = await off(doc.reconnect)
            assert resumed.name == "Dora" and resumed.ticket
            assert [item["id"] for item in resumed.history] == [away.id, missed.id]
            assert [item["t"] for item in resumed.history] == ["msg", "pm"]
            assert resumed.ready["count"] == 2
            assert resumed.unread == 1  # the lost channel never acknowledged the whisper

            back = await off(lambda: doc.say("back again"))
            heard = await watcher.first(
                lambda e: isinstance(e, trio_chat.PublicMessage) and e.text == "back again"
            )
            assert isinstance(heard, trio_chat.PublicMessage) and heard.id == back["id"]

            bye = await off(doc.logout)
            assert bye["t"] == "ok" and "id" not in bye
            with pytest.raises(ChannelLost):
                await off(doc.who)


async def test_doc_client_resumes_after_the_daemon_restarts(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    daemon = DaemonProcess(nursery, tmp_path / "chat.db", "--register-burst", "100")
    with trio.fail_after(20):
        host, port = await daemon.start()
        doc = DocClient(host, port)
        with doc:
            await off(doc.connect)
            await off(lambda: doc.register("dora", PASSWORD))
            await off(lambda: doc.login("dora", PASSWORD))
            before = await off(lambda: doc.say("before the restart"))

            await daemon.stop()
            bye = await off(lambda: doc.next_frame(frozenset({"bye"})))
            assert bye["reason"] == "shutdown"
            await daemon.start(port)

            # A record on the old channel: the daemon answers RESET with the channel's token.
            await off(doc.ping)
            with pytest.raises(ChannelLost, match="RESET"):
                await off(lambda: doc.settle(timeout=3.0))

            # A ticket outlives the daemon: resume on a new channel, nothing missed.
            resumed = await off(doc.reconnect)
            assert resumed.name == "dora"
            assert resumed.history == [] and resumed.ready["count"] == 0

            assert await trio_chat.register(host, port, "bob", PASSWORD) == "bob"
            async with trio_chat.connect(host, port, "bob", PASSWORD) as bob:
                watcher = Watcher()
                nursery.start_soon(watcher.run, bob)
                after = await off(lambda: doc.say("after the restart"))
                assert after["id"] > before["id"]
                heard = await watcher.first(lambda e: isinstance(e, trio_chat.PublicMessage))
                assert isinstance(heard, trio_chat.PublicMessage)
                assert (heard.text, heard.sender) == ("after the restart", "dora")

                await off(doc.logout)
                left = await watcher.first(lambda e: isinstance(e, trio_chat.Left))
                assert isinstance(left, trio_chat.Left)
                assert (left.name, left.reason) == ("dora", "quit")


async def test_doc_client_answers_retry_and_the_path_check(
    nursery: trio.Nursery, db_path: Path
) -> None:
    config = dataclasses.replace(TEST_CONFIG, unproven_before_retry=0)  # always a RETRY
    host, port = await nursery.start(serve, "127.0.0.1", 0, db_path, config)
    doc = DocClient(host, port)
    with doc, trio.fail_after(15):
        await off(doc.connect)
        assert doc.retries == 1
        await off(lambda: doc.register("dora", PASSWORD))
        await off(lambda: doc.login("dora", PASSWORD))
        first = await off(lambda: doc.say("from the first port"))

        # A new local port for the same channel: the daemon follows, and checks the path.
        await off(doc.move)
        second = await off(lambda: doc.say("from the second port"))
        assert second["id"] == first["id"] + 1
        assert doc.channel is not None and doc.channel.challenges >= 1
        await off(lambda: doc.settle(timeout=1.0))
        assert doc.channel.pending_response is None
        assert await off(doc.who) == ["dora"]
        await off(doc.logout)


async def test_reset_names_the_index_the_record_was_sent_to(daemon: tuple[str, int]) -> None:
    """A record for an index the daemon does not know is answered RESET with that index:
    the daemon's end of the channel, not the client's (the one a `DATA` would carry)."""
    index = 0x5A1C0E07
    record = bytes([DATA]) + index.to_bytes(4, "big") + (1).to_bytes(8, "big") + bytes(40)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5.0)
        sock.sendto(record, daemon)
        answer, _address = await off(lambda: sock.recvfrom(2048))
    assert len(answer) == 21 and len(answer) < len(record)
    assert answer[0] == RESET and int.from_bytes(answer[1:5], "big") == index


@pytest.mark.parametrize(
    ("config", "length", "said"),
    [
        # The daemon sends a resume at most this many public (and private) messages.
        (dataclasses.replace(TEST_CONFIG, resume_limit=5), 20, 12),
        # Long messages, more than fit in seven eighths of a session's queue.
        (
            dataclasses.replace(
                TEST_CONFIG, link=dataclasses.replace(daemon_link(), max_queue_bytes=12 * 1024)
            ),
            450,
            30,
        ),
    ],
    ids=["resume_limit", "queue_bytes"],
)
async def test_doc_client_pages_back_from_the_gap_a_resume_leaves(
    nursery: trio.Nursery, db_path: Path, config: object, length: int, said: int
) -> None:
    """A resume whose `ready` says `more` gives `gap`: the client pages back from it until
    it reaches its `since`, and shows every message it missed once (the room's, its own
    other session's whispers, and the unread ones the history always holds)."""
    host, port = await nursery.start(serve, "127.0.0.1", 0, db_path, config)
    doc = DocClient(host, port)
    other = DocClient(host, port)
    doc.page_limit = 4
    with doc, other, trio.fail_after(15):
        await off(doc.connect)
        await off(lambda: doc.register("dora", PASSWORD))
        await off(lambda: doc.login("dora", PASSWORD))
        assert await trio_chat.register(host, port, "bob", PASSWORD) == "bob"
        async with trio_chat.connect(host, port, "bob", PASSWORD) as bob:
            seen = await bob.say("seen before the channel was lost")
            assert (await off(lambda: doc.next_frame(frozenset({"msg"}))))["id"] == seen.id
            await off(doc.drop)

            missed: list[int] = []
            unread: list[int] = []
            await off(other.connect)
            await off(lambda: other.login("dora", PASSWORD))
            for n in range(said):
                missed.append((await bob.say(f"{n:03} " + "x" * (length - 4))).id)
                if n % 3 == 1 and n < said // 2:  # its own other session, between them
                    note = await off(functools.partial(other.whisper, "bob", f"note {n}"))
                    missed.append(note["id"])
                if n == said // 2:
                    await off(other.logout)
            for n in range(2):
                unread.append((await bob.whisper("dora", f"while away {n}")).id)
            missed += unread

            since = doc.newest_id
            assert since == seen.id
            resumed = await off(doc.reconnect)
            ready = resumed.ready
            assert ready["more"] is True and ready["upto"] >= max(missed)
            gap = ready["gap"]
            sent = [int(item["id"]) for item in resumed.history]
            assert len(sent) == len(set(sent)) < len(missed)
            # Every message from `gap` on was in the history; the pages brought the rest.
            assert {i for i in missed if i >= gap} <= set(sent)
            assert set(unread) <= set(sent)
            assert since < gap <= max(missed)
            assert resumed.pages >= 2
            assert [item["id"] for item in resumed.shown] == sorted(missed)
            assert resumed.unread == 2
            await off(doc.logout)


async def test_doc_client_offers_no_registration_a_daemon_takes_none(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """An unknown name: an open daemon's client registers it; one closed to registrations
    says `no_registrations`, and its client sends no `register` (which is refused
    `registrations_closed`, however often it comes). Each says whether it takes
    registrations in the `KEY` a client asks for, before any name or password."""
    open_address = await nursery.start(serve, "127.0.0.1", 0, tmp_path / "open.db", TEST_CONFIG)
    closed = dataclasses.replace(TEST_CONFIG, registrations=False)
    closed_address = await nursery.start(serve, "127.0.0.1", 0, tmp_path / "closed.db", closed)
    with trio.fail_after(10):
        for address, takes in ((open_address, True), (closed_address, False)):
            with DocClient(*address[:2]) as doc:
                await off(functools.partial(doc.fetch_key, asks_registrations=True))
                assert doc.takes_registrations is takes
                await off(doc.fetch_key)  # not asked: nothing said
                assert doc.takes_registrations is None
        with DocClient(*open_address[:2]) as doc:
            await off(doc.connect)
            welcome = await off(lambda: doc.log_in_or_register("kim", PASSWORD))
            assert welcome.name == "kim"
            assert [r.frame["t"] for r in doc.requests.values()] == ["login", "register", "login"]
            unknown = doc.requests[1].answer
            assert unknown is not None and unknown["code"] == "unknown_user"
            assert "no_registrations" not in unknown

        with DocClient(*closed_address[:2]) as doc:
            await off(doc.connect)
            with pytest.raises(NoRegistrations):
                await off(lambda: doc.log_in_or_register("kim", PASSWORD))
            assert [r.frame["t"] for r in doc.requests.values()] == ["login"]
            assert doc.requests[1].answer is not None
            assert doc.requests[1].answer["no_registrations"] is True
            # A register sent anyway: refused before the name is looked at, each time
            # (an invalid name too), past the registration allowance.
            for name in ("kim", "not a name", "kim") * 3:
                with pytest.raises(ChatError) as refused:
                    await off(functools.partial(doc.register, name, PASSWORD))
                assert refused.value.code == "registrations_closed"
                assert refused.value.retry_after is None


async def dora_in(doc: DocClient, hole: socket.socket) -> None:
    """The document's client registered as dora and logged in, beside a socket bound to
    send the client's datagrams to nowhere (`hole`)."""
    hole.bind(("127.0.0.1", 0))
    await off(doc.connect)
    await off(lambda: doc.register("dora", PASSWORD))
    await off(lambda: doc.login("dora", PASSWORD))


async def test_doc_client_gives_the_daemon_up_at_its_moment(daemon: tuple[str, int]) -> None:
    """Section 6: unacknowledged for the give-up time, the client gives the daemon up then,
    not at the probe due after it."""
    with (
        DocClient(*daemon) as doc,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole,
        trio.fail_after(10),
    ):
        await dora_in(doc, hole)
        channel = doc.channel
        assert channel is not None
        # A slow path (the first probe due 0.61 s after a frame is sent), a short give-up,
        # and an outage: nothing reaches the daemon from now on.
        channel.smoothed_rtt, channel.rtt_var, channel.give_up = 0.2, 0.1, 0.3
        channel.address = hole.getsockname()
        request = await off(lambda: doc.send({"t": "say", "text": "lost", "cid": "c1"}))
        with pytest.raises(ChannelLost, match="stopped acknowledging"):
            await off(lambda: doc.wait(request, timeout=5.0))
        assert channel.lost_at is not None and channel.probes == 0
        assert channel.last_progress + 0.3 <= channel.lost_at
        assert channel.lost_at < channel.last_frames_sent + channel.pto()


async def test_doc_client_probes_at_once_when_the_daemon_speaks_after_a_silence(
    daemon: tuple[str, int],
) -> None:
    """Section 6: with probes gone unanswered, a record from the daemon after a silence as
    long as the probe timer now waits, acknowledging nothing new, fires the probe at once."""
    host, port = daemon
    with (
        DocClient(host, port) as doc,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole,
        trio.fail_after(10),
    ):
        await dora_in(doc, hole)
        assert await trio_chat.register(host, port, "bob", PASSWORD) == "bob"
        async with trio_chat.connect(host, port, "bob", PASSWORD) as bob:
            await off(lambda: doc.next_frame(frozenset({"join"})))
            channel = doc.channel
            assert channel is not None
            channel.max_pto = 0.05  # the probe timer's cap, reached within the outage
            channel.address = hole.getsockname()
            request = await off(lambda: doc.send({"t": "say", "text": "held", "cid": "c1"}))
            await off(lambda: doc.until(lambda: channel.probes >= 4))
            assert channel.speech_probes == []
            quiet_since = channel.last_received
            assert quiet_since is not None

            # The daemon speaks: a record that acknowledges nothing the outage held back.
            said = await bob.say("anyone there?")
            heard = await off(lambda: doc.next_frame(frozenset({"msg"})))
            assert heard["id"] == said.id
            assert channel.speech_probes and channel.speech_probes[0] - quiet_since >= 0.05
            assert channel.speech_probes[0] in channel.probe_times

            channel.address = (host, port)  # the outage ends: the probes get through
            answer = await off(lambda: doc.wait(request))
            assert answer["id"] > said.id


async def test_daemon_back_to_15_s_gives_a_moved_session_up_as_any(
    nursery: trio.Nursery, db_path: Path
) -> None:
    """Section 7.4: a session allowed 60 s (`via`, no NAT) that moves is told `keepalive`
    15, and from then on is given up after the link's give-up time without an
    acknowledgement (here 0.5 s; 60 s more for a session on 60 s)."""
    link = dataclasses.replace(daemon_link(), give_up_after=0.5)
    config = dataclasses.replace(TEST_CONFIG, link=link)
    host, port = await nursery.start(serve, "127.0.0.1", 0, db_path, config)
    with DocClient(host, port) as doc, trio.fail_after(10):
        doc.sock.bind(("127.0.0.1", 0))
        await off(doc.connect)
        await off(lambda: doc.register("dora", PASSWORD))
        await off(lambda: doc.login("dora", PASSWORD, via=True))
        assert doc.keepalive == 60
        assert await trio_chat.register(host, port, "bob", PASSWORD) == "bob"
        async with trio_chat.connect(host, port, "bob", PASSWORD) as bob:
            watcher = Watcher()
            nursery.start_soon(watcher.run, bob)
            await off(lambda: doc.next_frame(frozenset({"join"})))

            await off(doc.move)  # a NAT rebinding: the next record moves the session
            assert await off(doc.who) == ["bob", "dora"]
            told = await off(lambda: doc.next_frame(frozenset({"keepalive"})))
            assert told["every"] == 15 and doc.keepalive == 15 and doc.keepalive_told
            await off(doc.settle)

            # Silent now, not acknowledging: given up after 0.5 s, not 60.5 s.
            await bob.say("still there?")
            left = await watcher.first(lambda e: isinstance(e, trio_chat.Left))
            assert isinstance(left, trio_chat.Left)
            assert (left.name, left.reason) == ("dora", "timeout")
