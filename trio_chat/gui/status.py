"""The state of the connection, as the status bar says it."""

from __future__ import annotations

import enum

from ..display import counted, safe, safe_name
from . import colours


class Link(enum.Enum):
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    LOST = "lost"
    LEAVING = "leaving"
    """Closed by the person: logging out, still showing what arrives until it is done."""


COLOUR = {
    Link.CONNECTED: colours.GOOD,
    Link.RECONNECTING: colours.WAITING,
    Link.LOST: colours.BAD,
    Link.LEAVING: colours.WAITING,
}


MUTED_STATUS = "; muted by the operator"


def waiting_text(count: int) -> str:
    if count == 0:
        return "nothing waiting to be sent"
    return f"{counted(count, 'line')} waiting to be sent"


def status_text(
    link: Link, where: str, me: str, waiting: int, reason: str = "", *, muted: bool = False
) -> str:
    """`Connected to 127.0.0.1:1600 as alice` (`; muted by the operator`, while the
    operator has muted the account), `Reconnecting to … (lost: why); 2 lines
    waiting to be sent`, `Logging out of 127.0.0.1:1600; close the window again to leave
    now` (once lines waiting are stored), or `Connection lost: …`. The reason while
    reconnecting is why the connection went, which may no longer hold (a daemon that was
    stopping has stopped)."""
    why = safe(reason).rstrip(".")
    if link is Link.CONNECTED:
        return f"Connected to {where} as {safe_name(me)}{MUTED_STATUS if muted else ''}"
    if link is Link.RECONNECTING:
        because = f" (lost: {why})" if why else ""
        return f"Reconnecting to {where}{because}; {waiting_text(waiting)}"
    if link is Link.LEAVING:
        once = ""
        if waiting:
            once = f" once {counted(waiting, 'line')} {'is' if waiting == 1 else 'are'} stored"
        return f"Logging out of {where}{once}; close the window again to leave now"
    return f"Connection lost: {why}" if why else "Connection lost"
