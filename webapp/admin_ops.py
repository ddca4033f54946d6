"""What administrators do: grant and revoke roles, and look after the job queues (retry
or delete a failed RQ job, send an outbox row again).

Role changes are audited (``role.grant`` / ``role.revoke``, issue 8 item 3), and so are
the queue actions. Like every operation: flush, never commit. The RQ actions act on Redis
at once (Redis has no transaction shared with the database); their audit event commits
with the request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from workflow.audit import record_event
from workflow.engine import compiled
from workflow.errors import NotFound, ValidationFailed, WorkflowError
from workflow.models import ROLES, OutboxJob, ProgramDefinition, RoleGrant, User

# Roles an administrator hands out here. ``applicant`` comes with an organization's
# account (registration or invitation), never from this page.
GRANTABLE_ROLES = tuple(r for r in ROLES if r != "applicant")
# webapp.jobs._record_failure stops retrying an in-process job after this many failures.
IN_PROCESS_ATTEMPTS = 3


class RoleConflict(WorkflowError):
    status = 409


def _actor(admin: User) -> dict[str, Any]:
    return {"actor_id": admin.id, "actor_role": "admin"}


def _grant_data(grant: RoleGrant) -> dict[str, Any]:
    return {
        "role": grant.role,
        "program": grant.program_code,
        "district": grant.district,
        "lead": bool(grant.is_lead),
    }


# ---------------------------------------------------------------- roles


def program_codes(session: Session) -> list[str]:
    return sorted(set(session.scalars(select(ProgramDefinition.code))))


def program_names(session: Session) -> dict[str, Any]:
    """Each program code with the bilingual name of its latest definition."""
    latest = session.execute(
        select(ProgramDefinition.code, func.max(ProgramDefinition.id)).group_by(
            ProgramDefinition.code
        )
    ).all()
    return {code: compiled(session, def_id).program.name for code, def_id in sorted(latest)}


def grant_role(
    session: Session,
    admin: User,
    user: User,
    *,
    role: str,
    program_code: str | None,
    district: str | None,
    is_lead: bool,
    known_districts: set[str],
) -> RoleGrant:
    """Give ``user`` a role, optionally limited to a program and/or a district."""
    program_code = program_code or None
    district = district or None
    errors: dict[str, list[str]] = {}
    if role not in GRANTABLE_ROLES:
        errors["role"] = ["unknown"]
    if program_code and program_code not in program_codes(session):
        errors["program"] = ["unknown"]
    if district and district not in known_districts:
        errors["district"] = ["unknown"]
    if errors:
        raise ValidationFailed(
            "角色、项目或区县无效。", "Unknown role, program or district.", errors
        )
    for g in user.grants:
        if (g.role, g.program_code, g.district) == (role, program_code, district):
            raise RoleConflict(
                "该用户已有相同范围的此角色。",
                "This user already holds this role with the same scope.",
            )
    grant = RoleGrant(role=role, program_code=program_code, district=district, is_lead=is_lead)
    user.grants.append(grant)
    session.flush()
    record_event(
        session,
        action="role.grant",
        entity_type="user",
        entity_id=user.id,
        data={**_grant_data(grant), "grant_id": grant.id},
        **_actor(admin),
    )
    return grant


def revoke_role(session: Session, admin: User, grant: RoleGrant) -> None:
    """Take a role grant away. An administrator cannot remove their own last admin grant
    (nobody would be left to undo it)."""
    user = grant.user
    if (
        user.id == admin.id
        and grant.role == "admin"
        and sum(1 for g in user.grants if g.role == "admin") <= 1
    ):
        raise RoleConflict(
            "不能撤销您自己唯一的管理员角色。",
            "You cannot revoke your own last administrator role.",
        )
    data = {**_grant_data(grant), "grant_id": grant.id}
    user.grants.remove(grant)
    session.flush()
    record_event(
        session,
        action="role.revoke",
        entity_type="user",
        entity_id=user.id,
        data=data,
        **_actor(admin),
    )


# ---------------------------------------------------------------- queues (RQ)


@dataclass
class FailedJob:
    job_id: str
    func: str
    args: dict[str, Any]
    error: str
    ended_at: Any


@dataclass
class QueueState:
    name: str
    queued: int
    started: int
    failed: int
    scheduled: int
    deferred: int
    failed_jobs: list[FailedJob] = field(default_factory=list)


def queue_states(connection: Any, names: tuple[str, ...], limit: int = 50) -> list[QueueState]:
    """Counts per queue and its failed jobs (newest first) with their exception text."""
    from rq import Queue
    from rq.job import Job

    states = []
    for name in names:
        q = Queue(name, connection=connection)
        failed_ids = q.failed_job_registry.get_job_ids(0, limit - 1, desc=True)
        jobs = [j for j in Job.fetch_many(failed_ids, connection=connection) if j is not None]
        states.append(
            QueueState(
                name=name,
                queued=q.count,
                started=q.started_job_registry.count,
                failed=q.failed_job_registry.count,
                scheduled=q.scheduled_job_registry.count,
                deferred=q.deferred_job_registry.count,
                failed_jobs=[_failed(j) for j in jobs],
            )
        )
    return states


def _failed(job: Any) -> FailedJob:
    # Our jobs are execute_in_worker(func_name, args): show the job name and its ids.
    args = list(job.args or [])
    func = str(args[0]) if args else job.func_name
    job_args = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
    result = job.latest_result()
    error = (result.exc_string if result is not None else None) or job.exc_info or ""
    return FailedJob(job.id, func, job_args, str(error)[-4000:], job.ended_at)


def _failed_registry(connection: Any, queue: str):
    from rq import Queue

    return Queue(queue, connection=connection).failed_job_registry


def retry_failed_job(
    session: Session, admin: User, connection: Any, queue: str, job_id: str
) -> None:
    """Put a failed RQ job back on its queue (its id, hence its idempotence, unchanged)."""
    from rq.exceptions import InvalidJobOperation, NoSuchJobError

    try:
        _failed_registry(connection, queue).requeue(job_id)
    except (InvalidJobOperation, NoSuchJobError) as exc:
        raise NotFound(
            "该任务不在失败列表中（可能已被重试或删除）。",
            "This job is not in the failed list (it may have been retried or deleted).",
        ) from exc
    record_event(
        session,
        action="job.retry",
        entity_type="job",
        data={"job_id": job_id, "queue": queue},
        **_actor(admin),
    )


def delete_failed_job(
    session: Session, admin: User, connection: Any, queue: str, job_id: str
) -> None:
    from rq.exceptions import NoSuchJobError

    registry = _failed_registry(connection, queue)
    if job_id not in registry:
        raise NotFound(
            "该任务不在失败列表中（可能已被重试或删除）。",
            "This job is not in the failed list (it may have been retried or deleted).",
        )
    try:
        registry.remove(job_id, delete_job=True)
    except NoSuchJobError:
        registry.connection.zrem(registry.key, job_id)
    record_event(
        session,
        action="job.delete",
        entity_type="job",
        data={"job_id": job_id, "queue": queue},
        **_actor(admin),
    )


# ---------------------------------------------------------------- outbox


def outbox_problems(session: Session, limit: int = 100) -> list[OutboxJob]:
    """Rows not relayed yet (waiting for `flask outbox relay`, or for their next in-process
    attempt) and rows the in-process runner gave up on (3 failures), newest first."""
    gave_up = OutboxJob.last_error.is_not(None) & (OutboxJob.attempts >= IN_PROCESS_ATTEMPTS)
    return list(
        session.scalars(
            select(OutboxJob)
            .where(OutboxJob.relayed_at.is_(None) | gave_up)
            .order_by(OutboxJob.id.desc())
            .limit(limit)
        )
    )


def resend_outbox_job(session: Session, admin: User, row: OutboxJob) -> None:
    """Send an outbox row again after this transaction commits (to RQ, or run in-process).
    Its job id is unchanged, so a job that did reach RQ is not enqueued twice."""
    row.relayed_at = None
    row.last_error = None
    # outbox.commit() relays the rows this transaction recorded: register this one too.
    session.info.setdefault("outbox_new", {})[row.job_id] = row
    session.flush()
    record_event(
        session,
        action="outbox.resend",
        entity_type="outbox",
        entity_id=row.id,
        data={"job_id": row.job_id, "func": row.func, "attempts": row.attempts},
        **_actor(admin),
    )
