"""Labels drawn in a colour that says something (bad, waiting), in a shade readable on
their background: the line a dialog says what is wrong in, a message's size."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QLabel, QWidget

from . import colours


class ShadedLabel(QLabel):
    """Plain text in `colour`, darkened or lightened as far as WCAG AA asks on the label's
    background (`colours.readable`), again whenever that changes: a desktop switching
    between light and dark while the window is open."""

    def __init__(self, parent: QWidget, colour: str = colours.BAD) -> None:
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self._colour = colour
        self._shade()

    def set_colour(self, colour: str) -> None:
        self._colour = colour
        self._shade()

    def _shade(self) -> None:
        palette = self.palette()
        background = palette.color(QPalette.ColorRole.Window).name()
        shade = QColor(colours.readable(self._colour, background))
        if palette.color(QPalette.ColorRole.WindowText) != shade:  # else no change to tell
            palette.setColor(QPalette.ColorRole.WindowText, shade)
            self.setPalette(palette)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self._shade()


def problem_label(parent: QWidget) -> QLabel:
    """Hidden until there is something to say (`setText`, `show`)."""
    label = ShadedLabel(parent)
    label.setObjectName("problem")
    label.setWordWrap(True)
    label.hide()
    return label
