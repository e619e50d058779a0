"""Why signing in did not work, as a sentence, and which field of the dialog to fix."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from ..display import cannot_exist, quoted, safe, told
from ..errors import (
    AccountLocked,
    Banned,
    ChatError,
    InvalidName,
    KeyChanged,
    KeyUnproven,
    NameTaken,
    PasswordTooLong,
    PasswordTooShort,
    RegistrationsClosed,
    ServerUnreachable,
    Throttled,
    TooManyRegistrations,
    UnknownUser,
    WrongPassword,
)
from ..keys import address_label
from ..rules import HELD, MISTAKEN_FOR
from ..wire import REGISTRATIONS_CLOSED


class Field(enum.Enum):
    HOST = "host"
    PORT = "port"
    NAME = "name"
    PASSWORD = "password"
    REPEAT = "repeat"


@dataclass(frozen=True, slots=True)
class Problem:
    sentence: str
    field: Field


@dataclass(frozen=True, slots=True)
class SignInForm:
    host: str
    port: int
    name: str
    password: str
    repeat: str = ""
    create: bool = False
    """Create the account first (register, then sign in)."""

    @property
    def where(self) -> str:
        return address_label(self.host, self.port)


NO_REGISTRATIONS = Problem(REGISTRATIONS_CLOSED, Field.NAME)
"""The daemon's `KEY` said it takes no registrations, as "Create an account" was ticked
or signing in began: said before any password is sent, with the box unticked."""


def form_problem(form: SignInForm) -> Problem | None:
    """What is missing before anything is sent (the daemon checks the rest)."""
    if not form.host.strip():
        return Problem("Enter the address of the trio-chat daemon.", Field.HOST)
    if not form.name.strip():
        return Problem("Enter your name.", Field.NAME)
    if not form.password:
        return Problem("Enter your password.", Field.PASSWORD)
    if form.create and form.repeat != form.password:
        return Problem("The two passwords differ; type the same one twice.", Field.REPEAT)
    return None


def key_changed_sentence(host: str, port: int) -> str:
    """What to do when the daemon at `host:port` shows another key than the one trusted."""
    where = safe(address_label(host, port))
    return (
        f"The daemon at {where} shows another key than the one trusted for it; if its "
        f"operator changed the key on purpose, `trio-chat trust --host {safe(host)} --port "
        f"{port}` (in a terminal) shows the new key and asks before trusting it, else "
        "someone may be in the middle."
    )


def key_unproven_sentence(host: str, port: int) -> str:
    """What to do when the daemon at `host:port`, met for the first time, showed one key
    and answered the handshake under it with another."""
    where = safe(address_label(host, port))
    return (
        f"The daemon at {where} showed one key and answered with another (someone on the "
        "way may have answered in its place); nothing was trusted: sign in again, or trust "
        f"its key in a terminal with `trio-chat trust --host {safe(host)} --port {port} "
        "--server-key` and the fingerprint its operator publishes."
    )


def sign_in_problem(error: ChatError, form: SignInForm) -> Problem:
    """The sentence for a refusal (the error's own message, or a better one), and the field."""
    name = quoted(form.name)
    wait = ""
    if error.retry_after is not None:
        wait = f" (about {math.ceil(error.retry_after)} s)"
    if isinstance(error, ServerUnreachable):
        return Problem(
            f"Cannot reach trio-chat at {safe(form.where)}; check the address and port, "
            "and that `trio-chat serve` is running there.",
            Field.HOST,
        )
    if isinstance(error, KeyUnproven):
        return Problem(key_unproven_sentence(form.host, form.port), Field.HOST)
    if isinstance(error, KeyChanged):
        return Problem(key_changed_sentence(form.host, form.port), Field.HOST)
    if isinstance(error, WrongPassword):
        return Problem(f"Wrong password for {name}.", Field.PASSWORD)
    if isinstance(error, AccountLocked):
        return Problem(safe(error.message), Field.NAME)
    if isinstance(error, Banned):
        return Problem(told(error), Field.HOST)  # its end said, to the second
    if isinstance(error, UnknownUser):
        cannot = cannot_exist(form.name)
        if cannot is not None:  # creating it would be refused too
            return Problem(cannot, Field.NAME)
        if HELD in error.message:  # an account the operator removed had it
            return Problem(safe(error.message), Field.NAME)
        if error.no_registrations:
            return Problem(
                f"There is no account named {name}, and this daemon takes no registrations: "
                "ask its operator for an account.",
                Field.NAME,
            )
        return Problem(
            f"There is no account named {name}; tick “Create an account” to create it.",
            Field.NAME,
        )
    if isinstance(error, NameTaken):
        if MISTAKEN_FOR in error.message or HELD in error.message:
            # Too like another account's name, which the sentence names, or held by the
            # operator (an account removed had it): no account has this one to sign in to.
            return Problem(safe(error.message), Field.NAME)
        return Problem(
            f"The name {name} is taken; choose another, or untick “Create an account” "
            "to sign in with it.",
            Field.NAME,
        )
    if isinstance(error, InvalidName):
        return Problem(safe(error.message), Field.NAME)
    if isinstance(error, RegistrationsClosed):
        return Problem(
            "This daemon takes no registrations: ask its operator for an account, and sign "
            "in with it (“Create an account” unticked).",
            Field.NAME,
        )
    if isinstance(error, PasswordTooShort | PasswordTooLong):
        return Problem(safe(error.message), Field.PASSWORD)
    if isinstance(error, Throttled):
        return Problem(
            f"Too many failed sign-ins; wait a moment{wait} and try again.", Field.PASSWORD
        )
    field = Field.NAME if isinstance(error, TooManyRegistrations) else Field.HOST
    return Problem(f"{safe(error.message).rstrip('.')}{wait}.", field)
