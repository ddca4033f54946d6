"""In the browser: a new applicant goes from the home page to a submitted application for
the certification reward and for the pledge-loan subsidy (register, program page, start,
fill the form, add a repeatable row, upload materials, pre-check, submit, number and
timeline); the branded-agency and patent-dense-product forms are started and saved as
drafts. Screenshots: test-artifacts/screenshots/portal-*.png."""

from __future__ import annotations

import re
import secrets

import pytest

from tests.browser.conftest import login_as, shot
from webapp.demo import _minimal_pdf
from workflow.domain.credit_code import credit_code_check_char, org_code_check_char

pytestmark = pytest.mark.browser
PASSWORD = "Journey2026pass"


def fresh_credit_code() -> str:
    body = "912201" + "04" + "".join(secrets.choice("0123456789") for _ in range(8))
    first17 = body + org_code_check_char(body[8:16])
    return first17 + credit_code_check_char(first17)


def register_or_skip(page, name: str, org_type: str = "enterprise") -> None:
    """Register a new organization through /register (the accounts area)."""
    response = page.goto("/register")
    if response is None or response.status == 404:
        pytest.skip("no /register page: the accounts area is not installed")
    page.fill("input[name=org_name]", name)
    page.fill("input[name=credit_code]", fresh_credit_code())
    page.select_option("select[name=org_type]", org_type)
    page.select_option("select[name=district]", "朝阳区")
    page.fill("input[name=address]", "长春市朝阳区人民大街100号")
    page.fill("input[name=legal_representative]", "赵刚")
    page.fill("input[name=contact_name]", "钱丽")
    page.fill("input[name=mobile]", "13904310099")
    page.fill("input[name=email]", f"journey-{secrets.token_hex(4)}@browser.cn")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password_confirm]", PASSWORD)
    page.locator("main button[type=submit]").click()
    page.wait_for_load_state()
    assert "/register" not in page.url, page.locator(".invalid-feedback").all_inner_texts()


def start(page, code: str, prefix: str) -> int:
    page.goto(f"/programs/{code}")
    assert page.locator("h2", has_text="申报条件").is_visible()
    shot(page, f"{prefix}-02-program")
    page.get_by_role("button", name=re.compile("开始申报")).first.click()
    page.wait_for_url(re.compile(r"/applications/\d+/edit"))
    assert page.locator(".alert-success").is_visible()
    shot(page, f"{prefix}-03-form-empty")
    return int(re.search(r"/applications/(\d+)/", page.url).group(1))


def save(page) -> None:
    page.locator(".form-actions button[value=save]").click()
    page.wait_for_load_state()
    assert page.locator(".alert-success", has_text="草稿已保存").is_visible(), page.content()[:3000]


def upload_all(page, app_id: int, kinds: list[str], prefix: str) -> None:
    page.goto(f"/applications/{app_id}/materials")
    shot(page, f"{prefix}-05-materials-empty")
    for kind in kinds:
        form = page.locator(f"#material-{kind} form.upload-form")
        form.locator("input[type=file]").set_input_files(
            {"name": f"{kind}.pdf", "mimeType": "application/pdf", "buffer": _minimal_pdf(kind)}
        )
        with page.expect_navigation():
            form.locator("button[type=submit]").click()
        assert page.locator(f"#material-{kind} table").is_visible(), kind
    assert page.locator(".badge", has_text="尚未上传").count() == 0
    shot(page, f"{prefix}-06-materials-uploaded")


def precheck_and_submit(page, app_id: int, prefix: str) -> str:
    page.get_by_role("link", name="预检与提交").first.click()
    page.wait_for_url(f"**/applications/{app_id}/precheck")
    assert page.get_by_text("必填内容和必需材料已齐全").is_visible()
    assert page.locator(".award-amount").is_visible()
    shot(page, f"{prefix}-07-precheck")
    page.get_by_role("button", name="确认提交").click()
    page.wait_for_url(f"**/applications/{app_id}")
    banner = page.locator(".alert-success", has_text="申报已提交").inner_text()
    number = re.search(r"[A-Z]{2,6}\d{4}-\d{6}", banner).group(0)
    assert page.locator(".app-number", has_text=number).is_visible()
    timeline = page.locator("ol.timeline")
    assert "填报中" in timeline.inner_text()
    shot(page, f"{prefix}-08-submitted")
    return number


def test_certification_reward_from_home_page_to_submitted(page):
    page.goto("/")
    shot(page, "portal-cert-01-home")
    register_or_skip(page, "长春旅程测试认证科技有限公司")
    app_id = start(page, "certification_reward", "portal-cert")

    page.select_option("#applicant-unit_type", "enterprise")
    page.check("#applicant-registered_in_changchun")
    page.fill("#applicant-contact_name", "钱丽")
    page.fill("#applicant-contact_phone", "13904310099")
    page.fill("#applicant-valid_invention_patents", "2")
    page.fill("#applicant-valid_other_patents", "4")
    page.select_option("#certificate-standard", "gbt29490_2023")
    page.fill("#certificate-cert_number", f"165IP25{secrets.randbelow(10**6):06d}R0M")
    page.fill("#certificate-cert_body", "中知（北京）认证有限公司")
    page.check("#certificate-cert_body_accredited")
    page.fill("#certificate-first_issue_date", "2025-06-18")
    page.fill("#certificate-issue_date", "2025-06-18")
    page.fill("#certificate-cert_valid_until", "2028-06-17")
    page.select_option("#certificate-cert_status", "valid")
    page.fill("#costs-contract_amount", "28000")
    page.fill("#costs-cert_cost_paid", "25000")
    page.fill("#invoices-0-invoice_no", "25220000000011111111")
    page.fill("#invoices-0-invoice_date", "2025-06-20")
    page.fill("#invoices-0-amount", "15000")
    # A second invoice, added in the page (JavaScript clones the row template).
    page.locator("[data-add-row=invoices]").click()
    assert page.locator("#invoices-1-invoice_no").is_visible()
    page.fill("#invoices-1-invoice_no", "25220000000022222222")
    page.fill("#invoices-1-invoice_date", "2025-06-28")
    page.fill("#invoices-1-amount", "10000")
    page.check("#declarations-no_ip_violation")
    page.check("#declarations-truthful")
    shot(page, "portal-cert-04-form-filled")
    save(page)
    assert page.input_value("#invoices-1-amount") == "10000.00"
    assert page.input_value("#applicant-contact_name") == "钱丽"

    upload_all(
        page,
        app_id,
        [
            "application_form",
            "business_licence",
            "certificate",
            "cost_evidence",
            "credit_commitment",
        ],
        "portal-cert",
    )
    page.goto(f"/applications/{app_id}/precheck")
    assert "25,000.00" in page.locator(".award-amount").inner_text()
    number = precheck_and_submit(page, app_id, "portal-cert")
    assert number.startswith("GB")
    assert "区县审核中" in page.locator("ol.timeline").inner_text()

    page.goto("/my")
    assert page.get_by_text(number).is_visible()
    shot(page, "portal-cert-09-dashboard")
    page.goto(f"/applications/{app_id}?lang=en")
    assert page.get_by_text("Being filled in").is_visible()
    shot(page, "portal-cert-10-status-en")


def test_pledge_loan_subsidy_from_home_page_to_submitted(page):
    page.goto("/")
    register_or_skip(page, "长春旅程测试质押机械有限公司")
    app_id = start(page, "pledge_loan_subsidy", "portal-pledge")

    page.select_option("#enterprise-sme_category", "small")
    page.fill("#enterprise-industry", "工业（专用设备制造）")
    page.fill("#enterprise-employees", "120")
    page.fill("#enterprise-revenue_last_year", "58000000")
    page.fill("#enterprise-total_assets", "76000000")
    page.check("#enterprise-registered_in_changchun")
    page.check("#enterprise-independent_legal_person")
    page.fill("#enterprise-contact_name", "李明")
    page.fill("#enterprise-contact_phone", "13904310021")
    loan = {
        "bank": "吉林银行长春朝阳支行",
        "contract_no": "JLB-ZY-2024-0312",
        "contract_date": "2024-03-12",
        "disbursed_on": "2024-03-15",
        "due_on": "2025-03-15",
        "settled_on": "2025-03-15",
        "principal": "5000000",
        "annual_rate": "3.95",
        "interest_paid": "200243.06",
        "pledge_registered_on": "2024-03-14",
    }
    for key, value in loan.items():
        page.fill(f"#loans-0-{key}", value)
    page.check("#loans-0-lender_is_bank")
    # The IP share only applies to combined security: it appears when that is chosen.
    share = page.locator("[data-show-name='loans-0-guarantee_type']")
    assert share.is_hidden()
    page.select_option("#loans-0-guarantee_type", "combined")
    assert share.is_visible()
    page.select_option("#loans-0-guarantee_type", "pure_ip")
    assert share.is_hidden()
    pledge = {
        "ip_number": "ZL202110345678.9",
        "registration_no": "Y2024220000123",
        "registration_date": "2024-03-14",
        "loan_contract_no": "JLB-ZY-2024-0312",
    }
    page.select_option("#pledges-0-ip_type", "patent")
    for key, value in pledge.items():
        page.fill(f"#pledges-0-{key}", value)
    page.check("#pledges-0-pledgor_is_applicant")
    page.check("#pledges-0-right_holder_is_applicant")
    page.check("#pledges-0-first_time_pledge")
    page.locator("[data-add-row=pledges]").click()
    page.select_option("#pledges-1-ip_type", "patent")
    for key, value in {
        **pledge,
        "ip_number": "ZL202220987654.3",
        "registration_no": "Y2024220000124",
    }.items():
        page.fill(f"#pledges-1-{key}", value)
    page.check("#pledges-1-pledgor_is_applicant")
    page.check("#pledges-1-right_holder_is_applicant")
    page.check("#declarations-pledges_registered_in_time")
    page.check("#declarations-credit_clean")
    page.check("#declarations-truthful")
    shot(page, "portal-pledge-04-form-filled")
    save(page)
    assert page.input_value("#pledges-1-ip_number") == "ZL202220987654.3"

    upload_all(
        page,
        app_id,
        [
            "application_form",
            "credit_commitment",
            "business_licence",
            "sme_evidence",
            "ip_certificates",
            "pledge_registration",
            "loan_contracts",
            "disbursement_proof",
            "repayment_proof",
        ],
        "portal-pledge",
    )
    number = precheck_and_submit(page, app_id, "portal-pledge")
    assert number.startswith("ZYTX")


def test_branded_agency_start_and_save_draft(page):
    login_as(page, "jinghua@demo.cn")
    page.wait_for_load_state()
    start(page, "branded_agency", "portal-agency")
    page.select_option("#agency-agency_type", "patent_agency")
    page.select_option("#agency-legal_form", "partnership")
    page.fill("#agency-licence_no", "22208")
    page.fill("#agency-office_area_sqm", "180.5")
    page.fill("#agents-0-name", "张伟")
    page.fill("#agents-0-cert_no", "2220100001")
    page.locator("[data-add-row=cases]").click()
    page.fill("#cases-0-title", "高价值专利组合培育")
    page.fill("#cases-0-description", "为本地企业布局发明专利。")
    save(page)
    assert page.input_value("#agency-office_area_sqm") == "180.5"
    assert page.input_value("#cases-0-title") == "高价值专利组合培育"
    shot(page, "portal-agency-04-draft-saved")


def test_patent_dense_product_start_and_save_draft(page):
    login_as(page, "beifang@demo.cn")
    page.wait_for_load_state()
    start(page, "patent_dense_product", "portal-dense")
    page.select_option("#applicant-registration_location", "changchun")
    page.fill("#products-0-product_name", "车载控制器")
    page.fill("#products-0-revenue_share", "35")
    page.check("#products-0-is_licensee")
    page.locator("[data-add-row=patents]").click()
    page.fill("#patents-0-patent_no", "ZL202010555666.1")
    save(page)
    assert page.input_value("#products-0-revenue_share") == "35"
    assert page.is_checked("#products-0-is_licensee")
    shot(page, "portal-dense-04-draft-saved")
