"""Finance (资金拨付): budgets per call, disbursement batches (build, review, lock, verify,
export, results, bank import, rebatch), clawbacks, the reconciliation and the regional
dashboards (区域看板).

Each view loads its object or 404s, checks a named predicate or 403s, then validates and
calls one operation of ``workflow.operations.finance``. Finance staff manage; approvers
and administrators read. A refused operation re-renders the batch page with the reason
and the operation's status (409/422), so nothing of it is committed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import quote

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from sqlalchemy import func, select

from forms.finance import (
    ActionForm,
    BankImportForm,
    BatchFilterForm,
    BuildBatchForm,
    ClawbackForm,
    LineResultForm,
    ReportFilterForm,
)
from workflow import export_jobs, exports, reports
from workflow.audit import record_event
from workflow.domain import format_yuan
from workflow.errors import ValidationFailed, WorkflowError
from workflow.models import (
    Call,
    Clawback,
    Decision,
    DisbursementBatch,
    DisbursementLine,
    JobRecord,
    User,
)
from workflow.operations import finance as ops
from workflow.storage import StorageError

from ..access import login_required_mfa
from ..charts import bar_chart, line_chart
from ..districts import district_choices, district_label
from ..extensions import db
from ..finance_access import (
    can_export_batch,
    can_manage_finance,
    can_see_bank_details,
    can_view_finance,
    mask_account,
)
from ..hooks import lang
from ..jobs import storage as app_storage

bp = Blueprint("finance", __name__, url_prefix="/finance")

LINES_PER_PAGE = 100
BATCHES_PER_PAGE = 50
BATCH_STATUSES = ("draft", "locked", "settled", "cancelled")


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {
        "money": lambda fen: format_yuan(int(fen or 0)),
        "can_manage": can_manage_finance(current_user),
        "account": lambda n: n if can_see_bank_details(current_user) else mask_account(n),
        "district_name": lambda d: district_label(d or "", lang()),
        "local_time": lambda dt: dt.astimezone(ops.CHINA).strftime("%Y-%m-%d %H:%M") if dt else "—",
    }


def _require_view() -> None:
    if not can_view_finance(current_user):
        abort(403)


def _require_manage() -> None:
    if not can_manage_finance(current_user):
        abort(403)


def _batch_or_404(batch_id: int) -> DisbursementBatch:
    return db.get_or_404(DisbursementBatch, batch_id)


def _line_or_404(batch: DisbursementBatch, line_id: int) -> DisbursementLine:
    line = db.session.get(DisbursementLine, line_id)
    if line is None or line.batch_id != batch.id:
        abort(404)
    return line


def _page_arg(pages: int) -> int:
    page = request.args.get("page", 1, type=int) or 1
    return min(max(page, 1), max(pages, 1))


# ---------------------------------------------------------------- overview


@bp.get("/")
@login_required_mfa
def index():
    _require_view()
    batches = db.session.scalars(
        select(DisbursementBatch).order_by(DisbursementBatch.id.desc()).limit(5)
    ).all()
    return render_template(
        "finance/index.html",
        budgets=ops.call_budgets(db.session),
        batches=batches,
        awaiting=ops.awaiting_summary(db.session),
        program_names=_program_names(),
    )


def _program_names() -> dict[str, str]:
    index = 1 if lang() == "en" else 0
    return {code: names[index] for code, names in reports._program_names(db.session).items()}


# ---------------------------------------------------------------- batches


@bp.get("/batches")
@login_required_mfa
def batches():
    _require_view()
    status = request.args.get("status") or None
    if status and status not in BATCH_STATUSES:
        flash(_("未知的批次状态筛选，已忽略。"), "warning")
        status = None
    stmt = select(DisbursementBatch)
    if status:
        stmt = stmt.where(DisbursementBatch.status == status)
    total = db.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    pages = max((total + BATCHES_PER_PAGE - 1) // BATCHES_PER_PAGE, 1)
    page = _page_arg(pages)
    rows = db.session.scalars(
        stmt.order_by(DisbursementBatch.id.desc())
        .limit(BATCHES_PER_PAGE)
        .offset((page - 1) * BATCHES_PER_PAGE)
    ).all()
    return render_template(
        "finance/batches.html",
        batches=rows,
        status=status,
        statuses=BATCH_STATUSES,
        page=page,
        pages=pages,
    )


def _filter_choices(form: Any) -> None:
    programs = sorted(_program_names().items())
    calls = [
        (str(c.id), f"{c.year} · {c.title}")
        for c in db.session.scalars(select(Call).order_by(Call.year.desc(), Call.title))
    ]
    form.set_choices(programs, calls, district_choices(lang()))


def _choice(value: Any) -> str | None:
    """A select's value, or None when empty or whitespace (which ``Optional()`` lets through)."""
    value = (value or "").strip() if isinstance(value, str) else value
    return value or None


def _int_choice(value: Any) -> int | None:
    value = _choice(value)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _filters_from(form: Any) -> ops.BatchFilters:
    return ops.BatchFilters(
        program=_choice(form.program.data),
        call_id=_int_choice(form.call.data),
        district=_choice(form.district.data),
        issued_from=form.issued_from.data,
        issued_to=form.issued_to.data,
    )


def _drop_invalid(form: Any) -> None:
    """Bad filters are ignored with a message, never an error page."""
    flash(_("部分筛选条件无效，已忽略。"), "warning")
    for f in form:
        if f.errors:
            f.data = None
            f.errors = []


@bp.get("/batches/new")
@login_required_mfa
def new_batch():
    _require_manage()
    form = BatchFilterForm(request.args)
    _filter_choices(form)
    if request.args and not form.validate():
        _drop_invalid(form)
    filters = _filters_from(form)
    preview = ops.preview_batch(db.session, current_user, filters)
    return render_template(
        "finance/batch_new.html",
        form=form,
        build_form=BuildBatchForm(formdata=None, data=form.data),
        preview=preview,
        program_names=_program_names(),
    )


@bp.post("/batches/new")
@login_required_mfa
def create_batch():
    _require_manage()
    form = BuildBatchForm()
    _filter_choices(form)
    if not form.validate():
        return _new_batch_again(form, 422)
    try:
        batch = ops.build_batch(db.session, current_user, _filters_from(form))
    except ValidationFailed as exc:
        flash(exc.message(lang()), "error")
        return _new_batch_again(form, exc.status)
    flash(
        _("已生成拨付批次 %(number)s：%(count)s 笔。请核对后锁定。")
        % {"number": batch.number, "count": batch.line_count},
        "success",
    )
    return redirect(url_for("finance.batch_detail", batch_id=batch.id))


def _new_batch_again(form: BuildBatchForm, status: int):
    filter_form = BatchFilterForm(formdata=None, data=form.data)
    _filter_choices(filter_form)
    valid = ops.BatchFilters() if form.errors else _filters_from(form)
    return render_template(
        "finance/batch_new.html",
        form=filter_form,
        build_form=form,
        preview=ops.preview_batch(db.session, current_user, valid),
        program_names=_program_names(),
    ), status


def _render_batch(batch: DisbursementBatch, status: int = 200, **extra: Any):
    total = batch.line_count if batch.status != "draft" else _count_lines(batch)
    pages = max((total + LINES_PER_PAGE - 1) // LINES_PER_PAGE, 1)
    page = _page_arg(pages)
    rows = db.session.execute(
        select(DisbursementLine, Decision.doc_number, Decision.application_id)
        .join(Decision, DisbursementLine.decision_id == Decision.id)
        .where(DisbursementLine.batch_id == batch.id)
        .order_by(DisbursementLine.id)
        .limit(LINES_PER_PAGE)
        .offset((page - 1) * LINES_PER_PAGE)
    ).all()
    counts = dict(
        db.session.execute(
            select(DisbursementLine.status, func.count())
            .where(DisbursementLine.batch_id == batch.id)
            .group_by(DisbursementLine.status)
        ).all()
    )
    creator = db.session.get(User, batch.created_by_id) if batch.created_by_id else None
    return render_template(
        "finance/batch_detail.html",
        batch=batch,
        rows=rows,
        counts=counts,
        creator=creator,
        filters=_filter_labels(batch.filters or {}),
        page=page,
        pages=pages,
        action=ActionForm(),
        can_export=can_export_batch(current_user, batch),
        export_now=batch.line_count <= exports.sync_limit(current_app.config),
        **extra,
    ), status


def _filter_labels(filters: dict[str, Any]) -> list[tuple[str, str]]:
    """The filters a batch was built from, as (label, value) in the UI language."""
    labels = {
        "program": _("项目"),
        "call_id": _("申报批次"),
        "district": _("区县"),
        "issued_from": _("决定日期自"),
        "issued_to": _("决定日期至"),
        "rebatch_of": _("重新组批自"),
    }
    out = []
    for key, value in filters.items():
        if not value:
            continue
        if key == "program":
            value = _program_names().get(value, value)
        elif key == "call_id":
            call = db.session.get(Call, value)
            value = call.title if call else value
        elif key == "district":
            value = district_label(value, lang())
        out.append((labels.get(key, key), str(value)))
    return out


def _count_lines(batch: DisbursementBatch) -> int:
    return int(
        db.session.scalar(select(func.count()).where(DisbursementLine.batch_id == batch.id)) or 0
    )


def _refused(batch_id: int, exc: WorkflowError):
    """Re-render the batch page with the reason; the status makes the hook roll back."""
    db.session.rollback()
    batch = _batch_or_404(batch_id)
    return _render_batch(batch, exc.status, refusal=exc.message(lang()))


@bp.get("/batches/<int:batch_id>")
@login_required_mfa
def batch_detail(batch_id: int):
    batch = _batch_or_404(batch_id)
    _require_view()
    return _render_batch(batch)


def _action_ok() -> None:
    if not ActionForm().validate():
        abort(400)


@bp.post("/batches/<int:batch_id>/lines/<int:line_id>/remove")
@login_required_mfa
def remove_line(batch_id: int, line_id: int):
    batch = _batch_or_404(batch_id)
    line = _line_or_404(batch, line_id)
    _require_manage()
    _action_ok()
    try:
        ops.remove_line(db.session, current_user, line)
    except WorkflowError as exc:
        return _refused(batch_id, exc)
    flash(_("已从批次中移除该笔。"), "success")
    return redirect(url_for("finance.batch_detail", batch_id=batch.id))


@bp.post("/batches/<int:batch_id>/discard")
@login_required_mfa
def discard(batch_id: int):
    batch = _batch_or_404(batch_id)
    _require_manage()
    _action_ok()
    try:
        ops.discard_batch(db.session, current_user, batch)
    except WorkflowError as exc:
        return _refused(batch_id, exc)
    flash(_("已作废草稿批次 %(number)s。") % {"number": batch.number}, "success")
    return redirect(url_for("finance.batches"))


@bp.post("/batches/<int:batch_id>/lock")
@login_required_mfa
def lock(batch_id: int):
    batch = _batch_or_404(batch_id)
    _require_manage()
    _action_ok()
    try:
        ops.lock_batch(db.session, current_user, batch)
    except WorkflowError as exc:
        return _refused(batch_id, exc)
    flash(_("批次已锁定，明细不能再修改。"), "success")
    return redirect(url_for("finance.batch_detail", batch_id=batch.id))


@bp.post("/batches/<int:batch_id>/verify")
@login_required_mfa
def verify(batch_id: int):
    batch = _batch_or_404(batch_id)
    _require_view()
    _action_ok()
    try:
        result = ops.verify_batch(db.session, batch, current_user)
    except WorkflowError as exc:
        return _refused(batch_id, exc)
    if result.ok:
        flash(_("校验通过：批次明细与锁定时一致。"), "success")
    else:
        for problem in result.problems:
            flash(problem["en" if lang() == "en" else "zh"], "error")
    return redirect(url_for("finance.batch_detail", batch_id=batch.id))


@bp.post("/batches/<int:batch_id>/rebatch")
@login_required_mfa
def rebatch(batch_id: int):
    batch = _batch_or_404(batch_id)
    _require_manage()
    _action_ok()
    try:
        new = ops.rebatch_failed(db.session, current_user, batch)
    except WorkflowError as exc:
        return _refused(batch_id, exc)
    flash(
        _("失败明细已放入新批次 %(number)s。") % {"number": new.number},
        "success",
    )
    return redirect(url_for("finance.batch_detail", batch_id=new.id))


# ---------------------------------------------------------------- exports
#
# ``/batches/<id>/export.csv`` and ``.xlsx`` are the batch's payment file. GET: a batch of
# up to ``exports.sync_limit`` lines is written now and sent; a larger one gets the export
# page (the file is written by a job on the ``exports`` queue), and ``?job=<id>`` sends
# that job's file once it is ready (``&progress=1``: its progress as JSON, for
# static/js/jobs.js). POST starts the job (or finds the one already started). Every
# answer is for finance staff only (``can_export_batch``), and only for a locked batch.


def _attachment(name: str, fallback: str) -> str:
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name)}"


def _exportable(batch_id: int) -> DisbursementBatch:
    batch = _batch_or_404(batch_id)
    if not can_export_batch(current_user, batch):
        abort(403)
    export_jobs.must_be_exportable(batch)
    return batch


def _record_export(batch: DisbursementBatch, fmt: str, job_id: str | None = None) -> None:
    data = {"number": batch.number, "format": fmt, "line_count": batch.line_count}
    record_event(
        db.session,
        action="batch.export",
        entity_type="batch",
        entity_id=batch.id,
        actor_id=current_user.id,
        actor_role="finance",
        data={**data, "job_id": job_id} if job_id else data,
    )


def _file_response(batch: DisbursementBatch, fmt: str, handle: Any) -> Response:
    headers = {
        "Content-Disposition": _attachment(
            exports.file_name(batch, fmt), exports.ascii_file_name(batch, fmt)
        ),
        "Cache-Control": "no-store",
    }
    return Response(exports.file_chunks(handle), mimetype=exports.MIMETYPES[fmt], headers=headers)


def _export(batch_id: int, fmt: str):
    batch = _exportable(batch_id)
    if request.method == "POST":
        return _start_export(batch, fmt)
    if "job" in request.args:
        return _job_file(batch, fmt, request.args["job"])
    if batch.line_count > exports.sync_limit(current_app.config):
        return _export_page(batch, fmt)
    # Built before it is sent, so a batch that changed after locking is refused (409)
    # instead of half sent; the lock hash is checked over the very lines written.
    handle = exports.spooled()
    try:
        exports.build_file(db.session, batch, fmt, handle)
    except BaseException:
        handle.close()
        raise
    handle.seek(0)
    _record_export(batch, fmt)
    return _file_response(batch, fmt, handle)


def _start_export(batch: DisbursementBatch, fmt: str):
    if not ActionForm().validate():
        abort(400)
    export_jobs.start_export(db.session, current_user, batch, fmt, app_storage())
    return redirect(url_for(f"finance.export_{fmt}", batch_id=batch.id))


EXPORT_STATUS = {
    "queued": _l("排队中"),
    "running": _l("正在生成"),
    "done": _l("已生成"),
    "failed": _l("生成失败"),
}


def _export_error(record: JobRecord) -> str | None:
    if record.status != "failed":
        return None
    if record.error == export_jobs.CHANGED:
        return _("批次明细在锁定后被改动，已拒绝导出。请联系系统管理员核查。")
    if record.error == export_jobs.NOT_EXPORTABLE:
        return _("只能导出已锁定的批次。")
    return _("生成文件时出错，请重新生成；如仍失败，请联系系统管理员。")


def _export_progress(batch: DisbursementBatch, fmt: str, record: JobRecord) -> dict[str, Any]:
    total, done = record.total or 0, record.done or 0
    ready = record.status == "done" and bool(record.result_storage_key)
    percent = 100 if ready else (min(int(done * 100 / total), 99) if total else 0)
    endpoint = f"finance.export_{fmt}"
    return {
        "job_id": record.job_id,
        "status": record.status,
        "status_label": str(EXPORT_STATUS.get(record.status, record.status)),
        "done": done,
        "total": total,
        "percent": percent,
        "error": _export_error(record),
        "download_url": url_for(endpoint, batch_id=batch.id, job=record.job_id) if ready else None,
        "progress_url": url_for(endpoint, batch_id=batch.id, job=record.job_id, progress=1),
    }


def _export_page(batch: DisbursementBatch, fmt: str):
    record = export_jobs.latest_export(db.session, batch.id, fmt)
    return render_template(
        "finance/export.html",
        batch=batch,
        fmt=fmt,
        record=record,
        progress=_export_progress(batch, fmt, record) if record else None,
        action=ActionForm(),
    )


def _job_file(batch: DisbursementBatch, fmt: str, job_id: str):
    record = export_jobs.export_job(db.session, batch.id, fmt, job_id)
    if record is None:
        abort(404)
    if request.args.get("progress"):
        response = jsonify(_export_progress(batch, fmt, record))
        response.headers["Cache-Control"] = "no-store"
        return response
    if record.status != "done" or not record.result_storage_key:
        abort(404)
    try:
        handle = app_storage().open(record.result_storage_key)
    except (StorageError, OSError):
        abort(404)
    _record_export(batch, fmt, record.job_id)
    return _file_response(batch, fmt, handle)


@bp.route("/batches/<int:batch_id>/export.csv", methods=["GET", "POST"])
@login_required_mfa
def export_csv(batch_id: int):
    return _export(batch_id, "csv")


@bp.route("/batches/<int:batch_id>/export.xlsx", methods=["GET", "POST"])
@login_required_mfa
def export_xlsx(batch_id: int):
    return _export(batch_id, "xlsx")


# ---------------------------------------------------------------- results


@bp.route("/batches/<int:batch_id>/lines/<int:line_id>/result", methods=["GET", "POST"])
@login_required_mfa
def line_result(batch_id: int, line_id: int):
    batch = _batch_or_404(batch_id)
    line = _line_or_404(batch, line_id)
    _require_manage()
    decision = db.session.get(Decision, line.decision_id)
    form = LineResultForm()
    if request.method == "GET" or not form.validate():
        status = 422 if request.method == "POST" else 200
        return render_template(
            "finance/line_result.html", batch=batch, line=line, decision=decision, form=form
        ), status
    try:
        ops.record_line_result(
            db.session,
            current_user,
            line,
            form.status.data,
            paid_on=form.paid_on.data,
            voucher_no=form.voucher_no.data,
            reason=form.reason.data,
        )
    except WorkflowError as exc:
        return _refused(batch_id, exc)
    flash(_("已登记 %(number)s 的拨付结果。") % {"number": decision.doc_number}, "success")
    if batch.status == "settled":
        flash(_("批次全部明细均已登记结果，批次已办结。"), "success")
    return redirect(url_for("finance.batch_detail", batch_id=batch.id))


@bp.route("/batches/<int:batch_id>/import", methods=["GET", "POST"])
@login_required_mfa
def import_results(batch_id: int):
    batch = _batch_or_404(batch_id)
    _require_manage()
    form = BankImportForm()
    if request.method == "GET" or not form.validate():
        status = 422 if request.method == "POST" else 200
        return render_template("finance/import.html", batch=batch, form=form, report=None), status
    try:
        report = ops.import_bank_results(db.session, current_user, batch, form.file.data.read())
    except WorkflowError as exc:
        return _refused(batch_id, exc)
    status = 422 if report.error else 200
    return render_template(
        "finance/import.html", batch=batch, form=BankImportForm(formdata=None), report=report
    ), status


# ---------------------------------------------------------------- clawbacks


def _clawback_page(form: ClawbackForm, status: int = 200):
    rows = db.session.execute(
        select(Clawback, Decision.doc_number, User.name)
        .join(Decision, Clawback.decision_id == Decision.id)
        .outerjoin(User, Clawback.actor_id == User.id)
        .order_by(Clawback.id.desc())
        .limit(100)
    ).all()
    return render_template("finance/clawbacks.html", form=form, rows=rows), status


@bp.get("/clawbacks")
@login_required_mfa
def clawbacks():
    _require_view()
    return _clawback_page(ClawbackForm(formdata=None))


@bp.post("/clawbacks")
@login_required_mfa
def create_clawback():
    _require_manage()
    form = ClawbackForm()
    if not form.validate():
        return _clawback_page(form, 422)
    decision = ops.find_decision(db.session, form.decision_number.data)
    if decision is None:
        form.decision_number.errors = [_("没有该文号的决定书。")]
        return _clawback_page(form, 422)
    amount_fen = int((form.amount.data * 100).to_integral_value())
    try:
        ops.record_clawback(
            db.session,
            current_user,
            decision,
            amount_fen,
            form.reason.data,
            recovered_on=form.recovered_on.data,
        )
    except WorkflowError as exc:
        db.session.rollback()
        target = form.amount if "amount" in exc.details.get("errors", {}) else None
        if target is not None:
            target.errors = [exc.message(lang())]
        else:
            flash(exc.message(lang()), "error")
        return _clawback_page(form, exc.status)
    flash(
        _("已登记追回 %(number)s：%(amount)s。")
        % {"number": decision.doc_number, "amount": format_yuan(amount_fen)},
        "success",
    )
    return redirect(url_for("finance.clawbacks"))


# ---------------------------------------------------------------- reports


def _relabel_districts(table: reports.Table, key: str = "label") -> None:
    for row in table.rows:
        row[key] = district_label(str(row.get("key_value", row.get("key", ""))), lang())


def _reconciliation_table() -> tuple[reports.Table, str]:
    group = request.args.get("group", "program")
    if group not in reports.GROUPINGS:
        flash(_("未知的汇总方式，已按项目汇总。"), "warning")
        group = "program"
    table = reports.reconciliation(db.session, group, lang())
    if group == "district":
        for row in table.rows:
            row["key"] = district_label(str(row["key_value"]), lang())
    for row in table.rows:
        notes = [f[1] if lang() == "en" else f[0] for f in row["flags"]]
        row["notes"] = "；".join(notes) if notes else _("相符")
    table.columns.append("notes")
    table.labels["notes"] = ("说明", "Notes")
    return table, group


@bp.get("/reconciliation")
@login_required_mfa
def reconciliation():
    _require_view()
    table, group = _reconciliation_table()
    return render_template(
        "finance/reconciliation.html", table=table, group=group, groups=reports.GROUPINGS
    )


@bp.get("/reconciliation.csv")
@login_required_mfa
def reconciliation_csv():
    _require_view()
    table, group = _reconciliation_table()
    name = f"reconciliation-{group}.csv"
    return Response(
        table.csv_bytes(lang()),
        mimetype="text/csv",
        headers={"Content-Disposition": _attachment(name, name)},
    )


def _dashboard_filters() -> tuple[ReportFilterForm, reports.DashboardFilters]:
    form = ReportFilterForm(request.args)
    programs = sorted(_program_names().items())
    years = list(db.session.scalars(select(Call.year).distinct().order_by(Call.year.desc())))
    form.set_choices(programs, district_choices(lang()), years)
    if request.args and not form.validate():
        _drop_invalid(form)
    return form, reports.DashboardFilters(
        program=_choice(form.program.data),
        district=_choice(form.district.data),
        year=_int_choice(form.year.data),
    )


CHARTS = ("stages", "programs", "districts", "months", "processing")


def _chart_spec(name: str) -> tuple[str, str, list[tuple[str, str]]]:
    """Title, kind and series (row key, legend) of a dashboard chart, in the UI language."""
    amounts = [("approved", _("决定金额（元）")), ("paid", _("已拨付（元）"))]
    return {
        "stages": (_("各阶段申报数"), "bar", [("count", _("申报数"))]),
        "programs": (_("各项目决定与拨付金额"), "bar", amounts),
        "districts": (_("各区县决定与拨付金额"), "bar", amounts),
        "months": (_("每月决定与拨付金额"), "line", amounts),
        "processing": (_("各阶段平均办理天数"), "bar", [("avg_days", _("平均天数"))]),
    }[name]


def _chart_table(name: str, filters: reports.DashboardFilters) -> reports.Table:
    table = reports.DASHBOARDS[name](db.session, filters, lang())
    if name == "districts":
        _relabel_districts(table)
    return table


def _chart(name: str, table: reports.Table) -> Any:
    title, kind, series = _chart_spec(name)
    rows = []
    for row in table.rows:
        r = dict(row)
        for key in ("approved", "paid"):
            if f"{key}_fen" in r:
                r[key] = Decimal(int(r[f"{key}_fen"])) / 100
        rows.append(r)
    desc = _("数据共 %(n)s 行，见下方表格或下载CSV。") % {"n": len(rows)}
    money = any(key in ("approved", "paid") for key, _l in series)
    fmt = (lambda v: f"{Decimal(str(v or 0)):,.0f}") if money else (lambda v: f"{float(v or 0):g}")
    draw = line_chart if kind == "line" else bar_chart
    return draw(
        rows,
        chart_id=f"chart-{name}",
        label_key="label",
        series=series,
        title=title,
        desc=desc,
        fmt=fmt,
        empty_text=_("暂无数据"),
    )


@bp.get("/dashboards")
@login_required_mfa
def dashboards():
    _require_view()
    form, filters = _dashboard_filters()
    charts = []
    for name in CHARTS:
        table = _chart_table(name, filters)
        charts.append(
            {
                "name": name,
                "title": _chart_spec(name)[0],
                "svg": _chart(name, table),
                "table": table,
            }
        )
    return render_template(
        "finance/dashboards.html",
        form=form,
        charts=charts,
        args={k: form[k].data for k in ("program", "district", "year") if form[k].data},
    )


@bp.get("/dashboards/<name>.csv")
@login_required_mfa
def dashboard_csv(name: str):
    if name not in CHARTS:
        abort(404)
    _require_view()
    _form, filters = _dashboard_filters()
    table = _chart_table(name, filters)
    file_name = f"dashboard-{name}.csv"
    return Response(
        table.csv_bytes(lang()),
        mimetype="text/csv",
        headers={"Content-Disposition": _attachment(file_name, file_name)},
    )
