"""Read-side helpers of the applicant portal: what its pages show, assembled from the
models as plain data (calls of a program, an organization's applications, the status
timeline, materials, the pre-check). No state changes here."""

from __future__ import annotations

import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import or_, select

from workflow.definitions.graph import to_mermaid, to_svg
from workflow.definitions.schema import Material, Program, State
from workflow.domain import CalendarNotCoveredError, working_days_between
from workflow.engine import compiled, names_for
from workflow.models import Application, AuditEvent, Call, Decision, PublicNotice, User
from workflow.operations.applications import check_submittable
from workflow.operations.notice import notices_listing
from workflow.rules import check_eligibility, compute_award

from .extensions import db

CHINA = timezone(timedelta(hours=8), "CST")  # no daylight saving in China

# ---------------------------------------------------------------- state diagram

_SVG: dict[tuple[int, str], str] = {}
_SVG_LOCK = threading.Lock()


def graphviz_available() -> bool:
    return shutil.which("dot") is not None


def diagram_svg(definition_id: int, program: Program, lang: str) -> str | None:
    """The state diagram with public labels as SVG, rendered once per definition version
    and language (versions are immutable), or None without Graphviz."""
    key = (definition_id, lang)
    hit = _SVG.get(key)
    if hit is not None:
        return hit
    if not graphviz_available():
        return None
    try:
        svg = to_svg(program, lang, public=True)
    except (RuntimeError, OSError, subprocess.SubprocessError):
        return None
    with _SVG_LOCK:
        return _SVG.setdefault(key, svg)


def diagram_mermaid(program: Program, lang: str) -> str:
    return to_mermaid(program, lang)


def public_stages(prog: Program) -> list[Any]:
    """Public stage labels in order, once each (two supplement states read the same)."""
    seen: dict[str, Any] = {}
    for s in prog.states:
        if not (s.terminal and s.stage == "closed"):
            seen.setdefault(s.public_label.zh, s.public_label)
    return list(seen.values())


def org_type_label(kind: str) -> str:
    labels = {
        "enterprise": _("企业"),
        "university": _("高等学校"),
        "research_institute": _("科研组织"),
        "patent_agency": _("专利代理机构"),
    }
    return labels.get(kind, kind)


# ---------------------------------------------------------------- calls


@dataclass
class CallView:
    call: Call
    is_open: bool
    application: Application | None = None


def program_calls(code: str, user: User | None, today: date) -> list[CallView]:
    """Open and upcoming calls of a program, with the user's application to each."""
    calls = db.session.scalars(
        select(Call)
        .where(Call.program_code == code, Call.status == "published", Call.closes_on >= today)
        .order_by(Call.opens_on, Call.id)
    ).all()
    mine: dict[int, Application] = {}
    if user is not None and user.organization_id is not None and calls:
        for app in db.session.scalars(
            select(Application).where(
                Application.organization_id == user.organization_id,
                Application.call_id.in_([c.id for c in calls]),
            )
        ):
            mine[app.call_id] = app
    return [CallView(c, c.is_open(today), mine.get(c.id)) for c in calls]


# ---------------------------------------------------------------- deadlines


@dataclass
class Deadline:
    on: date
    working_days_left: int | None
    overdue: bool


def deadline(on: date | None, today: date) -> Deadline | None:
    if on is None:
        return None
    left = None
    if on >= today:
        try:
            left = working_days_between(today, on)
        except CalendarNotCoveredError:
            left = None
    return Deadline(on, left, on < today)


def local_time(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(CHINA)


# ---------------------------------------------------------------- my applications


@dataclass
class ApplicationRow:
    app: Application
    program: Program
    state: State
    deadline: Deadline | None
    deadline_kind: str  # "call" (closes), "state" (supplement, notice), ""


def org_applications(org_id: int, today: date) -> list[ApplicationRow]:
    apps = db.session.scalars(
        select(Application)
        .where(Application.organization_id == org_id)
        .order_by(Application.created_at.desc(), Application.id.desc())
    ).all()
    rows = []
    for app in apps:
        program = compiled(db.session, app.definition_id).program
        state = program.state(app.state)
        if app.deadline_on is not None:
            rows.append(
                ApplicationRow(app, program, state, deadline(app.deadline_on, today), "state")
            )
        elif state.stage == "draft":
            rows.append(
                ApplicationRow(app, program, state, deadline(app.call.closes_on, today), "call")
            )
        else:
            rows.append(ApplicationRow(app, program, state, None, ""))
    return rows


# ---------------------------------------------------------------- status page


@dataclass
class TimelineEntry:
    at: datetime
    label: Any  # bilingual public label
    reason: str | None
    current: bool = False


@dataclass
class StatusFacts:
    state: State
    timeline: list[TimelineEntry]
    deadline: Deadline | None
    deadline_kind: str
    supplement: dict[str, Any] | None
    decisions: list[Decision]
    notices: list[PublicNotice]
    requested_fields: list[str] = field(default_factory=list)
    requested_materials: list[Any] = field(default_factory=list)


def timeline(app: Application, program: Program) -> list[TimelineEntry]:
    """Stages the application went through, from its own audit events, with public
    labels only. Reasons are shown where the applicant must know them: a supplement
    request, a rejection or a withdrawal."""
    events = db.session.scalars(
        select(AuditEvent)
        .where(
            AuditEvent.application_id == app.id,
            or_(AuditEvent.action.like("transition.%"), AuditEvent.action == "application.start"),
        )
        .order_by(AuditEvent.occurred_at, AuditEvent.id)
    ).all()
    out: list[TimelineEntry] = []
    for ev in events:
        if ev.to_state is None:
            continue
        try:
            state = program.state(ev.to_state)
        except KeyError:
            continue
        reason = ev.reason if state.stage in ("supplement", "closed") else None
        out.append(TimelineEntry(local_time(ev.occurred_at), state.public_label, reason))
    if out:
        out[-1].current = True
    return out


def status_facts(app: Application, program: Program, today: date) -> StatusFacts:
    state = program.state(app.state)
    if app.deadline_on is not None:
        due, kind = deadline(app.deadline_on, today), "state"
    elif state.stage == "draft":
        due, kind = deadline(app.call.closes_on, today), "call"
    else:
        due, kind = None, ""
    decisions = db.session.scalars(
        select(Decision).where(Decision.application_id == app.id).order_by(Decision.issued_at)
    ).all()
    notices = notices_listing(db.session, app)
    facts = StatusFacts(
        state, timeline(app, program), due, kind, app.supplement_request, decisions, notices
    )
    if app.supplement_request and state.stage == "supplement":
        facts.requested_fields = list(app.supplement_request.get("fields", []))
        kinds = set(app.supplement_request.get("materials", []))
        facts.requested_materials = [m for m in program.materials if m.kind in kinds]
    return facts


# ---------------------------------------------------------------- materials


@dataclass
class MaterialRow:
    material: Material
    files: list[Any]
    can_change: bool
    missing: bool  # needed for submitting and not uploaded yet
    conditional: bool  # needed depending on what the form says


def material_rows(
    app: Application, program: Program, editable: set[str] | None
) -> list[MaterialRow]:
    missing = {
        k.split(".", 1)[1] for k in check_submittable(db.session, app) if k.startswith("material.")
    }
    by_kind: dict[str, list[Any]] = {}
    for att in app.attachments:
        by_kind.setdefault(att.kind, []).append(att)
    return [
        MaterialRow(
            m,
            by_kind.get(m.kind, []),
            editable is None or m.kind in editable,
            m.kind in missing,
            bool(m.required_if),
        )
        for m in program.materials
    ]


# ---------------------------------------------------------------- pre-check


@dataclass
class Precheck:
    rules: list[Any]
    award: Any
    blocking: int


def precheck_results(app: Application, program: Program, today: date) -> Precheck:
    """Every eligibility rule with its result, and the expected award with its trace,
    evaluated on the data as saved now."""
    from workflow.context import table_functions

    names = names_for(db.session, app, program, today)
    functions = table_functions()
    rules = check_eligibility(program, names, functions)
    award = compute_award(program, names, functions)
    blocking = sum(1 for r in rules if not r.passed and r.severity == "error")
    return Precheck(rules, award, blocking)
