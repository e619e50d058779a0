"""Seeded generators of hostile datagrams: random bytes, broken JSON, wrong types, and
valid datagrams mutated byte by byte or field by field.

`Garbage(seed).datagram()` returns one datagram; give it live sessions (`sessions`) and
some of what it makes carries their real session id and token, so that the fuzzing
reaches past the token check into the link and the frame handlers.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

CLIENT_FRAME_TYPES = ("say", "whisper", "who", "history", "ping", "logout")
DATAGRAM_TYPES = ("register", "login", "s", "registered", "welcome", "error", "pending", "x")

_ODD_STRINGS = (
    "",
    " ",
    "\x00",
    "\ud800",  # a lone surrogate: not encodable as UTF-8
    "😀" * 300,
    "a" * 1500,
    "\u202e\u0301",
    "null",
    "Ａｌｉｃｅ",
    "alice",
    "ALICE",
    "password1",
)
_ODD_NUMBERS = (0, -1, 1, 2**31, 2**53, 2**53 - 1, 2**64, -(2**63), 10**30, 1e308, -0.0, 0.5)


class Garbage:
    """A seeded source of hostile datagrams; see the module docstring."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.sessions: list[tuple[int, str]] = []
        self.counts: dict[str, int] = {}
        self._next_seq: dict[int, int] = {}
        self._kinds: list[tuple[str, Callable[[], bytes]]] = [
            ("random_bytes", self.random_bytes),
            ("broken_json", self.broken_json),
            ("wrong_types", self.wrong_types),
            ("mutated_bytes", self.mutated_bytes),
            ("mutated_fields", self.mutated_fields),
            ("session", self.session_packet),
            ("session", self.session_packet),
            ("valid", self.valid),
        ]

    def datagram(self) -> bytes:
        kind, make = self.random.choice(self._kinds)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return make()

    # --- values ------------------------------------------------------------------------

    def value(self, depth: int = 0) -> Any:
        """Any JSON value, small, with a taste for edge cases."""
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
        keys = [r.choice(("t", "v", "sid", "pn", "rid", "text", "x")) for _ in range(3)]
        return {k: self.value(depth + 1) for k in keys}

    def text(self, length: int) -> str:
        r = self.random
        alphabet = 'abcdefgh é中😀\n\t"\\/\x00\x7f\u2028'
        return "".join(r.choice(alphabet) for _ in range(length))

    def seq(self) -> Any:
        r = self.random
        if r.random() < 0.7:
            return r.randrange(0, 300)
        return r.choice(_ODD_NUMBERS)

    # --- valid datagrams ---------------------------------------------------------------------

    def frame(self) -> dict[str, Any]:
        r = self.random
        # A logout ends the session the rest of the fuzzing wants to reach: keep it rare.
        kind = r.choices(CLIENT_FRAME_TYPES, weights=(30, 20, 10, 10, 10, 1))[0]
        frame: dict[str, Any] = {"t": kind}
        if kind in ("say", "whisper"):
            frame["text"] = self.text(r.randrange(1, 60))
            frame["cid"] = f"c{r.randrange(10**6)}"
        if kind == "whisper":
            frame["to"] = r.choice(("alice", "bob", "nobody", "fuzz0"))
        if kind == "history":
            frame["limit"] = r.randrange(1, 101)
            if r.random() < 0.5:
                frame["before"] = r.randrange(0, 1000)
        return frame

    def valid_object(self) -> dict[str, Any]:
        r = self.random
        roll = r.random()
        if roll < 0.2:
            return {
                "v": 1,
                "t": "register",
                "rid": f"r{r.randrange(10**9)}",
                "name": r.choice(("fuzz", "Alice", "bob", "x" * 40, "名字")),
                "password": r.choice(("short", "long-enough-password", "x" * 300)),
            }
        if roll < 0.4:
            return {
                "v": 1,
                "t": "login",
                "rid": f"l{r.randrange(10**9)}",
                "name": r.choice(("alice", "bob", "nobody")),
                "password": r.choice(("wrong-password", "password1")),
                "since": r.randrange(0, 100),
            }
        sid, token = r.choice(self.sessions) if self.sessions else (r.randrange(1, 2**53), "t")
        packet: dict[str, Any] = {
            "v": 1,
            "t": "s",
            "sid": sid,
            "token": token,
            "pn": r.randrange(0, 10**6),
            "ack": r.randrange(0, 300),
        }
        if r.random() < 0.4:
            packet["sack"] = [sorted((self.seq(), self.seq())) for _ in range(r.randrange(1, 5))]
        if r.random() < 0.2:
            packet[r.choice(("challenge", "response"))] = self.text(20)
        if r.random() < 0.7:
            # Mostly frames the link will take in order, so that they reach the handlers.
            # Some of these are mutated or lost on the way, so go back now and then to fill
            # the gaps they leave.
            newest = self._next_seq.get(sid, 1)
            first = max(1, newest - r.randrange(min(newest, 40)))
            count = r.randrange(1, 6)
            packet["frames"] = [[first + n, self.frame()] for n in range(count)]
            if r.random() < 0.3:
                self._next_seq[sid] = max(newest, first + count)
        else:
            packet["frames"] = [[self.seq(), self.frame()] for _ in range(r.randrange(0, 6))]
        return packet

    def valid(self) -> bytes:
        return json.dumps(self.valid_object(), ensure_ascii=False).encode("utf-8", "surrogatepass")

    def session_packet(self) -> bytes:
        """A session datagram for a live session (if any), with odd but typed contents."""
        packet = self.valid_object()
        r = self.random
        while packet.get("t") != "s":
            packet = self.valid_object()
        roll = r.random()
        if roll < 0.3:
            packet["frames"] = [[self.seq(), self.value()] for _ in range(r.randrange(1, 4))]
        elif roll < 0.4:  # a frame as big as fits, of an unknown type the error may quote
            tag = r.choice(("x", "\n", "é", "\x00", '"')) * r.randrange(100, 900)
            packet["frames"] = [[f[0], {"t": tag}] for f in packet["frames"][:1]]
        return json.dumps(packet, ensure_ascii=False).encode("utf-8", "surrogatepass")

    # --- invalid ones ----------------------------------------------------------------------------

    def random_bytes(self) -> bytes:
        r = self.random
        size = r.choice((0, 1, 2, 8, 64, 600, 1199, 1200, 1201, 1500, 2100))
        return r.randbytes(r.randrange(size + 1))

    def broken_json(self) -> bytes:
        r = self.random
        text = self.valid().decode("utf-8", "replace")
        cut = r.randrange(len(text) + 1)
        pieces = [text[:cut], text[cut:]]
        junk = r.choice(("{", "}", "[", '"', "\\", ",", ":", "NaN", "\ufeff", "\x00", "]]]]"))
        return (pieces[0] + junk + (pieces[1] if r.random() < 0.5 else "")).encode(
            "utf-8", "surrogatepass"
        )

    def wrong_types(self) -> bytes:
        r = self.random
        obj = self.valid_object()
        for _ in range(r.randrange(1, 4)):
            obj[r.choice([*obj.keys(), "extra"])] = self.value()
        if r.random() < 0.1:
            obj = {"v": 1, "t": r.choice(DATAGRAM_TYPES), "nested": self.nested(r.randrange(50))}
        return json.dumps(obj, ensure_ascii=r.random() < 0.5).encode("utf-8", "surrogatepass")

    def nested(self, depth: int) -> Any:
        value: Any = 0
        for _ in range(depth):
            value = [value] if self.random.random() < 0.5 else {"a": value}
        return value

    def mutated_bytes(self) -> bytes:
        r = self.random
        data = bytearray(self.valid())
        for _ in range(r.randrange(1, 6)):
            if not data:
                break
            at = r.randrange(len(data))
            op = r.randrange(4)
            if op == 0:
                data[at] ^= 1 << r.randrange(8)
            elif op == 1:
                del data[at]
            elif op == 2:
                data.insert(at, r.randrange(256))
            else:
                data[at:at] = data[r.randrange(len(data)) :][: r.randrange(20)]
        return bytes(data)

    def mutated_fields(self) -> bytes:
        r = self.random
        obj = self.valid_object()
        key = r.choice(list(obj))
        obj[key] = r.choice(
            (self.value(), r.choice(_ODD_NUMBERS), r.choice(_ODD_STRINGS), None, [], {})
        )
        if r.random() < 0.3:
            obj["v"] = r.choice((0, 2, "1", 1.0, None))
        text = json.dumps(obj, ensure_ascii=False)
        if r.random() < 0.2:  # a duplicate key, which JSON allows and parsers treat apart
            text = text[:-1] + f', "{key}": {json.dumps(self.value())}' + "}"
        return text.encode("utf-8", "surrogatepass")
