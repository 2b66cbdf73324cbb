"""A service is a module: one object that says everything the platform needs of it.

``services/bootstrap.py`` lists the modules (``MODULES``) and builds every process from
that list: the embedded platform, ``shuangjian serve <service>``, the projection workers
and the gateway. A module names its service and event types, brings its own settings
class, and says how to build its command side and its projections; its HTTP API and the
client other processes use are derived from its command tables.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

import httpx
from fastapi import FastAPI

from services.common.aggregate import EventTypes
from services.common.application import DEFAULT_RETRY, CommandContext, Outcome, RetryPolicy
from services.common.auth import TokenVerifier
from services.common.commands import Command, CommandTable
from services.common.config import ServiceSettings
from services.common.envelope import Envelope
from services.common.http import create_command_api
from services.common.ports import EventStore, ReadStore
from services.common.projection import Projection
from services.common.regions import RegionTree
from services.common.remote import RemoteService
from services.common.timers import Timer
from services.common.timeutil import utc_now

S = TypeVar("S", bound=ServiceSettings)

Lookup = Callable[..., Awaitable[Any]]
"""A query one service answers for another's command side, over its own read models."""
LookupFactory = Callable[[ReadStore, Callable[[], datetime]], Lookup]
"""Builds a lookup from the read store and the clock it judges "now" by."""


class CommandService(Protocol):
    """A service's command side: takes a command, answers with what it did."""

    async def handle(self, cmd: Command, ctx: CommandContext) -> Outcome[Any]: ...


@dataclass(frozen=True)
class Wiring(Generic[S]):
    """What a service's command side is built from.

    A module hands ``options`` (clock, on_commit, retry, backdate_window) on to its
    ``Application``, so every service follows the same retry and back-dating rules.
    """

    store: EventStore
    regions: RegionTree
    settings: S
    on_commit: Callable[[], None] | None = None
    clock: Callable[[], datetime] = utc_now
    retry: RetryPolicy = DEFAULT_RETRY
    lookups: Mapping[str, Lookup] = field(default_factory=dict)
    # The installation's secret (``SHUANGJIAN_JWT_SECRET`` or the data dir's), for keys a
    # service derives from it (finance's payer hash); None where there is none.
    secret: bytes | None = None

    def lookup(self, name: str, absent: Lookup | None = None) -> Lookup:
        """The lookup another module provides under ``name`` (``ServiceModule.provides``).

        ``absent`` answers when no module of this deployment provides it; without one,
        a missing lookup is a wiring error.
        """
        found = self.lookups.get(name, absent)
        if found is None:
            raise LookupError(f"no module provides the lookup {name!r}")
        return found

    @property
    def backdate_window(self) -> timedelta:
        """How far back a caller without the admin or importer role may date a fact."""
        return timedelta(days=self.settings.backdate_window_days)

    @property
    def options(self) -> dict[str, Any]:
        """The keyword arguments every ``Application`` takes: ``App(..., **wiring.options)``."""
        return {
            "clock": self.clock,
            "on_commit": self.on_commit,
            "retry": self.retry,
            "backdate_window": self.backdate_window,
        }


def no_timers(
    service: CommandService, store: ReadStore, clock: Callable[[], datetime], settings: Any
) -> Sequence[Timer]:
    return ()


def shown_whole(event: Envelope) -> Envelope:
    return event


def institution_named_in(event: Envelope) -> Sequence[str]:
    """The institution an event is about, when its data names one."""
    named = event.data.get("institution_id")
    return (named,) if isinstance(named, str) else ()


@dataclass(frozen=True)
class ServiceModule(Generic[S]):
    """Everything the platform needs to know of one service.

    * ``name``: the service, the prefix of its event types, its store and its topic;
      ``description`` heads its OpenAPI document; ``port`` is where ``serve`` listens.
    * ``settings``: its own pydantic-settings class (``SHUANGJIAN_*`` variables).
    * ``commands``: its command tables; the HTTP API and client are derived from them.
    * ``application``: builds its command side from a ``Wiring``.
    * ``projections``: builds the read models it maintains.
    * ``audit_subject``: the institutions an event of this service is about, for the
      audit trail every institution has.
    * ``provides``: lookups by name that other services' command sides may use (a
      published query, like a published event type: the registry's ``institutions``,
      the inspections' overdue rectifications). Services still never import each other.
    * ``timers``: work it does because time passed (``services/common/timers.py``), built
      from its own command side, the read store, the clock and its settings.
    * ``redact``: what readers may see of one of its events (the audit trail, live
      subscriptions): finance masks account numbers there.
    """

    name: str
    description: str
    events: EventTypes
    settings: type[S]
    commands: Sequence[CommandTable]
    application: Callable[[Wiring[S]], CommandService]
    projections: Callable[[RegionTree, S], Sequence[Projection]]
    port: int
    audit_subject: Callable[[Envelope], Sequence[str]] = institution_named_in
    provides: Mapping[str, LookupFactory] = field(default_factory=dict)
    timers: Callable[[CommandService, ReadStore, Callable[[], datetime], S], Sequence[Timer]] = (
        no_timers
    )
    redact: Callable[[Envelope], Envelope] = shown_whole
    command_types: Mapping[type[Command], CommandTable] = field(init=False)

    def __post_init__(self) -> None:
        by_type = {route.command: table for table in self.commands for route in table}
        object.__setattr__(self, "command_types", by_type)

    def api(self, service: CommandService, verifier: TokenVerifier) -> FastAPI:
        """The service's command API (OpenAPI at ``/openapi.json``)."""
        return create_command_api(
            f"Shuangjian {self.name}",
            self.description,
            self.commands,
            lambda cmd, ctx: service.handle(cmd, ctx),  # looked up per call, not at build
            verifier,
        )

    def client(
        self, url: str, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> RemoteService:
        """The service's command API as another process calls it."""
        return RemoteService(self.name, url, self.commands, transport=transport)

    def settings_in(self, lookup: Callable[[str], ServiceSettings]) -> S:
        """This module's settings out of a per-service lookup (``Backend.settings``)."""
        found = lookup(self.name)
        if not isinstance(found, self.settings):
            raise TypeError(f"{self.name} settings are {type(found).__name__}")
        return found
