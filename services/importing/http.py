"""Spreadsheet imports over HTTP: upload, then watch the job.

* ``POST /api/import/{kind}`` (multipart, the file in the ``file`` field; the ``importer``
  or ``admin`` role) saves the upload beside the server's data and starts a job; 202 with
  the job, and ``Location`` naming where to watch it.
* ``GET /api/import/jobs/{id}`` the job: status, counts, progress, the first error rows.
* ``GET /api/import/jobs/{id}/errors`` the whole error file (CSV, UTF-8 with BOM).

A job is visible to whoever started it and to national admins (``ImportJobs``). The upload
is bounded by its declared size (``Content-Length`` is required) before anything is read.
"""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.datastructures import UploadFile

from services.common.auth import Principal, Role, TokenVerifier
from services.common.errors import BadInput, Forbidden, NotFound, ShuangjianError
from services.common.http import error_response
from services.importing.jobs import ImportJobs

KINDS = ("institutions", "inspections", "orders")
SUFFIXES = (".xlsx", ".csv")
IMPORT_PREFIX = "/api/import/"
CHUNK = 1024 * 1024


def import_router(
    jobs: ImportJobs, verifier: TokenVerifier, uploads: Path, max_bytes: int
) -> APIRouter:
    router = APIRouter()

    def importer(request: Request) -> Principal:
        principal = verifier.verify(request.headers.get("authorization"))
        if principal.role not in (Role.IMPORTER, Role.ADMIN):
            raise Forbidden(f"{principal.subject} may not import: the importer role may")
        return principal

    @router.post(IMPORT_PREFIX + "{kind}", include_in_schema=False)
    async def upload(kind: str, request: Request) -> Response:
        try:
            principal = importer(request)
            if kind not in KINDS:
                raise NotFound(f"no import of {kind!r}: {', '.join(KINDS)}", field="kind")
            declared = request.headers.get("content-length")
            if declared is None or not declared.isdigit():
                raise BadInput("send the upload with a Content-Length", field="file")
            if int(declared) > max_bytes:
                raise BadInput(f"the upload is over {max_bytes} bytes", field="file")
            form = await request.form(max_files=1, max_fields=5)
            file = form.get("file")
            if not isinstance(file, UploadFile) or not file.filename:
                raise BadInput("send the spreadsheet in the multipart field 'file'", field="file")
            suffix = Path(file.filename).suffix.lower()
            if suffix not in SUFFIXES:
                raise BadInput(
                    f"an import is {' or '.join(SUFFIXES)}, not {suffix!r}", field="file"
                )
            folder = uploads / uuid4().hex
            folder.mkdir(parents=True)
            path = folder / f"{kind}{suffix}"  # never the caller's file name on disk
            size = 0
            with path.open("wb") as out:
                while chunk := await file.read(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise BadInput(f"the upload is over {max_bytes} bytes", field="file")
                    out.write(chunk)
        except ShuangjianError as exc:
            return error_response(exc)
        except Exception as exc:  # an unreadable multipart body
            return error_response(BadInput(f"not a multipart upload: {exc}", field="file"))
        job = jobs.start(kind, path, principal)
        return JSONResponse(
            job.snapshot(),
            status_code=202,
            headers={"Location": f"{IMPORT_PREFIX}jobs/{job.id}"},
        )

    @router.get(IMPORT_PREFIX + "jobs/{job_id}", include_in_schema=False)
    async def status(job_id: str, request: Request) -> Response:
        try:
            principal = verifier.verify(request.headers.get("authorization"))
            job = jobs.get(job_id, principal)
            if job is None:
                raise NotFound(f"no import job {job_id!r} of yours", field="id")
        except ShuangjianError as exc:
            return error_response(exc)
        return JSONResponse(job.snapshot())

    @router.get(IMPORT_PREFIX + "jobs/{job_id}/errors", include_in_schema=False)
    async def errors(job_id: str, request: Request) -> Response:
        try:
            principal = verifier.verify(request.headers.get("authorization"))
            job = jobs.get(job_id, principal)
            if job is None or job.error_file is None or not job.error_file.exists():
                raise NotFound(f"no error file for import job {job_id!r}", field="id")
        except ShuangjianError as exc:
            return error_response(exc)
        return FileResponse(job.error_file, media_type="text/csv; charset=utf-8")

    return router
