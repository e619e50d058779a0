"""`trio-chat gui` where PySide6 is not installed: one sentence and exit status 2, while
every other command works as before (the CLI imports Qt only for `gui`)."""

from __future__ import annotations

import subprocess
import sys

from trio_chat.gui import INSTALL_HINT

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
