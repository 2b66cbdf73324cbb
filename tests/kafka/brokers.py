"""The brokers the Kafka suite can run on, behind one small interface.

* ``ApacheKafka``: a real Apache Kafka (``tests.brokers.kafka``), started on loopback when
  ``java`` and ``mvn`` exist (on this project's machines and in CI). Topics are not
  auto-created: the platform creates its own through the admin API, as in production.
* ``MockKafka``: librdkafka's mock cluster (``tests.kafka.mock``), elsewhere. It does not
  answer CreateTopics, so the suite pre-creates topics through its C API (``create_topics``)
  and tells the platform not to create them (``creates_topics``).
* ``ExistingKafka``: ``SHUANGJIAN_TEST_KAFKA_BOOTSTRAP``, a cluster someone else runs; the
  tests that take brokers down are skipped on it (with that reason).

``down()`` is a genuine outage with the data kept (the real broker is SIGKILLed and later
restarted on the same ports and log dirs; the mock's brokers refuse connections).
"""

from __future__ import annotations

import abc
import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from tests.brokers import kafka as apache
from tests.kafka.mock import MockCluster

EXISTING = os.environ.get("SHUANGJIAN_TEST_KAFKA_BOOTSTRAP")
# ``mock`` runs the suite on the mock cluster even where a real Kafka could be started
# (what a machine without Java gets), to check that path.
FORCED = os.environ.get("SHUANGJIAN_TEST_KAFKA", "").strip().lower()


USED: list[str] = []  # what this run's Kafka tests ran on, for the summary line


class Broker(abc.ABC):
    """One Kafka the tests share; every test uses its own topic prefix on it."""

    bootstrap: str
    nodes: int
    creates_topics: bool = True  # answers CreateTopics (the platform creates its topics)
    client: dict[str, Any] = {}  # noqa: RUF012 - aiokafka options of a test's own clients

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """One line for the report header."""

    @property
    def replication(self) -> int:
        """The replication factor a topic can have here."""
        return min(3, self.nodes)

    @abc.abstractmethod
    def down(self) -> None:
        """Every broker stops serving (connections refused); topics and offsets are kept."""

    @abc.abstractmethod
    def up(self) -> None:
        """Serving again (a no-op when it is up)."""

    async def create_topics(self, names: Sequence[str], partitions: int) -> None:
        """Create topics (those that exist are left as they are), as an operator would."""
        await create_topics(self.bootstrap, names, partitions, self.replication, **self.client)

    def close(self) -> None:
        """Stop what the suite started."""


class ApacheKafka(Broker):
    def __init__(
        self, workdir: Path, nodes: int = 1, security: apache.SaslSsl | None = None
    ) -> None:
        self.cluster = apache.KafkaCluster(workdir, nodes=nodes, security=security).start()
        self.bootstrap = self.cluster.bootstrap
        self.nodes = self.cluster.nodes
        self.security = security
        # What a client of the tests needs to connect (SASL_SSL: the first user).
        self.client: dict[str, Any] = security.aiokafka_options() if security else {}
        USED.append(self.description)

    @property
    def description(self) -> str:
        listener = "SASL_SSL" if self.security else "PLAINTEXT"
        nodes = f"{self.nodes} node" + ("s" if self.nodes > 1 else "")
        return (
            f"Apache Kafka {apache.KAFKA_VERSION} (KRaft, {nodes}, {listener}) at {self.bootstrap}"
        )

    def down(self) -> None:
        for node in self.cluster.node_ids:
            if self.cluster.is_running(node):
                self.cluster.kill(node)

    def up(self) -> None:
        for node in self.cluster.node_ids:
            if not self.cluster.is_running(node):
                self.cluster.start_node(node)

    def close(self) -> None:
        self.cluster.stop()


class MockKafka(Broker):
    creates_topics = False

    def __init__(self) -> None:
        self.cluster = MockCluster(brokers=3)
        self.bootstrap = self.cluster.bootstrap
        self.nodes = self.cluster.brokers
        self._down = False

    @property
    def description(self) -> str:
        why = apache.reason or "SHUANGJIAN_TEST_KAFKA=mock"
        return f"librdkafka's mock cluster (3 brokers), not a real Kafka: {why}"

    def down(self) -> None:
        self.cluster.down()
        self._down = True

    def up(self) -> None:
        if self._down:
            self.cluster.up()
            self._down = False

    async def create_topics(self, names: Sequence[str], partitions: int) -> None:
        for name in names:
            self.cluster.create_topic(name, partitions, self.replication)

    def close(self) -> None:
        self.cluster.close()


class ExistingKafka(Broker):
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.nodes = asyncio.run(_brokers(bootstrap))  # a one-broker compose stack: 1

    @property
    def description(self) -> str:
        return f"an existing Kafka at {self.bootstrap} (SHUANGJIAN_TEST_KAFKA_BOOTSTRAP)"

    def down(self) -> None:
        pytest.skip("cannot take down an existing cluster (SHUANGJIAN_TEST_KAFKA_BOOTSTRAP)")

    def up(self) -> None:
        pass


def choice() -> str:
    """Which broker this run uses: ``existing``, ``apache`` or ``mock``."""
    if EXISTING:
        return "existing"
    if FORCED == "mock":
        return "mock"
    return "apache" if apache.available() else "mock"


def describe_choice() -> str:
    """The report header's line, before any broker started."""
    if EXISTING:
        return f"kafka: an existing cluster at {EXISTING} (SHUANGJIAN_TEST_KAFKA_BOOTSTRAP)"
    if choice() == "apache":
        return f"kafka: real Apache Kafka {apache.KAFKA_VERSION} (KRaft) started by the suite"
    why = apache.reason or "SHUANGJIAN_TEST_KAFKA=mock"
    return f"kafka: librdkafka's mock cluster, not a real Kafka ({why})"


def open_broker(workdir: Path) -> Broker:
    kind = choice()
    broker: Broker
    if kind == "existing":
        assert EXISTING is not None
        broker = ExistingKafka(EXISTING)
    elif kind == "apache":
        return ApacheKafka(workdir)  # noted by itself, as the suite's other clusters are
    else:
        broker = MockKafka()
    USED.append(broker.description)
    return broker


def summary() -> str:
    """The line the run ends with: the broker the Kafka tests used, or that none ran."""
    if not USED:
        return "kafka: no Kafka test ran"
    return "kafka: the Kafka tests ran on " + "; ".join(USED)


def real_only() -> pytest.MarkDecorator:
    """For tests that need brokers of their own (several nodes, SASL_SSL listeners)."""
    return pytest.mark.skipif(
        choice() != "apache",
        reason=f"needs a real Kafka the suite starts itself: {apache.reason or 'not chosen'}",
    )


async def create_topics(
    bootstrap: str, names: Sequence[str], partitions: int, replication: int, **client: Any
) -> None:
    """CreateTopics through the admin API; topics that exist already are fine."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client)
    async with asyncio.timeout(60):
        await admin.start()
        try:
            response = await admin.create_topics(
                [NewTopic(name, partitions, replication) for name in names]
            )
        finally:
            await admin.close()
    for entry in response.topic_errors:
        error = for_code(entry[1])
        if entry[1] != 0 and error is not TopicAlreadyExistsError:
            raise RuntimeError(f"creating topic {entry[0]} failed: {error.__name__}")


async def _brokers(bootstrap: str) -> int:
    """How many brokers the cluster at ``bootstrap`` has now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    async with asyncio.timeout(60):
        await admin.start()
        try:
            cluster = await admin.describe_cluster()
        finally:
            await admin.close()
    return len(cluster["brokers"])
