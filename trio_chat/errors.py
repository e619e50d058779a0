"""The exceptions the client API raises, one per thing that can go wrong.

Every error the server can send has a stable code (see `docs/protocol.md`); each code
maps to one exception class here. The message is a sentence a person can act on.
"""

from __future__ import annotations

import copy


class ChatError(Exception):
    """Base class: `code` is the protocol's error code, `message` a sentence for people."""

    code = "error"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def anew(self) -> ChatError:
        """This error again, without a traceback, to raise at one more place.

        One failure ends many waits at once (every pending receipt, each iteration of
        `events()`); raising the same object at each would chain every raise onto one
        traceback, so that each shows frames that never led to it.
        """
        again = copy.copy(self)  # type, message, `retry_after`; no traceback, no context
        if "__notes__" in vars(again):
            again.__notes__ = list(again.__notes__)
        return again


class ServerUnreachable(ChatError):
    """The daemon cannot be reached (no answer, or no such host), or it stopped answering a
    request it took."""

    code = "unreachable"


class ConnectionLost(ChatError):
    """The session ended (the daemon went away or shut down) and was not resumed."""

    code = "connection_lost"


NOT_UNDERSTOOD = "; it may run another version of trio-chat (run the same on both sides)."
"""How a sentence that the daemon's answer was not understood ends: what to do about it."""


class ProtocolError(ChatError):
    """The daemon's answer was not understood, or it found a request malformed (`bad_field`)."""

    code = "protocol_error"


def not_understood(answer: str = "answer") -> ProtocolError:
    """A `ProtocolError` that the daemon's `answer` ("answer to a message") was not
    understood, saying what to do."""
    return ProtocolError(f"The daemon's {answer} was not understood{NOT_UNDERSTOOD}")


class KeyChanged(ChatError):
    """The daemon's static key is not the one this client trusts for that address."""

    code = "key_changed"


class KeyUnproven(KeyChanged):
    """Met for the first time, the daemon's key could not be proven: it showed it, but
    no handshake under it succeeded (someone on the way may have answered in its place).
    Nothing was remembered."""


class Busy(ChatError):
    """The daemon is starting too many channels at once: wait `retry_after` seconds."""

    code = "busy"


class TicketInvalid(ChatError):
    """A resumption ticket expired or came from a daemon with another ticket key."""

    code = "ticket_invalid"


class NameTaken(ChatError):
    """Another account has this name, or one that could be mistaken for it."""

    code = "name_taken"


class UnknownUser(ChatError):
    """No account has this name. `no_registrations`: the daemon, refusing a login, said it
    takes no registrations either (`serve --no-registrations`): its operator makes the
    accounts, and registering the name would be refused (`RegistrationsClosed`)."""

    code = "unknown_user"
    no_registrations = False


class WrongPassword(ChatError):
    """The password is not this account's."""

    code = "wrong_password"


class PasswordChangedAway(WrongPassword):
    """A session coming back found the password it logged in with refused: it was changed
    while the connection was away (the daemon stopped when it was, say)."""


class AccountLocked(ChatError):
    """The daemon's operator locked this account (`trio-chat accounts lock`)."""

    code = "account_locked"


class AccountRemoved(ChatError):
    """The daemon's operator removed this account (`trio-chat accounts remove`): it
    logs in no more, and its name is not to be registered. The client does not come back
    by itself."""

    code = "account_removed"


class Removed(ChatError):
    """This session was ended: by the daemon's operator (`trio-chat accounts kick`, or a
    new password given), or by a new password set in another session of the account. The
    client does not come back by itself."""

    code = "removed"


class Banned(ChatError):
    """The daemon's operator turned this client's address away (`trio-chat bans add`).
    The client does not come back by itself. `until`: when the ban ends (Unix time, by
    the daemon's clock), if it said; None: for good, or not said."""

    code = "banned"

    def __init__(
        self, message: str, *, retry_after: float | None = None, until: float | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.until = until

    def dated(self, wall: float) -> None:
        """Received at Unix time `wall`: when the ban ends, from `retry_after` (the
        seconds left), unless it is known already."""
        if self.until is None and self.retry_after is not None:
            self.until = wall + self.retry_after


class Muted(ChatError):
    """The daemon's operator muted this account (`trio-chat accounts mute`): it reads the
    room, and may say nothing until unmuted."""

    code = "muted"


class InvalidName(ChatError):
    """No account may have this name (see the rules for names)."""

    code = "invalid_name"


class PasswordTooShort(ChatError):
    """A password has at least 8 characters."""

    code = "password_too_short"


class PasswordTooLong(ChatError):
    """A password has at most 256 characters, and must fit in a login frame."""

    code = "password_too_long"


class PasswordUnchanged(ChatError):
    """A new password is not the current one again."""

    code = "password_unchanged"


class TextEmpty(ChatError):
    """A message cannot be empty."""

    code = "text_empty"


class TextTooLong(ChatError):
    """A message holds at most 500 bytes of text."""

    code = "text_too_long"


class RateLimited(ChatError):
    """Messages sent too fast: resend after `retry_after` seconds (the client does, unless
    `ClientConfig.retry_rate_limited` is off: then the daemon, waiting for the refused
    message to come back first, refuses the session's later messages until `retry_after`
    and 10 s more have passed, whatever their own `retry_after` says)."""

    code = "rate_limited"


class Throttled(ChatError):
    """Too many failed logins: wait `retry_after` seconds."""

    code = "throttled"


class TooManySessions(ChatError):
    """Too many channels from this address, or sessions of this account."""

    code = "too_many_sessions"


class TooManyRegistrations(ChatError):
    """Too many accounts registered from this address (or by all): wait `retry_after`."""

    code = "too_many_registrations"


class RegistrationsClosed(ChatError):
    """The daemon takes no registrations: its operator makes the accounts."""

    code = "registrations_closed"


class MailboxFull(ChatError):
    """The recipient has too many unread private messages."""

    code = "mailbox_full"


class StorageFailed(ChatError):
    """The daemon could not write (or read) its database; try later."""

    code = "storage_failed"


class BadRequest(ChatError):
    """A request this session may not make (a `say` in a `quiet` session, say)."""

    code = "bad_request"


_BY_CODE: dict[str, type[ChatError]] = {
    cls.code: cls
    for cls in (
        ServerUnreachable,
        ConnectionLost,
        KeyChanged,
        Busy,
        TicketInvalid,
        NameTaken,
        UnknownUser,
        WrongPassword,
        AccountLocked,
        AccountRemoved,
        Removed,
        Banned,
        Muted,
        InvalidName,
        PasswordTooShort,
        PasswordTooLong,
        PasswordUnchanged,
        TextEmpty,
        TextTooLong,
        RateLimited,
        Throttled,
        TooManySessions,
        TooManyRegistrations,
        RegistrationsClosed,
        MailboxFull,
        StorageFailed,
        BadRequest,
    )
}


def error_for(
    code: str, message: str, retry_after: float | None = None, *, no_registrations: bool = False
) -> ChatError:
    """The exception for an error the server sent."""
    cls = _BY_CODE.get(code, ProtocolError)
    error = cls(message, retry_after=retry_after)
    if isinstance(error, UnknownUser):
        error.no_registrations = no_registrations
    return error
