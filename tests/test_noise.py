"""trio_chat.noise: the published Noise NK vectors, tampering, misuse, and secrets in reprs."""

from __future__ import annotations

import ast
import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_chat import noise
from trio_chat.noise import (
    DHLEN,
    HASHLEN,
    MAX_MESSAGE_LEN,
    MAX_NONCE,
    PROTOCOL_NAME,
    TAGLEN,
    CipherState,
    HandshakeState,
    NoiseError,
    RecordCipher,
    SymmetricState,
    fingerprint,
    generate_keypair,
    public_key,
)
from trio_chat.testing.links import channel_pair

VECTORS_PATH = Path(__file__).parent / "vectors" / "noise_nk_25519_aesgcm_blake2s.json"


class VectorMessage(msgspec.Struct, frozen=True):
    payload: str
    ciphertext: str


class Vector(msgspec.Struct, frozen=True):
    source: str
    protocol_name: str
    init_prologue: str
    init_ephemeral: str
    init_remote_static: str
    resp_prologue: str
    resp_static: str
    resp_ephemeral: str
    messages: list[VectorMessage]
    handshake_hash: str | None = None
    init_psks: list[str] = msgspec.field(default_factory=list)
    resp_psks: list[str] = msgspec.field(default_factory=list)


class VectorSource(msgspec.Struct, frozen=True):
    repository: str
    path: str
    commit: str
    blob: str
    entries: int


class VectorFile(msgspec.Struct, frozen=True):
    protocol_name: str
    note: str
    sources: list[VectorSource]
    vectors: list[Vector]


VECTOR_FILE = msgspec.json.decode(VECTORS_PATH.read_bytes(), type=VectorFile)

# X25519 public keys of small order, canonical encodings (RFC 7748, section 5 and 7):
# DH with any of them gives an all-zero output.
LOW_ORDER_POINTS = [
    bytes.fromhex(h)
    for h in (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    )
]


def _vector_handshakes(vector: Vector) -> tuple[HandshakeState, HandshakeState]:
    initiator = HandshakeState.initiator(
        bytes.fromhex(vector.init_remote_static),
        bytes.fromhex(vector.init_prologue),
        ephemeral_private=bytes.fromhex(vector.init_ephemeral),
    )
    responder = HandshakeState.responder(
        bytes.fromhex(vector.resp_static),
        bytes.fromhex(vector.resp_prologue),
        ephemeral_private=bytes.fromhex(vector.resp_ephemeral),
    )
    return initiator, responder


def _run_vector_handshake(vector: Vector) -> tuple[HandshakeState, HandshakeState]:
    """Both handshake messages of a vector, checked byte for byte; returns both sides."""
    initiator, responder = _vector_handshakes(vector)
    first, second = vector.messages[0], vector.messages[1]

    message1 = initiator.write_message(bytes.fromhex(first.payload))
    assert message1.hex() == first.ciphertext
    assert responder.read_message(message1) == bytes.fromhex(first.payload)
    assert not initiator.complete
    assert not responder.complete

    message2 = responder.write_message(bytes.fromhex(second.payload))
    assert message2.hex() == second.ciphertext
    assert initiator.read_message(message2) == bytes.fromhex(second.payload)
    assert initiator.complete
    assert responder.complete
    return initiator, responder


def _handshake(
    prologue: bytes = b"", payload1: bytes = b"", payload2: bytes = b""
) -> tuple[HandshakeState, HandshakeState, bytes, bytes]:
    """A fresh NK handshake with random keys: (initiator, responder, message 1, message 2)."""
    static_private, static_public = generate_keypair()
    initiator = HandshakeState.initiator(static_public, prologue)
    responder = HandshakeState.responder(static_private, prologue)
    message1 = initiator.write_message(payload1)
    assert responder.read_message(message1) == payload1
    message2 = responder.write_message(payload2)
    assert initiator.read_message(message2) == payload2
    return initiator, responder, message1, message2


def _flip(data: bytes, bit: int) -> bytes:
    flipped = bytearray(data)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


# --- the published vectors ------------------------------------------------------------------


def test_vector_file_names_its_sources() -> None:
    assert VECTOR_FILE.protocol_name == PROTOCOL_NAME.decode()
    assert {source.repository for source in VECTOR_FILE.sources} == {
        "https://github.com/centromere/cacophony",
        "https://github.com/mcginty/snow",
    }
    for source in VECTOR_FILE.sources:
        assert len(source.commit) == 40
        int(source.commit, 16)
        assert source.path.endswith(".txt")
    assert sum(source.entries for source in VECTOR_FILE.sources) == len(VECTOR_FILE.vectors)
    assert {vector.source for vector in VECTOR_FILE.vectors} == {"cacophony", "snow"}
    for vector in VECTOR_FILE.vectors:
        assert vector.protocol_name == PROTOCOL_NAME.decode()
        assert vector.init_psks == [] and vector.resp_psks == []
        assert vector.init_prologue == vector.resp_prologue
        assert len(vector.messages) > 2
        # The initiator's pre-knowledge is the responder's static public key.
        assert public_key(bytes.fromhex(vector.resp_static)).hex() == vector.init_remote_static


@pytest.mark.parametrize("vector", VECTOR_FILE.vectors, ids=lambda v: v.source)
def test_vector_replayed_with_cipher_states(vector: Vector) -> None:
    initiator, responder = _run_vector_handshake(vector)
    assert initiator.handshake_hash == responder.handshake_hash
    assert len(initiator.handshake_hash) == HASHLEN
    if vector.handshake_hash is not None:
        assert initiator.handshake_hash.hex() == vector.handshake_hash

    i_send, i_receive = initiator.split()
    r_receive, r_send = responder.split()
    # Transport messages alternate, initiator first, as in the vectors' handshake.
    for index, message in enumerate(vector.messages[2:]):
        sender, receiver = (i_send, r_receive) if index % 2 == 0 else (r_send, i_receive)
        payload = bytes.fromhex(message.payload)
        ciphertext = sender.encrypt_with_ad(b"", payload)
        assert ciphertext.hex() == message.ciphertext
        assert receiver.decrypt_with_ad(b"", ciphertext) == payload

    transport = len(vector.messages) - 2
    assert i_send.n == r_receive.n == (transport + 1) // 2
    assert r_send.n == i_receive.n == transport // 2
    # The handshake hash outlives Split; the handshake is over.
    if vector.handshake_hash is not None:
        assert responder.handshake_hash.hex() == vector.handshake_hash
    with pytest.raises(NoiseError):
        initiator.split()


@pytest.mark.parametrize("vector", VECTOR_FILE.vectors, ids=lambda v: v.source)
def test_vector_replayed_with_record_ciphers(vector: Vector) -> None:
    initiator, responder = _run_vector_handshake(vector)
    i_send_state, i_receive_state = initiator.split()
    r_receive_state, r_send_state = responder.split()
    i_send = RecordCipher.from_cipher_state(i_send_state)
    i_receive = RecordCipher.from_cipher_state(i_receive_state)
    r_receive = RecordCipher.from_cipher_state(r_receive_state)
    r_send = RecordCipher.from_cipher_state(r_send_state)

    records: list[tuple[RecordCipher, int, bytes, bytes]] = []
    for index, message in enumerate(vector.messages[2:]):
        sender, receiver = (i_send, r_receive) if index % 2 == 0 else (r_send, i_receive)
        packet_number = index // 2
        payload = bytes.fromhex(message.payload)
        ciphertext = sender.seal(packet_number, b"", payload)
        assert ciphertext.hex() == message.ciphertext
        records.append((receiver, packet_number, ciphertext, payload))
    # The nonce travels with the record: any order of arrival opens.
    for receiver, packet_number, ciphertext, payload in reversed(records):
        assert receiver.open(packet_number, b"", ciphertext) == payload


# --- building blocks, against their definitions ---------------------------------------------


def _rfc2104_hmac_blake2s(key: bytes, data: bytes) -> bytes:
    """HMAC written out from RFC 2104 with B = BLOCKLEN = 64, L = HASHLEN = 32."""
    block = 64
    if len(key) > block:
        key = hashlib.blake2s(key).digest()
    key = key.ljust(block, b"\x00")
    inner = hashlib.blake2s(bytes(b ^ 0x36 for b in key) + data).digest()
    return hashlib.blake2s(bytes(b ^ 0x5C for b in key) + inner).digest()


@given(st.binary(min_size=32, max_size=32), st.sampled_from([b"", bytes(32), b"\x07" * 32]))
def test_hkdf_is_the_one_of_section_4_3(chaining_key: bytes, ikm: bytes) -> None:
    temp_key = _rfc2104_hmac_blake2s(chaining_key, ikm)
    output1 = _rfc2104_hmac_blake2s(temp_key, b"\x01")
    output2 = _rfc2104_hmac_blake2s(temp_key, output1 + b"\x02")
    assert noise._hkdf(chaining_key, ikm) == (output1, output2)


def test_initialize_symmetric_pads_short_names_and_hashes_long_ones() -> None:
    short = b"Noise_NN_25519_AESGCM_SHA256"
    assert SymmetricState(short).handshake_hash == short + bytes(HASHLEN - len(short))
    exact = b"N" * HASHLEN
    assert SymmetricState(exact).handshake_hash == exact
    long = b"Noise_NK_25519_ChaChaPoly_BLAKE2s"
    assert len(long) > HASHLEN
    assert SymmetricState(long).handshake_hash == hashlib.blake2s(long).digest()
    # trio-chat's own name is short enough to be padded.
    assert len(PROTOCOL_NAME) <= HASHLEN
    assert SymmetricState(PROTOCOL_NAME).handshake_hash == PROTOCOL_NAME.ljust(HASHLEN, b"\0")


@pytest.mark.parametrize("n", [0, 1, 255, 256, 2**32 + 7, 2**40 + 5, MAX_NONCE - 1])
def test_nonce_is_four_zero_bytes_then_big_endian_counter(n: int) -> None:
    key = bytes(range(32))
    expected = AESGCM(key).encrypt(bytes(4) + n.to_bytes(8, "big"), b"data", b"ad")
    cipher = CipherState(key)
    cipher.set_nonce(n)
    assert cipher.encrypt_with_ad(b"ad", b"data") == expected
    assert cipher.n == n + 1
    assert RecordCipher.from_cipher_state(CipherState(key)).seal(n, b"ad", b"data") == expected


def test_keys_and_fingerprints() -> None:
    private, public = generate_keypair()
    assert len(private) == len(public) == DHLEN
    assert public_key(private) == public
    assert generate_keypair() != (private, public)

    known = bytes.fromhex("31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62")
    digest = hashlib.sha256(known).digest()
    assert fingerprint(known) == "SHA256:" + base64.b64encode(digest).decode()[:-1]
    assert fingerprint(known) == "SHA256:nFZD8f0aHK0HZ7vEJXWyCA/5AnyYkVYZi5jseKuVYDg"
    assert "=" not in fingerprint(public)
    assert fingerprint(public) != fingerprint(known)
    with pytest.raises(NoiseError):
        fingerprint(known[:31])
    with pytest.raises(NoiseError):
        public_key(private + b"\x00")


def test_message_sizes() -> None:
    _, _, message1, message2 = _handshake(b"p", b"hello", b"welcome!")
    assert len(message1) == DHLEN + len(b"hello") + TAGLEN
    assert len(message2) == DHLEN + len(b"welcome!") + TAGLEN
    _, _, empty1, empty2 = _handshake()
    assert len(empty1) == len(empty2) == DHLEN + TAGLEN


# --- tampering --------------------------------------------------------------------------------


def test_every_flipped_bit_of_message_1_is_refused() -> None:
    static_private, static_public = generate_keypair()
    message1 = HandshakeState.initiator(static_public, b"prologue").write_message(b"login")
    for bit in range(len(message1) * 8):
        responder = HandshakeState.responder(static_private, b"prologue")
        with pytest.raises(NoiseError):
            responder.read_message(_flip(message1, bit))
    # X25519 ignores the top bit of a public key, but h covers the bytes as sent.
    top_bit = DHLEN * 8 - 1
    with pytest.raises(NoiseError):
        HandshakeState.responder(static_private, b"prologue").read_message(_flip(message1, top_bit))
    assert HandshakeState.responder(static_private, b"prologue").read_message(message1) == b"login"


def test_every_flipped_bit_of_message_2_is_refused() -> None:
    static_private, static_public = generate_keypair()
    ephemeral, _ = generate_keypair()

    def initiator() -> tuple[HandshakeState, bytes]:
        """The same initiator every time: its ephemeral is fixed, so is its message 1."""
        state = HandshakeState.initiator(static_public, ephemeral_private=ephemeral)
        return state, state.write_message(b"login")

    _, message1 = initiator()
    responder = HandshakeState.responder(static_private)
    responder.read_message(message1)
    message2 = responder.write_message(b"ok")
    for bit in range(len(message2) * 8):
        state, _ = initiator()
        with pytest.raises(NoiseError):
            state.read_message(_flip(message2, bit))
        assert not state.complete
    state, _ = initiator()
    assert state.read_message(message2) == b"ok"
    assert state.handshake_hash == responder.handshake_hash


@pytest.mark.parametrize("which", ["message 1", "message 2"])
def test_truncated_or_extended_handshake_messages_are_refused(which: str) -> None:
    static_private, static_public = generate_keypair()
    ephemeral, _ = generate_keypair()

    def initiator() -> tuple[HandshakeState, bytes]:
        state = HandshakeState.initiator(static_public, ephemeral_private=ephemeral)
        return state, state.write_message(b"login")

    _, message1 = initiator()
    responder = HandshakeState.responder(static_private)
    responder.read_message(message1)
    message2 = responder.write_message(b"ok")

    def read(message: bytes) -> bytes:
        if which == "message 1":
            return HandshakeState.responder(static_private).read_message(message)
        state, _ = initiator()
        return state.read_message(message)

    genuine = message1 if which == "message 1" else message2
    for length in range(len(genuine)):
        with pytest.raises(NoiseError):
            read(genuine[:length])
    for extra in (b"\x00", b"\xff" * 16, bytes(MAX_MESSAGE_LEN - len(genuine) + 1)):
        with pytest.raises(NoiseError):
            read(genuine + extra)
    assert read(genuine) == (b"login" if which == "message 1" else b"ok")


def test_a_handshake_message_too_short_for_a_tag_costs_no_diffie_hellman_and_ends_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A message shorter than an ephemeral key and a tag is refused on its length alone,
    before any X25519 is spent on it, and the handshake is over, as after any error."""
    static_private, static_public = generate_keypair()
    message1 = HandshakeState.initiator(static_public).write_message(b"")
    exchanges = 0
    real_dh = noise._dh

    def counted_dh(private: Any, public: bytes) -> bytes:
        nonlocal exchanges
        exchanges += 1
        return real_dh(private, public)

    monkeypatch.setattr(noise, "_dh", counted_dh)
    for length in range(DHLEN, DHLEN + TAGLEN):
        responder = HandshakeState.responder(static_private)
        with pytest.raises(NoiseError, match="length out of range"):
            responder.read_message(message1[:length])
        with pytest.raises(NoiseError, match="has failed"):
            responder.read_message(message1)
    assert exchanges == 0
    assert HandshakeState.responder(static_private).read_message(message1) == b""
    assert exchanges == 1


def test_transport_tampering_is_refused_and_leaves_the_counter() -> None:
    initiator, responder, _, _ = _handshake()
    send, _ = initiator.split()
    receive, _ = responder.split()
    ciphertext = send.encrypt_with_ad(b"", b"a chat line")
    for bit in range(len(ciphertext) * 8):
        with pytest.raises(NoiseError):
            receive.decrypt_with_ad(b"", _flip(ciphertext, bit))
    for bad in (
        ciphertext[:-1],
        ciphertext[:TAGLEN],
        ciphertext[: TAGLEN - 1],
        b"",
        ciphertext + b"\x00",
    ):
        with pytest.raises(NoiseError):
            receive.decrypt_with_ad(b"", bad)
    with pytest.raises(NoiseError):
        receive.decrypt_with_ad(b"other ad", ciphertext)
    assert receive.n == 0
    assert receive.decrypt_with_ad(b"", ciphertext) == b"a chat line"
    assert receive.n == 1
    # The same ciphertext again is under the next nonce: refused.
    with pytest.raises(NoiseError):
        receive.decrypt_with_ad(b"", ciphertext)


def test_record_tampering_is_refused() -> None:
    initiator, responder, _, _ = _handshake()
    i_send, i_receive = (RecordCipher.from_cipher_state(c) for c in initiator.split())
    r_receive, r_send = (RecordCipher.from_cipher_state(c) for c in responder.split())
    header = b"\x01\x02header"
    record = i_send.seal(41, header, b"x" * 400)
    for bit in range(len(record) * 8):
        with pytest.raises(NoiseError):
            r_receive.open(41, header, _flip(record, bit))
    for bit in range(len(header) * 8):
        with pytest.raises(NoiseError):
            r_receive.open(41, _flip(header, bit), record)
    for bad in (record[:-1], record[:1], b"", record + b"\x00"):
        with pytest.raises(NoiseError):
            r_receive.open(41, header, bad)
    for wrong_number in (0, 40, 42, 41 + 2**32, MAX_NONCE - 1):
        with pytest.raises(NoiseError):
            r_receive.open(wrong_number, header, record)
    # Each direction has its own key: a record does not open the other way.
    with pytest.raises(NoiseError):
        i_receive.open(41, header, record)
    assert r_receive.open(41, header, record) == b"x" * 400
    assert i_receive.open(3, b"", r_send.seal(3, b"", b"back")) == b"back"


def test_idle_record_ciphers_keep_only_their_keys_and_a_forgotten_one_keeps_nothing() -> None:
    ciphers = []
    for _ in range(noise.RECENT_KEYS + 10):
        initiator, _responder, _, _ = _handshake()
        send, _receive = (RecordCipher.from_cipher_state(c) for c in initiator.split())
        send.seal(0, b"", b"hello")
        ciphers.append(send)
        # The objects that do the work are kept for the keys used lately, and no more.
        assert 0 < len(noise._recent) <= noise.RECENT_KEYS
    assert all(not isinstance(v, AESGCM) for c in ciphers for v in _slots(c))
    # A cipher used again after its object was let go works as before.
    first = ciphers[0]
    sealed = first.seal(1, b"ad", b"again")
    assert AESGCM(first._key).decrypt(b"\0" * 4 + (1).to_bytes(8, "big"), sealed, b"ad")
    first.forget()
    assert first._key not in noise._recent


def test_a_forgotten_channel_keeps_neither_directions_key() -> None:
    noise._recent.clear()  # a cache, emptied when full: room for this channel's two keys
    client, server = channel_pair()
    client.open_untrusted(server.seal(1, b"to the client"))
    server.open_untrusted(client.seal(1, b"to the daemon"))
    keys = [server._send._key, server._receive._key]
    assert all(key in noise._recent for key in keys)
    server.forget()
    assert not any(key in noise._recent for key in keys)


def test_a_completed_handshake_keeps_no_private_key() -> None:
    """Once both messages are processed the handshake's key pairs are let go: a
    handshake object kept around holds nothing that would decrypt the session."""
    initiator, responder, _, _ = _handshake()
    for state in (initiator, responder):
        assert state.complete
        assert not any(isinstance(value, X25519PrivateKey) for value in _slots(state))


def _slots(obj: Any) -> list[object]:
    return [getattr(obj, name) for name in type(obj).__slots__]


def test_wrong_responder_static_key_fails_message_1() -> None:
    static_private, _ = generate_keypair()
    _, other_public = generate_keypair()
    initiator = HandshakeState.initiator(other_public)
    message1 = initiator.write_message(b"login")
    responder = HandshakeState.responder(static_private)
    with pytest.raises(NoiseError):
        responder.read_message(message1)
    # A failed handshake is over ("5. Processing rules").
    with pytest.raises(NoiseError):
        responder.write_message(b"")
    with pytest.raises(NoiseError, match="has failed"):
        responder.read_message(message1)
    assert not responder.complete
    assert repr(responder) == "<HandshakeState NK responder failed>"


def test_mismatched_prologue_fails_message_1() -> None:
    static_private, static_public = generate_keypair()
    message1 = HandshakeState.initiator(static_public, b"trio-chat 1").write_message(b"")
    with pytest.raises(NoiseError):
        HandshakeState.responder(static_private, b"trio-chat 2").read_message(message1)


def test_replayed_message_1_gives_a_fresh_responder_different_keys() -> None:
    static_private, static_public = generate_keypair()
    initiator = HandshakeState.initiator(static_public)
    message1 = initiator.write_message(b"login")
    # NK's first message carries no freshness: a replay is accepted...
    first = HandshakeState.responder(static_private)
    replayed = HandshakeState.responder(static_private)
    assert first.read_message(message1) == replayed.read_message(message1) == b"login"
    first_message2 = first.write_message(b"")
    replayed_message2 = replayed.write_message(b"")
    # ...but the responder's new ephemeral gives every session its own keys.
    assert first_message2[:DHLEN] != replayed_message2[:DHLEN]
    assert first.handshake_hash != replayed.handshake_hash
    _, first_send = first.split()
    _, replayed_send = replayed.split()
    first_record = first_send.encrypt_with_ad(b"", bytes(64))
    assert first_record != replayed_send.encrypt_with_ad(b"", bytes(64))

    # The initiator completes with one responder only; the replay's keys are useless to it.
    assert initiator.read_message(first_message2) == b""
    assert initiator.handshake_hash == first.handshake_hash
    _, i_receive = initiator.split()
    replayed_send.set_nonce(0)
    with pytest.raises(NoiseError):
        i_receive.decrypt_with_ad(b"", replayed_send.encrypt_with_ad(b"", b"hi"))
    assert i_receive.n == 0
    with pytest.raises(NoiseError):
        initiator.read_message(replayed_message2)


def test_nonce_exhaustion_is_refused() -> None:
    initiator, responder, _, _ = _handshake()
    send, _ = initiator.split()
    receive, _ = responder.split()
    send.set_nonce(MAX_NONCE - 1)
    receive.set_nonce(MAX_NONCE - 1)
    last = send.encrypt_with_ad(b"", b"last")
    assert send.n == MAX_NONCE
    with pytest.raises(NoiseError, match="exhausted"):
        send.encrypt_with_ad(b"", b"one more")
    assert send.n == MAX_NONCE
    assert receive.decrypt_with_ad(b"", last) == b"last"
    with pytest.raises(NoiseError, match="exhausted"):
        receive.decrypt_with_ad(b"", last)
    for out_of_range in (-1, MAX_NONCE + 1, 2**64 + 5):
        with pytest.raises(NoiseError):
            send.set_nonce(out_of_range)
    # SetNonce may be given the reserved value itself; the cipher then refuses to use it.
    fresh = CipherState(bytes(32))
    fresh.set_nonce(MAX_NONCE)
    assert fresh.n == MAX_NONCE
    with pytest.raises(NoiseError, match="exhausted"):
        fresh.encrypt_with_ad(b"", b"x")

    record = RecordCipher.from_cipher_state(CipherState(bytes(32)))
    last_usable = 2**64 - 2  # "5.1. The CipherState object", not this module's constant
    assert record.open(last_usable, b"", record.seal(last_usable, b"", b"x")) == b"x"
    for out_of_range in (MAX_NONCE, MAX_NONCE + 1, -1):
        with pytest.raises(NoiseError):
            record.seal(out_of_range, b"", b"x")
        with pytest.raises(NoiseError):
            record.open(out_of_range, b"", bytes(17))


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p[:4].hex())
def test_low_order_public_keys_are_refused(point: bytes) -> None:
    static_private, static_public = generate_keypair()
    # As the responder's static key known to the initiator.
    initiator = HandshakeState.initiator(point)
    with pytest.raises(NoiseError, match="invalid public key"):
        initiator.write_message(b"")
    with pytest.raises(NoiseError, match="has failed"):  # the error ended the handshake
        initiator.write_message(b"")
    # As the initiator's ephemeral in message 1.
    with pytest.raises(NoiseError, match="invalid public key"):
        HandshakeState.responder(static_private).read_message(point + bytes(TAGLEN))
    # As the responder's ephemeral in message 2.
    initiator = HandshakeState.initiator(static_public)
    initiator.write_message(b"")
    with pytest.raises(NoiseError, match="invalid public key"):
        initiator.read_message(point + bytes(TAGLEN))


def test_the_module_is_sans_io() -> None:
    """Only hashing, HMAC and cryptography's primitives: no trio, sockets or clock."""
    tree = ast.parse(Path(noise.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            imported.add(node.module)
    assert imported == {
        "__future__",
        "base64",
        "functools",
        "hashlib",
        "hmac",
        "struct",
        "typing",
        "cryptography.exceptions",
        "cryptography.hazmat.primitives.asymmetric.x25519",
        "cryptography.hazmat.primitives.ciphers.aead",
    }


# --- misuse -----------------------------------------------------------------------------------


def test_calls_out_of_turn_are_refused() -> None:
    static_private, static_public = generate_keypair()
    initiator = HandshakeState.initiator(static_public)
    responder = HandshakeState.responder(static_private)
    assert initiator.is_initiator and not responder.is_initiator
    with pytest.raises(NoiseError):
        responder.write_message(b"")
    with pytest.raises(NoiseError):
        initiator.read_message(bytes(DHLEN + TAGLEN))
    for state in (initiator, responder):
        with pytest.raises(NoiseError):
            _ = state.handshake_hash
        with pytest.raises(NoiseError):
            state.split()

    message1 = initiator.write_message(b"")
    with pytest.raises(NoiseError):
        initiator.write_message(b"")
    responder.read_message(message1)
    with pytest.raises(NoiseError):
        responder.read_message(message1)
    message2 = responder.write_message(b"")
    initiator.read_message(message2)
    for state in (initiator, responder):
        with pytest.raises(NoiseError):
            state.write_message(b"")
        with pytest.raises(NoiseError):
            state.read_message(message2)
        state.split()
        with pytest.raises(NoiseError):
            state.split()
        assert len(state.handshake_hash) == HASHLEN


def test_sizes_beyond_noise_limits_are_refused() -> None:
    static_private, static_public = generate_keypair()
    largest = MAX_MESSAGE_LEN - DHLEN - TAGLEN
    initiator = HandshakeState.initiator(static_public)
    with pytest.raises(NoiseError):
        initiator.write_message(bytes(largest + 1))
    message1 = initiator.write_message(bytes(largest))
    assert len(message1) == MAX_MESSAGE_LEN
    assert HandshakeState.responder(static_private).read_message(message1) == bytes(largest)

    cipher = CipherState(bytes(32))
    with pytest.raises(NoiseError):
        cipher.encrypt_with_ad(b"", bytes(MAX_MESSAGE_LEN - TAGLEN + 1))
    assert cipher.n == 0
    assert len(cipher.encrypt_with_ad(b"", bytes(MAX_MESSAGE_LEN - TAGLEN))) == MAX_MESSAGE_LEN
    with pytest.raises(NoiseError):
        RecordCipher.from_cipher_state(CipherState(bytes(32))).seal(0, b"", bytes(MAX_MESSAGE_LEN))


def test_the_largest_noise_message_opens_and_a_longer_one_never_does() -> None:
    """65535 bytes is a Noise message's limit on the reading side too: the largest one
    opens, and one a byte longer is refused though its tag verifies (AES-GCM itself would
    take it)."""
    key = os.urandom(32)
    largest = bytes(65535 - TAGLEN)  # "3. Message format", not this module's constant
    sender, receiver = CipherState(key), CipherState(key)
    assert receiver.decrypt_with_ad(b"ad", sender.encrypt_with_ad(b"ad", largest)) == largest
    record = RecordCipher(key)
    assert record.open(7, b"ad", record.seal(7, b"ad", largest)) == largest
    nonce = b"\0" * 4 + (7).to_bytes(8, "big")
    too_long = AESGCM(key).encrypt(nonce, largest + b"\0", b"ad")
    assert len(too_long) == 65536
    with pytest.raises(NoiseError, match="length out of range"):
        record.open(7, b"ad", too_long)
    receiver.set_nonce(7)
    with pytest.raises(NoiseError, match="length out of range"):
        receiver.decrypt_with_ad(b"ad", too_long)
    assert receiver.n == 7


def test_wrong_key_lengths_are_refused() -> None:
    private, public = generate_keypair()
    for bad in (b"", public[:31], public + b"\x00"):
        with pytest.raises(NoiseError):
            HandshakeState.initiator(bad)
        with pytest.raises(NoiseError):
            HandshakeState.responder(bad)
        with pytest.raises(NoiseError):
            HandshakeState.responder(private, ephemeral_private=bad)
        with pytest.raises(NoiseError):
            CipherState(bad)


def test_a_cipher_state_handed_to_a_record_cipher_is_retired() -> None:
    live = CipherState(bytes(32))
    assert repr(live) == "<CipherState n=0>"
    cipher = CipherState(os.urandom(32))
    record = RecordCipher.from_cipher_state(cipher)
    # The key now lives in the record cipher alone.
    assert repr(cipher) == "<CipherState retired>"
    assert record._key not in _slots(cipher)
    with pytest.raises(NoiseError):
        cipher.encrypt_with_ad(b"", b"x")
    with pytest.raises(NoiseError):
        cipher.decrypt_with_ad(b"", record.seal(0, b"", b"x"))
    with pytest.raises(NoiseError):
        RecordCipher.from_cipher_state(cipher)
    used = CipherState(bytes(32))
    used.encrypt_with_ad(b"", b"x")
    with pytest.raises(NoiseError):
        RecordCipher.from_cipher_state(used)


# --- no secrets in reprs or errors ------------------------------------------------------------


def _renderings(secret: bytes) -> Iterator[str]:
    """Ways a secret could leak into text."""
    yield secret.hex()
    yield secret.hex().upper()
    yield repr(secret)[2:-1]
    yield base64.b64encode(secret).decode()
    yield base64.urlsafe_b64encode(secret).decode()
    yield str(list(secret))[1:-1]
    # Any 8-byte window of the hex form also counts as a leak.
    hex_form = secret.hex()
    for start in range(0, len(hex_form) - 16, 8):
        yield hex_form[start : start + 16]


def test_reprs_and_errors_show_no_key_material() -> None:
    static_private, static_public = generate_keypair()
    i_ephemeral, i_ephemeral_public = generate_keypair()
    r_ephemeral, r_ephemeral_public = generate_keypair()
    secrets = [
        static_private,
        static_public,
        i_ephemeral,
        i_ephemeral_public,
        r_ephemeral,
        r_ephemeral_public,
    ]
    texts: list[str] = []
    objects: list[object] = []

    def look(*items: object) -> None:
        for item in items:
            texts.extend((repr(item), str(item)))
            objects.append(item)

    initiator = HandshakeState.initiator(static_public, b"", ephemeral_private=i_ephemeral)
    responder = HandshakeState.responder(static_private, b"", ephemeral_private=r_ephemeral)
    look(initiator, responder)
    message1 = initiator.write_message(b"")
    look(initiator, responder)
    responder.read_message(message1)
    assert responder._ss is not None
    secrets.append(responder._ss._ck)
    secrets.append(responder._ss._h)
    look(responder._ss)
    message2 = responder.write_message(b"")
    initiator.read_message(message2)
    assert responder._ss is not None
    chaining_key = responder._ss._ck
    secrets.extend((chaining_key, responder.handshake_hash, *noise._hkdf(chaining_key, b"")))
    look(initiator, responder, responder._ss)
    pairs = [initiator.split(), responder.split()]
    look(initiator, responder)
    for send, receive in pairs:
        look(send, receive)
        look(RecordCipher.from_cipher_state(send), send)

    failures: list[NoiseError] = []
    for attempt in (
        lambda: HandshakeState.responder(static_private).read_message(_flip(message1, 300)),
        lambda: HandshakeState.responder(static_private).read_message(message1[:40]),
        lambda: HandshakeState.initiator(LOW_ORDER_POINTS[2]).write_message(b""),
        lambda: HandshakeState.initiator(static_public[:31]),
        lambda: HandshakeState.responder(static_private + b"\x00"),
        lambda: fingerprint(static_public[:31]),
        lambda: CipherState(static_private[:31]),
        lambda: initiator.split(),
        lambda: RecordCipher.from_cipher_state(CipherState(static_private)).open(0, b"", message2),
    ):
        with pytest.raises(NoiseError) as caught:
            attempt()
        failures.append(caught.value)
    failing = HandshakeState.responder(static_private)
    with pytest.raises(NoiseError):
        failing.read_message(_flip(message1, 3))
    look(failing, *failures)
    texts.extend(str(arg) for failure in failures for arg in failure.args)

    assert len(set(secrets)) == len(secrets)
    for text in texts:
        for secret in secrets:
            for rendering in _renderings(secret):
                assert rendering not in text, (text, "shows key material")
    for item in objects:
        if not isinstance(item, NoiseError):
            assert not hasattr(item, "__dict__"), type(item)


# --- a property over random sessions ----------------------------------------------------------


@settings(deadline=None, max_examples=60)
@given(
    prologue=st.binary(max_size=64),
    payload1=st.binary(max_size=300),
    payload2=st.binary(max_size=300),
    records=st.lists(st.binary(max_size=300), min_size=1, max_size=4),
    data=st.data(),
)
def test_random_sessions_agree_and_a_flipped_bit_fails(
    prologue: bytes,
    payload1: bytes,
    payload2: bytes,
    records: list[bytes],
    data: st.DataObject,
) -> None:
    static_private, static_public = generate_keypair()
    ephemeral, _ = generate_keypair()
    initiator = HandshakeState.initiator(static_public, prologue, ephemeral_private=ephemeral)
    message1 = initiator.write_message(payload1)
    assert len(message1) == DHLEN + len(payload1) + TAGLEN

    bit = data.draw(st.integers(0, len(message1) * 8 - 1), label="bit of message 1")
    with pytest.raises(NoiseError):
        HandshakeState.responder(static_private, prologue).read_message(_flip(message1, bit))

    responder = HandshakeState.responder(static_private, prologue)
    assert responder.read_message(message1) == payload1
    message2 = responder.write_message(payload2)
    bit = data.draw(st.integers(0, len(message2) * 8 - 1), label="bit of message 2")
    # The same initiator again (same ephemeral, so the same message 1) meets the flipped bit.
    twin = HandshakeState.initiator(static_public, prologue, ephemeral_private=ephemeral)
    assert twin.write_message(payload1) == message1
    with pytest.raises(NoiseError):
        twin.read_message(_flip(message2, bit))
    assert initiator.read_message(message2) == payload2
    assert initiator.handshake_hash == responder.handshake_hash

    i_send, i_receive = (RecordCipher.from_cipher_state(c) for c in initiator.split())
    r_receive, r_send = (RecordCipher.from_cipher_state(c) for c in responder.split())
    for number, payload in enumerate(records):
        ad = number.to_bytes(8, "big")
        upstream = i_send.seal(number, ad, payload)
        downstream = r_send.seal(number, ad, payload)
        assert upstream != downstream
        assert r_receive.open(number, ad, upstream) == payload
        assert i_receive.open(number, ad, downstream) == payload
        bit = data.draw(st.integers(0, len(upstream) * 8 - 1), label="bit of a record")
        with pytest.raises(NoiseError):
            r_receive.open(number, ad, _flip(upstream, bit))


@pytest.mark.parametrize("length", [0, 16, 24, 31, 33])
def test_a_cipher_key_is_32_bytes_though_aes_would_take_16_or_24(length: int) -> None:
    with pytest.raises(NoiseError, match="a cipher key is 32 bytes"):
        RecordCipher(bytes(length))
    with pytest.raises(NoiseError, match="a cipher key is 32 bytes"):
        CipherState(bytes(length))
    RecordCipher(bytes(32)).seal(1, b"", b"x")  # the right length works
