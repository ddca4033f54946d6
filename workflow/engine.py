"""The workflow engine: one ``transitions`` machine per definition version, and ``fire``.

Machines are built once per stored definition version and cached; they are never
attached to rows (``auto_transitions=False``, ``model_attribute="state"``): firing an
event passes the ORM object to the shared machine, which reads and writes its ``state``
column. Guards are real machine conditions, so the machine picks the branch; before that
the engine evaluates the same guards itself to explain which rule failed and why.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import event, func, inspect, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from transitions import Machine

from . import effects
from .audit import pending_events, record_event
from .context import build_names, table_functions
from .definitions.loader import parse_program
from .definitions.schema import Program, Transition
from .errors import (
    ConflictError,
    GuardFailed,
    PermissionDenied,
    TransitionNotAllowed,
    ValidationFailed,
)
from .expressions import ExpressionError, evaluate
from .models import Application, AuditEvent, Objection, ProgramDefinition, Review, User, utcnow
from .permissions import Actor, SystemActor, can_fire, roles_for


class _Guard:
    """A machine condition evaluating one guard expression against the event's names."""

    def __init__(self, expr: str):
        self.expr = expr

    def __call__(self, event: Any) -> bool:
        names, functions = event.kwargs["names"], event.kwargs["functions"]
        try:
            return bool(evaluate(self.expr, names, functions))
        except ExpressionError:
            # Same rule as the engine's pre-check: a guard that cannot be evaluated is false,
            # so the machine moves on to the next branch instead of raising.
            return False


# The ``app.*`` facts that cost queries or rule evaluation, and how to spot their use.
COSTLY_FACTS = {
    "eligible": re.compile(r"\bapp\.eligible\b"),
    "objections": re.compile(r"\bapp\.objections_"),
    "experts": re.compile(r"\bapp\.experts_"),
}
ALL_FACTS = frozenset(COSTLY_FACTS)


def facts_used(text: str) -> frozenset[str]:
    return frozenset(k for k, pattern in COSTLY_FACTS.items() if pattern.search(text))


@dataclass
class CompiledDefinition:
    id: int
    version: int
    program: Program
    machine: Machine
    by_trigger: dict[str, list[Transition]] = field(default_factory=dict)
    # Per state: the costly facts a transition leaving it may read (its guards, plus any
    # use elsewhere in the definition: rules, award, effects). Computed once per version.
    needs: dict[str, frozenset[str]] = field(default_factory=dict)
    elsewhere: frozenset[str] = frozenset()
    _needs_of: dict[tuple[str, ...], frozenset[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, row_id: int, version: int, program: Program) -> CompiledDefinition:
        machine = Machine(
            model=None,
            states=[s.name for s in program.states],
            initial=program.initial,
            auto_transitions=False,
            send_event=True,
            model_attribute="state",
        )
        by_trigger: dict[str, list[Transition]] = {}
        for t in program.transitions:
            machine.add_transition(
                t.trigger, t.source, t.dest, conditions=[_Guard(g) for g in t.guards]
            )
            by_trigger.setdefault(t.trigger, []).append(t)
        elsewhere = facts_used(program.model_dump_json(exclude={"transitions"}))
        comp = cls(row_id, version, program, machine, by_trigger, elsewhere=elsewhere)
        comp.needs = {s.name: comp.needs_of(comp.transitions_from(s.name)) for s in program.states}
        return comp

    def needs_in(self, state: str) -> frozenset[str]:
        return self.needs.get(state, ALL_FACTS)

    def needs_of(self, transitions: list[Transition]) -> frozenset[str]:
        """The costly facts these transitions' guards (or the definition elsewhere) read."""
        key = tuple(f"{t.trigger}:{t.dest}" for t in transitions)
        hit = self._needs_of.get(key)
        if hit is None:
            guards = " ".join(g for t in transitions for g in t.guards)
            hit = self._needs_of[key] = self.elsewhere | facts_used(guards)
        return hit

    def candidates(self, trigger: str, state: str) -> list[Transition]:
        return [t for t in self.by_trigger.get(trigger, []) if state in t.source]

    def transitions_from(self, state: str) -> list[Transition]:
        return [t for t in self.program.transitions if state in t.source]


_CACHE: dict[tuple[str, int], CompiledDefinition] = {}
_CACHE_LOCK = threading.Lock()


def compiled(session: Session, definition_id: int) -> CompiledDefinition:
    """The compiled definition for a stored version. Rows are immutable, so the cache key
    is the row id within its database (one process may talk to several databases: tests,
    backups, benchmarks)."""
    bind = session.get_bind()
    key = (str(getattr(bind, "url", None) or bind.engine.url), definition_id)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    row = session.get(ProgramDefinition, definition_id)
    if row is None:
        raise LookupError(f"no program definition with id {definition_id}")
    program = parse_program(row.source_yaml, f"{row.code} v{row.version}")
    built = CompiledDefinition.build(row.id, row.version, program)
    with _CACHE_LOCK:
        _CACHE.setdefault(key, built)
    return _CACHE[key]


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


def stage_for(session: Session, definition_id: int, state: str) -> str:
    """The stage family of ``state`` in its definition ("closed" if unknown)."""
    try:
        return compiled(session, definition_id).program.state(state).stage
    except (KeyError, LookupError):
        return "closed"


@event.listens_for(Session, "before_flush")
def _keep_stage(session: Session, flush_context: Any, instances: Any) -> None:
    """Keep ``Application.stage`` in step with ``state`` however the state was set (the
    machine, an operation, a test factory): queues rely on it."""
    for obj in session.new:
        if isinstance(obj, Application):
            obj.stage = _stage_of_new(session, obj)
    for obj in session.dirty:
        if isinstance(obj, Application) and inspect(obj).attrs.state.history.has_changes():
            obj.stage = stage_for(session, obj.definition_id, obj.state)


def _stage_of_new(session: Session, app: Application) -> str:
    if (app.state or "draft") == "draft":
        return "draft"
    definition_id = app.definition_id or (app.definition.id if app.definition else None)
    if definition_id is None:
        return "closed"
    return stage_for(session, definition_id, app.state)


# ---------------------------------------------------------------- context


def application_facts(
    session: Session,
    application: Application,
    program: Program,
    needs: frozenset[str] = ALL_FACTS,
) -> dict:
    """What guards may ask about an application beyond its form (``app.*``). The counts
    are queried only when ``needs`` names them (see ``CompiledDefinition.needs``)."""
    org = application.organization
    facts: dict[str, Any] = {
        "state": application.state,
        "district": application.district,
        "org_type": org.org_type if org else None,
        "award": (
            None if application.award_fen is None else effects.fen_to_yuan(application.award_fen)
        ),
        "score": application.score,
        "rank": application.rank,
        "has_number": application.number is not None,
    }
    if "experts" in needs and program.scoring is not None and application.id is not None:
        rows = session.execute(
            select(Review.status, func.count())
            .where(Review.application_id == application.id, Review.kind == "expert")
            .group_by(Review.status)
        ).all()
        counts = dict(rows)
        facts["experts_assigned"] = sum(v for k, v in counts.items() if k != "recused")
        facts["experts_submitted"] = counts.get("submitted", 0)
    if "objections" in needs and application.id is not None:
        rows = session.execute(
            select(Objection.status, func.count())
            .where(Objection.application_id == application.id)
            .group_by(Objection.status)
        ).all()
        counts = dict(rows)
        facts["objections_pending"] = counts.get("pending", 0)
        facts["objections_upheld"] = counts.get("upheld", 0)
    return facts


def names_for(
    session: Session,
    application: Application,
    program: Program,
    today: date,
    needs: frozenset[str] = ALL_FACTS,
) -> dict[str, Any]:
    """The names expressions see. ``needs`` limits the costly ``app.*`` facts to those the
    caller's expressions can read (``fire`` passes the current state's; default: all)."""
    org = application.organization
    names = build_names(
        program,
        form_data=application.form_data or {},
        call_params=application.call.params if application.call else {},
        app=application_facts(session, application, program, needs),
        org={"district": org.district, "org_type": org.org_type, "credit_code": org.credit_code}
        if org
        else {},
        today=today,
    )
    if "eligible" in needs and program.eligibility:
        # app.eligible: every blocking rule passes (guards use it to gate a review step).
        from .rules import blocking_failures, check_eligibility

        facts = object.__getattribute__(names["app"], "_data")
        facts["eligible"] = not blocking_failures(
            check_eligibility(program, names, table_functions())
        )
    return names


# ---------------------------------------------------------------- firing


@dataclass
class FireResult:
    from_state: str
    to_state: str
    transition: Transition


def available_transitions(
    session: Session, application: Application, actor: Actor, today: date | None = None
) -> list[Transition]:
    """Transitions ``actor`` may fire now (role, scope and guards), one per trigger."""
    comp = compiled(session, application.definition_id)
    today = today or date.today()
    roles = roles_for(actor, application)
    if not roles:
        return []
    allowed = [t for t in comp.transitions_from(application.state) if roles & set(t.roles)]
    if not allowed:
        return []
    # Only the facts these transitions can read (an applicant's page skips the reviewers'
    # eligibility rules and counts).
    names = names_for(session, application, comp.program, today, comp.needs_of(allowed))
    functions = table_functions()
    out: list[Transition] = []
    seen: set[str] = set()
    for t in allowed:
        if t.trigger in seen:
            continue
        if all(_guard_ok(g, names, functions) for g in t.guards) and not _four_eyes_blocks(
            session, comp.program, application, actor, t.trigger
        ):
            out.append(t)
            seen.add(t.trigger)
    return out


def _guard_ok(expr: str, names: dict[str, Any], functions: dict[str, Any]) -> bool:
    try:
        return bool(evaluate(expr, names, functions))
    except ExpressionError:
        return False


def _four_eyes_blocks(
    session: Session, program: Program, application: Application, actor: Actor, trigger: str
) -> bool:
    rule = program.four_eyes
    if not rule.enabled or trigger not in rule.approval_triggers or not isinstance(actor, User):
        return False
    if application.id is None:
        return False
    actions = [f"transition.{t}" for t in rule.review_triggers]
    if any(  # this transaction's own events are written only at commit
        e.application_id == application.id and e.actor_id == actor.id and e.action in actions
        for e in pending_events(session)
    ):
        return True
    return (
        session.scalar(
            select(AuditEvent.id)
            .where(
                AuditEvent.application_id == application.id,
                AuditEvent.actor_id == actor.id,
                AuditEvent.action.in_(actions),
            )
            .limit(1)
        )
        is not None
    )


def fire(
    session: Session,
    application: Application,
    trigger: str,
    actor: Actor,
    *,
    reason: str | None = None,
    payload: dict[str, Any] | None = None,
    today: date | None = None,
    expected_version: int | None = None,
) -> FireResult:
    """Fire ``trigger`` on ``application`` as ``actor``: permission, guards, the machine,
    effects, audit event, optimistic lock. Flushes; never commits.

    ``expected_version`` is the version the user saw (from the form); a mismatch is a
    conflict even before the database sees it.
    """
    comp = compiled(session, application.definition_id)
    program = comp.program
    today = today or date.today()
    payload = payload or {}
    if expected_version is not None and expected_version != application.version:
        raise ConflictError()

    candidates = comp.candidates(trigger, application.state)
    if not candidates:
        state = program.state(application.state)
        raise TransitionNotAllowed(
            f"当前状态“{state.label.zh}”下不能执行该操作。",
            f"'{trigger}' is not possible in state '{state.label.en or state.name}'.",
            trigger=trigger,
            state=application.state,
        )

    names = names_for(session, application, program, today, comp.needs_in(application.state))
    functions = table_functions()
    chosen, failures = _choose(candidates, names, functions, program)
    if chosen is None:
        raise GuardFailed(failures)

    if not can_fire(actor, application, chosen.roles):
        raise PermissionDenied(
            "您没有权限对该申报执行此操作。",
            "You are not allowed to do this on this application.",
            trigger=trigger,
        )
    if _four_eyes_blocks(session, program, application, actor, trigger):
        raise PermissionDenied(
            "四眼原则：资格审查人不能审定同一申报。",
            "Four-eyes rule: whoever reviewed eligibility cannot also approve it.",
            trigger=trigger,
        )
    reason = (reason or "").strip() or None
    if reason is None and chosen.default_reason is not None:
        reason = chosen.default_reason.zh
    if chosen.reason_required and not reason:
        raise ValidationFailed("请填写理由。", "A reason is required.", {"reason": ["required"]})

    from_state = application.state
    try:
        ok = comp.machine.events[trigger].trigger(application, names=names, functions=functions)
        if not ok or application.state != chosen.dest:
            # The machine and the pre-check disagree: never leave a half-applied change.
            raise TransitionNotAllowed(
                "状态机拒绝了该操作。",
                "The state machine refused this transition.",
                trigger=trigger,
            )

        now = utcnow()
        application.state_entered_at = now
        ctx = effects.EffectContext(
            session=session,
            application=application,
            program=program,
            actor=actor,
            transition=chosen,
            names=names,
            functions=functions,
            payload=payload,
            reason=reason,
            today=today,
        )
        for name in chosen.effects:
            effects.apply(name, ctx)
        effects.apply_deadline(ctx)
        effects.issue_documents(ctx)

        actor_id = actor.id if isinstance(actor, User) else None
        actor_role = _acting_role(actor, application, chosen)
        record_event(
            session,
            action=f"transition.{trigger}",
            entity_type="application",
            entity_id=application.id,
            application_id=application.id,
            actor_id=actor_id,
            actor_role=actor_role,
            from_state=from_state,
            to_state=application.state,
            reason=reason,
            data={k: v for k, v in ctx.audit_data.items()},
            hashed_payload=application.form_data,
            occurred_at=now,
        )
        effects.notify_applicant(ctx, from_state)
        session.flush()
    except StaleDataError:
        # Someone else's transition of this row committed first (optimistic lock); the
        # caller rolls back, so nothing of this attempt is written.
        raise ConflictError() from None
    return FireResult(from_state, application.state, chosen)


def _acting_role(actor: Actor, application: Application, t: Transition) -> str:
    if isinstance(actor, SystemActor):
        return actor.role
    roles = roles_for(actor, application) & set(t.roles)
    return sorted(roles)[0] if roles else "?"


def _choose(
    candidates: list[Transition],
    names: dict[str, Any],
    functions: dict[str, Any],
    program: Program,
) -> tuple[Transition | None, list[dict[str, Any]]]:
    failures: list[dict[str, Any]] = []
    for t in candidates:
        failed = []
        for g in t.guards:
            try:
                ok = bool(evaluate(g, names, functions))
                err = None
            except ExpressionError as exc:
                ok, err = False, exc.message
            if not ok:
                failed.append((g, err))
        if not failed:
            return t, []
        for g, err in failed:
            if "app.eligible" in g:
                failures.extend(_failed_rules(program, names, functions))
            failures.append(_explain_guard(program, t, g, err))
    return None, failures


def _failed_rules(
    program: Program, names: dict[str, Any], functions: dict[str, Any]
) -> list[dict[str, Any]]:
    """The blocking eligibility rules behind a failed ``app.eligible`` guard."""
    from .rules import blocking_failures, check_eligibility

    return [
        {
            "guard": "app.eligible",
            "rule": r.id,
            "zh": f"{r.id} {r.reviewer_message['zh']}",
            "en": f"{r.id} {r.reviewer_message.get('en') or r.reviewer_message['zh']}",
            "error": r.error,
        }
        for r in blocking_failures(check_eligibility(program, names, functions))
    ]


def _explain_guard(program: Program, t: Transition, guard: str, err: str | None) -> dict[str, Any]:
    """Turn a failed guard into a message: rule references get the rule's own message."""
    for rule in program.eligibility:
        if rule.id in guard or rule.expr == guard:
            return {
                "guard": guard,
                "rule": rule.id,
                "zh": rule.reviewer_message.zh,
                "en": rule.reviewer_message.en,
                "error": err,
            }
    return {
        "guard": guard,
        "rule": None,
        "zh": f"{t.label.zh}的条件不满足（{guard}）" + (f"：{err}" if err else ""),
        "en": f"condition for '{t.label.en or t.trigger}' not met ({guard})"
        + (f": {err}" if err else ""),
        "error": err,
    }
