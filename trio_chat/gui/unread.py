"""Unread counts: per conversation (on its tab) and, while the window is not focused, in
the window's title."""

from __future__ import annotations

from .conversations import ROOM


class Unread:
    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self.current = ROOM
        """The conversation on screen."""
        self.window_active = True
        self.unseen = 0
        """Messages that arrived since the window last had the focus (0 while it has it)."""

    def arrived(self, conversation: str) -> None:
        """Someone else's message arrived in `conversation`."""
        if conversation != self.current:
            self._counts[conversation] = self._counts.get(conversation, 0) + 1
        if not self.window_active:
            self.unseen += 1

    def show(self, conversation: str) -> None:
        """`conversation` is on screen now: it is read."""
        self.current = conversation
        self._counts.pop(conversation, None)

    def activate(self, active: bool) -> None:
        self.window_active = active
        if active:
            self.unseen = 0

    def count(self, conversation: str) -> int:
        return self._counts.get(conversation, 0)

    def forget(self, conversation: str) -> None:
        self._counts.pop(conversation, None)


def tab_label(name: str, count: int) -> str:
    """`bob (2)`; a `&` is doubled so that Qt shows it instead of making a shortcut."""
    label = name.replace("&", "&&")
    return f"{label} ({count})" if count else label


def window_title(me: str, where: str, unseen: int) -> str:
    """`alice at 127.0.0.1:1600 – trio-chat`, with `(3) ` in front while there is unseen news."""
    title = f"{me} at {where} – trio-chat"
    return f"({unseen}) {title}" if unseen else title
