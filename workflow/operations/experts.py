"""Expert review (专家评审): panels, conflict declarations and recusal, score sheets,
aggregation and ranking of a call."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..audit import record_event
from ..definitions.schema import Program
from ..engine import compiled, fire, names_for
from ..errors import PermissionDenied, TransitionNotAllowed, ValidationFailed, WorkflowError
from ..expressions import ExpressionError, evaluate
from ..models import Application, Call, Review, RoleGrant, User, utcnow
from ..permissions import SystemActor, grant_covers
from ..values import typed_params

THREE = Decimal("0.001")


def _program(session: Session, app: Application) -> Program:
    return compiled(session, app.definition_id).program


def assign_expert(session: Session, app: Application, expert: User, actor: Any) -> Review:
    program = _program(session, app)
    if program.scoring is None:
        raise ValidationFailed("该项目没有专家评审。", "This program has no expert review.")
    if program.state(app.state).stage != "expert":
        raise TransitionNotAllowed("申报不在专家评审阶段。", "Not in expert review.")
    if not any(g.role == "expert" and grant_covers(g, app) for g in expert.grants):
        raise PermissionDenied("该用户不是本项目的评审专家。", "This user is not an expert here.")
    existing = session.scalar(
        select(Review).where(
            Review.application_id == app.id,
            Review.reviewer_id == expert.id,
            Review.kind == "expert",
        )
    )
    if existing is not None:
        if existing.status == "recused":
            raise ValidationFailed("该专家已回避。", "This expert has recused themselves.")
        return existing
    review = Review(
        application_id=app.id,
        reviewer_id=expert.id,
        stage=app.state,
        kind="expert",
        status="assigned",
    )
    session.add(review)
    session.flush()
    record_event(
        session,
        action="expert.assign",
        entity_type="review",
        entity_id=review.id,
        application_id=app.id,
        actor_id=getattr(actor, "id", None),
        data={"expert_id": expert.id},
    )
    return review


def expert_pool(session: Session, app: Application) -> list[User]:
    """Experts whose grant covers this application, fewest open assignments first."""
    grants = session.scalars(select(RoleGrant).where(RoleGrant.role == "expert")).all()
    users = {g.user_id: g.user for g in grants if grant_covers(g, app) and g.user.active}
    load = dict(
        session.execute(
            select(Review.reviewer_id, func.count())
            .where(Review.kind == "expert", Review.status == "assigned")
            .group_by(Review.reviewer_id)
        ).all()
    )
    return sorted(users.values(), key=lambda u: (load.get(u.id, 0), u.id))


def recuse(session: Session, review: Review, expert: User, reason: str) -> Review | None:
    """The expert declares a conflict of interest and steps aside; a replacement from the
    pool (not yet on this application) is assigned automatically when one exists."""
    if review.reviewer_id != expert.id:
        raise PermissionDenied("只能处理分配给自己的评审。", "Only your own assignments.")
    if review.status == "submitted":
        raise ValidationFailed("已提交评分，不能回避。", "Scores already submitted.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed(
            "请说明回避理由。", "Give the reason for recusal.", {"reason": ["required"]}
        )
    review.status = "recused"
    review.no_conflict_declared = False
    review.recusal_reason = reason[:2000]
    app = session.get(Application, review.application_id)
    record_event(
        session,
        action="expert.recuse",
        entity_type="review",
        entity_id=review.id,
        application_id=review.application_id,
        actor_id=expert.id,
        actor_role="expert",
        reason=reason,
    )
    taken = set(
        session.scalars(
            select(Review.reviewer_id).where(
                Review.application_id == review.application_id, Review.kind == "expert"
            )
        ).all()
    )
    for candidate in expert_pool(session, app):
        if candidate.id not in taken:
            replacement = assign_expert(session, app, candidate, SystemActor("system"))
            record_event(
                session,
                action="expert.reassign",
                entity_type="review",
                entity_id=replacement.id,
                application_id=app.id,
                actor_role="system",
                data={"replaces": expert.id, "expert_id": candidate.id},
            )
            return replacement
    return None


def submit_scores(
    session: Session,
    review: Review,
    expert: User,
    scores: dict[str, Any],
    comment: str | None,
    *,
    no_conflict: bool,
) -> Review:
    """Store a score sheet: each criterion between 0 and its maximum, a weighted total.

    Submitting requires the no-conflict declaration; a submitted sheet is final.
    """
    if review.reviewer_id != expert.id:
        raise PermissionDenied(
            "只能为分配给自己的申报评分。", "You can only score your own assignments."
        )
    if review.status != "assigned":
        raise ValidationFailed(
            "该评分表已提交或已回避。", "This sheet is already submitted or recused."
        )
    if not no_conflict:
        raise ValidationFailed(
            "请先声明与申报单位无利害关系，或选择回避。",
            "Declare that you have no conflict of interest, or recuse yourself.",
            {"no_conflict": ["required"]},
        )
    app = session.get(Application, review.application_id)
    program = _program(session, app)
    assert program.scoring is not None
    clean: dict[str, str] = {}
    errors: dict[str, list[str]] = {}
    total = Decimal(0)
    for c in program.scoring.rubric:
        raw = scores.get(c.key)
        try:
            value = Decimal(str(raw).strip())
            if not value.is_finite():
                raise ArithmeticError
        except (ArithmeticError, ValueError, TypeError):
            errors[c.key] = ["请填写分数。", "Enter a score."]
            continue
        if value < 0 or value > Decimal(c.max_points):
            errors[c.key] = [f"应在0到{c.max_points}之间。", f"Between 0 and {c.max_points}."]
            continue
        clean[c.key] = str(value)
        total += value * Decimal(c.weight)
    if errors:
        raise ValidationFailed("评分表有误。", "The score sheet has errors.", errors)
    review.scores = clean
    review.total = total.quantize(THREE, rounding=ROUND_HALF_UP)
    review.comment = (comment or "").strip()[:5000] or None
    review.no_conflict_declared = True
    review.status = "submitted"
    review.submitted_at = utcnow()
    record_event(
        session,
        action="expert.score",
        entity_type="review",
        entity_id=review.id,
        application_id=review.application_id,
        actor_id=expert.id,
        actor_role="expert",
        data={"total": str(review.total)},
        hashed_payload=clean,
    )
    session.flush()
    return review


@dataclass
class Aggregate:
    count: int
    mean: Decimal | None
    final: Decimal | None
    spread: Decimal | None
    stdev: Decimal | None
    dropped: list[Decimal]
    totals: list[Decimal]
    criterion_means: dict[str, Decimal]


def aggregate(session: Session, app: Application) -> Aggregate:
    """Mean of the submitted sheets' weighted totals; with drop-extremes on and at least
    five sheets, the single highest and lowest totals are left out of the final score."""
    program = _program(session, app)
    assert program.scoring is not None
    sheets = session.scalars(
        select(Review).where(
            Review.application_id == app.id, Review.kind == "expert", Review.status == "submitted"
        )
    ).all()
    totals = sorted(Decimal(s.total) for s in sheets if s.total is not None)
    if not totals:
        return Aggregate(0, None, None, None, None, [], [], {})
    params = typed_params(program, app.call.params)
    drop = bool(
        program.scoring.drop_extremes_param and params.get(program.scoring.drop_extremes_param)
    )
    kept, dropped = totals, []
    if drop and len(totals) >= 5:
        kept, dropped = totals[1:-1], [totals[0], totals[-1]]
    mean = sum(totals) / len(totals)
    final = (sum(kept) / len(kept)).quantize(THREE, rounding=ROUND_HALF_UP)
    crit: dict[str, Decimal] = {}
    for c in program.scoring.rubric:
        values = [Decimal(s.scores[c.key]) for s in sheets if s.scores and c.key in s.scores]
        if values:
            crit[c.key] = (sum(values) / len(values)).quantize(THREE, rounding=ROUND_HALF_UP)
    stdev = (
        Decimal(str(statistics.pstdev([float(t) for t in totals]))).quantize(THREE)
        if len(totals) > 1
        else Decimal(0)
    )
    return Aggregate(
        count=len(totals),
        mean=mean.quantize(THREE, rounding=ROUND_HALF_UP),
        final=final,
        spread=(totals[-1] - totals[0]),
        stdev=stdev,
        dropped=dropped,
        totals=totals,
        criterion_means=crit,
    )


@dataclass
class RankOutcome:
    application_id: int
    score: Decimal | None
    rank: int | None
    trigger: str | None
    error: str | None = None


def rank_call(
    session: Session, call: Call, actor: Any, *, today: date, fire_outcomes: bool = True
) -> list[RankOutcome]:
    """Score and rank every application of the call waiting in a ranking state, then fire
    ``select`` on those whose guards pass and ``not_selected`` on the rest."""
    apps = session.scalars(
        select(Application).where(Application.call_id == call.id).order_by(Application.id)
    ).all()
    waiting = [a for a in apps if _program(session, a).state(a.state).stage == "ranking"]
    if not waiting:
        return []
    program = _program(session, waiting[0])
    assert program.scoring is not None
    keyed = []
    for app in waiting:
        agg = aggregate(session, app)
        app.score = agg.final
        tie: list[Any] = []
        for key in program.scoring.tie_breakers:
            tie.append(-(agg.criterion_means.get(key) or Decimal(0)))
        if program.scoring.tie_break_field:
            try:
                value = evaluate(
                    program.scoring.tie_break_field, names_for(session, app, program, today)
                )
            except ExpressionError:
                value = None
            tie.append(value if value is not None else Decimal("Infinity"))
        keyed.append((-(agg.final or Decimal(-1)), *tie, app.submitted_at or utcnow(), app.id, app))
    keyed.sort(key=lambda k: k[:-1])
    outcomes = []
    for position, item in enumerate(keyed, start=1):
        app = item[-1]
        app.rank = position
        record_event(
            session,
            action="ranking.rank",
            entity_type="application",
            entity_id=app.id,
            application_id=app.id,
            actor_id=getattr(actor, "id", None),
            data={"score": str(app.score), "rank": position},
        )
        outcomes.append(RankOutcome(app.id, app.score, position, None))
    session.flush()
    if not fire_outcomes:
        return outcomes
    for outcome, item in zip(outcomes, keyed, strict=True):
        app = item[-1]
        for trigger in ("select", "not_selected"):
            try:
                with session.begin_nested():
                    fire(session, app, trigger, actor, today=today)
                outcome.trigger = trigger
                break
            except WorkflowError as exc:
                outcome.error = exc.en
        else:
            continue
        outcome.error = None
    return outcomes
