#!/usr/bin/env python3
"""What a fanned-out message costs the daemon's engine and each client's core, without
sockets, processes or a disk.

    .venv/bin/python scripts/fanout_speed.py [--receivers 50] [--batches 400] [--batch 5]
        [--profile] [--pauses MS] [--queued-too]

The bench's fan-out workload, in one process and with time stepped by hand: one sender
says `--batch` messages at a time to a room of `--receivers`; the engine takes the
sender's datagram, stores the messages at once (the `EngineDriver`'s in-memory store)
and sends the room its datagrams; each receiver's `ClientConnection` takes its datagram
and hands out the events; the acknowledgements that come due go back to the engine.
Each side is timed apart (wall time around its calls alone), so the figures are what
the Python code costs, before the kernel's share (`sendto`, `recvfrom`, `epoll`), which
`scripts/bench.py` adds. `--profile` prints the costliest functions (cProfile, which
slows everything about threefold). `--pauses MS` lists the batches whose messages took
the clients longer than MS milliseconds in all: meant to find a pause that every client
core takes at the same message (one of a process's connections alone would not notice
it). `--queued-too` runs blocks of 100 batches (`--batches` rounded to 200s, at least
200; `--profile` and `--pauses` do not apply) in turn as the daemon does and with every
copy queued on its link first (as before copies to idle links were sealed as they were
handed over, `Link.send_at_once`), and prints the engine's fan-out for each: a comparison
within one process and the same minutes. Checks that every receiver got every message
once, in order.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import math
import pstats
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from trio_chat.client_protocol import ClientConfig
from trio_chat.engine import Address, ServerConfig, sessions
from trio_chat.events import PublicMessage
from trio_chat.testing.driver import EngineDriver, Peer

BLOCK = 100
"""Batches in each block of `--queued-too`."""
STEP = 0.0025
"""Seconds between batches (the bench's closed loop takes about this long per batch)."""


@dataclass
class Costs:
    """Seconds spent on each side, and what they were spent on."""

    engine_fanout: float = 0.0
    engine_acks: float = 0.0
    """Taking in the acknowledgements, and running the timers each round (what a timer
    sets off, sessions set again and datagrams sent, counts in the next fan-out)."""
    clients: float = 0.0
    datagrams: int = 0
    acks: int = 0
    pauses: list[tuple[int, float]] = field(default_factory=list)
    """(first message of the batch, seconds) where the clients' part took longer than asked."""


def address(network: int, number: int) -> Address:
    return (f"10.{network}.{number // 200}.{number % 200 + 1}", 1)


def room(receivers: int) -> tuple[EngineDriver, Peer, list[Peer]]:
    """A driven engine with `receivers` and a sender logged in, nothing in flight."""
    driver = EngineDriver(
        ServerConfig(message_rate=1e6, message_burst=10**6), acknowledge_bulk_first=True
    )
    config = ClientConfig(reconnect=False)
    peers = []
    for number in range(receivers):
        driver.add_account(f"r{number}", address=address(3, number))
        peers.append(Peer(driver, f"r{number}", address=address(1, number), config=config))
    driver.add_account("sender", address=address(4, 0))
    sender = Peer(driver, "sender", address=address(2, 0), config=config)
    for peer in [*peers, sender]:
        peer.settle(3)
    return driver, sender, peers


def run(
    driver: EngineDriver,
    sender: Peer,
    peers: list[Peer],
    batches: int,
    batch: int,
    pause: float = math.inf,
) -> Costs:
    engine, clock = driver.engine, time.perf_counter
    by_address = {peer.address: peer for peer in peers}
    costs = Costs()
    received: dict[Address, list[str]] = {peer.address: [] for peer in peers}
    for number in range(batches):
        driver.now += STEP
        now, wall = driver.now, driver.wall
        for k in range(batch):
            sender.connection.say(f"m{number}_{k}")
        says = sender.connection.datagrams_to_send(now)
        start = clock()
        for data in says:
            engine.receive_datagram(data, sender.address, now, wall)
        for effect in engine.take_effects():
            driver.perform(effect)  # stored at once
        out = engine.datagrams_to_send(now, wall)
        costs.engine_fanout += clock() - start
        costs.datagrams += len(out)
        answers: list[tuple[bytes, Address]] = []
        start = clock()
        for data, to in out:
            peer = by_address.get(to)
            if peer is None:
                continue  # the sender's `ok`s, below
            connection = peer.connection
            connection.receive_datagram(data, now)
            texts = received[to]
            while (event := connection.next_event()) is not None:
                if isinstance(event, PublicMessage):
                    texts.append(event.text)
            answers.extend((ack, to) for ack in connection.datagrams_to_send(now))
        spent = clock() - start
        costs.clients += spent
        if spent > pause:
            costs.pauses.append((number * batch + 1, spent))
        sender.take([data for data, to in out if to == sender.address])
        start = clock()
        for data, source in answers:
            engine.receive_datagram(data, source, now, wall)
        more = engine.datagrams_to_send(now, wall)
        costs.engine_acks += clock() - start
        costs.acks += len(answers)
        for data, to in more:
            (by_address.get(to) or sender).connection.receive_datagram(data, now)
        for peer in peers:
            peer.connection.handle_timer(now)
        start = clock()
        engine.handle_timers(now, wall)  # what sending armed is the engine's cost too
        costs.engine_acks += clock() - start
    said = [f"m{number}_{k}" for number in range(batches) for k in range(batch)]
    wrong = [to for to, texts in received.items() if texts != said]
    if wrong:
        raise SystemExit(f"{len(wrong)} receivers did not get every message once, in order")
    return costs


def compare_queued(
    driver: EngineDriver, sender: Peer, peers: list[Peer], batches: int, batch: int
) -> int:
    """`--queued-too`: the engine's fan-out as it is and with every copy queued first."""
    as_it_is = sessions.Transport.sending

    @contextlib.contextmanager
    def never_at_once(_transport: object, _now: float, _send: object) -> Iterator[None]:
        yield

    spent = {"as it is": 0.0, "queued first": 0.0}
    blocks = max(1, batches // (2 * BLOCK)) * 2  # as many each way
    try:
        for block in range(blocks):
            way = "as it is" if block % 2 else "queued first"
            sessions.Transport.sending = as_it_is if block % 2 else never_at_once  # type: ignore[method-assign, assignment]
            spent[way] += run(driver, sender, peers, BLOCK, batch).engine_fanout
    finally:
        sessions.Transport.sending = as_it_is  # type: ignore[method-assign]
    deliveries = blocks // 2 * BLOCK * batch * len(peers)
    for way, seconds in spent.items():
        print(f"  engine, say to fan-out, {way:12} {1e6 * seconds / deliveries:6.2f} us a delivery")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receivers", type=int, default=50)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--batch", type=int, default=5, help="messages said at once")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top 30")
    parser.add_argument(
        "--pauses", type=float, metavar="MS", help="list the batches the clients took longer over"
    )
    parser.add_argument(
        "--queued-too",
        action="store_true",
        help="compare with every copy queued first, in blocks taking turns",
    )
    args = parser.parse_args()
    driver, sender, peers = room(args.receivers)
    if args.queued_too:
        return compare_queued(driver, sender, peers, args.batches, args.batch)
    profile = cProfile.Profile() if args.profile else None
    if profile is not None:
        profile.enable()
    pause = math.inf if args.pauses is None else args.pauses / 1000
    costs = run(driver, sender, peers, args.batches, args.batch, pause)
    if profile is not None:
        profile.disable()
        pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(30)
    deliveries = args.batches * args.batch * args.receivers
    print(
        f"{args.receivers} receivers, {args.batches} batches of {args.batch}: "
        f"{deliveries} deliveries in {costs.datagrams} datagrams, {costs.acks} acks back"
    )
    for what, seconds, per, count in (
        ("engine, say to fan-out", costs.engine_fanout, "a delivery", deliveries),
        ("engine, acks and timers", costs.engine_acks, "an acknowledgement", costs.acks),
        ("clients, datagram to events", costs.clients, "a delivery", deliveries),
    ):
        print(
            f"  {what:30} {1e6 * seconds / args.batches:7.0f} us a batch  "
            f"{1e6 * seconds / max(1, count):6.2f} us {per}"
        )
    if args.pauses is not None:
        print(f"  the clients over {args.pauses:g} ms for one batch: {len(costs.pauses)} times")
        for first, seconds in costs.pauses:
            print(f"    from message {first:,}: {1000 * seconds:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
