"""One end of a reliable, ordered link over datagrams: no I/O, time passed in.

A `Link` numbers the frames it is given (`send`), packs them into payloads of at most
`config.max_payload` bytes (`MAX_PAYLOAD` by default), each sealed into a datagram
(`seal`) under a packet number used once, sends them again until the peer acknowledges
them, and hands back the peer's frames exactly once and in order (`receive`). The owner
(the daemon's engine or the client core) reads the bytes to send from
`datagrams_to_send` and calls `handle_timer` at `next_timer`; frames for a link with
nothing else to send may instead go out at once (`send_at_once`), in the datagram
`datagrams_to_send` would have made of them.

Loss recovery follows QUIC's (RFC 9002), with frames in place of packets:

- RTT estimation (section 5): the latest and smoothed RTT and its variance. Every
  datagram echoes the highest packet number its sender has received (`echo`); a new
  echo of a datagram that carried frames is an RTT sample, unambiguous even when the
  frames in it were retransmissions (QUIC's packet numbers, where Karn's rule would
  leave a lossy path without samples).
- Loss detection (section 6.1): a frame is lost once a frame sent 3 transmissions after it
  is acknowledged (the packet threshold), or once it is older than 9/8 of the larger of
  the smoothed and latest RTT while a frame sent after it is acknowledged (the time
  threshold); a loss timer fires for the latter when nothing else comes.
- Probe timeout (section 6.2): `srtt + max(4 * rttvar, 1 ms) + max_ack_delay`, the peer's
  longest acknowledgement delay, doubled for each probe timeout in a row and reset by any
  acknowledgement of new frames. When it fires, the oldest and the newest unacknowledged
  frames are sent again at once (a tail-loss probe, and what the peer's in-order delivery
  waits for) instead of waiting for a retransmission timeout.
- Acknowledgements: cumulative plus up to `SACK_RANGES_MAX` selective ranges; pure acks
  wait up to `ack_delay` for a datagram to ride on, and go at once when a frame arrived out
  of order, twice, or beyond the window, or after `ack_every` datagrams or `ack_frames`
  frames.

A link keeps at most `window` frames in flight and gives up (`failure = "unresponsive"`)
once frames have gone unacknowledged for `give_up_after` seconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec

from .wire import (
    MAX_FRAME,
    MAX_PAYLOAD,
    NUMBERED_FRAME,
    PAYLOAD_CLOSE_OVERHEAD,
    PAYLOAD_HEAD,
    SACK_RANGES_MAX,
    SEAL_OVERHEAD,
    close_payload,
    payload_head,
)

Seal = Callable[[int, bytes], bytes]
"""Turns a payload into the datagram that carries it, with its packet number: the channel's
`seal` (the packet number is the record's nonce, used once)."""

GRANULARITY = 0.001
"""kGranularity: the timer granularity RFC 9002 assumes, in seconds."""
INITIAL_RTT = 0.333
"""kInitialRtt: the RTT assumed before the first sample (so the first PTO is about 1 s)."""
PACKET_THRESHOLD = 3
SENT_PNS_KEPT = 256
"""Send times kept for RTT samples: more than a window's worth of datagrams."""
TIME_THRESHOLD = 9 / 8
_INITIAL_PTO_RTT = INITIAL_RTT + max(4 * INITIAL_RTT / 2, GRANULARITY)
"""The RTT's share of the probe timeout before the first sample."""


LinkFailure = Literal["overloaded", "unresponsive", "too_many_sessions", "banned"]
"""`overloaded`: more queued than `max_queue` (frames) or `max_queue_bytes` allow;
`unresponsive`: nothing acknowledged for `give_up_after`; `too_many_sessions` and
`banned`: set by the daemon, whose session moved onto an address that has as many as it
may, or that the operator turned away."""


@dataclass(frozen=True, slots=True)
class LinkConfig:
    window: int = 64
    """Most frames unacknowledged at once."""
    receive_window: int = 256
    """Frames beyond the cumulative ack that a receiver buffers; later ones are dropped."""
    max_queue: int = 4096
    """Most frames waiting (unsent and in flight) before the link fails as overloaded."""
    max_queue_bytes: int = 1024 * 1024
    """Most bytes of frames waiting before the link fails as overloaded."""
    receive_buffer_bytes: int = 64 * 1024
    """Most bytes of frames held out of order; past it, later frames are dropped (the
    sender, not acknowledged, sends them again)."""
    ack_delay: float = 0.010
    """Longest our acknowledgement waits for a datagram of our own to ride on."""
    ack_every: int = 2
    """Acknowledge at once when this many datagrams with frames are unacknowledged."""
    ack_frames: int | None = None
    """...or when this many frames are, however few datagrams brought them (None: the
    datagrams alone count). A quarter of the peer's `window` keeps it from filling while
    an acknowledgement waits."""
    peer_ack_delay: float = 0.025
    """The peer's `ack_delay`: how long its acknowledgement of our frames may wait."""
    max_pto: float = 4.0
    """The probe timeout never backs off beyond this."""
    give_up_after: float = 20.0
    """Fail once frames have been unacknowledged for this long with no progress."""
    max_payload: int = MAX_PAYLOAD
    """The largest payload a datagram carries (the datagram adds `SEAL_OVERHEAD`)."""


_NOTHING_UNSENT: deque[tuple[int, bytes, Hashable | None]] = deque(maxlen=0)
"""What an idle link's queue of unsent frames is: one shared empty deque, which `send`
replaces before it queues anything (an empty deque takes 760 bytes; 10,000 idle
sessions would keep 7.6 MB of them)."""


@dataclass(slots=True)
class _InFlight:
    wrapped: bytes
    tag: Hashable | None
    sent: float
    """When it was last sent."""
    order: int
    """When it was last sent, counted in frame transmissions: the packet-number analogue."""
    lost: bool = False


class Link:
    """One end of a reliable link; see the module docstring."""

    __slots__ = (
        "_ack_due",
        "_in_flight",
        "_largest_acked_order",
        "_largest_echo",
        "_last_sent",
        "_latest_rtt",
        "_loss_time",
        "_lost",
        "_next_seq",
        "_out_of_order",
        "_out_of_order_bytes",
        "_pn",
        "_probing",
        "_progress",
        "_pto_count",
        "_pto_rtt",
        "_receive_next",
        "_rttvar",
        "_sacked_tags",
        "_sent_pns",
        "_srtt",
        "_transmissions",
        "_unacked_datagrams",
        "_unacked_frames",
        "_unsent",
        "acked_tags",
        "config",
        "duplicates",
        "extra",
        "failure",
        "frozen_ack",
        "highest_pn",
        "last_received",
        "patience",
        "probes_sent",
        "queued_bytes",
        "retransmissions",
        "seal",
    )

    def __init__(self, seal: Seal, config: LinkConfig | None = None) -> None:
        self.seal = seal
        self.config = config or LinkConfig()
        self.failure: LinkFailure | None = None
        """Why the link is of no more use, once it is: the owner ends it with this reason."""
        self.extra = b""
        """One-shot fields for the next datagram, which is then sent at once."""
        self.acked_tags: list[Hashable] = []
        """Tags of frames the peer has acknowledged since the owner last emptied this: by
        its cumulative ack, so that the peer has delivered them (not only holds them)."""
        self._sacked_tags: dict[int, Hashable] | None = None
        """Tags of frames acknowledged only selectively, by sequence number: the peer holds
        them, out of order, and a peer that goes away before the gap is filled never
        delivered them. They join `acked_tags` once the cumulative ack covers them."""
        self.highest_pn = -1
        self.last_received: float | None = None
        self.frozen_ack: int | None = None
        """Once set (`freeze_ack`), the cumulative ack every datagram reports from then on."""
        # Sending.
        self._next_seq = 1
        self._unsent: deque[tuple[int, bytes, Hashable | None]] = _NOTHING_UNSENT
        self._in_flight: dict[int, _InFlight] = {}
        self.queued_bytes = 0
        """Bytes of the frames not yet acknowledged (unsent or in flight)."""
        self._pn = 0
        self._transmissions = 0
        self._lost = 0
        """Frames in flight marked lost, waiting to be sent again."""
        self._probing = False
        """Frames to send again now as probes (the oldest and the newest in flight), after a
        timeout."""
        # RTT and timers (RFC 9002, sections 5 and 6).
        self._latest_rtt = 0.0
        self._srtt: float | None = None
        self._rttvar = INITIAL_RTT / 2
        self._pto_rtt = _INITIAL_PTO_RTT
        """The RTT's share of the probe timeout, `srtt + max(4 * rttvar, kGranularity)`: kept,
        for it is read after every datagram sent and changes only with an RTT sample (so
        the RTT is changed in `_update_rtt` alone)."""
        self._pto_count = 0
        self.patience = 0.0
        """Seconds the probe timer waits beyond the probe timeout, before any backoff: its
        owner's say-so that what is in flight is not urgent (a client's lone keepalive)."""
        self._last_sent = 0.0
        """When a datagram carrying frames was last sent (the probe timer counts from it)."""
        self._loss_time: float | None = None
        self._sent_pns: dict[int, float] = {}
        """When each recent datagram that carried frames was sent, by packet number."""
        self._largest_echo = 0
        self._largest_acked_order = 0
        """The latest transmission the peer has acknowledged (losses are judged against it)."""
        self._progress = 0.0
        """When the peer last acknowledged something new (or the first frame went out)."""
        # Receiving.
        self._receive_next = 1
        self._out_of_order: dict[int, bytes] = {}
        self._out_of_order_bytes = 0
        self._ack_due: float | None = None
        self._unacked_datagrams = 0
        self._unacked_frames = 0
        # Statistics.
        self.retransmissions = 0
        self.probes_sent = 0
        self.duplicates = 0

    # --- state -------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Frames not yet acknowledged (unsent or in flight)."""
        return len(self._unsent) + len(self._in_flight)

    @property
    def srtt(self) -> float | None:
        return self._srtt

    @property
    def pto(self) -> float:
        """The probe timeout, before backoff (RFC 9002, section 6.2.1)."""
        return self._pto_rtt + self.config.peer_ack_delay

    @property
    def received_up_to(self) -> int:
        """The cumulative ack: every frame up to this sequence number has arrived."""
        return self._receive_next - 1

    def freeze_ack(self) -> int:
        """Report from now on only what has arrived so far, and return it: frames that
        come later are taken in and handed on, but never acknowledged.

        For an end that is leaving: whichever of its datagrams the peer takes last, it
        learns the same, so that the owner knows exactly which frames the peer counts
        as delivered (a private message not acknowledged is shown at the next login).
        """
        if self.frozen_ack is None:
            self.frozen_ack = self._receive_next - 1
        return self.frozen_ack

    @property
    def held_bytes(self) -> int:
        """Bytes of frames this link holds: queued or in flight, and received early."""
        return self.queued_bytes + self._out_of_order_bytes

    def unanswered_for(self, now: float) -> float:
        """How long frames have been in flight without the peer acknowledging anything
        new (0 with nothing in flight): the clock `give_up_after` is counted on."""
        return now - self._progress if self._in_flight else 0.0

    def give_up_from(self, now: float) -> None:
        """Count the time to give up after from `now`, not from when the peer last
        acknowledged something new: the owner knows that what is in flight could not be
        answered before (the way to the peer was closed until it spoke now)."""
        if self._in_flight:
            self._progress = now

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
        if unsent is _NOTHING_UNSENT:
            unsent = self._unsent = deque()
        wrapped = NUMBERED_FRAME % (seq, frame)
        unsent.append((seq, wrapped, tag))
        self.queued_bytes += len(wrapped)
        # This runs once per recipient of every broadcast: no property calls here.
        config = self.config
        if (
            len(unsent) + len(self._in_flight) > config.max_queue
            or self.queued_bytes > config.max_queue_bytes
        ) and self.failure is None:
            self.failure = "overloaded"
        return seq

    def send_at_once(
        self, frames: Sequence[bytes], tag: Hashable | None, now: float
    ) -> bytes | None:
        """Number `frames` and return the datagram that carries them, sent now, if the link
        has nothing else to send and room for them in its window and one datagram; None if
        not (then `send` queues them).

        Room messages to a reader that has taken everything before: the common case of a
        fan-out, spared the queue. The datagram is what `datagrams_to_send` would make of
        the frames queued alone (with the acknowledgement and one-shot fields due).
        """
        if self._unsent or self._lost or self._probing or self.failure is not None:
            return None
        seq = self._next_seq
        in_flight = self._in_flight
        config = self.config
        count = len(frames)
        if in_flight and seq + count > next(iter(in_flight)) + config.window:
            return None
        if count == 1:  # the common case: no list, no loop
            if len(frames[0]) > MAX_FRAME:
                raise ValueError(f"frame of {len(frames[0])} bytes exceeds {MAX_FRAME}")
            body = NUMBERED_FRAME % (seq, frames[0])
            size = len(body)
        else:
            if count > config.window or any(len(frame) > MAX_FRAME for frame in frames):
                return None  # queued: `send` says what is wrong with it
            wrapped = [NUMBERED_FRAME % (seq + i, frame) for i, frame in enumerate(frames)]
            body = b",".join(wrapped)
            size = len(body) - count + 1  # the frames, not the commas between
        head = self._head(with_sack=True)
        if (
            len(head) + len(body) + PAYLOAD_CLOSE_OVERHEAD > config.max_payload
            or len(in_flight) + count > config.max_queue
            or self.queued_bytes + size > config.max_queue_bytes
        ):
            return None  # queued, they go as they always have (or fail the link as overloaded)
        self._next_seq = seq + count
        self.queued_bytes += size
        if not in_flight:
            self._progress = now  # as `_sending`: the give-up clock starts
        self._last_sent = now
        order = self._transmissions + 1
        if count == 1:
            in_flight[seq] = _InFlight(body, tag, now, order)
        else:
            for each in wrapped:
                in_flight[seq] = _InFlight(each, tag, now, order)
                seq += 1
                order += 1
            order -= 1
        self._transmissions = order
        return self._close(head, body, now)

    def datagrams_to_send(self, now: float, budget: int | None = None) -> list[bytes]:
        """Every datagram due now: lost frames, probes, new frames, owed acks.

        Frames are packed in sequence order, as many per datagram as fit. `budget` caps
        the bytes returned (the anti-amplification rule); what does not fit stays queued.
        """
        unsent = self._unsent
        if not self._lost and not self._probing:
            if not unsent:
                if not self._must_send_bare(now):
                    return []  # the common case after an ack came in: nothing to say
                if budget is None:
                    # An ack (and one-shot fields) alone: a keepalive's answer, say.
                    return [self._close(self._head(with_sack=True), b"", now)]
            elif budget is None and unsent[-1][0] < self._window_limit():
                # The common case under load: everything queued may go, and often fits
                # one datagram. Packing it whole skips the frame-by-frame loop below.
                head = self._head(with_sack=True)
                if len(unsent) == 1:
                    body = unsent[0][1]  # one frame: a broadcast to an idle receiver, say
                else:
                    body = b",".join([wrapped for _seq, wrapped, _tag in unsent])
                if len(head) + len(body) + PAYLOAD_CLOSE_OVERHEAD <= self.config.max_payload:
                    self._commit_unsent(now)
                    return [self._close(head, body, now)]
        probing = self._probing
        frames = self._frames_due()
        if not frames and not self._must_send_bare(now):
            return []
        out: list[bytes] = []
        spent = 0
        position = 0
        room = self.config.max_payload - PAYLOAD_CLOSE_OVERHEAD
        while True:
            head = self._head(with_sack=True)
            if position < len(frames) and len(head) + len(frames[position][1]) > room:
                head = self._head(with_sack=False)
            size = len(head) + PAYLOAD_CLOSE_OVERHEAD
            start = position
            while position < len(frames):
                grown = size + len(frames[position][1]) + (position > start)
                if grown > self.config.max_payload and position > start:
                    break
                size = grown
                position += 1
            if position == start:
                size = len(head) + 1
            if budget is not None and spent + size + SEAL_OVERHEAD > budget:
                position = start
                bare = len(head) + 1 + SEAL_OVERHEAD
                if not out and self._must_send_bare(now) and bare <= budget:
                    # The frames must wait, but the ack and one-shot fields still fit.
                    out.append(self._close(head, b"", now))
                break
            body = b",".join([wrapped for _seq, wrapped in frames[start:position]])
            datagram = self._close(head, body, now)
            spent += len(datagram)
            out.append(datagram)
            if position >= len(frames):
                break
        self._commit_sent(frames[:position], now)
        if probing and out and budget is None:
            # A second copy of the probe in a datagram of its own: one lost datagram
            # then no longer costs another probe timeout, twice as long.
            out.append(self._probe_copy(now))
        return out

    def _probe_copy(self, now: float) -> bytes:
        head = self._head(with_sack=False)
        probes = self._probe_frames()
        body = b",".join(wrapped for _seq, wrapped in probes)
        if len(head) + len(body) + PAYLOAD_CLOSE_OVERHEAD > self.config.max_payload:
            body = probes[-1][1]
        return self._close(head, body, now)

    def _probe_frames(self) -> list[tuple[int, bytes]]:
        """What a probe carries: the oldest frame in flight and the newest.

        The newest shows the tail of what was sent (RFC 9002's tail-loss probe); the
        oldest is what the peer's in-order delivery waits for, so a probe that gets
        through also fills the first gap without another round trip.
        """
        waiting = [(seq, item.wrapped) for seq, item in self._in_flight.items() if not item.lost]
        if len(waiting) <= 2:
            return waiting
        return [waiting[0], waiting[-1]]

    def last_words(self, now: float, budget: int | None = None) -> list[bytes]:
        """Every frame not yet acknowledged, sent now, for a link about to end.

        The peer may lack an earlier frame as well as the last one: without it, the last
        one (the answer to a logout, say) could never be delivered in order.
        """
        for item in self._in_flight.values():
            if not item.lost:
                item.lost = True
                self._lost += 1
        return self.datagrams_to_send(now, budget)

    def _frames_due(self) -> list[tuple[int, bytes]]:
        """Lost frames, then probes (the oldest and the newest in flight), then new frames in
        the window."""
        due: list[tuple[int, bytes]] = []
        if self._lost:
            due.extend((seq, item.wrapped) for seq, item in self._in_flight.items() if item.lost)
        if self._probing:
            due.extend(self._probe_frames())
        limit = self._window_limit()
        for seq, wrapped, _tag in self._unsent:
            if seq >= limit:
                break
            due.append((seq, wrapped))
        return due

    def _window_limit(self) -> int:
        if self._in_flight:
            return next(iter(self._in_flight)) + self.config.window
        return (self._unsent[0][0] if self._unsent else self._next_seq) + self.config.window

    def _commit_sent(self, sent: list[tuple[int, bytes]], now: float) -> None:
        in_flight = self._in_flight
        if sent:
            self._sending(now)
        for seq, _wrapped in sent:
            self._transmissions += 1
            item = in_flight.get(seq)
            if item is not None:
                item.sent = now
                item.order = self._transmissions
                item.lost = False
                self.retransmissions += 1
                continue
            _seq, wrapped, tag = self._unsent.popleft()
            in_flight[seq] = _InFlight(wrapped, tag, now, self._transmissions)
        if not self._unsent:
            self._unsent = _NOTHING_UNSENT
        self._lost = sum(1 for item in in_flight.values() if item.lost) if self._lost else 0
        self._probing = False

    def _commit_unsent(self, now: float) -> None:
        """Every unsent frame has just been sent for the first time."""
        self._sending(now)
        order = self._transmissions
        in_flight = self._in_flight
        for seq, wrapped, tag in self._unsent:
            order += 1
            in_flight[seq] = _InFlight(wrapped, tag, now, order)
        self._transmissions = order
        self._unsent = _NOTHING_UNSENT

    def _sending(self, now: float) -> None:
        """A datagram with frames leaves now: the probe timer restarts from it."""
        if not self._in_flight:
            self._progress = now  # the give-up clock starts with the first frame in flight
        self._last_sent = now

    def _must_send_bare(self, now: float) -> bool:
        return bool(self.extra) or (self._ack_due is not None and self._ack_due <= now)

    def _head(self, *, with_sack: bool) -> bytes:
        echo = self.highest_pn if self.highest_pn > 0 else 0
        if not self._out_of_order and not self.extra and self.frozen_ack is None:
            # The common case, once per datagram: nothing missing, nothing one-shot.
            return PAYLOAD_HEAD % (self._receive_next - 1, echo)
        if self.frozen_ack is not None:
            # Nothing that came since is reported, selectively either.
            return payload_head(self.frozen_ack, echo, []) + self.extra
        sack = self._sack_ranges() if with_sack and self._out_of_order else []
        head = payload_head(self._receive_next - 1, echo, sack)
        return head + self.extra if self.extra else head

    def _close(self, head: bytes, body: bytes, now: float) -> bytes:
        self._pn += 1
        if body:
            sent = self._sent_pns
            sent[self._pn] = now
            if len(sent) > SENT_PNS_KEPT:
                del sent[next(iter(sent))]
        self.extra = b""
        self._ack_due = None
        self._unacked_datagrams = 0
        self._unacked_frames = 0
        return self.seal(self._pn, close_payload(head, body))

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
        echo: int = 0,
    ) -> list[tuple[int, msgspec.Raw]]:
        """Take in one session datagram's link fields; return `(seq, frame)` now in order."""
        heard = self.last_received
        self.last_received = now
        if pn > self.highest_pn:
            self.highest_pn = pn
        if echo > self._largest_echo:
            self._on_echo(echo, now)
        if self._sacked_tags is not None and ack < self._next_seq:
            self._release_tags(ack)
        if self._in_flight:
            self._on_ack(ack, sack, now)
            if self._pto_count and heard is not None and now - heard >= self._probe_wait():
                # The peer speaks again after a silence longer than the probe timer now
                # waits, with our frames still unacknowledged: an outage has ended, or it
                # has a new address. A probe goes now, not up to `max_pto` later.
                self._probing = True
                self.probes_sent += 1
        delivered: list[tuple[int, msgspec.Raw]] = []
        count = 0
        immediate = False
        horizon = self._receive_next + self.config.receive_window
        for seq, raw in frames:
            count += 1
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
                    held = self._out_of_order.pop(seq)
                    self._out_of_order_bytes -= len(held)
                    delivered.append((seq, msgspec.Raw(held)))
                    self._receive_next += 1
            else:
                # A copy: the frame alone is held, not the whole datagram it came in.
                held = bytes(raw)
                if self._out_of_order_bytes + len(held) <= self.config.receive_buffer_bytes:
                    self._out_of_order[seq] = held
                    self._out_of_order_bytes += len(held)
                immediate = True
        if count:
            self._unacked_datagrams += 1
            self._unacked_frames += count
            config = self.config
            if (
                immediate
                or self._unacked_datagrams >= config.ack_every
                or (config.ack_frames is not None and self._unacked_frames >= config.ack_frames)
            ):
                self._ack_due = now
            elif self._ack_due is None:
                self._ack_due = now + self.config.ack_delay
        return delivered

    def _on_echo(self, echo: int, now: float) -> None:
        """The peer has our datagram `echo`: the time since we sent it is an RTT sample."""
        self._largest_echo = echo
        sent = self._sent_pns
        when = sent.get(echo)
        if when is not None:
            self._update_rtt(now - when)
        while sent:
            oldest = next(iter(sent))
            if oldest > echo:
                break
            del sent[oldest]
        if not sent:
            self._sent_pns = {}  # a dict does not shrink: an idle link keeps an empty one

    def acknowledge_now(self, now: float) -> None:
        """Owe the peer an ack now, not after `ack_delay`: for frames that want an answer.

        The peer's probe timer counts our ack delay in; an answer that is not ready yet
        (a message waiting for its commit) should not also hold back the ack.
        """
        if self._ack_due is not None and self._ack_due > now:
            self._ack_due = now

    def _on_ack(self, ack: int, sack: Iterable[tuple[int, int]], now: float) -> None:
        in_flight = self._in_flight
        highest_sent = self._next_seq - 1
        if ack > highest_sent:
            return  # A peer acknowledging frames never sent is lying; believe nothing.
        if ack >= next(reversed(in_flight)):
            self._all_acked(now)  # the common case: everything in flight has arrived
            return
        acked: list[int] = []
        for seq in in_flight:
            if seq > ack:
                break
            acked.append(seq)
        for start, end in sack:
            if start <= end <= highest_sent:
                acked.extend(seq for seq in in_flight if start <= seq <= end)
        if not acked:
            return
        newest: _InFlight | None = None
        for seq in acked:
            item = in_flight.pop(seq, None)
            if item is None:
                continue
            self.queued_bytes -= len(item.wrapped)
            if item.lost:
                self._lost -= 1
            if newest is None or item.order > newest.order:
                newest = item
            if item.tag is not None:
                if seq <= ack:
                    self.acked_tags.append(item.tag)
                else:
                    if self._sacked_tags is None:
                        self._sacked_tags = {}
                    self._sacked_tags[seq] = item.tag
        if newest is None:
            return
        self._progressed(newest, now)
        self._detect_losses(now)

    def _release_tags(self, ack: int) -> None:
        """The cumulative ack has reached frames acknowledged selectively before."""
        held = self._sacked_tags
        assert held is not None
        for seq in [seq for seq in held if seq <= ack]:
            self.acked_tags.append(held.pop(seq))
        if not held:
            self._sacked_tags = None

    def _all_acked(self, now: float) -> None:
        newest: _InFlight | None = None
        tags = self.acked_tags
        freed = 0
        for item in self._in_flight.values():
            freed += len(item.wrapped)
            if newest is None or item.order > newest.order:
                newest = item
            if item.tag is not None:
                tags.append(item.tag)
        self.queued_bytes -= freed
        self._in_flight.clear()
        self._lost = 0
        self._probing = False
        self._loss_time = None
        if newest is not None:
            self._progressed(newest, now)

    def _progressed(self, newest: _InFlight, now: float) -> None:
        """New frames were acknowledged, the newest of them `newest`."""
        self._pto_count = 0
        self._progress = now
        self._largest_acked_order = max(self._largest_acked_order, newest.order)

    def seed_rtt(self, sample: float) -> None:
        """An RTT measured before the link existed (the login's round trip), if none yet.

        Without it the first frames wait out a probe timeout of about a second (from
        `INITIAL_RTT`) when lost, and again if the frame that would have measured the
        path is itself resent.
        """
        if self._srtt is None and sample >= 0:
            self._update_rtt(sample)

    def _update_rtt(self, sample: float) -> None:
        # RFC 9002, section 5.3. The peer's ack delay is not reported, so it stays in.
        self._latest_rtt = sample
        if self._srtt is None:
            self._srtt = sample
            self._rttvar = sample / 2
        else:
            self._rttvar = 0.75 * self._rttvar + 0.25 * abs(self._srtt - sample)
            self._srtt = 0.875 * self._srtt + 0.125 * sample
        self._pto_rtt = self._srtt + max(4 * self._rttvar, GRANULARITY)

    def _loss_delay(self) -> float:
        srtt = INITIAL_RTT if self._srtt is None else self._srtt
        return max(TIME_THRESHOLD * max(srtt, self._latest_rtt), GRANULARITY)

    def _detect_losses(self, now: float) -> None:
        """RFC 9002, section 6.1: frames sent before the newest acknowledged one, now lost."""
        self._loss_time = None
        newest_order = self._largest_acked_order
        delay = self._loss_delay()
        for item in self._in_flight.values():
            if item.lost or item.order > newest_order:
                continue
            # The same sum as the loss timer's deadline, so that the timer, once due,
            # always finds the frame lost (in floating point, `now - delay` may not).
            when = item.sent + delay
            if newest_order - item.order >= PACKET_THRESHOLD or when <= now:
                item.lost = True
                self._lost += 1
            elif self._loss_time is None or when < self._loss_time:
                self._loss_time = when

    # --- time ------------------------------------------------------------------------------

    def _probe_wait(self) -> float:
        """How long the probe timer waits after a datagram with frames: the probe timeout,
        backed off, at most `max_pto`."""
        config = self.config
        backoff = self._pto_rtt + config.peer_ack_delay + self.patience
        if self._pto_count:
            backoff *= 1 << min(self._pto_count, 30)
        if backoff > config.max_pto:
            backoff = config.max_pto
        return backoff

    def _pto_deadline(self) -> float:
        return self._last_sent + self._probe_wait()

    def next_timer(self) -> float | None:
        """When `handle_timer` must next run, or None if nothing is waiting on time."""
        deadline = self._ack_due
        if self._in_flight:
            timer = self._loss_time if self._loss_time is not None else self._pto_deadline()
            # The give-up too: frames sent steadily move the probe timer on each time,
            # and would put it off until the window filled.
            give_up = self._progress + self.config.give_up_after
            if give_up < timer:
                timer = give_up
            if deadline is None or timer < deadline:
                deadline = timer
        return deadline

    def handle_timer(self, now: float) -> None:
        """Declare losses by time, or fire the probe timeout; fail a link long unanswered."""
        if not self._in_flight:
            return
        # The same sum as `next_timer`'s deadline: in floating point, `now - _progress`
        # may fall short of it, and the timer would then be due again at once, for ever.
        if now >= self._progress + self.config.give_up_after:
            self.failure = self.failure or "unresponsive"
            return
        if self._loss_time is not None:
            if now >= self._loss_time:
                self._detect_losses(now)
            return
        if now >= self._pto_deadline():
            # A tail-loss probe: send the oldest and the newest frames again, at once, and
            # back off.
            self._pto_count += 1
            self._probing = True
            self.probes_sent += 1

    def wants_to_send(self, now: float) -> bool:
        """Whether `datagrams_to_send(now)` would return something."""
        if self._must_send_bare(now) or self._lost or self._probing:
            return True
        return bool(self._unsent) and self._unsent[0][0] < self._window_limit()
