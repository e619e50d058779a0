"""A client's end of a channel that a fuzzer controls byte by byte.

The client core (`ClientConnection`) never sends anything malformed. A `FuzzChannel` opens
its channel the same way (the Noise NK handshake of `secure.initiate`), then seals any
plaintext it is given under a packet number of the caller's choice, so that hostile
bytes reach the daemon authenticated: past the tag check, into the payload decoder, the
reliable stream and the frame handlers. It is sans-I/O: `init_datagram()` and what the
`record`/`request`/`ack` methods return go to the daemon, `receive()` takes what came
back.

It keeps a model of what the daemon has taken: the packet numbers it accepted (the same
replay window) and the frames its link delivered in order, held early or dropped (the
link's rules). So it knows the sequence number the daemon waits for, which frames the
daemon acts on, and that a `logout` among them ends the channel. A record counts as
taken only once `send()` said so: every record given to `send()` must reach the daemon.

What the daemon sends back is checked as it arrives; `faults` lists what breaks the
protocol (a datagram over 1200 bytes, a frame over 930, a payload or frame that does
not decode, a frame that answers nothing sent).
"""

from __future__ import annotations

import hmac
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from .. import wire
from ..reliability import LinkConfig
from ..secure import Channel, Initiation, ReplayWindow, SecureError, initiate

RECEIVE_WINDOW = LinkConfig().receive_window
"""Frames beyond the daemon's cumulative ack that its link holds; later ones are dropped."""
FINAL_ANSWERS = (wire.Ok, wire.ErrorFrame, wire.Registered, wire.Welcome)
"""The frames that end the answer to a request (`names`, `msg` and `pm` may come first)."""
KEPT_RECORDS = 32
"""Records kept to be sent again as replays, per channel."""


@dataclass(frozen=True, slots=True)
class Sealed:
    """A record: its packet number, what it carries, and the datagram."""

    pn: int
    plaintext: bytes
    datagram: bytes


class StreamModel:
    """What the daemon's link makes of the frames it is sent (`reliability.Link.receive`):
    in order and once, holding up to `RECEIVE_WINDOW` frames that came early."""

    def __init__(self) -> None:
        self.next = 1
        """The sequence number the daemon waits for."""
        self.early: dict[int, msgspec.Raw] = {}

    def take(self, frames: Iterable[tuple[int, msgspec.Raw]]) -> list[tuple[int, msgspec.Raw]]:
        """The frames now delivered, in order, from one payload's `frames`."""
        delivered: list[tuple[int, msgspec.Raw]] = []
        horizon = self.next + RECEIVE_WINDOW
        for seq, raw in frames:
            if seq < self.next or seq in self.early or seq >= horizon:
                continue
            if seq != self.next:
                self.early[seq] = raw
                continue
            delivered.append((seq, raw))
            self.next += 1
            while self.next in self.early:
                delivered.append((self.next, self.early.pop(self.next)))
                self.next += 1
        return delivered

    def free(self, count: int) -> list[int]:
        """The lowest `count` sequence numbers the daemon has not taken a frame for."""
        seqs: list[int] = []
        seq = self.next
        while len(seqs) < count:
            if seq not in self.early:
                seqs.append(seq)
            seq += 1
        return seqs


class FuzzChannel:
    """See the module docstring."""

    def __init__(self, server_key: bytes, client_index: int, where: Any = None) -> None:
        self.initiation: Initiation = initiate(server_key, client_index)
        self.where = where
        """Where the caller sends this channel's records from (a socket, an address)."""
        self.moves = 0
        """How often the caller changed `where` (the daemon then checks the new path)."""
        self.channel: Channel | None = None
        self.reset_token = b""
        self.refused: wire.Refused | None = None
        self.pn = 0
        """The highest packet number sealed so far."""
        self.unused: list[tuple[int, int]] = []
        """Ranges of packet numbers below `pn` never sealed (skipped by a jump)."""
        self.window = ReplayWindow()
        """The daemon's replay window for our records, as it stands."""
        self.stream = StreamModel()
        self.delivered: list[tuple[int, msgspec.Raw]] = []
        """Every frame the daemon's link delivered to the frame handlers, in order."""
        self.logouts: set[int] = set()
        self.last_read: set[int] = set()
        """The frames read from the record whose `logout` ended the channel: those whose
        answer waits for work (a password check, a commit, a read) get none."""
        self.malformed = 0
        """Authentic payloads the daemon read (on a channel it had) that do not decode."""
        self.ending = False
        """A `logout` was delivered: the daemon ends the channel as it reads it."""
        self.ended = False
        """The daemon said the channel is over (`ok` to a logout, `bye`, `RESET`)."""
        self.account: str | None = None
        self.credentials_pending = False
        """A `login` or `resume` that works was sent before any `welcome`."""
        self.ticket = ""
        self.welcomes = 0
        self.records: deque[Sealed] = deque(maxlen=KEPT_RECORDS)
        """Records the daemon accepted: replays in waiting."""
        self.held: list[Sealed] = []
        """Records sealed but not sent yet: to come late, out of order."""
        self.received: deque[bytes] = deque(maxlen=8)
        """Recent records from the daemon, as they came."""
        # What came from the daemon.
        self.acked = 0
        """The daemon's cumulative acknowledgement of our frames."""
        self.repeated = 0
        """Records from the daemon that came again (or did not authenticate)."""
        self.highest_pn = 0
        self.cumulative = 0
        self._above: set[int] = set()
        self.challenge: str | None = None
        """The daemon's latest path check, answered in every payload `payload()` makes."""
        self.answers: dict[int, list[wire.ServerFrame]] = {}
        """Frames that answer our requests, by the request's sequence number."""
        self.frames_in = 0
        self.frame_kinds: Counter[str] = Counter()
        self.error_codes: Counter[str] = Counter()
        self.unacked = 0
        """Frames received since our last payload (which acknowledged them)."""
        self.faults: list[str] = []

    def __repr__(self) -> str:
        index = self.channel.local_index if self.channel else self.initiation.client_index
        return f"<FuzzChannel {index:08x} {self.account or '(no account)'}>"

    @property
    def open(self) -> bool:
        """The handshake is done and the daemon has not ended the channel."""
        return self.channel is not None and not (self.ending or self.ended)

    @property
    def index(self) -> int:
        """The daemon's index of this channel (the receiver index of our records)."""
        assert self.channel is not None
        return self.channel.remote_index

    # --- the handshake -------------------------------------------------------------------

    def init_datagram(self) -> bytes:
        """The INIT to send (again): with the cookie of a RETRY, once one came."""
        return self.initiation.datagram()

    # --- records -------------------------------------------------------------------------

    def seal(self, plaintext: bytes, pn: int | None = None) -> Sealed:
        """A record of `plaintext` under `pn` (a new packet number if None); not yet sent."""
        assert self.channel is not None, "no channel yet"
        if pn is None:
            pn = self.pn + 1
        if pn > self.pn + 1:
            self.unused.append((self.pn + 1, pn - 1))
        elif pn <= self.pn:
            self._use(pn)
        self.pn = max(self.pn, pn)
        return Sealed(pn, plaintext, self.channel.seal(pn, plaintext))

    def _use(self, pn: int) -> None:
        for at, (first, last) in enumerate(self.unused):
            if first <= pn <= last:
                pieces = [(first, pn - 1), (pn + 1, last)]
                self.unused[at : at + 1] = [(a, b) for a, b in pieces if a <= b]
                return
        raise ValueError(f"packet number {pn} was sealed before")

    def unused_below(self, limit: int) -> int | None:
        """The highest packet number at most `limit` never sealed, if any."""
        below = [min(last, limit) for first, last in self.unused if first <= limit]
        return max(below, default=None)

    def send(self, sealed: Sealed) -> bytes:
        """The record's datagram, to be sent now; the model takes what the daemon will."""
        if len(sealed.datagram) > wire.MAX_DATAGRAM or not self.window.fresh(sealed.pn):
            return sealed.datagram  # dropped as too large, or as a replay
        self.window.accept(sealed.pn)
        self.records.append(sealed)
        self.unacked = 0  # an accepted payload carries its acknowledgement fields
        if self.ending or self.ended:
            return sealed.datagram  # the daemon no longer acts on frames
        try:
            payload = wire.decode_payload_untrusted(sealed.plaintext)
        except wire.WireError:
            self.malformed += 1
            return sealed.datagram
        read: list[int] = []
        for seq, raw in self.stream.take(payload.frames):
            self.delivered.append((seq, raw))
            read.append(seq)
            try:
                frame = wire.decode_client_frame_untrusted(raw)
            except wire.WireError:
                continue
            if isinstance(frame, wire.Logout):
                self.logouts.add(seq)
                self.ending = True
                self.last_read = set(read)
                break  # the session ends here; the rest of the datagram is not read
        return sealed.datagram

    def record(self, plaintext: bytes) -> bytes:
        """A record of `plaintext` under a new packet number, taken as sent."""
        return self.send(self.seal(plaintext))

    def payload(
        self,
        frames: Sequence[tuple[int, bytes]] = (),
        *,
        ack: int | None = None,
        echo: int | None = None,
        sack: list[tuple[int, int]] | None = None,
        extra: bytes = b"",
    ) -> bytes:
        """A well-formed payload: our acknowledgements (or those given), then `frames`."""
        head = wire.payload_head(
            self.cumulative if ack is None else ack,
            self.highest_pn if echo is None else echo,
            self.sack_ranges() if sack is None else sack,
        )
        if self.challenge is not None:
            head += wire.response_field(self.challenge)
        body = b",".join(wire.numbered_frame(seq, frame) for seq, frame in frames)
        return wire.close_payload(head + extra, body)

    def request(self, *frames: bytes) -> tuple[list[int], bytes]:
        """Frames at the sequence numbers the daemon waits for, in one record."""
        seqs = self.stream.free(len(frames))
        return seqs, self.record(self.payload(list(zip(seqs, frames, strict=True))))

    def ack(self) -> bytes:
        """A record carrying only our acknowledgements (and a path check's answer)."""
        return self.record(self.payload())

    def sack_ranges(self) -> list[tuple[int, int]]:
        ranges: list[tuple[int, int]] = []
        for seq in sorted(self._above):
            if ranges and ranges[-1][1] == seq - 1:
                ranges[-1] = (ranges[-1][0], seq)
            else:
                ranges.append((seq, seq))
        return ranges[-wire.SACK_RANGES_MAX :]

    # --- what the daemon sends -------------------------------------------------------------

    def receive(self, data: bytes) -> bool:
        """Take a datagram from the daemon; False if it is not for this channel."""
        if len(data) > wire.MAX_DATAGRAM:
            self.faults.append(f"a datagram of {len(data)} bytes")
        try:
            datagram = wire.parse_datagram_untrusted(data)
        except wire.WireError as error:
            self.faults.append(f"an unreadable datagram: {error.message}")
            return False
        initiation = self.initiation
        if self.channel is None:
            if isinstance(datagram, wire.Response | wire.Retry):
                if datagram.client_index != initiation.client_index:
                    return False
                if isinstance(datagram, wire.Retry):
                    initiation.cookie = datagram.cookie
                    return True
                try:
                    self.channel, self.reset_token = initiation.finish(datagram)
                except SecureError:
                    self.faults.append("a RESPONSE that does not authenticate")
                return True
            if isinstance(datagram, wire.Refused):
                self.refused = datagram
                return True
            if isinstance(datagram, wire.Key):
                self.faults.append("the daemon could not read our handshake")
                return True
            return False
        channel = self.channel
        if isinstance(datagram, wire.Reset):
            if datagram.receiver_index != channel.remote_index:
                return False
            if hmac.compare_digest(datagram.token, self.reset_token):
                self.ended = True
            else:
                self.faults.append("a RESET with a wrong token")
            return True
        if not isinstance(datagram, wire.Data) or datagram.receiver_index != channel.local_index:
            return False
        self._on_data(channel, datagram)
        return True

    def _on_data(self, channel: Channel, datagram: wire.Data) -> None:
        try:
            pn, plaintext = channel.open_untrusted(datagram.datagram)
        except SecureError:
            self.repeated += 1  # the same record again: a channel's last words, resent
            return
        self.received.append(datagram.datagram)
        try:
            payload = wire.decode_payload_untrusted(plaintext)
        except wire.WireError as error:
            self.faults.append(f"a payload that does not decode: {error.message}")
            return
        self.acked = max(self.acked, payload.ack)
        if pn > self.highest_pn:
            self.highest_pn = pn
        if payload.challenge is not None:
            # Answered in every payload from now on: a payload without it does not mean
            # the path was proven (only the first of a round of datagrams carries it).
            self.challenge = payload.challenge
        for seq, raw in payload.frames:
            if len(raw) > wire.MAX_FRAME:
                self.faults.append(f"a frame of {len(raw)} bytes")
            if seq <= self.cumulative or seq in self._above:
                continue
            self._above.add(seq)
            while self.cumulative + 1 in self._above:
                self.cumulative += 1
                self._above.discard(self.cumulative)
            self.unacked += 1
            try:
                frame = wire.decode_server_frame_untrusted(raw)
            except wire.WireError as error:
                self.faults.append(f"a frame that does not decode: {error.message}")
                continue
            self._on_frame(frame)

    def _on_frame(self, frame: wire.ServerFrame) -> None:
        self.frames_in += 1
        self.frame_kinds[type(frame).__name__] += 1
        re = getattr(frame, "re", None)
        if isinstance(frame, wire.ErrorFrame):
            self.error_codes[frame.code] += 1
            if not frame.message:
                self.faults.append(f"an error {frame.code!r} without a message")
        if re is not None:
            self.answers.setdefault(re, []).append(frame)
            if re >= self.stream.next:
                self.faults.append(f"an answer to frame {re}, not yet delivered")
        if isinstance(frame, wire.Welcome):
            self.welcomes += 1
            if self.welcomes > 1:
                self.faults.append(f"a second welcome, as {frame.name!r}: logged in twice")
            self.account = frame.name
            self.ticket = frame.ticket or self.ticket
        elif isinstance(frame, wire.Bye) or (
            isinstance(frame, wire.Ok) and frame.re in self.logouts
        ):
            self.ended = True

    def final_answers(self, seq: int) -> list[wire.ServerFrame]:
        """The frames that ended the daemon's answer to our frame `seq` (one, normally)."""
        return [f for f in self.answers.get(seq, ()) if isinstance(f, FINAL_ANSWERS)]
