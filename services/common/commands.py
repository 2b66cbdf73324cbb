"""Commands, and the table that says which handler decides each one.

Every command is a frozen dataclass with the two fields all of them share: the
aggregate's ``id`` (client-chosen, or made up for a command that creates it) and the
business time ``occurred_at``. A service lists its commands in a ``CommandTable`` (the
``COMMAND_HANDLERS`` idea of cosmicpython): one row per command type with its handler
function and its HTTP verb. The application dispatches by the table, and the HTTP routes,
their request bodies and the remote client are derived from the same rows.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar
from urllib.parse import quote
from uuid import uuid4

from pydantic import BaseModel

from services.common.errors import BadInput, Forbidden
from services.common.timeutil import SHANGHAI, aware

if TYPE_CHECKING:
    from services.common.application import Outcome

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
EARLIEST = datetime(1990, 1, 1, tzinfo=SHANGHAI)
# Clocks of district systems drift; a fact stamped a few minutes ahead is still accepted.
CLOCK_SKEW = timedelta(minutes=5)


def described(description: str, default: Any = dataclasses.MISSING) -> Any:
    """A command field with the description its HTTP body and schemas show."""
    return dataclasses.field(default=default, metadata={"description": description})


@dataclass(frozen=True, kw_only=True)
class Command:
    """Base of every command: which aggregate, and when the fact happened."""

    id: str | None = described(
        "The aggregate's id: client-chosen for a command that creates it, where resending "
        "the same command is a no-op. Any other command is made safe to resend with an "
        "Idempotency-Key header (without one, a second confirmation confirms again).",
        None,
    )
    occurred_at: datetime | None = described(
        "Business time; naive means Asia/Shanghai; default now.", None
    )


def entity_id(value: str | None, field: str = "id") -> str:
    """A client-chosen id, checked, or a new one."""
    if value is None:
        return uuid4().hex
    if not _ID.match(value):
        raise BadInput(
            "an id is 1-64 letters, digits or _ . : - and starts with a letter or digit",
            field=field,
        )
    return value


E = TypeVar("E", bound=StrEnum)


def choice(enum_type: type[E], value: str, field: str) -> E:
    """One of an enum's values, or ``BAD_INPUT`` on ``field`` listing the allowed ones."""
    try:
        return enum_type(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum_type)
        raise BadInput(f"{value!r} is not one of {allowed}", field=field) from None


def optional_choice(enum_type: type[E], value: str | None, field: str) -> E | None:
    return None if value is None else choice(enum_type, value, field)


def business_time(value: datetime | None, now: datetime, field: str = "occurred_at") -> datetime:
    """When a fact happened: given (possibly back-dated), or now. Never in the future."""
    if value is None:
        return aware(now)
    value = aware(value)
    if value > now + CLOCK_SKEW:
        raise BadInput(f"{value.isoformat()} is in the future", field=field)
    if value < EARLIEST:
        raise BadInput(f"{value.isoformat()} is before 1990", field=field)
    return value


def require_recent(
    at: datetime, now: datetime, window: timedelta, field: str = "occurred_at"
) -> None:
    """Refuse a fact dated further back than ``window`` for a caller who may not back-date.

    Only the ``admin`` and ``importer`` roles import history, so an operator cannot get
    round a dated rule (no new SUBJECT approvals) by back-dating a registration.
    """
    if aware(at) < aware(now) - window:
        days = window / timedelta(days=1)
        raise Forbidden(
            f"{aware(at).isoformat()} is more than {days:g} day(s) in the past: back-dating "
            f"beyond {days:g} day(s) needs the admin or importer role",
            field=field,
        )


S = TypeVar("S")  # the service (an Application) a handler works for
AggregateT = TypeVar("AggregateT")
Decision = Callable[[AggregateT], None]
"""What a command does to the aggregate once it is loaded (pure: checks and records)."""


@dataclass(frozen=True)
class Call(Generic[S]):
    """One command as its handler sees it: the stream it acts on and its business time."""

    service: S
    stream: str
    at: datetime


Handler = Callable[[Any, Call[Any]], Awaitable[Decision[Any]]]
"""``async def approve(cmd: ApproveInstitution, call: Call[Registry]) -> Decision``."""


@dataclass(frozen=True)
class Route:
    """One command: its type, its handler, and where it is posted over HTTP.

    ``verb`` is the last path segment (``/v1/<resource>/{id}/<verb>``); a command that
    creates its aggregate (``creates``) is posted to ``/v1/<resource>`` with the id in its
    body instead.
    """

    command: type[Command]
    handler: Handler
    verb: str = ""
    summary: str | None = None
    creates: bool = False


@dataclass(frozen=True)
class CommandTable:
    """Every command of one aggregate type of a service, by command type.

    ``resource`` names the HTTP collection (``institutions``); ``read_model`` is the
    read-model collection that holds one document per aggregate with its ``version``, so
    a caller can wait until a command shows there (read-your-writes).
    """

    resource: str
    read_model: str
    routes: Sequence[Route]
    state: type[AggregateState] = field(default_factory=lambda: AggregateState)
    # The stream a command's id names; by default the id is the stream. A part of an
    # aggregate with its own id (a rectification order within its inspection) maps it.
    stream_of: Callable[[str], str] | None = None

    def __post_init__(self) -> None:
        seen: set[type[Command]] = set()
        for route in self.routes:
            if route.command in seen:
                raise ValueError(f"{route.command.__name__} is listed twice")
            if not route.creates and not route.verb:
                raise ValueError(f"{route.command.__name__} needs a verb (its HTTP path)")
            seen.add(route.command)

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes)

    def stream(self, id: str | None) -> str:
        """The stream a command with this id acts on (a new id for a creating command)."""
        if self.stream_of is None or id is None:
            return entity_id(id)
        return self.stream_of(id)

    def route(self, command: Command) -> Route:
        for route in self.routes:
            if type(command) is route.command:
                return route
        raise TypeError(f"no handler for {type(command).__name__} in {self.resource}")

    def request(self, command: Command) -> tuple[str, dict[str, Any]]:
        """The HTTP path (relative to the service's API root) and JSON body of a command."""
        route = self.route(command)
        body = {
            f.name: _json(getattr(command, f.name))
            for f in dataclasses.fields(command)
            if getattr(command, f.name) is not None or f.default is dataclasses.MISSING
        }
        if route.creates:
            return f"/v1/{self.resource}", body
        target = quote(str(body.pop("id", "")), safe="")
        return f"/v1/{self.resource}/{target}/{route.verb}", body


def _json(value: Any) -> Any:
    """A command field as JSON: nested inputs (dataclasses) and lists of them included."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [_json(item) for item in value]
    return value


def tables_by_command(tables: Sequence[CommandTable]) -> Mapping[type[Command], CommandTable]:
    return {route.command: table for table in tables for route in table}


class StoredEvent(BaseModel):
    id: str
    type: str
    version: int
    position: int | None


class AggregateState(BaseModel):
    """What a command's HTTP answer says: the aggregate after it, and the events it stored.

    A service extends it with the fields of its aggregate (``InstitutionState``) by
    overriding ``fields``; clients rely on ``id`` and ``version`` only.
    """

    id: str
    version: int
    region: str
    events: list[StoredEvent]

    @classmethod
    def of(cls, outcome: Outcome[Any]) -> Self:
        aggregate = outcome.aggregate
        return cls(
            id=aggregate.id,
            version=aggregate.version,
            region=aggregate.region,
            events=[
                StoredEvent(id=str(e.id), type=e.type, version=e.version, position=e.position)
                for e in outcome.events
            ],
            **cls.fields(aggregate),
        )

    @classmethod
    def fields(cls, aggregate: Any) -> dict[str, Any]:
        """The service's own fields of the aggregate."""
        return {}
