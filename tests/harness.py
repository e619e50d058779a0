"""Drive a `ServerEngine` by hand: `EngineDriver` with an inbox per address, clients on `Link`."""

from __future__ import annotations

import itertools
from typing import Any, TypeVar

from tests.engine_driver import WALL, EngineDriver
from trio_chat import wire
from trio_chat.engine import Address, ServerConfig
from trio_chat.records import Snapshot
from trio_chat.reliability import Link

T = TypeVar("T")


class EngineHarness(EngineDriver):
    """An `EngineDriver` whose output all waits in per-address inboxes for `SimClient`s."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        snapshot: Snapshot | None = None,
        *,
        commit: bool = True,
    ) -> None:
        super().__init__(config or ServerConfig(), snapshot, auto_commit=commit, now=100.0)

    @property
    def wall(self) -> float:
        return WALL + self.now

    def deliver(self, data: bytes, address: Address) -> None:
        self.inbox[address] += self.receive(data, address)

    def advance(self, seconds: float, address: Address | None = None) -> list[bytes]:
        out = super().advance(seconds, address)
        if address is None:
            return out
        self.inbox[address] += out
        return []

    def commit_held(self) -> None:
        self.commit()
        self.pump()

    def replies(self, address: Address) -> list[wire.ServerDatagram]:
        data = self.inbox.pop(address, [])
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


def logged_in(h: EngineHarness, address: Address, name: str) -> SimClient:
    """A client at `address` logged in as `name` (registered first if need be)."""
    client = SimClient(h, address)
    if name.casefold() not in h.engine.accounts:
        assert isinstance(client.register(name), wire.Registered)
    assert isinstance(client.login(name), wire.Welcome)
    client.poll()
    return client
