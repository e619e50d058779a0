"""A long run of the daemon under a churning population, watching what grows.

    nice -n 10 .venv/bin/python scripts/soak.py --minutes 20
    nice -n 10 .venv/bin/python scripts/soak.py --minutes 0.2 --clients 2 --accounts 4 \\
        --prefill 0 --sample-every 2 --operator-every 3      # a few seconds, to try it

One daemon process is started (127.0.0.1, a free port, a temporary database), the room is
filled with `--prefill` messages (by default the daemon's in-memory window of the latest
messages and a few more, so that the window is full before sampling matters), then
`--clients` workers come and go until `--minutes` have passed, each time picking one of:

- a session through the Python client API (`trio_chat.connect`) that talks in the room,
  whispers to people online and offline (their mailboxes), asks `who` and `history`,
  now and then changes its password (and goes on with the new one), and logs out;
- a session of the client core that talks, then logs out, says goodbye without waiting,
  or drops without a word (its socket closed: the daemon times the session out);
- a login with a resumption ticket an earlier session of the account was given;
- a login with a wrong password;
- a new account registered;
- a burst of garbage datagrams.

Each picks its source address: one of 127.0.0.2 to 127.0.0.250, or now and then an
address never used before (127.A.B.C), so that the daemon meets new addresses all along.
Meanwhile the operator, every `--operator-every` seconds, runs one `trio-chat` command on
the daemon's control socket: `accounts kick`, `mute`/`unmute`, `lock`/`unlock`, `bans add
--for 30s` of an address in use and `bans remove`, `messages remove` of a recent message,
and `accounts remove` of an account, given out again with a new password (`accounts add`)
a moment later.

Every `--sample-every` seconds the daemon process is read from outside (`/proc`): resident
memory, open file descriptors, threads, CPU time, and the sizes of its database and its
write-ahead log; a table row is printed each time. At the end, the growth per hour of
each over the run's second half (after the warm-up) is printed, a straight line fitted
through its samples, and whatever grows steadily is flagged. Exits 1 if the daemon died,
if a sample could not be taken, or if no session got in at all.

With `--heap DIR` the daemon runs under `scripts/heap_watch.py`: its Python heap traced,
a snapshot written into DIR every `--heap-every` seconds, and at the end the source lines
whose allocations grew most over the second half of the snapshots are printed (compare
any two with `heap_watch.py --compare`). Memory outside Python's heap (SQLite's page
cache, the C library's arenas) is not traced, and each snapshot steps the resident
memory up (see `heap_watch.py`): read its growth between two snapshots.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import itertools
import math
import os
import random
import re
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import heap_watch
import trio
from attack_common import (
    HOST,
    LIMITS,
    PASSWORD,
    Client,
    Target,
    address,
    log_in_once,
    open_target,
    register,
    register_all,
    running,
)

import trio_chat
import trio_chat.client
from trio_chat import ChatError, ClientConfig
from trio_chat.client_protocol import Handle
from trio_chat.testing.daemon import CLI, private_client_data

SOURCE: contextvars.ContextVar[str] = contextvars.ContextVar("SOURCE", default=HOST)
"""The address the Python API's sockets of this task are bound to."""


async def _bound_socket(host: str, port: int) -> socket.socket:
    """`trio_chat.client.open_socket`, bound to this task's `SOURCE`: the API has no
    option for a source address, and the daemon must see many."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((SOURCE.get(), 0))
        sock.connect((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


trio_chat.client.open_socket = _bound_socket  # type: ignore[attr-defined]

WRONG = "not-the-password-at-all"
CHOICES: Sequence[tuple[str, float]] = (
    ("api", 0.34),
    ("core", 0.30),
    ("resume", 0.12),
    ("wrong", 0.08),
    ("register", 0.04),
    ("garbage", 0.12),
)
"""What a worker does next, and how often."""


@dataclass
class Population:
    """The accounts, who is using which, and what happened to everyone."""

    target: Target
    database: Path | None
    rng: random.Random
    passwords: dict[str, str] = field(default_factory=dict)
    free: list[str] = field(default_factory=list)
    tickets: dict[str, str] = field(default_factory=dict)
    in_use: Counter[str] = field(default_factory=Counter)
    """Source addresses now used by a worker (those the operator bans)."""
    recent: list[int] = field(default_factory=list)
    """Ids of messages said lately (those the operator removes)."""
    counts: Counter[str] = field(default_factory=Counter)
    fresh: int = 0
    registered: int = 0
    choices: Sequence[tuple[str, float]] = CHOICES
    """What a worker does next, and how often (`--registrations` sets that share)."""

    def source(self) -> str:
        """A source address: usually one of the usual 249, sometimes one never used."""
        if self.rng.random() < 0.15:
            self.fresh += 1
            n = self.fresh
            return f"127.{1 + n // 62500 % 254}.{n // 250 % 250}.{1 + n % 250}"
        return address(self.rng.randrange(2, 251))

    def anyone(self) -> str:
        return self.rng.choice(sorted(self.passwords))

    def said(self, message_id: int) -> None:
        self.recent.append(message_id)
        del self.recent[:-50]


def text(rng: random.Random) -> str:
    return " ".join(rng.choice(["tea", "build", "ok", "lunch", "ship it", "why?"]) for _ in "abc")


def failed(population: Population, kind: str, error: BaseException) -> None:
    code = getattr(error, "code", "") or type(error).__name__
    population.counts[f"{kind} {code}"] += 1


# --- what a worker does -------------------------------------------------------------------------


async def api_session(population: Population, name: str, source: str) -> None:
    """A session through `trio_chat.connect` doing a few things, then logging out."""
    rng, target = population.rng, population.target
    SOURCE.set(source)
    config = ClientConfig(reconnect=False, timeout=5.0)
    password = population.passwords[name]
    async with trio_chat.connect(
        target.host,
        target.port,
        name,
        password,
        config=config,
        quiet=rng.random() < 0.1,
        server_key=target.key,
    ) as chat:
        population.counts["api welcome"] += 1

        async def read() -> None:
            with contextlib.suppress(ChatError):
                async for _event in chat.events():
                    population.counts["events"] += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            for _ in range(rng.randrange(2, 12)):
                await trio.sleep(rng.uniform(0.3, 2.5))
                action = rng.random()
                kind = "api"
                try:
                    if action < 0.45 and not chat.quiet:
                        kind = "api say"
                        message = await chat.say(text(rng))
                        population.said(message.id)
                        population.counts["said"] += 1
                    elif action < 0.7 and not chat.quiet:
                        kind = "api whisper"
                        await chat.whisper(population.anyone(), text(rng))
                        population.counts["whispered"] += 1
                    elif action < 0.82:
                        kind = "api who"
                        await chat.who()
                        population.counts["who"] += 1
                    elif action < 0.97:
                        before = rng.choice(population.recent) if population.recent else None
                        kind = "api history"
                        await chat.history(rng.randrange(1, 60), before)
                        population.counts["history"] += 1
                    else:
                        new = f"{PASSWORD}-{rng.randrange(10**6)}"
                        kind = "api password"
                        await chat.change_password(password, new)
                        population.passwords[name] = password = new
                        population.counts["password changed"] += 1
                except ChatError as error:
                    failed(population, kind, error)
                    if not chat.connected:
                        break
            nursery.cancel_scope.cancel()


async def answered(client: Client, handle: Handle, within: float) -> None:
    """Wait until `handle` is answered or the session ends, for at most `within` s."""
    await client.until(lambda: handle.done or client.core.closed, within)


async def core_session(population: Population, name: str, source: str) -> None:
    """A session of the client core that talks, then leaves one of three ways."""
    rng = population.rng
    client = Client(population.target, source, name, population.passwords[name], timeout=5.0)
    client.on_event = lambda _event: population.counts.update(["events"])
    async with running(client):
        code = await client.logged_in(15.0)
        population.counts[f"core {code}"] += 1
        if code != "welcome":
            return
        core = client.core
        population.tickets[name] = core.ticket
        for _ in range(rng.randrange(1, 8)):
            await trio.sleep(rng.uniform(0.3, 2.5))
            if core.closed:
                return
            try:
                if rng.random() < 0.5:
                    handle = core.say(text(rng))
                else:
                    handle = core.whisper(population.anyone(), text(rng))
            except ChatError as error:
                failed(population, "core", error)
                return
            client.flush()
            await answered(client, handle, 15.0)
            if handle.done and handle.error is None:
                population.counts["core sent"] += 1
            elif handle.error is not None:
                population.counts[f"core {handle.error.code}"] += 1
        ending = rng.random()
        if ending < 0.4 and not core.closed:
            handle = core.logout()
            client.flush()
            await answered(client, handle, 5.0)
            population.counts["core logout"] += 1
        elif ending < 0.7:
            population.counts["core goodbye"] += 1  # `running` closes it
        else:
            client.frozen = True  # no goodbye: the socket just closes
            population.counts["core dropped"] += 1


async def resume(population: Population, name: str, source: str) -> None:
    """A login with the ticket an earlier session was given, then a goodbye or a drop."""
    ticket = population.tickets.get(name)
    if not ticket:
        population.counts["resume no ticket yet"] += 1
        return
    client = Client(population.target, source, name, password="", timeout=5.0)
    client.core.ticket = ticket
    async with running(client):
        code = await client.logged_in(15.0)
        population.counts[f"resume {code}"] += 1
        if code == "welcome":
            population.tickets[name] = client.core.ticket
            await trio.sleep(population.rng.uniform(0.5, 5.0))
            client.frozen = population.rng.random() < 0.5


async def garbage(population: Population, source: str) -> None:
    """A burst of datagrams no client would send, each type byte and random ones."""
    rng, target = population.rng, population.target
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.bind((source, 0))
        sock.connect((target.host, target.port))
        sock.setblocking(False)
        for _ in range(rng.randrange(5, 40)):
            head = bytes([rng.choice([rng.randrange(256), rng.randrange(1, 10)])])
            with contextlib.suppress(OSError):
                sock.send(head + rng.randbytes(rng.randrange(0, 1300)))
            population.counts["garbage datagrams"] += 1
            await trio.sleep(0.01)


async def one_turn(population: Population) -> None:
    rng = population.rng
    kinds, weights = zip(*population.choices, strict=True)
    kind = rng.choices(kinds, weights)[0]
    source = population.source()
    population.in_use[source] += 1
    try:
        if kind == "garbage":
            await garbage(population, source)
        elif kind == "register":
            population.registered += 1
            name = f"soak-new-{population.registered}"
            code = await register(population.target, source, name)
            population.counts[f"register {code}"] += 1
            if code == "ok":
                population.passwords[name] = PASSWORD
                population.free.append(name)
        elif kind == "wrong":
            code, _ = await log_in_once(population.target, source, population.anyone(), WRONG)
            population.counts[f"wrong password: {code}"] += 1
        elif population.free:
            name = population.free.pop(rng.randrange(len(population.free)))
            try:
                if kind == "api":
                    await api_session(population, name, source)
                elif kind == "core":
                    await core_session(population, name, source)
                else:
                    await resume(population, name, source)
            finally:
                population.free.append(name)
    except ChatError as error:
        failed(population, kind, error)
    except OSError as error:
        population.counts[f"{kind} OSError {error.errno}"] += 1
    finally:
        population.in_use[source] -= 1
        if not population.in_use[source]:
            del population.in_use[source]


async def worker(population: Population, until: float) -> None:
    while time.monotonic() < until:
        with trio.move_on_after(120):
            await one_turn(population)
        await trio.sleep(population.rng.uniform(0.2, 2.0))


# --- the operator --------------------------------------------------------------------------------


def operator_command(population: Population, locked: list[str]) -> list[str]:
    """One `trio-chat` command the operator runs now."""
    rng = population.rng
    roll = rng.random()
    name = population.anyone()
    if locked and roll < 0.15:
        return ["accounts", "unlock", locked.pop()]
    if roll < 0.25:
        locked.append(name)
        return ["accounts", "lock", name]
    if roll < 0.45:
        return ["accounts", "kick", name]
    if roll < 0.6:
        return ["accounts", rng.choice(["mute", "unmute"]), name]
    if roll < 0.7:
        sources = [source for source in population.in_use if source != HOST]
        banned = rng.choice(sources) if sources else address(rng.randrange(2, 251))
        if rng.random() < 0.3:
            return ["bans", "remove", banned]
        return ["bans", "add", banned, "--for", "30s"]
    if roll < 0.8 and name not in locked:
        return ["accounts", "remove", name, "--yes"]
    if population.recent:
        return ["messages", "remove", str(rng.choice(population.recent))]
    return ["accounts", "list"]


async def operator_run(population: Population, *command: str) -> int:
    """Run `trio-chat COMMAND` on the daemon's database, as its operator; its exit status."""
    assert population.database is not None
    done = await trio.run_process(
        ["nice", "-n", "10", *CLI, *command, "--db", str(population.database)],
        check=False,
        capture_stdout=True,
        capture_stderr=True,
    )
    return done.returncode


async def operator(population: Population, every: float, until: float) -> None:
    """Run an operator's command every `every` seconds; unlock what is locked at the end."""
    locked: list[str] = []
    with tempfile.TemporaryDirectory(prefix="trio-chat-soak-") as folder:
        given = trio.Path(folder, "password")  # what `accounts add` reads a new password from
        while time.monotonic() < until:
            await trio.sleep(every)
            command = operator_command(population, locked)
            code = await operator_run(population, *command)
            population.counts[f"operator {' '.join(command[:2])}: exit {code}"] += 1
            if command[:2] == ["accounts", "lock"] and code == 0:
                # Kept out for a while, then let in again.
                await trio.sleep(every)
                await operator_run(population, "accounts", "unlock", locked.pop())
            elif command[:2] == ["accounts", "remove"] and code == 0:
                # Gone for a while (its sessions ended, its logins and whispers refused),
                # then its name given out again: a new account, with a new password.
                await trio.sleep(every)
                name, password = command[2], f"{PASSWORD}-{population.rng.randrange(10**6)}"
                await given.write_text(password + "\n")
                code = await operator_run(
                    population, "accounts", "add", name, "--password-file", str(given)
                )
                population.counts[f"operator accounts add: exit {code}"] += 1
                if code == 0:
                    population.passwords[name] = password
                    population.tickets.pop(name, None)


# --- the samples ---------------------------------------------------------------------------------

COLUMNS = ("rss_kib", "fds", "threads", "cpu_s", "db_kib", "wal_kib")


@dataclass
class Sample:
    at: float
    """Seconds since the churn began."""
    values: dict[str, float]


def take_sample(target: Target, database: Path, began: float) -> Sample:
    """The daemon process and its files now, read from outside."""
    pid = target.pid
    assert pid is not None
    status = {
        key: value.split()[0]
        for key, _, value in (
            line.partition(":\t") for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        if value.split()
    }
    wal = database.with_name(database.name + "-wal")
    return Sample(
        time.monotonic() - began,
        {
            "rss_kib": float(status["VmRSS"]),
            "fds": float(len(os.listdir(f"/proc/{pid}/fd"))),
            "threads": float(status["Threads"]),
            "cpu_s": target.cpu_seconds() or 0.0,
            "db_kib": database.stat().st_size / 1024,
            "wal_kib": wal.stat().st_size / 1024 if wal.exists() else 0.0,
        },
    )


ONLINE = re.compile(r"\d+ connections? \(\d+ (?:person|people) online\)")


def summary_fields(target: Target) -> str:
    """Connections and people online, from the daemon's latest summary line."""
    lines = target.log_lines(" online)") or []
    found = ONLINE.search(lines[-1]) if lines else None
    return found.group(0) if found else ""


def row(sample: Sample, before: Sample | None, note: str) -> str:
    values = sample.values
    cpu = math.nan
    if before is not None and sample.at > before.at:
        cpu = 100 * (values["cpu_s"] - before.values["cpu_s"]) / (sample.at - before.at)
    return (
        f"{sample.at / 60:7.1f} {values['rss_kib']:9.0f} {values['fds']:5.0f} "
        f"{values['threads']:7.0f} {values['cpu_s']:7.1f} {cpu:5.1f} "
        f"{values['db_kib']:8.0f} {values['wal_kib']:8.0f}  {note}"
    )


HEADER = "    min   rss_kib   fds threads   cpu_s  cpu%   db_kib  wal_kib  daemon's last summary"

NOISE = {"rss_kib": 1024.0, "fds": 2.0, "threads": 1.0, "db_kib": 64.0, "wal_kib": 512.0}
"""Growth over the second half below which a column is taken as flat."""


def slope(points: Sequence[tuple[float, float]]) -> float:
    """The least-squares slope of `points` (x, y), per unit of x."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def growth(samples: Sequence[Sample]) -> list[str]:
    """Lines saying how each column grew per hour over the second half, flagged when it
    grew steadily: by more than its noise, and in most steps."""
    half = samples[-1].at / 2
    late = [sample for sample in samples if sample.at >= half]
    if len(late) < 3:
        return ["  too few samples in the second half for a growth rate"]
    lines = []
    for column in COLUMNS:
        points = [(sample.at / 3600, sample.values[column]) for sample in late]
        per_hour = slope(points)
        if column == "cpu_s":
            lines.append(
                f"  cpu: {100 * per_hour / 3600:.1f}% of a core on average over the second half"
            )
            continue
        span = points[-1][0] - points[0][0]
        steps = [b[1] - a[1] for a, b in itertools.pairwise(points)]
        rising = sum(step > 0 for step in steps) / len(steps)
        steady = per_hour * span > NOISE[column] and rising >= 0.6
        lines.append(
            f"  {column}: {points[0][1]:.0f} -> {points[-1][1]:.0f}, {per_hour:+.1f} an hour"
            f" (rising in {rising:.0%} of steps)" + ("  GROWING STEADILY" if steady else "")
        )
    return lines


async def sampler(
    target: Target, database: Path, every: float, until: float, began: float
) -> list[Sample]:
    samples: list[Sample] = []
    print(HEADER, flush=True)
    while True:
        sample = take_sample(target, database, began)
        before = samples[-1] if samples else None
        samples.append(sample)
        print(row(sample, before, summary_fields(target)), flush=True)
        if time.monotonic() >= until:
            return samples
        await trio.sleep(min(every, max(0.0, until - time.monotonic())))


# --- the run -------------------------------------------------------------------------------------


async def prefill(target: Target, names: Sequence[str], messages: int) -> None:
    """Fill the room with `messages` messages, from a session of each of `names` at once
    (each from an address of its own), a burst at a time, as the message rate allows."""
    config = ClientConfig(reconnect=False, timeout=10.0)

    async def fill(n: int, name: str, share: int) -> None:
        SOURCE.set(address(2 + n % 249))
        async with trio_chat.connect(
            target.host, target.port, name, PASSWORD, config=config, server_key=target.key
        ) as chat:
            sent = 0
            while sent < share:
                batch = min(LIMITS.message_burst, share - sent)
                for k in range(batch):
                    chat.say_nowait(f"filling the room: {name}, message {sent + k}")
                await chat.drain()
                sent += batch
                await trio.sleep(batch / LIMITS.message_rate)

    async with trio.open_nursery() as nursery:
        for n, name in enumerate(names):
            share = messages // len(names) + (n < messages % len(names))
            nursery.start_soon(fill, n, name, share)


async def main(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    program = CLI
    if args.heap is not None:
        watch = [str(Path(__file__).with_name("heap_watch.py")), "--into", str(args.heap)]
        program = [sys.executable, *watch, "--every", str(args.heap_every), "--"]
    summary = ("--summary-every", str(args.sample_every))
    async with open_target(None, *summary, program=program) as target:
        assert target.daemon is not None
        database = target.daemon.database
        names = [f"soak-{n}" for n in range(args.accounts)]
        await register_all(target, names)
        population = Population(target, database, rng, dict.fromkeys(names, PASSWORD), names[:])
        population.choices = [
            (kind, args.registrations if kind == "register" else share) for kind, share in CHOICES
        ]
        if args.prefill:
            began = time.monotonic()
            await prefill(target, names, args.prefill)
            print(f"room filled with {args.prefill} messages in {time.monotonic() - began:.0f} s")
        print(
            f"churn: {args.clients} workers over {args.accounts} accounts for "
            f"{args.minutes:g} min, the operator every {args.operator_every:g} s; daemon pid "
            f"{target.pid}",
            flush=True,
        )
        began = time.monotonic()
        until = began + args.minutes * 60
        died = False
        async with trio.open_nursery() as nursery:
            for _ in range(args.clients):
                nursery.start_soon(worker, population, until)
            nursery.start_soon(operator, population, args.operator_every, until)
            try:
                samples = await sampler(target, database, args.sample_every, until, began)
            except (FileNotFoundError, ProcessLookupError):
                died = True
                samples = []
            nursery.cancel_scope.cancel()
        running_still = target.daemon.running
        if args.log is not None:
            args.log.write_text(target.daemon.text)
    print(f"samples: {len(samples)}; growth per hour over the second half:")
    for line in growth(samples) if samples else ["  none"]:
        print(line)
    if args.heap is not None:
        print(heap_growth(args.heap))
    print("what the population did:")
    for key, count in sorted(population.counts.items()):
        print(f"  {key}: {count}")
    print(f"  new addresses used: {population.fresh}")
    welcomed = population.counts["api welcome"] + population.counts["core welcome"]
    if died or not running_still:
        print("the daemon DIED during the run")
    return 0 if welcomed and not died and running_still else 1


def heap_growth(folder: Path) -> str:
    """What the daemon's Python heap grew by over the second half of the snapshots its
    `heap_watch.py` wrote into `folder` (the first one and the last, if fewer than four)."""
    taken = heap_watch.snapshots(folder)
    if len(taken) < 2:
        return f"the daemon's heap: {len(taken)} snapshot(s) in {folder}, too few to compare"
    first = taken[len(taken) // 2] if len(taken) >= 4 else taken[0]
    lines = heap_watch.compare(first, taken[-1], top=12)
    return "\n".join([f"the daemon's heap from {first.name} to {taken[-1].name}:", *lines])


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="length of the churn")
    parser.add_argument("--clients", type=int, default=30, help="workers at once")
    parser.add_argument("--accounts", type=int, default=30, help="accounts made at the start")
    parser.add_argument(
        "--prefill",
        type=int,
        default=LIMITS.window_messages + 200,
        help="messages said before the churn (0: none)",
    )
    parser.add_argument("--sample-every", type=float, default=30.0, help="seconds")
    parser.add_argument("--operator-every", type=float, default=15.0, help="seconds")
    parser.add_argument(
        "--registrations",
        type=float,
        default=dict(CHOICES)["register"],
        help="the share of turns that register a new account (every account is kept in "
        "memory: 0 shows whether the rest levels off)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log", type=Path, help="write the daemon's log there at the end")
    parser.add_argument(
        "--heap",
        type=Path,
        help="trace the daemon's Python heap (scripts/heap_watch.py), keep its snapshots in "
        "this folder, and say at the end what grew over the second half",
    )
    parser.add_argument(
        "--heap-every", type=float, default=300.0, help="seconds between heap snapshots"
    )
    return parser.parse_args()


if __name__ == "__main__":
    private_client_data()
    sys.exit(trio.run(main, arguments()))
