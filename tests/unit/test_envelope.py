"""The event envelope: JSON in and out, validation, upcasting."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from services.common.envelope import Envelope, Upcasters
from services.common.errors import MalformedEvent
from services.common.timeutil import SHANGHAI
from tests.factories import envelope


def test_json_round_trip_is_cloudevents_compatible() -> None:
    original = envelope("inst-1", 1, correlation_id="c-1", data={"name": "启明", "n": 1})
    body = json.loads(original.to_json())
    assert body["specversion"] == "1.0"
    assert body["source"] == "/shuangjian/registry"
    assert body["type"] == "registry.InstitutionRegistered"
    assert "启明" in original.to_json()  # readable Chinese, not \\u escapes
    assert Envelope.from_json(original.to_json()) == original


def test_naive_times_are_asia_shanghai() -> None:
    event = envelope("s", 1, occurred_at=datetime(2021, 7, 24, 9, 0))
    assert event.occurred_at.utcoffset() == SHANGHAI.utcoffset(None)
    assert event.occurred_at.hour == 9


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"id": "x"}', "id"),
    ],
)
def test_malformed_json_is_a_malformed_event_with_a_reason(raw: str | bytes, reason: str) -> None:
    with pytest.raises(MalformedEvent, match=reason):
        Envelope.from_json(raw)


def test_field_rules_are_enforced() -> None:
    body = json.loads(envelope("s", 1).to_json())
    for field, bad in (("version", 0), ("region", "64"), ("type", "NoService")):
        with pytest.raises(MalformedEvent, match=field):
            Envelope.from_dict({**body, field: bad})


def test_upcasters_read_old_versions_step_by_step() -> None:
    upcasters = Upcasters()

    @upcasters.register("registry.InstitutionRegistered", 1)
    def _v1_to_v2(data: dict[str, object]) -> dict[str, object]:
        data["title"] = data.pop("name")
        return data

    @upcasters.register("registry.InstitutionRegistered", 2)
    def _v2_to_v3(data: dict[str, object]) -> dict[str, object]:
        data["title"] = str(data["title"]).upper()
        return data

    old = envelope("s", 1, data={"name": "abc"})
    new = upcasters.upcast(old)
    assert (new.schema_version, new.data) == (3, {"title": "ABC"})
    assert old.data == {"name": "abc"}  # the stored event is not touched
    current = envelope("s", 1, schema_version=3, data={"title": "X"})
    assert upcasters.upcast(current) is current
