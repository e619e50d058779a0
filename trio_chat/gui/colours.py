"""Fixed colours that read on light and dark backgrounds alike (everything else follows the
system palette): one per sender, as the terminal gives them, and three for states.

Each has a contrast ratio of at least 3:1 (WCAG's ratio for large and bold text) against
both white and a dark grey (#2d2d2d); `contrast()` measures it. No one colour reaches 4.5:1,
WCAG AA's ratio for text of ordinary size, on both: text is drawn in `readable()` shades of
them, darker on a light background, lighter on a dark one.
"""

from __future__ import annotations

import functools

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
    red, green, blue = _channels(colour)
    return 0.2126 * _linear(red) + 0.7152 * _linear(green) + 0.0722 * _linear(blue)


def contrast(first: str, second: str) -> float:
    """The WCAG contrast ratio of two `#rrggbb` colours (1 to 21)."""
    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


TEXT_CONTRAST = 4.5
"""WCAG AA's contrast ratio for text of ordinary size (names, notes and messages are)."""


def _channels(colour: str) -> tuple[int, int, int]:
    red, green, blue = (int(colour[index : index + 2], 16) for index in (1, 3, 5))
    return red, green, blue


def mix(colour: str, other: str, share: float) -> str:
    """`colour` with `share` (0 to 1) of `other` mixed in, as `#rrggbb`."""
    mixed = (
        round(mine + (theirs - mine) * share)
        for mine, theirs in zip(_channels(colour), _channels(other), strict=True)
    )
    return "#{:02x}{:02x}{:02x}".format(*mixed)


def solid(colour: str, alpha: int, background: str) -> str:
    """A colour drawn with opacity `alpha` (0 to 255) over `background`, as it shows."""
    return mix(background, colour, alpha / 255)


@functools.lru_cache(maxsize=1024)
def readable(colour: str, background: str, ratio: float = TEXT_CONTRAST) -> str:
    """`colour` if text in it reads on `background` at `ratio` or more; else the shade of it
    nearest to it that does: darkened on a light background, lightened on a dark one.
    (Black or white reaches 4.5:1 on any background: there always is one.)"""
    if contrast(colour, background) >= ratio:
        return colour
    black, white = "#000000", "#ffffff"
    towards = black if contrast(black, background) >= contrast(white, background) else white
    low, high = 0.0, 1.0
    for _ in range(16):
        middle = (low + high) / 2
        if contrast(mix(colour, towards, middle), background) >= ratio:
            high = middle
        else:
            low = middle
    return mix(colour, towards, high)
