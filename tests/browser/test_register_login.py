"""In the browser: a new enterprise registers from the home page (a refused first try,
then a good one), logs out and logs in again; a demo staff member logs in."""

from __future__ import annotations

import secrets

import pytest

from tests.browser.conftest import login_as, shot
from workflow.domain.credit_code import credit_code_check_char, org_code_check_char

pytestmark = pytest.mark.browser
PASSWORD = "Browser2026pass"


def fresh_credit_code() -> str:
    """A valid credit code nobody in the demo data has (both check characters right)."""
    body = "912201" + "04" + "".join(secrets.choice("0123456789") for _ in range(8))
    first17 = body + org_code_check_char(body[8:16])
    return first17 + credit_code_check_char(first17)


def test_enterprise_registers_logs_out_and_logs_in(page):
    email = f"reg-{secrets.token_hex(4)}@browser.cn"
    page.goto("/")
    page.get_by_role("link", name="注册").first.click()
    page.wait_for_url("**/register")
    assert page.get_by_role("heading", name="注册申报单位").is_visible()
    shot(page, "auth-01-register-form")

    page.fill("input[name=org_name]", "长春浏览器测试科技有限公司")
    page.fill("input[name=credit_code]", fresh_credit_code())
    page.select_option("select[name=org_type]", "enterprise")
    page.select_option("select[name=district]", "高新区")
    page.fill("input[name=address]", "长春市高新区硅谷大街1号")
    page.fill("input[name=legal_representative]", "周强")
    page.fill("input[name=contact_name]", "吴芳")
    page.fill("input[name=mobile]", "1390431")  # too short: refused
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password_confirm]", PASSWORD)
    page.click("button[type=submit]")
    error = page.locator("#mobile-error")
    assert "11位中国大陆手机号码" in error.inner_text()
    assert page.locator("input[name=mobile]").get_attribute("aria-describedby") == "mobile-error"
    assert page.input_value("input[name=org_name]") == "长春浏览器测试科技有限公司"
    shot(page, "auth-02-register-refused")

    page.fill("input[name=mobile]", "139 0431 0088")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password_confirm]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "/register" not in page.url
    shot(page, "auth-03-registered")

    page.goto("/account")
    assert page.get_by_role("heading", name="我的账户", exact=True).is_visible()
    assert page.get_by_text(email).is_visible()
    assert page.get_by_role("link", name="长春浏览器测试科技有限公司").is_visible()
    shot(page, "auth-04-account")

    page.get_by_role("button", name="退出").click()
    page.wait_for_load_state()
    assert page.get_by_role("link", name="登录").first.is_visible()

    login_as(page, email, PASSWORD)
    page.wait_for_load_state()
    assert "/login" not in page.url
    assert page.get_by_text("吴芳").first.is_visible()
    page.goto("/organization")
    assert page.get_by_role("heading", name="单位信息", exact=True).is_visible()
    shot(page, "auth-05-organization")


def test_wrong_password_then_demo_staff_logs_in(page):
    login_as(page, "city@demo.cn", "not-the-password-2026")
    alert = page.locator(".alert-danger")
    assert alert.inner_text() == "邮箱或密码不正确。"
    shot(page, "auth-06-login-refused")
    login_as(page, "city@demo.cn")
    page.wait_for_load_state()
    assert "/login" not in page.url
    assert page.get_by_text("市局审查员").first.is_visible()
    shot(page, "auth-07-staff-logged-in")


def test_login_and_two_step_pages_in_english(page):
    page.goto("/login?lang=en")
    assert page.get_by_role("heading", name="Log in").is_visible()
    assert page.get_by_role("link", name="Forgot your password?").is_visible()
    shot(page, "auth-08-login-en")
    login_as(page, "admin@demo.cn")
    page.wait_for_load_state()
    page.goto("/account/2fa")
    assert page.locator("img.totp-qr").is_visible()
    assert page.locator("#totp-secret").inner_text().strip()
    shot(page, "auth-09-totp-setup-en")
