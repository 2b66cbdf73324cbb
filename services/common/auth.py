"""Who is asking, and which part of the country they may see and change.

A bearer JWT carries the subject (``sub``), a region scope (``region``: a GB/T 2260 code;
absent means national) and a role (``viewer`` reads, ``operator`` also writes, ``admin``
also administers). HS256 with a shared secret serves the embedded and development set-up;
RS256/ES256 tokens from a production OIDC provider are verified against its JWKS URL.

The checks themselves (``Principal.require_read`` / ``require_write``) are pure and live
here, so the services and the read path enforce the same rule, not only the gateway.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt

from services.common.errors import Forbidden, ShuangjianError, Unauthenticated
from services.common.regions import RegionTree
from services.common.timeutil import utc_now

AUDIENCE = "shuangjian"
ISSUER = "shuangjian"
SECRET_FILE = "jwt-secret"


class Role(enum.StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def writes(self) -> bool:
        return self is not Role.VIEWER


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: ``scope`` is the subtree prefix it may act in ('' = all)."""

    subject: str
    role: Role
    region: str | None = None
    scope: str = ""

    @classmethod
    def of(cls, subject: str, role: Role, region: str | None, regions: RegionTree) -> Principal:
        if region is None:
            return cls(subject, role)
        code = regions.canonical(region, "region")
        return cls(subject, role, code, regions.subtree_prefix(code))

    @property
    def national(self) -> bool:
        return self.region is None

    def covers(self, region: str) -> bool:
        """Is ``region`` (a 6-digit code) inside this caller's scope?"""
        return region.startswith(self.scope)

    def sees_into(self, prefix: str) -> bool:
        """Does the subtree ``prefix`` overlap this caller's scope (above or below it)?"""
        return prefix.startswith(self.scope) or self.scope.startswith(prefix)

    def require_read(self, region: str) -> None:
        if not self.covers(region):
            raise Forbidden(f"{self.subject} may not read region {region}", field="region")

    def require_write(self, region: str) -> None:
        if not self.role.writes:
            raise Forbidden(f"{self.subject} is a viewer and may not change anything")
        if not self.covers(region):
            raise Forbidden(
                f"{self.subject} acts for {self.region or 'the whole country'} and may not "
                f"write in region {region}",
                field="region",
            )


SYSTEM = Principal("system", Role.ADMIN)
"""Internal callers (demo loader, replays): national, and not from a token."""


def load_or_create_secret(data_dir: Path) -> str:
    """The HS256 secret kept in the data dir, created (mode 0600) on first use."""
    path = data_dir / SECRET_FILE
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(secret, encoding="utf-8")
    return secret


def issue_token(
    secret: str,
    subject: str,
    *,
    role: Role = Role.VIEWER,
    region: str | None = None,
    ttl: timedelta = timedelta(hours=8),
) -> str:
    now = utc_now()
    claims: dict[str, Any] = {
        "sub": subject,
        "role": role.value,
        "iat": now,
        "exp": now + ttl,
        "aud": AUDIENCE,
        "iss": ISSUER,
    }
    if region is not None:
        claims["region"] = region
    return jwt.encode(claims, secret, algorithm="HS256")


class TokenVerifier:
    """Turns a bearer token into a ``Principal``, or raises ``Unauthenticated``."""

    def __init__(
        self,
        regions: RegionTree,
        *,
        secret: str | None = None,
        jwks_url: str | None = None,
        audience: str = AUDIENCE,
        issuer: str | None = ISSUER,
    ) -> None:
        if not secret and not jwks_url:
            raise ValueError("a token verifier needs an HS256 secret or a JWKS URL")
        self.regions = regions
        self.secret = secret
        self.audience = audience
        self.issuer = issuer
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None

    def verify(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthenticated("an Authorization: Bearer <token> header is required")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        claims = self._decode(token.strip())
        try:
            role = Role(claims.get("role", Role.VIEWER.value))
        except ValueError:
            raise Unauthenticated(f"unknown role {claims.get('role')!r} in the token") from None
        region = claims.get("region")
        if region is not None and not isinstance(region, str):
            raise Unauthenticated("the token's region must be a region code")
        try:
            return Principal.of(str(claims["sub"]), role, region, self.regions)
        except ShuangjianError as exc:
            raise Unauthenticated(f"the token's region is not usable: {exc.message}") from None

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            if self._jwks is not None and jwt.get_unverified_header(token).get("alg") != "HS256":
                key = self._jwks.get_signing_key_from_jwt(token).key
                algorithms = ["RS256", "ES256"]
            elif self.secret:
                key, algorithms = self.secret, ["HS256"]
            else:
                raise Unauthenticated("this server accepts only tokens signed by its OIDC provider")
            return jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except (jwt.InvalidTokenError, jwt.PyJWKClientError) as exc:
            raise Unauthenticated(f"the token is not valid: {exc}") from None
