"""trio-chat: a small chat daemon over UDP, built on Trio.

The client API: `register()` creates an account, `connect()` logs in and enters the room.
Its names are imported when first used (PEP 562), so that a command that needs few of
them starts at once, and a Ctrl-C while it starts is its own to answer (`launch`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import ChatClient, ClientConfig, Receipt, connect, register
    from .errors import (
        AccountLocked,
        AccountRemoved,
        BadRequest,
        Banned,
        Busy,
        ChatError,
        ConnectionLost,
        InvalidName,
        KeyChanged,
        KeyUnproven,
        MailboxFull,
        Muted,
        NameTaken,
        PasswordTooLong,
        PasswordTooShort,
        PasswordUnchanged,
        ProtocolError,
        RateLimited,
        RegistrationsClosed,
        Removed,
        ServerUnreachable,
        StorageFailed,
        TextEmpty,
        TextTooLong,
        Throttled,
        TicketInvalid,
        TooManyRegistrations,
        TooManySessions,
        UnknownUser,
        WrongPassword,
    )
    from .events import (
        ChatMessage,
        Disconnected,
        Event,
        History,
        Joined,
        Left,
        MessageRemoved,
        Missed,
        Notice,
        PrivateMessage,
        PublicMessage,
        Reconnected,
    )
    from .keys import KeyFileError
    from .trust import trust_server

__version__ = "0.1.0"

_WHERE: dict[str, str] = {
    "ChatClient": "client",
    "ClientConfig": "client",
    "Receipt": "client",
    "connect": "client",
    "register": "client",
    "trust_server": "trust",
    "AccountLocked": "errors",
    "AccountRemoved": "errors",
    "BadRequest": "errors",
    "Banned": "errors",
    "Busy": "errors",
    "ChatError": "errors",
    "ConnectionLost": "errors",
    "InvalidName": "errors",
    "KeyChanged": "errors",
    "KeyUnproven": "errors",
    "MailboxFull": "errors",
    "Muted": "errors",
    "NameTaken": "errors",
    "PasswordTooLong": "errors",
    "PasswordTooShort": "errors",
    "PasswordUnchanged": "errors",
    "ProtocolError": "errors",
    "RateLimited": "errors",
    "RegistrationsClosed": "errors",
    "Removed": "errors",
    "ServerUnreachable": "errors",
    "StorageFailed": "errors",
    "TextEmpty": "errors",
    "TextTooLong": "errors",
    "Throttled": "errors",
    "TicketInvalid": "errors",
    "TooManyRegistrations": "errors",
    "TooManySessions": "errors",
    "UnknownUser": "errors",
    "WrongPassword": "errors",
    "ChatMessage": "events",
    "Disconnected": "events",
    "Event": "events",
    "History": "events",
    "Joined": "events",
    "Left": "events",
    "MessageRemoved": "events",
    "Missed": "events",
    "Notice": "events",
    "PrivateMessage": "events",
    "PublicMessage": "events",
    "Reconnected": "events",
    "KeyFileError": "keys",
}
"""Each name of the API, and the module (of this package) that holds it."""


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "AccountLocked",
    "AccountRemoved",
    "BadRequest",
    "Banned",
    "Busy",
    "ChatClient",
    "ChatError",
    "ChatMessage",
    "ClientConfig",
    "ConnectionLost",
    "Disconnected",
    "Event",
    "History",
    "InvalidName",
    "Joined",
    "KeyChanged",
    "KeyFileError",
    "KeyUnproven",
    "Left",
    "MailboxFull",
    "MessageRemoved",
    "Missed",
    "Muted",
    "NameTaken",
    "Notice",
    "PasswordTooLong",
    "PasswordTooShort",
    "PasswordUnchanged",
    "PrivateMessage",
    "ProtocolError",
    "PublicMessage",
    "RateLimited",
    "Receipt",
    "Reconnected",
    "RegistrationsClosed",
    "Removed",
    "ServerUnreachable",
    "StorageFailed",
    "TextEmpty",
    "TextTooLong",
    "Throttled",
    "TicketInvalid",
    "TooManyRegistrations",
    "TooManySessions",
    "UnknownUser",
    "WrongPassword",
    "__version__",
    "connect",
    "register",
    "trust_server",
]
