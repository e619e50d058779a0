"""A request on its way to the daemon (`Handle`), what it completes with, and the checks
a request passes before it is sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ChatError, ProtocolError, error_for
from ..rules import RuleError, check_name, check_password


def rule_error(error: RuleError) -> ChatError:
    return error_for(error.code, error.message)


def check_registration(name: str, password: str) -> None:
    """Raise the `ChatError` the daemon would answer for a name or password it refuses."""
    try:
        check_name(name)
        check_password(password)
    except RuleError as error:
        raise rule_error(error) from None


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
        raise ProtocolError("The daemon's answer to a registration was not understood.")
    return handle.result
