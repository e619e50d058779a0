"""`trio-chat gui`: chat in a window (Qt is imported only when the command runs)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .exits import ExitCode, fail, unexpected


def _last_used(
    flag: str, *more: str, envvar: str, what: str, otherwise: str = "", **checks: Any
) -> Any:
    """An option of `trio-chat gui`: without it, the sign-in dialog offers the last one used."""
    default = f"the last one used, else {otherwise}" if otherwise else "the last one used"
    return typer.Option(flag, *more, envvar=envvar, help=f"{what} (default: {default}).", **checks)


def gui(
    name: Annotated[
        str | None, _last_used("--name", "-n", envvar="TRIO_CHAT_NAME", what="Your account name")
    ] = None,
    host: Annotated[
        str | None,
        _last_used(
            "--host", envvar="TRIO_CHAT_HOST", what="Address of the daemon", otherwise="127.0.0.1"
        ),
    ] = None,
    port: Annotated[
        int | None,
        _last_used(
            "--port",
            envvar="TRIO_CHAT_PORT",
            what="UDP port",
            otherwise="1600",
            min=1,
            max=65535,
            metavar="PORT",
        ),
    ] = None,
) -> None:
    """Chat in a window: sign in, talk in the room and in private tabs (needs PySide6)."""
    from ..gui import GuiUnavailable, launch

    try:
        code = launch(host, port, name)
    except GuiUnavailable as error:
        raise fail(str(error), ExitCode.USAGE) from None
    except Exception as error:  # a fault of the window's own: a sentence, not a traceback
        raise unexpected(error) from None
    raise typer.Exit(code)
