"""In the browser: anyone checks a decision letter on its public verification page; a
city officer renders a call's missing letters and zips them, following each job on its
progress page (progress bar driven by static/js/jobs.js under the CSP); the admin looks
at the queues and grants a role; an applicant reads and clears their messages.

The demo data has no decision, so this module runs its own server on a database seeded
with the demo data plus one rendered approval and one call whose four letters wait for
the batch. Screenshots: test-artifacts/screenshots/documents-*.png."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date

import pytest
from werkzeug.serving import make_server

from tests.browser.conftest import login_as, shot
from tests.conftest import make_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory) -> Iterator[dict]:
    from flask_migrate import upgrade
    from sqlalchemy import select

    from tests.test_documents_jobs import drive_to_approved, relay_disabled
    from webapp.demo import seed_demo
    from webapp.extensions import db
    from webapp.jobs import relay
    from workflow import outbox
    from workflow.models import Application, Notification, User

    base = tmp_path_factory.mktemp("docs-live")
    app = make_app(
        f"sqlite:///{base / 'live.db'}", str(base / "storage"), PUBLIC_BASE_URL="http://127.0.0.1"
    )
    saved_relay = outbox._relay
    outbox.set_relay(relay)  # whatever ran before, jobs leave after the commit here
    with app.app_context():
        upgrade()
        seed_demo(db.session, date.today())
        outbox.commit(db.session)
        (rendered,) = drive_to_approved(db.session, "certification_reward")
        outbox.commit(db.session)  # rendered in-process after the commit
        with relay_disabled():  # these letters wait for the batch render
            waiting = drive_to_approved(
                db.session, "branded_agency", scenario="branded_agency/fewer_than_five_pass.yaml"
            )
            outbox.commit(db.session)
        applicant = db.session.scalar(select(User).where(User.email == "guanghua@demo.cn"))
        for title in ("知识产权管理规范贯标认证奖励：区县审核中", "申报材料已退回补正"):
            db.session.add(Notification(user_id=applicant.id, kind="state_change", title=title))
        db.session.commit()
        info = {
            "code": rendered.verification_code,
            "sha": rendered.pdf_sha256,
            "number": rendered.doc_number,
            "call": db.session.get(Application, waiting[0].application_id).call_id,
            "city": db.session.scalar(select(User.id).where(User.email == "city@demo.cn")),
        }
        db.session.remove()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {**info, "url": f"http://127.0.0.1:{server.server_port}"}
    finally:
        server.shutdown()
        thread.join(10)
        outbox.set_relay(saved_relay)


@pytest.fixture
def dpage(browser, docs_server):
    context = browser.new_context(
        base_url=docs_server["url"], locale="zh-CN", viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    page.set_default_timeout(20000)
    problems: list[str] = []
    # CSP violations and script errors; a 404 (favicon, the unknown-code page) is expected.
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and "Failed to load resource" not in m.text
            else None
        ),
    )
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.problems = problems
    yield page
    context.close()


def test_public_verification_page(dpage, docs_server):
    page = dpage
    page.goto(f"/verify/{docs_server['code']}")
    assert page.locator("h1").inner_text() == "决定书核验"
    assert page.locator("#pdf-sha256").inner_text() == docs_server["sha"]
    assert docs_server["number"] in page.content()
    shot(page, "documents-01-verify")
    page.goto(f"/verify/{docs_server['code']}?lang=en")
    assert page.locator("h1").inner_text() == "Verify a decision letter"
    shot(page, "documents-02-verify-en")
    response = page.goto("/verify/0000000000000000?lang=zh")
    assert response.status == 404
    assert "不对应任何已出具的决定书" in page.content()
    shot(page, "documents-03-verify-unknown")
    assert page.problems == []


def test_officer_renders_and_zips_a_calls_letters(dpage, docs_server):
    page = dpage
    login_as(page, "city@demo.cn")
    page.goto(f"/review/calls/{docs_server['call']}/documents")
    assert page.locator("text=尚未生成").count() == 4
    shot(page, "documents-04-call-letters")
    page.get_by_role("button", name="生成缺少的决定书 PDF").click()
    page.wait_for_url("**/jobs/render-call-*")
    bar = page.locator("[role=progressbar]")
    page.wait_for_function(
        "document.querySelector('[role=progressbar]').getAttribute('aria-valuenow') === '100'"
    )
    assert bar.get_attribute("aria-valuenow") == "100"
    assert "4 / 4" in page.locator("[data-role=count]").inner_text()
    width = page.evaluate("document.querySelector('[data-role=bar]').style.width")
    assert width == "100%"  # set by jobs.js through the CSSOM, allowed by the CSP
    shot(page, "documents-05-render-progress")
    page.get_by_role("link", name="返回本批次的决定书").click()
    assert page.locator("text=尚未生成").count() == 0
    page.get_by_role("button", name="打包下载全部决定书（含清单）").click()
    page.wait_for_url("**/jobs/zip-call-*")
    download_link = page.get_by_role("link", name="下载压缩包")
    download_link.wait_for(state="visible")
    with page.expect_download() as info:
        download_link.click()
    assert info.value.suggested_filename.endswith(".zip")
    shot(page, "documents-06-zip-ready")
    assert page.problems == []


def test_admin_sees_queues_and_grants_a_role(dpage, docs_server):
    page = dpage
    login_as(page, "admin@demo.cn")
    page.goto("/admin/")
    shot(page, "documents-07-admin")
    page.goto("/admin/queues")
    assert page.locator("h1").inner_text() == "后台任务队列"
    shot(page, "documents-08-admin-queues")
    page.goto(f"/admin/users/{docs_server['city']}")
    page.select_option("#role", "approver")
    page.select_option("#program", "branded_agency")
    page.get_by_role("button", name="授予角色").click()
    assert page.locator(".alert-success").inner_text().startswith("已授予角色")
    assert page.get_by_role("button", name="撤销角色：审定人").count() == 1
    shot(page, "documents-09-admin-roles")
    page.get_by_role("button", name="撤销角色：审定人").click()
    assert page.get_by_role("button", name="撤销角色：审定人").count() == 0
    assert page.problems == []


def test_applicant_reads_messages(dpage):
    page = dpage
    login_as(page, "guanghua@demo.cn")
    page.goto("/notifications")
    assert page.locator(".list-group-item-primary").count() >= 2
    shot(page, "documents-10-notifications")
    page.get_by_role("button", name="全部标为已读").click()
    assert page.locator(".list-group-item-primary").count() == 0
    assert page.locator(".alert-success").count() == 1
    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, "documents-11-notifications-mobile")
    assert page.problems == []
