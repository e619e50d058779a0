"""How chat events look on a screen: safe text, local times, a colour per sender.

Everything here is pure: a line is a tuple of (SGR style, text) segments that
`to_ansi` turns into terminal output and `to_plain` into one plain line for scripts.
Text that came from other people (names, messages, notices) always passes through
`safe()`, so a control character or an escape sequence is shown, never obeyed.
"""

from __future__ import annotations

import re
import zlib
from datetime import datetime

from .events import ChatMessage, Joined, Left, PrivateMessage
from .rules import name_key

Segment = tuple[str, str]
"""An SGR parameter string (`"1;31"`, or `""` for none) and the text it styles."""
Line = tuple[Segment, ...]

_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# C0 controls, DEL and C1 controls (a terminal obeys them), the line and paragraph
# separators, the bidirectional controls (they reorder what follows: "Trojan source"),
# and lone surrogates (they cannot be written to a UTF-8 terminal at all).
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)

# Foreground colours that read on dark and light backgrounds alike.
PALETTE = ("31", "32", "33", "34", "35", "36", "91", "92", "93", "94", "95", "96")
DIM = "2"
WARN = "33"
ERROR = "1;31"
HEADING = "1"


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def safe(text: str) -> str:
    """`text` with every control character, escape sequence and bidi control made visible."""
    return _UNSAFE.sub(_escape, text)


def colour_of(name: str) -> str:
    """The colour a sender always gets (stable across runs, the same for `Alice` and `alice`)."""
    return PALETTE[zlib.crc32(name_key(name).encode("utf-8", "replace")) % len(PALETTE)]


def stamp(ts: datetime, now: datetime | None = None) -> str:
    """`[HH:MM:SS]` in local time; the date is added when it is not today."""
    local = ts.astimezone()
    today = (now or datetime.now().astimezone()).astimezone().date()
    if local.date() != today:
        return local.strftime("[%Y-%m-%d %H:%M:%S]")
    return local.strftime("[%H:%M:%S]")


def same_name(a: str, b: str) -> bool:
    return name_key(a) == name_key(b)


def _name(name: str, me: str) -> Segment:
    style = colour_of(name)
    return (f"1;{style}" if same_name(name, me) else style, safe(name))


def message_line(message: ChatMessage, me: str, now: datetime | None = None) -> Line:
    """`[12:00:01] alice: hi`, or `[12:00:01] [alice -> you] hi` / `[you -> bob]` if private."""
    time = (DIM, stamp(message.ts, now) + " ")
    text = ("", safe(message.text))
    if not isinstance(message, PrivateMessage):
        return (time, _name(message.sender, me), ("", ": "), text)
    if same_name(message.sender, me):
        recipient = "you" if same_name(message.recipient, me) else message.recipient
        who: tuple[Segment, ...] = (("1", "you"), ("", " -> "), _name(recipient, me))
    else:
        who = (_name(message.sender, me), ("", " -> "), ("1", "you"))
    return (time, ("35", "["), *who, ("35", "]"), ("", " "), text)


def pending_line(text: str, to: str | None, me: str) -> Line:
    """What you typed while not connected, shown at once, dim: it goes out once connected."""
    who: tuple[Segment, ...] = (
        (("", "["), ("1", "you"), ("", " -> "), _name(to, me), ("", "] "))
        if to is not None
        else (_name(me, me), ("", ": "))
    )
    return ((DIM, "[waiting] "), *who, (DIM, safe(text)), (DIM, " (goes out once connected)"))


def joined_line(event: Joined, me: str, now: datetime | None = None) -> Line:
    return (
        (DIM, stamp(event.ts, now) + " "),
        (DIM, "* "),
        _name(event.name, me),
        (DIM, " joined the room"),
    )


_LEFT_HOW = {"quit": "", "timeout": " (no longer answering)", "overloaded": " (server overloaded)"}


def left_line(event: Left, me: str, now: datetime | None = None) -> Line:
    how = _LEFT_HOW.get(event.reason, f" ({safe(event.reason)})")
    return (
        (DIM, stamp(event.ts, now) + " "),
        (DIM, "* "),
        _name(event.name, me),
        (DIM, " left the room" + how),
    )


def notice_line(text: str, when: datetime, style: str = WARN) -> Line:
    """A line from the server or about the connection; `text` is made safe here."""
    return ((DIM, stamp(when, when) + " "), (style, "* " + safe(text)))


def info_line(text: str, style: str = "") -> Line:
    """An answer to a command (already safe: callers escape what came from elsewhere)."""
    return ((style, text),)


def heading_line(text: str) -> Line:
    return ((HEADING, f"-- {text} --"),)


def names_line(names: list[str], me: str) -> Line:
    """`Online (2): alice, bob`, each name in its colour."""
    segments: list[Segment] = [("", f"Online ({len(names)}): ")]
    for index, name in enumerate(names):
        if index:
            segments.append(("", ", "))
        segments.append(_name(name, me))
    return tuple(segments)


def to_plain(line: Line) -> str:
    return "".join(text for _style, text in line)


def to_ansi(line: Line) -> str:
    parts: list[str] = []
    for style, text in line:
        parts.append(f"\x1b[{style}m{text}\x1b[0m" if style else text)
    return "".join(parts)
