"""Sharing an oversubscribed budget (预算分配) at the approval meeting.

The definition's ``award.allocation`` says how:

* ``rank_order``: applications are sorted by the ``order_by`` expression (ascending,
  applications without a value last), then by submission time; they are funded in that
  order until the next one no longer fits, and every one after it is not funded either
  (the order is the rule: a later, smaller application does not jump the queue).
* ``pro_rata``: when the requests exceed what is left, every award is scaled by
  left / requested, rounded down to the fen, so the total never exceeds the budget.
* ``none``: as requested, in submission order, while the budget lasts.

``preview_allocation`` only computes; the meeting sees it before anyone confirms.
``apply_allocation`` writes the pro-rata amounts as audited award corrections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from .context import table_functions
from .definitions.schema import Text
from .effects import fen_to_yuan
from .engine import compiled, names_for
from .errors import ValidationFailed
from .expressions import ExpressionError, evaluate
from .models import Application, Call, User
from .operations.review import correct_award

_LAST = datetime.max.replace(tzinfo=None)


@dataclass
class AllocationRow:
    application: Application
    requested_fen: int | None
    allocated_fen: int = 0
    fits: bool = False
    order_value: Any = None
    cumulative_fen: int = 0

    @property
    def scaled(self) -> bool:
        return self.requested_fen is not None and self.allocated_fen != self.requested_fen


@dataclass
class AllocationPreview:
    method: str
    order_label: Text | None
    budget_fen: int
    committed_fen: int
    requested_fen: int
    rows: list[AllocationRow] = field(default_factory=list)

    @property
    def left_fen(self) -> int:
        return self.budget_fen - self.committed_fen

    @property
    def allocated_fen(self) -> int:
        return sum(r.allocated_fen for r in self.rows if r.fits)

    @property
    def left_after_fen(self) -> int:
        return self.left_fen - self.allocated_fen

    @property
    def oversubscribed(self) -> bool:
        return self.requested_fen > self.left_fen

    @property
    def funded_ids(self) -> list[int]:
        return [r.application.id for r in self.rows if r.fits]


def approval_applications(session: Session, call: Call) -> list[Application]:
    """The call's applications waiting for the approval meeting."""
    apps = session.scalars(
        select(Application)
        .options(joinedload(Application.organization))
        .where(Application.call_id == call.id, Application.state != "draft")
        .order_by(Application.submitted_at, Application.id)
    ).all()
    return [
        a
        for a in apps
        if compiled(session, a.definition_id).program.state(a.state).stage == "approval"
    ]


def _order_value(session: Session, app: Application, expr: str, today: date) -> Any:
    program = compiled(session, app.definition_id).program
    try:
        return evaluate(expr, names_for(session, app, program, today), table_functions())
    except ExpressionError:
        return None


def _sort_key(row: AllocationRow) -> tuple[Any, ...]:
    app = row.application
    submitted = app.submitted_at.replace(tzinfo=None) if app.submitted_at else _LAST
    missing = row.order_value is None
    return (missing, 0 if missing else row.order_value, submitted, app.id)


def preview_allocation(session: Session, call: Call, today: date) -> AllocationPreview:
    program = compiled(session, call.definition_id).program
    allocation = program.award.allocation
    session.refresh(call, ["committed_fen", "budget_fen"])
    rows = [AllocationRow(a, a.award_fen) for a in approval_applications(session, call)]
    requested = sum(r.requested_fen or 0 for r in rows)
    preview = AllocationPreview(
        method=allocation.method,
        order_label=allocation.order_label,
        budget_fen=call.budget_fen,
        committed_fen=call.committed_fen,
        requested_fen=requested,
        rows=rows,
    )
    left = preview.left_fen
    if allocation.method == "pro_rata":
        for r in rows:
            if r.requested_fen is None:
                continue
            if requested > left:
                r.allocated_fen = (r.requested_fen * max(left, 0)) // requested
            else:
                r.allocated_fen = r.requested_fen
            r.fits = r.allocated_fen > 0 or r.requested_fen == 0
        _cumulate(rows)
        return preview
    if allocation.method == "rank_order" and allocation.order_by:
        for r in rows:
            r.order_value = _order_value(session, r.application, allocation.order_by, today)
        rows.sort(key=_sort_key)
    exhausted = False
    running = 0
    for r in rows:
        if r.requested_fen is None:
            continue
        if not exhausted and running + r.requested_fen <= left:
            running += r.requested_fen
            r.allocated_fen, r.fits = r.requested_fen, True
        else:
            # In rank order, the first application that does not fit ends the funding.
            exhausted = allocation.method == "rank_order"
    _cumulate(rows)
    return preview


def _cumulate(rows: list[AllocationRow]) -> None:
    running = 0
    for r in rows:
        if r.fits:
            running += r.allocated_fen
        r.cumulative_fen = running


@dataclass
class AppliedChange:
    application_id: int
    number: str | None
    old_fen: int | None
    new_fen: int


def apply_allocation(
    session: Session, call: Call, actor: User, *, today: date, reason: str
) -> list[AppliedChange]:
    """Write the pro-rata amounts as award corrections (each audited with its old and
    new amount) so the batch approval reserves exactly the scaled amounts."""
    preview = preview_allocation(session, call, today)
    if preview.method != "pro_rata":
        raise ValidationFailed(
            "该项目不按比例分配预算。", "This program does not allocate pro rata."
        )
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed(
            "请填写会议纪要文号或理由。",
            "Give the meeting reference or a reason.",
            {"reason": ["required"]},
        )
    changes = []
    for row in preview.rows:
        if not row.scaled:
            continue
        app = row.application
        note = f"预算不足，按比例分配（{reason}）"
        correct_award(session, app, actor, fen_to_yuan(row.allocated_fen), note)
        changes.append(AppliedChange(app.id, app.number, row.requested_fen, row.allocated_fen))
    return changes
