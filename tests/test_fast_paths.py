"""The shortcuts the hot path takes keep the rules: order, timers, acks, keepalives."""

from __future__ import annotations

import functools
import socket
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import pytest
import trio
import trio.testing

from trio_chat import PublicMessage, connect, register, wire
from trio_chat.client import ClientConfig
from trio_chat.client_protocol import Handle
from trio_chat.engine import Address, CheckPassword, HashPassword, ServerConfig, ServerEngine
from trio_chat.engine.common import SEND_EARLY
from trio_chat.handshake_queue import PER_TURN
from trio_chat.persistence import SLOW_COMMIT
from trio_chat.records import Message, Snapshot, StoreOp
from trio_chat.reliability import Link
from trio_chat.server import BATCH, Daemon, PasswordThreads, bind_udp, serve
from trio_chat.testing.driver import EngineDriver, Peer
from trio_chat.testing.links import plain_open, plain_seal
from trio_chat.testing.raw_peer import RawPeer

ALICE = ("127.0.0.1", 40001)
BOB = ("127.0.0.1", 40002)
CAROL = ("127.0.0.1", 40003)


def notice(n: int) -> bytes:
    return wire.encode(wire.Notice(text=str(n)))


def feed(link: Link, datagram: bytes, now: float) -> list[int]:
    pn, packet = plain_open(datagram)
    delivered = link.receive(pn, packet.ack, packet.sack, packet.frames, now, packet.echo)
    numbers = []
    for _seq, raw in delivered:
        frame = wire.decode_server_frame_untrusted(raw)
        assert isinstance(frame, wire.Notice)
        numbers.append(int(frame.text))
    return numbers


def test_a_queue_that_fits_one_datagram_leaves_whole_and_in_order() -> None:
    sender, receiver = Link(plain_seal), Link(plain_seal)
    for n in range(5):
        sender.send(notice(n))
    (datagram,) = sender.datagrams_to_send(0.0)
    assert feed(receiver, datagram, 0.01) == [0, 1, 2, 3, 4]
    assert sender.datagrams_to_send(0.0) == []  # all of it is in flight now
    assert sender.queued == 5
    for n in range(5, 8):  # later frames are numbered after the ones in flight
        sender.send(notice(n))
    (datagram,) = sender.datagrams_to_send(0.02)
    assert feed(receiver, datagram, 0.03) == [5, 6, 7]


def test_acknowledge_now_makes_the_owed_ack_due_at_once() -> None:
    sender, receiver = Link(plain_seal), Link(plain_seal)
    receiver.acknowledge_now(0.0)
    assert receiver.next_timer() is None  # nothing owed: nothing to do
    sender.send(notice(0))
    (datagram,) = sender.datagrams_to_send(0.0)
    feed(receiver, datagram, 0.01)
    assert receiver.next_timer() == pytest.approx(0.01 + receiver.config.ack_delay)
    receiver.acknowledge_now(0.01)
    assert receiver.next_timer() == 0.01
    (ack,) = receiver.datagrams_to_send(0.01)
    feed(sender, ack, 0.02)
    assert sender.idle


def test_a_ping_is_acknowledged_in_the_same_flush_and_counted_as_a_keepalive() -> None:
    h = EngineDriver()
    h.add_account("alice")
    alice = Peer(h, "alice", address=ALICE)
    alice.flush(ack=True)
    keepalives = h.engine.stats["keepalives"]
    sent = len(h.sent)
    alice.send(wire.Ping())  # delivered and flushed at the same instant
    # The ack came back at once, with no timer fired: the ping is no longer in flight.
    assert len(h.sent) == sent + 1
    assert alice.link.idle
    assert h.engine.stats["keepalives"] == keepalives + 1


def test_a_datagram_carrying_a_message_is_not_a_keepalive() -> None:
    h = EngineDriver()
    h.add_account("alice")
    alice = Peer(h, "alice", address=ALICE)
    keepalives = h.engine.stats["keepalives"]
    alice.link.send(wire.encode(wire.Ping()))
    alice.request(wire.Say(text="hello", cid="c1"))
    alice.flush()
    assert h.engine.stats["keepalives"] == keepalives
    assert [ok.id for ok in alice.of_type(wire.Ok) if ok.id is not None] == [1]


def _bulk_daemon_and_alice() -> tuple[EngineDriver, Peer]:
    """An engine run as the daemon runs it (bulk requests acknowledged first), and
    alice logged in, with nothing in flight either way."""
    h = EngineDriver(
        ServerConfig(message_rate=100.0, message_burst=100), acknowledge_bulk_first=True
    )
    h.add_account("alice")
    alice = Peer(h, "alice", address=ALICE)
    alice.flush(ack=True)
    return h, alice


def test_requests_sent_in_bulk_are_acknowledged_before_they_are_worked_on() -> None:
    h, alice = _bulk_daemon_and_alice()
    engine = h.engine
    bulk = [alice.request(wire.Say(text=f"m{n}", cid=f"c{n}")) for n in range(10)]
    (datagram,) = alice.connection.datagrams_to_send(h.now)
    engine.receive_datagram(datagram, ALICE, h.now, h.wall)
    assert engine.set_aside and engine.take_effects() == []  # nothing worked on yet
    (ack,) = [data for data, to in engine.datagrams_to_send(h.now, h.wall) if to == ALICE]
    alice.take([ack])
    assert alice.link.queued == 0  # all ten acknowledged
    assert not any(handle.done for handle in bulk)
    # A request sent after them, alone in its datagram, waits behind them.
    after = alice.request(wire.Say(text="after", cid="c10"))
    for data in alice.connection.datagrams_to_send(h.now):
        engine.receive_datagram(data, ALICE, h.now, h.wall)
    assert engine.take_effects() == []
    engine.handle_set_aside(h.now, h.wall)
    assert not engine.set_aside
    h.pump()
    alice.poll()
    handles = [*bulk, after]
    assert all(handle.done and handle.error is None for handle in handles)
    ids = [handle.result.id for handle in handles]
    assert ids == sorted(ids) and len(set(ids)) == 11
    assert [m.text for m in h.stored_messages()] == [*(f"m{n}" for n in range(10)), "after"]


def _room(count: int) -> tuple[EngineDriver, list[Peer], Peer]:
    h = EngineDriver()
    receivers = []
    for n in range(count):
        h.add_account(f"r{n}", address=(f"10.0.3.{n + 1}", 1))
        receivers.append(Peer(h, f"r{n}", address=(f"10.0.1.{n + 1}", 1)))
    h.add_account("alice")
    alice = Peer(h, "alice", address=ALICE)
    for peer in [*receivers, alice]:
        peer.settle(3)
    return h, receivers, alice


def _say(h: EngineDriver, alice: Peer, text: str) -> Handle:
    """alice says `text`, and the daemon stores it: its copies are due."""
    engine = h.engine
    said = alice.connection.say(text)
    for data in alice.connection.datagrams_to_send(h.now):
        engine.receive_datagram(data, ALICE, h.now, h.wall)
    for effect in engine.take_effects():
        h.perform(effect)
    return said


def test_a_message_to_the_room_goes_out_while_its_other_copies_are_sealed() -> None:
    h, receivers, alice = _room(20)
    engine = h.engine
    said = _say(h, alice, "hello, room")  # stored: the room's copies are due
    handed: list[list[tuple[bytes, Address]]] = []
    unsealed: list[int] = []
    sealed_before = {peer.name: peer.session.link._pn for peer in receivers}

    def send(datagrams: list[tuple[bytes, Address]]) -> None:
        handed.append(list(datagrams))
        unsealed.append(
            sum(peer.session.link._pn == sealed_before[peer.name] for peer in receivers)
        )

    engine.send_due(h.now, h.wall, send)
    # 21 datagrams (a copy for each receiver, and alice's `ok`), handed on eight at a
    # time while the rest waited to be sealed.
    assert [len(datagrams) for datagrams in handed] == [SEND_EARLY, SEND_EARLY, 5]
    copies_handed = [
        sum(to != ALICE for datagrams in handed[: n + 1] for _data, to in datagrams)
        for n in range(len(handed))
    ]
    assert [copies + left for copies, left in zip(copies_handed, unsealed, strict=True)] == [
        20,
        20,
        20,
    ]
    assert unsealed[0] >= 20 - SEND_EARLY and unsealed[-1] == 0
    for datagrams in handed:
        for data, to in datagrams:
            h.inbox[to].append(data)
    alice.poll()
    assert said.done and said.error is None
    for peer in receivers:
        peer.poll()
        assert [e.text for e in peer.events if isinstance(e, PublicMessage)] == ["hello, room"]


def test_a_few_requests_are_worked_on_at_once_and_timers_take_what_was_set_aside() -> None:
    h, alice = _bulk_daemon_and_alice()
    engine = h.engine
    few = [alice.request(wire.Say(text=f"m{n}", cid=f"c{n}")) for n in range(3)]
    alice.flush()
    assert not engine.set_aside and all(handle.done for handle in few)
    bulk = [alice.request(wire.Say(text=f"b{n}", cid=f"b{n}")) for n in range(8)]
    for data in alice.connection.datagrams_to_send(h.now):
        engine.receive_datagram(data, ALICE, h.now, h.wall)
    assert engine.set_aside
    engine.handle_timers(h.now, h.wall)  # a turn never ends with requests set aside
    assert not engine.set_aside
    h.pump()
    alice.poll()
    assert all(handle.done for handle in bulk)


async def test_chat_goes_on_while_keepalives_pour_in(tmp_path: Path) -> None:
    pouring = trio.Event()

    def watch(engine: ServerEngine) -> None:
        receive = engine.receive_datagram

        def counting(data: bytes, address: Address, now: float, wall: float) -> None:
            receive(data, address, now, wall)
            if engine.stats["keepalives"] >= 50:
                pouring.set()

        engine.receive_datagram = counting  # type: ignore[method-assign]

    config = ServerConfig(message_rate=100.0, message_burst=100)
    fast_pings = ClientConfig(timeout=5.0, keepalive=0.002)  # 500 pings a second
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            daemon = functools.partial(serve, on_ready=watch)
            host, port = await nursery.start(daemon, "127.0.0.1", 0, tmp_path / "chat.db", config)
            for name in ("alice", "bob"):
                await register(host, port, name, "correct horse")
            async with (
                connect(host, port, "alice", "correct horse", config=fast_pings) as alice,
                connect(host, port, "bob", "correct horse") as bob,
            ):
                await pouring.wait()
                sent = await alice.say("still here")
                async for event in bob.events():
                    if isinstance(event, PublicMessage) and event.text == "still here":
                        assert event.id == sent.id
                        break
            nursery.cancel_scope.cancel()


class _Memory:
    """Storage that keeps what it is given in a list: every commit is quick."""

    def __init__(self) -> None:
        self.stored: list[StoreOp] = []

    def load(self, window: int) -> Snapshot:
        return Snapshot()

    def write(self, ops: Sequence[StoreOp]) -> list[StoreOp]:
        self.stored.extend(ops)
        return []

    def history(self, account_id: int, before: int | None, limit: int) -> list[Message]:
        return []

    def mailbox(self, account_id: int) -> list[Message]:
        return []

    def sent(self, sender_id: int, cid: str) -> Message | None:
        return None

    def close(self) -> None:
        pass


async def test_a_message_is_acknowledged_in_the_datagram_that_answers_it() -> None:
    """The daemon commits before it sends: the `ok` and the acknowledgement of the `say`
    leave together, not an acknowledgement alone first."""
    engines: list[ServerEngine] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            daemon = functools.partial(serve, storage=_Memory(), on_ready=engines.append)
            host, port = await nursery.start(daemon, "127.0.0.1", 0)
            await register(host, port, "alice", "correct horse")
            (engine,) = engines
            alice = RawPeer(engine.keys.public, "alice", "correct horse")
            await alice.log_in(host, port)
            link = alice.connection.link
            assert link is not None
            (session,) = [s for s in engine.sessions.values() if s.account is not None]
            while not (session.link.idle and link.idle):  # the login's datagrams settle
                await alice.step(0.01)
            handle = alice.connection.say("hello")
            for datagram in alice.connection.datagrams_to_send(trio.current_time()):
                await alice.sock.send(datagram)
            answer = await alice.sock.recv(2048)
            alice.connection.receive_datagram(answer, trio.current_time())
            assert handle.done and handle.error is None
            assert link.queued == 0  # the same datagram acknowledged the `say`
            alice.close()
            nursery.cancel_scope.cancel()


class _SlowDisk(_Memory):
    """Storage whose commits take `delay` seconds of real time, and which notes whether
    each ran on a worker thread."""

    def __init__(self) -> None:
        super().__init__()
        self.delay = 0.0
        self.threaded: list[bool] = []

    def write(self, ops: Sequence[StoreOp]) -> list[StoreOp]:
        self.threaded.append(threading.current_thread() is not threading.main_thread())
        time.sleep(self.delay)
        return super().write(ops)


async def test_a_message_committed_in_a_worker_thread_is_answered_once_it_is_stored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the disk is slow, commits go to a worker thread: the loop is woken when one
    is done, and the `ok` leaves then, not at the daemon's next timer or datagram (the
    client here sends nothing more, its acknowledgement is owed long before, and the
    engine's check of its memory, its one timer then, is put a minute away)."""
    monkeypatch.setattr("trio_chat.engine.core.MEMORY_CHECK_EVERY", 60.0)
    monkeypatch.setattr("trio_chat.persistence.THREADED_AT_LEAST", 60.0)  # however slow the test
    engines: list[ServerEngine] = []
    disk = _SlowDisk()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            daemon = functools.partial(serve, storage=disk, on_ready=engines.append)
            host, port = await nursery.start(daemon, "127.0.0.1", 0)
            await register(host, port, "alice", "correct horse")
            (engine,) = engines
            alice = RawPeer(engine.keys.public, "alice", "correct horse")
            await alice.log_in(host, port)
            disk.delay = 2 * SLOW_COMMIT
            for text in ("one", "two", "three"):  # slow on the loop: the next go to a thread
                handle = alice.connection.say(text)
                while not handle.done:
                    await alice.step()
            link = alice.connection.link
            assert link is not None
            (session,) = [s for s in engine.sessions.values() if s.account is not None]
            while not (session.link.idle and link.idle):  # nothing in flight: no probes
                await alice.step(0.01)
            disk.delay = 0.3  # past the acknowledgement's delay
            handle = alice.connection.say("four")
            for datagram in alice.connection.datagrams_to_send(trio.current_time()):
                await alice.sock.send(datagram)
            with trio.fail_after(5):
                while not handle.done:  # no timers of its own: nothing sent again
                    answer = await alice.sock.recv(2048)
                    alice.connection.receive_datagram(answer, trio.current_time())
            assert handle.error is None
            assert disk.threaded[-1]
            alice.close()
            nursery.cancel_scope.cancel()


def _two_senders_in_one_run(settle_first: bool) -> Counter[Address]:
    h = EngineDriver()
    for name in ("alice", "bob", "carol"):
        h.add_account(name)
    alice = Peer(h, "alice", address=ALICE)
    bob = Peer(h, "bob", address=BOB)
    carol = Peer(h, "carol", address=CAROL)
    for peer in (alice, bob, carol):
        peer.settle(3)
    engine = h.engine
    alice.connection.say("one")
    bob.connection.say("two")
    for peer in (alice, bob):
        for data in peer.connection.datagrams_to_send(h.now):
            engine.receive_datagram(data, peer.address, h.now, h.wall)
    for effect in engine.take_effects():
        h.perform(effect)  # both stored: one run of two room messages
    assert len(engine.chat._run) == 2
    if settle_first:
        engine.chat.settle()  # outside `send_due`: every copy queued
    out: list[tuple[bytes, Address]] = []
    engine.send_due(h.now, h.wall, out.extend)
    return Counter(to for _data, to in out)


def test_a_run_of_two_senders_goes_in_as_many_datagrams_as_queueing_it() -> None:
    # The datagrams are those queueing would have made: bob, a sender of the run,
    # is handed alice's message and then his `ok`, which share one datagram.
    queued = _two_senders_in_one_run(settle_first=True)
    at_once = _two_senders_in_one_run(settle_first=False)
    assert at_once == queued


def test_a_send_that_raises_mid_fan_out_loses_no_recipients_copy() -> None:
    h, receivers, alice = _room(3 * SEND_EARLY)
    engine = h.engine
    before = {peer.name: peer.session.link._next_seq for peer in receivers}
    _say(h, alice, "hello, room")

    def send(datagrams: list[tuple[bytes, Address]]) -> None:
        raise RuntimeError("the socket's send failed")

    with pytest.raises(RuntimeError):
        engine.send_due(h.now, h.wall, send)
    h.pump()  # the daemon's next turn
    # Each receiver's link took the message (sent, or queued for the next datagram).
    missing = [p.name for p in receivers if p.session.link._next_seq == before[p.name]]
    assert missing == []


# A `send` that raises (a bug: the daemon's own catches the socket's errors): nothing
# is left behind for good, nothing handed on twice, and no later turn raises it again.


def test_a_send_error_left_by_a_block_that_raised_is_not_raised_by_a_later_one() -> None:
    h, receivers, _alice = _room(SEND_EARLY + 2)
    transport = h.engine.transport

    def failing(datagrams: list[tuple[bytes, Address]]) -> None:
        raise RuntimeError("the socket's send failed")

    frame = wire.encode(wire.Unsaid(id=1))
    with pytest.raises(KeyError), transport.sending(h.now, failing):
        for peer in receivers:
            transport.deliver(peer.sid, (frame,), at_once=True)
        raise KeyError("the block's own error")
    # A later turn, whose sends all succeed, must not raise the first turn's error.
    out: list[tuple[bytes, Address]] = []
    h.engine.send_due(h.now, h.wall, out.extend)


def test_a_send_that_raises_in_the_flush_leaves_no_queued_frame_behind() -> None:
    h, receivers, _alice = _room(3 * SEND_EARLY)
    engine = h.engine
    # A broadcast made outside `send_due` (a removal, a join): every copy queued.
    engine.room.broadcast(wire.encode(wire.Unsaid(id=1)))

    def failing(datagrams: list[tuple[bytes, Address]]) -> None:
        raise RuntimeError("the socket's send failed")

    with pytest.raises(RuntimeError):
        engine.send_due(h.now, h.wall, failing)
    h.pump()  # the next turn, whose send works
    stuck = [p.name for p in receivers if p.session.link._unsent]
    assert stuck == []


def test_after_a_send_that_raised_the_next_turn_sends_the_rest_once() -> None:
    h, receivers, alice = _room(3 * SEND_EARLY)
    engine = h.engine
    _say(h, alice, "hello, room")
    handed: list[tuple[bytes, Address]] = []

    def failing(datagrams: list[tuple[bytes, Address]]) -> None:
        handed.extend(datagrams)  # as if some went out, then the socket failed
        raise RuntimeError("the socket's send failed")

    with pytest.raises(RuntimeError):
        engine.send_due(h.now, h.wall, failing)
    start = len(h.sent)
    for data, to in handed:
        h.inbox[to].append(data)  # these went out before the socket failed
    h.pump()
    after = h.sent[start:]
    both = handed + after
    assert len(set(both)) == len(both)  # nothing handed on twice
    reached = {address for _d, address in both}
    assert {p.address for p in receivers} <= reached  # every copy went, no time passing
    for peer in receivers:
        peer.poll()
    got = [
        p.name
        for p in receivers
        if any(isinstance(f, wire.Msg) and f.text == "hello, room" for f in p.frames)
    ]
    assert len(got) == len(receivers)


def test_a_link_that_failed_in_a_flush_whose_send_raised_is_ended_at_the_next_turn() -> None:
    h, receivers, _alice = _room(3 * SEND_EARLY)
    engine = h.engine
    engine.room.broadcast(wire.encode(wire.Unsaid(id=1)))  # every copy queued
    gone = receivers[-1]
    gone.session.link.failure = "unresponsive"  # found as its copy is flushed

    def failing(datagrams: list[tuple[bytes, Address]]) -> None:
        raise RuntimeError("the socket's send failed")

    with pytest.raises(RuntimeError):
        engine.send_due(h.now, h.wall, failing)
    h.pump()  # the next turn, no time passing
    assert gone.sid not in engine.sessions


class _Turns:
    """An engine that notes, in order, what the daemon's receive loop asks of it: each
    datagram by its last two bytes, "send" for a flush, "timers", "set aside". A datagram
    starting with `m` is a session's; `mb` is a request in bulk, set aside."""

    def __init__(self) -> None:
        self.journal: list[str] = []
        self.set_aside = False
        self.effects: list[object] = []

    def from_member(self, data: bytes) -> bool:
        return data.startswith(b"m")

    def receive_datagram(self, data: bytes, address: Address, now: float, wall: float) -> None:
        self.journal.append(data[-2:].decode())
        self.set_aside = self.set_aside or data == b"mb"
        if data == b"mh":
            self.effects.append(HashPassword(1, "correct horse"))
        if data == b"mc":
            self.effects.append(CheckPassword(2, "$argon2id$", "correct horse"))
        if data.endswith(b"!!"):
            raise RuntimeError("a bug")

    def password_hashed(self, job: int, hashed: str, wall: float) -> None:
        self.journal.append("hashed")

    def password_checked(self, job: int, ok: bool, now: float, wall: float) -> None:
        self.journal.append("checked")

    def handle_set_aside(self, now: float, wall: float) -> None:
        self.journal.append("set aside")
        self.set_aside = False

    def handle_timers(self, now: float, wall: float) -> None:
        self.journal.append("timers")

    def next_timer(self) -> float | None:
        return None

    def take_effects(self) -> list[object]:
        effects, self.effects = self.effects, []
        return effects

    def send_due(self, now: float, wall: float, send: object) -> None:
        self.journal.append("send")

    def take_notes(self) -> list[object]:
        return []


class _Instant:
    """Password threads that answer at once."""

    async def run(self, fn: object, *args: object) -> bool:
        return True


async def _turns(datagrams: list[bytes], meanwhile: bool = False) -> list[str]:
    """What the receive loop did with `datagrams`, sent before it starts, until it waits
    for more. `meanwhile`: a task started with the first datagram notes "other" there
    when it is let run."""
    engine = _Turns()
    with (
        trio.fail_after(20),
        bind_udp("127.0.0.1", 0) as sock,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
    ):
        for data in datagrams:
            sender.sendto(data, sock.getsockname())
        async with trio.open_nursery() as nursery:
            as_engine = cast(ServerEngine, engine)
            passwords = cast(PasswordThreads, _Instant())
            daemon = Daemon(as_engine, sock, _Memory(), nursery, passwords)
            if meanwhile:
                receive = engine.receive_datagram

                async def other() -> None:
                    engine.journal.append("other")

                def first(data: bytes, address: Address, now: float, wall: float) -> None:
                    if not engine.journal:
                        nursery.start_soon(other)
                    receive(data, address, now, wall)

                engine.receive_datagram = first  # type: ignore[method-assign]
            nursery.start_soon(daemon.run)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    return engine.journal


HANDSHAKE = bytes((wire.INIT,))


async def test_the_rooms_datagrams_are_answered_before_strangers_and_handshakes() -> None:
    """A turn takes the sessions' datagrams first, and sends what they stored, before it
    answers strangers and the handshakes held back: chat does not wait behind logins."""
    journal = await _turns([b"s1", b"m1", HANDSHAKE + b"h1", b"m2", b"s2"])
    assert journal == ["m1", "m2", "send", "s1", "s2", "h1", "timers", "send"]


async def test_requests_in_bulk_are_acknowledged_before_they_are_worked_on() -> None:
    journal = await _turns([b"mb", b"m2"])
    assert journal == ["mb", "m2", "send", "set aside", "timers", "send"]


async def test_handshakes_past_a_turns_share_are_answered_without_another_datagram() -> None:
    """The handshakes held back past a turn's share are answered in the next turns, at
    once, not when something else arrives."""
    names = [f"h{n}" for n in range(PER_TURN + 2)]
    journal = await _turns([HANDSHAKE + name.encode() for name in names])
    assert [entry for entry in journal if entry.startswith("h")] == names
    assert journal.count("timers") == 2


async def test_a_full_batch_ends_a_turn_and_lets_the_daemons_other_tasks_run() -> None:
    """At most `BATCH` datagrams a turn; between turns the daemon's other tasks (commits
    in a thread, the control socket, logins checked) run, however much keeps arriving."""
    datagrams = [b"m%02d" % (n % 100) for n in range(2 * BATCH + 2)]
    journal = await _turns(datagrams, meanwhile=True)
    assert journal.index("timers") == BATCH
    assert journal[BATCH : BATCH + 2] == ["timers", "send"]
    assert journal.index("other") < len(journal) - 3
    assert journal.count("timers") == 3


async def test_a_datagram_that_meets_a_bug_is_logged_and_the_next_one_is_taken(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug met by one peer's datagram does not stop the daemon for everyone."""
    journal = await _turns([b"m!!", b"m2"])
    assert journal == ["!!", "m2", "timers", "send"]
    assert "error handling a datagram from" in caplog.text


@pytest.mark.parametrize(("datagram", "done"), [(b"mh", "hashed"), (b"mc", "checked")])
async def test_a_password_hashed_or_checked_is_answered_at_once(datagram: bytes, done: str) -> None:
    """The daemon's loop wakes when a worker thread is done with a password: the login
    or registration is answered then, not at the next timer or datagram."""
    journal = await _turns([datagram])
    assert journal == [datagram[-2:].decode(), "timers", "send", done, "timers", "send"]
