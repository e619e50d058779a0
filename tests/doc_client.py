"""A minimal client following docs/protocol.md.

It is kept independent of the ``trio_chat`` package (it imports nothing from it) so that
the document is checked: if the document leaves out something a client needs, this client
cannot talk to the daemon. It is small and blocking: one UDP socket, socket timeouts as
deadlines, no Trio. It uses only the standard library and ``cryptography``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

Frame = dict[str, Any]

# Section 3: datagrams.
VERSION = 0x03
FIRST_FLIGHT_SIZE = 1200
MAX_DATAGRAM = 1200
KEY_REQUEST = 0x01
KEY = 0x02
INIT = 0x03
RESPONSE = 0x04
RETRY = 0x05
REFUSED = 0x06
DATA = 0x10
RESET = 0x11
DATA_HEADER = 13
ASKS_REGISTRATIONS = 0x01  # a KEY_REQUEST's third byte: is the daemon open to them?
NO_REGISTRATIONS = 0x01  # a KEY's 35th byte, to a request that asked: it is not
TAG = 16
MAX_PAYLOAD = MAX_DATAGRAM - DATA_HEADER - TAG  # 1171

# Section 4: the handshake.
PROTOCOL_NAME = b"Noise_NK_25519_AESGCM_BLAKE2s"
PROLOGUE = b"trio-chat/3"
INIT_RESENDS = (0.2, 0.4, 0.8)  # then every second
INIT_GIVE_UP = 5.0

# Section 6: the reliable stream.
RECEIVE_WINDOW = 256
SEND_WINDOW = 64
MAX_FRAME = 930
MAX_SACK_RANGES = 4
REPLAY_WINDOW = 4096
INITIAL_RTT = 0.333
DAEMON_ACK_DELAY = 0.010
MAX_PTO = 2.0
GIVE_UP = 10.0
PACKET_THRESHOLD = 3
TIME_THRESHOLD = 9 / 8

# Section 8: frames that answer a request.
HISTORY_PAGE = 100
ANSWERS = frozenset({"ok", "registered", "welcome", "error"})


class ProtocolError(Exception):
    """The daemon did something this client cannot go on from."""


class Unreachable(ProtocolError):
    """No answer to the first flights in time."""


class KeyMismatch(ProtocolError):
    """The daemon showed another key than the trusted one."""

    def __init__(self, trusted: bytes, shown: bytes) -> None:
        super().__init__(
            f"the daemon's key changed: trusted {fingerprint(trusted)}, shown {fingerprint(shown)}"
        )
        self.trusted = trusted
        self.shown = shown


class NoRegistrations(ProtocolError):
    """No account has the name, and the daemon takes no registrations: ask its operator."""


class Refused(ProtocolError):
    """A ``REFUSED`` datagram: no channel now."""

    def __init__(self, code: str, message: str, retry_after: float | None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after = retry_after


class ChannelLost(ProtocolError):
    """The channel is gone (a matching ``RESET``, or the daemon stopped acknowledging)."""


class ChatError(ProtocolError):
    """An ``error`` frame answering a request."""

    def __init__(self, frame: Frame) -> None:
        super().__init__(f"{frame.get('code')}: {frame.get('message')}")
        self.frame = frame
        self.code: str = str(frame.get("code"))
        retry_after = frame.get("retry_after")
        self.retry_after: float | None = (
            float(retry_after) if isinstance(retry_after, int | float) else None
        )


def fingerprint(key: bytes) -> str:
    """Section 2: ``SHA256:`` and the unpadded base64 of the key's SHA-256 digest."""
    digest = hashlib.sha256(key).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def random_id() -> str:
    """A ``cid`` or ``rid``: 96 random bits in 16 URL-safe characters."""
    return secrets.token_urlsafe(12)


def _nonce(n: int) -> bytes:
    """The Noise AESGCM nonce: 4 zero bytes, then ``n`` as 64-bit big-endian."""
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "big")


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.blake2s).digest()


def _hkdf2(chaining_key: bytes, material: bytes) -> tuple[bytes, bytes]:
    temp = _hmac(chaining_key, material)
    first = _hmac(temp, b"\x01")
    return first, _hmac(temp, first + b"\x02")


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


class NoiseNKInitiator:
    """The initiator of ``Noise_NK_25519_AESGCM_BLAKE2s`` (Noise revision 34)."""

    def __init__(self, remote_static: bytes, prologue: bytes = PROLOGUE) -> None:
        if len(PROTOCOL_NAME) <= 32:
            self.h = PROTOCOL_NAME.ljust(32, b"\x00")
        else:
            self.h = hashlib.blake2s(PROTOCOL_NAME).digest()
        self.ck = self.h
        self._mix_hash(prologue)
        self._mix_hash(remote_static)  # the pre-message "<- s"
        self.rs = X25519PublicKey.from_public_bytes(remote_static)
        self.e = X25519PrivateKey.generate()
        self.k: bytes | None = None
        self.n = 0

    def _mix_hash(self, data: bytes) -> None:
        self.h = hashlib.blake2s(self.h + data).digest()

    def write_message_1(self) -> bytes:
        """``-> e, es`` with an empty payload: 32 + 16 bytes."""
        e_pub = _raw(self.e.public_key())
        self._mix_hash(e_pub)
        self.ck, self.k = _hkdf2(self.ck, self.e.exchange(self.rs))
        self.n = 0
        ciphertext = AESGCM(self.k).encrypt(_nonce(self.n), b"", self.h)
        self.n += 1
        self._mix_hash(ciphertext)
        return e_pub + ciphertext

    def read_message_2(self, message: bytes) -> tuple[bytes, tuple[bytes, bytes]]:
        """``<- e, ee``: the payload and the two keys of ``Split()``.

        Raises ``InvalidTag`` (or ``ValueError``) and changes nothing if the message does
        not authenticate, so that the real one can still be read.
        """
        if len(message) < 32 + TAG:
            raise ValueError("message 2 is too short")
        re_pub = message[:32]
        h = hashlib.blake2s(self.h + re_pub).digest()
        shared = self.e.exchange(X25519PublicKey.from_public_bytes(re_pub))
        ck, k = _hkdf2(self.ck, shared)
        ciphertext = message[32:]
        payload = AESGCM(k).decrypt(_nonce(0), ciphertext, h)
        self.h = hashlib.blake2s(h + ciphertext).digest()
        self.ck = ck
        return payload, _hkdf2(self.ck, b"")


def key_request(*, asks_registrations: bool = False) -> bytes:
    asks = ASKS_REGISTRATIONS if asks_registrations else 0x00
    return bytes([KEY_REQUEST, VERSION, asks]).ljust(FIRST_FLIGHT_SIZE, b"\x00")


def init_datagram(client_index: int, cookie: bytes, message_1: bytes) -> bytes:
    head = bytes([INIT, VERSION]) + client_index.to_bytes(4, "big") + bytes([len(cookie)])
    return (head + cookie + message_1).ljust(FIRST_FLIGHT_SIZE, b"\x00")


def _random_index() -> int:
    while True:
        index = secrets.randbits(32)
        if index:
            return index


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53


def _encode(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass
class _InFlight:
    frame: Frame
    order: int
    sent_at: float


@dataclass
class Request:
    """A request frame, and what answered it."""

    frame: Frame
    seq: int
    answer: Frame | None = None
    parts: list[Frame] = field(default_factory=list)


@dataclass
class Welcome:
    """A ``welcome``, and the history and ``ready`` that follow it."""

    name: str
    unread: int
    ticket: str
    history: list[Frame]
    ready: Frame
    shown: list[Frame] = field(default_factory=list)
    """What a person is shown of the login's messages, each once, oldest first: the
    history, and the pages asked for where it left a gap (section 7.5)."""
    pages: int = 0


class Channel:
    """One channel: the handshake's keys, the record seal and the reliable stream."""

    def __init__(
        self,
        sock: socket.socket,
        address: tuple[Any, ...],
        client_index: int,
        daemon_index: int,
        send_key: bytes,
        receive_key: bytes,
        reset_token: bytes,
        rtt: float,
    ) -> None:
        self.sock = sock
        self.address = address
        self.client_index = client_index
        self.daemon_index = daemon_index
        self.sealer = AESGCM(send_key)
        self.opener = AESGCM(receive_key)
        self.reset_token = reset_token
        self.lost = False
        # Records.
        self.next_packet = 1
        self.highest_received = 0
        self.accepted: set[int] = set()
        self.pending_response: str | None = None
        self.challenges = 0
        # Sending frames.
        self.next_seq = 1
        self.waiting: deque[tuple[int, Frame]] = deque()
        self.in_flight: dict[int, _InFlight] = {}
        self.next_order = 1
        self.records_with_frames: dict[int, float] = {}
        self.highest_echo = 0
        self.last_frames_sent = 0.0
        self.probes = 0
        self.loss_timer: float | None = None
        self.largest_acked_order = 0
        self.last_progress = 0.0
        self.last_received: float | None = None
        self.lost_at: float | None = None
        self.speech_probes: list[float] = []
        self.probe_times: list[float] = []
        # Section 6's figures for the client; a test may shorten them.
        self.max_pto = MAX_PTO
        self.give_up = GIVE_UP
        # Round trip (section 6, loss recovery).
        self.smoothed_rtt = rtt
        self.rtt_var = rtt / 2
        self.latest_rtt = rtt
        # Receiving frames.
        self.received_up_to = 0
        self.early: dict[int, Frame] = {}
        self.delivered: deque[Frame] = deque()
        self.duplicates = 0

    # -- records (section 5) --------------------------------------------------------

    def _seal(self, payload: dict[str, Any]) -> int:
        """Seal and send one record; return its packet number."""
        body = _encode(payload)
        if len(body) > MAX_PAYLOAD:
            raise ValueError("payload too large")
        packet = self.next_packet
        self.next_packet += 1
        header = bytes([DATA]) + self.daemon_index.to_bytes(4, "big") + packet.to_bytes(8, "big")
        datagram = header + self.sealer.encrypt(_nonce(packet), body, header)
        self.sock.sendto(datagram, self.address)
        return packet

    def open_record(self, datagram: bytes) -> dict[str, Any] | None:
        """Check the tag first, then the replay window, then the JSON."""
        if len(datagram) < DATA_HEADER + TAG or datagram[0] != DATA:
            return None
        if int.from_bytes(datagram[1:5], "big") != self.client_index:
            return None
        header = datagram[:DATA_HEADER]
        packet = int.from_bytes(datagram[5:13], "big")
        try:
            body = self.opener.decrypt(_nonce(packet), datagram[DATA_HEADER:], header)
        except InvalidTag:
            return None
        if packet in self.accepted or packet + REPLAY_WINDOW <= self.highest_received:
            return None
        self.accepted.add(packet)
        if packet > self.highest_received:
            self.highest_received = packet
            floor = packet - REPLAY_WINDOW
            if len(self.accepted) > 2 * REPLAY_WINDOW:
                self.accepted = {p for p in self.accepted if p > floor}
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        return payload if _valid_payload(payload) else None

    # -- the reliable stream (section 6) ----------------------------------------------

    def _sack_ranges(self) -> list[list[int]]:
        ranges: list[list[int]] = []
        for seq in sorted(self.early):
            if ranges and ranges[-1][1] == seq - 1:
                ranges[-1][1] = seq
            else:
                ranges.append([seq, seq])
        return ranges[-MAX_SACK_RANGES:]

    def _base_payload(self, with_sack: bool) -> dict[str, Any]:
        payload: dict[str, Any] = {"ack": self.received_up_to, "echo": self.highest_received}
        if with_sack and self.early:
            payload["sack"] = self._sack_ranges()
        if self.pending_response is not None:
            payload["response"] = self.pending_response
            self.pending_response = None
        return payload

    def _send_frames(self, frames: list[tuple[int, Frame]], now: float) -> None:
        """Send these frames, as many to a record as fit, each with a new order."""
        remaining = list(frames)
        while remaining:
            payload = self._base_payload(with_sack=True)
            packed: list[list[Any]] = []
            while remaining:
                candidate = {**payload, "frames": [*packed, list(remaining[0])]}
                if len(_encode(candidate)) > MAX_PAYLOAD:
                    if packed:
                        break
                    payload.pop("sack", None)
                    candidate = {**payload, "frames": [list(remaining[0])]}
                    if len(_encode(candidate)) > MAX_PAYLOAD:
                        raise ValueError("a frame does not fit in a payload")
                packed.append(list(remaining.pop(0)))
            payload["frames"] = packed
            packet = self._seal(payload)
            self.records_with_frames[packet] = now
            self.last_frames_sent = now
            for seq, _frame in packed:
                entry = self.in_flight[seq]
                entry.order = self.next_order
                entry.sent_at = now
                self.next_order += 1

    def send_ack(self) -> None:
        self._seal(self._base_payload(with_sack=True))

    def queue(self, frame: Frame) -> int:
        if len(_encode(frame)) > MAX_FRAME:
            raise ValueError("frame longer than 930 bytes")
        seq = self.next_seq
        self.next_seq += 1
        self.waiting.append((seq, frame))
        return seq

    def flush(self, now: float, ack_needed: bool = False) -> None:
        """Send the queued frames the window allows; else a pure ack if one is due."""
        lowest = min(self.in_flight, default=self.waiting[0][0] if self.waiting else 0)
        new: list[tuple[int, Frame]] = []
        while self.waiting and self.waiting[0][0] < lowest + SEND_WINDOW:
            seq, frame = self.waiting.popleft()
            if not self.in_flight:
                self.last_progress = now
            self.in_flight[seq] = _InFlight(frame, 0, now)
            new.append((seq, frame))
        if new:
            self._send_frames(new, now)
        elif ack_needed or self.pending_response is not None:
            self.send_ack()

    def pto(self) -> float:
        """The probe timer's wait now: PTO x 2^k, capped."""
        return self._pto()

    def _pto(self) -> float:
        pto = self.smoothed_rtt + max(4 * self.rtt_var, 0.001) + DAEMON_ACK_DELAY
        return float(min(pto * 2**self.probes, self.max_pto))

    def next_timer(self) -> float | None:
        if not self.in_flight:
            return None
        # Giving up comes at its moment, not at the next probe (section 6).
        give_up = self.last_progress + self.give_up
        if self.loss_timer is not None:
            return min(self.loss_timer, give_up)
        return min(self.last_frames_sent + self._pto(), give_up)

    def on_timer(self, now: float) -> None:
        if not self.in_flight:
            return
        if now - self.last_progress >= self.give_up:
            self.lost = True
            self.lost_at = now
            raise ChannelLost("the daemon stopped acknowledging")
        if self.loss_timer is not None:
            if now >= self.loss_timer:
                self.loss_timer = None
                self._detect_losses(now)
            return
        if now >= self.last_frames_sent + self._pto():
            self._probe(now)

    def _probe(self, now: float) -> None:
        """The probe timer fires: the oldest and the newest frame in flight, twice."""
        self.probes += 1
        self.probe_times.append(now)
        oldest = min(self.in_flight)
        newest = max(self.in_flight)
        first = [(oldest, self.in_flight[oldest].frame)]
        if newest != oldest:
            first.append((newest, self.in_flight[newest].frame))
        self._send_frames(first, now)
        self._send_frames([(newest, self.in_flight[newest].frame)], now)

    def _detect_losses(self, now: float) -> None:
        """Frames sent before the newest acknowledged one: lost, or due to be (RFC 9002)."""
        highest_order = self.largest_acked_order
        delay = max(TIME_THRESHOLD * max(self.smoothed_rtt, self.latest_rtt), 0.001)
        lost: list[tuple[int, Frame]] = []
        next_loss: float | None = None
        for seq, entry in sorted(self.in_flight.items()):
            if entry.order >= highest_order:
                continue
            if entry.order + PACKET_THRESHOLD <= highest_order or entry.sent_at + delay <= now:
                lost.append((seq, entry.frame))
            else:
                due = entry.sent_at + delay
                next_loss = due if next_loss is None else min(next_loss, due)
        self.loss_timer = next_loss
        if lost:
            self._send_frames(lost, now)

    def _rtt_sample(self, sample: float) -> None:
        # The handshake's round trip was the first sample (see __init__).
        self.rtt_var = 0.75 * self.rtt_var + 0.25 * abs(self.smoothed_rtt - sample)
        self.smoothed_rtt = 0.875 * self.smoothed_rtt + 0.125 * sample
        self.latest_rtt = sample

    def on_payload(self, payload: dict[str, Any], now: float) -> None:
        """Take one authentic payload: acknowledgements, a path check, frames."""
        silence = None if self.last_received is None else now - self.last_received
        self.last_received = now
        probes = self.probes
        echo = payload.get("echo", 0)
        if echo > self.highest_echo:
            self.highest_echo = echo
            sent = self.records_with_frames.get(echo)
            if sent is not None:
                self._rtt_sample(now - sent)
            for packet in [p for p in self.records_with_frames if p <= echo]:
                del self.records_with_frames[packet]
        acked = self._on_acks(payload.get("ack", 0), payload.get("sack", []), now)
        if (
            not acked
            and probes > 0
            and self.in_flight
            and silence is not None
            and silence >= self._pto()
        ):
            # The peer speaks after a silence as long as the probe timer now waits: an
            # outage has ended (or the peer moved), so the probe goes at once (section 6).
            self.speech_probes.append(now)
            self._probe(now)
        challenge = payload.get("challenge")
        if isinstance(challenge, str):
            self.pending_response = challenge
            self.challenges += 1
        frames = payload.get("frames", [])
        for seq, frame in frames:
            if seq <= self.received_up_to or seq in self.early:
                self.duplicates += 1
            elif seq <= self.received_up_to + RECEIVE_WINDOW:
                self.early[seq] = frame
        while self.received_up_to + 1 in self.early:
            self.received_up_to += 1
            frame = self.early.pop(self.received_up_to)
            if isinstance(frame, dict):
                self.delivered.append(frame)
        # Every payload with frames is acknowledged at once (never later than the rules
        # of section 6 ask): this client blocks on its answers and has no timer for it.
        self.flush(now, ack_needed=bool(frames))

    def _on_acks(self, ack: int, sack: list[list[int]], now: float) -> bool:
        """Take acknowledgements; whether they covered any new frame."""
        highest_sent = self.next_seq - 1
        if ack > highest_sent:
            ack = 0
        ranges = [(a, b) for a, b in sack if b <= highest_sent]
        newly = [
            seq for seq in self.in_flight if seq <= ack or any(a <= seq <= b for a, b in ranges)
        ]
        if not newly:
            return False
        highest_order = max(self.in_flight[seq].order for seq in newly)
        self.largest_acked_order = max(self.largest_acked_order, highest_order)
        for seq in newly:
            del self.in_flight[seq]
        self.probes = 0
        self.last_progress = now
        self._detect_losses(now)
        return True


def _valid_payload(payload: object) -> bool:
    if not isinstance(payload, dict):
        return False
    for name in ("ack", "echo"):
        if name in payload and not _is_int(payload[name]):
            return False
    sack = payload.get("sack", [])
    if not isinstance(sack, list) or not all(
        isinstance(r, list) and len(r) == 2 and _is_int(r[0]) and _is_int(r[1]) for r in sack
    ):
        return False
    frames = payload.get("frames", [])
    return isinstance(frames, list) and all(
        isinstance(f, list) and len(f) == 2 and _is_int(f[0]) and f[0] >= 1 for f in frames
    )


class DocClient:
    """A blocking trio-chat client: one socket, one channel at a time."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        server_key: bytes | None = None,
        timeout: float = 5.0,
    ) -> None:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, _type, _proto, _name, address = infos[0]
        self.family = family
        self.address: tuple[Any, ...] = address
        self.server_key = server_key
        self.takes_registrations: bool | None = None
        """What the last `KEY` asked for said (None: nothing, as a daemon before it)."""
        self.timeout = timeout
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.channel: Channel | None = None
        self.requests: dict[int, Request] = {}
        self.inbox: deque[Frame] = deque()
        self.login_history: list[Frame] = []
        self.ready: Frame | None = None
        self.ticket: str | None = None
        self.newest_id = 0
        self.retries = 0
        self.page_limit = HISTORY_PAGE
        self.keepalive: float = 15.0
        self.keepalive_told = False

    def __enter__(self) -> DocClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # -- first flights (sections 2 to 4) ------------------------------------------------

    def _receive(self, deadline: float) -> bytes | None:
        """One datagram from the daemon, or None at the deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        self.sock.settimeout(remaining)
        try:
            data, address = self.sock.recvfrom(2048)
        except TimeoutError:
            return None
        if address[:2] != self.address[:2]:
            return b""
        return data

    def fetch_key(self, *, asks_registrations: bool = False) -> bytes:
        """``KEY_REQUEST`` answered by ``KEY``: trust on first use; asking, whether the
        daemon takes registrations too (`takes_registrations`)."""
        request = key_request(asks_registrations=asks_registrations)
        lengths = (34, 35) if asks_registrations else (34,)
        start = time.monotonic()
        resends = deque(INIT_RESENDS)
        while True:
            self.sock.sendto(request, self.address)
            now = time.monotonic()
            wait = resends.popleft() if resends else 1.0
            deadline = min(now + wait, start + INIT_GIVE_UP)
            while (data := self._receive(deadline)) is not None:
                if len(data) in lengths and data[0] == KEY and data[1] == VERSION:
                    key = data[2:34]
                    if self.server_key is not None and key != self.server_key:
                        raise KeyMismatch(self.server_key, key)
                    self.server_key = key
                    told = data[34:]
                    self.takes_registrations = None if not told else not told[0] & NO_REGISTRATIONS
                    return key
                if data[:1] == bytes([REFUSED]):
                    raise _refused(data)
            if time.monotonic() >= start + INIT_GIVE_UP:
                raise Unreachable("the daemon cannot be reached")

    def connect(self) -> None:
        """Open a channel: the Noise NK handshake, answering a ``RETRY`` if one comes."""
        if self.server_key is None:
            self.fetch_key()
        assert self.server_key is not None
        noise = NoiseNKInitiator(self.server_key)
        message_1 = noise.write_message_1()
        client_index = _random_index()
        cookie = b""
        resends = deque(INIT_RESENDS)
        last_heard = time.monotonic()
        while True:
            sent_at = time.monotonic()
            self.sock.sendto(init_datagram(client_index, cookie, message_1), self.address)
            wait = resends.popleft() if resends else 1.0
            deadline = min(sent_at + wait, last_heard + INIT_GIVE_UP)
            resend_now = False
            while not resend_now and (data := self._receive(deadline)) is not None:
                kind = data[0] if data else None
                if kind == RESPONSE and len(data) == 74 and data[1] == VERSION:
                    if int.from_bytes(data[2:6], "big") != client_index:
                        continue
                    daemon_index = int.from_bytes(data[6:10], "big")
                    try:
                        token, (send_key, receive_key) = noise.read_message_2(data[10:74])
                    except (InvalidTag, ValueError):
                        continue  # not authentic: wait for the real one
                    rtt = time.monotonic() - sent_at
                    self.channel = Channel(
                        self.sock,
                        self.address,
                        client_index,
                        daemon_index,
                        send_key,
                        receive_key,
                        token,
                        rtt,
                    )
                    self.requests = {}
                    return
                if kind == RETRY and len(data) >= 7 and data[1] == VERSION:
                    if int.from_bytes(data[2:6], "big") != client_index:
                        continue
                    length = data[6]
                    if len(data) != 7 + length or length > 32:
                        continue
                    cookie = data[7 : 7 + length]
                    self.retries += 1
                    last_heard = time.monotonic()
                    resends = deque(INIT_RESENDS)
                    resend_now = True
                elif kind == KEY and len(data) == 34 and data[1] == VERSION:
                    if data[2:34] != self.server_key:
                        raise KeyMismatch(self.server_key, data[2:34])
                    raise ProtocolError("the daemon could not read message 1 (with its own key)")
                elif kind == REFUSED:
                    raise _refused(data)
            if not resend_now and time.monotonic() >= last_heard + INIT_GIVE_UP:
                raise Unreachable("the daemon cannot be reached")

    # -- the stream -------------------------------------------------------------------

    def _require_channel(self) -> Channel:
        if self.channel is None or self.channel.lost:
            raise ChannelLost("no open channel")
        return self.channel

    def _pump(self, done: Callable[[], bool], timeout: float | None = None) -> None:
        """Take datagrams and run timers until ``done()`` or the deadline."""
        channel = self._require_channel()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not done():
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError("no answer in time")
            channel.on_timer(now)
            timer = channel.next_timer()
            until = deadline if timer is None else min(deadline, max(timer, now + 0.001))
            data = self._receive(until)
            if data:
                self._on_datagram(channel, data)

    def _on_datagram(self, channel: Channel, data: bytes) -> None:
        now = time.monotonic()
        if data[0] == RESET and len(data) == 21:
            # The index is the one the record named: the daemon's end of the channel.
            named = int.from_bytes(data[1:5], "big")
            if named == channel.daemon_index and secrets.compare_digest(
                data[5:21], channel.reset_token
            ):
                channel.lost = True
                raise ChannelLost("the daemon no longer has this channel (RESET)")
            return
        payload = channel.open_record(data)
        if payload is None:
            return
        channel.on_payload(payload, now)
        while channel.delivered:
            self._on_frame(channel.delivered.popleft())

    def _on_frame(self, frame: Frame) -> None:
        if frame.get("t") in ("msg", "pm") and _is_int(frame.get("id")):
            self.newest_id = max(self.newest_id, frame["id"])
        re = frame.get("re")
        request = self.requests.get(re) if isinstance(re, int) else None
        if request is None:
            if frame.get("t") == "ready":
                self.ready = frame
            elif frame.get("t") == "keepalive" and isinstance(frame.get("every"), int | float):
                self.keepalive = float(frame["every"])
                self.keepalive_told = True
                self.inbox.append(frame)
            elif frame.get("history") is True:
                self.login_history.append(frame)
            else:
                self.inbox.append(frame)
            return
        if frame.get("t") in ANSWERS:
            request.answer = frame
            if _is_int(frame.get("id")):
                self.newest_id = max(self.newest_id, frame["id"])
        else:
            request.parts.append(frame)

    def send(self, frame: Frame) -> Request:
        """Send a request frame; its answer is awaited with ``wait``."""
        channel = self._require_channel()
        seq = channel.queue(frame)
        request = Request(frame, seq)
        if frame.get("t") != "ping":
            self.requests[seq] = request
        channel.flush(time.monotonic())
        return request

    def wait(self, request: Request, timeout: float | None = None) -> Frame:
        """The answer to ``request``; an ``error`` answer raises ``ChatError``."""
        self._pump(lambda: request.answer is not None, timeout)
        assert request.answer is not None
        if request.answer.get("t") == "error":
            raise ChatError(request.answer)
        return request.answer

    def call(self, frame: Frame, timeout: float | None = None) -> Request:
        request = self.send(frame)
        self.wait(request, timeout)
        return request

    def next_frame(
        self, kinds: frozenset[str] | None = None, timeout: float | None = None
    ) -> Frame:
        """The next frame not answering a request (of one of ``kinds``, if given).

        Frames of other kinds before it are dropped from the inbox.
        """

        def found() -> bool:
            while self.inbox:
                if kinds is None or self.inbox[0].get("t") in kinds:
                    return True
                self.inbox.popleft()
            return False

        self._pump(found, timeout)
        return self.inbox.popleft()

    def until(self, done: Callable[[], bool], timeout: float | None = None) -> None:
        """Take datagrams and run the link's timers until ``done()``."""
        self._pump(done, timeout)

    def settle(self, timeout: float = 0.3) -> None:
        """Until everything sent is acknowledged (the last acks are sent as frames come)."""
        channel = self._require_channel()
        self._pump(lambda: not channel.in_flight and not channel.waiting, timeout)

    def drop(self) -> None:
        """Abandon the channel without a word, as a lost network would (what was sent
        and not answered is remembered, for ``reconnect``)."""
        self.channel = None
        self.sock.close()
        self.sock = socket.socket(self.family, socket.SOCK_DGRAM)

    def move(self) -> None:
        """Go on from a new local port, as after a NAT rebinding: the same channel, whose
        next record moves the session (section 5); the daemon then checks the path."""
        channel = self._require_channel()
        self.sock.close()
        self.sock = socket.socket(self.family, socket.SOCK_DGRAM)
        channel.sock = self.sock

    # -- sessions (sections 7 and 8) ------------------------------------------------------

    def register(self, name: str, password: str, rid: str | None = None) -> Frame:
        """``registered``; an ``error`` raises ``ChatError`` (``registrations_closed``: the
        daemon's operator makes the accounts, and sending it again does not help)."""
        frame = {"t": "register", "rid": rid or random_id(), "name": name, "password": password}
        answer = self.call(frame).answer
        assert answer is not None
        return answer

    def _log_in(self, frame: Frame, timeout: float | None) -> Welcome:
        """Send ``login`` or ``resume``; wait for ``welcome``, the history and ``ready``."""
        self.login_history = []
        self.ready = None
        welcome = self.wait(self.send(frame), timeout)
        self._pump(lambda: self.ready is not None, timeout)
        assert self.ready is not None
        self.ticket = str(welcome["ticket"])
        every = welcome.get("keepalive")
        self.keepalive = float(every) if isinstance(every, int | float) else 15.0
        history = self.login_history
        ready = self.ready
        since = frame.get("since")
        pages: list[list[Frame]] = []
        if _is_int(since) and ready.get("more", False):
            pages = self._fill_gap(since, history, ready, timeout)
        return Welcome(
            name=str(welcome["name"]),
            unread=int(welcome.get("unread", 0)),
            ticket=self.ticket,
            history=history,
            ready=ready,
            shown=_once(history, *pages),
            pages=len(pages),
        )

    def _fill_gap(
        self, since: int, history: list[Frame], ready: Frame, timeout: float | None
    ) -> list[list[Frame]]:
        """Section 7.5: a resume whose ``ready`` says ``more`` left out messages newer
        than ``since``; page back from ``gap`` (or, from a daemon that sends none, from
        the oldest public message of the history) until the pages reach ``since``."""
        gap = ready.get("gap")
        if isinstance(gap, int) and _is_int(gap):
            before = gap
        else:
            public = [int(m["id"]) for m in history if m.get("t") == "msg" and _is_int(m["id"])]
            if not public:
                raise ProtocolError("ready says more, and gives no gap and no public message")
            before = min(public)
        pages: list[list[Frame]] = []
        while True:
            page = [
                m
                for m in self.call(
                    {"t": "history", "limit": self.page_limit, "before": before}, timeout
                ).parts
                if m.get("t") in ("msg", "pm") and _is_int(m.get("id"))
            ]
            pages.append([m for m in page if m["id"] > since])
            if len(page) < self.page_limit or page[0]["id"] <= since:
                return pages
            before = page[0]["id"]

    def log_in_or_register(self, name: str, password: str) -> Welcome:
        """Log in; a name no account has is registered first, unless the daemon says it
        takes no registrations (``no_registrations``): then ``NoRegistrations``, and no
        ``register`` is sent."""
        try:
            return self.login(name, password)
        except ChatError as error:
            if error.code != "unknown_user":
                raise
            if error.frame.get("no_registrations") is True:
                raise NoRegistrations(
                    f"no account is named {name!r}, and the daemon takes no registrations: "
                    "ask its operator for one"
                ) from error
        self.register(name, password)
        return self.login(name, password)

    def login(
        self,
        name: str,
        password: str,
        *,
        since: int | None = None,
        quiet: bool = False,
        via: bool = False,
        timeout: float | None = None,
    ) -> Welcome:
        """``via``: send the socket's own address (section 7.4), unless a ``keepalive``
        frame has said the path needs the 15 s keepalive after all."""
        frame: Frame = {"t": "login", "name": name, "password": password}
        if since is not None:
            frame["since"] = since
        if quiet:
            frame["quiet"] = True
        if via and not self.keepalive_told:
            host, port = self.sock.getsockname()[:2]
            frame["via"] = [host, port]
        return self._log_in(frame, timeout)

    def resume(self, ticket: str | None = None, *, since: int | None = None) -> Welcome:
        frame: Frame = {"t": "resume", "ticket": ticket or self.ticket}
        if since is not None:
            frame["since"] = since
        return self._log_in(frame, None)

    def reconnect(self) -> Welcome:
        """A new channel, ``resume`` with the ticket and the newest id seen, then the
        requests not yet answered sent again (messages keep their ``cid``)."""
        unanswered = [
            r.frame
            for r in self.requests.values()
            if r.answer is None and r.frame.get("t") not in ("login", "resume", "logout")
        ]
        self.drop()
        self.connect()
        welcome = self.resume(since=self.newest_id or None)
        for frame in unanswered:
            self.send(frame)
        return welcome

    def say(self, text: str) -> Frame:
        answer = self.call({"t": "say", "text": text, "cid": random_id()}).answer
        assert answer is not None
        return answer

    def whisper(self, to: str, text: str) -> Frame:
        answer = self.call({"t": "whisper", "to": to, "text": text, "cid": random_id()}).answer
        assert answer is not None
        return answer

    def who(self) -> list[str]:
        request = self.call({"t": "who"})
        return [str(name) for part in request.parts for name in part.get("names", [])]

    def history(self, limit: int = 20, before: int | None = None) -> list[Frame]:
        frame: Frame = {"t": "history", "limit": limit}
        if before is not None:
            frame["before"] = before
        return self.call(frame).parts

    def ping(self) -> None:
        self.send({"t": "ping"})

    def logout(self) -> Frame:
        request = self.call({"t": "logout"})
        assert request.answer is not None
        self.channel = None  # the ok was acknowledged as it came; the channel has ended
        return request.answer


def _once(*parts: list[Frame]) -> list[Frame]:
    """Messages each shown once (by ``id``), oldest first."""
    by_id: dict[int, Frame] = {}
    for part in parts:
        for message in part:
            by_id.setdefault(int(message["id"]), message)
    return [by_id[key] for key in sorted(by_id)]


def _refused(data: bytes) -> Refused:
    try:
        body = json.loads(data[2:].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return Refused("unknown", repr(data[:64]), None)
    if not isinstance(body, dict):
        return Refused("unknown", repr(body), None)
    retry = body.get("retry_after")
    return Refused(
        str(body.get("code")),
        str(body.get("message")),
        float(retry) if isinstance(retry, int | float) else None,
    )
