"""A client outlives its daemon: it logs in again, resends, and shows what it missed once."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import trio

import trio_chat
from trio_chat.client import ClientConfig
from trio_chat.testing.daemon import DaemonProcess

PASSWORD = "correct horse"
QUICK = ClientConfig(keepalive=0.5, reconnect_delay_max=0.5)


def texts_of(event: trio_chat.Event) -> list[str]:
    """The public messages an event shows, live or as history."""
    if isinstance(event, trio_chat.PublicMessage):
        return [event.text]
    if isinstance(event, trio_chat.History):
        return [m.text for m in event.messages]
    return []


async def test_clients_resume_after_the_daemon_is_killed_and_restarted(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    daemon = DaemonProcess(nursery, tmp_path / "chat.db", "--register-burst", "100")
    with trio.fail_after(60):
        _host, port = await daemon.start()
        for name in ("alice", "bob"):
            await trio_chat.register("127.0.0.1", port, name, PASSWORD)
        async with (
            trio_chat.connect("127.0.0.1", port, "alice", PASSWORD, config=QUICK) as alice,
            trio_chat.connect("127.0.0.1", port, "bob", PASSWORD, config=QUICK) as bob,
        ):
            seen: list[trio_chat.Event] = []
            last_heard = trio.Event()

            async def listen() -> None:
                async for event in bob.events():
                    seen.append(event)
                    if "after the restart" in texts_of(event):
                        last_heard.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(listen)
                await alice.say("before the crash")
                assert await daemon.kill() == -signal.SIGKILL
                during = alice.say_nowait("while the daemon was down")
                await daemon.start(port)
                with trio.fail_after(20):
                    sent = await during.wait()
                    after = await alice.say("after the restart")
                    await last_heard.wait()
                nursery.cancel_scope.cancel()

    texts = [text for event in seen for text in texts_of(event)]
    assert Counter(texts) == {
        "before the crash": 1,
        "while the daemon was down": 1,
        "after the restart": 1,
    }
    assert texts == ["before the crash", "while the daemon was down", "after the restart"]
    kinds = [type(e).__name__ for e in seen]
    assert "Disconnected" in kinds and "Reconnected" in kinds
    assert kinds.index("Disconnected") < kinds.index("Reconnected")
    assert sent.id < after.id
