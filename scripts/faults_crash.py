"""SIGKILL the daemon again and again, during registration storms and during chat.

    nice .venv/bin/python -m scripts.faults_crash                # 20 storms, 10 chat runs x 3
    nice .venv/bin/python -m scripts.faults_crash --storms 5 --chats 2

Each storm registers accounts from concurrent clients and kills the daemon once at a
seeded random moment, then restarts it on the same database: every acknowledged account
must log in. Each chat run kills the daemon `--kills` times while senders talk; in the
end every message must be acknowledged, stored once, and seen once and in order by a
listener. Exits 1 if any promise was broken.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import trio

from trio_chat.testing.crash_run import chat_through_kills, registration_storm
from trio_chat.testing.daemon import private_client_data


async def main(args: argparse.Namespace) -> int:
    broken = 0
    totals = dict.fromkeys(("kills", "acknowledged", "attempted", "logged_in", "taken"), 0)
    for n in range(args.storms):
        with tempfile.TemporaryDirectory() as workdir:
            storm = await registration_storm(
                Path(workdir), seed=args.seed + n, accounts=args.accounts, kill_within=1.0
            )
        ok = (
            sorted(storm.logged_in) == sorted(storm.acknowledged)
            and storm.integrity == "ok"
            and storm.accounts_stored >= len(storm.acknowledged)
        )
        broken += not ok
        totals["kills"] += storm.kills
        totals["attempted"] += storm.attempted
        totals["acknowledged"] += len(storm.acknowledged)
        totals["logged_in"] += len(storm.logged_in)
        totals["taken"] += len(storm.taken_after_restart)
        print(
            f"storm {n}: {storm.attempted} registrations, {len(storm.acknowledged)} "
            f"acknowledged, {len(storm.logged_in)} logged in after the kill, "
            f"{len(storm.unreachable)} unanswered, {len(storm.taken_after_restart)} told "
            f"'taken' on resend, {storm.accounts_stored} stored, integrity {storm.integrity}"
            f"{'' if ok else '  BROKEN'}",
            flush=True,
        )
    chat = dict.fromkeys(("kills", "sent", "acknowledged", "stored", "seen", "reconnects"), 0)
    for n in range(args.chats):
        with tempfile.TemporaryDirectory() as workdir:
            result = await chat_through_kills(
                Path(workdir), seed=args.seed + n, kills=args.kills, senders=args.senders
            )
        ok = (
            not result.errors
            and result.integrity == "ok"
            and result.acknowledged == result.sent == result.stored == result.seen
            and result.missing_from_storage == result.stored_twice == 0
            and result.seen_twice == result.seen_not_stored == result.out_of_order == 0
        )
        broken += not ok
        for key in chat:
            chat[key] += getattr(result, key)
        print(
            f"chat {n}: {result.kills} kills, {result.sent} sent, {result.acknowledged} "
            f"acknowledged, {result.stored} stored ({result.stored_twice} twice, "
            f"{result.missing_from_storage} acknowledged but missing), listener saw "
            f"{result.seen} ({result.seen_twice} twice, {result.seen_not_stored} not as "
            f"stored, {result.out_of_order} senders out of order), {result.reconnects} "
            f"reconnects ({result.history_pages} paging back through history), "
            f"integrity {result.integrity}{'' if ok else '  BROKEN'}",
            *result.errors,
            flush=True,
        )
    print(
        f"storms: {totals['kills']} kills, {totals['attempted']} registrations, "
        f"{totals['acknowledged']} acknowledged, {totals['logged_in']} of them logged in "
        f"afterwards; {totals['taken']} resends told 'taken'"
    )
    print(
        f"chat: {chat['kills']} kills, {chat['sent']} messages, {chat['acknowledged']} "
        f"acknowledged, {chat['stored']} stored, {chat['seen']} seen by the listener, "
        f"{chat['reconnects']} listener reconnects"
    )
    print("every promise kept" if not broken else f"{broken} runs BROKE a promise")
    return 1 if broken else 0


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storms", type=int, default=20)
    parser.add_argument("--accounts", type=int, default=40, help="registrations per storm")
    parser.add_argument("--chats", type=int, default=10)
    parser.add_argument("--kills", type=int, default=3, help="kills per chat run")
    parser.add_argument("--senders", type=int, default=3)
    parser.add_argument("--seed", type=int, default=100)
    return parser.parse_args()


if __name__ == "__main__":
    private_client_data()
    sys.exit(trio.run(main, parse_arguments()))
