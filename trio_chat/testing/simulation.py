"""Clients and the daemon's engine over a simulated network, in explicit time.

    sim = Simulation(seed=1, weather=Conditions(loss=0.2))
    alice = sim.client("alice")
    sim.run_until(lambda: alice.ready)
    handle = alice.say("hello")
    sim.run_until(lambda: handle.done)

Every datagram between a `ClientConnection` and the engine crosses a `netsim.Network`
(seeded loss, duplication, reordering, delay), so a test of the real client core and the
real engine runs in milliseconds and fails the same way every time. `restart_daemon`
replaces the engine with a new one loaded from what the old one stored, as a daemon
started again on the same database would be; while it is down, what reaches its address
is refused as a closed port refuses it (ICMP). `stall_daemon` stops it for a while
without closing its port, as a process stopped or starved of CPU: what reaches it waits,
and is read once it runs again. With `read_delay`, the daemon's reads (history, the private
messages waiting at a login) find the disk as it is when they are handed out, and are
reported that long after, as a read in a worker thread on a busy daemon: what happens
meanwhile (whispers stored, deliveries marked, logouts, another login) meets a read
under way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from ..client_protocol import ClientConfig, ClientConnection
from ..engine import Address, LoadHistory, LoadMailbox, ServerConfig
from ..events import ChatMessage, Event, History, PrivateMessage, PublicMessage
from ..records import MarkDelivered, Message, Snapshot
from ..rules import name_key
from .driver import PASSWORD, WALL, EngineDriver
from .netsim import Conditions, Network

DAEMON = "daemon"


def shown_messages(events: Iterable[Event]) -> list[ChatMessage]:
    """Every message a client's application was shown, live or in a history, in order."""
    shown: list[ChatMessage] = []
    for event in events:
        if isinstance(event, PublicMessage | PrivateMessage):
            shown.append(event)
        elif isinstance(event, History):
            shown += event.messages
    return shown


class Simulation:
    """See the module docstring."""

    def __init__(
        self,
        seed: int,
        weather: Conditions | None = None,
        config: ServerConfig | None = None,
        client_config: ClientConfig | None = None,
        read_delay: float = 0.0,
    ) -> None:
        self.weather = weather or Conditions()
        self.network = Network(seed, {DAEMON: self.weather})
        self.read_delay = read_delay
        self.driver = EngineDriver(
            config or ServerConfig(message_burst=10_000), auto_read=not read_delay
        )
        self._reads: list[tuple[float, LoadHistory | LoadMailbox, list[Message] | None]] = []
        """Reads under way (with `read_delay`): when each is reported, and what it found."""
        self.client_config = client_config or ClientConfig()
        self.clients: dict[str, ClientConnection] = {}
        self.events: dict[str, list[Event]] = {}
        self._addresses: dict[str, Address] = {}
        self._labels: dict[Address, str] = {}
        self.up = True
        self.stalled = False
        self._waiting: list[tuple[bytes, str]] = []
        self.stalled_clients: dict[str, list[bytes]] = {}
        """Clients that run nothing (a program blocking its own event loop), and what
        reached them meanwhile."""
        self.restarts = 0

    @property
    def now(self) -> float:
        return self.driver.now

    def client(
        self, label: str, name: str | None = None, password: str = PASSWORD
    ) -> ClientConnection:
        """A client called `label` at an address of its own, logging in as `name`."""
        name = name or label
        if name_key(name) not in self.driver.engine.accounts:
            self.driver.add_account(name, password)
        return self._connect(label, name, password)

    def channel(self, label: str) -> ClientConnection:
        """A client called `label` that only opens a channel (to `register`)."""
        return self._connect(label, None, "")

    def _connect(self, label: str, name: str | None, password: str) -> ClientConnection:
        connection = ClientConnection(
            self.driver.server_key,
            name,
            password,
            config=self.client_config,
            new_id=self.driver.new_id,
            new_index=self.driver.new_client_index,
        )
        address = (f"10.9.0.{len(self.clients) + 1}", 4000)
        self.network.conditions[label] = self.weather
        self.clients[label] = connection
        self.events[label] = []
        self._addresses[label] = address
        self._labels[address] = label
        connection.start(self.now)
        self._flush()
        return connection

    def restart_daemon(self, down_for: float = 0.0, *, clock_set_back: float = 0.0) -> None:
        """Stop the daemon (what it had not stored is lost) and start it again (its clock
        `clock_set_back` seconds behind: see `start_daemon`)."""
        self.stop_daemon()
        self.run(down_for)
        self.start_daemon(clock_set_back=clock_set_back)

    def stop_daemon(self) -> None:
        """Stop the daemon: what reaches its port meanwhile is refused (ICMP), until
        `start_daemon`."""
        self.up = False

    def start_daemon(self, *, clock_set_back: float = 0.0) -> None:
        """Start the stopped daemon again from what it had stored, its first message id
        from its clock as `server.py` takes it (`clock_set_back` seconds behind: set back
        to before its earlier ids, it counts on from the newest one stored)."""
        assert not self.up
        stored = list(self.driver.stored)
        accounts = self.driver.stored_accounts()  # with the passwords, locks and mutes set
        messages = [op for op in stored if isinstance(op, Message)]
        delivered = {i for op in stored if isinstance(op, MarkDelivered) for i in op.message_ids}
        snapshot = Snapshot(
            accounts=accounts,
            recent=messages[-self.driver.config.window_messages :],
            unread=dict(  # as `SqliteStore.load` counts them: a note to yourself waits in none
                Counter(
                    m.recipient_id
                    for m in messages
                    if m.recipient_id is not None
                    and m.id not in delivered
                    and m.recipient_id != m.sender_id
                )
            ),
            public_count=sum(1 for m in messages if not m.private),
            next_message_id=max((m.id for m in messages), default=0) + 1,
            next_account_id=max((a.id for a in accounts), default=0) + 1,
        )
        snapshot.ids_from_clock(WALL + self.now - clock_set_back)  # as `server.py` starts
        self.restarts += 1
        restarted = EngineDriver(
            self.driver.config,
            snapshot,
            now=self.now,
            ids=self.driver.ids,
            first_sid=1000 + 1_000_000 * self.restarts,
            keys=self.driver.keys,  # the same daemon, started again: the same key files
            client_indexes=self.driver.client_indexes,
            auto_read=not self.read_delay,
        )
        self._reads.clear()  # the stopped daemon's reads went with it
        restarted.stored = stored
        self.driver = restarted
        self.up = True

    def stall_daemon(self, seconds: float) -> None:
        """The daemon runs nothing for `seconds` (no datagram read, no timer fired); what
        reached it meanwhile is then read in the order it came."""
        self.stalled = True
        self.run(seconds)
        self.stalled = False
        for data, source in self._waiting:
            self.driver.deliver(data, self._addresses[source])
        self._waiting.clear()
        self._step()

    def stall_client(self, label: str, seconds: float) -> None:
        """The client runs nothing for `seconds` (its program blocked its event loop: a
        `time.sleep` in Trio code); what reached it is then read in the order it came."""
        self.stalled_clients[label] = []
        self.run(seconds)
        waiting = self.stalled_clients.pop(label)
        connection = self.clients[label]
        for data in waiting:
            connection.receive_datagram(data, self.now)
        self._step()

    def run(self, seconds: float) -> None:
        """Let `seconds` pass, delivering datagrams and firing timers on both sides."""
        self._until(lambda: False, self.now + seconds)

    def run_until(self, done: Callable[[], bool], limit: float = 600.0) -> None:
        """Run until `done()` holds; fail after `limit` seconds of simulated time."""
        self._until(done, self.now + limit)
        assert done(), f"not done after {limit} simulated seconds"

    def _until(self, done: Callable[[], bool], end: float) -> None:
        while not done():
            deadline = self._next_deadline()
            if deadline is None or deadline > end:
                self.driver.now = max(self.now, end)
                self._step()
                return
            self.driver.now = max(self.now, deadline)
            self._step()

    def _next_deadline(self) -> float | None:
        times = [self.network.next_arrival()]
        times += [
            connection.next_timer()
            for label, connection in self.clients.items()
            if label not in self.stalled_clients
        ]
        if self.up and not self.stalled:
            times.append(self.driver.engine.next_timer())
            times += [due for due, _read, _found in self._reads[:1]]
        known = [t for t in times if t is not None]
        return min(known) if known else None

    def _step(self) -> None:
        """Deliver what has arrived, fire what is due, send what that produced."""
        now = self.now
        for destination, data, source in self.network.arrivals(now):
            if destination in self.stalled_clients:
                self.stalled_clients[destination].append(data)
            elif destination != DAEMON:
                self.clients[destination].receive_datagram(data, now)
            elif self.stalled:
                self._waiting.append((data, source))
            elif self.up:
                self.driver.deliver(data, self._addresses[source])
            else:
                self.clients[source].connection_refused(now)
        for label, connection in self.clients.items():
            deadline = connection.next_timer()
            if deadline is not None and deadline <= now and label not in self.stalled_clients:
                connection.handle_timer(now)
        if self.up and not self.stalled:
            deadline = self.driver.engine.next_timer()
            if deadline is not None and deadline <= now:
                self.driver.advance(0.0)
            while self._reads and self._reads[0][0] <= now:
                _due, read, found = self._reads.pop(0)
                self.driver.report(read, found)
        self._flush()

    def _flush(self) -> None:
        for label, connection in self.clients.items():
            if label in self.stalled_clients:
                continue
            for data in connection.datagrams_to_send(self.now):
                self.network.send(DAEMON, data, self.now, source=label)
            while (event := connection.next_event()) is not None:
                self.events[label].append(event)
        if self.up and not self.stalled:
            self.driver.pump()
            due = self.now + self.read_delay
            self._reads += [(due, read, self.driver.look(read)) for read in self.driver.reading]
            self.driver.reading.clear()
            for address, datagrams in list(self.driver.inbox.items()):
                to = self._labels.get(address)
                if to is None:
                    continue
                for data in datagrams:
                    self.network.send(to, data, self.now)
                del self.driver.inbox[address]
