"""The `trio-chat` command's entry point: Ctrl-C while it starts (while Python reads the
command's modules, about a third of a second) ends it with status 130 and no word, as at
any prompt, not with a traceback."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from .cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        sys.exit(130)
    run()
