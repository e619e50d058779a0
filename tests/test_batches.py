"""Room messages committed together travel as one `msgs` frame to clients that read them.

The engine with hand-stepped time and the client core (which asks for batches), the
packing on its own, and the client core against a daemon that sends odd batches.
"""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_chat import wire
from trio_chat.client_protocol import ClientConfig, ClientConnection
from trio_chat.client_protocol.requests import check_sendable_password
from trio_chat.engine import Address, ServerConfig, ServerEngine
from trio_chat.engine.fanout import LocalRoom
from trio_chat.errors import PasswordTooLong
from trio_chat.events import PrivateMessage, PublicMessage
from trio_chat.records import Message
from trio_chat.testing.driver import PASSWORD, EngineDriver, Peer

from .test_hostile_daemon import TS, HostileDaemon, msg

ALICE: Address = ("127.0.0.1", 40001)
ALICE_TOO: Address = ("127.0.0.1", 40011)
BOB: Address = ("127.0.0.1", 40002)
CAROL: Address = ("127.0.0.1", 40003)
DAVE: Address = ("127.0.0.1", 40004)


def room(*people: tuple[Address, str]) -> tuple[EngineDriver, list[Peer]]:
    h = EngineDriver(ServerConfig(), now=100.0)
    peers = []
    for address, name in people:
        if name not in h.engine.accounts:
            h.add_account(name, PASSWORD, address)
        peers.append(Peer(h, name, PASSWORD, address))
    return h, peers


def shown(peer: Peer) -> list[tuple[str, str]]:
    """The live messages a peer's client handed on, as (sender, text)."""
    return [
        (event.sender, event.text)
        for event in peer.events
        if isinstance(event, PublicMessage | PrivateMessage) and not event.history
    ]


def test_messages_committed_together_reach_a_session_that_reads_batches_in_one_frame() -> None:
    h, (alice, alice_too, bob, carol) = room(
        (ALICE, "alice"), (ALICE_TOO, "alice"), (BOB, "bob"), (CAROL, "carol")
    )
    h.auto_commit = False
    alice.send(wire.Say(text="one", cid="a1"))
    seq = bob.send(wire.Say(text="two", cid="b1"))
    alice.send(wire.Say(text="three", cid="a2"))
    carol_before, bob_before = len(carol.frames), len(bob.frames)
    h.commit_held()
    for peer in (alice, alice_too, bob, carol):
        peer.settle()

    # Carol sent none of them: one frame, every message once, in order.
    assert carol.batches == 1
    texts = [(m.sender, m.text) for m in carol.frames[carol_before:] if isinstance(m, wire.Msg)]
    assert texts == [("alice", "one"), ("bob", "two"), ("alice", "three")]
    assert shown(carol) == texts
    assert all(m.cid is None for m in carol.of_type(wire.Msg))
    # Bob sent one: his part comes message by message, his own as the answer, in place.
    assert bob.batches == 0
    answers = [f for f in bob.frames[bob_before:] if isinstance(f, wire.Msg | wire.Ok)]
    assert [(type(f), getattr(f, "text", None)) for f in answers] == [
        (wire.Msg, "one"),
        (wire.Ok, None),
        (wire.Msg, "three"),
    ]
    assert answers[1].re == seq
    # Alice's other session knows her messages as hers (their `cid`), and bob's as his.
    assert alice_too.batches == 0
    assert [(m.text, m.cid) for m in alice_too.of_type(wire.Msg)] == [
        ("one", "a1"),
        ("two", None),
        ("three", "a2"),
    ]
    assert shown(alice_too) == [("alice", "one"), ("bob", "two"), ("alice", "three")]


def test_changes_committed_with_room_messages_that_show_nothing_do_not_split_them() -> None:
    h, (alice, carol) = room((ALICE, "alice"), (CAROL, "carol"))
    h.add_account("dave", PASSWORD, DAVE)
    h.auto_commit = False
    alice.send(wire.Say(text="one", cid="a1"))
    Peer(h, "dave", PASSWORD, DAVE)  # the record of his session, committed between
    alice.send(wire.Say(text="two", cid="a2"))
    assert [type(op).__name__ for op in h.uncommitted] == ["Message", "SessionOpened", "Message"]
    h.commit_held()
    carol.settle()
    assert shown(carol) == [("alice", "one"), ("alice", "two")]
    assert carol.batches == 1


def test_a_private_message_committed_between_room_messages_keeps_its_place() -> None:
    h, (alice, carol) = room((ALICE, "alice"), (CAROL, "carol"))
    h.auto_commit = False
    alice.send(
        wire.Say(text="before", cid="a1"),
        wire.Whisper(to="carol", text="psst", cid="a2"),
        wire.Say(text="after", cid="a3"),
    )
    h.commit_held()
    carol.settle()
    assert shown(carol) == [("alice", "before"), ("alice", "psst"), ("alice", "after")]
    assert carol.batches == 0  # no two room messages came together


def test_a_session_that_logs_in_between_the_commit_and_the_send_sees_each_message_once() -> None:
    h, (alice, carol) = room((ALICE, "alice"), (CAROL, "carol"))
    h.auto_commit = False
    alice.send(wire.Say(text="one", cid="a1"), wire.Say(text="two", cid="a2"))
    h.commit()  # committed; nothing sent yet
    h.add_account("dave", PASSWORD, DAVE)
    dave = Peer(h, "dave", PASSWORD, DAVE)  # the next thing the engine takes in
    for peer in (carol, dave):
        peer.settle()
    assert shown(carol) == [("alice", "one"), ("alice", "two")]
    assert carol.batches == 1
    texts = [m.text for m in dave.of_type(wire.Msg)]
    assert texts == ["one", "two"]  # once each: in his history, or live
    assert len({m.id for m in dave.of_type(wire.Msg)}) == 2


@given(st.lists(st.integers(min_value=0, max_value=1200), max_size=30))
def test_batches_keep_every_message_in_order_and_each_fits_a_frame(lengths: list[int]) -> None:
    sent = [
        wire.Msg(id=i + 1, ts=TS, sender="a" * 64, text="x" * length, cid="c" * 24)
        for i, length in enumerate(lengths)
    ]
    frames = [wire.encode(m) for m in sent]
    frames = [f for f in frames if len(f) <= wire.MAX_FRAME]  # as the daemon's are
    batches = wire.message_batches(frames)
    got: list[wire.Msg] = []
    for batch in batches:
        assert len(batch) <= wire.MAX_FRAME
        frame = wire.decode_server_frame_untrusted(batch)
        if isinstance(frame, wire.Msgs):
            assert len(frame.messages) > 1  # a lone message travels as a `msg`
            got += frame.messages
        else:
            assert isinstance(frame, wire.Msg)
            got.append(frame)
    assert [wire.encode(m) for m in got] == frames
    assert len(batches) <= len(frames)


def test_the_client_shows_a_batch_in_order_skipping_what_it_has_seen_or_cannot_read() -> None:
    daemon, client = HostileDaemon.with_client()
    daemon.send(client, msg(1))
    batch = b'{"t":"msgs","messages":[%s]}' % b",".join(
        [msg(1), msg(2, text="two"), msg(3, ts="yesterday"), msg(4, text="four")]
    )
    daemon.send(client, batch, msg(4, text="four"), msg(5, text="five"))
    live = [e for e in daemon.events if isinstance(e, PublicMessage)]
    assert [(e.id, e.text) for e in live] == [(1, "hi"), (2, "two"), (4, "four"), (5, "five")]


def test_a_batch_holding_something_other_than_room_messages_is_dropped_whole() -> None:
    daemon, client = HostileDaemon.with_client()
    pm = wire.encode(wire.Pm(id=2, ts=TS, sender="bob", to="alice", text="psst"))
    daemon.send(client, b'{"t":"msgs","messages":[%s,%s]}' % (msg(1), pm), msg(3))
    assert [e.id for e in daemon.events if isinstance(e, PublicMessage | PrivateMessage)] == [3]
    assert client.connected


def test_a_room_shared_with_other_daemons_publishes_messages_committed_together() -> None:
    published: list[bytes] = []

    class BusRoom(LocalRoom):
        """Stands in for a room shared over a message bus: publishes, then delivers."""

        def broadcast_run(self, frames: Any, batched: Any, except_accounts: Any) -> None:
            published.extend(frames)  # as messages: each daemon packs them for its own
            super().broadcast_run(frames, batched, except_accounts)

    h = EngineDriver(now=100.0)
    h.engine = ServerEngine(h.engine.config, keys=h.keys, room=BusRoom)
    for name, address in (("alice", ALICE), ("bob", BOB)):
        h.add_account(name, PASSWORD, address)
    alice, bob = Peer(h, "alice", PASSWORD, ALICE), Peer(h, "bob", PASSWORD, BOB)
    h.auto_commit = False
    alice.send(wire.Say(text="one", cid="c1"), wire.Say(text="two", cid="c2"))
    h.commit_held()
    bob.settle()
    assert shown(bob) == [("alice", "one"), ("alice", "two")]
    assert [wire.decode_server_frame_untrusted(f) for f in published] == bob.of_type(wire.Msg)


def test_a_session_index_used_again_reads_batches_only_if_its_own_client_does() -> None:
    """Indexes come back once no connection has had them for a while: a session that left
    takes its reading of `msgs` frames with it, else a client that cannot read them would
    be sent them (and the room would keep every index that ever read them)."""
    delivered: list[tuple[int, list[bytes]]] = []

    def deliver(sid: int, frames: Any, tag: Any = None, *, at_once: bool = False) -> None:
        delivered.append((sid, list(frames)))

    room = LocalRoom(deliver)
    assert room.enter(7, 1, "alice", batches=True)
    assert room.leave(7, 1)
    assert room.enter(7, 2, "bob")  # an older client, given the same index
    room.broadcast_run([b"one", b"two"], [b"both"], ())
    assert delivered == [(7, [b"one", b"two"])]


def test_the_longest_password_the_client_accepts_fits_its_longest_login() -> None:
    name = "a" * 32
    low, high = 0, wire.MAX_FRAME  # accepted, refused
    while high - low > 1:
        middle = (low + high) // 2
        try:
            check_sendable_password(name, "x" * middle)
            low = middle
        except PasswordTooLong:
            high = middle
    password = "x" * low
    h = EngineDriver()
    client = ClientConnection(
        h.server_key,
        name,
        password,
        quiet=True,
        config=ClientConfig(reconnect=False),
        new_id=h.new_id,
        new_index=h.new_client_index,
    )
    client.local_address = ("f" * 64, 65535)
    client._replaces = 2**32 - 1  # as after a session lost, whose ticket then expired
    client.start(h.now, since=wire.MAX_SEQ)
    sent = 0
    for _ in range(5):
        for data in client.datagrams_to_send(h.now):  # ValueError once past MAX_FRAME
            sent += 1
            for answer in h.receive(data, ALICE):
                client.receive_datagram(answer, h.now)
    assert sent >= 2  # the handshake, then the login


NAMES = ("alice", "bob", "carol")
_peer_index = st.integers(0, 20)
_actions = st.one_of(
    st.tuples(st.just("say"), _peer_index, st.integers(1, 4)),
    st.tuples(st.just("whisper"), _peer_index, st.sampled_from(NAMES)),
    st.tuples(st.just("commit"), st.integers(1, 8), st.lists(st.booleans(), max_size=8)),
    st.tuples(st.just("pump")),
    st.tuples(st.just("login"), st.sampled_from(NAMES), st.booleans(), st.integers(-1, 6)),
    st.tuples(st.just("advance"), st.sampled_from([0.01, 0.3, 1.0])),
    st.tuples(st.just("logout"), _peer_index),
    st.tuples(st.just("history"), _peer_index),
    st.tuples(st.just("ping"), _peer_index),
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_actions, max_size=40))
def test_whatever_comes_between_commits_each_session_sees_each_message_once_in_order(
    actions: list[tuple[Any, ...]],
) -> None:
    """Says, whispers, partial commits (some failing, the run left pending until the next
    input), logins with and without `since` and batches, logouts, history, pings, time."""
    h = EngineDriver(ServerConfig(message_burst=10_000), now=100.0)
    ports = itertools.count(41000)
    for name in NAMES:
        h.add_account(name, PASSWORD, ("127.0.0.1", next(ports)))
    h.auto_commit = False
    steady = [Peer(h, name, PASSWORD, ("127.0.0.1", next(ports))) for name in (*NAMES, "alice")]
    peers, alive = list(steady), list(steady)
    texts = itertools.count()
    for action in actions:
        kind = action[0]
        if kind == "say":
            peer = alive[action[1] % len(alive)]
            peer.send(
                *(wire.Say(text=f"t{n}", cid=f"c{n}") for n in itertools.islice(texts, action[2]))
            )
        elif kind == "whisper":
            n = next(texts)
            alive[action[1] % len(alive)].send(
                wire.Whisper(to=action[2], text=f"w{n}", cid=f"c{n}")
            )
        elif kind == "commit":
            ops, h.uncommitted = h.uncommitted[: action[1]], h.uncommitted[action[1] :]
            for i, op in enumerate(ops):
                if isinstance(op, Message) and i < len(action[2]) and action[2][i]:
                    h.engine.failed(op)
                else:
                    h.stored.append(op)
                    h.engine.committed(op, h.now, h.wall)
        elif kind == "pump":
            h.pump()
        elif kind == "login":
            since = None
            if action[3] >= 0:
                since = max(h.engine.chat.next_message_id - 1 - action[3], 0)
            peer = Peer(h, action[1], PASSWORD, ("127.0.0.1", next(ports)), login=False)
            peer.connection.batches = action[2]
            peer.login(since=since)
            peers.append(peer)
            alive.append(peer)
        elif kind == "logout":
            peer = alive[action[1] % len(alive)]
            if peer not in steady:
                peer.connection.logout()
                peer.flush()
                alive.remove(peer)
        elif kind == "history":
            alive[action[1] % len(alive)].send(wire.HistoryRequest(limit=5))
        elif kind == "advance":
            h.advance(action[1])
        else:
            alive[action[1] % len(alive)].send()
    for _ in range(3):
        h.commit_held()
        for peer in alive:
            peer.settle(3)
    public = [m.id for m in h.stored_messages() if m.recipient_id is None]
    for peer in peers:
        live = [f.id for f in peer.frames if isinstance(f, wire.Msg | wire.Pm) and f.re is None]
        assert live == sorted(set(live)), (peer.name, live)  # once each, in order
        own = {f.id for f in peer.frames if isinstance(f, wire.Ok) and f.id is not None}
        assert not own & set(live), (peer.name, live, own)  # its own come as the answer
        got = {i for i in (*live, *own) if i in set(public)}
        if peer in steady:
            assert got == set(public), (peer.name, sorted(got), public)
        elif peer in alive and peer.connection.ready and got:
            assert got == {i for i in public if i >= min(got)}, (peer.name, sorted(got), public)
