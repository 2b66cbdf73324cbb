"""``importJob(id)``: a spreadsheet import's progress and errors, as
``GET /api/import/jobs/{id}`` answers them (``services/importing``)."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.types import Info

from services.common.errors import NotFound, Unavailable
from services.gateway.context import GatewayContext
from services.gateway.kit import Slice, ctx
from services.gateway.scalars import DateTime
from services.importing.jobs import ImportJob as Job


@strawberry.type(description="One row of an import that was not applied.")
class ImportError:
    row: int = strawberry.field(description="The row's number in the sheet (the header is 1).")
    column: str | None
    message: str
    code: str


@strawberry.type(description="A spreadsheet import started with POST /api/import/{kind}.")
class ImportJob:
    id: strawberry.ID
    kind: str
    status: str = strawberry.field(description="queued, running, done or failed.")
    applied: int
    unchanged: int = strawberry.field(description="Rows already imported: nothing changed.")
    failed: int
    total: int
    done: int = strawberry.field(description="Rows read so far.")
    message: str | None = strawberry.field(description="Why a refused file failed.")
    errors: list[ImportError] = strawberry.field(description="The first error rows.")
    created_at: DateTime
    finished_at: DateTime | None

    @classmethod
    def of(cls, job: Job) -> ImportJob:
        view = job.snapshot()
        counts = view["counts"]
        return cls(
            id=strawberry.ID(job.id),
            kind=job.kind,
            status=view["status"],
            applied=counts["applied"],
            unchanged=counts["unchanged"],
            failed=counts["failed"],
            total=counts["total"],
            done=view["progress"]["done"],
            message=view["message"],
            errors=[
                ImportError(
                    row=e["row"], column=e.get("column"), message=e["message"], code=e["code"]
                )
                for e in view["errors"]
            ],
            created_at=DateTime(datetime.fromisoformat(view["createdAt"])),
            finished_at=DateTime(datetime.fromisoformat(f)) if (f := view["finishedAt"]) else None,
        )


@strawberry.type
class Query:
    @strawberry.field(description="A spreadsheet import of yours (admins: anyone's).")
    def import_job(self, info: Info[GatewayContext, None], id: strawberry.ID) -> ImportJob:
        context = ctx(info)
        if context.imports is None:
            raise Unavailable("this process runs no imports (the gateway or `up` does)")
        job = context.imports.get(str(id), context.principal)
        if job is None:
            raise NotFound(f"no import job {id!r} of yours", field="id")
        return ImportJob.of(job)


SLICE = Slice("imports", query=Query, types=(ImportJob,))
