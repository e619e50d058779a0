"""Every datagram and frame trio-chat sends, with their limits, encoders and decoders.

A datagram is one UTF-8 JSON object of at most `MAX_DATAGRAM` bytes whose `"t"` field
names its type. Before a session exists, a client sends `register` and `login`
datagrams, each answered by one datagram. Within a session both sides send `s`
(session) datagrams: a reliable link header (packet number, cumulative and selective
acks) carrying numbered *frames*, each frame one JSON object tagged by `"t"` too.
`docs/protocol.md` is the prose version of this module.

Functions that parse bytes from the network say so: `*_untrusted`. They raise
`WireError` with a stable code; they never raise anything else. The functions under
"session datagram bytes" build the envelope of a session datagram around frames that
are already encoded, so that a frame fanned out to many sessions is encoded once.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, TypeAlias

import msgspec

PROTOCOL_VERSION: Final = 1
MAX_DATAGRAM: Final = 1200
"""No datagram, in either direction, is larger than this many bytes."""

MAX_FRAME: Final = 930
"""No single frame is larger than this, so one always fits in a datagram with its header."""

SACK_RANGES_MAX: Final = 4
HISTORY_LIMIT_MAX: Final = 100
MAX_SEQ: Final = 2**53 - 1

Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
Sid = Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)]
RequestId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
NameField = Annotated[str, msgspec.Meta(max_length=64)]
PasswordField = Annotated[str, msgspec.Meta(max_length=1024)]
TextField = Annotated[str, msgspec.Meta(max_length=1200)]
Token = Annotated[str, msgspec.Meta(max_length=64)]
ClientMessageId = Annotated[str, msgspec.Meta(min_length=1, max_length=24)]


class WireError(ValueError):
    """Bytes from the network that are not a valid datagram or frame."""

    def __init__(self, code: str, message: str, rid: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.rid = rid
        """The request the bad datagram made, when it could be read that far."""


class _Datagram(msgspec.Struct, tag_field="t", kw_only=True):
    # Every field is encoded (no omit_defaults), so `v` is always on the wire.
    v: int = PROTOCOL_VERSION


class _Frame(msgspec.Struct, tag_field="t", omit_defaults=True, kw_only=True):
    pass


# --- datagrams outside a session -------------------------------------------------------


class _CarriesPassword:
    """Keeps a request's password out of its repr, so no log line or traceback shows it."""

    __slots__ = ()
    rid: str
    name: str

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rid={self.rid!r}, name={self.name!r}, password=...)"


class Register(_CarriesPassword, _Datagram, tag="register", kw_only=True):
    rid: RequestId
    name: NameField
    password: PasswordField


class Login(_CarriesPassword, _Datagram, tag="login", kw_only=True):
    rid: RequestId
    name: NameField
    password: PasswordField
    since: Seq | None = None
    """Resume: the newest message id this client has seen (it gets what came after)."""
    quiet: bool = False
    """Look without entering the room: no history, no messages, no join or leave notice."""


class Registered(_Datagram, tag="registered", kw_only=True):
    rid: RequestId
    name: str


class Welcome(_Datagram, tag="welcome", kw_only=True):
    rid: RequestId
    sid: Sid
    token: Token
    name: str
    unread: int = 0


class Pending(_Datagram, tag="pending", kw_only=True):
    """The server has the request and is still working on it (hashing is slow on purpose)."""

    rid: RequestId


class ErrorReply(_Datagram, tag="error", kw_only=True):
    code: str
    message: str
    rid: RequestId | None = None
    sid: Sid | None = None
    retry_after: float | None = None


# --- the session datagram ---------------------------------------------------------------

SackRange = tuple[Seq, Seq]


class Packet(_Datagram, tag="s", kw_only=True):
    """A session datagram. `frames` holds `[seq, frame]` pairs, frames left undecoded."""

    sid: Sid
    pn: Seq
    token: Token | None = None
    ack: Seq = 0
    sack: Annotated[list[SackRange], msgspec.Meta(max_length=SACK_RANGES_MAX)] = []
    echo: Seq = 0
    """The highest packet number received from the other side so far (RTT samples)."""
    frames: list[tuple[Seq, msgspec.Raw]] = []
    challenge: Token | None = None
    response: Token | None = None


# --- frames a client sends ---------------------------------------------------------------


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


ClientFrame: TypeAlias = Say | Whisper | Who | HistoryRequest | Ping | Logout


# --- frames a server sends ---------------------------------------------------------------


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


class Msg(_Frame, tag="msg"):
    id: Seq
    ts: str
    sender: str = msgspec.field(name="from")
    text: str
    cid: str | None = None
    history: bool = False
    re: Seq | None = None


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


class Notice(_Frame, tag="notice"):
    text: str


class Bye(_Frame, tag="bye"):
    reason: str
    message: str


ServerFrame: TypeAlias = Ok | ErrorFrame | Msg | Pm | Join | Leave | Names | Ready | Notice | Bye

ClientDatagram: TypeAlias = Register | Login | Packet
ServerDatagram: TypeAlias = Registered | Welcome | Pending | ErrorReply | Packet


# --- encoding ------------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()
encode = _encoder.encode


# --- session datagram bytes ------------------------------------------------------------------
#
# A session datagram is `prefix` (the fields naming the session), the link fields, any
# one-shot fields (`challenge`, `response`), then the frames, each `[seq,frame]`:
#
#     {"v":1,"t":"s","sid":7,"token":"T","pn":3,"ack":12,"sack":[[15,16]],"frames":[[5,{...}]]}

PACKET_CLOSE_OVERHEAD: Final = len(b',"frames":[]}')
"""Bytes `close_packet` adds around the frames (`}` alone when there are none)."""


def session_prefix(sid: int, token: str | None = None) -> bytes:
    """The start of every session datagram of one session (a client adds its token)."""
    prefix = b'{"v":%d,"t":"s","sid":%d' % (PROTOCOL_VERSION, sid)
    if token is not None:
        prefix += b',"token":' + encode(token)
    return prefix


NUMBERED_FRAME: Final = b"[%d,%b]"
"""One entry of a datagram's `frames` list, `NUMBERED_FRAME % (seq, frame)`: the frame
with its sequence number (a format, not a function: it runs once per recipient of every
message, where a call costs as much as the formatting)."""


def numbered_frame(seq: int, frame: bytes) -> bytes:
    """One entry of a datagram's `frames` list: the frame with its sequence number."""
    return NUMBERED_FRAME % (seq, frame)


LINK_HEAD: Final = b'%b,"pn":%d,"ack":%d,"echo":%d'
"""`LINK_HEAD % (prefix, pn, ack, echo)`: the start of a session datagram with no `sack`
(`link_fields` in one format, for the common case)."""


def link_fields(pn: int, ack: int, sack: list[tuple[int, int]], echo: int = 0) -> bytes:
    """The packet number and acknowledgement fields of a session datagram."""
    fields = b',"pn":%d,"ack":%d,"echo":%d' % (pn, ack, echo)
    if sack:
        fields += b',"sack":[' + b",".join(b"[%d,%d]" % pair for pair in sack) + b"]"
    return fields


def challenge_field(challenge: str) -> bytes:
    """The daemon's address check, added to a session datagram (see `Packet.challenge`)."""
    return b',"challenge":' + encode(challenge)


def response_field(challenge: str) -> bytes:
    """A client's answer to an address check."""
    return b',"response":' + encode(challenge)


def close_packet(head: bytes, frames: bytes) -> bytes:
    """Finish a session datagram: `frames` is the comma-separated `numbered_frame`s."""
    if frames:
        return b"".join((head, b',"frames":[', frames, b"]}"))
    return head + b"}"


# --- decoding untrusted bytes ----------------------------------------------------------------


_client_datagram = msgspec.json.Decoder(ClientDatagram)
_server_datagram = msgspec.json.Decoder(ServerDatagram)
_client_frame = msgspec.json.Decoder(ClientFrame)
_server_frame = msgspec.json.Decoder(ServerFrame)
_any_object = msgspec.json.Decoder(dict[str, Any])


_DETAIL_MAX = 100
_VERSION_FIRST = b'{"v":%d,' % PROTOCOL_VERSION
_VERSION_AFTER_TAG = b'","v":%d,' % PROTOCOL_VERSION
"""How every datagram trio-chat encodes begins (`{"v":1,` or `{"t":"<type>","v":1,`),
so that `v` is known to be there without a second parse."""


def _short(text: str) -> str:
    """Text that came from the peer, on one line and cut short, fit to quote in an error.

    An error goes back in one frame or datagram, so it must never grow with the input.
    """
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 3] + "..."


def _is_known(kind: object, known: frozenset[str]) -> bool:
    return isinstance(kind, str) and kind in known


def _bad_version() -> WireError:
    return WireError("bad_version", f"This server speaks protocol version {PROTOCOL_VERSION}.")


def _request_id(fields: dict[str, Any]) -> str | None:
    """The `rid` of a request that failed to decode, if it holds a valid one."""
    rid = fields.get("rid")
    if isinstance(rid, str) and 1 <= len(rid) <= 64:
        return rid
    return None


def _explain(data: bytes, error: msgspec.MsgspecError | None, known: frozenset[str]) -> WireError:
    """Why `data` is not a valid datagram, as the most specific error code there is."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return WireError("bad_datagram", "A datagram must be UTF-8 encoded JSON.")
    try:
        fields = _any_object.decode(data)
    except msgspec.MsgspecError:
        return WireError("bad_datagram", "A datagram must be one JSON object.")
    version = fields.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        wrong = _bad_version()
    elif not _is_known(fields.get("t"), known):
        kind = fields.get("t")
        wrong = WireError("unknown_type", f"Unknown datagram type {_short(repr(kind))}.")
    else:
        detail = _short(str(error)) if error is not None else "invalid"
        wrong = WireError("bad_field", f"Malformed {fields['t']!r} datagram: {detail}.")
    wrong.rid = _request_id(fields)
    return wrong


_CLIENT_TYPES = frozenset({"register", "login", "s"})
_SERVER_TYPES = frozenset({"registered", "welcome", "pending", "error", "s"})


def _decode_datagram(data: bytes, decoder: msgspec.json.Decoder[Any], known: frozenset[str]) -> Any:
    if len(data) > MAX_DATAGRAM:
        raise WireError("too_large", f"Datagrams are at most {MAX_DATAGRAM} bytes.")
    try:
        datagram = decoder.decode(data)
    except msgspec.MsgspecError as error:
        raise _explain(data, error, known) from None
    if datagram.v != PROTOCOL_VERSION or not _versioned(data, datagram):
        # `v` has a default for encoding; a datagram that left it out (or put it later,
        # which JSON allows) is checked the slow way, off the hot path.
        raise_if_unversioned(data, known)
    return datagram


def _versioned(data: bytes, datagram: Any) -> bool:
    """Whether `data` opens the way trio-chat writes it, with `v` first or after `t`."""
    if data.startswith(_VERSION_FIRST):
        return True
    tag = datagram.__struct_config__.tag.encode()
    return data.startswith(b'{"t":"') and data[6 : 6 + len(tag) + len(_VERSION_AFTER_TAG)] == (
        tag + _VERSION_AFTER_TAG
    )


def raise_if_unversioned(data: bytes, known: frozenset[str]) -> None:
    """Raise `bad_version` unless `data` carries `"v": 1` (an integer) at its top level."""
    try:
        fields = _any_object.decode(data)
    except msgspec.MsgspecError:
        raise _explain(data, None, known) from None
    version = fields.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        error = _bad_version()
        error.rid = _request_id(fields)
        raise error


def decode_client_datagram_untrusted(data: bytes) -> ClientDatagram:
    """Parse a datagram a client sent; raise `WireError` if it is not a valid one."""
    datagram: ClientDatagram = _decode_datagram(data, _client_datagram, _CLIENT_TYPES)
    return datagram


def decode_server_datagram_untrusted(data: bytes) -> ServerDatagram:
    """Parse a datagram a server sent; raise `WireError` if it is not a valid one."""
    datagram: ServerDatagram = _decode_datagram(data, _server_datagram, _SERVER_TYPES)
    return datagram


_CLIENT_FRAME_TYPES = frozenset({"say", "whisper", "who", "history", "ping", "logout"})
_SERVER_FRAME_TYPES = frozenset(
    {"ok", "error", "msg", "pm", "join", "leave", "names", "ready", "notice", "bye"}
)


def _frame_error(
    raw: bytes | msgspec.Raw, error: msgspec.MsgspecError, known: frozenset[str]
) -> WireError:
    """`bad_field` for a frame of a known type with a bad field, else `bad_request`."""
    try:
        kind = _any_object.decode(raw).get("t")
    except msgspec.MsgspecError:
        return WireError("bad_request", "A frame must be one JSON object.")
    if not _is_known(kind, known):
        return WireError("bad_request", f"Unknown frame type {_short(repr(kind))}.")
    return WireError("bad_field", f"Malformed {kind!r} frame: {_short(str(error))}.")


def decode_client_frame_untrusted(raw: bytes | msgspec.Raw) -> ClientFrame:
    """Parse one frame from a client's session datagram."""
    try:
        frame: ClientFrame = _client_frame.decode(raw)
    except msgspec.MsgspecError as error:
        raise _frame_error(raw, error, _CLIENT_FRAME_TYPES) from None
    return frame


def decode_server_frame_untrusted(raw: bytes | msgspec.Raw) -> ServerFrame:
    """Parse one frame from a server's session datagram."""
    try:
        frame: ServerFrame = _server_frame.decode(raw)
    except msgspec.MsgspecError as error:
        raise _frame_error(raw, error, _SERVER_FRAME_TYPES) from None
    return frame
