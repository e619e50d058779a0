"""Name probing: which account names exist, tested as fast as one address can.

    .venv/bin/python scripts/attack_name_probe.py
    .venv/bin/python scripts/attack_name_probe.py --seconds 3

The daemon holds `alice` and three accounts the prober does not know of: `probe7`,
`probe77` and `probe777`. One address tries the names `probe0`, `probe1`, ... for
`--seconds` each way a client can ask about a name, each frame sent as soon as the last
was answered:

- login: a login for each name (16 channels); `unknown_user` says it is free,
  `wrong_password` that it exists (before the defences: 54,000 names a second);
- whisper: a private message to each name, from 8 sessions of an account of the
  prober's own (`unknown_user`: free; `ok`: it exists; `rate_limited` tells nothing);
- register: a registration of each name (16 channels): `name_taken` says it exists,
  `registered` that it was free (and is the prober's now); `too_many_registrations`
  says nothing the prober can rely on (the same answer whether the name was looked at).

It prints the names tested (answers that tell) per second each way, and which of the
hidden accounts each found. Goal: logins and registrations test names no faster than
passwords may be guessed: the login allowance of one address (3, then one after 1, 2,
4 ... s). A whisper to a name that does not exist must say so (a chat tells its users
who they can write to, as IRC's WHOIS does): it is bounded by the message rate of the
account's 8 sessions (20 at once, then 5 a second, each).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
import time
from collections.abc import Callable

import trio
from attack_common import (
    LIMITS,
    Tally,
    Target,
    address,
    allowance,
    hammer,
    new_rid,
    open_target,
    parser,
    register_all,
    verdict,
)

from trio_chat import wire

HIDDEN = ("probe7", "probe77", "probe777")
PROBER = "mallory"
WAYS = ("login", "whisper", "register")
TELLS = {
    "login": {"unknown_user": False, "wrong_password": True},
    "whisper": {"unknown_user": False, "ok": True},
    # `too_many_registrations` is the same answer whether the name was looked at (a free
    # one, past the registration limit: counted by the daemon as a lookup) or not (the
    # address is waiting): it tells the prober nothing it can rely on.
    "register": {"name_taken": True, "ok": False},
}
"""For each way, the answers that tell something about the name: whether it exists."""


def frames(way: str) -> Callable[[], wire.ClientFrame]:
    """The frames that ask about `probe0`, `probe1`, ... one way."""
    numbers = itertools.count()

    def frame() -> wire.ClientFrame:
        name = f"probe{next(numbers)}"
        if way == "login":
            return wire.Login(name=name, password="not the password")
        if way == "whisper":
            return wire.Whisper(to=name, text="are you there?", cid=new_rid())
        return wire.Register(rid=new_rid(), name=name, password="a-password-for-it")

    return frame


async def probe(
    target: Target, way: str, source: str, seconds: float
) -> tuple[int, set[str], Tally]:
    """Probe one way for `seconds`: the names tested, those found to exist, the answers."""
    tally = Tally()
    tested: list[str] = []
    found: set[str] = set()

    def seen(frame: wire.ClientFrame, code: str) -> None:
        name = frame.to if isinstance(frame, wire.Whisper) else getattr(frame, "name", "")
        exists = TELLS[way].get(code)
        if exists is not None:
            tested.append(name)
            if exists:
                found.add(name)

    make = frames(way)
    until = time.monotonic() + seconds
    login = PROBER if way == "whisper" else None
    sessions = 8 if way == "whisper" else 16  # an account's cap; an address's cap
    async with trio.open_nursery() as nursery:
        for _ in range(sessions):
            nursery.start_soon(
                functools.partial(
                    hammer,
                    target,
                    source,
                    make,
                    until,
                    tally,
                    login=login,
                    quiet=way != "whisper",  # a quiet session may not speak
                    seen=seen,
                )
            )
    return len(tested), found, tally


async def main(args: argparse.Namespace) -> int:
    async with open_target(args.port) as target:
        await register_all(target, ["alice", PROBER, *HIDDEN])
        results = {}
        for n, way in enumerate(WAYS):
            results[way] = await probe(target, way, address(11 + n), args.seconds)
        logged = target.log_count("refused: unknown_user")
        log_bytes = target.log_bytes()
    most = allowance(args.seconds)
    print(
        f"name probing from one address for {args.seconds:.0f} s each way; the login "
        f"allowance in that time is {most} checks ({most / args.seconds:.1f} names/s); "
        f"before the defences, 54,000 names/s by login"
    )
    goals: dict[str, bool] = {}
    for way, (tested, found, tally) in results.items():
        rate = tested / args.seconds
        hidden = ", ".join(sorted(found & set(HIDDEN))) or "none"
        print(
            f"  {way:8}: {tested} names tested ({rate:,.1f}/s); hidden accounts found: "
            f"{hidden}; answers {dict(sorted(tally.answers.items()))}, busy {tally.busy}"
        )
        bound = most
        if way == "whisper":
            bound = 8 * int(LIMITS.message_burst + LIMITS.message_rate * args.seconds)
        goals[f"{way}: names tested ({tested}) <= the allowance ({bound})"] = tested <= bound
    if logged is not None and log_bytes is not None:
        print(
            f"  the daemon logged {logged} 'unknown_user' login refusals, and "
            f"{log_bytes / 1e6:.1f} MB of log in all (past 6 a minute per address and reason, "
            "refusals are only counted)"
        )
    return verdict(goals)


def arguments() -> argparse.Namespace:
    options = parser(__doc__)
    options.add_argument("--seconds", type=float, default=10.0, help="seconds each way")
    return options.parse_args()


if __name__ == "__main__":
    sys.exit(trio.run(main, arguments()))
