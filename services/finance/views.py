"""The finance read side: plain query functions over the ``ReadStore`` port.

GraphQL, reports and the dashboard read prepaid money through these, and so do the
finance command side (its view of an institution, the risk signals) and its clock (what
has fallen due).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from services.common.errors import BadInput
from services.common.ports import Eq, Filter, In, NotIn, Page, Prefix, Query, Range, ReadStore
from services.common.rollups import stats_fields
from services.finance.domain.events import account_stream
from services.finance.domain.model import KnownInstitution
from services.finance.domain.risk import Signals
from services.finance.domain.rules import SupervisionMode
from services.finance.projections import (
    ACCOUNTS,
    DUE,
    FEES_ORDERS,
    ORDERS,
    PREFIX,
    REGISTER,
    RISK,
    SIGNALS,
)

Doc = dict[str, Any]
MAX_RISK_LISTED = 10_000

__all__ = ["ACCOUNTS", "ORDERS", "RISK"]


def finance_counts(region_stats: Doc | None) -> dict[str, int]:
    """The finance counters of one ``region_stats`` document (``orders``, ``escrow_fen``…)."""
    return stats_fields(region_stats, PREFIX)


def month_counts(month: Doc) -> dict[str, int]:
    return {
        name: month.get(name, 0)
        for name in ("orders", "order_amount_fen", "released_fen", "refunded_fen")
    }


def month_end_counts(totals: Doc) -> dict[str, int]:
    """Escrow and risk levels at the end of a month that has ended, from the month buckets
    summed up to it (``rollups.totals_through``): named as in ``finance_counts``."""
    return {
        "escrow_fen": totals.get("order_amount_fen", 0)
        - totals.get("released_fen", 0)
        - totals.get("refunded_fen", 0),
        **{
            f"risk_{level}": totals.get(f"risk_{level}_net", 0)
            for level in ("green", "yellow", "red")
        },
    }


async def account(store: ReadStore, institution_id: str) -> Doc | None:
    return await store.get(ACCOUNTS.name, account_stream(institution_id))


async def balance_fen(store: ReadStore, institution_id: str) -> int:
    """The account balance: the escrow held (BANK_CUSTODY) or the deposit (RISK_DEPOSIT)."""
    signals = await store.get(SIGNALS.name, institution_id) or {}
    if signals.get(SupervisionMode.RISK_DEPOSIT.value.lower()):
        deposit: int = signals.get("deposit_fen", 0)
        return deposit
    outstanding: int = signals.get("outstanding_fen", 0)
    return outstanding


async def risk(store: ReadStore, institution_id: str) -> Doc | None:
    return await store.get(RISK.name, institution_id)


async def known_institution(store: ReadStore, institution_id: str) -> KnownInstitution | None:
    """Finance's own view of a registered institution (from the registry's events)."""
    doc = await store.get(REGISTER.name, institution_id)
    if doc is None:
        return None
    return KnownInstitution(
        institution_id, doc["region"], doc["status"], doc["category"], doc["non_profit"]
    )


async def signals(store: ReadStore, institution_id: str) -> Signals | None:
    """What the risk rules read of one institution (None when finance does not know it)."""
    register = await store.get(REGISTER.name, institution_id)
    if register is None:
        return None
    kept = await store.get(SIGNALS.name, institution_id) or {}
    fees = await store.find(
        Query(FEES_ORDERS.name, (Eq("institution_id", institution_id),), first=1000)
    )
    mode = None
    for candidate in SupervisionMode:
        if kept.get(candidate.value.lower()):
            mode = candidate
    return Signals(
        region=register["region"],
        status=register["status"],
        mode=mode,
        deposit_fen=kept.get("deposit_fen", 0),
        outstanding_fen=kept.get("outstanding_fen", 0),
        refund_requests=_days(kept, "refund_d"),
        complaints=_days(kept, "complaint_d"),
        fees_rectifications=[
            (date.fromisoformat(doc["deadline"]), bool(doc["closed"])) for doc in fees.items
        ],
    )


def _days(doc: Doc, prefix: str) -> list[date]:
    """Each day a counter ``<prefix>YYYYMMDD`` counts, as often as it counts."""
    days: list[date] = []
    for name, count in doc.items():
        if name.startswith(prefix) and isinstance(count, int) and count > 0:
            stamp = name[len(prefix) :]
            days += [date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]))] * count
    return days


async def due_orders(store: ReadStore, today: date, first: int = 500) -> list[str]:
    """Orders with a delivery to confirm or a request to answer whose time ran out before
    ``today`` (each once)."""
    page = await store.find(
        Query(
            DUE.name,
            (Eq("open", True), Range("due", lt=today.isoformat())),
            order_by="due",
            first=first,
        )
    )
    return list(dict.fromkeys(doc["order_id"] for doc in page.items))


async def institutions_to_assess(store: ReadStore, batch: int = 1_000) -> AsyncIterator[str]:
    """Every institution finance knows something about beyond its registration (an
    account, an order, a refund request, a complaint, a FEES rectification), a page at a
    time: at a province's scale the ids alone would hold tens of megabytes."""
    after = None
    while True:
        page = await store.find(Query(SIGNALS.name, first=batch, after=after))
        for doc in page.items:
            yield doc["id"]
        if not page.has_next:
            return
        after = page.end_cursor


async def ids_at_risk(store: ReadStore, level: str, region_prefixes: Sequence[str]) -> list[str]:
    """Institutions at ``level`` (YELLOW or RED) in the regions; refused when too many."""
    filters: list[Filter] = [Prefix("region", p) for p in region_prefixes]
    page = await store.find(Query(RISK.name, (*filters, Eq("level", level)), first=MAX_RISK_LISTED))
    if page.has_next:
        raise BadInput(
            f"more than {MAX_RISK_LISTED:,} institutions are {level}: narrow the region",
            field="filter.riskLevel",
        )
    return [doc["id"] for doc in page.items]


def risk_filter(level: str, yellow_and_red: Sequence[str], at_level: Sequence[str]) -> Filter:
    """The institution-id filter of a risk level: GREEN is every institution not YELLOW or
    RED (an institution not yet assessed is GREEN)."""
    if level == "GREEN":
        return NotIn("id", tuple(yellow_and_red))
    return In("id", tuple(at_level))


@dataclass(frozen=True)
class OrderFilter:
    region_prefixes: Sequence[str] = ()
    institution_id: str | None = None


async def order(store: ReadStore, id: str) -> Doc | None:
    return await store.get(ORDERS.name, id)


async def orders(
    store: ReadStore, where: OrderFilter, first: int, after: str | None = None
) -> Page:
    """Orders in the order they were paid."""
    filters: list[Filter] = [Prefix("region", p) for p in where.region_prefixes]
    if where.institution_id is not None:
        filters.append(Eq("institution_id", where.institution_id))
    return await store.find(Query(ORDERS.name, tuple(filters), "paid_at", first, after))
