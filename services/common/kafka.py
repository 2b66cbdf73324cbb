"""Kafka adapter of the ``Bus`` port (DESIGN.md, Events and Guarantee 4).

One topic per service (``<prefix>.<service>.events``), key = the envelope's ``stream`` so
an aggregate's events share one partition, value = the JSON envelope. The producer is
idempotent with ``acks=all``: within one producer, a partition's batches go out one at a
time and the broker refuses a reordered or repeated batch, so a stream's order holds.

``publish`` returns only after the broker acknowledged every event, and raises
``Unavailable`` otherwise; the outbox relay then sends the same batch again (at least
once: a retry may duplicate events, consumers skip versions they already applied).

The connection is lazy: the platform starts and keeps accepting commands while Kafka is
down; the first publish that reaches a broker connects, and a producer that failed is
thrown away and replaced on the next publish.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    TopicAlreadyExistsError,
    for_code,
)

from services.common.envelope import Envelope
from services.common.errors import Unavailable
from services.common.ports import Bus

log = structlog.get_logger(__name__)

# Failures that mean "the broker cannot take it now" rather than "a bug here".
_TRANSIENT = (KafkaError, TimeoutError, OSError)


def events_topic(prefix: str, service: str) -> str:
    """The topic that carries one service's events."""
    return f"{prefix}.{service}.events"


def dead_letter_topic(prefix: str) -> str:
    """Where consumers park events they cannot process (Guarantee 7)."""
    return f"{prefix}.dead-letters"


def headers_of(event: Envelope) -> list[tuple[str, bytes]]:
    """What a consumer may route or filter on without parsing the value."""
    return [
        ("type", event.type.encode()),
        ("schema_version", str(event.schema_version).encode()),
        ("id", str(event.id).encode()),
    ]


class KafkaBus(Bus):
    """Publishes envelopes to Kafka, at least once and in per-stream order."""

    def __init__(
        self,
        bootstrap: str,
        *,
        topic_prefix: str = "shuangjian",
        partitions: int = 6,
        replication: int = 3,
        client_id: str = "shuangjian",
        services: Sequence[str] = ("registry",),
        request_timeout_ms: int = 15_000,
        publish_timeout: float = 30.0,
        linger_ms: int = 5,
    ) -> None:
        self.bootstrap = bootstrap
        self.topic_prefix = topic_prefix
        self.partitions = partitions
        self.replication = replication
        self.client_id = client_id
        self.services = tuple(services)
        self.request_timeout_ms = request_timeout_ms
        # Upper bound of one publish (connecting included): the relay must get control
        # back to back off and retry, whatever the broker does.
        self.publish_timeout = publish_timeout
        self.linger_ms = linger_ms
        self._producer: Any = None  # AIOKafkaProducer once connected
        self._lock = asyncio.Lock()  # one publish at a time: a failure replaces the producer
        self._topics_settled = False
        self._closed = False

    # --- Bus --------------------------------------------------------------------------

    async def start(self) -> None:
        """Does not connect: Kafka being down must not stop the platform from starting."""
        self._closed = False
        log.info("kafka.bus.ready", bootstrap=self.bootstrap, connect="on first publish")

    async def publish(self, events: Sequence[Envelope]) -> None:
        """Send the whole batch, in order, and wait until the broker acknowledged all of it."""
        if not events:
            return
        if self._closed:
            raise Unavailable("the Kafka bus is closed")
        async with self._lock:
            deliveries: list[asyncio.Future[Any]] = []
            try:
                async with asyncio.timeout(self.publish_timeout):
                    producer = await self._connected()
                    for event in events:
                        # Sequential sends keep the batch order in the producer's buffer.
                        delivery = await producer.send(
                            self.topic_for(event),
                            value=event.to_json().encode(),
                            key=event.stream.encode(),
                            headers=headers_of(event),
                        )
                        deliveries.append(delivery)
                    await asyncio.gather(*deliveries)
            except Exception as exc:
                # Whatever the producer still buffers is dropped: the outbox keeps those
                # events and the relay sends the batch again through a fresh producer.
                await self._discard()
                if isinstance(exc, Unavailable):
                    raise
                if isinstance(exc, _TRANSIENT):
                    raise Unavailable(
                        f"Kafka did not acknowledge {len(events)} events: {exc!r}"
                    ) from exc
                raise
            finally:
                for delivery in deliveries:
                    delivery.cancel()  # no-op when done; nobody waits for the rest

    async def close(self) -> None:
        """Stop the producer, delivering what it still holds if the broker lets it."""
        self._closed = True
        await self._discard(flush=True)

    # --- helpers ----------------------------------------------------------------------

    def topic_for(self, event: Envelope) -> str:
        return events_topic(self.topic_prefix, event.service)

    @property
    def topics(self) -> list[str]:
        """The topics created up front: every known service's, and the dead letters."""
        names = [events_topic(self.topic_prefix, s) for s in self.services]
        return [*names, dead_letter_topic(self.topic_prefix)]

    async def _connected(self) -> Any:
        """The producer, connecting (and creating topics) first if there is none."""
        if self._producer is not None:
            return self._producer
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            enable_idempotence=True,
            acks="all",
            request_timeout_ms=self.request_timeout_ms,
            linger_ms=self.linger_ms,
            # A relay batch is up to 500 events of about 1 KiB; a partition has one batch
            # in flight at a time, so bigger batches mean fewer round trips.
            max_batch_size=256 * 1024,
        )
        try:
            await producer.start()
        except BaseException as exc:
            await self._shutdown(producer, flush=False)
            if isinstance(exc, _TRANSIENT):
                raise Unavailable(f"Kafka unreachable at {self.bootstrap}: {exc!r}") from exc
            raise
        self._producer = producer
        log.info("kafka.bus.connected", bootstrap=self.bootstrap)
        if not self._topics_settled:
            brokers = len(producer.client.cluster.brokers()) or 1
            await self._create_topics(min(self.replication, brokers))
        return producer

    async def _create_topics(self, replication: int) -> None:
        """Create the topics with the configured partitions; auto-creation is the fallback.

        Best effort and bounded: topics that exist are fine; a broker that does not answer
        CreateTopics (librdkafka's mock cluster) or refuses it only costs a warning.
        """
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.client_id}-admin",
            request_timeout_ms=self.request_timeout_ms,
        )
        wanted = [NewTopic(name, self.partitions, replication) for name in self.topics]
        try:
            async with asyncio.timeout(self.request_timeout_ms / 1000):
                await admin.start()
                response = await admin.create_topics(wanted)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A timeout or lost connection may pass: try again on the next connection.
            # Anything else (no controller, unsupported request) will not: stop asking.
            self._topics_settled = not isinstance(exc, (TimeoutError, KafkaConnectionError))
            log.warning("kafka.topics.not_created", topics=self.topics, error=repr(exc))
            return
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        self._topics_settled = True
        for entry in response.topic_errors:
            name, code = entry[0], entry[1]
            error = for_code(code)
            if code == 0:
                log.info("kafka.topic.created", topic=name, partitions=self.partitions)
            elif error is not TopicAlreadyExistsError:
                log.warning("kafka.topic.not_created", topic=name, error=error.__name__)

    async def _discard(self, *, flush: bool = False) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await self._shutdown(producer, flush=flush)

    async def _shutdown(self, producer: Any, *, flush: bool) -> None:
        """Stop ``producer`` within a bounded time, even when the broker is gone.

        aiokafka's idempotent producer never expires a batch, so ``stop()`` alone would
        wait forever for an unreachable broker. So: optionally flush for a bounded time,
        then stop the sender task, fail what is still buffered, and close. This reaches
        into aiokafka 0.14's internals (``_sender``, ``_message_accumulator``); the
        version is pinned and ``tests/kafka`` exercises this path.
        """
        timeout = self.request_timeout_ms / 1000 + 1
        if flush:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout):
                    await producer.flush()
        sender = getattr(producer, "_sender", None)
        task = getattr(sender, "sender_task", None)
        if task is not None and not task.done():
            task.cancel()
            # On cancel the sender waits for its in-flight requests (bounded by the
            # request timeout), so that failing the buffer below cannot race with them.
            await asyncio.wait({task}, timeout=timeout)
        accumulator = getattr(producer, "_message_accumulator", None)
        if accumulator is not None:
            _fail_buffered(accumulator, KafkaConnectionError("producer discarded"))
        try:
            async with asyncio.timeout(timeout):
                await producer.stop()
        except Exception as exc:
            log.warning("kafka.producer.stop_failed", error=repr(exc))
            with contextlib.suppress(Exception):
                await producer.client.close()


def _fail_buffered(accumulator: Any, error: Exception) -> None:
    """Fail every batch a stopped producer still holds, so ``stop()`` has nothing to wait for.

    ``fail_all`` also fails each batch's drain waiter, which only a blocked ``send`` would
    read; they are read here so asyncio does not log "exception was never retrieved".
    """
    batches = [b for queue in accumulator._batches.values() for b in queue]
    batches += list(accumulator._pending_batches)
    accumulator.fail_all(error)
    for batch in batches:
        waiter = batch._drain_waiter
        if waiter.done() and not waiter.cancelled():
            waiter.exception()
