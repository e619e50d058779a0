"""Every datagram and frame trio-chat sends, with their limits, encoders and decoders.

Protocol version 3 (`docs/protocol.md` is the prose version of this module). Every
datagram starts with one byte naming its type. Before a channel exists a client sends
`KEY_REQUEST` (to learn the daemon's static key) and `INIT` (the first Noise NK message),
each padded to 1200 bytes; the daemon answers with `KEY`, `RESPONSE`, `RETRY` or
`REFUSED`, each smaller. Afterwards both sides send `DATA`: a 13-byte header in the clear
(type, receiver index, packet number), then the sealed payload, one JSON object with the
link's acknowledgements and numbered *frames*, each frame a JSON object tagged by `"t"`.
A daemon that lost a session answers its `DATA` with `RESET`.

Functions that parse bytes from the network say so: `*_untrusted`. They raise
`WireError` with a stable code; they never raise anything else. The payload builders
(`PAYLOAD_HEAD`, `NUMBERED_FRAME`, `close_payload`, ...) assemble a payload around frames
already encoded, so that a frame fanned out to many sessions is encoded once.
"""

from __future__ import annotations

import struct
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Final, TypeAlias

import msgspec

PROTOCOL_VERSION: Final = 3
MAX_DATAGRAM: Final = 1200
"""No datagram, in either direction, is larger than this many bytes."""
RECEIVE_BUFFER: Final = 2048
"""What either side reads a datagram into: larger than any valid one, so that an
oversized datagram is seen as such (and dropped), not cut to size."""
FIRST_FLIGHT_BYTES: Final = 1200
"""`KEY_REQUEST` and `INIT` are exactly this long: no answer is ever larger than them."""

# Datagram types: the first byte.
KEY_REQUEST: Final = 0x01
KEY: Final = 0x02
INIT: Final = 0x03
RESPONSE: Final = 0x04
RETRY: Final = 0x05
REFUSED: Final = 0x06
DATA: Final = 0x10
RESET: Final = 0x11
FIRST_FLIGHTS: Final = (KEY_REQUEST, INIT)
"""The types a client opens with: padded to `FIRST_FLIGHT_BYTES`, and the only ones a
daemon answers when they are of another version."""
ASKS_REGISTRATIONS: Final = 0x01
"""In a `KEY_REQUEST`'s third byte (the first of its padding): tell in the `KEY` whether
registrations are taken. A daemon before it reads the padding not at all."""
NO_REGISTRATIONS: Final = 0x01
"""In the byte a `KEY` ends with when its request asked (`ASKS_REGISTRATIONS`): the
daemon takes no registrations. Its other bits are 0, and ignored."""

PUBLIC_KEY_BYTES: Final = 32
NOISE_MESSAGE_1_BYTES: Final = 48
"""Noise NK message 1 with an empty payload: the ephemeral key and a 16-byte tag."""
NOISE_MESSAGE_2_BYTES: Final = 64
"""Noise NK message 2: the ephemeral key, the 16-byte reset token, a 16-byte tag."""
MAX_COOKIE_BYTES: Final = 32
TAG_BYTES: Final = 16
DATA_HEADER_BYTES: Final = 13
"""`DATA`: type (1), receiver index (4), packet number (8)."""
SEAL_OVERHEAD: Final = DATA_HEADER_BYTES + TAG_BYTES
MAX_PAYLOAD: Final = MAX_DATAGRAM - SEAL_OVERHEAD
"""No sealed payload is larger than this."""
RESET_BYTES: Final = 1 + 4 + 16

MAX_FRAME: Final = 930
"""No single frame is larger than this, so one always fits in a payload with the link's
fields (acknowledgements, ranges, a path challenge)."""
SACK_RANGES_MAX: Final = 4
HISTORY_LIMIT_MAX: Final = 100
MAX_SEQ: Final = 2**53 - 1

Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
Index = Annotated[int, msgspec.Meta(ge=1, le=2**32 - 1)]
RequestId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
NAME_FIELD_MAX: Final = 64
"""The longest name a frame may carry (an account's name is shorter: see `rules`)."""
NameField = Annotated[str, msgspec.Meta(max_length=NAME_FIELD_MAX)]
PasswordField = Annotated[str, msgspec.Meta(max_length=1024)]
TextField = Annotated[str, msgspec.Meta(max_length=1200)]
Token = Annotated[str, msgspec.Meta(max_length=64)]
TicketField = Annotated[str, msgspec.Meta(max_length=512)]
KEEPALIVE: Final = 15.0
"""Seconds a client goes without sending before it sends a `ping`, unless its `welcome`
allows more: well inside the 30 s a NAT keeps a UDP mapping."""
Interval = Annotated[float, msgspec.Meta(ge=1, le=3600)]
"""A keepalive interval, in seconds."""
UNIX_TIME_MAX: Final = 1e11
"""The latest moment a frame carries (in the year 5138)."""
UnixTime = Annotated[float, msgspec.Meta(ge=0, le=UNIX_TIME_MAX)]
"""A moment as seconds since 1970-01-01 UTC (finite: JSON numbers too big for a float
decode as infinity, which this refuses)."""
Endpoint: TypeAlias = tuple[
    Annotated[str, msgspec.Meta(max_length=64)], Annotated[int, msgspec.Meta(ge=0, le=65535)]
]
"""An IP address and a UDP port, as `[host, port]`."""
ClientMessageId = Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_-]{1,24}$")]
"""Letters, digits, `_` and `-` only: it is echoed in `msg` and `pm` frames, whose size
must stay within `MAX_FRAME` whatever the names and the text."""


class WireError(ValueError):
    """Bytes from the network that are not a valid datagram, payload or frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- datagrams ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyRequest:
    """A client asks for the daemon's static public key (to trust it on first use)."""

    version: int
    asks_registrations: bool = False
    """Tell in the `Key` whether the daemon takes registrations."""


@dataclass(frozen=True, slots=True)
class Key:
    """The daemon's static public key: the answer to `KeyRequest`, and to an `Init` made
    with another key."""

    version: int
    public_key: bytes
    no_registrations: bool = False
    """The daemon takes no registrations (said only to a `KeyRequest` that asked; one
    that did not, or a daemon before it, leaves it false: not said)."""


@dataclass(frozen=True, slots=True)
class Init:
    """Noise message 1, from a client; `cookie` echoes a `Retry` (empty otherwise)."""

    version: int
    client_index: int
    cookie: bytes
    message: bytes


@dataclass(frozen=True, slots=True)
class Response:
    """Noise message 2, from the daemon: the channel exists once the client reads it."""

    version: int
    client_index: int
    server_index: int
    message: bytes


@dataclass(frozen=True, slots=True)
class Retry:
    """The daemon wants proof of address first: send the `Init` again with this cookie."""

    version: int
    client_index: int
    cookie: bytes


@dataclass(frozen=True, slots=True)
class Refused:
    """The daemon will not start a channel now (a sentence and maybe a time to wait)."""

    version: int
    code: str
    message: str
    retry_after: float | None


class Data(msgspec.Struct, frozen=True, gc=False):
    """A sealed record; `datagram` is kept whole, to be opened by its channel. (A Struct,
    not a dataclass: one is made for every datagram, and a Struct is made six times
    faster.)"""

    receiver_index: int
    packet_number: int
    datagram: bytes


@dataclass(frozen=True, slots=True)
class Reset:
    """The daemon has no session under `receiver_index`; `token` proves it is the daemon."""

    receiver_index: int
    token: bytes


Datagram: TypeAlias = KeyRequest | Key | Init | Response | Retry | Refused | Data | Reset

_INDEX: Final = struct.Struct(">I")
_DATA_HEADER: Final = struct.Struct(">BIQ")
_DATA_KIND: Final = bytes((DATA,))
_RESPONSE_HEADER: Final = struct.Struct(">BBII")


def _padded(head: bytes) -> bytes:
    return head + bytes(FIRST_FLIGHT_BYTES - len(head))


def key_request_datagram(*, asks_registrations: bool = False) -> bytes:
    asks = ASKS_REGISTRATIONS if asks_registrations else 0
    return _padded(bytes((KEY_REQUEST, PROTOCOL_VERSION, asks)))


def key_datagram(public_key: bytes, *, registrations: bool | None = None) -> bytes:
    """`KEY`; with `registrations` (for a request that asked), one byte more saying
    whether the daemon takes them."""
    head = bytes((KEY, PROTOCOL_VERSION)) + public_key
    if registrations is None:
        return head
    return head + bytes((0 if registrations else NO_REGISTRATIONS,))


def init_datagram(client_index: int, cookie: bytes, message: bytes) -> bytes:
    head = bytes((INIT, PROTOCOL_VERSION)) + _INDEX.pack(client_index)
    return _padded(head + bytes((len(cookie),)) + cookie + message)


def response_datagram(client_index: int, server_index: int, message: bytes) -> bytes:
    return _RESPONSE_HEADER.pack(RESPONSE, PROTOCOL_VERSION, client_index, server_index) + message


def retry_datagram(client_index: int, cookie: bytes) -> bytes:
    head = bytes((RETRY, PROTOCOL_VERSION)) + _INDEX.pack(client_index)
    return head + bytes((len(cookie),)) + cookie


def refused_datagram(code: str, message: str, retry_after: float | None = None) -> bytes:
    body = encode({"code": code, "message": message, "retry_after": retry_after})
    return bytes((REFUSED, PROTOCOL_VERSION)) + body


def data_header(receiver_index: int, packet_number: int) -> bytes:
    """The clear (and authenticated) start of a `DATA` datagram."""
    return _DATA_HEADER.pack(DATA, receiver_index, packet_number)


def data_receiver_index(datagram: bytes) -> int | None:
    """The receiver index of what looks like a `DATA` datagram (its header only, nothing
    checked beyond it), else None: for putting datagrams in order before reading them."""
    if datagram[:1] != _DATA_KIND or len(datagram) < DATA_HEADER_BYTES:
        return None
    index: int = _INDEX.unpack_from(datagram, 1)[0]
    return index


def data_packet_number(datagram: bytes) -> int:
    """The packet number of a `DATA` datagram already parsed as one."""
    packet_number: int = _DATA_HEADER.unpack_from(datagram)[2]
    return packet_number


def reset_datagram(receiver_index: int, token: bytes) -> bytes:
    return bytes((RESET,)) + _INDEX.pack(receiver_index) + token


class _RefusedBody(msgspec.Struct):
    code: Annotated[str, msgspec.Meta(max_length=64)]
    message: Annotated[str, msgspec.Meta(max_length=400)]
    retry_after: float | None = None


_refused_body = msgspec.json.Decoder(_RefusedBody)

_MALFORMED: Final = (msgspec.MsgspecError, RecursionError)
"""What the decoders raise for bytes that are not what they expect: JSON nested deeper
than the parser recurses (a 1200-byte datagram holds more than a thousand `[`s) is a
`RecursionError`, not a `MsgspecError`."""


def parse_datagram_untrusted(data: bytes) -> Datagram:
    """What a datagram is, from its first byte and layout; `WireError` if it is none."""
    if len(data) > MAX_DATAGRAM:
        raise WireError("too_large", f"Datagrams are at most {MAX_DATAGRAM} bytes.")
    if not data:
        raise WireError("bad_datagram", "An empty datagram is nothing.")
    kind = data[0]
    if kind == DATA:
        if len(data) < SEAL_OVERHEAD:
            raise WireError("bad_datagram", "A DATA datagram is too short.")
        _kind, index, packet_number = _DATA_HEADER.unpack_from(data)
        if not index:
            raise WireError("bad_field", _NO_INDEX)
        return Data(index, packet_number, data)
    if kind == RESET:
        if len(data) != RESET_BYTES:
            raise WireError("bad_datagram", "A RESET datagram has the wrong length.")
        return Reset(_index(data, 1), data[5:])
    if kind not in (KEY_REQUEST, KEY, INIT, RESPONSE, RETRY, REFUSED):
        raise WireError("unknown_type", f"Unknown datagram type {kind}.")
    if len(data) < 2:
        raise WireError("bad_datagram", "A datagram is too short.")
    version = data[1]
    if kind == REFUSED:
        # The same layout in every version: a client of another version can still read
        # why it was refused (`bad_version`, above all). The version is the caller's to check.
        try:
            body = _refused_body.decode(data[2:])
        except _MALFORMED:
            raise WireError("bad_datagram", "A REFUSED datagram's reason is malformed.") from None
        return Refused(version, body.code, body.message, body.retry_after)
    if version != PROTOCOL_VERSION:
        raise WireError("bad_version", f"This program speaks protocol version {PROTOCOL_VERSION}.")
    if kind == KEY_REQUEST:
        _first_flight(data)
        return KeyRequest(version, bool(data[2] & ASKS_REGISTRATIONS))
    if kind == INIT:
        _first_flight(data)
        client_index = _index(data, 2)
        length = data[6]
        if length > MAX_COOKIE_BYTES:
            raise WireError("bad_field", "An INIT's cookie is too long.")
        start = 7 + length
        return Init(
            version,
            client_index,
            data[7:start],
            data[start : start + NOISE_MESSAGE_1_BYTES],
        )
    if kind == KEY:
        # One byte more when its request asked whether registrations are taken.
        if len(data) not in (2 + PUBLIC_KEY_BYTES, 3 + PUBLIC_KEY_BYTES):
            raise WireError("bad_datagram", "A KEY datagram has the wrong length.")
        told = data[2 + PUBLIC_KEY_BYTES :]
        closed = bool(told) and bool(told[0] & NO_REGISTRATIONS)
        return Key(version, data[2 : 2 + PUBLIC_KEY_BYTES], closed)
    if kind == RESPONSE:
        if len(data) != _RESPONSE_HEADER.size + NOISE_MESSAGE_2_BYTES:
            raise WireError("bad_datagram", "A RESPONSE datagram has the wrong length.")
        _kind, _version, client_index, server_index = _RESPONSE_HEADER.unpack_from(data)
        if not client_index or not server_index:
            raise WireError("bad_field", _NO_INDEX)
        return Response(version, client_index, server_index, data[_RESPONSE_HEADER.size :])
    # RETRY, the one type left.
    if len(data) < 7 or data[6] > MAX_COOKIE_BYTES or len(data) != 7 + data[6]:
        raise WireError("bad_datagram", "A RETRY datagram has the wrong length.")
    return Retry(version, _index(data, 2), data[7:])


_NO_INDEX: Final = "Index 0 names no channel."


def _index(data: bytes, offset: int) -> int:
    """The index at `offset`: a channel's end, never 0 (section 3 of the protocol)."""
    index: int = _INDEX.unpack_from(data, offset)[0]
    if not index:
        raise WireError("bad_field", _NO_INDEX)
    return index


def _first_flight(data: bytes) -> None:
    if len(data) != FIRST_FLIGHT_BYTES:
        raise WireError(
            "bad_datagram", f"A client's first datagrams are padded to {FIRST_FLIGHT_BYTES} bytes."
        )


# --- the payload of a DATA datagram -----------------------------------------------------------
#
# One JSON object: the link's fields, any one-shot fields, then the frames, each `[seq,frame]`:
#
#     {"ack":12,"echo":9,"sack":[[15,16]],"frames":[[5,{"t":"say",...}]]}

PAYLOAD_CLOSE_OVERHEAD: Final = len(b',"frames":[]}')
"""Bytes `close_payload` adds around the frames (`}` alone when there are none)."""

NUMBERED_FRAME: Final = b"[%d,%b]"
"""One entry of `frames`, `NUMBERED_FRAME % (seq, frame)`: the frame with its sequence
number (a format, not a function: it runs once per recipient of every message)."""

PAYLOAD_HEAD: Final = b'{"ack":%d,"echo":%d'
"""`PAYLOAD_HEAD % (ack, echo)`: the start of a payload with no `sack`, the common case."""


def numbered_frame(seq: int, frame: bytes) -> bytes:
    """One entry of a payload's `frames` list: the frame with its sequence number."""
    return NUMBERED_FRAME % (seq, frame)


def payload_head(ack: int, echo: int, sack: list[tuple[int, int]]) -> bytes:
    """The acknowledgement fields that open every payload."""
    head = PAYLOAD_HEAD % (ack, echo)
    if sack:
        head += b',"sack":[' + b",".join(b"[%d,%d]" % pair for pair in sack) + b"]"
    return head


def challenge_field(challenge: str) -> bytes:
    """The daemon's path check, added to a payload after the client's address changed."""
    return b',"challenge":' + encode(challenge)


def response_field(challenge: str) -> bytes:
    """A client's answer to a path check."""
    return b',"response":' + encode(challenge)


def close_payload(head: bytes, frames: bytes) -> bytes:
    """Finish a payload: `frames` is the comma-separated `numbered_frame`s."""
    if frames:
        return b"".join((head, b',"frames":[', frames, b"]}"))
    return head + b"}"


SackRange = tuple[Seq, Seq]


class Payload(msgspec.Struct, gc=False):
    """A payload as read: `frames` holds `[seq, frame]` pairs, the frames left undecoded.

    `gc=False`, as for every frame below: what JSON decodes to is a tree of strings,
    numbers and lists, never part of a reference cycle, so the cycle collector need not
    track the thousands made each second (a receiver's cost per message fell ~10%).
    """

    ack: Seq = 0
    echo: Seq = 0
    sack: Annotated[list[SackRange], msgspec.Meta(max_length=SACK_RANGES_MAX)] = []
    frames: list[tuple[Seq, msgspec.Raw]] = []
    challenge: Token | None = None
    response: Token | None = None


# --- frames a client sends ---------------------------------------------------------------------


class _Frame(msgspec.Struct, tag_field="t", omit_defaults=True, kw_only=True, gc=False):
    pass


_SECRETS = frozenset({"password", "ticket", "old", "new"})


class _CarriesSecret:
    """Keeps a frame's password or ticket out of its repr, so no log line shows it."""

    __slots__ = ()

    def __repr__(self) -> str:
        fields: tuple[str, ...] = getattr(self, "__struct_fields__", ())
        shown = (
            f"{name}=..." if name in _SECRETS else f"{name}={getattr(self, name)!r}"
            for name in fields
        )
        return f"{type(self).__name__}({', '.join(shown)})"


class Register(_CarriesSecret, _Frame, tag="register"):
    """Create an account; `rid` names this request so that it is acted on once."""

    rid: RequestId
    name: NameField
    password: PasswordField


class Login(_CarriesSecret, _Frame, tag="login"):
    name: NameField
    password: PasswordField
    since: Seq | None = None
    """Resume: the newest message id this client has seen (it gets what came after)."""
    quiet: bool = False
    """Look without entering the room: no history, no messages, no join or leave notice."""
    replaces: Index | None = None
    """The daemon's index of this client's lost session, to be ended now (not left to
    time out: it would linger in `who` and hold back the `leave`)."""
    via: Endpoint | None = None
    """The client's own socket address: when the daemon sees the same one, nothing on
    the way translates addresses, and it allows a longer keepalive (see `Welcome`)."""
    batches: bool = False
    """The client reads `msgs` frames: messages stored together may come in one."""


class Resume(_CarriesSecret, _Frame, tag="resume"):
    """Log in again with the ticket an earlier `welcome` gave, instead of the password."""

    ticket: TicketField
    since: Seq | None = None
    quiet: bool = False
    replaces: Index | None = None
    via: Endpoint | None = None
    batches: bool = False


class Say(_Frame, tag="say"):
    text: TextField
    cid: ClientMessageId


class Whisper(_Frame, tag="whisper"):
    to: NameField
    text: TextField
    cid: ClientMessageId


class Who(_Frame, tag="who"):
    pass


class HistoryRequest(_Frame, tag="history"):
    limit: Annotated[int, msgspec.Meta(ge=1, le=HISTORY_LIMIT_MAX)] = 20
    before: Seq | None = None


class Ping(_Frame, tag="ping"):
    pass


class Logout(_Frame, tag="logout"):
    pass


class ChangePassword(_CarriesSecret, _Frame, tag="change_password"):
    """Give the session's account a new password; `old` is its password now."""

    old: PasswordField
    new: PasswordField


ClientFrame: TypeAlias = (
    Register
    | Login
    | Resume
    | Say
    | Whisper
    | Who
    | HistoryRequest
    | Ping
    | Logout
    | ChangePassword
)


# --- frames a daemon sends ------------------------------------------------------------------------


class Registered(_Frame, tag="registered"):
    re: Seq
    name: str


class Welcome(_CarriesSecret, _Frame, tag="welcome"):
    re: Seq
    name: str
    unread: int = 0
    ticket: str = ""
    keepalive: Interval | None = None
    """The longest the client may go without sending (a `ping` then), if not 15 s."""
    time: UnixTime | None = None
    """The daemon's clock as it sent the welcome: the client times its keepalives by it."""
    muted: bool | None = None
    """Whether the daemon's operator muted the account (it reads the room and says
    nothing); None from a daemon that does not say, which changes nothing."""


class PasswordChanged(_CarriesSecret, _Frame, tag="password_changed"):
    """The answer to `change_password`, once the new password is stored: a ticket under
    it (those of before no longer log in)."""

    re: Seq
    ticket: str


class Ok(_Frame, tag="ok"):
    re: Seq
    id: Seq | None = None
    ts: str | None = None
    to: str | None = None
    """For a `whisper`: the recipient's name as the server keeps it."""
    count: int | None = None


class ErrorFrame(_Frame, tag="error"):
    code: str
    message: str
    re: Seq | None = None
    retry_after: float | None = None
    # On `unknown_user` for a login: the daemon takes no registrations either.
    no_registrations: bool = False


class Msg(_Frame, tag="msg"):
    id: Seq
    ts: str
    sender: str = msgspec.field(name="from")
    text: str
    cid: str | None = None
    history: bool = False
    re: Seq | None = None


class Msgs(_Frame, tag="msgs"):
    """Room messages stored together, in order, for a client that logged in with
    `batches`: one frame (and one sequence number) for what would be several `msg`s."""

    messages: list[Msg]


class Pm(_Frame, tag="pm"):
    id: Seq
    ts: str
    sender: str = msgspec.field(name="from")
    to: str
    text: str
    cid: str | None = None
    history: bool = False
    re: Seq | None = None


class Join(_Frame, tag="join"):
    name: str
    ts: str
    back: bool = False
    """The account comes back after losing its session (a daemon restart, an outage),
    rather than entering anew: its login continued from where it was."""


class Leave(_Frame, tag="leave"):
    name: str
    ts: str
    reason: str = "quit"


class Names(_Frame, tag="names"):
    re: Seq
    names: list[str]


class Ready(_Frame, tag="ready"):
    """Ends the history sent on login: `count` messages, `more` if older ones were cut."""

    count: int
    more: bool = False
    upto: Seq | None = None
    """Every message up to this id was on disk when the history was chosen: shown in it,
    or left out of it on purpose. A resume of the session asks for what came after."""
    gap: Seq | None = None
    """With `more`, after a resume: every message from this id on (up to `upto`) that the
    session may see was in this history, or is waiting for it; what it missed before this
    id is for `history` pages with `before` = this id to bring."""


class Notice(_Frame, tag="notice"):
    text: str
    muted: bool | None = None
    """Set when the notice says the operator muted (true) or unmuted (false) the account."""


MUTED_NOTICE: Final = (
    "The daemon's operator muted this account: you can read the room, and say nothing in it "
    "until unmuted."
)
"""The daemon's `notice` when the operator mutes an account, and a client's note of a
`welcome` that says it is muted (coming back, if it was not before)."""
UNMUTED_NOTICE: Final = "The daemon's operator unmuted this account: you can talk again."
REGISTRATIONS_CLOSED: Final = "This daemon takes no registrations; ask its operator for an account."
"""The daemon's `registrations_closed`, and a client's sentence when its `KEY` said so."""
BANNED_UNTIL: Final = "The daemon's operator turned your address away until {}; ask them why."
"""A ban's refusal, with when it ends (`YYYY-MM-DD HH:MM:SS UTC` from the daemon; a
client may say it in its person's time zone)."""


class Bye(_Frame, tag="bye"):
    reason: str
    message: str
    until: UnixTime | None = None
    """For `banned`: when the ban ends, by the daemon's clock (none: for good)."""


class Unsaid(_Frame, tag="unsaid"):
    """The operator removed the room's message `id` from its history (`trio-chat messages
    remove`): a client that shows it shows it no more."""

    id: Seq


class Keepalive(_Frame, tag="keepalive"):
    """From now on, send a `ping` after `every` seconds without sending anything."""

    every: Interval


ServerFrame: TypeAlias = (
    Registered
    | Welcome
    | PasswordChanged
    | Ok
    | ErrorFrame
    | Msg
    | Msgs
    | Pm
    | Join
    | Leave
    | Names
    | Ready
    | Notice
    | Bye
    | Keepalive
    | Unsaid
)


# --- encoding and decoding ------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()
encode = _encoder.encode

_payload = msgspec.json.Decoder(Payload)
_client_frame = msgspec.json.Decoder(ClientFrame)
_server_frame = msgspec.json.Decoder(ServerFrame)
_any_object = msgspec.json.Decoder(dict[str, Any])

_DETAIL_MAX = 100


def _short(text: str) -> str:
    """Text that came from the peer, on one line and cut short, fit to quote in an error.

    An error goes back in one frame, so it must never grow with the input.
    """
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 3] + "..."


def decode_payload_untrusted(data: bytes) -> Payload:
    """The link's fields and raw frames of an opened `DATA` payload (all of it UTF-8)."""
    try:
        if not data.isascii():  # what is ASCII is UTF-8, and most payloads are
            data.decode()  # frames are kept undecoded, and fields ignored are not checked
        return _payload.decode(data)
    except UnicodeDecodeError:
        raise WireError("bad_payload", "A payload must be UTF-8.") from None
    except _MALFORMED as error:
        raise WireError("bad_payload", f"Malformed payload: {_short(str(error))}.") from None


def _tags(frames: object) -> tuple[str, ...]:
    return tuple(kind.__struct_config__.tag for kind in typing.get_args(frames))


CLIENT_FRAME_TYPES: Final = _tags(ClientFrame)
"""Every frame type a client may send, as the `t` field spells it."""
SERVER_FRAME_TYPES: Final = _tags(ServerFrame)
"""Every frame type the daemon sends."""


def _frame_error(
    raw: bytes | msgspec.Raw, error: msgspec.MsgspecError | RecursionError, known: tuple[str, ...]
) -> WireError:
    """`bad_field` for a frame of a known type with a bad field, else `bad_request`."""
    try:
        kind = _any_object.decode(raw).get("t")
    except _MALFORMED:
        return WireError("bad_request", "A frame must be one JSON object.")
    if not (isinstance(kind, str) and kind in known):
        return WireError("bad_request", f"Unknown frame type {_short(repr(kind))}.")
    return WireError("bad_field", f"Malformed {kind!r} frame: {_short(str(error))}.")


def decode_client_frame_untrusted(raw: bytes | msgspec.Raw) -> ClientFrame:
    """Parse one frame from a client's payload."""
    try:
        frame: ClientFrame = _client_frame.decode(raw)
    except _MALFORMED as error:
        raise _frame_error(raw, error, CLIENT_FRAME_TYPES) from None
    return frame


def answered_untrusted(raw: bytes | msgspec.Raw) -> int | None:
    """The request a frame of a known type that did not decode names (`re`), if it names
    one: its request fails, rather than wait for an answer that came. A frame of a type
    this program does not know names nothing (a newer daemon's, ignored)."""
    try:
        frame = _any_object.decode(raw)
    except _MALFORMED:
        return None
    re = frame.get("re")
    return re if type(re) is int and frame.get("t") in SERVER_FRAME_TYPES else None


def decode_server_frame_untrusted(raw: bytes | msgspec.Raw) -> ServerFrame:
    """Parse one frame from a daemon's payload."""
    try:
        frame: ServerFrame = _server_frame.decode(raw)
    except _MALFORMED as error:
        raise _frame_error(raw, error, SERVER_FRAME_TYPES) from None
    return frame


MSGS_HEAD: Final = b'{"t":"msgs","messages":['
MSGS_TAIL: Final = b"]}"


def message_batches(frames: list[bytes]) -> list[bytes]:
    """Encoded `msg` frames, in order, packed into as few `msgs` frames as fit `MAX_FRAME`
    each; a frame that would travel alone stays a `msg`."""
    room = MAX_FRAME - len(MSGS_HEAD) - len(MSGS_TAIL)
    batches: list[bytes] = []
    batch: list[bytes] = []
    size = -1  # no comma before the first
    for frame in frames:
        if batch and size + 1 + len(frame) > room:
            batches.append(_msgs(batch))
            batch, size = [], -1
        batch.append(frame)
        size += 1 + len(frame)
    if batch:
        batches.append(_msgs(batch))
    return batches


def _msgs(frames: list[bytes]) -> bytes:
    if len(frames) == 1:
        return frames[0]
    return b"".join((MSGS_HEAD, b",".join(frames), MSGS_TAIL))
