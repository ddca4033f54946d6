"""Expert review in the workbench (专家评审): an expert's own assignments and score
sheets (conflict declaration or recusal), and the officer's panel page per call (assign
experts, complete scoring, rank the call). An expert only ever reaches their own sheet:
another expert's sheet is a 404, and experts never see the application's history or
the other sheets. Routes are added to the ``workbench`` blueprint."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from forms.review import PanelForm, RecuseForm, SimpleForm, score_sheet_form
from workflow.definitions.schema import Program
from workflow.models import Application, Call, Review
from workflow.operations import review as ops
from workflow.operations.experts import aggregate, recuse, submit_scores
from workflow.permissions import SystemActor, can_manage_panels
from workflow.queues import STAGE_ORDER

from ..extensions import db
from ..review_pages import (
    call_apps,
    load_call,
    local_today,
    materials_of,
    program_of,
    readable_sections,
    reviewer,
    stage_of,
)
from .workbench import bp as workbench_bp
from .workbench import results_page

# ---------------------------------------------------------------- experts


@workbench_bp.get("/expert")
def expert_list():
    user = reviewer()
    rows = db.session.execute(
        select(Review, Application)
        .join(Application, Application.id == Review.application_id)
        .options(joinedload(Application.organization), joinedload(Application.call))
        .where(Review.reviewer_id == user.id, Review.kind == "expert")
        .order_by(Review.status, Review.created_at, Review.id)
    ).all()
    return render_template("workbench/expert_list.html", rows=rows)


def _load_own_review(review_id: int) -> tuple[Review, Application]:
    review = db.get_or_404(Review, review_id)
    if review.kind != "expert" or review.reviewer_id != reviewer().id:
        abort(404)  # another expert's sheet does not exist as far as this user knows
    app = db.get_or_404(Application, review.application_id)
    return review, app


def _sheet_context(review: Review, app: Application, **overrides: Any) -> dict[str, Any]:
    program = program_of(app)
    form_class = score_sheet_form(program.scoring.rubric if program.scoring else [])
    context = {
        "review": review,
        "app": app,
        "program": program,
        "sections": readable_sections(program, (app.snapshot or {}).get("form") or {}),
        "materials": materials_of(app, program),
        "form": form_class(formdata=None),
        "recuse_form": RecuseForm(formdata=None),
        "open": review.status == "assigned" and stage_of(app) == "expert",
    }
    context.update(overrides)
    return context


@workbench_bp.get("/expert/reviews/<int:review_id>")
def score_sheet(review_id: int):
    review, app = _load_own_review(review_id)
    return render_template("workbench/score_sheet.html", **_sheet_context(review, app))


@workbench_bp.post("/expert/reviews/<int:review_id>")
def submit_sheet(review_id: int):
    user = reviewer()
    review, app = _load_own_review(review_id)
    program = program_of(app)
    if program.scoring is None:
        abort(404)
    form = score_sheet_form(program.scoring.rubric)()
    if not form.validate():
        context = _sheet_context(review, app, form=form)
        return render_template("workbench/score_sheet.html", **context), 422
    scores = {c.key: str(form[f"score_{c.key}"].data) for c in program.scoring.rubric}
    submit_scores(
        db.session, review, user, scores, form.comment.data, no_conflict=form.no_conflict.data
    )
    # The last sheet in completes the scoring (the system fires it when the guard holds).
    ops.batch_fire(
        db.session, [app], "complete_scoring", SystemActor("system"), today=local_today()
    )
    flash(_("评分已提交。"), "success")
    return redirect(url_for("workbench.score_sheet", review_id=review.id))


@workbench_bp.post("/expert/reviews/<int:review_id>/recuse")
def recuse_sheet(review_id: int):
    user = reviewer()
    review, app = _load_own_review(review_id)
    form = RecuseForm()
    if not form.validate():
        context = _sheet_context(review, app, recuse_form=form)
        return render_template("workbench/score_sheet.html", **context), 422
    replacement = recuse(db.session, review, user, form.reason.data)
    flash(
        _("已回避，系统已指派替补专家。")
        if replacement
        else _("已回避，请联系经办人员另行指派专家。"),
        "success",
    )
    return redirect(url_for("workbench.expert_list"))


# ---------------------------------------------------------------- calls: panels, meetings


def _panel_access(call_id: int) -> tuple[Call, Program]:
    call = load_call(call_id)
    program = program_of(call)
    if program.scoring is None:
        abort(404)
    if not can_manage_panels(reviewer(), call.program_code):
        abort(403)
    return call, program


@workbench_bp.get("/calls/<int:call_id>/panel")
def panel(call_id: int, form: PanelForm | None = None, status: int = 200):
    call, program = _panel_access(call_id)
    in_review = call_apps(call, {"expert"})
    reviews = db.session.scalars(
        select(Review)
        .options(joinedload(Review.reviewer))
        .where(Review.application_id.in_([a.id for a in in_review]), Review.kind == "expert")
        .order_by(Review.id)
    ).all()
    by_app: dict[int, list[Review]] = {}
    for r in reviews:
        by_app.setdefault(r.application_id, []).append(r)
    ranked = [a for a in call_apps(call, set(STAGE_ORDER)) if a.rank is not None]
    ranked.sort(key=lambda a: a.rank)
    return render_template(
        "workbench/panel.html",
        call=call,
        program=program,
        apps=in_review,
        reviews=by_app,
        aggregates={a.id: aggregate(db.session, a) for a in in_review},
        waiting=call_apps(call, {"ranking"}),
        ranked=ranked,
        form=form or PanelForm(formdata=None),
        button=SimpleForm(formdata=None),
    ), status


@workbench_bp.post("/calls/<int:call_id>/panel/assign")
def panel_assign(call_id: int):
    call, _program_ = _panel_access(call_id)
    form = PanelForm()
    if not form.validate():
        return panel(call_id, form=form, status=422)
    results = ops.assign_panel(db.session, call_apps(call, {"expert"}), form.size.data, reviewer())
    short = [r for r in results if r.short]
    if short:
        flash(
            _("专家库人数不足：%(n)s件申报未能配齐专家。", n=len(short)),
            "warning",
        )
    flash(_("已为%(n)s件申报分配专家。", n=len(results)), "success")
    return redirect(url_for("workbench.panel", call_id=call.id))


@workbench_bp.post("/calls/<int:call_id>/panel/complete")
def panel_complete(call_id: int):
    call, _program_ = _panel_access(call_id)
    if not SimpleForm().validate():
        abort(400)
    apps = call_apps(call, {"expert"})
    results = ops.batch_fire(db.session, apps, "complete_scoring", reviewer(), today=local_today())
    return results_page(
        results,
        {"zh": "专家评审完成", "en": "Scoring complete"},
        url_for("workbench.panel", call_id=call.id),
    )


@workbench_bp.post("/calls/<int:call_id>/panel/rank")
def panel_rank(call_id: int):
    call, _program_ = _panel_access(call_id)
    if not SimpleForm().validate():
        abort(400)
    outcomes = ops.rank_and_select(db.session, call, reviewer(), today=local_today())
    if not outcomes:
        flash(_("没有待排名的申报。"), "warning")
    else:
        flash(_("已完成排名：%(n)s件申报。", n=len(outcomes)), "success")
    return redirect(url_for("workbench.panel", call_id=call.id))
