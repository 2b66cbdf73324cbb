"""ReadStore contract: every adapter must pass all of it."""

from __future__ import annotations

import asyncio

import pytest

from services.common.errors import BadInput
from services.common.ports import (
    AnyOf,
    Batch,
    CollectionSpec,
    Contains,
    Eq,
    In,
    Increment,
    NotIn,
    Prefix,
    Put,
    Query,
    Range,
    ReadStore,
)

DOCS = CollectionSpec("institutions", indexes=("region", "status", "name", "rank"))
COUNTERS = CollectionSpec("region_stats")


@pytest.fixture
async def store(read_store: ReadStore) -> ReadStore:
    await read_store.ensure([DOCS, COUNTERS])
    return read_store


def put(key: str, version: int, **doc: object) -> Put:
    return Put("institutions", key, doc, version)


async def test_put_then_get(store: ReadStore) -> None:
    await store.commit(Batch("p", "registry", 1, puts=[put("a", 1, name="甲", region="640402")]))
    doc = await store.get("institutions", "a")
    assert doc == {"id": "a", "version": 1, "name": "甲", "region": "640402"}
    assert await store.get("institutions", "missing") is None


async def test_put_is_guarded_by_version(store: ReadStore) -> None:
    await store.commit(Batch("p", "registry", 2, puts=[put("a", 2, name="new")]))
    await store.commit(Batch("p", "registry", 3, puts=[put("a", 1, name="old")]))
    await store.commit(Batch("p", "registry", 4, puts=[put("a", 2, name="same version")]))
    doc = await store.get("institutions", "a")
    assert doc is not None and (doc["name"], doc["version"]) == ("new", 2)

    await store.commit(Batch("p", "registry", 5, puts=[put("a", 3, name="newer")]))
    doc = await store.get("institutions", "a")
    assert doc is not None and doc["name"] == "newer"


async def test_latest_put_in_a_batch_wins(store: ReadStore) -> None:
    puts = [put("a", 1, name="one"), put("a", 3, name="three"), put("a", 2, name="two")]
    await store.commit(Batch("p", "registry", 3, puts=puts))
    doc = await store.get("institutions", "a")
    assert doc is not None and doc["name"] == "three"


async def test_increments_create_and_add(store: ReadStore) -> None:
    incs = [
        Increment("region_stats", "640402", {"active": 1, "subject": 1}, 1),
        Increment("region_stats", "640402", {"active": 1}, 2),
        Increment("region_stats", "640400", {"active": 2}, 2),
    ]
    await store.commit(Batch("p", "registry", 2, increments=incs))
    assert await store.get("region_stats", "640402") == {
        "id": "640402",
        "version": 0,
        "active": 2,
        "subject": 1,
    }
    city = await store.get("region_stats", "640400")
    assert city is not None and city["active"] == 2


async def test_redelivered_increments_count_once(store: ReadStore) -> None:
    """Guarantee 5: an event's effect is applied exactly once, whatever is redelivered."""
    first = [Increment("region_stats", "640402", {"active": 1}, p) for p in (1, 2, 3)]
    await store.commit(Batch("p", "registry", 3, increments=first))
    await store.commit(Batch("p", "registry", 3, increments=first))
    overlap = [Increment("region_stats", "640402", {"active": 1}, p) for p in (2, 3, 4, 5)]
    await store.commit(Batch("p", "registry", 5, increments=overlap))

    doc = await store.get("region_stats", "640402")
    assert doc is not None and doc["active"] == 5
    assert await store.position("p", "registry") == 5


async def test_positions_are_per_projection_and_source(store: ReadStore) -> None:
    inc = Increment("region_stats", "640402", {"active": 1}, 7)
    await store.commit(Batch("p", "registry", 7, increments=[inc]))
    await store.commit(Batch("p", "finance", 7, increments=[inc]))
    await store.commit(Batch("q", "registry", 7, increments=[inc]))
    doc = await store.get("region_stats", "640402")
    assert doc is not None and doc["active"] == 3
    assert await store.position("p", "registry") == 7
    assert await store.position("p", "inspections") == 0


async def test_position_never_moves_back(store: ReadStore) -> None:
    await store.commit(Batch("p", "registry", 9))
    await store.commit(Batch("p", "registry", 4))
    assert await store.position("p", "registry") == 9


async def test_reset_drops_documents_and_positions(store: ReadStore) -> None:
    await store.commit(
        Batch(
            "p",
            "registry",
            3,
            puts=[put("a", 1, name="x")],
            increments=[Increment("region_stats", "640402", {"active": 1}, 3)],
        )
    )
    await store.reset("p", ["institutions", "region_stats"])
    assert await store.get("institutions", "a") is None
    assert await store.get("region_stats", "640402") is None
    assert await store.position("p", "registry") == 0
    # After a reset the same increments count again: that is what a rebuild needs.
    await store.commit(
        Batch("p", "registry", 3, increments=[Increment("region_stats", "640402", {"n": 1}, 3)])
    )
    assert (await store.get("region_stats", "640402") or {}).get("n") == 1


async def _seed(store: ReadStore) -> None:
    regions = ["640402", "640422", "640402", "120101", "640423", "340103", "640402"]
    puts = [
        put(
            f"i{n:02d}",
            1,
            name=f"机构{n}号" if n % 2 else f"培训学校{n}",
            region=region,
            status="APPROVED" if n % 3 else "PENDING",
            rank=10 - n,
        )
        for n, region in enumerate(regions)
    ]
    await store.commit(Batch("p", "registry", 1, puts=puts))


async def _ids(store: ReadStore, query: Query) -> list[str]:
    return [doc["id"] for doc in (await store.find(query)).items]


async def test_find_filters(store: ReadStore) -> None:
    await _seed(store)
    q = Query("institutions", first=50)
    assert await _ids(store, Query("institutions", (Prefix("region", "6404"),), first=50)) == [
        "i00",
        "i01",
        "i02",
        "i04",
        "i06",
    ]
    assert await _ids(store, Query("institutions", (Eq("status", "PENDING"),), first=50)) == [
        "i00",
        "i03",
        "i06",
    ]
    assert await _ids(
        store, Query("institutions", (In("region", ("120101", "340103")),), first=50)
    ) == ["i03", "i05"]
    assert await _ids(
        store, Query("institutions", (NotIn("region", ("120101", "340103")),), first=50)
    ) == ["i00", "i01", "i02", "i04", "i06"]
    assert await _ids(store, Query("institutions", (NotIn("region", ()),), first=50)) == [
        f"i{n:02d}" for n in range(7)
    ]
    assert await _ids(store, Query("institutions", (Contains("name", "培训"),), first=50)) == [
        "i00",
        "i02",
        "i04",
        "i06",
    ]
    assert await _ids(store, Query("institutions", (Range("rank", gte=6, lt=9),), first=50)) == [
        "i02",
        "i03",
        "i04",
    ]
    either = AnyOf((Eq("region", "340103"), Contains("name", "机构1")))
    assert await _ids(store, Query("institutions", (either,), first=50)) == ["i01", "i05"]
    page = await store.find(q)
    assert page.total == 7 and not page.has_next


async def test_pagination_is_stable_and_complete(store: ReadStore) -> None:
    await _seed(store)
    seen: list[str] = []
    after = None
    while True:
        page = await store.find(Query("institutions", first=3, after=after))
        assert page.total == 7
        seen += [doc["id"] for doc in page.items]
        if not page.has_next:
            break
        after = page.end_cursor
    assert seen == [f"i{n:02d}" for n in range(7)]


async def test_pagination_by_another_field_with_filters(store: ReadStore) -> None:
    await _seed(store)
    first = await store.find(
        Query("institutions", (Prefix("region", "6404"),), order_by="rank", first=2)
    )
    assert [d["rank"] for d in first.items] == [4, 6]
    assert first.has_next and first.total == 5
    # A document inserted before the cursor does not shift what comes next.
    await store.commit(Batch("p", "registry", 2, puts=[put("i99", 1, region="640402", rank=0)]))
    second = await store.find(
        Query(
            "institutions",
            (Prefix("region", "6404"),),
            order_by="rank",
            first=10,
            after=first.end_cursor,
        )
    )
    assert [d["rank"] for d in second.items] == [8, 9, 10]
    assert not second.has_next


async def test_a_forged_cursor_is_bad_input(store: ReadStore) -> None:
    with pytest.raises(BadInput) as err:
        await store.find(Query("institutions", after="not-a-cursor"))
    assert err.value.field == "after"


async def test_get_many_and_dump(store: ReadStore) -> None:
    await _seed(store)
    found = await store.get_many("institutions", ["i01", "i05", "nope", "i01"])
    assert sorted(found) == ["i01", "i05"]
    dumped = await store.dump("institutions")
    assert [d["id"] for d in dumped] == [f"i{n:02d}" for n in range(7)]
    assert all(set(d) == {"id", "version", "name", "region", "status", "rank"} for d in dumped)


async def test_a_newer_put_replaces_the_whole_document(store: ReadStore) -> None:
    await store.commit(Batch("p", "registry", 1, puts=[put("a", 1, name="x", region="640402")]))
    await store.commit(Batch("p", "registry", 2, puts=[put("a", 2, name="y")]))
    assert await store.get("institutions", "a") == {"id": "a", "version": 2, "name": "y"}


async def test_increments_keep_the_fields_of_a_put(store: ReadStore) -> None:
    await store.commit(Batch("p", "registry", 1, puts=[put("a", 1, name="x")]))
    inc = Increment("institutions", "a", {"branches": 2}, 2)
    await store.commit(Batch("p", "registry", 2, increments=[inc]))
    await store.commit(Batch("p", "registry", 2, increments=[inc]))
    assert await store.get("institutions", "a") == {
        "id": "a",
        "version": 1,
        "name": "x",
        "branches": 2,
    }


async def test_a_put_does_not_forget_which_increments_were_applied(store: ReadStore) -> None:
    inc = Increment("institutions", "a", {"branches": 1}, 1)
    await store.commit(Batch("p", "registry", 1, increments=[inc]))
    await store.commit(Batch("p", "registry", 2, puts=[put("a", 1, name="x")]))
    await store.commit(Batch("p", "registry", 2, increments=[inc]))
    assert await store.get("institutions", "a") == {"id": "a", "version": 1, "name": "x"}


async def test_concurrent_batches_on_one_document_all_count(store: ReadStore) -> None:
    batches = [
        Batch(f"p{n}", "registry", 1, increments=[Increment("region_stats", "640402", {"n": 1}, 1)])
        for n in range(8)
    ]
    await asyncio.gather(*(store.commit(b) for b in batches))
    assert (await store.get("region_stats", "640402") or {}).get("n") == 8
