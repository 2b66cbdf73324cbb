"""Imports as jobs, for the HTTP and GraphQL side: start one, watch it, read its result.

An upload is saved to a file by the HTTP layer, which then calls ``ImportJobs.start``
with the file, the kind and the caller's principal; the import runs as an asyncio task in
the server's event loop, ``max_running`` at a time (the others wait, ``QUEUED``). A
job's ``snapshot()`` is a JSON-ready dict of everything a status endpoint shows: status,
counts, progress, the first error rows, times, the error file's name.

The registry is in memory, for one process: a restart forgets jobs (the rows a job
applied stay applied, and importing the file again is safe). Jobs are kept until
``keep`` newer ones have finished. Its bookkeeping takes a lock so that a thread (a
sync HTTP handler, a test) may read it while the loop runs jobs.
"""

from __future__ import annotations

import asyncio
import enum
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from services.common.auth import Principal, Role
from services.common.timeutil import utc_now
from services.importing.kinds import KINDS
from services.importing.runner import Counts, RowError, Send, import_file
from services.importing.safety import Refused

log = structlog.get_logger(__name__)


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    """The file was refused (``message`` says why), or the job broke."""


@dataclass
class ImportJob:
    id: str
    kind: str
    path: Path
    owner: str
    """The principal's subject: only it (and national admins) see the job."""
    status: JobStatus = JobStatus.QUEUED
    counts: Counts = field(default_factory=Counts)
    done: int = 0
    expected: int | None = None
    errors: list[RowError] = field(default_factory=list)
    error_file: Path | None = None
    message: str | None = None
    created_at: datetime = field(default_factory=utc_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.DONE, JobStatus.FAILED)

    def snapshot(self) -> dict[str, Any]:
        """What a status endpoint answers (JSON-ready)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status.value,
            "counts": self.counts.as_dict(),
            "progress": {"done": self.done, "expected": self.expected},
            "errors": [e.as_dict() for e in self.errors],
            "errorFile": self.error_file.name if self.error_file else None,
            "message": self.message,
            "createdAt": self.created_at.isoformat(),
            "startedAt": self.started_at.isoformat() if self.started_at else None,
            "finishedAt": self.finished_at.isoformat() if self.finished_at else None,
        }


class ImportJobs:
    """The jobs of this process; ``send`` is how every job's commands reach the platform."""

    def __init__(
        self, send: Send, *, max_running: int = 2, keep: int = 100, keep_errors: int = 100
    ) -> None:
        self.send = send
        self.keep = keep
        self.keep_errors = keep_errors
        self._slots = asyncio.Semaphore(max_running)
        self._jobs: OrderedDict[str, ImportJob] = OrderedDict()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._lock = threading.Lock()

    def start(self, kind: str, path: Path, principal: Principal) -> ImportJob:
        """Queue an import of ``path`` as ``principal`` (in the running event loop)."""
        if kind not in KINDS:
            raise Refused(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
        job = ImportJob(uuid.uuid4().hex, kind, path, principal.subject)
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
        task = asyncio.get_running_loop().create_task(self._run(job, principal))
        self._tasks[job.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.id, None))
        return job

    def get(self, job_id: str, principal: Principal | None = None) -> ImportJob | None:
        """The job, when ``principal`` (if given) may see it."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or (principal is not None and not _sees(principal, job)):
            return None
        return job

    def list(self, principal: Principal | None = None) -> list[ImportJob]:
        """Newest first; only those ``principal`` (if given) may see."""
        with self._lock:
            jobs = list(reversed(self._jobs.values()))
        return [j for j in jobs if principal is None or _sees(principal, j)]

    async def wait(self, job_id: str) -> ImportJob | None:
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.shield(task)
        return self.get(job_id)

    async def close(self) -> None:
        """Stop the running jobs (server shutdown): they end ``FAILED``, saying so."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, job: ImportJob, principal: Principal) -> None:
        try:
            async with self._slots:
                self._update(job, status=JobStatus.RUNNING, started_at=utc_now())

                def progress(done: int, expected: int | None) -> None:
                    self._update(job, done=done, expected=expected)

                result = await import_file(
                    job.kind,
                    job.path,
                    self.send,
                    principal,
                    on_progress=progress,
                    keep_errors=self.keep_errors,
                    counts=job.counts,
                )
            self._update(
                job,
                status=JobStatus.DONE,
                errors=result.errors,
                error_file=result.error_file,
            )
        except Refused as refused:
            self._update(job, status=JobStatus.FAILED, message=refused.message)
        except asyncio.CancelledError:
            self._update(job, status=JobStatus.FAILED, message="stopped: the server shut down")
            raise
        except Exception:
            log.exception("import.job_failed", job=job.id, kind=job.kind)
            self._update(job, status=JobStatus.FAILED, message="internal error (logged)")
        finally:
            with self._lock:
                if job.finished and job.finished_at is None:
                    job.finished_at = utc_now()

    def _update(self, job: ImportJob, **changes: Any) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(job, name, value)

    def _forget_old(self) -> None:
        finished = [j.id for j in self._jobs.values() if j.finished]
        for job_id in finished[: max(len(finished) - self.keep, 0)]:
            del self._jobs[job_id]


def _sees(principal: Principal, job: ImportJob) -> bool:
    return principal.subject == job.owner or (principal.national and principal.role is Role.ADMIN)
