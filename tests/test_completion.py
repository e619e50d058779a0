"""Tab at the room's prompt: what a command's word or a name completes to."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import trio
import trio.testing

from trio_chat.completion import COMMANDS, NAMES_MET, Completion, NamesMet, complete
from trio_chat.events import History, Joined, PrivateMessage

from .test_room_order import message, room_on_screen

NAMES = ("Alice", "albert", "bob", "Анна", "张伟", "Zoë")


@pytest.mark.parametrize(
    ("typed", "completed"),
    [
        # A command's word, with the space after it when words follow it.
        ("/hi", "/history "),
        ("/o", "/older "),
        ("/ms", "/msg "),
        ("/wh", "/who"),
        ("/Q", "/quit"),
        ("  /he", "  /help"),
        # The name a private message goes to, and the space or slash that follows it.
        ("/msg b", "/msg bob "),
        ("/M B", "/M bob "),
        ("/w zo", "/w Zoë "),
        ("s/b", "s/bob/"),
        ("S/ali", "S/Alice/"),
        ("s/ан", "s/Анна/"),
        ("s/张", "s/张伟/"),
        # A name as a message's last word; at the line's start, addressed.
        ("thanks b", "thanks bob "),
        ("thanks,b", "thanks,bob "),
        ("(ask zo", "(ask Zoë "),
        ("bo", "bob: "),
        ("s/bob/ask ан", "s/bob/ask Анна "),
        # As far as the choices agree, in their own letters.
        ("a", "al"),
        ("/msg A", "/msg al"),
        # `/w` and `/m` are `/msg` already: the space after them, not `/who`.
        ("/w", "/w "),
        ("/M", "/M "),
        # The marks in full-width forms, as the commands read them, kept as typed.
        ("／hi", "／history "),
        ("／w", "／w "),
        ("／msg b", "／msg bob "),
        ("ｓ／b", "ｓ／bob／"),
        ("Ｓ/ali", "Ｓ/Alice/"),
        ("s／张", "s／张伟／"),
        # Letters in full-width forms too, as an input method in full-width mode types
        # them and the commands read them.
        ("／ｗ", "／ｗ "),
        ("／ＨＩ", "／history "),
    ],
)
def test_tab_completes_a_command_or_a_name(typed: str, completed: str) -> None:
    assert complete(typed, NAMES) == Completion(completed)


@pytest.mark.parametrize(
    ("typed", "choices"),
    [
        ("/h", ("/help", "/history")),
        ("/", tuple(command.strip() for command in COMMANDS)),
        ("／", tuple("／" + command.strip()[1:] for command in COMMANDS)),
        ("ｓ／al", ("albert", "Alice")),
        ("s/al", ("albert", "Alice")),
        ("/msg al", ("albert", "Alice")),
        ("hi al", ("albert", "Alice")),
        ("／ｍｓｇ ", tuple(sorted(NAMES, key=str.casefold))),  # anyone: no name begun yet
        ("/MSG ", tuple(sorted(NAMES, key=str.casefold))),  # in capitals too
    ],
)
def test_where_several_fit_and_tab_adds_nothing_they_are_the_choices(
    typed: str, choices: tuple[str, ...]
) -> None:
    assert complete(typed, NAMES) == Completion(typed, choices)


@pytest.mark.parametrize(
    "typed",
    [
        "",  # nothing typed
        "hello ",  # after a space: no word to complete
        "hello",  # a word no name starts with
        "/nothing",  # no command starts so
        "//wh",  # said as typed, `/wh...`
        "s/carol",  # nobody met by that name
        "/msg bob hi there",  # the name is given: the text is the person's
    ],
)
def test_what_nothing_completes_stays_as_typed(typed: str) -> None:
    assert complete(typed, NAMES) == Completion(typed)


@pytest.mark.parametrize(
    ("typed", "after", "completed"),
    [
        # What a completion ends with, already after the cursor, is not put in twice:
        # `s/bob//hi` would say `/hi`, and `bob  there` holds two spaces.
        ("s/b", "/hi", Completion("s/bob/", taken=1)),
        ("hi b", " there", Completion("hi bob ", taken=1)),
        ("/msg b", " psst", Completion("/msg bob ", taken=1)),
        ("b", ": hi", Completion("bob: ", taken=2)),
        ("b", ":hi", Completion("bob: ", taken=1)),
        ("b", " hi", Completion("bob: ", taken=1)),
        ("/hi", " 5", Completion("/history ", taken=1)),
        ("s/b", " hi", Completion("s/bob/")),
        ("ｓ／b", "／hi", Completion("ｓ／bob／", taken=1)),
        # The cursor inside a word: completing its start would split it (`al|ice` is
        # not `albert ice`, nor `a|lice` `alice lice`).
        ("s/al", "ice/hi", Completion("s/al")),
        ("hi a", "lice", Completion("hi a")),
        ("hi Анн", "а", Completion("hi Анн")),
        ("/h", "istory", Completion("/h")),
        # Nor inside a name that holds `.` or `-` (`s/bob/.smith/hi` says `.smith/hi`).
        ("s/b", ".smith/hi", Completion("s/b")),
        ("/msg b", "-x hi", Completion("/msg b")),
        ("hi b", ". there", Completion("hi bob ")),
    ],
)
def test_tab_with_text_after_the_cursor(typed: str, after: str, completed: Completion) -> None:
    assert complete(typed, NAMES, after) == completed


def test_of_several_lines_pasted_the_last_is_completed_as_a_line() -> None:
    """Each line of a paste goes as a message or command of its own."""
    assert complete("hello all\nb", NAMES) == Completion("hello all\nbob: ")
    assert complete("hello all\n/wh", NAMES) == Completion("hello all\n/who")
    assert complete("hello all\ns/b", NAMES) == Completion("hello all\ns/bob/")
    assert complete("hi\n/h", NAMES) == Completion("hi\n/h", ("/help", "/history"))


def test_a_name_that_starts_another_is_completed_to_then_offered_with_it() -> None:
    assert complete("s/b", ["bob", "bobby"]) == Completion("s/bob")
    assert complete("s/bob", ["bob", "bobby"]) == Completion("s/bob", ("bob", "bobby"))
    assert complete("s/b", ["bob", "Bob"]) == Completion("s/Bob/")  # one account, as met last


async def test_the_names_tab_completes_are_those_met_in_the_room() -> None:
    """Who is here, who joined, who wrote or was written to: one's own name left out."""
    when = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    async with room_on_screen(interactive=True) as (chat, room, _shown):
        chat.online = ["alice", "bob"]
        await chat.events_in.send(History((message(1, "Carol", "hi"),), more=False))
        await chat.events_in.send(Joined("dave", when))
        await chat.events_in.send(PrivateMessage(2, when, "erin", "alice", "psst"))
        await chat.events_in.send(PrivateMessage(3, when, "alice", "frank", "hi"))
        room.handle("/who")
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(room.names()) == ["Carol", "bob", "dave", "erin", "frank"]
        assert complete("s/c", room.names()) == Completion("s/Carol/")
        # The latest met are kept, as many as `NAMES_MET`.
        for n in range(NAMES_MET + 5):
            await chat.events_in.send(Joined(f"p{n}", when))
        await trio.testing.wait_all_tasks_blocked()
        names = room.names()
        assert names == [f"p{n}" for n in range(5, NAMES_MET + 5)]


def test_a_name_met_again_is_the_latest_and_ones_own_is_left_out_however_written() -> None:
    met = NamesMet()
    met.meet("bob", "Alice")
    met.meet(*(f"p{n}" for n in range(NAMES_MET - 2)))
    met.meet("Bob")  # met again, as written now: kept over those met since the first time
    met.meet("carol")
    assert met.names("alice") == [*(f"p{n}" for n in range(NAMES_MET - 2)), "Bob", "carol"]
    alice = NamesMet()
    alice.meet("Alice", "bob", "ALICE")
    assert alice.names("Alice") == ["bob"]  # one's own name, however it was written
