"""Rows of a district sheet, streamed: one row in memory at a time, whatever the file's size.

``open_sheet`` gives the header and an iterator of ``Row`` for an ``.xlsx`` (openpyxl in
read-only mode: the sheet XML is parsed as it is read; ``data_only=False``, so a formula
comes out as its text and is never evaluated) or a ``.csv``.

A CSV's encoding is decided before it is parsed, by one pass over its raw bytes, line by
line and in bounded pieces (``detect_encoding``): UTF-8 (a BOM is fine) when every line
decodes strictly as UTF-8; GB18030 (what Excel on a Chinese Windows saves) when no line
does as UTF-8 with non-ASCII text and every line does as GB18030. A file in which some
lines are UTF-8 and others are not mixes encodings and is refused, naming the first line
that is not UTF-8; a line that is neither is refused by number too. The first pass also
counts the lines, which the progress report uses as its estimate of the total.

Every cell comes out as ``str`` (or ``None`` when empty): numbers without a spurious
``.0``, dates and times in ISO form. A cell over ``MAX_CELL_CHARS`` is not kept: the row
lists it in ``too_long`` and the importer reports it as that row's error.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import IO, Any

from services.importing.safety import (
    MAX_CELL_CHARS,
    MAX_CSV_FIELD_CHARS,
    REFUSED_EXTENSIONS,
    Refused,
    check_xlsx,
)

CHUNK = 1024 * 1024
"""Bytes read at a time by the encoding pass: a 100 MB line costs a megabyte."""

UTF8 = "utf-8-sig"
GB18030 = "gb18030"


@dataclass(frozen=True)
class Row:
    """One row of the sheet as its user numbers it (the header is row 1 in a template)."""

    number: int
    cells: tuple[str | None, ...]
    too_long: tuple[int, ...] = ()
    """Indexes of cells over ``MAX_CELL_CHARS`` (their value is dropped: ``None``)."""

    @property
    def empty(self) -> bool:
        return not self.too_long and all(c is None for c in self.cells)


@dataclass
class Sheet:
    """The header row and the data rows after it, read lazily."""

    header: tuple[str | None, ...]
    header_row: int
    rows: Iterator[Row]
    total_estimate: int | None
    """Data rows expected (physical lines or the sheet's declared size); ``None``: unknown."""
    source: str
    """``xlsx``, or the CSV's encoding."""


@contextlib.contextmanager
def open_sheet(path: Path) -> Iterator[Sheet]:
    """The first sheet of an ``.xlsx`` or a ``.csv``; ``Refused`` when it cannot be read."""
    suffix = path.suffix.lower()
    if suffix in REFUSED_EXTENSIONS:
        raise Refused(f"{path.name}: {REFUSED_EXTENSIONS[suffix]}")
    if not path.is_file():
        raise Refused(f"{path.name} is not a file")
    if suffix == ".xlsx":
        with _open_xlsx(path) as sheet:
            yield sheet
    elif suffix == ".csv":
        with _open_csv(path) as sheet:
            yield sheet
    else:
        raise Refused(f"{path.name}: only .xlsx and .csv files are imported")


# --- xlsx ------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_xlsx(path: Path) -> Iterator[Sheet]:
    check_xlsx(path)
    reader, target = _load_workbook(path)
    try:
        estimate = _declared_rows(reader, target)
        raw = _guarded(_xlsx_rows(reader, target), path)
        header = _header(raw, path)
        estimate = None if estimate is None else max(estimate - header.number, 0)
        yield Sheet(header.cells, header.number, raw, estimate, "xlsx")
    finally:
        reader.archive.close()


def _load_workbook(path: Path) -> tuple[Any, str]:
    """openpyxl's reader up to (not including) its worksheets: the shared strings, the
    workbook and the styles (which say which numbers are dates), and the first sheet.

    ``load_workbook(read_only=True)`` would also size every sheet, and a sheet without a
    ``<dimension>`` (openpyxl's own write-only files, many generators) is then parsed to
    its end once, holding ~100 bytes a row until it is done; this reads nothing of the
    sheet until its rows are asked for.
    """
    from openpyxl.reader.excel import ExcelReader
    from openpyxl.styles.stylesheet import apply_stylesheet

    try:
        reader = ExcelReader(
            path, read_only=True, keep_vba=False, data_only=False, keep_links=False
        )
        reader.read_manifest()
        reader.read_strings()
        reader.read_workbook()
        apply_stylesheet(reader.archive, reader.wb)
        targets = [
            rel.target
            for _, rel in reader.parser.find_sheets()
            if rel.target in reader.valid_files and "chartsheet" not in rel.Type
        ]
    except Refused:
        raise
    except Exception as exc:  # openpyxl raises whatever its parser met
        raise Refused(f"{path.name} cannot be read as a workbook: {exc}") from None
    if not targets:
        reader.archive.close()
        raise Refused(f"{path.name} has no worksheet")
    return reader, targets[0]


def _declared_rows(reader: Any, target: str) -> int | None:
    """The last row the sheet's ``<dimension>`` declares, read from its first elements."""
    from xml.etree.ElementTree import iterparse

    from openpyxl.utils.cell import range_boundaries
    from openpyxl.xml.constants import SHEET_MAIN_NS

    with reader.archive.open(target) as source:
        try:
            for _, element in iterparse(source, events=("start",)):
                if element.tag == f"{{{SHEET_MAIN_NS}}}dimension":
                    bounds = range_boundaries(element.get("ref", ""))
                    return bounds[3] if isinstance(bounds[3], int) else None
                if element.tag == f"{{{SHEET_MAIN_NS}}}sheetData":
                    return None
        except (SyntaxError, ValueError, TypeError):
            return None  # the rows' own reading says what is wrong
    return None


def _xlsx_rows(reader: Any, target: str) -> Iterator[Row]:
    """The rows of the sheet, numbered as the sheet numbers them.

    openpyxl's read-only iteration clears each parsed ``<row>`` but leaves it attached to
    ``<sheetData>`` (and records every row's height), so memory grows by about 100 bytes
    a row. ``_row_parser`` is its parser with each parsed row removed from the tree: flat
    memory. (It uses openpyxl's reader internals, pinned at 3.1.x; the memory and formula
    tests would catch a change.)
    """
    workbook = reader.wb
    with reader.archive.open(target) as source:
        parser = _row_parser()(
            source,
            reader.shared_strings,
            data_only=False,
            epoch=workbook.epoch,
            date_formats=workbook._date_formats,
            timedelta_formats=workbook._timedelta_formats,
        )
        for number, cells in parser.parse():
            values: list[Any] = []
            for cell in cells:
                column = cell["column"]
                if column > len(values):
                    values.extend([None] * (column - len(values)))
                values[column - 1] = cell["value"]
            yield _row(number, values)


@functools.cache
def _row_parser() -> type[Any]:
    from xml.etree.ElementTree import iterparse

    from openpyxl.worksheet._reader import ROW_TAG, WorkSheetParser
    from openpyxl.xml.constants import SHEET_MAIN_NS

    sheet_data = f"{{{SHEET_MAIN_NS}}}sheetData"

    class RowParser(WorkSheetParser):
        def parse(self) -> Iterator[tuple[int, list[dict[str, Any]]]]:
            holder = None
            for event, element in iterparse(self.source, events=("start", "end")):
                if event == "start":
                    if element.tag == sheet_data:
                        holder = element
                    continue
                if element.tag == ROW_TAG:
                    row = self.parse_row(element)
                    element.clear()
                    if holder is not None:
                        holder.remove(element)
                    self.row_dimensions.clear()
                    yield row

    return RowParser


def _guarded(rows: Iterator[Row], path: Path) -> Iterator[Row]:
    """The rows; a part that breaks while streaming refuses the rest of the file."""
    try:
        yield from rows
    except Refused:
        raise
    except Exception as exc:
        raise Refused(f"{path.name} could not be read to the end: {exc}") from None


# --- csv -------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_csv(path: Path) -> Iterator[Sheet]:
    encoding, lines = detect_encoding(path)
    if csv.field_size_limit() < MAX_CSV_FIELD_CHARS:
        # Raised, never lowered: the limit is the csv module's, shared by the process.
        csv.field_size_limit(MAX_CSV_FIELD_CHARS)
    with path.open(encoding=encoding, newline="", errors="strict") as text:
        raw = _csv_rows(text, path)
        header = _header(raw, path)
        yield Sheet(header.cells, header.number, raw, max(lines - header.number, 0), encoding)


def _csv_rows(text: IO[str], path: Path) -> Iterator[Row]:
    reader = csv.reader(text)
    number = 0
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise Refused(
                f"{path.name}, line {reader.line_num}: not a readable CSV ({exc}); a cell "
                f"over {MAX_CSV_FIELD_CHARS:,} characters is refused with the file"
            ) from None
        except UnicodeDecodeError:  # the encoding pass saw every byte: should not happen
            raise Refused(
                f"{path.name}, line {reader.line_num}: bytes that do not decode"
            ) from None
        number += 1
        yield _row(number, values)


def detect_encoding(path: Path) -> tuple[str, int]:
    """``(encoding, physical lines)`` of a CSV, or ``Refused`` naming the first bad line."""
    utf8 = codecs.getincrementaldecoder("utf-8")("strict")
    gb = codecs.getincrementaldecoder(GB18030)("strict")
    first_not_utf8: int | None = None
    first_utf8_text: int | None = None  # first line with non-ASCII text that is UTF-8
    first_neither: int | None = None
    line = 0
    with path.open("rb") as raw:
        utf8_ok = gb_ok = ascii_only = True
        pending = False  # bytes of a line not yet judged
        while True:
            piece = raw.readline(CHUNK)
            if piece:
                pending = True
                utf8_ok = utf8_ok and _feeds(utf8, piece)
                gb_ok = gb_ok and _feeds(gb, piece)
                ascii_only = ascii_only and piece.isascii()
            if piece.endswith(b"\n") or (not piece and pending):
                line += 1
                utf8_ok = utf8_ok and _feeds(utf8, b"", final=True)
                gb_ok = gb_ok and _feeds(gb, b"", final=True)
                if not utf8_ok and first_not_utf8 is None:
                    first_not_utf8 = line
                if utf8_ok and not ascii_only and first_utf8_text is None:
                    first_utf8_text = line
                if not utf8_ok and not gb_ok and first_neither is None:
                    first_neither = line
                utf8.reset()
                gb.reset()
                utf8_ok = gb_ok = ascii_only = True
                pending = False
            if not piece:
                break
    if line == 0:
        raise Refused(f"{path.name} is empty")
    if first_not_utf8 is None:
        return UTF8, line
    if first_utf8_text is not None:
        raise Refused(
            f"{path.name} mixes encodings: line {first_not_utf8} is not UTF-8 while line "
            f"{first_utf8_text} is; save the file again in one encoding (UTF-8)"
        )
    if first_neither is not None:
        raise Refused(
            f"{path.name}, line {first_neither}: neither UTF-8 nor GB18030; save the file "
            "again as CSV UTF-8"
        )
    return GB18030, line


def _feeds(decoder: codecs.IncrementalDecoder, data: bytes, *, final: bool = False) -> bool:
    try:
        decoder.decode(data, final)
    except UnicodeDecodeError:
        return False
    return True


# --- cells -----------------------------------------------------------------------------


def _header(rows: Iterator[Row], path: Path) -> Row:
    """The first row that is not empty."""
    for row in rows:
        if not row.empty:
            if row.too_long:
                raise Refused(f"{path.name}: the header row (row {row.number}) has a huge cell")
            return row
    raise Refused(f"{path.name} has no header row: it holds no data")


def _row(number: int, values: tuple[Any, ...] | list[Any]) -> Row:
    cells: list[str | None] = []
    too_long: list[int] = []
    for index, value in enumerate(values):
        text = cell_text(value)
        if text is not None and len(text) > MAX_CELL_CHARS:
            too_long.append(index)
            text = None
        cells.append(text)
    while cells and cells[-1] is None and len(cells) - 1 not in too_long:
        cells.pop()
    return Row(number, tuple(cells), tuple(too_long))


def cell_text(value: Any) -> str | None:
    """A cell's value as text; ``None`` for an empty (or blank) cell.

    A formula is its own text (``=SUM(A1:A3)``), an array formula's too: nothing is
    evaluated. Whole numbers lose Excel's ``.0``; dates and times are ISO.
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "TRUE" if value else "FALSE"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    elif isinstance(value, datetime):
        text = value.isoformat(sep=" ") if value.time() != time() else value.date().isoformat()
    elif isinstance(value, date | time):
        text = value.isoformat()
    else:
        formula = getattr(value, "text", None)  # openpyxl's ArrayFormula / DataTableFormula
        text = formula if isinstance(formula, str) else str(value)
    return None if not text.strip() else text
