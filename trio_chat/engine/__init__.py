"""The daemon's sans-I/O core: `ServerEngine` and what it hands to its shell.

Modules by concern: `lobby` (register, login, the reply cache, the byte budget of
unproven addresses), `guard` (the allowances every password check is counted against),
`password_change` (a session changing its account's password), `sessions` (links,
addresses, timers, output), `chat` (what the room sees), `fanout` (who is in the room,
and how a frame reaches them), `history` (the newest messages), `mailbox` (the private
ones waiting: counted, in memory for the accounts logged in, read at a login), `effects`
(work for the shell, as typed values), `notes` (what the operator's log is told),
`config`, `common` (addresses, the outbox, timestamps); `core` joins them.
"""

from .common import Address, iso_time
from .config import ServerConfig, daemon_link
from .core import ServerEngine
from .effects import (
    CheckPassword,
    Effect,
    FindSent,
    HashPassword,
    LoadHistory,
    LoadMailbox,
    Persist,
)
from .sessions import Session

__all__ = [
    "Address",
    "CheckPassword",
    "Effect",
    "FindSent",
    "HashPassword",
    "LoadHistory",
    "LoadMailbox",
    "Persist",
    "ServerConfig",
    "ServerEngine",
    "Session",
    "daemon_link",
    "iso_time",
]
