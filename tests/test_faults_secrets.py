"""Secrets: passwords never reach logs, errors or reprs; the database is its owner's only;
session tokens are compared in constant time.
"""

from __future__ import annotations

import ast
import functools
import hmac
import logging
import sqlite3
import stat
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pytest
import trio

import trio_chat.engine
from trio_chat import (
    ChatError,
    ClientConfig,
    PasswordTooShort,
    ServerUnreachable,
    StorageFailed,
    UnknownUser,
    WrongPassword,
    connect,
    register,
    wire,
)
from trio_chat.engine import CheckPassword, HashPassword
from trio_chat.records import Message, Snapshot, StoreOp
from trio_chat.server import serve
from trio_chat.store import SqliteStore
from trio_chat.testing.daemon import DaemonProcess
from trio_chat.testing.driver import EngineDriver, Peer

PASSWORD = "Quartz-Zebra-Fjord-9137"
WRONG = "Lantern-Mosaic-Tundra-2468"
SHORT = "Fig-42"


async def test_the_daemon_never_logs_a_password_even_at_debug_level(tmp_path: Path) -> None:
    database = tmp_path / "chat.db"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, database, log_level="debug")
            host, port = await daemon.start()
            await register(host, port, "alice", PASSWORD)
            with pytest.raises(WrongPassword):
                async with connect(host, port, "alice", WRONG):
                    pass
            async with connect(host, port, "alice", PASSWORD) as chat:
                await chat.say("hello")
            # Malformed requests whose errors might quote what they carry.
            sock = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
            await sock.connect((host, port))
            for datagram in (
                b'{"v":1,"t":"login","rid":5,"name":"alice","password":"%s"}' % PASSWORD.encode(),
                b'{"v":1,"t":"register","rid":"r","name":"x","password":["%s"]}' % WRONG.encode(),
                b'{"v":1,"t":"login","rid":"r","name":"alice","password":"%s"}'
                % (PASSWORD * 50).encode(),
                b'{"v":1,"t":"register","rid":"r2","name":"no spaces","password":"%s"}'
                % PASSWORD.encode(),
            ):
                await sock.send(datagram)
                reply = wire.decode_server_datagram_untrusted(await sock.recv(2048))
                assert isinstance(reply, wire.ErrorReply)
                assert PASSWORD not in reply.message and WRONG not in reply.message
            sock.close()
            assert await daemon.stop() == 0
    log = daemon.text
    assert "listening" in log
    assert PASSWORD not in log and WRONG not in log
    # Nor is it on disk: only its argon2id hash is.
    assert PASSWORD.encode() not in _every_byte_under(tmp_path)
    with sqlite3.connect(database) as db:
        (password_hash,) = db.execute("SELECT password_hash FROM accounts").fetchone()
    assert password_hash.startswith("$argon2id$")


def _every_byte_under(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in directory.iterdir() if path.is_file())


async def test_client_errors_never_carry_the_password(tmp_path: Path) -> None:
    config = ClientConfig(timeout=0.5)
    errors: list[ChatError] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(serve, "127.0.0.1", 0, tmp_path / "chat.db")
            await register(host, port, "alice", PASSWORD)
            attempts = [
                register(host, port, "bob", SHORT),
                connect(host, port, "alice", WRONG).__aenter__(),
                connect(host, port, "alice", SHORT).__aenter__(),
                connect(host, port, "nobody", PASSWORD).__aenter__(),
                register(host, port + 1 if port < 65535 else 1, "carol", PASSWORD, config=config),
            ]
            for attempt in attempts:
                with pytest.raises(ChatError) as caught:
                    await attempt
                errors.append(caught.value)
            nursery.cancel_scope.cancel()
    kinds = [type(error) for error in errors]
    assert kinds == [PasswordTooShort, WrongPassword, WrongPassword, UnknownUser, ServerUnreachable]
    for error in errors:
        for text in (str(error), repr(error), error.message):
            assert PASSWORD not in text and WRONG not in text and SHORT not in text


def test_reprs_of_what_carries_a_password_hide_it() -> None:
    carriers: Sequence[object] = (
        wire.Register(rid="r", name="alice", password=PASSWORD),
        wire.Login(rid="l", name="alice", password=PASSWORD),
        HashPassword(1, PASSWORD),
        CheckPassword(2, "$argon2id$...", PASSWORD),
    )
    for carrier in carriers:
        assert PASSWORD not in repr(carrier) and PASSWORD not in str(carrier)
    # Hiding it from reprs does not hide it from the wire.
    encoded = wire.encode(carriers[1])
    assert PASSWORD.encode() in encoded
    decoded = wire.decode_client_datagram_untrusted(encoded)
    assert isinstance(decoded, wire.Login) and decoded.password == PASSWORD


class _BrokenDisk:
    """A store whose writes fail, as a full or broken disk would."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner

    def load(self, window: int) -> Snapshot:
        return self.inner.load(window)

    def write(self, ops: Sequence[StoreOp]) -> list[StoreOp]:
        raise sqlite3.OperationalError("disk I/O error")

    def history(self, account_id: int, before: int | None, limit: int) -> list[Message]:
        return []

    def close(self) -> None:
        self.inner.close()


async def test_a_failing_disk_logs_one_line_without_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    storage = _BrokenDisk(SqliteStore.open(tmp_path / "chat.db"))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            broken = functools.partial(serve, storage=storage)
            host, port = await nursery.start(broken, "127.0.0.1", 0)
            with pytest.raises(StorageFailed) as caught:
                await register(host, port, "alice", PASSWORD)
            assert caught.value.message == "The server could not save this; try again later."
            nursery.cancel_scope.cancel()
    (failure,) = [r for r in caplog.records if "could not write" in r.getMessage()]
    assert "disk I/O error" in failure.getMessage() and failure.exc_info is None
    assert "Traceback" not in caplog.text
    assert PASSWORD not in caplog.text


async def test_the_database_and_its_journal_are_readable_by_their_owner_only(
    tmp_path: Path,
) -> None:
    database = tmp_path / "new-directory" / "chat.db"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, database)
            host, port = await daemon.start()
            await register(host, port, "alice", PASSWORD)
            # While the daemon runs, its write-ahead log and shared memory exist too.
            files = [database, database.with_name("chat.db-wal"), database.with_name("chat.db-shm")]
            modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in files}
            assert await daemon.stop() == 0
    assert modes == {"chat.db": 0o600, "chat.db-wal": 0o600, "chat.db-shm": 0o600}
    assert stat.S_IMODE(database.parent.stat().st_mode) == 0o700


def test_session_tokens_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # what auth.tokens_equal calls
    driver = EngineDriver()
    driver.add_account("alice", "alice-password")
    alice = Peer(driver, "alice", "alice-password", ("10.0.0.1", 1))
    token = alice.token.encode()
    alice.send()
    assert (token, token) in compared
    forged = b'{"v":1,"t":"s","sid":%d,"token":"%s","pn":99}' % (alice.sid, b"x" * len(token))
    driver.receive(forged, ("10.0.0.1", 1))
    assert (b"x" * len(token), token) in compared
    # The path challenge after an address change is compared the same way.
    alice.address = ("10.0.0.9", 9)
    alice.link.send(wire.encode(wire.Ping()))
    for datagram in alice.link.datagrams_to_send(driver.now):
        alice.take(driver.receive(datagram, alice.address))
    challenge = driver.engine.sessions[alice.sid].challenge
    assert challenge is not None
    alice.settle()
    assert driver.engine.sessions[alice.sid].validated
    assert (challenge.encode(), challenge.encode()) in compared


def test_the_engine_never_compares_a_secret_with_an_operator() -> None:
    secrets = {"token", "challenge", "response"}
    engine = Path(trio_chat.engine.__file__).parent
    trees = [ast.parse(path.read_text()) for path in sorted(engine.glob("*.py"))]
    assert len(trees) > 5  # every module of the engine package
    for node in (node for tree in trees for node in ast.walk(tree)):
        if isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
        ):
            names = {
                part.attr if isinstance(part, ast.Attribute) else getattr(part, "id", None)
                for part in (node.left, *node.comparators)
            }
            assert not names & secrets, ast.unparse(node)


@pytest.mark.parametrize("form", ["NFC", "NFD", "NFKC"])
def test_a_password_logs_in_whatever_unicode_form_it_is_typed_in(
    form: Literal["NFC", "NFD", "NFKC"],
) -> None:
    """Keyboards and input methods differ in how they compose "é"; the password must not."""
    password = "café-crème-brûlée"
    driver = EngineDriver()
    driver.add_account("zoe", unicodedata.normalize("NFD", password))
    typed = unicodedata.normalize(form, password)
    reply = driver.request(wire.Login(rid=form, name="zoe", password=typed), ("10.0.0.1", 1))
    assert isinstance(reply, wire.Welcome)
    wrong = driver.request(
        wire.Login(rid="w", name="zoe", password="cafe-creme-brulee"), ("10.0.0.1", 1)
    )
    assert isinstance(wrong, wire.ErrorReply) and wrong.code == "wrong_password"
