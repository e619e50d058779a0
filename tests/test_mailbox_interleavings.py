"""Bob's unread private messages, read from the disk at his logins, under any interleaving
of his sessions coming and going, alice's whispers, commits that come late, reads that
come back late, refused delivery marks and the operator's kicks (hypothesis, on the
engine in explicit time): nothing lost, nothing shown twice in a session, nothing shown
again once marked delivered, and the unread count right."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_engine import EngineHarness, away_with_whispers
from trio_chat import wire
from trio_chat.engine import LoadHistory, LoadMailbox
from trio_chat.records import MarkDelivered, Message
from trio_chat.testing.driver import EngineDriver, Peer

ACTIONS = (
    "login",
    "resume",
    "logout",
    "kick",
    "whisper",
    "note",
    "commit",
    "refuse_mark",
    "read",
    "look",
    "report",
    "poll",
    "ack",
)
Step = tuple[str, int]


class Bob:
    """Bob's sessions, alice whispering to him, and the daemon's disk and reads held."""

    def __init__(self) -> None:
        self.h = h = EngineHarness()
        self.alice, self.bob_id = away_with_whispers(h, "w0")
        h.auto_read = h.auto_commit = False
        self.peers: list[Peer] = []
        self.looked: list[tuple[LoadHistory | LoadMailbox, list[Message] | None]] = []
        """Reads that found the disk as it was, not reported yet."""
        self.port = 41000
        self.said = 0

    def live(self) -> list[Peer]:
        return [p for p in self.peers if p.sid in self.h.engine.sessions]

    def new_session(self, since: int | None = None) -> Peer:
        self.port += 1
        peer = Peer(self.h, "bob", address=("127.0.0.1", self.port), since=since)
        self.peers.append(peer)
        return peer

    def step(self, action: str, n: int) -> None:
        h, live = self.h, self.live()
        if action == "login":
            self.new_session()
        elif action == "resume":
            self.new_session(since=n % (self.said + 2))
        elif action == "logout" and live:
            live[n % len(live)].send(wire.Logout())
        elif action == "kick":
            h.engine.remove("bob", h.now, h.wall)
            h.pump()
        elif action == "whisper":
            self.said += 1
            self.alice.send(wire.Whisper(to="bob", text=f"w{self.said}", cid=f"c{self.said}"))
        elif action == "note" and live:
            self.said += 1
            note = wire.Whisper(to="bob", text=f"note{self.said}", cid=f"n{self.said}")
            live[n % len(live)].send(note)
        elif action == "commit" and h.uncommitted:
            h.commit_held(1 + n % len(h.uncommitted))
        elif action == "refuse_mark":
            marks = [op for op in h.uncommitted if isinstance(op, MarkDelivered)]
            if marks:
                h.uncommitted.remove(marks[0])
                h.engine.failed(marks[0])
                h.pump()
        elif action == "read" and h.reading:
            h.finish_reads()
        elif action == "look" and h.reading:
            self.looked += [(effect, h.look(effect)) for effect in h.reading]
            h.reading = []
        elif action == "report" and self.looked:
            effect, found = self.looked.pop(n % len(self.looked))
            h.report(effect, found)
            h.pump()
        elif action == "poll":
            for peer in live:
                peer.poll()
        elif action == "ack" and live:
            peer = live[n % len(live)]
            peer.poll()
            peer.flush(ack=True)

    def settle(self) -> None:
        """Every read reported, every change committed, every session acknowledging
        what it has, then leaving."""
        h = self.h
        for effect, found in self.looked:
            h.report(effect, found)
        h.pump()
        for _ in range(5):
            h.commit_held()
            h.finish_reads()
            for peer in self.live():
                peer.poll()
                peer.flush(ack=True)
        h.commit_held()
        for peer in self.live():
            peer.send(wire.Logout())
        h.commit_held()


def waiting_for(h: EngineDriver, bob_id: int) -> list[Message]:
    return [m for m in h.stored_messages() if m.recipient_id == bob_id and m.sender_id != bob_id]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(st.tuples(st.sampled_from(ACTIONS), st.integers(0, 1000)), max_size=40))
def test_unread_messages_are_shown_once_and_never_again_once_delivered(steps: list[Step]) -> None:
    bob = Bob()
    for action, n in steps:
        bob.step(action, n)
    bob.settle()
    h, bob_id = bob.h, bob.bob_id
    engine: Any = h.engine
    marked = {i for op in h.stored if isinstance(op, MarkDelivered) for i in op.message_ids}
    # Delivered, their marks refused by the disk: kept to be written with the next.
    refused = set(engine.chat._unmarked) | engine.chat.reads.marking
    for peer in bob.peers:
        ids = [pm.id for pm in peer.of_type(wire.Pm) if pm.sender != "bob"]
        assert len(ids) == len(set(ids)), "shown twice in one session"
    still = [m.id for m in waiting_for(h, bob_id) if m.id not in marked | refused]
    assert h.engine.mailbox.count(bob_id) == len(still)
    h.auto_read = True
    last = Peer(h, "bob", address=("127.0.0.1", 42999))
    shown_last = [pm.id for pm in last.of_type(wire.Pm) if pm.sender != "bob"]
    assert sorted(shown_last) == sorted(still), "shown again once delivered, or not shown"
    assert last.connection.unread == len(still)
    seen = {pm.id for peer in (*bob.peers, last) for pm in peer.of_type(wire.Pm)}
    assert [m.id for m in waiting_for(h, bob_id) if m.id not in seen] == [], "never shown"
