"""Guarantee 9: nobody reads or writes outside the regions their token grants."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.bootstrap import Platform
from services.common.auth import Role, TokenVerifier, Unauthenticated, issue_token
from services.common.regions import RegionTree
from tests.conftest import SECRET, GraphQL, bearer
from tests.factories import registration, valid_credit_code
from tests.integration.test_registry_graphql import APPROVE, REGISTER

LISTING = "{ institutions(first: 100) { totalCount edges { node { id region { code } } } } }"


def client(app: Any, authorization: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": authorization} if authorization else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test", headers=headers
    )


@pytest.fixture
async def seeded(gql: GraphQL) -> None:
    """Institutions in 固原 (two districts), 天津 and 庐阳, registered by a national admin."""
    for n, region in enumerate(["640402", "640422", "120101", "340103"]):
        await gql.data(
            REGISTER,
            {
                "input": registration(
                    id=f"s{n}", region=region, creditCode=valid_credit_code(region, f"MA{n:07d}")
                )
            },
        )


async def post(c: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None) -> Any:
    response = await c.post("/graphql", json={"query": query, "variables": variables or {}})
    return response


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Basic abc", "Bearer not-a-jwt", bearer().replace("Bearer ", "Bearer x")],
)
async def test_no_or_bad_token_is_401(app: Any, authorization: str | None) -> None:
    async with client(app, authorization) as c:
        response = await post(c, '{ region(code: "64") { name } }')
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_expired_and_foreign_tokens_are_401(app: Any) -> None:
    expired = issue_token(SECRET, "old", ttl=timedelta(seconds=-5))
    forged = issue_token("another-secret-of-decent-length-123456", "mallory", role=Role.ADMIN)
    for token in (expired, forged):
        async with client(app, f"Bearer {token}") as c:
            response = await post(c, '{ region(code: "64") { name } }')
        assert response.status_code == 401, token


async def test_health_and_the_graphiql_page_need_no_token(app: Any) -> None:
    async with client(app, None) as c:
        assert (await c.get("/healthz")).status_code == 200
        page = await c.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "Authorization" in page.text and "shuangjian token" in page.text


async def test_district_operator_cannot_write_elsewhere(
    app: Any, platform: Platform, seeded: None
) -> None:
    before = await platform.event_stores["registry"].max_position()
    async with client(app, bearer(Role.OPERATOR, "340103")) as c:
        elsewhere = registration(
            id="x1", region="640402", creditCode=valid_credit_code("640402", "MA0000X01")
        )
        body = (await post(c, REGISTER, {"input": elsewhere})).json()
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        body = (await post(c, APPROVE, {"id": "s0", "licenseNo": "L"})).json()
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        # Its own district is fine.
        approved = (await post(c, APPROVE, {"id": "s3", "licenseNo": "L-340103"})).json()
        assert approved["data"]["approveInstitution"]["status"] == "APPROVED"
    assert await platform.event_stores["registry"].max_position() == before + 1


async def test_viewers_cannot_write(app: Any, platform: Platform, seeded: None) -> None:
    before = await platform.event_stores["registry"].max_position()
    async with client(app, bearer(Role.VIEWER)) as c:
        body = (await post(c, APPROVE, {"id": "s0", "licenseNo": "L"})).json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await platform.event_stores["registry"].max_position() == before


async def test_city_viewer_sees_only_its_city(app: Any, seeded: None) -> None:
    async with client(app, bearer(Role.VIEWER, "640400")) as c:
        listing = (await post(c, LISTING)).json()["data"]["institutions"]
        assert sorted(e["node"]["id"] for e in listing["edges"]) == ["s0", "s1"]
        assert listing["totalCount"] == 2

        own = await post(c, '{ region(code: "640400") { stats { institutions { active } } } }')
        assert own.json()["data"]["region"]["stats"]["institutions"]["active"] == 2
        district = await post(c, '{ region(code: "640422") { stats { institutions { active } } } }')
        assert district.json()["data"]["region"]["stats"]["institutions"]["active"] == 1

        for query in (
            '{ region(code: "640000") { stats { institutions { active } } } }',
            '{ region(code: "340103") { history(from: "2021-01-01", to: "2021-12-01") '
            "{ month } } }",
            '{ institutions(filter: {region: "120000"}) { totalCount } }',
        ):
            body = (await post(c, query)).json()
            assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", query

        hidden = (await post(c, '{ institution(id: "s2") { id } }')).json()
        assert hidden["data"]["institution"] is None
        districts = (await post(c, "{ regions(level: DISTRICT) { code } }")).json()
        codes = {r["code"] for r in districts["data"]["regions"]}
        assert codes == {"640402", "640422", "640423", "640424", "640425"}


async def test_national_viewer_sees_everything(app: Any, seeded: None) -> None:
    async with client(app, bearer(Role.VIEWER)) as c:
        listing = (await post(c, LISTING)).json()["data"]["institutions"]
        assert listing["totalCount"] == 4
        body = await post(c, '{ region(code: "640000") { stats { institutions { active } } } }')
        assert body.json()["data"]["region"]["stats"]["institutions"]["active"] == 2


async def test_the_token_subject_is_the_audit_actor(app: Any) -> None:
    async with client(app, bearer(Role.OPERATOR, "640402", subject="zhang.san@640402")) as c:
        await post(c, REGISTER, {"input": registration(id="a1", occurredAt=None)})
        trail = await post(c, '{ institution(id: "a1") { events { edges { node { actor } } } } }')
    edges = trail.json()["data"]["institution"]["events"]["edges"]
    assert [e["node"]["actor"] for e in edges] == ["zhang.san@640402"]


# --- production tokens: RS256 against a JWKS URL ---------------------------------------


@pytest.fixture
def jwks() -> Iterator[tuple[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/jwks.json", key
    finally:
        server.shutdown()


def test_rs256_tokens_verify_against_the_jwks(jwks: tuple[str, Any]) -> None:
    url, key = jwks
    verifier = TokenVerifier(RegionTree.load(), jwks_url=url, issuer="https://idp.example")
    claims = {
        "sub": "li.si",
        "role": "operator",
        "region": "640400",
        "aud": "shuangjian",
        "iss": "https://idp.example",
        "exp": 4102444800,
    }
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
    principal = verifier.verify(f"Bearer {token}")
    assert (principal.subject, principal.role, principal.scope) == ("li.si", Role.OPERATOR, "6404")

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(Unauthenticated):
        verifier.verify(f"Bearer {forged}")
    # With only a JWKS configured, a self-made HS256 token is refused.
    with pytest.raises(Unauthenticated):
        verifier.verify(f"Bearer {issue_token(SECRET, 'x', role=Role.ADMIN)}")


def test_secrets_do_not_show_in_settings() -> None:
    from services.common.config import Settings

    settings = Settings(
        jwt_secret="s3cr3t-value-s3cr3t-value-s3cr3t",  # type: ignore[arg-type]
        mongodb_uri="mongodb://user:pw@db:27017",
        _env_file=None,  # type: ignore[call-arg]
    )
    shown = f"{settings!r} {settings}"
    assert "s3cr3t" not in shown and "pw@" not in shown


def test_token_commands_print_usable_tokens(tmp_path: Any) -> None:
    import subprocess
    import sys
    from pathlib import Path

    from services.common.auth import load_or_create_secret

    load_or_create_secret(tmp_path)  # `up` made it; `token` only reads it (defect 11)
    cli = Path(sys.executable).parent / "shuangjian"
    made = subprocess.run(
        [
            str(cli),
            "token",
            "--region",
            "640400",
            "--role",
            "operator",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    verifier = TokenVerifier(RegionTree.load(), secret=load_or_create_secret(tmp_path))
    principal = verifier.verify(f"Bearer {made.stdout.strip()}")
    assert (principal.role, principal.scope) == (Role.OPERATOR, "6404")
    bad = subprocess.run(
        [str(cli), "token", "--region", "999999", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "999999" in bad.stdout
