"""The public notice (公示): public pages without a login, the PDF, objections (real
name, contact, reason, optional evidence checked by its bytes; anonymous or late ones
refused), and the automatic end of the notice period under a controllable clock."""

from __future__ import annotations

from datetime import date, timedelta
from io import BytesIO

import pytest
from flask import g, request_started
from sqlalchemy import select

from workflow.audit import verify_chain
from workflow.domain import add_working_days
from workflow.engine import fire
from workflow.models import Decision, Objection, PublicNotice
from workflow.operations.applications import submit_application
from workflow.operations.notice import close_notices, lodge_objection, publish_notice
from workflow.scheduler import sweep_deadlines

TODAY = date.today()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
GOOD_REASON = "该单位的认证证书已于本年度被认证机构暂停。"


@pytest.fixture(autouse=True)
def fresh_request_globals(app):
    """Requests of one test share the test's app context: start each without the user
    Flask-Login cached and without the previous request's rolled-back flag."""

    def reset(sender, **extra):
        g.pop("_login_user", None)
        g.pop("rolled_back", None)

    request_started.connect(reset, app)
    yield
    request_started.disconnect(reset, app)


@pytest.fixture
def noticed(session, make, cert_form):
    """Two certification-reward applications approved and under a published notice."""
    call = make.call("certification_reward", params={"district_prereview": True})
    district = make.user("district_officer", district="朝阳区")
    city = make.user("city_officer")
    approver = make.user("approver")
    apps = []
    for n in range(2):
        applicant = make.applicant(district="朝阳区")
        app = make.application(call, applicant, {**cert_form, "cert_number": f"N-{n}"})
        submit_application(session, app, applicant, today=TODAY)
        for trigger, actor in (
            ("district_pass", district),
            ("pass_eligibility", city),
            ("approve", approver),
        ):
            fire(session, app, trigger, actor, today=TODAY, reason="2026年第1次审定会")
        apps.append(app)
    notice = publish_notice(session, call, approver, today=TODAY)
    session.commit()  # a refused request rolls back to here
    return {"call": call, "apps": apps, "notice": notice, "city": city, "approver": approver}


def objection_data(app, **changes):
    data = {
        "application_id": str(app.id),
        "name": "张三",
        "contact": "13900000000",
        "reason": GOOD_REASON,
    }
    data.update(changes)
    return data


def test_notice_pages_need_no_login(client, noticed):
    notice = noticed["notice"]
    html = client.get("/notices").get_data(as_text=True)
    assert notice.title in html and "公示中" in html
    response = client.get(f"/notices/{notice.id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for app in noticed["apps"]:
        assert app.organization.name in html
    assert "¥25,000.00" in html and "¥50,000.00" in html  # each, and the total
    assert notice.starts_on.isoformat() in html and notice.ends_on.isoformat() in html
    assert 'name="name"' in html and 'enctype="multipart/form-data"' in html
    assert client.get("/notices/999999").status_code == 404


def test_notice_pdf(client, noticed):
    response = client.get(f"/notices/{noticed['notice'].id}.pdf")
    assert response.status_code == 200
    assert response.mimetype == "application/pdf" and response.data.startswith(b"%PDF")
    assert "inline" in response.headers["Content-Disposition"]
    assert client.get("/notices/999999.pdf").status_code == 404


def test_notice_document_data(app, noticed):
    from webapp.views.notices import _rows, notice_document

    with app.test_request_context():
        data = notice_document(
            noticed["notice"], _rows(noticed["notice"], TODAY), "http://verify.test"
        )
    assert [r["addressee"] for r in data["rows"]] == [a.organization.name for a in noticed["apps"]]
    assert data["total_figures"] == "¥50,000.00"
    assert data["verify_url"] == f"http://verify.test/notices/{noticed['notice'].id}"
    assert "匿名或逾期" in data["objection_text"]


def test_objection_is_lodged_and_goes_to_review(session, client, noticed):
    app = noticed["apps"][0]
    notice = noticed["notice"]
    response = client.post(
        f"/notices/{notice.id}/objections",
        data={**objection_data(app), "evidence": (BytesIO(PNG), "证据.png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 302
    objection = session.scalars(select(Objection).where(Objection.application_id == app.id)).one()
    assert objection.name == "张三" and objection.notice_id == notice.id
    assert objection.evidence_storage_key
    session.refresh(app)
    assert app.state == "objection_review"
    # It stays on the public list while under review, without the objector's details.
    html = client.get(f"/notices/{notice.id}").get_data(as_text=True)
    assert app.organization.name in html and "13900000000" not in html
    # The officer sees the evidence (by its real type) in the workbench.
    from tests.conftest import login

    login(client, noticed["city"])
    response = client.get(f"/review/objections/{objection.id}/evidence")
    assert response.status_code == 200 and response.mimetype == "image/png"


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"name": ""}, "匿名异议不予受理"),
        ({"contact": ""}, "请填写联系方式"),
        ({"reason": "不同意"}, "10至5000字"),
        ({"application_id": "999999"}, "不是有效的选择"),
    ],
)
def test_incomplete_objections_are_refused(session, client, noticed, changes, message):
    app = noticed["apps"][0]
    response = client.post(
        f"/notices/{noticed['notice'].id}/objections", data=objection_data(app, **changes)
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert message in html
    assert session.scalars(select(Objection)).all() == []
    session.refresh(app)
    assert app.state == "public_notice"


def test_evidence_must_be_a_pdf_or_image_by_its_bytes(session, client, noticed):
    app = noticed["apps"][0]
    url = f"/notices/{noticed['notice'].id}/objections"
    response = client.post(
        url,
        data={**objection_data(app), "evidence": (BytesIO(b"MZ\x90\x00 not a pdf"), "a.pdf")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422 and "PDF、PNG或JPEG" in response.get_data(as_text=True)
    big = b"%PDF-1.4\n" + b"0" * (10 * 1024 * 1024)
    response = client.post(
        url,
        data={**objection_data(app), "evidence": (BytesIO(big), "big.pdf")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422 and "不能超过10MB" in response.get_data(as_text=True)
    assert session.scalars(select(Objection)).all() == []


def test_late_objections_are_refused(session, client, noticed):
    app = noticed["apps"][0]
    notice = noticed["notice"]
    # The notice period ended yesterday (the sweep has not run yet).
    notice.ends_on = TODAY - timedelta(days=1)
    session.commit()
    response = client.post(f"/notices/{notice.id}/objections", data=objection_data(app))
    assert response.status_code == 409
    assert "公示期已结束，不再受理异议" in response.get_data(as_text=True)
    assert "公示期已结束" in client.get(f"/notices/{notice.id}").get_data(as_text=True)
    # The operation refuses it on its own too (the application's own deadline).
    app.deadline_on = TODAY - timedelta(days=1)
    with pytest.raises(Exception, match="not under public notice"):
        lodge_objection(
            session, app, name="李四", contact="x@y.cn", reason=GOOD_REASON, today=TODAY
        )


def test_upheld_objection_removes_the_application_from_the_list(session, client, noticed):
    from workflow.operations.notice import decide_objection

    app, other = noticed["apps"]
    objection = lodge_objection(
        session, app, name="张三", contact="13900000000", reason=GOOD_REASON, today=TODAY
    )
    decide_objection(session, objection, noticed["city"], upheld=True, reason="属实", today=TODAY)
    session.commit()
    assert app.state == "rejected"
    html = client.get(f"/notices/{noticed['notice'].id}").get_data(as_text=True)
    assert app.organization.name not in html and other.organization.name in html


def test_notice_ends_automatically_under_a_controllable_clock(session, noticed):
    """sweep_deadlines with an explicit ``today``: nothing happens on the last day of the
    notice; on the next day every application without an objection is approved (with
    its decision) and the notice closes; one under objection review waits."""
    first, second = noticed["apps"]
    notice = noticed["notice"]
    lodge_objection(session, second, name="张三", contact="1390", reason=GOOD_REASON, today=TODAY)
    session.commit()
    last_day = first.deadline_on
    assert last_day == add_working_days(TODAY, 5)
    assert sweep_deadlines(session, last_day)["fired"] == 0
    assert first.state == "public_notice"
    next_day = last_day + timedelta(days=1)
    counts = sweep_deadlines(session, next_day)
    assert counts["fired"] == 1
    session.refresh(first)
    session.refresh(second)
    assert first.state == "approved" and second.state == "objection_review"
    decision = session.scalars(select(Decision).where(Decision.application_id == first.id)).one()
    assert decision.kind == "approval" and decision.amount_fen == first.award_fen
    assert close_notices(session, next_day) == 1
    session.commit()
    assert session.get(PublicNotice, notice.id).status == "closed"
    assert verify_chain(session).ok


def test_notice_index_lists_open_and_recent(session, client, noticed):
    notice = noticed["notice"]
    old = PublicNotice(
        call_id=noticed["call"].id,
        title="很久以前的公示",
        starts_on=TODAY - timedelta(days=400),
        ends_on=TODAY - timedelta(days=390),
        application_ids=[],
        status="closed",
    )
    recent = PublicNotice(
        call_id=noticed["call"].id,
        title="上个月的公示",
        starts_on=TODAY - timedelta(days=40),
        ends_on=TODAY - timedelta(days=30),
        application_ids=[],
        status="closed",
    )
    session.add_all([old, recent])
    session.commit()
    html = client.get("/notices").get_data(as_text=True)
    assert notice.title in html and "上个月的公示" in html and "很久以前的公示" not in html
    assert "已结束" in html


def test_an_application_lists_the_notices_it_is_on(session, make, cert_form, noticed):
    from workflow.operations.notice import notices_listing

    listed = noticed["apps"][0]
    assert [n.id for n in notices_listing(session, listed)] == [noticed["notice"].id]
    # Another approved application of the same call, not on that notice: none.
    other = noticed["apps"][1]
    noticed["notice"].application_ids = [listed.id]
    session.flush()
    assert notices_listing(session, other) == []
    # Before approval an application cannot be on a notice: not even queried.
    applicant = make.applicant(district="朝阳区")
    draft = make.application(noticed["call"], applicant, cert_form)
    assert notices_listing(session, draft) == []
