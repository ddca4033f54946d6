"""Public notices (公示): the approved lists, open to everyone without a login, as a page
and as a PDF, and the objection form (异议). Objections need a real name, a contact and
a reason and are accepted only during the notice period (the operation enforces both;
this module says so clearly and checks the optional evidence file)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from sqlalchemy import or_, select
from sqlalchemy.orm import joinedload

from forms.review import EVIDENCE_MAX_BYTES, ObjectionForm, sniff_evidence
from workflow.definitions.schema import Program
from workflow.documents import DocumentRenderError, render_pdf
from workflow.domain import format_chinese_date, format_yuan
from workflow.engine import compiled
from workflow.errors import TransitionNotAllowed, ValidationFailed
from workflow.models import Application, PublicNotice
from workflow.operations.notice import lodge_objection

from .. import hooks
from ..extensions import db
from ..jobs import storage as app_storage

bp = Blueprint("notices", __name__)

RECENT_DAYS = 90
OBJECTION_FIELDS = ("name", "contact", "reason")


@dataclass
class NoticeRow:
    app: Application
    program: Program
    open: bool  # still under notice: objections accepted


def _today() -> date:
    return date.today()


def _rows(notice: PublicNotice, today: date) -> list[NoticeRow]:
    """The notice's applications still on the list (a withdrawn or rejected one - e.g.
    after an upheld objection - leaves it)."""
    apps = db.session.scalars(
        select(Application)
        .options(joinedload(Application.organization), joinedload(Application.call))
        .where(Application.id.in_([int(i) for i in notice.application_ids or []]))
        .order_by(Application.id)
    ).all()
    rows = []
    for app in apps:
        program = compiled(db.session, app.definition_id).program
        stage = program.state(app.state).stage
        if stage == "closed":
            continue
        under_notice = stage in ("notice", "objection") and (
            app.deadline_on is None or today <= app.deadline_on
        )
        rows.append(NoticeRow(app, program, under_notice))
    return rows


def _accepting(notice: PublicNotice, today: date) -> bool:
    return notice.status == "open" and notice.starts_on <= today <= notice.ends_on


@bp.get("/notices")
def index():
    today = _today()
    notices = db.session.scalars(
        select(PublicNotice)
        .where(
            or_(
                PublicNotice.status == "open",
                PublicNotice.ends_on >= today - timedelta(days=RECENT_DAYS),
            )
        )
        .order_by(PublicNotice.starts_on.desc(), PublicNotice.id.desc())
    ).all()
    return render_template("notices/index.html", notices=notices, today=today)


def _show(notice: PublicNotice, form: ObjectionForm | None = None, status: int = 200):
    today = _today()
    rows = _rows(notice, today)
    if form is None:
        form = ObjectionForm(formdata=None)
    form.application_id.choices = _choices(rows)
    total = sum(r.app.award_fen or 0 for r in rows)
    return render_template(
        "notices/show.html",
        notice=notice,
        rows=rows,
        total=total,
        form=form,
        accepting=_accepting(notice, today) and bool(form.application_id.choices),
        yuan=lambda fen: "—" if fen is None else format_yuan(int(fen)),
        today=today,
    ), status


def _choices(rows: list[NoticeRow]) -> list[tuple[int, str]]:
    return [(r.app.id, f"{r.app.organization.name}（{r.app.number}）") for r in rows if r.open]


@bp.get("/notices/<int:notice_id>")
def show(notice_id: int):
    return _show(db.get_or_404(PublicNotice, notice_id))


@bp.post("/notices/<int:notice_id>/objections")
def object_to(notice_id: int):
    notice = db.get_or_404(PublicNotice, notice_id)
    today = _today()
    form = ObjectionForm()
    if not _accepting(notice, today):
        flash(_("公示期已结束，不再受理异议。"), "error")
        return _show(notice, form, 409)
    form.application_id.choices = _choices(_rows(notice, today))
    if not form.validate():
        return _show(notice, form, 422)
    evidence_key = None
    upload = form.evidence.data
    if upload and getattr(upload, "filename", ""):
        data = upload.read(EVIDENCE_MAX_BYTES + 1)
        if len(data) > EVIDENCE_MAX_BYTES:
            form.evidence.errors = [_("证明材料不能超过10MB。")]
            return _show(notice, form, 422)
        if sniff_evidence(data[:16]) is None:
            form.evidence.errors = [_("证明材料须为PDF、PNG或JPEG文件。")]
            return _show(notice, form, 422)
        evidence_key, _digest = app_storage().put(data, prefix="objection")
    app = db.get_or_404(Application, form.application_id.data)
    try:
        lodge_objection(
            db.session,
            app,
            name=form.name.data,
            contact=form.contact.data,
            reason=form.reason.data,
            today=today,
            evidence_storage_key=evidence_key,
        )
    except (ValidationFailed, TransitionNotAllowed) as exc:
        if evidence_key:
            app_storage().delete(evidence_key)
        db.session.rollback()
        for key, messages in getattr(exc, "errors", {}).items():
            if key in OBJECTION_FIELDS:
                form[key].errors = [messages[1] if hooks.lang() == "en" else messages[0]]
        flash(exc.message(hooks.lang()), "error")
        return _show(db.get_or_404(PublicNotice, notice_id), form, exc.status)
    flash(_("异议已收到。我们将依法核查，并通过您留下的联系方式反馈结果。"), "success")
    return redirect(url_for("notices.show", notice_id=notice.id))


def notice_document(notice: PublicNotice, rows: list[NoticeRow], base_url: str) -> dict[str, Any]:
    """The plain data the notice PDF is rendered from (``public_notice.html``)."""
    call = rows[0].app.call if rows else None
    params = call.params if call else {}
    program_name = rows[0].program.name.zh if rows else ""
    total = sum(r.app.award_fen or 0 for r in rows)
    path = url_for("notices.show", notice_id=notice.id)
    digest = hashlib.sha256(f"notice:{notice.id}:{notice.created_at}".encode()).hexdigest()
    return {
        "authority": str(params.get("issuing_authority") or "长春市市场监督管理局"),
        "title": notice.title,
        "body_paragraphs": [
            f"根据{program_name}的有关规定，经申报、审核和审定，"
            f"现将{call.title if call else notice.title}拟支持名单予以公示。",
            "公示期间，对名单有异议的单位或个人，可以实名方式提出。",
        ],
        "rows": [
            {
                "addressee": r.app.organization.name,
                "credit_code": r.app.organization.credit_code,
                "program_name": r.program.name.zh,
                "amount_figures": "—" if r.app.award_fen is None else format_yuan(r.app.award_fen),
            }
            for r in rows
        ],
        "total_figures": format_yuan(total) if rows else None,
        "notice_start_text": format_chinese_date(notice.starts_on),
        "notice_end_text": format_chinese_date(notice.ends_on),
        "objection_text": (
            f"请在公示期内通过 {base_url}{path} 提交异议，写明真实姓名或单位名称、联系方式"
            "和具体理由，可附证明材料；匿名或逾期提出的异议不予受理。"
        ),
        "date_text": format_chinese_date(notice.starts_on),
        "verification_code": digest[:16].upper(),
        "verify_url": f"{base_url}{path}",
        "lang": "zh",
    }


@bp.get("/notices/<int:notice_id>.pdf")
def pdf(notice_id: int):
    notice = db.get_or_404(PublicNotice, notice_id)
    rows = _rows(notice, _today())
    base_url = str(current_app.config.get("PUBLIC_BASE_URL") or "").rstrip("/")
    try:
        body = render_pdf("public_notice.html", notice_document(notice, rows, base_url))
    except DocumentRenderError:
        current_app.logger.exception("public notice %s: PDF rendering failed", notice.id)
        abort(503)
    return Response(
        body,
        mimetype="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="notice-{notice.id}.pdf"',
            "Cache-Control": "public, max-age=300",
        },
    )
