"""Benchmark: decision letters (决定书) end to end through real RQ workers (issue 9:
"1,000 decisions through 2 workers end to end").

One run, on the bench database:

1. take N issued decisions (the same seeded sample every run), clear their PDF fields
   and their render jobs in the outbox;
2. start W workers as production does (``flask --app wsgi:app worker documents``,
   production settings, storage in a temporary folder, a Redis database of their own,
   flushed before and after) and wait until each has registered, i.e. warmed its fonts;
3. record each decision's render job through the outbox, one transaction per decision
   as the approvals that issue them do (``outbox.enqueue`` + ``outbox.commit``, which
   relays the job to RQ after the commit);
4. poll the database until every decision has its PDF: the wall time runs from the first
   enqueue to the last PDF committed. Job run times come from RQ's job metadata
   (``started_at`` / ``ended_at``, taken in the work horse: the fork is not in them, it
   is in the worker CPU per PDF, read from /proc including the reaped work horses);
5. check every PDF (stored, a PDF, the recorded sha256; the document number and addressee
   in the text of a sample), stop the workers with SIGTERM (RQ's warm shutdown) and put
   the decisions' PDF fields back as they were.

The decisions exist already (``bench/generate.py`` numbers them without rendering), so
each job is recorded in a transaction of its own, not in an approval's.

    .venv/bin/python -m bench.bench_decisions [--count 1000] [--workers 2] [--runs 3]
                                              [--json out.json]

Needs the bench database (``BENCH_DATABASE_URL``, see bench/common.py) holding decisions
(``python -m bench.generate --apps 10000``) and Redis (``BENCH_REDIS_URL``, default
redis://127.0.0.1:6379/12: that database is flushed). Timing only lives here, never in
the tests.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, create_engine, text
from sqlalchemy.engine import Engine

from .common import ROOT, SECRET_KEY, bench_url, make_app, median, percentile

DEFAULT_REDIS = "redis://127.0.0.1:6379/12"
QUEUE = "documents"
# The job id workflow.decisions.create_decision records for a decision's letter.
JOB_ID = "render-decision-{}"
TIMESTAMP = re.compile(r"^\d\d:\d\d:\d\d ")  # how an RQ worker's log lines begin
FAILED_JOB = re.compile(r"job (\S+): exception raised")
EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)\b")
SEED = 20260309
TEXT_SAMPLE = 10  # PDFs per run whose text is extracted and checked
# Contract fields the render job adds itself (not in the frozen data).
NOT_FROZEN = ("verification_code", "verify_url")
PDF_FIELDS = ("pdf_sha256", "pdf_storage_key")
Log = Callable[[str], None]


# ---------------------------------------------------------------- the sample


def pick_sample(engine: Engine, count: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """``count`` issued decisions (seeded), leaving out letters whose frozen data fails the
    renderer's contract: they would fail in every run. Returns their ids and PDF fields
    (to restore), and what was left out (among the decisions looked at), by reason."""
    from workflow.documents.render import REQUIRED_FIELDS

    chosen: list[dict[str, Any]] = []
    left_out: dict[str, int] = {}
    query = _ids_param(
        "SELECT id, template, render_data, pdf_sha256, pdf_storage_key FROM decisions "
        "WHERE id IN :ids"
    )
    with engine.connect() as conn:
        ids = sorted(conn.scalars(text("SELECT id FROM decisions WHERE status = 'issued'")))
        random.Random(SEED).shuffle(ids)
        for start in range(0, len(ids), 2 * count):
            if len(chosen) >= count:
                break
            chunk = ids[start : start + 2 * count]
            rows = {r.id: r for r in conn.execute(query, {"ids": chunk})}
            for r in (rows[i] for i in chunk):
                data = _data(r.render_data)
                fields = [f for f in REQUIRED_FIELDS[r.template] if f not in NOT_FROZEN]
                missing = ", ".join(f for f in fields if not data.get(f))
                if missing:
                    reason = f"{r.template} without {missing}"
                    left_out[reason] = left_out.get(reason, 0) + 1
                elif len(chosen) < count:
                    chosen.append({k: getattr(r, k) for k in ("id", *PDF_FIELDS)})
    if len(chosen) < count:
        raise RuntimeError(
            f"the bench database holds {len(chosen)} renderable issued decisions, {count} "
            "wanted (grow it: python -m bench.generate --apps 10000)"
        )
    return chosen, left_out


def _data(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else json.loads(value)  # JSONB, or SQLite text


def _ids_param(sql: str) -> Any:
    return text(sql).bindparams(bindparam("ids", expanding=True))


def reset(engine: Engine, ids: list[int], saved: list[dict[str, Any]] | None = None) -> None:
    """Clear (or, with ``saved``, restore) the PDF fields and drop our outbox rows."""
    rows = saved or [{"id": i, **dict.fromkeys(PDF_FIELDS)} for i in ids]
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE decisions SET pdf_sha256 = :pdf_sha256, pdf_storage_key = "
                ":pdf_storage_key WHERE id = :id"
            ),
            rows,
        )
        conn.execute(
            _ids_param("DELETE FROM outbox WHERE job_id IN :ids"),
            {"ids": [JOB_ID.format(i) for i in ids]},
        )


# ---------------------------------------------------------------- workers


def start_workers(url: str, redis_url: str, storage: Path, n: int) -> list[subprocess.Popen]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "STORAGE_DIR": str(storage),
        "SECRET_KEY": SECRET_KEY,
        "SHENBAO_ENV": "production",
        "PUBLIC_BASE_URL": "https://shenbao.example.gov.cn",
        "PYTHONPATH": str(ROOT),
    }
    cmd = [sys.executable, "-m", "flask", "--app", "wsgi:app", "worker", QUEUE]
    procs = []
    for i in range(n):
        log_file = open(storage.parent / f"worker-{i}.log", "wb")  # noqa: SIM115 (kept open)
        procs.append(
            subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        )
        log_file.close()  # the child holds its own descriptor
    return procs


def wait_registered(redis: Any, procs: list[subprocess.Popen], timeout: float = 180) -> float:
    from rq import Worker

    started = time.perf_counter()
    while Worker.count(connection=redis) < len(procs):
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a worker exited during start-up")
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"workers not registered after {timeout:.0f} s")
        time.sleep(0.1)
    return time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and of its reaped children (RQ's work horses)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def stop_workers(procs: list[subprocess.Popen], timeout: float = 60) -> list[int | None]:
    """SIGTERM is RQ's warm shutdown: finish the current job, deregister, exit."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    codes: list[int | None] = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            codes.append(None)
    return codes


# ---------------------------------------------------------------- one run


def enqueue_all(app: Any, ids: list[int]) -> None:
    """One transaction per decision, committed and relayed as a request commits."""
    from webapp.extensions import db
    from workflow import outbox

    with app.app_context():
        try:
            for decision_id in ids:
                outbox.enqueue(
                    db.session,
                    "render_decision",
                    {"decision_id": decision_id},
                    queue=QUEUE,
                    job_id=JOB_ID.format(decision_id),
                )
                outbox.commit(db.session)
        finally:
            db.session.remove()


def wait_done(engine: Engine, redis: Any, ids: list[int], deadline: float) -> int:
    """Poll until every PDF is committed, or every other job has failed for good, or the
    deadline. A job that failed and waits for a retry is waited for: the workers run RQ's
    scheduler, which enqueues it again. Returns the PDFs done."""
    from rq.registry import FailedJobRegistry

    failed = FailedJobRegistry(QUEUE, connection=redis)
    query = _ids_param("SELECT count(*) FROM decisions WHERE id IN :ids AND pdf_sha256 IS NOT NULL")
    with engine.connect() as conn:
        while True:
            done = int(conn.scalar(query, {"ids": ids}) or 0)
            conn.rollback()  # a fresh snapshot for the next poll
            if done >= len(ids) or time.perf_counter() > deadline:
                return done
            if done + failed.count >= len(ids):
                return done
            time.sleep(0.05)


def job_times(redis: Any, ids: list[int]) -> dict[str, Any]:
    """Run times of the finished jobs, the ids whose job did not finish (with its state
    and last error), and the ids of jobs that needed RQ's retry (a failed attempt)."""
    from rq.job import Job, JobStatus

    from webapp.jobs import JOB_DEFAULTS

    max_retries = JOB_DEFAULTS[QUEUE]["retry"][0]
    run_s: list[float] = []
    unfinished: dict[int, str] = {}
    retried: list[int] = []
    for start in range(0, len(ids), 200):
        chunk = ids[start : start + 200]
        jobs = Job.fetch_many([JOB_ID.format(i) for i in chunk], connection=redis)
        for decision_id, job in zip(chunk, jobs, strict=True):
            if job is None:
                unfinished[decision_id] = "job not found"
                continue
            if (job.retries_left or 0) < max_retries:
                retried.append(decision_id)
            status = job.get_status()
            if status != JobStatus.FINISHED:
                unfinished[decision_id] = f"job {status}"
                continue
            if job.started_at and job.ended_at:
                run_s.append((job.ended_at - job.started_at).total_seconds())
    return {"run_s": run_s, "unfinished": unfinished, "retried": retried}


def failure_reasons(logs: str, job_ids: list[str]) -> dict[str, str]:
    """The exception of each failed attempt, from the workers' logs: RQ logs
    ``Worker <name>: job <id>: exception raised while executing (...)`` and the traceback,
    whose last line that starts with an exception's name is the reason."""
    wanted = set(job_ids)
    reasons: dict[str, str] = {}
    lines = logs.splitlines()
    for n, line in enumerate(lines):
        failed = FAILED_JOB.search(line)
        if failed is None or failed.group(1) not in wanted:
            continue
        tail = itertools.takewhile(lambda x: not TIMESTAMP.match(x), lines[n + 1 :])
        named = [x.strip() for x in tail if EXCEPTION.match(x.strip())]
        reasons[failed.group(1)] = named[-1][:200] if named else "(no exception logged)"
    return reasons


def check_pdfs(engine: Engine, storage: Path, ids: list[int], text_sample: int) -> dict[int, str]:
    """Problems with the stored letters by decision id (empty when every one is a valid
    PDF matching its recorded sha256 and, for the first ``text_sample``, its text)."""
    from pypdf import PdfReader

    problems: dict[int, str] = {}
    with engine.connect() as conn:
        rows = conn.execute(
            _ids_param(
                "SELECT id, doc_number, render_data, pdf_sha256, pdf_storage_key "
                "FROM decisions WHERE id IN :ids"
            ),
            {"ids": ids},
        ).all()
    checked_text = 0
    for r in rows:
        path = storage / r.pdf_storage_key if r.pdf_storage_key else None
        if path is None or not path.is_file():
            problems[r.id] = "no stored PDF"
            continue
        pdf = path.read_bytes()
        if not pdf.startswith(b"%PDF-") or b"%%EOF" not in pdf[-64:]:
            problems[r.id] = "not a PDF"
        elif hashlib.sha256(pdf).hexdigest() != r.pdf_sha256:
            problems[r.id] = "sha256 differs from the recorded one"
        elif checked_text < text_sample:
            checked_text += 1
            data = _data(r.render_data)
            reader = PdfReader(io.BytesIO(pdf))
            found = re.sub(r"\s+", "", "".join(p.extract_text() for p in reader.pages))
            for value in (r.doc_number, data["addressee"]):
                if re.sub(r"\s+", "", value) not in found:
                    problems[r.id] = f"{value!r} not in the PDF text"
    return problems


def _worker_logs(tmp: str, workers: int) -> list[str]:
    return [(Path(tmp) / f"worker-{i}.log").read_text(errors="replace") for i in range(workers)]


def _log_workers(logs: list[str], log: Log) -> None:
    for i, content in enumerate(logs):
        log(f"worker {i} log (end):\n{content[-4000:]}")


def run_once(
    url: str, redis_url: str, ids: list[int], workers: int, time_limit: float, log: Log
) -> dict[str, Any]:
    from redis import Redis

    redis = Redis.from_url(redis_url)
    engine = create_engine(url)
    with tempfile.TemporaryDirectory(prefix="bench-decisions-") as tmp:
        storage = Path(tmp) / "storage"
        storage.mkdir()
        app = make_app(url, REDIS_URL=redis_url, STORAGE_DIR=str(storage))
        redis.flushdb()
        reset(engine, ids)
        procs = start_workers(url, redis_url, storage, workers)
        codes: list[int | None] = []
        try:
            startup_s = wait_registered(redis, procs)
            cpu0 = sum(cpu_seconds(p.pid) for p in procs)
            t0 = time.perf_counter()
            enqueue_all(app, ids)
            enqueue_s = time.perf_counter() - t0
            done = wait_done(engine, redis, ids, t0 + time_limit)
            wall_s = time.perf_counter() - t0
            time.sleep(0.2)  # the last work horse is reaped just after its commit
            cpu_s = sum(cpu_seconds(p.pid) for p in procs) - cpu0
            codes = stop_workers(procs)
            jobs = job_times(redis, ids)
            problems = check_pdfs(engine, storage, ids, TEXT_SAMPLE)
            logs = _worker_logs(tmp, workers)
            if problems or jobs["unfinished"]:
                _log_workers(logs, log)
            reasons = failure_reasons("\n".join(logs), [JOB_ID.format(i) for i in jobs["retried"]])
        except BaseException:
            stop_workers(procs, timeout=10)
            _log_workers(_worker_logs(tmp, workers), log)
            raise
        finally:
            redis.flushdb()
            with app.app_context():
                from webapp.extensions import db

                db.engine.dispose()
            engine.dispose()
    failed = set(problems) | set(jobs["unfinished"])
    result = {
        "count": len(ids),
        "workers": workers,
        "done": done,
        "wall_s": wall_s,
        "pdfs_per_s": done / wall_s if wall_s else float("nan"),
        "enqueue_s": enqueue_s,
        "worker_startup_s": startup_s,
        "run_p50_s": percentile(jobs["run_s"], 50),
        "run_p95_s": percentile(jobs["run_s"], 95),
        "worker_cpu_ms_per_pdf": 1000 * cpu_s / done if done else float("nan"),
        "errors": len(failed),
        "problems": [
            f"decision {i}: {jobs['unfinished'].get(i) or problems[i]}" for i in sorted(failed)[:10]
        ],
        # Finished, but only after a failed attempt and RQ's retry: not an error, but said.
        "retried": len(jobs["retried"]),
        "retry_reasons": sorted(set(reasons.values()))[:5],
        "worker_exit_codes": codes,
    }
    log(
        f"  {done}/{len(ids)} PDFs in {wall_s:.1f} s ({result['pdfs_per_s']:.1f}/s; enqueue "
        f"{enqueue_s:.1f} s), job run p50 {result['run_p50_s']:.3f} s p95 "
        f"{result['run_p95_s']:.3f} s, worker CPU {result['worker_cpu_ms_per_pdf']:.0f} ms/PDF, "
        f"errors {result['errors']}, retried {result['retried']} {result['retry_reasons']}, "
        f"workers exited {codes}"
    )
    return result


# ---------------------------------------------------------------- all runs


def run(
    url: str,
    *,
    count: int = 1000,
    workers: int = 2,
    runs: int = 3,
    time_limit: float = 900.0,
    redis_url: str = DEFAULT_REDIS,
    log: Log = print,
) -> dict[str, Any]:
    """``runs`` end-to-end runs on the same sample; medians over the runs."""
    engine = create_engine(url)
    per_run: list[dict[str, Any]] = []
    try:
        saved, left_out = pick_sample(engine, count)
        ids = [r["id"] for r in saved]
        already = sum(1 for r in saved if r["pdf_sha256"])
        log(f"decisions: {count} sampled ({already} had a PDF recorded), {workers} workers")
        for reason, n in left_out.items():
            log(f"  left out, the renderer refuses them: {n} x {reason}")
        try:
            for i in range(runs):
                log(f" run {i + 1}/{runs}")
                per_run.append(run_once(url, redis_url, ids, workers, time_limit, log))
        finally:
            reset(engine, ids, saved)
    finally:
        engine.dispose()

    keys = ("wall_s", "pdfs_per_s", "enqueue_s", "run_p50_s", "run_p95_s")
    return {
        "count": count,
        "workers": workers,
        "runs": runs,
        "had_pdf_before": already,
        "left_out": left_out,
        **{k: median(r[k] for r in per_run) for k in (*keys, "worker_cpu_ms_per_pdf")},
        "errors": sum(r["errors"] for r in per_run),
        "retried": sum(r["retried"] for r in per_run),
        "per_run": per_run,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_decisions", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--count", type=int, default=1000, help="decisions per run")
    parser.add_argument("--workers", type=int, default=2, help="RQ worker processes")
    parser.add_argument("--runs", type=int, default=3, help="measured runs (median)")
    parser.add_argument("--time-limit", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    # Killed (e.g. by a time limit): stop the workers and restore the fields on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS)
    result = run(
        bench_url(),
        count=args.count,
        workers=args.workers,
        runs=max(1, args.runs),
        time_limit=args.time_limit,
        redis_url=redis_url,
    )
    result["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"{result['count']} decisions through {result['workers']} workers, median of "
        f"{result['runs']}: {result['wall_s']:.1f} s wall, {result['pdfs_per_s']:.1f} PDFs/s, "
        f"job run p50/p95 {result['run_p50_s']:.3f}/{result['run_p95_s']:.3f} s, "
        f"errors {result['errors']}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
