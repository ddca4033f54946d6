"""E-mail over SMTP. Called only from the ``send_email`` job, i.e. after the commit of
the transaction that caused it, so no mail leaves for a change that rolled back."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from typing import Any

from sqlalchemy.orm import Session

from .models import User


def send_user_email(
    session: Session, settings: dict[str, Any], user_id: int, subject: str, body: str, link: str
) -> bool:
    server = settings.get("MAIL_SERVER")
    user = session.get(User, user_id)
    if not server or user is None or not user.active:
        return False
    msg = EmailMessage()
    msg["From"] = settings.get("MAIL_FROM", "noreply@shenbao.local")
    msg["To"] = user.email
    msg["Subject"] = subject
    base = str(settings.get("PUBLIC_BASE_URL", "")).rstrip("/")
    msg.set_content(f"{user.name}：\n\n{subject}\n{body}\n\n{base}{link}\n\n申报系统 Shenbao")
    with smtplib.SMTP(server, int(settings.get("MAIL_PORT", 25)), timeout=20) as smtp:
        if settings.get("MAIL_USE_TLS"):
            smtp.starttls()
        if settings.get("MAIL_USERNAME"):
            smtp.login(settings["MAIL_USERNAME"], settings.get("MAIL_PASSWORD") or "")
        smtp.send_message(msg)
    return True
