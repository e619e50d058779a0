"""What a client sees happen in the room: small, frozen, typed events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PublicMessage:
    id: int
    ts: datetime
    """When the server received it, in UTC."""
    sender: str
    text: str
    history: bool = False
    """Sent again from history (on login, on resume, or by `history()`), not live."""


@dataclass(frozen=True, slots=True)
class PrivateMessage:
    id: int
    ts: datetime
    sender: str
    recipient: str
    text: str
    history: bool = False


ChatMessage = PublicMessage | PrivateMessage


@dataclass(frozen=True, slots=True)
class Joined:
    name: str
    ts: datetime


@dataclass(frozen=True, slots=True)
class Left:
    name: str
    ts: datetime
    reason: str
    """`quit`, `timeout` (the session went silent) or `overloaded`."""


@dataclass(frozen=True, slots=True)
class History:
    """What was sent on login: the latest public messages and unread private ones."""

    messages: tuple[ChatMessage, ...]
    more: bool
    """Older messages exist; `history(before=...)` pages through them."""
    resumed: bool = False
    """Sent after the client reconnected: exactly what it missed meanwhile."""


@dataclass(frozen=True, slots=True)
class Notice:
    text: str


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The daemon stopped answering or went away; the client keeps trying to come back."""

    reason: str


@dataclass(frozen=True, slots=True)
class Reconnected:
    """The client logged in again after `Disconnected`; a `History` with what was missed follows."""


Event = (
    PublicMessage | PrivateMessage | Joined | Left | History | Notice | Disconnected | Reconnected
)
