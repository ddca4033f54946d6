"""The applicant portal: program pages, my applications, the generated form (every field
type and every repeatable group of the four programs), pre-check, submit, status,
supplement, withdraw, decisions, and every refusal (another organization, staff, stale
forms, closed calls)."""

from __future__ import annotations

import copy
import re
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from flask import g, render_template_string
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import object_session

from forms.builder import build_form_class, formdata_for, initial_data
from forms.layout import layout
from tests.conftest import login as _login
from workflow.definitions.loader import definition_files
from workflow.definitions.schema import Program
from workflow.engine import compiled, fire
from workflow.models import Application, AuditEvent, Decision
from workflow.storage import LocalStorage
from workflow.validation import clean_form

SCENARIOS = Path(__file__).parent / "scenarios"
ROUND_TRIP = {
    "certification_reward": "approved.yaml",
    "pledge_loan_subsidy": "combined_with_fees.yaml",
    "branded_agency": "seven_apps_top_five.yaml",
    "patent_dense_product": "l_approved_partial.yaml",
}
APPLICANT_TYPE = {"branded_agency": "patent_agency"}


class FreshClient(FlaskClient):
    """The ``session`` fixture keeps an app context open for the whole test, and Flask
    reuses it for every request, so ``g`` (the logged-in user, ``g.rolled_back``) would
    leak from one request into the next. Start each request with a clean ``g``."""

    def open(self, *args, **kwargs):
        for key in ("_login_user", "rolled_back"):
            g.pop(key, None)
        return super().open(*args, **kwargs)


@pytest.fixture
def client(app, session):
    return FreshClient(app, app.response_class, use_cookies=True)


def login(client, user) -> None:
    """Commit the test data first (to the test's savepoint): a request that fails rolls
    its session back, which must not take the data set up before it along."""
    object_session(user).commit()
    _login(client, user)


def _page(response) -> str:
    return response.get_data(as_text=True)


def _program(session, app) -> Program:
    return compiled(session, app.definition_id).program


def _post_form(client, app, program, data, action="save", version=None):
    body = formdata_for(program, data)
    body.add("version", str(app.version if version is None else version))
    body.add("action", action)
    return client.post(f"/applications/{app.id}/edit", data=body)


def _with_unticked_booleans(program: Program, data: dict) -> dict:
    """A checkbox left unticked is ``False`` (a scenario may leave it out: ``None``)."""
    out = copy.deepcopy(data)
    for section in program.form.sections:
        targets = out.get(section.key) or [] if section.repeatable else [out]
        for target in targets:
            for f in section.fields:
                if f.type == "boolean" and target.get(f.key) is None:
                    target[f.key] = False
    return out


@pytest.fixture
def applicant(make):
    return make.applicant()


@pytest.fixture
def cert_call(make):
    return make.call("certification_reward")


@pytest.fixture
def draft(make, cert_call, applicant, cert_form):
    return make.application(cert_call, applicant, cert_form)


# ---------------------------------------------------------------- catalogue


def test_program_page_explains_policy_rules_materials_award_and_calls(client, session, cert_call):
    page = _page(client.get("/programs/certification_reward"))
    program = compiled(session, cert_call.definition_id).program
    assert program.summary.zh in page
    assert program.how_award_is_computed.zh in page
    for rule in program.eligibility:
        assert rule.applicant_message.zh in page
    for m in program.materials:
        assert m.label.zh in page
    assert cert_call.title in page and cert_call.closes_on.isoformat() in page
    assert "办理流程" in page and "区县审核中" in page  # public stage labels


def test_program_page_offers_start_and_then_continue(client, session, cert_call, applicant):
    login(client, applicant)
    page = _page(client.get("/programs/certification_reward"))
    assert f'action="/calls/{cert_call.id}/apply"' in page and "开始申报" in page
    client.post(f"/calls/{cert_call.id}/apply")
    app = session.scalar(select(Application).where(Application.call_id == cert_call.id))
    page = _page(client.get("/programs/certification_reward"))
    assert "继续申报" in page and f"/applications/{app.id}" in page


def test_program_page_lists_upcoming_calls_without_a_start_button(client, make, applicant):
    today = date.today()
    call = make.call(
        "pledge_loan_subsidy", opens=today + timedelta(days=5), closes=today + timedelta(days=40)
    )
    login(client, applicant)
    page = _page(client.get("/programs/pledge_loan_subsidy"))
    assert call.title in page and "即将开始" in page
    assert f"/calls/{call.id}/apply" not in page


@pytest.mark.parametrize("code", ["no_such_program", "Bad-Code", "x" * 80])
def test_unknown_program_is_404(client, code):
    assert client.get(f"/programs/{code}").status_code == 404


def test_state_diagram_is_svg_with_public_labels_and_cached(client, session, cert_call):
    from webapp import portal_pages

    if not portal_pages.graphviz_available():
        pytest.skip("graphviz not installed")
    response = client.get("/programs/certification_reward/diagram.svg")
    assert response.status_code == 200 and response.mimetype == "image/svg+xml"
    svg = _page(response)
    assert "<svg" in svg and "区县审核中" in svg and "区县初审" not in svg
    assert (cert_call.definition_id, "zh") in portal_pages._SVG
    assert 'src="/programs/certification_reward/diagram.svg"' in _page(
        client.get("/programs/certification_reward")
    )


def test_state_diagram_falls_back_to_mermaid_text_without_graphviz(client, cert_call, monkeypatch):
    from webapp import portal_pages
    from webapp.views import portal

    monkeypatch.setattr(portal, "graphviz_available", lambda: False)
    monkeypatch.setattr(portal_pages, "graphviz_available", lambda: False)
    monkeypatch.setattr(portal_pages, "_SVG", {})
    page = _page(client.get("/programs/certification_reward"))
    assert "<pre" in page and "stateDiagram-v2" in page
    assert client.get("/programs/certification_reward/diagram.svg").status_code == 404


# ---------------------------------------------------------------- dashboard and start


def test_dashboard_lists_the_organizations_applications(client, session, draft, applicant, make):
    colleague = make.user("applicant", org=applicant.organization)
    login(client, colleague)
    page = _page(client.get("/my"))
    assert "填报中" in page  # public label of draft
    assert f"/applications/{draft.id}" in page
    assert draft.call.closes_on.isoformat() in page


def test_dashboard_needs_login(client):
    response = client.get("/my")
    assert response.status_code in (302, 401)


def test_dashboard_is_for_applicants_only(client, make):
    login(client, make.user("city_officer"))
    assert client.get("/my").status_code == 403


def test_double_click_and_two_tabs_make_one_application(client, session, cert_call, applicant):
    login(client, applicant)
    first = client.post(f"/calls/{cert_call.id}/apply")
    second = client.post(f"/calls/{cert_call.id}/apply")
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    count = session.scalar(
        select(func.count()).select_from(Application).where(Application.call_id == cert_call.id)
    )
    assert count == 1


def test_closed_call_refuses_with_a_clear_message(client, make, applicant):
    today = date.today()
    call = make.call(
        "certification_reward",
        opens=today - timedelta(days=40),
        closes=today - timedelta(days=1),
    )
    login(client, applicant)
    response = client.post(f"/calls/{call.id}/apply")
    assert response.status_code == 409
    assert "当前不在申报期内" in _page(response)
    response = client.post(f"/calls/{call.id}/apply?lang=en")
    assert "it is not open now" in _page(response)


def test_wrong_kind_of_organization_cannot_apply(client, make, applicant):
    call = make.call("branded_agency")
    login(client, applicant)
    page = _page(client.get("/programs/branded_agency"))
    assert "不在该项目的申报范围内" in page and f"/calls/{call.id}/apply" not in page
    response = client.post(f"/calls/{call.id}/apply")
    assert response.status_code == 403
    assert "不在该项目的申报范围内" in _page(response)


@pytest.mark.parametrize("call_id", ["999999", str(2**40)])
def test_unknown_call_is_404(client, applicant, call_id):
    login(client, applicant)
    assert client.post(f"/calls/{call_id}/apply").status_code == 404


# ---------------------------------------------------------------- the form


def test_edit_shows_every_section_with_labels_help_and_required_marks(client, session, draft):
    login(client, draft.organization.users[0])
    page = _page(client.get(f"/applications/{draft.id}/edit"))
    program = _program(session, draft)
    for section in program.form.sections:
        assert section.title.zh in page
    assert 'for="applicant-unit_type"' in page and 'id="applicant-unit_type"' in page
    assert 'name="invoices-0-invoice_no"' in page and 'value="25220000000012345678"' in page
    assert 'type="date"' in page and 'inputmode="decimal"' in page and 'type="tel"' in page
    assert f'name="version" type="hidden" value="{draft.version}"' in page
    assert 'class="required-mark"' in page
    english = _page(client.get(f"/applications/{draft.id}/edit?lang=en"))
    assert "Type of organization" in english and "Certificate number" in english


@pytest.mark.parametrize("code", sorted(ROUND_TRIP))
def test_every_program_form_round_trips_a_scenario(client, session, make, code):
    """The form data of a real scenario, posted through the web form, is stored exactly
    as saving it directly would store it (unticked checkboxes being False)."""
    scenario = yaml.safe_load((SCENARIOS / code / ROUND_TRIP[code]).read_text(encoding="utf-8"))
    data = scenario["applications"][0]["form"]
    call = make.call(code)
    user = make.applicant(org_type=APPLICANT_TYPE.get(code, "enterprise"))
    app = make.application(call, user, materials=False)
    program = _program(session, app)
    login(client, user)

    response = _post_form(client, app, program, data)

    assert response.status_code == 302, _page(response)
    session.refresh(app)
    expected, errors = clean_form(program, _with_unticked_booleans(program, data))
    assert errors == {}
    assert app.form_data == expected
    for section in program.repeatable_sections():
        assert len(app.form_data[section.key]) == len(data.get(section.key) or [])
    # ... and renders back into the same inputs.
    page = _page(client.get(f"/applications/{app.id}/edit"))
    for section in program.repeatable_sections():
        for i in range(len(data.get(section.key) or [])):
            assert f'name="{section.key}-{i}-' in page


def _all_types_program() -> Program:
    path = next(p for p in definition_files() if p.stem == "certification_reward")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    choices = [
        {"value": "a", "label": {"zh": "甲", "en": "A"}},
        {"value": "b", "label": {"zh": "乙"}},
    ]
    fields = [
        {"key": f"f_{t}", "type": t, "label": {"zh": f"字段{t}", "en": f"Field {t}"}}
        for t in (
            "text",
            "textarea",
            "integer",
            "decimal",
            "money",
            "percent",
            "date",
            "boolean",
            "email",
            "phone",
            "credit_code",
        )
    ]
    fields += [
        {"key": "f_choice", "type": "choice", "label": {"zh": "单选"}, "choices": choices},
        {"key": "f_multi", "type": "multichoice", "label": {"zh": "多选"}, "choices": choices},
    ]
    raw["form"]["sections"].append(
        {"key": "every_type", "title": {"zh": "全部类型"}, "fields": fields}
    )
    raw["form"]["sections"].append(
        {
            "key": "typed_rows",
            "title": {"zh": "全部类型（重复）"},
            "repeatable": True,
            "min_rows": 1,
            "fields": [{**f, "key": f["key"] + "_r"} for f in fields],
        }
    )
    return Program.model_validate(raw)


EVERY_TYPE = {
    "f_text": "文本",
    "f_textarea": "第一行\n第二行",
    "f_integer": "42",
    "f_decimal": "3.14159",
    "f_money": "1234.50",
    "f_percent": "60",
    "f_date": "2025-06-18",
    "f_boolean": True,
    "f_email": "a@example.cn",
    "f_phone": "0431-85551234",
    "f_credit_code": "91110000600037341L",
    "f_choice": "b",
    "f_multi": ["a", "b"],
}


def test_every_field_type_round_trips_through_the_generated_form(app):
    program = _all_types_program()
    form_cls = build_form_class(program, -1)
    data = {**EVERY_TYPE, "typed_rows": [{k + "_r": v for k, v in EVERY_TYPE.items()}] * 2}
    with app.test_request_context(method="POST", data=formdata_for(program, data)):
        form = form_cls()
        form.localize("en")
        raw = form.to_raw()
        assert form["every_type"]["f_choice"].choices[1].label == "A"
        assert form["every_type"]["f_multi"].choices[1].label == "乙"  # no English: Chinese
    cleaned, errors = clean_form(program, raw)
    assert errors == {}
    expected, _ = clean_form(program, _with_unticked_booleans(program, data))
    assert cleaned == expected
    assert cleaned["f_textarea"] == "第一行\n第二行" and cleaned["f_multi"] == ["a", "b"]
    assert cleaned["typed_rows"][1]["f_money_r"] == "1234.50"
    # Stored data renders back into the same form, every type with its own input.
    with app.test_request_context():
        again = form_cls(formdata=None, data=initial_data(program, cleaned))
        assert clean_form(program, again.to_raw())[0] == cleaned
        again.localize("zh")
        sections = layout(
            again, program, data=cleaned, params=None, editable=None, errors={}, lang="zh"
        )
        html = render_template_string(
            '{% from "portal/_fields.html" import field %}'
            "{% for sv in sections %}{% for fv in sv.fields %}{{ field(fv) }}{% endfor %}"
            "{% for row in sv.rows %}{% for fv in row.fields %}{{ field(fv) }}{% endfor %}"
            "{% endfor %}{% endfor %}",
            sections=sections,
        )
    for prefix in ("every_type-", "typed_rows-1-"):
        suffix = "_r" if prefix.startswith("typed") else ""
        expect = {
            "f_text": 'type="text"',
            "f_textarea": "<textarea",
            "f_integer": 'inputmode="numeric"',
            "f_decimal": 'inputmode="decimal"',
            "f_money": 'inputmode="decimal"',
            "f_date": 'type="date"',
            "f_boolean": 'type="checkbox"',
            "f_email": 'type="email"',
            "f_phone": 'type="tel"',
            "f_credit_code": 'maxlength="18"',
            "f_choice": "<select",
        }
        for key, marker in expect.items():
            name = prefix + key + suffix
            tag = re.search(rf'<(input|select|textarea)[^>]*id="{name}"[^>]*>', html)
            assert tag and marker in tag.group(0) + tag.group(1), name
            assert f'for="{name}"' in html, name
        multi = prefix + "f_multi" + suffix
        assert html.count(f'name="{multi}" type="checkbox"') == 2
        option = re.search(rf'<input[^>]*id="{multi}-0"[^>]*>', html)
        assert option and "checked" in option.group(0)
    assert "1234.50" in html and "第一行\n第二行" in html


def test_a_draft_with_missing_fields_is_saved(client, session, make, cert_call, applicant):
    app = make.application(cert_call, applicant, materials=False)
    login(client, applicant)
    response = _post_form(client, app, _program(session, app), {"contact_name": "王敏"})
    assert response.status_code == 302
    session.refresh(app)
    assert app.form_data["contact_name"] == "王敏" and app.form_data["cert_number"] is None
    assert "草稿已保存" in _page(client.get(response.headers["Location"]))


def test_malformed_values_are_422_with_messages_and_nothing_lost(client, session, draft):
    user = draft.organization.users[0]
    login(client, user)
    program = _program(session, draft)
    data = copy.deepcopy(draft.form_data)
    data["valid_invention_patents"] = "三件"
    data["invoices"][0]["amount"] = "12.345"
    before = copy.deepcopy(draft.form_data)
    response = _post_form(client, draft, program, data)
    assert response.status_code == 422
    page = _page(response)
    assert "请输入数字。" in page and "金额最多两位小数。" in page
    assert 'value="三件"' in page and 'value="12.345"' in page
    assert 'aria-describedby="applicant-valid_invention_patents-error"' in page
    assert 'href="#invoices-0-amount"' in page
    session.refresh(draft)
    assert draft.form_data == before
    english = _page(
        client.post(
            f"/applications/{draft.id}/edit?lang=en",
            data={**formdata_for(program, data).to_dict(), "version": str(draft.version)},
        )
    )
    assert "Enter a number." in english


def test_stale_form_is_409_with_the_conflict_message_and_data_kept(client, session, draft):
    user = draft.organization.users[0]
    login(client, user)
    program = _program(session, draft)
    seen = draft.version
    assert (
        _post_form(client, draft, program, {**draft.form_data, "cert_body": "甲"}).status_code
        == 302
    )
    session.refresh(draft)
    mine = {**draft.form_data, "cert_body": "另一个标签页输入的内容"}
    response = _post_form(client, draft, program, mine, version=seen)
    assert response.status_code == 409
    page = _page(response)
    assert "已被他人处理或修改" in page and "另一个标签页输入的内容" in page
    session.refresh(draft)
    assert draft.form_data["cert_body"] == "甲"
    # The re-rendered form carries the current version: saving again is deliberate.
    assert f'name="version" type="hidden" value="{draft.version}"' in page


def test_add_and_remove_rows_without_javascript_keep_what_was_typed(client, session, draft):
    login(client, draft.organization.users[0])
    program = _program(session, draft)
    data = {**draft.form_data, "cert_body": "未保存的输入"}
    response = _post_form(client, draft, program, data, action="add_row:invoices")
    assert response.status_code == 200
    page = _page(response)
    assert 'name="invoices-1-invoice_no"' in page and "未保存的输入" in page
    assert "第2行" in page

    two_rows = {**data, "invoices": [*data["invoices"], {"invoice_no": "第二张"}]}
    page = _page(_post_form(client, draft, program, two_rows, action="remove_row:invoices:1"))
    assert 'value="第二张"' in page and "25220000000012345678" not in page
    assert 'name="invoices-1-invoice_no"' not in page
    session.refresh(draft)
    assert len(draft.form_data["invoices"]) == 1  # nothing saved by row buttons


def test_saving_without_a_version_is_400(client, session, draft):
    login(client, draft.organization.users[0])
    body = formdata_for(_program(session, draft), draft.form_data)
    assert client.post(f"/applications/{draft.id}/edit", data=body).status_code == 400


def test_row_buttons_refuse_unknown_groups(client, draft, session):
    login(client, draft.organization.users[0])
    program = _program(session, draft)
    for action in ("add_row:nope", "remove_row:invoices:x"):
        assert _post_form(client, draft, program, draft.form_data, action=action).status_code == 400


def test_conditional_fields_follow_visible_if(client, session, make, applicant):
    call = make.call("pledge_loan_subsidy")
    app = make.application(
        call, applicant, {"loans": [{"bank": "甲银行", "guarantee_type": "pure_ip"}]}
    )
    login(client, applicant)
    page = _page(client.get(f"/applications/{app.id}/edit"))
    block = re.search(
        r'<div class="col-md-6 portal-field"[^>]*data-show-name="loans-0-guarantee_type"[^>]*>',
        page,
    )
    assert block and "hidden" in block.group(0) and 'data-show-value="combined"' in block.group(0)
    save = _post_form(
        client, app, _program(session, app), {"loans": [{"guarantee_type": "combined"}]}
    )
    assert save.status_code == 302
    page = _page(client.get(f"/applications/{app.id}/edit"))
    block = re.search(
        r'<div class="col-md-6 portal-field"[^>]*data-show-name="loans-0-guarantee_type"[^>]*>',
        page,
    )
    assert block and "hidden" not in block.group(0)


# ---------------------------------------------------------------- pre-check and submit


def test_precheck_lists_every_rule_and_the_award_with_its_calculation(client, session, draft):
    login(client, draft.organization.users[0])
    page = _page(client.get(f"/applications/{draft.id}/precheck"))
    program = _program(session, draft)
    for rule in program.eligibility:
        assert rule.applicant_message.zh in page
    assert "✗" not in page
    assert "25,000.00 元" in page
    assert "定额奖励" in page and "实际支付的认证费用" in page  # trace step labels
    assert "round_fen(min(base, cost, params.per_applicant_cap))" in page
    assert "必填内容和必需材料已齐全" in page


def test_precheck_shows_failed_rules_with_the_applicant_message(client, session, draft):
    user = draft.organization.users[0]
    login(client, user)
    _post_form(
        client, draft, _program(session, draft), {**draft.form_data, "rewarded_before": True}
    )
    page = _page(client.get(f"/applications/{draft.id}/precheck"))
    assert "✗" in page and "已获得过本项奖励的单位不能重复申报。" in page


def test_submit_lists_what_is_missing_with_links_to_the_fields(
    client, session, make, cert_call, applicant
):
    app = make.application(cert_call, applicant, {"contact_name": "王敏"}, materials=False)
    login(client, applicant)
    response = client.post(f"/applications/{app.id}/submit", data={"version": app.version})
    assert response.status_code == 422
    page = _page(response)
    assert "处需要填写或修改" in page
    assert f"/applications/{app.id}/edit?check=1#applicant-unit_type" in page
    assert f"/applications/{app.id}/materials#material-application_form" in page
    session.refresh(app)
    assert app.state == "draft" and app.number is None
    # The link lands on the form with the field marked.
    page = _page(client.get(f"/applications/{app.id}/edit?check=1"))
    assert 'id="applicant-unit_type-error"' in page and "必填。" in page


def test_submit_freezes_the_snapshot_and_shows_the_number(client, session, draft):
    login(client, draft.organization.users[0])
    response = client.post(f"/applications/{draft.id}/submit", data={"version": draft.version})
    assert response.status_code == 302
    session.refresh(draft)
    assert draft.state == "district_review" and draft.number
    assert draft.snapshot["form"] == draft.form_data
    assert {m["kind"] for m in draft.snapshot["materials"]} >= {"application_form"}
    page = _page(client.get(response.headers["Location"]))
    assert draft.number in page and "申报已提交" in page and "区县审核中" in page
    # Submitted: the form is shown read-only and cannot be saved.
    edit = _page(client.get(f"/applications/{draft.id}/edit"))
    assert "内容不能修改" in edit and "<input" not in edit.split('id="form-top"')[1]
    assert "165IP250001R0M" in edit
    refused = _post_form(client, draft, _program(session, draft), draft.form_data)
    assert refused.status_code in (302, 403)
    session.refresh(draft)
    assert draft.state == "district_review"


def test_submit_with_a_stale_version_is_409(client, session, draft):
    login(client, draft.organization.users[0])
    response = client.post(f"/applications/{draft.id}/submit", data={"version": draft.version - 1})
    assert response.status_code == 409
    assert "请刷新页面后重试" in _page(response)
    session.refresh(draft)
    assert draft.state == "draft"


def test_submit_without_version_is_400(client, draft):
    login(client, draft.organization.users[0])
    assert client.post(f"/applications/{draft.id}/submit").status_code == 400


def test_submit_after_the_call_closed_is_refused(client, session, draft):
    login(client, draft.organization.users[0])
    draft.call.closes_on = date.today() - timedelta(days=1)
    session.commit()
    response = client.post(f"/applications/{draft.id}/submit", data={"version": draft.version})
    assert response.status_code == 409 and "当前不在申报期内" in _page(response)


def _to_supplement(session, make, app, fields=("contact_name",), materials=("certificate",)):
    user = app.organization.users[0]
    from workflow.operations.applications import submit_application

    submit_application(session, app, user, today=date.today())
    officer = make.user("district_officer", district=app.district)
    fire(
        session,
        app,
        "district_return",
        officer,
        reason="请更正联系人并补充证书扫描件。",
        payload={"supplement": {"fields": list(fields), "materials": list(materials)}},
    )
    session.commit()
    return app


def test_supplement_lets_only_the_requested_fields_change(client, session, make, draft):
    _to_supplement(session, make, draft, fields=("contact_name", "invoices"))
    login(client, draft.organization.users[0])
    page = _page(client.get(f"/applications/{draft.id}/edit"))
    assert "只有要求补正的内容可以修改" in page and "请更正联系人" in page
    assert 'name="applicant-contact_name"' in page and 'name="invoices-0-amount"' in page
    assert 'name="certificate-cert_number"' not in page and "165IP250001R0M" in page  # read-only
    program = _program(session, draft)
    changed = {**draft.form_data, "contact_name": "李新", "cert_number": "篡改"}
    assert _post_form(client, draft, program, changed).status_code == 302
    session.refresh(draft)
    assert draft.form_data["contact_name"] == "李新"
    assert draft.form_data["cert_number"] == "165IP250001R0M"


def test_status_page_shows_the_supplement_request_and_its_deadline(client, session, make, draft):
    _to_supplement(session, make, draft)
    login(client, draft.organization.users[0])
    page = _page(client.get(f"/applications/{draft.id}"))
    assert "待补正" in page and "补正要求" in page and "请更正联系人并补充证书扫描件。" in page
    assert "联系人" in page and "认证证书扫描件" in page
    assert draft.deadline_on.isoformat() in page and "个工作日" in page
    assert "补正截止" in page


def test_resubmit_after_a_supplement(client, session, make, draft):
    _to_supplement(session, make, draft)
    login(client, draft.organization.users[0])
    response = client.post(f"/applications/{draft.id}/submit", data={"version": draft.version})
    assert response.status_code == 302
    session.refresh(draft)
    assert draft.state == "district_review" and draft.supplement_request is None
    actions = session.scalars(
        select(AuditEvent.action).where(AuditEvent.application_id == draft.id)
    ).all()
    assert "transition.resubmit" in actions


def test_status_timeline_uses_public_labels_only(client, session, make, draft):
    from workflow.operations.applications import submit_application

    user = draft.organization.users[0]
    submit_application(session, draft, user, today=date.today())
    fire(session, draft, "district_pass", make.user("district_officer", district=draft.district))
    session.commit()
    login(client, user)
    page = _page(client.get(f"/applications/{draft.id}"))
    timeline = page[page.index('class="timeline"') :]
    for public in ("填报中", "区县审核中", "市局审查中"):
        assert public in timeline
    for internal in ("区县初审", "市局资格审查", "district_review", "city_review"):
        assert internal not in page
    assert 'aria-current="step"' in page
    assert "Being filled in" in _page(client.get(f"/applications/{draft.id}?lang=en"))


def test_withdraw_while_allowed(client, session, draft):
    login(client, draft.organization.users[0])
    page = _page(client.get(f"/applications/{draft.id}"))
    assert f'action="/applications/{draft.id}/withdraw"' in page
    response = client.post(
        f"/applications/{draft.id}/withdraw", data={"version": draft.version, "reason": "不再申报"}
    )
    assert response.status_code == 302
    session.refresh(draft)
    assert draft.state == "withdrawn"
    page = _page(client.get(f"/applications/{draft.id}"))
    assert "已撤回" in page and f'action="/applications/{draft.id}/withdraw"' not in page


def test_withdraw_refused_once_decided(client, session, make, draft):
    draft.state = "approved"
    session.commit()
    login(client, draft.organization.users[0])
    assert 'withdraw"' not in _page(client.get(f"/applications/{draft.id}"))
    response = client.post(f"/applications/{draft.id}/withdraw", data={"version": draft.version})
    assert response.status_code == 409


def test_withdraw_with_stale_version_is_409(client, session, draft):
    login(client, draft.organization.users[0])
    response = client.post(
        f"/applications/{draft.id}/withdraw", data={"version": draft.version + 5}
    )
    assert response.status_code == 409
    session.refresh(draft)
    assert draft.state == "draft"


# ---------------------------------------------------------------- decisions


def _decision(session, app, *, with_pdf: bool, storage_dir: str) -> Decision:
    key = None
    if with_pdf:
        key, _ = LocalStorage(storage_dir).put(b"%PDF-1.4\n%test decision\n", prefix="doc")
    decision = Decision(
        application_id=app.id,
        kind="approval",
        doc_prefix="长市监知字",
        doc_year=2026,
        doc_seq=app.id,
        doc_number=f"长市监知字〔2026〕{app.id}号",
        template="decision_approval.html",
        render_data={},
        verification_code=f"V{app.id:015d}",
        pdf_storage_key=key,
    )
    session.add(decision)
    session.commit()
    return decision


def test_decision_pdf_for_the_owner_and_404_until_rendered(client, session, app, draft):
    storage = app.config["STORAGE_DIR"]
    pending = _decision(session, draft, with_pdf=False, storage_dir=storage)
    login(client, draft.organization.users[0])
    page = _page(client.get(f"/applications/{draft.id}"))
    assert pending.doc_number in page and "决定书正在生成" in page
    assert client.get(f"/decisions/{pending.id}/pdf").status_code == 404
    pending.pdf_storage_key = LocalStorage(storage).put(b"%PDF-1.4\n", prefix="doc")[0]
    session.commit()
    response = client.get(f"/decisions/{pending.id}/pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"].startswith("inline")
    assert f"/decisions/{pending.id}/pdf" in _page(client.get(f"/applications/{draft.id}"))


# ---------------------------------------------------------------- nobody else's


def _routes(app_id: int, decision_id: int):
    return [
        ("get", f"/applications/{app_id}", None),
        ("get", f"/applications/{app_id}/edit", None),
        ("post", f"/applications/{app_id}/edit", {"version": "1", "action": "save"}),
        ("get", f"/applications/{app_id}/materials", None),
        ("post", f"/applications/{app_id}/materials", {"kind": "certificate"}),
        ("get", f"/applications/{app_id}/precheck", None),
        ("post", f"/applications/{app_id}/submit", {"version": "1"}),
        ("post", f"/applications/{app_id}/withdraw", {"version": "1"}),
        ("get", f"/decisions/{decision_id}/pdf", None),
    ]


def test_another_organization_can_neither_see_nor_change_anything(
    client, session, app, make, draft
):
    decision = _decision(session, draft, with_pdf=True, storage_dir=app.config["STORAGE_DIR"])
    before = (draft.state, copy.deepcopy(draft.form_data), draft.version)
    login(client, make.applicant())
    for method, url, data in _routes(draft.id, decision.id):
        response = getattr(client, method)(url, data=data)
        assert response.status_code in (403, 404), (method, url, response.status_code)
    session.refresh(draft)
    assert (draft.state, draft.form_data, draft.version) == before


def test_staff_do_not_use_the_portal(client, session, app, make, draft):
    from workflow.operations.applications import submit_application

    submit_application(session, draft, draft.organization.users[0], today=date.today())
    officer = make.user("city_officer")
    login(client, officer)
    for url in (f"/applications/{draft.id}", f"/applications/{draft.id}/edit"):
        assert client.get(url).status_code == 403


@pytest.mark.parametrize(
    "url", ["/applications/999999", f"/applications/{2**40}", "/decisions/999999/pdf"]
)
def test_unknown_ids_are_404(client, applicant, url):
    login(client, applicant)
    assert client.get(url).status_code == 404


def test_anonymous_users_are_sent_to_log_in(client, draft):
    for url in (f"/applications/{draft.id}", f"/applications/{draft.id}/edit", "/my"):
        response = client.get(url)
        assert response.status_code in (302, 401)
        assert "/login" in response.headers.get("Location", "/login")


def test_english_portal_pages(client, session, draft):
    from webapp.i18n import compile_catalog

    compile_catalog()
    login(client, draft.organization.users[0])
    for url in (
        f"/applications/{draft.id}?lang=en",
        f"/applications/{draft.id}/materials?lang=en",
        f"/applications/{draft.id}/precheck?lang=en",
        "/my?lang=en",
        "/programs/certification_reward?lang=en",
    ):
        page = _page(client.get(url))
        assert not re.search(r">[^<>]*[\u4e00-\u9fff][^<>]*<", _strip_data(page)), url


def _strip_data(page: str) -> str:
    """Chinese that is data (org and call names, stored values, file names) may stay."""
    for text in re.findall(r"测试[^<>\"]*|长春[^<>\"]*|王敏|中知[^<>\"]*|[^<>\"]*\.pdf", page):
        page = page.replace(text, "")
    page = page.replace("中文", "")  # the language switch
    return re.sub(r"<(option|td|textarea|code|pre)[^>]*>[^<]*</\1>", "", page)
