"""Importing the register from a district's sheet, through the embedded platform.

A 1,000-row sheet made from the template, with deliberately wrong rows at fixed places,
gives an exact error file and exact counts; importing it again applies nothing and
leaves every event store as it was.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from openpyxl import load_workbook

from services.bootstrap import Platform
from services.common.auth import Principal, Role
from services.common.regions import EDITION
from services.importing import import_file, institution_id, write_template
from services.importing.runner import ERROR_HEADER, read_error_file
from services.registry import views
from services.registry.domain.rules import credit_code_check_char
from tests.factories import valid_credit_code

SUBJECT = "importer@test"
ROWS = 1_000


def sheet_row(n: int) -> dict[str, object]:
    region = ("640402", "640422")[n % 2]
    subject = n % 3 == 0
    return {
        "机构名称": f"原州区第{n}培训中心",
        "统一社会信用代码": valid_credit_code(region, f"MA{n:07d}"),
        "区县代码": region,
        "类别": "学科类" if subject else "非学科类",
        "非学科类别": None if subject else "艺术",
        "办学形式": "线上" if n % 5 == 0 else "线下",
        "地址": f"固原市原州区文化街{n}号",
        "登记日期": datetime(2020, 1 + n % 12, 1),
        "办学许可证号": f"教民{n:05d}号" if n % 10 == 0 else None,
    }


def wrong_check_char(code: str) -> str:
    right = credit_code_check_char(code[:17])
    return code[:17] + ("0" if right != "0" else "1")


def build_sheet(tmp_path: Path) -> tuple[Path, list[list[str]]]:
    """The sheet, and the error file its import must write (header included)."""
    template = write_template("institutions", tmp_path / "template.xlsx")
    book = load_workbook(template)
    sheet = book.worksheets[0]
    header = [c.value for c in sheet[1]]
    expected: list[list[str]] = [list(ERROR_HEADER)]
    for n in range(1, ROWS + 1):
        row = sheet_row(n)
        line = n + 1
        match n % 100:
            case 7:
                code = str(row["统一社会信用代码"])
                row["统一社会信用代码"] = bad = wrong_check_char(code)
                message = (
                    f"check character is '{bad[17]}' but GB 32100 gives '{code[17]}': "
                    "the code is mistyped"
                )
                expected.append([str(line), "统一社会信用代码", message, "BAD_INPUT"])
            case 17:
                row["区县代码"] = "649999"
                message = f'region "649999" is not a GB/T 2260 code in the {EDITION} edition'
                expected.append([str(line), "区县代码", message, "BAD_INPUT"])
            case 27:
                row["类别"] = "外星类"
                message = "'外星类' is not one of 学科类、非学科类 (or SUBJECT, NON_SUBJECT)"
                expected.append([str(line), "类别", message, "BAD_INPUT"])
            case 37:
                row["机构名称"] = None
                expected.append([str(line), "机构名称", "机构名称 is required", "BAD_INPUT"])
            case 47:
                row["区县代码"] = "120101"
                message = f"{SUBJECT} acts for 640400 and may not write in region 120101"
                expected.append([str(line), "区县代码", message, "FORBIDDEN"])
            case 57:
                code = str(sheet_row(n - 1)["统一社会信用代码"])
                row["统一社会信用代码"] = code
                message = (
                    f"institution {institution_id(code)} is already registered with "
                    "different details"
                )
                expected.append([str(line), "统一社会信用代码", message, "CONFLICT"])
        sheet.append([row.get(str(h)) for h in header])
    path = tmp_path / "固原机构.xlsx"
    book.save(path)
    return path, expected


async def positions(platform: Platform) -> dict[str, int]:
    return {name: await s.max_position() for name, s in platform.event_stores.items()}


async def test_a_thousand_rows_exactly_then_again_nothing(
    platform: Platform, tmp_path: Path
) -> None:
    path, expected = build_sheet(tmp_path)
    importer = Principal.of(SUBJECT, Role.IMPORTER, "640400", platform.regions)
    seen: list[tuple[int, int | None]] = []

    first = await import_file(
        "institutions",
        path,
        platform.execute,
        importer,
        on_progress=lambda d, t: seen.append((d, t)),
    )

    bad = len(expected) - 1
    assert bad == 60
    assert first.counts.as_dict() == {
        "applied": ROWS - bad,
        "unchanged": 0,
        "failed": bad,
        "total": ROWS,
    }
    assert first.error_file == tmp_path / "固原机构.errors.csv"
    assert first.error_file.read_bytes().startswith(b"\xef\xbb\xbf")  # Excel reads it as UTF-8
    assert read_error_file(first.error_file) == expected
    assert seen[-1] == (ROWS, ROWS)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    await platform.settle()
    before = await positions(platform)

    again = await import_file("institutions", path, platform.execute, importer)

    assert again.counts.as_dict() == {
        "applied": 0,
        "unchanged": ROWS - bad,
        "failed": bad,
        "total": ROWS,
    }
    assert read_error_file(tmp_path / "固原机构.errors.csv") == expected
    await platform.settle()
    assert await positions(platform) == before

    # What went in is what the sheet says: approved with its licence, or pending.
    ten = await views.institution(platform.read_store, institution_id(code_of(10)))
    assert ten is not None
    assert (ten["name"], ten["status"], ten["region"]) == (
        "原州区第10培训中心",
        "APPROVED",
        "640402",
    )
    eleven = await views.institution(platform.read_store, institution_id(code_of(11)))
    assert eleven is not None and eleven["status"] == "PENDING"
    assert await views.institution(platform.read_store, institution_id(code_of(47))) is None


def code_of(n: int) -> str:
    return str(sheet_row(n)["统一社会信用代码"])
