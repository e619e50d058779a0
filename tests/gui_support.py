"""Driving `trio-chat gui` in tests: Trio runs as a guest of Qt's loop, as in the program.

Each GUI test is marked `@gui_test`, which has pytest-trio run it with `guest.run`
instead of `trio.run` (a module's `pytestmark` would not do: pytest-trio's trio_mode
puts its own `trio.run` marker closer to the test). Waiting is polling under the test's
`trio.fail_after`: never a nested Qt loop (`qtbot.waitUntil` would run Trio from inside
one of its own tasks).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import shiboken6
import trio
from PySide6.QtCore import QEvent, QPoint, Qt, QThread, QTimer
from PySide6.QtGui import QKeyEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

import trio_chat
from trio_chat.client import ChatClient, ClientConfig
from trio_chat.gui import guest
from trio_chat.gui.app import GuiApp
from trio_chat.gui.room_window import RoomWindow
from trio_chat.gui.rows import Kind
from trio_chat.gui.sign_in_dialog import SignInDialog
from trio_chat.gui.status import Link
from trio_chat.testing.daemon import DaemonProcess

gui_test = pytest.mark.trio(run=guest.run)

PASSWORD = "correct horse battery"
WAIT = 10.0
"""How long `until()` waits for one thing."""
FAST = ClientConfig(timeout=2.0, keepalive=1.0, reconnect_delay_max=0.3)
"""Quick to notice a daemon gone and quick to come back."""


def in_guest_run() -> bool:
    """Trio is running inside Qt's event loop (not on its own)."""
    return QApplication.instance() is not None and QThread.currentThread().loopLevel() > 0


async def until(
    check: Callable[[], object], what: str, about: Callable[[], str] | None = None
) -> None:
    """Poll until `check()` is true (the test's own `fail_after` still applies); fail saying
    what did not happen, and `about()` if given, after `WAIT` seconds."""
    with trio.move_on_after(WAIT):
        while True:
            if check():
                return
            await trio.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}" + (f": {about()}" if about else ""))


def type_text(widget: QWidget, text: str) -> None:
    """Type `text` into `widget` as key events carrying the text (any Unicode at all)."""
    for char in text:
        for kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
            event = QKeyEvent(kind, Qt.Key.Key_unknown, Qt.KeyboardModifier.NoModifier, char)
            QApplication.sendEvent(widget, event)


def press(
    widget: QWidget,
    key: Qt.Key,
    modifiers: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier,
) -> None:
    QTest.keyClick(widget, key, modifiers)


def shortcut(window: QWidget, keys: str) -> None:
    """Press a window's keyboard shortcut (`Ctrl+W`) as the person would."""
    sequence = {"Ctrl+W": Qt.Key.Key_W, "Ctrl+Q": Qt.Key.Key_Q, "Ctrl+I": Qt.Key.Key_I}
    target = window.focusWidget() or window
    QTest.keyClick(target, sequence[keys], Qt.KeyboardModifier.ControlModifier)


def double_click(widget: QWidget, at: QPoint) -> None:
    """A double-click as the system delivers it: a click, then the double-click event."""
    button, plain = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    QTest.mouseClick(widget, button, plain, at)
    QTest.mouseDClick(widget, button, plain, at)


def say(window: RoomWindow, line: str) -> None:
    """Type a line in the room's editor and press Enter."""
    editor = window.composer.editor
    type_text(editor, line)
    press(editor, Qt.Key.Key_Return)


def paste_and_send(window: RoomWindow, text: str) -> None:
    """Paste `text` into the room's editor, as from the clipboard, and press Enter."""
    QApplication.clipboard().setText(text)
    window.composer.editor.paste()
    press(window.composer.editor, Qt.Key.Key_Return)


def texts(window: RoomWindow, key: str = "") -> list[str]:
    """The plain text of a conversation's rows, as shown."""
    model = window.model(key)
    return [] if model is None else [row.plain for row in model.rows]


def messages(window: RoomWindow, key: str = "") -> list[str]:
    """The plain text of a conversation's stored messages (no notes, no pending lines)."""
    model = window.model(key)
    return [] if model is None else [row.plain for row in model.rows if row.kind is Kind.MESSAGE]


def pending(window: RoomWindow, key: str = "") -> list[str]:
    """The lines sent in a conversation that the daemon has not stored yet."""
    model = window.model(key)
    return [] if model is None else [row.plain for row in model.rows if row.kind is Kind.PENDING]


def lines_with(window: RoomWindow, text: str, key: str = "") -> list[str]:
    """The stored messages of a conversation that end with `text`."""
    return [line for line in messages(window, key) if line.endswith(text)]


async def register(host: str, port: int, *names: str) -> None:
    for name in names:
        await trio_chat.register(host, port, name, PASSWORD)


def fill(dialog: SignInDialog, name: str, password: str, *, create: bool = False) -> None:
    """Type a name and password into the dialog, as a person would, and press Enter."""
    dialog.name.clear()
    type_text(dialog.name, name)
    dialog.password.clear()
    type_text(dialog.password, password)
    dialog.create_account.setChecked(create)
    if create:
        dialog.repeat.clear()
        type_text(dialog.repeat, password)
    press(dialog.password, Qt.Key.Key_Return)


@asynccontextmanager
async def gui(
    address: tuple[str, int],
    memory: Path,
    name: str | None = None,
    config: ClientConfig = FAST,
) -> AsyncIterator[GuiApp]:
    """`trio-chat gui` with its dialog open; at the end its window (or dialog) closes and
    the program ends, as when the person closes it."""
    assert in_guest_run(), "mark GUI tests with @gui_test: they need Qt's loop"
    host, port = address
    app = GuiApp(host, port, name, memory_path=memory, config=config)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(app.run)
        await until(lambda: app.dialog is not None, "the sign-in dialog")
        try:
            yield app
        finally:
            window, dialog = app.window, app.dialog
            if window is not None and showing(window):
                # A test that failed with lines waiting would otherwise hang here, asked
                # whether to leave (Qt's nested loop holds Trio's timeouts too).
                QTimer.singleShot(0, _leave_if_asked)
                window.close()
            if dialog is not None and showing(dialog):
                dialog.reject()  # open over a room whose session ended, or alone


def showing(widget: QWidget | None) -> bool:
    """`widget` exists and is on screen (the program deletes its windows as it ends)."""
    return widget is not None and shiboken6.isValid(widget) and widget.isVisible()


def _leave_if_asked() -> None:
    box = QApplication.activeModalWidget()
    if isinstance(box, QMessageBox):
        for button in box.buttons():
            if box.buttonRole(button) is QMessageBox.ButtonRole.DestructiveRole:
                button.click()


@asynccontextmanager
async def bob_and_the_window(
    daemon: tuple[str, int], memory: Path, *others: str
) -> AsyncIterator[tuple[ChatClient, GuiApp]]:
    """Accounts for alice, bob and `others`; bob in the room on the Python API, and the
    window's sign-in dialog open (for alice)."""
    await register(*daemon, "alice", "bob", *others)
    async with (
        trio_chat.connect(*daemon, "bob", PASSWORD, config=FAST) as bob,
        gui(daemon, memory) as app,
    ):
        yield bob, app


async def signed_in(
    app: GuiApp, name: str, password: str = PASSWORD, *, create: bool = False
) -> RoomWindow:
    """Sign in from the dialog (creating the account first if asked); the room's window
    (a new one, or the ended session's going on), once it shows who is online."""
    assert app.dialog is not None
    fill(app.dialog, name, password, create=create)
    dialog = app.dialog
    await until(
        lambda: app.window is not None and app.window.link is Link.CONNECTED,
        "the room's window",
        about=lambda: f"the dialog says {dialog.problem.text()!r}",
    )
    window = app.window
    assert window is not None
    await until(lambda: len(window.online) > 0, "the list of people online")
    return window


@asynccontextmanager
async def a_daemon_bob_and_the_window(
    tmp_path: Path,
) -> AsyncIterator[tuple[DaemonProcess, ChatClient, GuiApp]]:
    """A daemon process of the test's own (to kill, pause or start again) on a database in
    `tmp_path`, accounts for alice and bob, bob in the room on the Python API, and the
    window's sign-in dialog open (for alice)."""
    async with trio.open_nursery() as nursery:
        daemon = DaemonProcess(nursery, tmp_path / "chat.db")
        host, port = await daemon.start()
        await register(host, port, "alice", "bob")
        async with (
            trio_chat.connect(host, port, "bob", PASSWORD, config=FAST) as bob,
            gui((host, port), tmp_path / "gui.json") as app,
        ):
            yield daemon, bob, app
        nursery.cancel_scope.cancel()
