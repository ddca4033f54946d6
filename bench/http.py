"""HTTP under load: the applicant status page and submit, behind gunicorn (2 workers,
gthread) on loopback, 32 concurrent clients, with a load generator made of threads and
``http.client`` (keep-alive connections, one per client).

The server runs as in production: ``SHENBAO_ENV=production``, a ``SECRET_KEY``, the bench
database, ``REDIS_URL`` set to a local Redis database of its own (jobs are relayed to RQ
after the commit; nobody consumes them during the run; if no Redis answers they run
in-process, as the embedded configuration does; the results say which). Clients log in through the real ``/login`` form (Argon2 check, CSRF
token), once, before the timed runs.

* ``status``: GET /applications/<id> of the client's own application under review,
  repeatedly, bounded by a request count and a time limit per run.
* ``submit``: POST /applications/<id>/submit (CSRF token and version from the form) of a
  complete draft in an open call: validation, snapshot, number, award computation,
  notification, audit chain, commit. Each draft is submitted once per run; between runs
  the drafts are put back by SQL, so every run submits the same drafts.

A response counts as an error unless it is 200 (status) or 302 to the status page
(submit).

* ``status_wrk``: the status page again, the load from wrk instead of client threads
  (``bench/http_wrk.py``; skipped, and said so, when wrk is not installed).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from . import http_wrk
from .common import BENCH_PASSWORD, bench_url, median, percentile
from .http_tools import Client, CpuMeter, bench_redis_url, hidden_inputs, parallel, server

CLIENTS = 32
GOAL_MS = 150.0


# ---------------------------------------------------------------- data for the clients


@dataclass
class Fixture:
    status: list[tuple[str, int]] = field(default_factory=list)  # (email, application id)
    submit: list[tuple[str, int]] = field(default_factory=list)


def _fixture(url: str, clients: int, submits: int) -> Fixture:
    """Applicants with an application under review (status page) and applicants with a
    complete draft in an open call (submit): one organization each."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            open_calls = [
                r.id
                for r in conn.execute(
                    text(
                        "SELECT id FROM calls WHERE opens_on <= current_date AND closes_on >= current_date"
                    )
                )
            ]
            status = conn.execute(
                text(
                    "SELECT DISTINCT ON (a.organization_id) u.email, a.id FROM applications a "
                    "JOIN users u ON u.organization_id = a.organization_id "
                    "WHERE a.state IN ('city_review', 'district_review', 'approval') "
                    "ORDER BY a.organization_id, a.id LIMIT :n"
                ),
                {"n": clients},
            ).all()
            drafts = conn.execute(
                text(
                    "SELECT DISTINCT ON (a.organization_id) u.email, a.id FROM applications a "
                    "JOIN users u ON u.organization_id = a.organization_id "
                    "WHERE a.state = 'draft' AND a.call_id = ANY(:calls) "
                    "AND EXISTS (SELECT 1 FROM attachments t WHERE t.application_id = a.id) "
                    "ORDER BY a.organization_id, a.id LIMIT :n"
                ),
                {"calls": open_calls, "n": submits},
            ).all()
    finally:
        engine.dispose()
    return Fixture([(r.email, r.id) for r in status], [(r.email, r.id) for r in drafts])


def _reset_drafts(url: str, ids: list[int]) -> dict[int, int]:
    """Put submitted drafts back (state, number, snapshot, award); returns versions."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE applications SET state = 'draft', stage = 'draft', number = NULL, snapshot = NULL, "
                    "submitted_at = NULL, eligibility = NULL, award_trace = NULL, award_fen = NULL, "
                    "deadline_on = NULL WHERE id = ANY(:ids) AND state <> 'draft'"
                ),
                {"ids": ids},
            )
            return dict(
                conn.execute(
                    text("SELECT id, version FROM applications WHERE id = ANY(:ids)"), {"ids": ids}
                ).all()
            )
    finally:
        engine.dispose()


# ---------------------------------------------------------------- load


def _login_all(port: int, emails: list[str]) -> dict[str, Client]:
    def one(email: str) -> tuple[str, Client | None]:
        c = Client(port)
        return email, c if c.login(email, BENCH_PASSWORD) else None

    out = dict(parallel(emails, one, 8))
    failed = [e for e, c in out.items() if c is None]
    if failed:
        raise RuntimeError(f"login failed for {len(failed)} users, e.g. {failed[0]}")
    return out  # type: ignore[return-value]


def _status_run(clients: list[tuple[Client, int]], count: int, time_limit: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    per_client = max(1, count // len(clients))
    started = time.perf_counter()

    def work(item: tuple[Client, int]) -> None:
        client, app_id = item
        for _ in range(per_client):
            if time.perf_counter() - started > time_limit:
                return
            t0 = time.perf_counter()
            try:
                status, _body, _h = client.request("GET", f"/applications/{app_id}")
                ok = status == 200
            except Exception as exc:  # counted as an error, never dropped
                status, ok = repr(exc)[:80], False
            with lock:
                latencies.append(time.perf_counter() - t0)
                if not ok:
                    errors.append(str(status))

    parallel(clients, work, len(clients))
    return _summary(latencies, errors, time.perf_counter() - started)


def _submit_run(tasks: list[tuple[Client, int, int, str]], threads: int, time_limit: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    started = time.perf_counter()

    def one(task: tuple[Client, int, int, str]) -> None:
        client, app_id, version, token = task
        if time.perf_counter() - started > time_limit:
            return
        t0 = time.perf_counter()
        try:
            status, _body, headers = client.request(
                "POST", f"/applications/{app_id}/submit", {"csrf_token": token, "version": version}
            )
            ok = status in (302, 303) and f"/applications/{app_id}" in headers.get("Location", "")
        except Exception as exc:  # counted as an error, never dropped
            status, ok = repr(exc)[:80], False
        with lock:
            latencies.append(time.perf_counter() - t0)
            if not ok:
                errors.append(str(status))

    parallel(tasks, one, threads)
    return _summary(latencies, errors, time.perf_counter() - started)


def _cpu_per_request(res: dict, cpu: CpuMeter) -> None:
    n = res["requests"] or 1
    res["app_cpu_ms"] = cpu.app / n * 1000
    res["db_cpu_ms"] = cpu.db / n * 1000


def _summary(latencies: list[float], errors: list[str], wall: float) -> dict:
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "p50_ms": percentile(latencies, 50) * 1000 if latencies else None,
        "p95_ms": percentile(latencies, 95) * 1000 if latencies else None,
        "rps": len(latencies) / wall if wall else 0.0,
    }


def run(
    url: str | None = None,
    *,
    runs: int = 5,
    clients: int = CLIENTS,
    status_count: int = 1600,
    submits: int = 160,
    time_limit: float = 30.0,
    wrk_seconds: float = 10.0,
    log: Any = print,
) -> dict[str, Any]:
    url = url or bench_url()
    fx = _fixture(url, clients, submits)
    if len(fx.status) < clients:
        return {"skipped": f"only {len(fx.status)} applicants with an application under review"}
    out: dict[str, Any] = {"clients": clients, "workers": 2, "threads": 4}
    with server(url) as port:
        status_clients = _login_all(port, [e for e, _ in fx.status])
        submit_clients = _login_all(port, [e for e, _ in fx.submit]) if fx.submit else {}
        tokens: dict[str, str] = {}
        for email, app_id in fx.submit:
            _s, html, _h = submit_clients[email].request("GET", f"/applications/{app_id}")
            forms = hidden_inputs(html)
            tokens[email] = next((f["csrf_token"] for f in forms.values() if "csrf_token" in f), "")
        results: dict[str, list[dict]] = {"status": [], "submit": [], "status_wrk": []}
        pairs = [(status_clients[e], a) for e, a in fx.status]
        wrk_items = [
            (f"/applications/{a}", "; ".join(f"{k}={v}" for k, v in c.cookies.items()))
            for c, a in pairs
        ]
        wrk_missing = http_wrk.available() if wrk_seconds else "not asked for"
        for r in range(runs + 1):  # run 0 warms up both scenarios
            with CpuMeter(url) as cpu:
                res = _status_run(pairs, status_count if r else 200, time_limit)
            _cpu_per_request(res, cpu)
            if r:
                results["status"].append(res)
                log(
                    f"  http status run {r}: p50 {res['p50_ms']:.1f} ms p95 {res['p95_ms']:.1f} ms, {res['rps']:.0f} req/s, {res['errors']} errors"
                )
            if r and not wrk_missing:
                with CpuMeter(url) as cpu:
                    res = http_wrk.run_status(port, wrk_items, seconds=wrk_seconds)
                _cpu_per_request(res, cpu)
                results["status_wrk"].append(res)
                log(
                    f"  http status (wrk) run {r}: p50 {res['p50_ms']:.1f} ms p95 {res['p95_ms']:.1f} ms, {res['rps']:.0f} req/s, {res['errors']} errors"
                )
            if fx.submit:
                versions = _reset_drafts(url, [a for _e, a in fx.submit])
                tasks = [(submit_clients[e], a, versions[a], tokens[e]) for e, a in fx.submit]
                with CpuMeter(url) as cpu:
                    res = _submit_run(tasks if r else tasks[:clients], clients, time_limit)
                _cpu_per_request(res, cpu)
                if r:
                    results["submit"].append(res)
                    log(
                        f"  http submit run {r}: p50 {res['p50_ms']:.1f} ms p95 {res['p95_ms']:.1f} ms, {res['rps']:.0f} req/s, {res['errors']} errors {res['error_kinds']}"
                    )
        if fx.submit:
            _reset_drafts(url, [a for _e, a in fx.submit])
        for c in list(status_clients.values()) + list(submit_clients.values()):
            c.close()
    for scenario, items in results.items():
        if not items:
            why = wrk_missing if scenario == "status_wrk" else "no complete drafts in an open call"
            out[scenario] = {"skipped": why}
            continue
        out[scenario] = {
            "p50_ms": median([x["p50_ms"] for x in items]),
            "p95_ms": median([x["p95_ms"] for x in items]),
            "rps": median([x["rps"] for x in items]),
            "app_cpu_ms": median([x["app_cpu_ms"] for x in items]),
            "db_cpu_ms": median([x["db_cpu_ms"] for x in items]),
            "requests": sum(x["requests"] for x in items),
            "errors": sum(x["errors"] for x in items),
            "error_kinds": sorted({k for x in items for k in x["error_kinds"]})[:5],
            "runs": len(items),
        }
    out["jobs"] = "relayed to Redis (RQ)" if bench_redis_url() else "run in-process"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="HTTP status page and submit under load")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    result = run(runs=args.runs, clients=args.clients)
    print(json.dumps(result, indent=1, ensure_ascii=False, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
