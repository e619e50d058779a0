"""The room as people have it: messages, private messages, who is here, history.

`Chat` decides what each frame of a session means and what the room sees of it. A
message is stored before anything else happens with it: once the persistence task has
committed it, the room (or the recipient) is sent it, encoded once for everyone, and
the sender the `ok`. No one is ever shown a message that a crash could take back.

Room messages committed together are shown together: `committed` keeps them until
`settle`, which the engine calls before it takes in anything else, so that a session
that reads `msgs` frames gets them in one frame rather than one frame each.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable

from .. import wire
from ..limits import KeyedBuckets
from ..records import Account, MarkDelivered, Message, Snapshot
from ..rules import RuleError, check_text, name_key
from .common import iso_time, round_up
from .config import ServerConfig
from .effects import Effect, FindSent, JobTable, LoadHistory, Persist
from .fanout import Deliver, Fanout
from .history import HistoryWindow
from .mailbox import Mailbox, MailboxReads
from .sessions import WRAPPING, Session

MUTED_ACCOUNT = "The daemon's operator muted this account: it may not say anything for now."
BLOCK_GRACE = 10.0
"""How long after it may come back a refused message holds back later ones (then it is
presumed abandoned, and the session's messages flow again). It counts only once the
client has the refusal (its link acknowledged it): a refusal lost on the way, while the
client's network was down, gave it no chance to resend."""
_REFUSED = "refused"
"""The tag of a refusal as too fast on its way to the client (with the message's `cid`)."""
READ_AGAIN_AFTER = 0.05
"""Seconds after which a session with `reads_per_session` reads under way may ask again."""
TOO_FAST = "You are sending too fast; slow down."
NAMES_PART_BYTES = 700
"""Names per `names` frame: as many as fit this many bytes, so every frame fits."""

QueueFrame = Callable[[Session, bytes, Hashable | None], None]
"""Queue an encoded frame on a session (with an ack tag)."""
UNMARKED_MOST = 10_000
"""Deliveries a failing disk could not record that are kept to be recorded later."""


REMOVALS_TOLD = 1000
"""The latest removals a client coming back is told of (the store keeps as many)."""
READ_SPARE = 8
"""Messages a history read takes beyond those asked for: room for those the operator
removes while it runs (left out of the page)."""
BACKLOG_SHARE = 7 / 8
"""The most of a session's queue (`LinkConfig.max_queue_bytes` and `max_queue`) its
history on login may take, the rest left for what the room says while the client takes
it in. Its unread private messages always come (1000 of the longest, between the longest
names, take 0.84 MiB); the public messages of a resume, and the private ones its other
sessions had, fill what is left newest first, the older ones left out (`more`), for the
client to page back to. All of them, up to `resume_limit` each, would take up to 1.9 MiB:
a queue past its limit ends the session as `overloaded`, and its client, coming back
from the same place, would meet the same backlog again."""


def _account(session: Session) -> Account:
    """The account of a session in the room (only logged-in sessions reach the room)."""
    account = session.account
    assert account is not None, "a channel that is not logged in reached the room"
    return account


def error_frame(code: str, message: str, re: int | None, retry_after: float | None = None) -> bytes:
    return wire.encode(wire.ErrorFrame(code=code, message=message, re=re, retry_after=retry_after))


def message_frame(
    message: Message, viewer: int | None, *, history: bool = False, re: int | None = None
) -> bytes:
    """A stored message as the frame that shows it (`msg` or `pm`) to account `viewer`.

    Only its sender is shown its `cid`, which its sessions need to know it as theirs: a
    client's ids count up after a random part, and the count between two of someone's
    messages would tell others how many they sent meanwhile, privately too.
    """
    cid = message.cid if viewer == message.sender_id else None
    if message.recipient is None:
        frame: wire.Msg | wire.Pm = wire.Msg(
            id=message.id,
            ts=message.ts,
            sender=message.sender,
            text=message.text,
            cid=cid,
            history=history,
            re=re,
        )
    else:
        frame = wire.Pm(
            id=message.id,
            ts=message.ts,
            sender=message.sender,
            to=message.recipient,
            text=message.text,
            cid=cid,
            history=history,
            re=re,
        )
    return wire.encode(frame)


def stored_frame(message: Message, re: int) -> bytes:
    """The answer to a `say` or `whisper`: stored, with this id and time (and recipient)."""
    return wire.encode(wire.Ok(re=re, id=message.id, ts=message.ts, to=message.recipient))


def _fitting(
    newest_first: Iterable[Message], viewer: int, room: int, count: int
) -> list[tuple[Message, bytes]]:
    """The newest of these messages whose frames take at most `room` bytes and `count`
    frames of a session's queue, with their frames, newest first."""
    kept: list[tuple[Message, bytes]] = []
    for message in newest_first:
        frame = message_frame(message, viewer, history=True)
        room -= len(frame) + WRAPPING
        if room < 0 or len(kept) >= count:
            break
        kept.append((message, frame))
    return kept


def _listed_from(listed: list[Message], cut: bool, known_from: int) -> int:
    """From which id on a list of what a session missed holds every message of its kind:
    all of it, unless `cut` (to its newest, or by what the window forgot: it knows those
    from `known_from` on)."""
    if not cut:
        return 0
    return listed[0].id if listed else known_from


def _run_sent(newest_first: list[Message], kept: list[tuple[Message, bytes]]) -> int:
    """The oldest id of the newest messages that were all `kept` (one past the newest if
    the newest was not): the session has everything from there on."""
    sent = {message.id for message, _frame in kept}
    oldest = newest_first[0].id + 1 if newest_first else 0
    for message in newest_first:
        if message.id not in sent:
            break
        oldest = message.id
    return oldest


class Chat:
    """The room's rules; see the module docstring."""

    def __init__(
        self,
        *,
        config: ServerConfig,
        snapshot: Snapshot,
        accounts: dict[str, Account],
        by_sid: dict[int, Session],
        send: QueueFrame,
        deliver: Deliver,
        room: Callable[[Deliver], Fanout],
        effects: list[Effect],
        jobs: JobTable[tuple[int, int, int]],  # history reads: session, request, limit
        mail_jobs: JobTable[int],  # mailbox reads: account
        find_jobs: JobTable[tuple[int, int, RuleError]],  # resends: session, request, refusal
        stats: dict[str, int],
    ) -> None:
        self.config = config
        self._stats = stats
        self._accounts = accounts
        self._by_sid = by_sid
        self._send = send
        self._effects = effects
        self._jobs = jobs
        self._finds = find_jobs
        self.reads = MailboxReads(mail_jobs)
        self.room = room(deliver)
        self._unsaid: set[int] = set()
        """The room's messages the operator removed while the daemon runs (rare)."""
        self._removals: deque[tuple[int, int]] = deque(snapshot.removals, maxlen=REMOVALS_TOLD)
        """The latest removals, each with the newest message id given when it was made: a
        client coming back from before that is told of it."""
        self.window = HistoryWindow(config.window_messages, snapshot.recent, snapshot.public_count)
        self.mailbox = Mailbox(snapshot.unread.items())
        self.next_message_id = snapshot.next_message_id
        stored = snapshot.stored_up_to
        self._stored_up_to = snapshot.next_message_id - 1 if stored is None else stored
        """The newest message id on disk. Ids above it that were handed out may be handed
        out again after a restart (their commit failed, or the clock went back), so no
        login's `upto` may pass it: a client resuming from there would miss them."""
        self._awaiting_commit: dict[int, list[tuple[int, int]]] = {}
        """Messages not on disk yet: id -> the (session, request) pairs to answer."""
        self._sent_by: dict[int, int] = {}
        """Messages not on disk yet: id -> the session that sent it."""
        self._announced: set[int] = set()
        """Accounts in the room whose join the room was told of: it is told of their leave."""
        self._unshown: Counter[int] = Counter()
        """Account -> how many of its room messages are not shown yet (not on disk yet)."""
        self._leaves_held: dict[int, bytes] = {}
        """Account -> the `leave` to tell the room once its room messages are shown."""
        self._joins_told = KeyedBuckets(config.notice_rate, config.notice_burst)
        self._unmarked: tuple[int, ...] = ()
        """Private messages delivered whose mark the disk refused: sent with the next."""
        self._run: list[Message] = []
        """Room messages committed one after another, not shown yet (see `settle`)."""

    def _reply(self, session: Session, frame: bytes) -> None:
        self._send(session, frame, None)

    # --- entering and leaving ---------------------------------------------------------------

    def enter(
        self, session: Session, since: int | None, now: float, wall: float, *, back: bool = False
    ) -> None:
        """A session logged in: show it what it missed, then let the room know (`back`:
        its login continues one that was lost). If its account's unread messages are on
        disk only, that waits for their read (`mailbox_loaded`)."""
        if session.quiet:
            # A look from outside: who is there and what waits, without entering.
            self._reply(session, wire.encode(wire.Ready(count=0)))
            return
        account = _account(session)
        if self.mailbox.needs_loading(account.id):
            # Its unread messages are on disk only: it enters once they are read.
            read = self.reads.wait(account.id, (session.sid, since, back))
            if read is not None:
                self._effects.append(read)
            return
        self._enter(session, since, now, wall, back)

    def wants_mailbox(self, job: int) -> bool:
        """Whether the read of `job` is still waited for (a session of its account is
        still there to enter): the shell tries a read that failed again while it is."""
        return self.reads.wanted(job)

    def mailbox_loaded(
        self, job: int, messages: Iterable[Message], now: float, wall: float
    ) -> None:
        """An account's unread messages were read: the sessions that waited for them enter."""
        done = self.reads.done(job, messages)
        if done is None:
            return  # everyone left meanwhile
        account_id, found, entering = done
        self.mailbox.load(account_id, found)
        for sid, since, back in entering:
            session = self._by_sid.get(sid)
            if session is not None:
                self._enter(session, since, now, wall, back)

    def logged_out(self, account_id: int) -> None:
        """No session of the account is left: its mailbox keeps only its count (and what
        is not on disk yet)."""
        self.reads.logged_out(account_id)
        self.mailbox.unload(account_id, keep=lambda message: message.id in self._sent_by)

    def _enter(
        self, session: Session, since: int | None, now: float, wall: float, back: bool
    ) -> None:
        missed, held = self.reads.entered(session.sid)
        self._send_backlog(session, since, missed)
        for frame in held:
            self._reply(session, frame)
        account = _account(session)
        entered = self.room.enter(session.sid, account.id, account.name, batches=session.batches)
        if entered and self._leaves_held.pop(account.id, None) is not None:
            self._announced.add(account.id)  # back before the room was told it left
            return
        if entered and self._notices_on() and self._joins_told.take(account.id, now) == 0.0:
            self._announced.add(account.id)
            join = wire.encode(wire.Join(name=account.name, ts=iso_time(wall), back=back))
            self.room.broadcast(join, exclude=session.sid)

    def leave(self, session: Session, reason: str, wall: float, *, notify: bool = True) -> None:
        """A session left; the room is told if it was the account's last, and its join was."""
        self.reads.left(session.sid)
        account = _account(session)
        if not self.room.leave(session.sid, account.id) or account.id not in self._announced:
            return
        self._announced.discard(account.id)
        if notify:
            leave = wire.encode(wire.Leave(name=account.name, ts=iso_time(wall), reason=reason))
            if self._unshown[account.id]:
                # What it said last (from this session or another of the account's) is
                # not shown yet: the room sees it before the leave.
                self._leaves_held[account.id] = leave
            else:
                self.room.broadcast(leave)

    def _shown(self, message: Message) -> None:
        """A room message is shown (or will never be): a leave its sender's account was
        held for may be told now."""
        if message.recipient_id is not None:
            return
        sender = message.sender_id
        self._unshown[sender] -= 1
        if self._unshown[sender] <= 0:
            del self._unshown[sender]
            leave = self._leaves_held.pop(sender, None)
            if leave is not None:
                self.room.broadcast(leave)

    def _notices_on(self) -> bool:
        return self.room.accounts_online <= self.config.notice_limit

    def _send_backlog(
        self, session: Session, since: int | None, own: Iterable[Message] = ()
    ) -> None:
        account_id = _account(session).id
        private: list[Message] = []
        complete_from = 0  # every message from this id on is in the lists, of both kinds
        if since is None:
            public, more = self.window.latest(self.config.history_on_login)
        else:
            public, more = self.window.after(since, self.config.resume_limit)
            # What the account's other sessions had meanwhile, received or sent.
            private, cut = self.window.private_after(account_id, since, self.config.resume_limit)
            complete_from = max(
                _listed_from(public, more, self.window.public_known_from),
                _listed_from(private, cut, self.window.private_known_from),
            )
            more = more or cut
        waiting = self.mailbox.waiting(account_id)
        # What is not on disk yet is shown by `_fan_out` once it is, this session included.
        unstored = self._sent_by
        frames = {
            m.id: (m, message_frame(m, account_id, history=True))
            for m in (*waiting, *own)
            if m.id not in unstored
        }
        link = session.link
        room = int(link.config.max_queue_bytes * BACKLOG_SHARE) - link.queued_bytes
        room -= sum(len(frame) + WRAPPING for _m, frame in frames.values())
        count = int(link.config.max_queue * BACKLOG_SHARE) - link.queued - len(frames)
        newest_first = sorted(
            (m for m in {*public, *private} if m.id not in unstored and m.id not in frames),
            key=lambda m: m.id,
            reverse=True,
        )
        kept = _fitting(newest_first, account_id, room, count)
        if len(kept) < len(newest_first):
            more = True  # the older ones are left out, as past `resume_limit`
            # The client pages back into the gap from the oldest room message shown.
            while kept and kept[-1][0].private:
                kept.pop()
            if not kept:  # its other sessions' private messages took the room
                public_only = [m for m in newest_first if not m.private]
                kept = _fitting(public_only, account_id, room, count)
                if not kept and public_only:
                    # Its unread messages took it all: the newest room message comes
                    # anyway (one frame, in the eighth left free). With none, the client
                    # would page back from its oldest message shown, an unread one
                    # maybe older than all the room said meanwhile, never shown it.
                    newest = public_only[0]
                    kept = [(newest, message_frame(newest, account_id, history=True))]
        gap: int | None = None
        if since is not None and more:
            gap = max(complete_from, _run_sent(newest_first, kept))
        frames.update((m.id, (m, frame)) for m, frame in kept)
        backlog = sorted(frames)
        for message_id in backlog:
            message, frame = frames[message_id]
            self._send(session, frame, ("pm", message_id) if message.private else None)
        if since:
            # Coming back: the removals made since the newest message it had, of
            # messages it may have been shown (not newer than that), latest first until
            # one made before it went; told in the order they were made.
            missed: list[int] = []
            for point, message_id in reversed(self._removals):
                if point < since:
                    break
                if message_id <= since:
                    missed.append(message_id)
            for message_id in reversed(missed):
                self._reply(session, wire.encode(wire.Unsaid(id=message_id)))
        # What this history leaves out (older public messages, private ones delivered
        # before) it leaves out of a resume too: the client resumes from here at least.
        upto = min(self._stored_up_to, min(unstored, default=self.next_message_id) - 1)
        ready = wire.Ready(count=len(backlog), more=more, upto=upto, gap=gap)
        self._reply(session, wire.encode(ready))

    # --- requests -----------------------------------------------------------------------------

    def say(
        self,
        session: Session,
        seq: int,
        frame: wire.Say | wire.Whisper,
        now: float,
        wall: float,
    ) -> None:
        """A `say` or `whisper`: answered once stored (or at once, if it was before)."""
        account = _account(session)
        if session.quiet:
            raise RuleError("bad_request", "Log in without `quiet` to take part in the room.")
        earlier = self.window.find(account.id, frame.cid)
        if earlier is not None:
            self._acknowledge(session, seq, earlier)
            return
        if account.muted:
            raise RuleError("muted", MUTED_ACCOUNT)
        check_text(frame.text)
        # Counted before the recipient is looked up: whispers to names that do not exist
        # would otherwise test names for existence as fast as they can be sent.
        if not self._may_send(session, frame.cid, now, seq):
            return
        recipient: Account | None = None
        if isinstance(frame, wire.Whisper):
            recipient = self._accounts.get(name_key(frame.to))
            if recipient is None:
                raise RuleError("unknown_user", f"There is no account named {frame.to!r}.")
            mailbox_full = self.mailbox.count(recipient.id) >= self.config.mailbox_limit
            if mailbox_full and recipient.id != account.id:  # a note waits in no mailbox
                full = RuleError(
                    "mailbox_full", f"{recipient.name} has too many unread messages already."
                )
                if self.window.complete:
                    raise full
                # It may be a message stored before, sent again after more messages than
                # the window holds (its answer lost): if so, it is answered as stored. The
                # look is one of the session's reads.
                if session.reading >= self.config.reads_per_session:
                    self._too_fast(session, seq, frame.cid, READ_AGAIN_AFTER, now)
                    return
                session.reading += 1
                job = self._finds.add((session.sid, seq, full))
                self._effects.append(FindSent(job, account.id, frame.cid))
                return
        message = Message(
            id=self.next_message_id,
            ts=iso_time(wall),
            sender_id=account.id,
            sender=account.name,
            text=frame.text,
            recipient_id=recipient.id if recipient else None,
            recipient=recipient.name if recipient else None,
            cid=frame.cid,
        )
        self.next_message_id += 1
        self.window.add(message)
        self._awaiting_commit[message.id] = [(session.sid, seq)]
        self._sent_by[message.id] = session.sid
        if recipient is None:
            self._unshown[account.id] += 1
        self._effects.append(Persist(message))
        if recipient is not None and recipient.id != account.id:
            self.mailbox.add(message)

    def _may_send(self, session: Session, cid: str, now: float, seq: int) -> bool:
        """The per-session token bucket, keeping resent messages in their order."""
        blocked = session.blocked_cid
        told = session.blocked_told
        if blocked is not None and told and now > session.blocked_until + BLOCK_GRACE:
            blocked = None  # the client gave that message up
        if blocked is None or blocked == cid:
            wait = session.bucket.take(now)
            if wait == 0.0:
                session.blocked_cid = None
                return True
            self._too_fast(session, seq, cid, wait, now)
        else:
            wait = max(session.bucket.wait(now), 0.001)
            self._send(session, error_frame("rate_limited", TOO_FAST, seq, round_up(wait)), None)
        return False

    def _too_fast(self, session: Session, seq: int, cid: str, wait: float, now: float) -> None:
        """Refuse the message `cid` as too fast, to be sent again in `wait` seconds: the
        session's later ones are refused until it is."""
        session.blocked_cid, session.blocked_until = cid, now + wait
        session.blocked_told = False
        tag = (_REFUSED, cid)  # told once the client acknowledges it
        self._send(session, error_frame("rate_limited", TOO_FAST, seq, round_up(wait)), tag)

    def _acknowledge(self, session: Session, seq: int, message: Message) -> None:
        waiting = self._awaiting_commit.get(message.id)
        if waiting is not None:
            waiting.append((session.sid, seq))
        else:
            self._answer_resend(session, seq, message)

    def _answer_resend(self, session: Session, seq: int, message: Message) -> None:
        """A message sent again that was stored before: its `ok`, and, if the operator
        removed it since, its `unsaid` (its client would show it again from its own copy)."""
        self._answer_frame(session, stored_frame(message, seq))
        if self.removed(message):
            self._answer_frame(session, wire.encode(wire.Unsaid(id=message.id)))

    def _answer_frame(self, session: Session, frame: bytes) -> None:
        """Answer a session's message now, or after its history if that is still to come
        (`MailboxReads.hold`)."""
        if not self.reads.hold(session.sid, frame):
            self._reply(session, frame)

    def unsaid(self, message_id: int) -> bool:
        """Whether the operator removed the room's message `message_id` while the daemon
        runs."""
        return message_id in self._unsaid

    def removed(self, message: Message) -> bool:
        """Whether the operator removed the room's message `message` (as read from the
        store, a removed message's text is empty, which no message stored can be)."""
        return not message.private and (message.id in self._unsaid or not message.text)

    def may_ask(self, session: Session, seq: int, now: float, *, reads: bool) -> bool:
        """Whether a question (`who`, or a `history` that `reads` the database) is taken
        now; if not, the session is told when to ask again (`rate_limited`). Counted
        before any work: one session's questions cannot hold up the room's commits."""
        if reads and session.reading >= self.config.reads_per_session:
            wait = READ_AGAIN_AFTER
        else:
            wait = session.questions.take(now)
            if wait == 0.0:
                return True
        sorry = "You are asking too fast; slow down."
        self._reply(session, error_frame("rate_limited", sorry, seq, round_up(wait)))
        return False

    def who(self, session: Session, seq: int) -> None:
        names = self.room.online()
        part: list[str] = []
        size = 0
        for name in names:
            if size + len(name.encode()) + 3 > NAMES_PART_BYTES and part:
                self._reply(session, wire.encode(wire.Names(re=seq, names=part)))
                part, size = [], 0
            part.append(name)
            size += len(name.encode()) + 3
        if part:
            self._reply(session, wire.encode(wire.Names(re=seq, names=part)))
        self._reply(session, wire.encode(wire.Ok(re=seq, count=len(names))))

    def history(self, session: Session, seq: int, request: wire.HistoryRequest) -> None:
        job = self._jobs.add((session.sid, seq, request.limit))
        session.reading += 1
        # "Before" means before this request, not before the read happens to run.
        before = request.before if request.before is not None else self.next_message_id
        # A message the operator removes while the read runs may be in it, and is left
        # out then: a few more are read, for a whole page.
        limit = request.limit + READ_SPARE
        self._effects.append(LoadHistory(job, _account(session).id, before, limit))

    def sent_found(self, job: int, message: Message | None) -> None:
        """A message refused as new was looked for as sent before (`FindSent`): answered
        with the one stored, if found, else refused."""
        sid, seq, refusal = self._finds.pop(job)
        session = self._by_sid.get(sid)
        if session is None:
            return
        session.reading -= 1
        if message is not None:
            self._answer_resend(session, seq, message)
        else:
            self._answer_frame(session, error_frame(refusal.code, refusal.message, seq))

    def history_loaded(self, job: int, messages: Iterable[Message] | None) -> None:
        """The shell read a page of history for a session's request (None: it could not)."""
        sid, seq, limit = self._jobs.pop(job)
        session = self._by_sid.get(sid)
        if session is None:
            return
        session.reading -= 1
        if messages is None:
            sorry = "The server could not read its history; try again later."
            self._reply(session, error_frame("storage_failed", sorry, seq))
            return
        count = 0
        viewer = _account(session).id
        shown = [message for message in messages if not self.removed(message)]
        for message in shown[-limit:]:
            self._reply(session, message_frame(message, viewer, history=True, re=seq))
            count += 1
        self._reply(session, wire.encode(wire.Ok(re=seq, count=count)))

    def acknowledged(self, session: Session, tags: list[Hashable], now: float) -> Effect | None:
        """Frames a session acknowledged: private messages among them are delivered, and
        the refusal of a message as too fast has reached its client."""
        if session.blocked_cid is not None and (_REFUSED, session.blocked_cid) in tags:
            # The client may give the message up only from now: the grace counts from
            # the later of this and the time it may come back.
            session.blocked_told = True
            session.blocked_until = max(session.blocked_until, now)
        delivered = [
            tag[1]
            for tag in tags
            if isinstance(tag, tuple)
            and tag[0] == "pm"
            and self.mailbox.take_out(_account(session).id, tag[1])
        ]
        if not delivered:
            return None
        self.reads.delivered(delivered)
        marked, self._unmarked = (*self._unmarked, *delivered), ()
        return Persist(MarkDelivered(marked))

    def unmarked(self) -> Effect | None:
        """The marks the disk refused, to try once more (as the daemon stops)."""
        marked, self._unmarked = self._unmarked, ()
        return Persist(MarkDelivered(marked)) if marked else None

    def mark_failed(self, mark: MarkDelivered) -> None:
        """The disk could not record these deliveries: they go with the next ones, so that
        a restarted daemon does not show them again."""
        # Those let go of past `UNMARKED_MOST` stay in `reads.marking`: not on disk, a read
        # would find them waiting. (An id each, of private messages stored and delivered
        # while the daemon runs: fewer, and smaller, than the messages themselves.)
        self._unmarked = (*self._unmarked, *mark.message_ids)[-UNMARKED_MOST:]

    def marked(self, mark: MarkDelivered) -> None:
        """These deliveries are on disk."""
        self.reads.marked(mark.message_ids)

    # --- storage results ----------------------------------------------------------------------

    def committed(self, message: Message) -> None:
        """A message is on disk: show it, and answer whoever sent it (a room message once
        the messages committed with it are in too: `settle`)."""
        self._stats["messages"] += 1
        self._stored_up_to = max(self._stored_up_to, message.id)
        if message.recipient_id is None:
            self._run.append(message)
            return
        self.settle()
        self.mailbox.stored(message, keep=self.reads.reading(message.recipient_id))
        self._show(message)

    def _show(self, message: Message) -> None:
        """Show one stored message and answer whoever sent it."""
        self._fan_out(message, self._sent_by.pop(message.id, 0))
        self._answer(message)
        self._shown(message)

    def settle(self) -> None:
        """Show the room messages committed since the last call, and answer their senders.

        Everyone outside the senders' accounts gets the same frames: several messages
        in one `msgs` frame if their session reads them, else one frame each. The
        senders' sessions are sent their part message by message, as `_fan_out` would,
        between the answers to their own.
        """
        run = self._run
        if not run:
            return
        self._run = []
        if len(run) == 1:
            self._show(run[0])  # the common case when the room is quiet: nothing to pack
            return
        # Taken off the unstored first: were sending to fail half way, later logins would
        # still be shown the rest in their history.
        sender_sids = [self._sent_by.pop(message.id, 0) for message in run]
        frames = [message_frame(message, None) for message in run]
        senders = {message.sender_id for message in run}
        self.room.broadcast_run(frames, wire.message_batches(frames), senders)
        for message, frame, sender_sid in zip(run, frames, sender_sids, strict=True):
            for account_id in senders:
                if account_id == message.sender_id:
                    self.room.to_account(
                        account_id, message_frame(message, account_id), exclude=sender_sid
                    )
                else:
                    self.room.to_account(account_id, frame)
            self._answer(message)
        for message in run:
            self._shown(message)

    def _answer(self, message: Message) -> None:
        """Tell whoever sent a stored message (and its resends) that it is stored."""
        for sid, seq in self._awaiting_commit.pop(message.id, ()):
            session = self._by_sid.get(sid)
            if session is not None:
                self._answer_frame(session, stored_frame(message, seq))

    def failed(self, message: Message, sorry: str, earlier: Message | None = None) -> None:
        """A message could not be stored: it is never shown; its sender is told.

        With `earlier`, the store refused it as a copy of a message stored before under
        the same `cid`, sent again after more messages than the window holds: the sender
        is answered with that one, as for a resend the window recognises.
        """
        self._sent_by.pop(message.id, None)
        self._shown(message)
        self.window.forget(message)
        if message.recipient_id is not None:
            self.mailbox.take_out(message.recipient_id, message.id)
        for sid, seq in self._awaiting_commit.pop(message.id, ()):
            session = self._by_sid.get(sid)
            if session is None:
                continue
            if earlier is None:
                self._reply(session, error_frame("storage_failed", sorry, seq))
            else:
                self._answer_resend(session, seq, earlier)

    def account_removed(self, account_id: int) -> None:
        """The operator's removal of the account is stored: the private messages sent to
        it, deleted with it, are neither waiting nor in history any more."""
        self.mailbox.forget(account_id)
        self.window.forget_received(account_id)

    def unsay(self, message_id: int) -> None:
        """The operator removed the room's message `message_id` (stored so): history
        leaves it out, and everyone in the room is told, to show it no more."""
        if message_id in self._unsaid:
            return  # removed twice at once: told once
        self.window.unsay(message_id)
        self._unsaid.add(message_id)
        self._removals.append((self.next_message_id - 1, message_id))
        unsaid = wire.encode(wire.Unsaid(id=message_id))
        self.room.broadcast(unsaid)
        # A session waiting for its mailbox may have it as the answer to its own message,
        # held for after its history: it is told after that answer, as the room is.
        self.reads.hold_for_all(unsaid)

    def _fan_out(self, message: Message, sender_sid: int) -> None:
        """Show a stored message to the room (or to the two ends of a private one).

        Only once it is on disk: a crash before the commit loses it, and its sender then
        sends it again, so anyone shown it earlier would see it twice, or under an id
        the restarted daemon gives to another message.
        """
        sender = message.sender_id
        theirs = message_frame(message, sender)
        recipient = message.recipient_id
        if recipient is None:
            self.room.broadcast(message_frame(message, None), except_account=sender)
            self.room.to_account(sender, theirs, exclude=sender_sid)
        elif recipient == sender:
            # A note to yourself: your other sessions see it; it waits in no mailbox.
            self.room.to_account(recipient, theirs, exclude=sender_sid)
        else:
            self.room.to_account(recipient, message_frame(message, None), tag=("pm", message.id))
            self.room.to_account(sender, theirs, exclude=sender_sid)
        if recipient is not None:
            self.reads.sent(message, sender_sid)
