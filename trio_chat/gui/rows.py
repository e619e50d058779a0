"""What one line of a conversation shows, as plain data: spans of text with a style each.

Everything that came from other people (names, text, notices) passes through
`display.safe()`, so a control character, an escape sequence, a bidirectional control or
any other character that shows nothing (a zero-width space, a tag; joiners and emoji
variation selectors aside) is shown as an escape (`\\x1b[2J`, `\\u200b`), as in the
terminal. The window draws the spans as plain text, never as HTML: `<b>x</b>` is shown as
typed.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import datetime

from ..display import left_how, mentions, safe, safe_name, same_name, stamp
from ..events import ChatMessage, Joined, Left, PrivateMessage
from .colours import sender_colour


class Style(enum.Enum):
    TIME = "time"
    """Dim (the palette's placeholder text colour)."""
    NAME = "name"
    """A person's colour (`Span.colour`)."""
    TEXT = "text"
    """The palette's text colour."""
    NOTE = "note"
    """Dim italic: joins, leaves, the connection, answers to commands."""
    ERROR = "error"
    """A refusal (`colours.BAD`)."""


@dataclass(frozen=True, slots=True)
class Span:
    text: str
    style: Style = Style.TEXT
    colour: str = ""
    bold: bool = False


class Kind(enum.Enum):
    MESSAGE = "message"
    """A message the daemon stored (it has an id)."""
    PENDING = "pending"
    """A line you sent that the daemon has not stored yet (shown dim and italic)."""
    NOTE = "note"
    """Anything else: joins, leaves, the connection, answers, refusals."""


@dataclass(frozen=True, slots=True)
class Row:
    spans: tuple[Span, ...]
    kind: Kind = Kind.NOTE
    message_id: int | None = None
    mine: bool = False
    """Your own message (drawn with a mark in the margin and your name in bold)."""
    when: str = ""
    """The full local date and time, for a tooltip."""
    indent: int = 0
    """Characters before the message text: wrapped lines start under it."""
    mentions: tuple[tuple[int, int], ...] = ()
    """Where someone else's message names you, in its text (start, end): marked."""

    @property
    def plain(self) -> str:
        """The row as one line of plain text (to copy, and for screen readers)."""
        return "".join(span.text for span in self.spans)


_GAP = "  "
UNSAID = "(removed by the operator)"


def clock(ts: datetime, now: datetime | None = None) -> str:
    """`HH:MM:SS` in local time, with the date in front when it is not today: the terminal's
    time stamp without its brackets."""
    return stamp(ts, now)[1:-1]


def full_time(ts: datetime) -> str:
    return ts.astimezone().strftime("%A %d %B %Y, %H:%M:%S")


def name_span(name: str, me: str) -> Span:
    return Span(safe_name(name), Style.NAME, sender_colour(name), bold=same_name(name, me))


def _width(spans: tuple[Span, ...]) -> int:
    return sum(len(span.text) for span in spans)


def message_row(message: ChatMessage, me: str, now: datetime | None = None) -> Row:
    """`18:13:04  alice: hello` (a private message looks the same: it has a tab of its own)."""
    head = (
        Span(clock(message.ts, now) + _GAP, Style.TIME),
        name_span(message.sender, me),
        Span(": "),
    )
    text = safe(message.text)
    mine = same_name(message.sender, me)
    return Row(
        (*head, Span(text)),
        kind=Kind.MESSAGE,
        message_id=message.id,
        mine=mine,
        when=full_time(message.ts),
        indent=_width(head),
        # As in the terminal: in the room (a private message is to you already).
        mentions=() if mine or isinstance(message, PrivateMessage) else tuple(mentions(text, me)),
    )


def unsaid_row(row: Row) -> Row:
    """A message row once the operator removed the message: `18:13:04  alice: (removed by
    the operator)`, in its place."""
    return dataclasses.replace(row, spans=(*row.spans[:-1], Span(UNSAID, Style.NOTE)), mentions=())


def pending_row(text: str, me: str) -> Row:
    """A line on its way: `sending…  alice: hello`, until the daemon has stored it."""
    head = (Span("sending…" + _GAP, Style.TIME), name_span(me, me), Span(": "))
    return Row((*head, Span(safe(text))), kind=Kind.PENDING, mine=True, indent=_width(head))


def refused_row(text: str, me: str, reason: str, when: datetime, to: str | None = None) -> Row:
    """A line the daemon refused (or that could not be sent): what it was, to whom if it
    was private (`not sent: alice to bob: hi`: told in the room once the tab of a name
    no account has is gone), and why not."""
    head = (Span(clock(when) + _GAP, Style.TIME), Span("not sent: ", Style.ERROR))
    whom = (Span(" to "), name_span(to, me)) if to is not None else ()
    spans = (*head, name_span(me, me), *whom, Span(": "), Span(safe(text)))
    return Row(
        (*spans, Span(f" ({safe(reason).rstrip('.')})", Style.ERROR)),
        mine=True,
        when=full_time(when),
        indent=_width(head),
    )


def note_row(text: str, when: datetime, style: Style = Style.NOTE) -> Row:
    """`18:13:06  * text`: something about the room or the connection."""
    head = (Span(clock(when) + _GAP, Style.TIME),)
    return Row((*head, Span(safe(text), style)), when=full_time(when), indent=len(head[0].text))


def joined_row(event: Joined, me: str) -> Row:
    time = Span(clock(event.ts) + _GAP, Style.TIME)
    spans = (time, Span("* ", Style.NOTE), name_span(event.name, me))
    return Row((*spans, Span(" joined the room", Style.NOTE)), when=full_time(event.ts))


def left_row(event: Left, me: str) -> Row:
    how = left_how(event.reason)
    time = Span(clock(event.ts) + _GAP, Style.TIME)
    spans = (time, Span("* ", Style.NOTE), name_span(event.name, me))
    return Row((*spans, Span(" left the room" + how, Style.NOTE)), when=full_time(event.ts))


def names_row(names: list[str], me: str, when: datetime) -> Row:
    """`Online (2): alice, bob`, each name in its colour."""
    spans: list[Span] = [Span(clock(when) + _GAP, Style.TIME)]
    spans.append(Span(f"Online ({len(names)}): ", Style.NOTE))
    for index, name in enumerate(names):
        if index:
            spans.append(Span(", ", Style.NOTE))
        spans.append(name_span(name, me))
    return Row(tuple(spans), when=full_time(when), indent=len(spans[0].text))


def info_row(text: str) -> Row:
    """A line of an answer (the list of commands): shown as it is, after `safe()`."""
    return Row((Span(safe(text), Style.NOTE),))
