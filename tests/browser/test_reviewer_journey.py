"""In the browser: reviewers take the demo certification-reward application of 长春北方汽车
电子 (绿园区, waiting for district review) from submission to decision - district review,
city eligibility review, the approval meeting with its allocation preview, the public
notice page - then the notice period ends (the sweep, run for a later day) and the
applicant sees the decision. A second journey runs expert review on a branded-agency
application: panel assignment, three blind score sheets, ranking.
Screenshots: test-artifacts/screenshots/review-*.png.

The demo's district officer is scoped to 朝阳区, so this server adds a 绿园区 district
officer, and a branded-agency application of the demo agency (菁华) waiting for its
experts (the call needs three, as many as the demo has). It is built like the shared
``live_server`` but keeps its app object, so the test can run the deadline sweep inside
it with a chosen ``today``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect
from werkzeug.serving import make_server

from tests.browser.conftest import login_as, shot
from tests.conftest import make_app

pytestmark = pytest.mark.browser

LVYUAN_OFFICER = "district-lvyuan@demo.cn"
APPLICANT = "beifang@demo.cn"
ORG = "长春北方汽车电子股份有限公司"
OTHER_ORG = "长春光华精密仪器有限公司"
AGENCY = "jinghua@demo.cn"
AGENCY_ORG = "长春菁华专利商标代理事务所"
EXPERTS = ("expert1@demo.cn", "expert2@demo.cn", "expert3@demo.cn")
CRITERIA = ("basic_conditions", "team", "operations", "service_quality", "integrity")


@pytest.fixture(scope="module")
def review_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object]]:
    from flask_migrate import upgrade

    from webapp.demo import DEMO_PASSWORD, seed_demo
    from webapp.extensions import db
    from webapp.security import hash_password
    from workflow import outbox
    from workflow.models import RoleGrant, User

    base = tmp_path_factory.mktemp("review-live")
    app = make_app(
        f"sqlite:///{base / 'live.db'}", str(base / "storage"), PUBLIC_BASE_URL="http://127.0.0.1"
    )
    with app.app_context():
        upgrade()
        seed_demo(db.session, date.today())
        officer = User(
            email=LVYUAN_OFFICER, name="绿园区初审员", password_hash=hash_password(DEMO_PASSWORD)
        )
        officer.grants.append(RoleGrant(role="district_officer", district="绿园区"))
        db.session.add(officer)
        _branded_application_in_expert_review(app)
        outbox.commit(db.session)
        db.session.remove()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", app
    finally:
        server.shutdown()
        thread.join(10)


def _branded_application_in_expert_review(app) -> None:
    import yaml

    from webapp.demo import _minimal_pdf
    from webapp.extensions import db
    from workflow.engine import compiled, fire
    from workflow.models import Attachment, Call, User
    from workflow.operations.applications import (
        save_draft,
        start_application,
        submit_application,
    )
    from workflow.storage import LocalStorage

    today = date.today()
    session = db.session
    scenario = Path(__file__).parents[1] / "scenarios" / "branded_agency" / "budget_exhausted.yaml"
    form = yaml.safe_load(scenario.read_text(encoding="utf-8"))["applications"][0]["form"]
    call = session.scalars(db.select(Call).where(Call.program_code == "branded_agency")).one()
    call.params = {**call.params, "min_experts": "3"}
    owner = session.scalars(db.select(User).where(User.email == AGENCY)).one()
    city = session.scalars(db.select(User).where(User.email == "city@demo.cn")).one()
    application = start_application(session, user=owner, call=call, today=today)
    save_draft(session, application, owner, form)
    storage = LocalStorage(app.config["STORAGE_DIR"])
    for material in compiled(session, application.definition_id).program.materials:
        data = _minimal_pdf(material.kind)
        key, digest = storage.put(data, prefix="att")
        session.add(
            Attachment(
                application_id=application.id,
                kind=material.kind,
                filename=f"{material.kind}.pdf",
                content_type="application/pdf",
                size=len(data),
                sha256=digest,
                storage_key=key,
                uploaded_by_id=owner.id,
            )
        )
    session.flush()
    session.refresh(application)
    submit_application(session, application, owner, today=today)
    fire(session, application, "pass_eligibility", city, today=today)
    assert application.state == "expert_review"


@pytest.fixture
def open_page(browser, review_server):
    """open_page() -> a fresh page (own cookies) on the review server."""
    contexts = []

    def _open():
        context = browser.new_context(
            base_url=review_server[0], locale="zh-CN", viewport={"width": 1280, "height": 900}
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15000)
        return page

    yield _open
    for context in contexts:
        context.close()


def open_application(page, org_name: str) -> None:
    page.goto("/review/")
    page.get_by_role("row", name=re.compile(org_name)).get_by_role("link").first.click()
    page.wait_for_url(re.compile(r"/review/applications/\d+"))
    expect(page.locator("h1", has_text=org_name)).to_be_visible()


def fire_action(page, label: str, reason: str) -> None:
    action = page.locator("details.action", has=page.locator("summary", has_text=label))
    action.locator("summary").click()
    action.locator("textarea").fill(reason)
    with page.expect_navigation():
        action.locator("button[type=submit]").click()
    expect(page.locator(".alert-success", has_text=label)).to_be_visible()


def test_reviewers_take_an_application_from_submission_to_decision(open_page, review_server):
    _, app = review_server

    # 1. The 绿园区 district officer: the queue shows only their district's application.
    page = open_page()
    login_as(page, LVYUAN_OFFICER)
    page.goto("/review/")
    assert page.get_by_role("row", name=re.compile(ORG)).is_visible()
    assert page.get_by_role("row", name=re.compile(OTHER_ORG)).count() == 0
    shot(page, "review-01-district-queue")
    open_application(page, ORG)
    assert page.locator("#form-title").is_visible() and page.locator("iframe").count() >= 1
    assert page.locator("#rules-title").is_visible() and page.locator("#award-amount").inner_text()
    shot(page, "review-02-district-application")
    fire_action(page, "初审通过", "材料齐全，同意上报市局。")
    assert page.locator("#state-badge").inner_text() == "市局资格审查"

    # 2. The city officer passes eligibility.
    page = open_page()
    login_as(page, "city@demo.cn")
    page.goto("/review/?stage=eligibility")
    shot(page, "review-03-city-queue")
    open_application(page, ORG)
    fire_action(page, "资格审查通过", "资格条件均符合。")
    assert page.locator("#state-badge").inner_text() == "待审定"
    shot(page, "review-04-city-passed")

    # 3. The approval meeting: budget, allocation preview, batch approval with a reference.
    page = open_page()
    login_as(page, "approver@demo.cn")
    page.goto("/review/calls")
    page.get_by_role("row", name=re.compile("贯标认证奖励")).get_by_role(
        "link", name="审定会议"
    ).click()
    page.wait_for_url(re.compile(r"/review/calls/\d+/meeting"))
    page.wait_for_load_state()
    assert page.locator("#budget-total").inner_text() == "¥3,000,000.00"
    assert page.locator("#budget-left").inner_text() == "¥3,000,000.00"
    rows = page.locator("table.allocation tbody tr")
    assert rows.count() == 2  # 光华 (seeded in approval) and 北方
    assert page.locator("table.allocation input[type=checkbox]:checked").count() == 2
    shot(page, "review-05-meeting")
    page.fill("input[name=meeting_ref]", "2026年第5次局长办公会议纪要")
    with page.expect_navigation():
        page.get_by_role("button", name="确认审定所选申报").click()
    expect(page.get_by_text("成功2件，未办理0件")).to_be_visible()
    shot(page, "review-06-meeting-results")
    with page.expect_navigation():
        page.get_by_role("link", name="返回", exact=True).click()
    expect(page.locator("#budget-committed")).to_have_text("¥43,000.00")
    with page.expect_navigation():
        page.get_by_role("button", name="发布（更新）公示").click()
    assert re.search(r"/notices/\d+$", page.url)
    notice_url = page.url

    # 4. The public notice, without a login.
    public = open_page()
    public.goto("/notices")
    with public.expect_navigation():
        public.locator(".notice-list a").first.click()
    assert public.url == notice_url
    table = public.locator("table.notice-table")
    expect(table.get_by_text(ORG)).to_be_visible()
    expect(table.get_by_text(OTHER_ORG)).to_be_visible()
    expect(table.get_by_text("¥18,000.00")).to_be_visible()
    expect(public.locator("form.objection-form")).to_be_visible()
    shot(public, "review-07-public-notice")
    # An anonymous objection is refused with a clear message, nothing is lodged.
    public.fill("textarea[name=reason]", "匿名提出的异议，理由是材料不实。")
    with public.expect_navigation():
        public.get_by_role("button", name="提交异议").click()
    expect(public.get_by_text("匿名异议不予受理").first).to_be_visible()
    shot(public, "review-08-objection-refused")

    # 5. The notice period ends: the sweep runs for the day after the deadline.
    from webapp.extensions import db
    from workflow import outbox
    from workflow.models import Application, Organization
    from workflow.operations.notice import close_notices
    from workflow.scheduler import sweep_deadlines

    with app.app_context():
        target = db.session.scalars(
            db.select(Application).join(Organization).where(Organization.name == ORG)
        ).one()
        assert target.state == "public_notice"
        day_after = target.deadline_on + timedelta(days=1)
        assert sweep_deadlines(db.session, day_after)["fired"] == 2
        close_notices(db.session, day_after)
        outbox.commit(db.session)
        db.session.refresh(target)
        assert target.state == "approved"
        app_id = target.id
        db.session.remove()

    # 6. The applicant sees the decision.
    page = open_page()
    login_as(page, APPLICANT)
    response = page.goto(f"/applications/{app_id}")
    if response is None or response.status == 404:
        pytest.skip("no applicant portal installed")
    expect(page.get_by_text("已批准，待拨付").first).to_be_visible()
    shot(page, "review-09-applicant-decision")


def test_experts_score_blind_and_the_call_is_ranked(open_page, review_server):
    _, app = review_server

    # The city officer puts a panel of three experts on the call's applications.
    officer = open_page()
    login_as(officer, "city@demo.cn")
    officer.goto("/review/calls")
    officer.get_by_role("row", name=re.compile("品牌服务机构")).get_by_role(
        "link", name="专家评审"
    ).click()
    officer.wait_for_url(re.compile(r"/review/calls/\d+/panel"))
    panel_url = officer.url
    officer.fill("input[name=size]", "3")
    with officer.expect_navigation():
        officer.get_by_role("button", name="分配专家").click()
    expect(officer.get_by_text("已为1件申报分配专家")).to_be_visible()
    expect(officer.locator("table").first).to_contain_text("评审专家三")
    shot(officer, "review-10-panel-assigned")

    # Each expert scores on their own sheet; nobody sees another's comment.
    for n, email in enumerate(EXPERTS, start=1):
        page = open_page()
        login_as(page, email)
        page.goto("/review/expert")
        page.get_by_role("row", name=re.compile(AGENCY_ORG)).get_by_role("link").click()
        page.wait_for_url(re.compile(r"/review/expert/reviews/\d+"))
        for earlier in range(1, n):
            expect(page.locator("main")).not_to_contain_text(f"第{earlier}位专家的意见")
        for key in CRITERIA:
            page.fill(f"input[name=score_{key}]", str(70 + 5 * n))
        page.fill("textarea[name=comment]", f"第{n}位专家的意见：服务能力较强。")
        page.check("input[name=no_conflict]")
        if n == 1:
            shot(page, "review-11-score-sheet")
        with page.expect_navigation():
            page.get_by_role("button", name="提交评分").click()
        expect(page.get_by_text("评分已提交")).to_be_visible()
        if n == 1:
            shot(page, "review-12-score-submitted")

    # The last sheet completed the scoring; the officer ranks the call.
    officer.goto(panel_url)
    expect(officer.get_by_role("button", name=re.compile("对本批次排名"))).to_be_enabled()
    with officer.expect_navigation():
        officer.get_by_role("button", name=re.compile("对本批次排名")).click()
    expect(officer.get_by_text("已完成排名")).to_be_visible()
    ranking = officer.locator("section", has=officer.locator("#rank-title"))
    expect(ranking.locator("tbody tr").first).to_contain_text(AGENCY_ORG)
    expect(ranking.locator("tbody tr").first).to_contain_text("80.000")
    shot(officer, "review-13-ranked")

    # The officer sees every sheet and the aggregate on the application page.
    ranking.get_by_role("link").first.click()
    officer.wait_for_url(re.compile(r"/review/applications/\d+"))
    experts = officer.locator("section", has=officer.locator("#experts-title"))
    for n in range(1, 4):
        expect(experts).to_contain_text(f"第{n}位专家的意见")
    expect(experts).to_contain_text("最终得分")
    expect(officer.locator("#state-badge")).to_have_text("待审定")
    shot(officer, "review-14-expert-aggregate")
