"""What a line typed in the room means: a pure parser, shared by the terminal, pipes and
the window (each with its own help: `HELP`, `WINDOW_HELP`)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

HISTORY_DEFAULT = 20
HISTORY_MAX = 100

HELP = """\
Commands:
  text                 say it to everyone in the room
  s/name/message       say it to name only (also: /msg name message)
  /who                 who is online
  /history [n]         the last n messages (default 20, at most 100)
  /older [n]           the n messages before the oldest shown, and so on back
  //text               say text that starts with a /
  /help                this list
  Exit, /quit          leave the room (Ctrl-D and Ctrl-C leave too)
  Tab                  complete a command, or a name met in the room"""

WINDOW_HELP = """\
Commands:
text — say it here: in the room, or to this tab's person only
s/name/message — say it to name only, in their tab (also: /msg name message)
/who — who is online
/history — older messages: scroll up (Page Up), they load at the top (Ctrl+End: back down)
//text — say text that starts with a /
/help — this list (F1)
Exit, /quit — close the window (Ctrl+Q)
Tab — complete a command, or a name met in the room"""
"""The same commands as the window obeys them (it has no terminal's Ctrl-D, and scrolls),
without columns: the window's font is not fixed-width."""


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class Whisper:
    to: str
    text: str


@dataclass(frozen=True, slots=True)
class Who:
    pass


@dataclass(frozen=True, slots=True)
class ShowHistory:
    count: int
    older: bool = False
    """`/older`: the messages before those the last `/history` or `/older` showed."""


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Nothing:
    """An empty line."""


@dataclass(frozen=True, slots=True)
class Invalid:
    message: str
    """What was wrong, as a sentence."""


Command = Say | Whisper | Who | ShowHistory | Help | Quit | Nothing | Invalid

_LINE_BREAK = re.compile(r"\r\n|\r|\n")

_QUIT = frozenset({"/quit", "/exit", "/q"})
"""Commands that leave (with a parting word or not, as IRC's /quit takes one); like every
command, in any case: caps lock on, or IRC's habit (its commands ignore case)."""


_SLASH = re.compile("[/／]")
_SPACE = re.compile(r"\s")

_WHISPER = frozenset({"/msg", "/m", "/w"})
_HISTORY = frozenset({"/history", "/older"})
_HELP = frozenset({"/help", "/?", "/h"})
_COMMANDS = _QUIT | _WHISPER | _HISTORY | _HELP | {"/who"}
"""Every command's word: a line that starts with another after a space, or with a
full-width slash, is text, not an unknown command."""


_BEFORE_COMMAND = re.compile("^[\\s\u200b-\u200d\u2060\ufeff]+")
"""Spaces, and the invisible characters pasted text brings (a zero-width space, a word
joiner, a byte-order mark), before what may be a command."""

ASCII_OF_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
"""Full-width forms as the ASCII they stand for, as full-width input (and many input
methods for Chinese and Japanese) types them: `ｓ／name／message`, `／msg` and `ＥＸＩＴ` are
commands too. Not every NFKC form (`ⓔⓧⓘⓣ` is text)."""


def _attempt(word: str, rest: str) -> bool:
    """Whether `word` (NFKC, lower case), after spaces or a full-width slash, is a try at
    a command, refused as unknown rather than said: a word of letters (`/query bob`), or
    a slash alone before a command's word (`／ msg bob`). A path (`/usr/bin/python`) or
    an emoticon (`／(^o^)＼`) is text."""
    name = word[1:]
    if name:
        return name.isascii() and name.isalpha()
    following = unicodedata.normalize("NFKC", rest.split()[0]).lower() if rest else ""
    return "/" + following in _COMMANDS


def _whisper(to: str, text: str, usage: str) -> Command:
    to = to.strip()
    if not to or not text.strip():
        return Invalid(f"Write a private message as {usage}.")
    return Whisper(to, text)


def parse(line: str) -> Command:
    """The command a typed line stands for.

    A line meant as a command is read as one even when it starts with spaces or a
    byte-order mark (as a script saved by some editors does), or is typed in full-width
    forms: said as it is, a private message would go to everyone. A line that starts so
    with a word that is no command is said as typed."""
    line = line.rstrip("\r\n").removeprefix("\ufeff")
    stripped = line.strip()
    if not stripped:
        return Nothing()
    if stripped.translate(ASCII_OF_FULL_WIDTH).lower() == "exit":  # alone on its line
        return Quit()  # the student client's word, typed in full-width forms too
    start = _BEFORE_COMMAND.sub("", line)
    head = start[:2].translate(ASCII_OF_FULL_WIDTH).lower()
    if head == "s/":
        to, *after = _SLASH.split(start[2:], maxsplit=1)
        if start[0] in "SＳ" and (not after or not to.strip() or _SPACE.search(to.strip())):
            # Private only as `S/name/message` (caps lock on: not said to everyone); else
            # text, as before `s/` was a command: "S/O to the team!".
            return Say(line)
        if not after:
            return Invalid("Write a private message as s/name/message.")
        return _whisper(to, after[0], "s/name/message")
    if head == "//":
        return Say(start[1:] if len(start) == len(line) else line)  # indented: as pasted
    if not head.startswith("/"):
        return Say(line)
    typed, *more = start.rstrip().split(maxsplit=1)  # any space: an ideographic one too
    word = unicodedata.normalize("NFKC", typed).lower()  # commands ignore case, as IRC's do
    rest = more[0] if more else ""
    loose = len(start) < len(line) or not start.startswith("/")  # after spaces, or ／
    if loose and word not in _COMMANDS and not _attempt(word, rest):
        # Not a command after all: a path indented in a pasted file, an emoticon that
        # starts with a full-width slash (／(^o^)＼). Said as typed.
        return Say(line)
    if word in _QUIT:
        return Quit()  # a parting word is not said: nobody would see it
    if word in _WHISPER:
        to, text = (*rest.split(maxsplit=1), "", "")[:2]
        return _whisper(to, text, "/msg name message")
    if word == "/who":
        return Who()
    if word in _HISTORY:
        count = _count(rest) if rest else HISTORY_DEFAULT
        if count is None:
            return Invalid(f"Write {word} N with N from 1 to {HISTORY_MAX}.")
        return ShowHistory(count, older=word == "/older")
    if word in _HELP:
        return Help()
    return Invalid(f"Unknown command {typed}; /help lists the commands, //text says /text.")


def _count(typed: str) -> int | None:
    """A count from 1 to `HISTORY_MAX` as typed, or None (a number of thousands of digits
    included: Python refuses to read one)."""
    if not (typed.isdecimal() and len(typed) < 10):
        return None
    count = int(typed)
    return count if 1 <= count <= HISTORY_MAX else None


def typed_lines(text: str) -> list[str]:
    """Text typed or pasted at once, as the lines to act on one by one: broken at line
    feeds and carriage returns only, as a terminal breaks them (U+2028 and other
    separators are text, shown escaped)."""
    return _LINE_BREAK.split(text)
