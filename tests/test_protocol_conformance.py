"""The daemon does what docs/protocol.md (version 3) says, section by section, on the wire.

The client here is written from the document alone: it pads its first flights and lays
out `INIT` and `DATA` byte by byte, derives the record keys from the Noise handshake,
seals each record with the nonce and associated data the document gives, and writes
every payload as JSON text. It talks to the daemon's sans-I/O engine (`EngineDriver`,
time moved by hand) and reads every answer as bytes and raw JSON, so that each byte
layout, field name, type, code and default is checked as a client in another language
would meet it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import struct
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trio_chat.engine import Address, LoadHistory, LoadMailbox, ServerConfig
from trio_chat.noise import HandshakeState, fingerprint
from trio_chat.records import MarkDelivered, Message, Snapshot
from trio_chat.secure import DaemonKeys, new_challenge
from trio_chat.store import SqliteStore
from trio_chat.testing.driver import EngineDriver

Json = dict[str, Any]

# --- the document's numbers ------------------------------------------------------------------

VERSION = 0x03
MAX_DATAGRAM = 1200
FIRST_FLIGHT = 1200
KEY_REQUEST, KEY, INIT, RESPONSE, RETRY, REFUSED = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
DATA, RESET = 0x10, 0x11
KEY_BYTES = 34
RESPONSE_BYTES = 74
RETRY_BYTES = 23
RESET_BYTES = 21
HEADER_BYTES = 13
TAG_BYTES = 16
MAX_PAYLOAD = 1171
PROLOGUE = b"trio-chat/3"
NOISE_PROTOCOL = b"Noise_NK_25519_AESGCM_BLAKE2s"
MAX_INTEGER = 2**53 - 1
ANSWERS = frozenset({"ok", "registered", "welcome", "error"})
PAYLOAD_FIELDS = frozenset({"ack", "echo", "sack", "frames", "challenge"})
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
PASSWORD = "correct horse"
START = 100.0

_hosts = itertools.count(1)
_client_indexes = itertools.count(0x5A1C0E07)


def new_address() -> Address:
    """An address of its own (its own IP: per-address limits never meet between clients)."""
    n = next(_hosts)
    return (f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", 4000)


def daemon(**settings: Any) -> EngineDriver:
    """The daemon's engine with the given `ServerConfig` settings, at time `START`."""
    return EngineDriver(ServerConfig(**settings), now=START)


def restarted(driver: EngineDriver, *, keys_kept: bool = True) -> EngineDriver:
    """The daemon started again on what it stored (with its key files, unless not kept)."""
    stored = driver.stored
    accounts = driver.stored_accounts()
    messages = [op for op in stored if isinstance(op, Message)]
    delivered = {i for op in stored if isinstance(op, MarkDelivered) for i in op.message_ids}
    snapshot = Snapshot(
        accounts=accounts,
        recent=messages,
        unread=dict(
            Counter(
                m.recipient_id
                for m in messages
                if m.recipient_id not in (None, m.sender_id) and m.id not in delivered
            )
        ),
        public_count=sum(1 for m in messages if not m.private),
        next_message_id=max((m.id for m in messages), default=0) + 1,
        next_account_id=max((a.id for a in accounts), default=0) + 1,
    )
    again = EngineDriver(
        driver.config,
        snapshot,
        now=driver.now,
        first_sid=driver.first_sid + 500_000,
        keys=driver.keys if keys_kept else DaemonKeys.generate(),
    )
    again.stored = list(stored)
    return again


@dataclass
class DiskDriver(EngineDriver):
    """The driven engine over a real SQLite store: commits write it, history reads it."""

    store: SqliteStore = field(kw_only=True)
    writes_fail: bool = field(default=False, kw_only=True)
    reads_fail: bool = field(default=False, kw_only=True)

    def commit(self, count: int | None = None) -> None:
        cut = len(self.uncommitted) if count is None else count
        ops, self.uncommitted = self.uncommitted[:cut], self.uncommitted[cut:]
        rejected = list(ops) if self.writes_fail else self.store.write(ops)
        refused = {id(op) for op in rejected}
        for op in ops:
            if id(op) in refused:
                self.engine.failed(op)
            else:
                self.stored.append(op)
                self.engine.committed(op, self.now, self.wall)

    def history(self, effect: LoadHistory) -> list[Message] | None:
        if self.reads_fail:
            return None
        return self.store.history(effect.account_id, effect.before, effect.limit)

    def mailbox(self, effect: LoadMailbox) -> list[Message]:
        return self.store.mailbox(effect.account_id)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[DiskDriver]:
    """The daemon over a SQLite database of its own."""
    store = SqliteStore.open(tmp_path / "chat.db")
    yield DiskDriver(ServerConfig(message_burst=100), now=START, store=store)
    store.close()


# --- sections 3 and 4: first flights and the handshake, byte by byte ------------------------


def be32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def sized(head: bytes, length: int) -> bytes:
    """`head` padded with zeros, or cut, to `length` bytes."""
    return (head + bytes(max(0, length - len(head))))[:length]


def key_request(*, version: int = VERSION, length: int = FIRST_FLIGHT) -> bytes:
    return sized(bytes((KEY_REQUEST, version)), length)


@dataclass
class Hello:
    """The start of one handshake: the ephemeral key and Noise message 1 (48 bytes)."""

    client_index: int
    ephemeral: bytes
    state: HandshakeState
    message_1: bytes


def hello(server_key: bytes, *, prologue: bytes = PROLOGUE) -> Hello:
    """A new client index and ephemeral key, and message 1 with an empty payload."""
    ephemeral = X25519PrivateKey.generate().private_bytes_raw()
    state = HandshakeState.initiator(server_key, prologue, ephemeral_private=ephemeral)
    return Hello(next(_client_indexes), ephemeral, state, state.write_message(b""))


def init_datagram(
    first: Hello, cookie: bytes = b"", *, version: int = VERSION, length: int = FIRST_FLIGHT
) -> bytes:
    """`INIT`: type, version, client index, cookie length, cookie, message 1, zeros."""
    head = bytes((INIT, version)) + be32(first.client_index) + bytes((len(cookie),)) + cookie
    return sized(head + first.message_1, length)


@dataclass(frozen=True)
class ResponseFields:
    client_index: int
    daemon_index: int
    message_2: bytes


def read_response(data: bytes) -> ResponseFields:
    assert len(data) == RESPONSE_BYTES, data
    assert data[:2] == bytes((RESPONSE, VERSION))
    client_index, daemon_index = struct.unpack_from(">II", data, 2)
    return ResponseFields(client_index, daemon_index, data[10:])


def read_retry(data: bytes, client_index: int) -> bytes:
    """The cookie of a `RETRY` for `client_index`, its layout checked."""
    assert len(data) == RETRY_BYTES, data
    assert data[:2] == bytes((RETRY, VERSION))
    assert data[2:6] == be32(client_index)
    assert data[6] == 16
    return data[7:]


def read_refused(data: bytes) -> Json:
    """The JSON of a `REFUSED`, its layout checked: exactly `code`, `message`, `retry_after`."""
    assert len(data) <= MAX_DATAGRAM
    assert data[:2] == bytes((REFUSED, VERSION))
    body = json.loads(data[2:].decode("utf-8"))
    assert set(body) == {"code", "message", "retry_after"}, body
    assert isinstance(body["code"], str) and isinstance(body["message"], str)
    assert body["retry_after"] is None or isinstance(body["retry_after"], int | float)
    return dict(body)


def read_key(data: bytes) -> bytes:
    assert len(data) == KEY_BYTES, data
    assert data[:2] == bytes((KEY, VERSION))
    return data[2:]


def noise_hkdf(chaining_key: bytes, material: bytes) -> tuple[bytes, bytes]:
    """Noise's HKDF with two outputs, over HMAC-BLAKE2s."""
    temp = hmac.new(chaining_key, material, hashlib.blake2s).digest()
    first = hmac.new(temp, b"\x01", hashlib.blake2s).digest()
    return first, hmac.new(temp, first + b"\x02", hashlib.blake2s).digest()


def split_keys(ephemeral: bytes, server_key: bytes, message_2: bytes) -> tuple[bytes, bytes]:
    """The client's `Split()`: (the key of what it sends, the key of what the daemon sends).

    The chaining key starts as the protocol name padded with zeros to HASHLEN (29 bytes,
    no longer than 32, so not hashed) and mixes in DH(e, rs) then DH(e, re); `Split()`
    expands it once more.
    """
    private = X25519PrivateKey.from_private_bytes(ephemeral)
    chaining_key = NOISE_PROTOCOL.ljust(32, b"\0")
    for public in (server_key, message_2[:32]):
        shared = private.exchange(X25519PublicKey.from_public_bytes(public))
        chaining_key, _cipher_key = noise_hkdf(chaining_key, shared)
    return noise_hkdf(chaining_key, b"")


def nonce(pn: int) -> bytes:
    """Four zero bytes, then the packet number as a 64-bit big-endian integer."""
    return bytes(4) + pn.to_bytes(8, "big")


def data_header(receiver_index: int, pn: int) -> bytes:
    return bytes((DATA,)) + be32(receiver_index) + pn.to_bytes(8, "big")


def seal(key: bytes, receiver_index: int, pn: int, payload: bytes) -> bytes:
    header = data_header(receiver_index, pn)
    return header + AESGCM(key).encrypt(nonce(pn), payload, header)


def encode(payload: Json) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def check_payload(payload: Any) -> None:
    """What section 6 says of every payload the daemon sends."""
    assert isinstance(payload, dict), payload
    assert set(payload) <= PAYLOAD_FIELDS, payload
    for name in ("ack", "echo"):
        assert isinstance(payload[name], int) and 0 <= payload[name] <= MAX_INTEGER, payload
    sack = payload.get("sack", [])
    assert len(sack) <= 4 and all(first <= last for first, last in sack), payload
    for seq, frame in payload.get("frames", []):
        assert isinstance(seq, int) and 1 <= seq <= MAX_INTEGER, payload
        assert isinstance(frame, dict) and isinstance(frame.get("t"), str), payload


class Client:
    """A client written from the document: one channel from one address, answers kept raw.

    Frames are numbered 1, 2, 3, ... and every payload carries the cumulative `ack` of the
    daemon's frames and the `echo` of its highest packet number, unless a test says
    otherwise. `received` holds the first copy of each frame of the daemon by sequence
    number; `records` every opened record in arrival order.
    """

    def __init__(
        self, driver: EngineDriver, address: Address, first: Hello, response: bytes
    ) -> None:
        fields = read_response(response)
        assert fields.client_index == first.client_index
        assert fields.daemon_index != 0
        self.driver = driver
        self.address = address
        self.client_index = first.client_index
        self.daemon_index = fields.daemon_index
        self.reset_token = first.state.read_message(fields.message_2)
        self.send_key, self.receive_key = split_keys(
            first.ephemeral, driver.server_key, fields.message_2
        )
        self.next_pn = 1
        self.next_seq = 1
        self.highest_pn = 0
        self.records: list[tuple[int, Json]] = []
        self.received: dict[int, Json] = {}
        self.others: list[bytes] = []
        self.last_sent = b""

    # --- sending -----------------------------------------------------------------------------

    def seal(self, payload: Json | bytes, *, pn: int | None = None) -> bytes:
        """A `DATA` record of `payload` under the next packet number (or under `pn`, which
        the test then keeps track of itself)."""
        if pn is None:
            pn = self.next_pn
            self.next_pn += 1
        body = payload if isinstance(payload, bytes) else encode(payload)
        return seal(self.send_key, self.daemon_index, pn, body)

    def payload(self, frames: Iterable[tuple[int, Any]] = (), **fields: Any) -> Json:
        payload: Json = {"ack": self.ack, "echo": self.highest_pn}
        payload.update(fields)
        numbered = [[seq, frame] for seq, frame in frames]
        if numbered:
            payload["frames"] = numbered
        return payload

    def deliver(self, datagram: bytes) -> list[Json]:
        """Send one datagram; return the payloads of the records that answer it (what
        reached our address meanwhile is taken in first)."""
        self.last_sent = datagram
        replies = self.driver.receive(datagram, self.address)
        self.poll()
        return self.take(replies)

    def send(self, *frames: Any, pn: int | None = None, **fields: Any) -> list[int]:
        """Send frames, numbered in turn, in one record; return their sequence numbers."""
        seqs = list(range(self.next_seq, self.next_seq + len(frames)))
        self.next_seq += len(frames)
        record = self.seal(self.payload(zip(seqs, frames, strict=True), **fields), pn=pn)
        assert len(record) <= MAX_DATAGRAM
        self.deliver(record)
        return seqs

    def send_numbered(self, frames: Iterable[tuple[int, Any]], **fields: Any) -> list[Json]:
        """Send frames under sequence numbers of the test's choosing, in one record."""
        return self.deliver(self.seal(self.payload(frames, **fields)))

    def request(self, frame: Json) -> int:
        (seq,) = self.send(frame)
        return seq

    def acknowledge(self) -> list[Json]:
        """A pure acknowledgement of everything received so far."""
        return self.deliver(self.seal(self.payload()))

    def settle(self) -> None:
        """Acknowledge until the daemon has nothing more to send now (64 frames at a time)."""
        while self.acknowledge():
            pass

    def login(self, name: str, password: str = PASSWORD, **fields: Any) -> Json:
        seq = self.request({"t": "login", "name": name, "password": password, **fields})
        return self.answer(seq)

    # --- receiving ---------------------------------------------------------------------------

    def open(self, data: bytes) -> tuple[int, Json]:
        """The packet number and payload of one of the daemon's records."""
        kind, index, pn = struct.unpack_from(">BIQ", data)
        assert (kind, index) == (DATA, self.client_index)
        header = data[:HEADER_BYTES]
        plaintext = AESGCM(self.receive_key).decrypt(nonce(pn), data[HEADER_BYTES:], header)
        assert len(plaintext) <= MAX_PAYLOAD
        payload = json.loads(plaintext.decode("utf-8"))
        check_payload(payload)
        return pn, dict(payload)

    def take(self, datagrams: Iterable[bytes]) -> list[Json]:
        """Take in datagrams from the daemon; return the payloads of its records."""
        payloads: list[Json] = []
        for data in datagrams:
            assert 0 < len(data) <= MAX_DATAGRAM
            if data[0] != DATA:
                self.others.append(data)
                continue
            pn, payload = self.open(data)
            self.highest_pn = max(self.highest_pn, pn)
            self.records.append((pn, payload))
            payloads.append(payload)
            for seq, frame in payload.get("frames", []):
                self.received.setdefault(seq, frame)
        return payloads

    def poll(self) -> list[Json]:
        """Take in what the daemon sent to our address meanwhile."""
        return self.take(self.driver.inbox.pop(self.address, []))

    @property
    def ack(self) -> int:
        """The cumulative acknowledgement: every frame up to this one has arrived."""
        seq = 0
        while seq + 1 in self.received:
            seq += 1
        return seq

    @property
    def frames(self) -> list[Json]:
        return [self.received[seq] for seq in sorted(self.received)]

    def of_type(self, kind: str) -> list[Json]:
        return [frame for frame in self.frames if frame["t"] == kind]

    def answers(self, seq: int) -> list[Json]:
        return [frame for frame in self.frames if frame.get("re") == seq]

    def answer(self, seq: int) -> Json:
        """The one `ok`, `registered`, `welcome` or `error` whose `re` is `seq`."""
        (frame,) = [f for f in self.answers(seq) if f["t"] in ANSWERS]
        return frame


def connect(driver: EngineDriver, address: Address | None = None) -> Client:
    """A new channel: `INIT` (with a cookie if asked), the `RESPONSE` read, the keys derived."""
    address = address or new_address()
    first = hello(driver.server_key)
    (response,) = driver.receive(init_datagram(first), address)
    if response[0] == RETRY:  # the same message 1 again, with the cookie
        cookie = read_retry(response, first.client_index)
        (response,) = driver.receive(init_datagram(first, cookie), address)
    return Client(driver, address, first, response)


def register_frame(name: str, password: str = PASSWORD, rid: str | None = None) -> Json:
    return {"t": "register", "rid": rid or f"rid-{name}", "name": name, "password": password}


def register(driver: EngineDriver, name: str, password: str = PASSWORD, **fields: Any) -> Json:
    """A registration on a channel of its own; the one answer."""
    client = connect(driver)
    seq = client.request({**register_frame(name, password), **fields})
    return client.answer(seq)


def login(
    driver: EngineDriver,
    name: str,
    password: str = PASSWORD,
    address: Address | None = None,
    **fields: Any,
) -> Client:
    """A session of `name` on a channel of its own, everything so far acknowledged."""
    client = connect(driver, address)
    welcome = client.login(name, password, **fields)
    assert welcome["t"] == "welcome", welcome
    client.settle()
    return client


def member(driver: EngineDriver, name: str) -> Client:
    """A new account, logged in."""
    assert register(driver, name)["t"] == "registered"
    return login(driver, name)


def wait(driver: EngineDriver, seconds: float, *clients: Client) -> None:
    """Let time pass on the daemon; the clients take in what it sent them."""
    driver.advance(seconds)
    for client in clients:
        client.poll()


def say(client: Client, text: str, cid: str) -> Json:
    return client.answer(client.request({"t": "say", "text": text, "cid": cid}))


def dropped(driver: EngineDriver) -> int:
    """How many datagrams, records and payloads the daemon has counted as bad."""
    return sum(count for name, count in driver.engine.stats.items() if name.startswith("bad_"))


# --- section 2: the daemon's key ----------------------------------------------------------------


def test_a_key_request_is_answered_with_the_daemons_static_key() -> None:
    driver = daemon()
    address = new_address()
    (answer,) = driver.receive(key_request(), address)
    assert answer == bytes((KEY, VERSION)) + driver.server_key
    assert read_key(answer) == driver.server_key


@pytest.mark.parametrize("registrations", [True, False])
def test_a_key_request_that_asks_is_told_whether_the_daemon_takes_registrations(
    registrations: bool,
) -> None:
    driver = daemon(registrations=registrations)
    told = bytes((0x00 if registrations else 0x01,))
    for asks in (0x01, 0x03):  # the asks byte's other bits are not looked at
        request = bytes((KEY_REQUEST, VERSION, asks)) + key_request()[3:]
        (answer,) = driver.receive(request, new_address())
        assert answer == bytes((KEY, VERSION)) + driver.server_key + told
    for asks in (0x00, 0x02):
        request = bytes((KEY_REQUEST, VERSION, asks)) + key_request()[3:]
        (answer,) = driver.receive(request, new_address())
        assert answer == bytes((KEY, VERSION)) + driver.server_key  # 34 bytes, as ever


def test_the_fingerprint_is_the_unpadded_base64_of_the_keys_sha256() -> None:
    driver = daemon()
    (answer,) = driver.receive(key_request(), new_address())
    key = read_key(answer)
    digest = base64.b64encode(hashlib.sha256(key).digest()).decode("ascii")
    assert fingerprint(key) == "SHA256:" + digest.rstrip("=")
    assert "=" not in fingerprint(key)


# --- section 3: datagrams, and no amplification ------------------------------------------------


@pytest.mark.parametrize("length", [1, 2, 34, 1199, 1201, 1400])
@pytest.mark.parametrize("kind", ["KEY_REQUEST", "INIT"])
def test_a_first_flight_not_exactly_1200_bytes_long_is_dropped(kind: str, length: int) -> None:
    driver = daemon()
    whole = key_request() if kind == "KEY_REQUEST" else init_datagram(hello(driver.server_key))
    datagram = sized(whole, length)
    counted = dropped(driver)
    assert driver.receive(datagram, new_address()) == []
    assert dropped(driver) == counted + 1
    assert driver.engine.sessions == {}


@pytest.mark.parametrize("version", [0x00, 0x01, 0x02, 0x04, 0xFF])
@pytest.mark.parametrize("kind", ["KEY_REQUEST", "INIT"])
def test_a_first_flight_of_another_version_is_refused_bad_version(kind: str, version: int) -> None:
    driver = daemon()
    first = hello(driver.server_key)
    if kind == "KEY_REQUEST":
        datagram = key_request(version=version)
    else:
        datagram = init_datagram(first, version=version)
    (answer,) = driver.receive(datagram, new_address())
    refused = read_refused(answer)
    assert refused["code"] == "bad_version" and refused["retry_after"] is None
    assert len(answer) < FIRST_FLIGHT
    # Shorter than a first flight, it gets nothing at all.
    assert driver.receive(datagram[:-1], new_address()) == []


def test_an_init_from_client_index_0_is_dropped_before_its_handshake_is_read() -> None:
    driver = daemon()
    first = replace(hello(driver.server_key), client_index=0)
    counted = dropped(driver)
    assert driver.receive(init_datagram(first), new_address()) == []
    assert dropped(driver) == counted + 1
    assert driver.engine.sessions == {}


def test_every_answer_to_a_first_flight_is_smaller_than_it() -> None:
    driver = daemon(max_connections=1)
    cookies = daemon(unproven_before_retry=0)
    address = new_address()
    answers = [
        *driver.receive(key_request(), address),
        *driver.receive(init_datagram(hello(driver.server_key)), address),
        *driver.receive(init_datagram(hello(driver.server_key)), address),
        *daemon().receive(init_datagram(hello(bytes(range(32)))), new_address()),
        *driver.receive(key_request(version=9), address),
        *cookies.receive(init_datagram(hello(cookies.server_key)), address),
    ]
    assert [answer[0] for answer in answers] == [KEY, RESPONSE, REFUSED, KEY, REFUSED, RETRY]
    assert all(len(answer) < FIRST_FLIGHT for answer in answers)


# --- section 4: the handshake -------------------------------------------------------------------


def test_an_init_is_answered_with_a_response_that_opens_the_channel() -> None:
    driver = daemon()
    address = new_address()
    first = hello(driver.server_key)
    ephemeral = X25519PrivateKey.from_private_bytes(first.ephemeral).public_key()
    assert len(first.message_1) == 48
    assert first.message_1[:32] == ephemeral.public_bytes_raw()
    datagram = init_datagram(first)
    assert len(datagram) == FIRST_FLIGHT
    assert datagram[:7] == bytes((INIT, VERSION)) + be32(first.client_index) + b"\x00"
    (response,) = driver.receive(datagram, address)
    fields = read_response(response)
    assert fields.client_index == first.client_index
    assert fields.daemon_index != 0
    assert len(fields.message_2) == 64
    # Message 2 authenticates the daemon's key and carries the 16-byte reset token; the
    # first key of `Split()` seals what the client sends, the second what it receives.
    client = Client(driver, address, first, response)
    assert len(client.reset_token) == 16
    (seq,) = client.send({"t": "ping"})
    assert client.records == [(1, {"ack": seq, "echo": 1})]


def test_an_init_sent_again_before_the_channel_is_proven_gets_the_same_response() -> None:
    driver = daemon()
    address = new_address()
    first = hello(driver.server_key)
    (response,) = driver.receive(init_datagram(first), address)
    (again,) = driver.receive(init_datagram(first), address)
    assert again == response
    assert len(driver.engine.sessions) == 1
    client = Client(driver, address, first, again)
    client.send({"t": "ping"})
    assert client.records  # the one channel works


def test_an_init_whose_message_1_opened_a_channel_in_the_last_120_s_gets_no_answer() -> None:
    # A replay of a recorded INIT (from anywhere) opens nothing for 120 s; only then is
    # the same message 1 taken as new again.
    driver = daemon()
    address = new_address()
    first = hello(driver.server_key)
    (response,) = driver.receive(init_datagram(first), address)
    Client(driver, address, first, response).send({"t": "ping"})  # proven
    driver.advance(60.0)
    assert driver.receive(init_datagram(first), address) == []
    driver.advance(59.0)
    assert driver.receive(init_datagram(first), new_address()) == []
    assert driver.engine.sessions == {}  # the first closed, not logged in; none opened
    driver.advance(1.5)
    (answer,) = driver.receive(init_datagram(first), new_address())
    assert read_response(answer).client_index == first.client_index


@pytest.mark.parametrize(
    ("case", "server_key", "prologue"),
    [
        ("another key", X25519PrivateKey.generate().public_key().public_bytes_raw(), PROLOGUE),
        ("another prologue", None, b"trio-chat/1"),
    ],
    ids=["another key", "another prologue"],  # the same in every process that collects them
)
def test_an_init_that_does_not_decrypt_is_answered_with_the_daemons_key(
    case: str, server_key: bytes | None, prologue: bytes
) -> None:
    driver = daemon()
    first = hello(server_key or driver.server_key, prologue=prologue)
    (answer,) = driver.receive(init_datagram(first), new_address())
    assert read_key(answer) == driver.server_key, case
    assert driver.engine.sessions == {}


def test_with_64_channels_unproven_an_init_must_first_echo_a_cookie() -> None:
    driver = daemon()
    for _ in range(64):
        (response,) = driver.receive(init_datagram(hello(driver.server_key)), new_address())
        assert response[0] == RESPONSE
    address = new_address()
    first = hello(driver.server_key)
    (retry,) = driver.receive(init_datagram(first), address)
    cookie = read_retry(retry, first.client_index)
    assert len(driver.engine.sessions) == 64  # nothing spent on it
    (response,) = driver.receive(init_datagram(first, cookie), address)
    client = Client(driver, address, first, response)
    assert register(driver, "alice")["t"] == "registered"
    assert client.login("alice")["t"] == "welcome"


def test_a_cookie_is_good_for_30_to_60_seconds_at_its_own_address_only() -> None:
    driver = daemon(unproven_before_retry=0)
    address = new_address()
    soon, late, moved = (hello(driver.server_key) for _ in range(3))
    cookies = {}
    for first in (soon, late, moved):
        (retry,) = driver.receive(init_datagram(first), address)
        cookies[first.client_index] = read_retry(retry, first.client_index)
    (other,) = driver.receive(init_datagram(moved, cookies[moved.client_index]), new_address())
    assert other[0] == RETRY
    driver.advance(29.9)
    (response,) = driver.receive(init_datagram(soon, cookies[soon.client_index]), address)
    assert response[0] == RESPONSE
    driver.advance(30.1)
    (expired,) = driver.receive(init_datagram(late, cookies[late.client_index]), address)
    fresh = read_retry(expired, late.client_index)  # a RETRY answered with another RETRY
    (response,) = driver.receive(init_datagram(late, fresh), address)
    assert response[0] == RESPONSE


def test_an_address_holding_16_channels_is_refused_too_many_sessions() -> None:
    driver = daemon()
    host = new_address()[0]
    for port in range(16):
        client = connect(driver, (host, port))
        client.send({"t": "ping"})  # its first record proves the address: now it counts
    # Channels whose client has sent no record do not count: a spoofed INIT fills nothing.
    # Past 4 of them from one network, an INIT must echo a cookie first.
    spoofed = new_address()[0]
    kinds = [
        driver.receive(init_datagram(hello(driver.server_key)), (spoofed, port))[0][0]
        for port in range(40)
    ]
    assert kinds == [RESPONSE] * 4 + [RETRY] * 36
    (answer,) = driver.receive(init_datagram(hello(driver.server_key)), (host, 99))
    refused = read_refused(answer)
    assert refused["code"] == "too_many_sessions" and refused["retry_after"] is None
    assert refused["message"]
    (response,) = driver.receive(init_datagram(hello(driver.server_key)), new_address())
    assert response[0] == RESPONSE


def test_a_daemon_holding_all_the_channels_it_takes_is_refused_busy() -> None:
    driver = daemon(max_connections=2)
    for _ in range(2):
        driver.receive(init_datagram(hello(driver.server_key)), new_address())
    (answer,) = driver.receive(init_datagram(hello(driver.server_key)), new_address())
    refused = read_refused(answer)
    assert refused["code"] == "busy"
    assert isinstance(refused["retry_after"], int | float) and refused["retry_after"] > 0


def test_a_channel_not_logged_in_within_10_seconds_is_closed() -> None:
    driver = daemon()
    assert register(driver, "alice")["t"] == "registered"
    prompt, late = connect(driver), connect(driver)
    driver.advance(9.5)
    assert prompt.login("alice")["t"] == "welcome"
    driver.advance(1.6)
    # Closed, and told so: a `bye`; a login after it gets that `bye` again, and nothing
    # else (no welcome, and no RESET while the channel is remembered).
    late.poll()
    (told,) = late.of_type("bye")
    assert told == {"t": "bye", "reason": "login_timeout", "message": told["message"]}
    farewell = list(late.records)
    late.records.clear()
    late.send({"t": "login", "name": "alice", "password": PASSWORD})
    assert late.records == farewell and not late.others
    driver.advance(30.0)
    late.deliver(late.seal(late.payload([(1, {"t": "ping"})])))
    (reset,) = late.others
    assert reset == bytes((RESET,)) + be32(late.daemon_index) + late.reset_token


def test_a_channel_registering_is_kept_past_10_seconds_until_the_account_is_stored() -> None:
    driver = daemon()
    driver.auto_commit = False
    client = connect(driver)
    seq = client.request(register_frame("alice"))
    assert client.answers(seq) == []
    driver.advance(15.0)
    driver.commit_held()
    client.poll()
    assert client.answer(seq) == {"t": "registered", "re": seq, "name": "alice"}
    assert client.login("alice")["t"] == "welcome"


# --- section 5: records ---------------------------------------------------------------------


def ping_payload(client: Client) -> bytes:
    """A payload with the client's next frame, a `ping` (which the daemon acknowledges)."""
    seq = client.next_seq
    client.next_seq += 1
    return encode(client.payload([(seq, {"t": "ping"})]))


def test_a_record_is_sealed_under_the_packet_number_nonce_with_the_header_as_ad() -> None:
    driver = daemon()
    client = connect(driver)
    payload = ping_payload(client)
    header = data_header(client.daemon_index, 1)
    little_endian_nonce = bytes(4) + (1).to_bytes(8, "little")
    wrong = {
        "little-endian nonce": AESGCM(client.send_key).encrypt(
            little_endian_nonce, payload, header
        ),
        "no associated data": AESGCM(client.send_key).encrypt(nonce(1), payload, b""),
        "the daemon's key": AESGCM(client.receive_key).encrypt(nonce(1), payload, header),
    }
    for case, ciphertext in wrong.items():
        counted = dropped(driver)
        assert client.deliver(header + ciphertext) == [], case
        assert dropped(driver) == counted + 1, case
    right = AESGCM(client.send_key).encrypt(nonce(1), payload, header)
    assert header + right == client.seal(payload, pn=1)
    assert client.deliver(header + right) == [{"ack": 1, "echo": 1}]


def test_packet_numbers_start_at_1_and_every_record_sent_again_is_a_new_one() -> None:
    driver = daemon()
    assert register(driver, "alice")["t"] == "registered"
    client = connect(driver)
    seq = client.request({"t": "login", "name": "alice", "password": PASSWORD})
    welcome = client.answer(seq)
    (ping,) = client.send({"t": "ping"}, ack=0)  # nothing of the daemon's acknowledged
    wait(driver, 1.5, client)
    numbers = [pn for pn, _payload in client.records]
    assert numbers == list(range(1, len(numbers) + 1))
    resent = [
        (pn, payload) for pn, payload in client.records if [1, welcome] in payload.get("frames", [])
    ]
    assert len(resent) >= 2
    (first_pn, _first), (again_pn, again) = resent[0], resent[1]
    assert again_pn > first_pn
    assert (again["ack"], again["echo"]) == (ping, client.next_pn - 1)


def test_a_record_that_does_not_authenticate_is_dropped_and_changes_nothing() -> None:
    driver = daemon()
    alice = member(driver, "alice")
    far_ahead = data_header(alice.daemon_index, 100_000) + bytes(40)
    seq = alice.next_seq
    alice.next_seq += 1
    record = alice.seal(alice.payload([(seq, {"t": "say", "text": "hi", "cid": "c1"})]))
    damaged = record[:-1] + bytes((record[-1] ^ 1,))
    header_changed = record[:5] + bytes((record[5] ^ 1,)) + record[6:]
    for forged in (far_ahead, damaged, header_changed, record[:-1], record[:29]):
        counted = dropped(driver)
        assert alice.deliver(forged) == []
        assert dropped(driver) == counted + 1
    assert not [op for op in driver.stored if isinstance(op, Message)]
    # The replay window did not move and the frame was not taken: the record itself is.
    alice.deliver(record)
    assert alice.answer(seq)["t"] == "ok"


def test_a_replayed_record_is_dropped() -> None:
    driver = daemon()
    alice = member(driver, "alice")
    (seq,) = alice.send({"t": "say", "text": "once", "cid": "c1"})
    record = alice.last_sent
    records = len(alice.records)
    counted = dropped(driver)
    assert alice.deliver(record) == []
    assert dropped(driver) == counted + 1
    assert len(alice.records) == records
    assert len([op for op in driver.stored if isinstance(op, Message)]) == 1
    assert len(alice.answers(seq)) == 1


def test_a_record_4096_or_more_below_the_highest_accepted_is_dropped() -> None:
    driver = daemon()
    client = connect(driver)
    assert client.deliver(client.seal(ping_payload(client), pn=5000))
    counted = dropped(driver)
    assert client.deliver(client.seal(ping_payload(client), pn=5000 - 4096)) == []
    assert dropped(driver) == counted + 1
    assert client.deliver(client.seal(ping_payload(client), pn=5000 - 4095))


def test_a_record_for_an_unknown_index_is_answered_reset_with_the_handshake_token() -> None:
    driver = daemon()
    alice = member(driver, "alice")
    record = alice.seal(ping_payload(alice))
    again = restarted(driver)
    (reset,) = again.receive(record, alice.address)
    assert reset == bytes((RESET,)) + be32(alice.daemon_index) + alice.reset_token
    assert len(reset) == RESET_BYTES < len(record)
    # The token comes from the index and a secret kept with the daemon's key.
    (same,) = again.receive(alice.seal(ping_payload(alice)), new_address())
    assert same == reset
    (stranger,) = restarted(driver, keys_kept=False).receive(record, alice.address)
    assert stranger[:5] == reset[:5] and stranger[5:] != alice.reset_token
    other_index = data_header(alice.daemon_index + 1, 1) + bytes(16)
    (other,) = again.receive(other_index, alice.address)
    assert other[:5] == bytes((RESET,)) + be32(alice.daemon_index + 1)
    assert len(other) == RESET_BYTES and other[5:] != alice.reset_token


def test_the_largest_record_is_1200_bytes() -> None:
    driver = daemon()
    client = connect(driver)

    def padded_record(length: int) -> bytes:
        seq = client.next_seq
        client.next_seq += 1
        payload = client.payload([(seq, {"t": "ping"})], padding="")
        short = len(encode(payload)) + HEADER_BYTES + TAG_BYTES
        payload["padding"] = "x" * (length - short)  # fields not described are ignored
        return client.seal(payload)

    largest = padded_record(MAX_DATAGRAM)
    assert len(largest) == MAX_DATAGRAM
    assert client.deliver(largest)
    too_large = padded_record(MAX_DATAGRAM + 1)
    assert len(too_large) == MAX_DATAGRAM + 1
    counted = dropped(driver)
    assert client.deliver(too_large) == []
    assert dropped(driver) == counted + 1


# --- section 6: the payload and the reliable stream -----------------------------------------------


def test_a_payload_may_leave_out_every_field_at_its_default() -> None:
    driver = daemon()
    assert register(driver, "alice")["t"] == "registered"
    client = connect(driver)
    counted = dropped(driver)
    assert client.deliver(client.seal(b"{}")) == []  # a pure acknowledgement
    login = {"t": "login", "name": "alice", "password": PASSWORD}
    client.deliver(client.seal({"frames": [[1, login]], "not described": [1, {"x": None}]}))
    assert client.answer(1)["t"] == "welcome"
    assert dropped(driver) == counted


def test_every_payload_echoes_the_highest_packet_number_received() -> None:
    driver = daemon()
    client = connect(driver)
    (seven,) = client.deliver(client.seal(ping_payload(client), pn=7))
    (five,) = client.deliver(client.seal(ping_payload(client), pn=5))
    assert (seven["echo"], five["echo"]) == (7, 7)
    assert (seven["ack"], five["ack"]) == (1, 2)


def test_frames_are_taken_in_order_and_early_ones_acknowledged_with_sack() -> None:
    driver = daemon()
    alice, bob = member(driver, "alice"), member(driver, "bob")
    first = {"t": "say", "text": "first", "cid": "c1"}
    second = {"t": "say", "text": "second", "cid": "c2"}
    (early,) = alice.send_numbered([(3, second)])
    assert (early["ack"], early["sack"]) == (1, [[3, 3]])
    assert alice.answers(3) == []
    replies = alice.send_numbered([(2, first)])
    assert replies[0]["ack"] == 3 and "sack" not in replies[0]
    ok_first, ok_second = alice.answer(2), alice.answer(3)
    assert ok_first["id"] < ok_second["id"]
    bob.poll()
    assert [m["text"] for m in bob.of_type("msg")] == ["first", "second"]


def test_sack_holds_the_newest_4_ranges() -> None:
    driver = daemon()
    client = connect(driver)
    replies = [client.send_numbered([(seq, {"t": "ping"})]) for seq in (3, 5, 7, 9, 11)]
    (last,) = replies[-1]
    assert last["ack"] == 0
    assert last["sack"] == [[5, 5], [7, 7], [9, 9], [11, 11]]


def test_frames_up_to_256_beyond_ack_are_kept_and_further_ones_dropped() -> None:
    driver = daemon()
    client = connect(driver)
    (kept,) = client.send_numbered([(256, {"t": "ping"})])
    assert kept["sack"] == [[256, 256]]
    (beyond,) = client.send_numbered([(257, {"t": "ping"})])  # answered at once, not kept
    assert beyond["sack"] == [[256, 256]]
    for start in range(1, 256, 50):
        client.send_numbered([(seq, {"t": "ping"}) for seq in range(start, min(start + 50, 256))])
    assert client.records[-1][1]["ack"] == 256
    (again,) = client.send_numbered([(257, {"t": "ping"})])
    assert again["ack"] == 257


def test_a_frame_received_twice_is_acknowledged_at_once_and_answered_once() -> None:
    driver = daemon()
    alice = member(driver, "alice")
    (seq,) = alice.send({"t": "who"})
    answers = alice.answers(seq)
    assert [f["t"] for f in answers] == ["names", "ok"]
    alice.acknowledge()
    replies = alice.send_numbered([(seq, {"t": "who"})])
    assert replies == [{"ack": seq, "echo": alice.next_pn - 1}]
    assert alice.answers(seq) == answers


def test_the_daemon_keeps_at_most_64_frames_unacknowledged() -> None:
    driver = daemon(message_burst=1000)
    alice = member(driver, "alice")
    for n in range(100):
        say(alice, f"m{n}", f"c{n}")
    alice.acknowledge()
    lowest = alice.ack + 1
    (seq,) = alice.send({"t": "history", "limit": 100})
    assert max(alice.received) == lowest + 63
    alice.acknowledge()
    assert max(alice.received) == lowest + 100
    assert alice.answer(seq) == {"t": "ok", "re": seq, "count": 100}


@pytest.mark.parametrize("acknowledgement", [{"ack": 10**6}, {"ack": 0, "sack": [[1, 10**6]]}])
def test_acknowledgements_above_the_highest_frame_sent_are_ignored(
    acknowledgement: Json,
) -> None:
    driver = daemon()
    assert register(driver, "alice")["t"] == "registered"
    lying, honest = connect(driver), connect(driver)
    for client in (lying, honest):
        assert client.login("alice")["t"] == "welcome"
    lying.deliver(lying.seal({"echo": lying.highest_pn, **acknowledgement}))
    honest.acknowledge()
    records = {client: len(client.records) for client in (lying, honest)}
    wait(driver, 1.5, lying, honest)
    assert [p for _pn, p in lying.records[records[lying] :] if p.get("frames")]
    assert honest.records[records[honest] :] == []


def slow_login(driver: EngineDriver, history: int, round_trip: float) -> tuple[Client, Client]:
    """Bob, who said `history` messages; and a channel that logs in as alice one round
    trip after its handshake (the daemon's first RTT sample), acknowledging nothing."""
    assert register(driver, "alice")["t"] == "registered"
    bob = member(driver, "bob")
    for n in range(history):
        say(bob, f"m{n}", f"c{n}")
    bob.acknowledge()
    client = connect(driver)
    driver.advance(round_trip)
    client.login("alice")
    return bob, client


def frames_of(payloads: Iterable[tuple[int, Json]]) -> list[list[int]]:
    """The sequence numbers of the frames of each record that carried any."""
    return [[seq for seq, _f in p["frames"]] for _pn, p in payloads if p.get("frames")]


def test_a_probe_timeout_sends_the_oldest_and_newest_frame_again_in_two_records() -> None:
    driver = daemon()
    _bob, client = slow_login(driver, history=3, round_trip=0.1)
    sent = driver.now
    assert frames_of(client.records) == [[1, 2, 3, 4, 5]]
    # PTO = SRTT + max(4 RTTVAR, 1 ms) + 25 ms = 0.1 + 0.2 + 0.025, then doubled each time.
    for probe in (0.325, 0.325 + 0.65, 0.325 + 0.65 + 1.3):
        seen = len(client.records)
        wait(driver, sent + probe - 0.002 - driver.now, client)
        assert len(client.records) == seen, probe
        wait(driver, 0.004, client)
        assert frames_of(client.records[seen:]) == [[1, 5], [1, 5]], probe


def test_frames_3_transmissions_behind_an_acknowledged_one_are_sent_again_at_once() -> None:
    driver = daemon()
    _bob, client = slow_login(driver, history=3, round_trip=0.1)
    sent = driver.now
    seen = len(client.records)
    driver.advance(0.05)
    client.deliver(client.seal({"ack": 0, "echo": 0, "sack": [[4, 5]]}))
    assert frames_of(client.records[seen:]) == [[1, 2]]
    # Frame 3 is lost once 9/8 x the RTT (0.1 s) has passed since it was sent.
    seen = len(client.records)
    wait(driver, sent + 0.1125 - 0.001 - driver.now, client)
    assert frames_of(client.records[seen:]) == []
    wait(driver, 0.002, client)
    assert frames_of(client.records[seen:]) == [[3]]


def test_a_client_that_acknowledges_nothing_for_20_seconds_is_given_up() -> None:
    driver = daemon()
    bob, _client = slow_login(driver, history=0, round_trip=0.1)
    logged_in = driver.now
    while driver.now < logged_in + 19.5:
        wait(driver, 0.5, bob)
        bob.acknowledge()
    wait(driver, logged_in + 19.99 - driver.now, bob)
    assert bob.of_type("leave") == []
    # At its give-up moment, not at the probe after it (up to 4 s later).
    wait(driver, 0.02, bob)
    (leave,) = bob.of_type("leave")
    assert (leave["name"], leave["reason"]) == ("alice", "timeout")


# --- section 7.1: before a login ------------------------------------------------------------------


def test_before_a_login_only_register_login_resume_ping_and_logout_are_taken() -> None:
    driver = daemon()
    client = connect(driver)
    refused = [
        {"t": "say", "text": "hi", "cid": "c1"},
        {"t": "whisper", "to": "bob", "text": "hi", "cid": "c2"},
        {"t": "who"},
        {"t": "history"},
    ]
    seqs = client.send(*refused)
    for seq in seqs:
        error = client.answer(seq)
        assert (error["t"], error["code"], error["re"]) == ("error", "bad_request", seq)
        assert set(error) == {"t", "code", "message", "re"}
    (ping,) = client.send({"t": "ping"})
    assert client.answers(ping) == [] and client.records[-1][1]["ack"] == ping
    register_seq = client.request(register_frame("alice"))
    assert client.answer(register_seq)["t"] == "registered"
    logout = client.request({"t": "logout"})
    assert client.answer(logout) == {"t": "ok", "re": logout}


def test_registered_comes_once_the_account_is_on_disk_and_the_channel_stays_open() -> None:
    driver = daemon()
    driver.auto_commit = False
    client = connect(driver)
    (seq,) = client.send(register_frame("ＡＬＩＣＥ"))
    assert client.records[-1][1]["ack"] == seq  # acknowledged at once, answered later
    assert client.answers(seq) == []
    driver.commit_held()
    client.poll()
    assert client.answer(seq) == {"t": "registered", "re": seq, "name": "ALICE"}
    say_seq = client.request({"t": "say", "text": "hi", "cid": "c1"})
    assert client.answer(say_seq)["code"] == "bad_request"  # not logged in
    assert client.login("alice")["t"] == "welcome"


def test_a_registration_sent_again_after_a_crash_is_answered_registered() -> None:
    driver = daemon()
    first = register(driver, "alice", rid="r-once")
    again = restarted(driver)
    assert register(again, "alice", rid="r-once") == first  # on a new channel
    other = register(again, "alice", rid="r-other")
    assert (other["t"], other["code"]) == ("error", "name_taken")


@pytest.mark.parametrize("rid", ["", "r" * 65, 7])
def test_a_registration_id_is_1_to_64_characters(rid: Any) -> None:
    driver = daemon()
    answer = register(driver, "alice", rid=rid)
    assert (answer["t"], answer["code"]) == ("error", "bad_field")
    assert register(driver, "alice", rid="r" * 64)["t"] == "registered"


def test_login_is_answered_welcome_with_every_documented_field() -> None:
    driver = daemon()
    assert register(driver, "Alice")["t"] == "registered"
    bob = member(driver, "bob")
    first = connect(driver).login("ALICE")
    assert set(first) == {"t", "re", "name", "ticket", "time", "muted"}  # `unread` left out: 0
    assert first["muted"] is False
    assert first["time"] == round(driver.wall, 3)  # the daemon's clock, to the ms
    assert (first["re"], first["name"]) == (1, "Alice")
    assert isinstance(first["ticket"], str) and 0 < len(first["ticket"]) <= 512
    for n in range(2):
        bob.request({"t": "whisper", "to": "alice", "text": f"psst {n}", "cid": f"w{n}"})
    welcome = connect(driver).login("alice")
    assert set(welcome) == {"t", "re", "name", "unread", "ticket", "time", "muted"}
    assert welcome["unread"] == 2
    assert welcome["ticket"] != first["ticket"]


def resume(driver: EngineDriver, ticket: str, **fields: Any) -> tuple[Client, Json]:
    client = connect(driver)
    seq = client.request({"t": "resume", "ticket": ticket, **fields})
    return client, client.answer(seq)


def test_resume_logs_in_with_a_ticket_without_password_or_throttle() -> None:
    driver = daemon()
    alice = member(driver, "alice")
    (welcome,) = alice.of_type("welcome")
    guesser = connect(driver)
    codes = [guesser.login("alice", "not the password")["code"] for _ in range(4)]
    assert codes == ["wrong_password"] * 3 + ["throttled"]
    client, resumed = resume(driver, welcome["ticket"])
    assert set(resumed) == {"t", "re", "name", "ticket", "time", "muted"}
    assert resumed["name"] == "alice" and resumed["ticket"] != welcome["ticket"]
    assert client.frames[-1] == {"t": "ready", "count": 0, "upto": 0}
    say_seq = client.request({"t": "say", "text": "back", "cid": "c1"})
    assert client.answer(say_seq)["t"] == "ok"


def test_a_ticket_is_good_for_24_hours_on_any_daemon_with_the_same_ticket_key() -> None:
    driver = daemon()
    alice = member(driver, "alice")
    (welcome,) = alice.of_type("welcome")
    ticket = welcome["ticket"]
    assert resume(restarted(driver), ticket)[1]["t"] == "welcome"
    assert resume(restarted(driver, keys_kept=False), ticket)[1]["code"] == "ticket_invalid"
    tampered = ticket[:10] + ("B" if ticket[10] == "A" else "A") + ticket[11:]
    assert resume(driver, tampered)[1]["code"] == "ticket_invalid"
    driver.advance(24 * 3600 - 1)
    assert resume(driver, ticket)[1]["t"] == "welcome"
    driver.advance(2)
    _client, expired = resume(driver, ticket)
    assert (expired["t"], expired["code"], expired["re"]) == ("error", "ticket_invalid", 1)


# --- sections 7.2 to 7.4: a session ----------------------------------------------------------


def test_login_sends_history_then_ready_and_leave_has_its_default_reason() -> None:
    driver = daemon()
    alice = member(driver, "alice")
    said = say(alice, "before bob", "c1")
    bob = member(driver, "bob")
    welcome, msg, ready = bob.frames
    assert welcome["t"] == "welcome"
    assert msg == {
        "t": "msg",
        "id": said["id"],
        "ts": said["ts"],
        "from": "alice",
        "text": "before bob",
        "history": True,
    }  # no `cid`: alice's own, shown to her sessions only
    assert ready == {"t": "ready", "count": 1, "upto": 1}  # `more` left out: false
    alice.poll()
    (join,) = alice.of_type("join")
    assert set(join) == {"t", "name", "ts"} and join["name"] == "bob"
    assert TIMESTAMP.fullmatch(join["ts"])
    live = say(alice, "live", "c2")
    bob.poll()
    assert bob.frames[-1]["id"] == live["id"] and "history" not in bob.frames[-1]
    bob.request({"t": "logout"})
    alice.poll()
    (leave,) = alice.of_type("leave")
    assert set(leave) == {"t", "name", "ts"} and leave["name"] == "bob"  # reason: quit


def test_an_address_change_moves_the_session_behind_a_path_check() -> None:
    driver = daemon(message_burst=100)
    alice, bob = member(driver, "alice"), member(driver, "bob")
    alice.poll()
    alice.acknowledge()
    old, moved = alice.address, new_address()
    in_flight_pn = alice.next_pn
    alice.next_pn += 1
    alice.address = moved
    since_move = len(alice.records)
    (first,) = alice.acknowledge()
    challenge = first["challenge"]
    assert isinstance(challenge, str) and challenge
    for n in range(10):
        say(bob, "ü" * 200 + str(n), f"c{n}")
        alice.poll()
        alice.deliver(alice.seal(alice.payload(response="not " + challenge)))
        assert driver.sent_to[moved] <= 3 * driver.received_from[moved]
    assert len(alice.of_type("msg")) < 10  # held back until the address answers
    assert all(p["challenge"] == challenge for _pn, p in alice.records[since_move:])
    alice.deliver(alice.seal(alice.payload(response=challenge)))
    assert len(alice.of_type("msg")) == 10
    seen = len(alice.records)
    # A record that was in flight from the old address is taken, but the session stays.
    seq = alice.next_seq
    alice.next_seq += 1
    in_flight = alice.seal(alice.payload([(seq, {"t": "who"})]), pn=in_flight_pn)
    assert driver.receive(in_flight, old) == []
    alice.poll()
    assert [f["t"] for f in alice.answers(seq)] == ["names", "ok"]
    assert all("challenge" not in p for _pn, p in alice.records[seen:])


def test_a_challenge_and_its_response_are_at_most_64_characters() -> None:
    """Section 8.1: a payload's `challenge` and `response` are at most 64 characters, a
    longer one making the payload invalid. A response of 64 characters that is not the
    challenge is a valid payload, taken, that proves nothing; one of 65 is dropped whole,
    its frame neither answered nor acknowledged until it comes in a valid payload."""
    assert all(0 < len(new_challenge()) <= 64 for _ in range(100))  # the daemon's own
    driver = daemon()
    alice = member(driver, "alice")
    alice.address = new_address()
    (first,) = alice.acknowledge()
    challenge = first["challenge"]
    assert isinstance(challenge, str) and 0 < len(challenge) <= 64
    (who,) = alice.send({"t": "who"}, response=challenge.ljust(64, "x"))
    assert [frame["t"] for frame in alice.answers(who)] == ["names", "ok"]
    assert alice.records[-1][1]["challenge"] == challenge  # not proven
    bad = dropped(driver)
    (again,) = alice.send({"t": "who"}, response=challenge.ljust(65, "x"))
    assert dropped(driver) == bad + 1
    assert alice.answers(again) == []
    alice.send_numbered([(again, {"t": "who"})], response=challenge)
    assert [frame["t"] for frame in alice.answers(again)] == ["names", "ok"]
    assert "challenge" not in alice.records[-1][1]  # proven


def test_a_session_silent_for_45_seconds_is_ended_and_others_see_timeout() -> None:
    driver = daemon()
    bob = member(driver, "bob")
    alice = member(driver, "alice")
    bob.poll()
    bob.acknowledge()
    silent_since = driver.now
    while driver.now < silent_since + 44.5:
        wait(driver, 0.5, alice)
        alice.send({"t": "ping"})
    assert alice.of_type("leave") == []
    while driver.now < silent_since + 46.5:
        wait(driver, 0.5, alice)
        alice.send({"t": "ping"})
    (leave,) = alice.of_type("leave")
    assert set(leave) == {"t", "name", "ts", "reason"}
    assert (leave["name"], leave["reason"]) == ("bob", "timeout")


def test_logout_is_answered_ok_and_others_see_leave_after_the_last_session() -> None:
    driver = daemon()
    alice = member(driver, "alice")
    bob_here, bob_there = member(driver, "bob"), login(driver, "bob")
    alice.poll()
    alice.acknowledge()
    first = bob_here.request({"t": "logout"})
    assert bob_here.answer(first) == {"t": "ok", "re": first}
    alice.poll()
    assert alice.of_type("leave") == []  # bob is still there
    last = bob_there.request({"t": "logout"})
    assert bob_there.answer(last) == {"t": "ok", "re": last}
    alice.poll()
    (leave,) = alice.of_type("leave")
    assert leave["name"] == "bob" and "reason" not in leave


def test_ending_a_session_sends_again_every_frame_not_yet_acknowledged() -> None:
    driver = daemon()
    assert register(driver, "alice")["t"] == "registered"
    client = connect(driver)
    client.login("alice")
    sent = sorted(client.received)
    before = len(client.records)
    (logout,) = client.send({"t": "logout"}, ack=0)
    again = sorted(seq for frames in frames_of(client.records[before:]) for seq in frames)
    assert again == [*sent, sent[-1] + 1]
    assert client.received[sent[-1] + 1] == {"t": "ok", "re": logout}


def test_for_30_seconds_after_a_logout_its_last_records_are_sent_again_not_reset() -> None:
    driver = daemon()
    alice = member(driver, "alice")
    before = len(alice.records)
    (logout,) = alice.send({"t": "logout"})
    last = alice.records[before:]
    assert {"t": "ok", "re": logout} in [frame for _seq, frame in last[-1][1]["frames"]]
    driver.advance(29.0)
    again = alice.send_numbered([(logout, {"t": "logout"})])  # as if its `ok` was lost
    assert alice.records[-len(last) :] == last  # the same records: same numbers, same bytes
    assert again == [payload for _pn, payload in last]
    assert alice.acknowledge() == [] and alice.others == []
    driver.advance(1.5)
    alice.send_numbered([(logout, {"t": "logout"})])
    assert alice.others == [bytes((RESET,)) + be32(alice.daemon_index) + alice.reset_token]


def test_a_logout_sent_again_gets_the_last_4_of_many_last_records() -> None:
    """Alice logs out with much of the room's talk to her unacknowledged: the daemon's
    last words are many records. Her `logout` sent again gets the last 4 of them, the
    very same bytes, and no others."""
    driver = daemon(message_burst=100)
    alice, bob = member(driver, "alice"), member(driver, "bob")
    alice.poll()
    alice.acknowledge()
    for n in range(20):
        bob.send({"t": "say", "text": f"talk {n} " + "x" * 300, "cid": f"t{n}"})
    driver.inbox.pop(alice.address)  # none of it reached alice
    mark = len(driver.sent)
    (logout,) = alice.send({"t": "logout"})
    last = [data for data, to in driver.sent[mark:] if to == alice.address]
    assert len(last) > 4
    assert {"t": "ok", "re": logout} in [frame for _seq, frame in alice.open(last[-1])[1]["frames"]]
    mark = len(driver.sent)
    alice.send_numbered([(logout, {"t": "logout"})])  # as if its `ok` was lost
    assert [data for data, to in driver.sent[mark:] if to == alice.address] == last[-4:]


def test_a_daemon_shutting_down_says_bye_to_every_session() -> None:
    driver = daemon()
    alice, bob = member(driver, "alice"), member(driver, "bob")
    alice.poll()
    driver.engine.shutdown(driver.now, driver.wall)
    driver.pump()
    for client in (alice, bob):
        client.poll()
        bye = client.frames[-1]
        assert set(bye) == {"t", "reason", "message"}
        assert (bye["t"], bye["reason"]) == ("bye", "shutdown")
        assert isinstance(bye["message"], str) and bye["message"]
    assert alice.of_type("leave") == []


def test_a_session_with_more_than_4096_frames_unacknowledged_is_ended_overloaded() -> None:
    driver = daemon(message_burst=10_000)
    stuck = member(driver, "stuck")
    talker = member(driver, "talker")
    stuck.poll()
    stuck.acknowledge()
    sent = 0
    while sent < 4096:
        batch = [{"t": "say", "text": f"m{sent + n}", "cid": f"c{sent + n}"} for n in range(16)]
        talker.send(*batch)
        sent += len(batch)
    talker.acknowledge()
    assert talker.of_type("leave") == []
    say(talker, "one too many", "last")
    talker.acknowledge()
    (leave,) = talker.of_type("leave")
    assert (leave["name"], leave["reason"]) == ("stuck", "overloaded")


# --- section 7.5: history and resuming ----------------------------------------------------------


def test_login_history_is_the_latest_20_public_and_every_waiting_private_message() -> None:
    driver = daemon(message_burst=1000)
    assert register(driver, "bob")["t"] == "registered"
    alice = member(driver, "alice")
    ids: dict[str, int] = {}
    for n in range(25):
        ids[f"m{n}"] = say(alice, f"m{n}", f"c{n}")["id"]
        if n in (2, 22):
            seq = alice.request({"t": "whisper", "to": "bob", "text": f"p{n}", "cid": f"w{n}"})
            ids[f"p{n}"] = alice.answer(seq)["id"]
    bob = login(driver, "bob")
    welcome, *history, ready = bob.frames
    assert welcome["t"] == "welcome" and welcome["unread"] == 2
    expected = sorted(["p2", *(f"m{n}" for n in range(5, 25)), "p22"], key=ids.__getitem__)
    assert [frame["text"] for frame in history] == expected
    assert [frame["id"] for frame in history] == sorted(ids[text] for text in expected)
    assert all(frame["history"] is True and "re" not in frame for frame in history)
    assert [frame["t"] for frame in history if frame["text"].startswith("p")] == ["pm", "pm"]
    assert ready == {"t": "ready", "count": 22, "more": True, "upto": 27}


def test_since_sends_the_newest_500_public_messages_after_it_and_the_private_ones() -> None:
    driver = daemon(message_burst=10_000)
    alice = member(driver, "alice")
    seen = say(alice, "seen", "c-seen")["id"]
    assert register(driver, "bob")["t"] == "registered"
    for n in range(3):
        say(alice, f"missed {n}", f"c{n}")
    alice.request({"t": "whisper", "to": "bob", "text": "waiting", "cid": "w"})
    bob = login(driver, "bob", since=seen)
    _welcome, *history, ready = bob.frames
    assert [m["text"] for m in history] == ["missed 0", "missed 1", "missed 2", "waiting"]
    assert ready == {"t": "ready", "count": 4, "upto": 5}
    for n in range(3, 503):
        say(alice, f"missed {n}", f"c{n}")
    client = login(driver, "alice", since=seen)
    history = client.frames[1:-1]
    # Her own whisper, sent since, comes too: what her other sessions had meanwhile.
    assert [m["text"] for m in history] == ["waiting", *(f"missed {n}" for n in range(3, 503))]
    # Every message from "missed 3" on came: the gap ends there (the whisper before it
    # came too, the room's messages before it did not).
    gap = history[1]["id"]
    assert client.frames[-1] == {"t": "ready", "count": 501, "more": True, "upto": 505, "gap": gap}


def test_a_private_message_is_delivered_once_a_session_acknowledged_it() -> None:
    driver = daemon()
    alice = member(driver, "alice")
    assert register(driver, "bob")["t"] == "registered"
    alice.request({"t": "whisper", "to": "bob", "text": "psst", "cid": "w1"})
    unacknowledging = connect(driver)
    assert unacknowledging.login("bob")["unread"] == 1
    unacknowledging.send({"t": "logout"}, ack=0)
    acknowledging = connect(driver)
    acknowledging.login("bob")
    (pm,) = acknowledging.of_type("pm")
    assert (pm["text"], pm["history"]) == ("psst", True)
    acknowledging.acknowledge()
    later = connect(driver)
    welcome = later.login("bob")
    assert "unread" not in welcome and later.of_type("pm") == []


def test_a_message_comes_back_to_its_own_session_only_as_the_ok() -> None:
    driver = daemon()
    alice_here = member(driver, "alice")
    alice_there = login(driver, "alice")
    ok = say(alice_here, "mine", "c-mine")
    alice_there.poll()
    assert alice_here.of_type("msg") == []
    (msg,) = alice_there.of_type("msg")
    assert (msg["id"], msg["from"], msg["cid"]) == (ok["id"], "alice", "c-mine")


# --- section 8: frames ----------------------------------------------------------------------


def test_a_message_is_answered_ok_and_shown_with_every_documented_field() -> None:
    driver = daemon()
    alice, bob = member(driver, "alice"), member(driver, "bob")
    said = say(alice, "你好 🙂", "c-say")
    pm_seq = alice.request({"t": "whisper", "to": "BOB", "text": "psst", "cid": "c-pm"})
    whispered = alice.answer(pm_seq)
    assert set(said) == {"t", "re", "id", "ts"} and said["t"] == "ok"
    assert set(whispered) == {"t", "re", "id", "ts", "to"}
    assert whispered["to"] == "bob"  # the recipient's name as the daemon keeps it
    assert TIMESTAMP.fullmatch(said["ts"]) and TIMESTAMP.fullmatch(whispered["ts"])
    assert 1 <= said["id"] < whispered["id"] <= MAX_INTEGER
    bob.poll()
    assert bob.frames[-2:] == [
        {
            "t": "msg",
            "id": said["id"],
            "ts": said["ts"],
            "from": "alice",
            "text": "你好 🙂",
        },  # no `cid`: alice's own, shown to her sessions only
        {
            "t": "pm",
            "id": whispered["id"],
            "ts": whispered["ts"],
            "from": "alice",
            "to": "bob",
            "text": "psst",
        },
    ]


def test_a_message_is_shown_and_answered_only_once_it_is_on_disk() -> None:
    driver = daemon()
    alice, bob = member(driver, "alice"), member(driver, "bob")
    driver.auto_commit = False
    (seq,) = alice.send({"t": "say", "text": "careful", "cid": "c1"})
    bob.poll()
    assert alice.answers(seq) == [] and bob.of_type("msg") == []
    driver.commit_held()
    alice.poll()
    bob.poll()
    assert alice.answer(seq)["t"] == "ok"
    assert [m["text"] for m in bob.of_type("msg")] == ["careful"]


def test_messages_committed_together_come_as_one_msgs_frame_only_to_who_asked() -> None:
    driver = daemon()
    alice = member(driver, "alice")
    assert register(driver, "bob")["t"] == "registered"
    assert register(driver, "carol")["t"] == "registered"
    bob = login(driver, "bob", batches=True)
    carol = login(driver, "carol")  # did not ask
    driver.auto_commit = False
    seqs = alice.send(*({"t": "say", "text": text, "cid": f"c{text}"} for text in "xyz"))
    driver.commit_held()
    for client in (alice, bob, carol):
        client.poll()
    answers = [alice.answer(seq) for seq in seqs]
    shown = [
        {"t": "msg", "id": ok["id"], "ts": ok["ts"], "from": "alice", "text": text}
        for ok, text in zip(answers, "xyz", strict=True)
    ]
    assert bob.frames[-1] == {"t": "msgs", "messages": shown}
    assert bob.of_type("msg") == []
    assert carol.frames[-3:] == shown
    assert carol.of_type("msgs") == []
    # A message alone in its group comes as a `msg`, batches or not.
    driver.auto_commit = True
    alone = say(alice, "alone", "c-alone")
    bob.poll()
    assert bob.frames[-1] == {
        "t": "msg",
        "id": alone["id"],
        "ts": alone["ts"],
        "from": "alice",
        "text": "alone",
    }


def test_a_message_sent_again_with_its_cid_is_answered_with_the_first_id_and_ts() -> None:
    driver = daemon()
    alice, bob = member(driver, "alice"), member(driver, "bob")
    first = say(alice, "once", "same")
    driver.advance(2.0)
    again = say(alice, "once", "same")
    assert (again["id"], again["ts"]) == (first["id"], first["ts"])
    assert again["re"] != first["re"]
    bob.poll()
    assert [m["text"] for m in bob.of_type("msg")] == ["once"]
    assert len([op for op in driver.stored if isinstance(op, Message)]) == 1


def test_the_latest_5000_messages_are_recognised_in_memory_older_ones_by_the_store() -> None:
    """Section 8.1: a message sent again among the latest 5000 is answered at once; one
    older than that is handed to the store, whose refusal of the copy answers it."""
    driver = daemon(message_burst=10_000, message_rate=10_000.0)
    alice = member(driver, "alice")
    first = say(alice, "once", "first")

    def say_more(count: int, start: int) -> None:
        for at in range(start, start + count, 16):
            n = min(16, start + count - at)
            alice.send(*({"t": "say", "text": "more", "cid": f"m{at + k}"} for k in range(n)))
            alice.settle()

    say_more(4999, 0)  # the first is now the oldest of the latest 5000
    driver.auto_commit = False
    again = alice.answer(alice.request({"t": "say", "text": "once", "cid": "first"}))
    assert (again["id"], again["ts"]) == (first["id"], first["ts"])
    assert driver.uncommitted == []  # answered from memory
    driver.auto_commit = True
    say_more(1, 4999)  # one newer: the first is now the 5001st
    driver.auto_commit = False
    late = alice.request({"t": "say", "text": "once", "cid": "first"})
    assert alice.answers(late) == []  # waits for the store
    (copy,) = driver.uncommitted
    assert isinstance(copy, Message) and copy.cid == "first"
    # The store refuses it as a copy, and hands back the one it holds (as SQLite does).
    driver.uncommitted.clear()
    (stored,) = [op for op in driver.stored if isinstance(op, Message) and op.cid == "first"]
    driver.engine.failed(copy, stored)
    driver.pump()
    alice.poll()
    answer = alice.answer(late)
    assert (answer["id"], answer["ts"]) == (first["id"], first["ts"])


@pytest.mark.parametrize("typed", ["alice", "ALICE", "Alice", "ａｌｉｃｅ"])
def test_login_matches_names_after_nfkc_and_case_folding(typed: str) -> None:
    driver = daemon()
    assert register(driver, "Alice")["t"] == "registered"
    welcome = connect(driver).login(typed)
    assert (welcome["t"], welcome["name"]) == ("welcome", "Alice")


def test_a_quiet_session_only_looks() -> None:
    driver = daemon()
    alice = member(driver, "alice")
    assert register(driver, "bob")["t"] == "registered"
    alice.request({"t": "whisper", "to": "bob", "text": "waiting", "cid": "w1"})
    say(alice, "public", "p1")
    quiet = connect(driver)
    welcome = quiet.login("bob", quiet=True)
    assert welcome["unread"] == 1
    assert quiet.frames == [welcome, {"t": "ready", "count": 0}]
    (who,) = quiet.send({"t": "who"})
    names, ok = quiet.answers(who)
    assert (names["names"], ok["count"]) == (["alice"], 1)
    for frame in (
        {"t": "say", "text": "hello?", "cid": "q1"},
        {"t": "whisper", "to": "alice", "text": "hello?", "cid": "q2"},
    ):
        assert quiet.answer(quiet.request(frame))["code"] == "bad_request"
    say(alice, "not for the quiet", "p2")
    quiet.acknowledge()
    assert quiet.of_type("msg") == [] and quiet.of_type("pm") == []
    logout = quiet.request({"t": "logout"})
    assert quiet.answer(logout) == {"t": "ok", "re": logout}
    alice.poll()
    assert alice.of_type("join") == [] and alice.of_type("leave") == []


def test_who_answers_names_sorted_case_insensitively_then_ok_with_count() -> None:
    driver = daemon()
    clients = [member(driver, name) for name in ("bob", "Dave", "alice", "Carol")]
    asker = clients[0]
    (seq,) = asker.send({"t": "who"})
    *parts, ok = asker.answers(seq)
    assert all(set(part) == {"t", "re", "names"} and part["t"] == "names" for part in parts)
    assert [name for part in parts for name in part["names"]] == ["alice", "bob", "Carol", "Dave"]
    assert ok == {"t": "ok", "re": seq, "count": 4}


def test_history_answers_oldest_first_before_the_given_id(disk: DiskDriver) -> None:
    driver = disk
    alice, bob, carol = (member(driver, name) for name in ("alice", "bob", "carol"))
    ids = [say(alice, f"m{n}", f"c{n}")["id"] for n in range(6)]
    for sender, to, text in ((bob, "alice", "to alice"), (carol, "bob", "not for alice")):
        cid = text.replace(" ", "-")
        sender.answer(sender.request({"t": "whisper", "to": to, "text": text, "cid": cid}))
    mine = alice.request({"t": "whisper", "to": "bob", "text": "from alice", "cid": "w"})
    alice.answer(mine)
    (page,) = alice.send({"t": "history", "limit": 3, "before": ids[4]})
    *shown, ok = alice.answers(page)
    assert [m["id"] for m in shown] == ids[1:4]  # the newest 3 before it, oldest first
    assert shown[0] == {
        "t": "msg",
        "id": ids[1],
        "ts": shown[0]["ts"],
        "from": "alice",
        "text": "m1",
        "cid": "c1",
        "history": True,
        "re": page,
    }
    assert ok == {"t": "ok", "re": page, "count": 3}
    (everything,) = alice.send({"t": "history"})
    *shown, ok = alice.answers(everything)
    texts = [f"m{n}" for n in range(6)] + ["to alice", "from alice"]
    assert [m["text"] for m in shown] == texts
    assert [m["id"] for m in shown] == sorted(m["id"] for m in shown)
    assert {m["t"] for m in shown[-2:]} == {"pm"} and shown[-2]["to"] == "alice"
    assert ok == {"t": "ok", "re": everything, "count": 8}
    (one,) = alice.send({"t": "history", "limit": 1})
    assert [m["text"] for m in alice.answers(one)[:-1]] == ["from alice"]


def test_history_gives_20_messages_by_default(disk: DiskDriver) -> None:
    driver = disk
    alice = member(driver, "alice")
    for n in range(25):
        say(alice, f"m{n}", f"c{n}")
    (seq,) = alice.send({"t": "history"})
    alice.settle()
    *shown, ok = alice.answers(seq)
    assert [m["text"] for m in shown] == [f"m{n}" for n in range(5, 25)]
    assert ok["count"] == 20


def test_messages_past_a_burst_of_20_are_refused_then_5_a_second_are_taken() -> None:
    driver = daemon()
    alice = member(driver, "alice")
    assert [say(alice, f"m{n}", f"c{n}")["t"] for n in range(20)] == ["ok"] * 20
    refused = say(alice, "m20", "c20")
    assert set(refused) == {"t", "code", "message", "re", "retry_after"}
    assert refused["code"] == "rate_limited" and 0 < refused["retry_after"] <= 0.201
    later = say(alice, "m21", "c21")  # held back behind the refused one
    assert later["code"] == "rate_limited"
    driver.advance(refused["retry_after"])
    assert say(alice, "m20", "c20")["t"] == "ok"
    assert say(alice, "m21", "c21")["code"] == "rate_limited"
    driver.advance(0.2)
    assert say(alice, "m21", "c21")["t"] == "ok"


def test_a_refused_message_not_sent_again_holds_others_back_for_10_seconds_more() -> None:
    """10 s past the later of `retry_after` and the client's acknowledgement of the
    refusal (section 8: a refusal lost on the way gave the client no chance to resend)."""
    driver = daemon()
    alice = member(driver, "alice")
    for n in range(20):
        say(alice, f"m{n}", f"c{n}")
    refused = say(alice, "given up", "c-given-up")
    alice.acknowledge()  # within the ack delay, as a client must: it has the refusal
    driver.advance(refused["retry_after"] + 9.8)
    assert say(alice, "later", "c-later")["code"] == "rate_limited"
    driver.advance(0.3)
    assert say(alice, "later", "c-later")["t"] == "ok"


def test_a_refusal_the_client_has_not_acknowledged_holds_others_back_until_it_has() -> None:
    driver = daemon()
    alice = member(driver, "alice")
    for n in range(20):
        say(alice, f"m{n}", f"c{n}")
    refused = say(alice, "refused", "c-refused")  # not acknowledged: as if lost on the way
    driver.advance(refused["retry_after"] + 12.0)
    assert say(alice, "later", "c-later")["code"] == "rate_limited"  # carries the ack
    driver.advance(9.8)
    assert say(alice, "later", "c-later")["code"] == "rate_limited"
    driver.advance(0.3)
    assert say(alice, "later", "c-later")["t"] == "ok"


def test_a_whisper_to_yourself_reaches_your_other_sessions_and_waits_in_no_mailbox() -> None:
    driver = daemon()
    here, there = member(driver, "alice"), login(driver, "alice")
    seq = here.request({"t": "whisper", "to": "ALICE", "text": "note", "cid": "n1"})
    ok = here.answer(seq)
    assert (ok["t"], ok["to"]) == ("ok", "alice")
    there.poll()
    (pm,) = there.of_type("pm")
    assert (pm["id"], pm["from"], pm["to"], pm["text"]) == (ok["id"], "alice", "alice", "note")
    assert here.of_type("pm") == []
    later = connect(driver).login("alice")
    assert "unread" not in later


def test_join_notices_are_sent_only_while_at_most_the_notice_limit_is_online() -> None:
    driver = daemon(notice_limit=2)
    alice, bob = member(driver, "alice"), member(driver, "bob")
    member(driver, "carol")  # the third account online: no notice of it
    alice.poll()
    bob.poll()
    assert [join["name"] for join in alice.of_type("join")] == ["bob"]
    assert bob.of_type("join") == []


def test_a_ping_is_answered_with_an_acknowledgement_only() -> None:
    driver = daemon()
    alice = member(driver, "alice")
    (seq,) = alice.send({"t": "ping"})
    assert alice.records[-1] == (alice.highest_pn, {"ack": seq, "echo": alice.next_pn - 1})
    assert alice.answers(seq) == []


# --- section 9: names, passwords, text --------------------------------------------------------

VALID_NAMES = ["a", "7", "x" * 32, "a.b-c_d", "Ünïcödé", "名前", "e\u0301", "ａ" * 32, "ǅungla"]
INVALID_NAMES = ["", "x" * 33, "ﬃ" * 11, "-a", "_a", ".a", "no spaces", "a!", "a🙂", "\u0301a"]


@pytest.mark.parametrize("name", VALID_NAMES)
def test_a_valid_name_is_registered_in_its_nfkc_form(name: str) -> None:
    answer = register(daemon(), name)
    assert answer == {"t": "registered", "re": 1, "name": unicodedata.normalize("NFKC", name)}


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_an_invalid_name_is_refused_invalid_name(name: str) -> None:
    answer = register(daemon(), name)
    assert (answer["t"], answer["code"]) == ("error", "invalid_name")


def test_names_are_one_account_after_nfkc_case_folding_and_nfkc() -> None:
    driver = daemon()
    assert register(driver, "Alice")["t"] == "registered"
    for lookalike in ("alice", "ALICE", "ａｌｉｃｅ", "Ａlice"):
        assert register(driver, lookalike)["code"] == "name_taken"
    assert register(driver, "Straße")["t"] == "registered"
    assert register(driver, "STRASSE")["code"] == "name_taken"


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("x" * 7, "password_too_short"),
        ("e\u0301" * 4, "password_too_short"),  # 8 code points, 4 characters after NFC
        ("x" * 8, None),
        ("x" * 256, None),
        ("x" * 257, "password_too_long"),
        ("\u0958" * 129, "password_too_long"),  # 129 code points, 258 after NFC
        ("\ufb01" * 4, "password_too_short"),  # NFC keeps the ligature: 4 characters
        ("\ufb01" * 200, None),  # 200 characters, not the 400 of its NFKC form
    ],
)
def test_passwords_are_8_to_256_characters_after_nfc(password: str, code: str | None) -> None:
    driver = daemon()
    answer = register(driver, "alice", password)
    if code is None:
        assert answer["t"] == "registered"
        assert connect(driver).login("alice", password)["t"] == "welcome"
    else:
        assert (answer["t"], answer["code"]) == ("error", code)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "text_empty"),
        ("a" * 500, None),
        ("a" * 501, "text_too_long"),
        ("é" * 250, None),
        ("é" * 250 + "a", "text_too_long"),
        ("🙂" * 125, None),
        ('"' * 250, None),
        ('"' * 250 + "a", "text_too_long"),
        ('"\\\b\t\n\f\r' * 35 + "a" * 10, None),
        ('"\\\b\t\n\f\r' * 35 + "a" * 11, "text_too_long"),
        ("\x01" * 83 + "aa", None),
        ("\x01" * 83 + "aaa", "text_too_long"),
        ("\x1f" * 83 + "aa", None),  # the last character a JSON string escapes
        ("\x1f" * 83 + "aaa", "text_too_long"),
        ("\x00\x1b\x7f", None),
        ("\x00" * 83 + "aaa", "text_too_long"),  # NUL is escaped as six bytes too
        ("\x0b" * 83 + "aaa", "text_too_long"),  # a vertical tab has no two-byte escape
        ("\x7f" * 500, None),  # DEL is not escaped: one byte
    ],
)
def test_text_is_measured_as_the_body_of_a_json_string(text: str, code: str | None) -> None:
    driver = daemon()
    alice, bob = member(driver, "alice"), member(driver, "bob")
    answer = say(alice, text, "c1")
    if code is None:
        assert answer["t"] == "ok"
        bob.poll()
        assert bob.of_type("msg")[-1]["text"] == text
    else:
        assert (answer["t"], answer["code"]) == ("error", code)


# --- section 10: error codes -----------------------------------------------------------------


def check_error(frame: Json, code: str, re: int, *, retry_after: bool = False) -> None:
    """An `error` frame as section 8.2 lays it out."""
    fields = {"t", "code", "message", "re"} | ({"retry_after"} if retry_after else set())
    assert set(frame) == fields, frame
    assert (frame["t"], frame["code"], frame["re"]) == ("error", code, re)
    assert isinstance(frame["message"], str) and frame["message"]
    if retry_after:
        assert isinstance(frame["retry_after"], int | float) and frame["retry_after"] > 0


def test_every_registration_and_login_error_code() -> None:
    driver = daemon()
    client = connect(driver)

    def ask(frame: Json) -> Json:
        return client.answer(client.request(frame))

    assert ask(register_frame("alice", rid="r1"))["t"] == "registered"
    codes = {
        "name_taken": ask(register_frame("ALICE", rid="r2")),
        "invalid_name": ask(register_frame("no spaces", rid="r3")),
        "password_too_short": ask(register_frame("bob", "short", rid="r4")),
        "password_too_long": ask(register_frame("bob", "p" * 257, rid="r5")),
    }
    # Refused registrations cost nothing: four more spend the burst of 5.
    for n, name in enumerate(("bob", "carol", "dave", "erin")):
        assert ask(register_frame(name, rid=f"r{6 + n}"))["t"] == "registered"
    codes["too_many_registrations"] = ask(register_frame("frank", rid="r10"))
    login = {"t": "login", "name": "alice", "password": "not the password"}
    codes["unknown_user"] = ask({**login, "name": "nobody"})  # a failure, as a wrong one is
    wrong = [ask(login) for _ in range(2)]
    codes["wrong_password"] = wrong[0]
    codes["throttled"] = ask(login)
    codes["ticket_invalid"] = ask({"t": "resume", "ticket": "not a ticket"})
    waits = {"too_many_registrations", "throttled"}
    for code, frame in codes.items():
        check_error(frame, code, frame["re"], retry_after=code in waits)
    assert [frame["code"] for frame in wrong] == ["wrong_password"] * 2
    assert 59 <= codes["too_many_registrations"]["retry_after"] <= 60.0
    assert codes["throttled"]["retry_after"] <= 1.0


def test_a_daemon_closed_to_registrations_refuses_each_before_its_name_is_looked_at() -> None:
    driver = daemon(registrations=False)
    client = connect(driver)
    for n, name in enumerate(("alice", "no spaces", "carol") * 4):  # past every allowance
        refused = client.answer(client.request(register_frame(name, rid=f"r{n}")))
        check_error(refused, "registrations_closed", refused["re"])


def test_failed_logins_throttle_the_account_and_the_address() -> None:
    driver = daemon()
    for name in ("alice", "bob", "carol"):
        assert register(driver, name)["t"] == "registered"
    guesser = connect(driver)
    for name in ("alice", "bob", "carol"):
        assert guesser.login(name, "not the password")["code"] == "wrong_password"
    refused = guesser.login("alice", PASSWORD)  # this address failed three times
    check_error(refused, "throttled", refused["re"], retry_after=True)
    assert connect(driver).login("alice")["t"] == "welcome"  # from another address
    other = connect(driver)
    for _ in range(3):
        other.login("bob", "not the password")
    # The account failed three times: an address that fails on it gets one guess, then
    # waits; an address that has not failed is never shut out (the owner's, say).
    third = connect(driver)
    assert third.login("bob", "not the password")["code"] == "wrong_password"
    account = third.login("bob", PASSWORD)
    check_error(account, "throttled", account["re"], retry_after=True)
    assert connect(driver).login("bob", PASSWORD)["t"] == "welcome"


BAD_FRAMES: list[tuple[str, Any, str]] = [
    ("not an object", [1, 2, 3], "bad_request"),
    ("a string", "say", "bad_request"),
    ("no t", {"text": "hi"}, "bad_request"),
    ("t not a string", {"t": 5}, "bad_request"),
    ("unknown t", {"t": "dance"}, "bad_request"),
    ("a daemon's t", {"t": "welcome", "re": 1, "name": "x"}, "bad_request"),
    ("logged in already", {"t": "login", "name": "alice", "password": PASSWORD}, "bad_request"),
    ("text of the wrong type", {"t": "say", "text": 42, "cid": "c1"}, "bad_field"),
    ("cid missing", {"t": "say", "text": "hi"}, "bad_field"),
    ("cid empty", {"t": "say", "text": "hi", "cid": ""}, "bad_field"),
    ("cid of 25 characters", {"t": "say", "text": "hi", "cid": "c" * 25}, "bad_field"),
    ("to missing", {"t": "whisper", "text": "hi", "cid": "c2"}, "bad_field"),
    ("limit 0", {"t": "history", "limit": 0}, "bad_field"),
    ("limit 101", {"t": "history", "limit": 101}, "bad_field"),
    ("before negative", {"t": "history", "before": -1}, "bad_field"),
    ("before above 2^53-1", {"t": "history", "before": 2**53}, "bad_field"),
    ("ticket of 513 characters", {"t": "resume", "ticket": "t" * 513}, "bad_field"),
    # Fields longer than section 8.1 allows are bad_field before section 9 looks at them;
    # at the length allowed, section 9's rules answer.
    (
        "to of 65 characters",
        {"t": "whisper", "to": "b" * 65, "text": "hi", "cid": "c6"},
        "bad_field",
    ),
    (
        "to of 64 characters",
        {"t": "whisper", "to": "b" * 64, "text": "hi", "cid": "c7"},
        "unknown_user",
    ),
    (
        "new password of 1025 characters",
        {"t": "change_password", "old": PASSWORD, "new": "n" * 1025},
        "bad_field",
    ),
    (
        "new password of 1024 characters",
        {"t": "change_password", "old": PASSWORD, "new": "n" * 1024},
        "password_too_long",
    ),
    ("empty text", {"t": "say", "text": "", "cid": "c3"}, "text_empty"),
    ("long text", {"t": "say", "text": "é" * 251, "cid": "c4"}, "text_too_long"),
    (
        "whisper to nobody",
        {"t": "whisper", "to": "nobody", "text": "hi", "cid": "c5"},
        "unknown_user",
    ),
]


@pytest.mark.parametrize(("case", "frame", "code"), BAD_FRAMES, ids=[c[0] for c in BAD_FRAMES])
def test_every_session_error_code(case: str, frame: Any, code: str) -> None:
    driver = daemon()
    alice = member(driver, "alice")
    (seq,) = alice.send(frame)
    assert alice.records[-1][1]["ack"] >= seq  # acknowledged: it is part of the stream
    check_error(alice.answer(seq), code, seq)
    assert say(alice, "still here", "c-next")["t"] == "ok", case


def test_a_whisper_to_a_mailbox_holding_1000_unread_is_refused_mailbox_full() -> None:
    driver = daemon(message_burst=10_000)
    alice = member(driver, "alice")
    assert register(driver, "bob")["t"] == "registered"
    for start in range(0, 1000, 10):
        frames = [
            {"t": "whisper", "to": "bob", "text": "hi", "cid": f"w{n}"}
            for n in range(start, start + 10)
        ]
        alice.send(*frames)
    alice.settle()
    assert len(alice.of_type("ok")) == 1000
    seq = alice.request({"t": "whisper", "to": "bob", "text": "one more", "cid": "w-full"})
    check_error(alice.answer(seq), "mailbox_full", seq)


def test_a_message_that_cannot_be_stored_is_refused_with_storage_failed(
    disk: DiskDriver,
) -> None:
    driver = disk
    alice, bob = member(driver, "alice"), member(driver, "bob")
    driver.writes_fail = True
    said = alice.request({"t": "say", "text": "lost?", "cid": "c1"})
    whispered = alice.request({"t": "whisper", "to": "bob", "text": "lost?", "cid": "c2"})
    check_error(alice.answer(said), "storage_failed", said)
    check_error(alice.answer(whispered), "storage_failed", whispered)
    registration = register(driver, "carol")
    check_error(registration, "storage_failed", 1)
    bob.poll()
    assert bob.of_type("msg") == [] and bob.of_type("pm") == []
    driver.writes_fail, driver.reads_fail = False, True
    history = alice.request({"t": "history"})
    check_error(alice.answer(history), "storage_failed", history)
    assert say(alice, "lost?", "c1")["t"] == "ok"  # the same message, sent again, is taken


# --- section 11: bad input ----------------------------------------------------------------------


def unknown_index_record(length: int) -> Callable[[Client], bytes]:
    return lambda client: sized(data_header(0x7FFF0001, 1), length)


BAD_DATAGRAMS: list[tuple[str, Callable[[Client], bytes]]] = [
    ("empty", lambda client: b""),
    ("over 1200 bytes", lambda client: client.seal(b"{}")[:13] + bytes(1188)),
    ("an unknown type", lambda client: sized(b"\x07\x02", 1200)),
    ("a version 1 datagram", lambda client: sized(b'{"v":1,"t":"login"}', 400)),
    ("KEY", lambda client: bytes((KEY, VERSION)) + bytes(32)),
    ("RESPONSE", lambda client: sized(bytes((RESPONSE, VERSION)), RESPONSE_BYTES)),
    ("RETRY", lambda client: sized(bytes((RETRY, VERSION)) + bytes(4) + b"\x10", RETRY_BYTES)),
    ("REFUSED", lambda client: bytes((REFUSED, VERSION)) + b'{"code":"busy","message":"x"}'),
    (
        "a REFUSED of another version",
        lambda client: bytes((REFUSED, VERSION - 1)) + b'{"code":"busy","message":"x"}',
    ),
    (
        "a REFUSED of another version, 1200 bytes",
        lambda client: sized(
            bytes((REFUSED, VERSION + 1)) + b'{"code":"busy","message":"x"}', 1200
        ),
    ),
    ("a KEY of another version, 1200 bytes", lambda client: sized(bytes((KEY, VERSION - 1)), 1200)),
    ("a RETRY of another version, 1200 bytes", lambda client: sized(bytes((RETRY, 0xFF)), 1200)),
    ("RESET", lambda client: bytes((RESET,)) + be32(client.daemon_index) + bytes(16)),
    ("an INIT with a 33-byte cookie", lambda client: sized(b"\x03\x03\x00\x00\x00\x09\x21", 1200)),
    ("a DATA of 28 bytes", unknown_index_record(28)),
    ("a forged DATA", lambda client: sized(data_header(client.daemon_index, 9), 60)),
    ("a truncated DATA", lambda client: client.seal(b"{}")[:-1]),
    ("a DATA under packet number 2^64-1", lambda client: client.seal(b"{}", pn=2**64 - 1)),
]


@pytest.mark.parametrize(("case", "build"), BAD_DATAGRAMS, ids=[c[0] for c in BAD_DATAGRAMS])
def test_each_bad_datagram_is_dropped_and_counted(
    case: str, build: Callable[[Client], bytes]
) -> None:
    driver = daemon()
    alice = member(driver, "alice")
    counted = dropped(driver)
    assert driver.receive(build(alice), alice.address) == [], case
    assert dropped(driver) == counted + 1
    assert say(alice, "still here", "c1")["t"] == "ok"


def test_a_record_for_an_unknown_index_gets_a_reset_smaller_than_itself() -> None:
    driver = daemon()
    record = unknown_index_record(29)(connect(driver))
    (reset,) = driver.receive(record, new_address())
    assert reset[:5] == bytes((RESET,)) + be32(0x7FFF0001)
    assert len(reset) == RESET_BYTES < len(record)


BAD_PAYLOADS: list[tuple[str, bytes]] = [
    ("not JSON", b"say hello"),
    ("a JSON array", b'[[2,{"t":"say","text":"hi","cid":"c1"}]]'),
    ("trailing bytes", b'{"frames":[[2,{"t":"say","text":"hi","cid":"c1"}]]} {}'),
    ("a lone surrogate", b'{"frames":[[2,{"t":"say","text":"\\ud800","cid":"c1"}]]}'),
    ("ack negative", b'{"ack":-1,"frames":[[2,{"t":"say","text":"hi","cid":"c1"}]]}'),
    (
        "ack above 2^53-1",
        b'{"ack":9007199254740992,"frames":[[2,{"t":"say","text":"h","cid":"c"}]]}',
    ),
    ("echo a string", b'{"echo":"1","frames":[[2,{"t":"say","text":"hi","cid":"c1"}]]}'),
    ("5 sack ranges", b'{"sack":[[1,1],[3,3],[5,5],[7,7],[9,9]],"frames":[[2,{"t":"who"}]]}'),
    ("a sack range of one number", b'{"sack":[[1]],"frames":[[2,{"t":"who"}]]}'),
    ("a frame without its number", b'{"frames":[{"t":"say","text":"hi","cid":"c1"}]}'),
    ("a negative sequence number", b'{"frames":[[-2,{"t":"say","text":"hi","cid":"c1"}]]}'),
    ("frames an object", b'{"frames":{"2":{"t":"say","text":"hi","cid":"c1"}}}'),
]


@pytest.mark.parametrize(("case", "payload"), BAD_PAYLOADS, ids=[c[0] for c in BAD_PAYLOADS])
def test_an_authentic_payload_that_is_not_a_valid_object_is_dropped(
    case: str, payload: bytes
) -> None:
    driver = daemon()
    alice = member(driver, "alice")
    counted = dropped(driver)
    assert alice.deliver(alice.seal(payload)) == [], case
    assert dropped(driver) == counted + 1
    assert not [op for op in driver.stored if isinstance(op, Message)]
    (seq,) = alice.send({"t": "say", "text": "hi", "cid": "c1"})
    assert seq == 2 and alice.answer(seq)["t"] == "ok"


# --- section 12: a whole conversation ---------------------------------------------------------


def test_the_whole_conversation_of_section_12() -> None:
    driver = daemon()
    assert register(driver, "alice", "correct horse")["t"] == "registered"
    bob = member(driver, "bob")
    earlier = say(bob, "earlier", "b7")
    address = new_address()
    (key,) = driver.receive(key_request(), address)
    first = hello(read_key(key))
    (response,) = driver.receive(init_datagram(first), address)
    client = Client(driver, address, first, response)
    login = {"t": "login", "name": "alice", "password": "correct horse"}
    client.deliver(client.seal({"ack": 0, "echo": 0, "frames": [[1, login]]}))
    (_pn, acknowledgement), (_pn2, welcome) = client.records
    assert acknowledgement == {"ack": 1, "echo": 1}
    ticket = welcome["frames"][0][1]["ticket"]
    clock = round(driver.wall, 3)  # the daemon's clock as it welcomed alice
    assert welcome == {
        "ack": 1,
        "echo": 1,
        "frames": [
            [
                1,
                {
                    "t": "welcome",
                    "re": 1,
                    "name": "alice",
                    "ticket": ticket,
                    "time": clock,
                    "muted": False,
                },
            ],
            [
                2,
                {
                    "t": "msg",
                    "id": earlier["id"],
                    "ts": earlier["ts"],
                    "from": "bob",
                    "text": "earlier",
                    "history": True,
                },
            ],
            [3, {"t": "ready", "count": 1, "upto": 1}],
        ],
    }
    hi = {"t": "say", "text": "hi", "cid": "c1"}
    client.deliver(client.seal({"ack": 3, "echo": 2, "frames": [[2, hi]]}))
    (_, said_ack), (_, said) = client.records[2:]
    assert said_ack == {"ack": 2, "echo": 2}
    ((seq, ok),) = said["frames"]
    assert seq == 4 and set(ok) == {"t", "re", "id", "ts"} and ok["re"] == 2
    client.deliver(client.seal({"ack": 4, "echo": 4, "frames": [[3, {"t": "logout"}]]}))
    (_, logged_out) = client.records[-1]
    assert logged_out == {"ack": 3, "echo": 3, "frames": [[5, {"t": "ok", "re": 3}]]}
    assert [pn for pn, _payload in client.records] == [1, 2, 3, 4, 5]


# --- the defaults section 10 gives -----------------------------------------------------------

PROTOCOL_DOC = Path(__file__).parent.parent / "docs" / "protocol.md"


def test_the_limits_section_10_gives_are_the_daemons_defaults() -> None:
    # A client in another language is written to the figures of the error codes' table:
    # each is the default the daemon is started with.
    text = PROTOCOL_DOC.read_text(encoding="utf-8")
    table = text.split("## 10. Error codes", 1)[1].split("\n## ", 1)[0]
    default = ServerConfig()
    said: list[tuple[str, str, tuple[float, ...]]] = [
        (
            "| `too_many_registrations` | `register` |",
            r"a burst of (\d+), then (\d+) a minute, by default\), or all addresses together "
            r"\((\d+) a minute\)",
            (default.register_burst, default.register_rate * 60, default.register_rate_total * 60),
        ),
        (
            "| `busy` | `register`, `login`, `change_password` |",
            r"the address has (\d+) password checks in progress \(not `register`\), or the "
            r"daemon (\d+) waiting",
            (default.checks_per_address, default.hash_queue_limit),
        ),
        (
            "| `rate_limited` |",
            r"messages: a burst of (\d+), then (\d+) per second, by default; questions: (\d+), "
            r"then (\d+) per second, and (\d+) reads of history at once",
            (
                default.message_burst,
                default.message_rate,
                default.question_burst,
                default.question_rate,
                default.reads_per_session,
            ),
        ),
        ("| `mailbox_full` |", r"has (\d+) unread", (default.mailbox_limit,)),
        (
            "| `too_many_sessions` |",
            r"too many channels \((\d+) by default\), or the account too many sessions \((\d+)\)",
            (default.max_sessions_per_address, default.max_sessions_per_account),
        ),
        (
            "| `busy` | `REFUSED` |",
            r"as it takes \(([\d,]+) by default\), or this IP address started too many "
            r"handshakes \((\d+) at once, then (\d+) a second\)",
            (default.max_connections, default.handshake_burst, default.handshake_rate),
        ),
    ]
    for row_start, pattern, defaults in said:
        (row,) = [line for line in table.splitlines() if line.startswith(row_start)]
        found = re.search(pattern, row)
        assert found, (row_start, pattern)
        numbers = tuple(float(number.replace(",", "")) for number in found.groups())
        assert numbers == pytest.approx(defaults), row_start
