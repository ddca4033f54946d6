"""Concurrency on PostgreSQL (issue 8): many parallel attempts at one transition give
exactly one success and clean conflicts; decision numbers stay unique and gapless under
concurrent decisions. Each thread has its own database session and commits for real; the
rows live in their own call and organizations."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests import reliability
from tests.conftest import CERT_FORM, Factory, is_postgres
from workflow.audit import verify_chain
from workflow.domain import parse_doc_number
from workflow.engine import fire
from workflow.errors import ConflictError, WorkflowError
from workflow.models import Application, AuditEvent, Decision, User
from workflow.operations.applications import submit_application

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not is_postgres(), reason="needs PostgreSQL (TEST_DATABASE_URL)"),
]
TODAY = date.today()


def _engine(app, threads: int):
    """An engine whose pool holds one connection per thread: with the default pool, threads
    waiting at the barrier would hold every connection and starve the rest."""
    from sqlalchemy import create_engine

    from webapp.extensions import db

    return create_engine(db.engine.url, pool_size=threads + 2, max_overflow=0)


def _run_threads(n: int, target) -> list[str]:
    barrier = threading.Barrier(n, timeout=90)
    results: list[str] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        try:
            outcome = target(i, barrier)
        except Exception as exc:  # recorded, asserted below
            outcome = f"error:{type(exc).__name__}:{exc}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_fifty_parallel_attempts_at_one_transition(committed_app):
    app = committed_app
    with app.app_context():
        engine = _engine(app, 50)
        with Session(engine) as s:
            make = Factory(s)
            make.n = 50_000
            call = make.call("certification_reward", params={"district_prereview": True})
            applicant = make.applicant(district="朝阳区")
            application = make.application(call, applicant, dict(CERT_FORM))
            submit_application(s, application, applicant, today=TODAY)
            officer = make.user("district_officer", district="朝阳区")
            s.commit()
            app_id, officer_id, before = application.id, officer.id, application.version

        def attempt(_i: int, barrier: threading.Barrier) -> str:
            with Session(engine) as s:
                a = s.get(Application, app_id)
                user = s.get(User, officer_id)
                barrier.wait()
                try:
                    fire(s, a, "district_pass", user, today=TODAY, expected_version=before)
                    s.commit()
                    return "ok"
                except ConflictError as exc:
                    s.rollback()
                    assert "changed by someone else" in exc.en
                    return "conflict"
                except WorkflowError as exc:  # already moved on when it loaded the row
                    s.rollback()
                    return f"refused:{type(exc).__name__}"

        results = _run_threads(50, attempt)
        ok = results.count("ok")
        conflicts = results.count("conflict")
        reliability.record(
            "test_fifty_parallel_attempts_at_one_transition",
            attempts=len(results),
            successes=ok,
            conflicts=conflicts,
            other_refusals=len(results) - ok - conflicts,
        )
        assert ok == 1, results
        assert all(r in ("ok", "conflict") or r.startswith("refused:") for r in results), results
        with Session(engine) as s:
            a = s.get(Application, app_id)
            assert a.state == "city_review" and a.version == before + 1
            passes = s.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(
                    AuditEvent.application_id == app_id,
                    AuditEvent.action == "transition.district_pass",
                )
            )
            assert passes == 1
            assert verify_chain(s).ok
        engine.dispose()


def test_hundred_concurrent_decisions_get_unique_gapless_numbers(committed_app):
    """100 applications reach their decision (end of notice) from 50 concurrent workers,
    two each, every decision in its own transaction (PostgreSQL's default 100 connections
    cap the concurrency); every decision gets a distinct number and the sequence for the
    prefix and year has no gap."""
    n, workers = 100, 50
    app = committed_app
    with app.app_context():
        engine = _engine(app, workers)
        prefix = "长市监测字"  # a prefix of this test only: its sequence starts at 1
        with Session(engine) as s:
            make = Factory(s)
            make.n = 60_000
            call = make.call(
                "certification_reward",
                budget="100000000",
                params={"district_prereview": False, "doc_prefix": prefix},
            )
            city, approver = make.user("city_officer"), make.user("approver")
            ids = []
            for _ in range(n):
                applicant = make.applicant()
                a = make.application(call, applicant, dict(CERT_FORM))
                submit_application(s, a, applicant, today=TODAY)
                fire(s, a, "pass_eligibility", city, today=TODAY)
                fire(s, a, "approve", approver, today=TODAY)
                ids.append(a.id)
            s.commit()
        later = TODAY + timedelta(days=30)

        def decide_one(s: Session, app_id: int) -> str:
            from workflow.permissions import SystemActor

            for _attempt in range(5):
                a = s.get(Application, app_id)
                try:
                    fire(s, a, "end_notice", SystemActor("system"), today=later)
                    s.commit()
                    return "ok"
                except ConflictError:
                    s.rollback()
            return "gave-up"

        def decide(i: int, barrier: threading.Barrier) -> str:
            with Session(engine) as s:
                barrier.wait()
                first = decide_one(s, ids[2 * i])
                second = decide_one(s, ids[2 * i + 1])
            return "ok" if first == second == "ok" else f"{first}/{second}"

        results = _run_threads(workers, decide)
        reliability.record(
            "test_hundred_concurrent_decisions_get_unique_gapless_numbers",
            decisions=n,
            concurrent_workers=workers,
            workers_all_committed=results.count("ok"),
        )
        assert results.count("ok") == workers, results
        with Session(engine) as s:
            numbers = s.scalars(
                select(Decision.doc_number).where(Decision.application_id.in_(ids))
            ).all()
            seqs = sorted(parse_doc_number(x)[2] for x in numbers)
            assert len(numbers) == len(set(numbers)) == n
            assert seqs == list(range(1, n + 1))
            reliability.record(
                "test_hundred_concurrent_decisions_get_unique_gapless_numbers",
                distinct_numbers=len(set(numbers)),
                gaps=n - len(set(seqs)),
            )
        engine.dispose()
