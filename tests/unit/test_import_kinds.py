"""The sheet layouts: headers, enum labels, templates, identities, and jobs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from services.common.application import CommandContext, Outcome
from services.common.auth import SYSTEM, Principal, Role
from services.common.commands import Command
from services.common.errors import Conflict
from services.importing import KINDS, ImportJobs, JobStatus, Refused, institution_id, write_template
from services.importing.columns import resolve_header
from services.importing.kinds import INSTITUTIONS, canonical, idempotency_key
from services.inspections.module import FindingType, InspectionKind
from services.registry.module import Category, NonSubjectKind, RegisterInstitution, TeachingMode
from tests.factories import valid_credit_code


def test_every_enum_value_has_a_chinese_label() -> None:
    enums = {
        ("institutions", "category"): Category,
        ("institutions", "nonSubjectKind"): NonSubjectKind,
        ("institutions", "mode"): TeachingMode,
        ("inspections", "kind"): InspectionKind,
        ("inspections", "findingType"): FindingType,
    }
    for (kind, key), enum in enums.items():
        column = next(c for c in KINDS[kind].columns if c.key == key)
        assert {v for _, v in column.choices} == {m.value for m in enum}, (kind, key)


def test_headers_match_after_normalising() -> None:
    columns = INSTITUTIONS.columns
    header = [
        " 机构名称 ",
        "ｃｒｅｄｉｔＣｏｄｅ",
        "所属区县",
        "类别（category）",
        "办学形式*",
        "备注",
        None,
    ]
    index, written, ignored = resolve_header(header, columns)
    assert index == {"name": 0, "creditCode": 1, "region": 2, "category": 3, "mode": 4}
    assert written["creditCode"] == "ｃｒｅｄｉｔＣｏｄｅ"
    assert ignored == ["备注"]
    with pytest.raises(Refused, match=r"lacks the column\(s\) 办学形式 \(mode\)"):
        resolve_header(header[:4], columns, file="x.csv")
    with pytest.raises(Refused, match="columns '机构名称' and 'name' both mean name"):
        resolve_header([*header, "name"], columns)


def test_identity_comes_from_the_data() -> None:
    code = valid_credit_code()
    assert institution_id(code) == f"uscc-{code}"
    assert institution_id(f" {code.lower()} ") == f"uscc-{code}"
    assert institution_id("不是代码").startswith("uscc-x")
    one = RegisterInstitution(
        id="a", name="甲", credit_code=code, region="640402", category="SUBJECT", mode="OFFLINE"
    )
    same = RegisterInstitution(
        id="a", name="甲", credit_code=code, region="640402", category="SUBJECT", mode="OFFLINE"
    )
    other = RegisterInstitution(
        id="a", name="乙", credit_code=code, region="640402", category="SUBJECT", mode="OFFLINE"
    )
    assert idempotency_key("institutions", one) == idempotency_key("institutions", same)
    assert idempotency_key("institutions", one) != idempotency_key("institutions", other)
    assert len(idempotency_key("institutions", one)) <= 200
    assert '"name": "甲"' in canonical(one)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_templates_have_headers_notes_and_dropdowns(tmp_path: Path, kind: str) -> None:
    path = write_template(kind, tmp_path / f"{kind}.xlsx")
    book = load_workbook(path)
    data, notes = book.worksheets
    spec = KINDS[kind]
    assert data.title == spec.title
    assert notes.title == "说明"
    assert [c.value for c in data[1]] == [c.header for c in spec.columns]
    assert data.max_row == 1  # no example row that would be imported
    lists = {str(v.sqref).split(":")[0]: v.formula1 for v in data.data_validations.dataValidation}
    for position, column in enumerate(spec.columns):
        letter = chr(ord("A") + position)
        if column.choices:
            assert lists[f"{letter}2"] == '"' + ",".join(column.labels) + '"'
    explained = {row[0].value: row[4].value for row in notes.iter_rows(min_row=2) if row[0].value}
    assert set(explained) == {c.header for c in spec.columns}
    # A filled-in template reads back as it was meant.
    assert resolve_header([c.value for c in data[1]], spec.columns, spec.groups)[2] == []


def test_institution_template_dropdowns(tmp_path: Path) -> None:
    book = load_workbook(write_template("institutions", tmp_path / "t.xlsx"))
    formulas = sorted(v.formula1 for v in book.worksheets[0].data_validations.dataValidation)
    assert formulas == sorted(
        ['"学科类,非学科类"', '"体育,艺术,科技,综合实践,其他"', '"线下,线上"', '"是,否"']
    )


class Slow:
    """A ``send`` that takes a moment, and refuses one institution."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def __call__(self, command: Command, ctx: CommandContext) -> Outcome[Any]:
        await self.gate.wait()
        if getattr(command, "name", "") == "机构2":
            raise Conflict("already held", field="credit_code")
        return Outcome(aggregate=None, events=[ctx])  # type: ignore[list-item]


async def test_jobs_run_in_the_background_and_report(tmp_path: Path) -> None:
    header = "机构名称,统一社会信用代码,区县代码,类别,非学科类别,办学形式\n"
    rows = "".join(
        f"机构{n},{valid_credit_code('640402', f'MA{n:07d}')},640402,非学科类,艺术,线下\n"
        for n in range(1, 4)
    )
    path = tmp_path / "jobs.csv"
    path.write_text(header + rows, encoding="utf-8")
    send = Slow()
    jobs = ImportJobs(send)
    alice = Principal("alice", Role.IMPORTER)
    bob = Principal("bob", Role.IMPORTER)

    job = jobs.start("institutions", path, alice)
    await asyncio.sleep(0.01)
    assert job.status is JobStatus.RUNNING
    assert jobs.get(job.id, bob) is None
    assert jobs.get(job.id, SYSTEM) is job  # a national admin sees every job
    send.gate.set()
    done = await jobs.wait(job.id)

    assert done is job and job.status is JobStatus.DONE
    snapshot = job.snapshot()
    assert snapshot["counts"] == {"applied": 2, "unchanged": 0, "failed": 1, "total": 3}
    assert snapshot["progress"] == {"done": 3, "expected": 3}
    assert snapshot["errors"] == [
        {"row": 3, "column": "统一社会信用代码", "message": "already held", "code": "CONFLICT"}
    ]
    assert snapshot["errorFile"] == "jobs.errors.csv"
    assert snapshot["finishedAt"] is not None
    assert [j.id for j in jobs.list(alice)] == [job.id]
    assert jobs.list(bob) == []

    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    refused = jobs.start("institutions", empty, alice)
    await jobs.wait(refused.id)
    assert refused.status is JobStatus.FAILED
    assert refused.message == "empty.csv is empty"
    with pytest.raises(Refused, match="unknown kind 'teachers'"):
        jobs.start("teachers", path, alice)


async def test_closing_stops_running_jobs(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(
        "机构名称,统一社会信用代码,区县代码,类别,非学科类别,办学形式\n甲,"
        f"{valid_credit_code()},640402,学科类,,线下\n",
        encoding="utf-8",
    )
    jobs = ImportJobs(Slow())
    job = jobs.start("institutions", path, SYSTEM)
    await asyncio.sleep(0.01)
    await jobs.close()
    assert job.status is JobStatus.FAILED
    assert job.message == "stopped: the server shut down"
