"""Read models of prepaid money, and what each document adds to the region roll-ups.

Per supervised account (``finance_accounts``, the number masked), per order
(``orders``, with what it released and refunded by month), per item the working-day
clock must settle (``finance_due``), and finance's own view of each institution:

* ``finance_register``: status, category, non-profit flag and region, from the
  registry's events (by their published type names: finance imports no service);
* ``finance_signals``: what the risk rules read, kept by increments only (outstanding
  money, the deposit, refund requests and complaints per day), because events of many
  streams and topics add to one institution's document;
* ``finance_fees_orders``: rectification orders opened for a FEES finding, from the
  inspections service's events;
* ``finance_risk``: the institution's risk level and its reasons.

Documents written with ``put`` only ever come from one stream each (an order, an
account, an institution's registry stream, an inspection batch, a risk assessment), so
projectors on different partitions never overwrite each other's work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from services.common.envelope import Envelope
from services.common.errors import MalformedEvent
from services.common.ports import CollectionSpec
from services.common.projection import CounterKey, Projection, ProjectionUnit
from services.common.regions import RegionTree
from services.common.rollups import REGION_MONTHS, REGION_STATS, month_of, spread
from services.finance.domain.events import (
    FINANCE_EVENTS,
    RISK_STREAM,
    SERVICE,
    LessonsConfirmed,
    LessonsDelivered,
    LessonsRefunded,
    PrepaidOrderRecorded,
    RefundRequestAnswered,
    RefundRequested,
    RiskLevelChanged,
    SupervisionAccountOpened,
)
from services.finance.domain.model import masked

ACCOUNTS = CollectionSpec("finance_accounts", indexes=("region", "institution_id"))
ORDERS = CollectionSpec("orders", indexes=("region", "institution_id", "paid_at"))
DUE = CollectionSpec("finance_due", indexes=("open", "due"))
REGISTER = CollectionSpec("finance_register", indexes=("region",))
SIGNALS = CollectionSpec("finance_signals")
FEES_ORDERS = CollectionSpec("finance_fees_orders", indexes=("institution_id",))
RISK = CollectionSpec("finance_risk", indexes=("region", "level"))

PREFIX = "finance_"  # of this service's counters in region_stats
REGISTRY, INSPECTIONS = "registry", "inspections"

Doc = dict[str, Any]
Counters = Mapping[CounterKey, int]

# The registry's published lifecycle: the status each of its events leads to.
REGISTRY_STATUS = {
    "registry.InstitutionRegistered": "PENDING",
    "registry.InstitutionApproved": "APPROVED",
    "registry.InstitutionSuspended": "SUSPENDED",
    "registry.InstitutionResumed": "APPROVED",
    "registry.InstitutionRevoked": "REVOKED",
    "registry.InstitutionExited": "EXITED",
}


def day_field(prefix: str, at: str) -> str:
    return prefix + at[:10].replace("-", "")


def order_counters(doc: Doc | None, regions: RegionTree) -> Counters:
    if doc is None:
        return {}
    held = doc["amount_fen"] - doc["released_fen"] - doc["refunded_fen"]
    fields = {
        "orders": 1,
        "order_amount_fen": doc["amount_fen"],
        "released_fen": doc["released_fen"],
        "refunded_fen": doc["refunded_fen"],
        "escrow_fen": held,
    }
    months: dict[str, dict[str, int]] = {
        doc["paid_at"][:7]: {"orders": 1, "order_amount_fen": doc["amount_fen"]}
    }
    for month, fen in doc["released_by_month"].items():
        months.setdefault(month, {})["released_fen"] = fen
    for month, fen in doc["refunded_by_month"].items():
        months.setdefault(month, {})["refunded_fen"] = fen
    return spread(regions, PREFIX, doc["region"], fields, months)


def account_counters(doc: Doc | None, regions: RegionTree) -> Counters:
    if doc is None:
        return {}
    return spread(regions, PREFIX, doc["region"], {"supervised_accounts": 1}, {})


def register_counters(doc: Doc | None, regions: RegionTree) -> Counters:
    """Every institution finance knows is GREEN until a rule says otherwise (from the month
    it was registered, for the month-end counts)."""
    if doc is None:
        return {}
    months = (
        {month_of(doc["registered_at"]): {"risk_green_net": 1}} if "registered_at" in doc else {}
    )
    return spread(regions, PREFIX, doc["region"], {"risk_green": 1}, months)


def risk_counters(doc: Doc | None, regions: RegionTree) -> Counters:
    """A YELLOW or RED institution moves from the GREEN count to its own; each change of
    level moves it in the month it happened (``risk_<level>_net``, for month-end counts)."""
    if doc is None:
        return {}
    months: dict[str, dict[str, int]] = {}
    level = "GREEN"
    for change in doc.get("history") or [{"at": doc["since"], "level": doc["level"]}]:
        if change["level"] != level:
            counts = months.setdefault(month_of(change["at"]), {})
            for name, step in ((level, -1), (change["level"], 1)):
                field = f"risk_{name.lower()}_net"
                counts[field] = counts.get(field, 0) + step
            level = change["level"]
    fields = (
        {} if doc["level"] == "GREEN" else {"risk_green": -1, f"risk_{doc['level'].lower()}": 1}
    )
    return spread(regions, PREFIX, doc["region"], fields, months)


class FinanceProjection(Projection):
    name = "finance.money"
    # 2: the month buckets' ``…_net`` standings and figures of the monthly report.
    version = 2
    sources = (SERVICE, REGISTRY, INSPECTIONS)
    collections = (
        ACCOUNTS,
        ORDERS,
        DUE,
        REGISTER,
        SIGNALS,
        FEES_ORDERS,
        RISK,
        REGION_STATS,
        REGION_MONTHS,
    )

    def __init__(self, regions: RegionTree) -> None:
        self.regions = regions

    def handles(self, event: Envelope) -> bool:
        service = event.service
        if service == SERVICE:
            return True
        if service == REGISTRY:
            return event.type in REGISTRY_STATUS or event.type in (
                "registry.InstitutionConvertedToNonProfit",
                "registry.InstitutionReclassified",
            )
        return event.type in (
            "inspections.ComplaintFiled",
            "inspections.InspectionRecorded",
            "inspections.RectificationVerified",
        )

    def prefetch(self, events: Sequence[Envelope]) -> Iterable[tuple[str, str]]:
        for event in events:
            if not self.handles(event):
                continue
            if event.service == REGISTRY:
                yield REGISTER.name, event.stream
            elif event.service == INSPECTIONS:
                order = event.data.get("rectification")
                if event.data.get("passed") and isinstance(order, str):
                    yield FEES_ORDERS.name, order
            elif event.service == SERVICE:
                collection = self._own_collection(event.type)
                yield collection.name, self._own_key(event)

    @staticmethod
    def _own_key(event: Envelope) -> str:
        """An order and an account by their stream; a risk level by its institution."""
        return event.stream.removeprefix(RISK_STREAM)

    @staticmethod
    def _own_collection(event_type: str) -> CollectionSpec:
        if event_type == SupervisionAccountOpened.TYPE:
            return ACCOUNTS
        if event_type == RiskLevelChanged.TYPE:
            return RISK
        return ORDERS

    async def apply(self, event: Envelope, unit: ProjectionUnit) -> None:
        if event.service == REGISTRY:
            await self._registry(event, unit)
        elif event.service == INSPECTIONS:
            await self._inspections(event, unit)
        else:
            await self._finance(event, unit)

    # --- the registry's facts: finance's own view of each institution ----------------

    async def _registry(self, event: Envelope, unit: ProjectionUnit) -> None:
        doc = await unit.get(REGISTER.name, event.stream)
        known = doc["version"] if doc else 0
        if event.version <= known:
            return
        data = event.data
        if event.type == "registry.InstitutionRegistered":
            new: Doc = {
                "region": data["region"],
                "category": data["category"],
                "non_profit": bool(data["non_profit"]),
                "status": "PENDING",
                "registered_at": event.occurred_at.isoformat(),
            }
        else:
            if doc is None:
                raise MalformedEvent(f"{event.type} for {event.stream}, never registered")
            new = dict(doc)
            if event.type == "registry.InstitutionConvertedToNonProfit":
                new["non_profit"] = True
            elif event.type == "registry.InstitutionReclassified":
                new["category"] = data["category"]
        new["status"] = REGISTRY_STATUS.get(event.type, new["status"])
        # The registry's versions, gaps and all: only its lifecycle events come here.
        regions = self.regions
        unit.replace(
            REGISTER.name,
            event.stream,
            doc,
            new,
            event.version,
            lambda d: register_counters(d, regions),
        )

    # --- the inspections service's facts: complaints and FEES rectifications ---------

    async def _inspections(self, event: Envelope, unit: ProjectionUnit) -> None:
        data = event.data
        at = event.occurred_at.isoformat()
        if event.type == "inspections.ComplaintFiled":
            if data.get("institution_id"):
                unit.increment(
                    SIGNALS.name, data["institution_id"], {day_field("complaint_d", at): 1}
                )
        elif event.type == "inspections.InspectionRecorded":
            for visit in data["visits"]:
                fees = any(f["type"] == "FEES" for f in visit["findings"])
                if fees and visit.get("institution_id") and visit.get("rectification"):
                    order = {
                        "institution_id": visit["institution_id"],
                        "deadline": data["deadline"],
                        "closed": False,
                    }
                    unit.put(FEES_ORDERS.name, visit["rectification"], order, event.version)
                    # So the clock judges the institution again once the deadline passes.
                    unit.increment(SIGNALS.name, visit["institution_id"], {"fees_orders": 1})
        elif data.get("passed"):  # RectificationVerified
            opened = await unit.get(FEES_ORDERS.name, data["rectification"])
            if opened is not None and opened["version"] < event.version:
                unit.put(
                    FEES_ORDERS.name,
                    data["rectification"],
                    {**opened, "closed": True},
                    event.version,
                )

    # --- its own facts ----------------------------------------------------------------

    async def _finance(self, event: Envelope, unit: ProjectionUnit) -> None:
        fact = FINANCE_EVENTS.decode(event)
        collection = self._own_collection(event.type)
        key = self._own_key(event)
        doc = await unit.get(collection.name, key)
        known = doc["version"] if doc else 0
        if event.version <= known:
            return
        if event.version != known + 1:
            raise MalformedEvent(f"{event.stream} version {event.version} arrived after {known}")
        at = event.occurred_at.isoformat()
        if isinstance(fact, SupervisionAccountOpened):
            new: Doc = {
                "institution_id": fact.institution_id,
                "region": fact.region,
                "mode": fact.mode.value,
                "bank": fact.bank,
                "account_no": masked(fact.account_no),
                "deposit_fen": fact.deposit_fen,
                "opened_at": at,
            }
            signals = {fact.mode.value.lower(): 1, "deposit_fen": fact.deposit_fen}
            unit.increment(SIGNALS.name, fact.institution_id, signals)
            self._replace(ACCOUNTS, event, doc, new, account_counters, unit)
        elif isinstance(fact, RiskLevelChanged):
            new = {
                "institution_id": fact.institution_id,
                "region": fact.region,
                "level": fact.level.value,
                "reasons": list(fact.reasons),
                "since": at,
                # Every level it had, for the month-end counts (a few changes a year).
                "history": [
                    *((doc or {}).get("history") or []),
                    {"at": at, "level": fact.level.value},
                ],
            }
            self._replace(RISK, event, doc, new, risk_counters, unit, key)
        elif isinstance(fact, PrepaidOrderRecorded):
            new = {
                "institution_id": fact.institution_id,
                "region": fact.region,
                "lessons": fact.lessons,
                "lessons_consumed": 0,
                "lessons_refunded": 0,
                "lessons_awaiting_confirmation": 0,
                "price_fen": fact.price_fen,
                "amount_fen": fact.amount_fen,
                "released_fen": 0,
                "refunded_fen": 0,
                "released_by_month": {},
                "refunded_by_month": {},
                "course_start": fact.course_start.isoformat(),
                "course_end": fact.course_end.isoformat(),
                "paid_at": fact.paid_at.isoformat(),
                "deliveries": {},
                "requests": {},
            }
            unit.increment(SIGNALS.name, fact.institution_id, {"outstanding_fen": fact.amount_fen})
            self._replace(ORDERS, event, None, new, order_counters, unit)
        else:
            if doc is None:
                raise MalformedEvent(f"{event.type} for {event.stream}, never recorded")
            new = self._order_after(event, fact, doc, at, unit)
            self._replace(ORDERS, event, doc, new, order_counters, unit)

    def _order_after(
        self, event: Envelope, fact: Any, doc: Doc, at: str, unit: ProjectionUnit
    ) -> Doc:
        new = {
            **doc,
            "deliveries": dict(doc["deliveries"]),
            "requests": dict(doc["requests"]),
            "released_by_month": dict(doc["released_by_month"]),
            "refunded_by_month": dict(doc["refunded_by_month"]),
        }
        month = at[:7]
        match fact:
            case LessonsDelivered():
                new["deliveries"][str(fact.delivery)] = {
                    "lessons": fact.lessons,
                    "confirmed": 0,
                    "confirm_by": fact.confirm_by.isoformat(),
                }
                new["lessons_awaiting_confirmation"] += fact.lessons
                self._due(unit, event, f"d{fact.delivery}", fact.confirm_by.isoformat(), True, doc)
            case LessonsConfirmed():
                new["lessons_consumed"] += fact.lessons
                new["released_fen"] += fact.amount_fen
                months = new["released_by_month"]
                months[month] = months.get(month, 0) + fact.amount_fen
                left = fact.lessons
                for n in fact.deliveries:
                    delivery = dict(new["deliveries"][str(n)])
                    take = min(left, delivery["lessons"] - delivery["confirmed"])
                    delivery["confirmed"] += take
                    left -= take
                    new["lessons_awaiting_confirmation"] -= take
                    new["deliveries"][str(n)] = delivery
                    if delivery["confirmed"] == delivery["lessons"]:
                        self._due(unit, event, f"d{n}", delivery["confirm_by"], False, doc)
                unit.increment(
                    SIGNALS.name, fact.institution_id, {"outstanding_fen": -fact.amount_fen}
                )
            case RefundRequested():
                new["requests"][str(fact.request)] = {
                    "lessons": fact.lessons,
                    "reason": fact.reason,
                    "answer_by": fact.answer_by.isoformat(),
                    "answered": False,
                    "accepted": None,
                }
                self._due(unit, event, f"r{fact.request}", fact.answer_by.isoformat(), True, doc)
                unit.increment(SIGNALS.name, fact.institution_id, {day_field("refund_d", at): 1})
            case RefundRequestAnswered():
                request = dict(new["requests"][str(fact.request)])
                request.update(answered=True, accepted=fact.accepted, automatic=fact.automatic)
                new["requests"][str(fact.request)] = request
                self._due(unit, event, f"r{fact.request}", request["answer_by"], False, doc)
            case LessonsRefunded():
                new["lessons_refunded"] += fact.lessons
                new["refunded_fen"] += fact.amount_fen
                months = new["refunded_by_month"]
                months[month] = months.get(month, 0) + fact.amount_fen
                unit.increment(
                    SIGNALS.name, fact.institution_id, {"outstanding_fen": -fact.amount_fen}
                )
        return new

    def _due(
        self, unit: ProjectionUnit, event: Envelope, item: str, due: str, open: bool, order: Doc
    ) -> None:
        """An item the clock must settle: a delivery to confirm, a request to answer."""
        doc = {"order_id": event.stream, "region": order["region"], "due": due, "open": open}
        unit.put(DUE.name, f"{event.stream}:{item}", doc, event.version)

    def _replace(
        self,
        spec: CollectionSpec,
        event: Envelope,
        before: Doc | None,
        after: Doc,
        counters: Callable[[Doc | None, RegionTree], Counters],
        unit: ProjectionUnit,
        key: str | None = None,
    ) -> None:
        regions = self.regions
        unit.replace(
            spec.name,
            key or event.stream,
            before,
            after,
            event.version,
            lambda d: counters(d, regions),
        )
