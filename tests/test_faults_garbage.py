"""Garbage, in the three layers of `trio_chat.testing.garbage`.

The decoders refuse anything malformed with a `WireError` and nothing else. The engine
answers nothing outside a channel with more bytes than it was sent; drops every record
that does not authenticate before reading anything in it; answers every frame of a
hostile authentic payload with the documented error (or as the request deserves); loses
no one's messages; and keeps no state beyond its limits. A live daemon takes a flood of
all of it over UDP and still serves.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_chat import wire
from trio_chat.client import ClientConfig, Receipt, connect, register
from trio_chat.engine import Address, ServerConfig
from trio_chat.events import ChatMessage
from trio_chat.secure import REPLAY_WINDOW
from trio_chat.testing.daemon import DaemonProcess
from trio_chat.testing.driver import PASSWORD, EngineDriver, Peer
from trio_chat.testing.fuzz_channel import FuzzChannel
from trio_chat.testing.garbage import (
    CLIENT_FRAME_TYPES,
    FUZZ_PASSWORD,
    OUTSIDE_KINDS,
    PAYLOAD_KINDS,
    RECORD_KINDS,
    SERVER_FRAME_TYPES,
    Garbage,
    dumps,
)
from trio_chat.testing.live_fuzz import _Fuzzer, fuzz_daemon, listen, speak
from trio_chat.trust import fetch_key

FUZZERS = ["fuzz0", "fuzz1"]
"""Accounts the fuzzer logs in as (password `FUZZ_PASSWORD`)."""
PEOPLE = ["alice", "bob"]
"""Accounts of people the fuzzer must not cost a message (another password)."""
WIRE_CODES = {"too_large", "bad_datagram", "bad_version", "unknown_type", "bad_field"}
FRAME_CODES = {"bad_request", "bad_field"}
OWN_LINE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z (debug|info|warning) ")
STRANGERS = [("192.0.2.1", 1000), ("192.0.2.2", 2000), ("192.0.2.1", 3000)]


def fast(examples: int) -> settings:
    """Hypothesis settings for tests of whole runs: no deadline, slow examples allowed."""
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


# --- the decoders --------------------------------------------------------------------------


def decode_everything(data: bytes) -> None:
    """Every decoder of bytes from the network: `WireError` with a short line, or a value."""
    decoders: list[Callable[[bytes], object]] = [
        wire.parse_datagram_untrusted,
        wire.decode_payload_untrusted,
        wire.decode_client_frame_untrusted,
        wire.decode_server_frame_untrusted,
    ]
    for decode in decoders:
        try:
            decode(data)
        except wire.WireError as error:
            assert error.code in WIRE_CODES | FRAME_CODES | {"bad_payload"}
            # One short line, whatever came in: it may go back in a single frame.
            assert error.message and "\n" not in error.message
            assert len(error.message) <= 200


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
frame_objects = st.fixed_dictionaries(
    {"t": st.sampled_from([*CLIENT_FRAME_TYPES, *SERVER_FRAME_TYPES]) | st.text()},
    optional={
        key: json_values
        for key in ("name", "password", "rid", "ticket", "text", "cid", "to", "re", "limit")
    },
)
payload_objects = st.fixed_dictionaries(
    {},
    optional={
        "ack": st.integers(-5, 2**64) | json_values,
        "echo": st.integers(-5, 2**64) | json_values,
        "sack": st.lists(st.lists(st.integers(-5, 2**60), max_size=3), max_size=6) | json_values,
        "frames": st.lists(st.tuples(st.integers(-5, 2**60), frame_objects), max_size=3)
        | json_values,
        "challenge": json_values,
        "response": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1400))
def test_random_bytes_decode_or_raise_wire_error(data: bytes) -> None:
    decode_everything(data)


@fast(300)
@given(payload_objects | frame_objects)
def test_json_of_any_shape_decodes_or_raises_wire_error(obj: dict[str, Any]) -> None:
    decode_everything(json.dumps(obj).encode("utf-8", "surrogatepass"))


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32))
def test_generated_frames_decode_or_raise_wire_error(seed: int) -> None:
    garbage = Garbage(seed, bytes(32))
    for _ in range(20):
        decode_everything(dumps(garbage.frame(), ascii_only=garbage.random.random() < 0.5))


def test_the_wire_errors_name_what_is_wrong() -> None:
    def code(decode: Callable[[bytes], object], data: bytes) -> str:
        with pytest.raises(wire.WireError) as caught:
            decode(data)
        return caught.value.code

    parse = wire.parse_datagram_untrusted
    init = bytearray(wire.init_datagram(7, b"", bytes(48)))
    init[6] = 33
    assert code(parse, b"") == "bad_datagram"
    assert code(parse, bytes(1201)) == "too_large"
    assert code(parse, b"\x07" + bytes(1199)) == "unknown_type"
    assert code(parse, b"\x01\x01" + bytes(1198)) == "bad_version"
    # A REFUSED keeps its layout in every version, and is read whatever its version says;
    # every other type of another version is not.
    body = b'{"code":"bad_version","message":"x"}'
    for version in (0, wire.PROTOCOL_VERSION - 1, wire.PROTOCOL_VERSION + 1, 0xFF):
        refused = parse(bytes((wire.REFUSED, version)) + body)
        assert refused == wire.Refused(version, "bad_version", "x", None)
        key = bytes((wire.KEY, version)) + bytes(32)
        assert code(parse, key) == "bad_version"
        response = bytes((wire.RESPONSE, version)) + bytes(72)
        assert code(parse, response) == "bad_version"
        assert (
            code(parse, bytes((wire.RETRY, version, 0, 0, 0, 1, 16)) + bytes(16)) == "bad_version"
        )
    assert code(parse, wire.key_request_datagram()[:1199]) == "bad_datagram"
    assert code(parse, bytes(init)) == "bad_field"  # a cookie over 32 bytes
    # A cookie of 32 bytes, the most a daemon may make, is read both ways.
    init32 = wire.init_datagram(7, b"c" * 32, bytes(48))
    assert parse(init32) == wire.Init(3, 7, b"c" * 32, bytes(48))
    assert parse(wire.retry_datagram(7, b"c" * 32)) == wire.Retry(3, 7, b"c" * 32)
    assert code(parse, wire.retry_datagram(7, b"c" * 33)) == "bad_datagram"
    assert code(parse, wire.data_header(5, 1) + bytes(15)) == "bad_datagram"
    # Indexes are never 0 (each side picks its own at random from the others).
    assert code(parse, wire.init_datagram(0, b"", bytes(48))) == "bad_field"
    assert code(parse, wire.response_datagram(0, 9, bytes(64))) == "bad_field"
    assert code(parse, wire.response_datagram(9, 0, bytes(64))) == "bad_field"
    assert code(parse, wire.retry_datagram(0, bytes(16))) == "bad_field"
    assert code(parse, wire.data_header(0, 1) + bytes(18)) == "bad_field"
    assert code(parse, wire.reset_datagram(0, bytes(16))) == "bad_field"
    assert code(wire.decode_payload_untrusted, b'{"ack":-1}') == "bad_payload"
    frame = wire.decode_client_frame_untrusted
    assert code(frame, b"[1]") == "bad_request"
    assert code(frame, b'{"t":"dance"}') == "bad_request"
    assert code(frame, b'{"t":"say","text":5,"cid":"c"}') == "bad_field"
    # The newest frame types are known too: a bad field is named as such.
    assert code(frame, b'{"t":"change_password","old":1,"new":"n"}') == "bad_field"
    server = wire.decode_server_frame_untrusted
    assert code(server, b'{"t":"password_changed","re":"x"}') == "bad_field"


def _login(**fields: Any) -> dict[str, Any]:
    return {"t": "login", "name": "alice", "password": "pw", **fields}


def _welcome(time: float) -> dict[str, Any]:
    return {"t": "welcome", "re": 1, "name": "alice", "time": time}


@pytest.mark.parametrize(
    ("within", "past"),
    [
        (_login(replaces=1), _login(replaces=0)),  # an index
        (_login(replaces=2**32 - 1), _login(replaces=2**32)),
        (_login(via=["h" * 64, 1]), _login(via=["h" * 65, 1])),  # a host
        (_login(via=["10.0.0.1", 0]), _login(via=["10.0.0.1", -1])),  # a port
        (_login(via=["10.0.0.1", 65535]), _login(via=["10.0.0.1", 65536])),
        ({"t": "keepalive", "every": 1}, {"t": "keepalive", "every": 0.999}),  # an interval
        ({"t": "keepalive", "every": 3600}, {"t": "keepalive", "every": 3600.001}),
        (_welcome(0), _welcome(-0.001)),  # a moment
        (_welcome(1e11), _welcome(1.0000001e11)),
    ],
)
def test_each_field_is_read_up_to_its_limit_and_refused_past_it(
    within: dict[str, Any], past: dict[str, Any]
) -> None:
    """The limits protocol.md gives each field, from either side: at the limit the frame
    is read, one step past it the frame is refused as `bad_field`."""
    if within["t"] in wire.CLIENT_FRAME_TYPES:
        decode: Callable[[bytes], object] = wire.decode_client_frame_untrusted
    else:
        decode = wire.decode_server_frame_untrusted
    decode(json.dumps(within).encode())
    with pytest.raises(wire.WireError) as caught:
        decode(json.dumps(past).encode())
    assert caught.value.code == "bad_field"


# --- round trips ------------------------------------------------------------------------------

indexes = st.integers(1, 2**32 - 1)
seqs = st.integers(0, wire.MAX_SEQ)
texts = st.text(max_size=60)
cids = st.from_regex(r"[A-Za-z0-9_-]{1,24}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(indexes, indexes, st.binary(max_size=32), st.binary(min_size=48, max_size=48))
def test_datagrams_round_trip(
    client_index: int, server_index: int, cookie: bytes, message: bytes
) -> None:
    parse = wire.parse_datagram_untrusted
    assert parse(wire.key_request_datagram()) == wire.KeyRequest(3)
    assert parse(wire.key_datagram(message[:32])) == wire.Key(3, message[:32])
    init = wire.init_datagram(client_index, cookie, message)
    assert len(init) == wire.FIRST_FLIGHT_BYTES
    assert parse(init) == wire.Init(3, client_index, cookie, message)
    response = wire.response_datagram(client_index, server_index, message + message[:16])
    assert parse(response) == wire.Response(3, client_index, server_index, message + message[:16])
    assert parse(wire.retry_datagram(client_index, cookie)) == wire.Retry(3, client_index, cookie)
    assert parse(wire.reset_datagram(server_index, message[:16])) == wire.Reset(
        server_index, message[:16]
    )


@settings(max_examples=200, deadline=None)
@given(
    seqs,
    seqs,
    st.lists(st.tuples(seqs, seqs), max_size=wire.SACK_RANGES_MAX),
    st.lists(st.tuples(seqs, st.builds(wire.Say, text=texts, cid=cids)), max_size=3),
    st.none() | st.text(max_size=64),
)
def test_payloads_round_trip(
    ack: int,
    echo: int,
    sack: list[tuple[int, int]],
    frames: list[tuple[int, wire.Say]],
    challenge: str | None,
) -> None:
    head = wire.payload_head(ack, echo, sack)
    if challenge is not None:
        head += wire.challenge_field(challenge)
    body = b",".join(wire.numbered_frame(seq, wire.encode(frame)) for seq, frame in frames)
    payload = wire.decode_payload_untrusted(wire.close_payload(head, body))
    assert (payload.ack, payload.echo, payload.sack, payload.challenge) == (
        ack,
        echo,
        sack,
        challenge,
    )
    got = [(seq, wire.decode_client_frame_untrusted(raw)) for seq, raw in payload.frames]
    assert got == frames


client_frames = st.one_of(
    st.builds(wire.Register, rid=cids, name=texts, password=texts),
    st.builds(
        wire.Login,
        name=texts,
        password=texts,
        since=st.none() | seqs,
        quiet=st.booleans(),
        batches=st.booleans(),
    ),
    st.builds(wire.Resume, ticket=texts, since=st.none() | seqs, batches=st.booleans()),
    st.builds(wire.Say, text=texts, cid=cids),
    st.builds(wire.Whisper, to=texts, text=texts, cid=cids),
    st.builds(wire.Who),
    st.builds(wire.HistoryRequest, limit=st.integers(1, 100), before=st.none() | seqs),
    st.builds(wire.Ping),
    st.builds(wire.Logout),
)
server_frames = st.one_of(
    st.builds(wire.Welcome, re=seqs, name=texts, unread=st.integers(0, 1000), ticket=texts),
    st.builds(wire.Ok, re=seqs, id=st.none() | seqs, ts=st.none() | texts),
    st.builds(wire.ErrorFrame, code=texts, message=texts, re=st.none() | seqs),
    st.builds(wire.Msg, id=seqs, ts=texts, sender=texts, text=texts, cid=st.none() | texts),
    st.builds(
        wire.Msgs,
        messages=st.lists(st.builds(wire.Msg, id=seqs, ts=texts, sender=texts, text=texts)),
    ),
    st.builds(wire.Pm, id=seqs, ts=texts, sender=texts, to=texts, text=texts),
    st.builds(wire.Names, re=seqs, names=st.lists(texts, max_size=5)),
    st.builds(wire.Leave, name=texts, ts=texts, reason=texts),
    st.builds(wire.Bye, reason=texts, message=texts),
)


@settings(max_examples=200, deadline=None)
@given(client_frames, server_frames)
def test_frames_round_trip(client_frame: Any, server_frame: Any) -> None:
    assert wire.decode_client_frame_untrusted(wire.encode(client_frame)) == client_frame
    assert wire.decode_server_frame_untrusted(wire.encode(server_frame)) == server_frame


# --- the engine, driven by hand -------------------------------------------------------------


class Bench:
    """An engine, the fuzz accounts, and fuzz channels each at an address of its own."""

    def __init__(self, seed: int, config: ServerConfig | None = None) -> None:
        self.driver = driver = EngineDriver(
            config
            or ServerConfig(
                unproven_before_retry=4,
                max_sessions_per_address=1000,
                register_burst=1000,
                message_burst=1000,
                login_free_failures=10**9,  # the fuzzer's own logins must not be throttled
            )
        )
        for name in FUZZERS:
            driver.add_account(name, FUZZ_PASSWORD)
        for name in PEOPLE:
            driver.add_account(name, PASSWORD)
        self.garbage = Garbage(seed, driver.server_key, names=FUZZERS, others=PEOPLE)
        self.channels: dict[Address, FuzzChannel] = {}
        self._ports = iter(range(1, 65536))

    @property
    def engine(self) -> Any:
        return self.driver.engine

    def exchange(self, data: bytes, address: Address) -> list[bytes]:
        """Send one datagram from `address`; what the engine sent anywhere is delivered to
        the fuzz channels; return what went to `address`."""
        out = self.driver.receive(data, address)
        self.deliver()
        channel = self.channels.get(address)
        if channel is not None:
            for datagram in out:
                channel.receive(datagram)
        return out

    def deliver(self) -> None:
        for address, channel in self.channels.items():
            for datagram in self.driver.inbox.pop(address, []):
                channel.receive(datagram)

    def advance(self, seconds: float) -> None:
        self.driver.advance(seconds)
        self.deliver()

    def open(self, name: str | None = None) -> FuzzChannel:
        """A channel at an address of its own, logged in as `name` (by password)."""
        address = ("10.7.0.1", next(self._ports))
        channel = FuzzChannel(self.driver.server_key, self.driver.new_client_index(), address)
        self.channels[address] = channel
        while channel.channel is None:
            self.exchange(channel.init_datagram(), address)
        if name is not None:
            login = {"t": "login", "name": name, "password": FUZZ_PASSWORD}
            self.exchange(channel.request(dumps(login))[1], address)
            assert channel.account == name and channel.ticket
            self.garbage.tickets.append(channel.ticket)
        return channel

    def send(self, channel: FuzzChannel, data: bytes) -> list[bytes]:
        """Send from the channel's address, and acknowledge what it got back."""
        assert channel.where is not None
        out = self.exchange(data, channel.where)
        if channel.open and channel.unacked:
            self.exchange(channel.ack(), channel.where)
        return out

    def move(self, channel: FuzzChannel) -> None:
        """The channel's records come from another address from now on."""
        del self.channels[channel.where]
        channel.where = ("10.8.0.1", next(self._ports))
        channel.moves += 1
        self.channels[channel.where] = channel

    def settle(self) -> None:
        """Acknowledge until the engine has nothing more for any channel (a moved one must
        first pass the path check; one logging out gets its last words again), letting
        time pass for what was lost."""
        for attempt in range(50):
            busy = False
            for channel in list(self.channels.values()):
                session = self.engine.sessions.get(channel.index)
                if channel.open and session is not None:
                    if channel.unacked or session.link.queued or not session.validated:
                        # Now and then a ping, as a client's keepalive: a frame wakes the
                        # daemon's timers where a bare acknowledgement may not.
                        if attempt % 4 == 3:
                            self.send(channel, channel.request(b'{"t":"ping"}')[1])
                        else:
                            self.send(channel, channel.ack())
                        busy = True
                elif channel.ending and not channel.ended and attempt < 3:
                    # (The `ok` may never have been sent: a moved session's last words
                    # must fit the bytes its new address earned, and may not.)
                    again = channel.payload([(channel.stream.next, b'{"t":"ping"}')])
                    self.send(channel, channel.record(again))
                    busy = True
            if not busy:
                return
            self.advance(0.1)  # what went to an address a channel left is sent again
        raise AssertionError("the engine never stopped sending")


def may_answer(data: bytes) -> set[int]:
    """The datagram types the daemon may answer `data` with, outside a channel."""
    if not data or len(data) > wire.MAX_DATAGRAM:
        return set()
    if data[0] == wire.DATA:
        return {wire.RESET} if len(data) >= wire.SEAL_OVERHEAD else set()
    if len(data) != wire.FIRST_FLIGHT_BYTES or data[0] not in (1, 2, 3, 4, 5, 6):
        return set()
    if data[0] not in wire.FIRST_FLIGHTS:
        return set()  # a type only the daemon sends, whatever its version
    if data[1] != wire.PROTOCOL_VERSION:
        return {wire.REFUSED}
    if data[0] == wire.KEY_REQUEST:
        return {wire.KEY}
    if data[0] == wire.INIT:
        return {wire.KEY, wire.RESPONSE, wire.RETRY, wire.REFUSED}
    return set()


def outside_flood(seed: int, count: int) -> tuple[Bench, dict[int, int]]:
    """`count` datagrams of the outside layer from strangers, each answer checked."""
    bench = Bench(seed)
    members = [bench.open("fuzz0"), bench.open("fuzz1")]
    ghost = bench.open("fuzz0")
    bench.send(ghost, ghost.request(dumps({"t": "logout"}))[1])
    garbage = bench.garbage
    answered: dict[int, int] = {}
    for n in range(count):
        source = STRANGERS[n % len(STRANGERS)]
        shot = garbage.outside(source, [*members, ghost])
        assert shot.layer == "outside"
        out = bench.exchange(shot.data, source)
        assert sum(len(datagram) for datagram in out) <= len(shot.data), shot
        assert len(out) <= 1, shot
        for datagram in out:
            assert datagram[0] in may_answer(shot.data), (shot, datagram[:8].hex())
            answered[datagram[0]] = answered.get(datagram[0], 0) + 1
            garbage.learn(datagram, source)
        bench.driver.now += 0.01
    assert all(channel.faults == [] for channel in bench.channels.values())
    return bench, answered


@fast(25)
@given(st.integers(0, 2**32))
def test_nothing_outside_a_channel_is_answered_with_more_than_it_carried(seed: int) -> None:
    bench, _answered = outside_flood(seed, 60)
    # The channels that were there are untouched, and still answer.
    for channel in list(bench.channels.values())[:2]:
        (seq,), data = channel.request(dumps({"t": "who"}))
        bench.send(channel, data)
        assert [type(f) for f in channel.final_answers(seq)] == [wire.Ok]


def test_the_outside_layer_reaches_every_answer_and_echoes_real_cookies() -> None:
    handshakes = Bench(2024).engine.stats["handshakes"]  # the bench's own channels
    bench, answered = outside_flood(2024, 800)
    kinds = {kind for layer, kind in bench.garbage.counts if layer == "outside"}
    assert kinds == set(OUTSIDE_KINDS)
    assert set(answered) == {wire.KEY, wire.RESPONSE, wire.RETRY, wire.REFUSED, wire.RESET}
    stats = bench.engine.stats
    assert stats["retries_sent"] > 0 and stats["bad_handshakes"] > 0
    assert stats["bad_records"] > 0  # records naming live channels, without their keys
    # Once that many strangers' channels waited unproven (no timer ran to close them),
    # every further one opened because a real cookie was echoed.
    busy = bench.engine.config.unproven_before_retry
    assert bench.engine.transport.unproven >= busy
    assert stats["handshakes"] - handshakes - 3 > busy


# --- layer 2: records that do not authenticate ----------------------------------------------


def session_state(bench: Bench, channel: FuzzChannel) -> tuple[object, ...]:
    engine = bench.engine
    session = engine.sessions[channel.index]
    link = session.link
    stats = {k: v for k, v in engine.stats.items() if k not in ("bad_records", "datagrams_in")}
    return (
        session.address,
        session.validated,
        session.challenge,
        session.last_heard,
        session.bytes_in,
        session.channel.window.highest,
        link.highest_pn,
        link.received_up_to,
        link.queued,
        len(engine.sessions),
        engine.chat.next_message_id,
        tuple(engine.room.online()),
        tuple(sorted(stats.items())),
    )


@fast(25)
@given(st.integers(0, 2**32))
def test_records_that_do_not_authenticate_are_dropped_unread(seed: int) -> None:
    bench = Bench(seed)
    target, other = bench.open("fuzz0"), bench.open("fuzz1")
    for channel in (target, other):  # records and answers to replay and reflect
        bench.send(channel, channel.request(dumps({"t": "who"}))[1])
    stats = bench.engine.stats
    dropped = 0
    for _ in range(40):
        shot = bench.garbage.record_attack(target, [target, other])
        if shot.layer == "payload":  # a jump ahead, so that older records are too old
            assert shot.kind == "pn_jump"
            bench.send(target, shot.data)
            continue
        before, bad_records = session_state(bench, target), stats["bad_records"]
        bench.driver.now += 0.5
        assert bench.exchange(shot.data, target.where) == [], shot
        assert stats["bad_records"] == bad_records + 1, shot
        assert session_state(bench, target) == before, shot
        dropped += 1
    assert dropped > 20
    # The channel goes on as if nothing happened.
    _seqs, data = target.request(dumps({"t": "say", "text": "still here", "cid": "c1"}))
    bench.send(target, data)
    assert [m.text for m in bench.driver.stored_messages()] == ["still here"]
    assert target.faults == []


def test_every_kind_of_forged_record_is_made() -> None:
    bench = Bench(7)
    target, other = bench.open("fuzz0"), bench.open("fuzz1")
    for channel in (target, other):
        bench.send(channel, channel.request(dumps({"t": "who"}))[1])
    for _ in range(200):
        shot = bench.garbage.record_attack(target, [target, other])
        bench.send(target, shot.data)
    kinds = {kind for layer, kind in bench.garbage.counts if layer == "record"}
    assert kinds == set(RECORD_KINDS)
    assert target.window.highest > REPLAY_WINDOW  # the stale ones were below the window
    assert bench.engine.stats["bad_records"] == sum(
        n for (layer, _kind), n in bench.garbage.counts.items() if layer == "record"
    )
    assert bench.driver.stored_messages() == []


def test_records_of_a_channel_logged_out_are_dropped_then_answered_reset() -> None:
    bench = Bench(11)
    ghost = bench.open("fuzz0")
    bench.send(ghost, ghost.request(dumps({"t": "who"}))[1])
    bench.send(ghost, ghost.request(dumps({"t": "logout"}))[1])
    assert ghost.ended and ghost.index not in bench.engine.sessions
    stats = bench.engine.stats
    for _ in range(30):
        shot = bench.garbage.record_attack(ghost, [ghost])
        bad_records = stats["bad_records"]
        assert bench.exchange(shot.data, ghost.where) == [], shot
        # A record jumping ahead authenticates: an acknowledgement, which gets nothing.
        assert stats["bad_records"] == bad_records + (shot.layer == "record"), shot
    # A pure acknowledgement gets nothing; a record with frames the last words again.
    assert bench.exchange(ghost.ack(), ghost.where) == []
    farewell = bench.exchange(ghost.record(ghost.payload([(99, b'{"t":"ping"}')])), ghost.where)
    assert farewell and all(len(d) <= wire.MAX_DATAGRAM for d in farewell)
    bench.advance(bench.engine.config.ended_session_memory + 1)
    (reset,) = bench.exchange(ghost.ack(), ghost.where)
    assert wire.parse_datagram_untrusted(reset) == wire.Reset(ghost.index, ghost.reset_token)
    assert ghost.faults == []


# --- layer 3: the malicious client ----------------------------------------------------------

ANSWERS: dict[type[wire.ClientFrame], set[str]] = {
    wire.Register: {"registered", "invalid_name", "password_too_short", "password_too_long"}
    | {"name_taken", "too_many_registrations", "bad_request"},
    wire.Login: {"welcome", "unknown_user", "wrong_password", "throttled", "bad_request"},
    wire.Resume: {"welcome", "ticket_invalid", "bad_request"},
    wire.Say: {"ok", "text_empty", "text_too_long", "rate_limited", "bad_request"},
    wire.Whisper: {"ok", "text_empty", "text_too_long", "rate_limited", "unknown_user"}
    | {"mailbox_full", "bad_request"},
    wire.Who: {"ok", "rate_limited", "bad_request"},
    wire.HistoryRequest: {"ok", "rate_limited", "bad_request"},
    wire.Logout: {"ok"},
}
IN_THE_ROOM = (wire.Say, wire.Whisper, wire.Who, wire.HistoryRequest)
AFTER_WORK = (wire.Register, wire.Login, wire.Say, wire.Whisper, wire.HistoryRequest)
"""Requests answered once the shell has done some work: hashed, stored, read."""


def answer_name(frame: wire.ServerFrame) -> str:
    return frame.code if isinstance(frame, wire.ErrorFrame) else type(frame).__name__.lower()


def check_answers(channel: FuzzChannel) -> int:
    """Every frame the daemon's link delivered got its documented answer; return how many."""
    for seq, raw in channel.delivered:
        answers = channel.final_answers(seq)
        try:
            frame = wire.decode_client_frame_untrusted(raw)
        except wire.WireError as error:
            assert [answer_name(a) for a in answers] == [error.code], (seq, bytes(raw))
            continue
        if isinstance(frame, wire.Ping):
            assert answers == [], (seq, frame)
            continue
        if seq in channel.last_read and isinstance(frame, AFTER_WORK) and not answers:
            continue  # its answer was to come after the logout that ended the channel
        if isinstance(frame, wire.Logout) and channel.moves and not answers:
            continue  # the `ok` did not fit what the new address had earned
        assert len(answers) == 1, (seq, frame, answers)
        (answer,) = answers
        assert answer_name(answer) in ANSWERS[type(frame)], (seq, frame, answer)
        if isinstance(answer, wire.Ok):
            if isinstance(frame, wire.Say | wire.Whisper):
                assert answer.id is not None and answer.ts is not None
            elif isinstance(frame, wire.Who | wire.HistoryRequest):
                assert answer.count is not None
        if channel.welcomes == 0 and isinstance(frame, IN_THE_ROOM):
            assert answer_name(answer) == "bad_request", (seq, frame, answer)
    assert channel.welcomes <= 1
    return len(channel.delivered)


@fast(20)
@given(st.integers(0, 2**32))
def test_hostile_payloads_get_documented_answers_and_cost_nobody_a_message(seed: int) -> None:
    bench = Bench(seed)
    driver, garbage = bench.driver, bench.garbage
    alice = Peer(driver, "alice", PASSWORD, ("10.0.0.1", 1))
    bob = Peer(driver, "bob", PASSWORD, ("10.0.0.2", 1))
    channels = [bench.open("fuzz0"), bench.open("fuzz1"), bench.open(), bench.open()]
    said: dict[int, str] = {}
    for n in range(160):
        channel = garbage.random.choice([c for c in channels if c.open] or channels)
        if garbage.random.random() < 0.03:
            bench.move(channel)  # the session follows its keys, behind a path check
        bench.send(channel, garbage.hostile(channel).data)
        bench.advance(0.01)  # timers fire when they are due, as in the daemon
        if n % 20 == 0:
            said[alice.send(wire.Say(text=f"message {n}", cid=f"m{n}"))] = f"message {n}"
            alice.settle(2)
            bob.settle(2)
    bench.settle()
    alice.settle()
    bob.settle()
    assert [m.text for m in bob.of_type(wire.Msg) if m.sender == "alice"] == list(said.values())
    stored = {ok.re: ok.id for ok in alice.of_type(wire.Ok) if ok.id is not None}
    assert set(stored) >= set(said)
    sessions = bench.engine.sessions
    for channel in channels:
        assert channel.faults == []
        check_answers(channel)
        if channel.open:
            # The model of the daemon's link agrees with the link itself.
            assert sessions[channel.index].link.received_up_to == channel.stream.next - 1
        else:
            assert channel.index not in sessions, channel
    assert bench.engine.stats["bad_payloads"] == sum(c.malformed for c in channels)


def test_every_kind_of_hostile_payload_is_made_and_answered() -> None:
    bench = Bench(5)
    channels = [bench.open("fuzz0"), bench.open()]
    delivered = 0
    for _ in range(600):
        channel = bench.garbage.random.choice(channels)
        if not channel.open:
            delivered += check_answers(channel)
            bench.channels.pop(channel.where)
            at = channels.index(channel)
            channel = channels[at] = bench.open("fuzz0" if channel.account else None)
        bench.send(channel, bench.garbage.hostile(channel).data)
    bench.settle()
    delivered += sum(check_answers(c) for c in channels)
    kinds = {kind for layer, kind in bench.garbage.counts if layer == "payload"}
    assert kinds == set(PAYLOAD_KINDS)
    assert delivered > 300
    stats = bench.engine.stats
    assert stats["bad_payloads"] > 50 and stats["bad_frames"] > 50


# --- all of it, with time passing ---------------------------------------------------------------


def test_a_long_flood_of_every_layer_leaves_the_engine_bounded_and_serving() -> None:
    bench = Bench(
        99,
        ServerConfig(
            unproven_before_retry=4,
            max_sessions_per_address=1000,
            register_burst=1000,
            login_free_failures=10**9,
        ),
    )
    driver, garbage, engine = bench.driver, bench.garbage, bench.engine
    alice = Peer(driver, "alice", PASSWORD, ("10.0.0.1", 1))
    bob = Peer(driver, "bob", PASSWORD, ("10.0.0.2", 1))
    members = [bench.open("fuzz0"), bench.open("fuzz1")]
    newcomers = [bench.open(), bench.open()]
    ghosts: list[FuzzChannel] = []
    said: list[str] = []
    for n in range(4000):
        roll = garbage.random.random()
        if roll < 0.35:
            source = STRANGERS[n % len(STRANGERS)]
            shot = garbage.outside(source, members)
            for datagram in bench.exchange(shot.data, source):
                garbage.learn(datagram, source)
        else:
            pool = ghosts if roll < 0.45 and ghosts else newcomers if roll < 0.55 else members
            channel = garbage.random.choice(pool)
            if garbage.random.random() < 0.4:
                shot = garbage.record_attack(channel, members)
            else:
                shot = garbage.hostile(channel)
            bench.send(channel, shot.data)
        bench.advance(0.025)  # 100 s in all: newcomers time out, ghosts are forgotten
        if n % 40 == 0:
            said.append(f"message {n}")
            alice.send(wire.Say(text=said[-1], cid=f"m{n}"))
            bench.advance(0.01)
            bob.settle(2)
        for group in (members, newcomers):
            for at, channel in enumerate(group):
                timed_out = channel.index not in engine.sessions
                if not channel.open or timed_out:
                    if channel.open:
                        # Only a channel that never logged in may go without a word.
                        assert channel.account is None, channel
                    else:
                        ghosts.append(channel)
                    bench.channels.pop(channel.where)
                    group[at] = bench.open(channel.account if group is members else None)
    bench.settle()
    bob.settle()
    assert [m.text for m in bob.of_type(wire.Msg) if m.sender == "alice"] == said
    stats = engine.stats
    for stat in ("bad_datagrams", "bad_records", "bad_payloads", "bad_frames", "retries_sent"):
        assert stats[stat] > 50, stat
    assert stats["unknown_sessions"] > 0 and stats["ended_sessions"] > 0
    for channel in {id(c): c for c in bench.channels.values()}.values():
        assert channel.faults == []

    # Once every timeout has passed, nothing is left of the flood but what its limits
    # allow: only the people who stay (they keep their sessions alive) and their room.
    for _ in range(12):
        bench.advance(10.0)
        alice.settle(1)
        bob.settle(1)
    transport = engine.transport
    assert {s.account.name for s in engine.sessions.values() if s.account} == {"alice", "bob"}
    assert len(engine.sessions) == 2
    assert engine.room.online() == ["alice", "bob"]
    assert transport.unproven == 0
    assert len(transport._timers) <= 4 * len(engine.sessions) + 1024
    assert len(engine.lobby._jobs) == len(engine.chat._jobs) == 0
    assert not engine.lobby._storing and not engine.lobby._registering
    assert not engine.chat._awaiting_commit and not engine.chat._sent_by
    # And newcomers are served as if nothing had happened.
    carol = Peer(driver, "fuzz1", FUZZ_PASSWORD, ("10.0.0.3", 1))
    carol.send(wire.Say(text="after the flood", cid="after"))
    bob.settle()
    assert bob.of_type(wire.Msg)[-1].text == "after the flood"


# --- a live daemon ---------------------------------------------------------------------------


def test_the_live_fuzzer_takes_a_key_of_35_bytes_as_no_amplification() -> None:
    """Garbage shaped as a `KEY_REQUEST` may ask whether registrations are taken (its
    third byte), and is answered with a `KEY` of 35 bytes: no amplification; one of 36
    is."""
    fuzzer = _Fuzzer(("127.0.0.1", 9), bytes(32), 1, ["fuzz"], [], 1, 1, 1.0)
    try:
        stranger = fuzzer.strangers[0]
        for told in (True, False, None):
            fuzzer._outside_answer(stranger, wire.key_datagram(bytes(32), registrations=told))
        assert fuzzer.report.amplification == []
        fuzzer._outside_answer(stranger, wire.key_datagram(bytes(32)) + b"\x00\x00")
        assert fuzzer.report.amplification == ["a KEY of 36 bytes"]
    finally:
        fuzzer.close()


async def test_a_live_daemon_takes_every_layer_and_loses_nobody_a_message(
    tmp_path: Path,
) -> None:
    config = ClientConfig(timeout=10.0)
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(
                nursery,
                tmp_path / "chat.db",
                *("--register-burst", "1000", "--sessions-per-address", "100000"),
                *("--login-free-failures", "1000000", "--handshake-burst", "100000"),
            )
            host, port = await daemon.start()
            key = await fetch_key(host, port)
            for name in FUZZERS:
                await register(host, port, name, FUZZ_PASSWORD, config=config, server_key=key)
            for name in PEOPLE:
                await register(host, port, name, PASSWORD, config=config, server_key=key)
            said: list[Receipt[ChatMessage]] = []
            hear, heard = trio.open_memory_channel[str](math.inf)
            async with (
                connect(host, port, "alice", PASSWORD, config=config, server_key=key) as alice,
                connect(host, port, "bob", PASSWORD, config=config, server_key=key) as bob,
            ):
                nursery.start_soon(listen, bob, "alice", hear)
                report = await fuzz_daemon(
                    (host, port),
                    key,
                    count=3000,
                    seed=7,
                    names=FUZZERS,
                    others=PEOPLE,
                    sockets=3,
                    barrier_every=100,
                    logout_every=500,
                    on_barrier=lambda n: speak(alice, said, f"during the fuzz {n}"),
                )
                texts = [(await receipt.wait()).text for receipt in said]
                assert [await heard.receive() for _ in texts] == texts
                sent = await alice.say("after the fuzz")
                assert await heard.receive() == sent.text
                assert "alice" in await bob.who()
            assert daemon.running
            assert await daemon.stop() == 0
            nursery.cancel_scope.cancel()
    assert report.total == 3000
    assert all(report.sent[layer] > 500 for layer in ("outside", "record", "payload"))
    assert report.faults == [] and report.amplification == [] and report.lost == []
    assert report.kernel_drops in (None, 0)
    assert report.replies > 1000 and report.logouts > 0 and report.barriers >= 30
    assert {kind.split("/")[1] for kind in report.kinds} == {
        *OUTSIDE_KINDS,
        *RECORD_KINDS,
        *PAYLOAD_KINDS,
    }
    assert report.outside_bytes_answered < report.outside_bytes_sent
    assert set(report.outside_answers) <= {"KEY", "RESPONSE", "RETRY", "REFUSED", "RESET"}
    # Every line is one of the daemon's own, and none at level error or worse.
    lines = [line for line in daemon.output if not OWN_LINE.match(line)]
    assert lines == [], lines[:5]
