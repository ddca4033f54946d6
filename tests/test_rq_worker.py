"""Decision letters through a REAL RQ worker on a real Redis (issue 6, "done when"):
approving an application in each program relays its render job to RQ after the commit,
``flask worker documents --burst`` (a separate process, production settings) renders the
numbered PDF, and the verification page shows the stored file's sha256. Also: a job that
fails once is retried by RQ into exactly one document, an outbox row relayed twice is one
RQ job, and a call's batch render and zip run on the ``exports`` queue.

Needs TEST_REDIS_URL (a Redis database used only by tests: it is flushed) and runs on
SQLite or on the PostgreSQL of TEST_DATABASE_URL; the app and the worker share their own
database (``<test db>_rq``), created for this module.

The helpers here (``own_app``, ``run_worker``, ``install_faults``) are shared with
tests/test_faults.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from tests import reliability
from tests.conftest import _Client, is_postgres, login, make_app
from tests.documents.test_render import compact
from tests.test_documents_jobs import (
    PROGRAMS,
    assert_letter_text,
    drive_to_approved,
    relay_disabled,
    stored_files,
)
from webapp import jobs as webjobs
from webapp.config import normalize_db_url
from webapp.extensions import db
from workflow import outbox
from workflow.definitions.loader import sync_definitions
from workflow.models import Application, Decision, JobRecord, OutboxJob, RoleGrant, User
from workflow.storage import LocalStorage

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("TEST_REDIS_URL")
FAULTS_ENV = "SHENBAO_TEST_FAULTS"

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(not REDIS_URL, reason="needs a real Redis (TEST_REDIS_URL)"),
]


# ---------------------------------------------------------------- shared helpers


def own_app(
    tmp_path_factory: pytest.TempPathFactory, suffix: str, **overrides: Any
) -> Iterator[Flask]:
    """An app on its OWN database (``<test db>_<suffix>`` on PostgreSQL, else a fresh
    SQLite file) that other processes (workers, crashing children) can share. Dropped
    afterwards; the shared test database stays free of committed rows."""
    from flask_migrate import upgrade

    storage = str(tmp_path_factory.mktemp(f"{suffix}-storage"))
    admin = name = None
    if is_postgres():
        base = make_url(normalize_db_url(os.environ["TEST_DATABASE_URL"]))
        name = f"{base.database}_{suffix}"
        admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = base.set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp(suffix) / f'{suffix}.db'}"
    application = make_app(url, storage, **overrides)
    application.test_client_class = _Client
    with application.app_context():
        upgrade()
        sync_definitions(db.session)
        db.session.commit()
        db.session.remove()
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()
    if admin is not None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def worker_env(app: Flask, **extra: str) -> dict[str, str]:
    """The environment of a production worker process for ``app``'s database and storage."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "STORAGE_DIR": app.config["STORAGE_DIR"],
        "SECRET_KEY": "worker-test-secret",
        "SHENBAO_ENV": "production",
        "PUBLIC_BASE_URL": app.config["PUBLIC_BASE_URL"],
        "PYTHONPATH": str(ROOT),
    }
    if app.config.get("REDIS_URL"):
        env["REDIS_URL"] = app.config["REDIS_URL"]
    env.update(extra)
    return env


# With SHENBAO_TEST_FAULTS=<folder>, the worker imports this module first and wraps the
# render job: a file "fail-once" there makes the next attempt raise; a file "hang" makes
# it write "hanging" (its pid) and sleep before rendering, "hang-after-write" after the PDF
# is stored but before the job's commit, to be killed. Every attempt leaves a file.
FAULT_WORKER = (
    "import tests.test_rq_worker as t; t.install_faults(); from flask.cli import main; main()"
)


def worker_command(*queues: str, faults: bool = False, burst: bool = True) -> list[str]:
    head = [sys.executable, "-c", FAULT_WORKER] if faults else [sys.executable, "-m", "flask"]
    return [*head, "--app", "wsgi:app", "worker", *queues, *(["--burst"] if burst else [])]


def run_worker(app: Flask, *queues: str, faults: Path | None = None, timeout: int = 180):
    """Run ``flask worker QUEUES --burst`` in a new process until the queues are empty."""
    extra = {FAULTS_ENV: str(faults)} if faults else {}
    result = subprocess.run(
        worker_command(*queues, faults=faults is not None),
        cwd=ROOT,
        env=worker_env(app, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def install_faults() -> None:
    from workflow.jobs import JOBS

    real = JOBS["render_decision"]
    folder = Path(os.environ[FAULTS_ENV])

    def render_with_faults(env, **args):
        (folder / f"attempt-{time.time_ns()}").write_text(json.dumps(args))
        fail_once = folder / "fail-once"
        if fail_once.exists():
            fail_once.unlink()
            raise RuntimeError("injected failure (first attempt)")
        if (folder / "hang").exists():
            (folder / "hanging").write_text(str(os.getpid()))
            time.sleep(120)
        result = real(env, **args)
        if (folder / "hang-after-write").exists():
            (folder / "hanging").write_text(str(os.getpid()))
            time.sleep(120)
        return result

    JOBS["render_decision"] = render_with_faults


def attempts(folder: Path) -> int:
    return len(list(folder.glob("attempt-*")))


def redis_conn(app: Flask):
    return webjobs.redis_connection(app)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _relay_on(monkeypatch):
    """Jobs leave after the commit (code run earlier may have switched the relay off)."""
    monkeypatch.setattr(outbox, "_relay", webjobs.relay)


@pytest.fixture(scope="module")
def rq_app(tmp_path_factory) -> Iterator[Flask]:
    for application in own_app(tmp_path_factory, "rq", REDIS_URL=REDIS_URL):
        conn = redis_conn(application)
        conn.flushdb()
        yield application
        conn.flushdb()


@pytest.fixture
def quick_retries(monkeypatch):
    """Retry at once (the production back-off is 10 s, 60 s, 300 s)."""
    for queue in ("documents", "exports"):
        monkeypatch.setitem(
            webjobs.JOB_DEFAULTS, queue, {**webjobs.JOB_DEFAULTS[queue], "retry": (3, [0])}
        )


def approve_and_relay(app: Flask, program: str, **kwargs: Any) -> list[int]:
    """Approve in one transaction; the commit relays the render jobs to RQ."""
    with app.app_context():
        decisions = drive_to_approved(db.session, program, **kwargs)
        ids = [d.id for d in decisions]
        outbox.commit(db.session)
        db.session.remove()
    return ids


def load(app: Flask, decision_id: int) -> Decision:
    with app.app_context():
        decision = db.session.get(Decision, decision_id)
        db.session.expunge(decision)
        db.session.remove()
    return decision


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("program", PROGRAMS)
def test_approval_in_each_program_renders_its_pdf_through_a_real_rq_worker(rq_app, program):
    from rq import Queue
    from rq.job import Job

    ids = approve_and_relay(rq_app, program)
    assert ids
    conn = redis_conn(rq_app)
    for decision_id in ids:
        # Relayed after the commit, not rendered yet: the web process does not render.
        assert Job.exists(f"render-decision-{decision_id}", connection=conn)
        assert load(rq_app, decision_id).pdf_sha256 is None
    started = time.monotonic()
    run_worker(rq_app, "documents")
    seconds = time.monotonic() - started
    assert Queue("documents", connection=conn).count == 0
    storage = LocalStorage(rq_app.config["STORAGE_DIR"])
    client = rq_app.test_client()
    for decision_id in ids:
        decision = load(rq_app, decision_id)
        assert decision.pdf_sha256 and storage.exists(decision.pdf_storage_key)
        pdf = storage.read(decision.pdf_storage_key)
        assert hashlib.sha256(pdf).hexdigest() == decision.pdf_sha256
        # The number, the applicant, the amount in figures and capitals (recognition
        # letters print no amount yet: see test_documents_jobs).
        assert_letter_text(pdf, decision, amounts=True)
        page = client.get(f"/verify/{decision.verification_code}").get_data(as_text=True)
        assert decision.pdf_sha256 in page and decision.doc_number in page
        assert (
            Job.fetch(f"render-decision-{decision_id}", connection=conn).get_status() == "finished"
        )
    reliability.record(
        f"test_approval_in_each_program_renders_its_pdf_through_a_real_rq_worker[{program}]",
        documents=len(ids),
        worker_seconds=round(seconds, 1),
    )


def test_job_failing_once_is_retried_by_rq_into_one_document(rq_app, tmp_path, quick_retries):
    (tmp_path / "fail-once").write_text("1")
    files_before = len(stored_files(rq_app.config["STORAGE_DIR"]))
    (decision_id,) = approve_and_relay(rq_app, "certification_reward")
    result = run_worker(rq_app, "documents", faults=tmp_path)
    assert attempts(tmp_path) == 2, result.stderr[-2000:]
    assert "injected failure" in result.stdout + result.stderr
    decision = load(rq_app, decision_id)
    files = stored_files(rq_app.config["STORAGE_DIR"])
    assert decision.pdf_sha256 and len(files) == files_before + 1
    same = [f for f in files if hashlib.sha256(f.read_bytes()).hexdigest() == decision.pdf_sha256]
    assert len(same) == 1
    reliability.record(
        "test_job_failing_once_is_retried_by_rq_into_one_document",
        faults_injected=1,
        attempts=attempts(tmp_path),
        documents=1,
    )


def test_outbox_relayed_twice_is_one_rq_job(rq_app, monkeypatch):
    from rq import Queue

    with relay_disabled():  # the process "dies" before relaying
        (decision_id,) = approve_and_relay(rq_app, "certification_reward")
    conn = redis_conn(rq_app)
    queue = Queue("documents", connection=conn)
    before = queue.count
    with rq_app.app_context():
        row = db.session.scalar(
            select(OutboxJob).where(OutboxJob.job_id == f"render-decision-{decision_id}")
        )
        assert row.relayed_at is None
        assert outbox.relay_pending(db.session) >= 1
        # A second relay (two cron runs racing, or a retry after a lost reply) finds the job.
        row.relayed_at = None
        db.session.commit()
        assert outbox.relay_pending(db.session) >= 1
        db.session.remove()
    assert queue.count == before + 1
    run_worker(rq_app, "documents")
    assert load(rq_app, decision_id).pdf_sha256


def test_batch_render_and_zip_run_on_the_exports_queue(rq_app, monkeypatch):
    import io
    import zipfile

    with relay_disabled():  # letters without PDFs
        ids = approve_and_relay(
            rq_app, "branded_agency", scenario="branded_agency/fewer_than_five_pass.yaml"
        )
    with rq_app.app_context():
        call_id = db.session.get(Application, load(rq_app, ids[0]).application_id).call_id
        email = f"officer-{call_id}@test.cn"
        officer = User(email=email, name="officer", password_hash="x")
        officer.grants.append(RoleGrant(role="city_officer"))
        db.session.add(officer)
        db.session.commit()
        db.session.remove()
    client = rq_app.test_client()
    with rq_app.app_context():
        login(client, db.session.scalar(select(User).where(User.email == email)))
        response = client.post(f"/review/calls/{call_id}/documents/render")
        assert response.status_code == 302
        job_id = f"render-call-{call_id}-1"
        assert client.get(f"/jobs/{job_id}/progress").get_json()["status"] == "queued"
        db.session.remove()
    run_worker(rq_app, "exports")
    with rq_app.app_context():
        login(client, db.session.scalar(select(User).where(User.email == email)))
        progress = client.get(f"/jobs/{job_id}/progress").get_json()
        assert (progress["status"], progress["done"], progress["total"]) == ("done", 4, 4)
        response = client.post(f"/review/calls/{call_id}/decisions.zip")
        zip_id = f"zip-call-{call_id}-1"
        assert response.headers["Location"].endswith(zip_id)
        db.session.remove()
    run_worker(rq_app, "exports")
    with rq_app.app_context():
        login(client, db.session.scalar(select(User).where(User.email == email)))
        progress = client.get(f"/jobs/{zip_id}/progress").get_json()
        assert progress["status"] == "done" and progress["download_url"]
        archive = zipfile.ZipFile(io.BytesIO(client.get(progress["download_url"]).data))
        record = db.session.scalar(select(JobRecord).where(JobRecord.job_id == zip_id))
        assert record.done == 4
        db.session.remove()
    names = [n for n in archive.namelist() if n.endswith(".pdf")]
    assert len(names) == 4
    for decision_id in ids:
        decision = load(rq_app, decision_id)
        pdf = archive.read(f"{decision.doc_number}.pdf")
        assert hashlib.sha256(pdf).hexdigest() == decision.pdf_sha256
        assert compact(decision.doc_number) in compact(archive.read("manifest.csv").decode())
