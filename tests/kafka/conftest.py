"""A real Kafka-protocol broker for tests: librdkafka's mock cluster in the confluent-kafka wheel.

It runs inside the test process on loopback ports (no Java, no download); other processes
connect to it like to any Kafka. It does not answer CreateTopics: topics are created on
first use (auto-create), so clients must not insist on declaring them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer


class MockCluster:
    def __init__(self, brokers: int = 3) -> None:
        # The producer owns the cluster: it lives as long as this object does.
        self._owner = Producer({"test.mock.num.brokers": brokers, "log_level": 0})
        metadata = self._owner.list_topics(timeout=10)
        self.bootstrap = ",".join(f"{b.host}:{b.port}" for b in metadata.brokers.values())

    def close(self) -> None:
        self._owner.flush(1)
        del self._owner


@pytest.fixture
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a fresh broker: the mock cluster, or a real one if configured."""
    real = os.environ.get("SHUANGJIAN_TEST_KAFKA_BOOTSTRAP")
    if real:
        yield real
        return
    cluster = MockCluster()
    try:
        yield cluster.bootstrap
    finally:
        cluster.close()
