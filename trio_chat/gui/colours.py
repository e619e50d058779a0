"""Fixed colours that read on light and dark backgrounds alike (everything else follows the
system palette): one per sender, as the terminal gives them, and three for states.

Each has a contrast ratio of at least 3:1 (WCAG's ratio for large and bold text) against
both white and a dark grey (#2d2d2d); `contrast()` measures it.
"""

from __future__ import annotations

from .. import display

SENDER = {
    "31": "#d75454",
    "32": "#239323",
    "33": "#9a7c24",
    "34": "#517dd6",
    "35": "#d13dd1",
    "36": "#238c96",
    "91": "#c9622f",
    "92": "#608c21",
    "93": "#83831f",
    "94": "#826fdd",
    "95": "#d54d91",
    "96": "#22906c",
}
"""The terminal's colour for a sender (`display.PALETTE`), as `#rrggbb`."""

GOOD = "#1e8e3e"
"""Connected."""
WAITING = "#b26a00"
"""Reconnecting; lines waiting to be sent; a message near its size limit."""
BAD = "#e53935"
"""The connection is lost; a refusal; a message over its size limit."""


def sender_colour(name: str) -> str:
    """The colour a sender always gets: the terminal's (`display.colour_of`), as `#rrggbb`."""
    return SENDER[display.colour_of(name)]


def _linear(channel: int) -> float:
    value = channel / 255
    return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4


def luminance(colour: str) -> float:
    """The relative luminance of `#rrggbb` (WCAG 2)."""
    red, green, blue = (int(colour[index : index + 2], 16) for index in (1, 3, 5))
    return 0.2126 * _linear(red) + 0.7152 * _linear(green) + 0.0722 * _linear(blue)


def contrast(first: str, second: str) -> float:
    """The WCAG contrast ratio of two `#rrggbb` colours (1 to 21)."""
    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)
