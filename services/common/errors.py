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

    def extensions(self) -> dict[str, str]:
        ext = {"code": self.code}
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
    """An append's expected version is stale: somebody else wrote the stream first."""


class Forbidden(ShuangjianError):
    code = "FORBIDDEN"


class Unavailable(ShuangjianError):
    code = "UNAVAILABLE"


class MalformedEvent(ShuangjianError):
    """An event that cannot be read or applied; it is parked with this reason."""

    code = "MALFORMED_EVENT"
