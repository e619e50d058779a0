"""Fuzz a live daemon in the three layers of `trio_chat.testing.garbage`, then check it
still serves people.

    nice .venv/bin/python -m scripts.faults_fuzz                  # 100,000 datagrams
    nice .venv/bin/python -m scripts.faults_fuzz --count 10000 --seed 3

Starts `trio-chat serve` as a child process and registers the fuzzer's accounts and two
witnesses, alice and bob, who stay logged in with the real client. Then it sends
`--count` hostile datagrams (`trio_chat.testing.live_fuzz`): outside any channel, records
that must not authenticate, and hostile payloads on channels whose keys the fuzzer
holds; at every barrier alice says something. Afterwards a new account registers, logs
in and is heard. Prints what was sent, by layer and kind, and what came back; exits 1
unless the daemon is still running and exits cleanly, bob heard every one of alice's
messages once and in order, no answer broke the protocol or the no-amplification rule,
no session was lost, the kernel dropped nothing, and the daemon logged no error.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import re
import sys
import tempfile
from pathlib import Path

import trio

from trio_chat import ChatMessage, ClientConfig, PublicMessage, connect, register
from trio_chat.client import Receipt
from trio_chat.testing.daemon import DaemonProcess, private_client_data
from trio_chat.testing.live_fuzz import FUZZ_PASSWORD, FuzzReport, fuzz_daemon, listen, speak
from trio_chat.trust import fetch_key

WITNESSES = [("alice", "alice's own password"), ("bob", "bob's own password")]
"""People in the room: the fuzzer does not know their passwords."""
OWN_LINE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z (debug|info|warning) ")
"""A line the daemon's text log writes below level `error`."""


def print_report(report: FuzzReport) -> None:
    layers = ", ".join(
        f"{layer} {report.sent[layer]}" for layer in ("outside", "record", "payload")
    )
    print(
        f"sent {report.total} hostile datagrams ({layers}) in {report.seconds:.1f} s "
        f"({report.total / max(report.seconds, 1e-9):.0f}/s); "
        f"{report.sent['barrier'] + report.sent['setup']} more to set up channels and to wait "
        f"at {report.barriers} barriers"
    )
    for layer in ("outside", "record", "payload"):
        kinds = sorted((k, v) for k, v in report.kinds.items() if k.startswith(layer + "/"))
        print(f"  {layer}: " + ", ".join(f"{k.split('/')[1]} {v}" for k, v in kinds))
    print(
        f"replies {report.replies} ({report.reply_bytes} bytes); to the strangers "
        f"{report.outside_bytes_answered} bytes for {report.outside_bytes_sent} sent: "
        + ", ".join(f"{k} {v}" for k, v in sorted(report.outside_answers.items()))
    )
    print(
        f"channels {report.channels}: {report.logins} password logins, {report.resumes} "
        f"resumed with a ticket, {report.logouts} logged out, {report.migrations} moved, "
        f"{report.retired} newcomers left to time out, {len(report.lost)} lost"
    )
    print(
        f"frames from the daemon {report.frames_in}: "
        + ", ".join(f"{k} {v}" for k, v in report.frame_kinds.most_common())
    )
    print("errors: " + ", ".join(f"{k} {v}" for k, v in report.error_codes.most_common()))
    print(f"kernel drops: at the daemon {report.kernel_drops}, at the fuzzer {report.fuzzer_drops}")
    for problem in (*report.amplification, *report.faults, *report.lost)[:20]:
        print(f"  PROBLEM: {problem}")


async def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory() as workdir:
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(
                nursery,
                Path(workdir) / "chat.db",
                # All of it comes from 127.0.0.1, the witnesses included: lift the limits
                # per address, or the fuzzer's failed logins, registrations and many
                # channels would get the honest clients refused (rightly).
                *("--sessions-per-address", "1000000", "--login-free-failures", "1000000000"),
                *("--register-burst", "1000000000", "--handshake-burst", "1000000000"),
            )
            host, port = await daemon.start()
            key = await fetch_key(host, port)
            config = ClientConfig(timeout=10.0)
            enter = functools.partial(connect, host, port, config=config, server_key=key)
            names = [f"fuzz{n}" for n in range(3)]
            for name, password in [(n, FUZZ_PASSWORD) for n in names] + WITNESSES:
                await register(host, port, name, password, config=config, server_key=key)
            said: list[Receipt[ChatMessage]] = []
            heard: list[str] = []
            hear, heard_by_bob = trio.open_memory_channel[str](math.inf)
            async with enter(*WITNESSES[0]) as alice, enter(*WITNESSES[1]) as bob:
                nursery.start_soon(listen, bob, "alice", hear)
                report = await fuzz_daemon(
                    (host, port),
                    key,
                    count=args.count,
                    seed=args.seed,
                    names=names,
                    others=[name for name, _password in WITNESSES],
                    sockets=6,
                    strangers=3,
                    double_logins=args.double_logins,
                    spoof_ghosts=args.spoof_ghosts,
                    on_barrier=lambda n: speak(alice, said, f"during the fuzz {n}"),
                )
                texts = [(await receipt.wait()).text for receipt in said]
                with trio.move_on_after(10):
                    while len(heard) < len(texts):
                        heard.append(await heard_by_bob.receive())
                await trio.sleep(0.5)  # then anything heard twice comes too
                with contextlib.suppress(trio.WouldBlock):
                    while True:
                        heard.append(heard_by_bob.receive_nowait())
            print_report(report)
            alive = daemon.running
            afterwards: list[str] = []
            if alive:
                newcomer = ("after", "after-the-storm")
                await register(host, port, *newcomer, config=config, server_key=key)
                async with enter(*newcomer) as after, enter(*WITNESSES[1]) as bob:
                    message = await after.say("still serving")
                    with trio.move_on_after(10):
                        async for event in bob.events():
                            if isinstance(event, PublicMessage) and event.id == message.id:
                                afterwards.append(event.text)
                                break
            status = await daemon.stop()
            nursery.cancel_scope.cancel()
    foreign = [line for line in daemon.output if not OWN_LINE.match(line)]
    checks = {
        "the daemon ran through the fuzz": alive,
        "it exited cleanly": status == 0,
        f"bob heard alice's {len(texts)} messages once, in order": heard == texts,
        "a new account registered, logged in and was heard": afterwards == ["still serving"],
        "no answer broke the protocol or the no-amplification rule": not (
            report.faults or report.amplification
        ),
        "no session was lost": not report.lost,
        "the kernel dropped nothing": report.kernel_drops in (0, None),
        "the daemon logged no error and no line of another form": not foreign,
    }
    for line in foreign[:10]:
        print(f"  daemon: {line.rstrip()}")
    for check, passed in checks.items():
        print(f"{'ok  ' if passed else 'FAIL'} {check}")
    return 0 if all(checks.values()) else 1


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--double-logins",
        action="store_true",
        help="also send a channel a second login that works while its first is checked",
    )
    parser.add_argument(
        "--spoof-ghosts",
        action="store_true",
        help="also send logged-out channels' records from another address than theirs",
    )
    return parser.parse_args()


if __name__ == "__main__":
    private_client_data()
    sys.exit(trio.run(main, parse_arguments()))
