"""The "About this server" view: where you are connected, as whom, and the daemon's key."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFormLayout, QLabel, QVBoxLayout, QWidget

from ..display import safe, safe_name
from .server_info import ServerInfo


def _value(text: str, name: str, parent: QWidget) -> QLabel:
    label = QLabel(text, parent)
    label.setObjectName(name)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setTextInteractionFlags(
        Qt.TextInteractionFlag.TextSelectableByMouse
        | Qt.TextInteractionFlag.TextSelectableByKeyboard
    )
    label.setWordWrap(True)
    return label


class AboutDialog(QDialog):
    def __init__(self, info: ServerInfo, connection: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About this server – trio-chat")
        form = QFormLayout()
        form.addRow("Host:", _value(safe(info.host), "host", self))
        form.addRow("Port:", _value(str(info.port), "port", self))
        form.addRow("Your name:", _value(safe_name(info.name), "me", self))
        form.addRow("Connection:", _value(connection, "connection", self))
        form.addRow("Key fingerprint:", _value(safe(info.fingerprint), "fingerprint", self))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.setMinimumWidth(420)
