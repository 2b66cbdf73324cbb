"""The application layer shared by the services: load, decide, append, retry.

``Application.handle`` takes a command, finds its handler in the service's
``CommandTable``, checks the id and business time every command has, and lets the handler
say what the aggregate should decide. ``Application.execute`` is then the one path every
command takes:

1. With an idempotency key, look for the commit that key already produced. A key
   belongs to its caller (the token's subject) and to one operation (the command type)
   on one stream: the event ids derive from all of them, so another caller's key, or
   the caller's key on another command, is simply a new request. If the commit is
   there, decide again on the state before it: the same events mean a retry (nothing
   is written, the current state is returned); different ones mean the key was reused
   for another request (``Conflict``).
2. Load the aggregate from its stream, let it decide (pure code), append the new events
   with the version it was loaded at. A concurrent writer makes that a
   ``ConcurrencyConflict``; the command is decided again on fresh state after a jittered
   backoff, within the bounds of the ``RetryPolicy``. Only when those are used up does
   the caller see the conflict (``reason`` ``CONCURRENT_UPDATE``, ``retryable``).
3. Wake the outbox relay.

Before anything is appended, every event must fall in the caller's region scope and,
unless the caller imports history (``admin``, ``importer``; ``SYSTEM`` is an admin),
its business time must lie within the back-dating window
(``SHUANGJIAN_BACKDATE_WINDOW_DAYS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid4, uuid5

from services.common.aggregate import Aggregate, Change, EventTypes
from services.common.auth import SYSTEM, Principal
from services.common.commands import (
    Call,
    Command,
    CommandTable,
    business_time,
    require_recent,
    tables_by_command,
)
from services.common.config import BACKDATE_WINDOW_DAYS
from services.common.envelope import Envelope
from services.common.errors import BadInput, ConcurrencyConflict, Conflict, Forbidden
from services.common.metrics import count_command
from services.common.ports import EventStore
from services.common.timeutil import utc_now

A = TypeVar("A", bound=Aggregate)

# Namespace for event ids derived from idempotency keys (uuid5 of stream, caller,
# operation, key and index).
IDEMPOTENCY_NAMESPACE = UUID("6f1d4a52-3c1e-4f0e-9a57-5a8c2e0b5d11")
IDEMPOTENCY_KEY_MAX = 200


@dataclass(frozen=True)
class RetryPolicy:
    """How commands racing on one stream are kept from failing each other.

    With ``queue``, commands on one stream in this process take turns (a lock per
    stream), so they never race each other; races are left only with writers in other
    processes (service replicas). A command that lost such a race is decided again on
    fresh state after a random wait between 0 and a cap that doubles from ``backoff`` up
    to ``max_backoff`` seconds ("full jitter"), so racing writers spread out instead of
    colliding again. It gives up after ``attempts`` attempts, or once ``deadline``
    seconds have passed since the command began (its turn in the queue included).
    """

    attempts: int = 50
    deadline: float = 5.0
    backoff: float = 0.002
    max_backoff: float = 0.1
    queue: bool = True

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.deadline < 0 or not 0 <= self.backoff <= self.max_backoff:
            raise ValueError(f"not a usable retry policy: {self}")

    def delay(self, failed: int) -> float:
        """Seconds to wait after the ``failed``-th attempt lost the race."""
        cap = min(self.max_backoff, self.backoff * 2 ** (failed - 1))
        return random.uniform(0, cap) if cap > 0 else 0.0


DEFAULT_RETRY = RetryPolicy()
BACKDATE_WINDOW = timedelta(days=BACKDATE_WINDOW_DAYS)
IMMEDIATE_RETRIES = RetryPolicy(
    attempts=3, deadline=float("inf"), backoff=0, max_backoff=0, queue=False
)
"""The policy before issue 10: three attempts back to back (kept for the benchmark)."""


@dataclass(frozen=True)
class CommandContext:
    """Who asks, and how to recognise a retry of the same request.

    ``principal`` bounds what the command may touch: every event it records must fall in
    the principal's region scope, and a viewer records nothing. Internal callers (demo,
    replays) act as ``SYSTEM``.
    """

    principal: Principal = SYSTEM
    # The caller's own bearer header, forwarded when a command goes to another service.
    authorization: str | None = field(default=None, repr=False)
    actor: str | None = None
    idempotency_key: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None

    @property
    def who(self) -> str:
        return self.actor or self.principal.subject


@dataclass
class Outcome(Generic[A]):
    """The aggregate after a command and the events the command stored (none for a retry)."""

    aggregate: A
    events: list[Envelope] = field(default_factory=list)

    @property
    def last_position(self) -> int:
        return max((e.position or 0 for e in self.events), default=0)


class Application(Generic[A]):
    """One aggregate type's command side over its service's event store.

    ``retry`` says how racing writers are retried; ``backdate_window`` how far back a
    caller without the ``admin`` or ``importer`` role may date a fact (a module passes
    both from its ``Wiring``).
    """

    def __init__(
        self,
        store: EventStore,
        events: EventTypes,
        factory: Callable[[str], A],
        commands: CommandTable | Sequence[CommandTable],
        *,
        clock: Callable[[], datetime] = utc_now,
        on_commit: Callable[[], None] | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
        backdate_window: timedelta = BACKDATE_WINDOW,
    ) -> None:
        self.store = store
        self.events = events
        self.factory = factory
        self.tables = tables_by_command(
            [commands] if isinstance(commands, CommandTable) else commands
        )
        self.clock = clock
        self.on_commit = on_commit
        self.retry = retry
        self.backdate_window = backdate_window
        self._queues: dict[str, _Queue] = {}

    async def load(self, stream: str, to_version: int | None = None) -> A:
        """The aggregate rebuilt from its events; version 0 when it was never written."""
        aggregate = self.factory(stream)
        stored = await self.store.read_stream(stream, to_version=to_version)
        aggregate.replay([(self.events.decode(e), e.occurred_at) for e in stored])
        return aggregate

    async def handle(self, cmd: Command, ctx: CommandContext) -> Outcome[A]:
        """Decide ``cmd`` with the handler its table names, and store what it decided."""
        done = count_command(self.events.service, type(cmd).__name__)
        try:
            outcome = await self._handle(cmd, ctx)
        except Exception as error:
            done(error)
            raise
        done(None)
        return outcome

    async def _handle(self, cmd: Command, ctx: CommandContext) -> Outcome[A]:
        table = self.tables.get(type(cmd))
        if table is None:
            raise TypeError(f"no handler for {type(cmd).__name__}")
        route = table.route(cmd)
        if cmd.id is None and not route.creates:
            raise BadInput("id is required", field="id")
        stream = table.stream(cmd.id)
        at = business_time(cmd.occurred_at, self.clock())
        decide = await route.handler(cmd, Call(self, stream, at))
        return await self.execute(stream, decide, ctx, operation=type(cmd).__name__)

    async def execute(
        self, stream: str, decide: Callable[[A], None], ctx: CommandContext, *, operation: str
    ) -> Outcome[A]:
        """Decide and append; ``operation`` (the command type) scopes the idempotency key."""
        if not ctx.principal.role.writes:
            raise Forbidden(f"{ctx.principal.subject} is a viewer and may not change anything")
        key = ctx.idempotency_key
        if key is not None and len(key) > IDEMPOTENCY_KEY_MAX:
            raise BadInput(
                f"an idempotency key is at most {IDEMPOTENCY_KEY_MAX} characters",
                field="idempotencyKey",
            )
        ids = IdempotentIds(stream, ctx.principal.subject, operation, key) if key else None
        started = time.monotonic()
        async with self._turn(stream, started):
            if ids is not None:
                retry = await self._retried(stream, decide, ctx, ids)
                if retry is not None:
                    return retry
            return await self._decide_and_append(stream, decide, ctx, ids, started)

    async def _decide_and_append(
        self,
        stream: str,
        decide: Callable[[A], None],
        ctx: CommandContext,
        ids: IdempotentIds | None,
        started: float,
    ) -> Outcome[A]:
        decided: list[A] = []

        def attempt_on(stored: list[Envelope]) -> list[Envelope]:
            # Plain code: the store may run it in its writer thread, inside the
            # transaction that appends what it returns.
            aggregate = self.factory(stream)
            aggregate.replay([(self.events.decode(e), e.occurred_at) for e in stored])
            decided.append(aggregate)
            return self._decide(stream, aggregate, decide, ctx, ids)

        for attempt in range(1, self.retry.attempts + 1):
            try:
                stored = await self.store.decide_and_append(stream, attempt_on)
            except ConcurrencyConflict as lost:
                await self._back_off(stream, attempt, started, lost)
                continue
            if stored and self.on_commit is not None:
                self.on_commit()
            return Outcome(decided[-1], stored)
        raise AssertionError("unreachable")

    def _decide(
        self,
        stream: str,
        aggregate: A,
        decide: Callable[[A], None],
        ctx: CommandContext,
        ids: IdempotentIds | None,
    ) -> list[Envelope]:
        """The events ``decide`` makes of ``aggregate``, once the caller may record them."""
        loaded_at = aggregate.version
        if aggregate.exists:
            ctx.principal.require_write(aggregate.region)
        decide(aggregate)
        changes = aggregate.collect()
        now = self.clock()
        for change in changes:
            ctx.principal.require_write(change.region)
            if not ctx.principal.role.backdates:
                require_recent(change.occurred_at, now, self.backdate_window)
        if not changes:
            return []
        return self._envelopes(stream, loaded_at, changes, ctx, ids)

    @contextlib.asynccontextmanager
    async def _turn(self, stream: str, started: float) -> AsyncIterator[None]:
        """Wait for the other commands on ``stream`` in this process (with ``queue``)."""
        if not self.retry.queue:
            yield
            return
        queue = self._queues.setdefault(stream, _Queue())
        queue.waiting += 1
        try:
            remaining = self.retry.deadline - (time.monotonic() - started)
            try:
                async with asyncio.timeout(None if math.isinf(remaining) else remaining):
                    await queue.lock.acquire()
            except TimeoutError:
                raise ConcurrencyConflict(
                    f"{stream} is busy: {queue.waiting - 1} other command(s) are changing it; "
                    "nothing was recorded, send it again"
                ) from None
            try:
                yield
            finally:
                queue.lock.release()
        finally:
            queue.waiting -= 1
            if not queue.waiting:
                del self._queues[stream]

    async def _back_off(
        self, stream: str, attempt: int, started: float, lost: ConcurrencyConflict
    ) -> None:
        """Wait before deciding again, or give up with a conflict the caller may retry."""
        elapsed = time.monotonic() - started
        if attempt >= self.retry.attempts or elapsed >= self.retry.deadline:
            raise ConcurrencyConflict(
                f"{stream} kept changing under this command: other writers won {attempt} "
                f"attempt(s) in {elapsed:.1f} s ({lost.message}); nothing was recorded, "
                "send it again"
            ) from lost
        delay = min(self.retry.delay(attempt), self.retry.deadline - elapsed)
        if delay > 0:
            await asyncio.sleep(delay)

    async def _retried(
        self, stream: str, decide: Callable[[A], None], ctx: CommandContext, ids: IdempotentIds
    ) -> Outcome[A] | None:
        first = await self.store.get_event(ids.event(0))
        if first is None:
            return None
        before = await self.load(stream, to_version=first.version - 1)
        ctx.principal.require_write(first.region)
        decide(before)
        decided = [(c.event.TYPE, c.event.payload()) for c in before.collect()]
        stored = await self.store.read_stream(
            stream, after_version=first.version - 1, to_version=first.version - 1 + len(decided)
        )
        if decided != [(e.type, e.data) for e in stored]:
            raise Conflict(
                "this idempotency key was already used for a different request",
                field="idempotencyKey",
            )
        return Outcome(await self.load(stream))

    def _envelopes(
        self,
        stream: str,
        loaded_at: int,
        changes: list[Change],
        ctx: CommandContext,
        keyed: IdempotentIds | None,
    ) -> list[Envelope]:
        now = self.clock()
        ids = [keyed.event(i) if keyed else uuid4() for i in range(len(changes))]
        correlation = ctx.correlation_id or str(ids[0])
        return [
            Envelope(
                id=event_id,
                type=change.event.TYPE,
                schema_version=change.event.SCHEMA_VERSION,
                stream=stream,
                version=loaded_at + offset,
                region=change.region,
                occurred_at=change.occurred_at,
                recorded_at=now,
                actor=ctx.who,
                causation_id=ctx.causation_id,
                correlation_id=correlation,
                data=change.event.payload(),
            )
            for offset, (event_id, change) in enumerate(zip(ids, changes, strict=True), start=1)
        ]


@dataclass
class _Queue:
    """The commands on one stream waiting for their turn, and the lock they take turns on."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0


@dataclass(frozen=True)
class IdempotentIds:
    """The event ids an idempotency key stands for: its caller's, for one operation."""

    stream: str
    subject: str
    operation: str
    key: str

    def event(self, index: int) -> UUID:
        name = json.dumps([self.stream, self.subject, self.operation, self.key, index])
        return uuid5(IDEMPOTENCY_NAMESPACE, name)


class Applications:
    """A service with several aggregate types: one ``Application`` each over its one
    event store, and each command goes to the one whose tables list its type."""

    def __init__(self, service: str, *applications: Application[Any]) -> None:
        self.service = service
        self._by_command: dict[type[Command], Application[Any]] = {}
        for app in applications:
            for kind in app.tables:
                if kind in self._by_command:
                    raise ValueError(f"{kind.__name__} is listed by two applications")
                self._by_command[kind] = app

    def route(self, cmd: Command) -> Application[Any]:
        app = self._by_command.get(type(cmd))
        if app is None:
            raise TypeError(f"the {self.service} service takes no {type(cmd).__name__}")
        return app

    async def handle(self, cmd: Command, ctx: CommandContext) -> Outcome[Any]:
        return await self.route(cmd).handle(cmd, ctx)
