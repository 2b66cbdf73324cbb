"""The three kinds of sheet, their columns, and how rows become the ordinary commands.

Identity comes from the data, so importing a file again changes nothing:

* an institution's id is ``uscc-<统一社会信用代码>`` (``institution_id``); a second row
  with the same code and other details is the platform's ``CONFLICT``;
* an inspection batch's id derives from its district and the sheet's own batch number
  (``批次编号``), a prepaid order's from its institution and order number (or, without
  an order number, from the whole row);
* every command carries an idempotency key derived from its normalised content
  (``idempotency_key``), so a re-sent row is recognised by the platform and answered
  without new events.

A ``Unit`` is what is applied at once: one row (institutions, orders) or the consecutive
rows of one inspection batch (a batch and its rectification orders are one commit in the
platform, so its rows stand or fall together). ``Unit.locate`` turns the platform's error
field (``credit_code``, ``visits[2].findings[0].type``) back into a row and a column.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from services.common.commands import Command
from services.common.errors import BadInput
from services.finance.module import RecordPrepaidOrder
from services.importing.columns import Cells, Column
from services.inspections.module import FindingInput, RecordInspection, VisitInput
from services.registry.module import ApproveInstitution, RegisterInstitution

MAX_BATCH_ROWS = 5_000
"""Rows one inspection batch may span (the platform allows 2,000 visits by default)."""

# --- identities ------------------------------------------------------------------------

_CODE = re.compile(r"^[0-9A-Z]{18}$")


def institution_id(credit_code: str) -> str:
    """The id an imported institution gets: readable for a well-formed code; anything else
    is refused by the registry on its code, so its id only has to be a valid id."""
    code = "".join(unicodedata.normalize("NFKC", credit_code).split()).upper()
    return f"uscc-{code}" if _CODE.match(code) else f"uscc-x{_digest(code)[:24]}"


def inspection_id(region: str, batch_no: str) -> str:
    """The id of the batch a district numbered ``batch_no`` (one number per district)."""
    return f"insp-{_digest(json.dumps([region, batch_no], ensure_ascii=False))[:24]}"


def idempotency_key(kind: str, command: Command) -> str:
    """A key of the command's normalised content: the same row sent again, the same key."""
    return f"import:{kind}:{_digest(canonical(command))}"


def canonical(command: Command) -> str:
    """The command as one JSON text: its type and every field, nested inputs included."""
    return json.dumps(
        [type(command).__name__, _plain(command)], sort_keys=True, ensure_ascii=False, default=str
    )


def _plain(value: Any) -> Any:
    # ``dataclasses.asdict`` deep-copies every value: several times slower on big sheets.
    names = getattr(type(value), "__dataclass_fields__", None)
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- units -----------------------------------------------------------------------------


@dataclass
class Unit:
    """Rows applied together, as commands sent in order (stopping at the first refusal),
    or the problems that kept them from becoming commands."""

    rows: tuple[int, ...]
    commands: list[Command] = field(default_factory=list)
    problems: list[tuple[int, BadInput]] = field(default_factory=list)
    """``(row, error)`` found before anything was sent; ``error.field`` is a column key."""
    locate: Callable[[str | None, int], tuple[int, str]] = lambda f, step: (0, "")
    """``(platform field, command index)`` → ``(row, column key)``; "" for no column."""


Units = Callable[[Iterator[Cells]], Iterator[Unit]]


@dataclass(frozen=True)
class Kind:
    name: str
    title: str
    """The data sheet's name in the template."""
    columns: tuple[Column, ...]
    units: Units
    groups: tuple[tuple[str, ...], ...] = ()
    """Column sets of which at least one must be in the header."""
    layout: str = ""
    """What the template's notes sheet says about the layout as a whole."""


def snake_to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _column_of(field: str | None, keys: set[str], overrides: dict[str, str]) -> str:
    if field is None:
        return ""
    if field in overrides:
        return overrides[field]
    camel = snake_to_camel(field)
    return camel if camel in keys else ""


# --- institutions ----------------------------------------------------------------------

INSTITUTION_COLUMNS = (
    Column(
        "name",
        "机构名称",
        "Registered name (one line, at most 200 characters).",
        True,
        ("名称",),
        free_text=True,
        example="原州区启明美术工作室",
    ),
    Column(
        "creditCode",
        "统一社会信用代码",
        "18 characters (GB 32100) with a valid check "
        "character; the institution's id is uscc-<code>.",
        True,
        ("信用代码", "社会信用代码"),
        example="52640402MA00000015",
    ),
    Column(
        "region",
        "区县代码",
        "6-digit district code (GB/T 2260), e.g. 640402; 原州区（640402） works too.",
        True,
        ("所属区县", "区县", "行政区划代码"),
        example="640402",
    ),
    Column(
        "category",
        "类别",
        "学科类 (SUBJECT) or 非学科类 (NON_SUBJECT).",
        True,
        ("机构类别",),
        (
            ("学科类", "SUBJECT"),
            ("学科", "SUBJECT"),
            ("非学科类", "NON_SUBJECT"),
            ("非学科", "NON_SUBJECT"),
        ),
        example="非学科类",
    ),
    Column(
        "nonSubjectKind",
        "非学科类别",
        "Only for 非学科类: 体育, 艺术, 科技, 综合实践 or 其他.",
        aliases=("非学科类型",),
        choices=(
            ("体育", "SPORTS"),
            ("艺术", "ARTS"),
            ("文化艺术", "ARTS"),
            ("科技", "SCIENCE_TECH"),
            ("综合实践", "COMPREHENSIVE_PRACTICE"),
            ("其他", "OTHER"),
        ),
        example="艺术",
    ),
    Column(
        "mode",
        "办学形式",
        "线下 (OFFLINE) or 线上 (ONLINE).",
        True,
        ("培训形式",),
        (("线下", "OFFLINE"), ("线上", "ONLINE")),
        example="线下",
    ),
    Column(
        "address",
        "地址",
        "Where it teaches (line breaks allowed, at most 500 characters).",
        aliases=("办学地址", "机构地址"),
        free_text=True,
        example="固原市原州区文化街 8 号",
    ),
    Column(
        "nonProfit",
        "非营利",
        "是 for a non-profit institution; empty or 否 otherwise.",
        aliases=("是否非营利",),
        choices=(("是", "TRUE"), ("否", "FALSE")),
        example="否",
    ),
    Column(
        "occurredAt",
        "登记日期",
        "Registration date (2021-03-01); empty means today. The importer role may back-date.",
        aliases=("注册日期",),
        example="2021-03-01",
    ),
    Column(
        "licenseNo",
        "办学许可证号",
        "When given, the institution is also approved (审批准入) with this licence number.",
        aliases=("许可证号", "办学许可证"),
        free_text=True,
        example="教民164040270000011号",
    ),
    Column(
        "approvedAt",
        "审批日期",
        "Approval date; empty means the registration date.",
        aliases=("许可日期",),
        example="2021-03-15",
    ),
)
_REGISTRATION_FIELDS = {"id": "creditCode"}


def institution_units(rows: Iterator[Cells]) -> Iterator[Unit]:
    keys = {c.key for c in INSTITUTION_COLUMNS}
    for cells in rows:
        name = cells.text("name", required=True)
        code = cells.code("creditCode", required=True)
        region = cells.region("region", required=True)
        category = cells.choice("category", required=True)
        kind = cells.choice("nonSubjectKind")
        mode = cells.choice("mode", required=True)
        address = cells.text("address")
        non_profit = cells.choice("nonProfit") == "TRUE"
        registered = cells.moment("occurredAt")
        license_no = cells.text("licenseNo")
        approved = cells.moment("approvedAt")
        unit = Unit(rows=(cells.number,))
        if cells.problems:
            unit.problems = [(cells.number, p) for p in cells.problems]
            yield unit
            continue
        assert name is not None and code is not None and region is not None
        assert category is not None and mode is not None
        ident = institution_id(code)
        unit.commands.append(
            RegisterInstitution(
                id=ident,
                name=name,
                credit_code=code,
                region=region,
                category=category,
                mode=mode,
                address=address,
                non_subject_kind=kind,
                non_profit=non_profit,
                occurred_at=registered,
            )
        )
        approval_time = "approvedAt" if cells.has("approvedAt") else "occurredAt"
        if license_no is not None:
            unit.commands.append(
                ApproveInstitution(
                    id=ident, license_no=license_no, occurred_at=approved or registered
                )
            )
        approval = {"id": "licenseNo", "occurred_at": approval_time}
        row = cells.number

        def locate(
            field: str | None, step: int, row: int = row, approval: dict[str, str] = approval
        ) -> tuple[int, str]:
            overrides = _REGISTRATION_FIELDS if step == 0 else approval
            return row, _column_of(field, keys, overrides)

        unit.locate = locate
        yield unit


INSTITUTIONS = Kind(
    "institutions",
    "机构",
    INSTITUTION_COLUMNS,
    institution_units,
    layout="One row per institution: registered (registerInstitution), and approved "
    "(approveInstitution) when 办学许可证号 is filled in.",
)

# --- inspections -----------------------------------------------------------------------

_PLACE = ("institutionId", "creditCode", "venue")
INSPECTION_COLUMNS = (
    Column(
        "batchNo",
        "批次编号",
        "The district's own number of the batch (检查批次). "
        "Consecutive rows with the same number are one batch.",
        True,
        ("检查批次", "批次号"),
        example="JB-2023-001",
    ),
    Column(
        "region",
        "区县代码",
        "6-digit district code of the inspecting office.",
        True,
        ("所属区县", "区县", "行政区划代码"),
        example="500105",
    ),
    Column(
        "kind",
        "检查类型",
        "日常检查, 夜查, 联合执法, 随机抽查, 专项检查 or 督学.",
        True,
        ("检查方式",),
        (
            ("日常检查", "DAILY"),
            ("日常", "DAILY"),
            ("夜查", "NIGHT"),
            ("夜间检查", "NIGHT"),
            ("联合执法", "JOINT"),
            ("随机抽查", "RANDOM"),
            ("双随机", "RANDOM"),
            ("专项检查", "SPECIAL"),
            ("专项", "SPECIAL"),
            ("督学", "SUPERVISOR"),
        ),
        example="夜查",
    ),
    Column(
        "startedAt",
        "检查时间",
        "When the batch went out (2023-11-28 20:30).",
        True,
        ("检查日期", "开始时间"),
        example="2023-11-28 20:30",
    ),
    Column("personnel", "出动人次", "People sent out.", True, ("出动人数",), example="6"),
    Column(
        "departments",
        "参与部门",
        "Departments, separated by 、 or ; (at most 50).",
        aliases=("部门",),
        free_text=True,
        example="区教委、区市场监管局",
    ),
    Column(
        "rectifyWithinDays",
        "整改期限（天）",
        "Days until the rectification deadline (default 30).",
        aliases=("整改期限", "整改天数"),
        example="15",
    ),
    Column(
        "institutionId",
        "机构ID",
        "A registered institution's id (as the platform shows "
        "it). Give this, its 统一社会信用代码, or a 检查场所.",
        example="demo-500105-001",
    ),
    Column(
        "creditCode",
        "统一社会信用代码",
        "A registered institution, by its code (imported institutions have the id uscc-<code>).",
        aliases=("信用代码",),
        example="52500105MA00000012",
    ),
    Column(
        "venue",
        "检查场所",
        "A place with no registered institution (a flat, a café).",
        aliases=("场所", "地点"),
        free_text=True,
        example="观音桥某小区3栋1单元",
    ),
    Column(
        "findingType",
        "问题类型",
        "消防安全, 师资资质, 培训材料, 收费, 违规培训, 隐形变异, "
        "无证办学, 虚假宣传 or 其他; empty when nothing was found.",
        aliases=("发现问题类型",),
        choices=(
            ("消防安全", "FIRE_SAFETY"),
            ("师资资质", "STAFF_QUALIFICATION"),
            ("培训材料", "TRAINING_MATERIAL"),
            ("收费", "FEES"),
            ("预收费", "FEES"),
            ("违规培训", "HOLIDAY_SUBJECT_TRAINING"),
            ("节假日学科培训", "HOLIDAY_SUBJECT_TRAINING"),
            ("隐形变异", "HIDDEN_TRAINING"),
            ("无证办学", "UNLICENSED_OPERATION"),
            ("虚假宣传", "FALSE_ADVERTISING"),
            ("其他", "OTHER"),
        ),
        example="消防安全",
    ),
    Column(
        "findingDescription",
        "问题描述",
        "What was found (with 问题类型).",
        aliases=("问题", "发现问题"),
        free_text=True,
        example="灭火器过期",
    ),
)
_BATCH_KEYS = ("region", "kind", "startedAt", "personnel", "departments", "rectifyWithinDays")
_VISIT_FIELD = re.compile(r"^visits\[(\d+)\](?:\.findings\[(\d+)\])?(?:\.(\w+))?$")
_DEPARTMENT_SPLIT = re.compile(r"[、;；,，\n]+")


@dataclass
class _Visit:
    row: int
    place_column: str
    place: tuple[str, str]
    findings: list[tuple[int, FindingInput]] = field(default_factory=list)


@dataclass
class _Batch:
    number: str
    first_row: int
    values: dict[str, Any]
    rows: list[int] = field(default_factory=list)
    visits: list[_Visit] = field(default_factory=list)
    problems: list[tuple[int, BadInput]] = field(default_factory=list)


def inspection_units(rows: Iterator[Cells]) -> Iterator[Unit]:
    batch: _Batch | None = None
    for cells in rows:
        number = cells.code("batchNo", required=True)
        if batch is not None and (number is None or number != batch.number):
            yield _batch_unit(batch)
            batch = None
        if number is None:  # a row without its batch is its own failure
            yield Unit(rows=(cells.number,), problems=[(cells.number, p) for p in cells.problems])
            continue
        values = _batch_values(cells)
        if batch is None:
            batch = _Batch(number, cells.number, values)
        else:
            for key, value in values.items():
                if value is not None and value != batch.values.get(key):
                    cells.problem(
                        key,
                        f"differs from row {batch.first_row}, the first row of batch "
                        f"{number}: a batch's columns are the same on each of its rows",
                    )
        batch.rows.append(cells.number)
        if len(batch.rows) > MAX_BATCH_ROWS:
            if len(batch.rows) == MAX_BATCH_ROWS + 1:
                batch.problems.append(
                    (
                        cells.number,
                        BadInput(f"a batch spans at most {MAX_BATCH_ROWS:,} rows", field="batchNo"),
                    )
                )
            batch.visits.clear()  # it fails anyway: hold no more of it
            continue
        _add_visit(batch, cells)
        batch.problems.extend((cells.number, p) for p in cells.problems)
    if batch is not None:
        yield _batch_unit(batch)


def _batch_values(cells: Cells) -> dict[str, Any]:
    departments = cells.text("departments")
    return {
        "region": cells.region("region"),
        "kind": cells.choice("kind"),
        "startedAt": cells.moment("startedAt"),
        "personnel": cells.integer("personnel"),
        "departments": tuple(d.strip() for d in _DEPARTMENT_SPLIT.split(departments) if d.strip())
        if departments is not None
        else None,
        "rectifyWithinDays": cells.integer("rectifyWithinDays"),
    }


def _add_visit(batch: _Batch, cells: Cells) -> None:
    institution = cells.code("institutionId")
    code = cells.code("creditCode")
    venue = cells.text("venue")
    finding_type = cells.choice("findingType")
    description = cells.text("findingDescription")
    if cells.has("findingType") and description is None:
        cells.problem("findingDescription", "问题描述 is needed with 问题类型")
    if description is not None and not cells.has("findingType"):
        cells.problem("findingType", "问题类型 is needed with 问题描述")
    if institution is not None:
        column, place = "institutionId", ("institution", institution)
    elif code is not None:
        column, place = "creditCode", ("institution", institution_id(code))
    elif venue is not None:
        column, place = "venue", ("venue", venue)
    else:
        column, place = "", ("", "")
    if column and (institution is not None) + (code is not None) + (venue is not None) > 1:
        cells.problem(column, "name one place: 机构ID, 统一社会信用代码 or 检查场所")
    if not column and batch.visits:
        visit = batch.visits[-1]  # a row with only a finding: one more of the visit above
    elif batch.visits and batch.visits[-1].place == place:
        visit = batch.visits[-1]
    else:
        if not column:
            cells.problem("institutionId", "name the place: 机构ID, 统一社会信用代码 or 检查场所")
        visit = _Visit(cells.number, column, place)
        batch.visits.append(visit)
    if finding_type is not None and description is not None:
        visit.findings.append((cells.number, FindingInput(finding_type, description)))


def _batch_unit(batch: _Batch) -> Unit:
    rows = tuple(batch.rows)
    first = batch.first_row
    for key in ("region", "kind", "startedAt", "personnel"):
        if batch.values.get(key) is None and not any(p.field == key for _, p in batch.problems):
            column = next(c for c in INSPECTION_COLUMNS if c.key == key)
            batch.problems.append((first, BadInput(f"{column.header} is required", field=key)))
    if batch.problems:
        return Unit(rows=rows, problems=sorted(batch.problems, key=lambda p: p[0]))
    values = batch.values
    region, number = values["region"], batch.number
    command = RecordInspection(
        id=inspection_id(region, number),
        region=region,
        kind=values["kind"],
        started_at=values["startedAt"],
        personnel=values["personnel"],
        departments=list(values["departments"] or ()),
        rectify_within_days=values["rectifyWithinDays"],
        visits=[
            VisitInput(
                institution_id=v.place[1] if v.place[0] == "institution" else None,
                venue=v.place[1] if v.place[0] == "venue" else None,
                findings=[f for _, f in v.findings],
            )
            for v in batch.visits
        ],
    )
    visits = list(batch.visits)

    def locate(field: str | None, step: int) -> tuple[int, str]:
        matched = _VISIT_FIELD.match(field or "")
        if matched is None:
            column = _column_of(
                field,
                {c.key for c in INSPECTION_COLUMNS},
                {"id": "batchNo", "occurred_at": "startedAt"},
            )
            if field and field.startswith("departments"):
                column = "departments"
            return first, column
        visit = visits[int(matched.group(1))] if int(matched.group(1)) < len(visits) else None
        if visit is None:
            return first, ""
        if matched.group(2) is not None:
            index = int(matched.group(2))
            row = visit.findings[index][0] if index < len(visit.findings) else visit.row
            tail = matched.group(3)
            return row, "findingType" if tail == "type" else "findingDescription"
        return visit.row, visit.place_column or "institutionId"

    return Unit(rows=rows, commands=[command], locate=locate)


INSPECTIONS = Kind(
    "inspections",
    "检查",
    INSPECTION_COLUMNS,
    inspection_units,
    groups=(_PLACE,),
    layout="One row per visit. Consecutive rows with the same 批次编号 are one batch "
    "(recordInspection): its columns 区县代码 … 整改期限 are the same on each of its rows "
    "(or left empty after the first). A row names the place visited (机构ID, "
    "统一社会信用代码 or 检查场所) and at most one finding; further findings at the same "
    "place go on the next rows (same place, or the place left empty). A batch is one "
    "commit: if one of its rows is wrong, none of it is recorded. Every visit with a "
    "finding opens a rectification order.",
)

# --- orders ----------------------------------------------------------------------------

_INSTITUTION = ("institutionId", "creditCode")
ORDER_COLUMNS = (
    Column(
        "institutionId",
        "机构ID",
        "The institution's id. Give this or its 统一社会信用代码.",
        example="demo-120101-010",
    ),
    Column(
        "creditCode",
        "统一社会信用代码",
        "The institution by its code (imported institutions have the id uscc-<code>).",
        aliases=("信用代码",),
        example="52120101MA00000010",
    ),
    Column(
        "orderNo",
        "订单编号",
        "The institution's own order number; with it the order's "
        "id is stable even if a row is corrected later. Without it, a row that is "
        "identical to another is the same order.",
        aliases=("订单号",),
        example="TJ-0001",
    ),
    Column(
        "payerRef",
        "付款人标识",
        "A pseudonymous reference of the payer; never a name or "
        "ID-card number (stored only as a keyed hash).",
        True,
        ("付款人",),
        free_text=True,
        example="parent-7f3a",
    ),
    Column("lessons", "课时数", "Lessons paid for (at most 60).", True, ("课时",), example="20"),
    Column(
        "pricePerLesson",
        "课时单价",
        "Yuan per lesson, at most two decimals; lessons × price at most 5,000.00.",
        True,
        ("单价",),
        example="123.45",
    ),
    Column(
        "courseStart",
        "课程开始日期",
        "First day of the course.",
        True,
        ("开课日期", "课程开始"),
        example="2023-03-01",
    ),
    Column(
        "courseEnd",
        "课程结束日期",
        "Last day: at most 3 months after the start.",
        True,
        ("结课日期", "课程结束"),
        example="2023-05-31",
    ),
    Column(
        "paidAt",
        "缴费时间",
        "When it was paid (2023-03-01 10:00).",
        True,
        ("缴费日期", "支付时间"),
        example="2023-03-01 10:00",
    ),
)


def order_units(rows: Iterator[Cells]) -> Iterator[Unit]:
    keys = {c.key for c in ORDER_COLUMNS}
    for cells in rows:
        given_id = cells.code("institutionId")
        code = cells.code("creditCode")
        number = cells.code("orderNo")
        payer = cells.text("payerRef", required=True)
        lessons = cells.integer("lessons", required=True)
        price = cells.decimal("pricePerLesson", required=True)
        start = cells.day("courseStart", required=True)
        end = cells.day("courseEnd", required=True)
        paid = cells.moment("paidAt", required=True)
        if given_id is None and code is None:
            cells.problem("institutionId", "name the institution: 机构ID or 统一社会信用代码")
        elif given_id is not None and code is not None and given_id != institution_id(code):
            cells.problem("creditCode", "机构ID and 统一社会信用代码 name different institutions")
        unit = Unit(rows=(cells.number,))
        if cells.problems:
            unit.problems = [(cells.number, p) for p in cells.problems]
            yield unit
            continue
        assert payer is not None and lessons is not None and price is not None
        assert start is not None and end is not None and paid is not None
        institution = given_id if given_id is not None else institution_id(code or "")
        content = (
            [institution, number]
            if number is not None
            else [institution, payer, lessons, str(price), str(start), str(end), paid.isoformat()]
        )
        unit.commands.append(
            RecordPrepaidOrder(
                id=f"ord-{_digest(json.dumps(content, ensure_ascii=False))[:24]}",
                institution_id=institution,
                payer_ref=payer,
                lessons=lessons,
                price_per_lesson=price,
                course_start=start,
                course_end=end,
                paid_at=paid,
            )
        )
        place = "institutionId" if given_id is not None else "creditCode"
        overrides = {
            "institution_id": place,
            "region": place,
            "id": "orderNo" if number is not None else "",
            "amount": "pricePerLesson",
        }
        row = cells.number

        def locate(
            field: str | None, step: int, row: int = row, overrides: dict[str, str] = overrides
        ) -> tuple[int, str]:
            return row, _column_of(field, keys, overrides)

        unit.locate = locate
        yield unit


ORDERS = Kind(
    "orders",
    "预收费订单",
    ORDER_COLUMNS,
    order_units,
    groups=(_INSTITUTION,),
    layout="One row per prepaid order (recordPrepaidOrder). The institution must be "
    "APPROVED and already have its supervised account (openSupervisionAccount: opened "
    "through GraphQL or the finance API, not by this import); an order for one without "
    "is refused (CONFLICT on the institution's column).",
)

KINDS: dict[str, Kind] = {k.name: k for k in (INSTITUTIONS, INSPECTIONS, ORDERS)}
