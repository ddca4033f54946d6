"""Batch work on the decision letters (决定书) of one call: render every letter whose PDF
is missing, and pack all of them into a zip with a manifest for the archive (归档).

Both are ONE job each, started by a staff member: ``start_render_batch`` / ``start_zip``
write a ``JobRecord`` (the progress row the UI polls) and an outbox row in the request's
transaction, so the job only leaves after the commit. The job functions below are
registered in ``workflow.jobs.JOBS`` when this module is imported (``webapp.views.documents``
imports it, and the app factory imports every view module, so web processes and RQ
workers alike have them).

Jobs take ids, commit after every item (a job is not a request; the progress row must be
visible while it runs) and are safe to run twice: a letter that already has its PDF is
never rendered again (``render_decision`` refuses), a finished zip is not rebuilt, and a
retried render batch resumes where the last attempt stopped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from . import outbox
from .audit import record_event
from .decisions import render_decision
from .domain import format_yuan
from .errors import WorkflowError
from .job_records import job_record, record_failure
from .jobs import JobEnv, job
from .models import Application, Call, Decision, JobRecord, User

RENDER_KIND = "render_decisions"
ZIP_KIND = "zip_decisions"
# kind -> (job id prefix, job function name)
KINDS = {
    RENDER_KIND: ("render-call", "render_call_decisions"),
    ZIP_KIND: ("zip-call", "zip_call_decisions"),
}
ACTIVE = ("queued", "running")
JOB_ID = re.compile(r"^(render-call|zip-call)-(\d{1,12})-(\d{1,9})$")
LOCAL = ZoneInfo("Asia/Shanghai")
# Roles that may run batch work on a call's letters, city-wide (not limited to a district).
DOCUMENT_ROLES = {"city_officer", "approver", "admin"}
MANIFEST_COLUMNS = (
    "file",
    "doc_number",
    "kind",
    "application_number",
    "applicant",
    "credit_code",
    "amount_yuan",
    "sha256",
)


class NothingToDo(WorkflowError):
    status = 409


class StoredFileCorrupt(RuntimeError):
    """A stored PDF no longer matches the sha256 recorded when it was rendered."""


# ---------------------------------------------------------------- predicates


def can_manage_documents(user: Any) -> bool:
    """Holds a city-wide grant that lets them manage some call's letters."""
    return isinstance(user, User) and any(
        g.role in DOCUMENT_ROLES and not g.district for g in user.grants
    )


def can_manage_call_documents(user: Any, call: Call) -> bool:
    """City-wide officers, approvers and admins of the call's program: the letters of a
    call concern every district."""
    return isinstance(user, User) and any(
        g.role in DOCUMENT_ROLES and g.program_code in (None, call.program_code) and not g.district
        for g in user.grants
    )


def can_follow_job(user: Any, record: JobRecord) -> bool:
    """The job's owner and admins see its progress."""
    if not isinstance(user, User):
        return False
    return record.owner_id == user.id or any(g.role == "admin" for g in user.grants)


def call_id_of(job_id: str) -> int | None:
    match = JOB_ID.match(job_id)
    return int(match.group(2)) if match else None


# ---------------------------------------------------------------- queries


def call_decisions(session: Session, call_id: int) -> list[Decision]:
    """Issued decisions of a call, in document-number order."""
    return list(
        session.scalars(
            select(Decision)
            .join(Application, Decision.application_id == Application.id)
            .where(Application.call_id == call_id, Decision.status == "issued")
            .order_by(Decision.doc_prefix, Decision.doc_year, Decision.doc_seq, Decision.id)
        )
    )


def has_pdf(decision: Decision, storage: Any) -> bool:
    return bool(
        decision.pdf_sha256
        and decision.pdf_storage_key
        and storage.exists(decision.pdf_storage_key)
    )


def missing_pdf_ids(session: Session, storage: Any, call_id: int) -> list[int]:
    return [d.id for d in call_decisions(session, call_id) if not has_pdf(d, storage)]


def call_jobs(session: Session, call_id: int, limit: int = 20) -> list[JobRecord]:
    """The call's batch jobs, newest first."""
    patterns = [JobRecord.job_id.like(f"{prefix}-{call_id}-%") for prefix, _ in KINDS.values()]
    return list(
        session.scalars(
            select(JobRecord).where(or_(*patterns)).order_by(JobRecord.id.desc()).limit(limit)
        )
    )


# ---------------------------------------------------------------- operations


def start_render_batch(session: Session, call: Call, user: User, storage: Any) -> JobRecord:
    """Record one job rendering every decision of ``call`` whose PDF is missing."""
    missing = missing_pdf_ids(session, storage, call.id)
    if not missing:
        raise NothingToDo(
            "本批次所有决定书均已生成，无需重新生成。",
            "Every decision letter of this call already has its PDF; nothing to render.",
        )
    return _start(session, call, user, RENDER_KIND, total=len(missing))


def start_zip(session: Session, call: Call, user: User) -> JobRecord:
    """Record one job packing all decision letters of ``call`` into a zip."""
    count = len(call_decisions(session, call.id))
    if not count:
        raise NothingToDo(
            "本批次还没有决定书，无法打包。",
            "This call has no decision letters yet; there is nothing to pack.",
        )
    return _start(session, call, user, ZIP_KIND, total=count)


def _start(session: Session, call: Call, user: User, kind: str, total: int) -> JobRecord:
    prefix, func_name = KINDS[kind]
    pattern = f"{prefix}-{call.id}-%"
    running = session.scalar(
        select(JobRecord)
        .where(JobRecord.job_id.like(pattern), JobRecord.status.in_(ACTIVE))
        .order_by(JobRecord.id.desc())
    )
    if running is not None:
        return running  # a double click (or a second officer) follows the same job
    # Job ids are deterministic per call and batch number: two requests racing for the
    # same batch number collide on the unique job id and one of them gets a 409.
    batch = (
        session.scalar(select(func.count(JobRecord.id)).where(JobRecord.job_id.like(pattern))) or 0
    ) + 1
    job_id = f"{prefix}-{call.id}-{batch}"
    record = JobRecord(job_id=job_id, kind=kind, owner_id=user.id, total=total, status="queued")
    session.add(record)
    outbox.enqueue(
        session, func_name, {"call_id": call.id, "job_id": job_id}, queue="exports", job_id=job_id
    )
    record_event(
        session,
        action=f"documents.{kind}",
        entity_type="call",
        entity_id=call.id,
        actor_id=user.id,
        data={"job_id": job_id, "total": total},
    )
    session.flush()
    return record


# ---------------------------------------------------------------- jobs


@job("render_call_decisions")
def render_call_decisions(env: JobEnv, call_id: int, job_id: str) -> int:
    """Render each missing PDF of the call, committing after each; returns how many."""
    session = env.session
    record = job_record(session, job_id)
    if record is None or record.status == "done":
        return 0
    ids = missing_pdf_ids(session, env.storage, call_id)
    if record.status == "queued":
        record.total, record.done = len(ids), 0
    else:  # a retry after a failure or a killed worker resumes
        record.done = max(record.total - len(ids), 0)
        record.total = record.done + len(ids)
    record.status, record.error = "running", None
    session.commit()
    base_url = str(env.settings.get("PUBLIC_BASE_URL") or "")
    rendered = 0
    for decision_id in ids:
        try:
            render_decision(session, decision_id, env.storage, base_url)
            record = job_record(session, job_id)
            record.done += 1
            session.commit()
        except Exception as exc:
            record_failure(session, job_id, exc)
            raise
        rendered += 1
    record = job_record(session, job_id)
    record.status = "done"
    session.commit()
    return rendered


@job("zip_call_decisions")
def zip_call_decisions(env: JobEnv, call_id: int, job_id: str) -> str | None:
    """Zip every decision PDF of the call with ``manifest.csv``; store it; return its key.

    A PDF that is missing is rendered first; one whose bytes no longer match the recorded
    sha256 fails the job (an archive must not silently carry a changed letter)."""
    session = env.session
    record = job_record(session, job_id)
    if record is None:
        return None
    if (
        record.status == "done"
        and record.result_storage_key
        and env.storage.exists(record.result_storage_key)
    ):
        return record.result_storage_key
    decisions = call_decisions(session, call_id)
    record.total, record.done, record.status, record.error = len(decisions), 0, "running", None
    session.commit()
    base_url = str(env.settings.get("PUBLIC_BASE_URL") or "")
    try:
        data = _build_zip(session, env, job_id, [d.id for d in decisions], base_url)
        key, _digest = env.storage.put(data, prefix="exports")
    except Exception as exc:
        record_failure(session, job_id, exc)
        raise
    record = job_record(session, job_id)
    record.result_storage_key, record.status = key, "done"
    session.commit()
    return key


def _build_zip(
    session: Session, env: JobEnv, job_id: str, decision_ids: list[int], base_url: str
) -> bytes:
    buffer = io.BytesIO()
    manifest = io.StringIO()
    writer = csv.writer(manifest)
    writer.writerow(MANIFEST_COLUMNS)
    with zipfile.ZipFile(buffer, "w") as archive:
        for decision_id in decision_ids:
            decision = session.get(Decision, decision_id)
            if decision is None:
                continue
            if not has_pdf(decision, env.storage):
                render_decision(session, decision_id, env.storage, base_url)
                session.commit()
                decision = session.get(Decision, decision_id)
            pdf = env.storage.read(decision.pdf_storage_key)
            if hashlib.sha256(pdf).hexdigest() != decision.pdf_sha256:
                raise StoredFileCorrupt(
                    f"{decision.doc_number}: stored PDF does not match its sha256"
                )
            name = pdf_name(decision)
            # The letter's issue time as the entry time: the same letters give the same zip.
            stamp = decision.issued_at.astimezone(LOCAL).timetuple()[:6]
            archive.writestr(zipfile.ZipInfo(name, date_time=stamp), pdf)
            writer.writerow(manifest_row(decision, name))
            record = job_record(session, job_id)
            record.done += 1
            session.commit()
        info = zipfile.ZipInfo("manifest.csv", date_time=(2020, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        archive.writestr(info, "\ufeff" + manifest.getvalue())
    return buffer.getvalue()


def pdf_name(decision: Decision) -> str:
    """File name in the zip: the document number, with anything path-like removed."""
    safe = re.sub(r"[\\/:*?\"<>|\x00-\x1f]", "_", decision.doc_number).strip(". ") or "decision"
    return f"{safe}.pdf"


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not read as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def manifest_row(decision: Decision, name: str) -> list[str]:
    data = decision.render_data or {}
    amount = ""
    if decision.amount_fen is not None:  # plain 12345.60: a number for the spreadsheet
        amount = format_yuan(decision.amount_fen).lstrip("¥").replace(",", "")
    return [
        _cell(name),
        _cell(decision.doc_number),
        decision.kind,
        _cell(data.get("application_number", "")),
        _cell(data.get("addressee", "")),
        _cell(data.get("credit_code", "")),
        amount,
        decision.pdf_sha256 or "",
    ]
