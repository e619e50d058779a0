"""The client core against the real engine, over a simulated network in explicit time."""

from __future__ import annotations

import ast
import unicodedata
from pathlib import Path

import msgspec
import pytest

from trio_chat import client_handshake, client_protocol, wire
from trio_chat.client_protocol import ClientConfig, ClientConnection, Handle
from trio_chat.client_protocol.outstanding import Outstanding
from trio_chat.client_protocol.requests import recipient
from trio_chat.engine import ServerConfig
from trio_chat.errors import (
    Banned,
    Busy,
    ConnectionLost,
    KeyChanged,
    NameTaken,
    ProtocolError,
    ServerUnreachable,
    WrongPassword,
)
from trio_chat.events import (
    Disconnected,
    History,
    Joined,
    Left,
    Notice,
    PrivateMessage,
    PublicMessage,
    Reconnected,
)
from trio_chat.noise import fingerprint
from trio_chat.secure import DaemonKeys
from trio_chat.testing.driver import PASSWORD, EngineDriver, Peer
from trio_chat.testing.netsim import Conditions
from trio_chat.testing.simulation import Simulation

STORMY = Conditions(loss=0.2, duplicate=0.1, reorder=0.2, delay=0.005, jitter=0.003)


def heard(sim: Simulation, label: str) -> list[str]:
    """Every message `label` was shown, live or in a history, in order."""
    texts: list[str] = []
    for event in sim.events[label]:
        if isinstance(event, PublicMessage | PrivateMessage):
            texts.append(event.text)
        elif isinstance(event, History):
            texts += [message.text for message in event.messages]
    return texts


def all_done(handles: list[Handle]) -> bool:
    return all(handle.done for handle in handles)


@pytest.mark.parametrize("seed", range(6))
def test_messages_arrive_exactly_once_and_in_order_through_loss_duplication_reordering(
    seed: int,
) -> None:
    sim = Simulation(seed, STORMY)
    alice, bob, carol = sim.client("alice"), sim.client("bob"), sim.client("carol")
    sim.run_until(lambda: alice.ready and bob.ready and carol.ready)
    said = [alice.say(f"alice {n}") for n in range(40)]
    whispered = [bob.whisper("carol", f"psst {n}") for n in range(20)]
    sim.run_until(lambda: all_done(said + whispered))
    sim.run(5.0)
    assert all(handle.error is None for handle in said + whispered)
    assert [h.result.id for h in said] == sorted(h.result.id for h in said)
    expected_public = [f"alice {n}" for n in range(40)]
    assert [t for t in heard(sim, "bob") if t.startswith("alice")] == expected_public
    carol_heard = heard(sim, "carol")
    assert [t for t in carol_heard if t.startswith("alice")] == expected_public
    assert [t for t in carol_heard if t.startswith("psst")] == [f"psst {n}" for n in range(20)]
    assert sim.network.dropped > 0 and sim.network.duplicated > 0
    stored = [m.text for m in sim.driver.stored_messages()]
    assert len(stored) == len(set(stored)) == 60  # each message stored once


def test_a_whisper_names_its_recipient_as_the_daemon_compares_names() -> None:
    # 22 letters typed decomposed are 66 code points, more than a name field holds.
    typed = unicodedata.normalize("NFD", "ễ" * 22)
    assert len(typed) > wire.NAME_FIELD_MAX
    assert recipient(typed) == "ễ" * 22
    assert recipient("ｂｏｂ") == "bob"  # full-width letters


def test_a_private_message_is_shown_from_its_sender_to_its_recipient() -> None:
    sim = Simulation(15)
    alice, bob = sim.client("alice"), sim.client("bob")
    sim.run_until(lambda: alice.ready and bob.ready)
    whispered = alice.whisper("bob", "psst")
    sim.run_until(lambda: whispered.done)
    sim.run(1.0)
    (received,) = [e for e in sim.events["bob"] if isinstance(e, PrivateMessage)]
    assert (received.sender, received.recipient, received.text) == ("alice", "bob", "psst")
    sent = whispered.result
    assert (sent.sender, sent.recipient, sent.id) == ("alice", "bob", received.id)


def test_a_daemon_restart_mid_session_loses_nothing_and_shows_nothing_twice() -> None:
    sim = Simulation(7, Conditions(loss=0.1, delay=0.002, jitter=0.002))
    alice, bob = sim.client("alice"), sim.client("bob")
    sim.run_until(lambda: alice.ready and bob.ready)
    before = [alice.say(f"before {n}") for n in range(10)]
    sim.run_until(lambda: all_done(before))
    # The daemon goes away with messages in flight; some are stored, some are not.
    during = [alice.say(f"during {n}") for n in range(10)]
    sim.run(0.003)
    sim.restart_daemon(down_for=2.0)
    after = [alice.say(f"after {n}") for n in range(10)]
    sim.run_until(lambda: all_done(before + during + after), limit=120.0)
    sim.run(5.0)
    assert all(handle.error is None for handle in before + during + after)
    expected = [h.text for h in before + during + after]
    assert heard(sim, "bob") == expected
    assert [m.text for m in sim.driver.stored_messages()] == expected
    for label in ("alice", "bob"):
        kinds = [type(e) for e in sim.events[label] if isinstance(e, Disconnected | Reconnected)]
        assert kinds[:2] == [Disconnected, Reconnected], label
    resumed = [e for e in sim.events["bob"] if isinstance(e, History) and e.resumed]
    assert resumed, "bob was shown what he missed while away"


def test_a_lost_session_is_learned_of_from_the_closed_port_at_once() -> None:
    sim = Simulation(3)
    alice = sim.client("alice")
    sim.run_until(lambda: alice.ready)
    sim.up = False  # the daemon stopped: its port refuses
    handle = alice.say("anyone?")
    sim.run_until(lambda: any(isinstance(e, Disconnected) for e in sim.events["alice"]), 1.0)
    (lost,) = [e for e in sim.events["alice"] if isinstance(e, Disconnected)]
    assert lost.reason == "the daemon is not running"
    assert not handle.done and alice.pending == 1  # it waits to be sent again


def test_a_client_given_a_limit_gives_up_once_the_daemon_is_silent_that_long() -> None:
    sim = Simulation(3, client_config=ClientConfig(timeout=3.0, reconnect_for=20.0))
    alice = sim.client("alice")
    sim.run_until(lambda: alice.ready)
    sim.up = False  # the daemon stopped and does not come back
    handle = alice.say("anyone?")
    sim.run_until(lambda: any(isinstance(e, Disconnected) for e in sim.events["alice"]), 1.0)
    lost_at = sim.now
    sim.run_until(lambda: alice.closed, limit=60.0)
    # At the first login after 20 s that is not answered (each waits 3 s, and the waits
    # between them grow to 5 s): the message fails, said to be lost with the connection.
    assert 20.0 <= sim.now - lost_at <= 20.0 + 3.0 + 5.0 + 3.0
    assert isinstance(alice.failure, ConnectionLost)
    assert alice.failure.message == (
        f"Lost the connection to {alice.where} for good: not back after 20 s."
    )
    assert isinstance(handle.error, ConnectionLost)


def reconnections(sim: Simulation, label: str) -> int:
    return sum(1 for event in sim.events[label] if isinstance(event, Reconnected))


def test_a_client_given_a_limit_gives_up_on_a_daemon_that_answers_but_lets_it_not_back() -> None:
    """Back, the daemon refuses the client's key exchanges as too many (one allowed, then
    one an hour), saying to wait: it answers, but the session is not back, so the time
    counts, and the client does not wait the hour."""
    sim = Simulation(
        3,
        config=ServerConfig(message_burst=10_000, handshake_burst=1, handshake_rate=1 / 3600),
        client_config=ClientConfig(timeout=3.0, reconnect_for=20.0),
    )
    alice = sim.client("alice")
    sim.run_until(lambda: alice.ready)
    sim.up = False
    sim.run(2.0)
    lost_at = sim.now - 2.0
    sim.up = True
    sim.run_until(lambda: alice.closed, limit=120.0)
    assert sim.now - lost_at <= 20.0 + 1.0  # at the try made when the 20 s ran out
    assert isinstance(alice.failure, ConnectionLost)
    assert alice.failure.message.endswith("for good: not back after 20 s.")
    assert reconnections(sim, "alice") == 0


def test_an_outage_the_daemon_came_back_from_does_not_count_toward_giving_up() -> None:
    sim = Simulation(3, client_config=ClientConfig(timeout=3.0, reconnect_for=20.0))
    bob = sim.client("bob")
    sim.run_until(lambda: bob.ready)
    sim.up = False
    sim.run(15.0)
    sim.up = True  # back within 20 s
    sim.run_until(lambda: reconnections(sim, "bob") == 1, limit=30.0)
    sim.up = False
    sim.run(15.0)
    assert not bob.closed  # 15 s of this outage, not 30 s of both
    sim.run(30.0)
    assert bob.closed and isinstance(bob.failure, ConnectionLost)


def test_without_a_limit_a_client_keeps_coming_back() -> None:
    sim = Simulation(3, client_config=ClientConfig(timeout=3.0))
    alice = sim.client("alice")
    sim.run_until(lambda: alice.ready)
    sim.up = False
    sim.run(600.0)
    assert not alice.closed
    sim.up = True
    sim.run_until(lambda: reconnections(sim, "alice") == 1, limit=30.0)


def test_a_first_login_with_no_daemon_fails_as_unreachable_after_the_timeout() -> None:
    sim = Simulation(4, client_config=ClientConfig(timeout=3.0))
    sim.driver.add_account("alice")
    sim.up = False
    alice = sim.client("alice")
    sim.run_until(lambda: alice.closed, limit=10.0)
    assert isinstance(alice.failure, ServerUnreachable)
    assert 3.0 <= sim.now <= 3.5


def test_a_wrong_password_ends_the_connection_with_its_error() -> None:
    sim = Simulation(5)
    sim.driver.add_account("alice")
    alice = sim.client("alice", password="not the password")
    sim.run_until(lambda: alice.closed)
    assert isinstance(alice.failure, WrongPassword)
    with pytest.raises(WrongPassword):
        alice.say("hello")


def test_messages_refused_as_too_fast_are_resent_in_their_order() -> None:
    sim = Simulation(6, config=ServerConfig(message_rate=5.0, message_burst=3))
    alice, bob = sim.client("alice"), sim.client("bob")
    sim.run_until(lambda: alice.ready and bob.ready)
    said = [alice.say(f"m{n}") for n in range(12)]
    sim.run_until(lambda: all_done(said))
    sim.run(1.0)
    assert all(handle.error is None for handle in said)
    assert heard(sim, "bob") == [f"m{n}" for n in range(12)]
    assert 12 / 5 - 1 <= sim.now <= 12 / 5 + 3  # paced by the daemon's rate, not stuck


def test_questions_asked_after_messages_refused_as_too_fast_are_answered_after_them() -> None:
    """`who` and `history` go "in order with what was sent before": asked after messages
    the daemon refused as too fast (and took again later), their answers used to tell of
    the room before those messages were in it."""
    sim = Simulation(7, config=ServerConfig(message_rate=5.0, message_burst=3))
    alice, bob = sim.client("alice"), sim.client("bob")
    sim.run_until(lambda: alice.ready and bob.ready)
    said = [alice.say(f"m{n}") for n in range(6)]
    page = alice.history(2)
    said.append(alice.say("m6"))
    sim.run(0.05)  # the refusals are in: three messages wait to be sent again
    asked_while_waiting = alice.history(1)
    sim.run_until(lambda: page.done and asked_while_waiting.done and all_done(said), 10.0)
    assert [message.text for message in page.result] == ["m4", "m5"]
    assert [message.text for message in asked_while_waiting.result] == ["m6"]
    assert heard(sim, "bob") == [f"m{n}" for n in range(7)]


def test_a_question_refused_behind_a_refused_message_is_asked_again_without_a_word() -> None:
    """A message and a question after it, both over their limits: the message's refusal
    has the question asked again after it, so the question's own refusal, which follows,
    is no news to tell the person (it was shown as a notice)."""
    config = ServerConfig(message_burst=1, message_rate=1.0, question_burst=1, question_rate=1.0)
    sim = Simulation(1, config=config)
    alice = sim.client("alice")
    sim.run_until(lambda: alice.ready)
    handles = [alice.say("one"), alice.who(), alice.say("two"), alice.who()]
    sim.run_until(lambda: all_done(handles), limit=30.0)
    assert all(handle.error is None for handle in handles)
    assert [event for event in sim.events["alice"] if isinstance(event, Notice)] == []


def send(outstanding: Outstanding, *handles: Handle, add: bool = True) -> None:
    """`handles` sent in this order, numbered from 1 (and added first, unless they were
    on a channel lost since)."""
    for seq, handle in enumerate(handles, 1):
        if add:
            outstanding.add(handle)
        handle.seq = seq
        outstanding.sent(handle)


def test_a_question_due_again_twice_at_once_goes_once_and_after_the_message() -> None:
    """A question refused as too fast waits to be asked again; a message before it,
    refused too, takes it along when it goes again: not also alone, ahead of it."""
    outstanding = Outstanding()
    message, question = Handle("say", b"m", cid="c1"), Handle("who", b"q")
    send(outstanding, message, question)
    outstanding.too_fast(question, 5.0)
    outstanding.too_fast(message, 5.0)
    assert outstanding.due(5.0) == [message, question]


def test_requests_refused_as_too_fast_go_again_when_the_daemon_said_and_no_sooner() -> None:
    """Each waits for the latest time the daemon gave it and those it goes with, and goes
    at that very time (`handle_timer` at `next_timer`): questions alone, messages together
    and in order, whichever is due first first."""
    outstanding = Outstanding()
    first, second = Handle("who", b"q1"), Handle("who", b"q2")
    message, later = Handle("say", b"m1", cid="c1"), Handle("say", b"m2", cid="c2")
    send(outstanding, first, second, message, later)
    outstanding.too_fast(first, 2.0)
    outstanding.too_fast(second, 1.0)  # goes with the first, not before the daemon said
    outstanding.too_fast(message, 5.0)
    outstanding.too_fast(later, 4.0)
    assert outstanding.next_due() == 2.0
    assert outstanding.due(1.5) == []
    assert outstanding.due(2.0) == [first, second]
    assert outstanding.next_due() == 5.0
    assert outstanding.due(4.5) == []
    assert outstanding.due(5.0) == [message, later]
    assert outstanding.next_due() is None


def test_a_new_channel_sends_everything_at_once_and_waits_for_no_earlier_refusal() -> None:
    """After a lost session every request goes again on the new one: a refusal as too
    fast on the old channel holds nothing back, and nothing goes again a second time
    when its wait would have ended (a question asked twice would have its names twice)."""
    outstanding = Outstanding()
    message, question = Handle("say", b"m", cid="c1"), Handle("who", b"q")
    later = Handle("history", b"h")
    send(outstanding, question, message, later)
    outstanding.too_fast(question, 5.0)
    outstanding.too_fast(message, 5.0)  # the history asked after it is superseded
    outstanding.new_channel()
    assert outstanding.next_due() is None
    assert outstanding.due(100.0) == []
    assert not outstanding.superseded(3)  # a number of the old channel means nothing now
    assert outstanding.add(Handle("say", b"n", cid="c2"))  # goes at once, held by nothing


def test_a_refusal_on_a_new_channel_waits_its_own_time_not_the_old_channels() -> None:
    """A daemon with a slow message rate said to wait 100 s; the session was lost and
    everything went again on the new one. Refused there again, for 0.2 s, a message and
    a question go after those 0.2 s, not when the lost channel's wait would have ended."""
    outstanding = Outstanding()
    message, question = Handle("say", b"m", cid="c1"), Handle("who", b"q")
    send(outstanding, message, question)
    outstanding.too_fast(message, 100.0)
    outstanding.too_fast(question, 100.0)
    outstanding.new_channel()
    send(outstanding, message, question, add=False)
    outstanding.too_fast(question, 10.05)
    assert outstanding.next_due() == 10.05
    assert outstanding.due(10.05) == [question]
    outstanding.sent(question)
    outstanding.too_fast(message, 10.2)
    assert outstanding.next_due() == 10.2
    assert outstanding.due(10.2) == [message, question]


def test_an_answer_is_matched_to_the_copy_sent_on_this_channel_only() -> None:
    """A request sent on a lost channel kept that channel's number: the same number on
    the new channel is another request's, and the first is not taken as sent here."""
    outstanding = Outstanding()
    logout, question = Handle("logout", b"l"), Handle("who", b"q")
    outstanding.add(logout)
    logout.seq = 4
    outstanding.sent(logout)
    outstanding.new_channel()
    outstanding.add(question)
    question.seq = 4
    outstanding.sent(question)
    assert outstanding.sent_here(question)
    assert not outstanding.sent_here(logout)
    assert outstanding.answering(4) is question


def test_an_answered_message_is_no_longer_found_by_its_cid() -> None:
    """The daemon's copy of a message answers it only while it waits: once answered, the
    message is forgotten (a program that only posts keeps nothing of what it sent)."""
    outstanding = Outstanding()
    message = Handle("say", b"m", cid="c1")
    outstanding.add(message)
    message.seq = 1
    outstanding.sent(message)
    assert outstanding.by_cid("c1") is message
    outstanding.remove(message)
    assert outstanding.by_cid("c1") is None
    assert outstanding.answering(1) is None
    assert len(outstanding) == 0


def test_an_idle_connection_pings_and_stays_in_session() -> None:
    sim = Simulation(8)
    alice = sim.client("alice")
    sim.run_until(lambda: alice.ready)
    pings = sim.driver.engine.stats["pings"]
    sim.run(100.0)  # more than twice the daemon's 45 s idle timeout
    assert sim.driver.engine.stats["pings"] - pings >= 6
    assert alice.sid in sim.driver.engine.sessions
    assert alice.connected


def test_logout_completes_and_ends_the_connection() -> None:
    sim = Simulation(9, STORMY)
    alice = sim.client("alice")
    sim.run_until(lambda: alice.ready)
    handle = alice.logout()
    sim.run_until(lambda: alice.closed)
    assert handle.done and handle.error is None
    assert isinstance(alice.failure, ConnectionLost)
    assert alice.sid not in sim.driver.engine.sessions
    assert alice.next_timer() is None


@pytest.mark.parametrize("seed", range(4))
def test_a_registration_through_heavy_loss_is_acted_on_once(seed: int) -> None:
    sim = Simulation(seed, Conditions(loss=0.4, duplicate=0.3, delay=0.005))
    zoe = sim.channel("zoe")
    handle = zoe.register("zoë", "correct horse")
    sim.run_until(lambda: handle.done)
    assert handle.error is None and handle.result == "zoë"
    assert [a.name for a in sim.driver.stored_accounts()] == ["zoë"]  # stored once
    again = sim.channel("again").register("ZOË", "correct horse")
    sim.run_until(lambda: again.done)
    assert isinstance(again.error, NameTaken)


def test_a_registration_the_daemon_is_busy_with_waits_as_long_as_it_takes() -> None:
    sim = Simulation(12, client_config=ClientConfig(timeout=1.0))
    sim.driver.auto_commit = False  # the account is being written
    yan = sim.channel("yan")
    handle = yan.register("yan", "correct horse")
    sim.run(3.0)
    # Three times the timeout, still waiting: the daemon acknowledged the request.
    assert not handle.done and not yan.closed
    sim.driver.commit_held()
    sim.run_until(lambda: handle.done)
    assert handle.result == "yan"


def test_a_registration_cut_off_by_a_restart_is_carried_again_by_a_new_channel() -> None:
    sim = Simulation(13, Conditions(delay=0.002))
    sim.driver.auto_commit = False  # the daemon dies before it has written the account
    yan = sim.channel("yan")
    handle = yan.register("yan", "correct horse")
    sim.run(0.5)
    assert not handle.done
    sim.restart_daemon(down_for=1.0)
    sim.driver.auto_commit = True
    sim.run_until(lambda: handle.done, limit=30.0)
    assert handle.error is None and handle.result == "yan"
    assert [a.name for a in sim.driver.stored_accounts()] == ["yan"]


@pytest.mark.parametrize("seed", range(4))
def test_a_handshake_through_loss_and_duplication_opens_one_channel(seed: int) -> None:
    sim = Simulation(seed, Conditions(loss=0.4, duplicate=0.5, reorder=0.3, delay=0.01))
    alice = sim.client("alice")
    sim.run_until(lambda: alice.ready, limit=60.0)
    assert alice.connected
    # Every INIT that arrived twice got the same RESPONSE: one channel, one session.
    assert len(sim.driver.engine.sessions) == 1
    assert sim.driver.engine.stats["handshakes"] >= 1
    assert sim.network.dropped + sim.network.duplicated > 0  # the network did its worst


def test_a_daemon_showing_another_key_gets_no_password() -> None:
    sim = Simulation(5)
    sim.driver.add_account("alice", "correct horse")
    impostor = DaemonKeys.generate()
    connection = ClientConnection(impostor.public, "alice", "correct horse", where="there")
    sent: list[bytes] = []
    connection.start(sim.now)
    for _ in range(3):
        datagrams = connection.datagrams_to_send(sim.now)
        sent += datagrams
        for data in datagrams:
            for answer in sim.driver.receive(data, ("10.9.9.1", 1)):
                connection.receive_datagram(answer, sim.now)
    assert isinstance(connection.failure, KeyChanged)
    assert str(connection.failure).startswith(
        f"The daemon at there has the key {fingerprint(sim.driver.server_key)}, not the "
        f"trusted {fingerprint(impostor.public)}; "
    )
    assert all(data[0] == wire.INIT for data in sent)  # no record: nothing was sealed
    assert not any(b"correct horse" in data for data in sent)
    assert not sim.driver.engine.sessions


@pytest.mark.parametrize("code", ["bad_version", "busy"])
@pytest.mark.parametrize("kind", ["login", "key probe"])
def test_a_daemon_of_another_version_is_named_as_such(kind: str, code: str) -> None:
    """A daemon of another version refuses the first flight in its own version's `REFUSED`,
    whose layout every version shares: the client says why instead of timing out, and
    waits out nothing such a daemon says (it would not understand the next try either)."""
    key = DaemonKeys.generate().public
    other = wire.PROTOCOL_VERSION - 1
    refusal = bytes((wire.REFUSED, other)) + wire.encode(
        {"code": code, "message": "Not this version.", "retry_after": 1.0}
    )
    peer: ClientConnection | client_handshake.KeyProbe
    if kind == "login":
        peer = ClientConnection(key, "alice", "correct horse", where="there")
        peer.start(0.0)
    else:
        peer = client_handshake.KeyProbe(0.0, where="there")
    (first,) = peer.datagrams_to_send(0.0)
    assert first[1] == wire.PROTOCOL_VERSION
    peer.receive_datagram(refusal, 0.01)
    failure = peer.failure if isinstance(peer, ClientConnection) else peer.error
    assert isinstance(failure, ProtocolError)
    assert str(failure) == (
        f"The daemon at there speaks version {other} of the trio-chat protocol, and this "
        f"program version {wire.PROTOCOL_VERSION}; run the same version of trio-chat on both "
        "sides."
    )


def test_a_refusal_in_this_version_still_means_what_it_says() -> None:
    key = DaemonKeys.generate().public
    probe = client_handshake.KeyProbe(0.0, where="there")
    probe.datagrams_to_send(0.0)
    probe.receive_datagram(wire.refused_datagram("busy", "Too many at once.", 1.0), 0.01)
    assert str(probe.error) == "Too many at once."
    assert not isinstance(probe.error, ProtocolError)
    connection = ClientConnection(key, "alice", "correct horse", where="there")
    connection.start(0.0)
    connection.datagrams_to_send(0.0)
    connection.receive_datagram(wire.refused_datagram("busy", "Too many at once.", 1.0), 0.01)
    assert connection.failure is None  # waited out, and the INIT sent again after a second
    assert connection.datagrams_to_send(0.5) == []
    (again,) = connection.datagrams_to_send(1.02)
    assert again[0] == wire.INIT


def test_a_client_that_comes_back_ends_its_lost_session_at_once() -> None:
    sim = Simulation(14)
    alice, bob = sim.client("alice"), sim.client("bob")
    sim.run_until(lambda: alice.ready and bob.ready)
    lost_index = alice.sid
    sim.network.conditions["alice"] = Conditions(loss=1.0)  # nothing reaches alice
    alice.say("is anyone there?")
    sim.run_until(lambda: any(isinstance(e, Disconnected) for e in sim.events["alice"]), 15.0)
    assert lost_index in sim.driver.engine.sessions  # the daemon has not noticed yet
    sim.network.conditions["alice"] = Conditions()
    sim.run_until(lambda: any(isinstance(e, Reconnected) for e in sim.events["alice"]), 20.0)
    assert sim.now < 20.0  # well before the daemon would have given the old one up
    assert lost_index not in sim.driver.engine.sessions
    alices = [
        s for s in sim.driver.engine.sessions.values() if s.account and s.account.name == "alice"
    ]
    assert len(alices) == 1
    assert not [e for e in sim.events["bob"] if isinstance(e, Left)]  # she never left


def test_a_client_shown_nothing_yet_is_shown_all_it_missed_when_it_comes_back() -> None:
    """Nothing was said before alice's session was lost: coming back, she asks for all
    that came after nothing, not for the few newest that a first login is shown."""
    sim = Simulation(16)
    alice, bob = sim.client("alice"), sim.client("bob")
    sim.run_until(lambda: alice.ready and bob.ready)
    sim.network.conditions["alice"] = Conditions(loss=1.0)  # nothing reaches alice
    said = [bob.say(f"m{n}") for n in range(25)]
    sim.run_until(lambda: any(isinstance(e, Disconnected) for e in sim.events["alice"]), 120.0)
    assert all_done(said)
    sim.network.conditions["alice"] = Conditions()
    sim.run_until(lambda: alice.ready and alice.connected, 60.0)
    sim.run(1.0)
    assert heard(sim, "alice") == [f"m{n}" for n in range(25)]


def test_a_session_lost_again_before_its_welcome_still_ends_the_first_one_lost() -> None:
    """The first channel coming back opens and is lost before its login is welcomed: it
    was never the account's session, and the login that comes back ends the one that
    was (not a ghost of alice's left in the room until it times out)."""
    driver = EngineDriver()
    driver.add_account("alice", PASSWORD, ("10.0.0.1", 40001))
    alice = Peer(driver, "alice", address=("10.0.0.1", 40001), config=ClientConfig())
    lost = alice.sid
    connection = alice.connection
    connection.connection_refused(driver.now)  # a new channel opens
    for data in connection.datagrams_to_send(driver.now):  # the key exchange alone
        for answer in driver.receive(data, alice.address):
            connection.receive_datagram(answer, driver.now)
    assert connection.link is not None and not connection.connected
    connection.connection_refused(driver.now)  # lost again, its login not taken in
    alice.settle()
    assert connection.connected and lost not in driver.engine.sessions
    sessions = driver.engine.sessions.values()
    assert [s.sid for s in sessions if s.account and s.account.name == "alice"] == [alice.sid]


def test_a_history_page_and_who_complete_with_their_answers() -> None:
    sim = Simulation(11, STORMY)
    alice, bob = sim.client("alice"), sim.client("bob")
    sim.run_until(lambda: alice.ready and bob.ready)
    said = [alice.say(f"m{n}") for n in range(8)]
    sim.run_until(lambda: all_done(said))
    page = bob.history(limit=3, before=said[5].result.id)
    who = bob.who()
    sim.run_until(lambda: page.done and who.done)
    assert [m.text for m in page.result] == ["m2", "m3", "m4"]
    assert all(m.history for m in page.result)
    assert who.result == ["alice", "bob"]


def test_a_frame_sent_as_it_is_completes_as_its_request_does() -> None:
    # `request(frame)` once named a request after the frame's class: a `HistoryRequest`
    # completed with None, its messages dropped, and a `ChangePassword` never completed.
    sim = Simulation(12)
    alice = sim.client("alice")
    sim.run_until(lambda: alice.ready)
    said = alice.say("m0")
    sim.run_until(lambda: said.done)
    page = alice.request(wire.HistoryRequest(limit=5))
    who = alice.request(wire.Who())
    change = alice.request(wire.ChangePassword(old=PASSWORD, new="a new password"))
    sim.run_until(lambda: page.done and who.done and change.done)
    assert [m.text for m in page.result] == ["m0"]
    assert who.result == ["alice"]
    assert change.error is None


def test_a_history_page_asked_with_what_is_not_a_whole_number_is_refused_here() -> None:
    # Sent as it was, 1.5 reached the daemon as a bad frame, logged there, and came back
    # as a ProtocolError: a mistake in the program calling, told where it was made.
    connection = ClientConnection(b"k" * 32, "alice", "correct horse")
    for limit, before in ((1.5, None), (True, None), ("20", None), (20, 3.0), (20, "9")):
        with pytest.raises(TypeError, match="whole number"):
            connection.history(limit, before)  # type: ignore[arg-type]
    assert connection.pending == 0


CORE = [
    *sorted(Path(client_protocol.__file__).parent.glob("*.py")),
    Path(client_handshake.__file__),
]
"""The sans-I/O client core: every module of `client_protocol`, and `client_handshake`."""


@pytest.mark.parametrize("path", CORE, ids=lambda path: path.name)
def test_the_core_imports_no_socket_no_trio_and_no_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported: set[str] = set()
    local: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            names = [node.module] if node.module else [alias.name for alias in node.names]
            local |= {name.split(".")[0] for name in names}
    assert local and (path.name == "__init__.py" or "__future__" in imported)  # the walk found them
    assert imported.isdisjoint({"trio", "socket", "time", "asyncio", "select", "selectors"})
    assert local.isdisjoint({"client", "server", "terminal", "gui"})


@pytest.mark.parametrize("down_for", [0.3, 2.0])
def test_a_first_login_cut_off_by_a_restart_is_carried_again_by_a_new_channel(
    down_for: float,
) -> None:
    sim = Simulation(15, Conditions(delay=0.002))
    alice = sim.client("alice")
    sim.driver.auto_hash = False  # the daemon dies while it checks the password
    sim.run(0.5)
    assert not alice.ready and sim.driver.hashing
    sim.restart_daemon(down_for=down_for)
    sim.run_until(lambda: alice.ready or alice.closed, limit=30.0)
    assert alice.ready, alice.failure


def test_message_ids_are_random_then_counted_so_that_they_sort_in_the_order_sent() -> None:
    """A connection's ids share 64 random bits and then count up, in characters that
    sort as they count: the daemon's index of ids takes each new one beside the last,
    not at a random place. Another connection starts elsewhere."""
    one, other = client_protocol.Ids(), client_protocol.Ids()
    ids = [one() for _ in range(5000)]
    assert len(set(ids)) == len(ids) and sorted(ids) == ids
    for cid in ids[:3] + ids[-3:]:
        assert msgspec.convert(cid, wire.ClientMessageId) == cid and len(cid) <= 24
    assert len({cid[:11] for cid in ids}) == 1 and other()[:11] != ids[0][:11]
    connection = ClientConnection(b"k" * 32, "alice", "pw")
    first, second = connection.say("a"), connection.say("b")
    assert first.cid is not None and second.cid is not None
    assert first.cid[:11] == second.cid[:11] and first.cid < second.cid


def test_ids_stay_unique_past_what_the_count_characters_hold() -> None:
    """After 64**5 ids (a billion, on one connection) the count's five characters would
    start again at the first id's, and the daemon would take a new message for an old
    one (one message per `cid`): the random part is drawn anew there."""
    ids = client_protocol.Ids()
    first = ids()
    ids._count = 64**5 - 1
    last, after = ids(), ids()
    assert (first[11:], last[11:], after[11:]) == ("-----", "zzzzz", "-----")
    assert after[:11] != first[:11] and len({first, last, after}) == 3


def test_everyone_coming_back_after_a_restart_joins_as_back_and_a_new_login_does_not() -> None:
    """After a daemon restart every session comes back and the room hears each join
    again, with no leave before it: those joins say `back`, so that a program (a greeter)
    can tell them from someone entering anew."""
    sim = Simulation(5, Conditions(delay=0.002))
    alice, bob = sim.client("alice"), sim.client("bob")
    sim.run_until(lambda: alice.ready and bob.ready)
    sim.run(0.5)
    for label in ("alice", "bob"):
        sim.events[label].clear()
    sim.restart_daemon(down_for=1.0)
    sim.run_until(lambda: min(reconnections(sim, "alice"), reconnections(sim, "bob")) > 0, 60.0)
    sim.run(1.0)
    carol = sim.client("carol")
    sim.run_until(lambda: carol.ready)
    sim.run(0.5)
    joins = [
        (label, e.name, e.back)
        for label in ("alice", "bob")
        for e in sim.events[label]
        if isinstance(e, Joined)
    ]
    # The first one back hears the other come back; both hear carol enter.
    assert sorted(joins) in (
        [("alice", "bob", True), ("alice", "carol", False), ("bob", "carol", False)],
        [("alice", "carol", False), ("bob", "alice", True), ("bob", "carol", False)],
    )


def test_a_key_probe_for_a_health_check_ends_at_a_closed_port() -> None:
    """`trio-chat ping` is told at once that nothing listens; a client that may have
    started before its daemon keeps asking until its timeout."""
    check = client_handshake.KeyProbe(0.0, where="there", refused_ends=True)
    patient = client_handshake.KeyProbe(0.0, where="there")
    for probe in (check, patient):
        probe.datagrams_to_send(0.0)
        probe.connection_refused(0.01)
    assert isinstance(check.error, ServerUnreachable) and check.done
    assert patient.error is None and not patient.done


def test_a_first_flight_goes_again_sooner_then_each_second_until_the_timeout() -> None:
    """An `INIT` or `KEY_REQUEST` lost on the way is sent again after 0.2 s, then after
    twice as long each time up to a second: soon at first, never a flood; and the timeout
    ends the wait when it falls, not at the next send due."""
    key = DaemonKeys.generate().public
    peers = (
        client_handshake.KeyProbe(0.0, timeout=4.0),
        client_handshake.Handshake(key, 0.0, 4.0, "there", 1),
    )
    for peer in peers:
        sent: list[float] = []
        now = 0.0
        for _step in range(20):
            if peer.datagrams_to_send(now):
                sent.append(round(now, 3))
            timer = peer.next_timer()
            if timer is None:
                break
            now = timer
            peer.handle_timer(now)
        assert sent == [0.0, 0.2, 0.6, 1.4, 2.4, 3.4], type(peer)
        assert now == 4.0 and isinstance(peer.error, ServerUnreachable)


def test_a_key_probe_answered_takes_nothing_more() -> None:
    """The first `KEY` is the answer: a second one (someone else's, sent after), a
    refusal, a closed port or the timeout after it change neither the key nor the result,
    and nothing more is sent."""
    first, second = DaemonKeys.generate().public, DaemonKeys.generate().public
    probe = client_handshake.KeyProbe(0.0, timeout=1.0, where="there", refused_ends=True)
    assert probe.datagrams_to_send(0.0)
    probe.receive_datagram(wire.key_datagram(first), 0.01)
    probe.receive_datagram(wire.key_datagram(second), 0.02)
    probe.receive_datagram(wire.refused_datagram("busy", "Too many at once.", 1.0), 0.03)
    probe.connection_refused(0.04)
    probe.handle_timer(5.0)
    assert probe.datagrams_to_send(5.0) == [] and probe.next_timer() is None
    assert (probe.key, probe.error) == (first, None)


def test_a_handshake_seeds_the_channel_with_its_round_trip() -> None:
    """The time from the `INIT` to its `RESPONSE` is the new channel's first measure of
    the round trip: a first frame lost is sent again after that, not after a second."""
    sim = Simulation(3, Conditions(delay=0.05))
    alice = sim.channel("alice")
    sim.run_until(lambda: alice.link is not None, limit=5.0)
    assert alice.link is not None and alice.link.srtt == pytest.approx(0.1, abs=0.01)


def test_a_busy_refusal_that_names_no_wait_ends_the_login_with_it() -> None:
    key = DaemonKeys.generate().public
    connection = ClientConnection(key, "alice", "correct horse", where="there")
    connection.start(0.0)
    connection.datagrams_to_send(0.0)
    connection.receive_datagram(wire.refused_datagram("busy", "Too many at once."), 0.01)
    assert isinstance(connection.failure, Busy) and str(connection.failure) == "Too many at once."


def test_a_busy_handshake_waits_only_if_an_answer_can_come_in_time() -> None:
    """A `busy` refusal is waited out only if the message sent again then can be answered,
    a round trip later, before the timeout; else the refusal is the error at once. Once
    sent again, silence until the timeout is silence (unreachable); a refusal being waited
    out when the timeout passes (a process woken late) is that refusal. Other refusals
    are never waited out, whatever wait they name."""
    key = DaemonKeys.generate().public

    def refused_at(now: float, code: str, wait: float) -> client_handshake.Handshake:
        handshake = client_handshake.Handshake(key, 0.0, 2.0, "there", 1)
        assert handshake.datagrams_to_send(0.0)
        refusal = wire.parse_datagram_untrusted(wire.refused_datagram(code, "No.", wait))
        assert handshake.receive(refusal, now)
        return handshake

    # 0.5 s to answer, 1 s to wait, 0.5 s back: the answer would come at the timeout.
    assert isinstance(refused_at(0.5, "busy", 1.0).error, Busy)
    assert isinstance(refused_at(0.5, "banned", 0.1).error, Banned)
    waiting = refused_at(0.4, "busy", 1.0)
    assert waiting.error is None and waiting.next_timer() == 1.4
    waiting.handle_timer(2.5)
    assert isinstance(waiting.error, Busy)
    waited = refused_at(0.4, "busy", 1.0)
    assert waited.datagrams_to_send(1.4)
    waited.handle_timer(2.0)
    assert isinstance(waited.error, ServerUnreachable)


@pytest.mark.parametrize("ticket_expired", [False, True])
def test_a_resume_lost_before_its_history_ended_is_asked_again_from_where_it_was(
    ticket_expired: bool,
) -> None:
    """Alice came back to more than a resume sends (`resume_limit`): the newest came
    first, and the session was lost again before the `ready` that said more was left out
    and where. Her next resume asked for what came after the newest of it, was sent the
    rest of it, and was told nothing was left out: the older ones she missed were never
    shown, nor paged back to. Until a resume's history has come whole, the next one asks
    from where it did, however many are lost before it does."""
    driver = EngineDriver(ServerConfig(resume_limit=3))
    driver.add_account("alice", PASSWORD, ("10.0.0.1", 40001))
    alice = Peer(driver, "alice", address=("10.0.0.1", 40001), config=ClientConfig())
    driver.add_account("bob", PASSWORD, ("10.0.0.2", 40002))
    bob = Peer(driver, "bob", address=("10.0.0.2", 40002))
    bob.send(wire.Say(text="seen", cid="s"))
    alice.settle()
    alice.connection.connection_refused(driver.now)  # lost: she comes back at once
    for n in range(8):  # a message a datagram
        bob.send(wire.Say(text=f"missed {n} " + "x" * 400, cid=f"m{n}"))
    driver.inbox.pop(alice.address, None)

    def came() -> int:
        return len([m for m in alice.of_type(wire.Msg) if m.history])

    for lost in range(2):  # lost twice, each time before its `ready`
        if lost:
            alice.connection.connection_refused(driver.now)
        before = came()
        while came() == before:
            replies = []
            for data in alice.connection.datagrams_to_send(driver.now):
                replies += driver.receive(data, alice.address)
            while replies and came() == before:
                alice.take([replies.pop(0)])  # the rest, `ready` among it, is lost
    assert not alice.of_type(wire.Ready)[1:]
    if ticket_expired:  # the last login is with her password, asking as a resume would
        alice.connection.ticket = ""
    alice.connection.connection_refused(driver.now)
    alice.settle()
    history = [e for e in alice.events if isinstance(e, History)][-1]
    assert [m.text[:9] for m in history.messages] == [f"missed {n} " for n in (5, 6, 7)]
    assert history.more and history.gap == history.messages[0].id
    page = alice.connection.history(10, before=history.gap)
    alice.settle()
    assert [m.text[:9] for m in page.result] == ["seen", *(f"missed {n} " for n in range(5))]
