"""What typed lines mean, the student client's habits included (`s/name/message`, `Exit`)."""

from __future__ import annotations

import pytest

from trio_chat.commands import (
    HELP,
    HISTORY_DEFAULT,
    HISTORY_MAX,
    Command,
    Help,
    Invalid,
    Nothing,
    Quit,
    Say,
    ShowHistory,
    Whisper,
    Who,
    parse,
)


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("hello there", Say("hello there")),
        ("  indented stays as typed", Say("  indented stays as typed")),
        ("hello\n", Say("hello")),
        # A script saved with Windows line ends: the carriage return is not said.
        ("hello\r\n", Say("hello")),
        ("s/bob/hi\r\n", Whisper("bob", "hi")),
        ("s/bob/hi bob", Whisper("bob", "hi bob")),
        ("s/bob/a/b/c", Whisper("bob", "a/b/c")),
        ("/msg bob hi  there", Whisper("bob", "hi  there")),
        ("/m bob hi", Whisper("bob", "hi")),
        ("/w bob hi", Whisper("bob", "hi")),
        ("/who", Who()),
        ("/who is there", Who()),
        ("/history", ShowHistory(HISTORY_DEFAULT)),
        ("/history 5", ShowHistory(5)),
        ("/history 100", ShowHistory(100)),  # the most the daemon answers
        ("/older", ShowHistory(HISTORY_DEFAULT, older=True)),
        ("/older 7", ShowHistory(7, older=True)),
        ("/help", Help()),
        ("/?", Help()),
        ("  /?", Help()),  # after spaces too, though `?` is no letter
        ("Exit", Quit()),
        ("exit", Quit()),
        ("/quit", Quit()),
        ("/exit", Quit()),
        ("", Nothing()),
        ("   ", Nothing()),
        ("//etc/passwd is a path", Say("/etc/passwd is a path")),
        ("so/what", Say("so/what")),
        ("Exit now", Say("Exit now")),
        # Caps lock or a habit from IRC, where commands are not case-sensitive.
        ("EXIT", Quit()),
        ("/QUIT", Quit()),
        ("/Who", Who()),
        ("/MSG bob hi", Whisper("bob", "hi")),
        ("/HISTORY 5", ShowHistory(5)),
        ("S/bob/hi", Whisper("bob", "hi")),
        ("Ｓ/BOB/HI", Whisper("BOB", "HI")),
        # With a capital only in full (`S/name/message`): else the text it was before.
        ("S/MIME is old", Say("S/MIME is old")),
        ("S/O to the team!", Say("S/O to the team!")),
        ("S/O to alice/bob", Say("S/O to alice/bob")),
        ("S//hi", Say("S//hi")),
        ("S/MIME", Say("S/MIME")),
        ("Ｓ/O to the team!", Say("Ｓ/O to the team!")),  # a full-width capital too
        ("S/ BOB /HI", Whisper("BOB", "HI")),
        ("s/o to the team", Invalid("Write a private message as s/name/message.")),
        ("/quit see you tomorrow", Quit()),  # IRC's /quit takes a parting message
        ("/q bye", Quit()),
        # Meant as commands, and said they would go to everyone: a script saved with a
        # byte-order mark, a space typed first, full-width input.
        ("\ufeffs/alice/the password is hunter2", Whisper("alice", "the password is hunter2")),
        ("\ufeff/msg alice psst", Whisper("alice", "psst")),
        (" /msg alice secret", Whisper("alice", "secret")),
        ("  s/alice/secret", Whisper("alice", "secret")),
        ("／msg alice secret", Whisper("alice", "secret")),
        ("ｓ／alice／secret", Whisper("alice", "secret")),
        ("s／alice／x", Whisper("alice", "x")),
        ("／who", Who()),
        ("/msg alice\u3000こんにちは", Whisper("alice", "こんにちは")),  # an ideographic space
        ("/msg\u3000alice hi", Whisper("alice", "hi")),
        ("\ufeffhello", Say("hello")),
        ("ｅｘｉｔ", Quit()),
        # After a space or a full-width slash, a word that is no command: text as typed.
        ("／(^o^)＼ナンテコッタイ", Say("／(^o^)＼ナンテコッタイ")),
        ("    /usr/bin/python x.py", Say("    /usr/bin/python x.py")),
        ("  /who", Who()),
        ("    // TODO: fix", Say("    // TODO: fix")),  # indented: a pasted line, as it is
        ("ⓔⓧⓘⓣ", Say("ⓔⓧⓘⓣ")),  # fancy letters are text
        # Invisible characters pasted before a command: still the command.
        ("\u200b/msg bob hunter2", Whisper("bob", "hunter2")),
        ("/history 5  ", ShowHistory(5)),  # spaces after it, as before
        ("  \ufeff/msg bob x", Whisper("bob", "x")),
        # A word after a full-width slash or spaces that is not all ASCII letters: text.
        ("／ＯＫです", Say("／ＯＫです")),
        ("／OK、了解", Say("／OK、了解")),
        ("  /o\\", Say("  /o\\")),
        ("／NEW＼", Say("／NEW＼")),
    ],
)
def test_lines_mean_commands(line: str, command: Command) -> None:
    assert parse(line) == command


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        ("s/bob", "s/name/message"),
        ("s//hi", "s/name/message"),
        ("s/bob/   ", "s/name/message"),
        ("/msg bob", "/msg name message"),
        ("/msg", "/msg name message"),
        ("/msg ", "/msg name message"),
        (" s/bob", "s/name/message"),
        ("/history zero", "/history N"),
        ("/history 0", "/history N"),
        ("/history 101", "/history N"),
        ("/history ²", "/history N"),
        ("/history " + "1" * 5000, "/history N"),  # more digits than Python reads
        ("/older " + "9" * 4400, "/older N"),
        ("/frobnicate", "/help"),
        # Tries at a command after spaces or a full-width slash: refused, not said (a
        # secret in them would go to everyone).
        ("／ msg bob my password is hunter2", "/help"),
        ("  / msg bob second secret", "/help"),
        (" /query bob third secret", "/help"),
        ("／msgbob x", "/help"),
        ("／ ｍｓｇ bob fourth secret", "/help"),  # the command's word in full-width forms
        ("／ who", "/help"),
        # At the line's start a slash begins a command: a path is refused, not said.
        ("/usr/bin/python x.py", "/help"),
    ],
)
def test_malformed_commands_say_how_to_write_them(line: str, hint: str) -> None:
    command = parse(line)
    assert isinstance(command, Invalid)
    assert hint in command.message


@pytest.mark.parametrize("line", ["/history 0", "/older 101"])
def test_a_count_out_of_range_is_told_the_range(line: str) -> None:
    word = line.split()[0]
    assert parse(line) == Invalid(f"Write {word} N with N from 1 to 100.")


def test_the_help_gives_the_history_counts_the_commands_use() -> None:
    """`/help` tells what `/history` without a count shows, and the most it shows."""
    assert f"(default {HISTORY_DEFAULT}, at most {HISTORY_MAX})" in HELP
