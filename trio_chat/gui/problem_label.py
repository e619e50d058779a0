"""The line a dialog says what is wrong in: plain text, wrapped, in the colour for bad."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QLabel, QWidget

from . import colours


def problem_label(parent: QWidget) -> QLabel:
    """Hidden until there is something to say (`setText`, `show`)."""
    label = QLabel(parent)
    label.setObjectName("problem")
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setWordWrap(True)
    palette = label.palette()
    background = palette.color(QPalette.ColorRole.Window).name()
    palette.setColor(
        QPalette.ColorRole.WindowText, QColor(colours.readable(colours.BAD, background))
    )
    label.setPalette(palette)
    label.hide()
    return label
