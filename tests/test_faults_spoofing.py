"""Spoofed session datagrams, address changes and the anti-amplification rule.

The sans-I/O engine is driven by hand so that every byte in and out is counted exactly;
one test checks the same rule on a live daemon over real sockets.
"""

from __future__ import annotations

import functools
import random
import socket
from pathlib import Path

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_chat import wire
from trio_chat.engine import Address, ServerConfig, ServerEngine
from trio_chat.server import serve
from trio_chat.testing.driver import EngineDriver, Peer

ALICE = ("10.0.0.1", 4000)
BOB = ("10.0.0.2", 4000)
ELSEWHERE = ("10.0.0.66", 5555)
LONG = "ü" * 240  # 480 bytes of UTF-8: frames big enough to hit the byte budget


def two_peers(config: ServerConfig | None = None) -> tuple[EngineDriver, Peer, Peer]:
    driver = EngineDriver(config or ServerConfig(message_burst=1000))
    driver.add_account("alice", "alice-password")
    driver.add_account("bob", "bob-password")
    alice = Peer(driver, "alice", "alice-password", ALICE)
    bob = Peer(driver, "bob", "bob-password", BOB)
    alice.send()
    bob.send()
    alice.settle()
    bob.settle()
    return driver, alice, bob


def forged(peer: Peer, token: str | None, pn: int, frames: list[tuple[int, bytes]]) -> bytes:
    """A session datagram for `peer`'s session id, with the token given (or none)."""
    fields: dict[str, object] = {"v": 1, "t": "s", "sid": peer.sid, "pn": pn, "ack": 0}
    if token is not None:
        fields["token"] = token
    fields["frames"] = [[seq, wire.decode_client_frame_untrusted(f)] for seq, f in frames]
    return wire.encode(fields)


def session_state(engine: ServerEngine, sid: int) -> tuple[object, ...]:
    session = engine.sessions[sid]
    link = session.link
    return (
        session.address,
        session.validated,
        session.last_heard,
        link.highest_pn,
        link.received_up_to,
        link.queued,
        len(engine.sessions),
        tuple(engine.room.online()),
    )


def test_a_valid_session_id_with_a_wrong_or_missing_token_changes_nothing() -> None:
    driver, alice, bob = two_peers()
    engine = driver.engine
    before = session_state(engine, alice.sid)
    next_seq = alice.link.received_up_to  # unused by the forger; any numbers will do
    say = wire.encode(wire.Say(text="forged", cid="forged-1"))
    logout = wire.encode(wire.Logout())
    wrong_tokens: list[str | None] = [None, "", "x" * 22, bob.token, alice.token[:-1] + "?"]
    for address in (ALICE, ELSEWHERE):
        for token in wrong_tokens:
            for pn in (1, 10**6):
                datagram = forged(alice, token, pn, [(1, say), (2, logout), (next_seq + 3, say)])
                driver.now += 0.5
                assert driver.receive(datagram, address) == []
    assert engine.stats["bad_tokens"] == 2 * len(wrong_tokens) * 2
    assert session_state(engine, alice.sid) == before
    assert driver.stored_messages() == []
    assert engine.stats["migrations"] == 0
    # Nothing reached anyone: no forged message, no leave notice.
    bob.settle()
    assert bob.of_type(wire.Msg) == [] and bob.of_type(wire.Leave) == []


def test_the_right_token_from_another_address_migrates_the_session_behind_a_challenge() -> None:
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
    assert not session.validated
    challenged = [wire.decode_server_datagram_untrusted(r) for r in replies]
    assert [p.challenge is not None for p in challenged if isinstance(p, wire.Packet)] == [True]
    # Until the challenge is answered, the new address gets at most 3x what it sent.
    driver.advance(15.0)
    assert driver.sent_to[ELSEWHERE] <= 3 * driver.received_from[ELSEWHERE]
    assert all(to != ALICE for _data, to in driver.sent)
    # Alice answers the challenge: the path is proven and everything arrives, once, in order.
    alice.take(replies)
    alice.settle(40)
    assert session.validated
    texts = [m.text for m in alice.of_type(wire.Msg)]
    assert texts == [f"{n} {LONG}" for n in range(30)]


def test_an_older_datagram_from_another_address_does_not_move_the_session() -> None:
    driver, alice, _bob = two_peers()
    engine = driver.engine
    alice.link.send(wire.encode(wire.Ping()))
    (old,) = alice.link.datagrams_to_send(driver.now)
    alice.send()  # a newer datagram arrives first, from the usual address
    driver.receive(old, ELSEWHERE)  # the old one, replayed or late, from elsewhere
    assert engine.sessions[alice.sid].address == ALICE
    assert engine.stats["migrations"] == 0


def test_a_wrong_challenge_response_does_not_validate_the_new_address() -> None:
    driver, alice, _bob = two_peers()
    engine = driver.engine
    alice.address = ELSEWHERE
    alice.link.send(wire.encode(wire.Ping()))
    for datagram in alice.link.datagrams_to_send(driver.now):
        driver.receive(datagram, ELSEWHERE)
    alice.link.extra = wire.response_field("not-the-challenge")
    alice.link.send(wire.encode(wire.Ping()))
    for datagram in alice.link.datagrams_to_send(driver.now):
        driver.receive(datagram, ELSEWHERE)
    assert not engine.sessions[alice.sid].validated


def test_a_spoofed_login_sends_its_victim_at_most_three_times_the_login() -> None:
    driver = EngineDriver()
    driver.add_account("mallory", "mallory-password")
    driver.add_account("bob", "bob-password")
    bob = Peer(driver, "bob", "bob-password", BOB)
    for n in range(25):  # history that a new session is sent on login
        bob.send(wire.Say(text=f"{n} {LONG}", cid=f"h{n}"))
    bob.settle()
    victim = ("192.0.2.7", 9)
    login = wire.Login(rid="spoofed", name="mallory", password="mallory-password")
    driver.request(login, victim)  # the victim never answers: it did not ask
    session = next(s for s in driver.engine.sessions.values() if s.address == victim)
    assert session.link.queued > 20
    driver.advance(driver.engine.config.idle_timeout + 5)
    assert driver.sent_to[victim] <= 3 * driver.received_from[victim]
    assert session.sid not in driver.engine.sessions  # closed as silent


def test_garbage_and_requests_from_an_unproven_address_get_at_most_three_times_back() -> None:
    driver = EngineDriver(ServerConfig(register_burst=1000))
    driver.add_account("alice", "alice-password")
    rng = random.Random(4)
    attacker = ("198.51.100.9", 53)
    datagrams = [
        b"x",
        b"",
        b"{}",
        b"[1,2,3]",
        b'{"v":1}',
        b'{"v":2,"t":"login"}',
        b'{"v":1,"t":"s","sid":12345,"pn":1}',
        wire.encode(wire.Register(rid="r", name="!", password="short")),
        wire.encode(wire.Login(rid="l", name="nobody", password="whatever-password")),
        wire.encode(wire.Login(rid="l2", name="alice", password="wrong-password")),
        bytes(rng.randrange(256) for _ in range(40)),
    ]
    for step in range(600):
        data = datagrams[step % len(datagrams)] if step % 7 else bytes([rng.randrange(256)])
        driver.receive(data, attacker)
        driver.advance(0.01)
        assert driver.sent_to[attacker] <= 3 * driver.received_from[attacker], step
    assert driver.engine.stats["unsent_for_amplification"] > 0
    assert driver.sent_to[attacker] > 0  # replies do go out, within the budget


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["garbage", "login", "unknown_sid", "forged", "migrate"]),
            st.integers(0, 3),
            st.binary(max_size=60),
        ),
        max_size=40,
    )
)
def test_no_unproven_address_ever_gets_more_than_three_times_its_bytes(
    steps: list[tuple[str, int, bytes]],
) -> None:
    driver, alice, _bob = two_peers()
    addresses: list[Address] = [("203.0.113.1", port) for port in range(4)]
    proven: set[Address] = set()
    for action, which, blob in steps:
        address = addresses[which]
        if action == "garbage":
            driver.receive(blob, address)
        elif action == "login":
            request = wire.Login(rid=f"r{len(blob)}", name="alice", password="alice-password")
            driver.receive(wire.encode(request), address)
        elif action == "unknown_sid":
            packet = {"v": 1, "t": "s", "sid": 777 + len(blob), "pn": 1}
            driver.receive(wire.encode(packet), address)
        elif action == "forged":
            say = wire.encode(wire.Say(text=blob.hex() or "x", cid="c"))
            driver.receive(forged(alice, "nottoken", 10**6, [(1, say)]), address)
        else:  # Alice's session moves to this address; it never answers the challenge
            alice.link.send(wire.encode(wire.Ping()))
            for datagram in alice.link.datagrams_to_send(driver.now):
                driver.receive(datagram, address)
        driver.advance(0.3)
        for each in addresses:
            if each not in proven:
                assert driver.sent_to[each] <= 3 * driver.received_from[each]


def test_an_unproven_path_with_too_little_budget_does_not_spin_the_timers() -> None:
    driver, alice, bob = two_peers()
    engine = driver.engine
    alice.address = ELSEWHERE
    alice.link.send(wire.encode(wire.Ping()))
    for datagram in alice.link.datagrams_to_send(driver.now):
        driver.receive(datagram, ELSEWHERE)  # the challenge is lost on its way
    bob.send(wire.Say(text=LONG, cid="long"))  # too big for what the new path has earned
    alice.link.send(wire.encode(wire.Ping()))  # an ack is now owed to the new address
    for datagram in alice.link.datagrams_to_send(driver.now):
        driver.receive(datagram, ELSEWHERE)
    fired = 0
    end = driver.now + 5.0
    while (deadline := engine.next_timer()) is not None and deadline <= end and fired < 1000:
        fired += 1
        driver.now = max(driver.now, deadline)
        engine.handle_timers(driver.now, 0.0)
        driver.pump()
    # Bob's own timers fire a few times; a spinning timer would fire without end.
    assert fired < 50
    assert driver.sent_to[ELSEWHERE] <= 3 * driver.received_from[ELSEWHERE]


async def test_a_live_daemon_answers_an_unproven_address_with_at_most_three_times(
    tmp_path: Path,
) -> None:
    engines: list[ServerEngine] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            ready = functools.partial(serve, on_ready=engines.append)
            host, port = await nursery.start(ready, "127.0.0.1", 0, tmp_path / "chat.db")
            sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            await sock.bind(("127.0.0.1", 0))
            await sock.connect((host, port))
            sent = received = 0
            rng = random.Random(7)
            garbage = [b"x", b"{}", b"\xff\xfe", b'{"v":1,"t":"s","sid":5,"pn":1}']
            for n in range(300):
                data = garbage[n % len(garbage)] + bytes(rng.randrange(3))
                sent += await sock.send(data)
            # A request with a known answer marks the end: the daemon handles one
            # address's datagrams in order, so every earlier reply has been sent by then.
            login = wire.Login(rid="last", name="nobody", password="p" * 900)
            sent += await sock.send(wire.encode(login))
            while True:
                data = await sock.recv(4096)
                received += len(data)
                reply = wire.decode_server_datagram_untrusted(data)
                if getattr(reply, "rid", None) == "last":
                    break
            sock.close()
            nursery.cancel_scope.cancel()
    assert 0 < received <= 3 * sent
    (engine,) = engines
    assert engine.stats["unsent_for_amplification"] > 0


def test_a_lost_challenge_is_sent_again_until_the_new_address_answers() -> None:
    driver, alice, bob = two_peers()
    session = driver.engine.sessions[alice.sid]
    alice.address = ELSEWHERE
    alice.link.send(wire.encode(wire.Ping()))
    for datagram in alice.link.datagrams_to_send(driver.now):
        driver.receive(datagram, ELSEWHERE)  # the challenge is lost on its way
    bob.send(wire.Say(text=LONG, cid="long"))  # a frame bigger than the budget is queued
    driver.now += 1.0
    alice.send()  # one small keepalive: the challenge must come back, ahead of the frame
    driver.now += 1.0
    alice.send()  # which carries the response
    assert session.validated
    alice.settle()
    assert [m.text for m in alice.of_type(wire.Msg)] == [LONG]
