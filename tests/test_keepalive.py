"""Keepalives that adapt to the path, and a restart that tells clients at once.

A client pings every 15 s by default, to keep a NAT's mapping open. A client whose own
socket address is the one the daemon sees has no NAT to keep open: it may ping every
60 s, and the daemon waits three times that before it gives the session up. If what the
daemon sent meanwhile went unanswered until the client spoke again (a firewall forgot
the flow), or the client moves, the session goes back to 15 s. Since a listening client
would then learn of a crashed daemon a minute late, the daemon stores where each session's
client is, and after a crash sends each one a `RESET` as it starts.
"""

from __future__ import annotations

import functools
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import msgspec
import pytest
import trio

from trio_chat import (
    ClientConfig,
    ConnectionLost,
    Disconnected,
    History,
    Reconnected,
    connect,
    register,
    wire,
)
from trio_chat.client_protocol import KEEPALIVE_PATIENCE, ClientConnection
from trio_chat.client_protocol.keepalive import Keepalive
from trio_chat.engine import ServerConfig, ServerEngine
from trio_chat.engine.common import same_endpoint
from trio_chat.records import SessionClosed, SessionOpened, Snapshot
from trio_chat.server import Daemon, serve
from trio_chat.testing.daemon import DaemonProcess
from trio_chat.testing.driver import WALL, EngineDriver, Peer
from trio_chat.testing.fault_proxy import FaultProxy

ALICE = ("10.0.0.1", 40001)
BOB = ("10.0.0.2", 40002)
PASSWORD = "keepalive-password"


def logged_in(
    driver: EngineDriver,
    name: str,
    address: tuple[str, int],
    via: tuple[str, int] | None,
    config: ClientConfig | None = None,
) -> Peer:
    """A peer logged in from `address`, its socket reporting `via` as its own address."""
    driver.add_account(name, PASSWORD)
    peer = Peer(driver, name, PASSWORD, address, login=False, config=config)
    peer.connection.local_address = via
    peer.login()
    peer.settle()
    return peer


def live(driver: EngineDriver, peer: Peer, seconds: int) -> None:
    """Let `seconds` pass, the peer's client core doing what its timers ask."""
    for _ in range(seconds):
        peer.take(driver.advance(1.0, peer.address))
        peer.connection.handle_timer(driver.now)
        peer.flush()


def test_a_client_with_no_nat_on_the_way_may_ping_once_a_minute() -> None:
    driver = EngineDriver()
    alice = logged_in(driver, "alice", ALICE, via=ALICE)
    (welcome,) = alice.of_type(wire.Welcome)
    assert welcome.keepalive == 60.0
    assert alice.connection.keepalive == 60.0
    assert alice.session.direct and alice.session.idle_timeout == 180.0
    alice.connection.keepalive_lead = 0.0  # no earlier than it must
    pings = driver.engine.stats["pings"]
    live(driver, alice, 300)
    assert alice.sid in driver.engine.sessions
    assert 4 <= driver.engine.stats["pings"] - pings <= 5  # once a minute, not 20 times


def test_a_silent_direct_session_is_closed_after_three_minutes() -> None:
    driver = EngineDriver()
    alice = logged_in(driver, "alice", ALICE, via=ALICE)
    heard = alice.session.last_heard
    driver.advance(heard + 179.0 - driver.now)
    assert alice.sid in driver.engine.sessions
    driver.advance(2.0)
    assert alice.sid not in driver.engine.sessions


def test_a_client_behind_a_nat_keeps_the_default_15_s() -> None:
    driver = EngineDriver()
    # Its socket says 192.168.1.5:5000; the daemon sees the NAT's address.
    alice = logged_in(driver, "alice", ALICE, via=("192.168.1.5", 5000))
    (welcome,) = alice.of_type(wire.Welcome)
    assert welcome.keepalive is None
    assert alice.connection.keepalive == wire.KEEPALIVE == 15.0
    assert not alice.session.direct and alice.session.idle_timeout == 45.0
    alice.connection.keepalive_lead = 0.0
    pings = driver.engine.stats["pings"]
    live(driver, alice, 300)
    assert 19 <= driver.engine.stats["pings"] - pings <= 20
    # A client that does not say where it is gets the default too.
    bob = logged_in(driver, "bob", BOB, via=None)
    assert bob.of_type(wire.Welcome)[0].keepalive is None
    heard = bob.session.last_heard
    driver.advance(heard + 46.0 - driver.now)
    assert bob.sid not in driver.engine.sessions


def test_the_keepalive_is_the_connections_config_as_it_is_when_logging_in() -> None:
    # The interval the config sets is read at each login, as the config's other fields
    # are read when used: a config replaced before the login holds, `via` left out.
    driver = EngineDriver()
    driver.add_account("alice", PASSWORD)
    alice = Peer(driver, "alice", PASSWORD, ALICE, login=False)
    alice.connection.local_address = ALICE
    alice.connection.config = ClientConfig(keepalive=10.0)
    alice.login()
    alice.settle()
    (welcome,) = alice.of_type(wire.Welcome)
    assert welcome.keepalive is None and not alice.session.direct  # no `via` was sent
    assert alice.connection.keepalive == 10.0
    alice.connection.keepalive = 20.0  # a public attribute, as it always was
    assert alice.connection.pings.interval == 20.0


def test_a_daemon_with_a_short_idle_timeout_asks_for_keepalives_that_fit_it() -> None:
    # `serve --idle-timeout 9`: with the default 15 s pings every idle session would be
    # closed after 9 s and come back, again and again, each time a leave and a join.
    driver = EngineDriver(ServerConfig(idle_timeout=9.0))
    alice = logged_in(driver, "alice", ALICE, via=("192.168.1.5", 5000))
    (welcome,) = alice.of_type(wire.Welcome)
    assert welcome.keepalive == 3.0  # three pings in the idle timeout, as 15 s in 45 s
    assert alice.connection.keepalive == 3.0
    live(driver, alice, 120)
    assert alice.sid in driver.engine.sessions
    assert alice.of_type(wire.Bye) == []
    # A client on this host is not given the long keepalive either: it would be too long.
    bob = logged_in(driver, "bob", BOB, via=BOB)
    assert bob.of_type(wire.Welcome)[0].keepalive == 3.0
    assert not bob.session.direct


def test_a_longer_idle_timeout_holds_for_direct_sessions_too() -> None:
    # `serve --idle-timeout 600`: a session allowed the 60 s keepalive is not closed
    # after the 180 s meant to be longer than the default, but after the 600 s asked for.
    driver = EngineDriver(ServerConfig(idle_timeout=600.0))
    alice = logged_in(driver, "alice", ALICE, via=ALICE)
    assert alice.session.direct and alice.session.idle_timeout == 600.0
    heard = alice.session.last_heard
    driver.advance(heard + 590.0 - driver.now)
    assert alice.sid in driver.engine.sessions
    driver.advance(12.0)
    assert alice.sid not in driver.engine.sessions


def test_a_keepalive_set_by_the_client_gives_way_to_a_shorter_one_the_daemon_asks() -> None:
    # `chat --keepalive 10` (a firewall that forgets a flow after 30 s, say) against
    # `serve --idle-timeout 9`: pinging every 10 s, the session would be closed for
    # silence every 9 s and come back, each time a leave and a join for everyone.
    driver = EngineDriver(ServerConfig(idle_timeout=9.0))
    own = functools.partial(ClientConfig, reconnect=False, retry_rate_limited=False)
    alice = logged_in(driver, "alice", ALICE, via=None, config=own(keepalive=10.0))
    assert alice.connection.keepalive == 3.0
    live(driver, alice, 120)
    assert alice.sid in driver.engine.sessions
    assert alice.of_type(wire.Bye) == []
    # One set shorter than the daemon asks stays as it is.
    bob = logged_in(driver, "bob", BOB, via=None, config=own(keepalive=2.0))
    assert bob.connection.keepalive == 2.0


def test_a_keepalive_set_longer_than_the_daemon_allows_gives_way_to_its_allowance() -> None:
    # `chat --keepalive 60` (fewer pings, the help allowing up to 3600) against a daemon
    # that allows the protocol's 15 s: pinging every 60 s, the session was closed for
    # silence after 45 s and came back, a leave and a join for everyone each minute.
    driver = EngineDriver()
    own = functools.partial(ClientConfig, reconnect=False, retry_rate_limited=False)
    alice = logged_in(driver, "alice", ALICE, via=("192.168.1.5", 5000), config=own(keepalive=60.0))
    assert alice.of_type(wire.Welcome)[0].keepalive is None
    assert alice.connection.keepalive == wire.KEEPALIVE
    live(driver, alice, 200)
    assert alice.sid in driver.engine.sessions and not alice.connection.closed
    # With nothing on the way to translate addresses, the daemon is offered the path and
    # allows a minute: the 60 s asked for hold; 3600 s are held to that minute.
    bob = logged_in(driver, "bob", BOB, via=BOB, config=own(keepalive=3600.0))
    assert bob.session.direct and bob.connection.keepalive == 60.0
    live(driver, bob, 400)
    assert bob.sid in driver.engine.sessions and not bob.connection.closed


@pytest.mark.parametrize("idle_timeout", [3.0, 45.0])
def test_a_login_whose_password_check_waits_is_not_closed_as_silent(idle_timeout: float) -> None:
    # Under a burst of logins a check waits its turn; meanwhile the client, waiting for
    # the answer, has nothing to send. `serve --idle-timeout 3` closed such a session
    # once its 10 s to log in were up, and the client was never welcomed.
    driver = EngineDriver(ServerConfig(idle_timeout=idle_timeout))
    driver.add_account("alice", PASSWORD)
    driver.auto_hash = False
    alice = Peer(driver, "alice", PASSWORD, ALICE, login=False)
    alice.login()
    live(driver, alice, int(idle_timeout) + 12)
    assert len(driver.hashing) == 1  # still waiting its turn
    driver.finish_hashing()
    alice.settle()  # the welcome taken, and acknowledged, within a moment
    assert alice.of_type(wire.Welcome) and alice.sid in driver.engine.sessions
    assert alice.of_type(wire.Bye) == []
    live(driver, alice, 60)
    assert alice.sid in driver.engine.sessions


def test_the_daemon_can_turn_the_long_keepalive_off() -> None:
    driver = EngineDriver(ServerConfig(direct_keepalive=15.0))
    alice = logged_in(driver, "alice", ALICE, via=ALICE)
    assert alice.of_type(wire.Welcome)[0].keepalive is None
    assert alice.connection.keepalive == 15.0


def _way_in_closed_for_40_s() -> tuple[EngineDriver, Peer]:
    """Alice, reaching the daemon directly (a 60 s keepalive), and bob's message to her,
    dropped for 40 s by a firewall on her side that forgot her flow: the driver, and
    her."""
    driver = EngineDriver()
    alice = logged_in(driver, "alice", ALICE, via=ALICE, config=ClientConfig())
    bob = logged_in(driver, "bob", BOB, via=None)
    bob.send(wire.Say(text="are you there?", cid="b1"))
    bob.settle()
    for _ in range(40):
        driver.advance(1.0)
        driver.inbox.pop(ALICE, None)
    return driver, alice


def test_a_way_in_that_closed_during_the_silence_brings_the_default_back() -> None:
    driver, alice = _way_in_closed_for_40_s()
    assert alice.sid in driver.engine.sessions  # given up only after 80 s, not 20
    alice.send()  # her next ping opens the way again
    alice.settle()
    assert alice.of_type(wire.Keepalive) == [wire.Keepalive(every=15.0)]
    assert alice.connection.keepalive == 15.0
    assert not alice.session.direct and alice.session.idle_timeout == 45.0
    assert driver.engine.stats["keepalives_shortened"] == 1
    assert [m.text for m in alice.of_type(wire.Msg)] == ["are you there?"]  # not lost
    # Losses the link recovers from at once change nothing for bob, who is not direct,
    # and nothing more for alice.
    live(driver, alice, 30)
    assert driver.engine.stats["keepalives_shortened"] == 1
    # Coming back after a lost session, she does not ask for the long keepalive again.
    alice.connection.connection_refused(driver.now)
    alice.settle()
    assert alice.connection.connected
    assert [type(e) for e in alice.events][-2:] == [Reconnected, History]
    assert alice.of_type(wire.Welcome)[-1].keepalive is None
    assert not alice.session.direct and alice.connection.keepalive == 15.0


def test_a_session_that_moves_goes_back_to_the_default_keepalive() -> None:
    driver = EngineDriver()
    alice = logged_in(driver, "alice", ALICE, via=ALICE)
    alice.address = ("10.0.0.9", 50000)  # its new address may well be a NAT's
    alice.send()
    alice.settle()
    assert alice.session.address == ("10.0.0.9", 50000)
    assert alice.of_type(wire.Keepalive) == [wire.Keepalive(every=15.0)]
    assert alice.connection.keepalive == 15.0
    assert alice.session.idle_timeout == 45.0


def test_an_address_is_the_same_in_either_form() -> None:
    assert same_endpoint(("127.0.0.1", 5), ("127.0.0.1", 5))
    assert same_endpoint(("127.0.0.1", 5), ("::ffff:127.0.0.1", 5, 0, 0))
    assert same_endpoint(("fe80::1%eth0", 5), ("fe80::1", 5, 0, 2))
    assert not same_endpoint(("127.0.0.1", 5), ("127.0.0.1", 6))
    assert not same_endpoint(("192.168.1.5", 5), ("203.0.113.7", 5))
    assert not same_endpoint(("not an address", 5), ("127.0.0.1", 5))


# --- a restart after a crash ---------------------------------------------------------------


def test_where_each_session_is_goes_to_disk_and_is_forgotten_as_it_ends() -> None:
    driver = EngineDriver()
    alice = logged_in(driver, "alice", ALICE, via=ALICE)
    bob = logged_in(driver, "bob", BOB, via=None)
    opened = [op for op in driver.stored if isinstance(op, SessionOpened)]
    assert opened == [SessionOpened(alice.sid, *ALICE), SessionOpened(bob.sid, *BOB)]
    alice.address = ("10.0.0.9", 50000)  # a move is stored once the new address answers
    alice.send()
    alice.settle()
    assert [op for op in driver.stored if isinstance(op, SessionOpened)][-1] == SessionOpened(
        alice.sid, "10.0.0.9", 50000
    )
    bob.send(wire.Logout())
    bob.settle()
    driver.engine.shutdown(driver.now, driver.wall)
    driver.pump()
    closed = [op.sid for op in driver.stored if isinstance(op, SessionClosed)]
    assert sorted(closed) == sorted([alice.sid, bob.sid])


def test_a_daemon_restarted_after_a_crash_resets_the_sessions_it_had() -> None:
    driver = EngineDriver()
    alice = logged_in(driver, "alice", ALICE, via=ALICE)
    opened = [op for op in driver.stored if isinstance(op, SessionOpened)]
    # SIGKILL: the new engine starts from what is stored, with the same key.
    restarted = EngineDriver(
        snapshot=Snapshot(accounts=driver.stored_accounts(), next_account_id=2, sessions=opened),
        keys=driver.keys,
        first_sid=5000,
    )
    ((notice, to),) = restarted.engine.restart_notices()
    assert to == ALICE
    assert restarted.engine.restart_notices() == []  # sent once
    restarted.pump()
    assert restarted.stored == [SessionClosed(alice.sid)]  # and forgotten
    alice.take([notice])  # the token is the session's own: the client believes it
    assert alice.connection.link is None
    assert isinstance(alice.connection.failure, ConnectionLost)  # (it would log in again)
    forged = bytearray(notice)
    forged[-1] ^= 1
    other = logged_in(restarted, "bob", BOB, via=None)
    other.take([bytes(forged)])  # a forged one changes nothing (another index, too)
    assert other.connection.link is not None


def ping_at(connection: ClientConnection) -> float:
    """When the connection's next `ping` goes out."""
    link = connection.link
    return connection.pings.due(link.srtt if link is not None else None)


def ping_times(driver: EngineDriver, peers: list[Peer], until: float) -> dict[str, list[float]]:
    """Run the peers' timers exactly when they are due until `until`; when each pinged."""
    pinged: dict[str, list[float]] = {str(peer.name): [] for peer in peers}
    while True:
        due = min(t for peer in peers if (t := peer.connection.next_timer()) is not None)
        if due > until:
            return pinged
        driver.advance(max(due - driver.now, 0.0))
        for peer in peers:
            timer = peer.connection.next_timer()
            if timer is None or timer > driver.now:
                continue
            pings = driver.engine.stats["pings"]
            peer.connection.handle_timer(driver.now)
            peer.flush()
            if driver.engine.stats["pings"] > pings:
                pinged[str(peer.name)].append(driver.now)


def test_a_connection_that_sends_pings_only_an_interval_after_what_it_sent_last() -> None:
    driver = EngineDriver()
    alice = logged_in(driver, "alice", ALICE, via=None)
    alice.connection.keepalive_lead = 0.0
    driver.advance(40.0 - driver.now)
    alice.send(wire.Say(text="still here", cid="a1"))
    assert alice.connection.pings.last_sent == driver.now
    sent = driver.now
    assert sent + wire.KEEPALIVE - 1 < ping_at(alice.connection) <= sent + wire.KEEPALIVE


def test_keepalives_go_out_together_on_whole_seconds_of_the_daemons_clock() -> None:
    """Idle sessions ping on the same instants, so that the daemon reads their keepalives
    together: one wake-up of its event loop for many, not one each. The instants are the
    daemon's whole seconds, as its `welcome` told its time: clients whose own clocks
    disagree still ping together."""
    driver = EngineDriver()
    alice = logged_in(driver, "alice", ALICE, via=("192.168.1.5", 5000))
    bob = logged_in(driver, "bob", BOB, via=("192.168.1.6", 5000))
    peers = [alice, bob]
    for peer in peers:
        (welcome,) = peer.of_type(wire.Welcome)
        assert welcome.time is not None
        assert WALL <= welcome.time <= driver.wall  # the daemon's clock as it sent it
    # The daemon's clock is `now` + 1,700,000,000. alice last sent at 3.1, bob at 3.5:
    # the same second, at different fractions of it; their own clocks are off by a
    # quarter and by six tenths of a second.
    driver.advance(4.0 - driver.now)
    for peer, last_sent, skew in ((alice, 3.1, 0.25), (bob, 3.5, 0.6)):
        peer.connection.wall_offset = WALL + skew
        peer.connection.keepalive_lead = 0.0
        peer.connection.pings.last_sent = last_sent
    sent = {peer.name: peer.connection.pings.last_sent for peer in peers}
    pinged = ping_times(driver, peers, 200.0)
    for peer in peers:
        times = pinged[str(peer.name)]
        assert len(times) >= 12
        for t in times:  # on a whole second of the daemon's clock
            assert abs((t + WALL) - round(t + WALL)) < 1e-6
        # Never longer apart than the keepalive, and never much shorter.
        gaps = [b - a for a, b in zip([sent[peer.name], *times], times, strict=False)]
        assert all(wire.KEEPALIVE - 1 < gap <= wire.KEEPALIVE + 1e-9 for gap in gaps), gaps
    # Logged in 0.3 s apart, with clocks 0.35 s apart, they ping on the very same instants.
    assert pinged["alice"] == pinged["bob"]


def test_a_keepalive_leaves_a_round_trip_early_to_reach_the_daemon_on_its_second() -> None:
    """The `welcome` shows the daemon's clock late by its way here, and the ping takes
    its way there: leaving one smoothed round trip before the daemon's whole second
    (as this client reckons it), it arrives on it."""
    driver = EngineDriver()
    alice = logged_in(driver, "alice", ALICE, via=("192.168.1.5", 5000))
    connection, link = alice.connection, alice.link
    connection.keepalive_lead = 0.0
    connection.pings.last_sent = 3.5
    # A welcome that took 40 ms to arrive: the client reckons the daemon's clock 40 ms
    # behind; the round trip is 80 ms.
    connection.pings.daemon_offset = WALL - 0.04
    link._srtt = 0.08
    ping = ping_at(connection)
    assert ping == pytest.approx(18.0 - 0.04)  # leaves at the daemon's 17.96 ...
    assert ping + 0.04 == pytest.approx(18.0)  # ... and takes 40 ms: there on 18.000
    assert 18.5 - 15 < ping <= 18.5  # never later than the interval


def test_before_the_daemon_tells_its_time_keepalives_keep_this_machines_seconds() -> None:
    """A `welcome` without `time` (a daemon that does not send it): Unix time serves."""
    driver = EngineDriver()
    alice = logged_in(driver, "alice", ALICE, via=("192.168.1.5", 5000))
    connection = alice.connection
    welcome = msgspec.structs.replace(alice.of_type(wire.Welcome)[0], time=None)
    connection.pings.daemon_offset = None
    connection._on_welcome(welcome, driver.now)
    connection.wall_offset = WALL + 0.25
    connection.keepalive_lead = 0.0
    connection.pings.last_sent = 3.1
    assert ping_at(connection) == pytest.approx(17.75)  # Unix ...18.000


def test_sessions_set_in_step_by_a_message_spread_their_pings_over_seconds() -> None:
    """Every client acknowledges a message to the room at once, so a minute later all
    would ping on the same second; each one's lead spreads them, never past the interval."""
    driver = EngineDriver()
    peers = [
        logged_in(driver, f"user{n}", (f"10.0.1.{n}", 40000 + n), via=(f"10.0.1.{n}", 40000 + n))
        for n in range(4)
    ]
    driver.advance(10.0 - driver.now)
    for n, peer in enumerate(peers):
        peer.connection.keepalive_lead = n / 4
        peer.connection.pings.last_sent = 10.0  # all in step
    pinged = ping_times(driver, peers, 71.0)
    first = [times[0] for times in pinged.values()]
    assert sorted(first) == [59.0, 63.0, 67.0, 70.0]  # 11, 7, 3 and 0 s early, not one second
    assert all(56.0 <= t <= 70.0 for t in first), first  # at most 14 s early, never late
    # Each keeps its own second after that: one ping per minute, less its lead.
    assert all(times == [times[0]] for times in pinged.values())


def test_each_connection_draws_its_own_place_in_the_spread() -> None:
    leads = [Keepalive(None).lead for _ in range(50)]
    assert all(0.0 <= lead < 1.0 for lead in leads)
    assert len(set(leads)) > 40  # 50 draws of 65,536 places: hardly any the same


def test_a_lone_keepalive_waits_longer_before_it_is_sent_again() -> None:
    """Answering thousands of pings that came on the same second, a daemon reaches the
    last tens of milliseconds later: a lone ping is not sent again before
    `KEEPALIVE_PATIENCE` beyond the probe timeout; a request is probed for at once."""
    driver = EngineDriver()
    alice = logged_in(driver, "alice", ALICE, via=ALICE)
    connection, link = alice.connection, alice.link
    driver.now = ping_at(connection)
    connection.handle_timer(driver.now)
    assert len(connection.datagrams_to_send(driver.now)) == 1  # the ping; lost on the way
    sent, probes = driver.now, link.probes_sent
    connection.handle_timer(sent + link.pto + 0.1)
    assert link.probes_sent == probes  # not yet
    assert connection.next_timer() == pytest.approx(sent + link.pto + KEEPALIVE_PATIENCE)
    connection.handle_timer(sent + link.pto + KEEPALIVE_PATIENCE)
    assert link.probes_sent == probes + 1
    # A request is not kept waiting by the ping before it.
    driver.now = sent + 1.0
    alice.request(wire.Who())
    connection.datagrams_to_send(driver.now)  # lost as well
    timer = connection.next_timer()
    assert timer is not None and timer < driver.now + KEEPALIVE_PATIENCE


def test_a_keepalive_shorter_than_a_second_is_not_aligned() -> None:
    driver = EngineDriver()
    alice = Peer(driver, None, address=ALICE, config=ClientConfig(keepalive=0.5))
    alice.connection.keepalive_lead = 0.99
    alice.connection.pings.last_sent = 10.2
    # The whole second before 10.7 is 10, earlier than the last send: not aligned.
    assert ping_at(alice.connection) == 10.7
    alice.connection.pings.last_sent = 10.0
    assert ping_at(alice.connection) == 10.5


def test_a_new_channel_pings_as_the_config_says_until_its_welcome_and_counts_from_then() -> None:
    """What a daemon allowed is for its session: coming back, the login on the new channel
    (which may wait its turn) pings at the config's interval up to the protocol's,
    counted from the channel's opening, until a new `welcome` says otherwise."""
    pings = Keepalive(None)
    pings.welcomed(60.0, None, 5.0, None)  # a direct session
    assert pings.interval == 60.0
    pings.sent(10.0)
    pings.channel_opened(100.0, None)
    assert (pings.interval, pings.last_sent) == (wire.KEEPALIVE, 100.0)
    own = Keepalive(30.0)
    own.welcomed(3.0, None, 5.0, 30.0)  # `serve --idle-timeout 9`
    assert own.interval == 3.0
    own.channel_opened(100.0, 30.0)
    assert own.interval == wire.KEEPALIVE  # no more before a welcome allows it
    shorter = Keepalive(4.0)
    shorter.channel_opened(100.0, 4.0)
    assert shorter.interval == 4.0
    # The protocol's own interval, said outright, is as much as the daemon allows.
    own.welcomed(wire.KEEPALIVE, None, 101.0, 30.0)
    assert own.interval == wire.KEEPALIVE


# --- end to end ---------------------------------------------------------------------------


async def test_a_client_on_this_host_is_allowed_a_minute_and_one_behind_a_nat_is_not(
    tmp_path: Path,
) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            engines: list[ServerEngine] = []
            start = functools.partial(serve, on_ready=engines.append)
            host, port = await nursery.start(start, "127.0.0.1", 0, tmp_path / "chat.db")
            await register(host, port, "alice", PASSWORD)
            async with connect(host, port, "alice", PASSWORD) as chat:
                assert chat.connection.keepalive == 60.0
                # Its keepalive is due a round trip before a whole second of the daemon's
                # clock, as its welcome told it; on one machine that clock is Unix time.
                connection = chat.connection
                assert connection.pings.daemon_offset is not None
                assert abs(connection.pings.daemon_offset - connection.wall_offset) < 1.0
                link = connection.link
                assert link is not None
                daemon = ping_at(connection) + connection.pings.daemon_offset
                daemon += link.srtt or 0.0
                assert abs(daemon - round(daemon)) < 1e-6
                (session,) = engines[0].sessions.values()
                assert session.direct and session.idle_timeout == 180.0
            # The fault proxy sends from a socket of its own, as a NAT does.
            proxy = FaultProxy((host, port), seed=1)
            via_host, via_port = await nursery.start(proxy.run)
            async with connect(via_host, via_port, "alice", PASSWORD) as chat:
                assert chat.connection.keepalive == 15.0
                (session,) = engines[0].sessions.values()
                assert not session.direct and session.idle_timeout == 45.0
            nursery.cancel_scope.cancel()


async def test_a_listening_client_is_back_at_once_after_the_daemon_crashes(
    tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, tmp_path / "chat.db")
            host, port = await daemon.start()
            await register(host, port, "alice", PASSWORD)
            config = ClientConfig(reconnect_delay_max=0.5)
            async with connect(host, port, "alice", PASSWORD, config=config) as chat:
                assert chat.connection.keepalive == 60.0  # its next ping is a minute away
                events = chat.events()
                # Until the client has nothing left to send (its last acks): from then on
                # it is silent, and would hear nothing of the crash from the kernel.
                # (The core is plain state; no event to wait on.)
                while (link := chat.connection.link) is None or not link.idle:  # noqa: ASYNC110
                    await trio.sleep(0.01)
                await daemon.kill()  # no goodbye
                await daemon.start(port)
                with trio.fail_after(10):  # not a minute: the new daemon said so
                    seen: list[type] = []
                    async for event in events:
                        seen.append(type(event))
                        if isinstance(event, Reconnected):
                            break
                assert Disconnected in seen
            await daemon.stop()


class _FullBuffer:
    """A socket whose buffer is full at every other first try (as a busy NIC's can be)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.refused = 0
        self._tries = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def sendto(self, data: bytes, address: tuple[str, int]) -> int:
        self._tries += 1
        if self._tries % 3 == 1:
            self.refused += 1
            raise BlockingIOError
        return self.sock.sendto(data, address)


async def test_goodbyes_and_restart_notices_wait_for_room_rather_than_being_dropped() -> None:
    # Nothing sends them again (no link does), so each must go out while the buffer fills.
    with trio.fail_after(10), socket.socket(type=socket.SOCK_DGRAM) as real:
        receiver = trio.socket.socket(type=socket.SOCK_DGRAM)
        await receiver.bind(("127.0.0.1", 0))
        real.setblocking(False)
        daemon = SimpleNamespace(sock=_FullBuffer(real), send_errors=0)
        to = receiver.getsockname()
        sent = await Daemon.send_all(cast(Daemon, daemon), [(b"%d" % n, to) for n in range(60)])
        assert sent == 60 and daemon.sock.refused == 30 and daemon.send_errors == 0
        assert [await receiver.recv(16) for _ in range(60)] == [b"%d" % n for n in range(60)]


async def test_goodbyes_wait_for_room_while_the_daemon_is_being_stopped() -> None:
    """Stopping is a cancellation: the goodbyes still wait for room in a full buffer,
    not cut off at the first wait by the stop that asked for them."""
    with trio.fail_after(10), socket.socket(type=socket.SOCK_DGRAM) as real:
        receiver = trio.socket.socket(type=socket.SOCK_DGRAM)
        await receiver.bind(("127.0.0.1", 0))
        real.setblocking(False)
        to = receiver.getsockname()
        goodbyes = [(b"%d" % n, to) for n in range(6)]
        engine = SimpleNamespace(
            sessions={},
            shutdown=lambda now, wall: None,
            take_notes=list,
            take_effects=list,
            datagrams_to_send=lambda now, wall: goodbyes,
        )
        daemon = SimpleNamespace(engine=engine, sock=_FullBuffer(real), send_errors=0)
        daemon._start_effects = functools.partial(Daemon._start_effects, cast(Daemon, daemon))
        daemon.send_all = functools.partial(Daemon.send_all, cast(Daemon, daemon))
        with trio.CancelScope() as stopping:
            stopping.cancel()
            await Daemon.shutdown(cast(Daemon, daemon))
        assert daemon.sock.refused == 3
        assert [await receiver.recv(16) for _ in range(6)] == [data for data, _ in goodbyes]


def test_a_session_is_stored_at_its_address_only_once_that_address_is_proven() -> None:
    """The address a crashed daemon sends its `RESET` to is one that answered: a key
    holder who logs in from a forged address does not make the daemon send there."""
    victim = ("192.0.2.77", 4000)
    driver = EngineDriver()
    driver.add_account("alice", PASSWORD)
    alice = Peer(driver, "alice", PASSWORD, ALICE, login=False)
    alice.connection.start(driver.now)
    for data in alice.connection.datagrams_to_send(driver.now):  # the handshake
        alice.take(driver.receive(data, ALICE))
    for data in alice.connection.datagrams_to_send(driver.now):  # the login, forged
        driver.deliver(data, victim)
    assert alice.sid in driver.engine.sessions
    assert driver.engine.sessions[alice.sid].account is not None  # logged in
    opened = [op for op in driver.stored if isinstance(op, SessionOpened)]
    assert opened == []  # not at the victim's address, which never answered
    # Once an address answers the daemon's challenge, that is where the session is.
    alice.address = victim
    alice.poll()
    alice.settle()
    opened = [op for op in driver.stored if isinstance(op, SessionOpened)]
    assert opened == [SessionOpened(alice.sid, *victim)]


def ping_unheard(driver: EngineDriver, peer: Peer) -> None:
    """The peer pings; whatever the daemon sends it meanwhile is lost on the way."""
    peer.link.send(wire.encode(wire.Ping()))
    for data in peer.connection.datagrams_to_send(driver.now):
        driver.receive(data, peer.address)
    driver.inbox.pop(peer.address, None)


def test_two_seconds_unanswered_before_the_client_speaks_bring_the_default_back() -> None:
    # The daemon's frames were dropped on the way while its client was silent: less than
    # two seconds of that is a loss the link recovers from, two seconds or more a way in
    # that closes during the silence.
    driver = EngineDriver()
    alice = logged_in(driver, "alice", ALICE, via=ALICE)
    bob = logged_in(driver, "bob", BOB, via=None)
    alice.settle()  # bob's arrival, acknowledged: nothing in flight to her
    bob.send(wire.Say(text="are you there?", cid="b1"))
    sent = driver.now  # alice's copy is in flight from now
    driver.inbox.pop(ALICE, None)
    driver.advance(sent + 1.5 - driver.now)
    ping_unheard(driver, alice)
    assert alice.session.direct and driver.engine.stats["keepalives_shortened"] == 0
    driver.advance(sent + 3.0 - driver.now)
    ping_unheard(driver, alice)
    assert not alice.session.direct and alice.session.idle_timeout == 45.0
    assert driver.engine.stats["keepalives_shortened"] == 1


def test_an_idle_timeout_under_three_seconds_gets_the_shortest_keepalive_there_is() -> None:
    # A third of it would be under a second, which no client takes (`Interval`).
    driver = EngineDriver(ServerConfig(idle_timeout=2.0))
    alice = logged_in(driver, "alice", ALICE, via=None)
    (welcome,) = alice.of_type(wire.Welcome)
    assert welcome.keepalive == 1.0
    assert alice.connection.keepalive == 1.0


def moved_back_to_the_default(driver: EngineDriver, direct_for: int = 30) -> Peer:
    """Alice, direct for a while, moves: her session is held to the default keepalive."""
    alice = logged_in(driver, "alice", ALICE, via=ALICE)
    live(driver, alice, direct_for)
    alice.address = ("10.0.0.9", 50000)
    alice.send()
    alice.settle()
    assert not alice.session.direct and alice.session.validated
    return alice


# Moved after 60 s: its idle check, once due, was set again on a direct session's 180 s.
@pytest.mark.parametrize("direct_for", [30, 60])
def test_a_session_back_to_the_default_keepalive_is_closed_after_the_default_silence(
    direct_for: int,
) -> None:
    driver = EngineDriver()
    alice = moved_back_to_the_default(driver, direct_for)
    heard = alice.session.last_heard
    driver.advance(heard + 44.0 - driver.now)
    assert alice.sid in driver.engine.sessions
    driver.advance(2.0)
    assert alice.sid not in driver.engine.sessions  # 45 s of silence, not the 180 s


def test_a_session_back_to_the_default_keepalive_is_given_up_after_the_default_time() -> None:
    # What is sent to it goes unacknowledged, and its client keeps pinging: it is given up
    # after the link's usual 20 s, not the 80 s a direct session is allowed.
    driver = EngineDriver()
    alice = moved_back_to_the_default(driver)
    bob = logged_in(driver, "bob", BOB, via=None)
    bob.send(wire.Say(text="are you there?", cid="b1"))
    driver.inbox.pop(alice.address, None)
    for _second in range(30):
        driver.advance(1.0)
        if alice.sid not in driver.engine.sessions:
            break
        ping_unheard(driver, alice)
    assert alice.sid not in driver.engine.sessions


@pytest.mark.parametrize("idle_timeout", [45.0, 3.0])
def test_a_login_refused_after_its_check_waited_may_be_tried_again_on_its_channel(
    idle_timeout: float,
) -> None:
    # The check outlasted the channel's time to log in: the refusal still leaves the
    # client time to send the right password, not a second, whatever the idle timeout.
    driver = EngineDriver(ServerConfig(idle_timeout=idle_timeout))
    driver.add_account("alice", PASSWORD)
    driver.auto_hash = False
    alice = Peer(driver, None, address=ALICE)  # a channel, to send a login on by hand
    alice.send(wire.Login(name="alice", password="not the password"))
    live(driver, alice, 12)  # past its 10 s to log in, the check still waiting its turn
    driver.finish_hashing()
    alice.poll()
    assert [f.code for f in alice.of_type(wire.ErrorFrame)] == ["wrong_password"]
    driver.advance(9.0)  # its time to log in runs again from the refusal
    assert alice.sid in driver.engine.sessions
    driver.auto_hash = True
    alice.send(wire.Login(name="alice", password=PASSWORD))
    assert alice.of_type(wire.Welcome)


def test_a_way_in_that_opens_again_gives_the_link_a_round_trip_to_be_answered() -> None:
    # Bob's message to alice was dropped for 40 s by a firewall that forgot her flow:
    # her ping opens the way, and her session goes back to the 20 s give-up of the
    # default keepalive. Counted from bob's message, that was long past: the timer came
    # due at once and ended her session as unresponsive while the daemon's probe was on
    # its way to her, one round trip before her acknowledgement came.
    driver, alice = _way_in_closed_for_40_s()
    alice.link.send(wire.encode(wire.Ping()))
    for data in alice.connection.datagrams_to_send(driver.now):
        driver.deliver(data, ALICE)  # the daemon's answer is on its way for 50 ms
    driver.advance(0.05)
    assert alice.sid in driver.engine.sessions
    alice.poll()
    alice.settle()
    assert [m.text for m in alice.of_type(wire.Msg)] == ["are you there?"]
    assert not alice.session.direct and alice.link.queued == 0


def test_the_default_give_up_after_a_way_in_opens_again_counts_from_her_ping() -> None:
    # Nothing reaches her after her ping opened the way: given up 20 s after it, the
    # default keepalive's time, neither sooner nor later.
    driver, alice = _way_in_closed_for_40_s()
    alice.link.send(wire.encode(wire.Ping()))
    for data in alice.connection.datagrams_to_send(driver.now):
        driver.deliver(data, ALICE)
    spoke, session = driver.now, alice.session
    while alice.sid in driver.engine.sessions and driver.now < spoke + 30:
        driver.advance(0.5)
        driver.inbox.pop(ALICE, None)
    assert (driver.now - spoke, session.link.failure) == (20.0, "unresponsive")
    assert not session.direct
