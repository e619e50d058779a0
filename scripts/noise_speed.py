#!/usr/bin/env python3
"""How fast trio_chat.noise is, and how much a responder keeps after the handshake.

    .venv/bin/python scripts/noise_speed.py [--handshakes 2000] [--records 20000]

Prints, in process CPU time (best of several rounds, so that other load on the machine
counts as little as possible):

- µs per complete NK handshake on each side: the initiator builds its state, writes
  message 1, reads message 2 and splits; the responder builds its state, reads message 1,
  writes message 2 and splits. The sides run in bulk, one after the other;
- µs per `RecordCipher.seal` and `RecordCipher.open` of 400-byte and 1200-byte records;
- bytes a responder holds per session after Split, measured over many sessions kept
  alive at once: the Python heap (tracemalloc) and the process's resident memory, which
  also counts the native cipher contexts.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from trio_chat.noise import HandshakeState, RecordCipher, generate_keypair

ROUNDS = 5


def best_cpu_us(action: Callable[[], object], count: int, rounds: int = ROUNDS) -> float:
    """The best of `rounds` runs of `action` `count` times, in CPU µs per call."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time_ns()
        for _ in range(count):
            action()
        best = min(best, (time.process_time_ns() - start) / count / 1000)
    return best


def handshake_cpu_us(count: int) -> tuple[float, float]:
    """CPU µs per handshake for (initiator, responder), best of ROUNDS."""
    static_private, static_public = generate_keypair()
    best_initiator = best_responder = float("inf")
    for _ in range(ROUNDS):
        start = time.process_time_ns()
        initiators = [HandshakeState.initiator(static_public, b"trio-chat") for _ in range(count)]
        first_messages = [state.write_message(b"") for state in initiators]
        initiator_ns = time.process_time_ns() - start

        start = time.process_time_ns()
        second_messages = []
        for message in first_messages:
            responder = HandshakeState.responder(static_private, b"trio-chat")
            responder.read_message(message)
            second_messages.append(responder.write_message(b""))
            responder.split()
        responder_ns = time.process_time_ns() - start

        start = time.process_time_ns()
        for state, message in zip(initiators, second_messages, strict=True):
            state.read_message(message)
            state.split()
        initiator_ns += time.process_time_ns() - start

        best_initiator = min(best_initiator, initiator_ns / count / 1000)
        best_responder = min(best_responder, responder_ns / count / 1000)
    return best_initiator, best_responder


def record_pair() -> tuple[RecordCipher, RecordCipher]:
    """An upstream (initiator seals, responder opens) pair of record ciphers."""
    static_private, static_public = generate_keypair()
    initiator = HandshakeState.initiator(static_public)
    responder = HandshakeState.responder(static_private)
    responder.read_message(initiator.write_message(b""))
    initiator.read_message(responder.write_message(b""))
    sender, _ = initiator.split()
    receiver, _ = responder.split()
    return RecordCipher.from_cipher_state(sender), RecordCipher.from_cipher_state(receiver)


def record_cpu_us(size: int, count: int) -> tuple[float, float]:
    """CPU µs per seal and per open of a `size`-byte record with a 12-byte header as AD."""
    sender, receiver = record_pair()
    payload = os.urandom(size)
    header = os.urandom(12)
    sealed = sender.seal(7, header, payload)
    assert receiver.open(7, header, sealed) == payload
    return (
        best_cpu_us(lambda: sender.seal(7, header, payload), count),
        best_cpu_us(lambda: receiver.open(7, header, sealed), count),
    )


def resident_bytes() -> int | None:
    """Current resident set size, where /proc tells it (Linux)."""
    statm = Path("/proc/self/statm")
    if not statm.exists():
        return None
    return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def keep_sessions(
    static_private: bytes, first_messages: list[bytes]
) -> list[tuple[RecordCipher, RecordCipher, bytes]]:
    """What a server keeps per session: the two record ciphers and the handshake hash."""
    kept = []
    for message in first_messages:
        responder = HandshakeState.responder(static_private)
        responder.read_message(message)
        responder.write_message(b"")
        receive, send = responder.split()
        kept.append(
            (
                RecordCipher.from_cipher_state(receive),
                RecordCipher.from_cipher_state(send),
                responder.handshake_hash,
            )
        )
    return kept


def responder_state_bytes(count: int) -> tuple[float | None, float]:
    """Bytes per session kept by a responder after Split: (resident, Python heap).

    Two separate passes, since tracemalloc's own bookkeeping would swell the resident
    figure. The first messages are made beforehand so that only the responders'
    allocations are counted.
    """
    static_private, static_public = generate_keypair()
    first_messages = [
        HandshakeState.initiator(static_public).write_message(b"") for _ in range(count)
    ]

    gc.collect()
    rss_before = resident_bytes()
    kept = keep_sessions(static_private, first_messages)
    gc.collect()
    rss_after = resident_bytes()
    assert len(kept) == count
    del kept
    rss = None if rss_before is None or rss_after is None else (rss_after - rss_before) / count

    gc.collect()
    tracemalloc.start()
    heap_before, _ = tracemalloc.get_traced_memory()
    kept = keep_sessions(static_private, first_messages)
    gc.collect()
    heap_after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(kept) == count
    return rss, (heap_after - heap_before) / count


def main() -> None:
    parser = argparse.ArgumentParser(description="Speed and state size of trio_chat.noise.")
    parser.add_argument("--handshakes", type=int, default=2000)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--sessions", type=int, default=20000)
    args = parser.parse_args()

    print(f"python {sys.version.split()[0]}, CPU time, best of {ROUNDS} rounds")
    initiator_us, responder_us = handshake_cpu_us(args.handshakes)
    print(f"NK handshake, initiator side: {initiator_us:8.1f} µs")
    print(f"NK handshake, responder side: {responder_us:8.1f} µs")
    for size in (400, 1200):
        seal_us, open_us = record_cpu_us(size, args.records)
        print(f"seal {size:5d}-byte record:      {seal_us:8.2f} µs")
        print(f"open {size:5d}-byte record:      {open_us:8.2f} µs")
    rss, heap = responder_state_bytes(args.sessions)
    if rss is not None:
        print(f"responder after Split, resident:    {rss:6.0f} bytes per session")
    print(f"responder after Split, Python heap: {heap:6.0f} bytes per session")


if __name__ == "__main__":
    main()
