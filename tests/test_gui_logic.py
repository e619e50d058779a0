"""The window's logic that needs no Qt: rows, their order, unread counts, the editor's
history and size, sign-in problems, the status line, what is remembered, the colours."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio
from PySide6.QtCore import QItemSelectionModel, QPoint, Qt
from PySide6.QtGui import (
    QAction,
    QColor,
    QContextMenuEvent,
    QFont,
    QPalette,
    QTextLine,
)
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLineEdit, QMenu, QScrollBar, QWidget
from pytestqt.qtbot import QtBot

import trio_chat
from trio_chat import commands, display
from trio_chat.errors import (
    AccountLocked,
    Banned,
    Busy,
    ChatError,
    InvalidName,
    KeyChanged,
    KeyUnproven,
    NameTaken,
    PasswordTooLong,
    PasswordTooShort,
    RegistrationsClosed,
    ServerUnreachable,
    Throttled,
    TooManyRegistrations,
    UnknownUser,
    WrongPassword,
    error_for,
)
from trio_chat.events import History, Joined, Left, PrivateMessage, PublicMessage
from trio_chat.gui import colours, memory
from trio_chat.gui.app import GuiApp, _problem
from trio_chat.gui.composer import Composer
from trio_chat.gui.conversations import ROOM, conversation_of
from trio_chat.gui.editing import Budget, Recall, budget
from trio_chat.gui.elided_label import ElidedLabel
from trio_chat.gui.message_view import MessageDelegate, MessageModel, MessageView
from trio_chat.gui.password_dialog import PasswordDialog
from trio_chat.gui.people import Online
from trio_chat.gui.problems import (
    Field,
    Problem,
    SignInForm,
    form_problem,
    key_changed_sentence,
    sign_in_problem,
)
from trio_chat.gui.room_window import BEGINNING, ENDED_HINT, MUTED_HINT, ROOM_HINT, RoomWindow
from trio_chat.gui.rows import (
    Kind,
    Row,
    Style,
    clock,
    full_time,
    info_row,
    joined_row,
    left_row,
    message_row,
    names_row,
    note_row,
    pending_row,
    refused_row,
    unsaid_row,
)
from trio_chat.gui.server_info import ServerInfo, server_info
from trio_chat.gui.sign_in_dialog import SignInDialog
from trio_chat.gui.status import Link, status_text
from trio_chat.gui.transcript import Transcript
from trio_chat.gui.unread import Unread, tab_label, window_title
from trio_chat.keys import KeyFileError, daemon_public_key
from trio_chat.noise import fingerprint

NOW = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)


def public(message_id: int, sender: str, text: str) -> PublicMessage:
    return PublicMessage(message_id, NOW, sender, text)


# --- rows ----------------------------------------------------------------------------------


def test_a_message_row_is_time_name_text_in_plain_text() -> None:
    row = message_row(public(7, "bob", "hello <b>x</b>"), "alice", NOW)
    local = NOW.astimezone().strftime("%H:%M:%S")
    assert row.plain == f"{local}  bob: hello <b>x</b>"
    assert (row.kind, row.message_id, row.mine) == (Kind.MESSAGE, 7, False)
    name = row.spans[1]
    assert (name.text, name.style, name.colour) == ("bob", Style.NAME, colours.sender_colour("bob"))
    assert row.plain[row.indent :] == "hello <b>x</b>"


def test_your_own_messages_are_marked_whatever_the_case() -> None:
    row = message_row(public(1, "Alice", "hi"), "alice", NOW)
    assert row.mine and row.spans[1].bold
    # Only yours: someone else's name is in their colour, not bold.
    assert not message_row(public(2, "bob", "hi"), "alice", NOW).spans[1].bold
    # A line on its way is yours too: drawn with the same mark in the margin.
    assert pending_row("soon", "alice").mine


def test_control_characters_and_bidi_controls_are_shown_escaped() -> None:
    row = message_row(public(1, "bob\u202e", "a\x1b[2Jb\u2066c<i>d"), "alice", NOW)
    assert row.plain.endswith("bob\\u202e: a\\x1b[2Jb\\u2066c<i>d")
    assert all(display.safe(span.text) == span.text for span in row.spans)
    note = note_row("bad\x07news", NOW)
    assert note.plain.endswith("bad\\x07news")
    # What you typed and what the daemon answered, shown back in a refusal, and the lines
    # of an answer: escaped as well.
    refused = refused_row("a\x1b[2Jb", "alice", "no\u202eway.", NOW)
    assert refused.plain.endswith("alice: a\\x1b[2Jb (no\\u202eway)")
    assert info_row("x\x1b]0;title\x07").plain == "x\\x1b]0;title\\x07"


def test_invisible_characters_are_shown_escaped_as_in_the_terminal() -> None:
    # A zero-width space, a word joiner, a soft hyphen, a Hangul filler, a tag character and
    # an invisible operator show nothing: escaped, in names and text alike. Joiners and
    # emoji variation selectors are how words and emoji are written: kept.
    hidden = "a\u200bb\u2060c\u00add\u3164e\U000e0041f\u2062g"
    shown = "a\\u200bb\\u2060c\\xadd\\u3164e\\U000e0041f\\u2062g"
    kept = "👩\u200d💻 ❤\ufe0f می\u200cخواهم"
    row = message_row(public(1, "e\u200bve", f"{hidden} {kept}"), "alice", NOW)
    assert row.spans[1].text == "e\\u200bve"
    assert row.plain[row.indent :] == f"{shown} {kept}"
    assert row.plain[row.indent :] == display.safe(f"{hidden} {kept}")
    names = names_row(["e\u200bve", "bob"], "alice", NOW)
    assert names.plain.endswith("Online (2): e\\u200bve, bob")
    assert pending_row(hidden, "alice").plain.endswith(f"alice: {shown}")


def test_times_are_local_with_the_date_when_not_today(monkeypatch: pytest.MonkeyPatch) -> None:
    yesterday = NOW - timedelta(days=1)
    assert clock(NOW, NOW) == NOW.astimezone().strftime("%H:%M:%S")
    assert clock(yesterday, NOW) == yesterday.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    monkeypatch.setenv("TZ", "EST5")  # west of UTC: 09:30 UTC is 04:30 there
    time.tzset()
    try:
        assert full_time(NOW) == "Friday 04 December 2026, 04:30:00"  # the tooltip
    finally:
        monkeypatch.undo()
        time.tzset()


def test_pending_refused_joined_left_and_names_rows() -> None:
    assert pending_row("soon", "alice").plain == "sending…  alice: soon"
    assert pending_row("soon", "alice").kind is Kind.PENDING
    refused = refused_row("x" * 3, "alice", "There is no account named 'zed'.", NOW)
    assert refused.plain.endswith("not sent: alice: xxx (There is no account named 'zed')")
    # A private line names its addressee, hidden characters shown: told in the room once
    # the tab of a name no account has is gone, it would read as said there.
    private = refused_row("hi", "alice", "There is no account named 'zed'.", NOW, "z\u200ded")
    assert private.plain.endswith(
        "not sent: alice to z\\u200ded: hi (There is no account named 'zed')"
    )
    assert joined_row(Joined("bob", NOW), "alice").plain.endswith("* bob joined the room")
    left = left_row(Left("bob", NOW, "timeout"), "alice")
    assert left.plain.endswith("* bob left the room (no longer answering)")
    names = names_row(["alice", "bob"], "alice", NOW)
    assert names.plain.endswith("Online (2): alice, bob")
    assert note_row("refused", NOW, Style.ERROR).spans[-1].style is Style.ERROR


def test_a_removed_message_shows_what_was_said_no_more() -> None:
    row = message_row(public(7, "bob", "a secret, alice"), "alice", NOW)
    removed = unsaid_row(row)
    assert removed.plain == f"{clock(NOW, NOW)}  bob: (removed by the operator)"
    assert "secret" not in removed.plain and removed.mentions == ()


# --- the order of rows ---------------------------------------------------------------------


def _apply_message(transcript: Transcript, message_id: int) -> int | None:
    insertion = transcript.plan_message(message_row(public(message_id, "bob", "m"), "alice"))
    if insertion is None:
        return None
    transcript.apply(insertion)
    return insertion.index


def test_messages_go_in_id_order_once_and_notes_stay_where_they_happened() -> None:
    transcript = Transcript()
    assert _apply_message(transcript, 10) == 0
    transcript.apply(transcript.plan_note(note_row("bob joined", NOW)))
    assert _apply_message(transcript, 12) == 2
    assert _apply_message(transcript, 11) == 2  # between the note and 12
    assert _apply_message(transcript, 11) is None  # shown once
    assert _apply_message(transcript, 3) == 0  # an older page goes on top
    ids = [row.message_id for row in transcript.rows]
    assert ids == [3, 10, None, 11, 12]
    assert transcript.oldest_id == 3


def test_pending_lines_stay_at_the_bottom_until_they_are_settled() -> None:
    transcript = Transcript()
    first = transcript.apply(transcript.plan_pending(pending_row("one", "alice")))
    second = transcript.apply(transcript.plan_pending(pending_row("two", "alice")))
    _apply_message(transcript, 5)
    assert [row.plain[-3:] for row in transcript.rows] == [": m", "one", "two"]
    assert transcript.pending == 2
    assert transcript.index_of_pending(second) == 2
    transcript.remove_pending(first)
    assert transcript.index_of_pending(first) is None
    assert transcript.index_of_pending(second) == 1
    transcript.apply(transcript.plan_beginning(note_row("the beginning", NOW)))
    assert transcript.rows[0].plain.endswith("the beginning")


def test_a_note_goes_below_the_newest_message_even_after_an_older_page() -> None:
    transcript = Transcript()
    _apply_message(transcript, 1)
    _apply_message(transcript, 20)
    _apply_message(transcript, 5)  # an older page, read after 20 came
    transcript.apply(transcript.plan_note(note_row("bob joined", NOW)))
    # The room's beginning is above its first message, whose id is 1.
    transcript.apply(transcript.plan_beginning(note_row("the beginning", NOW)))
    ids = [row.message_id for row in transcript.rows]
    assert ids == [None, 1, 5, 20, None]
    assert transcript.rows[0].plain.endswith("the beginning")
    assert transcript.pending == 0  # notes are not lines on their way


def test_the_message_the_operator_removed_is_the_one_shown_removed() -> None:
    model = MessageModel()
    for message_id in (3, 7, 9):
        model.add_message(message_row(public(message_id, "bob", f"said {message_id}"), "alice"))
    model.unsay(5)  # not shown (not read yet): nothing on screen changes
    assert [row.plain[row.indent :] for row in model.rows] == ["said 3", "said 7", "said 9"]
    model.unsay(7)
    shown = [row.plain[row.indent :] for row in model.rows]
    assert shown == ["said 3", "(removed by the operator)", "said 9"]
    model.add_message(message_row(public(5, "bob", "said 5"), "alice"))  # read later
    assert model.rows[1].plain.endswith("bob: (removed by the operator)")


# --- unread counts -------------------------------------------------------------------------


def test_unread_counts_per_tab_and_in_the_title_while_away() -> None:
    unread = Unread()
    unread.arrived(ROOM)
    assert unread.count(ROOM) == 0 and unread.unseen == 0  # on screen, window focused
    unread.arrived("bob")
    unread.arrived("bob")
    assert unread.count("bob") == 2 and tab_label("bob", 2) == "bob (2)"
    unread.show("bob")
    assert unread.count("bob") == 0 and tab_label("bob", 0) == "bob"
    unread.activate(False)
    unread.arrived("bob")
    unread.arrived(ROOM)
    assert unread.unseen == 2 and unread.count(ROOM) == 1 and unread.count("bob") == 0
    assert window_title("alice", "h:1", 2) == "(2) alice at h:1 – trio-chat"
    unread.activate(False)  # told again: still away, nothing was seen
    assert unread.unseen == 2
    unread.activate(True)
    assert unread.unseen == 0 and window_title("alice", "h:1", 0) == "alice at h:1 – trio-chat"
    assert tab_label("R&D", 0) == "R&&D"
    unread.show(ROOM)
    unread.arrived("bob")
    unread.forget("bob")  # its tab closed: opened again, it has nothing unread
    assert unread.count("bob") == 0


# --- the editor ----------------------------------------------------------------------------


def test_recall_goes_back_and_forth_and_keeps_the_draft() -> None:
    recall = Recall(limit=3)
    assert recall.older("draft") is None
    for line in ("one", "two", "two", "three", "four"):
        recall.add(line)
    assert recall.older("draft") == "four"
    assert recall.older("four") == "three"
    assert recall.older("three") == "two"
    assert recall.older("two") is None  # the limit keeps three lines
    assert recall.newer() == "three"
    assert recall.newer() == "four"
    assert recall.newer() == "draft"
    assert recall.newer() is None
    recall.add("four")  # sent again at once: recalled once
    assert recall.older("") == "four" and recall.older("four") == "three"


def test_the_size_counts_the_message_text_as_the_daemon_does() -> None:
    assert budget("/who") is None
    assert budget("/older " + "9" * 4400) is None  # a count Python would not read
    assert budget("") is None
    assert budget("hi") == Budget(2)
    assert budget("s/bob/" + "é" * 200) == Budget(400)
    assert not Budget(399).shown and Budget(400).shown
    assert Budget(500).text == "500/500 bytes" and not Budget(500).over
    assert Budget(503).text == "503/500 bytes: 3 too many" and Budget(503).over
    assert budget('"\x1b') == Budget(8)  # JSON escapes: 2 + 6
    assert budget("hi\n" + "x" * 501) == Budget(501)  # of lines pasted at once, the largest


# --- sign-in problems ----------------------------------------------------------------------

FORM = SignInForm("127.0.0.1", 1600, "alice", "password!", "", False)
UNTIL = (
    "The daemon's operator turned your address away until 2026-12-06 18:20:00 UTC; ask them why."
)


@pytest.mark.parametrize(
    ("error", "field", "start"),
    [
        (WrongPassword("Wrong password."), Field.PASSWORD, "Wrong password for 'alice'."),
        (UnknownUser("no"), Field.NAME, "There is no account named 'alice'; tick"),
        (
            error_for("unknown_user", "no", no_registrations=True),
            Field.NAME,
            "There is no account named 'alice', and this daemon takes no registrations: ask "
            "its operator for an account.",
        ),
        (  # an account the operator removed had it: not to be created either
            UnknownUser(
                "There is no account named 'alice'; the name is held by the daemon's operator."
            ),
            Field.NAME,
            "There is no account named 'alice'; the name is held by the daemon's operator.",
        ),
        (  # said as the daemon said it, its control characters escaped
            UnknownUser("No account; the name is held by the daemon's operator\x1b[2J."),
            Field.NAME,
            "No account; the name is held by the daemon's operator\\x1b[2J.",
        ),
        (NameTaken("taken"), Field.NAME, "The name 'alice' is taken"),
        (InvalidName("A name must start with a letter."), Field.NAME, "A name must start"),
        (PasswordTooShort("A password must be at least 8."), Field.PASSWORD, "A password must"),
        (ServerUnreachable("x"), Field.HOST, "Cannot reach trio-chat at 127.0.0.1:1600;"),
        (
            Throttled("slow", retry_after=2.5),
            Field.PASSWORD,
            "Too many failed sign-ins; wait a moment (about 3 s) and try again.",
        ),
        (PasswordTooLong("A password has at most 256."), Field.PASSWORD, "A password has at"),
        (AccountLocked("The operator locked 'alice'."), Field.NAME, "The operator locked"),
        (
            NameTaken("The name 'alice' could be mistaken for 'ALICE'; choose another."),
            Field.NAME,
            "The name 'alice' could be mistaken for 'ALICE'; choose another.",
        ),
        (  # an account the operator removed had it: no account to sign in to either
            NameTaken("The name 'alice' is held by the daemon's operator; choose another."),
            Field.NAME,
            "The name 'alice' is held by the daemon's operator; choose another.",
        ),
        (
            TooManyRegistrations("Too many accounts made here.", retry_after=59.2),
            Field.NAME,
            "Too many accounts made here (about 60 s).",
        ),
        (KeyChanged("x"), Field.HOST, "The daemon at 127.0.0.1:1600 shows another key than"),
        (
            KeyUnproven("The daemon at 127.0.0.1:1600 showed the key SHA256:x and then ..."),
            Field.HOST,
            "The daemon at 127.0.0.1:1600 showed one key and answered with another (someone on "
            "the way may have answered in its place); nothing was trusted: sign in again, or "
            "trust its key in a terminal with `trio-chat trust --host 127.0.0.1 --port 1600 "
            "--server-key` and the fingerprint its operator publishes.",
        ),
        (Busy("Busy; try again.", retry_after=0.4), Field.HOST, "Busy; try again (about 1 s)."),
        (
            RegistrationsClosed("This daemon takes no registrations; ask its operator."),
            Field.NAME,
            "This daemon takes no registrations: ask its operator for an account, and sign in "
            "with it (“Create an account” unticked).",
        ),
        (ChatError("Something else\x1b."), Field.HOST, "Something else\\x1b."),
        (Banned(UNTIL, retry_after=7199.5), Field.HOST, UNTIL),  # its end said, no seconds
    ],
)
def test_each_refusal_has_its_sentence_and_field(
    error: ChatError, field: Field, start: str
) -> None:
    problem = sign_in_problem(error, FORM)
    assert problem.field is field
    assert problem.sentence.startswith(start)
    assert problem.sentence.endswith(".")


def test_a_name_in_a_refusal_is_escaped_once_in_single_quotes() -> None:
    # As the room shows it: one backslash per escape, whatever quotes the name holds.
    for error, sentence in [
        (UnknownUser("no"), "There is no account named '\\u202eevil', and there cannot be"),
        (WrongPassword("no"), "Wrong password for '\\u202eevil'."),
        (NameTaken("taken"), "The name '\\u202eevil' is taken;"),
    ]:
        form = SignInForm("127.0.0.1", 1600, "\u202eevil", "password!")
        assert sign_in_problem(error, form).sentence.startswith(sentence)
    form = SignInForm("127.0.0.1", 1600, "o'brien", "password!")
    assert sign_in_problem(WrongPassword("no"), form).sentence == "Wrong password for 'o'brien'."


def test_a_changed_key_says_what_trio_chat_trust_does() -> None:
    problem = sign_in_problem(KeyChanged("The daemon at ... has the key ..."), FORM)
    assert problem.sentence == key_changed_sentence("127.0.0.1", 1600)
    assert (
        "`trio-chat trust --host 127.0.0.1 --port 1600` (in a terminal) shows the new key "
        "and asks before trusting it"
    ) in problem.sentence
    assert "someone may be in the middle" in problem.sentence
    ipv6 = key_changed_sentence("::1", 1700)
    assert ipv6.startswith("The daemon at [::1]:1700 ") and "--host ::1 --port 1700`" in ipv6


def test_a_failed_sign_in_is_told_from_inside_trios_exception_groups() -> None:
    """A refusal that comes out of a nursery is told as it is alone; a key file that cannot
    be used is told at the address (the daemon's key is what it holds), escaped; anything
    else is no refusal to tell."""
    refused = WrongPassword("Wrong password.")
    assert _problem(ExceptionGroup("signing in", [refused]), FORM) == sign_in_problem(refused, FORM)
    unreadable = KeyFileError("Cannot read /home/alice/known_\x1bservers: permission denied.")
    assert _problem(ExceptionGroup("trusting", [unreadable]), FORM) == Problem(
        "Cannot read /home/alice/known_\\x1bservers: permission denied.", Field.HOST
    )
    assert _problem(ExceptionGroup("signing in", [ValueError("a bug")]), FORM) is None


def test_the_form_is_checked_before_anything_is_sent() -> None:
    assert form_problem(FORM) is None
    cases = {
        SignInForm(" ", 1600, "alice", "pw"): Field.HOST,
        SignInForm("h", 1, "", "pw"): Field.NAME,
        SignInForm("h", 1, " ", "pw"): Field.NAME,
        SignInForm("h", 1, "a", ""): Field.PASSWORD,
        SignInForm("h", 1, "a", "pw", "pW", create=True): Field.REPEAT,
    }
    for form, field in cases.items():
        problem = form_problem(form)
        assert problem is not None and problem.field is field
    assert SignInForm("::1", 1600, "a", "b").where == "[::1]:1600"


# --- status, people, the about view ----------------------------------------------------------


def test_the_status_line() -> None:
    where = "127.0.0.1:1600"
    assert status_text(Link.CONNECTED, where, "alice", 3) == f"Connected to {where} as alice"
    assert status_text(Link.CONNECTED, where, "alice", 0, muted=True) == (
        f"Connected to {where} as alice; muted by the operator"
    )
    reconnecting = status_text(Link.RECONNECTING, where, "alice", 2, "the daemon is not running")
    assert reconnecting == (
        f"Reconnecting to {where} (lost: the daemon is not running); 2 lines waiting to be sent"
    )
    assert status_text(Link.RECONNECTING, where, "alice", 1).endswith("1 line waiting to be sent")
    assert status_text(Link.LOST, where, "alice", 0, "Gone.") == "Connection lost: Gone"
    assert status_text(Link.LOST, where, "alice", 0) == "Connection lost"
    assert status_text(Link.LEAVING, where, "alice", 0) == (
        f"Logging out of {where}; close the window again to leave now"
    )
    assert status_text(Link.LEAVING, where, "alice", 2) == (
        f"Logging out of {where} once 2 lines are stored; close the window again to leave now"
    )
    # A name kept from before the rules, with a variation selector that shows nothing.
    assert status_text(Link.CONNECTED, where, "alice\ufe0f", 0).endswith("as alice\\ufe0f")


def test_people_online_are_sorted_as_names_compare() -> None:
    online = Online()
    online.replace(["bob", "Alice"])
    online.joined("carol")
    online.joined("BOB")
    online.left("alice")
    assert online.names == ["BOB", "carol"] and "Bob" in online and len(online) == 2


async def test_the_about_view_shows_the_daemons_key_fingerprint(
    daemon: tuple[str, int], db_path: Path
) -> None:
    with trio.fail_after(10):
        await trio_chat.register(*daemon, "Alice", "password!")
        async with trio_chat.connect(*daemon, "alice", "password!") as chat:
            info = server_info(chat)
        key = fingerprint(daemon_public_key(db_path))
        assert (info.host, info.port, info.name, info.fingerprint) == (*daemon, "Alice", key)
        assert ServerInfo("::1", 1600, "alice", key).where == "[::1]:1600"


# --- what is remembered ----------------------------------------------------------------------


def test_host_port_and_name_are_remembered_never_the_password(tmp_path: Path) -> None:
    path = tmp_path / "config" / "gui.json"
    assert memory.load(path) == memory.Remembered()
    memory.save(path, memory.Remembered("chat.example", 1700, "alice"))
    assert memory.load(path) == memory.Remembered("chat.example", 1700, "alice")
    assert set(json.loads(path.read_text())) == {"host", "port", "name"}
    path.write_text('{"host": 5, "port": 99999, "name": "bob"}')
    assert memory.load(path) == memory.Remembered(name="bob")
    path.write_text("not json")
    assert memory.load(path) == memory.Remembered()


def test_the_config_file_is_in_the_users_config_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "/somewhere")
    assert memory.default_path() == Path("/somewhere/trio-chat/gui.json")


# --- colours -----------------------------------------------------------------------------------


def test_every_fixed_colour_reads_on_light_and_dark_backgrounds() -> None:
    assert set(colours.SENDER) == set(display.PALETTE)
    for colour in [*colours.SENDER.values(), colours.GOOD, colours.WAITING, colours.BAD]:
        assert colours.contrast(colour, "#ffffff") >= 3.0, colour
        assert colours.contrast(colour, "#2d2d2d") >= 3.0, colour
    assert colours.sender_colour("Alice") == colours.sender_colour("alice")


def test_private_messages_belong_to_the_other_persons_conversation() -> None:
    to_me = PrivateMessage(1, NOW, "Bob", "alice", "hi")
    from_me = PrivateMessage(2, NOW, "alice", "Carol", "hi")
    to_myself = PrivateMessage(3, NOW, "alice", "alice", "note")
    assert conversation_of(to_me, "alice") == ("bob", "Bob")
    assert conversation_of(from_me, "alice") == ("carol", "Carol")
    assert conversation_of(to_myself, "alice") == ("alice", "alice")
    assert conversation_of(public(4, "bob", "x"), "alice")[0] == ROOM


def test_the_sign_in_dialog_grows_to_show_what_it_says(qtbot: QtBot) -> None:
    """A notice and a problem of several lines each: the dialog grows, and gives none of
    the fields' height to them."""
    dialog = SignInDialog(memory.Remembered(name="alice"))
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    fields = (dialog.host, dialog.port, dialog.name, dialog.password)
    heights = [field.height() for field in fields]
    dialog.show_notice(
        "The daemon at 127.0.0.1:34598 has the key SHA256:SddZVXRFjdw7ZSMqQ0hMXF3z0bjZTQG2"
        "UBt/nN9bmk; trusting it from now on (remembered in ~/.local/share/trio-chat/"
        "known_servers)."
    )
    dialog.show_problem(Problem(key_changed_sentence("127.0.0.1", 34598), Field.HOST))
    qtbot.wait(10)
    assert [field.height() for field in fields] == heights
    grown = dialog.height()
    for label in (dialog.notice, dialog.problem):
        assert (
            label.height() >= label.heightForWidth(label.width()) > 2 * label.fontMetrics().height()
        )
    # Signing in again: the sentences go, and so does the room they took.
    dialog.set_busy(True, "Signing in to 127.0.0.1:34598…")
    dialog.show_notice("")
    qtbot.wait(10)
    assert dialog.height() < grown and [field.height() for field in fields] == heights
    assert dialog.progress.height() < 2 * dialog.progress.fontMetrics().height()


def test_signing_in_the_dialog_waits_then_is_ready_for_enter_again(qtbot: QtBot) -> None:
    """The cursor waits in the name, or in the password once a name is there; what is
    asked for has the spaces around the address and the name trimmed. While signing in
    the fields and Sign in wait (Enter asks nothing twice) and the problem said before
    goes; after, the cursor is back in a field and Enter signs in. The button says when
    it creates the account; Cancel says the dialog was cancelled."""
    nameless = SignInDialog(memory.Remembered(name=""))
    dialog = SignInDialog(memory.Remembered(host=" 127.0.0.1 ", name=" alice "))
    for shown in (nameless, dialog):
        qtbot.addWidget(shown)
        shown.show()
        qtbot.waitExposed(shown)
    assert nameless.focusWidget() is nameless.name and dialog.focusWidget() is dialog.password
    asked: list[str] = []
    dialog.sign_in_requested.connect(lambda: asked.append("sign in"))
    dialog.cancelled.connect(lambda: asked.append("cancel"))
    dialog.password.setText("correct horse")
    form = dialog.form()
    assert (form.host, form.name, form.password) == ("127.0.0.1", "alice", "correct horse")
    dialog.create_account.setChecked(True)
    assert dialog.sign_in_button.text() == "Create and sign in"
    dialog.create_account.setChecked(False)
    assert dialog.sign_in_button.text() == "Sign in"
    dialog.show_problem(Problem("Wrong password for 'alice'.", Field.PASSWORD))
    dialog.sign_in_button.setFocus()  # clicked
    dialog.set_busy(True, "Signing in to 127.0.0.1:1600…")
    fields = (dialog.host, dialog.port, dialog.name, dialog.password, dialog.create_account)
    assert not any(widget.isEnabled() for widget in (*fields, dialog.sign_in_button))
    assert dialog.problem.isHidden()
    dialog.accept()
    assert asked == []
    dialog.set_busy(False)
    assert dialog.focusWidget() is dialog.password and dialog.sign_in_button.isDefault()
    QTest.keyClick(dialog.password, Qt.Key.Key_Return)
    dialog.reject()
    assert asked == ["sign in", "cancel"]


def test_a_problem_with_what_was_filled_in_goes_once_it_is_changed(qtbot: QtBot) -> None:
    """ "Wrong password for 'bob'." stays while nothing changes, and goes once the name, a
    password or the choice to create an account does: it would speak of what is gone."""
    dialog = SignInDialog(memory.Remembered(name="bob"))
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    acts: tuple[Callable[[], None], ...] = (
        lambda: QTest.keyClicks(dialog.name, "x"),
        lambda: QTest.keyClicks(dialog.password, "x"),
        dialog.create_account.click,
        lambda: dialog.port.setValue(1601),
    )
    for act in acts:
        dialog.show_problem(Problem("Wrong password for 'bob'.", Field.PASSWORD))
        qtbot.wait(1)
        assert dialog.problem.isVisible()
        act()
        assert dialog.problem.isHidden()


def test_a_status_too_long_for_the_window_ends_in_an_ellipsis_and_shows_whole_on_hover(
    qtbot: QtBot,
) -> None:
    label = ElidedLabel()
    qtbot.addWidget(label)
    label.resize(200, 20)
    label.show()
    whole = "Connection lost: " + "the daemon shows another key than the one trusted " * 4
    label.setText(whole)
    assert label.text() == whole and label.toolTip() == whole
    shown = label.shown()
    assert shown.endswith("…") and whole.startswith(shown[:-1])
    assert label.fontMetrics().horizontalAdvance(shown) <= label.contentsRect().width()
    assert label.minimumSizeHint().width() == 0  # it never holds its window wide
    label.setText("Connected")
    assert label.shown() == "Connected" and label.toolTip() == ""
    label.resize(600, 20)
    label.setText("Connected to 127.0.0.1:1600 as alice")
    assert label.toolTip() == ""
    font = label.font()
    font.setPointSize(font.pointSize() * 3)
    label.setFont(font)  # what fitted no longer does
    assert label.shown() != label.text() and label.toolTip() == label.text()


def test_a_narrow_window_leaves_the_conversation_more_room_than_the_people(
    qtbot: QtBot,
) -> None:
    window = RoomWindow("alice", lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    for width in (860, 520, 360):
        window.resize(width, 400)
        qtbot.wait(10)
        talk, people = window.splitter.sizes()
        assert talk >= 2 * people > 0, width


def test_lines_are_broken_where_a_terminal_breaks_them(qtbot: QtBot) -> None:
    """A U+2028 in pasted text is text, as in the terminal and from a pipe; CR, LF and
    CRLF break lines."""
    assert commands.typed_lines("a\u2028b\r\nc\rd\ne\x0bf") == ["a\u2028b", "c", "d", "e\x0bf"]
    composer = Composer()
    qtbot.addWidget(composer)
    sent: list[str] = []
    composer.submitted.connect(sent.append)
    composer.editor.setText("one\u2028still one")
    composer.submit()
    assert sent == ["one\u2028still one"]
    # Lines pasted at once go one by one, blank ones left out; the line is cleared and
    # each is kept for Up (Down goes back; Up with Shift is the editor's own).
    composer.editor.setText("two\n\n  \nthree")
    composer.submit()
    assert sent[1:] == ["two", "three"] and composer.editor.text() == ""
    editor = composer.editor
    QTest.keyClick(editor, Qt.Key.Key_Up)
    QTest.keyClick(editor, Qt.Key.Key_Up)
    assert editor.text() == "two"
    QTest.keyClick(editor, Qt.Key.Key_Down)
    assert editor.text() == "three"
    QTest.keyClick(editor, Qt.Key.Key_Up, Qt.KeyboardModifier.ShiftModifier)
    assert editor.text() == "three"
    QTest.keyClick(editor, Qt.Key.Key_Down)  # back at the draft: nothing newer
    for _older in range(4):  # three lines kept, then nothing older: what is shown stays
        QTest.keyClick(editor, Qt.Key.Key_Up)
    assert editor.text() == "one\u2028still one"
    # Only Tab completes, and only Tab alone: other keys type, Ctrl+Tab is not Tab.
    editor.setText("/he")
    QTest.keyClick(editor, Qt.Key.Key_L)
    assert editor.text() == "/hel"
    QTest.keyClick(editor, Qt.Key.Key_Tab, Qt.KeyboardModifier.ControlModifier)
    assert editor.text() == "/hel"
    editor.setText("hello")
    assert composer.size_label.isHidden()  # far from the size limit: no size shown


def test_the_windows_list_of_commands_has_no_columns_to_align() -> None:
    """The window's font is not fixed-width: padding would zig-zag."""
    first, *lines = commands.WINDOW_HELP.splitlines()
    assert first == "Commands:" and len(lines) == 8
    for line in lines:
        command, description = line.split(" — ")
        assert command and description and "  " not in line


def test_repainting_the_room_keeps_every_reference_to_none(qtbot: QtBot) -> None:
    """Qt reads many roles of each row it paints, and the model answers most of them with
    None: a PySide6 that lost a reference to None each time (6.12.0 under Python 3.11,
    about 1,400 in ten repaints of thirty rows) ended the window after a few hundred
    messages ("deallocating None")."""
    window = RoomWindow("alice", lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    qtbot.addWidget(window)
    window.show()
    for n in range(1, 31):
        window.show_message(public(n, "bob", f"line {n}"))
    qtbot.waitExposed(window)
    qtbot.wait(10)  # the rows laid out
    view = window.view(ROOM)
    assert view is not None
    view.viewport().repaint()
    before = sys.getrefcount(None)
    for _repaint in range(10):
        view.viewport().repaint()
    assert before - sys.getrefcount(None) < 50


def shown_view(qtbot: QtBot, width: int, height: int) -> tuple[MessageModel, MessageView]:
    """A room's view of `width` x `height`, on screen, and its model."""
    model = MessageModel()
    view = MessageView(model, "room")
    qtbot.addWidget(view)
    view.resize(width, height)
    view.show()
    qtbot.waitExposed(view)
    return model, view


def test_rows_that_arrive_while_scrolled_up_are_said_below_and_a_click_goes_there(
    qtbot: QtBot,
) -> None:
    model, view = shown_view(qtbot, 400, 200)
    for n in range(1, 60):
        model.add_message(message_row(public(n, "bob", f"line {n}"), "alice", NOW))
    qtbot.wait(10)
    bar = view.verticalScrollBar()
    assert bar.value() == bar.maximum() > 0 and view.new_below.isHidden()  # it followed
    reading = bar.maximum() // 2
    bar.setValue(reading)
    model.add_message(message_row(public(60, "bob", "while you read"), "alice", NOW))
    qtbot.wait(10)
    assert bar.value() == reading and view.new_below.isVisible()
    assert view.new_below.text() == "↓ 1 new below"
    model.add_message(message_row(public(70, "bob", "and more"), "alice", NOW))
    assert view.new_below.text() == "↓ 2 new below"
    assert view.viewport().geometry().contains(view.new_below.geometry())
    view.new_below.click()
    qtbot.wait(10)
    assert bar.value() == bar.maximum() and view.new_below.isHidden()
    # A line of yours waits at the bottom: what arrives goes above it, still below.
    model.add_pending(pending_row("mine, on its way", "alice"))
    qtbot.wait(10)
    bar.setValue(reading)
    model.add_message(message_row(public(61, "bob", "above yours"), "alice", NOW))
    qtbot.wait(10)
    assert bar.value() == reading and view.new_below.isVisible()
    assert view.new_below.text() == "↓ 1 new below"  # counted afresh
    # Older messages at the top are no news.
    view.new_below.click()
    qtbot.wait(10)
    bar.setValue(reading)
    model.add_message(message_row(public(0, "bob", "older"), "alice", NOW))
    qtbot.wait(10)
    assert view.new_below.isHidden()
    # Scrolled up by one row only, the view stays where it is all the same.
    view.scroll_to_end()
    qtbot.wait(10)
    one_row = view.visualRect(model.index(0)).height()
    bar.setValue(bar.maximum() - one_row)
    reading = bar.value()
    model.add_message(message_row(public(81, "bob", "a row below"), "alice", NOW))
    qtbot.wait(10)
    assert bar.value() == reading and view.new_below.isVisible()
    # Taken to the end while there already (as a line sent is), it follows what comes.
    view.scroll_to_end()
    qtbot.wait(10)
    view.scroll_to_end()
    model.add_message(message_row(public(82, "bob", "next"), "alice", NOW))
    qtbot.wait(10)
    assert bar.value() == bar.maximum() and view.new_below.isHidden()


def test_a_row_that_lands_in_the_last_row_on_screen_is_no_news_below(qtbot: QtBot) -> None:
    """Scrolled up, a message (a history's, in its place) that goes in where the last row
    on screen is shows there: "new below" does not count it; one past it does."""
    model, view = shown_view(qtbot, 400, 200)
    for n in range(1, 60):
        model.add_message(message_row(public(2 * n, "bob", f"line {n}"), "alice", NOW))
    qtbot.wait(10)
    bar = view.verticalScrollBar()
    bar.setValue(bar.maximum() // 2)
    qtbot.wait(10)
    last = view.indexAt(QPoint(1, view.viewport().height() - 1)).row()
    shown = model.row(last).message_id
    assert shown is not None
    model.add_message(message_row(public(shown - 1, "bob", "in its place"), "alice", NOW))
    qtbot.wait(10)
    assert view.new_below.isHidden()
    model.add_message(message_row(public(shown + 1, "bob", "past it"), "alice", NOW))
    qtbot.wait(10)
    assert view.new_below.isVisible()


def test_every_line_to_a_name_no_account_has_is_told_in_the_room(qtbot: QtBot) -> None:
    """Two lines to a mistyped name, refused one after the other: the tab stays while the
    second waits, then goes, and both refusals are in the room, which comes to the front
    (not the other tab beside it)."""
    window = RoomWindow("alice", lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    qtbot.addWidget(window)
    window.open_conversation("bob")
    window.open_conversation("zed")
    first = window.add_pending("zed", "first")
    second = window.add_pending("zed", "second")
    reason = "There is no account named 'zed'"
    window.settle_refused(first, "first", reason, no_such_person=True)
    assert window.tab_text("zed") is not None and window.current_key == "zed"
    window.settle_refused(second, "second", reason, no_such_person=True)
    assert window.conversation("zed") is None and window.tab_text("zed") is None
    assert window.current_key == "" and window.tab_text("bob") is not None
    room = window.model("")
    assert room is not None
    refused = [row.plain.split("  ", 1)[1] for row in room.rows if "not sent" in row.plain]
    assert refused == [f"not sent: alice to zed: {line} ({reason})" for line in ("first", "second")]


def test_a_wrapped_line_never_starts_at_the_edge_where_rows_start(qtbot: QtBot) -> None:
    """A message's next lines start under its text, or a few characters in when a long
    name pushes the text past half the width: never where another row starts, so that
    text padded to wrap cannot pass for a line of someone else's."""
    view = MessageView(MessageModel(), "room")
    qtbot.addWidget(view)
    delegate = view.itemDelegate()
    assert isinstance(delegate, MessageDelegate)
    forged = "x" + " " * 200 + "12:00:00  bob: I am not bob"
    for sender in ("bob", "漢" * 16 + "x" * 16):
        row = message_row(public(9, sender, forged), "alice", NOW)
        layout = delegate.layout(row, 300)
        lines = [layout.lineAt(n) for n in range(layout.lineCount())]
        assert len(lines) > 1
        assert lines[0].position().x() == 0
        assert all(line.position().x() > 0 for line in lines[1:]), sender


def test_ones_own_name_in_someone_elses_message_is_bold_and_underlined(qtbot: QtBot) -> None:
    """As in the terminal: where bob's message names alice (in any case, as a word), her
    window draws her name in it bold and underlined; not in her own messages, nor once the
    operator removed the message."""
    view = MessageView(MessageModel(), "room")
    qtbot.addWidget(view)
    delegate = view.itemDelegate()
    assert isinstance(delegate, MessageDelegate)

    def marked(row: Row) -> list[str]:
        layout = delegate.layout(row, 400)
        shown = layout.text().encode("utf-16-le")  # where formats start is counted in UTF-16
        return [
            shown[2 * span.start : 2 * (span.start + span.length)].decode("utf-16-le")
            for span in layout.formats()
            if span.format.fontUnderline() and span.format.fontWeight() == QFont.Weight.Bold
        ]

    said = "😀 hi Alice, alice2 and ALICE!"
    row = message_row(public(9, "bob", said), "alice", NOW)
    assert marked(row) == ["Alice", "ALICE"]
    assert marked(message_row(public(10, "alice", "alice here"), "alice", NOW)) == []
    assert marked(unsaid_row(row)) == []
    private = PrivateMessage(11, NOW, "bob", "alice", "alice?")
    assert marked(message_row(private, "alice", NOW)) == []  # to her already


@pytest.mark.parametrize(
    ("more", "said"),
    [
        (False, "2 messages were missed while away; they are in their places above."),
        (True, "More than 2 messages were missed while away; the latest 2 are above."),
    ],
)
def test_the_window_says_when_what_was_missed_is_more_than_it_was_shown(
    qtbot: QtBot, more: bool, said: str
) -> None:
    window = RoomWindow("alice", lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    qtbot.addWidget(window)
    at = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    missed = (PublicMessage(7, at, "bob", "missed 7"), PublicMessage(8, at, "bob", "missed 8"))
    window.show_history(History(missed, more=more, resumed=True))
    room = window.model("")
    assert room is not None
    notes = [row.plain for row in room.rows if "missed while away" in row.plain]
    assert len(notes) == 1 and notes[0].endswith(f"  {said}")


def test_what_was_missed_in_private_is_told_apart_from_the_room(qtbot: QtBot) -> None:
    # "2 messages were missed while away; they are in their places above": one of them
    # was in bob's tab, not above.
    window = RoomWindow("alice", lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    qtbot.addWidget(window)
    at = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    missed = (
        PublicMessage(7, at, "bob", "missed 7"),
        PrivateMessage(8, at, "bob", "alice", "just for you"),
    )
    window.show_history(History(missed, more=False, resumed=True))
    room = window.model("")
    assert room is not None
    notes = [
        row.plain.split("  ", 1)[-1]
        for row in room.rows
        if "meanwhile" in row.plain or "away" in row.plain
    ]
    assert notes == [
        "1 message was missed while away; it is in its place above.",
        "1 private message came meanwhile, in its tab.",
    ]


def test_the_windows_help_tells_the_commands_as_the_window_obeys_them(qtbot: QtBot) -> None:
    # It showed the terminal's: "/history [n]" (the window scrolls instead) and "Ctrl-D
    # and Ctrl-C leave too" (in the window they do not).
    window = RoomWindow("alice", lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    qtbot.addWidget(window)
    (commands_action,) = [a for a in window.findChildren(QAction) if a.text() == "&Commands"]
    commands_action.trigger()
    room = window.model("")
    assert room is not None
    shown = [row.plain.strip() for row in room.rows]
    assert "Exit, /quit — close the window (Ctrl+Q)" in shown
    assert not any("Ctrl-D" in line or "/history [n]" in line for line in shown)


def test_a_rows_lines_keep_to_the_width_left_to_right_under_the_message_text(
    qtbot: QtBot,
) -> None:
    """Each line of a row fits the width, a word longer than a line included (broken
    anywhere, not cut off at the edge); the time comes first at the left whatever the text's
    direction; the next lines start exactly under the message text, or a few characters in
    when a long name pushes it past half the width."""
    view = MessageView(MessageModel(), "room")
    qtbot.addWidget(view)
    delegate = view.itemDelegate()
    assert isinstance(delegate, MessageDelegate)
    width = 300

    def x_of(line: QTextLine, position: int) -> float:
        at = line.cursorToX(position)  # `(x, position)` in PySide6
        x = at[0] if isinstance(at, tuple) else at
        assert isinstance(x, int | float)
        return float(x)

    said = "hello " + "word " * 40 + "x" * 200
    for sender in ("bob", "b" * 24):
        layout = delegate.layout(message_row(public(9, sender, said), "alice", NOW), width)
        lines = [layout.lineAt(n) for n in range(layout.lineCount())]
        assert len(lines) > 4
        assert all(line.x() + line.naturalTextWidth() <= width + 0.5 for line in lines)
        assert x_of(lines[0], 0) == 0  # the time, at the left
        text_at = x_of(lines[0], layout.text().index("hello"))
        if sender == "bob":
            assert all(abs(line.x() - text_at) < 1 for line in lines[1:])
        else:
            assert text_at > width / 2
            assert all(0 < line.x() < width / 4 for line in lines[1:])


def test_names_times_and_notes_are_drawn_in_their_own_styles(qtbot: QtBot) -> None:
    """Your own name is bold, others' semi-bold; the time and a note are in the same dim
    shade, the note alone in italics; hovering a row tells its full date and time."""
    model = MessageModel()
    view = MessageView(model, "room")
    qtbot.addWidget(view)
    delegate = view.itemDelegate()
    assert isinstance(delegate, MessageDelegate)

    def styles(row: Row) -> dict[str, tuple[int, bool, str]]:
        """Each span's text: its weight, whether in italics, its colour."""
        layout = delegate.layout(row, 400)
        shown = layout.text()
        return {
            shown[r.start : r.start + r.length]: (
                r.format.fontWeight(),
                r.format.fontItalic(),
                r.format.foreground().color().name(),
            )
            for r in layout.formats()
        }

    mine = styles(message_row(public(1, "alice", "hi"), "alice", NOW))
    theirs = styles(message_row(public(2, "bob", "hi"), "alice", NOW))
    assert mine["alice"][0] == QFont.Weight.Bold and theirs["bob"][0] == QFont.Weight.DemiBold
    note = note_row("The connection is back.", NOW)
    drawn = styles(note)
    (_, time_italic, dim), (_, note_italic, note_colour) = (
        drawn[note.spans[0].text],
        drawn["The connection is back."],
    )
    assert dim != view.palette().color(QPalette.ColorRole.Text).name() and note_colour == dim
    assert note_italic and not time_italic
    model.add_note(note)
    assert model.data(model.index(0), Qt.ItemDataRole.ToolTipRole) == full_time(NOW)


def test_rows_are_copied_in_their_order_and_only_when_some_are_selected(qtbot: QtBot) -> None:
    """Ctrl+C copies the selected rows as plain lines, in the order they are shown however
    they were picked; with none selected, what the clipboard held stays, and the menu's
    Copy waits for a selection."""
    model, view = shown_view(qtbot, 400, 200)
    for n in range(1, 4):
        model.add_message(message_row(public(n, "bob", f"line {n}"), "alice", NOW))
    clipboard = QApplication.clipboard()
    clipboard.setText("held")
    QTest.keyClick(view, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert clipboard.text() == "held"

    def copy_enabled() -> bool:
        at = view.visualRect(model.index(0)).center()
        view.contextMenuEvent(
            QContextMenuEvent(QContextMenuEvent.Reason.Mouse, at, view.mapToGlobal(at))
        )
        menu = QApplication.activePopupWidget()
        assert isinstance(menu, QMenu)
        (copy,) = menu.actions()
        enabled = copy.text() == "Copy" and copy.isEnabled()
        menu.close()
        return enabled

    assert not copy_enabled()
    selection = view.selectionModel()
    for n in (2, 0):
        selection.select(model.index(n), QItemSelectionModel.SelectionFlag.Select)
    assert copy_enabled()
    QTest.keyClick(view, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert clipboard.text() == f"{model.row(0).plain}\n{model.row(2).plain}"


def test_a_selected_row_is_drawn_in_the_selections_text_colour(qtbot: QtBot) -> None:
    """Names keep their sender's colour on the base, never on the selection's highlight,
    where some read at 1.1:1: a row is selected to be copied, and who said it must show."""
    model, view = shown_view(qtbot, 400, 100)
    name = "bobbybobbybobby"
    model.add_message(message_row(public(1, name, "hello"), "alice", NOW))
    qtbot.wait(10)
    sender = QColor(colours.sender_colour(name))
    assert coloured_pixels(view, sender) > 20  # the name, in its colour
    view.selectAll()
    qtbot.wait(10)
    assert coloured_pixels(view, sender) == 0


def test_a_selected_row_reads_at_aa_contrast_on_the_selections_highlight(
    qtbot: QtBot,
) -> None:
    """Fusion's highlight (#308cc6) holds its white text at 3.6:1; a selected row's is
    darkened as far as 4.5:1 asks, the rest of the palette left as it is."""
    model, view = shown_view(qtbot, 400, 60)
    palette = view.palette()
    palette.setColor(QPalette.ColorRole.Highlight, QColor("#308cc6"))
    palette.setColor(QPalette.ColorRole.HighlightedText, QColor("#ffffff"))
    view.setPalette(palette)
    model.add_message(message_row(public(1, "bob", "hello"), "alice", NOW))
    view.selectAll()
    qtbot.wait(10)
    image = view.viewport().grab().toImage()
    rect = view.visualRect(model.index(0))
    drawn = Counter(
        image.pixelColor(x, y).name()
        for x in range(rect.left(), rect.right())
        for y in range(rect.top(), rect.bottom())
    )
    background = drawn.most_common(1)[0][0]
    assert background != "#308cc6"
    assert 4.5 <= colours.contrast(background, "#ffffff") < 4.7  # no darker than needed
    assert view.palette().color(QPalette.ColorRole.Highlight).name() == "#308cc6"


def test_ones_own_rows_keep_their_mark_when_selected(qtbot: QtBot) -> None:
    """The mark beside one's own rows was drawn in the highlight's colour, on the
    highlight: a selected row of one's own lost it."""
    model, view = shown_view(qtbot, 400, 60)
    model.add_message(message_row(public(1, "alice", "mine"), "alice", NOW))
    qtbot.wait(10)
    rect = view.visualRect(model.index(0))
    x = rect.left() + 2 + MessageDelegate.MARK // 2

    def mark() -> set[str]:
        image = view.viewport().grab().toImage()
        return {image.pixelColor(x, y).name() for y in range(rect.top() + 4, rect.bottom() - 4)}

    assert mark() == {view.palette().color(QPalette.ColorRole.Highlight).name()}
    view.selectAll()
    qtbot.wait(10)
    assert mark() == {view.palette().color(QPalette.ColorRole.HighlightedText).name()}


def coloured_pixels(view: MessageView, colour: QColor) -> int:
    """How many of the view's pixels are `colour`, or nearly."""
    image = view.viewport().grab().toImage()
    count = 0
    for y in range(image.height()):
        for x in range(image.width()):
            pixel = image.pixelColor(x, y)
            near = (
                abs(pixel.red() - colour.red())
                + abs(pixel.green() - colour.green())
                + abs(pixel.blue() - colour.blue())
            )
            count += near < 30
    return count


def test_a_selected_row_with_emoji_is_in_the_selections_colour_to_its_end(
    qtbot: QtBot,
) -> None:
    """Qt counts a row's text in UTF-16 units, where an emoji is two: counted in
    characters, the selection's colour stopped short, and the end of a refused line's
    reason stayed red on the highlight."""
    model, view = shown_view(qtbot, 700, 100)
    model.add_note(refused_row("😀" * 12 + " x", "alice", "MMMMMMMMMMMM", NOW))
    qtbot.wait(10)
    red = QColor(colours.BAD)
    assert coloured_pixels(view, red) > 20
    view.selectAll()
    qtbot.wait(10)
    assert coloured_pixels(view, red) == 0


def room_of(qtbot: QtBot, messages: int) -> tuple[RoomWindow, MessageView, QScrollBar]:
    """A room window of 500 by 300 showing bob's `messages` lines, at their end: the
    window, the room's view and its scroll bar."""
    window = RoomWindow("alice", lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    qtbot.addWidget(window)
    window.resize(500, 300)
    window.show()
    for n in range(1, messages + 1):
        window.show_message(public(n, "bob", f"line {n}"))
    qtbot.waitExposed(window)
    qtbot.wait(10)
    view = window.view(ROOM)
    assert view is not None
    return window, view, view.verticalScrollBar()


def test_page_keys_in_the_message_line_scroll_the_conversation(qtbot: QtBot) -> None:
    """Where the caret always is, Page Up and Page Down scroll the conversation in front,
    Ctrl+Home goes to its top and Ctrl+End back down, as in other chat programs; what is
    typed stays as it is."""
    window, view, bar = room_of(qtbot, 60)
    assert bar.value() == bar.maximum() > 0
    editor = window.composer.editor
    QTest.keyClicks(editor, "half a line")
    QTest.keyClick(editor, Qt.Key.Key_PageUp)
    assert bar.maximum() - bar.value() == bar.pageStep()
    QTest.keyClick(editor, Qt.Key.Key_PageDown)
    assert bar.value() == bar.maximum()
    QTest.keyClick(editor, Qt.Key.Key_Home, Qt.KeyboardModifier.ControlModifier)
    assert bar.value() == bar.minimum()
    window.show_message(public(61, "bob", "while you read above"))
    qtbot.wait(10)
    assert view.new_below.isVisible()
    QTest.keyClick(editor, Qt.Key.Key_End, Qt.KeyboardModifier.ControlModifier)
    qtbot.wait(10)
    assert bar.value() == bar.maximum() and view.new_below.isHidden()
    assert editor.text() == "half a line"


def test_ctrl_end_takes_new_below_away_when_nothing_is_left_to_scroll(qtbot: QtBot) -> None:
    """Scrolled to the top as a message arrives, "new below" says so; the window then made
    tall enough to show every row, nothing scrolls any more: Ctrl+End in the message line
    still takes the button away, as it does when it scrolls."""
    window, view, bar = room_of(qtbot, 15)
    bar.setValue(bar.minimum())
    window.show_message(public(16, "bob", "while you read above"))
    qtbot.wait(10)
    assert view.new_below.isVisible()
    window.resize(500, 900)
    qtbot.wait(10)
    assert bar.maximum() == bar.minimum() and view.new_below.isVisible()
    QTest.keyClick(window.composer.editor, Qt.Key.Key_End, Qt.KeyboardModifier.ControlModifier)
    assert view.new_below.isHidden()


def test_closing_with_only_spaces_typed_logs_out_without_asking(qtbot: QtBot) -> None:
    """Spaces alone are no line to lose (Enter would not send them): closing logs out at
    once, as with nothing typed; a word among them makes it ask first."""
    window = RoomWindow("alice", lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    qtbot.addWidget(window)
    window.show()
    closed: list[bool] = []
    window.closed.connect(closed.append)
    window.composer.editor.setText("  x ")
    window.close()
    assert window._leave_box is not None and closed == []
    window._leave_box.reject()
    window.composer.editor.setText("   ")
    window.close()
    assert window._leave_box is None and closed == [False] and window.link is Link.LEAVING


def test_a_menu_closed_with_escape_gives_the_keys_back_to_the_message_line(
    qtbot: QtBot,
) -> None:
    """Qt's menu bar keeps the keyboard after a menu opened with the mouse is closed with
    Escape, and takes the letters typed next for menus' names: `s/carol/psst` lost `s/ca`
    (the Chat menu, then About) and went to the room as `rol/psst`."""
    window = RoomWindow("alice", lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    qtbot.addWidget(window)
    window.show()
    window.activateWindow()
    assert QTest.qWaitForWindowActive(window)
    window.composer.editor.setFocus()
    _open_the_chat_menu_and_escape(window, with_keys=False)
    focused = QApplication.focusWidget()
    assert focused is not None
    QTest.keyClicks(focused, "s/carol/psst")
    assert window.composer.editor.text() == "s/carol/psst"
    assert QApplication.activePopupWidget() is None


def _open_the_chat_menu_and_escape(window: RoomWindow, *, with_keys: bool) -> None:
    """Open the Chat menu (Alt+C, or a click on it) and close it again with Escape."""
    bar = window.menuBar()
    if with_keys:
        QTest.keyClick(window, Qt.Key.Key_C, Qt.KeyboardModifier.AltModifier)
    else:
        chat = bar.actions()[0]
        QTest.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.actionGeometry(chat).center())
    QTest.qWait(50)
    popup = QApplication.activePopupWidget()
    assert popup is not None
    QTest.keyClick(popup, Qt.Key.Key_Escape)
    QTest.qWait(50)


@pytest.mark.parametrize("had_them", ["the people", "nothing"])
@pytest.mark.parametrize("opened_with", ["the mouse", "Alt+C"])
def test_a_menu_closed_with_escape_gives_the_keys_back_where_they_were(
    qtbot: QtBot, opened_with: str, had_them: str
) -> None:
    """Reading the people online, a menu opened and closed again with Escape leaves the
    keyboard in the list, not in the message line: Down goes to the next name. Had nothing
    the keyboard, the message line takes it (the menu bar would take letters for menus)."""
    window = RoomWindow("alice", lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    qtbot.addWidget(window)
    window.show()
    window.activateWindow()
    assert QTest.qWaitForWindowActive(window)
    window.set_online(["alice", "bob"])
    window.people.setFocus()
    window.people.setCurrentRow(0)
    if had_them == "nothing":
        window.people.clearFocus()
        assert QApplication.focusWidget() is None
    _open_the_chat_menu_and_escape(window, with_keys=opened_with == "Alt+C")
    assert QApplication.activePopupWidget() is None
    focused = QApplication.focusWidget()
    if had_them == "nothing":
        assert focused is window.composer.editor
        return
    assert focused is window.people
    QTest.keyClick(focused, Qt.Key.Key_Down)
    assert window.people.currentRow() == 1


def password_dialog(qtbot: QtBot) -> tuple[PasswordDialog, list[tuple[str, str]]]:
    """alice's password dialog, shown, and what it sends (current, new) as it sends it."""
    dialog = PasswordDialog("alice")
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    sent: list[tuple[str, str]] = []
    dialog.wanted.connect(lambda given, wanted: sent.append((given, wanted)))
    return dialog, sent


@pytest.mark.parametrize(
    ("old", "new"),
    [("correct horse", "correct horse"), ("\u00c5correct horse", "A\u030acorrect horse")],
)
def test_the_current_password_again_is_said_at_the_new_one_and_nothing_is_sent(
    qtbot: QtBot, old: str, new: str
) -> None:
    dialog, sent = password_dialog(qtbot)
    dialog.current.setText(old)
    dialog.new.setText(new)
    dialog.repeat.setText(new)
    dialog.change.click()
    assert sent == []
    assert dialog.problem.text() == (
        "The new password is the same as the current password given; choose another."
    )
    assert dialog.focusWidget() is dialog.new and dialog.change.isEnabled()


def test_the_password_dialog_sends_nothing_without_the_current_password(qtbot: QtBot) -> None:
    """The button says what it does; without the current password nothing is sent and the
    cursor goes there; a refusal is shown escaped as everything the daemon says, and goes
    once a field is changed."""
    dialog, sent = password_dialog(qtbot)
    assert dialog.change.text() == "C&hange"
    dialog.new.setText("battery staple")
    dialog.repeat.setText("battery staple")
    dialog.change.click()
    assert sent == [] and dialog.problem.text() == "Type the password you have now."
    assert dialog.focusWidget() is dialog.current and dialog.problem.isVisible()
    dialog.refused("Wrong password for 'al\u202eice'.", wrong_current=True)
    assert dialog.problem.text() == "Wrong password for 'al\\u202eice'."
    QTest.keyClicks(dialog.current, "x")
    assert dialog.problem.isHidden()


def test_passwords_are_never_shown_as_typed(qtbot: QtBot) -> None:
    """Every password field, in signing in and in changing it, shows dots, not what is typed."""
    sign_in = SignInDialog(memory.Remembered(name="alice"))
    change = PasswordDialog("alice")
    for dialog in (sign_in, change):
        qtbot.addWidget(dialog)
    fields = (sign_in.password, sign_in.repeat, change.current, change.new, change.repeat)
    assert all(field.echoMode() is QLineEdit.EchoMode.Password for field in fields)


def test_signing_in_again_to_a_daemon_with_another_key_opens_a_new_window(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """The window of a session that ended goes on only for the same person at the same
    daemon: one that shows another key is another daemon, whose room starts afresh."""
    app = GuiApp(memory_path=tmp_path / "gui.json")
    before = ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x")
    ended = app._room_window(before, lambda: before, [])
    qtbot.addWidget(ended)
    after = ServerInfo("127.0.0.1", 1600, "alice", "SHA256:y")
    window = app._room_window(after, lambda: after, [])
    qtbot.addWidget(window)
    assert window is not ended and app.window is window


def test_focusing_the_window_again_clears_the_count_in_its_title(qtbot: QtBot) -> None:
    """Away from the window, its title counts what arrives, in the conversation in front
    too (its tab shows nothing: it is on screen); focused again, the count goes."""
    window = RoomWindow("alice", lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    qtbot.addWidget(window)
    window.show()
    window.activateWindow()
    assert QTest.qWaitForWindowActive(window)
    other = QWidget()
    qtbot.addWidget(other)
    other.show()
    other.activateWindow()
    qtbot.waitUntil(lambda: not window.isActiveWindow())
    window.show_message(public(1, "bob", "anyone?"))
    assert window.windowTitle() == "(1) alice at 127.0.0.1:1600 – trio-chat"
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    assert window.windowTitle() == "alice at 127.0.0.1:1600 – trio-chat"
    assert window.tab_text(ROOM) == "Room"


def test_what_counts_as_unread_and_where_a_line_typed_in_a_tab_goes(qtbot: QtBot) -> None:
    """On entering, the room's latest messages are not news, private ones that waited
    are; your own messages and pages of older ones never count, nor open a tab. A line
    typed in a private tab goes to the person as the daemon spells their name."""
    window = RoomWindow("alice", lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    qtbot.addWidget(window)
    window.open_conversation("dave")  # on screen: the room's news counts
    waited = PrivateMessage(11, NOW, "Bob", "alice", "psst")
    window.show_history(History((public(10, "carol", "hi all"), waited), more=True))
    assert window.tab_text("") == "Room" and window.tab_text("bob") == "Bob (1)"
    window.show_message(public(12, "carol", "anyone?"))
    window.show_message(public(13, "alice", "me"))
    assert window.tab_text("") == "Room (1)"
    older: list[PublicMessage | PrivateMessage] = [
        public(4, "carol", "old"),
        PrivateMessage(5, NOW, "erin", "alice", "old"),
    ]
    window.show_older(older, "")
    assert window.tab_text("erin") is None and window.tab_text("") == "Room (1)"
    bobs = window.view("bob")
    assert bobs is not None
    window.tabs.setCurrentIndex(window.tabs.indexOf(bobs))
    assert window.tab_text("bob") == "Bob"  # read
    typed: list[tuple[str, str]] = []
    window.line_entered.connect(lambda line, person: typed.append((line, person)))
    window.composer.editor.setText("hello")
    window.composer.submit()
    assert typed == [("hello", "Bob")]


def test_names_are_shown_escaped_in_the_people_the_tabs_and_the_title(qtbot: QtBot) -> None:
    """A name the daemon sends with a control or a bidirectional character in it shows
    it escaped wherever the window shows a name, as in the messages."""
    window = RoomWindow("al\u202eice", lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    qtbot.addWidget(window)
    window.set_online(["al\u202eice", "bo\x1bb"])
    people = sorted(window.people.item(n).text() for n in range(window.people.count()))
    assert people == ["al\\u202eice (you)", "bo\\x1bb"]
    key = window.open_conversation("bo\x1bb")
    assert window.tab_text(key) == "bo\\x1bb"
    assert window.composer.editor.placeholderText() == "Message bo\\x1bb privately"
    view = window.view(key)
    assert view is not None and view.accessibleName() == "Private conversation with bo\\x1bb"
    assert window.windowTitle() == "al\\u202eice at 127.0.0.1:1600 – trio-chat"


def test_the_window_keeps_each_conversation_as_it_was_told(qtbot: QtBot) -> None:
    """Who a private tab is with, what waits, where refusals and answers go, and whether
    older messages can still be asked for."""
    window = RoomWindow("alice", lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    qtbot.addWidget(window)
    assert window.composer.editor.placeholderText() == ROOM_HINT
    window.close_current_tab()  # the room's tab cannot be closed
    assert window.tab_text("") == "Room"
    window.show_history(History((public(10, "carol", "hi"),), more=True))
    room = window.model("")
    assert room is not None and not any(row.plain == BEGINNING for row in room.rows)
    window.open_conversation("bob")
    window.show_message(PrivateMessage(11, NOW, "bob", "alice", "hi"))
    window.open_conversation("BOB", focus=False)  # the daemon's spelling stays
    assert window.tab_text("bob") == "bob"
    bob = window.model("bob")
    assert bob is not None and bob.more  # a new private tab can load older messages
    window.show_names("bob", ["alice", "bob"])  # /who asked in bob's tab is answered there
    assert bob.rows[-1].plain.endswith("Online (2): alice, bob")
    window.open_conversation("zed", focus=False)
    line = window.add_pending("zed", "too long")
    window.settle_refused(line, "too long", "The message is too long")
    assert window.waiting == 0 and window.tab_text("zed") is not None  # refused, not gone
    line = window.add_pending("zed", "hi")
    window.settle_refused(line, "hi", "There is no account named 'zed'", no_such_person=True)
    assert window.tab_text("zed") is None and window.current_key == "bob"  # bob's stays in front
    window.refuse_now("BOB", "again", "The message is too long")
    assert bob.rows[-1].plain.endswith("not sent: alice to BOB: again (The message is too long)")
    line = window.add_pending("bob", "to a name nobody has?")
    window.settle_refused(line, "to a name nobody has?", "no", no_such_person=True)
    assert window.tab_text("bob") is not None  # bob wrote: a real person's tab stays
    window.open_conversation("Dave", focus=False)
    line = window.add_pending("Dave", "hello")
    window.settle_sent(line, PrivateMessage(12, NOW, "alice", "dave", "hello"))
    assert window.waiting == 0 and window.tab_text("dave") == "dave"  # as the daemon spells it
    assert window.current_key == "bob"
    window.show_message(PrivateMessage(13, NOW, "erin", "alice", "psst"))
    erin = window.view("erin")
    assert erin is not None and window.tab_text("erin") == "erin (1)"
    window.tabs.tabCloseRequested.emit(window.tabs.indexOf(erin))
    window.open_conversation("erin", focus=False)  # opened again: read when it was closed
    assert window.tab_text("erin") == "erin"
    window.set_link(Link.RECONNECTING, "reset")
    window.set_link(Link.RECONNECTING, "reset")
    assert sum("Lost the connection" in row.plain for row in room.rows) == 1
    window.set_muted(True)
    assert window.composer.editor.placeholderText() == MUTED_HINT
    window.set_link(Link.LOST, "gone")
    assert window.composer.editor.placeholderText() == ENDED_HINT
    window.go_on(lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    assert not window.muted
    window.close()  # logging out: what the connection does next no longer matters
    window.set_link(Link.RECONNECTING, "late")
    assert window.link is Link.LEAVING


def test_the_beginning_of_the_room_is_said_once_however_often_it_is_told(qtbot: QtBot) -> None:
    """Signed in again in the same window, the whole history comes again: the room still
    says once, at its top, that nothing is older."""
    window = RoomWindow("alice", lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    qtbot.addWidget(window)
    for _entering in range(2):
        window.show_history(History((public(10, "carol", "hi"),), more=False))
    room = window.model("")
    assert room is not None and [row.plain for row in room.rows].count(BEGINNING) == 1
    assert room.rows[0].plain == BEGINNING


def test_what_is_said_after_a_reconnection_and_a_page_of_older_messages(qtbot: QtBot) -> None:
    window = RoomWindow("alice", lambda: ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x"))
    qtbot.addWidget(window)
    window.show_history(History((public(10, "carol", "hi"),), more=False))
    window.open_conversation("bob")
    window.older_done(True)  # older private messages remain; the room has none
    room, bob = window.model(""), window.model("bob")
    assert room is not None and bob is not None
    assert not room.more and bob.more
    window.note("Said in bob's tab.", "bob")
    assert bob.rows[-1].plain.endswith("Said in bob's tab.")
    window.show_history(History((public(11, "carol", "missed"),), more=False, resumed=True))
    said = [row.plain.split("  ", 1)[-1] for row in room.rows]
    assert "1 message was missed while away; it is in its place above." in said
    assert "No message was missed meanwhile." not in said
