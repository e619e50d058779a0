"""Which conversation a message belongs to: the room's, or the one with the other person."""

from __future__ import annotations

from ..display import same_name
from ..events import ChatMessage, PrivateMessage
from ..rules import name_key

ROOM = ""
"""The key of the public room's conversation (a private one's key is `name_key(person)`)."""
ROOM_LABEL = "Room"


def conversation_of(message: ChatMessage, me: str) -> tuple[str, str]:
    """The key and the name of the conversation a message belongs to."""
    if not isinstance(message, PrivateMessage):
        return ROOM, ROOM_LABEL
    other = message.recipient if same_name(message.sender, me) else message.sender
    return name_key(other), other
