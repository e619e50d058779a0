"""The Noise NK handshake and the record cipher of trio-chat.

One protocol only, `Noise_NK_25519_AESGCM_BLAKE2s`, implemented from the Noise
Protocol Framework, revision 34 (https://noiseprotocol.org/noise.html). Section names
below are the specification's:

- "4.3. Hash functions": HASH is BLAKE2s with a 32-byte digest (HASHLEN 32, BLOCKLEN 64),
  HMAC-HASH is RFC 2104 HMAC over it, and HKDF is built from HMAC-HASH.
- "5.1. The CipherState object": `CipherState`.
- "5.2. The SymmetricState object": `SymmetricState`.
- "5.3. The HandshakeState object": `HandshakeState`, with the NK pattern of
  "7.5. Interactive handshake patterns (fundamental)"::

      NK:
        <- s
        ...
        -> e, es
        <- e, ee

- "12.1. The 25519 DH functions", "12.4. The AESGCM cipher functions",
  "12.7. The BLAKE2s hash function".

The responder's static public key is known to the initiator in advance (the pre-message
`<- s`), so a client that trusts the server's key fingerprint learns, from message 2
alone, that it is talking to the holder of the server's static private key. The initiator
stays anonymous at this layer.

`RecordCipher` carries transport records over UDP, where datagrams are lost and
reordered: the sender's packet number is the nonce ("11.4. Out-of-order transport
messages"). Refusing a packet number that was already accepted is the caller's job.

This module does no I/O: no sockets, no clock, no Trio. Its only inputs are bytes and the
operating system's random generator (through `cryptography`) for new key pairs.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import struct
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "DHLEN",
    "HASHLEN",
    "MAX_MESSAGE_LEN",
    "MAX_NONCE",
    "PROTOCOL_NAME",
    "TAGLEN",
    "CipherState",
    "HandshakeState",
    "NoiseError",
    "RecordCipher",
    "SymmetricState",
    "fingerprint",
    "generate_keypair",
    "public_key",
]

PROTOCOL_NAME: Final = b"Noise_NK_25519_AESGCM_BLAKE2s"
DHLEN: Final = 32
"""Bytes of an X25519 public key and of a DH output ("12.1. The 25519 DH functions")."""
HASHLEN: Final = 32
"""Bytes of a BLAKE2s output ("12.7. The BLAKE2s hash function")."""
BLOCKLEN: Final = 64
"""BLAKE2s's block size, HMAC's `B` ("4.3. Hash functions")."""
KEYLEN: Final = 32
"""Bytes of a cipher key ("4.2. Cipher functions")."""
TAGLEN: Final = 16
"""Bytes of authentication data an AEAD ciphertext adds ("3. Message format")."""
MAX_MESSAGE_LEN: Final = 65535
"""Upper bound on every Noise message, handshake or transport ("3. Message format")."""
MAX_NONCE: Final = 2**64 - 1
"""Reserved nonce value: never used to encrypt or decrypt ("5.1. The CipherState object")."""

# "12.4. The AESGCM cipher functions": 32 bits of zeros, then n as 64-bit big-endian.
_NONCE: Final = struct.Struct(">4xQ")
_ZERO_DH: Final = bytes(DHLEN)
# The NK message patterns after the pre-message ("7.5. Interactive handshake patterns").
_NK_MESSAGE_PATTERNS: Final = (("e", "es"), ("e", "ee"))


class NoiseError(Exception):
    """A handshake or record that cannot be accepted, or a misuse of this module.

    Raised for an authentication tag that does not verify, a message of the wrong length,
    an invalid public key, nonce exhaustion, or a call out of turn. Messages are fixed
    sentences: they never contain key material, hashes or plaintext.
    """


# --- "4.1. DH functions" / "12.1. The 25519 DH functions" -----------------------------------


def generate_keypair() -> tuple[bytes, bytes]:
    """GENERATE_KEYPAIR(): a new X25519 key pair as (private 32 bytes, public 32 bytes)."""
    private = X25519PrivateKey.generate()
    return private.private_bytes_raw(), private.public_key().public_bytes_raw()


def public_key(private: bytes) -> bytes:
    """The 32-byte X25519 public key of a 32-byte private key."""
    return _private_key(private).public_key().public_bytes_raw()


def fingerprint(public: bytes) -> str:
    """A public key's fingerprint in ssh's style: `SHA256:` and unpadded base64 of SHA-256."""
    if len(public) != DHLEN:
        raise NoiseError("a public key is 32 bytes")
    digest = hashlib.sha256(public).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _private_key(private: bytes) -> X25519PrivateKey:
    if len(private) != DHLEN:
        raise NoiseError("a private key is 32 bytes")
    return X25519PrivateKey.from_private_bytes(private)


@functools.lru_cache(maxsize=4)
def _static_key(private: bytes) -> X25519PrivateKey:
    """A responder's static key, loaded once: every handshake uses it, and loading one
    (~30 us here) costs as much as one of the handshake's two Diffie-Hellmans."""
    return _private_key(private)


def _dh(private: X25519PrivateKey, public: bytes) -> bytes:
    """DH(key_pair, public_key): X25519, refusing a low-order (invalid) public key.

    "12.1. The 25519 DH functions" allows an implementation to signal an error for inputs
    that produce an all-zeros output; `cryptography` does so, and so does this function.
    """
    if len(public) != DHLEN:
        raise NoiseError("a public key is 32 bytes")
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError:
        raise NoiseError("invalid public key: the DH output would be all zeros") from None
    if hmac.compare_digest(shared, _ZERO_DH):  # cryptography refuses first; kept as a guard
        raise NoiseError("invalid public key: the DH output would be all zeros")
    return shared


# --- "4.3. Hash functions" / "12.7. The BLAKE2s hash function" -------------------------------


def _hash(data: bytes) -> bytes:
    """HASH(data): BLAKE2s with a digest of HASHLEN bytes."""
    return hashlib.blake2s(data, digest_size=HASHLEN).digest()


def _hmac_hash(key: bytes, data: bytes) -> bytes:
    """HMAC-HASH(key, data): RFC 2104 HMAC with HASH (BLAKE2s's block is BLOCKLEN bytes)."""
    return hmac.new(key, data, hashlib.blake2s).digest()


def _hkdf(chaining_key: bytes, input_key_material: bytes) -> tuple[bytes, bytes]:
    """HKDF(chaining_key, input_key_material, 2), as defined in "4.3. Hash functions".

    NK never asks for three outputs (that is only for pre-shared keys, MixKeyAndHash).
    """
    temp_key = _hmac_hash(chaining_key, input_key_material)
    output1 = _hmac_hash(temp_key, b"\x01")
    output2 = _hmac_hash(temp_key, output1 + b"\x02")
    return output1, output2


# --- "4.2. Cipher functions" / "12.4. The AESGCM cipher functions" ---------------------------


def _encrypt(aead: AESGCM, n: int, ad: bytes, plaintext: bytes) -> bytes:
    """ENCRYPT(k, n, ad, plaintext): AES-256 in GCM with a 128-bit tag appended to the
    ciphertext, nonce = 4 zero bytes + BE64(n). Never with n = 2**64-1 (reserved)."""
    if not 0 <= n < MAX_NONCE:
        raise NoiseError("nonce out of range: 0 to 2**64-2")
    if len(plaintext) > MAX_MESSAGE_LEN - TAGLEN:
        raise NoiseError("plaintext too long for a Noise message")
    return aead.encrypt(_NONCE.pack(n), plaintext, ad)


def _decrypt(aead: AESGCM, n: int, ad: bytes, ciphertext: bytes) -> bytes:
    """DECRYPT(k, n, ad, ciphertext): signals an error if authentication fails."""
    if not 0 <= n < MAX_NONCE:
        raise NoiseError("nonce out of range: 0 to 2**64-2")
    if not TAGLEN <= len(ciphertext) <= MAX_MESSAGE_LEN:
        raise NoiseError("ciphertext length out of range")
    try:
        return aead.decrypt(_NONCE.pack(n), ciphertext, ad)
    except InvalidTag:
        raise NoiseError("authentication failed") from None


def _check_key(key: bytes) -> None:
    if len(key) != KEYLEN:
        raise NoiseError("a cipher key is 32 bytes")  # AES would take 16 or 24 as well


def _aead(key: bytes) -> AESGCM:
    _check_key(key)
    return AESGCM(key)


RECENT_KEYS = 4096
"""Record keys whose AESGCM object is kept for reuse (about 2.5 KB each): those in use
lately. An idle session's keys take 64 bytes, and an object is made (0.8 us) when it sends
or receives again."""
_recent: dict[bytes, AESGCM] = {}


def _recent_aead(key: bytes) -> AESGCM:
    aead = _recent.get(key)
    if aead is None:
        if len(_recent) >= RECENT_KEYS:
            _recent.clear()  # cheaper than ordering them; the busy ones come back at once
        aead = _recent[key] = AESGCM(key)
    return aead


class CipherState:
    """A cipher key k and a counter nonce n ("5.1. The CipherState object").

    Only keyed cipher states exist as objects; the specification's `empty` key is the
    absence of a CipherState inside `SymmetricState`. One `AESGCM` object is kept
    per key. A CipherState handed to `RecordCipher.from_cipher_state` is retired and refuses
    any further use, so that no nonce is ever used twice under its key.
    """

    __slots__ = ("_aead", "_key", "_n")

    _aead: AESGCM | None
    _key: bytes
    _n: int

    def __init__(self, key: bytes) -> None:
        """InitializeKey(key): sets k = key and n = 0."""
        self._aead = _aead(key)
        self._key = key
        self._n = 0

    def __repr__(self) -> str:
        if self._aead is None:
            return "<CipherState retired>"
        return f"<CipherState n={self._n}>"

    @property
    def n(self) -> int:
        """The nonce the next EncryptWithAd or DecryptWithAd will use."""
        return self._n

    def set_nonce(self, nonce: int) -> None:
        """SetNonce(nonce): sets n = nonce (2**64-1 is allowed here, and then refused)."""
        if not 0 <= nonce <= MAX_NONCE:
            raise NoiseError("nonce out of range: 0 to 2**64-1")
        self._n = nonce

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        """EncryptWithAd(ad, plaintext): ENCRYPT(k, n++, ad, plaintext).

        Refuses once n has reached 2**64-1, the reserved value: the counter never wraps.
        """
        aead = self._live()
        ciphertext = _encrypt(aead, self._n, ad, plaintext)
        self._n += 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        """DecryptWithAd(ad, ciphertext): DECRYPT(k, n++, ad, ciphertext).

        If authentication fails, n is not incremented and NoiseError is raised.
        """
        aead = self._live()
        plaintext = _decrypt(aead, self._n, ad, ciphertext)
        self._n += 1
        return plaintext

    def _live(self) -> AESGCM:
        if self._aead is None:
            raise NoiseError("this cipher state was handed over to a record cipher")
        if self._n >= MAX_NONCE:
            raise NoiseError("nonces exhausted: a new handshake is needed")
        return self._aead


class RecordCipher:
    """Explicit-nonce AEAD for UDP records: the packet number is the nonce.

    Built from a CipherState that `split()` produced, with the same key and the same nonce
    encoding ("12.4. The AESGCM cipher functions"), so `seal(n, ad, p)` equals what the
    CipherState's `encrypt_with_ad(ad, p)` would return at counter n ("11.4. Out-of-order
    transport messages"). Packet numbers run from 0 to 2**64-2. The sender must never seal
    two records under one number; the receiver must refuse a number it has already opened.
    """

    __slots__ = ("_key",)

    _key: bytes

    def __init__(self, key: bytes) -> None:
        _check_key(key)
        self._key = key

    @classmethod
    def from_cipher_state(cls, cipher: CipherState) -> RecordCipher:
        """Takes over a fresh CipherState's key; the CipherState is retired.

        The CipherState must not have used any nonce yet (n == 0): its counter and the
        packet numbers would otherwise share one key and could meet.
        """
        if cipher._aead is None:
            raise NoiseError("this cipher state was already handed over")
        if cipher._n != 0:
            raise NoiseError("this cipher state has already used nonces")
        cipher._aead = None
        key, cipher._key = cipher._key, b""
        return cls(key)

    def __repr__(self) -> str:
        return "<RecordCipher>"

    def seal(self, n: int, ad: bytes, plaintext: bytes) -> bytes:
        """ENCRYPT(k, n, ad, plaintext) with packet number n; returns ciphertext and tag."""
        return _encrypt(_recent.get(self._key) or _recent_aead(self._key), n, ad, plaintext)

    def open(self, n: int, ad: bytes, ciphertext: bytes) -> bytes:
        """DECRYPT(k, n, ad, ciphertext); NoiseError if the tag does not verify."""
        return _decrypt(_recent.get(self._key) or _recent_aead(self._key), n, ad, ciphertext)

    def forget(self) -> None:
        """The channel has ended: let go of the key's object, if one is kept."""
        _recent.pop(self._key, None)


class SymmetricState:
    """A CipherState (or none yet), ck and h ("5.2. The SymmetricState object")."""

    __slots__ = ("_cipher", "_ck", "_h")

    _cipher: CipherState | None
    _ck: bytes
    _h: bytes

    def __init__(self, protocol_name: bytes) -> None:
        """InitializeSymmetric(protocol_name).

        A name of at most HASHLEN bytes is padded with zeros to HASHLEN, a longer one is
        hashed; ck = h; the cipher key is empty.
        """
        if len(protocol_name) <= HASHLEN:
            self._h = protocol_name.ljust(HASHLEN, b"\x00")
        else:
            self._h = _hash(protocol_name)
        self._ck = self._h
        self._cipher = None

    def __repr__(self) -> str:
        return f"<SymmetricState {'keyed' if self._cipher is not None else 'unkeyed'}>"

    @property
    def handshake_hash(self) -> bytes:
        """GetHandshakeHash(): h."""
        return self._h

    def has_key(self) -> bool:
        """HasKey() of the inner CipherState."""
        return self._cipher is not None

    def mix_key(self, input_key_material: bytes) -> None:
        """MixKey(ikm): ck, temp_k = HKDF(ck, ikm, 2); InitializeKey(temp_k).

        HASHLEN is 32, so temp_k needs no truncation.
        """
        self._ck, temp_k = _hkdf(self._ck, input_key_material)
        self._cipher = CipherState(temp_k)

    def mix_hash(self, data: bytes) -> None:
        """MixHash(data): h = HASH(h || data)."""
        self._h = _hash(self._h + data)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        """EncryptAndHash(plaintext): ciphertext = EncryptWithAd(h, plaintext); MixHash.

        With an empty key the ciphertext is the plaintext.
        """
        if self._cipher is None:
            ciphertext = plaintext
        else:
            ciphertext = self._cipher.encrypt_with_ad(self._h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        """DecryptAndHash(ciphertext): plaintext = DecryptWithAd(h, ciphertext); MixHash.

        With an empty key the plaintext is the ciphertext.
        """
        if self._cipher is None:
            plaintext = ciphertext
        else:
            plaintext = self._cipher.decrypt_with_ad(self._h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """Split(): temp_k1, temp_k2 = HKDF(ck, zerolen, 2); two new CipherStates.

        The first encrypts from initiator to responder, the second the other way.
        """
        temp_k1, temp_k2 = _hkdf(self._ck, b"")
        return CipherState(temp_k1), CipherState(temp_k2)


class HandshakeState:
    """The handshake ("5.3. The HandshakeState object"), for the NK pattern only.

    Build one with `HandshakeState.initiator(...)` or `HandshakeState.responder(...)`.
    The initiator writes message 1 (`-> e, es`) and reads message 2 (`<- e, ee`); the
    responder reads message 1 and writes message 2. Each message is a 32-byte ephemeral
    public key followed by the encrypted payload (payload length + 16 bytes).

    As "5. Processing rules" requires, an error from DECRYPT() or DH() ends the handshake:
    the object refuses any further call, and the caller starts again with a new one.
    Once both messages are processed, `complete` is true, `handshake_hash` gives h (for
    channel binding, "11.2. Channel binding"), and `split()` gives the two CipherStates
    once; the handshake's secrets are then dropped.
    """

    __slots__ = ("_e", "_failed", "_h", "_initiator", "_next", "_re", "_rs", "_s", "_ss")

    _ss: SymmetricState | None
    _h: bytes
    _initiator: bool
    _s: X25519PrivateKey | None
    _e: X25519PrivateKey | None
    _rs: bytes | None
    _re: bytes | None
    _next: int
    _failed: bool

    def __init__(
        self,
        *,
        initiator: bool,
        prologue: bytes,
        s: X25519PrivateKey | None,
        e: X25519PrivateKey | None,
        rs: bytes | None,
    ) -> None:
        """Initialize(NK, initiator, prologue, s, e, rs, re=empty).

        InitializeSymmetric(protocol_name); MixHash(prologue); then the pre-message `<- s`:
        MixHash of the responder's static public key, on both sides.
        """
        ss = SymmetricState(PROTOCOL_NAME)
        ss.mix_hash(prologue)
        self._initiator = initiator
        self._s = s
        self._e = e
        self._rs = rs
        self._re = None
        if initiator:
            assert rs is not None
            ss.mix_hash(rs)
        else:
            assert s is not None
            ss.mix_hash(s.public_key().public_bytes_raw())
        self._ss = ss
        self._h = b""
        self._next = 0
        self._failed = False

    @classmethod
    def initiator(
        cls,
        responder_static_public: bytes,
        prologue: bytes = b"",
        *,
        ephemeral_private: bytes | None = None,
    ) -> HandshakeState:
        """The client's side: it knows the server's static public key in advance.

        `ephemeral_private` fixes the ephemeral key: for test vectors, and to read a
        second answer to the same message 1 after a forged one spoiled the first state.
        """
        if len(responder_static_public) != DHLEN:
            raise NoiseError("a public key is 32 bytes")
        e = None if ephemeral_private is None else _private_key(ephemeral_private)
        return cls(initiator=True, prologue=prologue, s=None, e=e, rs=responder_static_public)

    @classmethod
    def responder(
        cls,
        static_private: bytes,
        prologue: bytes = b"",
        *,
        ephemeral_private: bytes | None = None,
    ) -> HandshakeState:
        """The server's side, holding its static private key.

        `ephemeral_private` fixes the ephemeral key; it exists for test vectors only.
        """
        s = _static_key(static_private)
        e = None if ephemeral_private is None else _private_key(ephemeral_private)
        return cls(initiator=False, prologue=prologue, s=s, e=e, rs=None)

    def __repr__(self) -> str:
        role = "initiator" if self._initiator else "responder"
        if self._failed:
            state = "failed"
        elif self._ss is None:
            state = "split"
        elif self.complete:
            state = "complete"
        else:
            state = f"message {self._next + 1} of {len(_NK_MESSAGE_PATTERNS)}"
        return f"<HandshakeState NK {role} {state}>"

    @property
    def is_initiator(self) -> bool:
        return self._initiator

    @property
    def complete(self) -> bool:
        """True once both handshake messages have been processed."""
        return not self._failed and self._next == len(_NK_MESSAGE_PATTERNS)

    @property
    def handshake_hash(self) -> bytes:
        """GetHandshakeHash(): h, available only at the end of the handshake."""
        if not self.complete:
            raise NoiseError("the handshake hash is only defined once the handshake is complete")
        return self._h

    def write_message(self, payload: bytes) -> bytes:
        """WriteMessage(payload): the next message pattern's tokens, then the payload.

        "e": e = GENERATE_KEYPAIR() (unless fixed for a test vector); append e.public_key;
        MixHash(e.public_key). "es"/"ee": MixKey(DH(...)) as in "5.3". Finally append
        EncryptAndHash(payload).
        """
        self._check_turn(writing=True)
        if DHLEN + len(payload) + TAGLEN > MAX_MESSAGE_LEN:
            raise NoiseError("payload too long for a Noise message")
        ss = self._symmetric()
        try:
            buffer = bytearray()
            for token in _NK_MESSAGE_PATTERNS[self._next]:
                if token == "e":
                    if self._e is None:
                        self._e = X25519PrivateKey.generate()
                    e_public = self._e.public_key().public_bytes_raw()
                    buffer += e_public
                    ss.mix_hash(e_public)
                else:
                    self._mix_dh(token)
            buffer += ss.encrypt_and_hash(payload)
        except NoiseError:
            self._failed = True
            raise
        self._advance()
        return bytes(buffer)

    def read_message(self, message: bytes) -> bytes:
        """ReadMessage(message): the next message pattern's tokens; returns the payload.

        "e": re = the next DHLEN bytes; MixHash(re). "es"/"ee": MixKey(DH(...)) as in
        "5.3". Then DecryptAndHash() of the remaining bytes, which is the payload.
        """
        self._check_turn(writing=False)
        if not DHLEN + TAGLEN <= len(message) <= MAX_MESSAGE_LEN:
            self._failed = True
            raise NoiseError("handshake message length out of range")
        ss = self._symmetric()
        try:
            offset = 0
            for token in _NK_MESSAGE_PATTERNS[self._next]:
                if token == "e":
                    self._re = bytes(message[offset : offset + DHLEN])
                    offset += DHLEN
                    ss.mix_hash(self._re)
                else:
                    self._mix_dh(token)
            payload = ss.decrypt_and_hash(bytes(message[offset:]))
        except NoiseError:
            self._failed = True
            raise
        self._advance()
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """Split(): (initiator-to-responder, responder-to-initiator) CipherStates, once."""
        if not self.complete:
            raise NoiseError("the handshake is not complete")
        if self._ss is None:
            raise NoiseError("the handshake was already split")
        pair = self._ss.split()
        # Only h outlives the handshake ("5. Processing rules"): ck goes with the
        # SymmetricState.
        self._ss = None
        return pair

    def _mix_dh(self, token: str) -> None:
        """For "ee" MixKey(DH(e, re)); for "es" MixKey(DH(e, rs)) if initiator, else DH(s, re)."""
        if token == "ee":
            private, public = self._e, self._re
        elif token == "es" and self._initiator:
            private, public = self._e, self._rs
        elif token == "es":
            private, public = self._s, self._re
        else:  # NK has no other tokens
            raise AssertionError(token)
        assert private is not None and public is not None
        self._symmetric().mix_key(_dh(private, public))

    def _symmetric(self) -> SymmetricState:
        if self._ss is None:
            raise NoiseError("the handshake was already split")
        return self._ss

    def _check_turn(self, *, writing: bool) -> None:
        if self._failed:
            raise NoiseError("this handshake has failed; start a new one")
        if self._next >= len(_NK_MESSAGE_PATTERNS):
            raise NoiseError("the handshake is already complete")
        initiator_writes = self._next % 2 == 0
        if writing != (initiator_writes == self._initiator):
            raise NoiseError("not this side's turn in the handshake")

    def _advance(self) -> None:
        self._next += 1
        if self._next == len(_NK_MESSAGE_PATTERNS):
            self._h = self._symmetric().handshake_hash
            # The handshake's DH secrets are no longer needed ("5. Processing rules").
            self._s = None
            self._e = None
            self._re = None
