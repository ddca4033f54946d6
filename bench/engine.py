"""Committed transitions per second through ``workflow.engine.fire``, against the same
writes done with plain SQL in the same run.

Every mode commits once per transition, as a web request does, with one worker process
per core (default 2) on disjoint applications:

``engine``    what a request does: load the user (``workflow.loaders.load_user``, the
              login loader) and the application (``load_application``, as the views do),
              ``fire(district_pass, expected_version=...)`` (permission, guards, machine,
              effects, notification + e-mail outbox row, audit event, optimistic lock),
              commit (the audit events are chained and inserted at commit under the
              chain-head lock), close the session. One Session per worker, reused.
``sql``       the same rows written by hand with psycopg: UPDATE ... WHERE id AND version,
              notification and outbox rows, then lock the chain head, INSERT the chained
              audit event, UPDATE the head, COMMIT.
``sql_min``   the brief's reference: UPDATE ... WHERE version + the (chained) audit event.

The applications are a sample in ``district_review`` (fired as the district officer of
their district); after each measured run they are put back, so runs are identical and
the data set is left as found (plus the audit events, which are never deleted).

The time the chain-head lock is held (from the ``SELECT ... FOR UPDATE`` returning to the
commit returning) is recorded per transaction: it bounds the commit rate of every writer
that records audit events, whatever the number of web hosts.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing as mp
import pstats
import time
from datetime import date
from typing import Any

from .common import bench_url, median, percentile
from .engine_worker import FROM_STATE, engine_items, worker

MODES = ("engine", "sql", "sql_min")


# ---------------------------------------------------------------- the driver


class Pool:
    """N persistent worker processes (spawned: nothing is shared with this process)."""

    def __init__(self, url: str, workers: int, today: date):
        ctx = mp.get_context("spawn")
        self.pipes = []
        self.procs = []
        for _ in range(workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(url, today, child), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def run(self, mode: str, shares: list[list[tuple[int, int, int]]], time_limit: float) -> dict:
        for pipe, items in zip(self.pipes, shares, strict=True):
            pipe.send((mode, items, time_limit))
        for pipe in self.pipes:
            assert pipe.recv() == "ready"
        wall0 = time.perf_counter()
        for pipe in self.pipes:
            pipe.send("go")
        results = [pipe.recv() for pipe in self.pipes]
        wall = time.perf_counter() - wall0
        done = sum(r["done"] for r in results)
        lat = [x for r in results for x in r["latencies"]]
        held = [x for r in results for x in r["held"]]
        busy = sum(r["elapsed"] for r in results)
        cpu = (sum(r["client_cpu"] for r in results), sum(r["server_cpu"] for r in results))
        return {
            "client_cpu_ms": cpu[0] / done * 1000 if done else None,
            "server_cpu_ms": cpu[1] / done * 1000 if done else None,
            "mode": mode,
            "done": done,
            "errors": sum(r["errors"] for r in results),
            "wall_s": wall,
            "rate": done / wall if wall else 0.0,
            "p50_ms": percentile(lat, 50) * 1000 if lat else None,
            "p95_ms": percentile(lat, 95) * 1000 if lat else None,
            "lock_held_ms_p50": percentile(held, 50) * 1000 if held else None,
            "lock_held_ms_p95": percentile(held, 95) * 1000 if held else None,
            "db_share": sum(r["db"] for r in results) / busy if busy else None,
        }

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for proc in self.procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()


def _sample(url: str, n: int) -> tuple[list[int], dict[int, int]]:
    """Up to n applications in district_review and each one's district officer."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            officers = dict(
                conn.execute(
                    text(
                        "SELECT g.district, min(u.id) FROM role_grants g JOIN users u ON "
                        "u.id = g.user_id WHERE g.role = 'district_officer' AND g.program_code "
                        "IS NULL GROUP BY g.district"
                    )
                ).all()
            )
            rows = conn.execute(
                text("SELECT id, district FROM applications WHERE state = :s ORDER BY id LIMIT :n"),
                {"s": FROM_STATE, "n": n},
            ).all()
    finally:
        engine.dispose()
    return [r.id for r in rows if r.district in officers], {
        r.id: officers[r.district] for r in rows if r.district in officers
    }


def _reset(url: str, ids: list[int]) -> dict[int, int]:
    """Put the sample back in district_review; returns each application's version."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE applications SET state = :s, stage = 'district', deadline_on = NULL "
                    "WHERE id = ANY(:ids) AND state <> :s"
                ),
                {"s": FROM_STATE, "ids": ids},
            )
            return dict(
                conn.execute(
                    text("SELECT id, version FROM applications WHERE id = ANY(:ids)"), {"ids": ids}
                ).all()
            )
    finally:
        engine.dispose()


def run(
    url: str | None = None,
    *,
    workers: int = 2,
    runs: int = 5,
    per_run: int = 600,
    time_limit: float = 20.0,
    modes: tuple[str, ...] = MODES,
    log: Any = print,
) -> dict[str, Any]:
    """Medians over ``runs`` runs of each mode (after one warm-up run of each)."""
    url = url or bench_url()
    today = date.today()
    ids, officer = _sample(url, per_run)
    if len(ids) < 20 * workers:
        return {"skipped": f"only {len(ids)} applications in {FROM_STATE}"}
    pool = Pool(url, workers, today)
    per_mode: dict[str, list[dict]] = {m: [] for m in modes}
    try:
        for r in range(runs + 1):  # run 0 warms up (imports, compiled definitions, pools)
            order = modes[r % len(modes) :] + modes[: r % len(modes)]  # rotate: no order bias
            for mode in order:
                versions = _reset(url, ids)
                items = [(i, officer[i], versions[i]) for i in ids]
                shares = [items[w::workers] for w in range(workers)]
                result = pool.run(mode, shares, time_limit)
                if r > 0:
                    per_mode[mode].append(result)
                    log(
                        f"  engine run {r} {mode:8} {result['rate']:7.1f}/s "
                        f"({result['done']} in {result['wall_s']:.2f} s, {result['errors']} errors)"
                    )
        _reset(url, ids)
    finally:
        pool.close()
    summary: dict[str, Any] = {"workers": workers, "sample": len(ids), "runs": runs}
    for mode, results in per_mode.items():
        summary[mode] = {
            key: median([x[key] for x in results if x[key] is not None])
            for key in (
                "rate",
                "p50_ms",
                "p95_ms",
                "lock_held_ms_p50",
                "lock_held_ms_p95",
                "db_share",
                "client_cpu_ms",
                "server_cpu_ms",
            )
        }
        summary[mode]["rates"] = [round(x["rate"], 1) for x in results]
        summary[mode]["errors"] = sum(x["errors"] for x in results)
    if "engine" in summary and "sql" in summary:
        summary["ratio_vs_sql"] = summary["engine"]["rate"] / summary["sql"]["rate"]
    if "engine" in summary and "sql_min" in summary:
        summary["ratio_vs_sql_min"] = summary["engine"]["rate"] / summary["sql_min"]["rate"]
    return summary


def profile(url: str | None = None, n: int = 150, top: int = 30) -> str:
    """cProfile, on the process CPU clock, of ``n`` transitions through ``fire`` in this
    process: where a transition's CPU goes. Returns the report text."""
    url = url or bench_url()
    ids, officer = _sample(url, n)
    versions = _reset(url, ids)
    one, close, _pid = engine_items(url, date.today(), None)
    for i in ids[:3]:  # warm-up outside the profile
        one(i, officer[i], versions[i])
    prof = cProfile.Profile(time.process_time)
    cpu0 = time.process_time()
    prof.enable()
    for i in ids[3:]:
        one(i, officer[i], versions[i])
    prof.disable()
    cpu = time.process_time() - cpu0
    close()
    _reset(url, ids)
    out = io.StringIO()
    out.write(
        f"fire: {len(ids) - 3} transitions, {cpu / (len(ids) - 3) * 1000:.1f} ms of CPU "
        "each under cProfile (the profiler roughly doubles Python's cost; compare shares)\n"
    )
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(r"workflow|bench/engine", top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="engine transitions per second vs plain SQL")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--per-run", type=int, default=600)
    parser.add_argument("--time-limit", type=float, default=20.0)
    parser.add_argument("--profile", action="store_true", help="cProfile the engine mode")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.profile:
        print(profile())
        return 0
    result = run(
        workers=args.workers, runs=args.runs, per_run=args.per_run, time_limit=args.time_limit
    )
    print(json.dumps(result, indent=1, default=str))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
