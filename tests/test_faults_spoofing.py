"""An off-path spoofer: datagrams with forged source addresses, that never see an answer.

It floods first flights (`KEY_REQUEST`, `INIT`) from many addresses to make the daemon
send its victims more than it received, or to fill the daemon with half-open channels;
it forges records, `RESET`s and garbage to end or move someone else's session. (A session
does follow its keys to a new address, as after a NAT rebinding, but only behind a path
check: the tests in the middle pin that down.) The engine is driven by hand so that
every byte in and out is counted exactly; the last test floods a live daemon over real
sockets on 127.0.0.0/8.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_chat import ConnectionLost, connect, register, wire
from trio_chat.client_protocol import ClientConfig
from trio_chat.engine import Address, ServerConfig, ServerEngine
from trio_chat.errors import TooManySessions
from trio_chat.secure import (
    Cookies,
    DaemonKeys,
    Initiation,
    derive_key,
    initiate,
    reset_token,
)
from trio_chat.testing.attacks import (
    SILENT_KINDS,
    bound_socket,
    first_flight_kinds,
    kind_of,
    spoofed_host,
    start_daemon,
)
from trio_chat.testing.driver import PASSWORD, EngineDriver, Peer

ALICE = ("10.0.0.1", 4000)
BOB = ("10.0.0.2", 4000)
ELSEWHERE = ("10.0.0.66", 5555)
LONG = "ü" * 240  # 480 bytes of UTF-8: frames big enough to hit the byte budget


def two_peers(config: ServerConfig | None = None) -> tuple[EngineDriver, Peer, Peer]:
    driver = EngineDriver(config or ServerConfig(message_burst=1000))
    driver.add_account("alice")
    driver.add_account("bob")
    alice = Peer(driver, "alice", address=ALICE)
    bob = Peer(driver, "bob", address=BOB)
    alice.settle()
    bob.settle()
    return driver, alice, bob


def session_state(engine: ServerEngine, sid: int) -> tuple[object, ...]:
    session = engine.sessions[sid]
    link = session.link
    return (
        session.address,
        session.validated,
        session.challenge,
        link.highest_pn,
        link.received_up_to,
        link.queued,
        sorted(engine.sessions),
        tuple(engine.room.online()),
    )


def test_first_flight_floods_never_get_more_bytes_back_than_they_sent() -> None:
    driver = EngineDriver(ServerConfig(unproven_before_retry=32))
    rng = random.Random(1)
    kinds = first_flight_kinds(driver.server_key)
    addresses = [(f"198.51.{n >> 8}.{n & 255}", 1024 + n) for n in range(400)]
    answers: Counter[str] = Counter()
    for _step in range(3000):
        address = rng.choice(addresses)
        for reply in driver.receive(kinds[rng.choice(list(kinds))](rng), address):
            answers[kind_of(reply)] += 1
        driver.now += 0.001
    # Nobody answers: the half-open channels expire, and nothing is sent anyone later.
    driver.advance(driver.engine.config.login_timeout + 1)
    for address in addresses:
        assert driver.sent_to[address] <= driver.received_from[address], address
    total_in = sum(driver.received_from.values())
    assert sum(driver.sent_to.values()) < total_in / 10
    assert set(answers) == {"KEY", "RESPONSE", "RETRY", "REFUSED", "RESET"}
    assert answers["RESPONSE"] == 32  # then every INIT had to show a cookie first
    assert len(driver.engine.sessions) == 0
    assert driver.engine.transport.unproven == 0


def test_a_spoofed_init_flood_engages_cookies_and_keeps_the_state_bounded() -> None:
    config = ServerConfig(unproven_before_retry=8)
    driver = EngineDriver(config)
    driver.add_account("alice")
    engine = driver.engine
    rng = random.Random(2)
    kinds = first_flight_kinds(driver.server_key)
    answers: Counter[str] = Counter()
    handshakes = engine.stats["handshakes"]  # the registration's
    for n in range(500):
        address = (f"203.0.{n >> 8}.{n & 255}", 1024 + n)
        for reply in driver.receive(kinds["init"](rng), address):
            answers[kind_of(reply)] += 1
    assert answers == {"RESPONSE": 8, "RETRY": 492}
    assert len(engine.sessions) == engine.transport.unproven == 8
    assert engine.stats["handshakes"] - handshakes == 8
    assert engine.stats["retries_sent"] == 492
    # Someone who receives at their address answers the RETRY and gets in meanwhile.
    alice = Peer(driver, "alice", address=ALICE)
    assert alice.connection.ready
    assert engine.stats["retries_sent"] == 493
    # The strangers' channels are closed once they failed to log in in time.
    driver.advance(config.login_timeout + 1)
    assert list(engine.sessions) == [alice.sid]
    assert engine.transport.unproven == 0


def test_a_cookie_is_good_only_for_its_address_and_index_and_for_a_minute_at_most() -> None:
    driver = EngineDriver(ServerConfig(unproven_before_retry=0))  # cookies always
    engine = driver.engine

    def retry_for(initiation: Initiation, address: Address) -> bytes:
        (reply,) = driver.receive(initiation.datagram(), address)
        retry = wire.parse_datagram_untrusted(reply)
        assert isinstance(retry, wire.Retry) and len(retry.cookie) == 16
        return retry.cookie

    initiation = initiate(driver.server_key, 77)
    cookie = retry_for(initiation, ALICE)
    for address, index in ((ELSEWHERE, 77), (ALICE, 78), (("10.0.0.1", 4001), 77)):
        (answer,) = driver.receive(wire.init_datagram(index, cookie, initiation.message), address)
        assert kind_of(answer) == "RETRY"
    assert len(engine.sessions) == 0
    initiation.cookie = cookie
    (answer,) = driver.receive(initiation.datagram(), ALICE)
    assert kind_of(answer) == "RESPONSE"
    assert len(engine.sessions) == 1
    # A cookie outlives the 30-second period it was made in by one period, no more.
    later = initiate(driver.server_key, 79)
    later.cookie = retry_for(later, ALICE)
    driver.now += 61.0
    (answer,) = driver.receive(later.datagram(), ALICE)
    assert kind_of(answer) == "RETRY"
    assert len(engine.sessions) == 1


def test_a_cookie_from_another_daemon_is_not_good_here() -> None:
    """Each daemon draws its own cookie secret: a spoofer that runs a daemon of its own
    cannot make cookies for this one."""
    ours, theirs = Cookies(), Cookies()
    made_elsewhere = theirs.make(ALICE, 77, 1000.0)
    assert not ours.check(made_elsewhere, ALICE, 77, 1000.0)
    assert ours.check(ours.make(ALICE, 77, 1000.0), ALICE, 77, 1000.0)
    # Daemons given a secret share cookies only if they share it.
    secret = os.urandom(32)
    shared = Cookies(secret).make(ALICE, 77, 1000.0)
    assert Cookies(secret).check(shared, ALICE, 77, 1000.0)
    assert not Cookies(os.urandom(32)).check(shared, ALICE, 77, 1000.0)


def test_max_connections_is_honoured_even_for_clients_that_answer_cookies() -> None:
    config = ServerConfig(unproven_before_retry=4, max_connections=10)
    driver = EngineDriver(config)
    answers: Counter[str] = Counter()
    for n in range(40):
        address = (f"192.0.2.{n + 1}", 5000)
        initiation = initiate(driver.server_key, n + 1)
        (reply,) = driver.receive(initiation.datagram(), address)
        parsed = wire.parse_datagram_untrusted(reply)
        if isinstance(parsed, wire.Retry):
            initiation.cookie = parsed.cookie
            (reply,) = driver.receive(initiation.datagram(), address)
            parsed = wire.parse_datagram_untrusted(reply)
        if isinstance(parsed, wire.Refused):
            assert parsed.code == "busy" and parsed.retry_after == 5.0
        answers[kind_of(reply)] += 1
        assert len(driver.engine.sessions) <= config.max_connections
    assert answers == {"RESPONSE": 10, "REFUSED": 30}


def test_a_reset_cannot_be_forged_without_the_token() -> None:
    driver, alice, bob = two_peers()
    token = reset_token(driver.keys.reset_secret, alice.sid)
    flipped = bytes([token[0] ^ 1]) + token[1:]
    forgeries = [
        wire.reset_datagram(alice.sid, bytes(16)),
        wire.reset_datagram(alice.sid, os.urandom(16)),
        wire.reset_datagram(alice.sid, flipped),
        wire.reset_datagram(alice.sid, reset_token(driver.keys.reset_secret, bob.sid)),
        wire.reset_datagram(alice.sid, reset_token(os.urandom(32), alice.sid)),
        wire.reset_datagram(bob.sid, token),  # the right token under another index
        wire.reset_datagram(alice.sid, token)[:-1],
    ]
    for forged in forgeries:
        alice.take([forged])
        assert alice.connection.connected
    alice.send(wire.Say(text="still here", cid="s1"))
    assert [m.text for m in bob.poll() if isinstance(m, wire.Msg)] == ["still here"]
    # The real token does end it: the check above is what kept the session.
    alice.take([wire.reset_datagram(alice.sid, token)])
    assert not alice.connection.connected
    assert isinstance(alice.connection.failure, ConnectionLost)


def test_a_daemon_started_again_on_its_keys_shows_the_same_reset_tokens() -> None:
    """A daemon that lost a session in a restart can still end it: the token comes from
    its static key, not from anything the restart forgot."""
    keys = DaemonKeys.generate()
    again = DaemonKeys(keys.static_private, os.urandom(32))
    assert reset_token(again.reset_secret, 99) == reset_token(keys.reset_secret, 99)
    assert reset_token(DaemonKeys.generate().reset_secret, 99) != reset_token(keys.reset_secret, 99)


def test_the_reset_secret_is_a_key_of_its_own_not_the_daemons_static_key() -> None:
    """Reset tokens are made under a key derived for them alone: what they reveal, or
    what reveals them, says nothing of the static key or of keys derived for other uses."""
    keys = DaemonKeys.generate()
    assert keys.reset_secret != keys.static_private
    assert keys.reset_secret == derive_key(keys.static_private, b"trio-chat reset tokens")
    assert derive_key(keys.static_private, b"another use") != keys.reset_secret


def test_the_daemon_never_shows_the_reset_token_of_a_session_it_still_has() -> None:
    driver, alice, _bob = two_peers()
    engine = driver.engine
    forged = wire.data_header(alice.sid, 99) + os.urandom(60)
    for address in (ALICE, ELSEWHERE):
        assert driver.receive(forged, address) == []
    assert engine.stats["bad_records"] == 2 and engine.stats["unknown_sessions"] == 0
    # Nor for 30 s after it ended: its late records are dropped, not answered.
    sid = alice.sid
    alice.connection.logout()
    alice.flush()
    assert sid not in engine.sessions
    driver.now += engine.config.ended_session_memory - 1
    assert driver.receive(forged, ELSEWHERE) == []
    # Once the index is long free, anyone may learn its token: it ends nothing now.
    driver.now += 2
    (reset,) = driver.receive(forged, ELSEWHERE)
    assert reset == wire.reset_datagram(sid, reset_token(driver.keys.reset_secret, sid))
    assert len(reset) < len(forged)


def test_forged_records_resets_and_garbage_neither_end_nor_move_a_session() -> None:
    driver, alice, bob = two_peers()
    engine = driver.engine
    before = session_state(engine, alice.sid)
    rng = random.Random(3)
    token = reset_token(driver.keys.reset_secret, alice.sid)
    record = alice.link.seal(10**6, b'{"frames":[[9,{"t":"logout"}]]}')
    forgeries = [
        wire.reset_datagram(alice.sid, token),  # a RESET is the daemon's: sent to it, dropped
        wire.key_datagram(os.urandom(32)),
        wire.response_datagram(1, alice.sid, os.urandom(64)),
        wire.retry_datagram(1, os.urandom(16)),
        wire.refused_datagram("busy", "go away", 1.0),
        record[:-1],  # a real record cut short
        record[:13] + bytes(len(record) - 13),
    ]
    for pn in (0, 1, alice.link.highest_pn + 1, 2**32, 2**64 - 1):
        for size in (16, 100, 1187):
            forgeries.append(wire.data_header(alice.sid, pn) + rng.randbytes(size))
    for forged in forgeries:
        for address in (ALICE, ELSEWHERE):
            driver.now += 0.1
            assert driver.receive(forged, address) == []
    assert session_state(engine, alice.sid) == before
    assert engine.stats["migrations"] == 0
    assert engine.stats["bad_records"] == 2 * (len(forgeries) - 5)
    bob.settle()
    assert bob.of_type(wire.Leave) == []
    alice.send(wire.Say(text="untouched", cid="u1"))
    assert [m.text for m in bob.poll() if isinstance(m, wire.Msg)] == ["untouched"]


# --- address changes: a session follows its keys, behind a path check -----------------------------


def test_the_right_keys_from_another_address_move_the_session_behind_a_challenge() -> None:
    driver, alice, bob = two_peers()
    engine = driver.engine
    # Bob talks while Alice's NAT rebinding is under way: a lot is queued for her.
    for n in range(30):
        bob.link.send(wire.encode(wire.Say(text=f"{n} {LONG}", cid=f"b{n}")))
    bob.flush()
    driver.sent.clear()

    alice.address = ELSEWHERE
    alice.link.send(wire.encode(wire.Ping()))
    (datagram,) = alice.link.datagrams_to_send(driver.now)
    replies = driver.receive(datagram, ELSEWHERE)
    session = engine.sessions[alice.sid]
    assert session.address == ELSEWHERE
    assert engine.stats["migrations"] == 1
    assert not session.validated and session.challenge is not None
    # Until the challenge is answered, the new address gets at most 3x what it sent.
    driver.advance(15.0)
    assert 0 < driver.sent_to[ELSEWHERE] <= 3 * driver.received_from[ELSEWHERE]
    assert all(to != ALICE for _data, to in driver.sent)
    # Alice answers the challenge: the path is proven and everything arrives, once, in order.
    alice.take(replies)
    alice.settle(40)
    assert session.validated
    texts = [m.text for m in alice.of_type(wire.Msg) if not m.history]
    assert texts == [f"{n} {LONG}" for n in range(30)]


def test_an_older_record_from_another_address_does_not_move_the_session() -> None:
    driver, alice, _bob = two_peers()
    engine = driver.engine
    alice.link.send(wire.encode(wire.Ping()))
    (old,) = alice.link.datagrams_to_send(driver.now)
    alice.send()  # a newer record arrives first, from the usual address
    driver.receive(old, ELSEWHERE)  # the old one, late, from elsewhere
    assert engine.sessions[alice.sid].address == ALICE
    assert engine.stats["migrations"] == 0
    driver.receive(old, ELSEWHERE)  # and again: now a replay
    assert engine.stats["bad_records"] == 1


def _pings_from_elsewhere(driver: EngineDriver, alice: Peer) -> None:
    """Alice's next record, a ping, comes from `ELSEWHERE`: the daemon moves her session
    there and challenges the new address; its answers are left unread (a challenge lost,
    unless the test reads it from `driver.sent`)."""
    alice.address = ELSEWHERE
    alice.link.send(wire.encode(wire.Ping()))
    for datagram in alice.link.datagrams_to_send(driver.now):
        driver.receive(datagram, ELSEWHERE)


def test_a_wrong_challenge_response_does_not_prove_the_new_address() -> None:
    driver, alice, _bob = two_peers()
    engine = driver.engine
    _pings_from_elsewhere(driver, alice)  # what the daemon answers there is not read
    challenge = engine.sessions[alice.sid].challenge
    assert challenge is not None
    for wrong in ("not-the-challenge", challenge[:-1], challenge + "x", challenge.upper()):
        alice.link.extra = wire.response_field(wrong)
        alice.link.send(wire.encode(wire.Ping()))
        for datagram in alice.link.datagrams_to_send(driver.now):
            driver.receive(datagram, ELSEWHERE)
        assert not engine.sessions[alice.sid].validated
    alice.link.extra = wire.response_field(challenge)
    alice.send()
    assert engine.sessions[alice.sid].validated


def test_a_lost_challenge_is_sent_again_until_the_new_address_answers() -> None:
    driver, alice, bob = two_peers()
    session = driver.engine.sessions[alice.sid]
    _pings_from_elsewhere(driver, alice)  # what the daemon answers there is not read
    bob.send(wire.Say(text=LONG, cid="long"))  # a frame bigger than the budget is queued
    driver.now += 1.0
    alice.send()  # one small keepalive: the challenge must come back, ahead of the frame
    driver.now += 1.0
    alice.send()  # which carries the response
    assert session.validated
    alice.settle()
    assert [m.text for m in alice.of_type(wire.Msg) if not m.history] == [LONG]


def test_an_unproven_path_with_too_little_budget_does_not_spin_the_timers() -> None:
    driver, alice, bob = two_peers()
    engine = driver.engine
    _pings_from_elsewhere(driver, alice)  # what the daemon answers there is not read
    bob.send(wire.Say(text=LONG, cid="long"))  # too big for what the new path has earned
    alice.link.send(wire.encode(wire.Ping()))  # an ack is now owed to the new address
    for datagram in alice.link.datagrams_to_send(driver.now):
        driver.receive(datagram, ELSEWHERE)
    fired = 0
    end = driver.now + 5.0
    while (deadline := engine.next_timer()) is not None and deadline <= end and fired < 1000:
        fired += 1
        driver.now = max(driver.now, deadline)
        engine.handle_timers(driver.now, driver.wall)
        driver.pump()
    # Bob's own timers fire a few times; a spinning timer would fire without end.
    assert fired < 50
    assert driver.sent_to[ELSEWHERE] <= 3 * driver.received_from[ELSEWHERE]


def test_an_unproven_path_with_its_budget_spent_sets_its_probe_timer_aside() -> None:
    """Frames in flight, then the client moves and the new address has earned nothing
    more: the probe timeout is set aside until the idle check (no probe could leave)."""
    driver, alice, bob = two_peers()
    engine = driver.engine
    session = engine.sessions[alice.sid]
    link = session.link
    bob.send(wire.Say(text="in flight", cid="f1"))  # to alice's old address: unacknowledged
    driver.inbox.pop(ALICE, None)
    _pings_from_elsewhere(driver, alice)  # what the daemon answers there is not read
    assert not session.validated and link.next_timer() is not None
    session.bytes_out = engine.config.amplification_factor * session.bytes_in  # all spent
    engine.transport.touch(session)
    driver.pump()
    assert session.timer_at == session.idle_check_at
    probes = link.probes_sent
    while (deadline := engine.next_timer()) is not None and deadline < session.idle_check_at:
        driver.now = deadline
        engine.handle_timers(driver.now, driver.wall)
        driver.pump()
    assert link.probes_sent == probes  # none counted that could not be sent


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["first_flight", "forged", "unknown_index", "garbage", "migrate"]),
            st.integers(0, 3),
            st.integers(0, 2**32),
        ),
        max_size=40,
    )
)
def test_no_unproven_address_ever_gets_more_than_three_times_its_bytes(
    steps: list[tuple[str, int, int]],
) -> None:
    driver, alice, bob = two_peers()
    for n in range(10):  # something for Alice's session to send wherever it goes
        bob.link.send(wire.encode(wire.Say(text=f"{n} {LONG}", cid=f"b{n}")))
    bob.flush()
    kinds = first_flight_kinds(driver.server_key)
    addresses: list[Address] = [("203.0.113.1", port) for port in range(4)]
    for action, which, seed in steps:
        rng = random.Random(seed)
        address = addresses[which]
        if action == "first_flight":
            driver.receive(kinds[rng.choice(list(kinds))](rng), address)
        elif action == "forged":
            driver.receive(wire.data_header(alice.sid, seed) + rng.randbytes(50), address)
        elif action == "unknown_index":
            driver.receive(wire.data_header(seed % 999 + 1, 1) + rng.randbytes(20), address)
        elif action == "garbage":
            driver.receive(rng.randbytes(rng.randrange(1, 80)), address)
        else:  # Alice's session moves to this address; nobody there answers the challenge
            alice.link.send(wire.encode(wire.Ping()))
            for datagram in alice.link.datagrams_to_send(driver.now):
                driver.receive(datagram, address)
        driver.advance(0.3)
        for each in addresses:
            assert driver.sent_to[each] <= 3 * driver.received_from[each]


# --- a live daemon ------------------------------------------------------------------------------


async def test_a_live_daemon_answers_a_spoofed_flood_with_fewer_bytes_and_lets_people_in(
    tmp_path: Path,
) -> None:
    config = ServerConfig(unproven_before_retry=8)
    rng = random.Random(5)
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            (host, port), engine = await start_daemon(nursery, tmp_path / "chat.db", config)
            await register(host, port, "alice", PASSWORD)
            kinds = first_flight_kinds(engine.keys.public)
            del kinds["random"]  # it may or may not be answered; the rest are known
            sockets = [await bound_socket(spoofed_host(n)) for n in range(40)]
            sent = [0] * len(sockets)
            expected = [0] * len(sockets)
            for round_ in range(6):
                for n, sock in enumerate(sockets):
                    kind = list(kinds)[(n + round_) % len(kinds)]
                    sent[n] += await sock.sendto(kinds[kind](rng), (host, port))
                    expected[n] += kind not in SILENT_KINDS
            # Every answered kind gets exactly one answer: wait for all of them.
            received = [0] * len(sockets)
            for n, sock in enumerate(sockets):
                for _ in range(expected[n]):
                    received[n] += len(await sock.recv(2048))
                sock.close()
            assert all(0 < got <= given for got, given in zip(received, sent, strict=True))
            assert engine.stats["retries_sent"] > 0
            assert engine.transport.unproven == len(engine.sessions) == 8
            # A person arrives meanwhile: the RETRY costs them one round trip, no more.
            async with connect(host, port, "alice", PASSWORD, config=ClientConfig()) as chat:
                message = await chat.say("still here")
            assert message.text == "still here"
            nursery.cancel_scope.cancel()


def test_spoofed_inits_from_a_victims_address_do_not_fill_its_cap() -> None:
    driver = EngineDriver(ServerConfig(max_sessions_per_address=2))
    driver.add_account("victim", PASSWORD)
    victim_ip = "10.66.0.1"
    answers = []
    for port in range(40):  # half-open channels from the victim's IP, never proven
        init = initiate(driver.server_key, 7000 + port)
        (answer,) = driver.receive(init.datagram(), (victim_ip, 1000 + port))
        answers.append(answer[0])
    unproven = driver.engine.config.unproven_per_address
    assert answers == [wire.RESPONSE] * unproven + [wire.RETRY] * (40 - unproven)
    victim = Peer(driver, "victim", PASSWORD, (victim_ip, 5000))
    assert victim.connection.connected


def test_inits_that_do_not_decrypt_soon_cost_a_cookie_first() -> None:
    driver = EngineDriver()
    stranger = bytes(range(32))  # a key that is not the daemon's: each INIT costs a DH
    answers: Counter[str] = Counter()
    for n in range(200):
        init = initiate(stranger, 9000 + n)
        for answer in driver.receive(init.datagram(), (f"10.67.{n // 250}.{n % 250}", 1)):
            answers[kind_of(answer)] += 1
    assert driver.engine.stats["bad_handshakes"] <= 70  # then RETRY: no DH until a cookie
    assert answers["RETRY"] >= 130
    good = initiate(driver.server_key, 1)
    (answer,) = driver.receive(good.datagram(), ("10.68.0.1", 1))
    assert answer[0] == wire.RETRY  # for a while, everyone shows a cookie first


def test_a_replayed_init_opens_nothing() -> None:
    driver = EngineDriver()
    driver.add_account("alice", PASSWORD)
    alice = Peer(driver, "alice", PASSWORD, ("10.69.0.1", 1))
    assert alice.connection.connected
    init = initiate(driver.server_key, 4242)
    first = driver.receive(init.datagram(), ("10.69.0.2", 1))
    assert first and first[0][0] == wire.RESPONSE
    sessions = len(driver.engine.sessions)
    for address in (("10.69.0.2", 1), ("10.69.0.3", 1), ("10.69.0.2", 2)):
        replies = driver.receive(init.datagram(), address)
        if address == ("10.69.0.2", 1):
            assert replies == first  # the same RESPONSE again: it may have been lost
        else:
            assert replies == []  # a replay from elsewhere: dropped
    assert len(driver.engine.sessions) == sessions
    assert driver.engine.stats["replayed_inits"] == 2


def test_per_address_caps_count_an_ipv6_address_by_its_64() -> None:
    driver = EngineDriver(ServerConfig(max_sessions_per_address=2))
    driver.add_account("six", PASSWORD)
    peers = [Peer(driver, "six", PASSWORD, (f"2001:db8:0:1::{n}", 1, 0, 0)) for n in (1, 2)]
    assert all(peer.connection.connected for peer in peers)
    third = Peer(driver, "six", PASSWORD, ("2001:db8:0:1::ffff", 1, 0, 0))
    assert third.connection.failure is not None
    assert third.connection.failure.code == "too_many_sessions"
    elsewhere = Peer(driver, "six", PASSWORD, ("2001:db8:0:2::1", 1, 0, 0))
    assert elsewhere.connection.connected


def test_one_address_holds_few_half_open_channels_and_a_spoofer_cannot_use_them_up() -> None:
    config = ServerConfig(max_sessions_per_address=3, unproven_per_address=2)
    driver = EngineDriver(config)
    driver.add_account("victim", PASSWORD)
    attacker_ip = "10.66.1.1"
    answers: list[int] = []
    for port in range(10):  # a real attacker: it receives, and echoes every cookie
        init = initiate(driver.server_key, 8000 + port)
        (answer,) = driver.receive(init.datagram(), (attacker_ip, port))
        if answer[0] == wire.RETRY:
            retry = wire.parse_datagram_untrusted(answer)
            assert isinstance(retry, wire.Retry)
            init.cookie = retry.cookie
            (answer,) = driver.receive(init.datagram(), (attacker_ip, port))
        answers.append(answer[0])
    # Two without a cookie, three more with one (counted at once), then refused.
    assert answers[:5] == [wire.RESPONSE] * 5
    assert set(answers[5:]) == {wire.REFUSED}
    # Spoofed INITs from the victim's address use up its cookie-free allowance only:
    victim_ip = "10.66.2.1"
    for port in range(20):
        init = initiate(driver.server_key, 9000 + port)
        driver.receive(init.datagram(), (victim_ip, 1000 + port))
    victim = Peer(driver, "victim", PASSWORD, (victim_ip, 5000))  # it echoes the cookie
    assert victim.connection.connected


def test_a_channel_whose_cookie_proved_its_address_leaves_those_waiting_counted() -> None:
    # Counted against its address's cap at once, it never was one of the channels that
    # wait for a first record: when its own comes, it must not make room for another
    # `INIT` without a cookie.
    driver = EngineDriver(ServerConfig(unproven_per_address=2))
    driver.add_account("victim", PASSWORD)
    ip = "10.66.3.1"
    for port in range(2):  # spoofed, never answered: the address's cookie-free allowance
        driver.receive(initiate(driver.server_key, 9100 + port).datagram(), (ip, 1000 + port))
    transport = driver.engine.transport
    assert transport.waiting_from((ip, 1)) == 2
    victim = Peer(driver, "victim", PASSWORD, (ip, 5000))  # it echoes the cookie
    assert victim.connection.connected
    assert transport.waiting_from((ip, 1)) == 2
    (answer,) = driver.receive(initiate(driver.server_key, 9200).datagram(), (ip, 2000))
    assert answer[0] == wire.RETRY


def test_a_lost_challenge_comes_back_for_a_bare_acknowledgement_too() -> None:
    driver, alice, _bob = two_peers()
    session = driver.engine.sessions[alice.sid]
    _pings_from_elsewhere(driver, alice)  # what the daemon answers there is not read
    driver.advance(0.5)
    driver.inbox.pop(ELSEWHERE, None)  # the challenge is lost on its way
    assert session.challenge is not None and not session.link.extra  # it was sent
    # A record from the new address with no frame in it: an acknowledgement, nothing to
    # answer but the challenge, which must come again.
    channel = alice.connection._channel
    assert channel is not None
    alice.link._pn += 1
    replies = driver.receive(channel.seal(alice.link._pn, b'{"ack":0}'), ELSEWHERE)
    assert replies
    alice.take(replies)
    alice.send()  # with the response
    assert session.validated


def test_channels_opened_together_from_one_address_are_held_to_its_cap_as_they_prove_it() -> None:
    # Neither is counted until its first record; the one whose record comes second finds
    # the address full, and is ended.
    driver = EngineDriver(ServerConfig(max_sessions_per_address=1))
    first = Peer(driver, None, address=("10.66.4.1", 1))  # its handshake done, no record yet
    second = Peer(driver, None, address=("10.66.4.1", 2))
    first.send()
    second.send()
    second.settle()
    assert first.sid in driver.engine.sessions
    assert second.sid not in driver.engine.sessions
    assert driver.engine.stats["refused_when_proven"] == 1
    assert isinstance(second.connection.failure, TooManySessions)
