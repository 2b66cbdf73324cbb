"""``shuangjian bench-load``: a reproducible data set through the command handlers, with
every read model up to date when it says so."""

from __future__ import annotations

import asyncio
from pathlib import Path

from services.bootstrap import build_platform
from services.common.config import Settings
from services.common.ports import Query
from tests.e2e.conftest import run_cli


async def counts(data: Path) -> tuple[int, int, dict[str, int]]:
    platform = build_platform(Settings(data_dir=data, _env_file=None))  # type: ignore[call-arg]
    await platform.start()
    try:
        store = platform.read_store
        institutions = (await store.find(Query("institutions", first=0))).total
        orders = (await store.find(Query("orders", first=0))).total
        province = await store.get("region_stats", "370000") or {}
        return institutions, orders, province
    finally:
        await platform.stop()


def test_bench_load_fills_an_empty_data_dir_reproducibly(tmp_path: Path) -> None:
    args = ["bench-load", "--institutions", "200", "--orders", "30", "--seed", "7"]
    first = run_cli(*args, "--data-dir", str(tmp_path / "a"), cwd=tmp_path, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Loaded 200 institutions" in first.stdout and "read models up to date" in first.stdout
    institutions, orders, province = asyncio.run(counts(tmp_path / "a"))
    assert (institutions, orders) == (200, 30)
    assert province["institutions_active"] == 200  # all 山东, none closed
    assert province["finance_orders"] == 30

    again = run_cli(*args, "--data-dir", str(tmp_path / "a"), cwd=tmp_path)
    assert again.returncode == 2 and "holds events already" in again.stderr

    # The same seed, the same data: another data dir ends with the same roll-ups.
    second = run_cli(*args, "--data-dir", str(tmp_path / "b"), cwd=tmp_path, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert asyncio.run(counts(tmp_path / "b"))[2] == province
