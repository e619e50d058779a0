"""Secrets: passwords, tickets and keys never reach logs, errors or reprs; the files that
hold secrets are their owner's only; secrets are compared in constant time; a password
logs in whatever Unicode form it is typed in.
"""

from __future__ import annotations

import ast
import base64
import errno
import fcntl
import functools
import hmac
import json
import logging
import os
import re
import resource
import secrets
import sqlite3
import stat
import threading
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
    control,
    register,
    wire,
)
from trio_chat.client_protocol import ClientConnection
from trio_chat.engine import CheckPassword, HashPassword, ServerConfig
from trio_chat.engine.password_change import PasswordChange
from trio_chat.errors import KeyChanged
from trio_chat.keys import KeyFileError, KnownServers, address_label, daemon_keys, key_paths
from trio_chat.noise import generate_keypair
from trio_chat.records import Message, PasswordSet, Snapshot, StoreOp
from trio_chat.secure import (
    Cookies,
    DaemonKeys,
    SecureError,
    Ticket,
    derive_key,
    initiate,
    password_mark,
    respond,
)
from trio_chat.server import serve
from trio_chat.store import SqliteStore
from trio_chat.store_files import StorageError
from trio_chat.testing.attacks import bound_socket, drive, leaks
from trio_chat.testing.daemon import DaemonProcess
from trio_chat.testing.driver import EngineDriver, Peer
from trio_chat.testing.links import channel_pair

PASSWORD = "Quartz-Zebra-Fjord-9137"
WRONG = "Lantern-Mosaic-Tundra-2468"
SHORT = "Fig-42"
TRIO_CHAT = Path(trio_chat.engine.__file__).parent.parent


def key_secrets(database: Path) -> dict[str, bytes | str]:
    """The daemon's secrets as its key files hold them, and what is derived from them."""
    static_path, ticket_path = key_paths(database)
    static = base64.b64decode(static_path.read_text())
    return {
        "static key": static,
        "ticket key": base64.b64decode(ticket_path.read_text()),
        "reset secret": derive_key(static, b"trio-chat reset tokens"),
    }


async def _resume(
    host: str, port: int, server_key: bytes, ticket: str, password: str
) -> tuple[list[str] | None, ChatError | None]:
    """Log in with `ticket` (falling back to `password`) and ask `who`: the names, or why
    the login failed."""
    connection = ClientConnection(server_key, "alice", password, config=ClientConfig(timeout=2))
    connection.ticket = ticket
    with await bound_socket() as sock:
        await sock.connect((host, port))
        connection.start(trio.current_time())
        await drive(sock, connection, lambda: connection.ready or connection.closed)
        if connection.closed:
            return None, connection.failure
        who = connection.who()
        await drive(sock, connection, lambda: who.done or connection.closed)
        connection.close()
        await drive(sock, connection, lambda: True)
    return who.result, who.error


async def _raw_frames(host: str, port: int, server_key: bytes, frames: list[bytes]) -> list[str]:
    """Send frames on a channel that never logs in; return the daemon's error messages."""
    connection = ClientConnection(server_key, config=ClientConfig(timeout=2))
    errors: list[str] = []
    connection.trace = lambda frame: errors.extend(
        [frame.message] if isinstance(frame, wire.ErrorFrame) else []
    )
    with await bound_socket() as sock:
        await sock.connect((host, port))
        connection.start(trio.current_time())
        await drive(sock, connection, lambda: connection.ready or connection.closed)
        link = connection.link
        assert link is not None
        for frame in frames:
            link.send(frame)
        await drive(sock, connection, lambda: len(errors) == len(frames) or connection.closed)
        connection.close()
        await drive(sock, connection, lambda: True)
    return errors


async def test_the_daemon_log_at_debug_level_holds_no_password_ticket_or_key(
    tmp_path: Path, own_data_folder: Path
) -> None:
    database = tmp_path / "chat.db"
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, database, "--log-format", "json", log_level="debug")
            host, port = await daemon.start()
            await register(host, port, "alice", PASSWORD)
            with pytest.raises(WrongPassword):
                async with connect(host, port, "alice", WRONG):
                    pass
            async with connect(host, port, "alice", PASSWORD) as chat:
                await chat.say("hello")
                ticket = chat.connection.ticket
                key = chat.connection.server_key
            assert ticket
            names, failure = await _resume(host, port, key, ticket, WRONG)  # no password
            assert failure is None and names == ["alice"]
            tampered = ticket[:-2] + ("A" if ticket[-2] != "A" else "B") + ticket[-1]
            names, failure = await _resume(host, port, key, tampered, WRONG)
            assert isinstance(failure, WrongPassword)  # the ticket refused, then the password
            # Malformed requests whose errors might quote what they carry.
            messages = await _raw_frames(
                host,
                port,
                key,
                [
                    b'{"t":"login","name":"alice","password":["%s"]}' % PASSWORD.encode(),
                    b'{"t":"login","name":"alice","password":"%s"}' % (PASSWORD * 35).encode(),
                    b'{"t":"register","rid":"r","name":"no spaces","password":"%s"}'
                    % PASSWORD.encode(),
                    b'{"t":"resume","ticket":"%s"}' % (ticket * 3).encode(),
                    b'{"t":"resume","ticket":"%s"}' % tampered.encode(),
                    b'{"t":"say","text":"%s","cid":"c1"}' % PASSWORD.encode(),
                ],
            )
            assert len(messages) == 6
            assert leaks("\n".join(messages), {"password": PASSWORD, "ticket": ticket}) == []
            assert await daemon.stop() == 0
    log = daemon.text
    events = [json.loads(line)["event"] for line in log.splitlines()]
    for happened in ("listening", "registered", "login", "login_refused", "logout"):
        assert happened in events
    secrets: dict[str, bytes | str] = {
        "password": PASSWORD,
        "wrong password": WRONG,
        "ticket": ticket,
        "tampered ticket": tampered,
        **key_secrets(database),
    }
    assert leaks(log, secrets) == []
    # Nor is any of it on disk beyond the key files: the database keeps an argon2id hash,
    # and the client keeps only the daemon's public key.
    on_disk = _every_byte_under(tmp_path) + _every_byte_under(own_data_folder)
    assert leaks(on_disk, {"password": PASSWORD, "ticket": ticket}) == []
    with sqlite3.connect(database) as db:
        (password_hash,) = db.execute("SELECT password_hash FROM accounts").fetchone()
    assert password_hash.startswith("$argon2id$")


def _every_byte_under(directory: Path) -> bytes:
    paths = sorted(path for path in directory.rglob("*") if path.is_file())
    return b"".join(path.read_bytes() for path in paths if path.suffix not in (".key", ".tickets"))


async def test_client_errors_never_carry_the_password(tmp_path: Path) -> None:
    errors: list[ChatError] = []
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(serve, "127.0.0.1", 0, tmp_path / "chat.db")
            await register(host, port, "alice", PASSWORD)
            _private, impostor = generate_keypair()
            with trio.socket.socket(type=trio.socket.SOCK_DGRAM) as silent:
                await silent.bind(("127.0.0.1", 0))
                silent_port = silent.getsockname()[1]
                quick = ClientConfig(timeout=0.3)
                attempts = [
                    register(host, port, "bob", SHORT),
                    connect(host, port, "alice", WRONG).__aenter__(),
                    connect(host, port, "alice", SHORT).__aenter__(),
                    connect(host, port, "nobody", PASSWORD).__aenter__(),
                    connect(host, port, "alice", PASSWORD, server_key=impostor).__aenter__(),
                    register(
                        host, silent_port, "carol", PASSWORD, config=quick, server_key=impostor
                    ),
                ]
                for attempt in attempts:
                    with pytest.raises(ChatError) as caught:
                        await attempt
                    errors.append(caught.value)
            nursery.cancel_scope.cancel()
    kinds = [type(error) for error in errors]
    assert kinds == [
        PasswordTooShort,
        WrongPassword,
        WrongPassword,
        UnknownUser,
        KeyChanged,
        ServerUnreachable,
    ]
    for error in errors:
        for text in (str(error), repr(error), error.message):
            assert leaks(text, {"password": PASSWORD, "wrong": WRONG, "short": SHORT}) == []


def test_reprs_of_what_carries_a_secret_hide_it() -> None:
    driver = EngineDriver()
    driver.add_account("alice", PASSWORD)
    alice = Peer(driver, "alice", PASSWORD, ("10.0.0.1", 1))
    ticket = alice.connection.ticket
    assert ticket
    keys = driver.keys
    cookies = Cookies()
    initiation = initiate(keys.public, 7)
    mark = password_mark(alice.session.account.password_hash)
    secrets: dict[str, bytes | str] = {
        "ephemeral key": initiation.ephemeral,
        "password mark": mark,
        "password": PASSWORD,
        "ticket": ticket,
        "static key": keys.static_private,
        "reset secret": keys.reset_secret,
        "cookie secret": cookies._secret,
        "password hash": alice.session.account.password_hash,
    }
    client_channel, daemon_channel = channel_pair()
    carriers: Sequence[object] = (
        wire.Register(rid="r", name="alice", password=PASSWORD),
        wire.Login(name="alice", password=PASSWORD),
        wire.Resume(ticket=ticket),
        wire.Welcome(re=1, name="alice", ticket=ticket),
        wire.ChangePassword(old=PASSWORD, new=PASSWORD),
        wire.PasswordChanged(re=1, ticket=ticket),
        PasswordSet(1, alice.session.account.password_hash),
        PasswordChange(1, 1, ("10.0.0.1", 1), alice.session.account, PASSWORD),
        control.Request("password", "alice", alice.session.account.password_hash),
        HashPassword(1, PASSWORD),
        CheckPassword(2, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", PASSWORD),
        keys,
        keys.tickets,
        cookies,
        Ticket(1, "alice", driver.wall + 3600, mark),
        initiation,
        alice.connection,
        client_channel,
        daemon_channel,
        ServerConfig(),
        ClientConfig(),
        alice.session.account,
        alice.session,
    )
    for carrier in carriers:
        for text in (repr(carrier), str(carrier)):
            assert leaks(text, secrets) == [], text
    assert re.fullmatch(r"<Channel [0-9a-f]{8}<->[0-9a-f]{8}>", repr(client_channel))
    assert "SHA256:" in repr(keys)
    # Hiding it from reprs does not hide it from the wire.
    encoded = wire.encode(carriers[1])
    assert PASSWORD.encode() in encoded
    decoded = wire.decode_client_frame_untrusted(encoded)
    assert isinstance(decoded, wire.Login) and decoded.password == PASSWORD


def test_a_handshake_the_daemon_refuses_raises_an_error_without_its_keys() -> None:
    """An INIT made for another key fails in the daemon; what it raises (and may log) is a
    fixed sentence, with none of the daemon's secrets."""
    keys = DaemonKeys.generate()
    init = wire.parse_datagram_untrusted(initiate(DaemonKeys.generate().public, 7).datagram())
    assert isinstance(init, wire.Init)
    with pytest.raises(SecureError) as caught:
        respond(keys.static_private, init, 5, bytes(16))
    secrets: dict[str, bytes | str] = {
        "static key": keys.static_private,
        "reset secret": keys.reset_secret,
    }
    for text in (str(caught.value), repr(caught.value)):
        assert leaks(text, secrets) == [], text


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

    def mailbox(self, account_id: int) -> list[Message]:
        return []

    def sent(self, sender_id: int, cid: str) -> Message | None:
        return None

    def close(self) -> None:
        self.inner.close()


async def test_a_failing_disk_logs_one_line_without_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    storage = _BrokenDisk(SqliteStore.open(tmp_path / "chat.db"))
    # Stopped after its last commit failed, the daemon says so once it has stopped.
    stopped = pytest.RaisesGroup(StorageError, flatten_subgroups=True)
    with trio.fail_after(15), stopped as raised:
        async with trio.open_nursery() as nursery:
            broken = functools.partial(serve, storage=storage)
            host, port = await nursery.start(broken, "127.0.0.1", 0)
            with pytest.raises(StorageFailed) as caught:
                await register(host, port, "alice", PASSWORD)
            assert caught.value.message == "The server could not save this; try again later."
            nursery.cancel_scope.cancel()
    (failure,) = [r for r in caplog.records if "could not write" in r.getMessage()]
    assert "disk I/O error" in failure.getMessage() and failure.exc_info is None
    (said,) = raised.value.exceptions
    assert str(said).startswith("Stopped, but 1 change could not be written")
    assert "disk I/O error" in str(said) and PASSWORD not in str(said)
    assert "Traceback" not in caplog.text
    assert PASSWORD not in caplog.text


def test_each_database_has_key_files_of_its_own(tmp_path: Path) -> None:
    """Two databases whose names differ after their last dot, or a database named like
    a key file, never share the daemon's keys (nor the ticket key that vouches for
    accounts by number)."""
    assert key_paths(tmp_path / "chat.db") == (tmp_path / "chat.key", tmp_path / "chat.tickets")
    assert key_paths(tmp_path / "chat")[0] == tmp_path / "chat.key"
    for extension in (".db", ".sqlite", ".SQLITE", ".sqlite3", ".db3", ".DB3"):
        assert key_paths(tmp_path / f"room{extension}")[0] == tmp_path / "room.key", extension
    databases = [tmp_path / n for n in ("room.v1", "room.v2", "room.db")]
    files = [path for database in databases for path in key_paths(database)]
    assert len(set(files)) == len(files) and not set(files) & set(databases)
    for name in ("chat.key", "chat.tickets"):
        assert tmp_path / name not in key_paths(tmp_path / name)


def test_the_ticket_key_is_32_random_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # It was made as an X25519 private key, whose 5 fixed bits left it 251 of 256.
    monkeypatch.setattr(os, "urandom", lambda size: b"\xff" * size)
    daemon_keys(tmp_path / "chat.db")
    _static, tickets = key_paths(tmp_path / "chat.db")
    assert base64.b64decode(tickets.read_text()) == b"\xff" * 32


def test_a_key_file_the_disk_refused_is_not_left_half_written(tmp_path: Path) -> None:
    """A key file is there whole or not at all: one the disk refused midway (a full disk;
    here a file size limit) would be taken for a damaged key at every start after."""
    database = tmp_path / "chat.db"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (16, hard))  # a key file takes 45 bytes
    try:
        with pytest.raises(KeyFileError) as refused:
            daemon_keys(database)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert str(refused.value) == (
        f"Cannot use the key file {str(tmp_path / 'chat.key')!r}: file too large."
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == []
    keys = daemon_keys(database)  # once the disk takes it, a key is made as on a first start
    assert daemon_keys(database).static_private == keys.static_private  # kept
    for path in key_paths(database):
        assert len(base64.b64decode(path.read_text().strip(), validate=True)) == 32


def test_a_key_is_never_written_through_a_file_planted_at_its_temporary_name(
    tmp_path: Path,
) -> None:
    """Whoever could put a link at `chat.key.new` (a shared folder, a leftover) must not
    get the new key written into the file it points at, nor that file overwritten."""
    database = tmp_path / "chat.db"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    readable = elsewhere / "readable"
    readable.write_text("someone's file\n")
    readable.chmod(0o644)
    (tmp_path / "chat.key.new").symlink_to(readable)
    os.link(readable, tmp_path / "chat.tickets.new")
    keys = daemon_keys(database)
    assert readable.read_text() == "someone's file\n"
    assert stat.S_IMODE(readable.stat().st_mode) == 0o644
    static_path, ticket_path = key_paths(database)
    for path in (static_path, ticket_path):
        assert not path.is_symlink() and path.stat().st_nlink == 1
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert daemon_keys(database).static_private == keys.static_private


def test_a_key_file_with_a_character_base64_has_not_is_damaged(tmp_path: Path) -> None:
    """A key is its 44 characters of base64 and nothing else: a file, or a line of
    `known_servers`, with a stray character in it is damaged, not read past it."""
    database = tmp_path / "chat.db"
    keys = daemon_keys(database)
    static_path, _tickets = key_paths(database)
    text = static_path.read_text()
    static_path.write_text(text[:20] + "*" + text[20:])
    with pytest.raises(KeyFileError) as damaged:
        daemon_keys(database)
    assert str(damaged.value).startswith(f"The key file {str(static_path)!r} is damaged; ")
    static_path.write_text(text)
    assert daemon_keys(database).static_private == keys.static_private
    known = KnownServers(tmp_path / "known_servers")
    key = base64.b64encode(generate_keypair()[1]).decode()
    known.path.write_text(f"127.0.0.1:1600 {key[:20]}!{key[20:]}\n")
    with pytest.raises(KeyFileError, match=r"^The line for 127\.0\.0\.1:1600 in .* is damaged; "):
        known.get("127.0.0.1", 1600)


def test_a_key_file_is_synced_before_it_takes_its_place_and_its_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renamed into place before its bytes reach the disk, a key file could be found empty
    after a power cut, and the daemon refuse to start on a damaged key; the new name is
    kept only once the folder is synced. No descriptor is left open for each write."""
    done: list[str] = []
    fsync, replace = os.fsync, os.replace

    def noting_fsync(fd: int) -> None:
        done.append("sync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "sync file")
        fsync(fd)

    def noting_replace(source: str | Path, target: str | Path) -> None:
        done.append(f"rename to {Path(target).name}")
        replace(source, target)

    monkeypatch.setattr(os, "fsync", noting_fsync)
    monkeypatch.setattr(os, "replace", noting_replace)
    descriptors = len(os.listdir("/proc/self/fd"))
    daemon_keys(tmp_path / "chat.db")
    KnownServers(tmp_path / "known_servers").remember("127.0.0.1", 1600, generate_keypair()[1])
    assert len(os.listdir("/proc/self/fd")) == descriptors
    assert done == [
        step
        for name in ("chat.key", "chat.tickets", "known_servers")
        for step in ("sync file", f"rename to {name}", "sync folder")
    ]


def test_a_temporary_name_someone_took_first_is_not_written_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the temporary file's name guessed, a hard link put there (which no refusal to
    follow links stops) must not get the key written into the file it shares."""
    monkeypatch.setattr(secrets, "token_hex", lambda size: "guessed")
    readable = tmp_path / "elsewhere"
    readable.write_text("someone's file\n")
    readable.chmod(0o644)
    os.link(readable, tmp_path / "chat.key.guessed.new")
    with pytest.raises(KeyFileError) as refused:
        daemon_keys(tmp_path / "chat.db")
    assert str(refused.value) == (
        f"Cannot use the key file {str(tmp_path / 'chat.key')!r}: file exists."
    )
    assert readable.read_text() == "someone's file\n"
    assert not (tmp_path / "chat.key").exists()


def test_the_folders_made_for_keys_are_their_owners_only(tmp_path: Path) -> None:
    """The daemon's keys, and the client's `known_servers`, in folders made for them: with
    the usual umask 022 these would be readable by all, what they hold listed by anyone."""
    old_umask = os.umask(0o022)
    try:
        daemon_keys(tmp_path / "daemon" / "chat.db")
        KnownServers(tmp_path / "client" / "known_servers").remember(
            "127.0.0.1", 1600, generate_keypair()[1]
        )
    finally:
        os.umask(old_umask)
    for folder in ("daemon", "client"):
        assert stat.S_IMODE((tmp_path / folder).stat().st_mode) == 0o700, folder
    for path in (tmp_path / "daemon" / "chat.key", tmp_path / "client" / "known_servers"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


async def test_the_database_and_key_files_are_readable_by_their_owner_only(
    tmp_path: Path,
) -> None:
    database = tmp_path / "new-directory" / "chat.db"
    old_umask = os.umask(0o022)  # a usual umask: what the daemon asks for must still hold
    try:
        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:
                daemon = DaemonProcess(nursery, database)
                host, port = await daemon.start()
                await register(host, port, "alice", PASSWORD)
                # While the daemon runs, its write-ahead log and shared memory exist too.
                names = ("chat.db", "chat.db-wal", "chat.db-shm", "chat.key", "chat.tickets")
                modes = {
                    name: stat.S_IMODE(database.with_name(name).stat().st_mode) for name in names
                }
                assert await daemon.stop() == 0
    finally:
        os.umask(old_umask)
    assert modes == dict.fromkeys(names, 0o600)
    assert stat.S_IMODE(database.parent.stat().st_mode) == 0o700
    for path in key_paths(database):
        assert len(base64.b64decode(path.read_text().strip(), validate=True)) == 32


def test_secrets_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((bytes(a), bytes(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    driver = EngineDriver(ServerConfig(unproven_before_retry=0))  # cookies always
    driver.add_account("alice")
    alice = Peer(driver, "alice", address=("10.0.0.1", 1))
    assert alice.connection.ready
    # The cookie of the RETRY, checked against what the daemon computes.
    cookies = [a for a, b in compared if len(a) == len(b) == 16 and a == b]
    assert cookies, "the echoed cookie was not compared with compare_digest"
    # A RESET's token, checked by the client.
    alice.take([wire.reset_datagram(alice.sid, b"x" * 16)])
    assert any(a == b"x" * 16 and len(b) == 16 for a, b in compared)
    assert alice.connection.connected
    # The path challenge after an address change.
    alice.address = ("10.0.0.9", 9)
    alice.link.send(wire.encode(wire.Ping()))
    for datagram in alice.link.datagrams_to_send(driver.now):
        alice.take(driver.receive(datagram, alice.address))
    challenge = driver.engine.sessions[alice.sid].challenge
    assert challenge is not None
    alice.settle()
    assert driver.engine.sessions[alice.sid].validated
    assert (challenge.encode(), challenge.encode()) in compared


SECRET_NAMES = frozenset(
    {
        "token",
        "reset_token",
        "_reset_token",
        "challenge",
        "response",
        "cookie",
        "secret",
        "_secret",
        "reset_secret",
        "tag",
        "password",
        "password_hash",
        "ticket",
    }
)


def test_no_secret_is_ever_compared_with_an_operator() -> None:
    paths = [
        *sorted((TRIO_CHAT / "engine").glob("*.py")),
        *sorted((TRIO_CHAT / "client_protocol").glob("*.py")),
        *(TRIO_CHAT / name for name in ("client_handshake.py", "secure.py", "auth.py")),
        TRIO_CHAT / "keys.py",
    ]
    trees = [ast.parse(path.read_text()) for path in paths]
    assert len(trees) > 10
    compares = 0
    for node in (node for tree in trees for node in ast.walk(tree)):
        if isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
        ):
            compares += 1
            names = {
                part.attr if isinstance(part, ast.Attribute) else getattr(part, "id", None)
                for part in (node.left, *node.comparators)
            }
            assert not names & SECRET_NAMES, ast.unparse(node)
    assert compares > 20  # the walk does see the comparisons there are


@pytest.mark.parametrize("form", ["NFC", "NFD", "NFKC"])
def test_a_password_logs_in_whatever_unicode_form_it_is_typed_in(
    form: Literal["NFC", "NFD", "NFKC"],
) -> None:
    """Keyboards and input methods differ in how they compose "é"; the password must not."""
    password = "café-crème-brûlée"
    driver = EngineDriver()
    driver.add_account("zoe", unicodedata.normalize("NFD", password))
    typed = unicodedata.normalize(form, password)
    assert typed == password or form == "NFD"
    zoe = Peer(driver, "zoe", typed, ("10.0.0.1", 1))
    assert zoe.connection.ready and zoe.of_type(wire.Welcome)
    wrong = Peer(driver, "zoe", "cafe-creme-brulee", ("10.0.0.2", 1))
    assert wrong.connection.failure is not None
    assert wrong.connection.failure.code == "wrong_password"


def test_two_clients_trusting_daemons_at_once_both_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `trio-chat` commands started together (a script's, on their first use) each
    write `known_servers`, one after the other as they take its folder's lock; on a file
    system without locks the second's write may land between the first's temporary file
    and its rename, and must not take that file away and fail the first."""
    monkeypatch.setattr(fcntl, "flock", lambda fd, operation: None)  # no locks here
    path = tmp_path / "known_servers"
    first, second = generate_keypair()[1], generate_keypair()[1]
    replace = os.replace
    interleaved: list[bool] = []

    def other_command_meanwhile(source: str | Path, target: str | Path) -> None:
        if not interleaved:
            interleaved.append(True)
            KnownServers(path).remember("127.0.0.1", 2000, second)
        replace(source, target)

    monkeypatch.setattr(os, "replace", other_command_meanwhile)
    KnownServers(path).remember("127.0.0.1", 1000, first)
    assert interleaved
    assert KnownServers(path).get("127.0.0.1", 1000) == first
    assert [p.name for p in tmp_path.iterdir()] == ["known_servers"]


def test_two_commands_trusting_daemons_at_once_keep_both_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each command reads `known_servers`, adds its daemon and writes the file anew: the
    second, reading before the first wrote, would write the file without the first's key,
    and that daemon would be trusted on first use again, unseen, later."""
    path = tmp_path / "known_servers"
    first, second = generate_keypair()[1], generate_keypair()[1]
    read_entries, flock = KnownServers._entries, fcntl.flock
    first_has_read = threading.Event()
    second_is_in = threading.Condition()
    second_waits_or_is_done: list[str] = []

    def entries_read_slowly(self: KnownServers) -> dict[str, str]:
        found = read_entries(self)
        if threading.current_thread().name == "first":
            first_has_read.set()
            with second_is_in:  # the second command gets as far as it can meanwhile
                second_is_in.wait_for(lambda: bool(second_waits_or_is_done), timeout=20)
        return found

    def noting_flock(fd: int, operation: int) -> None:
        if threading.current_thread().name == "second" and operation & fcntl.LOCK_EX:
            with second_is_in:
                second_waits_or_is_done.append("waits for the lock")
                second_is_in.notify_all()
        flock(fd, operation)

    def second_command() -> None:
        first_has_read.wait(20)
        KnownServers(path).remember("127.0.0.1", 2000, second)
        with second_is_in:
            second_waits_or_is_done.append("done")
            second_is_in.notify_all()

    monkeypatch.setattr(KnownServers, "_entries", entries_read_slowly)
    monkeypatch.setattr(fcntl, "flock", noting_flock)
    other = threading.Thread(target=second_command, name="second")
    other.start()
    mine = threading.Thread(
        target=KnownServers(path).remember, args=("127.0.0.1", 1000, first), name="first"
    )
    mine.start()
    mine.join(30)
    other.join(30)
    assert second_waits_or_is_done[0] == "waits for the lock"
    assert KnownServers(path).get("127.0.0.1", 1000) == first
    assert KnownServers(path).get("127.0.0.1", 2000) == second


def test_a_folder_that_cannot_be_synced_still_gets_its_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some file systems refuse to `fsync` a directory (EINVAL): the key file is written
    and renamed by then, so that is no reason to call the write failed."""
    fsync = os.fsync

    def files_only(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", files_only)
    key = generate_keypair()[1]
    KnownServers(tmp_path / "known_servers").remember("127.0.0.1", 1000, key)
    assert KnownServers(tmp_path / "known_servers").get("127.0.0.1", 1000) == key


def test_a_daemon_is_known_by_one_name_however_its_address_is_spelt(tmp_path: Path) -> None:
    """A key trusted for `Example.COM` was not found for `example.com.`, nor one for `::1`
    for `0:0::1`: each spelling was met for the first time, trusted anew whatever key it
    showed."""
    path = tmp_path / "known_servers"
    known = KnownServers(path)
    one, other, third = (generate_keypair()[1] for _ in range(3))
    known.remember("Example.COM", 1600, one)
    known.remember("::1", 1600, other)
    for spelling in ("example.com", "example.com.", "EXAMPLE.com"):
        assert known.get(spelling, 1600) == one
    for spelling in ("0:0::1", "[::1]", "0000:0000:0000:0000:0000:0000:0000:0001"):
        assert known.get(spelling, 1600) == other
    # IPv4 as the resolver also reads it: short, hexadecimal, zero-padded (octal) parts.
    known.remember("127.0.0.1", 1600, third)
    for spelling in ("127.1", "0x7f.0.0.1", "127.000.000.001", "0x7f.1"):
        assert known.get(spelling, 1600) == third
    # And as an IPv6 address maps it (a dual-stack socket reaches 127.0.0.1 so), with a
    # scope too: the socket sets it aside for an IPv4 address.
    for spelling in ("::ffff:127.0.0.1", "[::FFFF:7f00:1]", "0:0:0:0:0:ffff:127.0.0.1"):
        assert known.get(spelling, 1600) == third
    for spelling in ("::ffff:127.0.0.1%1", "[::ffff:7f00:1%lo]"):
        assert known.get(spelling, 1600) == third
    assert known.get("::127.0.0.1", 1600) is None  # an IPv4-compatible one: another address
    assert known.get("127.000.000.010", 1600) is None  # 127.0.0.8
    known.forget("127.1", 1600)
    assert known.get("example.com", 1601) is None
    # A line written by hand, or before, in another spelling is found too, and replaced.
    path.write_text(path.read_text() + f"[0::1]:1700 {base64.b64encode(third).decode()}\n")
    assert known.get("::1", 1700) == third
    assert known.forget("0:0:0::1", 1700) and known.get("::1", 1700) is None
    # An interface's name keeps its capitals; a line that is no `HOST:PORT` stays as it is.
    known.remember("FE80::1%eth0", 1600, one)
    assert known.get("fe80::1%eth0", 1600) == one and known.get("fe80::1%ETH0", 1600) is None
    path.write_text(path.read_text() + f"fe80::2 {base64.b64encode(third).decode()}\n")
    # Written by hand: a tab between label and key, a comment after the key.
    path.write_text(path.read_text() + f"[::2]:7\t{base64.b64encode(one).decode()}  # mine\n")
    assert known.get("::2", 7) == one
    known.remember("example.org", 1600, third)
    assert "fe80::2 " in path.read_text()
    assert sorted(line.split()[0] for line in path.read_text().splitlines()) == [
        "[::1]:1600",
        "[::2]:7",
        "[fe80::1%eth0]:1600",
        "example.com:1600",
        "example.org:1600",
        "fe80::2",
    ]
    # A key trusted anew under another spelling replaces the one there, in its one line.
    known.remember("EXAMPLE.ORG.", 1600, one)
    assert known.get("example.org", 1600) == one
    assert [line.split()[0] for line in path.read_text().splitlines()].count(
        "example.org:1600"
    ) == 1
    assert "EXAMPLE" not in path.read_text()
    # A port that is no number, written by hand, is a line kept as it is, not a traceback.
    path.write_text(path.read_text() + f"example.net:http {base64.b64encode(one).decode()}\n")
    assert known.get("example.net", 80) is None
    assert address_label("[::1]", 1600) == address_label("::1", 1600) == "[::1]:1600"


def stored_addresses(database: Path) -> list[tuple[str, int]]:
    """The client addresses the database holds, read as someone with the file would."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return sorted((host, port) for host, port in db.execute("SELECT host, port FROM sessions"))


async def test_the_database_holds_a_clients_address_only_while_its_session_lasts(
    tmp_path: Path,
) -> None:
    # Kept so that a daemon restarting after a crash can tell its clients; gone as each
    # session ends, and all of them when the daemon stops cleanly.
    database = tmp_path / "chat.db"
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            config = ServerConfig(register_burst=10)
            host, port = await nursery.start(serve, "127.0.0.1", 0, database, config)
            for name in ("alice", "bob"):
                await register(host, port, name, PASSWORD)
            async with connect(host, port, "bob", PASSWORD) as bob:
                async with connect(host, port, "alice", PASSWORD) as alice:
                    await alice.say("where are you?")
                    await bob.say("here")
                    assert [h for h, _port in stored_addresses(database)] == ["127.0.0.1"] * 2
                await bob.say("alice left")  # stored after her logout was
                assert len(stored_addresses(database)) == 1
                nursery.cancel_scope.cancel()  # the daemon stops with bob in the room
    assert stored_addresses(database) == []
