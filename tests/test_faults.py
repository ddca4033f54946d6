"""Faults (issue 8 item 2): what survives a killed worker, a crash between commit and
relay, a database that goes away in the middle of a request, and a Redis that is down
when the jobs leave. Every test counts documents, rows and audit events afterwards.

The processes here are real: workers are ``flask worker`` processes killed with SIGKILL,
the crash is a child process that SIGKILLs itself right after its commit, and on
PostgreSQL the request's own backend is terminated with ``pg_terminate_backend``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import create_engine, event, func, select, text

from tests import reliability
from tests.conftest import CERT_FORM, Factory, is_postgres, login
from tests.test_documents_jobs import drive_to_approved, stored_files
from tests.test_rq_worker import (
    REDIS_URL,
    ROOT,
    attempts,
    own_app,
    redis_conn,
    run_worker,
    worker_command,
    worker_env,
)
from webapp import jobs as webjobs
from webapp.extensions import db
from workflow import outbox
from workflow.audit import verify_chain
from workflow.models import Application, AuditEvent, Decision, Notification, OutboxJob
from workflow.operations.applications import submit_application

needs_redis = pytest.mark.skipif(not REDIS_URL, reason="needs a real Redis (TEST_REDIS_URL)")


@pytest.fixture(autouse=True)
def _relay_on(monkeypatch):
    """Jobs leave after the commit (code run earlier may have switched the relay off)."""
    from webapp.jobs import relay

    monkeypatch.setattr(outbox, "_relay", relay)


@pytest.fixture(scope="module")
def faults_app(tmp_path_factory) -> Iterator[Flask]:
    """Own database; jobs in-process (no Redis)."""
    yield from own_app(tmp_path_factory, "faults")


@pytest.fixture(scope="module")
def rq_faults_app(tmp_path_factory) -> Iterator[Flask]:
    if not REDIS_URL:
        pytest.skip("needs a real Redis (TEST_REDIS_URL)")
    for application in own_app(tmp_path_factory, "rqfaults", REDIS_URL=REDIS_URL):
        conn = redis_conn(application)
        conn.flushdb()
        yield application
        conn.flushdb()


def _decision(app: Flask, decision_id: int) -> dict:
    with app.app_context():
        d = db.session.get(Decision, decision_id)
        row = {
            "doc_number": d.doc_number,
            "doc_seq": d.doc_seq,
            "verification_code": d.verification_code,
            "render_data": d.render_data,
            "amount_fen": d.amount_fen,
            "pdf_sha256": d.pdf_sha256,
            "pdf_storage_key": d.pdf_storage_key,
        }
        db.session.remove()
    return row


def _wait_for(path: Path, seconds: float = 120) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{path} never appeared")


# ---------------------------------------------------------------- SIGKILL mid-job


@needs_redis
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize(
    ("victim", "moment"),
    [
        ("work_horse", "hang"),
        ("whole_worker", "hang"),
        ("work_horse", "hang-after-write"),
    ],
)
def test_worker_killed_mid_document_job_leaves_exactly_one_document(
    rq_faults_app, tmp_path, monkeypatch, victim, moment
):
    """SIGKILL while a letter is being rendered, then a worker starts again: the job is
    retried and exactly one document exists (one file, one sha256, the row unchanged).

    ``work_horse``: the process running the job dies (what the OOM killer picks); the
    worker sees it and RQ retries the job at once. ``whole_worker``: worker and work horse
    die together (host or container killed); the job stays in RQ's StartedJobRegistry
    until its heartbeat expires (job_monitoring_interval + 60 s = 90 s), then the next
    registry maintenance of any worker retries it. The test runs that maintenance as of
    two minutes later instead of sleeping for it. ``moment``: killed before the PDF is
    written (``hang``) or after it is stored but before the job's commit
    (``hang-after-write``).
    """
    from rq import Queue
    from rq.job import Job
    from rq.registry import StartedJobRegistry

    app = rq_faults_app
    monkeypatch.setitem(
        webjobs.JOB_DEFAULTS, "documents", {**webjobs.JOB_DEFAULTS["documents"], "retry": (3, [0])}
    )
    with app.app_context():
        (decision,) = drive_to_approved(db.session, "certification_reward")
        decision_id = decision.id
        outbox.commit(db.session)  # relayed to RQ
        db.session.remove()
    before = _decision(app, decision_id)
    files_before = stored_files(app.config["STORAGE_DIR"])
    (tmp_path / moment).write_text("1")
    worker = subprocess.Popen(
        worker_command("documents", faults=True, burst=True),
        cwd=ROOT,
        env=worker_env(app, SHENBAO_TEST_FAULTS=str(tmp_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        horse = int(_wait_for(tmp_path / "hanging"))
        assert horse != worker.pid  # RQ's default Worker forks a work horse per job
        (tmp_path / moment).unlink()  # the next attempt renders normally
        if victim == "whole_worker":
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(30)
        os.kill(horse, signal.SIGKILL)
        if victim == "work_horse":
            out, err = worker.communicate(timeout=180)
            assert worker.returncode == 0, err[-3000:]
            assert "Work-horse terminated unexpectedly" in out + err  # RQ logs to both
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(30)
    conn = redis_conn(app)
    job_id = f"render-decision-{decision_id}"
    if victim == "whole_worker":
        assert worker.returncode == -signal.SIGKILL
        assert _decision(app, decision_id)["pdf_sha256"] is None
        registry = StartedJobRegistry("documents", connection=conn)
        assert job_id in registry.get_job_ids(cleanup=False)
        registry.cleanup(timestamp=time.time() + 120)  # heartbeat expired: retried
        assert Queue("documents", connection=conn).count == 1
        run_worker(app, "documents", faults=tmp_path)
    after = _decision(app, decision_id)
    assert Job.fetch(job_id, connection=conn).get_status() == "finished"
    new_files = [f for f in stored_files(app.config["STORAGE_DIR"]) if f not in files_before]
    assert len(new_files) == 1
    assert hashlib.sha256(new_files[0].read_bytes()).hexdigest() == after["pdf_sha256"]
    assert after["pdf_storage_key"] and new_files[0].as_posix().endswith(after["pdf_storage_key"])
    unchanged = ("doc_number", "doc_seq", "verification_code", "render_data", "amount_fen")
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert attempts(tmp_path) == 2
    with app.app_context():
        assert db.session.scalar(select(func.count(Decision.id))) >= 1
        assert verify_chain(db.session).ok
        db.session.remove()
    reliability.record(
        f"test_worker_killed_mid_document_job_leaves_exactly_one_document[{victim}-{moment}]",
        faults_injected=1,
        attempts=attempts(tmp_path),
        documents=len(new_files),
    )


# ---------------------------------------------------------------- crash between commit and relay

CRASH = "import tests.test_faults as t; t.crash_after_commit()"


def crash_after_commit() -> None:
    """Run in a child process: approve, commit, and die by SIGKILL before the relay."""
    from webapp import create_app

    app = create_app()
    with app.app_context():
        decisions = drive_to_approved(db.session, "certification_reward")
        Path(os.environ["CRASH_REPORT"]).write_text(json.dumps([d.id for d in decisions]))
        outbox.set_relay(lambda session, jobs: os.kill(os.getpid(), signal.SIGKILL))
        outbox.commit(db.session)
    raise SystemExit("not reached: the relay kills the process")


def test_outbox_survives_a_crash_between_commit_and_relay(faults_app, tmp_path):
    app = faults_app
    report = tmp_path / "ids.json"
    env = worker_env(app, CRASH_REPORT=str(report))
    child = subprocess.run(
        [sys.executable, "-c", CRASH],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-3000:]
    (decision_id,) = json.loads(report.read_text())
    job_id = f"render-decision-{decision_id}"
    with app.app_context():
        # The commit happened: the decision and its job are there, nothing was sent.
        row = db.session.scalar(select(OutboxJob).where(OutboxJob.job_id == job_id))
        assert row is not None and row.relayed_at is None
        assert db.session.get(Decision, decision_id).pdf_sha256 is None
        db.session.remove()
    files_before = stored_files(app.config["STORAGE_DIR"])
    relay = [sys.executable, "-m", "flask", "--app", "wsgi:app", "outbox", "relay"]
    first = subprocess.run(relay, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.strip().startswith("relayed ") and first.stdout.strip() != "relayed 0"
    second = subprocess.run(relay, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert second.stdout.strip() == "relayed 0"
    after = _decision(app, decision_id)
    new_files = [f for f in stored_files(app.config["STORAGE_DIR"]) if f not in files_before]
    assert len(new_files) == 1
    assert hashlib.sha256(new_files[0].read_bytes()).hexdigest() == after["pdf_sha256"]
    with app.app_context():
        row = db.session.scalar(select(OutboxJob).where(OutboxJob.job_id == job_id))
        assert row.relayed_at is not None and row.last_error is None
        assert verify_chain(db.session).ok
        db.session.remove()
    reliability.record(
        "test_outbox_survives_a_crash_between_commit_and_relay",
        faults_injected=1,
        relays=2,
        documents=len(new_files),
    )


# ---------------------------------------------------------------- database gone mid-request


_factory_seq = itertools.count(1)


def _submitted_application(app: Flask) -> tuple[int, int]:
    with app.app_context():
        make = Factory(db.session)
        make.n = 60_000 + 100 * next(_factory_seq)  # unique codes, e-mails, call titles
        call = make.call("certification_reward", params={"district_prereview": True})
        applicant = make.applicant(district="朝阳区")
        application = make.application(call, applicant, dict(CERT_FORM))
        submit_application(db.session, application, applicant, today=date.today())
        officer = make.user("district_officer", district="朝阳区")
        outbox.commit(db.session)
        ids = application.id, officer.id
        db.session.remove()
    return ids


def _snapshot(app: Flask, app_id: int) -> dict:
    with app.app_context():
        a = db.session.get(Application, app_id)
        snap = {
            "state": a.state,
            "version": a.version,
            "audit": db.session.scalar(select(func.count(AuditEvent.id))),
            "outbox": db.session.scalar(select(func.count(OutboxJob.id))),
            "notifications": db.session.scalar(select(func.count(Notification.id))),
            "chain_ok": verify_chain(db.session).ok,
        }
        db.session.remove()
    return snap


def _login(app: Flask, client, user_id: int) -> None:
    from workflow.models import User

    with app.app_context():
        user = db.session.get(User, user_id)
        login(client, user)
        db.session.remove()


class _KillDatabase:
    """Make the database go away at one point of the next request: on PostgreSQL by
    terminating the request connection's backend from another connection (so the
    statement then meets a dead server process); on SQLite by raising the error the
    driver raises for an I/O failure."""

    def __init__(self, engine, where: str):
        self.engine, self.where, self.fired = engine, where, 0
        self.admin = (
            create_engine(engine.url, isolation_level="AUTOCOMMIT") if is_postgres() else None
        )

    def _kill(self, connection) -> None:
        self.fired += 1
        if self.admin is None:
            import sqlite3

            raise sqlite3.OperationalError("disk I/O error (injected)")
        pid = connection.connection.dbapi_connection.info.backend_pid
        with self.admin.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})

    def before_cursor_execute(self, conn, cursor, statement, *args):
        if not self.fired and statement.lstrip().upper().startswith(self.where):
            self._kill(conn)

    def commit(self, conn):
        if not self.fired:
            self._kill(conn)

    def __enter__(self):
        if self.where == "COMMIT":
            if self.admin is None:
                dialect = self.engine.dialect
                original = dialect.do_commit

                def failing(dbapi_connection):
                    if not self.fired:
                        self._kill(None)
                    return original(dbapi_connection)

                dialect.do_commit = failing
                self._restore = lambda: setattr(dialect, "do_commit", original)
            else:
                event.listen(self.engine, "commit", self.commit)
                self._restore = lambda: event.remove(self.engine, "commit", self.commit)
        else:
            event.listen(self.engine, "before_cursor_execute", self.before_cursor_execute)
            self._restore = lambda: event.remove(
                self.engine, "before_cursor_execute", self.before_cursor_execute
            )
        return self

    def __exit__(self, *exc):
        self._restore()
        if self.admin is not None:
            self.admin.dispose()


@pytest.mark.parametrize("where", ["UPDATE APPLICATIONS", "COMMIT"])
def test_database_gone_mid_request_gives_an_error_page_and_no_corruption(faults_app, where):
    app = faults_app
    app_id, officer_id = _submitted_application(app)
    before = _snapshot(app, app_id)
    client = app.test_client()
    _login(app, client, officer_id)
    with app.app_context():
        engine = db.engine
    # The request runs outside the test's app context, as in production.
    with _KillDatabase(engine, where) as kill:
        response = client.post(
            f"/review/applications/{app_id}/fire/district_pass",
            data={"district_pass-reason": "材料齐全"},
        )
    assert kill.fired == 1
    assert response.status_code == 503
    page = response.get_data(as_text=True)
    assert "数据库暂时不可用" in page and "没有保存" in page
    after = _snapshot(app, app_id)
    assert after == before  # nothing half-written: state, version, audit, jobs, messages
    # The application works again on the next request (the pool replaced the connection).
    again = client.post(
        f"/review/applications/{app_id}/fire/district_pass",
        data={"district_pass-reason": "材料齐全"},
    )
    assert again.status_code == 302
    moved = _snapshot(app, app_id)
    assert moved["state"] != before["state"] and moved["version"] == before["version"] + 1
    assert moved["chain_ok"]
    reliability.record(
        f"test_database_gone_mid_request_gives_an_error_page_and_no_corruption[{where}]",
        faults_injected=1,
        backend="postgresql" if is_postgres() else "sqlite (simulated)",
        rows_changed=0,
    )


# ---------------------------------------------------------------- Redis down at relay


def test_redis_down_when_jobs_leave_keeps_the_change_and_the_job(faults_app, monkeypatch):
    app = faults_app
    app_id, officer_id = _submitted_application(app)
    before = _snapshot(app, app_id)
    monkeypatch.setitem(app.config, "REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens
    monkeypatch.delitem(app.extensions, "shenbao_redis", raising=False)
    client = app.test_client()
    _login(app, client, officer_id)
    response = client.post(
        f"/review/applications/{app_id}/fire/district_pass",
        data={"district_pass-reason": "材料齐全"},
    )
    monkeypatch.delitem(app.extensions, "shenbao_redis", raising=False)
    after = _snapshot(app, app_id)
    with app.app_context():
        pending = db.session.scalar(
            select(func.count(OutboxJob.id)).where(OutboxJob.relayed_at.is_(None))
        )
        db.session.remove()
    assert after["state"] != before["state"] and pending >= 1
    # The change committed and the user is told so; the job waits for `flask outbox relay`.
    assert response.status_code == 302
