"""`trio-chat gui` against a real daemon on 127.0.0.1, driven as a person would: keys typed,
names double-clicked, shortcuts pressed."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import shiboken6
import trio
import trio.testing
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QDialogButtonBox, QLabel, QMessageBox, QWidget
from pytestqt.qtbot import QtBot

import trio_chat
from tests.conftest import TEST_CONFIG
from tests.gui_support import (
    FAST,
    PASSWORD,
    a_daemon_bob_and_the_window,
    bob_and_the_window,
    double_click,
    fill,
    gui,
    gui_test,
    lines_with,
    messages,
    paste_and_send,
    pending,
    press,
    register,
    say,
    shortcut,
    showing,
    signed_in,
    texts,
    type_text,
    until,
)
from trio_chat.client import ClientConfig
from trio_chat.errors import Removed
from trio_chat.gui import app as app_module
from trio_chat.gui import memory
from trio_chat.gui.about_dialog import AboutDialog
from trio_chat.gui.app import GuiApp, Stopped
from trio_chat.gui.message_view import MessageDelegate
from trio_chat.gui.problems import key_changed_sentence
from trio_chat.gui.room_window import BEGINNING, ENDED_HINT, MUTED_HINT, ROOM_HINT, RoomWindow
from trio_chat.gui.rows import UNSAID, Kind, clock
from trio_chat.gui.sign_in_dialog import SignInDialog
from trio_chat.gui.status import MUTED_STATUS, Link
from trio_chat.keys import KnownServers, daemon_public_key, key_paths
from trio_chat.noise import fingerprint, public_key
from trio_chat.reliability import LinkConfig
from trio_chat.server import serve
from trio_chat.testing.daemon import CLI, DaemonProcess
from trio_chat.testing.fault_proxy import FaultProxy
from trio_chat.testing.listening import received
from trio_chat.wire import (
    MUTED_NOTICE,
    REGISTRATIONS_CLOSED,
    UNMUTED_NOTICE,
    key_datagram,
    key_request_datagram,
)


@gui_test
async def test_sign_in_say_and_hear(daemon: tuple[str, int], tmp_path: Path, qtbot: QtBot) -> None:
    with trio.fail_after(20):
        async with bob_and_the_window(daemon, tmp_path / "gui.json") as (bob, app):
            window = await signed_in(app, "alice")
            assert window.online.names == ["alice", "bob"]
            assert app.dialog is not None and not app.dialog.isVisible()
            assert memory.load(tmp_path / "gui.json") == memory.Remembered(*daemon, "alice")
            host, port = daemon
            assert window.windowTitle() == f"alice at {host}:{port} – trio-chat"

            say(window, "hello everyone")
            await until(lambda: lines_with(window, "alice: hello everyone"), "the line stored")
            [mine] = lines_with(window, "alice: hello everyone")
            [got] = [m for m in await received(bob) if m.text == "hello everyone"]
            assert mine == f"{clock(got.ts)}  alice: hello everyone"
            assert window.composer.editor.text() == "" and window.waiting == 0

            said = await bob.say("hi alice 你好 👋")
            line = f"{clock(said.ts)}  bob: hi alice 你好 👋"
            await until(lambda: line in texts(window), "bob's message")
            assert texts(window).count(line) == 1
            assert window.status.text() == f"Connected to {host}:{port} as alice"
            assert window.link is Link.CONNECTED

            type_text(window.composer.editor, "draft")
            press(window.composer.editor, Qt.Key.Key_Up)
            assert window.composer.editor.text() == "hello everyone"
            press(window.composer.editor, Qt.Key.Key_Down)
            assert window.composer.editor.text() == "draft"


@gui_test
async def test_lines_pasted_at_once_go_one_by_one(
    daemon: tuple[str, int], tmp_path: Path, qtbot: QtBot
) -> None:
    # They went as one message, its line breaks shown to everyone as "\n".
    with trio.fail_after(20):
        async with bob_and_the_window(daemon, tmp_path / "gui.json") as (bob, app):
            window = await signed_in(app, "alice")
            editor = window.composer.editor
            paste_and_send(window, "line one\r\nline two\n\ns/bob/line three\n")
            await until(lambda: lines_with(window, "alice: line two"), "the second line")
            await until(lambda: lines_with(window, "alice: line three", "bob"), "the whisper")
            said = [m.text for m in await received(bob)]
            assert said[-3:] == ["line one", "line two", "line three"]
            assert editor.text() == ""
            press(editor, Qt.Key.Key_Up)
            assert editor.text() == "s/bob/line three"


@gui_test
async def test_lines_pasted_after_an_exit_are_not_sent(
    daemon: tuple[str, int], tmp_path: Path, qtbot: QtBot
) -> None:
    with trio.fail_after(20):
        async with bob_and_the_window(daemon, tmp_path / "gui.json") as (bob, app):
            window = await signed_in(app, "alice")
            paste_and_send(window, "first line\nExit\nafter the exit\n/who\n")
            await until(lambda: not showing(window), "the window closed")
            said = [m.text for m in await received(bob) if m.sender == "alice"]
            assert said == ["first line"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
@gui_test
async def test_a_stop_signal_leaves_the_room_at_once_and_ends_the_program(
    daemon: tuple[str, int], tmp_path: Path, qtbot: QtBot, signum: signal.Signals
) -> None:
    """Stopped (SIGTERM) or its terminal gone (SIGHUP), `trio-chat gui` does as the
    terminal does: it leaves the room at once, saying goodbye, and ends with status 130."""
    with trio.fail_after(20):
        await register(*daemon, "alice", "bob")
        async with trio_chat.connect(*daemon, "bob", PASSWORD, config=FAST) as bob:
            with pytest.RaisesGroup(Stopped, flatten_subgroups=True):
                async with gui(daemon, tmp_path / "gui.json") as app:
                    await signed_in(app, "alice")
                    os.kill(os.getpid(), signum)
                    await trio.sleep(10)  # ended by the signal
            async for event in bob.events():
                if isinstance(event, trio_chat.Left) and event.name == "alice":
                    assert event.reason == "quit"  # said goodbye: not gone silent
                    break


@gui_test
async def test_history_in_a_room_shown_whole_says_there_is_nothing_older(
    daemon: tuple[str, int], tmp_path: Path, qtbot: QtBot
) -> None:
    with trio.fail_after(20):
        async with bob_and_the_window(daemon, tmp_path / "gui.json") as (bob, app):
            await bob.say("the only message")
            window = await signed_in(app, "alice")
            say(window, "/history 5")
            told = "Every message is shown: there are no older ones."
            await until(lambda: any(line.endswith(told) for line in texts(window)), "told")
            assert not any("Scroll up" in line for line in texts(window))


@gui_test
async def test_private_tabs_both_ways_with_unread_counts(
    daemon: tuple[str, int], tmp_path: Path, qtbot: QtBot
) -> None:
    with trio.fail_after(20):
        async with bob_and_the_window(daemon, tmp_path / "gui.json", "carol") as (bob, app):
            await bob.whisper("alice", "while you were away")
            window = await signed_in(app, "alice")
            await until(lambda: "bob" in window.online, "bob online")
            # What waited for alice is in bob's tab, counted as unread.
            assert window.tab_text("bob") == "bob (1)"
            assert lines_with(window, "bob: while you were away", "bob")
            window.open_conversation("bob")
            assert window.tab_text("bob") == "bob"
            shortcut(window, "Ctrl+W")
            assert window.tab_text("bob") is None

            # A private message opens its sender's tab, counted, without leaving the room.
            await bob.whisper("alice", "psst, alice")
            await until(lambda: window.tab_text("bob") == "bob (1)", "bob's tab, 1 unread")
            assert window.current_key == ""
            assert lines_with(window, "bob: psst, alice", "bob")
            assert lines_with(window, "bob: while you were away", "bob")  # kept
            assert not lines_with(window, "psst, alice")  # not in the room
            await bob.whisper("alice", "are you there?")
            await until(lambda: window.tab_text("bob") == "bob (2)", "2 unread")

            # Double-clicking bob in the list goes to his tab: read.
            [item] = window.people.findItems("bob", Qt.MatchFlag.MatchExactly)
            double_click(window.people.viewport(), window.people.visualItemRect(item).center())
            assert window.current_key == "bob"
            assert window.tab_text("bob") == "bob"

            # What is typed in bob's tab goes to bob alone, and back.
            say(window, "yes, here")
            await until(lambda: lines_with(window, "alice: yes, here", "bob"), "the reply")
            [got] = [m for m in await received(bob) if m.text == "yes, here"]
            assert isinstance(got, trio_chat.PrivateMessage)
            assert (got.sender, got.recipient) == ("alice", "bob")

            # While alice reads bob's tab, the room counts what she has not seen.
            await bob.say("lunch?")
            await until(lambda: window.tab_text("") == "Room (1)", "the room's count")
            window.tabs.setCurrentIndex(0)
            assert window.tab_text("") == "Room"

            # s/name/text and /msg open (or go to) the person's tab.
            say(window, "s/carol/hi carol")
            await until(lambda: window.current_key == "carol", "carol's tab")
            await until(lambda: lines_with(window, "alice: hi carol", "carol"), "to carol")
            window.tabs.setCurrentIndex(0)
            say(window, "/msg bob one more")
            await until(lambda: window.current_key == "bob", "bob's tab")
            await until(lambda: lines_with(window, "alice: one more", "bob"), "/msg")
            say(window, "s/BOB/in capitals")  # names compare as the daemon compares them
            await until(lambda: lines_with(window, "alice: in capitals", "bob"), "to BOB")
            assert window.tab_text("bob") == "bob"

            # Ctrl+W closes a private tab; the room's tab stays.
            shortcut(window, "Ctrl+W")
            assert window.tab_text("bob") is None and window.tabs.count() == 2
            window.tabs.setCurrentIndex(0)
            shortcut(window, "Ctrl+W")
            assert window.tab_text("") == "Room" and window.tabs.count() == 2

            # Away from the window, its title counts what arrives.
            other = QWidget()
            qtbot.addWidget(other)
            other.show()
            other.activateWindow()
            await until(lambda: not window.isActiveWindow(), "another window in front")
            await bob.say("anyone?")
            await bob.whisper("alice", "ping")
            await until(lambda: window.windowTitle().startswith("(2) "), "2 in the title")
            assert window.tab_text("bob") == "bob (1)"  # reopened by the new message
            window.activateWindow()
            await until(lambda: window.isActiveWindow(), "the window in front again")
            assert not window.windowTitle().startswith("(")


@gui_test
async def test_text_is_shown_as_typed_never_obeyed(
    daemon: tuple[str, int], tmp_path: Path, qtbot: QtBot
) -> None:
    with trio.fail_after(20):
        async with bob_and_the_window(daemon, tmp_path / "gui.json") as (bob, app):
            window = await signed_in(app, "alice")
            await bob.say("<b>x</b> <img src=http://example.invalid/a.png> &amp;")
            await bob.say("clear \x1b[2J now")
            await bob.say("abc\u202edcba\u200f")
            await bob.say("pay\u200b\u2060pal \u3164 \U000e0041 👩\u200d💻 ❤\ufe0f")
            await bob.whisper("alice", "<i>private</i>\r\n")
            expected = [
                "bob: <b>x</b> <img src=http://example.invalid/a.png> &amp;",
                "bob: clear \\x1b[2J now",
                "bob: abc\\u202edcba\\u200f",
                "bob: pay\\u200b\\u2060pal \\u3164 \\U000e0041 👩\u200d💻 ❤\ufe0f",
            ]
            await until(lambda: all(lines_with(window, e) for e in expected), "the lines")
            await until(lambda: lines_with(window, "bob: <i>private</i>\\r\\n", "bob"), "pm")

            # The view draws the same plain text (a text layout, never HTML), with the name
            # and the text each in a bidirectional isolate of its own.
            view = window.view("")
            assert view is not None
            delegate = view.itemDelegate()
            assert isinstance(delegate, MessageDelegate)
            model = view.messages
            shown = [model.row(i) for i in range(model.rowCount()) if model.row(i).message_id]
            for row in shown:
                drawn = delegate.layout(row, 400).text()
                assert drawn.replace("\u2068", "").replace("\u2069", "") == row.plain
                assert drawn.count("\u2068") == drawn.count("\u2069") == 2
                index = model.index(model.rows.index(row))
                assert index.data(Qt.ItemDataRole.DisplayRole) == row.plain
                assert "<" not in str(index.data(Qt.ItemDataRole.ToolTipRole))
            assert not window.grab().isNull()

            # Names are escaped wherever they show (the daemon refuses such names, but the
            # window does not count on it): the people online, a tab, its editor's hint.
            window.set_online(["bob", "e\u200bve<b>"])
            people = [window.people.item(i).text() for i in range(window.people.count())]
            assert people == ["bob", "e\\u200bve<b>"]
            key = window.open_conversation("\u2066mallory\u2069")
            assert window.tab_text(key) == "\\u2066mallory\\u2069"
            hint = window.composer.editor.placeholderText()
            assert hint == "Message \\u2066mallory\\u2069 privately"


@gui_test
async def test_a_daemon_restart_loses_nothing_and_shows_nothing_twice(
    tmp_path: Path, qtbot: QtBot
) -> None:
    with trio.fail_after(40):
        async with a_daemon_bob_and_the_window(tmp_path) as (daemon, bob, app):
            window = await signed_in(app, "alice")
            say(window, "before the crash")
            await until(lambda: lines_with(window, "alice: before the crash"), "stored")

            await daemon.kill()
            say(window, "while it is down 1")
            say(window, "while it is down 2 ✓")
            await until(lambda: window.link is Link.RECONNECTING, "reconnecting")
            await until(lambda: "2 lines waiting" in window.status.text(), "2 waiting")
            assert window.people_label.text() == "Last known online (2)"
            assert pending(window) == [
                "sending…  alice: while it is down 1",
                "sending…  alice: while it is down 2 ✓",
            ]
            assert window.composer.editor.isEnabled()
            # Closing now would lose them: asked, and kept open (it closed, silently). The
            # question does not hold the program (a nested event loop would hold Trio):
            # it is answered here, from Trio, while it is asked.
            held = QTimer()  # answers it had the program been held; stopped once answered,
            held.setSingleShot(True)  # so as never to answer a later test's question
            held.timeout.connect(cancel_any)
            held.start(3000)
            window.close()
            await until(lambda: isinstance(QApplication.activeModalWidget(), QMessageBox), "it")
            box = QApplication.activeModalWidget()
            assert isinstance(box, QMessageBox)
            asked = [box.text(), *sorted(button.text() for button in box.buttons())]
            assert asked == [
                "2 lines you typed have not reached the daemon, which is away; they go "
                "out once it is back. Leave anyway, and lose them?",
                "&Leave",
                "Cancel",
            ]
            cancel(box)
            held.stop()
            await until(lambda: QApplication.activeModalWidget() is None, "the answer")
            assert window.isVisible()
            bob.say_nowait("bob while it is down")

            assert daemon.address is not None
            await daemon.start(daemon.address[1])  # the same port
            await until(lambda: window.link is Link.CONNECTED, "connected again")
            assert window.people_label.text().startswith("Online (")
            await until(lambda: window.waiting == 0, "the lines sent")
            await until(lambda: lines_with(window, "bob: bob while it is down"), "bob's")
            await bob.say("after the restart")
            await until(lambda: lines_with(window, "bob: after the restart"), "after")

            said = [line.split("  ", 1)[1] for line in messages(window)]
            assert said == [
                "alice: before the crash",
                "alice: while it is down 1",
                "alice: while it is down 2 ✓",
                "bob: bob while it is down",
                "bob: after the restart",
            ] or said == [  # bob's line may have been stored first
                "alice: before the crash",
                "bob: bob while it is down",
                "alice: while it is down 1",
                "alice: while it is down 2 ✓",
                "bob: after the restart",
            ]
            assert pending(window) == []
            assert any("Connected to" in line and "again" in line for line in texts(window))
            heard = [m.text for m in await received(bob) if m.sender == "alice"]
            assert heard.count("while it is down 1") == 1
            assert heard.count("while it is down 2 ✓") == 1


@gui_test
async def test_the_leave_question_goes_when_the_daemon_comes_back_and_the_window_closes(
    tmp_path: Path, qtbot: QtBot
) -> None:
    """Closed while a line waits for a daemon that is away, the window asks whether to
    leave and lose it. The daemon comes back and takes the line meanwhile: the question
    no longer holds (it stayed up, saying a line would be lost), so it goes by itself and
    the window closes as asked, logging out once the line is stored."""
    with trio.fail_after(40):
        async with a_daemon_bob_and_the_window(tmp_path) as (daemon, bob, app):
            window = await signed_in(app, "alice")
            await daemon.kill()
            say(window, "typed while it is down")
            await until(lambda: window.link is Link.RECONNECTING, "reconnecting")
            window.close()
            await until(lambda: isinstance(QApplication.activeModalWidget(), QMessageBox), "it")
            assert daemon.address is not None
            await daemon.start(daemon.address[1])
            await until(lambda: QApplication.activeModalWidget() is None, "the question gone")
            await until(
                lambda: not showing(window),
                "the window closed",
                about=lambda: f"{window.link} {window.status.text()!r} {window.waiting}",
            )
            assert "typed while it is down" in [m.text for m in await received(bob)]


def leave_question() -> QMessageBox:
    box = QApplication.activeModalWidget()
    assert isinstance(box, QMessageBox)
    return box


@gui_test
async def test_quitting_with_a_line_typed_and_not_sent_asks_first(
    tmp_path: Path, qtbot: QtBot
) -> None:
    """Ctrl+Q with a line typed and not sent asks whether to leave and lose it (it went
    without a word): Cancel keeps the window and the line. Asked again, with a line sent
    to a daemon that hangs and is then killed: once it is found away, the same question
    names both;
    once it is back and has the waiting line, the typed line alone; Leave then logs out."""
    with trio.fail_after(40):
        async with a_daemon_bob_and_the_window(tmp_path) as (daemon, bob, app):
            window = await signed_in(app, "alice")
            type_text(window.composer.editor, "half a thought")
            shortcut(window, "Ctrl+Q")
            await until(lambda: isinstance(QApplication.activeModalWidget(), QMessageBox), "asked")
            assert leave_question().text() == (
                "The line you typed has not been sent. Leave anyway, and lose it?"
            )
            leave_question().reject()  # Cancel
            await until(lambda: QApplication.activeModalWidget() is None, "the question gone")
            assert showing(window) and window.link is Link.CONNECTED
            assert window.composer.editor.text() == "half a thought"
            assert daemon.process is not None and daemon.address is not None
            daemon.process.send_signal(signal.SIGSTOP)  # it hangs
            window.composer.editor.clear()
            say(window, "sent while it is down")
            await until(lambda: window.waiting == 1, "the line waiting")
            type_text(window.composer.editor, "half a thought")
            window.close()
            await until(lambda: isinstance(QApplication.activeModalWidget(), QMessageBox), "asked")
            box = leave_question()
            typed_only = "The line you typed has not been sent. Leave anyway, and lose it?"
            if window.link is Link.CONNECTED:  # the daemon not yet found away (it hangs)
                assert box.text() == typed_only
            await daemon.kill()  # its port closed: found away at the next resend
            await until(lambda: window.link is Link.RECONNECTING, "the daemon found away")
            assert leave_question() is box and box.text() == (
                "1 line you typed has not reached the daemon, which is away; it goes out once "
                "it is back. The line you typed has not been sent either. Leave anyway, and "
                "lose them all?"
            )
            await daemon.start(daemon.address[1])
            await until(lambda: window.waiting == 0, "the waiting line stored")
            await trio.testing.wait_all_tasks_blocked()
            assert leave_question() is box and box.text() == typed_only
            (leave,) = [
                b
                for b in box.buttons()
                if box.buttonRole(b) is QMessageBox.ButtonRole.DestructiveRole
            ]
            leave.click()
            await until(lambda: not showing(window), "the window closed")
            # bob comes back to the restarted daemon in his own time (his reconnection's
            # back-off): what he was shown is gathered until the stored line is among it.
            texts_bob_got: list[str] = []
            while "sent while it is down" not in texts_bob_got:
                texts_bob_got += [m.text for m in await received(bob)]
            assert "half a thought" not in texts_bob_got


@gui_test
async def test_what_comes_while_the_closed_window_logs_out_is_shown_once(
    tmp_path: Path, qtbot: QtBot
) -> None:
    """Alice closes the window while a line she typed waits for its answer (the daemon is
    paused) and bob's whisper to her is on its way. The window logs out first and shows
    what comes until the session has ended: the whisper is shown once, there or at her
    next login, never acknowledged and shown nowhere."""
    with trio.fail_after(40):
        async with a_daemon_bob_and_the_window(tmp_path) as (daemon, bob, app):
            window = await signed_in(app, "alice")
            assert daemon.address is not None
            host, port = daemon.address
            shown: list[str] = []  # every message the window shows, as it shows it
            show = window.show_message

            def showing_message(message: trio_chat.ChatMessage) -> None:
                shown.append(message.text)
                show(message)

            window.show_message = showing_message  # type: ignore[method-assign]
            assert daemon.process is not None
            daemon.process.send_signal(signal.SIGSTOP)
            try:
                say(window, "last words")
                bob.whisper_nowait("alice", "just in time")
                window.close()
                assert showing(window)
                told = (
                    f"Logging out of {host}:{port} once 1 line is stored; close the window "
                    "again to leave now"
                )
                await until(lambda: window.status.text() == told, "told what it waits for")
                assert not window.composer.isEnabled()
            finally:
                daemon.process.send_signal(signal.SIGCONT)
            await until(lambda: not showing(window), "the window closed")
            await bob.drain()
            assert "last words" in [m.text for m in await received(bob)]
            async with trio_chat.connect(host, port, "alice", PASSWORD, config=FAST) as alice:
                again = [m.text for m in await received(alice)]
            assert shown.count("just in time") + again.count("just in time") == 1


@gui_test
async def test_closing_the_window_waits_for_what_was_typed_however_long_it_takes(
    tmp_path: Path, qtbot: QtBot
) -> None:
    """The daemon hangs (paused) with a line just typed, and the window is closed: it
    stays, saying so, past every timeout of the client's; the daemon is then killed and
    started again, the line goes out, and only then does the window log out and go."""
    with trio.fail_after(40):
        async with a_daemon_bob_and_the_window(tmp_path) as (daemon, bob, app):
            window = await signed_in(app, "alice")
            assert daemon.process is not None and daemon.address is not None
            daemon.process.send_signal(signal.SIGSTOP)
            say(window, "typed before leaving")
            window.close()
            await until(lambda: "once 1 line is stored" in window.status.text(), "told so")
            chat = app.chat
            assert chat is not None
            with trio.move_on_after(3 * FAST.timeout):
                await until(lambda: not showing(window), "the window closed")
            assert showing(window)  # still waiting for the line
            await daemon.kill()
            await daemon.start(daemon.address[1])
            await until(lambda: not showing(window), "the window closed")
            assert chat.connection.closed and chat.connection.left
            assert [m.text for m in await received(bob)].count("typed before leaving") == 1


@gui_test
async def test_closing_the_window_does_not_wait_for_a_question_to_a_daemon_away(
    tmp_path: Path, qtbot: QtBot
) -> None:
    """The daemon is gone and `/who` waits for it (as a page of older messages would):
    no line waits, so closing is not asked about, and the window goes without waiting
    for the daemon to come back."""
    with trio.fail_after(40):
        async with a_daemon_bob_and_the_window(tmp_path) as (daemon, _bob, app):
            window = await signed_in(app, "alice")
            await daemon.kill()
            await until(lambda: window.link is Link.RECONNECTING, "away")
            say(window, "/who")
            chat = app.chat
            assert chat is not None
            await until(lambda: chat.pending == 1, "the question asked")
            window.close()
            await until(lambda: not showing(window), "the window closed")


@gui_test
async def test_closing_the_window_again_while_it_logs_out_leaves_at_once(
    tmp_path: Path, qtbot: QtBot
) -> None:
    """The daemon does not answer (paused), and the client would wait 60 s for it: closed
    again while it logs out, the window goes at once, and its line fails quietly."""
    patient = ClientConfig(timeout=60.0, keepalive=1.0)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, tmp_path / "chat.db")
            host, port = await daemon.start()
            await register(host, port, "alice")
            async with gui((host, port), tmp_path / "gui.json", config=patient) as app:
                window = await signed_in(app, "alice")
                assert daemon.process is not None
                daemon.process.send_signal(signal.SIGSTOP)
                try:
                    say(window, "never answered")
                    window.close()
                    assert showing(window)
                    chat = app.chat
                    assert chat is not None
                    window.close()
                    assert not window.isVisible()
                    await until(lambda: chat.connection.closed, "the session ended")
                    assert chat.connection.left
                finally:
                    daemon.process.send_signal(signal.SIGCONT)
            nursery.cancel_scope.cancel()


QUICK_TO_GIVE_UP = dataclasses.replace(FAST, link=LinkConfig(give_up_after=2.0))
"""Takes 2 s without an answer for the daemon gone (where nothing says so at once)."""


@gui_test
async def test_what_a_resumed_history_left_out_is_filled_in(tmp_path: Path, qtbot: QtBot) -> None:
    """Away (its network cut) while 650 messages are said, the window comes back to the
    newest 500 (what a resume brings) and reads the 150 before them too: all 650 are
    shown, in order, once."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(
                nursery, tmp_path / "chat.db", "--message-rate", "1000", "--message-burst", "1000"
            )
            address = await daemon.start()
            await register(*address, "alice", "bob")
            proxy = FaultProxy(address, seed=1)
            via = await nursery.start(proxy.run)
            async with (
                trio_chat.connect(*address, "bob", PASSWORD) as bob,
                gui(via, tmp_path / "gui.json", config=QUICK_TO_GIVE_UP) as app,
            ):
                window = await signed_in(app, "alice")
                await bob.say("before")
                await until(lambda: lines_with(window, "bob: before"), "bob's first")
                proxy.to_server.loss = proxy.to_client.loss = 1.0
                await until(lambda: window.link is Link.RECONNECTING, "away")
                for n in range(650):
                    bob.say_nowait(f"missed {n:03}")
                await bob.drain()
                proxy.to_server.loss = proxy.to_client.loss = 0.0
                told = "The 150 other messages missed are above too."
                await until(lambda: any(line.endswith(told) for line in texts(window)), "told")
                said = [line.split("  ", 1)[1] for line in messages(window)]
                assert said == ["bob: before", *(f"bob: missed {n:03}" for n in range(650))]
            nursery.cancel_scope.cancel()


def cancel(box: QMessageBox) -> None:
    box.button(QMessageBox.StandardButton.Cancel).click()


def cancel_any() -> None:
    """Answer Cancel to the question box up, if one is."""
    box = QApplication.activeModalWidget()
    if isinstance(box, QMessageBox):
        cancel(box)


def same_keys(database: Path, other: Path) -> None:
    """Give the daemon that will use `other` the keys of the one using `database`."""
    for mine, theirs in zip(key_paths(database), key_paths(other), strict=True):
        shutil.copy2(mine, theirs)


@pytest.mark.parametrize("key", ["the same key", "another key"])
@gui_test
async def test_the_end_of_the_session_is_shown(key: str, tmp_path: Path, qtbot: QtBot) -> None:
    """The daemon comes back with its key but without alice's account, so the session
    cannot resume; or another daemon, with another key, answers at its address: that key
    is not trusted on the quiet, and the room says what to do."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, tmp_path / "chat.db")
            host, port = await daemon.start()
            await register(host, port, "alice")
            trusted = KnownServers().get(host, port)
            async with gui((host, port), tmp_path / "gui.json") as app:
                window = await signed_in(app, "alice")
                await daemon.kill()
                # The window sees the daemon gone before another one answers at its address
                # (a daemon without this session's keys cannot say that it has ended).
                await until(lambda: window.link is Link.RECONNECTING, "reconnecting")
                if key == "the same key":
                    same_keys(tmp_path / "chat.db", tmp_path / "other.db")
                    why = "There is no account named 'alice'"
                else:
                    why = key_changed_sentence(host, port)
                await DaemonProcess(nursery, tmp_path / "other.db").start(port)
                say(window, "anyone?")
                await until(lambda: window.link is Link.LOST, "the session lost")
                assert window.status.text().startswith(f"Connection lost: {why.rstrip('.')}")
                ended = [line for line in texts(window) if "The session has ended: " in line]
                assert len(ended) == 1
                assert ended[0].split("The session has ended: ", 1)[1].startswith(why)
                await until(
                    lambda: any("not sent: alice: anyone?" in line for line in texts(window)),
                    "the line refused",
                )
                assert not pending(window)
                assert KnownServers().get(host, port) == trusted
                # Nothing more can be typed; the way on is to sign in again.
                assert not window.composer.isEnabled()
                assert window.composer.editor.placeholderText() == ENDED_HINT
                assert window.people_label.text() == "Last known online (1)"
                assert not window.people.isEnabled()
                assert window.sign_in_again_action.isEnabled()
                window.sign_in_again_action.trigger()
                dialog = app.dialog
                assert dialog is not None
                await until(lambda: dialog.isVisible(), "the dialog")
                assert app.window is window and window.isVisible()  # the room stays, ended
                if key == "the same key":  # the daemon has no account for alice: make one
                    again = await signed_in(app, "alice", create=True)
                    # The same person on the same daemon (its key): the room goes on.
                    assert again is window and again.composer.isEnabled()
                    await until(lambda: again.people_label.text() == "Online (1)", "who")
                else:  # trusted as it is, the key is not this daemon's: nobody signs in
                    fill(dialog, "alice", PASSWORD)
                    await until(lambda: "key" in dialog.problem.text(), "the key refused")
                    assert app.window is window and window.link is Link.LOST
            nursery.cancel_scope.cancel()


@gui_test
async def test_create_an_account_from_the_dialog(
    daemon: tuple[str, int], tmp_path: Path, qtbot: QtBot
) -> None:
    with trio.fail_after(20):
        async with gui(daemon, tmp_path / "gui.json") as app:
            assert app.dialog is not None
            assert not app.dialog.repeat.isVisibleTo(app.dialog)
            window = await signed_in(app, "dora", create=True)
            assert window.me == "dora" and window.online.names == ["dora"]
            host, port = daemon
            assert app.dialog.progress.text() == (
                f"Creating 'dora' and signing in to {host}:{port}…"
            )
            assert not app.dialog.create_account.isChecked()  # it exists: signing in next
            assert memory.load(tmp_path / "gui.json").name == "dora"
        async with trio_chat.connect(*daemon, "dora", PASSWORD, config=FAST) as dora:
            assert dora.name == "dora"  # the account is there for every client


@gui_test
async def test_ticking_create_an_account_at_a_daemon_that_takes_none_unticks_it_and_says_so(
    nursery: trio.Nursery, tmp_path: Path, qtbot: QtBot
) -> None:
    """Asked in the background as the box is ticked: no password is typed twice for
    nothing. The sentence is said where the dialog's problems are, the name's field
    described with it, and the cursor stays where the person is typing."""
    closed = dataclasses.replace(TEST_CONFIG, registrations=False)
    address = await nursery.start(serve, "127.0.0.1", 0, tmp_path / "chat.db", closed)
    with trio.fail_after(20):
        async with gui(address[:2], tmp_path / "gui.json", "kim") as app:
            dialog = app.dialog
            assert dialog is not None and dialog.focusWidget() is dialog.password
            dialog.create_account.click()
            assert dialog.repeat.isVisibleTo(dialog)
            await until(lambda: dialog.problem.isVisible(), "the daemon's answer told")
            assert dialog.problem.text() == REGISTRATIONS_CLOSED
            assert dialog.name.accessibleDescription() == REGISTRATIONS_CLOSED
            assert not dialog.create_account.isChecked()
            assert not dialog.repeat.isVisibleTo(dialog)
            assert dialog.focusWidget() is dialog.password
            assert KnownServers().get(*address[:2]) is None  # nothing trusted from it


async def stand_in() -> trio.socket.SocketType:
    """A socket on 127.0.0.1 standing in for a daemon, answering key requests only, as
    the test tells it to (`asked`, `answer`)."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    return sock


STAND_IN_KEY = public_key(bytes(range(32)))


async def asked(sock: trio.socket.SocketType) -> Any:
    """Where the next key request came from; it asks whether registrations are taken."""
    data, source = await sock.recvfrom(2048)
    assert data == key_request_datagram(asks_registrations=True)
    return source


async def answer(sock: trio.socket.SocketType, to: Any, *, registrations: bool) -> None:
    await sock.sendto(key_datagram(STAND_IN_KEY, registrations=registrations), to)


@gui_test
async def test_a_daemon_that_takes_registrations_is_asked_and_nothing_is_said(
    tmp_path: Path, qtbot: QtBot
) -> None:
    with trio.fail_after(10), await stand_in() as daemon:
        async with gui(daemon.getsockname(), tmp_path / "gui.json", "kim") as app:
            dialog = app.dialog
            assert dialog is not None
            dialog.create_account.click()
            source = await asked(daemon)
            dialog.create_account.blockSignals(True)  # unticked, and not yet seen, as
            dialog.create_account.setChecked(False)  # the answer comes: nothing is said
            dialog.create_account.blockSignals(False)
            await answer(daemon, source, registrations=False)
            await until(lambda: not app.asking, "the answer dropped")
            assert dialog.problem.isHidden()
            dialog.create_account.click()
            await answer(daemon, await asked(daemon), registrations=True)
            await until(lambda: not app.asking, "the answer taken")
            assert dialog.create_account.isChecked() and dialog.repeat.isVisibleTo(dialog)
            assert dialog.problem.isHidden() and dialog.notice.isHidden()
            assert KnownServers().get(*daemon.getsockname()) is None


@gui_test
async def test_an_answer_for_a_port_edited_since_it_was_asked_is_dropped(
    tmp_path: Path, qtbot: QtBot
) -> None:
    """One question at a time, about the server and port the dialog shows: the one under
    way goes as they are edited (a port typed on before `SETTLE` seconds is not asked
    at all); an answer that comes as the port is edited, before the edit is seen, is not
    taken."""
    with trio.fail_after(10), await stand_in() as first, await stand_in() as then:
        async with gui(first.getsockname(), tmp_path / "gui.json", "kim") as app:
            dialog = app.dialog
            assert dialog is not None
            dialog.create_account.click()
            source = await asked(first)
            dialog.port.blockSignals(True)  # edited, and not yet seen, as the answer comes
            dialog.port.setValue(then.getsockname()[1])
            dialog.port.blockSignals(False)
            await answer(first, source, registrations=False)
            await until(lambda: not app.asking, "the answer dropped")
            assert dialog.create_account.isChecked() and dialog.problem.isHidden()
            dialog.port.setValue(first.getsockname()[1])  # edited on at once, as typed:
            await until(lambda: app.asking, "the edit seen")
            dialog.port.setValue(then.getsockname()[1])
            asked_then = await asked(then)
            assert app.asking  # the question dropped does not end the one under way
            await then.sendto(b"after", first.getsockname())
            assert await first.recv(2048) == b"after"  # nothing asked of the port passed by
            await answer(then, asked_then, registrations=True)
            await until(lambda: not app.asking, "the answer taken")
            assert dialog.create_account.isChecked() and dialog.problem.isHidden()


@gui_test
async def test_signing_in_to_create_an_account_at_a_daemon_that_takes_none_sends_no_password(
    tmp_path: Path, qtbot: QtBot
) -> None:
    """The key checked as signing in begins says it too: the sentence, before a
    `register` (or any handshake) is sent."""
    with trio.fail_after(10), await stand_in() as daemon:
        host, port = daemon.getsockname()
        KnownServers().remember(host, port, STAND_IN_KEY)
        sent: list[bytes] = []

        async def answering() -> None:
            while True:
                data, source = await daemon.recvfrom(2048)
                sent.append(data)
                await answer(daemon, source, registrations=False)

        async with trio.open_nursery() as answers:
            answers.start_soon(answering)
            async with gui((host, port), tmp_path / "gui.json") as app:
                dialog = app.dialog
                assert dialog is not None
                fill(dialog, "kim", PASSWORD, create=True)
                await until(lambda: dialog.problem.isVisible(), "the daemon's answer told")
                assert dialog.problem.text() == REGISTRATIONS_CLOSED
                assert dialog.focusWidget() is dialog.name
                assert not dialog.create_account.isChecked() and not dialog.repeat.text()
                assert sent and set(sent) == {key_request_datagram(asks_registrations=True)}
                assert app.window is None
                # Told, the dialog is the person's again: ticked anew, the box is asked of.
                dialog.create_account.click()
                await until(lambda: not dialog.create_account.isChecked(), "asked again")
                assert dialog.problem.text() == REGISTRATIONS_CLOSED
            answers.cancel_scope.cancel()


@gui_test
async def test_sign_in_problems_are_told_at_the_field_to_fix(
    daemon: tuple[str, int], tmp_path: Path, qtbot: QtBot
) -> None:
    with trio.fail_after(30):
        await register(*daemon, "alice")
        async with gui(daemon, tmp_path / "gui.json") as app:
            dialog = app.dialog
            assert dialog is not None

            async def told(sentence: str, field: QWidget) -> None:
                await until(
                    lambda: dialog.problem.isVisible() and dialog.problem.text() == sentence,
                    repr(sentence),
                )
                assert dialog.focusWidget() is field

            fill(dialog, "alice", "not the password")
            await told("Wrong password for 'alice'.", dialog.password)
            fill(dialog, "nobody", PASSWORD)
            await told(
                "There is no account named 'nobody'; tick “Create an account” to create it.",
                dialog.name,
            )
            fill(dialog, "Alice", PASSWORD, create=True)
            await told(
                "The name 'Alice' is taken; choose another, or untick “Create an account” "
                "to sign in with it.",
                dialog.name,
            )
            # Too like alice (a capital I for the l): the sentence says whose name it is
            # like, and offers no sign-in to an account that does not exist.
            fill(dialog, "aIice", PASSWORD, create=True)
            await told(
                "The name 'aIice' could be mistaken for 'alice'; choose another.", dialog.name
            )
            # No account can have a name that mixes scripts: creating one is not offered.
            fill(dialog, "\u0430lice", PASSWORD)
            await told(
                "There is no account named '\u0430lice', and there cannot be: a name cannot mix "
                "scripts: U+006C LATIN SMALL LETTER L is Latin, but U+0430 CYRILLIC SMALL LETTER "
                "A is Cyrillic.",
                dialog.name,
            )
            fill(dialog, "no spaces", PASSWORD, create=True)
            await told(
                "A name may hold only letters, digits, '_', '-' and '.', not spaces.",
                dialog.name,
            )
            fill(dialog, "newbie", "short", create=True)
            await told("A password must be at least 8 characters long.", dialog.password)
            dialog.repeat.clear()
            type_text(dialog.repeat, "something else")
            press(dialog.repeat, Qt.Key.Key_Return)
            await told("The two passwords differ; type the same one twice.", dialog.repeat)

            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind(("127.0.0.1", 0))
                closed_port = probe.getsockname()[1]
            dialog.port.setValue(closed_port)
            fill(dialog, "alice", PASSWORD)
            await told(
                f"Cannot reach trio-chat at 127.0.0.1:{closed_port}; check the address and "
                "port, and that `trio-chat serve` is running there.",
                dialog.host,
            )
            assert app.window is None


@gui_test
async def test_older_messages_load_at_the_top(
    daemon: tuple[str, int], tmp_path: Path, qtbot: QtBot
) -> None:
    with trio.fail_after(30):
        await register(*daemon, "alice", "bob")
        async with trio_chat.connect(*daemon, "bob", PASSWORD, config=FAST) as bob:
            for number in range(1, 131):
                bob.say_nowait(f"message {number:03}")
            await bob.drain()
        async with gui(daemon, tmp_path / "gui.json") as app:
            window = await signed_in(app, "alice")
            view, model = window.view(""), window.model("")
            assert view is not None and model is not None
            await until(lambda: lines_with(window, "bob: message 130"), "the latest")
            assert len(messages(window)) < 130

            bar = view.verticalScrollBar()
            scrolls = 0
            while (count := len(messages(window))) < 130:
                scrolls += 1
                await until(lambda: bar.maximum() > 0 and not model.loading, "a full view")
                bar.setValue(bar.minimum())  # scrolled to the top
                above = model.row(view.indexAt(QPoint(1, 1)).row()).plain
                await until(lambda: len(messages(window)) > count, "older messages")
                await until(lambda: not model.loading, "the page")

                def top_row() -> str:
                    return model.row(view.indexAt(QPoint(1, 1)).row()).plain

                # The view keeps its place: the row that was on top still is, once Qt has
                # laid the new rows out (a busy machine may take a few turns of its loop).
                def kept(above: str = above) -> bool:
                    return top_row() == above

                await until(kept, "the view to keep its place", top_row)

            assert scrolls >= 2  # 130 messages take more than one scroll to the top
            said = [line.split(": ", 1)[1] for line in messages(window)]
            assert said == [f"message {number:03}" for number in range(1, 131)]
            await until(lambda: texts(window)[0] == BEGINNING, "the beginning")
            assert all(row.kind is not Kind.PENDING for row in model.rows)


@gui_test
async def test_keyboard_only(
    daemon: tuple[str, int], db_path: Path, tmp_path: Path, qtbot: QtBot
) -> None:
    with trio.fail_after(20):
        await register(*daemon, "alice")
        async with gui(daemon, tmp_path / "gui.json") as app:
            window = await signed_in(app, "alice")
            editor = window.composer.editor
            size = window.composer.size_label
            assert QApplication.focusWidget() is editor

            # Tab goes from the editor to Send, the conversations, the people online.
            press(editor, Qt.Key.Key_Tab)
            assert QApplication.focusWidget() is window.composer.send_button
            window.focusNextChild()
            focused = QApplication.focusWidget()
            assert focused is not None and window.tabs.isAncestorOf(focused)
            editor.setFocus()

            # The size shows near the limit; a line over it stays, unsent, until shortened.
            type_text(editor, "é" * 199)
            assert not size.isVisible()
            type_text(editor, "é" * 51)
            assert size.isVisible() and size.text() == "500/500 bytes"
            type_text(editor, "!")
            assert size.text() == "501/500 bytes: 1 too many"
            press(editor, Qt.Key.Key_Return)
            assert editor.text() == "é" * 250 + "!" and window.waiting == 0
            press(editor, Qt.Key.Key_Backspace)
            press(editor, Qt.Key.Key_Return)
            await until(lambda: lines_with(window, "alice: " + "é" * 250), "the long line")
            assert editor.text() == "" and not size.isVisible()

            # Commands work as in the terminal.
            say(window, "/who")
            await until(lambda: any("Online (1): alice" in t for t in texts(window)), "/who")
            say(window, "/nonsense")
            await until(lambda: any("Unknown command /nonsense" in t for t in texts(window)), "?")

            # Ctrl+I: about this server; the key fingerprint has its row.
            shortcut(window, "Ctrl+I")
            about = window.findChild(AboutDialog)
            assert about is not None and about.isVisible()
            host, port = daemon

            def value(name: str) -> str:
                assert about is not None
                label = about.findChild(QLabel, name)
                assert label is not None
                return label.text()

            assert (value("host"), value("port"), value("me")) == (host, str(port), "alice")
            assert value("fingerprint") == fingerprint(daemon_public_key(db_path))

            # Ctrl+Q leaves: the window logs out, then closes.
            about.close()
            window.activateWindow()
            await until(lambda: window.isActiveWindow(), "the window in front")
            shortcut(window, "Ctrl+Q")
            assert window.status.text() == (
                f"Logging out of {host}:{port}; close the window again to leave now"
            )
            await until(lambda: not showing(window), "the window closed")


@gui_test
async def test_an_address_that_cannot_be_a_host_name_is_told_at_its_field(
    daemon: tuple[str, int], tmp_path: Path, qtbot: QtBot
) -> None:
    """A name IDNA cannot encode (`_` is not allowed beside non-ASCII letters) fails before
    anything is sent: the dialog says so, and stays open for another try."""
    with trio.fail_after(20):
        await register(*daemon, "alice")
        async with gui(daemon, tmp_path / "gui.json") as app:
            dialog = app.dialog
            assert dialog is not None
            dialog.host.clear()
            type_text(dialog.host, "chat_é")
            fill(dialog, "alice", PASSWORD)
            await until(lambda: dialog.problem.isVisible(), "the problem told")
            port = daemon[1]
            assert dialog.problem.text() == (
                f"Cannot reach trio-chat at chat_é:{port}; check the address and port, and "
                "that `trio-chat serve` is running there."
            )
            assert dialog.focusWidget() is dialog.host
            assert app.window is None

            dialog.host.clear()
            type_text(dialog.host, "127.0.0.1")
            window = await signed_in(app, "alice")
            assert window.me == "alice"


@gui_test
async def test_after_clicking_send_what_is_typed_goes_to_the_message_line(
    daemon: tuple[str, int], tmp_path: Path, qtbot: QtBot
) -> None:
    with trio.fail_after(20):
        await register(*daemon, "alice")
        async with gui(daemon, tmp_path / "gui.json") as app:
            window = await signed_in(app, "alice")
            editor, send = window.composer.editor, window.composer.send_button
            type_text(editor, "sent with the mouse")
            QTest.mouseClick(send, Qt.MouseButton.LeftButton)
            await until(lambda: lines_with(window, "alice: sent with the mouse"), "the line")
            assert QApplication.focusWidget() is editor
            focused = QApplication.focusWidget()
            assert focused is not None
            type_text(focused, "and the next one")
            assert editor.text() == "and the next one"
            # The keyboard still reaches the button: Tab, then Space sends.
            press(editor, Qt.Key.Key_Tab)
            assert QApplication.focusWidget() is send
            press(send, Qt.Key.Key_Space)
            await until(lambda: lines_with(window, "alice: and the next one"), "the next line")


@gui_test
async def test_after_a_daemon_restart_nobody_joins_twice(tmp_path: Path, qtbot: QtBot) -> None:
    """bob was in the room before the daemon stopped: his session coming back with it is
    not news (as in the terminal); someone who really comes in afterwards is. bob talks
    through a proxy that is cut while the daemon is down, so that he comes back after
    the window does (else the window, still away, would not hear him come back)."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, tmp_path / "chat.db")
            host, port = await daemon.start()
            await register(host, port, "alice", "bob", "carol")
            proxy = FaultProxy((host, port), seed=1)
            via_host, via_port = await nursery.start(proxy.run)
            async with gui((host, port), tmp_path / "gui.json") as app:
                window = await signed_in(app, "alice")
                async with trio_chat.connect(
                    via_host, via_port, "bob", PASSWORD, config=FAST
                ) as bob:
                    await until(lambda: "bob" in window.online, "bob in the room")

                    def joins(name: str) -> int:
                        return sum(
                            line.endswith(f"* {name} joined the room") for line in texts(window)
                        )

                    assert joins("bob") == 1
                    proxy.to_server.loss = proxy.to_client.loss = 1.0
                    await daemon.kill()
                    await until(lambda: window.link is Link.RECONNECTING, "reconnecting")
                    await daemon.start(port)
                    await until(lambda: window.link is Link.CONNECTED, "connected again")
                    proxy.to_server.loss = proxy.to_client.loss = 0.0
                    await bob.say("back too")
                    await until(lambda: lines_with(window, "bob: back too"), "bob's line")
                    assert joins("bob") == 1, texts(window)
                    assert window.online.names == ["alice", "bob"]
                    async with trio_chat.connect(host, port, "carol", PASSWORD, config=FAST):
                        await until(lambda: joins("carol") == 1, "carol's arrival")
                    assert joins("bob") == 1
            nursery.cancel_scope.cancel()


@gui_test
async def test_a_private_message_to_a_name_too_long_for_any_account_says_so(
    daemon: tuple[str, int], tmp_path: Path, qtbot: QtBot
) -> None:
    """No account has a 70-character name: the refusal says that, in one sentence, rather
    than how the daemon's parser failed."""
    with trio.fail_after(20):
        await register(*daemon, "alice")
        async with gui(daemon, tmp_path / "gui.json") as app:
            window = await signed_in(app, "alice")
            name = "x" * 70
            say(window, f"s/{name}/are you there?")
            refusal = (
                f"not sent: alice to {name}: are you there? (There is no account named '{name}')"
            )
            await until(lambda: texts(window)[-1].endswith(refusal), "the refusal")
            # No tab is left behind for someone who does not exist.
            assert window.tab_text(name) is None and window.conversation(name) is None
            assert window.current_key == ""


@gui_test
async def test_a_private_message_to_nobody_leaves_no_tab_behind(
    daemon: tuple[str, int], tmp_path: Path, qtbot: QtBot
) -> None:
    """A mistyped name: the daemon says no account has it. The tab the line opened goes,
    and the refusal is told in the room."""
    with trio.fail_after(20):
        await register(*daemon, "alice")
        async with gui(daemon, tmp_path / "gui.json") as app:
            window = await signed_in(app, "alice")
            say(window, "s/zed/are you there?")
            refusal = "not sent: alice to zed: are you there? (There is no account named 'zed')"
            await until(lambda: texts(window)[-1].endswith(refusal), "the refusal")
            assert window.tab_text("zed") is None and window.conversation("zed") is None
            assert window.current_key == ""


@gui_test
async def test_older_room_messages_behind_a_private_conversation_load_at_once(
    daemon: tuple[str, int], tmp_path: Path, qtbot: QtBot
) -> None:
    """Pages of older messages hold private ones too: when the newest page brings nothing
    new to the room, scrolling to its top still loads the room's older lines."""
    with trio.fail_after(40):
        await register(*daemon, "alice", "bob")
        async with trio_chat.connect(*daemon, "bob", PASSWORD, config=FAST) as bob:
            for number in range(1, 31):
                bob.say_nowait(f"public {number:03}")
            for number in range(1, 61):
                bob.whisper_nowait("alice", f"secret {number:03}")
            for number in range(31, 41):
                bob.say_nowait(f"public {number:03}")
            await bob.drain()
        async with trio_chat.connect(*daemon, "alice", PASSWORD, config=FAST) as alice:
            assert len(await received(alice)) > 60  # read: not waiting on the next entry
        async with gui(daemon, tmp_path / "gui.json") as app:
            window = await signed_in(app, "alice")
            view, model = window.view(""), window.model("")
            assert view is not None and model is not None
            await until(lambda: lines_with(window, "bob: public 040"), "the latest")
            bar = view.verticalScrollBar()
            # Entering shows 20 lines, too few to fill the view: it asks for older ones at
            # once, as it does when scrolled to the top.
            while (count := len(messages(window))) < 40:
                await until(lambda: not model.loading, "the page")
                bar.setValue(bar.minimum())

                def more(count: int = count) -> bool:
                    return len(messages(window)) > count

                await until(more, "older messages")
            said = [line.split(": ", 1)[1] for line in messages(window)]
            assert said == [f"public {number:03}" for number in range(1, 41)]


@gui_test
async def test_private_messages_read_before_load_at_the_top_of_their_tab(
    daemon: tuple[str, int], tmp_path: Path, qtbot: QtBot
) -> None:
    """The daemon's `more` on entering counts public messages only: a conversation held in
    private, in a room with few public messages, still loads, page after page."""
    with trio.fail_after(30):
        await register(*daemon, "alice", "bob")
        async with trio_chat.connect(*daemon, "bob", PASSWORD, config=FAST) as bob:
            await bob.say("the only public line")
            for number in range(1, 71):
                bob.whisper_nowait("alice", f"secret {number:03}")
            await bob.drain()
        async with trio_chat.connect(*daemon, "alice", PASSWORD, config=FAST) as alice:
            assert len(await received(alice)) == 71  # read: not waiting on the next entry
        async with gui(daemon, tmp_path / "gui.json") as app:
            window = await signed_in(app, "alice")
            await until(lambda: texts(window)[0] == BEGINNING, "the room's beginning")
            assert window.tab_text("bob") is None
            window.open_conversation("bob")
            view, model = window.view("bob"), window.model("bob")
            assert view is not None and model is not None
            await until(lambda: lines_with(window, "bob: secret 070", "bob"), "the latest")
            bar = view.verticalScrollBar()
            while (count := len(messages(window, "bob"))) < 70:
                await until(lambda: bar.maximum() > 0 and not model.loading, "a full view")
                bar.setValue(bar.minimum())
                await until(lambda: len(messages(window, "bob")) > count, "older messages")
            said = [line.split(": ", 1)[1] for line in messages(window, "bob")]
            assert said == [f"secret {number:03}" for number in range(1, 71)]
            assert messages(window) == lines_with(window, "bob: the only public line")


@gui_test
async def test_a_tab_opened_with_a_name_in_other_capitals_takes_the_daemons_spelling(
    daemon: tuple[str, int], tmp_path: Path, qtbot: QtBot
) -> None:
    with trio.fail_after(20):
        async with bob_and_the_window(daemon, tmp_path / "gui.json") as (_bob, app):
            window = await signed_in(app, "alice")
            say(window, "s/BOB/hi there")
            await until(lambda: lines_with(window, "alice: hi there", "bob"), "the line stored")
            view = window.view("bob")
            assert view is not None and window.current_key == "bob"
            # Everywhere the tab names bob, as the daemon spells him: its label, the
            # message line's hint, its first row and what a screen reader says.
            assert window.tab_text("bob") == "bob"
            assert window.composer.editor.placeholderText() == "Message bob privately"
            assert texts(window, "bob")[0] == "Only you and bob see this conversation."
            assert view.accessibleName() == "Private conversation with bob"


@gui_test
async def test_a_password_changed_from_the_window(
    daemon: tuple[str, int], tmp_path: Path, qtbot: QtBot
) -> None:
    """Chat, Change password: two new ones that differ, and then a wrong current one, are
    told in the dialog, which stays; the right one changes it, the dialog goes, the room
    says so, and alice's session elsewhere ends."""
    new = "battery staple horse"
    host, port = daemon
    with trio.fail_after(30):
        async with bob_and_the_window(daemon, tmp_path / "gui.json") as (_bob, app):
            window = await signed_in(app, "alice")
            async with trio_chat.connect(host, port, "alice", PASSWORD) as elsewhere:
                window.password_action.trigger()
                dialog = window._password
                assert dialog is not None and dialog.isVisible()
                change = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
                type_text(dialog.current, PASSWORD)
                type_text(dialog.new, new)
                type_text(dialog.repeat, new + "!")
                change.click()
                assert dialog.problem.text() == "The two new passwords differ; type them again."
                dialog.repeat.setText(new)
                dialog.current.setText("not the password at all")
                change.click()
                await until(lambda: "Wrong password" in dialog.problem.text(), "the refusal")
                assert dialog.isVisible() and change.isEnabled()
                dialog.current.setText(PASSWORD)
                change.click()
                cancel = dialog.buttons.button(QDialogButtonBox.StandardButton.Cancel)
                assert not change.isEnabled() and cancel.isEnabled()  # on its way
                await until(lambda: window._password is None, "the dialog to close")
                note = "Your password is changed; your other sessions have ended."
                await until(lambda: any(note in line for line in texts(window)), "the note")
                with pytest.raises(Removed):
                    async for _event in elsewhere.events():
                        pass
            assert window.link is Link.CONNECTED
            async with trio_chat.connect(host, port, "alice", new) as alice:
                assert "alice" in await alice.who()


@gui_test
async def test_a_message_the_operator_removes_is_shown_no_more(
    tmp_path: Path, qtbot: QtBot
) -> None:
    with trio.fail_after(60):
        async with a_daemon_bob_and_the_window(tmp_path) as (_daemon, bob, app):
            window = await signed_in(app, "alice")
            spam = await bob.say("buy cheap watches")
            kept = await bob.say("sorry, wrong room")
            line = f"{clock(spam.ts)}  bob: buy cheap watches"
            await until(lambda: line in texts(window), "bob's message")
            removed = await trio.run_process(
                [*CLI, "messages", "remove", str(spam.id), "--db", str(tmp_path / "chat.db")],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            assert removed.returncode == 0, removed.stderr
            gone = f"{clock(spam.ts)}  bob: {UNSAID}"
            await until(lambda: gone in messages(window), "the message removed")
            assert line not in texts(window)
            assert f"{clock(kept.ts)}  bob: sorry, wrong room" in messages(window)


async def operator(database: Path, *args: str) -> None:
    done = await trio.run_process(
        [*CLI, *args, "--db", str(database)], capture_stdout=True, capture_stderr=True, check=False
    )
    assert done.returncode == 0, done.stderr


async def taken_out(window: RoomWindow, database: Path) -> None:
    """The operator takes alice out of the room (`accounts kick`)."""
    await operator(database, "accounts", "kick", "alice")
    await until(lambda: window.link is Link.LOST, "the session ended")


async def asked_to_sign_in_again(app: GuiApp, window: RoomWindow) -> SignInDialog:
    """Chat, Sign in again, in the room whose session ended: the dialog, once it shows."""
    window.sign_in_again_action.trigger()
    dialog = app.dialog
    assert dialog is not None
    await until(lambda: dialog.isVisible(), "the dialog")
    return dialog


@gui_test
async def test_signing_in_again_goes_on_in_the_room_that_ended(
    tmp_path: Path, qtbot: QtBot
) -> None:
    """The operator takes alice out while she has a line half typed and a whisper unread:
    signing in again, the same window goes on with both (a new one lost them, and Cancel
    in the dialog ended the program). Closed while the dialog is open, the ended room
    goes and the dialog stays; someone else signing in gets a window of their own."""
    database = tmp_path / "chat.db"
    with trio.fail_after(60):
        async with a_daemon_bob_and_the_window(tmp_path) as (_daemon, bob, app):
            window = await signed_in(app, "alice")
            await bob.whisper("alice", "psst, unread")
            await until(lambda: window.tab_text("bob") is not None, "bob's tab")
            unread = window.tab_text("bob")
            type_text(window.composer.editor, "half a thought")
            await taken_out(window, database)
            dialog = await asked_to_sign_in_again(app, window)
            dialog.reject()  # Cancel: back to the room as it was left
            await trio.testing.wait_all_tasks_blocked()
            assert not dialog.isVisible() and app.window is window and window.isVisible()
            assert window.link is Link.LOST and window.sign_in_again_action.isEnabled()
            await asked_to_sign_in_again(app, window)
            assert await signed_in(app, "alice") is window
            assert window.composer.isEnabled() and window.sign_in_again_action.isEnabled() is False
            assert window.composer.editor.text() == "half a thought"
            assert window.tab_text("bob") == unread
            assert len(lines_with(window, "bob: psst, unread", "bob")) == 1  # not twice
            assert any("Signed in again to" in line for line in texts(window))
            press(window.composer.editor, Qt.Key.Key_Return)
            await until(lambda: lines_with(window, "alice: half a thought"), "the line stored")
            # Taken out again; this time the window is closed while the dialog is open.
            await taken_out(window, database)
            await asked_to_sign_in_again(app, window)
            window.close()
            await until(lambda: app.window is None, "the ended room gone")
            assert dialog.isVisible()
            other = await signed_in(app, "bob")
            assert other is not window and other.me == "bob"


@gui_test
async def test_what_came_while_signed_out_fills_in_and_older_pages_still_load(
    tmp_path: Path, qtbot: QtBot
) -> None:
    """Signed in again in the same window: what the room said in between, more than the
    login's history holds, fills in with a note, not leaving a silent gap; a private tab
    looked at while nobody was there still loads its older messages."""
    database = tmp_path / "chat.db"
    with trio.fail_after(60):
        async with a_daemon_bob_and_the_window(tmp_path) as (daemon, bob, app):
            assert daemon.address is not None
            async with trio_chat.connect(*daemon.address, "alice", PASSWORD) as elsewhere:
                await bob.whisper("alice", "ancient")  # read here: not waiting any more
                assert "ancient" in [m.text for m in await received(elsewhere)]
            window = await signed_in(app, "alice")
            await bob.whisper("alice", "psst")
            await until(lambda: lines_with(window, "bob: psst", "bob"), "the whisper")
            await taken_out(window, database)
            view, model = window.view("bob"), window.model("bob")
            assert view is not None and model is not None
            window.tabs.setCurrentWidget(view)  # looked at, at its top: older ones asked
            view.verticalScrollBar().setValue(0)
            await until(lambda: model.loading, "older messages asked for, nobody to answer")
            await asked_to_sign_in_again(app, window)
            assert await signed_in(app, "alice") is window
            await bob.whisper("alice", "again")
            await until(lambda: lines_with(window, "bob: again", "bob"), "the new whisper")
            view.verticalScrollBar().setValue(0)
            await until(lambda: lines_with(window, "bob: ancient", "bob"), "the older one")
            # Taken out again, and the room says more meanwhile than a login's history.
            await taken_out(window, database)
            # A whisper that waits for her, older than what the login brings of the room,
            # does not end the filling in where it begins.
            await bob.whisper("alice", "psst while you were out")
            said = [await bob.say(f"meanwhile {n}") for n in range(25)]
            await asked_to_sign_in_again(app, window)
            assert await signed_in(app, "alice") is window
            every = [f"{clock(m.ts)}  bob: {m.text}" for m in said]
            await until(lambda: all(line in messages(window) for line in every), "all 25")
            # Said once the pages asked for end: all 25 may be in the first of them.
            await until(
                lambda: any("missed are above too" in line for line in texts(window)), "the note"
            )


@gui_test
async def test_signing_in_again_and_closing_at_once_ends_the_program(
    tmp_path: Path, qtbot: QtBot
) -> None:
    """Sign in again, and Quit before the program had a turn: Cancel in the dialog then
    ended nothing, with nothing on screen. A second Sign in again while signing in left
    the dialog's fields and button on, the sign-in still under way. A sign-in stopped
    with Cancel went on behind it, logged in, and took the whispers waiting for her."""
    database = tmp_path / "chat.db"
    with trio.fail_after(60):
        async with a_daemon_bob_and_the_window(tmp_path) as (daemon, bob, app):
            window = await signed_in(app, "alice")
            await taken_out(window, database)
            await bob.whisper("alice", "psst while out")
            dialog = await asked_to_sign_in_again(app, window)
            process = daemon.process
            assert process is not None
            process.send_signal(signal.SIGSTOP)
            try:
                fill(dialog, "alice", PASSWORD)  # on its way, the daemon paused
                await until(lambda: not dialog.sign_in_button.isEnabled(), "busy")
                window.sign_in_again_action.trigger()
                await trio.testing.wait_all_tasks_blocked()
                assert not dialog.sign_in_button.isEnabled() and dialog.isVisible()
                dialog.reject()  # the attempt stops; back to the ended room
                await trio.testing.wait_all_tasks_blocked()
                assert not dialog.isVisible() and dialog.sign_in_button.isEnabled()
                await until(lambda: QApplication.activeWindow() is window, "the room active")
            finally:
                process.send_signal(signal.SIGCONT)
            assert app.window is window and window.isVisible()
            await asked_to_sign_in_again(app, window)
            assert await signed_in(app, "alice") is window
            await until(lambda: lines_with(window, "bob: psst while out", "bob"), "the whisper")
            await taken_out(window, database)
            window.sign_in_again_action.trigger()
            window.quit_action.trigger()  # before the program's next turn
            await until(lambda: dialog.isVisible(), "the dialog")
            assert not showing(window)
            dialog.reject()
            await until(lambda: not shiboken6.isValid(dialog), "the program's end")


@gui_test
async def test_cancel_as_the_sign_in_is_made_leaves_the_ended_room(
    tmp_path: Path, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancel in the same turn as the daemon's welcome: the window showed the room as
    signed in, with nobody behind it, and closing it no longer ended the program."""
    database = tmp_path / "chat.db"
    real_connect = trio_chat.connect

    @contextlib.asynccontextmanager
    async def cancelled_as_it_connects(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with real_connect(*args, **kwargs) as chat:
            assert app.dialog is not None
            app.dialog.reject()
            with trio.CancelScope(shield=True):  # the program takes the Cancel meanwhile
                await trio.testing.wait_all_tasks_blocked()
            yield chat

    with trio.fail_after(60):
        async with a_daemon_bob_and_the_window(tmp_path) as (_daemon, _bob, app):
            window = await signed_in(app, "alice")
            await taken_out(window, database)
            dialog = await asked_to_sign_in_again(app, window)
            monkeypatch.setattr(app_module, "connect", cancelled_as_it_connects)
            fill(dialog, "alice", PASSWORD)
            await until(lambda: not dialog.isVisible(), "the dialog gone")
            await trio.testing.wait_all_tasks_blocked()
            assert app.window is window and window.link is Link.LOST
            assert window.sign_in_again_action.isEnabled()
            window.close()
            await until(lambda: not shiboken6.isValid(dialog), "the program's end")


@gui_test
async def test_a_muted_window_says_so_while_it_lasts(tmp_path: Path, qtbot: QtBot) -> None:
    """Muted before signing in, the window says so in its status bar and its message
    line's hint (it was told only when it tried to say something), until unmuted; signed
    in again after being unmuted while away, it says nothing of it."""
    database = tmp_path / "chat.db"
    with trio.fail_after(60):
        async with a_daemon_bob_and_the_window(tmp_path) as (_daemon, _bob, app):
            await operator(database, "accounts", "mute", "alice")
            window = await signed_in(app, "alice")
            await until(lambda: window.muted, "told it is muted")
            assert window.composer.editor.placeholderText() == MUTED_HINT
            assert window.status.text().endswith(MUTED_STATUS)
            assert any(MUTED_NOTICE in line for line in texts(window))
            await operator(database, "accounts", "unmute", "alice")
            await until(lambda: not window.muted, "told it is unmuted")
            assert any(UNMUTED_NOTICE in line for line in texts(window))
            assert window.composer.editor.placeholderText() == ROOM_HINT
            assert not window.status.text().endswith(MUTED_STATUS)
            await operator(database, "accounts", "mute", "alice")
            await until(lambda: window.muted, "muted again")
            await taken_out(window, database)
            await operator(database, "accounts", "unmute", "alice")
            await asked_to_sign_in_again(app, window)
            assert await signed_in(app, "alice") is window
            await trio.testing.wait_all_tasks_blocked()
            assert not window.muted and window.composer.editor.placeholderText() == ROOM_HINT
