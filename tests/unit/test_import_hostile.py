"""Hostile and broken files: each refused, or neutralised, with a clear message.

Every file is generated here (no binaries in the repository).
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook

from services.common.application import CommandContext, Outcome
from services.common.auth import SYSTEM
from services.common.commands import Command
from services.common.errors import BadInput
from services.importing import Refused, escape_for_spreadsheet, import_file
from services.importing.reading import cell_text, detect_encoding, open_sheet
from services.importing.runner import read_error_file
from services.importing.safety import check_xlsx
from services.registry.module import RegisterInstitution
from tests.factories import valid_credit_code

HEADER = ["机构名称", "统一社会信用代码", "区县代码", "类别", "非学科类别", "办学形式"]


def good_row(n: int, name: str | None = None) -> list[str]:
    return [
        name or f"机构{n}",
        valid_credit_code("640402", f"MA{n:07d}"),
        "640402",
        "非学科类",
        "艺术",
        "线下",
    ]


class Recorder:
    """A ``send`` that records the commands and answers that each stored an event."""

    def __init__(self) -> None:
        self.commands: list[Command] = []

    async def __call__(self, command: Command, ctx: CommandContext) -> Outcome[Any]:
        self.commands.append(command)
        return Outcome(aggregate=None, events=[object()])  # type: ignore[list-item]


def xlsx(path: Path, rows: list[list[Any]]) -> Path:
    book = Workbook(write_only=True)
    sheet = book.create_sheet()
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def with_extra_part(source: Path, target: Path, name: str, data: bytes, **kw: Any) -> Path:
    shutil.copy(source, target)
    with zipfile.ZipFile(target, "a", **kw) as archive:
        archive.writestr(name, data)
    return target


# --- zip bombs, macros, links, DTDs ----------------------------------------------------


def test_a_zip_bomb_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    base = xlsx(tmp_path / "base.xlsx", [HEADER])
    bomb = tmp_path / "bomb.xlsx"
    shutil.copy(base, bomb)
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("xl/worksheets/sheet2.xml", b"<x>" + b" " * (20 * 1024 * 1024) + b"</x>")
    with pytest.raises(Refused, match=r"sheet2\.xml expands [\d,]+ times \(at most 100\)"):
        check_xlsx(bomb)
    # The total bound, shown with a small one.
    with pytest.raises(Refused, match=r"expands to 0 MB; at most 0 MB"):
        check_xlsx(base, max_bytes=1000)


async def test_macros_and_external_links_are_refused(tmp_path: Path) -> None:
    base = xlsx(tmp_path / "base.xlsx", [HEADER, good_row(1)])
    macro = with_extra_part(base, tmp_path / "macro.xlsx", "xl/vbaProject.bin", b"\xd0\xcf\x11")
    linked = with_extra_part(
        base, tmp_path / "linked.xlsx", "xl/externalLinks/externalLink1.xml", b"<externalLink/>"
    )
    xlsm = tmp_path / "book.xlsm"
    shutil.copy(base, xlsm)
    dtd = with_extra_part(
        base,
        tmp_path / "dtd.xlsx",
        "xl/extra.xml",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
    )
    send = Recorder()
    for path, message in [
        (macro, "contains macros"),
        (linked, "links to other workbooks"),
        (xlsm, r"macro-enabled workbook \(\.xlsm\) is refused"),
        (dtd, "declares a DTD"),
    ]:
        with pytest.raises(Refused, match=message):
            await import_file("institutions", path, send, SYSTEM)
    assert send.commands == []


def test_not_a_workbook_and_other_formats(tmp_path: Path) -> None:
    fake = tmp_path / "fake.xlsx"
    fake.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(Refused, match=r"not an \.xlsx workbook"), open_sheet(fake):
        pass
    old = tmp_path / "old.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0")
    with (
        pytest.raises(Refused, match=r"\.xls\) cannot be read: save it as \.xlsx"),
        open_sheet(old),
    ):
        pass


# --- formulas and text that looks like one --------------------------------------------


async def test_formulas_are_text_never_evaluated_and_escaped_on_the_way_out(
    tmp_path: Path,
) -> None:
    path = xlsx(
        tmp_path / "formulas.xlsx",
        [
            HEADER,
            good_row(1, name='=HYPERLINK("http://evil.example","点我")'),
            [*good_row(2)[:3], '=IF(1,"学科类","")', *good_row(2)[4:]],
            good_row(3, name="@SUM(1+1)"),
        ],
    )
    send = Recorder()
    result = await import_file("institutions", path, send, SYSTEM)
    names = [c.name for c in send.commands if isinstance(c, RegisterInstitution)]
    assert names == ['=HYPERLINK("http://evil.example","点我")', "@SUM(1+1)"]
    assert result.counts.failed == 1
    [_, error] = read_error_file(tmp_path / "formulas.errors.csv")
    assert error == [
        "3",
        "类别",
        '\'=IF(1,"学科类","")\' is not one of 学科类、非学科类 (or SUBJECT, NON_SUBJECT)',
        "BAD_INPUT",
    ]


def test_escape_for_spreadsheet() -> None:
    assert escape_for_spreadsheet("=1+1") == "'=1+1"
    assert escape_for_spreadsheet("+86 138") == "'+86 138"
    assert escape_for_spreadsheet("-5") == "'-5"
    assert escape_for_spreadsheet("@cmd") == "'@cmd"
    assert escape_for_spreadsheet("\t=1") == "'\t=1"
    assert escape_for_spreadsheet("原州区") == "原州区"
    assert escape_for_spreadsheet("") == ""


async def test_the_error_file_never_holds_a_formula(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text(",".join(HEADER) + "\n" + ",".join(good_row(1)) + "\n", encoding="utf-8")

    async def refuse(command: Command, ctx: CommandContext) -> Outcome[Any]:
        raise BadInput("=cmd|' /C calc'!A0", field="name")

    await import_file("institutions", path, refuse, SYSTEM)
    [_, error] = read_error_file(tmp_path / "f.errors.csv")
    assert error == ["2", "机构名称", "'=cmd|' /C calc'!A0", "BAD_INPUT"]


# --- huge cells, control characters ------------------------------------------------------


async def test_ten_megabytes_in_one_cell_is_that_row_s_error(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    with path.open("w", encoding="utf-8") as out:
        out.write(",".join(HEADER) + "\n")
        out.write(",".join(good_row(1)) + "\n")
        huge = good_row(2)
        huge[0] = "名" * (10 * 1024 * 1024)
        out.write(",".join(huge) + "\n")
        out.write(",".join(good_row(3)) + "\n")
    send = Recorder()
    result = await import_file("institutions", path, send, SYSTEM)
    assert result.counts.as_dict() == {"applied": 2, "unchanged": 0, "failed": 1, "total": 3}
    assert read_error_file(tmp_path / "huge.errors.csv")[1] == [
        "3",
        "机构名称",
        "the cell is over 10,000 characters",
        "BAD_INPUT",
    ]


# --- encodings -----------------------------------------------------------------------------


def csv_bytes(rows: list[list[str]]) -> str:
    return "\r\n".join(",".join(r) for r in rows) + "\r\n"


@pytest.mark.parametrize(
    ("encoding", "expected"),
    [("utf-8", "utf-8-sig"), ("utf-8-sig", "utf-8-sig"), ("gb18030", "gb18030")],
)
async def test_utf8_with_or_without_bom_and_gb18030_read_alike(
    tmp_path: Path, encoding: str, expected: str
) -> None:
    path = tmp_path / f"{encoding}.csv"
    path.write_bytes(csv_bytes([HEADER, good_row(1), good_row(2, "原州区二")]).encode(encoding))
    send = Recorder()
    result = await import_file("institutions", path, send, SYSTEM)
    assert result.source == expected
    assert result.counts.applied == 2
    assert [c.name for c in send.commands] == ["机构1", "原州区二"]  # type: ignore[attr-defined]


async def test_mixed_encodings_are_refused_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(
        csv_bytes([HEADER, good_row(1)]).encode("utf-8")
        + csv_bytes([good_row(2, "原州区二")]).encode("gb18030")
        + csv_bytes([good_row(3)]).encode("utf-8")
    )
    send = Recorder()
    with pytest.raises(Refused, match=r"mixes encodings: line 3 is not UTF-8 while line 1 is"):
        await import_file("institutions", path, send, SYSTEM)
    assert send.commands == []
    assert not (tmp_path / "mixed.errors.csv").exists()


def test_neither_utf8_nor_gb18030_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"a,b\r\n1,2\r\n\xff\xff\xff,3\r\n")
    with pytest.raises(Refused, match=r"bad\.csv, line 3: neither UTF-8 nor GB18030"):
        detect_encoding(path)
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(Refused, match="is empty"):
        detect_encoding(tmp_path / "empty.csv")


def test_cells_come_out_as_text() -> None:
    from datetime import date, datetime

    assert cell_text(640402) == "640402"
    assert cell_text(640402.0) == "640402"
    assert cell_text(123.45) == "123.45"
    assert cell_text(datetime(2021, 3, 1)) == "2021-03-01"
    assert cell_text(datetime(2021, 3, 1, 9, 30)) == "2021-03-01 09:30:00"
    assert cell_text(date(2021, 3, 1)) == "2021-03-01"
    assert cell_text("   ") is None
    assert cell_text(None) is None


async def test_a_cell_beyond_what_a_csv_parser_holds_stops_the_import_saying_where(
    tmp_path: Path,
) -> None:
    path = tmp_path / "giant.csv"
    with path.open("w", encoding="utf-8") as out:
        out.write(",".join(HEADER) + "\n" + ",".join(good_row(1)) + "\n")
        out.write('"' + "a" * (17 * 1024 * 1024) + '",x\n')
    send = Recorder()
    with pytest.raises(
        Refused,
        match=r"giant\.csv, line 3: not a readable CSV .* \(stopped after 1 row\(s\): 1 applied "
        r"before it stay; importing the corrected file again is safe\)",
    ):
        await import_file("institutions", path, send, SYSTEM)
    assert len(send.commands) == 1
    assert not (tmp_path / "giant.errors.csv").exists()
    assert not (tmp_path / f".giant.errors.csv.{os.getpid()}.partial").exists()
