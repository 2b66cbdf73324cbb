"""Who is asking, and which part of the country they may see and change.

A bearer JWT carries the subject (``sub``: 1-200 printable characters, the actor its
events record), a region scope (``region``: a GB/T 2260 code; absent means national) and
a role (``viewer`` reads, ``operator`` also writes, ``importer`` writes and may back-date
history, ``admin`` also administers). HS256 with a shared secret serves the embedded and
development set-up; RS256/ES256 tokens from a production OIDC provider are verified
against its JWKS URL.

The checks themselves (``Principal.require_read`` / ``require_write``) are pure and live
here, so the services and the read path enforce the same rule, not only the gateway.
"""

from __future__ import annotations

import contextlib
import enum
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt

from services.common.datadir import FILE_MODE, SECRET_FILE, make_private_dir
from services.common.errors import Forbidden, ShuangjianError, Unauthenticated
from services.common.regions import RegionTree
from services.common.timeutil import utc_now

AUDIENCE = "shuangjian"
ISSUER = "shuangjian"


class Role(enum.StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"
    IMPORTER = "importer"
    """Loads history: writes like an operator, and may back-date beyond the window."""

    @property
    def writes(self) -> bool:
        return self is not Role.VIEWER

    @property
    def backdates(self) -> bool:
        """May record facts further back than the back-dating window (history imports)."""
        return self in (Role.ADMIN, Role.IMPORTER)


SUBJECT_MAX = 200


def usable_subject(subject: object) -> bool:
    """A subject is the actor every event records: 1-200 printable characters, not blank."""
    return (
        isinstance(subject, str)
        and 0 < len(subject) <= SUBJECT_MAX
        and subject.isprintable()
        and not subject.isspace()
    )


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


class NoSecret(Exception):
    """The data dir holds no token secret: nothing signed now would be accepted."""


def load_secret(data_dir: Path) -> str:
    """The HS256 secret the platform generated in the data dir; never makes one up.

    Used where a new secret would be useless (``shuangjian token``): a token signed with
    it would be refused by the server, which has its own.
    """
    path = data_dir / SECRET_FILE
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        secret = ""
    if not secret:
        raise NoSecret(
            f"the data dir {data_dir} holds no token secret ({path} is missing or empty): "
            "give the server's data dir (--data-dir or SHUANGJIAN_DATA_DIR), start "
            "`shuangjian up` there once, or set SHUANGJIAN_JWT_SECRET"
        )
    return secret


def load_or_create_secret(data_dir: Path) -> str:
    """The HS256 secret kept in the data dir, created (mode 0600) on first use.

    Processes starting together on one data dir agree on one secret: each writes a
    candidate to its own file and links it into place, which only the first one can.
    """
    path = data_dir / SECRET_FILE
    if path.exists():
        return load_secret(data_dir)
    make_private_dir(data_dir)
    candidate = data_dir / f".{SECRET_FILE}.{os.getpid()}.tmp"
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(secrets.token_urlsafe(48))
            out.flush()
            os.fsync(out.fileno())
        # Another process may have been first: then its secret is the one.
        with contextlib.suppress(FileExistsError):
            os.link(candidate, path)
    finally:
        candidate.unlink(missing_ok=True)
    return load_secret(data_dir)


def issue_token(
    secret: str,
    subject: str,
    *,
    role: Role = Role.VIEWER,
    region: str | None = None,
    ttl: timedelta = timedelta(hours=8),
) -> str:
    if not usable_subject(subject):
        raise ValueError(
            f"a token's subject is 1-{SUBJECT_MAX} printable characters, not blank: {subject!r}"
        )
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
        subject = claims["sub"]
        if not usable_subject(subject):
            raise Unauthenticated(
                f"the token's subject (sub) must be 1-{SUBJECT_MAX} printable characters"
            )
        try:
            return Principal.of(subject, role, region, self.regions)
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
