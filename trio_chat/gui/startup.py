"""What must hold before Qt starts, checked first so that a person reads one sentence
instead of Qt ending the process: there is a display, and Qt's X11 plugin can load."""

from __future__ import annotations

import ctypes
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


def check(qt_directory: Path) -> None:
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
