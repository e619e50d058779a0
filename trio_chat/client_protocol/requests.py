"""A request on its way to the daemon (`Handle`), the ids requests and messages are sent
with (`Ids`), what a request completes with, and the checks it passes before it is sent."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from .. import wire
from ..errors import (
    ChatError,
    PasswordTooLong,
    UnknownUser,
    error_for,
    not_understood,
)
from ..rules import (
    RuleError,
    check_changed_password,
    check_name,
    check_password,
    check_text,
    normalize_name,
)

BEFORE_LOGIN = frozenset({"register", "login", "resume"})
"""Requests that need a channel only; all others wait until the session is logged in."""


def rule_error(error: RuleError) -> ChatError:
    return error_for(error.code, error.message)


def _longest_login(name: str, password: str) -> bytes:
    """A login frame for `name` and `password` with every other field at its longest."""
    login = wire.Login(
        name=name,
        password=password,
        since=wire.MAX_SEQ,
        quiet=True,
        replaces=2**32 - 1,
        via=("f" * 64, 65535),
        batches=True,
    )
    return wire.encode(login)


def check_sendable_password(name: str, password: str) -> None:
    """Raise a `ChatError` for a password that no login frame for `name` can carry: one
    that is not Unicode text, or too long in UTF-8 for a datagram (the rules count
    characters, and 256 of four bytes each do not fit)."""
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        raise error_for("bad_field", "A password must be valid Unicode text.") from None
    without = len(_longest_login(name, ""))
    room = wire.MAX_FRAME - without
    size = len(_longest_login(name, password)) - without
    if size > room:
        raise PasswordTooLong(
            f"A password must fit in {room} bytes of UTF-8 (this one takes {size})."
        )


def require_type(what: str, value: object, kind: type | tuple[type, ...]) -> None:
    """`TypeError` naming the argument, for a value of the wrong type (a program's
    mistake, not something the daemon could refuse)."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        article = "an" if names[0] in "aeiou" else "a"
        raise TypeError(f"{what} must be {article} {names}, not {type(value).__name__}")


def check_login(name: str, password: str) -> None:
    """Raise a `ChatError` for a login that cannot be sent: `UnknownUser` for a name that
    no account has and no frame carries, or see `check_sendable_password`."""
    require_type("name", name, str)
    require_type("password", password, str)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UnknownUser(f"There is no account named {name!r}.") from None
    if len(name) > wire.NAME_FIELD_MAX:
        raise UnknownUser(f"There is no account with a name of {len(name)} characters.")
    check_sendable_password(name, password)


def check_registration(name: str, password: str) -> None:
    """Raise the `ChatError` the daemon would answer for a name or password it refuses,
    or that no login could carry (`check_sendable_password`)."""
    require_type("name", name, str)
    require_type("password", password, str)
    try:
        check_name(name)
        check_password(password)
    except RuleError as error:
        raise rule_error(error) from None
    check_sendable_password(name, password)


def check_new_password(name: str, old: str, new: str) -> None:
    """Raise the `ChatError` the daemon would answer for a new password it refuses, or
    that no login (or the change's own frame) could carry."""
    require_type("old", old, str)
    require_type("new", new, str)
    try:
        check_changed_password(old, new)
    except RuleError as error:
        raise rule_error(error) from None
    check_sendable_password(name, new)
    change = wire.encode(wire.ChangePassword(old=old, new=new))
    if len(change) > wire.MAX_FRAME:
        room = wire.MAX_FRAME - len(wire.encode(wire.ChangePassword(old="", new="")))
        raise PasswordTooLong(
            f"The old and new passwords together must fit in {room} bytes of UTF-8 "
            f"(these take {len(change) - wire.MAX_FRAME + room})."
        )


def check_message(text: str) -> None:
    """Raise for text no message can carry: not text (`TypeError`), or against the rules."""
    require_type("text", text, str)
    try:
        check_text(text)
    except RuleError as error:
        raise rule_error(error) from None


def recipient(to: str) -> str:
    """The account a whisper goes to, named as the daemon compares names (the same
    account); `UnknownUser` for a name no account can have."""
    to = normalize_name(to)
    if len(to) > wire.NAME_FIELD_MAX:  # more than the daemon reads: no account has it
        raise UnknownUser(f"There is no account named {to!r}.")
    try:
        to.encode("utf-8")
    except UnicodeEncodeError:  # no frame carries it, and no account has it
        raise UnknownUser(f"There is no account named {to!r}.") from None
    return to


def history_page(limit: int, before: int | None) -> tuple[int, int | None]:
    """A history request's `limit` and `before` as the daemon takes them: whole numbers,
    the limit within 1 to `HISTORY_LIMIT_MAX`, `before` within the ids there can be."""
    for value in (limit, 0 if before is None else before):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"A history page is asked with whole numbers, not {value!r}.")
    limit = max(1, min(limit, wire.HISTORY_LIMIT_MAX))
    if before is not None:
        before = max(0, min(before, wire.MAX_SEQ))  # ids there can be: none is older
    return limit, before


class Handle:
    """A request on its way: it completes once with a `result` or an `error`."""

    __slots__ = (
        "_callbacks",
        "cid",
        "error",
        "frame",
        "kind",
        "order",
        "parts",
        "result",
        "seq",
        "text",
        "to",
    )

    def __init__(
        self,
        kind: str,
        frame: bytes,
        *,
        text: str = "",
        to: str | None = None,
        cid: str | None = None,
    ) -> None:
        self.kind = kind
        self.frame = frame
        self.text = text
        self.to = to
        self.cid = cid
        self.seq = 0
        self.order = 0
        self.parts: list[Any] = []
        self.result: Any = None
        self.error: ChatError | None = None
        self._callbacks: list[Callable[[Handle], None]] | None = []

    def __repr__(self) -> str:
        state = "done" if self.done else "waiting"
        return f"<Handle {self.kind} {state}>"

    @property
    def done(self) -> bool:
        return self._callbacks is None

    def add_done_callback(self, callback: Callable[[Handle], None]) -> None:
        """Call `callback(handle)` once it completes (at once if it has)."""
        if self._callbacks is None:
            callback(self)
        else:
            self._callbacks.append(callback)

    def discard_done_callback(self, callback: Callable[[Handle], None]) -> None:
        """Call `callback` no more (its caller gave up waiting), if it is still to be called."""
        if self._callbacks is not None and callback in self._callbacks:
            self._callbacks.remove(callback)

    def _complete(self, result: Any, error: ChatError | None) -> None:
        callbacks, self._callbacks = self._callbacks, None
        if callbacks is None:
            return
        self.result, self.error = result, error
        for callback in callbacks:
            callback(self)


def registration_result(handle: Handle) -> str:
    """The name a `register` handle completed with, or its error raised."""
    if handle.error is not None:
        raise handle.error
    if not isinstance(handle.result, str):
        raise not_understood("answer to a registration")
    return handle.result


_SORTED_DIGITS = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
"""The 64 characters of URL-safe base64, in the order bytes compare: counted in these,
ids of one width sort in the order they were made."""


class Ids:
    """A connection's request and message ids: 64 random bits (11 characters), then a
    count in 5 characters that sort as they count (16 in all).

    Unique per connection and across connections and restarts, by the random part. The
    daemon keeps an index of the ids each account stored (one message per `cid`): ids
    that grow go in beside the last, where random ones would each touch another page of
    it on every commit (twice the daemon's write time, measured for 256-message commits).
    """

    def __init__(self) -> None:
        self._prefix = secrets.token_urlsafe(8)
        self._count = 0

    def __call__(self) -> str:
        if self._count == 64**5:  # a billion ids on one connection: a new random part
            self._prefix, self._count = secrets.token_urlsafe(8), 0
        count, self._count = self._count, self._count + 1
        digits = []
        for _ in range(5):
            count, digit = divmod(count, 64)
            digits.append(_SORTED_DIGITS[digit])
        return self._prefix + "".join(reversed(digits))
