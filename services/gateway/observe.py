"""The gateway's GraphQL operations as the metrics name them.

A request's operation label is its type and its first root field (``query region``,
``mutation registerInstitution``): fields the schema defines, so the label set is
bounded whatever names callers give their operations. Set once the operation has been
validated; a request refused before that is ``graphql invalid``.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import FieldNode, OperationDefinitionNode
from strawberry.extensions import SchemaExtension


class OperationLabel(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        execution = self.execution_context
        context = execution.context
        if execution.graphql_document is not None and hasattr(context, "operation"):
            context.operation = label_of(execution.graphql_document.definitions, execution)
        yield


def label_of(definitions: object, execution: object) -> str | None:
    wanted = getattr(execution, "operation_name", None)
    for definition in definitions:  # type: ignore[attr-defined]
        if not isinstance(definition, OperationDefinitionNode):
            continue
        if wanted is not None and (definition.name is None or definition.name.value != wanted):
            continue
        first = next(
            (s.name.value for s in definition.selection_set.selections if isinstance(s, FieldNode)),
            "fragment",
        )
        return f"{definition.operation.value} {first}"
    return None
