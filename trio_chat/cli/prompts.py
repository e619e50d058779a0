"""What the person types: a name, a password (prompted, piped, or from a file or the
environment), yes or no, and another try after a wrong password."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer

from ..display import quoted
from ..errors import WrongPassword
from ..rules import RuleError, check_name
from .exits import ExitCode, fail

T = TypeVar("T")

NAME_MISSING = "The input ended before a name; give it with --name (or TRIO_CHAT_NAME)."
PASSWORD_MISSING = (
    "The input ended before a password; give it on a line of its own, "
    "in TRIO_CHAT_PASSWORD or with --password-file."
)
"""Said when input that is not a terminal ends at a prompt (at a terminal, Ctrl-D there
is the person's own doing, and a new line is all it needs)."""
MISMATCH = "The two passwords do not match; type them again."
MISMATCH_ENDED = (
    "The two passwords do not match, and the input ended before they were given again; "
    "give the same password on both lines."
)


def checked_name(name: str) -> str:
    try:
        return check_name(name)
    except RuleError as error:
        raise fail(error.message, ExitCode.INVALID_NAME) from None


def given_password(password_file: Path | None, *, from_environment: bool = True) -> str | None:
    """The password from --password-file or TRIO_CHAT_PASSWORD, if either gives one
    (without `from_environment`, from the file only)."""
    if password_file is not None:
        try:
            text = password_file.read_text(encoding="utf-8")
        except OSError as error:
            raise fail(
                f"Cannot read the password file {password_file}: {error.strerror}.",
                ExitCode.USAGE,
            ) from None
        except UnicodeDecodeError:
            raise fail(
                f"The password file {password_file} is not UTF-8 text.", ExitCode.USAGE
            ) from None
        first = text.splitlines()[0] if text else ""
        if not first:
            raise fail(
                f"The password file {password_file} has no password on its first line.",
                ExitCode.USAGE,
            )
        return first
    return os.environ.get("TRIO_CHAT_PASSWORD") if from_environment else None


def ask(
    text: str, *, hide: bool = False, confirm: bool = False, missing: str = PASSWORD_MISSING
) -> str:
    """Prompt for a value; Ctrl-C or Ctrl-D leaves with a new line and exit status 130.

    With `confirm` (a new password), it is typed twice; a pair that differs is asked for
    again, `ATTEMPTS` pairs at most. Input that is not a terminal and ends before a
    password is told `missing`: how else to give it.
    """
    if not sys.stdin.isatty():
        return _read_hidden(text, confirm=confirm, missing=missing) if hide else _read_name(text)
    for attempt in range(1, ATTEMPTS + 1):
        value = _prompt(text, hide)
        if not confirm or _prompt("Repeat the password", hide) == value:
            return value
        _mismatch(attempt)
    raise AssertionError("unreachable")


def _prompt(text: str, hide: bool) -> str:
    try:
        value: str = typer.prompt(text, hide_input=hide)
    except typer.Abort:
        if not hide:  # a hidden prompt has ended its line already
            typer.echo("", err=True)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    return value


def _mismatch(attempt: int) -> None:
    """Two passwords differed: say so, and give up after the last attempt."""
    if attempt == ATTEMPTS:
        raise fail(
            f"The two passwords did not match {ATTEMPTS} times; run the command again.",
            ExitCode.INVALID_PASSWORD,
        )
    typer.echo(MISMATCH, err=True)


def _read_name(text: str) -> str:
    """A name from input that is not a terminal: its next line. The input that ends first
    is told how to give one (the only prompt but a password's shown there).

    Prompts there go to standard error, as what is echoed of the input: a script that
    reads the command's output reads its results alone.
    """
    typer.echo(f"{text}: ", nl=False, err=True)
    value = _next_line()
    if value is None:
        typer.echo("", err=True)
        typer.echo(NAME_MISSING, err=True)
        raise typer.Exit(int(ExitCode.INTERRUPTED))
    return value


def _read_hidden(text: str, *, confirm: bool, missing: str) -> str:
    """A password from input that is not a terminal (a pipe, a file): its next line.

    Nothing is echoed there, so the terminal's echo needs no turning off, and `getpass`
    would only warn that it cannot. With `confirm`, the line after must match it, if
    there is one: input that ends after the password gives it once (`echo "$PW" |`).
    Two lines that differ are asked for again, as at a terminal; after that, a password
    must come twice (input that ends after one line of a new pair leaves it unconfirmed).
    """
    for attempt in range(1, ATTEMPTS + 1):
        typer.echo(f"{text}: ", nl=False, err=True)
        value = _next_line()
        if value is None:
            typer.echo("", err=True)
            if attempt > 1:
                raise fail(MISMATCH_ENDED, ExitCode.INVALID_PASSWORD)
            typer.echo(missing, err=True)
            raise typer.Exit(int(ExitCode.INTERRUPTED))  # the input ended, as Ctrl-D ends it
        if not confirm:
            return value
        typer.echo("Repeat the password: ", nl=False, err=True)
        again = _next_line()
        if again is None:
            typer.echo("", err=True)  # one line was all there was: it is the password
            if attempt > 1:
                raise fail(MISMATCH_ENDED, ExitCode.INVALID_PASSWORD)
        if again is None or again == value:
            return value
        _mismatch(attempt)
    raise AssertionError("unreachable")


def _next_line() -> str | None:
    """The next line of input (its end echoed, as a terminal would), or None at the end."""
    line = sys.stdin.readline()
    if not line:
        return None
    typer.echo("", err=True)
    return line.rstrip("\r\n")


def agree(text: str, *, missing: str | None = None) -> bool:
    """Ask a yes/no question (no by default); Ctrl-C leaves as `ask` does. Input that is
    not a terminal and ends before an answer is told `missing`: how else to give one."""
    if not sys.stdin.isatty():
        return _read_answer(text, missing)
    try:
        return typer.confirm(text, default=False)
    except typer.Abort:
        typer.echo("", err=True)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


def _read_answer(text: str, missing: str | None) -> bool:
    """A yes or no from input that is not a terminal: its next line, the question and
    what is echoed of it on standard error (`typer.confirm` wrote a space on standard
    output, where a script reads the command's results)."""
    while True:
        typer.echo(f"{text} [y/N]:", nl=False, err=True)
        line = _next_line()
        if line is None:
            typer.echo("", err=True)
            if missing is not None:
                typer.echo(missing, err=True)
            raise typer.Exit(int(ExitCode.INTERRUPTED))
        answer = line.strip().lower()
        if answer in ("y", "yes"):
            return True
        if answer in ("", "n", "no"):
            return False
        typer.echo("Answer y or n.", err=True)


ATTEMPTS = 3
"""How many times a person at a terminal may type a password or a name."""


def attempts(
    function: Callable[[str, str], T],
    name: str,
    password: str,
    *,
    again: bool,
    label: str = "Password",
) -> T:
    """Call `function(name, password)`; at a terminal, ask again (`label`) after a wrong
    password."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return function(name, password)
        except WrongPassword:
            if not again or attempt == ATTEMPTS:
                raise
            typer.echo(f"Wrong password for {quoted(name)}; try again.", err=True)
            password = ask(label, hide=True)
    raise AssertionError("unreachable")
