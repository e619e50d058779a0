"""One end of a reliable, ordered link over datagrams: no I/O, time passed in.

A `Link` numbers the frames it is given (`send`), packs them into session datagrams of at
most `MAX_DATAGRAM` bytes, retransmits them until the peer acknowledges them, and hands
back the peer's frames exactly once and in order (`receive`). It follows RFC 6298 for the
retransmission timeout (smoothed RTT, RTT variance, Karn's rule, exponential backoff),
acknowledges cumulatively with up to `SACK_RANGES_MAX` selective ranges, delays pure
acks by `ack_delay`, retransmits early once three later frames were acknowledged, keeps
at most `window` frames in flight and gives up after `max_retransmits` retransmissions
of one frame. The owner (the daemon's engine or the client) reads the bytes to send from
`datagrams_to_send` and calls `handle_timer` at `next_timer`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import msgspec

from .wire import MAX_DATAGRAM, MAX_FRAME, SACK_RANGES_MAX


@dataclass(frozen=True, slots=True)
class LinkConfig:
    window: int = 64
    """Most frames unacknowledged at once."""
    receive_window: int = 256
    """Frames beyond the cumulative ack that a receiver buffers; later ones are dropped."""
    max_queue: int = 4096
    """Most frames waiting (unsent and in flight) before the link fails as overloaded."""
    initial_rto: float = 1.0
    min_rto: float = 0.2
    max_rto: float = 4.0
    max_retransmits: int = 10
    ack_delay: float = 0.010
    """Longest an acknowledgement waits for a datagram of our own to ride on."""
    ack_every: int = 2
    """Acknowledge at once when this many datagrams with frames are unacknowledged."""
    reorder_threshold: int = 3
    """A frame is presumed lost once this many later frames have been acknowledged."""
    max_datagram: int = MAX_DATAGRAM


@dataclass(slots=True)
class _InFlight:
    wrapped: bytes
    tag: Hashable | None
    last_sent: float
    deadline: float
    order: int
    """When it was last sent, counted in frame transmissions: the reordering clock."""
    transmissions: int = 1
    lost: bool = False


class Link:
    """One end of a reliable link; see the module docstring."""

    def __init__(self, header: bytes, config: LinkConfig | None = None) -> None:
        # `header` opens the datagram's JSON object, e.g. b'{"v":1,"t":"s","sid":7'.
        self.header = header
        self.config = config or LinkConfig()
        self.failure: str | None = None
        self.extra = b""
        """One-shot fields (`,"key":value`) for the next datagram, which is sent at once."""
        self.acked_tags: list[Hashable] = []
        """Tags of frames the peer has acknowledged since the owner last emptied this."""
        self.highest_pn = -1
        self.last_received: float | None = None
        # Sending.
        self._next_seq = 1
        self._unsent: deque[tuple[int, bytes, Hashable | None]] = deque()
        self._in_flight: dict[int, _InFlight] = {}
        self._pn = 0
        self._srtt: float | None = None
        self._rttvar = 0.0
        self._rto = self.config.initial_rto
        self._has_lost = False
        self._transmissions = 0
        self._rto_floor: float | None = None
        """No frame's retransmission timer expires before this (None: none is running).

        A lower bound, kept in O(1) as frames are sent; acks that remove the frame it
        came from leave it early, and `handle_timer` makes it exact again. So
        `next_timer` no longer scans every frame in flight each time it is asked.
        """
        # Receiving.
        self._receive_next = 1
        self._out_of_order: dict[int, msgspec.Raw] = {}
        self._ack_due: float | None = None
        self._unacked_datagrams = 0
        # Statistics.
        self.retransmissions = 0
        self.duplicates = 0

    # --- state -------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Frames not yet acknowledged (unsent or in flight)."""
        return len(self._unsent) + len(self._in_flight)

    @property
    def rto(self) -> float:
        return self._rto

    @property
    def srtt(self) -> float | None:
        return self._srtt

    @property
    def received_up_to(self) -> int:
        """The cumulative ack: every frame up to this sequence number has arrived."""
        return self._receive_next - 1

    @property
    def idle(self) -> bool:
        """Nothing to send, nothing unacknowledged, no ack owed."""
        return not self._unsent and not self._in_flight and self._ack_due is None

    # --- sending -------------------------------------------------------------------------

    def send(self, frame: bytes, tag: Hashable | None = None) -> int:
        """Queue one encoded frame; return its sequence number. `tag` comes back on ack."""
        if len(frame) > MAX_FRAME:
            raise ValueError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME}")
        seq = self._next_seq
        self._next_seq = seq + 1
        unsent = self._unsent
        unsent.append((seq, b"[%d,%b]" % (seq, frame), tag))
        # This runs once per recipient of every broadcast: no property calls here.
        if len(unsent) + len(self._in_flight) > self.config.max_queue and self.failure is None:
            self.failure = "overloaded"
        return seq

    def datagrams_to_send(self, now: float, budget: int | None = None) -> list[bytes]:
        """Every datagram due now: retransmissions, new frames, owed acks.

        Frames are packed in sequence order, as many per datagram as fit. `budget` caps
        the bytes returned (the anti-amplification rule); what does not fit stays queued.
        """
        unsent = self._unsent
        if not self._has_lost:
            if not unsent:
                if not self._must_send_bare(now):
                    return []  # the common case after an ack came in: nothing to say
                if budget is None:
                    # An ack (and one-shot fields) alone: a keepalive's answer, say.
                    return [self._finish_body(self._base(with_sack=True), b"")]
            elif budget is None and unsent[-1][0] < self._window_limit():
                # The common case under load: everything queued may go, and often fits
                # one datagram. Packing it whole skips the frame-by-frame loop below.
                base = self._base(with_sack=True)
                body = b",".join([wrapped for _seq, wrapped, _tag in unsent])
                if len(base) + len(body) + _FRAMES_OVERHEAD <= self.config.max_datagram:
                    self._commit_unsent(now)
                    return [self._finish_body(base, body)]
        frames = self._frames_due(now)
        if not frames and not self._must_send_bare(now):
            return []
        out: list[bytes] = []
        spent = 0
        position = 0
        while True:
            base = self._base(with_sack=True)
            if position < len(frames) and len(base) + len(frames[position][1]) > self._room:
                base = self._base(with_sack=False)
            size = len(base) + _FRAMES_OVERHEAD
            start = position
            while position < len(frames):
                grown = size + len(frames[position][1]) + (position > start)
                if grown > self.config.max_datagram and position > start:
                    break
                size = grown
                position += 1
            if position == start:
                size = len(base) + 1
            if budget is not None and spent + size > budget:
                position = start
                if not out and self._must_send_bare(now) and len(base) + 1 <= budget:
                    # The frames must wait, but the ack and one-shot fields still fit.
                    out.append(self._finish(base, []))
                break
            datagram = self._finish(base, [wrapped for _seq, wrapped in frames[start:position]])
            spent += len(datagram)
            out.append(datagram)
            if position >= len(frames):
                break
        self._commit_sent(frames[:position], now)
        return out

    @property
    def _room(self) -> int:
        return self.config.max_datagram - _FRAMES_OVERHEAD

    def _frames_due(self, now: float) -> list[tuple[int, bytes]]:
        due: list[tuple[int, bytes]] = []
        if self._has_lost:
            due.extend((seq, item.wrapped) for seq, item in self._in_flight.items() if item.lost)
        limit = self._window_limit()
        for seq, wrapped, _tag in self._unsent:
            if seq >= limit:
                break
            due.append((seq, wrapped))
        return due

    def _window_limit(self) -> int:
        lowest = next(iter(self._in_flight), None)
        if lowest is None:
            lowest = self._unsent[0][0] if self._unsent else self._next_seq
        return lowest + self.config.window

    def _commit_sent(self, sent: list[tuple[int, bytes]], now: float) -> None:
        deadline = now + self._rto
        retransmitting = self._has_lost  # otherwise every frame sent is a new one
        for seq, wrapped in sent:
            self._transmissions += 1
            item = self._in_flight.get(seq) if retransmitting else None
            if item is not None:
                item.transmissions += 1
                item.last_sent = now
                item.deadline = deadline
                item.order = self._transmissions
                item.lost = False
                self.retransmissions += 1
                continue
            _seq, _wrapped, tag = self._unsent.popleft()
            self._in_flight[seq] = _InFlight(wrapped, tag, now, deadline, self._transmissions)
        if sent and (self._rto_floor is None or deadline < self._rto_floor):
            self._rto_floor = deadline
        if retransmitting:
            self._has_lost = any(item.lost for item in self._in_flight.values())

    def _commit_unsent(self, now: float) -> None:
        """Every unsent frame has just been sent for the first time."""
        deadline = now + self._rto
        order = self._transmissions
        in_flight = self._in_flight
        for seq, wrapped, tag in self._unsent:
            order += 1
            in_flight[seq] = _InFlight(wrapped, tag, now, deadline, order)
        if self._rto_floor is None or deadline < self._rto_floor:
            self._rto_floor = deadline
        self._transmissions = order
        self._unsent.clear()

    def _must_send_bare(self, now: float) -> bool:
        return bool(self.extra) or (self._ack_due is not None and self._ack_due <= now)

    def _base(self, *, with_sack: bool) -> bytes:
        parts = [self.header, b',"pn":%d,"ack":%d' % (self._pn + 1, self._receive_next - 1)]
        if with_sack and self._out_of_order:
            parts.append(b',"sack":' + _encode_ranges(self._sack_ranges()))
        if self.extra:
            parts.append(self.extra)
        return b"".join(parts)

    def _finish(self, base: bytes, batch: list[bytes]) -> bytes:
        if batch:
            return self._finish_body(base, b",".join(batch))
        return self._finish_body(base, b"")

    def _finish_body(self, base: bytes, body: bytes) -> bytes:
        """Close a datagram whose frames, comma-separated, are `body`."""
        self._pn += 1
        self.extra = b""
        self._ack_due = None
        self._unacked_datagrams = 0
        if body:
            return b"".join((base, b',"frames":[', body, b"]}"))
        return base + b"}"

    def _sack_ranges(self) -> list[tuple[int, int]]:
        ranges: list[tuple[int, int]] = []
        for seq in sorted(self._out_of_order):
            if ranges and ranges[-1][1] == seq - 1:
                ranges[-1] = (ranges[-1][0], seq)
            else:
                ranges.append((seq, seq))
        # The newest ranges tell the sender most about what is still missing.
        return ranges[-SACK_RANGES_MAX:]

    # --- receiving ------------------------------------------------------------------------

    def receive(
        self,
        pn: int,
        ack: int,
        sack: Iterable[tuple[int, int]],
        frames: Iterable[tuple[int, msgspec.Raw]],
        now: float,
    ) -> list[tuple[int, msgspec.Raw]]:
        """Take in one session datagram's link fields; return `(seq, frame)` now in order."""
        self.last_received = now
        self.highest_pn = max(self.highest_pn, pn)
        self._on_ack(ack, sack, now)
        delivered: list[tuple[int, msgspec.Raw]] = []
        had_frames = False
        immediate = False
        horizon = self._receive_next + self.config.receive_window
        for seq, raw in frames:
            had_frames = True
            if seq < self._receive_next or seq in self._out_of_order:
                self.duplicates += 1
                immediate = True
            elif seq >= horizon:
                immediate = True
            elif seq == self._receive_next:
                delivered.append((seq, raw))
                self._receive_next += 1
                while self._receive_next in self._out_of_order:
                    seq = self._receive_next
                    delivered.append((seq, self._out_of_order.pop(seq)))
                    self._receive_next += 1
            else:
                self._out_of_order[seq] = raw
                immediate = True
        if had_frames:
            self._unacked_datagrams += 1
            if immediate or self._unacked_datagrams >= self.config.ack_every:
                self._ack_due = now
            elif self._ack_due is None:
                self._ack_due = now + self.config.ack_delay
        return delivered

    def acknowledge_now(self, now: float) -> None:
        """Owe the peer an ack now, not after `ack_delay`: for frames nothing else answers.

        Delaying the ack of a keepalive only lengthens the peer's RTT sample and costs
        the owner a timer wake-up; nothing would have been coalesced with it.
        """
        if self._ack_due is not None and self._ack_due > now:
            self._ack_due = now

    def _on_ack(self, ack: int, sack: Iterable[tuple[int, int]], now: float) -> None:
        in_flight = self._in_flight
        if not in_flight:
            return
        highest_sent = self._next_seq - 1
        if ack > highest_sent:
            ack = 0  # A peer acknowledging frames never sent is lying; believe nothing.
        elif ack >= next(reversed(in_flight)):
            self._all_acked(now)  # the common case: everything in flight has arrived
            return
        acked: list[int] = []
        for seq in self._in_flight:
            if seq > ack:
                break
            acked.append(seq)
        for start, end in sack:
            if start <= end <= highest_sent:
                acked.extend(seq for seq in self._in_flight if start <= seq <= end)
        if not acked:
            return
        sample: float | None = None
        newest_order = 0
        for seq in acked:
            item = self._in_flight.pop(seq, None)
            if item is None:
                continue
            # Karn's rule: only a frame sent once gives an unambiguous RTT sample.
            if item.transmissions == 1:
                sample = now - item.last_sent
            newest_order = max(newest_order, item.order)
            if item.tag is not None:
                self.acked_tags.append(item.tag)
        if not self._in_flight:
            self._rto_floor = None  # every timer stopped: keep an idle link timer-free
        if sample is not None:
            self._update_rto(sample)
        # Early retransmit: a frame sent well before one that has now arrived is lost.
        threshold = newest_order - self.config.reorder_threshold
        for item in self._in_flight.values():
            if item.order <= threshold and not item.lost:
                item.lost = True
                self._has_lost = True

    def _all_acked(self, now: float) -> None:
        sample: float | None = None
        tags = self.acked_tags
        for item in self._in_flight.values():
            if item.transmissions == 1:
                sample = now - item.last_sent
            if item.tag is not None:
                tags.append(item.tag)
        self._in_flight.clear()
        self._rto_floor = None
        self._has_lost = False
        if sample is not None:
            self._update_rto(sample)

    def _update_rto(self, sample: float) -> None:
        # RFC 6298, section 2, with alpha = 1/8 and beta = 1/4.
        if self._srtt is None:
            self._srtt = sample
            self._rttvar = sample / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - sample)
            self._srtt = 0.875 * self._srtt + 0.125 * sample
        rto = self._srtt + max(0.001, 4 * self._rttvar)
        self._rto = min(self.config.max_rto, max(self.config.min_rto, rto))

    # --- time ------------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        """When `handle_timer` must next run, or None if nothing is waiting on time.

        It may be a little early (after acks removed the frame whose timer it was): an
        early `handle_timer` finds nothing expired and makes the next answer exact.
        """
        deadline = self._ack_due
        floor = self._rto_floor
        if floor is not None and (deadline is None or floor < deadline):
            deadline = floor
        return deadline

    def handle_timer(self, now: float) -> None:
        """Mark frames whose retransmission timer expired as lost, backing the timer off."""
        expired = False
        floor: float | None = None
        for item in self._in_flight.values():
            if item.lost:
                continue
            if item.deadline <= now:
                if item.transmissions > self.config.max_retransmits:
                    self.failure = self.failure or "unresponsive"
                    return
                item.lost = True
                expired = True
            elif floor is None or item.deadline < floor:
                floor = item.deadline
        self._rto_floor = floor
        if expired:
            self._has_lost = True
            self._rto = min(self.config.max_rto, self._rto * 2)

    def wants_to_send(self, now: float) -> bool:
        """Whether `datagrams_to_send(now)` would return something."""
        if self._must_send_bare(now) or self._has_lost:
            return True
        return bool(self._unsent) and self._unsent[0][0] < self._window_limit()


_FRAMES_OVERHEAD = len(b',"frames":[]}')


def _encode_ranges(ranges: list[tuple[int, int]]) -> bytes:
    return b"[" + b",".join(b"[%d,%d]" % pair for pair in ranges) + b"]"
