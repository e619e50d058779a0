"""A person changing their own password: the old one checked as a login's is (the same
throttles), the new one stored before it is answered, the account's other sessions
ended, a ticket under the new password, and a change whose answer was lost with the
session not leaving its client locked out."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import trio

import trio_chat
from tests.test_protocol_conformance import restarted
from trio_chat import wire
from trio_chat.cli import ExitCode
from trio_chat.cli.account import NEW_PASSWORD_MISSING
from trio_chat.cli.exits import exit_code_for, sentence
from trio_chat.client_protocol import ClientConfig
from trio_chat.client_protocol.endings import CHANGE_UNANSWERED, PASSWORD_CHANGED_AWAY
from trio_chat.engine import ServerConfig
from trio_chat.engine.core import CHANGED_ELSEWHERE
from trio_chat.engine.guard import BUSY_MESSAGE, BUSY_WAIT
from trio_chat.engine.notes import LoginRefused
from trio_chat.errors import (
    ConnectionLost,
    PasswordChangedAway,
    PasswordTooShort,
    PasswordUnchanged,
    Removed,
    Throttled,
    WrongPassword,
)
from trio_chat.events import Disconnected, Left, Reconnected
from trio_chat.records import PasswordSet
from trio_chat.testing.daemon import CLI, DaemonProcess
from trio_chat.testing.driver import PASSWORD, EngineDriver, Peer, fake_hash

NEW = "battery staple"
COMING_BACK = ClientConfig(reconnect=True, retry_rate_limited=False)


def room() -> tuple[EngineDriver, Peer, Peer]:
    driver = EngineDriver()
    driver.add_account("alice")
    alice = Peer(driver, "alice", address=("10.0.0.1", 1), config=COMING_BACK)
    laptop = Peer(driver, "alice", address=("10.0.0.2", 1), config=COMING_BACK)
    for peer in (alice, laptop):
        peer.settle()
        assert peer.connection.ready
    return driver, alice, laptop


def test_a_new_password_is_stored_then_answered_and_ends_the_other_sessions() -> None:
    driver, alice, laptop = room()
    driver.auto_commit = False
    handle = alice.connection.change_password(PASSWORD, NEW)
    alice.settle()
    assert not handle.done  # hashed, not yet stored
    assert [type(op) for op in driver.uncommitted] == [PasswordSet]
    driver.commit_held()
    for _ in range(3):
        alice.settle()
        laptop.settle()
    assert handle.done and handle.error is None
    assert isinstance(laptop.connection.failure, Removed)
    assert str(laptop.connection.failure) == CHANGED_ELSEWHERE
    assert alice.connection.ready and alice.connection.failure is None
    assert alice.session.busy == 0  # counted out once stored
    stored = driver.stored_accounts()[0]
    assert stored.password_hash == fake_hash(NEW)
    # The new ticket logs in; the old password does not, the new one does.
    resumed = Peer(driver, "alice", "not needed", address=("10.0.0.3", 1), login=False)
    resumed.connection.ticket = alice.connection.ticket
    resumed.login()
    resumed.settle()
    assert resumed.connection.ready
    old = Peer(driver, "alice", PASSWORD, address=("10.0.0.4", 1))
    old.settle()
    assert isinstance(old.connection.failure, WrongPassword)
    new = Peer(driver, "alice", NEW, address=("10.0.0.5", 1))
    new.settle()
    assert new.connection.ready


def test_a_wrong_old_password_is_throttled_as_a_login_is() -> None:
    """Guessing through a session (a stolen ticket, a laptop left open) is no faster
    than logging in: three wrong, then a wait, counted before any hash."""
    driver, alice, _laptop = room()
    refusals = []
    hashes = driver.hashes_done
    for _ in range(6):
        handle = alice.connection.change_password("not the password", NEW)
        alice.flush()  # no time passes
        assert handle.done
        refusals.append(type(handle.error))
    assert refusals == [WrongPassword] * 3 + [Throttled] * 3
    assert driver.hashes_done == hashes + 3
    assert driver.engine.accounts["alice"].password_hash == fake_hash(PASSWORD)
    assert alice.session.busy == 0  # each refused change counted out
    refused = [note for note in driver.engine.take_notes() if isinstance(note, LoginRefused)]
    assert [(note.name, note.address, note.code) for note in refused] == [
        ("alice", alice.address, "wrong_password")
    ] * 3  # the operator hears of each wrong one, as of a login's
    # Told how long to wait, in seconds and to the millisecond: at least 1 s said.
    driver.now += 0.8
    handle = alice.connection.change_password("not the password", NEW)
    alice.flush()
    throttled = alice.of_type(wire.ErrorFrame)[-1]
    assert (throttled.code, throttled.message) == (
        "throttled",
        "Too many wrong passwords; wait 1 s before trying again.",
    )
    assert throttled.retry_after == pytest.approx(0.2, abs=0.002)


def test_changes_from_an_ipv6_network_are_counted_as_its_logins_are() -> None:
    """By the /64 (an IPv6 host holds a whole one): sessions at two of its addresses
    share one allowance, and each check counted in is counted out."""
    driver = EngineDriver()
    driver.add_account("alice")
    here = Peer(driver, "alice", address=("2001:db8::1", 1), config=COMING_BACK)
    there = Peer(driver, "alice", address=("2001:db8::2", 1), config=COMING_BACK)
    refusals = []
    for peer in (here, here, here, there, here, there):
        handle = peer.connection.change_password("not the password", NEW)
        peer.flush()  # no time passes
        assert handle.done, "answered busy: a check was never counted out"
        refusals.append(type(handle.error))
    assert refusals == [WrongPassword] * 3 + [Throttled] * 3
    assert driver.hashes_done == 3 + 3  # the three logins, then three wrong changes


def test_a_new_password_the_rules_refuse_costs_no_hash() -> None:
    driver, alice, _laptop = room()
    with pytest.raises(PasswordTooShort):
        alice.connection.change_password(PASSWORD, "short")
    hashes = driver.hashes_done
    handle = alice.request(wire.ChangePassword(old=PASSWORD, new="short"))
    alice.settle()
    assert isinstance(handle.error, PasswordTooShort)
    assert driver.hashes_done == hashes


def test_a_current_password_no_password_could_be_is_wrong_and_costs_no_hash() -> None:
    driver, alice, _laptop = room()
    hashes = driver.hashes_done
    handle = alice.request(wire.ChangePassword(old="short", new=NEW))  # raw: the API checks
    alice.settle()
    assert isinstance(handle.error, WrongPassword), handle.error
    assert driver.hashes_done == hashes
    assert driver.engine.accounts["alice"].password_hash == fake_hash(PASSWORD)
    assert driver.stored_accounts()[0].password_hash == fake_hash(PASSWORD)


def test_the_current_password_is_checked_whatever_unicode_form_it_is_typed_in() -> None:
    driver = EngineDriver()
    driver.add_account("alice", "\u00c5sa's password")  # Å as one character (NFC)
    alice = Peer(driver, "alice", "\u00c5sa's password")
    alice.settle()
    handle = alice.request(wire.ChangePassword(old="A\u030asa's password", new=NEW))
    alice.settle()
    assert handle.done and handle.error is None, handle.error
    assert driver.engine.accounts["alice"].password_hash == fake_hash(NEW)


def test_a_change_past_a_full_hashing_queue_is_answered_busy_and_counts_nothing() -> None:
    driver = EngineDriver(ServerConfig(hash_slots=1, hash_queue_limit=1))
    driver.add_account("alice")
    alice = Peer(driver, "alice", address=("10.0.0.1", 1), config=COMING_BACK)
    laptop = Peer(driver, "alice", address=("10.0.0.2", 1), config=COMING_BACK)
    for peer in (alice, laptop):
        peer.settle()
    driver.auto_hash = False
    hashes = driver.hashes_done
    alice.request(wire.ChangePassword(old="not the password", new=NEW))
    alice.flush()  # its check runs
    laptop.request(wire.ChangePassword(old="not the password", new=NEW))
    laptop.flush()  # its check waits: the queue is full
    assert len(driver.hashing) == 1
    alice.request(wire.ChangePassword(old=PASSWORD, new=NEW))
    alice.flush()
    busy = alice.of_type(wire.ErrorFrame)[-1]
    assert (busy.code, busy.message, busy.retry_after) == ("busy", BUSY_MESSAGE, BUSY_WAIT)
    assert len(driver.hashing) == 1
    driver.finish_hashing()
    driver.finish_hashing()
    # Two wrong guesses counted, not three: the one answered busy was never let in.
    assert driver.hashes_done == hashes + 2


def test_the_current_password_again_is_refused_and_ends_no_other_session() -> None:
    # It was taken, hashed and stored: the account's other sessions ended for nothing.
    driver, alice, laptop = room()
    same = "\u0041\u030a" + PASSWORD  # Å as A and a ring: the same once normalized (NFC)
    with pytest.raises(PasswordUnchanged, match="the same as the current password given"):
        alice.connection.change_password(PASSWORD, PASSWORD)
    hashes = driver.hashes_done
    for old, new in (
        (PASSWORD, PASSWORD),
        ("\u00c5" + PASSWORD, same),
        (same, "\u00c5" + PASSWORD),
    ):
        handle = alice.request(wire.ChangePassword(old=old, new=new))
        alice.settle()
        assert isinstance(handle.error, PasswordUnchanged)
    assert driver.hashes_done == hashes  # refused before anything was counted or hashed
    laptop.settle()
    assert laptop.connection.ready and laptop.connection.failure is None


def lose_the_session(driver: EngineDriver, peer: Peer) -> None:
    """The daemon forgets `peer`'s session (a restart would): its client, told so at its
    next datagram, comes back."""
    driver.engine._close(peer.session, "silent", driver.now, driver.wall)
    driver.pump()
    driver.inbox.pop(peer.address, None)
    driver.advance(31.0)  # past the time an ended session is remembered


def come_back(peer: Peer) -> None:
    for _ in range(20):
        peer.settle()
        if peer.connection.ready and any(isinstance(e, Reconnected) for e in peer.events):
            break


def test_a_change_whose_answer_was_lost_with_the_session_logs_in_with_the_new_one() -> None:
    """Stored, its answer lost, the session gone with it: the change fails as unanswered
    ("may be the one now"), and the client comes back with the new password, as the
    ticket and the old one no longer log in."""
    driver, alice, _laptop = room()
    driver.auto_commit = False
    handle = alice.connection.change_password(PASSWORD, NEW)
    alice.settle()
    driver.commit()
    driver.pump()
    lose_the_session(driver, alice)
    come_back(alice)
    assert isinstance(handle.error, ConnectionLost)
    assert str(handle.error) == CHANGE_UNANSWERED
    assert any(isinstance(e, Disconnected) for e in alice.events)
    assert alice.connection.ready and alice.connection.failure is None
    assert alice.session.busy == 0  # the change was done with: the new session has none
    # Lost once more, its ticket gone too: it logs in with the new password at once.
    lose_the_session(driver, alice)
    alice.connection.ticket = ""
    alice.events.clear()
    refused = driver.engine.stats["tickets_refused"]
    come_back(alice)
    assert alice.connection.ready and driver.engine.stats["tickets_refused"] == refused


def test_a_change_whose_session_was_lost_before_it_was_stored_keeps_the_next_one() -> None:
    """The client comes back (its ticket still good) while the change is on its way to
    the disk: the change is made for its new session, which stays; the laptop's ends."""
    driver, alice, laptop = room()
    driver.auto_commit = False
    handle = alice.connection.change_password(PASSWORD, NEW)
    alice.settle()
    assert [type(op) for op in driver.uncommitted] == [PasswordSet]
    lose_the_session(driver, alice)
    come_back(alice)
    assert isinstance(handle.error, ConnectionLost)
    driver.commit_held()
    for _ in range(3):
        alice.settle()
        laptop.settle()
    assert isinstance(laptop.connection.failure, Removed)
    assert alice.connection.ready and alice.connection.failure is None
    assert len([op for op in driver.stored if isinstance(op, PasswordSet)]) == 1
    assert alice.session.busy == 0
    assert not alice.of_type(wire.PasswordChanged)  # the new session asked nothing
    # Its ticket is from before the change: lost again, it comes back with the new one.
    lose_the_session(driver, alice)
    come_back(alice)
    assert alice.connection.ready and alice.connection.failure is None


@pytest.mark.parametrize("whose", ["the account's own", "the operator's"])
def test_the_room_is_told_whose_new_password_ended_a_session(whose: str) -> None:
    # `trio-chat password` (a quiet session of alice's own) ended her session in the
    # room, and bob read that the operator had taken her out.
    driver = EngineDriver()
    driver.add_account("alice")
    driver.add_account("bob")
    bob = Peer(driver, "bob", address=("10.0.0.9", 1))
    chatting = Peer(driver, "alice", address=("10.0.0.1", 1))
    for peer in (bob, chatting):
        peer.settle()
    if whose == "the operator's":
        account = driver.engine.accounts["alice"]
        driver.engine.change_account(PasswordSet(account.id, fake_hash(NEW)))
        driver.pump()
    else:
        command = Peer(driver, "alice", address=("10.0.0.2", 1), quiet=True)
        command.settle()
        command.connection.change_password(PASSWORD, NEW)
        command.settle()
    for _ in range(3):
        chatting.settle()
        bob.settle()
    assert isinstance(chatting.connection.failure, Removed)
    [left] = [event for event in bob.events if isinstance(event, Left)]
    assert (left.name, left.reason) == (
        "alice",
        "removed" if whose == "the operator's" else "password_changed",
    )


def test_a_change_racing_the_operators_reset_leaves_the_operators() -> None:
    """The operator resets the password (after a compromise, say) while a session's
    change is checked: the session's is not made after it, in memory nor on disk (it
    was made on the hash the operator's replaced)."""
    driver, alice, _laptop = room()
    driver.auto_hash = False
    driver.auto_commit = False
    handle = alice.connection.change_password(PASSWORD, NEW)
    alice.flush()
    account = driver.engine.accounts["alice"]
    driver.engine.change_account(PasswordSet(account.id, fake_hash("the operator's")))
    driver.pump()
    driver.finish_hashing()  # the old password checked
    assert not driver.hashing  # nothing more to hash: the operator's came first
    assert [op.expect for op in driver.uncommitted if isinstance(op, PasswordSet)] == [None]
    driver.commit_held()
    alice.settle()
    assert isinstance(handle.error, WrongPassword)  # not made: the operator's came first
    assert "changed meanwhile" in str(handle.error)
    assert driver.engine.accounts["alice"].password_hash == fake_hash("the operator's")
    assert driver.stored_accounts()[0].password_hash == fake_hash("the operator's")


def test_a_change_whose_session_was_lost_while_it_was_checked_is_told_to_no_one() -> None:
    """Wrong, and its client back on a new session by then: that session asked nothing
    and is told nothing (a refusal of no request), and it stays."""
    driver, alice, _laptop = room()
    driver.auto_hash = False
    handle = alice.connection.change_password("not the password", NEW)
    alice.flush()
    lose_the_session(driver, alice)
    come_back(alice)  # with its ticket: nothing to check
    assert isinstance(handle.error, ConnectionLost)
    driver.finish_hashing()
    alice.settle()
    assert not [e for e in alice.of_type(wire.ErrorFrame) if e.code == "wrong_password"]
    assert alice.connection.ready and alice.connection.failure is None
    assert alice.session.busy == 0


def test_the_operator_resetting_the_password_while_the_new_one_is_hashed_wins() -> None:
    driver, alice, _laptop = room()
    driver.auto_hash = False
    driver.auto_commit = False
    handle = alice.connection.change_password(PASSWORD, NEW)
    alice.flush()
    driver.finish_hashing()  # the current password checked: the new one is hashed
    assert len(driver.hashing) == 1
    account = driver.engine.accounts["alice"]
    driver.engine.change_account(PasswordSet(account.id, fake_hash("the operator's")))
    driver.pump()
    driver.finish_hashing()  # the new password hashed after the operator's came
    assert [op.expect for op in driver.uncommitted if isinstance(op, PasswordSet)] == [None]
    driver.commit_held()
    alice.settle()
    assert isinstance(handle.error, WrongPassword) and "changed meanwhile" in str(handle.error)
    assert driver.engine.accounts["alice"].password_hash == fake_hash("the operator's")
    assert driver.stored_accounts()[0].password_hash == fake_hash("the operator's")


def test_the_operators_change_to_another_account_leaves_a_change_under_way_alone() -> None:
    driver, alice, _laptop = room()
    driver.add_account("bob")
    driver.auto_hash = False
    handle = alice.connection.change_password(PASSWORD, NEW)
    alice.flush()
    bob = driver.engine.accounts["bob"]
    driver.engine.change_account(PasswordSet(bob.id, lock=True))
    driver.pump()
    driver.finish_hashing()
    driver.finish_hashing()
    alice.settle()
    assert handle.done and handle.error is None, handle.error
    assert driver.engine.accounts["alice"].password_hash == fake_hash(NEW)


def test_a_login_naming_another_accounts_session_as_its_own_takes_none_of_its_change() -> None:
    """`replaces` is the client's word: a session of bob's saying it replaces one of
    alice's gets neither her change nor its answer, and does not end her session."""
    driver, alice, _laptop = room()
    driver.add_account("bob")
    driver.auto_commit = False
    handle = alice.connection.change_password(PASSWORD, NEW)
    alice.settle()
    welcome = driver.request(
        wire.Login(name="bob", password=PASSWORD, replaces=alice.sid), ("10.0.0.7", 1)
    )
    assert isinstance(welcome, wire.Welcome)
    driver.commit_held()
    alice.settle()
    assert handle.done and handle.error is None, handle.error
    assert alice.connection.ready and alice.connection.failure is None


def test_a_change_that_could_not_be_stored_is_told_so() -> None:
    driver, alice, _laptop = room()
    driver.auto_commit = False
    handle = alice.connection.change_password(PASSWORD, NEW)
    alice.settle()
    (op,) = driver.uncommitted
    driver.uncommitted.clear()
    driver.engine.failed(op)
    driver.pump()
    alice.settle()
    assert handle.done and handle.error is not None
    assert handle.error.code == "storage_failed"
    assert alice.session.busy == 0
    assert driver.engine.accounts["alice"].password_hash == fake_hash(PASSWORD)


def test_a_change_asked_before_the_login_with_a_wrong_password_is_refused() -> None:
    driver = EngineDriver()
    driver.add_account("alice")
    alice = Peer(driver, "alice", address=("10.0.0.1", 1), login=False, config=COMING_BACK)
    # Its "new" password is the one it logs in with: the client once took that login
    # for the change made.
    handle = alice.connection.change_password("not the password", PASSWORD)
    alice.login()
    alice.settle()
    assert isinstance(handle.error, WrongPassword)
    assert alice.connection.ready
    assert driver.engine.accounts["alice"].password_hash == fake_hash(PASSWORD)


async def test_trio_chat_password_changes_it_and_the_other_session_ends(
    tmp_path: Path,
) -> None:
    database = tmp_path / "chat.db"
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("TRIO_CHAT_PASSWORD", None)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            daemon = DaemonProcess(nursery, database)
            host, port = await daemon.start(accounts=["alice"], password=PASSWORD)
            command = [*CLI, "password", "--name", "alice", "--host", host, "--port", str(port)]

            async def password(stdin: bytes, *more: str) -> subprocess.CompletedProcess[bytes]:
                return await trio.run_process(
                    [*command, *more],
                    stdin=stdin,
                    env=env,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )

            async with trio_chat.connect(host, port, "alice", PASSWORD) as elsewhere:
                wrong = await password(f"not it at all\n{NEW}\n{NEW}\n".encode())
                assert wrong.returncode == ExitCode.WRONG_PASSWORD
                # Told before the new password is asked for.
                assert wrong.stderr.decode() == (
                    "Current password: \nWrong password for 'alice'.\n"
                )
                new_file = tmp_path / "new-password"
                new_file.write_text(f"{NEW}\n")
                wrong_again = await password(
                    b"not it at all\n", "--new-password-file", str(new_file)
                )
                assert wrong_again.returncode == ExitCode.WRONG_PASSWORD
                assert wrong_again.stderr.decode().endswith("Wrong password for 'alice'.\n")
                ended = await password(f"{PASSWORD}\n".encode())
                assert ended.returncode == ExitCode.INTERRUPTED
                assert ended.stderr.decode().endswith(NEW_PASSWORD_MISSING + "\n")
                same = await password(f"{PASSWORD}\n{PASSWORD}\n{PASSWORD}\n".encode())
                assert same.returncode == ExitCode.INVALID_PASSWORD
                assert same.stderr.decode().endswith(
                    "The new password is the same as the current password given; choose another.\n"
                )
                changed = await password(f"{PASSWORD}\n{NEW}\n{NEW}\n".encode())
                assert changed.returncode == 0, changed.stderr
                assert changed.stdout.decode() == (
                    "Changed the password of alice; any other session of it has ended.\n"
                )
                with pytest.raises(Removed):
                    async for _event in elsewhere.events():
                        pass
            with pytest.raises(WrongPassword):
                async with trio_chat.connect(host, port, "alice", PASSWORD):
                    pass
            async with trio_chat.connect(host, port, "alice", NEW) as alice:
                await alice.change_password(NEW, PASSWORD)  # and back, from the API
            async with trio_chat.connect(host, port, "alice", PASSWORD) as alice:
                assert "alice" in await alice.who()
            assert "alice changed their password from" in daemon.text
            assert PASSWORD not in daemon.text and NEW not in daemon.text
            assert await daemon.stop() == 0


def test_a_second_change_sent_before_the_first_was_stored_is_refused_and_counted_out() -> None:
    driver, alice, _laptop = room()
    driver.auto_commit = False
    first = alice.connection.change_password(PASSWORD, NEW)
    second = alice.request(wire.ChangePassword(old=PASSWORD, new="another new one"))  # raw
    alice.flush()
    driver.commit_held()
    alice.settle()
    assert first.done and first.error is None
    assert isinstance(second.error, WrongPassword)
    assert "changed meanwhile" in str(second.error)
    assert alice.session.busy == 0
    assert driver.engine.accounts["alice"].password_hash == fake_hash(NEW)


def test_a_change_checked_while_the_operator_locked_and_unlocked_is_not_made() -> None:
    """A lock and an unlock leave the hash as it was: the change, checked before them and
    hashed after, is still not made (the lock was, say, for this very session)."""
    driver, alice, _laptop = room()
    driver.auto_hash = False
    handle = alice.connection.change_password(PASSWORD, NEW)
    alice.flush()
    account = driver.engine.accounts["alice"]
    for lock in (True, False):
        driver.engine.change_account(PasswordSet(account.id, lock=lock))
        driver.pump()
    driver.finish_hashing()
    driver.finish_hashing()
    alice.settle()
    assert handle.done and handle.error is not None  # ended by the lock
    assert driver.engine.accounts["alice"].password_hash == fake_hash(PASSWORD)
    assert driver.stored_accounts()[0].password_hash == fake_hash(PASSWORD)


def test_the_same_password_twice_is_judged_by_what_was_given_not_by_the_stored_one() -> None:
    driver, alice, _laptop = room()
    hashes = driver.hashes_done
    # A wrong current password, given again as the new one: refused as the same, and
    # never counted as a failed login (six of them would have throttled the account).
    for _ in range(6):
        handle = alice.request(wire.ChangePassword(old="not it at all", new="not it at all"))
        alice.settle()
        assert isinstance(handle.error, PasswordUnchanged), handle.error
    assert driver.hashes_done == hashes
    # The stored password as the new one, the current one given wrong: checked and
    # wrong (saying "the same" would tell what the stored password is).
    handle = alice.request(wire.ChangePassword(old="not it at all", new=PASSWORD))
    alice.settle()
    assert isinstance(handle.error, WrongPassword), handle.error
    handle = alice.request(wire.ChangePassword(old=PASSWORD, new=NEW))
    alice.settle()
    assert handle.error is None, handle.error
    assert driver.engine.accounts["alice"].password_hash == fake_hash(NEW)


def test_a_wrong_password_at_a_first_login_lost_midway_is_only_wrong() -> None:
    # The daemon restarted while checking a mistyped password: the login, tried again on
    # a new channel, was told its password "was changed while the connection was away".
    driver = EngineDriver()
    driver.add_account("alice", "correct horse")
    driver.auto_hash = False
    peer = Peer(driver, "alice", "mistyped!!", config=ClientConfig(retry_rate_limited=False))
    peer.driver = restarted(driver)
    for _ in range(200):
        peer.settle()
        peer.driver.advance(0.5)
        peer.connection.handle_timer(peer.driver.now)
        peer.flush()
        if peer.connection.failure is not None:
            break
    failure = peer.connection.failure
    assert isinstance(failure, WrongPassword) and not isinstance(failure, PasswordChangedAway)


def test_a_password_changed_away_is_told_as_it_is_with_the_wrong_passwords_status() -> None:
    error = PasswordChangedAway(PASSWORD_CHANGED_AWAY)
    assert sentence(error, "bob") == PASSWORD_CHANGED_AWAY  # not "Wrong password for 'bob'."
    assert exit_code_for(error) == ExitCode.WRONG_PASSWORD
