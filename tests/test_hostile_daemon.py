"""The client core against a daemon that holds the session's keys and sends what it likes.

Every frame here decodes (it is well-formed JSON of a known type), but its values are
odd: timestamps that do not parse or cannot be shown, answers to the wrong request,
answers that never end. The client must neither raise, nor grow without limit, nor hand
its caller something that is not what the request promised.
"""

from __future__ import annotations

import itertools
import socket
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest
import trio
import typer

from trio_chat import client_protocol, client_shell, connect, register, wire
from trio_chat.cli import account, exits
from trio_chat.client_protocol import ClientConfig, ClientConnection, Handle
from trio_chat.client_shell import PATIENCE, PROBES
from trio_chat.display import joined_line, left_line, message_line
from trio_chat.errors import ProtocolError, ServerUnreachable
from trio_chat.events import (
    Event,
    History,
    Joined,
    Left,
    Notice,
    PrivateMessage,
    PublicMessage,
)
from trio_chat.reliability import Link
from trio_chat.secure import Channel, DaemonKeys, reset_token, respond

TS = "2024-05-01T12:00:00+00:00"


class HostileDaemon:
    """The daemon's side of one channel, in explicit time: it answers the handshake,
    reads the client's frames, and sends whatever frames a test gives it."""

    def __init__(self) -> None:
        self.keys = DaemonKeys.generate()
        self.now = 0.0
        self.channel: Channel | None = None
        self.link: Link | None = None
        self.frames: list[tuple[int, wire.ClientFrame]] = []
        self.events: list[Event] = []

    def client(self, name: str | None = "alice") -> ClientConnection:
        config = ClientConfig(reconnect=False)
        return ClientConnection(self.keys.public, name, "password", config=config)

    def step(self, client: ClientConnection, seconds: float = 0.01) -> None:
        """Exchange what both sides have, then let `seconds` pass."""
        for data in client.datagrams_to_send(self.now):
            self._take(client, data)
        self._flush(client)
        self.now += seconds
        deadline = client.next_timer()
        if deadline is not None and deadline <= self.now:
            client.handle_timer(self.now)
        while (event := client.next_event()) is not None:
            self.events.append(event)

    def _take(self, client: ClientConnection, data: bytes) -> None:
        datagram = wire.parse_datagram_untrusted(data)
        if isinstance(datagram, wire.Init):
            token = reset_token(self.keys.reset_secret, 99)
            response, self.channel = respond(self.keys.static_private, datagram, 99, token)
            self.link = Link(self.channel.seal)
            client.receive_datagram(response, self.now)
        elif isinstance(datagram, wire.Data):
            assert self.channel is not None and self.link is not None
            pn, plaintext = self.channel.open_untrusted(data)
            payload = wire.decode_payload_untrusted(plaintext)
            for seq, raw in self.link.receive(
                pn, payload.ack, payload.sack, payload.frames, self.now, payload.echo
            ):
                self.frames.append((seq, wire.decode_client_frame_untrusted(raw)))

    def _flush(self, client: ClientConnection) -> None:
        if self.link is not None:
            for data in self.link.datagrams_to_send(self.now):
                client.receive_datagram(data, self.now)

    def send(self, client: ClientConnection, *frames: wire.ServerFrame | bytes) -> None:
        """Send frames to the client (bytes as they are) and let it act on them."""
        assert self.link is not None
        for frame in frames:
            self.link.send(frame if isinstance(frame, bytes) else wire.encode(frame))
        self.step(client)

    def seq_of(self, kind: type[wire.ClientFrame]) -> int:
        """The sequence number of the latest frame of `kind` the client sent."""
        return [seq for seq, frame in self.frames if isinstance(frame, kind)][-1]

    @classmethod
    def with_client(cls) -> tuple[HostileDaemon, ClientConnection]:
        """A daemon and a client logged in to it, nothing else sent yet."""
        daemon = cls()
        client = daemon.client()
        daemon.log_in(client)
        return daemon, client

    def log_in(self, client: ClientConnection) -> None:
        client.start(self.now)
        for _ in range(50):
            self.step(client)
            if any(isinstance(frame, wire.Login) for _seq, frame in self.frames):
                break
        self.send(client, wire.Welcome(re=self.seq_of(wire.Login), name="alice"))
        self.send(client, wire.Ready(count=0))
        assert client.ready and client.connected

    def answer(self, client: ClientConnection, handle: Handle, kind: type[wire.ClientFrame]) -> int:
        """Let the client send `handle`'s request; its sequence number."""
        for _ in range(50):
            self.step(client)
            if any(isinstance(frame, kind) for _seq, frame in self.frames):
                break
        return self.seq_of(kind)


def msg(id: int, ts: str = TS, **fields: object) -> bytes:
    frame = {"t": "msg", "id": id, "ts": ts, "from": "bob", "text": "hi", **fields}
    return wire.encode(frame)


# Timestamps that do not parse, and ones that parse but cannot be shown in local time.
BAD_STAMPS = [
    "yesterday",
    "",
    "2024-13-45T99:00:00+00:00",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+00:00",
    "9999-12-31T23:59:59+00:00",
]


@pytest.mark.parametrize("stamp", BAD_STAMPS)
def test_a_timestamp_that_cannot_be_read_or_shown_is_not_an_exception(
    stamp: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "EST5")  # a local time west of UTC: year 1 underflows there
    time.tzset()
    try:
        daemon, client = HostileDaemon.with_client()
        daemon.send(client, msg(1, stamp))
        daemon.send(client, msg(2, stamp, history=True), wire.Ready(count=1))
        daemon.send(client, wire.Join(name="carol", ts=stamp))
        daemon.send(client, wire.Leave(name="carol", ts=stamp))
        daemon.send(
            client,
            wire.encode(
                {"t": "pm", "id": 3, "ts": stamp, "from": "bob", "to": "alice", "text": "psst"}
            ),
        )
        daemon.send(client, msg(4))  # and the connection goes on
        assert not client.closed
        shown = [e for e in daemon.events if isinstance(e, PublicMessage)]
        assert [m.id for m in shown] == [4]
        for event in daemon.events:
            # Everything the client hands on can be shown on a screen.
            if isinstance(event, PublicMessage | PrivateMessage):
                message_line(event, "alice")
            elif isinstance(event, History):
                for message in event.messages:
                    message_line(message, "alice")
            elif isinstance(event, Joined):
                joined_line(event, "alice")
            elif isinstance(event, Left):
                left_line(event, "alice")
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("stamp", BAD_STAMPS[:4])
def test_a_stored_message_with_an_unreadable_time_is_a_protocol_error(stamp: str) -> None:
    daemon, client = HostileDaemon.with_client()
    said = client.say("hello")
    seq = daemon.answer(client, said, wire.Say)
    daemon.send(client, wire.Ok(re=seq, id=1, ts=stamp))
    assert said.done and isinstance(said.error, ProtocolError)
    assert not client.closed


def test_an_answer_that_does_not_decode_fails_its_request() -> None:
    daemon, client = HostileDaemon.with_client()
    said = client.say("hello")
    seq = daemon.answer(client, said, wire.Say)
    daemon.send(client, b'{"t":"ok","re":%d,"id":"seven","ts":"%s"}' % (seq, TS.encode()))
    assert said.done and isinstance(said.error, ProtocolError)
    assert said.error.message == (
        "The daemon's answer was not understood; it may run another version of trio-chat "
        "(run the same on both sides)."
    )
    asked = client.who()
    seq = daemon.answer(client, asked, wire.Who)
    daemon.send(client, b'{"t":"names","re":%d,"names":"nobody"}' % seq)
    assert asked.done and isinstance(asked.error, ProtocolError)
    unrelated = client.who()
    seq = daemon.answer(client, unrelated, wire.Who)
    # A type this client does not know, a newer daemon's: ignored, whatever it names.
    daemon.send(client, b'{"t":"progress","re":%d,"done":10}' % seq)
    assert not unrelated.done
    daemon.send(client, b'{"t":"ok","re":"%d"}' % seq)  # names none: nothing fails
    daemon.send(client, b"[%d]" % seq)  # no object: the same
    assert not unrelated.done and not client.closed


def test_an_ok_without_the_stored_message_fails_the_message() -> None:
    daemon, client = HostileDaemon.with_client()
    said = client.say("hello")
    daemon.send(client, wire.Ok(re=daemon.answer(client, said, wire.Say)))
    assert said.done and isinstance(said.error, ProtocolError) and said.result is None
    whispered = client.whisper("bob", "psst")
    daemon.send(client, wire.Ok(re=daemon.answer(client, whispered, wire.Whisper), id=9))
    assert whispered.done and isinstance(whispered.error, ProtocolError)


def test_answers_aimed_at_another_kind_of_request_do_not_become_its_result() -> None:
    daemon, client = HostileDaemon.with_client()
    said = client.say("hello")
    seq = daemon.answer(client, said, wire.Say)
    daemon.send(client, wire.Registered(re=seq, name="mallory"))
    daemon.send(client, wire.PasswordChanged(re=seq, ticket="mallory's"))
    daemon.send(client, wire.Ok(re=seq, id=5, ts=TS))
    assert client.ticket != "mallory's"
    assert isinstance(said.result, PublicMessage) and said.result.text == "hello"

    found = client.history(10)
    seq = daemon.answer(client, found, wire.HistoryRequest)
    daemon.send(client, wire.Names(re=seq, names=["not", "messages"]), msg(6, re=seq))
    daemon.send(client, wire.Ok(re=seq))
    assert [m.id for m in found.result] == [6]

    online = client.who()
    seq = daemon.answer(client, online, wire.Who)
    daemon.send(client, msg(7, re=seq), wire.Names(re=seq, names=["bob"]))
    daemon.send(client, wire.Ok(re=seq, count=1))
    assert online.result == ["bob"]


def test_a_batch_with_an_unreadable_time_still_shows_the_rest_of_it() -> None:
    daemon, client = HostileDaemon.with_client()
    batch = [
        wire.Msg(id=1, ts="yesterday", sender="bob", text="lost"),
        wire.Msg(id=2, ts=TS, sender="bob", text="kept"),
    ]
    daemon.send(client, wire.Msgs(messages=batch))
    shown = [e for e in daemon.events if isinstance(e, PublicMessage)]
    assert [(m.id, m.text) for m in shown] == [(2, "kept")]
    assert not client.closed


def test_only_this_accounts_own_copy_of_a_message_answers_it_and_only_once() -> None:
    """A message stored before its answer was lost comes back as the account's own copy
    (by its `cid`): that answers it, as a message said now, not one of a history; and the
    same message coming again is not shown as news. Another account's message under the
    same `cid` answers nothing."""
    daemon, client = HostileDaemon.with_client()
    said = client.say("hello")
    daemon.answer(client, said, wire.Say)
    (cid,) = [frame.cid for _seq, frame in daemon.frames if isinstance(frame, wire.Say)]
    daemon.send(client, msg(5, cid=cid, history=True, text="hello", **{"from": "alice"}))
    assert said.done and said.error is None
    assert (said.result.id, said.result.text, said.result.history) == (5, "hello", False)
    daemon.send(client, msg(5, text="hello", **{"from": "alice"}))  # live, again
    again = client.say("again")
    daemon.answer(client, again, wire.Say)
    (_, cid) = [frame.cid for _seq, frame in daemon.frames if isinstance(frame, wire.Say)]
    daemon.send(client, msg(6, cid=cid, text="again"))  # from bob
    assert not again.done
    shown = [e for e in daemon.events if isinstance(e, PublicMessage)]
    assert [(m.id, m.sender) for m in shown] == [(6, "bob")]


def test_an_answer_in_parts_cannot_grow_without_end() -> None:
    daemon, client = HostileDaemon.with_client()
    found = client.history(10)
    seq = daemon.answer(client, found, wire.HistoryRequest)
    for n in range(wire.HISTORY_LIMIT_MAX + 20):
        daemon.send(client, msg(100 + n, re=seq, history=True))
        assert len(found.parts) <= wire.HISTORY_LIMIT_MAX
    assert found.done and isinstance(found.error, ProtocolError)

    online = client.who()
    seq = daemon.answer(client, online, wire.Who)
    names = [f"n{n}" for n in range(100)]
    for _ in range(client_protocol.WHO_NAMES_MAX // len(names) + 2):
        daemon.send(client, wire.Names(re=seq, names=names))
        assert len(online.parts) <= client_protocol.WHO_NAMES_MAX
    assert online.done and isinstance(online.error, ProtocolError)
    assert not client.closed


def test_history_without_its_end_cannot_grow_without_end() -> None:
    daemon, client = HostileDaemon.with_client()
    most = client_protocol.SEEN_MEMORY
    batch = 10
    sent = most + 3 * batch
    for start in range(1, sent + 1, batch):
        daemon.send(client, *(msg(n, history=True) for n in range(start, start + batch)))
    assert client._seen.held <= most
    daemon.send(client, wire.Ready(count=sent))
    (*_, history) = [e for e in daemon.events if isinstance(e, History)]
    assert len(history.messages) == most and history.more
    assert history.messages[-1].id == sent  # the newest are kept


def test_an_error_naming_no_request_waited_for_is_told_as_a_notice() -> None:
    daemon, client = HostileDaemon.with_client()
    daemon.send(client, wire.ErrorFrame(code="bad_request", message="Not that.", re=999))
    daemon.send(client, wire.ErrorFrame(code="bad_request", message="Nor that."))
    notices = [e.text for e in daemon.events if isinstance(e, Notice)]
    assert notices == ["Not that.", "Nor that."]
    assert not client.closed


def lost_coming_back_for(limit: float) -> tuple[HostileDaemon, ClientConnection, float]:
    """A client logged in, told to come back for `limit` seconds, whose daemon's port has
    just closed: the daemon, the client, and when the session was lost."""
    daemon = HostileDaemon()
    config = ClientConfig(timeout=3.0, reconnect_for=limit)
    client = ClientConnection(daemon.keys.public, "alice", "password", config=config)
    daemon.log_in(client)
    lost_at = daemon.now
    client.connection_refused(daemon.now)
    return daemon, client, lost_at


def test_a_daemon_that_takes_each_channel_and_drops_it_is_given_up_on_in_time() -> None:
    """Coming back, each new channel opens and is lost before its login is welcomed (the
    port closes again): losing it again is no new start, and `reconnect_for` counts from
    the first loss."""
    daemon, client, lost_at = lost_coming_back_for(20.0)
    while not client.closed and daemon.now < lost_at + 60.0:
        for _ in range(100):  # `step` lets 10 ms pass: a second
            daemon.step(client)
        if client.link is not None:  # a new channel, the login on its way: dropped
            client.connection_refused(daemon.now)
    assert client.closed and daemon.now <= lost_at + 20.0 + 1.0
    logins = [frame for _seq, frame in daemon.frames if isinstance(frame, wire.Login)]
    assert len(logins) > 5  # the first, then one on each channel taken and dropped
    assert client.failure is not None
    assert client.failure.message.endswith("for good: not back after 20 s.")


def test_a_limit_with_a_fraction_is_told_as_it_was_given() -> None:
    """`--give-up-after 2.5`: the connection ends at the first try that fails after it
    (the key exchange's 3 s timeout), saying 2.5 s, not a rounded 2 s."""
    daemon, client, lost_at = lost_coming_back_for(2.5)
    while not client.closed and daemon.now < lost_at + 30.0:
        client.datagrams_to_send(daemon.now)  # lost: no daemon answers
        daemon.now += 0.01
        client.handle_timer(daemon.now)
    assert client.closed and lost_at + 3.0 <= daemon.now <= lost_at + 3.0 + 0.02
    assert client.failure is not None
    assert client.failure.message.endswith("for good: not back after 2.5 s.")


def test_a_daemon_that_keeps_putting_off_the_login_coming_back_is_given_up_on_in_time() -> None:
    """Coming back, the channel opens and the login is put off again and again (busy,
    try again in a few seconds): the session is not back, and `reconnect_for` counts."""
    daemon, client, lost_at = lost_coming_back_for(20.0)
    read, put_off = len(daemon.frames), 0  # the frames of the lost session are read
    while not client.closed and daemon.now < lost_at + 60.0:
        daemon.step(client)
        for seq, frame in daemon.frames[read:]:
            if isinstance(frame, wire.Login):
                busy = wire.ErrorFrame(code="busy", message="Busy.", re=seq, retry_after=3.0)
                daemon.send(client, busy)
                put_off += 1
        read = len(daemon.frames)
    assert client.closed and daemon.now <= lost_at + 20.0 + 1.0
    assert put_off > 3
    assert client.failure is not None
    assert client.failure.message.endswith("for good: not back after 20 s.")


@pytest.mark.parametrize(
    ("said", "reason"),
    [
        ("The daemon is stopping.", "the daemon is stopping"),
        ("IPv6 is going away.", "IPv6 is going away"),  # a word in capitals stays so
    ],
)
def test_a_goodbye_is_told_as_the_reason_the_connection_was_lost(said: str, reason: str) -> None:
    daemon, client = HostileDaemon.with_client()
    daemon.send(client, wire.Bye(reason="stopping", message=said))
    assert client.closed and client.failure is not None
    assert client.failure.message == f"Lost the connection to the daemon: {reason}."


def test_a_first_login_told_to_wait_five_seconds_waits_them_and_goes_again_then() -> None:
    """`throttled` for up to `THROTTLE_WAITED_OUT` is waited out by the client itself:
    the login goes again when the daemon said, the timer set for that very time."""
    daemon = HostileDaemon()
    client = daemon.client()
    client.start(daemon.now)
    while not any(isinstance(frame, wire.Login) for _seq, frame in daemon.frames):
        daemon.step(client)
    wait = client_protocol.retries.THROTTLE_WAITED_OUT
    told = wire.ErrorFrame(
        code="throttled", message="Too many tries.", re=daemon.seq_of(wire.Login), retry_after=wait
    )
    daemon.send(client, told)
    refused_at = daemon.now - 0.01  # `send` lets 10 ms pass after the client took it
    assert not client.closed

    def logins() -> int:
        return len([frame for _seq, frame in daemon.frames if isinstance(frame, wire.Login)])

    while logins() == 1 and daemon.now < refused_at + 30.0:
        daemon.step(client)
    assert logins() == 2 and not client.closed
    assert refused_at + wait <= daemon.now <= refused_at + wait + 0.05


def test_a_login_put_off_for_no_time_goes_again_at_once() -> None:
    """`busy` with a `retry_after` of 0 is "now", not the second waited when it says no
    time."""
    daemon = HostileDaemon()
    client = daemon.client()
    client.start(daemon.now)
    while not any(isinstance(frame, wire.Login) for _seq, frame in daemon.frames):
        daemon.step(client)
    busy = wire.ErrorFrame(
        code="busy", message="Busy.", re=daemon.seq_of(wire.Login), retry_after=0
    )
    daemon.send(client, busy)
    refused_at = daemon.now - 0.01  # `send` lets 10 ms pass after the client took it
    while len([frame for _seq, frame in daemon.frames if isinstance(frame, wire.Login)]) == 1:
        assert daemon.now < refused_at + 2.0
        daemon.step(client)
    assert daemon.now <= refused_at + 0.03 and not client.closed


def test_tries_to_come_back_to_a_daemon_that_is_gone_wait_longer_each_time() -> None:
    """Each key exchange that finds no daemon waits `timeout` (3 s), and the wait before
    the next try doubles from half a second up to `reconnect_delay_max`; back in a
    session, the wait starts from half a second again."""
    daemon = HostileDaemon()
    config = ClientConfig(timeout=3.0, reconnect_delay_max=5.0)
    client = ClientConnection(daemon.keys.public, "alice", "password", config=config)
    daemon.log_in(client)

    def tries_while_gone(seconds: float) -> list[float]:
        """When each try starts, the daemon hearing nothing, for `seconds`."""
        started: list[float] = []
        handshake = None
        end = daemon.now + seconds
        while daemon.now < end:
            client.datagrams_to_send(daemon.now)  # lost
            daemon.now += 0.01
            timer = client.next_timer()
            if timer is not None and timer <= daemon.now:
                client.handle_timer(daemon.now)
            if client._handshake is not None and client._handshake is not handshake:
                handshake = client._handshake
                started.append(daemon.now)
        return started

    def gaps(started: list[float]) -> list[float]:
        return [round(b - a, 1) for a, b in itertools.pairwise(started)]

    client.connection_refused(daemon.now)
    assert gaps(tries_while_gone(40.0))[:5] == [3.5, 4.0, 5.0, 7.0, 8.0]
    # Back: the next try's key exchange goes through, and its login is welcomed.
    read = len(daemon.frames)
    while not any(isinstance(frame, wire.Login) for _seq, frame in daemon.frames[read:]):
        daemon.step(client)
    daemon.send(client, wire.Welcome(re=daemon.seq_of(wire.Login), name="alice"))
    daemon.send(client, wire.Ready(count=0))
    assert client.connected
    client.connection_refused(daemon.now)
    assert gaps(tries_while_gone(10.0))[:2] == [3.5, 4.0]


def test_a_reconnect_delay_max_under_half_a_second_caps_the_first_wait_too() -> None:
    """`reconnect_delay_max` is the longest wait between tries, the first one included:
    set to 0.2 s, no try waits the half second the doubling starts from."""
    daemon = HostileDaemon()
    config = ClientConfig(timeout=1.0, reconnect_delay_max=0.2)
    client = ClientConnection(daemon.keys.public, "alice", "password", config=config)
    daemon.log_in(client)
    client.connection_refused(daemon.now)
    started, handshake = [daemon.now], client._handshake
    while len(started) < 4:
        client.datagrams_to_send(daemon.now)  # lost: no daemon answers
        timer = client.next_timer()
        assert timer is not None
        daemon.now = max(daemon.now, timer)
        client.handle_timer(daemon.now)
        if client._handshake is not None and client._handshake is not handshake:
            handshake = client._handshake
            started.append(daemon.now)
    # Each key exchange waits its 1 s timeout, then 0.2 s before the next.
    assert [round(b - a, 3) for a, b in itertools.pairwise(started)] == [1.2, 1.2, 1.2]


def test_an_unexpected_error_is_reported_with_its_text_made_safe(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Such an error may quote what the daemon sent (it once quoted a timestamp).
    async def fails() -> None:
        raise ValueError("Invalid isoformat string: '\x1b]0;owned\x07\x1b[2J'")

    with pytest.raises(typer.Exit) as exit:
        exits.run(fails)
    assert exit.value.exit_code == exits.ExitCode.FAILURE
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    assert "\\x1b]0;owned\\x07" in err


def test_a_ready_before_the_welcome_does_not_make_the_connection_ready() -> None:
    daemon = HostileDaemon()
    client = daemon.client()
    client.start(daemon.now)
    for _ in range(50):
        daemon.step(client)
        if daemon.frames:
            break
    daemon.send(client, msg(1, history=True), wire.Ready(count=1))
    assert not client.ready  # not logged in: a refusal may still come
    daemon.send(
        client, wire.ErrorFrame(code="wrong_password", message="No.", re=daemon.seq_of(wire.Login))
    )
    assert client.closed and not client.ready
    assert not [e for e in daemon.events if isinstance(e, History)]


class ScriptedDaemon:
    """A daemon on 127.0.0.1 that answers handshakes, acknowledges every frame and answers
    a record for a channel it does not hold with `RESET`; what else it does, `frame` and
    `tick` say (a subclass's script)."""

    def __init__(self, keys: DaemonKeys) -> None:
        self.keys = keys
        self.channels: dict[int, tuple[Channel, Link]] = {}
        self._indexes = itertools.count(1)
        self.peer: Any = None
        self._sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def frame(self, index: int, link: Link, seq: int, frame: wire.ClientFrame, now: float) -> None:
        """A frame from the client on channel `index`."""

    async def tick(self, now: float) -> None:
        """After each poll of the socket."""

    async def send(self, data: bytes) -> None:
        await self._sock.sendto(data, self.peer)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        sock = self._sock
        with sock:
            await sock.bind(("127.0.0.1", 0))
            task_status.started(sock.getsockname()[1])
            while True:
                now = trio.current_time()
                with trio.move_on_after(0.005):
                    data, self.peer = await sock.recvfrom(2048)
                    datagram = wire.parse_datagram_untrusted(data)
                    if isinstance(datagram, wire.Init):
                        index = next(self._indexes)
                        token = reset_token(self.keys.reset_secret, index)
                        response, channel = respond(
                            self.keys.static_private, datagram, index, token
                        )
                        self.channels[index] = (channel, Link(channel.seal))
                        await self.send(response)
                    elif isinstance(datagram, wire.Data):
                        index = datagram.receiver_index
                        if index not in self.channels:
                            token = reset_token(self.keys.reset_secret, index)
                            await self.send(wire.reset_datagram(index, token))
                            continue
                        channel, link = self.channels[index]
                        pn, plaintext = channel.open_untrusted(data)
                        payload = wire.decode_payload_untrusted(plaintext)
                        for seq, raw in link.receive(
                            pn, payload.ack, payload.sack, payload.frames, now, payload.echo
                        ):
                            self.frame(
                                index, link, seq, wire.decode_client_frame_untrusted(raw), now
                            )
                await self.tick(now)
                if self.peer is not None:
                    for _channel, link in self.channels.values():
                        for out in link.datagrams_to_send(now):
                            await self.send(out)


class NeverAnswers(ScriptedDaemon):
    """Answers nothing (its password hashing stuck, say); with `welcome`, nothing but
    logins."""

    def __init__(self, keys: DaemonKeys, welcome: bool = False) -> None:
        super().__init__(keys)
        self.welcome = welcome

    def frame(self, index: int, link: Link, seq: int, frame: wire.ClientFrame, now: float) -> None:
        if self.welcome and isinstance(frame, wire.Login):
            link.send(wire.encode(wire.Welcome(re=seq, name=frame.name)))
            link.send(wire.encode(wire.Ready(count=0)))


async def test_a_registration_the_daemon_never_answers_ends_unreachable() -> None:
    """It acknowledges the request and every ping, and never answers: the wait ends
    after `PATIENCE` timeouts, with a sentence that says so."""
    keys = DaemonKeys.generate()
    config = ClientConfig(timeout=0.25)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(NeverAnswers(keys).run)
            started = trio.current_time()
            with pytest.raises(ServerUnreachable, match="has not answered it in 3 s"):
                await register(
                    "127.0.0.1",
                    port,
                    "alice",
                    "a good password",
                    config=config,
                    server_key=keys.public,
                )
            assert trio.current_time() - started >= PATIENCE * config.timeout
            nursery.cancel_scope.cancel()


class SlowButThere(ScriptedDaemon):
    """Answers a registration only once the client has pinged `pings` times while waiting
    for it (a queue of password checks ahead of it)."""

    def __init__(self, keys: DaemonKeys, pings: int) -> None:
        super().__init__(keys)
        self.pings = pings
        self.waiting: tuple[int, str] | None = None

    def frame(self, index: int, link: Link, seq: int, frame: wire.ClientFrame, now: float) -> None:
        if isinstance(frame, wire.Register):
            self.waiting = (seq, frame.name)
        elif isinstance(frame, wire.Ping) and self.waiting is not None:
            self.pings -= 1
            if self.pings == 0:
                re, name = self.waiting
                link.send(wire.encode(wire.Registered(re=re, name=name)))


async def test_a_registration_waits_for_a_daemon_that_is_slow_but_there() -> None:
    """A daemon whose password hashing is queued behind a flood takes longer than the
    client's timeout to answer, and acknowledges every ping meanwhile: the client waits
    for the answer rather than report the daemon unreachable (and leave an account made
    that nobody was told of). It answers after more pings than a silent daemon gets."""
    keys = DaemonKeys.generate()
    config = ClientConfig(timeout=0.2)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(SlowButThere(keys, 3 * PROBES).run)
            name = await register(
                "127.0.0.1", port, "alice", "a good password", config=config, server_key=keys.public
            )
            assert name == "alice"
            nursery.cancel_scope.cancel()


async def test_a_login_check_the_daemon_never_answers_ends_unreachable() -> None:
    keys = DaemonKeys.generate()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(NeverAnswers(keys, welcome=True).run)
            # Raised in connect()'s block, as itself; the login was taken, so not "is
            # `trio-chat serve` running?".
            told = "Logged in as alice at .*, but the daemon did not say who is here"
            with pytest.raises(ServerUnreachable, match=told):
                await account._check_login("127.0.0.1", port, keys.public, "alice", "a password")
            nursery.cancel_scope.cancel()


class RestartedBeforeAnswering(ScriptedDaemon):
    """Takes a registration on a channel and, 0.9 s later, restarts as after a crash:
    with `notices`, it sends that channel a `RESET` (as for a logged-in session), else
    only answers the channel's next record with one (as for a channel that was not logged
    in). After the restart it answers a registration 0.5 s after it comes (its hashing
    takes that)."""

    def __init__(self, keys: DaemonKeys, notices: bool) -> None:
        super().__init__(keys)
        self.notices = notices
        self.taken: tuple[float, int] | None = None
        """When, and on which channel, the registration was first taken: the restart is
        timed from it, not from the daemon's start (on a busy machine the handshake alone
        may take 0.9 s, or a resent `INIT` open a second channel)."""
        self.restarted = False
        self.answers: list[tuple[float, Link, bytes]] = []

    def frame(self, index: int, link: Link, seq: int, frame: wire.ClientFrame, now: float) -> None:
        if not isinstance(frame, wire.Register):
            return
        if self.restarted:
            answer = wire.encode(wire.Registered(re=seq, name=frame.name))
            self.answers.append((now + 0.5, link, answer))
        elif self.taken is None:
            self.taken = (now, index)

    async def tick(self, now: float) -> None:
        if not self.restarted and self.taken is not None and now - self.taken[0] > 0.9:
            self.restarted = True  # the channel is gone
            index = self.taken[1]
            self.channels.pop(index, None)
            if self.notices:
                token = reset_token(self.keys.reset_secret, index)
                await self.send(wire.reset_datagram(index, token))
        for due, link, answer in [a for a in self.answers if a[0] <= now]:
            self.answers.remove((due, link, answer))
            link.send(answer)


@pytest.mark.parametrize("notices", [True, False])
async def test_a_registration_through_a_daemon_restart_counts_its_time_again(
    notices: bool,
) -> None:
    """The answer may take `timeout` on each channel: a daemon that restarts before
    answering (a crash) gets the registration again on a new channel, and the time.
    Whether it tells the channel it is gone or not: the client asks, while it waits."""
    keys = DaemonKeys.generate()
    config = ClientConfig(timeout=1.0)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(RestartedBeforeAnswering(keys, notices).run)
            started = trio.current_time()
            name = await register(
                "127.0.0.1", port, "alice", "a good password", config=config, server_key=keys.public
            )
            assert name == "alice"
            assert trio.current_time() - started > config.timeout  # more than one count
            nursery.cancel_scope.cancel()


class ShowsItsKeyOnly:
    """Answers a request for its key, and nothing else: a handshake with it never ends."""

    def __init__(self, keys: DaemonKeys) -> None:
        self.keys = keys

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            await sock.bind(("127.0.0.1", 0))
            task_status.started(sock.getsockname()[1])
            while True:
                data, peer = await sock.recvfrom(2048)
                if isinstance(wire.parse_datagram_untrusted(data), wire.KeyRequest):
                    await sock.sendto(wire.key_datagram(self.keys.public), peer)


async def test_a_daemon_met_first_has_the_timeout_given_to_prove_its_key() -> None:
    """The key a daemon shows the first time is proven by a handshake before it is
    remembered: `register` and `connect` wait for that handshake as long as their
    `config` says (here half a second), not the default five seconds."""
    keys = DaemonKeys.generate()
    config = ClientConfig(timeout=0.5)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(ShowsItsKeyOnly(keys).run)
            started = trio.current_time()
            with pytest.raises(ServerUnreachable):
                await register("127.0.0.1", port, "alice", "a good password", config=config)
            assert trio.current_time() - started < 3
            started = trio.current_time()
            with pytest.raises(ServerUnreachable):
                async with connect("127.0.0.1", port, "alice", "a good password", config=config):
                    pass
            assert trio.current_time() - started < 3
            nursery.cancel_scope.cancel()


class SlowToWelcome(ScriptedDaemon):
    """Takes a login, and answers it only once the client has pinged `pings` times while
    waiting (a queue of password checks ahead of it)."""

    def __init__(self, keys: DaemonKeys, pings: int) -> None:
        super().__init__(keys)
        self.pings = pings
        self.waiting: tuple[int, str] | None = None

    def frame(self, index: int, link: Link, seq: int, frame: wire.ClientFrame, now: float) -> None:
        if isinstance(frame, wire.Login):
            self.waiting = (seq, frame.name)
        elif isinstance(frame, wire.Ping) and self.waiting is not None:
            self.pings -= 1
            if self.pings == 0:
                re, name = self.waiting
                link.send(wire.encode(wire.Welcome(re=re, name=name)))
                link.send(wire.encode(wire.Ready(count=0)))


async def test_a_login_waits_for_a_daemon_that_is_slow_but_there() -> None:
    """As a registration does: the client pings while its login waits, and a daemon that
    acknowledges the pings is waited for past the client's timeout."""
    keys = DaemonKeys.generate()
    config = ClientConfig(timeout=0.5)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(SlowToWelcome(keys, 3 * PROBES).run)
            async with connect(
                "127.0.0.1", port, "alice", "a good password", config=config, server_key=keys.public
            ) as alice:
                assert alice.name == "alice" and alice.connected
            nursery.cancel_scope.cancel()


def test_a_wait_gives_up_after_a_timeout_and_a_quarter_of_silence_or_its_patience() -> None:
    """Pinged each quarter of the timeout: a daemon silent for five quarters is gone; one
    that acknowledges the pings and never answers is given up on after `PATIENCE`
    timeouts, never sooner."""
    heard = SimpleNamespace(last_received=0.0)
    link = cast(Link, heard)
    pinged: list[int] = []

    class Pinged:
        def probe(self) -> None:
            pinged.append(1)

    connection = cast(ClientConnection, Pinged())
    silent = client_shell.Waiting(link, timeout=2.0)
    for _quarter in range(PROBES):
        silent.passed(connection, "127.0.0.1:1600")
    assert len(pinged) == PROBES
    with pytest.raises(ServerUnreachable, match=r"^Cannot reach trio-chat at 127\.0\.0\.1:1600;"):
        silent.passed(connection, "127.0.0.1:1600")
    patient = client_shell.Waiting(link, timeout=2.0)
    for _quarter in range(PATIENCE * PROBES - 1):
        heard.last_received += 0.5  # the ping's acknowledgement
        patient.passed(connection, "127.0.0.1:1600")
    heard.last_received += 0.5
    with pytest.raises(ServerUnreachable, match=f"has not answered it in {PATIENCE * 2} s;"):
        patient.passed(connection, "127.0.0.1:1600")
