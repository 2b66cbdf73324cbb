"""The monthly report as a PDF: what a bureau prints, stamps and files.

The Chinese must show on any machine, including one with no Chinese font at all, so the
text is set in Noto Sans SC from ``services/reports/fonts`` and embedded: reportlab
embeds a subset of a registered ``TTFont`` (only the glyphs the document uses) with a
ToUnicode map, so copying text out of the PDF gives the hanzi back. Reportlab's CID fonts
(``STSong-Light``) would embed nothing and leave the glyphs to the viewer.

Layout: title, the headline figures by section, the breakdowns, a chart per trend
(reportlab's own charts, the same series as the workbook's), the child regions ranked (on a
landscape page when their columns do not fit upright), the notes. Every page ends with the
region, the month and "第 N 页 / 共 M 页". The same report gives the same bytes
(``invariant``; the document date is ``generated_at``).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.linecharts import HorizontalLineChart
from reportlab.graphics.shapes import Drawing, String
from reportlab.graphics.widgets.markers import makeMarker
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Frame,
    KeepTogether,
    NextPageTemplate,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

from services.reports import fonts
from services.reports.model import Kind, Measure, MonthlyReport, Trend, Value

FONT = "NotoSansSC"
FONT_BOLD = "NotoSansSC-Bold"
MARGIN = 18 * mm
PORTRAIT = A4
LANDSCAPE = landscape(A4)
PORTRAIT_WIDTH = PORTRAIT[0] - 2 * MARGIN
LANDSCAPE_WIDTH = LANDSCAPE[0] - 2 * MARGIN
DASH = "—"  # nothing to show: a rate with nothing to divide by
NUMERALS = "一二三四五六七八九十"

INK = colors.HexColor("#222222")
GREY = colors.HexColor("#595959")
RULE = colors.HexColor("#A6A6A6")
HEADER_FILL = colors.HexColor("#DDE6F0")
STRIPE = colors.HexColor("#F7F9FC")
# The workbook's palette (services/reports/xlsx.py), so both charts look alike.
SERIES_COLOURS = tuple(
    colors.HexColor(f"#{c}") for c in ("2F5597", "ED7D31", "70AD47", "7F7F7F", "FFC000", "5B9BD5")
)

TITLE = ParagraphStyle(
    "title", fontName=FONT_BOLD, fontSize=17, leading=24, alignment=TA_CENTER, textColor=INK
)
SUBTITLE = ParagraphStyle(
    "subtitle", fontName=FONT, fontSize=9, leading=14, alignment=TA_CENTER, textColor=GREY
)
HEADING = ParagraphStyle(
    "heading",
    fontName=FONT_BOLD,
    fontSize=12.5,
    leading=18,
    spaceBefore=10,
    spaceAfter=5,
    textColor=INK,
    keepWithNext=1,
)
BODY = ParagraphStyle(
    "body", fontName=FONT, fontSize=9.5, leading=15, wordWrap="CJK", textColor=INK
)
CELL = ParagraphStyle("cell", fontName=FONT, fontSize=9, leading=12, wordWrap="CJK")
HEADER_CELL = ParagraphStyle(
    "header", parent=CELL, fontName=FONT_BOLD, alignment=TA_CENTER, textColor=INK
)
NOTE_ITEM = ParagraphStyle("note item", parent=BODY, leftIndent=12, firstLineIndent=-12)
NOTE = ParagraphStyle("note", parent=BODY, fontSize=8.5, leading=13, textColor=GREY, spaceBefore=3)


def render_pdf(report: MonthlyReport) -> bytes:
    """The report as a PDF (A4) with its Chinese font embedded."""
    register_fonts()
    buffer = io.BytesIO()
    doc = BaseDocTemplate(
        buffer,
        pagesize=PORTRAIT,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN + 6 * mm,  # room for the footer
        title=report.title,
        author="Shuangjian",
        subject=f"{report.region.full_name}{month_label(report.month)}“双减”工作通报",
        creator="Shuangjian",
        keywords=["双减", "每月通报", report.region.code, f"{report.month:%Y-%m}"],
        lang="zh-CN",
        invariant=True,
    )
    doc.addPageTemplates(
        [
            page_template("portrait", PORTRAIT, doc),
            page_template("landscape", LANDSCAPE, doc),
        ]
    )
    canvasmaker = functools.partial(
        ReportCanvas,
        footer=f"{report.region.full_name} · {month_label(report.month)}通报",
        created=pdf_date(report.generated_at),
    )
    doc.build(story(report), canvasmaker=canvasmaker)
    return buffer.getvalue()


def register_fonts() -> None:
    """Make the embedded font known to reportlab (once per process: parsing takes time)."""
    if FONT in pdfmetrics.getRegisteredFontNames():
        return
    pdfmetrics.registerFont(TTFont(FONT, str(fonts.REGULAR)))
    pdfmetrics.registerFont(TTFont(FONT_BOLD, str(fonts.BOLD)))
    pdfmetrics.registerFontFamily(
        FONT, normal=FONT, bold=FONT_BOLD, italic=FONT, boldItalic=FONT_BOLD
    )


# --- numbers as printed --------------------------------------------------------------------


def format_value(value: Value, kind: Kind) -> str:
    """A figure as printed: ``1,286``, ``48,215,306.42``, ``86.0%``; ``—`` when missing."""
    if value is None:
        return DASH
    if kind == "rate":
        return f"{float(value):.1%}"
    if kind == "money":
        return f"{fen(value):,.2f}"
    return f"{int(value):,}"


def format_change(value: Value, kind: Kind) -> str:
    """A change as printed, with its sign: ``+44``, ``-804,811.63``, ``+1.2个百分点``."""
    if value is None:
        return DASH
    if kind == "rate":
        points = round(float(value) * 100, 1)
        return f"{points:+.1f}个百分点" if points else "0.0个百分点"
    if kind == "money":
        amount = fen(value)
        return f"{amount:+,.2f}" if amount else "0.00"
    return f"{int(value):+,}" if value else "0"


def fen(value: int | Decimal | float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def month_label(month: date) -> str:
    return f"{month.year}年{month.month}月"


def label(measure: Measure) -> str:
    """A measure's row or column title: its label, with the unit for money."""
    return f"{measure.label}（元）" if measure.kind == "money" else measure.label


def basis(measure: Measure) -> str:
    return "月末" if measure.stock else "当月"


# --- the story -------------------------------------------------------------------------------


def story(report: MonthlyReport) -> list[Flowable]:
    flow: list[Flowable] = [NextPageTemplate("portrait"), *title_block(report)]
    for number, section in enumerate(report.sections):
        flow.append(Paragraph(escape(f"{NUMERALS[number % 10]}、{section.title}"), HEADING))
        rows: list[list[Any]] = [
            [
                cell(label(f.measure)),
                *figure_cells(f.value, f.previous, f.change, f.measure.kind),
                basis(f.measure),
            ]
            for f in section.figures
        ]
        widths = [0.34, 0.18, 0.18, 0.2, 0.1]
        flow.append(
            table(["指标", "本月", "上月", "环比变化", "口径"], rows, widths, numeric=(1, 4))
        )
    flow.append(
        Paragraph("注：比率的环比变化以百分点计；“—”表示无数可算（如当月无到期整改事项）。", NOTE)
    )
    flow.append(Spacer(1, 2 * mm))

    flow.extend(breakdowns(report))
    flow.extend(trends(report))
    # Last but the notes: a ranking too wide for an upright page takes a landscape one,
    # and the notes follow it there.
    flow.extend(ranking(report))
    if report.notes:
        flow.append(Paragraph("说明", HEADING))
        flow.extend(
            Paragraph(escape(f"{n}. {note}"), NOTE_ITEM) for n, note in enumerate(report.notes, 1)
        )
    return flow


def title_block(report: MonthlyReport) -> list[Flowable]:
    gap = "&#160;" * 4  # Paragraph folds runs of spaces (U+3000 too) into one
    lines = [
        [
            f"统计月份：{month_label(report.month)}（环比：{month_label(report.previous_month)}）",
            f"区域代码：{report.region.code}",
        ],
        [f"生成时间：{report.generated_at:%Y-%m-%d %H:%M}", f"生成者：{report.generated_by}"],
    ]
    if month_in_progress(report):
        lines.append(["本月尚未结束，本月数据截至生成时间。"])
    return [
        Paragraph(escape(report.title), TITLE),
        Spacer(1, 2 * mm),
        *(Paragraph(gap.join(escape(part) for part in line), SUBTITLE) for line in lines),
        Spacer(1, 4 * mm),
    ]


def month_in_progress(report: MonthlyReport) -> bool:
    generated = report.generated_at.date()
    return (generated.year, generated.month) <= (report.month.year, report.month.month)


def breakdowns(report: MonthlyReport) -> list[Flowable]:
    """The breakdowns two abreast: each is short, and a page of them one under the other
    would leave half of it empty."""
    gap = 6 * mm
    half = (PORTRAIT_WIDTH - gap) / 2
    blocks: list[list[Flowable]] = []
    for breakdown in report.breakdowns:
        rows: list[list[Any]] = [
            [cell(r.label), *figure_cells(r.value, r.previous, r.change)] for r in breakdown.rows
        ]
        value = sum(r.value for r in breakdown.rows)
        previous = sum(r.previous for r in breakdown.rows)
        rows.append([cell("合计", bold=True), *figure_cells(value, previous, value - previous)])
        titles = ["类别", "本月", "上月", "变化"]
        grid = table(titles, rows, [0.34, 0.22, 0.22, 0.22], (1, 4), totals=1, width=half)
        blocks.append([Paragraph(escape(breakdown.title), HEADING), grid])
    flow: list[Flowable] = []
    for left in range(0, len(blocks), 2):
        pair = blocks[left : left + 2]
        cells = [pair[0], "", pair[1] if len(pair) > 1 else ""]
        row = Table([cells], colWidths=[half, gap, half], hAlign="LEFT")
        row.setStyle(
            TableStyle(
                [
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("LEFTPADDING", (0, 0), (-1, -1), 0),
                    ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                    ("TOPPADDING", (0, 0), (-1, -1), 0),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 0),
                ]
            )
        )
        flow.append(row)
    return flow


def ranking(report: MonthlyReport) -> list[Flowable]:
    """The child regions ranked: upright at 9 or 8 pt when the columns fit, else on a
    landscape page, where the notes follow it."""
    if not report.children:
        return [
            Paragraph("下级区域排名", HEADING),
            Paragraph(escape(f"无下级区域：{report.region.full_name}没有下级区域。"), BODY),
        ]
    level = report.child_level or "下级区域"
    heading = Paragraph(
        escape(f"{report.region.name}各{level}情况（按{report.ranked_by.label}排名）"), HEADING
    )
    measures = report.child_measures
    titles = ["排名", "代码", "名称", *(label(m) for m in measures)]
    rows = [
        [
            str(child.rank),
            child.code,
            child.name,
            *(format_value(child.values.get(m.key), m.kind) for m in measures),
        ]
        for child in report.children
    ]
    for size, width in ((9.0, PORTRAIT_WIDTH), (8.0, PORTRAIT_WIDTH), (9.0, LANDSCAPE_WIDTH)):
        columns = ranking_columns(report, size)
        if sum(columns) <= width:
            break
    # Spare width goes first to titles that would wrap, then evenly to every figure.
    spare = width - sum(columns)
    wants = [
        max(0.0, text_points(t, size, FONT_BOLD) + 12 - c)
        for t, c in zip(titles, columns, strict=True)
    ]
    share = min(1.0, spare / sum(wants)) if sum(wants) else 0.0
    columns = [c + w * share for c, w in zip(columns, wants, strict=True)]
    rest = (width - sum(columns)) / len(measures)
    columns = [*columns[:3], *(c + rest for c in columns[3:])]
    fractions = [c / width for c in columns]
    grid = table(titles, rows, fractions, numeric=(3, len(titles)), width=width, size=size)
    if width == PORTRAIT_WIDTH:
        return [KeepTogether([heading, grid])]
    return [NextPageTemplate("landscape"), PageBreak(), heading, grid]


def ranking_columns(report: MonthlyReport, size: float) -> list[float]:
    """The narrowest widths of the ranking's columns at ``size`` pt: the widest value of
    each, its title on two lines at most."""
    pad = 12.0

    def widest(texts: Sequence[str], title: str) -> float:
        values = max((text_points(t, size) for t in texts), default=0.0)
        return max(values, text_points(title, size, FONT_BOLD) / 2) + pad

    children = report.children
    columns = [
        widest([str(c.rank) for c in children], "排名排名"),
        widest([c.code for c in children], "代码"),
        widest([c.name for c in children], "名称名称"),
    ]
    for m in report.child_measures:
        texts = [format_value(c.values.get(m.key), m.kind) for c in children]
        columns.append(widest(texts, label(m)))
    return columns


def trends(report: MonthlyReport) -> list[Flowable]:
    flow: list[Flowable] = []
    for number, trend in enumerate(report.trends):
        drawing = trend_chart(trend, PORTRAIT_WIDTH, 60 * mm)
        parts: list[Flowable] = [drawing, Spacer(1, 4 * mm)]
        if number == 0:
            parts.insert(0, Paragraph("近十二个月趋势", HEADING))
        flow.append(KeepTogether(parts))
    return flow


# --- tables --------------------------------------------------------------------------------


def cell(text: str, bold: bool = False) -> Paragraph:
    return Paragraph(f"<b>{escape(text)}</b>" if bold else escape(text), CELL)


def figure_cells(value: Value, previous: Value, change: Value, kind: Kind = "count") -> list[str]:
    return [format_value(value, kind), format_value(previous, kind), format_change(change, kind)]


def table(
    titles: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fractions: Sequence[float],
    numeric: tuple[int, int],
    totals: int = 0,
    width: float = PORTRAIT_WIDTH,
    size: float = 9,
) -> Table:
    """A ruled table: a shaded header row, numbers right-aligned in columns ``numeric``
    (start, stop), the last ``totals`` rows bold."""
    header_style = ParagraphStyle("header", parent=HEADER_CELL, fontSize=size, leading=size * 1.35)
    data = [[Paragraph(escape(t), header_style) for t in titles], *rows]
    grid = Table(data, colWidths=[f * width for f in fractions], repeatRows=1, hAlign="LEFT")
    first, stop = numeric
    style = [
        ("FONTNAME", (0, 0), (-1, -1), FONT),
        ("FONTSIZE", (0, 0), (-1, -1), size),
        ("TEXTCOLOR", (0, 0), (-1, -1), INK),
        ("BACKGROUND", (0, 0), (-1, 0), HEADER_FILL),
        ("GRID", (0, 0), (-1, -1), 0.5, RULE),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("ALIGN", (first, 1), (stop - 1, -1), "RIGHT"),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, STRIPE]),
        ("TOPPADDING", (0, 0), (-1, -1), 3),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
    ]
    if stop < len(titles):
        style.append(("ALIGN", (stop, 1), (-1, -1), "CENTER"))
    if first > 0:
        style.append(("ALIGN", (0, 1), (first - 1, -1), "LEFT"))
    if totals:
        style.append(("FONTNAME", (0, -totals), (-1, -1), FONT_BOLD))
    grid.setStyle(TableStyle(style))
    return grid


def text_points(text: str, size: float, font: str = FONT) -> float:
    return float(pdfmetrics.stringWidth(text, font, size))


# --- charts --------------------------------------------------------------------------------


def trend_chart(trend: Trend, width: float, height: float) -> Drawing:
    """One trend as a chart: title on top, unit top left, months along the bottom, the
    legend under them; ``None`` leaves a gap."""
    kind = trend.measures[0].kind
    scale, unit, tick = AXES[kind]
    drawing = Drawing(width, height)
    drawing.add(
        String(
            width / 2,
            height - 13,
            trend.title,
            fontName=FONT_BOLD,
            fontSize=11,
            textAnchor="middle",
        )
    )
    drawing.add(
        String(4, height - 28, f"单位：{unit}", fontName=FONT, fontSize=7.5, fillColor=GREY)
    )

    chart: VerticalBarChart | HorizontalLineChart
    chart = VerticalBarChart() if trend.chart == "bar" else HorizontalLineChart()
    chart.x, chart.y = 46, 42
    chart.width, chart.height = width - 56, height - 78
    series = [
        [None if v is None else float(v) * scale for v in trend.values[m.key]]
        for m in trend.measures
    ]
    # Which measure each data row draws: a line breaks at a missing month, so each run of
    # months becomes a row of its own, in the measure's colour.
    owners = list(range(len(series)))
    if isinstance(chart, HorizontalLineChart):
        runs = [(i, run) for i, values in enumerate(series) for run in split_runs(values)]
        owners, series = [i for i, _ in runs], [run for _, run in runs]
    chart.data = [tuple(values) for values in series]
    chart.categoryAxis.categoryNames = [f"{m:%Y-%m}" for m in trend.months]
    labels = chart.categoryAxis.labels
    labels.fontName, labels.fontSize, labels.fillColor = FONT, 7, INK
    labels.boxAnchor, labels.dy = "n", -3
    axis = chart.valueAxis
    axis.valueMin = 0
    axis.rangeRound = "ceiling"  # the axis ends on a labelled tick above the highest value
    if kind == "rate":
        axis.valueMax, axis.valueStep = 100, 20
    axis.labels.fontName, axis.labels.fontSize, axis.labels.fillColor = FONT, 7, INK
    axis.labelTextFormat = tick
    axis.visibleGrid = 1
    axis.gridStrokeColor = colors.HexColor("#E0E0E0")
    axis.gridStrokeWidth = 0.5
    axis.strokeColor = chart.categoryAxis.strokeColor = RULE
    for row, owner in enumerate(owners):
        colour = SERIES_COLOURS[owner % len(SERIES_COLOURS)]
        if isinstance(chart, VerticalBarChart):
            chart.bars[row].fillColor = colour
            chart.bars[row].strokeColor = None
        else:
            chart.lines[row].strokeColor = colour
            chart.lines[row].strokeWidth = 1.8
            chart.lines[row].symbol = makeMarker("FilledCircle", size=4, fillColor=colour)
            # A run of one month is a dot: a line needs two points (reportlab insists).
            if sum(v is not None for v in series[row]) > 1:
                chart.lines[row].lineStyle = "joinedLine"
    if isinstance(chart, VerticalBarChart):
        chart.groupSpacing, chart.barSpacing = 6, 1
    else:
        chart.joinedLines = 0  # per row instead, above
    drawing.add(chart)

    legend = Legend()
    legend.colorNamePairs = [
        (SERIES_COLOURS[i % len(SERIES_COLOURS)], m.label) for i, m in enumerate(trend.measures)
    ]
    legend.fontName, legend.fontSize = FONT, 8
    legend.alignment = "right"
    legend.columnMaximum = 1  # one row
    legend.deltax = max(text_points(m.label, 8) for m in trend.measures) + 30
    legend.dx = legend.dy = 7
    legend.boxAnchor = "s"
    legend.x, legend.y = width / 2, 4
    legend.strokeColor = None
    drawing.add(legend)
    return drawing


def split_runs(values: Sequence[float | None]) -> list[list[float | None]]:
    """``values`` as one list per run of present values, ``None`` everywhere else."""
    runs: list[list[float | None]] = []
    start: int | None = None
    for index, value in enumerate([*values, None]):
        if value is not None and start is None:
            start = index
        elif value is None and start is not None:
            runs.append([v if start <= i < index else None for i, v in enumerate(values)])
            start = None
    return runs or [list(values)]


# Per kind: the factor from a value to the axis, the axis's unit, its tick labels.
AXES: dict[Kind, tuple[float, str, Callable[[float], str]]] = {
    "count": (1, "次", lambda v: f"{v:,.0f}"),
    "money": (1 / 10_000, "万元", lambda v: f"{v:,.0f}"),
    "rate": (100, "%", lambda v: f"{v:.0f}%"),
}


# --- pages ---------------------------------------------------------------------------------


def page_template(name: str, size: tuple[float, float], doc: BaseDocTemplate) -> PageTemplate:
    frame = Frame(
        doc.leftMargin,
        doc.bottomMargin,
        size[0] - doc.leftMargin - doc.rightMargin,
        size[1] - doc.topMargin - doc.bottomMargin,
        id=name,
        leftPadding=0,
        rightPadding=0,
        topPadding=0,
        bottomPadding=0,
    )
    return PageTemplate(id=name, frames=[frame], pagesize=size)


class ReportCanvas(Canvas):
    """Holds the pages back until the end, to print "第 N 页 / 共 M 页" on each."""

    def __init__(self, *args: Any, footer: str, created: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.footer = footer
        self.pages: list[dict[str, Any]] = []
        self.setDateFormatter(lambda *_: created)

    def showPage(self) -> None:
        self.pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self.pages)
        for state in self.pages:
            self.__dict__.update(state)
            self.draw_footer(total)
            super().showPage()
        super().save()

    def draw_footer(self, total: int) -> None:
        width = self._pagesize[0]
        y = MARGIN - 2 * mm
        self.saveState()
        self.setStrokeColor(RULE)
        self.setLineWidth(0.5)
        self.line(MARGIN, y + 10, width - MARGIN, y + 10)
        self.setFont(FONT, 8)
        self.setFillColor(GREY)
        self.drawString(MARGIN, y, self.footer)
        self.drawRightString(width - MARGIN, y, f"第 {self._pageNumber} 页 / 共 {total} 页")
        self.restoreState()


def pdf_date(moment: datetime) -> str:
    """A PDF date (``D:20250701083000+08'00'``) of ``moment``, its own offset kept."""
    offset = moment.utcoffset()
    if offset is None:
        return f"D:{moment:%Y%m%d%H%M%S}"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"D:{moment:%Y%m%d%H%M%S}{sign}{hours:02d}'{rest:02d}'"
