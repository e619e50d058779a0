"""`SeenIds`: which message ids a connection already handed on, in a fixed space."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_chat import client_protocol, wire
from trio_chat.client_protocol.messages import SeenIds
from trio_chat.events import PublicMessage

from .test_hostile_daemon import TS, HostileDaemon, msg

SPAN = 8

operations = st.lists(
    st.tuples(st.booleans(), st.integers(min_value=0, max_value=5 * SPAN)), max_size=80
)


def check_against_the_model(span: int, steps: list[tuple[bool, int]], ids: list[int]) -> None:
    """Add the ids of the steps that add; after each step, which of `ids` a ring says it
    has seen must be what the model remembers: every id added, but for one that an id a
    multiple of `span` newer has pushed out of its slot."""
    seen = SeenIds(span)
    added: set[int] = set()
    for adding, message_id in steps:
        if adding:
            was_in = message_id in seen
            assert seen.add(message_id) is not was_in  # news exactly when not seen before
            added.add(message_id)
        remembered = {n for n in added if not any(m > n and (m - n) % span == 0 for m in added)}
        assert {n for n in ids if n in seen} == remembered
        newest = max(added, default=-1)
        assert all(n in seen for n in added if n > newest - span)


@given(operations)
def test_an_id_is_seen_from_when_it_is_added_until_one_span_newer_takes_its_slot(
    steps: list[tuple[bool, int]],
) -> None:
    check_against_the_model(SPAN, steps, list(range(5 * SPAN + 1)))


PAGED_SPAN = 2_500
"""Three pages of slots, the last one partly used."""
NEAR_PAGE_EDGES = [
    edge + offset
    for edge in (0, 1_024, 2_048, PAGED_SPAN, PAGED_SPAN + 1_024, 2 * PAGED_SPAN + 2_048)
    for offset in (-1, 0, 1)
    if edge + offset >= 0
]


@given(st.lists(st.tuples(st.booleans(), st.sampled_from(NEAR_PAGE_EDGES)), max_size=60))
def test_ids_at_the_edges_of_the_pages_land_in_slots_of_their_own(
    steps: list[tuple[bool, int]],
) -> None:
    check_against_the_model(PAGED_SPAN, steps, NEAR_PAGE_EDGES)


def test_a_ring_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        SeenIds(0)


def test_the_largest_id_the_wire_carries_is_remembered() -> None:
    seen = SeenIds(SPAN)
    seen.add(wire.MAX_SEQ)
    assert wire.MAX_SEQ in seen and wire.MAX_SEQ - SPAN not in seen and 0 not in seen


def test_a_message_sent_again_is_shown_once() -> None:
    daemon, client = HostileDaemon.with_client()
    most = client_protocol.SEEN_MEMORY
    daemon.send(client, msg(1), msg(2), msg(1), msg(2), msg(3))
    daemon.send(client, msg(2 + most), msg(3))
    shown = [e.id for e in daemon.events if isinstance(e, PublicMessage)]
    # 3 is within SEEN_MEMORY of the newest id (the oldest such): not shown again.
    assert shown == [1, 2, 3, 2 + most]


def test_a_connection_holds_a_fixed_160_kb_at_most_for_the_messages_it_has_seen() -> None:
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
    assert grown < 192 * 1024  # the whole ring (160 KB), and a little besides
    assert client.ready and not client.closed
    newest = 100 + client_protocol.SEEN_MEMORY + 5_000
    again = [newest - client_protocol.SEEN_MEMORY + 1, 10_240, 20_479, 20_480, newest]
    daemon.send(client, *(msg(n) for n in again))  # each page of the ring: all remembered
    assert [e for e in daemon.events if isinstance(e, PublicMessage)] == []


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


def test_ones_own_message_sent_back_is_not_shown_again() -> None:
    daemon, client = HostileDaemon.with_client()
    said = client.say("hi")
    daemon.send(client, wire.Ok(re=daemon.answer(client, said, wire.Say), id=7, ts=TS))
    assert said.done and said.error is None
    daemon.send(client, msg(7, **{"from": "alice"}))  # in a resumed session's history, say
    assert [e for e in daemon.events if isinstance(e, PublicMessage)] == []


def test_ones_own_message_that_answers_its_say_is_shown_once() -> None:
    # Stored before the session was lost, it comes back instead of an `ok`.
    daemon, client = HostileDaemon.with_client()
    said = client.say("hi")
    daemon.answer(client, said, wire.Say)
    (cid,) = [frame.cid for _seq, frame in daemon.frames if isinstance(frame, wire.Say)]
    mine = msg(7, **{"from": "alice", "cid": cid})
    daemon.send(client, mine, mine)
    assert said.done and said.error is None
    assert [e for e in daemon.events if isinstance(e, PublicMessage)] == []
