"""What a district spreadsheet may not do to us, checked before and while it is read.

An uploaded workbook is a zip of XML parts written by whoever sent it. Before openpyxl
opens one, ``check_xlsx`` reads only the zip's central directory and the first bytes of
each XML part, and refuses:

* a zip bomb: more than ``MAX_XLSX_BYTES`` declared uncompressed in total, more than
  ``MAX_XLSX_ENTRIES`` parts, or a large part that expands more than ``MAX_XLSX_RATIO``
  times. The declared sizes can be trusted this far: Python's ``zipfile`` stops
  inflating a part at its declared size (and then fails its CRC), so a part that lies
  about its size cannot make the reader hold more than it declared;
* macros (``vbaProject.bin``, a macro-enabled content type, ``.xlsm``/``.xltm``) and
  links to other workbooks (``xl/externalLinks/``): a register import has no use for
  either, and both are how spreadsheets reach outside themselves;
* XML with a document type declaration (``<!DOCTYPE``), which a workbook never needs and
  entity-expansion attacks do.

Cell values are never evaluated: formulas are read as their text (``data_only=False``),
and whatever this platform writes back into a spreadsheet-bound file goes through
``escape_for_spreadsheet`` so that a name such as ``=HYPERLINK(...)`` stays text when the
file is opened again ("CSV injection").
"""

from __future__ import annotations

import zipfile
from pathlib import Path

MAX_CELL_CHARS = 10_000
"""Longest cell a row may carry; a longer one is that row's error, not the file's."""

MAX_CSV_FIELD_CHARS = 16 * 1024 * 1024
"""Longest cell the CSV parser holds at all; beyond it the file is refused (not a sheet)."""

MAX_XLSX_BYTES = 200 * 1024 * 1024
"""Declared uncompressed size of all parts of a workbook together."""

MAX_XLSX_RATIO = 100
"""Largest expansion of one part larger than ``RATIO_FLOOR_BYTES``."""

RATIO_FLOOR_BYTES = 1024 * 1024
"""Small parts (styles, a short sheet) may compress very well without being a bomb."""

MAX_XLSX_ENTRIES = 10_000

CONTENT_TYPES = "[Content_Types].xml"
CONTENT_TYPES_BYTES = 1024 * 1024

XML_HEAD_BYTES = 4096
"""How much of each XML part is looked at for a document type declaration."""

REFUSED_EXTENSIONS = {
    ".xlsm": "a macro-enabled workbook (.xlsm) is refused: save it as .xlsx",
    ".xltm": "a macro-enabled template (.xltm) is refused: save it as .xlsx",
    ".xlsb": "a binary workbook (.xlsb) cannot be read: save it as .xlsx",
    ".xls": "an Excel 97-2003 workbook (.xls) cannot be read: save it as .xlsx",
}

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
"""Leading characters that make a spreadsheet program treat a cell as a formula (OWASP)."""


class Refused(Exception):
    """The file as a whole cannot be imported; nothing of it was applied."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def escape_for_spreadsheet(value: str) -> str:
    """``value`` as a cell that a spreadsheet shows as text, never runs as a formula.

    A leading ``'`` is Excel's and LibreOffice's "this is text" mark; it is added only
    where the value would otherwise start a formula, so ordinary text is unchanged.
    """
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def check_xlsx(
    path: Path,
    *,
    max_bytes: int = MAX_XLSX_BYTES,
    max_ratio: float = MAX_XLSX_RATIO,
    max_entries: int = MAX_XLSX_ENTRIES,
) -> None:
    """Refuse a workbook that is a zip bomb, carries macros or external links, or declares
    a DTD; return quietly for one that openpyxl may open."""
    name = path.name
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise Refused(f"{name} is not an .xlsx workbook (not a zip archive)") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > max_entries:
            raise Refused(
                f"{name} has {len(entries):,} parts; a workbook has at most {max_entries:,}"
            )
        total = sum(e.file_size for e in entries)
        if total > max_bytes:
            raise Refused(
                f"{name} expands to {total / 2**20:,.0f} MB; at most {max_bytes / 2**20:,.0f} MB "
                "is imported (split the sheet into several files)"
            )
        for entry in entries:
            _check_entry(name, entry, max_ratio)
        for entry in entries:
            if entry.filename.endswith((".xml", ".rels")):
                _check_xml_head(name, archive, entry)


def _check_entry(name: str, entry: zipfile.ZipInfo, max_ratio: float) -> None:
    lowered = entry.filename.lower()
    if lowered.endswith("vbaproject.bin"):
        raise Refused(f"{name} contains macros ({entry.filename}): save it as .xlsx without them")
    if lowered.startswith("xl/externallinks/"):
        raise Refused(
            f"{name} links to other workbooks ({entry.filename}): break the links "
            "(Data → Edit Links → Break Link) and save again"
        )
    if entry.file_size > RATIO_FLOOR_BYTES:
        ratio = entry.file_size / max(entry.compress_size, 1)
        if ratio > max_ratio:
            raise Refused(
                f"{name}: part {entry.filename} expands {ratio:,.0f} times "
                f"(at most {max_ratio:g}): refused as a possible zip bomb"
            )


def _check_xml_head(name: str, archive: zipfile.ZipFile, entry: zipfile.ZipInfo) -> None:
    try:
        with archive.open(entry) as part:
            # The content types list every part's type: read it whole (up to a bound).
            size = CONTENT_TYPES_BYTES if entry.filename == CONTENT_TYPES else XML_HEAD_BYTES
            head = part.read(size)
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
        raise Refused(f"{name}: part {entry.filename} cannot be read ({exc})") from None
    if entry.filename == CONTENT_TYPES and b"macroEnabled" in head:
        raise Refused(f"{name} is a macro-enabled workbook: save it as .xlsx")
    if b"<!DOCTYPE" in head or b"<!ENTITY" in head:
        raise Refused(f"{name}: part {entry.filename} declares a DTD, which no workbook needs")
