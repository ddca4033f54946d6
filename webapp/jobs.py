"""Running jobs: RQ queues named by purpose, job defaults in one place, the outbox relay
and the in-process fallback used when REDIS_URL is unset."""

from __future__ import annotations

import logging
import os
import traceback
from typing import Any

from flask import Flask, current_app
from sqlalchemy.orm import Session

from workflow import outbox
from workflow.jobs import JOBS, JobEnv
from workflow.models import OutboxJob
from workflow.storage import Storage, storage_from_config

from .extensions import db

log = logging.getLogger(__name__)

# One place for job defaults (per queue): timeout, retries with back-off, TTLs.
JOB_DEFAULTS: dict[str, dict[str, Any]] = {
    "documents": {"job_timeout": 300, "retry": (3, [10, 60, 300]), "failure_ttl": 7 * 86400},
    "notifications": {"job_timeout": 60, "retry": (5, [30, 120, 600]), "failure_ttl": 7 * 86400},
    "exports": {"job_timeout": 1800, "retry": (1, [60]), "failure_ttl": 7 * 86400},
    "scheduled": {"job_timeout": 600, "retry": (2, [60, 300]), "failure_ttl": 3 * 86400},
}


def redis_connection(app: Flask | None = None):
    from redis import Redis

    app = app or current_app
    url = app.config.get("REDIS_URL")
    if not url:
        return None
    conn = app.extensions.get("shenbao_redis")
    if conn is None:
        conn = Redis.from_url(url)
        app.extensions["shenbao_redis"] = conn
    return conn


def rq_queue(name: str, app: Flask | None = None):
    from rq import Queue

    return Queue(name, connection=redis_connection(app))


def job_settings(app: Flask) -> dict[str, Any]:
    keys = (
        "PUBLIC_BASE_URL",
        "MAIL_SERVER",
        "MAIL_PORT",
        "MAIL_FROM",
        "MAIL_USERNAME",
        "MAIL_PASSWORD",
        "MAIL_USE_TLS",
    )
    return {k: app.config.get(k) for k in keys}


def storage(app: Flask | None = None) -> Storage:
    """The app's storage, from ``STORAGE_BACKEND``: the one way views, jobs and commands
    get it. Built on first use (never in the app factory) and once per process: an S3
    client holds a connection pool that must not be shared across a fork."""
    app = app or current_app
    cached = app.extensions.get("shenbao_storage")
    if cached is None or cached[0] != os.getpid():
        cached = (os.getpid(), storage_from_config(app.config))
        app.extensions["shenbao_storage"] = cached
    return cached[1]


def run_job(func: str, args: dict[str, Any]) -> Any:
    """Entry point for RQ workers and the in-process runner (inside an app context)."""
    app = current_app._get_current_object()
    env = JobEnv(session=db.session, storage=storage(app), settings=job_settings(app))
    try:
        result = JOBS[func](env, **args)
        outbox.commit(db.session)
        return result
    except Exception:
        outbox.rollback(db.session)
        raise


def execute_in_worker(func: str, args: dict[str, Any]) -> Any:
    """What RQ calls: builds (once per worker process) an app and runs the job in it."""
    from . import create_app

    app = _WORKER_APP.get("app")
    if app is None:
        app = create_app()
        _WORKER_APP["app"] = app
    with app.app_context():
        if _WORKER_APP.get("pid") != os.getpid():
            # First job in this (forked) process: drop connections inherited from the parent.
            db.engine.dispose(close=False)
            _WORKER_APP["pid"] = os.getpid()
        try:
            return run_job(func, args)
        finally:
            db.session.remove()


_WORKER_APP: dict[str, Any] = {}


def relay(session: Session, jobs: list[OutboxJob]) -> None:
    """Deliver committed outbox rows: enqueue on RQ, or run now in this process."""
    app = current_app._get_current_object()
    delivered: list[int] = []
    pending = [(j.id, j.job_id, j.queue, j.func, dict(j.args)) for j in jobs]
    if app.config.get("REDIS_URL"):
        from redis.exceptions import RedisError
        from rq.job import Job

        for row_id, job_id, queue, func, args in pending:
            q = rq_queue(queue, app)
            try:
                if Job.exists(job_id, connection=q.connection):
                    delivered.append(row_id)  # already sent (relayed twice after a crash)
                    continue
                _enqueue(q, queue, job_id, func, args)
            except RedisError:
                # The change is committed; the job stays in the outbox (relayed_at empty)
                # until `flask outbox relay` / the sweep sends it. Never fail the request.
                log.warning("Redis unavailable: job %s stays in the outbox", job_id, exc_info=True)
                break
            delivered.append(row_id)
        outbox.mark_relayed(session, delivered)
        return
    _relay_in_process(session, pending)


def _enqueue(q, queue: str, job_id: str, func: str, args: dict[str, Any]) -> None:
    from rq import Retry

    defaults = JOB_DEFAULTS[queue]
    max_retries, intervals = defaults["retry"]
    q.enqueue(
        execute_in_worker,
        func,
        args,
        job_id=job_id,
        job_timeout=defaults["job_timeout"],
        failure_ttl=defaults["failure_ttl"],
        retry=Retry(max=max_retries, interval=intervals),
    )


def _relay_in_process(session: Session, pending: list[tuple[Any, ...]]) -> None:
    # In-process: mark first (a failure is recorded on the row, not retried forever).
    outbox.mark_relayed(session, [p[0] for p in pending])
    for row_id, job_id, _queue, func, args in pending:
        try:
            run_job(func, args)
        except Exception as exc:  # keep the request alive; the row keeps the error
            log.exception("in-process job %s failed", job_id)
            _record_failure(session, row_id, exc)


def _record_failure(session: Session, row_id: int, exc: Exception) -> None:
    row = session.get(OutboxJob, row_id)
    if row is not None:
        row.attempts += 1
        row.relayed_at = None if row.attempts < 3 else row.relayed_at
        row.last_error = "".join(traceback.format_exception_only(type(exc), exc))[-2000:]
        session.commit()
