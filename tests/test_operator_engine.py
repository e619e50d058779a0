"""The operator acting on a running daemon's account, as its engine sees it: a lock or a
new password taken once stored, never before; the account's sessions ended and told why;
a kick that its clients do not undo by coming back; a login checked meanwhile."""

from __future__ import annotations

from typing import Any

import pytest

from trio_chat import client_handshake, noise, wire
from trio_chat.client_protocol import ClientConfig
from trio_chat.engine import ServerConfig, core
from trio_chat.engine.core import ACCOUNT_REMOVED, NEW_PASSWORD, REMOVED
from trio_chat.engine.notes import Registered, RegistrationRefused
from trio_chat.errors import (
    AccountLocked,
    AccountRemoved,
    Muted,
    RegistrationsClosed,
    Removed,
    UnknownUser,
    WrongPassword,
)
from trio_chat.events import Event, History, Left, Notice, PublicMessage, Reconnected
from trio_chat.records import MuteSet, PasswordSet, Snapshot
from trio_chat.rules import RuleError
from trio_chat.testing.driver import PASSWORD, EngineDriver, Peer, fake_hash
from trio_chat.testing.simulation import Simulation
from trio_chat.wire import MUTED_NOTICE, UNMUTED_NOTICE

NEW = "battery staple"
COMING_BACK = ClientConfig(reconnect=True, retry_rate_limited=False)


def room() -> tuple[EngineDriver, Peer, Peer, Peer]:
    """alice in the room twice (both clients come back by themselves), bob once."""
    driver = EngineDriver()
    for name in ("alice", "bob"):
        driver.add_account(name)
    alice = Peer(driver, "alice", address=("10.0.0.1", 1), config=COMING_BACK)
    laptop = Peer(driver, "alice", address=("10.0.0.2", 1), config=COMING_BACK)
    bob = Peer(driver, "bob", address=("10.0.0.3", 1))
    for peer in (alice, laptop, bob):
        peer.settle()
        assert peer.connection.ready
    return driver, alice, laptop, bob


def settle(*peers: Peer, seconds: float = 0.0) -> None:
    if seconds:
        peers[0].driver.advance(seconds)
    for _ in range(3):
        for peer in peers:
            peer.settle()


def sessions_of(driver: EngineDriver, name: str) -> int:
    return driver.engine.session_count(driver.engine.accounts[name].id)


def test_a_lock_is_taken_once_stored_and_ends_the_accounts_sessions() -> None:
    driver, alice, laptop, bob = room()
    driver.auto_commit = False
    account = driver.engine.accounts["alice"]
    op = PasswordSet(account.id, lock=True)
    driver.engine.change_account(op)
    driver.pump()
    assert driver.uncommitted == [op]
    settle(alice, laptop, bob, seconds=1.0)
    assert alice.connection.failure is None and sessions_of(driver, "alice") == 2  # not yet
    driver.commit_held()
    settle(alice, laptop, bob, seconds=1.0)
    for peer in (alice, laptop):
        assert isinstance(peer.connection.failure, AccountLocked)
        assert peer.connection.closed
    assert sessions_of(driver, "alice") == 0
    assert [(e.name, e.reason) for e in bob.events if isinstance(e, Left)] == [("alice", "removed")]
    assert bob.connection.ready and bob.connection.failure is None
    # Its ticket is refused; its password is told the account is locked.
    refused = driver.engine.stats["tickets_refused"]
    again = Peer(driver, "alice", address=("10.0.0.4", 1), login=False)
    again.connection.ticket = alice.connection.ticket
    again.login()
    settle(again)
    assert driver.engine.stats["tickets_refused"] == refused + 1
    assert isinstance(again.connection.failure, AccountLocked)
    assert sessions_of(driver, "alice") == 0
    stored = {a.key: a for a in driver.stored_accounts()}
    assert stored["alice"].locked and stored["alice"].hash_to_check == account.password_hash


def test_a_change_the_store_refused_is_not_taken() -> None:
    driver, alice, laptop, bob = room()
    driver.auto_commit = False
    before = driver.engine.accounts["alice"]
    op = PasswordSet(before.id, lock=True)
    driver.engine.change_account(op)
    driver.pump()
    driver.uncommitted.clear()
    driver.engine.failed(op)
    driver.pump()
    settle(alice, laptop, bob, seconds=1.0)
    assert driver.engine.accounts["alice"] is before
    assert sessions_of(driver, "alice") == 2 and alice.connection.failure is None


def test_a_new_password_ends_the_sessions_and_only_it_logs_in_from_then_on() -> None:
    driver, alice, laptop, bob = room()
    account = driver.engine.accounts["alice"]
    driver.engine.change_account(PasswordSet(account.id, fake_hash(NEW)))
    driver.pump()
    settle(alice, laptop, bob, seconds=1.0)
    for peer in (alice, laptop):
        assert isinstance(peer.connection.failure, Removed)
        assert str(peer.connection.failure) == NEW_PASSWORD
    old = Peer(driver, "alice", PASSWORD, address=("10.0.0.5", 1))
    settle(old)
    assert isinstance(old.connection.failure, WrongPassword)
    new = Peer(driver, "alice", NEW, address=("10.0.0.6", 1))
    settle(new)
    assert new.connection.ready


def test_a_login_checked_against_the_old_password_meanwhile_is_refused() -> None:
    """Its hash was checked while the new password was stored: right for the old one,
    which no longer opens the account."""
    driver, *_ = room()
    driver.auto_hash = False
    late = Peer(driver, "alice", PASSWORD, address=("10.0.0.7", 1))
    assert driver.hashing  # its check waits
    account = driver.engine.accounts["alice"]
    driver.engine.change_account(PasswordSet(account.id, fake_hash(NEW)))
    driver.pump()
    driver.finish_hashing()
    settle(late)
    assert isinstance(late.connection.failure, WrongPassword)
    assert not late.connection.ready


def test_a_login_checked_while_the_account_was_locked_is_told_it_is() -> None:
    driver, *_ = room()
    driver.auto_hash = False
    late = Peer(driver, "alice", PASSWORD, address=("10.0.0.7", 1))
    account = driver.engine.accounts["alice"]
    driver.engine.change_account(PasswordSet(account.id, lock=True))
    driver.pump()
    driver.finish_hashing()
    settle(late)
    assert isinstance(late.connection.failure, AccountLocked)


def test_a_kick_ends_the_sessions_and_their_clients_do_not_come_back() -> None:
    driver, alice, laptop, bob = room()
    lost = laptop.address
    assert driver.engine.remove("alice", driver.now, driver.wall) == 2
    driver.pump()
    driver.inbox.pop(lost, None)  # the laptop's goodbye is lost on the way
    settle(alice, bob)
    assert isinstance(alice.connection.failure, Removed)
    assert str(alice.connection.failure) == REMOVED
    assert [(e.name, e.reason) for e in bob.events if isinstance(e, Left)] == [("alice", "removed")]
    # The laptop's next datagram, even 175 s later (past the 30 s other ended sessions are
    # remembered; within the 180 s of protocol.md, three of the longest keepalives), is
    # answered with the goodbye again, not with "unknown session", which it would take
    # for a daemon restarted, and come back.
    settle(laptop, seconds=175.0)
    assert isinstance(laptop.connection.failure, Removed)
    settle(alice, laptop, bob, seconds=60.0)
    assert sessions_of(driver, "alice") == 0
    assert not any(isinstance(op, PasswordSet) for op in driver.stored)  # nothing stored
    # They may log in again by hand.
    back = Peer(driver, "alice", address=("10.0.0.8", 1))
    settle(back)
    assert back.connection.ready


def test_a_removed_account_is_gone_at_once_and_its_clients_do_not_come_back() -> None:
    driver, alice, laptop, bob = room()
    bob.connection.whisper("alice", "read this")
    bob.connection.say("hello all")
    alice.connection.whisper("bob", "and this")
    settle(alice, laptop, bob)
    ticket = alice.connection.ticket
    driver.auto_commit = False
    op = driver.engine.remove_account("alice", driver.now, driver.wall)
    driver.pump()
    settle(alice, laptop, bob, seconds=1.0)
    assert [(e.name, e.reason) for e in bob.events if isinstance(e, Left)] == [("alice", "removed")]
    assert "alice" not in driver.engine.accounts
    whispered = bob.connection.whisper("alice", "are you there")
    settle(bob)
    assert isinstance(whispered.error, UnknownUser)
    settle(alice, laptop, seconds=175.0)  # long past when they would come back
    for peer in (alice, laptop):  # told at once, before it is stored
        assert isinstance(peer.connection.failure, AccountRemoved)
        assert str(peer.connection.failure) == ACCOUNT_REMOVED
        assert peer.connection.closed
    assert driver.engine.sessions_ended_by(op) == 2
    assert op in driver.uncommitted  # with the ended sessions' addresses' deletion
    driver.commit_held()
    assert [a.name for a in driver.stored_accounts()] == ["bob"]
    # What was sent to it is gone; what it said stays, under its name.
    assert sorted((m.sender, m.text) for m in driver.stored_messages()) == [
        ("alice", "and this"),
        ("bob", "hello all"),
    ]
    # bob coming back is not shown what he whispered to it, nor is it waiting for it.
    back = Peer(driver, "bob", address=("10.0.0.9", 1), login=False)
    back.login(since=0)
    settle(back)
    assert [f.text for f in back.of_type(wire.Pm)] == ["and this"]
    # Its ticket, its password: as for a name no account has.
    refused = driver.engine.stats["tickets_refused"]
    again = Peer(driver, "alice", address=("10.0.0.4", 1), login=False)
    again.connection.ticket = ticket
    again.login()
    settle(again)
    assert driver.engine.stats["tickets_refused"] == refused + 1
    assert isinstance(again.connection.failure, UnknownUser)


def test_what_waited_for_a_removed_account_is_forgotten_once_stored() -> None:
    driver, _alice, _laptop, bob = room()
    driver.add_account("carol")
    carol = driver.engine.accounts["carol"]
    bob.connection.whisper("carol", "for later")
    settle(bob)
    assert driver.engine.mailbox.count(carol.id) == 1
    driver.auto_commit = False
    driver.engine.remove_account("carol", driver.now, driver.wall)
    driver.pump()
    assert driver.engine.mailbox.count(carol.id) == 1  # kept, should the store refuse
    driver.commit_held()
    assert driver.engine.mailbox.count(carol.id) == 0


def test_a_whisper_to_a_removed_account_sent_again_is_not_given_to_the_next_of_its_name() -> None:
    """Its sender's client, its answer lost, sends it again once the name is given out
    again: it is answered as the message stored then, not taken anew for the newcomer."""
    driver, alice, _laptop, bob = room()
    frame = wire.Whisper(to="alice", text="for the alice I know", cid="c-late")
    first = bob.request(frame)
    settle(alice, bob)
    driver.engine.remove_account("alice", driver.now, driver.wall)
    driver.engine.add_account("alice", fake_hash(NEW), driver.wall)
    driver.pump()
    newcomer = Peer(driver, "alice", NEW, address=("10.0.0.9", 1))
    again = bob.request(frame)
    settle(bob, newcomer)
    assert (first.error, again.error) == (None, None)
    assert again.result == first.result  # the same message, stored once
    assert newcomer.connection.ready and newcomer.of_type(wire.Pm) == []


def test_a_login_checked_while_the_account_was_removed_is_told_there_is_none() -> None:
    driver, *_ = room()
    driver.auto_hash = False
    late = Peer(driver, "alice", PASSWORD, address=("10.0.0.7", 1))
    assert driver.hashing  # its check waits
    driver.engine.remove_account("alice", driver.now, driver.wall)
    driver.pump()
    driver.finish_hashing()
    settle(late)
    assert isinstance(late.connection.failure, UnknownUser)
    assert not late.connection.ready


def test_a_removed_accounts_name_is_held_until_the_operator_gives_it_out() -> None:
    driver, alice, _laptop, bob = room()
    alice.connection.say("I was here")
    settle(alice, bob)
    driver.engine.remove_account("alice", driver.now, driver.wall)
    driver.pump()
    driver.commit_held()
    for name, said in (
        ("alice", "The name 'alice' is held by the daemon's operator; choose another."),
        ("ALICE", "The name 'ALICE' is held by the daemon's operator; choose another."),
        ("aIice", "The name 'aIice' could be mistaken for 'alice'; choose another."),
    ):  # held, and too like it
        refused = driver.request(
            wire.Register(rid=name, name=name, password=PASSWORD), ("10.0.0.5", 1)
        )
        assert isinstance(refused, wire.ErrorFrame)
        assert (refused.code, refused.message) == ("name_taken", said)
    # A login of it is told no account has it, and why none may be made: no client then
    # offers to register a name the daemon would refuse.
    login = Peer(driver, "Alice", PASSWORD, address=("10.0.0.5", 2))
    settle(login)
    assert isinstance(login.connection.failure, UnknownUser)
    assert str(login.connection.failure) == (
        "There is no account named 'Alice'; the name is held by the daemon's operator."
    )
    # Held by a daemon started again on what was stored, too.
    restarted = EngineDriver(
        snapshot=Snapshot(
            accounts=driver.stored_accounts(), next_account_id=3, held=[("Alice", "alice")]
        ),
        keys=driver.keys,
        first_sid=5000,
    )
    refused = restarted.request(
        wire.Register(rid="r", name="alice", password=PASSWORD), ("10.0.0.5", 1)
    )
    assert isinstance(refused, wire.ErrorFrame) and refused.code == "name_taken"
    like = restarted.request(
        wire.Register(rid="l", name="aIice", password=PASSWORD), ("10.0.0.5", 1)
    )
    assert isinstance(like, wire.ErrorFrame)  # named as the removed account had it
    assert like.message == "The name 'aIice' could be mistaken for 'Alice'; choose another."
    with pytest.raises(RuleError):
        restarted.engine.add_account("aIice", fake_hash(NEW), restarted.wall)
    made = restarted.engine.add_account("alice", fake_hash(NEW), restarted.wall)
    restarted.pump()
    assert made.id == 3  # a new account, not the author of what the removed one said
    newcomer = Peer(restarted, "alice", NEW, address=("10.0.0.6", 1))
    settle(newcomer)
    assert newcomer.connection.ready
    assert "alice" not in restarted.engine.lobby.held


def test_changes_to_an_account_on_their_way_when_it_is_removed_are_dropped() -> None:
    """Its own password change being checked, and the operator's mute being stored,
    find no account when they are done: nothing is changed, and the daemon goes on."""
    driver, alice, _laptop, bob = room()
    account = driver.engine.accounts["alice"]
    driver.auto_hash = False
    changing = alice.connection.change_password(PASSWORD, NEW)
    settle(alice)
    assert driver.hashing  # its old password is being checked
    driver.auto_commit = False
    driver.engine.change_account(MuteSet(account.id, True))
    driver.engine.remove_account("alice", driver.now, driver.wall)
    driver.pump()
    driver.finish_hashing()
    driver.commit_held()
    settle(alice, bob, seconds=1.0)
    assert isinstance(alice.connection.failure, AccountRemoved)
    assert changing.done and changing.error is not None
    assert "alice" not in driver.engine.accounts and not driver.hashing
    assert bob.connection.ready


def test_a_removal_the_store_refused_gives_the_account_back() -> None:
    driver, alice, _laptop, _bob = room()
    before = driver.engine.accounts["alice"]
    driver.auto_commit = False
    op = driver.engine.remove_account("alice", driver.now, driver.wall)
    driver.pump()
    driver.uncommitted.clear()
    driver.engine.failed(op)
    assert driver.engine.accounts["alice"] is before
    settle(alice)
    assert isinstance(alice.connection.failure, AccountRemoved)  # ended all the same
    back = Peer(driver, "alice", address=("10.0.0.8", 1))
    settle(back)
    assert back.connection.ready


def test_a_password_change_its_removal_ended_is_not_made_when_the_store_refuses_it() -> None:
    """The account's own change, its old password still being checked when the removal
    ended its session, is not made by the account given back: its password stays."""
    driver, alice, _laptop, _bob = room()
    driver.auto_hash = False
    alice.connection.change_password(PASSWORD, NEW)
    settle(alice)
    assert driver.hashing  # its old password is being checked
    driver.auto_commit = False
    op = driver.engine.remove_account("alice", driver.now, driver.wall)
    driver.pump()
    driver.uncommitted.clear()
    driver.engine.failed(op)
    driver.auto_commit = driver.auto_hash = True
    driver.finish_hashing()
    assert not [stored for stored in driver.stored if isinstance(stored, PasswordSet)]
    back = Peer(driver, "alice", address=("10.0.0.8", 1))
    settle(back)
    assert back.connection.ready


def test_a_lock_and_a_mute_stored_before_a_removal_the_store_refused_stand() -> None:
    """The operator's lock and mute, on their way to the disk when the account is
    removed, are stored; the removal is not: the account given back is locked and muted,
    as the store has it, and its password is told so. Another account removed meanwhile,
    and given back too, is as it was: the changes were not its."""
    driver, _alice, _laptop, _bob = room()
    account = driver.engine.accounts["alice"]
    other = driver.engine.accounts["bob"]
    driver.auto_commit = False
    driver.engine.change_account(PasswordSet(account.id, lock=True))
    driver.engine.change_account(MuteSet(account.id, True))
    op = driver.engine.remove_account("alice", driver.now, driver.wall)
    also = driver.engine.remove_account("bob", driver.now, driver.wall)
    driver.pump()
    driver.commit_held(2)  # the lock and the mute: the removals' group is refused
    driver.uncommitted.clear()
    driver.engine.failed(op)
    driver.engine.failed(also)
    kept = driver.engine.accounts["alice"]
    assert (kept.locked, kept.muted) == (True, True)
    assert driver.stored_accounts()[0] == kept
    assert driver.engine.accounts["bob"] == other
    back = Peer(driver, "alice", address=("10.0.0.8", 1))
    settle(back)
    assert isinstance(back.connection.failure, AccountLocked)


def test_another_goodbye_is_not_a_final_one() -> None:
    """Unlike `account_locked` and `removed` (the tests above), any other goodbye has a
    connection come back: a daemon stopping, say."""
    driver, alice, _laptop, _bob = room()
    session = alice.session
    driver.engine.transport.send(
        session, wire.encode(wire.Bye(reason="shutdown", message="The daemon is stopping."))
    )
    driver.pump()
    settle(alice, seconds=1.0)
    assert alice.connection.failure is None and alice.connection.ready


def test_changes_stored_together_each_keep_what_the_others_did() -> None:
    """A lock still on its way to the disk when a new password is asked for (by the
    operator, or by a session of the account): the account ends locked, under the new
    password, in memory and on disk alike; and the other way round."""
    driver, *_ = room()
    driver.auto_commit = False
    alice = driver.engine.accounts["alice"]
    driver.engine.change_account(PasswordSet(alice.id, lock=True))
    driver.engine.change_account(PasswordSet(alice.id, fake_hash(NEW)))
    driver.pump()
    driver.commit_held()
    account = driver.engine.accounts["alice"]
    assert account.locked and account.hash_to_check == fake_hash(NEW)
    assert driver.stored_accounts()[0].password_hash == account.password_hash
    driver.engine.change_account(PasswordSet(alice.id, fake_hash(PASSWORD)))
    driver.engine.change_account(PasswordSet(alice.id, lock=False))
    driver.pump()
    driver.commit_held()
    account = driver.engine.accounts["alice"]
    assert not account.locked and account.hash_to_check == fake_hash(PASSWORD)


def test_a_muted_account_reads_and_says_nothing_until_unmuted() -> None:
    driver, alice, laptop, bob = room()
    account = driver.engine.accounts["alice"]
    driver.engine.change_account(MuteSet(account.id, True))
    driver.pump()
    settle(alice, laptop, bob)
    for peer in (alice, laptop):
        assert [e.text for e in peer.events if isinstance(e, Notice)] == [MUTED_NOTICE]
    said = alice.connection.say("can anyone hear me")
    whispered = alice.connection.whisper("bob", "or you")
    settle(alice, bob)
    assert isinstance(said.error, Muted) and isinstance(whispered.error, Muted)
    assert alice.connection.ready and sessions_of(driver, "alice") == 2  # still in
    assert not [e for e in bob.events if isinstance(e, PublicMessage) and e.sender == "alice"]
    bob.connection.say("alice, you are muted")
    settle(alice, bob)
    assert [e.text for e in alice.events if isinstance(e, PublicMessage)][-1:] == [
        "alice, you are muted"
    ]
    # A session that logs in later is muted too; the mute is stored.
    later = Peer(driver, "alice", address=("10.0.0.9", 1))
    settle(later)
    refused = later.connection.say("from another device")
    settle(later)
    assert isinstance(refused.error, Muted)
    assert driver.stored_accounts()[0].muted
    driver.engine.change_account(MuteSet(account.id, False))
    driver.pump()
    settle(alice, bob)
    assert [e.text for e in alice.events if isinstance(e, Notice)] == [MUTED_NOTICE, UNMUTED_NOTICE]
    again = alice.connection.say("back")
    settle(alice, bob)
    assert again.done and again.error is None
    assert "back" in [e.text for e in bob.events if isinstance(e, PublicMessage)]


def mute_notices(events: list[Event]) -> list[tuple[str, bool | None]]:
    return [(e.text, e.muted) for e in events if isinstance(e, Notice)]


def restarted(sim: Simulation, label: str, muted: bool | None = None) -> None:
    """The daemon started again (`label`'s account muted or unmuted meanwhile, unless
    None), and `label`'s client back."""
    events = sim.events[label]
    reconnected = sum(isinstance(e, Reconnected) for e in events)
    sim.restart_daemon()
    if muted is not None:  # with no session of the account's in the daemon
        account = sim.driver.engine.accounts[label]
        sim.driver.engine.change_account(MuteSet(account.id, muted))
        sim.driver.pump()
    sim.run_until(lambda: sum(isinstance(e, Reconnected) for e in events) > reconnected)
    sim.run(1.0)


def test_a_muted_account_is_told_so_at_login_and_when_it_changed_while_away() -> None:
    """The mute is in every `welcome`: a client says so after the login's history when
    it is muted at the first login, or changed while the connection was away (the
    notice sent then reached no session), and not again when nothing changed."""
    sim = Simulation(1)
    alice = sim.client("alice")
    sim.run_until(lambda: alice.ready)
    assert mute_notices(sim.events["alice"]) == [] and not alice.muted

    def restart(muted: bool | None) -> None:
        restarted(sim, "alice", muted)

    restart(muted=True)
    assert mute_notices(sim.events["alice"]) == [(MUTED_NOTICE, True)] and alice.muted
    kinds = [type(e) for e in sim.events["alice"]]
    assert kinds.index(Notice) > max(i for i, k in enumerate(kinds) if k is History)
    refused = alice.say("heard?")
    sim.run_until(lambda: refused.done)
    assert isinstance(refused.error, Muted)
    restart(muted=None)
    assert mute_notices(sim.events["alice"]) == [(MUTED_NOTICE, True)]  # not again
    restart(muted=False)
    assert mute_notices(sim.events["alice"])[1:] == [(UNMUTED_NOTICE, False)]
    assert not alice.muted

    account = sim.driver.engine.accounts["alice"]
    sim.driver.engine.change_account(MuteSet(account.id, True))
    sim.driver.pump()
    laptop = sim.client("laptop", "alice")
    sim.run_until(lambda: laptop.ready)
    sim.run(1.0)
    assert mute_notices(sim.events["alice"])[2:] == [(MUTED_NOTICE, True)]  # live
    assert mute_notices(sim.events["laptop"]) == [(MUTED_NOTICE, True)]  # at its login
    assert isinstance(sim.events["laptop"][-1], Notice) and laptop.muted


def test_a_welcome_that_does_not_say_whether_the_account_is_muted_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A daemon of an earlier version, or another sharing the ticket key, leaves `muted`
    # out: read as "not muted", a muted client was told it had been unmuted.
    sim = Simulation(2)
    alice = sim.client("alice")
    sim.run_until(lambda: alice.ready)
    account = sim.driver.engine.accounts["alice"]
    sim.driver.engine.change_account(MuteSet(account.id, True))
    sim.driver.pump()
    sim.run(1.0)
    assert alice.muted

    class Older:
        """The wire as the daemon's engine writes it, but for `welcome`'s new field."""

        def __getattr__(self, name: str) -> Any:
            return getattr(wire, name)

        @staticmethod
        def Welcome(**fields: Any) -> wire.Welcome:
            return wire.Welcome(**{**fields, "muted": None})

    monkeypatch.setattr(core, "wire", Older())
    restarted(sim, "alice")
    assert mute_notices(sim.events["alice"]) == [(MUTED_NOTICE, True)] and alice.muted


def test_kicked_sessions_kept_longer_keep_no_other_ended_session_past_its_time() -> None:
    # The kicked are remembered for minutes, apart: a session that ended as usual after
    # them is still let go of after its 30 s, keys and all.
    driver, _alice, _laptop, bob = room()
    assert driver.engine.remove("alice", driver.now, driver.wall) == 2
    driver.pump()
    channel = bob.session.channel
    keys = [channel._send._key, channel._receive._key]
    bob.send(wire.Logout())
    assert all(key in noise._recent for key in keys)  # its logout may come again
    driver.advance(31.0)
    assert not any(key in noise._recent for key in keys)


def test_the_operator_makes_accounts_by_the_rules_a_registration_meets() -> None:
    """`trio-chat accounts add` on a running daemon: the account is in once stored (not
    before), its name held meanwhile; a name an account has, one it could be mistaken for,
    one a registration is making, or one no account may have is refused; a store that
    fails frees the name."""
    driver = EngineDriver(ServerConfig(registrations=False))
    driver.auto_commit = False
    bob = driver.engine.add_account("bob", fake_hash(PASSWORD), driver.wall)
    driver.pump()
    assert driver.uncommitted == [bob] and "bob" not in driver.engine.accounts
    with pytest.raises(RuleError) as held:
        driver.engine.add_account("BOB", fake_hash(PASSWORD), driver.wall)
    assert (held.value.code, held.value.message) == (
        "name_taken",
        "The name 'BOB' is taken; choose another.",
    )
    refused = Peer(driver, "bob", address=("10.0.0.1", 1))  # no account yet
    refused.settle()
    assert isinstance(refused.connection.failure, UnknownUser)
    driver.commit_held()
    assert driver.engine.accounts["bob"] is bob and bob.rid is None
    # Logged by the command that made it (with who asked), not as a registration.
    assert not any(isinstance(note, Registered) for note in driver.engine.take_notes())
    peer = Peer(driver, "bob", address=("10.0.0.2", 1))
    peer.settle()
    assert peer.connection.ready
    for name, code, message in [
        ("bob", "name_taken", "The name 'bob' is taken; choose another."),
        ("b0b", "name_taken", "The name 'b0b' could be mistaken for 'bob'; choose another."),
        ("bad name", "invalid_name", "A name may hold only letters"),
    ]:
        with pytest.raises(RuleError) as error:
            driver.engine.add_account(name, fake_hash(PASSWORD), driver.wall)
        assert error.value.code == code and error.value.message.startswith(message)
    failing = driver.engine.add_account("carol", fake_hash(PASSWORD), driver.wall)
    driver.pump()
    driver.uncommitted.remove(failing)
    driver.engine.failed(failing)
    assert "carol" not in driver.engine.accounts
    carol = driver.engine.add_account("carol", fake_hash(NEW), driver.wall)
    driver.pump()
    driver.commit_held()
    assert driver.engine.accounts["carol"] is carol


def test_a_name_a_registration_is_making_is_not_the_operators_and_closed_refuses_first() -> None:
    driver = EngineDriver()
    driver.auto_hash = False
    registering = Peer(driver, None, address=("10.0.0.1", 1))
    registering.send(wire.Register(rid="r1", name="dave", password=PASSWORD))
    with pytest.raises(RuleError) as held:
        driver.engine.add_account("dave", fake_hash(PASSWORD), driver.wall)
    assert held.value.code == "name_taken"
    driver.finish_hashing()
    assert "dave" in driver.engine.accounts
    # The same daemon started again without registrations: the name is not looked at (a
    # taken one is not told taken, nor counted as a look-up), and the registration the
    # client sends again (its answer lost in the restart) is answered as made.
    closed = EngineDriver(
        ServerConfig(registrations=False),
        Snapshot(accounts=driver.stored_accounts(), next_account_id=2),
        keys=driver.keys,
        first_sid=5000,
    )
    for n in range(12):  # past every allowance a name look-up has
        prober = Peer(closed, None, address=("10.0.0.2", 1))
        seq = prober.send(wire.Register(rid=f"p{n}", name="dave", password=PASSWORD))
        (refusal,) = [f for f in prober.frames if getattr(f, "re", None) == seq]
        assert isinstance(refusal, wire.ErrorFrame)
        assert (refusal.code, refusal.message, refusal.retry_after) == (
            "registrations_closed",
            "This daemon takes no registrations; ask its operator for an account.",
            None,
        )
        prober.connection.close()
        prober.flush()
    # Each refusal is in the daemon's log, for its operator to see who knocked.
    refusals = [
        note for note in closed.engine.take_notes() if isinstance(note, RegistrationRefused)
    ]
    assert refusals == [RegistrationRefused("dave", ("10.0.0.2", 1), "registrations_closed")] * 12
    again = Peer(closed, None, address=("10.0.0.1", 1))
    seq = again.send(wire.Register(rid="r1", name="dave", password=PASSWORD))
    assert [f for f in again.frames if getattr(f, "re", None) == seq] == [
        wire.Registered(re=seq, name="dave")
    ]
    # Its id with a password no registration could have is no registration sent again.
    seq = again.send(wire.Register(rid="r1", name="dave", password="x"))
    (refused,) = [f for f in again.frames if getattr(f, "re", None) == seq]
    assert isinstance(refused, wire.ErrorFrame) and refused.code == "registrations_closed"
    client = Peer(closed, None, address=("10.0.0.3", 1))
    handle = client.connection.register("erin", PASSWORD)
    client.settle()
    assert isinstance(handle.error, RegistrationsClosed)


@pytest.mark.parametrize("registrations", [True, False])
def test_a_login_of_an_unknown_name_says_whether_the_daemon_takes_registrations(
    registrations: bool,
) -> None:
    """Closed to registrations, the daemon's `unknown_user` for a login says so, so that
    no client offers to register the name; an open one's frame leaves the field out."""
    driver = EngineDriver(ServerConfig(registrations=registrations))
    peer = Peer(driver, "kim", address=("10.0.0.1", 1))
    peer.settle()
    error = peer.connection.failure
    assert isinstance(error, UnknownUser)
    assert error.no_registrations is not registrations
    (frame,) = [f for f in peer.frames if isinstance(f, wire.ErrorFrame)]
    assert frame.code == "unknown_user" and frame.no_registrations is not registrations
    assert (b"no_registrations" in wire.encode(frame)) is not registrations


def test_a_daemon_closed_to_registrations_tells_a_removed_accounts_name_as_any_other() -> None:
    """Its registration is `registrations_closed`, before the name is looked at, as any
    other's; its login says both that the name is held and that no registration is taken."""
    driver = EngineDriver(ServerConfig(registrations=False))
    driver.engine.add_account("alice", fake_hash(PASSWORD), driver.wall)  # the operator's
    driver.pump()
    driver.engine.remove_account("alice", driver.now, driver.wall)
    driver.pump()
    driver.commit_held()
    refused = driver.request(
        wire.Register(rid="r", name="alice", password=PASSWORD), ("10.0.0.5", 1)
    )
    assert isinstance(refused, wire.ErrorFrame) and refused.code == "registrations_closed"
    login = Peer(driver, "alice", PASSWORD, address=("10.0.0.6", 1))
    settle(login)
    error = login.connection.failure
    assert isinstance(error, UnknownUser) and error.no_registrations
    assert "is held by the daemon's operator" in str(error)


@pytest.mark.parametrize("registrations", [True, False])
def test_the_daemons_key_says_whether_it_takes_registrations_before_a_password_is_asked(
    registrations: bool,
) -> None:
    """The client's key request asks whether the daemon takes registrations, and its `KEY`
    says so in one byte more: `register` learns it before it asks for a password. A
    request that does not ask (a client before it) gets the `KEY` it always did, and a
    `KEY` that says nothing (a daemon before it) leaves registrations open to try."""
    driver = EngineDriver(ServerConfig(registrations=registrations))
    address = ("10.0.0.1", 1)
    probe = client_handshake.KeyProbe(driver.now, where="there")
    (request,) = probe.datagrams_to_send(driver.now)
    (answer,) = driver.receive(request, address)
    probe.receive_datagram(answer, driver.now)
    assert (probe.key, probe.no_registrations) == (driver.server_key, not registrations)
    assert len(answer) == 35 < len(request)
    (unasked,) = driver.receive(wire.key_request_datagram(), address)
    assert unasked == wire.key_datagram(driver.server_key)  # 34 bytes, as ever
    older = client_handshake.KeyProbe(driver.now, where="there")
    older.datagrams_to_send(driver.now)
    older.receive_datagram(unasked, driver.now)
    assert (older.key, older.no_registrations) == (driver.server_key, False)
