"""librdkafka's mock cluster, driven through its C API so tests can take brokers down.

DESIGN.md starts the mock cluster with ``Producer({"test.mock.num.brokers": 3})``; that
gives a real Kafka-protocol broker but no handle on it. The same librdkafka shared object
(bundled in the ``confluent-kafka`` wheel) exports the mock API itself, so this module
makes the cluster through ``ctypes`` and keeps its handle: ``down()`` disconnects every
broker and refuses new connections while keeping every topic and offset, and ``up()``
lets clients back in. A genuine outage of a live cluster, for the fault tests.

The cluster runs on librdkafka's own threads inside the test process, on loopback ports;
other processes connect to it like to any Kafka.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import confluent_kafka

_RD_KAFKA_PRODUCER = 0


def _library() -> ctypes.CDLL:
    """The librdkafka that confluent-kafka loads (the wheel's, under ``confluent_kafka.libs``)."""
    package = Path(confluent_kafka.__file__).resolve().parent
    candidates = sorted((package.parent / "confluent_kafka.libs").glob("librdkafka*.so*"))
    if not candidates:
        raise RuntimeError("librdkafka not found next to confluent_kafka (a manylinux wheel?)")
    lib = ctypes.CDLL(str(candidates[0]))
    lib.rd_kafka_conf_new.restype = ctypes.c_void_p
    lib.rd_kafka_conf_set.restype = ctypes.c_int
    lib.rd_kafka_conf_set.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
    ]
    lib.rd_kafka_new.restype = ctypes.c_void_p
    lib.rd_kafka_new.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_destroy.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_cluster_new.restype = ctypes.c_void_p
    lib.rd_kafka_mock_cluster_new.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_mock_cluster_destroy.argtypes = [ctypes.c_void_p]
    for name in ("rd_kafka_mock_broker_set_down", "rd_kafka_mock_broker_set_up"):
        function = getattr(lib, name)
        function.restype = ctypes.c_int
        function.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.rd_kafka_mock_topic_create.restype = ctypes.c_int
    lib.rd_kafka_mock_topic_create.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_int,
    ]
    return lib


class MockCluster:
    """A mock Kafka cluster of ``brokers`` brokers (ids 1..n) on loopback ports."""

    def __init__(self, brokers: int = 3) -> None:
        self._lib = _library()
        self.brokers = brokers
        errors = ctypes.create_string_buffer(512)
        conf = self._lib.rd_kafka_conf_new()
        for key, value in (("log_level", "0"), ("bootstrap.servers", "")):
            self._lib.rd_kafka_conf_set(conf, key.encode(), value.encode(), errors, len(errors))
        # The cluster's owner: a client handle that never connects anywhere itself.
        self._rk = self._lib.rd_kafka_new(_RD_KAFKA_PRODUCER, conf, errors, len(errors))
        if not self._rk:
            raise RuntimeError(f"rd_kafka_new failed: {errors.value.decode()}")
        self._cluster = self._lib.rd_kafka_mock_cluster_new(self._rk, brokers)
        if not self._cluster:
            self._lib.rd_kafka_destroy(self._rk)
            raise RuntimeError("rd_kafka_mock_cluster_new failed")
        self.bootstrap: str = self._lib.rd_kafka_mock_cluster_bootstraps(self._cluster).decode()

    def create_topic(self, name: str, partitions: int, replication: int = 1) -> None:
        """Pre-create a topic (the mock does not answer CreateTopics requests)."""
        error = self._lib.rd_kafka_mock_topic_create(
            self._cluster, name.encode(), partitions, replication
        )
        if error:
            raise RuntimeError(f"creating topic {name!r} failed with librdkafka error {error}")

    def down(self) -> None:
        """Disconnect every broker and refuse new connections; the data stays."""
        for broker in range(1, self.brokers + 1):
            self._lib.rd_kafka_mock_broker_set_down(self._cluster, broker)

    def up(self) -> None:
        for broker in range(1, self.brokers + 1):
            self._lib.rd_kafka_mock_broker_set_up(self._cluster, broker)

    def close(self) -> None:
        if self._cluster:
            self._lib.rd_kafka_mock_cluster_destroy(self._cluster)
            self._cluster = None
        if self._rk:
            self._lib.rd_kafka_destroy(self._rk)
            self._rk = None
