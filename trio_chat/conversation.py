"""A stay in the room as a person has it: typed lines in, printed lines out.

`Room` turns each line into a request on a `ChatClient` (see `commands`), prints the
room's events, and prints the answers to the requests in the order the lines were typed:
your own message appears once the daemon has stored it, with the time it gave it. The
terminal and the pipe modes (`terminal`) differ only in how they read and print.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import trio

from . import commands
from .client import ChatClient, Receipt
from .completion import NamesMet
from .display import (
    DIM,
    ERROR,
    Line,
    counted,
    heading_line,
    info_line,
    joined_line,
    left_line,
    message_line,
    missed_sentence,
    names_line,
    notice_line,
    pending_line,
    safe,
    safe_name,
    unsaid_line,
)
from .errors import BadRequest, ChatError, ConnectionLost
from .events import (
    ChatMessage,
    Disconnected,
    Event,
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
from .rules import name_key

SHOWN_MEMORY = 10_000
"""How many message ids to remember, to show a message to yourself only once."""
RETURN_WINDOW = 60.0
"""After an outage (a daemon restart, say) everyone comes back within moments: for this
many seconds, the join of someone who was here before it is not shown as news."""
RETURN_SETTLE = 10.0
"""After an outage, how long the terminal waits for everyone who was here to be back
before it says who is (at once if they all are)."""


class Returns:
    """Who was in the room when the connection was lost, so that their joins as everyone
    comes back are not shown as news (the terminal's and the window's rule)."""

    def __init__(self) -> None:
        self._before: set[str] = set()
        self._seen_back: set[str] = set()
        """Those of `_before` a `who` has shown back: their joins may still be on the way,
        and are not news either."""
        self._back_at = -math.inf

    def lost(self, online: Iterable[str]) -> None:
        """The connection was lost, with these people (names or name keys) in the room."""
        self._before = {name_key(name) for name in online}
        self._seen_back = set()

    def back(self, now: float) -> None:
        self._back_at = now

    def is_news(self, joined: str, now: float) -> bool:
        """Whether the join of `joined` is news: not a return soon after ours."""
        key = name_key(joined)
        returning = key in self._before and now - self._back_at < RETURN_WINDOW
        self._before.discard(key)
        return not returning

    def left(self, name: str) -> None:
        """Gone meanwhile: coming in again is news."""
        self._before.discard(name_key(name))

    def here(self, names: Iterable[str]) -> None:
        """These people are in the room (a `who` said so): back already."""
        self._seen_back.update(name_key(name) for name in names)

    def away(self, me: str) -> bool:
        """Whether anyone here before the outage, but `me`, has not come back (nor left)."""
        return bool(self._before - self._seen_back - {name_key(me)})


Result = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a stay in the room went."""

    ended: ChatError | None = None
    """Why the session ended, if it ended without us leaving (the daemon refused us)."""
    refused: ChatError | None = None
    """The first request that was refused (a script's exit status tells of it)."""
    unacknowledged: int = 0
    """Messages the daemon had not acknowledged when the person left without waiting."""
    left_now: bool = False
    """The person asked not to wait (Ctrl-C while leaving): no logout is waited for."""


def _now() -> datetime:
    return datetime.now(UTC)


class Room:
    """A session in the room as a person uses it: lines in, lines out."""

    def __init__(
        self,
        chat: ChatClient,
        show: Callable[[Line], None],
        complain: Callable[[str], None],
        *,
        interactive: bool,
    ) -> None:
        self.chat = chat
        self.show = show
        self.complain = complain
        self.interactive = interactive
        self.connected = True
        self.leaving = False
        self.failed: ChatError | None = None
        """Why the first refused line was refused (scripts exit with its code)."""
        self._failed_line: int | None = None
        self.fatal: ChatError | None = None
        """Why the session ended, if it ended without us leaving."""
        self.on_change: Callable[[], None] = lambda: None
        self.give_back: Callable[[str], None] = lambda line: None
        """Offered each typed line refused before it was sent (too long, a mistyped
        command): a terminal puts it back at its prompt, to be mended, not typed again."""
        self._line_number = 0
        self._typed = ""
        self._receipts: list[Receipt[object]] = []
        self._sending: list[tuple[Receipt[ChatMessage], bool]] = []
        """Own messages sent and not shown yet, each with whether it waited to go out."""
        self._results_in, self._results_out = trio.open_memory_channel[Result](math.inf)
        self._results_done = trio.Event()
        self._shown: dict[int, ChatMessage] = {}
        """The messages shown lately, by id (shown once; told when one is removed)."""
        self._unsaid: set[int] = set()
        """The room's messages the operator removed while this conversation runs."""
        self._shown_order: deque[int] = deque()
        self._newest_shown = 0
        self._newest_stored = 0
        """The newest message id the daemon had when it sent a history (`History.newest`):
        one's own private message newer than any shown, read before, is not in a login's
        history, and `/history` still lists it."""
        self._oldest_found: int | None = None
        """Where `/older` goes back from: the oldest message the last `/history` or `/older`
        showed, or before any, the oldest of the room's messages shown."""
        self._paged = False
        self.online: set[str] = set()
        """Who is in the room (name keys), from `/who` answers, joins and leaves."""
        self._met = NamesMet()
        self._returns = Returns()
        self._caught_up = trio.Event()
        self._caught_up.set()
        """Set while no history is owed: after an outage, once what was missed is shown."""
        self._tasks: trio.Nursery | None = None
        self.ended = trio.Event()
        """Set once the session has ended and every event of it has been shown."""
        self._everyone_back: trio.Event | None = None
        """While the terminal waits to say who is here after an outage: set once all are."""
        self._asking_who = trio.CancelScope()

    @property
    def where(self) -> str:
        return f"{self.chat.host}:{self.chat.port}"

    def names(self) -> list[str]:
        """The names met in this conversation, one's own left out: what Tab completes
        (from the prompt's thread)."""
        return self._met.names(self.chat.name)

    # --- input -------------------------------------------------------------------------------

    def handle(self, line: str) -> bool:
        """Act on one typed line; False when it asks to leave."""
        self._line_number += 1
        self._typed = line
        command = commands.parse(line)
        if isinstance(command, commands.Quit):
            return False
        if isinstance(command, commands.Nothing):
            return True
        if isinstance(command, commands.Invalid):
            self._report(command.message, BadRequest(command.message))
        elif isinstance(command, commands.Help):
            self._in_turn(self._show_help)
        elif isinstance(command, commands.Say):
            self._send(lambda: self.chat.say_nowait(command.text), command.text, None)
        elif isinstance(command, commands.Whisper):
            to, text = command.to, command.text
            self._send(lambda: self.chat.whisper_nowait(to, text), text, to)
        elif isinstance(command, commands.Who):
            self._ask(self.chat.who_nowait, self._show_names)
        elif isinstance(command, commands.ShowHistory):
            self._ask_history(command.count, older=command.older)
        return True

    # A script's lines are read faster than their answers come. Its `/help` and
    # `/history` wait for the answers to the lines before them, as if typed: the help
    # would otherwise be printed above those lines, and the history would leave out the
    # messages sent just before it (not stored yet, not shown).

    def _in_turn(self, act: Callable[[], None]) -> None:
        """Act now on a screen; in a script, once the lines before are answered."""
        if self.interactive:
            act()
            return

        async def in_turn() -> None:
            act()

        self._later(in_turn)

    def _show_help(self) -> None:
        for help_line in commands.HELP.splitlines():
            self.show(info_line(help_line))

    def _ask_history(self, count: int, *, older: bool = False) -> None:
        """Ask for the `count` messages up to the newest one shown (the daemon may store
        newer ones, ours included, before it reads the history); `older`: those before
        `_oldest_found` (`/older`), and so on back."""

        def submit() -> Receipt[list[ChatMessage]]:
            if older:
                # Nothing shown yet: nothing older than what there is to see (before id 0).
                return self.chat.history_nowait(count, self._oldest_found or 0)
            newest = max(self._newest_shown, self._newest_stored)
            before = newest + 1 if newest else None
            return self.chat.history_nowait(count, before)

        show = self._show_older if older else self._show_found

        if self.interactive or self.leaving:
            self._ask(submit, show)  # leaving: not asked, as `_ask` says
            return
        line_number = self._line_number

        async def in_turn() -> None:
            # Asked while the input ends too: the script asked before its end.
            try:
                receipt = submit()
            except ChatError as error:
                self._refused(error.message, error, line_number)
                return
            await self._answer(receipt, show, line_number)

        self._later(in_turn)

    def refuse(self, message: str) -> None:
        """Count a line that cannot be read as text, and report it instead of sending it
        (there is no line to give back)."""
        self._line_number += 1
        self._typed = ""
        self._report(message, BadRequest(message))

    @property
    def waiting(self) -> int:
        """Messages not acknowledged yet; read from any thread (the prompt's), changes nothing."""
        return sum(1 for receipt in list(self._receipts) if not receipt.done)

    @property
    def unanswered(self) -> int:
        """Messages sent that the daemon has not acknowledged (nor refused) yet."""
        self._receipts = [receipt for receipt in self._receipts if not receipt.done]
        return len(self._receipts)

    def _refused(self, message: str, error: ChatError, line_number: int) -> None:
        """Tell of a refused line; a script is told its number and remembers the first."""
        if self._failed_line is None or line_number < self._failed_line:
            self.failed, self._failed_line = error, line_number
        if self.interactive:
            self.show(((ERROR, safe(message)),))
        else:
            self.complain(f"line {line_number}: {safe(message)}")

    def _report(self, message: str, error: ChatError) -> None:
        """A line refused before it was sent: at once on a screen, in line order in a pipe."""
        line_number = self._line_number
        if self.interactive:
            self._refused(message, error, line_number)
            if self._typed:
                self.give_back(self._typed)
            return

        async def in_order() -> None:
            self._refused(message, error, line_number)

        self._later(in_order)

    def _send(self, submit: Callable[[], Receipt[ChatMessage]], text: str, to: str | None) -> None:
        try:
            receipt = submit()
        except ChatError as error:
            self._report(f"Not sent: {error.message}", error)
            return
        self._receipts.append(receipt)
        waiting = not self.connected
        self._sending.append((receipt, waiting))
        if waiting and self.interactive:
            self.show(pending_line(text, to, self.chat.name))
        line_number = self._line_number
        self._later(lambda: self._sent(receipt, text, to, line_number, waiting))

    def _later(self, result: Result) -> None:
        self._results_in.send_nowait(result)

    async def _sent(
        self,
        receipt: Receipt[ChatMessage],
        text: str,
        to: str | None,
        line_number: int,
        waited: bool,
    ) -> None:
        try:
            message: ChatMessage = await receipt.wait()
            # Its answer and the history of what was missed while away arrive together;
            # the missed messages are older, so they are shown first.
            await self._caught_up.wait()
        except ChatError as error:
            if self._person_left and isinstance(error, ConnectionLost):
                return
            # After what came before the refusal, which may say why (the account was
            # muted while the line waited for the daemon).
            await self.chat.events_read()
            target = f" to {safe_name(to)}" if to is not None else ""
            short = text if len(text) <= 40 else text[:39] + "…"
            # In quotes as typed (`repr` would double each backslash, and may switch to
            # double quotes); `_refused` escapes what a terminal would obey.
            self._refused(f"Not sent{target} ('{short}'): {error.message}", error, line_number)
            return
        self._show_message(message, sent_late=waited and self.interactive)

    def _show_own_before(self, message_id: int) -> None:
        """Show first the messages of one's own, answered already, that are older than
        `message_id`. The daemon answers a message before it sends any later one, but the
        answer is shown by a task of its own (`_sent`), which may run after the later
        message's arrival is shown: everyone else's screen has them in stored order."""
        if not self._caught_up.is_set():
            return  # what was missed while away comes first (`_sent` waits for it too)
        self._show_answered_before(message_id)

    def _show_answered_before(self, message_id: int, after: int = 0) -> None:
        """Show the messages of one's own answered already that are older than
        `message_id` (and newer than `after`), oldest first."""
        answered = [(receipt.result, waited) for receipt, waited in self._sending]
        for mine, waited in sorted(
            ((m, w) for m, w in answered if m is not None and after < m.id < message_id),
            key=lambda pair: pair[0].id,
        ):
            self._show_message(mine, sent_late=waited and self.interactive)
        # Kept: those not answered yet, and those answered not shown yet (newer than
        # `message_id`), to be shown in their place later.
        self._sending = [
            (receipt, w)
            for receipt, w in self._sending
            if not receipt.done
            or (receipt.result is not None and receipt.result.id not in self._shown)
        ]

    def _show_message(self, message: ChatMessage, *, sent_late: bool = False) -> None:
        """Show a message once, even when it comes both as an event and as an answer."""
        if message.id in self._shown:
            return
        self._note_shown(message)
        self._newest_shown = max(self._newest_shown, message.id)
        if not self._paged and isinstance(message, PublicMessage):
            # Until a page was asked for, `/older` goes back from the oldest of the room's
            # messages shown (not from a private one that waited since long before them).
            oldest = self._oldest_found
            self._oldest_found = message.id if oldest is None else min(oldest, message.id)
        line = self._line(message)
        if sent_late:
            line = (*line, (DIM, " (sent; it was waiting)"))
        self.show(line)

    def _ask(self, submit: Callable[[], Receipt[Any]], show: Callable[[Any], None]) -> None:
        """Send a question now (in order with the messages before it); show its answer later.

        Not once leaving: the answers are no longer shown (the room may come back while
        the last messages wait for their answers, and would ask who is here)."""
        if self.leaving:
            return
        try:
            receipt = submit()
        except ChatError as error:
            self._report(error.message, error)
            return
        line_number = self._line_number
        self._later(lambda: self._answer(receipt, show, line_number))

    async def _answer(
        self, receipt: Receipt[Any], show: Callable[[Any], None], line_number: int
    ) -> None:
        """Show a question's answer, or tell of its refusal."""
        try:
            result = await receipt.wait()
        except ChatError as error:
            if not (self._person_left and isinstance(error, ConnectionLost)):
                self._refused(error.message, error, line_number)
            return
        show(result)

    async def _who_once_back(self) -> None:
        """Say who is here after an outage, once everyone who was here before is back
        (or `RETURN_SETTLE` has passed): everyone comes back within moments, and the
        first back would be told only of itself, the others' returns not being news.
        Asked at once, `who` tells of those back before this client (whose joins it is
        not sent); the joins and leaves after it tell of the rest."""
        self._asking_who.cancel()  # an outage before: its question goes with this one
        with trio.CancelScope() as self._asking_who:
            self._everyone_back = back = trio.Event()
            try:
                names: list[str] = await self.chat.who_nowait().wait()
                self._returns.here(names)
                if self._returns.away(self.chat.name):
                    with trio.move_on_after(RETURN_SETTLE):
                        await back.wait()
                    self._ask(self.chat.who_nowait, self._show_names)
                elif not self.leaving:
                    self._show_names(names)
            except ChatError:
                pass  # lost again: the next return asks
            finally:
                self._everyone_back = None

    def _came_back(self) -> None:
        """Someone joined or left: after an outage, that may have been the last one away."""
        back = self._everyone_back
        if back is not None and not self._returns.away(self.chat.name):
            back.set()

    def _show_names(self, names: list[str]) -> None:
        self.online = {name_key(name) for name in names}
        self._met.meet(*names)
        self.show(names_line(names, self.chat.name))

    def _show_found(self, messages: list[ChatMessage]) -> None:
        """`/history`'s answer."""
        count = len(messages)
        many = f"The last {count} messages" if count > 1 else "The last message"
        self._show_page(messages, many if messages else "No messages yet")

    def _show_older(self, messages: list[ChatMessage]) -> None:
        """`/older`'s answer."""
        count = len(messages)
        many = f"{count} older messages" if count > 1 else "1 older message"
        self._show_page(messages, many if messages else "No older messages")

    def _show_page(self, messages: list[ChatMessage], heading: str) -> None:
        self.show(heading_line(heading))
        self._paged = True
        if messages:
            self._oldest_found = messages[0].id
        for message in messages:
            self._note_shown(message)
            self.show(self._line(message))

    def _note_shown(self, message: ChatMessage) -> None:
        """Remember a message shown, to say so if the operator removes it, and the names
        in it."""
        self._met.meet_in(message)
        if message.id not in self._shown:
            self._shown_order.append(message.id)
            if len(self._shown_order) > SHOWN_MEMORY:
                self._shown.pop(self._shown_order.popleft(), None)
        self._shown[message.id] = message

    def _line(self, message: ChatMessage) -> Line:
        """A message's line; one the operator removed before it came, the line that says
        so (a page read meanwhile, an answer to a resend)."""
        if message.id in self._unsaid and isinstance(message, PublicMessage):
            return unsaid_line(message, self.chat.name, _now())
        return message_line(message, self.chat.name)

    async def run_results(self) -> None:
        """Print the answers to requests, in the order the lines were typed."""
        try:
            async for result in self._results_out:
                await result()
        finally:
            self._results_done.set()

    async def finish(self) -> None:
        """Wait until every request sent so far is answered and its answer printed."""
        self._results_in.close()
        await self._results_done.wait()
        await self.chat.drain()

    async def log_out(self) -> None:
        """Leave the room, showing what comes until the daemon has taken the logout (a
        private message acknowledged by then counts as delivered: it must be shown)."""
        await self.chat.logout()
        await self.ended.wait()

    # --- the room's events ---------------------------------------------------------------------

    async def show_events(self) -> None:
        """Print everything that happens until the session ends; note why it ended."""
        try:
            async with trio.open_nursery() as self._tasks:
                await self._show_all_events()
                self._tasks.cancel_scope.cancel()
        finally:
            self._caught_up.set()  # nothing more comes: nothing to wait for
            self.ended.set()

    async def _show_all_events(self) -> None:
        try:
            async for event in self.chat.events():
                self._show_event(event)
        except ChatError as failure:
            if not self._person_left:
                self.fatal = failure

    @property
    def _person_left(self) -> bool:
        """A person who left the room is not told the session ended after that (asked to
        leave at once, they were told what may not have arrived). A script is: its lines
        that never reached the daemon are its failure, at the end of its input too."""
        return self.leaving and self.interactive

    def _show_event(self, event: Event) -> None:
        me = self.chat.name
        if isinstance(event, PublicMessage | PrivateMessage):
            self._show_own_before(event.id)
            self._show_message(event)
        elif isinstance(event, History):
            self._newest_stored = max(self._newest_stored, event.newest)
            self._show_history(event)
        elif isinstance(event, Joined):
            self.online.add(name_key(event.name))
            self._met.meet(event.name)
            if self._returns.is_news(event.name, trio.current_time()):
                self.show(joined_line(event, me))
            self._came_back()
        elif isinstance(event, Left):
            self.online.discard(name_key(event.name))
            self._returns.left(event.name)
            self.show(left_line(event, me))
            self._came_back()
        elif isinstance(event, Notice):
            self.show(notice_line(event.text, _now()))
        elif isinstance(event, MessageRemoved) and event.id not in self._unsaid:
            self._unsaid.add(event.id)  # told once (again to a client coming back)
            removed = self._shown.get(event.id)
            if isinstance(removed, PublicMessage):  # else never shown here: nothing to say
                self.show(unsaid_line(removed, me, _now()))
        elif isinstance(event, Missed):
            self.show(notice_line(missed_sentence(event.count), _now()))
        elif isinstance(event, Disconnected):
            self.connected = False
            if self._caught_up.is_set():
                # Not when history is still owed from an outage before: lines waiting
                # for that event would wait for good.
                self._caught_up = trio.Event()
            self._returns.lost(self.online)
            self._asking_who.cancel()  # asked once back from this outage instead
            self.show(
                notice_line(
                    f"Lost the connection to trio-chat at {self.where} ({event.reason}); "
                    "trying again. What you send goes out when it is back.",
                    _now(),
                )
            )
            self.on_change()
        elif isinstance(event, Reconnected):
            self.connected = True
            self._returns.back(trio.current_time())
            self.show(notice_line(f"Connected to {self.where} again.", _now(), DIM))
            self.on_change()

    def _show_history(self, event: History) -> None:
        me = self.chat.name
        fresh = [message for message in event.messages if message.id not in self._shown]
        if self.interactive:
            if event.resumed:
                if fresh:
                    count = len(fresh)
                    missed = counted(count, "message")
                    if event.more:  # the daemon sent only the newest of them
                        missed = f"more than {missed}; the latest {count}"
                    self.show(heading_line(f"Missed while away: {missed}"))
                elif event.more:  # what came was shown already: the rest is for /older
                    self.show(heading_line("Missed while away: older messages; /older shows them"))
                else:
                    self.show(notice_line("No message was missed meanwhile.", _now(), DIM))
            elif fresh:
                more = "; /older shows older ones" if event.more else ""
                self.show(heading_line(f"Earlier messages{more}"))
        # Only the latest of what was missed may have come (`more`): a line of one's own
        # older than all of it is shown after it, not among it, as if it were the latest.
        gap_before = gap_end(fresh, event.gap) if event.more else 0
        for message in fresh:
            if event.resumed:
                # Lines typed while away that were stored before it (the daemon had
                # stalled, say) are answered by now: shown in their place among it.
                self._show_answered_before(message.id, after=gap_before)
            self._show_message(message)
        if event.resumed and event.more and (fresh or event.gap is not None):
            # Only the latest of what was missed came: `/older` goes back into the gap
            # (from its oldest room message: a private one that waited may be older),
            # from where the daemon says it ends, even when all that came was shown.
            self._paged = True
            self._oldest_found = gap_before
        self._caught_up.set()
        if self.interactive and event.resumed and fresh:
            self.show(heading_line("Now"))
        if self.interactive and event.resumed and self._tasks is not None:
            self._tasks.start_soon(self._who_once_back)
        if self.interactive and not event.resumed:
            self.show(
                heading_line(
                    f"You are in the room as {safe(me)}; /help lists the commands, Exit leaves"
                )
            )
            self._ask(self.chat.who_nowait, self._show_names)
        elif not event.resumed and self._tasks is not None:
            self._tasks.start_soon(self._learn_who_is_here)

    async def _learn_who_is_here(self) -> None:
        """Who is in the room on entering, for a script, which does not print it: those
        there before it who come back after an outage are not news (`Returns`)."""
        with contextlib.suppress(ChatError):  # the session ended: nothing to tell apart
            names: list[str] = await self.chat.who_nowait().wait()
            self.online |= {name_key(name) for name in names}
            self._met.meet(*names)
