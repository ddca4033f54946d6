"""Account operations: registration, login bookkeeping and lockout, profile, passwords
(change and reset by e-mail), TOTP. Each one changes state, writes its audit event
(entity_type ``user``), flushes, and never commits: the request commits once at the end.
The organization's operations (details, invitations) are in ``webapp.org_ops``.

Audit data never holds a password, a password hash, a TOTP secret or a token.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import outbox
from workflow.audit import record_event
from workflow.domain.credit_code import (
    is_valid_credit_code,
    normalize_credit_code,
    org_code_check_ok,
)
from workflow.errors import PermissionDenied, WorkflowError
from workflow.models import Organization, RoleGrant, User, utcnow
from workflow.permissions import STAFF_ROLES

from .access import check_totp
from .security import hash_password, needs_rehash, password_problems, verify_password

MAX_FAILED_LOGINS = 5
LOCK_MINUTES = 15
RESET_MAX_AGE = 3600  # seconds: a reset link works for one hour
RESET_SALT = "shenbao.password-reset"

# Notification kinds a user can opt out of by e-mail (the in-app message always stays).
# A sender reads ``user.email_preferences.get(kind, True)``; add a kind here when a
# sender starts reading its preference.
NOTIFICATION_KINDS: tuple[tuple[str, dict[str, str]], ...] = (
    ("state_change", {"zh": "申报进度变化", "en": "Changes in the progress of an application"}),
)
LOCALES = ("zh", "en")


class AuthError(WorkflowError):
    """A refusal tied to one form field (shown next to it, status 422)."""

    status = 422

    def __init__(self, field_name: str, zh: str, en: str):
        super().__init__(zh, en, field=field_name)
        self.field = field_name


class TokenInvalid(WorkflowError):
    """A reset or invitation link that is malformed, expired or already used."""

    status = 400


def _password_error(password: str, email: str, field_name: str = "password") -> None:
    problems = password_problems(password, email=email)
    if problems:
        raise AuthError(
            field_name, "".join(p["zh"] for p in problems), " ".join(p["en"] for p in problems)
        )


def _role(user: User) -> str | None:
    roles = user.roles()
    if "applicant" in roles:
        return "applicant"
    staff = sorted(roles & STAFF_ROLES)
    return staff[0] if staff else None


def _serializer(secret_key: str, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=salt)


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


# ---------------------------------------------------------------- registration


@dataclass
class Registration:
    user: User
    organization: Organization
    warnings: list[dict[str, str]] = field(default_factory=list)


def register_organization(
    session: Session, *, organization: dict[str, Any], email: str, password: str
) -> Registration:
    """Create an organization and its owner (role ``applicant``).

    ``organization`` holds name, credit_code, org_type, district, address,
    legal_representative, contact_name, contact_phone. The credit code's check
    character is a hard check; the organization-code digit (position 17) only warns.
    """
    code = normalize_credit_code(str(organization.get("credit_code", "")))
    if not is_valid_credit_code(code):
        raise AuthError(
            "credit_code",
            "统一社会信用代码校验不通过，请对照营业执照核对。",
            "The unified social credit code does not pass its check; compare it with the "
            "business licence.",
        )
    if session.scalar(select(Organization.id).where(Organization.credit_code == code)):
        raise AuthError(
            "credit_code",
            "该统一社会信用代码已注册。如您是该单位的员工，请联系单位账户的管理人邀请您加入。",
            "An organization with this credit code is already registered. If you work "
            "there, ask its account owner to invite you.",
        )
    email = normalize_email(email)
    if session.scalar(select(User.id).where(User.email == email)):
        raise AuthError(
            "email",
            "该邮箱已注册，请直接登录或找回密码。",
            "This e-mail address already has an account; log in or reset the password.",
        )
    _password_error(password, email)

    org = Organization(
        name=organization["name"].strip(),
        credit_code=code,
        org_type=organization["org_type"],
        district=organization["district"],
        address=organization.get("address", "").strip(),
        legal_representative=organization.get("legal_representative", "").strip(),
        contact_name=organization.get("contact_name", "").strip(),
        contact_phone=organization.get("contact_phone", "").strip(),
        contact_email=email,
    )
    session.add(org)
    session.flush()
    user = User(
        email=email,
        name=org.contact_name or org.name,
        password_hash=hash_password(password),
        organization_id=org.id,
        is_org_owner=True,
    )
    user.grants.append(RoleGrant(role="applicant"))
    session.add(user)
    session.flush()

    warnings = []
    if not org_code_check_ok(code):
        warnings.append(
            {
                "zh": "提示：代码第17位（组织机构代码校验位）与第9–16位不符。部分早期代码存在这种情况，"
                "注册已完成，但请再对照营业执照核对一次。",
                "en": "Note: character 17 (the organization-code check) does not match "
                "characters 9–16. Some older codes are like this; you are registered, but "
                "please compare the code with the business licence once more.",
            }
        )
    record_event(
        session,
        action="user.register",
        entity_type="user",
        entity_id=user.id,
        actor_id=user.id,
        actor_role="applicant",
        data={
            "organization_id": org.id,
            "credit_code": code,
            "org_type": org.org_type,
            "district": org.district,
            "org_code_check_ok": not warnings,
        },
    )
    return Registration(user=user, organization=org, warnings=warnings)


# ---------------------------------------------------------------- login

_DUMMY_HASH: list[str] = []


def _dummy_verify(password: str) -> None:
    """Spend the time a real check takes, so unknown e-mails are not faster."""
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(hash_password(secrets.token_urlsafe(16)))
    verify_password(_DUMMY_HASH[0], password)


def is_locked(user: User, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return user.locked_until is not None and user.locked_until > now


@dataclass
class AuthResult:
    """``outcome`` is one of ok, second_factor, bad_credentials, locked, inactive."""

    outcome: str
    user: User | None = None


def authenticate(
    session: Session, email: str, password: str, *, ip: str, now: datetime | None = None
) -> AuthResult:
    """Check an e-mail and password. Failures are counted (5 in a row lock the account
    for 15 minutes) and audited; the counter is reset only by a complete login
    (:func:`record_login`), so a known password does not buy unlimited TOTP guesses."""
    now = now or utcnow()
    user = session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        _dummy_verify(password)
        record_failed_login(session, None, reason="unknown_email", ip=ip, now=now)
        return AuthResult("bad_credentials")
    if is_locked(user, now):
        return AuthResult("locked", user)
    if not verify_password(user.password_hash, password):
        locked = record_failed_login(session, user, reason="bad_password", ip=ip, now=now)
        return AuthResult("locked" if locked else "bad_credentials", user)
    if not user.active:
        return AuthResult("inactive", user)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return AuthResult("second_factor" if user.totp_secret else "ok", user)


def authenticate_second_factor(
    session: Session, user: User, code: str, *, ip: str, now: datetime | None = None
) -> AuthResult:
    """Check the TOTP code of a user whose password was right; wrong codes count as
    failed logins."""
    now = now or utcnow()
    if is_locked(user, now):
        return AuthResult("locked", user)
    if not user.active:
        return AuthResult("inactive", user)
    if not user.totp_secret or not check_totp(user.id, user.totp_secret, code):
        locked = record_failed_login(session, user, reason="bad_totp", ip=ip, now=now)
        return AuthResult("locked" if locked else "bad_credentials", user)
    return AuthResult("ok", user)


def record_failed_login(
    session: Session, user: User | None, *, reason: str, ip: str, now: datetime | None = None
) -> bool:
    """Count a failed attempt; return True if this one locked the account."""
    now = now or utcnow()
    if user is None:
        # The typed e-mail is not stored: people type passwords into the wrong field.
        record_event(
            session,
            action="user.login_failed",
            entity_type="user",
            data={"reason": reason, "ip": ip},
        )
        session.flush()
        return False
    if user.locked_until is not None and user.locked_until <= now:
        user.failed_logins = 0  # the previous lock has run out: start counting afresh
        user.locked_until = None
    user.failed_logins = (user.failed_logins or 0) + 1
    record_event(
        session,
        action="user.login_failed",
        entity_type="user",
        entity_id=user.id,
        data={"reason": reason, "ip": ip, "failures": user.failed_logins},
    )
    locked = user.failed_logins >= MAX_FAILED_LOGINS
    if locked:
        user.locked_until = now + timedelta(minutes=LOCK_MINUTES)
        record_event(
            session,
            action="user.lock",
            entity_type="user",
            entity_id=user.id,
            data={"until": user.locked_until.isoformat(), "ip": ip},
        )
    session.flush()
    return locked


def record_login(session: Session, user: User, *, ip: str, second_factor: bool) -> None:
    """A complete login: reset the failure counter and audit it."""
    user.failed_logins = 0
    user.locked_until = None
    record_event(
        session,
        action="user.login",
        entity_type="user",
        entity_id=user.id,
        actor_id=user.id,
        actor_role=_role(user),
        data={"ip": ip, "second_factor": second_factor},
    )
    session.flush()


# ---------------------------------------------------------------- profile and password


def update_profile(
    session: Session,
    user: User,
    *,
    name: str,
    locale: str,
    email_preferences: dict[str, bool],
) -> None:
    known = {kind for kind, _label in NOTIFICATION_KINDS}
    prefs = dict(user.email_preferences or {})
    prefs.update({k: bool(v) for k, v in email_preferences.items() if k in known})
    changed = []
    if name.strip() and name.strip() != user.name:
        user.name = name.strip()
        changed.append("name")
    if locale in LOCALES and locale != user.locale:
        user.locale = locale
        changed.append("locale")
    if prefs != (user.email_preferences or {}):
        user.email_preferences = prefs
        changed.append("email_preferences")
    if changed:
        record_event(
            session,
            action="user.profile_update",
            entity_type="user",
            entity_id=user.id,
            actor_id=user.id,
            actor_role=_role(user),
            data={"changed": changed, "email_preferences": prefs},
        )
        session.flush()


def _set_password(user: User, password: str) -> None:
    user.password_hash = hash_password(password)
    # Every session carries the epoch in its user id: moving it ends all of them.
    user.session_epoch = (user.session_epoch or 0) + 1
    user.failed_logins = 0
    user.locked_until = None


def change_password(session: Session, user: User, *, current: str, new: str) -> None:
    """Change the password and end every other session of this user (the caller logs the
    current session in again with the new epoch)."""
    if not verify_password(user.password_hash, current):
        raise AuthError(
            "current_password", "当前密码不正确。", "The current password is not correct."
        )
    if current == new:
        raise AuthError(
            "new_password",
            "新密码不能与当前密码相同。",
            "The new password must differ from the current one.",
        )
    _password_error(new, user.email, "new_password")
    _set_password(user, new)
    record_event(
        session,
        action="user.password_change",
        entity_type="user",
        entity_id=user.id,
        actor_id=user.id,
        actor_role=_role(user),
    )
    session.flush()


# ---------------------------------------------------------------- password reset


def _password_fingerprint(user: User) -> str:
    """Changes whenever the password (or the session epoch) does, so a used link dies."""
    raw = f"{user.password_hash}:{user.session_epoch}".encode()
    return hashlib.sha256(raw).hexdigest()[:20]


def make_reset_token(user: User, secret_key: str) -> str:
    return _serializer(secret_key, RESET_SALT).dumps(
        {"u": user.id, "f": _password_fingerprint(user)}
    )


def request_password_reset(
    session: Session, email: str, *, secret_key: str, now: float | None = None
) -> bool:
    """Mail a one-hour, single-use reset link if ``email`` belongs to an active user.

    The caller shows the same answer either way. At most one mail per user per five
    minutes leaves (the outbox job id carries the five-minute slot), so the form cannot
    be used to flood someone's mailbox.
    """
    user = session.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None or not user.active:
        return False
    token = make_reset_token(user, secret_key)
    link = f"/password/reset/{token}"
    if user.locale == "en":
        subject = "Reset your Shenbao password"
        body = (
            "Someone (hopefully you) asked to reset the password of this account. Open "
            f"this link within one hour to choose a new password; it works once:\n{link}\n"
            "If you did not ask for this, ignore this e-mail: your password stays as it is."
        )
    else:
        subject = "重置申报系统密码"
        body = (
            f"我们收到了重置您账户密码的请求。请在1小时内打开下面的链接设置新密码，链接只能使用一次：\n{link}\n"
            "如果不是您本人操作，请忽略本邮件，您的密码不会改变。"
        )
    slot = int((time.time() if now is None else now) // 300)
    outbox.enqueue(
        session,
        "send_email",
        {"user_id": user.id, "subject": subject, "body": body, "link": link},
        queue="notifications",
        job_id=f"pwreset-{user.id}-{slot}",
    )
    record_event(
        session,
        action="user.password_reset_request",
        entity_type="user",
        entity_id=user.id,
    )
    session.flush()
    return True


_BAD_LINK = (
    "该链接无效或已使用，请重新申请。",
    "This link is not valid or has already been used; please ask for a new one.",
)
_EXPIRED_LINK = ("该链接已过期，请重新申请。", "This link has expired; please ask for a new one.")


def load_reset_token(session: Session, token: str, *, secret_key: str) -> User:
    """The user a reset link is for; ``TokenInvalid`` if it is bad, expired or used."""
    try:
        data = _serializer(secret_key, RESET_SALT).loads(token, max_age=RESET_MAX_AGE)
    except SignatureExpired as exc:
        raise TokenInvalid(*_EXPIRED_LINK) from exc
    except BadSignature as exc:
        raise TokenInvalid(*_BAD_LINK) from exc
    if not isinstance(data, dict) or not isinstance(data.get("u"), int):
        raise TokenInvalid(*_BAD_LINK)
    user = session.get(User, data["u"])
    if user is None or not user.active or data.get("f") != _password_fingerprint(user):
        raise TokenInvalid(*_BAD_LINK)
    return user


def reset_password(session: Session, token: str, new_password: str, *, secret_key: str) -> User:
    """Set a new password from a reset link; the link, every session and any lock end."""
    user = load_reset_token(session, token, secret_key=secret_key)
    _password_error(new_password, user.email)
    _set_password(user, new_password)
    record_event(
        session,
        action="user.password_reset",
        entity_type="user",
        entity_id=user.id,
        actor_id=user.id,
        actor_role=_role(user),
    )
    session.flush()
    return user


# ---------------------------------------------------------------- TOTP


def enable_totp(session: Session, user: User, *, secret: str, code: str) -> None:
    """Turn on TOTP once the user proves their app produces codes for ``secret``."""
    if user.totp_secret:
        raise AuthError("code", "两步验证已经启用。", "Two-step verification is already on.")
    if not secret or not check_totp(user.id, secret, code):
        raise AuthError(
            "code",
            "验证码不正确，请输入验证器应用中当前显示的6位数字。",
            "The code is not correct; enter the 6 digits your authenticator app shows now.",
        )
    user.totp_secret = secret
    record_event(
        session,
        action="user.totp_enable",
        entity_type="user",
        entity_id=user.id,
        actor_id=user.id,
        actor_role=_role(user),
    )
    session.flush()


def disable_totp(session: Session, user: User, *, password: str, code: str, required: bool) -> None:
    """Turn TOTP off (needs the password and a current code); refused when required."""
    if required:
        raise PermissionDenied(
            "工作人员账户必须启用两步验证，不能关闭。",
            "Staff accounts must keep two-step verification on.",
        )
    if not user.totp_secret:
        raise AuthError("code", "两步验证尚未启用。", "Two-step verification is not on.")
    if not verify_password(user.password_hash, password):
        raise AuthError("password", "密码不正确。", "The password is not correct.")
    if not check_totp(user.id, user.totp_secret, code):
        raise AuthError("code", "验证码不正确。", "The code is not correct.")
    user.totp_secret = None
    record_event(
        session,
        action="user.totp_disable",
        entity_type="user",
        entity_id=user.id,
        actor_id=user.id,
        actor_role=_role(user),
    )
    session.flush()
