"""Login flood: wrong-password logins from 20 addresses as fast as the daemon takes them,
while the account's owner logs in from another address and two people chat.

    .venv/bin/python scripts/attack_login_flood.py
    .venv/bin/python scripts/attack_login_flood.py --attempts 400 --quiet 3   # shorter

Each attempt is what a client does: a channel of its own (a handshake), a login frame
for `alice` with a wrong password, the answer (`busy` is sent again by the client core by
itself), a goodbye; each address keeps 16 attempts going at once (its cap of channels).
The attackers run in a process of their own (at `--attacker-nice`). Meanwhile `bob` and
`dave` say `--rate` messages a second together (over sessions that each stay within the
default per-session rate), each carrying its send time, which `carol` receives; and
`alice` logs in with her password from 127.0.0.2, again and again while the flood lasts.

Goals: each of alice's logins during the flood is welcomed in under 3 s, and the chat's
99th-percentile delivery time during the flood is at most twice the one measured quietly
before it. Also printed: how many password checks the daemon actually made (the
`wrong_password` answers, and its log) against the attempts, and the allowance.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from typing import Any

import trio
from attack_common import (
    Client,
    Target,
    address,
    allowance,
    log_in_once,
    open_target,
    parser,
    percentile,
    register_all,
    report,
    run_attacker,
    run_script,
    running,
    verdict,
)

from trio_chat import wire
from trio_chat.events import Event, PublicMessage

FIRST_ATTACKER = 11
SESSION_RATE = 4.0
"""Messages a second each sender's session says (the daemon allows 5 steadily)."""
SENDERS = ("bob", "dave")


# --- the attackers' process ------------------------------------------------------------------


async def flood(args: argparse.Namespace) -> None:
    """Send the attempts, report what was answered (the attackers' process)."""
    async with open_target(args.port) as target:
        answers: Counter[str] = Counter()
        frames: Counter[str] = Counter()
        left = {
            address(FIRST_ATTACKER + a): args.attempts // args.addresses
            + (a < args.attempts % args.addresses)
            for a in range(args.addresses)
        }

        def seen(frame: wire.ServerFrame) -> None:
            if isinstance(frame, wire.ErrorFrame):
                frames[frame.code] += 1

        async def attempt(source: str) -> None:
            while left[source] > 0:
                left[source] -= 1
                guess = f"wrong password {left[source]} {source}"
                client = Client(target, source, "alice", guess, timeout=10.0)
                client.core.trace = seen
                async with running(client):
                    code = await client.logged_in(30.0)
                if client.core.sid == 0:  # refused before a channel opened: not an attempt
                    answers["handshake:" + code] += 1
                    left[source] += 1
                    await trio.sleep(0.05)
                else:
                    answers[code] += 1

        start = time.monotonic()
        async with trio.open_nursery() as nursery:
            for source in left:
                for _ in range(args.parallel):
                    nursery.start_soon(attempt, source)
        end = time.monotonic()
    report({"start": start, "end": end, "answers": answers, "frames": frames})


# --- the measurement ---------------------------------------------------------------------------


async def chat(
    target: Target,
    rate: float,
    sent_and_latency: list[tuple[float, float]],
    asked_and_waited: list[tuple[float, float]],
) -> None:
    """bob and dave talk to carol until cancelled; every delivery's (send time, latency)
    is kept, and so is every round trip of the `who` carol asks 20 times a second (a
    request that stores nothing: the daemon's own delay, without the database's)."""

    def received(event: Event) -> None:
        if isinstance(event, PublicMessage) and event.text.startswith("t="):
            sent = float(event.text[2:])
            sent_and_latency.append((sent, time.monotonic() - sent))

    carol = Client(target, address(4), "carol", on_event=received)
    sessions = max(1, math.ceil(rate / SESSION_RATE))
    senders = [Client(target, address(3), SENDERS[n % 2]) for n in range(sessions)]
    async with running(carol), trio.open_nursery() as nursery:
        for sender in senders:
            nursery.start_soon(talk, sender, rate / sessions)
        await carol.logged_in()
        while True:
            asked = time.monotonic()
            await carol.answer(carol.send(wire.Who()))
            asked_and_waited.append((asked, time.monotonic() - asked))
            await trio.sleep(0.05)


async def talk(bob: Client, rate: float) -> None:
    async with running(bob):
        if await bob.logged_in() != "welcome":
            raise RuntimeError(f"{bob.core.name} could not log in: {bob.core.failure}")
        while True:
            bob.core.say(f"t={time.monotonic()!r}")
            bob.flush()
            await trio.sleep(1 / rate)


async def owner(target: Target, done: trio.Event, logins: list[tuple[float, str, float]]) -> None:
    """alice logs in from her own address, again and again until `done`."""
    while not done.is_set():
        began = time.monotonic()
        code, seconds = await log_in_once(target, address(2), "alice")
        logins.append((began, code, seconds))
        await trio.sleep(0.5)


def summary(name: str, latencies: list[float], what: str = "deliveries") -> str:
    ms = [1000 * latency for latency in latencies]
    return (
        f"{name:6} {len(ms):5} {what}: p50 {percentile(ms, 0.5):6.1f} ms  "
        f"p99 {percentile(ms, 0.99):6.1f} ms  max {max(ms, default=math.nan):6.1f} ms"
    )


async def main(args: argparse.Namespace) -> int:
    async with open_target(args.port) as target:
        await register_all(target, ["alice", "carol", *SENDERS])
        deliveries: list[tuple[float, float]] = []
        round_trips: list[tuple[float, float]] = []
        logins: list[tuple[float, str, float]] = []
        done = trio.Event()
        figures: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(chat, target, args.rate, deliveries, round_trips)
            await trio.sleep(args.quiet + 1.0)
            cpu_before = target.cpu_seconds()
            nursery.start_soon(owner, target, done, logins)

            async def attackers() -> None:
                figures.update(
                    await run_attacker(
                        __file__,
                        args.attacker_nice,
                        *("--attacker", "--port", str(target.port)),
                        *("--attempts", str(args.attempts), "--addresses", str(args.addresses)),
                        *("--parallel", str(args.parallel)),
                    )
                )
                done.set()

            nursery.start_soon(attackers)
            await done.wait()
            cpu_after = target.cpu_seconds()
            await trio.sleep(1.0)  # the last deliveries of the flood arrive
            nursery.cancel_scope.cancel()
        checks_logged = target.log_count("refused: wrong_password")

    start, end = figures["start"], figures["end"]
    seconds = end - start
    answers: dict[str, int] = figures["answers"]
    attempts = sum(n for code, n in answers.items() if not code.startswith("handshake:"))
    checked = answers.get("wrong_password", 0)
    quiet = [lat for sent, lat in deliveries if start - args.quiet <= sent < start]
    flooded = [lat for sent, lat in deliveries if start <= sent < end]
    asked_quiet = [rtt for asked, rtt in round_trips if start - args.quiet <= asked < start]
    asked_flood = [rtt for asked, rtt in round_trips if start <= asked < end]
    during = [(code, s) for began, code, s in logins if start <= began < end]
    cpu = (
        f"; daemon CPU {cpu_after - cpu_before:.1f} s"
        if cpu_after is not None and cpu_before is not None
        else ""
    )
    print(
        f"login flood: {attempts} wrong-password logins for 'alice' from {args.addresses} "
        f"addresses ({args.parallel} at once each) answered in {seconds:.1f} s "
        f"({attempts / seconds:.0f}/s){cpu}"
    )
    print(f"  answers: {dict(sorted(answers.items()))}")
    frames = dict(sorted(figures["frames"].items()))
    print(f"  error frames seen (busy ones were sent again): {frames}")
    most = args.addresses * allowance(seconds)
    logged = "" if checks_logged is None else f", {checks_logged} in the daemon's log"
    print(
        f"  password checks made: {checked} wrong_password answers{logged}, for {attempts} "
        f"attempts; the allowance over {seconds:.1f} s is {most} "
        f"({args.addresses} addresses x {allowance(seconds)})"
    )
    print("  messages, from bob's and dave's say to carol's screen:")
    print("    " + summary("quiet", quiet))
    print("    " + summary("flood", flooded))
    print("  carol's `who`, its round trip (nothing stored):")
    print("    " + summary("quiet", asked_quiet, "answers"))
    print("    " + summary("flood", asked_flood, "answers"))
    shown = ", ".join(
        f"{s:.2f}" + ("" if code == "welcome" else f" ({code})") for code, s in during
    )
    print(f"  alice's logins during the flood, seconds to welcome: {shown or 'none'}")
    p99_quiet, p99_flood = percentile(quiet, 0.99), percentile(flooded, 0.99)
    return verdict(
        {
            "alice is welcomed in < 3 s each time during the flood": bool(during)
            and all(code == "welcome" and s < 3.0 for code, s in during),
            f"chat p99 during the flood ({1000 * p99_flood:.1f} ms) <= 2 x quiet "
            f"({1000 * p99_quiet:.1f} ms)": bool(flooded) and p99_flood <= 2 * p99_quiet,
            "no attempt logged in": answers.get("welcome", 0) == 0,
            f"checks within the allowance ({checked} <= {most})": checked <= most,
        }
    )


def arguments() -> argparse.Namespace:
    options = parser(__doc__, attackers=True)
    options.add_argument("--attempts", type=int, default=2000)
    options.add_argument("--addresses", type=int, default=20, help="attacking IPs (at most 30)")
    options.add_argument("--parallel", type=int, default=16, help="attempts at once per IP")
    options.add_argument("--rate", type=float, default=32.0, help="chat messages a second")
    options.add_argument("--quiet", type=float, default=10.0, help="seconds measured before")
    return options.parse_args()


if __name__ == "__main__":
    sys.exit(run_script(arguments(), main, flood))
