"""The client side of the protocol, with no I/O: the one implementation every client uses.

Shaped like aioquic's `QuicConnection`: feed it what the network delivered
(`receive_datagram(data, now)`, `connection_refused(now)`), send what
`datagrams_to_send(now)` returns, call `handle_timer(now)` at `next_timer()`, and read
what happened from `next_event()`. Requests (`register`, `say`, `whisper`, `who`,
`history`, `change_password`, `logout`, and `request` for a frame as bytes) return a
`Handle` that completes with the daemon's answer.

    connection = ClientConnection(server_key, "alice", password)
    connection.start(now)
    ...  # exchange datagrams until `connection.ready` (or `connection.failure`)
    handle = connection.say("hello")

A connection first opens an encrypted channel (the Noise NK handshake, to the daemon
whose static key it was given), then logs in inside it: with the password, or with the
resumption ticket an earlier login gave. If the session is lost (the daemon stopped
answering, restarted, or said goodbye) it opens a new channel, resumes with the ticket,
resends every request not yet answered and shows what was missed in between: states of
the core, not of the code that drives it. Without a name it only opens the channel, for
`register`. Each channel is opened by a `client_handshake.Handshake`, and
`client_handshake.KeyProbe` is the same shape for learning the daemon's key. Nothing here
reads the clock or touches a socket; `now` is any monotonic time in seconds.
"""

from __future__ import annotations

import hmac
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from .. import wire
from ..client_handshake import Handshake
from ..errors import (
    NOT_UNDERSTOOD,
    BadRequest,
    Banned,
    Busy,
    ChatError,
    ConnectionLost,
    KeyChanged,
    PasswordChangedAway,
    ProtocolError,
    RateLimited,
    ServerUnreachable,
    WrongPassword,
    error_for,
    not_understood,
)
from ..events import (
    Disconnected,
    Event,
    Joined,
    Left,
    MessageRemoved,
    Notice,
    PrivateMessage,
    PublicMessage,
    Reconnected,
)
from ..reliability import Link
from ..secure import Channel, SecureError, new_index
from .config import ClientConfig
from .endings import (
    CHANGE_UNANSWERED,
    FORGOTTEN,
    LOGGED_OUT,
    PASSWORD_CHANGED_AWAY,
    UNANSWERED_ON_LEAVING,
    as_reason,
    final_goodbye,
)
from .intake import SeenMessages
from .keepalive import KEEPALIVE_PATIENCE, Keepalive
from .messages import message_event, parse_time
from .outstanding import QUESTIONS, TAKES_MESSAGES, TAKES_NAMES, WHO_NAMES_MAX, Outstanding
from .password import Password
from .requests import (
    BEFORE_LOGIN,
    Handle,
    Ids,
    check_message,
    check_new_password,
    check_registration,
    history_page,
    recipient,
    require_type,
)
from .retries import Retries, put_off

_LOGOUT = ("logout",)
"""The tag of a logout's frame: the daemon's acknowledgement of it ends the session."""


def _wait(retry_after: float | None) -> float:
    """Seconds to wait before a refused request goes again: as the daemon said (0: at
    once), or a second when it said no time."""
    return 1.0 if retry_after is None else retry_after


class _SessionLost(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ClientConnection:
    """A person's connection to the daemon; see the module docstring.

    Its life: `start` opens the channel and logs in; once the daemon has welcomed it and
    sent the history, `ready` is set. If the session is lost it emits `Disconnected`,
    opens a new channel, logs in again (with its ticket) from the newest message it saw,
    resends every request not yet answered, and emits `Reconnected` then a `History` of
    what was missed. It ends (`closed`, `failure`) on `logout`, `close`, or a refusal it
    cannot wait out. Without a `name` it never logs in: it is for `register`.
    """

    def __init__(
        self,
        server_key: bytes,
        name: str | None = None,
        password: str = "",
        *,
        config: ClientConfig | None = None,
        quiet: bool = False,
        where: str = "the daemon",
        new_id: Callable[[], str] | None = None,
        new_index: Callable[[], int] = new_index,
    ) -> None:
        self.server_key = server_key
        self.name = name or ""
        self.unread = 0
        self.muted = False
        """The daemon's operator muted the account: it reads the room and says nothing.
        A `Notice` with `muted` set says when this changes."""
        self._muted_told = False
        """`muted` as the last `Notice` about it said (none yet: not muted)."""
        self.quiet = quiet
        self.batches = True
        """Ask the daemon for `msgs` frames (room messages stored together, in one frame);
        off, it sends one frame a message, as to a client that never heard of them."""
        self.config = config or ClientConfig()
        self.where = where
        self.sid = 0
        """The daemon's index of this connection (its session id), once the channel is up."""
        self.ready = False
        """Logged in and the history arrived (or, without a name: the channel is up)."""
        self.closed = False
        self.failure: ChatError | None = None
        """Why the connection ended: a refusal, a lost session, or `You logged out.`"""
        self.ticket = ""
        """The latest resumption ticket: logs in again without the password."""
        self._replaces: int | None = None
        """The daemon's index of the session lost last, which the next login ends."""
        self._logs_in = name is not None
        self._password = Password(password)
        self._new_id = new_id or Ids()
        self._new_index = new_index
        self._handshake: Handshake | None = None
        self._channel: Channel | None = None
        self._reset_token = b""
        self._link: Link | None = None
        self._auth: Handle | None = None
        self._logged_in = False
        self._welcomed = False
        """A login of this connection's was welcomed once: its password was good then."""
        self._history_due = False
        """Logged in, and the login's history has not ended (`ready`): a logout waits for
        it, so that the logout acknowledges all of it (see `_transmit`)."""
        self._reauth_at: float | None = None
        self._relogin_at: float | None = None
        self._resuming = False
        self._retries = Retries()
        self._outstanding = Outstanding()
        self._seen = SeenMessages()
        """The messages shown, and a login's history until its `ready`."""
        self._login_since: int | None = None
        """The `since` the last login asked with."""
        self.local_address: wire.Endpoint | None = None
        """The address this connection's socket sends from, as the socket reports it
        (the shell sets it): sent with each login as `via`, so that a daemon that sees
        the very same address knows no NAT is on the way and allows a longer keepalive."""
        self.pings = Keepalive(self.config.keepalive)
        """When this connection pings (`keepalive`)."""
        self._leaving = False
        self._events: deque[Event] = deque()
        self.trace: Callable[[wire.ServerFrame], None] | None = None
        """Called with every frame the daemon sends, in order, before it is acted on."""

    def __repr__(self) -> str:
        return f"<ClientConnection {self.name or '(no account)'} at {self.where}>"

    @property
    def keepalive(self) -> float:
        """Seconds without sending after which a `ping` goes out, as the daemon allowed."""
        return self.pings.interval

    @keepalive.setter
    def keepalive(self, interval: float) -> None:
        self.pings.interval = interval

    @property
    def wall_offset(self) -> float:
        """Unix time minus the clock `now` is read from (the shell sets it): pings go out
        on whole seconds of Unix time until the daemon's `welcome` tells its own time."""
        return self.pings.wall_offset

    @wall_offset.setter
    def wall_offset(self, offset: float) -> None:
        self.pings.wall_offset = offset

    @property
    def keepalive_lead(self) -> float:
        """Where this connection's pings fall in the spread of each interval (0 to 1)."""
        return self.pings.lead

    @keepalive_lead.setter
    def keepalive_lead(self, lead: float) -> None:
        self.pings.lead = lead

    # --- requests ---------------------------------------------------------------------------

    def start(self, now: float, since: int | None = None) -> None:
        """Open the channel and log in (`since`: show what came after that message id)."""
        self._seen.start_from(since)
        self._open(now)

    def register(self, name: str, password: str) -> Handle:
        """Create an account (the channel suffices); completes with its name as kept."""
        check_registration(name, password)
        frame = wire.encode(wire.Register(rid=self._new_id(), name=name, password=password))
        return self._submit(Handle("register", frame))

    def say(self, text: str) -> Handle:
        """A public message, queued at once (keeping order); completes with it as stored."""
        check_message(text)
        cid = self._new_id()
        frame = wire.encode(wire.Say(text=text, cid=cid))
        return self._submit(Handle("say", frame, text=text, cid=cid))

    def whisper(self, to: str, text: str) -> Handle:
        """A private message to an account (online or not)."""
        require_type("to", to, str)
        check_message(text)
        to = recipient(to)
        cid = self._new_id()
        frame = wire.encode(wire.Whisper(to=to, text=text, cid=cid))
        return self._submit(Handle("whisper", frame, text=text, to=to, cid=cid))

    def change_password(self, old: str, new: str) -> Handle:
        """Give the account a new password (`old` is its password now); completes once the
        daemon stored it. The account's other sessions end; this one logs in with `new`
        from then on."""
        if self._password.changing:
            raise BadRequest("A new password is on its way already; wait for its answer.")
        check_new_password(self.name or "", old, new)
        frame = wire.encode(wire.ChangePassword(old=old, new=new))
        handle = self._submit(Handle("change_password", frame))
        self._password.change(handle, new)
        return handle

    def who(self) -> Handle:
        """Who is online; completes with the sorted names."""
        return self._submit(Handle("who", wire.encode(wire.Who())))

    def history(self, limit: int = 20, before: int | None = None) -> Handle:
        """Up to `limit` (1 to 100) messages older than id `before`, oldest first."""
        limit, before = history_page(limit, before)
        frame = wire.encode(wire.HistoryRequest(limit=limit, before=before))
        return self._submit(Handle("history", frame))

    def request(self, frame: wire.ClientFrame | bytes) -> Handle:
        """Send any frame as it is (or bytes as a frame, valid or not): for tests and tools.

        It completes as the request of the frame's type does (a `history` with its
        messages, a `who` with its names), bytes with the parts that came before the `ok`,
        or fails with the `error`; a message sent this way is not matched to its echo by
        `cid`, and a new password sent this way is not the one the next login uses.
        """
        if isinstance(frame, bytes):
            return self._submit(Handle("raw", frame))
        kind = type(frame).__struct_config__.tag
        assert isinstance(kind, str)  # every frame is tagged with its wire name
        return self._submit(Handle(kind, wire.encode(frame)))

    def logout(self) -> Handle:
        """Leave; completes once the daemon ended the session (or it was gone already).
        Asked again while one is on its way, it is that one."""
        if self._leaving:
            for handle in self._outstanding:
                if handle.kind == "logout":
                    return handle
        self._leaving = True
        handle = self._submit(Handle("logout", wire.encode(wire.Logout())))
        coming_back = self._handshake is not None or (
            self._link is not None and not self._logged_in
        )
        if self._resuming and coming_back:
            # Coming back after a lost session: what was shown just before may not have
            # been acknowledged. The logout waits for the session and its history (held
            # until `ready`, as after any login), and acknowledges them; if the daemon
            # cannot be reached, the handshake's failure ends it (`_handshake_failed`).
            return handle
        if self._link is None:
            self._finish(handle)
            self._shut(ConnectionLost(LOGGED_OUT))
        elif not self._logged_in:
            self._transmit(handle)  # a channel without a login may end at once too
        return handle

    def probe(self) -> None:
        """Ask whether the daemon still holds this channel (a `ping`), when an answer is
        slow in coming: a daemon that restarted meanwhile answers `RESET`, one that is
        down the kernel's "port unreachable", and either way a channel opens again and
        what was not answered goes again."""
        if self._link is not None and not self.closed:
            self._link.send(wire.encode(wire.Ping()))

    def close(self) -> None:
        """Leave now: say goodbye once if a channel is open, and wait for nothing."""
        if self.closed:
            return
        self._leaving = True
        if self._link is not None:
            self._link.send(wire.encode(wire.Logout()))
        self._shut(ConnectionLost(LOGGED_OUT))

    @property
    def left(self) -> bool:
        """This client asked to leave (`logout` or `close`): the session's end is no failure."""
        return self._leaving

    @property
    def pending(self) -> int:
        """Requests sent or queued that the daemon has not answered yet."""
        return len(self._outstanding)

    @property
    def link(self) -> Link | None:
        """The channel's reliable link, while a channel is open."""
        return self._link

    @property
    def channel(self) -> Channel | None:
        """The open channel (what seals the link's datagrams), if any."""
        return self._channel

    @property
    def connected(self) -> bool:
        """Logged in now (not opening a channel again)."""
        return self._logged_in and not self.closed

    def unanswered(self) -> list[Handle]:
        """The requests not answered yet, oldest first."""
        return list(self._outstanding)

    def _submit(self, handle: Handle) -> Handle:
        if self.closed:
            raise self.failure.anew() if self.failure else ConnectionLost("The session has ended.")
        if not self._outstanding.add(handle):
            return handle  # behind messages refused as too fast, which go first
        held = handle.kind == "logout" and self._history_due  # sent at the history's end
        if self._link is not None and (self._logged_in or handle.kind in BEFORE_LOGIN) and not held:
            self._transmit(handle)
        return handle

    def _transmit(self, handle: Handle) -> None:
        assert self._link is not None
        self._link.patience = 0.0  # a request is probed for as soon as the link's RTT says
        tag = _LOGOUT if handle.kind == "logout" and self._leaving else None
        if tag is not None:
            # The daemon counts as delivered what the datagram it takes the logout from
            # acknowledges: every copy of it says the same (see `_on_data`).
            self._link.freeze_ack()
        handle.seq = self._link.send(handle.frame, tag)
        self._outstanding.sent(handle)

    def _finish(self, handle: Handle, result: Any = None, error: ChatError | None = None) -> None:
        if handle.done:
            return
        self._outstanding.remove(handle)
        handle._complete(result, error)

    # --- events -------------------------------------------------------------------------------

    def next_event(self) -> Event | None:
        """The next thing that happened in the room, or None."""
        return self._events.popleft() if self._events else None

    def _emit(self, event: Event) -> None:
        if not self.closed:
            self._events.append(event)

    # --- the channel and the login ---------------------------------------------------------------

    def _open(self, now: float) -> None:
        """Start a handshake for a new channel."""
        self._relogin_at = None
        self._handshake = Handshake(
            self.server_key, now, self.config.timeout, self.where, self._new_index()
        )

    def _on_channel(self, handshake: Handshake, now: float) -> None:
        assert handshake.channel is not None
        self._handshake = None
        self._channel = channel = handshake.channel
        self._reset_token = handshake.reset_token
        self.sid = channel.remote_index
        self._link = Link(channel.seal, self.config.link)
        if handshake.rtt is not None:
            self._link.seed_rtt(handshake.rtt)
        self._outstanding.new_channel()  # every request goes again on the new session
        # A history held for its `ready` stays: cut off by the lost session, it is not
        # sent again, and is shown with the next login's history (`SeenMessages`).
        self.pings.channel_opened(now, self.config.keepalive)
        self._retries.channel_opened()
        if self._logs_in:
            self._authenticate()
        else:
            self.ready = True
        for handle in self._outstanding:
            if handle.kind in BEFORE_LOGIN or (handle.kind == "logout" and not self._logs_in):
                self._transmit(handle)

    def _authenticate(self) -> None:
        """Log in on the open channel: with the ticket if there is one, else the password."""
        replaces = self._replaces
        via = self.local_address if self.pings.may_lengthen(self.config.keepalive) else None
        since = self._login_since = self._seen.since(self._resuming)
        if self.ticket:
            frame = wire.Resume(
                ticket=self.ticket,
                since=since,
                quiet=self.quiet,
                replaces=replaces,
                via=via,
                batches=self.batches,
            )
            self._auth = Handle("resume", wire.encode(frame))
        else:
            login = wire.Login(
                name=self.name,
                password=self._password.current,
                since=since,
                quiet=self.quiet,
                replaces=replaces,
                via=via,
                batches=self.batches,
            )
            self._auth = Handle("login", wire.encode(login))
        self._transmit(self._auth)

    def _answered_auth(self) -> None:
        """The login (or resume) is answered: its number is waited on no more."""
        if self._auth is not None:
            self._outstanding.remove(self._auth)
            self._auth = None

    def _on_welcome(self, frame: wire.Welcome, now: float) -> None:
        self._answered_auth()
        self._replaces = None
        self._logged_in = self._welcomed = True
        self.name = frame.name
        self.unread = frame.unread
        if frame.muted is not None:
            self.muted = frame.muted
        self.pings.welcomed(frame.keepalive, frame.time, now, self.config.keepalive)
        if frame.ticket:
            self.ticket = frame.ticket
        self._history_due = True
        self._seen.history_coming(self._login_since)
        self._password.welcomed()  # a fallback swapped in was the one stored
        for handle in self._outstanding:
            if handle.kind not in BEFORE_LOGIN and handle.kind != "logout":
                self._transmit(handle)
        if self._resuming:
            self._retries.back()
            if not self._leaving:  # back only to leave cleanly (`_lost`): nothing to tell
                self._emit(Reconnected())

    def _tell_mute(self) -> None:
        """Once a login's history is in: a note if the account's mute, as its `welcome`
        said it, is news (muted at the first login, or changed while the connection was
        away)."""
        if self.muted != self._muted_told:
            self._muted_told = self.muted
            text = wire.MUTED_NOTICE if self.muted else wire.UNMUTED_NOTICE
            self._emit(Notice(text, muted=self.muted))

    def _on_auth_refused(self, error: ChatError, now: float) -> None:
        self._answered_auth()
        if self._give_up(now):  # only while coming back: see `Retries.lost_at`
            return
        if put_off(error):
            # Not checked, only put off: after the wait, the same password again.
            self._reauth_at = self._retries.try_again_at(now, _wait(error.retry_after), self.config)
        elif error.code == "ticket_invalid" and self.ticket:
            self.ticket = ""  # expired, or from a daemon with another key: the password
            self._authenticate()
        elif isinstance(error, WrongPassword) and self._resuming and self._password.swap():
            # A new password was asked for, and its answer lost with the session: stored,
            # the old one no longer logs in. The new one is tried (once).
            self._authenticate()
        elif not self._resuming:
            # The first login: the caller hears why, and the daemon may free the channel.
            assert self._link is not None
            self._link.send(wire.encode(wire.Logout()))
            self._shut(error)
        elif error.retry_after is not None:
            self._reauth_at = self._retries.try_again_at(now, error.retry_after, self.config)
        elif isinstance(error, WrongPassword) and self._welcomed:
            # It logged in before: the password was changed meanwhile (the daemon may
            # have been stopped when it was, so that this session heard no `bye`).
            self._shut(PasswordChangedAway(PASSWORD_CHANGED_AWAY))
        else:
            self._shut(error)  # the account is no longer good

    def _handshake_failed(self, error: ChatError, now: float) -> None:
        self._handshake = None
        self._ban_ends(error, now)
        if self._leaving:
            self._logged_out()  # back only to leave cleanly (see `_lost`): nobody is there
            return
        if isinstance(error, KeyChanged | Banned) or not self._resuming:
            self._shut(error)  # a ban's `retry_after` is for people, not for coming back
        elif isinstance(error, ServerUnreachable) or error.retry_after is not None:
            if self._give_up(now):
                return
            self._relogin_at = self._retries.reopen_at(now, error.retry_after, self.config)
        else:
            self._shut(error)

    def _ban_ends(self, error: ChatError, now: float) -> None:
        """A ban's refusal says how long it lasts: when it ends, by the wall clock, for
        people to be told in their own time."""
        if isinstance(error, Banned):
            error.dated(now + self.wall_offset)

    def _give_up(self, now: float) -> bool:
        """End the connection if it has not been back in a session for `reconnect_for`
        since it was lost (the daemon silent, busy or refusing meanwhile); say whether."""
        if not self._retries.gone_for_good(now, self.config):
            return False
        limit = self.config.reconnect_for
        said = f"{limit:.3f}".rstrip("0").rstrip(".")  # as given: 2.5, 60, 86400
        self._shut(
            ConnectionLost(
                f"Lost the connection to {self.where} for good: not back after {said} s."
            )
        )
        return True

    def _lost(self, reason: str, now: float) -> None:
        """The channel is gone: open a new one, or end."""
        changed = self._password.change_lost()
        if changed is not None:
            # Sent, and not answered: not sent again, but tried at the next login.
            self._finish(changed, error=ConnectionLost(CHANGE_UNANSWERED))
        was_in = self._logged_in
        if self._channel is not None:
            self._channel.forget()
            if self._logged_in:
                self._replaces = self._channel.remote_index  # to end at the next login
        self._link = None
        self._channel = None
        self._logged_in = False
        self._history_due = False
        self._auth = None
        self._reauth_at = None
        if (
            self._leaving
            and was_in
            and reason == FORGOTTEN
            and self.ticket
            and self.config.reconnect
        ):
            # The logout met a daemon that restarted: what this client was shown just
            # before may never have been acknowledged to it. Come back (the history brings
            # those messages again, known, not shown twice), then log out from there: the
            # logout waits for that history's end (`ready`), and acknowledges it.
            self._resuming = True
            self._open(now)
            return
        if not self._leaving and not self._logs_in and self._outstanding and self.config.reconnect:
            # A registration not answered yet (the daemon restarted, say): a new channel
            # carries it again.
            self._open(now)
            return
        if self._leaving:
            # It ended while we were leaving (the daemon closed it and its "ok" was lost,
            # or it went away): the logout is done.
            self._logged_out()
            return
        if not self._logs_in:
            self._shut(ConnectionLost(f"Lost the connection: {reason}."))
            return
        if not self.config.reconnect:
            self._shut(ConnectionLost(f"Lost the connection to {self.where}: {reason}."))
            return
        if self._give_up(now):  # lost again while coming back, past the limit
            return
        self._emit(Disconnected(reason))
        self._resuming = True
        self._retries.lost(now)
        self._open(now)

    # --- the network ----------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, now: float) -> None:
        """Take in one datagram from the daemon's address, whatever it holds."""
        if self.closed:
            return
        try:
            datagram = wire.parse_datagram_untrusted(data)
        except wire.WireError:
            return
        handshake = self._handshake
        if handshake is not None and handshake.receive(datagram, now):
            if handshake.channel is not None:
                self._on_channel(handshake, now)
            elif handshake.error is not None:
                self._handshake_failed(handshake.error, now)
            return
        channel = self._channel
        if channel is None or self._link is None:
            return
        if isinstance(datagram, wire.Reset):
            token_ok = hmac.compare_digest(datagram.token, self._reset_token)
            if datagram.receiver_index == channel.remote_index and token_ok:
                self._lost(FORGOTTEN, now)
            return
        if isinstance(datagram, wire.Data) and datagram.receiver_index == channel.local_index:
            self._on_data(datagram, now)

    def _on_data(self, datagram: wire.Data, now: float) -> None:
        assert self._channel is not None and self._link is not None
        try:
            pn, plaintext = self._channel.open_untrusted(datagram.datagram)
            payload = wire.decode_payload_untrusted(plaintext)
        except (SecureError, wire.WireError):
            return  # forged, replayed or damaged: nothing changes
        link = self._link
        if payload.challenge is not None:
            link.extra = wire.response_field(payload.challenge)
        try:
            for seq, raw in link.receive(
                pn, payload.ack, payload.sack, payload.frames, now, payload.echo
            ):
                try:
                    frame = wire.decode_server_frame_untrusted(raw)
                except wire.WireError:
                    # A frame this client cannot read (the link has acknowledged it): if
                    # it answers a request, the request fails (its answer came).
                    self._unreadable(wire.answered_untrusted(raw))
                    continue
                if self.trace is not None:
                    self.trace(frame)
                if link.frozen_ack is not None and seq > link.frozen_ack and self._waits(frame):
                    # Came after the logout left, so never acknowledged: the daemon still
                    # has it waiting, and shows it at the next login. Shown now too, it
                    # would be shown twice.
                    continue
                try:
                    self._on_frame(frame, now)
                except wire.WireError:
                    # A field no valid frame holds (a timestamp): its request fails.
                    self._unreadable(getattr(frame, "re", None))
                if self._link is not link:
                    break  # the frame ended this channel (a logout's `ok`)
        except _SessionLost as lost:
            self._lost(lost.reason, now)
            return
        if link.acked_tags and self._link is link:
            # The daemon has the logout, and ended the session on taking it: its `ok`
            # may be stuck behind a lost frame it will never send again.
            link.acked_tags.clear()
            if self._leaving:
                self._logged_out()

    def connection_refused(self, now: float) -> None:
        """The daemon's port is closed (ICMP): it stopped or crashed.

        A restarted daemon will not know this channel, so open a new one rather than
        retransmit into the void.
        """
        if self.closed:
            return
        if self._link is not None:
            self._lost("the daemon is not running", now)
        elif self._handshake is not None and self._leaving:
            self._logged_out()  # a logout waiting to come back (see `logout`): nobody is there

    def datagrams_to_send(self, now: float) -> list[bytes]:
        if self._handshake is not None and not self.closed:
            return self._handshake.datagrams_to_send(now)
        link = self._link
        if link is None:
            return []
        out = link.datagrams_to_send(now)
        if out:
            self.pings.sent(now)
        if self.closed:
            self._link = None  # the goodbye is out; nothing more will be sent
        return out

    def next_timer(self) -> float | None:
        if self.closed:
            return None
        if self._handshake is not None:
            return self._handshake.next_timer()
        if self._link is None:
            return self._relogin_at
        link = self._link
        deadline = self.pings.due(link.srtt)
        timer = link.next_timer()
        if timer is not None and timer < deadline:
            deadline = timer
        again = self._outstanding.next_due()
        if again is not None and again < deadline:
            deadline = again
        if self._reauth_at is not None and self._reauth_at < deadline:
            deadline = self._reauth_at
        return deadline

    def handle_timer(self, now: float) -> None:
        if self.closed:
            return
        handshake = self._handshake
        if handshake is not None:
            handshake.handle_timer(now)
            if handshake.error is not None:
                self._handshake_failed(handshake.error, now)
            return
        link = self._link
        if link is None:
            if self._relogin_at is not None and now >= self._relogin_at:
                self._open(now)
            return
        link.handle_timer(now)
        if link.failure is not None:
            self._lost("the daemon stopped answering", now)
            return
        if now >= self.pings.due(link.srtt):
            link.send(wire.encode(wire.Ping()))
            if link.queued == 1:  # the ping alone: no hurry
                link.patience = KEEPALIVE_PATIENCE
            self.pings.sent(now)
        if self._reauth_at is not None and now >= self._reauth_at:
            self._reauth_at = None
            self._authenticate()
        for handle in self._outstanding.due(now):
            self._transmit(handle)

    # --- what the daemon sends -------------------------------------------------------------------

    def _on_frame(self, frame: wire.ServerFrame, now: float) -> None:
        if isinstance(frame, (wire.Msg, wire.Pm)):
            self._on_message(frame)
        elif isinstance(frame, wire.Msgs):
            for message in frame.messages:
                try:
                    self._on_message(message)
                except wire.WireError:
                    self._unreadable(message.re)  # the rest of the batch still counts
        elif isinstance(frame, wire.Ok):
            self._on_ok(frame)
        elif isinstance(frame, wire.ErrorFrame):
            self._on_error(frame, now)
        elif isinstance(frame, wire.Names):
            self._add_parts(frame.re, frame.names, TAKES_NAMES)
        elif isinstance(frame, wire.Ready):
            if not self._logged_in:
                return  # the history of a login not yet welcomed: nothing is ready
            self._emit(self._seen.end_history(frame.upto, frame.more, self._resuming, frame.gap))
            self._tell_mute()
            self._resuming = False
            self.ready = True
            self._history_due = False
            for held in self._outstanding:
                if held.kind == "logout" and not self._outstanding.sent_here(held):
                    # Held until now: its frozen acknowledgement covers the whole history,
                    # so a private message in it, shown now or before, counts as delivered.
                    self._transmit(held)
        elif isinstance(frame, wire.Welcome):
            if self._auth is not None and frame.re == self._auth.seq:
                self._on_welcome(frame, now)
        elif isinstance(frame, wire.PasswordChanged):
            handle = self._outstanding.answering(frame.re)
            if handle is not None and handle.kind == "change_password":
                self.ticket = frame.ticket
                self._finish(handle)
        elif isinstance(frame, wire.Registered):
            handle = self._outstanding.answering(frame.re)
            if handle is not None and handle.kind == "register":
                self._finish(handle, frame.name)
        elif isinstance(frame, wire.Join):
            self._emit(Joined(frame.name, parse_time(frame.ts), frame.back))
        elif isinstance(frame, wire.Leave):
            self._emit(Left(frame.name, parse_time(frame.ts), frame.reason))
        elif isinstance(frame, wire.Notice):
            if frame.muted is not None:
                self.muted = self._muted_told = frame.muted
            self._emit(Notice(frame.text, muted=frame.muted))
        elif isinstance(frame, wire.Unsaid):
            self._emit(MessageRemoved(frame.id))
        elif isinstance(frame, wire.Keepalive):
            # What came in while this client was silent was dropped on the way (and is
            # being sent again): from now on, speak up as often as the daemon asks.
            self.pings.found_closed(frame.every)
        elif isinstance(frame, wire.Bye):
            ending = final_goodbye(frame)
            if ending is not None:
                self._shut(ending)  # opening another would not help
                return
            raise _SessionLost(as_reason(frame.message))

    def _waits(self, frame: wire.ServerFrame) -> bool:
        """A private message to this account from someone else: until a session of it
        acknowledges it, the daemon keeps it waiting for the account."""
        return isinstance(frame, wire.Pm) and frame.re is None and frame.sender != self.name

    def _unreadable(self, re: int | None) -> None:
        """A frame that cannot be read or used came: the request it answers (`re`) fails."""
        handle = self._outstanding.answering(re) if re is not None else None
        if handle is not None:
            self._finish(handle, error=not_understood())

    def _on_message(self, frame: wire.Msg | wire.Pm) -> None:
        message = message_event(frame)
        if frame.re is not None:
            self._add_parts(frame.re, [message], TAKES_MESSAGES)
            return
        mine = self._outstanding.by_cid(frame.cid) if frame.cid is not None else None
        if mine is not None and frame.sender == self.name:
            # Our own message, stored before the session was lost: it is the answer.
            self._seen.remember(message.id)
            self._finish(mine, msgspec.structs.replace(message, history=False))
            return
        if self._seen.take(message):  # not shown before, nor held for the history's end
            self._emit(message)

    def _add_parts(self, re: int, parts: list[Any], kinds: frozenset[str]) -> None:
        """Keep part of an answer, if the request `re` names is answered in such parts."""
        handle = self._outstanding.answering(re)
        if handle is None or handle.kind not in kinds:
            return
        most = wire.HISTORY_LIMIT_MAX if handle.kind == "history" else WHO_NAMES_MAX
        if len(handle.parts) + len(parts) > most:
            handle.parts = []
            error = ProtocolError(
                f"The daemon's answer was longer than any answer can be{NOT_UNDERSTOOD}"
            )
            self._finish(handle, error=error)
            return
        handle.parts.extend(parts)

    def _on_ok(self, frame: wire.Ok) -> None:
        handle = self._outstanding.answering(frame.re)
        if handle is None:
            self._outstanding.superseded(frame.re)  # its last word: forgotten
            return
        if frame.re != handle.seq or handle.done:
            # The answer to an earlier copy of a request sent again (after a refusal):
            # it finishes the request, and that copy's number is not waited on. Or the
            # latest copy's, the request failed by an earlier copy's refusal (`keep_number`).
            self._outstanding.forget_copy(frame.re)
        result: Any = None
        if handle.kind in ("say", "whisper"):
            if frame.id is None or frame.ts is None:
                error = not_understood("answer to a message")
                self._finish(handle, error=error)
                return
            ts = parse_time(frame.ts)
            if handle.kind == "say":
                result = PublicMessage(frame.id, ts, self.name, handle.text)
            else:
                to = frame.to or handle.to or ""
                result = PrivateMessage(frame.id, ts, self.name, to, handle.text)
            if handle.done:
                # Its first copy was refused (muted, say), and the request failed so; this
                # one was stored all the same (an unmute came between): everyone else is
                # shown it, and so is its sender, once, as a message of the room's. Not
                # one sent as a frame (`request`): its text is not known here (the daemon's
                # copy of it, if one comes, is shown).
                if handle.cid is not None and self._seen.take(result):
                    self._emit(result)
                return
            self._seen.remember(frame.id)
        elif handle.kind in QUESTIONS:
            result = handle.parts
        self._finish(handle, result)
        if handle.kind == "logout":
            self._logged_out()

    def _logged_out(self) -> None:
        """The session is over at our request (the daemon ended it, or it was gone as we
        left): nothing more is sent."""
        for handle in [h for h in self._outstanding if h.kind == "logout"]:
            self._finish(handle)
        self._link = None
        self._shut(ConnectionLost(LOGGED_OUT))

    def _on_error(self, frame: wire.ErrorFrame, now: float) -> None:
        error = error_for(
            frame.code, frame.message, frame.retry_after, no_registrations=frame.no_registrations
        )
        self._ban_ends(error, now)
        if self._auth is not None and frame.re == self._auth.seq:
            self._on_auth_refused(error, now)
            return
        handle = self._outstanding.answering(frame.re) if frame.re is not None else None
        if handle is None or frame.re is None:
            if frame.re is None or not self._outstanding.superseded(frame.re):
                self._emit(Notice(frame.message))
            return
        earlier = frame.re != handle.seq  # the answer to a copy sent before the latest
        if handle.done or earlier:
            self._outstanding.forget_copy(frame.re)
        if handle.done:
            return  # the latest copy's answer, the request finished by an earlier one's
        retry = isinstance(error, Busy) or (
            isinstance(error, RateLimited) and self.config.retry_rate_limited
        )
        if retry and earlier:
            return  # the refusal of a copy sent before the one now on its way: that counts
        if retry:
            self._outstanding.too_fast(handle, now + _wait(frame.retry_after))
            return
        self._finish(handle, error=error)
        if earlier:
            self._outstanding.keep_number(handle)

    def _shut(self, failure: ChatError) -> None:
        if self.closed:
            return
        if self._logged_in:
            cut_off = self._seen.cut_off(self._resuming)
            if cut_off is not None:
                self._emit(cut_off)
        self.closed = True
        self.failure = failure
        self._handshake = None
        if self._leaving:
            # Not LOGGED_OUT: what was sent may have arrived, and been stored.
            failure = ConnectionLost(UNANSWERED_ON_LEAVING)
        for handle in list(self._outstanding):
            self._finish(handle, error=failure)
