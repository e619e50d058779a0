"""Saying to a screen reader what changed away from where the person is: the connection
went or came back, a line was refused, a dialog found something wrong. Those are shown as
text (in the room, in the status bar, in the dialog), but text that appears elsewhere than
the focus is not read aloud unless it is announced."""

from __future__ import annotations

from PySide6.QtGui import QAccessible, QAccessibleAnnouncementEvent
from PySide6.QtWidgets import QWidget


def announce(widget: QWidget, text: str, *, urgent: bool = False) -> None:
    """Have screen readers say `text` (about `widget`): once they are done speaking, or
    at once, cutting them short, if `urgent` (something failed). Nothing without one
    (`QAccessible.isActive`): each message of a busy room would be an event for nobody."""
    if not QAccessible.isActive():
        return
    event = QAccessibleAnnouncementEvent(widget, text)
    politeness = QAccessible.AnnouncementPoliteness
    event.setPoliteness(politeness.Assertive if urgent else politeness.Polite)
    QAccessible.updateAccessibility(event)
