"""An attacker on the path between a client and a daemon this script starts on 127.0.0.1.

    .venv/bin/python scripts/attack_on_path.py

A tap (`trio_chat.testing.attacks.Tap`) relays everything between Alice's client and the
daemon and records it, while Alice registers, logs in, talks, whispers, hears Bob and
later resumes with her ticket. Then the tap attacks: it holds ten of Alice's records back
and lets them through last first; replays every record it saw, both ways, and a copy of
each with one bit flipped; replays Alice's handshake after her session began, from her
address and from another; sends the daemon its own datagrams back; and, given the
daemon's key file as a thief would be later, tries to open what it recorded. Prints what
was captured, which secrets were found in it, and what each attack achieved.

Exits 1 if a secret was found, anything was shown twice or out of order, a replayed
handshake logged anyone in, or a recorded record opened.
Everything goes to 127.0.0.0/8 only.
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from pathlib import Path

import trio

from trio_chat import connect, register, wire
from trio_chat.client_protocol import ClientConnection
from trio_chat.engine import ServerConfig, ServerEngine
from trio_chat.secure import SecureError, respond
from trio_chat.testing.attacks import (
    TO_CLIENT,
    TO_DAEMON,
    Seen,
    Tap,
    bound_socket,
    drive,
    kind_of,
    leaks,
    start_daemon,
)

NAME, PASSWORD = "alice-on-the-path", "Velvet-Orbit-Cactus-5521"
BOB_PASSWORD = "Bob-Has-A-Password-7"
SAID = "the eagle lands at noon"
WHISPERED = "the vault code is 0451"
HEARD = "bob says the tide is turning"


def logged_in(engine: ServerEngine) -> int:
    return sum(1 for session in engine.sessions.values() if session.account is not None)


async def main() -> int:
    config = ServerConfig(register_burst=100, message_burst=1000, message_rate=1000.0)
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as workdir:
        async with trio.open_nursery() as nursery:
            (host, port), engine = await start_daemon(nursery, Path(workdir) / "chat.db", config)
            tap = Tap((host, port))
            _front_host, front = await nursery.start(tap.run)
            print(f"daemon at {host}:{port}; the tap listens at {host}:{front}")
            key = engine.keys.public
            await register(host, front, NAME, PASSWORD, server_key=key)
            await register(host, port, "bob", BOB_PASSWORD, server_key=key)
            alice_seen, bob_seen = Seen(), Seen()
            async with (
                connect(host, front, NAME, PASSWORD, server_key=key) as alice,
                connect(host, port, "bob", BOB_PASSWORD, server_key=key) as bob,
            ):
                nursery.start_soon(alice_seen.listen, alice)
                nursery.start_soon(bob_seen.listen, bob)
                await alice.say(SAID)
                await alice.whisper("bob", WHISPERED)
                await bob.say(HEARD)
                await alice_seen.wait_for(HEARD)
                ticket = alice.connection.ticket

                # Reordering.
                tap.holding.add(TO_DAEMON)
                receipts = [alice.say_nowait(f"r{n}") for n in range(10)]
                await tap.wait_until(lambda: len(tap.held) >= 10)
                held = await tap.release(lambda records: reversed(records))
                for receipt in receipts:
                    await receipt.wait()
                await bob_seen.wait_for("r9")
                order = [t for t in bob_seen.texts if t.startswith("r")]
                print(
                    f"reorder: {held} of Alice's records held, let through last first; Bob saw "
                    f"{' '.join(order)}"
                )
                if order != [f"r{n}" for n in range(10)]:
                    problems.append("reordered messages were shown out of order")

                # Replays and flipped bits, both ways.
                bad_records = engine.stats["bad_records"]
                to_daemon, to_client = await tap.replay_and_alter()
                await alice.say("last")
                await bob_seen.wait_for("last")
                dropped = engine.stats["bad_records"] - bad_records
                shown = Counter(bob_seen.texts) + Counter(alice_seen.texts)
                twice = sorted(text for text, count in shown.items() if count > 1)
                print(
                    f"replay: {to_daemon} records to the daemon and {to_client} to "
                    f"Alice, each again and with a bit flipped; the daemon dropped {dropped} "
                    f"(of {2 * to_daemon}); shown twice: {twice or 'nothing'}"
                )
                if twice or dropped != 2 * to_daemon:
                    problems.append("a replayed or altered record was acted on")

                # The handshake, replayed after the session began: from the client's own
                # address (through the tap) and from another.
                (init, *_others) = tap.recorded(TO_DAEMON, "INIT")
                before = logged_in(engine)
                channels = len(engine.sessions)
                replayed = engine.stats["replayed_inits"]
                responses = len(tap.recorded(TO_CLIENT, "RESPONSE"))
                await tap.inject(TO_DAEMON, init)
                answers_elsewhere: list[bytes] = []
                with await bound_socket("127.0.0.66") as other:
                    await other.sendto(init, (host, port))
                    with trio.move_on_after(1.0):  # the daemon answers in well under that
                        answers_elsewhere.append(await other.recv(2048))
                answered = len(tap.recorded(TO_CLIENT, "RESPONSE")) - responses
                dropped_inits = engine.stats["replayed_inits"] - replayed
                print(
                    f"INIT replay, twice: {dropped_inits} dropped as replays, "
                    f"{answered + len(answers_elsewhere)} answered; channels {len(engine.sessions)}"
                    f" (was {channels}), logged in {logged_in(engine)} (was {before})"
                )
                if answered or answers_elsewhere or len(engine.sessions) != channels:
                    problems.append("a replayed INIT was answered or opened a channel")
                if logged_in(engine) != before:
                    problems.append("a replayed INIT logged someone in")

                # The daemon's own datagrams, sent back at it.
                with await bound_socket("127.0.0.67") as mirror:
                    reflected = tap.recorded(TO_CLIENT)
                    for data in reflected:
                        await mirror.sendto(data, (host, port))
                    await mirror.sendto(wire.key_request_datagram(), (host, port))
                    answers: list[bytes] = []
                    while not answers or kind_of(answers[-1]) != "KEY":
                        answers.append(await mirror.recv(2048))
                kinds = Counter(kind_of(a) for a in answers[:-1])
                print(
                    f"reflection: {len(reflected)} of the daemon's datagrams "
                    f"({sum(map(len, reflected)):,} bytes) sent back at it; answered "
                    f"{dict(kinds) or 'nothing'} ({sum(map(len, answers[:-1])):,} bytes)"
                )

                # The ticket, through the tap.
                resumed = ClientConnection(key, NAME, "not-the-password")
                resumed.ticket = ticket
                with await bound_socket() as sock:
                    await sock.connect((host, front))
                    resumed.start(trio.current_time())
                    await drive(sock, resumed, lambda: resumed.ready or resumed.closed)
                    resumed.close()
                    await drive(sock, resumed, lambda: True)
            nursery.cancel_scope.cancel()

    captured = Counter(f"{kind_of(data)} {way}" for way, data in tap.captured)
    print(f"captured {len(tap.captured)} datagrams, {len(tap.all_bytes):,} bytes:")
    for label, count in sorted(captured.items()):
        print(f"  {count:4} {label}")
    secrets: dict[str, bytes | str] = {
        "password": PASSWORD,
        "ticket": ticket,
        "resumed ticket": resumed.ticket,
        "name": NAME,
        "public text": SAID,
        "whisper": WHISPERED,
        "Bob's text": HEARD,
        "daemon's static key": engine.keys.static_private,
        "reset secret": engine.keys.reset_secret,
    }
    found = leaks(tap.all_bytes, secrets)
    for name in secrets:
        print(f"  {name:22} {'FOUND' if name in found else 'not found'}")
    if found:
        problems.append(f"found in the capture: {', '.join(found)}")

    opened = 0
    for data in tap.recorded(TO_DAEMON, "INIT"):
        init_datagram = wire.parse_datagram_untrusted(data)
        assert isinstance(init_datagram, wire.Init)
        _response, channel = respond(engine.keys.static_private, init_datagram, 1, bytes(16))
        for record in tap.recorded(TO_DAEMON, "DATA"):
            try:
                channel.open_untrusted(record)
            except SecureError:
                continue
            opened += 1
    print(f"with the daemon's key file, stolen later: {opened} recorded records opened")
    if opened:
        problems.append("a recorded record opened with the static key")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(trio.run(main))
