"""Crashes: the daemon is SIGKILLed during a registration storm and during chat, then
restarted on the same database. What it acknowledged must survive; what clients saw
must be what is stored; clients resend what was not acknowledged, and nothing shows twice.

The engine-level tests pin down the rule that makes this hold: nobody is shown a message
(live or in a login's history) before it is on disk, since a crash can still lose it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trio

from trio_chat import wire
from trio_chat.engine import ServerConfig
from trio_chat.records import Snapshot
from trio_chat.testing.crash_run import chat_through_kills, registration_storm
from trio_chat.testing.driver import EngineDriver, Peer


def test_no_one_is_shown_a_message_before_it_is_on_disk() -> None:
    driver = EngineDriver(auto_commit=False)
    for name in ("alice", "bob", "carol"):
        driver.add_account(name, f"{name}-password")
    alice = Peer(driver, "alice", "alice-password", ("10.0.0.1", 1))
    bob = Peer(driver, "bob", "bob-password", ("10.0.0.2", 1))
    for peer in (alice, bob):
        peer.send()
        peer.settle()
    alice.send(wire.Say(text="public", cid="p"), wire.Whisper(to="bob", text="private", cid="w"))
    # A session that logs in now must not get them in its history either.
    carol = Peer(driver, "carol", "carol-password", ("10.0.0.3", 1))
    carol.send()
    for peer in (alice, bob, carol):
        peer.settle()
    assert not bob.of_type(wire.Msg) and not bob.of_type(wire.Pm) and not carol.of_type(wire.Msg)
    assert [ok for ok in alice.of_type(wire.Ok) if ok.id is not None] == []

    driver.commit()
    for peer in (alice, bob, carol):
        peer.settle()
    assert [(m.text, m.history) for m in bob.of_type(wire.Msg)] == [("public", False)]
    assert [(m.text, m.history) for m in bob.of_type(wire.Pm)] == [("private", False)]
    assert [m.text for m in carol.of_type(wire.Msg)] == ["public"]
    acknowledged = [ok.id for ok in alice.of_type(wire.Ok) if ok.id is not None]
    assert acknowledged == [m.id for m in driver.stored_messages()]


def test_after_a_crash_before_the_commit_what_was_seen_is_what_is_stored() -> None:
    """Two messages in flight when the daemon dies; their senders resend in the other order."""
    driver = EngineDriver(ServerConfig(), auto_commit=False)
    for name in ("alice", "bob", "carol"):
        driver.add_account(name, f"{name}-password")
    peers = {
        name: Peer(driver, name, f"{name}-password", (f"10.0.0.{n}", 1))
        for n, name in enumerate(("alice", "bob", "carol"), start=1)
    }
    for peer in peers.values():
        peer.send()
        peer.settle()
    peers["alice"].send(wire.Say(text="from alice", cid="a1"))
    peers["bob"].send(wire.Say(text="from bob", cid="b1"))
    peers["carol"].settle()
    shown_before = [(m.id, m.text) for m in peers["carol"].of_type(wire.Msg)]

    # SIGKILL: what was not committed is gone. A new engine starts from what is stored.
    restarted = EngineDriver(
        ServerConfig(),
        Snapshot(
            accounts=driver.stored_accounts(),
            next_account_id=len(driver.stored_accounts()) + 1,
        ),
    )
    for n, (name, text, cid) in enumerate(
        (("bob", "from bob", "b1"), ("alice", "from alice", "a1"))
    ):
        peer = Peer(restarted, name, f"{name}-password", (f"10.1.0.{n}", 1))
        peer.send(wire.Say(text=text, cid=cid))
        peer.settle()
    after = [(m.id, m.text) for m in restarted.stored_messages()]
    # Whatever carol was shown before the crash must be exactly what is now stored.
    assert set(shown_before) <= set(after)


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


def test_the_script_trusts_its_daemons_keys_in_a_folder_of_its_own(own_data_folder: Path) -> None:
    """The daemons a run starts have new keys on ports the system picks: trusted in the
    user's `known_servers`, a later run's daemon on such a port would read as a changed
    key (`KeyChanged`), and the file would grow with every run."""
    arguments = ["--storms", "1", "--accounts", "3", "--chats", "0"]
    done = subprocess.run(
        [sys.executable, "-m", "scripts.faults_crash", *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "every promise kept" in done.stdout
    assert not (own_data_folder / "trio-chat" / "known_servers").exists()
