"""How events look: other people's text is shown, never obeyed; times are local."""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prompt_toolkit.utils import get_cwidth

from trio_chat import display
from trio_chat.cli.exits import sentence
from trio_chat.display import (
    CONTINUED,
    MENTION,
    PALETTE,
    colour_of,
    columns,
    continued,
    encodable,
    fold,
    joined_line,
    left_how,
    left_line,
    mentions,
    message_line,
    missed_sentence,
    names_line,
    quoted,
    safe,
    stamp,
    to_ansi,
    to_plain,
    told,
)
from trio_chat.engine.bans import BANNED
from trio_chat.engine.notes import LoginRefused
from trio_chat.errors import Banned, WrongPassword
from trio_chat.events import Joined, Left, PrivateMessage, PublicMessage
from trio_chat.gui.problems import SignInForm, sign_in_problem
from trio_chat.gui.rows import name_span
from trio_chat.logs import log_note
from trio_chat.records import unix_time

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, ünïcödé, 漢字, emoji 👩‍👩‍👧", "plain text, ünïcödé, 漢字, emoji 👩‍👩‍👧"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("title \x1b]0;pwned\x07", "title \\x1b]0;pwned\\x07"),
        ("bell\x07 nul\x00 del\x7f", "bell\\x07 nul\\x00 del\\x7f"),
        ("c1 csi \x9b31m", "c1 csi \\x9b31m"),
        ("two\nlines\r\tand a tab", "two\\nlines\\r\\tand a tab"),
        ("trojan \u202eevil\u202c \u2066x\u2069", "trojan \\u202eevil\\u202c \\u2066x\\u2069"),
        ("separator\u2028here", "separator\\u2028here"),
        ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
        ("hidden\u200bspace, soft\u00adhyphen", "hidden\\u200bspace, soft\\xadhyphen"),
        ("a\u034fb c\u180bd e\u17b4f", "a\\u034fb c\\u180bd e\\u17b4f"),
        ("filler \u3164 \u115f \u2800", "filler \\u3164 \\u115f \\u2800"),
        ("tags \U000e0041\U000e0042", "tags \\U000e0041\\U000e0042"),
        ("ZWNJ and VS16 stay: می\u200cخواهم ❤\ufe0f", "ZWNJ and VS16 stay: می\u200cخواهم ❤\ufe0f"),
        ("❤\ufe0f\u200d🔥 👨\u200d👩\u200d👧", "❤\ufe0f\u200d🔥 👨\u200d👩\u200d👧"),
        # Invisible characters that are how the text is written stay where they do that:
        # a subdivision's flag, an ideographic variant, a Mongolian variant, a Braille space.
        (scotland := "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", scotland),
        ("葛\U000e0100飾区", "葛\U000e0100飾区"),
        ("ᠠ\u180bᠡ", "ᠠ\u180bᠡ"),
        ("⠓⠑⠇⠇⠕\u2800⠺⠕⠗⠇⠙", "⠓⠑⠇⠇⠕\u2800⠺⠕⠗⠇⠙"),
        ("1\ufe0f\u20e3 ∩\ufe00 ❤\ufe0e", "1\ufe0f\u20e3 ∩\ufe00 ❤\ufe0e"),  # keycap, math, text
        ("क्\u200dष می\u200cخواهم", "क्\u200dष می\u200cخواهم"),  # after a virama; in Persian
        ("ᠠ\u180eᠡ", "ᠠ\u180eᠡ"),  # the Mongolian vowel separator
        # ... and nowhere else: there, and in runs, they could carry hidden text, a few bits
        # each ("PIN 4711" in selectors after the letters of "hello").
        ("he\ufe00l\ufe03lo", "he\\ufe00l\\ufe03lo"),
        ("a\u200db a\u200cb", "a\\u200db a\\u200cb"),
        ("a\u200d\u200c\u200d\u200cb", "a\\u200d\\u200c\\u200d\\u200cb"),
        ("❤\ufe0f\ufe0f", "❤\ufe0f\\ufe0f"),
        ("\ufe0fat the start", "\\ufe0fat the start"),
        ("x\U000e0100 🏴\U000e0041", "x\\U000e0100 🏴\\U000e0041"),
        # A flag with another code than England's, Scotland's or Wales's is drawn plain:
        # its tags (here "pin47") would hide.
        (
            "🏴\U000e0070\U000e0069\U000e006e\U000e0034\U000e0037\U000e007f",
            "🏴\\U000e0070\\U000e0069\\U000e006e\\U000e0034\\U000e0037\\U000e007f",
        ),
        ("1\ufe0f 2", "1\\ufe0f 2"),  # a digit's VS16 without the keycap
        ("+\ufe00 ∩\ufe00", "+\\ufe00 ∩\ufe00"),  # an ASCII symbol has no variant
        ("က\ufe00 你\ufe00", "က\ufe00 你\ufe00"),  # Myanmar, Han
        ("a\u200cب ب\u200ca", "a\\u200cب ب\\u200ca"),  # ZWNJ needs joining letters both sides
        ("你\u200c好", "你\\u200c好"),  # and scripts that it shapes
        ("ഞാന്\u200d", "ഞാന്\u200d"),  # a chillu at the end: ZWJ after a virama
        ("র\u200d্যাব", "র\u200d্যাব"),  # Bengali ra-yaphala: ZWJ before a virama
        ("ه\u200d.ش", "ه\u200d.ش"),  # a Persian abbreviation's ZWJ
        ("अर्थात्\u200c वह", "अर्थात्\u200c वह"),  # ZWNJ after a virama, at a word's end
        # Where a joiner changes nothing drawn, it could carry a bit: between two letters
        # that join anyway, or two Indic letters with no virama.
        ("नम\u200dस्ते ب\u200dب", "नम\\u200dस्ते ب\\u200dب"),
        ("नम\u200cस्ते", "नम\\u200cस्ते"),
        ("👩\u200d", "👩\\u200d"),  # a ZWJ joins to nothing at the end
        ("👩\u200d\u200b", "👩\\u200d\\u200b"),  # nor to something invisible
        ("note\ufff9hidden\ufffb 𓀀\U00013430𓀀", "note\\ufff9hidden\\ufffb 𓀀\\U00013430𓀀"),
        # The last of each range: a paragraph separator, a low surrogate, a hieroglyph control.
        ("one\u2029two \udfff 𓀀\U0001343f𓀀", "one\\u2029two \\udfff 𓀀\\U0001343f𓀀"),
        # England's and Wales's flags are drawn too; a flag without its cancel tag is not.
        (england := "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f", england),
        (wales := "🏴\U000e0067\U000e0062\U000e0077\U000e006c\U000e0073\U000e007f", wales),
        (
            "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074 x",
            "🏴\\U000e0067\\U000e0062\\U000e0073\\U000e0063\\U000e0074 x",
        ),
        ("🧑\u200d💻 🤷\u200d♀\ufe0f", "🧑\u200d💻 🤷\u200d♀\ufe0f"),  # emoji past U+1F5FF
        (
            "©\ufe0f 𠮷\U000e0100田",
            "©\ufe0f 𠮷\U000e0100田",
        ),  # the first pictograph; Han past U+FFFF
        ("\ufe0f❤", "\\ufe0f❤"),  # at the start, a selector follows nothing (not the end)
        ("blank \U0001d159 \U00016fe4", "blank \\U0001d159 \\U00016fe4"),  # not default-ignorable
        ("᠐\u180b", "᠐\\u180b"),  # a Mongolian variant selector after a digit, not a letter
        ("1\u200d\u094d", "1\\u200d\u094d"),  # a ZWJ before a virama after no letter
        ("।\u200d ", "।\\u200d "),  # after a danda, which no joiner shapes
        ("क\u200d.", "क\u200d."),  # a letter's joining form shown alone, in Devanagari too
        ("ه\u200d\u200b", "ه\\u200d\\u200b"),  # a joining form before nothing visible
        ("⠓\u2800\u2800\u2800⠺", "⠓\u2800\\u2800\u2800⠺"),  # Braille blanks one at a time
        ("x \u2800⠺⠕", "x \u2800⠺⠕"),  # a blank cell before Braille
    ],
)
def test_safe_shows_controls_as_escapes(text: str, shown: str) -> None:
    assert safe(text) == shown


@given(st.text(alphabet=st.sampled_from("a你ب্ന👩1❤+∩\u200c\u200d\ufe0f\ufe00\u20e3\U000e0100 ")))
def test_safe_returns_a_text_with_nothing_to_escape_as_it_is(text: str) -> None:
    """The fast path (one scan, nothing found) gives what the whole rule gives."""
    assert safe(text) == display._UNSAFE.sub(display._escape_in_text, text)


def test_safe_output_has_no_control_characters_left() -> None:
    everything = "".join(chr(code) for code in range(0x00, 0x250)) + "\u202a\u202b\u202d\u2067"
    result = safe(everything)
    assert not any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in result)
    assert not set(result) & set("\u202a\u202b\u202d\u2067")
    result.encode("utf-8")  # nothing that cannot be written to a UTF-8 terminal


def test_a_sender_keeps_one_colour_whatever_the_case() -> None:
    assert colour_of("Alice") == colour_of("alice") == colour_of("ALICE")
    assert colour_of("alice") in PALETTE
    colours = {colour_of(f"user{n}") for n in range(100)}
    assert len(colours) > len(PALETTE) // 2


def test_stamp_is_local_time_and_adds_the_date_for_other_days() -> None:
    local = NOW.astimezone()
    assert stamp(NOW, NOW) == local.strftime("[%H:%M:%S]")
    earlier = NOW - timedelta(days=3)
    assert stamp(earlier, NOW) == earlier.astimezone().strftime("[%Y-%m-%d %H:%M:%S]")


def test_public_and_private_lines() -> None:
    time = stamp(NOW, NOW)
    public = PublicMessage(1, NOW, "bob", "hi all")
    assert to_plain(message_line(public, "alice", NOW)) == f"{time} bob: hi all"
    to_me = PrivateMessage(2, NOW, "bob", "alice", "psst")
    assert to_plain(message_line(to_me, "alice", NOW)) == f"{time} [bob -> you] psst"
    from_me = PrivateMessage(3, NOW, "Alice", "bob", "hey")
    assert to_plain(message_line(from_me, "alice", NOW)) == f"{time} [you -> bob] hey"
    to_self = PrivateMessage(4, NOW, "alice", "alice", "note")
    assert to_plain(message_line(to_self, "alice", NOW)) == f"{time} [you -> you] note"


def test_names_and_text_from_others_are_escaped_in_every_line() -> None:
    evil = "\x1b[2Jbob"
    lines = [
        message_line(PublicMessage(1, NOW, evil, "\x1b[2J"), "alice", NOW),
        message_line(PrivateMessage(2, NOW, evil, "alice", "x"), "alice", NOW),
        joined_line(Joined(evil, NOW), "alice", NOW),
        left_line(Left(evil, NOW, "\x1b[2J"), "alice", NOW),
        names_line([evil, "alice"], "alice"),
        display.notice_line("\x1b[2J from the server", NOW),
        display.pending_line("\x1b[2J pasted", evil, "alice"),
    ]
    for line in lines:
        plain = to_plain(line)
        assert "\x1b" not in plain
        assert "\\x1b[2J" in plain
        # The only escape sequences in the terminal output are our own colours.
        assert "\x1b[2J" not in to_ansi(line)


def test_joiners_and_variation_selectors_in_a_name_are_escaped() -> None:
    # Kept in message text (emoji, Persian), but no name may hold them: in a name kept from
    # before the rules, `alice` + U+FE0F would look just like `alice`.
    old = "alice\ufe0f"
    lines = [
        message_line(PublicMessage(1, NOW, old, "hi \u2764\ufe0f"), "bob", NOW),
        joined_line(Joined(old, NOW), "bob", NOW),
        names_line([old, "alice"], "bob"),
    ]
    for line in lines:
        assert "alice\\ufe0f" in to_plain(line)
    assert to_plain(lines[0]).endswith("hi \u2764\ufe0f")
    assert name_span("a\u200db\u200cc\ufe0e", "bob").text == "a\\u200db\\u200cc\\ufe0e"
    # Even where message text keeps one (after a pictograph).
    assert quoted("bob\u2764\ufe0f") == "'bob\u2764\\ufe0f'"
    assert to_plain(names_line(["bob\u2764\ufe0f"], "alice")) == "Online (1): bob\u2764\\ufe0f"


def test_json_escaped_writes_what_hides_as_json_escapes_of_the_same_text() -> None:
    entry = json.dumps({"name": "a\u202eb\U000e0041c\ufe0f"}, ensure_ascii=False)
    shown = display.json_escaped(entry)
    assert shown == '{"name": "a\\u202eb\\udb40\\udc41c\\ufe0f"}'
    assert json.loads(shown) == json.loads(entry)


def test_a_name_no_account_can_have_is_told_in_one_sentence() -> None:
    told_so = display.cannot_exist("\u0430lice")
    assert told_so is not None
    assert told_so.startswith(
        "There is no account named '\u0430lice', and there cannot be: a name "
    )
    assert display.cannot_exist("alice") is None


def test_ones_own_name_is_bold_in_any_case() -> None:
    line = joined_line(Joined("Alice", NOW), "alice", NOW)
    assert (f"1;{colour_of('alice')}", "Alice") in line


def test_the_log_escapes_joiners_and_variation_selectors_in_names(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="trio_chat"):
        log_note(LoginRefused("alice\u200d", ("127.0.0.1", 5000), "unknown_user"))
    (record,) = caplog.records
    assert "login as 'alice\\u200d' from" in record.getMessage()  # one backslash


def test_ansi_colours_the_sender_and_plain_has_none() -> None:
    line = message_line(PublicMessage(1, NOW, "bob", "hi"), "alice", NOW)
    assert f"\x1b[{colour_of('bob')}mbob\x1b[0m" in to_ansi(line)
    assert "\x1b" not in to_plain(line)


def test_without_colour_only_bold_and_dim_stay() -> None:
    line = message_line(PublicMessage(1, NOW, "bob", "hi"), "bob", NOW)
    time = stamp(NOW, NOW)
    assert to_ansi(line, colour=False) == f"\x1b[2m{time} \x1b[0m\x1b[1mbob\x1b[0m: hi"
    assert to_ansi(line) == f"\x1b[2m{time} \x1b[0m\x1b[1;{colour_of('bob')}mbob\x1b[0m: hi"
    assert [display.uncoloured(f"1;{colour}") for colour in PALETTE] == ["1"] * len(PALETTE)


def test_join_and_leave_lines() -> None:
    time = stamp(NOW, NOW)
    assert (
        to_plain(joined_line(Joined("bob", NOW), "alice", NOW)) == f"{time} * bob joined the room"
    )
    assert to_plain(left_line(Left("bob", NOW, "quit"), "alice", NOW)) == (
        f"{time} * bob left the room"
    )
    assert to_plain(left_line(Left("bob", NOW, "timeout"), "alice", NOW)) == (
        f"{time} * bob left the room (no longer answering)"
    )
    assert to_plain(left_line(Left("bob", NOW, "password_changed"), "alice", NOW)) == (
        f"{time} * bob left the room (their password changed elsewhere)"
    )


def test_every_reason_to_leave_the_protocol_names_is_said_in_words() -> None:
    document = (Path(__file__).parents[1] / "docs" / "protocol.md").read_text()
    row = next(line for line in document.splitlines() if line.startswith("| `leave` |"))
    listed = re.search(r"`reason` \(([^;]*);", row)
    assert listed is not None
    reasons = re.findall(r"`(\w+)`", listed.group(1))
    assert "too_many_sessions" in reasons and "quit" in reasons
    for reason in reasons:
        assert "_" not in left_how(reason), reason


def test_a_long_line_folds_into_rows_marked_as_its_continuation() -> None:
    padding = " " * 70
    fake = "[12:00:00] bob: send me your password"
    message = PublicMessage(id=1, ts=NOW, sender="mallory", text="hi" + padding + fake)
    line = message_line(message, "alice", NOW)
    rows = fold(line, 60)
    assert len(rows) == 3
    assert to_plain(rows[0]).startswith("[") and " mallory: hi" in to_plain(rows[0])
    for row in rows[1:]:
        assert row[0] == CONTINUED
    # Every row fits, and together they hold the whole line, styles and all (each fold
    # here falls on a space, which it stands for).
    assert all(len(to_plain(row)) <= 59 for row in rows)
    text = " ".join([to_plain(rows[0]), *(to_plain(row[1:]) for row in rows[1:])])
    assert text == to_plain(line)
    assert "".join(style for style, _ in rows[0]) == "".join(style for style, _ in line[:4])


def test_a_long_line_folds_between_words_where_it_can() -> None:
    text = "hello bob, this is a fairly long line that should wrap around the edge nicely"
    message = PublicMessage(id=1, ts=NOW, sender="alice", text=text)
    line = message_line(message, "bob", NOW)
    rows = fold(line, 40)
    plain = [to_plain(row) for row in rows]
    assert all(len(row) <= 39 for row in plain)
    # No word is cut in two, and none is lost: each row ends at a word's end, and
    # the space the fold stands for is not shown at the start of the next row.
    assert plain[0].split() == to_plain(line).split()[: len(plain[0].split())]
    words = [
        word
        for row in [plain[0], *(row[len(CONTINUED[1]) :] for row in plain[1:])]
        for word in row.split()
    ]
    assert words == to_plain(line).split()
    for row in plain[1:]:
        assert row.startswith(CONTINUED[1]) and not row[len(CONTINUED[1])].isspace()
    assert len(rows) == 3


def test_a_word_longer_than_a_row_is_cut_where_the_row_ends() -> None:
    message = PublicMessage(id=1, ts=NOW, sender="li", text="see https://" + "x" * 60)
    rows = fold(message_line(message, "alice", NOW), 40)
    assert [len(to_plain(row)) for row in rows[:-1]] == [39] * (len(rows) - 1)


def test_a_line_ending_in_the_space_a_fold_stands_for_has_no_empty_row_after() -> None:
    line = (("", "x" * 39 + " "),)
    assert fold(line, 40) == [(("", "x" * 39),)]
    words = (("", "word " * 7 + "ends "),)  # 39 columns, then the last space
    assert [to_plain(row) for row in fold(words, 40)] == ["word " * 7 + "ends"]


def test_wide_characters_take_two_columns_when_folding() -> None:
    message = PublicMessage(id=1, ts=NOW, sender="li", text="漢" * 40)
    rows = fold(message_line(message, "alice", NOW), 40)
    widths = [sum(2 if "\u4e00" <= c <= "\u9fff" else 1 for c in to_plain(r)) for r in rows]
    assert len(rows) > 2 and all(width <= 39 for width in widths)


def test_ones_own_name_in_someone_elses_message_is_marked() -> None:
    """In a busy room, a line that names you stands out: your name, where it stands as a
    word in any case, bold and underlined; not inside another word, nor in your own
    lines, nor in private ones (which say `-> you` already)."""
    said = "hi Alice, alice2 and ALICE! _alice \x1b[1m"
    line = message_line(PublicMessage(1, NOW, "bob", said), "alice", NOW)
    assert line[3:] == (
        ("", "hi "),
        (MENTION, "Alice"),
        ("", ", alice2 and "),
        (MENTION, "ALICE"),
        ("", "! _alice \\x1b[1m"),
    )
    assert to_plain(line).endswith(": hi Alice, alice2 and ALICE! _alice \\x1b[1m")
    own = message_line(PublicMessage(2, NOW, "Alice", "alice here"), "alice", NOW)
    assert MENTION not in {style for style, _text in own}
    private = message_line(PrivateMessage(3, NOW, "bob", "alice", "alice?"), "alice", NOW)
    assert MENTION not in {style for style, _text in private}
    chinese = message_line(PublicMessage(4, NOW, "li", "张伟 你好"), "张伟", NOW)
    assert chinese[3:] == ((MENTION, "张伟"), ("", " 你好"))


@pytest.mark.parametrize(
    ("me", "text", "marked"),
    [
        ("bob", "@bob, bob's turn; BOB!", ["bob", "bob", "BOB"]),
        ("bob", "...bob.", ["bob"]),
        # Part of something longer: an address, a link, another name, a word.
        ("bob", "mail bob@example.com", []),
        ("bob", "see https://example.com/bob/page", []),
        ("bob", "bob.smith, bob-x and x.bob", []),
        ("bob", "bobby, bob2, bob_x", []),
        # What `safe` writes for a control character (an account `x1b` is no more named
        # in `\x1b` than bob in a path `C:\bob`); named after a backslash and a space.
        ("x1b", "\\x1b[2J, \\u202ex1b and \\ x1b", ["x1b"]),
        ("bob", "C:\\bob\\notes", []),
        ("अमित", "अमिता आई", []),  # Amita: अमित with a vowel sign after it
        ("अमित", "अमित, आओ", ["अमित"]),
        # No spaces between words: the name among other letters of its writing.
        ("张伟", "你好张伟，张伟你好", ["张伟", "张伟"]),
        ("さくら", "さくらさん", ["さくら"]),
        ("김철수", "김철수님 안녕", ["김철수"]),
        ("张伟", "zhang张伟", []),
        ("bob", "你好bob", []),  # nor a name in other letters after them
        ("bob", "cafe\u0301bob", []),  # after a letter's accent written apart: one word
        # Its last letter with a vowel sign, in writing without spaces as in any other:
        # `สมุด` (a notebook) is not Som, and marking would split `มุ` in two.
        ("สม", "สมุด", []),
        ("สม", "สวัสดีสม", ["สม"]),
        # The same account however written: full-width letters, a letter and its accent
        # as one character or two, `ß` for `ss`.
        ("bob", "ＢＯＢ! and Ｂob", ["ＢＯＢ", "Ｂob"]),
        ("bob", "ｂｏｂｂｙ, ＢＯＢ２", []),
        ("José", "hola jose\u0301 y JOSÉ", ["jose\u0301", "JOSÉ"]),
        ("José", "jose and josé\u0301", []),
        ("Strass", "STRASSE, straß!", ["straß"]),
        ("가", "각 가", ["가"]),
        ("alice", "hi \U0001d400\U0001d40b\U0001d408\U0001d402\U0001d404!", ["𝐀𝐋𝐈𝐂𝐄"]),  # bold
        # A name kept from before the rules, as `safe` shows it in a message.
        ("bob\u200b", "hi bob\\u200b!", ["bob\\u200b"]),
    ],
)
def test_a_name_is_marked_where_it_stands_alone(me: str, text: str, marked: list[str]) -> None:
    """Marked where a person is named; not where the letters of the name are part of an
    address, a link or a longer word, which would draw the eye for nothing."""
    assert [text[start:end] for start, end in mentions(text, me)] == marked


def test_a_message_is_read_for_ones_name_folding_each_character_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every message shown is read for one's name, in the terminal and the window: a
    character once folded is not folded again at each message (a call for each took a
    message of Cyrillic 25 times as long to read as before names were folded), and the
    characters kept are bounded, a text of rare ones being no way to fill the memory."""
    folds = display._Folds()
    monkeypatch.setattr(display, "_FOLDS", folds)
    folded: list[str] = []
    fold = display._fold

    def counted(char: str) -> str:
        folded.append(char)
        return fold(char)

    monkeypatch.setattr(display, "_fold", counted)
    text = "Привет, Боб! Как дела у ＢＯＢа?"
    assert mentions(text, "боб") == [(8, 11)]
    assert folded
    folded.clear()
    assert mentions(text, "боб") == [(8, 11)] and mentions("боб и ＢＯＢ", "Боб") == [(0, 3)]
    assert folded == []
    monkeypatch.setattr(folds, "LIMIT", len(folds) + 10, raising=False)
    rare = "".join(map(chr, range(0xA000, 0xA064)))  # a hundred Yi syllables
    assert mentions(rare + " боб", "боб") == [(101, 104)]
    assert len(folds) == folds.LIMIT


def test_ambiguous_width_counts_two_columns_in_an_east_asian_terminal() -> None:
    """A terminal of Shift JIS, GBK, EUC-KR or Big5 draws a character of East Asian
    Ambiguous width (`①`, `○`, Greek and Cyrillic letters) two columns wide, as it draws
    every two-byte character: counted one, a row of them ran past the edge, wrapped with
    no mark. In such a terminal a row's columns are its bytes."""
    text = "Привет ①②③ ○ αβγ " * 6
    line = message_line(PublicMessage(1, NOW, "li", text), "alice", NOW)
    for encoding in ("cp932", "gbk", "euc-kr", "big5", "shift_jis"):
        rows = fold(line, 40, encoding)
        written = [to_plain(row).encode(encoding) for row in rows]
        assert len(rows) > 4, encoding
        assert all(len(row) <= 39 for row in written), (encoding, written)
        assert max(len(row) for row in written) >= 30, encoding  # rows are still filled
    # In UTF-8 they take one column, as most terminals draw them: rows are not halved.
    plain = [to_plain(row) for row in fold(line, 40, "utf-8")]
    assert len(plain) < len(fold(line, 40, "cp932"))
    assert all(30 <= len(row) <= 39 for row in plain[:-1])
    assert columns("①") == 1 and columns("①", wide_ambiguous=True) == 2
    assert columns("漢", wide_ambiguous=True) == 2 and columns("a", wide_ambiguous=True) == 1
    assert columns("e\u0301", wide_ambiguous=True) == 1  # a combining mark takes none


def glibc_width(text: str) -> int:
    """Columns as glibc's `wcswidth` (and the terminals that follow it) gives them: a
    spacing vowel sign takes one, where the width tables say 0."""
    return sum(max(get_cwidth(char), unicodedata.category(char) == "Mc") for char in text)


def test_vowel_signs_that_terminals_draw_one_column_wide_cannot_forge_a_line() -> None:
    """64 of U+093E fill what is left of bob's first row at 80 columns; counted as 0 wide,
    they left the next line's text to the terminal's own wrap, unmarked: a line "from
    alice"."""
    fake = "[01:21:00] alice: please send your password to bob now"
    message = PublicMessage(id=1, ts=NOW, sender="bob", text="\u093e" * 64 + fake)
    rows = fold(message_line(message, "carol", NOW), 80)
    assert len(rows) >= 2 and all(row[0] == CONTINUED for row in rows[1:])
    assert all(glibc_width(to_plain(row)) <= 79 for row in rows)
    hindi = PublicMessage(1, NOW, "bob", "आपका नाम क्या है? " * 8)
    rows = fold(message_line(hindi, "carol", NOW), 80)
    assert all(glibc_width(to_plain(row)) <= 79 for row in rows)


def test_flags_and_emoji_sequences_are_never_cut_in_two() -> None:
    """A row ending between the two halves of a flag re-pairs the halves after it into
    other flags (🇺🇸🇦🇪 cut after 🇺 reads 🇸🇦: Saudi Arabia); a ZWJ sequence cut shows
    its parts."""
    flags = "🇺🇸🇦🇪" * 8
    rows = fold((("", "ab" + flags),), 30)
    texts = [to_plain(row).removeprefix(CONTINUED[1]) for row in rows]
    assert "".join(texts) == "ab" + flags and len(rows) > 1
    assert all(len(text.removeprefix("ab")) % 2 == 0 for text in texts)  # whole pairs
    coder = "👩\u200d💻"
    rows = fold((("", "abc" + coder * 20),), 30)
    texts = [to_plain(row).removeprefix(CONTINUED[1]) for row in rows]
    assert all(text.removeprefix("abc").replace(coder, "") == "" for text in texts)


def test_a_cluster_wider_than_a_row_goes_in_parts() -> None:
    text = "क" + "\u093e" * 100  # one grapheme cluster, 101 columns on glibc's count
    rows = fold((("", text),), 40)
    assert "".join(to_plain(row).removeprefix(CONTINUED[1]) for row in rows) == text
    assert all(glibc_width(to_plain(row)) <= 39 for row in rows)
    # Wider than a row after the mark holds, though not than the first row.
    rows = fold((("", "ab " + "क" + "\u093e" * 16),), 20)
    assert len(rows) > 1
    assert all(glibc_width(to_plain(row)) <= 19 for row in rows)


def test_what_the_terminals_encoding_lacks_is_escaped_before_folding() -> None:
    """In a Latin-1 terminal two people named in Chinese showed as `??` and `??`."""
    line = message_line(PublicMessage(1, NOW, "张伟", "café ☕ " * 8), "alice", NOW)
    latin = encodable(line, "ISO-8859-1")
    plain = to_plain(latin)
    assert "\\u5f20\\u4f1f: café \\u2615" in plain
    plain.encode("latin-1")  # every character of it can be written
    # Folded as the escapes are wide, not the characters, with a mark Latin-1 has (`┆`
    # would be written `\u2506`, five columns more than counted): every row, as the
    # terminal's stream writes it, fits.
    rows = fold(line, 40, "ISO-8859-1")
    assert len(rows) > 2 and all(row[0] == continued("latin-1") for row in rows[1:])
    written = [to_plain(row).encode("latin-1", "backslashreplace") for row in rows]
    assert all(len(text) <= 39 for text in written)
    assert continued("latin-1")[1] == "  \u00a6 " and continued("ascii")[1] == "  | "
    assert continued("utf-8") == continued(None) == CONTINUED
    assert continued("gbk")[1] == continued("euc-jp")[1] == "  | "  # drawn wide there
    assert encodable(line, "utf-8") == line and encodable(line, "UTF8") == line
    assert encodable(line, "no-such-encoding") == line


def test_a_line_that_fits_is_one_row() -> None:
    message = PublicMessage(id=1, ts=NOW, sender="li", text="short")
    line = message_line(message, "alice", NOW)
    assert fold(line, 80) == [line]
    # A terminal too narrow for a row after the mark to hold 9 columns: left to wrap it.
    long = message_line(PublicMessage(id=2, ts=NOW, sender="li", text="x" * 100), "alice", NOW)
    assert fold(long, 13) == [long]
    assert len(fold(long, 14)) > 1


def test_the_online_line_names_everyone_or_says_nobody() -> None:
    assert to_plain(names_line(["alice", "bob"], "alice")) == "Online (2): alice, bob"
    assert to_plain(names_line([], "alice")) == "Online (0): nobody"


def test_a_quoted_name_shows_each_escape_once() -> None:
    """Quoting with `repr` would double an escape's backslash ('bo\\\\u200bb')."""
    assert quoted("bo\u200bb") == "'bo\\u200bb'"
    assert quoted("alice") == "'alice'"
    assert quoted("\x1b[2J") == "'\\x1b[2J'"


def test_skipped_events_are_counted_and_history_named() -> None:
    assert missed_sentence(1) == (
        "Too much came in at once: 1 event skipped; /history shows the messages among them."
    )
    assert "12 events skipped" in missed_sentence(12)
    assert display.counted(0, "event") == "0 events"


@pytest.mark.usefixtures("two_hours_east")
def test_a_bans_end_is_told_in_the_local_time() -> None:
    # The daemon says it in UTC, beside messages stamped in the local time.
    daemons = (
        "The daemon's operator turned your address away until 2026-12-06 16:40:02 UTC; ask "
        "them why."
    )
    ends = unix_time("2026-12-06T16:40:01.200Z")
    local = (
        "The daemon's operator turned your address away until 2026-12-06 18:40:02 XYZ; ask "
        "them why."
    )
    assert told(Banned(daemons, until=ends)) == local
    assert sentence(Banned(daemons, until=ends), "alice") == local  # the terminal's
    form = SignInForm("127.0.0.1", 1600, "alice", "password!", "", False)
    assert sign_in_problem(Banned(daemons, until=ends), form).sentence == local  # the window's
    assert told(Banned(BANNED)) == BANNED  # for good: no end to tell
    assert told(Banned(daemons, until=1e20)) == daemons  # past any year a clock shows
    assert told(WrongPassword("Wrong\x1b password.")) == "Wrong\\x1b password."
