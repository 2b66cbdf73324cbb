"""Issue 10, item 1: an operation is refused by its estimated cost before it runs, and a
query or mutation that runs too long anyway is stopped.

The hostile query of the issue (a city viewer's 20 aliases of ``institutions(first: 100)``
with 240 months of ``region.history`` each) answered 57 MB in 15 s; here it is refused
with ``BAD_INPUT`` naming the budget, without a single read of the store.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import graphql
import httpx
import pytest
import strawberry
from strawberry.types import ExecutionResult

from services.bootstrap import Platform, embedded_app
from services.common.auth import Principal, Role, TokenVerifier
from services.gateway.context import GatewayContext
from services.gateway.cost import operation_cost
from services.gateway.kit import Slice
from services.gateway.schema import MAX_COST, SLICES, build_schema, compose
from tests.conftest import SECRET, GraphQL, bearer

README = Path(__file__).resolve().parents[2] / "README.md"
CITY = "640400"
NODE = (
    "id name creditCode status category mode authority registeredAt "
    'region { code name history(from: "2002-01-01", to: "2021-12-31") '
    "{ month institutionsRegistered institutionsClosed } }"
)
HOSTILE = (
    "{ "
    + " ".join(
        f"a{n}: institutions(first: 100) {{ totalCount edges {{ node {{ {NODE} }} }} }}"
        for n in range(20)
    )
    + " }"
)
# The same operation, its cost behind fragments, inline fragments and variables.
HIDDEN = (
    "query Hidden($n: Int = 100, $from: Date!, $to: Date!) { "
    + " ".join(f"a{n}: institutions(first: $n) {{ ...Page }}" for n in range(20))
    + " } "
    "fragment Page on InstitutionConnection { totalCount edges { node { ...Node } } } "
    "fragment Node on Institution { id name creditCode status category mode authority "
    "registeredAt region { ... on Region { code name ...Trend } } } "
    "fragment Trend on Region { history(from: $from, to: $to) "
    "{ month institutionsRegistered institutionsClosed } }"
)
SPAN = {"from": "2002-01-01", "to": "2021-12-31"}


class CountingReads:
    """A read store that counts the reads made through it."""

    READS = frozenset({"get", "get_many", "find", "dump"})

    def __init__(self, store: Any) -> None:
        self.store = store
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.store, name)
        if name not in self.READS:
            return attribute

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.reads += 1
            return await attribute(*args, **kwargs)

        return counted


@pytest.fixture
async def city_viewer(platform: Platform) -> AsyncIterator[tuple[GraphQL, CountingReads]]:
    """A viewer of 固原 on the app as ``shuangjian up`` builds it, and the gateway's reads."""
    reads = CountingReads(platform.read_store)
    platform.read_store = reads  # type: ignore[assignment]  # what the gateway reads through
    app = embedded_app(platform, TokenVerifier(platform.regions, secret=SECRET))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": bearer(Role.VIEWER, CITY)},
    ) as client:
        yield GraphQL(client), reads


def refusal(body: dict[str, Any]) -> dict[str, Any]:
    assert body.get("data") is None, body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_INPUT", error
    return error


async def test_the_hostile_query_is_refused_before_anything_is_read(
    city_viewer: tuple[GraphQL, CountingReads],
) -> None:
    gql, reads = city_viewer
    error = refusal(await gql(HOSTILE))
    cost = error["extensions"]["cost"]
    assert error["extensions"]["budget"] == MAX_COST
    assert cost > 20 * MAX_COST  # refused by a wide margin
    assert f"{MAX_COST:,}" in error["message"] and f"{cost:,}" in error["message"]
    assert reads.reads == 0
    # The same viewer's ordinary queries still run, and read.
    assert "errors" not in await gql(f'{{ region(code: "{CITY}") {{ name }} }}')
    await gql("{ institutions(first: 5) { totalCount } }")
    assert reads.reads > 0


async def test_fragments_and_variables_cannot_hide_the_cost(
    city_viewer: tuple[GraphQL, CountingReads],
) -> None:
    gql, reads = city_viewer
    inline = refusal(await gql(HOSTILE))["extensions"]["cost"]
    hidden = refusal(await gql(HIDDEN, SPAN))["extensions"]["cost"]
    assert hidden == inline
    # A variable that turns out small makes it cheap again: the values count, not the names.
    small = await gql(HIDDEN.replace("$n: Int = 100", "$n: Int = 1"), SPAN)
    assert "errors" not in small, small["errors"]
    assert reads.reads > 0


async def test_a_query_at_the_budget_runs_and_one_over_it_is_refused(platform: Platform) -> None:
    # institutions 1 + totalCount 1 + edges (1 + 3 items × (node 1 + id 1 + name 1)) = 12
    query = "{ institutions(first: 3) { totalCount edges { node { id name } } } }"
    assert operation_cost(build_schema()._schema, graphql.parse(query)) == 12
    for budget, refused in ((12, False), (11, True)):
        app = embedded_app(
            platform,
            TokenVerifier(platform.regions, secret=SECRET),
            schema=build_schema(cost_budget=budget),
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test",
            headers={"Authorization": bearer()},
        ) as client:
            body = await GraphQL(client)(query)
        if refused:
            assert refusal(body)["extensions"] == {"code": "BAD_INPUT", "cost": 12, "budget": 11}
        else:
            assert body == {"data": {"institutions": {"totalCount": 0, "edges": []}}}


@pytest.mark.parametrize(
    ("query", "cost"),
    [
        # a page's lists hold `first` items; null is the argument's default, 20
        ("{ institutions { edges { cursor } } }", 1 + 1 + 20),
        ("{ institutions(first: null) { edges { cursor } } }", 1 + 1 + 20),
        # over the maximum, the page counts 100 (the resolver refuses it by name)
        ("{ institutions(first: 1000) { edges { cursor } } }", 1 + 1 + 100),
        # the audit trail's default page is 50
        ('{ institution(id: "x") { events { edges { cursor } } } }', 1 + 1 + 1 + 50),
        # history: one item per month, from..to inclusive; 240 when it does not parse
        (
            '{ region(code: "64") { history(from: "2021-01-15", to: "2021-12-01") { month } } }',
            1 + 1 + 12,
        ),
        ('{ region(code: "64") { history(from: "2021-01-01", to: "soon") { month } } }', 242),
        # region lists count what the shipped tree holds: 5 cities in 宁夏, 26 children at most
        ('{ regions(level: CITY, parent: "64") { name } }', 1 + 5),
        ("{ regions(level: PROVINCE) { name } }", 1 + 31),
        ('{ region(code: "64") { children { name } } }', 1 + 1 + 26),
        # aliases count separately
        ('{ a: region(code: "64") { name } b: region(code: "12") { name } }', 2 * 2),
    ],
)
def test_the_estimate_counts_fields_times_list_sizes(query: str, cost: int) -> None:
    assert operation_cost(build_schema()._schema, graphql.parse(query)) == cost


def test_the_readmes_examples_and_graphiqls_introspection_fit_the_budget() -> None:
    schema = build_schema()._schema
    examples = re.findall(r"```graphql\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(examples) >= 2
    introspection = graphql.get_introspection_query(
        descriptions=True, specified_by_url=True, directive_is_repeatable=True
    )
    for document in [*examples, introspection]:
        assert 0 < operation_cost(schema, graphql.parse(document)) < MAX_COST // 10, document
    assert build_schema().introspect()["__schema"]["queryType"]["name"] == "Query"


async def test_a_subscription_over_the_budget_is_refused(platform: Platform) -> None:
    # events 1 + type stream region actor 4 = 5
    subscription = 'subscription { events(region: "640400") { type stream region actor } }'
    viewer = Principal.of("city-viewer", Role.VIEWER, CITY, platform.regions)
    stream = await build_schema(cost_budget=4).subscribe(
        subscription, context_value=GatewayContext(platform, viewer)
    )
    async with asyncio.timeout(30):  # an accepted subscription would wait for events
        first = await stream.__anext__()
    assert first.errors and first.errors[0].extensions == {
        "code": "BAD_INPUT",
        "cost": 5,
        "budget": 4,
    }


# --- the request timeout --------------------------------------------------------------


class Stuck:
    """A resolver only the request timeout can end, and a stream the test feeds."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()
        self.ticks: asyncio.Queue[int] = asyncio.Queue()

    def slice(self) -> Slice:
        stuck = self

        @strawberry.type
        class StuckQuery:
            @strawberry.field
            async def stuck(self) -> int:
                try:
                    await asyncio.Event().wait()  # never set
                except asyncio.CancelledError:
                    stuck.cancelled.set()
                    raise
                raise AssertionError("unreachable")

        @strawberry.type
        class StuckSubscription:
            @strawberry.subscription
            async def ticks(self) -> AsyncGenerator[int, None]:
                while True:
                    yield await stuck.ticks.get()

        return Slice("stuck", query=StuckQuery, subscription=StuckSubscription)


@pytest.mark.parametrize("transport", ["http", "websocket"])
async def test_a_query_running_past_the_timeout_is_stopped(
    platform: Platform, transport: str
) -> None:
    stuck = Stuck()
    schema = compose([*SLICES, stuck.slice()], request_timeout=0.05)
    async with asyncio.timeout(30):  # fails the test instead of hanging when nothing stops it
        if transport == "http":
            app = embedded_app(
                platform, TokenVerifier(platform.regions, secret=SECRET), schema=schema
            )
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://test",
                headers={"Authorization": bearer()},
            ) as client:
                body = await GraphQL(client)("{ stuck }")
            (error,) = body["errors"]
            extensions, message = error["extensions"], error["message"]
        else:
            # graphql-transport-ws runs queries through stream(), not execute().
            stream = await schema.stream("{ stuck }", context_value=None)
            result = await stream.__anext__()
            assert isinstance(result, ExecutionResult) and result.errors
            extensions, message = result.errors[0].extensions, result.errors[0].message
    assert extensions == {"code": "UNAVAILABLE"}
    assert "0.05 s" in message
    assert stuck.cancelled.is_set()  # the resolver was cancelled, not left running


async def test_subscriptions_outlive_the_timeout() -> None:
    stuck = Stuck()
    schema = compose([*SLICES, stuck.slice()], request_timeout=0.05)
    async with asyncio.timeout(30):
        stream = await schema.subscribe("subscription { ticks }", context_value=None)
        assert hasattr(stream, "__anext__")
        await stuck.ticks.put(1)
        first = await stream.__anext__()
        # A query started after the subscription has hit the timeout by the time it answers,
        # so the subscription has been open longer than the timeout.
        stopped = await schema.execute("{ stuck }")
        assert stopped.errors and stopped.errors[0].extensions == {"code": "UNAVAILABLE"}
        await stuck.ticks.put(2)
        second = await stream.__anext__()
        await stream.aclose()
    assert (first.errors, first.data, second.errors, second.data) == (
        None,
        {"ticks": 1},
        None,
        {"ticks": 2},
    )
