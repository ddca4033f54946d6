"""Accounts: registration, login and lockout, throttling, password change and reset,
invitations, organization details, TOTP two-factor and its enforcement for staff, CSRF on
login and logout."""

from __future__ import annotations

import base64
import re
import time
from datetime import timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Blueprint, g, has_app_context
from flask.testing import FlaskClient
from flask_login import login_required
from itsdangerous.timed import TimestampSigner
from sqlalchemy import func, select

from tests.conftest import PASSWORD, Factory, login, make_app
from webapp.access import new_totp_secret, provisioning_uri, totp_matching_step, totp_now
from webapp.auth_ops import MAX_FAILED_LOGINS, make_reset_token
from webapp.extensions import db
from webapp.security import hash_password, needs_rehash, verify_password
from workflow import outbox
from workflow.domain.credit_code import credit_code_check_char, org_code_check_char
from workflow.models import AuditEvent, Organization, OutboxJob, RoleGrant, User, utcnow

NEW_PASSWORD = "Fresh2026passphrase"
GOOD_CODE = "91350200776049653A"


def registration(**changes: Any) -> dict[str, str]:
    data = {
        "org_name": "长春新材料科技有限公司",
        "credit_code": GOOD_CODE,
        "org_type": "enterprise",
        "district": "朝阳区",
        "address": "长春市朝阳区前进大街100号",
        "legal_representative": "张伟",
        "contact_name": "李娜",
        "mobile": "139 0431 0002",
        "email": "Li.Na@Example.cn",
        "password": NEW_PASSWORD,
        "password_confirm": NEW_PASSWORD,
    }
    data.update(changes)
    return data


def code_with_bad_org_check() -> str:
    """A credit code whose check character (18) is right but whose organization-code
    digit (17) is not."""
    body = "91220101" + "12345678"
    right = org_code_check_char(body[8:16])
    wrong = "1" if right != "1" else "2"
    first17 = body + wrong
    return first17 + credit_code_check_char(first17)


def page(response) -> str:
    return response.get_data(as_text=True)


def post_login(client, email: str, password: str, **extra: str):
    return client.post("/login", data={"email": email, "password": password, **extra})


def events(session, action: str) -> list[AuditEvent]:
    return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def mail_jobs(session, func_name: str = "send_email") -> list[OutboxJob]:
    return list(
        session.scalars(select(OutboxJob).where(OutboxJob.func == func_name).order_by(OutboxJob.id))
    )


class IsolatedClient(FlaskClient):
    """A test client whose every request loads its user from its own cookie.

    The ``session`` fixture keeps one app context pushed for the whole test and Flask
    reuses it for each request, so ``g`` (where Flask-Login caches ``current_user``)
    would carry one client's user into another client's request."""

    def open(self, *args: Any, **kwargs: Any):
        if has_app_context():
            g.pop("_login_user", None)
        return super().open(*args, **kwargs)


@pytest.fixture
def client(app, session):
    app.test_client_class = IsolatedClient
    try:
        yield app.test_client()
    finally:
        app.test_client_class = None


@pytest.fixture
def make(session):
    """The shared factory, committing after each call: a refused request (>= 400) rolls
    the session back to its last commit, and the test's own rows must survive that."""
    factory = Factory(session)

    class Committing:
        def __getattr__(self, name: str):
            method = getattr(factory, name)

            def call(*args: Any, **kwargs: Any):
                result = method(*args, **kwargs)
                session.commit()
                return result

            return call

    return Committing()


@pytest.fixture(scope="module", autouse=True)
def _english_catalog(app):
    """English pages need this area's strings in the compiled catalog; Flask-Babel caches
    catalogs per process, so drop what an earlier test may have loaded."""
    from webapp.i18n import compile_catalog

    compile_catalog()
    with app.app_context():
        app.extensions["babel"].instance.domain_instance.cache.clear()


@pytest.fixture(autouse=True)
def _fresh_throttles(app):
    """The per-address throttle lives on the app object."""
    app.extensions.pop("shenbao_login_throttle", None)
    yield
    app.extensions.pop("shenbao_login_throttle", None)


# ---------------------------------------------------------------- registration


def test_registration_creates_organization_and_owner_and_logs_in(client, session):
    r = client.post("/register", data=registration())
    assert r.status_code == 302
    org = session.scalar(select(Organization).where(Organization.credit_code == GOOD_CODE))
    assert org is not None
    assert (org.name, org.org_type, org.district) == (
        "长春新材料科技有限公司",
        "enterprise",
        "朝阳区",
    )
    assert org.contact_phone == "13904310002"  # spaces dropped
    assert org.legal_representative == "张伟"
    user = session.scalar(select(User).where(User.email == "li.na@example.cn"))
    assert user.organization_id == org.id and user.is_org_owner
    assert [g.role for g in user.grants] == ["applicant"]
    assert user.password_hash.startswith("$argon2id$")
    assert verify_password(user.password_hash, NEW_PASSWORD)
    assert client.get("/account").status_code == 200
    (ev,) = events(session, "user.register")
    assert ev.entity_type == "user" and ev.entity_id == user.id
    assert NEW_PASSWORD not in str(ev.data)


def test_registration_accepts_an_organization_code_mismatch_with_a_warning(client, session):
    code = code_with_bad_org_check()
    r = client.post("/register", data=registration(credit_code=code), follow_redirects=True)
    assert r.status_code == 200
    assert "组织机构代码校验位" in page(r)
    assert session.scalar(select(Organization.id).where(Organization.credit_code == code))


def test_registration_normalizes_a_lower_case_full_width_credit_code(client, session):
    typed = "９１３５０２００７７６０４９６５３a"
    assert client.post("/register", data=registration(credit_code=typed)).status_code == 302
    assert session.scalar(select(Organization.id).where(Organization.credit_code == GOOD_CODE))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"credit_code": GOOD_CODE[:-1] + "B"}, "第18位是由前17位计算出的校验码"),
        ({"credit_code": "91350200776049653"}, "统一社会信用代码为18位"),
        ({"credit_code": "9135O200776049653A"}, "统一社会信用代码为18位"),
        ({"password": "short1", "password_confirm": "short1"}, "密码至少10位"),
        ({"password": "onlyletterslong", "password_confirm": "onlyletterslong"}, "字母和数字"),
        ({"password_confirm": NEW_PASSWORD + "x"}, "两次输入的密码不一致"),
        ({"mobile": "1234567"}, "11位中国大陆手机号码"),
        ({"mobile": "12904310001"}, "11位中国大陆手机号码"),
        ({"email": "not-an-email"}, "有效的邮箱地址"),
        ({"org_name": ""}, "请填写此项"),
        ({"legal_representative": "  "}, "请填写此项"),
        ({"district": ""}, "请选择一项"),
        ({"org_type": ""}, "请选择一项"),
    ],
)
def test_registration_refusals_keep_what_was_typed(client, session, changes, message):
    before = session.scalar(select(func.count(Organization.id)))
    r = client.post("/register", data=registration(**changes))
    assert r.status_code == 422
    html = page(r)
    assert message in html
    assert 'aria-invalid="true"' in html and "invalid-feedback" in html
    assert "前进大街100号" in html  # nothing typed is lost
    assert session.scalar(select(func.count(Organization.id))) == before
    assert client.get("/account").status_code == 302  # not logged in


def test_registration_refuses_a_credit_code_already_registered(client, make, session):
    org = make.org()
    r = client.post("/register", data=registration(credit_code=org.credit_code))
    assert r.status_code == 422
    assert "该统一社会信用代码已注册" in page(r)


def test_registration_refuses_an_email_already_used(client, make):
    user = make.applicant()
    r = client.post("/register", data=registration(email=user.email.upper()))
    assert r.status_code == 422
    assert "该邮箱已注册" in page(r)


def test_registration_messages_in_english(client):
    r = client.post("/register?lang=en", data=registration(credit_code=GOOD_CODE[:-1] + "B"))
    assert r.status_code == 422
    assert "does not pass its check" in page(r)
    r = client.post("/register?lang=en", data=registration(password="abc", password_confirm="abc"))
    assert "At least 10 characters." in page(r)


def test_registration_form_lists_the_districts(client):
    html = page(client.get("/register"))
    for district in ("南关区", "长春新区", "净月区", "公主岭市"):
        assert f'value="{district}"' in html
    assert 'value="patent_agency"' in html and 'value="research_institute"' in html


# ---------------------------------------------------------------- login and logout


def test_login_and_logout(client, make, session):
    user = make.applicant()
    assert client.get("/login").status_code == 200
    r = post_login(client, user.email, PASSWORD)
    assert r.status_code == 302
    assert client.get("/account").status_code == 200
    (ev,) = events(session, "user.login")
    assert ev.entity_id == user.id and ev.actor_id == user.id
    assert client.get("/logout").status_code == 405  # POST only
    r = client.post("/logout")
    assert r.status_code == 302
    assert client.get("/account").status_code == 302


def test_login_email_is_case_insensitive(client, make):
    user = make.applicant()
    assert post_login(client, f"  {user.email.upper()} ", PASSWORD).status_code == 302


def test_login_same_message_for_unknown_email_and_wrong_password(client, make, session):
    user = make.applicant()
    unknown = post_login(client, "nobody@nowhere.cn", PASSWORD)
    wrong = post_login(client, user.email, "Wrong2026password")
    assert unknown.status_code == wrong.status_code == 401
    pattern = re.compile(r'<div class="alert alert-danger" role="alert">(.*?)</div>')
    assert pattern.findall(page(unknown)) == pattern.findall(page(wrong)) == ["邮箱或密码不正确。"]
    failures = events(session, "user.login_failed")
    assert [e.data["reason"] for e in failures] == ["unknown_email", "bad_password"]
    assert all("nobody@nowhere.cn" not in str(e.data) for e in failures)


def test_login_with_missing_fields_is_422(client):
    r = client.post("/login", data={"email": "", "password": ""})
    assert r.status_code == 422
    assert "请填写此项" in page(r)


def test_lockout_after_five_failures_and_unlock_after_the_period(client, make, session):
    user = make.applicant()
    for _ in range(MAX_FAILED_LOGINS - 1):
        assert "邮箱或密码不正确" in page(post_login(client, user.email, "Wrong2026password"))
    r = post_login(client, user.email, "Wrong2026password")
    assert "账户已锁定至" in page(r)
    session.refresh(user)
    assert user.failed_logins == MAX_FAILED_LOGINS
    assert user.locked_until > utcnow() + timedelta(minutes=14)
    assert len(events(session, "user.lock")) == 1
    # Locked: even the right password does not get in.
    r = post_login(client, user.email, PASSWORD)
    assert "账户已锁定至" in page(r)
    assert client.get("/account").status_code == 302
    # The period has passed.
    user.locked_until = utcnow() - timedelta(seconds=1)
    session.commit()
    assert post_login(client, user.email, PASSWORD).status_code == 302
    session.refresh(user)
    assert user.failed_logins == 0 and user.locked_until is None


def test_failures_after_an_expired_lock_count_afresh(client, make, session):
    user = make.applicant()
    user.failed_logins = MAX_FAILED_LOGINS
    user.locked_until = utcnow() - timedelta(minutes=1)
    session.commit()
    assert "邮箱或密码不正确" in page(post_login(client, user.email, "Wrong2026password"))
    session.refresh(user)
    assert user.failed_logins == 1 and user.locked_until is None


def test_inactive_user_cannot_log_in(client, make, session):
    user = make.applicant()
    user.active = False
    session.commit()
    r = post_login(client, user.email, PASSWORD)
    assert r.status_code == 403
    assert "已停用" in page(r)
    assert client.get("/account").status_code == 302


def test_failed_attempts_per_address_are_limited(app, client, make):
    user = make.applicant()
    old = app.config.get("LOGIN_IP_FAILURES_PER_MINUTE")
    app.config["LOGIN_IP_FAILURES_PER_MINUTE"] = 3
    try:
        for n in range(3):
            post_login(client, f"ghost{n}@nowhere.cn", "Wrong2026password")
        r = post_login(client, user.email, PASSWORD)
        assert r.status_code == 429
        assert "请1分钟后再试" in page(r)
        assert client.get("/account").status_code == 302
    finally:
        if old is None:
            app.config.pop("LOGIN_IP_FAILURES_PER_MINUTE", None)
        else:
            app.config["LOGIN_IP_FAILURES_PER_MINUTE"] = old


def test_successful_logins_do_not_use_up_the_address_limit(app, client, make):
    user = make.applicant()
    for _ in range(15):
        assert post_login(client, user.email, PASSWORD).status_code == 302
        client.post("/logout")


@pytest.mark.parametrize(
    ("next_url", "expected"),
    [("/account", "/account"), ("//evil.example/x", None), ("https://evil.example/", None)],
)
def test_login_redirects_only_to_local_pages(client, make, next_url, expected):
    user = make.applicant()
    r = post_login(client, user.email, PASSWORD, next=next_url)
    assert r.status_code == 302
    location = r.headers["Location"]
    assert "evil" not in location
    if expected:
        assert location == expected


def test_old_password_hash_is_upgraded_on_login(client, make, session):
    user = make.applicant()
    user.password_hash = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    session.commit()
    assert needs_rehash(user.password_hash)
    assert post_login(client, user.email, PASSWORD).status_code == 302
    session.refresh(user)
    assert not needs_rehash(user.password_hash)
    assert verify_password(user.password_hash, PASSWORD)


def test_login_page_matches_the_browser_helper_and_speaks_english(client):
    html = page(client.get("/login?lang=en"))
    assert 'name="email"' in html and 'name="password"' in html
    assert 'type="submit"' in html
    assert "Forgot your password?" in html


# ---------------------------------------------------------------- own account


def test_password_change_ends_other_sessions(app, client, make, session):
    user = make.applicant()
    other = app.test_client()
    login(client, user)
    login(other, user)
    assert other.get("/account").status_code == 200
    r = client.post(
        "/account/password",
        data={
            "current_password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
        },
    )
    assert r.status_code == 302
    assert client.get("/account").status_code == 200  # this session goes on
    r = other.get("/account")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    session.refresh(user)
    assert verify_password(user.password_hash, NEW_PASSWORD)
    assert len(events(session, "user.password_change")) == 1


@pytest.mark.parametrize(
    ("current", "new", "confirm", "message"),
    [
        ("Wrong2026password", NEW_PASSWORD, NEW_PASSWORD, "当前密码不正确"),
        (PASSWORD, "weak", "weak", "密码至少10位"),
        (PASSWORD, PASSWORD, PASSWORD, "新密码不能与当前密码相同"),
        (PASSWORD, NEW_PASSWORD, "different2026pw", "两次输入的密码不一致"),
    ],
)
def test_password_change_refusals(client, make, session, current, new, confirm, message):
    user = make.applicant()
    login(client, user)
    r = client.post(
        "/account/password",
        data={"current_password": current, "new_password": new, "new_password_confirm": confirm},
    )
    assert r.status_code == 422
    assert message in page(r)
    session.refresh(user)
    assert verify_password(user.password_hash, PASSWORD)
    assert user.session_epoch == 0


def test_profile_name_language_and_email_preferences(client, make, session):
    user = make.applicant()
    login(client, user)
    page_html = page(client.get("/account"))
    assert 'name="email_state_change"' in page_html
    r = client.post("/account/profile", data={"name": "王小明", "locale": "en"})
    assert r.status_code == 302
    session.refresh(user)
    assert user.name == "王小明" and user.locale == "en"
    assert user.email_preferences == {"state_change": False}
    assert "My account" in page(client.get("/account"))  # the language follows
    r = client.post("/account/profile", data={"name": "", "locale": "zh"})
    assert r.status_code == 422


def test_account_pages_need_login(client):
    for url in ("/account", "/account/2fa", "/organization"):
        r = client.get(url)
        assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    assert client.post("/account/password").status_code == 302
    assert client.post("/organization/invite").status_code == 302


# ---------------------------------------------------------------- password reset


def reset_link(session, user: User) -> str:
    (job,) = [j for j in mail_jobs(session) if j.args["user_id"] == user.id]
    assert job.queue == "notifications"
    link = job.args["link"]
    assert link.startswith("/password/reset/") and link in job.args["body"]
    return link


def test_password_reset_end_to_end(client, make, session):
    user = make.applicant()
    r = client.post("/password/forgot", data={"email": user.email})
    assert r.status_code == 302
    link = reset_link(session, user)
    assert client.get(link).status_code == 200
    r = client.post(link, data={"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    assert r.status_code == 302 and r.headers["Location"] == "/login"
    assert post_login(client, user.email, PASSWORD).status_code == 401  # old one refused
    assert post_login(client, user.email, NEW_PASSWORD).status_code == 302
    token = link.rsplit("/", 1)[1]
    for action in ("user.password_reset_request", "user.password_reset"):
        (ev,) = events(session, action)
        assert token not in str(ev.data) and NEW_PASSWORD not in str(ev.data)


def test_password_reset_also_lifts_a_lockout(client, make, session):
    user = make.applicant()
    user.failed_logins = MAX_FAILED_LOGINS
    user.locked_until = utcnow() + timedelta(minutes=10)
    session.commit()
    client.post("/password/forgot", data={"email": user.email})
    link = reset_link(session, user)
    client.post(link, data={"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD})
    assert post_login(client, user.email, NEW_PASSWORD).status_code == 302


def test_forgot_password_answers_the_same_for_unknown_email(client, make, session):
    user = make.applicant()
    known = client.post("/password/forgot", data={"email": user.email}, follow_redirects=True)
    unknown = client.post(
        "/password/forgot", data={"email": "nobody@nowhere.cn"}, follow_redirects=True
    )
    assert known.status_code == unknown.status_code == 200
    assert page(known) == page(unknown)
    assert len(mail_jobs(session)) == 1


def test_reset_link_works_once(client, make, session):
    user = make.applicant()
    client.post("/password/forgot", data={"email": user.email})
    link = reset_link(session, user)
    data = {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}
    assert client.post(link, data=data).status_code == 302
    r = client.get(link)
    assert r.status_code == 400 and "已使用" in page(r)
    assert client.post(link, data={**data, "password": "Another2026pw"}).status_code == 400


def test_reset_link_expires_after_an_hour(app, client, make, monkeypatch):
    user = make.applicant()
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 3700)
    token = make_reset_token(user, app.config["SECRET_KEY"])
    monkeypatch.undo()
    r = client.get(f"/password/reset/{token}")
    assert r.status_code == 400 and "已过期" in page(r)
    fresh = make_reset_token(user, app.config["SECRET_KEY"])
    assert client.get(f"/password/reset/{fresh}").status_code == 200


def test_reset_link_tampered_or_weak_password(client, make, session):
    user = make.applicant()
    client.post("/password/forgot", data={"email": user.email})
    link = reset_link(session, user)
    assert client.get(link[:-2] + "xx").status_code == 400
    r = client.post(link, data={"password": "abc", "password_confirm": "abc"})
    assert r.status_code == 422 and "密码至少10位" in page(r)


# ---------------------------------------------------------------- organization and invitations


def test_owner_invites_a_colleague_who_joins(app, client, make, session):
    owner = make.applicant()
    login(client, owner)
    r = client.post("/organization/invite", data={"email": "Colleague@Test.cn"})
    assert r.status_code == 302
    (job,) = mail_jobs(session, "send_address_email")
    assert job.args["to"] == "colleague@test.cn"
    link = job.args["link"]
    assert link.startswith("/invite/") and link in job.args["body"]
    (ev,) = events(session, "user.invite")
    assert ev.entity_type == "user" and link.rsplit("/", 1)[1] not in str(ev.data)

    newcomer = app.test_client()
    r = newcomer.get(link)
    assert r.status_code == 200 and "colleague@test.cn" in page(r)
    r = newcomer.post(link, data={"name": "赵六", "password": "x", "password_confirm": "x"})
    assert r.status_code == 422 and "赵六" in page(r)
    r = newcomer.post(
        link, data={"name": "赵六", "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}
    )
    assert r.status_code == 302
    user = session.scalar(select(User).where(User.email == "colleague@test.cn"))
    assert user.organization_id == owner.organization_id and not user.is_org_owner
    assert [g.role for g in user.grants] == ["applicant"]
    assert newcomer.get("/account").status_code == 200
    assert len(events(session, "user.invitation_accept")) == 1
    # The link is used up.
    r = app.test_client().get(link)
    assert r.status_code == 400 and "已被使用" in page(r)
    # The owner sees the new member.
    assert "赵六" in page(client.get("/organization"))


def test_non_owner_cannot_invite_or_change_the_organization(client, make, session):
    owner = make.applicant()
    member = make.user("applicant", org=owner.organization)
    member.is_org_owner = False
    session.commit()
    login(client, member)
    r = client.get("/organization")
    assert r.status_code == 200
    assert "只有单位账户管理人可以修改" in page(r)
    assert 'action="/organization/invite"' not in page(r)
    assert client.post("/organization/invite", data={"email": "x@test.cn"}).status_code == 403
    assert client.post("/organization", data={"name": "改名"}).status_code == 403
    assert mail_jobs(session, "send_address_email") == []


def test_inviting_an_existing_account_is_refused(client, make, session):
    owner = make.applicant()
    someone = make.applicant()
    login(client, owner)
    r = client.post("/organization/invite", data={"email": someone.email})
    assert r.status_code == 422 and "该邮箱已有账户" in page(r)
    r = client.post("/organization/invite", data={"email": "bad"})
    assert r.status_code == 422


def test_invitation_links_are_checked(client, make, session, app):
    assert client.get("/invite/garbage").status_code == 400
    owner = make.applicant()
    login(client, owner)
    client.post("/organization/invite", data={"email": "late@test.cn"})
    link = mail_jobs(session, "send_address_email")[0].args["link"]
    owner.is_org_owner = False  # the inviter is no longer the owner
    session.commit()
    assert app.test_client().get(link).status_code == 400


def test_user_without_organization_has_no_organization_page(client, make):
    login(client, make.user("city_officer"))
    assert client.get("/organization").status_code == 404


def test_owner_updates_the_organization_and_its_bank_account(client, make, session):
    owner = make.applicant()
    org = owner.organization
    login(client, owner)
    data = {
        "name": org.name,
        "district": "净月区",
        "address": "长春市净月区新址1号",
        "legal_representative": "新法人",
        "contact_name": "新联系人",
        "contact_phone": "13904319999",
        "contact_email": "contact@test.cn",
        "bank_name": "中国银行长春分行",
        "bank_account_name": org.name,
        "bank_account_no": "6222 0000 1111 2222",
    }
    r = client.post("/organization", data=data)
    assert r.status_code == 302
    session.refresh(org)
    assert org.district == "净月区" and org.bank_account_no == "6222000011112222"
    (ev,) = events(session, "organization.update")
    assert "bank_account_no" in ev.data["changed"]
    r = client.post("/organization", data={**data, "bank_account_no": "12ab"})
    assert r.status_code == 422 and "8–30位数字" in page(r)
    r = client.post("/organization", data={**data, "district": "外省区"})
    assert r.status_code == 422


# ---------------------------------------------------------------- TOTP


def enrol(client, session, user: User) -> str:
    """Enrol TOTP through the pages; return the secret."""
    r = client.get("/account/2fa")
    assert r.status_code == 200
    html = page(r)
    assert 'src="data:image/svg+xml' in html
    with client.session_transaction() as sess:
        secret = sess["totp_setup_secret"]
    assert " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)) in html
    r = client.post("/account/2fa/confirm", data={"code": totp_now(secret)})
    assert r.status_code == 302
    session.refresh(user)
    assert user.totp_secret == secret
    return secret


def wrong_code(secret: str) -> str:
    now = time.time()
    valid = {totp_now(secret, now + d) for d in (-30, 0, 30)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in valid)


def test_totp_enrolment_then_second_step_at_login(client, make, session):
    user = make.applicant()
    login(client, user)
    client.get("/account/2fa")
    with client.session_transaction() as sess:
        secret = sess["totp_setup_secret"]
    r = client.post("/account/2fa/confirm", data={"code": wrong_code(secret)})
    assert r.status_code == 422 and "验证码不正确" in page(r)
    secret = enrol(client, session, user)
    assert len(events(session, "user.totp_enable")) == 1
    client.post("/logout")

    r = post_login(client, user.email, PASSWORD)
    assert r.status_code == 302 and r.headers["Location"] == "/login/2fa"
    assert client.get("/account").status_code == 302  # not logged in yet
    r = client.post("/login/2fa", data={"code": wrong_code(secret)})
    assert r.status_code == 401 and "验证码不正确" in page(r)
    assert client.get("/account").status_code == 302
    # The enrolment used the current code; the next period's is also accepted (drift).
    r = client.post("/login/2fa", data={"code": totp_now(secret, time.time() + 30)})
    assert r.status_code == 302
    assert client.get("/account").status_code == 200
    with client.session_transaction() as sess:
        assert sess["mfa_ok"] is True
    (ev,) = [e for e in events(session, "user.login") if e.data["second_factor"]]
    assert ev.entity_id == user.id


def test_a_totp_code_cannot_be_replayed(client, make, session):
    user = make.applicant()
    login(client, user)
    secret = enrol(client, session, user)
    client.post("/logout")
    post_login(client, user.email, PASSWORD)
    code = totp_now(secret, time.time() + 30)
    assert client.post("/login/2fa", data={"code": code}).status_code == 302
    client.post("/logout")
    post_login(client, user.email, PASSWORD)
    r = client.post("/login/2fa", data={"code": code})
    assert r.status_code == 401 and "已使用" in page(r)


def test_a_totp_code_is_accepted_once_across_hosts(app, client, make, session):
    """Two web hosts share nothing but the database: a code one accepted, the other
    refuses (the used step is a column, not process memory)."""
    from webapp import create_app

    user = make.applicant()
    login(client, user)
    secret = enrol(client, session, user)
    client.post("/logout")
    other_host = create_app(dict(app.config))
    other = other_host.test_client()
    code = totp_now(secret, time.time() + 30)
    post_login(client, user.email, PASSWORD)
    assert client.post("/login/2fa", data={"code": code}).status_code == 302
    r = post_login(other, user.email, PASSWORD)
    assert r.status_code == 302 and r.headers["Location"] == "/login/2fa"
    r = other.post("/login/2fa", data={"code": code})
    assert r.status_code == 401 and "已使用" in page(r)


def test_wrong_totp_codes_lock_the_account(client, make, session):
    user = make.applicant()
    user.totp_secret = new_totp_secret()
    session.commit()
    post_login(client, user.email, PASSWORD)
    for _ in range(MAX_FAILED_LOGINS):
        r = client.post("/login/2fa", data={"code": wrong_code(user.totp_secret)})
    assert "账户已锁定至" in page(r)
    session.refresh(user)
    assert user.locked_until is not None


def test_second_step_without_password_step_goes_to_login(client):
    r = client.get("/login/2fa")
    assert r.status_code == 302 and r.headers["Location"] == "/login"


def test_enrolled_user_without_passed_second_factor_is_sent_to_it(client, make, session):
    user = make.applicant()
    user.totp_secret = new_totp_secret()
    session.commit()
    login(client, user)
    with client.session_transaction() as sess:
        sess["mfa_ok"] = False
    r = client.get("/account")
    assert r.status_code == 302 and r.headers["Location"] == "/login/2fa"
    assert client.post("/login/2fa", data={"code": totp_now(user.totp_secret)}).status_code == 302
    assert client.get("/account").status_code == 200


def test_totp_can_be_turned_off_with_password_and_code(client, make, session):
    user = make.applicant()
    login(client, user)
    secret = enrol(client, session, user)
    later = totp_now(secret, time.time() + 30)
    r = client.post("/account/2fa/disable", data={"password": "Wrong2026password", "code": later})
    assert r.status_code == 422
    r = client.post("/account/2fa/disable", data={"password": PASSWORD, "code": later})
    assert r.status_code == 302
    session.refresh(user)
    assert user.totp_secret is None
    assert len(events(session, "user.totp_disable")) == 1


# ---------------------------------------------------------------- staff must use TOTP


@pytest.fixture(scope="module")
def strict_app(tmp_path_factory):
    """An app with STAFF_2FA_REQUIRED on its own SQLite file, with two probe pages: one
    behind ``login_required_mfa`` and one behind plain ``login_required`` (the backstop)."""
    from flask_migrate import upgrade

    from webapp.access import login_required_mfa

    base = tmp_path_factory.mktemp("strict")
    application = make_app(
        f"sqlite:///{base / 'strict.db'}", str(base / "storage"), STAFF_2FA_REQUIRED=True
    )
    probe = Blueprint("probe", __name__)
    probe.add_url_rule("/probe/mfa", "mfa", login_required_mfa(lambda: "staff page"))
    probe.add_url_rule("/probe/plain", "plain", login_required(lambda: "plain page"))
    application.register_blueprint(probe)
    with application.app_context():
        upgrade()
        pw = hash_password(PASSWORD)
        staff = User(email="officer@strict.cn", name="officer", password_hash=pw)
        staff.grants.append(RoleGrant(role="city_officer"))
        org = Organization(
            name="严格单位", credit_code=GOOD_CODE, org_type="enterprise", district="朝阳区"
        )
        db.session.add_all([staff, org])
        db.session.flush()
        applicant = User(
            email="applicant@strict.cn",
            name="applicant",
            password_hash=pw,
            organization_id=org.id,
            is_org_owner=True,
        )
        applicant.grants.append(RoleGrant(role="applicant"))
        db.session.add(applicant)
        outbox.commit(db.session)
        db.session.remove()
    return application


def test_staff_must_enrol_totp_when_required(strict_app):
    client = strict_app.test_client()
    assert post_login(client, "officer@strict.cn", PASSWORD).status_code == 302
    for url in ("/probe/mfa", "/probe/plain", "/account"):
        r = client.get(url)
        assert r.status_code == 302 and r.headers["Location"] == "/account/2fa", url
    r = client.get("/account/2fa")
    assert r.status_code == 200 and "工作人员账户须先启用两步验证" in page(r)
    with client.session_transaction() as sess:
        secret = sess["totp_setup_secret"]
    assert client.post("/account/2fa/confirm", data={"code": totp_now(secret)}).status_code == 302
    assert client.get("/probe/mfa").get_data(as_text=True) == "staff page"
    assert client.get("/probe/plain").status_code == 200
    # Staff cannot turn it off while it is required.
    later = totp_now(secret, time.time() + 30)
    r = client.post("/account/2fa/disable", data={"password": PASSWORD, "code": later})
    assert r.status_code == 403
    # Next login: password, then the code.
    client.post("/logout")
    r = post_login(client, "officer@strict.cn", PASSWORD)
    assert r.headers["Location"] == "/login/2fa"
    assert client.get("/probe/plain").status_code == 302
    # A code of a step before the one used at enrolment is refused (RFC 6238 §5.2), the
    # next step's is accepted.
    r = client.post("/login/2fa", data={"code": totp_now(secret, time.time() - 30)})
    assert r.status_code == 401
    r = client.post("/login/2fa", data={"code": totp_now(secret, time.time() + 30)})
    assert r.status_code == 302
    assert client.get("/probe/mfa").status_code == 200


def test_applicants_are_not_forced_to_enrol(strict_app):
    client = strict_app.test_client()
    assert post_login(client, "applicant@strict.cn", PASSWORD).status_code == 302
    assert client.get("/probe/mfa").status_code == 200
    assert client.get("/account").status_code == 200


# ---------------------------------------------------------------- CSRF


@pytest.fixture(scope="module")
def csrf_app(tmp_path_factory):
    from flask_migrate import upgrade

    base = tmp_path_factory.mktemp("csrf")
    application = make_app(
        f"sqlite:///{base / 'csrf.db'}", str(base / "storage"), WTF_CSRF_ENABLED=True
    )
    with application.app_context():
        upgrade()
        user = User(email="csrf@test.cn", name="csrf", password_hash=hash_password(PASSWORD))
        user.grants.append(RoleGrant(role="city_officer"))
        db.session.add(user)
        outbox.commit(db.session)
        db.session.remove()
    return application


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html
    )
    assert match, "no CSRF token in the page"
    return match.group(1)


def test_csrf_is_enforced_on_login_and_logout(csrf_app):
    client = csrf_app.test_client()
    credentials = {"email": "csrf@test.cn", "password": PASSWORD}
    assert client.post("/login", data=credentials).status_code == 400
    token = csrf_token(page(client.get("/login")))
    r = client.post("/login", data={**credentials, "csrf_token": token})
    assert r.status_code == 302
    assert client.post("/logout").status_code == 400
    assert client.get("/account").status_code == 200  # still logged in
    token = csrf_token(page(client.get("/account")))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/account").status_code == 302


# ---------------------------------------------------------------- building blocks


@pytest.mark.parametrize(
    ("at", "code"), [(59, "287082"), (1111111109, "081804"), (1234567890, "005924")]
)
def test_totp_matches_the_rfc_6238_test_vectors(at, code):
    secret = base64.b32encode(b"12345678901234567890").decode()
    assert totp_now(secret, at) == code
    assert totp_matching_step(secret, code, at + 30) == at // 30  # one period of drift
    assert totp_matching_step(secret, code, at + 90) is None


def test_provisioning_uri_for_authenticator_apps():
    uri = provisioning_uri("JBSWY3DPEHPK3PXP", "wang@test.cn")
    assert uri.startswith("otpauth://totp/Shenbao%3Awang%40test.cn?")
    assert "secret=JBSWY3DPEHPK3PXP" in uri and "issuer=Shenbao" in uri


def test_districts_are_configurable(app):
    from webapp.districts import district_choices, district_label

    with app.app_context():
        assert ("高新区", "High-tech Industrial Development Zone") in district_choices("en")
        app.config["DISTRICTS"] = [("甲区", "District A")]
        try:
            assert district_choices("zh") == [("甲区", "甲区")]
            assert district_label("甲区", "en") == "District A"
        finally:
            del app.config["DISTRICTS"]


def test_control_characters_and_oversized_input_are_refused_cleanly(client, make):
    user = make.applicant()
    assert post_login(client, user.email + "\x00", PASSWORD).status_code == 302
    client.post("/logout")
    assert post_login(client, "a" * 5000 + "@x.cn", PASSWORD).status_code == 422
    r = client.post("/register", data=registration(org_name="名" * 500, address="\x00"))
    assert r.status_code == 422
    assert client.get("/password/reset/" + "x" * 3000).status_code == 400
    assert client.get("/invite/" + "%00" * 10).status_code == 400
