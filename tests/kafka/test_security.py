"""Kafka over SASL_SSL (SCRAM-SHA-512 over TLS), against a real broker that has no other
client listener (``conftest.sasl_ssl``; certificates made by ``tests/brokers/tls.py``).

The platform works end to end with the right credentials and CA; with a wrong password or
a broker certificate it has no reason to trust it says so, naming the setting to fix, and
keeps every accepted command's events in the outbox until it can deliver them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from structlog.testing import capture_logs

from services.common.auth import Role
from services.common.envelope import Envelope
from services.common.kafka import KafkaBus, KafkaTail, events_topic
from services.common.kafka_security import KafkaSecurity
from services.common.relay import OutboxRelay
from services.common.sqlite import SQLiteEventStore
from tests.brokers.kafka import SaslSsl
from tests.factories import commit, registration, valid_credit_code
from tests.kafka.brokers import ApacheKafka, real_only
from tests.kafka.deployment import Deployment, eventually, read_topic

pytestmark = real_only()

REGISTER = """
mutation($input: RegisterInstitutionInput!) {
  registerInstitution(input: $input) { id status }
}"""
APPROVE = """
mutation($id: ID!, $licenseNo: String!) {
  approveInstitution(id: $id, licenseNo: $licenseNo) { id status }
}"""
COUNTS = 'query { region(code: "640400") { stats { institutions { approved } } } }'


def security_of(broker: ApacheKafka, **changes: Any) -> KafkaSecurity:
    """The platform's settings for the broker's listener (its first SCRAM user)."""
    tls = broker.security
    assert tls is not None
    values: dict[str, Any] = {
        "protocol": "SASL_SSL",
        "mechanism": SaslSsl.mechanism,
        "username": tls.username,
        "password": tls.password,
        "cafile": tls.ca_file,
    }
    return KafkaSecurity(**(values | changes))


def settings_of(security: KafkaSecurity) -> dict[str, Any]:
    """The same as ``SHUANGJIAN_KAFKA_*`` settings."""
    return {
        "kafka_security_protocol": security.protocol,
        "kafka_sasl_mechanism": security.mechanism,
        "kafka_sasl_username": security.username,
        "kafka_sasl_password": security.password,
        "kafka_ssl_cafile": security.cafile,
    }


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteEventStore]:
    store = SQLiteEventStore(tmp_path / "registry.events.db")
    await store.start()
    yield store
    await store.close()


async def test_the_platform_runs_end_to_end_over_sasl_ssl(
    sasl_ssl: ApacheKafka, tmp_path: Path
) -> None:
    """Services, projector (faust) and gateway all authenticate; read-your-writes holds."""
    deployment = Deployment(tmp_path, sasl_ssl, **settings_of(security_of(sasl_ssl)))
    try:
        await deployment.start()
        guyuan = deployment.token(Role.IMPORTER, "640400")
        for n in range(3):
            body = await deployment.graphql(
                REGISTER,
                {
                    "input": registration(
                        id=f"tls-{n}", creditCode=valid_credit_code("640402", f"TL{n:07d}")
                    )
                },
                token=guyuan,
            )
            assert body.get("errors") is None, body
            approved = await deployment.graphql(
                APPROVE, {"id": f"tls-{n}", "licenseNo": f"教{n}"}, token=guyuan
            )
            assert approved["data"]["approveInstitution"]["status"] == "APPROVED", approved
        counts = await deployment.graphql(COUNTS)
        assert counts["data"]["region"]["stats"]["institutions"]["approved"] == 3
        await eventually(deployment.caught_up, "the projector to reach the end of the topics")
        assert await deployment.snapshot() == await deployment.replay()
    finally:
        await deployment.close()
        print(deployment.output)


async def test_the_bus_and_the_live_tail_authenticate(sasl_ssl: ApacheKafka) -> None:
    prefix = f"t{uuid4().hex[:12]}"
    security = security_of(sasl_ssl)
    bus = KafkaBus(sasl_ssl.bootstrap, topic_prefix=prefix, partitions=2, security=security)
    tail = KafkaTail(
        sasl_ssl.bootstrap,
        [events_topic(prefix, "registry")],
        discovery_interval=0.1,
        security=security,
    )
    events = commit(f"s-{uuid4().hex[:6]}", 0, 3)
    try:
        await bus.start()
        await bus.publish(events[:1])  # creates the topics through the admin API
        subscription = tail.subscribe()
        async with asyncio.timeout(30):
            await tail.wait_live()
            await bus.publish(events[1:])
            received: list[Envelope] = []
            async for event in subscription:
                received.append(event)
                if len(received) == 2:
                    break
        assert received == events[1:]
    finally:
        await tail.close()
        await bus.close()


async def test_a_wrong_password_keeps_the_commands_in_the_outbox_and_says_which_setting(
    sasl_ssl: ApacheKafka, tmp_path: Path
) -> None:
    wrong = settings_of(security_of(sasl_ssl, password="not-the-password"))
    deployment = Deployment(tmp_path, sasl_ssl, **wrong)
    registry = deployment.registry
    try:
        await deployment.start(registry)
        guyuan = deployment.token(Role.IMPORTER, "640400")
        accepted = await deployment.commands(
            [
                (
                    "/v1/institutions",
                    {
                        **snake(
                            registration(
                                id=f"pw-{n}", creditCode=valid_credit_code("640402", f"PW{n:07d}")
                            )
                        )
                    },
                )
                for n in range(3)
            ],
            token=guyuan,
        )
        assert [r.status_code for r in accepted] == [201] * 3, accepted[-1].text

        async def waiting() -> bool:
            async with httpx.AsyncClient() as client:
                health = (await client.get(f"{deployment.registry_url}/healthz")).json()
            return health.get("outbox") == "waiting" and "SASL_PASSWORD" in health["reason"]

        await eventually(waiting, "/healthz to say the outbox waits for the password")
        assert "SHUANGJIAN_KAFKA_SASL_PASSWORD" in registry.last_output
        assert not await deployment.published()

        # A projector with the same settings will never get in: it says why and exits.
        projector = deployment.projector
        projector.start(wait=False)
        assert projector.process is not None
        exit_code = await asyncio.to_thread(projector.process.wait, 60)
        assert exit_code != 0
        assert "refused SASL SCRAM-SHA-512 authentication" in projector.last_output
        assert "SHUANGJIAN_KAFKA_SASL_PASSWORD" in projector.last_output

        # Fixed: the same data dir, the right password; everything accepted goes out.
        registry.stop()
        registry.env["SHUANGJIAN_KAFKA_SASL_PASSWORD"] = security_of(sasl_ssl).password or ""
        await deployment.start(registry)
        await eventually(deployment.published, "the outbox to empty")
        records = await read_topic(
            sasl_ssl.bootstrap, events_topic(deployment.prefix, "registry"), **sasl_ssl.client
        )
        stored = await all_events(deployment)
        assert sorted(Envelope.from_json(r.value or b"").id for r in records) == sorted(
            e.id for e in stored
        )
        assert len(stored) == 6  # three registrations, each with its credit code's reservation
    finally:
        await deployment.close()
        print(deployment.output)


async def test_an_untrusted_broker_certificate_is_refused_and_nothing_is_lost(
    sasl_ssl: ApacheKafka, store: SQLiteEventStore
) -> None:
    tls = sasl_ssl.security
    assert tls is not None and tls.untrusted_ca_file is not None
    prefix = f"t{uuid4().hex[:12]}"
    untrusted = security_of(sasl_ssl, cafile=tls.untrusted_ca_file)
    bus = KafkaBus(
        sasl_ssl.bootstrap,
        topic_prefix=prefix,
        security=untrusted,
        request_timeout_ms=2_000,
        publish_timeout=3.0,
    )
    relay = OutboxRelay(store, bus, name="registry", poll_interval=0.05, max_backoff=0.2)
    events = commit(f"s-{uuid4().hex[:6]}", 0, 2)
    await store.append(events, expected_version=0)
    await bus.start()
    relay.start()
    try:
        await eventually(lambda: relay.last_error is not None, "the relay to fail", 30)
        assert relay.last_error is not None
        assert "certificate is not trusted" in relay.last_error
        assert "SHUANGJIAN_KAFKA_SSL_CAFILE" in relay.last_error
        assert [e.id for e in await store.unpublished()] == [e.id for e in events]
    finally:
        await relay.stop()
        await bus.close()

    # The live tail says the same, and keeps trying.
    tail = KafkaTail(sasl_ssl.bootstrap, [events_topic(prefix, "registry")], security=untrusted)
    with capture_logs() as logs:
        tail.subscribe()
        await eventually(
            lambda: any(entry["event"] == "kafka.tail.refused" for entry in logs),
            "the tail to log the refusal",
            30,
        )
        await tail.close()
    refusal = next(entry for entry in logs if entry["event"] == "kafka.tail.refused")
    assert "not trusted" in refusal["error"]

    # With the right CA the same outbox is delivered whole.
    trusted = KafkaBus(sasl_ssl.bootstrap, topic_prefix=prefix, security=security_of(sasl_ssl))
    await trusted.start()
    try:
        await OutboxRelay(store, trusted, name="registry").drain()
    finally:
        await trusted.close()
    assert await store.unpublished() == []
    records = await read_topic(
        sasl_ssl.bootstrap, events_topic(prefix, "registry"), **sasl_ssl.client
    )
    assert [Envelope.from_json(r.value or b"").id for r in records] == [e.id for e in events]


def snake(graphql_input: dict[str, Any]) -> dict[str, Any]:
    """A GraphQL registration input as the REST API's body (snake_case fields)."""
    return {
        "".join(f"_{c.lower()}" if c.isupper() else c for c in key): value
        for key, value in graphql_input.items()
    }


async def all_events(deployment: Deployment) -> list[Envelope]:
    stores = await deployment.event_stores()
    try:
        return await stores["registry"].read_all()
    finally:
        for store in stores.values():
            await store.close()
