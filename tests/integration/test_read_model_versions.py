"""Upgrading over read models an older projection built: they are rebuilt, never read stale.

A data dir is filled by "version 1" of the register's projection (simulated: the
month-end standings it did not write yet are left out), then the current version starts
on it. The embedded platform rebuilds the outdated read models at start, so last month's
standing is right; the distributed projector refuses to write into them and says to run
``shuangjian rebuild``.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from services.bootstrap import build_platform, build_read_store
from services.common.application import CommandContext
from services.common.auth import Principal, Role
from services.common.config import Settings
from services.common.projection import VERSIONS, collections_of, outdated
from services.common.timeutil import SHANGHAI
from services.gateway.context import GatewayContext
from services.gateway.schema import build_schema
from services.projector import OutdatedReadModels, Projector
from services.registry import projections as registry_projections
from services.registry.domain.commands import RegisterInstitution
from services.registry.projections import InstitutionsProjection
from tests.factories import valid_credit_code

NOW = datetime(2025, 4, 10, 10, tzinfo=SHANGHAI)
STANDING = """{ region(code: "640402") { history(from: "2025-03-01", to: "2025-03-01") {
  atMonthEnd { institutionsActive } } } }"""


async def fill(settings: Settings) -> None:
    platform = build_platform(settings, clock=lambda: NOW)
    await platform.start()
    try:
        for n in range(3):
            await platform.commands.handle(
                RegisterInstitution(
                    id=f"i{n}",
                    name=f"原州区培训机构{n}",
                    credit_code=valid_credit_code("640402", f"MA{n:07d}"),
                    region="640402",
                    category="NON_SUBJECT",
                    non_subject_kind="ARTS",
                    mode="OFFLINE",
                    occurred_at=datetime(2025, 3, 3 + n, 9, tzinfo=SHANGHAI),
                ),
                CommandContext(actor="test"),
            )
        await platform.settle()
    finally:
        await platform.stop()


async def standing(settings: Settings) -> int:
    platform = build_platform(settings, clock=lambda: NOW)
    await platform.start()
    try:
        who = Principal.of("t", Role.VIEWER, None, platform.regions)
        result = await build_schema().execute(STANDING, context_value=GatewayContext(platform, who))
        assert result.errors is None, result.errors
        assert result.data is not None
        month = result.data["region"]["history"][0]
        return int(month["atMonthEnd"]["institutionsActive"])
    finally:
        await platform.stop()


@pytest.fixture
def as_version_1(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The register's projection as it was before the month-end standings."""
    monkeypatch.setattr(InstitutionsProjection, "version", 1)
    monkeypatch.setattr(registry_projections, "standing_by_month", lambda doc: {})
    return monkeypatch


async def test_an_upgrade_rebuilds_what_the_older_version_built(
    settings: Settings, as_version_1: pytest.MonkeyPatch
) -> None:
    await fill(settings)
    assert await standing(settings) == 0  # version 1 kept no standings
    as_version_1.undo()

    # The current version: the outdated read models are rebuilt when the platform starts.
    assert await standing(settings) == 3
    reads = build_read_store(settings)
    await reads.ensure([VERSIONS])
    try:
        stamp = await reads.get(VERSIONS.name, InstitutionsProjection.name)
        assert stamp is not None and stamp["built"] == InstitutionsProjection.version
    finally:
        await reads.close()


async def test_the_distributed_projector_refuses_outdated_read_models(
    settings: Settings, as_version_1: pytest.MonkeyPatch
) -> None:
    await fill(settings)
    as_version_1.undo()
    platform = build_platform(settings, clock=lambda: NOW)
    reads = platform.read_store
    try:
        projections = platform.runner.projections
        await reads.ensure(collections_of(projections))
        assert [p.name for p in await outdated(reads, projections)] == [InstitutionsProjection.name]

        async def park(letter: object) -> None:
            raise AssertionError("nothing is applied")

        with pytest.raises(OutdatedReadModels, match="shuangjian rebuild"):
            await Projector(reads, projections, park).prepare()
    finally:
        await reads.close()
