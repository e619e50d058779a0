#!/usr/bin/env python3
"""The most a daemon written in Python could fan out on this machine, keeping only the two
promises the fan-out goal is measured with: each batch is on disk before it is sent, and
each copy is sealed for its receiver alone.

    .venv/bin/python scripts/fanout_ceiling.py [--receivers 50] [--batch 5] [--rounds 400]

The bench's fan-out workload (`scripts/bench.py --only fanout`) with everything else left
out of the server: no sessions, handshakes or logins, no link (no sequence numbers to
keep, acknowledgements, resending or timers), no limits, no Trio. A blocking `recvfrom`
loop opens the sender's datagram, commits its batch to SQLite (write-ahead log,
`synchronous = FULL`, one commit a batch, as the daemon does), and sends each receiver
the batch as one `msgs` frame in a payload shaped like the daemon's, sealed with
AES-256-GCM under the receiver's own key. The receivers, in two processes at nice +5 as
the bench's, open and decode each datagram and report the newest message all of theirs
have; the sender sends the next batch once every receiver has the last.

It prints deliveries a second twice: with the commit, and with SQLite not syncing
(`synchronous = OFF`, nothing durable). Set them beside the seed's fan-out measured in
the same minutes (`scripts/bench.py --only fanout`): what trio-chat's own figure could
at most become on this machine in CPython.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import select
import shutil
import socket
import sqlite3
import struct
import sys
import tempfile
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HOST = "127.0.0.1"
NICE_RECEIVERS = 5
"""As the bench's receiving processes: the load generators give way to the server."""
ROUND_WAIT = 5.0
"""Seconds a round may take before the run is given up (a datagram lost on the way)."""
HELLO = b"H"
NONCE = struct.Struct(">4xQ")
"""A 12-byte nonce from a counter, as the daemon's records have (Noise's nonce form)."""


class Msg(msgspec.Struct):
    id: int
    ts: str
    sender: str = msgspec.field(name="from")
    text: str
    t: str = "msg"


class Msgs(msgspec.Struct):
    messages: list[Msg]
    t: str = "msgs"


class Payload(msgspec.Struct):
    ack: int
    echo: int
    frames: list[tuple[int, Msgs]]


def seal(aead: AESGCM, number: int, body: bytes) -> bytes:
    nonce = NONCE.pack(number)
    return nonce + aead.encrypt(nonce, body, None)


def open_sealed(aead: AESGCM, datagram: bytes) -> bytes:
    return aead.decrypt(datagram[: NONCE.size], datagram[NONCE.size :], None)


LOG_BYTES = 1100 * 4096
"""The write-ahead log's working size: SQLite's checkpoint threshold and a little more."""


def presize_log(db: sqlite3.Connection, database: Path) -> None:
    """Grow the log to its working size first, as the daemon does (`presize_log`), so
    that no commit of the run pays for the log growing: a transaction that spills that
    much into it, rolled back."""
    db.execute("PRAGMA cache_size = 16")
    db.execute("BEGIN IMMEDIATE")
    db.execute("CREATE TABLE room (b BLOB)")
    db.execute("INSERT INTO room VALUES (zeroblob(?))", (LOG_BYTES,))
    db.execute("ROLLBACK")
    db.execute("PRAGMA cache_size = -2000")
    log = os.open(f"{database}-wal", os.O_RDONLY)
    try:
        os.fsync(log)
    finally:
        os.close(log)


def serve(sock: socket.socket, database: Path, durable: bool, keys: Sequence[bytes]) -> None:
    """The server: `keys[-1]` is the sender's, the others one per receiver."""
    db = sqlite3.connect(database, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'OFF'}")
    db.execute("CREATE TABLE messages (id INTEGER PRIMARY KEY, ts TEXT, text TEXT)")
    presize_log(db, database)
    aeads = [AESGCM(key) for key in keys]
    sender = aeads.pop()
    addresses: dict[int, tuple[str, int]] = {}
    encode = msgspec.json.Encoder().encode
    texts_of = msgspec.json.Decoder(list[str]).decode
    number = last_id = 0
    while True:
        data, address = sock.recvfrom(65536)
        if data[:1] == HELLO:
            addresses[int(data[1:])] = address
            continue
        texts = texts_of(open_sealed(sender, data))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        rows = [(last_id + 1 + offset, stamp, text) for offset, text in enumerate(texts)]
        last_id += len(rows)
        db.execute("BEGIN")
        db.executemany("INSERT INTO messages VALUES (?, ?, ?)", rows)
        db.execute("COMMIT")
        number += 1
        messages = [Msg(id, ts, "sender", text) for id, ts, text in rows]
        body = encode(Payload(number, 0, [(number, Msgs(messages))]))
        for index, aead in enumerate(aeads):
            sock.sendto(seal(aead, number, body), addresses[index])


def receive(port: int, indexes: Sequence[int], keys: Sequence[bytes], report: Connection) -> None:
    """Receivers `indexes`, one socket each; report the newest message all of them have."""
    os.setpriority(os.PRIO_PROCESS, 0, NICE_RECEIVERS)
    decode = msgspec.json.Decoder(Payload).decode
    poller = select.epoll()
    sockets: dict[int, tuple[socket.socket, AESGCM]] = {}
    newest: dict[int, int] = {}
    for index in indexes:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect((HOST, port))
        sock.setblocking(False)
        sock.send(HELLO + str(index).encode())
        sockets[sock.fileno()] = (sock, AESGCM(keys[index]))
        newest[sock.fileno()] = 0
        poller.register(sock.fileno(), select.EPOLLIN)
    report.send(0)  # ready
    reported = 0
    while True:
        for fd, _mask in poller.poll():
            sock, aead = sockets[fd]
            payload = decode(open_sealed(aead, sock.recv(65536)))
            newest[fd] = payload.frames[-1][1].messages[-1].id
        everyone = min(newest.values())
        if everyone > reported:
            reported = everyone
            report.send(everyone)


def run(receivers: int, batch: int, rounds: int, durable: bool) -> float:
    """Deliveries a second of `rounds` closed-loop batches."""
    context = multiprocessing.get_context("fork")
    keys = [os.urandom(32) for _ in range(receivers + 1)]
    folder = Path(tempfile.mkdtemp(prefix="trio-chat-ceiling-"))
    server_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server_sock.bind((HOST, 0))
    port = server_sock.getsockname()[1]
    server = context.Process(
        target=serve, args=(server_sock, folder / "ceiling.db", durable, keys), daemon=True
    )
    workers = [server]
    try:
        server.start()
        reports = []
        for part in (range(0, receivers // 2), range(receivers // 2, receivers)):
            reader, writer = context.Pipe(duplex=False)
            worker = context.Process(
                target=receive, args=(port, list(part), keys, writer), daemon=True
            )
            worker.start()
            workers.append(worker)
            if not reader.poll(ROUND_WAIT):
                raise RuntimeError("a receiving process did not start")
            reader.recv()
            reports.append(reader)
        time.sleep(0.2)  # the receivers' hellos reach the server before the first batch
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.connect((HOST, port))
        aead, encode = AESGCM(keys[-1]), msgspec.json.Encoder().encode
        have = dict.fromkeys(reports, 0)
        began = time.perf_counter()
        for number in range(1, rounds + 1):
            texts = [f"m{(number - 1) * batch + k}_{time.monotonic():.6f}" for k in range(batch)]
            sender.send(seal(aead, number, encode(texts)))
            while min(have.values()) < number * batch:
                ready = wait(reports, ROUND_WAIT)
                if not ready:
                    raise RuntimeError(f"round {number} did not reach every receiver")
                for reader in reports:
                    while reader in ready and reader.poll():
                        have[reader] = reader.recv()
        elapsed = time.perf_counter() - began
        sender.close()
    finally:
        for worker in workers:
            worker.kill()
            worker.join()
        server_sock.close()
        shutil.rmtree(folder, ignore_errors=True)
    return rounds * batch * receivers / elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--receivers", type=int, default=50)
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args(argv)
    if args.receivers < 2 or args.batch < 1 or args.rounds < 1:
        parser.error("at least 2 receivers, 1 message a batch and 1 round")
    print(f"{args.receivers} receivers, {args.rounds} batches of {args.batch}:")
    for durable, how in ((True, "committed before sending"), (False, "not synced")):
        try:
            rate = run(args.receivers, args.batch, args.rounds, durable)
        except RuntimeError as error:
            print(f"The run stopped: {error}.", file=sys.stderr)
            return 1
        round_ms = args.batch * args.receivers / rate * 1000
        print(f"  {how:26} {rate:9,.0f} deliveries/s  {round_ms:.3f} ms a round")
    return 0


if __name__ == "__main__":
    sys.exit(main())
