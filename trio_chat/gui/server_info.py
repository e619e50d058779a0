"""What the "About this server" view shows, read from a `ChatClient` in one place."""

from __future__ import annotations

from dataclasses import dataclass

from ..client import ChatClient
from ..keys import address_label


@dataclass(frozen=True, slots=True)
class ServerInfo:
    host: str
    port: int
    name: str
    """Your name, as the daemon keeps it."""
    fingerprint: str
    """The daemon's key as a person compares it (`SHA256:...`): the key this client trusts,
    which the daemon proved it holds."""

    @property
    def where(self) -> str:
        return address_label(self.host, self.port)


def server_info(chat: ChatClient) -> ServerInfo:
    return ServerInfo(chat.host, chat.port, chat.name, chat.server_fingerprint)
