"""The client API as a bot author uses it, against a real daemon: what leaves `connect`'s
block, what receipts say, and what the calls raise."""

from __future__ import annotations

import pytest
import trio

import trio_chat
from trio_chat.client import ClientConfig

PASSWORD = "correct horse"
FAST = ClientConfig(timeout=2.0)


async def register_all(host: str, port: int, *names: str) -> None:
    for name in names:
        await trio_chat.register(host, port, name, PASSWORD)


class BotGaveUp(Exception):
    pass


async def test_what_the_block_raises_leaves_it_as_itself(daemon: tuple[str, int]) -> None:
    host, port = daemon
    with trio.fail_after(20):
        await register_all(host, port, "alice")
        with pytest.raises(trio_chat.UnknownUser, match="no account named 'nobody'"):
            async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
                await alice.whisper("nobody", "hello?")
        with pytest.raises(BotGaveUp) as caught:
            async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
                raise BotGaveUp("enough")
        assert str(caught.value) == "enough"
        assert alice.failure is not None and alice.failure.message == "You logged out."
