"""Commands from district systems over Kafka: the NDJSON ingest's requests, as messages.

A service reads ``<prefix>.<service>.commands`` and answers each message on
``<prefix>.<service>.command-results``. A message is

* key: the request's idempotency key (required: a message without one is poison), so a
  message Kafka delivers twice, or a district system sends twice, is applied once;
* value: ``{"requestId": "...", "command": "...", "input": {...}, "token": "<JWT>"}``.

The result (``services/common/ingest.py``: ``outcome``, ``id``, ``version``, ``events``
or ``code``/``field``/``message``, plus ``requestId`` and ``idempotencyKey``) is keyed by
the ``requestId`` (by the idempotency key when a message has none).

Who sends a command is the per-message signed token, not the Kafka connection: the
platform's own HS256 tokens (``shuangjian token --role importer --region 640400``) or the
OIDC provider's. Its principal scopes the command exactly as on HTTP: a command outside
the token's region is answered ``FORBIDDEN`` and writes nothing. Topic ACLs identifying
each district were not chosen: one commands topic serves every district (an ACL would
only say who may write to it, not for which region), and the same tokens already work on
every other way in. A token that does not verify is answered ``UNAUTHENTICATED``: a
well-formed request, refused. A message that is not a request at all (no key, not
JSON, not an object, no token string) is poison: it goes to ``<prefix>.dead-letters`` with
the reason and where it came from (headers ``reason``, ``source-topic``,
``source-partition``, ``source-offset``; the body as the projector's dead letters), and
is also answered with an error when a ``requestId`` can be read from it.

Delivery: messages are applied one after another in each partition's order; each
result (or dead letter) is produced idempotently with ``acks=all``, and the consumer
group's offset is committed only once the broker acknowledged them. So nothing is
skipped, and a crash between the two means a redelivery, which the idempotency key
turns into the stored outcome (``events: 0``, nothing new stored). Results are therefore
at least once: a redelivered command may be answered twice, the same way.

Order: Kafka keeps order within a partition only, and the key (the idempotency key)
does not choose the partition by aggregate. A sender whose commands depend on each
other (register, then approve) sends one aggregate's commands to one partition (choose
it explicitly, e.g. from the aggregate id), or a dependent command may be applied first
and refused (``NOT_FOUND`` in its result).

Failures that pass (Kafka unreachable, ``UNAVAILABLE`` from the store, a concurrent
update that ran out of retries) are retried on the same message with a capped backoff,
never skipped. A message that keeps crashing the handler with an unexpected error is,
after a few attempts, dead-lettered with an ``INTERNAL`` result, so one bad message
cannot stop every district's commands.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError, for_code
from aiokafka.structs import ConsumerRecord, TopicPartition

from services.common.application import IDEMPOTENCY_KEY_MAX, CommandContext
from services.common.auth import Principal, TokenVerifier
from services.common.errors import (
    BadInput,
    ConcurrencyConflict,
    ShuangjianError,
    Unauthenticated,
    Unavailable,
)
from services.common.ingest import Catalog, CommandRequest, Execute, apply, failed
from services.common.kafka import TRANSIENT, stop_producer
from services.common.kafka_security import KafkaSecurity
from services.common.topology import TOPIC_CONFIG, dead_letter_topic

__all__ = ["InboundCommands", "commands_topic", "results_topic"]

log = structlog.get_logger(__name__)

# Results are answers to read soon after: the broker's default retention will do. The
# commands are kept like the events: what a district sent is a record of its own.
RESULTS_CONFIG = {"cleanup.policy": "delete"}

# Verified tokens remembered at most (a few per district; cleared when full).
_VERIFIED_MAX = 1_000

# Result codes that say "not now" rather than "no": the message is tried again.
_RETRY_CODES = {Unavailable.code}


def commands_topic(prefix: str, service: str) -> str:
    """Where district systems send a service's commands."""
    return f"{prefix}.{service}.commands"


def results_topic(prefix: str, service: str) -> str:
    """Where a service answers each command it read from its commands topic."""
    return f"{prefix}.{service}.command-results"


class _Poison(Exception):
    """A message that is not a request: dead-lettered, answered if it has a requestId."""

    def __init__(self, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request_id = request_id


class _NotNow(Exception):
    """The message could not be applied now (an outage): try it again after a pause."""


@dataclass(frozen=True)
class _Out:
    """One message to produce for a command message."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


class _Assigned(ConsumerRebalanceListener):
    """Tells ``InboundCommands`` when the group gave it partitions (readiness)."""

    def __init__(self, ready: asyncio.Event) -> None:
        self.ready = ready

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.ready.clear()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.ready.set()


class InboundCommands:
    """Applies the commands district systems send over Kafka (see the module)."""

    def __init__(
        self,
        bootstrap: str,
        service: str,
        prefix: str,
        catalog: Catalog,
        execute: Execute,
        verifier: TokenVerifier,
        security: KafkaSecurity | None = None,
        partitions: int = 6,
        replication: int = 3,
        create_topics: bool = True,
        *,
        batch: int = 500,
        poll_timeout: float = 0.5,
        request_timeout_ms: int = 15_000,
        max_backoff: float = 10.0,
        attempts: int = 3,
    ) -> None:
        self.bootstrap = bootstrap
        self.service = service
        self.prefix = prefix
        self.catalog = catalog
        self.execute = execute
        self.verifier = verifier
        self.security = security or KafkaSecurity()
        self.partitions = partitions
        self.replication = replication
        self.create_topics = create_topics
        self.batch = batch  # records per getmany: one acknowledgement wait per batch
        self.poll_timeout = poll_timeout
        self.request_timeout_ms = request_timeout_ms
        self.max_backoff = max_backoff
        self.attempts = attempts  # of a message that raises something unexpected
        self.topic = commands_topic(prefix, service)
        self.results = results_topic(prefix, service)
        self.dead_letters = dead_letter_topic(prefix)
        self.group = f"{prefix}-{service}-commands"
        self.last_error: str | None = None  # why the consumer is not flowing, for /healthz
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures: dict[tuple[TopicPartition, int], int] = {}  # crashes per message
        self._outages = 0  # connection failures in a row, for the backoff
        self._verified: dict[str, tuple[Principal, float]] = {}  # token: principal, exp

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start consuming in the background; never waits for Kafka."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"inbound-{self.service}")

    async def close(self) -> None:
        """Stop within a bounded time: the clients' shutdowns are bounded, and so is this."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait({task}, timeout=2 * (self.request_timeout_ms / 1000 + 1) + 1)
        self._ready.clear()

    @property
    def ready(self) -> bool:
        """Partitions are assigned: messages sent now will be read."""
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        """Until the group assigned partitions (callers bound this with their own timeout)."""
        await self._ready.wait()

    # --- the consumer loop ------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, consume and reconnect after failures, until cancelled."""
        topics_settled = not self.create_topics
        log.info("inbound.starting", topic=self.topic, group=self.group)
        try:
            while True:
                producer = self._producer()
                consumer = self._consumer()
                try:
                    async with asyncio.timeout(self.request_timeout_ms / 1000):
                        await producer.start()
                        if not topics_settled:
                            topics_settled = await self._create_topics(producer)
                        await consumer.start()
                    consumer.subscribe([self.topic], listener=_Assigned(self._ready))
                    log.info("inbound.connected", topic=self.topic, group=self.group)
                    await self._consume(consumer, producer)
                except Exception as exc:
                    self._outages += 1
                    backoff = min(0.1 * 2 ** min(self._outages, 10), self.max_backoff)
                    refusal = self.security.explain(exc)
                    self.last_error = refusal or repr(exc)
                    if refusal is not None:
                        log.error("inbound.refused", error=refusal, retry_in=backoff)
                    elif isinstance(exc, TRANSIENT):
                        log.warning("inbound.unavailable", error=repr(exc), retry_in=backoff)
                    else:
                        log.exception("inbound.failed", retry_in=backoff)
                finally:
                    self._ready.clear()
                    await self._stop(consumer, producer)
                await asyncio.sleep(backoff)
        finally:
            log.info("inbound.stopped", topic=self.topic)

    async def _consume(self, consumer: Any, producer: Any) -> None:
        """Read batches and answer each message; commit a batch once its answers are in."""
        pause = 0.0
        while True:
            batches = await consumer.getmany(
                timeout_ms=int(self.poll_timeout * 1000), max_records=self.batch
            )
            self.last_error, self._outages = None, 0
            outs: list[_Out] = []
            offsets: dict[TopicPartition, int] = {}
            retry: str | None = None
            for tp, records in batches.items():
                for record in records:  # a partition's records, in order
                    try:
                        outs += await self._handle(record)
                    except _NotNow as exc:
                        # Come back to this message; the rest of the partition waits.
                        consumer.seek(tp, record.offset)
                        retry = str(exc)
                        break
                    offsets[tp] = record.offset + 1
            # Sent together after the batch: a few full produce requests rather than one
            # per command (the commands take longer than the producer's linger).
            deliveries = [
                await producer.send(o.topic, value=o.value, key=o.key, headers=list(o.headers))
                for o in outs
            ]
            # Acknowledged by every in-sync replica, or the batch is read again.
            for outcome in await asyncio.gather(*deliveries, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    raise outcome
            if offsets:
                await consumer.commit(offsets)
            if retry is None:
                pause = 0.0
                continue
            pause = min(max(0.1, pause * 2), self.max_backoff)
            self.last_error = retry
            log.warning("inbound.retrying", reason=retry, retry_in=pause)
            await asyncio.sleep(pause)  # well within max.poll.interval: the group keeps us

    # --- one message ------------------------------------------------------------------

    async def _handle(self, record: ConsumerRecord[bytes, bytes]) -> list[_Out]:
        """What to produce for one message; raises ``_NotNow`` to have it tried again."""
        try:
            key, raw, token = self._decode(record)
        except _Poison as poison:
            return self._poison(record, poison)
        answer_to = _request_id(raw) or key
        try:
            principal = self._principal(token)
        except Unauthenticated as error:
            result = failed(error, None, raw)
        else:
            authorization = f"Bearer {token}"

            def context(request: CommandRequest) -> CommandContext:
                return CommandContext(
                    principal=principal,
                    authorization=authorization,
                    idempotency_key=request.idempotency_key,
                    correlation_id=request.request_id,
                )

            try:
                result = await apply(self.catalog, self.execute, raw, context)
            except Exception as exc:
                return self._crashed(record, exc, answer_to)
        where = _where(record)
        if result.get("code") in _RETRY_CODES or (
            result.get("reason") == ConcurrencyConflict.reason
        ):
            raise _NotNow(f"{result.get('code')}: {result.get('message')}")
        self._failures.pop((TopicPartition(record.topic, record.partition), record.offset), None)
        result["idempotencyKey"] = key
        if result["outcome"] != "ok":
            log.info("inbound.refused_command", code=result.get("code"), **where)
        return [self._result(answer_to, result)]

    def _principal(self, token: str) -> Principal:
        """The token's principal. A district sends thousands of messages with one token:
        a verified one is remembered until its ``exp`` (verifying costs more than most
        commands' checks), so an expired token is still refused."""
        known = self._verified.get(token)
        if known is not None and time.time() < known[1]:
            return known[0]
        principal = self.verifier.verify(f"Bearer {token}")
        expires = _expiry(token)
        if expires is not None:
            if len(self._verified) >= _VERIFIED_MAX:
                self._verified.clear()
            self._verified[token] = (principal, expires)
        return principal

    def _decode(self, record: ConsumerRecord[bytes, bytes]) -> tuple[str, dict[str, Any], str]:
        """The idempotency key, the request for the catalog (key in, token out), the token."""
        value = record.value
        raw: Any = None
        if value is not None:
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                raw = json.loads(value)
        request_id = _request_id(raw)
        if record.key is None:
            raise _Poison("no key: the key is the idempotency key", request_id)
        try:
            key = record.key.decode("utf-8")
        except UnicodeDecodeError:
            raise _Poison("the key is not UTF-8 text", request_id) from None
        if not key.strip() or len(key) > IDEMPOTENCY_KEY_MAX:
            raise _Poison(
                f"the key is 1-{IDEMPOTENCY_KEY_MAX} characters of idempotency key", request_id
            )
        if value is None:
            raise _Poison("no value")
        if raw is None:
            raise _Poison("the value is not JSON")
        if not isinstance(raw, dict):
            raise _Poison('the value is not a JSON object {"command": ..., "token": ...}')
        token = raw.get("token")
        if isinstance(token, str):
            token = token.strip().removeprefix("Bearer ").strip()
        if not isinstance(token, str) or len(token.split()) != 1:
            raise _Poison("no token: the value needs a signed token string", request_id)
        request = {k: v for k, v in raw.items() if k != "token"}
        request["idempotencyKey"] = key  # the Kafka key is the one that counts
        return key, request, token

    def _poison(self, record: ConsumerRecord[bytes, bytes], poison: _Poison) -> list[_Out]:
        log.warning("inbound.dead_letter", reason=poison.reason, **_where(record))
        outs = [self._dead_letter(record, poison.reason)]
        if poison.request_id is not None:
            result = failed(BadInput(poison.reason, field="message"), None, None)
            result["requestId"] = poison.request_id
            outs.append(self._result(poison.request_id, result))
        return outs

    def _crashed(
        self, record: ConsumerRecord[bytes, bytes], exc: Exception, answer_to: str
    ) -> list[_Out]:
        """An unexpected error: tried again a few times, then parked with an answer."""
        where = (TopicPartition(record.topic, record.partition), record.offset)
        self._failures[where] = self._failures.get(where, 0) + 1
        if self._failures[where] < self.attempts:
            log.exception("inbound.crashed", attempt=self._failures[where], **_where(record))
            raise _NotNow(f"unexpected error: {exc!r}") from exc
        del self._failures[where]
        reason = f"the command failed {self.attempts} times: {exc!r}"
        log.error("inbound.dead_letter", reason=reason, **_where(record))
        result = failed(ShuangjianError(reason), None, None)
        result["requestId"] = answer_to
        return [self._dead_letter(record, reason), self._result(answer_to, result)]

    def _result(self, key: str, result: dict[str, Any]) -> _Out:
        value = json.dumps(result, ensure_ascii=False, default=str, separators=(",", ":"))
        return _Out(self.results, key.encode(), value.encode())

    def _dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> _Out:
        """As the projector's dead letters: why and where in headers, the message in JSON."""
        body: dict[str, Any] = {
            "reason": reason,
            "consumer": self.group,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
        }
        for name, raw in (("key", record.key), ("value", record.value)):
            if raw is None:
                body[name] = None
                continue
            try:
                body[name] = raw.decode("utf-8")
            except UnicodeDecodeError:
                body[f"{name}_base64"] = base64.b64encode(raw).decode("ascii")
        headers = (
            ("reason", reason.encode()[:1000]),
            ("source-topic", record.topic.encode()),
            ("source-partition", str(record.partition).encode()),
            ("source-offset", str(record.offset).encode()),
            ("consumer", self.group.encode()),
        )
        value = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        # Keyed by where it came from: a redelivered poison message replaces nothing, but
        # an operator sees at once that two dead letters are the same message.
        key = f"{record.topic}:{record.partition}:{record.offset}".encode()
        return _Out(self.dead_letters, key, value, headers)

    # --- clients ----------------------------------------------------------------------

    def _producer(self) -> Any:
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=f"shuangjian-{self.service}-inbound",
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            request_timeout_ms=self.request_timeout_ms,
            **self.security.aiokafka(),
        )

    def _consumer(self) -> Any:
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=f"shuangjian-{self.service}-inbound",
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=self.request_timeout_ms,
            **self.security.aiokafka(),
        )

    async def _create_topics(self, producer: Any) -> bool:
        """Create the commands, results and dead-letter topics; whether that is settled.

        Best effort, as the bus does: existing topics are fine; a cluster without a
        controller (librdkafka's mock) or one refusing CreateTopics costs a warning and
        the operator's topics (or auto-creation) are used.
        """
        cluster = producer.client.cluster
        if cluster.controller is None:
            log.warning("inbound.topics.not_created", reason="the cluster names no controller")
            return True
        replication = min(self.replication, len(cluster.brokers()) or 1)
        wanted = [
            NewTopic(self.topic, self.partitions, replication, topic_configs=TOPIC_CONFIG),
            NewTopic(self.results, self.partitions, replication, topic_configs=RESULTS_CONFIG),
            NewTopic(self.dead_letters, self.partitions, replication, topic_configs=TOPIC_CONFIG),
        ]
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap,
            client_id=f"shuangjian-{self.service}-inbound-admin",
            request_timeout_ms=self.request_timeout_ms,
            **self.security.aiokafka(),
        )
        try:
            await admin.start()
            response = await admin.create_topics(wanted)
        except (TimeoutError, KafkaConnectionError):
            raise  # passes: the loop reconnects and asks again
        except Exception as exc:
            log.warning("inbound.topics.not_created", error=repr(exc))
            return True
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        for entry in response.topic_errors:
            name, code = entry[0], entry[1]
            if code == 0:
                log.info("inbound.topic.created", topic=name, partitions=self.partitions)
            elif for_code(code) is not TopicAlreadyExistsError:
                log.warning("inbound.topic.not_created", topic=name, error=for_code(code).__name__)
        return True

    async def _stop(self, consumer: Any, producer: Any) -> None:
        """Stop both clients within a bounded time, even when the broker is gone.

        An idempotent producer never expires a batch, so what it still buffers is failed
        first (as ``KafkaBus`` does): those results were not acknowledged, their offsets
        not committed, and the messages are read and answered again.
        """
        timeout = self.request_timeout_ms / 1000 + 1
        try:
            async with asyncio.timeout(timeout):
                await consumer.stop()
        except Exception as exc:
            log.warning("inbound.consumer.stop_failed", error=repr(exc))
        await stop_producer(producer, timeout)


def _request_id(raw: Any) -> str | None:
    """The requestId of a decoded value, when it has a usable one."""
    if not isinstance(raw, dict):
        return None
    ident = raw.get("requestId")
    if isinstance(ident, str) and ident.strip():
        return ident[:IDEMPOTENCY_KEY_MAX]
    return None


def _expiry(token: str) -> float | None:
    """The ``exp`` of a token that just verified (its payload, read without checking)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError):
        return None


def _where(record: ConsumerRecord[Any, Any]) -> dict[str, Any]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}
