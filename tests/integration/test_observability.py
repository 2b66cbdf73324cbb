"""What an operator watches: /metrics, /readyz and correlation ids, on the embedded suite
(the distributed processes serve the same, checked in ``tests/kafka/test_processes.py``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from services.bootstrap import Platform, build_platform, embedded_app
from services.common.auth import TokenVerifier
from services.common.config import Settings
from services.common.logging import configure_logging
from tests.conftest import SECRET, bearer
from tests.factories import registration

REGISTER = """
mutation($input: RegisterInstitutionInput!) { registerInstitution(input: $input) { id } }"""


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of metric ``name`` (a counter's ``_total``), by their sorted labels."""
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    app = embedded_app(platform, TokenVerifier(platform.regions, secret=SECRET))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": bearer()},
    ) as client:
        yield client


async def test_requests_and_commands_are_counted_by_bounded_labels(
    client: httpx.AsyncClient,
) -> None:
    before = (await client.get("/metrics")).text
    ok = await client.post(
        "/graphql", json={"query": REGISTER, "variables": {"input": registration(id="m-1")}}
    )
    assert ok.json()["data"]["registerInstitution"]["id"] == "m-1"
    bad = {"input": registration(id="m-2", creditCode="not-a-code")}
    named = REGISTER.replace("mutation(", "mutation CallersOwnName(")
    refused = await client.post(
        "/graphql", json={"query": named, "variables": bad, "operationName": "CallersOwnName"}
    )
    assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_INPUT"
    rest = await client.post("/api/registry/v1/institutions/m-1/approve", json={"license_no": "L"})
    assert rest.status_code == 200, rest.text
    after = (await client.get("/metrics")).text

    def grew(name: str, **labels: str) -> float:
        key = tuple(sorted(labels.items()))
        return samples(after, name).get(key, 0) - samples(before, name).get(key, 0)

    operation = "graphql mutation registerInstitution"
    requests = "shuangjian_http_requests_total"
    assert grew(requests, process="embedded", operation=operation, code="200") == 1
    # A refused operation counts under its error code, whatever the caller named it.
    assert grew(requests, process="embedded", operation=operation, code="BAD_INPUT") == 1
    approve = "POST /v1/institutions/{id}/approve"
    assert grew(requests, process="embedded", operation=approve, code="200") == 1
    seconds = "shuangjian_http_request_duration_seconds_count"
    assert grew(seconds, process="embedded", operation=operation) == 2
    commands = "shuangjian_commands_total"
    assert grew(commands, service="registry", command="RegisterInstitution", outcome="ok") == 1
    assert "CallersOwnName" not in after
    # Caught up and nothing waiting: the gauges say so, once the projections have applied
    # the REST approval (a command's answer does not wait for the read models).
    # The runner reads the event store itself, so the read models can be caught up a
    # moment before the relay has published (and counted) the last event: wait for both.
    for _ in range(600):  # a bound on a hang (30 s), not a measurement: a busy CI is slow
        gauges = (await client.get("/metrics")).text
        lags = samples(gauges, "shuangjian_projection_lag_events")
        depth = samples(gauges, "shuangjian_outbox_depth").get((("service", "registry"),))
        if lags and set(lags.values()) == {0.0} and depth == 0:
            break
        await asyncio.sleep(0.05)
    assert lags and set(lags.values()) == {0.0}
    assert depth == 0


async def test_a_correlation_id_is_echoed_made_when_missing_and_carried_by_the_events(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    given = await client.post(
        "/graphql",
        json={"query": REGISTER, "variables": {"input": registration(id="c-1")}},
        headers={"X-Correlation-Id": "district-batch-17"},
    )
    assert given.headers["x-correlation-id"] == "district-batch-17"
    made = await client.post(
        "/graphql",
        json={
            "query": REGISTER,
            "variables": {"input": registration(id="c-2", creditCode=_other_code())},
        },
    )
    correlation = made.headers["x-correlation-id"]
    assert len(correlation) == 32 and correlation != "district-batch-17"
    events = await platform.event_stores["registry"].read_all()
    by_stream = {e.stream: e.correlation_id for e in events}
    assert by_stream["c-1"] == "district-batch-17"
    assert by_stream["c-2"] == correlation


async def test_every_log_line_of_a_request_carries_its_correlation_id(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json")
    try:
        response = await client.post(
            "/api/registry/v1/institutions/nobody/approve",
            json={"license_no": "L"},
            headers={"X-Correlation-Id": "trace\x01-9"},
        )
        assert response.status_code == 404
    finally:
        structlog.reset_defaults()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    request = next(line for line in lines if line["event"] == "http.request")
    assert request["correlation_id"] == "trace-9"  # control characters never reach a log
    assert request["operation"] == "POST /v1/institutions/{id}/approve"
    assert request["status"] == 404


async def test_ready_means_the_stores_answer_and_the_read_models_are_within_the_bound(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "d", ready_max_lag=1, _env_file=None)  # type: ignore[call-arg]
    platform = build_platform(settings)
    await platform.start()
    app = embedded_app(platform, TokenVerifier(platform.regions, secret=SECRET))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert set(ready.json()["checks"].values()) == {"ok"}

            await platform.runner.stop()  # the projections stop; commands go on
            for n in range(2):
                code = _other_code(n)
                await _register(platform, f"r-{n}", code)
            behind = await client.get("/readyz")
            assert behind.status_code == 503
            assert "events behind" in behind.json()["checks"]["projections"]
            live = await client.get("/healthz")
            assert live.status_code == 200  # alive, just not ready
    finally:
        await platform.stop()


def _other_code(n: int = 0) -> str:
    from tests.factories import valid_credit_code

    return valid_credit_code("640402", f"BQ{n:07d}")


async def _register(platform: Platform, ident: str, code: str) -> Any:
    from services.common.application import CommandContext
    from services.registry.module import RegisterInstitution

    fields = {
        "id": ident,
        "name": f"观测{ident}",
        "credit_code": code,
        "region": "640402",
        "category": "NON_SUBJECT",
        "non_subject_kind": "SPORTS",
        "mode": "OFFLINE",
    }
    return await platform.execute(RegisterInstitution(**fields), CommandContext(actor="t"))
