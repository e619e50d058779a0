"""The daemon's rules, on the sans-I/O engine with hand-stepped time."""

from __future__ import annotations

from tests.harness import EngineHarness, SimClient, logged_in
from trio_chat import wire
from trio_chat.engine import LoadHistory, ServerConfig, ServerEngine
from trio_chat.records import Account, MarkDelivered, Message, Snapshot
from trio_chat.room import LocalRoom

ALICE = ("127.0.0.1", 40001)
BOB = ("127.0.0.1", 40002)
CAROL = ("127.0.0.1", 40003)


def test_registered_is_sent_only_once_the_account_is_committed() -> None:
    h = EngineHarness(commit=False)
    client = SimClient(h, ALICE)
    register = wire.Register(rid="r1", name="alice", password="correct horse")
    assert client.request(register) == []
    assert [type(op) for op in h.uncommitted] == [Account]
    # The client retransmits while the write is in flight: it hears "pending", not "taken".
    assert client.request(register) == [wire.Pending(rid="r1")]
    h.commit_held()
    assert h.replies(ALICE) == [wire.Registered(rid="r1", name="alice")]
    # A late retransmission gets the same answer again.
    assert client.request(register) == [wire.Registered(rid="r1", name="alice")]


def test_names_are_unique_after_nfkc_and_casefolding() -> None:
    h = EngineHarness()
    client = SimClient(h, ALICE)
    assert isinstance(client.register("Alice"), wire.Registered)
    for lookalike in ("alice", "ALICE", "ａｌｉｃｅ"):
        reply = client.register(lookalike)
        assert isinstance(reply, wire.ErrorReply)
        assert reply.code == "name_taken"
    assert isinstance(client.register("Алиса"), wire.Registered)


def test_each_registration_failure_has_its_own_code() -> None:
    h = EngineHarness()
    client = SimClient(h, ALICE)
    cases = {
        "invalid_name": ("bad name", "correct horse"),
        "password_too_short": ("alice", "short"),
    }
    for code, (name, password) in cases.items():
        reply = client.register(name, password)
        assert isinstance(reply, wire.ErrorReply)
        assert (reply.code, reply.rid is not None) == (code, True)
        assert reply.message.endswith(".")


def test_login_failures_and_a_retransmitted_login_gets_the_same_session() -> None:
    h = EngineHarness()
    client = SimClient(h, ALICE)
    client.register("alice")
    unknown = client.login("nobody")
    assert isinstance(unknown, wire.ErrorReply) and unknown.code == "unknown_user"
    wrong = client.login("alice", "wrong password")
    assert isinstance(wrong, wire.ErrorReply) and wrong.code == "wrong_password"

    login = wire.Login(rid="same", name="ALICE", password="correct horse")
    (first,) = client.request(login)
    (again,) = client.request(login)
    assert isinstance(first, wire.Welcome)
    assert first == again
    assert first.name == "alice"
    assert len(h.engine.sessions) == 1


def test_history_waits_until_the_address_has_proven_it_receives() -> None:
    h = EngineHarness(ServerConfig(message_burst=100))
    alice = logged_in(h, ALICE, "alice")
    for n in range(30):
        alice.send(wire.Say(text=f"message {n}", cid=f"c{n}"))
    bob = SimClient(h, BOB)
    bob.register("bob")
    (welcome,) = bob.request(wire.Login(rid="b", name="bob", password="correct horse"))
    assert isinstance(welcome, wire.Welcome)
    assert h.replies(BOB) == []  # nothing beyond the welcome before bob answers
    bob.attach(welcome)
    bob.send(wire.Ping())
    bob.poll()
    history = bob.of_type(wire.Msg)
    assert [m.text for m in history] == [f"message {n}" for n in range(10, 30)]
    assert all(m.history for m in history)
    (ready,) = bob.of_type(wire.Ready)
    assert ready == wire.Ready(count=20, more=True)


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
    (ok,) = [f for f in alice.poll() if isinstance(f, wire.Ok)]
    assert (ok.re, ok.id) == (seq, msg.id)
    assert not alice.of_type(wire.Msg)  # the sender hears its own message as the answer


def test_a_message_resent_with_the_same_client_id_is_kept_once() -> None:
    h = EngineHarness()
    alice, bob = logged_in(h, ALICE, "alice"), logged_in(h, BOB, "bob")
    first = alice.send(wire.Say(text="once", cid="same"))
    second = alice.send(wire.Say(text="once", cid="same"))
    oks = [f for f in alice.poll() if isinstance(f, wire.Ok)]
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
        assert (pm.sender, pm.to, pm.text) == ("alice", "bob", "psst")
    assert not any(isinstance(f, wire.Pm) for f in carol.poll())
    assert any(isinstance(op, MarkDelivered) for op in h.stored)

    # Offline: stored, counted as unread, delivered as history on the next login.
    carol.send(wire.Logout())
    carol.poll()
    alice.send(wire.Whisper(to="carol", text="while you were away", cid="w2"))
    unknown = alice.send(wire.Whisper(to="nobody", text="hello?", cid="w3"))
    errors = [f for f in alice.poll() if isinstance(f, wire.ErrorFrame)]
    assert [(e.code, e.re) for e in errors] == [("unknown_user", unknown)]
    again = SimClient(h, ("127.0.0.1", 40005))
    welcome = again.login("carol")
    assert isinstance(welcome, wire.Welcome) and welcome.unread == 1
    again.poll()
    (waiting,) = again.of_type(wire.Pm)
    assert (waiting.text, waiting.history) == ("while you were away", True)
    delivered = [op for op in h.stored if isinstance(op, MarkDelivered)]
    assert delivered[-1].message_ids == (waiting.id,)
    assert h.engine.mailbox.count(h.engine.accounts["carol"].id) == 0


def test_join_and_leave_notices_and_who() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    alice.poll()
    assert [j.name for j in alice.of_type(wire.Join)] == ["bob"]
    seq = alice.send(wire.Who())
    alice.poll()
    names = [n for part in alice.of_type(wire.Names) for n in part.names if part.re == seq]
    assert names == ["alice", "bob"]
    bob.send(wire.Logout())
    alice.poll()
    assert [(left.name, left.reason) for left in alice.of_type(wire.Leave)] == [("bob", "quit")]
    bob.poll()
    assert bob.of_type(wire.Ok)[-1].re == 2


def test_who_splits_a_long_list_over_several_frames() -> None:
    h = EngineHarness(ServerConfig(max_sessions_per_address=1000, register_burst=1000))
    for n in range(120):
        logged_in(h, ("127.0.0.1", 41000 + n), f"person-with-a-long-name-{n:03d}")
    alice = logged_in(h, ALICE, "alice")
    seq = alice.send(wire.Who())
    alice.poll()
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
    alice.poll()
    seq = alice.send(wire.HistoryRequest(limit=3, before=8))
    alice.poll()
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
        alice.poll()
    assert bob.sid not in h.engine.sessions
    assert alice.sid in h.engine.sessions
    assert [(left.name, left.reason) for left in alice.of_type(wire.Leave)] == [("bob", "timeout")]


def test_a_peer_that_stops_acknowledging_is_dropped_after_retransmitting() -> None:
    h = EngineHarness(ServerConfig(idle_timeout=1000.0))
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    alice.send(wire.Say(text="are you there?", cid="c1"))
    sent_before = h.sent_to[BOB]
    for _ in range(200):
        h.advance(1.0)
        if bob.sid not in h.engine.sessions:
            break
    assert bob.sid not in h.engine.sessions
    assert h.sent_to[BOB] > sent_before  # it did retransmit before giving up


def test_messages_past_the_burst_are_refused_with_a_retry_time() -> None:
    h = EngineHarness(ServerConfig(message_rate=1.0, message_burst=3))
    alice = logged_in(h, ALICE, "alice")
    seqs = [alice.send(wire.Say(text=f"m{n}", cid=f"c{n}")) for n in range(4)]
    alice.poll()
    (refused,) = alice.of_type(wire.ErrorFrame)
    assert refused.code == "rate_limited" and refused.re == seqs[3]
    assert refused.retry_after is not None and 0 < refused.retry_after <= 1.0
    h.advance(1.0)
    alice.send(wire.Say(text="m3", cid="c3"))
    alice.poll()
    assert seqs[3] + 1 in [ok.re for ok in alice.of_type(wire.Ok)]


def test_text_rules_are_enforced_with_clear_errors() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    empty = alice.send(wire.Say(text="", cid="c1"))
    long = alice.send(wire.Say(text="字" * 200, cid="c2"))
    alice.poll()
    codes = {e.re: e.code for e in alice.of_type(wire.ErrorFrame)}
    assert codes == {empty: "text_empty", long: "text_too_long"}


def test_an_undecodable_frame_gets_an_error_and_the_session_goes_on() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    assert alice.link is not None
    bad = alice.link.send(b'{"t":"say","text":42}')
    unknown = alice.link.send(b'{"t":"dance"}')
    alice.flush()
    alice.send(wire.Say(text="still here", cid="c1"))
    alice.poll()
    codes = {e.re: e.code for e in alice.of_type(wire.ErrorFrame)}
    assert codes == {bad: "bad_request", unknown: "bad_request"}
    assert len(alice.of_type(wire.Ok)) == 1


def test_resuming_with_since_sends_exactly_what_was_missed() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    alice.send(wire.Say(text="seen", cid="c0"))
    seen = [m.id for m in bob.poll() if isinstance(m, wire.Msg)][-1]
    bob.send(wire.Logout())
    bob.poll()
    for n in range(3):
        alice.send(wire.Say(text=f"missed {n}", cid=f"c{n + 1}"))
    again = SimClient(h, ("127.0.0.1", 40006))
    again.login("bob", since=seen)
    again.poll()
    assert [m.text for m in again.of_type(wire.Msg)] == ["missed 0", "missed 1", "missed 2"]
    assert again.of_type(wire.Ready) == [wire.Ready(count=3, more=False)]


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
    class BrokenStorage(EngineHarness):
        def history(self, effect: LoadHistory) -> list[Message] | None:
            return None

    h = BrokenStorage()
    alice = logged_in(h, ALICE, "alice")
    seq = alice.send(wire.HistoryRequest(limit=5))
    alice.poll()
    (error,) = alice.of_type(wire.ErrorFrame)
    assert (error.code, error.re) == ("storage_failed", seq)
    assert alice.sid in h.engine.sessions


def test_the_room_is_a_seam_another_fanout_can_fill() -> None:
    published: list[bytes] = []

    class BusRoom(LocalRoom):
        """Stands in for a room shared over a message bus: publishes, then delivers."""

        def broadcast(self, frame: bytes, exclude: int | None = None) -> None:
            published.append(frame)
            super().broadcast(frame, exclude)

    h = EngineHarness()
    h.engine = ServerEngine(h.engine.config, room=BusRoom)
    alice, bob = logged_in(h, ALICE, "alice"), logged_in(h, BOB, "bob")
    alice.send(wire.Say(text="over the bus", cid="c1"))
    assert [m.text for m in bob.poll() if isinstance(m, wire.Msg)] == ["over the bus"]
    assert [wire.decode_server_frame_untrusted(f) for f in published][-1] == bob.of_type(wire.Msg)[
        -1
    ]


def test_after_a_refusal_later_messages_wait_for_the_refused_one() -> None:
    h = EngineHarness(ServerConfig(message_rate=1.0, message_burst=1))
    alice = logged_in(h, ALICE, "alice")
    bob = logged_in(h, BOB, "bob")
    alice.send(wire.Say(text="first", cid="c1"))
    refused = alice.send(wire.Say(text="second", cid="c2"))
    h.advance(2.0)  # the bucket has a token again, but "second" has not come back yet
    later = alice.send(wire.Say(text="third", cid="c3"))
    alice.poll()
    assert {e.re for e in alice.of_type(wire.ErrorFrame)} == {refused, later}
    assert all(e.code == "rate_limited" for e in alice.of_type(wire.ErrorFrame))
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
    alice.poll()  # takes the refusal, and acknowledges it
    h.advance(31.0)
    alice.send(wire.Ping())
    seq = alice.send(wire.Say(text="much later", cid="c3"))
    alice.poll()
    assert seq in {ok.re for ok in alice.of_type(wire.Ok)}


def test_a_quiet_login_only_looks() -> None:
    h = EngineHarness()
    alice = logged_in(h, ALICE, "alice")
    bob = SimClient(h, BOB)
    bob.register("bob")
    alice.send(wire.Whisper(to="bob", text="waiting for you", cid="w1"))
    alice.send(wire.Say(text="public", cid="p1"))
    (welcome,) = bob.request(wire.Login(rid="q", name="bob", password="correct horse", quiet=True))
    assert isinstance(welcome, wire.Welcome) and welcome.unread == 1
    bob.attach(welcome)
    seq = bob.send(wire.Who())
    refused = bob.send(wire.Say(text="hello?", cid="q1"))
    bob.poll()
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
    asked: list[LoadHistory] = []
    original = h.history

    def spy(effect: LoadHistory) -> list[Message] | None:
        asked.append(effect)
        return original(effect)

    h.history = spy  # type: ignore[method-assign]
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
    h.engine.failed(op, h.now)
    h.pump()
    alice.poll()
    assert [(e.re, e.code) for e in alice.of_type(wire.ErrorFrame)] == [(first, "storage_failed")]
    assert h.engine.mailbox.count(h.engine.accounts["bob"].id) == 0
    h.auto_commit = True
    again = alice.send(wire.Whisper(to="bob", text="hello", cid="c1"))
    (ok,) = [o for o in alice.poll() if isinstance(o, wire.Ok)]
    assert ok.re == again and ok.id != op.id
    assert [m.text for m in bob.poll() if isinstance(m, wire.Pm)] == ["hello"]


def test_a_registration_answered_by_a_daemon_that_then_died_is_answered_again() -> None:
    stored = Account(1, "alice", "alice", "fake$esroh tcerroc", "2026-11-30T00:00:00.000Z", "r-9")
    h = EngineHarness(snapshot=Snapshot(accounts=[stored], next_account_id=2))
    client = SimClient(h, ALICE)
    same = client.request(wire.Register(rid="r-9", name="alice", password="correct horse"))
    assert same == [wire.Registered(rid="r-9", name="alice")]
    other = client.request(wire.Register(rid="r-10", name="alice", password="correct horse"))
    assert [(r.code if isinstance(r, wire.ErrorReply) else r) for r in other] == ["name_taken"]
