"""``shuangjian bench-load``: a reproducible data set written as events, with every read
model up to date when it says so, answering through GraphQL."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from services.bootstrap import build_platform, build_projections
from services.common.auth import Principal, Role
from services.common.config import Settings
from services.common.envelope import Envelope
from services.common.errors import ConcurrencyConflict, Conflict
from services.common.projection import collections_of
from services.common.regions import RegionTree
from services.common.sqlite import SQLiteEventStore
from services.common.timeutil import SHANGHAI
from services.gateway.context import GatewayContext
from services.gateway.schema import build_schema
from services.loadgen import AS_OF, Plan, districts_of
from tests.e2e.conftest import run_cli

FIGURES = """{
  region(code: "370000") {
    stats {
      institutions { approved pending }
      finance { supervisedAccounts orders riskYellow }
    }
  }
  institutions(filter: { region: "370000" }, first: 1) { totalCount }
}"""
ARGS = ("bench-load", "--institutions", "300", "--orders", "40", "--seed", "7")


def settings(data: Path) -> Settings:
    return Settings(data_dir=data, _env_file=None)  # type: ignore[call-arg]


async def figures(data: Path) -> dict[str, Any]:
    """What GraphQL answers over the data dir, the platform started as ``up`` starts it."""
    platform = build_platform(settings(data))
    await platform.start()
    try:
        viewer = Principal.of("t", Role.VIEWER, None, platform.regions)
        result = await build_schema().execute(
            FIGURES, context_value=GatewayContext(platform, viewer)
        )
        assert result.errors is None, result.errors
        assert result.data is not None
        return result.data
    finally:
        await platform.stop()


async def read_models(data: Path) -> dict[str, list[dict[str, Any]]]:
    platform = build_platform(settings(data))
    await platform.read_store.ensure([])
    specs = collections_of(build_projections(platform.settings, platform.regions))
    try:
        await platform.read_store.ensure(specs)
        return {spec.name: await platform.read_store.dump(spec.name) for spec in specs}
    finally:
        await platform.stop()


def events(data: Path, service: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(data / f"{service}.events.db")
    try:
        return conn.execute("SELECT position, id, stream, version, body FROM events").fetchall()
    finally:
        conn.close()


def still_yellow(institutions: int) -> int:
    """Cluster institutions whose first complaint is within 30 days of ``AS_OF``."""
    plan = Plan(institutions, 0, districts_of(RegionTree.load(), "370000"), seed=7)
    count = 0
    for n in range(institutions):
        facts, _ = plan.institution(n)
        if facts.cluster and (AS_OF - plan.cluster_days(facts)[0].date()).days < 30:
            count += 1
    return count


def test_bench_load_fills_an_empty_data_dir_reproducibly(tmp_path: Path) -> None:
    first = run_cli(*ARGS, "--data-dir", str(tmp_path / "a"), cwd=tmp_path, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    out = " ".join(first.stdout.split())
    assert "Loaded 300 institutions" in out and "40 orders" in out, out
    assert "read models up to date" in out
    accounts = int(out.split("institutions, ")[1].split(" accounts")[0])

    shown = asyncio.run(figures(tmp_path / "a"))
    stats = shown["region"]["stats"]
    assert shown["institutions"]["totalCount"] == 300
    assert stats["institutions"]["approved"] + stats["institutions"]["pending"] <= 300
    assert stats["institutions"]["approved"] > 150  # three in four
    assert stats["finance"]["orders"] == 40
    assert stats["finance"]["supervisedAccounts"] == accounts > 0
    assert stats["finance"]["riskYellow"] == still_yellow(300)

    again = run_cli(*ARGS, "--data-dir", str(tmp_path / "a"), cwd=tmp_path)
    assert again.returncode == 2 and "--data-dir:" in again.stderr
    assert "holds events already" in again.stderr

    # The same seed, the same events (ids too) and the same read models.
    second = run_cli(*ARGS, "--data-dir", str(tmp_path / "b"), cwd=tmp_path, timeout=120)
    assert second.returncode == 0, second.stdout + second.stderr
    for service in ("registry", "inspections", "finance"):
        assert events(tmp_path / "a", service) == events(tmp_path / "b", service)
    assert asyncio.run(read_models(tmp_path / "a")) == asyncio.run(read_models(tmp_path / "b"))


def test_bench_load_refuses_bad_arguments_by_field(tmp_path: Path) -> None:
    data = ("--data-dir", str(tmp_path / "d"))
    cases = {
        ("--province", "999999"): "--province:",
        ("--province", "370200"): "--province: 370200 is not a province",
        ("--orders", "5", "--finance-events", "50"): "--finance-events:",
        ("--institutions", "2", "--orders", "5"): "--orders: no institution took",
    }
    for extra, message in cases.items():
        args = ["bench-load", *(() if "--institutions" in extra else ("--institutions", "5"))]
        refused = run_cli(*args, *extra, *data, cwd=tmp_path)
        assert refused.returncode == 2, (extra, refused.stdout, refused.stderr)
        assert message in " ".join(refused.stderr.split()), (extra, refused.stderr)
        assert "Traceback" not in refused.stderr
    assert not any((tmp_path / "d").glob("*.events.db"))  # nothing written


def envelope(stream: str, version: int) -> Envelope:
    at = datetime(2025, 3, 1, 9, tzinfo=SHANGHAI)
    return Envelope(
        id=uuid4(),
        type="registry.InstitutionSuspended",
        stream=stream,
        version=version,
        region="370102",
        occurred_at=at,
        recorded_at=at,
        data={"reason": "消防隐患"},
    )


def test_append_batch_checks_each_commit_and_never_skips_a_waiting_event(tmp_path: Path) -> None:
    async def run() -> None:
        store = SQLiteEventStore(tmp_path / "registry.events.db")
        await store.start()
        try:
            waiting = await store.append([envelope("a", 1)], 0)
            batch = [[envelope("a", 2), envelope("a", 3)], [envelope("b", 1)], [envelope("a", 4)]]
            assert await store.append_batch(batch, published=True) == 4
            # An event was waiting for the relay: the batch is not marked as published.
            assert [e.id for e in await store.unpublished(1)] == [waiting[0].id]

            with pytest.raises(ConcurrencyConflict):  # a gap: all of the batch or none
                await store.append_batch([[envelope("c", 1)], [envelope("b", 3)]])
            assert await store.max_position() == 5
            with pytest.raises(Conflict):  # an id stored before
                await store.append_batch([[envelope("d", 1)], [batch[1][0]]])
            assert await store.read_stream("d") == []

            await store.mark_published(await store.unpublished(10))
            await store.append_batch([[envelope("e", 1)]], published=True)
            assert await store.unpublished() == []  # nothing was waiting: marked as sent
        finally:
            await store.close()

    asyncio.run(run())
