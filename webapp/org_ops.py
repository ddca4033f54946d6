"""Organization operations: its owner updates its details (incl. the bank account) and
invites colleagues, who accept by setting their name and password. Same rules as
``webapp.auth_ops``: audit event, flush, never commit; no token in audit data."""

from __future__ import annotations

import secrets
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from itsdangerous import BadSignature, SignatureExpired
from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import outbox
from workflow.audit import record_event
from workflow.errors import PermissionDenied
from workflow.jobs import JobEnv, job
from workflow.models import Organization, RoleGrant, User

from .auth_ops import (
    _BAD_LINK,
    AuthError,
    TokenInvalid,
    _password_error,
    _role,
    _serializer,
    normalize_email,
)
from .security import hash_password

INVITE_MAX_AGE = 7 * 86400  # seconds: an invitation link works for a week
INVITE_SALT = "shenbao.invitation"
ORGANIZATION_FIELDS = (
    "name",
    "district",
    "address",
    "legal_representative",
    "contact_name",
    "contact_phone",
    "contact_email",
    "bank_name",
    "bank_account_name",
    "bank_account_no",
)

# ---------------------------------------------------------------- invitations


@dataclass
class Invitation:
    organization: Organization
    email: str
    inviter: User


def _owner_of(user: User) -> Organization:
    if not user.is_org_owner or user.organization_id is None or not user.active:
        raise PermissionDenied(
            "只有单位账户的管理人可以进行此操作。",
            "Only the owner of the organization's account can do this.",
        )
    return user.organization


def invite_colleague(session: Session, owner: User, email: str, *, secret_key: str) -> str:
    """Mail a one-week invitation link to ``email`` to join the owner's organization."""
    org = _owner_of(owner)
    email = normalize_email(email)
    if session.scalar(select(User.id).where(User.email == email)):
        raise AuthError(
            "email",
            "该邮箱已有账户，不能再邀请。",
            "This e-mail address already has an account and cannot be invited.",
        )
    token = _serializer(secret_key, INVITE_SALT).dumps({"o": org.id, "e": email, "i": owner.id})
    link = f"/invite/{token}"
    subject = f"{org.name}邀请您加入申报系统 / {org.name} invites you to Shenbao"
    body = (
        f"{owner.name}邀请您作为{org.name}的用户使用长春市知识产权项目申报系统。"
        f"请在7天内打开下面的链接，设置姓名和密码：\n{link}\n\n"
        f"{owner.name} invites you to use the Changchun IP programs system for {org.name}. "
        "Open the link above within 7 days to set your name and password."
    )
    outbox.enqueue(
        session,
        "send_address_email",
        {"to": email, "subject": subject, "body": body, "link": link},
        queue="notifications",
        job_id=f"invite-{org.id}-{secrets.token_hex(8)}",
    )
    record_event(
        session,
        action="user.invite",
        entity_type="user",
        entity_id=owner.id,
        actor_id=owner.id,
        actor_role=_role(owner),
        data={"organization_id": org.id, "email": email},
    )
    session.flush()
    return token


def load_invitation(session: Session, token: str, *, secret_key: str) -> Invitation:
    try:
        data = _serializer(secret_key, INVITE_SALT).loads(token, max_age=INVITE_MAX_AGE)
    except SignatureExpired as exc:
        raise TokenInvalid(
            "该邀请已过期，请联系单位账户管理人重新邀请。",
            "This invitation has expired; ask the organization's owner to invite you again.",
        ) from exc
    except BadSignature as exc:
        raise TokenInvalid(*_BAD_LINK) from exc
    if not isinstance(data, dict):
        raise TokenInvalid(*_BAD_LINK)
    org = session.get(Organization, data.get("o")) if isinstance(data.get("o"), int) else None
    inviter = session.get(User, data.get("i")) if isinstance(data.get("i"), int) else None
    email = data.get("e")
    if (
        org is None
        or inviter is None
        or not isinstance(email, str)
        or not inviter.active
        or not inviter.is_org_owner
        or inviter.organization_id != org.id
    ):
        raise TokenInvalid(*_BAD_LINK)
    if session.scalar(select(User.id).where(User.email == email)):
        raise TokenInvalid(
            "该邀请已被使用，请直接登录。", "This invitation has already been used; please log in."
        )
    return Invitation(organization=org, email=email, inviter=inviter)


def accept_invitation(
    session: Session, token: str, *, name: str, password: str, secret_key: str
) -> User:
    """Create the invited colleague's account in the inviting organization."""
    invitation = load_invitation(session, token, secret_key=secret_key)
    _password_error(password, invitation.email)
    user = User(
        email=invitation.email,
        name=name.strip(),
        password_hash=hash_password(password),
        organization_id=invitation.organization.id,
        is_org_owner=False,
    )
    user.grants.append(RoleGrant(role="applicant"))
    session.add(user)
    session.flush()
    record_event(
        session,
        action="user.invitation_accept",
        entity_type="user",
        entity_id=user.id,
        actor_id=user.id,
        actor_role="applicant",
        data={"organization_id": invitation.organization.id, "invited_by": invitation.inviter.id},
    )
    session.flush()
    return user


# ---------------------------------------------------------------- organization


def update_organization(session: Session, owner: User, data: dict[str, Any]) -> list[str]:
    """Change the organization's details (only its owner). The credit code is the
    organization's identity and does not change here. Returns the changed field names."""
    org = _owner_of(owner)
    changed = []
    for name in ORGANIZATION_FIELDS:
        if name in data:
            value = str(data[name] or "").strip()
            if value != (getattr(org, name) or ""):
                setattr(org, name, value)
                changed.append(name)
    if changed:
        record_event(
            session,
            action="organization.update",
            entity_type="organization",
            entity_id=org.id,
            actor_id=owner.id,
            actor_role=_role(owner),
            data={"changed": changed},
        )
        session.flush()
    return changed


# ---------------------------------------------------------------- mail to an address


@job("send_address_email")
def send_address_email_job(env: JobEnv, to: str, subject: str, body: str, link: str) -> bool:
    """Mail someone who has no account yet (invitations); ``send_email`` needs a user.
    Runs after the commit, like every job; without MAIL_SERVER it sends nothing."""
    settings = env.settings
    server = settings.get("MAIL_SERVER")
    if not server:
        return False
    msg = EmailMessage()
    msg["From"] = settings.get("MAIL_FROM", "noreply@shenbao.local")
    msg["To"] = to
    msg["Subject"] = subject
    base = str(settings.get("PUBLIC_BASE_URL", "")).rstrip("/")
    msg.set_content(f"{subject}\n\n{body}\n\n{base}{link}\n\n申报系统 Shenbao")
    with smtplib.SMTP(server, int(settings.get("MAIL_PORT", 25)), timeout=20) as smtp:
        if settings.get("MAIL_USE_TLS"):
            smtp.starttls()
        if settings.get("MAIL_USERNAME"):
            smtp.login(settings["MAIL_USERNAME"], settings.get("MAIL_PASSWORD") or "")
        smtp.send_message(msg)
    return True
