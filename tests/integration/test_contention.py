"""Racing writers: a lost optimistic-concurrency race is retried, not shown as a rule.

Many inspectors issuing YELLOW cards (always legal) to one institution at once must all
succeed; only when the retries are used up does a caller see a conflict, and that one
says it is a concurrent update worth sending again, unlike a lifecycle rule.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest

from services.bootstrap import Platform
from services.common.application import DEFAULT_RETRY, CommandContext, Outcome, RetryPolicy
from services.common.envelope import Envelope
from services.common.errors import ConcurrencyConflict, Conflict
from services.common.remote import RemoteService
from services.registry.domain.commands import IssueWarningCard, ResumeInstitution
from services.registry.handlers import COMMANDS, Registry
from tests.conftest import GraphQL, bearer
from tests.factories import registration

CARD = "registry.WarningCardIssued"
Decide = Callable[[list[Envelope]], Sequence[Envelope]]
CONCURRENT_UPDATE: dict[str, Any] = {
    "code": "CONFLICT",
    "reason": "CONCURRENT_UPDATE",
    "retryable": True,
}
WARN = """
mutation($id: ID!) {
  issueWarningCard(id: $id, color: YELLOW, reason: "消防通道堵塞") { id warnings { color } }
}"""


def registry_of(platform: Platform) -> Registry:
    registry = platform.services["registry"]
    assert isinstance(registry, Registry)
    return registry


async def registered(gql: GraphQL, platform: Platform, ident: str = "hot") -> None:
    await gql.data(
        "mutation($input: RegisterInstitutionInput!) { registerInstitution(input: $input) { id } }",
        {"input": registration(id=ident)},
    )
    await platform.settle()


async def inspectors_warn(
    platform: Platform, clients: int, cards: int, ident: str = "hot"
) -> list[Outcome[Any] | BaseException]:
    """``clients`` inspectors at once, each sending ``cards`` YELLOW cards in turn."""

    async def inspector(n: int) -> list[Outcome[Any] | BaseException]:
        ctx = CommandContext(actor=f"inspector-{n}")
        results: list[Outcome[Any] | BaseException] = []
        for k in range(cards):
            card = IssueWarningCard(id=ident, color="YELLOW", reason=f"检查 {n}-{k}")
            try:
                results.append(await platform.execute(card, ctx))
            except ConcurrencyConflict as exc:
                results.append(exc)
        return results

    per_client = await asyncio.gather(*(inspector(n) for n in range(clients)))
    return [result for results in per_client for result in results]


async def cards_in(platform: Platform, ident: str = "hot") -> list[Envelope]:
    stream = await platform.event_stores["registry"].read_stream(ident)
    assert [e.version for e in stream] == list(range(1, len(stream) + 1))
    return [e for e in stream if e.type == CARD]


async def test_twenty_inspectors_warning_one_institution_all_succeed(
    gql: GraphQL, platform: Platform
) -> None:
    await registered(gql, platform)

    results = await inspectors_warn(platform, clients=20, cards=5)

    refused = [r for r in results if isinstance(r, BaseException)]
    assert refused == []
    assert len(await cards_in(platform)) == 100


async def test_races_with_other_processes_are_retried_with_backoff(
    gql: GraphQL, platform: Platform
) -> None:
    """Without the in-process queue every command races the others, as replicas do."""
    await registered(gql, platform)
    registry_of(platform).retry = dataclasses.replace(DEFAULT_RETRY, queue=False)

    results = await inspectors_warn(platform, clients=20, cards=5)

    refused = [r for r in results if isinstance(r, BaseException)]
    assert refused == []
    assert len(await cards_in(platform)) == 100


class CountingAppends:
    """Counts the appends of the registry's store, and those that lost a race."""

    def __init__(self, platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
        self.appends = self.lost = 0
        self.store = platform.event_stores["registry"]
        self.append = self.store.decide_and_append
        monkeypatch.setattr(self.store, "decide_and_append", self.counted)

    async def counted(self, stream: str, decide: Decide) -> list[Envelope]:
        self.appends += 1
        try:
            return await self.append(stream, decide)
        except ConcurrencyConflict:
            self.lost += 1
            raise


async def test_commands_on_one_institution_take_turns_instead_of_racing(
    gql: GraphQL, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    await registered(gql, platform)
    appends = CountingAppends(platform, monkeypatch)

    results = await inspectors_warn(platform, clients=20, cards=5)

    assert not [r for r in results if isinstance(r, BaseException)]
    assert (appends.appends, appends.lost) == (100, 0)  # nothing decided on stale state


async def test_a_command_that_cannot_get_its_turn_in_time_is_a_retryable_conflict(
    gql: GraphQL, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    await registered(gql, platform)
    store = platform.event_stores["registry"]
    append, entered, release = store.decide_and_append, asyncio.Event(), asyncio.Event()

    async def slow(stream: str, decide: Decide) -> list[Envelope]:
        entered.set()
        await release.wait()
        return await append(stream, decide)

    monkeypatch.setattr(store, "decide_and_append", slow)
    registry_of(platform).retry = RetryPolicy(deadline=0.01)
    first = asyncio.ensure_future(
        platform.execute(IssueWarningCard(id="hot", color="YELLOW", reason="一"), CommandContext())
    )
    await entered.wait()  # the first command holds the institution's turn
    try:
        async with asyncio.timeout(10):  # a bound on a hang, not a measurement
            with pytest.raises(ConcurrencyConflict) as busy:
                await platform.execute(
                    IssueWarningCard(id="hot", color="YELLOW", reason="二"), CommandContext()
                )
    finally:
        release.set()
        await first

    assert busy.value.extensions() == CONCURRENT_UPDATE
    assert "busy" in busy.value.message
    assert [e.data["reason"] for e in await cards_in(platform)] == ["一"]


class AlwaysBehind:
    """Every append finds that another writer came first (after deciding on what it read)."""

    def __init__(self, platform: Platform) -> None:
        self.appends = 0
        self.store = platform.event_stores["registry"]

    async def append(self, stream: str, decide: Decide) -> list[Envelope]:
        self.appends += 1
        stored = await self.store.read_stream(stream)
        decide(stored)
        raise ConcurrencyConflict(
            f"stream {stream} is at version {len(stored) + 1}, not the expected {len(stored)}"
        )


@pytest.fixture
async def contested(
    gql: GraphQL, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> AlwaysBehind:
    """Institution ``hot``, and a registry whose every append loses the race."""
    await registered(gql, platform)
    behind = AlwaysBehind(platform)
    monkeypatch.setattr(behind.store, "decide_and_append", behind.append)
    registry_of(platform).retry = RetryPolicy(attempts=4, backoff=0.0005, max_backoff=0.001)
    return behind


async def test_used_up_retries_are_a_retryable_concurrent_update(
    platform: Platform, contested: AlwaysBehind
) -> None:
    with pytest.raises(ConcurrencyConflict) as refused:
        await platform.execute(
            IssueWarningCard(id="hot", color="YELLOW", reason="消防"), CommandContext()
        )

    assert refused.value.extensions() == CONCURRENT_UPDATE
    assert "send it again" in refused.value.message
    assert contested.appends == 4
    assert await cards_in(platform) == []


async def test_the_deadline_bounds_the_retries(platform: Platform, contested: AlwaysBehind) -> None:
    registry_of(platform).retry = RetryPolicy(attempts=1000, deadline=0)
    with pytest.raises(ConcurrencyConflict):
        await platform.execute(
            IssueWarningCard(id="hot", color="YELLOW", reason="消防"), CommandContext()
        )
    assert contested.appends == 1


async def test_graphql_tells_a_concurrent_update_from_a_rule(
    gql: GraphQL, platform: Platform, contested: AlwaysBehind
) -> None:
    body = await gql(WARN, {"id": "hot"})
    assert body["errors"][0]["extensions"] == CONCURRENT_UPDATE

    # A rule is decided before anything is appended: no race, no reason, not retryable.
    rule = await gql('mutation { resumeInstitution(id: "hot") { id } }')
    assert rule["errors"][0]["extensions"] == {"code": "CONFLICT", "field": "id"}


async def test_rest_tells_a_concurrent_update_from_a_rule(
    app: Any, platform: Platform, contested: AlwaysBehind
) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": bearer()},
    ) as client:
        raced = await client.post(
            "/api/registry/v1/institutions/hot/warning-cards",
            json={"color": "YELLOW", "reason": "消防"},
        )
    assert raced.status_code == 409
    error = raced.json()["error"]
    assert {k: error[k] for k in CONCURRENT_UPDATE} == CONCURRENT_UPDATE


async def test_a_remote_service_s_concurrent_update_stays_retryable() -> None:
    """The distributed gateway gets the same error back from the service's answer."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/resume"):
            error = {"code": "CONFLICT", "message": "hot is not suspended", "field": "id"}
        else:
            error = {"message": "hot kept changing", **CONCURRENT_UPDATE}
        return httpx.Response(409, json={"error": error})

    remote = RemoteService(
        "registry", "http://registry", [COMMANDS], transport=httpx.MockTransport(answer)
    )
    try:
        with pytest.raises(ConcurrencyConflict) as raced:
            await remote.handle(
                IssueWarningCard(id="hot", color="YELLOW", reason="消防"), CommandContext()
            )
        with pytest.raises(Conflict) as rule:
            await remote.handle(ResumeInstitution(id="hot"), CommandContext())
    finally:
        await remote.close()
    assert raced.value.extensions() == CONCURRENT_UPDATE
    assert not isinstance(rule.value, ConcurrencyConflict)
    assert rule.value.extensions() == {"code": "CONFLICT", "field": "id"}
