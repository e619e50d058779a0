"""Chat through a bad network: the real daemon, client processes, the seeded fault proxy.

    nice .venv/bin/python -m scripts.faults_loss                 # 10% and 30%, 5 x 20 x 1000
    nice .venv/bin/python -m scripts.faults_loss --loss 0.3 --count 200

Five senders each say `--count` messages through the proxy to twenty receivers; the
proxy drops `--loss` of the datagrams each way, and duplicates, reorders and delays
some. Prints, per loss rate, the delivered fraction, the duplicates the applications
saw, the time, and whether every message arrived exactly once in its sender's order.
Exits 1 if any did not.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import trio

from trio_chat.testing.daemon import private_client_data
from trio_chat.testing.loss_run import LossResult, loss_run


def report(result: LossResult) -> str:
    proxy = result.proxy
    dropped = proxy.to_server.dropped + proxy.to_client.dropped
    datagrams = proxy.to_server.datagrams + proxy.to_client.datagrams
    return "\n".join(
        [
            f"loss {result.loss:.0%} each way: {result.senders} senders x {result.count} "
            f"messages -> {result.receivers} receivers",
            f"  delivered      {result.delivered}/{result.expected} "
            f"({result.fraction:.2%}), duplicates seen by applications {result.duplicates}, "
            f"receivers out of order {result.out_of_order}",
            f"  acknowledged   {result.acknowledged}, stored {result.stored} "
            f"(twice: {result.stored_duplicates})",
            f"  time           {result.seconds:.1f} s to deliver everything "
            f"({result.wall_seconds:.1f} s until every client process had logged out and exited)",
            f"  network        {datagrams} datagrams, {dropped} dropped, "
            f"{proxy.to_server.duplicated + proxy.to_client.duplicated} duplicated, "
            f"{proxy.to_server.reordered + proxy.to_client.reordered} reordered",
            f"  clients        {result.disconnects} session losses (resumed), "
            f"{result.login_attempts} logins for {result.senders + result.receivers} clients",
            f"  exactly once, in order: {'yes' if result.perfect else 'NO'}",
            *(f"  error: {error}" for error in result.errors),
        ]
    )


async def main(args: argparse.Namespace) -> int:
    failed = 0
    for loss in args.loss:
        with tempfile.TemporaryDirectory() as workdir:
            result = await loss_run(
                Path(workdir),
                loss=loss,
                senders=args.senders,
                receivers=args.receivers,
                count=args.count,
                seed=args.seed,
                duplicate=args.duplicate,
                reorder=args.reorder,
                delay=args.delay,
                jitter=args.jitter,
                deadline=args.deadline,
            )
        print(report(result), flush=True)
        failed += not result.perfect
    return 1 if failed else 0


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loss", type=float, nargs="+", default=[0.1, 0.3])
    parser.add_argument("--senders", type=int, default=5)
    parser.add_argument("--receivers", type=int, default=20)
    parser.add_argument("--count", type=int, default=1000, help="messages per sender")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duplicate", type=float, default=0.02)
    parser.add_argument("--reorder", type=float, default=0.05)
    parser.add_argument("--delay", type=float, default=0.001, help="one-way delay (s)")
    parser.add_argument("--jitter", type=float, default=0.002, help="extra random delay (s)")
    parser.add_argument("--deadline", type=float, default=1800.0)
    return parser.parse_args()


if __name__ == "__main__":
    private_client_data()
    sys.exit(trio.run(main, parse_arguments()))
