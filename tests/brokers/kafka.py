"""A real Apache Kafka (KRaft mode, no ZooKeeper, no Docker) for the test suite.

The broker's jars come from Maven Central through the local ``mvn`` (``resolve``) and are
cached in ``<repo>/.cache/kafka/<version>/libs``; ``java`` runs them. Nothing else is needed.

API
===

``KAFKA_VERSION``
    The pinned Kafka version (``LOG4J_VERSION``: the log4j it runs with).
``available() -> bool`` and ``reason: str``
    Whether ``java`` (17+) and ``mvn`` are on PATH; ``reason`` says what is missing (a skip).
``resolve(cache: Path = DEFAULT_CACHE) -> Path``
    The directory holding the broker's jars, filling the cache on first use (a pom generated
    into ``<cache>/<version>/``, ``mvn dependency:copy-dependencies``). Safe to call from
    several processes at once (a file lock; the jars go into a temporary directory that is
    renamed into place). Raises ``BrokerError`` with the tail of Maven's output.
``KafkaCluster(workdir, nodes=1, *, security=None, auto_create_topics=False, config=None,
cache=DEFAULT_CACHE)``
    ``nodes`` combined broker+controller JVMs on 127.0.0.1, node ids ``1..nodes``, free ports
    picked at construction. ``config`` adds or overrides broker properties (every node).

    - ``start() -> Self``: formats the storage (first time), starts every node that is not
      running, all at once, and returns when each node answers a metadata request (on its
      client listener, with the credentials if any) listing every running broker; raises
      ``BrokerError`` with the first errors and the tail of the node's log if a node exits or
      is not ready within ``READY_WITHIN`` (60 s). It blocks; any thread may call it
      (``asyncio.to_thread`` included).
    - ``bootstrap: str`` (``"127.0.0.1:p1,127.0.0.1:p2,..."``), ``nodes: int``,
      ``node_ids: list[int]``, ``address(node_id) -> str``, ``is_running(node_id) -> bool``,
      ``log_file(node_id) -> Path``, ``cluster_id: str``, ``workdir: Path``.
    - ``kill(node_id)``: SIGKILL, data kept. ``stop_node(node_id)``: SIGTERM (SIGKILL after
      ``STOP_WITHIN``, 15 s).
    - ``start_node(node_id)``: same ports and data; returns once the node serves clients again
      (its client listener opens only after the controller has unfenced it, so this also means
      "back in the metadata"). After a ``kill`` this takes the JVM start plus what is left of
      the dead incarnation's session (``broker.session.timeout.ms``, 4 s): the controller
      refuses the new registration until then. ``restart(node_id, *, kill=False)``:
      ``stop_node`` (or ``kill``) if running, then ``start_node``.
    - ``stop()``: SIGTERM to every node, SIGKILL to those still up after ``STOP_WITHIN``;
      idempotent. A node left without a quorum (the others have exited) is killed as soon as
      its log says its broker has shut down, instead of sitting out Kafka's 5 s Raft
      "graceful shutdown" for voters that are gone. Also a context manager.
``SaslSsl(users, ca_file, cert_file, key_file, untrusted_ca_file=None)``
    Makes the client listener SASL_SSL with SCRAM-SHA-512: TLS with ``cert_file``/``key_file``
    (a server certificate for 127.0.0.1 and localhost signed by ``ca_file``; PEM, the key
    unencrypted) and the SCRAM users ``users`` (name -> password), created when the storage is
    formatted. ``SaslSsl.generate(directory, users=None)`` makes the certificates
    (``tests.brokers.tls``) and takes ``DEFAULT_USERS`` unless told otherwise. For clients:
    ``username``/``password`` (the first user), ``ssl_context(ca_file=None)``,
    ``aiokafka_options(username=None, password=None)`` (keyword arguments for aiokafka's
    clients) and ``librdkafka_options(username=None, password=None)`` (confluent-kafka).
    The broker gets the key inline (``ssl.keystore.key``, PKCS#8): Kafka wants an encrypted key
    in a PEM keystore *file*, and Java 17 cannot read the PBES2 encryption ``cryptography``
    writes.

Layout and behaviour
====================

Each node listens on three loopback ports: ``CLIENT`` (PLAINTEXT, or SASL_SSL with a
``SaslSsl``; the addresses in ``bootstrap``), ``INTERNAL`` (PLAINTEXT, replication between
brokers) and ``CONTROLLER`` (PLAINTEXT, the KRaft quorum, a static voter set). Only the
client listener is secured: inter-broker and controller traffic stays in plain text on
127.0.0.1. There is no authorizer, so any authenticated user may do anything.

Broker settings are tuned for tests on a small machine: replication factor of internal and
auto-created topics ``min(3, nodes)``, ``min.insync.replicas`` 2 from three nodes on (else 1),
one partition by default, five ``__consumer_offsets`` partitions, no initial rebalance delay,
auto-creation of topics off unless asked for (the platform creates its topics through the admin
API), fast fencing of a dead broker (heartbeat 500 ms, session 4 s), few threads, a small log
cleaner buffer. Every JVM runs with a small heap, the serial GC and the C1 compiler only (the
quickest start measured).

``<workdir>/node-<id>/`` holds the node's ``server.properties``, its ``log4j2.properties``,
``server.log`` (Kafka's log, INFO), ``console.log`` (the JVM's stdout/stderr), ``format.log``
and ``data/``. ``<workdir>/cluster.json`` records the cluster id and ports: a new
``KafkaCluster`` on the same workdir reuses them and the data (SCRAM users stay those it was
formatted with).

Every JVM gets its own process group and dies with the Python process that started it, even on
``kill -9`` (``PR_SET_PDEATHSIG`` on Linux; the processes are forked from one long-lived
thread, as the signal fires when the forking *thread* ends); an ``atexit`` hook stops clusters
left running.

``python -m tests.brokers.kafka [--nodes N] [--sasl-ssl] [--dir DIR] [--auto-create-topics]``
runs a cluster until Ctrl-C and prints what a client needs to reach it.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from cryptography.hazmat.primitives import serialization

from tests.brokers import tls
from tests.brokers.spawn import spawn
from tests.ports import free_ports

KAFKA_VERSION = "4.4.0"
SCALA_VERSION = "2.13"
# kafka-server's runtime log4j-core; Kafka's own distribution adds this slf4j 1.x binding.
LOG4J_VERSION = "2.25.5"

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO_ROOT / ".cache" / "kafka"

READY_WITHIN = 60.0
STOP_WITHIN = 15.0
MAVEN_WITHIN = 600.0

JVM_OPTIONS = (
    "-Xms64m",
    "-Xmx384m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    # Kafka logs while it shuts down: keep log4j alive (the file appender flushes each line).
    "-Dlog4j2.shutdownHookEnabled=false",
)

DEFAULT_USERS: Mapping[str, str] = {"admin": "admin-secret", "shuangjian": "shuangjian-secret"}
_LOG_TAIL_LINES = 40


class BrokerError(RuntimeError):
    """The broker could not be resolved, formatted, started or reached."""


# ---------------------------------------------------------------------------------------------
# Tools and jars


def missing_tools() -> list[str]:
    """The programs this module needs that are not on PATH."""
    return [tool for tool in ("java", "mvn") if shutil.which(tool) is None]


def available() -> bool:
    """Whether a Kafka cluster can be run here (``java`` and ``mvn`` on PATH)."""
    return not missing_tools()


def _reason() -> str:
    missing = missing_tools()
    if not missing:
        return ""
    return f"a real Kafka needs java (17+) and mvn on PATH; missing: {', '.join(missing)}"


reason: str = _reason()
"""Why ``available()`` is false (empty when it is true), for ``pytest.mark.skipif``."""


def _pom() -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by tests/brokers/kafka.py to fetch the broker's jars; not part of the build. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>shuangjian.tests</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>{KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{SCALA_VERSION}</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def resolve(cache: Path = DEFAULT_CACHE) -> Path:
    """Return ``<cache>/<KAFKA_VERSION>/libs``, fetching the jars with Maven if missing."""
    version_dir = cache / KAFKA_VERSION
    libs = version_dir / "libs"
    if libs.is_dir():
        return libs
    version_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(version_dir / ".lock"):
        if libs.is_dir():  # another process filled it while we waited for the lock
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(_reason())
        for stale in version_dir.glob(".libs-*"):  # left by a resolve that was killed
            shutil.rmtree(stale, ignore_errors=True)
        pom = version_dir / "pom.xml"
        pom.write_text(_pom())
        with tempfile.TemporaryDirectory(dir=version_dir, prefix=".libs-") as scratch:
            target = Path(scratch) / "libs"
            command = [
                mvn,
                "-B",
                "--no-transfer-progress",
                "-Dstyle.color=never",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={target}",
                "-DincludeScope=runtime",
            ]
            try:
                result = subprocess.run(
                    command,
                    cwd=version_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=MAVEN_WITHIN,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                output = exc.output if isinstance(exc.output, str) else ""
                raise BrokerError(
                    f"mvn did not resolve Kafka {KAFKA_VERSION} within {MAVEN_WITHIN:.0f}s:\n"
                    f"{_tail(output)}"
                ) from exc
            broker_jar = target / f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}.jar"
            if result.returncode != 0 or not broker_jar.is_file():
                raise BrokerError(
                    f"mvn could not resolve Kafka {KAFKA_VERSION} (exit {result.returncode}; "
                    f"pom {pom}):\n{_tail(result.stdout)}"
                )
            target.rename(libs)
    return libs


_running_clusters: set[KafkaCluster] = set()


@atexit.register
def _stop_running_clusters() -> None:
    for cluster in list(_running_clusters):
        cluster.stop()


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    if process.poll() is None:  # not reaped yet, so its pid (= group id) is still ours
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)


# ---------------------------------------------------------------------------------------------
# Security


@dataclass(frozen=True, eq=False)
class SaslSsl:
    """A SASL_SSL (SCRAM-SHA-512) client listener: the users, and the TLS files.

    ``ca_file`` is what clients trust, ``cert_file``/``key_file`` the server certificate (for
    127.0.0.1 and localhost) and its unencrypted PEM private key. ``untrusted_ca_file``, when
    set, is an unrelated CA for negative tests.
    """

    users: Mapping[str, str]
    ca_file: Path
    cert_file: Path
    key_file: Path
    untrusted_ca_file: Path | None = None

    mechanism: ClassVar[str] = "SCRAM-SHA-512"
    security_protocol: ClassVar[str] = "SASL_SSL"

    def __post_init__(self) -> None:
        if not self.users:
            raise ValueError("SaslSsl needs at least one SCRAM user")
        for name, password in self.users.items():
            # --add-scram parses 'SCRAM-SHA-512=[name=...,password=...]' naively.
            for value in (name, password):
                if not value or any(c in value for c in ',[]="\n') or value != value.strip():
                    raise ValueError(f"unsupported SCRAM user name or password: {value!r}")

    @classmethod
    def generate(cls, directory: Path, users: Mapping[str, str] | None = None) -> SaslSsl:
        """Fresh certificates in ``directory`` (see ``tests.brokers.tls``) and the users."""
        files = tls.make_certificates(directory)
        return cls(
            users=dict(DEFAULT_USERS if users is None else users),
            ca_file=files.ca_cert,
            cert_file=files.server_cert,
            key_file=files.server_key,
            untrusted_ca_file=files.other_ca_cert,
        )

    @property
    def username(self) -> str:
        """The first user."""
        return next(iter(self.users))

    @property
    def password(self) -> str:
        """The first user's password."""
        return self.users[self.username]

    def pkcs8_key(self) -> str:
        """The server key as unencrypted PKCS#8 PEM, the form Kafka's PEM keystore reads."""
        key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def _credentials(self, username: str | None, password: str | None) -> tuple[str, str]:
        name = self.username if username is None else username
        if password is None:
            password = self.users[name]
        return name, password

    def ssl_context(self, ca_file: Path | None = None) -> ssl.SSLContext:
        """A client TLS context trusting ``ca_file`` (by default the test CA) only."""
        return ssl.create_default_context(cafile=str(ca_file or self.ca_file))

    def aiokafka_options(
        self, username: str | None = None, password: str | None = None
    ) -> dict[str, Any]:
        """Keyword arguments for aiokafka's clients (a fresh SSL context each call)."""
        name, secret = self._credentials(username, password)
        return {
            "security_protocol": self.security_protocol,
            "sasl_mechanism": self.mechanism,
            "sasl_plain_username": name,
            "sasl_plain_password": secret,
            "ssl_context": self.ssl_context(),
        }

    def librdkafka_options(
        self, username: str | None = None, password: str | None = None
    ) -> dict[str, str]:
        """Configuration entries for confluent-kafka (librdkafka) clients."""
        name, secret = self._credentials(username, password)
        return {
            "security.protocol": self.security_protocol,
            "sasl.mechanism": self.mechanism,
            "sasl.username": name,
            "sasl.password": secret,
            "ssl.ca.location": str(self.ca_file),
            "ssl.endpoint.identification.algorithm": "https",
        }


# ---------------------------------------------------------------------------------------------
# The cluster


def _new_cluster_id() -> str:
    """A random Kafka Uuid (22 url-safe base64 characters), not starting with '-'."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _read_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            return _tail(handle.read().decode("utf-8", "replace"), lines)
    except FileNotFoundError:
        return "(no file)"


def _errors_in_log(path: Path, blocks: int = 5) -> str:
    """The first ERROR/FATAL entries of a Kafka log, each with its ``Caused by:`` lines.

    A failed start ends in pages of shutdown chatter; the cause is near the first error.
    """
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    found: list[str] = []
    headers = 0
    in_error = False
    for line in text.splitlines():
        if line.startswith("["):
            in_error = "] ERROR " in line or "] FATAL " in line
            if in_error:
                if headers == blocks:
                    break
                headers += 1
                found.append(line)
        elif in_error and not line.startswith("\t"):  # the exception and its causes, no frames
            found.append("    " + line)
    return "\n".join(found)


@dataclass
class _Node:
    node_id: int
    client_port: int
    internal_port: int
    controller_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    stop_offset: int = 0  # size of server.log when the node was last signalled to stop
    last_probe: str = "not probed yet"  # outcome of the last readiness probe

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def config_file(self) -> Path:
        return self.directory / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.directory / "log4j2.properties"

    @property
    def log_file(self) -> Path:
        return self.directory / "server.log"

    @property
    def console_file(self) -> Path:
        return self.directory / "console.log"

    @property
    def format_file(self) -> Path:
        return self.directory / "format.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def formatted(self) -> bool:
        return (self.data_dir / "meta.properties").is_file()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def broker_shut_down(self) -> bool:
        """Whether the log says, since ``stop_offset``, that the broker part has shut down."""
        marker = f"[BrokerServer id={self.node_id}] shut down completed".encode()
        try:
            with self.log_file.open("rb") as handle:
                handle.seek(self.stop_offset)
                return marker in handle.read()
        except FileNotFoundError:
            return False

    def diagnostics(self) -> str:
        """What went wrong, from the node's log files, for an exception message."""
        errors = _errors_in_log(self.log_file)
        return (
            (f"--- {self.log_file}: first errors ---\n{errors}\n" if errors else "")
            + f"--- {self.log_file}: last lines ---\n{_read_tail(self.log_file, 15)}\n"
            + f"--- {self.console_file}: last lines ---\n{_read_tail(self.console_file, 15)}"
        )


class KafkaCluster:
    """A KRaft cluster of ``nodes`` combined broker+controller JVMs on 127.0.0.1.

    See the module docstring for the settings, the files in ``workdir`` and the guarantees.
    """

    def __init__(
        self,
        workdir: Path,
        nodes: int = 1,
        *,
        security: SaslSsl | None = None,
        auto_create_topics: bool = False,
        config: Mapping[str, str | int | bool] | None = None,
        cache: Path = DEFAULT_CACHE,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.workdir = workdir.resolve()
        self.nodes = nodes
        self.security = security
        self.auto_create_topics = auto_create_topics
        self.config = dict(config or {})
        self.cache = cache
        self._lock = threading.RLock()
        self._cluster_id, self._nodes = self._load_or_plan()

    # -- layout ---------------------------------------------------------------------------

    @property
    def _state_file(self) -> Path:
        return self.workdir / "cluster.json"

    def _load_or_plan(self) -> tuple[str, dict[int, _Node]]:
        if self._state_file.is_file():
            state = json.loads(self._state_file.read_text())
            if len(state["nodes"]) != self.nodes:
                raise BrokerError(
                    f"{self.workdir} holds a cluster of {len(state['nodes'])} node(s), "
                    f"not {self.nodes}"
                )
            nodes = {
                entry["node_id"]: _Node(
                    node_id=entry["node_id"],
                    client_port=entry["client_port"],
                    internal_port=entry["internal_port"],
                    controller_port=entry["controller_port"],
                    directory=self.workdir / f"node-{entry['node_id']}",
                )
                for entry in state["nodes"]
            }
            return str(state["cluster_id"]), nodes
        ports = iter(free_ports(3 * self.nodes))
        nodes = {
            node_id: _Node(
                node_id=node_id,
                client_port=next(ports),
                internal_port=next(ports),
                controller_port=next(ports),
                directory=self.workdir / f"node-{node_id}",
            )
            for node_id in range(1, self.nodes + 1)
        }
        return _new_cluster_id(), nodes

    def _save_state(self) -> None:
        state = {
            "kafka_version": KAFKA_VERSION,
            "cluster_id": self._cluster_id,
            "nodes": [
                {
                    "node_id": node.node_id,
                    "client_port": node.client_port,
                    "internal_port": node.internal_port,
                    "controller_port": node.controller_port,
                }
                for node in self._nodes.values()
            ],
        }
        self._state_file.write_text(json.dumps(state, indent=2) + "\n")

    @property
    def cluster_id(self) -> str:
        return self._cluster_id

    @property
    def node_ids(self) -> list[int]:
        return list(self._nodes)

    @property
    def bootstrap(self) -> str:
        """Bootstrap servers of the client listeners, every node."""
        return ",".join(node.address for node in self._nodes.values())

    def address(self, node_id: int) -> str:
        """``127.0.0.1:port`` of one node's client listener."""
        return self._node(node_id).address

    def log_file(self, node_id: int) -> Path:
        """The node's Kafka log (``server.log``)."""
        return self._node(node_id).log_file

    def is_running(self, node_id: int) -> bool:
        """Whether the node's JVM is alive (not whether it serves clients yet)."""
        return self._node(node_id).running()

    def _node(self, node_id: int) -> _Node:
        try:
            return self._nodes[node_id]
        except KeyError:
            raise ValueError(f"no node {node_id}; the nodes are {self.node_ids}") from None

    # -- configuration ----------------------------------------------------------------------

    def _broker_config(self, node: _Node) -> dict[str, str]:
        replication = min(3, self.nodes)
        min_isr = 2 if replication >= 3 else 1
        voters = ",".join(
            f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self._nodes.values()
        )
        client_protocol = "PLAINTEXT" if self.security is None else SaslSsl.security_protocol
        settings: dict[str, str | int | bool] = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "controller.listener.names": "CONTROLLER",
            "listeners": (
                f"CLIENT://127.0.0.1:{node.client_port},"
                f"INTERNAL://127.0.0.1:{node.internal_port},"
                f"CONTROLLER://127.0.0.1:{node.controller_port}"
            ),
            "advertised.listeners": (
                f"CLIENT://127.0.0.1:{node.client_port},INTERNAL://127.0.0.1:{node.internal_port}"
            ),
            "listener.security.protocol.map": (
                f"CLIENT:{client_protocol},INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            "inter.broker.listener.name": "INTERNAL",
            "log.dirs": str(node.data_dir),
            "num.partitions": 1,
            "default.replication.factor": replication,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replication,
            "offsets.topic.num.partitions": 5,
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": 5,
            "share.coordinator.state.topic.replication.factor": replication,
            "share.coordinator.state.topic.min.isr": min_isr,
            "share.coordinator.state.topic.num.partitions": 5,
            "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": self.auto_create_topics,
            "unclean.leader.election.enable": False,
            # A killed broker is fenced (and leaves the ISRs) after 4 s rather than 9 s.
            "broker.heartbeat.interval.ms": 500,
            "broker.session.timeout.ms": 4000,
            # Two cores: few threads, and a log cleaner that does not take 128 MB of heap.
            "num.network.threads": 2,
            "num.io.threads": 2,
            "num.replica.fetchers": 1,
            "num.recovery.threads.per.data.dir": 1,
            "background.threads": 2,
            "log.cleaner.threads": 1,
            "log.cleaner.dedupe.buffer.size": 8 * 1024 * 1024,
        }
        if self.security is not None:
            settings.update(
                {
                    "sasl.enabled.mechanisms": SaslSsl.mechanism,
                    "listener.name.client.sasl.enabled.mechanisms": SaslSsl.mechanism,
                    "listener.name.client.scram-sha-512.sasl.jaas.config": (
                        "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                    ),
                    # Inline PEM: a keystore *file* needs an encrypted key, and Java 17
                    # cannot decrypt the PBES2 keys that ``cryptography`` writes.
                    "listener.name.client.ssl.keystore.type": "PEM",
                    "listener.name.client.ssl.keystore.key": self.security.pkcs8_key(),
                    "listener.name.client.ssl.keystore.certificate.chain": (
                        self.security.cert_file.read_text()
                    ),
                }
            )
        settings.update(self.config)
        return {key: _property_value(value) for key, value in settings.items()}

    def _write_files(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._save_state()
        for node in self._nodes.values():
            node.directory.mkdir(parents=True, exist_ok=True)
            lines = [
                f"{key}={_escape_property(value)}"
                for key, value in self._broker_config(node).items()
            ]
            node.config_file.write_text(
                "# Generated by tests/brokers/kafka.py\n" + "\n".join(lines) + "\n"
            )
            node.log4j_file.write_text(_log4j_config(node.log_file))

    def _java(self, libs: Path, node: _Node, main_class: str, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise BrokerError(_reason())
        return [
            java,
            *JVM_OPTIONS,
            f"-Dlog4j2.configurationFile={node.log4j_file}",
            "-cp",
            f"{libs}/*",
            main_class,
            *args,
        ]

    def _format(self, libs: Path) -> None:
        """Format the storage of the nodes that are not formatted yet, all at once."""
        pending: list[tuple[_Node, subprocess.Popen[bytes]]] = []
        scram: list[str] = []
        if self.security is not None:
            for name, password in self.security.users.items():
                scram += ["--add-scram", f"{SaslSsl.mechanism}=[name={name},password={password}]"]
        for node in self._nodes.values():
            if node.formatted:
                continue
            command = self._java(
                libs,
                node,
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                self._cluster_id,
                "--config",
                str(node.config_file),
                *scram,
            )
            with node.format_file.open("wb") as output:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    cwd=node.directory,
                )
            pending.append((node, process))
        failures = []
        for node, process in pending:
            try:
                returncode = process.wait(timeout=READY_WITHIN)
            except subprocess.TimeoutExpired:
                process.kill()
                returncode = process.wait()
            if returncode != 0:
                failures.append(
                    f"formatting node {node.node_id} failed (exit {returncode}):\n"
                    f"{_read_tail(node.format_file)}"
                )
        if failures:
            raise BrokerError("\n".join(failures))

    # -- processes --------------------------------------------------------------------------

    def _spawn(self, libs: Path, node: _Node) -> None:
        command = self._java(libs, node, "kafka.Kafka", str(node.config_file))
        with node.console_file.open("ab") as console:
            node.process = spawn(
                command,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                cwd=node.directory,
            )

    def _probe_config(self, node: _Node) -> dict[str, Any]:
        config: dict[str, Any] = {
            "bootstrap.servers": node.address,
            "log_level": 0,  # connection errors while a broker starts are expected
            "socket.timeout.ms": 2000,
        }
        if self.security is not None:
            config.update(self.security.librdkafka_options())
        return config

    def _brokers_seen_by(self, node: _Node) -> set[int] | None:
        """Broker ids in a metadata answer from this node's client listener, or None."""
        if not _port_open(node.client_port):  # opens once the broker is unfenced
            node.last_probe = "client port not accepting connections"
            return None
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        try:
            metadata = AdminClient(self._probe_config(node)).list_topics(timeout=2.0)
        except KafkaException as exc:
            node.last_probe = f"metadata request failed: {exc}"
            return None
        seen = {int(broker_id) for broker_id in metadata.brokers}
        node.last_probe = f"metadata lists brokers {sorted(seen)}"
        return seen

    def _wait_ready(self, waiting: list[_Node]) -> None:
        """Until each node in ``waiting`` answers metadata listing every running node."""
        deadline = time.monotonic() + READY_WITHIN
        pending = list(waiting)
        while pending:
            for node in list(pending):
                if not node.running():
                    returncode = node.process.returncode if node.process else None
                    raise BrokerError(
                        f"Kafka node {node.node_id} exited (code {returncode}) while starting; "
                        f"its files are in {node.directory}\n{node.diagnostics()}"
                    )
                expected = {n.node_id for n in self._nodes.values() if n.running()}
                seen = self._brokers_seen_by(node)
                if seen is not None and expected <= seen:
                    pending.remove(node)
            if pending and time.monotonic() >= deadline:
                raise BrokerError(
                    f"Kafka node(s) {[n.node_id for n in pending]} not ready within "
                    f"{READY_WITHIN:.0f}s\n"
                    + "\n".join(
                        f"node {n.node_id}: {n.last_probe}\n{n.diagnostics()}" for n in pending
                    )
                )
            if pending:
                time.sleep(0.1)  # poll interval, not a readiness assumption

    def _quorum_lost(self) -> bool:
        """Whether too few nodes (all are voters) are alive for the KRaft quorum to work."""
        alive = sum(1 for node in self._nodes.values() if node.running())
        return alive < len(self._nodes) // 2 + 1

    def _terminate(self, nodes: list[_Node], *, kill: bool = False) -> None:
        """Signal the nodes' process groups and wait; SIGKILL after ``STOP_WITHIN`` seconds.

        A node that is left without a quorum (the others stopped) has its broker shut down in
        well under a second, then spends 5 s in a Raft "graceful shutdown" waiting for voters
        that are gone; once its log says the broker part is done, it is killed instead.
        """
        running = [node for node in nodes if node.process is not None]
        for node in running:
            assert node.process is not None
            node.stop_offset = node.log_size()
            _signal_group(node.process, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + STOP_WITHIN
        while alive := [node for node in running if node.running()]:
            overdue = time.monotonic() >= deadline
            quorum_lost = self._quorum_lost()
            for node in alive:
                if overdue or (quorum_lost and node.broker_shut_down()):
                    assert node.process is not None
                    _signal_group(node.process, signal.SIGKILL)
            time.sleep(0.05)  # poll interval
        for node in running:
            assert node.process is not None
            node.process.wait()
            node.process = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Format (first time) and start every node that is not running; wait until usable."""
        with self._lock:
            libs = resolve(self.cache)
            self._write_files()
            self._format(libs)
            starting = [node for node in self._nodes.values() if not node.running()]
            try:
                for node in starting:
                    self._spawn(libs, node)
                _running_clusters.add(self)
                self._wait_ready(list(self._nodes.values()))
            except BaseException:
                self.stop()
                raise
        return self

    def start_node(self, node_id: int) -> None:
        """Start a stopped or killed node (same ports, same data); wait until it serves."""
        node = self._node(node_id)
        with self._lock:
            if node.running():
                raise BrokerError(f"Kafka node {node_id} is already running")
            libs = resolve(self.cache)
            self._spawn(libs, node)
            _running_clusters.add(self)
            self._wait_ready([node])

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (no controlled shutdown); its data stays for ``start_node``."""
        with self._lock:
            self._terminate([self._node(node_id)], kill=True)

    def stop_node(self, node_id: int) -> None:
        """Stop one node cleanly (SIGTERM; SIGKILL after ``STOP_WITHIN`` seconds)."""
        with self._lock:
            self._terminate([self._node(node_id)])

    def restart(self, node_id: int, *, kill: bool = False) -> None:
        """Stop (or kill) the node if it runs, then ``start_node`` it."""
        with self._lock:
            self._terminate([self._node(node_id)], kill=kill)
            self.start_node(node_id)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after ``STOP_WITHIN`` s). Idempotent."""
        with self._lock:
            self._terminate(list(self._nodes.values()))
            _running_clusters.discard(self)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        running = [node.node_id for node in self._nodes.values() if node.running()]
        return f"KafkaCluster({self.workdir}, nodes={self.nodes}, running={running})"


def _property_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _escape_property(value: str) -> str:
    """A value for a Java ``.properties`` line (multi-line PEM included)."""
    return value.replace("\\", "\\\\").replace("\r", "").replace("\n", "\\n")


def _log4j_config(log_file: Path) -> str:
    return f"""# Generated by tests/brokers/kafka.py
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.brokers.kafka",
        description=f"Run a local Apache Kafka {KAFKA_VERSION} (KRaft) cluster until Ctrl-C.",
    )
    parser.add_argument("--nodes", type=int, default=1, help="number of nodes (default 1)")
    parser.add_argument(
        "--sasl-ssl", action="store_true", help="SASL_SSL (SCRAM-SHA-512) client listener"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        help="working directory, kept and reused next time (default: a temporary one)",
    )
    parser.add_argument(
        "--auto-create-topics", action="store_true", help="let the brokers auto-create topics"
    )
    args = parser.parse_args(argv)
    if not available():
        print(reason, file=sys.stderr)
        return 2
    # Explicitly: a shell's background job starts with SIGINT ignored, and SIGTERM should
    # stop the cluster as well.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    with contextlib.ExitStack() as stack:
        workdir: Path = (
            args.dir
            or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="shuangjian-kafka-")))
        ).resolve()
        security = SaslSsl.generate(workdir / "tls") if args.sasl_ssl else None
        cluster = KafkaCluster(
            workdir, args.nodes, security=security, auto_create_topics=args.auto_create_topics
        )
        print(f"Starting Kafka {KAFKA_VERSION}, {args.nodes} node(s) in {workdir} ...", flush=True)
        started = time.monotonic()
        try:
            stack.enter_context(cluster)
        except BrokerError as exc:
            print(exc, file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        print(f"Ready in {time.monotonic() - started:.1f}s")
        print(f"bootstrap:  {cluster.bootstrap}")
        print(f"            export SHUANGJIAN_TEST_KAFKA_BOOTSTRAP={cluster.bootstrap}")
        if security is not None:
            print(f"protocol:   {SaslSsl.security_protocol}, SASL mechanism {SaslSsl.mechanism}")
            print(f"CA file:    {security.ca_file}")
            for name, password in security.users.items():
                print(f"user:       {name} / {password}")
            if args.dir is not None:
                print("            (a reused --dir keeps the users it was first formatted with)")
        print(f"logs:       {workdir}/node-*/server.log")
        print("Ctrl-C to stop.", flush=True)
        try:
            while all(cluster.is_running(node_id) for node_id in cluster.node_ids):
                time.sleep(1)
            print(f"a node exited, see the logs in {workdir}; stopping", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("stopping ...", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
