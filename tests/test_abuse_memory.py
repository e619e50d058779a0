"""Memory a client could pin in the daemon, and the caps that bound it: the receive
buffer, the send queue, the daemon's total, sessions per account, and a session moving
onto a crowded address. On the engine, in explicit time."""

from __future__ import annotations

import msgspec

from trio_chat import wire
from trio_chat.engine import Address, ServerConfig
from trio_chat.errors import TooManySessions
from trio_chat.reliability import Link, LinkConfig
from trio_chat.rules import TEXT_MAX_BYTES
from trio_chat.secure import initiate
from trio_chat.testing.driver import EngineDriver, Peer
from trio_chat.testing.links import plain_seal


def frame(seq: int, size: int) -> tuple[int, msgspec.Raw]:
    return seq, msgspec.Raw(wire.encode(wire.Say(text="x" * size, cid=f"c{seq}")))


def test_frames_held_out_of_order_are_capped_in_bytes_and_held_alone() -> None:
    link = Link(plain_seal, LinkConfig(receive_buffer_bytes=20_000))
    # Frame 1 never comes; 200 frames of about 1 KB each come after it.
    for seq in range(2, 202):
        assert link.receive(seq, 0, [], [frame(seq, 1000)], now=0.0) == []
    assert link._out_of_order_bytes <= 20_000
    held = list(link._out_of_order.values())
    assert 15 <= len(held) <= 20 and all(type(data) is bytes for data in held)
    # Frame 1 lets the held ones through; the dropped ones arrive again and follow.
    delivered = link.receive(300, 0, [], [frame(1, 1000)], now=1.0)
    assert [seq for seq, _raw in delivered] == list(range(1, 2 + len(held)))
    for seq in range(2 + len(held), 202):
        assert [s for s, _ in link.receive(400 + seq, 0, [], [frame(seq, 1000)], 2.0)] == [seq]
    assert link.received_up_to == 201 and link._out_of_order_bytes == 0


def test_a_session_that_holds_back_one_frame_pins_no_more_than_the_cap() -> None:
    config = ServerConfig(link=LinkConfig(receive_buffer_bytes=30_000))
    driver = EngineDriver(config)
    driver.add_account("mallory", "mallory-password")
    mallory = Peer(driver, "mallory", "mallory-password", ("10.0.0.66", 1))
    channel = mallory.connection.channel
    assert channel is not None
    # Frames ahead of the link's next one, 500 bytes each, and never the next one.
    start = mallory.link._next_seq + 1
    for n in range(300):
        say = wire.encode(wire.Say(text="y" * 450, cid=f"m{n}"))
        body = wire.numbered_frame(start + n, say)
        payload = wire.close_payload(wire.payload_head(0, 0, []), body)
        driver.receive(channel.seal(10_000 + n, payload), mallory.address)
    held = mallory.session.link._out_of_order_bytes
    assert 0 < held <= 30_000


def test_a_reader_that_never_acknowledges_is_closed_at_its_queue_in_bytes() -> None:
    link = LinkConfig(max_queue_bytes=60_000, give_up_after=1000.0)
    config = ServerConfig(link=link, message_burst=10_000, idle_timeout=1000.0)
    driver = EngineDriver(config)
    for name in ("talker", "sponge"):
        driver.add_account(name, f"{name}-password")
    talker = Peer(driver, "talker", "talker-password", ("10.0.0.1", 1))
    sponge = Peer(driver, "sponge", "sponge-password", ("10.0.0.2", 1))
    sponge_sid = sponge.sid
    sent = 0
    while sponge_sid in driver.engine.sessions and sent < 200:
        talker.send(wire.Say(text="z" * 450, cid=f"t{sent}"))
        talker.settle(1)
        sent += 1
    assert sponge_sid not in driver.engine.sessions
    assert 60_000 / 600 <= sent <= 60_000 / 450  # about 60 KB of frames: far from 4096
    leaves = talker.of_type(wire.Leave)
    assert [(leave.name, leave.reason) for leave in leaves] == [("sponge", "overloaded")]


def test_past_the_daemons_total_the_slowest_readers_are_closed_first() -> None:
    link = LinkConfig(give_up_after=1000.0)
    config = ServerConfig(
        link=link, message_burst=10_000, idle_timeout=1000.0, max_queued_bytes=100_000
    )
    driver = EngineDriver(config)
    names = ("talker", "slow1", "slow2", "slow3")
    for name in names:
        driver.add_account(name, f"{name}-password")
    peers = {
        name: Peer(driver, name, f"{name}-password", (f"10.0.1.{n}", 1))
        for n, name in enumerate(names)
    }
    talker = peers["talker"]
    # slow1 never acknowledges; slow2 stops halfway; slow3 keeps up.
    for n in range(150):
        talker.send(wire.Say(text="w" * 450, cid=f"w{n}"))
        talker.settle(1)
        if n < 50:
            peers["slow2"].flush(ack=True)
        peers["slow3"].flush(ack=True)
    driver.advance(1.5)
    talker.settle()
    assert peers["slow1"].sid not in driver.engine.sessions
    assert peers["slow3"].sid in driver.engine.sessions
    total = sum(s.link.queued_bytes for s in driver.engine.sessions.values())
    assert total <= 100_000
    assert driver.engine.stats["memory_closed"] >= 1
    closed = [(leave.name, leave.reason) for leave in talker.of_type(wire.Leave)]
    assert closed[0] == ("slow1", "overloaded")


def test_an_account_holds_at_most_its_cap_of_sessions() -> None:
    driver = EngineDriver(ServerConfig(max_sessions_per_account=3))
    driver.add_account("alice", "alice-password")
    first = [Peer(driver, "alice", "alice-password", (f"10.0.2.{n}", 1)) for n in range(3)]
    assert all(peer.connection.connected for peer in first)
    fourth = Peer(driver, "alice", "alice-password", ("10.0.2.9", 1))
    assert isinstance(fourth.connection.failure, TooManySessions)
    assert fourth.connection.failure.message == (
        "That account has too many sessions open; close one and try again."
    )
    # A ticket does not get around it either.
    resumed = Peer(driver, "alice", "", ("10.0.2.10", 1), login=False)
    resumed.connection.ticket = first[0].connection.ticket
    resumed.login()
    assert isinstance(resumed.connection.failure, TooManySessions)
    first[0].send(wire.Logout())
    assert Peer(driver, "alice", "alice-password", ("10.0.2.11", 1)).connection.connected


def test_a_session_moving_onto_a_full_address_is_ended_not_counted_in() -> None:
    driver = EngineDriver(ServerConfig(max_sessions_per_address=2))
    for name in ("resident1", "resident2", "mover"):
        driver.add_account(name, f"{name}-password")
    crowded = [
        Peer(driver, name, f"{name}-password", ("10.0.3.1", port))
        for port, name in enumerate(("resident1", "resident2"))
    ]
    mover = Peer(driver, "mover", "mover-password", ("10.0.3.2", 1))
    sid = mover.sid
    mover.address = ("10.0.3.1", 99)  # its NAT (or an attacker) puts it on the full IP
    mover.send()
    mover.settle()
    assert sid not in driver.engine.sessions
    assert driver.engine.stats["migrations_refused"] == 1
    assert driver.engine.stats["migrations"] == 0  # it never moved
    # Its goodbye went where it was last proven to be: a client still there (the move
    # was an attacker's) is told why at once, rather than left to time out.
    mover.address = ("10.0.3.2", 1)
    mover.settle()
    assert isinstance(mover.connection.failure, TooManySessions)
    assert all(peer.sid in driver.engine.sessions for peer in crowded)
    assert crowded[0].session.address[0] == "10.0.3.1"


def _gappy_and_other() -> tuple[EngineDriver, Peer, Peer]:
    """A daemon whose sessions may hold 3,000 bytes in all, and two people in it."""
    config = ServerConfig(message_burst=10_000, idle_timeout=1000.0, max_queued_bytes=3_000)
    driver = EngineDriver(config)
    for name in ("gappy", "other"):
        driver.add_account(name, f"{name}-password")
    gappy = Peer(driver, "gappy", "gappy-password", ("10.0.3.1", 1))
    other = Peer(driver, "other", "other-password", ("10.0.3.2", 1))
    return driver, gappy, other


def test_frames_held_out_of_order_count_toward_the_daemons_total() -> None:
    driver, gappy, other = _gappy_and_other()
    # Each say in a datagram of its own; the first never arrives, so the daemon holds the
    # others, waiting for the gap to fill (the client is never told to send it again).
    for n in range(10):
        gappy.request(wire.Say(text="g" * 400, cid=f"g{n}"))
        datagrams = gappy.connection.datagrams_to_send(driver.now)
        if n:
            for data in datagrams:
                driver.deliver(data, gappy.address)
    held = driver.engine.sessions[gappy.sid].link.held_bytes
    assert held > 3_000 and driver.engine.sessions[gappy.sid].link.queued_bytes < 3_000
    driver.advance(1.5)  # the daemon's memory check, once a second
    assert gappy.sid not in driver.engine.sessions
    assert other.sid in driver.engine.sessions
    assert driver.engine.stats["memory_closed"] == 1


def move_unproven(driver: EngineDriver, peer: Peer, address: Address) -> None:
    """A record of the peer's arrives from `address` (spoofed: nothing sent there is seen)."""
    peer._ping()
    for data in peer.connection.datagrams_to_send(driver.now):
        driver.receive(data, address)
    driver.inbox.pop(address, None)


def test_sessions_moved_to_an_address_that_never_answers_still_count_where_they_were() -> None:
    # Records of one's own channels, sent from addresses one does not hold: each channel
    # leaves the count of its address and joins no other, and the address opens more.
    driver = EngineDriver(ServerConfig(max_sessions_per_address=2))
    here = "10.0.6.1"
    for port in range(2):
        peer = Peer(driver, None, address=(here, port))
        peer.send()
        move_unproven(driver, peer, (f"10.0.7.{port}", 9))
        assert peer.sid in driver.engine.sessions
    third = Peer(driver, None, address=(here, 2))
    assert isinstance(third.connection.failure, TooManySessions)
    # A channel never proven where it was opened takes its place there to move.
    driver = EngineDriver(ServerConfig(max_sessions_per_address=1))
    skipper = Peer(driver, None, address=(here, 1))  # its handshake done, no record yet
    Peer(driver, None, address=(here, 0)).send()  # the address's one place is taken
    move_unproven(driver, skipper, ("10.0.7.9", 9))
    assert skipper.sid not in driver.engine.sessions


def test_just_under_the_daemons_total_nobody_is_closed_and_one_frame_more_closes_its_holder() -> (
    None
):
    driver, gappy, other = _gappy_and_other()
    driver.advance(1.5)
    sessions = driver.engine.sessions
    sent = 0

    def hold(size: int) -> None:
        """A say in a datagram of its own, after the first, which never arrives."""
        nonlocal sent
        gappy.request(wire.Say(text="g" * size, cid=f"g{sent}"))
        datagrams = gappy.connection.datagrams_to_send(driver.now)
        if sent:
            for data in datagrams:
                driver.deliver(data, gappy.address)
        sent += 1

    def total() -> int:
        return sum(session.link.held_bytes for session in sessions.values())

    hold(100)
    while total() < 2_800:
        hold(100)
    assert total() <= 3_000
    driver.advance(1.5)  # counted: within the total, if by little
    assert gappy.sid in sessions and driver.engine.stats["memory_closed"] == 0
    hold(300)  # past it now, by less than the total's tenth
    driver.advance(1.5)
    assert gappy.sid not in sessions and other.sid in sessions
    assert driver.engine.stats["memory_closed"] == 1


def test_a_session_that_moved_counts_against_its_new_address_once_proven() -> None:
    # It leaves the old address's count and joins the new one's: a client cannot hold
    # more than the cap at one address by opening its sessions elsewhere and moving them.
    driver = EngineDriver(ServerConfig(max_sessions_per_address=1))
    driver.add_account("mover", "mover-password")
    mover = Peer(driver, "mover", "mover-password", ("10.0.8.1", 1))
    mover.address = ("10.0.8.2", 1)
    mover.send()  # from its new address, answering the challenge
    mover.settle()
    assert mover.session.address == ("10.0.8.2", 1) and mover.session.validated

    def opened(port: int, ip: str = "10.0.8.2") -> Peer:
        peer = Peer(driver, None, address=(ip, port))
        if peer.connection.failure is None:  # not refused at once: its first record
            peer.send()
        return peer

    assert isinstance(opened(2).connection.failure, TooManySessions)
    freed = opened(2, "10.0.8.1")
    assert freed.connection.failure is None and freed.sid in driver.engine.sessions
    # Ended, it frees its place at the new address, and nothing more.
    mover.send(wire.Logout())
    assert opened(3).connection.failure is None
    assert isinstance(opened(4).connection.failure, TooManySessions)


def test_networks_whose_channels_are_all_gone_are_not_remembered() -> None:
    # Spoofed INITs from many networks, never answered, and sessions that ended: the
    # daemon's counts of each network's channels keep no entry for a network with none.
    driver = EngineDriver()
    driver.add_account("alice", "alice-password")
    for n in range(50):
        init = initiate(driver.server_key, 5000 + n)
        driver.receive(init.datagram(), (f"10.9.{n}.1", 1))
    peers = [Peer(driver, "alice", "alice-password", (f"10.10.{n}.1", 1)) for n in range(5)]
    transport = driver.engine.transport
    assert len(transport._waiting_per_ip) == 50
    assert all(f"10.10.{n}.1" in transport._per_ip for n in range(5))
    for peer in peers:
        peer.send(wire.Logout())
    driver.advance(driver.engine.config.login_timeout + 1.0)  # the strangers' time is up
    assert transport.unproven == 0
    assert transport._waiting_per_ip == {}
    assert not any(str(network).startswith("10.10.") for network in transport._per_ip)


def test_a_new_port_at_a_full_address_keeps_the_session() -> None:
    # A NAT that gives the client another port: the session stays where it is counted.
    driver = EngineDriver(ServerConfig(max_sessions_per_address=1))
    driver.add_account("alice", "alice-password")
    alice = Peer(driver, "alice", "alice-password", ("10.0.3.5", 1))
    sid = alice.sid
    alice.address = ("10.0.3.5", 2)
    alice.send()
    alice.settle()
    assert sid in driver.engine.sessions and alice.session.address == ("10.0.3.5", 2)
    assert alice.session.validated
    assert driver.engine.stats["migrations_refused"] == 0


def test_a_channel_that_moves_before_its_first_record_leaves_nothing_waiting() -> None:
    driver = EngineDriver()
    transport = driver.engine.transport
    skipper = Peer(driver, None, address=("10.0.6.1", 1))  # its handshake done, no record yet
    assert transport.unproven == 1 and transport.waiting_from(("10.0.6.1", 1)) == 1
    skipper.address = ("10.0.7.1", 1)
    skipper.send()
    skipper.settle()
    assert skipper.session.address == ("10.0.7.1", 1) and skipper.session.validated
    assert transport.unproven == 0 and transport.waiting_from(("10.0.6.1", 1)) == 0


def test_mailboxes_filled_for_accounts_that_stay_away_are_kept_on_disk_not_in_memory() -> None:
    """Whispers of the longest text to every account until each mailbox is full: the
    daemon keeps a count for each account that is away, the messages on disk only, and
    reads them when the account logs in."""
    config = ServerConfig(mailbox_limit=25, message_burst=1000, message_rate=1000.0)
    driver = EngineDriver(config)
    victims = [f"victim{n}" for n in range(8)]
    for n, name in enumerate(victims):
        driver.add_account(name, address=(f"10.1.{n}.1", 1))
    driver.add_account("mallory", address=("10.0.2.1", 1))
    attacker = Peer(driver, "mallory", address=("10.0.2.1", 2))
    text = "x" * TEXT_MAX_BYTES
    for name in victims:
        for n in range(config.mailbox_limit + 1):
            attacker.send(wire.Whisper(to=name, text=text, cid=f"{name}-{n}"))
    refused = [e.code for e in attacker.of_type(wire.ErrorFrame)]
    assert refused == ["mailbox_full"] * len(victims)
    mailbox = driver.engine.mailbox
    assert mailbox.in_memory() == 0
    accounts = driver.engine.accounts
    assert [mailbox.count(accounts[name].id) for name in victims] == [25] * len(victims)
    victim = Peer(driver, victims[3], address=("10.0.3.1", 1))
    assert len(victim.of_type(wire.Pm)) == 25 and victim.connection.unread == 25
    victim.flush(ack=True)
    assert mailbox.count(accounts[victims[3]].id) == 0 and mailbox.in_memory() == 0
