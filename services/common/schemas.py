"""The published JSON Schemas (draft 2020-12) of every command and every event type.

District systems validate what they send before sending it, and consumers of the Kafka
topics validate what they read, without running our code: each gets one schema document
per command (its whole input, ``id`` included) and per event type and schema version
(the whole envelope as it travels, ``data`` being the event class's own schema). They are
derived from the same command dataclasses and event classes the platform validates with,
so the two cannot drift apart unnoticed: the documents are checked in under
``contract/schemas/`` (``shuangjian schemas`` writes them; a test compares), and
``schema_routes`` serves them at ``/api/schemas``.

The kernel imports no service: every function takes the modules to publish.

Layout (paths relative to the folder or to ``/api/schemas/``)::

    index.json                                   what there is: kind, name, service, ...
    commands/<service>/<CommandName>.json
    events/<service>/<EventName>.v<SCHEMA_VERSION>.json
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from services.common.aggregate import DomainEvent
from services.common.commands import Command, Route
from services.common.envelope import Envelope
from services.common.errors import NotFound
from services.common.http import ErrorBody, error_body, input_model
from services.common.module import ServiceModule

DIALECT = "https://json-schema.org/draft/2020-12/schema"
# Not a URL anyone could fetch: the documents' identity must not depend on the host that
# serves them (the gateway, a service, a file in a district's repository).
ID_BASE = "urn:shuangjian:schemas:"
SCHEMA_MEDIA = "application/schema+json"
INDEX = "index.json"
ROUTE_PREFIX = "/api/schemas"
# What ``Envelope.to_dict`` adds for CloudEvents; always present on Kafka.
CLOUDEVENTS_SPEC = "1.0"
DATA_CONTENT_TYPE = "application/json"

Modules = Sequence[ServiceModule[Any]]
Kind = Literal["command", "event"]


@dataclass(frozen=True)
class Published:
    """One schema document and where it is published."""

    kind: Kind
    name: str
    service: str
    version: int | None  # an event type's SCHEMA_VERSION; commands have none
    path: str
    schema: dict[str, Any]

    def entry(self) -> dict[str, Any]:
        """Its line in ``index.json``."""
        return {
            "kind": self.kind,
            "name": self.name,
            "service": self.service,
            "version": self.version,
            "path": self.path,
        }


class _Generator(GenerateJsonSchema):
    """Pydantic's generator, with a pattern on a decimal's string form: left to itself it
    publishes any string for a ``Decimal`` (a fine, a price), which the API then refuses."""

    def get_decimal_pattern(self, schema: core_schema.DecimalSchema) -> str | None:
        return self.build_decimal_pattern(schema)


def command_model(command_type: type[Command]) -> type[BaseModel]:
    """A command's whole input as a pydantic model: the HTTP body's model
    (``http.input_model``), so a district system that validates against it sends what
    the API accepts, but with ``id``, which a non-creating command carries in its URL."""
    return input_model(command_type, with_id=True, doc=_doc(command_type))


def _doc(command_type: type[Command]) -> str | None:
    """The command's own docstring; not the signature ``dataclass`` makes up without one."""
    doc = command_type.__doc__
    if not doc or doc.startswith(f"{command_type.__name__}("):
        return None
    return inspect.cleandoc(doc)


def _id(path: str) -> str:
    return f"{ID_BASE}{path}"


def command_schema(route: Route, service: str) -> Published:
    """The schema of one command as a district system sends it.

    ``id`` is required unless the command creates its aggregate: any other command acts
    on an existing one, named in its URL.
    """
    command = route.command
    path = f"commands/{service}/{command.__name__}.json"
    schema = command_model(command).model_json_schema(schema_generator=_Generator)
    if not route.creates:
        id_field = schema["properties"]["id"]
        schema["properties"]["id"] = {
            "type": "string",
            "title": id_field.get("title", "Id"),
            "description": id_field.get("description", ""),
        }
        required = schema.setdefault("required", [])
        if "id" not in required:
            required.insert(0, "id")
    description = _doc(command) or route.summary
    schema.pop("description", None)
    if description:
        schema["description"] = description
    schema.update(
        {
            "$schema": DIALECT,
            "$id": _id(path),
            "title": command.__name__,
            "additionalProperties": False,
        }
    )
    return Published("command", command.__name__, service, None, path, schema)


def event_schema(event: type[DomainEvent], service: str) -> Published:
    """The schema of one event type at its schema version: the whole envelope on Kafka.

    ``data`` is the event class's own (validation) schema, which is what the platform
    checks when it decodes the event; its ``$defs`` move to the document's root, where
    their ``#/$defs/...`` references point.
    """
    prefix, _, name = event.TYPE.partition(".")
    if prefix != service:
        raise ValueError(f"{event.TYPE} is not an event type of {service}")
    version = event.SCHEMA_VERSION
    path = f"events/{service}/{name}.v{version}.json"
    schema = Envelope.model_json_schema(schema_generator=_Generator)
    data = event.model_json_schema(schema_generator=_Generator)
    defs = {**schema.pop("$defs", {})}
    for key, value in data.pop("$defs", {}).items():
        if key in defs:
            raise ValueError(f"{event.TYPE}: $defs {key} is defined twice")
        defs[key] = value
    if defs:
        schema["$defs"] = defs
    properties = schema["properties"]
    properties["type"] = {"const": event.TYPE, "description": "The event type."}
    properties["schema_version"] = {
        "const": version,
        "description": "The version of data's shape; a new one gets a new schema.",
    }
    properties["data"] = data
    properties["specversion"] = {"const": CLOUDEVENTS_SPEC, "description": "CloudEvents."}
    properties["source"] = {
        "const": f"/shuangjian/{service}",
        "description": "CloudEvents: the service that recorded it.",
    }
    properties["datacontenttype"] = {"const": DATA_CONTENT_TYPE, "description": "CloudEvents."}
    required = list(schema.get("required", []))
    for always in ("schema_version", "specversion", "source", "datacontenttype"):
        if always not in required:
            required.append(always)
    schema["required"] = required
    # The envelope stays open (readers ignore what they do not know, Envelope's
    # extra="ignore"), so a new envelope attribute breaks no consumer; data is closed.
    schema.pop("additionalProperties", None)
    description = (event.__doc__ and inspect.cleandoc(event.__doc__)) or (
        f"The event {event.TYPE}, schema version {version}, in its envelope."
    )
    schema.update(
        {
            "$schema": DIALECT,
            "$id": _id(path),
            "title": f"{event.TYPE} v{version}",
            "description": description,
        }
    )
    return Published("event", name, service, version, path, schema)


def published(modules: Modules) -> list[Published]:
    """Every schema of the modules' commands and event types, by path."""
    found: dict[str, Published] = {}
    for module in modules:
        documents = [command_schema(route, module.name) for t in module.commands for route in t]
        documents += [event_schema(cls, module.name) for cls in module.events.classes]
        for document in documents:
            if document.path in found:
                raise ValueError(f"two schemas would be published at {document.path}")
            found[document.path] = document
    return [found[path] for path in sorted(found)]


def index(documents: Iterable[Published]) -> dict[str, Any]:
    """``index.json``: what is published, for a client to find the one it needs."""
    return {
        "description": (
            "JSON Schemas (draft 2020-12) of every Shuangjian command and event type. "
            "Paths are relative to this index."
        ),
        "schemas": [document.entry() for document in documents],
    }


def documents(modules: Modules) -> dict[str, dict[str, Any]]:
    """Every published JSON document by its path, ``index.json`` included."""
    found = published(modules)
    return {INDEX: index(found), **{document.path: document.schema for document in found}}


def render(document: Mapping[str, Any]) -> str:
    """The stable text of a document, so the checked-in files diff cleanly."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered(modules: Modules) -> dict[str, str]:
    """Every published document's text by its path."""
    return {path: render(document) for path, document in documents(modules).items()}


def _on_disk(folder: Path) -> dict[str, str]:
    """The JSON documents under ``folder`` by their path relative to it."""
    if not folder.is_dir():
        return {}
    return {
        file.relative_to(folder).as_posix(): file.read_text(encoding="utf-8")
        for file in folder.rglob("*.json")
        if file.is_file()
    }


def differences(modules: Modules, folder: Path) -> list[str]:
    """How ``folder`` differs from what the modules publish now: one line per file."""
    wanted, found = rendered(modules), _on_disk(folder)
    lines = [f"missing {path}" for path in sorted(wanted.keys() - found.keys())]
    lines += [f"not published any more {path}" for path in sorted(found.keys() - wanted.keys())]
    lines += [
        f"out of date {path}"
        for path in sorted(wanted.keys() & found.keys())
        if wanted[path] != found[path]
    ]
    return lines


def write_schemas(modules: Modules, folder: Path) -> list[str]:
    """Make ``folder`` hold exactly the published documents; returns what changed.

    A schema no longer published (a renamed command) is deleted, or it would stay in the
    contract for ever; only ``*.json`` files are touched.
    """
    wanted, found = rendered(modules), _on_disk(folder)
    changed = []
    for path in sorted(found.keys() - wanted.keys()):
        (folder / path).unlink()
        changed.append(path)
    for path, text in wanted.items():
        if found.get(path) == text:
            continue
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        changed.append(path)
    for directory in sorted(folder.rglob("*"), reverse=True):  # deepest first
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
    return changed


def _known(path: str) -> bool:
    """Whether ``path`` is a plain relative path: no ``..``, ``.``, root or backslash."""
    if not path or "\\" in path or "\x00" in path:
        return False
    parts = PurePosixPath(path).parts
    return not path.startswith("/") and all(part not in ("", ".", "..") for part in parts)


def schema_routes(modules: Modules) -> APIRouter:
    """``GET /api/schemas`` (the index) and ``GET /api/schemas/{path}`` (one document).

    The documents are rendered once, here: they change only with the code. A path that
    is not published, or that tries to leave the folder, is a ``NOT_FOUND`` in the
    platform's error shape; nothing is ever read from disk.
    """
    texts = {path: text.encode() for path, text in rendered(modules).items()}
    router = APIRouter(prefix=ROUTE_PREFIX, tags=["schemas"])

    def answer(path: str) -> Response:
        body = texts.get(path) if _known(path) else None
        if body is None:
            shown = path if len(path) <= 200 else f"{path[:200]}…"
            return JSONResponse(error_body(NotFound(f"no schema is published at {shown}")), 404)
        media = "application/json" if path == INDEX else SCHEMA_MEDIA
        return Response(body, media_type=media)

    @router.get(
        "",
        summary="Index of the published JSON Schemas",
        response_class=Response,
        responses={200: {"content": {"application/json": {}}}},
    )
    async def schema_index() -> Response:
        return answer(INDEX)

    @router.get(
        "/{path:path}",
        summary="One published JSON Schema (a path from the index)",
        response_class=Response,
        responses={
            200: {"content": {SCHEMA_MEDIA: {}}},
            404: {"model": ErrorBody, "description": "NOT_FOUND: nothing is published there."},
        },
    )
    async def schema_document(path: str) -> Response:
        return answer(path or INDEX)

    return router
