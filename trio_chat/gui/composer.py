"""Where you type: a line editor that recalls earlier lines (up and down), sends on Enter,
completes a command or a name on Tab, scrolls the conversation (Page Up, Page Down,
Ctrl+Home, Ctrl+End), and shows how much of a message's size limit is used as you
approach it."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QAbstractSlider,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QToolTip,
    QWidget,
)

from .. import commands
from ..completion import complete
from ..display import safe_name
from . import colours
from .editing import Budget, Recall, budget
from .problem_label import ShadedLabel
from .speech import announce

_Action = QAbstractSlider.SliderAction
_SCROLLS = {
    (Qt.KeyboardModifier.NoModifier, Qt.Key.Key_PageUp): _Action.SliderPageStepSub,
    (Qt.KeyboardModifier.NoModifier, Qt.Key.Key_PageDown): _Action.SliderPageStepAdd,
    (Qt.KeyboardModifier.ControlModifier, Qt.Key.Key_Home): _Action.SliderToMinimum,
    (Qt.KeyboardModifier.ControlModifier, Qt.Key.Key_End): _Action.SliderToMaximum,
}
"""Keys that scroll the conversation while you type, as in other chat programs."""


class LineEditor(QLineEdit):
    """A line editor with a shell's history: up for older lines, down for newer ones; Tab
    completes a command or one of `names` (`completion`); the keys of `_SCROLLS` are
    handed to the conversation (`scroll_wanted`)."""

    scroll_wanted = Signal(QAbstractSlider.SliderAction)

    def __init__(self, recall: Recall, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._recall = recall
        self.names: Callable[[], Iterable[str]] = tuple

    def event(self, event: QEvent) -> bool:
        # Tab completes where there is something to complete; elsewhere it goes on to the
        # next part of the window, as it does everywhere (Qt takes it before keyPressEvent).
        if (
            isinstance(event, QKeyEvent)
            and event.type() == QEvent.Type.KeyPress
            and event.key() == Qt.Key.Key_Tab
            and event.modifiers() == Qt.KeyboardModifier.NoModifier
            and self._complete()
        ):
            return True
        return super().event(event)

    def _complete(self) -> bool:
        """Complete what is before the cursor; whether there was anything to complete (else
        Tab moves the focus on). Where several fit and nothing can be added, they are shown
        beside the cursor, and said to a screen reader."""
        at = self.cursorPosition()  # in UTF-16 code units, as Qt counts
        text = self.text().encode("utf-16-le")
        before, after = (part.decode("utf-16-le") for part in (text[: 2 * at], text[2 * at :]))
        done = complete(before, self.names(), after)
        if done.text != before:
            self.setSelection(0, at + done.taken)  # what it takes the place of is ASCII
            self.insert(done.text)  # in place of what was before the cursor, undoable
            return True
        if not done.choices:
            return False
        choices = "  ".join(safe_name(choice) for choice in done.choices)
        QToolTip.showText(self.mapToGlobal(self.cursorRect().bottomLeft()), choices, self)
        announce(self, f"Choices: {', '.join(safe_name(c) for c in done.choices)}.")
        return True

    def keyPressEvent(self, event: QKeyEvent) -> None:
        action = _SCROLLS.get((event.modifiers(), Qt.Key(event.key())))
        if action is not None:
            self.scroll_wanted.emit(action)
            return
        plain = event.modifiers() == Qt.KeyboardModifier.NoModifier
        if plain and event.key() == Qt.Key.Key_Up:
            line = self._recall.older(self.text())
            if line is not None:
                self.setText(line)
            return
        if plain and event.key() == Qt.Key.Key_Down:
            line = self._recall.newer()
            if line is not None:
                self.setText(line)
            return
        super().keyPressEvent(event)


class Composer(QWidget):
    """The editor, the size of the message (once it nears the limit) and a Send button."""

    submitted = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.recall = Recall()
        self.editor = LineEditor(self.recall, self)
        self.editor.setObjectName("editor")
        self.editor.setAccessibleName("Message")
        self.size_label = ShadedLabel(self, colours.WAITING)
        self.size_label.setObjectName("size")
        self.size_label.hide()
        self.send_button = QPushButton("Send", self)
        self.send_button.setObjectName("send")
        self.send_button.setAutoDefault(False)
        # Tab reaches it; a click leaves the focus in the editor, for the next line.
        self.send_button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.editor, 1)
        layout.addWidget(self.size_label)
        layout.addWidget(self.send_button)
        self.editor.returnPressed.connect(self.submit)
        self.send_button.clicked.connect(self.submit)
        self.editor.textChanged.connect(self._show_budget)
        self.setFocusProxy(self.editor)

    def submit(self) -> None:
        """Send what is typed, unless it is too long to send (then it stays, marked).

        Several lines pasted at once go one by one, as if typed, as in the terminal:
        not one message whose line breaks everyone would see as `\\n`."""
        text = self.editor.text()
        lines = [line for line in commands.typed_lines(text) if line.strip()]
        if not lines:
            return
        size = budget(text)  # of several lines, the largest message
        if size is not None and size.over:
            self._show_budget()
            # Shown beside the line, which stays: a screen reader would hear nothing happen.
            announce(self, f"Too long to send: {size.text}.", urgent=True)
            return
        for line in lines:
            self.recall.add(line)
        self.editor.clear()
        for line in lines:
            self.submitted.emit(line)

    def _show_budget(self) -> None:
        size: Budget | None = budget(self.editor.text())
        if size is None or not size.shown:
            self.size_label.hide()
            return
        self.size_label.setText(size.text)
        self.size_label.set_colour(colours.BAD if size.over else colours.WAITING)
        self.size_label.show()
