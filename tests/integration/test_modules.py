"""A service is a module: a throw-away second one plugs in at the two named places.

``notes`` below is a whole service in a few lines (an event, an aggregate, a command and
its handler, a projection, settings, a GraphQL slice). It is given to the composition
root and the composer as arguments, exactly as a line in ``MODULES`` and ``SLICES``
would give it, and nothing else is edited: the tests show it served over GraphQL and
HTTP, projected into region roll-ups and the audit trail, and its commands routed to it,
embedded and distributed, with the registry working beside it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import singledispatchmethod
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry
from fastapi import FastAPI
from pydantic import SecretStr
from strawberry.types import Info

from services.bootstrap import (
    MODULES,
    Commands,
    Platform,
    build_platform,
    build_projections,
    embedded_app,
    service_app,
    service_settings,
    topology,
)
from services.common.aggregate import Aggregate, DomainEvent, EventTypes
from services.common.application import Application
from services.common.auth import Role, TokenVerifier
from services.common.commands import Call, Command, CommandTable, Route
from services.common.config import ServiceSettings, Settings
from services.common.errors import BadInput
from services.common.module import ServiceModule
from services.common.ports import CollectionSpec, Query
from services.common.projection import Projection, ProjectionUnit
from services.common.regions import RegionTree
from services.common.rollups import REGION_STATS
from services.gateway.app import create_app
from services.gateway.context import GatewayContext
from services.gateway.kit import Extensions, RegionStats, Slice, ctx
from services.gateway.remote import DistributedBackend
from services.gateway.schema import SLICES, compose
from tests.conftest import SECRET, GraphQL, bearer
from tests.factories import registration
from tests.integration.test_registry_graphql import REGISTER

# --- the throw-away service -----------------------------------------------------------


class NoteWritten(DomainEvent):
    TYPE = "notes.NoteWritten"
    text: str
    region: str
    institution_id: str | None


class Note(Aggregate):
    @singledispatchmethod
    def when(self, event: DomainEvent, at: Any) -> None:
        super().when(event, at)

    @when.register
    def _(self, event: NoteWritten, at: Any) -> None:
        self.region = event.region

    def write(self, text: str, region: str, institution: str | None, at: Any) -> None:
        if not text.strip():
            raise BadInput("a note needs text", field="text")
        self._record(NoteWritten(text=text, region=region, institution_id=institution), at)


@dataclass(frozen=True, kw_only=True)
class WriteNote(Command):
    text: str
    region: str
    institution_id: str | None = None


async def write(cmd: WriteNote, o: Call[Any]) -> Any:
    return lambda note: note.write(cmd.text, cmd.region, cmd.institution_id, o.at)


NOTES_COLLECTION = CollectionSpec("notes", indexes=("region",))
TABLE = CommandTable("notes", NOTES_COLLECTION.name, (Route(WriteNote, write, creates=True),))


class NoteSettings(ServiceSettings):
    notes_url: str = "http://127.0.0.1:8009"

    @property
    def url(self) -> str:
        return self.notes_url


class NotesProjection(Projection):
    name = "notes.notes"
    sources = ("notes",)
    collections = (NOTES_COLLECTION, REGION_STATS)

    def __init__(self, regions: RegionTree) -> None:
        self.regions = regions

    async def apply(self, event: Any, unit: ProjectionUnit) -> None:
        unit.put(NOTES_COLLECTION.name, event.stream, {**event.data}, event.version)
        lineage = self.regions.lineage(event.data["region"])
        unit.contribute({}, {(REGION_STATS.name, r.code, "notes_written"): 1 for r in lineage})


NOTES: ServiceModule[NoteSettings] = ServiceModule(
    name="notes",
    description="Notes about anything, to prove the module shape.",
    events=EventTypes(NoteWritten),
    settings=NoteSettings,
    commands=(TABLE,),
    application=lambda w: Application(w.store, EventTypes(NoteWritten), Note, TABLE, **w.options),
    projections=lambda regions, _: [NotesProjection(regions)],
    port=8009,
)

extensions = Extensions()


@extensions.field(RegionStats)
async def notes(root: RegionStats, info: Info[GatewayContext, None]) -> int:
    return int((await root.counters(info)).get("notes_written", 0))


@extensions.field("Institution", description="Notes about this institution.")
async def note_count(root: Any, info: Info[GatewayContext, None]) -> int:
    page = await ctx(info).backend.read_store.find(Query(NOTES_COLLECTION.name, first=100))
    return sum(1 for doc in page.items if doc.get("institution_id") == str(root.id))


@strawberry.type
class NotesMutation:
    @strawberry.mutation
    async def write_note(
        self,
        info: Info[GatewayContext, None],
        text: str,
        region: str,
        institution_id: str | None = None,
    ) -> strawberry.ID:
        cmd = WriteNote(text=text, region=region, institution_id=institution_id)
        outcome = await ctx(info).backend.execute(cmd, ctx(info).command())
        assert await ctx(info).backend.reflects(outcome)
        return strawberry.ID(outcome.aggregate.id)


NOTES_SLICE = Slice("notes", mutation=NotesMutation, extensions=extensions)

WITH_NOTES: Sequence[ServiceModule[Any]] = (*MODULES, NOTES)

# --- the tests ------------------------------------------------------------------------


@pytest.fixture
async def noted(settings: Settings) -> AsyncIterator[Platform]:
    running = build_platform(settings, WITH_NOTES)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def gql_notes(noted: Platform) -> AsyncIterator[GraphQL]:
    schema = compose([*SLICES, NOTES_SLICE])
    app = embedded_app(noted, TokenVerifier(noted.regions, secret=SECRET), schema=schema)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": bearer()},
    ) as client:
        yield GraphQL(client)


NOTE = """mutation($text: String!, $region: String!, $inst: String) {
  writeNote(text: $text, region: $region, institutionId: $inst)
}"""
ROLLUP = """{ region(code: "640400") { stats { notes institutions { active } } } }"""


async def test_a_new_module_is_served_projected_and_routed_embedded(
    gql_notes: GraphQL, noted: Platform
) -> None:
    await gql_notes.data(REGISTER, {"input": registration(id="yz-001")})
    await gql_notes.data(NOTE, {"text": "消防通道已清理", "region": "640402", "inst": "yz-001"})
    await gql_notes.data(NOTE, {"text": "夜查无异常", "region": "640422"})

    # Its events went to its own store, its projection rolled them up to the city.
    assert await noted.event_stores["notes"].max_position() == 2
    stats = (await gql_notes.data(ROLLUP))["region"]["stats"]
    assert stats == {"notes": 2, "institutions": {"active": 1}}
    # The audit trail follows it, and it adds a field to the registry's type by name.
    trail = await gql_notes.data(
        '{ institution(id: "yz-001") { noteCount events { edges { node { type } } } } }'
    )
    types = [e["node"]["type"] for e in trail["institution"]["events"]["edges"]]
    assert types == ["registry.InstitutionRegistered", "notes.NoteWritten"]
    assert trail["institution"]["noteCount"] == 1
    # Its refusals are the platform's: field-level, nothing written.
    refused = await gql_notes(NOTE, {"text": " ", "region": "640402"})
    assert refused["errors"][0]["extensions"] == {"code": "BAD_INPUT", "field": "text"}
    assert await noted.event_stores["notes"].max_position() == 2


async def test_a_new_module_has_an_http_api_derived_from_its_command_table(
    noted: Platform,
) -> None:
    app = embedded_app(noted, TokenVerifier(noted.regions, secret=SECRET))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        spec = (await client.get("/api/notes/openapi.json")).json()
        assert set(spec["paths"]) == {"/v1/notes"}
        viewer = {"Authorization": bearer(Role.VIEWER, "640400")}
        body = {"text": "hello", "region": "640402"}
        refused = await client.post("/api/notes/v1/notes", json=body, headers=viewer)
        assert refused.status_code == 403
        operator = {"Authorization": bearer(Role.OPERATOR, "640400")}
        written = await client.post("/api/notes/v1/notes", json=body, headers=operator)
        assert written.status_code == 201, written.text
        assert written.json()["version"] == 1


async def test_a_new_module_is_routed_to_its_own_service_when_distributed(
    settings: Settings, tmp_path: Path
) -> None:
    # `serve notes` as an ASGI app, and a distributed gateway that knows only the modules.
    verifier = TokenVerifier(RegionTree.load(), secret=SECRET)
    own = service_settings(WITH_NOTES)
    signed = settings.model_copy(update={"jwt_secret": SecretStr(SECRET)})
    notes_service = service_app(signed, NOTES, own["notes"])
    transport = httpx.ASGITransport(app=notes_service)
    clients = {m.name: m.client(own[m.name].url, transport=transport) for m in WITH_NOTES}
    reads = build_platform(settings, WITH_NOTES)  # its read store and projections
    backend = DistributedBackend(
        reads.regions, reads.read_store, Commands(WITH_NOTES, clients), own
    )
    gateway = create_app(backend, verifier, schema=compose([*SLICES, NOTES_SLICE]))
    served: Any = notes_service
    while not isinstance(served, FastAPI):  # under its middleware (metrics, body limit)
        served = served.app
    async with served.router.lifespan_context(served):
        await reads.start()
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=gateway),
                base_url="http://gw",
                headers={"Authorization": bearer(Role.OPERATOR, "640400")},
            ) as client:
                gql = GraphQL(client)
                await gql.data(NOTE, {"text": "远端", "region": "640402"})
        finally:
            await reads.stop()

    assert [p.name for p in build_projections(settings, RegionTree.load(), WITH_NOTES)][-2:] == [
        "notes.notes",
        "audit.institution_events",
    ]
    assert topology(settings, WITH_NOTES).event_topics[-1] == "shuangjian.notes.events"
