"""trio-chat: a small chat daemon over UDP, built on Trio.

The client API: `register()` creates an account, `connect()` logs in and enters the room.
"""

from .client import ChatClient, ClientConfig, Receipt, connect, register
from .errors import (
    BadRequest,
    ChatError,
    ConnectionLost,
    InvalidName,
    MailboxFull,
    NameTaken,
    PasswordTooLong,
    PasswordTooShort,
    ProtocolError,
    RateLimited,
    ServerUnreachable,
    StorageFailed,
    TextEmpty,
    TextTooLong,
    Throttled,
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
    Notice,
    PrivateMessage,
    PublicMessage,
    Reconnected,
)

__version__ = "0.1.0"

__all__ = [
    "BadRequest",
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
    "Left",
    "MailboxFull",
    "NameTaken",
    "Notice",
    "PasswordTooLong",
    "PasswordTooShort",
    "PrivateMessage",
    "ProtocolError",
    "PublicMessage",
    "RateLimited",
    "Receipt",
    "Reconnected",
    "ServerUnreachable",
    "StorageFailed",
    "TextEmpty",
    "TextTooLong",
    "Throttled",
    "TooManyRegistrations",
    "TooManySessions",
    "UnknownUser",
    "WrongPassword",
    "__version__",
    "connect",
    "register",
]
