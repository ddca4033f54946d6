"""Progress rows of long jobs (``JobRecord``, keyed by job id) that pages poll.

Shared by the jobs that keep one (``workflow.export_jobs``, ``workflow.batch_documents``). A job commits its progress as it goes, so a
failure is written in a transaction of its own, after the job's work is rolled back.
"""

from __future__ import annotations

import traceback

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import JobRecord


def job_record(session: Session, job_id: str) -> JobRecord | None:
    return session.scalar(select(JobRecord).where(JobRecord.job_id == job_id))


def record_failure(session: Session, job_id: str, exc: BaseException) -> None:
    """Roll back the job's work and keep the failure (its last line) on the row."""
    session.rollback()
    record = job_record(session, job_id)
    if record is not None:
        record.status = "failed"
        record.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-2000:]
        session.commit()
