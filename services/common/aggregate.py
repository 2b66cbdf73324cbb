"""Event-sourced aggregates: state is rebuilt from events; commands decide in pure code.

A command method checks the rules against the current state and calls ``_record`` with
the events it decides on; ``_record`` applies them at once, so later checks in the same
command see the new state. No I/O happens here. Each aggregate defines ``when`` as an
``event_dispatch`` (a ``functools.singledispatchmethod``) with one registered function per
event class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import singledispatchmethod
from types import MethodType
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from services.common.envelope import Envelope, Upcasters, describe
from services.common.errors import Conflict, MalformedEvent


class DomainEvent(BaseModel):
    """A fact in the domain's words. Subclasses set ``TYPE`` (``<service>.<PastTenseVerb>``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    TYPE: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int] = 1

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class event_dispatch(singledispatchmethod):
    """``functools.singledispatchmethod`` whose bound method costs a dispatch-cache lookup
    and no more. Python 3.11's builds a new wrapper (``update_wrapper``) at every access:
    an aggregate applies each event it loads or decides through ``when``, and that was
    ~15 µs of every command."""

    def __get__(self, obj: Any, cls: type[Any] | None = None) -> Callable[..., None]:
        if obj is None:
            return super().__get__(obj, cls)
        return MethodType(self._call, obj)

    def _call(self, obj: Any, event: Any, *args: Any) -> None:
        self.dispatcher.dispatch(type(event))(obj, event, *args)


@dataclass(frozen=True)
class Change:
    """An event an aggregate decided on, not yet stored."""

    event: DomainEvent
    occurred_at: datetime
    region: str


class Aggregate:
    """Base of every aggregate. ``version`` counts the events applied (0 = never written)."""

    def __init__(self, id: str) -> None:
        self.id = id
        self.version = 0
        self.region = ""
        self._pending: list[Change] = []

    @property
    def exists(self) -> bool:
        return self.version > 0 or bool(self._pending)

    def _record(self, event: DomainEvent, occurred_at: datetime) -> None:
        self._mutate(event, occurred_at)
        self._pending.append(Change(event, occurred_at, self.region))

    def _mutate(self, event: DomainEvent, occurred_at: datetime) -> None:
        self.when(event, occurred_at)
        self.version += 1

    def replay(self, events: list[tuple[DomainEvent, datetime]]) -> Self:
        for event, occurred_at in events:
            self._mutate(event, occurred_at)
        return self

    def collect(self) -> list[Change]:
        pending, self._pending = self._pending, []
        return pending

    def when(self, event: DomainEvent, occurred_at: datetime) -> None:
        """Apply one event to the state. Subclasses dispatch with ``event_dispatch``."""
        raise MalformedEvent(f"{type(self).__name__} cannot apply {event.TYPE}")


class ExclusiveIds(Aggregate):
    """An aggregate of a service whose ids are unique across its kinds of record: loading
    another kind's stream under this id is a ``CONFLICT`` on ``id`` (a complaint cannot
    take an inspection's id), not a malformed event."""

    def when(self, event: DomainEvent, occurred_at: datetime) -> None:
        raise Conflict(f"id {self.id} is already used by another record ({event.TYPE})", field="id")


class EventTypes:
    """A service's event vocabulary: type name → class, with the upcasters for old versions."""

    def __init__(self, *classes: type[DomainEvent], upcasters: Upcasters | None = None) -> None:
        self._classes = {cls.TYPE: cls for cls in classes}
        self.upcasters = upcasters or Upcasters()

    def __contains__(self, event_type: str) -> bool:
        return event_type in self._classes

    def schema_version(self, event_type: str) -> int:
        return self._classes[event_type].SCHEMA_VERSION

    def decode(self, envelope: Envelope) -> DomainEvent:
        envelope = self.upcasters.upcast(envelope)
        cls = self._classes.get(envelope.type)
        if cls is None:
            raise MalformedEvent(f"unknown event type {envelope.type!r}")
        if envelope.schema_version != cls.SCHEMA_VERSION:
            raise MalformedEvent(
                f"{envelope.type} schema_version {envelope.schema_version} cannot be read "
                f"(this build reads {cls.SCHEMA_VERSION})"
            )
        try:
            return cls.model_validate(envelope.data)
        except ValidationError as exc:
            raise MalformedEvent(f"{envelope.type}: {describe(exc, 'data.')}") from exc

    @property
    def classes(self) -> list[type[DomainEvent]]:
        return list(self._classes.values())

    @property
    def service(self) -> str:
        """The service these events belong to: their types' common prefix (``registry``)."""
        services = {name.partition(".")[0] for name in self._classes}
        return services.pop() if len(services) == 1 else "mixed"
