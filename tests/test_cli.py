"""`trio-chat register`, `login` and `chat` against a real daemon: each success and failure.

The commands run in-process (Typer's CliRunner) while the daemon runs in a thread; the
cases that need a real process (an unreachable daemon, hidden prompts) run the CLI.
"""

from __future__ import annotations

import base64
import dataclasses
import errno
import functools
import itertools
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
import typer
import typer.testing
from typer.testing import CliRunner

import trio_chat
from tests import cli_support
from tests.cli_support import PASSWORD, Daemon, daemon_in_thread, silent_port
from trio_chat import errors
from trio_chat.cli import ExitCode, account, app, exits
from trio_chat.cli.exits import exit_code_for, innermost, sentence
from trio_chat.engine import ServerConfig
from trio_chat.errors import Throttled, TooManyRegistrations
from trio_chat.keys import KnownServers
from trio_chat.noise import fingerprint, generate_keypair, public_key
from trio_chat.store import SqliteStore
from trio_chat.testing.daemon import CLI, cli_env

runner = CliRunner()
_names = itertools.count()


def fresh_name(prefix: str = "user") -> str:
    return f"{prefix}{next(_names)}"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with daemon_in_thread(tmp_path_factory.mktemp("daemon") / "chat.db") as address:
        yield address


def invoke(
    daemon: Daemon, *args: str, input: str | None = None, password: str | None = None
) -> tuple[int, str, str]:
    """Run a client command against the daemon; (exit code, stdout, stderr)."""
    env = {
        "TRIO_CHAT_HOST": daemon[0],
        "TRIO_CHAT_PORT": str(daemon[1]),
        "TRIO_CHAT_SERVER_KEY": daemon.key,
        "TRIO_CHAT_PASSWORD": password,
        "TRIO_CHAT_NAME": None,
    }
    result = runner.invoke(app, list(args), input=input, env=env)
    return result.exit_code, result.stdout, result.stderr


def make_account(daemon: Daemon, prefix: str = "user") -> str:
    name = fresh_name(prefix)
    trio.run(
        functools.partial(trio_chat.register, server_key=daemon.key),
        daemon[0],
        daemon[1],
        name,
        PASSWORD,
    )
    return name


def at_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on standard input is a terminal (standard output is not): what a command
    reads is typed by a person, who may be asked again, and hidden input is not echoed."""
    stream = typer.testing._NamedTextIOWrapper  # CliRunner's standard streams
    monkeypatch.setattr(stream, "isatty", lambda self: self.name == "<stdin>")


# --- the app -----------------------------------------------------------------------------------


def test_version_and_help() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"trio-chat {trio_chat.__version__}"
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "register", "login", "chat", "--install-completion"):
        assert command in result.stdout
    for code in ExitCode:
        assert f"{int(code)} " in result.stdout
    for command in ("register", "login", "chat"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0
        for option in ("--name", "--host", "--port", "--password-file", "TRIO_CHAT_PORT"):
            assert option in result.stdout, (command, option)


_AFTER_MAIN = """
import signal, sys
from trio_chat.cli import main
sys.argv = ["trio-chat", "--version"]
try:
    main()
except SystemExit:
    pass
print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
"""


def test_a_ctrl_c_once_a_command_is_done_does_not_kill_it() -> None:
    """Ctrl-C pressed twice in quick succession to leave the room: the second, coming as
    the program exits, killed it by the signal (no word, no status of ours: 8 of 8 runs
    with 10-30 ms between them, in a terminal user's walk-through). Once a command is
    done, an interrupt is ignored."""
    result = subprocess.run(
        [sys.executable, "-c", _AFTER_MAIN], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split()[-1] == "True", result.stderr


_STOPPED_WHILE_STARTING = """
import sys
class Stop:
    def find_spec(self, name, path, target=None):
        if name == "trio_chat.cli":
            raise KeyboardInterrupt  # Ctrl-C, as Python reads the command's modules
        return None
sys.meta_path.insert(0, Stop())
import trio_chat
print("trio_chat.client" in sys.modules, trio_chat.ClientConfig.__name__, flush=True)
from trio_chat.launch import main
main()
"""


def test_a_ctrl_c_as_the_command_starts_is_status_130_not_a_traceback() -> None:
    # Python spent about a third of a second reading the package before any code of the
    # command ran: a Ctrl-C then printed a traceback. The package's names are now read
    # when first used, and the command's modules under the entry point's watch.
    result = subprocess.run(
        [sys.executable, "-c", _STOPPED_WHILE_STARTING],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (130, "\n")
    assert result.stdout == "False ClientConfig\n"  # nothing read before it was asked for


def test_help_paragraphs_are_wrapped_to_the_terminal_not_where_the_source_breaks() -> None:
    # The docstring breaks this sentence after "or not"; at 200 columns it is one line.
    result = runner.invoke(app, ["backup", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert 'while it runs or not ("trio-chat restore FOLDER" puts them back)' in result.stdout
    assert "FOLDER" in result.stdout.splitlines()[1]  # the usage line names it as the help does
    # Markdown would show `code` without its backticks in plain output: none is used.
    result = runner.invoke(app, ["trust", "--help"], env={"COLUMNS": "200"})
    assert '(as "trio-chat key" prints it' in result.stdout
    assert 'its operator publishes ("trio-chat key")' in result.stdout


def test_a_database_path_given_with_a_tilde_is_in_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--db '~/chat.db'`, quoted so that no shell expands it (as the help's default reads),
    names the file in the home folder, not in a folder named `~` here."""
    home = tmp_path / "home"
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["key", "--db", "~/chat.db"], env={"HOME": str(home)})
    assert result.exit_code == ExitCode.DATABASE
    assert f"There is no key at '{home / 'chat.key'}'" in result.stderr
    assert not (tmp_path / "~").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["accounts", "list"],
        ["messages", "list"],
        ["bans", "list"],
        ["key"],
        ["restore", "backups"],
    ],
)
def test_a_database_path_the_system_will_not_look_at_is_one_sentence(
    tmp_path: Path, command: list[str]
) -> None:
    # A name too long was a traceback out of `Path.exists`, exit 1 (`serve`: in
    # test_daemon_log).
    database = tmp_path / ("x" * 300)
    result = runner.invoke(app, [*command, "--db", str(database)], env={"HOME": str(tmp_path)})
    assert result.exit_code == ExitCode.DATABASE, result.output
    assert not isinstance(result.exception, OSError)
    (line,) = result.stderr.splitlines()
    assert "file name too long" in line and str(database) in line


def test_a_database_the_system_keeps_from_this_user_says_whose_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "chat.db"
    real_stat = os.stat

    def denied(path: Any, *args: Any, **options: Any) -> Any:
        if Path(path) == database:  # as to another user (the tests may run as root)
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_stat(path, *args, **options)

    monkeypatch.setattr(os, "stat", denied)
    result = runner.invoke(app, ["accounts", "list", "--db", str(database)])
    assert result.exit_code == ExitCode.DATABASE
    assert result.stderr == (
        f"Cannot use the database {database}: permission denied; run it as the daemon's user.\n"
    )
    # One under a file is not there, as one in a folder that does not exist: the command says.
    beside = tmp_path / "a file"
    beside.touch()
    result = runner.invoke(app, ["accounts", "list", "--db", str(beside / "chat.db")])
    assert result.exit_code == ExitCode.DATABASE
    assert result.stderr == (
        f"There is no database at {str(beside / 'chat.db')!r}; name the daemon's with --db.\n"
    )


def test_a_backup_folder_the_system_will_not_look_at_is_one_sentence(tmp_path: Path) -> None:
    folder = tmp_path / ("x" * 300)
    result = runner.invoke(app, ["restore", str(folder), "--db", str(tmp_path / "chat.db")])
    assert result.exit_code == ExitCode.DATABASE, result.output
    assert result.stderr == f"Cannot look at {folder / 'chat.db'}: file name too long.\n"


def test_an_unreadable_database_or_password_file_is_the_commands_to_judge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Typer checked `--db` and `--password-file` for readability first: a database its
    user may not read was a usage error (exit 2, a box of Typer's), not exit 11."""
    database = tmp_path / "chat.db"
    SqliteStore.open(database).close()
    password_file = tmp_path / "password"
    password_file.write_text("a password\n")
    real_access = os.access

    def unreadable(path: Any, mode: int, **options: Any) -> bool:
        if Path(path) in (database, password_file) and mode & os.R_OK:
            return False  # as to a user who may not read them (the tests may run as root)
        return real_access(path, mode, **options)

    monkeypatch.setattr(os, "access", unreadable)
    listed = runner.invoke(app, ["accounts", "list", "--db", str(database)])
    assert (listed.exit_code, listed.stderr) == (0, "0 accounts.\n")
    given = runner.invoke(app, ["login", "--name", "x", "--password-file", str(password_file)])
    assert "Invalid value" not in given.stderr


# --- register ----------------------------------------------------------------------------------


def test_register_prompts_twice_then_the_account_logs_in(daemon: Daemon) -> None:
    name = fresh_name("reg")
    code, out, err = invoke(daemon, "register", "--name", name, input=f"{PASSWORD}\n{PASSWORD}\n")
    assert code == 0, out
    # Without a terminal the prompts (and the ends of the lines read) go to stderr: a
    # script reads the result alone.
    assert out.startswith(f"Registered {name} at {daemon[0]}:{daemon[1]}")
    assert err == "Password: \nRepeat the password: \n"
    assert PASSWORD not in out + err  # hidden input is not echoed
    code, out, _err = invoke(daemon, "login", "--name", name, password=PASSWORD)
    assert code == 0
    assert f"Logged in as {name}" in out


def test_register_from_a_pipe_takes_one_line_when_the_input_ends_after_it(
    daemon: Daemon,
) -> None:
    """`echo "$PW" | trio-chat register`: there is nobody to mistype it twice."""
    name = fresh_name("reg")
    code, out, err = invoke(daemon, "register", "--name", name, input=f"{PASSWORD}\n")
    assert code == 0, out
    assert err == "Password: \nRepeat the password: \n"
    assert out.startswith(f"Registered {name} at {daemon[0]}:{daemon[1]}")
    code, out, _err = invoke(daemon, "login", "--name", name, password=PASSWORD)
    assert code == 0


def test_register_asks_again_when_the_two_passwords_differ(daemon: Daemon) -> None:
    name = fresh_name("reg")
    typed = f"{PASSWORD}\nsomething else\n{PASSWORD}\n{PASSWORD}\n"
    code, out, err = invoke(daemon, "register", "--name", name, input=typed)
    assert code == 0
    assert "The two passwords do not match; type them again.\n" in err
    assert f"Registered {name}" in out


@pytest.mark.parametrize(
    ("lines", "said"),
    [
        ("one pass\ntwo pass\n", "the input ended before they were given again"),
        ("one pass\ntwo pass\nthree pass\n", "the input ended before they were given again"),
        ("a pass 1\nb pass 1\na pass 2\nb pass 2\na pass 3\nb pass 3\n", "did not match 3 times"),
    ],
)
def test_register_gives_up_on_passwords_that_keep_differing(
    daemon: Daemon, lines: str, said: str
) -> None:
    code, out, err = invoke(daemon, "register", "--name", fresh_name("reg"), input=lines)
    assert code == ExitCode.INVALID_PASSWORD
    assert out == ""
    assert said in err.splitlines()[-1]


def test_at_a_terminal_register_asks_again_for_passwords_that_differ_and_a_taken_name(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    at_a_terminal(monkeypatch)
    taken, name = make_account(daemon), fresh_name("reg")
    typed = f"{PASSWORD}\nnot the same\n{PASSWORD}\nnor this\n{PASSWORD}\n{PASSWORD}\n{name}\n"
    code, out, err = invoke(daemon, "register", "--name", taken, input=typed)
    assert code == 0, err
    assert err == (
        "The two passwords do not match; type them again.\n" * 2
        + f"The name {taken!r} is taken; choose another.\n"
    )
    assert f"Registered {name} at " in out
    assert PASSWORD not in out  # typed hidden
    code, out, err = invoke(daemon, "register", "--name", fresh_name("reg"), input="a\nb\n" * 3)
    assert code == ExitCode.INVALID_PASSWORD
    assert err.splitlines() == [
        "The two passwords do not match; type them again.",
        "The two passwords do not match; type them again.",
        "The two passwords did not match 3 times; run the command again.",
    ]


def test_register_prompts_for_the_name_when_missing(daemon: Daemon) -> None:
    name = fresh_name("reg")
    code, out, err = invoke(daemon, "register", input=f"{name}\n", password=PASSWORD)
    assert code == 0
    assert err == "Name: \n"
    assert f"Registered {name}" in out
    # A name typed there is judged before the password is asked for.
    code, out, err = invoke(daemon, "register", input="two words\n")
    assert (code, out) == (ExitCode.INVALID_NAME, "")
    assert err.startswith("Name: \nA name ") and "Password" not in err


def test_register_a_taken_name(daemon: Daemon) -> None:
    name = make_account(daemon)
    code, out, err = invoke(daemon, "register", "--name", name.upper(), password=PASSWORD)
    assert code == ExitCode.NAME_TAKEN
    assert err.strip() == f"The name {name.upper()!r} is taken; choose another."
    assert out == ""


@pytest.mark.parametrize("name", ["two words", "-dash", "x" * 33, "semi;colon"])
def test_register_an_invalid_name(daemon: Daemon, name: str) -> None:
    code, _out, err = invoke(daemon, "register", "--name", name, password=PASSWORD)
    assert code == ExitCode.INVALID_NAME
    assert err.startswith("A name ")
    assert len(err.strip().splitlines()) == 1


def test_register_a_short_password(daemon: Daemon) -> None:
    name = fresh_name("reg")
    code, _out, err = invoke(daemon, "register", "--name", name, password="short")
    assert code == ExitCode.INVALID_PASSWORD
    assert err.strip() == "A password must be at least 8 characters long."
    code, _out, _err = invoke(daemon, "login", "--name", name, password=PASSWORD)
    assert code == ExitCode.UNKNOWN_USER


def test_registering_too_often_is_limited(tmp_path: Path) -> None:
    config = ServerConfig(register_burst=1, register_rate=1 / 3600)
    with daemon_in_thread(tmp_path / "chat.db", config) as daemon:
        code, _out, _err = invoke(daemon, "register", "--name", "first", password=PASSWORD)
        assert code == 0
        code, _out, err = invoke(daemon, "register", "--name", "second", password=PASSWORD)
    assert code == ExitCode.LIMITED
    assert err.startswith("Too many registrations from your address; try again later")


# --- login -------------------------------------------------------------------------------------


def test_login_shows_who_is_online_and_how_many_private_messages_wait(
    daemon: Daemon,
) -> None:
    alice, bob = make_account(daemon, "alice"), make_account(daemon, "bob")
    seen_by_bob: list[trio_chat.Event] = []

    async def bob_whispers_and_stays() -> tuple[int, str, str]:
        async with (
            trio_chat.connect(daemon[0], daemon[1], bob, PASSWORD) as chat,
            trio.open_nursery() as nursery,
        ):

            async def collect() -> None:
                async for event in chat.events():
                    seen_by_bob.append(event)

            nursery.start_soon(collect)
            await chat.whisper(alice, "psst, \x1b[31mred")
            await chat.whisper(alice, "second")
            result = await trio.to_thread.run_sync(
                lambda: invoke(daemon, "login", "--name", alice, password=PASSWORD)
            )
            await chat.who()  # anything alice's login caused has arrived by now
            nursery.cancel_scope.cancel()
            return result

    code, out, err = trio.run(bob_whispers_and_stays)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"Logged in as {alice} at {daemon[0]}:{daemon[1]}."
    assert lines[1] == f"Online (1): {bob}"
    assert lines[2] == (
        f"2 private messages are waiting for you; `trio-chat chat --name {alice}` shows them."
    )
    assert len(lines) == 3
    # Logging in only looked: bob saw no join or leave, and the messages still wait.
    assert not [e for e in seen_by_bob if isinstance(e, trio_chat.Joined | trio_chat.Left)]
    code, out, _err = invoke(daemon, "login", "--name", alice, password=PASSWORD)
    assert code == 0
    assert "2 private messages are waiting for you" in out


def test_login_tells_of_one_private_message_in_the_singular(daemon: Daemon) -> None:
    alice, bob = make_account(daemon, "alice"), make_account(daemon, "bob")

    async def whisper() -> None:
        async with trio_chat.connect(daemon[0], daemon[1], bob, PASSWORD) as chat:
            await chat.whisper(alice, "just one")

    trio.run(whisper)
    code, out, err = invoke(daemon, "login", "--name", alice, password=PASSWORD)
    assert code == 0, err
    assert out.splitlines()[-1] == (
        f"1 private message is waiting for you; `trio-chat chat --name {alice}` shows it."
    )


def test_trust_says_what_its_server_key_does(daemon: Daemon) -> None:
    """`trust` asks before trusting the key it is shown: its help does not say the key is
    trusted on first use, as the other commands' does."""
    result = runner.invoke(app, ["trust", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "trusted if you say so" in result.stdout
    assert "trusted the first time" not in result.stdout


def test_the_exit_codes_in_the_help_are_the_readmes(daemon: Daemon) -> None:
    """The summary at the end of `--help` names every code of the README's table."""
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "400"})
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    codes = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]
    codes = [code for code in codes if code.isdecimal()]
    assert sorted(map(int, codes)) == sorted(ExitCode)
    help_text = " ".join(result.stdout.split())
    for code in codes:
        assert f" {code} " in help_text.split("Exit codes:", 1)[1], code
    assert "9 a limit (rate, sessions, a full mailbox)" in help_text
    assert "12 cannot listen there" in help_text


# Each refusal the client API raises, and the status the README's table gives it.
README_EXIT_CODES: dict[type[errors.ChatError], int] = {
    errors.ServerUnreachable: 3,
    errors.WrongPassword: 4,
    errors.PasswordChangedAway: 4,  # the operator's new password, set while away
    errors.UnknownUser: 5,
    errors.NameTaken: 6,
    errors.InvalidName: 7,
    errors.PasswordTooShort: 8,
    errors.PasswordTooLong: 8,
    errors.PasswordUnchanged: 8,
    errors.TooManyRegistrations: 9,
    errors.RegistrationsClosed: 20,
    errors.Throttled: 9,  # failed logins
    errors.TooManySessions: 9,
    errors.Busy: 9,  # connections
    errors.RateLimited: 9,
    errors.MailboxFull: 9,
    errors.ConnectionLost: 10,
    errors.ProtocolError: 13,  # refused for another reason
    errors.TicketInvalid: 13,
    errors.StorageFailed: 13,
    errors.BadRequest: 13,
    errors.TextEmpty: 14,
    errors.TextTooLong: 14,
    errors.Muted: 14,
    errors.KeyChanged: 15,
    errors.KeyUnproven: 15,
    errors.AccountLocked: 16,
    errors.AccountRemoved: 5,  # its name no account has now
    errors.Removed: 17,
    errors.Banned: 18,
}


def test_every_refusal_exits_with_the_status_the_readme_gives_it() -> None:
    # Scripts tell failures apart by these: a refusal moved to another status (or a new
    # kind of refusal given none) is a change they would not see coming.
    kinds = {
        kind
        for kind in vars(errors).values()
        if isinstance(kind, type) and issubclass(kind, errors.ChatError)
    }
    assert kinds - {errors.ChatError} == set(README_EXIT_CODES)
    for kind, code in README_EXIT_CODES.items():
        assert exit_code_for(kind("refused")) == code, kind.__name__


@pytest.mark.parametrize("seconds", ["0.5", "inf", "nan", "100000"])
def test_a_give_up_time_no_client_could_keep_is_a_usage_error(seconds: str) -> None:
    result = runner.invoke(
        app,
        ["chat", "--name", "alice", "--give-up-after", seconds],
        env={"TRIO_CHAT_PASSWORD": PASSWORD},
    )
    assert result.exit_code == ExitCode.USAGE
    assert "--give-up-after" in result.stderr


@pytest.mark.parametrize("seconds", ["0.5", "inf", "nan", "3601"])
def test_a_keepalive_no_client_could_keep_is_a_usage_error(seconds: str) -> None:
    result = runner.invoke(
        app,
        ["chat", "--name", "alice", "--keepalive", seconds],
        env={"TRIO_CHAT_PASSWORD": PASSWORD},
    )
    assert result.exit_code == ExitCode.USAGE
    assert "--keepalive" in result.stderr


def test_the_keepalive_asked_for_is_the_one_the_room_is_entered_with(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered: list[float | None] = []

    def enter(function: Any, *args: Any) -> None:  # what the room would be entered with
        entered.append(args[-1].keepalive)
        raise errors.ConnectionLost("Lost the connection to the daemon.")

    monkeypatch.setattr(account, "run", enter)
    invoke(daemon, "chat", "--name", "alice", password=PASSWORD)
    invoke(daemon, "chat", "--name", "alice", "--keepalive", "1", password=PASSWORD)
    monkeypatch.setenv("TRIO_CHAT_KEEPALIVE", "3600")
    invoke(daemon, "chat", "--name", "alice", password=PASSWORD)
    assert entered == [None, 1.0, 3600.0]


def test_login_with_a_wrong_password(daemon: Daemon) -> None:
    name = make_account(daemon)
    code, out, err = invoke(daemon, "login", "--name", name, password="not the password")
    assert code == ExitCode.WRONG_PASSWORD
    assert err.strip() == f"Wrong password for {name!r}."
    assert out == ""


def test_login_an_unknown_user(daemon: Daemon) -> None:
    code, _out, err = invoke(daemon, "login", "--name", "nobody_here", password=PASSWORD)
    assert code == ExitCode.UNKNOWN_USER
    assert err.strip() == (
        "There is no account named 'nobody_here'; "
        "create it with `trio-chat register --name nobody_here`."
    )


@pytest.mark.parametrize("command", ["login", "chat"])
def test_an_unknown_name_no_account_can_have_is_not_offered_to_register(
    daemon: Daemon, command: str
) -> None:
    name = "a" * 40
    code, _out, err = invoke(daemon, command, "--name", name, password=PASSWORD)
    assert code == ExitCode.UNKNOWN_USER
    assert err == (
        f"There is no account named {name!r}, and there cannot be: "
        "a name must be 1 to 32 characters long (this one has 40).\n"
    )


def test_login_prompts_for_the_password(daemon: Daemon) -> None:
    name = make_account(daemon)
    code, out, err = invoke(daemon, "login", "--name", name, input=f"{PASSWORD}\n")
    assert code == 0
    assert err == "Password: \n"
    assert PASSWORD not in out + err


def test_at_a_terminal_login_asks_again_after_a_wrong_password_three_times_at_most(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    at_a_terminal(monkeypatch)
    name = make_account(daemon)
    code, out, err = invoke(daemon, "login", "--name", name, input=f"not it\n{PASSWORD}\n")
    assert code == 0, err
    assert err == f"Wrong password for {name!r}; try again.\n"
    assert f"Logged in as {name} at " in out
    assert PASSWORD not in out  # typed hidden, the second time too
    code, out, err = invoke(daemon, "login", "--name", name, input="one\ntwo\nthree\nfour\n")
    assert code == ExitCode.WRONG_PASSWORD
    again = f"Wrong password for {name!r}; try again.\n"
    assert err == again * 2 + f"Wrong password for {name!r}.\n"
    # One given in the environment is a script's: it is not asked for again.
    code, out, err = invoke(daemon, "login", "--name", name, password="not it", input=PASSWORD)
    assert (code, out, err) == (ExitCode.WRONG_PASSWORD, "", f"Wrong password for {name!r}.\n")


def test_password_file(daemon: Daemon, tmp_path: Path) -> None:
    name = make_account(daemon)
    secret = tmp_path / "secret"
    secret.write_text(f"{PASSWORD}\nsecond line is ignored\n", encoding="utf-8")
    code, out, _err = invoke(daemon, "login", "--name", name, "--password-file", str(secret))
    assert code == 0
    assert f"Logged in as {name}" in out
    # The file wins over the environment.
    code, _out, _err = invoke(
        daemon, "login", "--name", name, "--password-file", str(secret), password="wrong one"
    )
    assert code == 0


def test_unreadable_password_file(daemon: Daemon, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    code, _out, err = invoke(daemon, "login", "--name", "x", "--password-file", str(missing))
    assert code == ExitCode.USAGE
    assert err.strip() == f"Cannot read the password file {missing}: No such file or directory."


def test_an_empty_password_file_is_a_usage_error_not_a_wrong_password(
    daemon: Daemon, tmp_path: Path
) -> None:
    # An empty password would only be refused by the daemon as a wrong one (and count as
    # a failed login against the account); the file is what is wrong.
    name = make_account(daemon)
    for content in ("", "\n", "\ncorrect horse\n"):
        secret = tmp_path / "secret"
        secret.write_text(content, encoding="utf-8")
        for command in ("register", "login", "chat"):
            code, _out, err = invoke(
                daemon, command, "--name", name, "--password-file", str(secret), input=""
            )
            assert code == ExitCode.USAGE, (content, command, err)
            assert err == f"The password file {secret} has no password on its first line.\n"


def test_host_and_port_options_win_over_the_environment(daemon: Daemon) -> None:
    name = make_account(daemon)
    env = {"TRIO_CHAT_HOST": "192.0.2.1", "TRIO_CHAT_PORT": "9", "TRIO_CHAT_PASSWORD": PASSWORD}
    args = ["login", "--name", name, "--host", daemon[0], "--port", str(daemon[1])]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.stderr
    assert f"Logged in as {name} at {daemon[0]}:{daemon[1]}." in result.stdout


def test_the_default_port_is_taken_as_it_is(tmp_path: Path) -> None:
    # No --port and no TRIO_CHAT_PORT: the default (1600) goes through the same parser. The
    # name is refused before anything is sent, so no daemon needs to listen there.
    env = {"TRIO_CHAT_PORT": None, "TRIO_CHAT_HOST": None, "TRIO_CHAT_PASSWORD": PASSWORD}
    result = runner.invoke(app, ["register", "--name", "no spaces, please"], env=env)
    assert result.exit_code == ExitCode.INVALID_NAME, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


# --- password (a real process, and the other session it ends: in test_password_change) --------


def test_password_takes_the_current_one_as_login_does_and_the_new_one_twice(
    daemon: Daemon,
) -> None:
    name, new = make_account(daemon), "a brand new horse"
    typed = f"{new}\nnot the same\n{new}\n{new}\n"
    code, out, err = invoke(daemon, "password", "--name", name, password=PASSWORD, input=typed)
    assert code == 0, err
    # TRIO_CHAT_PASSWORD is the current one, never the new one.
    asked = "New password: \nRepeat the password: \n"
    assert err == asked + "The two passwords do not match; type them again.\n" + asked
    assert out == f"Changed the password of {name}; any other session of it has ended.\n"
    assert invoke(daemon, "login", "--name", name, password=new)[0] == 0


def test_at_a_terminal_password_asks_again_for_the_current_one(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    at_a_terminal(monkeypatch)
    name, new = make_account(daemon), "a brand new horse"
    typed = f"not it\n{PASSWORD}\n{new}\n{new}\n"
    code, out, err = invoke(daemon, "password", "--name", name, input=typed)
    assert code == 0, err
    assert err == f"Wrong password for {name!r}; try again.\n"
    assert out.splitlines()[:2] == ["Current password: ", "Current password: "]
    # One given in the environment is a script's: it is not asked for again.
    code, out, err = invoke(daemon, "password", "--name", name, password="not it", input=new)
    assert (code, out, err) == (ExitCode.WRONG_PASSWORD, "", f"Wrong password for {name!r}.\n")


# --- chat (the failures before the room; the room itself is in test_pipe and test_terminal) --


def test_a_long_script_is_sent_whole_without_losing_the_connection(tmp_path: Path) -> None:
    """Thousands of lines piped at once: the client reads them only as fast as the daemon
    answers, rather than queueing them all, overflowing its own link and taking the
    connection for lost ('the daemon stopped answering'), again and again."""
    config = ServerConfig(message_burst=100_000, message_rate=100_000.0)
    lines = [f"line {n} " + "x" * 480 for n in range(10_000)]
    with daemon_in_thread(tmp_path / "chat.db", config) as daemon:
        name = make_account(daemon)
        env = cli_env(daemon.port, TRIO_CHAT_PASSWORD=PASSWORD, TRIO_CHAT_SERVER_KEY=daemon.key)
        done = subprocess.run(
            [*CLI, "chat", "--name", name],
            input="".join(f"{line}\n" for line in lines),
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert "Lost the connection" not in done.stdout
    said = [line.split(": ", 1)[1] for line in done.stdout.splitlines() if f"{name}: " in line]
    assert said == lines


def test_chat_from_a_pipe_needs_a_name_and_a_password(daemon: Daemon) -> None:
    code, _out, err = invoke(daemon, "chat", password=PASSWORD)
    assert code == ExitCode.USAGE
    assert err.strip() == (
        "Give your name with --name (or TRIO_CHAT_NAME) when input is not a terminal."
    )
    code, _out, err = invoke(daemon, "chat", "--name", "alice")
    assert code == ExitCode.USAGE
    assert err.strip() == (
        "Give the password in TRIO_CHAT_PASSWORD or with --password-file "
        "when input is not a terminal."
    )


def test_chat_refusals(daemon: Daemon) -> None:
    name = make_account(daemon)
    code, _out, err = invoke(daemon, "chat", "--name", name, password="not the password")
    assert (code, err.strip()) == (ExitCode.WRONG_PASSWORD, f"Wrong password for {name!r}.")
    code, _out, err = invoke(daemon, "chat", "--name", "nobody_here", password=PASSWORD)
    assert code == ExitCode.UNKNOWN_USER
    assert err.startswith("There is no account named 'nobody_here'")
    # Only `register` judges a name: to log in, the daemon says whether it exists.
    code, _out, err = invoke(daemon, "chat", "--name", "bad name", password=PASSWORD)
    assert code == ExitCode.UNKNOWN_USER
    assert err.startswith("There is no account named 'bad name'")


def test_a_script_gives_up_on_a_daemon_gone_after_a_minute_unless_told(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a person at a terminal (input or output elsewhere): `chat` waits 60 s for a
    daemon that went away, then leaves (exit 10), unless --give-up-after says otherwise."""
    entered: list[tuple[bool, float | None]] = []

    def enter(function: Any, *args: Any) -> None:  # what the room would be entered with
        interactive, config = args[-2:]
        entered.append((interactive, config.reconnect_for))
        raise errors.ConnectionLost("Lost the connection to the daemon.")

    monkeypatch.setattr(account, "run", enter)
    code, _out, _err = invoke(daemon, "chat", "--name", "alice", password=PASSWORD)
    assert code == ExitCode.CONNECTION_LOST
    invoke(daemon, "chat", "--name", "alice", "--give-up-after", "5", password=PASSWORD)
    at_a_terminal(monkeypatch)  # typed, but what is printed goes to a pipe: a script's too
    invoke(daemon, "chat", "--name", "alice", password=PASSWORD)
    assert entered == [(False, 60.0), (False, 5.0), (False, 60.0)]


def test_at_a_terminal_chat_offers_an_account_asking_again_only_for_a_typed_password(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    at_a_terminal(monkeypatch)

    def run_outside_the_room(function: Any, *args: Any) -> Any:
        if function is account._enter:  # logged in as to enter; the room: test_terminal's
            exits.run(account._check_login, *args[:5])
            raise errors.ConnectionLost("Lost the connection to the daemon.")
        return exits.run(function, *args)

    monkeypatch.setattr(account, "run", run_outside_the_room)
    name = fresh_name("new")
    typed = f"{PASSWORD}\ny\nnot the same\n"
    code, out, err = invoke(daemon, "chat", "--name", name, input=typed)
    assert (code, err) == (
        ExitCode.INVALID_PASSWORD,
        "The two passwords differ; no account was created.\n",
    )
    assert f"There is no account named {name!r}. Create it? [y/N]: y" in out
    assert invoke(daemon, "login", "--name", name, password=PASSWORD)[0] == ExitCode.UNKNOWN_USER
    # A password from the environment is a script's: not asked again, nor after a wrong one.
    code, out, _err = invoke(daemon, "chat", "--name", name, password=PASSWORD, input="y\n")
    assert code == ExitCode.CONNECTION_LOST  # past the registration, at the room
    assert f"Registered {name}." in out and "Repeat" not in out
    code, out, err = invoke(daemon, "chat", "--name", name, password="not it", input="")
    assert (code, out, err) == (ExitCode.WRONG_PASSWORD, "", f"Wrong password for {name!r}.\n")
    # A name no account can have is not offered one.
    code, out, err = invoke(daemon, "chat", "--name", "a" * 40, password=PASSWORD, input="y\n")
    assert (code, out) == (ExitCode.UNKNOWN_USER, "")
    assert "and there cannot be" in err


def test_a_daemon_closed_to_registrations_is_not_offered_an_account_it_would_refuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown name on a daemon started with --no-registrations: `login` and `chat` say
    to ask its operator (exit 5), and `chat` at a terminal does not offer to create the
    account, which would have the password typed again only to be refused; `register`
    says so (exit 20) before it asks for a name or a password, as its key comes."""
    closed = dataclasses.replace(cli_support.TEST_CONFIG, registrations=False)
    with daemon_in_thread(tmp_path / "chat.db", closed) as daemon:
        refused = (
            ExitCode.REGISTRATIONS_CLOSED,
            "",
            "This daemon takes no registrations; ask its operator for an account.\n",
        )
        piped = f"kim\n{PASSWORD}\n{PASSWORD}\n"  # from a script: refused, nothing read
        assert invoke(daemon, "register", input=piped) == refused
        at_a_terminal(monkeypatch)
        assert invoke(daemon, "register", input=piped) == refused  # no Name:, no Password:
        assert invoke(daemon, "register", "--name", "kim", input=piped) == refused
        published = fingerprint(base64.b64decode(daemon.key))
        assert invoke(daemon, "register", "--server-key", published, input=piped) == refused
        # Met for the first time, its key trusted (a handshake proves it), then the same.
        code, out, err = invoke_trusting(daemon, "register", input=piped, password=None)
        assert (code, out, err.splitlines()[1:]) == (refused[0], "", [refused[2].rstrip()])
        assert err.startswith(f"The daemon at {daemon.host}:{daemon.port} has the key ")
        for command in ("login", "chat"):
            code, out, err = invoke(daemon, command, "--name", "kim", input=f"{PASSWORD}\ny\n")
            assert (code, err) == (
                ExitCode.UNKNOWN_USER,
                "There is no account named 'kim', and this daemon takes no registrations; "
                "ask its operator for an account.\n",
            )
            assert "Create it?" not in out


def test_a_name_the_operator_holds_is_not_offered_as_an_account_to_create(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A removed account's name: `chat` at a terminal says the operator holds it (exit 5)
    rather than offer to create it, which would have the password typed again only for
    the registration to be refused."""
    database = tmp_path / "chat.db"
    with daemon_in_thread(database) as daemon:
        made = functools.partial(trio_chat.register, server_key=daemon.key)
        trio.run(made, daemon.host, daemon.port, "kim", PASSWORD)
        removed = runner.invoke(app, ["accounts", "remove", "kim", "--yes", "--db", str(database)])
        assert removed.exit_code == 0
        at_a_terminal(monkeypatch)
        code, out, err = invoke(daemon, "chat", "--name", "kim", input=f"{PASSWORD}\ny\n")
        assert (code, err) == (
            ExitCode.UNKNOWN_USER,
            "There is no account named 'kim'; the name is held by the daemon's operator.\n",
        )
        assert "Create it?" not in out


@pytest.mark.parametrize("command", ["login", "chat"])
def test_an_unknown_name_with_a_short_password_is_unknown_not_a_wrong_password(
    daemon: Daemon, command: str
) -> None:
    code, _out, err = invoke(daemon, command, "--name", "nobody_at_all", password="short")
    assert code == ExitCode.UNKNOWN_USER
    assert err.startswith("There is no account named 'nobody_at_all'")
    name = make_account(daemon)
    code, _out, err = invoke(daemon, command, "--name", name, password="short")
    assert (code, err.strip()) == (ExitCode.WRONG_PASSWORD, f"Wrong password for {name!r}.")


@pytest.mark.parametrize("command", ["register", "login"])
def test_input_that_ends_at_a_prompt_exits_130_with_a_new_line(
    daemon: Daemon, command: str
) -> None:
    code, out, err = invoke(daemon, command, input="")
    assert code == ExitCode.INTERRUPTED
    assert out == ""
    assert (
        err == "Name: \nThe input ended before a name; give it with --name (or TRIO_CHAT_NAME).\n"
    )


@pytest.mark.parametrize(
    ("command", "lines"),
    [
        ("login", ""),
        ("register", ""),
    ],
)
def test_input_that_ends_before_a_password_says_how_to_give_one(
    daemon: Daemon, command: str, lines: str
) -> None:
    code, _out, err = invoke(daemon, command, "--name", fresh_name(), input=lines)
    assert code == ExitCode.INTERRUPTED
    assert err.splitlines()[-1] == (
        "The input ended before a password; give it on a line of its own, "
        "in TRIO_CHAT_PASSWORD or with --password-file."
    )


@pytest.mark.parametrize(
    "args", [["login", "--name", "alice"], ["register", "--name", "alice"], ["chat"], ["trust"]]
)
def test_a_client_refuses_port_0_for_the_daemons(args: list[str]) -> None:
    """0 has a daemon listen on any free port; no client can reach one there. Nor can one
    be reached on a port no UDP port can be, or on something that is not a number."""
    for port in ("0", "65536", "http", "-1"):
        env = {"TRIO_CHAT_PASSWORD": PASSWORD}
        result = runner.invoke(app, [*args, "--port", port], env=env)
        assert result.exit_code == ExitCode.USAGE
        assert result.stderr == f"The port must be a number from 1 to 65535, not {port!r}.\n"


# --- the daemon's key ---------------------------------------------------------------------------


@pytest.fixture
def own_daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon of the test's own, which no other test's failed logins have slowed."""
    with daemon_in_thread(tmp_path / "chat.db") as daemon:
        yield daemon


def invoke_trusting(
    daemon: Daemon, *args: str, input: str | None = None, password: str | None = PASSWORD
) -> tuple[int, str, str]:
    """Run a client command that must decide on its own whether to trust the daemon."""
    env = {
        "TRIO_CHAT_HOST": daemon.host,
        "TRIO_CHAT_PORT": str(daemon.port),
        "TRIO_CHAT_PASSWORD": password,
        "TRIO_CHAT_NAME": None,
        "TRIO_CHAT_SERVER_KEY": None,
    }
    result = runner.invoke(app, list(args), input=input, env=env)
    return result.exit_code, result.stdout, result.stderr


def test_a_key_met_first_is_shown_once_and_then_trusted(
    own_daemon: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = own_daemon
    name = make_account(daemon)
    shown = fingerprint(base64.b64decode(daemon.key))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the data folder by default
    monkeypatch.delenv("XDG_DATA_HOME")
    code, out, err = invoke_trusting(daemon, "login", "--name", name)
    assert code == 0, err
    assert err.splitlines()[0] == (
        f"The daemon at {daemon.host}:{daemon.port} has the key {shown}; trusting it from now "
        "on (remembered in ~/.local/share/trio-chat/known_servers)."
    )
    assert (tmp_path / "home" / ".local" / "share" / "trio-chat" / "known_servers").exists()
    assert KnownServers().get(daemon.host, daemon.port) == base64.b64decode(daemon.key)
    code, out, err = invoke_trusting(daemon, "login", "--name", name)
    assert (code, err) == (0, "")
    assert f"Logged in as {name}" in out


def test_a_changed_key_stops_before_the_password_until_trusted_anew(own_daemon: Daemon) -> None:
    daemon = own_daemon
    name = make_account(daemon)
    impostor = public_key(os.urandom(32))
    KnownServers().remember(daemon.host, daemon.port, impostor)
    for command in ("register", "login", "chat"):
        code, out, err = invoke_trusting(daemon, command, "--name", name)
        assert code == ExitCode.KEY_CHANGED, (command, err)
        assert err.count("\n") == 1
        assert (
            f"has the key {fingerprint(base64.b64decode(daemon.key))}, not the trusted "
            + (f"{fingerprint(impostor)}; ")
            in err
        )
        assert "someone may be in the middle" in err and out == ""
    code, out, err = invoke_trusting(daemon, "trust", "--yes")
    assert code == 0, err
    assert fingerprint(base64.b64decode(daemon.key)) in out
    code, out, err = invoke_trusting(daemon, "login", "--name", name)
    assert (code, err) == (0, "")


def test_a_key_given_on_the_command_line_must_be_the_daemons(own_daemon: Daemon) -> None:
    daemon = own_daemon
    name = make_account(daemon)
    right = fingerprint(base64.b64decode(daemon.key))
    wrong = fingerprint(public_key(os.urandom(32)))
    lowercase = "sha256:" + right.removeprefix("SHA256:")
    pasted = f" {right}\n"  # copied with what was around it
    cases = ((right, 0), (lowercase, 0), (pasted, 0), (daemon.key, 0))
    for given, expected in (*cases, (wrong, ExitCode.KEY_CHANGED)):
        code, _out, err = invoke_trusting(daemon, "login", "--name", name, "--server-key", given)
        assert code == expected, (given, err)
        assert "trusting" not in err  # checked, not trusted on first use
    assert KnownServers().get(daemon.host, daemon.port) is None
    for nonsense in ("nonsense", "SHA256:bogus", right + "="):  # no fingerprint can be those
        code, _out, err = invoke_trusting(daemon, "login", "--name", name, "--server-key", nonsense)
        assert code == ExitCode.USAGE, err
        assert err.startswith(f"{nonsense!r} is not a daemon key")


def test_trust_asks_and_forgets(own_daemon: Daemon) -> None:
    daemon = own_daemon
    code, out, err = invoke_trusting(daemon, "trust", input="\n")  # no, by default
    assert code == ExitCode.REJECTED
    assert "Trust it? [y/N]:" in err and "Trust it?" not in out  # no terminal: on stderr
    assert err.endswith("Trust it? [y/N]:\nNothing was changed.\n")
    assert out == ""  # a script reads results alone there (it had a stray space)
    assert KnownServers().get(daemon.host, daemon.port) is None
    code, out, err = invoke_trusting(daemon, "trust", input="n\n")
    assert (code, out) == (ExitCode.REJECTED, "")
    assert KnownServers().get(daemon.host, daemon.port) is None
    code, out, err = invoke_trusting(daemon, "trust", input="maybe\nYes\n")
    assert code == 0 and out.startswith("Trusting SHA256:") and "Answer y or n." in err
    assert KnownServers().get(daemon.host, daemon.port) == base64.b64decode(daemon.key)
    code, out, _err = invoke_trusting(daemon, "trust", "--forget")
    assert code == 0 and out.startswith("No key is trusted for")
    assert KnownServers().get(daemon.host, daemon.port) is None
    # Input that ends before an answer (`trust </dev/null`) is told how else to give one.
    code, _out, err = invoke_trusting(daemon, "trust", input="")
    assert code == ExitCode.INTERRUPTED
    assert err.splitlines()[-1] == (
        "The input ended before an answer; give --yes, or --server-key to check it."
    )
    assert KnownServers().get(daemon.host, daemon.port) is None


def test_trust_with_a_key_given_checks_it_and_asks_nothing(own_daemon: Daemon) -> None:
    daemon = own_daemon
    key = base64.b64decode(daemon.key)
    other = fingerprint(public_key(os.urandom(32)))
    code, out, err = invoke_trusting(daemon, "trust", "--server-key", other, input="y\n")
    assert (code, out) == (ExitCode.KEY_CHANGED, "")
    assert err == (
        f"The daemon at {daemon.host}:{daemon.port} shows the key {fingerprint(key)}, not the "
        "one you gave; nothing was changed.\n"
    )
    assert KnownServers().get(daemon.host, daemon.port) is None
    for given in (fingerprint(key), daemon.key):  # no input: a question would end it (130)
        code, out, err = invoke_trusting(daemon, "trust", "--server-key", given, input="")
        assert (code, err) == (0, ""), given
        assert out.startswith(f"Trusting {fingerprint(key)} for {daemon.host}:{daemon.port} ")
        assert KnownServers().get(daemon.host, daemon.port) == key


def test_a_known_servers_file_that_cannot_be_used_is_one_sentence(own_daemon: Daemon) -> None:
    daemon = own_daemon
    name = make_account(daemon)
    known = KnownServers()
    known.path.parent.mkdir(parents=True, exist_ok=True)
    known.path.write_text(f"{daemon.host}:{daemon.port} damaged\n", encoding="utf-8")
    for command in ("register", "login", "chat"):
        code, out, err = invoke_trusting(daemon, command, "--name", name)
        assert code == ExitCode.DATABASE, (command, err)
        assert out == ""
        assert err == (
            f"The line for {daemon.host}:{daemon.port} in {str(known.path)!r} is damaged; "
            "remove it to trust the daemon again.\n"
        )
    known.path.unlink()
    known.path.mkdir()  # a folder where the file should be: it cannot be read
    for args in (("login", "--name", name), ("trust", "--yes"), ("trust", "--forget")):
        code, _out, err = invoke_trusting(daemon, *args)
        assert code == ExitCode.DATABASE, (args, err)
        assert err == f"Cannot read {str(known.path)!r}: is a directory.\n", args


def test_a_known_servers_file_that_is_not_text_is_one_sentence(own_daemon: Daemon) -> None:
    daemon = own_daemon
    name = make_account(daemon)
    known = KnownServers()
    known.path.parent.mkdir(parents=True, exist_ok=True)
    known.path.write_bytes(b"\xff\xfe\x00 not text\n")
    for args in (("login", "--name", name), ("trust", "--yes"), ("trust", "--forget")):
        code, out, err = invoke_trusting(daemon, *args)
        assert code == ExitCode.DATABASE, (args, err)
        assert out == ""
        assert err == (
            f"The file {str(known.path)!r} is damaged (it is not text); remove it to "
            "trust daemons anew.\n"
        ), args
    assert known.path.read_bytes() == b"\xff\xfe\x00 not text\n"  # left for its owner


def test_key_prints_what_clients_are_shown(tmp_path: Path) -> None:
    database = tmp_path / "chat.db"
    result = runner.invoke(app, ["key", "--db", str(database)])
    assert result.exit_code == ExitCode.DATABASE
    assert "`trio-chat serve` makes one on its first start" in result.stderr
    with daemon_in_thread(database) as daemon:
        result = runner.invoke(app, ["key", "--db", str(database)])
        assert result.exit_code == 0
        key = base64.b64decode(daemon.key)
        assert result.stdout == f"fingerprint: {fingerprint(key)}\npublic key:  {daemon.key}\n"


# --- an unreachable daemon, as real processes --------------------------------------------------


def test_every_command_says_when_the_daemon_cannot_be_reached(tmp_path: Path) -> None:
    commands = [["register"], ["login"], ["chat"]]
    with silent_port() as port:
        env = cli_env(port, TRIO_CHAT_PASSWORD=PASSWORD)
        processes = [
            subprocess.Popen(
                [*CLI, *command, "--name", "alice"],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for command in commands
        ]
        results = [process.communicate(timeout=60) for process in processes]
    for process, (out, err) in zip(processes, results, strict=True):
        assert process.returncode == ExitCode.UNREACHABLE, err
        assert err == (
            f"Cannot reach trio-chat at 127.0.0.1:{port}; is `trio-chat serve` running?\n"
        )
        assert "Traceback" not in out + err


def test_ping_tells_whether_the_daemon_answers_with_its_key(daemon: Daemon) -> None:
    """A health check for a script or a supervisor: no account, nothing remembered."""
    code, out, err = invoke(daemon, "ping")
    assert (code, err) == (0, "")
    assert re.fullmatch(
        rf"trio-chat at 127\.0\.0\.1:{daemon[1]} answered in \d+\.\d ms \(key SHA256:\S+\)\.\n",
        out,
    ), out
    other = fingerprint(generate_keypair()[1])
    code, out, err = invoke(daemon, "ping", "--server-key", other)
    assert code == ExitCode.KEY_CHANGED and out == ""
    assert err.endswith(f", not {other}; check the address, or the fingerprint you were given.\n")
    trusted = generate_keypair()[1]  # a key given whole is checked against the one shown
    code, out, err = invoke(daemon, "ping", "--server-key", base64.b64encode(trusted).decode())
    assert code == ExitCode.KEY_CHANGED and out == ""
    assert err.startswith(
        f"The daemon at 127.0.0.1:{daemon[1]} has the key "
        f"{fingerprint(base64.b64decode(daemon.key))}, not the trusted {fingerprint(trusted)}; "
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = closed.getsockname()[1]
    code, _out, err = invoke(Daemon("127.0.0.1", nobody, daemon.key), "ping")
    assert code == ExitCode.UNREACHABLE
    assert err == f"Cannot reach trio-chat at 127.0.0.1:{nobody}; is `trio-chat serve` running?\n"


def test_ping_to_a_closed_port_is_told_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The health check does not wait out its 2.5 s where the system already said no
    daemon listens (the clock jumps ahead only once nothing has happened for a second)."""
    clock = trio.testing.MockClock(autojump_threshold=1.0)
    monkeypatch.setattr(trio, "run", functools.partial(trio.run, clock=clock))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = closed.getsockname()[1]
    key = base64.b64encode(generate_keypair()[1]).decode()
    code, _out, err = invoke(Daemon("127.0.0.1", nobody, key), "ping")
    assert code == ExitCode.UNREACHABLE
    assert err == f"Cannot reach trio-chat at 127.0.0.1:{nobody}; is `trio-chat serve` running?\n"
    assert clock.current_time() < 2.5


@pytest.mark.parametrize("command", [["ping"], ["login", "--name", "alice"], ["trust"]])
def test_a_silent_daemon_is_given_up_on_after_2_5_seconds(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ping`, the key check every client command makes first, and `trust` say a daemon
    that does not answer is unreachable (exit 3) once 2.5 s have passed, on a clock that
    jumps ahead whenever the command waits."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    monkeypatch.setattr(trio, "run", functools.partial(trio.run, clock=clock))
    key = base64.b64encode(generate_keypair()[1]).decode()
    with silent_port() as port:
        code, out, err = invoke(Daemon("127.0.0.1", port, key), *command, input="")
    assert (code, out) == (ExitCode.UNREACHABLE, "")
    assert err == f"Cannot reach trio-chat at 127.0.0.1:{port}; is `trio-chat serve` running?\n"
    assert clock.current_time() == 2.5


def test_a_wait_the_daemon_already_told_is_not_told_twice() -> None:
    """ "Too many failed logins; wait 14 s before trying again (about 15 s)." said it twice;
    a refusal without it is given the wait."""
    told = Throttled("Too many failed logins; wait 14 s before trying again.", retry_after=14.2)
    assert sentence(told, "bob") == "Too many failed logins; wait 14 s before trying again."
    untold = TooManyRegistrations("Too many registrations from your address.", retry_after=59.5)
    assert sentence(untold, "bob") == "Too many registrations from your address (about 60 s)."
    # Messages sent too fast are resent by the client itself: no wait is the person's.
    fast = errors.RateLimited("You are sending messages too fast.", retry_after=2.0)
    assert sentence(fast, "bob") == "You are sending messages too fast."


def test_a_held_names_refusal_is_said_as_the_daemon_said_it_escaped() -> None:
    """A login of a name a removed account holds is told the daemon's own sentence (no
    offer to register it), its control characters escaped as any refusal's."""
    held = errors.UnknownUser(
        "There is no account named 'kim'; the name is held by the daemon's operator\x1b[2J."
    )
    assert sentence(held, "kim") == (
        "There is no account named 'kim'; the name is held by the daemon's operator\\x1b[2J."
    )


def test_a_password_changed_away_a_ban_and_a_refusal_without_a_wait_are_told_as_such(
    two_hours_east: None,
) -> None:
    """A session whose password was changed while it was away is told so, not "Wrong
    password" (it was right when it logged in); a ban's end is in the local time; a
    refusal that gave no wait is not told to wait "about 0 s"."""
    away = errors.PasswordChangedAway(
        "The password was changed while you were away; log in with the new one."
    )
    assert sentence(away, "bob") == away.message
    ban = errors.Banned(
        "The daemon's operator turned your address away until 2027-01-15 08:00:00 UTC; "
        "ask them why.",
        until=1_800_000_000,
    )
    assert sentence(ban, "bob") == (
        "The daemon's operator turned your address away until 2027-01-15 10:00:00 XYZ; "
        "ask them why."
    )
    assert sentence(Throttled("Too many failed logins."), "bob") == "Too many failed logins."
    # A wait under a second is told as one, not as none.
    soon = TooManyRegistrations("Too many registrations from your address.", retry_after=0.2)
    assert sentence(soon, "bob") == "Too many registrations from your address (about 1 s)."


def test_of_several_failures_at_once_the_refusal_is_the_one_told() -> None:
    """A command's tasks may fail together (the connection lost while the keyboard's task
    failed too): the refusal from the daemon is what the person is told, and its status."""
    lost = errors.ConnectionLost("Lost the connection to the daemon.")
    together = ExceptionGroup("tasks", [ValueError("closed"), ExceptionGroup("inner", [lost])])
    assert innermost(together) is lost


def test_a_ctrl_c_or_an_exit_inside_a_command_is_its_status_not_a_fault(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def interrupted() -> None:
        raise KeyboardInterrupt

    async def exits_with_3() -> None:
        raise SystemExit(3)

    with pytest.raises(typer.Exit) as stopped:
        exits.run(interrupted)
    assert stopped.value.exit_code == ExitCode.INTERRUPTED
    assert capsys.readouterr().err == "Interrupted.\n"
    with pytest.raises(SystemExit) as left:
        exits.run(exits_with_3)
    assert left.value.code == 3
    assert capsys.readouterr().err == ""


def test_a_network_error_or_a_fault_is_one_sentence_and_status_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Not a refusal of the daemon's: status 1, and one sentence; a fault's message,
    which may hold what a stranger sent, escaped; the fault inside a task group named,
    not the group."""

    async def no_network() -> None:
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    async def fault() -> None:
        raise RuntimeError("bad \x1b[2J state")

    for failing, told in (
        (
            no_network,
            "Network error: Network is unreachable; check the daemon's address and this "
            "machine's network.",
        ),
        (
            fault,
            "trio-chat stopped on an unexpected error (RuntimeError: bad \\x1b[2J state); "
            "please report it.",
        ),
    ):
        with pytest.raises(typer.Exit) as stopped:
            exits.run(failing)
        assert stopped.value.exit_code == ExitCode.FAILURE
        assert capsys.readouterr().err == told + "\n"
    in_group = exits.unexpected(ExceptionGroup("window", [KeyError("tab")]))
    assert in_group.exit_code == ExitCode.FAILURE
    assert capsys.readouterr().err.startswith("trio-chat stopped on an unexpected error (KeyError:")


def test_ping_to_a_daemon_met_for_the_first_time_remembers_nothing(
    daemon: Daemon, tmp_path: Path
) -> None:
    env = {
        "TRIO_CHAT_HOST": daemon[0],
        "TRIO_CHAT_PORT": str(daemon[1]),
        "TRIO_CHAT_SERVER_KEY": None,
        "XDG_DATA_HOME": str(tmp_path),
    }
    result = runner.invoke(app, ["ping"], env=env)
    assert result.exit_code == 0, result.stderr
    assert "answered in" in result.stdout
    assert not (tmp_path / "trio-chat" / "known_servers").exists()
