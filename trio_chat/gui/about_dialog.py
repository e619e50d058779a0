"""The "About this server" view: where you are connected, as whom, and the daemon's key.

Each value can be reached with Tab, selected from the keyboard and copied (the key's
fingerprint, to compare it), and is named with what it is for screen readers ("Key
fingerprint: SHA256:..."), not only its text. Enter or Escape closes it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QVBoxLayout, QWidget

from ..display import safe, safe_name
from .server_info import ServerInfo


def _value(text: str, name: str, what: str, parent: QWidget) -> QLabel:
    label = QLabel(text, parent)
    label.setObjectName(name)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setTextInteractionFlags(
        Qt.TextInteractionFlag.TextSelectableByMouse
        | Qt.TextInteractionFlag.TextSelectableByKeyboard
    )
    label.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # selectable from the keyboard: reachable
    label.setAccessibleName(f"{what}: {text}")
    label.setWordWrap(True)
    return label


class AboutDialog(QDialog):
    def __init__(self, info: ServerInfo, connection: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About this server – trio-chat")
        form = QFormLayout()
        for what, text, name in (
            ("Host", safe(info.host), "host"),
            ("Port", str(info.port), "port"),
            ("Your name", safe_name(info.name), "me"),
            ("Connection", connection, "connection"),
            ("Key fingerprint", safe(info.fingerprint), "fingerprint"),
        ):
            form.addRow(f"{what}:", _value(text, name, what, self))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        close = buttons.button(QDialogButtonBox.StandardButton.Close)
        close.setDefault(True)  # Enter closes it wherever the focus is
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.setMinimumWidth(420)
        close.setFocus()
