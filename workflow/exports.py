"""Payment files of a disbursement batch: CSV and XLSX with what a treasury or bank needs.

Columns: payee, credit code, bank, account name, account number, amount in figures,
amount in Chinese capitals (大写), decision number, program, call, district; then a
totals row. Both formats stream in constant memory:

* rows are read in chunks keyed by line id (``WHERE id > last ORDER BY id LIMIT n``):
  every chunk is a short query, so no cursor or transaction stays open while a slow
  client downloads, and at most one chunk of rows is in memory;
* the CSV is produced as a generator of byte chunks (UTF-8 with BOM so Excel shows the
  Chinese correctly; values are plain text so a bank system can import the file —
  Excel users who need to keep 19-digit account numbers intact should use the XLSX,
  where they are text cells);
* the XLSX is written by xlsxwriter with ``constant_memory=True`` (each row goes to a
  temporary file as soon as it is written) into a temporary file, which is then streamed.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import IO

from sqlalchemy import select
from sqlalchemy.orm import Session

from .domain import rmb_upper, yuan
from .engine import compiled
from .models import Application, Call, Decision, DisbursementBatch, DisbursementLine

CHUNK = 2000
BOM = b"\xef\xbb\xbf"

COLUMNS: list[tuple[str, str, str]] = [
    ("payee", "收款单位", "Payee"),
    ("credit_code", "统一社会信用代码", "Credit code"),
    ("bank_name", "开户银行", "Bank"),
    ("account_name", "账户名称", "Account name"),
    ("account_no", "银行账号", "Account number"),
    ("amount", "金额（元）", "Amount (yuan)"),
    ("amount_upper", "金额大写", "Amount in capitals"),
    ("decision_number", "决定书文号", "Decision number"),
    ("program", "项目", "Program"),
    ("call", "申报批次", "Call"),
    ("district", "区县", "District"),
]


@dataclass(slots=True)
class ExportRow:
    payee: str
    credit_code: str
    bank_name: str
    account_name: str
    account_no: str
    amount_fen: int
    decision_number: str
    program: str
    call: str
    district: str

    @property
    def amount(self) -> Decimal:
        return yuan(self.amount_fen)

    def values(self) -> list[str]:
        return [
            self.payee,
            self.credit_code,
            self.bank_name,
            self.account_name,
            self.account_no,
            f"{self.amount:.2f}",
            rmb_upper(self.amount),
            self.decision_number,
            self.program,
            self.call,
            self.district,
        ]


def file_name(batch: DisbursementBatch, extension: str) -> str:
    return f"拨付清单-{batch.number}.{extension}"


def ascii_file_name(batch: DisbursementBatch, extension: str) -> str:
    return f"disbursement-{batch.number}.{extension}"


def batch_rows(session: Session, batch_id: int, chunk: int = CHUNK) -> Iterator[ExportRow]:
    """The batch's lines in id order, read ``chunk`` at a time."""
    programs: dict[int, str] = {}
    last_id = 0
    while True:
        rows = session.execute(
            select(
                DisbursementLine.id,
                DisbursementLine.amount_fen,
                DisbursementLine.payee,
                Decision.doc_number,
                Application.definition_id,
                Application.district,
                Call.title,
            )
            .join(Decision, DisbursementLine.decision_id == Decision.id)
            .join(Application, Decision.application_id == Application.id)
            .join(Call, Application.call_id == Call.id)
            .where(DisbursementLine.batch_id == batch_id, DisbursementLine.id > last_id)
            .order_by(DisbursementLine.id)
            .limit(chunk)
        ).all()
        if not rows:
            return
        for _id, amount, payee, number, def_id, district, call_title in rows:
            if def_id not in programs:
                programs[def_id] = compiled(session, def_id).program.name.zh
            p = payee or {}
            yield ExportRow(
                payee=str(p.get("name", "")),
                credit_code=str(p.get("credit_code", "")),
                bank_name=str(p.get("bank_name", "")),
                account_name=str(p.get("bank_account_name", "")),
                account_no=str(p.get("bank_account_no", "")),
                amount_fen=int(amount),
                decision_number=number,
                program=programs[def_id],
                call=call_title,
                district=str(p.get("district") or district),
            )
        last_id = rows[-1][0]
        # Drop this chunk before reading the next one, so memory holds one chunk, never
        # two (a column select: the session keeps no ORM objects for these rows).
        del rows


def totals_values(count: int, total_fen: int) -> list[str]:
    total = yuan(total_fen)
    row = ["合计", f"{count}笔", "", "", "", f"{total:.2f}", rmb_upper(total)]
    return row + [""] * (len(COLUMNS) - len(row))


def csv_chunks(session: Session, batch: DisbursementBatch, chunk: int = CHUNK) -> Iterator[bytes]:
    """The batch as CSV: BOM, header, one line per payment, totals row; CRLF line ends.

    Only the batch id is kept: a web response streams after the request's commit, when
    the batch object may be expired or detached (``session`` may be a scoped session)."""
    return _csv_chunks(session, batch.id, chunk)


def _csv_chunks(session: Session, batch_id: int, chunk: int) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([zh for _key, zh, _en in COLUMNS])
    yield BOM + buffer.getvalue().encode("utf-8")
    count = total = 0
    pending = 0
    buffer.seek(0)
    buffer.truncate()
    for row in batch_rows(session, batch_id, chunk):
        writer.writerow(row.values())
        count += 1
        total += row.amount_fen
        pending += 1
        if pending >= chunk:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    writer.writerow(totals_values(count, total))
    yield buffer.getvalue().encode("utf-8")


def write_xlsx(
    session: Session, batch: DisbursementBatch, target: str | IO[bytes], chunk: int = CHUNK
) -> tuple[int, int]:
    """Write the batch as an XLSX workbook to ``target``; returns (lines, total fen)."""
    import xlsxwriter

    workbook = xlsxwriter.Workbook(
        target, {"constant_memory": True, "tmpdir": tempfile.gettempdir()}
    )
    try:
        sheet = workbook.add_worksheet(batch.number)
        bold = workbook.add_format({"bold": True, "bg_color": "#F2F2F2", "border": 1})
        money = workbook.add_format({"num_format": "#,##0.00"})
        money_bold = workbook.add_format({"num_format": "#,##0.00", "bold": True, "top": 1})
        total_text = workbook.add_format({"bold": True, "top": 1})
        widths = [36, 22, 28, 36, 24, 14, 36, 28, 30, 30, 12]
        for index, width in enumerate(widths):
            sheet.set_column(index, index, width)
        sheet.freeze_panes(1, 0)
        for col, (_key, zh, _en) in enumerate(COLUMNS):
            sheet.write_string(0, col, zh, bold)
        count = total = 0
        row_no = 0
        for row in batch_rows(session, batch.id, chunk):
            row_no += 1
            values = row.values()
            for col, value in enumerate(values):
                if col == 5:
                    # Excel stores numbers as doubles: exact for any amount below 2^53 fen.
                    sheet.write_number(row_no, col, float(row.amount), money)
                else:
                    sheet.write_string(row_no, col, value)
            count += 1
            total += row.amount_fen
        last = row_no + 1
        totals = totals_values(count, total)
        sheet.write_string(last, 0, totals[0], total_text)
        sheet.write_string(last, 1, totals[1], total_text)
        formula = f"=SUM(F2:F{last})" if count else "=0"
        sheet.write_formula(last, 5, formula, money_bold, float(yuan(total)))
        sheet.write_string(last, 6, totals[6], total_text)
    finally:
        workbook.close()
    return count, total


def xlsx_file(session: Session, batch: DisbursementBatch, chunk: int = CHUNK) -> IO[bytes]:
    """The XLSX in an open, already unlinked temporary file positioned at the start (the
    caller streams it and closes it; the disk space is freed on close)."""
    fd, path = tempfile.mkstemp(suffix=".xlsx", prefix="shenbao-export-")
    os.close(fd)
    try:
        write_xlsx(session, batch, path, chunk)
        handle = open(path, "rb")  # noqa: SIM115 (returned open to the caller)
    finally:
        os.unlink(path)
    return handle


def file_chunks(handle: IO[bytes], size: int = 64 * 1024) -> Iterator[bytes]:
    try:
        while True:
            data = handle.read(size)
            if not data:
                return
            yield data
    finally:
        handle.close()
