"""The shipped font files are the ones ``scripts/build_fonts.py`` built, and usable."""

from __future__ import annotations

import hashlib
import json

from fontTools.ttLib import TTFont as FontFile

from services.reports import fonts


def gb2312_hanzi() -> set[str]:
    chars = set()
    for high in range(0xB0, 0xF8):
        for low in range(0xA1, 0xFF):
            try:
                chars.add(bytes((high, low)).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return chars


def test_the_manifest_names_every_file_with_its_checksum() -> None:
    manifest = json.loads(fonts.MANIFEST.read_text(encoding="utf-8"))
    assert manifest["package"] == "@expo-google-fonts/noto-sans-sc"
    assert manifest["version"] == "0.4.3"
    listed = set(manifest["files"])
    assert listed == {p.name for p in fonts.FONTS_DIR.iterdir()} - {"ASSETS.json"}
    for name, entry in manifest["files"].items():
        digest = hashlib.sha256((fonts.FONTS_DIR / name).read_bytes()).hexdigest()
        assert digest == entry["sha256"], f"{name} is not the file build_fonts.py made"
    assert "SIL Open Font License" in fonts.LICENCE.read_text(encoding="utf-8")


def test_the_fonts_are_truetype_subsets_a_browser_accepts() -> None:
    hanzi = gb2312_hanzi()
    assert len(hanzi) == 6763
    for path in (fonts.REGULAR, fonts.BOLD):
        assert path.stat().st_size < 2_600_000
        font = FontFile(path, lazy=True)
        assert "glyf" in font and "CFF " not in font  # reportlab reads TrueType outlines only
        for table in ("cmap", "name", "OS/2", "post", "head", "hhea", "hmtx", "maxp"):
            assert table in font, table
        assert font["OS/2"].fsType == 0  # installable: embedding allowed
        assert font["name"].getDebugName(1) == "Noto Sans SC"
        cmap = font.getBestCmap()
        assert not {c for c in hanzi if ord(c) not in cmap}
        assert all(ord(c) in cmap for c in "→↑↓%‰×÷—·、。“”‘’《》（）￥")


def hanzi(text: str) -> set[str]:
    """The CJK characters of ``text``: those the font must have (no emoji, no rare symbols)."""
    ranges = ((0x3000, 0x303F), (0x3400, 0x9FFF), (0xF900, 0xFAFF), (0xFF00, 0xFFEF))
    return {c for c in text if any(a <= ord(c) <= b for a, b in ranges)}


def test_every_hanzi_of_the_labels_is_in_the_font() -> None:
    # New labels in the report code or the dashboard: rerun scripts/build_fonts.py.
    root = fonts.FONTS_DIR.parents[2]
    files = [*root.glob("services/reports/*.py"), *root.glob("services/gateway/dashboard/*")]
    text = "".join(p.read_text(encoding="utf-8", errors="ignore") for p in files if p.is_file())
    for path in (fonts.REGULAR, fonts.BOLD):
        cmap = FontFile(path, lazy=True).getBestCmap()
        missing = {c for c in hanzi(text) if ord(c) not in cmap}
        assert not missing, f"{path.name} lacks {sorted(missing)}: run scripts/build_fonts.py"
