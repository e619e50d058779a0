"""`SeenMessages`: which messages a connection has shown, where a login starts from, and
a login's history held until its end."""

from __future__ import annotations

from datetime import UTC, datetime

from trio_chat.client_protocol.intake import SEEN_MEMORY, SeenMessages
from trio_chat.events import PrivateMessage, PublicMessage

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def said(message_id: int, history: bool = False) -> PublicMessage:
    return PublicMessage(message_id, WHEN, "bob", f"m{message_id}", history=history)


def test_a_message_is_shown_once_however_often_it_comes() -> None:
    seen = SeenMessages()
    assert seen.take(said(5))
    assert not seen.take(said(5))
    assert not seen.take(said(5, history=True))  # nor held for a history
    assert seen.held == 0
    assert seen.remember(6)  # this client's own, answered: news once
    assert not seen.take(said(6))


def test_a_history_is_held_until_its_end_and_shown_whole_in_order() -> None:
    seen = SeenMessages()
    for message_id in (3, 4, 3, 7):
        assert not seen.take(said(message_id, history=True))
    assert seen.take(said(9))  # a live message goes on at once
    waiting = PrivateMessage(2, WHEN, "carol", "alice", "psst", history=True)
    assert not seen.take(waiting)  # older than what came live: held too
    history = seen.end_history(upto=None, more=False, resumed=True)
    assert [m.id for m in history.messages] == [3, 4, 7, 2]
    assert not history.more and history.resumed
    assert seen.held == 0
    assert seen.end_history(upto=None, more=True, resumed=False).messages == ()


def test_a_history_longer_than_the_memory_keeps_its_newest_and_says_there_was_more() -> None:
    seen = SeenMessages()
    for message_id in range(1, SEEN_MEMORY + 11):
        seen.take(said(message_id, history=True))
    assert seen.held == SEEN_MEMORY
    history = seen.end_history(upto=None, more=False, resumed=False)
    assert history.more
    assert history.messages[0].id == 11 and history.messages[-1].id == SEEN_MEMORY + 10
    seen.take(said(SEEN_MEMORY + 11, history=True))
    assert not seen.end_history(upto=None, more=False, resumed=False).more  # that one's alone


def test_a_history_cut_off_is_shown_as_it_came_with_more_to_it() -> None:
    seen = SeenMessages()
    assert seen.cut_off(resumed=False) is None
    seen.take(said(1, history=True))
    seen.take(said(2, history=True))
    history = seen.cut_off(resumed=True)
    assert history is not None
    assert [m.id for m in history.messages] == [1, 2] and history.more and history.resumed
    assert seen.cut_off(resumed=True) is None and seen.held == 0


def test_until_a_history_comes_whole_a_login_asks_as_the_first_one_did() -> None:
    seen = SeenMessages()
    assert seen.since(resuming=False) is None
    seen.start_from(40)
    seen.take(said(50, history=True))
    seen.take(said(60))
    assert seen.newest == 60
    assert seen.since(resuming=True) == 40  # not after 60: the history's left-out ones
    seen.end_history(upto=None, more=False, resumed=False)
    assert seen.since(resuming=True) == 60
    assert seen.since(resuming=False) == 60


def test_a_first_login_from_a_message_with_nothing_after_it_resumes_from_there() -> None:
    """Nothing came after the message the first login started from: coming back, a login
    still asks only for what came after it, not for all the daemon has."""
    seen = SeenMessages()
    seen.start_from(40)
    seen.end_history(upto=None, more=False, resumed=False)
    assert seen.newest == 40
    assert seen.since(resuming=True) == 40
    assert seen.since(resuming=False) == 40


def test_after_a_history_a_login_asks_for_what_came_after_the_newest_shown() -> None:
    seen = SeenMessages()
    seen.start_from(None)
    seen.take(said(5, history=True))
    seen.end_history(upto=None, more=False, resumed=False)
    assert seen.since(resuming=True) == 5
    seen.remember(8)
    assert seen.since(resuming=True) == 8
    seen.take(said(3))  # older than the newest: it stays where it was
    assert seen.since(resuming=True) == 8


def test_a_history_end_moves_the_start_up_to_what_it_chose_among_never_back() -> None:
    seen = SeenMessages()
    seen.take(said(10, history=True))
    seen.end_history(upto=25, more=False, resumed=False)
    assert seen.newest == 25 and seen.since(resuming=True) == 25
    seen.end_history(upto=12, more=False, resumed=True)
    assert seen.newest == 25


def test_with_nothing_shown_a_login_after_a_history_asks_for_all_only_when_resuming() -> None:
    seen = SeenMessages()
    seen.end_history(upto=None, more=False, resumed=False)
    assert seen.since(resuming=False) is None  # the daemon's choice
    assert seen.since(resuming=True) == 0  # everything after nothing: all that was missed


def test_where_the_daemon_says_a_gap_ends_is_kept_unless_this_client_let_go_of_more() -> None:
    seen = SeenMessages()
    for n in (5, 6):
        seen.take(said(n, history=True))
    assert seen.end_history(upto=6, more=True, resumed=True, gap=5).gap == 5
    for n in range(100, SEEN_MEMORY + 110):  # more than this client holds: 10 let go
        seen.take(said(n, history=True))
    history = seen.end_history(upto=SEEN_MEMORY + 109, more=True, resumed=True, gap=8)
    assert history.messages[0].id == history.gap == 110
