"""Drive a `ServerEngine` by hand: explicit time, fake slow work, clients built on `Link`."""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any, TypeVar

from trio_chat import wire
from trio_chat.engine import (
    Address,
    CheckPassword,
    HashPassword,
    LoadHistory,
    Persist,
    ServerConfig,
    ServerEngine,
)
from trio_chat.records import Message, Snapshot, StoreOp
from trio_chat.reliability import Link

T = TypeVar("T")


def fake_hash(password: str) -> str:
    return "fake$" + password[::-1]


class EngineHarness:
    """An engine with its effects performed in-process; `commit=False` holds writes back."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        snapshot: Snapshot | None = None,
        *,
        commit: bool = True,
    ) -> None:
        tokens = itertools.count(1)
        sids = itertools.count(1001)
        self.engine = ServerEngine(
            config,
            snapshot,
            new_token=lambda: f"token-{next(tokens):04d}",
            new_session_id=lambda: next(sids),
        )
        self.now = 100.0
        self.wall = 1_780_000_000.0
        self.auto_commit = commit
        self.held: list[StoreOp] = []
        self.stored: list[StoreOp] = []
        self.inboxes: dict[Address, list[bytes]] = defaultdict(list)
        self.bytes_to: dict[Address, int] = defaultdict(int)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall += seconds
        self.engine.handle_timers(self.now, self.wall)
        self.pump()

    def deliver(self, data: bytes, address: Address) -> None:
        self.engine.receive_datagram(data, address, self.now, self.wall)
        self.pump()

    def pump(self) -> None:
        """Perform every effect the engine asked for, then route its output."""
        engine = self.engine
        while True:
            effects = engine.take_effects()
            if not effects:
                break
            for effect in effects:
                if isinstance(effect, HashPassword):
                    engine.password_hashed(effect.job, fake_hash(effect.password), self.wall)
                elif isinstance(effect, CheckPassword):
                    ok = effect.password_hash == fake_hash(effect.password)
                    engine.password_checked(effect.job, ok, self.now, self.wall)
                elif isinstance(effect, Persist):
                    if self.auto_commit:
                        self.stored.append(effect.op)
                        engine.committed(effect.op, self.now)
                    else:
                        self.held.append(effect.op)
                elif isinstance(effect, LoadHistory):
                    engine.history_loaded(effect.job, self.history(effect))
        for data, address in engine.datagrams_to_send(self.now, self.wall):
            self.inboxes[address].append(data)
            self.bytes_to[address] += len(data)

    def commit_held(self) -> None:
        held, self.held = self.held, []
        for op in held:
            self.stored.append(op)
            self.engine.committed(op, self.now)
        self.pump()

    def history(self, effect: LoadHistory) -> list[Message] | None:
        visible = [
            op
            for op in self.stored
            if isinstance(op, Message)
            and (op.recipient_id is None or effect.account_id in (op.recipient_id, op.sender_id))
            and (effect.before is None or op.id < effect.before)
        ]
        return visible[-effect.limit :]

    def replies(self, address: Address) -> list[wire.ServerDatagram]:
        data, self.inboxes[address] = self.inboxes[address], []
        return [wire.decode_server_datagram_untrusted(d) for d in data]


class SimClient:
    """A client at one address, speaking the wire protocol to the harness's engine."""

    _rids = itertools.count(1)

    def __init__(self, harness: EngineHarness, address: Address) -> None:
        self.h = harness
        self.address = address
        self.link: Link | None = None
        self.sid = 0
        self.token = ""
        self.frames: list[wire.ServerFrame] = []

    def request(self, datagram: wire.Register | wire.Login) -> list[wire.ServerDatagram]:
        self.h.deliver(wire.encode(datagram), self.address)
        return self.h.replies(self.address)

    def register(self, name: str, password: str = "correct horse") -> wire.ServerDatagram:
        (reply,) = self.request(
            wire.Register(rid=f"r{next(self._rids)}", name=name, password=password)
        )
        return reply

    def login(
        self, name: str, password: str = "correct horse", since: int | None = None
    ) -> wire.ServerDatagram:
        (reply,) = self.request(
            wire.Login(rid=f"l{next(self._rids)}", name=name, password=password, since=since)
        )
        if isinstance(reply, wire.Welcome):
            self.attach(reply)
            self.send(wire.Ping())
        return reply

    def attach(self, welcome: wire.Welcome) -> None:
        self.sid, self.token = welcome.sid, welcome.token
        header = b'{"v":1,"t":"s","sid":%d,"token":"%s"' % (welcome.sid, welcome.token.encode())
        self.link = Link(header)

    def send(self, frame: Any) -> int:
        """Send one frame now; return its sequence number."""
        assert self.link is not None
        seq = self.link.send(wire.encode(frame))
        self.flush()
        return seq

    def flush(self, *, ack: bool = False) -> None:
        """Send what the link has; with `ack`, also the acknowledgement it would delay."""
        assert self.link is not None
        now = self.h.now + (self.link.config.ack_delay if ack else 0.0)
        for data in self.link.datagrams_to_send(now):
            self.h.deliver(data, self.address)

    def poll(self) -> list[wire.ServerFrame]:
        """Take in what the engine sent here; return the new frames (and ack them)."""
        assert self.link is not None
        new: list[wire.ServerFrame] = []
        for datagram in self.h.replies(self.address):
            if not isinstance(datagram, wire.Packet):
                continue
            if datagram.challenge is not None:
                self.link.extra = b',"response":"%s"' % datagram.challenge.encode()
            for _seq, raw in self.link.receive(
                datagram.pn, datagram.ack, datagram.sack, datagram.frames, self.h.now
            ):
                new.append(wire.decode_server_frame_untrusted(raw))
        self.frames += new
        self.flush(ack=True)
        return new

    def of_type(self, kind: type[T]) -> list[T]:
        return [f for f in self.frames if isinstance(f, kind)]
