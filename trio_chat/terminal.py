"""The room in a terminal (prompt_toolkit) and the same room driven by a pipe.

Both modes share `Room`: it turns typed lines into requests on a `ChatClient`, prints
the room's events, and prints the answers to the requests in the order they were typed
(your own message appears once the daemon has stored it, with its timestamp).

Interactive mode reads each line with prompt_toolkit in a worker thread while Trio
prints events above it (see `Terminal`), so incoming messages never break the line being
typed. Pipe mode reads standard input line by line, prints plain lines, and at the end of
input waits until everything sent was acknowledged.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import trio
from prompt_toolkit import PromptSession
from prompt_toolkit.formatted_text import ANSI
from prompt_toolkit.output import create_output
from prompt_toolkit.output.vt100 import Vt100_Output

from . import commands
from .client import ChatClient, Receipt
from .display import (
    DIM,
    ERROR,
    Line,
    heading_line,
    info_line,
    joined_line,
    left_line,
    message_line,
    names_line,
    notice_line,
    safe,
    to_ansi,
    to_plain,
)
from .errors import BadRequest, ChatError, ConnectionLost
from .events import (
    ChatMessage,
    Disconnected,
    Event,
    History,
    Joined,
    Left,
    Notice,
    PrivateMessage,
    PublicMessage,
    Reconnected,
)

LEAVE_WAIT = 5.0
"""On leaving, how long to wait for messages still on their way to be acknowledged."""

SHOWN_MEMORY = 10_000
"""How many message ids to remember, to show a message to yourself only once."""

Result = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a stay in the room went."""

    ended: ChatError | None = None
    """Why the session ended, if it ended without us leaving (the daemon refused us)."""
    refused: ChatError | None = None
    """The first request that was refused (a script's exit status tells of it)."""


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
        self._line_number = 0
        self._receipts: list[Receipt] = []
        self._results_in, self._results_out = trio.open_memory_channel[Result](math.inf)
        self._results_done = trio.Event()
        self._shown: set[int] = set()
        self._shown_order: deque[int] = deque()
        self._newest_shown = 0

    @property
    def where(self) -> str:
        return f"{self.chat.host}:{self.chat.port}"

    # --- input -------------------------------------------------------------------------------

    def handle(self, line: str) -> bool:
        """Act on one typed line; False when it asks to leave."""
        self._line_number += 1
        command = commands.parse(line)
        if isinstance(command, commands.Quit):
            return False
        if isinstance(command, commands.Nothing):
            return True
        if isinstance(command, commands.Invalid):
            self._report(command.message, BadRequest(command.message))
        elif isinstance(command, commands.Help):
            for help_line in commands.HELP.splitlines():
                self.show(info_line(help_line))
        elif isinstance(command, commands.Say):
            self._send(lambda: self.chat.say_nowait(command.text), command.text, None)
        elif isinstance(command, commands.Whisper):
            to, text = command.to, command.text
            self._send(lambda: self.chat.whisper_nowait(to, text), text, to)
        elif isinstance(command, commands.Who):
            self._ask(self.chat.who_nowait, self._show_names)
        elif isinstance(command, commands.ShowHistory):
            # Up to the newest message on the screen: the daemon may store newer ones
            # (ours included) before it reads the history.
            count, before = command.count, self._newest_shown + 1 if self._newest_shown else None
            self._ask(lambda: self.chat.history_nowait(count, before), self._show_found)
        return True

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
            return

        async def in_order() -> None:
            self._refused(message, error, line_number)

        self._later(in_order)

    def _send(self, submit: Callable[[], Receipt], text: str, to: str | None) -> None:
        try:
            receipt = submit()
        except ChatError as error:
            self._report(f"Not sent: {error.message}", error)
            return
        self._receipts.append(receipt)
        if not self.connected and self.interactive:
            self.show(
                notice_line("Not connected: this goes out when the connection is back.", _now())
            )
        line_number = self._line_number
        self._later(lambda: self._sent(receipt, text, to, line_number))

    def _later(self, result: Result) -> None:
        self._results_in.send_nowait(result)

    async def _sent(self, receipt: Receipt, text: str, to: str | None, line_number: int) -> None:
        try:
            message: ChatMessage = await receipt.wait()
        except ChatError as error:
            if self.leaving and isinstance(error, ConnectionLost):
                return
            target = f" to {to}" if to is not None else ""
            short = text if len(text) <= 40 else text[:39] + "…"
            self._refused(f"Not sent{target} ({short!r}): {error.message}", error, line_number)
            return
        self._show_message(message)

    def _show_message(self, message: ChatMessage) -> None:
        """Show a message once, even when it comes both as an event and as an answer."""
        if message.id in self._shown:
            return
        self._shown.add(message.id)
        self._newest_shown = max(self._newest_shown, message.id)
        self._shown_order.append(message.id)
        if len(self._shown_order) > SHOWN_MEMORY:
            self._shown.discard(self._shown_order.popleft())
        self.show(message_line(message, self.chat.name))

    def _ask(self, submit: Callable[[], Receipt], show: Callable[[Any], None]) -> None:
        """Send a question now (in order with the messages before it); show its answer later."""
        try:
            receipt = submit()
        except ChatError as error:
            self._report(error.message, error)
            return
        line_number = self._line_number

        async def answer() -> None:
            try:
                result = await receipt.wait()
            except ChatError as error:
                if not (self.leaving and isinstance(error, ConnectionLost)):
                    self._refused(error.message, error, line_number)
                return
            show(result)

        self._later(answer)

    def _show_names(self, names: list[str]) -> None:
        self.show(names_line(names, self.chat.name))

    def _show_found(self, messages: list[ChatMessage]) -> None:
        if not messages:
            self.show(heading_line("No messages yet"))
            return
        count = len(messages)
        self.show(heading_line(f"The last {count} messages" if count > 1 else "The last message"))
        for message in messages:
            self.show(message_line(message, self.chat.name))

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

    # --- the room's events ---------------------------------------------------------------------

    async def show_events(self) -> None:
        """Print everything that happens until the session ends; note why it ended."""
        async for event in self.chat.events():
            self._show_event(event)
        if not self.leaving and self.chat.failure is not None:
            self.fatal = self.chat.failure

    def _show_event(self, event: Event) -> None:
        me = self.chat.name
        if isinstance(event, PublicMessage | PrivateMessage):
            self._show_message(event)
        elif isinstance(event, History):
            self._show_history(event)
        elif isinstance(event, Joined):
            self.show(joined_line(event, me))
        elif isinstance(event, Left):
            self.show(left_line(event, me))
        elif isinstance(event, Notice):
            self.show(notice_line(event.text, _now()))
        elif isinstance(event, Disconnected):
            self.connected = False
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
            self.show(notice_line(f"Connected to {self.where} again.", _now(), DIM))
            self.on_change()

    def _show_history(self, event: History) -> None:
        me = self.chat.name
        fresh = [message for message in event.messages if message.id not in self._shown]
        if self.interactive:
            if event.resumed:
                if fresh:
                    missed = f"{len(fresh)} messages" if len(fresh) > 1 else "1 message"
                    self.show(heading_line(f"Missed while away: {missed}"))
                else:
                    self.show(notice_line("Nothing was missed meanwhile.", _now(), DIM))
            elif fresh:
                more = "; /history 100 shows older ones" if event.more else ""
                self.show(heading_line(f"Earlier messages{more}"))
        for message in fresh:
            self._show_message(message)
        if self.interactive and event.resumed and fresh:
            self.show(heading_line("Now"))
        if self.interactive and not event.resumed:
            self.show(
                heading_line(
                    f"You are in the room as {safe(me)}; /help lists the commands, Exit leaves"
                )
            )
            self._ask(self.chat.who_nowait, self._show_names)


# --- interactive -----------------------------------------------------------------------------


class Terminal:
    """The prompt (prompt_toolkit, run in a worker thread) and the lines printed above it.

    While a prompt is up, a line is printed from inside the prompt's own event loop:
    erase the prompt, write the line, draw the prompt again with what was typed so far.
    (prompt_toolkit's `patch_stdout` does the same through `run_in_terminal`, which puts
    the terminal in cooked mode for a moment; a key pressed in that moment, Ctrl-D say,
    would be lost.) Between prompts lines are written directly; the terminal stays in
    raw mode for the whole stay in the room, so keys typed then wait for the next prompt.
    """

    def __init__(self, message: Callable[[], ANSI]) -> None:
        output = create_output(sys.stdout)
        if isinstance(output, Vt100_Output):
            # Cursor position reports would tell prompt_toolkit how much room is below the
            # prompt; an answer arriving after lines were printed above it is out of date
            # and scrolls the screen. A one-line prompt needs no such room.
            output.enable_cpr = False
        self.session: PromptSession[str] = PromptSession(erase_when_done=True, output=output)
        self._message = message
        self._stopping = False
        self._reading = False
        self._lock = threading.Lock()
        self._pending: list[str] = []

    # --- output ------------------------------------------------------------------------------

    def show(self, line: Line) -> None:
        """Print a line above the prompt; from the Trio thread or the prompt's loop."""
        with self._lock:
            self._pending.append(to_ansi(line) + "\n")
        if not self._reading:
            self._write_pending()
            return
        app = self.session.app
        loop = app.loop
        if app.is_running and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._write_above_prompt)
        # Otherwise the prompt is starting (`_before_prompt` writes the lines) or has
        # ended (`read` writes them once it returns).

    def _take(self) -> str:
        with self._lock:
            text = "".join(self._pending)
            self._pending.clear()
        return text

    def _write_pending(self) -> None:
        text = self._take()
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()

    def _write_above_prompt(self) -> None:
        app = self.session.app
        if not app.is_running or app.is_done:
            return  # the prompt is going away: `read` writes the lines once it has
        text = self._take()
        if not text:
            return
        app.renderer.erase()
        app.output.write_raw(text)
        app.output.flush()
        app.invalidate()

    # --- input -------------------------------------------------------------------------------

    def raw_mode(self) -> contextlib.AbstractContextManager[None]:
        return self.session.input.raw_mode()

    async def read(self) -> str | None:
        """The next line, or None on Ctrl-D, Ctrl-C or `stop()`."""
        if self._stopping:
            return None
        self._reading = True
        try:
            return await trio.to_thread.run_sync(self._prompt)
        except (EOFError, KeyboardInterrupt):
            return None
        finally:
            self._reading = False
            self._write_pending()

    def _prompt(self) -> str:
        # prompt_toolkit's own handler prints a traceback and waits for Enter; ours is
        # `_QuietErrors`, so a key sequence it cannot parse costs one line, not the screen.
        return self.session.prompt(
            self._message, pre_run=self._before_prompt, set_exception_handler=False
        )

    def _before_prompt(self) -> None:
        # In the prompt's loop, before it is first drawn.
        self._write_pending()
        if self._stopping:
            self._exit_app()

    def _exit_app(self) -> None:
        app = self.session.app
        if app.is_running and app.future is not None and not app.future.done():
            app.exit(exception=EOFError)

    def refresh(self) -> None:
        """Redraw the prompt (it shows whether the connection is up); any thread."""
        self.session.app.invalidate()

    async def stop(self) -> None:
        """End the read in progress (as Ctrl-D would) and any later one."""
        self._stopping = True
        while self._reading:
            app = self.session.app
            loop = app.loop
            if app.is_running and loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(self._exit_app)
            await trio.sleep(0.02)


class _QuietErrors(logging.Handler):
    """Shows an error in the prompt's event loop as one line instead of a traceback."""

    def __init__(self, show: Callable[[Line], None]) -> None:
        super().__init__(logging.ERROR)
        self._show = show

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        what = f"{type(error).__name__}: {error}" if error is not None else record.getMessage()
        self._show(((ERROR, f"Ignored an input error ({safe(what)})."),))


@contextlib.contextmanager
def _quiet_asyncio(show: Callable[[Line], None]) -> Iterator[None]:
    logger = logging.getLogger("asyncio")
    handler = _QuietErrors(show)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


async def _stop_on_signals(terminal: Terminal) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for _ in signals:
            await terminal.stop()
            return


async def run_interactive(chat: ChatClient) -> Outcome:
    """The room in a terminal until the person leaves; returns why it ended otherwise."""
    room: Room

    def prompt() -> ANSI:
        state = "" if room.connected else "\x1b[33m (reconnecting)\x1b[0m"
        return ANSI(f"\x1b[1m{safe(chat.name)}\x1b[0m{state}> ")

    terminal = Terminal(prompt)
    room = Room(chat, terminal.show, lambda text: terminal.show(((ERROR, text),)), interactive=True)
    room.on_change = terminal.refresh

    async def events_then_stop() -> None:
        await room.show_events()
        await terminal.stop()

    with terminal.raw_mode(), _quiet_asyncio(terminal.show):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(events_then_stop)
            nursery.start_soon(room.run_results)
            nursery.start_soon(_stop_on_signals, terminal)
            while (line := await terminal.read()) is not None and room.handle(line):
                pass
            if room.fatal is None:
                room.leaving = True
                with trio.move_on_after(LEAVE_WAIT):
                    await room.finish()
                if room.unanswered:
                    terminal.show(
                        (
                            (
                                ERROR,
                                f"Left with {room.unanswered} messages the daemon has not "
                                "acknowledged; they may not have been delivered.",
                            ),
                        )
                    )
            nursery.cancel_scope.cancel()
    return Outcome(room.fatal, room.failed)


# --- pipes -----------------------------------------------------------------------------------


def _write_plain(line: Line) -> None:
    sys.stdout.write(to_plain(line) + "\n")
    sys.stdout.flush()


def _complain(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class LineReader:
    """Lines from a file descriptor, read in a worker thread.

    It reads the descriptor itself rather than `sys.stdin`: an abandoned read then holds
    no lock of Python's, so the program can exit while the input is still open.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = b""
        self._eof = False

    async def readline(self) -> bytes:
        """The next line with its newline; the last one may lack it; b"" at the end."""
        while b"\n" not in self._buffer and not self._eof:
            chunk = await trio.to_thread.run_sync(os.read, self.fd, 65536, abandon_on_cancel=True)
            self._eof = not chunk
            self._buffer += chunk
        line, newline, rest = self._buffer.partition(b"\n")
        self._buffer = rest
        return line + newline


async def run_pipe(chat: ChatClient, fd: int) -> Outcome:
    """Handle each input line as if typed; at the end wait for acknowledgements."""
    room = Room(chat, _write_plain, _complain, interactive=False)
    async with trio.open_nursery() as nursery:

        async def events() -> None:
            await room.show_events()
            if room.fatal is not None:
                nursery.cancel_scope.cancel()

        nursery.start_soon(events)
        nursery.start_soon(room.run_results)
        reader = LineReader(fd)
        while raw := await reader.readline():
            if not room.handle(raw.decode("utf-8", "replace")):
                break
        room.leaving = True
        await room.finish()
        nursery.cancel_scope.cancel()
    return Outcome(room.fatal, room.failed)
