"""`trio-chat gui` where it cannot open a window (no PySide6, no display, a library Qt
needs is missing): one sentence and exit status 2, while every other command works as
before (the CLI imports Qt only for `gui`)."""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio
import trio.testing
from typer.testing import CliRunner

import trio_chat.gui
from trio_chat.cli import app
from trio_chat.gui import INSTALL_HINT, GuiUnavailable, startup

runner = CliRunner()

_WITHOUT_QT = """
import sys
sys.modules["PySide6"] = None  # as if it were not installed
sys.argv = ["trio-chat", *sys.argv[1:]]
import trio_chat.cli
trio_chat.cli.main()
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", _WITHOUT_QT, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_without_pyside6_the_gui_says_how_to_install_it() -> None:
    result = _run("gui", "--name", "alice")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == INSTALL_HINT
    assert "pip install 'trio-chat[gui]'" in INSTALL_HINT
    assert INSTALL_HINT.count(".") == 1 and INSTALL_HINT.endswith(".")


_BROKEN_WINDOW = """
import sys
import trio_chat.gui.app
def broken(*args):
    raise ExceptionGroup("a nursery's", [RuntimeError("the window broke")])
trio_chat.gui.app.main = broken
sys.argv = ["trio-chat", "gui", "--name", "alice"]
import trio_chat.cli
trio_chat.cli.main()
"""


def test_a_fault_in_the_window_is_a_sentence_not_a_traceback() -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    command = [sys.executable, "-c", _BROKEN_WINDOW]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "trio-chat stopped on an unexpected error (RuntimeError: the window broke); "
        "please report it."
    )


def test_the_window_is_given_what_was_typed_and_its_status_is_the_commands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[tuple[str | None, int | None, str | None]] = []

    def launch(host: str | None, port: int | None, name: str | None) -> int:
        opened.append((host, port, name))
        return 3  # as the window's own exit status

    monkeypatch.setattr(trio_chat.gui, "launch", launch)
    env = {"TRIO_CHAT_HOST": None, "TRIO_CHAT_PORT": None, "TRIO_CHAT_NAME": None}
    result = runner.invoke(app, ["gui", "--port", "1601", "--name", "alice"], env=env)
    assert result.exit_code == 3
    assert opened == [(None, 1601, "alice")]  # the host: the last one used
    # No daemon can be reached on port 0: refused before any window opens.
    result = runner.invoke(app, ["gui", "--port", "0"], env=env)
    assert result.exit_code == 2
    assert "--port" in result.stderr and len(opened) == 1


def test_without_pyside6_the_other_commands_work() -> None:
    result = _run("register", "--help")
    assert result.returncode == 0, result.stderr
    assert "Create an account" in result.stdout


def test_the_cli_imports_no_qt() -> None:
    code = (
        "import sys, trio_chat.cli\n"
        "print([m for m in sys.modules if m.startswith(('PySide6', 'shiboken6'))])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_without_a_display_the_gui_says_so() -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }
    command = [sys.executable, "-m", "trio_chat", "gui"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("There is no display to open a window on")


def test_a_display_that_does_not_answer_is_told_before_qt_starts() -> None:
    # A stale DISPLAY (an ssh session's, gone): Qt ended the process with SIGABRT (134).
    env = {key: value for key, value in os.environ.items() if key not in ("WAYLAND_DISPLAY",)}
    env |= {"DISPLAY": ":9817", "QT_QPA_PLATFORM": ""}
    command = [sys.executable, "-m", "trio_chat", "gui"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "The display :9817 (DISPLAY) does not answer; check that its X server runs and "
        "that you may use it, or use `trio-chat chat` in a terminal instead.\n"
    )


def test_qt_x11_plugin_problems_are_told_before_qt_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    error = "libxcb-cursor.so.0: cannot open shared object file: No such file or directory"
    assert startup.missing_library(error) == "libxcb-cursor.so.0"
    assert startup.missing_library("something else") is None
    assert startup.uses_x11({"DISPLAY": ":0"})
    assert not startup.uses_x11({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"})
    assert startup.uses_x11({"QT_QPA_PLATFORM": "xcb", "WAYLAND_DISPLAY": "wayland-0"})
    assert not startup.uses_x11({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"})

    plugin = tmp_path / "plugins" / "platforms" / "libqxcb.so"
    plugin.parent.mkdir(parents=True)
    plugin.write_bytes(b"not a shared object")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(startup, "x_server_answers", lambda display: True)  # it does; Qt won't
    with pytest.raises(GuiUnavailable, match=r"^Qt's X11 support fails \(.*libxcb-cursor0"):
        startup.check(tmp_path)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    startup.check(tmp_path)  # offscreen: no X11 plugin needed


def test_a_library_qt_x11_plugin_lacks_is_named_with_the_packages_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = tmp_path / "plugins" / "platforms" / "libqxcb.so"
    plugin.parent.mkdir(parents=True)
    plugin.write_bytes(b"")
    missing = "libxcb-cursor.so.0: cannot open shared object file: No such file or directory"

    def cannot_load(path: str) -> None:
        raise OSError(missing)

    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(startup, "x_server_answers", lambda display: True)
    monkeypatch.setattr(ctypes, "CDLL", cannot_load)
    with pytest.raises(GuiUnavailable) as refused:
        startup.check_display(tmp_path)
    assert str(refused.value) == (
        "Qt's X11 support needs libxcb-cursor.so.0, which is not installed; on Debian or "
        f"Ubuntu: apt install {startup.X11_PACKAGES}."
    )


def test_an_x_server_that_does_not_answer_is_no_matter_on_wayland(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Wayland session with XWayland's DISPLAY set and its server gone: Qt opens its
    # window on Wayland, and the dead X server never mattered.
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    monkeypatch.setenv("DISPLAY", ":9817")
    monkeypatch.setattr(startup, "x_server_answers", lambda display: False)
    startup.check_display(tmp_path)
    monkeypatch.delenv("WAYLAND_DISPLAY")
    with pytest.raises(GuiUnavailable, match=r"^The display :9817 \(DISPLAY\) does not answer"):
        startup.check_display(tmp_path)


def test_a_pyside6_that_loses_references_to_none_is_told_before_qt_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PySide6 6.12.0 under Python 3.11 ended the window after a few hundred messages
    (pyproject.toml skips it): the one installed does not, and one that did would be
    named in one sentence before any window opens."""
    assert not startup.drops_none_references()
    monkeypatch.setattr(startup, "drops_none_references", lambda: True)
    with pytest.raises(GuiUnavailable, match=r"^PySide6 [\d.]+ would end the window after"):
        startup.check(Path("."))


async def test_under_nohup_the_window_goes_on_when_its_terminal_closes() -> None:
    """`nohup trio-chat gui &`: SIGHUP ignored from the start stays ignored (the window
    does not end when the terminal that started it closes), as for the other commands."""
    from trio_chat.gui.app import _on_stop_signals  # Qt's: imported only here

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup does
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_on_stop_signals)
            await trio.testing.wait_all_tasks_blocked()
            os.kill(os.getpid(), signal.SIGHUP)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()  # still running: it did not take the signal
    finally:
        signal.signal(signal.SIGHUP, before)


def test_a_window_stopped_by_a_signal_ends_with_status_130_unless_a_fault_came_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SIGTERM or SIGHUP, out of Trio's nurseries, ends `trio-chat gui` as Ctrl-C does;
    a fault that came out with it is not hidden behind it."""
    from trio_chat.gui import app, guest, memory  # Qt's: imported only here

    raised: list[BaseException] = [app.Stopped()]

    def stopped(*_args: object, **_kwargs: object) -> None:
        raise BaseExceptionGroup("the room", raised)

    monkeypatch.setattr(startup, "check", lambda _qt: None)
    monkeypatch.setattr(memory, "default_path", lambda: tmp_path / "gui.json")
    monkeypatch.setattr(guest, "run", stopped)
    assert app.main(None, None, None) == 130
    raised.append(ValueError("a fault"))
    with pytest.raises(BaseExceptionGroup):
        app.main(None, None, None)


def test_a_reference_to_none_lost_at_each_read_is_the_fault_and_a_fewer_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The probe reads a role 10 times: the faulty PySide6 loses exactly one reference a
    read; fewer, a chance drop meanwhile, is not it. Python's collector runs again after."""
    for before, after, fault in ((1000, 990, True), (1000, 991, False)):
        counts = iter((before, after))

        def getrefcount(_none: object, counts: Iterator[int] = counts) -> int:
            return next(counts)

        monkeypatch.setattr(startup, "sys", SimpleNamespace(getrefcount=getrefcount))
        assert startup.drops_none_references() is fault
        assert gc.isenabled()
