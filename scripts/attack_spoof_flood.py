"""An off-path spoofer against a daemon this script starts on 127.0.0.1.

    .venv/bin/python scripts/attack_spoof_flood.py
    .venv/bin/python scripts/attack_spoof_flood.py --addresses 500 --rounds 22 --burst 5000

Sends every kind of first flight (`KEY_REQUEST`, `INIT`s good and bad, wrong sizes, a
wrong version) and forged records, from `--addresses` distinct loopback addresses
(127.10.x.y: the spoofer's victims, who receive the answers). Prints:

- per kind, the bytes sent and answered, and the worst answered/sent ratio of any address;
- the daemon's channels, half-open channels and cookies sent, during the flood and once
  the half-open channels have expired;
- how long a person takes to log in during the flood (through a `RETRY`);
- whether 16 `INIT`s forged from one IP address (while the daemon is not asking for
  cookies) lock a person at that IP out;
- what one `INIT` that does not decrypt costs the daemon (such `INIT`s never count as
  half-open channels, so they never make the daemon ask for cookies).

Exits 1 if any address was answered with more bytes than were sent from it.
Everything goes to 127.0.0.0/8 only.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import trio

from trio_chat import connect, register, wire
from trio_chat.client_protocol import ClientConfig, ClientConnection
from trio_chat.engine import ServerConfig, ServerEngine
from trio_chat.noise import generate_keypair
from trio_chat.secure import initiate
from trio_chat.testing.attacks import (
    SILENT_KINDS,
    bound_socket,
    drive,
    first_flight_kinds,
    kind_of,
    spoofed_host,
    start_daemon,
)

PASSWORD = "Spoof-Flood-Password-1"


def state(engine: ServerEngine) -> str:
    stats = engine.stats
    return (
        f"{len(engine.sessions)} channels ({engine.transport.unproven} half-open), "
        f"{stats['handshakes']} handshakes, {stats['retries_sent']} RETRYs, "
        f"{stats['bad_handshakes']} undecryptable INITs, {stats['bad_records']} forged records"
    )


async def flood(
    address: tuple[str, int], engine: ServerEngine, addresses: int, rounds: int, seed: int
) -> bool:
    rng = random.Random(seed)
    kinds = first_flight_kinds(engine.keys.public)
    del kinds["random"]  # may or may not be answered: the count below must be exact
    live = next(iter(engine.sessions))  # a person's session, for records forged under it
    kinds["forged_record"] = lambda rng: (
        wire.data_header(live, rng.randrange(2**40)) + (rng.randbytes(rng.randrange(16, 1187)))
    )
    silent = SILENT_KINDS | {"forged_record"}
    names = list(kinds)
    sockets = [await bound_socket(spoofed_host(n)) for n in range(addresses)]
    sent_by_kind: Counter[str] = Counter()
    answered_by_kind: Counter[str] = Counter()
    answers_by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    plans: list[list[str]] = []
    sent = [0] * addresses
    started = time.perf_counter()
    for n, sock in enumerate(sockets):
        plan = [names[(n + r) % len(names)] for r in range(rounds)]
        plans.append(plan)
        for kind in plan:
            size = await sock.sendto(kinds[kind](rng), address)
            sent[n] += size
            sent_by_kind[kind] += size
    received = [0] * addresses
    for n, sock in enumerate(sockets):
        for kind in (k for k in plans[n] if k not in silent):
            data = await sock.recv(2048)
            received[n] += len(data)
            answered_by_kind[kind] += len(data)
            answers_by_kind[kind][kind_of(data)] += 1
        sock.close()
    seconds = time.perf_counter() - started
    print(f"flood: {sum(sent):,} bytes from {addresses} addresses, {rounds} datagrams each, ")
    print(f"       answered with {sum(received):,} bytes in {seconds:.2f} s")
    print(f"  {'kind':28} {'bytes in':>10} {'bytes out':>10} {'ratio':>6}  answers")
    for kind in names:
        ratio = answered_by_kind[kind] / sent_by_kind[kind] if sent_by_kind[kind] else 0.0
        shown = ", ".join(f"{k} x{c}" for k, c in sorted(answers_by_kind[kind].items())) or "-"
        print(
            f"  {kind:28} {sent_by_kind[kind]:>10,} {answered_by_kind[kind]:>10,} "
            f"{ratio:>6.3f}  {shown}"
        )
    worst = max(got / given for got, given in zip(received, sent, strict=True) if given)
    print(f"  worst answered/sent for one address: {worst:.3f} (the promise: at most 1)")
    print(f"  daemon: {state(engine)}")
    return worst <= 1.0


async def person_logs_in(address: tuple[str, int], key: bytes) -> None:
    started = time.perf_counter()
    async with connect(address[0], address[1], "alice", PASSWORD, server_key=key) as chat:
        await chat.say("still here")
    print(
        f"a person logged in and said something during the flood in "
        f"{(time.perf_counter() - started) * 1000:.0f} ms"
    )


async def lockout(address: tuple[str, int], engine: ServerEngine) -> None:
    """INITs forged from one IP, any port: does a person at that IP still get in?"""
    host = spoofed_host(60000)
    limit = engine.config.max_sessions_per_address
    unproven = engine.transport.unproven
    for n in range(limit):
        sock = await bound_socket(host)
        await sock.sendto(initiate(engine.keys.public, 7000 + n).datagram(), address)
        await sock.recv(2048)  # the answer a spoofer would never see
        sock.close()
    cookie_mode = unproven >= engine.config.unproven_before_retry
    connection = ClientConnection(engine.keys.public, "alice", PASSWORD, config=ClientConfig())
    with await bound_socket(host) as sock:
        await sock.connect(address)
        connection.start(trio.current_time())
        with trio.move_on_after(6):
            await drive(sock, connection, lambda: connection.ready or connection.closed)
        connection.close()
        await drive(sock, connection, lambda: True)
    failure = connection.failure
    outcome = (
        "got in" if connection.ready else f"LOCKED OUT ({failure.code if failure else 'no answer'})"
    )
    print(
        f"{limit} INITs forged from {host} (any ports; cookies "
        f"{'on' if cookie_mode else 'off'}), then a person at {host}: {outcome}"
    )


async def undecryptable_cost(address: tuple[str, int], engine: ServerEngine, burst: int) -> None:
    """How fast the daemon answers INITs it cannot decrypt, against KEY_REQUESTs, and
    whether they make it ask for cookies."""
    retries = engine.stats["retries_sent"]
    _private, other = generate_keypair()
    rng = random.Random(9)
    sock = await bound_socket(spoofed_host(60001))
    batches = {
        "KEY_REQUEST": [wire.key_request_datagram()] * burst,
        "INIT to another key": [
            initiate(other, rng.randrange(1, 2**32)).datagram() for _ in range(burst)
        ],
    }
    timings: dict[str, float] = {}
    for label, batch in batches.items():
        started = time.perf_counter()
        for n in range(0, len(batch), 200):
            for data in batch[n : n + 200]:
                await sock.sendto(data, address)
            for _ in batch[n : n + 200]:
                await sock.recv(2048)
        seconds = time.perf_counter() - started
        print(f"  {burst} x {label}: {seconds:.2f} s, {burst / seconds:,.0f} a second answered")
        timings[label] = seconds
    sock.close()
    extra = (timings["INIT to another key"] - timings["KEY_REQUEST"]) / burst
    print(
        f"  an undecryptable INIT costs ~{extra * 1e6:.0f} us more than a KEY_REQUEST; "
        f"RETRYs sent meanwhile: {engine.stats['retries_sent'] - retries}, "
        f"half-open channels: {engine.transport.unproven}"
    )


async def main(args: argparse.Namespace) -> int:
    config = ServerConfig()
    with tempfile.TemporaryDirectory() as workdir:
        async with trio.open_nursery() as nursery:
            address, engine = await start_daemon(nursery, Path(workdir) / "chat.db", config)
            print(
                f"daemon at {address[0]}:{address[1]}, default limits "
                f"(cookies after {config.unproven_before_retry} half-open channels, "
                f"{config.max_sessions_per_address} channels per IP)"
            )
            host, port = address[0], address[1]
            await register(host, port, "alice", PASSWORD, server_key=engine.keys.public)
            bystander = ClientConnection(engine.keys.public, "alice", PASSWORD)
            with await bound_socket() as sock:
                await sock.connect(address)
                bystander.start(trio.current_time())
                await drive(sock, bystander, lambda: bystander.ready)
                await lockout(address, engine)
                ok = await flood(address, engine, args.addresses, args.rounds, args.seed)
                await person_logs_in(address, engine.keys.public)
                if args.wait:
                    print(
                        f"waiting {config.login_timeout + 1:.0f} s for the half-open channels "
                        "to expire ..."
                    )
                    await trio.sleep(config.login_timeout + 1)
                    print(f"  daemon: {state(engine)}")
                    print("what the daemon spends on INITs it cannot decrypt (one core):")
                    await undecryptable_cost(address, engine, args.burst)
                bystander.close()
                await drive(sock, bystander, lambda: True)
            nursery.cancel_scope.cancel()
    print("no address got more than it sent" if ok else "SOME ADDRESS GOT MORE THAN IT SENT")
    return 0 if ok else 1


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addresses", type=int, default=200, help="spoofed source addresses")
    parser.add_argument("--rounds", type=int, default=11, help="datagrams from each")
    parser.add_argument("--burst", type=int, default=2000, help="INITs to time the cost of")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-wait", dest="wait", action="store_false", help="do not wait for expiry"
    )
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(trio.run(main, parse_arguments()))
