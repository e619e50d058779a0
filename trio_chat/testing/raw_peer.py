"""A client driven by hand over a real socket: it logs in as any client does, then does
only what a test tells it to, such as nothing at all, or acknowledging nothing."""

from __future__ import annotations

import trio

from trio_chat import wire
from trio_chat.client_protocol import ClientConfig, ClientConnection


class RawPeer:
    """One session on its own socket; `log_in()` returns once the daemon has welcomed it."""

    def __init__(
        self, server_key: bytes, name: str, password: str, *, timeout: float = 5.0
    ) -> None:
        config = ClientConfig(reconnect=False, timeout=timeout)
        self.connection = ClientConnection(server_key, name, password, config=config)
        self.sock = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
        self._next_pn = 1 << 40  # far above any number the link itself will use

    async def log_in(self, host: str, port: int) -> None:
        """Open the channel and log in; the link is then left alone (no acks, no pings)."""
        connection = self.connection
        await self.sock.connect((host, port))
        connection.start(trio.current_time())
        while not connection.connected:
            await self.step()

    async def step(self, wait: float = 0.02) -> None:
        """One turn of a client's loop: timers, sending, and one datagram received."""
        connection = self.connection
        now = trio.current_time()
        deadline = connection.next_timer()
        if deadline is not None and deadline <= now:
            connection.handle_timer(now)
        for datagram in connection.datagrams_to_send(now):
            await self.sock.send(datagram)
        with trio.move_on_after(wait):
            data = await self.sock.recv(2048)
            connection.receive_datagram(data, trio.current_time())
        if connection.closed:
            raise RuntimeError(f"the login failed: {connection.failure}")

    async def send_frozen_ack(self) -> None:
        """A datagram acknowledging only what was acknowledged before: a peer that is
        heard from, yet takes nothing in."""
        channel, link = self.connection.channel, self.connection.link
        assert channel is not None and link is not None
        payload = wire.close_payload(wire.payload_head(link.received_up_to, 0, []), b"")
        self._next_pn += 1
        await self.sock.send(channel.seal(self._next_pn, payload))

    def close(self) -> None:
        self.sock.close()
