"""Process managers: cross-service reactions, from one service's events to another's commands.

Services never import each other (DESIGN.md, "A service is a module"). When a fact of one
service calls for an act of another (an inspection finding leads to a warning card), a
``ProcessManager`` follows the first service's events like any projection and sends the
command. It is a ``Projection``, so the embedded ``ProjectionRunner`` and the Kafka
workers run it with the same positions, batching and replay.

``react`` is pure: it says which commands an event calls for, each with a ``key`` that is
stable for that event. ``apply`` sends them with the idempotency key
``<event id>:<reaction key>``, the event as cause and its correlation, so each reaction
takes effect exactly once however often the event is delivered or replayed (a rebuild
sends every command again and changes nothing).

What a refusal means depends on why:

* A rule refused it (``BadInput``, ``NotFound``, ``Forbidden``, ``Conflict``): sending it
  again would be refused again. It is recorded in ``process_refusals`` (keyed
  ``<process>:<event id>:<reaction key>``), logged, and the stream goes on.
* It could not be done now (``Unavailable``, ``ConcurrencyConflict``, a network error, a
  token the service does not accept): ``RetryLater``. The position stays before the event
  and the runner or Kafka worker sends it again later; nothing is lost.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from services.common.application import CommandContext, Outcome
from services.common.auth import SYSTEM, Principal
from services.common.commands import Command
from services.common.config import ServiceSettings
from services.common.envelope import Envelope
from services.common.errors import (
    BadInput,
    ConcurrencyConflict,
    Conflict,
    Forbidden,
    NotFound,
    ShuangjianError,
    Unauthenticated,
    Unavailable,
)
from services.common.ports import CollectionSpec
from services.common.projection import Projection, ProjectionUnit, RetryLater

__all__ = [
    "PROCESS_REFUSALS",
    "Authorization",
    "ProcessManager",
    "ProcessSpec",
    "Reaction",
    "RetryLater",
    "Send",
]

log = structlog.get_logger(__name__)

PROCESS_REFUSALS = CollectionSpec("process_refusals", indexes=("process", "event_id"))

Send = Callable[[Command, CommandContext], Awaitable[Outcome[Any]]]
"""Where a process manager's commands go: the platform's command router."""
Authorization = str | Callable[[], str | None] | None
"""The bearer header sent with each command, or what makes a fresh one (tokens expire)."""

REFUSED = (BadInput, NotFound, Forbidden, Conflict)
"""Refusals by a rule: the same command would be refused again."""
TRANSIENT = (ConcurrencyConflict, Unavailable, Unauthenticated)
"""Failures of the moment (or of configuration, like a token the service rejects): the
reaction must not be dropped, so the stream waits and sends it again."""
NETWORK = (httpx.TransportError, OSError, TimeoutError)


@dataclass(frozen=True)
class Reaction:
    """A command an event calls for. ``key`` names the reaction within its event
    (``yellow:<institution>``): the same event must always give the same keys."""

    command: Command
    key: str


class ProcessManager(Projection):
    """Follows events and sends the commands they call for, each exactly once.

    ``send`` (usually the platform's command router), the ``principal`` the commands act
    as and the ``authorization`` header they carry over HTTP are given at construction or
    later through ``connect`` (the composition root does that).
    """

    collections = (PROCESS_REFUSALS,)
    read_model = False

    def __init__(
        self,
        send: Send | None = None,
        *,
        principal: Principal = SYSTEM,
        authorization: Authorization = None,
    ) -> None:
        self.send = send
        self.principal = principal
        self.authorization = authorization

    def connect(
        self,
        send: Send,
        *,
        principal: Principal = SYSTEM,
        authorization: Authorization = None,
    ) -> None:
        """Say where the commands go, and as whom."""
        self.send = send
        self.principal = principal
        self.authorization = authorization

    @abc.abstractmethod
    def react(self, event: Envelope) -> Sequence[Reaction]:
        """The commands ``event`` calls for (pure). ``MalformedEvent`` parks the event."""

    @property
    def actor(self) -> str:
        """Who its commands are from: ``process:warning_cards`` for
        ``process.warning_cards``, embedded and over HTTP (the token's subject) alike."""
        return f"process:{self.name.removeprefix('process.')}"

    def context(self, event: Envelope, reaction: Reaction) -> CommandContext:
        """Who sends the reaction, its cause, and the key that makes a resend a no-op."""
        authorization = self.authorization
        return CommandContext(
            principal=self.principal,
            actor=self.actor,
            causation_id=str(event.id),
            correlation_id=event.correlation_id,
            idempotency_key=f"{event.id}:{reaction.key}",
            authorization=authorization() if callable(authorization) else authorization,
        )

    async def apply(self, event: Envelope, unit: ProjectionUnit) -> None:
        reactions = self.react(event)
        if not reactions:
            return
        if self.send is None:
            raise RetryLater(f"{self.name} is not connected to the services yet")
        for reaction in reactions:
            await self._send(self.send, event, reaction, unit)

    async def _send(
        self, send: Send, event: Envelope, reaction: Reaction, unit: ProjectionUnit
    ) -> None:
        command = type(reaction.command).__name__
        try:
            await send(reaction.command, self.context(event, reaction))
        except TRANSIENT as exc:
            raise RetryLater(f"{self.name}: {command} for {event.id}: {exc.message}") from exc
        except REFUSED as exc:  # ConcurrencyConflict, a Conflict too, was caught above
            if isinstance(exc, Conflict) and exc.field == "idempotencyKey":
                # Only this reaction of this event uses this key: it took effect before, on
                # a state that has changed since, so deciding it again differs. Done.
                log.info("process.already_done", process=self.name, event_id=str(event.id))
                return
            self.refused(event, reaction, exc, unit)
        except NETWORK as exc:
            raise RetryLater(f"{self.name}: {command} for {event.id}: {exc!r}") from exc

    def refused(
        self, event: Envelope, reaction: Reaction, error: ShuangjianError, unit: ProjectionUnit
    ) -> None:
        """Record a reaction a rule refused, so an officer can see what did not happen."""
        key = f"{self.name}:{event.id}:{reaction.key}"
        log.warning(
            "process.refused",
            process=self.name,
            event_id=str(event.id),
            reaction=reaction.key,
            code=error.code,
            reason=error.message,
        )
        doc = {
            "process": self.name,
            "event_id": str(event.id),
            "event_type": event.type,
            "stream": event.stream,
            "reaction": reaction.key,
            "command": type(reaction.command).__name__,
            "target": reaction.command.id,
            "code": error.code,
            "field": error.field,
            "reason": error.message,
            "occurred_at": event.occurred_at.isoformat(),
        }
        unit.put(PROCESS_REFUSALS.name, key, doc, 1)


@dataclass(frozen=True)
class ProcessSpec:
    """A process manager as the composition root builds it.

    ``requires`` names the services it reads and sends to: it runs only in a deployment
    that has all of them. ``build`` makes it from every service's settings (unconnected:
    the root calls ``connect``).
    """

    name: str
    requires: tuple[str, ...]
    build: Callable[[Mapping[str, ServiceSettings]], ProcessManager]
