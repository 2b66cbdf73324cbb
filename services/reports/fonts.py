"""Where the report's Chinese font lives: the ``fonts/`` folder next to this module.

PDFs embed it (a viewer without Chinese fonts still shows the text) and the dashboard
serves the same files at ``/fonts/…`` for ``@font-face``. The files are a subset of Noto
Sans SC built by ``scripts/build_fonts.py``; ``fonts/ASSETS.json`` says what they cover.
"""

from __future__ import annotations

from pathlib import Path

FONTS_DIR = Path(__file__).resolve().parent / "fonts"
REGULAR = FONTS_DIR / "NotoSansSC-Regular.ttf"
BOLD = FONTS_DIR / "NotoSansSC-Bold.ttf"
LICENCE = FONTS_DIR / "OFL.txt"
MANIFEST = FONTS_DIR / "ASSETS.json"
