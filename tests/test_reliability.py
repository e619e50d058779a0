"""The sans-I/O reliable link, driven by hand-stepped time over a simulated network."""

from __future__ import annotations

import itertools

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from trio_chat import wire
from trio_chat.client_protocol import ClientConfig
from trio_chat.engine.config import daemon_link
from trio_chat.reliability import Link, LinkConfig
from trio_chat.testing.links import channel_pair, plain_open, plain_seal
from trio_chat.testing.netsim import Conditions, Network


def frame(n: int, pad: int = 0) -> bytes:
    return wire.encode({"t": "notice", "text": f"{n}" + "x" * pad})


def number(raw: msgspec.Raw | bytes) -> int:
    decoded = wire.decode_server_frame_untrusted(raw)
    assert isinstance(decoded, wire.Notice)
    return int(decoded.text.rstrip("x"))


def feed(link: Link, datagram: bytes, now: float) -> list[int]:
    pn, packet = plain_open(datagram)
    return [
        number(raw)
        for _, raw in link.receive(pn, packet.ack, packet.sack, packet.frames, now, packet.echo)
    ]


class Simulation:
    """Two links joined by a `Network`; time advances only when `run` steps it."""

    def __init__(self, seed: int, conditions: Conditions, config: LinkConfig | None = None) -> None:
        self.links = {"a": Link(plain_seal, config), "b": Link(plain_seal, config)}
        self.network = Network(seed, {"a": conditions, "b": conditions})
        self.received: dict[str, list[int]] = {"a": [], "b": []}
        self.now = 0.0
        self.datagram_sizes: list[int] = []

    def flush(self) -> None:
        for name, link in self.links.items():
            link.handle_timer(self.now)
            other = "b" if name == "a" else "a"
            for datagram in link.datagrams_to_send(self.now):
                self.datagram_sizes.append(len(datagram))
                self.network.send(other, datagram, self.now)

    def step(self) -> bool:
        """Advance to the next event; False once nothing is left to happen."""
        times = [t for t in (self.network.next_arrival(),) if t is not None]
        times += [t for link in self.links.values() if (t := link.next_timer()) is not None]
        if not times:
            return False
        self.now = max(self.now, min(times))
        for destination, datagram in self.network.due(self.now):
            self.received[destination] += feed(self.links[destination], datagram, self.now)
        self.flush()
        return True

    def run(self, until: float) -> None:
        while self.now < until and self.step():
            pass


@pytest.mark.parametrize("seed", range(12))
def test_exactly_once_in_order_under_loss_duplication_and_reordering(seed: int) -> None:
    bad = Conditions(loss=0.3, duplicate=0.2, reorder=0.3, delay=0.02, jitter=0.01)
    sim = Simulation(seed, bad)
    count = 400
    # Both directions carry data, fed in bursts while the simulation runs.
    for burst in range(0, count, 40):
        for n in range(burst, burst + 40):
            sim.links["a"].send(frame(n))
            sim.links["b"].send(frame(n + 10_000))
        sim.flush()
        sim.run(until=sim.now + 0.5)
    sim.run(until=sim.now + 600)

    assert sim.received["b"] == list(range(count))
    assert sim.received["a"] == list(range(10_000, 10_000 + count))
    assert sim.network.dropped > 0 and sim.network.duplicated > 0
    for link in sim.links.values():
        assert link.failure is None
        assert link.idle
        assert link.next_timer() is None
        assert link.retransmissions > 0
    # Once everything is acknowledged, nothing more is ever sent.
    sent = sim.network.sent
    sim.now += 3600
    sim.flush()
    assert sim.network.sent == sent


def test_frames_are_coalesced_into_datagrams_that_never_exceed_1200_bytes() -> None:
    sim = Simulation(0, Conditions())
    for n in range(30):
        sim.links["a"].send(frame(n))
    datagrams = sim.links["a"].datagrams_to_send(0.0)
    assert len(datagrams) == 1
    assert feed(sim.links["b"], datagrams[0], 0.0) == list(range(30))

    big = Simulation(0, Conditions())
    for n in range(30):
        big.links["a"].send(frame(n, pad=700 if n % 2 else 300))
    datagrams = big.links["a"].datagrams_to_send(0.0)
    assert all(len(d) <= wire.MAX_DATAGRAM for d in datagrams)
    assert len(datagrams) < 30  # small frames share datagrams with their neighbours
    got = [n for d in datagrams for n in feed(big.links["b"], d, 0.0)]
    assert got == list(range(30))


def test_a_full_size_frame_fits_even_with_selective_acks_and_extra_fields() -> None:
    _client, server = channel_pair()
    link = Link(server.seal)
    link._pn = 2**60  # packet numbers as long as they get
    link.highest_pn = 2**53 - 1
    # Give the link a receive state with many gaps, and sequence numbers as long as they
    # get, so its SACK field is as long as it gets.
    link._receive_next = 2**53 - 2**20
    for seq in range(link._receive_next + 2, link._receive_next + 40, 2):
        link.receive(0, 0, [], [(seq, msgspec.Raw(b"{}"))], 0.0)
    link.extra = b',"response":"' + b"r" * 64 + b'"'
    link.send(wire.encode({"t": "notice", "text": "x" * (wire.MAX_FRAME - 26)}))
    datagrams = link.datagrams_to_send(1.0)
    assert len(datagrams) == 1
    assert len(datagrams[0]) <= wire.MAX_DATAGRAM
    with pytest.raises(ValueError):
        link.send(b"{" + b" " * wire.MAX_FRAME + b"}")


def test_duplicates_are_suppressed_and_acknowledged_at_once() -> None:
    sender, receiver = Link(plain_seal), Link(plain_seal)
    sender.send(frame(1))
    (datagram,) = sender.datagrams_to_send(0.0)
    assert feed(receiver, datagram, 0.01) == [1]
    assert receiver.next_timer() == pytest.approx(0.01 + receiver.config.ack_delay)
    assert feed(receiver, datagram, 0.02) == []
    assert receiver.duplicates == 1
    assert receiver.next_timer() == 0.02  # a duplicate means our ack was lost: ack now
    (ack,) = receiver.datagrams_to_send(0.02)
    feed(sender, ack, 0.03)
    assert sender.idle


def test_a_frozen_ack_reports_what_had_arrived_and_nothing_since() -> None:
    """A leaving end freezes its acknowledgement: later frames are still handed on in
    order, but no datagram it sends acknowledges them, cumulatively or selectively."""
    sender, receiver = Link(plain_seal), Link(plain_seal)
    sender.send(frame(1))
    (first,) = sender.datagrams_to_send(0.0)
    assert feed(receiver, first, 0.01) == [1]
    assert receiver.freeze_ack() == 1
    sender.send(frame(2))
    sender.send(frame(3))
    (second,) = sender.datagrams_to_send(0.02)
    assert feed(receiver, second, 0.03) == [2, 3]
    assert receiver.freeze_ack() == 1  # set once
    receiver.send(frame(9))
    receiver.acknowledge_now(0.03)
    for datagram in receiver.datagrams_to_send(0.03):
        _pn, packet = plain_open(datagram)
        assert (packet.ack, list(packet.sack)) == (1, [])
    assert receiver.received_up_to == 3


def exchange(sender: Link, receiver: Link, now: float, rtt: float) -> float:
    """One frame from `sender`, acknowledged at once; return the time after the ack."""
    sender.send(frame(0))
    (datagram,) = sender.datagrams_to_send(now)
    feed(receiver, datagram, now + rtt / 2)
    receiver.acknowledge_now(now + rtt / 2)
    (ack,) = receiver.datagrams_to_send(now + rtt / 2)
    feed(sender, ack, now + rtt)
    return now + rtt


def test_rtt_is_estimated_and_the_probe_timeout_has_no_floor() -> None:
    config = LinkConfig(peer_ack_delay=0.010)
    sender, receiver = Link(plain_seal, config), Link(plain_seal)
    assert sender.pto == pytest.approx(0.333 + 4 * 0.1665 + 0.010)  # before any sample
    now = 0.0
    for _ in range(30):
        now = exchange(sender, receiver, now, rtt=0.002)
    assert sender.srtt == pytest.approx(0.002)
    # srtt + max(4 x rttvar, 1 ms) + the peer's ack delay: no 200 ms floor.
    assert sender.pto == pytest.approx(0.002 + 0.001 + 0.010, abs=0.0005)


def test_a_lost_tail_is_probed_after_one_probe_timeout_with_the_oldest_and_newest() -> None:
    sender, receiver = Link(plain_seal), Link(plain_seal)
    now = 0.0
    for _ in range(10):
        now = exchange(sender, receiver, now, rtt=0.004)
    for n in range(3):
        sender.send(frame(n, pad=900))  # one frame per datagram
    lost = sender.datagrams_to_send(now)  # all three are lost
    assert len(lost) == 3
    deadline = sender.next_timer()
    assert deadline is not None and deadline - now == pytest.approx(sender.pto)
    sender.handle_timer(deadline)
    probes = sender.datagrams_to_send(deadline)
    # The probe goes at once, rather than after a retransmission timeout: the newest frame
    # (the tail) and the oldest (what in-order delivery waits for), and the newest again
    # in a datagram of its own, so that one lost datagram does not cost another timeout.
    assert [[seq for seq, _ in _packet(d).frames] for d in probes] == [[11], [13], [13]]
    assert [n for d in probes for n in feed(receiver, d, deadline + 0.002)] == [0]
    receiver.acknowledge_now(deadline + 0.002)
    (ack,) = receiver.datagrams_to_send(deadline + 0.002)
    feed(sender, ack, deadline + 0.004)
    # The ack of the probe shows the middle frame lost (sent long before): resent at once.
    (resent,) = sender.datagrams_to_send(deadline + 0.004)
    assert [seq for seq, _ in _packet(resent).frames] == [12]
    assert feed(receiver, resent, deadline + 0.006) == [1, 2]


def test_the_probe_timeout_backs_off_and_resets_on_an_ack() -> None:
    sender, receiver = Link(plain_seal, LinkConfig(max_pto=100.0)), Link(plain_seal)
    now = 0.0
    for _ in range(10):
        now = exchange(sender, receiver, now, rtt=0.004)
    sender.send(frame(99))
    sender.datagrams_to_send(now)
    waits = []
    for _ in range(6):
        deadline = sender.next_timer()
        assert deadline is not None
        waits.append(deadline - now)
        now = deadline
        sender.handle_timer(now)
        sender.datagrams_to_send(now)
    assert all(b == pytest.approx(2 * a) for a, b in itertools.pairwise(waits))
    # An acknowledgement of anything new resets the backoff to one probe timeout.
    receiver.receive(0, 0, [], [(seq, msgspec.Raw(b"{}")) for seq in range(1, 12)], now)
    receiver.acknowledge_now(now)
    (ack,) = receiver.datagrams_to_send(now)
    feed(sender, ack, now + 0.004)
    sender.send(frame(100))
    sender.datagrams_to_send(now + 0.004)
    deadline = sender.next_timer()
    assert deadline is not None and deadline - (now + 0.004) == pytest.approx(sender.pto)


def _second_of_two_arrives() -> tuple[Link, Link, float]:
    """A link with a 10 ms RTT sends two frames in two datagrams; only the second arrives
    (5 ms later): the two links, and when the two were sent."""
    sender, receiver = Link(plain_seal), Link(plain_seal)
    now = 0.0
    for _ in range(10):
        now = exchange(sender, receiver, now, rtt=0.010)
    sender.send(frame(1, pad=900))
    sender.send(frame(2, pad=900))
    _first, second = sender.datagrams_to_send(now)
    feed(receiver, second, now + 0.005)
    return sender, receiver, now


def test_a_frame_is_declared_lost_by_the_time_threshold() -> None:
    sender, receiver, now = _second_of_two_arrives()  # only the second arrives
    (ack,) = receiver.datagrams_to_send(now + 0.005)
    feed(sender, ack, now + 0.010)
    # One frame later is not enough for the packet threshold; 9/8 RTT after it was sent,
    # the loss timer declares the first one lost.
    assert sender.datagrams_to_send(now + 0.010) == []
    deadline = sender.next_timer()
    assert deadline is not None and deadline == pytest.approx(now + 9 / 8 * 0.010)
    sender.handle_timer(deadline)
    (resent,) = sender.datagrams_to_send(deadline)
    assert feed(receiver, resent, deadline + 0.005) == [1, 2]


def given_up(first: int) -> tuple[Link, float]:
    """A link that sent frame `first` to a peer that never answered, once it gave up
    (`give_up_after` 10 s), and when."""
    link = Link(plain_seal, LinkConfig(give_up_after=10.0, max_pto=2.0))
    link.send(frame(first))
    link.datagrams_to_send(0.0)
    now = 0.0
    while link.failure is None:
        deadline = link.next_timer()
        assert deadline is not None
        now = deadline
        link.handle_timer(now)
        link.datagrams_to_send(now)
    return link, now


def test_a_peer_silent_for_give_up_after_seconds_fails_the_link() -> None:
    sender, now = given_up(1)
    assert sender.failure == "unresponsive"
    assert 10.0 <= now <= 12.0
    assert sender.probes_sent >= 4


def test_in_flight_frames_never_exceed_the_window() -> None:
    config = LinkConfig(window=8)
    sender = Link(plain_seal, config)
    for n in range(100):
        sender.send(frame(n))
    datagrams = sender.datagrams_to_send(0.0)
    seqs = [seq for d in datagrams for seq, _ in _packet(d).frames]
    assert seqs == list(range(1, 9))
    sender.handle_timer(5.0)
    again = sender.datagrams_to_send(5.0)
    # The probe resends the oldest and newest frames in flight (twice), and no frame
    # beyond the window.
    assert [seq for d in again for seq, _ in _packet(d).frames] == [1, 8, 1, 8]
    # An ack for the first four opens the window by four (and shows 5 to 7, sent long
    # before the probe it acknowledges, lost).
    sender.receive(0, 4, [], [], 5.1)
    more = sender.datagrams_to_send(5.1)
    assert [seq for d in more for seq, _ in _packet(d).frames] == [5, 6, 7, *range(9, 13)]


def test_an_ack_for_frames_never_sent_is_ignored() -> None:
    sender = Link(plain_seal)
    sender.send(frame(1))
    sender.datagrams_to_send(0.0)
    sender.receive(0, 50, [(60, 70)], [], 0.1)
    assert sender.queued == 1


def test_acknowledged_frames_return_their_tags() -> None:
    sender, receiver = Link(plain_seal), Link(plain_seal)
    sender.send(frame(1), tag="first")
    sender.send(frame(2))
    for datagram in sender.datagrams_to_send(0.0):
        feed(receiver, datagram, 0.0)
    for datagram in receiver.datagrams_to_send(1.0):
        feed(sender, datagram, 1.0)
    assert sender.acked_tags == ["first"]


def test_a_tag_comes_back_only_once_the_cumulative_ack_covers_its_frame() -> None:
    """A frame acknowledged selectively is held by the peer, not delivered: a peer that
    goes away before the gap before it is filled never delivered it."""
    sender, receiver = Link(plain_seal), Link(plain_seal)
    for n in range(3):
        sender.send(frame(n, pad=900), tag=f"tag {n}")  # one frame per datagram
    first, *rest = sender.datagrams_to_send(0.0)
    for datagram in rest:
        assert feed(receiver, datagram, 0.01) == []
    (ack,) = receiver.datagrams_to_send(0.01)
    assert _packet(ack).sack == [(2, 3)]
    feed(sender, ack, 0.02)
    assert sender.acked_tags == []
    assert feed(receiver, first, 0.03) == [0, 1, 2]
    (ack,) = receiver.datagrams_to_send(0.05)  # after the ack delay
    feed(sender, ack, 0.06)
    assert sorted(map(str, sender.acked_tags)) == ["tag 0", "tag 1", "tag 2"]


def test_a_link_whose_queue_overflows_fails_as_overloaded() -> None:
    sender = Link(plain_seal, LinkConfig(max_queue=10))
    for n in range(10):
        sender.send(frame(n))
    assert sender.failure is None
    sender.send(frame(10))
    assert sender.failure == "overloaded"


def test_a_link_fails_as_overloaded_only_past_its_queue_in_bytes() -> None:
    """A queue of exactly `max_queue_bytes` is within it (docs/protocol.md: a session is
    ended once its frames not yet acknowledged exceed 1 MiB); one byte more is past it."""
    frames = [frame(n, pad=300) for n in range(3)]
    measure = Link(plain_seal)
    for each in frames:
        measure.send(each)
    full = measure.queued_bytes
    exactly = Link(plain_seal, LinkConfig(max_queue_bytes=full))
    under = Link(plain_seal, LinkConfig(max_queue_bytes=full - 1))
    for each in frames:
        exactly.send(each)
        under.send(each)
    assert exactly.queued_bytes == full and exactly.failure is None
    assert under.failure == "overloaded"


def test_a_byte_budget_holds_back_what_does_not_fit() -> None:
    sender = Link(plain_seal)
    for n in range(10):
        sender.send(frame(n, pad=400))
    first = sender.datagrams_to_send(0.0, budget=1000)
    assert sum(map(len, first)) <= 1000
    rest = sender.datagrams_to_send(0.0)
    receiver = Link(plain_seal)
    got = [n for d in first + rest for n in feed(receiver, d, 0.0)]
    assert got == list(range(10))


def test_a_lost_frame_is_retransmitted_early_once_later_ones_are_acknowledged() -> None:
    sender, receiver = Link(plain_seal), Link(plain_seal)
    for n in range(5):
        sender.send(frame(n, pad=900))  # one frame per datagram
    datagrams = sender.datagrams_to_send(0.0)
    assert len(datagrams) == 5
    for datagram in datagrams[1:]:  # the first one is lost
        feed(receiver, datagram, 0.01)
    (ack,) = receiver.datagrams_to_send(0.01)
    assert _packet(ack).sack == [(2, 5)]
    feed(sender, ack, 0.02)
    (resent,) = sender.datagrams_to_send(0.02)  # long before the ~1 s probe timeout
    assert feed(receiver, resent, 0.03) == [0, 1, 2, 3, 4]


def _packet(datagram: bytes) -> wire.Payload:
    return plain_open(datagram)[1]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    loss=st.floats(0.0, 0.4),
    duplicate=st.floats(0.0, 0.3),
    reorder=st.floats(0.0, 0.5),
    sizes=st.lists(st.integers(0, 880), min_size=1, max_size=60),
)
def test_any_network_weather_delivers_everything_once_in_order(
    seed: int, loss: float, duplicate: float, reorder: float, sizes: list[int]
) -> None:
    config = LinkConfig(give_up_after=3600.0)
    sim = Simulation(seed, Conditions(loss, duplicate, reorder, 0.01, 0.01), config)
    for n, size in enumerate(sizes):
        sim.links["a"].send(frame(n, pad=size))
    sim.flush()
    sim.run(until=3600)
    assert sim.received["b"] == list(range(len(sizes)))
    assert all(size <= wire.MAX_DATAGRAM for size in sim.datagram_sizes)
    assert sim.links["a"].idle


def test_a_receiver_may_acknowledge_every_nth_datagram() -> None:
    sender = Link(plain_seal)
    receiver = Link(plain_seal, LinkConfig(ack_every=4, ack_delay=0.025))
    now = 0.0
    for n in range(4):
        sender.send(frame(n, pad=900))  # one frame per datagram
    datagrams = sender.datagrams_to_send(now)
    for count, datagram in enumerate(datagrams, start=1):
        feed(receiver, datagram, now)
        expected = now if count == 4 else now + 0.025
        assert receiver.next_timer() == expected
    (ack,) = receiver.datagrams_to_send(now)
    feed(sender, ack, now + 0.001)
    assert sender.idle


def test_a_receiver_acknowledges_at_once_when_enough_frames_wait() -> None:
    sender = Link(plain_seal)
    receiver = Link(plain_seal, LinkConfig(ack_every=16, ack_frames=16, ack_delay=0.025))
    now = 0.0
    for n in range(10):
        sender.send(frame(n))
    (first,) = sender.datagrams_to_send(now)  # ten small frames share one datagram
    assert feed(receiver, first, now) == list(range(10))
    assert receiver.next_timer() == now + 0.025  # one datagram, ten frames: it may wait
    for n in range(10, 16):
        sender.send(frame(n))
    (second,) = sender.datagrams_to_send(now)
    feed(receiver, second, now)
    assert receiver.next_timer() == now  # sixteen frames wait: the ack goes at once
    (ack,) = receiver.datagrams_to_send(now)
    feed(sender, ack, now)
    assert sender.idle
    # The count starts again from the acknowledgement.
    sender.send(frame(16))
    (third,) = sender.datagrams_to_send(now)
    feed(receiver, third, now)
    assert receiver.next_timer() == now + 0.025


@pytest.mark.parametrize("pad", [0, 40, 200])
@pytest.mark.parametrize("delay", [0.0, 0.002])
@pytest.mark.parametrize("lose_first_ack", [False, True])
def test_a_client_never_lets_the_daemons_window_wait_for_its_ack_delay(
    pad: int, delay: float, lose_first_ack: bool
) -> None:
    """The daemon may have 64 frames unacknowledged. A client that acknowledged only every
    few datagrams would hold a burst of small frames (a history, a room's backlog, the
    notices of a crowd logging in) at a full window until its 25 ms ack delay ran out,
    again and again; one that acknowledged only once the window was full would stall it
    whenever that one acknowledgement was lost. Nothing here may wait for a timer."""
    daemon = Link(plain_seal, daemon_link())
    client = Link(plain_seal, ClientConfig().link)
    for n in range(500):
        daemon.send(frame(n, pad=pad))
    received: list[int] = []
    in_transit: list[tuple[float, int, Link, bytes]] = []  # (arrival, order, to, datagram)
    order = itertools.count()
    acks_sent = 0
    now = 0.0
    for _ in range(10_000):
        for datagram in daemon.datagrams_to_send(now):
            in_transit.append((now + delay, next(order), client, datagram))
        for ack in client.datagrams_to_send(now):
            acks_sent += 1
            if not (lose_first_ack and acks_sent == 1):
                in_transit.append((now + delay, next(order), daemon, ack))
        if len(received) == 500 or not in_transit:
            break  # done, or nothing moves until a timer fires
        in_transit.sort()
        arrival, _, to, datagram = in_transit.pop(0)
        now = max(now, arrival)
        numbers = feed(to, datagram, now)
        if to is client:
            received += numbers
    assert received == list(range(500))


def test_an_ack_for_everything_in_flight_clears_it_and_measures_the_rtt() -> None:
    sender, receiver = Link(plain_seal), Link(plain_seal)
    for n in range(10):
        sender.send(frame(n), tag=n)
    for datagram in sender.datagrams_to_send(1.0):
        feed(receiver, datagram, 1.0)
    (ack,) = receiver.datagrams_to_send(1.5)
    feed(sender, ack, 1.25)
    assert sender.idle and sender.next_timer() is None
    assert sender.acked_tags == list(range(10))
    assert sender.srtt == pytest.approx(0.25)


_OFFER = st.tuples(st.just("offer"), st.lists(st.integers(0, 500), min_size=1, max_size=6))
_ACK = st.tuples(
    st.just("ack"), st.tuples(st.integers(0, 40), st.integers(1, 3), st.integers(0, 3))
)
_HEAR = st.tuples(st.just("hear"), st.tuples(st.integers(1, 3), st.integers(0, 2)))
_WAIT = st.tuples(st.just("wait"), st.floats(0.001, 1.5))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_OFFER, _ACK, _HEAR, _WAIT), max_size=40))
# Frames sent at once one after another, the first then found lost by the packet
# threshold (or not) when later ones are acknowledged selectively:
@example([("offer", [0]), ("offer", [0]), ("offer", [0]), ("ack", (0, 1, 1))])
@example([("offer", [0, 0]), ("offer", [0]), ("ack", (0, 1, 1))])
# ...and the peer's frames heard after a gap: the selective ack rides along.
@example([("hear", (2, 1)), ("offer", [0, 10])])
def test_frames_sent_at_once_go_exactly_as_they_would_have_from_the_queue(
    steps: list[tuple[str, object]],
) -> None:
    # The daemon hands a room message to an idle link with `send_at_once`: the datagram,
    # and everything the link does after it, must be what queueing it would have made.
    config = LinkConfig(window=8, max_queue=30)
    at_once, queued = Link(plain_seal, config), Link(plain_seal, config)
    peer_seq = pn = 0
    now = 0.0
    count = 0
    for kind, value in steps:
        if kind == "offer":
            assert isinstance(value, list)
            frames = [frame(count + i, pad) for i, pad in enumerate(value)]
            count += len(frames)
            made = at_once.send_at_once(frames, "tag", now)
            sent = [made] if made is not None else []
            if made is None:
                for each in frames:
                    at_once.send(each, "tag")
            sent += at_once.datagrams_to_send(now)
            for each in frames:
                queued.send(each, "tag")
            assert sent == queued.datagrams_to_send(now)
        elif kind == "ack":  # up to `ack`, and selectively some after a gap
            assert isinstance(value, tuple)
            ack, gap, width = value
            ack = min(ack, count)
            start = ack + 1 + gap
            sack = [(start, min(start + width, count))] if start <= count else []
            pn += 1
            for link in (at_once, queued):
                link.receive(pn, ack, sack, [], now, 0)
            assert at_once.datagrams_to_send(now) == queued.datagrams_to_send(now)  # losses
        elif kind == "hear":  # the peer's frames, maybe after a gap (then a `sack` is owed)
            assert isinstance(value, tuple)
            heard, gap = value
            frames_in = []
            for _ in range(heard):
                peer_seq += 1
                frames_in.append((peer_seq + gap, msgspec.Raw(frame(peer_seq))))
            pn += 1
            for link in (at_once, queued):
                link.receive(pn, 0, [], frames_in, now, 0)
        else:
            assert isinstance(value, float)
            now += value
            for link in (at_once, queued):
                link.handle_timer(now)
            assert at_once.datagrams_to_send(now) == queued.datagrams_to_send(now)
        assert state(at_once) == state(queued)


def state(link: Link) -> tuple[object, ...]:
    """What a link shows of itself, for two that must behave alike."""
    return (
        link.queued,
        link.queued_bytes,
        link.failure,
        link.next_timer(),
        link.retransmissions,
        link.acked_tags,
        link.srtt,
        link.unanswered_for(100.0),
    )


def test_frames_are_sent_at_once_only_to_a_link_with_nothing_else_to_send() -> None:
    link = Link(plain_seal, LinkConfig(window=4))
    first = link.send_at_once([frame(1), frame(2)], None, 0.0)
    assert first is not None and [seq for seq, _ in _packet(first).frames] == [1, 2]
    assert link.send_at_once([frame(3), frame(4), frame(5)], None, 0.0) is None  # the window
    link.send(frame(3))
    assert link.send_at_once([frame(4)], None, 0.0) is None  # behind a frame queued
    link.datagrams_to_send(0.0)
    link.receive(1, 3, [], [], 0.1, 0)
    big = [frame(n, pad=500) for n in (4, 5, 6)]
    assert link.send_at_once(big, None, 0.1) is None  # more than a datagram holds
    assert link.send_at_once([frame(4)], None, 0.1) is not None


def test_no_frame_is_sent_at_once_past_a_lost_frame_a_probe_or_a_failed_link() -> None:
    """A lost frame waiting to go again, or a probe due, is something else to send: a
    frame sent at once would go ahead of it, in a datagram of its own. A link that failed
    sends nothing more."""
    lossy = Link(plain_seal)
    for n in range(5):
        lossy.send(frame(n, pad=900))  # one frame per datagram
    lossy.datagrams_to_send(0.0)
    lossy.receive(1, 0, [(2, 5)], [], 0.01)  # the first is lost: three later ones arrived
    assert lossy.send_at_once([frame(5)], None, 0.01) is None
    lossy.send(frame(5))
    resent = lossy.datagrams_to_send(0.01)
    assert [seq for d in resent for seq, _ in _packet(d).frames] == [1, 6]

    probing = Link(plain_seal)
    probing.send(frame(0))
    probing.datagrams_to_send(0.0)
    deadline = probing.next_timer()
    assert deadline is not None
    probing.handle_timer(deadline)
    assert probing.wants_to_send(deadline)
    assert probing.send_at_once([frame(1)], None, deadline) is None
    probing.send(frame(1))
    probes = probing.datagrams_to_send(deadline)
    assert [[seq for seq, _ in _packet(d).frames] for d in probes] == [[1, 2], [1, 2]]

    failed, now = given_up(0)
    assert failed.send_at_once([frame(1)], None, now) is None


def test_frames_that_just_fill_the_window_are_sent_at_once() -> None:
    link = Link(plain_seal, LinkConfig(window=4))
    assert link.send_at_once([frame(1), frame(2)], None, 0.0) is not None
    last = link.send_at_once([frame(3), frame(4)], None, 0.0)
    assert last is not None and [seq for seq, _ in _packet(last).frames] == [3, 4]
    assert link.send_at_once([frame(5)], None, 0.0) is None  # the window is full
    idle = Link(plain_seal, LinkConfig(window=4))
    assert idle.send_at_once([frame(n) for n in range(5)], None, 0.0) is None  # beyond it
    assert idle.queued == 0  # the caller queues them: four go, the fifth waits


def test_frames_that_fill_a_datagram_to_the_byte_are_sent_at_once() -> None:
    config = LinkConfig(max_payload=500)
    pad = next(
        pad
        for pad in range(config.max_payload)
        if len(_queued_alone(frame(0, pad), config)) - 8 == config.max_payload  # `plain_seal`
    )
    datagram = Link(plain_seal, config).send_at_once([frame(0, pad)], None, 0.0)
    assert datagram == _queued_alone(frame(0, pad), config)
    assert Link(plain_seal, config).send_at_once([frame(0, pad + 1)], None, 0.0) is None


def _queued_alone(each: bytes, config: LinkConfig) -> bytes:
    link = Link(plain_seal, config)
    link.send(each)
    (datagram,) = link.datagrams_to_send(0.0)
    return datagram


def test_frames_sent_at_once_never_take_a_queue_beyond_its_limit() -> None:
    link = Link(plain_seal, LinkConfig(window=8, max_queue=2))
    assert link.send_at_once([frame(1), frame(2)], None, 0.0) is not None
    assert link.send_at_once([frame(3)], None, 0.0) is None
    link.send(frame(3))  # as the owner does with what is not sent at once
    assert link.failure == "overloaded"


def test_a_frame_sent_at_once_is_found_lost_by_the_packet_threshold() -> None:
    """Frames sent at once count as transmissions, as queued ones do: three later ones
    acknowledged show the first lost, resent at once rather than after a timer."""
    link = Link(plain_seal)
    for n in range(1, 5):
        assert link.send_at_once([frame(n)], None, 0.0) is not None
    link.receive(1, 0, [(2, 4)], [], 0.01)
    (resent,) = link.datagrams_to_send(0.01)
    assert [seq for seq, _ in _packet(resent).frames] == [1]


def test_a_frame_one_past_the_window_waits_for_an_ack() -> None:
    sender = Link(plain_seal, LinkConfig(window=4))
    for n in range(5):
        sender.send(frame(n))
    (datagram,) = sender.datagrams_to_send(0.0)
    assert [seq for seq, _ in _packet(datagram).frames] == [1, 2, 3, 4]
    assert not sender.wants_to_send(0.0)
    sender.receive(1, 1, [], [], 0.01)
    assert sender.wants_to_send(0.01)
    (more,) = sender.datagrams_to_send(0.01)
    assert [seq for seq, _ in _packet(more).frames] == [5]


def test_frames_that_fill_a_datagram_to_the_byte_share_it_under_a_budget() -> None:
    """Under a byte budget frames are packed one by one; a datagram they fill exactly is
    still one datagram, as it is when the whole queue is packed at once."""
    _client, server = channel_pair()

    def loaded(pad: int) -> Link:
        link = Link(server.seal)
        link.send(frame(1, pad=400))
        link.send(frame(2, pad=pad))
        return link

    full = wire.MAX_PAYLOAD + wire.SEAL_OVERHEAD
    pad = next(pad for pad in range(900) if len(loaded(pad).datagrams_to_send(0.0)[0]) == full)
    (datagram,) = loaded(pad).datagrams_to_send(0.0, budget=10 * full)
    assert len(datagram) == full
    assert len(loaded(pad + 1).datagrams_to_send(0.0, budget=10 * full)) == 2


def test_a_byte_budget_lets_through_datagrams_that_just_fit_it() -> None:
    _client, server = channel_pair()

    def loaded() -> Link:
        link = Link(server.seal)
        for n in range(3):
            link.send(frame(n, pad=700))  # a datagram each
        return link

    whole = loaded().datagrams_to_send(0.0)
    assert len(whole) == 3
    exact = loaded().datagrams_to_send(0.0, budget=sum(map(len, whole)))
    assert [len(d) for d in exact] == [len(d) for d in whole]
    short = loaded().datagrams_to_send(0.0, budget=sum(map(len, whole)) - 1)
    assert [len(d) for d in short] == [len(d) for d in whole[:2]]


def test_an_ack_that_just_fits_a_budget_goes_while_the_frames_wait() -> None:
    _client, server = channel_pair()

    def owing() -> Link:
        link = Link(server.seal)
        link.receive(1, 0, [], [(2, msgspec.Raw(frame(2)))], 0.0)  # out of order: ack now
        return link

    (ack,) = owing().datagrams_to_send(0.0)
    waiting = owing()
    waiting.send(frame(9, pad=700))
    assert waiting.datagrams_to_send(0.0, budget=len(ack) - 1) == []
    assert waiting.datagrams_to_send(0.0, budget=len(ack)) == [ack]
    assert waiting.queued == 1 and waiting.next_timer() is None


def test_a_probe_under_a_byte_budget_stays_within_it() -> None:
    """The second copy of a probe is for a path that may send freely; a path still
    proving itself gets what its budget holds, and no more."""
    _client, server = channel_pair()
    link = Link(server.seal)
    link.send(frame(1, pad=400))
    (first,) = link.datagrams_to_send(0.0)
    deadline = link.next_timer()
    assert deadline is not None
    link.handle_timer(deadline)
    budget = 2 * len(first) - 1
    probes = link.datagrams_to_send(deadline, budget=budget)
    assert len(probes) == 1 and sum(map(len, probes)) <= budget


def test_last_words_send_every_frame_not_yet_acknowledged() -> None:
    link = Link(plain_seal)
    for n in range(3):
        link.send(frame(n))
    link.datagrams_to_send(0.0)  # in flight, none acknowledged yet
    link.send(frame(3))  # the answer to a logout, say
    words = link.last_words(0.01)
    assert [seq for d in words for seq, _ in _packet(d).frames] == [1, 2, 3, 4]


def test_a_probe_carries_a_lost_frame_once() -> None:
    """A frame found lost that a byte budget kept back is what a probe then sends, once:
    the probe adds no second copy of it to the same datagram."""
    link = Link(plain_seal)
    for n in range(5):
        link.send(frame(n, pad=900))  # one frame per datagram
    link.datagrams_to_send(0.0)
    link.receive(1, 0, [(2, 5)], [], 0.01)  # the first is lost
    assert link.datagrams_to_send(0.01, budget=0) == []
    deadline = link.next_timer()
    assert deadline is not None
    link.handle_timer(deadline)
    probes = link.datagrams_to_send(deadline)
    assert [[seq for seq, _ in _packet(d).frames] for d in probes] == [[1], [1]]


def test_a_resent_frame_is_found_lost_by_when_it_was_resent() -> None:
    """The time threshold counts from a frame's latest transmission: a frame resent a
    moment ago is not lost again because a frame sent after it was acknowledged."""
    sender, receiver, now = _second_of_two_arrives()
    (ack,) = receiver.datagrams_to_send(now + 0.005)
    feed(sender, ack, now + 0.010)
    deadline = sender.next_timer()
    assert deadline is not None
    sender.handle_timer(deadline)
    (_resent,) = sender.datagrams_to_send(deadline)  # lost again on its way
    assert not sender.wants_to_send(deadline)  # sent again once, not at every turn
    sender.send(frame(3, pad=900))
    (third,) = sender.datagrams_to_send(deadline + 0.001)
    feed(receiver, third, deadline + 0.006)
    (ack,) = receiver.datagrams_to_send(deadline + 0.006)
    feed(sender, ack, deadline + 0.011)
    assert sender.retransmissions == 1
    assert sender.datagrams_to_send(deadline + 0.011) == []
    assert sender.retransmissions == 1
    later = sender.next_timer()
    assert later is not None and later > deadline + 0.011


def test_lost_frames_a_byte_budget_kept_back_go_with_the_next_turn() -> None:
    link = Link(plain_seal)
    for n in range(6):
        link.send(frame(n, pad=900))  # one frame per datagram
    link.datagrams_to_send(0.0)
    link.receive(1, 0, [(3, 6)], [], 0.01)  # the first two are lost
    (one,) = link.datagrams_to_send(0.01, budget=1000)
    assert [seq for seq, _ in _packet(one).frames] == [1]
    assert link.wants_to_send(0.01)
    (other,) = link.datagrams_to_send(0.01)
    assert [seq for seq, _ in _packet(other).frames] == [2]


def test_an_echo_of_a_bare_ack_is_no_rtt_sample() -> None:
    """Only a datagram that carried frames is answered promptly: the peer's next datagram
    echoes a bare ack whenever it has something to say, which says nothing of the RTT."""
    sender, acker = Link(plain_seal), Link(plain_seal)
    exchange(sender, acker, 0.0, rtt=0.010)  # `acker` answers with a bare ack
    sender.send(frame(1))
    (later,) = sender.datagrams_to_send(2.0)
    assert _packet(later).echo == 1  # the bare ack's packet number
    feed(acker, later, 2.005)
    assert acker.srtt is None


def test_selective_acks_report_the_newest_ranges_when_not_all_fit() -> None:
    """The sender learns most from the newest frames that arrived: they show the frames
    before them lost. Older ranges, past `SACK_RANGES_MAX`, are left out."""
    receiver = Link(plain_seal)
    for seq in range(3, 15, 2):  # six ranges of one frame, after gaps
        receiver.receive(0, 0, [], [(seq, msgspec.Raw(frame(seq)))], 0.0)
    (ack,) = receiver.datagrams_to_send(0.0)
    assert wire.SACK_RANGES_MAX == 4
    assert _packet(ack).sack == [(7, 7), (9, 9), (11, 11), (13, 13)]


def test_an_ack_for_frames_never_sent_delivers_no_tags() -> None:
    """A peer that claims frames it was never sent is believed in nothing: frames it held
    out of order do not count as delivered either."""
    sender = Link(plain_seal)
    for n in range(3):
        sender.send(frame(n, pad=900), tag=f"tag {n}")  # one frame per datagram
    sender.datagrams_to_send(0.0)
    sender.receive(1, 0, [(2, 3)], [], 0.01)
    assert sender.acked_tags == []
    sender.receive(2, 50, [], [], 0.02)
    assert sender.acked_tags == []
    sender.receive(3, 3, [], [], 0.03)
    assert sorted(map(str, sender.acked_tags)) == ["tag 0", "tag 1", "tag 2"]


def test_a_frame_held_out_of_order_and_sent_again_is_held_once() -> None:
    """A duplicate of a frame waiting for a gap is a duplicate: counted, acknowledged at
    once, and not held (or counted against the receive buffer) a second time."""
    receiver = Link(plain_seal)
    held = frame(2)
    for now in (0.0, 0.1):
        receiver.receive(0, 0, [], [(2, msgspec.Raw(held))], now)
    assert receiver.duplicates == 1
    assert receiver.held_bytes == len(held)
    delivered = receiver.receive(0, 0, [], [(1, msgspec.Raw(frame(1)))], 0.2)
    assert [seq for seq, _ in delivered] == [1, 2]
    assert receiver.held_bytes == 0


def test_a_frame_beyond_the_receive_window_is_not_held() -> None:
    receiver = Link(plain_seal, LinkConfig(receive_window=8))  # frames 1 to 8
    receiver.receive(0, 0, [], [(8, msgspec.Raw(frame(8)))], 0.0)  # the last place
    receiver.receive(0, 0, [], [(9, msgspec.Raw(frame(9)))], 0.0)  # beyond it
    assert receiver.held_bytes == len(frame(8))
    (ack,) = receiver.datagrams_to_send(0.0)
    assert _packet(ack).sack == [(8, 8)]


@pytest.mark.parametrize("seq", [1, 3, 10])  # the frame again; after a gap; beyond the window
def test_a_duplicate_a_gap_or_a_frame_beyond_the_window_is_acknowledged_at_once(seq: int) -> None:
    """Each says the sender lacks something it should hear: that our acknowledgement was
    lost, or that a frame was. It gets an acknowledgement at once, not after `ack_delay`
    or `ack_every` datagrams."""
    receiver = Link(plain_seal, LinkConfig(ack_every=10, ack_delay=0.025, receive_window=8))
    receiver.receive(0, 0, [], [(1, msgspec.Raw(frame(1)))], 0.0)
    assert receiver.next_timer() == 0.025
    receiver.receive(0, 0, [], [(seq, msgspec.Raw(frame(seq)))], 0.001)
    assert receiver.next_timer() == 0.001


def test_an_ack_waits_no_longer_for_more_datagrams_coming() -> None:
    """The ack delay counts from the first datagram not acknowledged: a stream of them,
    each within the delay, does not put the acknowledgement off again and again."""
    receiver = Link(plain_seal, LinkConfig(ack_every=10, ack_delay=0.025))
    receiver.receive(0, 0, [], [(1, msgspec.Raw(frame(1)))], 0.0)
    receiver.receive(0, 0, [], [(2, msgspec.Raw(frame(2)))], 0.01)
    assert receiver.next_timer() == 0.025


def test_acks_claiming_frames_never_sent_are_believed_in_nothing() -> None:
    sender = Link(plain_seal)
    for n in range(3):
        sender.send(frame(n, pad=900))
    sender.datagrams_to_send(0.0)
    sender.receive(1, 4, [], [], 0.01)  # one past the last frame sent
    sender.receive(2, 0, [(2, 50)], [], 0.02)  # a range that runs past it
    assert sender.queued == 3 and sender.wants_to_send(0.02) is False


def test_an_acknowledged_frame_leaves_nothing_of_itself_behind() -> None:
    """Whichever way a frame is acknowledged (cumulatively with others still in flight,
    selectively, or with everything), its bytes, its tag and any loss or probe of it go:
    nothing is resent for it and the link holds nothing."""
    sender = Link(plain_seal)
    for n in range(6):
        sender.send(frame(n, pad=900), tag=n)  # one frame per datagram
    sender.datagrams_to_send(0.0)
    sender.receive(1, 0, [(2, 5)], [], 0.01)  # the first is lost
    sender.receive(2, 1, [(2, 5)], [], 0.011)  # ...and arrives after all, before its resend
    assert sender.acked_tags == [0]  # delivered; the others are held out of order
    assert not sender.wants_to_send(0.011)
    assert sender.queued_bytes == len(wire.numbered_frame(6, frame(5, pad=900)))
    deadline = sender.next_timer()
    assert deadline is not None
    sender.handle_timer(deadline)  # a probe is due for the last one...
    sender.receive(3, 6, [], [], deadline)  # ...which its ack makes needless
    assert sender.acked_tags == [0, 1, 2, 3, 4, 5]
    assert sender.idle and not sender.wants_to_send(deadline) and sender.queued_bytes == 0
    sender.send(frame(6))
    sender.datagrams_to_send(deadline + 1)
    assert sender.next_timer() == pytest.approx(deadline + 1 + sender.pto)


def test_the_rtt_estimate_follows_rfc_9002() -> None:
    link = Link(plain_seal, LinkConfig(peer_ack_delay=0.025))
    link.seed_rtt(0.1)
    assert link.srtt == pytest.approx(0.1)
    assert link.pto == pytest.approx(0.1 + 4 * 0.05 + 0.025)
    link.seed_rtt(5.0)  # a seed is for a link without a sample only
    assert link.srtt == pytest.approx(0.1)
    exchange(link, Link(plain_seal), 1.0, rtt=0.2)
    srtt = 0.875 * 0.1 + 0.125 * 0.2
    rttvar = 0.75 * 0.05 + 0.25 * 0.1
    assert link.srtt == pytest.approx(srtt)
    assert link.pto == pytest.approx(srtt + 4 * rttvar + 0.025)


def test_the_time_threshold_follows_the_latest_rtt_when_it_is_longer() -> None:
    """A round trip suddenly longer than the smoothed one stretches the time a frame is
    given before it counts as lost: a frame one RTT old is not resent at once."""
    sender = Link(plain_seal)
    sender.seed_rtt(0.010)
    sender.send(frame(1, pad=900))
    sender.send(frame(2, pad=900))
    _first, second = sender.datagrams_to_send(0.0)
    pn, _ = plain_open(second)
    sender.receive(1, 0, [(2, 2)], [], 0.040, echo=pn)  # a 40 ms sample
    assert sender.datagrams_to_send(0.040) == []
    assert sender.next_timer() == pytest.approx(9 / 8 * 0.040)


@pytest.mark.parametrize("sent", [2, 5])  # the first awaits the time threshold; it is lost
def test_an_ack_for_everything_ends_what_was_waiting_on_a_loss(sent: int) -> None:
    sender = Link(plain_seal)
    sender.seed_rtt(0.010)
    for n in range(sent):
        sender.send(frame(n, pad=900))  # one frame per datagram
    sender.datagrams_to_send(0.0)
    sender.receive(1, 0, [(2, sent)], [], 0.001)
    sender.receive(2, sent, [], [], 0.002)  # the first arrived after all
    assert sender.idle and not sender.wants_to_send(0.002)
    sender.send(frame(9))
    sender.datagrams_to_send(0.003)
    assert sender.next_timer() == pytest.approx(0.003 + sender.pto)


def test_the_loss_timer_is_set_for_the_frame_that_is_due_first() -> None:
    sender = Link(plain_seal)
    sender.seed_rtt(0.010)
    for n, now in enumerate((0.0, 0.004, 0.005)):
        sender.send(frame(n, pad=900))
        sender.datagrams_to_send(now)
    sender.receive(1, 0, [(3, 3)], [], 0.006)  # the first two wait on the time threshold
    assert sender.next_timer() == pytest.approx(9 / 8 * 0.010)
    sender.handle_timer(9 / 8 * 0.010)
    (resent,) = sender.datagrams_to_send(9 / 8 * 0.010)
    assert [seq for seq, _ in _packet(resent).frames] == [1]


def test_a_loss_timer_that_runs_late_declares_the_loss_and_sends_no_probe() -> None:
    sender = Link(plain_seal)
    sender.seed_rtt(0.010)
    sender.send(frame(1, pad=900))
    sender.send(frame(2, pad=900))
    sender.datagrams_to_send(0.0)
    sender.receive(1, 0, [(2, 2)], [], 0.001)
    sender.handle_timer(5.0)  # long after the loss timer and the probe timeout
    assert sender.probes_sent == 0
    (resent,) = sender.datagrams_to_send(5.0)
    assert [seq for seq, _ in _packet(resent).frames] == [1]


def test_an_ack_owed_is_not_put_off_by_a_later_probe_timeout() -> None:
    link = Link(plain_seal)
    link.send(frame(1))
    link.datagrams_to_send(0.0)  # a probe timeout about a second away
    link.receive(1, 0, [], [(1, msgspec.Raw(frame(1)))], 0.1)
    assert link.next_timer() == pytest.approx(0.1 + link.config.ack_delay)


def test_a_link_gives_up_once_give_up_after_seconds_have_passed() -> None:
    sender = Link(plain_seal, LinkConfig(give_up_after=10.0))
    sender.send(frame(1))
    sender.datagrams_to_send(0.0)
    sender.handle_timer(9.5)
    assert sender.failure is None
    sender.handle_timer(10.0)
    assert sender.failure == "unresponsive"


@pytest.mark.parametrize("every", [0.25, 1.0, 1.9])
def test_a_link_sending_steadily_to_a_silent_peer_gives_up_on_time(every: float) -> None:
    """Its owner runs its timers only at `next_timer` (as the client does): a frame sent
    every `every` seconds moves the probe timer on each time, and must not put off the
    give-up until the window fills (a client saying something every second to a daemon
    that no longer answered kept the dead channel for over a minute)."""
    link = Link(plain_seal, LinkConfig(give_up_after=10.0, max_pto=2.0))
    now = 0.0
    sent = 0
    while link.failure is None and now < 60.0:
        deadline = link.next_timer()
        if deadline is not None and deadline < sent * every:
            now = deadline
            link.handle_timer(now)
        else:
            now = sent * every
            link.send(frame(sent))
            sent += 1
        link.datagrams_to_send(now)
    assert link.failure == "unresponsive"
    assert now == pytest.approx(10.0)


def test_a_path_slower_than_the_longest_probe_wait_is_probed_before_the_give_up() -> None:
    """A satellite or a congested mobile link: a 5 s round trip, longer than the client's
    `max_pto` (2 s). A lost frame is probed after `max_pto` all the same, not after
    srtt + 4 x rttvar (15 s here), which would come after the 10 s give-up: one lost
    datagram must not cost such a path its session."""
    sender, receiver = (
        Link(plain_seal, LinkConfig(give_up_after=10.0, max_pto=2.0)),
        Link(plain_seal),
    )
    now = 0.0
    for _ in range(3):
        now = exchange(sender, receiver, now, rtt=5.0)
    sender.send(frame(1))
    sender.datagrams_to_send(now)  # lost
    deadline = sender.next_timer()
    assert deadline is not None and deadline == pytest.approx(now + 2.0)
    sender.handle_timer(deadline)
    probes = sender.datagrams_to_send(deadline)
    assert [n for d in probes for n in feed(receiver, d, deadline + 2.5)] == [1]
    receiver.acknowledge_now(deadline + 2.5)
    (ack,) = receiver.datagrams_to_send(deadline + 2.5)
    feed(sender, ack, deadline + 5.0)
    assert sender.failure is None and sender.idle


def test_the_give_up_deadline_fails_the_link_when_it_comes() -> None:
    """`next_timer` says when the give-up is due, and `handle_timer` then finds it due,
    also where floating point makes 0.7 + 0.1 - 0.7 less than 0.1: else the timer would
    be due again at once, for ever."""
    link = Link(plain_seal, LinkConfig(give_up_after=0.1, max_pto=1.0))
    link.send(frame(1))
    link.datagrams_to_send(0.7)
    deadline = link.next_timer()
    assert deadline is not None and deadline == 0.7 + 0.1 and deadline - 0.7 < 0.1
    link.handle_timer(deadline)
    assert link.failure == "unresponsive"


def _a_frame_lost() -> tuple[Link, Link, float]:
    """Two links that have exchanged ten times at a 10 ms RTT, and a frame the sender sent
    just now into an outage: the links, and now."""
    sender, receiver = Link(plain_seal), Link(plain_seal)
    now = 0.0
    for _ in range(10):
        now = exchange(sender, receiver, now, rtt=0.010)
    sender.send(frame(1))
    sender.datagrams_to_send(now)  # lost
    return sender, receiver, now


def _probed_into_silence() -> tuple[Link, Link, float]:
    """A link with a 10 ms RTT whose frame went into an outage: it probed until it waits
    the longest its backoff allows (4 s). The two links, and when it probed last."""
    sender, receiver, now = _a_frame_lost()  # and every probe after it
    while (deadline := sender.next_timer()) != pytest.approx(now + sender.config.max_pto):
        assert deadline is not None
        now = deadline
        sender.handle_timer(now)
        sender.datagrams_to_send(now)
    assert sender.probes_sent == 7
    return sender, receiver, now


def test_the_peer_heard_again_after_a_silence_longer_than_the_backoff_is_probed_at_once() -> None:
    """The outage is over, or the peer has a new address (a NAT gave it one): its first
    datagram, a ping acknowledging nothing new, brings the frame waiting at once, not
    when the backed-off probe timer would (up to 4 s later, every time)."""
    sender, receiver, now = _probed_into_silence()
    receiver.send(frame(2))
    (ping,) = receiver.datagrams_to_send(now + 3.0)
    feed(sender, ping, now + 3.0)
    assert sender.wants_to_send(now + 3.0) and sender.probes_sent == 7 + 1  # counted
    probes = sender.datagrams_to_send(now + 3.0)
    assert [n for d in probes for n in feed(receiver, d, now + 3.005)] == [1]


def test_a_silence_longer_than_the_backed_off_probe_wait_but_short_of_its_cap_probes_too() -> None:
    """The probe timer's wait once backed off, not its cap (`max_pto`), is the silence
    after which the peer heard again brings the probe at once."""
    sender, receiver, now = _a_frame_lost()  # as the first probe is
    first = sender.next_timer()
    assert first is not None
    wait = first - now
    sender.handle_timer(first)
    sender.datagrams_to_send(first)
    assert sender.next_timer() == pytest.approx(first + 2 * wait)
    heard = first + 1.5 * wait  # silent for 2.5 waits, well short of the 4 s cap
    assert heard - now < sender.config.max_pto / 10
    receiver.send(frame(2))
    (ping,) = receiver.datagrams_to_send(heard)
    feed(sender, ping, heard)
    probes = sender.datagrams_to_send(heard)
    assert [n for d in probes for n in feed(receiver, d, heard + 0.005)] == [1]


def test_a_peer_heard_steadily_brings_no_probe_before_the_probe_timer() -> None:
    """A peer that speaks more often than the probe timer waits (its datagrams arrive,
    ours are lost) gets no more probes for it: as many as the timer sends."""
    sender, receiver, now = _probed_into_silence()
    receiver.send(frame(2))
    (ping,) = receiver.datagrams_to_send(now + 3.0)
    feed(sender, ping, now + 3.0)
    sender.datagrams_to_send(now + 3.0)
    probes = sender.probes_sent
    for n in range(3, 30):  # every 100 ms
        receiver.send(frame(n))
        (datagram,) = receiver.datagrams_to_send(now + 3.0 + n / 10)
        feed(sender, datagram, now + 3.0 + n / 10)
        answers = sender.datagrams_to_send(now + 3.0 + n / 10)  # acknowledgements only
        assert [seq for d in answers for seq, _ in _packet(d).frames] == []
    assert sender.probes_sent == probes


def test_a_frame_that_just_fills_the_receive_buffer_is_held() -> None:
    receiver = Link(plain_seal, LinkConfig(receive_buffer_bytes=len(frame(2)) + len(frame(3))))
    receiver.receive(0, 0, [], [(2, msgspec.Raw(frame(2)))], 0.0)
    receiver.receive(0, 0, [], [(3, msgspec.Raw(frame(3)))], 0.0)
    receiver.receive(0, 0, [], [(4, msgspec.Raw(frame(4)))], 0.0)  # no room left
    assert receiver.held_bytes == len(frame(2)) + len(frame(3))
    delivered = receiver.receive(0, 0, [], [(1, msgspec.Raw(frame(1)))], 0.0)
    assert [seq for seq, _ in delivered] == [1, 2, 3]


def test_a_link_that_owes_an_ack_is_not_idle_until_it_is_sent() -> None:
    receiver = Link(plain_seal)
    receiver.receive(0, 0, [], [(1, msgspec.Raw(frame(1)))], 0.0)
    assert not receiver.idle
    receiver.datagrams_to_send(receiver.config.ack_delay)
    assert receiver.idle


def test_the_datagrams_counted_for_an_ack_start_again_once_it_is_sent() -> None:
    sender = Link(plain_seal)
    receiver = Link(plain_seal, LinkConfig(ack_every=2, ack_delay=0.025))
    for n in range(3):
        sender.send(frame(n, pad=900))  # one frame per datagram
    first, second, third = sender.datagrams_to_send(0.0)
    feed(receiver, first, 0.0)
    feed(receiver, second, 0.0)
    assert receiver.next_timer() == 0.0  # two datagrams: the ack goes at once
    receiver.datagrams_to_send(0.0)
    feed(receiver, third, 0.001)
    assert receiver.next_timer() == pytest.approx(0.001 + 0.025)  # one since: it may wait


def test_no_frame_is_longer_than_the_930_bytes_protocol_md_promises_peers() -> None:
    """A peer may size what it reads by it: a frame of 930 bytes goes, one of 931 never."""
    link = Link(plain_seal)
    link.send(b'{"t":"notice","text":"' + b"x" * (930 - 24) + b'"}')
    with pytest.raises(ValueError):
        link.send(b'{"t":"notice","text":"' + b"x" * (931 - 24) + b'"}')


def test_a_peer_heard_after_each_silence_while_ours_are_lost_is_still_given_up_on_time() -> None:
    """Its datagrams arrive (a ping every 5 s, longer than the probe timer waits), ours
    are all lost: each ping brings a probe at once, and none of them more time. The link
    gives up `give_up_after` from its frame's first sending, as with a silent peer."""
    sender, receiver, now = _probed_into_silence()
    give_up = now - sender.unanswered_for(now) + sender.config.give_up_after
    pinged = now
    for n in range(2, 20):
        pinged += 5.0
        while (deadline := sender.next_timer()) is not None and deadline <= pinged:
            sender.handle_timer(deadline)
            if sender.failure is not None:
                assert deadline == pytest.approx(give_up)
                return
            sender.datagrams_to_send(deadline)  # lost
        receiver.send(frame(n))
        (ping,) = receiver.datagrams_to_send(pinged)
        probes = sender.probes_sent
        feed(sender, ping, pinged)
        assert sender.probes_sent == probes + 1
        sender.datagrams_to_send(pinged)  # lost
    pytest.fail("never given up")
