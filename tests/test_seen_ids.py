"""`SeenIds`: which message ids a connection already handed on, in a fixed space."""

from __future__ import annotations

import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from trio_chat import client_protocol, wire
from trio_chat.client_protocol.messages import SeenIds
from trio_chat.events import PublicMessage

from .test_hostile_daemon import HostileDaemon, msg

SPAN = 8

operations = st.lists(
    st.tuples(st.booleans(), st.integers(min_value=0, max_value=5 * SPAN)), max_size=80
)


@given(operations)
def test_an_id_is_seen_from_when_it_is_added_until_one_span_newer_takes_its_slot(
    steps: list[tuple[bool, int]],
) -> None:
    seen = SeenIds(SPAN)
    added: set[int] = set()
    for adding, message_id in steps:
        if adding:
            seen.add(message_id)
            added.add(message_id)
        remembered = {n for n in added if not any(m > n and (m - n) % SPAN == 0 for m in added)}
        assert {n for n in range(5 * SPAN + 1) if n in seen} == remembered
        newest = max(added, default=-1)
        assert all(n in seen for n in added if n > newest - SPAN)


def test_the_largest_id_the_wire_carries_is_remembered() -> None:
    seen = SeenIds(SPAN)
    seen.add(wire.MAX_SEQ)
    assert wire.MAX_SEQ in seen and wire.MAX_SEQ - SPAN not in seen and 0 not in seen


def test_a_message_sent_again_is_shown_once_and_one_long_forgotten_again() -> None:
    daemon, client = HostileDaemon.with_client()
    most = client_protocol.SEEN_MEMORY
    daemon.send(client, msg(1), msg(2), msg(1), msg(2), msg(3))
    daemon.send(client, msg(2 + most), msg(3))
    shown = [e.id for e in daemon.events if isinstance(e, PublicMessage)]
    # 3 is within the newest SEEN_MEMORY ids (it is the oldest of them): not again.
    assert shown == [1, 2, 3, 2 + most]
    daemon.send(client, msg(2))  # its place taken by an id SEEN_MEMORY newer: shown
    shown = [e.id for e in daemon.events if isinstance(e, PublicMessage)]
    assert shown == [1, 2, 3, 2 + most, 2]


def test_a_connection_holds_at_most_160_kb_for_the_messages_it_has_seen() -> None:
    # Every connection of a bot (or of the bench's receiving processes) would otherwise
    # hold megabytes, and rebuild them at the same message as all the others.
    daemon, client = HostileDaemon.with_client()

    def receive(first: int, count: int) -> None:
        for start in range(first, first + count, 10):
            daemon.send(client, *(msg(n) for n in range(start, start + 10)))
            daemon.events.clear()

    receive(1, 100)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        receive(101, client_protocol.SEEN_MEMORY + 5_000)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 192 * 1024  # the whole ring is 160 KB
    assert client.ready and not client.closed


def test_a_connection_that_has_seen_a_few_messages_holds_little_for_them() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        rings = [SeenIds(client_protocol.SEEN_MEMORY) for _ in range(1_000)]
        for ring in rings:
            for message_id in range(1, 11):
                ring.add(message_id)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 1_000 * 10 * 1024  # a page each, not the 160 KB of the whole ring
    assert all(10 in ring and 11 not in ring for ring in rings)
