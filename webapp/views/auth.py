"""Accounts: log in (with a TOTP second step), log out, register an organization, reset
a forgotten password, the user's own account page, TOTP enrolment, the organization's
details and invitations.

A note on status codes: a failed login (wrong password, unknown e-mail, wrong code)
answers 401 with the form and an error; it sets ``g.commit_anyway`` so the
one-commit-per-request hook still commits the failure counter and its audit event (the
lockout depends on them). Invalid forms answer 422, too many failures from one address 429.
"""

from __future__ import annotations

import time
from datetime import timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from forms.auth import (
    ORG_TYPES,
    AcceptInvitationForm,
    ChangePasswordForm,
    ForgotPasswordForm,
    InviteForm,
    LoginForm,
    OrganizationForm,
    RegistrationForm,
    ResetPasswordForm,
    SecondFactorForm,
    TotpConfirmForm,
    TotpDisableForm,
    profile_form_class,
)
from workflow.models import User
from workflow.permissions import is_staff

from ..access import (
    address_blocked,
    client_address,
    enforce_mfa_backstop,
    login_required_mfa,
    new_totp_secret,
    note_failed_attempt,
    provisioning_uri,
    qr_data_uri,
)
from ..auth_ops import (
    NOTIFICATION_KINDS,
    AuthError,
    TokenInvalid,
    authenticate,
    authenticate_second_factor,
    change_password,
    disable_totp,
    enable_totp,
    load_reset_token,
    record_login,
    register_organization,
    request_password_reset,
    reset_password,
    update_profile,
)
from ..districts import district_label
from ..extensions import db
from ..hooks import lang
from ..org_ops import accept_invitation, invite_colleague, load_invitation, update_organization

bp = Blueprint("auth", __name__)
bp.before_app_request(enforce_mfa_backstop)

PENDING_SECONDS = 300  # the second step must follow the password within five minutes
CHINA_TIME = timezone(timedelta(hours=8))
ProfileForm = profile_form_class([kind for kind, _label in NOTIFICATION_KINDS])

# Where each kind of user lands after logging in: the first endpoint that exists.
HOME_ENDPOINTS = (
    ("workbench.queue", {"district_officer", "city_officer", "expert", "approver"}),
    ("finance.index", {"finance"}),
    ("admin.index", {"admin"}),
)


# ---------------------------------------------------------------- helpers


def _secret() -> str:
    return current_app.config["SECRET_KEY"]


def _safe_next(value: str | None) -> str | None:
    """Only a path on this site (no scheme, host or protocol-relative URL)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return None
    parts = urlsplit(value)
    return value if not parts.scheme and not parts.netloc else None


def _home(user: User) -> str:
    views = current_app.view_functions
    if user.organization_id and "portal.dashboard" in views:
        return url_for("portal.dashboard")
    roles = user.roles()
    for endpoint, wanted in HOME_ENDPOINTS:
        if endpoint in views and roles & wanted:
            return url_for(endpoint)
    return url_for("auth.account")


def _add_error(form: Any, field: str, message: str) -> None:
    target = form._fields.get(field)
    if target is None:
        flash(message, "error")
        return
    target.errors = [*list(target.errors), message]


def _clear_session() -> None:
    """Forget everything the session holds except the chosen language."""
    keep = session.get("lang")
    session.clear()
    if keep:
        session["lang"] = keep


def _start_session(user: User, *, second_factor: bool) -> None:
    """A fresh session for ``user``: nothing of the previous one survives but the
    language."""
    _clear_session()
    login_user(user)
    session["mfa_ok"] = second_factor


def _locked_message(user: User | None) -> str:
    until = user.locked_until if user is not None else None
    if until is None:
        return _("登录失败次数过多，账户已暂时锁定，请15分钟后再试，或通过“忘记密码”重设密码。")
    return _(
        "登录失败次数过多，账户已锁定至%(time)s（北京时间），请届时再试，或通过“忘记密码”重设密码。",
        time=until.astimezone(CHINA_TIME).strftime("%H:%M"),
    )


def _throttled(template: str, **context: Any):
    return render_template(
        template,
        error=_("该网络地址登录失败次数过多，请1分钟后再试。"),
        **context,
    ), 429


# ---------------------------------------------------------------- login and logout


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET" and current_user.is_authenticated:
        return redirect(_home(current_user))
    form = LoginForm(next=request.args.get("next", ""))
    if request.method == "GET":
        return render_template("auth/login.html", form=form)
    if address_blocked():
        return _throttled("auth/login.html", form=form)
    if not form.validate():
        return render_template("auth/login.html", form=form), 422
    result = authenticate(db.session, form.email.data, form.password.data, ip=client_address())
    user = result.user
    if result.outcome in ("bad_credentials", "locked"):
        note_failed_attempt()
        locked = result.outcome == "locked"
        error = _locked_message(user) if locked else _("邮箱或密码不正确。")
        g.commit_anyway = True  # keep the failure count and its audit event
        return render_template("auth/login.html", form=form, error=error), 401
    if result.outcome == "inactive" or user is None:
        error = _("该账户已停用，请联系系统管理员。")
        return render_template("auth/login.html", form=form, error=error), 403
    target = _safe_next(form.next.data)
    if result.outcome == "second_factor":
        _clear_session()
        session["mfa_pending"] = {
            "uid": user.id,
            "epoch": user.session_epoch,
            "at": time.time(),
            "next": target,
        }
        return redirect(url_for("auth.login_2fa"))
    _start_session(user, second_factor=False)
    record_login(db.session, user, ip=client_address(), second_factor=False)
    return redirect(target or _home(user))


def _pending_user() -> tuple[User | None, str | None]:
    """The user owing a second factor: a password-checked login in progress, or a
    logged-in user whose session has not passed it yet."""
    if current_user.is_authenticated:
        user = current_user._get_current_object()
        return (user if user.totp_secret and not session.get("mfa_ok") else None), None
    pending = session.get("mfa_pending")
    if not isinstance(pending, dict) or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        return None, None
    user = db.session.get(User, pending.get("uid"))
    if user is None or user.session_epoch != pending.get("epoch") or not user.totp_secret:
        return None, None
    return user, _safe_next(pending.get("next"))


@bp.route("/login/2fa", methods=["GET", "POST"])
def login_2fa():
    user, target = _pending_user()
    if user is None:
        if current_user.is_authenticated:
            return redirect(_home(current_user))
        session.pop("mfa_pending", None)
        flash(_("请先输入邮箱和密码登录。"), "info")
        return redirect(url_for("auth.login"))
    form = SecondFactorForm()
    if request.method == "GET":
        return render_template("auth/login_2fa.html", form=form)
    if address_blocked():
        return _throttled("auth/login_2fa.html", form=form)
    if not form.validate():
        return render_template("auth/login_2fa.html", form=form), 422
    result = authenticate_second_factor(db.session, user, form.code.data, ip=client_address())
    if result.outcome in ("bad_credentials", "locked"):
        note_failed_attempt()
        if result.outcome == "locked":
            session.pop("mfa_pending", None)
            error = _locked_message(user)
        else:
            error = _("验证码不正确或已使用，请输入验证器应用中当前显示的6位数字。")
        g.commit_anyway = True  # keep the failure count and its audit event
        return render_template("auth/login_2fa.html", form=form, error=error), 401
    if result.outcome != "ok":
        abort(403)
    _start_session(user, second_factor=True)
    record_login(db.session, user, ip=client_address(), second_factor=True)
    return redirect(target or _home(user))


@bp.post("/logout")
def logout():
    logout_user()
    _clear_session()
    flash(_("您已退出登录。"), "info")
    return redirect(url_for("public.index"))


# ---------------------------------------------------------------- registration


@bp.route("/register", methods=["GET", "POST"])
def register():
    if current_user.is_authenticated:
        flash(_("您已登录。如需为另一家单位注册，请先退出。"), "info")
        return redirect(_home(current_user))
    form = RegistrationForm()
    if request.method == "GET":
        return render_template("auth/register.html", form=form)
    if not form.validate():
        return render_template("auth/register.html", form=form), 422
    try:
        reg = register_organization(
            db.session,
            organization={
                "name": form.org_name.data,
                "credit_code": form.credit_code.data,
                "org_type": form.org_type.data,
                "district": form.district.data,
                "address": form.address.data,
                "legal_representative": form.legal_representative.data,
                "contact_name": form.contact_name.data,
                "contact_phone": form.mobile.data,
            },
            email=form.email.data,
            password=form.password.data,
        )
    except AuthError as exc:
        _add_error(form, "org_name" if exc.field == "name" else exc.field, exc.message(lang()))
        return render_template("auth/register.html", form=form), 422
    _start_session(reg.user, second_factor=False)
    flash(_("注册成功，欢迎使用申报系统。"), "success")
    for warning in reg.warnings:
        flash(warning["en"] if lang() == "en" else warning["zh"], "warning")
    return redirect(_home(reg.user))


# ---------------------------------------------------------------- password reset


@bp.route("/password/forgot", methods=["GET", "POST"])
def password_forgot():
    form = ForgotPasswordForm()
    if request.method == "GET":
        return render_template("auth/forgot.html", form=form)
    if not form.validate():
        return render_template("auth/forgot.html", form=form), 422
    request_password_reset(db.session, form.email.data, secret_key=_secret())
    # The same answer whether or not the address has an account.
    flash(
        _("如果该邮箱已注册，我们已向它发送了重设密码的链接，链接1小时内有效，只能使用一次。"),
        "info",
    )
    return redirect(url_for("auth.login"))


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def password_reset(token: str):
    try:
        user = load_reset_token(db.session, token, secret_key=_secret())
    except TokenInvalid as exc:
        return render_template("auth/link_invalid.html", message=exc.message(lang())), 400
    form = ResetPasswordForm(account_email=user.email)
    if request.method == "GET":
        return render_template("auth/reset.html", form=form)
    if not form.validate():
        return render_template("auth/reset.html", form=form), 422
    try:
        reset_password(db.session, token, form.password.data, secret_key=_secret())
    except AuthError as exc:
        _add_error(form, exc.field, exc.message(lang()))
        return render_template("auth/reset.html", form=form), 422
    logout_user()
    _clear_session()
    flash(_("密码已重设，请用新密码登录。"), "success")
    return redirect(url_for("auth.login"))


# ---------------------------------------------------------------- own account


def _profile_form(user: User):
    prefs = user.email_preferences or {}
    data = {"name": user.name, "locale": user.locale}
    data.update({f"email_{k}": prefs.get(k, True) for k, _label in NOTIFICATION_KINDS})
    return ProfileForm(data=data)


def _account_page(
    user: User, *, profile: Any = None, password: Any = None, status: int = 200
) -> tuple[str, int]:
    return render_template(
        "auth/account.html",
        user=user,
        profile=profile or _profile_form(user),
        password_form=password or ChangePasswordForm(account_email=user.email),
        kinds=NOTIFICATION_KINDS,
        staff_2fa_required=_staff_2fa_required(user),
    ), status


def _staff_2fa_required(user: User) -> bool:
    return bool(current_app.config.get("STAFF_2FA_REQUIRED")) and is_staff(user)


@bp.get("/account")
@login_required_mfa
def account():
    return _account_page(current_user._get_current_object())


@bp.post("/account/profile")
@login_required_mfa
def account_profile():
    user = current_user._get_current_object()
    form = ProfileForm()
    if not form.validate():
        return _account_page(user, profile=form, status=422)
    update_profile(
        db.session,
        user,
        name=form.name.data,
        locale=form.locale.data,
        email_preferences={k: bool(form[f"email_{k}"].data) for k, _label in NOTIFICATION_KINDS},
    )
    session["lang"] = user.locale
    flash(_("个人信息已保存。"), "success")
    return redirect(url_for("auth.account"))


@bp.post("/account/password")
@login_required_mfa
def account_password():
    user = current_user._get_current_object()
    form = ChangePasswordForm(account_email=user.email)
    if not form.validate():
        return _account_page(user, password=form, status=422)
    try:
        change_password(
            db.session, user, current=form.current_password.data, new=form.new_password.data
        )
    except AuthError as exc:
        _add_error(form, exc.field, exc.message(lang()))
        return _account_page(user, password=form, status=422)
    # The epoch moved: every other session is gone; this one continues with the new id.
    login_user(user)
    flash(_("密码已修改。其他设备上的登录已失效。"), "success")
    return redirect(url_for("auth.account"))


# ---------------------------------------------------------------- TOTP enrolment


def _totp_page(user: User, form: Any = None, disable_form: Any = None, status: int = 200):
    context: dict[str, Any] = {
        "user": user,
        "required": _staff_2fa_required(user),
        "form": form or TotpConfirmForm(),
        "disable_form": disable_form or TotpDisableForm(),
    }
    if not user.totp_secret:
        secret = session.get("totp_setup_secret")
        if not secret:
            secret = new_totp_secret()
            session["totp_setup_secret"] = secret
        uri = provisioning_uri(secret, user.email)
        grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
        context.update(secret=grouped, qr=qr_data_uri(uri))
    return render_template("auth/totp.html", **context), status


@bp.get("/account/2fa")
@login_required
def totp_setup():
    user = current_user._get_current_object()
    if user.totp_secret and not session.get("mfa_ok"):
        return redirect(url_for("auth.login_2fa"))
    return _totp_page(user)


@bp.post("/account/2fa/confirm")
@login_required
def totp_confirm():
    user = current_user._get_current_object()
    if user.totp_secret:
        return redirect(url_for("auth.totp_setup"))
    form = TotpConfirmForm()
    if not form.validate():
        return _totp_page(user, form=form, status=422)
    try:
        enable_totp(
            db.session, user, secret=session.get("totp_setup_secret", ""), code=form.code.data
        )
    except AuthError as exc:
        _add_error(form, exc.field, exc.message(lang()))
        return _totp_page(user, form=form, status=422)
    session.pop("totp_setup_secret", None)
    session["mfa_ok"] = True
    flash(_("两步验证已启用。以后登录时需要输入验证器应用中的验证码。"), "success")
    return redirect(url_for("auth.totp_setup"))


@bp.post("/account/2fa/disable")
@login_required_mfa
def totp_disable():
    user = current_user._get_current_object()
    if _staff_2fa_required(user):
        abort(403)
    form = TotpDisableForm()
    if not form.validate():
        return _totp_page(user, disable_form=form, status=422)
    try:
        disable_totp(
            db.session,
            user,
            password=form.password.data,
            code=form.code.data,
            required=_staff_2fa_required(user),
        )
    except AuthError as exc:
        _add_error(form, exc.field, exc.message(lang()))
        return _totp_page(user, disable_form=form, status=422)
    session["mfa_ok"] = False
    flash(_("两步验证已关闭。"), "info")
    return redirect(url_for("auth.totp_setup"))


# ---------------------------------------------------------------- organization


def _own_organization():
    org = current_user.organization
    if org is None:
        abort(404)
    return org


def _organization_page(org: Any, *, form: Any = None, invite: Any = None, status: int = 200):
    owner = bool(current_user.is_org_owner)
    return render_template(
        "auth/organization.html",
        org=org,
        owner=owner,
        form=form or (OrganizationForm(obj=org) if owner else None),
        invite_form=invite or (InviteForm() if owner else None),
        members=sorted(org.users, key=lambda u: (not u.is_org_owner, u.id)),
        org_type_label=dict(ORG_TYPES).get(org.org_type, org.org_type),
        district_label=district_label(org.district, lang()),
    ), status


@bp.route("/organization", methods=["GET", "POST"])
@login_required_mfa
def organization():
    org = _own_organization()
    if request.method == "GET":
        return _organization_page(org)
    if not current_user.is_org_owner:
        abort(403)
    form = OrganizationForm()
    if not form.validate():
        return _organization_page(org, form=form, status=422)
    update_organization(
        db.session,
        current_user._get_current_object(),
        {name: form[name].data for name in form.data if name != "csrf_token"},
    )
    flash(_("单位信息已保存。"), "success")
    return redirect(url_for("auth.organization"))


@bp.post("/organization/invite")
@login_required_mfa
def organization_invite():
    org = _own_organization()
    if not current_user.is_org_owner:
        abort(403)
    form = InviteForm()
    if not form.validate():
        return _organization_page(org, invite=form, status=422)
    try:
        invite_colleague(
            db.session, current_user._get_current_object(), form.email.data, secret_key=_secret()
        )
    except AuthError as exc:
        _add_error(form, exc.field, exc.message(lang()))
        return _organization_page(org, invite=form, status=422)
    flash(_("邀请邮件已发送至 %(email)s，链接7天内有效。", email=form.email.data), "success")
    return redirect(url_for("auth.organization"))


@bp.route("/invite/<token>", methods=["GET", "POST"])
def invite_accept(token: str):
    try:
        invitation = load_invitation(db.session, token, secret_key=_secret())
    except TokenInvalid as exc:
        return render_template("auth/link_invalid.html", message=exc.message(lang())), 400
    form = AcceptInvitationForm(account_email=invitation.email)
    context = {"form": form, "invitation": invitation}
    if request.method == "GET":
        return render_template("auth/invite_accept.html", **context)
    if not form.validate():
        return render_template("auth/invite_accept.html", **context), 422
    try:
        user = accept_invitation(
            db.session,
            token,
            name=form.name.data,
            password=form.password.data,
            secret_key=_secret(),
        )
    except AuthError as exc:
        _add_error(form, exc.field, exc.message(lang()))
        return render_template("auth/invite_accept.html", **context), 422
    _start_session(user, second_factor=False)
    flash(_("欢迎加入%(org)s。", org=invitation.organization.name), "success")
    return redirect(_home(user))
