"""The query cost budget (issue 10, item 1): a hostile query with the budget off and on.

The demo data is loaded through the registry's commands and projected, as in
``bench.gateway``. A city viewer of 640400 then posts, in process over
``httpx.ASGITransport``, the query of the issue: 20 aliases of ``institutions(first: 100)``
asking every institution's region for ``history`` over 240 months. It goes once to an
embedded app whose schema has neither budget nor timeout ("before") and once to the app
as ``shuangjian up`` builds it, with the default budget ("after"); a trivial query is the
baseline. Then three hostile queries go at once with a trivial one among them, as in the
issue, and the trivial one's latency is what another user would wait.

Memory: the growth of the process's peak RSS (``ru_maxrss``) over the request, which
shows only what goes beyond every earlier peak, so the heaviest cases run last.
"""

from __future__ import annotations

import asyncio
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from rich.table import Table

from bench._common import console, demo_platform, print_machine, quiet_logs
from services.bootstrap import Platform, embedded_app
from services.common.auth import Role, TokenVerifier, issue_token
from services.gateway.schema import build_schema

CITY = "640400"
ALIASES = 20
PAGE = 100
FROM, TO = "2002-01-01", "2021-12-31"  # 240 months, the most one history may span
NODE = (
    "id name creditCode status category mode authority registeredAt "
    f'region {{ code name history(from: "{FROM}", to: "{TO}") '
    "{ month institutionsRegistered institutionsClosed } }"
)
HOSTILE = (
    "{ "
    + " ".join(
        f"a{n}: institutions(first: {PAGE}) {{ totalCount edges {{ node {{ {NODE} }} }} }}"
        for n in range(ALIASES)
    )
    + " }"
)
# Trivial, but it reads the store (one key), so it waits its turn on the event loop.
TRIVIAL = f'{{ region(code: "{CITY}") {{ stats {{ institutions {{ active }} }} }} }}'
REPEATS = 20  # of the quick requests (refusals, the trivial query); the median is shown


@dataclass(frozen=True)
class Row:
    case: str
    outcome: str
    response_bytes: int
    seconds: float
    rss_growth_mb: float | None = None
    rss_peak_mb: float | None = None


Post = Callable[[str], Awaitable[httpx.Response]]


def outcome(response: httpx.Response) -> str:
    body: dict[str, Any] = response.json()
    errors = body.get("errors") or []
    if not errors:
        return f"{response.status_code}, data"
    extensions = errors[0].get("extensions") or {}
    return f"{response.status_code}, {extensions.get('code')}"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def once(case: str, post: Post, query: str) -> Row:
    rss_before = peak_rss_mb()
    start = time.perf_counter()
    response = await post(query)
    seconds = time.perf_counter() - start
    peak = peak_rss_mb()
    return Row(case, outcome(response), len(response.content), seconds, peak - rss_before, peak)


async def median_of(case: str, post: Post, query: str) -> Row:
    rows = [await once(case, post, query) for _ in range(REPEATS)]
    seconds = statistics.median(r.seconds for r in rows)
    return Row(
        case,
        rows[0].outcome,
        rows[0].response_bytes,
        seconds,
        max(r.rss_growth_mb or 0 for r in rows),
        rows[-1].rss_peak_mb,
    )


async def crowd(case: str, post: Post) -> Row:
    """Three hostile queries at once, and trivial ones one after another until they end.

    The row shows the worst latency of the trivial queries and the three hostile answers'
    bytes together.
    """
    rss_before = peak_rss_mb()
    hostile = asyncio.gather(*(post(HOSTILE) for _ in range(3)))
    latencies: list[float] = []
    trivial = None
    while not hostile.done() or not latencies:
        start = time.perf_counter()
        trivial = await post(TRIVIAL)
        latencies.append(time.perf_counter() - start)
    answers = await hostile
    assert trivial is not None
    return Row(
        f"{case}: trivial query while 3 hostile run (worst of {len(latencies)}, "
        f"median {statistics.median(latencies):.4f} s)",
        outcome(trivial),
        sum(len(a.content) for a in answers),
        max(latencies),
        peak_rss_mb() - rss_before,
        peak_rss_mb(),
    )


async def run(platform: Platform) -> list[Row]:
    secret = "bench-secret-bench-secret-bench-secret"
    verifier = TokenVerifier(platform.regions, secret=secret)
    token = issue_token(secret, "bench-city-viewer", role=Role.VIEWER, region=CITY)
    unlimited = embedded_app(
        platform, verifier, schema=build_schema(cost_budget=None, request_timeout=None)
    )
    limited = embedded_app(platform, verifier)  # the settings' defaults, as `shuangjian up`
    rows: list[Row] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=unlimited), base_url="http://b", headers=headers
        ) as before,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=limited), base_url="http://b", headers=headers
        ) as after,
    ):

        async def post_before(query: str) -> httpx.Response:
            return await before.post("/graphql", json={"query": query})

        async def post_after(query: str) -> httpx.Response:
            return await after.post("/graphql", json={"query": query})

        for post in (post_before, post_after):  # warm both up (schema, caches)
            await post(TRIVIAL)
        rows.append(await median_of("trivial query, budget on (baseline)", post_after, TRIVIAL))
        rows.append(await median_of("after: hostile query, default budget", post_after, HOSTILE))
        rows.append(await crowd("after", post_after))
        rows.append(await once("before: hostile query, no budget", post_before, HOSTILE))
        rows.append(await crowd("before", post_before))
    return rows


def table(rows: list[Row]) -> Table:
    result = Table(
        title=f"Hostile query ({len(HOSTILE.encode()):,} bytes: {ALIASES} aliases × "
        f"institutions(first: {PAGE}) × region.history over 240 months) as a viewer of {CITY}",
        title_justify="left",
    )
    result.add_column("case")
    result.add_column("HTTP, answer")
    result.add_column("response bytes", justify="right")
    result.add_column("seconds", justify="right")
    result.add_column("peak RSS growth MB", justify="right")
    result.add_column("peak RSS MB", justify="right")
    for row in rows:
        result.add_row(
            row.case,
            row.outcome,
            f"{row.response_bytes:,}",
            f"{row.seconds:.4f}",
            "—" if row.rss_growth_mb is None else f"{row.rss_growth_mb:,.1f}",
            "—" if row.rss_peak_mb is None else f"{row.rss_peak_mb:,.0f}",
        )
    return result


async def main() -> None:
    quiet_logs()
    async with demo_platform("bench-cost-") as demo:
        rows = await run(demo.platform)
    settings, loaded, loading_seconds = demo.settings, demo.institutions, demo.load_seconds
    console.print(
        f"query cost: demo data = {loaded} institutions, loaded and projected in "
        f"{loading_seconds:.2f} s; budget {settings.query_cost_budget:,}, request timeout "
        f"{settings.request_timeout:g} s; quick rows: median of {REPEATS}; the crowd rows' "
        "seconds are the trivial query's worst, their bytes the three hostile answers'",
        highlight=False,
    )
    console.print(table(rows))


if __name__ == "__main__":
    print_machine()
    asyncio.run(main())
