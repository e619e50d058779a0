"""Fuzz a live daemon over UDP with `Garbage`, in its three layers, and check each answer.

The fuzzer opens channels of its own, with the daemon's real key (`FuzzChannel`): on each
of `sockets` sockets a *member* channel logged in as one of `names` (by password the first
time, then by resumption ticket) and a *newcomer* channel that never logs in; channels it
logs out stay around as *ghosts* for a while (the daemon keeps their keys 30 s). Apart
from those, `strangers` sockets hold no channel: everything the daemon sends them answers
a datagram of the outside layer, and is checked against the rule that no answer is larger
than what it answers (`KEY`, `RESPONSE`, `RETRY`, `REFUSED` only for 1200-byte first
flights, `RESET` only for `DATA`, nothing else).

It sends `count` datagrams: the outside layer from the strangers, records that must not
authenticate and hostile payloads on the channels (now and then from another socket:
the session moves there and must pass the path check). Every `barrier_every` datagrams it
waits at a barrier: every open channel asks `who` at the sequence number the daemon waits
for, every stranger asks for the key, and every answer must come. The daemon reads its
one socket in order, so by then it has read everything sent before, and the kernel's
buffers never overflow (`/proc/net/udp` counts what they dropped). A channel that does
not answer although nothing it sent ended it is *lost*: the daemon dropped a session it
should have kept. Channels that ended are replaced at barriers, and newcomers before the
daemon's login timeout closes them.
"""

from __future__ import annotations

import random
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

from .. import wire
from ..client import ChatClient, Receipt
from ..events import ChatMessage, PublicMessage
from .fuzz_channel import FuzzChannel
from .garbage import FUZZ_PASSWORD, Garbage, dumps

__all__ = ["FUZZ_PASSWORD", "FuzzReport", "fuzz_daemon", "kernel_drops"]

NEWCOMER_LIFETIME = 7.0
"""Seconds a channel that never logged in is used (the daemon closes it after 10)."""
GHOST_LIFETIME = 40.0
"""Seconds a logged-out channel is still a target (its keys are kept 30 s, then `RESET`)."""
HANDSHAKE_RESEND = 0.3
ANSWERED_OUTSIDE = {
    wire.KEY: "KEY",
    wire.RESPONSE: "RESPONSE",
    wire.RETRY: "RETRY",
    wire.REFUSED: "REFUSED",
    wire.RESET: "RESET",
}


@dataclass
class FuzzReport:
    """What a fuzzing run sent, what came back, and what was wrong with it."""

    sent: Counter[str] = field(default_factory=Counter)
    """Datagrams by layer: `outside`, `record`, `payload`, and `barrier`, `setup`."""
    bytes_sent: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    """Datagrams by `layer/kind`."""
    replies: int = 0
    reply_bytes: int = 0
    outside_answers: Counter[str] = field(default_factory=Counter)
    """What the strangers got, by datagram type."""
    outside_bytes_sent: int = 0
    outside_bytes_answered: int = 0
    first_flights_sent: int = 0
    """Strangers' datagrams of 1200 bytes: only these may be answered outside a channel,
    but for a `RESET`."""
    data_sent: int = 0
    """Strangers' `DATA` datagrams long enough to be records."""
    amplification: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    """What the daemon sent that the protocol does not allow (from `FuzzChannel.faults`)."""
    channels: int = 0
    logins: int = 0
    resumes: int = 0
    logouts: int = 0
    """Channels that ended with the daemon's `ok` to a logout."""
    migrations: int = 0
    retired: int = 0
    """Newcomers left to the daemon's login timeout."""
    lost: list[str] = field(default_factory=list)
    """Channels the daemon stopped answering though nothing they sent ended them."""
    barriers: int = 0
    frames_in: int = 0
    frame_kinds: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    kernel_drops: int | None = None
    """Datagrams the kernel dropped at the daemon's socket (Linux), or None."""
    fuzzer_drops: int | None = None
    """Datagrams the kernel dropped at the fuzzer's sockets."""

    @property
    def total(self) -> int:
        return sum(self.sent[layer] for layer in ("outside", "record", "payload"))


def _udp_table() -> list[tuple[int, int]]:
    """`(local port, drops)` for every UDP socket (Linux), or nothing."""
    path = Path("/proc/net/udp")
    if not path.exists():
        return []
    rows: list[tuple[int, int]] = []
    for line in path.read_text().splitlines()[1:]:
        fields = line.split()
        rows.append((int(fields[1].split(":")[1], 16), int(fields[-1])))
    return rows


def kernel_drops(port: int) -> int | None:
    """Datagrams the kernel dropped for the UDP socket bound to `port` (Linux), or None."""
    drops = [dropped for local, dropped in _udp_table() if local == port]
    return sum(drops) if drops else None


class _Fuzzer:
    def __init__(
        self,
        address: tuple[str, int],
        server_key: bytes,
        seed: int,
        names: list[str],
        others: Sequence[str],
        sockets: int,
        strangers: int,
        patience: float,
    ) -> None:
        self.address = address
        self.server_key = server_key
        self.names = names
        self.patience = patience
        self.random = random.Random(seed)
        self.garbage = Garbage(seed, server_key, names=names, others=others)
        self.report = FuzzReport()
        self.socks = [self._socket() for _ in range(sockets + strangers)]
        self.strangers = list(range(sockets, sockets + strangers))
        self.members: list[FuzzChannel | None] = [None] * sockets
        self.newcomers: list[FuzzChannel | None] = [None] * sockets
        self.ghosts: list[tuple[float, FuzzChannel]] = []
        self.by_index: dict[int, FuzzChannel] = {}
        """Every channel made, by its own index (the receiver index of the daemon's
        records) and by the daemon's (which a `RESET` names)."""
        self.born: dict[int, float] = {}
        self.tickets: dict[str, str] = {}
        self.keys_answered = Counter[int]()
        self.spoof_ghosts = False
        self._changed = trio.Event()

    @staticmethod
    def _socket() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.setblocking(False)
        return sock

    def close(self) -> None:
        for sock in self.socks:
            sock.close()

    # --- the network ------------------------------------------------------------------------

    def send(self, where: int, data: bytes, layer: str) -> None:
        try:
            self.socks[where].send(data)
        except OSError:
            return  # too large for UDP here, or an ICMP error from an earlier send
        self.report.sent[layer] += 1
        self.report.bytes_sent[layer] += len(data)
        if where in self.strangers:
            self.report.outside_bytes_sent += len(data)
            if len(data) == wire.FIRST_FLIGHT_BYTES:
                self.report.first_flights_sent += 1
            elif data[:1] == bytes((wire.DATA,)) and len(data) >= wire.SEAL_OVERHEAD:
                self.report.data_sent += 1

    def drain(self) -> None:
        """Take in everything waiting at every socket."""
        for where, sock in enumerate(self.socks):
            for _ in range(10_000):
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    break
                except OSError:
                    continue
                self._dispatch(where, data)
        self._changed.set()
        self._changed = trio.Event()

    async def read(self, where: int) -> None:
        """Take in what comes to one socket while the fuzzer waits."""
        while True:
            await trio.lowlevel.wait_readable(self.socks[where])
            self.drain()

    async def wait(self, done: Callable[[], bool], within: float) -> bool:
        """Wait (reading every socket) until `done()`, at most `within` seconds."""
        self.drain()
        with trio.move_on_after(within):
            while not done():
                await self._changed.wait()
        return done()

    def _dispatch(self, where: int, data: bytes) -> None:
        report = self.report
        report.replies += 1
        report.reply_bytes += len(data)
        if where in self.strangers:
            self._outside_answer(where, data)
            return
        channel = self._route(data)
        if channel is None:
            return
        faults = len(channel.faults)
        frames = channel.frames_in
        channel.receive(data)
        report.faults += [f"{channel!r}: {fault}" for fault in channel.faults[faults:]]
        report.frames_in += channel.frames_in - frames

    def _route(self, data: bytes) -> FuzzChannel | None:
        if len(data) >= 5 and data[0] in (wire.DATA, wire.RESET):
            return self.by_index.get(int.from_bytes(data[1:5], "big"))
        if len(data) >= 6 and data[0] in (wire.RESPONSE, wire.RETRY):
            return self.by_index.get(int.from_bytes(data[2:6], "big"))
        if data[:1] in (bytes((wire.KEY,)), bytes((wire.REFUSED,))):
            # The answer to a handshake of ours: no index to say whose; the newest waiting.
            waiting = [c for c in self.by_index.values() if c.channel is None]
            return waiting[-1] if waiting else None
        self.report.faults.append(f"a datagram for nobody: {data[:16].hex()}")
        return None

    def _outside_answer(self, where: int, data: bytes) -> None:
        report = self.report
        kind = ANSWERED_OUTSIDE.get(data[0]) if data else None
        report.outside_bytes_answered += len(data)
        report.outside_answers[kind or f"type {data[:1].hex()}"] += 1
        # A KEY is one byte longer to a KEY_REQUEST that asks whether registrations are
        # taken: garbage of that type asks when its third byte has the bit set.
        sizes = {"KEY": (34, 35), "RESPONSE": (74,), "RETRY": (23,), "RESET": (wire.RESET_BYTES,)}
        if kind is None:
            report.amplification.append(f"a stranger was sent {len(data)} bytes: {data[:8].hex()}")
        elif kind in sizes and len(data) not in sizes[kind]:
            report.amplification.append(f"a {kind} of {len(data)} bytes")
        elif kind == "REFUSED" and len(data) >= wire.FIRST_FLIGHT_BYTES:
            report.amplification.append(f"a REFUSED of {len(data)} bytes")
        if kind == "KEY":
            self.keys_answered[where] += 1
        self.garbage.learn(data, where)

    # --- channels -------------------------------------------------------------------------------

    def _new_channel(self, where: int) -> FuzzChannel:
        index = self.random.randrange(1, 2**32)
        while index in self.by_index:
            index = self.random.randrange(1, 2**32)
        channel = FuzzChannel(self.server_key, index, where=where)
        self.by_index[index] = channel
        self.report.channels += 1
        return channel

    async def open(self, where: int, name: str | None) -> FuzzChannel | None:
        """A new channel from socket `where`, logged in as `name` (if any); None if the
        daemon refused it or did not answer within the fuzzer's patience."""
        channel = self._new_channel(where)
        deadline = trio.current_time() + self.patience
        sent_with = b""

        def answered() -> bool:
            # A RETRY's cookie is answered at once, with the same handshake message.
            changed = channel.initiation.cookie != sent_with
            return bool(channel.channel or channel.refused) or changed

        while channel.channel is None and channel.refused is None:
            sent_with = channel.initiation.cookie
            self.send(where, channel.init_datagram(), "setup")
            within = min(HANDSHAKE_RESEND, deadline - trio.current_time())
            if within <= 0:
                return None
            await self.wait(answered, within)
        if channel.channel is None:
            return None
        self.by_index[channel.index] = channel
        self.born[id(channel)] = trio.current_time()
        if name is not None and not await self._log_in(channel, name):
            return None
        return channel

    async def _log_in(self, channel: FuzzChannel, name: str) -> bool:
        ticket = self.tickets.get(name)
        frame = (
            {"t": "resume", "ticket": ticket}
            if ticket
            else {"t": "login", "name": name, "password": FUZZ_PASSWORD}
        )
        answer = await self.ask(channel, dumps(frame), "setup")
        if answer is None:
            return False
        if isinstance(answer, wire.ErrorFrame) and ticket:
            del self.tickets[name]  # expired, or from another daemon: the password then
            return await self._log_in(channel, name)
        if not isinstance(answer, wire.Welcome):
            self.report.faults.append(f"a login of {name!r} answered {answer!r}")
            return False
        if ticket:
            self.report.resumes += 1
        else:
            self.report.logins += 1
        self.tickets[name] = channel.ticket
        if channel.ticket not in self.garbage.tickets:
            self.garbage.tickets.append(channel.ticket)
        return True

    async def ask(self, channel: FuzzChannel, frame: bytes, layer: str) -> wire.ServerFrame | None:
        """Send one request frame; its final answer, or None if none came in time."""
        (seq,), data = channel.request(frame)
        assert isinstance(channel.where, int)
        self.send(channel.where, data, layer)
        deadline = trio.current_time() + self.patience
        while not channel.final_answers(seq) and not channel.ended:
            if await self.wait(lambda: bool(channel.final_answers(seq)) or channel.ended, 0.25):
                break
            if trio.current_time() >= deadline:
                return None
            # Not yet: our acknowledgements (and a path check's answer) again, which also
            # buy a moved session the bytes it needs to answer.
            self.send(channel.where, channel.ack(), layer)
        answers = channel.final_answers(seq)
        return answers[0] if answers else None

    def _all_channels(self) -> list[FuzzChannel]:
        return [c for c in (*self.members, *self.newcomers) if c is not None]

    async def replenish(self) -> None:
        """Replace channels that ended or are about to be closed; forget old ghosts."""
        now = trio.current_time()
        self.ghosts = [(t, c) for t, c in self.ghosts if now - t < GHOST_LIFETIME]
        for where in range(len(self.members)):
            member = self.members[where]
            if member is None or not member.open:
                if member is not None:
                    self._ended(member, now)
                name = self.names[where % len(self.names)]
                self.members[where] = await self.open(where, name)
                if self.members[where] is None:
                    self.report.lost.append(f"no channel logged in as {name!r} could be opened")
            newcomer = self.newcomers[where]
            if newcomer is not None and newcomer.open and self._too_old(newcomer):
                self.report.retired += 1
                newcomer = None
            if newcomer is None or not newcomer.open:
                if newcomer is not None and newcomer.channel is not None:
                    self._ended(newcomer, now)
                self.newcomers[where] = await self.open(where, None)
                if self.newcomers[where] is None:
                    self.report.lost.append("no channel could be opened")

    def _too_old(self, channel: FuzzChannel) -> bool:
        """Whether a channel that never logged in is about to be closed by the daemon."""
        age = trio.current_time() - self.born[id(channel)]
        return channel.account is None and age > NEWCOMER_LIFETIME

    def _ended(self, channel: FuzzChannel, now: float) -> None:
        if channel.ended and channel.logouts:
            self.report.logouts += 1
        if channel.ending or channel.ended:
            self.ghosts.append((now, channel))

    # --- the run ------------------------------------------------------------------------------

    async def barrier(self) -> None:
        """Every open channel asks `who`, every stranger the key; wait for every answer."""
        self.report.barriers += 1
        self.drain()
        keys = Counter(self.keys_answered)
        for where in self.strangers:
            self.send(where, wire.key_request_datagram(), "barrier")
            keys[where] += 1
        # Asked last: the daemon answers in the order it reads, so once these are
        # answered, the strangers' keys have been sent too.
        asked: list[tuple[FuzzChannel, int]] = []
        for channel in self._all_channels():
            if channel.open and not self._too_old(channel):
                (seq,), data = channel.request(dumps({"t": "who"}))
                assert isinstance(channel.where, int)
                self.send(channel.where, data, "barrier")
                asked.append((channel, seq))

        def answered(channel: FuzzChannel, seq: int) -> bool:
            return bool(channel.final_answers(seq)) or channel.ended

        def done() -> bool:
            return all(answered(c, s) for c, s in asked) and all(
                self.keys_answered[w] >= keys[w] for w in self.strangers
            )

        deadline = trio.current_time() + self.patience
        while not await self.wait(done, 0.25):
            if trio.current_time() >= deadline:
                break
            for channel, seq in asked:
                if not answered(channel, seq):
                    assert isinstance(channel.where, int)
                    self.send(channel.where, channel.ack(), "barrier")
            for where in self.strangers:
                if self.keys_answered[where] < keys[where]:
                    self.send(where, wire.key_request_datagram(), "barrier")
        now = trio.current_time()
        for channel, seq in asked:
            if not answered(channel, seq):
                self.report.lost.append(
                    f"{channel!r} did not answer `who` ({seq}): {now - self.born[id(channel)]:.1f}"
                    f" s old, moved {channel.moves} times, frames acknowledged up to "
                    f"{channel.acked}"
                )
                channel.ended = True  # replaced, not waited for again
        for channel in self._all_channels():
            channel.answers.clear()
        await self.replenish()

    def _target(self) -> FuzzChannel | None:
        r = self.random
        roll = r.random()
        if roll < 0.15 and self.ghosts:
            return r.choice(self.ghosts)[1]
        pool = self.newcomers if roll < 0.3 else self.members
        ready = [c for c in pool if c is not None and c.channel is not None]
        return r.choice(ready) if ready else None

    def shoot(self) -> None:
        """One hostile datagram, of a layer picked at random."""
        r = self.random
        garbage = self.garbage
        roll = r.random()
        if roll < 0.35 and self.strangers:
            where = r.choice(self.strangers)
            shot = garbage.outside(where, self._all_channels())
            self.send(where, shot.data, shot.layer)
        else:
            channel = self._target()
            if channel is None:
                return
            assert isinstance(channel.where, int)
            if roll < 0.6:
                others = self._all_channels()
                shot = garbage.record_attack(channel, others)
            else:
                shot = garbage.hostile(channel)
            where = channel.where
            if self.spoof_ghosts and channel.ended and r.random() < 0.3:
                where = r.choice(self.strangers)
            elif shot.layer == "payload" and channel.open and r.random() < 0.01:
                # From another of our sockets: the session moves there, behind a path check.
                where = r.randrange(len(self.members))
                if where != channel.where:
                    self.report.migrations += 1
                    channel.where = where
                    channel.moves += 1
            self.send(where, shot.data, shot.layer)
        self.report.kinds[f"{shot.layer}/{shot.kind}"] += 1

    async def logout_one(self) -> None:
        """Log a member out on purpose: its channel becomes a ghost, then is replaced."""
        # Not one that moved: while its new address is being checked, its `ok` may not fit
        # the bytes the address has earned, and then comes only with a `RESET`, 30 s later.
        members = [c for c in self.members if c is not None and c.open and not c.moves]
        if members:
            channel = self.random.choice(members)
            await self.ask(channel, dumps({"t": "logout"}), "barrier")

    async def run(
        self,
        count: int,
        barrier_every: int,
        logout_every: int,
        on_barrier: Callable[[int], None] | None,
    ) -> FuzzReport:
        started = time.monotonic()
        fuzz_ports = {sock.getsockname()[1] for sock in self.socks}
        async with trio.open_nursery() as nursery:
            for where in range(len(self.socks)):
                nursery.start_soon(self.read, where)
            await self.replenish()
            for n in range(count):
                self.shoot()
                if n % 16 == 15:
                    self.drain()
                    for channel in self._all_channels():
                        if channel.open and channel.unacked >= 16:
                            assert isinstance(channel.where, int)
                            self.send(channel.where, channel.ack(), "barrier")
                if (n + 1) % barrier_every == 0:
                    if (n + 1) % logout_every == 0:
                        await self.logout_one()
                    await self.barrier()
                    if on_barrier is not None:
                        on_barrier(self.report.barriers)
            await self.barrier()
            nursery.cancel_scope.cancel()
        report = self.report
        report.seconds = time.monotonic() - started
        for channel in {id(c): c for c in self.by_index.values()}.values():
            report.frame_kinds.update(channel.frame_kinds)
            report.error_codes.update(channel.error_codes)
        if report.outside_bytes_answered > report.outside_bytes_sent:
            report.amplification.append(
                f"strangers sent {report.outside_bytes_sent} bytes and were sent "
                f"{report.outside_bytes_answered}"
            )
        answers = report.outside_answers
        if answers["RESET"] > report.data_sent:
            report.amplification.append(f"{answers['RESET']} RESETs for {report.data_sent} DATA")
        first = sum(answers[kind] for kind in ("KEY", "RESPONSE", "RETRY", "REFUSED"))
        if first > report.first_flights_sent:
            report.amplification.append(
                f"{first} answers to {report.first_flights_sent} first flights"
            )
        report.kernel_drops = kernel_drops(self.address[1])
        table = _udp_table()
        if table:
            report.fuzzer_drops = sum(drops for port, drops in table if port in fuzz_ports)
        return report


async def fuzz_daemon(
    address: tuple[str, int],
    server_key: bytes,
    *,
    count: int,
    seed: int,
    names: list[str],
    others: Sequence[str] = (),
    sockets: int = 4,
    strangers: int = 2,
    barrier_every: int = 200,
    logout_every: int = 2000,
    patience: float = 5.0,
    double_logins: bool = False,
    spoof_ghosts: bool = False,
    on_barrier: Callable[[int], None] | None = None,
) -> FuzzReport:
    """Send `count` hostile datagrams to the daemon at `address`; see the module docstring.

    `server_key` is the daemon's static public key; `names` are accounts (password
    `FUZZ_PASSWORD`) the fuzzer logs in as, `others` other people's accounts (with
    another password), which it whispers to. `double_logins`: see `Garbage`; with
    `spoof_ghosts`, some records of logged-out channels come from a stranger's socket
    (their keys, another address: whatever the daemon answers goes to the stranger).
    `on_barrier(n)` is called after barrier `n`, when the daemon has read everything sent
    so far.
    """
    fuzzer = _Fuzzer(address, server_key, seed, names, others, sockets, strangers, patience)
    fuzzer.garbage.double_logins = double_logins
    fuzzer.spoof_ghosts = spoof_ghosts
    for sock in fuzzer.socks:
        sock.connect(address)
    try:
        return await fuzzer.run(count, barrier_every, logout_every, on_barrier)
    finally:
        fuzzer.close()


# --- the person who chats through the fuzz ----------------------------------------------------


def speak(client: ChatClient, said: list[Receipt[ChatMessage]], text: str) -> None:
    """Say `text` unless the last message said is still on its way (a person's pace:
    the daemon's rate limit would otherwise hold the messages back)."""
    if not said or said[-1].done:
        said.append(client.say_nowait(text))


async def listen(client: ChatClient, sender: str, heard: trio.MemorySendChannel[str]) -> None:
    """Send `heard` the text of every live public message from `sender`."""
    async for event in client.events():
        if isinstance(event, PublicMessage) and event.sender == sender and not event.history:
            heard.send_nowait(event.text)
