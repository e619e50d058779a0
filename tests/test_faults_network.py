"""A bad network: the fault proxy between real clients and the real daemon.

The short variant of `scripts/faults_loss.py` runs here: client processes talking through
the proxy at 10% and 30% loss each way, with duplication, reordering and delay. Every
message must arrive exactly once, in its sender's order.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import trio

from trio_chat import ClientConfig, ServerUnreachable, connect, register
from trio_chat.engine import ServerConfig, ServerEngine
from trio_chat.server import serve
from trio_chat.testing.fault_proxy import FaultProxy, Weather
from trio_chat.testing.loss_run import loss_run
from trio_chat.trust import fetch_key, trust_server


async def test_the_proxy_drops_and_duplicates_as_seeded() -> None:
    """The proxy itself: what it does to a known stream, and that a seed repeats it."""

    async def one_run(seed: int) -> list[bytes]:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                sink = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
                await sink.bind(("127.0.0.1", 0))
                weather = Weather(loss=0.3, duplicate=0.2)
                proxy = FaultProxy(sink.getsockname(), seed=seed, to_server=weather)
                address = await nursery.start(proxy.run)
                source = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
                await source.connect(address)
                for n in range(200):
                    await source.send(b"%d" % n)
                got: list[bytes] = []
                # The proxy forwards in order: once an end marker is through, so is the rest.
                while b"end" not in got:
                    await source.send(b"end")
                    with trio.move_on_after(0.1):
                        while got[-1:] != [b"end"]:
                            got.append(await sink.recv(100))
                nursery.cancel_scope.cancel()
        stream = got[: got.index(b"end")]
        stats = proxy.stats.to_server
        missing = 200 - len(set(stream))
        twice = len(stream) - len(set(stream))
        assert 30 < missing <= stats.dropped and 15 < twice <= stats.duplicated
        assert sorted(set(stream), key=int) == [
            b"%d" % n for n in range(200) if b"%d" % n in stream
        ]
        return stream

    first = await one_run(seed=5)
    assert await one_run(seed=5) == first  # the same seed, the same weather
    assert await one_run(seed=6) != first


async def test_the_proxy_reorders_and_delays() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            sink = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
            await sink.bind(("127.0.0.1", 0))
            weather = Weather(reorder=0.3, reorder_delay=0.05, delay=0.01, jitter=0.01)
            proxy = FaultProxy(sink.getsockname(), seed=3, to_server=weather)
            address = await nursery.start(proxy.run)
            source = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
            await source.connect(address)
            sent_at = trio.current_time()
            for n in range(100):
                await source.send(b"%d" % n)
            got = [int(await sink.recv(100)) for _ in range(100)]
            assert trio.current_time() - sent_at >= 0.01
            nursery.cancel_scope.cancel()
    assert sorted(got) == list(range(100))  # nothing lost, nothing twice
    assert got != list(range(100))  # but not in order
    assert proxy.stats.to_server.reordered > 10


@pytest.mark.parametrize("loss", [0.1, 0.3])
async def test_messages_arrive_exactly_once_and_in_order_through_loss(
    tmp_path: Path, loss: float
) -> None:
    with trio.fail_after(150):
        result = await loss_run(
            tmp_path, loss=loss, senders=2, receivers=4, count=40, seed=11, deadline=100.0
        )
    assert result.errors == []
    assert result.expected == 2 * 40 * 4
    assert result.delivered == result.expected
    assert result.duplicates == 0
    assert result.out_of_order == 0
    assert result.acknowledged == result.stored == 80
    assert result.stored_duplicates == 0
    # The network really was bad, both ways. (Which datagrams meet which weather is
    # seeded, but how many datagrams a run takes is not: a direction of 260 datagrams
    # at 2% duplication has none one time in 200, so duplicates are counted over both.)
    directions = (result.proxy.to_server, result.proxy.to_client)
    for direction in directions:
        assert direction.dropped >= loss * direction.datagrams * 0.5
        assert direction.duplicated + direction.reordered > 0
    assert sum(direction.duplicated for direction in directions) > 0


async def test_logging_out_ends_at_once_when_the_daemon_has_already_closed_the_session(
    tmp_path: Path,
) -> None:
    """The daemon's "ok" to a logout is lost; the client must not wait out its timeout."""
    engines: list[ServerEngine] = []
    config = ClientConfig(timeout=60.0)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            start = functools.partial(serve, on_ready=engines.append)
            address = await nursery.start(start, "127.0.0.1", 0, tmp_path / "chat.db")
            await register(address[0], address[1], "leaver", "leaver-password")
            proxy = FaultProxy(address, seed=1)
            host, port = await nursery.start(proxy.run)
            key = await fetch_key(address[0], address[1])
            async with connect(
                host, port, "leaver", "leaver-password", config=config, server_key=key
            ) as chat:
                await chat.say("bye all")
                (client,) = proxy.clients
                answers = Weather(drop_next=1)  # the answer to the logout is lost
                proxy.overrides[client] = (Weather(), answers)
                await chat.logout()
                assert answers.drop_next == 0
                assert not engines[0].sessions
            nursery.cancel_scope.cancel()


async def test_a_client_gives_up_with_a_clear_error_when_all_is_lost(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            address = await nursery.start(
                serve, "127.0.0.1", 0, tmp_path / "chat.db", ServerConfig()
            )
            proxy = FaultProxy(address, seed=1, to_server=Weather(loss=1.0))
            host, port = await nursery.start(proxy.run)
            with pytest.raises(ServerUnreachable) as caught:
                await register(
                    host, port, "nobody", "nobody-password", config=ClientConfig(timeout=1.0)
                )
            assert str(caught.value) == (
                f"Cannot reach trio-chat at {host}:{port}; is `trio-chat serve` running?"
            )
            nursery.cancel_scope.cancel()


async def test_a_health_check_is_told_at_once_that_nothing_listens() -> None:
    """`trio-chat ping` at a port nothing listens on ends at the refusal, not after the
    time it would wait for a daemon that may still be starting."""
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as closed:
        await closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with trio.fail_after(10), pytest.raises(ServerUnreachable):
        await trust_server("127.0.0.1", port, remember=False, refused_ends=True, within=60)
