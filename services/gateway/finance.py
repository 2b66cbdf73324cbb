"""The finance GraphQL surface: supervised accounts, prepaid orders and their lessons,
refunds, and the money figures of every region.

It reads through ``services.finance.views`` and sends commands through the backend. It
adds ``RegionStats.finance`` and the money figures of ``MonthlyStats`` to the kit's
types, and ``account``, ``riskLevel``, ``riskReasons`` and ``orders`` to the registry's
``Institution``. Money is exact: integer fen in the read models, ``Money`` strings out.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeAlias

import strawberry
from strawberry.types import Info

from services.common.errors import NotFound
from services.finance import views
from services.finance.module import (
    MODULE,
    AnswerRefundRequest,
    ConfirmLessons,
    OpenSupervisionAccount,
    RecordPrepaidOrder,
    RefundOrder,
    ReportLessonsDelivered,
    RequestRefund,
    RiskLevel,
    SupervisionMode,
    account_stream,
)
from services.gateway import registry
from services.gateway.context import GatewayContext
from services.gateway.kit import (
    Connection,
    Extensions,
    MonthEndStats,
    MonthlyStats,
    RegionStats,
    Slice,
    ctx,
    cursors,
    page_size,
    read_in_scope,
    send_command,
)
from services.gateway.scalars import Date, DateTime, Money

strawberry.enum(SupervisionMode, name="SupervisionMode")
SupervisionModeT: TypeAlias = SupervisionMode
RiskLevelT: TypeAlias = registry.RiskLevel

Institution = registry.Institution
extensions = Extensions()
Doc = dict[str, Any]


def money(fen: int) -> Money:
    return Money(Decimal(fen) / 100)


# --- roll-ups -------------------------------------------------------------------------


@strawberry.type(description="Prepaid money over a region's subtree, as of now.")
class FinanceStats:
    supervised_accounts: int
    orders: int
    order_amount: Money
    escrow_balance: Money = strawberry.field(
        description="Money collected and not yet released or refunded (监管账户余额)."
    )
    released: Money
    refunded: Money
    risk_green: int
    risk_yellow: int
    risk_red: int

    @classmethod
    def from_counts(cls, counts: dict[str, int]) -> FinanceStats:
        return cls(
            supervised_accounts=counts.get("supervised_accounts", 0),
            orders=counts.get("orders", 0),
            order_amount=money(counts.get("order_amount_fen", 0)),
            escrow_balance=money(counts.get("escrow_fen", 0)),
            released=money(counts.get("released_fen", 0)),
            refunded=money(counts.get("refunded_fen", 0)),
            risk_green=counts.get("risk_green", 0),
            risk_yellow=counts.get("risk_yellow", 0),
            risk_red=counts.get("risk_red", 0),
        )


@extensions.field(RegionStats)
async def finance(root: RegionStats, info: Info[GatewayContext, None]) -> FinanceStats:
    return FinanceStats.from_counts(views.finance_counts(await root.counters(info)))


@extensions.field(MonthlyStats)
def orders(root: MonthlyStats) -> int:
    return views.month_counts(root.counters)["orders"]


@extensions.field(MonthlyStats)
def order_amount(root: MonthlyStats) -> Money:
    return money(views.month_counts(root.counters)["order_amount_fen"])


@extensions.field(MonthlyStats)
def released(root: MonthlyStats) -> Money:
    return money(views.month_counts(root.counters)["released_fen"])


@extensions.field(MonthlyStats)
def refunded(root: MonthlyStats) -> Money:
    return money(views.month_counts(root.counters)["refunded_fen"])


async def _money_at(root: MonthEndStats, info: Info[GatewayContext, None]) -> dict[str, int]:
    if root.now(info):
        return views.finance_counts(await root.stats(info))
    return views.month_end_counts(await root.totals(info))


@extensions.field(MonthEndStats, description="Collected and not released or refunded by then.")
async def escrow_balance(root: MonthEndStats, info: Info[GatewayContext, None]) -> Money:
    return money((await _money_at(root, info)).get("escrow_fen", 0))


@extensions.field(MonthEndStats, description="Institutions at risk level GREEN then.")
async def risk_green(root: MonthEndStats, info: Info[GatewayContext, None]) -> int:
    return (await _money_at(root, info)).get("risk_green", 0)


@extensions.field(MonthEndStats, description="Institutions at risk level YELLOW then.")
async def risk_yellow(root: MonthEndStats, info: Info[GatewayContext, None]) -> int:
    return (await _money_at(root, info)).get("risk_yellow", 0)


@extensions.field(MonthEndStats, description="Institutions at risk level RED then.")
async def risk_red(root: MonthEndStats, info: Info[GatewayContext, None]) -> int:
    return (await _money_at(root, info)).get("risk_red", 0)


# --- accounts, orders -----------------------------------------------------------------


async def _institution(info: Info[GatewayContext, None], id: str) -> Institution:
    doc = await ctx(info).loader(registry.views.INSTITUTIONS.name).load(id)
    if doc is None:
        raise NotFound(f"no institution with id {id}", field="institutionId")
    return Institution.from_doc(doc)


@strawberry.type
class SupervisionAccount:
    mode: SupervisionModeT
    bank: str
    account_no: str = strawberry.field(description="Masked: only the last 4 digits are shown.")
    deposit: Money | None = strawberry.field(description="RISK_DEPOSIT: the deposit held.")
    opened_at: DateTime
    institution_id: strawberry.Private[str]

    @strawberry.field
    async def institution(self, info: Info[GatewayContext, None]) -> Institution:
        return await _institution(info, self.institution_id)

    @strawberry.field(
        description="BANK_CUSTODY: the escrow held (prepaid, not yet released or refunded); "
        "RISK_DEPOSIT: the deposit."
    )
    async def balance(self, info: Info[GatewayContext, None]) -> Money:
        return money(await views.balance_fen(ctx(info).backend.read_store, self.institution_id))

    @classmethod
    def from_doc(cls, doc: Doc) -> SupervisionAccount:
        mode = SupervisionMode(doc["mode"])
        return cls(
            mode=mode,
            bank=doc["bank"],
            account_no=doc["account_no"],
            deposit=money(doc["deposit_fen"]) if mode is SupervisionMode.RISK_DEPOSIT else None,
            opened_at=DateTime(datetime.fromisoformat(doc["opened_at"])),
            institution_id=doc["institution_id"],
        )


@strawberry.type
class Delivery:
    number: int
    lessons: int
    confirmed: int
    confirm_by: Date = strawberry.field(
        description="Unconfirmed lessons count as confirmed after this day (15 working days)."
    )


@strawberry.type
class RefundRequest:
    number: int
    lessons: int | None = strawberry.field(description="Null: every remaining lesson.")
    reason: str
    answer_by: Date = strawberry.field(
        description="Unanswered, it counts as accepted after this day (5 working days)."
    )
    answered: bool
    accepted: bool | None
    automatic: bool = strawberry.field(description="Accepted by the clock, nobody answered.")


@strawberry.type
class Order:
    id: strawberry.ID
    lessons: int
    lessons_consumed: int
    lessons_refunded: int
    lessons_awaiting_confirmation: int
    price_per_lesson: Money
    amount: Money
    released: Money
    refunded: Money
    escrow_held: Money = strawberry.field(description="amount - released - refunded.")
    paid_at: DateTime
    course_start: Date
    course_end: Date
    deliveries: list[Delivery]
    refund_requests: list[RefundRequest]
    institution_id: strawberry.Private[str]

    @strawberry.field
    async def institution(self, info: Info[GatewayContext, None]) -> Institution:
        return await _institution(info, self.institution_id)

    @classmethod
    def from_doc(cls, doc: Doc) -> Order:
        return cls(
            id=strawberry.ID(doc["id"]),
            lessons=doc["lessons"],
            lessons_consumed=doc["lessons_consumed"],
            lessons_refunded=doc["lessons_refunded"],
            lessons_awaiting_confirmation=doc["lessons_awaiting_confirmation"],
            price_per_lesson=money(doc["price_fen"]),
            amount=money(doc["amount_fen"]),
            released=money(doc["released_fen"]),
            refunded=money(doc["refunded_fen"]),
            escrow_held=money(doc["amount_fen"] - doc["released_fen"] - doc["refunded_fen"]),
            paid_at=DateTime(datetime.fromisoformat(doc["paid_at"])),
            course_start=Date(date.fromisoformat(doc["course_start"])),
            course_end=Date(date.fromisoformat(doc["course_end"])),
            deliveries=[
                Delivery(
                    number=int(n),
                    lessons=d["lessons"],
                    confirmed=d["confirmed"],
                    confirm_by=Date(date.fromisoformat(d["confirm_by"])),
                )
                for n, d in sorted(doc["deliveries"].items(), key=lambda item: int(item[0]))
            ],
            refund_requests=[
                RefundRequest(
                    number=int(n),
                    lessons=r["lessons"],
                    reason=r["reason"],
                    answer_by=Date(date.fromisoformat(r["answer_by"])),
                    answered=r["answered"],
                    accepted=r["accepted"],
                    automatic=bool(r.get("automatic")),
                )
                for n, r in sorted(doc["requests"].items(), key=lambda item: int(item[0]))
            ],
            institution_id=doc["institution_id"],
        )


OrderConnection: TypeAlias = Connection[Order]


@strawberry.input(description="Every filter's region means the whole subtree under that code.")
class OrderFilter:
    region: str | None = None
    institution_id: strawberry.ID | None = None


async def list_orders(
    info: Info[GatewayContext, None],
    flt: OrderFilter | None,
    first: int | None,
    after: str | None,
    institution: str | None = None,
) -> OrderConnection:
    flt = flt or OrderFilter()
    scope = ctx(info).principal.scope
    prefixes = [scope] if scope else []
    if flt.region is not None:
        prefixes.append(ctx(info).readable(flt.region, "filter.region"))
    where = views.OrderFilter(prefixes, institution or flt.institution_id)
    page = await views.orders(ctx(info).backend.read_store, where, page_size(first), after)
    return Connection.of(page, [Order.from_doc(d) for d in page.items], cursors(page, "paid_at"))


@extensions.field("Institution")
async def account(root: Institution, info: Info[GatewayContext, None]) -> SupervisionAccount | None:
    doc = await ctx(info).loader(views.ACCOUNTS.name).load(account_stream(str(root.id)))
    return SupervisionAccount.from_doc(doc) if doc else None


@extensions.field("Institution")
async def risk_level(root: Institution, info: Info[GatewayContext, None]) -> RiskLevelT:
    doc = await ctx(info).loader(views.RISK.name).load(str(root.id))
    return RiskLevel(doc["level"]) if doc else RiskLevel.GREEN


@extensions.field("Institution", description="Why the risk rules gave its level.")
async def risk_reasons(root: Institution, info: Info[GatewayContext, None]) -> list[str]:
    doc = await ctx(info).loader(views.RISK.name).load(str(root.id))
    return list(doc["reasons"]) if doc else []


@extensions.field("Institution", name="orders")
async def institution_orders(
    root: Institution,
    info: Info[GatewayContext, None],
    first: int | None = 20,
    after: str | None = None,
) -> OrderConnection:
    return await list_orders(info, None, first, after, institution=str(root.id))


@strawberry.type
class Query:
    @strawberry.field
    async def order(self, info: Info[GatewayContext, None], id: strawberry.ID) -> Order | None:
        doc = await ctx(info).loader(views.ORDERS.name).load(id)
        if doc is None or not ctx(info).principal.covers(doc["region"]):
            return None
        return Order.from_doc(doc)

    @strawberry.field
    async def orders(
        self,
        info: Info[GatewayContext, None],
        filter: OrderFilter | None = None,
        first: int | None = 20,
        after: str | None = None,
    ) -> OrderConnection:
        return await list_orders(info, filter, first, after)


# --- mutations ------------------------------------------------------------------------


@strawberry.input
class OpenSupervisionAccountInput:
    institution_id: strawberry.ID
    mode: SupervisionModeT
    bank: str
    account_no: str
    deposit: Money | None = strawberry.field(
        default=None, description="RISK_DEPOSIT: the deposit held against prepaid liabilities."
    )
    occurred_at: DateTime | None = None


@strawberry.input
class RecordPrepaidOrderInput:
    id: strawberry.ID | None = None
    institution_id: strawberry.ID
    payer_ref: str = strawberry.field(
        description="Pseudonymous payer reference; never a name or ID-card number."
    )
    lessons: int
    price_per_lesson: Money
    course_start: Date = strawberry.field(
        description="Course period; end - start may not exceed 3 months."
    )
    course_end: Date
    paid_at: DateTime


async def _order_after(info: Info[GatewayContext, None], cmd: Any, order_id: str) -> Order:
    await send_command(info, cmd)
    return Order.from_doc(await read_in_scope(info, views.ORDERS.name, order_id))


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def open_supervision_account(
        self, info: Info[GatewayContext, None], input: OpenSupervisionAccountInput
    ) -> SupervisionAccount:
        cmd = OpenSupervisionAccount(
            id=input.institution_id,
            mode=input.mode.value,
            bank=input.bank,
            account_no=input.account_no,
            deposit=input.deposit,
            occurred_at=input.occurred_at,
        )
        outcome = await send_command(info, cmd, "input")
        return SupervisionAccount.from_doc(
            await read_in_scope(info, views.ACCOUNTS.name, outcome.aggregate.id)
        )

    @strawberry.mutation
    async def record_prepaid_order(
        self, info: Info[GatewayContext, None], input: RecordPrepaidOrderInput
    ) -> Order:
        cmd = RecordPrepaidOrder(
            id=input.id,
            institution_id=input.institution_id,
            payer_ref=input.payer_ref,
            lessons=input.lessons,
            price_per_lesson=input.price_per_lesson,
            course_start=input.course_start,
            course_end=input.course_end,
            paid_at=input.paid_at,
        )
        outcome = await send_command(info, cmd, "input")
        return Order.from_doc(await read_in_scope(info, views.ORDERS.name, outcome.aggregate.id))

    @strawberry.mutation(
        description="一课一销: releases lessons × pricePerLesson from escrow to the institution."
    )
    async def confirm_lessons(
        self,
        info: Info[GatewayContext, None],
        order_id: strawberry.ID,
        lessons: int,
        occurred_at: DateTime | None = None,
    ) -> Order:
        cmd = ConfirmLessons(id=order_id, lessons=lessons, occurred_at=occurred_at)
        return await _order_after(info, cmd, order_id)

    @strawberry.mutation(
        description="Refunds unconsumed lessons (all remaining when lessons is omitted) back to "
        "the payer."
    )
    async def refund_order(
        self,
        info: Info[GatewayContext, None],
        order_id: strawberry.ID,
        reason: str,
        lessons: int | None = None,
        occurred_at: DateTime | None = None,
    ) -> Order:
        cmd = RefundOrder(id=order_id, lessons=lessons, reason=reason, occurred_at=occurred_at)
        return await _order_after(info, cmd, order_id)

    @strawberry.mutation(
        description="The institution reports lessons given; unconfirmed by the parent within "
        "15 working days, they count as confirmed."
    )
    async def report_lessons_delivered(
        self,
        info: Info[GatewayContext, None],
        order_id: strawberry.ID,
        lessons: int,
        occurred_at: DateTime | None = None,
    ) -> Order:
        cmd = ReportLessonsDelivered(id=order_id, lessons=lessons, occurred_at=occurred_at)
        return await _order_after(info, cmd, order_id)

    @strawberry.mutation(
        description="A parent's refund request; unanswered within 5 working days it counts as "
        "accepted."
    )
    async def request_refund(
        self,
        info: Info[GatewayContext, None],
        order_id: strawberry.ID,
        reason: str,
        lessons: int | None = None,
        occurred_at: DateTime | None = None,
    ) -> Order:
        cmd = RequestRefund(id=order_id, lessons=lessons, reason=reason, occurred_at=occurred_at)
        return await _order_after(info, cmd, order_id)

    @strawberry.mutation(description="The institution's answer to a refund request.")
    async def answer_refund_request(
        self,
        info: Info[GatewayContext, None],
        order_id: strawberry.ID,
        request: int,
        accept: bool,
        note: str | None = None,
        occurred_at: DateTime | None = None,
    ) -> Order:
        cmd = AnswerRefundRequest(
            id=order_id, request=request, accept=accept, note=note, occurred_at=occurred_at
        )
        return await _order_after(info, cmd, order_id)


SLICE = Slice(
    MODULE.name,
    query=Query,
    mutation=Mutation,
    types=(FinanceStats, SupervisionAccount, Order),
    extensions=extensions,
)
