"""Someone who reads what the daemon leaves around: its log, its files, and the reprs
that end up in tracebacks and debuggers. Against a daemon this script starts on
127.0.0.1 at log level debug.

    .venv/bin/python scripts/attack_secrets.py

A person registers, fails a login, logs in, talks, changes her password and resumes with
a ticket (and with an altered one); malformed requests put the password where errors
might quote it; the operator gives her another through the running daemon. Then
the script looks for the password, the tickets and the daemon's keys in every form
(raw, hex, base64, escaped) in the log, in the files beside the database and in the
client's data folder; shows the modes of the files that hold secrets; and looks at the
reprs of everything that holds one.

Exits 1 if a secret was found where it must not be, or a file holding one is readable by
anyone but its owner.
Everything goes to 127.0.0.0/8 only.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import stat
import sys
import tempfile
from pathlib import Path

import trio

from trio_chat import WrongPassword, connect, control, register, wire
from trio_chat.auth import hash_password
from trio_chat.client_protocol import ClientConfig, ClientConnection
from trio_chat.engine import CheckPassword, HashPassword
from trio_chat.keys import key_paths
from trio_chat.secure import derive_key
from trio_chat.testing.attacks import bound_socket, drive, leaks
from trio_chat.testing.daemon import CLI, DaemonProcess
from trio_chat.testing.driver import EngineDriver, Peer

PASSWORD = "Quartz-Zebra-Fjord-9137"
WRONG = "Lantern-Mosaic-Tundra-2468"
NEW = "Marble-Otter-Glacier-3579"
"""The password alice changes hers to, from her session."""
OPERATOR_SET = "Copper-Heron-Delta-8642"
"""The password the operator then gives her, through the running daemon's control socket."""


async def resume(host: str, port: int, key: bytes, ticket: str) -> bool:
    connection = ClientConnection(key, "alice", WRONG, config=ClientConfig(timeout=2))
    connection.ticket = ticket
    with await bound_socket() as sock:
        await sock.connect((host, port))
        connection.start(trio.current_time())
        await drive(sock, connection, lambda: connection.ready or connection.closed)
        ready = connection.ready
        connection.close()
        await drive(sock, connection, lambda: True)
    return ready


async def malformed(host: str, port: int, key: bytes, ticket: str) -> list[str]:
    connection = ClientConnection(key, config=ClientConfig(timeout=2))
    errors: list[str] = []

    def seen(frame: wire.ServerFrame) -> None:
        if isinstance(frame, wire.ErrorFrame):
            errors.append(frame.message)

    connection.trace = seen
    frames = [
        b'{"t":"login","name":"alice","password":["%s"]}' % PASSWORD.encode(),
        b'{"t":"register","rid":"r","name":"no spaces","password":"%s"}' % PASSWORD.encode(),
        b'{"t":"resume","ticket":"%s"}' % (ticket * 3).encode(),
    ]
    with await bound_socket() as sock:
        await sock.connect((host, port))
        connection.start(trio.current_time())
        await drive(sock, connection, lambda: connection.ready or connection.closed)
        assert connection.link is not None
        for frame in frames:
            connection.link.send(frame)
        await drive(sock, connection, lambda: len(errors) == len(frames) or connection.closed)
        connection.close()
        await drive(sock, connection, lambda: True)
    return errors


def every_byte(directory: Path, *, keys: bool) -> bytes:
    paths = sorted(p for p in directory.rglob("*") if p.is_file())
    return b"".join(p.read_bytes() for p in paths if keys or p.suffix not in (".key", ".tickets"))


def reprs() -> list[tuple[str, list[str]]]:
    """Each object that holds a secret, and the secrets its repr shows."""
    driver = EngineDriver()
    driver.add_account("alice", PASSWORD)
    alice = Peer(driver, "alice", PASSWORD, ("10.0.0.1", 1))
    session = driver.engine.sessions[alice.sid]
    # The driver's accounts hold a stand-in hash; a daemon's hold an argon2id hash.
    assert session.account is not None
    account = dataclasses.replace(session.account, password_hash=hash_password(PASSWORD))
    session.account = account
    secrets: dict[str, bytes | str] = {
        "password": PASSWORD,
        "password hash": account.password_hash,
        "ticket": alice.connection.ticket,
        "static key": driver.keys.static_private,
        "reset secret": driver.keys.reset_secret,
    }
    objects: dict[str, object] = {
        "Login frame": wire.Login(name="alice", password=PASSWORD),
        "Register frame": wire.Register(rid="r", name="alice", password=PASSWORD),
        "Resume frame": wire.Resume(ticket=alice.connection.ticket),
        "Welcome frame": wire.Welcome(re=1, name="alice", ticket=alice.connection.ticket),
        "ChangePassword": wire.ChangePassword(old=PASSWORD, new=PASSWORD),
        "PasswordChanged": wire.PasswordChanged(re=1, ticket=alice.connection.ticket),
        "control Request": control.Request("password", "alice", account.password_hash),
        "HashPassword": HashPassword(1, PASSWORD),
        "CheckPassword": CheckPassword(2, account.password_hash, PASSWORD),
        "DaemonKeys": driver.keys,
        "Tickets": driver.keys.tickets,
        "ClientConnection": alice.connection,
        "Channel": session.channel,
        "Account": account,
        "Session": session,
    }
    return [(label, leaks(repr(thing), secrets)) for label, thing in objects.items()]


async def main() -> int:
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as workdir:
        work = Path(workdir)
        data = work / "client-data"
        os.environ["XDG_DATA_HOME"] = str(data)
        database = work / "daemon" / "chat.db"
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, database, "--log-format", "json", log_level="debug")
            host, port = await daemon.start()
            await register(host, port, "alice", PASSWORD)
            try:
                async with connect(host, port, "alice", WRONG):
                    pass
            except WrongPassword:
                pass
            async with connect(host, port, "alice", PASSWORD) as chat:
                await chat.say("hello")
                await chat.change_password(PASSWORD, NEW)
                ticket, key = chat.connection.ticket, chat.connection.server_key
            resumed = await resume(host, port, key, ticket)
            tampered = ticket[:-2] + ("A" if ticket[-2] != "A" else "B") + ticket[-1]
            await resume(host, port, key, tampered)
            errors = await malformed(host, port, key, ticket)
            given = work / "operator-password"
            given.write_text(OPERATOR_SET + "\n")
            command = ["accounts", "password", "alice", "--password-file", str(given)]
            operator = await trio.run_process(
                [*CLI, *command, "--db", str(database)],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            given.unlink()
            print(f"the operator's `accounts password`: exit {operator.returncode}")
            if operator.returncode != 0:
                problems.append("the operator could not set the password")
            names = (
                "chat.db",
                "chat.db-wal",
                "chat.db-shm",
                "chat.key",
                "chat.tickets",
                "chat.db.control",
            )
            modes = {n: stat.S_IMODE(database.with_name(n).stat().st_mode) for n in names}
            await daemon.stop()
        static_path, ticket_path = key_paths(database)
        static = base64.b64decode(static_path.read_text().strip())
        secrets: dict[str, bytes | str] = {
            "password": PASSWORD,
            "wrong password": WRONG,
            "new password": NEW,
            "operator's password": OPERATOR_SET,
            "ticket": ticket,
            "altered ticket": tampered,
            "static key": static,
            "ticket key": base64.b64decode(ticket_path.read_text().strip()),
            "reset secret": derive_key(static, b"trio-chat reset tokens"),
        }
        log = daemon.text
        print(f"resumed with the ticket: {resumed}; the log has {len(log.splitlines())} lines")
        places = {
            "the daemon's log (debug, JSON)": log.encode(),
            "the error messages sent back": "\n".join(errors).encode(),
            "the operator's command's output": operator.stdout + operator.stderr,
            "the database and its journal": every_byte(database.parent, keys=False),
            "the client's data folder": every_byte(data, keys=True),
        }
        for place, content in places.items():
            found = leaks(content, secrets)
            print(f"  {place:32} {', '.join(found) if found else 'no secret'}")
            if found:
                problems.append(f"{', '.join(found)} in {place}")
        print("modes of the files that hold secrets:")
        for name, mode in modes.items():
            print(f"  {name:14} {mode:04o}")
            if mode & 0o077:
                problems.append(f"{name} is readable by others")
        parent_mode = stat.S_IMODE(database.parent.stat().st_mode)
        print(f"  {'its directory':14} {parent_mode:04o}")
    print("reprs (what a traceback or a debugger would show):")
    for label, shown in reprs():
        print(f"  {label:18} {'shows the ' + ', '.join(shown) if shown else 'shows no secret'}")
        if shown:
            problems.append(f"repr of {label} shows {', '.join(shown)}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(trio.run(main))
