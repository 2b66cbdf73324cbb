"""Every GraphQL error carries ``extensions.code``; internal failures are masked and logged."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping

import structlog
from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors

from services.common.errors import ShuangjianError

log = structlog.get_logger(__name__)
# How graphql-core names the offending input in its validation and coercion messages.
_FIELD_PATTERNS = (
    re.compile(r"at '(?:\$?[A-Za-z_]+\.)?([A-Za-z_][\w.\[\]]*)'"),
    re.compile(r"required field '([A-Za-z_]\w*)'"),
    re.compile(r"[Ff]ield '(?:[A-Za-z_]+\.)?([A-Za-z_]\w*)'"),
    re.compile(r'[Ff]ield "(?:[A-Za-z_]+\.)?([A-Za-z_]\w*)"'),
)


_VARIABLE_PATH = re.compile(r"Variable '\$(\w+)' has invalid value at \.([\w.\[\]]+)")


def field_of(message: str) -> str | None:
    if match := _VARIABLE_PATH.search(message):  # a scalar refused inside an input object
        return f"{match.group(1)}.{match.group(2)}"
    for pattern in _FIELD_PATTERNS:
        if match := pattern.search(message):
            return match.group(1)
    return None


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@contextlib.contextmanager
def input_fields(prefix: str | None = "input") -> Iterator[None]:
    """Report a domain error's field as the GraphQL argument path (``input.creditCode``)."""
    try:
        yield
    except ShuangjianError as err:
        if err.field:
            path = ".".join(camel(part) for part in err.field.split("."))
            err.field = f"{prefix}.{path}" if prefix and err.field != "id" else path
        raise


class ErrorCodes(MaskErrors):
    """Adds the contract's ``extensions.code`` to every error and hides internal ones."""

    def __init__(self) -> None:
        super().__init__(error_message="Internal server error")

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [self._coded(error) for error in errors]

    def _coded(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if isinstance(original, ShuangjianError):
            return _with(error, original.message, original.extensions())
        if original is None or isinstance(original, GraphQLError | ValueError | TypeError):
            # Parse, validation and coercion errors: the request itself is wrong.
            ext: dict[str, object] = {"code": "BAD_INPUT"}
            if field := field_of(error.message):
                ext["field"] = field
            return _with(error, error.message, {**(error.extensions or {}), **ext})
        log.error("graphql.internal_error", path=error.path, exc_info=original)
        return _with(error, self.error_message, {"code": "INTERNAL"})


def _with(error: GraphQLError, message: str, extensions: Mapping[str, object]) -> GraphQLError:
    return GraphQLError(
        message=message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions=dict(extensions),
    )
