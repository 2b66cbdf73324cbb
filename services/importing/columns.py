"""Columns of a district sheet and how one row's cells are read by them.

A ``Column`` has the Chinese header district sheets use (and a few other spellings), the
GraphQL input field it feeds as an alias header (``creditCode``), whether it is required,
and, for enum columns, the Chinese labels of each value. Headers match after NFKC
(full-width letters, digits and brackets become half-width), with all whitespace and a
trailing ``*`` removed and case ignored; ``机构名称（name）`` matches too.

``Cells`` reads one data row: structured cells (codes, numbers, dates, enum labels) are
NFKC-normalised and stripped; free text (names, addresses) is passed on as typed, for the
platform's own text rules (``services/common/text.py``: NFC, no control or bidi
characters) to accept or refuse with its own message. Problems are collected, not
raised, so one pass reports every bad cell of a row.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from services.common.errors import BadInput
from services.common.timeutil import aware
from services.importing.reading import Row
from services.importing.safety import MAX_CELL_CHARS, Refused


@dataclass(frozen=True)
class Column:
    key: str
    """The GraphQL input field (camelCase), also accepted as the header."""
    header: str
    """The Chinese header the template writes and district sheets use."""
    notes: str
    required: bool = False
    aliases: tuple[str, ...] = ()
    choices: tuple[tuple[str, str], ...] = ()
    """``(label, enum value)``; the first label of each value is the one the template offers."""
    free_text: bool = False
    example: str = ""

    @functools.cached_property
    def lookup(self) -> dict[str, str]:
        """Every accepted spelling (label or enum value, compared as headers are) → value."""
        table = {value.casefold(): value for _, value in self.choices}
        table.update({header_key(label): value for label, value in self.choices})
        return table

    @property
    def labels(self) -> list[str]:
        """One label per enum value, in order: the template's dropdown."""
        seen: dict[str, str] = {}
        for label, value in self.choices:
            seen.setdefault(value, label)
        return list(seen.values())


def header_key(text: str) -> str:
    """A header as it is compared: NFKC, no whitespace, no trailing ``*``, case folded."""
    folded = "".join(unicodedata.normalize("NFKC", text).split()).casefold()
    return folded.rstrip("*")


_BRACKETED = re.compile(r"^(.*?)\((.*)\)$")


def resolve_header(
    header: Sequence[str | None],
    columns: Sequence[Column],
    groups: Sequence[tuple[str, ...]] = (),
    file: str = "the file",
) -> tuple[dict[str, int], dict[str, str], list[str]]:
    """``(column key → cell index, key → header as written, headers not understood)``.

    ``Refused`` when a required column is missing, when none of a group's columns is
    there (``groups``: one of them is needed), or when two cells name one column.
    """
    names: dict[str, str] = {}
    for column in columns:
        for spelling in (column.header, column.key, *column.aliases):
            names[header_key(spelling)] = column.key
    index: dict[str, int] = {}
    written: dict[str, str] = {}
    ignored: list[str] = []
    for position, text in enumerate(header):
        if text is None:
            continue
        key = _match(header_key(text), names)
        if key is None:
            ignored.append(text.strip())
            continue
        if key in index:
            raise Refused(
                f"{file}: columns {written[key]!r} and {text.strip()!r} both mean {key}; "
                "keep one of them"
            )
        index[key] = position
        written[key] = text.strip()
    by_key = {c.key: c for c in columns}
    missing = [f"{c.header} ({c.key})" for c in columns if c.required and c.key not in index]
    for group in groups:
        if not any(key in index for key in group):
            missing.append(" or ".join(f"{by_key[k].header} ({k})" for k in group))
    if missing:
        raise Refused(f"{file} lacks the column(s) {', '.join(missing)}")
    return index, written, ignored


def _match(key: str, names: Mapping[str, str]) -> str | None:
    if key in names:
        return names[key]
    bracketed = _BRACKETED.match(key)
    if bracketed:
        for part in bracketed.groups():
            if part in names:
                return names[part]
    return None


@dataclass
class Cells:
    """One data row, read column by column; ``problems`` collects what is wrong with it."""

    row: Row
    index: Mapping[str, int]
    columns: Mapping[str, Column]
    problems: list[BadInput] = field(default_factory=list)

    @property
    def number(self) -> int:
        return self.row.number

    def has(self, key: str) -> bool:
        """Whether the cell of ``key`` holds anything (a too-long cell counts)."""
        position = self.index.get(key)
        if position is None:
            return False
        return position in self.row.too_long or self._cell(position) is not None

    def raw(self, key: str) -> str | None:
        position = self.index.get(key)
        if position is None:
            return None
        if position in self.row.too_long:
            self.problem(key, f"the cell is over {MAX_CELL_CHARS:,} characters")
            return None
        return self._cell(position)

    def _cell(self, position: int) -> str | None:
        cells = self.row.cells
        return cells[position] if position < len(cells) else None

    def problem(self, key: str, message: str) -> None:
        if not any(p.field == key for p in self.problems):  # one message per cell
            self.problems.append(BadInput(message, field=key))

    def text(self, key: str, *, required: bool = False) -> str | None:
        """Free text as typed (the platform checks and normalises it)."""
        value = self.raw(key)
        if value is None and required:
            self._missing(key)
        return value

    def code(self, key: str, *, required: bool = False, spaces: bool = False) -> str | None:
        """A code or number as text: NFKC, without whitespace (inner runs kept as one space
        with ``spaces``, for dates with times)."""
        value = self.raw(key)
        if value is None:
            if required:
                self._missing(key)
            return None
        return (" " if spaces else "").join(unicodedata.normalize("NFKC", value).split())

    def region(self, key: str, *, required: bool = False) -> str | None:
        """A 6-digit region code, also out of ``原州区（640402）``."""
        value = self.code(key, required=required)
        if value is None or re.fullmatch(r"\d{6}", value):
            return value
        found = re.findall(r"(?<!\d)\d{6}(?!\d)", value)
        return found[0] if len(found) == 1 else value

    def choice(self, key: str, *, required: bool = False) -> str | None:
        value = self.code(key, required=required)
        if value is None:
            return None
        column = self.columns[key]
        found = column.lookup.get(value.casefold())
        if found is not None:
            return found
        allowed = "、".join(column.labels)
        names = ", ".join(dict.fromkeys(v for _, v in column.choices))
        self.problem(key, f"{_shown(value)} is not one of {allowed} (or {names})")
        return None

    def integer(self, key: str, *, required: bool = False) -> int | None:
        value = self.code(key, required=required)
        if value is None:
            return None
        number = _decimal(value)
        if number is None or number != number.to_integral_value() or abs(number) > 10**9:
            self.problem(key, f"{_shown(value)} is not a whole number")
            return None
        return int(number)

    def decimal(self, key: str, *, required: bool = False) -> Decimal | None:
        value = self.code(key, required=required)
        if value is None:
            return None
        number = _decimal(value.removeprefix("¥").removesuffix("元").replace(",", ""))
        if number is None:
            self.problem(key, f"{_shown(value)} is not an amount")
        return number

    def day(self, key: str, *, required: bool = False) -> date | None:
        moment = self.moment(key, required=required)
        return None if moment is None else moment.date()

    def moment(self, key: str, *, required: bool = False) -> datetime | None:
        """A date or date and time; naive means Asia/Shanghai (as everywhere)."""
        value = self.code(key, required=required, spaces=True)
        if value is None:
            return None
        parsed = parse_moment(value)
        if parsed is None:
            self.problem(
                key, f"{_shown(value)} is not a date (2021-03-01, 2021/3/1 or 2021年3月1日)"
            )
        return parsed

    def _missing(self, key: str) -> None:
        self.problem(key, f"{self.columns[key].header} is required")


_MOMENT = re.compile(
    r"^(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})日?"
    r"(?:[ T]?(\d{1,2})[:时](\d{1,2})(?:[:分](\d{1,2})(?:\.\d+)?秒?)?分?)?$"
)


def parse_moment(text: str) -> datetime | None:
    """``2021-03-01``, ``2021/3/1 9:00``, ``2021年3月1日 9时30分``, ISO with an offset;
    else None."""
    matched = _MOMENT.match(text.strip())
    try:
        if matched:
            year, month, day, hour, minute, second = (int(g) if g else 0 for g in matched.groups())
            return aware(datetime(year, month, day, hour, minute, second))
        return aware(datetime.fromisoformat(text))
    except ValueError:
        return None


def _decimal(text: str) -> Decimal | None:
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _shown(value: str) -> str:
    """A cell's value quoted in a message, cut short."""
    return repr(value if len(value) <= 40 else value[:40] + "…")


def by_key(columns: Iterable[Column]) -> dict[str, Column]:
    return {c.key: c for c in columns}
