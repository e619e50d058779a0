"""Garbage at a live daemon: clear errors where a reply is safe, no change, no crash."""

from __future__ import annotations

import socket
from pathlib import Path

import trio

import trio_chat
from tests.conftest import TEST_CONFIG
from trio_chat import wire
from trio_chat.engine import ServerEngine
from trio_chat.server import serve

PASSWORD = "correct horse"


async def exchange(sock: trio.socket.SocketType, data: bytes) -> wire.ServerDatagram | None:
    """Send one datagram; the decoded reply, or None if none comes within a moment."""
    await sock.send(data)
    with trio.move_on_after(0.3):
        return wire.decode_server_datagram_untrusted(await sock.recv(2048))
    return None


def padded(obj: dict[str, object]) -> bytes:
    """Pad a datagram so the daemon may answer it within its 3x anti-amplification budget."""
    return wire.encode({**obj, "padding": "x" * 200})


async def test_garbage_gets_clear_errors_and_changes_nothing(
    nursery: trio.Nursery, db_path: Path
) -> None:
    engines: list[ServerEngine] = []
    address = await nursery.start(
        lambda task_status: serve(
            "127.0.0.1",
            0,
            db_path,
            TEST_CONFIG,
            on_ready=engines.append,
            task_status=task_status,
        )
    )
    host, port = address[0], address[1]
    (engine,) = engines
    with trio.fail_after(30):
        await trio_chat.register(host, port, "alice", PASSWORD)
        await trio_chat.register(host, port, "bob", PASSWORD)
        async with (
            trio_chat.connect(host, port, "bob", PASSWORD) as bob,
            trio_chat.connect(host, port, "alice", PASSWORD) as alice,
        ):
            sid = alice.connection.sid
            stored_before = engine.chat.next_message_id
            accounts_before = set(engine.accounts)
            cases: list[tuple[bytes, str | None]] = [
                (b"this is not JSON at all, " * 10, "bad_datagram"),
                (b"\xff\xfe\xfd" * 100, "bad_datagram"),
                (b"[1, 2, 3]" + b" " * 200, "bad_datagram"),
                (b"{" * 1500, "too_large"),
                (padded({"v": 1, "t": "dance"}), "unknown_type"),
                (padded({"v": 2, "t": "login", "rid": "r", "name": "alice"}), "bad_version"),
                (padded({"t": "login", "rid": "r", "name": "alice"}), "bad_version"),
                (padded({"v": 1, "t": "login", "rid": "r", "name": 7, "password": 8}), "bad_field"),
                (padded({"v": 1, "t": "register", "rid": "r"}), "bad_field"),
                (padded({"v": 1, "t": "s", "sid": "seven", "pn": 1}), "bad_field"),
                (padded({"v": 1, "t": "s", "sid": 12345, "pn": 1}), "session_unknown"),
                (b'{"v":1,"t":"login","rid":"\xff","name":"a","password":"b"}' * 3, None),
                (b"", None),
                (b"\x00", None),
            ]
            say = [[1, {"t": "say", "text": "forged", "cid": "forged"}]]
            spoofed = [
                {"v": 1, "t": "s", "sid": sid, "pn": 1000, "frames": say},
                {"v": 1, "t": "s", "sid": sid, "pn": 1001, "token": "wrong", "frames": say},
                {"v": 1, "t": "s", "sid": sid, "pn": 1002, "token": "", "frames": say},
            ]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                raw.connect((host, port))
                sock = trio.socket.from_stdlib_socket(raw)
                for data, code in cases:
                    reply = await exchange(sock, data)
                    if code is None:
                        assert reply is None or isinstance(reply, wire.ErrorReply)
                    else:
                        assert isinstance(reply, wire.ErrorReply), (data[:40], reply)
                        assert reply.code == code
                        assert reply.message.endswith(".")
                for forged in spoofed:
                    assert await exchange(sock, wire.encode(forged)) is None

            # Nothing changed, nobody heard anything, and the daemon goes on serving.
            assert engine.chat.next_message_id == stored_before
            assert set(engine.accounts) == accounts_before
            assert engine.stats["bad_tokens"] == len(spoofed)
            assert engine.stats["bad_datagrams"] >= len(cases) - 1
            said = await alice.say("still working")
            async for event in bob.events():
                if isinstance(event, trio_chat.PublicMessage):
                    assert (event.id, event.text) == (said.id, "still working")
                    break
            await trio_chat.register(host, port, "carol", PASSWORD)
            assert await bob.who() == ["alice", "bob"]
