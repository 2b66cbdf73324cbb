"""The real-Kafka tool itself (``tests.brokers.kafka``): one node, three nodes, SASL_SSL.

Skipped only when ``java`` or ``mvn`` is missing; the first run fills the jar cache.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed

from tests.brokers.kafka import BrokerError, KafkaCluster, SaslSsl, available, reason

pytestmark = pytest.mark.skipif(not available(), reason=reason)

WITHIN = 30.0
T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = WITHIN
) -> T:
    """Await ``probe`` until it returns something other than None, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)


async def admin_client(bootstrap: str, **options: Any) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
    await admin.start()
    return admin


async def partitions(admin: AIOKafkaAdminClient, topic: str) -> list[dict[str, Any]]:
    """The topic's partitions once every one has a leader (metadata follows creation)."""

    async def described() -> list[dict[str, Any]] | None:
        (found,) = await admin.describe_topics([topic])
        parts: list[dict[str, Any]] = found["partitions"]
        return parts if parts and all(p["leader"] >= 0 for p in parts) else None

    return await eventually(described, f"topic {topic} in the metadata")


async def produce(bootstrap: str, topic: str, values: list[bytes], **options: Any) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **options)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def consume_all(
    bootstrap: str, partition: TopicPartition, count: int, **options: Any
) -> list[bytes]:
    """The first ``count`` values of one partition, read from the beginning."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **options)
    await consumer.start()
    try:
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        values: list[bytes] = []
        async with asyncio.timeout(WITHIN):
            while len(values) < count:
                batches = await consumer.getmany(partition, timeout_ms=500)
                values += [record.value for record in batches.get(partition, []) if record.value]
        return values
    finally:
        await consumer.stop()


async def test_one_node_creates_topics_and_carries_messages(tmp_path: Path) -> None:
    with KafkaCluster(tmp_path) as cluster:
        assert cluster.bootstrap == cluster.address(1)
        admin = await admin_client(cluster.bootstrap)
        try:
            await admin.create_topics([NewTopic("orders", num_partitions=3, replication_factor=1)])
            assert len(await partitions(admin, "orders")) == 3
        finally:
            await admin.close()

        await produce(cluster.bootstrap, "orders", [b"hello"])
        consumer = AIOKafkaConsumer(
            "orders",
            bootstrap_servers=cluster.bootstrap,
            group_id="tool-test",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            async with asyncio.timeout(WITHIN):
                record = await consumer.getone()
        finally:
            await consumer.stop()
        assert record.value == b"hello"


def test_a_node_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    cluster = KafkaCluster(tmp_path)
    port = int(cluster.address(1).rsplit(":", 1)[1])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(BrokerError, match="exited") as failure:
            cluster.start()
    assert "Address already in use" in str(failure.value)
    assert not cluster.is_running(1)


async def test_three_nodes_keep_acks_all_writes_through_a_killed_broker(tmp_path: Path) -> None:
    with KafkaCluster(tmp_path, nodes=3) as cluster:
        assert len(cluster.bootstrap.split(",")) == 3
        admin = await admin_client(cluster.bootstrap)
        try:
            await admin.create_topics(
                [
                    NewTopic(
                        "ledger",
                        num_partitions=1,
                        replication_factor=3,
                        topic_configs={"min.insync.replicas": "2"},
                    )
                ]
            )
            (partition,) = await partitions(admin, "ledger")
            leader = partition["leader"]
            assert sorted(partition["replicas"]) == [1, 2, 3]
        finally:
            await admin.close()

        await produce(cluster.bootstrap, "ledger", [b"before-1", b"before-2"])
        cluster.kill(leader)
        assert not cluster.is_running(leader)
        # Two of three replicas left: acks=all with min.insync.replicas=2 still succeeds.
        await produce(cluster.bootstrap, "ledger", [b"during-1", b"during-2"])

        cluster.restart(leader)
        admin = await admin_client(cluster.bootstrap)
        try:

            async def rejoined() -> bool | None:
                brokers = (await admin.describe_cluster())["brokers"]
                (partition,) = await partitions(admin, "ledger")
                in_sync = partition["isr"]
                return True if len(brokers) == 3 and sorted(in_sync) == [1, 2, 3] else None

            await eventually(rejoined, "the restarted broker back in metadata and in sync")
        finally:
            await admin.close()

        values = await consume_all(cluster.bootstrap, TopicPartition("ledger", 0), 4)
        assert values == [b"before-1", b"before-2", b"during-1", b"during-2"]


# SASL_SSL: one cluster for the module (these tests come last, so it runs alone).


@pytest.fixture(scope="module")
def security(tmp_path_factory: pytest.TempPathFactory) -> SaslSsl:
    return SaslSsl.generate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def sasl_cluster(
    tmp_path_factory: pytest.TempPathFactory, security: SaslSsl
) -> Iterator[KafkaCluster]:
    with KafkaCluster(tmp_path_factory.mktemp("kafka-sasl"), security=security) as cluster:
        yield cluster


@pytest.fixture
async def connect(
    sasl_cluster: KafkaCluster, security: SaslSsl
) -> AsyncIterator[Callable[..., Awaitable[object]]]:
    """Open one raw connection (TLS and SASL handshakes included) to the node."""
    host, port = sasl_cluster.address(1).rsplit(":", 1)
    opened: list[Any] = []

    async def connect(**overrides: Any) -> object:
        options = {**security.aiokafka_options(), **overrides}
        connection = await create_conn(host, int(port), **options)
        opened.append(connection)
        return connection

    yield connect
    for connection in opened:
        connection.close()


async def test_a_scram_user_over_tls_produces_and_consumes(
    sasl_cluster: KafkaCluster, security: SaslSsl
) -> None:
    admin = await admin_client(sasl_cluster.bootstrap, **security.aiokafka_options())
    try:
        await admin.create_topics([NewTopic("secure", num_partitions=1, replication_factor=1)])
        await partitions(admin, "secure")
    finally:
        await admin.close()
    user = "shuangjian"
    await produce(sasl_cluster.bootstrap, "secure", [b"secret"], **security.aiokafka_options(user))
    values = await consume_all(
        sasl_cluster.bootstrap,
        TopicPartition("secure", 0),
        1,
        **security.aiokafka_options(user),
    )
    assert values == [b"secret"]


async def test_a_wrong_password_is_an_authentication_failure(
    sasl_cluster: KafkaCluster,
    security: SaslSsl,
    connect: Callable[..., Awaitable[object]],
) -> None:
    with pytest.raises(SaslAuthenticationFailed):
        await connect(sasl_plain_password="not-the-password")
    producer = AIOKafkaProducer(
        bootstrap_servers=sasl_cluster.bootstrap,
        **security.aiokafka_options(password="not-the-password"),
    )
    with pytest.raises(KafkaConnectionError):
        await producer.start()
    await producer.stop()


async def test_a_client_trusting_another_ca_rejects_the_certificate(
    security: SaslSsl, connect: Callable[..., Awaitable[object]]
) -> None:
    assert security.untrusted_ca_file is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(ssl_context=security.ssl_context(security.untrusted_ca_file))
