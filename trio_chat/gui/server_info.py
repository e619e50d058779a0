"""What the "About this server" view shows, read from a `ChatClient` in one place."""

from __future__ import annotations

from dataclasses import dataclass

from ..client import ChatClient


@dataclass(frozen=True, slots=True)
class ServerInfo:
    host: str
    port: int
    name: str
    """Your name, as the daemon keeps it."""
    fingerprint: str | None
    """The daemon's key fingerprint; None while the client does not know one."""

    @property
    def where(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def server_fingerprint(chat: ChatClient) -> str | None:
    """The daemon's key fingerprint, from `ChatClient.server_fingerprint` (a `str`) when the
    client has that attribute; None otherwise."""
    value: object = getattr(chat, "server_fingerprint", None)
    return value if isinstance(value, str) and value else None


def server_info(chat: ChatClient) -> ServerInfo:
    return ServerInfo(chat.host, chat.port, chat.name, server_fingerprint(chat))
