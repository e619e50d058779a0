"""Tab where a line is typed: a command's word, or a name, completed from what is typed.

A pure function of the text about the cursor and the names known (people in the room,
and those met in its messages), which the terminal's prompt and the window's message line
bind to Tab.

    complete("/hi", names)            -> "/history "
    complete("s/al", {"Alice"})       -> "s/Alice/"
    complete("/msg b", {"bob"})       -> "/msg bob "
    complete("thanks, a", {"Alice"})  -> "thanks, Alice "
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .commands import ASCII_OF_FULL_WIDTH
from .display import word_character
from .events import ChatMessage, PrivateMessage
from .rules import name_key

NAMES_MET = 1_000
"""How many names met (in the room, in its messages) Tab completes from: the latest."""

COMMANDS = ("/help", "/history ", "/msg ", "/older ", "/quit", "/who")
"""The commands Tab completes, each followed by a space if it takes words after it."""

_SHORT = ("/m", "/w")
"""Whole commands, short for `/msg`, that other commands start with (`/w`, `/who`)."""
# Matched against the line with its full-width forms as the ASCII they stand for, as the
# commands read them (one character for one: the spans are the typed line's too).
_COMMAND = re.compile(r"(\s*)(/[A-Za-z]*)")
_WHISPER_TO = re.compile(r"(\s*/(?:msg|m|w)\s+)(\S*)", re.IGNORECASE)
_SLASH_TO = re.compile(r"(\s*[sS]/)([^/\s]*)")
_ENDS = " /／:"
"""What a completed word may end with: the space, slash or `: ` after a name."""
_LAST_WORD = re.compile(r"(.*?)([^\s/,;:!?()\[\]{}<>\"']+)", re.DOTALL)
"""A line's last word: after a space or punctuation (a name may hold `.`, `-` and `_`)."""
_IN_NAMES = frozenset(".-")
"""The punctuation a name may hold between its letters (`_` is a word's already)."""


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    """What is typed before the cursor, completed as far as the choices agree."""
    choices: tuple[str, ...] = ()
    """What it could still become, when more than one (to show), else empty."""
    taken: int = 0
    """How many characters after the cursor `text` takes the place of: the space, slash or
    `: ` it ends with, or part of it, where already there (`s/al|/hi` is `s/Alice/|hi`,
    not `s/Alice//hi`, which would say `/hi`; `al| hi` is `Alice: |hi`)."""


def complete(before: str, names: Iterable[str], after: str = "") -> Completion:
    """`before` (the text before the cursor) completed: a command's word at the start of
    the line, the name after `/msg ` or `s/` (ending it with the space or the slash that
    follows a name there), or a name as the last word of a message (at the line's start
    followed by `: `, as people address each other). As far as the choices agree, their
    common start; with more than one left, they are `choices`. Of several lines (a
    paste), the last is completed. With the cursor inside a word (`after` goes on with
    it), nothing is: what Tab added would split the word."""
    if _in_a_word(after):
        return Completion(before)
    earlier, newline, line = before.rpartition("\n")
    done = _complete_line(line, names)
    if done.text == line:
        return Completion(before, done.choices)
    end = done.text[len(done.text.rstrip(_ENDS)) :]  # what follows the completed word
    # The part of it already after the cursor: its start (`:` of `: `), or its end (the
    # space of `: `, where `b| hi` is to be `bob: hi`, not `bob:  hi`).
    taken = next(
        size
        for size in range(len(end), -1, -1)
        if after.startswith(end[:size]) or (size and after.startswith(end[-size:]))
    )
    return Completion(earlier + newline + done.text, taken=taken)


def _in_a_word(after: str) -> bool:
    """Whether the cursor, with `after` after it, is inside a word: a letter goes on, or a
    `.` or `-` with a letter after it (a name holds them: `b|.smith` is `b.smith`)."""
    if after[:1] in _IN_NAMES:
        after = after[1:]
    return bool(after) and word_character(after[0])


def _complete_line(before: str, names: Iterable[str]) -> Completion:
    # Full-width forms read as the ASCII they stand for (an input method in full-width
    # mode types `／ｗ`, `ｓ／`); what is kept is as typed, the slash too.
    read = before.translate(ASCII_OF_FULL_WIDTH)
    if match := _COMMAND.fullmatch(read):
        lead, typed = before[: match.end(1)], before[match.start(2) :]
        command = match[2].lower()
        if command in _SHORT:
            return Completion(lead + typed + " ")
        found = [typed[0] + found[1:] for found in COMMANDS if found.startswith(command)]
        return _chosen(lead, typed, found)
    if match := _WHISPER_TO.fullmatch(read) or _SLASH_TO.fullmatch(read):
        lead, typed = before[: match.end(1)], before[match.start(2) :]
        return _name(lead, typed, names, " " if match.re is _WHISPER_TO else lead[-1])
    if match := _LAST_WORD.fullmatch(before):
        lead, typed = match.groups()
        return _name(lead, typed, names, " " if lead.strip() else ": ")
    return Completion(before)


def _name(lead: str, typed: str, names: Iterable[str], after: str) -> Completion:
    key = name_key(typed)
    by_key = {name_key(name): name for name in names}  # one account, however written
    found = [name for found_key, name in sorted(by_key.items()) if found_key.startswith(key)]
    return _chosen(lead, typed, [name + after for name in found])


def _chosen(lead: str, typed: str, completed: list[str]) -> Completion:
    """`lead` + `typed` completed to the one choice, or as far as the choices agree
    (case-blind, in the choices' own letters: `al` -> `Al`); if that adds nothing, the
    choices to show."""
    if len(completed) == 1:
        return Completion(lead + completed[0])
    if not completed:
        return Completion(lead + typed)
    agreed = _agreed(completed)
    if len(agreed) > len(typed):
        return Completion(lead + agreed)
    return Completion(lead + typed, tuple(choice.rstrip(_ENDS) for choice in completed))


def _agreed(choices: list[str]) -> str:
    """The start the choices share, letter by letter case-blind, as the first writes it."""
    first = choices[0]
    end = 0
    while end < len(first) and all(
        end < len(choice) and choice[end].casefold() == first[end].casefold() for choice in choices
    ):
        end += 1
    return first[:end]


class NamesMet:
    """The names met in a conversation (who is in the room, who wrote or was written to),
    one to an account, as last written, the latest last: at most `NAMES_MET`."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}

    def meet(self, *names: str) -> None:
        for name in names:
            key = name_key(name)
            self._names.pop(key, None)
            self._names[key] = name
        while len(self._names) > NAMES_MET:
            del self._names[next(iter(self._names))]

    def meet_in(self, message: ChatMessage) -> None:
        """Meet who wrote `message`, and to whom if it was private."""
        self.meet(message.sender)
        if isinstance(message, PrivateMessage):
            self.meet(message.recipient)

    def names(self, me: str) -> list[str]:
        """The names met, `me` left out: what Tab completes. Read from another thread (a
        terminal's prompt), copied in one step."""
        mine = name_key(me)
        return [name for key, name in list(self._names.items()) if key != mine]
