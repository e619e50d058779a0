"""The client side of the protocol, with no I/O: the one implementation every client uses.

Modules by concern: `connection` (`ClientConnection`, the state machine: channels, login,
reconnection, resending, the daemon's frames; its docstring tells how to drive it),
`requests` (`Handle`, a request on its way, the ids it goes with, and the checks before
one is sent), `outstanding` (the requests not answered yet, and those refused as too
fast), `password` (the password a login sends, and a change of it on its way),
`retries` (when a login or a channel goes again, and when coming back gives up),
`endings` (the daemon's goodbyes, and the sentences a connection ends with),
`keepalive` (when a connection pings), `intake` (the messages shown, and a login's
history held until its end), `messages` (the daemon's messages and timestamps as
events), `config` (`ClientConfig`). Nothing here reads the clock or touches a socket.
"""

from .config import ClientConfig
from .connection import ClientConnection
from .intake import SEEN_MEMORY
from .keepalive import KEEPALIVE_PATIENCE
from .outstanding import WHO_NAMES_MAX
from .requests import (
    Handle,
    Ids,
    check_login,
    check_registration,
    registration_result,
    require_type,
)

__all__ = [
    "KEEPALIVE_PATIENCE",
    "SEEN_MEMORY",
    "WHO_NAMES_MAX",
    "ClientConfig",
    "ClientConnection",
    "Handle",
    "Ids",
    "check_login",
    "check_registration",
    "registration_result",
    "require_type",
]
