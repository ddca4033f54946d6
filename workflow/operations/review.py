"""What reviewers do besides firing transitions: take (claim) and release an item, assign
it (lead officers), correct a computed award with a reason, assign expert panels, and
fire one transition on many applications with a result per item.

Also the predicates for these actions that ``workflow.permissions`` does not have yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..audit import record_event
from ..effects import fen_to_yuan
from ..engine import compiled, fire
from ..errors import (
    ConflictError,
    PermissionDenied,
    TransitionNotAllowed,
    ValidationFailed,
    WorkflowError,
)
from ..models import Application, Call, Review, RoleGrant, User, utcnow
from ..permissions import REVIEW_ROLES, can_assign, can_claim, grant_covers, roles_for
from .experts import assign_expert, expert_pool

# Who may correct an award, and in which stages (before the budget is reserved).
AWARD_CORRECTORS = {
    "city_officer": {"eligibility", "expert", "ranking", "approval"},
    "approver": {"approval"},
}
MAX_AWARD_FEN = 100_000_000_00  # 100 million yuan: anything above is a typing error


# ---------------------------------------------------------------- predicates


def _stage(session: Session, app: Application) -> str:
    return compiled(session, app.definition_id).program.state(app.state).stage


def can_correct_award(session: Session, user: Any, app: Application) -> bool:
    stage = _stage(session, app)
    return any(stage in AWARD_CORRECTORS.get(r, set()) for r in roles_for(user, app))


def _citywide_grant(user: Any, roles: set[str], program_code: str) -> bool:
    """A grant of one of ``roles`` for the program that is not limited to a district: a
    call's meeting and notice concern every district's applications."""
    return isinstance(user, User) and any(
        g.role in roles and g.program_code in (None, program_code) and g.district is None
        for g in user.grants
    )


def can_hold_meeting(user: Any, call: Call) -> bool:
    """City-wide approvers of the call's program hold its approval meeting (审定)."""
    return _citywide_grant(user, {"approver"}, call.program_code)


def can_publish_notice(user: Any, call: Call) -> bool:
    return _citywide_grant(user, {"approver", "city_officer"}, call.program_code)


ASSIGNABLE = frozenset(REVIEW_ROLES - {"admin"})


def reviewers_covering(
    session: Session, app: Application, roles: set[str] | frozenset[str] = ASSIGNABLE
) -> list[User]:
    """Active users holding one of ``roles`` in a grant that covers ``app`` (the lead's
    assignee list)."""
    grants = session.scalars(
        select(RoleGrant).where(RoleGrant.role.in_(sorted(roles & ASSIGNABLE)))
    ).all()
    users = {g.user_id: g.user for g in grants if grant_covers(g, app) and g.user.active}
    return sorted(users.values(), key=lambda u: (u.name, u.id))


# ---------------------------------------------------------------- claim and assign


def claim(session: Session, app: Application, user: User) -> Application:
    """Take an item: it shows as held by ``user`` in every queue."""
    if not can_claim(user, app):
        raise PermissionDenied("您不能领取该申报。", "You cannot take this application.")
    if app.assigned_to_id == user.id:
        return app
    if app.assigned_to_id is not None:
        holder = app.assigned_to.name if app.assigned_to else "?"
        raise TransitionNotAllowed(
            f"该申报已由{holder}领取。", f"This application is already held by {holder}."
        )
    app.assigned_to_id = user.id
    _audit(session, app, user, "application.claim", {"assigned_to": user.id})
    session.flush()
    return app


def release(session: Session, app: Application, user: User) -> Application:
    """Give an item back: its holder, or a lead officer, may do this."""
    if app.assigned_to_id is None:
        return app
    if app.assigned_to_id != user.id and not can_assign(user, app):
        raise PermissionDenied(
            "只有领取人或组长可以释放该申报。", "Only the holder or a lead officer can release it."
        )
    previous = app.assigned_to_id
    app.assigned_to_id = None
    _audit(session, app, user, "application.release", {"released": previous})
    session.flush()
    return app


def assign(session: Session, app: Application, assignee: User, lead: User) -> Application:
    """A lead officer gives an item to a reviewer whose grant covers it."""
    if not can_assign(lead, app):
        raise PermissionDenied("只有组长可以分派申报。", "Only a lead officer can assign work.")
    if not assignee.active or not can_claim(assignee, app):
        raise ValidationFailed(
            f"{assignee.name}的权限范围不包括该申报。",
            f"{assignee.name} is not allowed to review this application.",
            {"assignee": ["out_of_scope"]},
        )
    previous = app.assigned_to_id
    app.assigned_to_id = assignee.id
    _audit(session, app, lead, "application.assign", {"assigned_to": assignee.id, "from": previous})
    session.flush()
    return app


def _audit(
    session: Session, app: Application, user: User, action: str, data: dict[str, Any]
) -> None:
    roles = sorted(roles_for(user, app))
    record_event(
        session,
        action=action,
        entity_type="application",
        entity_id=app.id,
        application_id=app.id,
        actor_id=user.id,
        actor_role=roles[0] if roles else None,
        data=data,
    )


# ---------------------------------------------------------------- award correction


def parse_yuan(raw: Any) -> int:
    """Yuan as typed (``"12,345.6"``) to fen; refuses more than two decimals."""
    text = str(raw or "").strip().replace(",", "").replace("，", "").replace("¥", "")
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value < 0 or value != value.quantize(Decimal("0.01")):
        raise ValidationFailed(
            "请输入不小于零、最多两位小数的金额（元）。",
            "Enter an amount in yuan, not negative, with at most two decimals.",
            {"amount": ["invalid"]},
        )
    fen = int(value * 100)
    if fen > MAX_AWARD_FEN:
        raise ValidationFailed("金额过大。", "The amount is too large.", {"amount": ["too_large"]})
    return fen


def correct_award(
    session: Session,
    app: Application,
    user: User,
    amount_yuan: Any,
    reason: str,
    *,
    expected_version: int | None = None,
) -> Application:
    """Replace the computed award with an officer's amount. The reason is mandatory;
    the old and new amounts are audited; ``compute_award`` keeps the correction when it
    runs again later (``award_trace['correction']``)."""
    if not can_correct_award(session, user, app):
        raise PermissionDenied(
            "您不能在当前阶段更正奖励金额。", "You cannot correct the award at this stage."
        )
    if expected_version is not None and expected_version != app.version:
        raise ConflictError()
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed(
            "更正金额须填写理由。", "A reason is required.", {"reason": ["required"]}
        )
    new_fen = parse_yuan(amount_yuan)
    old_fen = app.award_fen
    trace = dict(app.award_trace or {})
    trace["correction"] = {
        "amount_fen": new_fen,
        "reason": reason[:2000],
        "by": user.id,
        "by_name": user.name,
        "at": utcnow().isoformat(),
        "previous_fen": old_fen,
    }
    app.award_trace = trace
    app.award_fen = new_fen
    _audit_correction(session, app, user, old_fen, new_fen, reason)
    session.flush()
    return app


def _audit_correction(
    session: Session, app: Application, user: User, old: int | None, new: int, reason: str
) -> None:
    roles = sorted(roles_for(user, app))
    record_event(
        session,
        action="award.correct",
        entity_type="application",
        entity_id=app.id,
        application_id=app.id,
        actor_id=user.id,
        actor_role=roles[0] if roles else None,
        reason=reason,
        data={
            "old_fen": old,
            "new_fen": new,
            "old_yuan": None if old is None else str(fen_to_yuan(old)),
            "new_yuan": str(fen_to_yuan(new)),
        },
    )


# ---------------------------------------------------------------- batches


@dataclass
class ItemResult:
    """The outcome of one application in a batch."""

    application_id: int
    number: str | None
    organization: str
    ok: bool
    from_state: str
    to_state: str | None = None
    zh: str | None = None
    en: str | None = None
    status: int = 200

    def message(self, lang: str) -> str | None:
        return self.en if lang == "en" else self.zh


def _attempt(session: Session, app: Application, action: Any) -> ItemResult:
    """Run ``action()`` in a savepoint; on failure roll back only this item.

    The audit log keeps its pending events in ``session.info`` and drops them all on any
    rollback, a savepoint's included; the events recorded before this attempt are still
    part of the transaction, so they are put back (and the failed attempt's are not).
    The outbox's list of new jobs is restored the same way.
    """
    org = app.organization.name if app.organization else ""
    before = app.state
    audit_before = list(session.info.get("audit_pending", []))
    outbox_before = dict(session.info.get("outbox_new", {}))
    try:
        with session.begin_nested():
            action()
    except WorkflowError as exc:
        still_pending = [e for e in audit_before if e.hash is None]
        if still_pending:
            session.info["audit_pending"] = still_pending
        else:
            session.info.pop("audit_pending", None)
        if outbox_before:
            session.info["outbox_new"] = outbox_before
        else:
            session.info.pop("outbox_new", None)
        return ItemResult(app.id, app.number, org, False, before, None, exc.zh, exc.en, exc.status)
    return ItemResult(app.id, app.number, org, True, before, app.state)


def batch_fire(
    session: Session,
    apps: list[Application],
    trigger: str,
    actor: Any,
    *,
    reason: str | None = None,
    payload: dict[str, Any] | None = None,
    today: date,
) -> list[ItemResult]:
    """Fire ``trigger`` on each application; one failing (guard, permission, budget,
    four-eyes, a concurrent change) does not undo the others."""
    return [
        _attempt(
            session,
            app,
            lambda app=app: fire(
                session, app, trigger, actor, reason=reason, payload=payload, today=today
            ),
        )
        for app in apps
    ]


def batch_assign(
    session: Session, apps: list[Application], assignee: User, lead: User
) -> list[ItemResult]:
    return [
        _attempt(session, app, lambda app=app: assign(session, app, assignee, lead)) for app in apps
    ]


# ---------------------------------------------------------------- expert panels


@dataclass
class PanelResult:
    application_id: int
    number: str | None
    assigned: list[str]
    total: int
    short: int


def assign_panel(
    session: Session, apps: list[Application], size: int, actor: User
) -> list[PanelResult]:
    """Bring every application's panel up to ``size`` experts from the pool (fewest open
    assignments first); experts already on it, or who recused, are not picked again."""
    if not 1 <= size <= 15:
        raise ValidationFailed(
            "每件申报的专家人数应在1到15之间。",
            "Between 1 and 15 experts per application.",
            {"size": ["range"]},
        )
    results = []
    for app in apps:
        reviews = session.scalars(
            select(Review).where(Review.application_id == app.id, Review.kind == "expert")
        ).all()
        taken = {r.reviewer_id for r in reviews}
        live = sum(1 for r in reviews if r.status != "recused")
        added: list[str] = []
        for expert in expert_pool(session, app):
            if live >= size:
                break
            if expert.id in taken:
                continue
            assign_expert(session, app, expert, actor)
            taken.add(expert.id)
            live += 1
            added.append(expert.name)
        results.append(PanelResult(app.id, app.number, added, live, max(0, size - live)))
    session.flush()
    return results


def rank_and_select(session: Session, call: Call, actor: Any, *, today: date) -> list[ItemResult]:
    """Rank the call (``experts.rank_call``), then fire ``select`` or ``not_selected`` on
    each ranked application, each in its own savepoint (see ``_attempt``: a failed
    'select' must not take the ranking's audit events with it)."""
    from .experts import rank_call

    outcomes = rank_call(session, call, actor, today=today, fire_outcomes=False)
    results = []
    for outcome in outcomes:
        app = session.get(Application, outcome.application_id)
        for trigger in ("select", "not_selected"):
            result = _attempt(
                session,
                app,
                lambda app=app, trigger=trigger: fire(session, app, trigger, actor, today=today),
            )
            if result.ok:
                break
        results.append(result)
    return results
