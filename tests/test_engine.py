"""The engine: roles and scopes through named predicates, guards with explanations,
audit events for every transition, optimistic locking, definition versions."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.conftest import is_postgres
from workflow.audit import verify_chain
from workflow.definitions.loader import latest_definition, parse_program, store_definition
from workflow.engine import available_transitions, compiled, fire
from workflow.errors import (
    ConflictError,
    GuardFailed,
    PermissionDenied,
    TransitionNotAllowed,
    ValidationFailed,
)
from workflow.models import Application, AuditEvent, ProgramDefinition
from workflow.operations.applications import submit_application

TODAY = date.today()


@pytest.fixture
def submitted(session, make, cert_form):
    """A certification-reward application submitted to district review in 朝阳区."""
    call = make.call("certification_reward", params={"district_prereview": True})
    applicant = make.applicant(district="朝阳区")
    app = make.application(call, applicant, cert_form)
    submit_application(session, app, applicant, today=TODAY)
    return app


def test_submit_freezes_numbers_and_computes(submitted):
    assert submitted.state == "district_review"
    assert submitted.number.startswith(f"GB{TODAY.year}-")
    assert submitted.snapshot["form"]["cert_cost_paid"] == "25000.00"
    assert submitted.award_fen == 2_500_000
    assert [s["name"] for s in submitted.award_trace["trace"]] == ["base", "cost", "award"]


def test_roles_are_enforced(session, make, submitted):
    city = make.user("city_officer")
    with pytest.raises(PermissionDenied):
        fire(session, submitted, "district_pass", city, today=TODAY)
    assert submitted.state == "district_review"


def test_district_scope_is_enforced(session, make, submitted):
    outsider = make.user("district_officer", district="南关区")
    insider = make.user("district_officer", district="朝阳区")
    with pytest.raises(PermissionDenied):
        fire(session, submitted, "district_pass", outsider, today=TODAY)
    assert [t.trigger for t in available_transitions(session, submitted, outsider, TODAY)] == []
    offered = {t.trigger for t in available_transitions(session, submitted, insider, TODAY)}
    assert offered == {"district_pass", "district_return", "district_reject"}
    fire(session, submitted, "district_pass", insider, today=TODAY)
    assert submitted.state == "city_review"


def test_program_scope_is_enforced(session, make, submitted):
    other = make.user("district_officer", district="朝阳区", program="pledge_loan_subsidy")
    with pytest.raises(PermissionDenied):
        fire(session, submitted, "district_pass", other, today=TODAY)


def test_applicant_of_another_organization_cannot_act(session, make, submitted):
    stranger = make.applicant()
    with pytest.raises(PermissionDenied):
        fire(session, submitted, "withdraw", stranger, today=TODAY)


def test_guard_failure_names_the_rule(session, make, cert_form):
    call = make.call("certification_reward", params={"district_prereview": False})
    applicant = make.applicant()
    cert_form["first_issue_date"] = "2023-05-01"  # outside the call's window (A6)
    app = make.application(call, applicant, cert_form)
    submit_application(session, app, applicant, today=TODAY)
    assert app.state == "city_review"
    with pytest.raises(GuardFailed) as info:
        fire(session, app, "pass_eligibility", make.user("city_officer"), today=TODAY)
    assert info.value.failures[0]["rule"] == "A6"
    assert "A6" in info.value.zh and "窗口" in info.value.zh
    failed = [r["id"] for r in app.eligibility if not r["passed"]]
    assert failed == ["A6"]


def test_invalid_trigger_for_state(session, make, submitted):
    with pytest.raises(TransitionNotAllowed):
        fire(session, submitted, "approve", make.user("approver"), today=TODAY)


def test_reason_required(session, make, submitted):
    officer = make.user("district_officer", district="朝阳区")
    with pytest.raises(ValidationFailed):
        fire(session, submitted, "district_reject", officer, today=TODAY)
    fire(session, submitted, "district_reject", officer, reason="材料不全", today=TODAY)
    assert submitted.state == "rejected"


def test_every_transition_writes_an_audit_event(session, make, submitted):
    officer = make.user("district_officer", district="朝阳区")
    fire(session, submitted, "district_pass", officer, today=TODAY)
    session.commit()
    events = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.application_id == submitted.id, AuditEvent.action.like("transition.%"))
        .order_by(AuditEvent.seq)
    ).all()
    assert [(e.action, e.from_state, e.to_state) for e in events] == [
        ("transition.submit", "draft", "district_review"),
        ("transition.district_pass", "district_review", "city_review"),
    ]
    assert events[1].actor_id == officer.id and events[1].actor_role == "district_officer"
    assert all(e.hash and e.data_hash for e in events)
    assert verify_chain(session).ok


def test_version_counter_and_stale_form_conflict(session, make, submitted):
    officer = make.user("district_officer", district="朝阳区")
    seen = submitted.version
    fire(session, submitted, "district_pass", officer, today=TODAY, expected_version=seen)
    session.flush()
    assert submitted.version == seen + 1
    with pytest.raises(ConflictError):
        fire(
            session,
            submitted,
            "pass_eligibility",
            make.user("city_officer"),
            today=TODAY,
            expected_version=seen,
        )


def test_four_eyes(session, make, submitted):
    fire(
        session,
        submitted,
        "district_pass",
        make.user("district_officer", district="朝阳区"),
        today=TODAY,
    )
    both = make.user("city_officer")
    from workflow.models import RoleGrant

    both.grants.append(RoleGrant(role="approver"))
    session.flush()
    fire(session, submitted, "pass_eligibility", both, today=TODAY)
    assert "approve" not in {
        t.trigger for t in available_transitions(session, submitted, both, TODAY)
    }
    with pytest.raises(PermissionDenied, match="Four-eyes"):
        fire(session, submitted, "approve", both, today=TODAY)
    fire(session, submitted, "approve", make.user("approver"), today=TODAY)
    assert submitted.state == "public_notice"


def test_in_flight_applications_keep_their_definition_version(session, make, submitted):
    old_id = submitted.definition_id
    row = session.get(ProgramDefinition, old_id)
    changed = row.source_yaml.replace('default: "30000"', 'default: "40000"').replace(
        "label: {zh: 初审通过, en: Pass district review}",
        "label: {zh: 区县初审通过, en: Pass district review}",
    )
    result = store_definition(session, parse_program(changed), changed)
    assert result.created
    latest = latest_definition(session, "certification_reward")
    assert latest.id != old_id
    # The submitted application still runs on the version it started with...
    assert compiled(session, submitted.definition_id).version == row.version
    fire(
        session,
        submitted,
        "district_pass",
        make.user("district_officer", district="朝阳区"),
        today=TODAY,
    )
    assert submitted.definition_id == old_id
    # ...and a new call uses the new version (and its new default).
    new_call = make.call("certification_reward")
    assert new_call.definition_id == latest.id
    assert new_call.params["fixed_amount"] == "40000"


def test_one_machine_per_definition_version(session, make, submitted):
    comp = compiled(session, submitted.definition_id)
    assert comp is compiled(session, submitted.definition_id)
    assert comp.machine.models == []  # never bound to rows
    assert not any(name.startswith("to_") for name in comp.machine.events)


@pytest.mark.postgres
@pytest.mark.skipif(not is_postgres(), reason="needs PostgreSQL (TEST_DATABASE_URL)")
def test_concurrent_transitions_one_wins(committed_app, cert_form):
    """Two database sessions fire the same transition: one succeeds, one conflicts."""
    from tests.conftest import Factory
    from webapp.extensions import db

    with committed_app.app_context():
        engine = db.engine
        with Session(engine) as setup:
            make = Factory(setup)
            call = make.call("certification_reward", params={"district_prereview": True})
            applicant = make.applicant(district="朝阳区")
            application = make.application(call, applicant, cert_form)
            submit_application(setup, application, applicant, today=TODAY)
            officer = make.user("district_officer", district="朝阳区")
            setup.commit()
            app_id, officer_id, before = application.id, officer.id, application.version
        barrier = threading.Barrier(2)
        results: list[str] = []

        def attempt() -> None:
            from workflow.models import User

            with Session(engine) as s:
                a = s.get(Application, app_id)
                user = s.get(User, officer_id)
                barrier.wait()
                try:
                    fire(s, a, "district_pass", user, today=TODAY)
                    s.commit()
                    results.append("ok")
                except ConflictError:
                    s.rollback()
                    results.append("conflict")

        threads = [threading.Thread(target=attempt) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results) == ["conflict", "ok"]
        with Session(engine) as s:
            a = s.get(Application, app_id)
            assert a.state == "city_review" and a.version == before + 1
            passes = s.scalars(
                select(AuditEvent).where(
                    AuditEvent.application_id == app_id,
                    AuditEvent.action == "transition.district_pass",
                )
            ).all()
            assert len(passes) == 1
            assert verify_chain(s).ok
