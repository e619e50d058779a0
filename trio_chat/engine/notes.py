"""What the engine tells the daemon's operator: typed notes, logged by the shell.

The engine decides who registered, logged in, failed, was throttled or dropped; it does
no logging itself (logging reads the clock and writes to files). It hands these notes out
with `ServerEngine.take_notes()`, and the shell turns them into log lines. A note never
holds a password, a token or a key.
"""

from __future__ import annotations

from dataclasses import dataclass

from .common import Address


@dataclass(frozen=True, slots=True)
class Registered:
    name: str
    address: Address


@dataclass(frozen=True, slots=True)
class RegistrationRefused:
    name: str
    address: Address
    code: str
    """`too_many_registrations`, `name_taken`, `invalid_name`, `password_too_short`, ..."""
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class LoggedIn:
    name: str
    address: Address
    quiet: bool


@dataclass(frozen=True, slots=True)
class LoginRefused:
    name: str
    """The name as the client typed it (there may be no such account)."""
    address: Address
    code: str
    """`unknown_user`, `wrong_password`, `account_locked`, `throttled`, `too_many_sessions`."""
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class SessionEnded:
    name: str
    address: Address
    reason: str
    """`quit` (logged out), `silent` (nothing heard for the idle timeout), `unresponsive`
    (its acknowledgements stopped), `overloaded` (too much waited for it), `shutdown`,
    `replaced` (its client came back on a new channel), `removed` and `banned` (the
    operator's), `password_changed` (a new password given in another of its sessions)."""


@dataclass(frozen=True, slots=True)
class PasswordChanged:
    """An account's session gave it a new password."""

    name: str
    address: Address


@dataclass(frozen=True, slots=True)
class AddressChanged:
    name: str
    old: Address
    new: Address


@dataclass(frozen=True, slots=True)
class BanEnded:
    """A ban the operator gave for a while ended: its network is let in again, unless a
    wider ban (`still`) holds it, but for the networks inside it still banned (`within`)."""

    network: str
    until: str
    """When it ended (ISO 8601, UTC)."""
    still: tuple[tuple[str, str | None], ...] = ()
    """The wider bans that still hold all of it: each network, and its end (None: for
    good)."""
    within: tuple[tuple[str, str | None], ...] = ()
    """The first few bans of networks inside it, which still hold: each network, and its
    end."""
    within_count: int = 0
    """How many bans of networks inside it still hold (`within` names the first few)."""


Note = (
    Registered
    | RegistrationRefused
    | LoggedIn
    | LoginRefused
    | SessionEnded
    | AddressChanged
    | PasswordChanged
    | BanEnded
)
