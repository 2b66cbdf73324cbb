"""What a GraphQL operation would cost, estimated from the document before anything runs.

The depth, token and alias limits bound a document's shape; they do not bound its answer.
Twenty aliases of ``institutions(first: 100)`` each asking every institution's region for
240 months of history pass all three and answer tens of megabytes. ``QueryCost`` refuses
such an operation before any resolver runs, from the schema's definitions alone, so every
slice's fields are counted the same way without naming them here.

The estimate walks the operation's selections with its fragments expanded and its
variables (and their defaults) applied:

* every field costs 1, and its selections add theirs; aliases count separately, and so
  does every branch of ``@skip`` / ``@include`` (an upper bound, not a guess);
* a list multiplies the cost of one item's selections by its size (a list of scalars
  costs its size):
  - a field with a ``first`` argument is paginated: its page size (the argument's value,
    its schema default for null, at most ``MAX_PAGE``) sizes it if it is a list, or the
    lists of the object it returns (a connection's ``edges``);
  - a field with ``from`` and ``to`` arguments of the ``Date`` scalar lists months: one
    per month from..to inclusive, ``MAX_MONTHS`` when they do not parse;
  - a field may state its size in its strawberry metadata (``kit.list_size``): a number,
    or a function of its coerced arguments (``Region.children``, ``regions``);
  - introspection, answered from the schema in memory, counts only the items of its
    lists, each its mean length in this schema (``types`` its number of types): GraphiQL's
    introspection query stays small while cycles through ``type { fields … }`` multiply;
  - any other list counts ``DEFAULT_LIST_SIZE`` items.

The figure is an upper bound of the fields the answer can hold, not a time. In
``bench/query_cost.py`` the issue's query estimates 1,466,060 and answers 35.7 MB in ~8 s
(~24 bytes and ~5 µs a unit), so the default budget of 50,000
(``SHUANGJIAN_QUERY_COST_BUDGET``) lets an answer reach ~1.2 MB. A page of 100
institutions with every field and region costs ~6,000, the README's examples ~150,
GraphiQL's introspection ~1,200.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    SelectionSetNode,
    get_named_type,
    get_nullable_type,
    is_composite_type,
    is_input_object_type,
    is_interface_type,
    is_list_type,
    is_object_type,
    is_union_type,
)
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values
from graphql.utilities import get_operation_ast, type_from_ast
from strawberry.extensions import SchemaExtension

from services.common.rollups import MAX_MONTHS
from services.gateway.kit import LIST_SIZE, MAX_PAGE

PAGE_ARGUMENT = "first"
SPAN_ARGUMENTS = ("from", "to")
SPAN_SCALAR = "Date"
DEFAULT_LIST_SIZE = 10


def operation_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
) -> int:
    """The estimated cost of the operation ``execute`` would run (0 if it would run none)."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return 0  # execution answers "unknown operation" and runs nothing
    root = schema.get_root_type(operation.operation)
    coerced = get_variable_values(
        schema, operation.variable_definitions or (), dict(variables or {})
    )
    if root is None or isinstance(coerced, list):
        return 0  # variables that do not coerce stop execution before any resolver runs
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    return _Walk(schema, fragments, coerced).selections(operation.selection_set, root, None)


class _Walk:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: VariableValues,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.introspection = _introspection_sizes(schema)
        # A fragment costs the same wherever it is spread (for one page size): counting it
        # once keeps nested spreads from making the walk itself exponential.
        self.spread_costs: dict[tuple[str, int | None], int] = {}

    def selections(
        self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType, page: int | None
    ) -> int:
        """The cost of ``selection_set`` on ``parent``; ``page`` sizes its lists if given."""
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent, page)
            elif isinstance(selection, InlineFragmentNode):
                on = self.type_condition(selection.type_condition, parent)
                total += self.selections(selection.selection_set, on, page)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.spread(selection.name.value, parent, page)
        return total

    def spread(self, name: str, parent: GraphQLNamedType, page: int | None) -> int:
        key = (name, page)
        if key not in self.spread_costs:
            self.spread_costs[key] = 0  # validation refuses cycles; this keeps one finite
            fragment = self.fragments.get(name)
            if fragment is not None:
                on = self.type_condition(fragment.type_condition, parent)
                self.spread_costs[key] = self.selections(fragment.selection_set, on, page)
        return self.spread_costs[key]

    def type_condition(self, node: Any, parent: GraphQLNamedType) -> GraphQLNamedType:
        found = type_from_ast(self.schema, node) if node is not None else None
        return found if isinstance(found, GraphQLNamedType) else parent

    def field(self, node: FieldNode, parent: GraphQLNamedType, page: int | None) -> int:
        definition = self.definition(parent, node.name.value)
        if definition is None:
            return 1
        arguments = self.arguments(definition, node)
        own_page = _page(definition, arguments) if PAGE_ARGUMENT in definition.args else None
        returns = get_nullable_type(definition.type)
        item = get_named_type(definition.type)
        # Introspection is answered from the schema in memory: only its lists count.
        unit = 0 if parent.name.startswith("__") else 1
        if is_list_type(returns):
            size = self.size(parent, node.name.value, definition, arguments, own_page, page)
            if not is_composite_type(item):
                return size
            return unit + size * (1 - unit + self.selections(node.selection_set, item, None))
        if is_composite_type(item):
            return unit + self.selections(node.selection_set, item, own_page)
        return unit

    def definition(self, parent: GraphQLNamedType, name: str) -> GraphQLField | None:
        if is_union_type(parent):
            return self.schema.get_field(parent, name) if name == "__typename" else None
        if is_object_type(parent) or is_interface_type(parent):
            return self.schema.get_field(parent, name)
        return None

    def arguments(self, definition: GraphQLField, node: FieldNode) -> dict[str, Any]:
        """The coerced arguments; none when they do not coerce (each size its maximum)."""
        try:
            return get_argument_values(definition, node, self.variables)
        except GraphQLError:
            return {}

    def size(
        self,
        parent: GraphQLNamedType,
        name: str,
        definition: GraphQLField,
        arguments: Mapping[str, Any],
        own_page: int | None,
        page: int | None,
    ) -> int:
        """How many items a list field answers at most."""
        if own_page is not None:
            return own_page
        if _is_span(definition):
            return _months(arguments.get(SPAN_ARGUMENTS[0]), arguments.get(SPAN_ARGUMENTS[1]))
        stated = _stated_size(definition, arguments)
        if stated is not None:
            return stated
        if parent.name.startswith("__"):
            return self.introspection.get(name, DEFAULT_LIST_SIZE)
        return page if page is not None else DEFAULT_LIST_SIZE


def _page(definition: GraphQLField, arguments: Mapping[str, Any]) -> int:
    """The page size asked for, as ``kit.page_size`` reads it; ``MAX_PAGE`` when unknown."""
    value = arguments.get(PAGE_ARGUMENT)
    if value is None:
        value = definition.args[PAGE_ARGUMENT].default_value
    if not isinstance(value, int) or isinstance(value, bool):
        return MAX_PAGE
    return max(0, min(value, MAX_PAGE))


def _is_span(definition: GraphQLField) -> bool:
    return all(
        name in definition.args and get_named_type(definition.args[name].type).name == SPAN_SCALAR
        for name in SPAN_ARGUMENTS
    )


def _months(start: object, end: object) -> int:
    """Months from ``start``'s to ``end``'s inclusive, within 1..MAX_MONTHS."""
    if not isinstance(start, date) or not isinstance(end, date):
        return MAX_MONTHS
    count = (end.year - start.year) * 12 + end.month - start.month + 1
    return max(1, min(count, MAX_MONTHS))


def _stated_size(definition: GraphQLField, arguments: Mapping[str, Any]) -> int | None:
    strawberry_field = (definition.extensions or {}).get("strawberry-definition")
    stated = getattr(strawberry_field, "metadata", None) or {}
    size = stated.get(LIST_SIZE)
    if size is None:
        return None
    if callable(size):
        try:
            return max(0, int(size(arguments)))
        except (KeyError, LookupError, TypeError, ValueError):
            return None  # arguments the resolver refuses anyway
    return max(0, int(size))


_INTROSPECTION_SIZES: weakref.WeakKeyDictionary[GraphQLSchema, dict[str, int]] = (
    weakref.WeakKeyDictionary()
)


def _introspection_sizes(schema: GraphQLSchema) -> dict[str, int]:
    """Mean lengths of the introspection lists in ``schema`` (their answer is the schema)."""
    if schema not in _INTROSPECTION_SIZES:
        types = list(schema.type_map.values())
        fields = [t.fields for t in types if is_object_type(t) or is_interface_type(t)]
        inputs = [t.fields for t in types if is_input_object_type(t)]
        arguments = [f.args for group in fields for f in group.values()] + [
            d.args for d in schema.directives
        ]

        def mean(lengths: Iterator[int]) -> int:
            counted = list(lengths)
            return max(1, math.ceil(sum(counted) / len(counted))) if counted else 1

        _INTROSPECTION_SIZES[schema] = {
            "types": len(types),
            "directives": len(schema.directives),
            "fields": mean(len(group) for group in fields),
            "inputFields": mean(len(group) for group in inputs),
            "args": mean(len(group) for group in arguments),
            "enumValues": mean(len(t.values) for t in types if hasattr(t, "values")),
            "interfaces": mean(len(t.interfaces) for t in types if is_object_type(t)),
            "possibleTypes": mean(len(t.types) for t in types if is_union_type(t)),
            "locations": mean(len(d.locations) for d in schema.directives),
        }
    return _INTROSPECTION_SIZES[schema]


class QueryCost(SchemaExtension):
    """Refuses an operation whose estimated cost is over ``budget``, before it executes.

    The refusal is ``BAD_INPUT`` with the estimate and the budget in its message and in
    ``extensions.cost`` / ``extensions.budget``; no resolver runs and nothing is read.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None:
            cost = operation_cost(
                context.schema._schema, document, context.operation_name, context.variables
            )
            if cost > self.budget:
                raise over_budget(cost, self.budget)
        yield


def over_budget(cost: int, budget: int) -> GraphQLError:
    # Raised from ``on_execute``, the error reaches the caller as it is on every transport
    # (a result set here would be ignored for subscriptions), so it carries its own code.
    return GraphQLError(
        f"this query would cost about {cost:,}, over the budget of {budget:,} per request "
        "(each field counts 1, times the size of every list around it): ask for smaller "
        "pages (first), fewer months of history or fewer aliases",
        extensions={"code": "BAD_INPUT", "cost": cost, "budget": budget},
    )
