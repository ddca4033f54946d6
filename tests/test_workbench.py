"""The reviewer workbench through its routes: queue, application view, actions from the
YAML, claim and assignment, award correction, batch actions with partial failures,
attachments, the approval meeting with its allocation preview, and who may do what."""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal

import pytest
from flask import g, request_started
from sqlalchemy import event, select

from tests.conftest import login
from workflow.engine import fire
from workflow.models import Application, AuditEvent, RoleGrant
from workflow.operations.applications import submit_application

TODAY = date.today()


@pytest.fixture
def cert_call(make):
    return make.call("certification_reward", params={"district_prereview": True})


@pytest.fixture
def staff(make):
    """One user per role, scoped like the demo: the district officer to 朝阳区."""
    return {
        "district": make.user("district_officer", district="朝阳区"),
        "other_district": make.user("district_officer", district="南关区"),
        "city": make.user("city_officer", lead=True),
        "city2": make.user("city_officer"),
        "approver": make.user("approver"),
        "finance": make.user("finance"),
        "expert": make.user("expert"),
    }


@pytest.fixture
def submit(session, make, cert_call, cert_form):
    """submit(district=..., **form changes) -> an application in district review."""
    counter = iter(range(1000))

    def _submit(district="朝阳区", call=None, **changes):
        applicant = make.applicant(district=district)
        form = {**cert_form, "cert_number": f"CERT-{next(counter):04d}", **changes}
        app = make.application(call or cert_call, applicant, form)
        submit_application(session, app, applicant, today=TODAY)
        return app

    return _submit


@pytest.fixture(autouse=True)
def fresh_request_globals(app):
    """The test's app context outlives each request, so ``g`` is shared by all requests
    of a test: Flask-Login's cached user and the hooks' rolled-back flag would leak from
    one request into the next. Start every request without them."""

    def reset(sender, **extra):
        g.pop("_login_user", None)
        g.pop("rolled_back", None)

    request_started.connect(reset, app)
    yield
    request_started.disconnect(reset, app)


def sign_in(client, session, user):
    """Log in after committing the test's data: a refused request rolls the session back
    to its last commit (a savepoint of the test's transaction), not further."""
    session.commit()
    login(client, user)


def walk(session, app, *steps):
    for trigger, actor in steps:
        fire(session, app, trigger, actor, today=TODAY, reason="测试")
    session.flush()
    return app


def page_text(response) -> str:
    return response.get_data(as_text=True)


# ---------------------------------------------------------------- the queue


def test_queue_needs_a_workbench_role(session, client, staff, make):
    response = client.get("/review/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    sign_in(client, session, make.applicant())
    assert client.get("/review/").status_code == 403
    sign_in(client, session, staff["finance"])
    assert client.get("/review/").status_code == 403


def test_district_officer_never_sees_other_districts(session, client, staff, submit):
    mine = submit("朝阳区")
    theirs = submit("南关区")
    sign_in(client, session, staff["district"])
    html = page_text(client.get("/review/"))
    assert mine.number in html and theirs.number not in html
    assert client.get(f"/review/applications/{theirs.id}").status_code == 403
    # Not even by filtering or searching for it.
    html = page_text(client.get(f"/review/?q={theirs.number}&district=南关区"))
    assert f">{theirs.number}</a>" not in html and "没有符合条件的申报" in html


def test_queue_filters_search_sort_and_bad_values(session, client, staff, submit):
    a = submit("朝阳区")
    b = submit("南关区")
    sign_in(client, session, staff["city"])
    html = page_text(client.get(f"/review/?q={b.number}"))
    assert b.number in html and a.number not in html
    response = client.get("/review/?program=nope&sort=evil&per_page=7&dir=up&call_id=x")
    assert response.status_code == 200
    html = page_text(response)
    assert html.count("已忽略无效的筛选条件") == 5
    assert a.number in html and b.number in html
    response = client.get("/review/?cursor=not-a-cursor")
    assert response.status_code == 200 and "翻页参数无效" in page_text(response)
    html = page_text(client.get("/review/?stage=district&sort=number&dir=desc"))
    assert html.index(b.number) < html.index(a.number)


def test_overdue_rows_are_highlighted_with_working_days(session, client, staff, submit):
    app = submit()
    app.deadline_on = TODAY - timedelta(days=10)
    session.flush()
    sign_in(client, session, staff["district"])
    html = page_text(client.get("/review/?overdue=1"))
    assert 'class="overdue"' in html and "已逾期" in html and app.number in html
    html = page_text(client.get("/review/?lang=en"))
    assert "working days overdue" in html


def test_queue_pages_are_navigable(session, client, staff, make, cert_call):
    """Next and previous links carry the cursor and the filters; together the pages
    list every application once."""
    from html import unescape

    from tests.test_queues import add_app

    numbers = {add_app(session, make, cert_call, n=n).number for n in range(23)}
    sign_in(client, session, staff["city"])
    url, seen, pages = "/review/?per_page=10&sort=number&dir=desc", [], 0
    while url:
        html = page_text(client.get(url))
        pages += 1
        seen += re.findall(r'<a href="/review/applications/\d+">([^<]+)</a>', html)
        link = re.search(r'rel="next" href="([^"]+)"', html)
        url = unescape(link.group(1)) if link else None
        if link:
            assert "sort=number" in url and "dir=desc" in url and "per_page=10" in url
    assert pages == 3 and len(seen) == 23 and set(seen) == numbers
    assert seen == sorted(seen, reverse=True)
    back = re.search(r'rel="prev" href="([^"]+)"', html).group(1)
    html = page_text(client.get(unescape(back)))
    assert re.findall(r'<a href="/review/applications/\d+">([^<]+)</a>', html) == seen[10:20]


@contextmanager
def count_queries(session):
    statements: list[str] = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    conn = session.connection()
    event.listen(conn, "before_cursor_execute", listener)
    try:
        yield statements
    finally:
        event.remove(conn, "before_cursor_execute", listener)


def test_queue_page_query_count_is_constant(session, client, make, staff, cert_call):
    from tests.test_queues import add_app

    holder = staff["city2"]
    for n in range(130):
        add_app(session, make, cert_call, n=n, assigned_to_id=holder.id if n % 3 else None)
    sign_in(client, session, staff["city"])
    client.get("/review/")  # warm caches (definitions, templates)

    def queries(url):
        with count_queries(session) as statements:
            response = client.get(url)
        assert response.status_code == 200
        return len(statements)

    first_small = queries("/review/?per_page=10")
    first_large = queries("/review/?per_page=100")
    html = page_text(client.get("/review/?per_page=10"))
    cursor = re.search(r'rel="next" href="[^"]*cursor=([^"&]+)', html).group(1)
    html = page_text(client.get(f"/review/?per_page=10&cursor={cursor}"))
    cursor = re.search(r'rel="next" href="[^"]*cursor=([^"&]+)', html).group(1)
    third = queries(f"/review/?per_page=10&cursor={cursor}")
    assert first_small == first_large == third, (first_small, first_large, third)


# ---------------------------------------------------------------- application view


def test_application_view_shows_everything_a_reviewer_needs(session, client, staff, submit):
    earlier = submit()
    app = submit(cert_number=earlier.form_data["cert_number"])  # same certificate: duplicate
    # Same organization's earlier application: a second call of the program.
    sign_in(client, session, staff["district"])
    response = client.get(f"/review/applications/{app.id}")
    assert response.status_code == 200
    html = page_text(response)
    assert "证书编号" in html and app.form_data["cert_number"] in html  # labels + values
    assert "中知（北京）认证有限公司" in html
    assert f"/review/attachments/{app.attachments[0].id}" in html and "<iframe" in html
    assert "单位类型不在本批次受理范围内" in html  # each rule with its reviewer message
    assert "A1" in html and "符合" in html
    assert "¥25,000.00" in html and "min(base, cost, params.per_applicant_cap)" in html
    assert "重复资助提示" in html and earlier.number in html
    assert "提交" in html  # history
    assert "初审通过" in html and "退回补正" in html  # only what this user may fire
    assert "资格审查通过" not in html


def test_view_refusals(client, session, staff, submit, make, cert_call, cert_form):
    sign_in(client, session, staff["district"])
    assert client.get("/review/applications/999999").status_code == 404
    applicant = make.applicant()
    draft = make.application(cert_call, applicant, cert_form)
    assert client.get(f"/review/applications/{draft.id}").status_code == 403
    app = submit()
    sign_in(client, session, staff["expert"])  # an expert not assigned to it
    assert client.get(f"/review/applications/{app.id}").status_code == 403


def test_earlier_applications_of_the_organization(session, client, staff, make, cert_form):
    old_call = make.call("certification_reward", params={"district_prereview": True})
    new_call = make.call("certification_reward", params={"district_prereview": True})
    applicant = make.applicant()
    old = make.application(old_call, applicant, cert_form)
    submit_application(session, old, applicant, today=TODAY)
    other = make.application(new_call, applicant, {}, materials=False)
    other.state, other.number = "city_review", "ZY-OTHER-1"
    session.flush()
    sign_in(client, session, staff["city"])
    html = page_text(client.get(f"/review/applications/{old.id}"))
    assert "该单位的其他申报" in html and "ZY-OTHER-1" in html


# ---------------------------------------------------------------- actions


def test_district_pass_through_the_form(session, client, staff, submit):
    app = submit()
    sign_in(client, session, staff["district"])
    response = client.post(
        f"/review/applications/{app.id}/fire/district_pass",
        data={"district_pass-reason": "材料齐全", "district_pass-version": app.version},
    )
    assert response.status_code == 302
    session.refresh(app)
    assert app.state == "city_review"
    event_ = session.scalars(
        select(AuditEvent).where(
            AuditEvent.application_id == app.id, AuditEvent.action == "transition.district_pass"
        )
    ).one()
    assert event_.reason == "材料齐全" and event_.actor_id == staff["district"].id


def test_action_refusals(session, client, staff, submit):
    app = submit()
    sign_in(client, session, staff["city"])  # right scope, wrong role
    assert client.post(f"/review/applications/{app.id}/fire/district_pass").status_code == 403
    sign_in(client, session, staff["other_district"])  # right role, wrong district
    assert client.post(f"/review/applications/{app.id}/fire/district_pass").status_code == 403
    sign_in(client, session, staff["district"])
    assert client.post(f"/review/applications/{app.id}/fire/no_such_trigger").status_code == 404
    # A trigger of the program that is not possible in this state.
    assert client.post(f"/review/applications/{app.id}/fire/approve").status_code == 403
    # Reason required: the form comes back with the message, nothing typed lost.
    response = client.post(
        f"/review/applications/{app.id}/fire/district_reject", data={"district_reject-reason": ""}
    )
    assert response.status_code == 422 and "请填写理由" in page_text(response)
    session.refresh(app)
    assert app.state == "district_review"
    # Stale form: someone else acted since the page was loaded.
    response = client.post(
        f"/review/applications/{app.id}/fire/district_pass",
        data={"district_pass-version": app.version - 1},
    )
    assert response.status_code == 409


def test_supplement_request_lists_items_and_sets_deadline(session, client, staff, submit):
    app = submit()
    sign_in(client, session, staff["district"])
    html = page_text(client.get(f"/review/applications/{app.id}"))
    assert 'name="district_return-materials" value="certificate"' in html
    assert 'name="district_return-fields" value="invoices"' in html
    assert "期限至" in html
    response = client.post(
        f"/review/applications/{app.id}/fire/district_return",
        data={"district_return-reason": "请补充证书扫描件"},
    )
    assert response.status_code == 422 and "请至少选择一项" in page_text(response)
    assert "请补充证书扫描件" in page_text(response)  # what was typed is kept
    response = client.post(
        f"/review/applications/{app.id}/fire/district_return",
        data={
            "district_return-reason": "请补充证书扫描件",
            "district_return-fields": ["cert_number"],
            "district_return-materials": ["certificate"],
        },
    )
    assert response.status_code == 302
    session.refresh(app)
    assert app.state == "district_supplement"
    assert app.supplement_request["fields"] == ["cert_number"]
    assert app.supplement_request["materials"] == ["certificate"]
    assert app.deadline_on is not None and app.deadline_on > TODAY


def test_guard_failure_explains_the_rule(session, client, staff, submit):
    app = submit(first_issue_date="2023-05-01")  # outside the window (A6)
    walk(session, app, ("district_pass", staff["district"]))
    sign_in(client, session, staff["city"])
    html = page_text(client.get(f"/review/applications/{app.id}"))
    assert "初次发证日期不在奖励窗口内" in html
    assert "资格审查通过" not in html  # the guard fails: not offered
    response = client.post(f"/review/applications/{app.id}/fire/pass_eligibility")
    assert response.status_code == 422 and "A6" in page_text(response)


# ---------------------------------------------------------------- claim, assign


def test_claim_release_and_assign(session, client, staff, submit, make):
    app = submit()
    walk(session, app, ("district_pass", staff["district"]))
    sign_in(client, session, staff["city2"])
    assert client.post(f"/review/applications/{app.id}/claim").status_code == 302
    session.refresh(app)
    assert app.assigned_to_id == staff["city2"].id
    html = page_text(client.get("/review/?mine=1"))
    assert app.number in html and staff["city2"].name in html
    other = make.user("city_officer")
    sign_in(client, session, other)
    assert client.post(f"/review/applications/{app.id}/claim").status_code == 409
    assert client.post(f"/review/applications/{app.id}/release").status_code == 403
    assert (
        client.post(
            f"/review/applications/{app.id}/assign", data={"assignee": other.id}
        ).status_code
        == 403
    )
    sign_in(client, session, staff["city"])  # the lead
    html = page_text(client.get(f"/review/applications/{app.id}"))
    assert f'<option value="{other.id}"' in html
    assert f'<option value="{staff["district"].id}"' not in html  # not their stage's role
    assert (
        client.post(
            f"/review/applications/{app.id}/assign", data={"assignee": other.id}
        ).status_code
        == 302
    )
    session.refresh(app)
    assert app.assigned_to_id == other.id
    outsider = make.user("district_officer", district="南关区")
    response = client.post(f"/review/applications/{app.id}/assign", data={"assignee": outsider.id})
    assert response.status_code == 422
    assert client.post(f"/review/applications/{app.id}/release").status_code == 302
    session.refresh(app)
    assert app.assigned_to_id is None
    actions = session.scalars(
        select(AuditEvent.action).where(AuditEvent.application_id == app.id)
    ).all()
    assert {"application.claim", "application.assign", "application.release"} <= set(actions)


# ---------------------------------------------------------------- award correction


def test_award_correction_needs_a_reason_and_survives_recomputation(session, client, staff, submit):
    app = submit()
    walk(session, app, ("district_pass", staff["district"]))
    sign_in(client, session, staff["district"])
    assert (
        client.post(f"/review/applications/{app.id}/award", data={"amount": "1"}).status_code == 403
    )
    sign_in(client, session, staff["city"])
    response = client.post(f"/review/applications/{app.id}/award", data={"amount": "20000"})
    assert response.status_code == 422 and "请填写更正理由" in page_text(response)
    response = client.post(
        f"/review/applications/{app.id}/award", data={"amount": "12.345", "reason": "x"}
    )
    assert response.status_code == 422 and "两位小数" in page_text(response)
    response = client.post(
        f"/review/applications/{app.id}/award",
        data={"amount": "20,000.50", "reason": "发票金额核减"},
    )
    assert response.status_code == 302
    session.refresh(app)
    assert app.award_fen == 2_000_050
    event_ = session.scalars(
        select(AuditEvent).where(
            AuditEvent.application_id == app.id, AuditEvent.action == "award.correct"
        )
    ).one()
    assert event_.data["old_fen"] == 2_500_000 and event_.data["new_fen"] == 2_000_050
    assert event_.reason == "发票金额核减"
    # pass_eligibility runs compute_award again: the correction stays.
    walk(session, app, ("pass_eligibility", staff["city2"]))
    assert app.award_fen == 2_000_050
    assert app.award_trace["correction"]["reason"] == "发票金额核减"
    html = page_text(client.get(f"/review/applications/{app.id}"))
    assert "经办人员已更正金额" in html and "¥20,000.50" in html


# ---------------------------------------------------------------- batches


def test_batch_with_partial_failure_reports_each_item(session, client, staff, submit):
    good = [submit(), submit()]
    bad = submit(first_issue_date="2023-05-01")  # fails app.eligible (A6)
    for app in [*good, bad]:
        walk(session, app, ("district_pass", staff["district"]))
    sign_in(client, session, staff["city"])
    ids = [good[0].id, bad.id, good[1].id]
    response = client.post("/review/batch", data={"action": "pass_eligibility", "ids": ids})
    assert response.status_code == 200
    html = page_text(response)
    assert all(a.number in html for a in [*good, bad])
    response = client.post("/review/batch/confirm", data={"action": "pass_eligibility", "ids": ids})
    assert response.status_code == 200
    html = page_text(response)
    assert "成功2件，未办理1件" in html and "A6" in html
    for app in good:
        session.refresh(app)
        assert app.state == "approval"
    session.refresh(bad)
    assert bad.state == "city_review"
    session.commit()
    from workflow.audit import verify_chain

    assert verify_chain(session).ok


def test_batch_item_failing_late_leaves_no_trace(session, staff, submit, monkeypatch):
    """An item that fails after its audit event was recorded (here: the notification
    step) is rolled back entirely, and the audit chain stays gapless."""
    from workflow import effects
    from workflow.audit import verify_chain
    from workflow.errors import ConflictError
    from workflow.operations.review import batch_fire

    apps = [submit(), submit(), submit()]
    doomed = apps[1]
    real = effects.notify_applicant

    def flaky(ctx, from_state):
        if ctx.application.id == doomed.id:
            raise ConflictError()
        return real(ctx, from_state)

    monkeypatch.setattr(effects, "notify_applicant", flaky)
    results = batch_fire(session, apps, "district_pass", staff["district"], today=TODAY)
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].status == 409 and "他人" in results[1].zh
    assert doomed.state == "district_review"
    session.commit()
    passes = session.scalars(
        select(AuditEvent.application_id).where(AuditEvent.action == "transition.district_pass")
    ).all()
    assert sorted(passes) == sorted([apps[0].id, apps[2].id])
    assert verify_chain(session).ok


def test_batch_return_asks_for_the_supplement_items(session, client, staff, submit):
    apps = [submit(), submit()]
    sign_in(client, session, staff["district"])
    ids = [a.id for a in apps]
    html = page_text(client.post("/review/batch", data={"action": "district_return", "ids": ids}))
    assert 'name="fields" value="cert_number"' in html
    response = client.post("/review/batch/confirm", data={"action": "district_return", "ids": ids})
    assert response.status_code == 422 and "请填写理由" in page_text(response)
    response = client.post(
        "/review/batch/confirm",
        data={
            "action": "district_return",
            "ids": ids,
            "reason": "证书扫描件不清晰",
            "materials": ["certificate"],
        },
    )
    assert response.status_code == 200 and "成功2件" in page_text(response)
    for app in apps:
        session.refresh(app)
        assert app.state == "district_supplement"


def test_batch_assign_by_lead_only(session, client, staff, submit, make):
    apps = [submit(), submit()]
    for app in apps:
        walk(session, app, ("district_pass", staff["district"]))
    sign_in(client, session, staff["city2"])  # not a lead: no assign action offered
    response = client.post("/review/batch", data={"action": "assign", "ids": [apps[0].id]})
    assert response.status_code == 403
    response = client.post("/review/batch", data={"action": "no_such", "ids": [apps[0].id]})
    assert response.status_code == 400
    sign_in(client, session, staff["city"])
    response = client.post(
        "/review/batch/confirm",
        data={"action": "assign", "ids": [a.id for a in apps], "assignee": staff["city2"].id},
    )
    assert response.status_code == 200 and "成功2件" in page_text(response)
    for app in apps:
        session.refresh(app)
        assert app.assigned_to_id == staff["city2"].id


def test_batch_ignores_applications_out_of_scope(session, client, staff, submit):
    mine, theirs = submit("朝阳区"), submit("南关区")
    sign_in(client, session, staff["district"])
    response = client.post(
        "/review/batch/confirm", data={"action": "district_pass", "ids": [mine.id, theirs.id]}
    )
    assert response.status_code == 200
    session.refresh(theirs)
    assert theirs.state == "district_review" and theirs.number not in page_text(response)


# ---------------------------------------------------------------- attachments


def test_attachment_preview(session, client, app, staff, submit):
    from workflow.storage import LocalStorage

    application = submit()
    att = application.attachments[0]
    key, _ = LocalStorage(app.config["STORAGE_DIR"]).put(b"%PDF-1.4 test", prefix="att")
    att.storage_key = key
    session.flush()
    sign_in(client, session, staff["district"])
    response = client.get(f"/review/attachments/{att.id}")
    assert response.status_code == 200 and response.data.startswith(b"%PDF")
    assert response.mimetype == "application/pdf"
    assert "attachment" not in response.headers.get("Content-Disposition", "")
    missing = application.attachments[1]
    assert client.get(f"/review/attachments/{missing.id}").status_code == 404
    assert client.get("/review/attachments/999999").status_code == 404
    sign_in(client, session, staff["other_district"])
    assert client.get(f"/review/attachments/{att.id}").status_code == 403


# ---------------------------------------------------------------- approval meeting


@pytest.fixture
def in_approval(session, staff, submit):
    def _make(n=2, call=None, **changes):
        apps = []
        for _ in range(n):
            app = submit(call=call, **changes)
            walk(
                session,
                app,
                ("district_pass", staff["district"]),
                ("pass_eligibility", staff["city"]),
            )
            apps.append(app)
        return apps

    return _make


def test_meeting_approves_in_batch_with_a_meeting_reference(session, client, staff, in_approval):
    apps = in_approval(2)
    call_id = apps[0].call_id
    sign_in(client, session, staff["city"])
    assert client.get(f"/review/calls/{call_id}/meeting").status_code == 403
    sign_in(client, session, staff["approver"])
    html = page_text(client.get(f"/review/calls/{call_id}/meeting"))
    assert "批次预算" in html and "¥1,000,000.00" in html and apps[0].number in html
    response = client.post(
        f"/review/calls/{call_id}/meeting/decide",
        data={"ids": [a.id for a in apps], "decision": "approve"},
    )
    assert response.status_code == 422 and "请填写会议纪要文号" in page_text(response)
    response = client.post(
        f"/review/calls/{call_id}/meeting/decide",
        data={"ids": [a.id for a in apps], "decision": "reject", "meeting_ref": "2026-3"},
    )
    assert response.status_code == 422 and "审定不通过须填写理由" in page_text(response)
    response = client.post(
        f"/review/calls/{call_id}/meeting/decide",
        data={"ids": [a.id for a in apps], "decision": "approve", "meeting_ref": "会议纪要2026-3"},
    )
    assert response.status_code == 200 and "成功2件" in page_text(response)
    for app in apps:
        session.refresh(app)
        assert app.state == "public_notice" and app.deadline_on is not None
    call = apps[0].call
    session.refresh(call)
    assert call.committed_fen == 2 * 2_500_000
    meeting = session.scalars(select(AuditEvent).where(AuditEvent.action == "meeting.decide")).one()
    assert meeting.reason == "会议纪要2026-3" and sorted(meeting.data["succeeded"]) == sorted(
        a.id for a in apps
    )
    approve = session.scalars(
        select(AuditEvent).where(
            AuditEvent.application_id == apps[0].id, AuditEvent.action == "transition.approve"
        )
    ).one()
    assert approve.reason == "会议纪要2026-3"
    # Publish the notice: the public page lists both.
    response = client.post(f"/review/calls/{call_id}/notice")
    assert response.status_code == 302 and "/notices/" in response.headers["Location"]
    html = page_text(client.get(response.headers["Location"]))
    assert all(a.organization.name in html for a in apps)


def test_four_eyes_in_the_meeting(session, client, make, staff, in_approval):
    apps = in_approval(1)
    # The city officer who passed eligibility is made an approver too.
    staff["city"].grants.append(RoleGrant(role="approver"))
    session.flush()
    sign_in(client, session, staff["city"])
    response = client.post(
        f"/review/calls/{apps[0].call_id}/meeting/decide",
        data={"ids": [apps[0].id], "decision": "approve", "meeting_ref": "R1"},
    )
    assert response.status_code == 200
    assert "四眼原则" in page_text(response) and "成功0件" in page_text(response)
    session.refresh(apps[0])
    assert apps[0].state == "approval"


def test_rank_order_preview_stops_at_the_budget(session, client, make, staff, in_approval):
    call = make.call("certification_reward", budget="60000", params={"district_prereview": True})
    late = in_approval(1, call=call, first_issue_date="2025-09-01")[0]
    early = in_approval(1, call=call, first_issue_date="2025-02-01")[0]
    middle = in_approval(1, call=call, first_issue_date="2025-05-01")[0]
    from workflow.allocation import preview_allocation

    preview = preview_allocation(session, call, TODAY)
    assert [r.application.id for r in preview.rows] == [early.id, middle.id, late.id]
    assert [r.fits for r in preview.rows] == [True, True, False]
    assert preview.allocated_fen == 5_000_000 and preview.left_after_fen == 1_000_000
    sign_in(client, session, staff["approver"])
    html = page_text(client.get(f"/review/calls/{call.id}/meeting"))
    assert "预算不足" in html and "超出预算" in html
    # The funded ones are pre-ticked, the one over budget is not.
    assert re.search(rf'value="{early.id}"[^>]*checked', html)
    assert not re.search(rf'value="{late.id}"[^>]*checked', html)


def test_pro_rata_preview_scales_and_applies(session, client, make, staff):
    from workflow.allocation import apply_allocation, preview_allocation

    call = make.call("pledge_loan_subsidy", budget="1000")
    apps = []
    for award in (60000, 30000, 10001):  # fen: 600.00 + 300.00 + 100.01 = 1000.01
        org = make.org()
        app = Application(
            organization_id=org.id,
            call_id=call.id,
            definition_id=call.definition_id,
            program_code=call.program_code,
            district=org.district,
            state="approval",
            number=f"ZY-T{award}",
            award_fen=award,
            award_trace={"amount": str(Decimal(award) / 100), "trace": []},
            snapshot={"form": {}},
            form_data={},
            submitted_at=None,
        )
        session.add(app)
        apps.append(app)
    session.flush()
    preview = preview_allocation(session, call, TODAY)
    assert preview.oversubscribed and preview.method == "pro_rata"
    scaled = {r.application.id: r.allocated_fen for r in preview.rows}
    # 100000 / 100001 of each, rounded down to the fen.
    assert scaled == {apps[0].id: 59999, apps[1].id: 29999, apps[2].id: 10000}
    assert preview.allocated_fen <= 100000
    sign_in(client, session, staff["approver"])
    html = page_text(client.get(f"/review/calls/{call.id}/meeting"))
    assert "按比例调整金额" in html and "¥599.99" in html
    response = client.post(f"/review/calls/{call.id}/meeting/allocate", data={"meeting_ref": ""})
    assert response.status_code == 422
    response = client.post(
        f"/review/calls/{call.id}/meeting/allocate", data={"meeting_ref": "纪要5号"}
    )
    assert response.status_code == 302
    for app in apps:
        session.refresh(app)
    assert [a.award_fen for a in apps] == [59999, 29999, 10000]
    assert apps[0].award_trace["correction"]["previous_fen"] == 60000
    assert not preview_allocation(session, call, TODAY).oversubscribed
    with pytest.raises(Exception, match="pro rata"):
        apply_allocation(
            session, make.call("certification_reward"), staff["approver"], today=TODAY, reason="x"
        )


# ---------------------------------------------------------------- objections


def test_objection_review(session, client, staff, in_approval):
    from workflow.operations.notice import lodge_objection, publish_notice

    app = in_approval(1)[0]
    walk(session, app, ("approve", staff["approver"]))
    publish_notice(session, app.call, staff["approver"], today=TODAY)
    objection = lodge_objection(
        session,
        app,
        name="张三",
        contact="13900000000",
        reason="该单位证书已被暂停使用。",
        today=TODAY,
    )
    assert app.state == "objection_review"
    sign_in(client, session, staff["district"])
    assert client.get(f"/review/objections/{objection.id}").status_code == 403
    sign_in(client, session, staff["city"])
    html = page_text(client.get("/review/objections"))
    assert "张三" in html and app.number in html
    # On the application page the objection is decided on its own page, not by the
    # bare transition (which would leave the objection pending).
    html = page_text(client.get(f"/review/applications/{app.id}"))
    assert f"/review/objections/{objection.id}" in html and "dismiss_objection-reason" not in html
    response = client.post(
        f"/review/applications/{app.id}/fire/dismiss_objection",
        data={"dismiss_objection-reason": "不成立"},
    )
    assert response.status_code == 409
    response = client.post(f"/review/objections/{objection.id}", data={"decision": "dismiss"})
    assert response.status_code == 422 and "请填写核查意见" in page_text(response)
    response = client.post(
        f"/review/objections/{objection.id}",
        data={"decision": "dismiss", "reason": "经核实证书有效"},
    )
    assert response.status_code == 302
    session.refresh(app)
    assert app.state == "public_notice"


# ---------------------------------------------------------------- access matrix


def test_every_action_refuses_users_without_the_role(session, client, make, staff, in_approval):
    """Each route against a workbench user who lacks the role for it: 403."""
    app = in_approval(1)[0]
    call_id = app.call_id
    branded = make.call("branded_agency")
    posts = {
        f"/review/applications/{app.id}/fire/approve": staff["city2"],
        f"/review/applications/{app.id}/fire/reject_at_approval": staff["district"],
        f"/review/applications/{app.id}/claim": staff["expert"],
        f"/review/applications/{app.id}/assign": staff["city2"],
        f"/review/applications/{app.id}/award": staff["district"],
        f"/review/calls/{call_id}/meeting/decide": staff["city"],
        f"/review/calls/{call_id}/meeting/allocate": staff["city"],
        f"/review/calls/{call_id}/notice": staff["district"],
        f"/review/calls/{branded.id}/panel/assign": staff["approver"],
        f"/review/calls/{branded.id}/panel/complete": staff["district"],
        f"/review/calls/{branded.id}/panel/rank": staff["approver"],
    }
    gets = {
        f"/review/applications/{app.id}": staff["other_district"],
        f"/review/calls/{call_id}/meeting": staff["city2"],
        f"/review/calls/{branded.id}/panel": staff["district"],
    }
    posts["/review/batch"] = staff["district"]  # with action=approve, below
    posts["/review/batch/confirm"] = staff["city"]
    for url, user in posts.items():
        sign_in(client, session, user)
        if url.startswith("/review/batch"):
            data = {"action": "approve", "ids": [app.id]}
            assert client.post(url, data=data).status_code == 403, url
            continue
        assert client.post(url, data={"assignee": user.id}).status_code == 403, url
    for url, user in gets.items():
        sign_in(client, session, user)
        assert client.get(url).status_code == 403, url
    # Programs without expert review have no panel page.
    sign_in(client, session, staff["city"])
    assert client.get(f"/review/calls/{call_id}/panel").status_code == 404
    assert client.get("/review/calls/999999/meeting").status_code == 404
    # Applicants and finance have no workbench at all.
    for user in (make.applicant(), staff["finance"]):
        sign_in(client, session, user)
        for url in list(posts)[:3]:
            assert client.post(url).status_code == 403, url


def test_english_pages(session, client, staff, submit):
    app = submit()
    sign_in(client, session, staff["district"])
    html = page_text(client.get(f"/review/applications/{app.id}?lang=en"))
    assert "Application as submitted (frozen)" in html and "Pass district review" in html


def test_failed_batch_item_keeps_earlier_pending_audit_events(session, staff, submit):
    """An event recorded before the batch (not yet chained) survives a failing item."""
    from workflow.audit import record_event, verify_chain
    from workflow.operations.review import batch_fire

    app = submit()
    session.commit()
    record_event(session, action="test.before_batch", entity_type="test")
    results = batch_fire(session, [app], "pass_eligibility", staff["city"], today=TODAY)
    assert not results[0].ok
    session.commit()
    assert (
        session.scalars(
            select(AuditEvent.seq).where(AuditEvent.action == "test.before_batch")
        ).one()
        is not None
    )
    assert verify_chain(session).ok
