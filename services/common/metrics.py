"""The platform's Prometheus metrics: one place that names them, so the dashboard
(``deploy/grafana/shuangjian.json``) and the alerts have one vocabulary.

Every process serves them at ``GET /metrics`` (``metrics_endpoint``; the HTTP ones are
counted by ``observability.Observed``). Label values come
from a bounded set (route templates, GraphQL root fields, command types, error codes,
projection names), never from what a caller chose freely, so no request can make a
series explode.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

HTTP_REQUESTS = Counter(
    "shuangjian_http_requests_total",
    "HTTP requests by process, operation (route template, or GraphQL operation type and "
    "first root field) and code (HTTP status, or the GraphQL error code of a failed "
    "operation).",
    ["process", "operation", "code"],
)
HTTP_DURATION = Histogram(
    "shuangjian_http_request_duration_seconds",
    "Time to answer an HTTP request, by process and operation.",
    ["process", "operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
COMMANDS = Counter(
    "shuangjian_commands_total",
    "Commands decided, by service, command type and outcome (ok, or the error code).",
    ["service", "command", "outcome"],
)
OUTBOX_DEPTH = Gauge(
    "shuangjian_outbox_depth", "Events stored but not yet published to the bus.", ["service"]
)
OUTBOX_OLDEST_AGE = Gauge(
    "shuangjian_outbox_oldest_age_seconds",
    "How long the oldest unpublished event has waited (0 when the outbox is empty).",
    ["service"],
)
PROJECTION_LAG = Gauge(
    "shuangjian_projection_lag_events",
    "Events a projection has not applied yet.",
    ["projection"],
)
DEAD_LETTERS = Counter(
    "shuangjian_dead_letters_total",
    "Events parked as unusable, by projection (none: not an envelope at all).",
    ["projection"],
)

NAMES = (
    "shuangjian_http_requests_total",
    "shuangjian_http_request_duration_seconds",
    "shuangjian_commands_total",
    "shuangjian_outbox_depth",
    "shuangjian_outbox_oldest_age_seconds",
    "shuangjian_projection_lag_events",
    "shuangjian_projector_lag",
    "shuangjian_dead_letters_total",
)
"""Every metric the platform defines (``shuangjian_projector_lag`` lives in the projector)."""


def count_command(service: str, command: str) -> Callable[[BaseException | None], None]:
    """Call the result with the command's error (None: it succeeded)."""

    def done(error: BaseException | None) -> None:
        outcome = "ok" if error is None else str(getattr(error, "code", "INTERNAL"))
        COMMANDS.labels(service, command, outcome).inc()

    return done


async def metrics_endpoint(_: Request) -> Response:
    """``GET /metrics`` in the Prometheus text format."""
    return Response(generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
