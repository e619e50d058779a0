"""A malicious client with an account, against a daemon this script starts on 127.0.0.1.

    .venv/bin/python scripts/attack_malicious_client.py

Mallory holds the keys of her own channel and sends whatever records she likes, from her
own address or from a victim's (here a socket at 127.0.0.66 that counts what reaches it).

1. Records sealed with her keys under Alice's session index.
2. `resume` with tickets forged, altered, from another daemon, or expired.
3. Her session moved to the victim's address, with a request for a long history, and
   pings from there to keep its byte budget growing.
4. After she logs out, records of her ended channel sent from the victim's address.
5. Her session moved to the victim's address and logged out from there, then records of
   the ended channel from there (its last datagrams are sent again to that address).
6. 6,000 `history` requests from her session, 30 a datagram, while Bob says something.

Prints what each achieved. Exits 1 if any of them got past a promise of docs/security.md:
another session touched, a ticket accepted, a victim sent more than three times the
bytes sent from its address, or Bob's message held up for half a second by her requests.
Everything goes to 127.0.0.0/8 only.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import os
import sys
import tempfile
import time
from pathlib import Path

import trio

from trio_chat import ChatClient, connect, register, wire
from trio_chat.client_protocol import ClientConfig, ClientConnection
from trio_chat.engine import ServerConfig, ServerEngine
from trio_chat.logs import configure
from trio_chat.secure import Channel, DaemonKeys, Ticket, password_mark
from trio_chat.testing.attacks import bound_socket, drive, start_daemon

PASSWORD = "Malicious-Client-Pass-8"
VICTIM_HOST = "127.0.0.66"
LONG = "ü" * 240


class Victim:
    """A socket that counts what reaches it."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.received = 0
        self.datagrams = 0
        self.sent = 0

    async def count(self) -> None:
        while True:
            data = await self.sock.recv(2048)
            self.received += len(data)
            self.datagrams += 1

    async def send_as(self, data: bytes, to: tuple[str, int]) -> None:
        """A datagram with the victim's address as its source (spoofed, in real life)."""
        self.sent += await self.sock.sendto(data, to)


async def logged_in(
    address: tuple[str, int], key: bytes, name: str, password: str = PASSWORD
) -> tuple[ClientConnection, trio.socket.SocketType]:
    connection = ClientConnection(key, name, password, config=ClientConfig(reconnect=False))
    sock = await bound_socket()
    await sock.connect(address)
    connection.start(trio.current_time())
    await drive(sock, connection, lambda: connection.ready or connection.closed)
    assert connection.ready, connection.failure
    return connection, sock


async def other_index(address: tuple[str, int], engine: ServerEngine, alice_sid: int) -> bool:
    mallory, sock = await logged_in(address, engine.keys.public, "mallory")
    channel = mallory._channel
    assert channel is not None
    bad_records = engine.stats["bad_records"]
    payload = b'{"ack":0,"echo":0,"frames":[[1,{"t":"say","text":"I am alice","cid":"m1"}]]}'
    for pn in range(1, 21):
        header = wire.data_header(alice_sid, pn)
        await sock.send(header + channel._send.seal(pn, header, payload))
    who = mallory.who()  # answered once everything before it was handled
    await drive(sock, mallory, lambda: who.done)
    dropped = engine.stats["bad_records"] - bad_records
    print(
        f"1. 20 records under Alice's index, sealed with Mallory's keys: {dropped} dropped "
        f"as forged, messages stored {engine.stats['messages'] - 60}"
    )
    mallory.close()
    await drive(sock, mallory, lambda: True)
    sock.close()
    return dropped == 20 and engine.stats["messages"] == 60


def _over(connection: ClientConnection) -> bool:
    return connection.ready or connection.closed


async def tickets(address: tuple[str, int], engine: ServerEngine) -> bool:
    key = engine.keys.public
    mallory, sock = await logged_in(address, key, "mallory")
    own = mallory.ticket
    mallory.close()
    await drive(sock, mallory, lambda: True)
    sock.close()
    alice_id = engine.accounts["alice"].id
    mark = password_mark(engine.accounts["alice"].password_hash)  # her password's, as hers
    middle = len(own) // 2
    now = time.time()
    forgeries = {
        "random": base64.urlsafe_b64encode(os.urandom(64)).decode().rstrip("="),
        "hers, one character changed": own[:middle]
        + ("A" if own[middle] != "A" else "B")
        + own[middle + 1 :],
        "hers, cut short": own[:-6],
        "Alice's, from another daemon": DaemonKeys.generate().tickets.seal(
            Ticket(alice_id, "alice", now + 3600, mark)
        ),
        "Alice's, expired a second ago": engine.keys.tickets.seal(
            Ticket(alice_id, "alice", now - 1, mark)
        ),
    }
    ok = True
    print("2. resume with a ticket that is not good:")
    for n, (label, ticket) in enumerate(forgeries.items()):
        attempt = ClientConnection(key, "alice", "not-alices-password-1")
        attempt.ticket = ticket
        codes: list[str] = []

        def seen(frame: wire.ServerFrame, codes: list[str] = codes) -> None:
            if isinstance(frame, wire.ErrorFrame):
                codes.append(frame.code)

        attempt.trace = seen
        # From an address of its own: the password tried after the ticket fails counts
        # against that address, not against Mallory's.
        with await bound_socket(f"127.0.0.{100 + n}") as sock:
            await sock.connect(address)
            attempt.start(trio.current_time())
            await drive(sock, attempt, functools.partial(_over, attempt))
            attempt.close()
            await drive(sock, attempt, lambda: True)
        print(f"   {label:32} answered {' then '.join(codes)}; logged in: {attempt.ready}")
        ok = ok and not attempt.ready and codes[:1] == ["ticket_invalid"]
    return ok


async def migration(address: tuple[str, int], engine: ServerEngine, victim: Victim) -> bool:
    mallory, sock = await logged_in(address, engine.keys.public, "mallory")
    link = mallory.link
    assert link is not None
    victim.sent = victim.received = victim.datagrams = 0
    link.send(wire.encode(wire.HistoryRequest(limit=100)))
    for _tick in range(20):
        for data in mallory.datagrams_to_send(trio.current_time()):
            await victim.send_as(data, address)
        await trio.sleep(0.25)
        link.send(wire.encode(wire.Ping()))
    ratio = victim.received / victim.sent
    print(
        f"3. Mallory's session moved to {VICTIM_HOST}, asking for 100 long messages, pinging "
        f"from there for 5 s: the victim got {victim.received:,} bytes in {victim.datagrams} "
        f"datagrams for {victim.sent:,} sent from it ({ratio:.2f}x)"
    )
    # Back home, she answers the challenge and gets everything.
    history = mallory.history(limit=100)
    await drive(sock, mallory, lambda: history.done or mallory.closed)
    count = len(history.result) if history.error is None else 0
    print(f"   back at her own address: her history request answered with {count} messages")
    mallory.close()
    await drive(sock, mallory, lambda: True)
    sock.close()
    return ratio <= 3.0


async def unread_history(
    address: tuple[str, int], engine: ServerEngine
) -> tuple[ClientConnection, trio.socket.SocketType]:
    """Mallory logged in, with 100 long messages of history on their way that she does not
    acknowledge: everything her link holds is sent again when her session ends."""
    mallory, sock = await logged_in(address, engine.keys.public, "mallory")
    assert mallory.link is not None
    mallory.link.send(wire.encode(wire.HistoryRequest(limit=100)))
    for data in mallory.datagrams_to_send(trio.current_time()):
        await sock.send(data)
    with trio.move_on_after(0.5):
        while True:
            await sock.recv(2048)
    return mallory, sock


async def records_from_victim(channel: Channel, address: tuple[str, int], victim: Victim) -> float:
    """100 small records of an ended channel, each with a frame, "from" the victim; return
    what the victim got for what was sent from it (since its counts were last reset)."""
    for k in range(100):
        await victim.send_as(channel.seal(10_000 + k, b'{"frames":[[1,{"t":"ping"}]]}'), address)
    await trio.sleep(0.5)
    return victim.received / victim.sent


async def farewell(address: tuple[str, int], engine: ServerEngine, victim: Victim) -> bool:
    mallory, sock = await unread_history(address, engine)
    channel, link = mallory._channel, mallory.link
    assert channel is not None and link is not None
    link.send(wire.encode(wire.Logout()))
    for data in mallory.datagrams_to_send(trio.current_time()):
        await sock.send(data)
    with trio.move_on_after(0.5):
        while True:
            await sock.recv(2048)
    sock.close()
    victim.sent = victim.received = victim.datagrams = 0
    ratio = await records_from_victim(channel, address, victim)
    print(
        f"4. after her logout, 100 records of her ended channel from {VICTIM_HOST} "
        f"({victim.sent:,} bytes): the victim got {victim.received:,} bytes in "
        f"{victim.datagrams} datagrams ({ratio:.1f}x)"
    )
    return ratio <= 3.0


async def moved_farewell(address: tuple[str, int], engine: ServerEngine, victim: Victim) -> bool:
    mallory, sock = await unread_history(address, engine)
    channel, link = mallory._channel, mallory.link
    assert channel is not None and link is not None
    sock.close()
    victim.sent = victim.received = victim.datagrams = 0
    for _ping in range(5):  # her session moves to the victim, earning a budget there
        link.send(wire.encode(wire.Ping()))
        for data in mallory.datagrams_to_send(trio.current_time()):
            await victim.send_as(data, address)
    link.send(wire.encode(wire.Logout()))
    for data in mallory.datagrams_to_send(trio.current_time()):
        await victim.send_as(data, address)
    await trio.sleep(0.5)
    ratio = await records_from_victim(channel, address, victim)
    print(
        f"5. her session moved to {VICTIM_HOST} and logged out from there, then 100 records "
        f"of it from there: the victim got {victim.received:,} bytes in {victim.datagrams} "
        f"datagrams for {victim.sent:,} sent from it ({ratio:.2f}x)"
    )
    return ratio <= 3.0


async def history_flood(address: tuple[str, int], engine: ServerEngine, bob: ChatClient) -> bool:
    mallory, sock = await logged_in(address, engine.keys.public, "mallory")
    link = mallory.link
    assert link is not None
    # Her own link: she lets it send everything at once, however little is acknowledged.
    link.config = dataclasses.replace(link.config, window=10**6, max_queue=10**6)
    refused = 0

    def count(frame: wire.ServerFrame) -> None:
        nonlocal refused
        refused += isinstance(frame, wire.ErrorFrame) and frame.code == "rate_limited"

    mallory.trace = count
    for _request in range(6000):
        link.send(wire.encode(wire.HistoryRequest(limit=100)))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(drive, sock, mallory, lambda: False)  # she takes in what comes
        await trio.sleep(0.2)
        asked = trio.current_time()
        await bob.say("said during a flood of history requests")
        took = trio.current_time() - asked
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    mallory.close()
    sock.close()
    print(
        f"6. 6,000 history requests from Mallory's session: {refused:,} refused as too fast; "
        f"Bob's message meanwhile answered in {1000 * took:.0f} ms"
    )
    return took < 0.5


async def main() -> int:
    configure("error")  # the daemon's log would interleave with the figures
    config = ServerConfig(register_burst=100, message_burst=1000, message_rate=1000.0)
    results: dict[str, bool] = {}
    with tempfile.TemporaryDirectory() as workdir:
        async with trio.open_nursery() as nursery:
            address, engine = await start_daemon(nursery, Path(workdir) / "chat.db", config)
            host, port = address[0], address[1]
            key = engine.keys.public
            for name in ("alice", "bob", "mallory"):
                await register(host, port, name, PASSWORD, server_key=key)
            async with connect(host, port, "bob", PASSWORD, server_key=key) as bob:
                for n in range(60):
                    await bob.say(f"{n} {LONG}")
            victim = Victim(await bound_socket(VICTIM_HOST))
            nursery.start_soon(victim.count)
            async with connect(host, port, "alice", PASSWORD, server_key=key) as alice:
                results["other index"] = await other_index(
                    (host, port), engine, alice.connection.sid
                )
                results["tickets"] = await tickets((host, port), engine)
                results["migration"] = await migration((host, port), engine, victim)
                results["farewell"] = await farewell((host, port), engine, victim)
                results["moved farewell"] = await moved_farewell((host, port), engine, victim)
                async with connect(host, port, "bob", PASSWORD, server_key=key) as bob:
                    results["history flood"] = await history_flood((host, port), engine, bob)
                await alice.say("Alice is still here")
            nursery.cancel_scope.cancel()
    for name, ok in results.items():
        if not ok:
            print(f"PROBLEM: {name}")
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(trio.run(main))
