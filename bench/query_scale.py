"""Institution queries as the register grows (issue 17): 10,000 → 100,000 → 1,000,000.

A ``SQLiteReadStore`` is filled with institution documents shaped as the registry
projection writes them (registered and approved), through ``commit`` batches of ``Put``s
inside ``bulk_load``, as a rebuild fills it (its indexes, search index and counters built
once at the end from the documents); ``--live`` sends every put through the indexes and
the triggers instead, as live projection does (several times slower). Names follow
``services.loadgen``: district + brand + tail + number, where the brand is one of
loadgen's ``WORDS`` for 2 % of institutions and otherwise two characters drawn from a pool
of 300 (so a 2-character term is as selective as a real one); districts are spread over
one province. The store is then closed and opened again (a restart:
``ensure`` gathers the planner statistics the bulk load left without).

Each case runs, in the same process and in turn, through

* **GraphQL**: the real schema (``schema.execute``, no HTTP) as a provincial viewer, so
  the scope prefix is among the filters as in production, and
* **raw sqlite3** (the floor): the same statements the store runs for that answer, on a
  plain ``sqlite3`` connection to the same file, the page's JSON decoded.

Cases: listings with ``totalCount`` at province, city and district, a city listing
filtered by status and category, the next page (``after``) of a district listing, name
search with a 2- and a 4-character term and by credit code, and the worst search there
is: a term in a third of all names (``培训``), whose ``totalCount`` must count them all.

``--sizes 10000,100000,1000000`` (default 10,000 and 100,000; a million takes about five
minutes to build), ``--repeats N`` per case and size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from bench import graphql_core_peer as peer
from bench._common import (
    Latency,
    Stopwatch,
    console,
    latency_table,
    print_machine,
    quiet_logs,
    verdict,
)
from services.common import sqlite as embedded
from services.common.auth import Principal, Role
from services.common.ports import AnyOf, Batch, Eq, Prefix, Put, Search
from services.common.regions import RegionLevel, RegionTree
from services.common.sqlite import SQLiteReadStore
from services.gateway.context import GatewayContext
from services.gateway.schema import build_schema
from services.loadgen import TAILS, WORDS, credit_code, districts_of
from services.registry.projections import INSTITUTIONS

PROVINCE = "640000"
POOL = "华安博成达德东方福光海和弘华嘉金锦京景康科蓝乐立联林龙隆美明鹏启庆荣瑞润森山上尚圣盛诗世"
POOL += "书思泰天通同万维伟文希祥新信星兴旭雅阳一亿益英永优宇育远跃云泽展长正志智中卓子佳慧"
POOL += "聪颖睿哲贤才俊杰豪晨曦朝霞春夏秋冬梅兰竹菊松柏桃李杏枫青红蓝紫金银铜铁木水火土石玉"
POOL += "珠宝贝童心梦想希望未来阳光彩虹星辰大海蓝天白云小树苗雏鹰飞翔腾跃奋进拓展启航领航"
POOL += "博雅致远弘毅笃行厚德载物求是创新卓越精诚勤思善学乐知明理格致诚意正心修齐治平"
BRANDED = 0.02  # share of names whose brand is one of loadgen's WORDS
BATCH = 2_000
CACHE_KIB = 512 * 1024  # the loading connection's page cache
DEFAULT_SIZES = (10_000, 100_000)
TARGET_SIZE = 1_000_000  # institutions (issue 17)
OURS = "GraphQL (strawberry, the gateway's schema)"
PEER = "bare graphql-core, same resolver"
FIELDS = (
    "totalCount edges { node { id name creditCode status } } pageInfo { endCursor hasNextPage }"
)


def institution(n: int, district: str, district_name: str, rng: random.Random) -> dict[str, Any]:
    """A registered and approved institution as ``projections.evolve`` leaves it."""
    kind = rng.choice(["SUBJECT", "SPORTS", "ARTS", "SCIENCE_TECH"])
    branded = rng.random() < BRANDED
    brand = rng.choice(WORDS) if branded else rng.choice(POOL) + rng.choice(POOL)
    at = f"20{rng.randint(10, 23)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T09:00:00+08:00"
    status = rng.choices(["APPROVED", "PENDING", "SUSPENDED", "REVOKED"], [80, 10, 5, 5])[0]
    category = "SUBJECT" if kind == "SUBJECT" else "NON_SUBJECT"
    return {
        "name": f"{district_name}{brand}{rng.choice(TAILS[kind])}{n}",
        "credit_code": credit_code(district, n),
        "region": district,
        "address": f"{district_name}人民路{rng.randint(1, 999)}号",
        "category": category,
        "non_subject_kind": None if kind == "SUBJECT" else kind,
        "mode": "OFFLINE" if rng.random() < 0.9 else "ONLINE",
        "non_profit": False,
        "converted_to_non_profit": False,
        "authority": "教育局" if kind == "SUBJECT" else "文化和旅游局",
        "license_no": f"教民{district}{n:08d}",
        "list_mark": rng.choices(["NONE", "WHITELIST", "BLACKLIST"], [90, 7, 3])[0],
        "list_reason": None,
        "warnings": [],
        "status_reason": None,
        "suspension_recommended": None,
        "registered_at": at,
        "closed_at": None,
        "timeline": [
            {"at": at, "field": "status", "value": "PENDING"},
            {"at": at, "field": "category", "value": category},
            {"at": at, "field": "status", "value": status},
        ],
        "status": status,
    }


@dataclass
class Register:
    """A filled store and what the cases ask of it."""

    path: Path
    size: int
    codes: list[str]  # credit codes of some institutions
    build_seconds: float


async def build(path: Path, size: int, regions: RegionTree, *, bulk: bool) -> Register:
    """Fill a read store. ``bulk``: inside ``bulk_load`` (as a rebuild does: indexes, the
    search index and the counters built once at the end, from the documents); otherwise
    every put goes through the indexes and the triggers, as live projection does."""
    rng = random.Random(size)
    districts = [(r.code, r.name) for r in districts_of(regions, PROVINCE)]
    store = SQLiteReadStore(path)
    await store.ensure([INSTITUTIONS])
    # Ten indexes written at random places: with SQLite's default 2 MB page cache the
    # writer waits on reads more than it computes.
    await store.db.write(lambda conn: conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}"))
    loading = store.bulk_load([INSTITUTIONS.name]) if bulk else contextlib.nullcontext()
    codes: list[str] = []
    with Stopwatch() as building:
        async with loading:
            for start in range(0, size, BATCH):
                puts = []
                for n in range(start, min(size, start + BATCH)):
                    code, name = districts[n % len(districts)]
                    doc = institution(n, code, name, rng)
                    key = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                    puts.append(Put(INSTITUTIONS.name, key, doc, 2))
                    if n % 997 == 0:
                        codes.append(doc["credit_code"])
                batch = Batch("institutions", "registry", start + len(puts), puts=puts)
                await store.commit(batch)
    await store.close()
    reopened = SQLiteReadStore(path)  # a restart: ensure() gathers planner statistics
    await reopened.ensure([INSTITUTIONS])
    await reopened.close()
    return Register(path, size, codes, building.seconds)


@dataclass(frozen=True)
class Case:
    name: str
    graphql: Callable[[int], str]
    """The GraphQL document of the i-th repetition."""
    sql: Callable[[sqlite3.Connection, int], list[tuple[str, list[Any]]]]
    """The statements the store runs for it (the count, then the page; a search counts
    while it plans, through the store's own planning functions, and returns the page)."""


def _cases(regions: RegionTree, register: Register, cursors: list[tuple[str, str]]) -> list[Case]:
    """``cursors``: (district, id of its 20th institution) to page on from."""
    cities = [r.code for r in regions.by_level(RegionLevel.CITY, PROVINCE)]
    districts = [r.code for r in districts_of(regions, PROVINCE)]
    two = [w for w in WORDS if len(w) == 2]
    four = [f"{w}{tail[:2]}" for w in two for tail in ("篮球", "钢琴", "美术", "编程")]
    page = "ORDER BY key LIMIT 21"
    cx = "SELECT coalesce(sum(n), 0) FROM cx_institutions WHERE len = ? AND prefix = ?"
    region = "substr(json_extract(doc, '$.region'), 1, {})"

    def listing(prefix: str) -> list[tuple[str, list[Any]]]:
        return [
            (cx, [len(prefix), prefix]),
            (
                f"SELECT key, doc FROM rm_institutions "
                f"WHERE {region.format(len(prefix))} = ? {page}",
                [prefix],
            ),
        ]

    def search(conn: sqlite3.Connection, text: str) -> list[tuple[str, list[Any]]]:
        # The filters ``views.institutions`` makes for a provincial viewer's search.
        filters = embedded._narrow_prefixes(
            [
                Prefix("region", "64"),
                AnyOf((Search("name", text), Eq("credit_code", text.upper()))),
            ],
            INSTITUTIONS.counts,
        )
        assert filters is not None
        planned = embedded._search_query(filters, INSTITUTIONS)
        assert planned is not None
        _, cond, params = embedded._by_search(conn, INSTITUTIONS, planned, 21, None)
        return [(f"SELECT key, doc FROM rm_institutions WHERE {cond} {page}", params)]

    def gql(filter: str = "", after: str | None = None) -> str:
        args = ["first: 20"]
        if filter:
            args.append(f"filter: {{ {filter} }}")
        if after:
            args.append(f'after: "{after}"')
        return f"{{ institutions({', '.join(args)}) {{ {FIELDS} }} }}"

    def city_filtered(conn: sqlite3.Connection, i: int) -> list[tuple[str, list[Any]]]:
        city = cities[i % len(cities)][:4]
        return [
            (
                cx + " AND f_status = json_quote(?) AND f_category = json_quote(?)",
                [4, city, "APPROVED", "SUBJECT"],
            ),
            (
                f"SELECT key, doc FROM rm_institutions WHERE {region.format(4)} = ? AND "
                "json_extract(doc, '$.status') = ? AND json_extract(doc, '$.category') = ? "
                f"{page}",
                [city, "APPROVED", "SUBJECT"],
            ),
        ]

    def next_page(conn: sqlite3.Connection, i: int) -> list[tuple[str, list[Any]]]:
        district, after = cursors[i % len(cursors)]
        return [
            (cx, [6, district]),
            (
                f"SELECT key, doc FROM rm_institutions WHERE {region.format(6)} = ? "
                f"AND key > ? {page}",
                [district, after],
            ),
        ]

    codes = register.codes
    return [
        Case("province listing + totalCount", lambda i: gql(), lambda conn, i: listing("64")),
        Case(
            "city listing + totalCount",
            lambda i: gql(f'region: "{cities[i % len(cities)]}"'),
            lambda conn, i: listing(cities[i % len(cities)][:4]),
        ),
        Case(
            "district listing + totalCount",
            lambda i: gql(f'region: "{districts[i % len(districts)]}"'),
            lambda conn, i: listing(districts[i % len(districts)]),
        ),
        Case(
            "city, APPROVED + SUBJECT",
            lambda i: gql(
                f'region: "{cities[i % len(cities)]}" status: APPROVED category: SUBJECT'
            ),
            city_filtered,
        ),
        Case(
            "district, next page (after)",
            lambda i: gql(f'region: "{cursors[i % len(cursors)][0]}"', _cursor(cursors, i)),
            next_page,
        ),
        Case(
            "search, 2 characters (a brand)",
            lambda i: gql(f'search: "{two[i % len(two)]}"'),
            lambda conn, i: search(conn, two[i % len(two)]),
        ),
        Case(
            "search, 4 characters",
            lambda i: gql(f'search: "{four[i % len(four)]}"'),
            lambda conn, i: search(conn, four[i % len(four)]),
        ),
        Case(
            "search, credit code",
            lambda i: gql(f'search: "{codes[i % len(codes)]}"'),
            lambda conn, i: search(conn, codes[i % len(codes)]),
        ),
        Case(
            "search 培训: in a third of all names",
            lambda i: gql('search: "培训"'),
            lambda conn, i: search(conn, "培训"),
        ),
    ]


def _cursor(cursors: list[tuple[str, str]], i: int) -> str:
    from services.common.ports import encode_cursor

    key = cursors[i % len(cursors)][1]
    return encode_cursor(key, key)


@dataclass
class Backend:
    """What the gateway's registry resolvers use of a platform: the read store, regions."""

    read_store: SQLiteReadStore
    regions: RegionTree

    @staticmethod
    def clock() -> float:
        return time.time()


async def measure(
    register: Register, regions: RegionTree, repeats: int
) -> tuple[list[Latency], dict[str, str]]:
    """Per case, a GraphQL row and a raw-sqlite3 row; also each statement's query plan."""
    store = SQLiteReadStore(register.path)
    await store.ensure([INSTITUTIONS])
    raw = sqlite3.connect(register.path)
    schema = build_schema()
    viewer = Principal.of("bench-province-viewer", Role.VIEWER, PROVINCE, regions)
    backend = Backend(store, regions)
    bare = peer.peer_schema(store, regions, viewer.scope)

    async def execute(query: str) -> dict[str, Any]:
        result = await schema.execute(query, context_value=GatewayContext(backend, viewer))  # type: ignore[arg-type]
        if result.errors:
            raise RuntimeError(f"GraphQL errors: {result.errors}")
        assert result.data is not None
        return result.data

    cursors = []
    for district in [r.code for r in districts_of(regions, PROVINCE)]:
        found = raw.execute(
            "SELECT key FROM rm_institutions WHERE substr(json_extract(doc, '$.region'), 1, 6) = ? "
            "ORDER BY key LIMIT 1 OFFSET 19",
            (district,),
        ).fetchall()
        if found:
            cursors.append((district, found[0][0]))
    rows: list[Latency] = []
    plans: dict[str, str] = {}
    try:
        for case in _cases(regions, register, cursors):
            await execute(case.graphql(0))  # warm up
            await peer.execute(bare, case.graphql(0))
            # Turns: each way answers the same repetitions, one after the other.
            via_graphql = await _timed(repeats, _asking(execute, case.graphql))
            via_core = await _timed(
                repeats, _asking(functools.partial(peer.execute, bare), case.graphql)
            )
            via_sqlite = await _timed(repeats, _raw_asking(raw, case.sql))
            floor = f"{case.name}: raw sqlite3"
            rows.append(Latency(floor, tuple(via_sqlite), sum(via_sqlite)))
            rows.append(Latency(f"{case.name}: {PEER}", tuple(via_core), sum(via_core), floor))
            rows.append(
                Latency(f"{case.name}: {OURS}", tuple(via_graphql), sum(via_graphql), floor)
            )
            plans[case.name] = " | ".join(
                "; ".join(r[3] for r in raw.execute(f"EXPLAIN QUERY PLAN {sql}", params))
                for sql, params in case.sql(raw, 0)
            )
    finally:
        raw.close()
        await store.close()
    return rows, plans


async def _raw(conn: sqlite3.Connection, statements: list[tuple[str, list[Any]]]) -> None:
    *counts, (page_sql, page_params) = statements
    for sql, params in counts:
        conn.execute(sql, params).fetchone()
    [json.loads(doc) for _, doc in conn.execute(page_sql, page_params)]


def _asking(
    execute: Callable[[str], Awaitable[dict[str, Any]]], query: Callable[[int], str]
) -> Callable[[int], Awaitable[dict[str, Any]]]:
    """Repetition ``i`` of a case, through one way of executing GraphQL."""
    return lambda i: execute(query(i))


def _raw_asking(
    raw: sqlite3.Connection,
    sql: Callable[[sqlite3.Connection, int], list[tuple[str, list[Any]]]],
) -> Callable[[int], Awaitable[None]]:
    """Repetition ``i`` of a case, as the raw SQL floor runs it."""
    return lambda i: _raw(raw, sql(raw, i))


async def _timed(repeats: int, run: Callable[[int], Awaitable[Any]]) -> list[float]:
    samples = []
    for i in range(repeats):
        start = time.perf_counter()
        await run(i)
        samples.append(time.perf_counter() - start)
    return samples


def growth_table(results: dict[int, list[Latency]]) -> Table:
    sizes = sorted(results)
    table = Table(
        title="Growth: p95 ms by register size: the gateway's GraphQL (in brackets: the same "
        "resolver on bare graphql-core / the raw sqlite3 floor)",
        title_justify="left",
    )
    table.add_column("case")
    for size in sizes:
        table.add_column(f"{size:,}", justify="right")
    table.add_column(f"{sizes[-1]:,} / {sizes[0]:,}", justify="right")
    table.add_column("≤ 20 ms", justify="center")
    graphql = {size: [r for r in rows if r.case.endswith(OURS)] for size, rows in results.items()}
    others = {size: {r.case: r for r in rows} for size, rows in results.items()}
    for index, row in enumerate(graphql[sizes[0]]):
        name = row.case.removesuffix(f": {OURS}")
        cells = []
        for size in sizes:
            ours = graphql[size][index]
            core = others[size][f"{name}: {PEER}"]
            floor = others[size][ours.baseline or ""]
            cells.append(f"{ours.ms(95):.2f} ({core.ms(95):.2f} / {floor.ms(95):.2f})")
        first, last = graphql[sizes[0]][index].ms(95), graphql[sizes[-1]][index].ms(95)
        table.add_row(name, *cells, f"{last / first:.1f}×", "yes" if last <= 20 else "NO")
    return table


async def main(
    sizes: tuple[int, ...] = DEFAULT_SIZES, repeats: int = 100, bulk: bool = True
) -> None:
    quiet_logs()
    regions = RegionTree.load()
    results: dict[int, list[Latency]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for size in sizes:
            register = await build(Path(tmp) / f"reads-{size}.db", size, regions, bulk=bulk)
            megabytes = register.path.stat().st_size / 2**20
            rows, plans = await measure(register, regions, repeats)
            results[size] = rows
            how = "in bulk_load" if bulk else "live, through indexes and triggers"
            console.print(
                f"query scale: {size:,} institutions written through SQLiteReadStore.commit "
                f"({how}) in {register.build_seconds:.1f} s "
                f"({size / register.build_seconds:,.0f}/s, "
                f"{megabytes:,.0f} MB); {repeats} requests per row",
                highlight=False,
            )
            console.print(latency_table(f"Institution queries, {size:,} institutions", rows))
            for name, plan in plans.items():
                console.print(f"  plan, {name}: {plan}", style="dim", highlight=False)
            register.path.unlink()
    console.print(growth_table(results))
    largest = max(results)
    worst = max((r for r in results[largest] if r.case.endswith(OURS)), key=lambda r: r.ms(95))
    at_target = largest >= TARGET_SIZE
    verdict(
        f"queries p95 ≤ 20 ms at {TARGET_SIZE:,} institutions",
        f"the slowest, {worst.case.removesuffix(f': {OURS}')}: {worst.ms(95):.1f} ms p95 "
        f"at {largest:,}",
        worst.ms(95) <= 20 if at_target else None,
        ""
        if at_target
        else f"run with --sizes {','.join(map(str, sorted(results)))},{TARGET_SIZE} "
        "(a few minutes more)",
    )


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--sizes",
        default=",".join(str(s) for s in DEFAULT_SIZES),
        help="register sizes, comma-separated (e.g. 10000,100000,1000000)",
    )
    parser.add_argument("--repeats", type=int, default=100, help="requests per case and size")
    parser.add_argument(
        "--live",
        action="store_true",
        help="fill through the indexes and triggers document by document (slower) "
        "instead of in bulk_load",
    )
    return parser.parse_args()


if __name__ == "__main__":
    args = _arguments()
    print_machine()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    asyncio.run(main(sizes, args.repeats, bulk=not args.live))
