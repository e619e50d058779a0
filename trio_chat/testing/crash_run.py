"""SIGKILL the daemon at random moments and check that it kept every promise it made.

`registration_storm`: clients register accounts concurrently; the daemon is killed at a
seeded random moment and restarted on the same port and database. Every registration
that was acknowledged must be able to log in, and the database must be sound.

`chat_through_kills`: senders talk through one or more kills; their clients (the real
client API, which logs in again and resends what was not acknowledged) must end with
every message acknowledged, each stored once, and each seen exactly once, in order, by
a receiver that was connected all along.
"""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import trio

from trio_chat import (
    ChatClient,
    ChatError,
    ChatMessage,
    ClientConfig,
    Disconnected,
    History,
    NameTaken,
    PublicMessage,
    Receipt,
    Reconnected,
    ServerUnreachable,
    connect,
    register,
)
from trio_chat.testing.daemon import DaemonProcess

PASSWORD = "crash-test-password"
LIMITS = (
    *("--register-burst", "100000", "--message-burst", "100000", "--message-rate", "100000"),
    *("--handshake-burst", "100000"),
)


def integrity(database: Path) -> str:
    with sqlite3.connect(database) as db:
        (result,) = db.execute("PRAGMA integrity_check").fetchone()
    return str(result)


@dataclass
class StormResult:
    kills: int = 0
    attempted: int = 0
    acknowledged: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    taken_after_restart: list[str] = field(default_factory=list)
    """Registrations whose resend, after the restart, was told the name is taken."""
    logged_in: list[str] = field(default_factory=list)
    accounts_stored: int = 0
    integrity: str = ""


async def _register_one(
    host: str, port: int, name: str, result: StormResult, config: ClientConfig
) -> None:
    result.attempted += 1
    try:
        await register(host, port, name, PASSWORD, config=config)
        result.acknowledged.append(name)
    except ServerUnreachable:
        result.unreachable.append(name)
    except NameTaken:
        result.taken_after_restart.append(name)


async def registration_storm(
    workdir: Path, *, seed: int, accounts: int, kill_within: float, concurrency: int = 8
) -> StormResult:
    """Register `accounts` names, killing the daemon once within `kill_within` seconds."""
    rng = random.Random(seed)
    database = workdir / f"storm-{seed}.db"
    result = StormResult()
    config = ClientConfig(timeout=4.0)
    async with trio.open_nursery() as nursery:
        daemon = DaemonProcess(nursery, database, *LIMITS)
        host, port = await daemon.start()
        limiter = trio.CapacityLimiter(concurrency)

        async def one(name: str) -> None:
            async with limiter:
                await _register_one(host, port, name, result, config)

        async def killer() -> None:
            await trio.sleep(rng.uniform(0.05, kill_within))
            await daemon.kill()
            result.kills += 1
            await daemon.start(port)

        async with trio.open_nursery() as storm:
            storm.start_soon(killer)
            for n in range(accounts):
                storm.start_soon(one, f"user{seed}x{n}")
        # Every acknowledged account logs in on the restarted daemon.
        for name in result.acknowledged:
            try:
                async with connect(host, port, name, PASSWORD, config=config):
                    result.logged_in.append(name)
            except ChatError:
                pass
        await daemon.stop()
        nursery.cancel_scope.cancel()
    with sqlite3.connect(database) as db:
        (result.accounts_stored,) = db.execute("SELECT count(*) FROM accounts").fetchone()
    result.integrity = integrity(database)
    return result


@dataclass
class ChatResult:
    kills: int = 0
    sent: int = 0
    acknowledged: int = 0
    stored: int = 0
    stored_twice: int = 0
    missing_from_storage: int = 0
    """Acknowledged messages whose id and text are not in the database."""
    seen: int = 0
    seen_twice: int = 0
    seen_not_stored: int = 0
    """Messages the listener was shown (text and id) that the database does not hold."""
    out_of_order: int = 0
    disconnects: int = 0
    reconnects: int = 0
    history_pages: int = 0
    """Times the listener missed more than a resume carries and paged through history."""
    errors: list[str] = field(default_factory=list)
    integrity: str = ""


@dataclass
class _Sender:
    name: str
    receipts: list[Receipt[ChatMessage]] = field(default_factory=list)
    acked: dict[str, int] = field(default_factory=dict)
    """Text -> the id the daemon acknowledged it with."""
    in_room: trio.Event = field(default_factory=trio.Event)
    """Set once the sender has logged in: the kills are of a daemon people chat on."""


async def _talk(chat: ChatClient, sender: _Sender, stop: trio.Event, result: ChatResult) -> None:
    """Say numbered messages, a few unacknowledged at a time, until `stop` is set."""
    window: list[tuple[str, Receipt[ChatMessage]]] = []
    n = 0
    while not stop.is_set():
        text = f"{sender.name} {n}"
        n += 1
        window.append((text, chat.say_nowait(text)))
        result.sent += 1
        if len(window) >= 8:
            text, receipt = window.pop(0)
            sender.acked[text] = (await receipt.wait()).id
        await trio.sleep(0.002)  # a steady stream, so that every kill lands mid-flow
    for text, receipt in window:
        sender.acked[text] = (await receipt.wait()).id


class _Listener:
    """Records what the application sees; `wait_for` returns once it has seen all of it."""

    def __init__(self, result: ChatResult) -> None:
        self.result = result
        self.seen: list[tuple[str, int]] = []
        self.expected: set[str] | None = None
        self.complete = trio.Event()

    def expect(self, texts: set[str]) -> None:
        self.expected = texts
        self._check()

    def _check(self) -> None:
        if self.expected is not None and self.expected <= {text for text, _id in self.seen}:
            self.complete.set()

    async def _older(self, chat: ChatClient, before: int) -> list[ChatMessage]:
        newest = max((message_id for _text, message_id in self.seen), default=0)
        older: list[ChatMessage] = []
        while before > newest + 1:
            page = await chat.history(limit=100, before=before)
            if not page:
                break
            older = [m for m in page if m.id > newest] + older
            before = page[0].id
        return older

    async def run(self, chat: ChatClient) -> None:
        result = self.result
        async for event in chat.events():
            if isinstance(event, PublicMessage):
                self.seen.append((event.text, event.id))
            elif isinstance(event, History):
                messages = list(event.messages)
                if event.more and event.resumed and messages:
                    # More was missed than a resume carries: page back to what was seen.
                    result.history_pages += 1
                    messages = await self._older(chat, messages[0].id) + messages
                self.seen += [(m.text, m.id) for m in messages if isinstance(m, PublicMessage)]
            elif isinstance(event, Disconnected):
                result.disconnects += 1
            elif isinstance(event, Reconnected):
                result.reconnects += 1
            self._check()


async def chat_through_kills(
    workdir: Path, *, seed: int, kills: int, senders: int, down_for: float = 0.3
) -> ChatResult:
    """Senders talk while the daemon is SIGKILLed `kills` times, then a little more."""
    rng = random.Random(seed)
    database = workdir / f"chat-{seed}.db"
    result = ChatResult()
    names = [f"talker{n}" for n in range(senders)]
    config = ClientConfig(timeout=10.0, reconnect_delay_max=0.5)
    async with trio.open_nursery() as nursery:
        daemon = DaemonProcess(nursery, database, *LIMITS)
        host, port = await daemon.start()
        for name in [*names, "listener"]:
            await register(host, port, name, PASSWORD, config=config)
        listener = _Listener(result)
        talkers = [_Sender(name) for name in names]
        async with (
            connect(host, port, "listener", PASSWORD, config=config) as listening_chat,
            trio.open_nursery() as listening,
        ):
            listening.start_soon(listener.run, listening_chat)
            stop = trio.Event()
            async with trio.open_nursery() as talking:
                for sender in talkers:
                    talking.start_soon(_run_sender, host, port, config, sender, stop, result)
                for sender in talkers:
                    # A first login cut short is the client's to report (the daemon cannot
                    # be reached), not to resume: the run is about sessions that exist.
                    await sender.in_room.wait()
                for _ in range(kills):
                    await trio.sleep(rng.uniform(0.2, 0.8))
                    await daemon.kill()
                    result.kills += 1
                    await trio.sleep(rng.uniform(0.0, down_for))
                    await daemon.start(port)
                await trio.sleep(0.5)
                stop.set()
            listener.expect({text for sender in talkers for text in sender.acked})
            with trio.move_on_after(30):
                await listener.complete.wait()
            listening.cancel_scope.cancel()
        await daemon.stop()
        nursery.cancel_scope.cancel()
    _judge(result, talkers, listener.seen, database)
    return result


async def _run_sender(
    host: str,
    port: int,
    config: ClientConfig,
    sender: _Sender,
    stop: trio.Event,
    result: ChatResult,
) -> None:
    async with connect(host, port, sender.name, PASSWORD, config=config) as chat:
        sender.in_room.set()
        await _talk(chat, sender, stop, result)


def _judge(
    result: ChatResult, talkers: list[_Sender], seen: list[tuple[str, int]], db: Path
) -> None:
    with sqlite3.connect(db) as connection:
        stored = dict(Counter(text for (text,) in connection.execute("SELECT text FROM messages")))
        rows = set(connection.execute("SELECT id, text FROM messages"))
    result.stored = sum(stored.values())
    result.stored_twice = sum(times - 1 for times in stored.values())
    for sender in talkers:
        result.acknowledged += len(sender.acked)
        result.missing_from_storage += sum(
            (message_id, text) not in rows for text, message_id in sender.acked.items()
        )
    result.seen_not_stored = sum((message_id, text) not in rows for text, message_id in set(seen))
    texts = Counter(text for text, _id in seen)
    result.seen = len(texts)
    result.seen_twice = sum(times - 1 for times in texts.values())
    for sender in talkers:
        numbers = [int(t.split()[1]) for t, _id in seen if t.split()[0] == sender.name]
        if numbers != sorted(numbers):
            result.out_of_order += 1
    result.integrity = integrity(db)
