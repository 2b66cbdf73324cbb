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

``KafkaTail`` is the reading side for live subscriptions (the gateway's
``Subscription.events``): one group-less consumer per process fans what is published from
now on out to its subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    TopicAlreadyExistsError,
    for_code,
)

from services.common.envelope import Envelope
from services.common.errors import MalformedEvent, Unavailable
from services.common.kafka_security import KafkaSecurity
from services.common.live import LiveSubscription, Signal
from services.common.ports import Bus
from services.common.topology import TOPIC_CONFIG, dead_letter_topic, events_topic

__all__ = [
    "TRANSIENT",
    "KafkaBus",
    "KafkaTail",
    "TailSubscription",
    "dead_letter_topic",
    "events_topic",
    "stop_producer",
]

log = structlog.get_logger(__name__)

# Failures that mean "the broker cannot take it now" rather than "a bug here".
TRANSIENT = (KafkaError, TimeoutError, OSError)


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
        services: Sequence[str] = (),
        request_timeout_ms: int = 15_000,
        publish_timeout: float = 30.0,
        linger_ms: int = 5,
        security: KafkaSecurity | None = None,
        create_topics: bool = True,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security or KafkaSecurity()
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
        # Nothing to create when the operator owns the topics.
        self._create = create_topics
        self._topics_settled = not create_topics
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
            self._learn_services(events)
            deliveries: list[asyncio.Future[Any]] = []
            try:
                async with asyncio.timeout(self.publish_timeout):
                    producer = await self._connected()
                    if not self._topics_settled:
                        await self._settle_topics(producer)
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
                refusal = self.security.explain(exc)
                if refusal is not None:  # a refusal, not an outage: say what to fix
                    raise Unavailable(
                        f"{refusal}; {len(events)} events wait in the outbox"
                    ) from exc
                if isinstance(exc, Unavailable):
                    raise
                if isinstance(exc, TRANSIENT):
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
        """The producer, connecting first if there is none."""
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
            **self.security.aiokafka(),
        )
        try:
            await producer.start()
        except BaseException as exc:
            await self._shutdown(producer, flush=False)
            if isinstance(exc, TRANSIENT):
                why = await self.security.diagnose(self.bootstrap)
                raise Unavailable(why or f"Kafka unreachable at {self.bootstrap}: {exc!r}") from exc
            raise
        self._producer = producer
        log.info("kafka.bus.connected", bootstrap=self.bootstrap)
        return producer

    def _learn_services(self, events: Sequence[Envelope]) -> None:
        """A service's events not seen before: its topic is created before they are sent."""
        new = {event.service for event in events} - set(self.services)
        if new:
            self.services = (*self.services, *sorted(new))
            self._topics_settled = not self._create

    async def _settle_topics(self, producer: Any) -> None:
        cluster = producer.client.cluster
        if cluster.controller is None:
            # No controller, no CreateTopics (librdkafka's mock cluster, for one).
            self._topics_settled = True
            log.warning(
                "kafka.topics.not_created",
                topics=self.topics,
                reason="the cluster names no controller; pre-create or auto-create them",
            )
        else:
            brokers = len(cluster.brokers()) or 1
            await self._create_topics(min(self.replication, brokers))

    async def _create_topics(self, replication: int) -> None:
        """Create the topics with the configured partitions; auto-creation is the fallback.

        Best effort and bounded: topics that exist are fine; a broker that does not answer
        CreateTopics (librdkafka's mock cluster) or refuses it only costs a warning.
        """
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.client_id}-admin",
            request_timeout_ms=self.request_timeout_ms,
            **self.security.aiokafka(),
        )
        wanted = [
            NewTopic(name, self.partitions, replication, topic_configs=TOPIC_CONFIG)
            for name in self.topics
        ]
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
        await stop_producer(producer, self.request_timeout_ms / 1000 + 1, flush=flush)


async def stop_producer(producer: Any, timeout: float, *, flush: bool = False) -> None:
    """Stop ``producer`` within a bounded time, even when the broker is gone.

    aiokafka's idempotent producer never expires a batch, so ``stop()`` alone would wait
    forever for an unreachable broker. So: optionally flush for a bounded time, then stop
    the sender task, fail what is still buffered, and close. This reaches into aiokafka
    0.14's internals (``_sender``, ``_message_accumulator``); the version is pinned and
    ``tests/kafka`` exercises this path.
    """
    if flush:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout):
                await producer.flush()
    sender = getattr(producer, "_sender", None)
    task = getattr(sender, "sender_task", None)
    if task is not None and not task.done():
        task.cancel()
        # On cancel the sender waits for its in-flight requests (bounded by the request
        # timeout), so that failing the buffer below cannot race with them.
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
    queued = [b for queue in accumulator._batches.values() for b in queue]
    batches = queued + list(accumulator._pending_batches)
    # A batch sent once and queued again for a retry still carries the callback that
    # removes it from the pending set when it completes; failing it while queued would
    # make that callback raise KeyError. Pending is where a failed batch would be anyway.
    accumulator._pending_batches.update(queued)
    accumulator.fail_all(error)
    for batch in batches:
        waiter = batch._drain_waiter
        if waiter.done() and not waiter.cancelled():
            waiter.exception()


@dataclass
class _Progress:
    """Where one run of a tail's consumer is: kept when it reconnects."""

    positions: dict[TopicPartition, int] = field(default_factory=dict)  # next offset to read
    live: bool = False  # positioned once: partitions found later are read from the start
    failures: int = 0  # in a row, for the backoff; reset once a consumer is positioned


# A Kafka tail's subscriber is the kernel's live subscription, as the in-process bus's is.
TailSubscription = LiveSubscription


class KafkaTail:
    """Follows the events topics from now on and fans the envelopes out to subscribers.

    * One consumer per tail, without a consumer group (every gateway replica sees every
      event) and without committed offsets. It starts with the first subscriber and stops
      when the last one leaves or on ``close()``; a new start begins at "now" again.
    * "From now on": partitions that exist when the consumer first positions itself are
      read from their end offsets. A topic or partition that appears later (the topics
      are created by the first publish) is read from its beginning: all of it was written
      after the subscribers arrived. Topics are discovered with all-topic metadata
      requests, which never auto-create a topic (a request naming a topic may, with broker
      defaults instead of the platform's partitions).
    * Each subscriber has its own bounded queue. One that is full is dropped with a log
      line and its iterator raises ``Unavailable`` (the client subscribes again); nobody
      waits for a slow subscriber and nobody silently misses events.
    * Values are decoded with ``Envelope.from_json``; what does not decode is skipped with
      a warning. The outbox relay publishes at least once, so an event id seen among the
      last ``remember`` events is not delivered again.
    * While Kafka is unreachable, subscribing still returns at once; the tail keeps
      retrying in the background with a capped backoff, logging each failure, and
      delivers from the moment it is connected. When it has to reconnect later, it
      resumes each partition where it was, so nothing in between is skipped.

    This reaches into aiokafka 0.14's client for the all-topic metadata (the consumer's
    public ``topics()`` returns names only); the version is pinned and ``tests/kafka``
    exercises it.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        *,
        client_id: str = "shuangjian-gateway",
        capacity: int = 1_000,
        remember: int = 10_000,
        request_timeout_ms: int = 15_000,
        discovery_interval: float = 2.0,
        metadata_max_age: float = 60.0,
        poll_timeout: float = 0.5,
        max_backoff: float = 10.0,
        security: KafkaSecurity | None = None,
    ) -> None:
        if not topics:
            raise ValueError("a tail needs at least one topic")
        self.bootstrap = bootstrap
        self.security = security or KafkaSecurity()
        self.topics = tuple(topics)
        self.client_id = client_id
        self.capacity = capacity  # events queued per subscriber before it is dropped
        self.remember = remember  # recent event ids kept to suppress duplicates
        self.request_timeout_ms = request_timeout_ms
        # How often to look for topics not created yet; once all exist, how often to look
        # for added partitions (also the consumer's own metadata refresh).
        self.discovery_interval = discovery_interval
        self.metadata_max_age = metadata_max_age
        self.poll_timeout = poll_timeout
        self.max_backoff = max_backoff
        self._subscriptions: set[TailSubscription] = set()
        self._seen: OrderedDict[UUID, None] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._live = asyncio.Event()
        self._closed = False

    # --- subscribers ------------------------------------------------------------------

    def subscribe(self) -> TailSubscription:
        """A new subscriber; starts the consumer if it is the first. Never waits for Kafka."""
        if self._closed:
            raise Unavailable("the live event tail is closed")
        subscription = TailSubscription(self._leave, self.capacity)
        self._subscriptions.add(subscription)
        if self._task is None:
            after = set(self._stopping)
            self._task = asyncio.create_task(self._run(after), name="kafka-tail")
        return subscription

    async def events(self) -> AsyncIterator[Envelope]:
        """Every event published from now on, for as long as the caller iterates."""
        subscription = self.subscribe()
        try:
            async for event in subscription:
                yield event
        finally:
            subscription.close()

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    @property
    def live(self) -> bool:
        """Whether the consumer is positioned: what is published now will be delivered."""
        return self._live.is_set()

    async def wait_live(self) -> None:
        """Until the consumer is positioned (callers bound this with their own timeout)."""
        await self._live.wait()

    async def close(self) -> None:
        """End every subscription and stop the consumer."""
        self._closed = True
        for subscription in list(self._subscriptions):
            subscription.end(Signal.END)
        self._subscriptions.clear()
        self._stop_consumer()
        # Already cancelled; cancelling again would interrupt the consumer's own stop.
        await asyncio.gather(*self._stopping, return_exceptions=True)

    def _leave(self, subscription: TailSubscription) -> None:
        self._subscriptions.discard(subscription)
        if not self._subscriptions:
            self._stop_consumer()

    def _stop_consumer(self) -> None:
        self._live.clear()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    # --- the consumer -----------------------------------------------------------------

    async def _run(self, after: set[asyncio.Task[None]]) -> None:
        """Connect, follow, and reconnect after failures, until cancelled."""
        if after:
            await asyncio.wait(after)  # the previous consumer finishes stopping first
        progress = _Progress()  # kept across reconnections within this run
        backoff = 0.1
        try:
            while True:
                consumer = AIOKafkaConsumer(
                    bootstrap_servers=self.bootstrap,
                    client_id=self.client_id,
                    group_id=None,
                    enable_auto_commit=False,
                    # Only for a position that left retention while disconnected.
                    auto_offset_reset="latest",
                    request_timeout_ms=self.request_timeout_ms,
                    metadata_max_age_ms=int(self.metadata_max_age * 1000),
                    **self.security.aiokafka(),
                )
                try:
                    async with asyncio.timeout(self.request_timeout_ms / 1000):
                        await consumer.start()
                    log.info("kafka.tail.connected", bootstrap=self.bootstrap)
                    await self._follow(consumer, progress)
                except Exception as exc:
                    backoff = min(0.1 * 2 ** min(progress.failures, 10), self.max_backoff)
                    progress.failures += 1
                    refusal = self.security.explain(exc) or (
                        await self.security.diagnose(self.bootstrap)
                        if isinstance(exc, TRANSIENT)
                        else None
                    )
                    if refusal is not None:
                        log.error("kafka.tail.refused", error=refusal, retry_in=backoff)
                    elif isinstance(exc, TRANSIENT):
                        log.warning(
                            "kafka.tail.unavailable",
                            bootstrap=self.bootstrap,
                            error=repr(exc),
                            retry_in=backoff,
                        )
                    else:
                        log.exception("kafka.tail.failed", retry_in=backoff)
                finally:
                    await self._shutdown(consumer)
                await asyncio.sleep(backoff)
        finally:
            self._live.clear()
            log.info("kafka.tail.stopped")

    async def _follow(self, consumer: Any, progress: _Progress) -> None:
        """Deliver records as they come, rediscovering partitions now and then."""
        loop = asyncio.get_running_loop()
        assigned: frozenset[TopicPartition] = frozenset()
        rediscover_at = loop.time()
        while True:
            if loop.time() >= rediscover_at:
                async with asyncio.timeout(self.request_timeout_ms / 1000):
                    assigned, complete = await self._assign(consumer, assigned, progress)
                progress.failures = 0
                interval = self.metadata_max_age if complete else self.discovery_interval
                rediscover_at = loop.time() + interval
            wait = max(0.0, min(self.poll_timeout, rediscover_at - loop.time()))
            if not assigned:
                await asyncio.sleep(wait)
                continue
            batches = await consumer.getmany(timeout_ms=int(wait * 1000))
            for tp, records in batches.items():
                for record in records:  # a partition's records in order: per-stream order
                    progress.positions[tp] = record.offset + 1
                    self._dispatch(record)

    async def _assign(
        self,
        consumer: Any,
        assigned: frozenset[TopicPartition],
        progress: _Progress,
    ) -> tuple[frozenset[TopicPartition], bool]:
        """Assign every partition of the topics; returns them and whether all topics exist.

        A topic whose metadata has a topic-level error (in practice: one being created) is
        left out like a missing one, and read from its beginning once it is there.
        """
        cluster = await consumer._client.fetch_all_metadata()
        found = {t: cluster.partitions_for_topic(t) or set() for t in self.topics}
        wanted = frozenset(TopicPartition(t, p) for t, ps in found.items() for p in ps)
        complete = all(found.values())
        if wanted == assigned and progress.live:
            return assigned, complete
        positions = progress.positions
        # assign() replaces the assignment and forgets positions: set them again.
        consumer.assign(sorted(wanted))
        new = [tp for tp in wanted if tp not in positions]
        for tp in wanted:
            if tp in positions:
                consumer.seek(tp, positions[tp])
        if new:
            if progress.live:
                await consumer.seek_to_beginning(*new)  # appeared after we went live
            else:
                await consumer.seek_to_end(*new)
            for tp in new:
                positions[tp] = await consumer.position(tp)
        if not progress.live:
            progress.live = True
            self._live.set()
            log.info(
                "kafka.tail.live",
                partitions=len(wanted),
                missing=[t for t, ps in found.items() if not ps],
            )
        elif new:
            added = sorted(f"{tp.topic}[{tp.partition}]" for tp in new)
            log.info("kafka.tail.partitions_added", partitions=added)
        return wanted, complete

    def _dispatch(self, record: ConsumerRecord[Any, Any]) -> None:
        where = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
        if record.value is None:
            log.warning("kafka.tail.skipped", reason="no value", **where)
            return
        try:
            event = Envelope.from_json(record.value)
        except MalformedEvent as exc:
            log.warning("kafka.tail.skipped", reason=exc.message, **where)
            return
        if event.id in self._seen:
            return  # the relay published it again (at least once)
        self._seen[event.id] = None
        if len(self._seen) > self.remember:
            self._seen.popitem(last=False)
        for subscription in list(self._subscriptions):
            if not subscription.offer(event):
                log.warning(
                    "kafka.tail.subscriber_dropped",
                    reason="queue full",
                    capacity=self.capacity,
                    **where,
                )
                subscription.end(Signal.DROPPED)
                self._leave(subscription)

    async def _shutdown(self, consumer: Any) -> None:
        try:
            async with asyncio.timeout(self.request_timeout_ms / 1000 + 1):
                await consumer.stop()
        except Exception as exc:
            log.warning("kafka.tail.stop_failed", error=repr(exc))
