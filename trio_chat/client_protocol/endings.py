"""How a connection's sessions and requests end, in words: the daemon's goodbyes, and
the sentences a connection ends with or an unanswered request fails with."""

from __future__ import annotations

from .. import wire
from ..errors import AccountLocked, AccountRemoved, Banned, ChatError, Removed, TooManySessions


def as_reason(sentence: str) -> str:
    """The daemon's sentence as a reason shown inside another: "Lost the connection
    (the daemon is stopping)"."""
    reason = sentence.rstrip(".")
    if reason[:1].isupper() and reason[1:2].islower():
        reason = reason[0].lower() + reason[1:]
    return reason


FORGOTTEN = "the daemon no longer knows this session"
"""Why a session was lost when the daemon answered `RESET`: it restarted, or forgot it."""
_FINAL_GOODBYES: dict[str, type[ChatError]] = {
    "too_many_sessions": TooManySessions,
    "account_locked": AccountLocked,
    "account_removed": AccountRemoved,
    "removed": Removed,
    "banned": Banned,
}
"""A daemon's goodbyes after which a new session would not help: the connection ends with
the error (every other goodbye, a stop, say, has it come back)."""


def final_goodbye(frame: wire.Bye) -> ChatError | None:
    """The error a goodbye ends the connection with, if opening another session would not
    help (`_FINAL_GOODBYES`); None for every other goodbye."""
    ending = _FINAL_GOODBYES.get(frame.reason)
    if ending is Banned:
        return Banned(frame.message, until=frame.until)
    return None if ending is None else ending(frame.message)


CHANGE_UNANSWERED = (
    "The connection was lost before the daemon answered; the new password may be the one "
    "now: log in with it to see."
)
"""Why a `change_password` failed when its answer was lost with the session."""
LOGGED_OUT = "You logged out."
"""A connection's `failure` once it ended as asked (`logout`, `close`)."""
PASSWORD_CHANGED_AWAY = (
    "This account's password was changed while the connection was away; log in with the new one."
)
"""Why a session coming back ended when its password, good before, was no longer."""
UNANSWERED_ON_LEAVING = "You left before the daemon answered; it may or may not have it."
"""Why a request unanswered when the client left failed: the daemon may have acted on it."""
