"""The sign-in dialog: where the daemon is, who you are, and "create an account".

It only collects and shows: `sign_in_requested` asks the Trio side (`app`) to sign in,
which answers with `show_problem()` (the sentence, and the field to fix gets the focus)
or by closing the dialog and opening the room; `show_notice()` says what it did meanwhile
(trusted a daemon's key met for the first time).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .memory import Remembered
from .problem_label import problem_label
from .problems import Field, Problem, SignInForm
from .speech import announce


class SignInDialog(QDialog):
    sign_in_requested = Signal()
    """Sign in (or create the account, then sign in) with what `form()` says."""
    cancelled = Signal()
    """The dialog was closed without signing in."""

    def __init__(self, remembered: Remembered, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Sign in – trio-chat")
        self.host = QLineEdit(remembered.host, self)
        self.port = QSpinBox(self)
        self.port.setRange(1, 65535)
        self.port.setValue(remembered.port)
        self.name = QLineEdit(remembered.name, self)
        self.password = QLineEdit(self)
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.create_account = QCheckBox("&Create an account", self)
        self.repeat = QLineEdit(self)
        self.repeat.setEchoMode(QLineEdit.EchoMode.Password)
        self.problem = problem_label(self)
        self.notice = QLabel(self)
        self.notice.setObjectName("notice")
        self.notice.setTextFormat(Qt.TextFormat.PlainText)
        self.notice.setWordWrap(True)
        self.notice.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notice.hide()
        self.progress = QLabel(self)
        self.progress.setTextFormat(Qt.TextFormat.PlainText)
        self.progress.hide()
        for field, name in (
            (self.host, "host"),
            (self.port, "port"),
            (self.name, "name"),
            (self.password, "password"),
            (self.repeat, "repeat"),
        ):
            field.setObjectName(name)

        form = QFormLayout()
        form.addRow("&Server:", self.host)
        form.addRow("P&ort:", self.port)
        form.addRow("&Name:", self.name)
        form.addRow("&Password:", self.password)
        form.addRow("", self.create_account)
        self._repeat_label = QLabel("&Repeat the password:", self)
        self._repeat_label.setBuddy(self.repeat)
        form.addRow(self._repeat_label, self.repeat)
        self._form = form

        buttons = QDialogButtonBox(self)
        self.sign_in_button: QPushButton = buttons.addButton(
            "Sign in", QDialogButtonBox.ButtonRole.AcceptRole
        )
        self.sign_in_button.setDefault(True)
        buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        self._layout = layout
        layout.addLayout(form)
        layout.addWidget(self.notice)
        layout.addWidget(self.problem)
        layout.addWidget(self.progress)
        layout.addWidget(buttons)
        self.setMinimumWidth(380)

        self._grown_to: int | None = None
        """The height `_fit` last gave the dialog."""
        self.create_account.toggled.connect(self._creating)
        self._creating(False)
        # A sentence about what was filled in ("Wrong password for 'bob'.") goes once it
        # is changed: it would otherwise speak of a name or a choice no longer there.
        for line in (self.host, self.name, self.password, self.repeat):
            line.textEdited.connect(self._problem_acted_on)
        self.port.valueChanged.connect(self._problem_acted_on)
        self.create_account.toggled.connect(self._problem_acted_on)
        self._busy = False
        self._field_to_fill().setFocus()

    def _problem_acted_on(self) -> None:
        if not self.problem.isHidden():
            self.problem.hide()
            self._fit()
        self._describe(None)

    def _describe(self, problem: Problem | None) -> None:
        """A screen reader says the field the focus lands in, not the sentence below the
        fields: the field to fix has the sentence as its description, while it holds."""
        for field in Field:
            wrong = problem.sentence if problem is not None and field is problem.field else ""
            self.field(field).setAccessibleDescription(wrong)

    def _creating(self, create: bool) -> None:
        self._form.setRowVisible(self.repeat, create)
        self.sign_in_button.setText("Create and sign in" if create else "Sign in")
        if not create:
            self.repeat.clear()

    def field(self, field: Field) -> QLineEdit | QSpinBox:
        fields: dict[Field, QLineEdit | QSpinBox] = {
            Field.HOST: self.host,
            Field.PORT: self.port,
            Field.NAME: self.name,
            Field.PASSWORD: self.password,
            Field.REPEAT: self.repeat,
        }
        return fields[field]

    def form(self) -> SignInForm:
        return SignInForm(
            host=self.host.text().strip(),
            port=self.port.value(),
            name=self.name.text().strip(),
            password=self.password.text(),
            repeat=self.repeat.text(),
            create=self.create_account.isChecked(),
        )

    def show_problem(self, problem: Problem, *, focus: bool = True) -> None:
        """Say what went wrong and put the cursor in the field to fix; without `focus`,
        the cursor stays where the person is (learnt while they fill the dialog in, not
        signing in: moved, it would take what they type next)."""
        if focus:
            self.set_busy(False)
        self.problem.setText(problem.sentence)
        self.problem.show()
        self._fit()
        widget = self.field(problem.field)
        self._describe(problem)
        announce(self, problem.sentence, urgent=True)
        if focus:
            widget.setFocus(Qt.FocusReason.OtherFocusReason)
            widget.selectAll()

    def show_notice(self, text: str) -> None:
        """Say something worth knowing that is no problem (nothing when `text` is empty)."""
        self.notice.setText(text)
        self.notice.setVisible(bool(text))
        self._fit()
        if text:
            announce(self, text)

    def set_busy(self, busy: bool, message: str = "") -> None:
        """While signing in: the fields wait, Cancel still works."""
        self._busy = busy
        for widget in (
            self.host,
            self.port,
            self.name,
            self.password,
            self.create_account,
            self.repeat,
        ):
            widget.setEnabled(not busy)
        self.sign_in_button.setEnabled(not busy)
        if not busy:
            # Disabled, the button gave the focus, and with it the default, to Cancel:
            # Enter must sign in, so Sign in is the default again and the cursor goes
            # back to a field (the callers choose which).
            self.sign_in_button.setDefault(True)
            if self.focusWidget() not in (self.host, self.port, self.name, self.password):
                self._field_to_fill().setFocus()
        self.progress.setText(message)
        self.progress.setVisible(busy and bool(message))
        if busy and message:
            announce(self, message)
        if busy:
            self.problem.hide()
            self._describe(None)
        self._fit()

    def _fit(self) -> None:
        """Grow to show every line of what it says: its wrapped sentences would otherwise
        take their height from the fields (a port number cut in half, say). Grown for a
        sentence that has gone since, shrink back (unless the person resized it)."""
        self._layout.activate()
        needed = self.heightForWidth(self.width())
        if needed < 0:
            needed = self._layout.totalMinimumSize().height()
        ours = self.height() == self._grown_to  # not resized by the person since
        if needed > self.height() or (ours and needed < self.height()):
            self.resize(self.width(), needed)
            self._grown_to = needed

    def reopen(self) -> None:
        """Show again, as it was filled in, ready for Enter to sign in: the password (or the
        name) has the cursor, not the Cancel button, where signing in last left it."""
        self.set_busy(False)  # before showing, which hands the default to the focus
        self.show_notice("")
        field = self._field_to_fill()
        field.setFocus(Qt.FocusReason.OtherFocusReason)
        field.selectAll()
        self.show()
        self.raise_()
        self.activateWindow()

    def _field_to_fill(self) -> QLineEdit:
        """Where the cursor waits: the password once a name is there."""
        return self.password if self.name.text() else self.name

    def accept(self) -> None:
        """Enter or the Sign in button: ask to sign in (the dialog stays until it worked)."""
        if not self._busy:
            self.sign_in_requested.emit()

    def reject(self) -> None:
        super().reject()
        self.cancelled.emit()

    def closeEvent(self, event: QCloseEvent) -> None:
        # Closing the dialog's window is cancelling; reject() emits `cancelled` once.
        event.ignore()
        self.reject()
