"""The README holds: its Python example works as printed, against a live daemon, and its
limits are the defaults of the daemon, of `serve` and of the client."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import trio
from typer.testing import CliRunner

import trio_chat
from trio_chat.cli import ExitCode, app
from trio_chat.cli import account as account_cli
from trio_chat.cli import serve as serve_cli
from trio_chat.client import ClientConfig
from trio_chat.client_protocol.requests import check_new_password, check_sendable_password
from trio_chat.client_protocol.retries import THROTTLE_WAITED_OUT
from trio_chat.commands import HISTORY_DEFAULT, HISTORY_MAX
from trio_chat.engine import ServerConfig
from trio_chat.names import check_name
from trio_chat.rules import RuleError
from trio_chat.server import serve
from trio_chat.wire import HISTORY_LIMIT_MAX

README = Path(__file__).parent.parent / "README.md"


def readme() -> str:
    return README.read_text(encoding="utf-8")


def example(marker: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- example: {marker} -->\s*```python\n(.*?)```", text, re.DOTALL)
    assert match, f"README has no example marked {marker!r}"
    return match.group(1)


async def test_the_api_example_runs(daemon: tuple[str, int], tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(example("api"), encoding="utf-8")
    host, port = daemon
    # Someone has the names the example would have used before, with passwords of their own.
    for name in ("alice", "bob"):
        await trio_chat.register(host, port, name, "someone else's password")
    env = {**os.environ, "TRIO_CHAT_HOST": host, "TRIO_CHAT_PORT": str(port)}
    with trio.fail_after(30):
        for _run in range(2):  # a second run finds the accounts already there
            done = await trio.run_process(
                [sys.executable, str(script)], env=env, capture_stdout=True, capture_stderr=True
            )
            assert done.returncode == 0, done.stderr.decode()
            assert done.stdout.decode().splitlines() == [
                "bob heard alice-example: Hello, everyone! 你好 🙂",
                "alice got a private message from bob-example: Hi alice, this one is just for you.",
            ]


async def test_the_api_example_runs_again_and_again_under_the_default_limits(
    nursery: trio.Nursery, db_path: Path, tmp_path: Path
) -> None:
    # The example says it "runs again and again"; under the daemon's default limits a name
    # found taken counts as a registration (5 at once, then 1 a minute), so registering
    # both names on every run was refused with TooManyRegistrations from the third run on.
    host, port = await nursery.start(serve, "127.0.0.1", 0, db_path, ServerConfig())
    script = tmp_path / "example.py"
    script.write_text(example("api"), encoding="utf-8")
    env = {**os.environ, "TRIO_CHAT_HOST": host, "TRIO_CHAT_PORT": str(port)}
    with trio.fail_after(60):
        for _run in range(4):
            done = await trio.run_process(
                [sys.executable, str(script)],
                env=env,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            assert done.returncode == 0, done.stderr.decode()
            assert len(done.stdout.decode().splitlines()) == 2


async def test_the_look_alike_names_in_the_limits_table_are_taken(
    daemon: tuple[str, int],
) -> None:
    # Each example of "a name that could be mistaken for another (...) is taken" is refused
    # as taken (exit code 6) once the name it imitates (`alice`, `cox`, `محمد`) has an
    # account.
    text = README.read_text(encoding="utf-8")
    match = re.search(r"could be mistaken for another \((.*?)\) is taken", text)
    assert match, "the README no longer gives look-alike names"
    host, port = daemon
    for imitated in ("alice", "cox", "محمد"):
        await trio_chat.register(host, port, imitated, "correct horse")
    for example in re.findall(r"`([^`]+)`", match.group(1)):
        with pytest.raises(trio_chat.NameTaken):
            await trio_chat.register(host, port, example, "correct horse")


def test_the_names_the_limits_table_gives_as_valid_are_valid() -> None:
    # The examples of names in one script, and of the characters Unicode does not recommend
    # for identifiers that a name may hold, pass; the mark it may not hold is refused.
    text = README.read_text(encoding="utf-8")
    row = re.search(r"\| a name \|(.*)\|", text)
    assert row, "the README no longer says what a name may be"
    groups = re.findall(r"in one script \((.*?)\);|excludes pass, marks included \((.*?)\)", row[1])
    examples = [
        name for group in groups for part in group for name in re.findall(r"`([^`]+)`", part)
    ]
    assert len(examples) >= 8
    for example in examples:
        assert check_name(example) == example
    mark = re.search(r"but no mark of uncommon use \(U\+([0-9A-F]{4})", row[1])
    assert mark, "the README no longer names a mark a name may not hold"
    with pytest.raises(RuleError):
        check_name("bob" + chr(int(mark[1], 16)))


def test_the_password_limit_in_the_limits_table_is_what_the_client_checks() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    said = re.search(
        r"at most (\d+) bytes of UTF-8 less the name's \((\d+) with a name of 32", readme
    )
    assert said is not None
    for name, limit in (("a", int(said[1]) - 1), ("n" * 32, int(said[2]))):
        check_sendable_password(name, "é" * (limit // 2))
        with pytest.raises(trio_chat.PasswordTooLong):
            check_sendable_password(name, "x" * (limit + 1))
        check_sendable_password(name, "x" * limit)


def test_the_limit_on_changing_a_password_is_what_the_client_checks() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    said = re.search(r"the old and the new together at most (\d+) bytes", readme)
    assert said is not None
    most = int(said[1])
    old = "o" * (most - 200)
    check_new_password("alice", old, "n" * 200)
    with pytest.raises(trio_chat.PasswordTooLong):
        check_new_password("alice", old, "n" * 201)


def limits_row(what: str) -> str:
    """The limit the README's "Limits you may meet" table gives for `what`."""
    text = README.read_text(encoding="utf-8")
    row = re.search(rf"^\| {re.escape(what)} \| (.*) \|$", text, re.MULTILINE)
    assert row, f"the README's limits table has no row for {what!r}"
    return row[1]


def numbers_said(what: str, pattern: str) -> tuple[float, ...]:
    found = re.search(pattern, limits_row(what))
    assert found, f"the README's row for {what!r} no longer reads {pattern!r}"
    return tuple(float(number) for number in found.groups())


def test_the_limits_table_gives_the_defaults_the_daemon_and_the_client_have() -> None:
    # The numbers people and operators plan by: each row's figures are the daemon's
    # defaults (and the client's, where the row says what the client does).
    daemon = ServerConfig()
    rows: list[tuple[str, str, tuple[float, ...]]] = [
        (
            "sending",
            r"^(\d+) messages at once, then (\d+) a second",
            (daemon.message_burst, daemon.message_rate),
        ),
        ("private messages waiting for someone", r"^(\d+);", (daemon.mailbox_limit,)),
        ("`/history`, `/older`", r"^at most (\d+) messages", (HISTORY_LIMIT_MAX,)),
        (
            "questions (`/who`, `/history`, loading older messages, changing your password)",
            r"^(\d+) at once, then (\d+) a second, and (\d+) history reads",
            (daemon.question_burst, daemon.question_rate, daemon.reads_per_session),
        ),
        (
            "sessions",
            r"^(\d+) at once from one IP address, (\d+) at once for one account",
            (daemon.max_sessions_per_address, daemon.max_sessions_per_account),
        ),
        (
            "connections",
            r"^(\d+) at once from one IP address, then (\d+) a second .* up to its (\d+) s timeout",
            (daemon.handshake_burst, daemon.handshake_rate, ClientConfig().timeout),
        ),
        (
            "registrations from one IP address",
            r"^(\d+) at once, then (\d+) a minute",
            (daemon.register_burst, daemon.register_rate * 60),
        ),
        (
            "failed logins (a name with no account counts as one)",
            r"^(\d+) free, then a wait that doubles from (\d+) s \(at most (\d+) s; the client "
            r"waits up to (\d+) s of it",
            (
                daemon.login_free_failures,
                daemon.login_delay,
                daemon.login_delay_max,
                THROTTLE_WAITED_OUT,
            ),
        ),
        (
            "join notices",
            r"^(\d+) at once for each person, then one every (\d+) s",
            (daemon.notice_burst, 1 / daemon.notice_rate),
        ),
    ]
    for what, pattern, defaults in rows:
        assert numbers_said(what, pattern) == pytest.approx(defaults), what


def test_the_room_commands_table_gives_the_terminals_history_counts() -> None:
    text = README.read_text(encoding="utf-8")
    for command in ("history", "older"):
        row = re.search(rf"^\| `/{command} \[n\]` \| (.*) \|$", text, re.MULTILINE)
        assert row, f"the README no longer says what /{command} does"
        said = re.search(r"\((\d+) by default, at most (\d+)", row[1])
        assert said, row[1]
        assert (int(said[1]), int(said[2])) == (HISTORY_DEFAULT, HISTORY_MAX)
    assert HISTORY_MAX == HISTORY_LIMIT_MAX  # what the terminal allows, the daemon answers


def test_serve_without_options_runs_the_daemon_with_its_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # `serve`'s options have defaults of their own (what `serve --help` shows): an
    # operator who gives none gets the daemon's defaults, which the README states.
    started: list[ServerConfig] = []

    async def record(
        host: str, port: int, database: Path, config: ServerConfig, summary_every: float
    ) -> None:
        started.append(config)

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.setattr(serve_cli, "_serve_until_signal", record)
    serve_cli.serve_command()
    assert started == [ServerConfig()]


def test_a_script_gives_up_on_a_daemon_gone_after_the_time_the_readme_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "a script gives up once it has not been back for about 60 s": the chat a script
    # starts (standard input not a terminal) comes back for that long, and no longer.
    sentence = r"a script gives up once it has not been back for about (\d+) s"
    said = re.search(sentence.replace(" ", r"\s+"), readme())
    assert said, "the README no longer says when a script gives up"
    configs: list[ClientConfig] = []

    def enter(function: object, *args: object) -> object:
        config = args[-1]
        assert isinstance(config, ClientConfig)
        configs.append(config)
        raise trio_chat.ServerUnreachable("not this time")

    monkeypatch.setattr(account_cli, "trusted_key", lambda host, port, key: bytes(32))
    monkeypatch.setattr(account_cli, "run", enter)
    result = CliRunner().invoke(
        app, ["chat", "--name", "ci"], input="hello\n", env={"TRIO_CHAT_PASSWORD": "password"}
    )
    assert result.exit_code == ExitCode.UNREACHABLE, result.output
    (config,) = configs
    assert config.reconnect_for == float(said[1])
