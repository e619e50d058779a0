"""Seeded generators of hostile datagrams for protocol version 3, in three layers.

- `outside`: what anyone can send without a channel: random bytes, and each datagram type
  (`KEY_REQUEST`, `INIT`, an `INIT` echoing a `RETRY`'s cookie, `DATA`, `RESET`, the
  daemon's own types) with lengths, fields, versions and indexes mutated.
- `record_attack`: records on a real channel that must be dropped before anything in them
  is read: a wrong tag, bits flipped, cut or grown, replayed, too old for the replay
  window, sealed with another channel's keys, the daemon's own records sent back.
- `hostile`: the malicious client. Authentic records (the fuzzer holds the channel's keys,
  see `FuzzChannel`) whose payloads are hostile: broken JSON, wrong types, huge numbers,
  odd strings, unknown and malformed frames, bogus acknowledgements, frames out of order,
  records held back and sent late; on a channel logged in, not yet logged in, or logged
  out (the caller picks the channel).

Every choice comes from one `random.Random(seed)`. Each call returns a `Shot`, which the
caller must send: the channel's model counts what the daemon takes of it. `learn()` hands
the generator what the daemon answered from a source, so that some of what it sends
from there echoes real cookies. A channel not logged in is sent at most one `login` or
`resume` that works (the right password, a real ticket) until it is welcomed: another is
made not to work, unless `double_logins`.
"""

from __future__ import annotations

import json
import random
import string
from collections import Counter, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import wire
from ..noise import generate_keypair
from ..rules import name_key
from ..secure import REPLAY_WINDOW, initiate
from .fuzz_channel import FuzzChannel

_ODD_STRINGS = (
    "",
    " ",
    "\x00",
    "\ud800",  # a lone surrogate: invalid in the payload's JSON, whatever its spelling
    "\udfff\ud800",
    "\u202e\u0301",
    "\ufeff",
    "\u2028\u2029",
    "\x1b[31m",
    "\t\n\r\b\f",
    '"\\/',
    "%s%n%x",
    "'; DROP TABLE accounts; --",
    "../../../etc/passwd",
    "null",
    "Ａｌｉｃｅ",
    "ALICE",
    "alice",
    "fuzz0",
    "🙂" * 130,  # 520 bytes of UTF-8: over the text limit
    "é" * 251,  # 502 bytes
    "a" * 500,
    "a" * 501,
    "x" * 65,  # over a challenge's, a request id's and a name's length
    "y" * 513,  # over a ticket's
    "z" * 1100,
)
_ODD_NUMBERS: tuple[Any, ...] = (
    0,
    -1,
    1,
    2,
    100,
    101,
    255,
    256,
    257,
    2**31,
    2**32,
    2**53 - 1,
    2**53,
    2**63,
    2**64,
    -(2**63),
    10**30,
    10**400,
    1e308,
    -0.0,
    0.5,
    1e-300,
    float("inf"),
    float("nan"),
    True,
    False,
)
_WORDS = (
    "t",
    "ack",
    "echo",
    "sack",
    "frames",
    "challenge",
    "response",
    "text",
    "cid",
    "to",
    "name",
    "password",
    "rid",
    "ticket",
    "since",
    "quiet",
    "limit",
    "before",
    "re",
    "x",
)
CLIENT_FRAME_TYPES = wire.CLIENT_FRAME_TYPES
SERVER_FRAME_TYPES = wire.SERVER_FRAME_TYPES
FUZZ_PASSWORD = "fuzzing-password"
"""The password of the accounts the fuzzer logs in as."""
OUTSIDE_KINDS = (
    "random_bytes",
    "key_request",
    "bad_version",
    "init",
    "cookie_echo",
    "data",
    "daemon_type",
    "unknown_type",
)
RECORD_KINDS = (
    "bad_tag",
    "zero_tag",
    "flipped",
    "header",
    "truncated",
    "extended",
    "replayed",
    "stale",
    "foreign",
    "reflected",
)
PAYLOAD_KINDS = (
    "frames",
    "stream",
    "acks",
    "wrong_types",
    "broken_json",
    "not_object",
    "deep",
    "big",
    "late",
    "pn_jump",
)


@dataclass(frozen=True, slots=True)
class Shot:
    """One hostile datagram: its layer (`outside`, `record`, `payload`) and kind."""

    layer: str
    kind: str
    data: bytes


def dumps(value: Any, *, ascii_only: bool = True) -> bytes:
    """JSON as Python writes it, lone surrogates and `NaN` included (both invalid JSON)."""
    text = json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":"))
    return text.encode("utf-8", "surrogatepass")


class Garbage:
    """A seeded source of hostile datagrams; see the module docstring.

    `server_key` is the daemon's static public key (for `INIT`s it can read); `names`
    the fuzzer's accounts (their password is `FUZZ_PASSWORD`), `others` other people's
    (whispered to, and now and then a login tried); `tickets` real resumption tickets,
    which the caller adds to as it gets them.
    """

    def __init__(
        self,
        seed: int,
        server_key: bytes,
        *,
        names: Sequence[str] = ("fuzz0",),
        others: Sequence[str] = ("alice", "bob"),
        logout_weight: float = 1.0,
        double_logins: bool = False,
    ) -> None:
        self.random = random.Random(seed)
        self.server_key = server_key
        self.names = list(names)
        self.others = list(others)
        self.tickets: list[str] = []
        self.logout_weight = logout_weight
        """The weight of `logout` (which ends the channel) among the kinds of frames, which
        weigh 82 together."""
        self.double_logins = double_logins
        """Whether a channel may be sent a second `login` or `resume` that works while the
        first is still being checked."""
        self.counts: Counter[tuple[str, str]] = Counter()
        self._other_key = generate_keypair()[1]
        self._cookies: dict[Hashable, deque[tuple[int, bytes]]] = {}
        self._inits: deque[bytes] = deque(maxlen=16)
        self._cids: deque[str] = deque(maxlen=32)
        self._outside: list[tuple[str, Callable[[Hashable, Sequence[FuzzChannel]], bytes]]] = [
            ("random_bytes", self._random_bytes),
            ("key_request", self._key_request),
            ("bad_version", self._bad_version),
            ("init", self._init),
            ("init", self._init),
            ("cookie_echo", self._cookie_echo),
            ("data", self._data),
            ("data", self._data),
            ("daemon_type", self._daemon_type),
            ("unknown_type", self._unknown_type),
        ]
        self._payloads: dict[str, Callable[[FuzzChannel], bytes]] = {
            "frames": self._payload_frames,
            "stream": self._payload_stream,
            "acks": self._payload_acks,
            "wrong_types": self._payload_wrong_types,
            "broken_json": self._payload_broken_json,
            "not_object": self._payload_not_object,
            "deep": self._payload_deep,
            "big": self._payload_big,
        }

    # --- values --------------------------------------------------------------------------

    def value(self, depth: int = 0) -> Any:
        """Any JSON value (or nearly: `NaN`, lone surrogates), small, fond of edge cases."""
        r = self.random
        roll = r.random()
        if depth > 3 or roll < 0.25:
            return r.choice(_ODD_NUMBERS)
        if roll < 0.5:
            return r.choice(_ODD_STRINGS) if r.random() < 0.5 else self.text(r.randrange(40))
        if roll < 0.6:
            return r.choice([None, True, False])
        if roll < 0.8:
            return [self.value(depth + 1) for _ in range(r.randrange(4))]
        return {r.choice(_WORDS): self.value(depth + 1) for _ in range(r.randrange(4))}

    def text(self, length: int) -> str:
        alphabet = 'abcdefgh é中🙂\n\t"\\/\x00\x7f\u2028\u0301'
        return "".join(self.random.choice(alphabet) for _ in range(length))

    def word(self, length: int = 8) -> str:
        return "".join(self.random.choices(string.ascii_letters + string.digits, k=length))

    def odd_or(self, usual: Any, odd: float = 0.15) -> Any:
        """`usual`, or now and then an odd value in its place."""
        return self.value() if self.random.random() < odd else usual

    def _pick(self, weights: Sequence[tuple[str, float]]) -> str:
        kinds = [kind for kind, _ in weights]
        return self.random.choices(kinds, weights=[w for _, w in weights])[0]

    def _count(self, layer: str, kind: str, data: bytes) -> Shot:
        self.counts[(layer, kind)] += 1
        return Shot(layer, kind, data)

    # --- frames ---------------------------------------------------------------------------

    def request_frame(
        self, channel: FuzzChannel | None = None, kind: str | None = None
    ) -> dict[str, Any]:
        """A frame a client sends on `channel` (of `kind`, or any), mostly well-formed,
        its contents odd now and then."""
        r = self.random
        kind = kind or self._pick(
            [
                ("say", 25),
                ("whisper", 12),
                ("who", 8),
                ("history", 10),
                ("ping", 10),
                ("login", 6),
                ("register", 5),
                ("resume", 6),
                ("logout", self.logout_weight),
            ]
        )
        frame: dict[str, Any] = {"t": kind}
        if kind in ("say", "whisper"):
            frame["text"] = self.odd_or(self.text(r.randrange(1, 60)), 0.2)
            frame["cid"] = self.cid()
        if kind == "whisper":
            frame["to"] = self.odd_or(r.choice([*self.names, *self.others, "nobody", "ALICE"]))
        elif kind == "history":
            if r.random() < 0.8:
                frame["limit"] = self.odd_or(r.randrange(1, 101))
            if r.random() < 0.5:
                frame["before"] = self.odd_or(r.randrange(0, 1000))
        elif kind == "login":
            # Mostly the fuzzer's own accounts: another's costs the daemon a hash to refuse.
            pool = self.others if r.random() < 0.05 else [*self.names, "nobody", "Ｆｕｚｚ0"]
            frame["name"] = self.odd_or(r.choice(pool))
            frame["password"] = self.password()
            if r.random() < 0.3:
                frame["since"] = self.odd_or(r.randrange(0, 100))
            if r.random() < 0.2:
                frame["quiet"] = self.odd_or(r.random() < 0.5)
        elif kind == "register":
            frame["rid"] = self.odd_or(self.word(12))
            frame["name"] = self.odd_or(self.register_name())
            frame["password"] = self.password()
        elif kind == "resume":
            frame["ticket"] = self.ticket()
            if r.random() < 0.3:
                frame["since"] = self.odd_or(r.randrange(0, 100))
        if channel is not None:
            self._one_login(channel, frame)
        return frame

    def _one_login(self, channel: FuzzChannel, frame: dict[str, Any]) -> None:
        """Spoil a second login that works on a channel not yet welcomed (but with
        `double_logins`)."""
        if self._logs_in(frame) and channel.account is None:
            if channel.credentials_pending and not self.double_logins:
                frame["password" if frame["t"] == "login" else "ticket"] = "not-the-right-one"
            channel.credentials_pending = True

    def login_frame(self, channel: FuzzChannel) -> dict[str, Any]:
        """A `login` or `resume` for `channel`, one that works half of the time."""
        r = self.random
        if r.random() < 0.5:
            return self.request_frame(channel, r.choice(("login", "resume")))
        if self.tickets and r.random() < 0.5:
            frame = {"t": "resume", "ticket": r.choice(self.tickets)}
        else:
            frame = {"t": "login", "name": r.choice(self.names), "password": FUZZ_PASSWORD}
        self._one_login(channel, frame)
        return frame

    def _logs_in(self, frame: dict[str, Any]) -> bool:
        """Whether a `login` or `resume` frame carries what logs a channel in."""
        if frame["t"] == "login":
            name = frame.get("name")
            known = {name_key(n) for n in self.names}
            return (
                frame.get("password") == FUZZ_PASSWORD
                and isinstance(name, str)
                and name_key(name) in known
            )
        return frame["t"] == "resume" and frame.get("ticket") in self.tickets

    def cid(self) -> Any:
        r = self.random
        if self._cids and r.random() < 0.15:
            return r.choice(self._cids)  # a message sent again: answered, not stored twice
        cid = self.odd_or(self.word(r.randrange(1, 25)), 0.1)
        if isinstance(cid, str):
            self._cids.append(cid)
        return cid

    def password(self) -> Any:
        """Mostly a password refused without a hash (too short or too long): a hash costs
        the daemon tens of milliseconds; now and then one it must check."""
        r = self.random
        roll = r.random()
        if roll < 0.5:
            return self.word(r.randrange(0, 8))
        if roll < 0.7:
            return "p" * r.randrange(257, 1100)
        if roll < 0.8:
            return self.value()
        if roll < 0.97:
            return FUZZ_PASSWORD  # refused on a channel logged in, which costs no hash
        return "wrong-but-long-enough"

    def register_name(self) -> str:
        r = self.random
        roll = r.random()
        if roll < 0.4:
            return r.choice([*self.names, *self.others])  # taken
        if roll < 0.9:
            return r.choice(("", "bad name", "-x", "x" * 33, "名字!", "\u0301a", "a\x00b"))
        return f"fz{self.word(6)}"  # free: a new account (its password is mostly refused)

    def ticket(self) -> Any:
        r = self.random
        if self.tickets and r.random() < 0.3:
            ticket: str = r.choice(self.tickets)
            if r.random() < 0.5:
                return ticket  # a real one: it logs the channel in
            at = r.randrange(len(ticket))
            return ticket[:at] + r.choice("AQgw-_") + ticket[at + 1 :]
        return self.odd_or(self.word(r.randrange(0, 120)), 0.3)

    def frame(self, channel: FuzzChannel | None = None) -> Any:
        """One frame's JSON value: well-formed, broken, of an unknown type, or no object."""
        r = self.random
        roll = r.random()
        if roll < 0.55:
            return self.request_frame(channel)
        if roll < 0.8:
            frame = self.request_frame(channel)
            for _ in range(r.randrange(1, 3)):
                key = r.choice([*frame, *_WORDS])
                if r.random() < 0.3 and key in frame and key != "t":
                    del frame[key]
                else:
                    frame[key] = self.value()
            return frame
        if roll < 0.9:
            tag = r.choice([*SERVER_FRAME_TYPES, "SAY", "say ", "", "x" * r.randrange(1, 900)])
            return {"t": self.odd_or(tag, 0.3), "text": "hi"}
        return self.value()

    # --- layer 1: outside any channel -------------------------------------------------------

    def outside(self, source: Hashable, channels: Sequence[FuzzChannel] = ()) -> Shot:
        """A datagram anyone could send: no channel's keys are used."""
        kind, make = self.random.choice(self._outside)
        return self._count("outside", kind, make(source, channels))

    def learn(self, data: bytes, source: Hashable) -> None:
        """What the daemon answered to `source`: its `RETRY` cookies are echoed later."""
        try:
            datagram = wire.parse_datagram_untrusted(data)
        except wire.WireError:
            return
        if isinstance(datagram, wire.Retry):
            cookies = self._cookies.setdefault(source, deque(maxlen=16))
            cookies.append((datagram.client_index, datagram.cookie))

    def _random_bytes(self, source: Hashable, channels: Sequence[FuzzChannel]) -> bytes:
        r = self.random
        size = r.choice((0, 1, 2, 6, 13, 20, 21, 23, 28, 29, 34, 74, 600, 1199, 1200, 1201, 1500))
        data = bytearray(r.randbytes(size))
        if data and r.random() < 0.7:
            data[0] = r.choice((0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x11))
        if len(data) > 1 and r.random() < 0.5:
            data[1] = wire.PROTOCOL_VERSION
        return bytes(data)

    def _length(self) -> int:
        """The length of a first flight: mostly right, often not."""
        r = self.random
        if r.random() < 0.6:
            return wire.FIRST_FLIGHT_BYTES
        return r.choice((2, 7, 55, 599, 1199, 1201, 1400, r.randrange(1, 2000)))

    @staticmethod
    def _fit(head: bytes, length: int) -> bytes:
        return (head + bytes(max(0, length - len(head))))[:length]

    def _key_request(self, source: Hashable, channels: Sequence[FuzzChannel]) -> bytes:
        r = self.random
        data = bytearray(self._fit(wire.key_request_datagram(), self._length()))
        if len(data) > 2 and r.random() < 0.3:
            data[r.randrange(2, len(data))] = r.randrange(1, 256)  # padding not zero
        return bytes(data)

    def _bad_version(self, source: Hashable, channels: Sequence[FuzzChannel]) -> bytes:
        r = self.random
        first = r.choice((wire.KEY_REQUEST, wire.INIT, wire.KEY, wire.RESPONSE, wire.REFUSED))
        version = r.choice([v for v in (0, 1, 2, 3, 4, 0x10, 0xFF) if v != wire.PROTOCOL_VERSION])
        length = wire.FIRST_FLIGHT_BYTES if r.random() < 0.7 else self._length()
        return self._fit(bytes((first, version)) + r.randbytes(r.randrange(60)), length)

    def _client_index(self) -> int:
        r = self.random
        return r.choice((0, 1, 2**32 - 1, r.randrange(1, 2**32), r.randrange(1, 2**32)))

    def _init(self, source: Hashable, channels: Sequence[FuzzChannel]) -> bytes:
        r = self.random
        roll = r.random()
        if roll < 0.15 and self._inits:
            return r.choice(self._inits)  # sent again: the same RESPONSE, no new channel
        if roll < 0.45:
            key = self.server_key if r.random() < 0.7 else self._other_key
            data = initiate(key, self._client_index()).datagram()
            self._inits.append(data)
            return data
        index = self._client_index()
        cookie_length = r.choice((0, 0, 16, 32, 33, 255))
        cookie = r.randbytes(min(cookie_length, 32))
        message = r.randbytes(r.choice((0, 47, 48, 48, 49)))
        if r.random() < 0.3:
            message = initiate(self.server_key, index).message
            message = bytes([message[0] ^ 1]) + message[1:]  # another ephemeral key
        head = bytes((wire.INIT, wire.PROTOCOL_VERSION)) + index.to_bytes(4, "big")
        return self._fit(head + bytes((cookie_length,)) + cookie + message, self._length())

    def _cookie_echo(self, source: Hashable, channels: Sequence[FuzzChannel]) -> bytes:
        r = self.random
        mine = self._cookies.get(source)
        others = [c for s, cs in self._cookies.items() if s != source for c in cs]
        if mine and r.random() < 0.6:
            index, cookie = r.choice(mine)
        elif others:
            index, cookie = r.choice(others)  # echoed from the wrong address
        else:
            index, cookie = self._client_index(), r.randbytes(16)
        roll = r.random()
        if roll < 0.2:
            index ^= 1 << r.randrange(32)  # another index
        elif roll < 0.4 and cookie:
            at = r.randrange(len(cookie))
            cookie = cookie[:at] + bytes([cookie[at] ^ 1 << r.randrange(8)]) + cookie[at + 1 :]
        elif roll < 0.5:
            cookie = cookie[: r.randrange(len(cookie) + 1)]
        # Now and then the cookie is good but the message was made for another key.
        key = self._other_key if r.random() < 0.2 else self.server_key
        initiation = initiate(key, index or 1)
        initiation.cookie = cookie
        return initiation.datagram()

    def _data(self, source: Hashable, channels: Sequence[FuzzChannel]) -> bytes:
        r = self.random
        live = [c.index for c in channels if c.channel is not None]
        # Now and then a real channel's index, but no keys: it must not authenticate.
        index = r.choice(live) if live and r.random() < 0.5 else self._client_index()
        pn = r.choice((0, 1, 2**64 - 1, r.randrange(2**64), r.randrange(1, 5000)))
        size = r.choice((0, 1, 15, 16, 17, 100, 1171, 1172, r.randrange(0, 1200)))
        return wire.data_header(index, pn) + r.randbytes(size)

    def _daemon_type(self, source: Hashable, channels: Sequence[FuzzChannel]) -> bytes:
        r = self.random
        index = self._client_index()
        kind = r.randrange(5)
        if kind == 0:
            return wire.key_datagram(self.server_key)
        if kind == 1:
            return wire.response_datagram(index, self._client_index(), r.randbytes(64))
        if kind == 2:
            return wire.retry_datagram(index, r.randbytes(16))
        if kind == 3:
            return wire.refused_datagram("busy", "x" * r.randrange(1100), 1.0)
        return wire.reset_datagram(index, r.randbytes(16))

    def _unknown_type(self, source: Hashable, channels: Sequence[FuzzChannel]) -> bytes:
        r = self.random
        known = {1, 2, 3, 4, 5, 6, 0x10, 0x11}
        first = r.choice([b for b in range(256) if b not in known])
        return self._fit(bytes((first, wire.PROTOCOL_VERSION)), self._length())

    # --- layer 2: records that must not authenticate ---------------------------------------

    def record_attack(self, channel: FuzzChannel, others: Sequence[FuzzChannel] = ()) -> Shot:
        """A record naming `channel` that the daemon must drop unread (or, when the channel
        is not ready for the kind chosen, the authentic record that readies it)."""
        r = self.random
        kind = r.choice(RECORD_KINDS)
        if kind == "replayed":
            if channel.records:
                return self._count("record", kind, r.choice(channel.records).datagram)
            kind = "bad_tag"
        if kind == "stale":
            # Never sealed before, but too far below the newest packet number accepted.
            old = channel.unused_below(channel.window.highest - REPLAY_WINDOW)
            if old is None:
                return self._pn_jump(channel)
            sealed = channel.seal(channel.payload(self._say_frames(channel)), pn=old)
            return self._count("record", kind, sealed.datagram)
        if kind == "foreign":
            foreign = [o for o in others if o is not channel and o.records]
            if foreign:
                record = r.choice(r.choice(foreign).records).datagram
                return self._count("record", kind, self._readdressed(record, channel.index))
            kind = "flipped"
        if kind == "reflected":
            if channel.received:
                record = r.choice(channel.received)
                return self._count("record", kind, self._readdressed(record, channel.index))
            kind = "header"
        # A fresh record carrying a message: were it believed, the message would be stored.
        data = bytearray(channel.seal(channel.payload(self._say_frames(channel))).datagram)
        tag = len(data) - wire.TAG_BYTES
        if kind == "bad_tag":
            data[r.randrange(tag, len(data))] ^= 1 << r.randrange(8)
        elif kind == "zero_tag":
            data[tag:] = bytes(wire.TAG_BYTES)
        elif kind == "flipped":
            data[r.randrange(wire.DATA_HEADER_BYTES, tag)] ^= 1 << r.randrange(8)
        elif kind == "header":
            data[r.randrange(5, wire.DATA_HEADER_BYTES)] ^= 1 << r.randrange(8)
        elif kind == "truncated":
            del data[r.randrange(wire.SEAL_OVERHEAD, len(data)) :]
        else:
            data += r.randbytes(r.randrange(1, 40))
        return self._count("record", kind, bytes(data))

    @staticmethod
    def _readdressed(record: bytes, index: int) -> bytes:
        return bytes((wire.DATA,)) + index.to_bytes(4, "big") + record[5:]

    def _say_frames(self, channel: FuzzChannel) -> list[tuple[int, bytes]]:
        frame = {"t": "say", "text": "must never be stored", "cid": self.word(12)}
        return [(channel.stream.free(1)[0], dumps(frame))]

    # --- layer 3: the malicious client ------------------------------------------------------

    def hostile(self, channel: FuzzChannel) -> Shot:
        """An authentic record on `channel` whose payload is hostile."""
        kind = self._pick(
            [
                ("frames", 35),
                ("stream", 10),
                ("acks", 10),
                ("wrong_types", 10),
                ("broken_json", 10),
                ("not_object", 4),
                ("deep", 3),
                ("big", 5),
                ("late", 5),
                ("pn_jump", 2),
            ]
        )
        if kind == "pn_jump":
            return self._pn_jump(channel)
        if kind == "late":
            return self._count("payload", kind, self._late(channel))
        plaintext = self._payloads[kind](channel)
        return self._count("payload", kind, channel.record(plaintext))

    def _pn_jump(self, channel: FuzzChannel) -> Shot:
        """An acknowledgement far ahead in packet numbers: older ones become too old."""
        pn = channel.pn + self.random.randrange(REPLAY_WINDOW + 2, 3 * REPLAY_WINDOW)
        return self._count("payload", "pn_jump", channel.send(channel.seal(channel.payload(), pn)))

    def _frames(self, channel: FuzzChannel, count: int) -> list[tuple[int, bytes]]:
        ascii_only = self.random.random() < 0.5
        seqs = channel.stream.free(count)
        return [(seq, dumps(self.frame(channel), ascii_only=ascii_only)) for seq in seqs]

    def _payload_frames(self, channel: FuzzChannel) -> bytes:
        r = self.random
        if channel.account is None and r.random() < 0.15:
            # Logins one after the other, the first perhaps still being checked.
            logins = [self.login_frame(channel), self.login_frame(channel)]
            seqs = channel.stream.free(len(logins))
            return channel.payload([(seq, dumps(f)) for seq, f in zip(seqs, logins, strict=True)])
        return channel.payload(self._frames(channel, r.randrange(1, 5)))

    def _payload_stream(self, channel: FuzzChannel) -> bytes:
        r = self.random
        next_seq = channel.stream.next
        frames: list[tuple[int, bytes]] = []
        for _ in range(r.randrange(1, 6)):
            seq = r.choice(
                (
                    max(0, next_seq - r.randrange(1, 5)),  # already delivered
                    next_seq + r.randrange(1, 10),  # early: held until the gap fills
                    next_seq + r.randrange(200, 256),  # early, at the window's end
                    next_seq + r.randrange(256, 300),  # beyond the window
                    wire.MAX_SEQ,
                    0,
                )
            )
            frames.append((seq, dumps(self.request_frame(channel))))
        if r.random() < 0.3:
            frames.append(frames[0])  # one sequence number twice in a payload
        if r.random() < 0.3:
            frames.reverse()
        return channel.payload(frames)

    def _payload_acks(self, channel: FuzzChannel) -> bytes:
        r = self.random
        top = channel.cumulative + len(channel.sack_ranges()) + 50
        ack = r.choice((0, channel.cumulative, top, top + 1000, wire.MAX_SEQ))
        sack = [
            (r.randrange(0, top + 100), r.randrange(0, top + 100))
            for _ in range(r.randrange(0, wire.SACK_RANGES_MAX + 1))
        ]
        echo = r.choice((0, channel.highest_pn + 1, channel.highest_pn + 10**6, wire.MAX_SEQ))
        extra = b""
        if r.random() < 0.3:
            field = r.choice(("response", "challenge"))
            extra = f',"{field}":'.encode() + dumps(self.word(r.randrange(0, 65)))
        frames = self._frames(channel, 1) if r.random() < 0.3 else []
        return channel.payload(frames, ack=ack, echo=echo, sack=sack, extra=extra)

    def _payload_object(self, channel: FuzzChannel) -> dict[str, Any]:
        """A well-formed payload as a dict, to be spoiled."""
        frames = self._frames(channel, self.random.randrange(0, 3))
        return {
            "ack": channel.cumulative,
            "echo": channel.highest_pn,
            "sack": [list(pair) for pair in channel.sack_ranges()],
            "frames": [[seq, json.loads(frame)] for seq, frame in frames],
        }

    def _payload_wrong_types(self, channel: FuzzChannel) -> bytes:
        r = self.random
        payload = self._payload_object(channel)
        roll = r.random()
        if roll < 0.4:
            payload[r.choice(("ack", "echo", "sack", "frames", "challenge", "response"))] = (
                self.value()
            )
        elif roll < 0.55:
            payload["sack"] = [[n, n + 1] for n in range(r.randrange(5, 9))]  # over 4 ranges
        elif roll < 0.7:
            payload["sack"] = [r.choice(([1], [1, 2, 3], "1-2", [None, 1], [1.5, 2], {}))]
        elif roll < 0.85:
            seq = channel.stream.next
            payload["frames"] = [
                r.choice(
                    (
                        [seq],
                        [seq, {"t": "ping"}, 3],
                        [str(seq), {"t": "ping"}],
                        [float(seq), {"t": "ping"}],
                        [-seq, {"t": "ping"}],
                        [2**53, {"t": "ping"}],
                        {"seq": seq},
                        None,
                        "frames",
                    )
                )
            ]
        else:
            payload[self.word(r.randrange(1, 20))] = self.value()  # ignored
            if r.random() < 0.5:
                return dumps(payload)[:-1] + b',"ack":' + dumps(self.value()) + b"}"  # twice
        return dumps(payload, ascii_only=r.random() < 0.5)

    def _payload_broken_json(self, channel: FuzzChannel) -> bytes:
        r = self.random
        data = bytearray(self._payload_frames(channel))
        roll = r.random()
        if roll < 0.3:
            at = r.randrange(len(data) + 1)
            junk = r.choice((b"{", b"}", b"[", b'"', b"\\", b",", b":", b"NaN", b"\xef\xbb\xbf"))
            data[at:at] = junk
        elif roll < 0.5:
            del data[r.randrange(len(data)) :]
        elif roll < 0.7:
            for _ in range(r.randrange(1, 4)):
                data[r.randrange(len(data))] ^= 1 << r.randrange(8)
        elif roll < 0.8:
            data += r.choice((b" ", b"\x00", b"{}", b"x", b"\n\n"))
        elif roll < 0.9:
            at = r.randrange(len(data) + 1)
            data[at:at] = r.choice((b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"))
        else:
            data = bytearray(r.randbytes(r.randrange(0, 200)))
        return bytes(data)

    def _payload_not_object(self, channel: FuzzChannel) -> bytes:
        return self.random.choice(
            (b"", b"[]", b"null", b'"ack"', b"1", b"true", b'[{"ack":1}]', b" ", b"{", b"}")
        )

    def _payload_deep(self, channel: FuzzChannel) -> bytes:
        """Nesting as deep as fits in one payload, where nothing reads it or in a frame."""
        r = self.random
        opening, closing = r.choice(((b"[", b"]"), (b'{"a":', b"}")))
        room = wire.MAX_PAYLOAD - 80
        depth = r.randrange(1, room // (len(opening) + len(closing)))
        nested = opening * depth + b"0" + closing * depth
        if r.random() < 0.5:
            return channel.payload(extra=b',"deep":' + nested)
        return channel.payload([(channel.stream.next, nested)])

    def _payload_big(self, channel: FuzzChannel) -> bytes:
        r = self.random
        roll = r.random()
        if roll < 0.4:
            frames = [dumps({"t": r.choice(("ping", "who"))}) for _ in range(r.randrange(20, 90))]
            return channel.payload(list(zip(channel.stream.free(len(frames)), frames, strict=True)))
        if roll < 0.7:
            size = r.randrange(wire.MAX_PAYLOAD - 100, wire.MAX_PAYLOAD + 20)
            return channel.payload(extra=b',"pad":"' + b"x" * size + b'"')[: wire.MAX_PAYLOAD + 20]
        text = r.choice(("x", "é", "🙂", "\n", '"')) * r.randrange(200, 1200)
        frame = dumps({"t": "say", "text": text, "cid": self.word(10)}, ascii_only=False)
        return channel.payload([(channel.stream.next, frame)])

    def _late(self, channel: FuzzChannel) -> bytes:
        """A record held back, sent after newer ones (within the window: taken once)."""
        r = self.random
        if channel.held and r.random() < 0.6:
            return channel.send(channel.held.pop(r.randrange(len(channel.held))))
        frames = self._frames(channel, 1) if r.random() < 0.5 else []
        channel.held.append(channel.seal(channel.payload(frames)))
        return channel.record(channel.payload())
