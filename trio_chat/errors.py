"""The exceptions the client API raises, one per thing that can go wrong.

Every error the server can send has a stable code (see `docs/protocol.md`); each code
maps to one exception class here. The message is a sentence a person can act on.
"""

from __future__ import annotations


class ChatError(Exception):
    """Base class: `code` is the protocol's error code, `message` a sentence for people."""

    code = "error"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class ServerUnreachable(ChatError):
    code = "unreachable"


class ConnectionLost(ChatError):
    """The session ended (the daemon went away or shut down) and was not resumed."""

    code = "connection_lost"


class ProtocolError(ChatError):
    code = "protocol_error"


class KeyChanged(ChatError):
    """The daemon's static key is not the one this client trusts for that address."""

    code = "key_changed"


class Busy(ChatError):
    """The daemon is starting too many channels at once: wait `retry_after` seconds."""

    code = "busy"


class TicketInvalid(ChatError):
    """A resumption ticket expired or came from a daemon with another ticket key."""

    code = "ticket_invalid"


class NameTaken(ChatError):
    code = "name_taken"


class UnknownUser(ChatError):
    code = "unknown_user"


class WrongPassword(ChatError):
    code = "wrong_password"


class InvalidName(ChatError):
    code = "invalid_name"


class PasswordTooShort(ChatError):
    code = "password_too_short"


class PasswordTooLong(ChatError):
    code = "password_too_long"


class TextEmpty(ChatError):
    code = "text_empty"


class TextTooLong(ChatError):
    code = "text_too_long"


class RateLimited(ChatError):
    code = "rate_limited"


class Throttled(ChatError):
    """Too many failed logins: wait `retry_after` seconds."""

    code = "throttled"


class TooManySessions(ChatError):
    code = "too_many_sessions"


class TooManyRegistrations(ChatError):
    code = "too_many_registrations"


class MailboxFull(ChatError):
    code = "mailbox_full"


class StorageFailed(ChatError):
    code = "storage_failed"


class BadRequest(ChatError):
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
        InvalidName,
        PasswordTooShort,
        PasswordTooLong,
        TextEmpty,
        TextTooLong,
        RateLimited,
        Throttled,
        TooManySessions,
        TooManyRegistrations,
        MailboxFull,
        StorageFailed,
        BadRequest,
    )
}


def error_for(code: str, message: str, retry_after: float | None = None) -> ChatError:
    """The exception for an error the server sent."""
    cls = _BY_CODE.get(code, ProtocolError)
    return cls(message, retry_after=retry_after)
