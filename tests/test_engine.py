"""The daemon's rules, on the sans-I/O engine with hand-stepped time."""

from __future__ import annotations

import dataclasses
import itertools
import secrets
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_chat import noise, secure, wire
from trio_chat.client_protocol import Ids
from trio_chat.engine import (
    Address,
    LoadHistory,
    LoadMailbox,
    Persist,
    ServerConfig,
    ServerEngine,
)
from trio_chat.engine.chat import READ_AGAIN_AFTER, UNMARKED_MOST
from trio_chat.engine.config import daemon_link
from trio_chat.engine.fanout import LocalRoom
from trio_chat.engine.history import HistoryWindow
from trio_chat.events import History, MessageRemoved
from trio_chat.events import gap_end as client_gap_end
from trio_chat.records import (
    Account,
    MarkDelivered,
    Message,
    MessageRemoval,
    PasswordSet,
    Snapshot,
)
from trio_chat.rules import name_key
from trio_chat.secure import REPLAY_WINDOW, ReplayWindow, new_challenge, new_index
from trio_chat.testing.driver import PASSWORD, EngineDriver, Peer

ALICE = ("127.0.0.1", 40001)
BOB = ("127.0.0.1", 40002)
CAROL = ("127.0.0.1", 40003)


def EngineHarness(
    config: ServerConfig | None = None, snapshot: Snapshot | None = None, *, commit: bool = True
) -> EngineDriver:
    return EngineDriver(config or ServerConfig(), snapshot, auto_commit=commit, now=100.0)


def logged_in(h: EngineDriver, address: Address, name: str) -> Peer:
    """A peer at `address` logged in as `name` (registered first if need be)."""
    if name_key(name) not in h.engine.accounts:
        h.add_account(name, PASSWORD, address)
    peer = Peer(h, name, PASSWORD, address)
    assert peer.connection.ready
    return peer


def answer(peer: Peer, seq: int) -> wire.ServerFrame:
    """The one frame that answered request `seq` (`registered`, `welcome`, `error`)."""
    (frame,) = [f for f in peer.frames if getattr(f, "re", None) == seq]
    return frame


def register(
    h: EngineDriver, address: Address, name: str, password: str = PASSWORD, rid: str = ""
) -> wire.ServerFrame:
    """A registration on a channel of its own, as a client sends it; the one answer."""
    peer = Peer(h, None, address=address)
    seq = peer.send(wire.Register(rid=rid or h.new_id(), name=name, password=password))
    return answer(peer, seq)


def login(h: EngineDriver, address: Address, name: str, password: str = PASSWORD) -> Peer:
    """A login as a client makes it: a channel, then a `login` frame."""
    return Peer(h, name, password, address)


def test_registered_is_sent_only_once_the_account_is_committed() -> None:
    h = EngineHarness(commit=False)
    peer = Peer(h, None, address=ALICE)
    seq = peer.send(wire.Register(rid="r1", name="alice", password="correct horse"))
    assert [type(op) for op in h.uncommitted] == [Account]
    assert not peer.of_type(wire.Registered)
    # The frame was acknowledged at once: the client does not send it again meanwhile.
    peer.settle()
    assert peer.link.queued == 0
    h.commit_held()
    peer.poll()
    assert peer.of_type(wire.Registered) == [wire.Registered(re=seq, name="alice")]


def test_a_registration_sent_again_while_the_first_is_worked_on_is_answered_registered() -> None:
    """Its channel lost while the password was hashed (or the account stored), the client
    sends the same registration (the same `rid`) on a new channel: that one is answered
    `registered` when the account is stored, not told its own name is taken."""
    h = EngineHarness(commit=False)
    h.auto_hash = False
    first = Peer(h, None, address=ALICE)
    request = wire.Register(rid="r1", name="alice", password=PASSWORD)
    first.send(request)
    again = Peer(h, None, address=ALICE)  # a new channel, from the same client
    seq = again.send(request)
    assert not again.of_type(wire.ErrorFrame)  # not `name_taken`: it is the same request
    h.finish_hashing()
    again.send(request)  # and once more, while the account is being stored
    assert not again.of_type(wire.ErrorFrame)
    h.commit_held()
    again.poll()
    answers = again.of_type(wire.Registered)
    assert answers and {answer.name for answer in answers} == {"alice"}
    assert answers[-1].re > seq
    assert len([op for op in h.stored if isinstance(op, Account)]) == 1
    # Another client's registration of the name is refused as ever.
    refused = register(h, BOB, "alice")
    assert isinstance(refused, wire.ErrorFrame) and refused.code == "name_taken"


def test_names_are_unique_after_nfkc_and_casefolding() -> None:
    h = EngineHarness()
    assert isinstance(register(h, ALICE, "Alice"), wire.Registered)
    for n, lookalike in enumerate(("alice", "ALICE", "ａｌｉｃｅ")):
        reply = register(h, (f"127.0.1.{n}", 1), lookalike)  # taken names count per address
        assert isinstance(reply, wire.ErrorFrame)
        assert reply.code == "name_taken"
    assert isinstance(register(h, ALICE, "Алиса"), wire.Registered)


def test_a_name_that_could_be_mistaken_for_an_account_is_taken() -> None:
    h = EngineHarness()
    assert isinstance(register(h, ALICE, "alice"), wire.Registered)
    assert isinstance(register(h, ALICE, "ace"), wire.Registered)
    cases = {"aIice": "alice", "ALlCE": "alice", "\u0430\u0441\u0435": "ace"}  # Cyrillic асе
    for n, (lookalike, like) in enumerate(cases.items()):
        reply = register(h, (f"127.0.2.{n}", 1), lookalike)  # taken names count per address
        assert isinstance(reply, wire.ErrorFrame) and reply.code == "name_taken", lookalike
        assert reply.message == (
            f"The name {lookalike!r} could be mistaken for {like!r}; choose another."
        )
    assert isinstance(register(h, ALICE, "alicia"), wire.Registered)


def test_a_look_alike_of_a_name_still_being_stored_is_taken_until_the_store_fails() -> None:
    h = EngineHarness()
    h.auto_commit = False
    first = Peer(h, None, address=ALICE)
    first.send(wire.Register(rid="r1", name="alice", password=PASSWORD))
    reply = register(h, BOB, "aIice")
    assert isinstance(reply, wire.ErrorFrame) and "mistaken for 'alice'" in reply.message
    (op,) = h.uncommitted
    h.uncommitted = []
    h.engine.failed(op)  # the disk refused the account: its name is free again
    h.pump()
    h.auto_commit = True
    assert isinstance(register(h, BOB, "aIice"), wire.Registered)


def test_accounts_that_already_collide_keep_working_and_are_listed() -> None:
    accounts = [
        Account(1, "alice", "alice", "fake$" + PASSWORD, "2026-11-30T00:00:00.000Z"),
        Account(2, "aIice", "aiice", "fake$" + PASSWORD, "2026-11-30T00:00:00.000Z"),
    ]
    h = EngineHarness(snapshot=Snapshot(accounts=accounts, next_account_id=3))
    assert h.engine.lobby.name_collisions() == [("aIice", "alice")]
    for name in ("alice", "aIice"):
        assert login(h, ALICE, name).connection.connected


# Names registered beside the first of each pair: marks that show as nothing or hardly
# (U+0358 COMBINING DOT ABOVE RIGHT, U+1DCA COMBINING LATIN SMALL LETTER R BELOW), and
# vowel marks that Arabic, Hebrew and Syriac mostly leave out. The third field: whether a
# name may hold such marks at all.
MARKED = [
    ("bob", "bob\u0358", False),
    ("bob", "bo\u1dcab", False),
    ("محمد", "مُحمد", True),
    ("محمد", "مُحَمَّد", True),
    ("שלום", "שָׁלוֹם", False),
    ("ܡܪܝܡ", "ܡܰܪܝܰܡ", True),
]


@pytest.mark.parametrize(("plain", "marked", "allowed"), MARKED)
def test_a_name_with_marks_is_refused_beside_the_name_without(
    plain: str, marked: str, allowed: bool
) -> None:
    h = EngineHarness()
    assert isinstance(register(h, ALICE, plain), wire.Registered)
    reply = register(h, BOB, marked)
    assert isinstance(reply, wire.ErrorFrame)
    if allowed:  # tashkil or Syriac vowels may be written in a name, but do not make another
        assert reply.code == "name_taken"
        assert reply.message == (
            f"The name {marked!r} could be mistaken for {plain!r}; choose another."
        )
    else:
        assert reply.code == "invalid_name"
        assert "which Unicode does not recommend in identifiers" in reply.message
    assert not any(account.name == marked for account in h.engine.accounts.values())


@pytest.mark.parametrize(("plain", "marked", "allowed"), MARKED)
def test_a_name_without_marks_is_refused_beside_the_name_with_them(
    plain: str, marked: str, allowed: bool
) -> None:
    if allowed:
        h = EngineHarness()
        assert isinstance(register(h, ALICE, marked), wire.Registered)
    else:  # an account stored before such marks were refused
        created = "2026-11-30T00:00:00.000Z"
        old = Account(1, marked, name_key(marked), "fake$" + PASSWORD, created)
        h = EngineHarness(snapshot=Snapshot(accounts=[old], next_account_id=2))
    reply = register(h, BOB, plain)
    assert isinstance(reply, wire.ErrorFrame) and reply.code == "name_taken"
    assert reply.message == f"The name {plain!r} could be mistaken for {marked!r}; choose another."
    assert login(h, ALICE, marked).connection.connected


def test_accounts_stored_before_that_now_collide_keep_working_and_are_listed() -> None:
    # The daemon computes the accounts' look-alike keys when it starts: accounts stored
    # before these rules are compared by today's.
    names = ["محمد", "مُحَمَّد", "bob", "bob\u0358", "alice"]
    accounts = [
        Account(n, name, name_key(name), "fake$" + PASSWORD, "2026-11-30T00:00:00.000Z")
        for n, name in enumerate(names, start=1)
    ]
    h = EngineHarness(snapshot=Snapshot(accounts=accounts, next_account_id=len(names) + 1))
    assert sorted(h.engine.lobby.name_collisions()) == [
        ("bob", "bob\u0358"),
        ("محمد", "مُحَمَّد"),
    ]
    for n, name in enumerate(names):
        assert login(h, (f"127.0.3.{n}", 1), name).connection.connected


def test_accents_and_letters_that_carry_them_are_names_of_their_own() -> None:
    h = EngineHarness()
    pairs = [
        ("Jose", "José"),
        ("Zoe", "Zoë"),
        ("Lukasz", "Łukasz"),
        ("احمد", "أحمد"),
        ("ꦧꦝ", "ꦧꦸꦝꦶ"),  # Javanese vowel signs (Limited_Use), which a name may hold
    ]
    for n, (plain, accented) in enumerate(pairs):
        address = (f"127.0.4.{n}", 1)
        assert isinstance(register(h, address, plain), wire.Registered), plain
        assert isinstance(register(h, address, accented), wire.Registered), accented


def test_each_registration_failure_has_its_own_code() -> None:
    h = EngineHarness()
    cases = {
        "invalid_name": ("bad name", "correct horse"),
        "password_too_short": ("alice", "short"),
        "password_too_long": ("alice", "p" * 257),
    }
    for code, (name, password) in cases.items():
        reply = register(h, ALICE, name, password)
        assert isinstance(reply, wire.ErrorFrame)
        assert reply.code == code
        assert reply.message.endswith(".")


def test_login_failures_each_have_their_code_and_a_login_is_checked_once() -> None:
    h = EngineHarness()
    register(h, ALICE, "alice")
    codes = {
        "unknown_user": login(h, ALICE, "nobody"),
        "wrong_password": login(h, ALICE, "alice", "wrong password"),
    }
    # A password no account could have is wrong at once, without a hash spent on it.
    checks = len([op for op in h.stored if isinstance(op, Account)])
    codes["wrong_password "] = login(h, ALICE, "alice", "short")
    for code, peer in codes.items():
        assert peer.connection.failure is not None
        assert peer.connection.failure.code == code.strip()
    assert len([op for op in h.stored if isinstance(op, Account)]) == checks

    # Three failures from ALICE's address (an unknown name counts as one): from another.
    alice = login(h, ("127.0.0.2", 40001), "ALICE")
    (welcome,) = alice.of_type(wire.Welcome)
    assert welcome.name == "alice" and welcome.ticket
    # The login frame sent again (its acknowledgement was lost) is not acted on twice.
    alice.link.send(wire.encode(wire.Login(name="alice", password=PASSWORD)))
    alice.flush()
    assert len(alice.of_type(wire.Welcome)) == 1
    assert [e.code for e in alice.of_type(wire.ErrorFrame)] == ["bad_request"]
    logged_in_sessions = [s for s in h.engine.sessions.values() if s.account is not None]
    assert len(logged_in_sessions) == 1


def test_history_waits_until_the_address_has_proven_it_receives() -> None:
    h = EngineHarness(ServerConfig(message_burst=100))
    alice = logged_in(h, ALICE, "alice")
    for n in range(30):
        alice.send(wire.Say(text=f"message {n}", cid=f"c{n}"))
    h.add_account("bob")
    bob = Peer(h, "bob", address=BOB, login=False)
    bob.connection.start(h.now)
    (request,) = bob.connection.datagrams_to_send(h.now)
    welcome = h.receive(request, BOB)
    assert len(welcome) == 1  # nothing beyond the welcome before bob answers
    bob.take(welcome)
    bob.flush()
    history = bob.of_type(wire.Msg)
    assert [m.text for m in history] == [f"message {n}" for n in range(10, 30)]
    assert all(m.history for m in history)
    (ready,) = bob.of_type(wire.Ready)
    assert ready == wire.Ready(count=20, more=True, upto=30)  # message 30 the last stored


def test_a_public_message_reaches_everyone_else_once_it_is_on_disk() -> None:
    h = EngineHarness()
    alice, bob, carol = (
        logged_in(h, a, n) for a, n in ((ALICE, "alice"), (BOB, "bob"), (CAROL, "carol"))
    )
    h.auto_commit = False
    seq = alice.send(wire.Say(text="你好，世界 🙂", cid="c1"))
    for client in (alice, bob, carol):
        assert not any(isinstance(f, wire.Msg | wire.Ok) for f in client.poll())
    h.commit_held()
    for other in (bob, carol):
        (msg,) = [f for f in other.poll() if isinstance(f, wire.Msg)]
        assert (msg.sender, msg.text, msg.history) == ("alice", "你好，世界 🙂", False)
        assert msg.ts.endswith("Z")
        assert msg.cid is None  # the sender's own sessions only know a message by it
    (ok,) = [f for f in alice.poll() if isinstance(f, wire.Ok)]
    assert (ok.re, ok.id) == (seq, msg.id)
    assert not alice.of_type(wire.Msg)  # the sender hears its own message as the answer


def test_a_message_resent_with_the_same_client_id_is_kept_once() -> None:
    h = EngineHarness()
    alice, bob = logged_in(h, ALICE, "alice"), logged_in(h, BOB, "bob")
    first = alice.send(wire.Say(text="once", cid="same"))
    second = alice.send(wire.Say(text="once", cid="same"))
    oks = alice.of_type(wire.Ok)
    assert [ok.re for ok in oks] == [first, second]
    assert oks[0].id == oks[1].id
    assert [m.text for m in bob.poll() if isinstance(m, wire.Msg)] == ["once"]
    assert sum(isinstance(op, Message) for op in h.stored) == 1


def test_private_messages_reach_every_session_of_the_recipient_and_wait_when_offline() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    bob_one = logged_in(h, BOB, "bob")
    bob_two = logged_in(h, ("127.0.0.1", 40004), "bob")
    carol = logged_in(h, CAROL, "carol")
    alice.send(wire.Whisper(to="BOB", text="psst", cid="w1"))
    for session in (bob_one, bob_two):
        (pm,) = [f for f in session.poll() if isinstance(f, wire.Pm)]
        assert (pm.sender, pm.to, pm.text, pm.cid) == ("alice", "bob", "psst", None)
        session.flush(ack=True)
    assert not any(isinstance(f, wire.Pm) for f in carol.poll())
    assert any(isinstance(op, MarkDelivered) for op in h.stored)

    # Offline: stored, counted as unread, delivered as history on the next login.
    carol.send(wire.Logout())
    alice.send(wire.Whisper(to="carol", text="while you were away", cid="w2"))
    unknown = alice.send(wire.Whisper(to="nobody", text="hello?", cid="w3"))
    errors = alice.of_type(wire.ErrorFrame)
    assert [(e.code, e.re) for e in errors] == [("unknown_user", unknown)]
    again = Peer(h, "carol", address=("127.0.0.1", 40005))
    assert again.connection.unread == 1
    (waiting,) = again.of_type(wire.Pm)
    assert (waiting.text, waiting.history) == ("while you were away", True)
    again.flush(ack=True)
    delivered = [op for op in h.stored if isinstance(op, MarkDelivered)]
    assert delivered[-1].message_ids == (waiting.id,)
    assert h.engine.mailbox.count(h.engine.accounts["carol"].id) == 0


def away_with_whispers(h: EngineDriver, *texts: str) -> tuple[Peer, int]:
    """Alice in the room, bob logged out; alice whispers `texts` to him (each stored, if
    the driver commits). Returns alice and bob's account id."""
    alice, bob = logged_in(h, ALICE, "alice"), logged_in(h, BOB, "bob")
    bob.send(wire.Logout())
    for n, text in enumerate(texts):
        alice.send(wire.Whisper(to="bob", text=text, cid=f"away{n}"))
    return alice, h.engine.accounts["bob"].id


def reads_asked(h: EngineDriver, kind: str) -> list[Any]:
    """The reads of `kind` ("history", "mailbox") `h` will be asked for from now on."""
    asked: list[Any] = []
    original = getattr(h, kind)

    def spy(effect: Any) -> list[Message] | None:
        asked.append(effect)
        result: list[Message] | None = original(effect)
        return result

    setattr(h, kind, spy)
    return asked


def test_an_account_away_costs_a_count_and_its_messages_are_read_when_it_logs_in() -> None:
    h = EngineHarness()
    _alice, bob_id = away_with_whispers(h, "one", "two", "three")
    assert h.engine.mailbox.count(bob_id) == 3
    assert h.engine.mailbox.in_memory() == 0  # on disk only
    reads = reads_asked(h, "mailbox")
    bob = Peer(h, "bob", address=("127.0.0.1", 40005))
    assert [effect.account_id for effect in reads] == [bob_id]
    assert bob.connection.unread == 3
    assert [(p.text, p.history) for p in bob.of_type(wire.Pm)] == [
        ("one", True),
        ("two", True),
        ("three", True),
    ]
    assert bob.of_type(wire.Ready)[0].count == 3
    other = Peer(h, "bob", address=("127.0.0.1", 40006))  # the account is read already
    assert len(reads) == 1 and len(other.of_type(wire.Pm)) == 3
    said = bob.send(wire.Say(text="thanks", cid="t1"))  # answered as ever once in
    assert [o.re for o in bob.of_type(wire.Ok)] == [said]
    bob.flush(ack=True)
    assert h.engine.mailbox.count(bob_id) == 0
    (mark,) = [op for op in h.stored if isinstance(op, MarkDelivered)]
    assert mark.message_ids == tuple(p.id for p in bob.of_type(wire.Pm))


def test_the_last_session_leaving_takes_its_accounts_messages_out_of_memory() -> None:
    h = EngineHarness()
    alice, bob_id = away_with_whispers(h)
    bob = logged_in(h, BOB, "bob")
    other = Peer(h, "bob", address=("127.0.0.1", 40006))
    alice.send(wire.Whisper(to="bob", text="unread", cid="u1"))  # sent, not acknowledged
    bob.send(wire.Logout())
    assert h.engine.mailbox.in_memory() == 1  # another session is still there
    other.send(wire.Logout())
    assert h.engine.mailbox.in_memory() == 0
    assert h.engine.mailbox.count(bob_id) == 1
    again = Peer(h, "bob", address=("127.0.0.1", 40007))
    assert [p.text for p in again.of_type(wire.Pm)] == ["unread"]


def test_whispers_stored_while_a_mailbox_is_read_are_shown_once_in_order() -> None:
    """The read (in a thread) sees the disk as it was before "two" was stored, which the
    loop meanwhile committed and would have shown to bob's sessions had they entered."""
    h = EngineHarness()
    alice, bob_id = away_with_whispers(h, "one")
    h.auto_read = False
    bob = Peer(h, "bob", address=("127.0.0.1", 40005))
    assert not bob.of_type(wire.Ready)  # it enters once the read is done
    (effect,) = h.reading
    assert isinstance(effect, LoadMailbox)
    read = h.mailbox(effect)
    alice.send(wire.Whisper(to="bob", text="two", cid="t2"))
    other = Peer(h, "bob", address=("127.0.0.1", 40006))
    assert h.reading == [effect]  # one read for both
    assert not bob.of_type(wire.Pm)
    h.reading = []
    h.engine.mailbox_loaded(effect.job, read, h.now, h.wall)
    h.pump()
    for session in (bob, other):
        session.poll()
        assert [p.text for p in session.of_type(wire.Pm)] == ["one", "two"]
        assert [r.count for r in session.of_type(wire.Ready)] == [2]
    assert h.engine.mailbox.count(bob_id) == 2


def test_a_whisper_stored_after_its_recipients_mailbox_was_read_is_shown_and_marked() -> None:
    """Said while bob was away and stored only once his mailbox was read (without it):
    shown to him as it is stored, and its delivery recorded when he acknowledges it."""
    h = EngineHarness()
    alice, bob_id = away_with_whispers(h, "early")
    h.auto_commit = False
    alice.send(wire.Whisper(to="bob", text="late", cid="l1"))
    late = next(op for op in h.uncommitted if isinstance(op, Message))
    bob = Peer(h, "bob", address=("127.0.0.1", 40005))
    assert [p.text for p in bob.of_type(wire.Pm)] == ["early"]
    assert bob.connection.unread == 2
    h.commit_held()
    bob.poll()
    assert [p.text for p in bob.of_type(wire.Pm)] == ["early", "late"]
    bob.flush(ack=True)
    h.commit_held()
    marked = {i for op in h.stored if isinstance(op, MarkDelivered) for i in op.message_ids}
    assert late.id in marked
    assert h.engine.mailbox.count(bob_id) == 0


def mark_held(h: EngineDriver, alice: Peer, bob: Peer, text: str) -> MarkDelivered:
    """Alice whispers `text` to bob, and bob acknowledges it; its delivery's mark is taken
    out of what waits to be written (the disk has not written it), and commits are held."""
    alice.send(wire.Whisper(to="bob", text=text, cid="held"))
    bob.poll()
    h.auto_commit = False
    bob.flush(ack=True)
    (mark,) = [op for op in h.uncommitted if isinstance(op, MarkDelivered)]
    h.uncommitted.remove(mark)
    return mark


def test_a_delivery_not_yet_marked_on_disk_is_not_shown_again_at_the_next_login() -> None:
    h = EngineHarness()
    alice, bob = logged_in(h, ALICE, "alice"), logged_in(h, BOB, "bob")
    mark_held(h, alice, bob, "read")  # and never written
    bob.send(wire.Logout())
    h.auto_commit = True
    h.commit_held()
    alice.send(wire.Whisper(to="bob", text="new", cid="n1"))
    reads = reads_asked(h, "mailbox")
    again = Peer(h, "bob", address=("127.0.0.1", 40005))
    assert len(reads) == 1  # "new" is on disk only
    assert [p.text for p in again.of_type(wire.Pm)] == ["new"]
    assert again.connection.unread == 1


def test_a_whisper_not_yet_stored_when_its_recipient_left_is_marked_once_delivered() -> None:
    """Bob logs out and in again while alice's whisper is on its way to the disk: the
    read does not find it, but it is delivered as it is stored, and its delivery is
    recorded (not shown again at his next login)."""
    h = EngineHarness()
    alice, bob_id = away_with_whispers(h, "stored")
    bob = Peer(h, "bob", address=("127.0.0.1", 40005))
    bob.flush(ack=True)
    h.auto_commit = False
    alice.send(wire.Whisper(to="bob", text="on its way", cid="w1"))
    bob.send(wire.Logout())
    again = Peer(h, "bob", address=("127.0.0.1", 40006))
    assert not again.of_type(wire.Pm)
    h.auto_commit = True
    h.commit_held()
    again.poll()
    (pm,) = again.of_type(wire.Pm)
    assert pm.text == "on its way"
    again.flush(ack=True)
    marked = {i for op in h.stored if isinstance(op, MarkDelivered) for i in op.message_ids}
    assert pm.id in marked
    assert h.engine.mailbox.count(bob_id) == 0


def test_a_mailbox_read_counts_what_it_found() -> None:
    """A start counts each account's unread messages; a read of the mailbox finds them
    and counts them again (should the two differ, the disk is right)."""
    h = EngineHarness()
    _alice, bob_id = away_with_whispers(h, "one", "two")
    again = EngineDriver(
        h.config,
        Snapshot(
            accounts=h.stored_accounts(),
            recent=h.stored_messages(),
            unread={bob_id: 5},
            next_message_id=10,
            next_account_id=3,
        ),
        now=h.now,
        first_sid=h.first_sid + 500,
        keys=h.keys,
    )
    again.stored = list(h.stored)
    assert again.engine.mailbox.count(bob_id) == 5
    bob = Peer(again, "bob", address=("127.0.0.1", 40005))
    assert [p.text for p in bob.of_type(wire.Pm)] == ["one", "two"]
    assert again.engine.mailbox.count(bob_id) == 2


def test_deliveries_marked_on_disk_are_forgotten() -> None:
    h = EngineHarness()
    alice, bob = logged_in(h, ALICE, "alice"), logged_in(h, BOB, "bob")
    mark = mark_held(h, alice, bob, "psst")
    assert len(h.engine.chat.reads.marking) == 1  # its mark is on its way to the disk
    h.uncommitted.append(mark)
    h.commit_held()
    assert h.engine.chat.reads.marking == set()


def test_what_a_session_says_while_its_mailbox_is_read_is_shown_to_it_once() -> None:
    """A message sent right after `welcome` is stored while the mailbox is read: the
    history then holds bob's own message, which he is shown once."""
    h = EngineHarness()
    alice, _bob_id = away_with_whispers(h, "waiting")
    h.auto_read = False
    bob = Peer(h, "bob", address=("127.0.0.1", 40005))
    said = bob.connection.say("hello room")
    bob.flush()
    h.finish_reads()
    bob.poll()
    history = [(m.text, m.history) for m in bob.of_type(wire.Msg)]
    assert history == [("hello room", True)]
    (shown,) = [e for e in bob.events if isinstance(e, History)]
    assert [m.text for m in shown.messages] == ["waiting"]  # his own came as its answer
    assert [m.text for m in alice.poll() if isinstance(m, wire.Msg)] == ["hello room"]
    assert said.done


def test_a_session_waiting_for_its_mailbox_is_answered_after_its_history() -> None:
    """Bob's message is stored while his unread messages are read, after alice's: its
    answer, whose id his client resumes from, comes after his history, which shows
    alice's. Sent before, a session lost before its history came (a restart, a network
    gone) would come back from past alice's message, never shown to him."""
    h = EngineHarness()
    alice, _bob_id = away_with_whispers(h, "waiting")
    h.auto_read = False
    bob = Peer(h, "bob", address=("127.0.0.1", 40005))
    alice.send(wire.Say(text="before", cid="a1"))
    said = bob.request(wire.Say(text="after", cid="b1"))
    bob.flush()
    assert not said.done and not bob.of_type(wire.Ok)
    h.finish_reads()
    bob.poll()
    assert said.done
    assert [type(f) for f in bob.frames if isinstance(f, wire.Ready | wire.Ok)] == [
        wire.Ready,
        wire.Ok,
    ]
    assert [m.text for m in bob.of_type(wire.Msg)] == ["before", "after"]


def test_a_removal_made_while_a_session_waits_for_its_mailbox_reaches_it() -> None:
    """Bob says something while his unread messages are read, and the operator removes it
    before the read is done: the room is told at once; bob's client, whose answer waits
    for his history, is told after it, and shows it no more."""
    h = EngineHarness()
    alice, _bob_id = away_with_whispers(h, "waiting")
    h.auto_read = False
    bob = Peer(h, "bob", address=("127.0.0.1", 40005))
    said = bob.connection.say("oops")
    bob.flush()
    (oops,) = [m for m in h.stored_messages() if m.text == "oops"]
    h.engine.remove_message(MessageRemoval(oops.id))
    h.pump()
    alice.poll()
    assert alice.events[-1] == MessageRemoved(oops.id)
    h.finish_reads()
    bob.poll()
    assert said.done
    assert bob.events[-1] == MessageRemoved(oops.id)


def test_a_refused_mark_that_reaches_the_disk_while_a_mailbox_is_read_is_not_shown_again() -> None:
    """Bob's delivery mark was refused by the disk and waits to go with the next mark.
    He logs in again; his mailbox read finds the whisper still waiting; before the read is
    reported, carol acknowledges a whisper, and the mark that carries bob's reaches the
    disk: bob is not shown it again."""
    h = EngineHarness()
    alice, bob, carol = (
        logged_in(h, a, n) for a, n in ((ALICE, "alice"), (BOB, "bob"), (CAROL, "carol"))
    )
    mark = mark_held(h, alice, bob, "read once")
    h.engine.failed(mark)  # refused: kept to go with the next mark
    h.auto_commit = True
    h.commit_held()
    bob.send(wire.Logout())
    alice.send(wire.Whisper(to="bob", text="while away", cid="w3"))
    h.auto_read = False
    again = Peer(h, "bob", address=("127.0.0.1", 40005))
    (effect,) = h.reading
    assert isinstance(effect, LoadMailbox)
    read = h.mailbox(effect)  # the disk as the read finds it: "read once" still waiting
    assert [m.text for m in read] == ["read once", "while away"]
    h.reading = []
    alice.send(wire.Whisper(to="carol", text="hi carol", cid="w2"))
    carol.poll()
    carol.flush(ack=True)  # its mark carries bob's, and reaches the disk
    marked = {i for op in h.stored if isinstance(op, MarkDelivered) for i in op.message_ids}
    assert read[0].id in marked
    h.engine.mailbox_loaded(effect.job, read, h.now, h.wall)
    h.pump()
    again.poll()
    assert [p.text for p in again.of_type(wire.Pm)] == ["while away"]
    assert h.engine.mailbox.count(h.engine.accounts["bob"].id) == 1


def test_a_mailbox_read_is_wanted_until_its_sessions_leave() -> None:
    """A read that fails is tried again by the shell for as long as a session waits."""
    h = EngineHarness()
    _alice, _bob_id = away_with_whispers(h, "waiting")
    h.auto_read = False
    Peer(h, "bob", address=("127.0.0.1", 40005))
    (effect,) = h.reading
    assert h.engine.wants_mailbox(effect.job)
    h.advance(300.0)  # the session times out
    assert not h.engine.wants_mailbox(effect.job)


def test_a_session_waiting_for_its_mailbox_is_shown_what_another_of_its_account_sent() -> None:
    """Two sessions of bob wait for his unread messages; one whispers to alice and writes
    a note to himself, both stored meanwhile. Had the other entered, it would have been
    shown them as they were stored: its history shows them."""
    h = EngineHarness()
    _alice, _bob_id = away_with_whispers(h, "waiting")
    h.auto_read = False
    bob = Peer(h, "bob", address=("127.0.0.1", 40005))
    other = Peer(h, "bob", address=("127.0.0.1", 40006))
    bob.send(
        wire.Whisper(to="bob", text="note", cid="n1"),
        wire.Whisper(to="alice", text="out", cid="o1"),
    )
    h.finish_reads()
    other.poll()
    assert [(p.text, p.history) for p in other.of_type(wire.Pm)] == [
        ("waiting", True),
        ("note", True),
        ("out", True),
    ]
    bob.poll()
    assert [p.text for p in bob.of_type(wire.Pm)] == ["waiting"]  # his own came as answers
    assert len(bob.of_type(wire.Ok)) == 2


def test_a_mailbox_read_for_a_session_that_left_meanwhile_is_dropped() -> None:
    h = EngineHarness()
    _alice, bob_id = away_with_whispers(h, "waiting")
    h.auto_read = False
    bob = Peer(h, "bob", address=("127.0.0.1", 40005))
    h.advance(300.0)  # its client is gone: the session times out before the read is done
    assert bob.sid not in h.engine.sessions
    reads = h.engine.chat.reads
    assert not (reads._held or reads._missed or reads._entering)  # nothing kept for it
    h.finish_reads()
    assert h.engine.mailbox.in_memory() == 0
    h.auto_read = True
    again = Peer(h, "bob", address=("127.0.0.1", 40006))
    assert [p.text for p in again.of_type(wire.Pm)] == ["waiting"]
    assert h.engine.mailbox.count(bob_id) == 1


def test_a_delivery_the_disk_could_not_record_is_recorded_with_the_next() -> None:
    """Marking a private message delivered failed (a full disk, say): were it left
    unmarked, a restarted daemon would show it again. It goes with the next mark."""
    h = EngineHarness()
    alice, bob = logged_in(h, ALICE, "alice"), logged_in(h, BOB, "bob")
    ids = []
    mark = MarkDelivered(())
    for n in range(2):
        alice.send(wire.Whisper(to="bob", text=f"psst {n}", cid=f"w{n}"))
        h.auto_commit = False
        (pm,) = [f for f in bob.poll() if isinstance(f, wire.Pm)]
        bob.flush(ack=True)
        (op,) = h.uncommitted
        assert isinstance(op, MarkDelivered) and op.message_ids[-1] == pm.id
        mark = op
        h.uncommitted = []
        ids.append(pm.id)
        if n == 0:
            h.engine.failed(mark)
        h.auto_commit = True
    assert mark.message_ids == tuple(ids)


def test_deliveries_the_disk_could_not_record_are_tried_again_as_the_daemon_stops() -> None:
    h = EngineHarness()
    alice, bob = logged_in(h, ALICE, "alice"), logged_in(h, BOB, "bob")
    alice.send(wire.Whisper(to="bob", text="psst", cid="w1"))
    h.auto_commit = False
    (pm,) = [f for f in bob.poll() if isinstance(f, wire.Pm)]
    bob.flush(ack=True)
    (mark,) = h.uncommitted
    assert isinstance(mark, MarkDelivered)
    h.uncommitted = []
    h.engine.failed(mark)
    h.engine.shutdown(h.now, h.wall)
    h.pump()
    marks = [op for op in h.uncommitted if isinstance(op, MarkDelivered)]
    assert [m.message_ids for m in marks] == [(pm.id,)]


def test_a_whisper_to_yourself_reaches_your_other_sessions_and_waits_in_no_mailbox() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    other = logged_in(h, BOB, "alice")
    seq = alice.send(wire.Whisper(to="alice", text="note to self", cid="n1"))
    (ok,) = [o for o in alice.of_type(wire.Ok) if o.re == seq]
    assert ok.to == "alice"
    assert not alice.of_type(wire.Pm)  # the session that wrote it has the `ok`
    other.poll()
    assert [(p.sender, p.to, p.text) for p in other.of_type(wire.Pm)] == [
        ("alice", "alice", "note to self")
    ]
    assert h.engine.mailbox.count(h.engine.accounts["alice"].id) == 0


def test_a_note_to_yourself_is_taken_whatever_your_mailbox_holds() -> None:
    """Notes to yourself wait in no mailbox, so a full one does not refuse them (it is
    full until this session acknowledges what came, which a lost datagram delays)."""
    h = EngineHarness(ServerConfig(mailbox_limit=1))
    alice, bob = logged_in(h, ALICE, "alice"), logged_in(h, BOB, "bob")
    bob.send(wire.Whisper(to="alice", text="unread", cid="u1"))  # not yet with alice
    assert h.engine.mailbox.count(h.engine.accounts["alice"].id) == 1
    seq = alice.send(wire.Whisper(to="alice", text="note", cid="n1"))
    assert [e.code for e in alice.of_type(wire.ErrorFrame)] == []
    assert [o.to for o in alice.of_type(wire.Ok) if o.re == seq] == ["alice"]


def test_a_whisper_sent_again_past_the_window_to_a_full_mailbox_is_answered_as_stored() -> None:
    """Alice's whisper filled bob's mailbox; its answer lost, her client sends it again
    after more messages than the daemon keeps in memory. It was answered `mailbox_full`,
    her client telling her it was not sent, though bob will read it: the daemon looks it
    up on disk now, and answers it as stored. A new whisper is refused still."""
    h = EngineHarness(ServerConfig(mailbox_limit=1, window_messages=3))
    alice = logged_in(h, ALICE, "alice")
    h.add_account("bob", PASSWORD, BOB)
    first = alice.send(wire.Whisper(to="bob", text="psst", cid="w1"))
    (stored,) = [o for o in alice.of_type(wire.Ok) if o.re == first]
    full = alice.send(wire.Whisper(to="bob", text="still there?", cid="w2"))
    assert [(e.re, e.code) for e in alice.of_type(wire.ErrorFrame)] == [(full, "mailbox_full")]
    for n in range(3):
        alice.send(wire.Say(text=f"newer {n}", cid=f"s{n}"))
    assert h.engine.chat.window.find(h.engine.accounts["alice"].id, "w1") is None  # forgotten
    again = alice.send(wire.Whisper(to="bob", text="psst", cid="w1"))
    (answer,) = [f for f in alice.frames if getattr(f, "re", None) == again]
    assert answer == wire.Ok(re=again, id=stored.id, ts=stored.ts, to="bob")
    new = alice.send(wire.Whisper(to="bob", text="hello?", cid="w3"))
    (refused,) = [f for f in alice.frames if getattr(f, "re", None) == new]
    assert isinstance(refused, wire.ErrorFrame) and refused.code == "mailbox_full"
    assert [m.text for m in h.stored_messages() if m.private] == ["psst"]
    # A daemon started again from a full window may have forgotten messages too.
    assert not HistoryWindow(3, h.stored_messages()).complete
    assert HistoryWindow(3, h.stored_messages()[:2]).complete


def test_a_look_for_a_whisper_sent_before_is_one_of_the_sessions_two_reads() -> None:
    """A session with two reads under way (`history`, a look on disk for a whisper sent
    again) is told to send the next such whisper a moment later, as too fast, and its
    later messages wait behind it; nothing is refused that was stored."""
    h = EngineHarness(ServerConfig(mailbox_limit=1, window_messages=2))
    alice = logged_in(h, ALICE, "alice")
    h.add_account("bob", PASSWORD, BOB)
    first = alice.send(wire.Whisper(to="bob", text="psst", cid="w1"))
    (stored,) = [o for o in alice.of_type(wire.Ok) if o.re == first]
    for n in range(2):
        alice.send(wire.Say(text=f"newer {n}", cid=f"s{n}"))
    h.auto_read, h.hold_finds = False, True
    alice.send(wire.HistoryRequest(limit=5))
    looked = alice.send(wire.Whisper(to="bob", text="psst", cid="w1"))
    assert len(h.reading) == len(h.finding) == 1
    again = alice.send(wire.Whisper(to="bob", text="psst", cid="w1"))
    later = alice.send(wire.Say(text="after it", cid="s9"))
    (refused,) = [f for f in alice.frames if getattr(f, "re", None) == again]
    assert isinstance(refused, wire.ErrorFrame)
    assert (refused.code, refused.retry_after) == ("rate_limited", READ_AGAIN_AFTER)
    (held,) = [f for f in alice.frames if getattr(f, "re", None) == later]
    assert isinstance(held, wire.ErrorFrame) and held.code == "rate_limited"
    assert len(h.finding) == 1  # no second look
    h.finish_finds()
    alice.poll()
    (answer,) = [f for f in alice.frames if getattr(f, "re", None) == looked]
    assert answer == wire.Ok(re=looked, id=stored.id, ts=stored.ts, to="bob")
    h.advance(READ_AGAIN_AFTER)
    resent = alice.send(wire.Whisper(to="bob", text="psst", cid="w1"))  # one read left
    assert len(h.finding) == 1
    h.finish_finds()
    h.finish_reads()
    alice.poll()
    (answer,) = [f for f in alice.frames if getattr(f, "re", None) == resent]
    assert answer == wire.Ok(re=resent, id=stored.id, ts=stored.ts, to="bob")
    assert alice.session.reading == 0


def test_join_and_leave_notices_and_who() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    alice.poll()
    assert [j.name for j in alice.of_type(wire.Join)] == ["bob"]
    seq = alice.send(wire.Who())
    names = [n for part in alice.of_type(wire.Names) for n in part.names if part.re == seq]
    assert names == ["alice", "bob"]
    logout = bob.send(wire.Logout())
    alice.poll()
    assert [(left.name, left.reason) for left in alice.of_type(wire.Leave)] == [("bob", "quit")]
    assert bob.of_type(wire.Ok)[-1].re == logout
    assert bob.connection.closed


def notices_and_messages(peer: Peer) -> list[tuple[str, str]]:
    return [
        (type(f).__name__, f.text if isinstance(f, wire.Msg) else f.name)
        for f in peer.frames
        if isinstance(f, wire.Msg | wire.Join | wire.Leave)
    ]


@pytest.mark.parametrize("ending", ["logout", "lock"])
def test_what_someone_said_last_is_shown_before_they_leave(ending: str) -> None:
    """Said, then gone (logged out, or locked by the operator) before the message was on
    disk: the room was told of the leave first, then shown the message."""
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    h.auto_commit = False
    if ending == "logout":
        bob.send(wire.Say(text="last words", cid="b1"), wire.Logout())
    else:
        # The lock on its way to the disk as he speaks: it is taken (committed) first.
        h.engine.change_account(PasswordSet(h.engine.accounts["bob"].id, lock=True))
        bob.send(wire.Say(text="last words", cid="b1"))
        h.commit_held(1)
        bob.settle()
        assert bob.connection.closed
    alice.settle()
    assert notices_and_messages(alice) == [("Join", "bob")]  # the leave waits for it
    h.commit_held()
    alice.settle()
    assert notices_and_messages(alice) == [("Join", "bob"), ("Msg", "last words"), ("Leave", "bob")]


@pytest.mark.parametrize("ending", ["logouts", "lock"])
def test_what_one_of_two_sessions_said_last_is_shown_before_the_account_leaves(
    ending: str,
) -> None:
    # The leave waited only for the messages of the session that left last.
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    phone = logged_in(h, CAROL, "bob")
    h.auto_commit = False
    if ending == "logouts":
        bob.send(wire.Say(text="last words", cid="b1"), wire.Logout())
        phone.send(wire.Logout())
    else:
        h.engine.change_account(PasswordSet(h.engine.accounts["bob"].id, lock=True))
        bob.send(wire.Say(text="last words", cid="b1"))
        h.commit_held(1)
    alice.settle()
    h.commit_held()
    alice.settle()
    assert notices_and_messages(alice) == [("Join", "bob"), ("Msg", "last words"), ("Leave", "bob")]


def test_a_leave_waits_for_no_private_message() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    h.auto_commit = False
    bob.send(wire.Whisper(to="alice", text="psst", cid="b1"), wire.Logout())
    alice.settle()
    assert notices_and_messages(alice) == [("Join", "bob"), ("Leave", "bob")]


def test_someone_back_before_what_they_said_last_is_shown_never_left() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    h.auto_commit = False
    bob.send(wire.Say(text="one more thing", cid="b1"), wire.Logout())
    bob = logged_in(h, BOB, "bob")  # back before the commit: the room never saw him go
    h.commit_held()
    alice.settle()
    assert notices_and_messages(alice) == [("Join", "bob"), ("Msg", "one more thing")]
    h.auto_commit = True
    bob.send(wire.Logout())  # his join was told, so his leave is
    alice.settle()
    assert notices_and_messages(alice)[-1] == ("Leave", "bob")


def test_a_leave_is_told_exactly_when_the_join_was() -> None:
    """Past the notice limit joins are not told, nor the leaves of those whose joins
    were not; the leave of someone whose join was told is told."""
    h = EngineHarness(ServerConfig(notice_limit=2))
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    carol = logged_in(h, CAROL, "carol")  # the third: not told
    carol.send(wire.Logout())
    bob.send(wire.Logout())  # one of two: told, as its join was
    alice.settle()
    notices = [f for f in alice.frames if isinstance(f, wire.Join | wire.Leave)]
    assert [(type(f).__name__, f.name) for f in notices] == [("Join", "bob"), ("Leave", "bob")]
    # Whoever was told of a join is told of the leave, however full the room is then.
    bob = logged_in(h, BOB, "bob")
    carol = logged_in(h, CAROL, "carol")
    alice.send(wire.Logout())  # her join was told; three are in as she leaves
    bob.settle()
    notices = [f for f in bob.frames if isinstance(f, wire.Join | wire.Leave)]
    assert [(type(f).__name__, f.name) for f in notices] == [("Leave", "alice")]


def test_someone_coming_and_going_in_a_loop_is_told_four_times_then_every_30_s() -> None:
    """Mallory logs in and out ten times in a row (a resume needs no password check):
    the room is told of her first four comings and goings, not of the rest; half a
    minute later, of the next one again."""
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    for _round in range(10):
        mallory = logged_in(h, BOB, "bob")
        mallory.send(wire.Logout())
    alice.settle()
    notices = [
        (type(f).__name__, f.name) for f in alice.frames if isinstance(f, wire.Join | wire.Leave)
    ]
    assert notices == [("Join", "bob"), ("Leave", "bob")] * 4
    h.now += 30.0
    mallory = logged_in(h, BOB, "bob")
    alice.settle()
    assert [f.name for f in alice.of_type(wire.Join)] == ["bob"] * 5


def test_the_acknowledgement_of_a_logout_is_dropped_quietly() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    channel = alice.connection._channel
    assert channel is not None
    alice.send(wire.Logout())
    # The `ok` is acknowledged after the session ended: no `RESET` for it, no answer.
    assert h.receive(channel.seal(9999, b'{"ack":3,"echo":4}'), ALICE) == []
    assert h.engine.stats["ended_sessions"] == 1
    # Garbage naming that session is dropped; a session nobody had gets a `RESET`.
    forged = wire.data_header(alice.sid, 10_000) + bytes(40)
    assert h.receive(forged, BOB) == []
    (reset,) = [
        wire.parse_datagram_untrusted(d)
        for d in h.receive(wire.data_header(424242, 1) + bytes(40), BOB)
    ]
    assert isinstance(reset, wire.Reset) and reset.receiver_index == 424242
    assert len(wire.reset_datagram(424242, reset.token)) < 13 + 40  # smaller than asked


def test_who_splits_a_long_list_over_several_frames() -> None:
    h = EngineHarness(
        ServerConfig(
            max_sessions_per_address=1000,
            register_burst=1000,
            register_burst_total=1000,
            handshake_burst=1000,
        )
    )
    for n in range(120):
        logged_in(h, ("127.0.0.1", 41000 + n), f"person-with-a-long-name-{n:03d}")
    alice = logged_in(h, ALICE, "alice")
    seq = alice.send(wire.Who())
    parts = [p for p in alice.of_type(wire.Names) if p.re == seq]
    assert len(parts) > 1
    assert sum(len(p.names) for p in parts) == 121
    (ok,) = [o for o in alice.of_type(wire.Ok) if o.re == seq]
    assert ok.count == 121


def test_history_requests_page_backwards() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    for n in range(10):
        alice.send(wire.Say(text=f"m{n}", cid=f"c{n}"))
    seq = alice.send(wire.HistoryRequest(limit=3, before=8))
    page = [m for m in alice.of_type(wire.Msg) if m.re == seq]
    assert [m.id for m in page] == [5, 6, 7]
    assert all(m.history for m in page)


def test_a_silent_session_times_out_and_others_are_told() -> None:
    h = EngineHarness(ServerConfig(idle_timeout=30.0))
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    for _ in range(5):
        h.advance(10.0)
        alice.send(wire.Ping())
    assert bob.sid not in h.engine.sessions
    assert alice.sid in h.engine.sessions
    assert [(left.name, left.reason) for left in alice.of_type(wire.Leave)] == [("bob", "timeout")]


def test_a_session_silent_from_its_login_on_is_closed_after_the_idle_timeout() -> None:
    """Not after the time a channel is given to log in (10 s): with a shorter idle timeout
    (`serve --idle-timeout 3`), a client that logs in and falls silent at once is closed
    as any other, at most a second after its idle timeout."""
    h = EngineHarness(ServerConfig(idle_timeout=3.0))
    assert h.engine.config.login_timeout == 10.0
    alice = logged_in(h, ALICE, "alice")
    logged_in_at = h.now
    bob = logged_in(h, BOB, "bob")
    while bob.sid in h.engine.sessions and h.now < logged_in_at + 10.0:
        h.advance(0.5)
        alice.send(wire.Ping())
    assert bob.sid not in h.engine.sessions
    assert h.now <= logged_in_at + 3.0 + 1.0 + 0.5, h.now - logged_in_at
    assert [(left.name, left.reason) for left in alice.of_type(wire.Leave)] == [("bob", "timeout")]


def test_a_login_whose_password_check_outlasts_the_idle_timeout_is_not_ended_at_its_welcome() -> (
    None
):
    """The client says nothing while its password is checked (it waits for the answer):
    however long the check took, its silence counts from the welcome, so the session is
    not ended before its acknowledgement of the welcome can come; a client that never
    says another word is ended an idle timeout after its welcome."""
    h = EngineHarness(ServerConfig(idle_timeout=3.0))
    h.add_account("alice", PASSWORD, ALICE)
    h.add_account("bob", PASSWORD, BOB)
    h.auto_hash = False
    alice = Peer(h, "alice", PASSWORD, ALICE)
    bob = Peer(h, "bob", PASSWORD, BOB)
    h.advance(7.5)  # the hashing threads are busy elsewhere
    assert not alice.connection.ready and not bob.connection.ready
    h.finish_hashing()
    welcomed_at = h.now
    h.advance(0.01)  # before either client's acknowledgement is due
    alice.poll()
    bob.poll()
    assert alice.connection.ready and bob.connection.ready
    assert {alice.sid, bob.sid} <= set(h.engine.sessions)
    alice.flush(ack=True)  # alice acknowledges the welcome; bob is gone without a word
    while bob.sid in h.engine.sessions and h.now < welcomed_at + 10.0:
        h.advance(0.5)
        alice.send(wire.Ping())
    assert bob.sid not in h.engine.sessions
    assert welcomed_at + 3.0 <= h.now <= welcomed_at + 3.0 + 1.0 + 0.5
    assert alice.sid in h.engine.sessions


def test_a_peer_that_stops_acknowledging_is_dropped_after_retransmitting() -> None:
    h = EngineHarness(ServerConfig(idle_timeout=1000.0))
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    alice.send(wire.Say(text="are you there?", cid="c1"))
    sent_before = h.sent_to[BOB]
    for _ in range(200):
        h.advance(1.0)
        alice.send(wire.Ping())
        if bob.sid not in h.engine.sessions:
            break
    assert bob.sid not in h.engine.sessions
    assert h.sent_to[BOB] > sent_before  # it did retransmit before giving up
    assert h.now - 100.0 <= h.engine.config.link.give_up_after + h.engine.config.link.max_pto + 1


def test_messages_past_the_burst_are_refused_with_a_retry_time() -> None:
    h = EngineHarness(ServerConfig(message_rate=1.0, message_burst=3))
    alice = logged_in(h, ALICE, "alice")
    seqs = [alice.send(wire.Say(text=f"m{n}", cid=f"c{n}")) for n in range(4)]
    (refused,) = alice.of_type(wire.ErrorFrame)
    assert refused.code == "rate_limited" and refused.re == seqs[3]
    assert refused.retry_after is not None and 0 < refused.retry_after <= 1.0
    h.advance(1.0)
    again = alice.send(wire.Say(text="m3", cid="c3"))
    assert again in [ok.re for ok in alice.of_type(wire.Ok)]


def test_text_rules_are_enforced_with_clear_errors() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    empty = alice.send(wire.Say(text="", cid="c1"))
    long = alice.send(wire.Say(text="字" * 200, cid="c2"))
    codes = {e.re: e.code for e in alice.of_type(wire.ErrorFrame)}
    assert codes == {empty: "text_empty", long: "text_too_long"}
    # The refusal says the size as it is measured: 200 characters of 3 bytes each.
    (too_long,) = [e for e in alice.of_type(wire.ErrorFrame) if e.re == long]
    assert too_long.message.endswith("(this one has 600).")


def test_an_undecodable_frame_gets_an_error_and_the_session_goes_on() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    bad = alice.request(b'{"t":"say","text":42}').seq
    unknown = alice.request(b'{"t":"dance"}').seq
    garbage = alice.request(b"[1,2]").seq
    alice.send(wire.Say(text="still here", cid="c1"))
    codes = {e.re: e.code for e in alice.of_type(wire.ErrorFrame)}
    assert codes == {bad: "bad_field", unknown: "bad_request", garbage: "bad_request"}
    assert len(alice.of_type(wire.Ok)) == 1


def _bob_back_after_missing_three(h: EngineDriver) -> tuple[int, Peer]:
    """Bob sees alice's first message, leaves, misses her next three, and logs in again
    from the newest he saw: that id, and his new session."""
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    alice.send(wire.Say(text="seen", cid="c0"))
    seen = [m.id for m in bob.poll() if isinstance(m, wire.Msg)][-1]
    bob.send(wire.Logout())
    for n in range(3):
        alice.send(wire.Say(text=f"missed {n}", cid=f"c{n + 1}"))
    return seen, Peer(h, "bob", address=("127.0.0.1", 40006), since=seen)


def test_resuming_with_since_sends_exactly_what_was_missed() -> None:
    h = EngineHarness()
    seen, again = _bob_back_after_missing_three(h)
    assert [m.text for m in again.of_type(wire.Msg)] == ["missed 0", "missed 1", "missed 2"]
    assert again.of_type(wire.Ready) == [wire.Ready(count=3, more=False, upto=seen + 3)]


def test_shutdown_says_goodbye_to_every_session() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    h.engine.shutdown(h.now, h.wall)
    h.pump()
    for client in (alice, bob):
        client.poll()
        assert [b.reason for b in client.of_type(wire.Bye)] == ["shutdown"]
    assert h.engine.sessions == {}


def test_a_history_read_that_fails_is_answered_with_an_error() -> None:
    class BrokenStorage(EngineDriver):
        def history(self, effect: LoadHistory) -> list[Message] | None:
            return None

    h = BrokenStorage()
    alice = logged_in(h, ALICE, "alice")
    seq = alice.send(wire.HistoryRequest(limit=5))
    (error,) = alice.of_type(wire.ErrorFrame)
    assert (error.code, error.re) == ("storage_failed", seq)
    assert alice.sid in h.engine.sessions


def test_the_room_is_a_seam_another_fanout_can_fill() -> None:
    published: list[bytes] = []

    class BusRoom(LocalRoom):
        """Stands in for a room shared over a message bus: publishes, then delivers."""

        def broadcast(
            self, frame: bytes, exclude: int | None = None, *, except_account: int | None = None
        ) -> None:
            published.append(frame)
            super().broadcast(frame, exclude, except_account=except_account)

    h = EngineHarness()
    h.engine = ServerEngine(h.engine.config, keys=h.keys, room=BusRoom)
    alice, bob = logged_in(h, ALICE, "alice"), logged_in(h, BOB, "bob")
    alice.send(wire.Say(text="over the bus", cid="c1"))
    assert [m.text for m in bob.poll() if isinstance(m, wire.Msg)] == ["over the bus"]
    last = bob.of_type(wire.Msg)[-1]
    assert [wire.decode_server_frame_untrusted(f) for f in published][-1] == last


def test_after_a_refusal_later_messages_wait_for_the_refused_one() -> None:
    h = EngineHarness(ServerConfig(message_rate=1.0, message_burst=1))
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    alice.send(wire.Say(text="first", cid="c1"))
    refused = alice.send(wire.Say(text="second", cid="c2"))
    h.advance(2.0)  # the bucket has a token again, but "second" has not come back yet
    later = alice.send(wire.Say(text="third", cid="c3"))
    assert {e.re for e in alice.of_type(wire.ErrorFrame)} == {refused, later}
    assert all(e.code == "rate_limited" for e in alice.of_type(wire.ErrorFrame))
    _second_and_third_after_it(h, alice, bob)


def _second_and_third_after_it(h: EngineDriver, alice: Peer, bob: Peer) -> None:
    """Alice sends the refused "second" again, a second later "third" again: the room has
    the three in her order."""
    alice.send(wire.Say(text="second", cid="c2"))
    h.advance(1.0)
    alice.send(wire.Say(text="third", cid="c3"))
    bob.poll()
    assert [m.text for m in bob.of_type(wire.Msg)] == ["first", "second", "third"]


def test_a_refused_message_never_sent_again_stops_holding_others_back() -> None:
    h = EngineHarness(ServerConfig(message_rate=1.0, message_burst=1))
    alice = logged_in(h, ALICE, "alice")
    alice.send(wire.Say(text="first", cid="c1"))
    alice.send(wire.Say(text="given up", cid="c2"))
    (refused,) = alice.of_type(wire.ErrorFrame)
    assert refused.retry_after is not None
    alice.flush(ack=True)  # the client has the refusal, as its acknowledgement says
    # Held back for `retry_after` plus 10 s; then the session's messages flow again.
    h.advance(refused.retry_after + 9.5)
    early = alice.send(wire.Say(text="much later", cid="c3"))
    assert early not in {ok.re for ok in alice.of_type(wire.Ok)}
    h.advance(1.0)
    seq = alice.send(wire.Say(text="much later", cid="c3"))
    assert seq in {ok.re for ok in alice.of_type(wire.Ok)}


def test_a_quiet_login_only_looks() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    h.add_account("bob")
    alice.send(wire.Whisper(to="bob", text="waiting for you", cid="w1"))
    alice.send(wire.Say(text="public", cid="p1"))
    bob = Peer(h, "bob", address=BOB, quiet=True)
    assert bob.connection.unread == 1
    seq = bob.send(wire.Who())
    refused = bob.send(wire.Say(text="hello?", cid="q1"))
    assert bob.of_type(wire.Ready) == [wire.Ready(count=0)]
    assert [n for part in bob.of_type(wire.Names) if part.re == seq for n in part.names] == [
        "alice"
    ]
    assert [(e.re, e.code) for e in bob.of_type(wire.ErrorFrame)] == [(refused, "bad_request")]
    assert not bob.of_type(wire.Msg) and not bob.of_type(wire.Pm)
    bob.send(wire.Logout())
    alice.poll()
    assert not alice.of_type(wire.Join) and not alice.of_type(wire.Leave)
    assert h.engine.mailbox.count(h.engine.accounts["bob"].id) == 1


def test_history_is_read_as_of_the_request() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    h.auto_commit = False
    alice.send(wire.Say(text="committed later", cid="c1"))
    (pending,) = h.uncommitted
    assert isinstance(pending, Message)
    asked = reads_asked(h, "history")
    alice.send(wire.HistoryRequest(limit=10))
    # The page ends after the newest message so far, committed or not, and no later.
    assert [effect.before for effect in asked] == [pending.id + 1]


def test_a_message_that_could_not_be_stored_is_never_shown_and_may_be_resent() -> None:
    h = EngineHarness()
    alice, bob = logged_in(h, ALICE, "alice"), logged_in(h, BOB, "bob")
    h.auto_commit = False
    first = alice.send(wire.Whisper(to="bob", text="hello", cid="c1"))
    (op,) = h.uncommitted
    assert isinstance(op, Message)
    h.uncommitted = []
    h.engine.failed(op)
    h.pump()
    alice.poll()
    assert [(e.re, e.code) for e in alice.of_type(wire.ErrorFrame)] == [(first, "storage_failed")]
    assert h.engine.mailbox.count(h.engine.accounts["bob"].id) == 0
    h.auto_commit = True
    again = alice.send(wire.Whisper(to="bob", text="hello", cid="c1"))
    (ok,) = [o for o in alice.of_type(wire.Ok) if o.re == again]
    assert ok.id != op.id
    assert [m.text for m in bob.poll() if isinstance(m, wire.Pm)] == ["hello"]


def test_a_registration_answered_by_a_daemon_that_then_died_is_answered_again() -> None:
    stored = Account(1, "alice", "alice", "fake$esroh tcerroc", "2026-11-30T00:00:00.000Z", "r-9")
    h = EngineHarness(snapshot=Snapshot(accounts=[stored], next_account_id=2))
    same = register(h, ALICE, "alice", rid="r-9")
    assert isinstance(same, wire.Registered) and same.name == "alice"
    other = register(h, ALICE, "alice", rid="r-10")
    assert isinstance(other, wire.ErrorFrame) and other.code == "name_taken"


def test_the_largest_private_message_fits_a_frame_and_a_cid_is_plain() -> None:
    h = EngineHarness(ServerConfig(register_burst=10))
    wide, other = "\U00010428" * 32, "\U00010429" * 32  # 32 letters of four bytes each
    sender, recipient = logged_in(h, ALICE, wide), logged_in(h, BOB, other)
    seq = sender.send(wire.Whisper(to=other, text='"' * 250, cid="C" * 24))
    (ok,) = [o for o in sender.of_type(wire.Ok) if o.re == seq]
    assert ok.id is not None
    recipient.settle()
    (pm,) = recipient.of_type(wire.Pm)
    assert pm.text == '"' * 250 and len(wire.encode(pm)) <= wire.MAX_FRAME
    bad = sender.send(wire.Whisper(to="x", text="hi", cid="ok"))  # a cid that is fine
    assert [e.code for e in sender.of_type(wire.ErrorFrame) if e.re == bad] == ["unknown_user"]
    raw = b'{"t":"whisper","to":"x","text":"hi","cid":"\\u0001\\u0001"}'
    handle = sender.request(raw)
    sender.flush()
    (refused,) = [e for e in sender.of_type(wire.ErrorFrame) if e.re == handle.seq]
    assert refused.code == "bad_field" and "cid" in refused.message


def test_a_second_login_while_the_first_is_checked_is_refused() -> None:
    h = EngineHarness()
    register(h, ALICE, "alice")
    register(h, ALICE, "bob")
    h.auto_hash = False
    peer = Peer(h, None, address=("127.0.0.9", 1))
    first = peer.link.send(wire.encode(wire.Login(name="alice", password=PASSWORD)))
    second = peer.link.send(wire.encode(wire.Login(name="bob", password=PASSWORD)))
    peer.flush()
    h.finish_hashing()
    peer.settle()
    assert [w.re for w in peer.of_type(wire.Welcome)] == [first]
    assert [(e.re, e.code) for e in peer.of_type(wire.ErrorFrame)] == [(second, "bad_request")]
    assert [s.account.name for s in h.engine.sessions.values() if s.account] == ["alice"]


def test_a_quiet_session_is_refused_before_anything_else_is_looked_at() -> None:
    h = EngineHarness()
    register(h, ALICE, "alice")
    quiet = Peer(h, "alice", PASSWORD, ALICE, quiet=True)
    seq = quiet.send(wire.Say(text="", cid="c1"))  # empty, and yet: bad_request first
    assert [(e.re, e.code) for e in quiet.of_type(wire.ErrorFrame)] == [(seq, "bad_request")]


def test_a_payload_that_is_not_utf8_is_dropped_whole() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    channel = alice.connection.channel
    assert channel is not None
    said = wire.numbered_frame(alice.link._next_seq, wire.encode(wire.Say(text="hi", cid="c9")))
    payload = b'{"ack":0,"junk":"\xff\xfe",' + b'"frames":[' + said + b"]}"
    before = h.engine.stats["bad_payloads"]
    h.receive(channel.seal(1 << 40, payload), ALICE)
    assert h.engine.stats["bad_payloads"] == before + 1
    assert not h.stored_messages()


def test_a_packet_number_far_ahead_moves_the_replay_window_at_no_cost() -> None:
    window = ReplayWindow()
    window.accept(5)
    window.accept(2**63)  # a jump of 2**63 shifts nothing: the window starts over
    assert window.highest == 2**63
    assert not window.fresh(2**63) and not window.fresh(5)
    assert not window.fresh(2**63 - REPLAY_WINDOW) and window.fresh(2**63 - REPLAY_WINDOW + 1)
    window.accept(2**63 - 1)
    assert not window.fresh(2**63 - 1) and window.fresh(2**63 - 2)


def test_a_long_sessions_replay_window_stays_as_small_as_its_width() -> None:
    """Every packet number opened moves the window by one: what falls out of it is
    forgotten, so that a session of millions of records keeps 4096 bits, not millions."""
    window = ReplayWindow()
    for pn in range(3 * REPLAY_WINDOW):
        assert window.fresh(pn)
        window.accept(pn)
    assert window._bits.bit_length() <= REPLAY_WINDOW
    assert not window.fresh(3 * REPLAY_WINDOW - REPLAY_WINDOW)
    assert not window.fresh(3 * REPLAY_WINDOW - 1) and window.fresh(3 * REPLAY_WINDOW)


def test_a_channel_index_is_never_0_whatever_is_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    """0 is no channel's index (`docs/protocol.md` 3): the draw is shifted past it."""
    monkeypatch.setattr(secrets, "randbelow", lambda n: 0)
    assert new_index() == 1
    monkeypatch.setattr(secrets, "randbelow", lambda n: n - 1)
    assert new_index() == 2**32 - 1


def test_a_path_challenge_carries_128_random_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whoever answers a session's move from another address must have received the
    challenge: 128 bits drawn for it, not a number one could guess."""
    drawn: list[int] = []
    real = secrets.token_bytes

    def recorded(n: int) -> bytes:
        drawn.append(n)
        return real(n)

    monkeypatch.setattr(secrets, "token_bytes", recorded)
    challenge = new_challenge()
    assert drawn == [16]
    assert len(challenge) == 22 and challenge != new_challenge()


def test_the_oldest_packet_number_the_replay_window_holds_is_refused_again() -> None:
    window = ReplayWindow()
    window.accept(0)
    window.accept(REPLAY_WINDOW - 1)  # 0 is now the oldest the window still holds
    assert not window.fresh(0)
    assert window.fresh(1)


def test_whispers_to_names_that_do_not_exist_count_against_the_message_rate() -> None:
    h = EngineHarness(ServerConfig(message_burst=3, message_rate=0.5))
    alice = logged_in(h, ALICE, "alice")
    logged_in(h, BOB, "bob")
    seqs = [alice.send(wire.Whisper(to=f"nobody{n}", text="hi", cid=f"w{n}")) for n in range(4)]
    codes = [answer(alice, seq) for seq in seqs]
    assert [getattr(c, "code", None) for c in codes] == ["unknown_user"] * 3 + ["rate_limited"]
    # The allowance is shared with messages to people who exist.
    h.now += 2.0  # one token back: the refused whisper goes first (the sender's order)
    again = alice.send(wire.Whisper(to="nobody3", text="hi", cid="w3"))
    assert getattr(answer(alice, again), "code", None) == "unknown_user"
    h.now += 2.0
    ok = alice.send(wire.Whisper(to="bob", text="hello", cid="real"))
    assert isinstance(answer(alice, ok), wire.Ok)
    late = alice.send(wire.Whisper(to="bob", text="again", cid="real2"))
    assert getattr(answer(alice, late), "code", None) == "rate_limited"


def test_the_rooms_datagrams_are_told_from_the_rest_by_their_header_alone() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    stranger = Peer(h, None, address=BOB)  # a channel that has not logged in

    def next_datagram(peer: Peer) -> bytes:
        peer._ping()
        (data,) = peer.connection.datagrams_to_send(h.now)
        return data

    from_alice, from_stranger = next_datagram(alice), next_datagram(stranger)
    assert h.engine.from_member(from_alice)
    assert not h.engine.from_member(from_stranger)
    unknown = wire.data_header(0xFFFF_FFFF, 1) + from_alice[wire.DATA_HEADER_BYTES :]
    init = secure.initiate(h.server_key, 7).datagram()
    for other in (unknown, from_alice[: wire.DATA_HEADER_BYTES - 1], init, b""):
        assert not h.engine.from_member(other)
    # Telling them apart reads nothing: alice's ping is still read and checked as usual.
    pings = h.engine.stats["pings"]
    alice.take(h.receive(from_alice, ALICE))
    assert h.engine.stats["pings"] == pings + 1


def test_a_channel_that_ends_leaves_a_newer_channel_with_its_index_waiting() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    index = alice.session.channel.remote_index
    transport = h.engine.transport
    # A new channel from the same address and client index (a client that restarted and
    # drew the same index): it waits for its first record under the same key.
    newer = h.receive(secure.initiate(h.server_key, index).datagram(), ALICE)
    assert [wire.parse_datagram_untrusted(d).__class__ for d in newer] == [wire.Response]
    waiting = transport.answered(ALICE, index)
    assert waiting is not None and waiting.sid != alice.sid
    assert transport.waiting_from(ALICE) == 1 and transport.unproven == 1
    alice.send(wire.Logout())
    assert alice.sid not in h.engine.sessions
    # The old channel's end takes nothing of the newer one's.
    assert transport.answered(ALICE, index) is waiting
    assert transport.waiting_from(ALICE) == 1 and transport.unproven == 1


def test_a_history_page_before_any_id_is_asked_for_within_the_ids_there_are() -> None:
    """`history(before=...)` out of the ids' range: an empty page, or the newest, rather
    than a refusal worded for the protocol's validation."""
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    said = alice.send(wire.Say(text="hello", cid="h1"))
    assert said
    none, newest = alice.connection.history(5, before=-1), alice.connection.history(5, before=2**80)
    alice.flush()
    assert (none.error, none.result) == (None, [])
    assert newest.error is None and [m.text for m in newest.result] == ["hello"]


def test_a_senders_cid_is_shown_to_its_own_sessions_only() -> None:
    """A client's ids are a random part and a count (`client_protocol.Ids`): shown to
    others, the count between two of someone's public messages would tell how many
    private messages they sent meanwhile, and the random part which messages came from
    one device. Only the sender's sessions need a `cid`, to know a message as theirs."""
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    elsewhere = logged_in(h, ("127.0.0.1", 40004), "alice")
    bob = logged_in(h, BOB, "bob")
    carol = logged_in(h, CAROL, "carol")
    ids = Ids()
    cids = [ids() for _ in range(3)]
    alice.send(wire.Say(text="one", cid=cids[0]))
    alice.send(wire.Whisper(to="carol", text="psst", cid=cids[1]))
    alice.send(wire.Say(text="two", cid=cids[2]))
    for peer in (bob, carol, elsewhere):
        peer.settle()
    assert [(f.text, f.cid) for f in bob.of_type(wire.Msg)] == [("one", None), ("two", None)]
    assert [(f.text, f.cid) for f in carol.of_type(wire.Pm)] == [("psst", None)]
    assert [f.cid for f in elsewhere.frames if isinstance(f, wire.Msg | wire.Pm)] == cids
    seq = bob.send(wire.HistoryRequest(limit=10))
    assert [f.cid for f in bob.of_type(wire.Msg) if f.re == seq] == [None, None]
    first = bob.of_type(wire.Msg)[0].id
    later = Peer(h, "carol", address=("127.0.0.1", 40005), since=first)
    shown = [(f.text, f.cid) for f in later.frames if isinstance(f, wire.Msg | wire.Pm)]
    assert shown == [("psst", None), ("two", None)]
    again = Peer(h, "alice", address=("127.0.0.1", 40006), since=first)
    assert [f.cid for f in again.frames if isinstance(f, wire.Msg | wire.Pm)] == cids[1:]


def test_a_probe_timeout_pushed_back_by_every_send_keeps_one_timer_and_fires_on_time() -> None:
    """Every datagram sent moves its link's probe timeout later. The engine keeps the
    earlier timer rather than a new one each time: it fires, finds nothing due, and sets
    itself for the real deadline, where the probe goes out."""
    h = EngineHarness(ServerConfig(message_burst=100))
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    for peer in (alice, bob):
        peer.settle()
    link = bob.session.link
    transport = h.engine.transport

    def bobs_timers() -> int:  # entries in the heap itself: what each send would grow
        return sum(sid == bob.sid for _at, sid in transport._timers)

    before, probes = bobs_timers(), link.probes_sent
    first = h.now
    for n in range(40):  # bob takes nothing in, so acknowledges nothing
        h.now = first + 0.002 * n
        alice.send(wire.Say(text=f"message {n}", cid=f"c{n}"))
    assert bobs_timers() == before + 1
    deadline = link.next_timer()
    assert deadline is not None and deadline > first + link.pto + link.patience
    h.advance(deadline - h.now - 0.001)  # the early timer fired on the way: no probe yet
    assert link.probes_sent == probes
    assert bob.session.timer_at == deadline
    h.advance(0.002)
    assert link.probes_sent == probes + 1


def test_an_ended_channel_is_let_go_of_on_time_on_a_quiet_daemon() -> None:
    """An ended channel is kept a while, to answer its client's last records (its keys
    with it); it was let go of only when another session ended, so on a daemon left
    with nobody, never."""
    driver = EngineDriver()
    driver.add_account("alice")
    alice = Peer(driver, "alice")
    alice.settle()
    alice.connection.logout()
    alice.settle()
    assert not driver.engine.sessions
    kept_until = driver.engine.next_timer()  # the ended channels' time: nothing else is due
    assert kept_until is not None and driver.now < kept_until <= driver.now + 30
    driver.advance(30)
    assert driver.engine.next_timer() is None  # let go of, keys and all


def test_a_resume_past_its_limit_is_shown_the_newest_and_told_more_was_left_out() -> None:
    """Public messages and private ones each: the newest `resume_limit` of them, and
    `more`, so that the client pages back for the rest."""
    h = EngineHarness(ServerConfig(resume_limit=2))
    seen, again = _bob_back_after_missing_three(h)
    assert [m.text for m in again.of_type(wire.Msg)] == ["missed 1", "missed 2"]
    assert again.of_type(wire.Ready) == [
        wire.Ready(count=2, more=True, upto=seen + 3, gap=seen + 2)  # "missed 1"
    ]

    # Bob's own whispers from his phone while this session was away: the public
    # messages are all there, the private ones cut.
    newest = seen + 3
    again.send(wire.Logout())
    phone = logged_in(h, CAROL, "bob")
    for n in range(3):
        phone.send(wire.Whisper(to="alice", text=f"from the phone {n}", cid=f"p{n}"))
    back = Peer(h, "bob", address=("127.0.0.1", 40007), since=newest)
    assert [p.text for p in back.of_type(wire.Pm)] == ["from the phone 1", "from the phone 2"]
    assert back.of_type(wire.Ready) == [
        wire.Ready(count=2, more=True, upto=newest + 3, gap=newest + 2)  # the phone's 1
    ]


def test_a_resume_is_told_the_gap_ends_past_the_private_messages_the_window_forgot() -> None:
    """Bob's whisper from his phone while he was away is one the daemon's window has
    forgotten (alice whispered to carol since), though it still holds every room message
    he missed, older: the gap ends where what the window knows of private messages
    begins, not at that room message, so that his client pages back for the whisper,
    and finds it."""
    h = EngineHarness(ServerConfig(window_messages=3))
    seen, again = _bob_back_after_missing_three(h)
    again.send(wire.Logout())
    alice = logged_in(h, ALICE, "alice")
    alice.send(wire.Say(text="missed 3", cid="c4"))
    phone = logged_in(h, BOB, "bob")
    phone.send(wire.Whisper(to="alice", text="from the phone", cid="p0"))
    phone.send(wire.Logout())
    logged_in(h, CAROL, "carol")
    for n in range(3):
        alice.send(wire.Whisper(to="carol", text=f"to carol {n}", cid=f"w{n}"))
    newest = seen + 8
    back = Peer(h, "bob", address=("127.0.0.1", 40008), since=seen + 3)
    assert [m.text for m in back.of_type(wire.Msg)] == ["missed 3"]
    assert back.of_type(wire.Ready) == [
        wire.Ready(count=1, more=True, upto=newest, gap=newest - 2)  # alice's first to carol
    ]
    page = back.send(wire.HistoryRequest(limit=10, before=newest - 2))
    back.settle(1)
    paged = [m for m in back.frames if isinstance(m, wire.Msg | wire.Pm) and m.re == page]
    assert [m.text for m in paged][-2:] == ["missed 3", "from the phone"]


def test_a_resume_after_a_restart_that_loaded_no_room_message_is_told_where_the_gap_ends() -> None:
    """The daemon started again with only others' whispers in its window (the room's
    messages 3 and 4 left on disk): alice, back from 2, is told the gap ends past them,
    and pages back for them from there."""
    ts = "2026-01-01T00:00:00.000Z"
    recent = [Message(n, ts, 2, "bob", f"w{n}", 3, "carol", f"c{n}") for n in (5, 6)]
    snapshot = Snapshot(recent=recent, public_count=4, next_message_id=7)
    h = EngineHarness(ServerConfig(window_messages=3), snapshot=snapshot)
    h.add_account("alice", PASSWORD, ALICE)
    back = Peer(h, "alice", address=ALICE, since=2)
    assert back.of_type(wire.Ready) == [wire.Ready(count=0, more=True, upto=6, gap=5)]


def _back_to_a_full_mailbox(whispers_last: bool) -> tuple[EngineDriver, int, Peer]:
    """Alice comes back from message `since` to the most the daemon keeps for her: 1000
    unread private messages (older than `since`), 500 room messages and 500 whispers her
    other sessions sent meanwhile, each text of 500 bytes, between names of 32 letters of
    four bytes each; the whispers after the room's messages, or between them. The daemon,
    her session, and `since`."""
    alice, bob = "\U00010428" * 32, "\U00010429" * 32
    stamp = "2026-11-30T00:00:00.000Z"
    accounts = [Account(1, alice, name_key(alice), "fake$" + PASSWORD, stamp)]
    accounts.append(Account(2, bob, name_key(bob), "fake$" + PASSWORD, stamp))
    text = "x" * 500
    ids = itertools.count(1)
    unread = itertools.islice(ids, 1000)
    recent = [Message(i, stamp, 2, bob, text, 1, alice, f"u{i}") for i in unread]
    since = next(ids)
    recent.append(Message(since, stamp, 2, bob, "seen", cid="seen"))
    said = [Message(i, stamp, 2, bob, text, cid=f"p{i}") for i in itertools.islice(ids, 500)]
    sent = [Message(i, stamp, 1, alice, text, 2, bob, f"w{i}") for i in itertools.islice(ids, 500)]
    if not whispers_last:  # one after each room message
        said = [dataclasses.replace(m, id=since + 1 + 2 * n) for n, m in enumerate(said)]
        sent = [dataclasses.replace(m, id=since + 2 + 2 * n) for n, m in enumerate(sent)]
    recent += sorted(said + sent, key=lambda m: m.id)
    snapshot = Snapshot(
        accounts=accounts,
        recent=recent,
        unread={1: 1000},
        public_count=501,
        next_message_id=recent[-1].id + 1,
        next_account_id=3,
    )
    h = EngineHarness(snapshot=snapshot)
    h.stored = list(recent)
    return h, since, Peer(h, alice, PASSWORD, ALICE, since=since)


@pytest.mark.parametrize("whispers_last", [True, False])
def test_a_resume_to_a_full_mailbox_leaves_out_what_does_not_fit_its_session(
    whispers_last: bool,
) -> None:
    """All of it would take 1.9 MiB of the session's queue, past its 1 MiB: the session
    was ended as overloaded before it got in, and its client, coming back from the same
    message, met the same backlog, without end. The unread messages all come; of the
    others the newest that fit, down to a room message, and `more`: the client pages back
    into the gap from there, and finds the rest. (Whispers from its other sessions newer
    than every room message that fits are left out: those sessions had them.)"""
    h, since, again = _back_to_a_full_mailbox(whispers_last)
    for _ in range(20):
        again.settle(1)
    assert again.connection.ready and h.engine.sessions
    (ready,) = again.of_type(wire.Ready)
    assert ready.more and ready.count == len(again.of_type(wire.Pm)) + len(again.of_type(wire.Msg))
    shown = [m.id for m in again.frames if isinstance(m, wire.Msg | wire.Pm)]
    assert shown[:1000] == list(range(1, 1001))  # every unread one
    gap_end = min(m.id for m in again.of_type(wire.Msg))
    private = {m.id for m in h.stored_messages() if m.private}
    missed = [m.id for m in h.stored_messages() if m.id > since]
    newest = [i for i in missed if i >= gap_end]
    if whispers_last:  # they took all the room: the room's messages come, they do not
        newest = [i for i in newest if i not in private]
    assert shown[1000:] == newest  # the newest, none skipped
    assert 0 < len(shown) - 1000 < len(missed)
    (history,) = [e for e in again.events if isinstance(e, History)]
    assert history.more and len(history.messages) == len(shown)
    page = again.send(wire.HistoryRequest(limit=100, before=gap_end))
    again.settle(1)
    paged = [m.id for m in again.frames if isinstance(m, wire.Msg | wire.Pm) and m.re == page]
    assert paged == [i for i in missed if i < gap_end][-100:]


@pytest.mark.parametrize("whispers_last", [True, False])
def test_paging_back_from_where_the_daemon_says_the_gap_ends_reaches_all_that_was_missed(
    whispers_last: bool,
) -> None:
    """Her other sessions' whispers, newer than every room message, took all the room
    left: paged back from the oldest room message shown (all a client had to go by), they
    were never shown. `ready` says where the gap ends; paging back from there finds
    every message missed, and the client shows none twice."""
    h, since, again = _back_to_a_full_mailbox(whispers_last)
    for _ in range(20):
        again.settle(1)
    (ready,) = again.of_type(wire.Ready)
    (history,) = [e for e in again.events if isinstance(e, History)]
    assert ready.more and ready.gap is not None and history.gap == ready.gap
    shown = {m.id for m in history.messages}
    missed = [m.id for m in h.stored_messages() if m.id > since]
    assert {i for i in missed if i >= ready.gap} <= shown
    before = client_gap_end(history.messages, history.gap)
    while True:
        page = again.send(wire.HistoryRequest(limit=100, before=before))
        again.settle(1)
        paged = [m.id for m in again.frames if isinstance(m, wire.Msg | wire.Pm) and m.re == page]
        shown.update(paged)
        if not paged or paged[0] <= since:
            break
        before = paged[0]
    assert set(missed) <= shown


_WHO = {  # the sender and the recipient of each kind of message, alice being 1
    "said": (2, None),
    "said_by_her": (1, None),
    "removed": (2, None),
    "unread": (2, 1),
    "read": (2, 1),
    "sent": (1, 2),  # by another session of hers
    "note": (1, 1),
    "others": (2, 3),
}


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.lists(st.sampled_from(sorted(_WHO)), min_size=5, max_size=40),
    sizes=st.lists(st.sampled_from([10, 600]), min_size=40, max_size=40),
    since_at=st.integers(0, 110),
    window=st.integers(2, 15),
    limit=st.integers(1, 12),
    queue=st.integers(2500, 5000),
    live=st.lists(st.sampled_from(["said", "unread", "sent"]), max_size=4),
)
def test_a_resumes_history_and_the_pages_before_its_gap_hold_all_it_missed(
    kinds: list[str],
    sizes: list[int],
    since_at: int,
    window: int,
    limit: int,
    queue: int,
    live: list[str],
) -> None:
    """Alice comes back from a random `since` after a restart of the daemon (which
    remembers the newest `window` messages) to the room's messages, some removed, her
    unread whispers, others read, whispers and notes from her other sessions, whispers
    between others, and, with `live`, messages not on disk yet as she comes back; her
    session's queue is small, and a resume sends at most `limit` of each kind. What her
    history holds, what comes live, and the pages before `gap` hold every message newer
    than `since` that she may see."""
    stamp = "2026-11-30T00:00:00.000Z"
    names = {1: "alice", 2: "bob", 3: "carol"}
    accounts = [Account(i, n, name_key(n), "fake$" + PASSWORD, stamp) for i, n in names.items()]
    stored: list[Message] = []
    read: list[int] = []
    unread_bytes = 0
    for n, kind in enumerate(kinds):
        if kind == "unread":  # all of them come: the queue must hold them
            unread_bytes += sizes[n] + 200
            kind = "unread" if unread_bytes <= queue // 2 else "read"
        sender, to = _WHO[kind]
        text = "" if kind == "removed" else "x" * sizes[n]  # as the store reads it
        recipient = names[to] if to else None
        stored.append(Message(n + 1, stamp, sender, names[sender], text, to, recipient, f"c{n}"))
        if kind == "read":
            read.append(n + 1)
    kept = [m for m in stored if m.text]
    snapshot = Snapshot(
        accounts=accounts,
        recent=kept[-window:],
        unread={1: sum(1 for m in kept if m.recipient_id == 1 != m.sender_id) - len(read)},
        public_count=sum(1 for m in kept if not m.private),
        next_message_id=len(stored) + 1,
        next_account_id=4,
    )
    link = dataclasses.replace(daemon_link(), max_queue_bytes=queue)
    config = ServerConfig(link=link, resume_limit=limit, window_messages=window)
    h = EngineDriver(config, snapshot, now=100.0)
    h.stored = [*stored, MarkDelivered(tuple(read))]
    since = len(kinds) * since_at // 100  # past the newest, at times
    if live:
        bob = Peer(h, "bob", address=BOB)
        phone = Peer(h, "alice", address=CAROL)
        h.auto_commit = False
        for n, kind in enumerate(live):
            if kind == "said":
                bob.send(wire.Say(text=f"live {n}", cid=f"l{n}"))
            elif kind == "unread":
                bob.send(wire.Whisper(to="alice", text=f"live {n}", cid=f"l{n}"))
            else:
                phone.send(wire.Whisper(to="bob", text=f"live {n}", cid=f"l{n}"))
    back = Peer(h, "alice", address=ALICE, since=since)
    h.auto_commit = True
    h.commit_held()
    back.settle(5)
    (ready,) = back.of_type(wire.Ready)
    (history,) = [e for e in back.events if isinstance(e, History)]
    missed = {
        m.id
        for m in h.stored_messages()
        if m.id > since and m.text and (not m.private or 1 in (m.sender_id, m.recipient_id))
    }
    came = {m.id for m in back.frames if isinstance(m, wire.Msg | wire.Pm) and m.re is None}
    assert {m.id for m in history.messages} <= came
    if not ready.more:
        assert missed <= came
        return
    assert ready.gap is not None and {i for i in missed if i >= ready.gap} <= came
    before = client_gap_end(history.messages, history.gap)
    while True:
        page = back.send(wire.HistoryRequest(limit=2, before=before))
        back.settle(3)
        assert any(isinstance(f, wire.Ok) and f.re == page for f in back.frames)
        paged = [m.id for m in back.frames if isinstance(m, wire.Msg | wire.Pm) and m.re == page]
        came.update(paged)
        if not paged or paged[0] <= since:
            break
        before = paged[0]
    assert missed <= came


def test_a_resume_whose_unread_messages_fill_its_room_still_reaches_the_rooms_messages() -> None:
    """Bob's unread whispers alone take the 7/8 of alice's queue her history may have: no
    room message fit, and none was shown. Her client pages back into the gap from the
    oldest room message shown, or, with none, from the oldest message shown, an unread
    whisper older than all the room said: what the room said while she was away was
    never shown her. The newest room message comes still (one frame, within the eighth
    kept free), and the rest is found behind it."""
    link = dataclasses.replace(daemon_link(), max_queue_bytes=5000)
    h = EngineHarness(ServerConfig(link=link))
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    bob.send(wire.Say(text="seen", cid="s0"))
    seen = [m.id for m in alice.poll() if isinstance(m, wire.Msg)][-1]
    alice.send(wire.Logout())
    for n in range(10):
        bob.send(wire.Whisper(to="alice", text=f"{n} " + "w" * 300, cid=f"w{n}"))
    for n in range(3):
        bob.send(wire.Say(text=f"missed {n}", cid=f"m{n}"))
    back = Peer(h, "alice", address=CAROL, since=seen)
    back.settle()
    (ready,) = back.of_type(wire.Ready)
    assert ready.more and len(back.of_type(wire.Pm)) == 10  # every unread one
    assert [m.text for m in back.of_type(wire.Msg)] == ["missed 2"]
    (history,) = [e for e in back.events if isinstance(e, History)]
    page = back.send(wire.HistoryRequest(limit=100, before=client_gap_end(history.messages)))
    back.settle()
    paged = [m.text for m in back.of_type(wire.Msg) if m.re == page]
    assert paged == ["seen", "missed 0", "missed 1"]


def test_a_session_reads_at_most_reads_per_session_pages_at_once() -> None:
    h = EngineHarness(ServerConfig(reads_per_session=1))
    h.auto_read = False
    alice = logged_in(h, ALICE, "alice")
    first = alice.send(wire.HistoryRequest(limit=5))
    second = alice.send(wire.HistoryRequest(limit=5))
    assert [(e.code, e.re) for e in alice.of_type(wire.ErrorFrame)] == [("rate_limited", second)]
    h.finish_reads()
    alice.poll()
    assert [o.re for o in alice.of_type(wire.Ok)] == [first]
    third = alice.send(wire.HistoryRequest(limit=5))  # the first is read: this one may go
    h.finish_reads()
    alice.poll()
    assert [o.re for o in alice.of_type(wire.Ok)] == [first, third]
    assert len(alice.of_type(wire.ErrorFrame)) == 1


def test_a_refusal_told_before_does_not_let_a_later_one_lost_on_the_way_be_overtaken() -> None:
    """Alice's client had her first refusal (and sent that message again, taken); her
    second is lost with her network. The grace counts only once a refusal reaches the
    client: the one told before does not count for it, and what she writes next waits."""
    h = EngineHarness(ServerConfig(message_rate=1.0, message_burst=1))
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    alice.send(wire.Say(text="first", cid="c1"))
    alice.send(wire.Say(text="second", cid="c2"))
    alice.flush(ack=True)  # the client has the refusal
    h.advance(1.0)
    alice.send(wire.Say(text="second", cid="c2"))
    alice.request(wire.Say(text="third", cid="c3"))
    for data in alice.connection.datagrams_to_send(h.now):
        h.receive(data, ALICE)  # refused: the refusal is lost
    h.advance(12.0)
    h.inbox.pop(ALICE, None)  # and so is every copy sent since
    later = alice.send(wire.Say(text="fourth", cid="c4"))
    assert later not in {ok.re for ok in alice.of_type(wire.Ok)}
    bob.poll()
    assert [m.text for m in bob.of_type(wire.Msg)] == ["first", "second"]


def test_what_someone_said_last_in_a_run_committed_together_is_shown_before_they_leave() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    h.auto_commit = False
    bob.send(wire.Say(text="last words", cid="b1"), wire.Say(text="really", cid="b2"))
    bob.send(wire.Logout())
    alice.settle()
    h.commit_held()
    alice.settle()
    assert notices_and_messages(alice) == [
        ("Join", "bob"),
        ("Msg", "last words"),
        ("Msg", "really"),
        ("Leave", "bob"),
    ]


def test_deliveries_whose_marks_failed_side_by_side_are_all_recorded_with_the_next() -> None:
    h = EngineHarness()
    alice, bob = logged_in(h, ALICE, "alice"), logged_in(h, BOB, "bob")
    ids, marks = [], []
    for n in range(2):
        alice.send(wire.Whisper(to="bob", text=f"psst {n}", cid=f"w{n}"))
        h.auto_commit = False
        (pm,) = [f for f in bob.poll() if isinstance(f, wire.Pm)]
        bob.flush(ack=True)
        (mark,) = h.uncommitted  # on its way to the disk as the next comes
        assert isinstance(mark, MarkDelivered)
        h.uncommitted = []
        ids.append(pm.id)
        marks.append(mark)
        h.auto_commit = True
    assert [m.message_ids for m in marks] == [(ids[0],), (ids[1],)]
    h.auto_commit = False
    for mark in marks:
        h.engine.failed(mark)
    h.engine.shutdown(h.now, h.wall)
    h.pump()
    assert [op.message_ids for op in h.uncommitted if isinstance(op, MarkDelivered)] == [tuple(ids)]


def test_a_room_message_that_could_not_be_stored_leaves_nothing_waiting_for_it() -> None:
    """Neither its sender's leave, held until what they said is shown, nor the `upto` of
    later logins, which stops below what is not on disk yet."""
    h = EngineHarness()
    alice, bob = logged_in(h, ALICE, "alice"), logged_in(h, BOB, "bob")
    h.auto_commit = False
    bob.send(wire.Say(text="lost", cid="b1"))
    (op,) = h.uncommitted
    assert isinstance(op, Message)
    h.uncommitted = []
    h.engine.failed(op)
    h.pump()
    h.auto_commit = True
    bob.send(wire.Logout())
    alice.settle()
    assert notices_and_messages(alice) == [("Join", "bob"), ("Leave", "bob")]
    alice.send(wire.Say(text="kept", cid="a1"))
    (ok,) = alice.of_type(wire.Ok)
    assert ok.id is not None and ok.id > op.id
    carol = logged_in(h, CAROL, "carol")
    assert carol.of_type(wire.Ready) == [wire.Ready(count=1, upto=ok.id)]


def test_deliveries_past_what_is_kept_unrecorded_keep_the_newest() -> None:
    """A disk failing for long: past `UNMARKED_MOST` the oldest deliveries are let go of
    (shown again after a restart), the newest kept to be recorded."""
    h = EngineHarness()
    h.engine.chat.mark_failed(MarkDelivered(tuple(range(1, UNMARKED_MOST + 2))))
    effect = h.engine.chat.unmarked()
    assert isinstance(effect, Persist) and isinstance(effect.op, MarkDelivered)
    assert effect.op.message_ids == tuple(range(2, UNMARKED_MOST + 2))
    assert h.engine.chat.unmarked() is None


def test_a_delivery_let_go_of_unrecorded_is_not_shown_again_while_the_daemon_runs() -> None:
    """Past `UNMARKED_MOST` the oldest deliveries the disk refused are not recorded any
    more (a restart shows them again), but the running daemon remembers them: bob's next
    login, whose unread messages are read from the disk, does not show them again."""
    h = EngineHarness()
    alice, bob = logged_in(h, ALICE, "alice"), logged_in(h, BOB, "bob")
    mark = mark_held(h, alice, bob, "read")
    h.engine.failed(mark)  # a full disk; then as many more as are kept
    h.engine.failed(MarkDelivered(tuple(range(10**6, 10**6 + UNMARKED_MOST))))
    bob.send(wire.Logout())
    h.auto_commit = True
    alice.send(wire.Whisper(to="bob", text="new", cid="n1"))
    again = Peer(h, "bob", address=("127.0.0.1", 40005))
    assert [p.text for p in again.of_type(wire.Pm)] == ["new"]


def test_a_login_after_a_restart_is_told_more_only_if_there_is_older_history() -> None:
    """The messages loaded at a start are counted among the public ones once."""
    ts = "2026-01-01T00:00:00.000Z"
    recent = [Message(n, ts, 1, "alice", f"m{n}", cid=f"c{n}") for n in (1, 2)]
    for public_count, more in ((2, False), (3, True)):
        snapshot = Snapshot(recent=recent, public_count=public_count, next_message_id=3)
        h = EngineHarness(snapshot=snapshot)
        bob = logged_in(h, BOB, "bob")
        assert [m.text for m in bob.of_type(wire.Msg)] == ["m1", "m2"]
        assert bob.of_type(wire.Ready) == [wire.Ready(count=2, more=more, upto=2)]


def test_a_resume_from_0_after_a_restart_is_told_more_only_if_some_may_be_on_disk() -> None:
    """Alice logged in while the daemon had stored nothing (`upto` 0); bob spoke while she
    was away, and the daemon restarted. Coming back from 0, she was sent all of it and
    told more was left out (as private messages the daemon's memory had forgotten): her
    client said "more than 2 messages", and paging back found nothing. Had the daemon
    loaded as many messages as its window holds, some could have been left on disk."""
    ts = "2026-01-01T00:00:00.000Z"
    recent = [Message(n, ts, 2, "bob", f"m{n}", cid=f"c{n}") for n in (5, 6)]
    for window, more in ((3, False), (2, True)):
        snapshot = Snapshot(recent=recent, public_count=2, next_message_id=7)
        h = EngineHarness(ServerConfig(window_messages=window), snapshot=snapshot)
        h.add_account("alice", PASSWORD, ALICE)
        back = Peer(h, "alice", address=ALICE, since=0)
        assert [m.text for m in back.of_type(wire.Msg)] == ["m5", "m6"]
        gap = 5 if more else None  # the oldest the window holds
        assert back.of_type(wire.Ready) == [wire.Ready(count=2, more=more, upto=6, gap=gap)]


def test_every_datagram_is_counted_in_whatever_it_holds() -> None:
    """The count the daemon's log reports as datagrams in: one for each, read or not."""
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    alice._ping()
    (ping,) = alice.connection.datagrams_to_send(h.now)
    garbage = [b"", b"\x7f" * 40, wire.key_datagram(bytes(32)), wire.key_request_datagram()]
    before = h.engine.stats["datagrams_in"]
    for data in (ping, *garbage):
        h.receive(data, ALICE)
    assert h.engine.stats["datagrams_in"] == before + 1 + len(garbage)


def test_the_time_a_daemon_could_not_run_is_not_taken_for_a_refused_message_given_up() -> None:
    h = EngineHarness(ServerConfig(message_rate=1.0, message_burst=1))
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    alice.send(wire.Say(text="first", cid="c1"))
    alice.send(wire.Say(text="second", cid="c2"))  # refused as too fast
    alice.flush(ack=True)  # the client has the refusal
    h.advance(1.0)
    h.now += 15.0  # the daemon stopped (SIGSTOP, swapped out): no timer, nothing read
    # What the client wrote meanwhile, read only now, still waits for the refused one.
    later = alice.send(wire.Say(text="third", cid="c3"))
    assert later not in {ok.re for ok in alice.of_type(wire.Ok)}
    _second_and_third_after_it(h, alice, bob)


def test_an_ended_session_lets_go_of_its_keys_once_it_is_forgotten() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    channel = alice.session.channel
    keys = [channel._send._key, channel._receive._key]
    alice.send(wire.Logout())
    assert alice.sid not in h.engine.sessions
    assert all(key in noise._recent for key in keys)  # its logout may come again
    h.advance(h.engine.config.ended_session_memory + 1.0)
    assert not any(key in noise._recent for key in keys)


def test_as_many_ended_sessions_are_remembered_as_addresses_are_tracked() -> None:
    h = EngineHarness(ServerConfig(tracked_addresses=2))
    peers = [logged_in(h, (f"10.0.9.{n}", 1), f"user{n}") for n in range(3)]
    channels = [peer.connection._channel for peer in peers]
    for peer in peers[:2]:
        peer.send(wire.Logout())

    pns = itertools.count(10_000)

    def answers(n: int) -> list[type]:
        channel = channels[n]
        assert channel is not None
        record = channel.seal(next(pns), b'{"frames":[[1,{"t":"ping"}]]}')
        return [
            wire.parse_datagram_untrusted(d).__class__ for d in h.receive(record, peers[n].address)
        ]

    assert wire.Reset not in answers(0) + answers(1)  # two remembered, their last words again
    peers[2].send(wire.Logout())
    assert answers(0) == [wire.Reset]  # the third forgets the oldest
    assert wire.Reset not in answers(1) + answers(2)


def test_a_logout_sent_again_from_another_address_gets_nothing_anywhere() -> None:
    # Its last words go only to a record from where the session was: one from elsewhere
    # would have the daemon send them to an address that did not ask.
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    channel = alice.connection._channel
    assert channel is not None
    alice.send(wire.Logout())
    assert alice.sid not in h.engine.sessions
    h.sent.clear()
    h.receive(channel.seal(9999, b'{"frames":[[9,{"t":"logout"}]]}'), BOB)
    assert h.sent == []
    assert h.engine.stats["ended_sessions"] == 1


def test_a_channel_kept_after_it_ended_puts_off_no_other_sessions_timer() -> None:
    driver = EngineDriver()
    for name in ("alice", "bob"):
        driver.add_account(name)
    alice = Peer(driver, "alice", address=ALICE)
    bob = Peer(driver, "bob", address=BOB)
    alice.settle()
    bob.connection.logout()
    bob.settle()  # its channel is kept 30 s
    alice.connection.say("hello")
    for data in alice.connection.datagrams_to_send(driver.now):
        driver.receive(data, ALICE)  # the daemon's answer is lost: it is sent again soon
    due = alice.session.timer_at
    assert due is not None and due < driver.now + 5
    assert driver.engine.transport.next_timer() == due


def test_a_name_being_registered_is_taken_for_another_registration_meanwhile() -> None:
    h = EngineHarness(commit=False)
    h.auto_hash = False
    first = Peer(h, None, address=ALICE)
    first.send(wire.Register(rid="r1", name="alice", password=PASSWORD))
    other = Peer(h, None, address=BOB)  # another client, another `rid`, the same name
    seq = other.send(wire.Register(rid="r2", name="alice", password=PASSWORD))
    refused = answer(other, seq)
    assert isinstance(refused, wire.ErrorFrame) and refused.code == "name_taken"
    assert refused.message == "The name 'alice' is taken; choose another."
    h.finish_hashing()
    h.commit_held()
    first.poll()
    assert [registered.name for registered in first.of_type(wire.Registered)] == ["alice"]
    assert other.of_type(wire.Registered) == []


def test_a_channel_whose_registration_is_answered_on_another_is_closed_in_its_time() -> None:
    h = EngineHarness(commit=False)
    h.auto_hash = False
    first = Peer(h, None, address=ALICE)
    request = wire.Register(rid="r1", name="alice", password=PASSWORD)
    first.send(request)
    again = Peer(h, None, address=ALICE)  # its client lost the first channel
    again.send(request)  # the answer is to come here now
    h.advance(h.engine.config.login_timeout + 1.0)
    assert first.sid not in h.engine.sessions  # nothing of its own under way
    assert again.sid in h.engine.sessions


def test_a_name_whose_account_the_disk_refused_is_free_again() -> None:
    h = EngineHarness()
    h.auto_commit = False
    first = Peer(h, None, address=ALICE)
    first.send(wire.Register(rid="r1", name="alice", password=PASSWORD))
    (op,) = h.uncommitted
    h.uncommitted = []
    h.engine.failed(op)
    h.pump()
    h.auto_commit = True
    assert isinstance(register(h, BOB, "alice"), wire.Registered)
