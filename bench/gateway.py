"""GraphQL latency of the embedded platform, in process over ``httpx.ASGITransport``.

The demo data is loaded through the registry's commands and projected, then two queries
are posted sequentially: a region roll-up and a page of institutions. Baseline: the
read-store calls each resolver fundamentally needs, made directly. A middle row runs the
same GraphQL document through ``schema.execute`` without HTTP, to split the overhead
between the GraphQL layer and the HTTP/ASGI stack (which includes token verification).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from bench._common import (
    Latency,
    console,
    demo_platform,
    executor,
    latency_table,
    print_machine,
    quiet_logs,
)
from services.bootstrap import Platform, embedded_app
from services.common.auth import Role, TokenVerifier, issue_token
from services.common.ports import Prefix, Query
from services.registry.projections import INSTITUTIONS, REGION_STATS

REQUESTS = 300
WARMUP = 20
BLOCK = 30
BLOCK_WARMUP = 2

REGION_QUERY = (
    '{ region(code:"640400"){ name stats{ institutions{ '
    "active subject nonSubject approved pending } } } }"
)
INSTITUTIONS_QUERY = (
    '{ institutions(filter:{region:"640000"}, first:20){ '
    "totalCount edges{ node{ id name region{ name } } } } }"
)

Call = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Case:
    name: str
    call: Call
    baseline: str | None = None


async def measure(cases: Sequence[Case]) -> list[Latency]:
    """``REQUESTS`` timed sequential calls per case, in blocks of ``BLOCK`` that take turns.

    Turns spread drift over every case; blocks (each opened by ``BLOCK_WARMUP`` untimed
    calls) keep one case's garbage collections out of the next case's samples.
    """
    for case in cases:
        for _ in range(WARMUP):
            await case.call()
    samples: list[list[float]] = [[] for _ in cases]
    clock = time.perf_counter
    for _ in range(REQUESTS // BLOCK):
        for case, into in zip(cases, samples, strict=True):
            for _ in range(BLOCK_WARMUP):
                await case.call()
            for _ in range(BLOCK):
                start = clock()
                await case.call()
                into.append(clock() - start)
    return [
        Latency(case.name, tuple(into), sum(into), case.baseline)
        for case, into in zip(cases, samples, strict=True)
    ]


def checked(body: dict[str, Any]) -> dict[str, Any]:
    if "errors" in body:
        raise RuntimeError(f"GraphQL errors: {body['errors']}")
    data: dict[str, Any] = body["data"]
    return data


async def run(platform: Platform) -> tuple[list[Latency], list[Latency]]:
    store = platform.read_store
    secret = "bench-secret-bench-secret-bench-secret"
    app = embedded_app(platform, TokenVerifier(platform.regions, secret=secret))
    token = issue_token(secret, "bench", role=Role.VIEWER)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://bench", headers={"Authorization": f"Bearer {token}"}
    ) as client:

        async def post(query: str) -> dict[str, Any]:
            response = await client.post("/graphql", json={"query": query})
            response.raise_for_status()
            return checked(response.json())

        execute = executor(platform)

        # The three paths must agree before any of them is timed.
        stats = await store.get(REGION_STATS.name, "640400")
        assert stats is not None, "demo data was not projected"
        via_http = (await post(REGION_QUERY))["region"]["stats"]["institutions"]
        assert via_http == (await execute(REGION_QUERY))["region"]["stats"]["institutions"]
        assert via_http["active"] == stats["institutions_active"], (via_http, stats)
        listing = Query(INSTITUTIONS.name, (Prefix("region", "64"),), first=20)
        page = await store.find(listing)
        connection = (await post(INSTITUTIONS_QUERY))["institutions"]
        assert connection["totalCount"] == page.total
        assert [e["node"]["id"] for e in connection["edges"]] == [d["id"] for d in page.items]

        region_base = "read_store.get('region_stats', '640400')"
        region_rows = await measure(
            [
                Case(region_base, lambda: store.get(REGION_STATS.name, "640400")),
                Case(
                    "read_store.get_many('region_stats', ['640400']) (DataLoader's call)",
                    lambda: store.get_many(REGION_STATS.name, ["640400"]),
                    region_base,
                ),
                Case("GraphQL schema.execute, no HTTP", lambda: execute(REGION_QUERY), region_base),
                Case(
                    "GraphQL POST /graphql via ASGITransport",
                    lambda: post(REGION_QUERY),
                    region_base,
                ),
            ]
        )
        list_base = "read_store.find(institutions, region prefix '64', first=20)"
        list_rows = await measure(
            [
                Case(list_base, lambda: store.find(listing)),
                Case(
                    "GraphQL schema.execute, no HTTP",
                    lambda: execute(INSTITUTIONS_QUERY),
                    list_base,
                ),
                Case(
                    "GraphQL POST /graphql via ASGITransport",
                    lambda: post(INSTITUTIONS_QUERY),
                    list_base,
                ),
            ]
        )
    return region_rows, list_rows


async def main() -> None:
    quiet_logs()
    async with demo_platform("bench-gw-") as demo:
        region_rows, list_rows = await run(demo.platform)
    loaded, loading_seconds = demo.institutions, demo.load_seconds

    console.print(
        f"gateway: demo data = {loaded} institutions, loaded and projected in "
        f"{loading_seconds:.2f} s; {REQUESTS} sequential requests per row after {WARMUP} "
        f"warm-up ones, rows taking turns in blocks of {BLOCK}; req/s = 1 / mean latency",
        highlight=False,
    )
    console.print(latency_table(f"GraphQL region roll-up: {REGION_QUERY}", region_rows))
    console.print(latency_table(f"GraphQL listing: {INSTITUTIONS_QUERY}", list_rows))


if __name__ == "__main__":
    print_machine()
    asyncio.run(main())
