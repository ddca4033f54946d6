"""The budget guarantee: committed money never exceeds a call's budget.

``effects.reserve`` is one conditional UPDATE (``committed + amount <= budget``), so the
database decides under the row lock; the CHECK constraints on ``calls`` are the backstop
for anything that bypasses it. The thread test approves many applications of one call at
the same moment on PostgreSQL, each thread in its own session committing for real, on the
``committed_app`` database (its own database, dropped after the module), so the shared
test database stays free of committed rows.
"""

from __future__ import annotations

import threading
from datetime import date

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tests.conftest import CERT_FORM, Factory, is_postgres
from workflow.audit import verify_chain
from workflow.effects import reserve
from workflow.engine import fire
from workflow.errors import BudgetExceeded
from workflow.models import Application, BudgetLedgerEntry, Call, User
from workflow.operations.applications import submit_application

TODAY = date.today()


def _in_approval(session, make: Factory, call: Call, n: int) -> list[Application]:
    city = make.user("city_officer")
    apps = []
    for i in range(n):
        applicant = make.applicant(district="双阳区")
        form = dict(CERT_FORM, cert_number=f"BUDGET-{call.id}-{i}")
        app = make.application(call, applicant, form)
        submit_application(session, app, applicant, today=TODAY)
        fire(session, app, "pass_eligibility", city, today=TODAY)
        apps.append(app)
    return apps


# ---------------------------------------------------------------- the database backstop


def test_direct_update_beyond_the_budget_violates_the_check_constraint(session, make):
    call = make.call("certification_reward", budget="100.00")
    with pytest.raises(IntegrityError) as exc, session.begin_nested():
        session.execute(
            update(Call).where(Call.id == call.id).values(committed_fen=Call.budget_fen + 1)
        )
    assert "within_budget" in str(exc.value) or "CHECK" in str(exc.value).upper()
    with pytest.raises(IntegrityError), session.begin_nested():
        session.execute(text("UPDATE calls SET committed_fen = -1 WHERE id = :id"), {"id": call.id})
    session.expire_all()
    assert session.get(Call, call.id).committed_fen == 0


def test_reserve_refuses_what_does_not_fit(session, make, cert_form):
    call = make.call("certification_reward", budget="30000", params={"district_prereview": False})
    first, second = _in_approval(session, make, call, 2)
    reserve(session, first, 2_500_000, None)
    with pytest.raises(BudgetExceeded) as exc:
        reserve(session, second, 2_500_000, None)
    assert exc.value.status == 409 and exc.value.details["left_fen"] == 500_000
    assert "5000.00" in exc.value.zh
    session.expire_all()
    assert session.get(Call, call.id).committed_fen == 2_500_000


# ---------------------------------------------------------------- concurrent approvals


@pytest.mark.postgres
@pytest.mark.skipif(not is_postgres(), reason="needs PostgreSQL (TEST_DATABASE_URL)")
def test_concurrent_approvals_never_exceed_the_budget(committed_app):
    from webapp.extensions import db

    threads_n, award, fits = 12, 2_500_000, 3
    budget_yuan = "80000"  # three awards of 25,000 fit, with 5,000 left over
    with committed_app.app_context():
        engine = db.engine
        with Session(engine) as s:
            make = Factory(s)
            make.n = 70_000
            call = make.call(
                "certification_reward", budget=budget_yuan, params={"district_prereview": False}
            )
            apps = _in_approval(s, make, call, threads_n)
            approver = make.user("approver")
            s.commit()
            call_id, approver_id = call.id, approver.id
            app_ids = [a.id for a in apps]
            assert all(a.award_fen == award for a in apps)

        barrier = threading.Barrier(threads_n)
        results: list[str] = []
        lock = threading.Lock()

        def approve(app_id: int) -> None:
            with Session(engine) as s:
                application = s.get(Application, app_id)
                user = s.get(User, approver_id)
                barrier.wait()
                try:
                    fire(s, application, "approve", user, today=TODAY)
                    s.commit()
                    outcome = "approved"
                except BudgetExceeded:
                    s.rollback()
                    outcome = "exceeded"
                except Exception as exc:  # reported by the assertion below
                    s.rollback()
                    outcome = f"error:{type(exc).__name__}:{exc}"
            with lock:
                results.append(outcome)

        workers = [threading.Thread(target=approve, args=(i,)) for i in app_ids]
        for w in workers:
            w.start()
        for w in workers:
            w.join(120)

        assert sorted(results) == ["approved"] * fits + ["exceeded"] * (threads_n - fits)
        with Session(engine) as s:
            call = s.get(Call, call_id)
            assert call.committed_fen == fits * award <= call.budget_fen
            ledger = s.scalar(
                select(func.sum(BudgetLedgerEntry.amount_fen)).where(
                    BudgetLedgerEntry.call_id == call_id
                )
            )
            assert ledger == call.committed_fen
            states = s.scalars(select(Application.state).where(Application.id.in_(app_ids))).all()
            assert sorted(states) == ["approval"] * (threads_n - fits) + ["public_notice"] * fits
            assert verify_chain(s).ok
