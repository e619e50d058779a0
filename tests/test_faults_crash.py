"""Crashes: the daemon is SIGKILLed during a registration storm and during chat, then
restarted on the same database. What it acknowledged must survive; what clients saw
must be what is stored; clients resend what was not acknowledged, and nothing shows twice.

The engine-level tests pin down the rule that makes this hold: nobody is shown a message
(live or in a login's history) before it is on disk, since a crash can still lose it.
"""

from __future__ import annotations

from pathlib import Path

import trio

from tests.crash_run import chat_through_kills, registration_storm


async def test_every_acknowledged_registration_survives_a_sigkill(tmp_path: Path) -> None:
    with trio.fail_after(60):
        result = await registration_storm(tmp_path, seed=3, accounts=24, kill_within=0.5)
    assert result.kills == 1
    assert result.integrity == "ok"
    assert result.acknowledged  # some made it before or after the kill
    assert sorted(result.logged_in) == sorted(result.acknowledged)
    assert result.accounts_stored >= len(result.acknowledged)
    assert result.accounts_stored <= result.attempted


async def test_chat_through_sigkills_loses_nothing_and_shows_nothing_twice(
    tmp_path: Path,
) -> None:
    with trio.fail_after(90):
        result = await chat_through_kills(tmp_path, seed=4, kills=2, senders=2)
    assert result.kills == 2
    assert result.errors == []
    assert result.integrity == "ok"
    assert result.acknowledged == result.sent > 0
    assert result.missing_from_storage == 0
    assert result.stored == result.acknowledged
    assert result.stored_twice == 0
    assert result.seen == result.stored
    assert result.seen_twice == 0
    assert result.seen_not_stored == 0
    assert result.out_of_order == 0
    assert result.reconnects == result.disconnects >= 1
