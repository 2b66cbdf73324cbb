"""One error type per kind of failure. Every layer raises these; the edges map ``code``.

The codes are the public ``extensions.code`` values of the GraphQL contract.
"""

from __future__ import annotations


class ShuangjianError(Exception):
    """Base of every failure the platform reports to a caller on purpose."""

    code = "INTERNAL"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def extensions(self) -> dict[str, str | bool]:
        ext: dict[str, str | bool] = {"code": self.code}
        if self.field:
            ext["field"] = self.field
        return ext


class BadInput(ShuangjianError):
    """The input is malformed or breaks a rule; ``field`` names the offending input path."""

    code = "BAD_INPUT"


class NotFound(ShuangjianError):
    code = "NOT_FOUND"


class Conflict(ShuangjianError):
    """The request contradicts what is already recorded (a lifecycle rule, a reused id)."""

    code = "CONFLICT"


class ConcurrencyConflict(Conflict):
    """An append's expected version is stale: somebody else wrote the stream first.

    Not a rule violation: the same request may well succeed when sent again, and the
    caller can tell (``extensions.reason`` = ``CONCURRENT_UPDATE``, ``retryable``).
    """

    reason = "CONCURRENT_UPDATE"

    def extensions(self) -> dict[str, str | bool]:
        return {**super().extensions(), "reason": self.reason, "retryable": True}


class Unauthenticated(ShuangjianError):
    """No token, or one that does not verify: HTTP 401."""

    code = "UNAUTHENTICATED"


class Forbidden(ShuangjianError):
    code = "FORBIDDEN"


class Unavailable(ShuangjianError):
    code = "UNAVAILABLE"


class MalformedEvent(ShuangjianError):
    """An event that cannot be read or applied; it is parked with this reason."""

    code = "MALFORMED_EVENT"


# The one table of what each code means over HTTP. An HTTP edge answers a caller's error
# with its status; a client turns a status-and-code answer back into the same exception.
HTTP_STATUS: dict[type[ShuangjianError], int] = {
    BadInput: 422,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Unavailable: 503,
}
BY_CODE: dict[str, type[ShuangjianError]] = {kind.code: kind for kind in HTTP_STATUS}


def http_status(error: ShuangjianError) -> int:
    """The HTTP status of an error (500 for anything not meant for the caller)."""
    return HTTP_STATUS.get(BY_CODE.get(error.code, ShuangjianError), 500)


def from_code(
    code: str | None, message: str, field: str | None = None, reason: str | None = None
) -> ShuangjianError:
    """The error a remote service reported; an unknown code means it is unavailable."""
    if code == Conflict.code and reason == ConcurrencyConflict.reason:
        return ConcurrencyConflict(message, field=field)
    return BY_CODE.get(code or "", Unavailable)(message, field=field)
