"""``POST /api/ingest``: a district system streams newline-delimited commands and gets one
result line per command, in order, through the ordinary commands (same rules, errors and
scopes). Against the embedded suite's app, as a district system would call it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.bootstrap import Platform, build_platform, embedded_app
from services.common.auth import Role, TokenVerifier
from services.common.config import Settings
from tests.conftest import SECRET, bearer
from tests.factories import DISTRICTS, valid_credit_code


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "d", ingest_max_lines=20_000, ingest_max_line_bytes=4096, _env_file=None
    )
    running = build_platform(settings)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    app = embedded_app(platform, TokenVerifier(platform.regions, secret=SECRET))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=300
    ) as client:
        yield client


def registration(n: int, region: str | None = None) -> dict[str, Any]:
    region = region or DISTRICTS[n % 2]  # both in 固原 (640400)
    return {
        "command": "RegisterInstitution",
        "input": {
            "id": f"s-{n}",
            "name": f"流式机构{n}",
            "credit_code": valid_credit_code(region, f"BT{n:07d}"),
            "region": region,
            "category": "NON_SUBJECT",
            "non_subject_kind": "SPORTS",
            "mode": "OFFLINE",
        },
    }


def mixed(count: int) -> list[dict[str, Any]]:
    """``count`` commands of two services: registrations, approvals, cards, inspections."""
    lines: list[dict[str, Any]] = []
    n = 0
    while len(lines) < count:
        lines.append(registration(n))
        lines.append(
            {
                "command": "ApproveInstitution",
                "input": {"id": f"s-{n}", "license_no": f"体{n}"},
                "idempotencyKey": f"approve-s-{n}",
            }
        )
        if n % 2 == 0:
            lines.append(
                {
                    "command": "IssueWarningCard",
                    "input": {"id": f"s-{n}", "color": "YELLOW", "reason": "预收费超期"},
                    "idempotencyKey": f"card-s-{n}",
                }
            )
        if n % 3 == 0:
            lines.append(
                {
                    "command": "RecordInspection",
                    "input": {
                        "id": f"batch-{n}",
                        "region": DISTRICTS[n % 2],
                        "kind": "NIGHT",
                        "started_at": datetime(2026, 11, 20, 20, 0).isoformat(),
                        "personnel": 3,
                        "visits": [{"venue": f"居民楼{n}", "findings": []}],
                    },
                }
            )
        n += 1
    return lines[:count]


async def ingest(
    client: httpx.AsyncClient, lines: Iterable[Any], token: str | None = None
) -> list[dict[str, Any]]:
    body = b"".join(
        (line if isinstance(line, bytes) else json.dumps(line, ensure_ascii=False).encode()) + b"\n"
        for line in lines
    )
    response = await client.post(
        "/api/ingest",
        content=body,
        headers={
            "Authorization": token or bearer(Role.IMPORTER, "640400"),
            "Content-Type": "application/x-ndjson",
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


async def stored(platform: Platform) -> int:
    return sum([await store.max_position() for store in platform.event_stores.values()])


async def test_ten_thousand_mixed_commands_each_get_one_result_and_a_resend_applies_nothing(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    lines = mixed(10_000)
    results = await ingest(client, lines)
    assert [r["line"] for r in results] == list(range(1, 10_001))
    failures = [r for r in results if r["outcome"] != "ok"]
    assert failures == []
    assert [r["command"] for r in results] == [line["command"] for line in lines]
    assert all(r["events"] >= 1 for r in results)
    after_first = await stored(platform)

    again = await ingest(client, lines)  # the whole stream again, e.g. after a lost answer
    assert len(again) == 10_000 and all(r["outcome"] == "ok" for r in again)
    assert all(r["events"] == 0 for r in again)  # nothing applied twice
    assert await stored(platform) == after_first


async def test_a_broken_line_is_answered_with_its_error_and_the_others_go_on(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    results = await ingest(
        client,
        [
            registration(1),
            b"{not json",
            {"command": "DropDatabase", "input": {}},
            {"command": "RegisterInstitution", "input": {**registration(2)["input"], "x": 1}},
            {"command": "ApproveInstitution", "input": {"id": "s-1"}},  # no licence number
            registration(3, region="340103"),  # 合肥: outside the importer's 固原
            {"command": "ApproveInstitution", "input": {"id": "nobody", "license_no": "L"}},
            registration(4),
        ],
    )
    summary = [(r["line"], r["outcome"], r.get("code"), r.get("field")) for r in results]
    assert summary == [
        (1, "ok", None, None),
        (2, "error", "BAD_INPUT", "line"),
        (3, "error", "BAD_INPUT", "command"),
        (4, "error", "BAD_INPUT", "input.x"),
        (5, "error", "BAD_INPUT", "input.license_no"),
        (6, "error", "FORBIDDEN", "region"),
        (7, "error", "NOT_FOUND", "id"),
        (8, "ok", None, None),
    ]
    assert results[5]["id"] == "s-3"
    registry = platform.event_stores["registry"]
    streams = {e.stream for e in await registry.read_all()}
    assert {"s-1", "s-4"} <= streams and "s-3" not in streams and "s-2" not in streams


async def test_limits_on_a_line_and_on_a_stream(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    huge = {"command": "RegisterInstitution", "input": {"name": "长" * 5000}}
    results = await ingest(client, [registration(1), huge, registration(2)])
    assert [r["outcome"] for r in results] == ["ok", "error", "ok"]
    assert results[1]["field"] == "line" and "at most 4096 bytes" in results[1]["message"]


async def test_a_stream_past_its_line_limit_ends_with_an_error(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "x", ingest_max_lines=2, _env_file=None)  # type: ignore[call-arg]
    platform = build_platform(settings)
    await platform.start()
    app = embedded_app(platform, TokenVerifier(platform.regions, secret=SECRET))
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            results = await ingest(client, [registration(n) for n in range(5)])
    finally:
        await platform.stop()
    assert [r["outcome"] for r in results] == ["ok", "ok", "error"]
    assert "at most 2 lines" in results[2]["message"]


async def test_without_a_token_nothing_is_read(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/ingest", content=json.dumps(registration(1)) + "\n")
    assert response.status_code == 401
    viewer = bearer(Role.VIEWER, "640400")
    results = await ingest(client, [registration(1)], token=viewer)
    assert results[0]["code"] == "FORBIDDEN"
