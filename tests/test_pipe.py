"""`trio-chat chat` driven through a real pipe, as a script or a cron job would use it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest
import trio

import trio_chat
from tests.cli_support import PASSWORD, TEST_CONFIG, Relay, ignore_hangups
from trio_chat import wire
from trio_chat.cli import ExitCode
from trio_chat.client import ChatClient
from trio_chat.commands import HELP
from trio_chat.engine import ServerConfig
from trio_chat.errors import ConnectionLost
from trio_chat.event_buffer import EventBuffer
from trio_chat.events import Event, Joined, Left, PrivateMessage, PublicMessage
from trio_chat.server import serve
from trio_chat.terminal import PIPE_AHEAD, run_pipe
from trio_chat.testing.daemon import CLI, DaemonProcess, cli_env

from .test_operator_accounts import operator

TIME = r"\[\d\d:\d\d:\d\d\]"

ABANDONED: list[int] = []
"""Read ends of pipes whose read a script abandoned (input still open as it ended): the
worker thread it left may call `os.read` late, and would take what a later test writes
to its own pipe were the number given out again. Closed once every test here has run."""


@pytest.fixture(scope="module", autouse=True)
def _close_abandoned_reads() -> Iterator[None]:
    yield
    while ABANDONED:
        os.close(ABANDONED.pop())


async def start_daemon(
    nursery: trio.Nursery, database: Path, config: ServerConfig = TEST_CONFIG
) -> int:
    address = await nursery.start(serve, "127.0.0.1", 0, database, config)
    port: int = address[1]
    return port


async def accounts(port: int, *names: str) -> None:
    for name in names:
        await trio_chat.register("127.0.0.1", port, name, PASSWORD)


async def pipe(port: int, name: str, text: str | bytes) -> subprocess.CompletedProcess[bytes]:
    """Run `trio-chat chat --name NAME` with `text` on a pipe as its input."""
    return await trio.run_process(
        [*CLI, "chat", "--name", name],
        stdin=text if isinstance(text, bytes) else text.encode(),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=cli_env(port, TRIO_CHAT_PASSWORD=PASSWORD),
    )


async def alice_alone_runs(tmp_path: Path, script: str) -> subprocess.CompletedProcess[bytes]:
    """`script` piped into alice's `chat`, on a daemon of her own."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await start_daemon(nursery, tmp_path / "chat.db")
            await accounts(port, "alice")
            done = await pipe(port, "alice", script)
            nursery.cancel_scope.cancel()
    return done


def lines_of(output: bytes) -> list[str]:
    return output.decode().splitlines()


def assert_lines_match(lines: list[str], patterns: list[str]) -> None:
    """Each line matches its pattern, whole, and there are no more lines than patterns."""
    assert len(lines) == len(patterns), lines
    for line, pattern in zip(lines, patterns, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)


async def test_each_line_is_handled_as_if_typed(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await start_daemon(nursery, tmp_path / "chat.db")
            await accounts(port, "alice", "bob")
            async with trio_chat.connect("127.0.0.1", port, "bob", PASSWORD) as bob:
                await bob.say("\x1b[2Jearlier, from bob")
                script = "/history 1\nhello from a script\ns/bob/psst\n/msg bob second\n/who\n"
                done = await pipe(port, "alice", script)
                heard: list[Event] = []
                async for event in bob.events():
                    if isinstance(event, PublicMessage | PrivateMessage):
                        heard.append(event)
                    if len(heard) == 3:
                        break
            nursery.cancel_scope.cancel()
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    out = lines_of(done.stdout)
    patterns = [
        rf"{TIME} bob: \\x1b\[2Jearlier, from bob",  # the history on entering, made safe
        r"-- The last message --",
        rf"{TIME} bob: \\x1b\[2Jearlier, from bob",
        rf"{TIME} alice: hello from a script",  # each message once the daemon stored it
        rf"{TIME} \[you -> bob\] psst",
        rf"{TIME} \[you -> bob\] second",
        r"Online \(2\): alice, bob",
    ]
    assert_lines_match(out, patterns)
    assert [(type(e).__name__, getattr(e, "text", "")) for e in heard] == [
        ("PublicMessage", "hello from a script"),
        ("PrivateMessage", "psst"),
        ("PrivateMessage", "second"),
    ]


async def test_history_and_help_come_after_the_lines_before_them(tmp_path: Path) -> None:
    """A script's lines are read at once: its `/history` still shows the messages it
    said before asking, and not those after, and its `/help` comes where it was typed."""
    script = "first\nsecond\n/history 2\nthird\n/help\nfourth\n"
    done = await alice_alone_runs(tmp_path, script)
    assert done.returncode == 0, done.stderr
    out = lines_of(done.stdout)
    patterns = [
        rf"{TIME} alice: first",
        rf"{TIME} alice: second",
        r"-- The last 2 messages --",
        rf"{TIME} alice: first",
        rf"{TIME} alice: second",
        rf"{TIME} alice: third",
        *(re.escape(line) for line in HELP.splitlines()),
        rf"{TIME} alice: fourth",
    ]
    assert_lines_match(out, patterns)


@pytest.mark.parametrize(
    ("script", "patterns"),
    [
        pytest.param(  # `/history` shows 100 at most: `/older` goes on back to the first
            "".join(f"m{n}\n" for n in range(1, 6)) + "/history 2\n/older 2\n/older\n/older\n",
            [
                *(rf"{TIME} alice: m{n}" for n in range(1, 6)),
                r"-- The last 2 messages --",
                rf"{TIME} alice: m4",
                rf"{TIME} alice: m5",
                r"-- 2 older messages --",
                rf"{TIME} alice: m2",
                rf"{TIME} alice: m3",
                r"-- 1 older message --",
                rf"{TIME} alice: m1",
                r"-- No older messages --",
            ],
            id="after-history",
        ),
        pytest.param(  # before any page: from the oldest shown, never newer ones as older
            "/older\nm1\nm2\n/older 1\n",
            [
                r"-- No older messages --",
                rf"{TIME} alice: m1",
                rf"{TIME} alice: m2",
                r"-- No older messages --",
            ],
            id="before-any-page",
        ),
    ],
)
async def test_older_pages_back_from_the_oldest_shown(
    tmp_path: Path, script: str, patterns: list[str]
) -> None:
    done = await alice_alone_runs(tmp_path, script)
    assert done.returncode == 0, done.stderr
    assert_lines_match(lines_of(done.stdout), patterns)


async def test_end_of_input_waits_until_everything_is_acknowledged(tmp_path: Path) -> None:
    # All input arrives at once, so at its end nearly every message is still on its way;
    # each line on stdout is printed only once the daemon has acknowledged that message.
    config = ServerConfig(register_burst=100, message_burst=100)
    count = 60
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await start_daemon(nursery, tmp_path / "chat.db", config)
            await accounts(port, "alice", "bob")
            done = await pipe(port, "alice", "".join(f"message {n}\n" for n in range(count)))
            async with trio_chat.connect("127.0.0.1", port, "bob", PASSWORD) as bob:
                stored = await bob.history(100)
            nursery.cancel_scope.cancel()
    assert done.returncode == 0, done.stderr
    out = lines_of(done.stdout)
    assert len(out) == count
    for n, line in enumerate(out):
        assert re.fullmatch(rf"{TIME} alice: message {n}", line), line
    assert [m.text for m in stored] == [f"message {n}" for n in range(count)]


async def test_refused_lines_are_reported_by_number_and_set_the_exit_code(
    tmp_path: Path,
) -> None:
    script = "s/nobody/hi\n" + "x" * 600 + "\n/frobnicate\nstill sent\n"
    done = await alice_alone_runs(tmp_path, script)
    assert done.returncode == ExitCode.UNKNOWN_USER  # the first refused line decides
    assert re.fullmatch(rf"{TIME} alice: still sent", done.stdout.decode().strip())
    assert done.stderr.decode().splitlines() == [
        "line 1: Not sent to nobody ('hi'): There is no account named 'nobody'.",
        "line 2: Not sent: A message can hold at most 500 bytes of UTF-8 text, a quote, "
        "backslash or tab counting 2 (this one has 600).",
        "line 3: Unknown command /frobnicate; /help lists the commands, //text says /text.",
        "Some lines were not sent (see above).",
    ]


async def test_quit_ends_the_input_early(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await start_daemon(nursery, tmp_path / "chat.db")
            await accounts(port, "alice", "bob")
            done = await pipe(port, "alice", "first\nExit\nnever sent\n")
            async with trio_chat.connect("127.0.0.1", port, "bob", PASSWORD) as bob:
                stored = [message.text for message in await bob.history(10)]
            nursery.cancel_scope.cancel()
    assert done.returncode == 0
    assert re.fullmatch(rf"{TIME} alice: first", done.stdout.decode().strip())
    assert stored == ["first"]


async def test_a_line_that_is_not_utf8_is_refused_not_altered(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await start_daemon(nursery, tmp_path / "chat.db")
            await accounts(port, "alice", "bob")
            done = await pipe(port, "alice", b"caf\xe9 au lait\nstill sent\n")
            async with trio_chat.connect("127.0.0.1", port, "bob", PASSWORD) as bob:
                stored = [message.text for message in await bob.history(10)]
            nursery.cancel_scope.cancel()
    assert stored == ["still sent"]
    assert done.returncode == ExitCode.REJECTED
    assert done.stderr.decode().splitlines() == [
        "line 1: Not sent: the line is not UTF-8 text.",
        "Some lines were not sent (see above).",
    ]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
async def test_a_signal_leaves_the_room_and_exits_130(
    tmp_path: Path, signum: signal.Signals
) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await start_daemon(nursery, tmp_path / "chat.db")
            await accounts(port, "alice", "bob")
            async with trio_chat.connect("127.0.0.1", port, "bob", PASSWORD) as bob:
                process = await trio.lowlevel.open_process(
                    [*CLI, "chat", "--name", "alice"],
                    stdin=subprocess.PIPE,  # left open: the script is still running
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    env=cli_env(port, TRIO_CHAT_PASSWORD=PASSWORD),
                )
                try:
                    async for event in bob.events():
                        if isinstance(event, Joined) and event.name == "alice":
                            break
                    process.send_signal(signum)
                    assert await process.wait() == ExitCode.INTERRUPTED
                    # Gone from the room at once, not when the daemon notices the silence.
                    async for event in bob.events():
                        if isinstance(event, Left) and event.name == "alice":
                            assert event.reason == "quit"
                            break
                finally:
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
                assert process.stderr is not None
                error = b"".join([chunk async for chunk in process.stderr])
            nursery.cancel_scope.cancel()
    assert error.decode() == "Interrupted.\n"


async def test_a_script_under_nohup_goes_on_when_its_terminal_closes(tmp_path: Path) -> None:
    """`nohup trio-chat chat < script &` ignores SIGHUP: the script is not stopped by it."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await start_daemon(nursery, tmp_path / "chat.db")
            await accounts(port, "alice", "bob")
            async with trio_chat.connect("127.0.0.1", port, "bob", PASSWORD) as bob:
                process = await trio.lowlevel.open_process(
                    [*CLI, "chat", "--name", "alice"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    env=cli_env(port, TRIO_CHAT_PASSWORD=PASSWORD),
                    preexec_fn=ignore_hangups,
                )
                try:
                    async for event in bob.events():
                        if isinstance(event, Joined) and event.name == "alice":
                            break
                    process.send_signal(signal.SIGHUP)  # the terminal closed
                    assert process.stdin is not None
                    await process.stdin.send_all(b"still here\n")
                    await process.stdin.aclose()
                    assert await process.wait() == 0
                finally:
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
                said = [m.text for m in await bob.history(5) if isinstance(m, PublicMessage)]
            nursery.cancel_scope.cancel()
    assert said == ["still here"]


async def test_a_long_message_alone_exits_with_its_own_code(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await start_daemon(nursery, tmp_path / "chat.db")
            await accounts(port, "alice")
            done = await pipe(port, "alice", "é" * 300 + "\n")
            nursery.cancel_scope.cancel()
    assert done.returncode == ExitCode.MESSAGE_REFUSED
    assert b"at most 500 bytes" in done.stderr


class Output:
    """The lines a running process printed, read as they come."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.lines: list[str] = []
        self._partial = b""

    async def until(self, pattern: str, start: int = 0) -> str:
        """Read until a line from the `start`th on matches `pattern` (searched); return
        that line."""
        seen = start
        while True:
            for line in self.lines[seen:]:
                if re.search(pattern, line):
                    return line
            seen = len(self.lines)
            chunk = await self.stream.receive_some()
            assert chunk, f"output ended before {pattern!r}: {self.lines}"
            *complete, self._partial = (self._partial + chunk).split(b"\n")
            self.lines.extend(line.decode() for line in complete)

    async def rest(self) -> list[str]:
        while chunk := await self.stream.receive_some():
            self._partial += chunk
        self.lines.extend(line.decode() for line in self._partial.split(b"\n") if line)
        return self.lines


async def test_a_script_gives_up_on_a_daemon_gone_for_good(tmp_path: Path) -> None:
    """A script whose daemon goes away and stays away ends (exit 10), saying which
    lines did not reach it, instead of waiting for good."""
    with trio.fail_after(60):
        async with trio.open_nursery() as daemon:
            port = await start_daemon(daemon, tmp_path / "chat.db")
            await accounts(port, "alice")
            process = await trio.lowlevel.open_process(
                [*CLI, "chat", "--name", "alice", "--give-up-after", "1"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=cli_env(port, TRIO_CHAT_PASSWORD=PASSWORD),
            )
            assert process.stdin and process.stdout and process.stderr
            output = Output(process.stdout)
            await process.stdin.send_all(b"before\n")
            await output.until(rf"^{TIME} alice: before$")
            daemon.cancel_scope.cancel()  # the daemon stops, and nothing takes its port
        await output.until(r"Lost the connection to trio-chat at 127\.0\.0\.1:\d+ .*trying again")
        await process.stdin.send_all(b"after\n/history 3\nagain\n/who\nlast\n")
        await process.stdin.aclose()
        await output.rest()
        errors = Output(process.stderr)
        complaints = await errors.rest()
        assert await process.wait() == ExitCode.CONNECTION_LOST
    gone = f"Lost the connection to 127.0.0.1:{port} for good: not back after 1 s."
    assert complaints == [  # every line after the daemon went, in order
        f"line 2: Not sent ('after'): {gone}",
        f"line 3: {gone}",
        f"line 4: Not sent ('again'): {gone}",
        f"line 5: {gone}",
        f"line 6: Not sent ('last'): {gone}",
        gone,
    ]


async def test_the_daemon_going_away_and_coming_back(tmp_path: Path) -> None:
    """The client says so, keeps trying, logs in again, shows what it missed, loses nothing."""
    database = tmp_path / "chat.db"
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            async with trio.open_nursery() as first_daemon:
                port = await start_daemon(first_daemon, database)
                await accounts(port, "alice", "bob")
                relay = Relay(("127.0.0.1", port))
                await nursery.start(relay.run)
                process = await trio.lowlevel.open_process(
                    [*CLI, "chat", "--name", "alice"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=cli_env(relay.port, TRIO_CHAT_PASSWORD=PASSWORD),
                )
                assert process.stdin is not None and process.stdout is not None
                output = Output(process.stdout)
                await process.stdin.send_all(b"before\n")
                await output.until(rf"^{TIME} alice: before$")
                first_daemon.cancel_scope.cancel()  # the daemon stops
            await output.until(
                r"Lost the connection to trio-chat at 127\.0\.0\.1:\d+ .*trying again"
            )

            relay.cut = True  # keep alice away until bob has said something
            await process.stdin.send_all(b"typed while away\n")
            second_port = await start_daemon(nursery, database)
            relay.target = ("127.0.0.1", second_port)
            async with trio_chat.connect("127.0.0.1", second_port, "bob", PASSWORD) as bob:
                await bob.say("missed one")
                relay.cut = False
                await output.until(r"Connected to 127\.0\.0\.1:\d+ again\.")
                await output.until(rf"^{TIME} alice: typed while away$")
                await process.stdin.aclose()
                lines = await output.rest()
                assert await process.wait() == 0
                stored = [m.text for m in await bob.history(100)]
            nursery.cancel_scope.cancel()
    assert stored == ["before", "missed one", "typed while away"]
    said = [line for line in lines if re.fullmatch(rf"{TIME} \w+: .*", line)]
    assert [line.split(" ", 1)[1] for line in said] == [
        "alice: before",
        "bob: missed one",
        "alice: typed while away",
    ]


async def test_register_and_login_read_a_piped_password_without_a_warning(
    tmp_path: Path,
) -> None:
    """Without a terminal, `register` and `login` take the password from their input's
    lines, and say nothing about echo: a pipe has none to turn off."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await start_daemon(nursery, tmp_path / "chat.db")
            env = cli_env(port)
            env.pop("TRIO_CHAT_PASSWORD", None)
            for command, typed in (
                ("register", f"{PASSWORD}\n{PASSWORD}\n"),
                ("login", f"{PASSWORD}\n"),
            ):
                done = await trio.run_process(
                    [*CLI, command, "--name", "carol"],
                    stdin=typed.encode(),
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                    env=env,
                )
                out, err = done.stdout.decode(), done.stderr.decode()
                assert done.returncode == 0, (out, err)
                assert "Warning" not in err and "getpass" not in err, err
                assert PASSWORD not in out
            assert "Logged in as carol" in out
            # The input ends before the password: as Ctrl-D at a prompt.
            done = await trio.run_process(
                [*CLI, "login", "--name", "carol"],
                stdin=b"",
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=env,
            )
            assert done.returncode == ExitCode.INTERRUPTED
            assert done.stderr.decode() == (
                "Password: \nThe input ended before a password; give it on a line of its own, "
                "in TRIO_CHAT_PASSWORD or with --password-file.\n"
            )
            nursery.cancel_scope.cancel()


async def test_a_private_message_that_comes_as_a_script_leaves_is_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bob's whisper reaches alice's script after its input ended, just before its logout
    leaves: the logout's datagram acknowledges it, so the daemon counts it delivered, and
    the script prints it (it used to stop printing before logging out, and the whisper
    was shown nowhere, not even at her next login)."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await start_daemon(nursery, tmp_path / "chat.db")
            await accounts(port, "alice", "bob")
            async with trio_chat.connect("127.0.0.1", port, "bob", PASSWORD) as bob:
                read, write = os.pipe()
                os.close(write)  # the script's input has ended
                async with trio_chat.connect("127.0.0.1", port, "alice", PASSWORD) as alice:
                    log_out = alice.logout

                    arrived = trio.Event()

                    def trace(frame: wire.ServerFrame) -> None:
                        if isinstance(frame, wire.Pm):
                            arrived.set()  # alice's client has it, acknowledged next

                    async def whispered_to_then_log_out() -> None:
                        alice.logout = log_out  # type: ignore[method-assign]
                        alice.connection.trace = trace
                        await bob.whisper("alice", "just in time")
                        await arrived.wait()
                        await log_out()

                    alice.logout = whispered_to_then_log_out  # type: ignore[method-assign]
                    outcome = await run_pipe(alice, read)
                os.close(read)
                async with trio_chat.connect("127.0.0.1", port, "alice", PASSWORD) as again:
                    login = await anext(aiter(again.events()))
            nursery.cancel_scope.cancel()
    assert outcome.ended is None and outcome.refused is None
    assert re.fullmatch(rf"{TIME} \[bob -> you\] just in time\n", capsys.readouterr().out)
    assert isinstance(login, trio_chat.History)
    assert login.messages == ()  # delivered: not waiting at the next login


async def test_a_message_the_operator_removes_is_said_to_be(tmp_path: Path) -> None:
    database = tmp_path / "chat.db"
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, database)
            host, port = await daemon.start()
            await accounts(port, "alice", "bob")
            async with trio_chat.connect(host, port, "bob", PASSWORD) as bob:
                # Older than the 20 a login shows: seen only on a page.
                first = await bob.say("first words")
                for n in range(20):
                    await bob.say(f"line {n}")
                process = await trio.lowlevel.open_process(
                    [*CLI, "chat", "--name", "alice"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=cli_env(port, TRIO_CHAT_PASSWORD=PASSWORD),
                )
                assert process.stdin is not None and process.stdout is not None
                output = Output(process.stdout)
                await output.until(rf"^{TIME} bob: line 19$")  # the 20 a login shows
                spam = await bob.say("buy cheap watches")
                await output.until(rf"^{TIME} bob: buy cheap watches$")
                removed = await operator("messages", database, "remove", str(spam.id))
                assert removed.returncode == 0, removed.stderr
                line = await output.until(r"the operator removed")
                assert re.fullmatch(
                    rf"{TIME} \* the operator removed bob's message of \d\d:\d\d:\d\d", line
                )
                await process.stdin.send_all(b"/older 1\n")
                await output.until(rf"^{TIME} bob: first words$")
                paged = len(output.lines)
                removed = await operator("messages", database, "remove", str(first.id))
                assert removed.returncode == 0, removed.stderr
                await output.until(r"\* the operator removed bob's message", start=paged)
            await process.stdin.aclose()
            await output.rest()
            assert await process.wait() == 0
            assert await daemon.stop() == 0


class _Stored:
    """A message's receipt, answered already."""

    done = True

    def __init__(self, message: PublicMessage) -> None:
        self.result = message

    async def wait(self) -> PublicMessage:
        return self.result


class _SlowToAcknowledge:
    """Just what a script's room uses of a `ChatClient`: each message stored at once, its
    acknowledgement counted as on its way until `drain`."""

    name = "alice"
    host, port = "127.0.0.1", 1600

    def __init__(self) -> None:
        self.pending = 0
        self.said = 0
        self.drained_at: list[int] = []
        self._gone = trio.Event()

    def say_nowait(self, text: str) -> _Stored:
        self.said += 1
        self.pending += 1
        when = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
        return _Stored(PublicMessage(self.said, when, self.name, text))

    async def drain(self) -> None:
        self.drained_at.append(self.pending)
        self.pending = 0
        await trio.lowlevel.checkpoint()

    async def events(self) -> AsyncIterator[Event]:
        await self._gone.wait()
        return
        yield

    async def logout(self) -> None:
        self._gone.set()


async def test_a_long_script_is_read_no_further_ahead_than_the_daemon_answers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A script's lines are all read at once: sent as fast, thousands wait in the
    client's link, which gives up past 4096 frames as if the daemon had stopped
    answering. Reading waits whenever `PIPE_AHEAD` are unacknowledged."""
    chat = _SlowToAcknowledge()
    count = 2 * PIPE_AHEAD + 7
    read, write = os.pipe()
    try:
        os.write(write, "".join(f"m{n}\n" for n in range(count)).encode())
        os.close(write)
        with trio.fail_after(30):
            outcome = await run_pipe(cast(ChatClient, chat), read)
    finally:
        os.close(read)
    assert outcome.ended is None and outcome.refused is None
    assert chat.drained_at == [PIPE_AHEAD, PIPE_AHEAD, 7]  # the last at the end of input
    assert len(capsys.readouterr().out.splitlines()) == count


class _GoneForGood(_SlowToAcknowledge):
    async def events(self) -> AsyncIterator[Event]:
        raise ConnectionLost("Lost the connection to 127.0.0.1:1600 for good.")
        yield


async def test_a_script_whose_input_stays_open_ends_when_the_session_does() -> None:
    """`tail -f log | trio-chat chat`: once the daemon is gone for good no more lines are
    read, and the script ends (with the session's failure) rather than wait for input."""
    read, write = os.pipe()
    try:
        with trio.fail_after(10):
            outcome = await run_pipe(cast(ChatClient, _GoneForGood()), read)
    finally:
        os.close(write)  # a read still to come meets the end of this pipe's input
        ABANDONED.append(read)
    assert isinstance(outcome.ended, ConnectionLost)


async def test_a_blank_line_in_a_script_is_not_its_end(capsys: pytest.CaptureFixture[str]) -> None:
    chat = _SlowToAcknowledge()
    read, write = os.pipe()
    try:
        os.write(write, b"first\n\n\nafter blank lines\nlast, without a line feed")
        os.close(write)
        with trio.fail_after(10):
            await run_pipe(cast(ChatClient, chat), read)
    finally:
        os.close(read)
    said = [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert said == ["alice: first", "alice: after blank lines", "alice: last, without a line feed"]


class _WhisperedToOnLeaving(_SlowToAcknowledge):
    """bob's two whispers come with the answer to the logout (acknowledged by it)."""

    def __init__(self) -> None:
        super().__init__()
        self._buffer = EventBuffer(16)

    async def events(self) -> AsyncIterator[Event]:
        while (event := await self._buffer.get()) is not None:
            yield event

    async def logout(self) -> None:
        when = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
        for n, text in enumerate(("just in time", "and this too"), start=1):
            self._buffer.put(PrivateMessage(n, when, "bob", "alice", text))
        self._buffer.close()


async def test_what_comes_with_the_answer_to_a_scripts_logout_is_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    read, write = os.pipe()
    os.close(write)
    try:
        with trio.fail_after(10):
            await run_pipe(cast(ChatClient, _WhisperedToOnLeaving()), read)
    finally:
        os.close(read)
    said = [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert said == ["[bob -> you] just in time", "[bob -> you] and this too"]
