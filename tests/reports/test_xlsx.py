"""The monthly report's workbook, read back as a user's spreadsheet program would read it."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC
from decimal import Decimal
from typing import Any

import pytest
from openpyxl import load_workbook
from openpyxl.chart import BarChart, LineChart
from openpyxl.utils import get_column_letter
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet.worksheet import Worksheet

from services.reports.model import Kind, MonthlyReport, Value
from services.reports.xlsx import label, render_xlsx
from tests.reports.sample import district_report, sample_report

FORMATS = {"count": "#,##0", "money": "#,##0.00", "rate": "0.0%"}


@pytest.fixture(scope="module")
def report() -> MonthlyReport:
    return sample_report()


@pytest.fixture(scope="module")
def workbook(report: MonthlyReport) -> Workbook:
    return load_workbook(io.BytesIO(render_xlsx(report)))


def rows_by_label(ws: Worksheet) -> dict[str, int]:
    return {str(ws.cell(r, 1).value): r for r in range(1, ws.max_row + 1) if ws.cell(r, 1).value}


def assert_cell(cell: Any, expected: Value, kind: Kind) -> None:
    if expected is None:
        assert cell.value is None, "a missing figure is an empty cell, not 0"
    elif kind == "money":
        assert isinstance(cell.value, int | float)  # 6832450.0 reads back as an int
        assert Decimal(str(round(cell.value, 2))) == expected
    elif kind == "rate":
        assert cell.value == pytest.approx(expected)
    else:
        assert type(cell.value) is int and cell.value == expected


def test_the_sheets_are_named_in_chinese(workbook: Workbook) -> None:
    assert workbook.sheetnames == ["概览", "下级排名", "趋势", "说明"]


def test_every_headline_figure_is_a_number_with_its_format(
    workbook: Workbook, report: MonthlyReport
) -> None:
    ws = workbook["概览"]
    assert ws["A1"].value == report.title
    assert report.region.full_name in ws["A2"].value and "2025年6月" in ws["A2"].value
    assert [ws.cell(3, c).value for c in range(1, 5)] == ["指标", "本月", "上月", "环比变化"]
    rows = rows_by_label(ws)
    for number, section in enumerate(report.sections):
        assert f"{'一二三'[number]}、{section.title}" in rows
        for figure in section.figures:
            kind = figure.measure.kind
            row = rows[label(figure.measure)]
            value, previous, change = (ws.cell(row, c) for c in (2, 3, 4))
            assert_cell(value, figure.value, kind)
            assert_cell(previous, figure.previous, kind)
            assert_cell(change, figure.change, kind)
            assert value.number_format == previous.number_format == FORMATS[kind]
            assert change.number_format.startswith("+"), "a change shows its sign"
            assert ws.cell(row, 5).value == ("月末" if figure.measure.stock else "当月")


def test_a_rate_with_nothing_to_divide_by_is_an_empty_cell(workbook: Workbook) -> None:
    ws = workbook["概览"]
    row = rows_by_label(ws)["整改完成率"]
    assert ws.cell(row, 2).value == pytest.approx(0.8596)
    assert ws.cell(row, 3).value is None
    assert ws.cell(row, 4).value is None


def test_the_breakdowns_follow_with_this_and_last_month(
    workbook: Workbook, report: MonthlyReport
) -> None:
    ws = workbook["概览"]
    rows = rows_by_label(ws)
    for breakdown in report.breakdowns:
        top = rows[breakdown.title]
        assert [ws.cell(top + 1, c).value for c in range(1, 5)] == ["类别", "本月", "上月", "变化"]
        for offset, item in enumerate(breakdown.rows, start=2):
            cells = [ws.cell(top + offset, c).value for c in range(1, 5)]
            assert cells == [item.label, item.value, item.previous, item.change]
        total = top + 2 + len(breakdown.rows)
        assert ws.cell(total, 1).value == "合计"
        assert ws.cell(total, 2).value == sum(r.value for r in breakdown.rows)
    findings = report.breakdowns[0]
    assert ws.cell(rows[findings.title] + 2, 4).number_format == "+#,##0;-#,##0;0"


def test_the_children_are_ranked_with_their_figures(
    workbook: Workbook, report: MonthlyReport
) -> None:
    ws = workbook["下级排名"]
    titles = [ws.cell(2, c).value for c in range(1, 4 + len(report.child_measures))]
    assert titles == ["排名", "代码", "名称", *(label(m) for m in report.child_measures)]
    names = [ws.cell(r, 3).value for r in range(3, 3 + len(report.children))]
    assert names == ["原州区", "西吉县", "彭阳县", "隆德县", "泾源县"]
    for row, child in enumerate(report.children, start=3):
        assert ws.cell(row, 1).value == child.rank
        assert ws.cell(row, 2).value == child.code
        for column, measure in enumerate(report.child_measures, start=4):
            cell = ws.cell(row, column)
            assert_cell(cell, child.values[measure.key], measure.kind)
            assert cell.number_format == FORMATS[measure.kind]
    ranks = [ws.cell(r, 1).value for r in range(3, 3 + len(report.children))]
    assert ranks == sorted(ranks)
    assert ws.cell(7, 7).value is None  # 泾源县 had no findings: no rectification rate
    assert ws.auto_filter.ref == "A2:H7"
    assert ws.page_setup.orientation == "landscape"
    assert ws.sheet_properties.pageSetUpPr.fitToPage and ws.page_setup.fitToWidth == 1


def test_every_table_sheet_keeps_its_header_in_view(workbook: Workbook) -> None:
    assert workbook["概览"].freeze_panes == "A4"
    assert workbook["下级排名"].freeze_panes == "D3"
    assert workbook["趋势"].freeze_panes == "B3"


def test_each_trend_is_a_native_chart_of_its_table(
    workbook: Workbook, report: MonthlyReport
) -> None:
    ws = workbook["趋势"]
    months = [ws.cell(r, 1).value for r in range(3, 15)]
    assert months == [f"{m:%Y-%m}" for m in report.trends[0].months]
    assert ws.cell(15, 1).value is None
    charts = ws._charts
    assert len(charts) == len(report.trends)
    column = 2
    for chart, trend in zip(charts, report.trends, strict=True):
        assert isinstance(chart, BarChart if trend.chart == "bar" else LineChart)
        assert text(chart.title) == trend.title
        assert text(chart.x_axis.title) == "月份"
        assert text(chart.y_axis.title)
        assert chart.x_axis.delete is False and chart.y_axis.delete is False
        assert ws.cell(1, column).value == trend.title
        assert len(chart.series) == len(trend.measures)
        for series, measure in zip(chart.series, trend.measures, strict=True):
            letter = get_column_letter(column)
            assert series.val.numRef.f == f"'趋势'!${letter}$3:${letter}$14"
            assert series.cat.strRef.f == "'趋势'!$A$3:$A$14"  # the twelve months
            assert series.tx.strRef.f == f"'趋势'!{letter}2"
            assert ws.cell(2, column).value == label(measure)
            for row, expected in enumerate(trend.values[measure.key], start=3):
                assert_cell(ws.cell(row, column), expected, measure.kind)
            column += 1


def text(title: Any) -> str:
    return "".join(run.t for p in title.tx.rich.p for run in (p.r or []))


def test_the_notes_have_a_sheet(workbook: Workbook, report: MonthlyReport) -> None:
    ws = workbook["说明"]
    assert [ws.cell(r, 2).value for r in range(2, 2 + len(report.notes))] == list(report.notes)


def test_the_document_says_what_it_is_and_when(workbook: Workbook, report: MonthlyReport) -> None:
    props = workbook.properties
    assert props.title == report.title
    assert props.creator == "Shuangjian"
    stamp = report.generated_at.astimezone(UTC).replace(tzinfo=None)
    assert props.created == stamp and props.modified == stamp


def test_the_same_report_gives_the_same_bytes(report: MonthlyReport) -> None:
    assert render_xlsx(report) == render_xlsx(sample_report())


def test_a_district_says_it_has_no_children() -> None:
    workbook = load_workbook(io.BytesIO(render_xlsx(district_report())))
    assert workbook["下级排名"]["A1"].value == "无下级区域"


def test_a_bare_report_still_renders(report: MonthlyReport) -> None:
    bare = replace(report, breakdowns=(), children=(), trends=(), notes=())
    workbook = load_workbook(io.BytesIO(render_xlsx(bare)))
    assert workbook["概览"]["A1"].value == report.title
    assert workbook["趋势"]._charts == []
