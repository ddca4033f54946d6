"""Figures from the reliability tests (attempts, conflicts, faults injected, inputs tried,
failures), collected during the run and written to test-artifacts/reliability-<backend>.json;
``python -m tests.reliability`` turns the collected files into docs/RELIABILITY.md."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
DOC = ROOT / "docs" / "RELIABILITY.md"
BEGIN, END = "<!-- figures:begin -->", "<!-- figures:end -->"

_figures: dict[str, dict[str, object]] = {}


def backend() -> str:
    return (
        "postgresql" if os.environ.get("TEST_DATABASE_URL", "").startswith("postgres") else "sqlite"
    )


def record(test: str, **values: object) -> None:
    """Record the figures of one property test (last write wins)."""
    _figures.setdefault(test, {}).update(values)


def flush() -> Path | None:
    if not _figures:
        return None
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"reliability-{backend()}.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    previous.update(_figures)
    path.write_text(json.dumps(previous, ensure_ascii=False, indent=2, sort_keys=True))
    return path


def render() -> str:
    lines = [
        BEGIN,
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m tests.reliability` "
        "from the figures the test run recorded.",
        "",
    ]
    for path in sorted(ARTIFACTS.glob("reliability-*.json")):
        data = json.loads(path.read_text())
        lines += [
            f"### {path.stem.removeprefix('reliability-')}",
            "",
            "| property test | figures |",
            "|---|---|",
        ]
        for test, values in sorted(data.items()):
            figures = ", ".join(f"{k}: {v}" for k, v in values.items())
            lines.append(f"| `{test}` | {figures} |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def main() -> int:
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else f"# Reliability\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1] if END in rest else ""
    DOC.write_text(head + render() + tail, encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
