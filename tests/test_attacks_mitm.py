"""A man in the middle with a key of its own: an impostor daemon at the address a client
knows, or a relay that answers with its own key.

A client that trusts key K refuses a daemon that shows K' (`KeyChanged`; exit code 15
from `trio-chat login`), before a password is typed or sent. The first contact is trust
on first use: the key met is remembered in `known_servers`, and from then on that key,
and only it, is accepted for that address.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
import trio
import trio.socket

from trio_chat import register, trust_server, wire
from trio_chat.cli import ExitCode
from trio_chat.client_protocol import ClientConfig, ClientConnection
from trio_chat.engine import ServerConfig
from trio_chat.errors import Banned, KeyChanged, KeyUnproven, ServerUnreachable
from trio_chat.keys import KeyFileError, KnownServers
from trio_chat.noise import fingerprint
from trio_chat.secure import DaemonKeys
from trio_chat.testing.attacks import TO_DAEMON, Tap, start_daemon
from trio_chat.testing.daemon import CLI, cli_env
from trio_chat.testing.driver import PASSWORD, EngineDriver

ALICE = ("10.0.0.1", 4000)


def test_a_client_that_trusts_one_key_refuses_a_daemon_with_another() -> None:
    impostor = EngineDriver()
    impostor.add_account("alice")
    impostor.engine.take_notes()
    trusted = DaemonKeys.generate().public
    client = ClientConnection(trusted, "alice", PASSWORD, config=ClientConfig(reconnect=False))
    client.start(impostor.now)
    sent: list[bytes] = []
    for _round in range(3):
        for data in client.datagrams_to_send(impostor.now):
            sent.append(data)
            for reply in impostor.receive(data, ALICE):
                client.receive_datagram(reply, impostor.now)
        impostor.now += 0.3
        client.handle_timer(impostor.now)
    assert client.closed and isinstance(client.failure, KeyChanged)
    message = client.failure.message
    assert fingerprint(trusted) in message and fingerprint(impostor.server_key) in message
    # It sent one handshake message, encrypted to the key it trusts, and nothing else:
    # the impostor could not read it and never saw a login.
    assert [d[0] for d in sent] == [wire.INIT]
    assert not any(PASSWORD.encode() in d for d in sent)
    stats = impostor.engine.stats
    assert stats["bad_handshakes"] == 1 and len(impostor.engine.sessions) == 0
    assert impostor.engine.take_notes() == []


async def _login(port: int, *options: str) -> tuple[int, str]:
    """`trio-chat login` as a person runs it; its exit status and standard error."""
    result = await trio.run_process(
        [*CLI, "login", "--name", "alice", *options],
        env=cli_env(port, TRIO_CHAT_PASSWORD=PASSWORD),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return result.returncode, result.stderr.decode()


async def test_first_contact_is_remembered_and_an_impostor_there_later_is_refused(
    tmp_path: Path, own_data_folder: Path
) -> None:
    config = ServerConfig(register_burst=100)
    known = KnownServers()
    assert known.path.is_relative_to(own_data_folder) and not known.path.exists()
    with trio.fail_after(15):
        async with trio.open_nursery() as real_one:
            (host, port), engine = await start_daemon(real_one, tmp_path / "real.db", config)
            real_key = engine.keys.public
            # Registered with the key given: nothing is remembered by that.
            await register(host, port, "alice", PASSWORD, server_key=real_key)
            assert not known.path.exists()
            code, err = await _login(port)
            assert code == ExitCode.OK, err
            assert "trusting it from now on" in err and fingerprint(real_key) in err
            label = f"{host}:{port}"
            assert known.path.read_text() == f"{label} {base64.b64encode(real_key).decode()}\n"
            code, err = await _login(port)
            assert code == ExitCode.OK and "trusting" not in err
            real_one.cancel_scope.cancel()
        # Someone else's daemon, with its own key, now answers at that address.
        async with trio.open_nursery() as impostor_one:
            _same, fake = await start_daemon(impostor_one, tmp_path / "fake.db", config, port)
            assert fake.keys.public != real_key
            code, err = await _login(port)
            assert code == 15 and ExitCode(code) is ExitCode.KEY_CHANGED
            assert fingerprint(fake.keys.public) in err and fingerprint(real_key) in err
            assert "someone may be in the middle" in err
            # Refused on the key alone: no handshake, no password, reached the impostor.
            assert fake.stats["keys_sent"] == 1
            assert fake.stats["handshakes"] == fake.stats["bad_handshakes"] == 0
            # A fingerprint given on the command line is checked the same way.
            code, err = await _login(port, "--server-key", fingerprint(real_key))
            assert code == ExitCode.KEY_CHANGED
            assert fake.stats["keys_sent"] == 2 and fake.stats["handshakes"] == 0
            impostor_one.cancel_scope.cancel()
    # Nothing about the impostor was remembered.
    assert known.get(host, port) == real_key


async def _forging_keys(
    relay: trio.socket.SocketType, daemon: tuple[str, int], forged: bytes | None
) -> None:
    """On the path, for one client at a time: every datagram goes on as it is, but for
    the daemon's `KEY` answering a `KEY_REQUEST`, which comes back carrying `forged`, as
    if someone had answered the request first (the daemon's `KEY` answering a handshake
    it cannot read passes). With `forged` None, nothing but `KEY_REQUEST`s reaches the
    daemon: a daemon that shows its key and answers no handshake."""
    towards = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await towards.bind(("127.0.0.1", 0))
    await towards.connect(daemon)
    client: tuple[str, int] | None = None
    asked = b""

    async def back() -> None:
        while True:
            data = await towards.recv(2048)
            if data[:1] == bytes((wire.KEY,)) and asked == bytes((wire.KEY_REQUEST,)) and forged:
                data = wire.key_datagram(forged)
            if client is not None:
                await relay.sendto(data, client)

    with towards:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(back)
            while True:
                data, client = await relay.recvfrom(2048)
                asked = data[:1]
                if forged is not None or asked == bytes((wire.KEY_REQUEST,)):
                    await towards.send(data)


async def test_a_forged_key_at_first_contact_is_not_remembered(
    tmp_path: Path, own_data_folder: Path
) -> None:
    """A `KEY` proves nothing: one forged by someone on the path at first contact was
    remembered, and the real daemon refused as an impostor ever after. The key is kept
    only once a handshake under it succeeds."""
    known = KnownServers()
    forged = DaemonKeys.generate().public
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            (host, port), engine = await start_daemon(nursery, tmp_path / "chat.db")
            relay = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            await relay.bind(("127.0.0.1", 0))
            relayed = relay.getsockname()[1]
            nursery.start_soon(_forging_keys, relay, (host, port), forged)
            with pytest.raises(KeyUnproven) as refused:
                await trust_server(host, relayed)
            assert str(refused.value) == (
                f"The daemon at {host}:{relayed} showed the key {fingerprint(forged)} and then "
                "answered the handshake with another (someone on the way may have answered in "
                "its place); nothing was remembered: try again, and compare the fingerprint "
                "shown with the one its operator publishes."
            )
            assert known.get(host, relayed) is None
            # Nor by `trio-chat trust --yes`, which takes the key it is shown.
            told = await trio.run_process(
                [*CLI, "trust", "--host", host, "--port", str(relayed), "--yes"],
                env=cli_env(relayed),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            assert told.returncode == ExitCode.KEY_CHANGED, told.stderr
            assert b"answered the handshake with another" in told.stderr
            assert known.get(host, relayed) is None
            # Without the forger, the daemon's own key is proven, and kept.
            trusted = await trust_server(host, port)
            assert trusted.new and known.get(host, port) == engine.keys.public
            # A daemon that shows its key and answers no handshake is not reached.
            silent = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            await silent.bind(("127.0.0.1", 0))
            nursery.start_soon(_forging_keys, silent, (host, port), None)
            with pytest.raises(ServerUnreachable) as unanswered:
                await trust_server(host, silent.getsockname()[1], config=ClientConfig(timeout=1.0))
            assert "showed its key but did not answer a handshake under it" in str(unanswered.value)
            assert engine.stats["handshakes"] >= 1
            nursery.cancel_scope.cancel()


async def test_a_forged_key_whose_handshake_is_refused_is_not_remembered(
    own_data_folder: Path,
) -> None:
    """Someone who answers the key request first, and then the handshake under their key
    with a refusal (a `REFUSED` proves no more than a `KEY`), gets nothing remembered: the
    refusal is the error, as a handshake answered with another key is."""
    forged = DaemonKeys.generate().public
    known = KnownServers()
    with trio.fail_after(10):
        fake = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        await fake.bind(("127.0.0.1", 0))
        port = fake.getsockname()[1]

        async def answer_all() -> None:
            while True:
                data, client = await fake.recvfrom(2048)
                if data[:1] == bytes((wire.KEY_REQUEST,)):
                    await fake.sendto(wire.key_datagram(forged), client)
                else:
                    await fake.sendto(wire.refused_datagram("banned", "Banned here."), client)

        with fake:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_all)
                with pytest.raises(Banned, match=r"^Banned here\.$"):
                    await trust_server("127.0.0.1", port)
                nursery.cancel_scope.cancel()
    assert known.get("127.0.0.1", port) is None


async def test_the_channel_that_proved_a_key_is_closed_at_once(tmp_path: Path) -> None:
    """The handshake that proves a key met for the first time opens a channel no one logs
    in on: it is closed with a goodbye, not left to the daemon to time out."""
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            (host, port), engine = await start_daemon(nursery, tmp_path / "chat.db")
            tap = Tap((host, port))
            tapped = await nursery.start(tap.run)
            trusted = await trust_server(*tapped)
            assert trusted.new and trusted.key == engine.keys.public
            await tap.wait_until(lambda: bool(tap.recorded(TO_DAEMON, "DATA")))
            nursery.cancel_scope.cancel()


async def test_a_key_given_as_bytes_must_be_the_32_of_a_key() -> None:
    """Bytes that cannot be a key (a private and public key together, a truncated copy)
    are said to be no key, before anything is sent."""
    for size in (0, 31, 33, 64):
        with pytest.raises(KeyFileError, match=f"^{size} bytes are not a daemon key: "):
            await trust_server("127.0.0.1", 9, b"k" * size)
