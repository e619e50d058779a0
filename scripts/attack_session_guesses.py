"""Guesses through a session: a stolen ticket (or a laptop left open) guessing the
account's password with `change_password`, 200 guesses at once.

    .venv/bin/python scripts/attack_session_guesses.py
    .venv/bin/python scripts/attack_session_guesses.py --guesses 50 --seconds 10

127.0.0.12 is in alice's session and asks to change her password, each time giving
another guess for the old one, every guess at once; one answered `throttled`,
`rate_limited` or `busy` is sent again as soon as its `retry_after` allows, for
`--seconds`. A session that could check old passwords faster than a login would be a
faster way in: with the password, the attacker owns the account, its tickets included.

Goal: the guesses checked (`wrong_password` answers) are no more than a login's
allowance: 3 at once, then one after 1, 2, 4, 8 ... s; and the password is unchanged.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import trio
from attack_common import (
    PASSWORD,
    Client,
    Tally,
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

ATTACKER = address(12)
PUT_OFF = frozenset({"throttled", "rate_limited", "busy"})
"""Answers that checked nothing: the guess goes again after `retry_after`."""


async def guess(client: Client, count: int, until: float, tally: Tally) -> Counter[str]:
    """Every guess at once, each sent again when put off, until `until`; the first answer
    each guess got."""
    due = {n: time.monotonic() for n in range(count)}
    first: Counter[str] = Counter()
    answered: set[int] = set()
    waiting: dict[int, Handle] = {}
    while time.monotonic() < until and (due or waiting) and not client.core.closed:
        now = time.monotonic()
        for n in [n for n, at in due.items() if at <= now]:
            del due[n]
            change = wire.ChangePassword(old=f"session guess {n}", new="the attacker's own")
            waiting[n] = client.send(change)
        await client.until(lambda: any(h.done for h in waiting.values()), 0.05)
        for n, handle in list(waiting.items()):
            if not handle.done:
                continue
            del waiting[n]
            error = handle.error
            code = "ok" if error is None else error.code
            tally.record(code)
            if n not in answered:
                answered.add(n)
                first[code] += 1
            if code in PUT_OFF:
                assert error is not None
                due[n] = time.monotonic() + (error.retry_after or 1.0)
    return first


async def main(args: argparse.Namespace) -> int:
    async with open_target(args.port) as target:
        await register_all(target, ["alice"])
        tally = Tally()
        client = Client(target, ATTACKER, "alice", PASSWORD, timeout=10.0)
        async with running(client):
            welcomed = await client.logged_in()
            start = time.monotonic()
            first = await guess(client, args.guesses, start + args.seconds, tally)
        logged = target.log_count("refused: wrong_password")
        check = Client(target, address(13), "alice", PASSWORD)
        async with running(check):
            unchanged = await check.logged_in()
    checked = len(tally.checked)
    most = allowance(args.seconds)
    times = ", ".join(f"{t - start:.1f}" for t in tally.checked)
    print(
        f"session guesses: {args.guesses} guesses at alice's password sent at once as "
        f"`change_password` from her session at {ATTACKER} ({welcomed}), put-off ones sent "
        f"again when allowed, for {args.seconds:.0f} s"
    )
    print(f"  the first answers: {dict(sorted(first.items()))}")
    print(f"  all answers: {dict(sorted(tally.answers.items()))}")
    shown = "" if logged is None else f" ({logged} in the daemon's log)"
    print(f"  checked: {checked} of {args.guesses}{shown}, at {times} s from the start")
    print(
        f"  a login's allowance in {args.seconds:.0f} s: {most} checks, at "
        f"{schedule(args.seconds)} s"
    )
    print(f"  alice's own password afterwards: {unchanged}")
    return verdict(
        {
            f"checks ({checked}) <= a login's allowance ({most})": checked <= most,
            "no guess changed the password": tally.answers["ok"] == 0,
            "alice still logs in with hers": unchanged == "welcome",
        }
    )


if __name__ == "__main__":
    sys.exit(trio.run(main, guess_arguments(__doc__, guesses=200)))
