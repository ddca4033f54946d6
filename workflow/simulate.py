"""Run applications through a program from a scenario file, printing every step, the
eligibility results and the award with its trace.

``flask definitions simulate PROGRAM DATAFILE`` and the path tests
(``tests/test_program_paths.py``) both call :func:`run_scenario`, so what the command
shows is what the tests check. The scenario format is described in docs/AUTHORING.md.

Run standalone on an in-memory SQLite database::

    python -m workflow.simulate tests/scenarios/certification_reward/approved.yaml
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from . import errors as errors_mod
from .definitions.loader import DEFINITIONS_DIR, load_file, store_definition
from .engine import compiled, fire
from .errors import WorkflowError
from .models import (
    Application,
    Attachment,
    Base,
    Call,
    Decision,
    Objection,
    Organization,
    Review,
    RoleGrant,
    User,
)
from .operations.applications import save_draft, start_application, submit_application
from .operations.calls import create_call
from .operations.experts import assign_expert, rank_call, recuse, submit_scores
from .operations.notice import decide_objection, lodge_objection
from .permissions import SystemActor
from .scheduler import sweep_deadlines

Printer = Callable[[str], None]

# Valid unified social credit codes (GB 32100 check digit) for simulated organizations.
CREDIT_CODES = [
    "91110000600037341L",
    "91350200776049653A",
    "91440101MA5CJQ4N59",
    "913502000728319549",
    "9135021359498494XQ",
    "91350213678251743X",
    "91350100M000100Y43",
    "123502001549897397",
]


class ScenarioFailed(AssertionError):
    pass


@dataclass
class Scenario:
    session: Session
    program_code: str
    call: Call | None = None
    apps: list[Application] = field(default_factory=list)
    users: dict[str, User] = field(default_factory=dict)
    experts: dict[int, User] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


def _d(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _user(sc: Scenario, role: str, district: str | None = None) -> User:
    key = f"{role}:{district or ''}"
    if key in sc.users:
        return sc.users[key]
    user = User(email=f"{role}.{len(sc.users)}@sim.local", name=f"{role}", password_hash="x")
    user.grants.append(RoleGrant(role=role, district=district))
    sc.session.add(user)
    sc.session.flush()
    sc.users[key] = user
    return user


def _actor(sc: Scenario, role: str, app: Application) -> Any:
    if role in ("system", "public"):
        return SystemActor(role)
    if role == "applicant":
        return sc.session.scalars(
            select(User).where(User.organization_id == app.organization_id)
        ).first()
    if role == "district_officer":
        return _user(sc, role, app.district)
    return _user(sc, role)


def run_scenario(session: Session, data: dict[str, Any], out: Printer = print) -> Scenario:
    code = data["program"]
    sc = Scenario(session=session, program_code=code)
    program, text = load_file(DEFINITIONS_DIR / f"{code}.yaml")
    store_definition(session, program, text)
    today = _d(data.get("today", date.today()))
    call_data = data.get("call", {})
    sc.call = create_call(
        session,
        program_code=code,
        year=int(call_data.get("year", today.year)),
        title=call_data.get("title", f"{today.year}年度{program.name.zh}"),
        opens_on=_d(call_data.get("opens_on", today)),
        closes_on=_d(call_data.get("closes_on", today)),
        budget_yuan=str(call_data.get("budget", "1000000")),
        params=call_data.get("params") or {},
    )
    out(f"== {program.name.zh} ({code}) — {data.get('description', '')}")
    for i, spec in enumerate(data.get("applications", []), start=1):
        org_spec = spec.get("organization", {})
        org = Organization(
            name=org_spec.get("name", f"模拟单位{i}"),
            credit_code=org_spec.get(
                "credit_code",
                CREDIT_CODES[(i - 1) % len(CREDIT_CODES)]
                if i <= len(CREDIT_CODES)
                else f"SIM{i:015d}",
            ),
            org_type=org_spec.get("org_type", program.applicant_types[0]),
            district=org_spec.get("district", "朝阳区"),
        )
        session.add(org)
        session.flush()
        user = User(
            email=f"applicant{i}@sim.local",
            name=f"申报人{i}",
            password_hash="x",
            organization_id=org.id,
            is_org_owner=True,
        )
        user.grants.append(RoleGrant(role="applicant"))
        session.add(user)
        session.flush()
        app = start_application(session, user=user, call=sc.call, today=today)
        save_draft(session, app, user, spec.get("form", {}))
        missing = set(spec.get("missing_materials", []))
        for m in program.materials:
            if m.kind not in missing:
                session.add(
                    Attachment(
                        application_id=app.id,
                        kind=m.kind,
                        filename=f"{m.kind}.pdf",
                        content_type="application/pdf",
                        size=1024,
                        sha256="0" * 64,
                        storage_key=f"sim/{app.id}/{m.kind}",
                        uploaded_by_id=user.id,
                    )
                )
        session.flush()
        session.refresh(app)
        sc.apps.append(app)
    session.flush()
    # Role users exist before any step, so a step rolled back on an expected error cannot
    # take a user created inside it along.
    for role in ("city_officer", "approver", "finance"):
        _user(sc, role)
    for app in sc.apps:
        _user(sc, "district_officer", app.district)

    for n, step in enumerate(data.get("steps", []), start=1):
        step_today = _d(step.get("today", today))
        expect_error = step.get("expect_error")
        try:
            with session.begin_nested():
                _run_step(sc, step, step_today, out)
        except WorkflowError as exc:
            name = type(exc).__name__
            if expect_error and (name == expect_error or _is_a(exc, expect_error)):
                out(f"  step {n}: expected {name}: {exc.en}")
                continue
            raise ScenarioFailed(f"step {n} {step}: {name}: {exc.en}") from exc
        if expect_error:
            raise ScenarioFailed(f"step {n} {step}: expected {expect_error}, but it succeeded")
    session.flush()
    _report(sc, out)
    _check(sc, data.get("expect", []))
    return sc


def _is_a(exc: Exception, name: str) -> bool:
    cls = getattr(errors_mod, name, None)
    return isinstance(cls, type) and isinstance(exc, cls)


def _apps_for(sc: Scenario, step: dict[str, Any]) -> list[Application]:
    if step.get("apps") == "all":
        return list(sc.apps)
    if "apps" in step:
        return [sc.apps[int(i) - 1] for i in step["apps"]]
    return [sc.apps[int(step.get("app", 1)) - 1]]


def _run_step(sc: Scenario, step: dict[str, Any], today: date, out: Printer) -> None:
    s = sc.session
    if "trigger" in step:
        for app in _apps_for(sc, step):
            role = step.get("as", "applicant")
            actor = _actor(sc, role, app)
            before = app.state
            if step["trigger"] in ("submit", "resubmit") and role == "applicant":
                submit_application(s, app, actor, today=today, trigger=step["trigger"])
            else:
                payload = {"supplement": step["supplement"]} if "supplement" in step else {}
                fire(
                    s,
                    app,
                    step["trigger"],
                    actor,
                    reason=step.get("reason"),
                    payload=payload,
                    today=today,
                )
            out(f"  [{app.id}] {step['trigger']} as {role}: {before} -> {app.state}")
        return
    action = step["action"]
    if action == "upload_all":
        return  # materials are attached when the application is created
    if action == "edit":
        for app in _apps_for(sc, step):
            user = _actor(sc, "applicant", app)
            merged = {**(app.form_data or {}), **step["form"]}
            errs = save_draft(s, app, user, merged)
            out(f"  [{app.id}] edit {sorted(step['form'])}" + (f" errors {errs}" if errs else ""))
    elif action == "sweep":
        counts = sweep_deadlines_in_savepoints(s, today)
        out(f"  sweep {today}: {counts}")
    elif action == "object":
        for app in _apps_for(sc, step):
            lodge_objection(
                s,
                app,
                name=step.get("name", "张三"),
                contact=str(step.get("contact", "13800000000")),
                reason=step.get("reason", "公示对象不符合条件，请核查。"),
                today=today,
            )
            out(f"  [{app.id}] objection lodged -> {app.state}")
    elif action == "decide_objection":
        for app in _apps_for(sc, step):
            objection = s.scalars(
                select(Objection).where(
                    Objection.application_id == app.id, Objection.status == "pending"
                )
            ).first()
            if objection is None:
                raise errors_mod.ValidationFailed("没有待处理异议。", "No pending objection.")
            decide_objection(
                s,
                objection,
                _user(sc, "city_officer"),
                upheld=step["outcome"] == "upheld",
                reason=step.get("reason", "核查"),
                today=today,
            )
            out(f"  [{app.id}] objection {step['outcome']} -> {app.state}")
    elif action == "assign_experts":
        count = int(step.get("count", 3))
        for i in range(1, count + 1):
            _expert(sc, i)
        for app in _apps_for(sc, {"apps": step.get("apps", "all")} if "apps" in step else step):
            for i in range(1, count + 1):
                assign_expert(s, app, sc.experts[i], _user(sc, "city_officer"))
            out(f"  [{app.id}] {count} experts assigned")
    elif action == "recuse":
        app = _apps_for(sc, step)[0]
        expert = sc.experts[int(step["expert"])]
        review = _review(sc, app, expert)
        # Make sure a replacement exists in the pool.
        _expert(sc, max(sc.experts) + 1)
        replacement = recuse(s, review, expert, step.get("reason", "存在利害关系"))
        if replacement is not None:
            new_index = next(k for k, v in sc.experts.items() if v.id == replacement.reviewer_id)
            out(f"  [{app.id}] expert {step['expert']} recused; expert {new_index} assigned")
    elif action == "score":
        app = _apps_for(sc, step)[0]
        expert = sc.experts[int(step["expert"])]
        submit_scores(
            s,
            _review(sc, app, expert),
            expert,
            step["scores"],
            step.get("comment"),
            no_conflict=True,
        )
        out(f"  [{app.id}] expert {step['expert']} scored")
        program = compiled(s, app.definition_id).program
        if program.state(app.state).stage == "expert":
            try:
                with s.begin_nested():
                    fire(s, app, "complete_scoring", SystemActor("system"), today=today)
                out(f"  [{app.id}] scoring complete -> {app.state}")
            except WorkflowError:
                pass
    elif action == "rank":
        outcomes = rank_call(s, sc.call, SystemActor("system"), today=today)
        for o in outcomes:
            out(f"  [{o.application_id}] score {o.score} rank {o.rank} -> {o.trigger or o.error}")
    else:
        raise ScenarioFailed(f"unknown action {action!r}")


def sweep_deadlines_in_savepoints(session: Session, today: date) -> dict[str, int]:
    """The sweep commits per application; inside a simulation we keep one transaction."""
    from . import outbox

    original = outbox.commit, outbox.rollback
    outbox.commit = lambda s: s.flush()  # type: ignore[assignment]
    outbox.rollback = lambda s: None  # type: ignore[assignment]
    try:
        return sweep_deadlines(session, today)
    finally:
        outbox.commit, outbox.rollback = original  # type: ignore[assignment]


def _expert(sc: Scenario, index: int) -> User:
    if index not in sc.experts:
        user = User(email=f"expert{index}@sim.local", name=f"专家{index}", password_hash="x")
        user.grants.append(RoleGrant(role="expert", program_code=sc.program_code))
        sc.session.add(user)
        sc.session.flush()
        sc.experts[index] = user
    return sc.experts[index]


def _review(sc: Scenario, app: Application, expert: User) -> Review:
    review = sc.session.scalar(
        select(Review).where(
            Review.application_id == app.id,
            Review.reviewer_id == expert.id,
            Review.kind == "expert",
        )
    )
    if review is None:
        raise errors_mod.ValidationFailed("未分配该专家。", "Expert not assigned.")
    return review


def _report(sc: Scenario, out: Printer) -> None:
    for app in sc.apps:
        out(f"-- application {app.id} ({app.number or 'no number'}): {app.state}")
        for r in app.eligibility or []:
            mark = "PASS" if r["passed"] else ("WARN" if r["severity"] == "warning" else "FAIL")
            out(
                f"     {mark} {r['id']}"
                + ("" if r["passed"] else f": {r['reviewer_message']['zh']}")
                + (f" [{r['error']}]" if r.get("error") else "")
            )
        trace = app.award_trace or {}
        for step in trace.get("trace", []):
            out(
                f"     {step['name']} = {step['value']}"
                + (f"   ({step['expr']})" if step.get("expr") else "")
            )
        if trace.get("error"):
            out(f"     award error: {trace['error']}")
        if app.award_fen is not None:
            out(f"     award: {Decimal(app.award_fen) / 100:.2f} yuan")
        if app.score is not None:
            out(f"     score {app.score} rank {app.rank}")
    if sc.call is not None:
        sc.session.refresh(sc.call)
        out(
            f"-- call committed {Decimal(sc.call.committed_fen) / 100:.2f} of "
            f"{Decimal(sc.call.budget_fen) / 100:.2f}"
        )


def _check(sc: Scenario, expectations: list[dict[str, Any]]) -> None:
    s = sc.session
    problems = []
    for exp in expectations:
        app = sc.apps[int(exp.get("app", 1)) - 1]
        if "state" in exp and app.state != exp["state"]:
            problems.append(f"app {exp.get('app', 1)}: state {app.state}, expected {exp['state']}")
        if "award" in exp:
            got = None if app.award_fen is None else f"{Decimal(app.award_fen) / 100:.2f}"
            want = None if exp["award"] is None else f"{Decimal(str(exp['award'])):.2f}"
            if got != want:
                problems.append(f"app {exp.get('app', 1)}: award {got}, expected {want}")
        if "number" in exp and bool(app.number) != bool(exp["number"]):
            problems.append(f"app {exp.get('app', 1)}: number {app.number!r}")
        if "decisions" in exp:
            kinds = sorted(
                s.scalars(select(Decision.kind).where(Decision.application_id == app.id)).all()
            )
            if kinds != sorted(exp["decisions"]):
                problems.append(
                    f"app {exp.get('app', 1)}: decisions {kinds}, expected {exp['decisions']}"
                )
        if "score" in exp:
            want = Decimal(str(exp["score"]))
            if app.score is None or Decimal(app.score).quantize(Decimal("0.01")) != want.quantize(
                Decimal("0.01")
            ):
                problems.append(f"app {exp.get('app', 1)}: score {app.score}, expected {want}")
        if "rank" in exp and app.rank != int(exp["rank"]):
            problems.append(f"app {exp.get('app', 1)}: rank {app.rank}, expected {exp['rank']}")
        if "committed" in exp:
            s.refresh(sc.call)
            got = f"{Decimal(sc.call.committed_fen) / 100:.2f}"
            if got != f"{Decimal(str(exp['committed'])):.2f}":
                problems.append(f"call committed {got}, expected {exp['committed']}")
    if problems:
        raise ScenarioFailed("; ".join(problems))


def memory_session() -> Session:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    return Session(engine)


def main(argv: list[str] | None = None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    status = 0
    from .engine import clear_cache

    for path in argv:
        # Each file gets a fresh in-memory database whose ids restart at 1: forget the
        # machines compiled for the previous file.
        clear_cache()
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        with memory_session() as session:
            try:
                run_scenario(session, data)
                print(f"OK {path}")
            except ScenarioFailed as exc:
                print(f"FAILED {path}: {exc}")
                status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
