"""Disbursement (资金拨付): batches of approved decisions, the lock hash, payment results,
the bank result import, rebatching failed lines and clawbacks (追回).

A batch (拨付批次, numbered ZF2026-0001) is built from approved, unpaid decisions and
reviewed while it is a draft; locking it stores a sha256 over its ordered lines (decision
number, amount, frozen payee bank details), so any later change of a line is found by
``verify_batch``. Results are recorded per line; a paid line fires the application's
``pay`` transition as the finance user. Every operation here checks the finance
predicate itself, writes an audit event, flushes and never commits.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    delete,
    exists,
    false,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from ..audit import canonical, record_event
from ..effects import reserve
from ..engine import fire
from ..errors import PermissionDenied, ValidationFailed, WorkflowError
from ..models import (
    Application,
    BatchNumberCounter,
    Call,
    Clawback,
    Decision,
    DisbursementBatch,
    DisbursementLine,
    Organization,
    User,
    utcnow,
)
from ..permissions import can_manage_finance, roles_for

PAYABLE_KINDS = ("approval", "recognition")
# A decision on a line in one of these states is taken; failed and returned lines free it.
TAKEN_STATUSES = ("pending", "paid")
RETRY_STATUSES = ("failed", "returned")
LINE_RESULTS = ("paid", "failed", "returned")
CHINA = timezone(timedelta(hours=8))  # no daylight saving time in China
CHUNK = 1000


class BatchStateError(WorkflowError):
    """The batch is not in a state that allows this (locked, settled, still a draft)."""

    status = 409


def _must_manage(user: Any) -> None:
    if not can_manage_finance(user):
        raise PermissionDenied(
            "只有财务人员可以办理资金拨付。", "Only finance staff can handle disbursements."
        )


# ---------------------------------------------------------------- candidates


@dataclass
class BatchFilters:
    """What a batch is built from; every field is optional (``None`` = any)."""

    program: str | None = None
    call_id: int | None = None
    district: str | None = None
    issued_from: date | None = None
    issued_to: date | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in asdict(self).items()}


def finance_scope(user: Any) -> ColumnElement[bool]:
    """The applications the user's finance grants cover (program and/or district limits)."""
    clauses = []
    for g in getattr(user, "grants", []):
        if g.role != "finance":
            continue
        clause: ColumnElement[bool] = true()
        if g.program_code:
            clause = and_(clause, Application.program_code == g.program_code)
        if g.district:
            clause = and_(clause, Application.district == g.district)
        clauses.append(clause)
    return or_(*clauses) if clauses else false()


def _taken(decision_id_column: Any) -> ColumnElement[bool]:
    line = aliased(DisbursementLine)  # never correlated with a line in the outer query
    return exists().where(line.decision_id == decision_id_column, line.status.in_(TAKEN_STATUSES))


def _has_bank_details() -> ColumnElement[bool]:
    return and_(
        Organization.bank_name != "",
        Organization.bank_account_name != "",
        Organization.bank_account_no != "",
    )


def _china_midnight_utc(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=CHINA).astimezone(UTC)


def payable_criteria(user: Any, filters: BatchFilters) -> list[ColumnElement[bool]]:
    """Approved, unpaid decisions in the user's scope matching ``filters`` and not already
    on a pending or paid line (for a select joining Decision, Application, Organization)."""
    criteria = [
        Decision.kind.in_(PAYABLE_KINDS),
        Decision.status == "issued",
        Decision.amount_fen > 0,
        Application.state == "approved",
        ~_taken(Decision.id),
        finance_scope(user),
    ]
    if filters.program:
        criteria.append(Application.program_code == filters.program)
    if filters.call_id:
        criteria.append(Application.call_id == filters.call_id)
    if filters.district:
        criteria.append(Application.district == filters.district)
    if filters.issued_from:
        criteria.append(Decision.issued_at >= _china_midnight_utc(filters.issued_from))
    if filters.issued_to:
        end = _china_midnight_utc(filters.issued_to + timedelta(days=1))
        criteria.append(Decision.issued_at < end)
    return criteria


def _joined(*columns: Any) -> Select:
    return (
        select(*columns)
        .select_from(Decision)
        .join(Application, Decision.application_id == Application.id)
        .join(Organization, Application.organization_id == Organization.id)
    )


@dataclass
class Preview:
    count: int
    total_fen: int
    missing_bank: int
    sample: list[tuple[Decision, Application, Organization]]


def preview_batch(session: Session, user: Any, filters: BatchFilters, limit: int = 50) -> Preview:
    """What ``build_batch`` would take, counted in SQL, with the first ``limit`` rows
    (including those left out for missing bank details, which the page flags)."""
    criteria = payable_criteria(user, filters)
    count, total = session.execute(
        _joined(func.count(), func.coalesce(func.sum(Decision.amount_fen), 0)).where(
            *criteria, _has_bank_details()
        )
    ).one()
    all_count = session.scalar(_joined(func.count()).where(*criteria)) or 0
    sample = session.execute(
        _joined(Decision, Application, Organization)
        .where(*criteria)
        .order_by(Decision.id)
        .limit(limit)
    ).all()
    return Preview(int(count), int(total), int(all_count) - int(count), [tuple(r) for r in sample])


PAYEE_KEYS = (
    "organization_id",
    "name",
    "credit_code",
    "bank_name",
    "bank_account_name",
    "bank_account_no",
    "district",
)


def payee_of(org: Organization, district: str) -> dict[str, Any]:
    """The bank details frozen on a line (the organization may change them later)."""
    values = (org.id, org.name, org.credit_code, org.bank_name)
    values += (org.bank_account_name, org.bank_account_no, district)
    return dict(zip(PAYEE_KEYS, values, strict=True))


# ---------------------------------------------------------------- batches


def next_batch_number(session: Session, year: int) -> str:
    """ZF<year>-<seq>: an UPDATE ... RETURNING on the year's counter row (gapless, unique)."""
    for _ in range(3):
        seq = session.execute(
            update(BatchNumberCounter)
            .where(BatchNumberCounter.year == year)
            .values(last_seq=BatchNumberCounter.last_seq + 1)
            .returning(BatchNumberCounter.last_seq)
            .execution_options(synchronize_session=False)
        ).scalar()
        if seq is not None:
            return f"ZF{year}-{int(seq):04d}"
        try:
            with session.begin_nested():
                session.execute(insert(BatchNumberCounter).values(year=year, last_seq=1))
            return f"ZF{year}-0001"
        except IntegrityError:
            continue
    raise RuntimeError(f"could not allocate a batch number for {year}")


def _new_batch(session: Session, user: User, filters: dict[str, Any], today: date):
    batch = DisbursementBatch(
        number=next_batch_number(session, today.year),
        status="draft",
        filters=filters,
        created_by_id=user.id,
    )
    session.add(batch)
    session.flush()
    return batch


def _insert_lines(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(DisbursementLine), rows)


def _refresh_totals(session: Session, batch: DisbursementBatch) -> None:
    count, total = session.execute(
        select(func.count(), func.coalesce(func.sum(DisbursementLine.amount_fen), 0)).where(
            DisbursementLine.batch_id == batch.id
        )
    ).one()
    batch.line_count, batch.total_fen = int(count), int(total)


def build_batch(
    session: Session, user: User, filters: BatchFilters, *, today: date | None = None
) -> DisbursementBatch:
    """A draft batch of every payable decision matching ``filters`` (with bank details).

    Lines are inserted in chunks keyed by decision id, so a batch of 100,000 decisions
    never holds more than one chunk in memory.
    """
    _must_manage(user)
    today = today or date.today()
    criteria = [*payable_criteria(user, filters), _has_bank_details()]
    if not session.scalar(_joined(func.count()).where(*criteria)):
        raise ValidationFailed(
            "没有符合条件且银行账户信息完整的待拨付决定。",
            "No approved, unpaid decision with complete bank details matches these filters.",
        )
    batch = _new_batch(session, user, filters.as_dict(), today)
    columns = (
        Decision.id,
        Decision.amount_fen,
        Application.district,
        Organization.id,
        Organization.name,
        Organization.credit_code,
        Organization.bank_name,
        Organization.bank_account_name,
        Organization.bank_account_no,
    )
    last_id = 0
    while True:
        chunk = session.execute(
            _joined(*columns)
            .where(*criteria, Decision.id > last_id)
            .order_by(Decision.id)
            .limit(CHUNK)
        ).all()
        if not chunk:
            break
        _insert_lines(
            session,
            [
                {
                    "batch_id": batch.id,
                    "decision_id": r[0],
                    "amount_fen": r[1],
                    "payee": dict(zip(PAYEE_KEYS, (r[3], *r[4:], r[2]), strict=True)),
                    "status": "pending",
                }
                for r in chunk
            ],
        )
        last_id = chunk[-1][0]
    _refresh_totals(session, batch)
    record_event(
        session,
        action="batch.build",
        entity_type="batch",
        entity_id=batch.id,
        actor_id=user.id,
        actor_role="finance",
        data={
            "number": batch.number,
            "filters": batch.filters,
            "line_count": batch.line_count,
            "total_fen": batch.total_fen,
        },
    )
    session.flush()
    return batch


def _lock_row(session: Session, batch: DisbursementBatch) -> DisbursementBatch:
    """Re-read the batch under a row lock, so lock/remove/result do not interleave."""
    return session.execute(
        select(DisbursementBatch)
        .where(DisbursementBatch.id == batch.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def _must_be_draft(batch: DisbursementBatch) -> None:
    if batch.status != "draft":
        raise BatchStateError(
            f"拨付批次 {batch.number} 已锁定，不能修改。",
            f"Batch {batch.number} is locked and cannot be changed.",
        )


def remove_line(session: Session, user: User, line: DisbursementLine) -> None:
    """Take a line out of a draft batch (the decision becomes available again)."""
    _must_manage(user)
    batch = _lock_row(session, line.batch)
    _must_be_draft(batch)
    decision = session.get(Decision, line.decision_id)
    data = {
        "batch": batch.number,
        "decision": decision.doc_number if decision else None,
        "amount_fen": line.amount_fen,
    }
    line_id = line.id
    session.execute(delete(DisbursementLine).where(DisbursementLine.id == line_id))
    session.expire(batch, ["lines"])
    _refresh_totals(session, batch)
    record_event(
        session,
        action="line.remove",
        entity_type="line",
        entity_id=line_id,
        application_id=decision.application_id if decision else None,
        actor_id=user.id,
        actor_role="finance",
        data=data,
    )
    session.flush()


def discard_batch(session: Session, user: User, batch: DisbursementBatch) -> None:
    """Cancel a draft batch: its lines are deleted, its number stays used."""
    _must_manage(user)
    batch = _lock_row(session, batch)
    _must_be_draft(batch)
    session.execute(delete(DisbursementLine).where(DisbursementLine.batch_id == batch.id))
    session.expire(batch, ["lines"])
    before = {"line_count": batch.line_count, "total_fen": batch.total_fen}
    batch.status = "cancelled"
    batch.line_count, batch.total_fen = 0, 0
    record_event(
        session,
        action="batch.discard",
        entity_type="batch",
        entity_id=batch.id,
        actor_id=user.id,
        actor_role="finance",
        from_state="draft",
        to_state="cancelled",
        data={"number": batch.number, **before},
    )
    session.flush()


# ---------------------------------------------------------------- lock and verify


HASHED_PAYEE_KEYS = ("name", "credit_code", "bank_name", "bank_account_name", "bank_account_no")
# One line of the lock hash for string values, with json_str() of each string: the text of
# canonical([number, amount, payee]) (payee keys sorted) without building a JSON encoder
# per line, which is most of what json.dumps costs for a short list. The payment-file
# export (workflow.export_lines) hashes the lines it writes with it.
LOCK_LINE = (
    '[%s,%d,{"bank_account_name":%s,"bank_account_no":%s,"bank_name":%s,'
    '"credit_code":%s,"name":%s}]\n'
)
json_str = json.encoder.encode_basestring  # what canonical() (ensure_ascii=False) uses


def lock_hash_start(batch_number: str) -> Any:
    """The sha256 of a batch's lines starts with its number (see ``compute_lock_hash``)."""
    return hashlib.sha256(f"batch {batch_number}\n".encode())


def lock_hash_line(
    doc_number: str,
    amount_fen: int,
    name: Any,
    credit_code: Any,
    bank_name: Any,
    account_name: Any,
    account_no: Any,
) -> str:
    """One line of the lock hash's input: ``canonical([number, amount, payee]) + "\\n"``."""
    values = (doc_number, name, credit_code, bank_name, account_name, account_no)
    if all(type(v) is str for v in values) and type(amount_fen) is int:
        return LOCK_LINE % (
            json_str(doc_number),
            amount_fen,
            json_str(account_name),
            json_str(account_no),
            json_str(bank_name),
            json_str(credit_code),
            json_str(name),
        )
    payee = dict(zip(HASHED_PAYEE_KEYS, values[1:], strict=True))
    return canonical([doc_number, amount_fen, payee]) + "\n"


def compute_lock_hash(session: Session, batch: DisbursementBatch) -> tuple[str, int, int]:
    """sha256 over the batch number and its lines in id order: decision number, amount,
    payee bank details. Returns (hash, line count, total fen); reads in chunks."""
    digest = lock_hash_start(batch.number)
    count = total = 0
    last_id = 0
    while True:
        rows = session.execute(
            select(
                DisbursementLine.id,
                Decision.doc_number,
                DisbursementLine.amount_fen,
                DisbursementLine.payee,
            )
            .join(Decision, DisbursementLine.decision_id == Decision.id)
            .where(DisbursementLine.batch_id == batch.id, DisbursementLine.id > last_id)
            .order_by(DisbursementLine.id)
            .limit(CHUNK * 5)
        ).all()
        if not rows:
            break
        lines = []
        for _id, number, amount, payee in rows:
            p = payee or {}
            lines.append(lock_hash_line(number, amount, *(p.get(k, "") for k in HASHED_PAYEE_KEYS)))
            total += int(amount)
        digest.update("".join(lines).encode("utf-8"))
        count += len(rows)
        last_id = rows[-1][0]
        del rows, lines  # one chunk in memory at a time
    return digest.hexdigest(), count, total


def _double_booked(session: Session, batch: DisbursementBatch) -> list[str]:
    """Decision numbers of this batch that are also on a pending/paid line of another
    locked or settled batch (two drafts may overlap after concurrent builds: the first
    to lock wins)."""
    other = aliased(DisbursementLine)
    other_batch = aliased(DisbursementBatch)
    return list(
        session.scalars(
            select(Decision.doc_number)
            .join(DisbursementLine, DisbursementLine.decision_id == Decision.id)
            .join(other, other.decision_id == Decision.id)
            .join(other_batch, other.batch_id == other_batch.id)
            .where(
                DisbursementLine.batch_id == batch.id,
                other.batch_id != batch.id,
                other.status.in_(TAKEN_STATUSES),
                other_batch.status.in_(("locked", "settled")),
            )
            .distinct()
            .limit(20)
        )
    )


def _no_longer_payable(session: Session, batch: DisbursementBatch) -> list[str]:
    return list(
        session.scalars(
            select(Decision.doc_number)
            .join(DisbursementLine, DisbursementLine.decision_id == Decision.id)
            .join(Application, Decision.application_id == Application.id)
            .where(
                DisbursementLine.batch_id == batch.id,
                or_(Application.state != "approved", Decision.status != "issued"),
            )
            .limit(20)
        )
    )


def lock_batch(session: Session, user: User, batch: DisbursementBatch) -> DisbursementBatch:
    """Lock a reviewed draft: no decision may be in another open batch or no longer
    payable; the hash of its lines is stored and the batch can no longer change."""
    _must_manage(user)
    batch = _lock_row(session, batch)
    _must_be_draft(batch)
    if not batch.line_count:
        raise BatchStateError("空批次不能锁定。", "An empty batch cannot be locked.")
    twice = _double_booked(session, batch)
    if twice:
        raise BatchStateError(
            f"以下决定已在其他拨付批次中：{'、'.join(twice)}。请先移除。",
            f"These decisions are already in another batch: {', '.join(twice)}. Remove them.",
        )
    stale = _no_longer_payable(session, batch)
    if stale:
        raise BatchStateError(
            f"以下决定已不再是待拨付状态：{'、'.join(stale)}。请先移除。",
            f"These decisions are no longer awaiting payment: {', '.join(stale)}. Remove them.",
        )
    lock_hash, count, total = compute_lock_hash(session, batch)
    batch.lock_hash = lock_hash
    batch.line_count, batch.total_fen = count, total
    batch.status = "locked"
    batch.locked_at = utcnow()
    record_event(
        session,
        action="batch.lock",
        entity_type="batch",
        entity_id=batch.id,
        actor_id=user.id,
        actor_role="finance",
        from_state="draft",
        to_state="locked",
        data={
            "number": batch.number,
            "lock_hash": lock_hash,
            "line_count": count,
            "total_fen": total,
        },
    )
    session.flush()
    return batch


@dataclass
class VerifyResult:
    ok: bool
    stored_hash: str | None
    actual_hash: str
    line_count: int
    total_fen: int
    problems: list[dict[str, str]] = field(default_factory=list)


def verify_batch(
    session: Session, batch: DisbursementBatch, user: User | None = None
) -> VerifyResult:
    """Recompute the lock hash, count and total of a locked batch and compare.

    With ``user`` the check is recorded in the audit trail (the web page does that);
    exports call it without.
    """
    if batch.status not in ("locked", "settled") or not batch.lock_hash:
        raise BatchStateError(
            "批次尚未锁定，无需校验。", "The batch is not locked; there is nothing to verify."
        )
    actual, count, total = compute_lock_hash(session, batch)
    problems = []
    if actual != batch.lock_hash:
        problems.append(
            {
                "zh": "批次明细（文号、金额或收款账户）在锁定后被改动。",
                "en": "Lines (decision number, amount or bank details) changed after locking.",
            }
        )
    if count != batch.line_count or total != batch.total_fen:
        problems.append(
            {
                "zh": f"笔数或合计不符：锁定时 {batch.line_count} 笔，现为 {count} 笔。",
                "en": f"Count or total differs: {batch.line_count} lines at lock, {count} now.",
            }
        )
    result = VerifyResult(not problems, batch.lock_hash, actual, count, total, problems)
    if user is not None:
        record_event(
            session,
            action="batch.verify",
            entity_type="batch",
            entity_id=batch.id,
            actor_id=user.id,
            actor_role=next(
                (r for r in ("finance", "admin", "approver") if r in user.roles()), None
            ),
            data={"number": batch.number, "ok": result.ok, "actual_hash": actual},
        )
        session.flush()
    return result


# ---------------------------------------------------------------- results


def _result_problems(
    status: str, paid_on: date | None, voucher_no: str | None, reason: str | None, today: date
) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if status not in LINE_RESULTS:
        errors["status"] = ["invalid"]
    elif status == "paid":
        if paid_on is None:
            errors["paid_on"] = ["required"]
        elif paid_on > today:
            errors["paid_on"] = ["future"]
        if not voucher_no:
            errors["voucher_no"] = ["required"]
    elif not reason:
        errors["reason"] = ["required"]
    return errors


def record_line_result(
    session: Session,
    user: User,
    line: DisbursementLine,
    status: str,
    *,
    paid_on: date | None = None,
    voucher_no: str | None = None,
    reason: str | None = None,
    today: date | None = None,
    settle: bool = True,
) -> DisbursementLine:
    """Record what happened to a pending line of a locked batch. ``paid`` fires the
    application's ``pay`` transition; the batch is settled when no line is pending
    (``settle=False`` leaves that check to the caller, e.g. once after an import)."""
    _must_manage(user)
    today = today or date.today()
    voucher_no = (voucher_no or "").strip() or None
    reason = (reason or "").strip() or None
    batch = _lock_row(session, line.batch)
    if batch.status == "draft":
        raise BatchStateError(
            "请先锁定批次再登记拨付结果。", "Lock the batch before recording results."
        )
    if line.status != "pending":
        raise BatchStateError(
            "该笔已登记结果，不能重复登记。", "A result is already recorded for this line."
        )
    errors = _result_problems(status, paid_on, voucher_no, reason, today)
    if errors:
        raise ValidationFailed(
            "拨付结果不完整：已支付须填写日期（不晚于今天）和凭证号，失败或退回须填写原因。",
            "Incomplete result: paid needs a date (not in the future) and a voucher number; "
            "failed or returned needs a reason.",
            errors,
        )
    decision = session.get(Decision, line.decision_id)
    if status == "paid":
        fire(
            session,
            decision.application,
            "pay",
            user,
            payload={
                "paid_on": paid_on.isoformat(),
                "voucher_no": voucher_no,
                "batch": batch.number,
            },
            today=today,
        )
        line.paid_on, line.voucher_no = paid_on, voucher_no
    else:
        line.failure_reason = reason
    line.status = status
    record_event(
        session,
        action="line.result",
        entity_type="line",
        entity_id=line.id,
        application_id=decision.application_id,
        actor_id=user.id,
        actor_role="finance",
        from_state="pending",
        to_state=status,
        reason=reason,
        data={
            "batch": batch.number,
            "decision": decision.doc_number,
            "amount_fen": line.amount_fen,
            "paid_on": paid_on.isoformat() if status == "paid" and paid_on else None,
            "voucher_no": voucher_no if status == "paid" else None,
        },
    )
    session.flush()
    if settle:
        _settle_if_done(session, user, batch)
    return line


def _settle_if_done(session: Session, user: User, batch: DisbursementBatch) -> None:
    pending = session.scalar(
        select(func.count()).where(
            DisbursementLine.batch_id == batch.id, DisbursementLine.status == "pending"
        )
    )
    if batch.status == "locked" and not pending:
        batch.status = "settled"
        counts = dict(
            session.execute(
                select(DisbursementLine.status, func.count())
                .where(DisbursementLine.batch_id == batch.id)
                .group_by(DisbursementLine.status)
            ).all()
        )
        record_event(
            session,
            action="batch.settle",
            entity_type="batch",
            entity_id=batch.id,
            actor_id=user.id,
            actor_role="finance",
            from_state="locked",
            to_state="settled",
            data={"number": batch.number, "lines": counts},
        )
        session.flush()


# ---------------------------------------------------------------- bank result import

# Header aliases (case-insensitive, surrounding spaces ignored).
IMPORT_COLUMNS: dict[str, tuple[str, ...]] = {
    "decision_number": ("决定书文号", "文号", "decision number", "decision_number"),
    "status": ("状态", "结果", "status"),
    "date": ("日期", "支付日期", "date", "paid_on"),
    "voucher": ("凭证号", "凭证", "voucher", "voucher_no"),
    "reason": ("原因", "失败原因", "reason"),
    "amount": ("金额", "金额（元）", "amount"),
}
STATUS_WORDS = {
    "paid": "paid",
    "成功": "paid",
    "已支付": "paid",
    "支付成功": "paid",
    "failed": "failed",
    "失败": "failed",
    "支付失败": "failed",
    "returned": "returned",
    "退回": "returned",
    "退票": "returned",
}
MAX_IMPORT_BYTES = 10 * 1024 * 1024


@dataclass
class ImportRow:
    row: int  # line number in the file (the header is line 1)
    decision_number: str
    zh: str
    en: str


@dataclass
class ImportReport:
    """What an import did. ``error`` set means the file was refused and nothing applied."""

    encoding: str | None = None
    error: dict[str, str] | None = None
    applied: list[ImportRow] = field(default_factory=list)
    unchanged: list[ImportRow] = field(default_factory=list)
    unmatched: list[ImportRow] = field(default_factory=list)
    duplicates: list[ImportRow] = field(default_factory=list)
    amount_mismatches: list[ImportRow] = field(default_factory=list)
    invalid: list[ImportRow] = field(default_factory=list)
    conflicts: list[ImportRow] = field(default_factory=list)

    @property
    def problem_count(self) -> int:
        return sum(
            len(x)
            for x in (
                self.unmatched,
                self.duplicates,
                self.amount_mismatches,
                self.invalid,
                self.conflicts,
            )
        )

    def counts(self) -> dict[str, int]:
        names = ("applied", "unchanged", "unmatched", "duplicates")
        names += ("amount_mismatches", "invalid", "conflicts")
        return {n: len(getattr(self, n)) for n in names}


def decode_bank_file(data: bytes) -> tuple[str, str]:
    """Text and encoding name of a bank file: UTF-8 with or without BOM, or GBK/GB18030.
    Raises ValueError for anything else (UTF-16, binary, a spreadsheet)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8-sig"
    if b"\x00" in data:
        raise ValueError("nul bytes")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gbk"
    except UnicodeDecodeError as exc:
        raise ValueError("undecodable") from exc


def _parse_date(text: str) -> date | None:
    text = text.strip()
    for fmt in ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d"):
        try:
            return datetime.strptime(text, fmt).date()  # noqa: DTZ007 (a calendar date)
        except ValueError:
            continue
    return None


def _parse_amount(text: str) -> int | None:
    text = text.strip().replace(",", "").replace("¥", "").replace("￥", "")
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    return int((value * 100).to_integral_value())


def _header_map(header: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for index, name in enumerate(header):
        key = name.strip().lower()
        for column, aliases in IMPORT_COLUMNS.items():
            if key in (a.lower() for a in aliases) and column not in found:
                found[column] = index
    return found


def _rows(text: str) -> Iterator[list[str]]:
    yield from csv.reader(io.StringIO(text, newline=""))


def _lines_by_number(
    session: Session, batch: DisbursementBatch, numbers: list[str]
) -> dict[str, DisbursementLine]:
    """The batch's lines for these decision numbers (only those the file names)."""
    found: dict[str, DisbursementLine] = {}
    for start in range(0, len(numbers), 500):
        rows = session.execute(
            select(DisbursementLine, Decision.doc_number)
            .join(Decision, DisbursementLine.decision_id == Decision.id)
            .where(
                DisbursementLine.batch_id == batch.id,
                Decision.doc_number.in_(numbers[start : start + 500]),
            )
        ).all()
        found.update({number: line for line, number in rows})
    return found


def import_bank_results(
    session: Session,
    user: User,
    batch: DisbursementBatch,
    data: bytes,
    *,
    today: date | None = None,
) -> ImportReport:
    """Apply a bank result file to a locked batch, matching rows by decision number.

    The file is CSV with a header row; columns (Chinese or English names, any order):
    决定书文号/decision number and 状态/status (paid|failed|returned, or 成功/失败/退票)
    are required; 日期/date (YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD) and 凭证号/voucher are
    required for paid rows; 原因/reason is used for failed and returned rows; 金额/amount
    (yuan), when present, must equal the line's amount. UTF-8 (with or without BOM) and
    GBK are accepted.

    Every row is checked before anything is applied; rows with a problem are reported and
    skipped, the others are recorded. Rows already recorded with the same result are
    reported as unchanged, so importing the same file twice is harmless.
    """
    _must_manage(user)
    today = today or date.today()
    report = ImportReport()
    if batch.status == "draft":
        raise BatchStateError(
            "请先锁定批次再导入银行回单。", "Lock the batch before importing bank results."
        )
    if len(data) > MAX_IMPORT_BYTES:
        report.error = {"zh": "文件超过10MB。", "en": "The file is larger than 10 MB."}
        return report
    try:
        text, report.encoding = decode_bank_file(data)
    except ValueError:
        report.error = {
            "zh": "无法识别文件编码：请保存为UTF-8或GBK编码的CSV文件（不要上传Excel或UTF-16文件）。",
            "en": "Unreadable encoding: save the file as CSV in UTF-8 or GBK "
            "(not an Excel workbook or UTF-16).",
        }
        return report
    try:
        rows = list(_rows(text))
    except csv.Error:
        report.error = {"zh": "文件不是有效的CSV。", "en": "The file is not valid CSV."}
        return report
    if not rows:
        report.error = {"zh": "文件是空的。", "en": "The file is empty."}
        return report
    columns = _header_map(rows[0])
    if "decision_number" not in columns or "status" not in columns:
        report.error = {
            "zh": "缺少表头：第一行须包含“决定书文号”和“状态”两列。",
            "en": "Missing header: the first row must name the 'decision number' and "
            "'status' columns.",
        }
        return report

    def cell(row: list[str], name: str) -> str:
        index = columns.get(name)
        return row[index].strip() if index is not None and index < len(row) else ""

    seen: dict[str, int] = {}
    parsed: list[tuple[int, list[str]]] = []
    for row_no, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        number = cell(row, "decision_number")
        seen[number] = seen.get(number, 0) + 1
        parsed.append((row_no, row))
    lines = _lines_by_number(session, batch, [n for n in seen if n])

    todo: list[tuple[ImportRow, DisbursementLine, str, date | None, str, str]] = []
    for row_no, row in parsed:
        number = cell(row, "decision_number")

        def note(bucket: list[ImportRow], zh: str, en: str, row_no=row_no, number=number) -> None:
            bucket.append(ImportRow(row_no, number, zh, en))

        if not number:
            note(report.invalid, "缺少决定书文号。", "No decision number.")
            continue
        if seen[number] > 1:
            note(
                report.duplicates,
                f"文件中出现{seen[number]}次，均未处理。",
                f"Appears {seen[number]} times in the file; none applied.",
            )
            continue
        line = lines.get(number)
        if line is None:
            note(report.unmatched, "本批次中没有该决定书文号。", "No such decision in this batch.")
            continue
        status = STATUS_WORDS.get(cell(row, "status").lower())
        if status is None:
            note(
                report.invalid,
                f"无法识别的状态“{cell(row, 'status')}”。",
                f"Unknown status '{cell(row, 'status')}'.",
            )
            continue
        amount_text = cell(row, "amount")
        if amount_text:
            amount = _parse_amount(amount_text)
            if amount is None:
                note(report.invalid, "金额格式错误。", "Malformed amount.")
                continue
            if amount != line.amount_fen:
                note(
                    report.amount_mismatches,
                    f"金额{amount_text}与批次金额{Decimal(line.amount_fen) / 100:.2f}不符。",
                    f"Amount {amount_text} differs from the line's "
                    f"{Decimal(line.amount_fen) / 100:.2f}.",
                )
                continue
        paid_on = _parse_date(cell(row, "date")) if cell(row, "date") else None
        voucher = cell(row, "voucher")
        reason = cell(row, "reason")
        if status == "paid" and (paid_on is None or not voucher or paid_on > today):
            note(
                report.invalid,
                "已支付的记录须有有效日期（不晚于今天）和凭证号。",
                "A paid row needs a valid date (not in the future) and a voucher number.",
            )
            continue
        if line.status != "pending":
            same = line.status == status and (status != "paid" or line.voucher_no == voucher)
            if same:
                note(report.unchanged, "此前已登记相同结果。", "Already recorded.")
            else:
                note(
                    report.conflicts,
                    f"该笔已登记为“{line.status}”，与文件不一致。",
                    f"Already recorded as '{line.status}', which differs from the file.",
                )
            continue
        app = session.get(Decision, line.decision_id).application
        if status == "paid" and (app.state != "approved" or "finance" not in roles_for(user, app)):
            note(
                report.conflicts,
                "该申报当前不能登记为已拨付（状态已变化或不在您的权限范围内）。",
                "This application cannot be marked paid now (its state changed or it is "
                "outside your scope).",
            )
            continue
        todo.append((ImportRow(row_no, number, "", ""), line, status, paid_on, voucher, reason))

    for item, line, status, paid_on, voucher, reason in todo:
        record_line_result(
            session,
            user,
            line,
            status,
            paid_on=paid_on,
            voucher_no=voucher,
            reason=reason or ("银行回单：退回" if status == "returned" else "银行回单：支付失败"),
            today=today,
            settle=False,
        )
        item.zh, item.en = f"已登记：{status}", f"Recorded: {status}"
        report.applied.append(item)

    record_event(
        session,
        action="batch.import_results",
        entity_type="batch",
        entity_id=batch.id,
        actor_id=user.id,
        actor_role="finance",
        data={"number": batch.number, "encoding": report.encoding, **report.counts()},
    )
    session.flush()
    if report.applied:
        _settle_if_done(session, user, batch)
    return report


# ---------------------------------------------------------------- rebatch


def rebatch_failed(
    session: Session, user: User, batch: DisbursementBatch, *, today: date | None = None
) -> DisbursementBatch:
    """A new draft batch of this batch's failed and returned lines whose decisions are
    still awaiting payment and not in another open batch; bank details are read afresh
    from the organization (a wrong account is the usual reason a payment failed)."""
    _must_manage(user)
    today = today or date.today()
    if batch.status not in ("locked", "settled"):
        raise BatchStateError(
            "只有已锁定批次的失败明细可以重新组批。",
            "Only failed lines of a locked batch can go into a new batch.",
        )
    stmt = (
        select(DisbursementLine, Decision, Application, Organization)
        .join(Decision, DisbursementLine.decision_id == Decision.id)
        .join(Application, Decision.application_id == Application.id)
        .join(Organization, Application.organization_id == Organization.id)
        .where(
            DisbursementLine.batch_id == batch.id,
            DisbursementLine.status.in_(RETRY_STATUSES),
            Application.state == "approved",
            Decision.status == "issued",
            ~_taken(Decision.id),
            finance_scope(user),
        )
        .order_by(DisbursementLine.id)
    )
    rows = session.execute(stmt).all()
    if not rows:
        raise ValidationFailed(
            "该批次没有可重新拨付的失败或退回明细。",
            "This batch has no failed or returned line left to pay again.",
        )
    new = _new_batch(session, user, {"rebatch_of": batch.number}, today)
    _insert_lines(
        session,
        [
            {
                "batch_id": new.id,
                "decision_id": d.id,
                "amount_fen": d.amount_fen,
                "payee": payee_of(org, app.district),
                "status": "pending",
            }
            for _line, d, app, org in rows
        ],
    )
    _refresh_totals(session, new)
    record_event(
        session,
        action="batch.rebatch",
        entity_type="batch",
        entity_id=new.id,
        actor_id=user.id,
        actor_role="finance",
        data={
            "number": new.number,
            "from_batch": batch.number,
            "line_count": new.line_count,
            "total_fen": new.total_fen,
        },
    )
    session.flush()
    return new


# ---------------------------------------------------------------- clawback


def paid_amount(session: Session, decision: Decision) -> int:
    return int(
        session.scalar(
            select(func.coalesce(func.sum(DisbursementLine.amount_fen), 0)).where(
                DisbursementLine.decision_id == decision.id, DisbursementLine.status == "paid"
            )
        )
        or 0
    )


def find_decision(session: Session, doc_number: str) -> Decision | None:
    return session.scalar(select(Decision).where(Decision.doc_number == doc_number.strip()))


def record_clawback(
    session: Session,
    user: User,
    decision: Decision,
    amount_fen: int,
    reason: str,
    *,
    recovered_on: date | None = None,
    today: date | None = None,
) -> Clawback:
    """Record money recovered (追回) and fire ``clawback`` (which releases the reservation).

    Paid awards: 0 < amount ≤ paid; what was paid and not recovered stays committed
    against the budget (re-reserved after the release). Unpaid awards are withdrawn
    whole: the amount must equal the decision's, and nothing stays committed.
    """
    _must_manage(user)
    today = today or date.today()
    reason = (reason or "").strip()
    app = decision.application
    if decision.kind not in PAYABLE_KINDS or decision.status != "issued" or not decision.amount_fen:
        raise ValidationFailed(
            "该决定书没有可追回的奖励资金。", "This decision carries no money to claw back."
        )
    if app.state not in ("approved", "paid"):
        raise BatchStateError(
            "该申报当前状态不能追回资金。", "This application's money cannot be clawed back now."
        )
    if not reason:
        raise ValidationFailed(
            "请填写追回原因。", "A reason is required.", {"reason": ["required"]}
        )
    open_line = session.scalar(
        select(DisbursementBatch.number)
        .join(DisbursementLine, DisbursementLine.batch_id == DisbursementBatch.id)
        .where(DisbursementLine.decision_id == decision.id, DisbursementLine.status == "pending")
    )
    if open_line:
        raise BatchStateError(
            f"该决定在拨付批次 {open_line} 中待付：请先移除该笔或登记结果。",
            f"This decision is pending in batch {open_line}: remove it or record its result.",
        )
    paid = paid_amount(session, decision) if app.state == "paid" else 0
    if app.state == "paid":
        cap = paid or decision.amount_fen
        if not 0 < amount_fen <= cap:
            raise ValidationFailed(
                f"追回金额须大于零且不超过已拨付金额 {Decimal(cap) / 100:.2f} 元。",
                f"The amount must be above zero and at most the {Decimal(cap) / 100:.2f} paid.",
                {"amount": ["range"]},
            )
        retained = cap - amount_fen
    else:
        if amount_fen != decision.amount_fen:
            raise ValidationFailed(
                "尚未拨付的奖励只能全额撤销：追回金额须等于决定金额。",
                "An unpaid award is withdrawn whole: the amount must equal the decision's.",
                {"amount": ["range"]},
            )
        retained = 0
    fire(
        session,
        app,
        "clawback",
        user,
        reason=reason,
        payload={"amount_fen": amount_fen},
        today=today,
    )
    if retained > 0:
        reserve(session, app, retained, user.id)
    claw = Clawback(
        decision_id=decision.id,
        amount_fen=amount_fen,
        reason=reason,
        actor_id=user.id,
        recovered_on=recovered_on,
        extra={"paid_fen": paid, "retained_fen": retained},
    )
    session.add(claw)
    session.flush()
    record_event(
        session,
        action="clawback.record",
        entity_type="clawback",
        entity_id=claw.id,
        application_id=app.id,
        actor_id=user.id,
        actor_role="finance",
        reason=reason,
        data={
            "decision": decision.doc_number,
            "amount_fen": amount_fen,
            "retained_fen": retained,
            "recovered_on": recovered_on.isoformat() if recovered_on else None,
        },
    )
    session.flush()
    return claw


def call_budgets(session: Session) -> list[dict[str, Any]]:
    """Budget, committed, paid and left per call (newest first)."""
    paid = (
        select(
            Application.call_id.label("call_id"),
            func.sum(DisbursementLine.amount_fen).label("paid"),
        )
        .join(Decision, DisbursementLine.decision_id == Decision.id)
        .join(Application, Decision.application_id == Application.id)
        .where(DisbursementLine.status == "paid")
        .group_by(Application.call_id)
        .subquery()
    )
    rows = session.execute(
        select(Call, func.coalesce(paid.c.paid, 0))
        .outerjoin(paid, paid.c.call_id == Call.id)
        .order_by(Call.year.desc(), Call.program_code, Call.id)
    ).all()
    return [
        {
            "call": call,
            "budget_fen": call.budget_fen,
            "committed_fen": call.committed_fen,
            "paid_fen": int(paid_fen),
            "left_fen": call.budget_fen - call.committed_fen,
        }
        for call, paid_fen in rows
    ]


def awaiting_summary(session: Session) -> dict[str, int]:
    """Approved decisions awaiting payment: how many and how much, and how many of them
    are not in any open batch yet (for everyone's overview, not limited by scope)."""
    base = [
        Decision.kind.in_(PAYABLE_KINDS),
        Decision.status == "issued",
        Decision.amount_fen > 0,
        Application.state == "approved",
    ]
    count, total = session.execute(
        _joined(func.count(), func.coalesce(func.sum(Decision.amount_fen), 0)).where(*base)
    ).one()
    free = session.scalar(_joined(func.count()).where(*base, ~_taken(Decision.id))) or 0
    return {"count": int(count), "total_fen": int(total), "unbatched": int(free)}
