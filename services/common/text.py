"""Free text as people type it: one Unicode form, nothing invisible that changes meaning.

``clean_text`` is what every free-text field of a command goes through (names, addresses,
licence numbers, reasons):

* normalised to NFC, so the same name typed on two keyboards is the same string (and a
  re-sent command compares equal), and the length limit counts what is stored;
* line breaks only where the field allows them (``multiline``): ``\\r\\n``, ``\\r``,
  U+0085, U+2028 and U+2029 are stored as ``\\n``; a single-line field refuses them all;
* no other control character (C0 including tab, DEL, C1), no lone surrogate (it cannot
  be stored as UTF-8), and none of the bidirectional embedding, override and isolate
  characters (U+202A–U+202E, U+2066–U+2069) that make text display in another order than
  it is stored ("Trojan Source"). The implicit marks U+200E, U+200F and U+061C stay
  allowed: they cannot reverse a run of text, and right-to-left scripts (Uyghur names
  are written in Arabic script) use them;
* surrounding whitespace stripped; empty is refused.

A refused value is a ``BadInput`` naming the field, the character and where it is; the
value itself is not echoed.
"""

from __future__ import annotations

import re
import unicodedata

from services.common.errors import BadInput

BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Embeddings (LRE, RLE), PDF, overrides (LRO, RLO) and isolates (LRI, RLI, FSI, PDI)."""

LINE_BREAKS = ("\r\n", "\r", "\x85", "\u2028", "\u2029")
"""Other spellings of a line break; a multiline field stores each of them as ``\\n``."""

_LABELS = {"\t": "TAB", "\n": "LINE FEED", "\r": "CARRIAGE RETURN", "\x00": "NUL", "\x07": "BEL"}

# Every character ``_refused`` refuses, as one class, so that text with none of them (all
# but an attacker's) is checked in one C-level scan instead of a Python call per
# character: C0 and C1 controls and DEL (category Cc), U+2028 and U+2029 (the only Zl and
# Zp), the bidi controls, and surrogates (Cs). tests/unit/test_clean_text.py checks it
# against ``_refused`` over every code point.
_ANY_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
_ANY_REFUSED_BUT_NEWLINE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)


def clean_text(value: str | None, field: str, limit: int, *, multiline: bool = False) -> str:
    """``value`` checked and in normal form, or ``BadInput`` for ``field``."""
    text = unicodedata.normalize("NFC", value or "")
    if multiline:
        for spelling in LINE_BREAKS:
            text = text.replace(spelling, "\n")
    found = (_ANY_REFUSED_BUT_NEWLINE if multiline else _ANY_REFUSED).search(text)
    if found is not None:
        char = found.group()
        reason = _refused(char)
        assert reason is not None, f"U+{ord(char):04X} matched but is not refused"
        raise BadInput(
            f"{field} contains {_describe(char)} at position {found.start() + 1}: {reason}",
            field=field,
        )
    text = text.strip()
    if not text:
        raise BadInput(f"{field} must not be empty", field=field)
    if len(text) > limit:
        raise BadInput(f"{field} is {len(text)} characters; at most {limit}", field=field)
    return text


def _refused(char: str) -> str | None:
    category = unicodedata.category(char)
    if char in "\n\r\x85" or category in ("Zl", "Zp"):
        return "this field is a single line"
    if category == "Cc":
        return "control characters are not allowed"
    if char in BIDI_CONTROLS:
        return "bidirectional formatting characters are not allowed"
    if category == "Cs":
        return "a lone surrogate is not a character"
    return None


def _describe(char: str) -> str:
    name = _LABELS.get(char) or unicodedata.name(char, "")
    code = f"U+{ord(char):04X}"
    return f"{code} ({name})" if name else code


def normalise_key(value: str) -> str:
    """Free text as a matching key: NFKC, case folded, without any whitespace, so
    "幸福小区 3栋" and "幸福小区３栋" name the same place."""
    return "".join(unicodedata.normalize("NFKC", value).casefold().split())
