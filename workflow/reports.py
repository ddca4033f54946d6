"""Finance reports: the reconciliation (对账) and the regional dashboards (区域看板).

Everything is a SQL aggregate; each function returns a ``Table`` (column keys, bilingual
column labels, plain rows of ints/strings/Decimals) that a page renders as a table or a
chart and that downloads as CSV unchanged.

Reconciliation, per program, call or district, per application first and then summed:

* approved: amounts of issued approval/recognition decisions;
* reserved: the budget ledger (reserve + release) — what the call's ``committed_fen`` says;
* in notice: reserved for applications with no decision yet (approved at the meeting,
  still in public notice or objection review);
* paid: lines marked paid; clawed back: recovered amounts;
* difference = reserved − (approved − clawed back + in notice). It is zero when the
  books agree; anything else is highlighted. Per call, ``committed_fen`` is also compared
  with the ledger.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from .engine import compiled
from .models import (
    Application,
    AuditEvent,
    BudgetLedgerEntry,
    Call,
    Clawback,
    Decision,
    DisbursementLine,
    ProgramDefinition,
)

PAYABLE_KINDS = ("approval", "recognition")
GROUPINGS = ("program", "call", "district")

# Stage names used in the definitions, in workflow order, with their labels.
STAGES: dict[str, tuple[str, str]] = {
    "draft": ("填报中", "Draft"),
    "district": ("区县初审", "District review"),
    "supplement": ("补正", "Supplement"),
    "eligibility": ("资格审查", "Eligibility review"),
    "expert": ("专家评审", "Expert review"),
    "ranking": ("排序", "Ranking"),
    "approval": ("审定", "Approval"),
    "notice": ("公示", "Public notice"),
    "objection": ("异议核查", "Objection review"),
    "decided": ("待拨付", "Awaiting payment"),
    "payment": ("已拨付", "Paid"),
    "closed": ("已办结", "Closed"),
}


@dataclass
class Table:
    """Rows for a page, a chart and a CSV file. ``labels`` maps column key to (zh, en)."""

    columns: list[str]
    labels: dict[str, tuple[str, str]]
    rows: list[dict[str, Any]] = field(default_factory=list)
    money: set[str] = field(default_factory=set)  # columns holding fen

    def header(self, lang: str) -> list[str]:
        return [self.labels[c][1 if lang == "en" else 0] for c in self.columns]

    def csv_bytes(self, lang: str = "zh") -> bytes:
        """UTF-8 with BOM (Excel opens it correctly); money in yuan with two decimals."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(self.header(lang))
        for row in self.rows:
            writer.writerow([_plain(row.get(c), c in self.money) for c in self.columns])
        return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


def _plain(value: Any, money: bool) -> str:
    if value is None:
        return ""
    if money:
        return f"{Decimal(int(value)) / 100:.2f}"
    if isinstance(value, Decimal):
        return f"{value:.1f}"
    return str(value)


def _program_names(session: Session) -> dict[str, tuple[str, str]]:
    """Program code → (zh, en) name from the newest stored definition of each program."""
    names: dict[str, tuple[str, str]] = {}
    rows = session.execute(
        select(ProgramDefinition.code, func.max(ProgramDefinition.id)).group_by(
            ProgramDefinition.code
        )
    ).all()
    for code, def_id in rows:
        program = compiled(session, def_id).program
        names[code] = (program.name.zh, program.name.en or program.name.zh)
    return names


# ---------------------------------------------------------------- reconciliation


def _per_application() -> Any:
    """One row per application with money on it: reserved, approved, paid, clawed back."""
    ledger = (
        select(
            BudgetLedgerEntry.application_id.label("aid"),
            func.sum(BudgetLedgerEntry.amount_fen).label("reserved"),
        )
        .where(BudgetLedgerEntry.application_id.is_not(None))
        .group_by(BudgetLedgerEntry.application_id)
        .subquery()
    )
    decided = (
        select(
            Decision.application_id.label("aid"),
            func.sum(Decision.amount_fen).label("approved"),
        )
        .where(Decision.kind.in_(PAYABLE_KINDS), Decision.status == "issued")
        .group_by(Decision.application_id)
        .subquery()
    )
    paid = (
        select(
            Decision.application_id.label("aid"),
            func.sum(DisbursementLine.amount_fen).label("paid"),
        )
        .join(Decision, DisbursementLine.decision_id == Decision.id)
        .where(DisbursementLine.status == "paid")
        .group_by(Decision.application_id)
        .subquery()
    )
    clawed = (
        select(
            Decision.application_id.label("aid"),
            func.sum(Clawback.amount_fen).label("clawed"),
        )
        .join(Decision, Clawback.decision_id == Decision.id)
        .group_by(Decision.application_id)
        .subquery()
    )
    return (
        select(
            Application.id.label("aid"),
            Application.program_code.label("program"),
            Application.call_id.label("call_id"),
            Application.district.label("district"),
            func.coalesce(ledger.c.reserved, 0).label("reserved"),
            func.coalesce(decided.c.approved, 0).label("approved"),
            case((decided.c.aid.is_(None), func.coalesce(ledger.c.reserved, 0)), else_=0).label(
                "in_notice"
            ),
            func.coalesce(paid.c.paid, 0).label("paid"),
            func.coalesce(clawed.c.clawed, 0).label("clawed"),
        )
        .outerjoin(ledger, ledger.c.aid == Application.id)
        .outerjoin(decided, decided.c.aid == Application.id)
        .outerjoin(paid, paid.c.aid == Application.id)
        .outerjoin(clawed, clawed.c.aid == Application.id)
        .where(
            (ledger.c.aid.is_not(None)) | (decided.c.aid.is_not(None)) | (paid.c.aid.is_not(None))
        )
        .subquery()
    )


RECON_LABELS: dict[str, tuple[str, str]] = {
    "key": ("", ""),
    "approved_fen": ("决定金额", "Approved"),
    "reserved_fen": ("预算占用", "Reserved"),
    "in_notice_fen": ("公示中占用", "Reserved in notice"),
    "paid_fen": ("已拨付", "Paid"),
    "clawed_back_fen": ("已追回", "Clawed back"),
    "unpaid_fen": ("待拨付", "Awaiting payment"),
    "difference_fen": ("差异", "Difference"),
    "committed_fen": ("批次占用数", "Committed (call)"),
    "budget_fen": ("预算", "Budget"),
}
GROUP_LABELS = {
    "program": ("项目", "Program"),
    "call": ("申报批次", "Call"),
    "district": ("区县", "District"),
}


def reconciliation(session: Session, group_by: str = "program", lang: str = "zh") -> Table:
    """Approved vs reserved vs paid per program, call or district (see the module doc).
    Each row carries ``flags``: bilingual notes on what does not agree."""
    if group_by not in GROUPINGS:
        raise ValueError(f"unknown grouping {group_by!r}")
    per_app = _per_application()
    dim = getattr(per_app.c, "call_id" if group_by == "call" else group_by)
    sums = [
        func.sum(per_app.c.approved).label("approved"),
        func.sum(per_app.c.reserved).label("reserved"),
        func.sum(per_app.c.in_notice).label("in_notice"),
        func.sum(per_app.c.paid).label("paid"),
        func.sum(per_app.c.clawed).label("clawed"),
        func.count().label("applications"),
    ]
    rows = session.execute(select(dim.label("key"), *sums).group_by(dim).order_by(dim)).all()
    calls: dict[int, Call] = {}
    ledger_by_call: dict[int, int] = {}
    if group_by == "call":
        calls = {c.id: c for c in session.scalars(select(Call))}
        ledger_by_call = {
            cid: int(total)
            for cid, total in session.execute(
                select(BudgetLedgerEntry.call_id, func.sum(BudgetLedgerEntry.amount_fen)).group_by(
                    BudgetLedgerEntry.call_id
                )
            ).all()
        }
    programs = _program_names(session)
    columns = ["key", "approved_fen", "reserved_fen", "in_notice_fen", "paid_fen"]
    columns += ["clawed_back_fen", "unpaid_fen", "difference_fen"]
    if group_by == "call":
        columns += ["budget_fen", "committed_fen"]
    labels = dict(RECON_LABELS, key=GROUP_LABELS[group_by])
    table = Table(columns, labels, money={c for c in columns if c.endswith("_fen")})
    for r in rows:
        approved, reserved, in_notice = int(r.approved), int(r.reserved), int(r.in_notice)
        paid, clawed = int(r.paid), int(r.clawed)
        row: dict[str, Any] = {
            "key": _group_label(group_by, r.key, programs, calls, lang),
            "key_value": r.key,
            "approved_fen": approved,
            "reserved_fen": reserved,
            "in_notice_fen": in_notice,
            "paid_fen": paid,
            "clawed_back_fen": clawed,
            "unpaid_fen": max(approved - clawed - paid, 0),
            "difference_fen": reserved - (approved - clawed + in_notice),
            "applications": int(r.applications),
            "flags": [],
        }
        if row["difference_fen"]:
            row["flags"].append(
                ("预算占用与决定金额不一致", "Reserved money does not match the decisions")
            )
        if paid > approved:
            row["flags"].append(("拨付金额超过决定金额", "Paid more than approved"))
        if group_by == "call" and r.key in calls:
            call = calls[r.key]
            row["budget_fen"], row["committed_fen"] = call.budget_fen, call.committed_fen
            if call.committed_fen != ledger_by_call.get(r.key, 0):
                row["flags"].append(
                    (
                        "批次占用数与预算台账不一致",
                        "The call's committed total differs from its ledger",
                    )
                )
        table.rows.append(row)
    return table


def _group_label(
    group_by: str,
    value: Any,
    programs: dict[str, tuple[str, str]],
    calls: dict[int, Call],
    lang: str,
) -> str:
    index = 1 if lang == "en" else 0
    if group_by == "program":
        return programs.get(value, (value, value))[index]
    if group_by == "call":
        call = calls.get(value)
        return call.title if call else str(value)
    return str(value)  # district names are stored in Chinese; the web layer relabels


# ---------------------------------------------------------------- dashboards


@dataclass
class DashboardFilters:
    program: str | None = None
    district: str | None = None
    year: int | None = None


def _app_filters(f: DashboardFilters) -> list[Any]:
    out = []
    if f.program:
        out.append(Application.program_code == f.program)
    if f.district:
        out.append(Application.district == f.district)
    return out


def _local_month(session: Session, column: Any) -> Any:
    """'YYYY-MM' of a UTC timestamp in China time, in the database's own dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("Asia/Shanghai", column), "YYYY-MM")
    return func.strftime("%Y-%m", column, "+8 hours")


def _date_month(session: Session, column: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(column, "YYYY-MM")
    return func.strftime("%Y-%m", column)


def applications_by_stage(session: Session, f: DashboardFilters, lang: str = "zh") -> Table:
    """Number of applications per workflow stage (states mapped to their stage)."""
    rows = session.execute(
        select(Application.definition_id, Application.state, func.count())
        .where(*_app_filters(f), *_year_filter(f))
        .group_by(Application.definition_id, Application.state)
    ).all()
    counts: dict[str, int] = {}
    for def_id, state, n in rows:
        stage = _stage_of(session, def_id, state)
        counts[stage] = counts.get(stage, 0) + int(n)
    table = Table(
        ["label", "count"], {"label": ("阶段", "Stage"), "count": ("申报数", "Applications")}
    )
    for stage in _ordered_stages(counts):
        table.rows.append(
            {"key": stage, "label": _stage_label(stage, lang), "count": counts[stage]}
        )
    return table


def _year_filter(f: DashboardFilters) -> list[Any]:
    if not f.year:
        return []
    return [Application.call_id.in_(select(Call.id).where(Call.year == f.year))]


def _stage_of(session: Session, definition_id: int, state: str) -> str:
    try:
        return compiled(session, definition_id).program.state(state).stage or state
    except (KeyError, LookupError, ValueError):
        return state


def _ordered_stages(keys: Iterable[str]) -> list[str]:
    order = list(STAGES)
    return sorted(keys, key=lambda s: (order.index(s) if s in order else len(order), s))


def _stage_label(stage: str, lang: str) -> str:
    zh, en = STAGES.get(stage, (stage, stage))
    return en if lang == "en" else zh


def _approved_paid(session: Session, f: DashboardFilters, dim_app: Any, dim_paid: Any = None):
    """(dimension value, approved fen) and (dimension value, paid fen) aggregates."""
    filters = _app_filters(f) + _year_filter(f)
    approved = session.execute(
        select(dim_app, func.sum(Decision.amount_fen))
        .join(Application, Decision.application_id == Application.id)
        .where(Decision.kind.in_(PAYABLE_KINDS), Decision.status == "issued", *filters)
        .group_by(dim_app)
    ).all()
    paid = session.execute(
        select(dim_paid if dim_paid is not None else dim_app, func.sum(DisbursementLine.amount_fen))
        .select_from(DisbursementLine)
        .join(Decision, DisbursementLine.decision_id == Decision.id)
        .join(Application, Decision.application_id == Application.id)
        .where(DisbursementLine.status == "paid", *filters)
        .group_by(dim_paid if dim_paid is not None else dim_app)
    ).all()
    return {k: int(v or 0) for k, v in approved}, {k: int(v or 0) for k, v in paid}


AMOUNT_LABELS = {
    "approved_fen": ("决定金额（元）", "Approved (yuan)"),
    "paid_fen": ("已拨付（元）", "Paid (yuan)"),
}


def amounts_by_program(session: Session, f: DashboardFilters, lang: str = "zh") -> Table:
    approved, paid = _approved_paid(session, f, Application.program_code)
    names = _program_names(session)
    table = Table(
        ["label", "approved_fen", "paid_fen"],
        {"label": GROUP_LABELS["program"], **AMOUNT_LABELS},
        money={"approved_fen", "paid_fen"},
    )
    for code in sorted(set(approved) | set(paid)):
        label = names.get(code, (code, code))[1 if lang == "en" else 0]
        table.rows.append(
            {
                "key": code,
                "label": label,
                "approved_fen": approved.get(code, 0),
                "paid_fen": paid.get(code, 0),
            }
        )
    return table


def amounts_by_district(session: Session, f: DashboardFilters, lang: str = "zh") -> Table:
    approved, paid = _approved_paid(session, f, Application.district)
    table = Table(
        ["label", "approved_fen", "paid_fen"],
        {"label": GROUP_LABELS["district"], **AMOUNT_LABELS},
        money={"approved_fen", "paid_fen"},
    )
    for district in sorted(set(approved) | set(paid)):
        table.rows.append(
            {
                "key": district,
                "label": district,
                "approved_fen": approved.get(district, 0),
                "paid_fen": paid.get(district, 0),
            }
        )
    return table


def amounts_by_month(session: Session, f: DashboardFilters, lang: str = "zh") -> Table:
    """Approved by the month the decision was issued; paid by the month it was paid."""
    approved, paid = _approved_paid(
        session,
        f,
        _local_month(session, Decision.issued_at),
        _date_month(session, DisbursementLine.paid_on),
    )
    table = Table(
        ["label", "approved_fen", "paid_fen"],
        {"label": ("月份", "Month"), **AMOUNT_LABELS},
        money={"approved_fen", "paid_fen"},
    )
    for month in sorted(k for k in set(approved) | set(paid) if k):
        table.rows.append(
            {
                "key": month,
                "label": month,
                "approved_fen": approved.get(month, 0),
                "paid_fen": paid.get(month, 0),
            }
        )
    return table


def _seconds_between(session: Session, later: Any, earlier: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def processing_time(session: Session, f: DashboardFilters, lang: str = "zh") -> Table:
    """Average and longest days spent in each stage, from the audit trail: the time from
    the event that entered a state to the next event that left it, per application."""
    entered = func.lag(AuditEvent.occurred_at).over(
        partition_by=AuditEvent.application_id, order_by=(AuditEvent.occurred_at, AuditEvent.id)
    )
    steps = (
        select(
            AuditEvent.application_id.label("aid"),
            AuditEvent.from_state.label("state"),
            AuditEvent.occurred_at.label("left_at"),
            entered.label("entered_at"),
        )
        .where(AuditEvent.entity_type == "application", AuditEvent.to_state.is_not(None))
        .subquery()
    )
    seconds = _seconds_between(session, steps.c.left_at, steps.c.entered_at)
    rows = session.execute(
        select(
            Application.definition_id,
            steps.c.state,
            func.count(),
            func.sum(seconds),
            func.max(seconds),
        )
        .join(Application, Application.id == steps.c.aid)
        .where(
            steps.c.entered_at.is_not(None),
            steps.c.state.is_not(None),
            *_app_filters(f),
            *_year_filter(f),
        )
        .group_by(Application.definition_id, steps.c.state)
    ).all()
    per_stage: dict[str, list[float]] = {}
    for def_id, state, n, total, longest in rows:
        stage = _stage_of(session, def_id, state)
        acc = per_stage.setdefault(stage, [0, 0.0, 0.0])
        acc[0] += int(n)
        acc[1] += float(total or 0)
        acc[2] = max(acc[2], float(longest or 0))
    table = Table(
        ["label", "count", "avg_days", "max_days"],
        {
            "label": ("阶段", "Stage"),
            "count": ("办理次数", "Passages"),
            "avg_days": ("平均天数", "Average days"),
            "max_days": ("最长天数", "Longest days"),
        },
    )
    for stage in _ordered_stages(per_stage):
        n, total, longest = per_stage[stage]
        table.rows.append(
            {
                "key": stage,
                "label": _stage_label(stage, lang),
                "count": n,
                "avg_days": _days(total / n if n else 0.0),
                "max_days": _days(longest),
            }
        )
    return table


def _days(seconds: float) -> Decimal:
    return (Decimal(str(seconds)) / Decimal(86400)).quantize(Decimal("0.1"))


DASHBOARDS = {
    "stages": applications_by_stage,
    "programs": amounts_by_program,
    "districts": amounts_by_district,
    "months": amounts_by_month,
    "processing": processing_time,
}

__all__ = [
    "DASHBOARDS",
    "GROUPINGS",
    "DashboardFilters",
    "Table",
    "amounts_by_district",
    "amounts_by_month",
    "amounts_by_program",
    "applications_by_stage",
    "processing_time",
    "reconciliation",
]
