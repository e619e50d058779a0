"""Drive a `ServerEngine` by hand: explicit time, effects done at once, every byte counted.

`EngineDriver` performs the engine's effects synchronously (a cheap stand-in for argon2,
an in-memory store that commits on request) and records every datagram the engine sends,
per address, so tests can count bytes exactly. `Peer` is a client at one address that
speaks the real protocol through a client-side `Link`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

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
from trio_chat.records import Account, Message, Snapshot, StoreOp
from trio_chat.reliability import Link

WALL = 1_700_000_000.0


def fake_hash(password: str) -> str:
    return "fake$" + password


@dataclass
class EngineDriver:
    config: ServerConfig = field(default_factory=ServerConfig)
    snapshot: Snapshot | None = None
    auto_commit: bool = True
    now: float = 0.0
    engine: ServerEngine = field(init=False)
    sent: list[tuple[bytes, Address]] = field(default_factory=list)
    received_from: dict[Address, int] = field(default_factory=lambda: defaultdict(int))
    sent_to: dict[Address, int] = field(default_factory=lambda: defaultdict(int))
    inbox: dict[Address, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    """Datagrams sent to each address that no caller has taken yet."""
    stored: list[StoreOp] = field(default_factory=list)
    uncommitted: list[StoreOp] = field(default_factory=list)

    def __post_init__(self) -> None:
        tokens = iter(range(1, 10**9))
        sids = iter(range(1000, 10**9))
        self.engine = ServerEngine(
            self.config,
            self.snapshot,
            new_token=lambda: f"token{next(tokens):017d}",
            new_session_id=lambda: next(sids),
        )

    # --- feeding ------------------------------------------------------------------------

    def receive(self, data: bytes, address: Address) -> list[bytes]:
        """Deliver one datagram; return what the engine sends to `address` in response.

        What goes to other addresses meanwhile waits in their `inbox`.
        """
        self.received_from[address] += len(data)
        self.engine.receive_datagram(data, address, self.now, WALL + self.now)
        return self.pump(address)

    def advance(self, seconds: float, address: Address | None = None) -> list[bytes]:
        """Let time pass, firing every timer due; return what went to `address`."""
        end = self.now + seconds
        out: list[bytes] = []
        while True:
            deadline = self.engine.next_timer()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            self.engine.handle_timers(self.now, WALL + self.now)
            out += self.pump(address)
        self.now = end
        self.engine.handle_timers(self.now, WALL + self.now)
        return out + self.pump(address)

    def pump(self, address: Address | None = None) -> list[bytes]:
        """Do the engine's effects and collect its output until it has nothing more."""
        engine = self.engine
        out: list[bytes] = []
        while True:
            effects = engine.take_effects()
            datagrams = engine.datagrams_to_send(self.now, WALL + self.now)
            for data, to in datagrams:
                self.sent.append((data, to))
                self.sent_to[to] += len(data)
                if to == address:
                    out.append(data)
                else:
                    self.inbox[to].append(data)
            if not effects and not datagrams:
                return out
            for effect in effects:
                self._do(effect)

    def _do(self, effect: Any) -> None:
        engine, wall = self.engine, WALL + self.now
        if isinstance(effect, HashPassword):
            engine.password_hashed(effect.job, fake_hash(effect.password), wall)
        elif isinstance(effect, CheckPassword):
            ok = effect.password_hash == fake_hash(effect.password)
            engine.password_checked(effect.job, ok, self.now, wall)
        elif isinstance(effect, Persist):
            self.uncommitted.append(effect.op)
            if self.auto_commit:
                self.commit()
        elif isinstance(effect, LoadHistory):
            engine.history_loaded(effect.job, self.history(effect))

    def history(self, effect: LoadHistory) -> list[Message] | None:
        """What a store would read for a history request: stored messages it may see."""
        visible = [
            op
            for op in self.stored_messages()
            if (op.recipient_id is None or effect.account_id in (op.recipient_id, op.sender_id))
            and (effect.before is None or op.id < effect.before)
        ]
        return visible[-effect.limit :]

    def commit(self) -> None:
        ops, self.uncommitted = self.uncommitted, []
        for op in ops:
            self.stored.append(op)
            self.engine.committed(op, self.now)

    # --- accounts --------------------------------------------------------------------------

    def add_account(self, name: str, password: str, address: Address = ("10.0.0.99", 1)) -> None:
        reply = self.request(
            wire.Register(rid=f"reg-{name}", name=name, password=password), address
        )
        assert isinstance(reply, wire.Registered), reply

    def request(self, request: wire.Register | wire.Login, address: Address) -> wire.ServerDatagram:
        """Send a pre-session request; return the one reply to it."""
        out = self.receive(wire.encode(request), address)
        if not out and self.uncommitted:  # a registration is answered once it is stored
            self.commit()
            out = self.pump(address)
        replies = [
            decoded
            for data in out
            if getattr(decoded := wire.decode_server_datagram_untrusted(data), "rid", None)
            == request.rid
        ]
        assert len(replies) == 1, replies
        return replies[0]

    def stored_messages(self) -> list[Message]:
        return [op for op in self.stored if isinstance(op, Message)]

    def stored_accounts(self) -> list[Account]:
        return [op for op in self.stored if isinstance(op, Account)]


class Peer:
    """A client at `address` with a session on the driven engine."""

    def __init__(self, driver: EngineDriver, name: str, password: str, address: Address) -> None:
        self.driver = driver
        self.name = name
        self.address = address
        login = wire.Login(rid=f"login-{name}-{address[1]}", name=name, password=password)
        welcome = driver.request(login, address)
        assert isinstance(welcome, wire.Welcome), welcome
        self.sid, self.token = welcome.sid, welcome.token
        self.header = b'{"v":1,"t":"s","sid":%d,"token":%b' % (self.sid, wire.encode(self.token))
        self.link = Link(self.header)
        self.frames: list[wire.ServerFrame] = []
        self.challenges: list[str] = []

    def send(self, *frames: wire.ClientFrame) -> int:
        """Queue frames (a ping if none) and flush; return the last frame's sequence number."""
        seq = 0
        for frame in frames or (wire.Ping(),):
            seq = self.link.send(wire.encode(frame))
        self.flush()
        return seq

    def flush(self) -> None:
        """Send what the link has due; take in the answers and whatever else arrived."""
        for data in self.link.datagrams_to_send(self.driver.now):
            self.take(self.driver.receive(data, self.address))
        self.poll()

    def poll(self) -> None:
        """Take in what the engine sent to this peer's address while others talked."""
        self.take(self.driver.inbox.pop(self.address, []))

    def take(self, datagrams: list[bytes]) -> None:
        """Process what the engine sent to this peer (acknowledging it on the next flush)."""
        for data in datagrams:
            packet = wire.decode_server_datagram_untrusted(data)
            if not isinstance(packet, wire.Packet) or packet.sid != self.sid:
                continue
            if packet.challenge is not None:
                self.challenges.append(packet.challenge)
                self.link.extra = b',"response":%b' % wire.encode(packet.challenge)
            for _seq, raw in self.link.receive(
                packet.pn, packet.ack, packet.sack, packet.frames, self.driver.now
            ):
                self.frames.append(wire.decode_server_frame_untrusted(raw))

    def settle(self, rounds: int = 10) -> None:
        """Exchange datagrams (and let ack delays pass) until both sides are quiet."""
        for _ in range(rounds):
            self.take(self.driver.advance(0.05, self.address))
            self.link.handle_timer(self.driver.now)
            self.flush()

    def of_type(self, kind: type[Any]) -> list[Any]:
        return [frame for frame in self.frames if isinstance(frame, kind)]
