"""Smoke test of the benchmark harness at a tiny scale on SQLite: the generator builds a
consistent data set (valid credit codes, unique numbers, an intact audit chain, drafts
that can really be submitted), the engine benchmark's request-shaped transition commits,
and a reviewer queue page costs the same number of queries on page 1 and deep pages.
With TEST_REDIS_URL, a few decision letters also go through a real production worker the
way bench/bench_decisions.py sends 1,000.

The timed runs themselves need PostgreSQL and gunicorn: ``python -m bench``.
"""

from __future__ import annotations

import os
import shutil
import threading
from datetime import date

import pytest
from sqlalchemy import create_engine, event, func, select
from sqlalchemy.orm import Session

from workflow.audit import verify_chain
from workflow.domain import is_valid_credit_code
from workflow.engine import clear_cache
from workflow.models import Application, Decision, Organization, OutboxJob, User

pytestmark = pytest.mark.slow  # ~10-20 s: runs four program scenarios for realistic JSON


@pytest.fixture(scope="module")
def bench_db(tmp_path_factory: pytest.TempPathFactory):
    from bench.generate import generate

    url = f"sqlite:///{tmp_path_factory.mktemp('bench') / 'bench.db'}"
    clear_cache()
    try:
        result = generate(url, 200, orgs=300, audit_events=True, log=lambda _line: None)
        yield url, result
    finally:
        clear_cache()  # compiled definitions are cached per process by row id


@pytest.fixture(autouse=True)
def _keep_outbox_relay():
    """The engine benchmark turns the outbox relay off in its worker; in-process here, so
    put it back for the tests that follow."""
    from workflow import outbox

    saved = outbox._relay
    yield
    outbox.set_relay(saved)


def test_generator_builds_a_consistent_data_set(bench_db) -> None:
    url, result = bench_db
    assert result.apps_after == 200
    engine = create_engine(url)
    try:
        with Session(engine) as s:
            assert s.scalar(select(func.count()).select_from(Application)) == 200
            codes = s.scalars(select(Organization.credit_code)).all()
            assert len(codes) == 300 and all(is_valid_credit_code(c) for c in codes)
            states = dict(
                s.execute(select(Application.state, func.count()).group_by(Application.state)).all()
            )
            assert states.get("paid", 0) > states.get("city_review", 0) > 0
            assert states.get("draft", 0) > 0
            numbers = s.scalars(
                select(Application.number).where(Application.number.is_not(None))
            ).all()
            assert len(numbers) == len(set(numbers))
            assert verify_chain(s).ok
    finally:
        engine.dispose()


def test_growth_adds_rows_without_duplicates(tmp_path) -> None:
    from bench.generate import generate

    url = f"sqlite:///{tmp_path / 'grow.db'}"
    clear_cache()
    try:
        generate(url, 60, orgs=120, log=lambda _line: None)
        grown = generate(url, 150, orgs=120, log=lambda _line: None)
    finally:
        clear_cache()
    assert (grown.apps_before, grown.apps_after) == (60, 150)


def test_engine_benchmark_transition_commits(bench_db) -> None:
    from bench import engine as engine_bench
    from bench import engine_worker

    url, _ = bench_db
    ids, officer = engine_bench._sample(url, 50)
    assert ids, "the generator leaves applications in district review"
    versions = {}
    engine = create_engine(url)
    with Session(engine) as s:
        versions = {i: s.get(Application, i).version for i in ids}
    timer = engine_worker.Timer()
    one, close, _pid = engine_worker.engine_items(url, date.today(), timer)
    try:
        for i in ids[:5]:
            one(i, officer[i], versions[i])
    finally:
        close()
    with Session(engine) as s:
        moved = s.scalars(select(Application.state).where(Application.id.in_(ids[:5]))).all()
        assert set(moved) == {engine_worker.TO_STATE}
        assert verify_chain(s).ok
    engine.dispose()
    assert len(timer.held) == len(ids[:5])  # the chain-head lock: once per commit


def test_a_generated_draft_can_be_submitted(bench_db) -> None:
    from workflow.operations.applications import submit_application

    url, _ = bench_db
    engine = create_engine(url)
    try:
        with Session(engine) as s:
            candidates = s.scalars(select(Application).where(Application.state == "draft")).all()
            ready = [a for a in candidates if a.call.is_open(date.today()) and a.attachments]
            assert ready, "open calls hold complete drafts"
            app = ready[0]
            owner = s.get(User, app.created_by_id)
            submit_application(s, app, owner, today=date.today())
            s.commit()
            assert app.number and app.state in ("district_review", "city_review")
    finally:
        engine.dispose()


def test_queue_pages_cost_a_constant_number_of_queries(bench_db) -> None:
    from bench import queue as queue_bench

    if queue_bench.available():
        pytest.skip(queue_bench.available())
    from workflow import queues

    url, _ = bench_db
    engine = create_engine(url)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    today = date.today()
    try:
        with Session(engine) as s:
            user = s.scalar(select(User).where(User.email == "city@bench.cn"))
            query = queues.QueueQuery(sort="submitted", per_page=10)
            # Warm the compiled-definition cache (one query per definition, once per process).
            queues.queue_page(s, user, query, today)
            counts = []
            cursor = None
            for _page in range(4):
                s.expunge_all()
                user = s.scalar(select(User).where(User.email == "city@bench.cn"))
                _ = user.grants
                statements.clear()
                page = queues.queue_page(
                    s, user, query if cursor is None else _with(query, cursor), today
                )
                counts.append(len(statements))
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert len(counts) >= 2
            assert len(set(counts)) == 1, counts
    finally:
        engine.dispose()


def _with(query, cursor):
    from dataclasses import replace

    return replace(query, cursor=cursor)


@pytest.mark.redis
@pytest.mark.skipif(
    not os.environ.get("TEST_REDIS_URL"), reason="needs a real Redis (TEST_REDIS_URL)"
)
def test_decision_letters_go_through_a_real_worker_and_are_put_back(bench_db) -> None:
    """bench/bench_decisions.py at a tiny scale: 5 letters recorded in the outbox, relayed
    to Redis and rendered by one ``flask worker documents``; every PDF checked; the
    decisions and the outbox left as they were. (On the SQLite bench database, which the
    worker process shares.)"""
    from bench.bench_decisions import JOB_ID, run

    url, _ = bench_db
    result = run(
        url,
        count=5,
        workers=1,
        runs=1,
        time_limit=120,
        redis_url=os.environ["TEST_REDIS_URL"],
        log=lambda _line: None,
    )
    one = result["per_run"][0]
    assert (one["done"], one["errors"], one["problems"]) == (5, 0, [])
    # The worker and this process share one SQLite file: a write can meet SQLite's
    # single-writer lock, and RQ's retry then renders the letter. Nothing else may fail.
    assert all("database is locked" in r for r in one["retry_reasons"]), one["retry_reasons"]
    assert one["worker_exit_codes"] == [0]  # stopped by a warm shutdown
    engine = create_engine(url)
    try:
        with Session(engine) as s:
            rendered = select(func.count()).where(Decision.pdf_storage_key.is_not(None))
            assert s.scalar(rendered) == 0
            jobs = select(func.count()).where(OutboxJob.job_id.like(JOB_ID.format("%")))
            assert s.scalar(jobs) == 0
    finally:
        engine.dispose()


def test_failure_reasons_are_read_from_the_worker_log() -> None:
    from bench.bench_decisions import failure_reasons

    log = (
        "20:57:36 Worker abc: job render-decision-84: exception raised while executing "
        "(webapp.jobs.execute_in_worker)\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database is locked\n"
        "[SQL: UPDATE decisions SET pdf_sha256=?]\n"
        "(Background on this error at: https://sqlalche.me/e/21/e3q8)\n"
        "20:57:36 Worker abc: job render-decision-84 will be retried in 10 seconds\n"
        "20:57:37 Worker abc: documents: Job OK (render-decision-85)\n"
    )
    reasons = failure_reasons(log, ["render-decision-84", "render-decision-85"])
    assert reasons == {
        "render-decision-84": (
            "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database is locked"
        )
    }


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (apt-get install wrk)")
def test_wrk_status_script_sends_each_applicant_its_own_cookie() -> None:
    """bench/http_wrk.py against a small server that answers 200 only when the request's
    cookie belongs to the application in its path: every request passes; with the cookies
    swapped, every one counts as an error."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from bench.http_wrk import run_status

    owners = {f"/applications/{i}": f"session=user{i}" for i in range(1, 6)}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            ok = owners.get(self.path) == self.headers.get("Cookie")
            body = b"ok" if ok else b"not yours"
            self.send_response(200 if ok else 403)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        items = list(owners.items())
        good = run_status(port, items, seconds=1, connections=4)
        assert good["requests"] > 0 and good["errors"] == 0
        assert 0 < good["p50_ms"] <= good["p95_ms"]
        swapped = [
            (path, cookie)
            for (path, _), (_, cookie) in zip(items, items[1:] + items[:1], strict=True)
        ]
        bad = run_status(port, swapped, seconds=1, connections=4)
        assert bad["requests"] > 0 and bad["errors"] == bad["requests"]
        assert bad["error_kinds"] == ["not 200"]
    finally:
        server.shutdown()
        server.server_close()
