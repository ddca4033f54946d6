"""Proposed engine changes, as code, measured by the engine benchmark's
``engine_proposed`` mode. They are applied by monkeypatching inside the benchmark worker
process only; ``workflow/`` is not modified. docs/PERFORMANCE.md describes each change
for the engine's owners, with what it saved.

1. ``names_for`` computes only the facts the guards of the transitions leaving the
   current state refer to: the objection and expert-review counts are two queries, and
   ``app.eligible`` runs every eligibility rule, on every transition, although only a few
   transitions' guards read them (``end_notice``, ``complete_scoring``,
   ``pass_eligibility``).
2. ``notify_applicant`` selects the three columns it needs instead of whole ``User``
   rows (which also pulls every user's role grants through the selectin relationship),
   and records its e-mail jobs without first querying the outbox for a job id that
   carries a fresh microsecond timestamp and so cannot exist yet.
3. The audit chain inserts each event once, already chained, at commit, instead of
   INSERT at flush and UPDATE (seq, prev_hash, hash) at commit; everything else is
   flushed before the chain-head lock is taken, so the lock covers one INSERT, one
   UPDATE and the commit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

_NEEDS: dict[tuple[int, str], tuple[Any, frozenset[str]]] = {}


def _needs(program: Any, state: str) -> frozenset[str]:
    """The ``app.*`` facts that guards of transitions leaving ``state`` read (once per
    compiled program and state; the program is kept in the value so its id stays unique)."""
    key = (id(program), state)
    hit = _NEEDS.get(key)
    if hit is None:
        text = " ".join(g for t in program.transitions if state in t.source for g in t.guards)
        facts = frozenset(k for k in ("eligible", "objections", "experts") if f"app.{k}" in text)
        hit = _NEEDS[key] = (program, facts)
    return hit[1]


def names_for(session: Any, application: Any, program: Any, today: Any) -> dict[str, Any]:
    from sqlalchemy import func, select

    from workflow import effects
    from workflow.context import build_names
    from workflow.models import Objection, Review

    needs = _needs(program, application.state)
    org = application.organization
    facts: dict[str, Any] = {
        "state": application.state,
        "district": application.district,
        "org_type": org.org_type if org else None,
        "award": None
        if application.award_fen is None
        else effects.fen_to_yuan(application.award_fen),
        "score": application.score,
        "rank": application.rank,
        "has_number": application.number is not None,
    }
    if "experts" in needs and program.scoring is not None and application.id is not None:
        counts = dict(
            session.execute(
                select(Review.status, func.count())
                .where(Review.application_id == application.id, Review.kind == "expert")
                .group_by(Review.status)
            ).all()
        )
        facts["experts_assigned"] = sum(v for k, v in counts.items() if k != "recused")
        facts["experts_submitted"] = counts.get("submitted", 0)
    if "objections" in needs and application.id is not None:
        counts = dict(
            session.execute(
                select(Objection.status, func.count())
                .where(Objection.application_id == application.id)
                .group_by(Objection.status)
            ).all()
        )
        facts["objections_pending"] = counts.get("pending", 0)
        facts["objections_upheld"] = counts.get("upheld", 0)
    names = build_names(
        program,
        form_data=application.form_data or {},
        call_params=application.call.params if application.call else {},
        app=facts,
        org={"district": org.district, "org_type": org.org_type, "credit_code": org.credit_code}
        if org
        else {},
        today=today,
    )
    if "eligible" in needs and program.eligibility:
        from workflow.context import table_functions
        from workflow.rules import blocking_failures, check_eligibility

        data = object.__getattribute__(names["app"], "_data")
        data["eligible"] = not blocking_failures(
            check_eligibility(program, names, table_functions())
        )
    return names


def notify_applicant(ctx: Any, from_state: str) -> None:
    from sqlalchemy import select

    from workflow.models import Notification, OutboxJob, User

    program = ctx.program
    before = program.state(from_state).public_label
    after = program.state(ctx.application.state).public_label
    if before == after:
        return
    app = ctx.application
    users = ctx.session.execute(
        select(User.id, User.locale, User.email_preferences).where(
            User.organization_id == app.organization_id, User.active.is_(True)
        )
    ).all()
    stamp = app.state_entered_at.strftime("%Y%m%d%H%M%S%f")
    pending = ctx.session.info.setdefault("outbox_new", {})
    for user_id, locale, prefs in users:
        title = f"{program.name.get(locale)}：{after.get(locale)}"
        link = f"/applications/{app.id}"
        ctx.session.add(
            Notification(
                user_id=user_id,
                kind="state_change",
                title=title,
                body=ctx.reason or "",
                link=link,
                application_id=app.id,
            )
        )
        if (prefs or {}).get("state_change", True):
            job_id = f"mail-{app.id}-{stamp}-{user_id}"
            row = OutboxJob(
                job_id=job_id,
                queue="notifications",
                func="send_email",
                args={"user_id": user_id, "subject": title, "body": ctx.reason or "", "link": link},
            )
            ctx.session.add(row)  # fresh timestamp in the id: no existence query needed
            pending[job_id] = row


def record_event(session: Any, **kwargs: Any) -> Any:
    """Like ``audit.record_event`` but the row is added at commit, already chained."""
    from workflow import audit
    from workflow.models import AuditEvent, utcnow

    hashed = kwargs.pop("hashed_payload", None)
    data = kwargs.pop("data", None)
    occurred_at = kwargs.pop("occurred_at", None)
    ev = AuditEvent(
        **kwargs,
        data=audit.json.loads(audit.canonical(data or {})),
        data_hash=audit.data_hash(hashed) if hashed is not None else None,
        occurred_at=occurred_at or utcnow(),
    )
    # Not added to the session: chain_pending_events adds it, chained, at commit.
    session.info.setdefault("audit_pending", []).append(ev)
    return ev


def chain_pending_events(session: Any) -> None:
    from sqlalchemy import inspect, select, update

    from workflow.audit import GENESIS, event_digest
    from workflow.models import AuditChainHead

    pending = [e for e in session.info.pop("audit_pending", []) if e.hash is None]
    added = [e for e in pending if inspect(e).transient]
    if not pending:
        return
    session.flush()  # everything else first: the lock below covers only the chain
    head = session.execute(
        select(AuditChainHead).where(AuditChainHead.id == 1).with_for_update()
    ).scalar_one_or_none()
    if head is None:
        head = AuditChainHead(id=1, last_seq=0, last_hash=GENESIS)
        session.add(head)
        session.flush()
    seq, prev = head.last_seq, head.last_hash
    for ev in pending:
        seq += 1
        ev.seq, ev.prev_hash = seq, prev
        ev.hash = event_digest(ev, prev)
        prev = ev.hash
    session.add_all(added)
    session.execute(
        update(AuditChainHead).where(AuditChainHead.id == 1).values(last_seq=seq, last_hash=prev)
    )
    session.flush()


@contextlib.contextmanager
def patched() -> Iterator[None]:
    """Install the proposals in this process for the duration of the block (benchmark
    workers only), then put the originals back."""
    from workflow import audit, effects, engine

    swaps = [
        (engine, "names_for", names_for),
        (effects, "notify_applicant", notify_applicant),
        (engine, "record_event", record_event),
        (audit, "_chain_pending_events", chain_pending_events),
    ]
    originals = [(mod, name, getattr(mod, name)) for mod, name, _new in swaps]
    for mod, name, new in swaps:
        setattr(mod, name, new)
    try:
        yield
    finally:
        for mod, name, old in originals:
            setattr(mod, name, old)
