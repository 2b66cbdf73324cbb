"""The composer: one GraphQL schema out of the kit and one slice per service.

``SLICES`` lists the services' GraphQL surfaces (one line each). ``compose`` merges their
root fields into ``Query``, ``Mutation`` and ``Subscription`` and adds each slice's
extension fields to the types they name, then wraps the schema in the platform's limits
and error handling.

The limits, all checked before a resolver runs: depth, tokens and aliases of the document
(``MAX_DEPTH``, ``MAX_TOKENS``, ``MAX_ALIASES``) and its estimated cost (``cost.py``, over
``SHUANGJIAN_QUERY_COST_BUDGET``: ``BAD_INPUT``). A query or mutation that still runs
longer than ``SHUANGJIAN_REQUEST_TIMEOUT`` seconds is stopped (``UNAVAILABLE``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import strawberry
import structlog
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
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

from services.common.config import Settings
from services.common.errors import Unavailable
from services.gateway import finance, imports, inspections, registry
from services.gateway.cost import QueryCost
from services.gateway.errors import ErrorCodes
from services.gateway.kit import KIT, Slice
from services.gateway.observe import OperationLabel
from services.gateway.scalars import SCALARS

SLICES: tuple[Slice, ...] = (registry.SLICE, inspections.SLICE, finance.SLICE, imports.SLICE)

MAX_DEPTH = 10
MAX_TOKENS = 2_000
MAX_ALIASES = 20
# The defaults of SHUANGJIAN_QUERY_COST_BUDGET and SHUANGJIAN_REQUEST_TIMEOUT.
MAX_COST: int = Settings.model_fields["query_cost_budget"].default
REQUEST_TIMEOUT: float = Settings.model_fields["request_timeout"].default

log = structlog.get_logger(__name__)

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
    request_timeout: float | None = None
    """Seconds a query or mutation may run; ``None``: as long as it takes."""

    def process_errors(self, errors: list[Any], execution_context: Any = None) -> None:
        """Bad input is the caller's business; ``ErrorCodes`` logs internal errors."""

    async def _execute_operation(self, execution_context: Any, *args: Any, **kwargs: Any) -> Any:
        """Runs a query or mutation, stopped after ``request_timeout`` seconds.

        Strawberry runs every query and mutation through here, over HTTP and WebSocket
        alike; a subscription's event stream does not pass here, so it lives as long as
        its subscriber. Stopping cancels the resolvers still waiting.
        """
        if not self.request_timeout:
            return await super()._execute_operation(execution_context, *args, **kwargs)
        deadline = asyncio.timeout(self.request_timeout)
        try:
            async with deadline:
                return await super()._execute_operation(execution_context, *args, **kwargs)
        except TimeoutError:
            if not deadline.expired():
                raise
        log.warning(
            "graphql.timeout",
            operation=execution_context.operation_name,
            seconds=self.request_timeout,
        )
        message = (
            f"the request ran longer than {self.request_timeout:g} s and was stopped: ask for "
            "less, or try again later (a mutation may have been applied: send it again with "
            "the same Idempotency-Key)"
        )
        result = GraphQLExecutionResult(
            data=None, errors=[GraphQLError(message, original_error=Unavailable(message))]
        )
        execution_context.result = result
        return result


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


def compose(
    slices: Sequence[Slice] = SLICES,
    extensions: Sequence[Any] = (),
    *,
    cost_budget: int | None = MAX_COST,
    request_timeout: float | None = REQUEST_TIMEOUT,
) -> strawberry.Schema:
    """The schema of the kit and ``slices``.

    ``cost_budget`` and ``request_timeout`` are the limits above; ``None`` or 0 turns one
    off. Composing sets the fields of the extended types for the schemas built from then
    on; a schema already built keeps the ones it was built with.
    """
    parts = [KIT, *slices]
    _extend(parts)
    limits: list[Any] = [lambda: QueryCost(cost_budget)] if cost_budget else []
    schema = Schema(
        query=_root("Query", [p.query for p in parts]),  # type: ignore[arg-type]
        mutation=_root("Mutation", [p.mutation for p in parts]),
        subscription=_root("Subscription", [p.subscription for p in parts]),
        # Parsing and validating the same query text again costs ~2 ms a request (bench/).
        extensions=[
            ErrorCodes,
            OperationLabel,
            # Hostile queries: nesting, size and alias fan-out are bounded before execution.
            QueryLimits,
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
            lambda: ParserCache(maxsize=512),  # the LRU cache itself is shared per process
            lambda: ValidationCache(maxsize=512),
            # The answer's size is bounded after validation, before anything executes.
            *limits,
            *extensions,
        ],
        config=StrawberryConfig(scalar_map=dict(SCALARS)),
    )
    schema.request_timeout = request_timeout or None
    return schema


def build_schema(
    extensions: Sequence[Any] = (),
    *,
    cost_budget: int | None = MAX_COST,
    request_timeout: float | None = REQUEST_TIMEOUT,
) -> strawberry.Schema:
    """The platform's schema: every slice in ``SLICES``."""
    return compose(SLICES, extensions, cost_budget=cost_budget, request_timeout=request_timeout)
