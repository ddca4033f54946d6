"""Read-side helpers of the reviewer workbench: the current reviewer and day, labels,
the frozen form in readable form, history, materials, filter options, the context of
the application page. Views in ``webapp/views/workbench*.py`` use them; nothing here
changes state."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from forms.review import ActionForm, AssignForm, AwardCorrectionForm, SimpleForm, choices
from workflow import outbox
from workflow.definitions.schema import Program, Transition
from workflow.domain import (
    CalendarNotCoveredError,
    add_working_days,
    format_yuan,
    working_days_between,
)
from workflow.duplicates import find_duplicates
from workflow.engine import available_transitions, compiled
from workflow.models import (
    Application,
    AuditEvent,
    Call,
    Objection,
    ProgramDefinition,
    Review,
    User,
)
from workflow.operations import review as ops
from workflow.operations.experts import aggregate
from workflow.permissions import can_assign, can_claim, roles_for
from workflow.queues import visible_clause
from workflow.values import typed_params

from .extensions import db
from .hooks import lang

LOCAL_TZ = ZoneInfo("Asia/Shanghai")

OFFICER_ROLES = {"district_officer", "city_officer", "approver", "admin"}

INLINE_TYPES = {"application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp"}

STAGE_LABELS = {
    "draft": lazy_gettext("草稿"),
    "district": lazy_gettext("区县初审"),
    "eligibility": lazy_gettext("资格审查"),
    "supplement": lazy_gettext("补正中"),
    "expert": lazy_gettext("专家评审"),
    "ranking": lazy_gettext("待排名"),
    "approval": lazy_gettext("待审定"),
    "notice": lazy_gettext("公示中"),
    "objection": lazy_gettext("异议核查"),
    "decided": lazy_gettext("已决定"),
    "payment": lazy_gettext("已拨付"),
    "closed": lazy_gettext("已结束"),
}

SORT_LABELS = {
    "submitted": lazy_gettext("提交时间"),
    "deadline": lazy_gettext("办理期限"),
    "number": lazy_gettext("申报编号"),
    "award": lazy_gettext("奖励金额"),
}

ACTION_LABELS = {
    "application.start": lazy_gettext("创建申报"),
    "application.save": lazy_gettext("保存了草稿"),
    "application.claim": lazy_gettext("领取"),
    "application.release": lazy_gettext("释放"),
    "application.assign": lazy_gettext("分派"),
    "award.correct": lazy_gettext("更正奖励金额"),
    "expert.assign": lazy_gettext("分配评审专家"),
    "expert.recuse": lazy_gettext("专家回避"),
    "expert.reassign": lazy_gettext("替补专家"),
    "expert.score": lazy_gettext("专家提交评分"),
    "ranking.rank": lazy_gettext("排名"),
    "objection.lodge": lazy_gettext("收到异议"),
    "objection.uphold": lazy_gettext("异议成立"),
    "objection.dismiss": lazy_gettext("异议不成立"),
}


def reviewer() -> User:
    return current_user._get_current_object()


def local_today() -> date:
    return date.today()


def program_of(app_or_call: Application | Call) -> Program:
    return compiled(db.session, app_or_call.definition_id).program


def stage_of(app: Application) -> str:
    try:
        return program_of(app).state(app.state).stage
    except KeyError:
        return "closed"


def days_left(deadline: date | None, today: date) -> int | None:
    """Working days from today to the deadline (negative when overdue)."""
    if deadline is None:
        return None
    try:
        if deadline >= today:
            return working_days_between(today, deadline)
        return -working_days_between(deadline, today)
    except CalendarNotCoveredError:
        return None


def local_time(moment: datetime | None) -> str:
    """A stored (UTC) time as Beijing time, for display."""
    if moment is None:
        return "—"
    return moment.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")


def yuan(fen: int | None) -> str:
    return "—" if fen is None else format_yuan(int(fen))


def rollback_request() -> None:
    outbox.rollback(db.session)


def load_call(call_id: int) -> Call:
    return db.get_or_404(Call, call_id)


def call_apps(call: Call, stages: set[str]) -> list[Application]:
    apps = db.session.scalars(
        select(Application)
        .options(joinedload(Application.organization))
        .where(Application.call_id == call.id, Application.state != "draft")
        .order_by(Application.submitted_at, Application.id)
    ).all()
    return [a for a in apps if stage_of(a) in stages]


def filter_options(user: User) -> dict[str, Any]:
    """What the queue's filter menus offer this user: the programs their grants cover
    (latest definition of each), those programs' calls, the districts of the
    applications they can see, and the states (with labels) of those programs."""
    rows = db.session.execute(
        select(ProgramDefinition.id, ProgramDefinition.code).order_by(ProgramDefinition.id)
    ).all()
    latest: dict[str, int] = {}
    for definition_id, code in rows:
        latest[code] = definition_id
    programs = {code: compiled(db.session, d).program for code, d in latest.items()}
    scoped = {g.program_code for g in user.grants}
    if None not in scoped:
        programs = {c: p for c, p in programs.items() if c in scoped}
    calls = db.session.scalars(
        select(Call).where(Call.program_code.in_(sorted(programs))).order_by(Call.year.desc())
    ).all()
    districts = db.session.scalars(
        select(Application.district).where(visible_clause(user)).distinct()
    ).all()
    states: dict[str, Any] = {}
    for program in programs.values():
        for s in program.states:
            if s.name != program.initial:
                states.setdefault(s.name, s.label)
    return {
        "programs": programs,
        "calls": calls,
        "districts": sorted(d for d in districts if d),
        "states": states,
    }


def batch_actions(user: User, programs: dict[str, Program]) -> dict[str, Any]:
    """Batch-capable transitions of the visible programs this user's roles may fire,
    plus returns for supplement and (for lead officers) assignment."""
    roles = user.roles()
    actions: dict[str, Any] = {}
    # Batch transitions first (passes, approvals), then returns for supplement.
    for wanted in (lambda t: t.batch, lambda t: t.subform == "supplement_request"):
        for program in programs.values():
            for t in program.transitions:
                if wanted(t) and roles & set(t.roles):
                    actions.setdefault(t.trigger, t.label)
    if any(g.is_lead for g in user.grants):
        actions["assign"] = {"zh": "分派", "en": "Assign"}
    return actions


def readable_sections(program: Program, form: dict[str, Any]) -> list[dict[str, Any]]:
    """The frozen form as sections of (label, value) or tables, with the definition's
    labels and choices (display values are plain text, escaped by the template)."""
    out = []
    for section in program.form.sections:
        if section.repeatable:
            rows = [r for r in (form.get(section.key) or []) if isinstance(r, dict)]
            out.append(
                {
                    "title": section.title,
                    "table": True,
                    "headers": [f.label for f in section.fields],
                    "rows": [
                        [display_value(f, r.get(f.key)) for f in section.fields] for r in rows
                    ],
                }
            )
        else:
            out.append(
                {
                    "title": section.title,
                    "table": False,
                    "fields": [
                        (f.label, display_value(f, form.get(f.key))) for f in section.fields
                    ],
                }
            )
    return out


def display_value(field: Any, value: Any) -> Any:
    if value is None or value == "" or value == []:
        return "—"
    if field.type == "boolean":
        return _("是") if value in (True, "true", "1", "on") else _("否")
    if field.type in ("choice", "multichoice") and field.choices:
        labels = {c.value: c.label for c in field.choices}
        values = value if isinstance(value, list) else [value]
        return "、".join(label_text(labels.get(v, v)) for v in values)
    if field.type == "money":
        try:
            return format_yuan(Decimal(str(value)))
        except (ArithmeticError, ValueError):
            return str(value)
    if field.type == "percent":
        return f"{value}%"
    return str(value)


def label_text(label: Any) -> str:
    if hasattr(label, "get") and hasattr(label, "zh"):
        return label.get(lang())
    return str(label)


def history_of(app: Application, program: Program) -> list[dict[str, Any]]:
    rows = db.session.execute(
        select(AuditEvent, User.name)
        .outerjoin(User, User.id == AuditEvent.actor_id)
        .where(AuditEvent.application_id == app.id)
        .order_by(AuditEvent.occurred_at, AuditEvent.id)
    ).all()
    labels = {t.trigger: t.label for t in program.transitions}
    out = []
    for ev, name in rows:
        if ev.action.startswith("transition."):
            label = labels.get(ev.action.split(".", 1)[1], ev.action)
        else:
            label = ACTION_LABELS.get(ev.action, ev.action)
        out.append({"event": ev, "actor": name or ev.actor_role or "", "label": label})
    return out


def materials_of(app: Application, program: Program) -> list[dict[str, Any]]:
    labels = {m.kind: m.label for m in program.materials}
    frozen = {m.get("id") for m in (app.snapshot or {}).get("materials", [])}
    items = []
    for att in app.attachments:
        if frozen and att.id not in frozen:
            continue
        items.append(
            {
                "att": att,
                "label": labels.get(att.kind, att.kind),
                "pdf": att.content_type == "application/pdf",
                "image": att.content_type.startswith("image/") and att.content_type in INLINE_TYPES,
            }
        )
    return items


def action_forms(app: Application, transitions: list[Transition]) -> dict[str, ActionForm]:
    forms = {}
    for t in transitions:
        form = ActionForm(prefix=t.trigger, formdata=None)
        supplement_choices(form, program_of(app))
        form.version.data = str(app.version)
        forms[t.trigger] = form
    return forms


def supplement_choices(form: Any, program: Program) -> None:
    fields = []
    for s in program.form.sections:
        if s.repeatable:
            fields.append((s.key, label_text(s.title)))
        else:
            fields.extend((f.key, label_text(f.label)) for f in s.fields)
    form.fields.choices = choices(fields)
    form.materials.choices = choices((m.kind, label_text(m.label)) for m in program.materials)


def acting_roles(app: Application) -> set[str]:
    """Review roles that can act on the application in its current state (whom it makes
    sense to assign it to); all review roles when no person acts here."""
    comp = compiled(db.session, app.definition_id)
    roles = {r for t in comp.transitions_from(app.state) for r in t.roles} & ops.ASSIGNABLE
    return roles or set(ops.ASSIGNABLE)


def assignee_choices(app: Application) -> list:
    users = ops.reviewers_covering(db.session, app, acting_roles(app))
    return choices((u.id, u.name) for u in users)


def deadline_preview(app: Application, t: Transition, today: date) -> date | None:
    days = t.deadline_working_days
    if days is None:
        return None
    if isinstance(days, str):
        days = typed_params(program_of(app), app.call.params).get(days)
    try:
        return add_working_days(today, int(days))
    except (CalendarNotCoveredError, TypeError, ValueError):
        return None


def expert_panel(app: Application, program: Program) -> dict[str, Any] | None:
    if program.scoring is None:
        return None
    sheets = db.session.scalars(
        select(Review)
        .options(joinedload(Review.reviewer))
        .where(Review.application_id == app.id, Review.kind == "expert")
        .order_by(Review.id)
    ).all()
    return {"sheets": sheets, "aggregate": aggregate(db.session, app), "rubric": program.scoring}


def own_review(user: User, app: Application) -> Review | None:
    return db.session.scalar(
        select(Review).where(
            Review.application_id == app.id,
            Review.reviewer_id == user.id,
            Review.kind == "expert",
            Review.status != "recused",
        )
    )


def has_pending_objection(app: Application) -> bool:
    return (
        db.session.scalar(
            select(Objection.id)
            .where(Objection.application_id == app.id, Objection.status == "pending")
            .limit(1)
        )
        is not None
    )


def page_context(app: Application, user: User, **overrides: Any) -> dict[str, Any]:
    today = local_today()
    program = program_of(app)
    transitions = available_transitions(db.session, app, user, today)
    roles = roles_for(user, app)
    form = (app.snapshot or {}).get("form") or app.form_data or {}
    earlier = db.session.scalars(
        select(Application)
        .options(joinedload(Application.call))
        .where(
            Application.organization_id == app.organization_id,
            Application.id != app.id,
            Application.state != "draft",
        )
        .order_by(Application.submitted_at.desc())
    ).all()
    objections = db.session.scalars(
        select(Objection).where(Objection.application_id == app.id).order_by(Objection.id)
    ).all()
    pending = [o for o in objections if o.status == "pending"]
    if pending:
        # Lodged objections are decided one by one on their own page (decide_objection
        # keeps each objection's status); the bare transitions are for objections
        # received outside the system.
        transitions = [t for t in transitions if t.subform != "objection_decision"]
    assign_form = None
    if can_assign(user, app):
        assign_form = AssignForm(formdata=None)
        assign_form.assignee.choices = assignee_choices(app)
    award_form = None
    if ops.can_correct_award(db.session, user, app):
        award_form = AwardCorrectionForm(formdata=None)
        award_form.version.data = str(app.version)
    context = {
        "app": app,
        "program": program,
        "state": program.state(app.state),
        "stage": stage_of(app),
        "sections": readable_sections(program, form),
        "materials": materials_of(app, program),
        "eligibility": app.eligibility or [],
        "trace": app.award_trace or {},
        "history": history_of(app, program),
        "earlier": earlier,
        "duplicates": find_duplicates(db.session, app),
        "objections": objections,
        "pending_objections": pending,
        "transitions": transitions,
        "action_forms": action_forms(app, transitions),
        "deadlines": {t.trigger: deadline_preview(app, t, today) for t in transitions},
        "claim_form": SimpleForm(formdata=None) if can_claim(user, app) else None,
        "can_release": app.assigned_to_id is not None
        and (app.assigned_to_id == user.id or can_assign(user, app)),
        "assign_form": assign_form,
        "award_form": award_form,
        "experts": expert_panel(app, program) if roles & OFFICER_ROLES else None,
        "failures": [],
    }
    context.update(overrides)
    return context
