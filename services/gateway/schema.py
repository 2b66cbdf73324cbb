"""The composer: one GraphQL schema out of the kit and one slice per service.

``SLICES`` lists the services' GraphQL surfaces (one line each). ``compose`` merges their
root fields into ``Query``, ``Mutation`` and ``Subscription`` and adds each slice's
extension fields to the types they name, then wraps the schema in the platform's limits
and error handling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import strawberry
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types.base import get_object_definition
from strawberry.types.field import StrawberryField

from services.gateway import registry
from services.gateway.errors import ErrorCodes
from services.gateway.kit import KIT, Slice
from services.gateway.scalars import SCALARS

SLICES: tuple[Slice, ...] = (registry.SLICE,)

MAX_DEPTH = 10
MAX_TOKENS = 2_000
MAX_ALIASES = 20

# Built once: the validation cache is keyed by the rule classes, and strawberry's limiters
# make new classes per instance, which would make every request miss the cache.
_LIMIT_RULES = [
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
]


class QueryLimits(AddValidationRules):
    def __init__(self) -> None:
        super().__init__(_LIMIT_RULES)


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[Any], execution_context: Any = None) -> None:
        """Bad input is the caller's business; ``ErrorCodes`` logs internal errors."""


# Each extensible type's own fields, before any composition added to them.
_OWN_FIELDS: dict[type, list[StrawberryField]] = {}


def _extend(parts: Sequence[Slice]) -> None:
    """Give every type of the slices its own fields plus those the slices add to it."""
    owned: dict[str, type] = {}
    for part in parts:
        for cls in part.types:
            owned[_definition(cls).name] = cls
    added: dict[type, list[StrawberryField]] = {cls: [] for cls in owned.values()}
    for part in parts:
        for extension in part.extensions.fields:
            target = extension.target
            into = owned.get(target) if isinstance(target, str) else target
            if into is None or into not in added:
                raise ValueError(f"slice {part.name} extends {target!r}, which no slice has")
            added[into].append(extension.field)
    for cls, fields in added.items():
        definition = _definition(cls)
        own = _OWN_FIELDS.setdefault(cls, list(definition.fields))
        names = [f.python_name for f in own] + [f.python_name for f in fields]
        if len(set(names)) != len(names):
            raise ValueError(f"two slices add the same field to {definition.name}")
        definition.fields = [*own, *fields]


def _definition(cls: type) -> Any:
    return get_object_definition(cls, strict=True)


def _root(name: str, types: Sequence[type | None]) -> type | None:
    present = tuple(t for t in types if t is not None)
    return merge_types(name, present) if present else None


def compose(slices: Sequence[Slice] = SLICES, extensions: Sequence[Any] = ()) -> strawberry.Schema:
    """The schema of the kit and ``slices``.

    Composing sets the fields of the extended types for the schemas built from then on;
    a schema already built keeps the ones it was built with.
    """
    parts = [KIT, *slices]
    _extend(parts)
    return Schema(
        query=_root("Query", [p.query for p in parts]),  # type: ignore[arg-type]
        mutation=_root("Mutation", [p.mutation for p in parts]),
        subscription=_root("Subscription", [p.subscription for p in parts]),
        # Parsing and validating the same query text again costs ~2 ms a request (bench/).
        extensions=[
            ErrorCodes,
            # Hostile queries: nesting, size and alias fan-out are bounded before execution.
            QueryLimits,
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
            lambda: ParserCache(maxsize=512),  # the LRU cache itself is shared per process
            lambda: ValidationCache(maxsize=512),
            *extensions,
        ],
        config=StrawberryConfig(scalar_map=dict(SCALARS)),
    )


def build_schema(extensions: Sequence[Any] = ()) -> strawberry.Schema:
    """The platform's schema: every slice in ``SLICES``."""
    return compose(SLICES, extensions)
