"""The published JSON Schemas (``services/common/schemas.py``, ``contract/schemas/``).

District systems validate against the checked-in files, so they must be what the code
publishes now; every document must be a valid draft 2020-12 schema; a command schema must
accept what the platform's own client sends and refuse what the API refuses; the router
serves the documents and nothing else. What the platform emits is checked against the
event schemas in ``tests/integration/test_published_schemas.py``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from jsonschema import Draft202012Validator

from services.bootstrap import MODULES
from services.common.commands import Command, CommandTable
from services.common.schemas import (
    INDEX,
    SCHEMA_MEDIA,
    command_model,
    differences,
    documents,
    schema_routes,
    write_schemas,
)
from services.registry.domain.commands import ApproveInstitution
from tests.factories import T0, numbered_registration

REPO = Path(__file__).resolve().parents[2]
CONTRACT = REPO / "contract" / "schemas"
DOCUMENTS = documents(MODULES)


def validator(path: str) -> Draft202012Validator:
    return Draft202012Validator(DOCUMENTS[path], format_checker=Draft202012Validator.FORMAT_CHECKER)


def table_of(command: Command) -> tuple[str, CommandTable]:
    for module in MODULES:
        if type(command) in module.command_types:
            return module.name, module.command_types[type(command)]
    raise LookupError(type(command).__name__)


def as_sent(command: Command) -> tuple[str, dict[str, Any]]:
    """A command's schema path and its JSON as the platform's client serialises it, with
    the id a non-creating command carries in its URL put back."""
    service, table = table_of(command)
    _, body = table.request(command)
    if command.id is not None:
        body["id"] = command.id
    return f"commands/{service}/{type(command).__name__}.json", body


def test_the_published_schemas_are_what_the_code_publishes() -> None:
    found = differences(MODULES, CONTRACT)
    assert not found, (
        "contract/schemas/ disagrees with the code; run `shuangjian schemas` and check in "
        "the result:\n  " + "\n  ".join(found)
    )


def test_every_document_is_a_draft_2020_12_schema() -> None:
    for path, document in DOCUMENTS.items():
        if path == INDEX:
            continue
        Draft202012Validator.check_schema(document)
        assert document["$id"].endswith(path)
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_command_and_event_type_has_a_schema_in_the_index() -> None:
    listed = {entry["path"]: entry for entry in DOCUMENTS[INDEX]["schemas"]}
    assert set(listed) == set(DOCUMENTS) - {INDEX}
    for module in MODULES:
        for table in module.commands:
            for route in table:
                path = f"commands/{module.name}/{route.command.__name__}.json"
                assert listed[path]["kind"] == "command", path
                assert DOCUMENTS[path]["additionalProperties"] is False
        for event in module.events.classes:
            name = event.TYPE.split(".", 1)[1]
            path = f"events/{module.name}/{name}.v{event.SCHEMA_VERSION}.json"
            assert listed[path] == {
                "kind": "event",
                "name": name,
                "service": module.name,
                "version": event.SCHEMA_VERSION,
                "path": path,
            }
            schema = DOCUMENTS[path]["properties"]
            assert schema["type"] == {"const": event.TYPE, "description": "The event type."}
            assert schema["schema_version"]["const"] == event.SCHEMA_VERSION


@pytest.mark.parametrize("n", range(12))
def test_a_command_schema_accepts_what_the_client_sends(n: int) -> None:
    command = numbered_registration(n)
    path, body = as_sent(command)
    errors = [e.message for e in validator(path).iter_errors(body)]
    assert not errors, (body, errors)
    # What the schema accepts becomes the same command again.
    parsed = command_model(type(command)).model_validate(body)
    assert type(command)(**dict(parsed)) == command


def test_a_command_schema_refuses_an_unknown_or_missing_field() -> None:
    path, body = as_sent(numbered_registration(1))
    check = validator(path)
    assert not check.is_valid({**body, "nmae": "typo"})
    without_name = {k: v for k, v in body.items() if k != "name"}
    assert not check.is_valid(without_name)
    # The model others reuse refuses them too, as the HTTP body does.
    model = command_model(type(numbered_registration(1)))
    with pytest.raises(ValueError):
        model.model_validate({**body, "nmae": "typo"})


def test_a_command_on_an_existing_aggregate_needs_its_id() -> None:
    path, body = as_sent(ApproveInstitution(id="i001", license_no="L-1", occurred_at=T0))
    check = validator(path)
    assert check.is_valid(body)
    assert not check.is_valid({k: v for k, v in body.items() if k != "id"})
    assert not check.is_valid({**body, "id": None})
    # A creating command may leave the id to the platform.
    path, body = as_sent(numbered_registration(2))
    assert validator(path).is_valid({k: v for k, v in body.items() if k != "id"})


def test_nested_inputs_refuse_unknown_fields() -> None:
    check = validator("commands/inspections/RecordInspection.json")
    finding: dict[str, Any] = {"type": "FIRE_SAFETY", "description": "x"}
    batch = {
        "region": "640402",
        "kind": "DAILY",
        "started_at": "2021-07-24T09:00:00+08:00",
        "personnel": 3,
        "visits": [{"venue": "a flat", "findings": [finding]}],
    }
    assert check.is_valid(batch)
    finding["severity"] = "high"
    assert not check.is_valid(batch)


def test_a_decimal_is_a_number_or_a_decimal_string() -> None:
    check = validator("commands/inspections/RecordPenalty.json")
    penalty = {"region": "640402", "article": "A", "kind": "FINE", "reason": "r"}
    for fine in ("12.50", 12.5, "1E+3", None):
        assert check.is_valid({**penalty, "fine": fine}), fine
    for fine in ("12,50", "twelve", ""):
        assert not check.is_valid({**penalty, "fine": fine}), fine


def test_writing_makes_the_folder_exactly_the_published_set(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    assert len(write_schemas(MODULES, out)) == len(DOCUMENTS)
    assert write_schemas(MODULES, out) == []
    stale = out / "commands" / "gone" / "Renamed.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}\n")
    (out / INDEX).write_text("{}\n")
    assert sorted(write_schemas(MODULES, out)) == ["commands/gone/Renamed.json", INDEX]
    assert not stale.parent.exists()
    assert differences(MODULES, out) == []
    text = (out / INDEX).read_text(encoding="utf-8")
    assert text.endswith("}\n") and json.loads(text) == DOCUMENTS[INDEX]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(schema_routes(MODULES))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def test_the_router_serves_the_index_and_each_schema(client: httpx.AsyncClient) -> None:
    index = await client.get("/api/schemas")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("application/json")
    assert index.json() == DOCUMENTS[INDEX]
    path = "events/registry/InstitutionRegistered.v1.json"
    one = await client.get(f"/api/schemas/{path}")
    assert one.status_code == 200
    assert one.headers["content-type"].startswith(SCHEMA_MEDIA)
    assert one.text == (CONTRACT / path).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "path",
    [
        "commands/registry/Nothing.json",
        "commands/registry",
        "..%2Fpyproject.toml",
        "%2e%2e/%2e%2e/pyproject.toml",
        "commands/..%2F..%2Findex.json",
        "commands/registry/..%5CRegisterInstitution.json",
        "%2Fetc%2Fpasswd",
    ],
)
async def test_the_router_404s_unknown_paths_and_traversal(
    client: httpx.AsyncClient, path: str
) -> None:
    answer = await client.get(f"/api/schemas/{path}")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "NOT_FOUND"
    assert answer.json()["error"]["message"]
