"""The daemon's protocol engine: every rule of the server, with no I/O and no clock.

Feed it datagrams with `receive_datagram(data, address, now, wall)`, call
`handle_timers(now, wall)` at `next_timer()`, and send what
`datagrams_to_send(now, wall)` returns (or what `send_due` hands on as it seals). Slow
or blocking work is handed out as effects (`take_effects()`, see `effects`); the shell
does it and reports back (`password_hashed`, `password_checked`, `committed`, `failed`,
`history_loaded`, `mailbox_loaded`).

`now` is a monotonic time in seconds for timers, `wall` the Unix time for timestamps.
The work is split by concern: `lobby` (register, login), `sessions` (links, addresses,
timers), `chat` (what the room sees); this class joins them and routes each datagram.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable

import msgspec

from .. import wire
from ..records import (
    Account,
    AccountChange,
    AccountRemoval,
    BanSet,
    MarkDelivered,
    Message,
    MessageRemoval,
    MuteSet,
    OperatorChange,
    PasswordSet,
    SessionClosed,
    SessionOpened,
    Snapshot,
    StoreOp,
)
from ..rules import RuleError
from ..secure import DaemonKeys, Ticket, new_challenge, new_index, password_mark
from .bans import BANS_NAMED, Bans, banned_sentence
from .chat import Chat, error_frame
from .common import Address, Outbox, Send, iso_time
from .config import ServerConfig
from .effects import Effect, JobTable, Persist
from .fanout import Deliver, Fanout, LocalRoom
from .lobby import ACCOUNT_LOCKED, TOO_MANY_SESSIONS, Lobby
from .mailbox import Mailbox
from .notes import BanEnded, LoggedIn, Note, PasswordChanged, SessionEnded
from .password_change import CHANGED_MEANWHILE
from .sessions import Session, Transport

STAT_NAMES = (
    "datagrams_in",
    "bad_datagrams",
    "bad_records",
    "bad_payloads",
    "bad_frames",
    "bad_handshakes",
    "handshakes",
    "retries_sent",
    "keys_sent",
    "tickets_refused",
    "busy_refused",
    "replayed_inits",
    "handshakes_refused",
    "refused_when_proven",
    "unknown_sessions",
    "ended_sessions",
    "unsent_for_amplification",
    "migrations",
    "migrations_refused",
    "memory_closed",
    "pings",
    "keepalives",
    "keepalives_shortened",
    "messages",
    "banned_refused",
)
STORAGE_SORRY = "The server could not save this; try again later."
LOGIN_TIMED_OUT = wire.encode(
    wire.Bye(reason="login_timeout", message="No login came in time; connect again.")
)
CROWDED = wire.encode(wire.Bye(reason="too_many_sessions", message=TOO_MANY_SESSIONS))
REMOVED = "The daemon's operator took this account out of the room; log in again to come back."
ACCOUNT_REMOVED = (
    "The daemon's operator removed this account; it can no longer log in, and its name "
    "is no longer yours."
)
NEW_PASSWORD = "The daemon's operator gave this account a new password; log in with it."
CHANGED_ELSEWHERE = (
    "This account's password was changed in another session; log in with the new one."
)
REMOVED_MEMORY = 3
"""Keepalive intervals (the longest a client may be given) for which a session the
operator ended is remembered, its goodbye said again to its client's next datagram: a
client whose goodbye was lost, told "unknown session" instead, would take the daemon for
restarted and come back by itself. 180 s by default."""
MEMORY_CHECK_EVERY = 1.0
"""Seconds between counts of the bytes all sessions have queued."""
STALLED_AFTER = 2.0
"""Seconds past that count's time after which the daemon takes it that it could not run
(stopped, swapped out, starved of CPU) rather than that it was idle: see `_woke`."""
BULK_FRAMES = 8
"""A datagram with this many requests comes from a client sending in bulk (a bot, a
paste): with `acknowledge_bulk_first`, it is acknowledged before it is worked on."""


class ServerEngine:
    """See the module docstring."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        snapshot: Snapshot | None = None,
        *,
        keys: DaemonKeys | None = None,
        new_challenge: Callable[[], str] = new_challenge,
        new_index: Callable[[], int] = new_index,
        room: Callable[[Deliver], Fanout] = LocalRoom,
        acknowledge_bulk_first: bool = False,
    ) -> None:
        self.config = config = config or ServerConfig()
        snapshot = snapshot or Snapshot()
        self.keys = keys = keys or DaemonKeys.generate()
        self.stats: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)
        """Counters; `keepalives` counts datagrams that carried nothing but pings."""
        self.accounts: dict[str, Account] = {a.key: a for a in snapshot.accounts}
        accounts_by_id = {a.id: a for a in snapshot.accounts}
        self._effects: list[Effect] = []
        self.acknowledge_bulk_first = acknowledge_bulk_first
        """Set aside the requests of a datagram of `BULK_FRAMES` or more (and what comes
        after them from that session) until `handle_set_aside`, acknowledging them at once:
        the shell then sends the acknowledgement before the work, and a client whose
        window of unacknowledged frames is full sends its next requests meanwhile."""
        self._set_aside: dict[Session, list[tuple[int, msgspec.Raw]]] = {}
        self._outbox: Outbox = []
        self._notes: list[Note] = []
        jobs = itertools.count(1)
        self.transport = Transport(
            config,
            self._outbox,
            self.stats,
            new_challenge,
            new_index,
            self._notes,
            keys.reset_secret,
        )
        self.sessions = self.transport.by_sid
        self.bans = self.transport.bans = Bans(snapshot.bans)
        """The networks the operator turned away (`change_bans`)."""
        self._wall_ahead: float | None = None
        """The wall clock less the monotonic one, as of the last `handle_timers` (None
        before it): when a ban ends, on the timers' clock."""
        self.chat = Chat(
            config=config,
            snapshot=snapshot,
            accounts=self.accounts,
            by_sid=self.sessions,
            send=self.transport.send,
            deliver=self.transport.deliver,
            room=room,
            effects=self._effects,
            jobs=JobTable(jobs),
            mail_jobs=JobTable(jobs),
            find_jobs=JobTable(jobs),
            stats=self.stats,
        )
        self.lobby = Lobby(
            config=config,
            keys=keys,
            accounts=self.accounts,
            accounts_by_id=accounts_by_id,
            next_account_id=snapshot.next_account_id,
            held=snapshot.held,
            transport=self.transport,
            effects=self._effects,
            outbox=self._outbox,
            stats=self.stats,
            jobs=JobTable(jobs),
            notes=self._notes,
            reply=self.transport.send,
        )
        self.lobby.log_in = self._log_in
        self._memory_check_at = 0.0
        self._held_at_most = 0
        """Bytes all links hold, at most, as of the last `_check_memory`."""
        self._ended_by: dict[int, int] = {}
        """Sessions ended by the operator's changes (`change_account`, `change_bans`,
        `remove_account`), by `id()` of each."""
        self._removing: dict[int, Account] = {}
        """Accounts being removed (`remove_account`), by `id()` of the removal, until
        stored or failed."""
        self._removed_memory = REMOVED_MEMORY * max(config.direct_keepalive, wire.KEEPALIVE)
        self._restart_notices: Outbox = []
        for gone in snapshot.sessions:
            # Open when the daemon stopped without saying goodbye (a crash): its client
            # would learn it only at its next keepalive. A `RESET` says so at once.
            token = self.transport.token_for(gone.sid)
            self._restart_notices.append(
                (wire.reset_datagram(gone.sid, token), (gone.host, gone.port))
            )
            self._effects.append(Persist(SessionClosed(gone.sid)))

    def restart_notices(self) -> Outbox:
        """A `RESET` for each session open when the daemon last stopped (only after a
        crash: a shutdown ends them all), to send once, as the daemon starts."""
        notices, self._restart_notices = self._restart_notices, []
        return notices

    @property
    def room(self) -> Fanout:
        return self.chat.room

    @property
    def mailbox(self) -> Mailbox:
        return self.chat.mailbox

    # --- input ----------------------------------------------------------------------------

    def from_member(self, data: bytes) -> bool:
        """Whether `data` is addressed to a logged-in session (its clear header only: the
        datagram is still read and checked as any other). The receive loop takes these
        first, so the room's traffic does not wait behind logins and strangers."""
        index = wire.data_receiver_index(data)
        if index is None:
            return False
        session = self.sessions.get(index)
        return session is not None and session.account is not None

    def receive_datagram(self, data: bytes, address: Address, now: float, wall: float) -> None:
        """Handle one datagram from the network, whatever it holds."""
        self.chat.settle()
        self.stats["datagrams_in"] += 1
        if now > self._memory_check_at + STALLED_AFTER:
            self._woke(now)
        try:
            datagram = wire.parse_datagram_untrusted(data)
        except wire.WireError as error:
            self.stats["bad_datagrams"] += 1
            if (
                error.code == "bad_version"
                and len(data) == wire.FIRST_FLIGHT_BYTES
                and data[0] in wire.FIRST_FLIGHTS
            ):
                # A client of another version: worth a sentence (smaller than it asked).
                self.lobby.refuse_first_flight(address, error, len(data))
            return
        if isinstance(datagram, wire.Data):
            self._on_data(datagram, address, now, wall)
        elif isinstance(datagram, wire.Init | wire.KeyRequest) and (
            (banned_until := self.bans.banned_until(address[0], wall)) is not None
        ):
            # Before a key exchange is spent on it, and smaller than what it answers.
            self.stats["banned_refused"] += 1
            self.lobby.turn_away(address, len(data), banned_until, wall)
        elif isinstance(datagram, wire.Init):
            self.lobby.init(datagram, address, now)
        elif isinstance(datagram, wire.KeyRequest):
            self.lobby.key_request(datagram, address)
        else:
            self.stats["bad_datagrams"] += 1  # a daemon's datagram, sent to a daemon

    def _on_data(self, data: wire.Data, address: Address, now: float, wall: float) -> None:
        received = self.transport.receive(data, address, now, wall)
        if received is None:
            return
        session, delivered = received
        if session.recorded is not session.address and session.validated and session.account:
            self._record(session)  # it moved, and its new address answered
        link = session.link
        if link.acked_tags:
            effect = self.chat.acknowledged(session, link.acked_tags, now)
            link.acked_tags = []
            if effect is not None:
                self._effects.append(effect)
        if not delivered:
            return
        if self.acknowledge_bulk_first:
            waiting = self._set_aside.get(session)
            if waiting is not None or len(delivered) >= BULK_FRAMES:
                session.link.acknowledge_now(now)
                if waiting is None:
                    self._set_aside[session] = list(delivered)
                else:
                    waiting.extend(delivered)  # after what is set aside, in order
                return
        self._on_frames(session, delivered, now, wall)

    @property
    def set_aside(self) -> bool:
        """Whether requests wait for `handle_set_aside`."""
        return bool(self._set_aside)

    def handle_set_aside(self, now: float, wall: float) -> None:
        """Work on the requests set aside (see `acknowledge_bulk_first`), in order."""
        self.chat.settle()
        waiting, self._set_aside = self._set_aside, {}
        for session, delivered in waiting.items():
            self._on_frames(session, delivered, now, wall)

    def _on_frames(
        self, session: Session, delivered: list[tuple[int, msgspec.Raw]], now: float, wall: float
    ) -> None:
        pings = self.stats["pings"]
        for seq, raw in delivered:
            if session.sid not in self.sessions:
                break  # a logout earlier in this datagram ended the session
            self._on_frame(session, seq, raw, now, wall)
        if self.stats["pings"] - pings == len(delivered):
            self.stats["keepalives"] += 1

    def _on_frame(
        self, session: Session, seq: int, raw: msgspec.Raw, now: float, wall: float
    ) -> None:
        # Every request wants an answer: acknowledge at once rather than after the ack
        # delay, so the client's probe timer need not wait out our delay as well.
        session.link.acknowledge_now(now)
        self.transport.touch(session)
        try:
            frame = wire.decode_client_frame_untrusted(raw)
        except wire.WireError as error:
            self.stats["bad_frames"] += 1
            self.transport.send(session, error_frame(error.code, error.message, seq))
            return
        try:
            if isinstance(frame, wire.Ping):
                self.stats["pings"] += 1
            elif isinstance(frame, wire.Logout):
                self.transport.send(session, wire.encode(wire.Ok(re=seq)))
                self._close(session, "quit", now, wall, flush=True)
            elif session.account is None or isinstance(
                frame, (wire.Register, wire.Login, wire.Resume)
            ):
                if session.account is not None:
                    raise RuleError("bad_request", "This session is logged in already.")
                if session.logging_in and isinstance(frame, (wire.Login, wire.Resume)):
                    raise RuleError("bad_request", "A login is being checked on this channel.")
                self.lobby.frame(session, seq, frame, now, wall)
            elif isinstance(frame, (wire.Say, wire.Whisper)):
                self.chat.say(session, seq, frame, now, wall)
            elif not self.chat.may_ask(
                session, seq, now, reads=isinstance(frame, wire.HistoryRequest)
            ):
                pass  # refused as too fast: the client asks again
            elif isinstance(frame, wire.Who):
                self.chat.who(session, seq)
            elif isinstance(frame, wire.ChangePassword):
                self.lobby.changes.ask(session, seq, frame, now)
            else:
                self.chat.history(session, seq, frame)
        except RuleError as error:
            self.transport.send(session, error_frame(error.code, error.message, seq))

    # --- logins -------------------------------------------------------------------------------

    def _log_in(
        self,
        session: Session,
        seq: int,
        account: Account,
        request: wire.Login | wire.Resume,
        now: float,
        wall: float,
        expires: float | None,
    ) -> None:
        """A channel proved who it is (a password, a ticket): it is that account now.

        Its new ticket is good for `ticket_lifetime` after a password, but a `resume`'s
        only until the ticket it used expires: resuming never extends a ticket, so one
        that was stolen stops working 24 hours after its owner's password was checked.
        """
        if self.lobby.account_full(account, request.replaces):
            self.lobby.refuse_account_full(session, seq, account)
            return
        self.transport.logged_in(session, account, now)
        if session.validated:
            self._record(session)  # else once its address answers (`receive_datagram`)
        session.quiet = request.quiet
        session.batches = request.batches
        self._notes.append(LoggedIn(account.name, session.address, request.quiet))
        ticket = self._ticket(account, wall, expires)
        keepalive = self.transport.keepalive_for(session, request.via)
        welcome = wire.Welcome(
            re=seq,
            name=account.name,
            unread=self.chat.mailbox.count(account.id),
            ticket=ticket,
            keepalive=keepalive,
            time=round(wall, 3),
            muted=account.muted,
        )
        self.transport.send(session, wire.encode(welcome))
        # Coming back: with a resumption ticket, or a login that continues a lost session.
        since, replaces = request.since, request.replaces
        back = isinstance(request, wire.Resume) or since is not None or replaces is not None
        self.chat.enter(session, since, now, wall, back=back)
        if replaces is not None:
            self.lobby.changes.session_replaced(replaces, session)
        old = self.lobby.old_session(account, replaces)
        if old is not None and old is not session:
            # Its client lost it and came back: end it now, quietly (the account is in).
            self._close(old, "replaced", now, wall, notify=False)

    def _ticket(self, account: Account, wall: float, expires: float | None = None) -> str:
        """A ticket for `account`, good for `ticket_lifetime` (or until `expires`)."""
        lifetime = wall + self.config.ticket_lifetime
        return self.keys.tickets.seal(
            Ticket(
                account.id,
                account.key,
                lifetime if expires is None else min(expires, lifetime),
                password_mark(account.password_hash),
            )
        )

    def password_hashed(self, job: int, password_hash: str, wall: float) -> None:
        """The shell hashed a new account's password."""
        self.chat.settle()
        self.lobby.password_hashed(job, password_hash, wall)

    def password_checked(self, job: int, ok: bool, now: float, wall: float) -> None:
        """The shell checked a login's password."""
        self.chat.settle()
        self.lobby.password_checked(job, ok, now, wall)

    def history_loaded(self, job: int, messages: Iterable[Message] | None) -> None:
        """The shell read a page of history for a session's request (None: it could not)."""
        self.chat.settle()
        self.chat.history_loaded(job, messages)

    def mailbox_loaded(
        self, job: int, messages: Iterable[Message], now: float, wall: float
    ) -> None:
        """The shell read the private messages waiting for an account that logged in."""
        self.chat.settle()
        self.chat.mailbox_loaded(job, messages, now, wall)

    def sent_found(self, job: int, message: Message | None) -> None:
        """The shell looked for a message sent before under a `cid` (`FindSent`): the one
        it found, or None (none, or the read failed)."""
        self.chat.settle()
        self.chat.sent_found(job, message)

    def wants_mailbox(self, job: int) -> bool:
        """Whether the mailbox read `job` is still waited for: one that failed is tried
        again while it is (the sessions waiting for it have not left)."""
        return self.chat.wants_mailbox(job)

    # --- storage results ----------------------------------------------------------------------

    def committed(self, op: StoreOp, now: float, wall: float) -> None:
        """The persistence task committed `op`: answer whoever waited for it."""
        # Room messages wait for those committed with them (`Chat.settle`). Sessions,
        # delivery marks and accounts send the room nothing: they do not split the run.
        if isinstance(op, Message):
            self.chat.committed(op)
        elif isinstance(op, Account):
            self.lobby.account_committed(op)
        elif isinstance(op, PasswordSet):
            self._password_set(op, now, wall)
        elif isinstance(op, MuteSet):
            self._mute_set(op)
        elif isinstance(op, BanSet):
            self._ban_set(op, now, wall)
        elif isinstance(op, MessageRemoval):
            self.chat.settle()
            self.chat.unsay(op.message_id)
        elif isinstance(op, AccountRemoval):
            self.chat.settle()
            self._removing.pop(id(op), None)
            self.chat.account_removed(op.account_id)
        elif isinstance(op, MarkDelivered):
            self.chat.marked(op)

    def failed(self, op: StoreOp, earlier: Message | None = None) -> None:
        """The persistence task could not commit `op`: tell whoever waited for it.

        `earlier`: the copy the store holds of a message sent again with the same `cid`
        (refused as a second copy), which answers the resend.
        """
        self.chat.settle()
        if isinstance(op, Message):
            self.chat.failed(op, STORAGE_SORRY, earlier)
        elif isinstance(op, Account):
            self.lobby.account_failed(op, STORAGE_SORRY)
        elif isinstance(op, PasswordSet):
            self.lobby.changes.failed(op, STORAGE_SORRY)
        elif isinstance(op, MarkDelivered):
            self.chat.mark_failed(op)
        elif isinstance(op, AccountRemoval):
            account = self._removing.pop(id(op), None)
            if account is not None:
                self.lobby.account_kept(account)

    # --- the operator -------------------------------------------------------------------------

    def free_name(self, name: str) -> str:
        """`name` as `add_account` would make it, if it may now; else `RuleError`
        (`invalid_name`, `name_taken`: an account, or one being made, has it or one it
        could be mistaken for)."""
        return self.lobby.free_name(name)[0]

    def add_account(self, name: str, password_hash: str, wall: float) -> Account:
        """Make an account (`trio-chat accounts add` on a running daemon), whether the
        daemon takes registrations or not: stored first (a `Persist` effect), and in once
        `committed`. `RuleError` for a name no registration could have (`invalid_name`,
        `name_taken`)."""
        return self.lobby.add_account(name, password_hash, wall)

    def change_account(self, op: AccountChange) -> None:
        """Lock, unlock, mute, unmute or give a new password to an account (`trio-chat
        accounts` on a running daemon). The change is stored first (a `Persist` effect)
        and taken once `committed`: a lock, or a new password, then ends the account's
        sessions (how many: `sessions_ended_by`), and its tickets stop working; a mute
        is told to its sessions, which may say nothing from then on."""
        if isinstance(op, PasswordSet):
            self.lobby.changes.operator_changes(op.account_id)
        self._store_operator_change(op)

    def remove_account(self, key: str, now: float, wall: float) -> AccountRemoval:
        """Remove the account whose name key is `key` (`trio-chat accounts remove` on a
        running daemon), taken at once: no login, ticket or whisper finds it from now on,
        its name is held (no registration takes it), and its sessions end, each told by a
        final `bye` (how many: `sessions_ended_by`). Then stored (a `Persist` effect):
        once `committed`, what waited for it is gone; `failed`, it is back (its sessions
        stay ended)."""
        self.chat.settle()
        account = self.accounts[key]
        op = AccountRemoval(account.id, iso_time(wall))
        self.lobby.changes.operator_changes(account.id)
        self.lobby.remove_account(account)
        sessions = self._sessions_of(account)
        ended = self._end(sessions, "account_removed", ACCOUNT_REMOVED, now, wall)
        self._removing[id(op)] = account
        self._store_operator_change(op)
        self._ended_by[id(op)] = ended
        return op

    def change_bans(self, op: BanSet) -> None:
        """Ban a network, or lift its ban (`trio-chat bans` on a running daemon): stored
        first, then taken once `committed`. A ban ends the network's sessions (how many:
        `sessions_ended_by`), each told why."""
        self._store_operator_change(op)

    def remove_message(self, op: MessageRemoval) -> None:
        """Remove a room message from history (`trio-chat messages remove` on a running
        daemon): stored first, then taken once `committed`: left out of history, and
        everyone in the room told (`unsaid`)."""
        self._store_operator_change(op)

    def _store_operator_change(self, op: OperatorChange) -> None:
        self._effects.append(Persist(op))
        self._ended_by[id(op)] = 0  # until it is taken

    def _ended_by_operator(self, op: OperatorChange, ended: int) -> None:
        """Note how many sessions `op` ended, if the operator asked for it (a session's
        own password change is no operator's)."""
        if id(op) in self._ended_by:
            self._ended_by[id(op)] = ended

    def _ban_set(self, op: BanSet, now: float, wall: float) -> None:
        self.chat.settle()
        self._bans_ended(wall)  # the store forgot them with this change
        if not op.banned:
            self.bans.remove(op.network)
            return
        ban = op.record()
        self.bans.add(ban)
        if ban.ended(wall):
            return  # stored too late to end anything
        ended = 0
        sessions = self.sessions.values()
        for session in [s for s in sessions if self.bans.banning(s.address[0], op.network)]:
            # Each told when the longest ban that holds its address ends.
            until = self.bans.banned_until(session.address[0], wall) or math.inf
            ended += self._banned([session], until, now, wall)
        self._ended_by_operator(op, ended)

    def _bans_ended(self, wall: float) -> None:
        """Forget the bans ended by `wall`, each noted for the operator, but for those
        found ended at the daemon's first turn (`handle_timers`): they ended while it was
        not running, and are forgotten without a word."""
        ended = self.bans.take_ended(wall)
        if self._wall_ahead is None:
            return
        for ban in ended:
            assert ban.until is not None  # only a ban with an end ends
            still = tuple(
                (wider.network, wider.until) for wider in self.bans.covering(ban.network, wall)
            )
            inside, count = self.bans.inside(ban.network, most=BANS_NAMED)
            within = tuple((narrower.network, narrower.until) for narrower in inside)
            self._notes.append(BanEnded(ban.network, ban.until, still, within, count))

    def sessions_ended_by(self, op: OperatorChange) -> int:
        """How many sessions the operator's `op` (`change_account`, `change_bans`,
        `remove_account`) ended when it was taken."""
        return self._ended_by.pop(id(op), 0)

    def session_count(self, account_id: int) -> int:
        """The account's sessions open now."""
        return self.transport.per_account.get(account_id, 0)

    def _password_set(self, op: PasswordSet, now: float, wall: float) -> None:
        self.chat.settle()
        change = self.lobby.changes.stored(op)  # asked by one of the account's sessions
        old = self.lobby.account_by_id(op.account_id)
        if old is None:  # removed meanwhile: its sessions ended with it
            self._while_removed(op)
            return
        if not op.takes(old.password_hash):
            # Changed while this session's change was stored (by another session of the
            # account): that one stands (the store left it too).
            if change is not None:
                self.lobby.changes.tell_refused(change, CHANGED_MEANWHILE)
            return
        account = dataclasses.replace(old, password_hash=op.applied(old.password_hash))
        sessions = self._account_changed(account)
        session = None if change is None else self.sessions.get(change.sid)
        if account.locked:
            ended = self._end(sessions, "account_locked", ACCOUNT_LOCKED, now, wall)
            session = None
        elif not account.same_password(old):
            told = NEW_PASSWORD if change is None else CHANGED_ELSEWHERE
            others = [other for other in sessions if other is not session]
            # The room is told the operator took them out only if the operator did.
            left = "removed" if change is None else "password_changed"
            ended = self._end(others, "removed", told, now, wall, left=left)
        else:
            ended = 0
        self._ended_by_operator(op, ended)
        if change is not None and session is not None:
            self._notes.append(PasswordChanged(account.name, session.address))
            if change.seq is not None:
                frame = wire.PasswordChanged(re=change.seq, ticket=self._ticket(account, wall))
                self.transport.send(session, wire.encode(frame))

    def _mute_set(self, op: MuteSet) -> None:
        self.chat.settle()
        old = self.lobby.account_by_id(op.account_id)
        if old is None:  # removed meanwhile
            self._while_removed(op)
            return
        account = dataclasses.replace(old, muted=op.muted)
        sessions = self._account_changed(account)
        if account.muted != old.muted:
            text = wire.MUTED_NOTICE if account.muted else wire.UNMUTED_NOTICE
            notice = wire.encode(wire.Notice(text=text, muted=account.muted))
            for session in sessions:
                self.transport.send(session, notice)

    def _while_removed(self, op: AccountChange) -> None:
        """`op`, stored, reached an account whose removal is not stored yet: the account
        kept should the store refuse the removal (`failed`) is as the store has it."""
        for removal, account in self._removing.items():
            if account.id != op.account_id:
                continue
            if isinstance(op, MuteSet):
                self._removing[removal] = dataclasses.replace(account, muted=op.muted)
            elif op.takes(account.password_hash):
                hashed = op.applied(account.password_hash)
                self._removing[removal] = dataclasses.replace(account, password_hash=hashed)

    def _account_changed(self, account: Account) -> list[Session]:
        """`account` as it is now, wherever it is kept; its sessions, which hold it."""
        self.lobby.account_changed(account)
        sessions = self._sessions_of(account)
        for session in sessions:
            session.account = account
        return sessions

    def _sessions_of(self, account: Account) -> list[Session]:
        return [
            session
            for session in self.sessions.values()
            if session.account is not None and session.account.id == account.id
        ]

    def remove(self, key: str, now: float, wall: float) -> int:
        """Take the account whose name key is `key` out of the room now (the operator's
        `trio-chat accounts kick`): its sessions end, their clients told why, which do not
        come back by themselves. Returns how many sessions ended."""
        self.chat.settle()
        sessions = self._sessions_of(self.accounts[key])
        return self._end(sessions, "removed", REMOVED, now, wall)

    def _end(
        self,
        sessions: list[Session],
        reason: str,
        message: str,
        now: float,
        wall: float,
        *,
        left: str | None = None,
        until: float | None = None,
    ) -> int:
        """End `sessions` as the operator asked (an account's, a network's), or a new
        password of the account's own, each told why by a final `bye` (`until`: when a
        ban ends); returns how many. The room is told they `left` (by default, as the
        operator's doing)."""
        bye = wire.encode(wire.Bye(reason=reason, message=message, until=until))
        if left is None:
            left = "banned" if reason == "banned" else "removed"
        for session in sessions:
            self.transport.send(session, bye)  # said again if its client speaks after
            self._close(session, left, now, wall, flush=True, remember=self._removed_memory)
        return len(sessions)

    def _banned(self, sessions: list[Session], until: float, now: float, wall: float) -> int:
        """End `sessions` of a network banned until Unix time `until` (`math.inf`: for
        good), each told so and when the ban ends."""
        ends = round(until, 3) if until <= wire.UNIX_TIME_MAX else None  # else as for good
        return self._end(sessions, "banned", banned_sentence(until), now, wall, until=ends)

    # --- sessions ending ----------------------------------------------------------------------

    def _close(
        self,
        session: Session,
        reason: str,
        now: float,
        wall: float,
        *,
        flush: bool = False,
        notify: bool = True,
        remember: float | None = None,
    ) -> None:
        self.transport.remove(session, now, flush=flush, remember=remember)
        if session.recorded is not None:
            self._effects.append(Persist(SessionClosed(session.sid)))
        if session.account is None:
            return  # a channel that never logged in: nobody to tell
        self._notes.append(SessionEnded(session.account.name, session.address, reason))
        # Others are told in the document's words: silent or unresponsive is a timeout.
        told = "timeout" if reason in ("silent", "unresponsive") else reason
        self.chat.leave(session, told, wall, notify=notify)
        if self.session_count(session.account.id) == 0:
            self.chat.logged_out(session.account.id)

    def _record(self, session: Session) -> None:
        """Store where a logged-in session's client is (`restart_notices`)."""
        session.recorded = address = session.address
        self._effects.append(Persist(SessionOpened(session.sid, str(address[0]), address[1])))

    def shutdown(self, now: float, wall: float) -> None:
        """Tell every session the daemon is going away; the shell then sends the output."""
        self.chat.settle()
        bye = wire.encode(wire.Bye(reason="shutdown", message="The daemon is stopping."))
        for session in list(self.sessions.values()):
            self.transport.send(session, bye)
            self._close(session, "shutdown", now, wall, flush=True, notify=False)
        marks = self.chat.unmarked()
        if marks is not None:
            self._effects.append(marks)

    # --- time and output ------------------------------------------------------------------------

    def next_timer(self) -> float | None:
        """When `handle_timers` must next run, or None."""
        deadline = self.transport.next_timer()
        if self.sessions and (deadline is None or self._memory_check_at < deadline):
            deadline = self._memory_check_at
        if self.bans.next_end < math.inf and self._wall_ahead is not None:
            ban_ends = self.bans.next_end - self._wall_ahead
            if deadline is None or ban_ends < deadline:
                deadline = ban_ends
        return deadline

    def handle_timers(self, now: float, wall: float) -> None:
        """Retransmit, acknowledge late, close sessions that went silent or stuck, and
        let in the networks whose bans ended."""
        self.chat.settle()
        if wall >= self.bans.next_end:
            self._bans_ended(wall)
        self._wall_ahead = wall - now
        if now > self._memory_check_at + STALLED_AFTER:
            self._woke(now)
        if self._set_aside:
            self.handle_set_aside(now, wall)  # nothing waits past a turn
        for session, reason in self.transport.expire(now):
            if reason == "unauthenticated":
                # Said, not only done: a client that is still there learns it at once.
                self.transport.send(session, LOGIN_TIMED_OUT)
                self._close(session, reason, now, wall, flush=True)
            else:
                self._close(session, reason, now, wall)
        if now >= self._memory_check_at:
            self._memory_check_at = now + MEMORY_CHECK_EVERY
            self._check_memory(now, wall)

    def _woke(self, now: float) -> None:
        """The daemon runs again after a time it could not (its memory count, due every
        second while sessions are open, is late): that time does not count against a
        message refused as too fast. Until it comes back, later ones are held back for
        `chat.BLOCK_GRACE` past its retry time; counted across the stall, those the client
        wrote after it, read only now, were taken for messages sent after giving it up,
        and stored before it."""
        if self.sessions:
            late = now - self._memory_check_at
            for session in self.sessions.values():
                if session.blocked_cid is not None:
                    session.blocked_until += late
        self._memory_check_at = now

    def _check_memory(self, now: float, wall: float) -> None:
        """Past the daemon's total of bytes held for links (queued to send, or received
        early), close the sessions holding most: the slowest readers, or senders that
        leave gaps."""
        limit = self.config.max_queued_bytes
        bound = self._held_at_most + self.transport.growth
        self.transport.growth = 0
        if bound <= limit:
            # Nothing to count: 10,000 idle sessions cost ~3 ms a count.
            self._held_at_most = bound
            return
        total = sum(session.link.held_bytes for session in self.sessions.values())
        self._held_at_most = total
        if total <= limit:
            return
        heaviest = sorted(self.sessions.values(), key=lambda s: s.link.held_bytes)
        while heaviest and total > limit * 0.9:
            session = heaviest.pop()
            total -= session.link.held_bytes
            self.stats["memory_closed"] += 1
            self._close(session, "overloaded", now, wall)
        self._held_at_most = total

    def datagrams_to_send(self, now: float, wall: float) -> list[tuple[bytes, Address]]:
        """Everything due to be sent now, as `(datagram, address)` pairs."""
        out: Outbox = []
        self.send_due(now, wall, out.extend)
        return out

    def send_due(self, now: float, wall: float, send: Send) -> None:
        """Hand everything due to be sent now to `send`, in `(datagram, address)` pairs, a
        few at a time as they are sealed (`SEND_EARLY`): the same datagrams, in the same
        order, as `datagrams_to_send` returns."""
        with self.transport.sending(now, send):
            self.chat.settle()  # the room's copies to idle links go out as they are made
        for session in self.transport.flush(now, send):
            if session.sid not in self.sessions:
                continue
            reason = session.link.failure or "unresponsive"
            if reason == "too_many_sessions":
                self.transport.send(session, CROWDED)  # its client learns why at once
                self._close(session, reason, now, wall, flush=True)
            elif reason == "banned":
                self._banned([session], session.banned_until, now, wall)
            else:
                self._close(session, reason, now, wall)
        if self._outbox:
            rest = self._outbox[:]
            self._outbox.clear()
            send(rest)

    def take_notes(self) -> list[Note]:
        """What happened that the operator should hear of, in order (see `notes`)."""
        notes = self._notes[:]
        self._notes.clear()
        return notes

    def take_effects(self) -> list[Effect]:
        """Work the shell must do (and report back on), in the order it arose."""
        effects = self._effects[:]
        self._effects.clear()
        return effects
