"""Decision letters (决定书) on the web, blueprint ``documents``.

* ``/verify/<code>`` (public, no login): what the QR code on every letter points to. It
  confirms the document number, applicant, program, amount in figures and capitals, the
  issue date, the status and the sha256 of the stored PDF, so anyone holding a copy can
  check it is the letter the bureau issued. An unknown code gets a 404 page that says so.
  Codes are 16 random hex digits (2^64), so guessing one is not a practical attack and no
  rate limit is kept here.
* Staff pages for one call (``/review/calls/<id>/documents``): the call's letters, a batch
  (re)render of every letter whose PDF is missing, and a zip of all letters with a
  manifest for the archive. Both are ONE background job with a progress row
  (``JobRecord``) that ``/jobs/<job_id>`` shows with a progress bar polled by
  ``static/js/jobs.js``.

A stored letter is never regenerated differently: there is no "regenerate" action, and
the render job refuses to touch a decision whose PDF is stored.

Importing this module also imports ``workflow.batch_documents``, which registers the batch
job functions in ``workflow.jobs.JOBS``: the app factory imports every view module, so
the web processes and the RQ workers (``execute_in_worker`` builds the app) have them.
"""

from __future__ import annotations

import re
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    jsonify,
    make_response,
    redirect,
    render_template,
    send_file,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import select

from workflow import batch_documents as batch
from workflow.engine import compiled
from workflow.models import Call, Decision, JobRecord
from workflow.permissions import can_view_decision
from workflow.storage import StorageError

from ..access import login_required_mfa
from ..extensions import db
from ..hooks import lang
from ..jobs import storage as app_storage

bp = Blueprint("documents", __name__)

CODE = re.compile(r"^[0-9A-F]{16}$")
JOB_ID = re.compile(r"^[a-z0-9-]{1,120}$")
KIND_LABELS = {
    "approval": {"zh": "奖励（资助）决定", "en": "Grant decision"},
    "rejection": {"zh": "不予支持决定", "en": "Rejection decision"},
    "recognition": {"zh": "认定决定", "en": "Recognition decision"},
}
STATUS_LABELS = {
    "issued": {"zh": "有效", "en": "Valid"},
    "void": {"zh": "已作废", "en": "Void"},
}
JOB_KIND_LABELS = {
    batch.RENDER_KIND: {"zh": "批量生成决定书", "en": "Render decision letters"},
    batch.ZIP_KIND: {"zh": "决定书打包下载", "en": "Zip of decision letters"},
}
JOB_STATUS_LABELS = {
    "queued": {"zh": "排队中", "en": "Queued"},
    "running": {"zh": "进行中", "en": "Running"},
    "done": {"zh": "已完成", "en": "Done"},
    "failed": {"zh": "失败", "en": "Failed"},
}


class ButtonForm(FlaskForm):
    """A button that posts: CSRF only."""


def _label(labels: dict[str, dict[str, str]], key: str) -> str:
    entry = labels.get(key)
    return (entry.get(lang()) or entry["zh"]) if entry else key


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {
        "kind_label": lambda k: _label(KIND_LABELS, k),
        "status_label": lambda s: _label(STATUS_LABELS, s),
        "job_kind_label": lambda k: _label(JOB_KIND_LABELS, k),
        "job_status_label": lambda s: _label(JOB_STATUS_LABELS, s),
    }


# ---------------------------------------------------------------- public verification


def _date_text(text: str) -> str:
    """The letter's date as written (2026年3月8日) in Chinese, ISO (2026-03-08) in English."""
    match = re.fullmatch(r"(\d{4})年(\d{1,2})月(\d{1,2})日", text or "")
    if lang() == "en" and match:
        y, m, d = (int(x) for x in match.groups())
        return f"{y:04d}-{m:02d}-{d:02d}"
    return text


@bp.get("/verify/<code>")
def verify(code: str):
    normalized = code.replace("-", "").strip().upper()
    decision = None
    if CODE.match(normalized):
        decision = db.session.scalar(
            select(Decision).where(Decision.verification_code == normalized)
        )
    if decision is None:
        return render_template("documents/verify_unknown.html", code=code[:64]), 404
    data = decision.render_data or {}
    response = make_response(
        render_template(
            "documents/verify.html",
            decision=decision,
            data=data,
            date_text=_date_text(str(data.get("date_text", ""))),
        )
    )
    # The answer changes if the letter is voided; search engines have no business here.
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


# ---------------------------------------------------------------- staff: one call


def _load_call(call_id: int) -> Call:
    call = db.session.get(Call, call_id)
    if call is None:
        abort(404)
    if not batch.can_manage_call_documents(current_user, call):
        abort(403)
    return call


@bp.get("/review/documents")
@login_required_mfa
def calls():
    """The calls whose letters the user may batch-render or zip."""
    if not batch.can_manage_documents(current_user):
        abort(403)
    rows = db.session.scalars(select(Call).order_by(Call.year.desc(), Call.id.desc())).all()
    visible = [c for c in rows if batch.can_manage_call_documents(current_user, c)]
    counts = {c.id: len(batch.call_decisions(db.session, c.id)) for c in visible}
    return render_template("documents/calls.html", calls=visible, counts=counts)


@bp.get("/review/calls/<int:call_id>/documents")
@login_required_mfa
def call_documents(call_id: int):
    call = _load_call(call_id)
    storage = app_storage()
    decisions = batch.call_decisions(db.session, call.id)
    program = compiled(db.session, call.definition_id).program
    return render_template(
        "documents/call.html",
        call=call,
        program=program,
        decisions=decisions,
        ready={d.id: batch.has_pdf(d, storage) for d in decisions},
        jobs=batch.call_jobs(db.session, call.id),
        form=ButtonForm(),
        can_download=lambda d: can_view_decision(current_user, d),
    )


@bp.post("/review/calls/<int:call_id>/documents/render")
@login_required_mfa
def render_missing(call_id: int):
    call = _load_call(call_id)
    if not ButtonForm().validate_on_submit():
        abort(400)
    try:
        record = batch.start_render_batch(db.session, call, current_user, app_storage())
    except batch.NothingToDo as exc:
        flash(exc.message(lang()), "info")
        return redirect(url_for("documents.call_documents", call_id=call.id))
    flash(_("已开始批量生成决定书。"), "success")
    return redirect(url_for("documents.job", job_id=record.job_id))


@bp.post("/review/calls/<int:call_id>/decisions.zip")
@login_required_mfa
def zip_decisions(call_id: int):
    call = _load_call(call_id)
    if not ButtonForm().validate_on_submit():
        abort(400)
    try:
        record = batch.start_zip(db.session, call, current_user)
    except batch.NothingToDo as exc:
        flash(exc.message(lang()), "info")
        return redirect(url_for("documents.call_documents", call_id=call.id))
    flash(_("已开始打包本批次的决定书。"), "success")
    return redirect(url_for("documents.job", job_id=record.job_id))


# ---------------------------------------------------------------- jobs


def _load_job(job_id: str) -> JobRecord:
    if not JOB_ID.match(job_id):
        abort(404)
    record = db.session.scalar(select(JobRecord).where(JobRecord.job_id == job_id))
    # Only the decision-letter jobs: other kinds (payment files) have their own pages and
    # permissions, whatever their job ids look like.
    if record is None or record.kind not in batch.KINDS:
        abort(404)
    return record


def _progress(record: JobRecord) -> dict[str, Any]:
    total, done = record.total or 0, record.done or 0
    percent = 100 if record.status == "done" else (int(done * 100 / total) if total else 0)
    ready = record.status == "done" and bool(record.result_storage_key)
    return {
        "job_id": record.job_id,
        "kind": record.kind,
        "status": record.status,
        "status_label": _label(JOB_STATUS_LABELS, record.status),
        "done": done,
        "total": total,
        "percent": min(percent, 100),
        "error": record.error if record.status == "failed" else None,
        "download_url": url_for("documents.download", job_id=record.job_id) if ready else None,
    }


@bp.get("/jobs/<job_id>")
@login_required_mfa
def job(job_id: str):
    record = _load_job(job_id)
    if not batch.can_follow_job(current_user, record):
        abort(403)
    call_id = batch.call_id_of(record.job_id)
    return render_template(
        "documents/job.html",
        record=record,
        progress=_progress(record),
        call=db.session.get(Call, call_id) if call_id else None,
    )


@bp.get("/jobs/<job_id>/progress")
@login_required_mfa
def progress(job_id: str):
    record = _load_job(job_id)
    if not batch.can_follow_job(current_user, record):
        abort(403)
    response = jsonify(_progress(record))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/jobs/<job_id>/download")
@login_required_mfa
def download(job_id: str):
    record = _load_job(job_id)
    call_id = batch.call_id_of(record.job_id)
    call = db.session.get(Call, call_id) if call_id else None
    allowed = batch.can_follow_job(current_user, record) or (
        call is not None and batch.can_manage_call_documents(current_user, call)
    )
    if not allowed:
        abort(403)
    if record.status != "done" or not record.result_storage_key:
        abort(404)
    try:  # streamed from either backend, never loaded whole (a call's zip can be large)
        body = app_storage().open(record.result_storage_key)
    except (StorageError, OSError):
        abort(404)
    response = send_file(
        body,
        mimetype="application/zip",
        as_attachment=True,
        download_name=f"decisions-call-{call_id}-{record.job_id.rsplit('-', 1)[-1]}.zip",
        max_age=0,
    )
    response.headers["Cache-Control"] = "private, no-store"
    return response
