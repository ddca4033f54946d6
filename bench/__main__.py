"""The one benchmark command: generate the data set at each scale (growing it), run the
engine, queue and HTTP benchmarks at each scale and the PDF, export and decision-letter
(end to end through RQ workers) benchmarks once, print the table and write it to
docs/PERFORMANCE.md.

    .venv/bin/python -m bench                       # 10k, 100k and 1M applications
    .venv/bin/python -m bench --quick               # 10k only, fewer repetitions (minutes)
    .venv/bin/python -m bench --scales 10000,100000 --only engine,queue

Every figure is the median of ``--runs`` runs (default 5) after a warm-up run. Each loop
has a count and a time limit. Raw results go to bench/results/last-run.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import report
from .common import (
    ROOT,
    bench_url,
    cpu_calibration_ms,
    cpu_ticks,
    drop_schema,
    is_postgres,
    machine_info,
    steal_share,
)

RESULTS = ROOT / "bench" / "results" / "last-run.json"
PARTS = ("engine", "queue", "http", "pdf", "export", "decisions")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _existing_apps(url: str) -> int:
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    try:
        if not inspect(engine).has_table("applications"):
            return 0
        with engine.connect() as conn:
            return int(conn.scalar(text("SELECT count(*) FROM applications")) or 0)
    except Exception:  # no database yet
        return 0
    finally:
        engine.dispose()


def _subprocess_json(module: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run another engineer's benchmark as ``python -m module ... --json PATH``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        proc = subprocess.run(
            [sys.executable, "-m", module, *args, "--json", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"skipped": f"{module} exited {proc.returncode}: {' / '.join(tail)}"[:300]}
        return json.loads(out.read_text(encoding="utf-8"))


def _export_rows(result: dict[str, Any]) -> dict[str, Any]:
    """bench_export's JSON as table rows: {name: (value text, goal, met)}."""
    if "skipped" in result or "results" not in result:
        return {"status": (str(result.get("skipped") or result)[:200], "", None)}
    rows: dict[str, Any] = {}
    for r in result["results"]:
        n, fmt = int(r["lines"]), r["format"]
        value = f"{r['seconds']:.2f} s, peak {r['peak_mib']:.1f} MiB, file {r['size_mib']:.1f} MiB"
        goal, met = "", None
        if n == 100_000 and fmt == "xlsx":
            goal, met = "< 5 s, < 200 MB", r["seconds"] < 5 and r["peak_mib"] < 200
        elif n == 100_000 and fmt == "csv":
            goal, met = "< 1 s", r["seconds"] < 1
        rows[f"{n:,} lines to {fmt.upper()}"] = (value, goal, met)
    if "max_rss_mib" in result:
        rows["process max RSS (incl. building the data)"] = (
            f"{result['max_rss_mib']:.0f} MiB",
            "",
            None,
        )
    return rows


def _once(parts: set[str], runs: int, quick: bool, log: Any) -> dict[str, Any]:
    once: dict[str, Any] = {}
    if "pdf" in parts and (ROOT / "bench" / "bench_pdf.py").exists():
        log("PDF benchmark (bench/bench_pdf.py) ...")
        once["pdf"] = _subprocess_json("bench.bench_pdf", ["--runs", str(max(runs, 5))], 900)
    if "export" in parts:
        path = ROOT / "bench" / "bench_export.py"
        if path.exists():
            log("export benchmark (bench/bench_export.py) ...")
            args = ["--quick"] if quick and "--quick" in path.read_text(encoding="utf-8") else []
            if "--json" in path.read_text(encoding="utf-8"):
                result = _subprocess_json("bench.bench_export", args, 1800)
            else:
                proc = subprocess.run(
                    [sys.executable, "-m", "bench.bench_export", *args],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    timeout=1800,
                    check=False,
                )
                result = {"output": proc.stdout.strip().splitlines()[-1:] or ["-"]}
            once["export"] = _export_rows(result)
        else:
            once["export"] = {"status": "bench/bench_export.py not written yet"}
    if "decisions" in parts:
        log("decisions end to end through 2 RQ workers (bench/bench_decisions.py) ...")
        args = ["--runs", str(min(runs, 3)), "--count", "200" if quick else "1000"]
        # Each run stops at its own time limit, well inside this timeout: a benchmark killed
        # here could not stop its workers.
        args += ["--time-limit", "300" if quick else "900"]
        once["decisions"] = _subprocess_json("bench.bench_decisions", args, 3 * 900 + 600)
    return once


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default=None, help="comma-separated application counts")
    parser.add_argument("--quick", action="store_true", help="10k only, shorter runs")
    parser.add_argument("--runs", type=int, default=5, help="measured runs per figure (>= 5)")
    parser.add_argument("--only", default=",".join(PARTS), help=f"subset of {','.join(PARTS)}")
    parser.add_argument(
        "--workers",
        default="2,4",
        help="engine benchmark processes: one count, or two (the second is also reported)",
    )
    parser.add_argument("--no-reset", action="store_true", help="keep a larger existing data set")
    parser.add_argument("--audit-events", action="store_true", help="generate audit history too")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/PERFORMANCE.md")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="add these parts' results to the last run's (e.g. the once-only parts later)",
    )
    parser.add_argument(
        "--rewrite-doc", action="store_true", help="only re-render the doc from the last results"
    )
    args = parser.parse_args(argv)
    if args.rewrite_doc:
        results = json.loads(RESULTS.read_text(encoding="utf-8"))
        report.write_doc(results)
        print(report.render(results))
        return 0

    url = bench_url()
    if not is_postgres(url):
        parser.error("the benchmarks need PostgreSQL (BENCH_DATABASE_URL)")
    scales = (
        [int(x) for x in args.scales.split(",")]
        if args.scales
        else ([10_000] if args.quick else [10_000, 100_000, 1_000_000])
    )
    scales.sort()
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    runs = max(1, args.runs)
    q = args.quick
    log = print

    from . import engine as engine_bench
    from . import http as http_bench
    from . import queue as queue_bench
    from .generate import generate, summary

    command = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
    results: dict[str, Any] = {
        "command": command,
        "runs": runs,
        "machine": machine_info(url)
        | {"load_before": _load(), "cpu_calibration_ms": cpu_calibration_ms()},
        "scales": {},
        "notes": [],
    }
    if args.merge and RESULTS.exists():
        previous = json.loads(RESULTS.read_text(encoding="utf-8"))
        results = previous | {"command": f"{previous.get('command', '')}; then {command}"}
        results.setdefault("scales", {})
    existing = _existing_apps(url)
    scale_parts = parts & {"engine", "queue", "http"}
    if args.merge and not scale_parts:
        scales = []  # only the once-measured parts: no data set needed
    elif existing > scales[0]:
        if args.no_reset:
            scales = [s for s in scales if s >= existing]
            log(f"keeping {existing} applications; scales now {scales}")
        else:
            log(f"the bench database holds {existing} applications (> {scales[0]}): regenerating")
            drop_schema(url)
    started = time.perf_counter()
    ticks_before = cpu_ticks()
    for scale in scales:
        log(f"== {scale:,} applications")
        data: dict[str, Any] = dict(results["scales"].get(str(scale), {})) if args.merge else {}
        t = time.perf_counter()
        gen = generate(url, scale, audit_events=args.audit_events, log=log)
        info = summary(url)
        data["generate"] = {
            "step_s": time.perf_counter() - t,
            "from": gen.apps_before,
            "to": gen.apps_after,
            "seconds": gen.seconds,
            "size": info["size"],
            "states": info["states"],
        }
        load_start = os.getloadavg()[0]
        if "engine" in parts:
            log("engine benchmark ...")
            counts = [int(x) for x in str(args.workers).split(",") if x.strip()][:2]
            for key, workers in zip(("engine", "engine_more"), counts, strict=False):
                data[key] = engine_bench.run(
                    url,
                    workers=workers,
                    runs=runs,
                    per_run=150 if q else 400,
                    time_limit=6.0 if q else 12.0,
                    log=log,
                )
        if "queue" in parts:
            log("queue benchmark ...")
            data["queue"] = queue_bench.run(
                url, runs=runs, calls=6 if q else 12, time_limit=30.0 if q else 60.0, log=log
            )
        if "http" in parts:
            log("HTTP benchmark ...")
            try:
                data["http"] = http_bench.run(
                    url,
                    runs=runs,
                    status_count=640 if q else 1280,
                    submits=64 if q else 128,
                    time_limit=15.0 if q else 25.0,
                    log=log,
                )
            except RuntimeError as exc:  # the server did not start: say so in the table
                data["http"] = {"skipped": str(exc)}
        data["load"] = f"{load_start:.1f} -> {os.getloadavg()[0]:.1f}"
        results["scales"][str(scale)] = data
        _save(results, args.no_write)
        log(f"-- {scale:,} done after {time.perf_counter() - started:.0f} s")
    once = _once(parts, runs, q, log)
    results["once"] = (results.get("once") or {}) | once if args.merge else once
    results["machine"]["load_after"] = _load()
    results["machine"]["steal"] = steal_share(ticks_before, cpu_ticks())
    results["machine"]["cpu_calibration_after_ms"] = cpu_calibration_ms()
    results["total_s"] = time.perf_counter() - started
    _save(results, args.no_write)
    print()
    print(report.render(results))
    return 0


def _save(results: dict[str, Any], no_write: bool) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(results, indent=1, ensure_ascii=False, default=str), encoding="utf-8"
    )
    if not no_write:
        report.write_doc(results)


if __name__ == "__main__":
    raise SystemExit(main())
