"""Payment files: CSV and XLSX read back and compared line by line (amounts, capitals,
BOM, totals row, file names), and streaming in constant memory."""

from __future__ import annotations

import csv
import io
import tracemalloc
from decimal import Decimal
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import event, insert, select

from tests.test_finance import FinanceWorld, login
from tests.test_finance import client as client  # noqa: F401,PLC0414 (fresh g per request)
from tests.test_finance import world as world  # noqa: F401,PLC0414 (the fixture)
from workflow import exports
from workflow.domain import rmb_upper
from workflow.models import Decision, DisbursementBatch, DisbursementLine
from workflow.operations import finance as ops

HEADER = [
    "收款单位",
    "统一社会信用代码",
    "开户银行",
    "账户名称",
    "银行账号",
    "金额（元）",
    "金额大写",
    "决定书文号",
    "项目",
    "申报批次",
    "区县",
]


@pytest.fixture
def paid_batch(session, world: FinanceWorld):
    """A locked batch of three real decisions with amounts that have jiao and fen."""
    decisions = [
        world.approved(district="朝阳区", cost="25000.00"),
        world.approved(district="南关区", cost="12345.67"),
        world.approved(district="绿园区", cost="10000.05"),
    ]
    decisions[1].application.organization.bank_account_no = "4200201109000012345"
    decisions[1].application.organization.name = '长春"引号",逗号有限公司'
    session.flush()
    batch = world.batch(lock=True)
    session.commit()
    return batch, decisions


def csv_rows(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def expected_row(decision: Decision) -> list[str]:
    org = decision.application.organization
    amount = Decimal(decision.amount_fen) / 100
    return [
        org.name,
        org.credit_code,
        org.bank_name,
        org.bank_account_name,
        org.bank_account_no,
        f"{amount:.2f}",
        rmb_upper(amount),
        decision.doc_number,
        "知识产权管理规范贯标认证奖励",
        decision.application.call.title,
        decision.application.district,
    ]


def test_csv_reads_back_line_by_line(session, paid_batch):
    batch, decisions = paid_batch
    rows = csv_rows(b"".join(exports.csv_chunks(session, batch)))
    assert rows[0] == HEADER
    assert rows[1:4] == [expected_row(d) for d in decisions]
    assert rows[2][6] == "人民币壹万贰仟叁佰肆拾伍元陆角柒分"
    assert rows[3][6] == "人民币壹万元零伍分"
    assert rows[2][4] == "4200201109000012345"  # the account number is kept whole
    assert rows[2][0] == '长春"引号",逗号有限公司'
    total = sum(d.amount_fen for d in decisions)
    assert rows[4][:7] == ["合计", "3笔", "", "", "", "47345.72", rmb_upper(Decimal(total) / 100)]
    assert len(rows) == 5


def test_xlsx_reads_back_line_by_line(session, paid_batch):
    batch, decisions = paid_batch
    buffer = io.BytesIO()
    count, total = exports.write_xlsx(session, batch, buffer)
    assert (count, total) == (3, sum(d.amount_fen for d in decisions))
    buffer.seek(0)
    sheet = load_workbook(buffer).active
    assert sheet.title == batch.number
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows[0] == HEADER
    for row, decision in zip(rows[1:4], decisions, strict=True):
        want = expected_row(decision)
        assert row[5] == pytest.approx(float(want[5]), abs=0.001)
        assert Decimal(str(row[5])).quantize(Decimal("0.01")) == Decimal(want[5])
        row[5] = want[5]
        assert row == want
    assert isinstance(rows[2][4], str) and rows[2][4] == "4200201109000012345"
    assert rows[4][0] == "合计" and rows[4][1] == "3笔"
    assert rows[4][5] == "=SUM(F2:F4)"
    assert rows[4][6] == "人民币肆万柒仟叁佰肆拾伍元柒角贰分"
    buffer.seek(0)
    cached = load_workbook(buffer, data_only=True).active
    assert cached.cell(row=5, column=6).value == pytest.approx(47345.72)
    assert len(rows) == 5


def test_download_routes_name_the_file_after_the_batch(client, session, world, paid_batch):
    batch, decisions = paid_batch
    login(client, world.finance)
    response = client.get(f"/finance/batches/{batch.id}/export.csv")
    disposition = response.headers["Content-Disposition"]
    assert response.mimetype == "text/csv"
    assert f'filename="disbursement-{batch.number}.csv"' in disposition
    assert "filename*=UTF-8''" in disposition and batch.number in disposition
    rows = csv_rows(response.get_data())
    assert rows[1:4] == [expected_row(d) for d in decisions]
    response = client.get(f"/finance/batches/{batch.id}/export.xlsx")
    assert f"disbursement-{batch.number}.xlsx" in response.headers["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(response.get_data())).active
    assert [c.value for c in sheet[2]][7] == decisions[0].doc_number


def test_an_empty_batch_still_has_a_header_and_totals(session, world):
    batch = DisbursementBatch(number="ZF2099-0001", status="locked", created_by_id=world.finance.id)
    session.add(batch)
    session.flush()
    rows = csv_rows(b"".join(exports.csv_chunks(session, batch)))
    assert rows == [HEADER, ["合计", "0笔", "", "", "", "0.00", "人民币零元整"] + [""] * 4]
    buffer = io.BytesIO()
    assert exports.write_xlsx(session, batch, buffer) == (0, 0)


# ---------------------------------------------------------------- streaming


def synthetic_batch(
    session: Any, decision: Decision, n: int, year: int = 2099
) -> DisbursementBatch:
    """``n`` lines on ``n`` generated decisions of one real application (fast bulk
    inserts: what matters to an export is the rows, not how they were approved)."""
    app = decision.application
    payee = ops.payee_of(app.organization, app.district)
    session.execute(
        insert(Decision),
        [
            {
                "application_id": app.id,
                "kind": "approval",
                "doc_prefix": "测试",
                "doc_year": year,
                "doc_seq": i,
                "doc_number": f"测试〔{year}〕{i}号",
                "amount_fen": 100_000 + i,
                "template": "decision_approval.html",
                "render_data": {},
                "verification_code": f"T{year}{i:011d}",
                "status": "issued",
            }
            for i in range(1, n + 1)
        ],
    )
    batch = DisbursementBatch(
        number=f"ZF{year}-{n:06d}", status="locked", created_by_id=None, filters={}
    )
    session.add(batch)
    session.flush()
    ids = session.scalars(
        select(Decision.id)
        .where(Decision.doc_prefix == "测试", Decision.doc_year == year)
        .order_by(Decision.id)
    ).all()
    session.execute(
        insert(DisbursementLine),
        [
            {
                "batch_id": batch.id,
                "decision_id": did,
                "amount_fen": 100_000 + i,
                "payee": payee,
                "status": "pending",
            }
            for i, did in enumerate(ids, start=1)
        ],
    )
    ops._refresh_totals(session, batch)
    session.flush()
    session.expire_all()
    return batch


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_exports_stream_in_constant_memory(session, world):
    """Peak Python memory of an export of 5,000 lines is about that of 1,000 lines (and
    far below what holding the rows would take): rows are read and written in chunks."""
    decision = world.approved()
    small = synthetic_batch(session, decision, 1_000, year=2098)
    big = synthetic_batch(session, decision, 5_000, year=2099)

    def consume_csv(batch: DisbursementBatch) -> None:
        assert sum(len(c) for c in exports.csv_chunks(session, batch, chunk=500)) > 100_000

    def write_xlsx(batch: DisbursementBatch) -> None:
        exports.xlsx_file(session, batch, chunk=500).close()

    # Warm-up (compiled SQL cache, the program definition) outside the measurement.
    consume_csv(small)
    peaks = {
        (kind, n): peak_bytes(lambda fn=fn, b=b: fn(b))
        for kind, fn in (("csv", consume_csv), ("xlsx", write_xlsx))
        for n, b in ((1_000, small), (5_000, big))
    }
    for kind in ("csv", "xlsx"):
        assert peaks[(kind, 5_000)] < peaks[(kind, 1_000)] * 1.5 + 512 * 1024, peaks
        assert peaks[(kind, 5_000)] < 6 * 1024 * 1024, peaks


def test_csv_yields_before_the_last_rows_are_read(session, world):
    decision = world.approved()
    batch = synthetic_batch(session, decision, 1000)
    queries: list[str] = []

    def count(conn, cursor, statement, *args: Any) -> None:
        if "FROM disbursement_lines" in statement:
            queries.append(statement)

    bind = session.get_bind()
    event.listen(bind, "before_cursor_execute", count)
    try:
        stream = exports.csv_chunks(session, batch, chunk=100)
        header = next(stream)
        assert header.startswith(b"\xef\xbb\xbf") and queries == []
        first = next(stream)
        assert first.count(b"\r\n") == 100
        assert len(queries) == 1  # one chunk read, nine still in the database
        rest = list(stream)
        assert len(queries) == 11  # ten chunks and the empty one that ends the loop
        assert rest[-1].startswith("合计,1000笔".encode())
    finally:
        event.remove(bind, "before_cursor_execute", count)
