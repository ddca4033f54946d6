"""Benchmark: exporting a disbursement batch of 100,000 lines as CSV and as XLSX.

Builds a throw-away database (a temporary SQLite file, or ``--database-url``: use an
empty PostgreSQL database you own, its tables are created and left there) with one call,
one organization and N decisions on one locked batch, then writes the batch through
``workflow.exports`` exactly as the web download does: the CSV generator, and the XLSX
written by xlsxwriter in ``constant_memory`` mode to a temporary file. Each format runs
twice: once for time (no tracing) and once under ``tracemalloc`` for the peak of Python
allocations. Prints a table; ``--json`` also writes the figures.

    .venv/bin/python -m bench.bench_export [--lines 100000] [--sizes 10000,100000]

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

from sqlalchemy import create_engine, insert
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


def build_batch(session: Session, n: int, year: int) -> DisbursementBatch:
    """A locked batch of ``n`` lines (decisions inserted in bulk, amounts varied)."""
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
                    "payee": payee,
                    "status": "pending",
                }
            )
        session.execute(insert(DisbursementLine), rows)
    batch.line_count, batch.total_fen = n, total
    batch.lock_hash = compute_lock_hash(session, batch)[0]
    session.commit()
    return batch


def measure(fn: Callable[[], int]) -> dict[str, float]:
    """Seconds (untraced run) and peak traced MiB (second, traced run)."""
    start = time.perf_counter()
    size = fn()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    try:
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return {"seconds": seconds, "peak_mib": peak / 2**20, "size_mib": size / 2**20}


def run(session: Session, batch: DisbursementBatch, workdir: Path) -> dict[str, dict[str, float]]:
    def write_csv() -> int:
        path = workdir / "batch.csv"
        with open(path, "wb") as fh:
            for chunk in exports.csv_chunks(session, batch):
                fh.write(chunk)
        return path.stat().st_size

    def write_xlsx() -> int:
        path = workdir / "batch.xlsx"
        exports.write_xlsx(session, batch, str(path))
        return path.stat().st_size

    # Warm-up: compiled SQL, the program definition, imports.
    list(exports.batch_rows(session, batch.id, chunk=10))
    return {"csv": measure(write_csv), "xlsx": measure(write_xlsx)}


def max_rss_mib() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated line counts")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]

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
                figures = run(session, batch, workdir)
                for fmt, f in figures.items():
                    results.append({"lines": n, "format": fmt, "setup_s": setup, **f})
        engine.dispose()

    print(f"Shenbao export benchmark · Python {platform.python_version()} · {url.split(':')[0]}")
    print(
        f"{'lines':>8} {'format':>6} {'seconds':>8} {'lines/s':>9} {'peak MiB':>9} {'file MiB':>9}"
    )
    for r in results:
        rate = r["lines"] / r["seconds"] if r["seconds"] else 0
        print(
            f"{r['lines']:>8} {r['format']:>6} {r['seconds']:>8.2f} {rate:>9.0f} "
            f"{r['peak_mib']:>9.2f} {r['size_mib']:>9.2f}"
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
