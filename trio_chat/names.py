"""Account names that cannot pass for another account's name.

Pure functions over strings, plus `ConfusableIndex`, the small structure the daemon keeps to
compare a new name with its accounts' names. Nothing here does I/O except reading the
package's own data file, once, on first use.

What a name must be (`check_name`), in the order checked:

1. No invisible or formatting character, as typed: no control, format (Cf), space,
   surrogate, private-use or unassigned code point, nothing Default_Ignorable_Code_Point
   (U+034F COMBINING GRAPHEME JOINER, variation selectors such as U+FE0F and U+180B,
   U+17B4 KHMER VOWEL INHERENT AQ, the Hangul fillers U+115F, U+1160, U+3164 and U+FFA0,
   ...), and none of the blank letters and symbols listed in `INVISIBLE` (U+16FE4
   KHITAN SMALL SCRIPT FILLER, U+2800 BRAILLE PATTERN BLANK, ...).
2. The display form is the NFKC normalisation of what was typed, as it always has been
   (`ａｌｉｃｅ` is `alice`). NFKC does all that the PRECIS width-mapping rule does and more;
   for any string PRECIS accepts without it, the result is the same.
3. 1 to `NAME_MAX_CHARS` characters; only letters (L*), marks (M*), decimal digits (Nd),
   `_`, `-` and `.`; the first a letter or a digit; no character whose UTS #39
   Identifier_Status is not Allowed and that either has an Identifier_Type among Technical,
   Obsolete, Not_XID, Not_NFKC, Default_Ignorable and Deprecated, or is a mark (M*) whose
   Identifier_Type includes Uncommon_Use. So a character that is not Allowed only for being
   of limited or uncommon use, or of a script UTS #39 excludes from identifiers
   (Identifier_Type Limited_Use, Uncommon_Use, Exclusion), passes, and so do the marks of
   limited use and those of the excluded scripts (each of one script, which rule 4 keeps to
   its letters): the scripts of living communities, with their vowel signs and tone marks
   (Cherokee `ᏣᎳᎩ`, Inuktitut `ᐃᓄᒃᑎᑐᑦ` in Canadian syllabics, Tifinagh `ⵜⴰⵎⴰⵣⵉⵖⵜ`, Javanese
   `ꦧꦸꦝꦶ`, N'Ko `ߒߞߏ߫`, Syriac `ܡܰܪܝܰܡ`, Mongolian `ᠮᠣᠩᠭᠣᠯ`, Baybayin `ᜊᜌ᜔ᜊᜌᜒᜈ᜔`, Yi,
   Bopomofo, Toto, Tangsa, ...), the historic scripts (Runic, Gothic, ...), and the rarer
   letters of real names (`山﨑`, `𠮷田`, `濵田`, Romanian `Ţ` with a cedilla). A mark of
   uncommon use does not, for a font may draw it where nobody looks: `bob` + U+0358
   COMBINING DOT ABOVE RIGHT (Uncommon_Use) shows as `bob`. Refused with it are the Hebrew
   vowel points and accents but the six that Yiddish spelling writes in every word
   (`YIDDISH_POINTS`: אַ, אָ, יִ, פּ, פֿ, שׂ) and the Quranic annotation signs of Arabic
   (Uncommon_Use), U+1DCA COMBINING LATIN SMALL LETTER R BELOW (Technical); and, marks or
   not, polytonic Greek and conjoining Hangul jamo (Obsolete) and Latin alpha `ɑ`
   (Technical). José,
   Łukasz, Nguyễn, 张伟, さくら, 김철수, Анна, Ελένη, محمد, שלום, नमस्ते, สมชาย, রবীন্দ্রনাথ and
   தமிழ் pass.
4. UTS #39 "Highly Restrictive": one script, or Latin with Han and Hiragana and Katakana,
   or Latin with Han and Bopomofo, or Latin with Han and Hangul. Scripts are taken from
   Script_Extensions; Common and Inherited characters (digits, `_`, `-`, `.`, most
   combining marks) go with any script. A name in one script of limited use passes
   (`ᏣᎳᎩ`); mixed with Latin it does not. A character the data does not know is refused.
5. UTS #39 section 5.3: all decimal digits from one set (no `١` beside `2`).
6. RFC 8265 (PRECIS) UsernameCasePreserved, as implemented by `precis_i18n`: the
   IdentifierClass (which refuses, for instance, titlecase letters such as U+1F88,
   enclosing marks and conjoining Hangul jamo), its context rules, NFC, and the RFC 5893
   bidi rule for names holding right-to-left characters (`محمد` passes; a name that
   mixes directions, or a right-to-left name that starts with a digit or ends with `_`,
   `-` or `.`, does not).
7. UTS #39 section 5.4: at most 4 nonspacing marks in a row, never the same one twice on
   one letter, and no dot above a letter that already has one (`i` + U+0307 looks like
   `i`; checked on the confusable prototype, so `ı` + U+0307 is caught too).

Every refusal is a `RuleError("invalid_name", ...)` whose message names the offending
character as `U+XXXX NAME` and never contains it raw. The rules are for new names: an
account registered under earlier rules keeps its name and logs in with it as before.

Identity (`name_key`) is unchanged: NFKC, Unicode default case folding, NFKC again, so
`Alice`, `ALICE` and `ａｌｉｃｅ` are one account and the keys the daemon has already stored
stay valid. For names `check_name` accepts this is the PRECIS UsernameCaseMapped profile
with case folding (the RFC 7613 mapping) instead of RFC 8265's toLowerCase: folding joins
more names into one account (`Straße` and `STRASSE`), the safer side for uniqueness.

Confusability (`confusable_keys`) follows the UTS #39 skeleton: NFD, drop
Default_Ignorable_Code_Point, replace each character by its confusables.txt prototype, NFD
again. A name is known by its case-insensitive identity, so people meet it in several
casings; a name's keys are the skeletons of the forms it is likely to be seen or written
in: as registered, lower case, case-folded, UPPER CASE, Capitalized and Title Case (a dot
above that a dotted letter hides is dropped: `İpek` in lower case is `i` + U+0307 + `pek`,
which shows as `ipek`). Two accounts clash when any key of one equals any key of the other.
Comparing only the display forms would let `aIice` (capital I) stand beside an account
shown as `Alice` or `ALICE`, and `ALlCE` beside `alice`, since the owner of `alice` is just
as much `ALICE`; comparing only folded forms would miss exactly these, because folding
turns the capital `I` that looks like `l` into an `i` that does not. Trying every casing of
every letter (2^n for n letters) would cost too much; these six forms are the casings
people use.

Data: Unicode 17.0.0 (confusables.txt, IdentifierStatus.txt and IdentifierType.txt of the
UTS #39 security data; Scripts.txt, ScriptExtensions.txt, PropertyValueAliases.txt,
DerivedCoreProperties.txt, PropList.txt and DerivedGeneralCategory.txt of the Unicode
Character Database), taken from the unicode-org/unicodetools repository and trimmed to
`data/unicode_names.json` by `scripts/refresh_unicode_data.py`. Character categories,
case mapping and normalisation come from the Python runtime's `unicodedata` (Unicode
14.0.0 on Python 3.11); characters the runtime does not know are unassigned to it and
refused. The characters rule 3 refuses are listed in the data file (`identifier_refused`),
which takes "is a mark" from DerivedGeneralCategory.txt, of the same version as the
identifier data, so that it need not list the Allowed characters as well; of the
characters of uncommon use that the runtime knows, it takes the same ones for marks.
"""

from __future__ import annotations

import bisect
import json
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Generic, NoReturn, TypeVar

from precis_i18n import get_profile

from .rules import NAME_MAX_CHARS, RuleError

__all__ = [
    "INVISIBLE",
    "MAX_MARKS_IN_A_ROW",
    "ConfusableIndex",
    "check_name",
    "confusable_keys",
    "name_key",
    "skeleton",
    "unicode_version",
]

_NAME_PUNCTUATION = frozenset("_-.")
MAX_MARKS_IN_A_ROW = 4
"""UTS #39 section 5.4: more nonspacing marks than this in a row are refused."""

MAX_INPUT_CHARS = 8 * NAME_MAX_CHARS
"""Longer input is refused before any normalisation (no name that long is valid)."""

INVISIBLE = frozenset(
    {
        "\u115f",  # HANGUL CHOSEONG FILLER
        "\u1160",  # HANGUL JUNGSEONG FILLER
        "\u3164",  # HANGUL FILLER
        "\uffa0",  # HALFWIDTH HANGUL FILLER
        "\U00016fe4",  # KHITAN SMALL SCRIPT FILLER (a nonspacing mark, not default-ignorable)
        "\u2800",  # BRAILLE PATTERN BLANK
        "\U0001d159",  # MUSICAL SYMBOL NULL NOTEHEAD
    }
)
"""Characters that show nothing, beyond Default_Ignorable_Code_Point (which is refused too)."""

_DOT_ABOVE = "\u0307"
_CCC_ABOVE = 230

# UTS #39 section 5.1: a script set is augmented with the writing systems it belongs to.
_AUGMENTED = {
    "Hani": ("Hanb", "Jpan", "Kore"),
    "Hira": ("Jpan",),
    "Kana": ("Jpan",),
    "Hang": ("Kore",),
    "Bopo": ("Hanb",),
}
_ANY_SCRIPT = ("Zyyy", "Zinh")
_WITH_LATIN = frozenset({"Jpan", "Hanb", "Kore"})
"""UTS #39 "Highly Restrictive": Latin may join Han+Hiragana+Katakana, Han+Bopomofo, Han+Hangul."""

_OPTIONAL_VOWEL_MARKS = {
    # Tashkil: fathatan, dammatan, kasratan, fatha, damma, kasra, shadda, sukun; and the
    # superscript (dagger) alef. Not hamza or madda: they are part of the letter.
    "Arab": ((0x064B, 0x0652), (0x0670, 0x0670)),
    # Cantillation accents and niqqud: every nonspacing mark of the Hebrew block, and
    # HEBREW POINT JUDEO-SPANISH VARIKA.
    "Hebr": (
        (0x0591, 0x05BD),
        (0x05BF, 0x05BF),
        (0x05C1, 0x05C2),
        (0x05C4, 0x05C5),
        (0x05C7, 0x05C7),
        (0xFB1E, 0xFB1E),
    ),
    # Vowel points and the other points (qushshaya, rukkakha, ...).
    "Syrc": ((0x0730, 0x074A),),
}
"""Marks of scripts mostly written without them: vowel signs and other points that
readers supply themselves and that everyday text leaves out (see `confusable_keys`)."""

T = TypeVar("T")


class _Ranges(Generic[T]):
    """Values by code point, from sorted, non-overlapping inclusive ranges."""

    def __init__(self, rows: Iterable[tuple[int, int, T]]) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._values: list[T] = []
        for start, end, value in rows:
            self._starts.append(start)
            self._ends.append(end)
            self._values.append(value)

    def get(self, point: int) -> T | None:
        index = bisect.bisect_right(self._starts, point) - 1
        if index >= 0 and point <= self._ends[index]:
            return self._values[index]
        return None

    def __contains__(self, point: object) -> bool:
        return isinstance(point, int) and self.get(point) is not None

    def points(self) -> Iterator[int]:
        for start, end in zip(self._starts, self._ends, strict=True):
            yield from range(start, end + 1)


@dataclass(frozen=True)
class _Script:
    """A character's Script_Extensions: its codes, and the augmented set (None: any)."""

    codes: tuple[str, ...]
    augmented: frozenset[str] | None


@dataclass(frozen=True)
class _Data:
    version: str
    skeleton_table: dict[int, str | None]
    scripts: _Ranges[_Script]
    script_names: dict[str, str]
    default_ignorable: _Ranges[bool]
    soft_dotted: _Ranges[bool]
    identifier_refused: _Ranges[bool]
    """Rule 3's characters: not Allowed, and a refused Identifier_Type or a mark of
    uncommon use."""
    identifier_types: _Ranges[str]
    optional_marks: dict[tuple[str, ...], frozenset[str]]
    """For a letter's Script_Extensions, the confusable prototypes of the optional vowel
    marks of its scripts (none for most)."""


def _hex_ranges(rows: Sequence[Sequence[str]]) -> Iterator[tuple[int, int, str]]:
    for row in rows:
        yield int(row[0], 16), int(row[1], 16), row[2] if len(row) > 2 else ""


@cache
def _data() -> _Data:
    text = (resources.files("trio_chat") / "data" / "unicode_names.json").read_text("utf-8")
    raw = json.loads(text)
    default_ignorable = _Ranges((s, e, True) for s, e, _ in _hex_ranges(raw["default_ignorable"]))
    table: dict[int, str | None] = {
        int(source, 16): "".join(chr(int(part, 16)) for part in target.split())
        for source, target in raw["confusables"]
    }
    for point in default_ignorable.points():
        table[point] = None
    scripts: dict[str, _Script] = {}
    for value in {row[2] for row in raw["scripts"]}:
        codes = tuple(value.split())
        augmented: frozenset[str] | None = None
        if not any(code in _ANY_SCRIPT for code in codes):
            augmented = frozenset(
                [*codes, *(extra for code in codes for extra in _AUGMENTED.get(code, ()))]
            )
        scripts[value] = _Script(codes, augmented)
    prototypes = {
        code: frozenset(
            table.get(point) or chr(point)
            for start, end in ranges
            for point in range(start, end + 1)
        )
        for code, ranges in _OPTIONAL_VOWEL_MARKS.items()
    }
    optional_marks = {
        script.codes: frozenset().union(*(prototypes.get(code, ()) for code in script.codes))
        for script in scripts.values()
        if any(code in prototypes for code in script.codes)
    }
    return _Data(
        version=raw["unicode_version"],
        skeleton_table=table,
        scripts=_Ranges((s, e, scripts[v]) for s, e, v in _hex_ranges(raw["scripts"])),
        script_names=dict(raw["script_names"]),
        default_ignorable=default_ignorable,
        soft_dotted=_Ranges((s, e, True) for s, e, _ in _hex_ranges(raw["soft_dotted"])),
        identifier_refused=_Ranges(
            (s, e, True) for s, e, _ in _hex_ranges(raw["identifier_refused"])
        ),
        identifier_types=_Ranges(_hex_ranges(raw["identifier_types"])),
        optional_marks=optional_marks,
    )


_PROFILE = get_profile("UsernameCasePreserved")


def unicode_version() -> str:
    """The Unicode version of the script and confusable data (the runtime's may differ)."""
    return _data().version


# --- identity and confusability -------------------------------------------------------


def invisible_ranges() -> list[tuple[int, int]]:
    """Code points that show nothing: Default_Ignorable_Code_Point and `INVISIBLE`, as
    sorted inclusive ranges."""
    data = _data()
    ranges = list(zip(data.default_ignorable._starts, data.default_ignorable._ends, strict=True))
    ranges += [(ord(char), ord(char)) for char in INVISIBLE]
    return sorted(ranges)


def name_key(name: str) -> str:
    """The identity of a name: NFKC, case folded, NFKC again (so `Alice` is `alice`).

    Defined for any text (a login names an account with whatever the person typed).
    """
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def skeleton(text: str) -> str:
    """The UTS #39 skeleton: NFD, ignorables dropped, prototypes substituted, NFD again."""
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFD", decomposed.translate(_data().skeleton_table))


def _forms(display: str) -> set[str]:
    """The casings a name is likely to be seen or written in (see the module docstring)."""
    return {
        display,
        display.lower(),
        name_key(display),
        display.upper(),
        display.capitalize(),
        display.title(),
    }


def _without_hidden_dots(text: str, data: _Data) -> str:
    """`text` without the U+0307 DOT ABOVE that a dotted letter before it hides.

    The lower case of `İ` (U+0130) is `i` + U+0307, which shows as `i`: `İpek` written in
    lower case looks like `ipek` (the same rule as in `check_name`, which refuses such a dot).
    """
    kept: list[str] = []
    dotted = False
    for char in text:
        combining = unicodedata.combining(char)
        if combining == 0:
            dotted = ord(char) in data.soft_dotted
        elif combining == _CCC_ABOVE:
            hidden = dotted and char == _DOT_ABOVE
            dotted = False
            if hidden:
                continue
        kept.append(char)
    return "".join(kept)


def _without_optional_marks(text: str, data: _Data) -> str | None:
    """`text` (in NFC) without the marks a reader takes no notice of, or None if it has none.

    On a letter of a script mostly written without its vowel signs (Arabic, Hebrew,
    Syriac), every mark that looks like one of them (has the confusable prototype of one of
    `_OPTIONAL_VOWEL_MARKS`); on a letter a new name may hold, every nonspacing mark that
    rule 3 refuses (only names stored before that rule can have one: `bob` + U+0358, or
    `ᏣᎳᎩ` + U+0358). A mark a new name may hold stays, though Unicode does not recommend
    it: the vowel signs of Javanese `ꦧꦸꦝꦶ` (Limited_Use) make another name than `ꦧꦝ`.
    Marks are taken as NFC leaves them: the dakuten of `が` or the madda of `آ` are part of
    a letter a name may hold, though a name may not hold them alone.
    """
    kept: list[str] = []
    dropped = False
    base = ""
    optional: frozenset[str] | None = None  # looked up at the base's first mark
    for char in unicodedata.normalize("NFC", text):
        category = unicodedata.category(char)
        if category[0] == "M" and base:
            if optional is None:
                script = data.scripts.get(ord(base))
                optional = (
                    data.optional_marks.get(script.codes, frozenset()) if script else frozenset()
                )
            point = ord(char)
            if (data.skeleton_table.get(point) or char) in optional or (
                category == "Mn"
                and point in data.identifier_refused
                and ord(base) not in data.identifier_refused
            ):
                dropped = True
                continue
        elif category[0] != "M":
            base, optional = char, None
        kept.append(char)
    return "".join(kept) if dropped else None


def confusable_keys(name: str) -> frozenset[str]:
    """The skeletons of a name's usual casings, with and without its optional marks: two
    names clash when they share one.

    Defined for any text, so that names stored before today's rules can be compared too.
    """
    data = _data()
    display = unicodedata.normalize("NFKC", name)
    keys: set[str] = set()
    for form in _forms(display):
        keys.add(_without_hidden_dots(skeleton(form), data))
        bare = _without_optional_marks(form, data)
        if bare is not None:
            keys.add(_without_hidden_dots(skeleton(bare), data))
    return frozenset(keys)


class ConfusableIndex:
    """The confusable keys of the daemon's accounts, to refuse names mistaken for theirs."""

    def __init__(self) -> None:
        self._accounts: dict[str, dict[str, int]] = {}

    def add(self, display_name: str, account_key: str) -> None:
        """Index an account under its display name."""
        for key in confusable_keys(display_name):
            holders = self._accounts.setdefault(key, {})
            holders[account_key] = holders.get(account_key, 0) + 1

    def remove(self, display_name: str, account_key: str) -> None:
        """Forget what `add` indexed for this name and account (nothing, if it never was)."""
        for key in confusable_keys(display_name):
            holders = self._accounts.get(key)
            if holders is None or account_key not in holders:
                continue
            holders[account_key] -= 1
            if holders[account_key] == 0:
                del holders[account_key]
            if not holders:
                del self._accounts[key]

    def clash(self, display_name: str) -> str | None:
        """The key of another account whose name could be mistaken for this one, or None.

        The same account (equal `name_key`) never clashes with itself. When several clash,
        the smallest key is returned, so the answer does not depend on insertion order.
        """
        own = name_key(display_name)
        found = {
            account
            for key in confusable_keys(display_name)
            for account in self._accounts.get(key, ())
            if account != own
        }
        return min(found) if found else None

    def collisions(self) -> list[tuple[str, str]]:
        """Pairs of indexed accounts (smaller key first, sorted) whose names clash."""
        pairs: set[tuple[str, str]] = set()
        for holders in self._accounts.values():
            if len(holders) > 1:
                accounts = sorted(holders)
                for index, first in enumerate(accounts):
                    pairs.update((first, second) for second in accounts[index + 1 :])
        return sorted(pairs)


# --- validation -------------------------------------------------------------------------


_ONLY = "A name may hold only letters, digits, '_', '-' and '.'"


def _refuse(message: str) -> NoReturn:
    raise RuleError("invalid_name", message)


def _describe(char: str) -> str:
    """`U+XXXX NAME`, safe to show whatever the character is (it is never shown raw)."""
    point = ord(char)
    name = unicodedata.name(char, "")
    if not name:
        category = unicodedata.category(char)
        name = {
            "Cc": "(a control character)",
            "Cs": "(a surrogate, not a character)",
            "Co": "(a private-use character)",
        }.get(category, "(not an assigned character)")
    return f"U+{point:04X} {name}"


def _check_visible(name: str, data: _Data) -> None:
    """Refuse, as typed, characters that show nothing or are not text at all."""
    for char in name:
        category = unicodedata.category(char)
        point = ord(char)
        if category == "Cs":
            _refuse(f"A name must be valid Unicode text, without {_describe(char)}.")
        if category == "Cc":
            _refuse(f"A name cannot contain {_describe(char)}.")
        if category[0] == "Z":
            # A plain space needs no code point to be recognised; the others do.
            which = "" if char == " " else f" such as {_describe(char)}"
            _refuse(f"{_ONLY}, not spaces{which}.")
        if category == "Cf" or char in INVISIBLE or point in data.default_ignorable:
            _refuse(f"A name cannot contain {_describe(char)}, which is invisible.")
        if category in ("Co", "Cn"):
            _refuse(f"A name cannot contain {_describe(char)}.")


def _check_characters(display: str, data: _Data) -> None:
    if not 1 <= len(display) <= NAME_MAX_CHARS:
        _refuse(
            f"A name must be 1 to {NAME_MAX_CHARS} characters long (this one has {len(display)})."
        )
    for char in display:
        category = unicodedata.category(char)
        if not (category[0] in "LM" or category == "Nd" or char in _NAME_PUNCTUATION):
            _refuse(f"{_ONLY}, not {_describe(char)}.")
        if char in INVISIBLE or ord(char) in data.default_ignorable:
            _refuse(f"A name cannot contain {_describe(char)}, which is invisible.")
        if ord(char) in data.identifier_refused and char not in YIDDISH_POINTS:
            _refuse_restricted(char, data)
    first = unicodedata.category(display[0])
    if not (first[0] == "L" or first == "Nd"):
        _refuse(f"A name must start with a letter or a digit, not {_describe(display[0])}.")


YIDDISH_POINTS = frozenset("\u05b4\u05b7\u05b8\u05bc\u05bf\u05c2")
"""HEBREW POINT HIRIQ, PATAH, QAMATS, DAGESH, RAFE and SIN DOT: of uncommon use in Hebrew,
which leaves its vowels out, and part of every word in Yiddish spelling (אַ, אָ, פּ, פֿ, ײַ,
יִ, שׂ). Rule 3 takes them; a name holding them still clashes with the same name without
them."""

_CONJOINING_JAMO = ("HANGUL CHOSEONG ", "HANGUL JUNGSEONG ", "HANGUL JONGSEONG ")


def _refuse_restricted(char: str, data: _Data) -> NoReturn:
    """Refuse a character of `identifier_refused` (rule 3)."""
    if data.identifier_types.get(ord(char)) == "Deprecated":
        _refuse(f"A name cannot contain {_describe(char)}, which Unicode deprecates.")
    if unicodedata.name(char, "").startswith(_CONJOINING_JAMO):
        _refuse_jamo(char)
    _refuse(
        f"A name cannot contain {_describe(char)}, which Unicode does not recommend in identifiers."
    )


def _refuse_jamo(char: str) -> NoReturn:
    _refuse(
        f"A name cannot contain {_describe(char)}, a conjoining Hangul letter: "
        "write Hangul as whole syllables."
    )


def _script_label(script: _Script, data: _Data) -> str:
    return " or ".join(data.script_names.get(code, code) for code in script.codes)


def _check_scripts(display: str, data: _Data) -> None:
    """UTS #39 section 5.2, Highly Restrictive, with the offending characters named."""
    resolved: frozenset[str] | None = None  # None: any script so far
    without_latin: frozenset[str] | None = None
    earlier: list[tuple[str, _Script]] = []  # the characters of some script(s) so far
    for char in display:
        script = data.scripts.get(ord(char))
        if script is None:
            _refuse(
                f"A name cannot contain {_describe(char)}, which is newer than the "
                f"Unicode {data.version} data these rules know."
            )
        augmented = script.augmented
        if augmented is None:
            continue
        resolved = augmented if resolved is None else resolved & augmented
        if "Latn" not in augmented:
            without_latin = augmented if without_latin is None else without_latin & augmented
        if not resolved and not (without_latin and without_latin & _WITH_LATIN):
            other, other_script = next(
                ((c, s) for c, s in earlier if not (s.augmented or frozenset()) & augmented),
                earlier[0],
            )
            _refuse(
                f"A name cannot mix scripts: {_describe(char)} is "
                f"{_script_label(script, data)}, but {_describe(other)} is "
                f"{_script_label(other_script, data)}."
            )
        earlier.append((char, script))


def _precis(display: str) -> str:
    """RFC 8265 UsernameCasePreserved, its refusals turned into messages."""
    try:
        return _PROFILE.enforce(display)
    except UnicodeEncodeError as error:
        reason = error.reason.removeprefix("DISALLOWED/")
        if reason == "bidi_rule":
            _refuse(
                "A name with right-to-left letters must start with a letter, end with a "
                "letter or a digit, and hold no left-to-right letters."
            )
        if 0 <= error.start < len(display):
            char = display[error.start]
            if reason == "old_hangul_jamo":
                _refuse_jamo(char)
            _refuse(f"A name cannot contain {_describe(char)}.")
        _refuse("A name must keep its form when normalised again, and this one does not.")


def _check_marks(display: str, data: _Data) -> None:
    """UTS #39 section 5.4: no stacks of marks, no repeated mark, no hidden dot above."""
    decomposed = unicodedata.normalize("NFD", display)
    base = decomposed[0]
    above_seen = False
    run: list[str] = []
    for char in decomposed:
        if unicodedata.category(char) in ("Mn", "Me"):
            if char in run:
                _refuse(f"A name cannot put {_describe(char)} twice on one letter.")
            run.append(char)
            if len(run) > MAX_MARKS_IN_A_ROW:
                _refuse(
                    f"A name may put at most {MAX_MARKS_IN_A_ROW} marks on one letter, "
                    f"and {_describe(base)} has more."
                )
        else:
            run = []
        combining = unicodedata.combining(char)
        if combining == 0:
            base = char
            above_seen = False
        elif combining == _CCC_ABOVE and not above_seen:
            above_seen = True
            if skeleton(char) == _DOT_ABOVE and _is_dotted(base, data):
                _refuse(
                    f"A name cannot put {_describe(char)} on {_describe(base)}: "
                    "the letter's own dot hides it."
                )


def _is_dotted(char: str, data: _Data) -> bool:
    """Whether the letter (or the letter it looks like) already has a dot above: the last
    letter of its prototype, marks aside (`ɨ` and `ɉ` are `i` and `j` with a stroke
    through them, as `і` and `ĳ` are `i` and `ij`)."""
    letters = [part for part in skeleton(char) if not unicodedata.combining(part)]
    return bool(letters) and ord(letters[-1]) in data.soft_dotted


def _check_digits(display: str) -> None:
    """UTS #39 section 5.3: the decimal digits of a name come from one set."""
    first = ""
    zero = -1
    for char in display:
        if unicodedata.category(char) == "Nd":
            char_zero = ord(char) - unicodedata.decimal(char)
            if zero < 0:
                first, zero = char, char_zero
            elif char_zero != zero:
                _refuse(
                    f"A name must take its digits from one set: {_describe(char)} and "
                    f"{_describe(first)} differ."
                )


def check_name(name: str) -> str:
    """Validate a name and return its display form (NFKC), or raise `RuleError`."""
    if len(name) > MAX_INPUT_CHARS:
        _refuse(f"A name must be 1 to {NAME_MAX_CHARS} characters long.")
    data = _data()
    _check_visible(name, data)
    display = unicodedata.normalize("NFKC", name)
    _check_characters(display, data)
    _check_scripts(display, data)
    _check_digits(display)
    display = _precis(display)
    _check_marks(display, data)
    return display
