"""The reviewer workbench (审核工作台), blueprint ``workbench`` under ``/review``: the
queue, the application view and its actions from the YAML, claims and assignments,
award corrections, material previews and batch actions. Expert review and panels are
in ``workbench_experts``, calls (approval meeting, notice) and objection review in
``workbench_calls``; both add their routes to this blueprint.

Every view loads its object or 404s, checks a named predicate or 403s, then validates,
calls one operation and redirects with a flash (or renders). The blueprint is for staff
only: a login (with the second factor where required) and a workbench role are checked
before every request.
"""

from __future__ import annotations

import io
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_babel import gettext as _

from forms.review import (
    ActionForm,
    AssignForm,
    AwardCorrectionForm,
    BatchConfirmForm,
    SimpleForm,
    choices,
    parse_queue_args,
)
from workflow.definitions.schema import Transition
from workflow.engine import compiled, fire
from workflow.errors import GuardFailed, TransitionNotAllowed, ValidationFailed
from workflow.loaders import load_application
from workflow.models import Application, Attachment, User
from workflow.operations import review as ops
from workflow.permissions import (
    can_assign,
    can_claim,
    can_fire,
    can_use_workbench,
    can_view_application,
    can_view_attachment,
    roles_for,
)
from workflow.queues import (
    HISTORY_STAGES,
    PER_PAGE_CHOICES,
    STAGE_ORDER,
    queue_page,
    visible_applications,
)
from workflow.storage import StorageError

from ..access import login_required_mfa
from ..extensions import db
from ..hooks import lang
from ..jobs import storage as app_storage
from ..review_pages import (
    INLINE_TYPES,
    OFFICER_ROLES,
    SORT_LABELS,
    STAGE_LABELS,
    acting_roles,
    assignee_choices,
    batch_actions,
    days_left,
    filter_options,
    has_pending_objection,
    label_text,
    local_time,
    local_today,
    own_review,
    page_context,
    program_of,
    reviewer,
    rollback_request,
    supplement_choices,
    yuan,
)

bp = Blueprint("workbench", __name__, url_prefix="/review")


def _signed_in() -> None:
    """Nothing: wrapped by ``login_required_mfa``, it answers "may this request go on?"."""


# The login (and second-factor) gate of every other area, applied to the whole blueprint.
_login_gate = login_required_mfa(_signed_in)


@bp.before_request
def _staff_only():
    response = _login_gate()
    if response is not None:
        return response
    if not can_use_workbench(reviewer()):
        abort(403)
    return None


@bp.context_processor
def _helpers() -> dict[str, Any]:
    return {
        "yuan": yuan,
        "local": local_time,
        "stage_label": lambda s: STAGE_LABELS.get(s, s),
        "state_label": lambda app: program_of(app).state(app.state).label,
        "days_left": days_left,
        "today": local_today(),
    }


# ---------------------------------------------------------------- queue


@bp.get("/")
def queue():
    user = reviewer()
    today = local_today()
    options = filter_options(user)
    query, problems = parse_queue_args(
        request.args,
        programs=options["programs"],
        call_ids=[c.id for c in options["calls"]],
        districts=options["districts"],
        states=options["states"],
    )
    page = queue_page(db.session, user, query, today)
    if page.bad_cursor:
        problems.append(_("翻页参数无效，已显示第一页。"))
    base = {k: v for k, v in request.args.items() if k != "cursor"}
    return render_template(
        "workbench/queue.html",
        page=page,
        query=query,
        problems=problems,
        options=options,
        args=base,
        sorts=SORT_LABELS,
        per_page_choices=PER_PAGE_CHOICES,
        # Open stages with work in them, then the history stages (counted when opened).
        stages=[s for s in STAGE_ORDER if s in page.counts or s in HISTORY_STAGES],
        batch_actions=batch_actions(user, options["programs"]),
        form=SimpleForm(),
    )


# ---------------------------------------------------------------- application view


def _load_visible(app_id: int) -> Application:
    app = load_application(db.session, app_id)
    if app is None:
        abort(404)
    if not can_view_application(reviewer(), app):
        abort(403)
    return app


@bp.get("/applications/<int:app_id>")
def application(app_id: int):
    user = reviewer()
    app = _load_visible(app_id)
    if not roles_for(user, app) & OFFICER_ROLES:
        # Experts work on their own score sheet; they never see the history (which
        # records other experts' totals) or other sheets.
        review = own_review(user, app)
        if review is None:
            abort(403)
        return redirect(url_for("workbench.score_sheet", review_id=review.id))
    return render_template("workbench/application.html", **page_context(app, user))


def _rerender(app_id: int, status: int, **overrides: Any):
    """After a refused action: roll back whatever was half-done, reload, show the page
    again with the form's messages and what was typed."""
    rollback_request()
    user = reviewer()
    app = db.get_or_404(Application, app_id)
    context = page_context(app, user)
    forms = dict(context["action_forms"])
    forms.update(overrides.pop("action_forms", {}))
    context.update(overrides, action_forms=forms)
    return render_template("workbench/application.html", **context), status


def _version(raw: str | None) -> int | None:
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


@bp.post("/applications/<int:app_id>/fire/<trigger>")
def fire_transition(app_id: int, trigger: str):
    user = reviewer()
    app = _load_visible(app_id)
    program = program_of(app)
    if trigger not in {t.trigger for t in program.transitions}:
        abort(404)
    candidates = compiled(db.session, app.definition_id).candidates(trigger, app.state)
    roles = {r for t in candidates for r in t.roles} or {
        r for t in program.transitions if t.trigger == trigger for r in t.roles
    }
    if not can_fire(user, app, sorted(roles)):
        abort(403)
    if any(t.subform == "objection_decision" for t in candidates) and has_pending_objection(app):
        raise TransitionNotAllowed(
            "该申报有待核查的异议，请在异议核查页面逐件处理。",
            "This application has objections to review: decide each on its own page.",
        )
    form = ActionForm(prefix=trigger)
    supplement_choices(form, program)
    form.validate()
    transition = candidates[0] if candidates else None
    reason = (form.reason.data or "").strip()
    if transition is not None and transition.reason_required and not reason:
        form.reason.errors = [*form.reason.errors, _("请填写理由。")]
    payload: dict[str, Any] = {}
    if transition is not None and transition.subform == "supplement_request":
        if not form.fields.data and not form.materials.data:
            form.fields.errors = [
                *(form.fields.errors or []),
                _("请至少选择一项需要补正的内容或材料。"),
            ]
        payload["supplement"] = {"fields": form.fields.data, "materials": form.materials.data}
    if form.errors:
        return _rerender(app_id, 422, action_forms={trigger: form}, open_action=trigger)
    try:
        result = fire(
            db.session,
            app,
            trigger,
            user,
            reason=reason or None,
            payload=payload,
            today=local_today(),
            expected_version=_version(form.version.data),
        )
    except GuardFailed as exc:
        return _rerender(app_id, 422, failures=exc.failures, open_action=trigger)
    except ValidationFailed as exc:
        form.reason.errors = [*form.reason.errors, exc.message(lang())]
        return _rerender(app_id, 422, action_forms={trigger: form}, open_action=trigger)
    flash(
        _("已完成：%(action)s。", action=label_text(result.transition.label)),
        "success",
    )
    return redirect(url_for("workbench.application", app_id=app.id))


@bp.post("/applications/<int:app_id>/claim")
def claim(app_id: int):
    app = _load_visible(app_id)
    if not can_claim(reviewer(), app):
        abort(403)
    ops.claim(db.session, app, reviewer())
    flash(_("已领取该申报。"), "success")
    return redirect(url_for("workbench.application", app_id=app.id))


@bp.post("/applications/<int:app_id>/release")
def release(app_id: int):
    user = reviewer()
    app = _load_visible(app_id)
    if app.assigned_to_id != user.id and not can_assign(user, app):
        abort(403)
    if not SimpleForm().validate():
        abort(400)
    ops.release(db.session, app, user)
    flash(_("已释放该申报。"), "success")
    return redirect(url_for("workbench.application", app_id=app.id))


@bp.post("/applications/<int:app_id>/assign")
def assign(app_id: int):
    user = reviewer()
    app = _load_visible(app_id)
    if not can_assign(user, app):
        abort(403)
    form = AssignForm()
    form.assignee.choices = assignee_choices(app)
    if not form.validate():
        return _rerender(app_id, 422, assign_form=form)
    assignee = db.session.get(User, form.assignee.data)
    ops.assign(db.session, app, assignee, user)
    flash(_("已分派给%(name)s。", name=assignee.name), "success")
    return redirect(url_for("workbench.application", app_id=app.id))


@bp.post("/applications/<int:app_id>/award")
def correct_award(app_id: int):
    user = reviewer()
    app = _load_visible(app_id)
    if not ops.can_correct_award(db.session, user, app):
        abort(403)
    form = AwardCorrectionForm()
    if not form.validate():
        return _rerender(app_id, 422, award_form=form, open_award=True)
    try:
        ops.correct_award(
            db.session,
            app,
            user,
            form.amount.data,
            form.reason.data,
            expected_version=_version(form.version.data),
        )
    except ValidationFailed as exc:
        form.amount.errors = [exc.message(lang())]
        return _rerender(app_id, 422, award_form=form, open_award=True)
    flash(_("奖励金额已更正。"), "success")
    return redirect(url_for("workbench.application", app_id=app.id))


@bp.get("/attachments/<int:attachment_id>")
def attachment(attachment_id: int):
    att = db.get_or_404(Attachment, attachment_id)
    if not can_view_attachment(reviewer(), att):
        abort(403)
    return send_stored(att.storage_key, att.content_type, att.filename)


def send_stored(key: str, content_type: str, filename: str):
    try:
        data = app_storage().read(key)
    except (StorageError, OSError):
        abort(404)
    inline = content_type in INLINE_TYPES
    response = send_file(
        io.BytesIO(data),
        mimetype=content_type if inline else "application/octet-stream",
        as_attachment=not inline,
        download_name=filename,
        max_age=0,
    )
    response.headers["Cache-Control"] = "private, no-store"
    return response


# ---------------------------------------------------------------- batches


def results_page(results: list[ops.ItemResult], label: Any, back: str | None = None):
    """The per-item results of a batch, with each new state's label."""
    states: dict[str, Any] = {}
    for r in results:
        app = db.session.get(Application, r.application_id)
        if r.ok and app is not None and r.to_state:
            states[r.to_state] = program_of(app).state(r.to_state).label
    return render_template(
        "workbench/batch_results.html", results=results, label=label, back=back, states=states
    )


def _batch_apps(ids: list[int]) -> list[Application]:
    return visible_applications(db.session, reviewer(), ids)


def _batch_transitions(apps: list[Application], action: str) -> list[Transition]:
    out = []
    for app in apps:
        out.extend(compiled(db.session, app.definition_id).candidates(action, app.state))
    return out


@bp.post("/batch")
def batch():
    user = reviewer()
    options = filter_options(user)
    actions = batch_actions(user, options["programs"])
    action = request.form.get("action", "")
    ids = [int(i) for i in request.form.getlist("ids") if i.isdigit()]
    _check_batch_action(action, actions, options["programs"])
    apps = _batch_apps(ids)
    if not apps:
        flash(_("请先勾选申报。"), "error")
        return redirect(url_for("workbench.queue"))
    return _batch_confirm_page(apps, action, actions[action], BatchConfirmForm(formdata=None))


def _check_batch_action(action: str, allowed: dict[str, Any], programs: dict) -> None:
    """403 for an action this user's roles do not allow, 400 for one that does not exist."""
    if action in allowed:
        return
    known = {"assign"} | {t.trigger for p in programs.values() for t in p.transitions}
    abort(403 if action in known else 400)


def _batch_confirm_page(apps: list[Application], action: str, label: Any, form: Any, status=200):
    transitions = _batch_transitions(apps, action)
    needs_reason = any(t.reason_required for t in transitions)
    supplement = any(t.subform == "supplement_request" for t in transitions)
    one_program = len({a.definition_id for a in apps}) == 1
    if supplement and one_program:
        supplement_choices(form, program_of(apps[0]))
    if action == "assign":
        covering = None
        for app in apps:
            ids = {u.id: u for u in ops.reviewers_covering(db.session, app, acting_roles(app))}
            covering = ids if covering is None else {k: v for k, v in covering.items() if k in ids}
        form.assignee.choices = choices((u.id, u.name) for u in (covering or {}).values())
    form.action.data = action
    return render_template(
        "workbench/batch_confirm.html",
        apps=apps,
        action=action,
        label=label,
        form=form,
        needs_reason=needs_reason,
        supplement=supplement,
        one_program=one_program,
    ), status


@bp.post("/batch/confirm")
def batch_confirm():
    user = reviewer()
    options = filter_options(user)
    actions = batch_actions(user, options["programs"])
    form = BatchConfirmForm()
    action = form.action.data or ""
    _check_batch_action(action, actions, options["programs"])
    apps = _batch_apps([int(i) for i in request.form.getlist("ids") if i.isdigit()])
    if not apps:
        flash(_("请先勾选申报。"), "error")
        return redirect(url_for("workbench.queue"))
    transitions = _batch_transitions(apps, action)
    reason = (form.reason.data or "").strip()
    payload: dict[str, Any] = {}
    if any(t.reason_required for t in transitions) and not reason:
        form.reason.errors = [_("请填写理由。")]
    if any(t.subform == "supplement_request" for t in transitions):
        fields = request.form.getlist("fields")
        materials = request.form.getlist("materials")
        if len({a.definition_id for a in apps}) != 1:
            form.fields.errors = [_("批量退回补正时，请只选择同一项目的申报。")]
        elif not fields and not materials:
            form.fields.errors = [_("请至少选择一项需要补正的内容或材料。")]
        payload["supplement"] = {"fields": fields, "materials": materials}
    if action == "assign":
        assignee = db.session.get(User, form.assignee.data) if form.assignee.data else None
        if assignee is None:
            form.assignee.errors = [_("请选择分派对象。")]
    if form.reason.errors or form.fields.errors or form.assignee.errors:
        return _batch_confirm_page(apps, action, actions[action], form, status=422)
    if action == "assign":
        results = ops.batch_assign(db.session, apps, assignee, user)
    else:
        results = ops.batch_fire(
            db.session,
            apps,
            action,
            user,
            reason=reason or None,
            payload=payload,
            today=local_today(),
        )
    return results_page(results, actions[action], None)


# The other workbench pages add their routes to ``bp`` when imported (before the app
# registers the blueprint): expert review and panels, calls and objections.
from . import workbench_calls, workbench_experts  # noqa: E402, F401
