"""Job functions. Each takes ids (never ORM objects), reloads what it needs, re-checks
state and is safe to run twice. They receive a ``JobEnv`` (session, storage, settings)
from the runner in ``webapp.jobs``, which commits after the function returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from .storage import Storage


@dataclass
class JobEnv:
    session: Session
    storage: Storage
    settings: dict[str, Any] = field(default_factory=dict)


JOBS: dict[str, Callable[..., Any]] = {}


def job(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        JOBS[name] = fn
        return fn

    return register


@job("render_decision")
def render_decision_job(env: JobEnv, decision_id: int) -> str | None:
    from .decisions import render_decision

    return render_decision(
        env.session, decision_id, env.storage, env.settings.get("PUBLIC_BASE_URL", "")
    )


@job("send_email")
def send_email_job(env: JobEnv, user_id: int, subject: str, body: str, link: str) -> bool:
    from .mail import send_user_email

    return send_user_email(env.session, env.settings, user_id, subject, body, link)


@job("sweep_deadlines")
def sweep_deadlines_job(env: JobEnv, today: str | None = None) -> dict[str, int]:
    from datetime import date

    from .scheduler import sweep_deadlines

    return sweep_deadlines(env.session, date.fromisoformat(today) if today else date.today())


@job("export_batch")
def export_batch_job(env: JobEnv, batch_id: int, fmt: str, job_id: str) -> str | None:
    from .export_jobs import write_export

    return write_export(env, batch_id, fmt, job_id)
