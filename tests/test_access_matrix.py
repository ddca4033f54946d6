"""Access matrix: every route x method x role against the status class it must answer.

The matrix below is data: for each endpoint, the roles ALLOWED to use it. Everyone else
is refused (401/403/404, or for anonymous visitors a redirect to the login page), a
refused POST leaves the database unchanged, and nobody ever gets a 500. A route the
matrix does not classify fails ``test_every_route_is_classified``: each new route needs
an entry here.

Each role runs in its own test against a freshly built world (the objects the routes
need, made through the real operations), so an allowed POST of one role (a transition, a
revoked grant...) never changes what another role sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pytest
import yaml
from flask import g, request_started, url_for
from sqlalchemy import func, select

from tests import reliability
from tests.conftest import Factory, login
from tests.test_experts import SCENARIO  # holds a valid branded-agency form
from workflow import outbox
from workflow.engine import fire
from workflow.models import (
    Application,
    AuditEvent,
    Decision,
    DisbursementBatch,
    DisbursementLine,
    JobRecord,
    Notification,
    Objection,
    OutboxJob,
    Review,
    RoleGrant,
    User,
)
from workflow.operations import finance as finance_ops
from workflow.operations.applications import submit_application
from workflow.operations.experts import assign_expert
from workflow.operations.notice import publish_notice
from workflow.scheduler import sweep_deadlines
from workflow.storage import LocalStorage

TODAY = date.today()

# ---------------------------------------------------------------- roles

ANON = "anonymous"
APPL_A = "applicant_a"  # owns the applications below (org A, 朝阳区)
APPL_B = "applicant_b"
DIST_IN = "district_in"  # district officer of 朝阳区
DIST_OUT = "district_out"  # district officer of 南关区
CITY = "city"  # lead city officer
EXPERT = "expert"  # assigned to the expert-stage application
EXPERT_OTHER = "expert_other"
APPROVER = "approver"
FINANCE = "finance"
ADMIN = "admin"
ROLES = (
    ANON,
    APPL_A,
    APPL_B,
    DIST_IN,
    DIST_OUT,
    CITY,
    EXPERT,
    EXPERT_OTHER,
    APPROVER,
    FINANCE,
    ADMIN,
)

EVERYONE = frozenset(ROLES)
SIGNED_IN = EVERYONE - {ANON}
APPLICANTS = frozenset({APPL_A, APPL_B})
WORKBENCH = frozenset({DIST_IN, DIST_OUT, CITY, EXPERT, EXPERT_OTHER, APPROVER, ADMIN})
REVIEWERS_OF_A = frozenset({DIST_IN, CITY, APPROVER, ADMIN})
VIEWERS_OF_A = REVIEWERS_OF_A | {APPL_A, FINANCE}
CITY_WIDE_DOCS = frozenset({CITY, APPROVER, ADMIN})
FINANCE_VIEW = frozenset({FINANCE, APPROVER, ADMIN})
FINANCE_MANAGE = frozenset({FINANCE})
PANEL = frozenset({CITY, ADMIN})

# ---------------------------------------------------------------- the matrix

# endpoint -> roles allowed. Objects: "A" is org A's certification-reward application in
# city_review; "C" is org A's approved application (decision, notice, batch line,
# objection); "X" is an agency's branded-agency application in expert_review.
ALLOWED: dict[str, frozenset[str]] = {
    # public
    "public.index": EVERYONE,
    "public.healthz": EVERYONE,
    "notices.index": EVERYONE,
    "notices.show": EVERYONE,
    "notices.pdf": EVERYONE,
    "notices.object_to": EVERYONE,
    "documents.verify": EVERYONE,
    "portal.program": EVERYONE,
    "portal.diagram": EVERYONE,
    # auth: the public forms, then the account of whoever is signed in
    "auth.login": EVERYONE,
    "auth.login_2fa": EVERYONE,
    "auth.logout": EVERYONE,
    "auth.register": EVERYONE,
    "auth.password_forgot": EVERYONE,
    "auth.password_reset": EVERYONE,
    "auth.invite_accept": EVERYONE,
    "auth.account": SIGNED_IN,
    "auth.account_profile": SIGNED_IN,
    "auth.account_password": SIGNED_IN,
    "auth.totp_setup": SIGNED_IN,
    "auth.totp_confirm": SIGNED_IN,
    "auth.totp_disable": SIGNED_IN,
    "auth.organization": APPLICANTS,
    "auth.organization_invite": APPLICANTS,
    # notifications (the notification belongs to applicant A)
    "notifications.index": SIGNED_IN,
    "notifications.mark_all_read": SIGNED_IN,
    "notifications.mark_read": frozenset({APPL_A}),
    # applicant portal (application A, decision of C)
    "portal.dashboard": APPLICANTS,
    "portal.apply": APPLICANTS,
    "portal.status": frozenset({APPL_A}),
    "portal.edit": frozenset({APPL_A}),
    "portal.materials": frozenset({APPL_A}),
    "portal.precheck": frozenset({APPL_A}),
    "portal.submit": frozenset({APPL_A}),
    "portal.withdraw": frozenset({APPL_A}),
    "portal.delete_material": frozenset({APPL_A}),  # a draft's attachment
    "portal.attachment": VIEWERS_OF_A,
    "portal.decision_pdf": VIEWERS_OF_A,
    # workbench
    "workbench.queue": WORKBENCH,
    "workbench.calls": WORKBENCH,
    "workbench.expert_list": WORKBENCH,
    "workbench.batch": WORKBENCH,
    "workbench.batch_confirm": WORKBENCH,
    "workbench.objections": WORKBENCH,
    "workbench.application": REVIEWERS_OF_A,
    "workbench.attachment": REVIEWERS_OF_A,
    "workbench.claim": REVIEWERS_OF_A,
    "workbench.release": REVIEWERS_OF_A,
    "workbench.assign": frozenset({CITY}),
    "workbench.fire_transition": frozenset({CITY}),
    # A is at the eligibility stage: only the city officer corrects the award there.
    "workbench.correct_award": frozenset({CITY}),
    "workbench.meeting": frozenset({APPROVER}),
    "workbench.meeting_allocate": frozenset({APPROVER}),
    "workbench.meeting_decide": frozenset({APPROVER}),
    "workbench.publish": frozenset({CITY, APPROVER}),
    # The roles of the program's uphold/dismiss-objection transitions.
    "workbench.objection": frozenset({CITY}),
    "workbench.objection_evidence": frozenset({CITY}),
    "workbench.panel": PANEL,
    "workbench.panel_assign": PANEL,
    "workbench.panel_complete": PANEL,
    "workbench.panel_rank": PANEL,
    "workbench.score_sheet": frozenset({EXPERT}),
    "workbench.submit_sheet": frozenset({EXPERT}),
    "workbench.recuse_sheet": frozenset({EXPERT}),
    # decision documents and their jobs (the job belongs to the city officer)
    "documents.calls": CITY_WIDE_DOCS,
    "documents.call_documents": CITY_WIDE_DOCS,
    "documents.render_missing": CITY_WIDE_DOCS,
    "documents.zip_decisions": CITY_WIDE_DOCS,
    "documents.job": frozenset({CITY, ADMIN}),
    "documents.progress": frozenset({CITY, ADMIN}),
    "documents.download": CITY_WIDE_DOCS,
    # finance
    "finance.index": FINANCE_VIEW,
    "finance.batches": FINANCE_VIEW,
    "finance.batch_detail": FINANCE_VIEW,
    "finance.export_csv": FINANCE_MANAGE,  # bank files: finance only
    "finance.export_xlsx": FINANCE_MANAGE,
    "finance.dashboards": FINANCE_VIEW,
    "finance.dashboard_csv": FINANCE_VIEW,
    "finance.reconciliation": FINANCE_VIEW,
    "finance.reconciliation_csv": FINANCE_VIEW,
    "finance.clawbacks": FINANCE_VIEW,
    "finance.new_batch": FINANCE_MANAGE,
    "finance.create_batch": FINANCE_MANAGE,
    "finance.create_clawback": FINANCE_MANAGE,
    "finance.discard": FINANCE_MANAGE,
    "finance.lock": FINANCE_MANAGE,
    "finance.verify": FINANCE_VIEW,  # re-checks a locked batch's hash: a read
    "finance.rebatch": FINANCE_MANAGE,
    "finance.import_results": FINANCE_MANAGE,
    "finance.line_result": FINANCE_MANAGE,
    "finance.remove_line": FINANCE_MANAGE,
    # administration
    "admin.index": frozenset({ADMIN}),
    "admin.users": frozenset({ADMIN}),
    "admin.user": frozenset({ADMIN}),
    "admin.grant": frozenset({ADMIN}),
    "admin.revoke": frozenset({ADMIN}),
    "admin.queues": frozenset({ADMIN}),
    "admin.retry_job": frozenset({ADMIN}),
    "admin.delete_job": frozenset({ADMIN}),
    "admin.resend": frozenset({ADMIN}),
}

# Further cases on application X (the expert-stage one, of an agency in 朝阳区): the
# assigned expert reads it, the other expert and org A's applicant do not.
REVIEWERS_OF_X = frozenset({DIST_IN, CITY, EXPERT, APPROVER, ADMIN})
EXTRA_CASES: list[tuple[str, str, str, frozenset[str]]] = [
    # (endpoint, method, world value used as app_id, allowed roles)
    ("workbench.application", "GET", "app_x", REVIEWERS_OF_X),
    ("portal.status", "GET", "app_x", frozenset()),
    ("portal.precheck", "GET", "app_x", frozenset()),
]

# Endpoints that serve a stored file: the world stores none, so an allowed role may get
# 404 (file missing) after passing the access check; refused roles still get 401/403.
FILE_MISSING_OK = {
    "portal.attachment",
    "portal.decision_pdf",
    "workbench.attachment",
    "workbench.objection_evidence",
    "documents.download",
    # No Redis in tests: no failed job exists, so the admin gets "not found".
    "admin.retry_job",
    "admin.delete_job",
}

# Known bugs: (endpoint, method, role) -> reason. Each is an xfail(strict=True) case.
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}

# POSTs that end what later requests of the same role need: run after all the others.
RUN_LAST = {"auth.logout", "finance.discard", "portal.withdraw", "admin.revoke"}

SKIPPED_ENDPOINTS = {"static", "bootstrap.static"}
LOGIN_PATH = "/login"


# ---------------------------------------------------------------- the world


@dataclass
class World:
    users: dict[str, User | None]
    values: dict[str, Any]


def build_world(session: Any, make: Factory, cert_form: dict[str, Any], app: Any) -> World:
    """Every object a route needs, made through the real operations."""
    org_a = make.org(district="朝阳区")
    appl_a = make.user("applicant", org=org_a)
    appl_b = make.applicant(district="南关区")
    city = make.user("city_officer", lead=True)
    users: dict[str, User | None] = {
        ANON: None,
        APPL_A: appl_a,
        APPL_B: appl_b,
        DIST_IN: make.user("district_officer", district="朝阳区"),
        DIST_OUT: make.user("district_officer", district="南关区"),
        CITY: city,
        EXPERT: make.user("expert"),
        EXPERT_OTHER: make.user("expert"),
        APPROVER: make.user("approver"),
        FINANCE: make.user("finance"),
        ADMIN: make.user("admin"),
    }
    approver = users[APPROVER]

    # C: approved with its decision, under a notice, with an objection and a batch line.
    call_c = make.call("certification_reward", params={"district_prereview": False})
    app_c = make.application(call_c, appl_a, {**cert_form, "cert_number": "165IP25C001R0M"})
    submit_application(session, app_c, appl_a, today=TODAY)
    fire(session, app_c, "pass_eligibility", city, today=TODAY)
    fire(session, app_c, "approve", approver, today=TODAY, reason="2026年第1次审定会")
    notice = publish_notice(session, call_c, approver, today=TODAY)
    sweep_deadlines(session, app_c.deadline_on + timedelta(days=1))
    assert app_c.state == "approved", app_c.state
    # Inserted after the sweep: a pending objection holds the notice open.
    objection = Objection(
        application_id=app_c.id,
        notice_id=notice.id,
        name="张三",
        contact="13900000000",
        reason="该单位的认证证书已于本年度被认证机构暂停。",
    )
    session.add(objection)
    session.flush()
    decision = session.scalar(
        select(Decision).where(Decision.application_id == app_c.id, Decision.kind == "approval")
    )
    batch = finance_ops.build_batch(session, users[FINANCE], finance_ops.BatchFilters())
    line = session.scalar(select(DisbursementLine).where(DisbursementLine.batch_id == batch.id))

    # A: submitted, in city review, with its attachments.
    call_a = make.call("certification_reward", params={"district_prereview": False})
    app_a = make.application(call_a, appl_a, cert_form)
    submit_application(session, app_a, appl_a, today=TODAY)
    assert app_a.state == "city_review", app_a.state
    attachment = app_a.attachments[0]
    call_d = make.call("certification_reward", params={"district_prereview": False})
    draft = make.application(call_d, appl_a, cert_form)

    # X: an agency's branded-agency application in expert review, one expert assigned.
    call_x = make.call("branded_agency")
    agency = make.applicant(org_type="patent_agency")
    branded_form = yaml.safe_load(SCENARIO.read_text(encoding="utf-8"))["applications"][0]["form"]
    app_x = make.application(call_x, agency, branded_form)
    submit_application(session, app_x, agency, today=TODAY)
    fire(session, app_x, "pass_eligibility", city, today=TODAY)
    assert app_x.state == "expert_review", app_x.state
    review = assign_expert(session, app_x, users[EXPERT], city)

    # A notification for applicant A, an outbox row, a finished zip job of the city officer.
    notification = Notification(
        user_id=appl_a.id, kind="test", title="测试通知", application_id=app_a.id
    )
    outbox_row = OutboxJob(job_id=f"matrix-{app_a.id}", queue="default", func="noop", args={})
    storage = LocalStorage(app.config["STORAGE_DIR"])
    key, _sha = storage.put(b"PK\x05\x06" + b"\x00" * 18, prefix="jobs")
    job = JobRecord(
        job_id=f"zip-call-{call_c.id}-1",
        kind="zip_decisions",  # batch_documents.ZIP_KIND
        owner_id=city.id,
        total=1,
        done=1,
        status="done",
        result_storage_key=key,
    )
    session.add_all([notification, outbox_row, job])
    session.flush()
    other_grant = users[EXPERT_OTHER].grants[0]

    values = {
        "app_a": app_a.id,
        "app_x": app_x.id,
        "call_a": call_a.id,
        "call_c": call_c.id,
        "call_x": call_x.id,
        "attachment_id": attachment.id,
        "draft_attachment_id": draft.attachments[0].id,
        "decision_id": decision.id,
        "verification_code": decision.verification_code,
        "notice_id": notice.id,
        "objection_id": objection.id,
        "batch_id": batch.id,
        "line_id": line.id,
        "review_id": review.id,
        "notification_id": notification.id,
        "row_id": outbox_row.id,
        "job_id": job.job_id,
        "user_id": users[EXPERT_OTHER].id,
        "grant_id": other_grant.id,
        "program_code": "certification_reward",
    }
    session.commit()
    return World(users=users, values=values)


# Which object each URL variable names, per endpoint where it differs from the default.
def url_values(endpoint: str, arguments: set[str], v: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for arg in arguments:
        if arg == "app_id":
            out[arg] = v["app_a"]
        elif arg == "call_id":
            if endpoint.startswith("workbench.panel"):
                out[arg] = v["call_x"]
            elif endpoint == "portal.apply" or endpoint.startswith("workbench.meeting"):
                out[arg] = v["call_a"]
            else:
                out[arg] = v["call_c"]
        elif arg == "code":
            out[arg] = (
                v["verification_code"] if endpoint == "documents.verify" else v["program_code"]
            )
        elif arg == "attachment_id" and endpoint == "portal.delete_material":
            out[arg] = v["draft_attachment_id"]
        elif arg == "trigger":
            out[arg] = "pass_eligibility"
        elif arg == "name":
            out[arg] = "stages"
        elif arg == "queue":
            out[arg] = "default"
        elif arg == "job_id" and endpoint.startswith("admin."):
            out[arg] = "no-such-job"
        elif arg == "token":
            out[arg] = "not-a-valid-token"
        else:
            out[arg] = v[arg]
    return out


# ---------------------------------------------------------------- checks


def routes(app: Any) -> list[tuple[str, str, Any]]:
    """(endpoint, method, rule) for every route and method: GETs first, then POSTs,
    then the POSTs that end what others need (RUN_LAST)."""
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in SKIPPED_ENDPOINTS:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((rule.endpoint, method, rule))
    return sorted(out, key=lambda r: (r[1] != "GET", r[0] in RUN_LAST, r[0], r[1]))


def snapshot(session: Any) -> tuple:
    """What a refused POST must not change."""
    session.expire_all()
    return (
        session.scalar(select(func.count()).select_from(AuditEvent)),
        tuple(session.execute(select(Application.id, Application.state, Application.version))),
        tuple(session.execute(select(DisbursementBatch.id, DisbursementBatch.status))),
        tuple(session.execute(select(DisbursementLine.id, DisbursementLine.status))),
        tuple(session.execute(select(RoleGrant.id, RoleGrant.role))),
        tuple(session.execute(select(Review.id, Review.status))),
        tuple(session.execute(select(Objection.id, Objection.status))),
        tuple(session.execute(select(Notification.id, Notification.read_at))),
        session.scalar(select(func.count()).select_from(OutboxJob)),
        session.scalar(select(func.count()).select_from(JobRecord)),
    )


def judge(
    role: str, endpoint: str, status: int, location: str, allowed: frozenset[str]
) -> str | None:
    """None if the answer has the expected class, else what is wrong."""
    if status >= 500:
        return f"server error {status}"
    if role in allowed:
        if status in (401, 403):
            return f"allowed role refused with {status}"
        if status == 404 and endpoint not in FILE_MISSING_OK:
            return "allowed role got 404"
        return None
    if status in (401, 403, 404):
        return None
    if role == ANON and status in (302, 303) and location.split("?")[0].endswith(LOGIN_PATH):
        return None
    return f"refused role got {status}" + (f" -> {location}" if location else "")


@dataclass
class Totals:
    requests: int = 0
    denied_checked: int = 0
    failures: int = 0


TOTALS = Totals()
ROLES_RUN: set[str] = set()


@pytest.fixture(autouse=True)
def fresh_request_globals(app):
    """Start each request without the user Flask-Login cached and without the previous
    request's rolled-back flag (requests share the test's app context)."""

    def reset(sender, **extra):
        g.pop("_login_user", None)
        g.pop("rolled_back", None)

    request_started.connect(reset, app)
    yield
    request_started.disconnect(reset, app)


@pytest.fixture
def world(app, session, make, cert_form, monkeypatch) -> World:
    # Decision PDFs and mail are rendered by the outbox relay after commits; the matrix
    # needs the rows only.
    monkeypatch.setattr(outbox, "_relay", None)
    return build_world(session, make, cert_form, app)


def test_every_route_is_classified(app):
    """A new route fails here until the matrix says who may use it."""
    endpoints = {r.endpoint for r in app.url_map.iter_rules()} - SKIPPED_ENDPOINTS
    assert sorted(endpoints - ALLOWED.keys()) == [], "routes missing from ALLOWED"
    assert sorted(ALLOWED.keys() - endpoints) == [], "ALLOWED names routes that no longer exist"
    for endpoint, roles in ALLOWED.items():
        assert roles <= EVERYONE, endpoint


def _cases() -> list[Any]:
    out = []
    for role in ROLES:
        bugs = {k: r for k, r in KNOWN_BUGS.items() if k[2] == role}
        marks = []
        if bugs:
            reason = "; ".join(f"{e} {m}: {r}" for (e, m, _r), r in bugs.items())
            marks.append(pytest.mark.xfail(strict=True, reason=reason))
        out.append(pytest.param(role, marks=marks, id=role))
    return out


@pytest.mark.parametrize("role", _cases())
def test_access_matrix(app, session, client, world, role):
    """Every route and method as ``role``: the expected status class, never a 500, and
    no change to the database from a refused POST."""
    user = world.users[role]
    mismatches: list[str] = []
    requests = denied = 0
    rows = routes(app)
    cases = []
    for endpoint, method, rule in rows:
        if endpoint not in ALLOWED:
            continue  # reported by test_every_route_is_classified
        with app.test_request_context():
            url = url_for(endpoint, **url_values(endpoint, set(rule.arguments), world.values))
        cases.append((endpoint, method, url, ALLOWED[endpoint]))
    with app.test_request_context():
        extra = [
            (e, m, url_for(e, app_id=world.values[key]), roles) for e, m, key, roles in EXTRA_CASES
        ]
    cases[:0] = extra  # GETs: before any POST of this role
    for endpoint, method, url, roles in cases:
        if user is not None:
            login(client, user)
        before = snapshot(session) if (method == "POST" and role not in roles) else None
        response = client.open(url, method=method, data={})
        requests += 1
        location = response.headers.get("Location", "")
        problem = judge(role, endpoint, response.status_code, location, roles)
        if before is not None:
            denied += 1
            if snapshot(session) != before:
                problem = (problem + "; " if problem else "") + "refused POST changed the database"
        if problem:
            mismatches.append(f"{method} {url} [{endpoint}] as {role}: {problem}")
    TOTALS.requests += requests
    TOTALS.denied_checked += denied
    TOTALS.failures += len(mismatches)
    ROLES_RUN.add(role)
    reliability.record(
        "test_access_matrix",
        routes=len({r[0] for r in rows}),
        route_methods=len(rows),
        roles=len(ROLES_RUN),
        requests=TOTALS.requests,
        denied_checked=TOTALS.denied_checked,
        failures=TOTALS.failures,
    )
    assert mismatches == [], "\n".join(mismatches)
