"""Garbage: the codec refuses anything malformed with a `WireError` and nothing else,
round-trips everything well-formed, and neither the engine nor a live daemon is bothered
by a flood of generated and mutated datagrams.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_chat import PublicMessage, wire
from trio_chat.client import ClientConfig, connect, register
from trio_chat.engine import ServerConfig
from trio_chat.testing.daemon import DaemonProcess
from trio_chat.testing.driver import EngineDriver, Peer
from trio_chat.testing.garbage import Garbage
from trio_chat.testing.live_fuzz import FUZZ_PASSWORD, fuzz_daemon

DECODERS = (
    wire.decode_client_datagram_untrusted,
    wire.decode_server_datagram_untrusted,
    wire.decode_client_frame_untrusted,
    wire.decode_server_frame_untrusted,
)
WIRE_CODES = {
    "too_large",
    "bad_datagram",
    "bad_version",
    "unknown_type",
    "bad_field",
    "bad_request",
}
KNOWN_TYPES = [
    "register",
    "login",
    "s",
    "registered",
    "welcome",
    "pending",
    "error",
    "say",
    "whisper",
    "who",
    "history",
    "ping",
    "logout",
    "ok",
    "msg",
    "pm",
    "join",
    "leave",
    "names",
    "ready",
    "notice",
    "bye",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
objects = st.fixed_dictionaries(
    {"t": st.sampled_from(KNOWN_TYPES) | st.text(max_size=5)},
    optional={
        "v": st.integers(-1, 3) | json_values,
        "rid": json_values,
        "sid": st.integers(-5, 2**64) | json_values,
        "pn": st.integers(-5, 2**64),
        "frames": st.lists(st.tuples(st.integers(-5, 2**60), json_values), max_size=3),
        "text": json_values,
        "name": json_values,
        "password": json_values,
    },
)


def decode_all_or_wire_error(data: bytes) -> None:
    for decode in DECODERS:
        try:
            decode(data)
        except wire.WireError as error:
            assert error.code in WIRE_CODES
            # One short line, whatever came in: it goes back in a single frame or datagram.
            assert error.message and "\n" not in error.message
            assert len(error.message) <= 200


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=1400))
def test_random_bytes_decode_or_raise_wire_error(data: bytes) -> None:
    decode_all_or_wire_error(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(objects)
def test_json_objects_of_any_shape_decode_or_raise_wire_error(obj: dict[str, Any]) -> None:
    decode_all_or_wire_error(json.dumps(obj).encode())


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32))
def test_mutated_valid_datagrams_decode_or_raise_wire_error(seed: int) -> None:
    garbage = Garbage(seed)
    for _ in range(20):
        decode_all_or_wire_error(garbage.datagram())


def test_the_wire_errors_name_what_is_wrong() -> None:
    def code(data: bytes) -> str:
        with pytest.raises(wire.WireError) as caught:
            wire.decode_client_datagram_untrusted(data)
        return caught.value.code

    assert code(b"x" * 1201) == "too_large"
    assert code(b"\xff\xfe{}") == "bad_datagram"
    assert code(b"[1]") == "bad_datagram"
    assert code(b'{"v":2,"t":"login"}') == "bad_version"
    assert code(b'{"v":1,"t":"dance"}') == "unknown_type"
    assert code(b'{"v":1,"t":"login","rid":5}') == "bad_field"


# --- round trips -----------------------------------------------------------------------

texts = st.text(max_size=60)
rids = st.text(min_size=1, max_size=64)
seqs = st.integers(0, wire.MAX_SEQ)
sids = st.integers(1, wire.MAX_SEQ)
tokens = st.text(max_size=64)
cids = st.text(min_size=1, max_size=24)
names = st.text(max_size=64)

client_datagrams = st.one_of(
    st.builds(wire.Register, rid=rids, name=names, password=st.text(max_size=100)),
    st.builds(
        wire.Login, rid=rids, name=names, password=st.text(max_size=100), since=st.none() | seqs
    ),
    st.builds(
        wire.Packet,
        sid=sids,
        pn=seqs,
        token=st.none() | tokens,
        ack=seqs,
        sack=st.lists(st.tuples(seqs, seqs), max_size=wire.SACK_RANGES_MAX),
        challenge=st.none() | tokens,
        response=st.none() | tokens,
    ),
)
server_datagrams = st.one_of(
    st.builds(wire.Registered, rid=rids, name=texts),
    st.builds(wire.Welcome, rid=rids, sid=sids, token=tokens, name=texts, unread=st.integers(0)),
    st.builds(wire.Pending, rid=rids),
    st.builds(
        wire.ErrorReply,
        code=texts,
        message=texts,
        rid=st.none() | rids,
        sid=st.none() | sids,
        retry_after=st.none() | st.floats(0, 1e6),
    ),
)
client_frames = st.one_of(
    st.builds(wire.Say, text=st.text(max_size=300), cid=cids),
    st.builds(wire.Whisper, to=names, text=st.text(max_size=300), cid=cids),
    st.builds(wire.Who),
    st.builds(
        wire.HistoryRequest,
        limit=st.integers(1, wire.HISTORY_LIMIT_MAX),
        before=st.none() | seqs,
    ),
    st.builds(wire.Ping),
    st.builds(wire.Logout),
)
server_frames = st.one_of(
    st.builds(wire.Ok, re=seqs, id=st.none() | seqs, ts=st.none() | texts),
    st.builds(wire.ErrorFrame, code=texts, message=texts, re=st.none() | seqs),
    st.builds(
        wire.Msg,
        id=seqs,
        ts=texts,
        sender=texts,
        text=texts,
        cid=st.none() | texts,
        history=st.booleans(),
    ),
    st.builds(wire.Pm, id=seqs, ts=texts, sender=texts, to=texts, text=texts),
    st.builds(wire.Join, name=texts, ts=texts),
    st.builds(wire.Leave, name=texts, ts=texts, reason=texts),
    st.builds(wire.Names, re=seqs, names=st.lists(texts, max_size=5)),
    st.builds(wire.Ready, count=st.integers(0), more=st.booleans()),
    st.builds(wire.Notice, text=texts),
    st.builds(wire.Bye, reason=texts, message=texts),
)


@settings(max_examples=300, deadline=None)
@given(client_datagrams)
def test_client_datagrams_round_trip(datagram: Any) -> None:
    data = wire.encode(datagram)
    if len(data) <= wire.MAX_DATAGRAM:
        assert wire.decode_client_datagram_untrusted(data) == datagram


@settings(max_examples=300, deadline=None)
@given(server_datagrams)
def test_server_datagrams_round_trip(datagram: Any) -> None:
    data = wire.encode(datagram)
    if len(data) <= wire.MAX_DATAGRAM:
        assert wire.decode_server_datagram_untrusted(data) == datagram


@settings(max_examples=300, deadline=None)
@given(client_frames, server_frames)
def test_frames_round_trip(client_frame: Any, server_frame: Any) -> None:
    assert wire.decode_client_frame_untrusted(wire.encode(client_frame)) == client_frame
    assert wire.decode_server_frame_untrusted(wire.encode(server_frame)) == server_frame


@settings(max_examples=100, deadline=None)
@given(client_frames, st.integers(1, 1000), st.integers(0, 1000))
def test_frames_inside_a_session_datagram_round_trip(frame: Any, seq: int, pn: int) -> None:
    packet = wire.Packet(sid=7, pn=pn, token="t", frames=[(seq, msgspec.Raw(wire.encode(frame)))])
    decoded = wire.decode_client_datagram_untrusted(wire.encode(packet))
    assert isinstance(decoded, wire.Packet)
    ((got_seq, raw),) = decoded.frames
    assert got_seq == seq
    assert wire.decode_client_frame_untrusted(raw) == frame


def test_a_frame_with_a_huge_type_gets_a_short_error_and_nothing_breaks() -> None:
    driver = EngineDriver()
    driver.add_account("mallory", "password1")
    mallory = Peer(driver, "mallory", "password1", ("10.0.0.1", 1))
    mallory.send()
    for tag in ("x" * 900, "\n" * 440, "é" * 440, "\u0000" * 145):
        frame = wire.encode({"t": tag})
        seq = mallory.link.send(frame)
        mallory.flush()
        mallory.settle()
        (error,) = [f for f in mallory.of_type(wire.ErrorFrame) if f.re == seq]
        assert error.code == "bad_request"
        assert len(wire.encode(error)) <= 700  # bounded, well inside one frame
    assert mallory.sid in driver.engine.sessions
    mallory.send(wire.Say(text="still here", cid="c"))
    mallory.settle()
    assert [m.text for m in driver.stored_messages()] == ["still here"]


# --- the engine and the daemon under a flood -------------------------------------------------


def test_the_engine_takes_any_flood_and_still_serves() -> None:
    config = ServerConfig(
        register_burst=100_000,
        message_burst=100_000,
        max_sessions_per_address=100_000,
        login_free_failures=10**9,
    )
    driver = EngineDriver(config)
    for name in ("alice", "bob", "fuzz0"):
        driver.add_account(name, "password1")
    garbage = Garbage(2024)
    peers: list[Peer] = []
    for n in range(6000):
        if n % 500 == 0:  # fuzzing sessions come and go (garbage includes logouts)
            peer = Peer(driver, "fuzz0", "password1", ("10.1.0.1", 1000 + n))
            peer.send()
            peers = [p for p in peers if p.sid in driver.engine.sessions] + [peer]
            garbage.sessions = [(p.sid, p.token) for p in peers]
        source = peers[-1].address if n % 3 == 0 else (f"10.2.0.{n % 7}", 999)
        driver.receive(garbage.datagram(), source)  # raises if the engine does
        if n % 50 == 0:
            driver.advance(0.2)
    assert driver.engine.stats["bad_datagrams"] > 1000
    assert len(driver.stored_messages()) > 20  # the fuzzing reached the frame handlers
    assert set(garbage.counts) >= {"random_bytes", "mutated_bytes", "session", "wrong_types"}
    # Honest people are served as if nothing happened.
    driver.now += 120.0
    alice = Peer(driver, "alice", "password1", ("10.3.0.1", 1))
    bob = Peer(driver, "bob", "password1", ("10.3.0.2", 1))
    alice.send()
    bob.send()
    alice.send(wire.Say(text="still standing", cid="after-the-flood"))
    bob.settle()
    assert [m.text for m in bob.of_type(wire.Msg) if not m.history] == ["still standing"]


async def test_a_live_daemon_survives_a_flood_of_garbage_and_serves_a_client(
    tmp_path: Path,
) -> None:
    config = ClientConfig(timeout=10.0)
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(
                nursery,
                tmp_path / "chat.db",
                *("--register-burst", "50", "--sessions-per-address", "1000"),
                *("--login-free-failures", "1000000"),
            )
            host, port = await daemon.start()
            fuzzers = ["fuzz0", "fuzz1"]
            for name in [*fuzzers, "alice", "bob"]:
                await register(host, port, name, FUZZ_PASSWORD, config=config)
            report = await fuzz_daemon((host, port), count=4000, seed=7, names=fuzzers)
            assert report.sent == 4000
            assert report.replies > 0
            assert report.kernel_drops in (None, 0)
            assert daemon.running
            async with (
                connect(host, port, "alice", FUZZ_PASSWORD, config=config) as alice,
                connect(host, port, "bob", FUZZ_PASSWORD, config=config) as bob,
            ):
                sent = await alice.say("after the storm")
                async for event in bob.events():
                    if isinstance(event, PublicMessage) and not event.history:
                        assert (event.id, event.text) == (sent.id, "after the storm")
                        break
                assert "alice" in await bob.who()
            assert await daemon.stop() == 0
            assert "Traceback" not in daemon.text
