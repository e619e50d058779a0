"""The README's Python example works as printed, against a live daemon."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import trio

import trio_chat
from trio_chat.client_protocol.requests import check_new_password, check_sendable_password
from trio_chat.engine import ServerConfig
from trio_chat.names import check_name
from trio_chat.rules import RuleError
from trio_chat.server import serve

README = Path(__file__).parent.parent / "README.md"


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
