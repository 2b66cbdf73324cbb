"""Spreadsheet imports over HTTP and GraphQL: upload, watch the job, read its errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.bootstrap import Platform, build_platform, embedded_app
from services.common.auth import Role, TokenVerifier
from services.common.config import Settings
from tests.conftest import SECRET, bearer
from tests.factories import valid_credit_code

HEADER = "机构名称,统一社会信用代码,区县代码,类别,非学科类别,办学形式\n"
JOB = """
query($id: ID!) {
  importJob(id: $id) { id kind status applied unchanged failed total errors { row column code } }
}"""


def sheet() -> bytes:
    rows = [
        f"篮球俱乐部{n},{valid_credit_code('640402', f'HT{n:07d}')},640402,非学科类,体育,线下"
        for n in range(3)
    ]
    rows.append("无代码机构,,640402,非学科类,体育,线下")  # row 5: no credit code
    return (HEADER + "\n".join(rows) + "\n").encode()


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    settings = Settings(data_dir=tmp_path / "d", import_max_bytes=4096, _env_file=None)  # type: ignore[call-arg]
    running = build_platform(settings)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    app = embedded_app(platform, TokenVerifier(platform.regions, secret=SECRET))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


async def upload(
    client: httpx.AsyncClient, body: bytes, name: str = "机构.csv", token: str | None = None
) -> httpx.Response:
    return await client.post(
        "/api/import/institutions",
        files={"file": (name, body, "text/csv")},
        headers={"Authorization": token or bearer(Role.IMPORTER, "640400", subject="district")},
    )


async def finished(client: httpx.AsyncClient, location: str, token: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            job = (await client.get(location, headers={"Authorization": token})).json()
            if job["status"] in ("done", "failed"):
                return job
            await asyncio.sleep(0.05)


async def test_an_upload_becomes_a_job_with_counts_errors_and_the_same_in_graphql(
    client: httpx.AsyncClient,
) -> None:
    token = bearer(Role.IMPORTER, "640400", subject="district")
    started = await upload(client, sheet())
    assert started.status_code == 202, started.text
    job = await finished(client, started.headers["location"], token)
    assert job["status"] == "done", job
    assert job["counts"] == {"applied": 3, "unchanged": 0, "failed": 1, "total": 4}
    assert [(e["row"], e["column"]) for e in job["errors"]] == [(5, "统一社会信用代码")]
    errors = await client.get(
        f"{started.headers['location']}/errors", headers={"Authorization": token}
    )
    assert errors.status_code == 200 and "统一社会信用代码" in errors.text

    body = (
        await client.post(
            "/graphql",
            json={"query": JOB, "variables": {"id": job["id"]}},
            headers={"Authorization": token},
        )
    ).json()
    assert body["data"]["importJob"]["applied"] == 3
    assert body["data"]["importJob"]["errors"] == [
        {"row": 5, "column": "统一社会信用代码", "code": "BAD_INPUT"}
    ]

    again = await upload(client, sheet())  # the same file: nothing changes
    repeat = await finished(client, again.headers["location"], token)
    assert repeat["counts"] == {"applied": 0, "unchanged": 3, "failed": 1, "total": 4}

    # Someone else's job is not theirs to see.
    other = bearer(Role.IMPORTER, "640400", subject="another-district")
    hidden = await client.get(started.headers["location"], headers={"Authorization": other})
    assert hidden.status_code == 404
    denied = (
        await client.post(
            "/graphql",
            json={"query": JOB, "variables": {"id": job["id"]}},
            headers={"Authorization": other},
        )
    ).json()
    assert denied["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_only_importers_upload_and_only_spreadsheets_within_the_size(
    client: httpx.AsyncClient,
) -> None:
    operator = await upload(client, sheet(), token=bearer(Role.OPERATOR, "640400"))
    assert operator.status_code == 403
    script = await upload(client, b"MZ...", name="run.exe")
    assert script.status_code in (400, 422)
    assert script.json()["error"]["field"] == "file"
    huge = await upload(client, sheet() * 100)
    assert huge.json()["error"]["code"] == "BAD_INPUT" and "over 4096 bytes" in huge.text
    unknown = await client.post(
        "/api/import/teachers",
        files={"file": ("x.csv", sheet(), "text/csv")},
        headers={"Authorization": bearer(Role.IMPORTER, "640400")},
    )
    assert unknown.status_code == 404
