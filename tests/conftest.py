"""Shared fixtures: a real daemon on 127.0.0.1, port 0, with its own database."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from trio_chat.engine import ServerConfig
from trio_chat.server import serve

# A run started with SIGHUP ignored still tests what a closed terminal does (`hangups`).
from .hangups import pytest_configure

# A test past its timeout inside Trio is stopped by Trio's own Ctrl-C (see `timeouts`).
from .timeouts import pytest_pyfunc_call, pytest_timeout_set_timer

__all__ = ["pytest_configure", "pytest_pyfunc_call", "pytest_timeout_set_timer"]

# The window's tests draw offscreen: no display is needed, and they run the same everywhere.
# Qt reads this when the first QApplication is made, after this file is loaded.
os.environ["QT_QPA_PLATFORM"] = "offscreen"

# Generous limits: tests register, connect and chat faster than people do, all from one
# address.
TEST_CONFIG = ServerConfig(
    register_burst=1000,
    register_burst_total=1000,
    message_burst=1000,
    message_rate=1000.0,
    handshake_burst=1000,
)


@pytest.fixture(autouse=True)
def own_data_folder(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test trusts daemons' keys in a `known_servers` of its own (children inherit it):
    daemons started on a port another test used have other keys."""
    folder = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("XDG_DATA_HOME", str(folder))
    return folder


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "chat.db"


@pytest.fixture
async def daemon(nursery: trio.Nursery, db_path: Path) -> tuple[str, int]:
    """A running daemon; its address."""
    address = await nursery.start(serve, "127.0.0.1", 0, db_path, TEST_CONFIG)
    return address[0], address[1]


@pytest.fixture
def two_hours_east(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The local time zone two hours ahead of UTC, called `XYZ`."""
    monkeypatch.setenv("TZ", "XYZ-2")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
