"""System administration (系统管理), blueprint ``admin`` under ``/admin``, for users
holding the admin role (``can_administer``):

* queues: per RQ queue (when ``REDIS_URL`` is set) the counts of queued, started, failed,
  scheduled and deferred jobs, the failed jobs with their exception text, and buttons to
  retry (``FailedJobRegistry.requeue``) or delete them; always, the outbox rows not yet
  relayed or whose in-process run failed, with a button to send them again;
* users and roles: grant and revoke roles with their program/district scope and the lead
  flag; every change is an audit event.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import func, or_, select
from wtforms import BooleanField, SelectField

from workflow import outbox
from workflow.models import OutboxJob, RoleGrant, User
from workflow.permissions import can_administer

from .. import admin_ops as ops
from ..access import login_required_mfa
from ..districts import districts
from ..extensions import db
from ..hooks import lang, text
from ..review_pages import local_time

bp = Blueprint("admin", __name__, url_prefix="/admin")

JOB_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,120}$")
PER_PAGE = 50
ROLE_LABELS = {
    "applicant": {"zh": "申报单位", "en": "Applicant"},
    "district_officer": {"zh": "区县审核员", "en": "District officer"},
    "city_officer": {"zh": "市局审核员", "en": "City officer"},
    "expert": {"zh": "评审专家", "en": "Expert"},
    "approver": {"zh": "审定人", "en": "Approver"},
    "finance": {"zh": "财务", "en": "Finance"},
    "admin": {"zh": "系统管理员", "en": "Administrator"},
}


class ButtonForm(FlaskForm):
    """A button that posts: CSRF only."""


class GrantForm(FlaskForm):
    role = SelectField(lazy_gettext("角色"), choices=[])
    program = SelectField(lazy_gettext("限定项目"), choices=[])
    district = SelectField(lazy_gettext("限定区县"), choices=[])
    lead = BooleanField(lazy_gettext("牵头人（可分派工作）"))


def _signed_in() -> None:
    """Nothing: wrapped by ``login_required_mfa``, it answers "may this request go on?"."""


_login_gate = login_required_mfa(_signed_in)


@bp.before_request
def _admins_only():
    response = _login_gate()
    if response is not None:
        return response
    if not can_administer(current_user):
        abort(403)
    return None


def role_label(role: str) -> str:
    entry = ROLE_LABELS.get(role)
    return (entry.get(lang()) or entry["zh"]) if entry else role


def _district_choices() -> list[tuple[str, str]]:
    return [(zh, en if lang() == "en" else zh) for zh, en in districts()]


def _local(moment: datetime | None) -> str:
    if moment is not None and moment.tzinfo is None:  # RQ may hand back naive UTC
        moment = moment.replace(tzinfo=UTC)
    return local_time(moment)


@bp.context_processor
def _helpers() -> dict[str, Any]:
    names = ops.program_names(db.session)
    return {
        "role_label": role_label,
        "local": _local,
        "program_label": lambda code: text(names[code]) if code in names else code,
    }


@bp.get("/")
def index():
    return render_template("admin/index.html", redis=bool(current_app.config.get("REDIS_URL")))


# ---------------------------------------------------------------- queues


def _redis():
    from ..jobs import redis_connection

    return redis_connection()


@bp.get("/queues")
def queues():
    states, redis_error = None, None
    if current_app.config.get("REDIS_URL"):
        from redis.exceptions import RedisError

        try:
            states = ops.queue_states(_redis(), outbox.QUEUES)
        except RedisError as exc:
            redis_error = str(exc)[:300]
    return render_template(
        "admin/queues.html",
        states=states,
        redis_error=redis_error,
        rows=ops.outbox_problems(db.session),
        form=ButtonForm(),
    )


def _check_job(queue: str, job_id: str) -> None:
    if queue not in outbox.QUEUES or not JOB_ID.match(job_id):
        abort(404)
    if not current_app.config.get("REDIS_URL"):
        abort(404)
    if not ButtonForm().validate_on_submit():
        abort(400)


@bp.post("/queues/<queue>/failed/<job_id>/retry")
def retry_job(queue: str, job_id: str):
    _check_job(queue, job_id)
    ops.retry_failed_job(db.session, current_user, _redis(), queue, job_id)
    flash(_("任务 %(job)s 已重新排队。", job=job_id), "success")
    return redirect(url_for("admin.queues"))


@bp.post("/queues/<queue>/failed/<job_id>/delete")
def delete_job(queue: str, job_id: str):
    _check_job(queue, job_id)
    ops.delete_failed_job(db.session, current_user, _redis(), queue, job_id)
    flash(_("任务 %(job)s 已删除。", job=job_id), "success")
    return redirect(url_for("admin.queues"))


@bp.post("/outbox/<int:row_id>/resend")
def resend(row_id: int):
    row = db.session.get(OutboxJob, row_id)
    if row is None:
        abort(404)
    if not ButtonForm().validate_on_submit():
        abort(400)
    ops.resend_outbox_job(db.session, current_user, row)
    flash(_("任务 %(job)s 已重新发送。", job=row.job_id), "success")
    return redirect(url_for("admin.queues"))


# ---------------------------------------------------------------- users and roles


def _page() -> int:
    raw = request.args.get("page", "1")
    return int(raw) if raw.isdigit() and 0 < int(raw) < 100_000 else 1


@bp.get("/users")
def users():
    q = (request.args.get("q") or "").strip()
    if len(q) > 100:
        flash(_("搜索词过长，已忽略。"), "warning")
        q = ""
    query = select(User)
    if q:
        like = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(User.email.ilike(like, escape="\\"), User.name.ilike(like, escape="\\"))
        )
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = _page()
    rows = db.session.scalars(
        query.order_by(User.id).limit(PER_PAGE).offset((page - 1) * PER_PAGE)
    ).all()
    return render_template(
        "admin/users.html",
        users=rows,
        q=q,
        page=page,
        pages=max(1, -(-int(total) // PER_PAGE)),
    )


def _grant_form(formdata: Any = None) -> GrantForm:
    form = GrantForm(formdata=formdata) if formdata is not None else GrantForm(formdata=None)
    form.role.choices = [(r, role_label(r)) for r in ops.GRANTABLE_ROLES]
    form.program.choices = [("", _("全部项目"))] + [(c, c) for c in ops.program_codes(db.session)]
    form.district.choices = [("", _("全部区县"))] + _district_choices()
    return form


def _load_user(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


def _user_page(user: User, form: GrantForm | None = None, status: int = 200):
    return (
        render_template(
            "admin/user.html",
            user=user,
            form=form or _grant_form(),
            button=ButtonForm(),
        ),
        status,
    )


@bp.get("/users/<int:user_id>")
def user(user_id: int):
    return _user_page(_load_user(user_id))


@bp.post("/users/<int:user_id>/grants")
def grant(user_id: int):
    user = _load_user(user_id)
    form = _grant_form(request.form)
    if not form.validate():
        return _user_page(user, form, 422)
    ops.grant_role(
        db.session,
        current_user,
        user,
        role=form.role.data,
        program_code=form.program.data or None,
        district=form.district.data or None,
        is_lead=bool(form.lead.data),
        known_districts={zh for zh, _en in districts()},
    )
    flash(_("已授予角色：%(role)s。", role=role_label(form.role.data)), "success")
    return redirect(url_for("admin.user", user_id=user.id))


@bp.post("/users/<int:user_id>/grants/<int:grant_id>/revoke")
def revoke(user_id: int, grant_id: int):
    user = _load_user(user_id)
    grant = db.session.get(RoleGrant, grant_id)
    if grant is None or grant.user_id != user.id:
        abort(404)
    if not ButtonForm().validate_on_submit():
        abort(400)
    role = grant.role
    ops.revoke_role(db.session, current_user, grant)
    flash(_("已撤销角色：%(role)s。", role=role_label(role)), "success")
    return redirect(url_for("admin.user", user_id=user.id))
