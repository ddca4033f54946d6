"""Administration (issue 6 item 1, issue 8 item 3): only admins reach /admin; the queues
page shows the outbox (and, with Redis, each RQ queue and its failed jobs) and retries
them; role grants and revocations are audited and the audit chain stays intact.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import login
from tests.test_rq_worker import REDIS_URL, own_app, redis_conn
from webapp.extensions import db
from workflow import outbox
from workflow.audit import verify_chain
from workflow.jobs import JOBS
from workflow.models import AuditEvent, OutboxJob, RoleGrant, User

ROUTES = [
    ("get", "/admin/"),
    ("get", "/admin/queues"),
    ("get", "/admin/users"),
    ("get", "/admin/users/{user}"),
    ("post", "/admin/users/{user}/grants"),
    ("post", "/admin/users/{user}/grants/{grant}/revoke"),
    ("post", "/admin/outbox/{row}/resend"),
    ("post", "/admin/queues/documents/failed/some-job/retry"),
    ("post", "/admin/queues/documents/failed/some-job/delete"),
]


def _events(session, action: str, user_id: int) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == action, AuditEvent.entity_id == user_id)
            .order_by(AuditEvent.id)
        )
    )


def _outbox_row(session, **kwargs: Any) -> OutboxJob:
    row = OutboxJob(
        job_id=kwargs.pop("job_id", "test-job-1"),
        queue="notifications",
        func=kwargs.pop("func", "admin_test_job"),
        args=kwargs.pop("args", {}),
        **kwargs,
    )
    session.add(row)
    session.flush()
    return row


def test_only_admins_get_in(client, session, make):
    target = make.user("city_officer")
    row = _outbox_row(session)
    urls = [(m, u.format(user=target.id, grant=target.grants[0].id, row=row.id)) for m, u in ROUTES]
    for method, url in urls:
        assert getattr(client, method)(url).status_code == 302, url  # to the login page
    for role in ("city_officer", "approver", "finance", "district_officer", "expert"):
        login(client, make.user(role))
        for method, url in urls:
            assert getattr(client, method)(url).status_code == 403, (role, url)
    login(client, make.applicant())
    for method, url in urls:
        assert getattr(client, method)(url).status_code == 403, url
    session.refresh(target)
    assert [g.role for g in target.grants] == ["city_officer"]


def test_admin_pages(client, session, make):
    admin = make.user("admin")
    login(client, admin)
    for url in ("/admin/", "/admin/queues", "/admin/users", f"/admin/users/{admin.id}"):
        page = client.get(url)
        assert page.status_code == 200, url
        assert "<script>" not in page.get_data(as_text=True)
    english = client.get("/admin/?lang=en").get_data(as_text=True)
    assert "Job queues" in english and "Users and roles" in english
    html = client.get(f"/admin/users?q={admin.email[:8]}").get_data(as_text=True)
    assert admin.email in html
    long = client.get("/admin/users?lang=zh&q=" + "x" * 500, follow_redirects=True)
    assert long.status_code == 200 and "搜索词过长" in long.get_data(as_text=True)
    for bad in ("/admin/users/999999", "/admin/users?page=-1", "/admin/users?page=abc"):
        assert client.get(bad).status_code in (200, 404), bad
    assert client.get("/admin/users/999999").status_code == 404
    # Without Redis there is no RQ queue to act on.
    assert client.post("/admin/queues/documents/failed/x/retry").status_code == 404
    assert client.post("/admin/queues/nope/failed/x/retry").status_code == 404


def test_grant_and_revoke_roles_are_audited(client, session, make):
    admin = make.user("admin")
    target = make.user("expert")
    login(client, admin)
    response = client.post(
        f"/admin/users/{target.id}/grants",
        data={
            "role": "district_officer",
            "program": "certification_reward",
            "district": "朝阳区",
            "lead": "y",
        },
    )
    assert response.status_code == 302
    session.refresh(target)
    grant = next(g for g in target.grants if g.role == "district_officer")
    assert (grant.program_code, grant.district, grant.is_lead) == (
        "certification_reward",
        "朝阳区",
        True,
    )
    (event,) = _events(session, "role.grant", target.id)
    assert event.actor_id == admin.id and event.entity_type == "user"
    assert event.data["role"] == "district_officer" and event.data["district"] == "朝阳区"
    assert event.data["lead"] is True and event.data["program"] == "certification_reward"
    # The same grant twice: a conflict with a message, nothing added.
    again = client.post(
        f"/admin/users/{target.id}/grants",
        data={"role": "district_officer", "program": "certification_reward", "district": "朝阳区"},
    )
    assert again.status_code == 409 and "已有相同范围" in again.get_data(as_text=True)
    # Invalid choices: 422 with the form again, nothing added.
    for data in (
        {"role": "applicant"},
        {"role": "superuser"},
        {"role": "finance", "district": "火星区"},
        {"role": "finance", "program": "no_such_program"},
    ):
        bad = client.post(f"/admin/users/{target.id}/grants", data=data)
        assert bad.status_code == 422, data
    session.refresh(target)
    assert sorted(g.role for g in target.grants) == ["district_officer", "expert"]
    # Revoke: gone, and audited with what it was.
    response = client.post(f"/admin/users/{target.id}/grants/{grant.id}/revoke")
    assert response.status_code == 302
    session.expire_all()
    assert session.get(RoleGrant, grant.id) is None
    (revoked,) = _events(session, "role.revoke", target.id)
    assert revoked.data["role"] == "district_officer" and revoked.data["grant_id"] == grant.id
    # A grant of another user through this user's URL: not found.
    other = make.user("finance")
    url = f"/admin/users/{target.id}/grants/{other.grants[0].id}/revoke"
    assert client.post(url).status_code == 404
    session.commit()
    assert verify_chain(session).ok


def test_admin_cannot_revoke_their_own_last_admin_role(client, session, make):
    admin = make.user("admin")
    login(client, admin)
    response = client.post(f"/admin/users/{admin.id}/grants/{admin.grants[0].id}/revoke")
    assert response.status_code == 409
    session.refresh(admin)
    assert [g.role for g in admin.grants] == ["admin"]
    assert _events(session, "role.revoke", admin.id) == []


def test_outbox_row_that_failed_in_process_is_resent(client, session, make, monkeypatch):
    admin = make.user("admin")
    runs: list[dict] = []
    monkeypatch.setitem(JOBS, "admin_test_job", lambda env, **args: runs.append(args))
    row = _outbox_row(
        session,
        job_id="admin-resend-1",
        args={"n": 1},
        attempts=3,
        last_error="RuntimeError: SMTP server unreachable",
        relayed_at=None,
    )
    login(client, admin)
    page = client.get("/admin/queues").get_data(as_text=True)
    assert "admin-resend-1" in page and "SMTP server unreachable" in page
    response = client.post(f"/admin/outbox/{row.id}/resend")
    assert response.status_code == 302
    assert runs == [{"n": 1}]  # relayed after the request's commit, run in-process
    session.refresh(row)
    assert row.relayed_at is not None and row.last_error is None
    event = session.scalar(select(AuditEvent).where(AuditEvent.action == "outbox.resend"))
    assert event.actor_id == admin.id and event.data["job_id"] == "admin-resend-1"
    assert "<code>admin-resend-1</code>" not in client.get("/admin/queues").get_data(as_text=True)
    assert client.post("/admin/outbox/999999/resend").status_code == 404


# ---------------------------------------------------------------- with Redis


@pytest.fixture(autouse=True)
def _relay_on(monkeypatch):
    """Jobs leave after the commit (code run earlier may have switched the relay off)."""
    from webapp.jobs import relay

    monkeypatch.setattr(outbox, "_relay", relay)


@pytest.fixture(scope="module")
def rq_admin_app(tmp_path_factory):
    if not REDIS_URL:
        pytest.skip("needs a real Redis (TEST_REDIS_URL)")
    for application in own_app(tmp_path_factory, "rqadmin", REDIS_URL=REDIS_URL):
        conn = redis_conn(application)
        conn.flushdb()
        yield application
        conn.flushdb()


@pytest.mark.redis
def test_rq_queues_page_retry_and_delete_failed_jobs(rq_admin_app, monkeypatch):
    from rq import Queue, SimpleWorker

    from webapp import jobs as webjobs

    app = rq_admin_app
    conn = redis_conn(app)
    with app.app_context():
        admin = User(email="queue-admin@test.cn", name="admin", password_hash="x")
        admin.grants.append(RoleGrant(role="admin"))
        db.session.add(admin)
        for n in (1, 2):  # two jobs that fail: their function does not exist
            outbox.enqueue(
                db.session, "no_such_job", {"n": n}, queue="documents", job_id=f"broken-{n}"
            )
        monkeypatch.setitem(
            webjobs.JOB_DEFAULTS,
            "documents",
            {**webjobs.JOB_DEFAULTS["documents"], "retry": (1, [0])},
        )
        outbox.commit(db.session)  # relayed to RQ
        monkeypatch.setitem(webjobs._WORKER_APP, "app", app)
        queue = Queue("documents", connection=conn)
        SimpleWorker([queue], connection=conn).work(burst=True)  # fail, retry, fail
        assert queue.failed_job_registry.count == 2
        admin_id = admin.get_id()
        db.session.remove()
    client = app.test_client()
    with client.session_transaction() as sess:
        sess["_user_id"], sess["_fresh"], sess["mfa_ok"] = admin_id, True, True
    html = client.get("/admin/queues").get_data(as_text=True)
    assert "broken-1" in html and "broken-2" in html and "KeyError" in html
    assert client.post("/admin/queues/documents/failed/broken-1/retry").status_code == 302
    assert queue.count == 1 and queue.failed_job_registry.count == 1
    assert client.post("/admin/queues/documents/failed/broken-2/delete").status_code == 302
    assert queue.failed_job_registry.count == 0
    # Gone from the list: retrying it again is a clear 404.
    assert client.post("/admin/queues/documents/failed/broken-2/retry").status_code == 404
    with app.app_context():
        actions = set(db.session.scalars(select(AuditEvent.action)))
        assert {"job.retry", "job.delete"} <= actions
        db.session.remove()
