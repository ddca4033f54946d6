"""Periodic work: fire the deadline trigger of every application whose working-day
deadline has passed (supplement lapses, end of public notice). Run by RQ's scheduler
queue or by ``flask sweep`` from cron; safe to run as often as you like."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from .engine import compiled, fire
from .errors import WorkflowError
from .models import Application
from .permissions import SystemActor


def sweep_deadlines(session: Session, today: date, limit: int = 1000) -> dict[str, int]:
    """Fire the deadline trigger of applications whose deadline is before ``today``.

    ``deadline_on`` is the last working day on which the applicant (or the public) may
    still act, so an application is due on the first day after it.
    """
    from . import outbox

    counts = {"fired": 0, "skipped": 0}
    due = session.scalars(
        select(Application.id)
        .where(Application.deadline_on.is_not(None), Application.deadline_on < today)
        .order_by(Application.deadline_on, Application.id)
        .limit(limit)
    ).all()
    actor = SystemActor("system")
    for app_id in due:
        app = session.get(Application, app_id)
        if app is None:
            continue
        state = compiled(session, app.definition_id).program.state(app.state)
        if not state.deadline_trigger:
            counts["skipped"] += 1
            continue
        try:
            fire(session, app, state.deadline_trigger, actor, today=today)
            outbox.commit(session)
            counts["fired"] += 1
        except WorkflowError:
            outbox.rollback(session)
            counts["skipped"] += 1
    return counts
