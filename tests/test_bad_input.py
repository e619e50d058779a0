"""Bad input at a live daemon, row by row of the protocol's table (section 11): each is
dropped and counted, or answered as documented with fewer bytes than it carried; nobody
hears anything; nothing changes; the daemon goes on serving."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import trio

import trio_chat
from tests.conftest import TEST_CONFIG
from trio_chat import wire
from trio_chat.engine import ServerEngine
from trio_chat.secure import initiate
from trio_chat.server import serve
from trio_chat.testing.fuzz_channel import FuzzChannel
from trio_chat.testing.garbage import dumps

PASSWORD = "correct horse"


class Socket:
    """One UDP socket to the daemon, and the fuzz channels opened from it.

    `exchange` sends a datagram and then a `who` on the `probe` channel: the daemon reads
    its socket in order and answers a datagram outside any channel before the sessions'
    datagrams of the same round, so everything that answers the datagram has come by the
    time the `who` is answered.
    """

    def __init__(self, sock: trio.socket.SocketType, key: bytes) -> None:
        self.sock = sock
        self.key = key
        self.channels: dict[int, FuzzChannel] = {}
        self.probe: FuzzChannel | None = None

    async def take(self, done: Callable[[], bool]) -> list[bytes]:
        """Read until `done()`; return what was not for a channel of ours."""
        outside: list[bytes] = []
        while not done():
            data = await self.sock.recv(2048)
            index = int.from_bytes(data[1:5], "big") if data[:1] == b"\x10" else None
            channel = self.channels.get(index) if index is not None else None
            if channel is None:
                channel = next((c for c in self.channels.values() if c.channel is None), None)
            if channel is None or not channel.receive(data):
                outside.append(data)
        return outside

    async def open(self, name: str | None) -> FuzzChannel:
        channel = FuzzChannel(self.key, len(self.channels) + 100)
        self.channels[channel.initiation.client_index] = channel
        await self.sock.send(channel.init_datagram())
        await self.take(lambda: channel.channel is not None)
        if name is not None:
            await self.ask(channel, {"t": "login", "name": name, "password": PASSWORD})
            assert channel.account == name
        return channel

    async def ask(self, channel: FuzzChannel, frame: object) -> wire.ServerFrame:
        """One request on `channel` (a frame's JSON, or a value); its final answer."""
        (seq,), data = channel.request(frame if isinstance(frame, bytes) else dumps(frame))
        await self.sock.send(data)
        await self.take(lambda: bool(channel.final_answers(seq)))
        answer = channel.final_answers(seq)[0]
        if channel.open:
            await self.sock.send(channel.ack())
        return answer

    async def exchange(self, data: bytes) -> list[bytes]:
        """Send `data`; what came back that was for none of our channels.

        The daemon answers the room before strangers and handshakes within a turn, so
        the probe's answer may overtake the one to `data`; by the answer to a second
        probe, sent once the first is back, the turn that read `data` has ended.
        """
        probe = self.probe
        assert probe is not None
        await self.sock.send(data)
        outside: list[bytes] = []
        for _barrier in range(2):
            (seq,), who = probe.request(dumps({"t": "who"}))
            await self.sock.send(who)
            outside += await self.take(lambda: bool(probe.final_answers(seq)))  # noqa: B023
            await self.sock.send(probe.ack())
        return outside


def resized(data: bytes, length: int) -> bytes:
    return (data + bytes(length))[:length]


def stats(engine: ServerEngine) -> dict[str, int]:
    return dict(engine.stats)


def changed(before: dict[str, int], engine: ServerEngine) -> dict[str, int]:
    """The counters that moved, but for the probe's traffic."""
    moved = {k: v - before[k] for k, v in engine.stats.items() if v != before[k]}
    for routine in ("datagrams_in", "messages", "pings", "keepalives"):
        moved.pop(routine, None)
    return moved


async def test_every_kind_of_bad_input_gets_its_documented_treatment(
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
    key = engine.keys.public
    with trio.fail_after(30):
        for name in ("alice", "bob", "mallory"):
            await trio_chat.register(host, port, name, PASSWORD, server_key=key)
        async with (
            trio_chat.connect(host, port, "bob", PASSWORD, server_key=key) as bob,
            trio_chat.connect(host, port, "alice", PASSWORD, server_key=key) as alice,
        ):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                raw.connect((host, port))
                udp = Socket(trio.socket.from_stdlib_socket(raw), key)
                udp.probe = await udp.open("mallory")
                target = await udp.open("mallory")
                newcomer = await udp.open(None)
                ghost = await udp.open("mallory")
                await udp.ask(target, {"t": "who"})  # records of its own to replay
                assert isinstance(await udp.ask(ghost, {"t": "logout"}), wire.Ok)
                assert ghost.ended
                accounts = set(engine.accounts)
                next_message = engine.chat.next_message_id

                async def dropped(data: bytes, counter: str) -> None:
                    before = stats(engine)
                    assert await udp.exchange(data) == [], data[:16]
                    assert changed(before, engine) == {counter: 1}, data[:16]

                async def answered(data: bytes, counter: str) -> wire.Datagram:
                    before = stats(engine)
                    (reply,) = await udp.exchange(data)
                    assert len(reply) < len(data)
                    assert counter in changed(before, engine)
                    return wire.parse_datagram_untrusted(reply)

                # Outside any channel: dropped and counted...
                await dropped(b"", "bad_datagrams")
                await dropped(bytes(1300), "bad_datagrams")
                await dropped(b"\x07\x02" + bytes(1198), "bad_datagrams")  # an unknown type
                for daemons_own in (
                    wire.key_datagram(key),
                    wire.response_datagram(5, 6, bytes(64)),
                    wire.retry_datagram(5, bytes(16)),
                    wire.refused_datagram("busy", "Busy.", 1.0),
                    wire.reset_datagram(5, bytes(16)),
                ):
                    await dropped(daemons_own, "bad_datagrams")
                for length in (1199, 1201, 600):  # first flights not padded to 1200 bytes
                    await dropped(resized(wire.key_request_datagram(), length), "bad_datagrams")
                    await dropped(resized(initiate(key, 9).datagram(), length), "bad_datagrams")
                # ... or answered, and with less than they carried.
                refused = await answered(b"\x01\x01" + bytes(1198), "bad_datagrams")
                assert isinstance(refused, wire.Refused) and refused.code == "bad_version"
                other_key = initiate(bytes(range(32)), 9).datagram()
                assert await answered(other_key, "bad_handshakes") == wire.Key(
                    wire.PROTOCOL_VERSION, key
                )
                reset = await answered(wire.data_header(424242, 1) + bytes(40), "unknown_sessions")
                assert isinstance(reset, wire.Reset) and reset.receiver_index == 424242

                # Records that do not authenticate, replays, records too old: dropped unread.
                say = b'{"t":"say","text":"forged","cid":"f"}'
                record = bytearray(
                    target.seal(target.payload([(target.stream.next, say)])).datagram
                )
                record[-1] ^= 1  # the tag
                await dropped(bytes(record), "bad_records")
                await dropped(target.records[-1].datagram, "bad_records")  # a replay
                await udp.exchange(target.send(target.seal(target.payload(), pn=target.pn + 5000)))
                old = target.unused_below(target.window.highest - 4096)
                assert old is not None
                await dropped(target.seal(target.payload(), pn=old).datagram, "bad_records")
                # Authentic payloads that are no payload of section 6: dropped, counted.
                for plaintext in (
                    b"not json",
                    b"[1,2]",
                    b'{"ack":-1}',
                    b'{"frames":[[1]]}',
                    b'{"x":"\\ud800"}',  # a lone surrogate
                ):
                    await dropped(target.record(plaintext), "bad_payloads")

                # Frames: each acknowledged, and answered with its error.
                for frame, code in (
                    (b"[1,2]", "bad_request"),
                    (b'"say"', "bad_request"),
                    (b'{"t":"dance"}', "bad_request"),
                    (b'{"t":"say","text":5,"cid":"c"}', "bad_field"),
                    (b'{"t":"history","limit":1000}', "bad_field"),
                    (b'{"t":"whisper","to":"bob"}', "bad_field"),
                ):
                    before = stats(engine)
                    answer = await udp.ask(target, frame)
                    assert isinstance(answer, wire.ErrorFrame), frame
                    assert (answer.code, answer.re) == (code, target.stream.next - 1), frame
                    assert answer.message.endswith(".")
                    assert changed(before, engine) == {"bad_frames": 1}, frame
                    assert target.acked == answer.re  # part of the stream all the same
                login = {"t": "login", "name": "mallory", "password": PASSWORD}
                again = await udp.ask(target, login)  # a session logs in once
                assert isinstance(again, wire.ErrorFrame) and again.code == "bad_request"

                # Before a login only a login may come; after a logout nothing but the last words.
                for request in (
                    {"t": "say", "text": "hi", "cid": "n1"},
                    {"t": "who"},
                    {"t": "history"},
                ):
                    answer = await udp.ask(newcomer, request)
                    assert isinstance(answer, wire.ErrorFrame) and answer.code == "bad_request"
                before = stats(engine)
                assert await udp.exchange(ghost.ack()) == []
                late = ghost.payload([(ghost.stream.next, b'{"t":"say","text":"late","cid":"l"}')])
                repeated = ghost.repeated
                assert await udp.exchange(ghost.record(late)) == []
                with trio.fail_after(5):
                    await udp.take(lambda: ghost.repeated > repeated)  # its last words again
                assert ghost.ended and not ghost.faults
                assert changed(before, engine) == {"ended_sessions": 2}

                # Nothing changed, and nobody heard anything.
                assert set(engine.accounts) == accounts
                assert engine.chat.next_message_id == next_message
                assert all(c.faults == [] for c in udp.channels.values())
            said = await alice.say("still working")
            async for event in bob.events():
                if isinstance(event, trio_chat.PublicMessage):
                    assert (event.id, event.text) == (said.id, "still working")
                    break
            await trio_chat.register(host, port, "carol", PASSWORD, server_key=key)
            assert "mallory" in await bob.who()
