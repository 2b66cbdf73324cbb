"""The distributed path as separate OS processes over a real Kafka-protocol broker.

``shuangjian serve registry``, ``serve inspections`` and ``serve finance``, ``shuangjian
project`` (faust, with the process managers) and ``shuangjian gateway`` run as their own
processes, configured only through ``SHUANGJIAN_*`` variables, against the suite's Kafka
(``brokers.py``: a real Apache Kafka where Java and Maven exist). Each fault the issue
names is one test; each compares the read models with a full replay of the events.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.common.application import CommandContext
from services.common.auth import Role
from services.common.config import Settings
from services.common.kafka import KafkaBus, dead_letter_topic
from services.common.process import PROCESS_REFUSALS
from services.common.sqlite import SQLiteEventStore
from services.common.timeutil import SHANGHAI
from services.registry.domain.commands import (
    ApproveInstitution,
    IssueWarningCard,
    RegisterInstitution,
)
from services.registry.handlers import Registry
from services.registry.module import no_rectifications
from services.registry.projections import INSTITUTIONS, InstitutionsProjection
from tests.brokers import ferretdb
from tests.factories import DISTRICTS, numbered_registration, registration, valid_credit_code
from tests.kafka.brokers import Broker, real_only
from tests.kafka.deployment import (
    Deployment,
    committed,
    eventually,
    produce,
    read_topic,
    topic_ends,
)
from tests.kafka.readmodels import POLICY, REGIONS, Snapshot
from tests.processes import SHUANGJIAN
from tests.rollups import recount, stored_rollups

REGISTER = """
mutation($input: RegisterInstitutionInput!) {
  registerInstitution(input: $input) { id status region { code } }
}"""
APPROVE = """
mutation($id: ID!, $licenseNo: String!) {
  approveInstitution(id: $id, licenseNo: $licenseNo) { id status licenseNo }
}"""
RESUME = "mutation($id: ID!) { resumeInstitution(id: $id) { id status } }"
STATS = """
query($code: String!) {
  region(code: $code) { stats { institutions { active approved pending subject } } }
}"""
INSTITUTION = "query($id: ID!) { institution(id: $id) { id status licenseNo } }"
RECORD_INSPECTION = """
mutation($input: RecordInspectionInput!) {
  recordInspection(input: $input) {
    id kind personnel
    visits { venue institution { id } findings { type } rectification { id status } }
  }
}"""
SUBMIT = 'mutation($id: ID!) { submitRectification(id: $id, note: "已整改") { id status } }'
VERIFY = "mutation($id: ID!) { verifyRectification(id: $id, passed: true) { id status } }"
INSPECTION_STATS = """
query($code: String!) {
  region(code: $code) { stats { inspections {
    inspections institutionsInspected findings rectificationsOpened rectificationsClosed
    jointActions
  } } }
}"""
CARDS = """
query($id: ID!) {
  institution(id: $id) {
    warnings { color reason }
    events(first: 50) { edges { node { id type actor } } }
  }
}"""
MANAGER = "process:warning_cards"  # the warning-card process manager's actor
OPEN_ACCOUNT = """
mutation($input: OpenSupervisionAccountInput!) {
  openSupervisionAccount(input: $input) { mode bank accountNo institution { id } }
}"""
RECORD_ORDER = """
mutation($input: RecordPrepaidOrderInput!) {
  recordPrepaidOrder(input: $input) { id lessons pricePerLesson amount escrowHeld }
}"""
CONFIRM = """
mutation($id: ID!, $lessons: Int!) {
  confirmLessons(orderId: $id, lessons: $lessons) { id lessonsConsumed released escrowHeld }
}"""
REFUND = """
mutation($id: ID!, $lessons: Int!, $reason: String!) {
  refundOrder(orderId: $id, lessons: $lessons, reason: $reason) {
    id lessonsRefunded refunded escrowHeld
  }
}"""
SUSPEND = """
mutation($id: ID!, $reason: String!) {
  suspendInstitution(id: $id, reason: $reason) { id status }
}"""
FINANCE_STATS = """
query($code: String!) {
  region(code: $code) { stats { finance {
    supervisedAccounts orders orderAmount escrowBalance released refunded riskGreen
  } } }
}"""
RISK = "query($id: ID!) { institution(id: $id) { riskLevel riskReasons } }"


MONGODB_URI = os.environ.get("SHUANGJIAN_TEST_MONGODB_URI")


@pytest.fixture
async def deployment(
    request: pytest.FixtureRequest, tmp_path: Path, kafka_broker: Broker
) -> AsyncIterator[Deployment]:
    """Every process on the suite's broker; stopped before the broker is.

    Stores: SQLite files in a shared data dir, or MongoDB for every process when
    ``SHUANGJIAN_TEST_MONGODB_URI`` names a server; a test parametrised indirectly with
    ``"ferretdb"`` runs on the suite's FerretDB over the wire instead.
    """
    stores = getattr(request, "param", "default")
    uri = MONGODB_URI
    if stores == "ferretdb":
        uri = request.getfixturevalue("ferretdb_uri")
        if uri is None:
            pytest.skip(f"no FerretDB here: {ferretdb.reason}")
    deployment = Deployment(tmp_path, kafka_broker, mongodb_uri=uri)
    try:
        yield deployment
    finally:
        await deployment.close()
        print(deployment.output)  # pytest shows it only when the test failed


def data(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body["errors"]
    result: dict[str, Any] = body["data"]
    return result


def code_of(body: dict[str, Any]) -> str:
    return str(body["errors"][0]["extensions"]["code"])


# FerretDB (MongoDB stores over the wire) for a test whose writes are one at a time: it
# does not apply concurrent updates of one document atomically (tests/brokers/FERRETDB.md).
@pytest.mark.parametrize("deployment", ["default", "ferretdb"], indirect=True)
async def test_a_mutation_goes_gateway_service_kafka_projector_and_shows_in_graphql(
    deployment: Deployment,
) -> None:
    await deployment.start()
    guyuan = deployment.token(Role.IMPORTER, "640400")

    body = await deployment.graphql(REGISTER, {"input": registration(id="qiming-1")}, token=guyuan)
    # Read-your-writes across four hops: the answer waits until the projection has it.
    assert data(body)["registerInstitution"] == {
        "id": "qiming-1",
        "status": "PENDING",
        "region": {"code": "640402"},
    }
    approved = await deployment.graphql(
        APPROVE, {"id": "qiming-1", "licenseNo": "教民1"}, token=guyuan
    )
    assert data(approved)["approveInstitution"]["status"] == "APPROVED"
    for code in ("640402", "640400", "640000"):
        stats = data(await deployment.graphql(STATS, {"code": code}))
        assert stats["region"]["stats"]["institutions"] == {
            "active": 1,
            "approved": 1,
            "pending": 0,
            "subject": 1,
        }

    # The service's refusals reach the caller with their codes, and write nothing.
    conflict = await deployment.graphql(RESUME, {"id": "qiming-1"}, token=guyuan)
    assert code_of(conflict) == "CONFLICT"
    hefei = deployment.token(Role.OPERATOR, "340103")
    forbidden = await deployment.graphql(
        REGISTER, {"input": registration(id="elsewhere")}, token=hefei
    )
    assert code_of(forbidden) == "FORBIDDEN"
    missing = await deployment.graphql(APPROVE, {"id": "nobody", "licenseNo": "X"}, token=guyuan)
    assert code_of(missing) == "NOT_FOUND"

    await eventually(deployment.caught_up, "the projector to reach the end of the topic")
    assert await deployment.snapshot() == await deployment.replay()
    lags = served_lags(await deployment.metrics())
    assert lags and all(lag == 0 for lag in lags.values()), lags
    await every_process_is_observable(deployment)


async def every_process_is_observable(deployment: Deployment) -> None:
    """Each process answers its probes and serves its metrics, as Kubernetes and
    Prometheus ask them (deploy/k8s)."""
    async with httpx.AsyncClient(timeout=10) as client:
        for url in (deployment.registry_url, deployment.gateway_url):
            ready = await client.get(f"{url}/readyz")
            assert ready.status_code == 200, ready.text
        assert (await client.get(f"{deployment.projector_url}/healthz")).status_code == 200
        registry = (await client.get(f"{deployment.registry_url}/metrics")).text
        gateway = (await client.get(f"{deployment.gateway_url}/metrics")).text
    commands = "shuangjian_commands_total"
    assert sample(registry, commands, command="RegisterInstitution", outcome="ok") == 1
    assert sample(registry, commands, command="ResumeInstitution", outcome="CONFLICT") == 1
    operation = "graphql mutation registerInstitution"
    assert sample(gateway, "shuangjian_http_requests_total", operation=operation, code="200")
    assert sample(registry, "shuangjian_outbox_depth", service="registry") == 0
    lag = "shuangjian_projection_lag_events"
    assert sample(await deployment.metrics(), lag, projection="registry.institutions") == 0


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` whose labels include ``labels`` (None: none)."""
    for family in text_string_to_metric_families(metrics):
        for found in family.samples:
            if found.name == name and labels.items() <= found.labels.items():
                return found.value
    return None


async def test_an_inspection_goes_through_both_services_the_projector_and_the_process_manager(
    deployment: Deployment,
) -> None:
    """Gateway → inspections service → Kafka → projector: the read models, and the process
    manager there, which asks the registry service (HTTP) for a YELLOW card → Kafka →
    projector → the institution in GraphQL."""
    await deployment.start()
    admin = deployment.token(Role.ADMIN)
    school = registration(
        id="jiangbei-1",
        name="江北区启明艺术培训学校",
        creditCode=valid_credit_code("500105", "MA0000001"),
        region="500105",
        category="NON_SUBJECT",
        nonSubjectKind="ARTS",
    )
    registered = data(await deployment.graphql(REGISTER, {"input": school}, token=admin))
    assert registered["registerInstitution"]["region"] == {"code": "500105"}
    approve = {"id": "jiangbei-1", "licenseNo": "渝教民1"}
    approved = data(await deployment.graphql(APPROVE, approve, token=admin))
    assert approved["approveInstitution"]["status"] == "APPROVED"

    started = (datetime.now(SHANGHAI) - timedelta(minutes=5)).replace(microsecond=0)
    batch = {
        "region": "500105",
        "kind": "JOINT",
        "startedAt": started.isoformat(),
        "personnel": 4,
        "visits": [
            {
                "institutionId": "jiangbei-1",
                "findings": [{"type": "UNLICENSED_OPERATION", "description": "无证办学"}],
            },
            {
                "venue": "某小区3栋",
                "findings": [{"type": "HIDDEN_TRAINING", "description": "隐形培训"}],
            },
        ],
    }
    # Read-your-writes over Kafka: the answer is read from the projected batch.
    body = await deployment.graphql(RECORD_INSPECTION, {"input": batch}, token=admin)
    recorded = data(body)["recordInspection"]
    inspection = recorded["id"]
    assert (recorded["kind"], recorded["personnel"]) == ("JOINT", 4)
    assert recorded["visits"] == [
        {
            "venue": None,
            "institution": {"id": "jiangbei-1"},
            "findings": [{"type": "UNLICENSED_OPERATION"}],
            "rectification": {"id": f"{inspection}~1", "status": "OPEN"},
        },
        {
            "venue": "某小区3栋",
            "institution": None,
            "findings": [{"type": "HIDDEN_TRAINING"}],
            "rectification": {"id": f"{inspection}~2", "status": "OPEN"},
        },
    ]
    order = {"id": f"{inspection}~1"}
    submitted = data(await deployment.graphql(SUBMIT, order, token=admin))
    assert submitted["submitRectification"] == {**order, "status": "SUBMITTED"}
    verified = data(await deployment.graphql(VERIFY, order, token=admin))
    assert verified["verifyRectification"] == {**order, "status": "CLOSED"}

    async def figures() -> tuple[int, ...]:
        body = await deployment.graphql(INSPECTION_STATS, {"code": "500000"}, token=admin)
        stats = data(body)["region"]["stats"]["inspections"]
        return tuple(stats.values())

    async def figures_are_in() -> bool:
        return await figures() == (1, 2, 2, 2, 1, 1)

    await eventually(figures_are_in, "the inspection figures of 重庆 (500000)")

    async def cards() -> dict[str, Any]:
        body = await deployment.graphql(CARDS, {"id": "jiangbei-1"}, token=admin)
        institution: dict[str, Any] = data(body)["institution"]
        return institution

    async def carded() -> bool:
        return bool((await cards())["warnings"])

    # Only the process manager in the projector issues it: nobody here asked for a card.
    await eventually(carded, "the process manager's YELLOW card to be projected")
    institution = await cards()
    assert [w["color"] for w in institution["warnings"]] == ["YELLOW"]
    assert inspection in institution["warnings"][0]["reason"]
    trail = [edge["node"] for edge in institution["events"]["edges"]]
    assert "inspections.InspectionRecorded" in [node["type"] for node in trail]
    issued = [node for node in trail if node["type"] == "registry.WarningCardIssued"]
    assert [node["actor"] for node in issued] == [MANAGER]

    # The card's event names the batch's event as its cause, across the two stores.
    stores = await deployment.event_stores()
    try:
        registry_events = await stores["registry"].read_all(limit=1_000)
        inspections_events = await stores["inspections"].read_all(limit=1_000)
    finally:
        for store in stores.values():
            await store.close()
    [batch_event] = [e for e in inspections_events if e.type == "inspections.InspectionRecorded"]
    [card] = [e for e in registry_events if e.type == "registry.WarningCardIssued"]
    assert batch_event.stream == inspection
    assert (str(card.id), card.actor, card.causation_id) == (
        issued[0]["id"],
        MANAGER,
        str(batch_event.id),
    )

    await eventually(deployment.caught_up, "the projector to reach the end of both topics")
    got = await deployment.snapshot()
    assert len(got["inspections"]) == 1 and len(got["rectifications"]) == 2
    assert got == await deployment.replay()  # both event stores, the same projections
    read_store = await deployment.read_store()
    assert await read_store.dump(PROCESS_REFUSALS.name) == []  # the registry took the card


async def test_an_order_goes_through_the_services_the_projector_and_the_gateway(
    deployment: Deployment,
) -> None:
    """Gateway → registry service → Kafka → projector (finance's own view of the
    institution) → gateway → finance service (account, order, lessons, refund) → Kafka →
    projector → the money figures in GraphQL; then a suspension, on which the risk watch
    in the projector asks ``serve finance`` (HTTP) to judge the risk again: RED."""
    await deployment.start()
    admin = deployment.token(Role.ADMIN)
    school = registration(
        id="heping-1",
        name="和平区启明艺术培训学校",
        creditCode=valid_credit_code("120101", "MA0000001"),
        region="120101",
        category="NON_SUBJECT",
        nonSubjectKind="ARTS",
        mode="OFFLINE",
    )
    registered = data(await deployment.graphql(REGISTER, {"input": school}, token=admin))
    assert registered["registerInstitution"]["region"] == {"code": "120101"}
    approve = {"id": "heping-1", "licenseNo": "津教民1"}
    approved = data(await deployment.graphql(APPROVE, approve, token=admin))
    assert approved["approveInstitution"]["status"] == "APPROVED"

    async def finance_figures() -> dict[str, Any]:
        body = await deployment.graphql(FINANCE_STATS, {"code": "120000"}, token=admin)
        figures: dict[str, Any] = data(body)["region"]["stats"]["finance"]
        return figures

    # The finance service knows institutions only through its own view of them, kept by
    # the projector from the registry's events (``finance_register``), not by asking the
    # registry. The gateway answered the approval once the registry's read model showed
    # it; the projector writes finance's view in the same batch, but just after: over
    # Kafka there is a real window in which finance does not know the institution yet
    # (an account is refused BAD_INPUT) or still sees it PENDING (an order is refused
    # CONFLICT). Every institution finance knows counts as GREEN: wait for that, then
    # retry the order while finance's view is not APPROVED yet.
    async def known_to_finance() -> bool:
        return bool((await finance_figures())["riskGreen"] == 1)

    await eventually(known_to_finance, "finance's own view of the institution")
    account = {
        "institutionId": "heping-1",
        "mode": "BANK_CUSTODY",
        "bank": "工商银行",
        "accountNo": "6222021234567890",
    }
    opened = data(await deployment.graphql(OPEN_ACCOUNT, {"input": account}, token=admin))
    assert opened["openSupervisionAccount"] == {
        "mode": "BANK_CUSTODY",
        "bank": "工商银行",
        "accountNo": "************7890",
        "institution": {"id": "heping-1"},
    }

    now = datetime.now(SHANGHAI).replace(microsecond=0)
    order = {
        "id": "o-1",
        "institutionId": "heping-1",
        "payerRef": "parent-1",
        "lessons": 20,
        "pricePerLesson": "123.45",
        "courseStart": now.date().isoformat(),
        "courseEnd": (now.date() + timedelta(days=60)).isoformat(),
        "paidAt": now.isoformat(),
    }
    recorded: dict[str, Any] = {}

    async def order_accepted() -> bool:
        body = await deployment.graphql(RECORD_ORDER, {"input": order}, token=admin)
        if "errors" in body and code_of(body) == "CONFLICT":
            message = body["errors"][0]["message"]
            assert "only an APPROVED institution" in message, body  # nothing else may refuse
            return False
        recorded.update(data(body)["recordPrepaidOrder"])
        return True

    await eventually(order_accepted, "finance's view of the institution to be APPROVED")
    assert recorded == {
        "id": "o-1",
        "lessons": 20,
        "pricePerLesson": "123.45",
        "amount": "2469.00",
        "escrowHeld": "2469.00",
    }
    confirmed = data(await deployment.graphql(CONFIRM, {"id": "o-1", "lessons": 3}, token=admin))
    assert confirmed["confirmLessons"] == {
        "id": "o-1",
        "lessonsConsumed": 3,
        "released": "370.35",
        "escrowHeld": "2098.65",
    }
    refund = {"id": "o-1", "lessons": 2, "reason": "退费"}
    refunded = data(await deployment.graphql(REFUND, refund, token=admin))
    assert refunded["refundOrder"] == {
        "id": "o-1",
        "lessonsRefunded": 2,
        "refunded": "246.90",
        "escrowHeld": "1851.75",
    }

    expected = {
        "supervisedAccounts": 1,
        "orders": 1,
        "orderAmount": "2469.00",
        "escrowBalance": "1851.75",
        "released": "370.35",
        "refunded": "246.90",
        "riskGreen": 1,
    }

    async def money_is_in() -> bool:
        return await finance_figures() == expected

    await eventually(money_is_in, "the money figures of 天津 (120000)")

    async def risk() -> dict[str, Any]:
        body = await deployment.graphql(RISK, {"id": "heping-1"}, token=admin)
        institution: dict[str, Any] = data(body)["institution"]
        return institution

    assert await risk() == {"riskLevel": "GREEN", "riskReasons": []}
    suspend = {"id": "heping-1", "reason": "停业整顿"}
    suspended = data(await deployment.graphql(SUSPEND, suspend, token=admin))
    assert suspended["suspendInstitution"] == {"id": "heping-1", "status": "SUSPENDED"}

    async def red() -> bool:
        return bool((await risk())["riskLevel"] == "RED")

    # Nobody here asked for an assessment: the risk watch in the projector saw the
    # suspension and sent finance an AssessRisk over HTTP.
    await eventually(red, "the risk watch's RED level to be projected")
    [reason] = (await risk())["riskReasons"]
    assert reason.startswith("MONEY_HELD_WHILE_SUSPENDED"), reason
    assert "1,851.75 yuan" in reason

    await eventually(deployment.caught_up, "the projector to reach the end of every topic")
    got = await deployment.snapshot()
    assert len(got["orders"]) == 1 and len(got["finance_risk"]) == 1
    assert got == await deployment.replay()  # all three event stores, the same projections
    read_store = await deployment.read_store()
    assert await read_store.dump(PROCESS_REFUSALS.name) == []  # finance took every AssessRisk
    figures = await finance_figures()
    assert (figures["riskGreen"], figures["escrowBalance"]) == (0, "1851.75")


def served_lags(metrics: str) -> dict[tuple[str, str], float]:
    return {
        (sample.labels["topic"], sample.labels["partition"]): sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "shuangjian_projector_lag"
        for sample in family.samples
    }


async def generate(store: SQLiteEventStore, settings: Settings, total: int) -> None:
    """Exactly ``total`` events from the real command handlers: registrations, approvals, cards."""
    registry = Registry(store, REGIONS, POLICY, rectification_overdue=no_rectifications)
    ctx = CommandContext(actor="kafka-suite")
    n = 0
    while True:
        ident = f"i{n:03d}"
        steps: list[Any] = [numbered_registration(n)]
        if n % 2 == 0:
            steps.append(ApproveInstitution(id=ident, license_no=f"L{n}"))
        if n % 5 == 0:
            steps.append(IssueWarningCard(id=ident, color="YELLOW", reason="预收费超期"))
        for command in steps:
            room = total - await store.max_position()
            if room <= 0:
                return
            if room == 1 and isinstance(command, RegisterInstitution):
                # A registration stores two events (with its credit code's reservation):
                # one card fills the last place instead.
                command = IssueWarningCard(id="i000", color="YELLOW", reason="预收费超期")
            await registry.handle(command, ctx)
        n += 1


async def test_kill_9_one_of_two_projector_replicas_mid_stream_and_the_other_takes_over(
    deployment: Deployment,
) -> None:
    """5,000 events stream in to two replicas sharing the partitions; one dies without a
    chance to flush or commit, the group gives its partitions to the other, which applies
    everything from the last committed offsets: the read models equal a full replay."""
    total = 5_000
    # The risk watch in the projector sends finance an AssessRisk for every registration
    # and approval (over HTTP): without ``serve finance`` the projector would wait for it.
    await deployment.start(deployment.finance, deployment.projector, deployment.replica)
    source = SQLiteEventStore(deployment.workdir / "source.events.db")
    await source.start()
    bus = KafkaBus(deployment.bootstrap, topic_prefix=deployment.prefix, partitions=3)
    try:
        await generate(source, deployment.settings, total)
        events = await source.read_all(limit=total)
        assert len(events) == total
        await bus.start()
        for start in range(0, total, 500):  # as the relay would, a batch at a time
            await bus.publish(events[start : start + 500])

        async def applied() -> int:
            """Events applied; and Kafka never holds a committed offset beyond them."""
            group = f"{deployment.prefix}-projector"
            offsets = await committed(deployment.bootstrap, group, deployment.topic)
            positions = await deployment.positions(list(offsets))  # read after: only grows
            for partition, offset in offsets.items():
                reached = min(by_partition[partition] for by_partition in positions.values())
                assert offset <= reached, f"offset {offset} committed, {reached} applied"
            return sum(positions[InstitutionsProjection.name].values())

        group = f"{deployment.prefix}-projector"
        await eventually(
            lambda: _both_working(deployment, group), "both replicas to apply some events"
        )
        await eventually(lambda: _at_least(applied, 1_000), "the replicas to apply 1,000")
        deployment.projector.kill9()
        at_kill = await applied()
        assert 1_000 <= at_kill < total, at_kill  # killed mid-stream

        await eventually(lambda: _at_least(applied, total), "the surviving replica")
        await eventually(deployment.caught_up, "the surviving replica to catch up")

        got = await deployment.snapshot()
        assert got == await deployment.replay({"registry": source})
        docs = got[INSTITUTIONS.name]
        assert await stored_rollups(await deployment.read_store()) == recount(docs, REGIONS, POLICY)
        # About 2.7 events an institution: registration, reservation, some approvals, cards.
        assert len(docs) > 1_500 and any(doc["status"] == "APPROVED" for doc in docs)
        # The survivor has nothing left to apply in the partitions it served since.
        lags = served_lags(await deployment.metrics(deployment.replica_url))
        assert lags and all(lag == 0 for lag in lags.values()), lags
    finally:
        await bus.close()
        await source.close()


async def _both_working(deployment: Deployment, group: str) -> bool:
    """Each replica serves some of the partitions (the group has split them)."""
    first = served_lags(await deployment.metrics())
    second = served_lags(await deployment.metrics(deployment.replica_url))
    return bool(first) and bool(second)


async def _at_least(count: Callable[[], Awaitable[int]], wanted: int) -> bool:
    return await count() >= wanted


def registrations(prefix: str, count: int) -> list[tuple[str, dict[str, Any]]]:
    requests: list[tuple[str, dict[str, Any]]] = []
    for n in range(count):
        region = DISTRICTS[n % 2]  # both in 固原, so a 640400 operator may write them
        ident = f"{prefix}-{n}"
        requests.append(
            (
                "/v1/institutions",
                {
                    "id": ident,
                    "name": f"{prefix}机构{n}",
                    "credit_code": valid_credit_code(region, f"MB{n:07d}"),
                    "region": region,
                    "category": "NON_SUBJECT",
                    "non_subject_kind": "SPORTS",
                    "mode": "OFFLINE",
                },
            )
        )
        requests.append((f"/v1/institutions/{ident}/approve", {"license_no": f"体{n}"}))
    return requests


async def test_commands_are_accepted_while_kafka_is_down_and_all_arrive_once_it_is_back(
    deployment: Deployment,
) -> None:
    broker = deployment.broker
    await deployment.start()
    guyuan = deployment.token(Role.IMPORTER, "640400")
    data(await deployment.graphql(REGISTER, {"input": registration(id="before")}, token=guyuan))

    broker.down()
    accepted = await deployment.commands(registrations("outage", 20), token=guyuan)
    assert [r.status_code for r in accepted] == [201, 200] * 20, accepted[-1].text
    # Reads keep working from the read store; the new institutions are not there yet.
    stats = data(await deployment.graphql(STATS, {"code": "640400"}))
    assert stats["region"]["stats"]["institutions"]["approved"] == 0
    await eventually(
        lambda: "relay.retry" in deployment.registry.output,
        "the registry's relay to fail and back off",
    )

    broker.up()

    async def all_there() -> bool:
        stats = data(await deployment.graphql(STATS, {"code": "640400"}))
        return bool(stats["region"]["stats"]["institutions"]["approved"] == 20)

    await eventually(all_there, "every command accepted during the outage to be projected")
    await eventually(deployment.caught_up, "the projector to reach the end of the topic")
    assert await deployment.snapshot() == await deployment.replay()


async def registered_and_projected(deployment: Deployment, prefix: str, count: int) -> Snapshot:
    """Every process started, ``count`` institutions registered and approved over REST by
    a 固原 importer and projected: the read models then."""
    await deployment.start()
    guyuan = deployment.token(Role.IMPORTER, "640400")
    accepted = await deployment.commands(registrations(prefix, count), token=guyuan)
    assert all(r.status_code < 300 for r in accepted)
    await eventually(deployment.caught_up, "the projector to apply the registrations")
    return await deployment.snapshot()


async def test_every_event_delivered_twice_leaves_the_read_models_identical(
    deployment: Deployment,
) -> None:
    once = await registered_and_projected(deployment, "twice", 10)
    guyuan = deployment.token(Role.IMPORTER, "640400")
    assert once == await deployment.replay()

    # At-least-once delivery: the relay may send a batch again. Here: all of it.
    records = await read_topic(deployment.bootstrap, deployment.topic)
    # 10 registrations, each with its credit code's reservation, and 10 approvals.
    assert len(records) == 30
    await produce(
        deployment.bootstrap,
        deployment.topic,
        [(r.key, r.value, list(r.headers)) for r in records],
    )
    assert sum((await topic_ends(deployment.bootstrap, deployment.topic)).values()) == 60
    await eventually(deployment.caught_up, "the projector to apply the second delivery")
    assert await deployment.snapshot() == once

    # And the stream goes on as before.
    body = await deployment.graphql(APPROVE, {"id": "twice-0", "licenseNo": "X"}, token=guyuan)
    assert code_of(body) == "CONFLICT"  # approved already: the service still knows
    after = await deployment.graphql(REGISTER, {"input": registration(id="after")}, token=guyuan)
    assert data(after)["registerInstitution"]["status"] == "PENDING"


async def test_a_malformed_message_is_dead_lettered_and_later_events_still_apply(
    deployment: Deployment,
) -> None:
    await deployment.start()
    guyuan = deployment.token(Role.IMPORTER, "640400")
    # Same keys as the institutions registered next: same partitions, just before them.
    garbage = [
        (b"late-1", b"\x00 not an envelope", []),
        (b"late-2", json.dumps({"type": "registry.InstitutionRegistered"}).encode(), []),
    ]
    await produce(deployment.bootstrap, deployment.topic, garbage)
    for n, ident in enumerate(("late-1", "late-2")):
        code = valid_credit_code("640402", f"MC{n:07d}")  # one organisation each
        late = registration(id=ident, creditCode=code)
        body = await deployment.graphql(REGISTER, {"input": late}, token=guyuan)
        assert data(body)["registerInstitution"]["id"] == ident
    institution = data(await deployment.graphql(INSTITUTION, {"id": "late-2"}))
    assert institution["institution"]["status"] == "PENDING"

    letters = await read_topic(deployment.bootstrap, dead_letter_topic(deployment.prefix))
    assert len(letters) == 2
    bodies = {json.loads(letter.value or b"{}")["topic"] for letter in letters}
    assert bodies == {deployment.topic}
    reasons = sorted(dict(letter.headers)["reason"].decode() for letter in letters)
    assert reasons[0].startswith("id: Field required") and "stream: Field required" in reasons[0]
    assert reasons[1].startswith("not JSON"), reasons
    await eventually(deployment.caught_up, "the projector to move past the garbage")
    assert await deployment.snapshot() == await deployment.replay()


@real_only()  # the mock answers no DescribeGroups: the command refuses there, untouched
async def test_the_distributed_rebuild_waits_for_the_projector_to_stop_then_replays_the_topics(
    deployment: Deployment,
) -> None:
    before = await registered_and_projected(deployment, "rebuilt", 5)
    assert len(before[INSTITUTIONS.name]) == 5

    def rebuild() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SHUANGJIAN), "rebuild"],
            env=deployment.registry.env,
            cwd=deployment.workdir,
            capture_output=True,
            text=True,
            timeout=120,
        )

    refused = await asyncio.to_thread(rebuild)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "projector replica(s) consume as group" in refused.stderr
    assert await deployment.snapshot() == before  # nothing was touched

    deployment.projector.stop()  # leaves the group
    done = await asyncio.to_thread(rebuild)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Reset registry.institutions." in done.stdout
    assert (await deployment.snapshot())[INSTITUTIONS.name] == []
    group = f"{deployment.prefix}-projector"
    assert set((await committed(deployment.bootstrap, group, deployment.topic)).values()) == {0}

    await deployment.start(deployment.projector)
    await eventually(deployment.caught_up, "the projector to replay the topics")
    assert await deployment.snapshot() == before == await deployment.replay()
