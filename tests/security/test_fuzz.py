"""Fuzzing a running suite's GraphQL schema and the registry's OpenAPI: no 5xx, no partial write.

schemathesis generates queries and mutations for every field of the GraphQL schema and
requests for every endpoint of the registry service (valid and invalid input alike) with
a fixed seed, and sends them with a national admin token to a real ``shuangjian up``
process. Afterwards the read models must still equal a
recount of the institution documents, every stored event must have been applied, and
nothing may be parked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.graphql import nodes

from services.common.regions import RegionTree
from services.common.sqlite import SQLiteEventStore, SQLiteReadStore
from services.gateway.schema import build_schema
from services.registry.domain.events import is_credit_code_stream
from services.registry.domain.rules import RegistryPolicy
from services.registry.handlers import Registry
from services.registry.module import MODULE as REGISTRY
from services.registry.projections import INSTITUTIONS, InstitutionsProjection
from tests.e2e.conftest import Suite
from tests.factories import registration, valid_credit_code
from tests.integration.test_registry_graphql import REGISTER
from tests.rollups import recount, stored_rollups

TOTAL_CASES = 2_000
ALLOWED_CODES = {"BAD_INPUT", "NOT_FOUND", "CONFLICT", "FORBIDDEN", "UNAVAILABLE"}

dates = st.dates().map(lambda d: d.isoformat())
datetimes = st.datetimes(allow_imaginary=False).map(lambda d: d.isoformat())
junk = st.text(max_size=40)
schemathesis.graphql.scalar("Date", st.one_of(dates, junk).map(nodes.String))
schemathesis.graphql.scalar("DateTime", st.one_of(datetimes, junk).map(nodes.String))
schemathesis.graphql.scalar(
    "Money",
    st.one_of(st.decimals(allow_nan=False, allow_infinity=False).map(str), junk).map(nodes.String),
)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    root = tmp_path_factory.mktemp("fuzz")
    suite = Suite(root, root / "data", "--no-demo")
    suite.start()
    # Something to find, change and count while the fuzzer runs.
    for n, region in enumerate(["640402", "640422", "120101", "340103"] * 3):
        code = valid_credit_code(region, f"MA{n:07d}")
        suite.data(REGISTER, {"input": registration(id=f"f{n}", region=region, creditCode=code)})
    try:
        yield suite
    finally:
        suite.kill()


# The served schema, loaded from its own introspection: every query and mutation field.
SCHEMA = schemathesis.graphql.from_dict(build_schema().introspect())
CASES = SCHEMA.as_strategy()


@given(case=CASES)
@settings(
    max_examples=TOTAL_CASES,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_the_server_fail(case: Any, running: Suite) -> None:
    response = case.call(base_url=running.base_url, headers=dict(running.client.headers))
    assert response.status_code < 500, response.text
    body = response.json()
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        assert code in ALLOWED_CODES, error


# The registry service's OpenAPI document: every command endpoint, bodies valid and not.
REGISTRY_API = schemathesis.openapi.from_dict(
    REGISTRY.api(cast(Registry, None), cast(Any, None)).openapi()
)


@given(case=REGISTRY_API.as_strategy())
@settings(
    max_examples=1_000,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_makes_the_registry_service_fail(case: Any, running: Suite) -> None:
    response = case.call(
        base_url=f"{running.base_url}/api/registry", headers=dict(running.client.headers)
    )
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        # The service's own envelope, or the gateway's for a path that left the service.
        error = body.get("error") or (body.get("errors") or [{}])[0].get("extensions") or {}
        assert error.get("code") in ALLOWED_CODES, (response.status_code, response.text)


LIFECYCLE = {
    "approveInstitution": "(id: $id, licenseNo: $text, occurredAt: $at)",
    "convertToNonProfit": "(id: $id, occurredAt: $at)",
    "suspendInstitution": "(id: $id, reason: $text, occurredAt: $at)",
    "resumeInstitution": "(id: $id, occurredAt: $at)",
    "revokeInstitution": "(id: $id, reason: $text, occurredAt: $at)",
    "exitInstitution": "(id: $id, reason: $text, occurredAt: $at)",
    "issueWarningCard": "(id: $id, color: RED, reason: $text, occurredAt: $at)",
    "setListMark": "(id: $id, mark: BLACKLIST, reason: $text, occurredAt: $at)",
}
texts = st.one_of(st.text(max_size=30), st.text(min_size=490, max_size=520), st.just(" \x00 "))
moments = st.one_of(st.none(), st.datetimes(allow_imaginary=False).map(lambda d: d.isoformat()))


@given(
    mutation=st.sampled_from(sorted(LIFECYCLE)),
    slot=st.integers(0, 13),
    text=texts,
    at=moments,
)
@settings(
    max_examples=600, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)
def test_lifecycle_commands_on_real_institutions_never_fail(
    running: Suite, mutation: str, slot: int, text: str, at: str | None
) -> None:
    """The schema fuzzer rarely hits an existing id; these commands always aim at one."""
    arguments = LIFECYCLE[mutation]
    needs_text = "$text" in arguments
    declared = (
        "$id: ID!, $text: String!, $at: DateTime" if needs_text else "$id: ID!, $at: DateTime"
    )
    query = f"mutation({declared}) {{ {mutation}{arguments} {{ id status }} }}"
    variables: dict[str, Any] = {"id": f"f{slot}", "at": at}
    if needs_text:
        variables["text"] = text
    response = running.client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code < 500, response.text
    for error in response.json().get("errors") or []:
        assert (error.get("extensions") or {}).get("code") in ALLOWED_CODES, error


def test_after_fuzzing_nothing_is_half_written(running: Suite) -> None:
    async def check(data: Path) -> None:
        regions, policy = RegionTree.load(), RegistryPolicy()
        events = SQLiteEventStore(data / "registry.events.db")
        reads = SQLiteReadStore(data / "read-models.db")
        await events.start()
        await reads.ensure([*InstitutionsProjection.collections])
        try:
            docs = await reads.dump(INSTITUTIONS.name)
            assert await stored_rollups(reads) == recount(docs, regions, policy)
            assert len(docs) >= 12
            stored = [  # the institutions' events; credit code reservations have no document
                e
                for e in await events.read_all(limit=100_000)
                if not is_credit_code_stream(e.stream)
            ]
            assert {d["id"] for d in docs} == {e.stream for e in stored}
            versions = {d["id"]: d["version"] for d in docs}
            for event in stored:
                assert versions[event.stream] >= event.version
        finally:
            await events.close()
            await reads.close()

    asyncio.run(check(running.data_dir))
