"""Free text: one Unicode form, no control or bidi formatting characters (issue 10, #9)."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

import pytest

from services.common.errors import BadInput
from services.common.text import _ANY_REFUSED, _ANY_REFUSED_BUT_NEWLINE, _refused, clean_text
from services.common.timeutil import SHANGHAI
from services.registry.domain.model import registration_event
from tests.unit.test_registry_rules import POLICY, REGIONS, command, registered

AT = datetime(2021, 9, 1, 9, tzinfo=SHANGHAI)
NFD_NAME = unicodedata.normalize("NFD", "Café Étoile 艺术")  # "e" + U+0301 …


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("启明\x00学校", "U+0000 (NUL)"),
        ("启明\x07学校", "U+0007 (BEL)"),
        ("启明\t学校", "U+0009 (TAB)"),
        ("启明\x7f学校", "U+007F"),
        ("启明\x9b学校", "U+009B"),  # C1: CSI
        ("学校\u202e3202", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ("学校\u202a", "U+202A (LEFT-TO-RIGHT EMBEDDING)"),
        ("学校\u2067x\u2069", "U+2067 (RIGHT-TO-LEFT ISOLATE)"),
        ("学\ud800校", "U+D800"),
    ],
)
def test_control_and_bidi_characters_are_refused_naming_the_field(text: str, shown: str) -> None:
    with pytest.raises(BadInput, match=re.escape(f"name contains {shown} at position")) as exc:
        clean_text(text, "name", 200)
    assert exc.value.field == "name"
    assert text not in exc.value.message  # the value itself is not echoed


def test_a_single_line_field_refuses_every_kind_of_line_break() -> None:
    for brk in ("\n", "\r\n", "\r", "\x85", "\u2028", "\u2029"):
        with pytest.raises(BadInput, match="this field is a single line"):
            clean_text(f"第一行{brk}第二行", "name", 200)


def test_a_multiline_field_keeps_line_breaks_as_newlines() -> None:
    text = "消防通道堵塞\r\n灭火器过期\r未整改\u2028复查"
    assert (
        clean_text(text, "reason", 500, multiline=True) == "消防通道堵塞\n灭火器过期\n未整改\n复查"
    )
    with pytest.raises(BadInput, match=re.escape("U+0009 (TAB)")):
        clean_text("第一行\n\t第二行", "reason", 500, multiline=True)
    with pytest.raises(BadInput, match=re.escape("U+202E")):
        clean_text("第一行\n\u202e第二行", "reason", 500, multiline=True)


def test_text_is_stored_in_nfc_and_the_limit_counts_the_normal_form() -> None:
    assert clean_text(NFD_NAME, "name", 200) == unicodedata.normalize("NFC", NFD_NAME)
    assert len(NFD_NAME) == 16 and clean_text(NFD_NAME, "name", 14) == "Café Étoile 艺术"
    # Implicit direction marks are not overrides: right-to-left scripts need them.
    assert clean_text("مەكتەپ\u200f 学校", "name", 200) == "مەكتەپ\u200f 学校"


def test_blank_and_too_long_are_refused() -> None:
    with pytest.raises(BadInput, match="name must not be empty"):
        clean_text(" \u3000 ", "name", 200)
    with pytest.raises(BadInput, match="name is 201 characters; at most 200"):
        clean_text("学" * 201, "name", 200)


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("name", {"name": "启明\u202e学校"}),
        ("name", {"name": "启明\x00学校"}),
        ("address", {"address": "原州区\x07文化街"}),
    ],
)
def test_a_registration_with_control_characters_is_bad_input(
    field: str, overrides: dict[str, str]
) -> None:
    with pytest.raises(BadInput) as exc:
        registration_event(command(**overrides), REGIONS, POLICY)
    assert exc.value.field == field


def test_a_registration_is_stored_in_nfc_and_an_nfd_resend_is_the_same() -> None:
    event = registration_event(
        command(name=NFD_NAME, address="原州区\r\n文化街 1 号"), REGIONS, POLICY
    )
    assert event.name == "Café Étoile 艺术"
    assert event.address == "原州区\n文化街 1 号"
    inst = registered(name="Café Étoile 艺术")
    inst.register(command(name=NFD_NAME), AT, REGIONS, POLICY)  # the same registration again
    assert inst.collect() == []


def test_licence_numbers_and_reasons_are_checked_too() -> None:
    inst = registered()
    with pytest.raises(BadInput) as exc:
        inst.approve("L-\x001", AT, POLICY)
    assert exc.value.field == "license_no"
    with pytest.raises(BadInput) as exc:
        inst.set_list_mark("BLACKLIST", "无证\u202e办学", AT)
    assert exc.value.field == "reason"
    assert inst.collect() == []
    inst.set_list_mark("BLACKLIST", "无证办学\n多次警告", AT)
    assert inst.collect()[0].event.reason == "无证办学\n多次警告"  # type: ignore[attr-defined]


def test_the_one_scan_refuses_exactly_the_characters_refused_one_by_one() -> None:
    """``clean_text`` finds a refused character with one regular expression; that class
    must be exactly what ``_refused`` says of each code point, in both kinds of field."""
    for point in range(0x110000):
        char = chr(point)
        refused = _refused(char) is not None
        assert (_ANY_REFUSED.search(char) is not None) == refused, f"U+{point:04X}"
        assert (_ANY_REFUSED_BUT_NEWLINE.search(char) is not None) == (refused and char != "\n"), (
            f"U+{point:04X}"
        )


def test_the_first_refused_character_is_the_one_named() -> None:
    with pytest.raises(BadInput, match=re.escape("at position 3: control characters")):
        clean_text("学校\x01\u202e", "name", 200)
    with pytest.raises(BadInput, match=re.escape("U+202E (RIGHT-TO-LEFT OVERRIDE) at position 5")):
        clean_text("第一行\n\u202e", "reason", 200, multiline=True)
