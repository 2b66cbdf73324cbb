"""``Institution.events`` through GraphQL: a commit's events in the order they were decided."""

from __future__ import annotations

from services.bootstrap import Platform
from tests.conftest import GraphQL
from tests.factories import registration, valid_credit_code
from tests.integration.test_registry_graphql import APPROVE, REGISTER

CARD = """
mutation($id: ID!) {
  issueWarningCard(id: $id, color: RED, reason: "无证收费") { id suspensionRecommended }
}"""
TRAIL = """
query($id: ID!) { institution(id: $id) { events { edges { node { type version } } } } }"""


async def test_a_suspension_recommendation_follows_the_card_that_caused_it(
    gql: GraphQL, platform: Platform
) -> None:
    # Each second RED card records the card and the recommendation in one commit; with
    # random ids breaking the tie, each of these trails would be a coin toss.
    idents = [f"t{n}" for n in range(10)]
    for n, ident in enumerate(idents):
        code = valid_credit_code("640402", f"MA00T{n:04d}")
        await gql.data(REGISTER, {"input": registration(id=ident, creditCode=code)})
        await gql.data(APPROVE, {"id": ident, "licenseNo": f"L-{n}"})
        await gql.data(CARD, {"id": ident})
        second = await gql.data(CARD, {"id": ident})
        assert second["issueWarningCard"]["suspensionRecommended"]
    await platform.settle()

    for ident in idents:
        edges = (await gql.data(TRAIL, {"id": ident}))["institution"]["events"]["edges"]
        assert [(e["node"]["version"], e["node"]["type"].split(".")[1]) for e in edges] == [
            (1, "InstitutionRegistered"),
            (2, "InstitutionApproved"),
            (3, "WarningCardIssued"),
            (4, "WarningCardIssued"),
            (5, "SuspensionRecommended"),
        ]
