"""Slow and dead peers: a client that stops acknowledging is closed at its queue limit or
its timeout, and the others keep being served meanwhile.

The rules are checked on the sans-I/O engine with explicit time; one test runs them on
a live daemon over real sockets with a client that goes quiet mid-session.
"""

from __future__ import annotations

import random
from pathlib import Path

import trio

from trio_chat import Left, PublicMessage, wire
from trio_chat.client import ClientConfig, connect, register
from trio_chat.engine import ServerConfig
from trio_chat.reliability import LinkConfig
from trio_chat.server import serve
from trio_chat.testing.driver import EngineDriver, Peer
from trio_chat.testing.raw_peer import RawPeer
from trio_chat.trust import fetch_key

FAST = ClientConfig(timeout=5.0)


def room(config: ServerConfig, *names: str) -> tuple[EngineDriver, dict[str, Peer]]:
    driver = EngineDriver(config)
    peers: dict[str, Peer] = {}
    for n, name in enumerate(names):
        driver.add_account(name, f"{name}-password")
        peers[name] = Peer(driver, name, f"{name}-password", (f"10.0.0.{n + 1}", 4000))
        peers[name].send()
    for peer in peers.values():
        peer.settle()
    return driver, peers


def test_a_peer_that_stops_acknowledging_is_closed_when_its_queue_overflows() -> None:
    config = ServerConfig(link=LinkConfig(max_queue=100), message_burst=10_000)
    driver, peers = room(config, "talker", "listener", "dead")
    dead_sid = peers["dead"].sid
    talker, listener = peers["talker"], peers["listener"]
    for n in range(150):
        talker.send(wire.Say(text=f"message {n}", cid=f"c{n}"))
        listener.take(driver.advance(0.01, listener.address))
        listener.flush()  # the listener acknowledges; the dead peer never does
    assert dead_sid not in driver.engine.sessions
    listener.settle()
    leaves = listener.of_type(wire.Leave)
    assert [(leave.name, leave.reason) for leave in leaves] == [("dead", "overloaded")]
    # Everyone else got everything, once and in order, while it happened.
    texts = [m.text for m in listener.of_type(wire.Msg)]
    assert texts == [f"message {n}" for n in range(150)]
    assert len(driver.stored_messages()) == 150


def test_a_peer_that_stops_acknowledging_is_closed_once_it_has_gone_unanswered_too_long() -> None:
    config = ServerConfig(link=LinkConfig(give_up_after=8.0, max_pto=1.0), idle_timeout=600.0)
    driver, peers = room(config, "talker", "dead")
    talker = peers["talker"]
    talker.send(wire.Say(text="are you there?", cid="q"))
    # The dead peer keeps pinging (it is not silent), but never acknowledges a thing.
    dead = peers["dead"]
    channel = dead.connection.channel
    assert channel is not None
    frozen = wire.close_payload(wire.payload_head(0, 0, []), b"")
    for pn in range(1000, 1020):
        driver.receive(channel.seal(pn, frozen), dead.address)
        talker.take(driver.advance(1.0, talker.address))
        talker.flush()
        if dead.sid not in driver.engine.sessions:
            break
    assert dead.sid not in driver.engine.sessions
    assert driver.now < 20.0
    talker.settle()
    assert [(m.name, m.reason) for m in talker.of_type(wire.Leave)] == [("dead", "timeout")]


def test_a_silent_peer_is_closed_at_its_idle_timeout() -> None:
    config = ServerConfig(idle_timeout=30.0)
    driver, peers = room(config, "keeper", "quiet")
    keeper, quiet = peers["keeper"], peers["quiet"]
    last_heard = driver.engine.sessions[quiet.sid].last_heard
    while driver.now < last_heard + 29.0:
        driver.now += 1.0
        keeper.send()  # the keeper keeps pinging; the quiet one has stopped
        assert quiet.sid in driver.engine.sessions
    keeper.settle(40)  # two more seconds
    assert quiet.sid not in driver.engine.sessions
    assert keeper.sid in driver.engine.sessions
    assert [(m.name, m.reason) for m in keeper.of_type(wire.Leave)] == [("quiet", "timeout")]


def test_idle_timeouts_fire_once_whatever_the_float_rounding() -> None:
    """The idle check must agree with the deadline it set, to the last bit."""
    driver = EngineDriver(
        ServerConfig(idle_timeout=45.0, max_sessions_per_address=1000, max_sessions_per_account=100)
    )
    driver.add_account("someone", "someone-password")
    rng = random.Random(0)
    sids = []
    for n in range(60):
        driver.now += rng.uniform(0.0, 3.0)  # sessions opened at many odd moments
        peer = Peer(driver, "someone", "someone-password", ("10.9.0.1", 1000 + n))
        assert peer.connection.connected
        sids.append(peer.sid)
    fired = 0
    end = driver.now + 100.0
    while (deadline := driver.engine.next_timer()) is not None and deadline <= end:
        fired += 1
        assert fired < 1000, "a timer keeps firing at the same moment"
        driver.now = max(driver.now, deadline)  # exactly at the deadline, as a clock may
        driver.engine.handle_timers(driver.now, 0.0)
        driver.pump()
    assert not any(sid in driver.engine.sessions for sid in sids)


async def test_a_live_daemon_drops_a_client_that_goes_quiet_and_keeps_serving(
    tmp_path: Path,
) -> None:
    link = LinkConfig(give_up_after=1.5, max_pto=0.5)
    config = ServerConfig(link=link, idle_timeout=3.0, message_burst=1000)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(serve, "127.0.0.1", 0, tmp_path / "chat.db", config)
            server_key = await fetch_key(host, port)
            for name in ("talker", "listener", "ghost"):
                await register(host, port, name, f"{name}-password", config=FAST)
            # The ghost logs in as a client does, then never answers again.
            ghost = RawPeer(server_key, "ghost", "ghost-password")
            await ghost.log_in(host, port)
            async with (
                connect(host, port, "talker", "talker-password", config=FAST) as talker,
                connect(host, port, "listener", "listener-password", config=FAST) as listener,
            ):
                events = listener.events()
                sent = [await talker.say(f"message {n}") for n in range(20)]
                seen: list[str] = []
                left: list[Left] = []
                async for event in events:
                    if isinstance(event, Left):
                        left.append(event)
                    elif isinstance(event, PublicMessage) and event.sender == "talker":
                        seen.append(event.text)
                    if left and len(seen) == len(sent):
                        break
                assert [(e.name, e.reason) for e in left] == [("ghost", "timeout")]
                assert seen == [m.text for m in sent]
                # And the room still works after the ghost is gone.
                await talker.say("still here")
                async for event in events:
                    if isinstance(event, PublicMessage) and event.text == "still here":
                        break
            ghost.close()
            nursery.cancel_scope.cancel()
