"""The daemon does what docs/protocol.md says: every error code, every default, on the wire.

Each test talks to a real daemon over UDP on 127.0.0.1 and reads its answers as raw JSON,
not through trio-chat's own decoders, so that a default the document promises is checked
as the bytes a client in another language would see.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_chat import wire
from trio_chat.client_protocol import ClientConfig, ClientConnection, Handle
from trio_chat.engine import ServerConfig
from trio_chat.records import Message, Snapshot, StoreOp
from trio_chat.server import serve
from trio_chat.store import SqliteStore, Storage

PASSWORD = "correct horse"
Json = dict[str, Any]


class Raw:
    """One UDP socket to the daemon; every datagram received is kept as parsed JSON."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.received: list[Json] = []

    async def ask(self, data: bytes, wait: float = 0.5) -> list[Json]:
        """Send one datagram; return what comes back within `wait` seconds."""
        await self.sock.send(data)
        return await self.collect(wait)

    async def collect(self, wait: float) -> list[Json]:
        got: list[Json] = []
        with trio.move_on_after(wait):
            while True:
                data = await self.sock.recv(4096)
                reply = json.loads(data)
                got.append(reply)
                self.received.append(reply)
                if wait > 0.2:
                    wait = 0.2  # after a first answer, only what follows at once
        return got

    async def request(self, fields: Json, pad: bool = True) -> Json:
        """A request outside a session (padded so the 3x budget allows any answer)."""
        if pad:
            fields = {**fields, "padding": "x" * 300}
        (reply,) = await self.ask(json.dumps(fields).encode())
        return reply


class Session:
    """A logged-in session: the client core over a raw socket, every frame kept as JSON."""

    def __init__(self, raw: Raw, connection: ClientConnection) -> None:
        self.raw = raw
        self.connection = connection
        self._frames: dict[int, Json] = {}

    async def pump(self, until: Callable[[], bool], limit: float = 5.0) -> None:
        with trio.fail_after(limit):
            while not until():
                now = trio.current_time()
                deadline = self.connection.next_timer()
                if deadline is not None and deadline <= now:
                    self.connection.handle_timer(now)
                for datagram in self.connection.datagrams_to_send(now):
                    await self.raw.sock.send(datagram)
                if until():
                    break
                with trio.move_on_after(0.01):
                    data = await self.raw.sock.recv(4096)
                    packet = json.loads(data)
                    if packet.get("t") == "s":
                        self._frames.update(packet.get("frames", []))  # resent ones once
                    self.connection.receive_datagram(data, trio.current_time())

    async def send(self, frame: wire.ClientFrame | bytes) -> Handle:
        """Send one frame and wait for its answer (`ok` or `error`)."""
        handle = self.connection.request(frame)
        await self.pump(lambda: handle.done)
        return handle

    @property
    def frames(self) -> list[Json]:
        """Every frame received, once each, in sequence order."""
        return [self._frames[seq] for seq in sorted(self._frames)]

    def answers(self, seq: int) -> list[Json]:
        return [f for f in self.frames if f.get("re") == seq]

    async def settle(self, seconds: float = 0.2) -> None:
        end = trio.current_time() + seconds
        await self.pump(lambda: trio.current_time() >= end)


@asynccontextmanager
async def daemon(
    tmp_path: Path, config: ServerConfig | None = None, storage: Storage | None = None
) -> AsyncIterator[Callable[[], Any]]:
    """A daemon on port 0; yields a factory of raw sockets to it."""
    config = config or ServerConfig(message_burst=1000, register_burst=100)
    async with trio.open_nursery() as nursery:
        if storage is None:
            host, port = await nursery.start(serve, "127.0.0.1", 0, tmp_path / "chat.db", config)
        else:
            start = serve_with(storage, config)
            host, port = await nursery.start(start)
        sockets: list[trio.socket.SocketType] = []

        async def open_raw() -> Raw:
            sock = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
            await sock.connect((host, port))
            sockets.append(sock)
            return Raw(sock)

        try:
            yield open_raw
        finally:
            for sock in sockets:
                sock.close()
            nursery.cancel_scope.cancel()


def serve_with(storage: Storage, config: ServerConfig) -> Any:
    async def start(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        await serve("127.0.0.1", 0, None, config, storage=storage, task_status=task_status)

    return start


async def register(raw: Raw, name: str, password: str = PASSWORD) -> Json:
    rid = f"reg-{name}-{len(password)}"  # one request per name and password tried
    return await raw.request(
        {"v": 1, "t": "register", "rid": rid, "name": name, "password": password}
    )


async def logged_in(open_raw: Callable[[], Any], name: str) -> Session:
    raw: Raw = await open_raw()
    if (await register(raw, name)).get("t") not in ("registered", "error"):
        raise AssertionError("no answer to a registration")
    connection = ClientConnection(name, PASSWORD, config=ClientConfig(retry_rate_limited=False))
    session = Session(raw, connection)
    connection.start(trio.current_time())
    await session.pump(lambda: connection.ready or connection.closed)
    assert connection.ready, connection.failure
    return session


# --- section 8 and 9: errors outside a session -------------------------------------------


OUTSIDE: Sequence[tuple[str, bytes, str, str | None]] = (
    ("not UTF-8", b"\xff\xfe" * 150, "bad_datagram", None),
    ("not JSON", b"not json " * 40, "bad_datagram", None),
    ("not an object", json.dumps([1, 2, "x" * 300]).encode(), "bad_datagram", None),
    ("over 1200 bytes", b"{" + b" " * 1300 + b"}", "too_large", None),
    (
        "v missing",
        json.dumps({"t": "login", "rid": "r1", "p": "x" * 300}).encode(),
        "bad_version",
        "r1",
    ),
    (
        "v a string",
        json.dumps({"v": "1", "t": "login", "rid": "r2", "p": "x" * 300}).encode(),
        "bad_version",
        "r2",
    ),
    (
        "v 2",
        json.dumps({"v": 2, "t": "login", "rid": "r3", "p": "x" * 300}).encode(),
        "bad_version",
        "r3",
    ),
    (
        "unknown t",
        json.dumps({"v": 1, "t": "dance", "rid": "r4", "p": "x" * 300}).encode(),
        "unknown_type",
        "r4",
    ),
    (
        "field missing",
        json.dumps({"v": 1, "t": "login", "rid": "r5", "p": "x" * 300}).encode(),
        "bad_field",
        "r5",
    ),
    (
        "field of the wrong type",
        json.dumps(
            {"v": 1, "t": "register", "rid": "r6", "name": 7, "password": "x" * 300}
        ).encode(),
        "bad_field",
        "r6",
    ),
    (
        "unknown session",
        json.dumps(
            {"v": 1, "t": "s", "sid": 123456789, "token": "t", "pn": 1, "p": "x" * 300}
        ).encode(),
        "session_unknown",
        None,
    ),
)


@pytest.mark.parametrize(("case", "data", "code", "rid"), OUTSIDE, ids=[c[0] for c in OUTSIDE])
async def test_each_bad_datagram_is_answered_with_its_documented_code(
    tmp_path: Path, case: str, data: bytes, code: str, rid: str | None
) -> None:
    async with daemon(tmp_path) as open_raw:
        raw = await open_raw()
        with trio.fail_after(5):
            (reply,) = await raw.ask(data)
    assert reply["t"] == "error" and reply["v"] == 1
    assert reply["code"] == code, case
    assert reply["rid"] == rid  # a request read that far is named, so the client can match it
    assert isinstance(reply["message"], str) and reply["message"].endswith(".")
    if code == "session_unknown":
        assert reply["sid"] == 123456789


async def test_every_registration_and_login_error_code(tmp_path: Path) -> None:
    config = ServerConfig(register_burst=2, register_rate=0.0001, login_free_failures=1)
    login = {"v": 1, "t": "login", "name": "alice", "password": PASSWORD}
    async with daemon(tmp_path, config) as open_raw:
        raw = await open_raw()
        with trio.fail_after(20):
            assert (await register(raw, "alice"))["t"] == "registered"
            codes = {
                "name_taken": await register(raw, "ALICE"),
                "invalid_name": await register(raw, "no spaces"),
                "password_too_short": await register(raw, "bob", "short"),
                "password_too_long": await register(raw, "bob", "p" * 257),
            }
            # Refused names cost no registration; the second good one spends the burst.
            assert (await register(raw, "bob"))["t"] == "registered"
            codes["too_many_registrations"] = await register(raw, "carol")
            codes["unknown_user"] = await raw.request({**login, "rid": "l1", "name": "nobody"})
            codes["wrong_password"] = await raw.request({**login, "rid": "l2", "password": "x" * 9})
            codes["throttled"] = await raw.request({**login, "rid": "l3"})
    async with daemon(tmp_path / "other", ServerConfig(max_sessions_per_address=1)) as open_raw:
        raw = await open_raw()
        with trio.fail_after(20):
            await register(raw, "alice")
            welcome = await raw.request({**login, "rid": "l4"})
            assert welcome["t"] == "welcome"
            codes["too_many_sessions"] = await raw.request({**login, "rid": "l5"})
    for code, reply in codes.items():
        assert (reply["t"], reply["code"]) == ("error", code), reply
        assert reply["rid"] is not None
    for code in ("too_many_registrations", "throttled"):
        assert codes[code]["retry_after"] > 0
    assert welcome["unread"] == 0 and welcome["name"] == "alice"
    assert 1 <= welcome["sid"] <= 2**53 - 1 and len(welcome["token"]) <= 64


async def test_a_request_sent_again_is_answered_pending_then_with_the_same_answer(
    tmp_path: Path,
) -> None:
    async with daemon(tmp_path) as open_raw:
        raw = await open_raw()
        request = json.dumps(
            {
                "v": 1,
                "t": "register",
                "rid": "once",
                "name": "dora",
                "password": PASSWORD,
                "padding": "x" * 300,
            }
        ).encode()
        with trio.fail_after(10):
            await raw.sock.send(request)
            await raw.sock.send(request)  # at once: the first is still being hashed
            replies = await raw.collect(3.0)
            again = await raw.ask(request)
    kinds = [r["t"] for r in replies]
    assert kinds == ["pending", "registered"]
    assert again == [replies[-1]]


# --- sections 6 and 8: errors and answers inside a session ---------------------------------


async def test_every_session_error_code(tmp_path: Path) -> None:
    config = ServerConfig(message_burst=1, message_rate=0.5, mailbox_limit=1)
    async with daemon(tmp_path, config) as open_raw:
        with trio.fail_after(20):
            alice = await logged_in(open_raw, "alice")
            await (await open_raw()).request(
                {"v": 1, "t": "register", "rid": "b", "name": "bob", "password": PASSWORD}
            )
            checks = {
                "bad_request": await alice.send(b"[1, 2, 3]"),
                "bad_request ": await alice.send(b'{"t": "dance"}'),
                "bad_field": await alice.send(b'{"t": "say", "text": 42, "cid": "c1"}'),
                "text_empty": await alice.send(wire.Say(text="", cid="c2")),
                "text_too_long": await alice.send(wire.Say(text="é" * 251, cid="c3")),
                "unknown_user": await alice.send(wire.Whisper(to="nobody", text="hi", cid="c4")),
            }
            assert (await alice.send(wire.Whisper(to="bob", text="1", cid="c5"))).error is None
            checks["mailbox_full"] = await alice.send(wire.Whisper(to="bob", text="2", cid="c6"))
            checks["rate_limited"] = await alice.send(wire.Say(text="fast", cid="c7"))
    for code, handle in checks.items():
        errors = [f for f in alice.answers(handle.seq) if f["t"] == "error"]
        assert len(errors) == 1, (code, alice.answers(handle.seq), handle.error)
        (error,) = errors
        assert error["code"] == code.strip(), (code, error)
        assert error["re"] == handle.seq
    (limited,) = alice.answers(checks["rate_limited"].seq)
    assert 0 < limited["retry_after"] <= 2.0


async def test_a_message_is_answered_ok_and_shown_with_every_documented_field(
    tmp_path: Path,
) -> None:
    async with daemon(tmp_path) as open_raw:
        with trio.fail_after(20):
            alice = await logged_in(open_raw, "alice")
            bob = await logged_in(open_raw, "bob")
            said = await alice.send(wire.Say(text="你好 🙂", cid="c-say"))
            whispered = await alice.send(wire.Whisper(to="BOB", text="psst", cid="c-pm"))
            mine = await alice.send(wire.Whisper(to="alice", text="note", cid="c-self"))
            await bob.settle()
    (ok,) = alice.answers(said.seq)
    assert set(ok) == {"t", "re", "id", "ts"} and ok["ts"].endswith("Z")
    (ok_pm,) = alice.answers(whispered.seq)
    assert ok_pm["to"] == "bob"  # the recipient's name as the daemon keeps it
    (ok_self,) = alice.answers(mine.seq)
    assert ok_self["to"] == "alice"
    msg = next(f for f in bob.frames if f["t"] == "msg")
    assert msg == {
        "t": "msg",
        "id": ok["id"],
        "ts": ok["ts"],
        "from": "alice",
        "text": "你好 🙂",
        "cid": "c-say",
    }  # `history` left out: false
    pm = next(f for f in bob.frames if f["t"] == "pm")
    assert (pm["from"], pm["to"], pm["text"], pm["cid"]) == ("alice", "bob", "psst", "c-pm")
    # A whisper to yourself reaches your other sessions only: not back as a `pm`.
    assert not [f for f in alice.frames if f["t"] == "pm"]


async def test_history_answers_oldest_first_before_the_given_id(tmp_path: Path) -> None:
    async with daemon(tmp_path) as open_raw:
        with trio.fail_after(20):
            alice = await logged_in(open_raw, "alice")
            ids = []
            for n in range(6):
                handle = await alice.send(wire.Say(text=f"m{n}", cid=f"c{n}"))
                ids.append(handle.result.id)
            page = await alice.send(wire.HistoryRequest(limit=3, before=ids[4]))
            default = await alice.send(b'{"t": "history"}')
    shown = [f for f in alice.answers(page.seq) if f["t"] == "msg"]
    assert [m["id"] for m in shown] == ids[1:4]  # the newest 3 before id 5, oldest first
    assert all(m["history"] is True and m["re"] == page.seq for m in shown)
    assert alice.answers(page.seq)[-1] == {"t": "ok", "re": page.seq, "count": 3}
    # Without `limit` and `before`: the latest 20 so far (here all 6).
    assert alice.answers(default.seq)[-1]["count"] == 6


async def test_login_sends_history_then_ready_and_leave_has_its_default_reason(
    tmp_path: Path,
) -> None:
    async with daemon(tmp_path) as open_raw:
        with trio.fail_after(20):
            alice = await logged_in(open_raw, "alice")
            await alice.send(wire.Say(text="before bob", cid="c1"))
            bob = await logged_in(open_raw, "bob")
            who = await bob.send(wire.Who())
            await alice.settle()
            await bob.send(wire.Logout())
            await alice.settle()
    assert [f["t"] for f in bob.frames[:2]] == ["msg", "ready"]
    assert bob.frames[1] == {"t": "ready", "count": 1}  # `more` left out: false
    names = [f for f in bob.answers(who.seq) if f["t"] == "names"]
    assert names == [{"t": "names", "re": who.seq, "names": ["alice", "bob"]}]
    assert bob.answers(who.seq)[-1] == {"t": "ok", "re": who.seq, "count": 2}
    (join,) = [f for f in alice.frames if f["t"] == "join"]
    assert set(join) == {"t", "name", "ts"} and join["name"] == "bob"
    (leave,) = [f for f in alice.frames if f["t"] == "leave"]
    assert leave.get("reason", "quit") == "quit"
    # The ok of the logout is acknowledged by the client after the session ended: that
    # acknowledgement gets no `session_unknown`.
    assert not [r for r in bob.raw.received if r.get("code") == "session_unknown"]


class FailingWrites(SqliteStore):
    """A store whose disk refuses every write after the accounts are in."""

    refuse = False

    def write(self, ops: Sequence[StoreOp]) -> list[StoreOp]:
        if self.refuse and any(isinstance(op, Message) for op in ops):
            return list(ops)
        return super().write(ops)

    def load(self, window: int) -> Snapshot:
        return super().load(window)


async def test_a_message_that_cannot_be_stored_is_refused_with_storage_failed(
    tmp_path: Path,
) -> None:
    store = FailingWrites.open(tmp_path / "chat.db")
    assert isinstance(store, FailingWrites)
    async with daemon(tmp_path, storage=store) as open_raw:
        with trio.fail_after(20):
            alice = await logged_in(open_raw, "alice")
            store.refuse = True
            said = await alice.send(wire.Say(text="lost?", cid="c1"))
    (error,) = alice.answers(said.seq)
    assert (error["t"], error["code"]) == ("error", "storage_failed")
