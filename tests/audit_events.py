"""Audit events as a test sees them inside its (rolled-back) transaction: the ones written,
then the ones recorded but not yet written (``workflow.audit`` inserts them, chained, at
commit)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from workflow.audit import pending_events
from workflow.models import AuditEvent


def audit_events(session: Any, action: str | None = None, **where: Any) -> list[AuditEvent]:
    stmt = select(AuditEvent).order_by(AuditEvent.id)
    if action is not None:
        stmt = stmt.where(AuditEvent.action == action)
    for name, value in where.items():
        stmt = stmt.where(getattr(AuditEvent, name) == value)
    written = list(session.scalars(stmt))
    pending = [
        e
        for e in pending_events(session)
        if (action is None or e.action == action)
        and all(getattr(e, name) == value for name, value in where.items())
    ]
    return written + pending
