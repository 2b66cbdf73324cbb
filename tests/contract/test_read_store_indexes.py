"""ReadStore contract, derived indexes: ``Search`` on searched fields and exact totals.

What is indexed is the adapter's business (SQLite: FTS5 bigrams kept by triggers and
counters moved by each commit; MongoDB: a grams array); what is found and counted must be
exactly what a brute-force pass over the documents finds, whatever was written before.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.ports import (
    AnyOf,
    Batch,
    CollectionSpec,
    CountSpec,
    Eq,
    Filter,
    In,
    Prefix,
    Put,
    Query,
    ReadStore,
    Search,
    fold,
)

COUNTED = CountSpec("region", (2, 4, 6), ("status", "category"))
PLAIN = CollectionSpec("institutions", indexes=("region", "status", "credit_code"))
INDEXED = CollectionSpec("institutions", indexes=PLAIN.indexes, search=("name",), counts=COUNTED)

NAMES = {
    "a": "启明英语培训学校",
    "b": "Hello World, 英 语!",
    "c": "英",
    "d": "博学(银川)艺术中心 No.5",
    "e": "语英英语",
    "f": "STEM编程 stem",
}


@pytest.fixture
async def store(read_store: ReadStore) -> ReadStore:
    await read_store.ensure([INDEXED])
    return read_store


def put(key: str, version: int, **doc: Any) -> Put:
    return Put("institutions", key, doc, version)


async def _seed(store: ReadStore) -> None:
    puts = [
        put(key, 1, name=name, region="640402", status="A", credit_code=f"CODE{key.upper()}")
        for key, name in NAMES.items()
    ]
    await store.commit(Batch("p", "registry", 1, puts=puts))


async def _found(store: ReadStore, *filters: Filter | AnyOf) -> tuple[int, list[str]]:
    page = await store.find(Query("institutions", tuple(filters), first=100))
    return page.total, [doc["id"] for doc in page.items]


async def _search(store: ReadStore, text: str) -> list[str]:
    total, ids = await _found(store, Search("name", text))
    assert total == len(ids)
    return ids


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("英", ["a", "b", "c", "e"]),  # one character
        ("语", ["a", "b", "e"]),
        ("英语", ["a", "e"]),  # two characters, the usual Chinese query
        ("英语培训", ["a"]),
        ("英英语", ["e"]),  # overlapping repeats
        ("语英英语", ["e"]),  # the whole name
        ("启明英语培训学校!", []),  # longer than any name
        ("hello", ["b"]),  # Latin, either case
        ("WORLD,", ["b"]),  # punctuation is a character like any other
        ("d, 英 语", ["b"]),  # spaces too
        ("(银川)", ["d"]),
        ("no.5", ["d"]),
        ("stem", ["f"]),
        ("m编", ["f"]),
        ("5", ["d"]),
        ("训学校", ["a"]),
        ("学科", []),
    ],
)
async def test_search_finds_exactly_the_substrings(
    store: ReadStore, text: str, expected: list[str]
) -> None:
    await _seed(store)
    assert await _search(store, text) == expected


async def test_search_never_matches_across_a_gap(store: ReadStore) -> None:
    await _seed(store)
    # "英 语" and "英...英语" hold both characters, apart: only adjacent ones match.
    assert await _search(store, "英语") == ["a", "e"]
    assert await _search(store, "启英") == []
    assert await _search(store, "明培") == []


async def test_search_or_credit_code_uses_both(store: ReadStore) -> None:
    await _seed(store)
    either = AnyOf((Search("name", "英语"), Eq("credit_code", "CODED")))
    assert await _found(store, either) == (3, ["a", "d", "e"])
    by_code = AnyOf((Search("name", "CODEC"), Eq("credit_code", "CODEC")))
    assert await _found(store, by_code) == (1, ["c"])
    scoped = AnyOf((Search("name", "英"), Eq("credit_code", "CODED")))
    assert await _found(store, Prefix("region", "64"), Eq("status", "A"), scoped) == (
        5,
        ["a", "b", "c", "d", "e"],
    )
    assert await _found(store, Prefix("region", "12"), scoped) == (0, [])


async def test_search_follows_renames(store: ReadStore) -> None:
    await _seed(store)
    await store.commit(Batch("p", "registry", 2, puts=[put("a", 2, name="新的名字")]))
    assert await _search(store, "英语") == ["e"]
    assert await _search(store, "名字") == ["a"]
    # A put without the field leaves nothing behind in the index.
    await store.commit(Batch("p", "registry", 3, puts=[put("a", 3, region="640402")]))
    assert await _search(store, "名字") == []


async def test_search_pages_by_cursor(store: ReadStore) -> None:
    await _seed(store)
    first = await store.find(Query("institutions", (Search("name", "英"),), first=2))
    assert [d["id"] for d in first.items] == ["a", "b"] and first.total == 4
    rest = await store.find(
        Query("institutions", (Search("name", "英"),), first=2, after=first.end_cursor)
    )
    assert [d["id"] for d in rest.items] == ["c", "e"] and not rest.has_next


async def test_search_on_a_field_without_an_index_still_answers(store: ReadStore) -> None:
    await _seed(store)
    assert await _found(store, Search("credit_code", "codeb")) == (1, ["b"])


def _regions() -> list[str]:
    return ["640402", "640422", "640502", "120101", "640402", "120101"]


async def test_totals_follow_moves_status_changes_and_reset(store: ReadStore) -> None:
    regions = _regions()
    puts = [put(f"i{n}", 1, region=r, status="A", category="X") for n, r in enumerate(regions)]
    await store.commit(Batch("p", "registry", 1, puts=puts))
    assert (await _found(store, Prefix("region", "6404")))[0] == 3
    assert (await _found(store, Prefix("region", "64"), Prefix("region", "640402")))[0] == 2
    assert (await _found(store, Prefix("region", "6404"), Prefix("region", "12")))[0] == 0

    # i0 moves to Tianjin, i1 changes status, i3 loses its category.
    changes = [
        put("i0", 2, region="120101", status="A", category="X"),
        put("i1", 2, region="640422", status="B", category="X"),
        put("i3", 2, region="120101", status="A"),
    ]
    await store.commit(Batch("p", "registry", 2, puts=changes))
    assert (await _found(store, Prefix("region", "6404")))[0] == 2
    assert (await _found(store, Prefix("region", "12")))[0] == 3
    assert (await _found(store, Prefix("region", "6404"), Eq("status", "A")))[0] == 1
    assert (await _found(store, Eq("status", "B")))[0] == 1
    assert (await _found(store, Eq("category", None)))[0] == 1
    assert (await _found(store, Prefix("region", "12"), Eq("category", "X")))[0] == 2
    # An older version changes nothing, counters included.
    await store.commit(Batch("p", "registry", 3, puts=[put("i1", 1, region="120101")]))
    assert (await _found(store, Prefix("region", "12")))[0] == 3

    await store.reset("p", ["institutions"])
    assert (await _found(store))[0] == 0
    assert (await _found(store, Prefix("region", "12")))[0] == 0
    await store.commit(Batch("p", "registry", 1, puts=puts[:2]))
    assert (await _found(store, Prefix("region", "6404")))[0] == 2
    assert await _search(store, "x") == []


async def test_ensure_builds_indexes_from_documents_already_stored(
    read_store: ReadStore,
) -> None:
    """An upgraded data directory: documents written before the collection declared its
    search fields and counters are found and counted once ``ensure`` has run."""
    await read_store.ensure([PLAIN])
    puts = [
        put(f"i{n}", 1, name=f"英语学校{n}", region=r, status="A", category="X")
        for n, r in enumerate(_regions())
    ]
    await read_store.commit(Batch("p", "registry", 1, puts=puts))
    await read_store.ensure([INDEXED])
    await read_store.ensure([INDEXED])  # idempotent: nothing is counted twice
    assert (await _found(read_store, Prefix("region", "6404")))[0] == 3
    assert (await _found(read_store, Eq("status", "A")))[0] == 6
    total, ids = await _found(read_store, Search("name", "学校3"))
    assert (total, ids) == (1, ["i3"])
    await read_store.commit(Batch("p", "registry", 2, puts=[put("i3", 2, region="640502")]))
    assert (await _found(read_store, Prefix("region", "6405")))[0] == 2
    assert (await _found(read_store, Search("name", "学校3")))[0] == 0


# --- property: whatever is written, totals and searches equal a brute-force pass --------

DISTRICTS = ["640402", "640422", "640502", "120101"]
ALPHABET = "英语培训学 aB,"

write = st.tuples(
    st.integers(0, 9),  # document slot: repeats replace
    st.sampled_from(DISTRICTS),
    st.sampled_from(["A", "B", None]),
    st.sampled_from(["X", "Y"]),
    st.text(ALPHABET, max_size=6),
)
# Writes go in batches that end at "commit" (or "reset", or the end): a batch may change
# many documents, and one document more than once.
operations = st.lists(
    st.one_of(write, write, st.just("commit"), st.just("reset")), min_size=1, max_size=30
)
probes = st.lists(
    st.tuples(
        st.sampled_from(["", "64", "6404", "640402", "12", "1201"]),
        st.sampled_from([None, "A", "B"]),
        st.sampled_from([None, "X"]),
        st.text(ALPHABET, max_size=3),
    ),
    min_size=1,
    max_size=6,
)


def _matches(doc: dict[str, Any], probe: tuple[str, str | None, str | None, str]) -> bool:
    prefix, status, category, text = probe
    return (
        doc["region"].startswith(prefix)
        and (status is None or doc.get("status") == status)
        and (category is None or doc.get("category") == category)
        and (not text or fold(text) in fold(doc["name"]) or doc["code"] == text)
    )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=operations, asked=probes)
async def test_totals_and_searches_equal_a_recount(
    store: ReadStore, ops: list[Any], asked: list[Any]
) -> None:
    await store.reset("p", ["institutions"])
    model: dict[str, dict[str, Any]] = {}
    batch: list[Put] = []
    for version, op in enumerate([*ops, "commit"], start=1):
        if op in ("commit", "reset") and batch:
            await store.commit(Batch("p", "registry", version, puts=batch))
            batch = []
        if op == "reset":
            await store.reset("p", ["institutions"])
            model.clear()
        if isinstance(op, str):
            continue
        slot, region, status, category, name = op
        doc = {"region": region, "category": category, "name": name, "code": f"C{slot}"}
        if status is not None:
            doc["status"] = status
        batch.append(put(f"i{slot}", version, **doc))
        model[f"i{slot}"] = doc
    for probe in asked:
        prefix, status, category, text = probe
        filters: list[Filter | AnyOf] = [Prefix("region", prefix)] if prefix else []
        if status is not None:
            filters.append(Eq("status", status))
        if category is not None:
            filters.append(Eq("category", category))
        if text:
            filters.append(AnyOf((Search("name", text), Eq("code", text))))
        expected = sorted(key for key, doc in model.items() if _matches(doc, probe))
        total, ids = await _found(store, *filters)
        assert (total, ids) == (len(expected), expected), probe
        # Small pages: a common term is paged by walking the listing, a rare one by sorting
        # its matches; either way the pages add up to the same listing.
        paged: list[str] = []
        after = None
        while True:
            page = await store.find(Query("institutions", tuple(filters), first=2, after=after))
            assert page.total == len(expected), probe
            paged += [doc["id"] for doc in page.items]
            if not page.has_next:
                break
            after = page.end_cursor
        assert paged == expected, probe


async def test_a_search_alternative_beside_ids(store: ReadStore) -> None:
    await _seed(store)
    either = AnyOf((Search("name", "英语"), In("id", ("c",))))
    assert await _found(store, either) == (3, ["a", "c", "e"])
