"""Inspections and prepaid orders from district sheets, text rules, and the command line.

Each sheet is written here as CSV (an .xlsx differs only in how it is read, which the unit
ring tests).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rich.console import Console

from services.bootstrap import Platform
from services.common.application import CommandContext
from services.common.auth import SYSTEM, Principal, Role
from services.common.config import Settings
from services.finance.module import OpenSupervisionAccount
from services.importing import import_file, institution_id
from services.importing.cli import REFUSED, ROWS_FAILED, run_import, write_template_command
from services.importing.kinds import inspection_id
from services.importing.runner import read_error_file
from services.inspections import views as inspection_views
from tests.factories import valid_credit_code

INSTITUTIONS = [
    "机构名称",
    "统一社会信用代码",
    "区县代码",
    "类别",
    "非学科类别",
    "办学形式",
    "登记日期",
    "办学许可证号",
]
HEADER = INSTITUTIONS[:6]


def write_csv(path: Path, rows: list[list[Any]]) -> Path:
    text = "\r\n".join(",".join("" if v is None else str(v) for v in row) for row in rows)
    path.write_text(text + "\r\n", encoding="utf-8-sig")
    return path


def code(region: str, n: int) -> str:
    return valid_credit_code(region, f"MA{n:07d}")


def good_row(n: int, name: str | None = None) -> list[str]:
    return [name or f"机构{n}", code("640402", n), "640402", "非学科类", "艺术", "线下"]


async def register(platform: Platform, tmp_path: Path, region: str, count: int) -> None:
    rows: list[list[Any]] = [INSTITUTIONS]
    for n in range(1, count + 1):
        licence = f"教民{n}号" if n % 2 else None  # odd ones are approved
        rows.append(
            [f"机构{n}", code(region, n), region, "非学科类", "体育", "线下", "2021-03-01", licence]
        )
    path = write_csv(tmp_path / f"institutions-{region}.csv", rows)
    result = await import_file("institutions", path, platform.execute, SYSTEM)
    assert result.counts.applied == count, result.errors
    await platform.settle()


async def test_inspection_batches_from_rows(platform: Platform, tmp_path: Path) -> None:
    await register(platform, tmp_path, "500105", 2)
    header = [
        "批次编号",
        "区县代码",
        "检查类型",
        "检查时间",
        "出动人次",
        "参与部门",
        "统一社会信用代码",
        "机构ID",
        "检查场所",
        "问题类型",
        "问题描述",
    ]
    batch = ["500105", "夜查", "2023-11-28 20:30", "6", "区教委、区市场监管局"]
    rows: list[list[Any]] = [
        header,
        ["JB-1", *batch, code("500105", 1), None, None, "消防安全", "灭火器过期"],
        ["JB-1", None, None, None, None, None, None, None, None, "师资资质", "教师无资格证"],
        ["JB-1", *batch, None, None, "观音桥某小区3栋1单元", "隐形变异", "居民楼内学科培训"],
        ["JB-1", *batch, code("500105", 2), None, None, None, None],
        ["JB-2", *batch, None, "nobody-1", None, None, None],
        ["JB-2", *batch, None, None, "某咖啡馆", None, None],
        [
            "JB-3",
            "500105",
            "夜查",
            "2023-11-28 20:30",
            "六",
            None,
            None,
            None,
            "某小区",
            None,
            None,
        ],
        ["JB-4", *batch, None, None, "甲地", None, None],
        ["JB-4", "500105", "日常检查", *batch[2:], None, None, "乙地", None, None],
    ]
    path = write_csv(tmp_path / "inspections.csv", rows)
    importer = Principal.of("importer@test", Role.IMPORTER, "500105", platform.regions)

    first = await import_file("inspections", path, platform.execute, importer)

    assert first.counts.as_dict() == {"applied": 4, "unchanged": 0, "failed": 5, "total": 9}
    assert read_error_file(tmp_path / "inspections.errors.csv")[1:] == [
        ["6", "机构ID", "no registered institution has id 'nobody-1'", "BAD_INPUT"],
        [
            "7",
            "",
            "not recorded: the rows of a batch are one commit, and row 6 was refused",
            "BAD_INPUT",
        ],
        ["8", "出动人次", "'六' is not a whole number", "BAD_INPUT"],
        [
            "10",
            "检查类型",
            "differs from row 9, the first row of batch JB-4: a batch's columns are "
            "the same on each of its rows",
            "BAD_INPUT",
        ],
        [
            "9",
            "",
            "not recorded: the rows of a batch are one commit, and row 10 was refused",
            "BAD_INPUT",
        ],
    ]
    await platform.settle()
    recorded = await inspection_views.inspection(
        platform.read_store, inspection_id("500105", "JB-1")
    )
    assert recorded is not None
    visits = recorded["visits"]
    assert [len(v["findings"]) for v in visits] == [2, 1, 0]
    assert visits[0]["institution_id"] == institution_id(code("500105", 1))
    assert visits[1]["rectification"] == inspection_id("500105", "JB-1") + "~2"
    assert recorded["personnel"] == 6
    assert recorded["departments"] == ["区教委", "区市场监管局"]

    again = await import_file("inspections", path, platform.execute, importer)
    assert again.counts.as_dict() == {"applied": 0, "unchanged": 4, "failed": 5, "total": 9}


async def test_prepaid_orders_need_an_account(platform: Platform, tmp_path: Path) -> None:
    await register(platform, tmp_path, "120101", 3)
    with_account = institution_id(code("120101", 1))
    await platform.execute(
        OpenSupervisionAccount(
            id=with_account, mode="BANK_CUSTODY", bank="天津银行", account_no="6222021234567890"
        ),
        CommandContext(principal=SYSTEM),
    )
    await platform.settle()
    header = [
        "统一社会信用代码",
        "机构ID",
        "订单编号",
        "付款人标识",
        "课时数",
        "课时单价",
        "课程开始日期",
        "课程结束日期",
        "缴费时间",
    ]
    order = ["2023-03-01", "2023-05-31", "2023-03-01 10:00"]
    rows: list[list[Any]] = [
        header,
        [code("120101", 1), None, "TJ-1", "parent-1", "20", "123.45", *order],
        [None, with_account, "TJ-2", "parent-2", "10", "¥80", *order],
        [code("120101", 3), None, "TJ-3", "parent-3", "10", "80", *order],
        [code("120101", 1), None, "TJ-4", "parent-4", "61", "10", *order],
        [code("120101", 1), None, "TJ-5", "parent-5", "10", "abc", *order],
        [code("120101", 2), None, "TJ-6", "parent-6", "10", "80", *order],
    ]
    path = write_csv(tmp_path / "orders.csv", rows)
    importer = Principal.of("importer@test", Role.IMPORTER, "120000", platform.regions)

    first = await import_file("orders", path, platform.execute, importer)

    assert first.counts.as_dict() == {"applied": 2, "unchanged": 0, "failed": 4, "total": 6}
    three = institution_id(code("120101", 3))
    two = institution_id(code("120101", 2))
    assert read_error_file(tmp_path / "orders.errors.csv")[1:] == [
        [
            "4",
            "统一社会信用代码",
            f"institution {three} has no supervised account: all prepaid "
            "fees go into one (教监管函〔2021〕2号)",
            "CONFLICT",
        ],
        [
            "5",
            "课时数",
            "one charge covers at most 60 lessons (教监管函〔2021〕2号); 61 asked",
            "BAD_INPUT",
        ],
        ["6", "课时单价", "'abc' is not an amount", "BAD_INPUT"],
        [
            "7",
            "统一社会信用代码",
            f"institution {two} has no supervised account: all prepaid "
            "fees go into one (教监管函〔2021〕2号)",
            "CONFLICT",
        ],
    ]
    again = await import_file("orders", path, platform.execute, importer)
    assert again.counts.as_dict() == {"applied": 0, "unchanged": 2, "failed": 4, "total": 6}


async def test_control_characters_are_refused_by_the_platform_s_text_rules(
    platform: Any, tmp_path: Path
) -> None:
    path = tmp_path / "ctl.csv"
    rows = [HEADER, good_row(1, name="机构\x07一"), good_row(2, name="机构\u202e二"), good_row(3)]
    path.write_text("\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8")
    result = await import_file("institutions", path, platform.execute, SYSTEM)
    assert result.counts.as_dict() == {"applied": 1, "unchanged": 0, "failed": 2, "total": 3}
    errors = read_error_file(tmp_path / "ctl.errors.csv")[1:]
    assert errors == [
        [
            "2",
            "机构名称",
            "name contains U+0007 (BEL) at position 3: control characters are not allowed",
            "BAD_INPUT",
        ],
        [
            "3",
            "机构名称",
            "name contains U+202E (RIGHT-TO-LEFT OVERRIDE) at position 3: "
            "bidirectional formatting characters are not allowed",
            "BAD_INPUT",
        ],
    ]


# --- the command line's body -------------------------------------------------------------


def quiet() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, force_terminal=False), out


def test_run_import_exit_codes_and_output(settings: Settings, tmp_path: Path) -> None:
    rows: list[list[Any]] = [INSTITUTIONS]
    rows.append(
        ["机构1", code("640402", 1), "640402", "非学科类", "体育", "线下", "2021-03-01", None]
    )
    rows.append(
        ["机构2", code("120101", 2), "120101", "非学科类", "体育", "线下", "2021-03-01", None]
    )
    path = write_csv(tmp_path / "机构.csv", rows)

    console, out = quiet()
    assert (
        run_import("institutions", path, settings, region="640400", console=console) == ROWS_FAILED
    )
    text = out.getvalue()
    assert "institutions: 2 row(s): 1 applied, 0 unchanged, 1 failed" in text
    assert f"Errors: {tmp_path / '机构.errors.csv'}" in text
    [_, error] = read_error_file(tmp_path / "机构.errors.csv")
    assert error == [
        "3",
        "区县代码",
        "importer@cli acts for 640400 and may not write in region 120101",
        "FORBIDDEN",
    ]

    # Nationally, the second row goes in and the first is unchanged: exit 0, no error file.
    console, out = quiet()
    assert run_import("institutions", path, settings, console=console, progress=False) == 0
    assert "2 row(s): 1 applied, 1 unchanged, 0 failed" in out.getvalue()
    assert not (tmp_path / "机构.errors.csv").exists()

    console, out = quiet()
    assert run_import("institutions", path, settings, region="99", console=console) == REFUSED
    assert "region" in out.getvalue()
    (tmp_path / "empty.csv").write_bytes(b"")
    console, out = quiet()
    assert run_import("institutions", tmp_path / "empty.csv", settings, console=console) == REFUSED
    assert "Error: empty.csv is empty" in out.getvalue()
    assert run_import("teachers", path, settings, console=console) == REFUSED


def test_template_command(tmp_path: Path) -> None:
    console, _out = quiet()
    assert write_template_command("orders", tmp_path / "t" / "orders.xlsx", console) == 0
    assert (tmp_path / "t" / "orders.xlsx").is_file()
    assert write_template_command("orders", tmp_path / "orders.csv", console) == REFUSED
