"""The lines of a disbursement batch as a payment file shows them (``workflow.exports``
writes them as CSV and XLSX): read fast, in chunks, and checked against the lock hash.

* rows are read in chunks keyed by line id (``WHERE id > last ORDER BY id LIMIT n``):
  every chunk is a short query, so no cursor or transaction stays open while a slow
  client downloads, and at most one chunk of rows is in memory. The query selects plain
  columns only, with the payee's bank details taken out of the JSON by the database
  (``->>`` / ``json_extract``): no ORM objects and no JSON decoding in Python;
* each chunk is turned into tuples of strings in one tight loop; program names are
  looked up once per definition, and the capitals come from ``Capitals`` (words of the
  whole yuan cached per value, the 角/分 ending from a table);
* with a ``Check``, the same loop recomputes the batch's lock hash, count and total over
  the lines it hands out, so a file can be refused (``BatchChanged``) when they are not
  what was locked, even if a line changed while the file was being written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from .domain import rmb_upper, yuan
from .domain.money import MAX_UPPER_YUAN, _integer_words
from .engine import compiled
from .errors import WorkflowError
from .models import Application, Call, Decision, DisbursementBatch, DisbursementLine
from .operations.finance import LOCK_LINE, json_str, lock_hash_start

CHUNK = 2000

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


class BatchChanged(WorkflowError):
    """The lines read for the file are not the lines that were locked."""

    status = 409

    def __init__(self) -> None:
        super().__init__(
            "批次明细在锁定后被改动，已拒绝导出。请联系系统管理员核查。",
            "The batch changed after it was locked; export refused. Ask an administrator.",
        )


# ---------------------------------------------------------------- amounts


class Capitals:
    """Amounts in capitals from integer fen, exactly as ``rmb_upper`` writes them.

    ``rmb_upper`` converts through ``Decimal`` and spells every section each time (about
    10 µs a call, most of a CSV line's cost). Its text for a positive whole-yuan part ``y``
    and ``c`` fen is ``人民币`` + the words of ``y`` + ``元`` + an ending that depends only
    on ``c`` and on whether ``y`` ends in 0 (the optional 零 before 角). The words come from
    ``rmb_upper``'s own helper, cached per value; the 200 endings are cut from
    ``rmb_upper``'s output once. Zero, below one yuan and negative amounts (which
    ``rmb_upper`` refuses) go to ``rmb_upper`` itself. The tests compare both over every
    pattern of sections and endings.
    """

    LIMIT = 50_000  # cached word strings (bounded: constant memory on any batch)

    def __init__(self) -> None:
        self.heads: dict[int, str] = {}
        # [c] for a whole part not ending in 0, [100 + c] for one ending in 0.
        self.endings = [self._ending(r, c) for r in (1, 10) for c in range(100)]

    @staticmethod
    def _ending(whole: int, cents: int) -> str:
        text = rmb_upper(Decimal(whole * 100 + cents).scaleb(-2))
        head = "人民币" + _integer_words(whole) + "元"
        if not text.startswith(head):  # rmb_upper no longer writes the whole part first
            raise RuntimeError(f"unexpected capitals {text!r}")
        return text[len(head) :]

    def head(self, whole: int) -> str:
        """``人民币…元`` for a whole part of at least one yuan (cached)."""
        text = self.heads.get(whole)
        if text is None:
            if len(self.heads) >= self.LIMIT:
                self.heads.clear()
            text = self.heads[whole] = "人民币" + _integer_words(whole) + "元"
        return text

    def upper(self, fen: int) -> str:
        whole, cents = divmod(fen, 100)
        if not 0 < whole < MAX_UPPER_YUAN:
            return rmb_upper(yuan(fen))  # below one yuan; or refused (negative, too large)
        return self.head(whole) + self.endings[cents if whole % 10 else 100 + cents]


def _figure(fen: int) -> str:
    """``12345.60``: what ``f"{yuan(fen):.2f}"`` gives, with integer arithmetic."""
    if fen < 0:
        return f"{yuan(fen):.2f}"
    whole, cents = divmod(fen, 100)
    return f"{whole}.{cents:02d}"


# ---------------------------------------------------------------- reading the lines


@dataclass
class Check:
    """Count, total and lock hash of the lines as they were read (``build_file``)."""

    batch_number: str
    count: int = 0
    total_fen: int = 0
    digest: Any = field(init=False)

    def __post_init__(self) -> None:
        self.digest = lock_hash_start(self.batch_number)

    def matches(self, batch: DisbursementBatch) -> bool:
        return (
            bool(batch.lock_hash)
            and self.digest.hexdigest() == batch.lock_hash
            and (self.count, self.total_fen) == (batch.line_count, batch.total_fen)
        )


def _payee_text(key: str) -> Any:
    # Text whatever the JSON holds (SQLite's json_extract returns numbers as such); a
    # missing or null value is "", as the lock hash reads it (payee.get(key, "")).
    return func.coalesce(cast(DisbursementLine.payee[key].as_string(), String), "")


def _lines_query(batch_id: int, last_id: int, chunk: int) -> Any:
    return (
        select(
            Decision.doc_number,
            DisbursementLine.amount_fen,
            _payee_text("name"),
            _payee_text("credit_code"),
            _payee_text("bank_name"),
            _payee_text("bank_account_name"),
            _payee_text("bank_account_no"),
            # The district frozen with the payee, else the application's.
            func.coalesce(func.nullif(_payee_text("district"), ""), Application.district),
            Application.definition_id,
            Call.title,
            DisbursementLine.id,
        )
        .join(Decision, DisbursementLine.decision_id == Decision.id)
        .join(Application, Decision.application_id == Application.id)
        .join(Call, Application.call_id == Call.id)
        .where(DisbursementLine.batch_id == batch_id, DisbursementLine.id > last_id)
        .order_by(DisbursementLine.id)
        .limit(chunk)
    )


Values = tuple[str, str, str, str, str, str, str, str, str, str, str]


def line_chunks(
    session: Session,
    batch_id: int,
    chunk: int = CHUNK,
    check: Check | None = None,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[list[Values], list[int]]]:
    """The batch's lines in id order, ``chunk`` at a time: (the file's values of each
    line, its amount in fen). With ``check``, counts, sums and hashes them as read;
    ``progress(lines)`` is told how many lines were handed out once each chunk is done."""
    programs: dict[int, str] = {}
    capitals = Capitals()
    heads, endings, head = capitals.heads, capitals.endings, capitals.head
    last_id = done = 0
    while True:
        # A Core select on the session's connection: plain rows, no ORM loading step.
        rows = session.connection().execute(_lines_query(batch_id, last_id, chunk)).all()
        if not rows:
            return
        values: list[Values] = []
        amounts: list[int] = []
        hashed: list[str] = []
        add, add_amount, add_hashed = values.append, amounts.append, hashed.append
        for number, fen, name, code, bank, acct, acct_no, district, def_id, call, _id in rows:
            # ops.lock_hash_line, inlined (the query gives strings): the same text as
            # canonical([number, amount, payee]) that the lock hash was computed over.
            if check is not None:
                add_hashed(
                    LOCK_LINE
                    % (
                        json_str(number),
                        fen,
                        json_str(acct),
                        json_str(acct_no),
                        json_str(bank),
                        json_str(code),
                        json_str(name),
                    )
                )
            program = programs.get(def_id)
            if program is None:
                program = programs[def_id] = compiled(session, def_id).program.name.zh
            whole, cents = divmod(fen, 100)
            if 0 < whole < MAX_UPPER_YUAN:  # Capitals.upper, inlined: this loop is the export
                words = heads.get(whole) or head(whole)
                upper = words + endings[cents if whole % 10 else 100 + cents]
                figure = f"{whole}.{cents:02d}"
            else:
                upper, figure = capitals.upper(fen), _figure(fen)
            add((name, code, bank, acct, acct_no, figure, upper, number, program, call, district))
            add_amount(fen)
        if check is not None:
            check.digest.update("".join(hashed).encode("utf-8"))
            check.count += len(amounts)
            check.total_fen += sum(amounts)
        last_id = rows[-1][-1]
        done += len(rows)
        yield values, amounts
        # Drop this chunk before reading the next one: memory holds one chunk, never two.
        del rows, values, amounts, hashed
        if progress is not None:
            progress(done)


def totals_values(count: int, total_fen: int) -> list[str]:
    total = yuan(total_fen)
    row = ["合计", f"{count}笔", "", "", "", f"{total:.2f}", rmb_upper(total)]
    return row + [""] * (len(COLUMNS) - len(row))
