"""How chat events look on a screen: safe text, local times, a colour per sender.

Everything here is pure: a line is a tuple of (SGR style, text) segments that
`to_ansi` turns into terminal output and `to_plain` into one plain line for scripts.
Text that came from other people (names, messages, notices) always passes through
`safe()`, so a control character or an escape sequence is shown, never obeyed.
"""

from __future__ import annotations

import bisect
import codecs
import functools
import itertools
import math
import operator
import re
import unicodedata
import zlib
from collections.abc import Sequence
from datetime import datetime

import wcwidth

from .errors import Banned, ChatError
from .events import ChatMessage, Joined, Left, PrivateMessage, PublicMessage
from .names import invisible_ranges
from .rules import name_key, name_problem
from .wire import BANNED_UNTIL

Segment = tuple[str, str]
"""An SGR parameter string (`"1;31"`, or `""` for none) and the text it styles."""
Line = tuple[Segment, ...]

_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _unsafe_pattern(kept: frozenset[int]) -> re.Pattern[str]:
    """C0 controls, DEL and C1 controls (a terminal obeys them), the line and paragraph
    separators, the bidirectional controls and marks (they reorder what follows: "Trojan
    source"), lone surrogates (a UTF-8 terminal cannot show them), and every other
    character that shows nothing (default-ignorable code points, fillers, blanks), which
    could hide text or make two names look alike; all but the `kept` code points."""
    ranges = [(0x00, 0x1F), (0x7F, 0x9F), (0x2028, 0x2029), (0xD800, 0xDFFF)]
    ranges += [(0x061C, 0x061C), (0x200E, 0x200F), (0x202A, 0x202E), (0x2066, 0x2069)]
    # Format characters that show nothing and are not default-ignorable: the interlinear
    # annotation marks, the Egyptian hieroglyph format controls.
    ranges += [(0xFFF9, 0xFFFB), (0x13430, 0x1343F)]
    for start, end in invisible_ranges():
        run = start
        for point in [*sorted(p for p in kept if start <= p <= end), end + 1]:
            if run < point:
                ranges.append((run, point - 1))
            run = point + 1
    pairs = (f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in sorted(ranges))
    return re.compile("[" + "".join(pairs) + "]")


_UNSAFE_IN_NAMES = _unsafe_pattern(frozenset())

_FLAG = (
    "(?P<flag>\U0001f3f4(?:\U000e0067\U000e0062"
    "(?:\U000e0065\U000e006e\U000e0067|\U000e0073\U000e0063\U000e0074"
    "|\U000e0077\U000e006c\U000e0073))\U000e007f)"
)
"""A subdivision's flag that fonts draw: England's, Scotland's or Wales's (🏴, the tag
letters `gbeng`, `gbsct` or `gbwls`, the cancel tag). Any other code is drawn as a plain
black flag, its tags hidden: escaped, as text would be hidden in them."""
_UNSAFE = re.compile(f"{_FLAG}|{_UNSAFE_IN_NAMES.pattern}")

_PICTOGRAPHS = (
    (0x00A9, 0x00A9),
    (0x00AE, 0x00AE),
    (0x203C, 0x203C),
    (0x2049, 0x2049),
    (0x2122, 0x2122),
    (0x2139, 0x2139),
    (0x2194, 0x21AA),
    (0x231A, 0x23FA),
    (0x24C2, 0x24C2),
    (0x25AA, 0x25FE),
    (0x2600, 0x27BF),
    (0x2934, 0x2935),
    (0x2B05, 0x2B55),
    (0x3030, 0x3030),
    (0x303D, 0x303D),
    (0x3297, 0x3299),
    (0x1F000, 0x1FAFF),
)
"""Where the characters that emoji sequences are built of lie (Unicode's
Extended_Pictographic, in round ranges): a variation selector or a joiner after one is
part of an emoji."""


def _pictograph(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _PICTOGRAPHS)


def _han(char: str) -> bool:
    code = ord(char)
    return 0x3400 <= code <= 0x9FFF or 0xF900 <= code <= 0xFAFF or 0x20000 <= code <= 0x3134F


def _writes(text: str, at: int) -> bool:
    """Whether the invisible character at `at` is part of how `text` is written there,
    once, where it does its work: VS16 in ❤️ and in a keycap (1️⃣), a variant of a
    mathematical symbol, a Han or a Myanmar character, a Mongolian form, ZWJ in an emoji
    sequence (👩‍💻), beside a virama (Devanagari, Malayalam, Bengali) or after a letter of
    a script it shapes (Persian), ZWNJ between two letters of the scripts that use it
    (Persian, the Indic ones), a blank Braille cell beside Braille. Anywhere else, and in
    runs, such characters can carry hidden text (a few bits each: "PIN 4711" hides in a
    line of selectors after the letters of "hello"), and they are escaped as the others.
    Where they are kept, some can still carry a few bits (docs/reliability.md)."""
    if at == 0:
        return False
    char, before = text[at], text[at - 1]
    after = text[at + 1] if at + 1 < len(text) else "\x00"  # the end: as nothing visible
    code = ord(char)
    if code in (0xFE0E, 0xFE0F):
        return _pictograph(before) or (before in "0123456789#*" and after == "\u20e3")
    if 0xFE00 <= code <= 0xFE0D:
        mathematical = unicodedata.category(before) == "Sm" and not before.isascii()
        return mathematical or _han(before) or "\u1000" <= before <= "\u109f"
    if 0xE0100 <= code <= 0xE01EF:
        return _han(before)
    if 0x180B <= code <= 0x180F:
        return "\u1820" <= before <= "\u18aa"
    if code == 0x200D:
        if unicodedata.combining(before) == 9:
            return True  # after a virama: a half form, or a chillu at a word's end (ന്‍)
        if unicodedata.combining(after) == 9 and unicodedata.category(before)[0] == "L":
            return True  # before one: Bengali ra-yaphala (র‍্য)
        if _joins(before):  # an Arabic letter's joining form shown alone (ه‍.ش)
            return not _joins(after) and not _UNSAFE_IN_NAMES.match(after)
        follows = _pictograph(before) or before == "\ufe0f"
        return follows and not _UNSAFE_IN_NAMES.match(after)
    if code == 0x200C:
        if unicodedata.combining(before) == 9:
            return True  # after a virama: the explicit one, also at a word's end (अर्थात्‌)
        arabic = "\u0600" <= before <= "\u08ff" or "\u1800" <= before <= "\u18af"
        return arabic and _joins(before) and _joins(after)  # Persian: a letter left unjoined
    if code == 0x2800:
        return "\u2801" <= before <= "\u28ff" or "\u2801" <= after <= "\u28ff"
    return False


_JOINING = (
    (0x0600, 0x08FF),  # Arabic (Persian, Urdu, Kurdish), Syriac, Thaana, N'Ko, Samaritan
    (0x0900, 0x0DFF),  # the Indic scripts
    (0x1800, 0x18AF),  # Mongolian
    (0xFB50, 0xFDFF),  # Arabic presentation forms
    (0xFE70, 0xFEFF),
)
"""Where the scripts whose letters ZWNJ and ZWJ shape lie."""


def _joins(char: str) -> bool:
    """A letter or mark of a script that ZWNJ and ZWJ shape (Persian, the Indic ones)."""
    code = ord(char)
    shaped = any(low <= code <= high for low, high in _JOINING)
    return shaped and unicodedata.category(char)[0] in "LM"


# Foreground colours that read on dark and light backgrounds alike.
PALETTE = ("31", "32", "33", "34", "35", "36", "91", "92", "93", "94", "95", "96")
DIM = "2"
WARN = "33"
ERROR = "1;31"
HEADING = "1"
MENTION = "1;4"
"""One's own name where someone else's message in the room names one: bold, underlined."""


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def safe(text: str) -> str:
    """`text` with every control character, escape sequence and bidi control made visible,
    and every invisible character but where it is part of how the text is written
    (`_writes`, a subdivision's flag)."""
    if not _UNSAFE_IN_NAMES.search(text):
        return text  # nearly every message: one scan, and nothing to build
    return _UNSAFE.sub(_escape_in_text, text)


def _escape_in_text(match: re.Match[str]) -> str:
    if match.lastgroup == "flag" or _writes(match.string, match.start()):
        return match.group()
    return _escape(match)


def safe_name(name: str) -> str:
    """`name` as `safe()` shows it, with the joiners and variation selectors escaped too: no
    name may hold them, so in a name (one kept from before the rules) they only hide, and
    `alice` + U+FE0F would look like `alice`."""
    return _UNSAFE_IN_NAMES.sub(_escape, name)


def cannot_exist(name: str) -> str | None:
    """ "There is no account named 'аlice', and there cannot be: a name cannot mix ..." for a
    name no account may have (a login for it was answered `unknown_user`), else None."""
    problem = name_problem(name)
    if problem is None:
        return None
    if problem.startswith("A "):
        problem = "a " + problem[2:]
    return f"There is no account named {quoted(name)}, and there cannot be: {problem}"


def json_escaped(text: str) -> str:
    """JSON text with every character `safe_name` would escape written as its JSON escape
    (`\\u202e`): the same values to a program that reads it, nothing that hides text or
    reorders it in a viewer or a terminal that shows the file."""
    return _UNSAFE_IN_NAMES.sub(_json_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    units = match.group().encode("utf-16-be", "surrogatepass")
    return "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2))


def quoted(name: str) -> str:
    """`name` made `safe_name`, in single quotes (not `repr`, which would double each
    escape's backslash and may switch to double quotes)."""
    return f"'{safe_name(name)}'"


def colour_of(name: str) -> str:
    """The colour a sender always gets (stable across runs, the same for `Alice` and `alice`)."""
    return PALETTE[zlib.crc32(name_key(name).encode("utf-8", "replace")) % len(PALETTE)]


def stamp(ts: datetime, now: datetime | None = None) -> str:
    """`[HH:MM:SS]` in local time; the date is added when it is not today."""
    local = ts.astimezone()
    today = (now or datetime.now().astimezone()).astimezone().date()
    if local.date() != today:
        return local.strftime("[%Y-%m-%d %H:%M:%S]")
    return local.strftime("[%H:%M:%S]")


def same_name(a: str, b: str) -> bool:
    return name_key(a) == name_key(b)


def _name(name: str, me: str) -> Segment:
    style = colour_of(name)
    return (f"1;{style}" if same_name(name, me) else style, safe_name(name))


def message_line(message: ChatMessage, me: str, now: datetime | None = None) -> Line:
    """`[12:00:01] alice: hi`, or `[12:00:01] [alice -> you] hi` / `[you -> bob]` if private.
    In someone else's message to the room, one's own name, where it stands as a word, is
    marked (`MENTION`)."""
    time = (DIM, stamp(message.ts, now) + " ")
    text = ("", safe(message.text))
    if not isinstance(message, PrivateMessage):
        said = (text,) if same_name(message.sender, me) else mentioning(text[1], me)
        return (time, _name(message.sender, me), ("", ": "), *said)
    if same_name(message.sender, me):
        recipient = "you" if same_name(message.recipient, me) else message.recipient
        who: tuple[Segment, ...] = (("1", "you"), ("", " -> "), _name(recipient, me))
    else:
        who = (_name(message.sender, me), ("", " -> "), ("1", "you"))
    return (time, ("35", "["), *who, ("35", "]"), ("", " "), text)


def mentions(text: str, me: str) -> list[tuple[int, int]]:
    """Where `me` stands as a word in `text` (as `safe` shows it), in any case (`Alice,`,
    `@alice`, `ALICE!` and `alice's` for alice): each place's start and end. Not where
    it is part of something longer: a word (`alice2`, `अमिता` for अमित, whose last letter
    takes a vowel sign), a name (`alice.b`, `x-alice`), an e-mail address
    (`alice@example.com`), a link (`example.com/alice`), or after a backslash (an escape
    `safe` wrote: `\\x1b` does not name `x1b`; a path). In writing with no spaces
    between words (Chinese, Japanese, Thai; Korean, whose particles join the name), a
    name among letters of the same writing is one all the same (`你好张伟`, `김철수님`),
    but for a vowel sign on its last letter there too (`สมุด` is not สม)."""
    if not me:
        return []
    key = safe_name(me).translate(_FOLDS)
    folded, starts = _folded(text, key)
    places: list[tuple[int, int]] = []
    at = folded.find(key)
    while at >= 0 and key:
        start, end = bisect.bisect_left(starts, at), bisect.bisect_left(starts, at + len(key))
        whole = start < len(starts) and starts[start] == at and starts[end] == at + len(key)
        if whole and _alone(text, start - 1, start, -1) and _alone(text, end, end - 1, 1):
            places.append((start, end))
            at = folded.find(key, at + len(key))
        else:
            at = folded.find(key, at + 1)
    return places


def word_character(char: str) -> bool:
    """Whether `char` goes on a word: a letter, a digit, `_`, or a mark (a vowel sign)."""
    return char.isalnum() or char == "_" or unicodedata.category(char).startswith("M")


_JOINERS = frozenset(".-@/")
"""Between two words, these make them one: a name (`a.b`), an address, a link's path."""
_UNSPACED = ("CJK ", "HIRAGANA", "KATAKANA", "HANGUL", "THAI", "LAO", "KHMER", "MYANMAR")
"""The beginnings of the Unicode names of the letters of writing without word spaces."""


def _alone(text: str, at: int, edge: int, away: int) -> bool:
    """Whether the name, whose letter at `edge` has its neighbour at `at` (the next one
    further `away`), ends there."""
    if not 0 <= at < len(text):
        return True
    neighbour = text[at]
    if away == -1 and neighbour == "\\":
        return False  # inside an escape `safe` wrote (`\x1b` for an account `x1b`), or a path
    if away == 1 and unicodedata.category(neighbour).startswith("M"):
        return False  # a vowel sign or tone mark on the name's last letter: another word
    if word_character(neighbour):
        return _unspaced(neighbour) and _unspaced(text[edge])
    further = at + away
    return not (
        neighbour in _JOINERS and 0 <= further < len(text) and word_character(text[further])
    )


@functools.lru_cache(maxsize=4096)
def _unspaced(char: str) -> bool:
    return unicodedata.name(char, "").startswith(_UNSPACED)


def mentioning(text: str, me: str) -> tuple[Segment, ...]:
    """`text` (as `safe` shows it) in segments, `me` marked (`MENTION`) where it is named."""
    segments: list[Segment] = []
    start = 0
    for begin, end in mentions(text, me):
        segments += [("", text[start:begin]), (MENTION, text[begin:end])]
        start = end
    segments.append(("", text[start:]))
    return tuple(segment for segment in segments if segment[1])


def _folded(text: str, key: str) -> tuple[str, Sequence[int]]:
    """`text` with each character folded (`_fold`), and where each character's folding
    starts in it, one more for its end: a name is found in any case and in full-width
    letters (`ＢＯＢ` is bob), only as whole characters of `text`. Where they start is
    counted only if the folded `key` is in it: most messages name nobody."""
    if text.isascii():
        return text.lower(), range(len(text) + 1)
    folded = text.translate(_FOLDS)
    if key not in folded:
        return folded, range(len(folded) + 1)
    sizes = (len(_FOLDS[ord(char)]) for char in text)
    return folded, [0, *itertools.accumulate(sizes)]


def _fold(char: str) -> str:
    """A character as names are told apart (`names.name_key`: compatibility forms and case
    set aside), decomposed, so that one character folds alike alone and in a word."""
    return unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", char).casefold())


class _Folds(dict[int, str]):
    """Each character's `_fold` by its code point, for `str.translate`: a message is
    folded at the speed of a search, not a call for each character (`mentions` reads
    every message shown). At most `LIMIT` are kept, a text of rare characters being no
    way to fill the memory."""

    LIMIT = 1 << 16

    def __missing__(self, code: int) -> str:
        folded = _fold(chr(code))
        if len(self) < self.LIMIT:
            self[code] = folded
        return folded


_FOLDS = _Folds()


def pending_line(text: str, to: str | None, me: str) -> Line:
    """What you typed while not connected, shown at once, dim: it goes out once connected."""
    who: tuple[Segment, ...] = (
        (("", "["), ("1", "you"), ("", " -> "), _name(to, me), ("", "] "))
        if to is not None
        else (_name(me, me), ("", ": "))
    )
    return ((DIM, "[waiting] "), *who, (DIM, safe(text)), (DIM, " (goes out once connected)"))


def joined_line(event: Joined, me: str, now: datetime | None = None) -> Line:
    return (
        (DIM, stamp(event.ts, now) + " "),
        (DIM, "* "),
        _name(event.name, me),
        (DIM, " joined the room"),
    )


_LEFT_HOW = {
    "quit": "",
    "timeout": " (no longer answering)",
    "overloaded": " (server overloaded)",
    "removed": " (taken out by the operator)",
    "banned": " (their address turned away by the operator)",
    "too_many_sessions": " (too many sessions from their new address)",
    "password_changed": " (their password changed elsewhere)",
}


def left_how(reason: str) -> str:
    """What follows "left the room" for a daemon's reason: ` (no longer answering)`."""
    return _LEFT_HOW.get(reason, f" ({safe(reason)})")


def left_line(event: Left, me: str, now: datetime | None = None) -> Line:
    how = left_how(event.reason)
    return (
        (DIM, stamp(event.ts, now) + " "),
        (DIM, "* "),
        _name(event.name, me),
        (DIM, " left the room" + how),
    )


def unsaid_line(message: PublicMessage, me: str, when: datetime) -> Line:
    """`[12:05:00] * the operator removed alice's message of 12:00:01` (`your message`)."""
    whose: tuple[Segment, ...] = (
        ((DIM, "your"),)
        if same_name(message.sender, me)
        else (_name(message.sender, me), (DIM, "'s"))
    )
    return (
        (DIM, stamp(when) + " "),
        (DIM, "* the operator removed "),
        *whose,
        (DIM, f" message of {stamp(message.ts, when)[1:-1]}"),
    )


def notice_line(text: str, when: datetime, style: str = WARN) -> Line:
    """A line from the server or about the connection; `text` is made safe here."""
    return ((DIM, stamp(when, when) + " "), (style, "* " + safe(text)))


def info_line(text: str, style: str = "") -> Line:
    """An answer to a command (already safe: callers escape what came from elsewhere)."""
    return ((style, text),)


def heading_line(text: str) -> Line:
    return ((HEADING, f"-- {text} --"),)


def names_line(names: list[str], me: str) -> Line:
    """`Online (2): alice, bob`, each name in its colour (`Online (0): nobody`)."""
    if not names:
        return (("", "Online (0): nobody"),)
    segments: list[Segment] = [("", f"Online ({len(names)}): ")]
    for index, name in enumerate(names):
        if index:
            segments.append(("", ", "))
        segments.append(_name(name, me))
    return tuple(segments)


CONTINUED: Segment = (DIM, "  \u2506 ")
"""What starts every row of a line after its first, where the terminal would wrap it."""
_MARKS = (CONTINUED, (DIM, "  \u00a6 "), (DIM, "  | "))
"""`CONTINUED`, and what stands for it in a terminal whose encoding lacks `┆`: `¦` in
Latin-1, `|` in ASCII."""


_EAST_ASIAN = frozenset(
    {"big5", "big5hkscs", "cp932", "cp949", "cp950", "euc_jis_2004", "euc_jisx0213", "euc_jp"}
    | {"euc_kr", "gb18030", "gb2312", "gbk", "hz", "iso2022_jp", "iso2022_kr", "johab"}
    | {"iso2022_jp_1", "iso2022_jp_2", "iso2022_jp_2004", "iso2022_jp_3", "iso2022_jp_ext"}
    | {"shift_jis", "shift_jis_2004", "shift_jisx0213"}
)
"""Encodings of East Asian terminals, which draw `┆` and `¦` two columns wide."""


@functools.cache
def east_asian(encoding: str | None) -> bool:
    """Whether `encoding` is an East Asian terminal's (Shift JIS, GBK, Big5, EUC-KR, ...)."""
    if not encoding:
        return False
    try:
        return codecs.lookup(encoding).name.replace("-", "_") in _EAST_ASIAN
    except LookupError:
        return False


@functools.cache
def continued(encoding: str | None) -> Segment:
    """The continuation mark a terminal of `encoding` can show (`CONTINUED` in UTF-8), one
    column wide as counted (`|` in an East Asian encoding, which draws the others wide)."""
    if east_asian(encoding):
        return _MARKS[-1]
    return next(mark for mark in _MARKS if encodable((mark,), encoding) == (mark,))


def columns(cluster: str, wide_ambiguous: bool = False) -> int:
    """The columns a terminal may give one grapheme cluster, counted high where terminals
    differ: the most of its width as a whole (`❤️` is 2) and of its characters one by one
    (a ZWJ emoji sequence some terminals draw in parts; a spacing vowel sign such as
    U+093E, 1, where the width tables say 0). Counted low, a row of such characters would
    run past the edge, and the terminal would wrap it with no mark: a row that passes for
    a line of its own. With `wide_ambiguous` (a terminal of an East Asian encoding, where
    they are two bytes and drawn two columns wide), a character of East Asian Ambiguous
    width (`①`, `○`, Greek and Cyrillic letters) counts two."""
    return _columns(cluster, 2 if wide_ambiguous else 1)


def get_cwidth(text: str) -> int:
    """prompt_toolkit's width of `text`, which the terminal's prompt lays out by. Read from
    it when first asked: every command shows lines, but only `chat` at a terminal needs
    prompt_toolkit, which takes 60-80 ms of CPU to read."""
    from prompt_toolkit.utils import get_cwidth as width

    return width(text)


@functools.lru_cache(maxsize=4096)
def _columns(cluster: str, ambiguous: int) -> int:
    each = sum(max(get_cwidth(char), spacing_mark(char)) for char in cluster)
    return max(wcwidth.width(cluster, ambiguous_width=ambiguous), each)


def spacing_mark(char: str) -> bool:
    """A spacing vowel sign or other spacing mark (general category Mc, `ा`): 0 columns by
    the width tables, 1 as terminals draw it."""
    return unicodedata.category(char) == "Mc"


def encodable(line: Line, encoding: str | None) -> Line:
    """`line` with what `encoding` (a terminal's) cannot hold escaped (`\\u5f20` for 张 in
    Latin-1), before it is folded: written as it is, the terminal would show `?` for each,
    and two names in Chinese would look the same."""
    if not encoding or encoding.replace("-", "").lower() == "utf8":
        return line
    try:
        return tuple(
            (style, text.encode(encoding, "backslashreplace").decode(encoding))
            for style, text in line
        )
    except LookupError:  # an encoding Python does not know: left to the stream
        return line


def fold(line: Line, width: int, encoding: str | None = None) -> list[Line]:
    """`line` in rows of fewer than `width` columns, each after the first starting with
    `CONTINUED`: however a message is padded, no row of it passes for a line of its own
    (from someone else, say). Rows end between words where a space falls in the row's
    second half (the one space a fold stands for is not shown), else where the row is
    full, and never inside a grapheme cluster (a flag, an emoji sequence, a letter and
    its marks). Wide characters (CJK, most emoji) take two columns (`columns`). For a
    terminal of another `encoding` than UTF-8, what it lacks is escaped first
    (`encodable`), and the mark is one it can show; in an East Asian encoding a character
    of ambiguous width counts two columns, as such terminals draw it."""
    line = encodable(line, encoding)
    mark = continued(encoding)
    wide = east_asian(encoding)
    room = width - 1  # a row that fills the last column makes some terminals wrap twice
    indent = get_cwidth(mark[1])
    if room <= indent + 8:
        return [line]
    units = [
        (part, unit)
        for part, (_style, text) in enumerate(line)
        for cluster in wcwidth.iter_graphemes(text)
        # A cluster wider than a row (a letter under a hundred vowel signs) goes in parts.
        for unit in (cluster if columns(cluster, wide) > room - indent else (cluster,))
    ]
    rows: list[Line] = []
    start, column = 0, 0
    while True:
        end, space, space_column = start, -1, 0
        while end < len(units):
            width_of = columns(units[end][1], wide)
            if column + width_of > room and end > start:
                break
            if units[end][1] == " ":
                space, space_column = end, column
            column += width_of
            end += 1
        if end == len(units):
            rows.append(_row(line, units[start:], mark if rows else None))
            return rows
        if units[end][1] == " ":
            cut, after = end, end + 1
        elif space > start and 2 * space_column >= room:
            cut, after = space, space + 1
        else:
            cut, after = end, end
        rows.append(_row(line, units[start:cut], mark if rows else None))
        if after == len(units):  # the line ended with the space this fold stands for
            return rows
        start, column = after, indent


def _row(line: Line, units: list[tuple[int, str]], mark: Segment | None) -> Line:
    """A row of `units` (each with the index of its segment in `line`), in its styles,
    after `mark` if it continues the line."""
    row: list[Segment] = [mark] if mark is not None else []
    for part, group in itertools.groupby(units, key=operator.itemgetter(0)):
        row.append((line[part][0], "".join(unit for _part, unit in group)))
    return tuple(row)


def counted(count: int, one: str, many: str | None = None) -> str:
    """`1 session`, `2 sessions`; `1 person`, `2 people` with `many` given."""
    return f"{count} {one if count == 1 else many or one + 's'}"


def told(error: ChatError) -> str:
    """An error's sentence as a person is shown it: the daemon's own, safe, but for a
    ban's end, told in the local time (the daemon says it in UTC)."""
    if isinstance(error, Banned) and error.until is not None:
        try:
            ends = datetime.fromtimestamp(math.ceil(error.until)).astimezone()
        except (OverflowError, ValueError, OSError):
            return safe(error.message)
        return BANNED_UNTIL.format(f"{ends:%Y-%m-%d %H:%M:%S} {ends:%Z}")
    return safe(error.message)


def missed_sentence(count: int) -> str:
    """What to say of events dropped because they came faster than they were shown."""
    return (
        f"Too much came in at once: {counted(count, 'event')} skipped; "
        "/history shows the messages among them."
    )


def to_plain(line: Line) -> str:
    return "".join(text for _style, text in line)


def uncoloured(style: str) -> str:
    """`style` without its colours: bold and dim stay (for NO_COLOR, a dumb terminal)."""
    return ";".join(part for part in style.split(";") if part and int(part) < 30)


def to_ansi(line: Line, *, colour: bool = True) -> str:
    """`line` for a terminal; without `colour`, with its bold and dim only."""
    parts: list[str] = []
    for style, text in line:
        shown = style if colour else uncoloured(style)
        parts.append(f"\x1b[{shown}m{text}\x1b[0m" if shown else text)
    return "".join(parts)
