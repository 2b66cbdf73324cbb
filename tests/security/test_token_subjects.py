"""A token's subject is the actor every event records: it must name somebody.

Tokens whose ``sub`` is empty, blank, longer than 200 characters, not text, or holds
control characters are refused with 401 (GraphQL and the services' own HTTP APIs), and
``issue_token`` will not sign such a subject in the first place.
"""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest

from services.bootstrap import Platform
from services.common.auth import (
    AUDIENCE,
    ISSUER,
    Role,
    TokenVerifier,
    Unauthenticated,
    issue_token,
)
from services.common.regions import RegionTree
from services.common.timeutil import utc_now
from tests.conftest import SECRET
from tests.factories import registration
from tests.integration.test_registry_graphql import REGISTER

UNUSABLE = ["", "   ", "zhang\x00san", "zhang\nsan", "\u200bli\u2028", "x" * 201, 42, None]


def signed(subject: Any) -> str:
    """A token as an identity provider might sign it, whatever its subject."""
    now = utc_now()
    claims = {
        "sub": subject,
        "role": Role.ADMIN.value,
        "iat": now,
        "exp": now.timestamp() + 600,
        "aud": AUDIENCE,
        "iss": ISSUER,
    }
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def post(app: Any, token: str, path: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        return await client.post(path, json=body)


@pytest.mark.parametrize("subject", UNUSABLE, ids=repr)
async def test_a_token_without_a_usable_subject_is_refused(
    app: Any, platform: Platform, subject: Any
) -> None:
    token = signed(subject)
    mutation = {"query": REGISTER, "variables": {"input": registration(id="s1")}}
    graphql = await post(app, token, "/graphql", mutation)
    assert graphql.status_code == 401
    assert graphql.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"

    api = await post(
        app,
        token,
        "/api/registry/v1/institutions/s1/warning-cards",
        {"color": "YELLOW", "reason": "消防"},
    )
    assert api.status_code == 401
    assert api.json()["error"]["code"] == "UNAUTHENTICATED"
    assert await platform.event_stores["registry"].max_position() == 0


def test_the_verifier_names_what_is_wrong_with_the_subject() -> None:
    verifier = TokenVerifier(RegionTree.load(), secret=SECRET)
    with pytest.raises(Unauthenticated, match=r"subject \(sub\) must be 1-200 printable"):
        verifier.verify(f"Bearer {signed('')}")


async def test_a_long_printable_subject_is_the_actor(app: Any, platform: Platform) -> None:
    name = "原州区教育局执法大队张三" + "·" * 188  # 200 characters, spaces and CJK allowed
    assert len(name) == 200
    token = signed(name)
    created = await post(
        app, token, "/graphql", {"query": REGISTER, "variables": {"input": registration(id="s2")}}
    )
    assert "errors" not in created.json(), created.json()
    [event] = await platform.event_stores["registry"].read_stream("s2")
    assert event.actor == name


@pytest.mark.parametrize("subject", [s for s in UNUSABLE if isinstance(s, str)], ids=repr)
def test_issue_token_will_not_sign_an_unusable_subject(subject: str) -> None:
    with pytest.raises(ValueError, match="subject"):
        issue_token(SECRET, subject, role=Role.OPERATOR)
