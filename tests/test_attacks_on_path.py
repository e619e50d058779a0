"""An attacker on the path: it sees every datagram between a client and the daemon and
can drop, delay, reorder, replay, alter and inject them.

It must learn nothing that was said (no password, ticket, name or text crosses the
network outside the channel), and nothing it replays, flips or reorders may be shown or
acted on twice; a replayed handshake must not log anyone in; the daemon's own datagrams
sent back at it change nothing; a copy of a record raced ahead from the attacker's
address moves a session only behind a path check; a key file stolen later does not open
what was recorded earlier. The engine tests count every byte; the live tests put a
recording tap (`trio_chat.testing.attacks.Tap`) between a real client and a real daemon.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path

import pytest
import trio

from trio_chat import PublicMessage, connect, register, wire
from trio_chat.client_protocol import ClientConnection
from trio_chat.engine import ServerConfig, ServerEngine
from trio_chat.engine.notes import AddressChanged, LoggedIn
from trio_chat.secure import SecureError, respond
from trio_chat.testing.attacks import (
    TO_DAEMON,
    Seen,
    Tap,
    bound_socket,
    drive,
    kind_of,
    start_daemon,
)
from trio_chat.testing.attacks import leaks as found_in
from trio_chat.testing.driver import PASSWORD, EngineDriver, Peer
from trio_chat.testing.links import channel_pair

ALICE = ("10.0.0.1", 4000)
BOB = ("10.0.0.2", 4000)
MALLORY = ("10.6.6.6", 6666)


def two_peers(config: ServerConfig | None = None) -> tuple[EngineDriver, Peer, Peer]:
    driver = EngineDriver(config or ServerConfig(message_burst=1000))
    driver.add_account("alice")
    driver.add_account("bob")
    alice = Peer(driver, "alice", address=ALICE)
    bob = Peer(driver, "bob", address=BOB)
    alice.settle()
    bob.settle()
    driver.engine.take_notes()
    return driver, alice, bob


def state_of(engine: ServerEngine) -> tuple[object, ...]:
    return tuple(
        (s.sid, s.address, s.validated, s.link.highest_pn, s.link.received_up_to, s.link.queued)
        for s in engine.sessions.values()
    )


def sealed(peer: Peer, frame: wire.ClientFrame) -> bytes:
    """The record `peer`'s client would send for `frame` (captured: not delivered)."""
    peer.link.send(wire.encode(frame))
    (record,) = peer.link.datagrams_to_send(peer.driver.now)
    return record


def texts(peer: Peer) -> list[str]:
    return [m.text for m in peer.of_type(wire.Msg) if not m.history]


def flip(data: bytes, position: int, bit: int) -> bytes:
    return data[:position] + bytes([data[position] ^ (1 << bit)]) + data[position + 1 :]


# --- the engine, every byte counted --------------------------------------------------------------


def test_flipped_bits_are_dropped_and_counted_in_either_direction() -> None:
    driver, alice, bob = two_peers()
    engine = driver.engine
    record = sealed(alice, wire.Say(text="flip me", cid="f1"))
    before = state_of(engine)
    answers: Counter[str] = Counter()
    flips = 0
    for position in range(len(record)):
        for bit in (5, 6, 7):  # no flip of Alice's index names another session
            replies = driver.receive(flip(record, position, bit), ALICE)
            answers.update(kind_of(reply) for reply in replies)
            alice.take(replies)  # a RESET for an index that is not hers: ignored
            flips += position >= 5
    # The type byte: not a record any more. The index: a record for nobody (RESET,
    # smaller than it). Anything else: a record that does not authenticate.
    assert engine.stats["bad_records"] == flips
    assert answers == {"RESET": 4 * 3}
    assert state_of(engine) == before and driver.stored_messages() == []
    assert alice.connection.connected
    # The record itself was good all along.
    alice.take(driver.receive(record, ALICE))
    assert [m.text for m in driver.stored_messages()] == ["flip me"]
    # The other way: what the daemon sends Alice, altered on its way, is not shown.
    bob.send(wire.Say(text="to alice", cid="b1"))
    (to_alice,) = driver.inbox.pop(ALICE)
    for position in range(len(to_alice)):
        alice.take([flip(to_alice, position, position % 8)])
    assert "to alice" not in texts(alice)
    alice.take([to_alice])
    assert texts(alice).count("to alice") == 1


def test_replayed_records_are_dropped_and_nothing_happens_twice() -> None:
    driver, alice, bob = two_peers()
    engine = driver.engine
    record = sealed(alice, wire.Say(text="once", cid="o1"))
    driver.receive(record, ALICE)
    bob.poll()
    for replay in range(10):
        driver.now += 0.5
        assert driver.receive(record, ALICE if replay % 2 else MALLORY) == []
    assert engine.stats["bad_records"] == 10
    assert engine.stats["migrations"] == 0
    assert [m.text for m in driver.stored_messages()] == ["once"]
    bob.settle()
    assert texts(bob) == ["once"]
    # The daemon's records to Bob, replayed to him, are shown once as well.
    bob.send(wire.Say(text="twice?", cid="t1"))
    alice_records = driver.inbox.pop(ALICE)
    for _ in range(3):
        alice.take(alice_records)
    assert texts(alice) == ["twice?"]
    assert [e.text for e in alice.events if isinstance(e, PublicMessage)] == ["twice?"]


def test_a_forged_record_under_a_used_packet_number_is_refused_as_a_forgery() -> None:
    """The tag is checked before the replay window is looked at: a forgery learns nothing
    of which packet numbers were opened, and moves nothing."""
    client, server = channel_pair()
    record = client.seal(5, b"once")
    assert server.open_untrusted(record) == (5, b"once")
    forged = record[:-1] + bytes([record[-1] ^ 1])
    with pytest.raises(SecureError, match=r"^A record did not authenticate\.$"):
        server.open_untrusted(forged)
    with pytest.raises(SecureError, match=r"^A record was replayed\.$"):
        server.open_untrusted(record)


def test_reordered_records_deliver_every_frame_once_in_order() -> None:
    driver, alice, bob = two_peers()
    rng = random.Random(7)
    records = [sealed(alice, wire.Say(text=f"m{n}", cid=f"m{n}")) for n in range(20)]
    rng.shuffle(records)
    to_alice: list[bytes] = []
    for record in records:
        to_alice += driver.receive(record, ALICE)
    expected = [f"m{n}" for n in range(20)]
    assert [m.text for m in driver.stored_messages()] == expected
    bob.settle()
    assert texts(bob) == expected
    # The other way: Bob's messages reach Alice shuffled, and are shown in order.
    for n in range(20):
        bob.link.send(wire.encode(wire.Say(text=f"b{n}", cid=f"b{n}")))
        bob.flush()
    to_alice += driver.inbox.pop(ALICE)
    assert len(to_alice) > 20
    rng.shuffle(to_alice)
    alice.take(to_alice)
    assert texts(alice) == [f"b{n}" for n in range(20)]


def test_a_replayed_init_gets_the_same_response_at_most_and_never_a_login() -> None:
    driver = EngineDriver()
    driver.add_account("alice")
    engine = driver.engine
    engine.take_notes()
    alice = Peer(driver, "alice", address=ALICE, login=False)
    alice.connection.start(driver.now)
    (init,) = alice.connection.datagrams_to_send(driver.now)
    (response,) = driver.receive(init, ALICE)
    # Before the client is heard from again, the INIT sent again is answered the same.
    for _ in range(5):
        assert driver.receive(init, ALICE) == [response]
    assert len(engine.sessions) == 1
    alice.take([response])
    alice.flush()
    alice.settle()
    assert alice.connection.ready
    # Later replays, from her address or the attacker's, get a handshake answer at most,
    # which only the holder of her ephemeral key could finish: nothing they open ever logs
    # in, and it is closed once the time to log in is up.
    for source in (ALICE, MALLORY, ALICE):
        driver.now += 1.0
        replies = driver.receive(init, source)
        assert [kind_of(reply) for reply in replies] in ([], ["RESPONSE"])
        assert sum(map(len, replies)) < len(init)
    driver.advance(engine.config.login_timeout + 1, ALICE)
    assert list(engine.sessions) == [alice.sid]
    logins = [note for note in engine.take_notes() if isinstance(note, LoggedIn)]
    assert [note.address for note in logins] == [ALICE]
    assert len(alice.of_type(wire.Welcome)) == 1


def test_the_daemons_own_datagrams_sent_back_at_it_change_nothing() -> None:
    config = ServerConfig(unproven_before_retry=0, message_burst=1000)  # a RETRY first
    driver, alice, bob = two_peers(config)
    alice.send(wire.Say(text="hi", cid="h1"))
    bob.settle()
    driver.receive(wire.key_request_datagram(), MALLORY)
    driver.receive(bytes((wire.KEY_REQUEST, 1)) + bytes(1198), MALLORY)  # REFUSED
    driver.receive(wire.data_header(12345, 1) + bytes(40), MALLORY)  # RESET
    reflected = list(driver.sent)
    assert {kind_of(d) for d, _to in reflected} >= {
        "KEY",
        "RESPONSE",
        "RETRY",
        "REFUSED",
        "DATA",
        "RESET",
    }
    engine = driver.engine
    before = (state_of(engine), engine.stats["messages"], len(driver.stored))
    answers: list[bytes] = []
    for data, to in reflected:
        for source in (to, MALLORY):
            replies = driver.receive(data, source)
            # A record addressed to a client's index is a record for nobody: a RESET,
            # smaller than it; anything else the daemon sent is not for a daemon.
            assert sum(map(len, replies)) <= len(data)
            assert all(kind_of(reply) == "RESET" for reply in replies)
            answers += replies
    assert answers
    assert (state_of(engine), engine.stats["messages"], len(driver.stored)) == before
    # And its answers sent back again end it: no loop.
    for reply in answers:
        assert driver.receive(reply, MALLORY) == []
    alice.settle()
    bob.settle()
    assert alice.connection.connected and bob.connection.connected


def test_a_record_raced_ahead_from_elsewhere_moves_the_session_only_behind_a_challenge() -> None:
    driver, alice, bob = two_peers()
    engine = driver.engine
    long_text = "ü" * 240
    for n in range(20):  # plenty waiting for Alice, to tempt the attacker's address
        bob.link.send(wire.encode(wire.Say(text=f"{n} {long_text}", cid=f"b{n}")))
    bob.flush()
    record = sealed(alice, wire.Say(text="mine", cid="a1"))
    driver.receive(record, MALLORY)  # the attacker's copy arrives first
    session = engine.sessions[alice.sid]
    assert session.address == MALLORY and not session.validated
    driver.advance(3.0)
    assert 0 < driver.sent_to[MALLORY] <= 3 * driver.received_from[MALLORY]
    assert driver.receive(record, ALICE) == []  # the original is now a replay
    assert engine.stats["bad_records"] == 1
    # Alice's next record brings her session back; she answers the challenge.
    alice.send()
    alice.settle(40)
    assert session.address == ALICE and session.validated
    assert texts(alice) == [f"{n} {long_text}" for n in range(20)]
    assert [m.text for m in driver.stored_messages()] == [f"{n} {long_text}" for n in range(20)] + [
        "mine"
    ]
    assert driver.sent_to[MALLORY] <= 3 * driver.received_from[MALLORY]


def test_a_static_key_stolen_later_does_not_open_what_was_recorded() -> None:
    driver = EngineDriver()
    driver.add_account("alice")
    recorded: list[bytes] = []
    alice = Peer(driver, "alice", address=ALICE, login=False)
    alice.connection.start(driver.now)
    for _round in range(5):
        for data in alice.connection.datagrams_to_send(driver.now):
            recorded.append(data)
            alice.take(driver.receive(data, ALICE))
    assert alice.connection.ready
    init = wire.parse_datagram_untrusted(recorded[0])
    assert isinstance(init, wire.Init)
    records = [data for data in recorded if kind_of(data) == "DATA"]
    assert records
    # With the key file, the thief reads the INIT as the daemon did, but the channel's keys
    # also need an ephemeral key the daemon threw away: what it derives opens nothing.
    for _attempt in range(3):
        token = os.urandom(16)
        _response, channel = respond(driver.keys.static_private, init, 1, token)
        for data in records:
            try:
                channel.open_untrusted(data)
            except SecureError:
                continue
            raise AssertionError("a recorded record opened with a stolen static key")


# --- a live daemon, a real client, a tap on the path --------------------------------------------


async def test_a_tap_on_a_live_session_learns_nothing_and_makes_nothing_happen_twice(
    tmp_path: Path,
) -> None:
    config = ServerConfig(register_burst=100, message_burst=1000, message_rate=1000.0)
    name, password = "alice-on-the-path", "Velvet-Orbit-Cactus-5521"
    secret_texts = ["the eagle lands at noon", "whispered: the vault code is 0451"]
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            (host, port), engine = await start_daemon(nursery, tmp_path / "chat.db", config)
            tap = Tap((host, port))
            _front_host, front = await nursery.start(tap.run)
            await register(host, front, name, password)  # the password crosses the tap
            await register(host, port, "bob", PASSWORD)
            alice_seen, bob_seen = Seen(), Seen()
            async with (
                connect(host, front, name, password) as alice,
                connect(host, port, "bob", PASSWORD) as bob,
            ):
                nursery.start_soon(alice_seen.listen, alice)
                nursery.start_soon(bob_seen.listen, bob)
                await alice.say(secret_texts[0])
                await alice.whisper("bob", secret_texts[1])
                await bob.say("bob's reply")
                first_ticket = alice.connection.ticket
                # Reordered: ten records held back, then let through last first.
                tap.holding.add(TO_DAEMON)
                receipts = [alice.say_nowait(f"r{n}") for n in range(10)]
                await tap.wait_until(lambda: len(tap.held) >= 10)
                await tap.release(lambda held: reversed(held))
                for receipt in receipts:
                    await receipt.wait()
                # Replayed, and altered: everything recorded so far, both ways.
                bad_records = engine.stats["bad_records"]
                to_daemon, _ = await tap.replay_and_alter()
                # The daemon reads one address's datagrams in order: once this is answered,
                # every injected record before it was handled.
                await alice.say("last")
                assert engine.stats["bad_records"] - bad_records == 2 * to_daemon
                await bob_seen.wait_for("last")
                # The ticket, used to resume through the tap.
                resumed = ClientConnection(alice.connection.server_key, name, "not-the-password")
                resumed.ticket = first_ticket
                with await bound_socket() as sock:
                    await sock.connect((host, front))
                    resumed.start(trio.current_time())
                    await drive(sock, resumed, lambda: resumed.ready or resumed.closed)
                    assert resumed.ready and resumed.ticket != first_ticket
                    resumed.close()
                    await drive(sock, resumed, lambda: True)
            nursery.cancel_scope.cancel()
    said = [secret_texts[0], *(f"r{n}" for n in range(10)), "last"]
    assert bob_seen.texts == said
    assert alice_seen.texts == ["bob's reply"]
    assert engine.stats["messages"] == len(said) + 2  # the whisper and Bob's reply
    # What the tap recorded: a real session's worth, none of it readable.
    kinds = Counter(kind_of(data) for _way, data in tap.captured)
    assert kinds["DATA"] > 30 and kinds["INIT"] >= 3 and kinds["KEY_REQUEST"] >= 1
    secrets: dict[str, bytes | str] = {
        "password": password,
        "first ticket": first_ticket,
        "second ticket": resumed.ticket,
        "name": name,
        **{f"text {n}": text for n, text in enumerate(secret_texts)},
    }
    assert found_in(tap.all_bytes, secrets) == []


def test_a_logged_out_channels_last_words_go_only_to_its_own_address() -> None:
    driver = EngineDriver(ServerConfig(message_burst=1000))
    driver.add_account("alice", PASSWORD)
    alice = Peer(driver, "alice", PASSWORD, ("10.70.0.1", 1))
    for n in range(30):
        alice.send(wire.Say(text="a fairly long message to fill the history " * 8, cid=f"m{n}"))
    channel = alice.connection.channel
    assert channel is not None
    # A big history answer, left unacknowledged, then a logout: the last words are large.
    history = wire.numbered_frame(alice.link._next_seq, wire.encode(wire.HistoryRequest(limit=100)))
    logout = wire.numbered_frame(alice.link._next_seq + 1, wire.encode(wire.Logout()))
    payload = wire.close_payload(wire.payload_head(0, 0, []), history + b"," + logout)
    driver.receive(channel.seal(1 << 30, payload), alice.address)
    assert not driver.engine.sessions
    poke = wire.close_payload(wire.payload_head(0, 0, []), wire.numbered_frame(1, b'{"t":"ping"}'))
    victim = ("10.70.9.9", 1)
    sent = len(poke) + wire.SEAL_OVERHEAD
    for n in range(20):  # spoofed from the victim: nothing may go there
        assert driver.receive(channel.seal((1 << 30) + 1 + n, poke), victim) == []
    assert driver.sent_to[victim] == 0
    again = driver.receive(channel.seal((1 << 30) + 100, poke), alice.address)
    assert again and sum(len(d) for d in again) > sent  # its own address: the ok again


def test_a_forged_response_does_not_spoil_the_real_one() -> None:
    driver = EngineDriver()
    driver.add_account("alice", PASSWORD)
    client = ClientConnection(driver.server_key, "alice", PASSWORD, new_index=lambda: 77)
    client.start(driver.now)
    (init,) = client.datagrams_to_send(driver.now)
    forged = wire.response_datagram(77, 123, os.urandom(wire.NOISE_MESSAGE_2_BYTES))
    client.receive_datagram(forged, driver.now)  # an attacker who saw the INIT is faster
    for answer in driver.receive(init, ("10.71.0.1", 1)):
        client.receive_datagram(answer, driver.now)
    for _ in range(5):
        for data in client.datagrams_to_send(driver.now):
            for answer in driver.receive(data, ("10.71.0.1", 1)):
                client.receive_datagram(answer, driver.now)
    assert client.connected and client.failure is None


def test_a_session_moved_by_a_raced_record_is_in_the_operators_log() -> None:
    # Whoever moved it, the operator is told where a logged-in session went, and from where.
    driver, alice, _bob = two_peers()
    alice.link.send(wire.encode(wire.Ping()))
    (record,) = alice.link.datagrams_to_send(driver.now)
    driver.receive(record, MALLORY)  # raced ahead from the attacker's address
    assert driver.engine.take_notes() == [AddressChanged("alice", ALICE, MALLORY)]
