"""Finance: batches from approved decisions, lock and verify, payment results, the bank
result import, rebatching, clawbacks and the budget, reconciliation and dashboards,
separation of duties."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, text, update

from tests.audit_events import audit_events
from tests.conftest import Factory
from workflow import outbox
from workflow.engine import fire
from workflow.errors import PermissionDenied, ValidationFailed
from workflow.models import (
    Application,
    AuditEvent,
    BudgetLedgerEntry,
    Call,
    Clawback,
    Decision,
    DisbursementBatch,
    DisbursementLine,
    User,
)
from workflow.operations import finance as ops
from workflow.operations.applications import submit_application
from workflow.reports import (
    DashboardFilters,
    amounts_by_district,
    amounts_by_month,
    amounts_by_program,
    applications_by_stage,
    processing_time,
    reconciliation,
)
from workflow.scheduler import sweep_deadlines

TODAY = date.today()


class FinanceWorld:
    """Approved decisions made the real way: submit, pass eligibility (city officer),
    approve (approver, which reserves the budget), then the notice period ends in the
    sweep, which issues the numbered decision."""

    def __init__(self, session: Any, make: Factory, form: dict[str, Any]):
        self.session, self.make, self.form = session, make, form
        self.city = make.user("city_officer")
        self.approver = make.user("approver")
        self.finance = make.user("finance")
        self._call: Call | None = None
        self.n = 0

    def call(self, budget: str = "1000000") -> Call:
        return self.make.call(
            "certification_reward", budget=budget, params={"district_prereview": False}
        )

    @property
    def default_call(self) -> Call:
        if self._call is None:
            self._call = self.call()
        return self._call

    def in_approval(
        self, *, call: Call | None = None, district: str = "朝阳区", cost: str = "25000.00"
    ) -> Application:
        self.n += 1
        call = call or self.default_call
        applicant = self.make.applicant(district=district)
        form = dict(self.form, cert_cost_paid=cost, contract_amount=cost)
        form["cert_number"] = f"165IP25{self.n:04d}R0M"
        form["invoices"] = [dict(self.form["invoices"][0], amount=cost)]
        app = self.make.application(call, applicant, form)
        submit_application(self.session, app, applicant, today=TODAY)
        fire(self.session, app, "pass_eligibility", self.city, today=TODAY)
        return app

    def approved(self, **kwargs: Any) -> Decision:
        app = self.in_approval(**kwargs)
        fire(self.session, app, "approve", self.approver, today=TODAY)
        sweep_deadlines(self.session, app.deadline_on + timedelta(days=1))
        assert app.state == "approved"
        return self.session.scalar(
            select(Decision).where(Decision.application_id == app.id, Decision.kind == "approval")
        )

    def batch(self, *decisions: Decision, lock: bool = False) -> DisbursementBatch:
        batch = ops.build_batch(self.session, self.finance, ops.BatchFilters())
        if lock:
            ops.lock_batch(self.session, self.finance, batch)
        return batch

    def line(self, batch: DisbursementBatch, decision: Decision) -> DisbursementLine:
        return self.session.scalar(
            select(DisbursementLine).where(
                DisbursementLine.batch_id == batch.id,
                DisbursementLine.decision_id == decision.id,
            )
        )


@pytest.fixture
def world(session, make, cert_form, monkeypatch) -> FinanceWorld:
    # The decision PDF is rendered by the outbox relay after the sweep commits; finance
    # needs the decision row only, so the relay is switched off here.
    monkeypatch.setattr(outbox, "_relay", None)
    return FinanceWorld(session, make, cert_form)


def events(session, action: str) -> list[AuditEvent]:
    return audit_events(session, action)


# ---------------------------------------------------------------- building


def test_build_batch_takes_approved_unpaid_decisions(session, world):
    d1 = world.approved(district="朝阳区", cost="25000.00")
    d2 = world.approved(district="南关区", cost="18000.00")
    world.in_approval()  # approved at the meeting later: not payable yet
    batch = ops.build_batch(session, world.finance, ops.BatchFilters())
    assert batch.number == f"ZF{TODAY.year}-0001"
    assert batch.status == "draft"
    assert (batch.line_count, batch.total_fen) == (2, 2_500_000 + 1_800_000)
    line = world.line(batch, d1)
    assert line.status == "pending" and line.amount_fen == d1.amount_fen
    org = d1.application.organization
    assert line.payee["bank_account_no"] == org.bank_account_no
    assert line.payee["credit_code"] == org.credit_code
    assert world.line(batch, d2).payee["district"] == "南关区"
    (ev,) = events(session, "batch.build")
    assert ev.entity_type == "batch" and ev.actor_id == world.finance.id
    assert ev.data["line_count"] == 2


def test_filters_and_preview(session, world):
    world.approved(district="朝阳区")
    d2 = world.approved(district="南关区", cost="18000.00")
    preview = ops.preview_batch(session, world.finance, ops.BatchFilters(district="南关区"))
    assert (preview.count, preview.total_fen) == (1, d2.amount_fen)
    assert [row[0].id for row in preview.sample] == [d2.id]
    later = ops.BatchFilters(issued_from=TODAY + timedelta(days=30))
    assert ops.preview_batch(session, world.finance, later).count == 0
    window = ops.BatchFilters(
        issued_from=TODAY - timedelta(days=1), issued_to=TODAY + timedelta(days=60)
    )
    assert ops.preview_batch(session, world.finance, window).count == 2
    other = ops.BatchFilters(program="branded_agency")
    with pytest.raises(ValidationFailed):
        ops.build_batch(session, world.finance, other)
    batch = ops.build_batch(
        session, world.finance, ops.BatchFilters(call_id=d2.application.call_id, district="南关区")
    )
    assert batch.line_count == 1 and batch.filters["district"] == "南关区"


def test_decision_is_in_one_open_batch_only(session, world):
    world.approved()
    ops.build_batch(session, world.finance, ops.BatchFilters())
    with pytest.raises(ValidationFailed) as exc:
        ops.build_batch(session, world.finance, ops.BatchFilters())
    assert exc.value.status == 422


def test_missing_bank_details_are_left_out(session, world):
    d1 = world.approved()
    d2 = world.approved()
    d2.application.organization.bank_account_no = ""
    session.flush()
    preview = ops.preview_batch(session, world.finance, ops.BatchFilters())
    assert (preview.count, preview.missing_bank) == (1, 1)
    batch = ops.build_batch(session, world.finance, ops.BatchFilters())
    assert batch.line_count == 1 and world.line(batch, d1) is not None


def test_finance_grant_scope_limits_candidates(session, world, make):
    world.approved()
    other_program = make.user("finance", program="pledge_loan_subsidy")
    other_district = make.user("finance", district="南关区")
    assert ops.preview_batch(session, other_program, ops.BatchFilters()).count == 0
    assert ops.preview_batch(session, other_district, ops.BatchFilters()).count == 0
    with pytest.raises(PermissionDenied):
        ops.build_batch(session, world.approver, ops.BatchFilters())


def test_batch_numbers_are_sequential_per_year(session, world):
    world.approved()
    first = ops.build_batch(session, world.finance, ops.BatchFilters())
    ops.discard_batch(session, world.finance, first)
    second = ops.build_batch(session, world.finance, ops.BatchFilters())
    assert first.status == "cancelled" and first.line_count == 0
    assert second.number == f"ZF{TODAY.year}-0002"
    assert ops.next_batch_number(session, 2031) == "ZF2031-0001"


# ---------------------------------------------------------------- review and lock


def test_remove_line_while_draft(session, world):
    d1 = world.approved()
    d2 = world.approved(cost="18000.00")
    batch = world.batch()
    ops.remove_line(session, world.finance, world.line(batch, d1))
    assert (batch.line_count, batch.total_fen) == (1, d2.amount_fen)
    (ev,) = events(session, "line.remove")
    assert ev.entity_type == "line" and ev.data["decision"] == d1.doc_number
    # The removed decision is free again for the next batch.
    again = ops.build_batch(session, world.finance, ops.BatchFilters())
    assert world.line(again, d1) is not None


def test_locked_batch_cannot_change(session, world):
    d1 = world.approved()
    world.approved(cost="18000.00")
    batch = world.batch(lock=True)
    assert batch.status == "locked" and len(batch.lock_hash) == 64
    assert batch.locked_at is not None
    (ev,) = events(session, "batch.lock")
    assert ev.data["lock_hash"] == batch.lock_hash
    with pytest.raises(ops.BatchStateError) as exc:
        ops.remove_line(session, world.finance, world.line(batch, d1))
    assert exc.value.status == 409
    with pytest.raises(ops.BatchStateError):
        ops.discard_batch(session, world.finance, batch)
    with pytest.raises(ops.BatchStateError):
        ops.lock_batch(session, world.finance, batch)
    assert batch.line_count == 2
    assert ops.verify_batch(session, batch).ok


def test_verify_detects_silent_changes(session, world):
    d1 = world.approved()
    world.approved(cost="18000.00")
    batch = world.batch(lock=True)
    line = world.line(batch, d1)
    # Someone edits the database directly: the amount, then the payee's account.
    session.execute(
        update(DisbursementLine).where(DisbursementLine.id == line.id).values(amount_fen=9_999_900)
    )
    result = ops.verify_batch(session, batch, world.finance)
    assert not result.ok and result.actual_hash != batch.lock_hash
    assert len(result.problems) == 2  # hash and total
    session.execute(
        update(DisbursementLine)
        .where(DisbursementLine.id == line.id)
        .values(amount_fen=d1.amount_fen)
    )
    assert ops.verify_batch(session, batch).ok
    payee = dict(line.payee, bank_account_no="6222000099999999")
    session.execute(
        update(DisbursementLine).where(DisbursementLine.id == line.id).values(payee=payee)
    )
    assert not ops.verify_batch(session, batch).ok
    session.execute(text("DELETE FROM disbursement_lines WHERE id = :id"), {"id": line.id})
    result = ops.verify_batch(session, batch)
    assert not result.ok and result.line_count == 1
    assert [e.data["ok"] for e in events(session, "batch.verify")] == [False]


def test_lock_refuses_decisions_no_longer_payable(session, world):
    d1 = world.approved()
    batch = world.batch()
    d1.application.state = "clawed_back"  # e.g. withdrawn by a clawback meanwhile
    session.flush()
    with pytest.raises(ops.BatchStateError) as exc:
        ops.lock_batch(session, world.finance, batch)
    assert d1.doc_number in exc.value.zh


def test_lock_refuses_a_decision_booked_twice(session, world):
    d1 = world.approved()
    first = world.batch()
    # Force the same decision into a second draft (as two concurrent builds could).
    other = DisbursementBatch(number="ZF1999-0001", status="draft", created_by_id=world.finance.id)
    session.add(other)
    session.flush()
    session.add(
        DisbursementLine(batch_id=other.id, decision_id=d1.id, amount_fen=d1.amount_fen, payee={})
    )
    session.flush()
    ops._refresh_totals(session, other)
    ops.lock_batch(session, world.finance, first)
    with pytest.raises(ops.BatchStateError) as exc:
        ops.lock_batch(session, world.finance, other)
    assert d1.doc_number in exc.value.zh


# ---------------------------------------------------------------- results


def test_results_pay_applications_and_settle_the_batch(session, world):
    d1 = world.approved()
    d2 = world.approved(cost="18000.00")
    batch = world.batch(lock=True)
    paid_on = TODAY - timedelta(days=1)
    ops.record_line_result(
        session, world.finance, world.line(batch, d1), "paid", paid_on=paid_on, voucher_no="V-001"
    )
    assert d1.application.state == "paid"
    assert batch.status == "locked"
    (pay,) = [e for e in events(session, "transition.pay") if e.application_id == d1.application_id]
    assert pay.actor_id == world.finance.id and pay.actor_role == "finance"
    assert pay.data["payment"] == {
        "paid_on": paid_on.isoformat(),
        "voucher_no": "V-001",
        "batch": batch.number,
    }
    ops.record_line_result(
        session, world.finance, world.line(batch, d2), "failed", reason="账号不存在"
    )
    assert d2.application.state == "approved"
    assert batch.status == "settled"
    assert world.line(batch, d2).failure_reason == "账号不存在"
    assert len(events(session, "line.result")) == 2
    (settle,) = events(session, "batch.settle")
    assert settle.data["lines"] == {"paid": 1, "failed": 1}
    # Recording the result did not disturb the lock.
    assert ops.verify_batch(session, batch).ok


@pytest.mark.parametrize(
    ("status", "kwargs", "field"),
    [
        ("paid", {"voucher_no": "V1"}, "paid_on"),
        ("paid", {"paid_on": TODAY}, "voucher_no"),
        ("paid", {"paid_on": TODAY + timedelta(days=1), "voucher_no": "V1"}, "paid_on"),
        ("failed", {}, "reason"),
        ("returned", {"reason": "  "}, "reason"),
        ("lost", {}, "status"),
    ],
)
def test_incomplete_results_are_refused(session, world, status, kwargs, field):
    d1 = world.approved()
    batch = world.batch(lock=True)
    with pytest.raises(ValidationFailed) as exc:
        ops.record_line_result(session, world.finance, world.line(batch, d1), status, **kwargs)
    assert field in exc.value.errors
    assert world.line(batch, d1).status == "pending"


def test_results_need_a_locked_batch_and_are_recorded_once(session, world):
    d1 = world.approved()
    batch = world.batch()
    line = world.line(batch, d1)
    with pytest.raises(ops.BatchStateError):
        ops.record_line_result(session, world.finance, line, "failed", reason="x")
    ops.lock_batch(session, world.finance, batch)
    ops.record_line_result(session, world.finance, line, "failed", reason="x")
    with pytest.raises(ops.BatchStateError):
        ops.record_line_result(session, world.finance, line, "paid", paid_on=TODAY, voucher_no="V")
    with pytest.raises(PermissionDenied):
        ops.record_line_result(session, world.approver, line, "failed", reason="x")


def test_failed_lines_go_into_a_new_batch_with_fresh_bank_details(session, world):
    d1 = world.approved()
    d2 = world.approved(cost="18000.00")
    batch = world.batch(lock=True)
    ops.record_line_result(
        session, world.finance, world.line(batch, d1), "returned", reason="户名不符"
    )
    ops.record_line_result(
        session, world.finance, world.line(batch, d2), "paid", paid_on=TODAY, voucher_no="V2"
    )
    org = d1.application.organization
    org.bank_account_no = "6222000011112222"
    session.flush()
    new = ops.rebatch_failed(session, world.finance, batch)
    assert (
        new.status == "draft"
        and new.line_count == 1
        and new.filters == {"rebatch_of": batch.number}
    )
    line = world.line(new, d1)
    assert line.payee["bank_account_no"] == "6222000011112222"
    assert world.line(batch, d1).payee["bank_account_no"] != "6222000011112222"
    with pytest.raises(ValidationFailed):
        ops.rebatch_failed(session, world.finance, batch)  # already in the new batch
    (ev,) = events(session, "batch.rebatch")
    assert ev.data["from_batch"] == batch.number


# ---------------------------------------------------------------- bank import

HEADER = "决定书文号,状态,日期,凭证号,原因,金额\n"


def test_import_matches_by_decision_number_and_reports_mismatches(session, world):
    d1 = world.approved()
    d2 = world.approved(cost="18000.00")
    d3 = world.approved(cost="20000.00")
    d4 = world.approved(cost="21000.00")
    batch = world.batch(lock=True)
    day = TODAY.isoformat()
    csv_text = (
        HEADER
        + f"{d1.doc_number},成功,{day},V-1,,25000.00\n"
        + f"{d2.doc_number},失败,,,账号错误,18000\n"
        + "长市监知字〔2099〕1号,成功,2026-01-01,V-9,,\n"
        + f"{d3.doc_number},成功,{day},V-3,,20001.00\n"
        + f"{d4.doc_number},成功,{day},V-4,,\n"
        + f"{d4.doc_number},失败,,,重复,\n"
        + ",成功,,,,\n"
        + "\n"
    )
    report = ops.import_bank_results(session, world.finance, batch, csv_text.encode("utf-8"))
    assert report.error is None and report.encoding == "utf-8"
    assert [r.decision_number for r in report.applied] == [d1.doc_number, d2.doc_number]
    assert [r.row for r in report.unmatched] == [4]
    assert [r.decision_number for r in report.amount_mismatches] == [d3.doc_number]
    assert "20001.00" in report.amount_mismatches[0].zh
    assert [r.row for r in report.duplicates] == [6, 7]
    assert [r.row for r in report.invalid] == [8]
    assert d1.application.state == "paid" and world.line(batch, d1).voucher_no == "V-1"
    assert world.line(batch, d2).status == "failed"
    assert world.line(batch, d3).status == "pending" and world.line(batch, d4).status == "pending"
    (ev,) = events(session, "batch.import_results")
    assert ev.data["applied"] == 2 and ev.data["duplicates"] == 2
    # The same file again changes nothing.
    again = ops.import_bank_results(session, world.finance, batch, csv_text.encode("utf-8"))
    assert not again.applied and len(again.unchanged) == 2


def test_import_accepts_gbk_and_bom_and_english_headers(session, world):
    d1 = world.approved()
    d2 = world.approved(cost="18000.00")
    batch = world.batch(lock=True)
    gbk = (HEADER + f"{d1.doc_number},退票,,,户名不符,\n").encode("gbk")
    report = ops.import_bank_results(session, world.finance, batch, gbk)
    assert report.encoding == "gbk" and len(report.applied) == 1
    assert world.line(batch, d1).status == "returned"
    english = f"Decision Number,Status,Date,Voucher\r\n{d2.doc_number},paid,{TODAY:%Y/%m/%d},X1\r\n"
    report = ops.import_bank_results(
        session, world.finance, batch, b"\xef\xbb\xbf" + english.encode("utf-8")
    )
    assert report.encoding == "utf-8-sig" and len(report.applied) == 1
    assert world.line(batch, d2).paid_on == TODAY and batch.status == "settled"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ("决定书文号,状态\n文号,成功\n".encode("utf-16"), "编码"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "编码"),
        (b"\xff\xfe\xfd", "编码"),
        (b"", "空"),
        ("编号,情况\n".encode(), "表头"),
        (b"number,amount\n1,2\n", "表头"),
    ],
)
def test_unreadable_files_are_refused_whole(session, world, data, needle):
    d1 = world.approved()
    batch = world.batch(lock=True)
    report = ops.import_bank_results(session, world.finance, batch, data)
    assert report.error is not None and needle in report.error["zh"]
    assert report.error["en"]
    assert not report.applied and world.line(batch, d1).status == "pending"


def test_import_flags_conflicts_and_paid_rows_without_voucher(session, world):
    d1 = world.approved()
    d2 = world.approved(cost="18000.00")
    batch = world.batch(lock=True)
    ops.record_line_result(session, world.finance, world.line(batch, d1), "failed", reason="x")
    data = (
        HEADER + f"{d1.doc_number},成功,{TODAY},V1,,\n" + f"{d2.doc_number},成功,{TODAY},,,\n"
    ).encode()
    report = ops.import_bank_results(session, world.finance, batch, data)
    assert [r.decision_number for r in report.conflicts] == [d1.doc_number]
    assert [r.decision_number for r in report.invalid] == [d2.doc_number]
    assert not report.applied


# ---------------------------------------------------------------- clawback and budget


def committed(session, call_id: int) -> int:
    return session.scalar(select(Call.committed_fen).where(Call.id == call_id))


def test_clawback_of_a_paid_award_releases_the_budget(session, world):
    d1 = world.approved()
    call_id = d1.application.call_id
    assert committed(session, call_id) == 2_500_000
    batch = world.batch(lock=True)
    ops.record_line_result(
        session, world.finance, world.line(batch, d1), "paid", paid_on=TODAY, voucher_no="V1"
    )
    claw = ops.record_clawback(
        session, world.finance, d1, 2_500_000, "虚假材料", recovered_on=TODAY
    )
    assert d1.application.state == "clawed_back"
    assert committed(session, call_id) == 0
    assert claw.amount_fen == 2_500_000 and claw.extra["retained_fen"] == 0
    (ev,) = events(session, "clawback.record")
    assert ev.entity_type == "clawback" and ev.reason == "虚假材料"
    ledger = session.scalars(
        select(BudgetLedgerEntry.kind).where(BudgetLedgerEntry.application_id == d1.application_id)
    ).all()
    assert ledger == ["reserve", "release"]


def test_partial_clawback_keeps_the_unrecovered_part_committed(session, world):
    d1 = world.approved()
    batch = world.batch(lock=True)
    ops.record_line_result(
        session, world.finance, world.line(batch, d1), "paid", paid_on=TODAY, voucher_no="V1"
    )
    ops.record_clawback(session, world.finance, d1, 1_000_000, "超出认证费用部分")
    assert committed(session, d1.application.call_id) == 1_500_000
    table = reconciliation(session, "call")
    (row,) = [r for r in table.rows if r["key_value"] == d1.application.call_id]
    assert row["clawed_back_fen"] == 1_000_000 and row["difference_fen"] == 0
    assert not row["flags"]


def test_clawback_rules(session, world):
    d1 = world.approved()
    with pytest.raises(ValidationFailed):
        ops.record_clawback(session, world.finance, d1, 100, "部分")  # unpaid: whole only
    with pytest.raises(ValidationFailed):
        ops.record_clawback(session, world.finance, d1, d1.amount_fen, "  ")
    with pytest.raises(PermissionDenied):
        ops.record_clawback(session, world.approver, d1, d1.amount_fen, "x")
    batch = world.batch()
    with pytest.raises(ops.BatchStateError) as exc:
        ops.record_clawback(session, world.finance, d1, d1.amount_fen, "撤销")
    assert batch.number in exc.value.zh
    ops.remove_line(session, world.finance, world.line(batch, d1))
    ops.record_clawback(session, world.finance, d1, d1.amount_fen, "撤销")
    assert d1.application.state == "clawed_back"
    assert committed(session, d1.application.call_id) == 0
    with pytest.raises(ops.BatchStateError):
        ops.record_clawback(session, world.finance, d1, d1.amount_fen, "again")


def test_paid_clawback_cannot_exceed_what_was_paid(session, world):
    d1 = world.approved()
    batch = world.batch(lock=True)
    ops.record_line_result(
        session, world.finance, world.line(batch, d1), "paid", paid_on=TODAY, voucher_no="V1"
    )
    with pytest.raises(ValidationFailed):
        ops.record_clawback(session, world.finance, d1, d1.amount_fen + 1, "x")
    assert session.scalars(select(Clawback)).all() == []


def test_finance_staff_cannot_review_or_approve(session, world):
    app = world.in_approval()
    with pytest.raises(PermissionDenied):
        fire(session, app, "approve", world.finance, today=TODAY)
    with pytest.raises(PermissionDenied):
        fire(session, app, "reject_at_approval", world.finance, reason="x", today=TODAY)
    assert app.state == "approval"


# ---------------------------------------------------------------- reports


def test_reconciliation_agrees_and_highlights_differences(session, world):
    d1 = world.approved(district="朝阳区")
    world.approved(district="南关区", cost="18000.00")
    in_notice = world.in_approval(district="南关区", cost="20000.00")
    fire(session, in_notice, "approve", world.approver, today=TODAY)
    batch = world.batch(lock=True)
    ops.record_line_result(
        session, world.finance, world.line(batch, d1), "paid", paid_on=TODAY, voucher_no="V1"
    )
    by_district = {r["key_value"]: r for r in reconciliation(session, "district").rows}
    nanguan = by_district["南关区"]
    assert nanguan["approved_fen"] == 1_800_000
    assert nanguan["in_notice_fen"] == 2_000_000
    assert nanguan["reserved_fen"] == 3_800_000
    assert nanguan["difference_fen"] == 0 and nanguan["unpaid_fen"] == 1_800_000
    chaoyang = by_district["朝阳区"]
    assert chaoyang["paid_fen"] == 2_500_000 and chaoyang["unpaid_fen"] == 0
    assert not chaoyang["flags"] and not nanguan["flags"]
    # A reservation that matches no decision (someone edited the ledger) is highlighted.
    session.add(
        BudgetLedgerEntry(
            call_id=d1.application.call_id,
            application_id=d1.application_id,
            kind="reserve",
            amount_fen=500,
        )
    )
    session.flush()
    table = reconciliation(session, "call")
    (row,) = [r for r in table.rows if r["key_value"] == d1.application.call_id]
    assert row["difference_fen"] == 500
    notes = [zh for zh, _en in row["flags"]]
    assert "预算占用与决定金额不一致" in notes
    assert "批次占用数与预算台账不一致" in notes
    assert table.csv_bytes()[:3] == b"\xef\xbb\xbf"
    programs = reconciliation(session, "program", "en").rows
    assert programs[0]["key"] == "IP management standard certification reward"


def test_dashboards(session, world):
    d1 = world.approved(district="朝阳区")
    world.approved(district="南关区", cost="18000.00")
    world.in_approval(district="南关区")
    batch = world.batch(lock=True)
    ops.record_line_result(
        session, world.finance, world.line(batch, d1), "paid", paid_on=TODAY, voucher_no="V1"
    )
    everything = DashboardFilters()
    stages = {r["key"]: r["count"] for r in applications_by_stage(session, everything).rows}
    assert stages["payment"] >= 1 and stages["decided"] >= 1 and stages["approval"] >= 1
    programs = {r["key"]: r for r in amounts_by_program(session, everything).rows}
    cert = programs["certification_reward"]
    assert cert["approved_fen"] >= 4_300_000 and cert["paid_fen"] >= 2_500_000
    only = DashboardFilters(district="南关区")
    (nanguan,) = amounts_by_district(session, only).rows
    assert nanguan["approved_fen"] == 1_800_000 and nanguan["paid_fen"] == 0
    months = {r["key"]: r for r in amounts_by_month(session, everything).rows}
    assert months[f"{TODAY:%Y-%m}"]["paid_fen"] >= 2_500_000
    times = {r["key"]: r for r in processing_time(session, everything).rows}
    assert {"draft", "eligibility", "approval", "notice"} <= set(times)
    assert all(r["avg_days"] >= 0 for r in times.values())
    csv_text = amounts_by_program(session, everything, "en").csv_bytes("en").decode("utf-8-sig")
    assert csv_text.splitlines()[0] == "Program,Approved (yuan),Paid (yuan)"
    year = DashboardFilters(year=TODAY.year + 5)
    assert amounts_by_program(session, year).rows == []


def test_budget_overview(session, world):
    d1 = world.approved()
    rows = {r["call"].id: r for r in ops.call_budgets(session)}
    row = rows[d1.application.call_id]
    assert row["committed_fen"] == d1.amount_fen
    assert row["left_fen"] == row["budget_fen"] - d1.amount_fen and row["paid_fen"] == 0
    summary = ops.awaiting_summary(session)
    assert summary["count"] >= 1 and summary["unbatched"] >= 1


def test_paid_amount_helper(session, world):
    d1 = world.approved()
    assert ops.paid_amount(session, d1) == 0
    assert ops.find_decision(session, f" {d1.doc_number} ") == d1
    assert Decimal(d1.amount_fen) / 100 == Decimal("25000")
    assert session.get(User, world.finance.id).roles() == {"finance"}


# ---------------------------------------------------------------- routes


@pytest.fixture
def locked(session, world):
    """A locked batch of two lines (朝阳区 25,000 and 南关区 18,000)."""
    d1 = world.approved(district="朝阳区")
    d2 = world.approved(district="南关区", cost="18000.00")
    batch = world.batch(lock=True)
    # Committed (a savepoint inside the test's transaction): a refused request rolls
    # back to here, as a real request rolls back to its start.
    session.commit()
    return batch, d1, d2


@pytest.fixture
def client(client):
    """The conftest client, with a fresh ``g`` per request: the ``session`` fixture keeps
    one app context for the whole test and requests reuse it, so Flask-Login's cached
    user and the hooks' ``g.rolled_back`` would leak from one request into the next."""
    from flask import g

    original = client.open

    def open_fresh(*args: Any, **kwargs: Any):
        for key in ("_login_user", "rolled_back"):
            g.pop(key, None)
        return original(*args, **kwargs)

    client.open = open_fresh
    return client


def login(client: Any, user: User | None) -> None:
    """Log in as ``user`` (None: log out)."""
    from tests.conftest import login as conftest_login

    with client.session_transaction() as sess:
        sess.clear()
    if user is not None:
        conftest_login(client, user)


def people(world, make) -> dict[str, Any]:
    return {
        "finance": world.finance,
        "approver": world.approver,
        "admin": make.user("admin"),
        "city_officer": world.city,
        "applicant": make.applicant(),
        "anonymous": None,
    }


READ = {"finance": 200, "approver": 200, "admin": 200, "city_officer": 403, "applicant": 403}
MANAGE = {"finance": 200, "approver": 403, "admin": 403, "city_officer": 403, "applicant": 403}


def test_access_matrix(client, session, world, make, locked):
    batch, d1, _d2 = locked
    line = world.line(batch, d1)
    b = f"/finance/batches/{batch.id}"
    gets = {
        "/finance/": READ,
        "/finance/batches": READ,
        f"{b}": READ,
        "/finance/clawbacks": READ,
        "/finance/reconciliation": READ,
        "/finance/reconciliation.csv": READ,
        "/finance/dashboards": READ,
        "/finance/dashboards/programs.csv": READ,
        "/finance/batches/new": MANAGE,
        f"{b}/export.csv": MANAGE,
        f"{b}/export.xlsx": MANAGE,
        f"{b}/import": MANAGE,
        f"{b}/lines/{line.id}/result": MANAGE,
    }
    posts = {
        "/finance/batches/new": None,
        f"{b}/lock": None,
        f"{b}/discard": None,
        f"{b}/rebatch": None,
        f"{b}/lines/{line.id}/remove": None,
        f"{b}/lines/{line.id}/result": None,
        f"{b}/import": None,
        "/finance/clawbacks": None,
        f"{b}/verify": {"approver": 302, "admin": 302},
    }
    seen = []
    for role, user in people(world, make).items():
        login(client, user)
        for url, expected in gets.items():
            status = client.get(url).status_code
            want = 302 if user is None else expected[role]
            seen.append((role, "GET", url, status, want))
        for url, special in posts.items():
            if role == "finance":
                continue  # the finance paths are exercised one by one below
            status = client.post(url, data={}).status_code
            want = 302 if user is None else (special or {}).get(role, 403)
            seen.append((role, "POST", url, status, want))
    wrong = [s for s in seen if s[3] != s[4]]
    assert wrong == []
    assert batch.status == "locked" and world.line(batch, d1).status == "pending"


def test_anonymous_users_are_sent_to_login(client, locked):
    response = client.get("/finance/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_bad_ids_are_404(client, session, world, locked):
    batch, d1, _ = locked
    other = world.approved(cost="12000.00")
    second = ops.build_batch(session, world.finance, ops.BatchFilters())
    foreign = world.line(second, other)
    session.commit()
    login(client, world.finance)
    assert client.get("/finance/batches/999999").status_code == 404
    assert client.get("/finance/batches/abc").status_code == 404
    assert client.get(f"/finance/batches/{batch.id}/lines/{foreign.id}/result").status_code == 404
    assert client.post(f"/finance/batches/{batch.id}/lines/{foreign.id}/remove").status_code == 404
    assert client.get("/finance/dashboards/secrets.csv").status_code == 404


def test_build_lock_export_and_settle_through_the_pages(client, session, world):
    d1 = world.approved(district="朝阳区")
    d2 = world.approved(district="南关区", cost="18000.00")
    session.commit()
    login(client, world.finance)
    page = client.get("/finance/batches/new", query_string={"district": "南关区"})
    assert page.status_code == 200
    assert "符合条件：1 笔，合计 ¥18,000.00。" in page.get_data(as_text=True)
    response = client.post("/finance/batches/new", data={"district": "", "program": ""})
    assert response.status_code == 302
    batch = session.scalar(select(DisbursementBatch).order_by(DisbursementBatch.id.desc()))
    assert response.headers["Location"].endswith(f"/finance/batches/{batch.id}")
    detail = client.get(f"/finance/batches/{batch.id}").get_data(as_text=True)
    assert d1.doc_number in detail and d2.doc_number in detail
    # Draft: exports are refused, lines can be removed.
    assert client.get(f"/finance/batches/{batch.id}/export.csv").status_code == 409
    line2 = world.line(batch, d2)
    assert client.post(f"/finance/batches/{batch.id}/lines/{line2.id}/remove").status_code == 302
    assert client.post(f"/finance/batches/{batch.id}/lock").status_code == 302
    session.refresh(batch)
    assert batch.status == "locked" and batch.line_count == 1
    again = client.post(f"/finance/batches/{batch.id}/lock")
    assert again.status_code == 409 and "已锁定" in again.get_data(as_text=True)
    assert client.post(f"/finance/batches/{batch.id}/verify").status_code == 302
    csv_response = client.get(f"/finance/batches/{batch.id}/export.csv")
    assert csv_response.status_code == 200
    assert batch.number in csv_response.headers["Content-Disposition"]
    body = csv_response.get_data()
    assert body.startswith(b"\xef\xbb\xbf") and d1.doc_number.encode() in body
    xlsx = client.get(f"/finance/batches/{batch.id}/export.xlsx")
    assert xlsx.status_code == 200 and xlsx.get_data()[:2] == b"PK"
    assert {e.data["format"] for e in events(session, "batch.export")} == {"csv", "xlsx"}
    # The result form: incomplete, then complete.
    line1 = world.line(batch, d1)
    url = f"/finance/batches/{batch.id}/lines/{line1.id}/result"
    assert client.get(url).status_code == 200
    bad = client.post(url, data={"status": "paid", "paid_on": TODAY.isoformat()})
    assert bad.status_code == 422
    text_bad = bad.get_data(as_text=True)
    assert "已支付须填写凭证号。" in text_bad and 'aria-describedby="voucher_no-error' in text_bad
    assert TODAY.isoformat() in text_bad  # nothing typed is lost
    ok = client.post(url, data={"status": "paid", "paid_on": TODAY.isoformat(), "voucher_no": "V9"})
    assert ok.status_code == 302
    session.refresh(batch)
    assert batch.status == "settled" and d1.application.state == "paid"
    assert "已办结" in client.get(f"/finance/batches/{batch.id}").get_data(as_text=True)


def test_tampered_batch_is_not_exported(client, session, world, locked):
    batch, d1, _ = locked
    session.execute(
        update(DisbursementLine)
        .where(DisbursementLine.id == world.line(batch, d1).id)
        .values(amount_fen=1)
    )
    session.commit()
    login(client, world.finance)
    response = client.get(f"/finance/batches/{batch.id}/export.xlsx")
    assert response.status_code == 409
    assert "锁定后被改动" in response.get_data(as_text=True)
    verify = client.post(f"/finance/batches/{batch.id}/verify", follow_redirects=True)
    assert "批次明细（文号、金额或收款账户）在锁定后被改动。" in verify.get_data(as_text=True)


def test_import_page_reports_what_did_not_match(client, session, world, locked):
    import io

    batch, d1, d2 = locked
    login(client, world.finance)
    url = f"/finance/batches/{batch.id}/import"
    assert client.get(url).status_code == 200
    assert client.post(url, data={}).status_code == 422
    data = (HEADER + f"{d1.doc_number},成功,{TODAY},V1,,\n未知文号,成功,{TODAY},V2,,\n").encode(
        "gbk"
    )
    response = client.post(
        url, data={"file": (io.BytesIO(data), "bank.csv")}, content_type="multipart/form-data"
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "已登记 1 笔" in page and "未知文号" in page and "本批次中没有该决定书文号。" in page
    assert world.line(batch, d1).status == "paid"
    refused = client.post(
        url,
        data={"file": (io.BytesIO("x".encode("utf-16")), "bank.csv")},
        content_type="multipart/form-data",
    )
    assert refused.status_code == 422 and "无法识别文件编码" in refused.get_data(as_text=True)
    xlsx = client.post(
        url, data={"file": (io.BytesIO(b"PK"), "bank.xlsx")}, content_type="multipart/form-data"
    )
    assert xlsx.status_code == 422 and "请上传CSV文件。" in xlsx.get_data(as_text=True)
    assert world.line(batch, d2).status == "pending"


def test_rebatch_through_the_page(client, session, world, locked):
    batch, d1, _ = locked
    login(client, world.finance)
    assert client.post(f"/finance/batches/{batch.id}/rebatch").status_code == 422
    ops.record_line_result(session, world.finance, world.line(batch, d1), "failed", reason="x")
    session.commit()
    response = client.post(f"/finance/batches/{batch.id}/rebatch")
    assert response.status_code == 302
    new = session.scalar(select(DisbursementBatch).order_by(DisbursementBatch.id.desc()))
    assert new.id != batch.id and response.headers["Location"].endswith(f"/{new.id}")


def test_clawback_form(client, session, world, locked):
    batch, d1, _ = locked
    ops.record_line_result(
        session, world.finance, world.line(batch, d1), "paid", paid_on=TODAY, voucher_no="V1"
    )
    session.commit()
    login(client, world.finance)
    empty = client.post("/finance/clawbacks", data={})
    assert empty.status_code == 422 and "请填写追回原因。" in empty.get_data(as_text=True)
    unknown = client.post(
        "/finance/clawbacks", data={"decision_number": "无此文号", "amount": "10", "reason": "x"}
    )
    assert unknown.status_code == 422 and "没有该文号的决定书。" in unknown.get_data(as_text=True)
    too_much = client.post(
        "/finance/clawbacks",
        data={"decision_number": d1.doc_number, "amount": "25000.01", "reason": "虚假"},
    )
    assert too_much.status_code == 422 and "不超过已拨付金额" in too_much.get_data(as_text=True)
    assert 'value="25000.01"' in too_much.get_data(as_text=True)
    ok = client.post(
        "/finance/clawbacks",
        data={
            "decision_number": d1.doc_number,
            "amount": "25000",
            "reason": "虚假",
            "recovered_on": TODAY.isoformat(),
        },
    )
    assert ok.status_code == 302
    assert d1.application.state == "clawed_back"
    assert committed(session, d1.application.call_id) == 1_800_000
    assert d1.doc_number in client.get("/finance/clawbacks").get_data(as_text=True)


def test_report_pages_and_bad_parameters(client, session, world, locked):
    login(client, world.approver)
    for group in ("program", "call", "district"):
        assert (
            client.get("/finance/reconciliation", query_string={"group": group}).status_code == 200
        )
    odd = client.get("/finance/reconciliation", query_string={"group": "'; drop"})
    assert odd.status_code == 200 and "未知的汇总方式" in odd.get_data(as_text=True)
    csv_body = client.get("/finance/reconciliation.csv?group=district").get_data()
    assert csv_body.startswith(b"\xef\xbb\xbf") and "南关区".encode() in csv_body
    page = client.get("/finance/dashboards", query_string={"district": "南关区"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and html.count("<svg") == 5 and "<title id=" in html
    bad = client.get("/finance/dashboards", query_string={"year": "1900", "program": "<x>"})
    assert bad.status_code == 200 and "部分筛选条件无效，已忽略。" in bad.get_data(as_text=True)
    assert "<x>" not in bad.get_data(as_text=True)
    # Whitespace-only selects pass Optional(); they must be ignored, not parsed (found by
    # tests/test_fuzz_http.py: year="\r" raised in int()).
    for blank in ("\r", " ", "\t\n"):
        page = client.get("/finance/dashboards", query_string={"year": blank, "program": blank})
        assert page.status_code == 200
        assert (
            client.get("/finance/dashboards/months.csv", query_string={"year": blank}).status_code
            == 200
        )
    for name in ("stages", "programs", "districts", "months", "processing"):
        response = client.get(
            f"/finance/dashboards/{name}.csv", query_string={"district": "南关区"}
        )
        assert response.status_code == 200 and response.get_data().startswith(b"\xef\xbb\xbf")
    bad_filters = client.get("/finance/batches/new?issued_from=nonsense&call=abc")
    assert bad_filters.status_code == 403  # approvers do not build batches
    login(client, world.finance)
    assert client.get("/finance/batches/new", query_string={"call": "\r"}).status_code == 200
    ignored = client.get("/finance/batches/new?issued_from=nonsense&call=abc&page=-3")
    assert ignored.status_code == 200 and "部分筛选条件无效，已忽略。" in ignored.get_data(
        as_text=True
    )
    assert client.get("/finance/batches?status=weird&page=99").status_code == 200


def test_read_only_viewers_see_masked_accounts(client, session, world, locked):
    batch, d1, _ = locked
    account = d1.application.organization.bank_account_no
    login(client, world.approver)
    page = client.get(f"/finance/batches/{batch.id}").get_data(as_text=True)
    assert account not in page and f"•••• {account[-4:]}" in page
    assert "导出Excel" not in page and "登记结果" not in page
    login(client, world.finance)
    assert account in client.get(f"/finance/batches/{batch.id}").get_data(as_text=True)


def test_english_pages(client, world, locked):
    from webapp.i18n import compile_catalog

    compile_catalog()
    login(client, world.finance)
    page = client.get("/finance/?lang=en").get_data(as_text=True)
    assert "Disbursement overview" in page and "资金拨付概览" not in page
    page = client.get("/finance/dashboards?lang=en").get_data(as_text=True)
    assert "Applications per stage" in page


# ---------------------------------------------------------------- charts


def test_charts_escape_labels_and_are_described():
    from webapp.charts import bar_chart, line_chart, nice_ticks

    rows = [
        {"label": '<script>alert("x")</script>', "a": 3, "b": 1},
        {"label": "朝阳区 & 南关区", "a": 0, "b": 2},
    ]
    svg = str(
        bar_chart(
            rows,
            chart_id="c1",
            label_key="label",
            series=[("a", "决定<金额>"), ("b", "已拨付")],
            title="标题 <b>",
            desc="说明 & 数据",
        )
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "朝阳区 &amp; 南关区" in svg and "决定&lt;金额&gt;" in svg
    assert 'role="img"' in svg and 'aria-labelledby="c1-title c1-desc"' in svg
    assert '<title id="c1-title">标题 &lt;b&gt;</title>' in svg
    assert '<desc id="c1-desc">说明 &amp; 数据</desc>' in svg
    assert svg.count("<rect") == 2 + 4  # legend swatches + bars
    assert "style=" not in svg  # the CSP allows no inline styles
    line = str(
        line_chart(
            [{"m": "2026-01", "v": 5}, {"m": "2026-02", "v": 7}],
            chart_id="c2",
            label_key="m",
            series=[("v", "金额")],
            title="t",
            desc="d",
        )
    )
    assert "<polyline" in line and line.count("<circle") == 2
    empty = str(
        line_chart(
            [],
            chart_id="c3",
            label_key="m",
            series=[("v", "金额")],
            title="t",
            desc="d",
            empty_text="暂无数据",
        )
    )
    assert "暂无数据" in empty
    assert nice_ticks(3, integer=True) == (3.0, 1.0)
    assert nice_ticks(65_000) == (80_000.0, 20_000.0)
    assert nice_ticks(0) == (1.0, 0.25)
