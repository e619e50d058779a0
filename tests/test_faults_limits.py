"""Abuse limits: each one bites when it should, with a clear error, and lets go after.

The arithmetic is checked on the engine with explicit time; the client API sees each
limit as its own exception on a live daemon; and the `serve` options set them.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
import trio

from trio_chat import (
    ClientConfig,
    Left,
    Notice,
    RateLimited,
    Throttled,
    TooManyRegistrations,
    TooManySessions,
    WrongPassword,
    connect,
    register,
    wire,
)
from trio_chat.engine import Address, ServerConfig
from trio_chat.engine.guard import LoginGuard, Refusal
from trio_chat.keys import daemon_public_key
from trio_chat.limits import FailureThrottle, KeyedBuckets, RecentKeys, TokenBucket
from trio_chat.server import serve
from trio_chat.testing.daemon import DaemonProcess
from trio_chat.testing.driver import EngineDriver, Peer
from trio_chat.testing.netsim import Conditions
from trio_chat.testing.raw_peer import RawPeer
from trio_chat.testing.simulation import Simulation

HERE = ("10.0.0.1", 1000)
THERE = ("10.0.0.2", 1000)


def login(
    driver: EngineDriver, name: str, password: str, address: Address = HERE
) -> wire.ServerFrame:
    """A login on a channel of its own, as a client opens one per attempt."""
    return driver.request(wire.Login(name=name, password=password), address)


def test_an_accounts_failures_slow_every_address_that_failed_but_never_a_clean_one() -> None:
    driver = EngineDriver(ServerConfig(login_free_failures=3, login_delay=1.0))
    driver.add_account("alice", "alice-password")
    attackers = [(f"10.1.0.{n}", 1) for n in range(10)]  # the attacker moves around
    for n in range(3):
        reply = login(driver, "alice", "wrong-guess", attackers[n])
        assert isinstance(reply, wire.ErrorFrame) and reply.code == "wrong_password"
    delays = []
    for _ in range(4):
        reply = login(driver, "alice", "alice-password", attackers[0])  # even the right one
        assert isinstance(reply, wire.ErrorFrame) and reply.code == "throttled"
        assert reply.message == (
            f"Too many failed logins; wait {max(1, round(reply.retry_after or 0))} s before "
            "trying again."
        )
        assert reply.retry_after is not None
        delays.append(reply.retry_after)
        driver.now += reply.retry_after
        reply = login(driver, "alice", "wrong-guess", attackers[0])
        assert isinstance(reply, wire.ErrorFrame) and reply.code == "wrong_password"
    assert delays == pytest.approx([1.0, 2.0, 4.0, 8.0], abs=0.002)
    # A new address gets one guess in; once it has failed, it waits like the others.
    reply = login(driver, "alice", "wrong-guess", attackers[5])
    assert isinstance(reply, wire.ErrorFrame) and reply.code == "wrong_password"
    reply = login(driver, "alice", "alice-password", attackers[5])
    assert isinstance(reply, wire.ErrorFrame) and reply.code == "throttled"
    assert reply.retry_after == pytest.approx(32.0, abs=0.002)  # the account's 8th failure
    # The owner, from an address that has not failed, is never kept out.
    assert isinstance(login(driver, "alice", "alice-password", ("10.2.0.1", 1)), wire.Welcome)
    # That success does not clear the account's record (the guessers would start afresh):
    # an address that failed still waits, until the account has been quiet 15 minutes.
    reply = login(driver, "alice", "alice-password", attackers[5])
    assert isinstance(reply, wire.ErrorFrame) and reply.code == "throttled"
    driver.now += 15 * 60
    assert isinstance(login(driver, "alice", "alice-password", attackers[5]), wire.Welcome)


def test_an_accounts_failures_slow_an_address_that_failed_on_another_account() -> None:
    """What counts is whether the address failed, at any account: a guesser failing at
    bob first is as slow at alice as one that failed at alice."""
    driver = EngineDriver(ServerConfig(login_free_failures=3, login_delay=1.0))
    driver.add_account("alice", "alice-password")
    driver.add_account("bob", "bob-password")
    for n in range(10):  # one guess from each of ten addresses: alice's record is long
        reply = login(driver, "alice", "wrong-guess", (f"10.1.0.{n}", 1))
        assert isinstance(reply, wire.ErrorFrame) and reply.code == "wrong_password"
    reply = login(driver, "bob", "wrong-guess", THERE)
    assert isinstance(reply, wire.ErrorFrame) and reply.code == "wrong_password"
    reply = login(driver, "alice", "alice-password", THERE)
    assert isinstance(reply, wire.ErrorFrame) and reply.code == "throttled"
    assert reply.retry_after == pytest.approx(60.0, abs=0.002)
    assert isinstance(login(driver, "alice", "alice-password", HERE), wire.Welcome)


def test_an_accounts_failures_are_forgotten_after_a_quiet_quarter_hour() -> None:
    driver = EngineDriver(
        ServerConfig(login_free_failures=3, login_delay=1.0, login_delay_max=60.0)
    )
    driver.add_account("alice", "alice-password")
    guessers = [(f"10.1.0.{n}", 1) for n in range(10)]
    for address in guessers:  # one guess from each: ten failures for the account
        reply = login(driver, "alice", "wrong-guess", address)
        assert isinstance(reply, wire.ErrorFrame) and reply.code == "wrong_password"
    reply = login(driver, "alice", "wrong-guess", guessers[0])
    assert isinstance(reply, wire.ErrorFrame) and reply.code == "throttled"
    assert reply.retry_after == pytest.approx(60.0, abs=0.002)
    driver.now += 15 * 60 - 1  # not quite quiet for long enough: the account still counts
    reply = login(driver, "alice", "wrong-guess", guessers[0])
    assert isinstance(reply, wire.ErrorFrame) and reply.code == "wrong_password"
    reply = login(driver, "alice", "wrong-guess", guessers[0])
    assert isinstance(reply, wire.ErrorFrame) and reply.code == "throttled"
    assert reply.retry_after == pytest.approx(60.0, abs=0.002)
    driver.now += 15 * 60
    # The account starts afresh: the address has one free failure of its own left.
    reply = login(driver, "alice", "wrong-guess", guessers[0])
    assert isinstance(reply, wire.ErrorFrame) and reply.code == "wrong_password"
    reply = login(driver, "alice", "wrong-guess", guessers[0])
    assert isinstance(reply, wire.ErrorFrame) and reply.code == "throttled"
    assert reply.retry_after == pytest.approx(1.0, abs=0.002)


def test_failed_logins_are_throttled_per_address_across_accounts() -> None:
    driver = EngineDriver(ServerConfig(login_free_failures=3, login_delay=1.0))
    for n in range(5):
        driver.add_account(f"user{n}", "user-password")
    for n in range(3):  # one guess each at three accounts
        reply = login(driver, f"user{n}", "wrong-guess")
        assert isinstance(reply, wire.ErrorFrame) and reply.code == "wrong_password"
    reply = login(driver, "user4", "user-password")  # a fourth account, same address
    assert isinstance(reply, wire.ErrorFrame) and reply.code == "throttled"
    assert isinstance(login(driver, "user4", "user-password", THERE), wire.Welcome)


def test_an_addresss_failures_on_an_account_outlast_its_logins_to_another() -> None:
    """Logging in to an account of one's own clears the address's record, not its record
    for the account it guesses at: the next guess still waits its doubled delay."""
    driver = EngineDriver(ServerConfig(login_free_failures=3, login_delay=1.0))
    driver.add_account("alice", "alice-password")
    driver.add_account("mallory", "mallory-password")

    def guess() -> wire.ServerFrame:
        return login(driver, "alice", "wrong-guess")

    for _ in range(2):
        reply = guess()
        assert isinstance(reply, wire.ErrorFrame) and reply.code == "wrong_password"
    assert isinstance(login(driver, "mallory", "mallory-password"), wire.Welcome)
    reply = guess()  # alice's third failure from here
    assert isinstance(reply, wire.ErrorFrame) and reply.code == "wrong_password"
    driver.now += 1.0
    reply = guess()  # and its fourth
    assert isinstance(reply, wire.ErrorFrame) and reply.code == "wrong_password"
    assert isinstance(login(driver, "mallory", "mallory-password"), wire.Welcome)
    reply = guess()
    assert isinstance(reply, wire.ErrorFrame) and reply.code == "throttled"
    assert reply.retry_after == pytest.approx(2.0, abs=0.002)


def throttled_waits(driver: EngineDriver, count: int) -> tuple[list[float], int]:
    """Guess alice's password until told to wait `count` times, waiting each out: the
    waits told, and how many guesses were checked (and failed) meanwhile."""
    waits: list[float] = []
    failures = 0
    while len(waits) < count:
        reply = login(driver, "alice", "wrong-guess")
        assert isinstance(reply, wire.ErrorFrame)
        if reply.code == "throttled":
            assert reply.retry_after is not None
            waits.append(reply.retry_after)
            driver.now += reply.retry_after
        else:
            assert reply.code == "wrong_password"
            failures += 1
    return waits, failures


def test_throttling_caps_its_delay() -> None:
    driver = EngineDriver(ServerConfig(login_free_failures=1, login_delay=1.0, login_delay_max=5.0))
    driver.add_account("alice", "alice-password")
    waits, _failures = throttled_waits(driver, 5)
    assert isinstance(login(driver, "alice", "wrong-guess"), wire.ErrorFrame)
    reply = login(driver, "alice", "alice-password")
    assert isinstance(reply, wire.ErrorFrame) and reply.code == "throttled"
    assert waits == pytest.approx([1.0, 2.0, 4.0, 5.0, 5.0], abs=0.01)
    assert reply.retry_after == pytest.approx(5.0, abs=0.01)


@pytest.mark.parametrize("free", [0, 1, 3])
def test_the_first_delay_after_the_free_failures_is_the_login_delay(free: int) -> None:
    """`serve --login-free-failures N --login-delay D`: after N failures the next check
    waits D seconds, then 2D, 4D; with N = 0, from the very first failure (that one was
    followed by 2D)."""
    driver = EngineDriver(ServerConfig(login_free_failures=free, login_delay=1.5), now=100.0)
    driver.add_account("alice", "alice-password")
    waits, failures = throttled_waits(driver, 3)
    assert failures == max(free, 1) + 2
    assert waits == pytest.approx([1.5, 3.0, 6.0], abs=0.01)


def test_a_login_delay_longer_than_a_minute_is_kept_whole() -> None:
    """The doubling stops at a minute, but a first delay longer than that (`serve
    --login-delay 300`) is not cut down to it: each wait is then the delay asked for."""
    driver = EngineDriver(ServerConfig(login_free_failures=1, login_delay=300.0))
    assert driver.engine.config.login_delay_max == 60.0
    driver.add_account("alice", "alice-password")
    waits: list[float] = []
    while len(waits) < 2:
        reply = login(driver, "alice", "wrong-guess")
        assert isinstance(reply, wire.ErrorFrame) and reply.code == "wrong_password"
        reply = login(driver, "alice", "alice-password")
        assert isinstance(reply, wire.ErrorFrame) and reply.code == "throttled"
        assert reply.retry_after is not None
        waits.append(reply.retry_after)
        driver.now += reply.retry_after
    assert waits == pytest.approx([300.0, 300.0], abs=0.01)
    assert isinstance(login(driver, "alice", "alice-password"), wire.Welcome)


def test_a_token_bucket_gives_nothing_for_time_that_ran_backwards() -> None:
    """A clock stepped back, then forward again: the span counts once, not twice."""
    bucket = TokenBucket(rate=1.0, burst=2.0)
    assert bucket.take(100.0) == bucket.take(100.0) == 0.0
    assert bucket.take(100.0) == 1.0
    assert bucket.wait(40.0) > 0.0  # stepped back a minute: nothing earned
    assert bucket.take(101.0) == 0.0  # one second on from the last use: one token
    assert bucket.take(101.0) == 1.0


def test_a_token_bucket_asks_to_wait_only_for_what_is_not_yet_earned() -> None:
    """A refusal's wait is the time to the next whole token, counting what has come back
    since: three quarters of a second on, at one a second, a quarter remains."""
    bucket = TokenBucket(rate=1.0, burst=1.0)
    assert bucket.take(10.0) == 0.0
    assert bucket.take(10.75) == pytest.approx(0.25)
    assert bucket.wait(10.9) == pytest.approx(0.1)
    assert bucket.take(11.0) == 0.0


def test_registrations_are_limited_per_address_by_a_token_bucket() -> None:
    driver = EngineDriver(ServerConfig(register_rate=1 / 60, register_burst=3))
    names = iter(f"name{n}" for n in range(100))

    def attempt(address: Address = HERE) -> wire.ServerFrame:
        name = next(names)
        return driver.request(wire.Register(rid=name, name=name, password="a-password"), address)

    assert all(isinstance(attempt(), wire.Registered) for _ in range(3))
    refused = attempt()
    assert isinstance(refused, wire.ErrorFrame) and refused.code == "too_many_registrations"
    assert refused.message == "Too many registrations from your address; try again later."
    assert refused.retry_after == pytest.approx(60.0, abs=0.01)
    assert isinstance(attempt(THERE), wire.Registered)  # other addresses are not affected
    driver.now += 60.0
    assert isinstance(attempt(), wire.Registered)
    assert isinstance(attempt(), wire.ErrorFrame)


def test_registrations_from_one_ipv6_network_share_its_allowance() -> None:
    """Counted by the /64, as sessions and logins are: `--register-burst 1` lets one host
    register once, at whichever of its addresses, while the next /64 has its own."""
    driver = EngineDriver(ServerConfig(register_rate=1 / 60, register_burst=1))

    def attempt(host: str, name: str) -> wire.ServerFrame:
        register = wire.Register(rid=name, name=name, password="a-password")
        return driver.request(register, (host, 1000, 0, 0))

    assert isinstance(attempt("2001:db8:0:1::1", "first"), wire.Registered)
    refused = attempt("2001:db8:0:1::2", "second")
    assert isinstance(refused, wire.ErrorFrame) and refused.code == "too_many_registrations"
    assert refused.retry_after == pytest.approx(60.0, abs=0.01)
    assert isinstance(attempt("2001:db8:0:2::1", "third"), wire.Registered)


def test_messages_are_limited_per_session_by_a_burst_then_a_rate() -> None:
    driver = EngineDriver(ServerConfig(message_rate=5.0, message_burst=20))
    driver.add_account("chatty", "chatty-password")
    chatty = Peer(driver, "chatty", "chatty-password", HERE)
    burst_at = driver.now
    chatty.send(*(wire.Say(text=f"m{n}", cid=f"c{n}") for n in range(25)))
    chatty.settle()
    refused = chatty.of_type(wire.ErrorFrame)
    assert len(driver.stored_messages()) == 20
    assert len(refused) == 5
    assert {(e.code, e.message) for e in refused} == {
        ("rate_limited", "You are sending too fast; slow down.")
    }
    assert all(e.retry_after is not None and 0 < e.retry_after <= 0.201 for e in refused)
    driver.now += 1.0
    elapsed = driver.now - burst_at  # tokens come back at 5 a second
    # The refused ones are sent again first (as the client does), then new ones.
    again = [wire.Say(text=f"m{n}", cid=f"c{n}") for n in range(20, 25)]
    again += [wire.Say(text=f"n{n}", cid=f"d{n}") for n in range(10)]
    chatty.send(*again)
    chatty.settle()
    accepted = [m.text for m in driver.stored_messages()]
    assert accepted == [f"m{n}" for n in range(20)] + [m.text for m in again][: int(elapsed * 5)]
    # Another session of the same account has its own bucket.
    other = Peer(driver, "chatty", "chatty-password", THERE)
    other.send(wire.Say(text="from elsewhere", cid="e"))
    other.settle()
    assert driver.stored_messages()[-1].text == "from elsewhere"


def test_keyed_buckets_forget_the_key_used_longest_ago_not_one_in_use() -> None:
    """Past their capacity, the buckets forget the key idle longest: an address that keeps
    acting keeps its empty bucket however many others come along."""
    buckets = KeyedBuckets(rate=1.0, burst=1.0, capacity=2)
    assert buckets.take("busy", 0.0) == 0.0
    assert buckets.take("other", 0.0) == 0.0
    assert buckets.take("busy", 0.5) == pytest.approx(0.5)  # used again, refused
    assert buckets.take("newcomer", 0.5) == 0.0  # "other" is forgotten, not "busy"
    assert buckets.take("busy", 0.5) == pytest.approx(0.5)
    assert buckets.take("other", 0.5) == 0.0  # forgotten: a fresh bucket


def test_keyed_buckets_keep_only_the_keys_whose_buckets_are_not_full_again() -> None:
    """Addresses that acted once long ago cost nothing: each new key forgets the one used
    longest ago if its bucket has refilled, so memory follows the recent addresses (a
    forgotten key gets a full bucket, as it would have had)."""
    buckets = KeyedBuckets(rate=1.0, burst=3.0)
    for n in range(1000):
        buckets.take(("passer-by", n), n / 1000)  # one token each, refilled a second later
    assert len(buckets) == 1000
    buckets.take("busy", 2.0)
    buckets.take("busy", 2.0)
    buckets.take("busy", 2.0)
    for n in range(1000):
        buckets.take(("later", n), 2.0 + n / 1000)
    assert len(buckets) == 1001  # each of them forgot one passer-by; "busy" is kept
    assert buckets.wait("busy", 2.0) == pytest.approx(1.0)
    assert buckets.take(("passer-by", 0), 3.0) == 0.0
    assert len(buckets) == 1002  # "busy" has not refilled: it stays the oldest


def test_failures_past_the_capacity_forget_the_key_that_failed_longest_ago() -> None:
    """An address that keeps failing keeps its record however many others fail after it
    first did: the key forgotten is the one whose last failure is oldest."""
    throttle = FailureThrottle(free=1, base=10.0, capacity=2)
    throttle.failed("guesser", 0.0)
    throttle.failed("other", 1.0)
    throttle.failed("guesser", 2.0)  # its last failure is now the latest
    throttle.failed("newcomer", 3.0)  # "other" is forgotten, not "guesser"
    assert throttle.has_failed("guesser") and throttle.has_failed("newcomer")
    assert not throttle.has_failed("other")
    assert throttle.retry_after("guesser", 3.0) == pytest.approx(2.0 + 20.0 - 3.0)
    assert throttle.retry_after("other", 3.0) == 0.0


def test_failed_logins_are_remembered_for_65536_addresses_the_longest_quiet_forgotten() -> None:
    """protocol.md 7.1: the failures of at most 65,536 addresses, those that failed
    longest ago forgotten first. An address that keeps failing stays remembered however
    many come after it; one that stopped is forgotten by the 65,537th, and is then as
    clean as a new one (an account's guessers no longer hold it up)."""
    guard = LoginGuard(ServerConfig(login_free_failures=1, login_delay=60.0))

    def fail(ip: str, account: str, now: float) -> None:
        assert guard.admit(ip, account, now) is None
        guard.finish(ip, account, False, now)

    guesser, quiet = "10.0.0.1", "10.0.0.2"
    fail(guesser, "carol", 0.0)
    fail(quiet, "dave", 0.0)
    fail(guesser, "carol", 600.0)  # its first wait is over; it fails again, now latest
    others = [f"10.1.{n // 256}.{n % 256}" for n in range(65_535)]
    for ip in others[:-1]:  # alice guessed at from 65,534 more addresses: 65,536 in all
        fail(ip, "alice", 600.0)
    # Every one remembered: the quiet one is held up by alice's guessers (60 s, the cap).
    assert guard.admit(quiet, "alice", 600.0) == Refusal("throttled", 60.0)
    assert guard.admit(guesser, "carol", 600.0) == Refusal("throttled", 60.0)
    fail(others[-1], "alice", 600.0)  # the 65,537th: the quiet one is forgotten
    assert guard.admit(guesser, "carol", 600.0) == Refusal("throttled", 60.0)
    assert guard.admit(quiet, "alice", 600.0) is None


def test_recent_keys_are_remembered_for_their_memory_and_at_most_their_capacity() -> None:
    """What remembers handshakes' ephemeral keys (a replay of one is dropped): a key for
    `memory` seconds, and no more keys than `capacity`, however fast they come."""
    recent = RecentKeys(capacity=3, memory=120.0)
    recent.add("first", 0.0)
    assert recent.seen("first", 119.9) and not recent.seen("first", 120.0)
    assert not recent.seen("never", 0.0)
    for n in range(10):
        recent.add(n, 1.0 + n / 100)
    assert [recent.seen(n, 2.0) for n in range(10)] == [False] * 7 + [True] * 3
    assert not recent.seen("first", 2.0)  # the oldest went first


def test_a_key_seen_again_after_its_memory_is_remembered_from_then() -> None:
    """A key forgotten by time and added again (an `INIT` replayed after two minutes) is
    as new: the keys older than it go first, and a replay of it soon after is still
    seen however many keys come meanwhile."""
    recent = RecentKeys(capacity=3, memory=120.0)
    recent.add("again", 0.0)
    recent.add("between", 1.0)
    assert not recent.seen("again", 200.0)
    recent.add("again", 200.0)
    recent.add("next", 201.0)
    recent.add("last", 202.0)  # a fourth key: the one to go is the oldest, "between"
    assert recent.seen("again", 202.0)
    assert recent.seen("next", 202.0) and recent.seen("last", 202.0)


def test_a_registration_rate_of_0_allows_an_address_its_burst_and_no_more() -> None:
    driver = EngineDriver(ServerConfig(register_rate=0.0, register_burst=2))
    names = iter(f"name{n}" for n in range(100))

    def attempt() -> wire.ServerFrame:
        name = next(names)
        return driver.request(wire.Register(rid=name, name=name, password="a-password"), HERE)

    assert all(isinstance(attempt(), wire.Registered) for _ in range(2))
    for _ in range(3):
        refused = attempt()
        assert isinstance(refused, wire.ErrorFrame) and refused.code == "too_many_registrations"
        assert refused.retry_after is None  # never: no time to wait is worth telling
        driver.now += 3600.0
    assert not isinstance(attempt(), wire.Registered)


def test_a_quiet_session_saves_up_no_more_than_its_burst() -> None:
    """Half a minute without a message earns 150 tokens at 5 a second; the bucket holds
    20 of them, so a burst after the quiet spell is cut where the first one was."""
    driver = EngineDriver(ServerConfig(message_rate=5.0, message_burst=20))
    driver.add_account("chatty", "chatty-password")
    chatty = Peer(driver, "chatty", "chatty-password", HERE)
    chatty.send(wire.Say(text="hello", cid="c0"))
    chatty.settle()
    driver.now += 30.0
    chatty.send(*(wire.Say(text=f"m{n}", cid=f"c{n + 1}") for n in range(25)))
    chatty.settle()
    assert len(driver.stored_messages()) == 1 + 20
    refused = chatty.of_type(wire.ErrorFrame)
    assert [e.code for e in refused] == ["rate_limited"] * 5


def test_questions_are_limited_per_session_by_a_burst_then_a_rate() -> None:
    driver = EngineDriver(ServerConfig(question_rate=10.0, question_burst=20))
    driver.add_account("curious", "curious-password")
    curious = Peer(driver, "curious", "curious-password", HERE)
    burst_at = driver.now
    curious.send(*(wire.Who() for _ in range(25)))
    curious.settle()
    answered = [ok for ok in curious.of_type(wire.Ok) if ok.count is not None]
    refused = curious.of_type(wire.ErrorFrame)
    assert len(answered) == 20 and len(refused) == 5
    assert {(e.code, e.message) for e in refused} == {
        ("rate_limited", "You are asking too fast; slow down.")
    }
    assert all(e.retry_after is not None and 0 < e.retry_after <= 0.101 for e in refused)
    driver.now += 0.5
    earned = int((driver.now - burst_at) * 10.0)  # tokens come back at 10 a second
    curious.send(*(wire.Who() for _ in range(earned + 5)))
    answered = [ok for ok in curious.of_type(wire.Ok) if ok.count is not None]
    assert len(answered) == 20 + earned


def test_a_session_has_at_most_two_history_reads_under_way() -> None:
    """A flood of `history` requests from one session (30 in a datagram, again and again)
    starts at most two database reads at a time: the rest are refused before any work,
    so that the reads never queue up ahead of the room's commits."""
    driver = EngineDriver(ServerConfig(question_burst=1000))
    driver.add_account("mallory", "mallory-password")
    mallory = Peer(driver, "mallory", "mallory-password", HERE)
    driver.auto_read = False
    for _flood in range(3):
        mallory.send(*(wire.HistoryRequest(limit=100) for _ in range(30)))
        assert len(driver.reading) == 2
    refused = mallory.of_type(wire.ErrorFrame)
    assert len(refused) == 88 and {e.code for e in refused} == {"rate_limited"}
    driver.finish_reads()
    mallory.send(*(wire.HistoryRequest(limit=100) for _ in range(30)))
    assert len(driver.reading) == 2


def test_a_client_asking_many_questions_at_once_gets_every_answer() -> None:
    """The client asks again when told it asks too fast: a program that asks for 40
    pages of history at once has them all, in time."""
    driver = EngineDriver()
    driver.add_account("reader", "reader-password")
    reader = Peer(driver, "reader", "reader-password", HERE, config=ClientConfig(reconnect=False))
    pages = [reader.connection.history(limit=5) for _ in range(40)]
    for _round in range(100):
        reader.settle()
        if all(page.done for page in pages):
            break
    assert all(page.done and page.error is None for page in pages)
    assert any(isinstance(f, wire.ErrorFrame) for f in reader.frames)  # some were refused


def test_a_burst_of_questions_is_answered_whole_without_a_word_of_refusal() -> None:
    """30 `who` at once (a greeter after a daemon restart, say): past the first 20 each
    refused one is asked again alone, once allowed; none of the refusals reaches the
    program as a notice, and a message sent meanwhile is not held back."""
    sim = Simulation(7, Conditions(delay=0.002))
    alice = sim.client("alice")
    sim.run_until(lambda: alice.ready)
    questions = [alice.who() for _ in range(30)]
    said = alice.say("not held back")
    sim.run_until(lambda: said.done, 0.1)
    sim.run_until(lambda: all(question.done for question in questions), 30.0)
    assert all(question.error is None for question in questions)
    assert not [event for event in sim.events["alice"] if isinstance(event, Notice)]


def test_a_message_refused_as_too_fast_is_not_overtaken_by_later_ones() -> None:
    driver = EngineDriver(ServerConfig(message_rate=1.0, message_burst=2))
    driver.add_account("chatty", "chatty-password")
    chatty = Peer(driver, "chatty", "chatty-password", HERE)

    def say(n: int) -> None:
        chatty.send(wire.Say(text=f"m{n}", cid=f"c{n}"))
        chatty.settle(1)

    def stored() -> list[str]:
        return [m.text for m in driver.stored_messages()]

    for n in range(3):
        say(n)
    assert stored() == ["m0", "m1"]  # m2 was refused: wait a second
    driver.now += 1.5
    say(3)  # a token is back, but m2 has not been sent again yet: m3 must wait too
    assert stored() == ["m0", "m1"]
    assert [e.code for e in chatty.of_type(wire.ErrorFrame)] == ["rate_limited"] * 2
    say(2)
    driver.now += 1.0
    say(3)
    assert stored() == ["m0", "m1", "m2", "m3"]
    # A refused message its sender gives up on holds the others back only for a while.
    say(4)
    say(5)
    driver.advance(12.0)  # the daemon runs meanwhile: time it was stopped would not count
    say(6)
    assert stored() == ["m0", "m1", "m2", "m3", "m6"]


def test_a_refusal_its_sender_has_not_had_holds_later_messages_back_until_it_has() -> None:
    """The refusal of a message as too fast was lost as the sender's network went down;
    when it came back, 12 s later, its next message was taken before it heard of the
    refusal: the refused message was presumed given up, and stored after the next."""
    driver = EngineDriver(ServerConfig(message_rate=1.0, message_burst=2))
    driver.add_account("chatty", "chatty-password")
    resends = ClientConfig(reconnect=False, retry_rate_limited=True)
    chatty = Peer(driver, "chatty", "chatty-password", HERE, config=resends)
    said = [chatty.request(wire.Say(text=f"m{n}", cid=f"c{n}")) for n in range(3)]
    for data in chatty.connection.datagrams_to_send(driver.now):
        driver.receive(data, HERE)  # m2 is refused, and every answer lost on the way
    driver.advance(12.0)
    driver.inbox.pop(HERE, None)
    said.append(chatty.request(wire.Say(text="m3", cid="c3")))
    chatty.flush()  # m3 reaches the daemon before the refusal of m2 reaches the client
    for _ in range(4):
        chatty.settle(20)
    assert all(handle.done and handle.error is None for handle in said)
    assert [m.text for m in driver.stored_messages()] == ["m0", "m1", "m2", "m3"]


def test_sessions_per_address_are_capped() -> None:
    driver = EngineDriver(ServerConfig(max_sessions_per_address=3))
    driver.add_account("many", "many-password")
    peers = [Peer(driver, "many", "many-password", ("10.0.0.1", port)) for port in range(3)]
    assert all(peer.connection.connected for peer in peers)
    refused = Peer(driver, "many", "many-password", ("10.0.0.1", 99))
    assert isinstance(refused.connection.failure, TooManySessions)
    assert refused.connection.failure.message == (
        "Too many sessions from your address; close one and try again."
    )
    assert isinstance(login(driver, "many", "many-password", THERE), wire.Welcome)
    peers[0].send(wire.Logout())
    assert isinstance(login(driver, "many", "many-password", ("10.0.0.1", 99)), wire.Welcome)


def test_ipv4_clients_of_a_dual_stack_daemon_are_counted_by_their_own_address() -> None:
    # A daemon listening on "::" sees IPv4 clients as IPv4-mapped IPv6 addresses: each is
    # its own IPv4 address, not one /64 that every IPv4 client in the world shares.
    driver = EngineDriver(ServerConfig(max_sessions_per_address=2))
    driver.add_account("many", "many-password")
    crowded = [
        Peer(driver, "many", "many-password", ("::ffff:192.0.2.1", port, 0, 0)) for port in (1, 2)
    ]
    assert all(peer.connection.connected for peer in crowded)
    other = Peer(driver, "many", "many-password", ("::ffff:198.51.100.7", 1, 0, 0))
    assert other.connection.connected
    # The same IPv4 address in its plain form is the same address, with no room left.
    plain = Peer(driver, "many", "many-password", ("192.0.2.1", 3))
    assert isinstance(plain.connection.failure, TooManySessions)


# --- through the client API, on a live daemon ---------------------------------------------


async def test_each_limit_reaches_the_client_as_its_own_error(tmp_path: Path) -> None:
    config = ServerConfig(
        login_free_failures=1,
        login_delay=30.0,
        register_burst=2,
        max_sessions_per_address=2,
        message_burst=3,
        message_rate=0.5,
    )
    no_retry = ClientConfig(timeout=5.0, retry_rate_limited=False)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(serve, "127.0.0.1", 0, tmp_path / "chat.db", config)
            await register(host, port, "alice", "alice-password")
            await register(host, port, "bob", "bob-password")
            with pytest.raises(TooManyRegistrations) as registrations:
                await register(host, port, "carol", "carol-password")
            assert registrations.value.retry_after and registrations.value.retry_after > 1

            async with (
                connect(host, port, "alice", "alice-password", config=no_retry) as first,
                connect(host, port, "alice", "alice-password") as _second,
            ):
                with pytest.raises(TooManySessions):
                    async with connect(host, port, "alice", "alice-password"):
                        pass
                for n in range(3):
                    await first.say(f"burst {n}")
                with pytest.raises(RateLimited) as limited:
                    await first.say("one too many")
                assert limited.value.retry_after and 0 < limited.value.retry_after <= 2.001
                assert limited.value.message == "You are sending too fast; slow down."
            # Last, as it locks this address out for 30 s: a failed login, then throttling.
            with pytest.raises(WrongPassword):
                async with connect(host, port, "bob", "not-bobs-password"):
                    pass
            with pytest.raises(Throttled) as throttled:
                async with connect(host, port, "bob", "bob-password"):
                    pass
            assert throttled.value.retry_after == pytest.approx(30.0, abs=0.1)
            assert "wait" in throttled.value.message

            nursery.cancel_scope.cancel()


async def test_rate_limited_messages_are_resent_and_keep_their_order(tmp_path: Path) -> None:
    """By default the client waits and resends; the sender's order must survive that."""
    database = tmp_path / "chat.db"
    config = ServerConfig(message_rate=40.0, message_burst=5)
    rng = random.Random(1)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(serve, "127.0.0.1", 0, database, config)
            await register(host, port, "eager", "eager-password")
            async with connect(host, port, "eager", "eager-password") as chat:
                receipts = []
                for n in range(60):
                    receipts.append(chat.say_nowait(f"m{n}"))
                    if rng.random() < 0.3:  # now and then a pause, so tokens come back
                        await trio.sleep(rng.uniform(0.0, 0.08))
                ids = [(await receipt.wait()).id for receipt in receipts]
            nursery.cancel_scope.cancel()
    assert ids == sorted(ids)
    with sqlite3.connect(database) as db:
        texts = [text for (text,) in db.execute("SELECT text FROM messages ORDER BY id")]
    assert texts == [f"m{n}" for n in range(60)]


# --- the serve command's options ----------------------------------------------------------


async def test_the_serve_options_set_every_limit(tmp_path: Path) -> None:
    options = (
        *("--register-rate", "1", "--register-burst", "2"),
        *("--login-free-failures", "1", "--login-delay", "20"),
        *("--sessions-per-address", "2", "--message-burst", "2", "--message-rate", "0.5"),
        *("--idle-timeout", "3"),
    )
    # Dora pings well within --idle-timeout, so only the silent ghost is closed.
    no_retry = ClientConfig(timeout=5.0, retry_rate_limited=False, keepalive=0.5)
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, tmp_path / "chat.db", *options)
            host, port = await daemon.start()
            started = trio.current_time()
            await register(host, port, "dora", "dora-password")
            await register(host, port, "ghost", "ghost-password")
            with pytest.raises(TooManyRegistrations) as registrations:
                await register(host, port, "eve", "eve-password")
            # A minute for the next, less what has passed since the burst was spent (the
            # two hashes take seconds on a busy machine).
            passed = trio.current_time() - started
            assert 60.0 - passed <= (registrations.value.retry_after or 0) <= 60.0
            async with connect(host, port, "dora", "dora-password", config=no_retry) as dora:
                events = dora.events()
                # The ghost logs in as a client does, then falls silent.
                ghost = RawPeer(daemon_public_key(tmp_path / "chat.db"), "ghost", "ghost-password")
                await ghost.log_in(host, port)
                with pytest.raises(TooManySessions):
                    async with connect(host, port, "dora", "dora-password"):
                        pass
                await dora.say("one")
                await dora.say("two")
                with pytest.raises(RateLimited) as limited:
                    await dora.say("three")
                assert limited.value.retry_after == pytest.approx(2.0, abs=0.05)
                # After three silent seconds (--idle-timeout) the daemon closes the ghost.
                async for event in events:
                    if isinstance(event, Left):
                        assert (event.name, event.reason) == ("ghost", "timeout")
                        break
                ghost.close()
            with pytest.raises(WrongPassword):
                async with connect(host, port, "dora", "wrong-password"):
                    pass
            with pytest.raises(Throttled) as throttled:
                async with connect(host, port, "dora", "dora-password"):
                    pass
            assert throttled.value.retry_after == pytest.approx(20.0, abs=0.1)
            assert await daemon.stop() == 0


async def test_the_serve_options_for_accounts_checks_registrations_and_handshakes_reach_the_daemon(
    tmp_path: Path,
) -> None:
    options = (
        *("--sessions-per-account", "3", "--checks-per-address", "5"),
        *("--register-rate-total", "10", "--handshake-rate", "2.5", "--handshake-burst", "7"),
    )
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, tmp_path / "chat.db", *options)
            await daemon.start()
            line = await daemon.wait_for("limits other than the defaults")
            assert await daemon.stop() == 0
    for setting in (
        "max_sessions_per_account=3",
        "checks_per_address=5",
        "register_rate_total=10.0",
        "register_burst_total=10",
        "handshake_rate=2.5",
        "handshake_burst=7",
    ):
        assert setting in line, setting
