"""The query peer: the same resolvers on bare ``graphql-core``, without strawberry.

``institutions(filter:, first:, after:)`` with the fields the query benchmarks select
(``totalCount``, ``edges { node { id name creditCode status } }``, ``pageInfo``). Its one
resolver does what the gateway's does for those fields: the caller's scope and the chosen
region as prefixes, the filter's enums, ``services.registry.views.institutions`` over
the same read store, the page's cursors. No types for the rest of the contract, no
strawberry, no context object, no cost limits: the difference between this row and the
gateway's is what the GraphQL layer adds.
"""

from __future__ import annotations

import enum
from typing import Any

from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLField,
    GraphQLID,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
    graphql,
)

from services.common.ports import ReadStore, encode_cursor
from services.common.regions import RegionTree
from services.registry import views
from services.registry.module import Category, Status


def _enum(name: str, values: type[enum.Enum]) -> GraphQLEnumType:
    """The domain's enum under the contract's name; values stay the plain strings."""
    return GraphQLEnumType(name, {member.name: member.value for member in values})


def peer_schema(store: ReadStore, regions: RegionTree, scope: str | None) -> GraphQLSchema:
    """The schema over ``store`` for a caller whose region scope is ``scope``."""
    status = _enum("InstitutionStatus", Status)
    category = _enum("InstitutionCategory", Category)
    institution = GraphQLObjectType(
        "Institution",
        {
            "id": GraphQLField(GraphQLNonNull(GraphQLID)),
            "name": GraphQLField(GraphQLNonNull(GraphQLString)),
            "creditCode": GraphQLField(
                GraphQLNonNull(GraphQLString), resolve=lambda doc, _: doc["credit_code"]
            ),
            "status": GraphQLField(GraphQLNonNull(status)),
        },
    )
    edge = GraphQLObjectType(
        "InstitutionEdge",
        {
            "node": GraphQLField(GraphQLNonNull(institution)),
            "cursor": GraphQLField(GraphQLNonNull(GraphQLString)),
        },
    )
    page_info = GraphQLObjectType(
        "PageInfo",
        {
            "endCursor": GraphQLField(GraphQLString),
            "hasNextPage": GraphQLField(GraphQLNonNull(GraphQLBoolean)),
        },
    )
    connection = GraphQLObjectType(
        "InstitutionConnection",
        {
            "totalCount": GraphQLField(GraphQLNonNull(GraphQLInt)),
            "edges": GraphQLField(GraphQLNonNull(GraphQLList(GraphQLNonNull(edge)))),
            "pageInfo": GraphQLField(GraphQLNonNull(page_info)),
        },
    )
    filter_type = GraphQLInputObjectType(
        "InstitutionFilter",
        {
            "region": GraphQLInputField(GraphQLString),
            "status": GraphQLInputField(status),
            "category": GraphQLInputField(category),
            "search": GraphQLInputField(GraphQLString),
        },
    )

    async def institutions(
        _: Any,
        __: Any,
        first: int = 20,
        after: str | None = None,
        filter: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        flt = filter or {}
        prefixes = [scope] if scope else []
        if flt.get("region"):
            prefixes.append(regions.subtree_prefix(regions.canonical(flt["region"], "region")))
        where = views.InstitutionFilter(
            region_prefixes=prefixes,
            status=flt.get("status"),
            category=flt.get("category"),
            search=flt.get("search"),
        )
        page = await views.institutions(store, where, first, after)
        return {
            "totalCount": page.total,
            "edges": [
                {"node": doc, "cursor": encode_cursor(doc["id"], doc["id"])} for doc in page.items
            ],
            "pageInfo": {"endCursor": page.end_cursor, "hasNextPage": page.has_next},
        }

    query = GraphQLObjectType(
        "Query",
        {
            "institutions": GraphQLField(
                GraphQLNonNull(connection),
                args={
                    "filter": GraphQLArgument(filter_type),
                    "first": GraphQLArgument(GraphQLInt, default_value=20),
                    "after": GraphQLArgument(GraphQLString),
                },
                resolve=institutions,
            )
        },
    )
    return GraphQLSchema(query)


async def execute(schema: GraphQLSchema, document: str) -> dict[str, Any]:
    """Run ``document``; errors raise."""
    result = await graphql(schema, document)
    if result.errors:
        raise RuntimeError(f"GraphQL errors: {result.errors}")
    assert result.data is not None
    return result.data
