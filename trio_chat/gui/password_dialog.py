"""The "Change password" dialog: the password you have, the new one twice.

It only collects and shows: `wanted` asks the Trio side (`session`) for the change, which
answers with `refused()` (the sentence, the dialog stays) or by closing it (`done`).
A new password the rules refuse, or two that differ, is said before anything is sent.
"""

from __future__ import annotations

import hmac

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from ..client_protocol.requests import check_new_password
from ..display import safe
from ..errors import ChatError
from .problem_label import problem_label
from .speech import announce


def _secret(name: str, parent: QWidget) -> QLineEdit:
    field = QLineEdit(parent)
    field.setObjectName(name)
    field.setEchoMode(QLineEdit.EchoMode.Password)
    return field


class PasswordDialog(QDialog):
    wanted = Signal(str, str)
    """Change the password: `(old, new)`."""

    def __init__(self, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.setWindowTitle("Change password – trio-chat")
        self.current = _secret("current", self)
        self.new = _secret("new", self)
        self.repeat = _secret("repeat", self)
        self.problem = problem_label(self)
        form = QFormLayout()
        form.addRow("&Current password:", self.current)
        form.addRow("&New password:", self.new)
        form.addRow("&Repeat it:", self.repeat)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.change = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.change.setText("C&hange")
        self.buttons.accepted.connect(self._ask)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        for field in (self.current, self.new, self.repeat):
            field.textEdited.connect(self._problem_acted_on)
        self.setMinimumWidth(380)
        self.current.setFocus()

    def _ask(self) -> None:
        old, new = self.current.text(), self.new.text()
        if not old:
            self._show("Type the password you have now.", self.current)
            return
        if not hmac.compare_digest(new.encode(), self.repeat.text().encode()):
            self._show("The two new passwords differ; type them again.", self.repeat)
            return
        try:
            check_new_password(self.name, old, new)
        except ChatError as error:
            self._show(error.message, self.new)
            return
        self.change.setEnabled(False)  # Cancel stays: the answer is then told in the room
        self.wanted.emit(old, new)

    def refused(self, message: str, wrong_current: bool) -> None:
        """The daemon said no: say why, the field to fix focused (the current password's
        when it was wrong, or guessed too often)."""
        self.change.setEnabled(True)
        self._show(message, self.current if wrong_current else self.new)

    def _problem_acted_on(self) -> None:
        self.problem.hide()
        for field in (self.current, self.new, self.repeat):
            field.setAccessibleDescription("")

    def _show(self, message: str, field: QLineEdit) -> None:
        sentence = safe(message)
        self.problem.setText(sentence)
        self.problem.show()
        # A screen reader says the field the focus lands in, not the sentence below the
        # fields: the sentence describes the field, and is said aloud.
        for other in (self.current, self.new, self.repeat):
            other.setAccessibleDescription(sentence if other is field else "")
        announce(self, sentence, urgent=True)
        field.selectAll()
        field.setFocus()
