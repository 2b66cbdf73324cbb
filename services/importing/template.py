"""Blank templates a district fills in: the header row, notes on each column, dropdowns.

``write_template(kind, out)`` writes an ``.xlsx`` whose first sheet has the Chinese
headers (the importer also accepts the GraphQL field names) and no data (an example row
left in would be imported), whose
enum columns offer their labels as a dropdown (data validation, which Excel and WPS
enforce while typing: a value outside the list is refused there, before any import), and
whose code and date columns are formatted as text, so that Excel does not turn a credit
code into a number or ``2021-03-01`` into a serial. A second sheet, 说明, explains every
column and the layout.
"""

from __future__ import annotations

from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation

from services.importing.kinds import KINDS
from services.importing.safety import Refused

TEMPLATE_ROWS = 10_000
"""Rows the dropdowns and the text format cover."""

NOTES_SHEET = "说明"


def write_template(kind: str, out: Path) -> Path:
    """Write the template of ``kind`` to ``out`` (an ``.xlsx``) and return the path."""
    spec = KINDS.get(kind)
    if spec is None:
        raise Refused(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    if out.suffix.lower() != ".xlsx":
        raise Refused(f"{out.name}: a template is an .xlsx file")
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = spec.title
    bold = Font(bold=True)
    required = PatternFill("solid", fgColor="FFF2CC")
    for position, column in enumerate(spec.columns, start=1):
        letter = get_column_letter(position)
        cell = sheet.cell(row=1, column=position, value=column.header)
        cell.font = bold
        if column.required:
            cell.fill = required
        sheet.column_dimensions[letter].width = max(12, 2 * len(column.header) + 4)
        cells = f"{letter}2:{letter}{TEMPLATE_ROWS + 1}"
        if column.choices:
            labels = ",".join(column.labels)
            rule = DataValidation(type="list", formula1=f'"{labels}"', allow_blank=True)
            rule.error = f"{column.header}: {'、'.join(column.labels)}"
            rule.errorTitle = column.header
            rule.showErrorMessage = True
            sheet.add_data_validation(rule)
            rule.add(cells)
        elif not column.free_text:
            sheet.column_dimensions[letter].number_format = "@"
    sheet.freeze_panes = "A2"
    _notes(book, spec.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    book.save(out)
    return out


def _notes(book: Workbook, kind: str) -> None:
    spec = KINDS[kind]
    notes = book.create_sheet(NOTES_SHEET)
    notes.append(["列 (column)", "字段 (GraphQL)", "必填", "可选值", "说明", "例"])
    for cell in notes[1]:
        cell.font = Font(bold=True)
    for column in spec.columns:
        choices = "、".join(f"{label} ({value})" for label, value in column.choices)
        also = f" Also accepted as header: {', '.join(column.aliases)}." if column.aliases else ""
        notes.append(
            [
                column.header,
                column.key,
                "是" if column.required else "",
                choices,
                column.notes + also,
                column.example,
            ]
        )
    notes.append([])
    notes.append(["", "", "", "", spec.layout])
    notes.append(
        [
            "",
            "",
            "",
            "",
            "Row 1 is the header; headers match ignoring spaces and full-width/half-width. "
            "Rows are applied in order; a wrong row is reported in <file>.errors.csv and the "
            "others go on. Importing the same file again changes nothing.",
        ]
    )
    wrap = Alignment(wrap_text=True, vertical="top")
    for letter, width in zip("ABCDEF", (18, 20, 6, 40, 90, 24), strict=True):
        notes.column_dimensions[letter].width = width
    for row in notes.iter_rows(min_row=2):
        for cell in row:
            cell.alignment = wrap
