"""The secure channel: the Noise NK handshake as datagrams, the record seal, and what
guards them (replay window, address cookies, reset tokens, resumption tickets).

Pure: bytes and numbers in, bytes out; no sockets, no clock (callers pass `now` and
`wall`), no Trio. `noise` does the cryptography; this module decides what goes where.

- `initiate` / `Initiation.finish` (the client) and `respond` (the daemon) run the
  handshake of `docs/protocol.md` section 4 and give each side a `Channel`.
- A `Channel` seals records (`seal(pn, payload)`: header in the clear and authenticated,
  payload encrypted, the packet number as the nonce) and opens them
  (`open_untrusted`): the tag is checked before anything else is looked at, then the
  replay window.
- `Cookies` make and check the stateless address tokens of a `RETRY`.
- `reset_token` is what lets a daemon that lost a session say so without the keys.
- `Tickets` seal and open resumption tickets, readable by any daemon with the same key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import wire
from .noise import (
    HandshakeState,
    NoiseError,
    RecordCipher,
    fingerprint,
    generate_keypair,
    public_key,
)

PROLOGUE: Final = b"trio-chat/3"
"""Mixed into every handshake: a handshake of another protocol or version cannot pass."""
REPLAY_WINDOW: Final = 4096
"""Packet numbers this far below the highest one opened are still accepted once."""
_WINDOW_MASK: Final = (1 << REPLAY_WINDOW) - 1
RESET_TOKEN_BYTES: Final = 16
COOKIE_BYTES: Final = 16
COOKIE_PERIOD: Final = 30.0
"""Seconds a cookie is good for (it stays good for one more period)."""
TICKET_NONCE_BYTES: Final = 12
TICKET_AD: Final = b"trio-chat ticket 1"


class SecureError(Exception):
    """Bytes that do not pass: a bad tag, a replay, a malformed handshake message.

    Never carries key material; the message is a fixed sentence.
    """


def derive_key(secret: bytes, purpose: bytes) -> bytes:
    """A 32-byte key for one purpose from a longer-lived secret (HKDF-SHA256, RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)


# --- the replay window -----------------------------------------------------------------------


class ReplayWindow:
    """Which packet numbers were opened: each is accepted once (RFC 6479's sliding window).

    `check` is applied only after the record's tag verified, so a forger cannot move it.
    """

    __slots__ = ("_bits", "highest")

    def __init__(self) -> None:
        self.highest = -1
        self._bits = 0
        """Bit i set: packet number `highest - i` was opened."""

    def fresh(self, pn: int) -> bool:
        """Whether `pn` may be accepted (not seen, not too old); changes nothing."""
        if pn > self.highest:
            return True
        offset = self.highest - pn
        return offset < REPLAY_WINDOW and not (self._bits >> offset) & 1

    def accept(self, pn: int) -> None:
        """Mark `pn` opened (call once `fresh(pn)` said yes and the tag verified)."""
        if pn > self.highest:
            shift = pn - self.highest
            # A jump past the whole window forgets it (and never builds a huge integer).
            self._bits = ((self._bits << shift) | 1) & _WINDOW_MASK if shift < REPLAY_WINDOW else 1
            self.highest = pn
        else:
            self._bits |= 1 << (self.highest - pn)


# --- the channel ---------------------------------------------------------------------------


class Channel:
    """Both directions of one connection's records, once the handshake is done.

    `local_index` names this side's end (the receiver index of records sent to it);
    `remote_index` the other's. Records carry the receiver's index in the clear.
    """

    __slots__ = ("_receive", "_send", "local_index", "remote_index", "window")

    def __init__(
        self, local_index: int, remote_index: int, send: RecordCipher, receive: RecordCipher
    ) -> None:
        self.local_index = local_index
        self.remote_index = remote_index
        self._send = send
        self._receive = receive
        self.window = ReplayWindow()

    def __repr__(self) -> str:
        return f"<Channel {self.local_index:08x}<->{self.remote_index:08x}>"

    def seal(self, pn: int, payload: bytes) -> bytes:
        """A DATA datagram carrying `payload` as packet number `pn` (never reuse one)."""
        header = wire.data_header(self.remote_index, pn)
        return header + self._send.seal(pn, header, payload)

    def forget(self) -> None:
        """The channel is over: keep nothing of its keys for reuse."""
        self._send.forget()
        self._receive.forget()

    def open_untrusted(self, datagram: bytes) -> tuple[int, bytes]:
        """The packet number and payload of a DATA datagram for this channel.

        Raises `SecureError` for a bad tag (checked first), then for a replay.
        """
        pn = wire.data_packet_number(datagram)
        header = datagram[: wire.DATA_HEADER_BYTES]
        try:
            payload = self._receive.open(pn, header, datagram[wire.DATA_HEADER_BYTES :])
        except NoiseError:
            raise SecureError("A record did not authenticate.") from None
        window = self.window
        if not window.fresh(pn):
            raise SecureError("A record was replayed.")
        window.accept(pn)
        return pn, payload


# --- the handshake -----------------------------------------------------------------------------


@dataclass(slots=True)
class Initiation:
    """The client's half-done handshake: the INIT to send (again), and how to finish it."""

    client_index: int
    message: bytes
    """Noise message 1, kept so that a `RETRY` can be answered with the same one."""
    server_public: bytes
    ephemeral: bytes = field(repr=False)
    """The ephemeral private key of message 1: each RESPONSE is read by a handshake state
    made afresh from it, so that a forged one cannot spoil the reading of the real one."""
    cookie: bytes = b""

    def datagram(self) -> bytes:
        """The INIT datagram: padded to `wire.FIRST_FLIGHT_BYTES`."""
        return wire.init_datagram(self.client_index, self.cookie, self.message)

    def finish(self, response: wire.Response) -> tuple[Channel, bytes]:
        """The channel and the reset token, from the daemon's RESPONSE.

        Raises `SecureError` if the response does not come from the key we trust.
        """
        state = HandshakeState.initiator(
            self.server_public, PROLOGUE, ephemeral_private=self.ephemeral
        )
        state.write_message(b"")  # the same message 1 again: the same transcript
        try:
            token = state.read_message(response.message)
            to_server, to_client = state.split()
        except NoiseError:
            raise SecureError("The daemon's handshake answer did not authenticate.") from None
        if len(token) != RESET_TOKEN_BYTES:
            raise SecureError("The daemon's handshake answer is malformed.")
        channel = Channel(
            self.client_index,
            response.server_index,
            RecordCipher.from_cipher_state(to_server),
            RecordCipher.from_cipher_state(to_client),
        )
        return channel, token


def initiate(server_public: bytes, client_index: int) -> Initiation:
    """Start a handshake with the daemon whose static public key is `server_public`."""
    ephemeral = X25519PrivateKey.generate().private_bytes_raw()
    state = HandshakeState.initiator(server_public, PROLOGUE, ephemeral_private=ephemeral)
    return Initiation(client_index, state.write_message(b""), server_public, ephemeral)


def respond(
    static_private: bytes, init: wire.Init, server_index: int, reset_token: bytes
) -> tuple[bytes, Channel]:
    """The RESPONSE datagram and the daemon's channel for a client's INIT.

    Raises `SecureError` if message 1 does not decrypt (the client used another key:
    an old one, or the daemon's key changed).
    """
    state = HandshakeState.responder(static_private, PROLOGUE)
    try:
        state.read_message(init.message)
        message = state.write_message(reset_token)
        to_server, to_client = state.split()
    except NoiseError:
        raise SecureError("A handshake did not decrypt with this daemon's key.") from None
    channel = Channel(
        server_index,
        init.client_index,
        RecordCipher.from_cipher_state(to_client),
        RecordCipher.from_cipher_state(to_server),
    )
    return wire.response_datagram(init.client_index, server_index, message), channel


# --- cookies and reset tokens -------------------------------------------------------------------


def _mac(key: bytes, *parts: bytes) -> bytes:
    return hmac.new(key, b"".join(parts), hashlib.blake2s).digest()


class Cookies:
    """Address tokens for `RETRY`: proof that a client receives at the address it claims.

    A cookie is an HMAC of the address, the client's index and the time period, under a
    secret that never leaves the daemon: checking one needs no state.
    """

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else os.urandom(32)

    def __repr__(self) -> str:
        return "<Cookies>"

    def make(self, address: tuple[Any, ...], client_index: int, now: float) -> bytes:
        return self._for(address, client_index, int(now // COOKIE_PERIOD))

    def check(self, cookie: bytes, address: tuple[Any, ...], client_index: int, now: float) -> bool:
        period = int(now // COOKIE_PERIOD)
        return any(
            hmac.compare_digest(cookie, self._for(address, client_index, p))
            for p in (period, period - 1)
        )

    def _for(self, address: tuple[Any, ...], client_index: int, period: int) -> bytes:
        where = f"{address[0]}|{address[1]}".encode()
        return _mac(self._secret, where, struct.pack(">Iq", client_index, period))[:COOKIE_BYTES]


def new_index() -> int:
    """A channel index: 32 random bits, never 0 (either side's, `docs/protocol.md` 3)."""
    return secrets.randbelow(2**32 - 1) + 1


def new_challenge() -> str:
    """A path challenge for an address a session moved to: 128 random bits, URL-safe
    base64 (22 characters)."""
    return secrets.token_urlsafe(16)


def challenge_answered(response: str | None, challenge: str) -> bool:
    """Whether `response` is `challenge`, compared in constant time."""
    if response is None:
        return False
    return hmac.compare_digest(response.encode(), challenge.encode())


def reset_token(secret: bytes, server_index: int) -> bytes:
    """The token a daemon sends (inside the handshake) and later shows to end a session.

    Derived from the index and a secret kept on disk, so a daemon that restarted, and no
    longer has the session's keys, can still prove the session is gone.
    """
    return _mac(secret, b"reset", struct.pack(">I", server_index))[:RESET_TOKEN_BYTES]


# --- resumption tickets -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ticket:
    """What a resumption ticket holds: whose it is, until when (Unix time), and under which
    password (`password_mark`): a new password, or an account made anew under the same
    name after a restore, makes the account's tickets worthless."""

    account_id: int
    key: str
    expires: float
    password_mark: str = field(repr=False)
    """`password_mark` of the account's hash when the ticket was sealed (a ticket without
    one, sealed before tickets had it, is refused)."""


def password_mark(password_hash: str) -> str:
    """A short mark of a password hash, to tell in a ticket whether the password it was
    given for is still the account's: 12 bytes of SHA-256, base64url (inside the ticket's
    seal, never shown)."""
    digest = hashlib.sha256(password_hash.encode()).digest()[:12]
    return base64.urlsafe_b64encode(digest).decode()


class Tickets:
    """Seal and open resumption tickets with a 32-byte key (ChaCha20-Poly1305).

    A ticket is `base64url(nonce || ciphertext)`, the nonce random (96 bits) and the
    plaintext JSON `{"a": account id, "k": name key, "e": expiry, "p": password mark}`. Any
    daemon holding the same key accepts it: several daemons can share a room.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a ticket key is 32 bytes")
        self._aead = ChaCha20Poly1305(key)

    def __repr__(self) -> str:
        return "<Tickets>"

    def seal(self, ticket: Ticket) -> str:
        fields: dict[str, object] = {
            "a": ticket.account_id,
            "k": ticket.key,
            "e": round(ticket.expires),
            "p": ticket.password_mark,
        }
        plaintext = json.dumps(
            fields,
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        nonce = os.urandom(TICKET_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, plaintext, TICKET_AD)
        return base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def open_untrusted(self, text: str, wall: float) -> Ticket | None:
        """The ticket, if it is ours, intact, not expired and written as `seal` writes it
        (one text for each ticket); None otherwise."""
        try:
            sealed = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
            if base64.urlsafe_b64encode(sealed).decode().rstrip("=") != text:
                return None  # another alphabet, padding, or bits past the end set
            nonce, ciphertext = sealed[:TICKET_NONCE_BYTES], sealed[TICKET_NONCE_BYTES:]
            fields = json.loads(self._aead.decrypt(nonce, ciphertext, TICKET_AD))
            ticket = Ticket(
                int(fields["a"]), str(fields["k"]), float(fields["e"]), str(fields["p"])
            )
        except (ValueError, InvalidTag, KeyError, TypeError, AttributeError):
            return None
        return ticket if ticket.expires > wall else None


# --- the daemon's keys -----------------------------------------------------------------------


class DaemonKeys:
    """A daemon's secrets: its static key pair (its identity) and its ticket key.

    The reset secret is derived from the static key, so that it survives restarts with it.
    Kept in files beside the database by the shell; here they are only bytes.
    """

    __slots__ = ("public", "reset_secret", "static_private", "tickets")

    def __init__(self, static_private: bytes, ticket_key: bytes) -> None:
        self.static_private = static_private
        self.public = public_key(static_private)
        self.reset_secret = derive_key(static_private, b"trio-chat reset tokens")
        self.tickets = Tickets(ticket_key)

    def __repr__(self) -> str:
        return f"<DaemonKeys {fingerprint(self.public)}>"

    @classmethod
    def generate(cls) -> DaemonKeys:
        """New keys, for a new daemon or a test."""
        private, _public = generate_keypair()
        return cls(private, os.urandom(32))
