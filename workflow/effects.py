"""Named effects a transition may declare in YAML (``effects: [reserve_budget, ...]``),
and what every transition does on entering its destination (deadline, documents,
notifications). Each effect writes through the session and flushes nothing itself;
``engine.fire`` flushes once at the end.
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from . import outbox
from .definitions.schema import Program, Transition
from .errors import BudgetExceeded, ValidationFailed
from .models import (
    Application,
    BudgetLedgerEntry,
    Call,
    DocNumberCounter,
    Notification,
    User,
    utcnow,
)
from .rules import check_eligibility, compute_award


def fen_to_yuan(fen: int) -> Decimal:
    return (Decimal(fen) / 100).quantize(Decimal("0.01"))


@dataclass
class EffectContext:
    session: Session
    application: Application
    program: Program
    actor: Any
    transition: Transition
    names: dict[str, Any]
    functions: dict[str, Any]
    payload: dict[str, Any]
    reason: str | None
    today: date
    audit_data: dict[str, Any] = field(default_factory=dict)


_EFFECTS: dict[str, Callable[[EffectContext], None]] = {}


def effect(
    name: str,
) -> Callable[[Callable[[EffectContext], None]], Callable[[EffectContext], None]]:
    def register(fn: Callable[[EffectContext], None]) -> Callable[[EffectContext], None]:
        _EFFECTS[name] = fn
        return fn

    return register


def apply(name: str, ctx: EffectContext) -> None:
    _EFFECTS[name](ctx)


# ---------------------------------------------------------------- counters


def allocate_seq(session: Session, prefix: str, year: int) -> int:
    """Next number for (prefix, year), atomically, inside the caller's transaction.

    The increment is an UPDATE on one row, so concurrent transactions queue on its lock;
    a rolled-back transaction rolls its increment back too, which keeps numbers gapless.
    """
    for _ in range(3):
        with session.no_autoflush:  # the counter does not depend on pending changes
            seq = session.execute(
                update(DocNumberCounter)
                .where(DocNumberCounter.prefix == prefix, DocNumberCounter.year == year)
                .values(last_seq=DocNumberCounter.last_seq + 1)
                .returning(DocNumberCounter.last_seq)
                .execution_options(synchronize_session=False)
            ).scalar()
        if seq is not None:
            return int(seq)
        try:
            with session.begin_nested():
                session.execute(
                    insert(DocNumberCounter).values(prefix=prefix, year=year, last_seq=1)
                )
            return 1
        except IntegrityError:
            continue  # someone else created the row first: increment theirs
    raise RuntimeError(f"could not allocate a number for {prefix} {year}")


# ---------------------------------------------------------------- effects


@effect("freeze_snapshot")
def freeze_snapshot(ctx: EffectContext) -> None:
    """Freeze the form and the list of materials into the snapshot reviewers see."""
    app = ctx.application
    # Effects write the application; ``fire`` flushes it once at the end. Reads of rows
    # the transition does not change (its attachments, counters, users, the deferred
    # JSON) therefore do not autoflush it in between: one UPDATE instead of four.
    with ctx.session.no_autoflush:
        attachments = list(app.attachments)
    app.snapshot = {
        "form": copy.deepcopy(app.form_data or {}),
        "materials": [
            {
                "id": a.id,
                "kind": a.kind,
                "filename": a.filename,
                "sha256": a.sha256,
                "size": a.size,
            }
            for a in attachments
        ],
        "frozen_at": utcnow().isoformat(),
    }
    if app.submitted_at is None:
        app.submitted_at = utcnow()


@effect("assign_number")
def assign_number(ctx: EffectContext) -> None:
    app = ctx.application
    if app.number is None:
        year = ctx.today.year
        seq = allocate_seq(ctx.session, f"#{ctx.program.number_prefix}", year)
        app.number = f"{ctx.program.number_prefix}{year}-{seq:06d}"
        ctx.audit_data["number"] = app.number


@effect("compute_award")
def compute_award_effect(ctx: EffectContext) -> None:
    """Evaluate eligibility and the award formula and store both with their traces.

    An officer's correction (``award_trace.correction``) survives recomputation.
    """
    app = ctx.application
    results = check_eligibility(ctx.program, ctx.names, ctx.functions)
    app.eligibility = [r.as_dict() for r in results]
    award = compute_award(ctx.program, ctx.names, ctx.functions)
    with ctx.session.no_autoflush:
        correction = (app.award_trace or {}).get("correction")
    app.award_trace = award.as_dict()
    if correction:
        app.award_trace["correction"] = correction
        app.award_fen = int(correction["amount_fen"])
    else:
        app.award_fen = award.amount_fen
    ctx.audit_data["award_fen"] = app.award_fen


def reserve(session: Session, app: Application, amount_fen: int, actor_id: int | None) -> None:
    """Reserve ``amount_fen`` of the call's budget, or raise BudgetExceeded.

    A single conditional UPDATE: the database re-checks ``committed + amount <= budget``
    under the row lock, so concurrent approvals can never over-commit (the CHECK
    constraint on calls is the backstop).
    """
    result = session.execute(
        update(Call)
        .where(Call.id == app.call_id, Call.committed_fen + amount_fen <= Call.budget_fen)
        .values(committed_fen=Call.committed_fen + amount_fen)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        call = session.get(Call, app.call_id)
        left = (call.budget_fen - call.committed_fen) if call else 0
        raise BudgetExceeded(
            f"预算不足：本批次剩余 {fen_to_yuan(left)} 元，本申报需 {fen_to_yuan(amount_fen)} 元。",
            f"Budget exhausted: {fen_to_yuan(left)} yuan left in this call, "
            f"{fen_to_yuan(amount_fen)} needed.",
            left_fen=left,
        )
    session.add(
        BudgetLedgerEntry(
            call_id=app.call_id,
            application_id=app.id,
            kind="reserve",
            amount_fen=amount_fen,
            actor_id=actor_id,
        )
    )
    if app.call is not None:
        session.expire(app.call, ["committed_fen"])


def reserved_for(session: Session, app: Application) -> int:
    return int(
        session.scalar(
            select(func.coalesce(func.sum(BudgetLedgerEntry.amount_fen), 0)).where(
                BudgetLedgerEntry.application_id == app.id
            )
        )
        or 0
    )


def release(session: Session, app: Application, actor_id: int | None, reason: str | None) -> int:
    held = reserved_for(session, app)
    if held <= 0:
        return 0
    session.execute(
        update(Call)
        .where(Call.id == app.call_id)
        .values(committed_fen=Call.committed_fen - held)
        .execution_options(synchronize_session=False)
    )
    session.add(
        BudgetLedgerEntry(
            call_id=app.call_id,
            application_id=app.id,
            kind="release",
            amount_fen=-held,
            actor_id=actor_id,
            reason=reason,
        )
    )
    if app.call is not None:
        session.expire(app.call, ["committed_fen"])
    return held


@effect("reserve_budget")
def reserve_budget(ctx: EffectContext) -> None:
    app = ctx.application
    if app.award_fen is None:
        raise ValidationFailed(
            "奖励金额尚未计算，不能审定。", "The award has not been computed; cannot approve."
        )
    if reserved_for(ctx.session, app) > 0:
        return  # already holding its money (e.g. re-approved after an objection)
    actor_id = ctx.actor.id if isinstance(ctx.actor, User) else None
    reserve(ctx.session, app, app.award_fen, actor_id)
    ctx.audit_data["reserved_fen"] = app.award_fen


@effect("release_budget")
def release_budget(ctx: EffectContext) -> None:
    actor_id = ctx.actor.id if isinstance(ctx.actor, User) else None
    released = release(ctx.session, ctx.application, actor_id, ctx.reason)
    if released:
        ctx.audit_data["released_fen"] = released


@effect("set_deadline")
def set_deadline(ctx: EffectContext) -> None:
    """No-op marker: the deadline comes from ``deadline_working_days`` (kept for clarity)."""


@effect("clear_deadline")
def clear_deadline(ctx: EffectContext) -> None:
    ctx.application.deadline_on = None


@effect("open_supplement")
def open_supplement(ctx: EffectContext) -> None:
    """Record exactly which fields and materials the applicant must change (补正)."""
    request = ctx.payload.get("supplement") or {}
    fields = [str(f) for f in request.get("fields", [])]
    materials = [str(m) for m in request.get("materials", [])]
    if not fields and not materials:
        raise ValidationFailed(
            "请至少选择一项需要补正的内容或材料。",
            "Select at least one field or material the applicant must correct.",
            {"supplement": ["empty"]},
        )
    known_fields = _field_keys(ctx.program)
    known_materials = {m.kind for m in ctx.program.materials}
    unknown = [f for f in fields if f not in known_fields] + [
        m for m in materials if m not in known_materials
    ]
    if unknown:
        raise ValidationFailed(
            f"未知的补正项：{', '.join(unknown)}",
            f"Unknown items in the supplement request: {', '.join(unknown)}",
            {"supplement": unknown},
        )
    ctx.application.supplement_request = {
        "fields": fields,
        "materials": materials,
        "note": ctx.reason or "",
        "requested_at": utcnow().isoformat(),
    }
    ctx.audit_data["supplement"] = {"fields": fields, "materials": materials}


def _field_keys(program: Program) -> set[str]:
    keys = set()
    for s in program.form.sections:
        if s.repeatable:
            keys.add(s.key)
        else:
            keys.update(f.key for f in s.fields)
    return keys


@effect("close_supplement")
def close_supplement(ctx: EffectContext) -> None:
    ctx.application.supplement_request = None


@effect("record_payment")
def record_payment(ctx: EffectContext) -> None:
    ctx.audit_data["payment"] = {
        k: ctx.payload.get(k) for k in ("paid_on", "voucher_no", "batch") if ctx.payload.get(k)
    }


@effect("mark_clawback")
def mark_clawback(ctx: EffectContext) -> None:
    ctx.audit_data["clawback"] = {"amount_fen": ctx.payload.get("amount_fen")}


# ---------------------------------------------------------------- every transition


def apply_deadline(ctx: EffectContext) -> None:
    """Set the working-day deadline of the destination state, or clear a stale one."""
    from .domain import add_working_days

    t = ctx.transition
    if t.deadline_working_days is None:
        dest = ctx.program.state(t.dest)
        if dest.deadline_trigger is None and not dest.pauses_deadline:
            ctx.application.deadline_on = None
        return
    days = t.deadline_working_days
    if isinstance(days, str):
        days = int(getattr(ctx.names["params"], days))
    ctx.application.deadline_on = add_working_days(ctx.today, int(days))
    ctx.audit_data["deadline_on"] = ctx.application.deadline_on.isoformat()


def issue_documents(ctx: EffectContext) -> None:
    """Number and freeze each decision the destination state produces; the PDF is
    rendered by a job after commit (``documents`` queue)."""
    from .decisions import create_decision

    dest = ctx.program.state(ctx.transition.dest)
    for spec in dest.documents:
        decision = create_decision(ctx, spec)
        ctx.audit_data.setdefault("decisions", []).append(decision.doc_number)


def new_verification_code() -> str:
    return secrets.token_hex(8).upper()


def notify_applicant(ctx: EffectContext, from_state: str) -> None:
    """In-app notification (and e-mail through the outbox) for the applicant's users when
    the publicly visible stage changes."""
    program = ctx.program
    before = program.state(from_state).public_label
    after = program.state(ctx.application.state).public_label
    if before == after:
        return
    app = ctx.application
    with ctx.session.no_autoflush:
        users = ctx.session.execute(  # three columns, not whole users with their grants
            select(User.id, User.locale, User.email_preferences).where(
                User.organization_id == app.organization_id, User.active.is_(True)
            )
        ).all()
    stamp = ctx.application.state_entered_at.strftime("%Y%m%d%H%M%S%f")
    link = f"/applications/{app.id}"
    rows = []
    for user_id, locale, preferences in users:
        title = f"{program.name.get(locale)}：{after.get(locale)}"
        rows.append(
            {
                "user_id": user_id,
                "kind": "state_change",
                "title": title,
                "body": ctx.reason or "",
                "link": link,
                "application_id": app.id,
                "created_at": utcnow(),
            }
        )
        if (preferences or {}).get("state_change", True):
            outbox.enqueue(
                ctx.session,
                "send_email",
                {"user_id": user_id, "subject": title, "body": ctx.reason or "", "link": link},
                queue="notifications",
                job_id=f"mail-{app.id}-{stamp}-{user_id}",
                # The id carries the transition's microsecond timestamp: it cannot exist yet.
                fresh=True,
            )
    if rows:  # written now with one plain INSERT (nobody reads them back in this request)
        ctx.session.execute(insert(Notification.__table__), rows)
