"""The monthly report's PDF, read back and rendered as a viewer without Chinese fonts would.

The font is the point: a Chinese PDF that leans on the viewer's fonts shows boxes or
nothing on a machine without them, and text copied out of it comes back as gibberish
without a ToUnicode map. So the tests check that the font is embedded, that the text
extracts as written, that the glyphs render as different shapes, and that the font maps
every character the report (and any region name) can print.
"""

from __future__ import annotations

import csv
import ctypes
import io
from dataclasses import replace
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
import pytest
from fontTools.ttLib import TTFont as FontFile
from PIL import Image
from reportlab.pdfgen.canvas import Canvas

from services.reports import fonts
from services.reports.model import Measure, MonthlyReport
from services.reports.pdf import (
    FONT,
    FONT_BOLD,
    format_change,
    format_value,
    register_fonts,
    render_pdf,
)
from tests.reports.sample import district_report, sample_report

REGIONS_CSV = Path(__file__).resolve().parents[2] / "services/common/regions/regions.csv"


@pytest.fixture(scope="module")
def report() -> MonthlyReport:
    return sample_report()


@pytest.fixture(scope="module")
def data(report: MonthlyReport) -> bytes:
    return render_pdf(report)


@pytest.fixture(scope="module")
def document(data: bytes) -> pdfium.PdfDocument:
    return pdfium.PdfDocument(data)


@pytest.fixture(scope="module")
def pages_text(document: pdfium.PdfDocument) -> list[str]:
    return [page.get_textpage().get_text_bounded() for page in document]


def squeeze(text: str) -> str:
    """Text without whitespace: a wrapped line or a table cell adds some."""
    return "".join(text.split())


def report_strings(report: MonthlyReport) -> list[str]:
    strings = [report.title, report.region.full_name, report.region.name, report.generated_by]
    for section in report.sections:
        strings += [section.title, *(f.measure.label for f in section.figures)]
    for breakdown in report.breakdowns:
        strings += [breakdown.title, *(r.label for r in breakdown.rows)]
    strings += [c.name for c in report.children]
    strings += [m.label for m in report.child_measures]
    for trend in report.trends:
        strings += [trend.title, *(m.label for m in trend.measures)]
    return [*strings, *report.notes]


def test_the_text_is_there_as_written(report: MonthlyReport, pages_text: list[str]) -> None:
    text = "\n".join(pages_text)
    assert report.title in text
    flat = squeeze(text)
    for string in report_strings(report):
        assert squeeze(string) in flat, string
    for section in report.sections:
        assert section.title in text
        for figure in section.figures:
            kind = figure.measure.kind
            line = " ".join(
                [
                    format_value(figure.value, kind),
                    format_value(figure.previous, kind),
                    format_change(figure.change, kind),
                ]
            )
            assert line in text, line


def test_numbers_are_printed_the_chinese_bureau_way() -> None:
    assert format_value(1286, "count") == "1,286"
    assert format_value(sample_report().figure("escrow_balance").value, "money") == (
        "48,215,306.42"
    )
    assert format_value(0.8596, "rate") == "86.0%"
    assert format_value(None, "rate") == "—"
    assert format_change(-15, "count") == "-15"
    assert format_change(44, "count") == "+44"
    assert format_change(0, "count") == "0"
    assert format_change(0.9627 - 0.9511, "rate") == "+1.2个百分点"
    assert format_change(sample_report().figure("escrow_balance").change, "money") == (
        "-804,811.63"
    )


def test_every_page_is_numbered_with_region_and_month(
    document: pdfium.PdfDocument, pages_text: list[str], report: MonthlyReport
) -> None:
    total = len(document)
    assert total >= 1
    for number, text in enumerate(pages_text, start=1):
        assert f"第 {number} 页 / 共 {total} 页" in text
        assert f"{report.region.full_name} · 2025年6月通报" in text
    width, height = document[0].get_size()
    assert (round(width), round(height)) == (595, 842)  # A4 portrait


def test_the_document_says_what_it_is(document: pdfium.PdfDocument, report: MonthlyReport) -> None:
    meta = document.get_metadata_dict()
    assert meta["Title"] == report.title
    assert meta["Author"] == "Shuangjian"
    assert report.region.full_name in meta["Subject"]
    assert meta["CreationDate"].startswith("D:20250701083000")


def test_the_font_is_embedded_and_no_viewer_font_is_needed(
    data: bytes, document: pdfium.PdfDocument
) -> None:
    assert b"/FontFile2" in data  # an embedded TrueType program
    assert b"/ToUnicode" in data  # copy and paste give the hanzi back
    assert b"STSong" not in data and b"/CIDFontType0" not in data
    names = set()
    for page in document:
        for obj in page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_TEXT,)):
            font = pdfium_c.FPDFTextObj_GetFont(obj.raw)
            assert pdfium_c.FPDFFont_GetIsEmbedded(font) == 1
            size = pdfium_c.FPDFFont_GetBaseFontName(font, None, 0)
            buffer = ctypes.create_string_buffer(size)
            pdfium_c.FPDFFont_GetBaseFontName(font, buffer, size)
            names.add(buffer.value.decode())
    assert names == {"NotoSansSC-Regular", "NotoSansSC-Bold"}


def one_line(text: str, font: str = FONT) -> bytes:
    register_fonts()
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=(120, 40), invariant=True)
    canvas.setFont(font, 24)
    canvas.drawString(10, 10, text)
    canvas.save()
    return buffer.getvalue()


def raster(data: bytes) -> bytes:
    page = pdfium.PdfDocument(data)[0]
    return bytes(page.render(scale=1, grayscale=True).to_pil().tobytes())


def inked(pixels: bytes) -> int:
    return sum(1 for p in pixels if p < 128)


def test_the_glyphs_are_real_shapes_not_boxes() -> None:
    # A font without these hanzi would draw the same .notdef box for both words.
    supervise, rectify = raster(one_line("监管")), raster(one_line("整改"))
    assert inked(supervise) > 100 and inked(rectify) > 100
    assert supervise != rectify
    bold = raster(one_line("监管", FONT_BOLD))
    assert inked(bold) > inked(supervise)  # the bold weight is its own font


def test_the_first_page_renders(document: pdfium.PdfDocument, tmp_path: Path) -> None:
    png = tmp_path / "page1.png"
    document[0].render(scale=1, grayscale=True).to_pil().save(png)
    image = Image.open(png)
    width, height = image.size
    assert width < height
    title = image.crop((0, 0, width, height // 10))  # the title's line: big bold hanzi
    assert inked(bytes(title.tobytes())) > 2_000


def test_the_font_maps_every_character_printed(
    report: MonthlyReport, pages_text: list[str]
) -> None:
    text = "".join(report_strings(report)) + "".join(pages_text)
    for path in (fonts.REGULAR, fonts.BOLD):
        cmap = FontFile(path, lazy=True).getBestCmap()
        missing = {c for c in text if not c.isspace() and ord(c) not in cmap}
        assert not missing, f"{path.name} lacks {sorted(missing)}"


def test_the_font_maps_every_region_name() -> None:
    with REGIONS_CSV.open(encoding="utf-8") as rows:
        names = "".join(row["name"] for row in csv.DictReader(rows))
    cmap = FontFile(fonts.REGULAR, lazy=True).getBestCmap()
    assert not {c for c in names if ord(c) not in cmap}


def test_a_wide_ranking_gets_a_landscape_page(report: MonthlyReport) -> None:
    extra = tuple(Measure(f"extra_{i}", f"附加指标{i}", "money") for i in range(4))
    children = tuple(
        replace(c, values={**c.values, **{m.key: c.values["escrow_balance"] for m in extra}})
        for c in report.children
    )
    wide = replace(report, child_measures=(*report.child_measures, *extra), children=children)
    document = pdfium.PdfDocument(render_pdf(wide))
    sizes = [tuple(round(x) for x in page.get_size()) for page in document]
    assert (842, 595) in sizes and sizes[0] == (595, 842)
    landscape = sizes.index((842, 595))
    text = document[landscape].get_textpage().get_text_bounded()
    assert "附加指标3" in squeeze(text) and "原州区" in text


def test_a_district_says_it_has_no_children() -> None:
    document = pdfium.PdfDocument(render_pdf(district_report()))
    text = "".join(page.get_textpage().get_text_bounded() for page in document)
    assert "无下级区域" in text


def test_the_same_report_gives_the_same_bytes(data: bytes) -> None:
    assert render_pdf(sample_report()) == data


def test_a_bare_report_still_renders(report: MonthlyReport) -> None:
    bare = replace(report, breakdowns=(), children=(), trends=(), notes=())
    document = pdfium.PdfDocument(render_pdf(bare))
    assert report.title in document[0].get_textpage().get_text_bounded()


def test_a_new_region_with_one_month_of_rates_still_prints(report: MonthlyReport) -> None:
    """A rate known for one month only, or for none (a region that just started), is a dot
    or nothing: reportlab refuses a line of one point, and the report must still print."""
    trends = []
    for trend in report.trends:
        values = {
            key: [None] * (len(series) - 1) + [series[-1]] if n == 0 else [None] * len(series)
            for n, (key, series) in enumerate(trend.values.items())
        }
        trends.append(replace(trend, values=values))
    sparse = replace(report, trends=trends)
    document = pdfium.PdfDocument(render_pdf(sparse))
    assert len(document) >= 1
    text = "".join(page.get_textpage().get_text_range() for page in document)
    assert all(trend.title in text for trend in sparse.trends)
