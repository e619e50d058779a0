"""What must hold before Qt starts, checked first so that a person reads one sentence
instead of Qt ending the process: there is a display, Qt's X11 plugin can load, and the
PySide6 installed keeps Python's count of references to None."""

from __future__ import annotations

import ctypes
import gc
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from . import GuiUnavailable

X11_PACKAGES = (
    "libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 "
    "libxkbcommon-x11-0"
)
_MISSING = re.compile(r"(\S+\.so[.\d]*): cannot open shared object file")


def missing_library(error: str) -> str | None:
    """The library a failed `dlopen` says it could not find, if it says one."""
    match = _MISSING.search(error)
    return match.group(1) if match else None


def uses_x11(environ: Mapping[str, str]) -> bool:
    """Whether Qt will use its X11 plugin (xcb) with these environment variables."""
    platform = environ.get("QT_QPA_PLATFORM", "")
    if platform:
        return platform.startswith("xcb")
    return bool(environ.get("DISPLAY")) and not environ.get("WAYLAND_DISPLAY")


def drops_none_references() -> bool:
    """Whether this PySide6 loses a reference to None each time Qt reads a role that a
    model answers with None (PySide6 6.12.0 under Python 3.11, where None is not yet
    immortal). The window's message list is read so hundreds of times a second as it
    repaints, and Python ends the process ("deallocating None") after a few hundred
    messages."""
    from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt

    index_type = QModelIndex | QPersistentModelIndex

    class Probe(QAbstractListModel):
        def rowCount(self, parent: index_type = QModelIndex()) -> int:  # noqa: B008 (Qt's)
            return 1

        def data(self, index: index_type, role: int = 0) -> object:
            return None

    probe = Probe()
    index = probe.index(0)
    reads = 10
    collecting = gc.isenabled()
    gc.disable()  # a collection meanwhile could free objects that held None
    try:
        before = sys.getrefcount(None)
        for _read in range(reads):
            index.data(Qt.ItemDataRole.DecorationRole)  # through Qt's C++, as a view does
        lost = before - sys.getrefcount(None)
    finally:
        if collecting:
            gc.enable()
    return lost >= reads  # one a read: the fault, not a chance drop


def check(qt_directory: Path) -> None:
    """Raise `GuiUnavailable` when no window can open here, or would not stay open."""
    check_display(qt_directory)
    if drops_none_references():
        from PySide6 import __version__ as version

        raise GuiUnavailable(
            f"PySide6 {version} would end the window after a few hundred messages with "
            f"Python {sys.version_info.major}.{sys.version_info.minor}; install another "
            "version (pip install 'PySide6-Essentials!=6.12.0') or use Python 3.12 or later."
        )


def check_display(qt_directory: Path) -> None:
    """Raise `GuiUnavailable` when no window can open here."""
    if not sys.platform.startswith("linux"):
        return
    environ = os.environ
    if not any(environ.get(name) for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")):
        raise GuiUnavailable(
            "There is no display to open a window on (neither DISPLAY nor WAYLAND_DISPLAY "
            "is set); use `trio-chat chat` in a terminal instead."
        )
    display = environ.get("DISPLAY", "")
    if uses_x11(environ) and display and not x_server_answers(display):
        # Told first: with no X server to reach, installing libraries would not help.
        raise GuiUnavailable(
            f"The display {display} (DISPLAY) does not answer; check that its X server runs "
            "and that you may use it, or use `trio-chat chat` in a terminal instead."
        )
    plugin = qt_directory / "plugins" / "platforms" / "libqxcb.so"
    if uses_x11(environ) and plugin.exists():
        try:
            ctypes.CDLL(str(plugin))
        except OSError as error:
            missing = missing_library(str(error))
            needs = f"needs {missing}, which is not installed" if missing else f"fails ({error})"
            raise GuiUnavailable(
                f"Qt's X11 support {needs}; on Debian or Ubuntu: apt install {X11_PACKAGES}."
            ) from None


def x_server_answers(display: str) -> bool:
    """Whether the X server of `display` takes a connection, as Qt's X11 plugin opens
    one (libxcb): Qt ends the process (SIGABRT) when it cannot. True if libxcb is not
    there to ask (the plugin check tells of that)."""
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:
        return True
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = xcb.xcb_connect(display.encode(), None)
    try:
        return bool(xcb.xcb_connection_has_error(connection) == 0)
    finally:
        xcb.xcb_disconnect(connection)
