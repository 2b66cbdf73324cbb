"""The finance service as a module of the platform, and the names other layers may use.

It keeps its own view of institutions from the registry's events and of complaints and
FEES rectifications from the inspections service's (``projections.py``), and reads
them through the lookups it publishes (``finance.institution``, ``finance.signals``).
Its working-day clock is a timer (``finance_clock``). Readers never see an account
number whole, in the audit trail or a live subscription either (``redact``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from datetime import date, datetime

import structlog

from services.common.application import CommandContext
from services.common.envelope import Envelope
from services.common.errors import ShuangjianError
from services.common.module import CommandService, Lookup, ServiceModule, Wiring
from services.common.ports import ReadStore
from services.common.projection import Projection
from services.common.regions import RegionTree
from services.common.timers import Timer
from services.common.timeutil import local_date
from services.finance import views
from services.finance.api import DESCRIPTION
from services.finance.domain.commands import (
    AnswerRefundRequest,
    AssessRisk,
    ConfirmLessons,
    OpenSupervisionAccount,
    RecordPrepaidOrder,
    RefundOrder,
    ReportLessonsDelivered,
    RequestRefund,
    SettleDue,
)
from services.finance.domain.events import (
    FINANCE_EVENTS,
    SERVICE,
    RiskLevelChanged,
    SupervisionAccountOpened,
    account_stream,
    risk_stream,
)
from services.finance.domain.model import masked
from services.finance.domain.rules import RiskLevel, SupervisionMode
from services.finance.handlers import COMMANDS, Finance
from services.finance.projections import FinanceProjection
from services.finance.settings import FinanceSettings

__all__ = [
    "FINANCE_EVENTS",
    "MODULE",
    "AnswerRefundRequest",
    "AssessRisk",
    "ConfirmLessons",
    "FinanceSettings",
    "OpenSupervisionAccount",
    "RecordPrepaidOrder",
    "RefundOrder",
    "ReportLessonsDelivered",
    "RequestRefund",
    "RiskLevel",
    "RiskLevelChanged",
    "SettleDue",
    "SupervisionMode",
    "account_stream",
    "risk_stream",
]

log = structlog.get_logger(__name__)

INSTITUTION = "finance.institution"
SIGNALS = "finance.signals"
AUTOMATIC = "automatic:finance-clock"
"""The actor of what the working-day clock records."""


def payer_key(wiring: Wiring[FinanceSettings]) -> bytes:
    """The payer-hash key: configured, or derived from the installation's secret."""
    configured = wiring.settings.finance_payer_secret
    if configured is not None:
        return configured.get_secret_value().encode()
    if wiring.secret is None:
        raise ValueError(
            "the finance service needs SHUANGJIAN_FINANCE_PAYER_SECRET (or an installation "
            "secret) to hash payer references"
        )
    return hmac.new(wiring.secret, b"shuangjian/finance/payer-ref", hashlib.sha256).digest()


def application(wiring: Wiring[FinanceSettings]) -> CommandService:
    return Finance(
        wiring.store,
        wiring.settings.policy(),
        wiring.settings.risk(),
        wiring.settings.calendar(),
        payer_key(wiring),
        wiring.lookup(INSTITUTION),
        wiring.lookup(SIGNALS),
        **wiring.options,
    )


def projections(regions: RegionTree, settings: FinanceSettings) -> Sequence[Projection]:
    return [FinanceProjection(regions)]


def institution_lookup(store: ReadStore, clock: Callable[[], datetime]) -> Lookup:
    async def institution(institution_id: str) -> object:
        return await views.known_institution(store, institution_id)

    return institution


def signals_lookup(store: ReadStore, clock: Callable[[], datetime]) -> Lookup:
    async def signals(institution_id: str) -> object:
        return await views.signals(store, institution_id)

    return signals


def finance_clock(
    service: CommandService,
    store: ReadStore,
    clock: Callable[[], datetime],
    settings: FinanceSettings,
) -> Sequence[Timer]:
    """The working-day clock: settles the orders whose delivered lessons or refund
    requests nobody answered in time, and judges every institution's risk again (the
    30-day windows and rectification deadlines move with the calendar alone)."""
    ctx = CommandContext(actor=AUTOMATIC)
    judged: list[date] = []  # the day this process last judged every institution

    async def tick() -> int:
        today = local_date(clock())
        sent = 0
        for order in await views.due_orders(store, today):
            sent += await _send(service, SettleDue(id=order, today=today), ctx)
        if judged != [today]:  # once a day: the windows and deadlines move by days
            before, judged[:] = list(judged), [today]  # claimed first: ticks may overlap
            try:
                async for institution in views.institutions_to_assess(store):
                    sent += await _send(service, AssessRisk(id=institution), ctx)
            except BaseException:
                judged[:] = before  # not done: the next tick tries again
                raise
        return sent

    return [Timer("finance-clock", settings.finance_clock_interval, tick)]


async def _send(service: CommandService, cmd: object, ctx: CommandContext) -> int:
    try:
        outcome = await service.handle(cmd, ctx)  # type: ignore[arg-type]
    except ShuangjianError as exc:  # one item's refusal must not stop the others
        log.warning("finance.clock_refused", command=type(cmd).__name__, reason=exc.message)
        return 0
    return 1 if outcome.events else 0


def redact(event: Envelope) -> Envelope:
    """An account number shows its last four digits only, wherever an event is read."""
    if event.type != SupervisionAccountOpened.TYPE or "account_no" not in event.data:
        return event
    return event.model_copy(
        update={"data": {**event.data, "account_no": masked(str(event.data["account_no"]))}}
    )


MODULE = ServiceModule(
    name=SERVICE,
    description=DESCRIPTION,
    events=FINANCE_EVENTS,
    settings=FinanceSettings,
    commands=COMMANDS,
    application=application,
    projections=projections,
    port=8003,
    provides={INSTITUTION: institution_lookup, SIGNALS: signals_lookup},
    timers=finance_clock,
    redact=redact,
)
