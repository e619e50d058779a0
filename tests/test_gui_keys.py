"""The daemon's key in `trio-chat gui`, against a real daemon on 127.0.0.1: trusted on first
contact and said so, remembered in the `known_servers` the terminal uses, and a changed
key told in the sign-in dialog, never accepted on the quiet."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio
from pytestqt.qtbot import QtBot

import trio_chat
from tests.gui_support import (
    PASSWORD,
    fill,
    gui,
    gui_test,
    register,
    signed_in,
    texts,
    until,
)
from trio_chat.gui.problems import key_changed_sentence
from trio_chat.keys import KnownServers, daemon_public_key, home_relative
from trio_chat.noise import fingerprint, public_key


async def trio_chat_command(host: str, port: int, *args: str) -> tuple[int, str, str]:
    """Run `trio-chat ARGS --host HOST --port PORT` in a terminal of its own (this test's
    data folder, so its `known_servers`); its exit status, output and errors."""
    command = [sys.executable, "-m", "trio_chat", *args, "--host", host, "--port", str(port)]
    env = {**os.environ, "TRIO_CHAT_PASSWORD": PASSWORD}
    env.pop("TRIO_CHAT_SERVER_KEY", None)
    result = await trio.run_process(
        command, env=env, capture_stdout=True, capture_stderr=True, check=False
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


@gui_test
async def test_the_first_contact_trusts_the_key_and_says_so(
    daemon: tuple[str, int], db_path: Path, tmp_path: Path, qtbot: QtBot
) -> None:
    host, port = daemon
    key = daemon_public_key(db_path)
    notice = (
        f"The daemon at {host}:{port} has the key {fingerprint(key)}; trusting it from now on "
        f"(remembered in {home_relative(KnownServers().path)})."
    )
    with trio.fail_after(30):
        # alice's account, made from elsewhere: this computer has not met the daemon yet.
        elsewhere = tmp_path / "elsewhere" / "known_servers"
        await trio_chat.register(host, port, "alice", PASSWORD, known_servers=elsewhere)
        assert KnownServers().get(host, port) is None
        async with gui(daemon, tmp_path / "gui.json") as app:
            dialog = app.dialog
            assert dialog is not None
            assert not dialog.notice.isVisible()

            # The key is trusted before the password is checked, and the dialog says so,
            # next to what went wrong.
            fill(dialog, "alice", "not the password")
            await until(lambda: dialog.problem.isVisible(), "the wrong password told")
            assert dialog.problem.text() == "Wrong password for 'alice'."
            assert dialog.notice.isVisible() and dialog.notice.text() == notice
            assert KnownServers().get(host, port) == key

            # In the room it is said once more, after the latest messages.
            window = await signed_in(app, "alice")
            await until(
                lambda: any(line.endswith(notice) for line in texts(window)),
                "the notice in the room",
            )
            shown = texts(window)
            assert len([line for line in shown if line.endswith(notice)]) == 1
            assert shown[-2].endswith("You are in the room as alice.")

        # The terminal trusts what the window remembered: it does not meet the key anew.
        code, out, err = await trio_chat_command(host, port, "login", "--name", "alice")
        assert (code, err) == (0, ""), err
        assert f"Logged in as alice at {host}:{port}." in out


@gui_test
async def test_a_changed_key_is_told_in_the_dialog_until_trusted_anew(
    daemon: tuple[str, int], db_path: Path, tmp_path: Path, qtbot: QtBot
) -> None:
    host, port = daemon
    with trio.fail_after(30):
        await register(host, port, "alice")
        impostor = public_key(os.urandom(32))
        KnownServers().remember(host, port, impostor)  # as if the daemon's key had changed
        sentence = key_changed_sentence(host, port)
        assert sentence == (
            f"The daemon at {host}:{port} shows another key than the one trusted for it; if "
            f"its operator changed the key on purpose, `trio-chat trust --host {host} --port "
            f"{port}` (in a terminal) shows the new key and asks before trusting it, else "
            "someone may be in the middle."
        )
        async with gui(daemon, tmp_path / "gui.json") as app:
            dialog = app.dialog
            assert dialog is not None
            for _attempt in range(2):  # asking again changes nothing
                dialog.problem.hide()
                fill(dialog, "alice", PASSWORD)
                await until(lambda: dialog.problem.isVisible(), "the changed key told")
                assert dialog.problem.text() == sentence
                assert dialog.focusWidget() is dialog.host
                assert not dialog.notice.isVisible()
                assert app.window is None and app.chat is None
                assert KnownServers().get(host, port) == impostor

            # What the sentence says to do, in a terminal; then the window signs in.
            code, out, err = await trio_chat_command(host, port, "trust", "--yes")
            key = daemon_public_key(db_path)
            assert code == 0, err
            assert out.startswith(f"Trusting {fingerprint(key)} for {host}:{port} ")
            assert KnownServers().get(host, port) == key
            window = await signed_in(app, "alice")
            assert not [line for line in texts(window) if "trusting it from now on" in line]
