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


async def test_leaving_the_block_waits_for_the_answers_to_what_was_sent(
    daemon: tuple[str, int],
) -> None:
    host, port = daemon
    with trio.fail_after(20):
        await register_all(host, port, "alice")
        async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
            receipts = [alice.say_nowait(f"m{n:03d}") for n in range(200)]
        assert all(receipt.done for receipt in receipts)
        said = [await receipt.wait() for receipt in receipts]  # none "You logged out."
        assert [message.text for message in said] == [f"m{n:03d}" for n in range(200)]
        async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
            newest = await alice.history(100)
            older = await alice.history(100, before=newest[0].id)
        assert [m.id for m in older + newest] == [m.id for m in said]
