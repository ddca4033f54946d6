"""Payment files of a disbursement batch: CSV and XLSX with what a treasury or bank needs.

Columns: payee, credit code, bank, account name, account number, amount in figures,
amount in Chinese capitals (大写), decision number, program, call, district; then a
totals row. Both formats stream in constant memory and are built for speed (a batch of
100,000 lines is written in a second or two, see ``bench/bench_export.py``); the lines
come from ``workflow.export_lines``:

* the CSV lines are the values joined by commas, and ``csv.writer`` writes only a line
  that needs quoting (UTF-8 with BOM so Excel shows the Chinese correctly; values are
  plain text so a bank system can import the file — Excel users who need to keep
  19-digit account numbers intact should use the XLSX, where they are text cells);
* the XLSX is the workbook xlsxwriter writes (``constant_memory``: inline strings) for the
  header and the totals row, with the lines' ``<row>`` elements written straight into
  its sheet in between (see ``write_xlsx``): xlsxwriter's per-cell calls were 80 % of the
  time, and the cells of a payment line are all alike. The files are byte for byte what
  ``csv.writer`` and xlsxwriter write cell by cell (tests/test_exports.py compares them).

``build_file`` is what leaves the system (the download and the export job): it recomputes
the batch's lock hash over exactly the lines it writes, in the same pass, and refuses
(``BatchChanged``) when they differ from what was locked.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from sqlalchemy.orm import Session

from .domain import yuan
from .export_lines import (
    CHUNK,
    COLUMNS,
    BatchChanged,
    Check,
    Values,
    line_chunks,
    totals_values,
)
from .models import DisbursementBatch

# Batches up to this many lines are exported inside the request (about a second for the
# XLSX); larger ones are written by a job on the ``exports`` queue. The app config key
# FINANCE_EXPORT_SYNC_MAX_LINES overrides it.
SYNC_MAX_LINES = 20_000
FORMATS = ("csv", "xlsx")
BOM = b"\xef\xbb\xbf"
XLSX_MIMETYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
MIMETYPES = {"csv": "text/csv", "xlsx": XLSX_MIMETYPE}


def file_name(batch: DisbursementBatch, extension: str) -> str:
    return f"拨付清单-{batch.number}.{extension}"


def ascii_file_name(batch: DisbursementBatch, extension: str) -> str:
    return f"disbursement-{batch.number}.{extension}"


# ---------------------------------------------------------------- CSV


def csv_chunks(session: Session, batch: DisbursementBatch, chunk: int = CHUNK) -> Iterator[bytes]:
    """The batch as CSV: BOM, header, one line per payment, totals row; CRLF line ends.

    Only the batch id is kept: a response may stream after the request's commit, when
    the batch object may be expired or detached (``session`` may be a scoped session)."""
    return _csv_chunks(session, batch.id, chunk)


def _csv_chunks(
    session: Session,
    batch_id: int,
    chunk: int,
    check: Check | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([zh for _key, zh, _en in COLUMNS])
    yield BOM + buffer.getvalue().encode("utf-8")
    count = total = 0
    for values, amounts in line_chunks(session, batch_id, chunk, check, progress):
        yield _csv_lines(values, writer, buffer)
        count += len(amounts)
        total += sum(amounts)
    buffer.seek(0)
    buffer.truncate()
    writer.writerow(totals_values(count, total))
    yield buffer.getvalue().encode("utf-8")


_CSV_COMMAS = len(COLUMNS) - 1


def _csv_lines(values: list[Values], writer: Any, buffer: io.StringIO) -> bytes:
    """The CSV lines of a chunk, as ``writer`` (QUOTE_MINIMAL, CRLF) writes them: a line
    whose fields hold no comma, quote, CR or LF is its fields joined by commas (a third of
    the writer's time); any other line is written by ``writer``."""
    out = []
    add = out.append
    for row in values:
        line = ",".join(row)
        if line.count(",") != _CSV_COMMAS or '"' in line or "\n" in line or "\r" in line:
            buffer.seek(0)
            buffer.truncate()
            writer.writerow(row)
            line = buffer.getvalue()[:-2]
        add(line)
    out.append("")
    return "\r\n".join(out).encode("utf-8")


# ---------------------------------------------------------------- XLSX

SHEET = "xl/worksheets/sheet1.xml"
_EXCEL_ESCAPE = re.compile(r"(_x[0-9a-fA-F]{4}_)")
_CONTROL = re.compile(r"([\x00-\x08\x0b-\x1f])")
_EDGE_SPACE = re.compile(r"^\s|\s$")
_MAX_UTF16 = 32767
_LETTERS = "ABCDEFGHIJK"


def _xlsx_text(value: str) -> str:
    """A string cell's ``<t>`` element, as xlsxwriter writes it in constant-memory mode:
    cut to Excel's 32,767 UTF-16 units, ``_xHHHH_`` and control characters escaped the
    way Excel reads them back, ``xml:space="preserve"`` for edge whitespace, & < >
    escaped. (xlsxwriter passes a value that looks like ``<r>…</r>`` through unescaped,
    as rich text; here it is text like any other.)"""
    if len(value) > _MAX_UTF16 // 2 and len(value.encode("utf-16-le", "surrogatepass")) > (
        2 * _MAX_UTF16
    ):
        units = 0
        for index, char in enumerate(value):
            units += 2 if ord(char) > 0xFFFF else 1
            if units > _MAX_UTF16:
                value = value[:index]
                break
    value = _EXCEL_ESCAPE.sub(r"_x005F\1", value)
    value = _CONTROL.sub(lambda m: f"_x{ord(m.group(1)):04X}_", value)
    value = value.replace("\ufffe", "_xFFFE_").replace("\uffff", "_xFFFF_")
    preserve = ' xml:space="preserve"' if _EDGE_SPACE.search(value) else ""
    value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<t{preserve}>{value}</t>"


def _careful_row(r: int, values: Values, fen: int, style: int) -> str:
    cells = []
    for col, value in enumerate(values):
        ref = f"{_LETTERS[col]}{r}"
        if col == 5:
            cells.append(f'<c r="{ref}" s="{style}"><v>{fen / 100:.16G}</v></c>')
        else:
            cells.append(f'<c r="{ref}" t="inlineStr"><is>{_xlsx_text(value)}</is></c>')
    return f'<row r="{r}">{"".join(cells)}</row>'


def _plain(texts: Iterable[str]) -> bool:
    """True if none of ``texts`` needs more than copying into ``<t>…</t>``: no & < >, no
    ``_x`` (Excel's escapes), nothing unprintable (control characters, U+FFFE/FFFF,
    spaces other than U+0020) and no value that starts or ends with a space. Scans with
    str methods only: a regular expression over every value is most of the writing time."""
    text = "|" + "|".join(texts) + "|"
    return (
        text.isprintable()
        and "&" not in text
        and "<" not in text
        and ">" not in text
        and "_x" not in text
        and "| " not in text
        and " |" not in text
    )


def _rows_xml(values: list[Values], amounts: list[int], first_row: int, style: int) -> bytes:
    """The ``<row>`` elements of a chunk of lines, from spreadsheet row ``first_row`` on."""
    out = []
    add = out.append
    r = first_row - 1
    careful = not _plain(itertools.chain.from_iterable(values))
    for row, fen in zip(values, amounts, strict=True):
        r += 1
        if careful and not _plain(row):
            add(_careful_row(r, row, fen, style))
            continue
        name, code, bank, acct, acct_no, _amount, upper, number, program, call, district = row
        n = str(r)
        # Excel stores numbers as doubles: exact for any amount below 2^53 fen. fen / 100
        # is the double nearest the amount, as float(Decimal) is; written as xlsxwriter
        # writes numbers (%.16G).
        add(
            f'<row r="{n}"><c r="A{n}" t="inlineStr"><is><t>{name}</t></is></c>'
            f'<c r="B{n}" t="inlineStr"><is><t>{code}</t></is></c>'
            f'<c r="C{n}" t="inlineStr"><is><t>{bank}</t></is></c>'
            f'<c r="D{n}" t="inlineStr"><is><t>{acct}</t></is></c>'
            f'<c r="E{n}" t="inlineStr"><is><t>{acct_no}</t></is></c>'
            f'<c r="F{n}" s="{style}"><v>{fen / 100:.16G}</v></c>'
            f'<c r="G{n}" t="inlineStr"><is><t>{upper}</t></is></c>'
            f'<c r="H{n}" t="inlineStr"><is><t>{number}</t></is></c>'
            f'<c r="I{n}" t="inlineStr"><is><t>{program}</t></is></c>'
            f'<c r="J{n}" t="inlineStr"><is><t>{call}</t></is></c>'
            f'<c r="K{n}" t="inlineStr"><is><t>{district}</t></is></c></row>'
        )
    return "".join(out).encode("utf-8")


def _xlsx_frame(sheet_name: str, count: int, total_fen: int) -> tuple[bytes, int]:
    """The workbook xlsxwriter writes for the header and the totals row of ``count``
    lines, and the style index of the amount cells. For the first line it writes only
    that line's amount cell, a placeholder: its row is replaced by the lines, and it makes
    xlsxwriter number the formats in the order a cell-by-cell export uses them."""
    import xlsxwriter

    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(
        buffer, {"constant_memory": True, "tmpdir": tempfile.gettempdir()}
    )
    try:
        sheet = workbook.add_worksheet(sheet_name)
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
        if count:
            sheet.write_number(1, 5, 0, money)
        last = count + 1
        totals = totals_values(count, total_fen)
        sheet.write_string(last, 0, totals[0], total_text)
        sheet.write_string(last, 1, totals[1], total_text)
        formula = f"=SUM(F2:F{last})" if count else "=0"
        sheet.write_formula(last, 5, formula, money_bold, float(yuan(total_fen)))
        sheet.write_string(last, 6, totals[6], total_text)
    finally:
        workbook.close()
    return buffer.getvalue(), int(money.xf_index or 0)


def write_xlsx(
    session: Session,
    batch: DisbursementBatch,
    target: str | IO[bytes],
    chunk: int = CHUNK,
    check: Check | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Write the batch as an XLSX workbook to ``target``; returns (lines, total fen).

    xlsxwriter writes rows in order, so the totals row is written before the lines, from
    the batch's line count and total. Lines that do not add up to those figures raise
    ``BatchChanged``, and ``target`` then holds no usable workbook."""
    count, total = batch.line_count, batch.total_fen
    chunks = line_chunks(session, batch.id, chunk, check, progress)
    frame, style = _xlsx_frame(batch.number, count, total)
    written = written_fen = 0
    with (
        zipfile.ZipFile(io.BytesIO(frame)) as source,
        zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out,
    ):
        for info in source.infolist():
            data = source.read(info)
            if info.filename != SHEET or not count:
                out.writestr(info, data)
                continue
            # The lines replace the placeholder row, before the totals row.
            start = data.index(b'<row r="2"')
            end = data.index(f'<row r="{count + 2}"'.encode())
            entry = zipfile.ZipInfo(info.filename, info.date_time)
            entry.compress_type, entry.external_attr = info.compress_type, info.external_attr
            entry.file_size = len(data) + 1000 * count  # lets zipfile choose Zip64 if needed
            with out.open(entry, "w") as sheet:
                sheet.write(data[:start])
                for values, amounts in chunks:
                    if written + len(amounts) > count:
                        raise BatchChanged  # more lines than the totals row counts
                    sheet.write(_rows_xml(values, amounts, written + 2, style))
                    written += len(amounts)
                    written_fen += sum(amounts)
                sheet.write(data[end:])
    if not count and next(chunks, None) is not None:
        raise BatchChanged
    if (written, written_fen) != (count, total):
        raise BatchChanged
    return count, total


def xlsx_file(session: Session, batch: DisbursementBatch, chunk: int = CHUNK) -> IO[bytes]:
    """The XLSX in an open, already unlinked temporary file positioned at the start (the
    caller streams it and closes it; the disk space is freed on close)."""
    handle = tempfile.TemporaryFile(prefix="shenbao-export-", suffix=".xlsx")  # noqa: SIM115
    try:
        write_xlsx(session, batch, handle, chunk)
    except BaseException:
        handle.close()
        raise
    handle.seek(0)
    return handle


# ---------------------------------------------------------------- checked files


@dataclass
class Built:
    line_count: int
    total_fen: int
    size: int


def build_file(
    session: Session,
    batch: DisbursementBatch,
    fmt: str,
    target: IO[bytes],
    progress: Callable[[int], None] | None = None,
    chunk: int = CHUNK,
) -> Built:
    """Write the batch's payment file in ``fmt`` to ``target`` while recomputing its lock
    hash, count and total over the very lines written; ``BatchChanged`` if they are not
    what was locked (``target`` must then be discarded). ``progress(lines)`` is called
    after each chunk."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}")
    check = Check(batch.number)
    if fmt == "csv":
        for data in _csv_chunks(session, batch.id, chunk, check, progress):
            target.write(data)
    else:
        write_xlsx(session, batch, target, chunk, check, progress)
    if not check.matches(batch):
        raise BatchChanged
    return Built(check.count, check.total_fen, target.tell())


def sync_limit(config: Any) -> int:
    """Largest batch exported inside the request (app config, else ``SYNC_MAX_LINES``)."""
    return int(config.get("FINANCE_EXPORT_SYNC_MAX_LINES") or SYNC_MAX_LINES)


def file_chunks(handle: IO[bytes], size: int = 64 * 1024) -> Iterator[bytes]:
    try:
        while True:
            data = handle.read(size)
            if not data:
                return
            yield data
    finally:
        handle.close()


def spooled() -> IO[bytes]:
    """Where a download is built before it is sent: memory up to 8 MB, then disk."""
    return tempfile.SpooledTemporaryFile(max_size=8 * 2**20, prefix="shenbao-export-")
