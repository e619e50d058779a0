"""Sessions: as many as possible for one account, as many channels as possible from one
address, and a session moved onto a full address.

    .venv/bin/python scripts/attack_sessions.py

1. `alice` logs in from 12 addresses (127.0.0.2 to .13), each session kept open, then
   once more with a resumption ticket from 127.0.0.14. Goal: 8 sessions, no more.
2. 127.0.0.20 opens channels (handshakes, no login) and keeps them until one is
   refused. Goal: 20 channels, no more: 4 without a cookie (they count against no
   address's cap, so INITs spoofed from someone's address cannot fill it), then 16 that
   echo a cookie and count at once.
3. 127.0.0.21 holds 16 logged-in sessions (`resident1` and `resident2`, 8 each);
   `mover` logs in from 127.0.0.22, then its next datagrams come from 127.0.0.21 (its
   NAT moved it, or someone wants in). Goal: the move is refused (the session ends,
   `too_many_sessions`), the full address still holds 16 and takes no 17th, and the
   residents are still served.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
from typing import Any

import trio
from attack_common import (
    Client,
    Target,
    address,
    client_socket,
    open_target,
    outcome,
    parser,
    register_all,
    running,
    verdict,
)

from trio_chat import wire
from trio_chat.errors import ChatError

ACCOUNT_TRIES = 12
CHANNEL_TRIES = 24


async def account_sessions(target: Target, stack: contextlib.AsyncExitStack) -> list[str]:
    """Log `alice` in from one address after another, keeping every session; then once
    with a ticket. Return each outcome."""
    outcomes: list[str] = []
    ticket = ""
    for n in range(ACCOUNT_TRIES):
        client = await stack.enter_async_context(running(Client(target, address(2 + n), "alice")))
        outcomes.append(await client.logged_in())
        ticket = ticket or client.core.ticket
    resumed = Client(target, address(2 + ACCOUNT_TRIES), "alice", password="")
    resumed.core.ticket = ticket
    async with running(resumed):
        outcomes.append("ticket: " + await resumed.logged_in())
    return outcomes


async def channels(target: Target, source: str, stack: contextlib.AsyncExitStack) -> list[str]:
    """Open channels from `source`, keeping each, until one is refused."""
    outcomes: list[str] = []
    for _ in range(CHANNEL_TRIES):
        client = await stack.enter_async_context(running(Client(target, source)))
        opened = await client.channel_open()
        outcomes.append("open" if opened else outcome(client.core))
        if not opened:
            break
    return outcomes


async def from_elsewhere(mover: Client, moved: socket.socket) -> tuple[bool, int, int]:
    """Send a request of `mover`'s from the socket `moved`; for 1 s, take what comes back
    on either socket. Return whether it was answered, and the datagrams that came to the
    new address and to the old one. A session the daemon has already ended sends nothing."""
    try:
        handle = mover.core.who()
    except ChatError:
        return False, 0, 0
    for datagram in mover.core.datagrams_to_send(trio.current_time()):
        moved.send(datagram)
    came = {moved: 0, mover.sock: 0}
    with trio.move_on_after(1.0):
        while True:
            await trio.sleep(0.05)
            for sock in came:
                with contextlib.suppress(BlockingIOError):
                    mover.core.receive_datagram(sock.recv(2048), trio.current_time())
                    came[sock] += 1
    return handle.done, came[moved], came[mover.sock]


async def move(target: Target) -> dict[str, Any]:
    """Fill 127.0.0.21 with residents, then move `mover` onto it; what each side saw."""
    crowded = address(21)
    async with contextlib.AsyncExitStack() as stack:
        residents = [
            await stack.enter_async_context(running(Client(target, crowded, name)))
            for name in ["resident1", "resident2"] * 8
        ]
        logged = [await resident.logged_in() for resident in residents]
        mover = await stack.enter_async_context(running(Client(target, address(22), "mover")))
        await mover.logged_in()
        # From now on the mover's datagrams leave from the crowded address (a NAT moved it).
        mover.frozen = True
        with client_socket(target, crowded) as moved:
            first = await from_elsewhere(mover, moved)
            second = await from_elsewhere(mover, moved)
        async with running(Client(target, crowded)) as seventeenth:
            await seventeenth.channel_open(5.0)
            extra = "open" if seventeenth.core.channel is not None else outcome(seventeenth.core)
        still = await residents[0].answer(residents[0].send(wire.Who()), 5.0)
        return {
            "residents": logged.count("welcome"),
            "first": first,
            "second": second,
            "seventeenth": extra,
            "resident": still,
        }


async def main(args: argparse.Namespace) -> int:
    async with open_target(args.port) as target:
        await register_all(target, ["alice", "resident1", "resident2", "mover"])
        async with contextlib.AsyncExitStack() as stack:
            per_account = await account_sessions(target, stack)
        async with contextlib.AsyncExitStack() as stack:
            per_address = await channels(target, address(20), stack)
        moved = await move(target)
        ended = target.log_lines("session of mover")
    welcomed = per_account.count("welcome")
    opened = per_address.count("open")
    print(f"sessions of one account, from {ACCOUNT_TRIES} addresses then a ticket:")
    print(f"  {welcomed} welcomed; answers in order: {', '.join(per_account)}")
    print(f"channels from one address: {opened} opened; answers: {', '.join(per_address)}")
    answered, to_new, to_old = moved["first"]
    print(
        f"moving a session onto a full address: {moved['residents']} residents logged in "
        f"there; the mover's first request from it was "
        f"{'answered' if answered else 'not answered'} ({to_new} datagrams came to the full "
        f"address, {to_old} to the mover's old one); its next request was "
        f"{'answered' if moved['second'][0] else 'not answered'}; a 17th channel there: "
        f"{moved['seventeenth']}; a resident's request: {moved['resident']}"
    )
    if ended is not None:
        print("  the daemon's log: " + ("".join(ended).strip() or "nothing about the mover"))
    move_refused = (
        to_new == 0
        and not moved["second"][0]
        and moved["second"][1] == 0
        and (ended is None or any("ended: too_many_sessions" in line for line in ended))
    )
    return verdict(
        {
            f"8 sessions for one account ({welcomed})": welcomed == 8,
            "a ticket gets no 9th": per_account[-1] == "ticket: too_many_sessions",
            f"20 channels from one address ({opened})": opened == 20
            and per_address[-1] == "too_many_sessions",
            "the move is refused: the session ends, nothing goes to the full address": (
                move_refused
            ),
            "the full address takes no 17th channel and still serves its residents": (
                moved["residents"] == 16
                and moved["seventeenth"] == "too_many_sessions"
                and moved["resident"] == "ok"
            ),
        }
    )


def arguments() -> argparse.Namespace:
    return parser(__doc__).parse_args()


if __name__ == "__main__":
    sys.exit(trio.run(main, arguments()))
