"""The client side of the protocol, with no I/O: the one implementation every client uses.

Modules by concern: `connection` (`ClientConnection`, the state machine: channels, login,
reconnection, resending; its docstring tells how to drive it), `requests` (`Handle`, a
request on its way, and the checks before one is sent), `messages` (the daemon's messages
and timestamps as events), `config` (`ClientConfig`). Nothing here reads the clock or
touches a socket.
"""

from .config import ClientConfig
from .connection import (
    KEEPALIVE_PATIENCE,
    KEEPALIVE_SPREAD,
    SEEN_MEMORY,
    WHO_NAMES_MAX,
    ClientConnection,
    Ids,
    new_index,
)
from .messages import message_event, parse_time
from .requests import (
    Handle,
    check_login,
    check_registration,
    registration_result,
    require_type,
    rule_error,
)

__all__ = [
    "KEEPALIVE_PATIENCE",
    "KEEPALIVE_SPREAD",
    "SEEN_MEMORY",
    "WHO_NAMES_MAX",
    "ClientConfig",
    "ClientConnection",
    "Handle",
    "Ids",
    "check_login",
    "check_registration",
    "message_event",
    "new_index",
    "parse_time",
    "registration_result",
    "require_type",
    "rule_error",
]
