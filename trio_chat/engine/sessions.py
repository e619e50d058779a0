"""Sessions as the network sees them: links, addresses, proof of address, timers, output.

`Sessions` owns every session's reliable `Link`, checks the token of each session
datagram, follows a client whose address changes (and makes the new address prove it
receives before sending it more than 3 times what it sent), fires the links' timers,
ends sessions that went silent, and collects what every session has to send. What the
frames mean is the room's business (`chat.Chat`); this module knows nothing of it.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass

import msgspec

from .. import wire
from ..auth import tokens_equal
from ..limits import TokenBucket
from ..records import Account
from ..reliability import Link
from .common import Address, Outbox
from .config import ServerConfig
from .notes import AddressChanged, Note


@dataclass(eq=False, slots=True)
class Session:
    sid: int
    token: str
    account: Account
    address: Address
    link: Link
    bucket: TokenBucket
    last_heard: float
    idle_check_at: float
    validated: bool = False
    challenge: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    timer_at: float | None = None
    quiet: bool = False
    blocked_cid: str | None = None
    """The first message refused as too fast: until it comes again, later ones are refused
    too, so that the client's resends keep the order the messages were written in."""
    blocked_until: float = 0.0
    """When the refused message may come back."""
    welcomed_at: float | None = None
    """When the welcome was (last) sent, until the client's first datagram: the time
    between the two starts the link's RTT estimate."""


FAREWELL_DATAGRAMS = 4
"""At most this many datagrams are kept, and sent again, for an ended session."""


@dataclass(slots=True)
class _Ended:
    token: str
    until: float
    """Until when its datagrams are answered from here, not with `session_unknown`."""
    address: Address
    farewell: list[bytes]
    """Its last datagrams: every frame it had not acknowledged (the `ok` of its logout)."""


class Sessions:
    """Every open session; see the module docstring."""

    def __init__(
        self,
        config: ServerConfig,
        outbox: Outbox,
        stats: dict[str, int],
        new_token: Callable[[], str],
        new_session_id: Callable[[], int],
        notes: list[Note],
    ) -> None:
        self.config = config
        self._notes = notes
        self.by_sid: dict[int, Session] = {}
        self._outbox = outbox
        self._stats = stats
        self._new_token = new_token
        self._new_session_id = new_session_id
        self._per_ip: dict[object, int] = {}
        self._dirty: set[Session] = set()
        self._timers: list[tuple[float, int]] = []
        self._ended: OrderedDict[int, _Ended] = OrderedDict()
        """Recently ended sessions, by session id (QUIC's closing state)."""

    def __len__(self) -> int:
        return len(self.by_sid)

    def __iter__(self) -> Iterator[Session]:
        return iter(self.by_sid.values())

    # --- opening and ending ----------------------------------------------------------------

    def full(self, address: Address) -> bool:
        """Whether the address's IP holds as many sessions as it may."""
        return self._per_ip.get(address[0], 0) >= self.config.max_sessions_per_address

    def open(self, account: Account, address: Address, now: float) -> Session:
        sid = self._new_session_id()
        while sid in self.by_sid or sid in self._ended:
            sid = self._new_session_id()
        session = Session(
            sid=sid,
            token=self._new_token(),
            account=account,
            address=address,
            link=Link(wire.session_prefix(sid), self.config.link),
            bucket=TokenBucket(self.config.message_rate, self.config.message_burst),
            last_heard=now,
            idle_check_at=self._idle_check(now),
            welcomed_at=now,
        )
        self.by_sid[sid] = session
        self._count_ip(address, 1)
        self._dirty.add(session)
        return session

    def remove(self, session: Session, now: float, *, flush: bool = False) -> None:
        """End a session (after sending what it has, with `flush`)."""
        farewell = self._last_words(session, now) if flush else []
        self._dirty.discard(session)
        del self.by_sid[session.sid]
        self._count_ip(session.address, -1)
        ended = self._ended
        until = now + self.config.ended_session_memory
        ended[session.sid] = _Ended(session.token, until, session.address, farewell)
        while ended:
            oldest = next(iter(ended.values()))
            if oldest.until > now and len(ended) <= self.config.tracked_addresses:
                break
            ended.popitem(last=False)

    def _count_ip(self, address: Address, change: int) -> None:
        count = self._per_ip.get(address[0], 0) + change
        if count > 0:
            self._per_ip[address[0]] = count
        else:
            self._per_ip.pop(address[0], None)

    # --- receiving ----------------------------------------------------------------------------

    def ended_recently(self, packet: wire.Packet, now: float) -> bool:
        """Whether `packet` belongs to a session that ended moments ago (token checked).

        A late datagram of it is no stranger's: a pure ack is dropped quietly, and one
        with frames (a logout sent again because its `ok` was lost) gets the session's
        last datagram again, as QUIC answers in its closing state.
        """
        ended = self._ended.get(packet.sid)
        if ended is None or ended.until <= now or not tokens_equal(packet.token, ended.token):
            return False
        if packet.frames:
            self._outbox.extend((datagram, ended.address) for datagram in ended.farewell)
        return True

    def receive(
        self, session: Session, packet: wire.Packet, size: int, address: Address, now: float
    ) -> list[tuple[int, msgspec.Raw]] | None:
        """Take in a datagram for `session`; return its frames now in order (None: dropped)."""
        if not tokens_equal(packet.token, session.token):
            self._stats["bad_tokens"] += 1
            return None
        if address != session.address and packet.pn > session.link.highest_pn:
            self._migrate(session, address)
        if address == session.address and not session.validated:
            session.bytes_in += size
            if session.challenge is None or tokens_equal(packet.response, session.challenge):
                session.validated = True
                session.challenge = None
        session.last_heard = now
        link = session.link
        if session.welcomed_at is not None:
            link.seed_rtt(now - session.welcomed_at)
            session.welcomed_at = None
        delivered = link.receive(
            packet.pn, packet.ack, packet.sack, packet.frames, now, packet.echo
        )
        if delivered or session.challenge is not None or link.wants_to_send(now):
            self._dirty.add(session)
        # Otherwise it was an ack that freed nothing to send: under fan-out, half the
        # datagrams that come in. Its timers can only have moved later, and a timer
        # that fires early finds nothing due and is set again.
        return delivered

    def welcome_resent(self, sid: int, now: float) -> None:
        """A login was sent again and answered from the cache: time the path from now."""
        session = self.by_sid.get(sid)
        if session is not None and session.welcomed_at is not None:
            session.welcomed_at = now

    def _migrate(self, session: Session, address: Address) -> None:
        """The client's address changed (NAT rebinding): keep the session, check the path."""
        self._stats["migrations"] += 1
        self._notes.append(AddressChanged(session.account.name, session.address, address))
        self._count_ip(session.address, -1)
        session.address = address
        self._count_ip(address, 1)
        session.validated = False
        session.bytes_in = session.bytes_out = 0
        session.challenge = self._new_token()
        session.link.extra = wire.challenge_field(session.challenge)

    # --- sending -----------------------------------------------------------------------------

    def send(self, session: Session, frame: bytes, tag: Hashable | None = None) -> None:
        """Queue an encoded frame on a session's link; it goes out at the next flush."""
        session.link.send(frame, tag)
        self._dirty.add(session)

    def deliver(self, sid: int, frame: bytes, tag: Hashable | None) -> None:
        """`send` by session id: the room's way in, once per recipient of every message."""
        session = self.by_sid[sid]
        session.link.send(frame, tag)
        self._dirty.add(session)

    def touch(self, session: Session) -> None:
        """The session has something to send (an ack owed at once, say)."""
        self._dirty.add(session)

    def flush(self, now: float) -> list[Session]:
        """Put every datagram due into the outbox; return the sessions whose link failed."""
        dirty, self._dirty = self._dirty, set()
        by_sid = self.by_sid
        outbox = self._outbox
        for session in dirty:
            if session.sid not in by_sid:
                continue
            if session.validated and session.challenge is None:
                # The common case, once per recipient of every message: no budget to keep.
                address = session.address
                for datagram in session.link.datagrams_to_send(now):
                    outbox.append((datagram, address))
            else:
                self._flush(session, now)
        failed: list[Session] = []
        for session in dirty:
            if session.sid not in by_sid:
                continue
            if session.link.failure is not None:
                failed.append(session)
            else:
                self._schedule(session, now)
        return failed

    def _flush(self, session: Session, now: float) -> None:
        """Put what the session has due into the outbox."""
        self._send(session, session.link.datagrams_to_send(now, self._budget(session)))

    def _last_words(self, session: Session, now: float) -> list[bytes]:
        """Send everything the session has not acknowledged; return it (a few datagrams)."""
        datagrams = session.link.last_words(now, self._budget(session))
        self._send(session, datagrams)
        return datagrams[-FAREWELL_DATAGRAMS:]

    def _budget(self, session: Session) -> int | None:
        if session.challenge is not None and not session.link.extra:
            # Until the new address answers, every datagram to it repeats the challenge:
            # one that was lost must not leave the session unproven for good.
            session.link.extra = wire.challenge_field(session.challenge)
        return None if session.validated else self._budget_left(session)

    def _send(self, session: Session, datagrams: list[bytes]) -> None:
        for datagram in datagrams:
            if not session.validated:
                session.bytes_out += len(datagram)
            self._outbox.append((datagram, session.address))

    def _budget_left(self, session: Session) -> int:
        return self.config.amplification_factor * session.bytes_in - session.bytes_out

    # --- time ----------------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        """When `expire` must next run, or None."""
        timers = self._timers
        while timers:
            deadline, sid = timers[0]
            session = self.by_sid.get(sid)
            if session is not None and session.timer_at == deadline:
                return deadline
            heapq.heappop(timers)
        return None

    def expire(self, now: float) -> list[tuple[Session, str]]:
        """Run the links' timers; return the sessions to end and why (`silent`, or the
        link's failure: `unresponsive`, `overloaded`)."""
        ending: list[tuple[Session, str]] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, sid = heapq.heappop(timers)
            session = self.by_sid.get(sid)
            if session is None or session.timer_at != deadline:
                continue
            session.timer_at = None
            if now >= session.idle_check_at:
                # The same sum as the deadline, not `now - last_heard`: in floating point
                # the two can disagree, and the check would then re-arm itself for `now`.
                if now >= session.last_heard + self.config.idle_timeout:
                    ending.append((session, "silent"))
                    continue
                session.idle_check_at = self._idle_check(session.last_heard)
            session.link.handle_timer(now)
            if session.link.failure is not None:
                ending.append((session, session.link.failure))
                continue
            self._dirty.add(session)
        return ending

    def _idle_check(self, heard: float) -> float:
        """When to look again at a session last heard at `heard`: on a whole second.

        Sessions' checks then share wake-ups (10,000 sessions: one a second, not ~200),
        and a silent session is closed at most a second after `idle_timeout`.
        """
        # Never before `heard + idle_timeout`: the check then always finds it passed.
        return float(math.ceil(heard + self.config.idle_timeout))

    def _schedule(self, session: Session, now: float) -> None:
        # The idle check is not moved on every datagram heard: when it comes due, it
        # looks at `last_heard` and sets itself again. That keeps the heap small.
        deadline = session.link.next_timer()
        idle = session.idle_check_at
        if deadline is None or idle < deadline:
            deadline = idle
        if not session.validated and (self._budget_left(session) <= 0 or deadline <= now):
            # What is due does not fit what the address has earned: only the client's next
            # datagram can change that, so wait for it rather than fire the timer again.
            deadline = idle
        if session.timer_at != deadline:
            session.timer_at = deadline
            heapq.heappush(self._timers, (deadline, session.sid))
            if len(self._timers) > 4 * len(self.by_sid) + 1024:
                self._timers = [
                    (s.timer_at, s.sid) for s in self.by_sid.values() if s.timer_at is not None
                ]
                heapq.heapify(self._timers)
