"""Fuzz a live daemon with generated and mutated datagrams, then check it still serves.

    nice .venv/bin/python -m scripts.faults_fuzz                  # 100,000 datagrams
    nice .venv/bin/python -m scripts.faults_fuzz --count 10000 --seed 3

Starts `trio-chat serve` as a child process, sends `--count` hostile datagrams (random
bytes, broken JSON, wrong types, byte and field mutations, and session datagrams with a
real session id and token, see tests/garbage.py), then registers a new account, logs in
two clients and has one say something to the other. Exits 1 unless the daemon is still
running, the message arrives, nothing was dropped by the kernel, and the daemon's output
holds no traceback.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import trio

from trio_chat import ClientConfig, PublicMessage, connect, register
from trio_chat.testing.daemon import DaemonProcess
from trio_chat.testing.live_fuzz import FUZZ_PASSWORD, fuzz_daemon


async def main(args: argparse.Namespace) -> int:
    config = ClientConfig(timeout=10.0)
    with tempfile.TemporaryDirectory() as workdir:
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(
                nursery,
                Path(workdir) / "chat.db",
                # The fuzzer logs in again and again from one address, and its garbage
                # includes failed logins and registrations: lift those limits for
                # 127.0.0.1, or the honest client afterwards would be refused (rightly).
                *("--sessions-per-address", "100000", "--login-free-failures", "1000000000"),
                *("--register-burst", "1000000000"),
            )
            host, port = await daemon.start()
            names = [f"fuzz{n}" for n in range(3)]
            for name in names:
                await register(host, port, name, FUZZ_PASSWORD, config=config)
            report = await fuzz_daemon(
                (host, port), count=args.count, seed=args.seed, names=names, sockets=8
            )
            print(
                f"sent {report.sent} datagrams ({report.bytes} bytes) in {report.seconds:.1f} s "
                f"({report.sent / report.seconds:.0f}/s), {report.replies} replies, "
                f"{report.logins} fuzzer logins, {report.barriers} round-trip barriers, "
                f"kernel drops at the daemon: {report.kernel_drops}",
                flush=True,
            )
            print("by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(report.kinds.items())))
            alive = daemon.running
            await register(host, port, "after", "after-the-storm", config=config)
            async with (
                connect(host, port, "after", "after-the-storm", config=config) as after,
                connect(host, port, names[0], FUZZ_PASSWORD, config=config) as witness,
            ):
                said = await after.say("still serving")
                heard = None
                with trio.move_on_after(10):
                    async for event in witness.events():
                        if isinstance(event, PublicMessage) and event.id == said.id:
                            heard = event
                            break
            status = await daemon.stop()
            nursery.cancel_scope.cancel()
    clean = "Traceback" not in daemon.text
    ok = alive and heard is not None and status == 0 and clean and report.kernel_drops in (0, None)
    print(
        f"daemon alive after the fuzz: {alive}; a new account registered, logged in and was "
        f"heard: {heard is not None}; clean exit: {status == 0}; traceback in its output: "
        f"{not clean}"
    )
    return 0 if ok else 1


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(trio.run(main, parse_arguments()))
