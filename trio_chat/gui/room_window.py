"""The room's window: a tab per conversation (the room, and one per person you talk with in
private), who is online, where you type, and the state of the connection.

The window shows and collects; the Trio side (`session`) calls its methods with what
happens and listens to its signals: `line_entered` (a typed line, and the person whose
tab it was typed in, or "" in the room), `older_wanted` (a conversation's key),
`sign_in_again` (once the session has ended) and `closed`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QColor, QKeyEvent, QKeySequence, QPalette
from PySide6.QtWidgets import (
    QAbstractSlider,
    QApplication,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QTabBar,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .. import commands
from ..completion import NamesMet
from ..display import counted, safe, safe_name, same_name
from ..events import ChatMessage, History, Joined, Left, PrivateMessage
from ..rules import name_key
from . import rows
from .about_dialog import AboutDialog
from .colours import readable, sender_colour
from .composer import Composer
from .conversations import ROOM, ROOM_LABEL, conversation_of
from .elided_label import ElidedLabel
from .message_view import MessageModel, MessageView
from .password_dialog import PasswordDialog
from .people import Online
from .server_info import ServerInfo
from .speech import announce
from .status import COLOUR, Link, status_text
from .unread import Unread, tab_label, window_title

BEGINNING = "This is the beginning of the room: there are no older messages."
ENDED_HINT = "The session has ended: sign in again (Ctrl+R) to go on"
GONE_HINT = "This account is removed: sign in with another (Ctrl+R) to go on"
MUTED_HINT = "Muted by the operator: you can read the room, and say nothing until unmuted"
ROOM_HINT = "Message the room (/help lists the commands)"


def _now() -> datetime:
    return datetime.now(UTC)


def _private_beginning(name: str) -> rows.Row:
    return rows.info_row(f"Only you and {safe_name(name)} see this conversation.")


@dataclass
class Conversation:
    key: str
    """`ROOM`, or the other person's `name_key`."""
    name: str
    """The other person's name as the daemon spells it (`ROOM_LABEL` for the room)."""
    model: MessageModel
    view: MessageView | None = None
    """Its tab's view, while the tab is open."""
    confirmed: bool = False
    """`name` is spelled as the daemon spells it (not as someone typed it)."""


@dataclass(frozen=True, slots=True)
class Pending:
    """A line on its way, to settle once the daemon answers."""

    key: str
    token: int


class RoomWindow(QMainWindow):
    line_entered = Signal(str, str)
    older_wanted = Signal(str)
    sign_in_again = Signal()
    password_wanted = Signal(str, str)
    """Change the password: `(old, new)`; answered by `password_changed` or
    `password_refused`."""
    closed = Signal(bool)
    """The person closed the window: to log out (False), or to leave at once (True: closed
    again while logging out, or told lines that wait would be lost)."""

    def __init__(
        self,
        me: str,
        info: Callable[[], ServerInfo],
        notices: Sequence[str] = (),
        parent: QWidget | None = None,
    ) -> None:
        """`notices` are said in the room once you are in it (after the latest messages)."""
        super().__init__(parent)
        self.me = me
        self._info = info
        self._notices = list(notices)
        self.unread = Unread()
        self.online = Online()
        self.names_met = NamesMet()
        """Who was in the room or wrote or was written to: what Tab completes."""
        self.link = Link.CONNECTED
        self._account_gone = False
        """The session ended as the operator removed the account (`set_link`)."""
        self.muted = False
        """The daemon's operator muted this account (as its latest notice about it said)."""
        self._leave_box: QMessageBox | None = None
        self._leaving_anyway = False
        """Told that lines waiting for the daemon would be lost, the person chose Leave."""
        self._reason = ""
        self._pending: set[Pending] = set()
        self._conversations: dict[str, Conversation] = {}
        self._about: AboutDialog | None = None
        self._password: PasswordDialog | None = None
        self._older_left = False
        """Older messages may remain to load (private ones may, whatever the room has)."""

        self.tabs = QTabWidget(self)
        self.tabs.setObjectName("conversations")
        self.tabs.setDocumentMode(True)
        self.tabs.setTabsClosable(True)
        self.tabs.setMovable(True)
        self.tabs.tabCloseRequested.connect(self._close_tab)
        self.tabs.currentChanged.connect(self._tab_changed)

        self.composer = Composer(self)
        self.composer.submitted.connect(self._submitted)
        self.composer.editor.names = lambda: self.names_met.names(self.me)
        self.composer.editor.scroll_wanted.connect(self._scroll)

        self.people_label = QLabel(self)
        self.people_label.setTextFormat(Qt.TextFormat.PlainText)
        heading = self.people_label.font()
        heading.setBold(True)
        self.people_label.setFont(heading)
        self.people = QListWidget(self)
        self.people.setObjectName("people")
        self.people.setAccessibleName("People online")
        self.people.setToolTip("Double-click a name, or press Enter on it, to talk in private")
        self.people.itemActivated.connect(self._person_chosen)
        self.people_label.setBuddy(self.people)

        talk = QWidget(self)
        talk_layout = QVBoxLayout(talk)
        talk_layout.setContentsMargins(0, 0, 0, 0)
        talk_layout.setSpacing(6)
        talk_layout.addWidget(self.tabs, 1)
        talk_layout.addWidget(self.composer)
        side = QWidget(self)
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(4, 0, 0, 0)
        side_layout.addWidget(self.people_label)
        side_layout.addWidget(self.people, 1)
        splitter = QSplitter(self)
        splitter.addWidget(talk)
        splitter.addWidget(side)
        # Both give way as the window narrows, the conversation four times as much room.
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 1)
        splitter.setCollapsible(0, False)
        splitter.setSizes([640, 180])
        self.splitter = splitter
        central = QWidget(self)
        central_layout = QVBoxLayout(central)
        central_layout.setContentsMargins(6, 6, 6, 4)
        central_layout.addWidget(splitter)
        self.setCentralWidget(central)

        self.status_dot = QLabel("●", self)
        self.status_dot.setObjectName("status-dot")
        self.status = ElidedLabel(self)
        self.status.setObjectName("status")
        self.statusBar().addWidget(self.status_dot)
        self.statusBar().addWidget(self.status, 1)
        self.statusBar().setSizeGripEnabled(False)

        self._make_menus()
        room = self._conversation(ROOM, ROOM_LABEL)
        self._open_tab(room)
        self.tabs.tabBar().setTabButton(0, QTabBar.ButtonPosition.RightSide, None)
        self.tabs.tabBar().setTabButton(0, QTabBar.ButtonPosition.LeftSide, None)
        QWidget.setTabOrder(self.composer.editor, self.composer.send_button)
        QWidget.setTabOrder(self.composer.send_button, self.tabs)
        QWidget.setTabOrder(self.tabs, self.people)
        self._show_people()
        self._show_link()
        self._show_title()
        self.resize(860, 560)
        self.composer.setFocus()

    @property
    def server_info(self) -> ServerInfo:
        """The daemon and the account of the session the window shows (or showed)."""
        return self._info()

    def go_on(self, info: Callable[[], ServerInfo], notices: Sequence[str] = ()) -> None:
        """Signed in again, as the same person on the same daemon, once the session had
        ended: the window is the new session's, its conversations, unread counts, the line
        being typed and the lines kept for Up as they were. `info` reads the new session."""
        self._info = info
        self._notices = list(notices)
        self._leaving_anyway = False
        self.link, self._reason = Link.CONNECTED, ""
        self._account_gone = False
        self.muted = False  # until the new session's notice says it is
        for conversation in self._conversations.values():
            # Older messages asked for while nobody was there to answer: asked again.
            conversation.model.loading = False
        self.note(f"Signed in again to {info().where}.")
        self.composer.setEnabled(True)
        self.sign_in_again_action.setEnabled(False)
        self.password_action.setEnabled(True)
        self.people.setEnabled(True)
        self._show_name(self._conversations[self.current_key])
        self._show_people()
        self._show_link()
        self._show_title()
        self.composer.setFocus()

    # --- menus and keys --------------------------------------------------------------------

    def _action(self, text: str, keys: str | QKeySequence, slot: Callable[[], object]) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(keys))
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _make_menus(self) -> None:
        chat = self.menuBar().addMenu("&Chat")
        self.about_action = self._action("&About this server…", "Ctrl+I", self.show_about)
        self.sign_in_again_action = self._action(
            "&Sign in again…", "Ctrl+R", lambda: self.sign_in_again.emit()
        )
        self.sign_in_again_action.setEnabled(False)
        self.password_action = self._action("Change &password…", "", self.ask_password)
        self.close_tab_action = self._action(
            "&Close private conversation", "Ctrl+W", self.close_current_tab
        )
        self.quit_action = self._action("&Quit", "Ctrl+Q", self.close)
        chat.addAction(self.about_action)
        chat.addAction(self.password_action)
        chat.addAction(self.sign_in_again_action)
        chat.addAction(self.close_tab_action)
        chat.addSeparator()
        chat.addAction(self.quit_action)
        go = self.menuBar().addMenu("&Go")
        go.addAction(self._action("&Next conversation", "Ctrl+PgDown", lambda: self._step(1)))
        go.addAction(self._action("&Previous conversation", "Ctrl+PgUp", lambda: self._step(-1)))
        go.addAction(self._action("&Message line", "Ctrl+L", self.composer.setFocus))
        go.addAction(self._action("People &online", "Ctrl+O", self.people.setFocus))
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(self._action("&Commands", "F1", self._show_commands))
        for menu in (chat, go, help_menu):
            menu.aboutToHide.connect(lambda: QTimer.singleShot(0, self._menus_closed))

    def _menus_closed(self) -> None:
        """A menu closed with Escape leaves Qt's menu bar holding the keyboard, taking the
        letters typed next for menus' names: `s/carol/psst` lost `s/ca` and went to the
        room. With no menu open any more, the keys go back to what had them before the
        menu (Escape to the bar, as Qt's own way out of it): the message line, or the
        people online being read; to the message line if nothing had them."""
        bar = self.menuBar()
        if QApplication.activePopupWidget() is None and bar.hasFocus():
            escape = QKeyEvent(
                QEvent.Type.KeyPress, Qt.Key.Key_Escape, Qt.KeyboardModifier.NoModifier
            )
            QApplication.sendEvent(bar, escape)
            if bar.hasFocus():
                bar.setActiveAction(None)  # type: ignore[arg-type]
                self.composer.editor.setFocus(Qt.FocusReason.OtherFocusReason)

    def _step(self, by: int) -> None:
        count = self.tabs.count()
        self.tabs.setCurrentIndex((self.tabs.currentIndex() + by) % count)

    def _show_commands(self) -> None:
        self.show_info(self.current_key, commands.WINDOW_HELP.splitlines())

    def show_about(self) -> None:
        if self._about is not None:
            self._about.close()
        waiting = len(self._pending)
        info = self._info()
        status = status_text(self.link, info.where, self.me, waiting, muted=self.muted)
        about = AboutDialog(info, status, self)
        about.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        about.destroyed.connect(self._about_gone)
        self._about = about
        about.show()

    def _about_gone(self) -> None:
        self._about = None

    def ask_password(self) -> None:
        """Open the "Change password" dialog (or bring it back to the front)."""
        if self._password is None:
            dialog = PasswordDialog(self.me, self)
            dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            dialog.wanted.connect(self.password_wanted)
            dialog.destroyed.connect(self._password_gone)
            self._password = dialog
        self._password.show()
        self._password.raise_()
        self._password.activateWindow()

    def _password_gone(self) -> None:
        self._password = None

    def password_changed(self) -> None:
        if self._password is not None:
            self._password.accept()
        self.note("Your password is changed; your other sessions have ended.", aloud=True)

    def password_unsure(self, message: str) -> None:
        """The answer was lost: the change may have been made. Said in the room, the
        dialog closed (asked again, the old password might be the wrong one)."""
        if self._password is not None:
            self._password.reject()
        self.note(message, aloud=True)

    def password_refused(self, message: str, wrong_current: bool) -> None:
        if self._password is not None:
            self._password.refused(message, wrong_current)
        else:
            self.note(f"The password was not changed: {message}", aloud=True)

    # --- conversations and tabs ------------------------------------------------------------

    def _conversation(self, key: str, name: str, *, confirmed: bool = True) -> Conversation:
        """The conversation `key` (made if new). `name` is the other person's name as the
        daemon spells it, if `confirmed`, else as typed: it replaces a typed spelling."""
        conversation = self._conversations.get(key)
        if conversation is None:
            conversation = Conversation(key, name, MessageModel(self), confirmed=confirmed)
            room = self._conversations.get(ROOM)
            if room is not None:
                conversation.model.more = self._older_left
                conversation.model.show_beginning(_private_beginning(name))
            self._conversations[key] = conversation
        elif key != ROOM and name != conversation.name and not conversation.confirmed:
            conversation.name, conversation.confirmed = name, confirmed
            conversation.model.renew_beginning(_private_beginning(name))
            self._show_tab_label(conversation)
            self._show_name(conversation)
        elif confirmed and not conversation.confirmed:
            conversation.confirmed = True
        return conversation

    def conversation(self, key: str) -> Conversation | None:
        return self._conversations.get(key)

    def model(self, key: str) -> MessageModel | None:
        conversation = self._conversations.get(key)
        return None if conversation is None else conversation.model

    def view(self, key: str) -> MessageView | None:
        conversation = self._conversations.get(key)
        return None if conversation is None else conversation.view

    def _scroll(self, action: QAbstractSlider.SliderAction) -> None:
        """Scroll the conversation in front from the message line (Page Up, Ctrl+End...)."""
        view = self.view(self.current_key)
        if view is None:
            return
        if action is QAbstractSlider.SliderAction.SliderToMaximum:
            view.scroll_to_end()  # and the "new below" button goes
        else:
            view.verticalScrollBar().triggerAction(action)

    def _open_tab(self, conversation: Conversation) -> int:
        if conversation.view is not None:
            return self.tabs.indexOf(conversation.view)
        view = MessageView(conversation.model, conversation.key or "room", self)
        key = conversation.key
        view.older_wanted.connect(lambda: self.older_wanted.emit(key))
        conversation.view = view
        index = self.tabs.addTab(view, "")
        # Tab goes from the tabs to the conversation they show, then to the people online:
        # a view made later would otherwise come last, after the people.
        QWidget.setTabOrder(self.tabs.tabBar(), view)
        self._show_tab_label(conversation)
        self._show_name(conversation)
        return index

    def _tab_key(self, index: int) -> str | None:
        widget = self.tabs.widget(index)
        for conversation in self._conversations.values():
            if conversation.view is not None and conversation.view is widget:
                return conversation.key
        return None

    @property
    def current_key(self) -> str:
        return self._tab_key(self.tabs.currentIndex()) or ROOM

    def open_conversation(self, name: str, *, focus: bool = True) -> str:
        """Open (or find) the tab for talking with `name` in private; return its key."""
        key = name_key(name)
        conversation = self._conversation(key, name, confirmed=False)
        index = self._open_tab(conversation)
        if focus:
            self.tabs.setCurrentIndex(index)
            self.composer.setFocus()
        return key

    def close_current_tab(self) -> None:
        self._close_tab(self.tabs.currentIndex())

    def _close_tab(self, index: int) -> None:
        key = self._tab_key(index)
        if key is None or key == ROOM:
            return
        conversation = self._conversations[key]
        view = conversation.view
        conversation.view = None
        self.tabs.removeTab(index)
        if view is not None:
            view.deleteLater()
        self.unread.forget(key)
        self._show_title()

    def _tab_changed(self, index: int) -> None:
        key = self._tab_key(index)
        if key is None:
            return
        self.unread.show(key)
        conversation = self._conversations[key]
        self._show_tab_label(conversation)
        self._show_title()
        self._show_name(conversation)

    def _show_name(self, conversation: Conversation) -> None:
        """Name the conversation's view, and the message line's hint while it is on screen."""
        room = conversation.key == ROOM
        name = safe_name(conversation.name)
        if conversation.view is not None:
            private = f"Private conversation with {name}"
            conversation.view.setAccessibleName(ROOM_LABEL if room else private)
        if conversation.key == self.current_key:
            self.composer.editor.setPlaceholderText(
                (GONE_HINT if self._account_gone else ENDED_HINT)
                if self.link is Link.LOST
                else MUTED_HINT
                if self.muted
                else ROOM_HINT
                if room
                else f"Message {name} privately"
            )

    def _show_tab_label(self, conversation: Conversation) -> None:
        if conversation.view is None:
            return
        index = self.tabs.indexOf(conversation.view)
        name = ROOM_LABEL if conversation.key == ROOM else safe_name(conversation.name)
        self.tabs.setTabText(index, tab_label(name, self.unread.count(conversation.key)))

    def tab_text(self, key: str) -> str | None:
        conversation = self._conversations.get(key)
        if conversation is None or conversation.view is None:
            return None
        return self.tabs.tabText(self.tabs.indexOf(conversation.view))

    def _show_title(self) -> None:
        self.setWindowTitle(
            window_title(safe_name(self.me), self._info().where, self.unread.unseen)
        )

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.ActivationChange:
            self.unread.activate(self.isActiveWindow())
            if self.isActiveWindow():
                self.unread.show(self.current_key)
                current = self._conversations.get(self.current_key)
                if current is not None:
                    self._show_tab_label(current)
            self._show_title()
        elif event.type() == QEvent.Type.PaletteChange:
            self._show_people()  # each name's shade is the new background's
        super().changeEvent(event)

    # --- typing ----------------------------------------------------------------------------

    def _submitted(self, line: str) -> None:
        conversation = self._conversations[self.current_key]
        person = "" if conversation.key == ROOM else conversation.name
        self.line_entered.emit(line, person)

    def add_pending(self, person: str, text: str) -> Pending:
        """Show a line you sent, at the bottom of its conversation, until the daemon answers."""
        conversation = (
            self._conversations[ROOM]
            if not person
            else self._conversation(name_key(person), person, confirmed=False)
        )
        token = conversation.model.add_pending(rows.pending_row(text, self.me))
        pending = Pending(conversation.key, token)
        self._pending.add(pending)
        if conversation.view is not None:
            conversation.view.scroll_to_end()
        self._show_link()
        return pending

    def settle_sent(self, pending: Pending, message: ChatMessage) -> None:
        """The daemon stored the line: it gives way to the message as the room sees it."""
        self._pending.discard(pending)
        conversation = self._conversations[pending.key]
        conversation.model.settle(pending.token, rows.message_row(message, self.me))
        if pending.key != ROOM:
            self._conversation(pending.key, conversation_of(message, self.me)[1])
        if conversation.view is not None:
            conversation.view.scroll_to_end()
        self._show_link()

    def settle_refused(
        self, pending: Pending, text: str, reason: str, *, no_such_person: bool = False
    ) -> None:
        """The line was refused, or could not be sent: say so where it was.

        A private line to a name that no account has (`no_such_person`) takes its tab
        with it once no line to that name waits (see `_forget`): a mistyped name leaves
        no conversation behind with someone who does not exist.
        """
        self._pending.discard(pending)
        conversation = self._conversations[pending.key]
        to = None if pending.key == ROOM else conversation.name
        row = rows.refused_row(text, self.me, reason, _now(), to)
        conversation.model.settle(pending.token, row)
        self._say_refused(reason)
        if no_such_person:
            self._forget(conversation)
        self._show_link()

    def _say_refused(self, reason: str) -> None:
        """A refusal is shown in red where the line was: said aloud too, at once."""
        announce(self, f"Not sent: {safe(reason).rstrip('.')}.", urgent=True)

    def _forget(self, conversation: Conversation) -> bool:
        """Close and forget a private conversation with a name no account has, unless a
        message was ever shown in it or lines to it still wait; True if it is gone.

        What was refused in it (yours, and only that can be there) is told in the room,
        which comes to the front if the conversation was on screen.
        """
        key = conversation.key
        if key == ROOM or conversation.confirmed or any(p.key == key for p in self._pending):
            return False
        on_screen = key == self.current_key
        room = self._conversations[ROOM]
        for row in conversation.model.rows:
            if row.mine:
                room.model.add_note(row)
        if conversation.view is not None:
            self._close_tab(self.tabs.indexOf(conversation.view))
        del self._conversations[key]
        if on_screen and room.view is not None:
            self.tabs.setCurrentWidget(room.view)
            room.view.scroll_to_end()
        return True

    def refuse_now(
        self, person: str, text: str, reason: str, *, no_such_person: bool = False
    ) -> None:
        """A line refused before it was sent (too long, the session is over, a name no
        account can have: see `settle_refused`)."""
        key = ROOM if not person else name_key(person)
        conversation = self._conversation(key, person or ROOM_LABEL, confirmed=False)
        to = person or None
        conversation.model.add_note(rows.refused_row(text, self.me, reason, _now(), to))
        self._say_refused(reason)
        if no_such_person:
            self._forget(conversation)

    @property
    def waiting(self) -> int:
        """Lines sent that the daemon has not answered yet."""
        return len(self._pending)

    # --- what happens in the room ----------------------------------------------------------

    def _add(self, message: ChatMessage, *, counts: bool, opens: bool = True) -> bool:
        """Show a message in its conversation; True if it is new there. A private one opens
        its tab if `opens`; one from someone else counts as unread if `counts`."""
        key, name = conversation_of(message, self.me)
        conversation = self._conversation(key, name)
        if not conversation.model.add_message(rows.message_row(message, self.me)):
            return False
        self.names_met.meet_in(message)
        if key != ROOM and opens and conversation.view is None:
            self._open_tab(conversation)
        if counts and not same_name(message.sender, self.me):
            self.unread.arrived(key)
            self._show_tab_label(conversation)
            self._show_title()
        return True

    def show_message(self, message: ChatMessage) -> None:
        """A message that just arrived; someone else's is said aloud to screen readers
        (politely: after what they are saying), as a chat program's are."""
        if self._add(message, counts=True) and not same_name(message.sender, self.me):
            said = f"{safe_name(message.sender)}: {safe(message.text)}"
            key = conversation_of(message, self.me)[0]
            if key != self.current_key:  # not where the person is: say where it is
                where = "In the room" if key == ROOM else "Privately"
                said = f"{where}, {said}"
            announce(self, said)

    def show_history(self, event: History) -> None:
        """The messages sent on entering, or those missed while reconnecting (what was
        missed is said aloud too: the messages themselves are not, being older news)."""
        room = self._conversations[ROOM].model
        if event.resumed:
            fresh = [message for message in event.messages if self._add(message, counts=True)]
            private = sum(1 for message in fresh if isinstance(message, PrivateMessage))
            count = len(fresh) - private  # the room's, shown in it
            if count:
                missed = f"{count} messages were" if count > 1 else "1 message was"
                if event.more:  # the daemon sent only the newest of them
                    latest = f"the latest {count} are" if count > 1 else "the latest is"
                    self.note(f"More than {missed} missed while away; {latest} above.", aloud=True)
                else:
                    where = "they are in their places" if count > 1 else "it is in its place"
                    self.note(f"{missed} missed while away; {where} above.", aloud=True)
            if private:
                where = "their tabs" if private > 1 else "its tab"
                self.note(
                    f"{counted(private, 'private message')} came meanwhile, in {where}.", aloud=True
                )
            if not fresh:
                self.note("No message was missed meanwhile.", aloud=True)
            return
        for message in event.messages:
            # Private messages that waited for you are news; the room's latest are not.
            self._add(message, counts=isinstance(message, PrivateMessage))
        # The daemon's `more` counts public messages only: a private conversation may
        # have older messages whatever it says, and the pages tell.
        self._older_left = True
        for conversation in self._conversations.values():
            conversation.model.more = event.more if conversation.key == ROOM else True
        if not event.more:
            room.show_beginning(rows.info_row(BEGINNING))
        self.note(f"You are in the room as {self.me}.")
        for notice in self._notices:
            self.note(notice)
        self._notices.clear()

    def show_older(self, messages: Iterable[ChatMessage], asked: str) -> int:
        """A page of older messages; return how many are new in the conversation `asked`."""
        added = 0
        for message in messages:
            new = self._add(message, counts=False, opens=False)
            if new and conversation_of(message, self.me)[0] == asked:
                added += 1
        return added

    def older_done(self, more: bool) -> None:
        """Loading older messages is over for now; `more` says whether older ones remain."""
        room = self._conversations[ROOM].model
        had_more = room.more
        self._older_left = more
        for conversation in self._conversations.values():
            # The room has all its messages once the daemon said so on entering.
            conversation.model.more = more and (conversation.key != ROOM or had_more)
            conversation.model.loading = False
        if had_more and not more:
            room.show_beginning(rows.info_row(BEGINNING))

    def note(
        self,
        text: str,
        key: str = ROOM,
        style: rows.Style = rows.Style.NOTE,
        *,
        aloud: bool = False,
    ) -> None:
        """Say something in a conversation; if `aloud`, to screen readers too (at once, if
        it is an error), wherever the focus is: the connection, the daemon's notices."""
        conversation = self._conversations.get(key) or self._conversations[ROOM]
        row = rows.note_row(text, _now(), style)
        conversation.model.add_note(row)
        if aloud:
            announce(self, row.plain[row.indent :], urgent=style is rows.Style.ERROR)

    def show_info(self, key: str, lines: Iterable[str]) -> None:
        conversation = self._conversations.get(key) or self._conversations[ROOM]
        for line in lines:
            conversation.model.add_note(rows.info_row(line))
        if conversation.view is not None:
            conversation.view.scroll_to_end()

    def show_names(self, key: str, names: list[str]) -> None:
        """The answer to /who, in the conversation it was asked in."""
        self.set_online(names)
        conversation = self._conversations.get(key) or self._conversations[ROOM]
        conversation.model.add_note(rows.names_row(names, self.me, _now()))

    def set_online(self, names: Iterable[str]) -> None:
        names = list(names)
        self.online.replace(names)
        self.names_met.meet(*names)
        self._show_people()

    def joined(self, event: Joined, *, news: bool = True) -> None:
        """Someone came in; said in the room if it is `news` (not a return after an outage)."""
        self.online.joined(event.name)
        self.names_met.meet(event.name)
        self._show_people()
        if news:
            self._conversations[ROOM].model.add_note(rows.joined_row(event, self.me))

    def unsaid(self, message_id: int) -> None:
        """The operator removed a room message: shown, it says so in its place."""
        self._conversations[ROOM].model.unsay(message_id)

    def left(self, event: Left) -> None:
        self.online.left(event.name)
        self._show_people()
        self._conversations[ROOM].model.add_note(rows.left_row(event, self.me))

    def _show_people(self) -> None:
        """Who is online; while the connection is away, who was when it went (greyed)."""
        names = self.online.names
        connected = self.link is Link.CONNECTED
        self.people_label.setText(
            f"{'Online' if connected else 'Last known online'} ({len(names)})"
        )
        # The heading says whether the names are who is there or who was (greyed, which a
        # screen reader does not tell): the list is named the same.
        self.people.setAccessibleName(
            f"People {'online' if connected else 'last known online'} ({len(names)})"
        )
        palette = self.palette()  # the list's own is the same, and changes after it
        base = palette.color(QPalette.ColorGroup.Active, QPalette.ColorRole.Base).name()
        grey = palette.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text).name()
        current = self.people.currentItem()
        chosen = current.data(Qt.ItemDataRole.UserRole) if current is not None else None
        self.people.clear()
        for name in names:
            mine = same_name(name, self.me)
            item = QListWidgetItem(safe_name(name) + (" (you)" if mine else ""))
            item.setData(Qt.ItemDataRole.UserRole, name)
            colour = sender_colour(name) if connected else grey
            item.setForeground(QColor(readable(colour, base)))  # WCAG AA, light or dark
            font = item.font()
            font.setBold(mine)
            item.setFont(font)
            self.people.addItem(item)
            if chosen is not None and same_name(name, str(chosen)):
                self.people.setCurrentItem(item)

    def _person_chosen(self, item: QListWidgetItem) -> None:
        name = item.data(Qt.ItemDataRole.UserRole)
        if isinstance(name, str):
            self.open_conversation(name)

    # --- the connection --------------------------------------------------------------------

    def set_link(self, link: Link, reason: str = "", *, account_gone: bool = False) -> None:
        """The connection as it is now, and why; `account_gone`: it ended as the operator
        removed the account, which no sign-in gives back."""
        previous = self.link
        if previous is Link.LEAVING:
            return  # closed: what the connection did before the logout no longer matters
        self.link, self._reason = link, reason
        where = self._info().where
        if link is Link.RECONNECTING and previous is not Link.RECONNECTING:
            self.note(
                f"Lost the connection to {where} ({safe(reason).rstrip('.')}); trying again. "
                "What you send goes out when it is back.",
                aloud=True,
            )
        elif link is Link.CONNECTED and previous is Link.RECONNECTING:
            self.note(f"Connected to {where} again.", aloud=True)
        elif link is Link.LOST and previous is not Link.LOST:
            had_keyboard = self.focusWidget()
            self.note(f"The session has ended: {safe(reason)}", style=rows.Style.ERROR, aloud=True)
            self._account_gone = account_gone
            self.note(
                "Sign in with another account (Chat › Sign in again, Ctrl+R) to go on."
                if account_gone
                else "Sign in again (Chat › Sign in again, Ctrl+R) to go on.",
                aloud=True,
            )
            self.composer.setEnabled(False)
            self.sign_in_again_action.setEnabled(True)
            self.password_action.setEnabled(False)
            if self._password is not None:
                self._password.close()
            self.people.setEnabled(False)
            self._show_name(self._conversations[self.current_key])
            # The message line, its Send button or the people list had the focus, and
            # disabled they give it to nothing or to the tab bar: the keyboard (and a
            # screen reader) would be nowhere useful. The conversation can still be read,
            # scrolled and copied from, until Ctrl+R.
            view = self.view(self.current_key)
            disabled = had_keyboard is self.people or (
                had_keyboard is not None and self.composer.isAncestorOf(had_keyboard)
            )
            if view is not None and (had_keyboard is None or disabled):
                view.setFocus(Qt.FocusReason.OtherFocusReason)
        self._show_people()
        self._show_link()

    def set_muted(self, muted: bool) -> None:
        """The daemon's operator muted (or unmuted) this account: the status bar and the
        message line's hint say so while it lasts."""
        self.muted = muted
        self._show_name(self._conversations[self.current_key])
        self._show_link()

    def _show_link(self) -> None:
        info, muted = self._info(), self.muted
        text = status_text(self.link, info.where, self.me, self.waiting, self._reason, muted=muted)
        self.status.setText(text)
        palette = self.status_dot.palette()
        palette.setColor(QPalette.ColorRole.WindowText, QColor(COLOUR[self.link]))
        self.status_dot.setPalette(palette)
        self.status_dot.setAccessibleName(self.link.value)
        box = self._leave_box
        if box is None:
            return
        if self._away_with_lines() or self._typed():
            # Asked still, about what closing would lose now (the daemon went away with
            # lines waiting, or came back and took them).
            question = self._leave_question()
            if box.text() != question:
                box.setText(question)
            return
        # The daemon is back, or nothing waits any more, or the session ended (what waited
        # is lost either way): the question no longer holds, so it goes, and the window
        # goes on closing as asked.
        self._leave_box = None
        box.finished.disconnect()
        box.reject()
        self.close()

    def _away_with_lines(self) -> bool:
        """Lines sent wait for a daemon that is away: closed, the window loses them."""
        return self.link is Link.RECONNECTING and self.waiting > 0

    def _typed(self) -> bool:
        """Something is typed in the message line and not sent: closed, the window loses it."""
        return self.link is not Link.LEAVING and bool(self.composer.editor.text().strip())

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closed while in a session, the window logs out first: once every line typed
        has been answered, however long that takes (as the terminal waits), and still
        showing what arrives until the daemon has ended the session (a private message
        that comes meanwhile is acknowledged by the logout: it counts as delivered); then
        the session hides it. Closed again meanwhile, once the session has ended, or
        while the daemon is away with lines waiting (asked first), it goes at once. With
        a line typed and not sent, it asks first too."""
        away = self._away_with_lines()
        if (away or self._typed()) and not self._leaving_anyway:
            event.ignore()  # asked first: Leave closes it again; else they go out later
            self._ask_to_leave_anyway()
            return
        if away or self.link in (Link.LEAVING, Link.LOST):
            for dialog in (self._about, self._password):
                if dialog is not None:
                    dialog.close()
            self.closed.emit(True)
            super().closeEvent(event)
            return
        event.ignore()
        self.set_link(Link.LEAVING)
        self.composer.setEnabled(False)
        self.closed.emit(False)

    def _leave_question(self) -> str:
        """What closing would lose: lines waiting for a daemon that is away, the line
        typed and not sent, or both."""
        typed = "The line you typed has not been sent"
        if not self._away_with_lines():
            return f"{typed}. Leave anyway, and lose it?"
        one = self.waiting == 1
        waiting = (
            f"{counted(self.waiting, 'line')} you typed {'has' if one else 'have'} not "
            f"reached the daemon, which is away; {'it goes' if one else 'they go'} out once "
            "it is back."
        )
        if self._typed():
            return f"{waiting} {typed} either. Leave anyway, and lose them all?"
        return f"{waiting} Leave anyway, and lose {'it' if one else 'them'}?"

    def _ask_to_leave_anyway(self) -> None:
        """Asked on closing while lines wait for a daemon that is away (closed, the
        window would take them with it), or with a line typed and not sent: Leave closes
        the window again, and nothing is asked then.

        Opened, not run (`exec`): a nested event loop would hold Trio, a guest of Qt's
        loop, and with it the client and the signals that stop the program."""
        if self._leave_box is not None:
            return  # asked already
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Leave trio-chat?",
            self._leave_question(),
            QMessageBox.StandardButton.Cancel,
            self,
        )
        leave = box.addButton("&Leave", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)

        def answered() -> None:
            self._leave_box = None
            if box.clickedButton() is leave:
                self._leaving_anyway = True
                self.close()

        box.finished.connect(answered)
        self._leave_box = box
        box.open()
