"""Run the seeded UDP fault proxy between trio-chat clients and a daemon.

    nice .venv/bin/python -m scripts.proxy --upstream 127.0.0.1:1600 --port 1700 --loss 0.1
    trio-chat chat --name alice --port 1700       # in another terminal: chat through it

Datagrams each way are dropped, duplicated, reordered and delayed as the options say,
with a seeded random generator. Ctrl-C stops it and prints what it did.
"""

from __future__ import annotations

import argparse
import signal
import sys

import trio

from trio_chat.testing.fault_proxy import FaultProxy, Weather


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def main(args: argparse.Namespace) -> None:
    weather = Weather(
        loss=args.loss,
        duplicate=args.duplicate,
        reorder=args.reorder,
        delay=args.delay,
        jitter=args.jitter,
    )
    proxy = FaultProxy(
        _address(args.upstream),
        seed=args.seed,
        to_server=weather,
        to_client=weather,
        host=args.host,
        port=args.port,
    )
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(proxy.run)
            print(f"proxy listening on {host}:{port}, forwarding to {args.upstream}", flush=True)
            async for _signal in signals:
                nursery.cancel_scope.cancel()
                break
    for name, stats in (("to server", proxy.stats.to_server), ("to client", proxy.stats.to_client)):
        print(
            f"{name}: {stats.datagrams} datagrams, {stats.dropped} dropped, "
            f"{stats.duplicated} duplicated, {stats.reordered} reordered"
        )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", default="127.0.0.1:1600", help="the daemon, HOST:PORT")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="the proxy's port (0: any)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--loss", type=float, default=0.1, help="share dropped, each way")
    parser.add_argument("--duplicate", type=float, default=0.0)
    parser.add_argument("--reorder", type=float, default=0.0)
    parser.add_argument("--delay", type=float, default=0.0, help="one-way delay (s)")
    parser.add_argument("--jitter", type=float, default=0.0, help="extra random delay (s)")
    return parser.parse_args()


if __name__ == "__main__":
    trio.run(main, parse_arguments())
    sys.exit(0)
