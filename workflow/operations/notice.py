"""Public notice (公示) and objections (异议).

Objections must carry a real name, a contact and a reason, and are accepted only while
the notice runs (P19, P20: anonymous or late objections are not accepted).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, defer

from ..audit import record_event
from ..engine import compiled, fire
from ..errors import NotFound, PermissionDenied, TransitionNotAllowed, ValidationFailed
from ..models import Application, Call, Objection, PublicNotice, User
from ..permissions import SystemActor
from ..queues import STAGE_ORDER


def lodge_objection(
    session: Session,
    app: Application,
    *,
    name: str,
    contact: str,
    reason: str,
    today: date,
    evidence_storage_key: str | None = None,
) -> Objection:
    name, contact, reason = (name or "").strip(), (contact or "").strip(), (reason or "").strip()
    errors: dict[str, list[str]] = {}
    if not name or len(name) > 100:
        errors["name"] = ["请填写真实姓名或单位名称。", "Give your real name or organization."]
    if not contact or len(contact) > 100:
        errors["contact"] = ["请填写联系方式。", "Give a way to contact you."]
    if len(reason) < 10 or len(reason) > 5000:
        errors["reason"] = [
            "请具体说明异议理由（10至5000字）。",
            "Explain the objection (10-5000 characters).",
        ]
    if errors:
        raise ValidationFailed("异议信息不完整。", "The objection is incomplete.", errors)
    program = compiled(session, app.definition_id).program
    state = program.state(app.state)
    if state.stage not in ("notice", "objection") or (
        app.deadline_on is not None and today > app.deadline_on
    ):
        raise TransitionNotAllowed(
            "该申报不在公示期内，不能提出异议。", "This application is not under public notice."
        )
    notice_id = session.scalar(
        select(PublicNotice.id)
        .where(PublicNotice.call_id == app.call_id, PublicNotice.status == "open")
        .order_by(PublicNotice.id.desc())
        .limit(1)
    )
    objection = Objection(
        application_id=app.id,
        notice_id=notice_id,
        name=name,
        contact=contact,
        reason=reason,
        evidence_storage_key=evidence_storage_key,
    )
    session.add(objection)
    session.flush()
    record_event(
        session,
        action="objection.lodge",
        entity_type="objection",
        entity_id=objection.id,
        application_id=app.id,
        actor_role="public",
        reason=reason,
        data={"name": name},
    )
    if state.stage == "notice":
        fire(session, app, "lodge_objection", SystemActor("public"), reason=reason, today=today)
    return objection


def decide_objection(
    session: Session,
    objection: Objection,
    actor: User,
    *,
    upheld: bool,
    reason: str,
    today: date,
) -> Application:
    """Uphold (the application is rejected) or dismiss (it returns to the notice) an
    objection. With several objections, the application leaves review only when none is
    pending."""
    if objection.status != "pending":
        raise ValidationFailed("该异议已处理。", "This objection was already decided.")
    app = session.get(Application, objection.application_id)
    if app is None:
        raise NotFound("申报不存在。", "Application not found.")
    objection.status = "upheld" if upheld else "dismissed"
    objection.decided_by_id = actor.id
    objection.decision_note = (reason or "").strip() or None
    session.flush()
    record_event(
        session,
        action="objection.uphold" if upheld else "objection.dismiss",
        entity_type="objection",
        entity_id=objection.id,
        application_id=app.id,
        actor_id=actor.id,
        reason=reason,
    )
    pending = session.scalar(
        select(Objection.id)
        .where(Objection.application_id == app.id, Objection.status == "pending")
        .limit(1)
    )
    if upheld:
        fire(session, app, "uphold_objection", actor, reason=reason, today=today)
    elif pending is None:
        fire(session, app, "dismiss_objection", actor, reason=reason, today=today)
    return app


def publish_notice(
    session: Session, call: Call, actor: Any, *, today: date, title: str | None = None
) -> PublicNotice:
    """Open (or refresh) the call's public notice listing every application now in a
    notice state; it ends with the latest notice deadline among them."""
    apps = session.scalars(
        select(Application).where(Application.call_id == call.id).order_by(Application.id)
    ).all()
    listed = [
        a
        for a in apps
        if compiled(session, a.definition_id).program.state(a.state).stage
        in ("notice", "objection")
    ]
    if not listed:
        raise ValidationFailed("没有处于公示阶段的申报。", "No application is under notice.")
    ends = max((a.deadline_on for a in listed if a.deadline_on), default=today)
    notice = session.scalar(
        select(PublicNotice).where(PublicNotice.call_id == call.id, PublicNotice.status == "open")
    )
    if notice is None:
        notice = PublicNotice(
            call_id=call.id,
            title=title or f"{call.title}拟支持名单公示",
            starts_on=today,
            ends_on=ends,
            application_ids=[a.id for a in listed],
        )
        session.add(notice)
    else:
        notice.application_ids = sorted({*notice.application_ids, *(a.id for a in listed)})
        notice.ends_on = max(notice.ends_on, ends)
    session.flush()
    record_event(
        session,
        action="notice.publish",
        entity_type="public_notice",
        entity_id=notice.id,
        actor_id=getattr(actor, "id", None),
        data={"applications": notice.application_ids, "ends_on": notice.ends_on.isoformat()},
    )
    return notice


def close_notices(session: Session, today: date) -> int:
    notices = session.scalars(
        select(PublicNotice).where(PublicNotice.status == "open", PublicNotice.ends_on < today)
    ).all()
    for n in notices:
        n.status = "closed"
    return len(notices)


# Stages an application can be in once it has been on a public notice: the notice and
# every stage after it.
NOTICED_STAGES = frozenset(STAGE_ORDER[STAGE_ORDER.index("notice") :])


def notices_listing(session: Session, app: Application) -> list[PublicNotice]:
    """The public notices of the application's call that list it, oldest first.

    On PostgreSQL the list is searched in the database (JSONB containment), so a notice of
    thousands of applications is not fetched and parsed for every status page."""
    if app.id is None or app.stage not in NOTICED_STAGES:
        return []
    stmt = (
        select(PublicNotice)
        .where(PublicNotice.call_id == app.call_id)
        .order_by(PublicNotice.starts_on, PublicNotice.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        ids = type_coerce(PublicNotice.application_ids, JSONB)
        stmt = stmt.where(ids.contains([app.id])).options(defer(PublicNotice.application_ids))
        return list(session.scalars(stmt))
    return [n for n in session.scalars(stmt) if app.id in (n.application_ids or [])]


def require_staff(user: Any) -> None:
    if not isinstance(user, User):
        raise PermissionDenied("需要登录。", "Login required.")
