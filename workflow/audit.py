"""The append-only, hash-chained audit log.

Operations call :func:`record_event`; they never compute hashes. The event is kept in
``session.info`` (not yet in the session) until the transaction commits. Just before it
does, :func:`_chain_pending_events` flushes everything else, locks the single chain-head
row, numbers the transaction's events consecutively, links each to the previous hash and
inserts them, already chained, with one UPDATE of the head. The lock therefore covers one
INSERT, one UPDATE and the commit, never the request's own work. Events recorded inside a
SAVEPOINT that rolls back are forgotten; :func:`pending_events` lets code in the same
transaction see what is recorded but not yet written. :func:`verify_chain` recomputes
everything and reports the first edited, inserted or deleted event.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, insert, select, update
from sqlalchemy.orm import Session, SessionTransaction, scoped_session

from .models import AuditChainHead, AuditEvent, utcnow

GENESIS = "0" * 64


def canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def data_hash(data: Any) -> str:
    return hashlib.sha256(canonical(data).encode("utf-8")).hexdigest()


def record_event(
    session: Session,
    *,
    action: str,
    entity_type: str,
    entity_id: int | None = None,
    actor_id: int | None = None,
    actor_role: str | None = None,
    application_id: int | None = None,
    from_state: str | None = None,
    to_state: str | None = None,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
    hashed_payload: Any = None,
    occurred_at: datetime | None = None,
) -> AuditEvent:
    """Add an audit event to the session (chained at commit). ``hashed_payload`` is a value
    too large to store in the event whose hash should be kept (e.g. the form data)."""
    ev = AuditEvent(
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        actor_id=actor_id,
        actor_role=actor_role,
        application_id=application_id,
        from_state=from_state,
        to_state=to_state,
        reason=reason,
        # Stored as it will read back (Decimals and dates as text), so hashes are stable.
        data=json.loads(canonical(data or {})),
        data_hash=data_hash(hashed_payload) if hashed_payload is not None else None,
        occurred_at=occurred_at or utcnow(),
    )
    # Remember the (sub)transaction it belongs to, so a rolled-back SAVEPOINT drops it.
    real = session() if isinstance(session, scoped_session) else session
    recorded_in = real.info.setdefault("audit_recorded_in", {})
    recorded_in[id(ev)] = real.get_nested_transaction() or real.get_transaction()
    session.info.setdefault("audit_pending", []).append(ev)
    return ev


def pending_events(session: Session) -> list[AuditEvent]:
    """Events recorded in this transaction and not yet written (they are inserted,
    chained, at commit); for checks that must see the transaction's own history."""
    return [e for e in session.info.get("audit_pending", []) if e.hash is None]


def event_digest(ev: AuditEvent, prev_hash: str) -> str:
    body = {
        "seq": ev.seq,
        "occurred_at": ev.occurred_at.astimezone(UTC).isoformat() if ev.occurred_at else None,
        "actor_id": ev.actor_id,
        "actor_role": ev.actor_role,
        "entity_type": ev.entity_type,
        "entity_id": ev.entity_id,
        "application_id": ev.application_id,
        "action": ev.action,
        "from_state": ev.from_state,
        "to_state": ev.to_state,
        "reason": ev.reason,
        "data": ev.data,
        "data_hash": ev.data_hash,
        "prev": prev_hash,
    }
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def _chain_pending_events(session: Session) -> None:
    pending = [e for e in session.info.pop("audit_pending", []) if e.hash is None]
    session.info.pop("audit_recorded_in", None)
    if not pending:
        return
    session.flush()  # everything else first: the lock below covers only the chain
    head = session.execute(
        select(AuditChainHead.last_seq, AuditChainHead.last_hash)
        .where(AuditChainHead.id == 1)
        .with_for_update()
    ).one_or_none()
    if head is None:
        session.add(AuditChainHead(id=1, last_seq=0, last_hash=GENESIS))
        session.flush()
        seq, prev = 0, GENESIS
    else:
        seq, prev = head
    for ev in pending:
        seq += 1
        ev.seq = seq
        ev.prev_hash = prev
        ev.hash = event_digest(ev, prev)
        prev = ev.hash
    # Plain INSERTs of the chained rows (no unit of work: nothing else is pending now).
    session.execute(insert(AuditEvent.__table__), [_row(ev) for ev in pending])
    session.execute(
        update(AuditChainHead).where(AuditChainHead.id == 1).values(last_seq=seq, last_hash=prev)
    )


_EVENT_COLUMNS = [c.key for c in AuditEvent.__table__.columns if c.key != "id"]


def _row(ev: AuditEvent) -> dict[str, Any]:
    return {key: getattr(ev, key) for key in _EVENT_COLUMNS}


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    if session.info.get("audit_pending"):
        _chain_pending_events(session)


@event.listens_for(Session, "after_soft_rollback")
def _after_soft_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    """Forget the events a rollback removed, keep the rest: a rolled-back SAVEPOINT (one
    failed item of a batch) must not drop events recorded before it."""
    pending = session.info.get("audit_pending")
    if pending is None:
        return
    recorded_in = session.info.get("audit_recorded_in", {})
    kept = []
    for ev in pending:
        tx = recorded_in.get(id(ev))
        while tx is not None and tx is not previous_transaction:
            tx = tx.parent
        if tx is None and id(ev) in recorded_in and ev.hash is None:
            kept.append(ev)  # recorded outside the (sub)transaction that rolled back
        else:
            recorded_in.pop(id(ev), None)
    if kept:
        session.info["audit_pending"] = kept
    else:
        _forget(session)


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    """When the outermost transaction ends however it ends (commit, rollback, close), no
    recorded event may carry over into the next one."""
    if transaction.parent is None and transaction.nested is False:
        _forget(session)


def _forget(session: Session) -> None:
    session.info.pop("audit_pending", None)
    session.info.pop("audit_recorded_in", None)


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    problem: str | None = None
    seq: int | None = None


def verify_chain(session: Session, batch: int = 5000) -> VerifyResult:
    """Recompute the chain from the first event; stop at the first mismatch."""
    head = session.get(AuditChainHead, 1)
    prev = GENESIS
    expected_seq = 1
    checked = 0
    last_seq = 0
    while True:
        rows = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.seq >= expected_seq)
            .order_by(AuditEvent.seq)
            .limit(batch)
        ).all()
        if not rows:
            break
        for ev in rows:
            if ev.seq != expected_seq:
                return VerifyResult(
                    False, checked, f"event #{expected_seq} is missing", expected_seq
                )
            if ev.prev_hash != prev:
                return VerifyResult(False, checked, f"event #{ev.seq} does not link", ev.seq)
            if event_digest(ev, prev) != ev.hash:
                return VerifyResult(False, checked, f"event #{ev.seq} was altered", ev.seq)
            prev = ev.hash
            last_seq = ev.seq
            expected_seq += 1
            checked += 1
    unchained = session.scalar(select(AuditEvent.id).where(AuditEvent.seq.is_(None)).limit(1))
    if unchained is not None:
        return VerifyResult(False, checked, f"event id {unchained} is outside the chain", None)
    if head is not None and (head.last_seq != last_seq or head.last_hash != prev):
        return VerifyResult(
            False,
            checked,
            f"the chain ends at #{last_seq} but the head says #{head.last_seq}",
            last_seq,
        )
    return VerifyResult(True, checked)
