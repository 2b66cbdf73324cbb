"""The finance service's command side: one handler per command, each a load-decide-append.

``Finance`` holds one ``Application`` per aggregate type (accounts, orders, risk) over
the service's one event store. What a command needs of an institution comes from
finance's own view of it, kept from the registry's events (``views.known_institution``,
over the read store; no call to the registry), and whether it has an account from the
account's own stream.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from services.common.aggregate import Aggregate
from services.common.application import (
    Application,
    Applications,
    CommandContext,
    Outcome,
)
from services.common.auth import Role
from services.common.commands import (
    Call,
    Command,
    CommandTable,
    Decision,
    Route,
    business_time,
    entity_id,
)
from services.common.errors import BadInput, Forbidden, NotFound
from services.common.ports import EventStore
from services.common.timeutil import local_date
from services.common.workdays import WorkCalendar
from services.finance.api import AccountState, OrderState, RiskState
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
from services.finance.domain.events import FINANCE_EVENTS, SERVICE, account_stream, risk_stream
from services.finance.domain.model import Account, KnownInstitution, Order, Risk
from services.finance.domain.risk import Signals, assess
from services.finance.domain.rules import FinancePolicy, RiskPolicy
from services.finance.projections import ACCOUNTS, ORDERS, RISK

InstitutionView = Callable[[str], Awaitable[KnownInstitution | None]]
SignalsView = Callable[[str], Awaitable[Signals | None]]


class Service(Application[Any]):
    """One aggregate type's command side, with what its handlers need to decide."""

    def __init__(
        self,
        store: EventStore,
        factory: Callable[[str], Aggregate],
        commands: CommandTable | Sequence[CommandTable],
        finance: Finance,
        **options: Any,
    ) -> None:
        super().__init__(store, FINANCE_EVENTS, factory, commands, **options)
        self.finance = finance


Act = Call[Service]


async def open_account(cmd: OpenSupervisionAccount, o: Act) -> Decision[Account]:
    institution = await o.service.finance.institution(cmd.id or "")
    return lambda a: a.open(cmd, o.at, institution)


async def record_order(cmd: RecordPrepaidOrder, o: Act) -> Decision[Order]:
    finance = o.service.finance
    at = business_time(cmd.paid_at, o.service.clock(), "paid_at")
    institution_id = entity_id(cmd.institution_id, "institution_id")
    institution = await finance.institution(institution_id)
    has_account = (await finance.accounts.load(account_stream(institution_id))).opened is not None
    return lambda order: order.record(
        cmd, at, institution, has_account, finance.payer_key, finance.policy
    )


async def confirm(cmd: ConfirmLessons, o: Act) -> Decision[Order]:
    return lambda order: order.confirm(cmd.lessons, o.at)


async def report_delivered(cmd: ReportLessonsDelivered, o: Act) -> Decision[Order]:
    finance = o.service.finance
    return lambda order: order.report_delivered(cmd.lessons, o.at, finance.calendar, finance.policy)


async def refund(cmd: RefundOrder, o: Act) -> Decision[Order]:
    return lambda order: order.refund(cmd.lessons, cmd.reason, o.at)


async def request_refund(cmd: RequestRefund, o: Act) -> Decision[Order]:
    finance = o.service.finance
    return lambda order: order.request_refund(
        cmd.lessons, cmd.reason, o.at, finance.calendar, finance.policy
    )


async def answer_refund(cmd: AnswerRefundRequest, o: Act) -> Decision[Order]:
    return lambda order: order.answer_refund(cmd.request, cmd.accept, cmd.note, o.at)


async def settle_due(cmd: SettleDue, o: Act) -> Decision[Order]:
    if cmd.today > local_date(o.service.clock()):
        raise BadInput(f"{cmd.today.isoformat()} has not come yet", field="today")
    return lambda order: order.settle_due(cmd.today, o.at)


async def assess_risk(cmd: AssessRisk, o: Act) -> Decision[Risk]:
    institution_id = cmd.id or ""
    signals = await o.service.finance.signals(institution_id)
    if signals is None:
        raise NotFound(f"no registered institution has id {institution_id!r}", field="id")
    level, reasons = assess(signals, local_date(o.service.clock()), o.service.finance.risk)
    return lambda r: r.assess(institution_id, signals.region, level, reasons, o.at)


ACCOUNTS_TABLE = CommandTable(
    # One account per institution: its id is the institution's.
    resource="accounts",
    read_model=ACCOUNTS.name,
    state=AccountState,
    stream_of=lambda id: account_stream(entity_id(id, "institution_id")),
    routes=(Route(OpenSupervisionAccount, open_account, "open", "开立监管账户"),),
)
ORDERS_TABLE = CommandTable(
    resource="orders",
    read_model=ORDERS.name,
    state=OrderState,
    routes=(
        Route(RecordPrepaidOrder, record_order, summary="预收费订单", creates=True),
        Route(ConfirmLessons, confirm, "confirm", "一课一销: the parent confirms lessons"),
        Route(ReportLessonsDelivered, report_delivered, "deliveries", "The institution reports"),
        Route(RefundOrder, refund, "refund", "Refund unconsumed lessons"),
        Route(RequestRefund, request_refund, "refund-requests", "A parent asks for a refund"),
        Route(AnswerRefundRequest, answer_refund, "refund-answers", "The institution answers"),
        Route(SettleDue, settle_due, "settle", "The working-day clock settles what is due"),
    ),
)
RISK_TABLE = CommandTable(
    resource="risk",
    read_model=RISK.name,
    state=RiskState,
    stream_of=lambda id: risk_stream(entity_id(id)),
    routes=(Route(AssessRisk, assess_risk, "assess", "Judge the risk level again"),),
)
COMMANDS = (ACCOUNTS_TABLE, ORDERS_TABLE, RISK_TABLE)
CLOCK_COMMANDS = (SettleDue, AssessRisk)
"""What the clock and the risk watch send: nobody else decides when time has run out."""


class Finance(Applications):
    """The service: accounts, orders and risk assessments, and what their handlers share."""

    def __init__(
        self,
        store: EventStore,
        policy: FinancePolicy,
        risk: RiskPolicy,
        calendar: WorkCalendar,
        payer_key: bytes,
        institution: InstitutionView,
        signals: SignalsView,
        **options: Any,
    ) -> None:
        """``options``: what every ``Application`` takes (``Wiring.options``)."""
        self.policy = policy
        self.risk = risk
        self.calendar = calendar
        self.payer_key = payer_key
        self.institution = institution
        self.signals = signals
        self.accounts = Service(store, Account, ACCOUNTS_TABLE, self, **options)
        self.orders = Service(store, Order, ORDERS_TABLE, self, **options)
        self.risks = Service(store, Risk, RISK_TABLE, self, **options)
        super().__init__(SERVICE, self.accounts, self.orders, self.risks)

    async def handle(self, cmd: Command, ctx: CommandContext) -> Outcome[Any]:
        if isinstance(cmd, CLOCK_COMMANDS) and ctx.principal.role is not Role.ADMIN:
            # The platform's own: its clock and its risk watch (admins, national).
            raise Forbidden(
                f"{type(cmd).__name__} is sent by the platform itself, not by {ctx.who}"
            )
        return await super().handle(cmd, ctx)
