"""Memory pinning: clients that make the daemon hold bytes for them, and the caps on it.

    .venv/bin/python scripts/attack_memory_pin.py
    .venv/bin/python scripts/attack_memory_pin.py --pinners 16 --pin-channels 32 --readers 40

(a) Receive buffers. `--pinners` logged-in (quiet) sessions each hold back one
    sequence number and send 150 frames of about 540 bytes after it: the daemon keeps
    frames that arrive out of order, up to 64 KB a session, for the missing one. Then
    `--pin-channels` channels that never log in (16 an address) do the same. The
    daemon's own acknowledgements say how many frames it holds for each (`sack`).
(b) One reader, `lurker`, acknowledges one more frame every 5 s (just enough for the
    daemon not to give it up) while `talker` floods the room from 8 sessions (the
    default rate each, 5 messages a second of 480 characters).
(c) `--readers` such readers at once (8 sessions an account, 16 an address), against
    the same flood: together they would queue more than the daemon's total of 64 MB.
(d) A channel that never logs in sends one record whose packet number is 2**`--jump-bits`
    past its last one, while a normal session asks `who`: how long that request waits,
    and how much the daemon's peak memory (VmHWM) grows.

Then `nora` logs in and says something, timed. Printed: the daemon's resident memory
(VmRSS, and its peak VmHWM, from /proc) after each step, the sessions it closed, when
and why (its log: `ended: overloaded`), and how many bytes each had queued by then
(estimated: the messages fanned out since it stopped acknowledging, times their size).

Goals: no session holds more than the caps (64 KB out of order, 1 MiB queued); the
total held (queued, and received out of order) stays within 64 MB (and one second of
flood, the interval it is checked at), so the memory all sessions can pin is bounded by
it; a normal user still logs in and gets a message through, each within 3 s; and in (d)
one record costs no more memory than the caps allow and holds nobody up.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import dataclass, field

import trio
from attack_common import (
    LIMITS,
    PASSWORD,
    Client,
    Crowd,
    Target,
    address,
    crowd,
    new_rid,
    open_target,
    parser,
    register_all,
    verdict,
)

from trio_chat import wire
from trio_chat.events import Event, PublicMessage
from trio_chat.secure import SecureError

RECEIVE_CAP = LIMITS.link.receive_buffer_bytes
QUEUE_CAP = LIMITS.link.max_queue_bytes
TOTAL_CAP = LIMITS.max_queued_bytes
PIN_FRAMES = 150
PIN_FRAME = wire.encode(wire.Say(text="p" * 500, cid="pinned-frame-000"))
TALKERS = 8
TALKER_RATE = 5.0
TEXT = "m" * 480
ACK_EVERY = 5.0


def msg_frame_bytes() -> int:
    """Bytes one of the talker's messages takes in a reader's queue (numbered as queued):
    as the daemon shows it to others, with its time to the millisecond and no `cid`."""
    frame = wire.Msg(id=123_456, ts="2026-01-01T00:00:00.000Z", sender="talker", text=TEXT)
    return len(wire.numbered_frame(123_456, wire.encode(frame)))


def mib(kib: int | None) -> str:
    return "?" if kib is None else f"{kib / 1024:.1f} MiB"


@dataclass
class Watch:
    """The flood as a normal listener sees it, and the sessions the daemon closes."""

    target: Target
    heard: int = 0
    """Messages of the flood a normal listener has received so far."""
    closed: list[tuple[float, int, str]] = field(default_factory=list)
    """(when, messages heard by then, log line) for every session the daemon ended."""
    _seen_lines: int = 0

    def on_event(self, event: Event) -> None:
        if isinstance(event, PublicMessage) and event.sender == "talker":
            self.heard += 1

    def poll(self) -> None:
        daemon = self.target.daemon
        if daemon is None:
            return
        lines = daemon.output[self._seen_lines :]
        self._seen_lines += len(lines)
        for line in lines:
            if " ended: " in line:
                self.closed.append((time.monotonic(), self.heard, line.strip()))

    def ended(self, name_prefix: str, since: float) -> list[tuple[float, int, str]]:
        return [c for c in self.closed if c[0] >= since and f"session of {name_prefix}" in c[2]]


def freeze_with_hole(client: Client) -> int:
    """Stop driving `client`; keep back the next frame it numbers. Return that number."""
    client.frozen = True
    link = client.core.link
    assert link is not None
    return link.send(wire.encode(wire.Ping()))  # numbered, never sent


async def pin(client: Client, holes: dict[Client, int]) -> None:
    """Send frames after a missing one (kept in `holes`), then ask the daemon nothing more."""
    hole = holes[client] = freeze_with_hole(client)
    link = client.core.link
    assert link is not None
    for n in range(PIN_FRAMES):
        client.sock.send(
            client.seal(link.received_up_to, wire.numbered_frame(hole + 1 + n, PIN_FRAME))
        )
        if n % 16 == 15:
            await trio.sleep(0.002)


async def held(clients: list[Client], holes: dict[Client, int]) -> list[int]:
    """For each client, the frames the daemon says it holds out of order: each sends one
    of them again, and the daemon's acknowledgement of the duplicate lists them all."""
    for client in clients:
        link = client.core.link
        assert link is not None
        again = wire.numbered_frame(holes[client] + 1, PIN_FRAME)
        with contextlib.suppress(OSError):
            client.sock.send(client.seal(link.received_up_to, again))
    await trio.sleep(0.5)
    return [acknowledged(client) for client in clients]


def acknowledged(client: Client) -> int:
    """The most frames held out of order that the datagrams waiting on `client`'s socket
    acknowledge (`sack`)."""
    channel = client.core.channel
    assert channel is not None
    most = 0
    while True:
        try:
            data = client.sock.recv(2048)
        except BlockingIOError:
            return most
        try:
            datagram = wire.parse_datagram_untrusted(data)
            if not isinstance(datagram, wire.Data):
                continue
            _pn, plaintext = channel.open_untrusted(datagram.datagram)
            payload = wire.decode_payload_untrusted(plaintext)
        except (wire.WireError, SecureError):
            continue
        most = max(most, sum(end - start + 1 for start, end in payload.sack))


async def keep_alive(clients: list[Client]) -> None:
    """A bare acknowledgement from each frozen client every `ACK_EVERY` s, so the daemon
    keeps hearing from it (nothing more is acknowledged), until cancelled."""
    while True:
        for client in clients:
            link = client.core.link
            assert link is not None
            with contextlib.suppress(OSError):
                client.sock.send(client.seal(link.received_up_to))
        await trio.sleep(ACK_EVERY)


async def ack_just_enough(clients: list[Client], until: trio.Event) -> None:
    """Every `ACK_EVERY` s, each frozen reader acknowledges one frame more than before:
    the daemon sees progress (it gives up a link only after 20 s without) and keeps
    queueing for it."""
    bases = []
    for client in clients:
        link = client.core.link
        assert link is not None
        bases.append(link.received_up_to)
    more = 0
    while not until.is_set():
        with trio.move_on_after(ACK_EVERY):
            await until.wait()
        more += 1
        for client, base in zip(clients, bases, strict=True):
            with contextlib.suppress(OSError):
                client.sock.send(client.seal(base + more))


async def talk(talker: Client, until: trio.Event) -> None:
    while not until.is_set():
        talker.core.say(TEXT)
        talker.flush()
        with trio.move_on_after(1 / TALKER_RATE):
            await until.wait()


async def log_in_all(
    target: Target,
    group: Crowd,
    names: list[str],
    first: int,
    *,
    quiet: bool = False,
    batches: bool = True,
) -> list[Client]:
    """Log each account in 8 times (its password once, then its ticket), 16 sessions an
    address from 127.0.0.`first` up, and keep the sessions open."""
    clients: list[Client] = []

    async def session(n: int, name: str, ticket: str = "") -> Client:
        source = address(first + n // 16)
        client = Client(target, source, name, "" if ticket else PASSWORD, quiet=quiet)
        client.core.ticket = ticket
        client.core.batches = batches
        group.add(client)
        if await client.logged_in() != "welcome":
            raise RuntimeError(f"{name} could not log in: {client.core.failure}")
        clients.append(client)
        return client

    async def account(n: int, name: str) -> None:
        lead = await session(8 * n, name)
        for k in range(1, 8):
            await session(8 * n + k, name, lead.core.ticket)

    async with trio.open_nursery() as nursery:
        for n, name in enumerate(names):
            nursery.start_soon(account, n, name)
    return clients


@dataclass
class Flood:
    """What one flood did to the readers frozen for it."""

    seconds: float
    ended: list[tuple[float, int, str]]
    """(seconds into the flood, messages heard by then, log line) for each reader ended."""
    queued_at_end: list[int]
    """For each reader ended, the bytes it had queued then (estimated)."""
    peak_total: int
    """The most the readers still open had queued together at any time (estimated)."""
    peak_rss: int | None


async def flood(
    target: Target,
    watch: Watch,
    talkers: list[Client],
    readers: list[Client],
    prefix: str,
    seconds: float,
) -> Flood:
    """Freeze `readers` (acknowledging just enough from now on) and flood the room until
    the daemon has ended them all, or for `seconds`."""
    for reader in readers:
        reader.frozen = True
    size = msg_frame_bytes()
    start = time.monotonic()
    heard = watch.heard
    stop = trio.Event()
    peak_total, peak_rss = 0, target.memory_kib()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ack_just_enough, readers, stop)
        for talker in talkers:
            nursery.start_soon(talk, talker, stop)
        while time.monotonic() < start + seconds:
            await trio.sleep(0.2)
            watch.poll()
            acked = int((time.monotonic() - start) // ACK_EVERY)
            each = min(QUEUE_CAP, (watch.heard - heard - acked) * size)
            alive = len(readers) - len(watch.ended(prefix, start))
            peak_total = max(peak_total, alive * each)
            rss = target.memory_kib()
            if rss is not None and (peak_rss is None or rss > peak_rss):
                peak_rss = rss
            if target.daemon is not None and alive <= 0:
                break
        stop.set()
    watch.poll()
    ended = [(t - start, h - heard, line) for t, h, line in watch.ended(prefix, start)]
    queued = [(h - int(t // ACK_EVERY)) * size for t, h, _line in ended]
    return Flood(time.monotonic() - start, ended, queued, peak_total, peak_rss)


@dataclass
class Jump:
    """What one record numbered far ahead cost the daemon."""

    answer: str
    """The answer to a request of a normal session sent just after it."""
    waited: float
    """Seconds that request waited for its answer."""
    usual: float
    """Seconds the same request took just before."""
    peak_before: int | None
    peak_after: int | None
    errors: int | None
    """`MemoryError`s the daemon logged meanwhile."""


async def far_ahead(target: Target, group: Crowd, probe: Client, bits: int) -> Jump:
    """(d) A channel that never logs in sends a record with the next packet number, then
    one numbered 2**`bits` further on; `probe`, a normal session, asks `who` just after."""
    stranger = group.add(Client(target, address(7)))
    await stranger.channel_open()
    stranger.frozen = True
    began = time.monotonic()
    await probe.answer(probe.send(wire.Who()), 10.0)
    usual = time.monotonic() - began
    peak_before = target.memory_kib("VmHWM")
    errors_before = target.log_count("MemoryError")
    stranger.sock.send(stranger.seal(0))
    await trio.sleep(0.5)
    stranger.sock.send(stranger.seal(0, skip=2**bits))
    began = time.monotonic()
    answer = await probe.answer(probe.send(wire.Who()), 120.0)
    waited = time.monotonic() - began
    await trio.sleep(0.5)
    errors = target.log_count("MemoryError")
    return Jump(
        answer,
        waited,
        usual,
        peak_before,
        target.memory_kib("VmHWM"),
        None if errors is None or errors_before is None else errors - errors_before,
    )


def flood_lines(name: str, result: Flood, readers: int) -> list[str]:
    reasons: dict[str, int] = {}
    for _t, _h, line in result.ended:
        reason = line.rsplit("ended: ", 1)[-1]
        reasons[reason] = reasons.get(reason, 0) + 1
    times = [t for t, _h, _line in result.ended]
    queued = sorted(result.queued_at_end)
    under = sum(1 for q in queued if q < QUEUE_CAP * 0.95)
    lines = [
        f"{name}: {len(result.ended)}/{readers} readers ended in {result.seconds:.1f} s of "
        f"flood, {reasons or 'none'}"
    ]
    if times:
        lines.append(
            f"  ended between {min(times):.1f} and {max(times):.1f} s; queued by then "
            f"(estimated): {queued[0] / 1024:.0f} to {queued[-1] / 1024:.0f} KiB "
            f"(cap {QUEUE_CAP // 1024} KiB); {under} were ended below the cap, by the "
            f"daemon's total"
        )
    lines.append(
        f"  the most queued at once by the readers still open (estimated): "
        f"{result.peak_total / 2**20:.1f} MiB; daemon RSS peak {mib(result.peak_rss)}"
    )
    return lines


async def main(args: argparse.Namespace) -> int:
    readers = [f"reader{n}" for n in range(args.readers // 8)]
    pinners = [f"pinner{n}" for n in range(args.pinners // 8)]
    memory: dict[str, int | None] = {}
    async with open_target(args.port) as target, crowd() as group:
        await register_all(target, ["talker", "witness", "lurker", "nora", *pinners, *readers])
        watch = Watch(target)
        witness = Client(target, address(6), "witness", on_event=watch.on_event)
        talkers = [Client(target, address(3), "talker") for _ in range(TALKERS)]
        for client in [witness, *talkers]:
            await group.add(client).logged_in()

        # (a) Receive buffers: logged-in sessions, then channels that never log in.
        pinning = await log_in_all(target, group, pinners, 11, quiet=True)
        await trio.sleep(1.0)
        memory["pinners logged in"] = target.memory_kib()
        holes: dict[Client, int] = {}

        async def pin_all(clients: list[Client], step: str) -> list[int]:
            """Each client pins its frames; the daemon's memory after; what each holds."""
            async with trio.open_nursery() as nursery:
                for client in clients:
                    nursery.start_soon(pin, client, holes)
            await trio.sleep(1.0)
            memory[step] = target.memory_kib()
            return await held(clients, holes)

        held_by_pinners = await pin_all(pinning, "pinners pinned")
        group.nursery.start_soon(keep_alive, pinning)
        channels = [Client(target, address(15 + n // 16)) for n in range(args.pin_channels)]
        opened = time.monotonic()
        for client in channels:
            group.add(client)
        for client in channels:
            await client.channel_open()
        await trio.sleep(0.5)
        memory["channels opened"] = target.memory_kib()
        held_by_channels = await pin_all(channels, "channels pinned")
        # The daemon closes a channel that has not logged in after 10 s.
        await trio.sleep(max(0.0, opened + LIMITS.login_timeout + 2.0 - time.monotonic()))
        memory["channels closed"] = target.memory_kib()

        # (b) One reader that acknowledges just enough. Readers take each message in a
        # frame of its own (no `batches`), as the estimate of their queues counts them.
        lurker = Client(target, address(5), "lurker")
        lurker.core.batches = False
        await group.add(lurker).logged_in()
        one = await flood(target, watch, talkers, [lurker], "lurker", args.flood_seconds)
        memory["one reader flooded"] = target.memory_kib()

        # (c) Many of them.
        many = await log_in_all(target, group, readers, 35, batches=False)
        memory["readers logged in"] = target.memory_kib()
        result = await flood(target, watch, talkers, many, "reader", args.flood_seconds)
        await trio.sleep(2.0)
        memory["readers flooded"] = target.memory_kib()
        still_held = await held(pinning, holes)

        # A normal user, after all that; then (d) while she is served.
        began = time.monotonic()
        nora = group.add(Client(target, address(2), "nora"))
        login = await nora.logged_in(10.0)
        to_welcome = time.monotonic() - began
        said = time.monotonic()
        answer = await nora.answer(nora.send(wire.Say(text="still here?", cid=new_rid())), 10.0)
        round_trip = time.monotonic() - said
        memory["end"] = target.memory_kib()
        jump = await far_ahead(target, group, nora, args.jump_bits)
        memory["after (d)"] = target.memory_kib()
    frame = len(PIN_FRAME)
    print("memory pinning; the daemon's resident memory (VmRSS) after each step:")
    for step, kib in memory.items():
        print(f"  {step:20} {mib(kib)}")

    def growth(before: str, after: str, count: int) -> float | None:
        low, high = memory[before], memory[after]
        return None if low is None or high is None or not count else 1024 * (high - low) / count

    per_pinner = growth("pinners logged in", "pinners pinned", len(pinning))
    per_channel = growth("channels opened", "channels pinned", len(channels))
    most_held = max(held_by_pinners + held_by_channels, default=0) * frame
    print(
        f"(a) {len(pinning)} logged-in sessions and {len(channels)} channels never logged in "
        f"each sent {PIN_FRAMES} frames of {frame} bytes after a missing one"
    )
    print(
        f"  frames held out of order, by the daemon's acks: sessions {min(held_by_pinners)}-"
        f"{max(held_by_pinners)}, channels {min(held_by_channels)}-{max(held_by_channels)} "
        f"(most: {most_held / 1024:.1f} KiB; cap {RECEIVE_CAP // 1024} KiB); "
        f"still held by the sessions at the end: {min(still_held)}-{max(still_held)}"
    )
    worst: float | None = None
    held_per_channel = max(held_by_channels, default=0) * frame
    if per_pinner is not None and per_channel is not None and held_per_channel:
        # Frames held out of order count in the daemon's total: what they can pin in all
        # is that total, times what a held byte costs in memory.
        worst = TOTAL_CAP * per_channel / held_per_channel
        print(
            f"  RSS growth: {per_pinner / 1024:.0f} KiB a session, {per_channel / 1024:.0f} KiB a "
            f"channel ({per_channel / held_per_channel:.2f} bytes of memory a byte held); "
            f"held bytes count in the daemon's total, so all channels together can pin about "
            f"{worst / 2**20:.0f} MiB"
        )
    for line in flood_lines("(b) one reader", one, 1):
        print(line)
    for line in flood_lines(f"(c) {len(many)} readers", result, len(many)):
        print(line)
    print(
        f"a normal user after (a) to (c): login {login} in {to_welcome:.2f} s, a message "
        f"{answer} in {round_trip:.2f} s"
    )
    peak_growth = (
        None
        if jump.peak_before is None or jump.peak_after is None
        else (jump.peak_after - jump.peak_before) * 1024
    )
    shown_growth = "?" if peak_growth is None else f"{peak_growth / 2**20:,.0f} MiB"
    print(
        f"(d) one record numbered 2**{args.jump_bits} ahead, from a channel that never logged "
        f"in: a normal session's request waited {jump.waited:.2f} s (just before: "
        f"{1000 * jump.usual:.1f} ms), answer {jump.answer}; the daemon's peak memory grew "
        f"by {shown_growth}; MemoryErrors logged: {jump.errors}"
    )
    per_flood_second = len(many) * TALKERS * TALKER_RATE * msg_frame_bytes()
    queued_ok = all(q <= QUEUE_CAP * 1.05 for q in one.queued_at_end + result.queued_at_end)
    return verdict(
        {
            f"no session holds more than {RECEIVE_CAP // 1024} KiB out of order": (
                most_held <= RECEIVE_CAP
            ),
            f"no reader queues more than {QUEUE_CAP // 1024} KiB (estimated, within 5%)": (
                bool(one.ended) and queued_ok
            ),
            f"the queued total stays within {TOTAL_CAP // 2**20} MiB and a second of flood": (
                result.peak_total <= TOTAL_CAP + per_flood_second
            ),
            f"receive buffers are bounded by the daemon's total ({TOTAL_CAP // 2**20} MiB "
            "of frames, 1.5 times that in memory)": (
                worst is not None and worst <= 1.5 * TOTAL_CAP
            ),
            "a normal user logs in and is answered, each in < 3 s": (
                login == "welcome" and answer == "ok" and to_welcome < 3 and round_trip < 3
            ),
            "(d) one record pins no more than the caps, nor stalls the others (< 0.1 s)": (
                jump.answer == "ok"
                and jump.waited < 0.1
                and peak_growth is not None
                and peak_growth <= RECEIVE_CAP
            ),
        }
    )


def arguments() -> argparse.Namespace:
    options = parser(__doc__)
    options.add_argument("--pinners", type=int, default=64, help="a multiple of 8, at most 64")
    options.add_argument("--pin-channels", type=int, default=320, help="at most 320")
    options.add_argument("--readers", type=int, default=320, help="a multiple of 8, at most 320")
    options.add_argument("--flood-seconds", type=float, default=60.0, help="most for each flood")
    options.add_argument(
        "--jump-bits", type=int, default=32, help="(d): how far ahead, as a power of two"
    )
    return options.parse_args()


if __name__ == "__main__":
    sys.exit(trio.run(main, arguments()))
