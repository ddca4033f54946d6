"""The results table: one row per figure, one column per scale, the goal and whether it
is met; written to docs/PERFORMANCE.md between markers (hand-written text outside the
markers is kept)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import ROOT

DOC = ROOT / "docs" / "PERFORMANCE.md"
BEGIN = "<!-- bench:results:begin (written by `python -m bench`; edit outside the markers) -->"
END = "<!-- bench:results:end -->"

Getter = Callable[[dict[str, Any]], Any]


def _get(*path: str) -> Getter:
    def get(d: dict[str, Any]) -> Any:
        for key in path:
            if not isinstance(d, dict) or key not in d:
                return None
            d = d[key]
        return d

    return get


def _queue(officer: str, page: str, key: str) -> Getter:
    def get(d: dict[str, Any]) -> Any:
        for case in (d.get("queue") or {}).get("cases", []):
            if case["officer"] == officer and case["page"] == page:
                return case.get(key)
        return None

    return get


def _queue_label(officer: str, page: str) -> Getter:
    return _queue(officer, page, "label")


# (figure, getter, format, goal text, goal check on the value) per row.
# fmt: off
ROWS: list[tuple[str, Getter, str, str, Callable[[Any], bool] | None]] = [
    ("data: generation time for this step, s", _get("generate", "step_s"), "{:.0f}", "", None),
    ("data: database size", _get("generate", "size"), "{}", "", None),
    ("machine: 1-min load average, start -> end of the runs", _get("load"), "{}", "< 2 (idle)", None),
    ("engine: worker processes (rows above the 'more workers' rows ; those)", lambda d: _workers(d), "{}", "", None),
    ("engine: committed transitions/s (fire)", _get("engine", "engine", "rate"), "{:.0f}", ">= 300/s", lambda v: v >= 300),
    ("engine: fire / plain SQL (same writes)", _get("engine", "ratio_vs_sql"), "{:.0%}", ">= 50%", lambda v: v >= 0.5),
    ("engine: plain SQL, same writes, /s", _get("engine", "sql", "rate"), "{:.0f}", "", None),
    ("engine: plain SQL, UPDATE + audit event only, /s", _get("engine", "sql_min", "rate"), "{:.0f}", "", None),
    ("engine: fire / plain SQL (UPDATE + audit only)", _get("engine", "ratio_vs_sql_min"), "{:.0%}", "", None),
    ("engine: CPU ms per transition, worker+db: fire / plain SQL", lambda d: _cpu(d), "{}", "", None),
    ("engine: fire latency p50 / p95, ms", lambda d: _pair(d, ("engine", "engine", "p50_ms"), ("engine", "engine", "p95_ms")), "{}", "", None),
    ("engine: chain-head lock held p50 / p95, ms: fire", lambda d: _pair(d, ("engine", "engine", "lock_held_ms_p50"), ("engine", "engine", "lock_held_ms_p95")), "{}", "", None),
    ("engine: chain-head lock held p50 / p95, ms: plain SQL", lambda d: _pair(d, ("engine", "sql", "lock_held_ms_p50"), ("engine", "sql", "lock_held_ms_p95")), "{}", "", None),
    ("engine: share of fire's wall time in the database", _get("engine", "engine", "db_share"), "{:.0%}", "", None),
    ("engine, more workers: committed transitions/s (fire)", _get("engine_more", "engine", "rate"), "{:.0f}", ">= 300/s", lambda v: v >= 300),
    ("engine, more workers: fire / plain SQL (same writes)", _get("engine_more", "ratio_vs_sql"), "{:.0%}", ">= 50%", lambda v: v >= 0.5),
    ("engine, more workers: plain SQL, same writes, /s", _get("engine_more", "sql", "rate"), "{:.0f}", "", None),
    ("engine, more workers: CPU ms per transition, worker+db: fire / plain SQL", lambda d: _cpu(d, "engine_more"), "{}", "", None),
    ("engine, more workers: chain-head lock held p50, ms: fire / plain SQL", lambda d: _pair(d, ("engine_more", "engine", "lock_held_ms_p50"), ("engine_more", "sql", "lock_held_ms_p50")), "{}", "", None),
    ("queue, city officer: first page p50 / p95, ms", lambda d: _pair2(_queue("city", "first", "p50_ms")(d), _queue("city", "first", "p95_ms")(d)), "{}", "p95 < 100", lambda v: _p95_ok(v)),
    ("queue, city officer: deep page p50 / p95, ms", lambda d: _pair2(_queue("city", "deep", "p50_ms")(d), _queue("city", "deep", "p95_ms")(d)), "{}", "p95 < 100", lambda v: _p95_ok(v)),
    ("queue, city officer: deep page measured", _queue_label("city", "deep"), "{}", "page 1000", None),
    ("queue, district officer: first page p50 / p95, ms", lambda d: _pair2(_queue("district", "first", "p50_ms")(d), _queue("district", "first", "p95_ms")(d)), "{}", "p95 < 100", lambda v: _p95_ok(v)),
    ("queue, district officer: deep page p50 / p95, ms", lambda d: _pair2(_queue("district", "deep", "p50_ms")(d), _queue("district", "deep", "p95_ms")(d)), "{}", "p95 < 100", lambda v: _p95_ok(v)),
    ("queue, district officer: deep page measured", _queue_label("district", "deep"), "{}", "page 1000", None),
    ("queue: queries per page (every case)", lambda d: _queries(d), "{}", "constant", lambda v: v is not None and "," not in str(v)),
    ("http status page p50 / p95, ms (32 clients)", lambda d: _pair(d, ("http", "status", "p50_ms"), ("http", "status", "p95_ms")), "{}", "p95 < 150", lambda v: _p95_ok(v, 150)),
    ("http status page: requests/s, errors", lambda d: _rate_err(d, "status"), "{}", "no errors", lambda v: v is not None and v.endswith(", 0")),
    ("http submit p50 / p95, ms (32 clients)", lambda d: _pair(d, ("http", "submit", "p50_ms"), ("http", "submit", "p95_ms")), "{}", "p95 < 150", lambda v: _p95_ok(v, 150)),
    ("http submit: requests/s, errors", lambda d: _rate_err(d, "submit"), "{}", "no errors", lambda v: v is not None and v.endswith(", 0")),
    ("http: CPU ms per request, app+db: status ; submit", lambda d: _http_cpu(d), "{}", "", None),
    ("http status page, load from wrk: p50 / p95, ms (32 connections)", lambda d: _pair(d, ("http", "status_wrk", "p50_ms"), ("http", "status_wrk", "p95_ms")), "{}", "p95 < 150", lambda v: _p95_ok(v, 150)),
    ("http status page, load from wrk: requests/s, errors", lambda d: _rate_err(d, "status_wrk"), "{}", "no errors", lambda v: v is not None and v.endswith(", 0")),
    ("http status page, load from wrk: CPU ms per request, app+db", lambda d: _pair_cpu(d, "status_wrk"), "{}", "", None),
]
# fmt: on
# Figures that do not depend on the number of applications: measured once.
ONCE: list[tuple[str, Getter, str, str, Callable[[Any], bool] | None]] = [
    (
        "PDF: Chinese letter, median s",
        _get("pdf", "cases", "chinese", "median_s"),
        "{:.3f}",
        "",
        None,
    ),
    (
        "PDF: Latin baseline, median s",
        _get("pdf", "cases", "latin", "median_s"),
        "{:.3f}",
        "",
        None,
    ),
    (
        "PDF: Chinese / Latin time",
        _get("pdf", "ratio_median"),
        "{:.2f}x",
        "<= 1.5x",
        lambda v: v <= 1.5,
    ),
    (
        "PDF: Chinese letter size, KB",
        _get("pdf", "cases", "chinese", "size_kb"),
        "{:.1f}",
        "< 40 KB",
        lambda v: v < 40,
    ),
    (
        "decisions: letters rendered end to end (outbox, Redis, RQ workers, storage)",
        lambda d: _decisions_label(d),
        "{}",
        "1,000 through 2 workers",
        None,
    ),
    (
        "decisions: wall s, first enqueue to last PDF stored",
        _get("decisions", "wall_s"),
        "{:.1f}",
        "",
        None,
    ),
    ("decisions: PDFs/s", _get("decisions", "pdfs_per_s"), "{:.1f}", "", None),
    (
        "decisions: per-document job run time p50 / p95, s",
        lambda d: _seconds_pair(d, "decisions", "run_p50_s", "run_p95_s"),
        "{}",
        "",
        None,
    ),
    (
        "decisions: worker CPU per PDF, ms (incl. the fork)",
        _get("decisions", "worker_cpu_ms_per_pdf"),
        "{:.0f}",
        "",
        None,
    ),
    (
        "decisions: errors (failed jobs, missing or invalid PDFs), all runs",
        _get("decisions", "errors"),
        "{}",
        "0",
        lambda v: v == 0,
    ),
    (
        "decisions: letters finished only after RQ's retry, all runs",
        _get("decisions", "retried"),
        "{}",
        "",
        None,
    ),
]


def _decisions_label(once: dict[str, Any]) -> str | None:
    d = once.get("decisions")
    if not isinstance(d, dict):
        return None
    if "skipped" in d:
        return str(d["skipped"])
    runs = f"median of {d['runs']} runs" if d.get("runs", 1) > 1 else "1 run"
    return f"{d['count']:,} through {d['workers']} workers, {runs}"


def _seconds_pair(once: dict[str, Any], part: str, a: str, b: str) -> str | None:
    x, y = _get(part, a)(once), _get(part, b)(once)
    return None if x is None or y is None else f"{x:.2f} / {y:.2f}"


def _num(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def _pair(d: dict[str, Any], a: tuple[str, ...], b: tuple[str, ...]) -> str | None:
    x, y = _get(*a)(d), _get(*b)(d)
    return None if x is None and y is None else f"{_num(x)} / {_num(y)}"


def _pair_cpu(d: dict[str, Any], scenario: str) -> str | None:
    h = (d.get("http") or {}).get(scenario) or {}
    if h.get("app_cpu_ms") is None:
        return None
    return f"{h['app_cpu_ms']:.1f}+{h['db_cpu_ms']:.1f}"


def _workers(d: dict[str, Any]) -> str | None:
    counts = [(d.get(k) or {}).get("workers") for k in ("engine", "engine_more")]
    return None if counts[0] is None else " ; ".join(str(c) for c in counts if c is not None)


def _pair2(x: Any, y: Any) -> str | None:
    return None if x is None and y is None else f"{_num(x)} / {_num(y)}"


def _p95_ok(v: Any, goal: float = 100.0) -> bool:
    try:
        return float(str(v).split("/")[1]) < goal
    except (IndexError, ValueError):
        return False


def _cpu(d: dict[str, Any], key: str = "engine") -> str | None:
    e = d.get(key) or {}
    parts = []
    for mode in ("engine", "sql"):
        m = e.get(mode) or {}
        c, s = m.get("client_cpu_ms"), m.get("server_cpu_ms")
        parts.append("-" if c is None else f"{c:.1f}+{s:.1f}")
    return None if all(p == "-" for p in parts) else " / ".join(parts)


def _http_cpu(d: dict[str, Any]) -> str | None:
    h = d.get("http") or {}
    parts = []
    for scenario in ("status", "submit"):
        m = h.get(scenario) or {}
        a, b = m.get("app_cpu_ms"), m.get("db_cpu_ms")
        parts.append("-" if a is None else f"{a:.1f}+{b:.1f}")
    return None if all(p == "-" for p in parts) else " ; ".join(parts)


def _queries(d: dict[str, Any]) -> str | None:
    cases = (d.get("queue") or {}).get("cases", [])
    counts = sorted({n for c in cases for n in c.get("queries", [])})
    return ", ".join(str(n) for n in counts) if counts else None


def _rate_err(d: dict[str, Any], scenario: str) -> str | None:
    s = (d.get("http") or {}).get(scenario)
    if not isinstance(s, dict) or "rps" not in s:
        return None
    return f"{s['rps']:.0f}, {s['errors']}"


def _cell(getter: Getter, fmt: str, data: dict[str, Any]) -> tuple[str, Any]:
    try:
        value = getter(data)
    except (KeyError, TypeError):
        value = None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        skipped = _skip_reason(data)
        return ("n/a" if not skipped else "skipped"), None
    try:
        return fmt.format(value), value
    except (ValueError, TypeError):
        return str(value), value


def _skip_reason(data: dict[str, Any]) -> str | None:
    for part in ("engine", "queue", "http"):
        if isinstance(data.get(part), dict) and "skipped" in data[part]:
            return data[part]["skipped"]
    return None


def table(results: dict[str, Any]) -> str:
    """Markdown table: figures x scales, goal, met at the largest scale measured."""
    scales = sorted(int(s) for s in results.get("scales", {}))
    head = ["figure"] + [_scale_name(s) for s in scales] + ["goal", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, getter, fmt, goal, check in ROWS:
        cells, last = [], None
        for s in scales:
            text, value = _cell(getter, fmt, results["scales"][str(s)])
            cells.append(text)
            last = value if value is not None else last
        met = "" if check is None or last is None else ("yes" if check(last) else "**no**")
        lines.append("| " + " | ".join([name] + cells + [goal, met]) + " |")
    return "\n".join(lines)


def once_table(results: dict[str, Any]) -> str:
    """Figures that do not depend on the number of applications (measured once)."""
    once = results.get("once", {})
    lines = ["| figure | value | goal | met |", "|---|---|---|---|"]
    for name, getter, fmt, goal, check in ONCE:
        text, value = _cell(getter, fmt, once)
        if value is None and isinstance(once.get("pdf"), dict) and "skipped" in once["pdf"]:
            text = once["pdf"]["skipped"]
        met = "" if check is None or value is None else ("yes" if check(value) else "**no**")
        lines.append(f"| {name} | {text} | {goal} | {met} |")
    for name, item in (once.get("export") or {}).items():
        value, goal, ok = item if isinstance(item, list | tuple) else (item, "", None)
        met = "" if ok is None else ("yes" if ok else "**no**")
        lines.append(f"| export: {name} | {value} | {goal} | {met} |")
    return "\n".join(lines)


def _scale_name(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


def machine_line(info: dict[str, Any]) -> str:
    pg = info.get("postgres_settings", {})
    return (
        f"Measured {info.get('date')} on {info.get('cores')} cores ({info.get('cpu', '?')}), "
        f"{info.get('ram_gb', '?')} GB RAM, PostgreSQL {info.get('postgres', '?')} "
        f"(shared_buffers {pg.get('shared_buffers', '?')}, synchronous_commit "
        f"{pg.get('synchronous_commit', '?')}), Python {info.get('python')}, git {info.get('git', '?')}; "
        f"load average before/after: {info.get('load_before', '?')} / {info.get('load_after', '?')}."
        + _speed(info)
    )


def _speed(info: dict[str, Any]) -> str:
    """How fast this machine ran Python, and how much CPU the hypervisor took away."""
    out = ""
    if info.get("cpu_calibration_ms") is not None:
        out += (
            f" CPU calibration (a 2M-iteration Python loop, bench/common.py): "
            f"{info['cpu_calibration_ms']:.0f} ms before the runs"
        )
        if info.get("cpu_calibration_after_ms") is not None:
            out += f", {info['cpu_calibration_after_ms']:.0f} ms after"
    if info.get("steal") is not None:
        out += f"; CPU time stolen by the hypervisor during the runs: {info['steal']:.0%}"
    return out + "." if out else ""


def render(results: dict[str, Any]) -> str:
    info = results.get("machine", {})
    parts = [
        machine_line(info),
        "",
        f"Command: `{results.get('command', 'python -m bench')}`. Every figure is the median of "
        f"{results.get('runs', 5)} runs (after a warm-up run); p50/p95 are per run, then the median "
        "over runs. Goals are judged at the largest scale measured.",
        "",
        table(results),
        "",
        "Measured once (independent of the number of applications):",
        "",
        once_table(results),
    ]
    notes = results.get("notes") or []
    if notes:
        parts += ["", *[f"- {n}" for n in notes]]
    return "\n".join(parts)


def write_doc(results: dict[str, Any], path: Path = DOC) -> None:
    block = f"{BEGIN}\n{render(results)}\n{END}"
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            before = text.split(BEGIN, 1)[0]
            after = text.split(END, 1)[1]
            path.write_text(before + block + after, encoding="utf-8")
            return
        path.write_text(text.rstrip() + "\n\n## Results\n\n" + block + "\n", encoding="utf-8")
        return
    path.write_text("# Performance\n\n## Results\n\n" + block + "\n", encoding="utf-8")
