"""Row builders for the generator: one application and what hangs off it (attachments,
decision, budget ledger, expert reviews, audit history), as plain tuples ready for COPY.

Applications carry their large JSON (form, snapshot, eligibility, award trace) by
reference to a template variant (``tpl``): on PostgreSQL the generator joins a small
template table server-side, so each JSON document is parsed once, not once per row.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from math import gcd
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from . import records
from . import sample_data as sd
from .call_plan import CallInfo, load_calls

EXPERTS = 10


def _stages() -> dict[str, str]:
    """State -> stage family, from the shipped definitions (the same in all four)."""
    from pathlib import Path

    from workflow.definitions.loader import parse_program

    out: dict[str, str] = {}
    for path in sorted((Path(__file__).parent.parent / "definitions").glob("*.yaml")):
        for state in parse_program(path.read_text(encoding="utf-8"), path.name).states:
            out[state.name] = state.stage
    return out


STAGES = _stages()

# Scalar columns of an application; the generator adds the JSON columns from ``tpl``.
APP_COLS = [
    "id",
    "number",
    "organization_id",
    "call_id",
    "definition_id",
    "program_code",
    "district",
    "state",
    "stage",
    "award_fen",
    "score",
    "rank",
    "supplement_request",
    "deadline_on",
    "assigned_to_id",
    "created_by_id",
    "version",
    "created_at",
    "updated_at",
    "submitted_at",
    "state_entered_at",
]
# Extra staging columns: which template variant, and which of its JSON documents apply.
APP_EXTRA = ["tpl", "full_form", "submitted"]
ATT_COLS = [
    "id",
    "application_id",
    "kind",
    "filename",
    "content_type",
    "size",
    "sha256",
    "storage_key",
    "uploaded_by_id",
    "created_at",
]
DEC_COLS = [
    "id",
    "application_id",
    "kind",
    "doc_prefix",
    "doc_year",
    "doc_seq",
    "doc_number",
    "amount_fen",
    "template",
    "render_data",
    "verification_code",
    "status",
    "issued_at",
]
LEDGER_COLS = [
    "id",
    "call_id",
    "application_id",
    "kind",
    "amount_fen",
    "reason",
    "actor_id",
    "created_at",
]
REVIEW_COLS = [
    "id",
    "application_id",
    "reviewer_id",
    "stage",
    "kind",
    "status",
    "no_conflict_declared",
    "scores",
    "total",
    "created_at",
    "submitted_at",
]
AUDIT_COLS = [
    "id",
    "seq",
    "occurred_at",
    "actor_id",
    "actor_role",
    "entity_type",
    "entity_id",
    "application_id",
    "action",
    "from_state",
    "to_state",
    "reason",
    "data",
    "data_hash",
    "prev_hash",
    "hash",
]
ID_TABLES = ("applications", "attachments", "decisions", "budget_ledger", "reviews", "audit_events")


class Builder:
    """Builds applications chunk by chunk against what the database already holds."""

    def __init__(
        self,
        conn: Connection,
        templates: dict[str, sd.ProgramTemplate],
        programs: dict[str, Any],
        today: date,
        *,
        attachments: str = "all",
        audit_events: bool = False,
    ):
        self.templates = templates
        self.programs = programs
        self.today = today
        self.now = datetime.now(UTC)
        self.attachments = attachments
        self.calls = load_calls(conn)
        orgs = conn.execute(
            text("SELECT id, org_type, district, name, credit_code FROM organizations ORDER BY id")
        ).all()
        self.org = {o.id: (o.district, o.name, o.credit_code) for o in orgs}
        self.owner = dict(
            conn.execute(
                text("SELECT organization_id, id FROM users WHERE organization_id IS NOT NULL")
            ).all()
        )
        staff = dict(
            conn.execute(text("SELECT email, id FROM users WHERE organization_id IS NULL")).all()
        )
        self.experts = [staff[f"expert{i}@bench.cn"] for i in range(1, EXPERTS + 1)]
        self.officers = [v for k, v in staff.items() if k.startswith(("city", "district"))]
        existing = dict(
            conn.execute(text("SELECT call_id, count(*) FROM applications GROUP BY call_id")).all()
        )
        eligible_by_types: dict[frozenset[str], list[int]] = {}
        for c in self.calls:
            allowed = frozenset(programs[c.program].applicant_types)
            if allowed not in eligible_by_types:
                eligible_by_types[allowed] = [o.id for o in orgs if o.org_type in allowed]
            c.eligible = eligible_by_types[allowed]
            m = max(1, len(c.eligible))
            c.stride = next(p for p in (7919, 104729, 1299709, 15485863, 3) if gcd(p, m) == 1)
            c.offset = (c.id * 2654435761) % m
            c.count = int(existing.get(c.id, 0))
        self.by_program: dict[str, list[CallInfo]] = {}
        for c in self.calls:
            self.by_program.setdefault(c.program, []).append(c)
        self.ids = {
            t: (conn.scalar(text(f"SELECT max(id) FROM {t}")) or 0) + 1  # noqa: S608
            for t in ID_TABLES
        }
        self.counters: dict[tuple[str, int], int] = {
            (r.prefix, r.year): r.last_seq
            for r in conn.execute(text("SELECT prefix, year, last_seq FROM doc_number_counters"))
        }
        self.audit = records.AuditChain(conn) if audit_events else None
        self.weights = [(code, float(w)) for code, w in sd.PROGRAM_WEIGHTS.items()]
        self.sha_pool = [f"{random.Random(i).getrandbits(256):064x}" for i in range(64)]
        self._doc_cache: dict[Any, Any] = {}

    def _next(self, table: str) -> int:
        value = self.ids[table]
        self.ids[table] = value + 1
        return value

    def chunk(self, rng: random.Random, n: int) -> dict[str, list[tuple]]:
        rows: dict[str, list[tuple]] = {k: [] for k in ("app", "att", "dec", "led", "rev", "aud")}
        for _ in range(n):
            code = sd.weighted(rng, self.weights)
            call = self._pick_call(rng, code)
            self._application(rows, rng, call, call.next_org())
        return rows

    def _pick_call(self, rng: random.Random, code: str) -> CallInfo:
        call = rng.choice(self.by_program[code])
        if call.count < len(call.eligible):
            return call
        for c in self.by_program[code] + self.calls:  # this round is full: any with room
            if c.count < len(c.eligible):
                return c
        raise RuntimeError("every call is full: generate more organizations (--orgs)")

    def _state(self, rng: random.Random, call: CallInfo) -> str:
        state = sd.weighted(rng, list(sd.STATE_MIX[call.phase].items()))
        if call.program not in sd.EXPERT_PROGRAMS:
            state = sd.NO_EXPERT_STATE.get(state, state)
        return state

    def _moment(self, rng: random.Random, lo: date, hi: date) -> datetime:
        start = datetime.combine(lo, dtime(1, 0), tzinfo=UTC)
        end = min(datetime.combine(hi, dtime(10, 0), tzinfo=UTC), self.now - timedelta(hours=1))
        span = max(1, int((end - start).total_seconds()))
        return start + timedelta(seconds=rng.randrange(span), microseconds=rng.randrange(10**6))

    def _application(
        self, rows: dict[str, list[tuple]], rng: random.Random, call: CallInfo, org: int
    ) -> None:
        tpl = self.templates[call.program]
        program = self.programs[call.program]
        app_id = self._next("applications")
        owner = self.owner[org]
        district = self.org[org][0]
        state = self._state(rng, call)
        variant = rng.choice(tpl.variants)
        created = self._moment(rng, call.opens, call.closes)
        submitted = state != "draft"
        submitted_at = number = None
        entered = created
        if submitted:
            submitted_at = min(
                created + timedelta(hours=rng.randrange(1, 96)), self.now - timedelta(minutes=30)
            )
            key = (f"#{tpl.number_prefix}", call.year)
            self.counters[key] = self.counters.get(key, 0) + 1
            number = f"{tpl.number_prefix}{call.year}-{self.counters[key]:06d}"
            entered = min(
                submitted_at + timedelta(days=rng.randrange(0, 40), seconds=rng.randrange(86400)),
                self.now - timedelta(minutes=5),
            )
        deadline = supplement = None
        if state.endswith("_supplement"):
            deadline = self.today + timedelta(days=rng.randrange(-4, 8))
            supplement = json.dumps(
                {
                    "fields": ["contact_phone"],
                    "materials": [tpl.materials[0]],
                    "note": "请补充材料。",
                    "requested_at": entered.isoformat(),
                },
                ensure_ascii=False,
            )
        elif state == "public_notice":
            deadline = self.today + timedelta(days=rng.randrange(1, 7))
        score = rank = None
        if call.program in sd.EXPERT_PROGRAMS and state in (
            "ranking",
            "approval",
            "public_notice",
            "approved",
            "paid",
        ):
            score = round(rng.uniform(60, 95), 3)
            rank = rng.randrange(1, 30)
        in_review = state in ("district_review", "city_review", "expert_review", "approval")
        draft_ready = state == "draft" and call.phase == "open"  # complete, can be submitted
        award = tpl.award_fen if submitted else None
        rows["app"].append(
            (
                app_id,
                number,
                org,
                call.id,
                call.definition_id,
                call.program,
                district,
                state,
                STAGES[state],
                award,
                score,
                rank,
                supplement,
                deadline,
                rng.choice(self.officers) if in_review and rng.random() < 0.3 else None,
                owner,
                (1 + rng.randrange(4)) if not submitted else (3 + rng.randrange(6)),
                created,
                entered,
                submitted_at,
                entered,
                variant.key,
                submitted or draft_ready,
                submitted,
            )
        )
        with_files = self.attachments == "all" or (
            self.attachments == "active" and call.phase != "historical"
        )
        if with_files and (submitted or draft_ready):
            for kind in tpl.materials:
                rows["att"].append(
                    (
                        self._next("attachments"),
                        app_id,
                        kind,
                        f"{kind}.pdf",
                        "application/pdf",
                        20_000 + rng.randrange(2_000_000),
                        rng.choice(self.sha_pool),
                        f"bench/{app_id:09d}/{kind}",  # monotonic: cheap unique index
                        owner,
                        created,
                    )
                )
        if state in sd.RESERVED_STATES and award:
            moves = [("reserve", award)] + ([("release", -award)] if state == "clawed_back" else [])
            for kind, amount in moves:
                rows["led"].append(
                    (
                        self._next("budget_ledger"),
                        call.id,
                        app_id,
                        kind,
                        amount,
                        None,
                        None,
                        entered,
                    )
                )
        doc_kind = records.document_kind(program, state) if number else None
        if doc_kind:
            rows["dec"].append(
                records.decision_row(
                    self, rng, app_id, call, program, org, doc_kind, number, award, entered
                )
            )
        if call.program in sd.EXPERT_PROGRAMS and state in ("expert_review", "ranking"):
            for reviewer in rng.sample(self.experts, 5):
                done = state == "ranking" or rng.random() < 0.5
                rows["rev"].append(
                    (
                        self._next("reviews"),
                        app_id,
                        reviewer,
                        "expert_review",
                        "expert",
                        "submitted" if done else "assigned",
                        True if done else None,
                        '{"basic_conditions":"85","team":"80"}' if done else None,
                        round(rng.uniform(60, 95), 3) if done else None,
                        entered,
                        entered if done else None,
                    )
                )
        if self.audit is not None:
            add = self.audit.add
            add(
                rows["aud"],
                self,
                app_id,
                "application.start",
                None,
                "draft",
                owner,
                "applicant",
                created,
            )
            if submitted:
                first = (
                    "district_review"
                    if call.params.get("district_prereview", True)
                    else "city_review"
                )
                add(
                    rows["aud"],
                    self,
                    app_id,
                    "transition.submit",
                    "draft",
                    first,
                    owner,
                    "applicant",
                    submitted_at,
                )
                if state != first:
                    add(
                        rows["aud"],
                        self,
                        app_id,
                        "transition.history",
                        first,
                        state,
                        None,
                        "system",
                        entered,
                    )
