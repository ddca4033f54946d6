"""Which call a generated application goes to: the 40 calls with their phase (closed,
under review, open) and, per call, a duplicate-free sequence of eligible organizations."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection


@dataclass
class CallInfo:
    id: int
    program: str
    definition_id: int
    year: int
    phase: str  # historical, review, open
    opens: date
    closes: date
    params: dict[str, Any]
    title: str
    eligible: list[int] = field(default_factory=list)
    count: int = 0
    stride: int = 1
    offset: int = 0

    def next_org(self) -> int | None:
        """The next organization for this call: an affine permutation of the eligible
        organizations, so any prefix of the sequence is duplicate-free and growth keeps
        the one-application-per-organization-per-call constraint."""
        m = len(self.eligible)
        if self.count >= m:
            return None
        org = self.eligible[(self.stride * self.count + self.offset) % m]
        self.count += 1
        return org


def load_calls(conn: Connection) -> list[CallInfo]:
    """Calls per program in date order: the last is open, the one before under review."""
    rows = conn.execute(
        text(
            "SELECT id, program_code, definition_id, year, opens_on, closes_on, params, title "
            "FROM calls ORDER BY program_code, opens_on, id"
        )
    ).all()
    by_program: dict[str, list[Any]] = {}
    for r in rows:
        by_program.setdefault(r.program_code, []).append(r)
    calls: list[CallInfo] = []
    for code, items in by_program.items():
        for i, r in enumerate(items):
            phase = (
                "open" if i == len(items) - 1 else "review" if i == len(items) - 2 else "historical"
            )
            calls.append(
                CallInfo(
                    r.id,
                    code,
                    r.definition_id,
                    r.year,
                    phase,
                    _as_date(r.opens_on),
                    _as_date(r.closes_on),
                    r.params if isinstance(r.params, dict) else json.loads(r.params),
                    r.title,
                )
            )
    return calls


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)
