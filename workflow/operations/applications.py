"""What applicants do: start, save, submit, answer supplements, withdraw."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..audit import record_event
from ..engine import compiled, fire
from ..errors import ConflictError, PermissionDenied, ValidationFailed
from ..models import Application, Attachment, Call, User
from ..permissions import roles_for
from ..validation import clean_form, submission_errors


class CallClosed(ValidationFailed):
    status = 409


def _call_must_be_open(call: Call, today: date) -> None:
    if not call.is_open(today):
        raise CallClosed(
            f"本批次申报时间为{call.opens_on:%Y年%-m月%-d日}至{call.closes_on:%Y年%-m月%-d日}，"
            "当前不在申报期内。",
            f"This call accepts applications from {call.opens_on} to {call.closes_on}; "
            "it is not open now.",
        )


def start_application(session: Session, *, user: User, call: Call, today: date) -> Application:
    """Create the organization's application for this call, or return the existing one:
    one per organization per call (a database constraint), so double clicks and two tabs
    end on the same application."""
    if user.organization_id is None:
        raise PermissionDenied("只有申报单位用户可以申报。", "Only applicant users can apply.")
    org = user.organization
    program = compiled(session, call.definition_id).program
    existing = _existing(session, user.organization_id, call.id)
    if existing is not None:
        return existing
    _call_must_be_open(call, today)
    if org.org_type not in program.applicant_types:
        raise PermissionDenied(
            "贵单位的类型不在该项目的申报范围内。",
            "Your type of organization cannot apply to this program.",
        )
    app = Application(
        organization_id=org.id,
        call_id=call.id,
        definition_id=call.definition_id,
        program_code=call.program_code,
        district=org.district,
        state=program.initial,
        form_data={},
        created_by_id=user.id,
    )
    try:
        with session.begin_nested():
            session.add(app)
            session.flush()
    except IntegrityError:
        existing = _existing(session, user.organization_id, call.id)
        if existing is None:
            raise
        return existing
    record_event(
        session,
        action="application.start",
        entity_type="application",
        entity_id=app.id,
        application_id=app.id,
        actor_id=user.id,
        actor_role="applicant",
        to_state=app.state,
    )
    return app


def _existing(session: Session, org_id: int, call_id: int) -> Application | None:
    return session.scalar(
        select(Application).where(
            Application.organization_id == org_id, Application.call_id == call_id
        )
    )


def editable_keys(session: Session, app: Application) -> set[str] | None:
    """Keys the applicant may change now: None means all (draft); in a supplement state
    only the fields and groups the reviewer asked for."""
    state = compiled(session, app.definition_id).program.state(app.state)
    if not state.applicant_editable:
        return set()
    if state.stage == "supplement":
        return set((app.supplement_request or {}).get("fields", []))
    return None


def save_draft(
    session: Session,
    app: Application,
    user: User,
    raw: dict[str, Any],
    *,
    expected_version: int | None = None,
) -> dict[str, dict[str, str]]:
    """Store what was typed. Missing fields never block a draft; malformed values are
    reported (and the rest is still saved). Returns field errors."""
    if "applicant" not in roles_for(user, app):
        raise PermissionDenied("无权修改该申报。", "You cannot change this application.")
    if expected_version is not None and expected_version != app.version:
        raise ConflictError()
    allowed = editable_keys(session, app)
    if allowed is not None and not allowed:
        raise PermissionDenied(
            "当前状态下不能修改申报内容。", "The application cannot be changed now."
        )
    program = compiled(session, app.definition_id).program
    cleaned, errors = clean_form(program, raw)
    current = dict(app.form_data or {})
    if allowed is None:
        new = cleaned
    else:
        new = dict(current)
        for key in allowed:
            if key in cleaned:
                new[key] = cleaned[key]
        errors = {k: v for k, v in errors.items() if k.split(".")[0] in allowed}
    changed = sorted(k for k in set(new) | set(current) if new.get(k) != current.get(k))
    if changed:
        app.form_data = new
        record_event(
            session,
            action="application.save",
            entity_type="application",
            entity_id=app.id,
            application_id=app.id,
            actor_id=user.id,
            actor_role="applicant",
            data={"changed": changed},
            hashed_payload=new,
        )
        session.flush()
    return errors


def materials_present(session: Session, app: Application) -> dict[str, int]:
    rows = session.execute(
        select(Attachment.kind, func.count())
        .where(Attachment.application_id == app.id)
        .group_by(Attachment.kind)
    ).all()
    return {k: n for k, n in rows}


def check_submittable(session: Session, app: Application) -> dict[str, dict[str, str]]:
    program = compiled(session, app.definition_id).program
    return submission_errors(
        program, app.form_data or {}, materials_present(session, app), app.call.params
    )


def submit_application(
    session: Session,
    app: Application,
    user: User,
    *,
    today: date,
    expected_version: int | None = None,
    trigger: str = "submit",
) -> Application:
    """Validate everything, then fire ``submit`` (or ``resubmit``): the definition's
    effects freeze the snapshot, assign the number and compute the award."""
    if trigger == "submit":
        _call_must_be_open(app.call, today)
    errors = check_submittable(session, app)
    if errors:
        raise ValidationFailed(
            f"还有{len(errors)}处需要填写或修改。",
            f"{len(errors)} item(s) still need attention.",
            {k: [v["zh"], v["en"]] for k, v in errors.items()},
        )
    fire(session, app, trigger, user, today=today, expected_version=expected_version)
    return app


def resubmit_application(
    session: Session,
    app: Application,
    user: User,
    *,
    today: date,
    expected_version: int | None = None,
) -> Application:
    return submit_application(
        session, app, user, today=today, expected_version=expected_version, trigger="resubmit"
    )


def withdraw_application(
    session: Session,
    app: Application,
    user: User,
    *,
    today: date,
    reason: str | None = None,
    expected_version: int | None = None,
) -> Application:
    fire(
        session,
        app,
        "withdraw",
        user,
        today=today,
        reason=reason,
        expected_version=expected_version,
    )
    return app
