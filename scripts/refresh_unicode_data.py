#!/usr/bin/env python3
"""Regenerate `trio_chat/data/unicode_names.json` from Unicode data files on disk.

    .venv/bin/python scripts/refresh_unicode_data.py DIR_OR_FILE... [--output PATH]

Give the directories holding these files, or the files themselves, all of one Unicode
version (the script checks the version in each file's header and refuses a mix):

- from the Unicode Character Database (https://www.unicode.org/Public/<version>/ucd/):
  `Scripts.txt`, `ScriptExtensions.txt`, `PropertyValueAliases.txt`,
  `DerivedCoreProperties.txt`, `PropList.txt`, and `DerivedGeneralCategory.txt` (in
  the database's `extracted` folder, which the script also looks in);
- from the UTS #39 security data (https://www.unicode.org/Public/security/<version>/):
  `confusables.txt`, `IdentifierStatus.txt`, `IdentifierType.txt`.

The output keeps only what `trio_chat.names` uses, as code point ranges:

- `confusables`: each source code point and its prototype (confusables.txt);
- `scripts`: Script_Extensions of every assigned code point (Scripts.txt, overridden by
  ScriptExtensions.txt), adjacent ranges of one value merged, and `script_names`, the
  long name of each script code used (PropertyValueAliases.txt);
- `default_ignorable`: Default_Ignorable_Code_Point (DerivedCoreProperties.txt);
- `soft_dotted`: Soft_Dotted (PropList.txt);
- `identifier_refused`: the code points a new name may not hold for what UTS #39 says
  of them: Identifier_Status not Allowed (IdentifierStatus.txt) and either an
  Identifier_Type among `REFUSED_IDENTIFIER_TYPES` (IdentifierType.txt) or a mark
  (General_Category Mn, Mc or Me; DerivedGeneralCategory.txt) whose Identifier_Type
  includes `REFUSED_MARK_TYPE` (Uncommon_Use). Not listed: a character that is not
  Allowed only for being of limited or uncommon use or of a script UTS #39 excludes
  (Cherokee, `﨑`, Mongolian), and the marks of such scripts (the vowel signs of
  Javanese, N'Ko tone marks, the Baybayin virama);
- `identifier_types`: the code points whose UTS #39 Identifier_Type is Deprecated
  (IdentifierType.txt), which `names` refuses with a sentence of their own.

Each range is written on its own line, so that a refresh reads well as a diff.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "trio_chat" / "data" / "unicode_names.json"

UCD_FILES = (
    "Scripts.txt",
    "ScriptExtensions.txt",
    "PropertyValueAliases.txt",
    "DerivedCoreProperties.txt",
    "PropList.txt",
    "DerivedGeneralCategory.txt",
)
SECURITY_FILES = ("confusables.txt", "IdentifierStatus.txt", "IdentifierType.txt")
REQUIRED = UCD_FILES + SECURITY_FILES

REFUSED_IDENTIFIER_TYPES = (
    "Deprecated",
    "Default_Ignorable",
    "Not_NFKC",
    "Not_XID",
    "Obsolete",
    "Technical",
)
"""Identifier_Type values that refuse a character that is not Allowed: all the values a
character that is not Allowed can have but Limited_Use, Uncommon_Use, Exclusion and
Not_Character."""

REFUSED_MARK_TYPE = "Uncommon_Use"
"""The Identifier_Type that refuses a mark that is not Allowed, though not a letter: the
marks of a script in use (Limited_Use) or of an excluded one (Exclusion) are how that
script is written, but an uncommon mark on a common letter is one a font may draw where
nobody looks (U+0358 COMBINING DOT ABOVE RIGHT on `bob`)."""

KEPT_IDENTIFIER_TYPES = ("Deprecated",)
"""Identifier_Type values kept as such, for a sentence of their own."""

MARK_CATEGORIES = ("Mn", "Mc", "Me")

LICENSE = (
    "Derived from Unicode data files, (c) Unicode, Inc., "
    "under the Unicode License v3 (https://www.unicode.org/license.txt)."
)

_UCD_VERSION = re.compile(r"^#\s*[A-Za-z]+-(\d+\.\d+\.\d+)\.txt\s*$")
_SECURITY_VERSION = re.compile(r"^#\s*Version:\s*(\d+\.\d+\.\d+)\s*$")
_DATE = re.compile(r"^#\s*Date:\s*(.+?)\s*$")

Range = tuple[int, int, str]


class DataError(Exception):
    """The input files are missing, malformed or of mixed versions."""


def find_files(paths: Iterable[Path]) -> dict[str, Path]:
    """Map each required file name to the path given for it (directly or in a directory)."""
    found: dict[str, Path] = {}
    for path in paths:
        candidates = (
            [folder / name for folder in (path, path / "extracted") for name in REQUIRED]
            if path.is_dir()
            else [path]
        )
        for candidate in candidates:
            if candidate.name in REQUIRED and candidate.is_file():
                found.setdefault(candidate.name, candidate)
    missing = [name for name in REQUIRED if name not in found]
    if missing:
        raise DataError(f"missing input files: {', '.join(missing)}")
    return found


def header(name: str, text: str) -> tuple[str, str]:
    """The Unicode version and date that a data file states in its header comment."""
    version = date = ""
    for line in text.splitlines()[:20]:
        pattern = _SECURITY_VERSION if name in SECURITY_FILES else _UCD_VERSION
        if not version and (match := pattern.match(line)):
            version = match.group(1)
        if not date and (match := _DATE.match(line)):
            date = match.group(1)
    if not version:
        raise DataError(f"{name}: no Unicode version in its header")
    return version, date


def data_lines(text: str) -> Iterator[list[str]]:
    """The semicolon-separated fields of each data line, comments removed."""
    for line in text.splitlines():
        content = line.split("#", 1)[0].strip()
        if content:
            yield [field.strip() for field in content.split(";")]


def code_range(field: str) -> tuple[int, int]:
    first, _, last = field.partition("..")
    return int(first, 16), int(last or first, 16)


def merged(ranges: Iterable[Range]) -> list[Range]:
    """Sorted ranges with adjacent ranges of equal value joined."""
    result: list[Range] = []
    for start, end, value in sorted(ranges):
        if result and result[-1][2] == value and result[-1][1] + 1 == start:
            result[-1] = (result[-1][0], end, value)
        else:
            if result and start <= result[-1][1]:
                raise DataError(f"overlapping ranges at U+{start:04X}")
            result.append((start, end, value))
    return result


def property_ranges(text: str, wanted: str) -> list[tuple[int, int]]:
    """The code point ranges of one binary property in a UCD property file."""
    ranges = [
        (*code_range(fields[0]), "")
        for fields in data_lines(text)
        if len(fields) >= 2 and fields[1] == wanted
    ]
    if not ranges:
        raise DataError(f"no code point has the property {wanted}")
    return [(start, end) for start, end, _ in merged(ranges)]


def script_ranges(scripts_text: str, extensions_text: str, aliases_text: str) -> list[Range]:
    """Script_Extensions by code point range, as space-separated short script codes."""
    short = {}
    for fields in data_lines(aliases_text):
        if fields[0] == "sc" and len(fields) >= 3:
            short[fields[2]] = fields[1]
            short[fields[1]] = fields[1]
    values: dict[int, str] = {}
    for fields in data_lines(scripts_text):
        start, end = code_range(fields[0])
        code = short[fields[1]]
        for point in range(start, end + 1):
            values[point] = code
    for fields in data_lines(extensions_text):
        start, end = code_range(fields[0])
        codes = " ".join(sorted(short[name] for name in fields[1].split()))
        for point in range(start, end + 1):
            if point not in values:
                raise DataError(f"U+{point:04X} has Script_Extensions but no Script")
            values[point] = codes
    return merged((point, point, value) for point, value in values.items())


def script_names(aliases_text: str, used: Iterable[str]) -> dict[str, str]:
    """Long names of the script codes used, with underscores shown as spaces."""
    names = {
        fields[1]: fields[2].replace("_", " ")
        for fields in data_lines(aliases_text)
        if fields[0] == "sc" and len(fields) >= 3
    }
    return {code: names[code] for code in sorted(set(used))}


def confusable_rows(text: str) -> list[tuple[str, str]]:
    """Each confusable source code point and its prototype, as hexadecimal."""
    rows: dict[str, str] = {}
    for fields in data_lines(text):
        if len(fields) < 3:
            raise DataError(f"confusables.txt: malformed line {fields!r}")
        source, target = fields[0], fields[1]
        if " " in source:
            raise DataError(f"confusables.txt: source {source!r} is not one code point")
        rows[f"{int(source, 16):04X}"] = " ".join(f"{int(t, 16):04X}" for t in target.split())
    return sorted(rows.items(), key=lambda row: int(row[0], 16))


def identifier_refused_ranges(
    status_text: str, type_text: str, category_text: str
) -> list[tuple[int, int]]:
    """The code points whose Identifier_Status is not Allowed and whose Identifier_Type
    includes one of `REFUSED_IDENTIFIER_TYPES`, or `REFUSED_MARK_TYPE` for a mark (see the
    module docstring)."""
    allowed = {
        point
        for start, end in property_ranges(status_text, "Allowed")
        for point in range(start, end + 1)
    }
    marks: set[int] = set()
    for fields in data_lines(category_text):
        if len(fields) >= 2 and fields[1] in MARK_CATEGORIES:
            start, end = code_range(fields[0])
            marks.update(range(start, end + 1))
    if not marks:
        raise DataError("DerivedGeneralCategory.txt: no mark (Mn, Mc, Me)")
    ranges: list[Range] = []
    for fields in data_lines(type_text):
        kinds = fields[1].split()
        refused = any(kind in REFUSED_IDENTIFIER_TYPES for kind in kinds)
        uncommon = REFUSED_MARK_TYPE in kinds
        start, end = code_range(fields[0])
        ranges.extend(
            (point, point, "")
            for point in range(start, end + 1)
            if point not in allowed and (refused or (uncommon and point in marks))
        )
    return [(start, end) for start, end, _ in merged(ranges)]


def identifier_type_ranges(text: str) -> list[Range]:
    """Ranges whose Identifier_Type includes one of the kept types (the first one named)."""
    ranges = []
    for fields in data_lines(text):
        types = fields[1].split()
        kept = [kind for kind in KEPT_IDENTIFIER_TYPES if kind in types]
        if kept:
            ranges.append((*code_range(fields[0]), kept[0]))
    return merged(ranges)


def build(files: dict[str, Path]) -> dict[str, object]:
    """The data `trio_chat.names` loads, from the Unicode files."""
    texts = {name: path.read_text(encoding="utf-8-sig") for name, path in files.items()}
    versions = {}
    dates = {}
    for name, text in texts.items():
        versions[name], dates[name] = header(name, text)
    if len(set(versions.values())) != 1:
        raise DataError(f"files of different Unicode versions: {versions}")
    scripts = script_ranges(
        texts["Scripts.txt"], texts["ScriptExtensions.txt"], texts["PropertyValueAliases.txt"]
    )
    used = {code for _, _, value in scripts for code in value.split()}
    return {
        "unicode_version": next(iter(versions.values())),
        "license": LICENSE,
        "files": {name: dates[name] for name in REQUIRED},
        "script_names": script_names(texts["PropertyValueAliases.txt"], used),
        "confusables": confusable_rows(texts["confusables.txt"]),
        "scripts": [[f"{s:04X}", f"{e:04X}", v] for s, e, v in scripts],
        "default_ignorable": [
            [f"{s:04X}", f"{e:04X}"]
            for s, e in property_ranges(
                texts["DerivedCoreProperties.txt"], "Default_Ignorable_Code_Point"
            )
        ],
        "soft_dotted": [
            [f"{s:04X}", f"{e:04X}"]
            for s, e in property_ranges(texts["PropList.txt"], "Soft_Dotted")
        ],
        "identifier_refused": [
            [f"{s:04X}", f"{e:04X}"]
            for s, e in identifier_refused_ranges(
                texts["IdentifierStatus.txt"],
                texts["IdentifierType.txt"],
                texts["DerivedGeneralCategory.txt"],
            )
        ],
        "identifier_types": [
            [f"{s:04X}", f"{e:04X}", v]
            for s, e, v in identifier_type_ranges(texts["IdentifierType.txt"])
        ],
    }


def render(data: dict[str, object]) -> str:
    """JSON with one list item per line, keys in a fixed order."""
    lines = ["{"]
    items = list(data.items())
    for index, (key, value) in enumerate(items):
        comma = "," if index < len(items) - 1 else ""
        if isinstance(value, list):
            lines.append(f"  {json.dumps(key)}: [")
            for row_index, row in enumerate(value):
                row_comma = "," if row_index < len(value) - 1 else ""
                lines.append(f"    {json.dumps(row)}{row_comma}")
            lines.append(f"  ]{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value, sort_keys=True)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("inputs", nargs="+", type=Path, help="directories or data files")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    try:
        data = build(find_files(args.inputs))
    except (DataError, KeyError, ValueError) as error:
        print(f"refresh_unicode_data: {error}", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(data), encoding="utf-8")
    print(f"wrote {args.output} (Unicode {data['unicode_version']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
