"""Benchmark: Chinese vs Latin rendering of the same decision letter.

Renders ``decision_approval.html`` N times (default 7, after one warm-up each;
the two cases alternate run by run so that both see the same machine load)

* with the Chinese data and the CJK font stack (Shenbao Serif SC = Noto Serif
  CJK SC subset, plus the rare-character Ext font), and
* with English data of the same layout (``lang="en"``) and the Latin-only font
  stack (Shenbao Serif Latin = Liberation Serif subset),

both through the same renderer, templates, stylesheets and URL fetcher, in one
process.  Prints median and p90 seconds, PDF size and the Chinese/Latin ratio.

    .venv/bin/python -m bench.bench_pdf [--runs 7] [--json out.json] [--check]

``--check`` exits non-zero when the median ratio exceeds 1.5 or the Chinese
PDF is 40 KB or more.  Timing only lives here, never in the tests.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workflow.documents import render_pdf
from workflow.documents.render import warm_up
from workflow.documents.samples import SAMPLE_LETTER

TEMPLATE = "decision_approval.html"
MAX_RATIO = 1.5
MAX_KB = 40.0

#: A one-page 资助决定书 (grant decision letter): the one workers render at start.
SAMPLE_ZH: dict[str, Any] = SAMPLE_LETTER

#: The same letter in English: same template, same layout, Latin text only.
SAMPLE_EN: dict[str, Any] = {
    **SAMPLE_ZH,
    "authority": "Changchun Administration for Market Regulation",
    "doc_number": "CCAMR IP [2026] No. 12",
    "title": "Decision on IP Funding for Jilin Changguang Precision Optics Co., Ltd.",
    "addressee": "Jilin Changguang Precision Optics Co., Ltd.",
    "program_name": "High-value patent cultivation",
    "call_title": "2026, first batch",
    "body_paragraphs": [
        "Your application passed the formal and expert reviews and the public notice; "
        "your company is granted IP funding.",
        "Please complete the payment formalities within thirty days.",
    ],
    "amount_figures": "CNY 100,000.00",
    "amount_capitals": "one hundred thousand yuan",
    "date_text": "8 March 2026",
    "lang": "en",
}

CASES: dict[str, tuple[dict[str, Any], str]] = {
    "chinese": (SAMPLE_ZH, "cjk"),
    "latin": (SAMPLE_EN, "latin"),
}


def p90(values: list[float]) -> float:
    """90th percentile, nearest-rank method."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def summarize(timings: list[float], size: int) -> dict[str, Any]:
    return {
        "runs": len(timings),
        "median_s": statistics.median(timings),
        "p90_s": p90(timings),
        "min_s": min(timings),
        "size_kb": size / 1024,
        "timings_s": timings,
    }


def run(runs: int) -> dict[str, Any]:
    """Warm up, then alternate the cases run by run so both see the same machine load."""
    started = time.perf_counter()
    warm_up()
    warm_up_s = time.perf_counter() - started
    renderers: dict[str, Callable[[], bytes]] = {
        name: (lambda d=data, p=profile: render_pdf(TEMPLATE, d, font_profile=p))
        for name, (data, profile) in CASES.items()
    }
    timings: dict[str, list[float]] = {name: [] for name in renderers}
    sizes = {name: len(render()) for name, render in renderers.items()}  # one warm-up each
    for _ in range(runs):
        for name, render in renderers.items():
            started = time.perf_counter()
            sizes[name] = len(render())
            timings[name].append(time.perf_counter() - started)
    results = {name: summarize(timings[name], sizes[name]) for name in renderers}
    return {
        "template": TEMPLATE,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "first_thread_warm_up_s": warm_up_s,
        "cases": results,
        "ratio_median": results["chinese"]["median_s"] / results["latin"]["median_s"],
        "ratio_p90": results["chinese"]["p90_s"] / results["latin"]["p90_s"],
    }


def print_table(report: dict[str, Any]) -> None:
    runs = report["cases"]["chinese"]["runs"]
    print(f"{TEMPLATE}: {runs} runs per case, interleaved, after one warm-up each")
    print(f"fonts + stylesheets loaded once per thread in {report['first_thread_warm_up_s']:.3f} s")
    print(f"{'case':10} {'median s':>9} {'p90 s':>9} {'min s':>9} {'PDF KB':>8}")
    for name, case in report["cases"].items():
        print(
            f"{name:10} {case['median_s']:9.3f} {case['p90_s']:9.3f} "
            f"{case['min_s']:9.3f} {case['size_kb']:8.1f}"
        )
    print(
        f"ratio chinese/latin: median {report['ratio_median']:.2f}, p90 {report['ratio_p90']:.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Chinese vs Latin PDF rendering benchmark")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per case (default 7)")
    parser.add_argument("--json", type=Path, help="write the figures to this JSON file")
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 if the ratio exceeds {MAX_RATIO} or the Chinese PDF is >= {MAX_KB:.0f} KB",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    report = run(args.runs)
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    if args.check:
        failures = []
        if report["ratio_median"] > MAX_RATIO:
            failures.append(f"ratio {report['ratio_median']:.2f} > {MAX_RATIO}")
        if report["cases"]["chinese"]["size_kb"] >= MAX_KB:
            failures.append(f"Chinese PDF {report['cases']['chinese']['size_kb']:.1f} KB")
        if failures:
            print("CHECK FAILED: " + "; ".join(failures), file=sys.stderr)
            return 1
        print("check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
