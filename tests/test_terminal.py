"""The interactive room, used as a person would: in terminals (tmux), typing and reading.

Each test runs its own tmux server on a private socket, polls the screen with a
deadline (no fixed sleeps), and kills the server at the end.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import shlex
import signal
import struct
import subprocess
import termios
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

import trio_chat
from tests.cli_support import PASSWORD, TEST_CONFIG, daemon_in_thread
from trio_chat.cli import ExitCode
from trio_chat.conversation import RETURN_WINDOW, Returns
from trio_chat.server import serve
from trio_chat.terminal import LineTerminal
from trio_chat.testing.daemon import CLI, DaemonProcess, cli_env

TIME = r"\[\d\d:\d\d:\d\d\]"
WAIT = 20.0
"""The longest a screen may take to show what a test waits for (a busy machine is slow)."""


class Tmux:
    """A private tmux server whose panes run `trio-chat` sessions."""

    def __init__(self, socket: str, config: Path, env: dict[str, str]) -> None:
        self.base = ["tmux", "-L", socket, "-f", str(config)]
        self.socket = Path(os.environ.get("TMUX_TMPDIR", "/tmp"), f"tmux-{os.getuid()}", socket)
        # A size in the environment (a test run's processes may be given one) would stand
        # for the pane's own: a program in a terminal asks the terminal.
        self.env = {key: value for key, value in env.items() if key not in ("COLUMNS", "LINES")}

    async def kill(self) -> None:
        """Stop the server and its panes; remove its socket."""
        await trio.run_process([*self.base, "kill-server"], check=False, env=self.env)
        self.socket.unlink(missing_ok=True)

    async def run(self, *args: str) -> str:
        done = await trio.run_process(
            [*self.base, *args], capture_stdout=True, capture_stderr=True, env=self.env
        )
        return done.stdout.decode()

    async def start(self, pane: str, *args: str, env: dict[str, str] | None = None) -> None:
        """Run `trio-chat ARGS` in a new pane (with `env` added to its environment)."""
        # The shell reports the exit status on the screen (tmux itself may be slow to reap).
        added = [f"{key}={value}" for key, value in (env or {}).items()]
        command = shlex.join([*(["env", *added] if added else []), *CLI, *args])
        command += '; echo "[exit status $?]"'
        await self.run("new-session", "-d", "-s", pane, "-x", "100", "-y", "45", command)

    async def echo_off(self, pane: str) -> None:
        """Wait until the pane's terminal no longer echoes what is typed: a password prompt
        shows "Password:" a moment before it turns echo off, and what is typed in that
        moment is shown, then dropped as the prompt flushes the input."""
        await self._until_local_modes(
            pane, lambda modes: not modes & termios.ECHO, "the terminal still echoes"
        )

    async def signals_on(self, pane: str) -> None:
        """Wait until Ctrl-C in the pane is a signal again: the line being typed is drawn
        in raw mode, where it is a byte to read, and the terminal is given back its modes
        a moment after the line has gone from the screen."""
        await self._until_local_modes(
            pane, lambda modes: bool(modes & termios.ISIG), "Ctrl-C is still not a signal"
        )

    async def _until_local_modes(
        self, pane: str, holds: Callable[[int], bool], otherwise: str
    ) -> None:
        tty = (await self.run("display-message", "-p", "-t", pane, "#{pane_tty}")).strip()
        fd = os.open(tty, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            with trio.move_on_after(WAIT):
                while True:
                    if holds(termios.tcgetattr(fd)[3]):
                        return
                    await trio.sleep(0.01)
        finally:
            os.close(fd)
        raise AssertionError(f"{pane}: {otherwise}")

    async def type(self, pane: str, text: str) -> None:
        """Type text literally (no Enter)."""
        await self.run("send-keys", "-t", pane, "-l", text)

    async def paste(self, pane: str, text: str) -> None:
        """Paste text as a terminal does: at once, bracketed if the program asked for it."""
        await self.run("set-buffer", "-b", "pasted", text)
        await self.run("paste-buffer", "-p", "-d", "-b", "pasted", "-t", pane)

    async def press(self, pane: str, *keys: str) -> None:
        await self.run("send-keys", "-t", pane, *keys)

    async def screen(self, pane: str, *, styles: bool = False) -> list[str]:
        """The pane's lines as shown, wrapped lines joined, trailing blank lines dropped."""
        flags = ["-e"] if styles else []
        text = await self.run("capture-pane", "-p", "-J", *flags, "-t", pane)
        return text.rstrip("\n ").split("\n")

    async def wait(self, pane: str, condition: Callable[[list[str]], bool], what: str) -> list[str]:
        """Poll the screen until `condition` holds; fail showing the screen at the deadline."""
        lines: list[str] = []
        with trio.move_on_after(WAIT):
            while True:
                lines = await self.screen(pane)
                if condition(lines):
                    return lines
                await trio.sleep(0.05)
        raise AssertionError(f"{pane}: waited for {what}; the screen shows:\n" + "\n".join(lines))

    async def wait_line(self, pane: str, pattern: str, prompt: str | None = None) -> list[str]:
        """Wait until a whole line matches `pattern` (above the prompt line, if given)."""

        def shown(lines: list[str]) -> bool:
            if prompt is not None and lines[-1] != prompt:
                return False
            above = lines[:-1] if prompt is not None else lines
            return any(re.fullmatch(pattern, line) for line in above)

        return await self.wait(pane, shown, f"{pattern!r} above {prompt!r}")

    async def program(self, pane: str) -> int:
        """The process id of the program the pane's shell runs (one at a time)."""
        shell = int(await self.run("display-message", "-p", "-t", pane, "#{pane_pid}"))
        children = trio.Path(f"/proc/{shell}/task/{shell}/children")
        (program,) = (await children.read_text()).split()
        return int(program)

    async def exit_status(self, pane: str) -> int:
        """Wait for the pane's program to end; its exit status."""
        pattern = r"\[exit status (\d+)\]"
        lines = await self.wait_line(pane, pattern)
        return int(next(m for line in lines if (m := re.fullmatch(pattern, line)))[1])


async def ended(pid: int) -> None:
    """Wait until process `pid` has ended: /proc is read at once, where the screen shows
    it only after tmux's next look."""
    stat = trio.Path(f"/proc/{pid}/stat")
    while True:
        try:
            state = (await stat.read_text()).rpartition(")")[2].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return
        if state in ("Z", "X"):
            return
        await trio.sleep(0.01)


def prompt_line(lines: list[str]) -> str:
    return lines[-1]


def refusals(count: int) -> Callable[[list[str]], bool]:
    """Whether the screen shows `count` wrong passwords, each asked again."""
    return lambda lines: sum("try again" in line for line in lines) == count


def quiet_end(lines: list[str], prompt: str) -> bool:
    """Whether the screen holds nothing but the prompt and the shell's exit report."""
    # The terminal itself may echo the keystroke as ^C after the prompt.
    said = {line.removesuffix("^C").rstrip() for line in lines if line.strip()}
    return all(
        line in (prompt, "[exit status 130]") or line.startswith("Pane is dead") for line in said
    )


def last_words(lines: list[str]) -> str:
    """The last line a program wrote before the shell reported its exit status."""
    end = next(i for i, line in enumerate(lines) if line.startswith("[exit status "))
    return lines[end - 1].rstrip()


def tmux_config(folder: Path) -> Path:
    """A tmux configuration that keeps a pane once its program ends (its exit status is
    read from the screen), with no status line."""
    config = folder / "tmux.conf"
    config.write_text("set -g remain-on-exit on\nset -g status off\n", encoding="utf-8")
    return config


@asynccontextmanager
async def room(tmp_path: Path) -> AsyncIterator[tuple[int, Tmux]]:
    """A daemon and a private tmux server (killed at the end, whatever happened)."""
    config = tmux_config(tmp_path)
    async with trio.open_nursery() as nursery:
        address = await nursery.start(serve, "127.0.0.1", 0, tmp_path / "chat.db", TEST_CONFIG)
        port: int = address[1]
        tmux = Tmux(f"trio-chat-test-{os.getpid()}-{tmp_path.name}", config, cli_env(port))
        try:
            yield port, tmux
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await tmux.kill()
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def daemon_process(
    tmp_path: Path, label: str
) -> AsyncIterator[tuple[DaemonProcess, int, Tmux]]:
    """A daemon in a process of its own (to kill, stop and start again) and a private
    tmux server (killed at the end, whatever happened)."""
    config = tmux_config(tmp_path)
    async with trio.open_nursery() as nursery:
        daemon = DaemonProcess(nursery, tmp_path / "chat.db")
        _host, port = await daemon.start()
        tmux = Tmux(f"trio-chat-{label}-{os.getpid()}", config, cli_env(port))
        try:
            yield daemon, port, tmux
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await tmux.kill()
            nursery.cancel_scope.cancel()


async def enter(tmux: Tmux, name: str, env: dict[str, str] | None = None) -> list[str]:
    """Start `trio-chat chat --name NAME`, type the password, wait for the room."""
    await tmux.start(name, "chat", "--name", name, env=env)
    await tmux.wait(name, lambda lines: lines[-1].startswith("Password:"), "the password prompt")
    await tmux.echo_off(name)
    await tmux.type(name, PASSWORD)
    await tmux.press(name, "Enter")
    lines = await tmux.wait(
        name, lambda lines: prompt_line(lines) == f"{name}>", "the prompt in the room"
    )
    assert not any(PASSWORD in line for line in lines), "the password was shown"
    return lines


async def alice_and_bob_in_the_room(
    tmux: Tmux, port: int, alice_env: dict[str, str] | None = None
) -> None:
    """Register alice and bob, enter the room as both, and wait until alice sees bob come."""
    for name in ("alice", "bob"):
        await trio_chat.register("127.0.0.1", port, name, PASSWORD)
    await enter(tmux, "alice", env=alice_env)
    await enter(tmux, "bob")
    await tmux.wait_line("alice", rf"{TIME} \* bob joined the room")


async def test_two_people_chat_in_terminals(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with room(tmp_path) as (port, tmux):
            for name in ("alice", "bob", "carol"):
                await trio_chat.register("127.0.0.1", port, name, PASSWORD)
            async with trio_chat.connect("127.0.0.1", port, "carol", PASSWORD) as carol:
                await carol.say("\x1b[31mred?\x1b]0;pwned\x07 from carol")

            # History on entering, under a heading, with the escape sequence shown escaped.
            await enter(tmux, "alice")
            escaped = rf"{TIME} carol: \\x1b\[31mred\?\\x1b\]0;pwned\\x07 from carol"
            lines = await tmux.wait_line("alice", escaped, prompt="alice>")
            heading = lines.index("-- Earlier messages --")
            assert re.fullmatch(escaped, lines[heading + 1]), lines
            await tmux.wait_line("alice", r"Online \(1\): alice")

            await enter(tmux, "bob")
            await tmux.wait_line("alice", rf"{TIME} \* bob joined the room")

            # A message arrives while alice is halfway through a line: it appears above,
            # with its time, and her half line stays intact below it.
            await tmux.type("alice", "half a li")
            await tmux.wait("alice", lambda ls: ls[-1] == "alice> half a li", "the half line")
            await tmux.type("bob", "hello alice")
            await tmux.press("bob", "Enter")
            await tmux.wait_line("alice", rf"{TIME} bob: hello alice", prompt="alice> half a li")
            styled = await tmux.screen("alice", styles=True)
            # bob's name in his colour; alice's own name in it marked (bold, underlined).
            mentioned = r"\x1b\[[0-9;]*mbob\b.*hello (\x1b\[[0-9;]*m)+alice"
            assert any(re.search(mentioned, line) for line in styled), styled
            await tmux.type("alice", "ne")
            await tmux.press("alice", "Enter")
            await tmux.wait_line("bob", rf"{TIME} alice: half a line")
            await tmux.wait_line("alice", rf"{TIME} alice: half a line", prompt="alice>")

            # Private messages, both ways and both spellings.
            await tmux.type("bob", "s/alice/psst alice")
            await tmux.press("bob", "Enter")
            await tmux.wait_line("alice", rf"{TIME} \[bob -> you\] psst alice")
            await tmux.wait_line("bob", rf"{TIME} \[you -> alice\] psst alice")
            await tmux.type("alice", "/msg bob hi bob")
            await tmux.press("alice", "Enter")
            await tmux.wait_line("bob", rf"{TIME} \[alice -> you\] hi bob")
            await tmux.wait_line("alice", rf"{TIME} \[you -> bob\] hi bob")

            # /who, then the same again with the up arrow.
            await tmux.type("alice", "/who")
            await tmux.press("alice", "Enter")
            online = r"Online \(2\): alice, bob"
            await tmux.wait_line("alice", online)
            await tmux.press("alice", "Up")
            await tmux.wait("alice", lambda ls: ls[-1] == "alice> /who", "the recalled line")
            await tmux.press("alice", "Enter")
            await tmux.wait(
                "alice",
                lambda ls: sum(bool(re.fullmatch(online, line)) for line in ls) == 2,
                "a second /who answer",
            )

            # Someone tries to clear alice's screen: she sees the attempt, not an empty screen.
            async with trio_chat.connect("127.0.0.1", port, "carol", PASSWORD) as carol:
                await carol.say("\x1b[2J\x1b[Hwiped?")
            lines = await tmux.wait_line("alice", rf"{TIME} carol: \\x1b\[2J\\x1b\[Hwiped\?")
            assert "-- Earlier messages --" in lines, "\n".join(await tmux.screen("alice"))
            await tmux.wait_line("alice", rf"{TIME} \* carol left the room")

            await tmux.type("alice", "/history 2")
            await tmux.press("alice", "Enter")
            expected = [
                "-- The last 2 messages --",
                rf"{TIME} \[you -> bob\] hi bob",
                rf"{TIME} carol: .*wiped\?",
                "alice>",
            ]
            await tmux.wait(
                "alice",
                lambda ls: all(map(re.fullmatch, expected, ls[-4:])) and len(ls) >= 4,
                "the last 2 messages",
            )

            # Exit leaves; the others see it; Ctrl-D leaves too.
            await tmux.type("bob", "Exit")
            await tmux.press("bob", "Enter")
            assert await tmux.exit_status("bob") == 0
            await tmux.wait_line("alice", rf"{TIME} \* bob left the room")
            await tmux.press("alice", "C-d")
            assert await tmux.exit_status("alice") == 0


async def test_a_line_arriving_while_hindi_is_typed_is_printed_above_the_prompt(
    tmp_path: Path,
) -> None:
    """Spacing vowel signs (ा, ी) are 0 columns wide by the width tables and 1 on screen:
    prompt_toolkit, counting them 0, erased the typed line short and printed bob's line
    after it, on the prompt's row."""
    with trio.fail_after(60):
        async with room(tmp_path) as (port, tmux):
            await alice_and_bob_in_the_room(tmux, port)
            typed = "आपका नाम क्या है, मेरी बात सुनी"
            await tmux.type("alice", typed)
            await tmux.wait("alice", lambda lines: lines[-1] == f"alice> {typed}", "the line")
            await tmux.type("bob", "hello from bob")
            await tmux.press("bob", "Enter")
            await tmux.wait_line("alice", rf"{TIME} bob: hello from bob", prompt=f"alice> {typed}")


async def test_lines_pasted_at_once_are_handled_one_by_one(tmp_path: Path) -> None:
    """A terminal hands over a paste of several lines at once, bracketed; the line being
    typed then holds them all, and Enter hands each on as if typed one by one (commands
    included), not as one message whose line breaks everyone would see as `\\n`."""
    with trio.fail_after(90):
        async with room(tmp_path) as (port, tmux):
            await alice_and_bob_in_the_room(tmux, port)
            await tmux.paste("alice", "first pasted line\nsecond pasted line\n/who\n")
            await tmux.wait("alice", lambda ls: "second pasted line" in ls, "the paste in the line")
            await tmux.press("alice", "Enter")
            await tmux.wait_line("alice", r"Online \(2\): alice, bob", prompt="alice>")
            for text in ("first pasted line", "second pasted line"):
                await tmux.wait_line("bob", rf"{TIME} alice: {text}")
                await tmux.wait_line("alice", rf"{TIME} alice: {text}")
            assert not any("\\n" in line for line in await tmux.screen("bob"))


async def test_a_line_refused_before_it_is_sent_comes_back_to_the_prompt(
    tmp_path: Path,
) -> None:
    """A message one byte too long, or a command mistyped, is refused at once: the line
    was gone with it, to be typed again whole. It comes back to the prompt, to be mended."""
    with trio.fail_after(90):
        async with room(tmp_path) as (port, tmux):
            await alice_and_bob_in_the_room(tmux, port)
            long = "word " * 100 + "!"  # 501 bytes, one over
            await tmux.type("alice", long)
            await tmux.press("alice", "Enter")
            await tmux.wait(
                "alice",
                # The prompt's rows, each as wide as the pane, make up the line given back.
                lambda lines: (
                    any(line.startswith("Not sent: A message can hold") for line in lines)
                    and "".join(lines).endswith(f"(this one has 501).alice> {long}")
                ),
                "the refusal, then the line at the prompt",
            )
            await tmux.press("alice", "BSpace", "Enter")
            await tmux.wait(  # 500 bytes, folded into rows
                "bob",
                lambda lines: len(re.findall(r"\bword\b", "\n".join(lines))) == 100,
                "alice's line, mended",
            )
            await tmux.wait("alice", lambda lines: lines[-1] == "alice>", "an empty prompt")
            await tmux.type("alice", "/histroy 5")
            await tmux.press("alice", "Enter")
            await tmux.wait_line("alice", r"Unknown command /histroy;.*", "alice> /histroy 5")
            await tmux.press("alice", "C-u")
            await tmux.type("alice", "/msg bob psst")
            await tmux.press("alice", "Enter")
            await tmux.wait_line("bob", rf"{TIME} \[alice -> you\] psst")
            # Of a paste, every line refused comes back, not the first alone.
            await tmux.paste("alice", "/whoo\nhello\n/histroy")
            await tmux.press("alice", "Enter")
            await tmux.wait_line("bob", rf"{TIME} alice: hello")
            await tmux.wait(
                "alice",
                lambda lines: lines[-2:] == ["alice> /whoo", "/histroy"],
                "both refused lines at the prompt",
            )
            # Told there and then, refused lines are no failure of the session's: leaving
            # is status 0 (a script's first refusal is its status).
            await tmux.press("alice", "C-u", "BSpace", "C-u")
            await tmux.wait("alice", lambda lines: lines[-1] == "alice>", "an empty prompt")
            await tmux.press("alice", "C-d")
            assert await tmux.exit_status("alice") == 0


async def test_tab_completes_names_and_commands(tmp_path: Path) -> None:
    """Tab completes the name a private message goes to (from those met in the room), a
    command's word, and lists the choices above the prompt where several fit."""
    with trio.fail_after(90):
        async with room(tmp_path) as (port, tmux):
            await alice_and_bob_in_the_room(tmux, port)
            await tmux.type("alice", "s/b")
            await tmux.press("alice", "Tab")
            await tmux.wait("alice", lambda lines: lines[-1] == "alice> s/bob/", "the name")
            await tmux.type("alice", "psst")
            await tmux.press("alice", "Enter")
            await tmux.wait_line("bob", rf"{TIME} \[alice -> you\] psst")
            # The cursor before the slash that follows: not put in twice (`/again`).
            await tmux.type("alice", "s/b/again")
            await tmux.press("alice", *["Left"] * 6, "Tab", "End", "Enter")
            await tmux.wait_line("bob", rf"{TIME} \[alice -> you\] again")
            await tmux.type("alice", "/h")
            await tmux.press("alice", "Tab")
            await tmux.wait_line("alice", r"/help  /history", prompt="alice> /h")
            await tmux.type("alice", "i")
            await tmux.press("alice", "Tab")
            await tmux.wait("alice", lambda lines: lines[-1] == "alice> /history", "the command")
            await tmux.type("alice", "1")
            await tmux.press("alice", "Enter")
            await tmux.wait_line("alice", r"-- The last message --", prompt="alice>")


async def test_ctrl_z_puts_nothing_into_the_line(tmp_path: Path) -> None:
    """Ctrl-Z, pressed out of habit, neither stops the room unseen (its session would
    stay, silent) nor sends everyone a `\x1a`."""
    with trio.fail_after(90):
        async with room(tmp_path) as (port, tmux):
            await alice_and_bob_in_the_room(tmux, port)
            await tmux.type("alice", "before")
            await tmux.press("alice", "C-z")
            await tmux.type("alice", "after")
            await tmux.press("alice", "Enter")
            await tmux.wait_line("bob", rf"{TIME} alice: beforeafter")


def colours(lines: list[str]) -> set[str]:
    """The foreground and background colours set in styled lines (not their resets)."""
    found = set()
    for line in lines:
        for params in re.findall(r"\x1b\[([0-9;]*)m", line):
            found |= {p for p in params.split(";") if p and p not in ("39", "49") and int(p) >= 30}
    return found


async def test_no_color_leaves_the_colours_out(tmp_path: Path) -> None:
    """With NO_COLOR set (https://no-color.org), names and notices come without colours,
    in the room as in `login`; without it, each name has its colour."""
    with trio.fail_after(90):
        async with room(tmp_path) as (port, tmux):
            await alice_and_bob_in_the_room(tmux, port, alice_env={"NO_COLOR": "1"})
            await tmux.type("bob", "in colour?")
            await tmux.press("bob", "Enter")
            await tmux.wait_line("alice", rf"{TIME} bob: in colour\?", prompt="alice>")
            await tmux.wait_line("bob", rf"{TIME} bob: in colour\?", prompt="bob>")
            assert colours(await tmux.screen("bob", styles=True)), "bob's screen has no colours"
            assert colours(await tmux.screen("alice", styles=True)) == set()

            await tmux.start("carol", "login", "--name", "bob", env={"NO_COLOR": "1"})
            await answer(tmux, "carol", "Password:", PASSWORD)
            assert await tmux.exit_status("carol") == 0
            lines = await tmux.screen("carol", styles=True)
            assert any("Online (2)" in line for line in lines), lines
            assert colours(lines) == set()


async def answer(tmux: Tmux, pane: str, question: str, reply: str) -> None:
    """Wait until the last line asks `question`, then type `reply` and Enter (once the
    terminal echoes nothing, for a password)."""
    await tmux.wait(pane, lambda lines: lines[-1] == question, repr(question))
    if "assword" in question:
        await tmux.echo_off(pane)
    await tmux.type(pane, reply)
    await tmux.press(pane, "Enter")


async def test_a_dumb_terminal_gets_plain_lines_and_not_one_escape_code(tmp_path: Path) -> None:
    """TERM=dumb (Emacs' shell, some consoles) can neither move the cursor nor show
    colours: a prompt redrawn under each new line would come out as escape codes. The
    room comes as plain lines, and what is typed is said."""
    written, shown = tmp_path / "alice.out", tmp_path / "login.out"
    with trio.fail_after(90):
        async with room(tmp_path) as (port, tmux):
            for name in ("alice", "bob"):
                await trio_chat.register("127.0.0.1", port, name, PASSWORD)
            await tmux.start("alice", "chat", "--name", "alice", env={"TERM": "dumb"})
            # Everything the program writes from now on, as bytes, whatever tmux shows.
            await tmux.run("pipe-pane", "-O", "-t", "alice", f"cat > {shlex.quote(str(written))}")
            await answer(tmux, "alice", "Password:", PASSWORD)
            await tmux.wait_line("alice", r"-- You are in the room as alice; .*")
            async with trio_chat.connect("127.0.0.1", port, "bob", PASSWORD) as bob:
                await bob.say("hello, plain terminal")
                await tmux.wait_line("alice", rf"{TIME} bob: hello, plain terminal")
                await tmux.type("alice", "and hello to you")
                await tmux.press("alice", "Enter")
                async for event in bob.events():
                    if isinstance(event, trio_chat.PublicMessage) and event.sender == "alice":
                        assert event.text == "and hello to you"
                        break
            await tmux.type("alice", "Exit")
            await tmux.press("alice", "Enter")
            assert await tmux.exit_status("alice") == 0
            # `login` shows who is online, plain too.
            await tmux.start("carol", "login", "--name", "bob", env={"TERM": "dumb"})
            await tmux.run("pipe-pane", "-O", "-t", "carol", f"cat > {shlex.quote(str(shown))}")
            await answer(tmux, "carol", "Password:", PASSWORD)
            assert await tmux.exit_status("carol") == 0
    output = written.read_bytes()
    assert b"bob: hello, plain terminal" in output
    assert b"\x1b" not in output
    assert b"Online (" in shown.read_bytes()
    assert b"\x1b" not in shown.read_bytes()


async def test_an_unknown_name_is_offered_an_account_and_ctrl_c_leaves(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with room(tmp_path) as (_port, tmux):
            await tmux.start("dave", "chat")
            await answer(tmux, "dave", "Name:", "dave")
            await answer(tmux, "dave", "Password:", PASSWORD)
            offer = "There is no account named 'dave'. Create it? [y/N]:"
            await answer(tmux, "dave", offer, "y")
            await answer(tmux, "dave", "Repeat the password:", PASSWORD)
            lines = await tmux.wait(
                "dave", lambda lines: prompt_line(lines) == "dave>", "the prompt in the room"
            )
            assert "Registered dave." in lines
            assert not any(PASSWORD in line for line in lines)
            await tmux.type("dave", "a line never sent")
            await tmux.press("dave", "C-c")
            assert await tmux.exit_status("dave") == 0

            # Declining the offer changes nothing and says so.
            await tmux.start("erin", "chat", "--name", "erin")
            await answer(tmux, "erin", "Password:", PASSWORD)
            await answer(tmux, "erin", "There is no account named 'erin'. Create it? [y/N]:", "n")
            assert await tmux.exit_status("erin") == ExitCode.UNKNOWN_USER
            await tmux.wait_line("erin", "No account named 'erin'; nothing was changed.")


async def test_prompts_ask_again_and_ctrl_c_at_a_prompt_leaves_quietly(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with room(tmp_path) as (port, tmux):
            await trio_chat.register("127.0.0.1", port, "fay", PASSWORD)
            # A wrong password is asked again, up to three times.
            await tmux.start("fay", "chat", "--name", "fay")
            await answer(tmux, "fay", "Password:", "not the password")
            await tmux.wait_line("fay", "Wrong password for 'fay'; try again.")
            await answer(tmux, "fay", "Password:", PASSWORD)
            await tmux.wait("fay", lambda ls: ls[-1] == "fay>", "the room")
            await tmux.press("fay", "C-d")
            assert await tmux.exit_status("fay") == 0

            await tmux.start("gus", "login", "--name", "fay")
            for attempt in range(3):
                await answer(tmux, "gus", "Password:", "still wrong!")
                if attempt < 2:  # each wrong one is said, then asked again
                    await tmux.wait("gus", refusals(attempt + 1), "the refusal")
            assert await tmux.exit_status("gus") == ExitCode.WRONG_PASSWORD
            lines = await tmux.screen("gus")
            assert sum("try again" in line for line in lines) == 2
            assert last_words(lines) == "Wrong password for 'fay'."

            # A taken name is asked again when registering.
            await tmux.start("hal", "register", "--name", "FAY")
            await answer(tmux, "hal", "Password:", PASSWORD)
            await answer(tmux, "hal", "Repeat the password:", PASSWORD)
            # ... and one too like an account's name is told whose (`fay` with an f with
            # a hook, U+0192, is not taken as such).
            await answer(tmux, "hal", "Name:", "ƒay")
            await tmux.wait_line(
                "hal", "The name 'ƒay' could be mistaken for 'fay'; choose another."
            )
            await answer(tmux, "hal", "Name:", "hal")
            assert await tmux.exit_status("hal") == 0
            lines = await tmux.screen("hal")
            assert "The name 'FAY' is taken; choose another." in lines
            assert any(line.startswith("Registered hal at") for line in lines)

            # Two passwords that differ are asked for again, three times at most.
            await tmux.start("kim", "register", "--name", "kim")
            for _attempt in range(3):
                await answer(tmux, "kim", "Password:", PASSWORD)
                await answer(tmux, "kim", "Repeat the password:", "another password")
            assert await tmux.exit_status("kim") == ExitCode.INVALID_PASSWORD
            lines = await tmux.screen("kim")
            assert lines.count("The two passwords do not match; type them again.") == 2
            assert last_words(lines) == (
                "The two passwords did not match 3 times; run the command again."
            )

            # Ctrl-C at a prompt: a new line and status 130, no "Aborted".
            await tmux.start("ivy", "login", "--name", "ivy")
            await tmux.wait("ivy", lambda ls: ls[-1].startswith("Password:"), "the prompt")
            await tmux.press("ivy", "C-c")
            assert await tmux.exit_status("ivy") == ExitCode.INTERRUPTED
            # Nothing but the prompt and the end: no "Aborted", no traceback.
            assert quiet_end(await tmux.screen("ivy"), "Password:")
            await tmux.start("jay", "register")
            await tmux.wait("jay", lambda ls: ls[-1].startswith("Name:"), "the prompt")
            await tmux.press("jay", "C-c")
            assert await tmux.exit_status("jay") == ExitCode.INTERRUPTED
            assert quiet_end(await tmux.screen("jay"), "Name:")


async def test_what_is_typed_while_reconnecting_waits_visibly_and_nobody_joins_twice(
    tmp_path: Path,
) -> None:
    config = tmux_config(tmp_path)
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, tmp_path / "chat.db")
            _host, port = await daemon.start()
            # A killed daemon that stays down is noticed at the next keepalive: pinging
            # every 2 s (not the 60 s a direct path is allowed) shows it within seconds.
            env = cli_env(port, TRIO_CHAT_KEEPALIVE="2")
            tmux = Tmux(f"trio-chat-outage-{os.getpid()}", config, env)
            try:
                await alice_and_bob_in_the_room(tmux, port)

                await daemon.kill()
                await tmux.wait("alice", lambda ls: ls[-1] == "alice (reconnecting)>", "the outage")
                await tmux.type("alice", "typed while away")
                await tmux.press("alice", "Enter")
                waiting = r"\[waiting\] alice: typed while away \(goes out once connected\)"
                await tmux.wait_line("alice", waiting)
                await tmux.wait(
                    "alice", lambda ls: ls[-1] == "alice (reconnecting, 1 waiting)>", "the count"
                )

                await daemon.start(port)
                sent = rf"{TIME} alice: typed while away \(sent; it was waiting\)"
                lines = await tmux.wait_line("alice", sent, prompt="alice>")
                await tmux.wait_line("bob", rf"{TIME} alice: typed while away")
                await tmux.type("alice", "/who")
                await tmux.press("alice", "Enter")
                await tmux.wait_line("alice", r"Online \(2\): alice, bob")
                lines = await tmux.screen("alice")
                # Bob was there before the outage: his return is not news.
                assert sum("bob joined the room" in line for line in lines) == 1, lines
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(10):
                    await tmux.kill()
                nursery.cancel_scope.cancel()


@pytest.mark.parametrize("key", ["C-d", "C-c"])
async def test_leaving_waits_for_what_was_sent_until_ctrl_c(tmp_path: Path, key: str) -> None:
    """Leaving waits for the daemon's answers, and says so: a daemon back meanwhile takes
    what was typed (leaving used to give up after 5 s and exit 0, the message lost);
    Ctrl-C stops the wait, what went unacknowledged is told, and the status is 130."""
    with trio.fail_after(90):
        async with daemon_process(tmp_path, "leave") as (daemon, port, tmux):
            told = r"Leaving once the daemon acknowledges 1 message \(Ctrl-C: leave now\)\."
            with_password = {"TRIO_CHAT_PASSWORD": PASSWORD}
            await trio_chat.register("127.0.0.1", port, "alice", PASSWORD)
            await enter(tmux, "alice")
            await daemon.kill()
            await tmux.type("alice", "kept for later")
            await tmux.press("alice", "Enter")
            await tmux.press("alice", key)
            await tmux.wait_line("alice", told)
            await daemon.start(port)
            assert await tmux.exit_status("alice") == 0
            async with trio_chat.connect("127.0.0.1", port, "alice", PASSWORD) as alice:
                assert [m.text for m in await alice.history(5)] == ["kept for later"]

            await tmux.start("again", "chat", "--name", "alice", env=with_password)
            await tmux.wait("again", lambda ls: ls[-1] == "alice>", "the room again")
            await daemon.kill()
            await tmux.type("again", "into the void")
            await tmux.press("again", "Enter")
            await tmux.press("again", key)
            await tmux.wait_line("again", told)
            await tmux.signals_on("again")
            await tmux.press("again", "C-c")  # do not wait
            assert await tmux.exit_status("again") == 130
            # Out of the prompt, the terminal itself echoes the key as ^C.
            assert last_words(await tmux.screen("again")).removeprefix("^C") == (
                "Left with 1 message the daemon has not acknowledged; "
                "it may not have been delivered."
            )


@asynccontextmanager
async def alice_in_when_the_daemon_stops(tmp_path: Path, label: str) -> AsyncIterator[Tmux]:
    """Alice in the room in a terminal, then the daemon stopped (SIGSTOP: not gone, so no
    "port unreachable" ends a wait), and let go again at the end; 60 s in all."""
    with trio.fail_after(60):
        async with daemon_process(tmp_path, label) as (daemon, port, tmux):
            process = daemon.process
            assert process is not None
            try:
                await trio_chat.register("127.0.0.1", port, "alice", PASSWORD)
                await enter(tmux, "alice")
                process.send_signal(signal.SIGSTOP)
                yield tmux
            finally:
                process.send_signal(signal.SIGCONT)


async def test_ctrl_c_while_the_logout_waits_leaves_at_once(tmp_path: Path) -> None:
    """Everything sent was acknowledged, and the person leaves; the daemon has stopped
    answering (stopped, not gone: no "port unreachable" ends the wait), so the logout
    waits for its answer. Ctrl-C leaves at once, with status 0: nothing was lost. It
    used to end that wait only to wait for a logout again, twice the client's timeout."""
    async with alice_in_when_the_daemon_stops(tmp_path, "hurry") as tmux:
        await tmux.press("alice", "C-d")
        await tmux.wait(
            "alice", lambda lines: not prompt_line(lines).startswith("alice>"), "leaving"
        )
        client = await tmux.program("alice")
        await tmux.signals_on("alice")
        await tmux.press("alice", "C-c")
        with trio.fail_after(4):  # the client's timeout is 5 s a wait
            await ended(client)
        # Out of the prompt, the terminal itself echoes the key as ^C.
        await tmux.wait_line("alice", r"\^C\[exit status 0\]")


async def test_sigterm_leaves_at_once_and_tells_what_went_unacknowledged(tmp_path: Path) -> None:
    """`kill`, or a shutdown, sends SIGTERM, with nobody there to press Ctrl-C: the client
    does not wait for a daemon that stopped answering, as leaving with Ctrl-D does. What
    went unacknowledged is told, and the status is 130."""
    async with alice_in_when_the_daemon_stops(tmp_path, "term") as tmux:
        await tmux.type("alice", "never acknowledged")
        await tmux.wait("alice", lambda ls: ls[-1].endswith("acknowledged"), "the line")
        await tmux.press("alice", "Enter")
        await tmux.wait("alice", lambda ls: ls[-1] == "alice>", "the line taken")
        client = await tmux.program("alice")
        os.kill(client, signal.SIGTERM)
        with trio.fail_after(10):  # not waiting for the daemon, as Ctrl-D would
            await ended(client)
        assert await tmux.exit_status("alice") == ExitCode.INTERRUPTED
        assert last_words(await tmux.screen("alice")) == (
            "Left with 1 message the daemon has not acknowledged; it may not have been delivered."
        )


def test_someone_who_left_during_an_outage_and_came_back_is_news() -> None:
    """The joins of those who were here before an outage are not news as everyone comes
    back; but someone seen leaving meanwhile who then comes in again is."""
    returns = Returns()
    returns.lost(["alice", "Bob", "carol"])
    returns.back(100.0)
    assert not returns.is_news("BOB", 101.0)  # back with everyone
    returns.left("carol")
    assert returns.is_news("carol", 102.0)  # gone, then here again
    assert returns.is_news("dave", 102.0)  # new
    assert returns.is_news("alice", 100.0 + RETURN_WINDOW)  # long after the outage
    assert returns.is_news("bob", 103.0)  # a second join is not a return


def test_a_return_a_who_told_of_before_its_join_came_is_not_news_either() -> None:
    """The answer to the `who` asked on coming back and bob's join can come in one
    datagram, and the answer be read first: his join is still a return."""
    returns = Returns()
    returns.lost(["alice", "bob", "carol"])
    returns.back(100.0)
    returns.here(["alice", "bob"])
    assert returns.away("alice")  # carol is not back
    assert not returns.is_news("bob", 100.1)
    returns.here(["carol"])
    assert not returns.away("alice")
    assert not returns.is_news("carol", 100.2)
    assert returns.is_news("bob", 100.3)  # a second join is not a return


def test_ctrl_z_stops_nothing_in_a_dumb_terminal_either() -> None:
    """There the terminal, not the prompt, reads the keys: Ctrl-Z is its SIGTSTP, which a
    shell with job control would act on, leaving the session in the room, unread. (tmux's
    panes run without job control, so this is checked on the signal itself.)"""
    before = signal.getsignal(signal.SIGTSTP)
    with LineTerminal().raw_mode():
        assert signal.getsignal(signal.SIGTSTP) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTSTP) == before


async def test_a_dumb_terminal_refuses_a_line_that_is_not_utf8_as_a_pipe_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A terminal set to another encoding sends bytes that are not UTF-8: not said with
    replacement characters nobody typed, but refused, and the next line read."""
    read, write = os.pipe()
    try:
        os.write(write, b"caf\xe9 in latin-1\nthen in UTF-8: caf\xc3\xa9\n")
        os.close(write)
        terminal = LineTerminal(read)
        with trio.fail_after(10):
            assert await terminal.read() == "then in UTF-8: café"
            assert await terminal.read() is None  # the end of input
    finally:
        os.close(read)
    assert capsys.readouterr().out == "Not sent: the line is not UTF-8 text.\n"


PROMPT = re.compile(rb"alice(\x1b\[[0-9;]*m)*>")
"""alice's prompt, drawn (in bold, its escape codes between the name and `>`)."""


def _read_until(master: int, marker: re.Pattern[bytes], timeout: float) -> bytes:
    seen = b""
    end = time.monotonic() + timeout
    while not marker.search(seen) and time.monotonic() < end:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            seen += os.read(master, 65536)
    return seen


def test_closing_the_terminal_is_leaving_not_a_failure(tmp_path: Path) -> None:
    """The terminal window closed under `chat` (the kernel hangs it up: its reads and
    writes fail, and SIGHUP comes): it leaves as at SIGHUP, not with "Network error"."""
    with daemon_in_thread(tmp_path / "chat.db") as daemon:
        trio.run(trio_chat.register, daemon.host, daemon.port, "alice", PASSWORD)
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        env = cli_env(daemon.port, TRIO_CHAT_PASSWORD=PASSWORD, TERM="xterm")
        process = subprocess.Popen(
            [*CLI, "chat", "--name", "alice", "--server-key", daemon.key],
            stdin=slave,
            stdout=slave,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own session, the pty its controlling terminal
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        try:
            assert PROMPT.search(_read_until(master, PROMPT, 30))
            os.close(master)  # the terminal window is closed
            status = process.wait(30)
            assert process.stderr is not None
            said = process.stderr.read().decode()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert status in (ExitCode.OK, ExitCode.INTERRUPTED), (status, said)
    assert "error" not in said.lower(), said
