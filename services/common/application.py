"""The application layer shared by the services: load, decide, append, retry.

``Application.handle`` takes a command, finds its handler in the service's
``CommandTable``, checks the id and business time every command has, and lets the handler
say what the aggregate should decide. ``Application.execute`` is then the one path every
command takes:

1. With an idempotency key, look for the commit that key already produced. If it is
   there, decide again on the state before it: the same events mean a retry (nothing
   is written, the current state is returned); different ones mean the key was reused
   for another command (``Conflict``).
2. Load the aggregate from its stream, let it decide (pure code), append the new events
   with the version it was loaded at. A concurrent writer makes that a
   ``ConcurrencyConflict``; the command is decided again on fresh state, a few times.
3. Wake the outbox relay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar
from uuid import UUID, uuid4, uuid5

from services.common.aggregate import Aggregate, Change, EventTypes
from services.common.auth import SYSTEM, Principal
from services.common.commands import (
    Call,
    Command,
    CommandTable,
    business_time,
    entity_id,
)
from services.common.envelope import Envelope
from services.common.errors import BadInput, ConcurrencyConflict, Conflict, Forbidden
from services.common.ports import EventStore
from services.common.timeutil import utc_now

A = TypeVar("A", bound=Aggregate)

# Namespace for event ids derived from idempotency keys (uuid5 of stream + key + index).
IDEMPOTENCY_NAMESPACE = UUID("6f1d4a52-3c1e-4f0e-9a57-5a8c2e0b5d11")


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
    """One aggregate type's command side over its service's event store."""

    max_attempts = 3

    def __init__(
        self,
        store: EventStore,
        events: EventTypes,
        factory: Callable[[str], A],
        commands: CommandTable,
        *,
        clock: Callable[[], datetime] = utc_now,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.events = events
        self.factory = factory
        self.commands = commands
        self.clock = clock
        self.on_commit = on_commit

    async def load(self, stream: str, to_version: int | None = None) -> A:
        """The aggregate rebuilt from its events; version 0 when it was never written."""
        aggregate = self.factory(stream)
        stored = await self.store.read_stream(stream, to_version=to_version)
        aggregate.replay([(self.events.decode(e), e.occurred_at) for e in stored])
        return aggregate

    async def handle(self, cmd: Command, ctx: CommandContext) -> Outcome[A]:
        """Decide ``cmd`` with the handler its table names, and store what it decided."""
        route = self.commands.route(cmd)
        if cmd.id is None and not route.creates:
            raise BadInput("id is required", field="id")
        stream = entity_id(cmd.id)
        at = business_time(cmd.occurred_at, self.clock())
        decide = await route.handler(cmd, Call(self, stream, at))
        return await self.execute(stream, decide, ctx)

    async def execute(
        self, stream: str, decide: Callable[[A], None], ctx: CommandContext
    ) -> Outcome[A]:
        if not ctx.principal.role.writes:
            raise Forbidden(f"{ctx.principal.subject} is a viewer and may not change anything")
        if ctx.idempotency_key:
            retry = await self._retried(stream, decide, ctx)
            if retry is not None:
                return retry
        for attempt in range(1, self.max_attempts + 1):
            aggregate = await self.load(stream)
            loaded_at = aggregate.version
            if aggregate.exists:
                ctx.principal.require_write(aggregate.region)
            decide(aggregate)
            changes = aggregate.collect()
            for change in changes:
                ctx.principal.require_write(change.region)
            if not changes:
                return Outcome(aggregate)
            envelopes = self._envelopes(stream, loaded_at, changes, ctx)
            try:
                stored = await self.store.append(envelopes, expected_version=loaded_at)
            except ConcurrencyConflict:
                if attempt == self.max_attempts:
                    raise
                continue
            if self.on_commit is not None:
                self.on_commit()
            return Outcome(aggregate, stored)
        raise AssertionError("unreachable")

    async def _retried(
        self, stream: str, decide: Callable[[A], None], ctx: CommandContext
    ) -> Outcome[A] | None:
        first = await self.store.get_event(_event_id(stream, ctx.idempotency_key, 0))
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
        self, stream: str, loaded_at: int, changes: list[Change], ctx: CommandContext
    ) -> list[Envelope]:
        now = self.clock()
        ids = [
            _event_id(stream, ctx.idempotency_key, i) if ctx.idempotency_key else uuid4()
            for i in range(len(changes))
        ]
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


def _event_id(stream: str, key: str | None, index: int) -> UUID:
    return uuid5(IDEMPOTENCY_NAMESPACE, f"{stream}\x1f{key}\x1f{index}")
