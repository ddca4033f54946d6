"""What runs inside an engine-benchmark worker process: one transition per mode (the
request-shaped ``fire`` and the plain-SQL references),
the loop that times them, and the CPU and chain-lock measurements."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

TRIGGER = "district_pass"
FROM_STATE, TO_STATE = "district_review", "city_review"


class Timer:
    """Wall time spent in the database (statements and commit) and the chain-lock
    hold time, collected through SQLAlchemy events (engine mode)."""

    def __init__(self) -> None:
        self.db = 0.0
        self.lock_at: float | None = None
        self.held: list[float] = []
        self._t = 0.0

    def install(self, engine: Any, session: Any) -> None:
        from sqlalchemy import event

        @event.listens_for(engine, "before_cursor_execute")
        def _before(conn, cursor, statement, params, context, executemany):  # noqa: ANN001
            self._t = time.perf_counter()

        @event.listens_for(engine, "after_cursor_execute")
        def _after(conn, cursor, statement, params, context, executemany):  # noqa: ANN001
            now = time.perf_counter()
            self.db += now - self._t
            # The chain head is read only under its lock (SELECT ... FOR UPDATE on
            # PostgreSQL; SQLite locks the whole database for the write anyway).
            if statement.lstrip().startswith("SELECT") and "FROM audit_chain_head" in statement:
                self.lock_at = now

        @event.listens_for(engine, "commit")
        def _commit_start(conn):  # noqa: ANN001
            self._t = time.perf_counter()

        @event.listens_for(session, "after_commit")
        def _committed(sess):  # noqa: ANN001
            now = time.perf_counter()
            self.db += now - self._t
            if self.lock_at is not None:
                self.held.append(now - self.lock_at)
                self.lock_at = None


def engine_items(url: str, today: date, timer: Timer | None):
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from workflow import outbox
    from workflow.engine import compiled, fire
    from workflow.loaders import load_application, load_user
    from workflow.models import ProgramDefinition

    outbox.set_relay(None)  # relay (RQ enqueue) happens after the commit; not measured here
    engine = create_engine(url, pool_size=1, max_overflow=0)
    session = Session(engine)
    # A long-running web worker has every definition compiled; so does this one.
    for definition_id in session.scalars(select(ProgramDefinition.id)).all():
        compiled(session, definition_id)
    session.close()
    if timer is not None:
        timer.install(engine, session)

    def one(app_id: int, officer_id: int, _version: int) -> None:
        try:
            user = load_user(session, officer_id)
            app = load_application(session, app_id)
            fire(session, app, TRIGGER, user, expected_version=app.version, today=today)
            outbox.commit(session)
        except Exception:
            outbox.rollback(session)
            raise
        finally:
            session.close()

    def backend_pid() -> int:
        raw = session.connection().connection.driver_connection
        session.close()
        return int(getattr(getattr(raw, "info", None), "backend_pid", 0))

    return one, lambda: engine.dispose(), backend_pid


def sql_items(url: str, minimal: bool, timer: Timer | None):
    import psycopg

    from workflow.audit import canonical, event_digest

    from .common import is_postgres

    assert is_postgres(url)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    conn = psycopg.connect(dsn, autocommit=False)
    cur = conn.cursor()

    def one(app_id: int, officer_id: int, version: int) -> None:
        t0 = time.perf_counter()
        now = datetime.now(UTC)
        cur.execute(
            "UPDATE applications SET state = %s, stage = 'eligibility', version = version + 1, "
            "state_entered_at = %s, "
            "updated_at = %s, deadline_on = NULL WHERE id = %s AND version = %s "
            "RETURNING organization_id, encode(sha256(convert_to(form_data::text, 'UTF8')), 'hex')",
            (TO_STATE, now, now, app_id, version),
        )
        row = cur.fetchone()
        if row is None:
            conn.rollback()
            raise RuntimeError(f"stale version for application {app_id}")
        org_id, form_hash = row
        if not minimal:
            cur.execute(
                "INSERT INTO notifications (user_id, kind, title, body, link, application_id, "
                "created_at) SELECT id, 'state_change', %s, '', %s, %s, %s FROM users "
                "WHERE organization_id = %s AND active RETURNING user_id",
                ("申报：市局审查中", f"/applications/{app_id}", app_id, now, org_id),
            )
            users = [r[0] for r in cur.fetchall()]
            stamp = now.strftime("%Y%m%d%H%M%S%f")
            for uid in users:
                cur.execute(
                    "INSERT INTO outbox (job_id, queue, func, args, created_at, attempts) "
                    "VALUES (%s, 'notifications', 'send_email', %s, %s, 0)",
                    (
                        f"mail-{app_id}-{stamp}-{uid}-sql",
                        json.dumps({"user_id": uid, "subject": "申报：市局审查中"}),
                        now,
                    ),
                )
        cur.execute("SELECT last_seq, last_hash FROM audit_chain_head WHERE id = 1 FOR UPDATE")
        seq, prev = cur.fetchone()
        locked = time.perf_counter()
        seq += 1
        ev = _Event(seq, now, officer_id, app_id, form_hash)
        digest = event_digest(ev, prev)  # type: ignore[arg-type]
        cur.execute(
            "INSERT INTO audit_events (seq, occurred_at, actor_id, actor_role, entity_type, "
            "entity_id, application_id, action, from_state, to_state, reason, data, data_hash, "
            "prev_hash, hash) VALUES (%s, %s, %s, 'district_officer', 'application', %s, %s, "
            "%s, %s, %s, NULL, %s, %s, %s, %s)",
            (
                seq,
                now,
                officer_id,
                app_id,
                app_id,
                f"transition.{TRIGGER}",
                FROM_STATE,
                TO_STATE,
                canonical({}),
                form_hash,
                prev,
                digest,
            ),
        )
        cur.execute(
            "UPDATE audit_chain_head SET last_seq = %s, last_hash = %s WHERE id = 1", (seq, digest)
        )
        conn.commit()
        done = time.perf_counter()
        if timer is not None:
            timer.held.append(done - locked)
            timer.db += done - t0  # all of it but a hash: this mode is the database

    return one, conn.close, lambda: int(conn.info.backend_pid)


class _Event:
    """The fields ``event_digest`` reads, for the hand-written audit event."""

    def __init__(self, seq: int, at: datetime, actor: int, app_id: int, form_hash: str):
        self.seq = seq
        self.occurred_at = at
        self.actor_id = actor
        self.actor_role = "district_officer"
        self.entity_type = "application"
        self.entity_id = app_id
        self.application_id = app_id
        self.action = f"transition.{TRIGGER}"
        self.from_state = FROM_STATE
        self.to_state = TO_STATE
        self.reason = None
        self.data: dict[str, Any] = {}
        self.data_hash = form_hash


def worker(url: str, today: date, conn: Any) -> None:
    """A persistent worker process: receives (mode, items, deadline) and runs them."""
    runners: dict[str, Any] = {}
    while True:
        msg = conn.recv()
        if msg is None:
            break
        mode, items, time_limit = msg
        timer = Timer()
        if mode not in runners:
            if mode.startswith("engine"):
                runners[mode] = engine_items(url, today, timer)
            else:
                runners[mode] = sql_items(url, mode == "sql_min", timer)
            runners[mode] = (runners[mode], timer)
        (one, _close, backend_pid), timer = runners[mode]
        timer.held.clear()
        timer.db = 0.0
        pid = backend_pid()
        conn.send("ready")
        conn.recv()  # start signal
        server0 = cpu_seconds(pid)
        client0 = time.process_time()
        started = time.perf_counter()
        latencies: list[float] = []
        errors = 0
        for app_id, officer_id, version in items:
            t0 = time.perf_counter()
            try:
                one(app_id, officer_id, version)
                latencies.append(time.perf_counter() - t0)
            except Exception as exc:  # counted, reported; never silently dropped
                errors += 1
                if errors == 1:
                    print(f"[bench.engine {mode}] {type(exc).__name__}: {exc}"[:300])
            if time.perf_counter() - started > time_limit:
                break
        elapsed = time.perf_counter() - started
        client_cpu = time.process_time() - client0
        server_cpu = cpu_seconds(pid) - server0
        conn.send(
            {
                "client_cpu": client_cpu,
                "server_cpu": server_cpu,
                "done": len(latencies),
                "errors": errors,
                "elapsed": elapsed,
                "started": started,
                "latencies": latencies,
                "held": list(timer.held),
                "db": timer.db,
            }
        )
    for (_one, close, _pid), _timer in runners.values():
        close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (the PostgreSQL backend serving this worker: the
    server runs on this machine), from /proc; 0 where /proc is not readable."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0
