"""What a client sees happen in the room: small, frozen, typed events.

They are msgspec Structs rather than dataclasses: a receiver builds one for every message
it is shown, and a Struct costs a tenth as much to build (and, holding no cycles, is kept
out of the cycle collector's way).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec


class PublicMessage(msgspec.Struct, frozen=True, gc=False):
    """A message to the room."""

    id: int
    ts: datetime
    """When the server received it, in UTC."""
    sender: str
    text: str
    history: bool = False
    """Sent again from history (on login, on resume, or by `history()`), not live."""


class PrivateMessage(msgspec.Struct, frozen=True, gc=False):
    """A message to one account (sent by this account, or to it)."""

    id: int
    ts: datetime
    sender: str
    recipient: str
    text: str
    history: bool = False


ChatMessage = PublicMessage | PrivateMessage


class Joined(msgspec.Struct, frozen=True, gc=False):
    """Someone entered the room (their first session)."""

    name: str
    ts: datetime
    back: bool = False
    """They come back after losing their session (everyone does after a daemon restart,
    with no `Left` before), rather than entering anew: a greeting is not called for."""


class Left(msgspec.Struct, frozen=True, gc=False):
    """Someone left the room (their last session ended)."""

    name: str
    ts: datetime
    reason: str
    """`quit`, `timeout` (the session went silent), `overloaded`, `too_many_sessions` (it
    moved onto an address with as many sessions as it may have), `removed` (the operator
    took the account out), `banned` (the operator turned its address away) or
    `password_changed` (its password changed in another session, or by the operator); a
    daemon may add others (`display.left_how` has words for each of these)."""


class History(msgspec.Struct, frozen=True, gc=False):
    """What was sent on login: the latest public messages and unread private ones; or,
    after `Reconnected`, what was missed meanwhile (`resumed`)."""

    messages: tuple[ChatMessage, ...]
    more: bool
    """Older messages exist; `history(before=...)` pages through them."""
    resumed: bool = False
    """Sent after the client reconnected: what it missed meanwhile, but only the newest
    500 (the daemon's limit) if it missed more, and then `more` is set: the rest are
    older than `messages[0]`, for `history(before=...)` to fetch."""
    newest: int = 0
    """The newest message id the daemon had stored when it sent this (0: not said): what
    is stored later comes as it is. A page asked with `before=newest + 1` holds the
    latest messages, one's own private ones that this history left out (read before)
    among them."""
    gap: int | None = None
    """With `more`, after `Reconnected`: everything missed from this id on is here (or
    came as it was stored); what was missed before it, `history(before=gap)` pages
    through (`gap_end`). None: not said (a daemon before it said so)."""


def gap_end(messages: Sequence[ChatMessage], gap: int | None = None) -> int:
    """Where the gap before a `History` that brought only the newest of what was missed
    (`more`) ends: at its `gap`, where the daemon said, or else at the oldest room
    message among `messages` (a private one that waited may be older), or at the oldest
    of them if none is the room's; 0 if none."""
    if gap is not None:
        return gap
    public = [message.id for message in messages if isinstance(message, PublicMessage)]
    return min(public or [message.id for message in messages], default=0)


class Notice(msgspec.Struct, frozen=True, gc=False):
    """Something the daemon tells this session, in a sentence."""

    text: str
    muted: bool | None = None
    """Set when the notice says the daemon's operator muted (True) or unmuted (False) this
    account (`ChatClient.muted` says the same from then on); None for any other notice."""


class MessageRemoved(msgspec.Struct, frozen=True, gc=False):
    """The daemon's operator removed the room's message `id` from its history (`trio-chat
    messages remove`): a program that shows it should show it no more. Told to those in
    the room when it happens (a client away then still shows what it was shown)."""

    id: int


class Disconnected(msgspec.Struct, frozen=True, gc=False):
    """The daemon stopped answering or went away; the client keeps trying to come back."""

    reason: str


class Reconnected(msgspec.Struct, frozen=True, gc=False):
    """The client logged in again after `Disconnected`; a `History` with what was missed follows."""


class Missed(msgspec.Struct, frozen=True, gc=False):
    """The program did not read `events()` in time: `count` unread messages, joins, leaves,
    notices or removals were dropped here, the oldest, to keep the newest
    (`ClientConfig.events_kept`; a `History`, `Disconnected` or `Reconnected` is not
    dropped alone: an outage that is over goes whole, its `History`'s messages counted
    here, but for a `History` with `more`, which stays after it without its messages, its
    `gap` set). `history()` still has the messages among them."""

    count: int


Event = (
    PublicMessage
    | PrivateMessage
    | Joined
    | Left
    | History
    | Notice
    | MessageRemoved
    | Disconnected
    | Reconnected
    | Missed
)
