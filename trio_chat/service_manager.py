"""Telling a service manager how the daemon is: systemd's readiness protocol.

A unit of `Type=notify` starts the daemon with `NOTIFY_SOCKET` naming a Unix datagram
socket; the daemon sends `READY=1` there once it listens (so that units ordered after it
start only then: with a large database, listening takes a second or more), and
`STOPPING=1` as it begins to stop. Without `NOTIFY_SOCKET` nothing is sent. This is the
whole protocol a daemon needs (sd_notify(3)); no library is needed for a datagram.
"""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send `state` (`KEY=value` lines) to the service manager, if one asked; whether it
    went. A manager that is gone is no reason to stop serving: errors are swallowed."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True
