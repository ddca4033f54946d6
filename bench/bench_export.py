"""Benchmark: exporting a disbursement batch of 100,000 lines as CSV and as XLSX.

Builds a throw-away database (a temporary SQLite file, or ``--database-url``: use an
empty PostgreSQL database you own, its tables are created and left there) with one call
and N decisions on one locked batch, every line with its own payee (name, credit code,
account, district), then writes the batch exactly as the application does: through
``workflow.exports.build_file``, which writes the file and checks the lines it writes
against the lock hash in the same pass (what the download of a small batch and the
``export_batch`` job of a large one both run), to a file on disk. Each format runs
``--runs`` times for time (the median is reported) and once more under ``tracemalloc``
for the peak of Python allocations. Prints a table; ``--json`` also writes the figures.

    .venv/bin/python -m bench.bench_export [--sizes 10000,100000] [--runs 3] [--quick]

The peak should stay flat as N grows (rows are read and written in chunks); the time
grows linearly. Timing lives here, never in the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, text
from sqlalchemy.orm import Session

from workflow import exports
from workflow.definitions.loader import sync_definitions
from workflow.models import (
    Application,
    Base,
    Decision,
    DisbursementBatch,
    DisbursementLine,
    Organization,
)
from workflow.operations.calls import create_call
from workflow.operations.finance import compute_lock_hash, payee_of

INSERT_CHUNK = 5000
DISTRICTS = ("朝阳区", "南关区", "宽城区", "二道区", "绿园区", "双阳区", "九台区")


def build_batch(session: Session, n: int, year: int) -> DisbursementBatch:
    """A locked batch of ``n`` lines (decisions inserted in bulk, amounts and payees varied)."""
    today = date.today()
    call = create_call(
        session,
        program_code="certification_reward",
        year=year,
        title=f"基准测试批次{year}",
        opens_on=today - timedelta(days=30),
        closes_on=today + timedelta(days=30),
        budget_yuan="100000000000",
    )
    org = Organization(
        name=f"长春基准测试有限公司{year}",
        credit_code=f"91220101BENCH{year}"[:18].ljust(18, "0"),
        org_type="enterprise",
        district="朝阳区",
        bank_name="中国工商银行长春朝阳支行",
        bank_account_name=f"长春基准测试有限公司{year}",
        bank_account_no="4200201109000012345",
    )
    session.add(org)
    session.flush()
    app = Application(
        organization_id=org.id,
        call_id=call.id,
        definition_id=call.definition_id,
        program_code=call.program_code,
        district=org.district,
        state="approved",
        form_data={},
    )
    session.add(app)
    session.flush()
    batch = DisbursementBatch(number=f"ZF{year}-0001", status="locked", filters={})
    session.add(batch)
    session.flush()
    payee = payee_of(org, org.district)
    total = 0
    for start in range(1, n + 1, INSERT_CHUNK):
        seqs = range(start, min(start + INSERT_CHUNK, n + 1))
        session.execute(
            insert(Decision),
            [
                {
                    "application_id": app.id,
                    "kind": "approval",
                    "doc_prefix": "长市监知字",
                    "doc_year": year,
                    "doc_seq": i,
                    "doc_number": f"长市监知字〔{year}〕{i}号",
                    "amount_fen": 1_000_000 + (i * 7919) % 4_000_000,
                    "template": "decision_approval.html",
                    "render_data": {},
                    "verification_code": f"B{year}{i:012d}",
                    "status": "issued",
                }
                for i in seqs
            ],
        )
        first_id = session.scalar(
            Decision.__table__.select()
            .with_only_columns(Decision.id)
            .where(Decision.doc_year == year, Decision.doc_seq == start)
        )
        rows = []
        for offset, i in enumerate(seqs):
            amount = 1_000_000 + (i * 7919) % 4_000_000
            total += amount
            rows.append(
                {
                    "batch_id": batch.id,
                    "decision_id": first_id + offset,
                    "amount_fen": amount,
                    # Every line its own payee, as in a real batch (one award per company).
                    "payee": {
                        **payee,
                        "name": f"长春第{i}基准测试有限公司",
                        "credit_code": f"91220101B{year}{i:07d}"[:18],
                        "bank_account_name": f"长春第{i}基准测试有限公司",
                        "bank_account_no": f"42002011{i:011d}",
                        "district": DISTRICTS[i % len(DISTRICTS)],
                    },
                    "status": "pending",
                }
            )
        session.execute(insert(DisbursementLine), rows)
    batch.line_count, batch.total_fen = n, total
    batch.lock_hash = compute_lock_hash(session, batch)[0]
    session.commit()
    if session.get_bind().dialect.name == "postgresql":
        # Fresh bulk inserts have no planner statistics yet (autovacuum would gather them
        # in production); without them the chunk queries get a poor plan.
        for table in ("decisions", "disbursement_lines", "applications", "calls"):
            session.execute(text(f"ANALYZE {table}"))
        session.commit()
    return batch


def measure(fn: Callable[[], int], runs: int) -> dict[str, float]:
    """Median and fastest seconds of ``runs`` untraced runs (and the process CPU time of
    the median one: on a shared machine the wall time includes waiting for a core), then
    the peak traced MiB of one more run."""
    timings = []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        size = fn()
        timings.append((time.perf_counter() - wall, time.process_time() - cpu))
    timings.sort()
    seconds, cpu_s = timings[len(timings) // 2]
    tracemalloc.start()
    try:
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return {
        "seconds": seconds,
        "min_s": timings[0][0],
        "cpu_s": cpu_s,
        "runs": runs,
        "peak_mib": peak / 2**20,
        "size_mib": size / 2**20,
    }


def run(
    session: Session, batch: DisbursementBatch, workdir: Path, runs: int
) -> dict[str, dict[str, float]]:
    def write(fmt: str) -> Callable[[], int]:
        def build() -> int:
            with open(workdir / f"batch.{fmt}", "wb") as fh:
                return exports.build_file(session, batch, fmt, fh).size

        return build

    # Warm-up: compiled SQL, the program definition, imports (one small chunk).
    next(exports.line_chunks(session, batch.id, chunk=10))
    return {fmt: measure(write(fmt), runs) for fmt in ("csv", "xlsx")}


def max_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated line counts")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per figure (median)")
    parser.add_argument("--quick", action="store_true", help="10,000 lines only, one run")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    runs = max(args.runs, 1)
    if args.quick:
        sizes, runs = [10_000], 1

    with tempfile.TemporaryDirectory(prefix="shenbao-bench-export-") as tmp:
        workdir = Path(tmp)
        url = args.database_url or f"sqlite:///{workdir / 'bench.db'}"
        engine = create_engine(url)
        Base.metadata.create_all(engine)
        results: list[dict[str, Any]] = []
        with Session(engine) as session:
            sync_definitions(session)
            session.commit()
            for index, n in enumerate(sizes):
                started = time.perf_counter()
                batch_id = build_batch(session, n, 2900 + index).id
                setup = time.perf_counter() - started
                session.expunge_all()  # start the export with an empty identity map
                batch = session.get(DisbursementBatch, batch_id)
                figures = run(session, batch, workdir, runs)
                for fmt, f in figures.items():
                    results.append({"lines": n, "format": fmt, "setup_s": setup, **f})
        engine.dispose()

    print(f"Shenbao export benchmark · Python {platform.python_version()} · {url.split(':')[0]}")
    print(f"median of {runs} run(s); cpu = process CPU seconds of that run")
    print(
        f"{'lines':>8} {'format':>6} {'seconds':>8} {'min':>6} {'cpu':>6} {'lines/s':>9} "
        f"{'peak MiB':>9} {'file MiB':>9}"
    )
    for r in results:
        rate = r["lines"] / r["seconds"] if r["seconds"] else 0
        print(
            f"{r['lines']:>8} {r['format']:>6} {r['seconds']:>8.2f} {r['min_s']:>6.2f} "
            f"{r['cpu_s']:>6.2f} {rate:>9.0f} {r['peak_mib']:>9.2f} {r['size_mib']:>9.2f}"
        )
    print(f"process max RSS: {max_rss_mib():.0f} MiB (includes building the test data)")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"results": results, "max_rss_mib": max_rss_mib()}, indent=2),
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("SHENBAO_ENV", "development")
    sys.exit(main())
