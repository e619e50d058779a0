"""The `trio-chat` command: parses, prompts, and calls the daemon or the client API.

Modules by concern: `app` (the Typer app, its commands in order, `main`), `serve` (the
daemon), `account` (`register`, `login`, `password`, `chat`), `daemon_key` (`key`,
`trust`, and the check of the daemon's key before each client command), `backup` (and
`restore`), `accounts` (the operator's list, lock, unlock, mute, unmute, password and
kick), `bans` (the addresses turned away), `messages` (the room's, listed and removed),
`gui`, `options` (what the commands share), `prompts` (a name, a password, yes or
no), `exits` (exit statuses, and the one sentence each failure is told in). The signals
that stop a command are `trio_chat.stop_signals`, which the window shares.
"""

from .app import app, main
from .exits import ExitCode, exit_code_for, fail

__all__ = ["ExitCode", "app", "exit_code_for", "fail", "main"]
