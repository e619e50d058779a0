"""What a client is shown, gathered for a test to look at."""

from __future__ import annotations

import trio

from ..client import ChatClient
from ..events import ChatMessage, History, PrivateMessage, PublicMessage


async def received(chat: ChatClient, quiet: float = 0.5) -> list[ChatMessage]:
    """The messages `chat` is shown (live, or in a `History`) until it hears nothing for
    `quiet` seconds."""
    found: list[ChatMessage] = []
    while True:
        event = None
        with trio.move_on_after(quiet):
            async for event in chat.events():  # noqa: B007 (the first one, kept)
                break
        if event is None:
            return found
        if isinstance(event, History):
            found.extend(event.messages)
        elif isinstance(event, PublicMessage | PrivateMessage):
            found.append(event)
