"""Pipelined guesses: 400 wrong-password logins sent at once from one address.

    .venv/bin/python scripts/attack_pipelined_guesses.py
    .venv/bin/python scripts/attack_pipelined_guesses.py --guesses 100 --seconds 10

127.0.0.11 opens 16 channels (its cap) and sends every guess for `alice` at once, 25
frames a channel; a guess answered `throttled` is sent again as soon as its `retry_after`
allows, and `busy` ones are sent again by the client core, for `--seconds` (channels are
replaced every 8 s, before the daemon closes them for not logging in). Before the
defences all 400 were checked at once.

Goal: the guesses checked (`wrong_password` answers) are no more than the allowance:
3 at once, then one after 1, 2, 4, 8 ... s.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections import Counter

import trio
from attack_common import (
    CHANNEL_LIFE,
    Client,
    Tally,
    Target,
    address,
    allowance,
    guess_arguments,
    open_target,
    register_all,
    running,
    schedule,
    verdict,
)

from trio_chat import wire
from trio_chat.client_protocol import Handle

ATTACKER = address(11)
CHANNELS = 16


class Guesses:
    """The guesses not yet checked, each with when it may be sent (again)."""

    def __init__(self, count: int) -> None:
        now = time.monotonic()
        self.due = {n: now for n in range(count)}
        self.first_answers: Counter[str] = Counter()
        """The first answer each guess got."""
        self._answered: set[int] = set()

    def answered(self, n: int, code: str, retry_after: float | None) -> None:
        if n not in self._answered:
            self._answered.add(n)
            self.first_answers[code] += 1
        if code == "throttled":
            self.due[n] = time.monotonic() + (retry_after or 1.0)

    def take(self, most: int) -> list[int]:
        now = time.monotonic()
        ready = [n for n, at in self.due.items() if at <= now][:most]
        for n in ready:
            del self.due[n]
        return ready


def any_done(handles: dict[int, Handle]) -> bool:
    return any(handle.done for handle in handles.values())


async def channel(target: Target, guesses: Guesses, share: int, until: float, tally: Tally) -> None:
    """One of the attacker's channels: `share` guesses in flight at most, sent again when due."""
    while time.monotonic() < until and guesses.due:
        client = Client(target, ATTACKER, timeout=10.0)
        tally.watch(client)
        async with running(client):
            if not await client.channel_open():
                await trio.sleep(0.05)
                continue
            end = min(until, time.monotonic() + CHANNEL_LIFE)
            handles: dict[int, Handle] = {}
            while time.monotonic() < end and not client.core.closed:
                for n in guesses.take(share - len(handles)):
                    login = wire.Login(name="alice", password=f"pipelined guess {n}")
                    handles[n] = client.send(login)
                await client.until(functools.partial(any_done, handles), 0.05)
                for n, handle in list(handles.items()):
                    if not handle.done:
                        continue
                    del handles[n]
                    error = handle.error
                    code = "ok" if error is None else error.code
                    tally.record(code)
                    guesses.answered(n, code, None if error is None else error.retry_after)
                if not handles and not guesses.due:
                    break
            for n in handles:  # unanswered when the channel was replaced: not lost
                guesses.due[n] = time.monotonic()


async def main(args: argparse.Namespace) -> int:
    async with open_target(args.port) as target:
        await register_all(target, ["alice"])
        guesses = Guesses(args.guesses)
        tally = Tally()
        start = time.monotonic()
        until = start + args.seconds
        share = -(-args.guesses // CHANNELS)
        async with trio.open_nursery() as nursery:
            for _ in range(CHANNELS):
                nursery.start_soon(channel, target, guesses, share, until, tally)
        logged = target.log_count("refused: wrong_password")
    checked = len(tally.checked)
    most = allowance(args.seconds)
    times = ", ".join(f"{t - start:.1f}" for t in tally.checked)
    print(
        f"pipelined guesses: {args.guesses} wrong-password logins for 'alice' sent at once "
        f"from {ATTACKER} on {CHANNELS} channels ({share} a channel), throttled ones sent "
        f"again when allowed, for {args.seconds:.0f} s"
    )
    print(f"  the first answers: {dict(sorted(guesses.first_answers.items()))}; busy {tally.busy}")
    print(f"  all answers: {dict(sorted(tally.answers.items()))}")
    shown = "" if logged is None else f" ({logged} in the daemon's log)"
    print(f"  checked: {checked} of {args.guesses}{shown}, at {times} s from the start")
    print(
        f"  the allowance in {args.seconds:.0f} s: {most} checks, at {schedule(args.seconds)} s "
        f"(before the defences: all {args.guesses} at once)"
    )
    return verdict({f"checks ({checked}) <= allowance ({most})": checked <= most})


if __name__ == "__main__":
    sys.exit(trio.run(main, guess_arguments(__doc__, guesses=400)))
