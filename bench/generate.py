"""Generate a realistic Shenbao data set: N applications (default 1,000,000) across the
four programs and 40 calls (5 years x 2 rounds x 4 programs), 100,000 organizations
with valid unified social credit codes, one applicant account per organization, staff
accounts for every role, attachments, decisions, budget ledger and expert reviews.

PostgreSQL: rows go in with COPY (psycopg 3 ``cursor.copy``) in one transaction per
growth step, secondary indexes are dropped before a large load and rebuilt after, and
the tables are vacuumed and analyzed at the end. SQLite (small N, for the smoke test):
plain executemany.

Growth reuses data: ``generate(url, 100_000)`` on a database holding 10,000
applications adds 90,000 (same distributions, new organization/call pairs), so the
10k -> 100k -> 1M series costs one 1M generation, not three.

    .venv/bin/python -m bench.generate --apps 100000 [--orgs 100000] [--reset]
        [--audit-events] [--attachments all|active|none]
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from . import loading
from . import rows as rows_mod
from . import sample_data as sd
from .common import (
    BENCH_PASSWORD,
    bench_url,
    drop_schema,
    engine_for,
    ensure_database,
    is_postgres,
    migrate,
)

CHUNK = 20_000
Log = Callable[[str], None]


# ---------------------------------------------------------------- the run


@dataclass
class Result:
    apps_before: int = 0
    apps_after: int = 0
    orgs: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())


def generate(
    url: str | None = None,
    apps: int = 1_000_000,
    *,
    orgs: int = 100_000,
    seed: int = 7,
    reset: bool = False,
    audit_events: bool = False,
    attachments: str = "all",
    today: date | None = None,
    log: Log = print,
) -> Result:
    """Grow the bench database to ``apps`` applications (never shrinks it)."""
    url = url or bench_url()
    today = today or date.today()
    res = Result()
    t0 = time.perf_counter()
    ensure_database(url)
    if reset:
        drop_schema(url)
    migrate(url)
    engine = engine_for(url)
    try:
        with Session(engine) as session:
            _setup_static(session, today)
        res.seconds["schema+staff+calls"] = time.perf_counter() - t0

        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL maintenance_work_mem = '512MB'")
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                # Generated rows reference only rows that exist: skip the per-row foreign-key
                # triggers during the load (needs a superuser, as the bench database has).
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            sink = loading.Sink(conn)
            t = time.perf_counter()
            existing_orgs = conn.scalar(text("SELECT count(*) FROM organizations")) or 0
            if existing_orgs < orgs:
                _add_orgs(sink, existing_orgs, orgs, seed)
                log(f"organizations: {existing_orgs} -> {orgs} ({time.perf_counter() - t:.1f} s)")
            res.orgs = max(existing_orgs, orgs)
            res.seconds["organizations"] = time.perf_counter() - t

            t = time.perf_counter()
            res.apps_before = conn.scalar(text("SELECT count(*) FROM applications")) or 0
            todo = apps - res.apps_before
            if todo > 0:
                dropped = loading.drop_indexes(conn, todo, res.apps_before)
                _add_applications(
                    sink, res.apps_before, todo, seed, today, audit_events, attachments, log
                )
                t_idx = time.perf_counter()
                for _name, ddl in dropped:
                    conn.exec_driver_sql(ddl)
                if dropped:
                    log(f"rebuilt {len(dropped)} indexes ({time.perf_counter() - t_idx:.1f} s)")
                loading.finish_counters(conn)
            res.apps_after = max(apps, res.apps_before)
            res.seconds["applications"] = time.perf_counter() - t
            res.rows = dict(sink.counts)
            log("COPY seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in sink.seconds.items()))

        t = time.perf_counter()
        if todo > 0 or existing_orgs < orgs:
            loading.vacuum_analyze(engine)
        res.seconds["vacuum+analyze"] = time.perf_counter() - t
    finally:
        engine.dispose()
    log(
        f"generated: {res.apps_before} -> {res.apps_after} applications in {res.total_s:.1f} s "
        f"({', '.join(f'{k} {v:.1f}s' for k, v in res.seconds.items())})"
    )
    return res


# ---------------------------------------------------------------- static part (ORM)


def _setup_static(session: Session, today: date) -> None:
    """Definitions, staff accounts and the calls, through the real code (idempotent)."""
    from webapp.security import hash_password
    from workflow.definitions.loader import sync_definitions
    from workflow.engine import clear_cache
    from workflow.models import Call, RoleGrant, User
    from workflow.operations.calls import create_call

    clear_cache()  # compiled definitions are cached by row id, per process
    sync_definitions(session)
    session.commit()
    if session.scalar(select(User.id).where(User.email == "city@bench.cn")) is not None:
        return
    pw = hash_password(BENCH_PASSWORD)
    staff: list[tuple[str, str, str, str | None, str | None, bool]] = [
        ("city@bench.cn", "市局审查员", "city_officer", None, None, True),
        ("approver@bench.cn", "审定会议", "approver", None, None, False),
        ("finance@bench.cn", "财务人员", "finance", None, None, False),
        ("admin@bench.cn", "系统管理员", "admin", None, None, False),
    ]
    for i, (district, _w) in enumerate(sd.DISTRICTS, start=1):
        staff.append(
            (
                f"district{i}@bench.cn",
                f"{district}初审员",
                "district_officer",
                None,
                district,
                False,
            )
        )
    for code in sd.PROGRAM_WEIGHTS:
        staff.append((f"city-{code}@bench.cn", f"{code}审查员", "city_officer", code, None, False))
    for i in range(1, rows_mod.EXPERTS + 1):
        staff.append((f"expert{i}@bench.cn", f"评审专家{i}", "expert", None, None, False))
    for email, name, role, program, district, lead in staff:
        user = User(email=email, name=name, password_hash=pw)
        user.grants.append(
            RoleGrant(role=role, program_code=program, district=district, is_lead=lead)
        )
        session.add(user)
    session.flush()

    year = today.year
    for code in sd.PROGRAM_WEIGHTS:
        slots = [(y, b) for y in range(year - 4, year) for b in (1, 2)] + [(year, 1), (year, 2)]
        for n, (y, batch) in enumerate(slots):
            if n == len(slots) - 1:  # open now
                opens, closes = today - timedelta(days=30), today + timedelta(days=60)
            elif n == len(slots) - 2:  # closed, under review
                opens, closes = today - timedelta(days=150), today - timedelta(days=60)
            else:
                opens = date(y, 3 if batch == 1 else 8, 1)
                closes = opens + timedelta(days=60)
            create_call(
                session,
                program_code=code,
                year=y,
                title=f"{y}年度第{batch}批",
                opens_on=opens,
                closes_on=closes,
                budget_yuan="10000000",
                params={"district_prereview": True},
            )
    session.commit()
    assert session.scalar(select(Call.id).limit(1)) is not None


# ---------------------------------------------------------------- organizations


ORG_COLS = [
    "id",
    "name",
    "credit_code",
    "org_type",
    "district",
    "address",
    "legal_representative",
    "contact_name",
    "contact_phone",
    "contact_email",
    "bank_name",
    "bank_account_name",
    "bank_account_no",
    "created_at",
]
USER_COLS = [
    "id",
    "email",
    "name",
    "password_hash",
    "organization_id",
    "is_org_owner",
    "active",
    "locale",
    "session_epoch",
    "failed_logins",
    "email_preferences",
    "created_at",
]
GRANT_COLS = ["id", "user_id", "role", "program_code", "district", "is_lead"]


def _add_orgs(sink: loading.Sink, start: int, stop: int, seed: int) -> None:
    from webapp.security import hash_password

    conn = sink.conn
    pw = hash_password(BENCH_PASSWORD)
    user_id = (conn.scalar(text("SELECT max(id) FROM users")) or 0) + 1
    grant_id = (conn.scalar(text("SELECT max(id) FROM role_grants")) or 0) + 1
    org_id0 = (conn.scalar(text("SELECT max(id) FROM organizations")) or 0) + 1
    districts = [(d, float(w)) for d, w in sd.DISTRICTS]
    types = [(t, float(w)) for t, w in sd.ORG_TYPES]
    base = datetime(2015, 1, 1, tzinfo=UTC)
    for lo in range(start, stop, CHUNK):
        rng = random.Random(seed * 1_000_003 + lo)
        orgs, users, grants = [], [], []
        for k in range(lo, min(stop, lo + CHUNK)):
            n = k + 1
            oid = org_id0 + (k - start)
            org_type = sd.weighted(rng, types)
            district = sd.weighted(rng, districts)
            name = sd.org_name(rng, org_type, n)
            contact = sd.person_name(rng)
            created = base + timedelta(seconds=rng.randrange(10 * 365 * 86400))
            orgs.append(
                (
                    oid,
                    name,
                    sd.credit_code(n),
                    org_type,
                    district,
                    f"长春市{district}{rng.choice(sd.NAME_HEADS)}路{rng.randrange(1, 999)}号",
                    sd.person_name(rng),
                    contact,
                    f"139{rng.randrange(10**8):08d}",
                    f"org{n}@bench.cn",
                    f"{rng.choice(sd.BANKS)}长春{district}支行",
                    name,
                    f"6222{rng.randrange(10**15):015d}",
                    created,
                )
            )
            users.append(
                (
                    user_id,
                    f"org{n}@bench.cn",
                    contact,
                    pw,
                    oid,
                    True,
                    True,
                    "zh",
                    0,
                    0,
                    "{}",
                    created,
                )
            )
            grants.append((grant_id, user_id, "applicant", None, None, False))
            user_id += 1
            grant_id += 1
        sink.write("organizations", ORG_COLS, orgs)
        sink.write("users", USER_COLS, users)
        sink.write("role_grants", GRANT_COLS, grants)


# ---------------------------------------------------------------- applications


def _add_applications(
    sink: loading.Sink,
    start: int,
    count: int,
    seed: int,
    today: date,
    audit_events: bool,
    attachments: str,
    log: Log,
) -> None:
    from workflow.definitions.loader import definition_files, load_file

    conn = sink.conn
    templates = sd.program_templates(seed)
    programs = {p.code: p for p in (load_file(f)[0] for f in definition_files())}
    builder = rows_mod.Builder(
        conn, templates, programs, today, attachments=attachments, audit_events=audit_events
    )
    sink.prepare_templates(templates)
    # Build the next chunk while the previous one is being copied: the COPY waits on the
    # server (psycopg releases the GIL), so the two overlap on a 2-core machine.
    chunks: queue.Queue[dict[str, list[tuple]] | None] = queue.Queue(maxsize=2)
    failure: list[BaseException] = []

    def writer() -> None:
        try:
            while (rows := chunks.get()) is not None:
                sink.write_applications(rows["app"])
                sink.write("attachments", rows_mod.ATT_COLS, rows["att"])
                sink.write("decisions", rows_mod.DEC_COLS, rows["dec"])
                sink.write("budget_ledger", rows_mod.LEDGER_COLS, rows["led"])
                sink.write("reviews", rows_mod.REVIEW_COLS, rows["rev"])
                sink.write("audit_events", rows_mod.AUDIT_COLS, rows["aud"])
        except BaseException as exc:  # re-raised in the main thread
            failure.append(exc)
            while chunks.get() is not None:  # drain so the producer never blocks
                pass

    thread = threading.Thread(target=writer, name="bench-copy")
    thread.start()
    done = 0
    t_start = time.perf_counter()
    try:
        while done < count and not failure:
            n = min(CHUNK, count - done)
            chunks.put(builder.chunk(random.Random(seed * 7_777_777 + start + done), n))
            done += n
            if done % 100_000 == 0 or done == count:
                rate = done / (time.perf_counter() - t_start)
                log(f"  applications +{done}/{count} built ({rate:,.0f}/s)")
    finally:
        chunks.put(None)
        thread.join()
    if failure:
        raise failure[0]
    for (prefix, year), seq in builder.counters.items():
        loading.set_counter(conn, prefix, year, seq)
    if builder.audit is not None:
        builder.audit.save()


def summary(url: str | None = None) -> dict[str, Any]:
    """Row counts and the state mix of the bench database."""
    url = url or bench_url()
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            counts = {
                t: conn.scalar(text(f"SELECT count(*) FROM {t}"))  # noqa: S608
                for t in (
                    "organizations",
                    "users",
                    "calls",
                    "applications",
                    "attachments",
                    "decisions",
                    "audit_events",
                )
            }
            states = dict(
                conn.execute(
                    text("SELECT state, count(*) FROM applications GROUP BY state ORDER BY 2 DESC")
                ).all()
            )
            size = (
                conn.scalar(text("SELECT pg_size_pretty(pg_database_size(current_database()))"))
                if is_postgres(url)
                else None
            )
    finally:
        engine.dispose()
    return {"counts": counts, "states": states, "size": size}


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=1_000_000)
    parser.add_argument("--orgs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reset", action="store_true", help="empty the bench database first")
    parser.add_argument(
        "--audit-events", action="store_true", help="also a chained history per application"
    )
    parser.add_argument("--attachments", choices=("all", "active", "none"), default="all")
    parser.add_argument(
        "--url", default=None, help="database URL (default: BENCH_DATABASE_URL or shenbao_bench)"
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    generate(
        args.url,
        args.apps,
        orgs=args.orgs,
        seed=args.seed,
        reset=args.reset,
        audit_events=args.audit_events,
        attachments=args.attachments,
    )
    info = summary(args.url)
    print(json.dumps(info, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
