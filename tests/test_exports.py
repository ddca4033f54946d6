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
from workflow import export_lines, exports
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


# ---------------------------------------------------------------- the fast paths


def test_capitals_are_rmb_upper_for_every_pattern_of_sections_and_endings():
    """``Capitals`` (cached words, endings from a table) writes what ``rmb_upper`` writes:
    every ending (0-99 fen) after a whole part that does or does not end in 0, and whole
    parts with every kind of zero run inside and between the 万 and 亿 sections."""
    import random

    wholes = [1, 2, 9, 10, 11, 20, 100, 101, 110, 1000, 1001, 1010, 1100, 9999]
    wholes += [10_000, 10_001, 10_010, 10_100, 11_000, 100_000, 100_001, 107_000]
    wholes += [1_000_000, 10_000_000, 10_010_000, 99_999_999, 100_000_000, 100_000_001]
    wholes += [100_010_000, 1_000_000_000_000, 9_999_999_999_999_999]
    rng = random.Random(2026)
    wholes += [rng.randrange(1, 10 ** rng.randrange(2, 16)) for _ in range(2000)]
    capitals = export_lines.Capitals()
    for whole in wholes:
        for cents in range(100):
            fen = whole * 100 + cents
            assert capitals.upper(fen) == rmb_upper(Decimal(fen) / 100), fen
    for fen in range(0, 100):  # below one yuan: rmb_upper itself
        assert capitals.upper(fen) == rmb_upper(Decimal(fen) / 100)
    for refused in (-1, 10**18):  # as rmb_upper refuses them
        with pytest.raises(ValueError):
            capitals.upper(refused)


def test_lock_hash_line_is_the_canonical_json_of_the_line():
    from workflow.audit import canonical

    strings = ['长春"引号",逗号', "back\\slash", "tab\tnew\nline\r\x01", "\u2028 emoji 😀", ""]
    for text in strings:
        payee = dict.fromkeys(ops.HASHED_PAYEE_KEYS, text)
        line = ops.lock_hash_line(text, 1234, *payee.values())
        assert line == canonical([text, 1234, payee]) + "\n"
    odd = {"name": None, "credit_code": 5, "bank_name": "x", "bank_account_name": True}
    odd["bank_account_no"] = "1"
    line = ops.lock_hash_line("文号", 7, *odd.values())
    assert line == canonical(["文号", 7, odd]) + "\n"


TRICKY = [
    '长春"引号",逗号有限公司',
    "换行\n与回车\r的名称",
    "A&B <公司> 'x'",
    " 前后有空格 ",
    "\u3000全角空格",
    "控制字符\x01\x1f",
    "_x0041_ 像转义",
    "表情😀 与 \ufffe",
]


@pytest.fixture
def tricky_batch(session, world: FinanceWorld):
    """A locked batch whose payees hold what a CSV or XLSX writer must escape."""
    decisions = [world.approved(cost=f"{10000 + i}.0{i % 10}") for i in range(len(TRICKY))]
    for decision, name in zip(decisions, TRICKY, strict=True):
        decision.application.organization.name = name
        decision.application.organization.bank_name = name[::-1]
    session.flush()
    batch = world.batch(lock=True)
    session.commit()
    return batch, decisions


def reference_rows(decisions: list[Decision]) -> list[tuple[list[str], int]]:
    return [(expected_row(d), d.amount_fen) for d in decisions]


def reference_csv(rows: list[tuple[list[str], int]], count: int, total: int) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADER)
    writer.writerows(values for values, _fen in rows)
    writer.writerow(exports.totals_values(count, total))
    return b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8")


def reference_xlsx(name: str, rows: list[tuple[list[str], int]], total: int) -> bytes:
    """The workbook as xlsxwriter writes it cell by cell (the export before issue 9)."""
    import xlsxwriter

    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(buffer, {"constant_memory": True})
    sheet = workbook.add_worksheet(name)
    bold = workbook.add_format({"bold": True, "bg_color": "#F2F2F2", "border": 1})
    money = workbook.add_format({"num_format": "#,##0.00"})
    money_bold = workbook.add_format({"num_format": "#,##0.00", "bold": True, "top": 1})
    total_text = workbook.add_format({"bold": True, "top": 1})
    for index, width in enumerate([36, 22, 28, 36, 24, 14, 36, 28, 30, 30, 12]):
        sheet.set_column(index, index, width)
    sheet.freeze_panes(1, 0)
    for col, title in enumerate(HEADER):
        sheet.write_string(0, col, title, bold)
    for row_no, (values, fen) in enumerate(rows, start=1):
        for col, value in enumerate(values):
            if col == 5:
                sheet.write_number(row_no, col, float(Decimal(fen) / 100), money)
            else:
                sheet.write_string(row_no, col, value)
    last = len(rows) + 1
    totals = exports.totals_values(len(rows), total)
    sheet.write_string(last, 0, totals[0], total_text)
    sheet.write_string(last, 1, totals[1], total_text)
    sheet.write_formula(last, 5, f"=SUM(F2:F{last})", money_bold, float(Decimal(total) / 100))
    sheet.write_string(last, 6, totals[6], total_text)
    workbook.close()
    return buffer.getvalue()


def zip_parts(data: bytes) -> dict[str, bytes]:
    """The parts of a workbook, without the creation time xlsxwriter stamps on it."""
    import re
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    parts["docProps/core.xml"] = re.sub(
        rb"\d{4}-\d\d-\d\dT[\d:]+Z", b"", parts["docProps/core.xml"]
    )
    return parts


def test_files_are_byte_for_byte_what_the_writers_give_cell_by_cell(session, tricky_batch):
    """The CSV is what csv.writer writes; every part of the XLSX (sheet, styles, the lot)
    is what xlsxwriter writes cell by cell, escapes of the tricky names included."""
    batch, decisions = tricky_batch
    rows = reference_rows(decisions)
    total = sum(fen for _values, fen in rows)
    data = b"".join(exports.csv_chunks(session, batch, chunk=3))
    assert data == reference_csv(rows, len(rows), total)
    buffer = io.BytesIO()
    assert exports.write_xlsx(session, batch, buffer, chunk=3) == (len(rows), total)
    want = zip_parts(reference_xlsx(batch.number, rows, total))
    got = zip_parts(buffer.getvalue())
    assert list(got) == list(want)
    for name in want:
        assert got[name] == want[name], name
    sheet = load_workbook(io.BytesIO(buffer.getvalue())).active
    names = [sheet.cell(row=r, column=1).value for r in range(2, len(rows) + 2)]
    # openpyxl keeps Excel's _xHHHH_ escapes of control characters as they are
    assert [names[i] for i in (0, 2, 3, 4)] == [TRICKY[i] for i in (0, 2, 3, 4)]


def test_a_value_that_looks_like_rich_text_stays_text(session, world):
    """xlsxwriter would pass ``<r>…</r>`` into the sheet unescaped; here it is text."""
    decision = world.approved()
    decision.application.organization.name = "<r><t>注入</t></r>"
    session.flush()
    batch = world.batch(lock=True)
    buffer = io.BytesIO()
    exports.write_xlsx(session, batch, buffer)
    sheet = load_workbook(io.BytesIO(buffer.getvalue())).active
    assert sheet.cell(row=2, column=1).value == "<r><t>注入</t></r>"


def built(session: Any, batch: DisbursementBatch, fmt: str, **kwargs: Any) -> bytes:
    buffer = io.BytesIO()
    exports.build_file(session, batch, fmt, buffer, **kwargs)
    return buffer.getvalue()


def test_build_file_checks_the_lines_it_writes_against_the_lock_hash(session, paid_batch):
    batch, decisions = paid_batch
    seen: list[int] = []
    data = built(session, batch, "csv", progress=seen.append, chunk=2)
    assert data == b"".join(exports.csv_chunks(session, batch))
    assert seen == [2, 3]  # after each chunk
    assert built(session, batch, "xlsx")[:2] == b"PK"
    line = session.scalar(
        select(DisbursementLine).where(DisbursementLine.decision_id == decisions[1].id)
    )
    line.payee = {**line.payee, "bank_account_no": "6222000000000000000"}
    session.flush()
    assert ops.verify_batch(session, batch).ok is False  # the verify button agrees
    for fmt in ("csv", "xlsx"):
        with pytest.raises(exports.BatchChanged):
            built(session, batch, fmt)


@pytest.mark.parametrize("change", ["amount", "extra line", "removed line", "draft"])
def test_build_file_refuses_a_batch_that_is_not_what_was_locked(session, world, paid_batch, change):
    batch, decisions = paid_batch
    line = session.scalar(
        select(DisbursementLine).where(DisbursementLine.decision_id == decisions[0].id)
    )
    if change == "amount":
        line.amount_fen += 1
    elif change == "extra line":
        session.execute(
            insert(DisbursementLine).values(
                batch_id=batch.id,
                decision_id=world.approved().id,
                amount_fen=100,
                payee=line.payee,
                status="pending",
            )
        )
    elif change == "removed line":
        session.delete(line)
    else:
        batch.lock_hash = None
    session.flush()
    for fmt in ("csv", "xlsx"):
        with pytest.raises(exports.BatchChanged):
            built(session, batch, fmt)
