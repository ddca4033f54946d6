"""Large payment files (拨付清单) are written by a job on the ``exports`` queue.

A batch of more than ``exports.SYNC_MAX_LINES`` lines is not exported inside the web
request: ``start_export`` records a ``JobRecord`` (the progress row the export page polls)
and an outbox row in the request's transaction, so the job leaves only after the commit.
``write_export`` (registered as the ``export_batch`` job in ``workflow.jobs``) writes the
file with ``exports.build_file``, which checks the lines against the lock hash in the
same pass, and keeps it in the storage under a fresh key; the page then offers it.

Job ids are ``batch_export-<batch id>-<format>-<n>``. The underscore keeps them out of
the generic ``/jobs/<job_id>`` pages of the decision documents (their ids are lowercase
letters, digits and dashes only), which let the job's owner and administrators download:
a payment file is for finance staff only, through the finance routes.

The job takes ids, reloads the batch, re-checks its state and is safe to run twice: a job
whose file is stored returns it; one that failed because the batch changed stays failed.
"""

from __future__ import annotations

import re
import tempfile
import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import outbox
from .audit import record_event
from .errors import PermissionDenied
from .exports import FORMATS, BatchChanged, build_file
from .job_records import job_record, record_failure
from .jobs import JobEnv
from .models import DisbursementBatch, JobRecord, User
from .operations.finance import BatchStateError
from .permissions import can_manage_finance

KIND = "batch_export"
ACTIVE = ("queued", "running")
EXPORTABLE = ("locked", "settled")
JOB_ID = re.compile(r"^batch_export-(\d{1,12})-(csv|xlsx)-(\d{1,9})$")
# JobRecord.error for a batch whose lines no longer match the lock hash (the page says
# so in the user's language); anything else is an unexpected failure.
CHANGED = "batch_changed"
NOT_EXPORTABLE = "not_exportable"
PROGRESS_EVERY = 0.5  # seconds between progress commits


def _prefix(batch_id: int, fmt: str) -> str:
    return f"{KIND}-{batch_id}-{fmt}-"


def must_be_exportable(batch: DisbursementBatch) -> None:
    if batch.status not in EXPORTABLE:
        raise BatchStateError("只能导出已锁定的批次。", "Only a locked batch can be exported.")


def latest_export(session: Session, batch_id: int, fmt: str) -> JobRecord | None:
    """The batch's newest export job in ``fmt``, if any."""
    return session.scalar(
        select(JobRecord)
        .where(JobRecord.job_id.like(_prefix(batch_id, fmt) + "%"))
        .order_by(JobRecord.id.desc())
        .limit(1)
    )


def export_job(session: Session, batch_id: int, fmt: str, job_id: str) -> JobRecord | None:
    """The job ``job_id`` if it is an export of this batch in this format."""
    match = JOB_ID.match(job_id or "")
    if not match or int(match.group(1)) != batch_id or match.group(2) != fmt:
        return None
    return session.scalar(select(JobRecord).where(JobRecord.job_id == job_id))


def start_export(
    session: Session, user: User, batch: DisbursementBatch, fmt: str, storage: Any
) -> JobRecord:
    """Ask for the batch's payment file in ``fmt`` to be written by a job. A job that is
    still running, or has its file stored, is returned instead of starting another: a
    locked batch's file cannot change (if its lines did, the new file would be refused)."""
    if not can_manage_finance(user):
        raise PermissionDenied(
            "只有财务人员可以导出拨付清单。", "Only finance staff can export payment files."
        )
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}")
    must_be_exportable(batch)
    latest = latest_export(session, batch.id, fmt)
    if latest is not None and (
        latest.status in ACTIVE
        or (latest.status == "done" and _stored(storage, latest.result_storage_key))
    ):
        return latest
    # Deterministic ids: two requests racing collide on the unique job id (one gets 409).
    seq = (
        session.scalar(
            select(func.count(JobRecord.id)).where(
                JobRecord.job_id.like(_prefix(batch.id, fmt) + "%")
            )
        )
        or 0
    ) + 1
    job_id = f"{_prefix(batch.id, fmt)}{seq}"
    record = JobRecord(
        job_id=job_id, kind=KIND, owner_id=user.id, total=batch.line_count, status="queued"
    )
    session.add(record)
    outbox.enqueue(
        session,
        "export_batch",
        {"batch_id": batch.id, "fmt": fmt, "job_id": job_id},
        queue="exports",
        job_id=job_id,
        fresh=True,
    )
    record_event(
        session,
        action="batch.export_start",
        entity_type="batch",
        entity_id=batch.id,
        actor_id=user.id,
        actor_role="finance",
        data={"number": batch.number, "format": fmt, "job_id": job_id},
    )
    session.flush()
    return record


def _stored(storage: Any, key: str | None) -> bool:
    return bool(key) and storage.exists(key)


def write_export(env: JobEnv, batch_id: int, fmt: str, job_id: str) -> str | None:
    """The job: write the file, store it, return its storage key (None if refused)."""
    session = env.session
    record = job_record(session, job_id)
    if record is None:
        return None
    if record.status == "done" and _stored(env.storage, record.result_storage_key):
        return record.result_storage_key
    batch = session.get(DisbursementBatch, batch_id)
    if batch is None or batch.status not in EXPORTABLE or fmt not in FORMATS:
        record.status, record.error = "failed", NOT_EXPORTABLE
        session.commit()
        return None
    record.status, record.error = "running", None
    record.total, record.done = batch.line_count, 0
    session.commit()

    last = [time.monotonic()]

    def progress(lines: int) -> None:
        # A job is not a request: the progress row is committed as it goes (at most every
        # PROGRESS_EVERY seconds), so the page polling it sees it move. The export reads by
        # short queries, none is left open across these commits.
        if time.monotonic() - last[0] >= PROGRESS_EVERY:
            job_record(session, job_id).done = lines  # type: ignore[union-attr]
            session.commit()
            last[0] = time.monotonic()

    try:
        with tempfile.TemporaryFile(prefix="shenbao-export-") as handle:
            built = build_file(session, batch, fmt, handle, progress)
            handle.seek(0)
            key, _digest = env.storage.put(handle.read(), prefix="exports")
    except BatchChanged:
        session.rollback()
        _refused(session, job_id, batch_id, fmt)
        return None
    except Exception as exc:
        record_failure(session, job_id, exc)
        raise
    record = job_record(session, job_id)
    record.status, record.done, record.result_storage_key = "done", built.line_count, key
    session.commit()
    return key


def _refused(session: Session, job_id: str, batch_id: int, fmt: str) -> None:
    """The lines changed after locking: no file, and the refusal is in the audit trail."""
    record = job_record(session, job_id)
    if record is None:
        return
    record.status, record.error = "failed", CHANGED
    record_event(
        session,
        action="batch.export_refused",
        entity_type="batch",
        entity_id=batch_id,
        actor_id=record.owner_id,
        actor_role="finance",
        data={"format": fmt, "job_id": job_id},
    )
    session.commit()
