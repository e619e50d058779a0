"""Look-alike names: registering names that pass for `alice`, or that hide characters.

    .venv/bin/python scripts/attack_lookalike_names.py

With `alice` registered, a registration for each name below is sent (each from an
address of its own, 127.0.0.11 onwards) straight to the daemon (the client's own check
of the name is skipped), and each answer printed;
then an honest new name, to show registrations still work.

Goal: every look-alike is refused, with a message that says why: the name it could be
mistaken for, or the character it may not hold (as U+XXXX and its name).
"""

from __future__ import annotations

import argparse
import sys

import trio
from attack_common import (
    Client,
    address,
    new_rid,
    open_target,
    parser,
    register_all,
    running,
    verdict,
)

from trio_chat import wire

LOOKALIKES = {
    "\u0430lice": "Cyrillic a (U+0430), then Latin",
    "aIice": "capital I for l",
    "al\u034fice": "U+034F COMBINING GRAPHEME JOINER inside",
    "alice\ufe0f": "U+FE0F VARIATION SELECTOR-16 after",
    "ali\u180bce": "U+180B MONGOLIAN FREE VARIATION SELECTOR ONE inside",
    "alic\u17b4e": "U+17B4 KHMER VOWEL INHERENT AQ inside",
    "\u3164": "only U+3164 HANGUL FILLER",
    "\u0430\u04cf\u0456\u0441\u0435": "all Cyrillic: a, palochka, i, es, ie",
    "\u0251lice": "Latin alpha (U+0251) for a",
    "a1ice": "digit 1 for l",
    "alice\u0358": "U+0358 COMBINING DOT ABOVE RIGHT after: shows as alice",
    "alice\u200b": "U+200B ZERO WIDTH SPACE after",
    "\uff41\uff4c\uff49\uff43\uff45": "fullwidth alice",
    "ALICE": "alice in capitals",
}
HONEST = "alicia"


def clear(code: str, message: str) -> bool:
    """Whether a refusal says why: the name it clashes with, or the character, by code point."""
    if code == "name_taken":
        return "alice" in message.lower()
    return code == "invalid_name" and "U+" in message


async def main(args: argparse.Namespace) -> int:
    async with open_target(args.port) as target:
        await register_all(target, ["alice"])
        answers: dict[str, tuple[str, str]] = {}
        for n, name in enumerate([*LOOKALIKES, HONEST]):
            # An address of its own for each: names found taken are throttled per address
            # (3, then one after 1, 2, 4 ... s), as failed logins are.
            async with running(Client(target, address(11 + n))) as client:
                await client.channel_open()
                handle = client.send(wire.Register(rid=new_rid(), name=name, password="pw-" * 4))
                code = await client.answer(handle, 30.0)
                message = handle.error.message if handle.error is not None else str(handle.result)
                answers[name] = (code, message)
        registered = target.log_lines(" registered from ")
    print("look-alike registrations next to 'alice':")
    for name, (code, message) in answers.items():
        what = LOOKALIKES.get(name, "an honest new name")
        print(f"  {name!a:42} {what}\n      -> {code}: {message}")
    if registered is not None:
        print(f"  accounts made, from the daemon's log: {len(registered)} (alice, {HONEST})")
    refused = [name for name in LOOKALIKES if answers[name][0] != "ok"]
    unclear = [name for name in LOOKALIKES if not clear(*answers[name])]
    return verdict(
        {
            f"all {len(LOOKALIKES)} look-alikes refused ({len(refused)})": len(refused)
            == len(LOOKALIKES),
            "each refusal says why (the clashing name, or U+XXXX)": not unclear,
            f"the honest name {HONEST!r} is registered": answers[HONEST][0] == "ok",
        }
    )


def arguments() -> argparse.Namespace:
    return parser(__doc__).parse_args()


if __name__ == "__main__":
    sys.exit(trio.run(main, arguments()))
