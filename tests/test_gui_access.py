"""The window for people who read it with a screen reader or drive it from the keyboard
alone, or who need its text to stand out from the background: names for what is on screen,
what changes said aloud, and text at WCAG AA's contrast (4.5:1) on light and dark palettes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import (
    QAccessible,
    QAccessibleAnnouncementEvent,
    QAccessibleEvent,
    QColor,
    QPalette,
)
from PySide6.QtTest import QTest
from PySide6.QtWidgets import (
    QApplication,
    QLabel,
    QListWidget,
    QMessageBox,
    QPushButton,
    QWidget,
)
from pytestqt.qtbot import QtBot

from trio_chat import display
from trio_chat.events import History, PrivateMessage, PublicMessage
from trio_chat.gui import colours, memory
from trio_chat.gui.about_dialog import AboutDialog
from trio_chat.gui.composer import Composer
from trio_chat.gui.message_view import MessageDelegate
from trio_chat.gui.password_dialog import PasswordDialog
from trio_chat.gui.problems import Field, Problem
from trio_chat.gui.room_window import RoomWindow
from trio_chat.gui.rows import Kind
from trio_chat.gui.server_info import ServerInfo
from trio_chat.gui.sign_in_dialog import SignInDialog
from trio_chat.gui.speech import announce
from trio_chat.gui.status import Link

NOW = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
INFO = ServerInfo("127.0.0.1", 1600, "alice", "SHA256:x")


def a_window(qtbot: QtBot) -> RoomWindow:
    window = RoomWindow("alice", lambda: INFO)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


def one_name_per_colour() -> list[str]:
    """A name for each of the terminal's sender colours."""
    names: dict[str, str] = {}
    for number in range(1000):
        names.setdefault(display.colour_of(f"person{number}"), f"person{number}")
    assert set(names) == set(display.PALETTE)
    return sorted(names.values())


def palette(base: str, window: str, text: str, disabled: str) -> QPalette:
    """A palette as a light or dark desktop gives it: the placeholder text is the text's
    colour, half transparent (as Qt's Fusion style has it)."""
    chosen = QPalette()
    for role, colour in (
        (QPalette.ColorRole.Base, base),
        (QPalette.ColorRole.Window, window),
        (QPalette.ColorRole.Text, text),
        (QPalette.ColorRole.WindowText, text),
    ):
        chosen.setColor(role, QColor(colour))
    placeholder = QColor(text)
    placeholder.setAlpha(128)
    chosen.setColor(QPalette.ColorRole.PlaceholderText, placeholder)
    chosen.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(disabled))
    return chosen


def drawn(colour: QColor, background: str) -> str:
    """A colour as it shows over `background`, its transparency and all."""
    under = QColor(background)
    share = colour.alphaF()
    return QColor.fromRgbF(
        under.redF() + (colour.redF() - under.redF()) * share,
        under.greenF() + (colour.greenF() - under.greenF()) * share,
        under.blueF() + (colour.blueF() - under.blueF()) * share,
    ).name()


LIGHT = palette("#ffffff", "#efefef", "#000000", "#bebebe")
DARK = palette("#2d2d2d", "#353535", "#ffffff", "#6e6e6e")


def test_a_readable_shade_is_the_colour_itself_when_it_reads_else_the_nearest_that_does() -> None:
    for colour in colours.SENDER.values():
        for background in ("#ffffff", "#efefef", "#2d2d2d", "#1e1e1e", "#808080"):
            shade = colours.readable(colour, background)
            ratio = colours.contrast(shade, background)
            if colours.contrast(colour, background) >= 4.5:
                assert shade == colour
            else:
                # Darkened or lightened only as far as needed: still a shade of the colour.
                assert 4.5 <= ratio < 4.7, (colour, background, shade)
    # A quarter-opaque black (a palette's placeholder grey) as it shows on white.
    assert colours.solid("#000000", 64, "#ffffff") == "#bfbfbf"


@pytest.mark.parametrize("chosen", [LIGHT, DARK], ids=["light", "dark"])
def test_names_notes_and_refusals_read_at_aa_contrast_on_light_and_dark(
    qtbot: QtBot, chosen: QPalette
) -> None:
    window = a_window(qtbot)
    window.setPalette(chosen)
    names = one_name_per_colour()
    window.set_online([*names, "alice"])
    for number, name in enumerate(names, start=1):
        window.show_message(PublicMessage(number, NOW, name, "hello"))
    window.note("Lost the connection to 127.0.0.1:1600; trying again.")
    window.refuse_now("", "too much", "the message is too long")
    view = window.view("")
    assert view is not None
    delegate = view.itemDelegate()
    assert isinstance(delegate, MessageDelegate)
    base = view.palette().color(QPalette.ColorRole.Base).name()
    assert base == chosen.color(QPalette.ColorRole.Base).name()
    checked = 0
    for row in view.messages.rows:
        for span in delegate.layout(row, 400).formats():
            if span.format.hasProperty(span.format.Property.ForegroundBrush):
                shown = drawn(span.format.foreground().color(), base)
                assert colours.contrast(shown, base) >= 4.5, (row.plain, shown, base)
                checked += 1
    assert checked >= 2 * len(names)  # every time and every name at least

    people: QListWidget = window.people
    for index in range(people.count()):
        item = people.item(index)
        shown = drawn(item.foreground().color(), base)
        assert colours.contrast(shown, base) >= 4.5, (item.text(), shown, base)


@pytest.fixture(params=[LIGHT, DARK], ids=["light", "dark"])
def desktop(request: pytest.FixtureRequest, qtbot: QtBot) -> Iterator[QPalette]:
    """The program's palette, light or dark, as the desktop gives it."""
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    before = app.palette()
    app.setPalette(request.param)
    yield request.param
    app.setPalette(before)


def test_what_a_dialog_says_is_wrong_and_a_messages_size_read_at_aa_contrast(
    qtbot: QtBot, desktop: QPalette
) -> None:
    background = desktop.color(QPalette.ColorRole.Window).name()
    dialog = PasswordDialog("alice")
    qtbot.addWidget(dialog)
    composer = Composer()
    qtbot.addWidget(composer)
    composer.editor.setText("é" * 251)  # over the size limit: the size shows, in red
    assert composer.size_label.text() == "502/500 bytes: 2 too many"
    shades = composer.size_label.palette()
    red = colours.readable(colours.BAD, shades.color(QPalette.ColorRole.Window).name())
    assert shades.color(QPalette.ColorRole.WindowText).name() == red
    for label in (dialog.problem, composer.size_label):
        shown = label.palette().color(QPalette.ColorRole.WindowText).name()
        assert colours.contrast(shown, background) >= 4.5, (label.objectName(), shown)


def test_a_switch_between_light_and_dark_while_open_keeps_those_readable(
    qtbot: QtBot, desktop: QPalette
) -> None:
    """Their shade was worked out once, on the background they were made on: after the
    desktop went from one to the other, each read at 2.4:1."""
    dialog = PasswordDialog("alice")
    qtbot.addWidget(dialog)
    composer = Composer()
    qtbot.addWidget(composer)
    composer.editor.setText("é" * 251)
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    for switched in (DARK, LIGHT) if desktop is LIGHT else (LIGHT, DARK):
        app.setPalette(switched)
        app.processEvents()  # where the change reaches each widget
        background = switched.color(QPalette.ColorRole.Window).name()
        for label in (dialog.problem, composer.size_label):
            assert label.palette().color(QPalette.ColorRole.Window).name() == background
            shown = label.palette().color(QPalette.ColorRole.WindowText).name()
            assert colours.contrast(shown, background) >= 4.5, (label.objectName(), shown)


def test_the_people_list_is_shaded_again_when_the_desktop_switches(
    qtbot: QtBot, desktop: QPalette
) -> None:
    window = a_window(qtbot)
    window.set_online([*one_name_per_colour(), "alice"])
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    switched = DARK if desktop is LIGHT else LIGHT
    app.setPalette(switched)
    app.processEvents()
    base = switched.color(QPalette.ColorRole.Base).name()
    people: QListWidget = window.people
    assert people.palette().color(QPalette.ColorRole.Base).name() == base
    for index in range(people.count()):
        shown = drawn(people.item(index).foreground().color(), base)
        assert colours.contrast(shown, base) >= 4.5, (people.item(index).text(), shown, base)


Spoken = list[tuple[str, QAccessible.AnnouncementPoliteness]]


@pytest.fixture
def spoken(monkeypatch: pytest.MonkeyPatch) -> Spoken:
    """What the window announces to screen readers, in order (and how urgently)."""
    said: Spoken = []

    def heard(event: QAccessibleEvent) -> None:
        if isinstance(event, QAccessibleAnnouncementEvent):
            said.append((event.message(), event.politeness()))

    monkeypatch.setattr(QAccessible, "updateAccessibility", heard)
    monkeypatch.setattr(QAccessible, "isActive", lambda: True)  # a screen reader is on
    return said


def test_nothing_is_announced_without_a_screen_reader(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each message of a busy room would be an accessibility event for nobody."""
    events: list[QAccessibleEvent] = []
    monkeypatch.setattr(QAccessible, "updateAccessibility", events.append)
    monkeypatch.setattr(QAccessible, "isActive", lambda: False)
    widget = QWidget()
    qtbot.addWidget(widget)
    announce(widget, "alice: hi")
    monkeypatch.setattr(QAccessible, "isActive", lambda: True)
    announce(widget, "bob: hi")
    assert [event.message() for event in events] == ["bob: hi"]  # type: ignore[attr-defined]


POLITE = QAccessible.AnnouncementPoliteness.Polite
AT_ONCE = QAccessible.AnnouncementPoliteness.Assertive


def test_the_connection_going_and_coming_back_and_refusals_are_said_aloud(
    qtbot: QtBot, spoken: Spoken
) -> None:
    window = a_window(qtbot)
    window.set_link(Link.RECONNECTING, "no answer from the daemon.")
    window.set_link(Link.CONNECTED)
    assert spoken == [
        (
            "Lost the connection to 127.0.0.1:1600 (no answer from the daemon); trying "
            "again. What you send goes out when it is back.",
            POLITE,
        ),
        ("Connected to 127.0.0.1:1600 again.", POLITE),
    ]
    spoken.clear()
    line = window.add_pending("", "hello")
    window.settle_refused(line, "hello", "You are muted by the operator.")
    window.refuse_now("bob", "psst", "The message is too long.")
    assert spoken == [
        ("Not sent: You are muted by the operator.", AT_ONCE),
        ("Not sent: The message is too long.", AT_ONCE),
    ]
    spoken.clear()
    window.set_link(Link.LOST, "Your account was removed.")
    assert spoken == [
        ("The session has ended: Your account was removed.", AT_ONCE),
        ("Sign in again (Chat › Sign in again, Ctrl+R) to go on.", POLITE),
    ]
    # What is said aloud is what the room shows.
    room = window.model("")
    assert room is not None
    assert [row.plain.split("  ", 1)[1] for row in room.rows[-2:]] == [text for text, _ in spoken]


def accessible_name(widget: QWidget | None) -> str:
    """What a screen reader reads as the widget's name."""
    assert widget is not None
    interface = QAccessible.queryAccessibleInterface(widget)
    assert interface is not None
    return interface.text(QAccessible.Text.Name)


def description(widget: QWidget) -> str:
    """What a screen reader reads as the widget's description."""
    interface = QAccessible.queryAccessibleInterface(widget)
    assert interface is not None
    return interface.text(QAccessible.Text.Description)


def test_what_is_wrong_in_the_sign_in_dialog_is_said_at_the_field_to_fix(
    qtbot: QtBot, spoken: Spoken
) -> None:
    dialog = SignInDialog(memory.Remembered(name="bob"))
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    sentence = "Wrong password for 'bob'."
    dialog.show_problem(Problem(sentence, Field.PASSWORD))
    assert dialog.focusWidget() is dialog.password
    assert description(dialog.password) == sentence
    assert [description(dialog.field(field)) for field in Field].count("") == len(Field) - 1
    assert spoken == [(sentence, AT_ONCE)]

    # Told about another field, the first no longer speaks of it; changed, none does.
    dialog.show_problem(Problem("No account is called 'bob'.", Field.NAME))
    assert dialog.focusWidget() is dialog.name
    assert description(dialog.name) == "No account is called 'bob'."
    assert description(dialog.password) == ""
    QTest.keyClicks(dialog.name, "x")
    assert dialog.problem.isHidden()
    assert [description(dialog.field(field)) for field in Field] == [""] * len(Field)


def test_what_is_wrong_in_the_password_dialog_is_said_at_the_field_to_fix(
    qtbot: QtBot, spoken: Spoken
) -> None:
    dialog = PasswordDialog("alice")
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    QTest.keyClicks(dialog.current, "correct horse")
    QTest.keyClicks(dialog.new, "battery staple")
    QTest.keyClicks(dialog.repeat, "battery stapler")
    dialog.change.click()
    sentence = "The two new passwords differ; type them again."
    assert dialog.focusWidget() is dialog.repeat
    assert description(dialog.repeat) == sentence
    assert spoken == [(sentence, AT_ONCE)]
    dialog.refused("Wrong password for 'alice'.", wrong_current=True)
    assert dialog.focusWidget() is dialog.current
    assert description(dialog.current) == "Wrong password for 'alice'."
    assert description(dialog.repeat) == ""
    QTest.keyClicks(dialog.current, "!")
    assert [description(field) for field in (dialog.current, dialog.new, dialog.repeat)] == [""] * 3


@pytest.mark.parametrize("holder", ["message line", "send button", "people list"])
def test_when_the_session_ends_the_keyboard_is_left_in_the_conversation(
    qtbot: QtBot, holder: str
) -> None:
    """The message line, its Send button or the people list, whichever had the focus, is
    disabled: the conversation gets it (to read what happened), not nothing or the tab
    bar; signed in again, the message line has it back."""
    window = a_window(qtbot)
    window.set_online(["alice", "bob"])
    window.activateWindow()
    assert QTest.qWaitForWindowActive(window)
    holders = {
        "message line": window.composer.editor,
        "send button": window.composer.send_button,
        "people list": window.people,
    }
    holders[holder].setFocus()
    assert QApplication.focusWidget() is holders[holder]
    window.set_link(Link.LOST, "Your account was removed.")
    assert not window.composer.editor.isEnabled()
    view = window.view("")
    assert view is not None
    assert QApplication.focusWidget() is view
    QTest.keyClick(view, Qt.Key.Key_End)
    assert view.currentIndex().data() == view.messages.rows[-1].plain
    window.go_on(lambda: INFO)
    assert QApplication.focusWidget() is window.composer.editor


def close_about(window: RoomWindow, by_button: bool) -> None:
    window.about_action.trigger()
    about = window._about
    assert about is not None and about.isVisible()
    close = about.focusWidget()
    assert isinstance(close, QPushButton)
    if by_button:
        close.click()
    else:
        QTest.keyClick(close, Qt.Key.Key_Escape)


def change_password(window: RoomWindow, answer: str) -> None:
    window.password_action.trigger()
    dialog = window._password
    assert dialog is not None and dialog.isVisible()
    if answer == "cancelled":
        QTest.keyClick(dialog.current, Qt.Key.Key_Escape)
        return
    dialog.current.setText("correct horse")
    dialog.new.setText("battery staple")
    dialog.repeat.setText("battery staple")
    dialog.change.click()
    if answer == "changed":
        window.password_changed()
    else:
        window.password_unsure("The answer was lost: the password may be changed.")


def leave_cancelled(window: RoomWindow) -> None:
    window.composer.editor.setText("half a thought")
    window.close()  # asked first: the line typed would be lost
    box = window._leave_box
    assert box is not None and box.isVisible()
    box.button(QMessageBox.StandardButton.Cancel).click()
    assert window.isVisible() and window._leave_box is None


CLOSINGS = {
    "about, Escape": lambda window: close_about(window, by_button=False),
    "about, its Close button": lambda window: close_about(window, by_button=True),
    "change password, cancelled": lambda window: change_password(window, "cancelled"),
    "change password, done": lambda window: change_password(window, "changed"),
    "change password, answer lost": lambda window: change_password(window, "unsure"),
    "leave anyway?, cancelled": leave_cancelled,
}


@pytest.mark.parametrize("closing", list(CLOSINGS))
@pytest.mark.parametrize("where", ["message line", "conversation", "people"])
def test_the_keyboard_is_back_where_it_was_once_a_dialog_closes(
    qtbot: QtBot, closing: str, where: str
) -> None:
    """Closed however it is, About, Change password and the question on leaving give the
    keyboard back to what had it: the message line, the private conversation being read,
    or the people online (as desktop programs do), in the tab that was in front."""
    window = a_window(qtbot)
    window.activateWindow()
    assert QTest.qWaitForWindowActive(window)
    window.set_online(["alice", "bob"])
    key = window.open_conversation("bob")
    view = window.view(key)
    assert view is not None
    had = {"message line": window.composer.editor, "conversation": view, "people": window.people}
    had[where].setFocus()
    assert window.focusWidget() is had[where]
    CLOSINGS[closing](window)
    qtbot.waitUntil(lambda: window._about is None and window._password is None)
    assert window.focusWidget() is had[where]
    assert window.current_key == key


def test_about_this_server_can_be_read_and_copied_from_the_keyboard(qtbot: QtBot) -> None:
    about = AboutDialog(INFO, "Connected to 127.0.0.1:1600 as alice")
    qtbot.addWidget(about)
    about.show()
    about.activateWindow()
    assert QTest.qWaitForWindowActive(about)
    close = about.focusWidget()
    assert isinstance(close, QPushButton) and close.text() == "Close"
    # Tab goes through every value, named with what it is, and back to Close.
    reached: list[str] = []
    for _step in range(6):
        focused = QApplication.focusWidget()
        assert focused is not None
        QTest.keyClick(focused, Qt.Key.Key_Tab)
        if QApplication.focusWidget() is close:
            break
        reached.append(accessible_name(QApplication.focusWidget()))
    assert reached == [
        "Host: 127.0.0.1",
        "Port: 1600",
        "Your name: alice",
        "Connection: Connected to 127.0.0.1:1600 as alice",
        "Key fingerprint: SHA256:x",
    ]
    fingerprint = about.findChild(QLabel, "fingerprint")
    assert fingerprint is not None
    fingerprint.setFocus()
    QTest.keyClick(fingerprint, Qt.Key.Key_Home)
    QTest.keyClick(fingerprint, Qt.Key.Key_End, Qt.KeyboardModifier.ShiftModifier)
    assert fingerprint.selectedText() == "SHA256:x"
    QTest.keyClick(fingerprint, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.clipboard().text() == "SHA256:x"
    QTest.keyClick(fingerprint, Qt.Key.Key_Return)  # Enter closes it, from a value too
    assert about.isHidden()


def test_what_others_say_is_said_aloud_with_where_when_it_is_elsewhere(
    qtbot: QtBot, spoken: Spoken
) -> None:
    window = a_window(qtbot)
    window.show_message(PublicMessage(1, NOW, "bob", "hello <b>all</b>\x07"))
    window.show_message(PublicMessage(2, NOW, "alice", "my own line"))
    window.show_message(PrivateMessage(3, NOW, "carol", "alice", "psst"))
    window.show_message(PublicMessage(1, NOW, "bob", "hello <b>all</b>\x07"))  # twice: once
    assert spoken == [
        ("bob: hello <b>all</b>\\x07", POLITE),  # as shown: escaped, never obeyed
        ("Privately, carol: psst", POLITE),
    ]
    spoken.clear()
    window.open_conversation("carol")
    window.show_message(PrivateMessage(4, NOW, "carol", "alice", "here?"))
    window.show_message(PublicMessage(5, NOW, "bob", "meanwhile"))
    assert spoken == [("carol: here?", POLITE), ("In the room, bob: meanwhile", POLITE)]
    # The latest messages on entering, or older ones read above, are not news.
    spoken.clear()
    window.show_history(History((PublicMessage(6, NOW, "bob", "old"),), more=True))
    window.show_older([PublicMessage(0, NOW, "bob", "older")], "")
    assert spoken == []
    room = window.model("")
    assert room is not None
    assert [row.plain.split("  ", 1)[1] for row in room.rows if row.kind is Kind.MESSAGE] == [
        "bob: older",
        "bob: hello <b>all</b>\\x07",
        "alice: my own line",
        "bob: meanwhile",
        "bob: old",
    ]


def test_what_was_missed_while_away_is_said_aloud_once_back(qtbot: QtBot, spoken: Spoken) -> None:
    """Coming back, the window tells how much came meanwhile and where; a screen reader's
    user hears it as the others do, not each message (older news) one by one."""
    window = a_window(qtbot)
    window.show_history(History((PublicMessage(1, NOW, "bob", "old"),), more=False))
    missed = (
        PublicMessage(2, NOW, "bob", "while away"),
        PublicMessage(3, NOW, "carol", "and this"),
        PrivateMessage(4, NOW, "carol", "alice", "psst"),
    )
    spoken.clear()
    window.show_history(History(missed, more=False, resumed=True))
    window.show_history(History(missed[:1], more=False, resumed=True))  # nothing new
    assert spoken == [
        ("2 messages were missed while away; they are in their places above.", POLITE),
        ("1 private message came meanwhile, in its tab.", POLITE),
        ("No message was missed meanwhile.", POLITE),
    ]
    room = window.model("")
    assert room is not None
    assert [row.plain.split("  ", 1)[1] for row in room.rows[-3:]] == [t for t, _ in spoken]


def test_the_people_list_is_named_with_whether_they_are_there_or_were(qtbot: QtBot) -> None:
    window = a_window(qtbot)
    window.set_online(["alice", "bob"])
    assert accessible_name(window.people) == "People online (2)"
    window.set_link(Link.RECONNECTING, "no answer")
    assert window.people_label.text() == "Last known online (2)"
    assert accessible_name(window.people) == "People last known online (2)"
    window.set_link(Link.CONNECTED)
    window.set_online(["alice", "bob", "carol"])
    assert accessible_name(window.people) == "People online (3)"


def test_a_line_too_long_to_send_says_so_aloud_when_enter_does_not_send_it(
    qtbot: QtBot, spoken: Spoken
) -> None:
    composer = Composer()
    qtbot.addWidget(composer)
    sent: list[str] = []
    composer.submitted.connect(sent.append)
    composer.editor.setText("é" * 250 + "!")
    QTest.keyClick(composer.editor, Qt.Key.Key_Return)
    assert sent == [] and composer.editor.text() == "é" * 250 + "!"
    assert spoken == [("Too long to send: 501/500 bytes: 1 too many.", AT_ONCE)]
    QTest.keyClick(composer.editor, Qt.Key.Key_Backspace)
    QTest.keyClick(composer.editor, Qt.Key.Key_Return)
    assert sent == ["é" * 250] and len(spoken) == 1


def tab_stops(window: RoomWindow) -> list[QWidget]:
    """Where Tab goes from the message line, until it is back there."""
    stops: list[QWidget] = []
    for _step in range(10):
        focused = QApplication.focusWidget()
        assert focused is not None
        QTest.keyClick(focused, Qt.Key.Key_Tab)
        focused = QApplication.focusWidget()
        assert focused is not None
        if focused is window.composer.editor:
            return stops
        stops.append(focused)
    raise AssertionError("Tab never came back to the message line")


def test_ctrl_page_down_and_up_go_round_the_conversations(qtbot: QtBot) -> None:
    """Ctrl+PgDown from the last tab goes on to the first, and Ctrl+PgUp from the first to
    the last, as browsers' tabs do: from the keyboard, every conversation is a key away."""
    window = a_window(qtbot)
    window.activateWindow()
    assert QTest.qWaitForWindowActive(window)
    window.open_conversation("bob")
    window.open_conversation("carol")
    editor = window.composer.editor
    assert window.current_key == "carol" and editor.hasFocus()
    QTest.keyClick(editor, Qt.Key.Key_PageDown, Qt.KeyboardModifier.ControlModifier)
    assert window.current_key == ""
    QTest.keyClick(editor, Qt.Key.Key_PageUp, Qt.KeyboardModifier.ControlModifier)
    assert window.current_key == "carol"
    QTest.keyClick(editor, Qt.Key.Key_PageUp, Qt.KeyboardModifier.ControlModifier)
    assert window.current_key == "bob"


def test_the_connection_dot_is_green_amber_or_red_as_the_connection_goes(qtbot: QtBot) -> None:
    """The dot by the status line: green connected, amber reconnecting, red lost; its name
    says the same to a screen reader."""
    window = a_window(qtbot)
    dot = window.status_dot
    for link, colour in (
        (Link.RECONNECTING, colours.WAITING),
        (Link.CONNECTED, colours.GOOD),
        (Link.LOST, colours.BAD),
    ):
        window.set_link(link)
        assert dot.palette().color(QPalette.ColorRole.WindowText) == QColor(colour)
        assert dot.accessibleName() == link.value


def test_tab_goes_from_the_message_line_to_send_the_tabs_their_conversation_and_the_people(
    qtbot: QtBot,
) -> None:
    window = a_window(qtbot)
    window.activateWindow()
    assert QTest.qWaitForWindowActive(window)
    window.set_online(["alice", "bob"])
    window.composer.editor.setFocus()
    bar, send = window.tabs.tabBar(), window.composer.send_button
    assert tab_stops(window) == [send, bar, window.view(""), window.people]
    window.open_conversation("bob")  # a conversation opened later takes its place too
    assert QApplication.focusWidget() is window.composer.editor
    assert tab_stops(window) == [send, bar, window.view("bob"), window.people]


def test_tab_in_the_message_line_completes_a_name_or_a_command_else_moves_on(
    qtbot: QtBot, spoken: Spoken
) -> None:
    """As at the terminal's prompt: Tab completes the name a private line goes to, a name
    in a message, a command's word; where several fit it says which; where there is
    nothing to complete, it goes on to the next part of the window, as everywhere."""
    window = a_window(qtbot)
    window.activateWindow()
    assert QTest.qWaitForWindowActive(window)
    window.set_online(["alice", "bob"])
    window.show_message(PublicMessage(1, NOW, "Zoë", "hi"))
    editor = window.composer.editor
    editor.setFocus()
    for typed, completed in (("s/b", "s/bob/"), ("hi 😀 zo", "hi 😀 Zoë "), ("/hi", "/history ")):
        editor.setText(typed + "!")  # the cursor before what follows it (Qt counts UTF-16)
        editor.setCursorPosition(len(typed.encode("utf-16-le")) // 2)
        QTest.keyClick(editor, Qt.Key.Key_Tab)
        assert editor.text() == completed + "!" and QApplication.focusWidget() is editor
        assert editor.cursorPosition() == len(completed.encode("utf-16-le")) // 2
    editor.setText("s/b/hi")  # what it ends with, already there, is not put in twice
    editor.setCursorPosition(3)
    QTest.keyClick(editor, Qt.Key.Key_Tab)
    assert editor.text() == "s/bob/hi" and editor.cursorPosition() == len("s/bob/")
    editor.setText("/h")
    QTest.keyClick(editor, Qt.Key.Key_Tab)
    assert editor.text() == "/h" and QApplication.focusWidget() is editor
    assert spoken[-1] == ("Choices: /help, /history.", POLITE)
    editor.setText("hello")
    QTest.keyClick(editor, Qt.Key.Key_Tab)
    assert editor.text() == "hello" and QApplication.focusWidget() is window.composer.send_button
