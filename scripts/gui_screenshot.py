"""Render `trio-chat gui` in a short conversation and save it as docs/gui.png.

    python scripts/gui_screenshot.py [--out docs/gui.png]

Starts a daemon on 127.0.0.1 (port 0) with a database (and the clients' known_servers)
in a temporary directory, two people on the Python API (bob and 小明) and alice in the
window, plays a conversation (public lines, Chinese, an emoji, a private tab), and renders
the window offscreen.
Chinese and emoji need fonts (on Debian: fonts-noto-cjk, fonts-noto-color-emoji). The
picture is drawn at twice the size (QT_SCALE_FACTOR=2), to be sharp on dense screens.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_SCALE_FACTOR", "2")  # sharp on high-density screens

import trio
from PySide6.QtCore import QMessageLogContext, QtMsgType, qInstallMessageHandler
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

import trio_chat
from trio_chat.client import ChatClient
from trio_chat.engine import ServerConfig
from trio_chat.gui import guest
from trio_chat.gui.app import GuiApp
from trio_chat.gui.room_window import RoomWindow
from trio_chat.rules import name_key
from trio_chat.server import serve

PASSWORD = "a screenshot password"
REPOSITORY = Path(__file__).resolve().parents[1]


async def until(check: Callable[[], object], what: str) -> None:
    with trio.move_on_after(10):
        while True:
            if check():
                return
            await trio.sleep(0.01)
    raise RuntimeError(f"timed out waiting for {what}")


def typed(window: RoomWindow, line: str) -> None:
    window.composer.editor.setText(line)
    window.composer.submit()


async def heard(chat: ChatClient, text: str) -> None:
    """Wait until `chat` has seen a message with this text."""
    with trio.fail_after(10):
        async for event in chat.events():
            if isinstance(event, trio_chat.PublicMessage | trio_chat.PrivateMessage) and (
                event.text == text
            ):
                return


async def play(out: Path, workdir: Path) -> None:
    config = ServerConfig(register_burst=100, message_burst=100, message_rate=100.0)
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(serve, "127.0.0.1", 0, workdir / "chat.db", config)
        for name in ("alice", "bob", "小明"):
            await trio_chat.register(host, port, name, PASSWORD)
        async with (
            trio_chat.connect(host, port, "bob", PASSWORD) as bob,
            trio_chat.connect(host, port, "小明", PASSWORD) as xiaoming,
        ):
            await bob.say("Morning all! Is the build green again?")
            await xiaoming.say("Yes: build 1234 passed, all 327 tests 🎉")
            await bob.say("Great. Who is bringing the cake on Friday?")

            gui = GuiApp(host, port, "alice", memory_path=workdir / "gui.json", config=None)
            nursery.start_soon(gui.run)
            await until(lambda: gui.dialog is not None, "the sign-in dialog")
            assert gui.dialog is not None
            gui.dialog.password.setText(PASSWORD)
            gui.dialog.accept()
            await until(lambda: gui.window is not None, "the room")
            window = gui.window
            assert window is not None
            window.resize(820, 410)
            await until(lambda: len(window.online) == 3, "the people online")

            typed(window, "Me! Chocolate or lemon? <b>vote</b> below")
            await heard(bob, "Me! Chocolate or lemon? <b>vote</b> below")
            await xiaoming.say("巧克力，谢谢！我周五早上九点到。")
            await bob.say("Lemon 🍋 — and I'll bring coffee ☕")
            secret = "psst: it's 小明's birthday on Friday, don't tell 🤫"
            await bob.whisper("alice", secret)
            await until(lambda: window.tab_text(name_key("bob")) is not None, "bob's tab")
            window.open_conversation("bob")
            reply = "Oh nice! I'll get candles 🕯️ and a card"
            typed(window, reply)
            await heard(bob, reply)
            await bob.whisper("alice", "Perfect, thanks!")
            bob_model = window.model(name_key("bob"))
            assert bob_model is not None
            await until(lambda: bob_model.rows[-1].plain.endswith("thanks!"), "bob's thanks")
            room = window.view("")
            assert room is not None
            window.tabs.setCurrentWidget(room)
            await xiaoming.say("See you all at the stand-up in 5 minutes")
            await bob.whisper("alice", "I'll sign the card at lunch")
            await until(lambda: window.tab_text(name_key("bob")) == "bob (1)", "the unread count")
            typed(window, "On my way")
            await until(lambda: window.waiting == 0, "alice's line to be stored")
            await trio.sleep(0.2)  # the views lay themselves out

            out.parent.mkdir(parents=True, exist_ok=True)
            if not window.grab().save(str(out)):
                raise RuntimeError(f"could not write {out}")
            print(f"wrote {out}")
            window.close()
        nursery.cancel_scope.cancel()


def _quiet(kind: QtMsgType, _context: QMessageLogContext, message: str) -> None:
    # The offscreen platform cannot pass size hints to a window manager; nothing is lost.
    if "propagateSizeHints" not in message:
        print(message, file=sys.stderr)


def dark(app: QApplication) -> None:
    """A dark palette, as a desktop in dark mode gives (to see the window in both)."""
    app.setStyle(QStyleFactory.create("Fusion"))
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: "#2b2b2b",
        QPalette.ColorRole.WindowText: "#e6e6e6",
        QPalette.ColorRole.Base: "#1f1f1f",
        QPalette.ColorRole.AlternateBase: "#2b2b2b",
        QPalette.ColorRole.Text: "#e6e6e6",
        QPalette.ColorRole.Button: "#353535",
        QPalette.ColorRole.ButtonText: "#e6e6e6",
        QPalette.ColorRole.Highlight: "#3d7ad6",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.PlaceholderText: "#8c8c8c",
        QPalette.ColorRole.ToolTipBase: "#353535",
        QPalette.ColorRole.ToolTipText: "#e6e6e6",
    }
    for role, colour in roles.items():
        palette.setColor(role, QColor(colour))
    app.setPalette(palette)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPOSITORY / "docs" / "gui.png")
    parser.add_argument("--dark", action="store_true", help="render with a dark palette")
    options = parser.parse_args()
    qInstallMessageHandler(_quiet)
    with tempfile.TemporaryDirectory() as workdir:
        # The throwaway daemon's key is trusted there, not in your own known_servers.
        os.environ["XDG_DATA_HOME"] = workdir
        app = guest.application()
        app.setApplicationName("trio-chat")
        if options.dark:
            dark(app)
        guest.run(play, options.out, Path(workdir))
    sys.exit(0)


if __name__ == "__main__":
    main()
