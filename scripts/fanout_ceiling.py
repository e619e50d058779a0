#!/usr/bin/env python3
"""The most a daemon written in Python could do on this machine in the bench's fan-out
and latency workloads, keeping only the two promises they are measured with: what is
sent is on disk first, and each copy is sealed for its receiver alone.

    .venv/bin/python scripts/fanout_ceiling.py [--receivers 50] [--batch 5] [--rounds 400]
    .venv/bin/python scripts/fanout_ceiling.py --rate 2000 --seconds 14

The bench's workloads (`scripts/bench.py --only fanout,latency`) with everything else
left out of the server: no sessions, handshakes or logins, no link (no sequence numbers
to keep, acknowledgements, resending or timers), no limits, no Trio. A blocking
`recvfrom` loop takes in what the sender sent (and whatever else came meanwhile, as a
turn of the daemon's loop does), commits it to SQLite in one transaction (write-ahead
log presized, `synchronous = FULL`, as the daemon), and sends each receiver the messages
as one `msgs` frame in a payload shaped like the daemon's, sealed with AES-256-GCM
under the receiver's own key. The receivers, in two processes at nice +5 as the
bench's, open, decode and keep what comes. Without `--rate`, the closed loop: the
sender sends a batch once every receiver has the last, and the figure is deliveries a
second. With it, the sender says one message at a time at that pace, and the figures
are the p50 and p99 from send to receipt, from half a second in.

Each is run twice: with the commit, and with SQLite not syncing (`synchronous = OFF`,
nothing durable; `--durable-only` leaves this one out), each with the CPU seconds of the
server and of the receiving processes. Set them beside the seed's and trio-chat's from
`scripts/bench.py` run in the same minutes: what trio-chat's figures could at most
become on this machine in CPython.

`--server-cost US` and `--receiver-cost US` price a saving before it is built: the
server then also spins for that many microseconds after each datagram it sends, and
each receiving process after each datagram it takes in, standing for the work a real
daemon and client core do beside the seal (a link's bookkeeping, decoding, events).
Given the CPU that trio-chat's daemon and clients spend, the figures show what each side
would be worth making cheaper.
"""

from __future__ import annotations

import argparse
import array
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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

import msgspec
from benchmarks.servers import cpu_split
from benchmarks.workloads import percentile
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HOST = "127.0.0.1"
NICE_RECEIVERS = 5
"""As the bench's receiving processes: the load generators give way to the server."""
ROUND_WAIT = 5.0
"""Seconds a round may take before the run is given up (a datagram lost on the way)."""
HELLO = b"H"
END = "end"
"""The text of the last message of a run: each receiver then reports what it got."""
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


def spin(seconds: float) -> None:
    """Spend `seconds` of this thread's CPU (nothing if 0): work that stands for other
    work. Counted on the thread's CPU clock, not the wall's: a process made to wait for
    a core meanwhile still spends it all, as the work it stands for would."""
    if seconds > 0:
        end = time.thread_time() + seconds
        while time.thread_time() < end:
            pass


def serve(
    sock: socket.socket, database: Path, durable: bool, keys: Sequence[bytes], cost: float
) -> None:
    """The server: `keys[-1]` is the sender's, the others one per receiver; `cost`
    seconds of spinning after each datagram sent.

    What came while it was busy is taken in at once and shares one commit and one
    datagram per receiver, as a turn of the daemon's loop does.
    """
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
        texts: list[str] = []
        while True:
            if data[:1] == HELLO:
                addresses[int(data[1:])] = address
            else:
                texts.extend(texts_of(open_sealed(sender, data)))
            try:
                data, address = sock.recvfrom(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
        if not texts:
            continue
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
            spin(cost)


def receive(
    port: int,
    indexes: Sequence[int],
    keys: Sequence[bytes],
    report: Connection,
    progress: bool,
    expected: int,
    cost: float,
) -> None:
    """Receivers `indexes`, one socket each: report (with `progress`) the newest message
    all of them have, and once each has the last (`END`), every message's send stamp and
    delay. Room for `expected` messages each is made first: lists that grew during the
    stream would be copied, every receiver's at the same message (the bench's
    `Tally.reserve`). `cost` seconds of spinning after each datagram."""
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
    room = expected * len(indexes)
    texts: list[str] = [""] * room
    times = array.array("d", bytes(8 * room))
    """What came and when, kept raw: read once the run is over, as the bench's tallies."""
    count = 0
    report.send(0)  # ready
    cpu = time.process_time()
    reported = 0
    ended: set[int] = set()
    while len(ended) < len(sockets):
        for fd, _mask in poller.poll():
            sock, aead = sockets[fd]
            payload = decode(open_sealed(aead, sock.recv(65536)))
            now = time.monotonic()
            messages = payload.frames[-1][1].messages
            for message in messages:
                if count < room:
                    texts[count] = message.text
                    times[count] = now
                else:
                    texts.append(message.text)
                    times.append(now)
                count += 1
            if messages[-1].text == END:
                ended.add(fd)
            newest[fd] = messages[-1].id
            spin(cost)
        everyone = min(newest.values())
        if progress and everyone > reported:
            reported = everyone
            report.send(everyone)
    cpu = time.process_time() - cpu  # the stream's, not the reading of it below
    stamps, delays = array.array("d"), array.array("d")
    for text, now in zip(texts[:count], times[:count], strict=True):
        if text != END:
            stamp = float(text.partition("_")[2])
            stamps.append(stamp)
            delays.append(now - stamp)
    report.send((stamps.tobytes(), delays.tobytes(), cpu))


@dataclass
class Setup:
    """A server and its receiving processes, running."""

    sender: socket.socket
    aead: AESGCM
    reports: list[Connection]
    server_pid: int

    def server_cpu(self) -> float:
        return sum(cpu_split(self.server_pid))

    def finish(self, number: int) -> tuple[list[tuple[float, float]], float]:
        """Send the last message (`END`, as batch `number`); return each message's send
        stamp and delay at each receiver, and the receiving processes' CPU seconds."""
        self.sender.send(seal(self.aead, number, msgspec.json.encode([END])))
        got: list[tuple[float, float]] = []
        cpu = 0.0
        for reader in self.reports:
            while True:
                if not reader.poll(ROUND_WAIT):
                    raise RuntimeError("the last message did not reach every receiver")
                last = reader.recv()
                if isinstance(last, tuple):
                    break
            stamps, delays = array.array("d"), array.array("d")
            stamps.frombytes(last[0])
            delays.frombytes(last[1])
            got.extend(zip(stamps, delays, strict=True))
            cpu += last[2]
        return got, cpu


@dataclass
class Figures:
    """One run's figures: its rate or delays, and the CPU each side spent."""

    result: str
    server_cpu: float
    receivers_cpu: float

    def line(self, how: str) -> str:
        cpu = f"CPU s: server {self.server_cpu:.2f}, receivers {self.receivers_cpu:.2f}"
        return f"  {how:26} {self.result}  {cpu}"


@dataclass(frozen=True)
class Costs:
    """Seconds spun after each datagram: by the server (each sent), by a receiving
    process (each taken in)."""

    server: float = 0.0
    receiver: float = 0.0


@contextmanager
def running(
    receivers: int, durable: bool, progress: bool, expected: int, costs: Costs
) -> Iterator[Setup]:
    """Start the server and two receiving processes; stop them and remove the database."""
    context = multiprocessing.get_context("fork")
    keys = [os.urandom(32) for _ in range(receivers + 1)]
    folder = Path(tempfile.mkdtemp(prefix="trio-chat-ceiling-"))
    server_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server_sock.bind((HOST, 0))
    port = server_sock.getsockname()[1]
    server = context.Process(
        target=serve,
        args=(server_sock, folder / "ceiling.db", durable, keys, costs.server),
        daemon=True,
    )
    workers = [server]
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    reports: list[Connection] = []
    try:
        server.start()
        for part in (range(0, receivers // 2), range(receivers // 2, receivers)):
            reader, writer = context.Pipe(duplex=False)
            worker = context.Process(
                target=receive,
                args=(port, list(part), keys, writer, progress, expected + 1, costs.receiver),
                daemon=True,
            )
            worker.start()
            workers.append(worker)
            writer.close()  # the worker's copy is the one that writes
            reports.append(reader)
            if not reader.poll(ROUND_WAIT):
                raise RuntimeError("a receiving process did not start")
            reader.recv()
        time.sleep(0.2)  # the receivers' hellos reach the server before the first batch
        sender.connect((HOST, port))
        yield Setup(sender, AESGCM(keys[-1]), reports, server.pid or 0)
    finally:
        sender.close()
        for worker in workers:
            worker.kill()
            worker.join()
        for reader in reports:
            reader.close()
        server_sock.close()
        shutil.rmtree(folder, ignore_errors=True)


def closed_loop(
    receivers: int, batch: int, rounds: int, durable: bool, costs: Costs = Costs()
) -> Figures:
    """Deliveries a second of `rounds` batches, each sent once all have the last."""
    with running(receivers, durable, True, rounds * batch, costs) as setup:
        encode = msgspec.json.Encoder().encode
        have = dict.fromkeys(setup.reports, 0)
        cpu = setup.server_cpu()
        began = time.perf_counter()
        for number in range(1, rounds + 1):
            texts = [f"m{(number - 1) * batch + k}_{time.monotonic():.6f}" for k in range(batch)]
            setup.sender.send(seal(setup.aead, number, encode(texts)))
            while min(have.values()) < number * batch:
                ready = wait(setup.reports, ROUND_WAIT)
                if not ready:
                    raise RuntimeError(f"round {number} did not reach every receiver")
                for reader in setup.reports:
                    while reader in ready and reader.poll():
                        have[reader] = reader.recv()
        elapsed = time.perf_counter() - began
        server_cpu = setup.server_cpu() - cpu
        _got, receivers_cpu = setup.finish(rounds + 1)
    rate = rounds * batch * receivers / elapsed
    result = f"{rate:9,.0f} deliveries/s  {elapsed / rounds * 1000:.3f} ms a round"
    return Figures(result, server_cpu, receivers_cpu)


def paced(
    receivers: int, rate: float, seconds: float, durable: bool, costs: Costs = Costs()
) -> Figures:
    """The p50 and p99 from send to receipt of messages said one at a time at `rate` a
    second, from half a second in to the end (the bench's latency workload counts from
    half a second in to its storm, on 49 receivers in two processes and one beside the
    sender; here all are in the two)."""
    count = int(rate * seconds)
    with running(receivers, durable, False, count, costs) as setup:
        encode = msgspec.json.Encoder().encode
        cpu = setup.server_cpu()
        began = time.monotonic()
        for number in range(1, count + 1):
            pause = began + (number - 1) / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            text = f"m{number - 1}_{time.monotonic():.6f}"
            setup.sender.send(seal(setup.aead, number, encode([text])))
        server_cpu = setup.server_cpu() - cpu
        got, receivers_cpu = setup.finish(count + 1)
    delays = [delay for stamp, delay in got if stamp >= began + 0.5]
    p50, p99 = percentile(delays, 0.5) * 1000, percentile(delays, 0.99) * 1000
    return Figures(f"p50 {p50:.2f} ms  p99 {p99:.2f} ms", server_cpu, receivers_cpu)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--receivers", type=int, default=50)
    parser.add_argument("--batch", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="messages a second, paced (the latency workload)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="how long, with --rate")
    parser.add_argument(
        "--server-cost", type=float, default=0.0, metavar="US", help="spun per datagram sent"
    )
    parser.add_argument(
        "--receiver-cost", type=float, default=0.0, metavar="US", help="spun per datagram taken"
    )
    parser.add_argument("--durable-only", action="store_true", help="leave out the unsynced run")
    args = parser.parse_args(argv)
    if args.receivers < 2 or args.batch < 1 or args.rounds < 1 or args.rate < 0:
        parser.error("at least 2 receivers, 1 message a batch and 1 round, and no negative rate")
    if args.server_cost < 0 or args.receiver_cost < 0:
        parser.error("costs are microseconds, 0 or more")
    costs = Costs(args.server_cost / 1e6, args.receiver_cost / 1e6)
    if args.rate:
        print(
            f"{args.receivers} receivers, {args.rate:g} messages a second for {args.seconds:g} s:"
        )
    else:
        print(f"{args.receivers} receivers, {args.rounds} batches of {args.batch}:")
    if costs != Costs():
        print(f"  spinning {args.server_cost:g} us a datagram sent, {args.receiver_cost:g} taken")
    runs = ((True, "committed before sending"), (False, "not synced"))
    for durable, how in runs[:1] if args.durable_only else runs:
        try:
            if args.rate:
                figures = paced(args.receivers, args.rate, args.seconds, durable, costs)
            else:
                figures = closed_loop(args.receivers, args.batch, args.rounds, durable, costs)
        except RuntimeError as error:
            print(f"The run stopped: {error}.", file=sys.stderr)
            return 1
        print(figures.line(how))
    return 0


if __name__ == "__main__":
    sys.exit(main())
