"""What the sign-in dialog remembers between runs: host, port and name, never the password.

A small JSON file in the user's config directory (`$XDG_CONFIG_HOME/trio-chat/gui.json`,
by default `~/.config/trio-chat/gui.json`). A missing or unreadable file gives the
defaults; a file that cannot be written is not an error (the window works without it).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1600


@dataclass(frozen=True, slots=True)
class Remembered:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    name: str = ""


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "trio-chat" / "gui.json"


def load(path: Path) -> Remembered:
    """What was saved at `path`, or the defaults for whatever is missing or unusable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Remembered()
    if not isinstance(data, dict):
        return Remembered()
    host, port, name = data.get("host"), data.get("port"), data.get("name")
    return Remembered(
        host=host if isinstance(host, str) and host else DEFAULT_HOST,
        port=port if isinstance(port, int) and 0 < port < 65536 else DEFAULT_PORT,
        name=name if isinstance(name, str) else "",
    )


def save(path: Path, remembered: Remembered) -> None:
    """Write `remembered` to `path` (atomically: a crash leaves the old file or the new)."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".tmp")
        partial.write_text(json.dumps(asdict(remembered)) + "\n", encoding="utf-8")
        partial.replace(path)
