"""A man in the middle with a key of its own, against daemons this script starts on
127.0.0.1, and `trio-chat login` as a person runs it.

    .venv/bin/python scripts/attack_mitm.py

1. A person logs in for the first time: the daemon's key is trusted on first use and
   remembered in `known_servers`.
2. An attacker who cannot stop the real daemon's answers but can add its own: a forged
   `KEY`, `REFUSED` or `RESPONSE` sent just before the real answer.
3. An impostor daemon, with its own key, takes over that address: `trio-chat login`
   refuses it (exit code 15) before a handshake, let alone a password, reaches it.
4. The same impostor met first, by someone who never met the real daemon: trust on first
   use trusts it (what a fingerprint given with `--server-key` prevents).

Exits 1 if a client that trusted the real key ever logs in to the impostor.
Everything goes to 127.0.0.0/8 only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from trio_chat import register, wire
from trio_chat.client_protocol import ClientConfig, ClientConnection
from trio_chat.engine import ServerConfig
from trio_chat.noise import fingerprint, generate_keypair
from trio_chat.testing.attacks import TO_DAEMON, Tap, bound_socket, drive, start_daemon
from trio_chat.testing.daemon import CLI, cli_env

PASSWORD = "Mitm-Script-Password-3"


async def login(port: int, data: Path, *options: str) -> tuple[int, str]:
    """`trio-chat login` with `data` as its data folder; exit status and standard error."""
    result = await trio.run_process(
        [*CLI, "login", "--name", "alice", *options],
        env=cli_env(port, TRIO_CHAT_PASSWORD=PASSWORD, XDG_DATA_HOME=str(data)),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return result.returncode, " ".join(result.stderr.decode().split())


async def injected(host: str, port: int, key: bytes, forge: str) -> tuple[str, float]:
    """A client through a tap that adds one forged answer to its INIT; how it ends."""
    config = ClientConfig(timeout=2.0)
    async with trio.open_nursery() as nursery:
        tap = Tap((host, port))
        _front_host, front = await nursery.start(tap.run)
        tap.holding.add(TO_DAEMON)
        client = ClientConnection(key, "alice", PASSWORD, config=config)
        with await bound_socket() as sock:
            await sock.connect((host, front))
            client.start(trio.current_time())
            started = time.perf_counter()
            async with trio.open_nursery() as inner:
                inner.start_soon(drive, sock, client, lambda: client.ready or client.closed)
                await tap.wait_until(lambda: bool(tap.held))
                (_way, init_bytes) = tap.held[0]
                init = wire.parse_datagram_untrusted(init_bytes)
                assert isinstance(init, wire.Init)
                if forge == "KEY":
                    forged = wire.key_datagram(generate_keypair()[1])
                elif forge == "REFUSED":
                    forged = wire.refused_datagram("busy", "Come back later.", 5.0)
                else:
                    forged = wire.response_datagram(init.client_index, 4242, os.urandom(64))
                await tap.inject("to_client", forged)
                await tap.release()
            seconds = time.perf_counter() - started
            outcome = "logged in" if client.ready else type(client.failure).__name__
            client.close()
            await drive(sock, client, lambda: True)
        nursery.cancel_scope.cancel()
    return outcome, seconds


async def main() -> int:
    config = ServerConfig(register_burst=100)
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as workdir:
        work = Path(workdir)
        person, stranger = work / "person", work / "stranger"
        async with trio.open_nursery() as real_one:
            (host, port), real = await start_daemon(real_one, work / "real.db", config)
            real_key = real.keys.public
            print(f"the real daemon at {host}:{port}: {fingerprint(real_key)}")
            await register(host, port, "alice", PASSWORD, server_key=real_key)
            code, err = await login(port, person)
            print(f"1. first login: exit {code}; it said: {err}")
            known = (person / "trio-chat" / "known_servers").read_text().strip()
            print(f"   known_servers: {known}")
            for forge in ("KEY", "REFUSED", "RESPONSE"):
                outcome, seconds = await injected(host, port, real_key, forge)
                print(
                    f"2. one forged {forge} added ahead of the real answer: the client "
                    f"{outcome} after {seconds:.1f} s"
                )
            real_one.cancel_scope.cancel()
        async with trio.open_nursery() as impostor_one:
            _address, fake = await start_daemon(impostor_one, work / "fake.db", config, port)
            await register(host, port, "alice", PASSWORD, server_key=fake.keys.public)
            print(f"an impostor now at {host}:{port}: {fingerprint(fake.keys.public)}")
            keys_sent, handshakes = fake.stats["keys_sent"], fake.stats["handshakes"]
            code, err = await login(port, person)
            print(f"3. the person logs in again: exit {code}; it said: {err}")
            print(
                f"   the impostor got {fake.stats['keys_sent'] - keys_sent} KEY_REQUEST and "
                f"{fake.stats['handshakes'] - handshakes} handshakes from it"
            )
            if code == 0:
                problems.append("a client that trusted the real key logged in to the impostor")
            code, err = await login(port, stranger)
            print(f"4. someone who never met the real daemon: exit {code}; it said: {err}")
            code, err = await login(port, work / "careful", "--server-key", fingerprint(real_key))
            print(f"   the same, given the real fingerprint: exit {code}")
            if code == 0:
                problems.append("a client given the real fingerprint logged in to the impostor")
            impostor_one.cancel_scope.cancel()
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(trio.run(main))
