"""Calls in the workbench: the list of calls a reviewer handles, the approval meeting
(审定) with its budget and allocation preview, batch approval or rejection under a
meeting reference, publishing the public notice (公示), and objection review (异议核查).
Routes are added to the ``workbench`` blueprint."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from forms.review import (
    AllocationForm,
    MeetingForm,
    ObjectionDecisionForm,
    SimpleForm,
    sniff_evidence,
)
from workflow.allocation import apply_allocation, approval_applications, preview_allocation
from workflow.audit import record_event
from workflow.errors import ValidationFailed
from workflow.models import Application, Call, Objection, PublicNotice
from workflow.operations import review as ops
from workflow.operations.notice import decide_objection, publish_notice
from workflow.permissions import can_fire, can_manage_panels
from workflow.queues import visible_clause
from workflow.storage import StorageError

from ..extensions import db
from ..hooks import lang
from ..jobs import storage as app_storage
from ..review_pages import (
    call_apps,
    load_call,
    local_today,
    program_of,
    reviewer,
    rollback_request,
)
from .workbench import bp as workbench_bp
from .workbench import results_page, send_stored


@workbench_bp.get("/calls")
def calls():
    user = reviewer()
    rows = db.session.scalars(select(Call).order_by(Call.year.desc(), Call.id.desc())).all()
    items = []
    for call in rows:
        program = program_of(call)
        panel = program.scoring is not None and can_manage_panels(user, call.program_code)
        meeting = ops.can_hold_meeting(user, call)
        if panel or meeting or ops.can_publish_notice(user, call):
            items.append({"call": call, "program": program, "panel": panel, "meeting": meeting})
    notices = db.session.scalars(
        select(PublicNotice).order_by(PublicNotice.starts_on.desc()).limit(20)
    ).all()
    return render_template("workbench/calls.html", items=items, notices=notices)


def _meeting_access(call_id: int) -> Call:
    call = load_call(call_id)
    if not ops.can_hold_meeting(reviewer(), call):
        abort(403)
    return call


@workbench_bp.get("/calls/<int:call_id>/meeting")
def meeting(call_id: int, form: MeetingForm | None = None, status: int = 200, **extra: Any):
    call = _meeting_access(call_id)
    preview = preview_allocation(db.session, call, local_today())
    if form is None:
        form = MeetingForm(formdata=None)
        form.ids.data = preview.funded_ids
    return render_template(
        "workbench/meeting.html",
        call=call,
        program=program_of(call),
        preview=preview,
        form=form,
        allocation_form=extra.get("allocation_form") or AllocationForm(formdata=None),
        notice_form=SimpleForm(formdata=None) if ops.can_publish_notice(reviewer(), call) else None,
        in_notice=call_apps(call, {"notice", "objection"}),
    ), status


@workbench_bp.post("/calls/<int:call_id>/meeting/allocate")
def meeting_allocate(call_id: int):
    call = _meeting_access(call_id)
    form = AllocationForm()
    if not form.validate():
        return meeting(call_id, status=422, allocation_form=form)
    changes = apply_allocation(
        db.session, call, reviewer(), today=local_today(), reason=form.meeting_ref.data
    )
    flash(_("已按比例调整%(n)s件申报的金额。", n=len(changes)), "success")
    return redirect(url_for("workbench.meeting", call_id=call.id))


@workbench_bp.post("/calls/<int:call_id>/meeting/decide")
def meeting_decide(call_id: int):
    user = reviewer()
    call = _meeting_access(call_id)
    form = MeetingForm()
    waiting = {a.id: a for a in approval_applications(db.session, call)}
    ids = [int(i) for i in request.form.getlist("ids") if i.isdigit()]
    form.validate()
    if not [i for i in ids if i in waiting]:
        form.ids.errors = [_("请勾选要审定的申报。")]
    reason = (form.reason.data or "").strip()
    if form.decision.data == "reject" and not reason:
        form.reason.errors = [*form.reason.errors, _("审定不通过须填写理由。")]
    if form.errors:
        return meeting(call_id, form=form, status=422)
    apps = [waiting[i] for i in ids if i in waiting]
    ref = form.meeting_ref.data.strip()
    trigger = "approve" if form.decision.data == "approve" else "reject_at_approval"
    full_reason = f"{ref}：{reason}" if reason else ref
    results = ops.batch_fire(
        db.session,
        apps,
        trigger,
        user,
        reason=full_reason,
        payload={"meeting_ref": ref},
        today=local_today(),
    )
    record_event(
        db.session,
        action="meeting.decide",
        entity_type="call",
        entity_id=call.id,
        actor_id=user.id,
        actor_role="approver",
        reason=full_reason,
        data={
            "meeting_ref": ref,
            "decision": form.decision.data,
            "succeeded": [r.application_id for r in results if r.ok],
            "failed": [r.application_id for r in results if not r.ok],
        },
    )
    return results_page(
        results,
        {"zh": "审定", "en": "Approval meeting"},
        url_for("workbench.meeting", call_id=call.id),
    )


@workbench_bp.post("/calls/<int:call_id>/notice")
def publish(call_id: int):
    call = load_call(call_id)
    if not ops.can_publish_notice(reviewer(), call):
        abort(403)
    if not SimpleForm().validate():
        abort(400)
    notice = publish_notice(db.session, call, reviewer(), today=local_today())
    flash(_("公示已发布。"), "success")
    if "notices.show" in current_app.view_functions:
        return redirect(url_for("notices.show", notice_id=notice.id))
    return redirect(url_for("workbench.meeting", call_id=call.id))


# ---------------------------------------------------------------- objections


def _objection_roles(app: Application) -> set[str]:
    program = program_of(app)
    return {
        r
        for t in program.transitions
        if t.trigger in ("uphold_objection", "dismiss_objection")
        for r in t.roles
    }


@workbench_bp.get("/objections")
def objections():
    user = reviewer()
    rows = db.session.execute(
        select(Objection, Application)
        .join(Application, Application.id == Objection.application_id)
        .options(joinedload(Application.organization))
        .where(visible_clause(user))
        .order_by(Objection.status != "pending", Objection.created_at.desc())
        .limit(200)
    ).all()
    rows = [(o, a) for o, a in rows if can_fire(user, a, sorted(_objection_roles(a)))]
    return render_template("workbench/objections.html", rows=rows)


def _load_objection(objection_id: int) -> tuple[Objection, Application]:
    objection = db.get_or_404(Objection, objection_id)
    app = db.get_or_404(Application, objection.application_id)
    if not can_fire(reviewer(), app, sorted(_objection_roles(app))):
        abort(403)
    return objection, app


@workbench_bp.route("/objections/<int:objection_id>", methods=["GET", "POST"])
def objection(objection_id: int):
    obj, app = _load_objection(objection_id)
    form = ObjectionDecisionForm()
    if request.method == "POST":
        if form.validate():
            try:
                decide_objection(
                    db.session,
                    obj,
                    reviewer(),
                    upheld=form.decision.data == "uphold",
                    reason=form.reason.data,
                    today=local_today(),
                )
            except ValidationFailed as exc:
                rollback_request()
                obj, app = _load_objection(objection_id)
                form.reason.errors = [exc.message(lang())]
            else:
                flash(_("异议已处理。"), "success")
                return redirect(url_for("workbench.objections"))
        status = 422
    else:
        status = 200
    return render_template("workbench/objection.html", objection=obj, app=app, form=form), status


@workbench_bp.get("/objections/<int:objection_id>/evidence")
def objection_evidence(objection_id: int):
    obj, _app = _load_objection(objection_id)
    if not obj.evidence_storage_key:
        abort(404)
    storage = app_storage()
    try:
        head = storage.read(obj.evidence_storage_key)[:16]
    except (StorageError, OSError):
        abort(404)
    content_type = sniff_evidence(head) or "application/octet-stream"
    return send_stored(obj.evidence_storage_key, content_type, f"evidence-{obj.id}")
