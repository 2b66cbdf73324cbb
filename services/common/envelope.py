"""The event envelope of DESIGN.md: one shape for every event in every service.

JSON out is CloudEvents-compatible (``specversion``, ``source``, ``datacontenttype`` are
added); JSON in is validated, so a malformed message becomes a ``MalformedEvent`` with
the reason instead of a crash.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.common.errors import MalformedEvent
from services.common.timeutil import aware

REGION_PATTERN = r"^\d{6}$"


class Envelope(BaseModel):
    """One recorded domain event. ``position`` is assigned by the event store on append."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: UUID
    type: str = Field(min_length=3, max_length=120, pattern=r"^[a-z]+\.[A-Za-z]+$")
    schema_version: int = Field(default=1, ge=1)
    stream: str = Field(min_length=1, max_length=120)
    version: int = Field(ge=1)
    region: str = Field(pattern=REGION_PATTERN)
    occurred_at: datetime
    recorded_at: datetime
    actor: str | None = None
    causation_id: str | None = None
    correlation_id: str | None = None
    data: dict[str, Any]
    position: int | None = None

    @field_validator("occurred_at", "recorded_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return aware(value)

    @property
    def service(self) -> str:
        """The owning service, from the type prefix (``registry.InstitutionRegistered``)."""
        return self.type.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.type.split(".", 1)[1]

    def to_dict(self) -> dict[str, Any]:
        body = self.model_dump(mode="json", exclude_none=True)
        body["specversion"] = "1.0"
        body["source"] = f"/shuangjian/{self.service}"
        body["datacontenttype"] = "application/json"
        return body

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> Envelope:
        try:
            return cls.model_validate(body)
        except ValidationError as exc:
            raise MalformedEvent(describe(exc)) from exc

    @classmethod
    def from_json(cls, raw: str | bytes) -> Envelope:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedEvent(f"not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise MalformedEvent("an event must be a JSON object")
        return cls.from_dict(body)

    def with_position(self, position: int) -> Envelope:
        return self.model_copy(update={"position": position})


def describe(exc: ValidationError, prefix: str = "") -> str:
    """A validation error as `path: message` pairs, for dead letters and logs."""
    parts = []
    for error in exc.errors():
        where = prefix + ".".join(str(p) for p in error["loc"]) or "event"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Upcasters:
    """Reads old event versions: one function per (type, from_version) step."""

    def __init__(self) -> None:
        self._steps: dict[tuple[str, int], Upcaster] = {}

    def register(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        def decorate(fn: Upcaster) -> Upcaster:
            self._steps[(event_type, from_version)] = fn
            return fn

        return decorate

    def upcast(self, envelope: Envelope) -> Envelope:
        data, version = envelope.data, envelope.schema_version
        while (step := self._steps.get((envelope.type, version))) is not None:
            data, version = step(dict(data)), version + 1
        if version == envelope.schema_version:
            return envelope
        return envelope.model_copy(update={"data": data, "schema_version": version})
