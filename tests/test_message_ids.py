"""Message ids across a daemon's restarts: never given twice to what its clients saw, and
never promised past what is stored."""

from __future__ import annotations

from trio_chat import wire
from trio_chat.events import History
from trio_chat.records import MAX_CLOCK_ID, Snapshot, first_message_id
from trio_chat.testing.driver import WALL, EngineDriver, Peer


def test_a_resume_after_a_restart_with_the_clock_gone_back_misses_nothing() -> None:
    """A daemon that has stored nothing since it started tells logins `upto` = its newest
    stored id, not one below its first id (taken from its clock): started again after
    the clock was stepped back (NTP), the next daemon's ids are below that first id, and
    a client resuming from it was sent nothing said meanwhile, `more` false."""
    setup = EngineDriver()
    for name in ("alice", "bob"):
        setup.add_account(name)
    accounts = setup.stored_accounts()
    started = EngineDriver(
        snapshot=Snapshot(
            accounts=accounts,
            next_account_id=3,
            next_message_id=first_message_id(WALL),
            stored_up_to=0,
        ),
        keys=setup.keys,
        first_sid=3000,
    )
    alice = Peer(started, "alice", address=("10.0.0.1", 1))
    alice.settle()
    since = alice.connection._seen.newest
    assert since == 0  # the newest stored, not an id no message has
    again = EngineDriver(
        snapshot=Snapshot(
            accounts=accounts,
            next_account_id=3,
            next_message_id=first_message_id(WALL - 60),
            stored_up_to=0,
        ),
        keys=setup.keys,
        first_sid=5000,
    )
    bob = Peer(again, "bob", address=("10.0.0.2", 1))
    bob.send(wire.Say(text="said while alice was away", cid="c1"))
    bob.settle()
    back = Peer(again, "alice", address=("10.0.0.1", 2), since=since)
    back.settle()
    (history,) = [e for e in back.events if isinstance(e, History)]
    assert [m.text for m in history.messages] == ["said while alice was away"]


def test_ids_start_from_the_clock_unless_the_stored_ones_are_further_or_the_clock_is_wrong() -> (
    None
):
    assert MAX_CLOCK_ID == wire.MAX_SEQ // 2
    fresh = Snapshot(next_message_id=8)
    fresh.ids_from_clock(WALL)
    assert (fresh.next_message_id, fresh.stored_up_to) == (first_message_id(WALL), 7)
    ahead = Snapshot(next_message_id=first_message_id(WALL) + 5)
    ahead.ids_from_clock(WALL)
    assert ahead.next_message_id == first_message_id(WALL) + 5
    wrong = Snapshot(next_message_id=8)
    wrong.ids_from_clock(5e12)  # the year 160,000
    assert wrong.next_message_id == 8
