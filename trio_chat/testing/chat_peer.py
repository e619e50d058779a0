"""A chat client process for load and fault runs: senders say numbered messages,
receivers record what they see. It prints JSON lines on standard output:

    {"event": "ready"}                           every client of this process is in the room
    {"event": "done", "clients": [...]}          the results, one entry per client

Once in the room, the process waits for a line on standard input ("go"), so that a run
can start every process at once when all are ready; times are counted from then.
Message texts are `"<sender> <n> <padding>"`.

    python -m trio_chat.testing.chat_peer --port 1600 --receive r1 --receive r2 --expect s1:100
    python -m trio_chat.testing.chat_peer --port 1600 --send s1 --count 100
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import trio

from trio_chat import (
    ChatClient,
    ChatError,
    ChatMessage,
    ClientConfig,
    Disconnected,
    History,
    PublicMessage,
    Receipt,
    Reconnected,
    ServerUnreachable,
    connect,
)

PASSWORD = "load-run-password"


@dataclass
class Record:
    name: str
    role: str
    messages: list[tuple[str, int, int]] = field(default_factory=list)
    """Receivers: `(sender, n, message id)` in the order the application saw them."""
    acked: list[int] = field(default_factory=list)
    """Senders: the message ids the daemon gave, in sending order."""
    disconnects: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)
    login_attempts: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "messages": self.messages,
            "acked": self.acked,
            "disconnects": self.disconnects,
            "reconnects": self.reconnects,
            "errors": self.errors,
            "login_attempts": self.login_attempts,
            "seconds": round(self.seconds, 3),
        }


def _emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _parse(text: str) -> tuple[str, int] | None:
    parts = text.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


class Receiver:
    def __init__(self, chat: ChatClient, record: Record, expected: dict[str, int]) -> None:
        self.chat = chat
        self.record = record
        self.expected = expected
        self.left = sum(expected.values())
        self.newest = 0
        self.done = trio.Event()
        if self.left == 0:
            self.done.set()

    def _take(self, message: ChatMessage) -> None:
        if not isinstance(message, PublicMessage):
            return
        parsed = _parse(message.text)
        if parsed is None or parsed[0] != message.sender or parsed[0] not in self.expected:
            return
        self.record.messages.append((parsed[0], parsed[1], message.id))
        self.newest = max(self.newest, message.id)
        self.left -= 1
        if self.left <= 0:
            self.done.set()

    async def run(self) -> None:
        async for event in self.chat.events():
            if isinstance(event, PublicMessage):
                self._take(event)
            elif isinstance(event, History):
                messages = list(event.messages)
                if event.more and event.resumed and messages:
                    messages = await self._fill_gap(messages) + messages
                for message in messages:
                    self._take(message)
            elif isinstance(event, Disconnected):
                self.record.disconnects += 1
            elif isinstance(event, Reconnected):
                self.record.reconnects += 1

    async def _fill_gap(self, batch: list[ChatMessage]) -> list[ChatMessage]:
        """The resume was cut short: page back through history to what was seen."""
        older: list[ChatMessage] = []
        before = batch[0].id
        while before > self.newest + 1:
            page = await self.chat.history(limit=100, before=before)
            if not page:
                break
            older = [m for m in page if m.id > self.newest] + older
            before = page[0].id
        return older


async def _connect_retrying(
    stack: AsyncExitStack, host: str, port: int, name: str, config: ClientConfig, record: Record
) -> ChatClient:
    """Log in, retrying while the network eats the handshake."""
    while True:
        record.login_attempts += 1
        try:
            client: ChatClient = await stack.enter_async_context(
                connect(host, port, name, PASSWORD, config=config)
            )
            return client
        except ServerUnreachable:
            if record.login_attempts >= 20:
                raise


async def _timed(record: Record, started: float, work: Awaitable[object]) -> None:
    await work
    record.seconds = time.monotonic() - started


async def _send(chat: ChatClient, record: Record, args: argparse.Namespace) -> None:
    receipts: list[Receipt[ChatMessage]] = []
    padding = "·" * args.pad
    for n in range(args.count):
        receipts.append(chat.say_nowait(f"{chat.name} {n} {padding}"))
        if len(receipts) - len(record.acked) >= args.window:
            message = await receipts[len(record.acked)].wait()
            record.acked.append(message.id)
    for receipt in receipts[len(record.acked) :]:
        message = await receipt.wait()
        record.acked.append(message.id)


async def main(args: argparse.Namespace) -> None:
    config = ClientConfig(timeout=args.timeout)
    expected = {name: int(count) for name, count in (e.split(":") for e in args.expect)}
    records: list[Record] = []
    receivers: list[Receiver] = []
    senders: list[tuple[ChatClient, Record]] = []
    async with trio.open_nursery() as nursery:
        async with AsyncExitStack() as stack:
            for name in args.receive:
                record = Record(name, "receiver")
                records.append(record)
                chat = await _connect_retrying(stack, args.host, args.port, name, config, record)
                receiver = Receiver(chat, record, expected)
                receivers.append(receiver)
                nursery.start_soon(receiver.run)
            for name in args.send:
                record = Record(name, "sender")
                records.append(record)
                chat = await _connect_retrying(stack, args.host, args.port, name, config, record)
                senders.append((chat, record))
            _emit(event="ready")
            await trio.to_thread.run_sync(sys.stdin.readline)  # "go": every process at once
            started = time.monotonic()
            with trio.move_on_after(args.deadline):
                async with trio.open_nursery() as work:
                    for chat, record in senders:
                        work.start_soon(_timed, record, started, _send(chat, record, args))
                    for receiver in receivers:
                        work.start_soon(_timed, receiver.record, started, receiver.done.wait())
            for receiver in receivers:
                if not receiver.done.is_set():
                    receiver.record.errors.append(f"deadline: {receiver.left} messages missing")
            _emit(event="done", clients=[record.summary() for record in records])
            async with trio.open_nursery() as leaving:  # all at once, not one after another
                for chat in [receiver.chat for receiver in receivers] + [c for c, _ in senders]:
                    leaving.start_soon(chat.logout)
        # Every client has logged out (its own tasks still running); now stop the readers.
        nursery.cancel_scope.cancel()


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--send", action="append", default=[], help="a sender's name")
    parser.add_argument("--receive", action="append", default=[], help="a receiver's name")
    parser.add_argument("--expect", action="append", default=[], help="SENDER:COUNT")
    parser.add_argument("--count", type=int, default=100, help="messages per sender")
    parser.add_argument("--window", type=int, default=32, help="messages unacknowledged")
    parser.add_argument("--pad", type=int, default=40, help="padding characters per message")
    parser.add_argument("--timeout", type=float, default=10.0, help="login timeout")
    parser.add_argument("--deadline", type=float, default=600.0, help="give up after (s)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        trio.run(main, parse_arguments())
    except ChatError as error:
        sys.stderr.write(f"{error.message}\n")
        sys.exit(1)
