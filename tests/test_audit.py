"""The hash-chained audit trail detects edited, deleted and inserted events."""

from __future__ import annotations

from datetime import date

from sqlalchemy import delete, select, update

from workflow.audit import record_event, verify_chain
from workflow.models import AuditEvent


def _events(session, n=4):
    for i in range(n):
        record_event(
            session,
            action="test.event",
            entity_type="test",
            entity_id=i,
            data={"i": i, "when": date(2026, 1, 1 + i)},
        )
    session.commit()
    return session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()


def test_chain_is_gapless_and_verifies(session):
    events = _events(session)
    seqs = [e.seq for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert all(e.prev_hash == p.hash for p, e in zip(events, events[1:], strict=False))
    result = verify_chain(session)
    assert result.ok and result.checked == len(events)


def test_edited_event_is_detected(session):
    events = _events(session)
    session.execute(
        update(AuditEvent).where(AuditEvent.id == events[1].id).values(reason="edited afterwards")
    )
    session.expire_all()
    result = verify_chain(session)
    assert not result.ok and "altered" in result.problem and result.seq == events[1].seq


def test_deleted_event_is_detected(session):
    events = _events(session)
    session.execute(delete(AuditEvent).where(AuditEvent.id == events[2].id))
    session.expire_all()
    result = verify_chain(session)
    assert not result.ok and "missing" in result.problem


def test_deleted_last_event_is_detected(session):
    events = _events(session)
    session.execute(delete(AuditEvent).where(AuditEvent.id == events[-1].id))
    session.expire_all()
    result = verify_chain(session)
    assert not result.ok and "head" in result.problem


def test_rolled_back_events_leave_no_trace(session):
    _events(session, 2)
    record_event(session, action="test.rolled_back", entity_type="test")
    session.rollback()
    assert verify_chain(session).ok
    assert session.scalar(select(AuditEvent).where(AuditEvent.action == "test.rolled_back")) is None


def test_savepoint_rollback_keeps_earlier_pending_events(session):
    record_event(session, action="test.before", entity_type="test")
    try:
        with session.begin_nested():
            record_event(session, action="test.inside", entity_type="test")
            raise RuntimeError("one batch item fails")
    except RuntimeError:
        pass
    session.commit()
    actions = session.scalars(
        select(AuditEvent.action).where(AuditEvent.action.like("test.%"))
    ).all()
    assert actions == ["test.before"]
    assert verify_chain(session).ok
