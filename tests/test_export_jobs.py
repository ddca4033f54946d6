"""Large payment files through a job on the ``exports`` queue (issue 9): above the
threshold the export page offers to write the file, the job leaves through the outbox
after the commit, the page shows its progress and then a download link; only finance
staff reach any of it, the generic job pages never serve it, a batch changed after
locking gets no file, and the job is safe to run twice. In-process here (no Redis); the
last test runs the same through a real RQ worker when TEST_REDIS_URL is set.
"""

from __future__ import annotations

import io
import os
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import select, update

from tests.audit_events import audit_events
from tests.test_exports import csv_rows, expected_row
from tests.test_finance import FinanceWorld, login, people
from tests.test_finance import client as client  # noqa: F401,PLC0414 (fresh g per request)
from tests.test_finance import world as world  # noqa: F401,PLC0414 (the fixture)
from webapp import jobs as webjobs
from workflow import export_jobs, exports, outbox
from workflow.jobs import JobEnv
from workflow.models import DisbursementLine, JobRecord, OutboxJob


@pytest.fixture
def large(app, session, world: FinanceWorld, monkeypatch):
    """A locked batch of two lines that counts as large (the threshold is set to one
    line), with jobs relayed in-process after each commit."""
    decisions = [world.approved(district="朝阳区"), world.approved(cost="12345.67")]
    batch = world.batch(lock=True)
    session.commit()
    monkeypatch.setitem(app.config, "FINANCE_EXPORT_SYNC_MAX_LINES", 1)
    monkeypatch.setattr(outbox, "_relay", webjobs.relay)
    return batch, decisions


def url(batch: Any, fmt: str = "xlsx") -> str:
    return f"/finance/batches/{batch.id}/export.{fmt}"


def job_record(session: Any, job_id: str) -> JobRecord:
    return session.scalar(select(JobRecord).where(JobRecord.job_id == job_id))


def test_the_threshold_decides_between_the_file_and_the_export_page(
    app, client, session, world, large, monkeypatch
):
    batch, _decisions = large
    login(client, world.finance)
    page = client.get(url(batch))
    assert page.status_code == 200 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert "生成文件" in text and f'method="post" action="{url(batch)}"' in text
    assert f"{batch.number} · Excel" in text
    detail = client.get(f"/finance/batches/{batch.id}").get_data(as_text=True)
    assert f'method="post" action="{url(batch)}"' in detail  # a button, not a download
    monkeypatch.setitem(app.config, "FINANCE_EXPORT_SYNC_MAX_LINES", 2)
    direct = client.get(url(batch, "csv"))
    assert direct.mimetype == "text/csv" and len(csv_rows(direct.get_data())) == 4
    assert session.scalar(select(JobRecord).where(JobRecord.kind == export_jobs.KIND)) is None


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_a_large_batch_is_written_by_a_job_and_downloaded_from_its_page(
    client, session, world, large, fmt
):
    batch, decisions = large
    login(client, world.finance)
    response = client.post(url(batch, fmt))
    assert response.status_code == 302 and response.headers["Location"].endswith(url(batch, fmt))
    job_id = f"batch_export-{batch.id}-{fmt}-1"
    row = session.scalar(select(OutboxJob).where(OutboxJob.job_id == job_id))
    assert (row.queue, row.func, row.relayed_at is not None) == ("exports", "export_batch", True)
    assert row.args == {"batch_id": batch.id, "fmt": fmt, "job_id": job_id}
    record = job_record(session, job_id)
    assert (record.status, record.done, record.total) == ("done", 2, 2)
    assert record.owner_id == world.finance.id and record.result_storage_key

    page = client.get(url(batch, fmt)).get_data(as_text=True)
    download = f"{url(batch, fmt)}?job={job_id}"
    assert download in page and "下载文件" in page and "生成文件" not in page
    progress = client.get(download + "&progress=1").get_json()
    assert progress["status"] == "done" and progress["percent"] == 100
    assert progress["download_url"] == download and progress["done"] == 2

    file = client.get(download)
    assert file.status_code == 200 and file.mimetype == exports.MIMETYPES[fmt]
    assert f"disbursement-{batch.number}.{fmt}" in file.headers["Content-Disposition"]
    if fmt == "csv":
        assert csv_rows(file.get_data())[1:3] == [expected_row(d) for d in decisions]
    else:
        sheet = load_workbook(io.BytesIO(file.get_data())).active
        names = [sheet.cell(row=r, column=1).value for r in (2, 3)]
        assert names == [expected_row(d)[0] for d in decisions]
    (start,) = audit_events(session, "batch.export_start")
    assert start.data == {"number": batch.number, "format": fmt, "job_id": job_id}
    (sent,) = audit_events(session, "batch.export")
    assert sent.data["job_id"] == job_id and sent.actor_id == world.finance.id

    # A second click finds the file already written: no second job.
    assert client.post(url(batch, fmt)).status_code == 302
    count = session.scalar(
        select(OutboxJob.id).where(OutboxJob.job_id == f"batch_export-{batch.id}-{fmt}-2")
    )
    assert count is None


def test_only_finance_staff_reach_the_export_page_the_job_and_its_file(
    client, session, world, make, large
):
    batch, _decisions = large
    login(client, world.finance)
    client.post(url(batch))
    job_id = f"batch_export-{batch.id}-xlsx-1"
    urls = [url(batch), f"{url(batch)}?job={job_id}", f"{url(batch)}?job={job_id}&progress=1"]
    for role, user in people(world, make).items():
        login(client, user)
        for address in urls:
            status = client.get(address).status_code
            want = 302 if user is None else (200 if role == "finance" else 403)
            assert status == want, (role, address)
        if role != "finance":
            status = client.post(url(batch)).status_code
            assert status == (302 if user is None else 403), role
        # The decision documents' generic job pages never serve a payment file (their
        # job ids have no underscore), not even to its owner or an administrator.
        if user is not None:
            assert client.get(f"/jobs/{job_id}").status_code == 404
            assert client.get(f"/jobs/{job_id}/download").status_code == 404
    assert len(audit_events(session, "batch.export_start")) == 1


def test_the_generic_job_pages_serve_only_decision_letter_jobs(client, session, world, large):
    """Not by the spelling of the id: an export job whose id the job pages would accept is
    still not found there, even by its owner."""
    from workflow.export_jobs import KIND

    batch, _decisions = large
    session.add(
        JobRecord(
            job_id="export-spelled-like-a-document-job",
            kind=KIND,
            owner_id=world.finance.id,
            total=1,
            status="done",
            result_storage_key="exports/x.xlsx",
        )
    )
    session.commit()
    login(client, world.finance)
    assert client.get("/jobs/export-spelled-like-a-document-job").status_code == 404
    assert client.get("/jobs/export-spelled-like-a-document-job/download").status_code == 404


def test_a_job_of_another_batch_or_format_is_not_found(client, session, world, large):
    batch, _decisions = large
    login(client, world.finance)
    client.post(url(batch))
    job_id = f"batch_export-{batch.id}-xlsx-1"
    world.approved(cost="1000.00")
    other = world.batch()  # a draft: no export at all
    session.commit()
    assert client.get(f"{url(batch, 'csv')}?job={job_id}").status_code == 404
    assert client.get(f"{url(batch)}?job=batch_export-{batch.id}-xlsx-9").status_code == 404
    assert client.get(f"{url(batch)}?job=../../etc/passwd").status_code == 404
    assert client.get(f"{url(other)}?job={job_id}").status_code == 409  # not locked


def test_a_file_that_is_not_ready_is_not_sent(client, session, world, large, monkeypatch):
    batch, _decisions = large
    monkeypatch.setattr(outbox, "_relay", None)  # committed, not yet run by a worker
    login(client, world.finance)
    client.post(url(batch))
    job_id = f"batch_export-{batch.id}-xlsx-1"
    assert job_record(session, job_id).status == "queued"
    assert client.get(f"{url(batch)}?job={job_id}").status_code == 404
    progress = client.get(f"{url(batch)}?job={job_id}&progress=1").get_json()
    assert (progress["status"], progress["download_url"]) == ("queued", None)
    page = client.get(url(batch)).get_data(as_text=True)
    assert "排队中" in page and "生成文件" not in page  # no second job while one waits
    client.post(url(batch))  # a second click follows the same job
    assert (
        session.scalar(select(OutboxJob).where(OutboxJob.job_id.like("batch_export-%-2"))) is None
    )


def test_a_batch_changed_after_locking_gets_no_file(client, session, world, large):
    batch, decisions = large
    session.execute(
        update(DisbursementLine)
        .where(DisbursementLine.decision_id == decisions[1].id)
        .values(payee={"name": "别人", "bank_account_no": "6222000000000000000"})
    )
    session.commit()
    login(client, world.finance)
    assert client.post(url(batch, "csv")).status_code == 302
    record = job_record(session, f"batch_export-{batch.id}-csv-1")
    assert (record.status, record.error) == ("failed", export_jobs.CHANGED)
    assert record.result_storage_key is None
    page = client.get(url(batch, "csv")).get_data(as_text=True)
    assert "批次明细在锁定后被改动，已拒绝导出。" in page and "重新生成" in page
    (refused,) = audit_events(session, "batch.export_refused")
    assert refused.data["job_id"] == record.job_id and refused.actor_id == world.finance.id
    assert audit_events(session, "batch.export") == []


def test_the_job_is_safe_to_run_twice_and_rechecks_the_batch(app, session, world, large):
    batch, _decisions = large
    record = export_jobs.start_export(session, world.finance, batch, "xlsx", webjobs.storage())
    outbox.commit(session)  # relayed and run in-process
    env = JobEnv(session=session, storage=webjobs.storage())
    key = job_record(session, record.job_id).result_storage_key
    assert export_jobs.write_export(env, batch.id, "xlsx", record.job_id) == key
    assert export_jobs.write_export(env, batch.id, "xlsx", "batch_export-0-xlsx-1") is None
    # A job whose batch is no longer exportable fails, it does not write.
    second = export_jobs.start_export(session, world.finance, batch, "csv", webjobs.storage())
    session.execute(update(JobRecord).where(JobRecord.id == second.id).values(status="queued"))
    batch.status = "cancelled"
    session.flush()
    assert export_jobs.write_export(env, batch.id, "csv", second.job_id) is None
    assert (second.status, second.error) == ("failed", export_jobs.NOT_EXPORTABLE)


def test_only_finance_staff_start_an_export(session, world, large):
    from workflow.errors import PermissionDenied

    batch, _decisions = large
    with pytest.raises(PermissionDenied):
        export_jobs.start_export(session, world.approver, batch, "csv", webjobs.storage())


# ---------------------------------------------------------------- a real RQ worker

REDIS_URL = os.environ.get("TEST_REDIS_URL")


@pytest.fixture(scope="module")
def rq_app(tmp_path_factory):
    from tests.test_rq_worker import own_app, redis_conn

    overrides = {"REDIS_URL": REDIS_URL, "FINANCE_EXPORT_SYNC_MAX_LINES": 100}
    for application in own_app(tmp_path_factory, "exportrq", **overrides):
        conn = redis_conn(application)
        conn.flushdb()
        yield application
        conn.flushdb()


@pytest.mark.redis
@pytest.mark.skipif(not REDIS_URL, reason="needs a real Redis (TEST_REDIS_URL)")
def test_a_large_export_runs_on_the_exports_queue_of_a_real_worker(rq_app, monkeypatch):
    from rq.job import Job

    from bench.bench_export import build_batch
    from tests.conftest import login as login_as
    from tests.test_rq_worker import redis_conn, run_worker
    from webapp.extensions import db
    from workflow.models import RoleGrant, User

    monkeypatch.setattr(outbox, "_relay", webjobs.relay)
    with rq_app.app_context():
        batch = build_batch(db.session, 1500, 2031)  # committed, locked, 1,500 lines
        batch_id, number = batch.id, batch.number
        finance = User(email="finance-export@test.cn", name="财务", password_hash="x")
        finance.grants.append(RoleGrant(role="finance"))
        db.session.add(finance)
        db.session.commit()
        client = rq_app.test_client()
        login_as(client, finance)
        db.session.remove()
    address = f"/finance/batches/{batch_id}/export.csv"
    job_id = f"batch_export-{batch_id}-csv-1"
    with rq_app.app_context():
        assert client.post(address).status_code == 302
        assert Job.exists(job_id, connection=redis_conn(rq_app))  # relayed after the commit
        assert client.get(f"{address}?job={job_id}&progress=1").get_json()["status"] == "queued"
        db.session.remove()
    run_worker(rq_app, "exports")
    with rq_app.app_context():
        progress = client.get(f"{address}?job={job_id}&progress=1").get_json()
        assert (progress["status"], progress["done"], progress["total"]) == ("done", 1500, 1500)
        rows = csv_rows(client.get(progress["download_url"]).get_data())
        assert len(rows) == 1502 and rows[-1][:2] == ["合计", "1500笔"]
        assert rows[1][7] == "长市监知字〔2031〕1号" and number in client.get(address).get_data(
            as_text=True
        )
        db.session.remove()
