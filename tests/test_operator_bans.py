"""The operator turning a network away (`trio-chat bans`), as the daemon's engine sees it:
first flights refused before a key exchange, never with more bytes than they came with;
the network's sessions ended once the ban is stored, and told why; a session moving in
ended; a ban lifted lets the network in again."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import re
import subprocess
import time
from pathlib import Path

import pytest
import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import trio_chat
from trio_chat import wire
from trio_chat.cli import ExitCode
from trio_chat.cli import app as cli_app
from trio_chat.cli.bans import LONGEST_BAN, span_seconds
from trio_chat.client_protocol.config import ClientConfig
from trio_chat.control import Reply, Request
from trio_chat.engine import ServerEngine
from trio_chat.engine.bans import (
    BANNED,
    Bans,
    ban_change,
    ban_wait,
    banned_sentence,
    still_held,
)
from trio_chat.engine.common import iso_time
from trio_chat.engine.notes import BanEnded
from trio_chat.errors import Banned
from trio_chat.events import Left, PublicMessage
from trio_chat.records import BanRecord, BanSet, Snapshot, network_name, unix_time
from trio_chat.store import SqliteStore
from trio_chat.testing.daemon import CLI, DaemonProcess, cli_env
from trio_chat.testing.driver import EngineDriver, Peer

from .test_operator_accounts import PASSWORD, daemon_answers, login, operator
from .test_operator_control import Operated, operator_said

BANNED_AT = "2026-12-06T14:40:00.000Z"
NOW = unix_time(BANNED_AT) + 60


def test_a_network_is_kept_in_one_form_and_covers_its_addresses() -> None:
    assert network_name(" 203.0.113.7 ") == "203.0.113.7/32"
    assert network_name("198.51.100.77/24") == "198.51.100.0/24"
    assert network_name("2001:db8::1/64") == "2001:db8::/64"
    with pytest.raises(ValueError, match="'bob' is not an IP address or network"):
        network_name("bob")
    listed = [BanRecord("198.51.100.0/24", BANNED_AT), BanRecord("2001:db8::/64", BANNED_AT)]
    bans = Bans(listed)
    assert bans.covers("198.51.100.200", NOW) and not bans.covers("198.51.101.1", NOW)
    assert bans.covers("::ffff:198.51.100.9", NOW)  # a dual-stack socket's IPv4 peer
    assert bans.covers("2001:db8::5%eth0", NOW) and not bans.covers("2001:db9::5", NOW)
    assert not bans.covers("not an address", NOW)
    assert bans.banning("198.51.100.9", "198.51.100.0/24")
    assert not bans.banning("198.51.100.9", "2001:db8::/64")
    assert bans.in_force(NOW) == listed


def test_an_address_is_banned_in_the_form_the_daemon_meets_it() -> None:
    # A dual-stack daemon logs an IPv4 peer as ::ffff:127.0.0.1; banned so, it was kept as
    # IPv6 and matched nothing, the command saying it was done.
    assert network_name("::ffff:127.0.0.1") == "127.0.0.1/32"
    assert network_name("::ffff:198.51.100.0/120") == "198.51.100.0/24"
    assert network_name("2001:db8::1%eth0") == "2001:db8::1/128"  # a scope is no network
    with pytest.raises(ValueError) as caught:
        network_name("fe80::1%a\x1b[31m\nb/64x")
    assert str(caught.value).startswith("'fe80::1%a\\x1b[31m\\nb/64x' is not an IP address")
    bans = Bans([BanRecord(network_name("::ffff:127.0.0.1"), BANNED_AT)])
    assert bans.covers("127.0.0.1", NOW) and bans.covers("::ffff:127.0.0.1", NOW)


def test_many_bans_and_bans_within_bans() -> None:
    # Each first flight is looked up: a look-up tries each prefix length in use, not each
    # ban (10,000 of them made every KEY_REQUEST cost 1.5 ms).
    bans = Bans(BanRecord(f"10.{n // 256}.{n % 256}.1/32", BANNED_AT) for n in range(10_000))
    bans.add(BanRecord("192.0.2.0/24", BANNED_AT))
    bans.add(BanRecord("192.0.2.7/32", BANNED_AT))
    assert bans.covers("10.39.15.1", NOW) and not bans.covers("10.39.15.2", NOW)
    assert bans.covers("192.0.2.7", NOW) and bans.covers("192.0.2.8", NOW)
    covering = bans.covering("192.0.2.7/32", NOW)
    assert [ban.network for ban in covering] == ["192.0.2.0/24", "192.0.2.7/32"]
    bans.remove("192.0.2.7/32")
    assert bans.covers("192.0.2.7", NOW)  # the /24 still holds it
    bans.remove("192.0.2.0/24")
    assert not bans.covers("192.0.2.7", NOW)
    bans.remove("192.0.2.0/24")  # not banned: nothing to do


def test_a_banned_networks_first_flights_are_refused_before_any_key_exchange() -> None:
    engine = ServerEngine(snapshot=Snapshot(bans=[BanRecord("203.0.113.0/24", BANNED_AT)]))
    key_request = wire.key_request_datagram()
    engine.receive_datagram(key_request, ("203.0.113.9", 4000), 0.0, NOW)
    ((answer, to),) = engine.datagrams_to_send(0.0, NOW)
    refused = wire.parse_datagram_untrusted(answer)
    assert isinstance(refused, wire.Refused) and to == ("203.0.113.9", 4000)
    assert (refused.code, refused.message, refused.retry_after) == ("banned", BANNED, None)
    assert len(answer) <= len(key_request)
    assert engine.stats["banned_refused"] == 1 and engine.stats["keys_sent"] == 0
    engine.receive_datagram(key_request, ("203.0.114.9", 4000), 0.0, NOW)
    assert engine.stats["keys_sent"] == 1  # another network is answered as ever


def test_a_ban_ends_the_networks_sessions_once_stored_and_their_clients_stay_out() -> None:
    driver = EngineDriver()
    for name in ("alice", "bob"):
        driver.add_account(name)
    alice = Peer(driver, "alice", address=("203.0.113.5", 1))
    bob = Peer(driver, "bob", address=("203.0.112.5", 1))  # the network next door
    for peer in (alice, bob):
        peer.settle()
    driver.auto_commit = False
    op = BanSet("203.0.113.0/24", True, BANNED_AT)
    driver.engine.change_bans(op)
    driver.pump()
    assert driver.uncommitted == [op]
    alice.settle()
    assert alice.connection.failure is None  # not before it is stored
    driver.commit_held()
    for _ in range(3):
        alice.settle()
        bob.settle()
    assert driver.engine.sessions_ended_by(op) == 1
    assert isinstance(alice.connection.failure, Banned) and alice.connection.closed
    assert str(alice.connection.failure) == BANNED
    assert [(e.name, e.reason) for e in bob.events if isinstance(e, Left)] == [("alice", "banned")]
    again = Peer(driver, "alice", address=("203.0.113.6", 1), login=False)
    again.login()
    again.settle()
    assert isinstance(again.connection.failure, Banned)
    lifted = BanSet("203.0.113.0/24", False)
    driver.engine.change_bans(lifted)
    driver.pump()
    driver.commit_held()
    assert driver.engine.sessions_ended_by(lifted) == 0
    back = Peer(driver, "alice", address=("203.0.113.6", 2))
    back.settle()
    assert back.connection.ready and back.connection.failure is None


def test_a_session_that_moves_into_a_banned_network_ends() -> None:
    driver = EngineDriver()
    driver.add_account("alice")
    driver.engine.bans.add(BanRecord("203.0.113.0/24", BANNED_AT))
    alice = Peer(driver, "alice", address=("198.51.100.5", 1))
    alice.settle()
    assert alice.connection.ready
    driver.add_account("bob")
    bob = Peer(driver, "bob", address=("198.51.100.6", 1))
    bob.settle()
    alice.address = ("203.0.113.5", 1)  # its NAT gave it an address in the network
    alice.connection.say("from the new address")
    for _ in range(3):
        alice.settle()
        bob.settle()
    assert alice.sid not in driver.engine.sessions
    assert driver.engine.stats["migrations_refused"] == 1
    # What it said from there was not taken: not stored, not shown.
    assert [m.text for m in driver.stored_messages()] == []
    assert not [e for e in bob.events if isinstance(e, PublicMessage)]


def test_a_ban_for_a_while_holds_until_its_end_and_the_longest_ban_counts() -> None:
    ends = "2026-12-06T16:40:00.000Z"
    end = unix_time(ends)
    bans = Bans([BanRecord("198.51.100.0/24", BANNED_AT, ends)])
    assert bans.banned_until("198.51.100.9", end - 1) == end
    assert not bans.covers("198.51.100.9", end)  # over at its end
    assert bans.in_force(end) == [] and bans.get("198.51.100.0/24", end) is None
    assert bans.get("198.51.100.0/24", end - 1) == BanRecord("198.51.100.0/24", BANNED_AT, ends)
    bans.add(BanRecord("198.51.100.9/32", BANNED_AT))  # for good, within it
    assert bans.banned_until("198.51.100.9", NOW) == math.inf
    assert bans.banned_until("198.51.100.8", NOW) == end
    later = BanRecord("198.51.100.0/24", BANNED_AT, "2026-12-06T18:40:00.000Z")
    bans.add(later)  # given again: the new end in place of the old
    assert bans.banned_until("198.51.100.8", end) == end + 7200
    assert bans.in_force(end) == [later, BanRecord("198.51.100.9/32", BANNED_AT)]  # in place
    assert bans.next_end == end + 7200
    assert bans.take_ended(end + 7199.5) == []
    assert bans.take_ended(end + 7200) == [later]
    assert bans.in_force(0.0) == [BanRecord("198.51.100.9/32", BANNED_AT)]
    assert bans.next_end == math.inf  # the ban left holds for good
    assert banned_sentence(end - 0.5) == (
        "The daemon's operator turned your address away until 2026-12-06 16:40:00 UTC; ask "
        "them why."
    )
    assert "until 2026-12-06 16:40:02 UTC" in banned_sentence(end + 1.2)  # never before it
    assert banned_sentence(math.inf) == BANNED
    assert banned_sentence(unix_time("9999-12-31T23:59:59.500Z")) == BANNED  # no year 10000
    # A refusal's wait is rounded up to the millisecond: the ban has ended once it is over.
    assert ban_wait(end, end - 90.0004) == 90.001
    assert ban_wait(end, end - 90.0) == 90.0
    assert ban_wait(math.inf, end) is None


def test_a_network_banned_for_a_while_is_told_until_when_and_let_in_after() -> None:
    driver = EngineDriver()
    for name in ("alice", "bob", "carol"):
        driver.add_account(name)
    alice = Peer(driver, "alice", address=("203.0.113.5", 1))
    bob = Peer(driver, "bob", address=("198.51.100.6", 1))
    coming_back = ClientConfig(reconnect=True, retry_rate_limited=False)
    carol = Peer(driver, "carol", address=("198.51.100.7", 1), config=coming_back)
    for peer in (alice, bob, carol):
        peer.connection.wall_offset = driver.wall - driver.now  # as a client's is
        peer.settle()
    until = iso_time(driver.wall + 3600)
    told = banned_sentence(unix_time(until))
    op = BanSet("203.0.113.0/24", True, iso_time(driver.wall), until)
    driver.engine.change_bans(op)
    for _ in range(3):
        alice.settle()
        bob.settle()
    assert driver.engine.sessions_ended_by(op) == 1
    assert isinstance(alice.connection.failure, Banned)
    assert str(alice.connection.failure) == told
    assert alice.connection.failure.until == unix_time(until)  # for a local time to say it
    # A session moving into it ends, its `bye` sent where it was: the same sentence.
    old_address, bob.address = bob.address, ("203.0.113.6", 1)
    bob.connection.say("from the new address")
    for _ in range(3):
        bob.settle()
        carol.settle()
    assert bob.sid not in driver.engine.sessions
    for datagram in driver.inbox.pop(old_address):
        bob.connection.receive_datagram(datagram, driver.now)
    assert isinstance(bob.connection.failure, Banned) and str(bob.connection.failure) == told
    assert bob.connection.failure.until == unix_time(until)
    # carol moves in too, and misses her `bye`: coming back, she is refused, and stays
    # out (the refusal's `retry_after` is for people, not for coming back by itself).
    carol.address = ("203.0.113.7", 1)
    carol.connection.say("from the new address")
    for _ in range(60):
        carol.settle()
        driver.inbox.pop(("198.51.100.7", 1), None)  # her old address hears nothing
        if carol.connection.failure is not None:
            break
        driver.advance(1.0)
    assert isinstance(carol.connection.failure, Banned), carol.connection.failure
    assert str(carol.connection.failure) == told
    # Refused, she was told the whole seconds left: the ban's end, within a second after.
    assert 0 <= (carol.connection.failure.until or 0) - unix_time(until) < 1
    # A first flight: refused with the seconds left, smaller than it came.
    key_request = wire.key_request_datagram()
    driver.engine.receive_datagram(key_request, ("203.0.113.9", 4000), driver.now, driver.wall)
    ((answer, _to),) = driver.engine.datagrams_to_send(driver.now, driver.wall)
    refused = wire.parse_datagram_untrusted(answer)
    assert isinstance(refused, wire.Refused) and len(answer) <= len(key_request)
    assert (refused.code, refused.message) == ("banned", told)
    assert refused.retry_after == math.ceil((unix_time(until) - driver.wall) * 1000) / 1000
    driver.advance(3600)  # its end
    back = Peer(driver, "alice", address=("203.0.113.5", 2))
    back.settle()
    assert back.connection.ready and back.connection.failure is None
    assert driver.engine.bans.in_force(driver.wall) == []


def test_a_registration_whose_network_is_banned_while_its_password_is_hashed_makes_nothing() -> (
    None
):
    driver = EngineDriver(auto_hash=False)
    mallory = Peer(driver, None, address=("203.0.113.5", 1))
    handle = mallory.connection.register("mallory", PASSWORD)
    mallory.flush()
    assert len(driver.hashing) == 1  # the password is being hashed
    driver.engine.change_bans(BanSet("203.0.113.0/24", True, iso_time(driver.wall)))
    driver.pump()
    driver.finish_hashing()
    driver.pump()
    mallory.settle()
    assert [a.name for a in driver.stored_accounts()] == []
    assert isinstance(mallory.connection.failure, Banned) and handle.error is not None
    assert mallory.connection.failure.until is None  # for good
    # Its name is free again: a look-alike of it, from elsewhere, is no look-alike now.
    driver.auto_hash = True
    driver.add_account("maIlory", address=("198.51.100.5", 1))
    assert [a.name for a in driver.stored_accounts()] == ["maIlory"]


async def bans(database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await operator("bans", database, *args)


async def test_an_operator_turns_an_address_away_and_back_while_the_daemon_runs(
    tmp_path: Path,
) -> None:
    database = tmp_path / "chat.db"
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, database)
            host, port = await daemon.start(accounts=["alice"], password=PASSWORD)
            async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
                added = await bans(database, "add", "127.0.0.0/8")
                assert added.returncode == 0, added.stderr
                assert added.stdout == (
                    "Turned 127.0.0.0/8 away (1 session ended); `trio-chat bans remove "
                    "127.0.0.0/8` lets it in again.\n"
                )
                with pytest.raises(Banned):
                    async for _event in alice.events():
                        pass
            with pytest.raises(Banned) as refused:
                async with trio_chat.connect(host, port, "alice", PASSWORD):
                    pass
            assert str(refused.value) == BANNED
            refused_login = await login(port, tmp_path, "alice")
            assert refused_login.returncode == ExitCode.BANNED, refused_login.stderr
            # A health check from there tells it apart from a daemon that does not answer.
            ping = await trio.run_process(
                [*CLI, "ping"],
                env=cli_env(port, HOME=str(tmp_path)),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            assert ping.returncode == ExitCode.BANNED, ping.stderr
            assert ping.stderr.decode() == BANNED + "\n"
            listed = await bans(database, "list")
            assert listed.stdout.startswith("127.0.0.0/8  (since 20")
            again = await bans(database, "add", "127.0.0.1/8")
            assert again.stdout == "127.0.0.0/8 was turned away already.\n"
            assert re.search(
                r"the operator \(user id \d+, process \d+\) banned 127\.0\.0\.0/8 \(1 session "
                r"ended\)",
                daemon.text,
            )
            inside = await bans(database, "add", "127.0.0.1")
            assert inside.stdout == (
                "Turned 127.0.0.1/32 away; `trio-chat bans remove 127.0.0.1/32` lets it in "
                "again; 127.0.0.0/8 still turns it away.\n"
            )
            within = await bans(database, "remove", "127.0.0.1")
            assert within.stdout == (
                "Lifted the ban on 127.0.0.1/32; 127.0.0.0/8 still turns it away.\n"
            )
            other = await bans(database, "remove", "127.0.0.5")
            assert other.stdout == (
                "127.0.0.5/32 was not turned away by itself; 127.0.0.0/8 still turns it away.\n"
            )
            removed = await bans(database, "remove", "127.0.0.0/8")
            assert removed.stdout == "Let 127.0.0.0/8 in again.\n"
            async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
                assert await alice.who() == ["alice"]
                # For a while: the end said, kept, and given again replaced.
                before = time.time()
                timed = await bans(database, "add", "127.0.0.1", "--for", "2h")
                after = time.time()
                found = re.fullmatch(
                    r"Turned 127\.0\.0\.1/32 away until (\S+) \(1 session ended\); "
                    r"`trio-chat bans remove 127\.0\.0\.1/32` lets it in again\.\n",
                    timed.stdout,
                )
                assert found, timed.stdout + timed.stderr
                until = found.group(1)
                assert before + 7200 - 0.001 <= unix_time(until) <= after + 7200
                with pytest.raises(Banned) as ended:
                    async for _event in alice.events():
                        pass
                assert str(ended.value) == banned_sentence(unix_time(until))
                assert ended.value.until == round(unix_time(until), 3)  # for local time
            # Refused, the seconds left say when it ends: at a handshake, and at a probe.
            with pytest.raises(Banned) as refused:
                await trio_chat.register(host, port, "zed", PASSWORD)
            with pytest.raises(Banned) as probed:
                await trio_chat.trust_server(host, port, probe=True)
            for error in (refused.value, probed.value):
                assert 0 <= (error.until or 0) - unix_time(until) < 2, error.until
            listed = await bans(database, "list")
            assert re.fullmatch(
                rf"127\.0\.0\.1/32  \(since \S+Z, until {re.escape(until)}\)\n", listed.stdout
            )
            longer = await bans(database, "add", "127.0.0.1", "--for", "1d")
            assert "away until 20" in longer.stdout and f"(it was until {until})" in longer.stdout
            span = await bans(database, "add", "127.0.0.1", "--for", "2x")
            assert (span.returncode, span.stderr) == (
                ExitCode.USAGE,
                "'2x' is not a time span of up to 100 years (such as 90s, 30m, 2h, 7d, 2w or "
                "1h30m); leave out --for to turn it away until it is removed.\n",
            )
            assert (await bans(database, "remove", "127.0.0.1")).returncode == 0
            wrong = await bans(database, "add", "bob")
            assert (wrong.returncode, wrong.stderr) == (
                ExitCode.USAGE,
                "'bob' is not an IP address or network (such as 203.0.113.7, 198.51.100.0/24 "
                "or 2001:db8::/64).\n",
            )
            assert await daemon.stop() == 0
            # Stopped: the database is changed, and the daemon started again takes it.
            stopped = await bans(database, "add", "127.0.0.1")
            assert stopped.returncode == 0, stopped.stderr
            host, port = await daemon.start(port)
            await daemon.wait_for("1 address or network turned away (`trio-chat bans list`")
            with pytest.raises(Banned):
                async with trio_chat.connect(host, port, "alice", PASSWORD):
                    pass
            assert (await bans(database, "remove", "::ffff:127.0.0.1")).stdout == (
                "Let 127.0.0.1/32 in again.\n"
            )
            assert await daemon.stop() == 0
    listed = await bans(database, "list")
    assert (listed.stdout, listed.stderr) == ("", "Nobody is turned away.\n")
    nothing = await bans(database, "remove", "192.0.2.9")
    assert nothing.stdout == "192.0.2.9/32 was not turned away; nothing to let in again.\n"


def test_a_ban_lasts_as_long_as_it_is_told() -> None:
    assert span_seconds("90s") == 90
    assert span_seconds(" 1H30m ") == 5400
    assert span_seconds("2w1d") == 15 * 86400
    assert span_seconds("36500d") == LONGEST_BAN  # up to 100 years: that too
    for wrong in ("", "0s", "2", "h", "1.5h", "-1h", "101000d", "2h 30m", "1m1m", "30s1h", "٣h"):
        with pytest.raises(ValueError, match="is not a time span of up to 100 years"):
            span_seconds(wrong)


def test_the_wider_bans_still_holding_a_network_are_named_three_at_most() -> None:
    # The operator lifts a ban on a network that more bans hold: the first three named
    # (with their ends), the rest counted.
    until = "2026-12-06T19:00:00.000Z"
    wider = [("0.0.0.0/0", None), ("10.0.0.0/8", until), ("10.0.0.0/16", None)]
    assert still_held(wider[:1]) == "; 0.0.0.0/0 still turns it away"
    assert still_held(wider) == (
        f"; 0.0.0.0/0, 10.0.0.0/8 (until {until}) and 10.0.0.0/16 still turn it away"
    )
    assert still_held([*wider, ("10.0.0.0/24", None), ("10.0.0.0/25", None)]) == (
        f"; 0.0.0.0/0, 10.0.0.0/8 (until {until}), 10.0.0.0/16 and 2 more still turn it away"
    )
    assert still_held([]) == ""


async def test_a_stopped_daemons_bans_for_a_while(tmp_path: Path) -> None:
    database = tmp_path / "chat.db"
    SqliteStore.open(database).close()
    with trio.fail_after(60):
        added = await bans(database, "add", "192.0.2.1", "--for", "30m")
        assert added.returncode == 0, added.stderr
        found = re.search(r"until (\S+);", added.stdout)
        assert found
        listed = await bans(database, "list")
        assert re.fullmatch(rf"192\.0\.2\.1/32  \(since \S+Z, until {found[1]}\)\n", listed.stdout)
        forever = await bans(database, "add", "192.0.2.1")
        assert forever.stdout.startswith(f"Turned 192.0.2.1/32 away (it was until {found[1]});")
        since = re.search(r"since (\S+),", listed.stdout)
        assert since  # given again, a ban keeps when it began
        kept = await bans(database, "list")
        assert kept.stdout == f"192.0.2.1/32  (since {since[1]})\n"
        again = await bans(database, "add", "192.0.2.1")
        assert again.stdout == "192.0.2.1/32 was turned away already.\n"
        # A network turned away, and let in again, with a ban inside it: that one stays.
        outer = await bans(database, "add", "192.0.2.0/24")
        assert outer.stdout == (
            "Turned 192.0.2.0/24 away; `trio-chat bans remove 192.0.2.0/24` lets it in again, "
            "but for 192.0.2.1/32 within it.\n"
        )
        wider = await bans(database, "remove", "192.0.2.0/24")
        assert wider.stdout == (
            "Let 192.0.2.0/24 in again; 192.0.2.1/32 within it stays turned away.\n"
        )
        for host in ("192.0.2.2", "192.0.2.3", "198.51.100.0/24"):
            assert (await bans(database, "add", host)).returncode == 0
        # Every address: said so, and the bans inside named, a few of them.
        everyone = await bans(database, "add", "0.0.0.0/0")
        assert (everyone.stdout, everyone.stderr) == (
            "Turned 0.0.0.0/0 away; `trio-chat bans remove 0.0.0.0/0` lets it in again, but "
            "for 192.0.2.1/32, 192.0.2.2/32, 192.0.2.3/32 and 1 more within it.\n",
            "Note: that is every IPv4 address; nobody can connect over IPv4 until it is removed.\n",
        )
        timed = await bans(database, "add", "::/0", "--for", "1h")
        assert re.fullmatch(
            r"Note: that is every IPv6 address; nobody can connect over IPv6 until \S+Z\.\n",
            timed.stderr,
        ), timed.stderr
        assert (await bans(database, "remove", "::/0")).returncode == 0
        back = await bans(database, "remove", "0.0.0.0/0")
        assert back.stdout == (
            "Let 0.0.0.0/0 in again; 192.0.2.1/32, 192.0.2.2/32, 192.0.2.3/32 and 1 more "
            "within it stay turned away.\n"
        )
    store = SqliteStore.open(database)
    assert [ban.until for ban in Bans(store.bans()).in_force(time.time())] == [None] * 4
    store.close()


def test_a_ban_given_again_keeps_when_it_began_and_takes_the_new_end() -> None:
    wall = unix_time(BANNED_AT) + 3600
    later = iso_time(wall)
    first = ban_change(None, "192.0.2.0/24", True, None, wall)
    assert first == BanSet("192.0.2.0/24", True, later, None, changed=later)
    assert ban_change(first.record(), "192.0.2.0/24", True, None, wall) is None  # so already
    was = BanRecord("192.0.2.0/24", BANNED_AT, None)
    timed = ban_change(was, "192.0.2.0/24", True, "2026-12-07T00:00:00.000Z", wall)
    assert timed == BanSet(
        "192.0.2.0/24", True, BANNED_AT, "2026-12-07T00:00:00.000Z", changed=later
    )
    assert ban_change(None, "192.0.2.0/24", False, None, wall) is None  # nothing to lift
    lifted = ban_change(was, "192.0.2.0/24", False, None, wall)
    assert lifted is not None and (lifted.banned, lifted.changed) == (False, later)


def test_the_operator_is_told_when_a_ban_ends_and_the_daemon_wakes_for_it() -> None:
    driver = EngineDriver()
    engine = driver.engine
    long_ended = BanSet("192.0.2.0/24", True, iso_time(driver.wall - 7200), iso_time(driver.wall))
    engine.change_bans(long_ended)  # as if loaded at the start, ended before it
    driver.pump()
    driver.advance(1.0)
    assert engine.take_notes() == []  # found ended at the first turn: not news
    assert engine.bans.in_force(driver.wall) == []
    changes = [
        BanSet("198.51.100.0/24", True, iso_time(driver.wall), iso_time(driver.wall + 300)),
        BanSet("203.0.113.7/32", True, iso_time(driver.wall), iso_time(driver.wall + 600)),
        BanSet("203.0.113.0/24", True, iso_time(driver.wall)),  # wider, for good
        BanSet("198.51.100.9/32", True, iso_time(driver.wall)),  # narrower, for good
    ]
    for change in changes:
        engine.change_bans(change)
    driver.pump()
    # Nobody is connected, so nothing else would wake the daemon: its next timer is the
    # first ban's end, on the monotonic clock.
    assert engine.next_timer() == pytest.approx(driver.now + 300, abs=0.002)
    driver.advance(299.9)
    assert engine.take_notes() == []
    driver.advance(0.2)
    inside = (("198.51.100.9/32", None),)
    assert engine.take_notes() == [
        BanEnded("198.51.100.0/24", changes[0].until or "", within=inside, within_count=1)
    ]
    assert engine.bans.banned_until("198.51.100.1", driver.wall) is None
    assert engine.bans.banned_until("198.51.100.9", driver.wall) == math.inf
    assert engine.next_timer() == pytest.approx(driver.now + 299.9, abs=0.002)
    driver.advance(300)
    ended = BanEnded("203.0.113.7/32", changes[1].until or "", (("203.0.113.0/24", None),))
    assert engine.take_notes() == [ended]
    assert engine.bans.banned_until("203.0.113.7", driver.wall) == math.inf
    assert engine.next_timer() is None  # the ban left is for good


def test_a_ban_ending_as_another_change_is_stored_is_told_too() -> None:
    driver = EngineDriver()
    engine = driver.engine
    driver.advance(1.0)
    until = iso_time(driver.wall + 10)
    engine.change_bans(BanSet("198.51.100.0/24", True, iso_time(driver.wall), until))
    driver.pump()
    driver.now += 20  # no timer ran at its end: the next change finds it ended
    engine.change_bans(BanSet("203.0.113.0/24", True, iso_time(driver.wall)))
    driver.pump()
    assert engine.take_notes() == [BanEnded("198.51.100.0/24", until)]


# A ban's end, kept as the first to come (`Bans.next_end`), is found again by a look at
# every ban only when that one goes or ends later: loading 10,000 bans for good looked
# at all of them for each (1.85 s), and forgetting 10,000 ended ones too (1.73 s).
WALL = 1.8e9
N = 5000


def _network(i: int) -> str:
    return str(ipaddress.ip_network((0x0A000000 + i, 32)))


def _scans(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    scans = [0]
    find = Bans._find_next_end

    def counted(self: Bans) -> None:
        scans[0] += 1
        find(self)

    monkeypatch.setattr(Bans, "_find_next_end", counted)
    return scans


def test_loading_bans_for_good_does_not_scan_them_all_for_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scans = _scans(monkeypatch)
    start = time.perf_counter()
    Bans([BanRecord(_network(i), iso_time(WALL)) for i in range(N)])  # the daemon's start
    spent = time.perf_counter() - start
    assert scans[0] <= 1, f"{scans[0]} scans of every ban, {spent:.2f} s"


def test_forgetting_many_ended_bans_scans_them_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # The daemon's first turn after a restart, the bans (given with the same --for, one
    # after another) all ended meanwhile: forgotten at once, without a word.
    bans = Bans(
        [BanRecord(_network(i), iso_time(WALL + i), iso_time(WALL + i + 3600)) for i in range(N)]
    )
    scans = _scans(monkeypatch)
    start = time.perf_counter()
    assert len(bans.take_ended(WALL + 10**6)) == N
    spent = time.perf_counter() - start
    assert scans[0] <= 1, f"{scans[0]} scans of every ban, {spent:.2f} s"


def test_bans_ending_together_cost_a_look_at_each_ban_not_one_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The machine slept, or the wall clock stepped forward: 200 bans end in one turn of
    # the daemon's loop, 2,000 others hold for good. Each ended ban's `still` looks at
    # every ban left once (`covering`, then a walk through them all): 400,000 looks, the
    # loop stopped ~1.7 s (500 and 5,000: ~11 s). Now a look-up a prefix length.
    driver = EngineDriver()
    engine = driver.engine
    driver.advance(1.0)
    for i in range(2000):
        engine.bans.add(BanRecord(str(ipaddress.ip_network((0x0B000000 + i, 32))), iso_time(WALL)))
    for i in range(200):
        until = iso_time(driver.wall + 10 + i)
        engine.bans.add(BanRecord(_network(i), iso_time(driver.wall), until))
    looks = [0]
    ended = BanRecord.ended

    def counted(self: BanRecord, wall: float) -> bool:
        looks[0] += 1
        return ended(self, wall)

    monkeypatch.setattr(BanRecord, "ended", counted)
    driver.now += 3600
    engine.handle_timers(driver.now, driver.wall)
    assert len(engine.take_notes()) == 200
    assert looks[0] <= 3 * 2200, f"{looks[0]} looks at a ban for 200 ended"


def test_the_bans_holding_a_network_are_found_in_ipv6_too() -> None:
    # Widest first, whatever the order they were given in; each network under one name.
    bans = Bans([BanRecord("::/64", BANNED_AT), BanRecord("0.0.0.0/0", BANNED_AT)])
    bans.add(BanRecord("2001:DB8::/64", BANNED_AT, "2026-12-06T14:41:00.000Z"))
    bans.add(BanRecord("2001:db8::/32", BANNED_AT))
    assert [ban.network for ban in bans.covering("::1/128", NOW)] == ["::/64"]
    holding = bans.covering("2001:db8::5/128", NOW - 30)
    assert [ban.network for ban in holding] == ["2001:db8::/32", "2001:db8::/64"]
    assert [ban.network for ban in bans.covering("2001:db8::5/128", NOW)] == ["2001:db8::/32"]


_NETWORKS = st.one_of(
    st.builds(
        lambda prefix, a, b: network_name(f"10.{a}.{b}.{b}/{prefix}"),
        st.sampled_from([8, 16, 23, 24, 31, 32]),
        st.integers(0, 2),
        st.integers(0, 3),
    ),
    st.builds(
        lambda prefix, a: network_name(f"2001:db8:{a}::{a}/{prefix}"),
        st.sampled_from([0, 32, 48, 64, 128]),
        st.integers(0, 2),
    ),
    st.sampled_from(["::/0", "0.0.0.0/0", "::fffe:0:0/95", "::ffff:0:0/96"]),
)
_UNTILS = st.one_of(st.none(), st.integers(-5, 5).map(lambda d: iso_time(WALL + d)))
_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), _NETWORKS, _UNTILS),
        st.tuples(st.just("remove"), _NETWORKS, st.none()),
        st.tuples(st.just("take"), st.none(), st.integers(-6, 6)),
        st.tuples(st.just("cover"), _NETWORKS, st.integers(-6, 6)),
        st.tuples(st.just("inside"), _NETWORKS, st.integers(0, 3)),
    ),
    max_size=40,
)


@settings(max_examples=500, deadline=None)
@given(_STEPS)
@example(  # networks inside one that start where it starts, or end where it ends
    [
        ("add", "10.0.0.0/24", None),
        ("add", "10.0.0.0/25", None),
        ("add", "10.0.0.255/32", None),
        ("add", "10.0.0.254/31", None),
        ("add", "10.0.1.0/32", None),
        ("inside", "10.0.0.0/24", 3),
        ("inside", "10.0.0.254/31", 1),
    ]
)
def test_the_bans_behave_as_a_list_of_them_looked_through_would(
    steps: list[tuple[str, str | None, str | int | None]],
) -> None:
    # The first end kept, the bans holding a network found a prefix length at a time,
    # and those inside one by binary searches, against a plain dictionary of the bans,
    # looked through whole each time.
    bans = Bans()
    model: dict[str, BanRecord] = {}
    for kind, name, value in steps:
        if kind == "add":
            assert name is not None and not isinstance(value, int)
            ban = BanRecord(name, iso_time(WALL - 100), value)
            bans.add(ban)
            model[name] = ban
        elif kind == "remove":
            assert name is not None
            bans.remove(name)
            model.pop(name, None)
        elif kind == "take":
            assert isinstance(value, int)
            ended = [ban for ban in model.values() if ban.ended(WALL + value)]
            assert bans.take_ended(WALL + value) == ended
            for ban in ended:
                del model[ban.network]
        elif kind == "inside":
            assert name is not None and isinstance(value, int)
            outer = ipaddress.ip_network(name)
            inside = sorted(
                (
                    ban
                    for ban in model.values()
                    if (inner := ipaddress.ip_network(ban.network)).version == outer.version
                    and inner != outer
                    and inner.subnet_of(outer)  # type: ignore[arg-type]
                ),
                key=lambda ban: (
                    ipaddress.ip_network(ban.network).network_address.packed
                    + bytes([ipaddress.ip_network(ban.network).prefixlen])
                ),
            )
            assert bans.inside(name, most=value) == (inside[:value], len(inside))
        else:
            assert name is not None and isinstance(value, int)
            network = ipaddress.ip_network(name)
            holding = [
                ban
                for ban in model.values()
                if not ban.ended(WALL + value)
                and (other := ipaddress.ip_network(ban.network)).version == network.version
                and network.subnet_of(other)  # type: ignore[arg-type]
            ]
            widest_first = sorted(
                holding, key=lambda ban: ipaddress.ip_network(ban.network).prefixlen
            )
            assert bans.covering(name, WALL + value) == widest_first
        ends = [math.inf if ban.until is None else unix_time(ban.until) for ban in model.values()]
        assert bans.next_end == min(ends, default=math.inf)


def test_the_name_of_a_registration_banned_while_hashed_is_free_again() -> None:
    driver = EngineDriver(auto_hash=False)
    mallory = Peer(driver, None, address=("203.0.113.5", 1))
    mallory.connection.register("mallory", PASSWORD)
    mallory.flush()
    driver.engine.change_bans(BanSet("203.0.113.0/24", True, iso_time(driver.wall)))
    driver.pump()
    driver.finish_hashing()
    driver.pump()
    driver.auto_hash = True
    driver.add_account("mallory", address=("198.51.100.5", 1))  # from elsewhere
    assert [a.name for a in driver.stored_accounts()] == ["mallory"]


async def test_the_desk_bans_lifts_and_lists_and_answers_with_the_ban_there_was(
    caplog: pytest.LogCaptureFixture,
) -> None:
    driver = EngineDriver()
    driver.add_account("alice")
    alice = Peer(driver, "alice", address=("203.0.113.5", 1))
    alice.settle()
    desk = Operated(driver).desk
    network = "203.0.113.0/24"
    until, later = iso_time(driver.wall + 3600), iso_time(driver.wall + 7200)
    with caplog.at_level(logging.INFO, logger="trio_chat"):
        banned = await desk.answer(Request("ban", network, until=until))
        assert (banned.ok, banned.bans, banned.ended) == (True, [], 1)
        (ban,) = (await desk.answer(Request("bans"))).bans
        assert (ban.network, ban.until) == (network, until)
        longer = await desk.answer(Request("ban", "203.0.113.77/24", until=later))
        assert (longer.ok, longer.bans) == (True, [ban])  # the ban as it was
        same = await desk.answer(Request("ban", network, until=later))  # as asked already
        assert (same.ok, [b.until for b in same.bans]) == (True, [later])
        lifted = await desk.answer(Request("unban", network))
        assert (lifted.ok, [b.until for b in lifted.bans]) == (True, [later])
        assert (await desk.answer(Request("bans"))).bans == []
        nothing = await desk.answer(Request("unban", network))
        assert (nothing.ok, nothing.bans) == (True, [])
        for wrong in (Request("ban", network, until="tomorrow"), Request("unban", "bob")):
            refused = await desk.answer(wrong)
            assert (refused.ok, refused.code) == (False, "bad_request")
    assert [op.banned for op in driver.stored if isinstance(op, BanSet)] == [True, True, False]
    assert operator_said(caplog) == [
        f"the operator banned {network} until {until} (1 session ended)",
        f"the operator banned {network} until {later}",
        f"the operator lifted the ban on {network}",
    ]
    told = [r for r in caplog.records if getattr(r, "event", None) == "operator"]
    assert [getattr(r, "fields", {}).get("network") for r in told] == [network] * 3


def test_a_ban_for_good_given_an_end_says_it_was_for_good(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    since = "2026-12-06T16:00:00.000Z"
    for_good = BanRecord("203.0.113.0/24", since)
    daemon_answers(
        monkeypatch,
        Reply(True, bans=[for_good]),  # the ban, as it was
        Reply(True, bans=[dataclasses.replace(for_good, until="2099-01-01T00:00:00.000Z")]),
    )
    database = str(tmp_path / "chat.db")
    added = CliRunner().invoke(
        cli_app, ["bans", "add", "203.0.113.9/24", "--for", "2h", "--db", database]
    )
    assert added.exit_code == 0, added.stderr
    assert re.fullmatch(
        r"Turned 203\.0\.113\.0/24 away until \S+Z \(it was for good\); `trio-chat bans "
        r"remove 203\.0\.113\.0/24` lets it in again\.\n",
        added.stdout,
    )


def test_a_stopped_daemons_ban_that_ended_is_not_listed(tmp_path: Path) -> None:
    path = tmp_path / "chat.db"
    store = SqliteStore.open(path)
    ended = BanSet("203.0.113.0/24", True, BANNED_AT, until="2026-12-06T15:00:00.000Z")
    store.write([ended, BanSet("198.51.100.0/24", True, BANNED_AT)])
    store.close()
    listed = CliRunner().invoke(cli_app, ["bans", "list", "--db", str(path)])
    assert (listed.exit_code, listed.stdout, listed.stderr) == (
        0,
        f"198.51.100.0/24  (since {BANNED_AT})\n",
        "1 turned away.\n",
    )
