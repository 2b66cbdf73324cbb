"""Live events respect the subscriber's region scope, in process and over WebSocket."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import websockets

from services.bootstrap import Platform
from services.common.application import CommandContext
from services.common.auth import Principal, Role
from services.gateway.context import GatewayContext
from services.gateway.schema import build_schema
from services.registry.domain.commands import RegisterInstitution
from tests.e2e.conftest import Suite
from tests.factories import registration, valid_credit_code
from tests.integration.test_registry_graphql import REGISTER

SUBSCRIBE = "subscription($r: String!) { events(region: $r) { type stream region actor } }"
# A registration stores two events (its credit code's reservation first): listen to one.
REGISTRATIONS = (
    'subscription($r: String!) { events(region: $r, types: ["registry.InstitutionRegistered"])'
    " { type stream region actor } }"
)


def register(n: int, region: str) -> RegisterInstitution:
    return RegisterInstitution(
        id=f"live-{n}",
        name=f"机构{n}",
        credit_code=valid_credit_code(region, f"MA{n:07d}"),
        region=region,
        category="NON_SUBJECT",
        non_subject_kind="ARTS",
        mode="OFFLINE",
    )


async def test_a_city_viewer_gets_only_its_citys_events(platform: Platform) -> None:
    viewer = Principal.of("city-viewer", Role.VIEWER, "640400", platform.regions)
    context = GatewayContext(platform, viewer)
    stream = await build_schema().subscribe(
        REGISTRATIONS, variable_values={"r": "640400"}, context_value=context
    )
    assert not isinstance(stream, Exception) and hasattr(stream, "__anext__")

    async def first() -> Any:
        return await stream.__anext__()

    receiving = asyncio.create_task(first())
    # The subscription starts listening at some point; keep the events coming until then.
    n = 0
    while not receiving.done() and n < 200:
        n += 2
        await platform.execute(register(n, "340103"), CommandContext())
        await platform.execute(register(n + 1, "640422"), CommandContext())
        await asyncio.wait([receiving], timeout=0.05)
    result = await asyncio.wait_for(receiving, 5)
    event = result.data["events"]
    assert (event["region"], event["actor"]) == ("640422", "system")
    assert event["type"] == "registry.InstitutionRegistered"
    await stream.aclose()


async def test_subscribing_above_ones_scope_is_forbidden(platform: Platform) -> None:
    viewer = Principal.of("city-viewer", Role.VIEWER, "640400", platform.regions)
    stream = await build_schema().subscribe(
        SUBSCRIBE, variable_values={"r": "640000"}, context_value=GatewayContext(platform, viewer)
    )
    result = await stream.__anext__()  # type: ignore[union-attr]
    assert result.errors and result.errors[0].extensions["code"] == "FORBIDDEN"


@pytest.mark.parametrize("with_token", [True, False])
def test_websocket_subscription_end_to_end(tmp_path: Path, with_token: bool) -> None:
    suite = Suite(tmp_path, tmp_path / "data", "--no-demo")
    suite.start()
    try:
        asyncio.run(_over_websocket(suite, with_token))
    finally:
        suite.kill()


async def _over_websocket(suite: Suite, with_token: bool) -> None:
    url = suite.base_url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        auth = {"Authorization": suite.client.headers["Authorization"]} if with_token else {}
        await ws.send(json.dumps({"type": "connection_init", "payload": auth}))
        if not with_token:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
            return
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"
        subscribe = {"query": SUBSCRIBE, "variables": {"r": "640400"}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        receiving = asyncio.create_task(ws.recv())
        # Register (in 庐阳, then in 固原) until the subscription has started and reports.
        n = 0
        while not receiving.done() and n < 100:
            n += 1
            for region in ("340103", "640402"):
                code = valid_credit_code(region, f"MA{n:07d}")
                variables = {
                    "input": registration(id=f"ws-{region}-{n}", region=region, creditCode=code)
                }
                await asyncio.to_thread(suite.data, REGISTER, variables)
            await asyncio.wait([receiving], timeout=0.1)
        message = json.loads(await asyncio.wait_for(receiving, 5))
        assert message["type"] == "next"
        assert message["payload"]["data"]["events"]["region"] == "640402"
