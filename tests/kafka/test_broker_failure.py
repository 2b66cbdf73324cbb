"""One broker of three killed (``kill -9``) and restarted while commands keep coming.

A real three-node KRaft cluster (``conftest.three_nodes``): the platform's topics have
replication 3 and the brokers ``min.insync.replicas`` 2, and the services publish with
``acks=all``. With one broker gone the other two go on taking every event; when it
comes back it catches up. Nothing accepted is lost, nothing is applied twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from aiokafka.admin import AIOKafkaAdminClient

from services.common.auth import Role
from services.common.envelope import Envelope
from services.common.kafka import dead_letter_topic
from tests.factories import DISTRICTS, valid_credit_code
from tests.kafka.brokers import ApacheKafka, real_only
from tests.kafka.deployment import PARTITIONS, Deployment, eventually, read_topic

pytestmark = real_only()

APPROVED = 'query { region(code: "640400") { stats { institutions { approved } } } }'


async def leader_of(bootstrap: str, topic: str, partition: int = 0) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (description,) = await admin.describe_topics([topic])
        return next(
            int(p["leader"]) for p in description["partitions"] if p["partition"] == partition
        )
    finally:
        await admin.close()


async def replicas_by_topic(bootstrap: str, topics: list[str]) -> dict[str, list[int]]:
    """Per topic, the number of replicas of each partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {d["topic"]: [len(p["replicas"]) for p in d["partitions"]] for d in described}


async def test_a_broker_of_three_killed_and_restarted_while_commands_keep_coming_loses_nothing(
    three_nodes: ApacheKafka, tmp_path: Path
) -> None:
    deployment = Deployment(tmp_path, three_nodes)
    assert deployment.settings.kafka_replication == 3
    cluster = three_nodes.cluster
    accepted: list[str] = []
    stop = asyncio.Event()

    async def keep_sending() -> None:
        """Register and approve institutions one after another until told to stop."""
        headers = {"Authorization": f"Bearer {deployment.token(Role.IMPORTER, '640400')}"}
        async with httpx.AsyncClient(base_url=deployment.registry_url, timeout=30) as client:
            n = 0
            while not stop.is_set():
                ident = f"b-{n}"
                region = DISTRICTS[n % 2]
                body = {
                    "id": ident,
                    "name": f"三节点机构{n}",
                    "credit_code": valid_credit_code(region, f"BK{n:07d}"),
                    "region": region,
                    "category": "NON_SUBJECT",
                    "non_subject_kind": "SPORTS",
                    "mode": "OFFLINE",
                }
                registered = await client.post("/v1/institutions", json=body, headers=headers)
                assert registered.status_code == 201, registered.text
                approve = {"license_no": f"体{n}"}
                approved = await client.post(
                    f"/v1/institutions/{ident}/approve", json=approve, headers=headers
                )
                assert approved.status_code == 200, approved.text
                accepted.append(ident)
                n += 1

    async def projected() -> int:
        body = await deployment.graphql(APPROVED)
        return int(body["data"]["region"]["stats"]["institutions"]["approved"])

    try:
        await deployment.start()
        # The platform made its topics itself: the configured partitions, 3 replicas each.
        topics = [*deployment.topics.values(), dead_letter_topic(deployment.prefix)]
        assert await replicas_by_topic(three_nodes.bootstrap, topics) == {
            topic: [3] * PARTITIONS for topic in topics
        }
        sender = asyncio.create_task(keep_sending())
        try:
            await eventually(lambda: len(accepted) >= 10, "the first commands")
            # The broker leading the registry topic's first partition, to make it count.
            victim = await leader_of(three_nodes.bootstrap, deployment.topic)
            cluster.kill(victim)
            at_kill = len(accepted)
            # Two brokers are an in-sync majority: events still flow all the way through.
            await eventually(lambda: len(accepted) >= at_kill + 20, "commands while one is down")
            target = len(accepted)
            await eventually(lambda: _reached(projected, target), "projection on two brokers")

            await asyncio.to_thread(cluster.start_node, victim)
            at_return = len(accepted)
            await eventually(lambda: len(accepted) >= at_return + 10, "commands after it returned")
        finally:
            stop.set()
            await sender

        total = len(accepted)
        await eventually(lambda: _reached(projected, total), "every accepted command projected")
        assert await projected() == total  # each once
        await eventually(deployment.caught_up, "the projector to reach the end of the topics")
        assert await deployment.snapshot() == await deployment.replay()

        stores = await deployment.event_stores()
        try:
            stored = await stores["registry"].read_all(limit=100_000)
        finally:
            for store in stores.values():
                await store.close()
        records = await read_topic(three_nodes.bootstrap, deployment.topic)
        in_topic = {Envelope.from_json(r.value or b"").id for r in records}
        assert {e.id for e in stored} <= in_topic
    finally:
        await deployment.close()
        print(deployment.output)


async def _reached(count: Callable[[], Awaitable[int]], wanted: int) -> bool:
    return await count() >= wanted
