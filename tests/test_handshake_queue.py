"""Handshakes wait their turn: a few `INIT`s per turn of the receive loop, none lost."""

from __future__ import annotations

from collections import Counter

import trio

from trio_chat import wire
from trio_chat.handshake_queue import HandshakeQueue
from trio_chat.secure import initiate


def test_only_inits_are_set_aside_and_a_few_are_answered_per_turn_oldest_first() -> None:
    queue: HandshakeQueue[int] = HandshakeQueue(per_turn=3, backlog=5)
    init = wire.init_datagram(1, b"", bytes(48))
    assert not queue.defer(wire.key_request_datagram(), 0)
    assert not queue.defer(b"\x10" + bytes(40), 0)  # a record: taken at once
    assert not queue.defer(b"", 0)
    assert [queue.defer(init, n) for n in range(7)] == [True] * 5 + [False] * 2
    assert len(queue) == 5
    assert [address for _, address in queue.turn()] == [0, 1, 2]
    assert [address for _, address in queue.turn()] == [3, 4]
    assert queue.turn() == [] and len(queue) == 0
    assert queue.defer(init, 9)  # room again


async def test_a_burst_of_handshakes_is_answered_in_full(daemon: tuple[str, int]) -> None:
    burst = 300
    answered: Counter[int] = Counter()

    async def take_answers(sock: trio.socket.SocketType) -> None:
        while len(answered) < burst:
            answer = wire.parse_datagram_untrusted(await sock.recv(2048))
            if isinstance(answer, wire.Data):
                continue  # a channel opened, saying it is closed for want of a login
            assert isinstance(answer, wire.Response | wire.Retry), answer
            answered[answer.client_index] += 1

    with trio.fail_after(20), trio.socket.socket(type=trio.socket.SOCK_DGRAM) as sock:
        await sock.connect(daemon)
        await sock.send(wire.key_request_datagram())
        key = wire.parse_datagram_untrusted(await sock.recv(2048))
        assert isinstance(key, wire.Key)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(take_answers, sock)  # read as they come: nothing overflows
            for index in range(1, burst + 1):
                await sock.send(initiate(key.public_key, index).datagram())
    assert set(answered) == set(range(1, burst + 1))
    assert set(answered.values()) == {1}
