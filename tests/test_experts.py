"""Expert review in the workbench: panels per call, experts see only their own
assignments and never another expert's sheet, conflict declarations, recusal with an
automatic replacement, scoring that completes itself, the officer's aggregate view and
the ranking of a call."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
import yaml
from flask import g, request_started
from sqlalchemy import select

from tests.conftest import login
from workflow.audit import verify_chain
from workflow.engine import fire
from workflow.models import Review
from workflow.operations.applications import submit_application

TODAY = date.today()
SCENARIO = Path(__file__).parent / "scenarios" / "branded_agency" / "budget_exhausted.yaml"
SCORES = ("basic_conditions", "team", "operations", "service_quality", "integrity")


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


def sign_in(client, session, user):
    session.commit()  # a refused request rolls back to here, not further
    login(client, user)


@pytest.fixture
def branded_form():
    return yaml.safe_load(SCENARIO.read_text(encoding="utf-8"))["applications"][0]["form"]


@pytest.fixture
def panel_setup(session, make, branded_form):
    """A branded-agency call (3 experts needed, no dropping of extremes) with two
    applications in expert review, a lead city officer and four experts."""
    call = make.call("branded_agency", params={"min_experts": "3", "drop_extremes": False})
    officer = make.user("city_officer", lead=True)
    apps = []
    for n in range(2):
        applicant = make.applicant(org_type="patent_agency")
        app = make.application(call, applicant, {**branded_form, "licence_no": f"2220{n}"})
        submit_application(session, app, applicant, today=TODAY)
        fire(session, app, "pass_eligibility", officer, today=TODAY)
        assert app.state == "expert_review"
        apps.append(app)
    experts = [make.user("expert") for _ in range(4)]
    return {"call": call, "officer": officer, "apps": apps, "experts": experts}


def assign_panel(client, session, setup, size=3):
    sign_in(client, session, setup["officer"])
    response = client.post(f"/review/calls/{setup['call'].id}/panel/assign", data={"size": size})
    assert response.status_code == 302
    return {
        app.id: session.scalars(
            select(Review)
            .where(Review.application_id == app.id, Review.kind == "expert")
            .order_by(Review.id)
        ).all()
        for app in setup["apps"]
    }


def sheet(value, *, comment="", declare=True):
    data = {f"score_{k}": str(value) for k in SCORES}
    data["comment"] = comment
    if declare:
        data["no_conflict"] = "y"
    return data


def test_panel_assignment_and_experts_see_only_their_applications(session, client, panel_setup):
    reviews = assign_panel(client, session, panel_setup)
    assert all(len(r) == 3 for r in reviews.values())
    # Fewest open assignments first: the four experts share the six places.
    load = {}
    for rs in reviews.values():
        for r in rs:
            load[r.reviewer_id] = load.get(r.reviewer_id, 0) + 1
    assert sorted(load.values()) == [1, 1, 2, 2]
    app_a, app_b = panel_setup["apps"]
    only_a = next(
        e
        for e in panel_setup["experts"]
        if e.id in {r.reviewer_id for r in reviews[app_a.id]}
        and e.id not in {r.reviewer_id for r in reviews[app_b.id]}
    )
    sign_in(client, session, only_a)
    html = client.get("/review/").get_data(as_text=True)
    assert app_a.number in html and app_b.number not in html
    html = client.get("/review/expert").get_data(as_text=True)
    assert app_a.number in html and app_b.number not in html
    assert client.get(f"/review/applications/{app_b.id}").status_code == 403
    # Assigning again does not add experts beyond the panel size.
    again = assign_panel(client, session, panel_setup)
    assert all(len(r) == 3 for r in again.values())


def test_experts_are_blind_to_each_other(session, client, panel_setup):
    reviews = assign_panel(client, session, panel_setup)
    app = panel_setup["apps"][0]
    mine, theirs = reviews[app.id][0], reviews[app.id][1]
    me, other = mine.reviewer, theirs.reviewer
    sign_in(client, session, other)
    response = client.post(
        f"/review/expert/reviews/{theirs.id}", data=sheet("77.5", comment="另一位专家的秘密意见")
    )
    assert response.status_code == 302
    sign_in(client, session, me)
    assert client.get(f"/review/expert/reviews/{theirs.id}").status_code == 404
    assert client.post(f"/review/expert/reviews/{theirs.id}", data=sheet(10)).status_code == 404
    assert client.post(f"/review/expert/reviews/{theirs.id}/recuse").status_code == 404
    response = client.get(f"/review/applications/{app.id}")
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/review/expert/reviews/{mine.id}")
    for url in (f"/review/expert/reviews/{mine.id}", "/review/expert", "/review/"):
        html = client.get(url).get_data(as_text=True)
        assert "另一位专家的秘密意见" not in html and "77.5" not in html, url
    # Still blind after submitting their own sheet: experts see only their own scores.
    assert client.post(f"/review/expert/reviews/{mine.id}", data=sheet(60)).status_code == 302
    html = client.get(f"/review/expert/reviews/{mine.id}").get_data(as_text=True)
    assert "另一位专家的秘密意见" not in html and "77.5" not in html and "60" in html
    # The officer sees every sheet and the aggregate.
    sign_in(client, session, panel_setup["officer"])
    html = client.get(f"/review/applications/{app.id}").get_data(as_text=True)
    assert "另一位专家的秘密意见" in html and "77.500" in html and "60.000" in html
    assert "平均分" in html and "68.750" in html


def test_score_sheet_needs_a_declaration_and_valid_scores(session, client, panel_setup):
    reviews = assign_panel(client, session, panel_setup)
    review = reviews[panel_setup["apps"][0].id][0]
    sign_in(client, session, review.reviewer)
    html = client.get(f"/review/expert/reviews/{review.id}").get_data(as_text=True)
    assert "不存在利害关系" in html and 'max="100"' in html
    response = client.post(f"/review/expert/reviews/{review.id}", data=sheet(70, declare=False))
    assert response.status_code == 422 and "请声明无利害关系" in response.get_data(as_text=True)
    response = client.post(f"/review/expert/reviews/{review.id}", data=sheet(101))
    assert response.status_code == 422 and "分数应在0到100之间" in response.get_data(as_text=True)
    data = sheet(70)
    del data["score_team"]
    response = client.post(f"/review/expert/reviews/{review.id}", data=data)
    assert response.status_code == 422 and "请填写分数" in response.get_data(as_text=True)
    session.refresh(review)
    assert review.status == "assigned"


def test_recusal_assigns_a_replacement(session, client, panel_setup):
    reviews = assign_panel(client, session, panel_setup)
    app = panel_setup["apps"][0]
    review = reviews[app.id][0]
    expert = review.reviewer
    sign_in(client, session, expert)
    response = client.post(f"/review/expert/reviews/{review.id}/recuse", data={"reason": ""})
    assert response.status_code == 422 and "请说明回避理由" in response.get_data(as_text=True)
    response = client.post(
        f"/review/expert/reviews/{review.id}/recuse", data={"reason": "本人曾在该机构任职"}
    )
    assert response.status_code == 302
    session.refresh(review)
    assert review.status == "recused" and review.recusal_reason == "本人曾在该机构任职"
    live = session.scalars(
        select(Review).where(
            Review.application_id == app.id, Review.kind == "expert", Review.status != "recused"
        )
    ).all()
    assert len(live) == 3 and expert.id not in {r.reviewer_id for r in live}
    # The recused expert no longer sees the application.
    assert app.number not in client.get("/review/").get_data(as_text=True)
    assert client.get(f"/review/applications/{app.id}").status_code == 403
    html = client.get(f"/review/expert/reviews/{review.id}").get_data(as_text=True)
    assert "您已回避" in html
    # A recused expert cannot score any more.
    assert client.post(f"/review/expert/reviews/{review.id}", data=sheet(80)).status_code == 422


def test_scoring_completes_and_the_call_is_ranked(session, client, panel_setup):
    reviews = assign_panel(client, session, panel_setup)
    first, second = panel_setup["apps"]
    for app, value in ((first, 90), (second, 50)):  # 50 is below the pass mark of 60
        for review in reviews[app.id]:
            sign_in(client, session, review.reviewer)
            response = client.post(f"/review/expert/reviews/{review.id}", data=sheet(value))
            assert response.status_code == 302
    for app in (first, second):
        session.refresh(app)
        assert app.state == "ranking"  # the last sheet in completed the scoring
    officer = panel_setup["officer"]
    sign_in(client, session, officer)
    html = client.get(f"/review/calls/{panel_setup['call'].id}/panel").get_data(as_text=True)
    assert "2件待排名" in html
    response = client.post(f"/review/calls/{panel_setup['call'].id}/panel/rank")
    assert response.status_code == 302
    session.refresh(first)
    session.refresh(second)
    assert (first.rank, first.state) == (1, "approval")
    assert (second.rank, second.state) == (2, "rejected")
    html = client.get(f"/review/calls/{panel_setup['call'].id}/panel").get_data(as_text=True)
    assert re.search(r"<th scope=\"row\">1</th>.*?" + first.number, html, re.S)
    session.commit()
    assert verify_chain(session).ok


def test_ranking_when_the_first_fails_the_pass_mark_keeps_the_audit_chain(
    session, client, panel_setup
):
    """Every application below the pass mark: each 'select' attempt fails first."""
    reviews = assign_panel(client, session, panel_setup)
    for app in panel_setup["apps"]:
        for review in reviews[app.id]:
            sign_in(client, session, review.reviewer)
            client.post(f"/review/expert/reviews/{review.id}", data=sheet(40))
    sign_in(client, session, panel_setup["officer"])
    response = client.post(f"/review/calls/{panel_setup['call'].id}/panel/rank")
    assert response.status_code == 302
    for app in panel_setup["apps"]:
        session.refresh(app)
        assert app.state == "rejected" and app.rank is not None
    session.commit()
    assert verify_chain(session).ok


def test_officer_completes_scoring_by_hand(session, client, panel_setup):
    reviews = assign_panel(client, session, panel_setup)
    sign_in(client, session, panel_setup["officer"])
    response = client.post(f"/review/calls/{panel_setup['call'].id}/panel/complete")
    assert response.status_code == 200
    assert "成功0件，未办理2件" in response.get_data(as_text=True)
    assert reviews  # nobody has scored yet: the guard refuses, per application


def test_panel_pages_need_the_panel_role(session, client, make, panel_setup):
    call_id = panel_setup["call"].id
    for user in (
        make.user("district_officer", district="朝阳区"),
        make.user("approver"),
        panel_setup["experts"][0],
    ):
        sign_in(client, session, user)
        assert client.get(f"/review/calls/{call_id}/panel").status_code == 403
        assert (
            client.post(f"/review/calls/{call_id}/panel/assign", data={"size": 3}).status_code
            == 403
        )
        assert client.post(f"/review/calls/{call_id}/panel/rank").status_code == 403
    sign_in(client, session, panel_setup["officer"])
    response = client.post(f"/review/calls/{call_id}/panel/assign", data={"size": 99})
    assert response.status_code == 422 and "人数应在1到15之间" in response.get_data(as_text=True)
    cert = make.call("certification_reward")
    session.commit()
    assert client.get(f"/review/calls/{cert.id}/panel").status_code == 404
