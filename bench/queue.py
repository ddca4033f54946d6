"""Reviewer queue latency through ``workflow.queues.queue_page``: the filtered, sorted
first page and page 1,000 (keyset cursor), for a city officer (sees every district) and
a district officer (one district).

Each call runs in a fresh Session, as in a request. A run is ``calls`` timed calls after
two warm-ups; the figures are the medians over runs of each run's p50 and p95. The
statements of one call are counted (a page must cost a constant number of queries) and,
for any figure over the goal, EXPLAIN (ANALYZE, BUFFERS) of each statement is kept.

Page 1,000 needs 25,000 rows in front of it: if the stage queue is shorter, the
unfiltered queue (every stage the officer may see) is used, and if that is still
shorter, its last page; the table says which.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import create_engine, event, select, text
from sqlalchemy.orm import Session

from .common import bench_url, median, percentile

GOAL_MS = 100.0
PAGE = 1000
OFFICERS = {"city": "city@bench.cn", "district": "district1@bench.cn"}
STAGE = {"city": "eligibility", "district": "district"}


@dataclass
class Case:
    officer: str
    page: str  # "first" or "deep"
    query: Any  # queues.QueueQuery
    label: str


def available() -> str | None:
    """None if workflow.queues has the interface this benchmark calls, else why not."""
    try:
        from workflow import queues
    except ImportError as exc:
        return f"workflow.queues is not importable yet ({exc})"
    missing = [n for n in ("QueueQuery", "queue_page") if not hasattr(queues, n)]
    return f"workflow.queues lacks {', '.join(missing)}" if missing else None


class _Statements:
    def __init__(self, engine: Any):
        self.items: list[tuple[str, Any]] = []
        self.on = False

        @event.listens_for(engine, "before_cursor_execute")
        def _seen(conn, cursor, statement, params, context, executemany):  # noqa: ANN001
            if self.on:
                self.items.append((statement, params))


def _deep_cursor(session: Session, user: Any, query: Any, today: date, rows_before: int) -> Any:
    """A cursor for the row at position ``rows_before`` (what the "next" link on page
    ``rows_before / per_page`` would carry), found once with OFFSET (not timed)."""
    from workflow import queues
    from workflow.models import Application

    conds = queues._filters(user, query, today)
    scope = queues._stage_scope(query)
    if scope is not None:
        conds.append(scope)
    assert query.sort == "submitted"
    row = session.scalars(
        select(Application)
        .where(*conds, Application.submitted_at.is_not(None))
        .order_by(*queues._submitted_order(descending=query.descending, reverse=False))
        .offset(rows_before - 1)
        .limit(1)
    ).first()
    return None if row is None else queues.encode_cursor(query, row, backward=False)


def _cases(session: Session, users: dict[str, Any], today: date) -> list[Case]:
    from dataclasses import replace

    from workflow import queues

    cases = []
    for who, user in users.items():
        first = queues.QueueQuery(stage=STAGE[who], sort="submitted", per_page=25)
        cases.append(Case(who, "first", first, f"stage={STAGE[who]}, sorted by submission"))
        deep = None
        everything = queues.QueueQuery(sort="submitted", per_page=25)
        for base, label in ((first, f"stage={STAGE[who]}"), (everything, "all open work")):
            counts = queues.stage_counts(session, user, base, today)
            rows = (
                counts.get(base.stage, 0)
                if base.stage
                else sum(n for s, n in counts.items() if s in queues.OPEN_STAGES)
            )
            if rows > (PAGE - 1) * base.per_page:
                cursor = _deep_cursor(session, user, base, today, (PAGE - 1) * base.per_page)
                deep = Case(who, "deep", replace(base, cursor=cursor), f"page {PAGE}, {label}")
                break
        if deep is None:  # fewer than 25,000 visible rows: the last page of everything
            last = max(1, (rows - 1) // everything.per_page)
            cursor = _deep_cursor(session, user, everything, today, last * everything.per_page)
            label = f"page {last + 1} (last; {rows} rows), all open work"
            deep = Case(who, "deep", replace(everything, cursor=cursor), label)
        cases.append(deep)
    return cases


def _measure(
    engine: Any, stmts: _Statements, call: Any, runs: int, calls: int, time_limit: float
) -> dict[str, Any]:
    """Time ``call(session)`` in a fresh session per call: medians over runs of the
    per-run p50 and p95, and the set of statement counts seen."""
    per_run_p50, per_run_p95, counts = [], [], []
    started = time.perf_counter()
    last = None
    for r in range(runs + 1):  # run 0: two extra warm-up calls, not counted
        samples = []
        for _call in range(calls + (2 if r == 0 else 0)):
            with Session(engine) as s:
                stmts.items.clear()
                stmts.on = True
                t0 = time.perf_counter()
                last = call(s)
                elapsed = time.perf_counter() - t0
                stmts.on = False
                counts.append(len(stmts.items))
            if r > 0:
                samples.append(elapsed * 1000)
            if time.perf_counter() - started > time_limit:
                break
        if samples:
            per_run_p50.append(percentile(samples, 50))
            per_run_p95.append(percentile(samples, 95))
        if time.perf_counter() - started > time_limit:
            break
    return {
        "p50_ms": median(per_run_p50),
        "p95_ms": median(per_run_p95),
        "runs": len(per_run_p95),
        "queries": sorted(set(counts)),
        "last": last,
    }


def run(
    url: str | None = None,
    *,
    runs: int = 5,
    calls: int = 20,
    time_limit: float = 60.0,
    log: Any = print,
) -> dict[str, Any]:
    why = available()
    if why:
        return {"skipped": why}
    from workflow import queues
    from workflow.engine import clear_cache
    from workflow.models import User

    url = url or bench_url()
    clear_cache()
    engine = create_engine(url, pool_size=2)
    stmts = _Statements(engine)
    today = date.today()
    out: dict[str, Any] = {"cases": []}
    try:
        with Session(engine) as s:
            ids = {
                who: s.scalar(select(User.id).where(User.email == email))
                for who, email in OFFICERS.items()
            }
            users = {who: s.get(User, uid) for who, uid in ids.items()}
            cases = _cases(s, users, today)
        for case in cases:

            def call(s: Session, case: Case = case) -> Any:
                user = s.get(User, ids[case.officer])
                _ = user.grants
                stmts.items.clear()  # count the queue's statements, not the login's
                return queues.queue_page(s, user, case.query, today)

            m = _measure(engine, stmts, call, runs, calls, time_limit)
            page = m.pop("last")
            result = {
                "officer": case.officer,
                "page": case.page,
                "label": case.label,
                **m,
                "rows": len(page.items),
                "bad_cursor": page.bad_cursor,
            }
            if result["p95_ms"] > GOAL_MS:
                result["explain"] = _explain(engine, stmts, ids[case.officer], case, today)
            out["cases"].append(result)
            log(
                f"  queue {case.officer:8} {case.page:5} p50 {result['p50_ms']:7.1f} ms "
                f"p95 {result['p95_ms']:7.1f} ms ({case.label}; {result['queries']} queries)"
            )
    finally:
        engine.dispose()
    return out


def _offset(label: str) -> int | None:
    """Rows in front of the deep page, from its label ("page 1000, ..." / "page 48 (last...")."""
    try:
        page_no = int(label.split()[1].rstrip(","))
    except (IndexError, ValueError):
        return None
    return (page_no - 1) * 25 if page_no > 1 else None


def _explain(engine: Any, stmts: _Statements, user_id: int, case: Case, today: date) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of each statement one queue_page call runs."""
    from workflow import queues
    from workflow.models import User

    with Session(engine) as s:
        user = s.get(User, user_id)
        stmts.items.clear()
        stmts.on = True
        queues.queue_page(s, user, case.query, today)
        stmts.on = False
        captured = list(stmts.items)
    plans = []
    if engine.dialect.name != "postgresql":
        return plans
    with engine.connect() as conn:
        for statement, params in captured:
            if not statement.lstrip().upper().startswith("SELECT"):
                continue
            raw = conn.connection.driver_connection
            with raw.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
                plans.append("\n".join(r[0] for r in cur.fetchall()))
        conn.rollback()
    return plans


def table_sizes(url: str | None = None) -> dict[str, Any]:
    url = url or bench_url()
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {"applications": conn.scalar(text("SELECT count(*) FROM applications"))}
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="reviewer queue latency")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    result = run(runs=args.runs, calls=args.calls)
    print(json.dumps(result, indent=1, ensure_ascii=False, default=str))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1, ensure_ascii=False, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
