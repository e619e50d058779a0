"""Drive a `ServerEngine` by hand: explicit time, effects done at once, every byte counted.

`EngineDriver` performs the engine's effects synchronously (a cheap stand-in for argon2,
an in-memory store that commits on request) and records every datagram the engine sends,
per address, so tests can count bytes exactly. `Peer` is a client at one address: the
real client core (`ClientConnection`, encrypted channel and all) exchanging datagrams
with the driven engine, with every frame it receives kept in `frames`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .. import wire
from ..client_protocol import ClientConfig, ClientConnection, Handle
from ..engine import (
    Address,
    CheckPassword,
    FindSent,
    HashPassword,
    LoadHistory,
    LoadMailbox,
    Persist,
    ServerConfig,
    ServerEngine,
)
from ..events import Event
from ..records import (
    Account,
    AccountRemoval,
    MarkDelivered,
    Message,
    MuteSet,
    PasswordSet,
    Snapshot,
    StoreOp,
)
from ..reliability import Link
from ..secure import DaemonKeys

WALL = 1_700_000_000.0
PASSWORD = "correct horse"
T = TypeVar("T")


def fake_hash(password: str) -> str:
    return "fake$" + password


@dataclass
class EngineDriver:
    config: ServerConfig = field(default_factory=ServerConfig)
    snapshot: Snapshot | None = None
    auto_commit: bool = True
    auto_hash: bool = True
    """Do password work at once; else it waits in `hashing` until `finish_hashing()`."""
    auto_read: bool = True
    """Read history and mailboxes at once; else the reads wait in `reading` until
    `finish_reads()`."""
    now: float = 0.0
    engine: ServerEngine = field(init=False)
    sent: list[tuple[bytes, Address]] = field(default_factory=list)
    received_from: dict[Address, int] = field(default_factory=lambda: defaultdict(int))
    sent_to: dict[Address, int] = field(default_factory=lambda: defaultdict(int))
    inbox: dict[Address, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    """Datagrams sent to each address that no caller has taken yet."""
    stored: list[StoreOp] = field(default_factory=list)
    uncommitted: list[StoreOp] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    first_sid: int = 1000
    """Connection indexes count up from here (a restarted daemon's should not meet the old)."""
    keys: DaemonKeys = field(default_factory=DaemonKeys.generate)
    client_indexes: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    hashing: list[HashPassword | CheckPassword] = field(default_factory=list)
    """Password work handed out and not yet done (with `auto_hash` off)."""
    hashes_done: int = 0
    reading: list[LoadHistory | LoadMailbox] = field(default_factory=list)
    """Reads handed out and not yet done (with `auto_read` off)."""
    hold_finds: bool = False
    """Keep the looks for a message sent before in `finding` until `finish_finds()`; else
    they are done at once."""
    finding: list[FindSent] = field(default_factory=list)
    acknowledge_bulk_first: bool = False
    """As the daemon runs its engine: requests sent in bulk wait for `handle_set_aside`."""

    def __post_init__(self) -> None:
        tokens = iter(range(1, 10**9))
        sids = iter(range(self.first_sid, 2**32))
        self.engine = ServerEngine(
            self.config,
            self.snapshot,
            keys=self.keys,
            new_challenge=lambda: f"token{next(tokens):017d}",
            new_index=lambda: next(sids),
            acknowledge_bulk_first=self.acknowledge_bulk_first,
        )

    @property
    def server_key(self) -> bytes:
        """The daemon's static public key, as a client trusts it."""
        return self.keys.public

    def new_client_index(self) -> int:
        return next(self.client_indexes)

    @property
    def wall(self) -> float:
        return WALL + self.now

    def new_id(self) -> str:
        """Request and message ids for peers: predictable, unique in one run."""
        return f"id{next(self.ids)}"

    # --- feeding ------------------------------------------------------------------------

    def receive(self, data: bytes, address: Address) -> list[bytes]:
        """Deliver one datagram; return what the engine sends to `address` in response.

        What goes to other addresses meanwhile waits in their `inbox`.
        """
        self.received_from[address] += len(data)
        self.engine.receive_datagram(data, address, self.now, self.wall)
        return self.pump(address)

    def deliver(self, data: bytes, address: Address) -> None:
        """Deliver one datagram; everything sent in response waits in the inboxes."""
        self.inbox[address] += self.receive(data, address)

    def advance(self, seconds: float, address: Address | None = None) -> list[bytes]:
        """Let time pass, firing every timer due; return what went to `address`."""
        end = self.now + seconds
        out: list[bytes] = []
        while True:
            deadline = self.engine.next_timer()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            self.engine.handle_timers(self.now, self.wall)
            out += self.pump(address)
        self.now = end
        self.engine.handle_timers(self.now, self.wall)
        return out + self.pump(address)

    def pump(self, address: Address | None = None) -> list[bytes]:
        """Do the engine's effects and collect its output until it has nothing more."""
        engine = self.engine
        out: list[bytes] = []
        while True:
            effects = engine.take_effects()
            datagrams = engine.datagrams_to_send(self.now, self.wall)
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
                self.perform(effect)

    def perform(self, effect: Any) -> None:
        """Do one of the engine's effects, as `pump` does them all."""
        if isinstance(effect, HashPassword | CheckPassword):
            self.hashing.append(effect)
            if self.auto_hash:
                self._hash()
        elif isinstance(effect, Persist):
            self.uncommitted.append(effect.op)
            if self.auto_commit:
                self.commit()
        elif isinstance(effect, FindSent):
            if self.hold_finds:
                self.finding.append(effect)
            else:
                self._find(effect)
        elif isinstance(effect, LoadHistory | LoadMailbox):
            if self.auto_read:
                self.read(effect)
            else:
                self.reading.append(effect)

    def _find(self, effect: FindSent) -> None:
        found = [
            op
            for op in self.stored_messages()
            if (op.sender_id, op.cid) == (effect.sender_id, effect.cid)
        ]
        self.engine.sent_found(effect.job, found[0] if found else None)

    def finish_finds(self) -> None:
        """Do the looks held (`hold_finds`), and send what they let the engine say."""
        finds, self.finding = self.finding, []
        for effect in finds:
            self._find(effect)
        self.pump()

    def finish_reads(self) -> None:
        """Do the reads handed out, and send what they let the engine say."""
        reads, self.reading = self.reading, []
        for effect in reads:
            self.read(effect)
        self.pump()

    def read(self, effect: LoadHistory | LoadMailbox) -> None:
        """Do one read handed out (taken out of `reading` by the caller)."""
        self.report(effect, self.look(effect))

    def look(self, effect: LoadHistory | LoadMailbox) -> list[Message] | None:
        """What a read finds on disk now."""
        return self.history(effect) if isinstance(effect, LoadHistory) else self.mailbox(effect)

    def report(self, effect: LoadHistory | LoadMailbox, found: list[Message] | None) -> None:
        """Tell the engine what a read found (maybe a while before)."""
        if isinstance(effect, LoadHistory):
            self.engine.history_loaded(effect.job, found)
        else:
            assert found is not None, "a mailbox read finds a list"
            self.engine.mailbox_loaded(effect.job, found, self.now, self.wall)

    def finish_hashing(self, count: int | None = None) -> None:
        """Do the oldest `count` pieces of password work handed out (all, by default),
        and send what that lets the engine say."""
        self._hash(count)
        self.pump()

    def _hash(self, count: int | None = None) -> None:
        work, self.hashing = self.hashing[:count], self.hashing[len(self.hashing[:count]) :]
        for effect in work:
            self.hashes_done += 1
            if isinstance(effect, HashPassword):
                self.engine.password_hashed(effect.job, fake_hash(effect.password), self.wall)
            else:
                ok = effect.password_hash == fake_hash(effect.password)
                self.engine.password_checked(effect.job, ok, self.now, self.wall)

    def history(self, effect: LoadHistory) -> list[Message] | None:
        """What a store would read for a history request: stored messages it may see."""
        visible = [
            op
            for op in self.stored_messages()
            if (op.recipient_id is None or effect.account_id in (op.recipient_id, op.sender_id))
            and (effect.before is None or op.id < effect.before)
        ]
        return visible[-effect.limit :]

    def mailbox(self, effect: LoadMailbox) -> list[Message]:
        """What a store would read for a mailbox: stored private messages to the
        account, from others, not marked delivered."""
        account = effect.account_id
        delivered = {
            i for op in self.stored if isinstance(op, MarkDelivered) for i in op.message_ids
        }
        return [
            op
            for op in self.stored_messages()
            if op.recipient_id == account and op.sender_id != account and op.id not in delivered
        ]

    def commit(self, count: int | None = None) -> None:
        """Commit what waits (the first `count` of it: a group commit that ended there)."""
        cut = len(self.uncommitted) if count is None else count
        ops, self.uncommitted = self.uncommitted[:cut], self.uncommitted[cut:]
        for op in ops:
            self.stored.append(op)
            self.engine.committed(op, self.now, self.wall)

    def commit_held(self, count: int | None = None) -> None:
        """Commit what waits (the first `count` of it), and send what that lets the
        engine say."""
        self.commit(count)
        self.pump()

    # --- accounts ---------------------------------------------------------------------------

    def replies(self, address: Address) -> list[wire.Datagram]:
        """Take what waits for `address`, parsed."""
        return [wire.parse_datagram_untrusted(d) for d in self.inbox.pop(address, [])]

    def add_account(
        self, name: str, password: str = PASSWORD, address: Address = ("10.0.0.99", 1)
    ) -> None:
        """Register an account as a client would (a channel, a `register` frame)."""
        peer = Peer(self, None, address=address)
        handle = peer.connection.register(name, password)
        peer.flush()
        if not handle.done and self.uncommitted:  # answered once it is stored
            self.commit()
            self.pump()
            peer.poll()
        assert handle.done and handle.error is None, handle.error
        peer.connection.close()
        peer.flush()

    def request(self, frame: wire.ClientFrame, address: Address) -> wire.ServerFrame:
        """Send one frame (a login, a registration) on a new channel from `address`;
        return the frame that answers it. The channel stays open, as a client's would."""
        peer = Peer(self, None, address=address)
        handle = peer.request(frame)
        peer.flush()
        if self.uncommitted:  # a registration is answered once it is stored
            self.commit()
            self.pump()
            peer.poll()
        answers = [f for f in peer.frames if getattr(f, "re", None) == handle.seq]
        assert len(answers) == 1, peer.frames
        return answers[0]

    def stored_messages(self) -> list[Message]:
        """As a store keeps them: those sent to an account removed since are deleted."""
        removed = {op.account_id for op in self.stored if isinstance(op, AccountRemoval)}
        return [
            op for op in self.stored if isinstance(op, Message) and op.recipient_id not in removed
        ]

    def stored_accounts(self) -> list[Account]:
        """The accounts as stored: made, then changed (passwords, locks, mutes), and not
        removed."""
        accounts = {op.id: op for op in self.stored if isinstance(op, Account)}
        for op in self.stored:
            if isinstance(op, PasswordSet):
                changed = accounts[op.account_id]
                accounts[op.account_id] = dataclasses.replace(
                    changed, password_hash=op.applied(changed.password_hash)
                )
            elif isinstance(op, MuteSet):
                accounts[op.account_id] = dataclasses.replace(
                    accounts[op.account_id], muted=op.muted
                )
            elif isinstance(op, AccountRemoval):
                del accounts[op.account_id]
        return list(accounts.values())


class Peer:
    """A client at `address`: the client core, logged in to the driven engine as `name`.

    `send` hands frames to the core as requests (a ping straight to the link, as the core
    sends its keepalives) and exchanges datagrams; `frames` holds every frame received,
    `events` every event. Without `login`, call `login()` when the test is ready; with no
    name at all it only opens a channel (for `register`). By default it neither logs in
    again nor resends refused messages by itself, so that a test sees the daemon's every
    answer.
    """

    def __init__(
        self,
        driver: EngineDriver,
        name: str | None,
        password: str = PASSWORD,
        address: Address = ("10.0.0.1", 1),
        *,
        login: bool = True,
        since: int | None = None,
        quiet: bool = False,
        config: ClientConfig | None = None,
    ) -> None:
        self.driver = driver
        self.name = name
        self.address = address
        self.frames: list[wire.ServerFrame] = []
        """What the daemon sent, in order; a `msgs` frame's messages one by one."""
        self.batches = 0
        """How many `msgs` frames came (their messages are in `frames`)."""
        self.events: list[Event] = []
        self.connection = ClientConnection(
            driver.server_key,
            name,
            password,
            config=config or ClientConfig(reconnect=False, retry_rate_limited=False),
            quiet=quiet,
            new_id=driver.new_id,
            new_index=driver.new_client_index,
        )
        self.connection.trace = self._trace
        if login or name is None:
            self.login(since=since)

    def _trace(self, frame: wire.ServerFrame) -> None:
        if isinstance(frame, wire.Msgs):
            self.batches += 1
            self.frames.extend(frame.messages)
        else:
            self.frames.append(frame)

    def login(self, since: int | None = None) -> None:
        """Open the channel and log in, exchanging datagrams until nothing more is due."""
        self.connection.start(self.driver.now, since=since)
        self.flush()

    @property
    def sid(self) -> int:
        return self.connection.sid

    @property
    def session(self) -> Any:
        """The engine's side of this connection."""
        return self.driver.engine.sessions[self.sid]

    @property
    def link(self) -> Link:
        link = self.connection.link
        assert link is not None, "not in a session"
        return link

    def send(self, *frames: wire.ClientFrame) -> int:
        """Send frames (a ping if none) and exchange; return the last one's sequence number."""
        seq = 0
        for frame in frames or (wire.Ping(),):
            seq = self.request(frame).seq if not isinstance(frame, wire.Ping) else self._ping()
        self.flush()
        return seq

    def _ping(self) -> int:
        return self.link.send(wire.encode(wire.Ping()))

    def request(self, frame: wire.ClientFrame | bytes) -> Handle:
        """Queue one frame as a request (not yet sent: `flush`)."""
        return self.connection.request(frame)

    def flush(self, *, ack: bool = False) -> None:
        """Send what the core has due (with `ack`, also the ack it would delay) and take
        in the answers, until it has nothing more to send now; then take the rest."""
        now = self.driver.now + (self.connection.config.link.ack_delay if ack else 0.0)
        for _round in range(10):
            datagrams = self.connection.datagrams_to_send(now)
            if not datagrams:
                break
            for data in datagrams:
                self.take(self.driver.receive(data, self.address))
        self.poll()

    def poll(self) -> list[wire.ServerFrame]:
        """Take in what the engine sent to this peer's address; return the new frames."""
        seen = len(self.frames)
        self.take(self.driver.inbox.pop(self.address, []))
        return self.frames[seen:]

    def take(self, datagrams: list[bytes]) -> None:
        """Hand datagrams from the engine to the core (acknowledged on the next flush)."""
        for data in datagrams:
            self.connection.receive_datagram(data, self.driver.now)
        while (event := self.connection.next_event()) is not None:
            self.events.append(event)

    def settle(self, rounds: int = 10) -> None:
        """Exchange datagrams (and let ack delays pass) until both sides are quiet."""
        for _ in range(rounds):
            self.take(self.driver.advance(0.05, self.address))
            self.connection.handle_timer(self.driver.now)
            self.flush()

    def of_type(self, kind: type[T]) -> list[T]:
        return [frame for frame in self.frames if isinstance(frame, kind)]
