"""Room messages committed together travel as one `msgs` frame to clients that read them.

The engine with hand-stepped time and the client core (which asks for batches), the
packing on its own, and the client core against a daemon that sends odd batches.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trio_chat import wire
from trio_chat.engine import Address, ServerConfig
from trio_chat.events import PrivateMessage, PublicMessage
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
