"""The desktop window: `trio-chat gui`, built on the client API with PySide6.

Nothing imported here needs Qt, so `trio-chat` works without the `gui` extra; `launch()`
imports the window and says how to install what it needs when something is missing.
The modules without Qt (`rows`, `transcript`, `unread`, `editing`, `problems`, `status`,
`people`, `memory`, `colours`, `server_info`) hold the logic; the others hold widgets
(`message_view`, `composer`, `sign_in_dialog`, `room_window`, `about_dialog`) and the Trio
side that drives them (`guest`, `session`, `app`), and what is checked before Qt starts (`startup`).
"""

from __future__ import annotations

_PACKAGES = frozenset({"PySide6", "shiboken6"})

INSTALL_HINT = "The window needs PySide6; install it with `pip install 'trio-chat[gui]'`."


class GuiUnavailable(Exception):
    """The window cannot open here; the message says why, as one sentence."""


def launch(host: str | None, port: int | None, name: str | None) -> int:
    """Open the sign-in dialog, then the room; return the exit status when the window closes.

    `host`, `port` and `name` fill the dialog when given; otherwise it offers what was
    used last time. Raises `GuiUnavailable` when PySide6 is not installed, a
    library Qt needs is missing, or there is no display.
    """
    try:
        from . import app
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] in _PACKAGES:
            raise GuiUnavailable(INSTALL_HINT) from None
        raise
    except ImportError as error:  # Qt is installed, but a system library it loads is not
        raise GuiUnavailable(f"The window cannot start: {error}.") from None
    return app.main(host, port, name)
