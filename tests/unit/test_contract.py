"""Our GraphQL schema against the public contract (contract/schema.graphql).

The contract is the floor: every type, field, argument, enum value and input field in it
must be served with exactly the contract's type (and default, where the contract gives
one), unless it is listed in ``PENDING`` with the issue that will deliver it. Our schema
may add more. Descriptions are not compared.

Coordinates: ``Type``, ``Type.field``, ``Type.field(arg)``, ``Input.field``, ``Enum.VALUE``.
An entry covers everything under it (``Inspection`` covers ``Inspection.visits``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import graphql
import pytest
from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    print_ast,
)
from graphql.utilities import get_default_value_ast

from services.gateway.schema import build_schema

# Contract coordinates we do not serve yet -> what will deliver them. Remove an entry as
# soon as it is served; test_pending_entries_are_still_missing insists on it.
PENDING: dict[str, str] = {}

REPO = Path(__file__).resolve().parents[2]
VENDORED = REPO / "contract" / "schema.graphql"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "contract" / "schema.graphql"


KINDS: list[tuple[type[GraphQLNamedType], str]] = [
    (GraphQLScalarType, "scalar"),
    (GraphQLObjectType, "type"),
    (GraphQLInterfaceType, "interface"),
    (GraphQLUnionType, "union"),
    (GraphQLEnumType, "enum"),
    (GraphQLInputObjectType, "input"),
]


@dataclass(frozen=True)
class Shape:
    """What must match at a coordinate: a kind or type string, and a default if any."""

    type: str
    default: str | None = None


def _default(value: GraphQLArgument | GraphQLInputField) -> str | None:
    ast = get_default_value_ast(value)
    return None if ast is None else print_ast(ast)


def kind(named: GraphQLNamedType) -> str:
    for cls, label in KINDS:
        if isinstance(named, cls):
            return label
    raise TypeError(f"unexpected type {named!r}")


def surface(schema: GraphQLSchema) -> dict[str, Shape]:
    """Every coordinate of a schema's named, non-introspection types."""
    found: dict[str, Shape] = {}
    for name, named in schema.type_map.items():
        if name.startswith("__") or named is None:
            continue
        found[name] = Shape(kind(named))
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            for field_name, field in named.fields.items():
                found[f"{name}.{field_name}"] = Shape(str(field.type))
                for arg_name, arg in field.args.items():
                    found[f"{name}.{field_name}({arg_name})"] = Shape(str(arg.type), _default(arg))
            for interface in named.interfaces:
                found[f"{name}&{interface.name}"] = Shape("implements")
        elif isinstance(named, GraphQLInputObjectType):
            for field_name, input_field in named.fields.items():
                found[f"{name}.{field_name}"] = Shape(str(input_field.type), _default(input_field))
        elif isinstance(named, GraphQLEnumType):
            for value in named.values:
                found[f"{name}.{value}"] = Shape("value")
        elif isinstance(named, GraphQLUnionType):
            for member in named.types:
                found[f"{name}|{member.name}"] = Shape("member")
    return found


def ancestors(coordinate: str) -> list[str]:
    """``Type.field(arg)`` -> ``Type.field``, ``Type``."""
    found = []
    if "(" in coordinate:
        coordinate = coordinate.split("(", 1)[0]
        found.append(coordinate)
    for separator in (".", "&", "|"):
        if separator in coordinate:
            found.append(coordinate.split(separator, 1)[0])
    return found


def conforms(contract: Shape, ours: Shape | None) -> bool:
    if ours is None or ours.type != contract.type:
        return False
    return contract.default is None or ours.default == contract.default


def describe(shape: Shape | None) -> str:
    if shape is None:
        return "missing"
    return shape.type if shape.default is None else f"{shape.type} = {shape.default}"


def listing(lines: list[str]) -> str:
    return "\n  " + "\n  ".join(lines)


@pytest.fixture(scope="module")
def contract_schema() -> GraphQLSchema:
    return graphql.build_schema(VENDORED.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def contract(contract_schema: GraphQLSchema) -> dict[str, Shape]:
    return surface(contract_schema)


@pytest.fixture(scope="module")
def our_schema() -> GraphQLSchema:
    return build_schema()._schema


@pytest.fixture(scope="module")
def ours(our_schema: GraphQLSchema) -> dict[str, Shape]:
    return surface(our_schema)


def test_vendored_contract_is_the_shared_one() -> None:
    if not SHARED.exists():
        pytest.skip(f"no shared contract at {SHARED} (a standalone clone)")
    assert VENDORED.read_bytes() == SHARED.read_bytes(), (
        f"{VENDORED} differs from {SHARED}: copy the shared contract over it (byte for byte) "
        "and bring PENDING up to date"
    )


def test_root_operation_types_have_the_contract_names(
    contract_schema: GraphQLSchema, our_schema: GraphQLSchema
) -> None:
    for operation in ("query", "mutation", "subscription"):
        wanted = getattr(contract_schema, f"{operation}_type")
        served = getattr(our_schema, f"{operation}_type")
        if wanted is None or wanted.name in PENDING:
            continue
        assert served is not None and served.name == wanted.name, operation


def test_contract_is_served_as_written(contract: dict[str, Shape], ours: dict[str, Shape]) -> None:
    exempt = PENDING.keys()
    offending = [
        f"{coordinate}: contract {describe(shape)}, served {describe(ours.get(coordinate))}"
        for coordinate, shape in contract.items()
        if not ({coordinate, *ancestors(coordinate)} & exempt)
        and not conforms(shape, ours.get(coordinate))
    ]
    assert not offending, (
        "served schema does not match the contract (serve these as written, or list a "
        f"missing one in PENDING with the issue that delivers it):{listing(offending)}"
    )


def test_pending_entries_are_still_missing(
    contract: dict[str, Shape], ours: dict[str, Shape]
) -> None:
    delivered = [f"{c} ({why})" for c, why in PENDING.items() if c in ours]
    unknown = [c for c in PENDING if c not in contract]
    redundant = [c for c in PENDING if set(ancestors(c)) & PENDING.keys()]
    problems = []
    if delivered:
        problems.append(f"now served, remove from PENDING:{listing(delivered)}")
    if unknown:
        problems.append(f"not in the contract, remove from PENDING:{listing(unknown)}")
    if redundant:
        problems.append(f"already covered by a PENDING parent, remove:{listing(redundant)}")
    assert not problems, "\n".join(problems)


def test_pending_entries_name_what_delivers_them() -> None:
    vague = [c for c, why in PENDING.items() if not why.strip() or len(why) > 60]
    assert not vague, f"give each PENDING entry a short issue reference:{listing(vague)}"


def test_additions_to_contract_types_are_optional(
    contract: dict[str, Shape], ours: dict[str, Shape], our_schema: GraphQLSchema
) -> None:
    """Extra arguments and input fields are fine, but a required one breaks contract clients."""

    def added_to_contract(coordinate: str) -> bool:
        if coordinate in contract:
            return False
        if "(" in coordinate:  # an argument of a contract field
            return coordinate.split("(", 1)[0] in contract
        owner = coordinate.split(".", 1)[0]
        return owner in contract and isinstance(
            our_schema.type_map.get(owner), GraphQLInputObjectType
        )

    required = [
        f"{coordinate}: {shape.type}"
        for coordinate, shape in ours.items()
        if added_to_contract(coordinate) and shape.type.endswith("!") and shape.default is None
    ]
    assert not required, f"added as required to a contract type:{listing(required)}"
