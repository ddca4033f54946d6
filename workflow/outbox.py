"""The job outbox: jobs are written in the transaction whose change they depend on and
leave (to RQ, or run in-process) only after that transaction has committed.

``commit(session)`` is the one place the request/CLI/job code commits: it commits, then
relays the jobs that transaction created. If the process dies between the two, the rows
are still there and ``relay_pending`` (run by the scheduler and ``flask outbox relay``)
sends them later; deterministic job ids make a double send harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .models import OutboxJob, utcnow

QUEUES = ("documents", "notifications", "exports", "scheduled")

# Set by the web layer: takes (session, [OutboxJob or Relayable]) and delivers them.
_relay: Callable[[Session, list[Any]], None] | None = None


def set_relay(fn: Callable[[Session, list[Any]], None] | None) -> None:
    global _relay
    _relay = fn


def enqueue(
    session: Session,
    func: str,
    args: dict[str, Any],
    *,
    queue: str,
    job_id: str,
    fresh: bool = False,
) -> None:
    """Record a job. The same ``job_id`` twice is one job (idempotent). ``fresh`` says the
    caller made the id unique (e.g. from a new timestamp), so the database is not asked
    whether it exists; the unique index on ``job_id`` still guards it."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    pending = session.info.setdefault("outbox_new", {})
    if job_id in pending:
        return
    if not fresh:
        exists = session.scalar(select(OutboxJob.id).where(OutboxJob.job_id == job_id))
        if exists is not None:
            return
    row = OutboxJob(job_id=job_id, queue=queue, func=func, args=args)
    session.add(row)
    pending[job_id] = row


@dataclass(frozen=True)
class Relayable:
    """What the relay needs of a committed outbox row (read before the commit expires
    the row, so relaying needs no query)."""

    id: int
    job_id: str
    queue: str
    func: str
    args: dict[str, Any]


def commit(session: Session) -> None:
    """Commit, then relay the jobs this transaction recorded."""
    new = list(session.info.pop("outbox_new", {}).values())
    items: list[Relayable] = []
    if new:
        session.flush()  # ids
        items = [Relayable(j.id, j.job_id, j.queue, j.func, dict(j.args or {})) for j in new]
    session.commit()
    if items and _relay is not None:
        _relay(session, items)


def rollback(session: Session) -> None:
    session.info.pop("outbox_new", None)
    session.rollback()


def mark_relayed(session: Session, job_ids: list[int]) -> None:
    if job_ids:
        session.execute(
            update(OutboxJob).where(OutboxJob.id.in_(job_ids)).values(relayed_at=utcnow())
        )
        session.commit()


def relay_pending(session: Session, limit: int = 500) -> int:
    """Send jobs that were committed but never relayed (crash between commit and relay)."""
    jobs = session.scalars(
        select(OutboxJob).where(OutboxJob.relayed_at.is_(None)).order_by(OutboxJob.id).limit(limit)
    ).all()
    if jobs and _relay is not None:
        _relay(session, list(jobs))
    return len(jobs)
