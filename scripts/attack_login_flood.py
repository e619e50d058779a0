"""Login flood: bursts of wrong-password logins from 20 addresses as fast as the daemon
takes them, while the account's owner logs in from another address and two people chat.

    .venv/bin/python scripts/attack_login_flood.py
    .venv/bin/python scripts/attack_login_flood.py --bursts 1 --attempts 400   # shorter

Each attempt is what a client does: a channel of its own (a handshake), a login frame
for `alice` with a wrong password, the answer (`busy` is sent again by the client core by
itself), a goodbye; each address keeps 16 attempts going at once (its cap of channels).
The attackers run in a process of their own (at `--attacker-nice`). Meanwhile `bob` and
`dave` say `--rate` messages a second together (over sessions that each stay within the
default per-session rate), each carrying its send time, which `carol` receives; and
`alice` logs in with her password from 127.0.0.2, again and again while a burst lasts.

The attack comes in `--bursts` bursts of `--attempts` logins, each from 20 addresses that
have not attacked before (so that every burst meets the same limits), after a quiet spell
of `--quiet` seconds. A burst is over in about 2 s, in which the chat makes about 64
deliveries: the 99th percentile of one burst is its slowest delivery. The goal is judged
on every burst's deliveries together against every quiet spell's, so that both
percentiles are taken over a few hundred; each burst's own figures are printed too.

Goals: each of alice's logins during a burst is welcomed in under 3 s, and the chat's
99th-percentile delivery time during the bursts is at most twice the one measured in the
quiet spells. Also printed: how many password checks the daemon actually made (the
`wrong_password` answers, and its log) against the attempts, and the allowance.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

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
            address(args.first + a): args.attempts // args.addresses
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
    in_step: bool,
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
    start = trio.current_time() + 1.0  # everyone logged in
    async with running(carol), trio.open_nursery() as nursery:
        for n, sender in enumerate(senders):
            nursery.start_soon(talk, sender, rate / sessions, start + n / rate, in_step)
        await carol.logged_in()
        while True:
            asked = time.monotonic()
            await carol.answer(carol.send(wire.Who()))
            asked_and_waited.append((asked, time.monotonic() - asked))
            await trio.sleep(0.05)


async def talk(bob: Client, rate: float, first: float, in_step: bool) -> None:
    """Say `rate` messages a second from `first` on: at exact intervals, so that the
    senders, started at spread instants, make one even stream (or, `in_step`, all say at
    once, each then sleeping its interval, as people never do)."""
    async with running(bob):
        if await bob.logged_in() != "welcome":
            raise RuntimeError(f"{bob.core.name} could not log in: {bob.core.failure}")
        if in_step:
            while True:
                bob.core.say(f"t={time.monotonic()!r}")
                bob.flush()
                await trio.sleep(1 / rate)
        await trio.sleep_until(first)
        for turn in itertools.count(1):
            bob.core.say(f"t={time.monotonic()!r}")
            bob.flush()
            await trio.sleep_until(first + turn / rate)


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


@dataclass
class Burst:
    """One burst of the flood and the quiet spell before it, as measured."""

    quiet_from: float
    start: float = math.nan
    end: float = math.nan
    answers: Counter[str] = field(default_factory=Counter)
    frames: Counter[str] = field(default_factory=Counter)
    cpu: float | None = None

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def attempts(self) -> int:
        return sum(n for code, n in self.answers.items() if not code.startswith("handshake:"))

    @property
    def checked(self) -> int:
        return self.answers.get("wrong_password", 0)


async def main(args: argparse.Namespace) -> int:
    async with open_target(args.port) as target:
        await register_all(target, ["alice", "carol", *SENDERS])
        deliveries: list[tuple[float, float]] = []
        round_trips: list[tuple[float, float]] = []
        logins: list[tuple[float, str, float]] = []
        bursts: list[Burst] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(chat, target, args.rate, args.in_step, deliveries, round_trips)
            await trio.sleep(1.0)  # everyone logged in
            for number in range(args.bursts):
                burst = Burst(quiet_from=time.monotonic())
                bursts.append(burst)
                await trio.sleep(args.quiet)
                await attack(target, args, FIRST_ATTACKER + number * args.addresses, burst, logins)
                await trio.sleep(1.0)  # the last deliveries of the burst arrive
            nursery.cancel_scope.cancel()
        checks_logged = target.log_count("refused: wrong_password")

    def sent_in(times: list[tuple[float, float]], spans: list[tuple[float, float]]) -> list[float]:
        return [value for at, value in times if any(a <= at < b for a, b in spans)]

    quiet_spans = [(b.quiet_from, b.quiet_from + args.quiet) for b in bursts]
    flood_spans = [(b.start, b.end) for b in bursts]
    quiet, flooded = sent_in(deliveries, quiet_spans), sent_in(deliveries, flood_spans)
    attempts = sum(b.attempts for b in bursts)
    checked = sum(b.checked for b in bursts)
    seconds = sum(b.seconds for b in bursts)
    answers = sum((b.answers for b in bursts), Counter[str]())
    frames = sum((b.frames for b in bursts), Counter[str]())
    cpus = [b.cpu for b in bursts if b.cpu is not None]
    cpu = f"; daemon CPU {sum(cpus):.1f} s" if len(cpus) == len(bursts) else ""
    print(
        f"login flood: {len(bursts)} bursts of {args.attempts} wrong-password logins for "
        f"'alice', each from {args.addresses} new addresses ({args.parallel} at once each); "
        f"{attempts} answered in {seconds:.1f} s in all ({attempts / seconds:.0f}/s){cpu}"
    )
    print(f"  answers: {dict(sorted(answers.items()))}")
    print(f"  error frames seen (busy ones were sent again): {dict(sorted(frames.items()))}")
    most = sum(args.addresses * allowance(b.seconds) for b in bursts)
    logged = "" if checks_logged is None else f", {checks_logged} in the daemon's log"
    print(
        f"  password checks made: {checked} wrong_password answers{logged}, for {attempts} "
        f"attempts; the allowance over the bursts is {most} ({args.addresses} addresses x "
        f"{', '.join(str(allowance(b.seconds)) for b in bursts)})"
    )
    print("  messages, from bob's and dave's say to carol's screen:")
    for number, burst in enumerate(bursts, start=1):
        alone = sent_in(deliveries, [(burst.quiet_from, burst.quiet_from + args.quiet)])
        during_burst = sent_in(deliveries, [(burst.start, burst.end)])
        print(f"    burst {number} ({burst.seconds:.1f} s)")
        print("      " + summary("quiet", alone))
        print("      " + summary("flood", during_burst))
    print("    all bursts together:")
    print("      " + summary("quiet", quiet))
    print("      " + summary("flood", flooded))
    print("  carol's `who`, its round trip (nothing stored):")
    print("    " + summary("quiet", sent_in(round_trips, quiet_spans), "answers"))
    print("    " + summary("flood", sent_in(round_trips, flood_spans), "answers"))
    during = [(code, s) for began, code, s in logins if any(a <= began < b for a, b in flood_spans)]
    shown = ", ".join(
        f"{s:.2f}" + ("" if code == "welcome" else f" ({code})") for code, s in during
    )
    print(f"  alice's logins during the bursts, seconds to welcome: {shown or 'none'}")
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


async def attack(
    target: Target,
    args: argparse.Namespace,
    first: int,
    burst: Burst,
    logins: list[tuple[float, str, float]],
) -> None:
    """One burst from the addresses from 127.0.0.`first` on, while alice logs in."""
    done = trio.Event()
    cpu_before = target.cpu_seconds()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(owner, target, done, logins)
        figures = await run_attacker(
            __file__,
            args.attacker_nice,
            *("--attacker", "--port", str(target.port), "--first", str(first)),
            *("--attempts", str(args.attempts), "--addresses", str(args.addresses)),
            *("--parallel", str(args.parallel)),
        )
        done.set()
    cpu_after = target.cpu_seconds()
    burst.start, burst.end = figures["start"], figures["end"]
    burst.answers.update(figures["answers"])
    burst.frames.update(figures["frames"])
    if cpu_before is not None and cpu_after is not None:
        burst.cpu = cpu_after - cpu_before


def arguments() -> argparse.Namespace:
    options = parser(__doc__, attackers=True)
    options.add_argument("--attempts", type=int, default=2000)
    options.add_argument("--addresses", type=int, default=20, help="attacking IPs per burst")
    options.add_argument("--parallel", type=int, default=16, help="attempts at once per IP")
    options.add_argument("--rate", type=float, default=32.0, help="chat messages a second")
    options.add_argument(
        "--in-step",
        action="store_true",
        help="the senders say at the same instants (bursts of up to 8), not spread out",
    )
    options.add_argument("--quiet", type=float, default=3.0, help="seconds measured before each")
    options.add_argument("--bursts", type=int, default=5, help="bursts, each from new addresses")
    options.add_argument("--first", type=int, default=FIRST_ATTACKER, help=argparse.SUPPRESS)
    return options.parse_args()


if __name__ == "__main__":
    sys.exit(run_script(arguments(), main, flood))
