"""In-app notifications (站内消息), blueprint ``notifications``: the signed-in user's
messages, unread first, and marking them read. Messages are written by the workflow
(``workflow.effects.notify_applicant``) in the transaction of the change they report;
their e-mail copies leave through the outbox after the commit.

``unread_notifications()`` is available in every template (the count badge in the
navigation bar).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select

from workflow.models import Notification

from .. import notification_ops as ops
from ..access import login_required_mfa
from ..extensions import db
from ..review_pages import local_time

bp = Blueprint("notifications", __name__)

PER_PAGE = 30


class ButtonForm(FlaskForm):
    """A button that posts: CSRF only."""


@bp.app_context_processor
def _badge() -> dict[str, Any]:
    def unread_notifications() -> int:
        if not getattr(current_user, "is_authenticated", False):
            return 0
        return ops.unread_count(db.session, current_user)

    return {"unread_notifications": unread_notifications}


def _page() -> int:
    raw = request.args.get("page", "1")
    return int(raw) if raw.isdigit() and 0 < int(raw) < 100_000 else 1


def safe_link(link: str | None) -> str | None:
    """Only links inside this site (a path such as /applications/3), never //host or a
    scheme a stored value could smuggle in."""
    if not link or not link.startswith("/") or link.startswith("//") or "\\" in link:
        return None
    return link


@bp.get("/notifications")
@login_required_mfa
def index():
    page = _page()
    user_id = current_user.id
    total = db.session.scalar(
        select(func.count(Notification.id)).where(Notification.user_id == user_id)
    )
    items = db.session.scalars(
        select(Notification)
        .where(Notification.user_id == user_id)
        # Unread first (NULL read_at), newest first inside each group.
        .order_by(Notification.read_at.is_not(None), Notification.id.desc())
        .limit(PER_PAGE)
        .offset((page - 1) * PER_PAGE)
    ).all()
    return render_template(
        "notifications/index.html",
        items=items,
        page=page,
        pages=max(1, -(-int(total or 0) // PER_PAGE)),
        unread=ops.unread_count(db.session, current_user),
        form=ButtonForm(),
        safe_link=safe_link,
        local=local_time,
    )


def _own(notification_id: int) -> Notification:
    item = db.session.get(Notification, notification_id)
    # Someone else's message is reported as missing, not forbidden: ids reveal nothing.
    if item is None or item.user_id != current_user.id:
        abort(404)
    return item


@bp.post("/notifications/<int:notification_id>/read")
@login_required_mfa
def mark_read(notification_id: int):
    item = _own(notification_id)
    if not ButtonForm().validate_on_submit():
        abort(400)
    ops.mark_read(db.session, item)
    if request.form.get("open") == "1" and safe_link(item.link):
        return redirect(safe_link(item.link))
    return redirect(url_for("notifications.index", page=_page()))


@bp.post("/notifications/read-all")
@login_required_mfa
def mark_all_read():
    if not ButtonForm().validate_on_submit():
        abort(400)
    count = ops.mark_all_read(db.session, current_user)
    flash(_("已将 %(n)s 条消息标为已读。", n=count), "success")
    return redirect(url_for("notifications.index"))
