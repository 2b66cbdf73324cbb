"""A real Kafka-protocol broker for tests: librdkafka's mock cluster in the confluent-kafka wheel.

It runs inside the test process on loopback ports (no Java, no download); other processes
connect to it like to any Kafka. It does not answer CreateTopics: topics are created on
first use (auto-create) or up front through ``MockCluster.create_topic``, so clients must
not insist on declaring them.

``SHUANGJIAN_TEST_KAFKA_BOOTSTRAP`` points the same tests at a real cluster instead; the
tests that need to take brokers down are skipped then, with that reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.kafka.mock import MockCluster

REAL_KAFKA = os.environ.get("SHUANGJIAN_TEST_KAFKA_BOOTSTRAP")


@pytest.fixture
def kafka_cluster() -> Iterator[MockCluster | None]:
    """A fresh mock cluster (its brokers can be taken down), or None on a configured Kafka."""
    if REAL_KAFKA:
        yield None
        return
    cluster = MockCluster()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def kafka_bootstrap(kafka_cluster: MockCluster | None) -> str:
    """Bootstrap servers of the test's broker: the mock cluster, or a real one if configured."""
    if REAL_KAFKA:
        return REAL_KAFKA
    assert kafka_cluster is not None
    return kafka_cluster.bootstrap
