"""The Trio side of the room: drives a `ChatClient` and the `RoomWindow`.

It turns the client's events into calls on the window, and the window's signals (through
`guest.signal_channel`) into requests: each typed line is parsed as in the terminal
(`commands.parse`), sent at once (`say_nowait`, `whisper_nowait`: in order, and queued
by the client while it reconnects), shown as pending, and settled when the daemon answers.
Everything runs in Qt's thread, as a guest of its loop: no locks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVarTuple

import trio

from .. import commands
from ..client import ChatClient, Receipt
from ..conversation import Returns
from ..display import counted, missed_sentence, told
from ..errors import (
    AccountRemoved,
    Busy,
    ChatError,
    ConnectionLost,
    KeyChanged,
    Throttled,
    UnknownUser,
    WrongPassword,
)
from ..events import (
    ChatMessage,
    Disconnected,
    History,
    Joined,
    Left,
    MessageRemoved,
    Missed,
    Notice,
    PrivateMessage,
    PublicMessage,
    Reconnected,
    gap_end,
)
from ..rules import name_key
from .conversations import ROOM
from .guest import Emission, signal_channel
from .problems import key_changed_sentence
from .room_window import Pending, RoomWindow
from .status import Link

PAGE = 50
"""Messages asked for at a time when scrolling back."""
PAGES_PER_ASK = 5
"""A private conversation scrolled to the top reads at most this many pages to find more."""
GAP_PAGES = 40
"""Pages read, at most, to fill in what a resumed history left out (2,000 messages)."""
WHO_TIMEOUT = 5.0

Args = TypeVarTuple("Args")


class RoomSession:
    def __init__(self, chat: ChatClient, window: RoomWindow, shown_up_to: int = 0) -> None:
        """`shown_up_to`: the newest message the window showed in a session before this
        one (signed in again in the same window), for what came in between to fill in."""
        self.chat = chat
        self.window = window
        self._shown_before = shown_up_to
        self._nursery: trio.Nursery | None = None
        self._oldest: int | None = None
        """The oldest message id loaded: history pages go on from there (from the newest
        message when None)."""
        self._more = False
        self._newest = shown_up_to
        """The newest message id shown: a session lost after it resumes from there."""
        self._away_after: int | None = None
        """The newest id shown before the session was lost, until it is back."""
        self._loading = False
        self.leaving = False
        self._quit = False
        """An `Exit` (or `/quit`) was typed, and the window is leaving: lines after it,
        pasted with it, are not sent (the terminal stops reading there too)."""
        self.again = False
        """The session ended, and the person asked to sign in again (not to close)."""
        self._returns = Returns()
        self._lines: list[Receipt[ChatMessage]] = []
        """The lines typed and sent (messages), which a logout waits for."""
        self._changing = 0
        """New passwords asked for and not yet answered: a logout waits for them."""
        self._changed = trio.Event()
        self._shown_all = trio.Event()
        """The session's events have ended, and every one of them is shown."""

    @property
    def newest(self) -> int:
        """The newest message id shown."""
        return self._newest

    async def run(self) -> None:
        """Until the window closes (or a typed `/quit`), then log out, showing what comes
        until the session has ended; or until the person asks to sign in again once the
        session has ended."""
        window = self.window
        signals = {
            "line": window.line_entered,
            "older": window.older_wanted,
            "again": window.sign_in_again,
            "password": window.password_wanted,
            "closed": window.closed,
        }
        async with trio.open_nursery() as nursery, signal_channel(signals) as emissions:
            self._nursery = nursery
            nursery.start_soon(self._follow_events)
            async for emission in emissions:
                if emission.source == "closed":
                    if emission.args[0]:
                        self.chat.close()  # at once: what waits is given up
                    break
                if emission.source == "again":
                    self.again = True
                    break
                if emission.source == "line":
                    line, person = emission.args
                    self.handle(str(line), str(person))
                elif emission.source == "older":
                    (key,) = emission.args
                    nursery.start_soon(self.load_older, str(key))
                elif emission.source == "password":
                    old, new = emission.args
                    self._changing += 1  # now: a close that comes with it waits for it
                    nursery.start_soon(self._change_password, str(old), str(new))
            self.leaving = True
            if not self.again:
                await self._log_out(emissions)
            nursery.cancel_scope.cancel()

    async def _log_out(self, emissions: trio.MemoryReceiveChannel[Emission]) -> None:
        """Log out once every line typed is answered (as long as that takes: a daemon
        that restarts still takes them; questions, `/who` or older pages, are not waited
        for), while the room's events are still shown and the window says it is leaving;
        closed again meanwhile, leave at once."""

        async def closed_again() -> None:
            async for emission in emissions:
                if emission.source == "closed":
                    self.chat.close()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(closed_again)
            for receipt in self._lines:  # not questions: scrolled back, nobody waits
                with contextlib.suppress(ChatError):  # refused: the window said so
                    await receipt.wait()
            while self._changing:  # a new password on its way: its answer, then leave
                await self._changed.wait()
                self._changed = trio.Event()
            await self.chat.logout()
            await self._shown_all.wait()  # what came before the end, to the last event
            nursery.cancel_scope.cancel()

    # --- the room's events -----------------------------------------------------------------

    async def _follow_events(self) -> None:
        with contextlib.suppress(ChatError):  # the session ended on its own: said below
            await self._show_events()
        if not self.leaving:
            gone = isinstance(self.chat.failure, AccountRemoved)  # no signing in as it again
            self.window.set_link(Link.LOST, self._why_it_ended(), account_gone=gone)
        self._shown_all.set()

    async def _show_events(self) -> None:
        window = self.window
        async for event in self.chat.events():
            if isinstance(event, PublicMessage | PrivateMessage):
                self._newest = max(self._newest, event.id)
                window.show_message(event)
            elif isinstance(event, History):
                # The gap to fill ends where the daemon says (`gap`); from a daemon that
                # does not say, at the oldest room message the history brought (a private
                # one that waited may be older), or at its oldest if it brought none (a
                # resume's `more` may be for private ones cut).
                oldest = gap_end(event.messages, event.gap)
                if event.resumed and event.more and oldest:
                    # Only the newest of what was missed came: the rest, older, fills in.
                    self._start(self._fill_gap, self._away_after or 0, oldest)
                elif not event.resumed and event.more and self._shown_before:
                    # Signed in again in the window of a session that ended: what came in
                    # between, beyond what the login brought, fills in as after an outage
                    # (nothing, if the oldest of it was shown).
                    public = [m.id for m in event.messages if isinstance(m, PublicMessage)]
                    if public:
                        self._start(self._fill_gap, self._shown_before, min(public))
                self._shown_before = 0
                self._away_after = None
                self._newest = max([self._newest, *(message.id for message in event.messages)])
                if not event.resumed:
                    # Pages start from the newest message: the daemon sends on entering
                    # the latest public messages and the private ones not yet read, and
                    # its `more` counts public ones only; private ones read before, newer
                    # or older than those, are found only so.
                    self._oldest = None
                    self._more = True
                window.show_history(event)
                await self._refresh_online()
            elif isinstance(event, Joined):
                window.joined(event, news=self._returns.is_news(event.name, trio.current_time()))
            elif isinstance(event, Left):
                self._returns.left(event.name)
                window.left(event)
            elif isinstance(event, Notice):
                if event.muted is not None:
                    window.set_muted(event.muted)
                window.note(event.text, aloud=True)  # the operator's word: muted, kicked
            elif isinstance(event, MessageRemoved):
                window.unsaid(event.id)
            elif isinstance(event, Missed):
                window.note(missed_sentence(event.count))
            elif isinstance(event, Disconnected):
                if self._away_after is None:
                    self._away_after = self._newest
                self._returns.lost(window.online.names)
                window.set_link(Link.RECONNECTING, event.reason)
            elif isinstance(event, Reconnected):
                self._returns.back(trio.current_time())
                window.set_link(Link.CONNECTED)

    def _why_it_ended(self) -> str:
        """Why the session ended on its own: the daemon's key changed (what to do about it,
        as the sign-in dialog says), or the client's own reason."""
        failure = self.chat.failure
        if isinstance(failure, KeyChanged):
            return key_changed_sentence(self.chat.host, self.chat.port)
        return told(failure) if failure else "the session ended."

    async def _refresh_online(self) -> None:
        """Who is online, asked in turn with the events (joins and leaves after it apply)."""
        with trio.move_on_after(WHO_TIMEOUT):
            with contextlib.suppress(ChatError):
                self.window.set_online(await self.chat.who())

    # --- typed lines -----------------------------------------------------------------------

    def handle(self, line: str, person: str) -> None:
        """Act on a line typed in the room (`person` == "") or in a private tab."""
        if self._quit:
            return
        window = self.window
        key = name_key(person) if person else ROOM
        command = commands.parse(line)
        if isinstance(command, commands.Quit):
            window.close()
            self._quit = window.link is Link.LEAVING or not window.isVisible()
        elif isinstance(command, commands.Invalid):
            window.note(command.message, key)
        elif isinstance(command, commands.Help):
            window.show_info(key, commands.WINDOW_HELP.splitlines())
        elif isinstance(command, commands.Say):
            self.send(person, command.text)
        elif isinstance(command, commands.Whisper):
            window.open_conversation(command.to)
            self.send(command.to, command.text)
        elif isinstance(command, commands.Who):
            self._start(self._who, key)
        elif isinstance(command, commands.ShowHistory):
            model = window.model(key)
            if model is not None and not model.more:
                window.note("Every message is shown: there are no older ones.", key)
                return
            window.note("Scroll up to see older messages; they load as you reach the top.", key)
            self._start(self.load_older, key)

    def _start(self, function: Callable[[*Args], Awaitable[object]], *args: *Args) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(function, *args)

    def send(self, person: str, text: str) -> None:
        """Say `text` in the room (`person` == "") or to `person` alone."""
        receipt: Receipt[ChatMessage]
        try:
            if person:
                receipt = self.chat.whisper_nowait(person, text)
            else:
                receipt = self.chat.say_nowait(text)
        except ChatError as error:
            unknown = isinstance(error, UnknownUser)
            self.window.refuse_now(person, text, error.message, no_such_person=unknown)
            return
        self._lines = [line for line in self._lines if not line.done]
        self._lines.append(receipt)
        pending = self.window.add_pending(person, text)
        self._start(self._settle, receipt, pending, text)

    async def _settle(self, receipt: Receipt[ChatMessage], pending: Pending, text: str) -> None:
        try:
            message = await receipt.wait()
        except ChatError as error:
            if not (self.leaving and isinstance(error, ConnectionLost)):
                unknown = isinstance(error, UnknownUser)
                self.window.settle_refused(pending, text, error.message, no_such_person=unknown)
            return
        self.window.settle_sent(pending, message)

    async def _change_password(self, old: str, new: str) -> None:
        try:
            await self.chat.change_password(old, new)
        except ConnectionLost as error:
            self.window.password_unsure(error.message)  # sent again, it would be wrong
            return
        except ChatError as error:
            current = isinstance(error, WrongPassword | Throttled | Busy)
            self.window.password_refused(error.message, current)
            return
        finally:
            self._changing -= 1
            self._changed.set()
        self.window.password_changed()

    async def _who(self, key: str) -> None:
        try:
            names = await self.chat.who()
        except ChatError as error:
            self.window.note(error.message, key)
            return
        self.window.show_names(key, names)

    # --- older messages --------------------------------------------------------------------

    async def _fill_gap(self, after: int, before: int) -> None:
        """Show the messages missed while away that the resumed history left out (it
        holds the newest 500): those after `after` (the newest shown before) and before
        `before`, read a page at a time, up to `GAP_PAGES` pages; say how many came (shown
        here, or already by pages of older messages a tab asked for meanwhile)."""
        added = 0
        try:
            for _page in range(GAP_PAGES):
                page = await self.chat.history(PAGE, before=before)
                self.window.show_older(page, ROOM)
                added += sum(1 for m in page if isinstance(m, PublicMessage) and m.id > after)
                if len(page) < PAGE or min(message.id for message in page) <= after:
                    break
                before = min(message.id for message in page)
            else:
                self.window.note(
                    f"{counted(added, 'more message')} missed are above; "
                    "the oldest of what was missed are not shown."
                )
                return
        except ChatError as error:
            self.window.note(f"Could not load the rest of what was missed: {error.message}")
            return
        if added:
            verb = "is" if added == 1 else "are"
            self.window.note(f"The {counted(added, 'other message')} missed {verb} above too.")

    async def load_older(self, key: str) -> None:
        """Read pages of older messages until `key`'s conversation has some more, or there
        are none left. Pages hold the room's messages and this account's private ones: a
        page of private ones brings nothing to the room, nor one of the room's to a tab."""
        if self._loading:
            return
        self._loading = True
        try:
            pages = 0
            while self._more and pages < PAGES_PER_ASK:
                page = await self.chat.history(PAGE, before=self._oldest)
                pages += 1
                if page:
                    self._oldest = min(message.id for message in page)
                self._more = len(page) == PAGE
                if self.window.show_older(page, key):
                    break
        except ChatError as error:
            self.window.note(f"Could not load older messages: {error.message}", key)
        finally:
            self._loading = False
            self.window.older_done(self._more)
