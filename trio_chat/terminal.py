"""The room in a terminal (prompt_toolkit) and the same room driven by a pipe.

Interactive mode reads each line with prompt_toolkit in a worker thread while Trio
prints events above it (see `Terminal`), so incoming messages never break the line being
typed. Pipe mode reads standard input line by line, prints plain lines, and at the end of
input waits until everything sent was acknowledged. Both hand the lines to a
`conversation.Room`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator

import prompt_toolkit.utils
import trio
from prompt_toolkit import PromptSession
from prompt_toolkit.formatted_text import ANSI
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.output import ColorDepth, Output, create_output
from prompt_toolkit.output.vt100 import Vt100_Output
from prompt_toolkit.utils import is_dumb_terminal

from .client import ChatClient
from .completion import complete
from .conversation import Outcome, Room
from .display import (
    DIM,
    ERROR,
    Line,
    counted,
    fold,
    safe,
    safe_name,
    spacing_mark,
    to_ansi,
    to_plain,
)
from .stop_signals import stop_signals

LEAVE_TOLD = 0.5
"""How long leaving waits for the daemon's answers before it says it is waiting (it
waits until they come, or until Ctrl-C)."""
HUNG_UP = frozenset({errno.EIO, errno.ENXIO})
"""What reading or writing a terminal that was closed fails with."""

NOT_UTF8 = "Not sent: the line is not UTF-8 text."
"""Said of a line read from a pipe or a dumb terminal that is not UTF-8."""


def wants_colour(output: Output | None = None) -> bool:
    """Whether the terminal (standard output's, by default) is to be shown colours: not
    when NO_COLOR is set, nor in a dumb terminal (prompt_toolkit's own judgement, the
    same as the prompt's)."""
    depth = (output or create_output(sys.stdout)).get_default_color_depth()
    return depth is not ColorDepth.DEPTH_1_BIT


# --- interactive -----------------------------------------------------------------------------


def _room_keys(names: Callable[[], Iterable[str]], choices: Callable[[Line], None]) -> KeyBindings:
    keys = KeyBindings()

    @keys.add("tab")
    def _complete(event: KeyPressEvent) -> None:
        # A command's word or a name (`completion`); where several fit and Tab can add
        # nothing, they are listed above the prompt.
        buffer = event.current_buffer
        before = buffer.document.text_before_cursor
        done = complete(before, names(), buffer.document.text_after_cursor)
        if done.text != before:
            buffer.delete(done.taken)
            buffer.delete_before_cursor(len(before))
            buffer.insert_text(done.text)
        elif done.choices:
            choices(((DIM, "  ".join(safe_name(choice) for choice in done.choices)),))

    @keys.add("c-z")
    def _nothing(_event: KeyPressEvent) -> None:
        # Not a literal ^Z in a message; nor a stop that would leave the session in the
        # room, silent, with nobody reading it.
        return

    return keys


@functools.cache
def spacing_marks_take_a_column() -> None:
    """Have prompt_toolkit count a spacing vowel sign (U+093E, general category Mc) one
    column wide, as terminals draw it and as `display.columns` counts it: by the width
    tables it is 0, so while a line in Hindi or Tamil was typed prompt_toolkit misplaced
    its cursor, drew the line garbled, and printed the lines that came meanwhile after
    it, on its row. Its cache of character widths (a dict, filled as characters are met)
    is given these widths first; without one (another version), nothing is changed."""
    widths = getattr(prompt_toolkit.utils, "_CHAR_SIZES_CACHE", None)
    if not isinstance(widths, dict):
        return
    for code in range(0x0900, 0x1E000):  # where every spacing mark lies (12 ms, once)
        char = chr(code)
        if spacing_mark(char):
            widths[char] = 1


class Terminal:
    """The prompt (prompt_toolkit, run in a worker thread) and the lines printed above it.

    While a prompt is up, a line is printed from inside the prompt's own event loop:
    erase the prompt, write the line, draw the prompt again with what was typed so far.
    (prompt_toolkit's `patch_stdout` does the same through `run_in_terminal`, which puts
    the terminal in cooked mode for a moment; a key pressed in that moment, Ctrl-D say,
    would be lost.) Between prompts lines are written directly; the terminal stays in
    raw mode for the whole stay in the room, so keys typed then wait for the next prompt.
    """

    def __init__(
        self, message: Callable[[], ANSI], names: Callable[[], Iterable[str]] = tuple
    ) -> None:
        spacing_marks_take_a_column()
        output = create_output(sys.stdout)
        if isinstance(output, Vt100_Output):
            # Cursor position reports would tell prompt_toolkit how much room is below the
            # prompt; an answer arriving after lines were printed above it is out of date
            # and scrolls the screen. A one-line prompt needs no such room.
            output.enable_cpr = False
        self.session: PromptSession[str] = PromptSession(
            erase_when_done=True, output=output, key_bindings=_room_keys(names, self.show)
        )
        self._colour = wants_colour(output)
        self._message = message
        self._stopping = False
        self._reading = False
        self._gone = False
        """The terminal was closed (hung up): nothing more is written to it."""
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._given_back: list[str] = []
        """What the next prompt starts with: the lines refused before they were sent."""

    # --- output ------------------------------------------------------------------------------

    def show(self, line: Line) -> None:
        """Print a line above the prompt; from the Trio thread or the prompt's loop."""
        rows = fold(line, shutil.get_terminal_size().columns, sys.stdout.encoding)
        with self._lock:
            self._pending.extend(to_ansi(row, colour=self._colour) + "\n" for row in rows)
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
        if text and not self._gone:
            try:
                sys.stdout.write(text)
                sys.stdout.flush()
            except OSError as error:
                if error.errno not in HUNG_UP:
                    raise
                self._gone = True  # closed: what is left to say has nowhere to go

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
        """The next line, or None on Ctrl-D, Ctrl-C, `stop()`, or the terminal closed."""
        if self._stopping:
            return None
        self._reading = True
        try:
            return await trio.to_thread.run_sync(self._prompt)
        except (EOFError, KeyboardInterrupt):
            return None
        except OSError as error:
            if error.errno not in HUNG_UP:
                raise
            # The terminal was closed (hung up: its reads and writes fail with EIO): a
            # way of leaving, as SIGHUP is, and nothing more can be shown on it.
            self._gone = True
            return None
        finally:
            self._reading = False
            self._write_pending()

    def give_back(self, line: str) -> None:
        """Start the next prompt with `line` (refused before it was sent: too long, a
        command mistyped), to be mended rather than typed again; of the lines of one
        paste, every one refused, as lines of a paste (Enter sends them one by one)."""
        self._given_back.append(line)

    def _prompt(self) -> str:
        given_back = "\n".join(self._given_back)
        self._given_back.clear()
        # prompt_toolkit's own handler prints a traceback and waits for Enter; ours is
        # `_QuietErrors`, so a key sequence it cannot parse costs one line, not the screen.
        return self.session.prompt(
            self._message,
            default=given_back,
            pre_run=self._before_prompt,
            set_exception_handler=False,
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


class LineTerminal:
    """The room in a terminal that can neither move its cursor nor show colours
    (`TERM=dumb`: Emacs' shell, some consoles), where a prompt redrawn under each new
    line would come out as escape codes: lines are printed plain as they come, and what
    is typed is read line by line with the terminal's own editing, with no prompt."""

    def __init__(self, fd: int = 0) -> None:
        self._reader = LineReader(fd)  # standard input's descriptor, read as `run_pipe` does
        self._read: trio.CancelScope | None = None
        self._stopping = False

    def show(self, line: Line) -> None:
        for row in fold(line, shutil.get_terminal_size().columns, sys.stdout.encoding):
            _write_plain(row)

    def raw_mode(self) -> contextlib.AbstractContextManager[None]:
        """The terminal edits the line itself, and its Ctrl-Z (SIGTSTP) is ignored: a
        stopped client would leave the session in the room, with nobody reading it."""
        return _ignoring(signal.SIGTSTP)

    def refresh(self) -> None:
        """Nothing to redraw: a lost connection is told in a line of its own."""

    async def read(self) -> str | None:
        """The next line, or None at the end of input or after `stop()`. A line that is
        not UTF-8 is refused, as a pipe's is, and the next one read."""
        while not self._stopping:
            with trio.CancelScope() as self._read:
                raw = await self._reader.readline()
            self._read = None
            if self._stopping or not raw:
                return None
            try:
                return raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
            except UnicodeDecodeError:
                self.show(((ERROR, NOT_UTF8),))
        return None

    async def stop(self) -> None:
        """End the read in progress and any later one."""
        self._stopping = True
        if self._read is not None:
            self._read.cancel()


async def _on_signals(act: Callable[[int], Awaitable[None]]) -> None:
    """`act` on each Ctrl-C (outside the prompt, which reads it as a key), SIGTERM, and
    SIGHUP unless `nohup` ignores it (`stop_signals`)."""
    with trio.open_signal_receiver(*stop_signals()) as signals:
        async for signum in signals:
            await act(signum)


async def wait_to_leave(room: Room, show: Callable[[Line], None]) -> None:
    """Wait for the daemon's answers, as long as they take (a daemon restarting takes
    what was typed before it stopped); say so if it takes a while."""
    with trio.move_on_after(LEAVE_TOLD):
        await room.finish()
        return
    count = room.unanswered
    what = f"acknowledges {counted(count, 'message')}" if count else "answers"
    show(((DIM, f"Leaving once the daemon {what} (Ctrl-C: leave now)."),))
    await room.finish()


@contextlib.contextmanager
def _ignoring(signum: int) -> Iterator[None]:
    before = signal.signal(signum, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signum, before)


def _handle_typed(room: Room, typed: str) -> bool:
    """Hand each line of what was entered to the room; False once one asks to leave.

    A paste can hold several lines (prompt_toolkit keeps the line breaks of a bracketed
    paste): each is said, or obeyed, on its own, as if typed one by one, not sent as one
    message whose line breaks everyone would see as `\\n`.
    """
    return all(room.handle(line) for line in typed.split("\n"))


async def run_interactive(chat: ChatClient) -> Outcome:
    """The room in a terminal until the person leaves; returns why it ended otherwise."""
    room: Room

    def prompt() -> ANSI:
        waiting = room.waiting
        more = f", {waiting} waiting" if waiting else ""
        state = "" if room.connected else f"\x1b[33m (reconnecting{more})\x1b[0m"
        return ANSI(f"\x1b[1m{safe(chat.name)}\x1b[0m{state}> ")

    terminal = LineTerminal() if is_dumb_terminal() else Terminal(prompt, lambda: room.names())
    room = Room(chat, terminal.show, lambda text: terminal.show(((ERROR, text),)), interactive=True)
    room.on_change = terminal.refresh
    if isinstance(terminal, Terminal):  # a dumb terminal edits its lines itself
        room.give_back = terminal.give_back

    async def events_then_stop() -> None:
        await room.show_events()
        await terminal.stop()

    leave = trio.CancelScope()

    async def on_signal(signum: int) -> None:
        if room.leaving or signum != signal.SIGINT:
            # Ctrl-C again while leaving; or stopped (SIGTERM), or the terminal closed
            # (SIGHUP), with nobody left to press it: do not wait for the daemon.
            leave.cancel()
        await terminal.stop()

    with _quiet_asyncio(terminal.show):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(events_then_stop)
            nursery.start_soon(room.run_results)
            nursery.start_soon(_on_signals, on_signal)
            with terminal.raw_mode():
                while (typed := await terminal.read()) is not None and _handle_typed(room, typed):
                    pass
            # Out of raw mode, Ctrl-C is a signal again: pressed while leaving, it hurries.
            # Ctrl-Z is one too, and stopped, the client would wait in the room for good.
            if room.fatal is None:
                room.leaving = True
                with leave, _ignoring(signal.SIGTSTP):
                    await wait_to_leave(room, terminal.show)
                    await room.log_out()
                if count := room.unanswered:
                    what = counted(count, "message")
                    they = "it" if count == 1 else "they"
                    terminal.show(
                        (
                            (
                                ERROR,
                                f"Left with {what} the daemon has not acknowledged; "
                                f"{they} may not have been delivered.",
                            ),
                        )
                    )
            nursery.cancel_scope.cancel()
    unanswered = room.unanswered if room.fatal is None else 0
    return Outcome(room.fatal, room.failed, unanswered, left_now=leave.cancelled_caught)


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


PIPE_AHEAD = 500
"""Requests a script's input may have unanswered before its next line is read. Lines
read faster than the daemon answers would otherwise all queue in the client's link,
which gives up past 1 MiB or 4096 frames (`LinkConfig`) as if the daemon had stopped
answering; 500 frames of the largest size (`wire.MAX_FRAME`) stay well within both."""


async def run_pipe(chat: ChatClient, fd: int) -> Outcome:
    """Handle each input line as if typed; at the end wait for acknowledgements."""
    room = Room(chat, _write_plain, _complain, interactive=False)
    reading = trio.CancelScope()
    async with trio.open_nursery() as nursery:

        async def events() -> None:
            await room.show_events()
            if room.fatal is not None:
                # No more lines are read; what was sent is still told, line by line.
                reading.cancel()

        nursery.start_soon(events)
        nursery.start_soon(room.run_results)
        reader = LineReader(fd)
        with reading:
            while raw := await reader.readline():
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    room.refuse(NOT_UTF8)
                    continue
                if not room.handle(line):
                    break
                if chat.pending >= PIPE_AHEAD:
                    await chat.drain()
        room.leaving = True
        await room.finish()
        if room.fatal is None:
            await room.log_out()
        nursery.cancel_scope.cancel()
    return Outcome(room.fatal, room.failed)
