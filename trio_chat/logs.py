"""The daemon's log: what its operator reads, as text lines or one JSON object a line.

The engine hands out notes (`engine.notes`); `log_note` turns each into a record with an
`event` name and its fields, and the two formatters write them: text for a terminal,
JSON for journald, Loki or ELK. Every name that came from the network passes through
`display.safe` in text, so a name cannot forge a log line; nothing logged holds a
password, a token or a key.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, TextIO

from .display import counted, json_escaped, quoted, safe, safe_name
from .engine import Address, ServerConfig
from .engine.bans import held_within, still_held
from .engine.common import network_of
from .engine.notes import (
    BanEnded,
    LoggedIn,
    LoginRefused,
    Note,
    PasswordChanged,
    Registered,
    RegistrationRefused,
    SessionEnded,
)
from .keys import address_label
from .limits import KeyedBuckets

log = logging.getLogger("trio_chat")

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")


def shown(address: Address) -> str:
    """`127.0.0.1:1600`, or `[::1]:1600` for IPv6."""
    return address_label(address[0], address[1])


class TextFormatter(logging.Formatter):
    """`2026-12-04T10:12:13.123Z info  alice logged in from 127.0.0.1:40001`."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = _stamp(record)
        line = f"{stamp} {record.levelname.lower():7} {record.getMessage()}"
        if record.exc_info and record.levelno >= logging.ERROR:
            # One line even for a bug: the exception's type and message, not a traceback.
            error = record.exc_info[1]
            line += f" ({type(error).__name__}: {safe(str(error))})"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: `ts`, `level`, `event`, `message`, and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _stamp(record),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", "log"),
            "message": record.getMessage(),
        }
        for key, value in getattr(record, "fields", {}).items():
            entry.setdefault(key, value)  # never in place of the line's own four
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            entry["error"] = f"{type(error).__name__}: {error}"
        # Fields come from strangers (a name a login tried): raw, a bidi control in one
        # would reorder the rest of the line in whatever shows the log.
        return json_escaped(json.dumps(entry, ensure_ascii=False))


def _stamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def configure(level: str = "info", form: str = "text", stream: TextIO | None = None) -> None:
    """Send trio-chat's log to `stream` (standard error) at `level`, as `form`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if form == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))


@contextlib.contextmanager
def configured(level: str = "info", form: str = "text") -> Iterator[None]:
    """trio-chat's log sent to standard error (`configure`) while the block runs; the
    logging as it was after it, so that a daemon run inside a program (its tests, a
    `CliRunner`) leaves no handler behind writing to a stream that may be closed by then."""
    root = logging.getLogger()
    handlers, level_before = list(root.handlers), root.level
    configure(level, form)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level_before)


def event(level: int, kind: str, message: str, /, **values: Any) -> None:
    """Log one event of `kind`: `message` for people, `values` as fields for machines."""
    log.log(level, message, extra={"event": kind, "fields": values})


def log_note(note: Note) -> None:
    """Log what the engine noted."""
    if isinstance(note, Registered):
        where = shown(note.address)
        event(
            logging.INFO,
            "registered",
            f"{safe_name(note.name)} registered from {where}",
            name=note.name,
            address=where,
        )
    elif isinstance(note, RegistrationRefused):
        where = shown(note.address)
        level = logging.WARNING if note.code == "too_many_registrations" else logging.INFO
        event(
            level,
            "registration_refused",
            f"registration of {quoted(note.name)} from {where} refused: {note.code}"
            + _retry(note.retry_after),
            name=note.name,
            address=where,
            reason=note.code,
            retry_after=note.retry_after,
        )
    elif isinstance(note, LoggedIn):
        where = shown(note.address)
        how = " to look (quiet)" if note.quiet else ""
        event(
            logging.INFO,
            "login",
            f"{safe_name(note.name)} logged in from {where}{how}",
            name=note.name,
            address=where,
            quiet=note.quiet,
        )
    elif isinstance(note, LoginRefused):
        where = shown(note.address)
        event(
            logging.WARNING,
            "login_refused",
            f"login as {quoted(note.name)} from {where} refused: {note.code}"
            + _retry(note.retry_after),
            name=note.name,
            address=where,
            reason=note.code,
            retry_after=note.retry_after,
        )
    elif isinstance(note, SessionEnded):
        where = shown(note.address)
        if note.reason == "quit":
            event(
                logging.INFO,
                "logout",
                f"{safe_name(note.name)} logged out from {where}",
                name=note.name,
                address=where,
            )
        else:
            # Asked for (by the operator, a new password, the client coming back on a
            # new channel): nothing to look into.
            asked = note.reason in ("shutdown", "removed", "banned", "password_changed", "replaced")
            level = logging.INFO if asked else logging.WARNING
            event(
                level,
                "session_dropped",
                f"session of {safe_name(note.name)} at {where} ended: {note.reason}",
                name=note.name,
                address=where,
                reason=note.reason,
            )
    elif isinstance(note, BanEnded):
        after = still_held(note.still) + held_within(note.within, note.within_count)
        event(
            logging.INFO,
            "ban_ended",
            f"the ban on {note.network} until {note.until} ended{after}",
            network=note.network,
            until=note.until,
            still=[network for network, _until in note.still],
            within=[network for network, _until in note.within],
            within_count=note.within_count,
        )
    elif isinstance(note, PasswordChanged):
        where = shown(note.address)
        event(
            logging.INFO,
            "password_changed",
            f"{safe_name(note.name)} changed their password from {where}",
            name=note.name,
            address=where,
        )
    else:
        old, new = shown(note.old), shown(note.new)
        event(
            logging.INFO,
            "address_changed",
            f"{safe_name(note.name)} moved from {old} to {new}",
            name=note.name,
            old=old,
            new=new,
        )


def _retry(seconds: float | None) -> str:
    return "" if seconds is None else f" (retry after {seconds:.1f} s)"


PER_MINUTE = frozenset({"register_rate", "register_rate_total"})
"""Settings kept per second but given per minute (`--register-rate`, `--register-rate-total`):
logged as given."""


def limits_changed(config: ServerConfig) -> dict[str, Any]:
    """The settings that differ from the defaults, by name, in the options' units."""
    default = ServerConfig()
    return {
        each.name: _as_given(each.name, getattr(config, each.name))
        for each in fields(config)
        if each.name != "link" and getattr(config, each.name) != getattr(default, each.name)
    }


def _as_given(name: str, value: Any) -> Any:
    return round(value * 60, 9) if name in PER_MINUTE else value


REFUSALS_LOGGED_PER_MINUTE = 6
"""Refused logins or registrations logged one by one, per address (IPv6: /64) and reason,
in any minute; past it they are counted in the summary line instead."""


class NoteLog:
    """Logs the engine's notes (`log_note`), but not a line for every refusal of a flood.

    An attacker failing logins as fast as the daemon answers them (thousands a second,
    every one `throttled`) would otherwise write tens of megabytes of log a minute: the
    first few refusals a minute from one network and for one reason are logged, the rest
    counted (`unlogged`) and reported by the summary line.
    """

    def __init__(self) -> None:
        per_minute = REFUSALS_LOGGED_PER_MINUTE
        self._allowance = KeyedBuckets(per_minute / 60, per_minute)
        self.unlogged = 0

    def log(self, note: Note, now: float) -> None:
        if isinstance(note, LoginRefused | RegistrationRefused):
            key = (network_of(note.address), note.code)
            if self._allowance.take(key, now) > 0:
                self.unlogged += 1
                return
        log_note(note)


DROPPED = {
    "bad_datagrams": "garbage",
    "bad_frames": "bad frames",
    "bad_records": "forged",
    "unknown_sessions": "for unknown sessions",
    "unsent_for_amplification": "answers held back (amplification)",
    "send_errors": "not sent (the send buffer full, or the network refused; resent later)",
}


@dataclass
class Summary:
    """A line a minute: connections (logged in or not), messages, and what was dropped,
    since the last line."""

    last: dict[str, int] = field(default_factory=dict)

    def line(
        self,
        stats: dict[str, int],
        connections: int,
        online: int,
        minutes: float,
        unlogged: int = 0,
    ) -> None:
        stats = {**stats, "unlogged_refusals": unlogged}
        delta = {key: value - self.last.get(key, 0) for key, value in stats.items()}
        self.last = dict(stats)
        if not connections and not delta.get("datagrams_in"):
            return  # nothing happened and nobody is here: nothing to say
        per_minute = delta.get("messages", 0) / minutes if minutes > 0 else 0.0
        dropped = {kind: delta.get(kind, 0) for kind in DROPPED}
        shown_dropped = (
            ", ".join(f"{count} {DROPPED[kind]}" for kind, count in dropped.items() if count)
            or "nothing"
        )
        quiet = delta.get("unlogged_refusals", 0)
        crowded = delta.get("handshakes_refused", 0)
        event(
            # Refusals not logged one by one are warnings all the same: a log kept at
            # `warning` counts them here, or it would hold only the first few of a flood.
            logging.WARNING if quiet else logging.INFO,
            "summary",
            f"{counted(connections, 'connection')} ({counted(online, 'person', 'people')} online), "
            f"{counted(round(per_minute), 'message')} a minute, "
            f"{counted(delta.get('datagrams_in', 0), 'datagram')} in; dropped: {shown_dropped}"
            + (f"; {quiet} refused logins and registrations not logged one by one" if quiet else "")
            + (
                f"; {counted(crowded, 'connection')} refused as too many from one address"
                if crowded
                else ""
            ),
            connections=connections,
            sessions=connections,  # the same count, under the name it had before
            online=online,
            messages_per_minute=round(per_minute, 1),
            datagrams_in=delta.get("datagrams_in", 0),
            dropped=dropped,
            unlogged_refusals=quiet,
            handshakes_refused=crowded,
        )
