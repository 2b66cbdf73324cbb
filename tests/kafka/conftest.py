"""The Kafka the suite runs on: a real Apache Kafka where Java and Maven exist, librdkafka's
mock cluster elsewhere, or an existing cluster named by ``SHUANGJIAN_TEST_KAFKA_BOOTSTRAP``.

Which one is decided once per run (``tests.kafka.brokers.choice``) and printed in the
report header. The broker is started once per session (per pytest-xdist worker) and shared:
every test uses its own topic prefix. The tests that take the broker down bring it back
before the next test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from services.bootstrap import topology
from services.common.config import Settings
from tests.brokers.kafka import SaslSsl
from tests.kafka.brokers import ApacheKafka, Broker, open_broker


@pytest.fixture(scope="session")
def _session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    broker = open_broker(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
def kafka_broker(_session_broker: Broker) -> Iterator[Broker]:
    """The session's broker, up again after the test whatever the test did to it."""
    yield _session_broker
    _session_broker.up()


@pytest.fixture
def kafka_bootstrap(kafka_broker: Broker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture
async def kafka_settings(kafka_broker: Broker, tmp_path: Path) -> Settings:
    """Settings of a platform on the suite's broker under a fresh topic prefix, whose
    topics exist (as the services' buses create them before the first event)."""
    settings = Settings(  # type: ignore[call-arg]
        kafka_bootstrap=kafka_broker.bootstrap,
        kafka_topic_prefix=f"t{uuid4().hex[:12]}",
        kafka_replication=kafka_broker.replication,
        kafka_create_topics=kafka_broker.creates_topics,
        data_dir=tmp_path,
        _env_file=None,
    )
    topics = topology(settings)
    await kafka_broker.create_topics(
        [*topics.event_topics, topics.dead_letters], settings.kafka_partitions
    )
    return settings


# The two clusters below serve one module each: they stop when it ends (module scope), as
# idle JVMs kept to the end of the session would take CPU from the rest of the run (three
# nodes: ~10% of a core).


@pytest.fixture(scope="module")
def three_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    """A real three-node cluster (``min.insync.replicas`` 2) whose brokers a test may kill."""
    broker = ApacheKafka(tmp_path_factory.mktemp("kafka-3"), nodes=3)
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="module")
def sasl_ssl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApacheKafka]:
    """A real broker whose client listener is SASL_SSL (SCRAM-SHA-512) only, with
    certificates made for the test (``tests/brokers/tls.py``)."""
    workdir = tmp_path_factory.mktemp("kafka-sasl")
    broker = ApacheKafka(workdir, security=SaslSsl.generate(workdir / "tls"))
    try:
        yield broker
    finally:
        broker.close()
