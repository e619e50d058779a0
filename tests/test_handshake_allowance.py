"""How many handshakes one address may start: counted before the Diffie-Hellman each costs.

Driven engine, explicit time. Past its allowance an address is refused `busy` with
`retry_after`, at the cost of a small answer and no key exchange; a client waits the
refusal out and sends its `INIT` again. The allowance is spent by key exchanges that open
a channel, after the cookie check: `INIT`s spoofed from an address spend at most the few
half-open channels its cookie rule lets them open, and those that do not decrypt none.
"""

from __future__ import annotations

from collections import Counter

import pytest

from trio_chat import wire
from trio_chat.engine import Address, ServerConfig
from trio_chat.secure import DaemonKeys, initiate
from trio_chat.testing.attacks import kind_of
from trio_chat.testing.driver import EngineDriver, Peer

ATTACKER = "10.6.0.1"
ELSEWHERE = ("10.9.9.9", 5000)

# The other limits on first flights out of the way, so that only the allowance shows.
ROOMY = ServerConfig(
    handshake_rate=10.0,
    handshake_burst=20,
    unproven_per_address=1000,
    unproven_before_retry=1000,
    max_sessions_per_address=1000,
)


def init_from(driver: EngineDriver, address: Address) -> tuple[str, bytes]:
    """A fresh `INIT` from `address`: the kind of answer, and the answer."""
    initiation = initiate(driver.server_key, driver.new_client_index())
    (answer,) = driver.receive(initiation.datagram(), address)
    return kind_of(answer), answer


def test_an_address_past_its_allowance_is_told_to_wait_and_costs_no_key_exchange() -> None:
    driver = EngineDriver(ROOMY)
    stats = driver.engine.stats
    answers = Counter(init_from(driver, (ATTACKER, 1000 + n))[0] for n in range(20))
    assert answers == {"RESPONSE": 20}
    assert stats["handshakes"] == 20
    kind, answer = init_from(driver, (ATTACKER, 2000))
    assert kind == "REFUSED"
    refused = wire.parse_datagram_untrusted(answer)
    assert isinstance(refused, wire.Refused) and refused.code == "busy"
    assert refused.retry_after == pytest.approx(1 / ROOMY.handshake_rate, abs=0.002)
    assert len(answer) < wire.FIRST_FLIGHT_BYTES
    assert stats["handshakes"] == 20 and stats["handshakes_refused"] == 1
    # Another address is not held back at all.
    assert init_from(driver, ELSEWHERE)[0] == "RESPONSE"
    # The allowance grows back with time: ten a second.
    driver.advance(1.0)
    later = Counter(init_from(driver, (ATTACKER, 3000 + n))[0] for n in range(11))
    assert later == {"RESPONSE": 10, "REFUSED": 1}


def test_one_ipv6_network_shares_one_allowance_and_a_burst_of_1_is_one() -> None:
    """`serve --handshake-burst 1`: one key exchange, then the rate, for the whole /64 (a
    host holds all of it, and could rotate through it); the next /64 has its own."""
    driver = EngineDriver(
        ServerConfig(
            handshake_rate=2.0,
            handshake_burst=1,
            unproven_per_address=1000,
            unproven_before_retry=1000,
        )
    )
    assert init_from(driver, ("2001:db8:0:1::1", 1000, 0, 0))[0] == "RESPONSE"
    _kind, answer = init_from(driver, ("2001:db8:0:1::ffff", 1000, 0, 0))
    refused = wire.parse_datagram_untrusted(answer)
    assert isinstance(refused, wire.Refused) and refused.code == "busy"
    assert refused.retry_after == pytest.approx(0.5, abs=0.002)
    assert init_from(driver, ("2001:db8:0:2::1", 1000, 0, 0))[0] == "RESPONSE"
    driver.advance(0.5)
    assert init_from(driver, ("2001:db8:0:1::2", 1000, 0, 0))[0] == "RESPONSE"
    assert init_from(driver, ("2001:db8:0:1::3", 1000, 0, 0))[0] == "REFUSED"


def test_a_flood_of_inits_from_one_address_gets_its_allowance_of_key_exchanges() -> None:
    """An attacker sending 800 `INIT`s a second from one address, for 10 s."""
    driver = EngineDriver(ROOMY)
    stats = driver.engine.stats
    seconds, per_step, step = 10.0, 40, 0.05
    kinds: Counter[str] = Counter()
    port = 1000
    while driver.now < seconds:
        for _ in range(per_step):
            port += 1
            kinds[init_from(driver, (ATTACKER, port))[0]] += 1
        driver.advance(step)
    allowed = ROOMY.handshake_burst + ROOMY.handshake_rate * seconds
    assert allowed - 1 <= stats["handshakes"] == kinds["RESPONSE"] <= allowed
    assert kinds["REFUSED"] == stats["handshakes_refused"] == 8000 - kinds["RESPONSE"]


def test_spoofed_inits_spend_no_more_of_the_allowance_than_their_half_open_channels() -> None:
    driver = EngineDriver()  # the defaults
    driver.add_account("victim")
    victim: Address = ("10.0.0.7", 4000)
    config = driver.engine.config
    for second in range(3 * int(config.login_timeout)):
        # 200 a second from the victim's address; none echoes a cookie.
        answers = Counter(init_from(driver, (victim[0], 7000 + n))[0] for n in range(200))
        assert answers["RESPONSE"] <= config.unproven_per_address, second
        driver.advance(1.0)
    assert driver.engine.stats["handshakes_refused"] == 0
    peer = Peer(driver, "victim", address=victim)  # answers the RETRY, as a client does
    assert any(isinstance(frame, wire.Welcome) for frame in peer.frames)
    assert peer.session.account is not None and peer.session.account.name == "victim"


def refused_peer(driver: EngineDriver, port: int) -> Peer:
    """A client opening a channel from the attacker's address, once its allowance is spent."""
    while init_from(driver, (ATTACKER, 1))[0] == "RESPONSE":
        pass
    return Peer(driver, None, address=(ATTACKER, port))


def run_peer(
    driver: EngineDriver, peer: Peer, seconds: float, *, rival: bool = False, step: float = 0.05
) -> None:
    """Let time pass until the peer has a channel or has failed; with a `rival` at its
    address taking each handshake as soon as one is allowed."""
    end = driver.now + seconds
    while driver.now < end and peer.connection.channel is None and peer.connection.failure is None:
        driver.advance(step)
        if rival:
            init_from(driver, (ATTACKER, 1))
        peer.connection.handle_timer(driver.now)
        peer.flush()


def test_a_client_refused_for_a_moment_sends_its_init_again_and_gets_in() -> None:
    driver = EngineDriver(ROOMY)
    peer = refused_peer(driver, 5000)
    assert peer.connection.channel is None and peer.connection.failure is None  # waiting
    run_peer(driver, peer, 2.0)
    assert peer.connection.channel is not None
    assert driver.now < 0.5  # a handshake was allowed again within 0.1 s


def test_a_client_refused_until_its_timeout_is_told_the_daemon_is_busy() -> None:
    driver = EngineDriver(ROOMY)
    peer = refused_peer(driver, 5000)
    run_peer(driver, peer, 10.0, rival=True)
    failure = peer.connection.failure
    assert failure is not None and failure.code == "busy"  # not "unreachable"
    assert "Too many connections from your address" in str(failure)
    assert 4.9 <= driver.now <= 5.1  # the client's timeout


def test_a_refusal_longer_than_the_timeout_ends_the_handshake_at_once() -> None:
    driver = EngineDriver(
        ServerConfig(handshake_rate=0.01, handshake_burst=1, max_sessions_per_address=1000)
    )
    peer = refused_peer(driver, 5000)  # told to wait 100 s
    failure = peer.connection.failure
    assert failure is not None and failure.code == "busy"
    assert failure.retry_after == pytest.approx(100.0, abs=0.01)


def test_spoofed_inits_that_do_not_decrypt_spend_none_of_the_allowance() -> None:
    """Sent to another key from a victim's address, 50 a second (under the 64 a second of
    undecryptable `INIT`s that are answered before cookies are asked of everyone)."""
    driver = EngineDriver()  # the defaults
    driver.add_account("victim")
    victim: Address = ("10.0.0.7", 4000)
    other_key = DaemonKeys.generate().public

    def spoof() -> None:
        bad = initiate(other_key, driver.new_client_index()).datagram()
        assert kind_of(driver.receive(bad, (victim[0], 7000))[0]) == "KEY"

    for _ in range(5 * 50):
        spoof()
        driver.advance(0.02)
    assert driver.engine.stats["bad_handshakes"] == 250
    peer = Peer(driver, "victim", address=victim, login=False)
    peer.connection.start(driver.now)
    peer.flush()
    while driver.now < 5.0 + 5.0 and peer.connection.channel is None:
        spoof()  # the spoofing goes on meanwhile
        driver.advance(0.02)
        peer.connection.handle_timer(driver.now)
        peer.flush()
    assert peer.connection.channel is not None, peer.connection.failure
    assert driver.engine.stats["handshakes_refused"] == 0


def test_an_address_at_its_channel_cap_is_told_so_and_spends_nothing() -> None:
    """The cap is the lasting reason: `too_many_sessions` (close one), not `busy` (wait);
    and the refusals leave the address's allowance as it was."""
    config = ServerConfig(handshake_rate=0.001, handshake_burst=8, max_sessions_per_address=2)
    driver = EngineDriver(config)

    def open_channel(port: int) -> str:
        peer = Peer(driver, None, address=(ATTACKER, port))  # a channel, no login
        failure = peer.connection.failure
        return "open" if peer.connection.channel is not None else failure.code if failure else ""

    # 4 half-open, then 2 that echo a cookie and count at once: the cap, 6 of the 8 spent.
    assert [open_channel(1000 + n) for n in range(8)] == ["open"] * 6 + ["too_many_sessions"] * 2
    assert driver.engine.stats["handshakes_refused"] == 0
    driver.advance(config.login_timeout + 1)  # channels not logged in are closed
    assert [open_channel(2000 + n) for n in range(3)] == ["open", "open", "busy"]


def test_an_init_sent_again_for_an_open_channel_is_answered_and_not_charged() -> None:
    """Its `RESPONSE` was lost: the same `INIT` again, with the allowance spent meanwhile."""
    driver = EngineDriver(ROOMY)
    first = initiate(driver.server_key, driver.new_client_index())
    (answer,) = driver.receive(first.datagram(), (ATTACKER, 1000))
    assert kind_of(answer) == "RESPONSE"
    while init_from(driver, (ATTACKER, 1))[0] == "RESPONSE":
        pass
    refused = driver.engine.stats["handshakes_refused"]
    (again,) = driver.receive(first.datagram(), (ATTACKER, 1000))
    assert again == answer  # the very same RESPONSE
    assert driver.engine.stats["handshakes_refused"] == refused


def test_a_client_whose_resent_init_goes_unanswered_is_told_the_daemon_is_unreachable() -> None:
    """A refusal waited out, then silence (the daemon went away): unreachable, not busy."""
    driver = EngineDriver(ROOMY)
    peer = refused_peer(driver, 5000)
    assert peer.connection.failure is None  # waiting the refusal out
    end = driver.now + 10.0
    while driver.now < end and peer.connection.failure is None:
        driver.advance(0.05)
        peer.connection.handle_timer(driver.now)
        peer.connection.datagrams_to_send(driver.now)  # sent, and lost
    failure = peer.connection.failure
    assert failure is not None and failure.code == "unreachable"


def test_inits_that_do_not_decrypt_but_echo_a_cookie_spend_the_allowance() -> None:
    # Sent from the address for sure (the cookie says so), each cost a key exchange: it is
    # charged to the address as one that opened a channel would be.
    config = ServerConfig(handshake_rate=1.0, handshake_burst=5, unproven_per_address=0)
    driver = EngineDriver(config)  # a cookie is asked of every `INIT`
    other_key = DaemonKeys.generate().public
    kinds = []
    for n in range(8):
        init = initiate(other_key, 6000 + n)
        (answer,) = driver.receive(init.datagram(), (ATTACKER, 1))
        retry = wire.parse_datagram_untrusted(answer)
        assert isinstance(retry, wire.Retry)
        init.cookie = retry.cookie
        (answer,) = driver.receive(init.datagram(), (ATTACKER, 1))
        kinds.append(kind_of(answer))
    assert kinds == ["KEY"] * 5 + ["REFUSED"] * 3
    assert driver.engine.stats["bad_handshakes"] == 5
