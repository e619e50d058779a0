"""The line editor's logic: recalling typed lines, and how much of a message's size is used."""

from __future__ import annotations

from dataclasses import dataclass

from .. import commands
from ..rules import TEXT_MAX_BYTES, text_size


class Recall:
    """Lines typed before, for the up and down keys, as in a shell.

    Up goes back from what is being typed (which is kept: down past the newest line
    brings it back); sending a line adds it and starts again from the bottom.
    """

    def __init__(self, limit: int = 500) -> None:
        self._lines: list[str] = []
        self._limit = limit
        self._position: int | None = None
        self._draft = ""

    def add(self, line: str) -> None:
        if line and (not self._lines or self._lines[-1] != line):
            self._lines.append(line)
            del self._lines[: -self._limit]
        self._position = None

    def older(self, current: str) -> str | None:
        """The line before the one shown (None at the oldest)."""
        if self._position is None:
            if not self._lines:
                return None
            self._draft = current
            self._position = len(self._lines)
        if self._position == 0:
            return None
        self._position -= 1
        return self._lines[self._position]

    def newer(self) -> str | None:
        """The line after the one shown; the draft after the newest; None at the bottom."""
        if self._position is None:
            return None
        self._position += 1
        if self._position >= len(self._lines):
            self._position = None
            return self._draft
        return self._lines[self._position]


SHOW_FROM = 0.8
"""The size is shown once a message uses this share of the limit."""


@dataclass(frozen=True, slots=True)
class Budget:
    used: int
    limit: int = TEXT_MAX_BYTES

    @property
    def over(self) -> bool:
        return self.used > self.limit

    @property
    def shown(self) -> bool:
        return self.used >= self.limit * SHOW_FROM

    @property
    def text(self) -> str:
        if self.over:
            return f"{self.used}/{self.limit} bytes: {self.used - self.limit} too many"
        return f"{self.used}/{self.limit} bytes"


def budget(line: str) -> Budget | None:
    """How much of the limit the message in a typed line uses (None: the line is no
    message); of several lines pasted at once, the largest."""
    sizes = [
        text_size(command.text)
        for command in map(commands.parse, commands.typed_lines(line))
        if isinstance(command, commands.Say | commands.Whisper)
    ]
    return Budget(max(sizes)) if sizes else None
