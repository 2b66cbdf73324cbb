"""Build the report's Chinese font: a subset of Noto Sans SC, from the npm registry.

Usage: ``python scripts/build_fonts.py`` (needs ``npm`` and the dev dependency
``fonttools``). Run it by hand after moving ``VERSION`` or when new labels or regions
bring characters the font lacks (``tests/reports`` says so); then run ``tests/reports``.

A PDF must show its Chinese on a machine with no Chinese font: reportlab's CID fonts
(``STSong-Light``) embed nothing and leave the glyphs to the viewer, so the monthly
report embeds a TrueType font shipped in the package instead (reportlab subsets it again
per document). The dashboard serves the same files through ``@font-face``
(``/fonts/NotoSansSC-Regular.ttf``) so screens and paper look alike, offline too.

The source is Google's static Noto Sans SC as ``@expo-google-fonts/noto-sans-sc`` ships
it: TrueType (``glyf``) outlines, which reportlab needs (it cannot read CFF), but 10 MB a
weight. We keep what a report can print: ASCII, Latin-1, general and CJK punctuation,
full-width forms, a few symbols, all of GB2312 (its 6,763 hanzi and its symbol rows),
every character of a region name (``services/common/regions/*.csv``) and of the string
literals of the report and dashboard code. Hinting, vertical metrics and the OpenType
layout tables go (a report sets horizontal Chinese; browsers and reportlab need none of
them); ``name``, ``cmap``, ``OS/2`` and ``post`` stay valid so browsers accept the file.
The output is byte-for-byte reproducible from the same package and sources.

Licence: SIL OFL 1.1. Its reserved font name is "Source", which the subset does not use,
so it keeps the name Noto Sans SC; ``OFL.txt`` travels with the files.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tokenize
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "services" / "reports" / "fonts"

PACKAGE = "@expo-google-fonts/noto-sans-sc"
VERSION = "0.4.3"
LICENCE = "LICENSE_FONT"
WEIGHTS = {  # output file -> path in the package
    "NotoSansSC-Regular.ttf": "400Regular/NotoSansSC_400Regular.ttf",
    "NotoSansSC-Bold.ttf": "700Bold/NotoSansSC_700Bold.ttf",
}

BLOCKS = {  # name -> inclusive code point range
    "Basic Latin": (0x0020, 0x007E),
    "Latin-1 Supplement": (0x00A0, 0x00FF),
    "General Punctuation": (0x2000, 0x206F),
    "Arrows": (0x2190, 0x21FF),
    "CJK Symbols and Punctuation": (0x3000, 0x303F),
    "Halfwidth and Fullwidth Forms": (0xFF00, 0xFFEF),
}
SYMBOLS = (
    "→←↑↓%‰×÷±≤≥≠≈∞√∑—–·、。，；：？！“”‘’《》〈〉「」『』【】（）〔〕…￥¥℃№※§°"
    "①②③④⑤⑥⑦⑧⑨⑩ⅠⅡⅢⅣⅤⅥⅦⅧⅨⅩ▲△▼▽●○■□◆◇★☆√✓✔✗✘"
)
# Where the printed words come from, besides GB2312: every character of these files
# (region names), and of the string literals of these Python files (labels).
DATA_FILES = ("services/common/regions/*.csv", "services/gateway/dashboard/*")
LABEL_FILES = ("services/reports/*.py",)


def gb2312() -> set[str]:
    """Every character GB2312 encodes: symbols in rows 1-9, hanzi in rows 16-87."""
    chars: set[str] = set()
    for high in [*range(0xA1, 0xAA), *range(0xB0, 0xF8)]:
        for low in range(0xA1, 0xFF):
            try:
                chars.add(bytes((high, low)).decode("gb2312"))
            except UnicodeDecodeError:
                continue  # an unassigned cell
    return chars


def string_literals(path: Path) -> str:
    """The text of a Python file's string literals (docstrings and f-strings included)."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    wanted = {tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
    return "".join(token.string for token in tokens if token.type in wanted)


def source_text() -> str:
    """All the text the label and data files contribute."""
    parts: list[str] = []
    for pattern in DATA_FILES:
        for path in sorted(ROOT.glob(pattern)):
            if path.is_file():
                parts.append(path.read_text(encoding="utf-8", errors="ignore"))
    for pattern in LABEL_FILES:
        parts.extend(string_literals(path) for path in sorted(ROOT.glob(pattern)))
    return "".join(parts)


def coverage() -> set[int]:
    """The code points the subset keeps (those the source font has, see ``subset_font``)."""
    points = {c for first, last in BLOCKS.values() for c in range(first, last + 1)}
    points |= {ord(c) for c in SYMBOLS}
    points |= {ord(c) for c in gb2312()}
    points |= {ord(c) for c in source_text() if ord(c) >= 0x20}
    return points


def subset_font(source: Path, target: Path, points: set[int]) -> int:
    """Write the subset of ``source`` covering ``points``; return how many it maps."""
    options = subset.Options()
    options.hinting = False  # ~15% smaller; CJK at report sizes does not need it
    options.layout_features = []
    options.drop_tables += ["GSUB", "GPOS", "GDEF", "BASE", "STAT", "vhea", "vmtx", "VORG"]
    options.name_IDs = [0, 1, 2, 3, 4, 5, 6, 13, 14]  # plus the copyright and licence
    options.notdef_outline = True  # a missing character shows as a box, not as nothing
    # Reproducible: keep the source's head.modified rather than stamping today's date.
    font = TTFont(source, recalcTimestamp=False)
    available = set(font.getBestCmap())
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=sorted(points & available))
    subsetter.subset(font)
    font.save(target)
    return len(TTFont(target).getBestCmap())


def npm_pack(spec: str, into: Path) -> Path:
    """Download one package tarball with npm (which checks the registry's integrity)."""
    out = subprocess.run(
        ["npm", "pack", "--silent", "--pack-destination", str(into), spec],
        check=True,
        capture_output=True,
        text=True,
    )
    tarball = into / out.stdout.strip().splitlines()[-1]
    unpacked = into / tarball.name.removesuffix(".tgz")
    with tarfile.open(tarball) as archive:
        archive.extractall(unpacked, filter="data")
    return unpacked / "package"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    if shutil.which("npm") is None:
        sys.exit("npm is needed to fetch the font package from the npm registry")
    points = coverage()
    OUT.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        package = npm_pack(f"{PACKAGE}@{VERSION}", Path(tmp))
        for name, path in WEIGHTS.items():
            mapped = subset_font(package / path, OUT / name, points)
            files[name] = {"from": path, "sha256": sha256(OUT / name), "characters": mapped}
            print(f"{name}: {mapped} characters, {(OUT / name).stat().st_size:,} bytes")
        shutil.copyfile(package / LICENCE, OUT / "OFL.txt")
        files["OFL.txt"] = {"from": LICENCE, "sha256": sha256(OUT / "OFL.txt")}
    manifest = {
        "package": PACKAGE,
        "version": VERSION,
        "licence": "OFL-1.1",
        "files": files,
        "subset": {
            "blocks": {name: f"U+{a:04X}-U+{b:04X}" for name, (a, b) in BLOCKS.items()},
            "symbols": SYMBOLS,
            "gb2312": "every character (rows 1-9 symbols, rows 16-87 hanzi)",
            "characters_of": [*DATA_FILES, *(f"string literals of {p}" for p in LABEL_FILES)],
            "dropped": "hinting, OpenType layout (GSUB/GPOS/GDEF/BASE/STAT), vertical metrics",
        },
        "rebuild": "python scripts/build_fonts.py (needs npm and fonttools)",
    }
    (OUT / "ASSETS.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
