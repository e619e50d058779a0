"""The rules for names, passwords and message text, shared by the daemon and its clients.

Pure functions over strings: each returns the normalised value or raises `RuleError`
with a stable error code (the same codes travel on the wire, see `docs/protocol.md`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

NAME_MAX_CHARS = 32
PASSWORD_MIN_CHARS = 8
PASSWORD_MAX_CHARS = 256
TEXT_MAX_BYTES = 500
"""A message's text, measured as its JSON string body (see `text_size`)."""

# The characters a JSON string escapes: these seven as two bytes, other C0 as six.
_ESCAPED = re.compile(r'[\x00-\x1f"\\]')
_SHORT_ESCAPES = frozenset('\b\t\n\f\r"\\')


class RuleError(ValueError):
    """A value breaks one of the rules; `code` names which, `message` says it to a person."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def normalize_name(name: str) -> str:
    """The display form of a name: Unicode NFKC, so look-alike encodings collapse."""
    return unicodedata.normalize("NFKC", name)


def name_key(name: str) -> str:
    """The identity of a name: NFKC, casefolded, NFKC again (so `Alice` is `alice`).

    See `trio_chat.names.name_key`.
    """
    from . import names  # names imports this module: a top-level import would be circular

    return names.name_key(name)


def check_name(name: str) -> str:
    """Validate a name and return its display form (NFKC); see `trio_chat.names`."""
    from . import names

    return names.check_name(name)


MISTAKEN_FOR: Final = "could be mistaken for"
"""What the daemon's refusal of a name too like an account's says (`name_taken`, as for a
name taken): "The name 'aIice' could be mistaken for 'alice'; choose another." """


HELD: Final = "is held by the daemon's operator"
"""What the daemon's refusal of a name an account the operator removed had says
(`name_taken` to a registration, `unknown_user` to a login): no account has it to log in
to, nor may a registration take it."""


def name_held(name: str) -> RuleError:
    """`name_taken` for `name`, which an account the operator removed had (or one of the
    same key): "The name 'alice' is held by the daemon's operator; choose another." """
    return RuleError("name_taken", f"The name {name!r} {HELD}; choose another.")


def no_account_held(name: str) -> str:
    """A login's `unknown_user` for `name`, which an account the operator removed had: said,
    so that no client offers to register it, as `name_held` would refuse that. "There is
    no account named 'alice'; the name is held by the daemon's operator." """
    return f"There is no account named {name!r}; the name {HELD}."


def name_taken(name: str, like: str | None = None) -> RuleError:
    """`name_taken` for `name`: taken as it is, or (`like`) by a name it could be mistaken
    for."""
    if like is None:
        return RuleError("name_taken", f"The name {name!r} is taken; choose another.")
    return RuleError("name_taken", f"The name {name!r} {MISTAKEN_FOR} {like!r}; choose another.")


def name_problem(name: str) -> str | None:
    """Why no account can have `name` (a sentence), or None if one can."""
    try:
        check_name(name)
    except RuleError as error:
        return error.message
    return None


def check_password(password: str) -> str:
    """Validate a password and return the form that is hashed (NFC)."""
    normalized = unicodedata.normalize("NFC", password)
    if len(normalized) < PASSWORD_MIN_CHARS:
        raise RuleError(
            "password_too_short",
            f"A password must be at least {PASSWORD_MIN_CHARS} characters long.",
        )
    if len(normalized) > PASSWORD_MAX_CHARS:
        raise RuleError(
            "password_too_long",
            f"A password must be at most {PASSWORD_MAX_CHARS} characters long.",
        )
    return normalized


def check_changed_password(old: str, new: str) -> str:
    """Validate the new password of a change from `old`, and return the form that is
    hashed: a password's rules, and not `old` again (the change would end the account's
    other sessions for nothing)."""
    normalized = check_password(new)
    if normalized == unicodedata.normalize("NFC", old):
        # Said of what was given: the current password given may be wrong (it is not
        # checked against the stored one here); the new one is the same all the same.
        raise RuleError(
            "password_unchanged",
            "The new password is the same as the current password given; choose another.",
        )
    return normalized


def text_size(text: str) -> int:
    """Bytes the text takes inside a JSON string: UTF-8, with `"`, `\\` and C0 escaped.

    `"`, `\\`, backspace, tab, newline, form feed and carriage return count 2 bytes; the
    other characters below U+0020 count 6 (`\\u001b`); every other character its UTF-8
    length. Any encoder that escapes at least this much yields a body no longer than this.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    for match in _ESCAPED.finditer(text):
        size += 1 if match.group() in _SHORT_ESCAPES else 5
    return size


def check_text(text: str) -> str:
    """Validate a message's text and return it unchanged."""
    if not text:
        raise RuleError("text_empty", "A message cannot be empty.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RuleError("bad_field", "A message must be valid Unicode text.") from None
    if text_size(text) > TEXT_MAX_BYTES:
        raise RuleError(
            "text_too_long",
            f"A message can hold at most {TEXT_MAX_BYTES} bytes of UTF-8 text, a quote, "
            f"backslash or tab counting 2 (this one has {text_size(text)}).",
        )
    return text
