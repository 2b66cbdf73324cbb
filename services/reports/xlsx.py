"""The monthly report as an Excel workbook: the numbers a bureau re-uses in its own sheets.

Every figure is stored as a number with a number format (never as text), so a reader can
sum, sort and chart it: counts ``#,##0``, money ``#,##0.00``, rates ``0.0%``; a missing
rate is an empty cell, not a zero. Money is a ``Decimal`` in the model and a float rounded
to the fen in the cell (Excel has no decimal type; a float holds any amount of yuan below
10¹³ exactly to two places). The charts are Excel's own (``openpyxl.chart``), drawn from
the trend tables beside them, so they follow if someone edits a cell.

Sheets: 概览 (headline figures by section, then the breakdowns), 下级排名 (the child
regions ranked), 趋势 (twelve months per trend, each with its chart), 说明 (the notes).
The same report gives the same bytes: the document dates come from ``generated_at`` and
the zip entries carry that time too.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from openpyxl import Workbook
from openpyxl.chart import BarChart, LineChart, Reference
from openpyxl.chart.data_source import AxDataSource, StrRef
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet
from openpyxl.writer.excel import ExcelWriter

from services.reports.model import Kind, Measure, MonthlyReport, Trend, Value

NUMBER_FORMATS: dict[Kind, str] = {"count": "#,##0", "money": "#,##0.00", "rate": "0.0%"}
CHANGE_FORMATS: dict[Kind, str] = {
    "count": "+#,##0;-#,##0;0",
    "money": "+#,##0.00;-#,##0.00;0.00",
    "rate": "+0.0%;-0.0%;0.0%",  # a difference of rates: percentage points
}
AXIS_FORMATS: dict[Kind, str] = {"count": "#,##0", "money": "#,##0", "rate": "0%"}
AXIS_TITLES: dict[Kind, str] = {"count": "数量", "money": "金额（元）", "rate": "比率"}
# The PDF's palette too (services/reports/pdf.py), so both charts look alike.
SERIES_COLOURS = ("2F5597", "ED7D31", "70AD47", "7F7F7F", "FFC000", "5B9BD5")
NUMERALS = "一二三四五六七八九十"

TITLE_FONT = Font(bold=True, size=14)
HEADING_FONT = Font(bold=True, size=12)
HEADER_FONT = Font(bold=True)
HEADER_FILL = PatternFill("solid", start_color="DDE6F0", end_color="DDE6F0")
SECTION_FILL = PatternFill("solid", start_color="F2F2F2", end_color="F2F2F2")
THIN = Side(style="thin", color="A6A6A6")
BOX = Border(left=THIN, right=THIN, top=THIN, bottom=THIN)
RIGHT = Alignment(horizontal="right", vertical="center")
CENTRE = Alignment(horizontal="center", vertical="center", wrap_text=True)
WRAP = Alignment(wrap_text=True, vertical="top")


def render_xlsx(report: MonthlyReport) -> bytes:
    """The report as an ``.xlsx`` file."""
    workbook = Workbook()
    overview = workbook.active
    assert overview is not None
    overview.title = "概览"
    write_overview(overview, report)
    write_ranking(workbook.create_sheet("下级排名"), report)
    write_trends(workbook.create_sheet("趋势"), report)
    write_notes(workbook.create_sheet("说明"), report)

    stamp = utc(report.generated_at)
    props = workbook.properties
    props.title = report.title
    props.subject = f"{report.region.full_name} {month_label(report.month)} 每月通报"
    props.creator = "Shuangjian"
    props.lastModifiedBy = "Shuangjian"
    props.keywords = "双减 每月通报"
    props.language = "zh-CN"
    props.created = stamp
    props.modified = stamp
    return save(workbook, stamp)


# --- 概览 -------------------------------------------------------------------------------


def write_overview(ws: Worksheet, report: MonthlyReport) -> None:
    ws["A1"] = report.title
    ws["A1"].font = TITLE_FONT
    ws.merge_cells("A1:E1")
    ws["A2"] = subtitle(report)
    ws.merge_cells("A2:E2")
    header_row = 3
    header(ws, header_row, ["指标", "本月", "上月", "环比变化", "口径"])
    row = header_row + 1
    for number, section in enumerate(report.sections):
        cell = ws.cell(row, 1, f"{NUMERALS[number % 10]}、{section.title}")
        cell.font = HEADER_FONT
        for column in range(1, 6):
            ws.cell(row, column).fill = SECTION_FILL
            ws.cell(row, column).border = BOX
        row += 1
        for figure in section.figures:
            kind = figure.measure.kind
            ws.cell(row, 1, label(figure.measure))
            number_cell(ws, row, 2, figure.value, NUMBER_FORMATS[kind])
            number_cell(ws, row, 3, figure.previous, NUMBER_FORMATS[kind])
            number_cell(ws, row, 4, figure.change, CHANGE_FORMATS[kind])
            ws.cell(row, 5, basis(figure.measure))
            for column in range(1, 6):
                ws.cell(row, column).border = BOX
            row += 1
    ws.cell(row, 1, "注：比率的环比变化以百分点计；空白表示无数可算（如当月无到期整改事项）。")
    ws.cell(row, 1).font = Font(italic=True, color="595959")
    row += 2

    for breakdown in report.breakdowns:
        ws.cell(row, 1, breakdown.title).font = HEADING_FONT
        row += 1
        header(ws, row, ["类别", "本月", "上月", "变化"])
        row += 1
        for item in breakdown.rows:
            ws.cell(row, 1, item.label)
            number_cell(ws, row, 2, item.value, NUMBER_FORMATS["count"])
            number_cell(ws, row, 3, item.previous, NUMBER_FORMATS["count"])
            number_cell(ws, row, 4, item.change, CHANGE_FORMATS["count"])
            boxed(ws, row, 4)
            row += 1
        total = sum(item.value for item in breakdown.rows)
        previous = sum(item.previous for item in breakdown.rows)
        ws.cell(row, 1, "合计").font = HEADER_FONT
        number_cell(ws, row, 2, total, NUMBER_FORMATS["count"]).font = HEADER_FONT
        number_cell(ws, row, 3, previous, NUMBER_FORMATS["count"]).font = HEADER_FONT
        number_cell(ws, row, 4, total - previous, CHANGE_FORMATS["count"]).font = HEADER_FONT
        boxed(ws, row, 4)
        row += 2

    ws.freeze_panes = ws.cell(header_row + 1, 1)
    widths(ws, [26, 18, 18, 18, 10])
    ws.row_dimensions[2].height = 30
    ws["A2"].alignment = WRAP
    printable(ws, landscape=False, title_rows=f"{header_row}:{header_row}")


def subtitle(report: MonthlyReport) -> str:
    parts = [
        f"地区：{report.region.full_name}（{report.region.code}）",
        f"月份：{month_label(report.month)}（上月：{month_label(report.previous_month)}）",
        f"生成：{report.generated_at:%Y-%m-%d %H:%M}，{report.generated_by}",
    ]
    return "　".join(parts)


# --- 下级排名 ----------------------------------------------------------------------------


def write_ranking(ws: Worksheet, report: MonthlyReport) -> None:
    if not report.children:
        ws["A1"] = "无下级区域"
        ws["A1"].font = HEADING_FONT
        ws["A2"] = f"{report.region.full_name}没有下级区域，无排名。"
        widths(ws, [40])
        printable(ws, landscape=True)
        return
    ws["A1"] = ranking_title(report)
    ws["A1"].font = HEADING_FONT
    columns = ["排名", "代码", "名称", *(label(m) for m in report.child_measures)]
    header(ws, 2, columns)
    row = 3
    for child in report.children:
        ws.cell(row, 1, child.rank)
        ws.cell(row, 2, child.code)
        ws.cell(row, 3, child.name)
        for offset, measure in enumerate(report.child_measures):
            value = child.values.get(measure.key)
            number_cell(ws, row, 4 + offset, value, NUMBER_FORMATS[measure.kind])
        boxed(ws, row, len(columns))
        row += 1
    last = get_column_letter(len(columns))
    ws.auto_filter.ref = f"A2:{last}{row - 1}"
    ws.freeze_panes = "D3"  # the header and the names stay in view
    widths(ws, [8, 10, 16, *(max(14, text_width(c) + 4) for c in columns[3:])])
    printable(ws, landscape=True, title_rows="2:2")


def ranking_title(report: MonthlyReport) -> str:
    level = report.child_level or "下级区域"
    return f"{report.region.name}各{level}情况（按{report.ranked_by.label}排名）"


# --- 趋势 --------------------------------------------------------------------------------

CHART_ROWS = 18  # rows per chart (8.5 cm and a gap), the charts one under the other


def write_trends(ws: Worksheet, report: MonthlyReport) -> None:
    """One table of every trend (the months down, a column per measure under its trend's
    title), then a chart of each trend drawn from its columns."""
    months = sorted({m for trend in report.trends for m in trend.months})
    first, last = 3, 2 + len(months)
    groups = ["月份"]
    titles = ["月份"]
    starts: list[int] = []
    for trend in report.trends:
        starts.append(len(titles) + 1)
        groups += [trend.title] * len(trend.measures)
        titles += [label(m) for m in trend.measures]
    header(ws, 1, groups)
    header(ws, 2, titles)
    ws.merge_cells(start_row=1, start_column=1, end_row=2, end_column=1)
    for trend, column in zip(report.trends, starts, strict=True):
        end = column + len(trend.measures) - 1
        if end > column:
            ws.merge_cells(start_row=1, start_column=column, end_row=1, end_column=end)
    for row, month in enumerate(months, start=first):
        ws.cell(row, 1, f"{month:%Y-%m}")
        boxed(ws, row, len(titles))
    for trend, column in zip(report.trends, starts, strict=True):
        for offset, measure in enumerate(trend.measures):
            by_month = dict(zip(trend.months, trend.values[measure.key], strict=True))
            for row, month in enumerate(months, start=first):
                fmt = NUMBER_FORMATS[measure.kind]
                number_cell(ws, row, column + offset, by_month.get(month), fmt)
    for index, (trend, column) in enumerate(zip(report.trends, starts, strict=True)):
        chart = trend_chart(ws, trend, column, first, last)
        ws.add_chart(chart, f"A{last + 3 + index * CHART_ROWS}")
    ws.freeze_panes = ws.cell(first, 2)
    widths(ws, [10, *([17] * (len(titles) - 1))])
    printable(ws, landscape=False, title_rows="1:2")


def trend_chart(ws: Worksheet, trend: Trend, column: int, first: int, last: int) -> Any:
    """An Excel chart of one trend's columns (from ``column``, header on row 2): a series
    per measure, the months of column A as categories."""
    chart: BarChart | LineChart
    if trend.chart == "bar":
        chart = BarChart()
        chart.type = "col"
        chart.grouping = "clustered"
        chart.overlap = -10
    else:
        chart = LineChart()
    kind = trend.measures[0].kind
    chart.title = trend.title
    chart.style = 10
    chart.height = 8.5  # cm
    chart.width = 18
    chart.x_axis.title = "月份"
    chart.y_axis.title = AXIS_TITLES[kind]
    chart.y_axis.number_format = AXIS_FORMATS[kind]
    chart.y_axis.scaling.min = 0  # as the PDF: a bar's height is its value
    if kind == "rate":
        chart.y_axis.scaling.max = 1
    # openpyxl marks axes deleted unless told otherwise; Excel then hides their labels.
    chart.x_axis.delete = False
    chart.y_axis.delete = False
    chart.legend.position = "b"
    chart.display_blanks = "gap"  # a missing month is a gap, not a zero
    data = Reference(
        ws, min_col=column, max_col=column + len(trend.measures) - 1, min_row=2, max_row=last
    )
    chart.add_data(data, titles_from_data=True)
    months = Reference(ws, min_col=1, max_col=1, min_row=first, max_row=last)
    for index, series in enumerate(chart.series):
        series.cat = AxDataSource(strRef=StrRef(f=str(months)))
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        if trend.chart == "bar":
            series.graphicalProperties.solidFill = colour
            series.graphicalProperties.line.solidFill = colour
        else:
            series.graphicalProperties.line.solidFill = colour
            series.graphicalProperties.line.width = 28575  # 2.25 pt
            series.marker.symbol = "circle"
            series.marker.size = 6
            series.marker.graphicalProperties = None
            series.smooth = False
    return chart


# --- 说明 --------------------------------------------------------------------------------


def write_notes(ws: Worksheet, report: MonthlyReport) -> None:
    ws["A1"] = "说明"
    ws["A1"].font = HEADING_FONT
    row = 2
    for number, note in enumerate(report.notes, start=1):
        ws.cell(row, 1, number)
        ws.cell(row, 2, note).alignment = WRAP
        ws.row_dimensions[row].height = 15 * max(1, -(-text_width(note) // 90))
        row += 1
    row += 1
    generated = f"{report.generated_at:%Y-%m-%d %H:%M}"
    ws.cell(row, 2, f"报告生成时间：{generated}；生成者：{report.generated_by}")
    ws.column_dimensions["A"].width = 5
    ws.column_dimensions["B"].width = 100
    printable(ws, landscape=False)


# --- cells -------------------------------------------------------------------------------


def cell_value(value: Value) -> int | float | None:
    """What a cell holds for a model value: money as a float rounded to the fen."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return float(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    if isinstance(value, float):
        return round(value, 12)  # a rate's change: 0.0116, not 0.01160000000000005
    return value


def number_cell(ws: Worksheet, row: int, column: int, value: Value, fmt: str) -> Any:
    cell = ws.cell(row, column, cell_value(value))
    cell.number_format = fmt
    cell.alignment = RIGHT
    return cell


def header(ws: Worksheet, row: int, titles: Sequence[str]) -> None:
    for column, title in enumerate(titles, start=1):
        cell = ws.cell(row, column, title)
        cell.font = HEADER_FONT
        cell.fill = HEADER_FILL
        cell.border = BOX
        cell.alignment = CENTRE


def boxed(ws: Worksheet, row: int, columns: int) -> None:
    for column in range(1, columns + 1):
        ws.cell(row, column).border = BOX


def label(measure: Measure) -> str:
    """A measure's column or row title: its label, with the unit for money."""
    return f"{measure.label}（元）" if measure.kind == "money" else measure.label


def basis(measure: Measure) -> str:
    return "月末" if measure.stock else "当月"


def month_label(month: date) -> str:
    return f"{month.year}年{month.month}月"


def text_width(text: str) -> int:
    """Excel column units: a hanzi is about two Latin characters wide."""
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def widths(ws: Worksheet, columns: Sequence[float]) -> None:
    for index, width in enumerate(columns, start=1):
        ws.column_dimensions[get_column_letter(index)].width = width


def printable(ws: Worksheet, landscape: bool, title_rows: str | None = None) -> None:
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.orientation = "landscape" if landscape else "portrait"
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0  # as many pages as it takes, one page wide
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_options.horizontalCentered = True
    if title_rows:
        ws.print_title_rows = title_rows


# --- file --------------------------------------------------------------------------------


def utc(moment: datetime) -> datetime:
    """Naive UTC, what the document properties hold."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


class StampedZip(zipfile.ZipFile):
    """A zip whose entries all carry one time, so the same workbook gives the same bytes."""

    def __init__(self, file: io.BytesIO, stamp: datetime) -> None:
        super().__init__(file, "w", zipfile.ZIP_DEFLATED)
        self.stamp = max(stamp, datetime(1980, 1, 1)).timetuple()[:6]

    def writestr(
        self, zinfo_or_arcname: str | zipfile.ZipInfo, data: Any, *args: Any, **kwargs: Any
    ) -> None:
        if isinstance(zinfo_or_arcname, str):
            info = zipfile.ZipInfo(zinfo_or_arcname, date_time=self.stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            zinfo_or_arcname = info
        super().writestr(zinfo_or_arcname, data, *args, **kwargs)


def save(workbook: Workbook, stamp: datetime) -> bytes:
    # Not ``Workbook.save``: it stamps ``modified`` with the clock and the zip with now.
    buffer = io.BytesIO()
    archive = StampedZip(buffer, stamp)
    ExcelWriter(workbook, archive).save()
    return buffer.getvalue()
