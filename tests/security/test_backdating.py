"""Back-dating beyond the window is for history imports: the admin and importer roles.

A district operator once registered a SUBJECT institution "on 2021-07-01" and approved
it, getting round the ban on new SUBJECT approvals. Facts dated further back than the
window (``SHUANGJIAN_BACKDATE_WINDOW_DAYS``, 3 days by default) now need a role that
imports history, and the audit trail shows which facts were back-dated.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest

from services.bootstrap import Platform, build_platform
from services.common.application import CommandContext
from services.common.auth import SYSTEM, Principal, Role, TokenVerifier
from services.common.config import Settings
from services.common.errors import Forbidden
from services.common.timeutil import utc_now
from services.gateway.context import GatewayContext
from services.gateway.schema import build_schema
from services.registry.domain.commands import IssueWarningCard, RegisterInstitution
from services.registry.settings import RegistrySettings
from tests.conftest import SECRET, GraphQL, bearer
from tests.factories import registration, valid_credit_code
from tests.integration.test_registry_graphql import APPROVE, REGISTER

TRAIL = """
query($id: ID!) {
  institution(id: $id) { events { edges { node { type occurredAt recordedAt backdated } } } }
}"""


@asynccontextmanager
async def as_role(app: Any, role: Role, region: str) -> AsyncIterator[GraphQL]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": bearer(role, region, subject=f"{role.value}@{region}")},
    ) as client:
        yield GraphQL(client)


def days_ago(days: float) -> str:
    return (utc_now() - timedelta(days=days)).isoformat()


async def test_an_operator_cannot_backdate_a_subject_registration_to_get_it_approved(
    app: Any, platform: Platform
) -> None:
    store = platform.event_stores["registry"]
    async with as_role(app, Role.OPERATOR, "640402") as operator:
        body = await operator(REGISTER, {"input": registration(id="yz-1", occurredAt="2021-07-01")})
        assert body["data"] is None
        [error] = body["errors"]
        assert error["extensions"] == {"code": "FORBIDDEN", "field": "input.occurredAt"}
        assert "3 day(s)" in error["message"] and "admin or importer" in error["message"]
        assert await store.max_position() == 0

        # Registered as of today, the policy applies: no approval.
        await operator.data(REGISTER, {"input": registration(id="yz-1", occurredAt=None)})
        today = await operator(APPROVE, {"id": "yz-1", "licenseNo": "L"})
        assert today["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert [e.type for e in await store.read_stream("yz-1")] == ["registry.InstitutionRegistered"]


async def test_an_operator_cannot_backdate_other_facts_either(
    app: Any, gql: GraphQL, platform: Platform
) -> None:
    await gql.data(REGISTER, {"input": registration(id="yz-0", occurredAt="2021-03-01")})
    before = await platform.event_stores["registry"].max_position()
    async with as_role(app, Role.OPERATOR, "640402") as operator:
        backdated = await operator(APPROVE, {"id": "yz-0", "licenseNo": "L", "at": "2021-04-01"})
    assert backdated["data"] is None
    assert backdated["errors"][0]["extensions"] == {"code": "FORBIDDEN", "field": "occurredAt"}
    assert await platform.event_stores["registry"].max_position() == before


async def test_within_the_window_an_operator_may_date_a_fact(app: Any, platform: Platform) -> None:
    arts = registration(
        id="yz-2", category="NON_SUBJECT", nonSubjectKind="ARTS", occurredAt=days_ago(2.5)
    )
    async with as_role(app, Role.OPERATOR, "640402") as operator:
        created = await operator.data(REGISTER, {"input": arts})
    assert created["registerInstitution"]["status"] == "PENDING"


async def test_an_importer_loads_history_inside_its_region_and_it_shows_as_backdated(
    app: Any, platform: Platform
) -> None:
    async with as_role(app, Role.IMPORTER, "640400") as importer:
        await importer.data(REGISTER, {"input": registration(id="yz-3", occurredAt="2021-03-01")})
        approved = await importer.data(
            APPROVE, {"id": "yz-3", "licenseNo": "L-3", "at": "2021-04-01T10:00:00"}
        )
        assert approved["approveInstitution"]["status"] == "APPROVED"
        await importer.data(
            'mutation { issueWarningCard(id: "yz-3", color: YELLOW, reason: "超时培训") { id } }'
        )
        elsewhere = registration(
            id="hf-1", region="340103", creditCode=valid_credit_code("340103", "MA0000H01")
        )
        outside = await importer(REGISTER, {"input": elsewhere})
        assert outside["errors"][0]["extensions"] == {"code": "FORBIDDEN", "field": "input.region"}

        trail = await importer.data(TRAIL, {"id": "yz-3"})
    events = [e["node"] for e in trail["institution"]["events"]["edges"]]
    assert [(e["type"], e["backdated"]) for e in events] == [
        ("registry.InstitutionRegistered", True),
        ("registry.InstitutionApproved", True),
        ("registry.WarningCardIssued", False),
    ]
    assert events[0]["occurredAt"].startswith("2021-03-01")
    assert not events[0]["recordedAt"].startswith("2021")


async def test_the_platform_itself_and_admins_still_backdate(platform: Platform) -> None:
    old = RegisterInstitution(
        id="demo-1",
        name="原州区博学培训学校",
        credit_code=valid_credit_code("640402", "MA0000D01"),
        region="640402",
        category="SUBJECT",
        mode="OFFLINE",
        occurred_at=utc_now() - timedelta(days=900),
    )
    assert (await platform.execute(old, CommandContext(principal=SYSTEM))).events
    admin = Principal.of("admin@6404", Role.ADMIN, "640400", platform.regions)
    card = IssueWarningCard(
        id="demo-1", color="YELLOW", reason="旧档", occurred_at=utc_now() - timedelta(days=800)
    )
    assert (await platform.execute(card, CommandContext(principal=admin))).events
    stream = await platform.event_stores["registry"].read_stream("demo-1")
    assert [(e.actor, e.occurred_at) for e in stream] == [
        ("system", old.occurred_at),
        ("admin@6404", card.occurred_at),
    ]


async def test_the_window_is_the_installation_s_setting(settings: Settings) -> None:
    own = {"registry": RegistrySettings(backdate_window_days=10, _env_file=None)}  # type: ignore[call-arg]
    platform = build_platform(settings, own=own)
    await platform.start()
    try:
        operator = CommandContext(
            principal=Principal.of("op@640402", Role.OPERATOR, "640402", platform.regions)
        )

        def arts(ident: str, org: str, days: float) -> RegisterInstitution:
            return RegisterInstitution(
                id=ident,
                name="原州区美术工作室",
                credit_code=valid_credit_code("640402", org),
                region="640402",
                category="NON_SUBJECT",
                non_subject_kind="ARTS",
                mode="OFFLINE",
                occurred_at=utc_now() - timedelta(days=days),
            )

        assert (await platform.execute(arts("w-1", "MA0000W01", 9), operator)).events
        before = await platform.event_stores["registry"].max_position()
        with pytest.raises(Forbidden) as refused:
            await platform.execute(arts("w-2", "MA0000W02", 11), operator)
        assert refused.value.field == "occurred_at" and "10 day(s)" in refused.value.message
        assert await platform.event_stores["registry"].max_position() == before
    finally:
        await platform.stop()


def test_the_window_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RegistrySettings(_env_file=None).backdate_window_days == 3  # type: ignore[call-arg]
    monkeypatch.setenv("SHUANGJIAN_BACKDATE_WINDOW_DAYS", "7")
    assert RegistrySettings(_env_file=None).backdate_window_days == 7  # type: ignore[call-arg]
    monkeypatch.setenv("SHUANGJIAN_BACKDATE_WINDOW_DAYS", "0")
    with pytest.raises(pydantic.ValidationError):
        RegistrySettings(_env_file=None)  # type: ignore[call-arg]


def test_the_token_command_makes_importer_tokens(tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "shuangjian"
    made = subprocess.run(
        [str(cli), "token", "--role", "importer", "--region", "640400"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "SHUANGJIAN_JWT_SECRET": SECRET, "SHUANGJIAN_DATA_DIR": str(tmp_path)},
    )
    from services.common.regions import RegionTree

    principal = TokenVerifier(RegionTree.load(), secret=SECRET).verify(
        f"Bearer {made.stdout.strip()}"
    )
    assert (principal.role, principal.scope, principal.role.backdates) == (
        Role.IMPORTER,
        "6404",
        True,
    )


async def test_live_events_say_which_facts_are_backdated(platform: Platform) -> None:
    viewer = Principal.of("city-viewer", Role.VIEWER, "640400", platform.regions)
    stream = await build_schema().subscribe(
        'subscription { events(region: "640400", types: ["registry.InstitutionRegistered"])'
        " { stream backdated } }",
        context_value=GatewayContext(platform, viewer),
    )
    assert isinstance(stream, AsyncIterator)

    def history(n: int) -> RegisterInstitution:
        return RegisterInstitution(
            id=f"live-{n}",
            name=f"机构{n}",
            credit_code=valid_credit_code("640402", f"MA{n:07d}"),
            region="640402",
            category="NON_SUBJECT",
            non_subject_kind="ARTS",
            mode="OFFLINE",
            occurred_at=utc_now() - timedelta(days=30) if n % 2 else None,
        )

    async with asyncio.timeout(10):  # a bound on a hang, not a measurement
        # The subscription joins the bus on its first read: register until it reports.
        receiving = asyncio.ensure_future(anext(stream))
        n = 0
        while not receiving.done():
            n += 1
            await platform.execute(history(n), CommandContext())
            await platform.settle()
            await asyncio.wait([receiving], timeout=0.05)
        seen = [receiving.result()]
        for _ in range(2):
            n += 1
            await platform.execute(history(n), CommandContext())
            seen.append(await anext(stream))
    events = [r.data["events"] for r in seen if r.data]
    assert len(events) == 3
    assert all(e["backdated"] == (int(e["stream"].split("-")[1]) % 2 == 1) for e in events)
    assert {e["backdated"] for e in events} == {True, False}
