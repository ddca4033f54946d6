"""Rows that record what happened to a generated application: its decision letter
(numbered per prefix and year, with the data the PDF is rendered from) and, optionally,
its audit history appended to the real hash chain."""

from __future__ import annotations

import json
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from . import sample_data as sd

REJECTION_REASON = "经审查，申报材料不符合申报条件（资格审查未通过）。"
RECOGNITION_ITEMS = [
    {
        "name": "高精度光栅编码器（GE-2000）",
        "patent_numbers": "ZL202010123456.7",
        "valid_until": "",
    },
    {"name": "绝对式磁编码器（AM-60）", "patent_numbers": "ZL202120654321.X", "valid_until": ""},
]


def decision_row(
    b: Any,
    rng: Any,
    app_id: int,
    call: Any,
    program: Any,
    org: int,
    doc_kind: str,
    number: str,
    award: int | None,
    entered: datetime,
) -> tuple:
    from workflow.domain import format_chinese_date, format_doc_number, format_yuan, rmb_upper
    from workflow.effects import fen_to_yuan

    prefix = str(call.params.get(program.doc_prefix_param, "长市监知字"))
    key = (prefix, call.year)
    b.counters[key] = b.counters.get(key, 0) + 1
    seq = b.counters[key]
    doc_number = format_doc_number(prefix, call.year, seq)
    _district, name, code = b.org[org]
    amount = award if doc_kind in ("approval", "recognition") else None
    data: dict[str, Any] = {
        "authority": str(call.params.get("issuing_authority", "长春市市场监督管理局")),
        "doc_number": doc_number,
        "title": f"关于{'给予' if amount else '不予给予'}{name}{program.name.zh}的决定",
        "addressee": name,
        "credit_code": code,
        "program_name": program.name.zh,
        "call_title": call.title,
        "application_number": number,
        "body_paragraphs": [
            f"你单位提交的{call.title}申报（申报编号 {number}），经审查，"
            + ("符合条件，决定给予奖励（资助）。" if amount else "不予支持。")
        ],
        # What a real letter carries: a rejection states its reason, a recognition lists
        # its products (the renderer refuses either without).
        "reason": REJECTION_REASON if doc_kind == "rejection" else "",
        "date_text": format_chinese_date(entered.date()),
        "lang": "zh",
        "items": RECOGNITION_ITEMS if doc_kind == "recognition" else [],
    }
    if amount is not None:
        words = b._doc_cache.get(amount)
        if words is None:
            words = b._doc_cache[amount] = (
                format_yuan(amount),
                rmb_upper(fen_to_yuan(amount)),
            )
        data["amount_figures"], data["amount_capitals"] = words
    return (
        b._next("decisions"),
        app_id,
        doc_kind,
        prefix,
        call.year,
        seq,
        doc_number,
        amount,
        f"decision_{doc_kind}.html",
        json.dumps(data, ensure_ascii=False),
        f"{rng.getrandbits(64):016X}",
        "issued",
        entered,
    )


def document_kind(program: Any, state: str) -> str | None:
    if state in sd.DECIDED_STATES:
        docs = program.state("approved").documents
    elif state == "rejected":
        docs = program.state("rejected").documents
    else:
        return None
    return docs[0].kind if docs else None


class AuditChain:
    """Appends generated events to the real hash chain, so ``flask audit verify`` passes
    on the bench database."""

    def __init__(self, conn: Connection):
        from workflow.audit import GENESIS

        self.conn = conn
        head = conn.execute(
            text("SELECT last_seq, last_hash FROM audit_chain_head WHERE id = 1")
        ).first()
        self.exists = head is not None
        self.seq, self.prev = (head.last_seq, head.last_hash) if head else (0, GENESIS)

    def add(self, out, builder, app_id, action, from_state, to_state, actor_id, role, at) -> None:  # noqa: ANN001
        from workflow.audit import event_digest

        self.seq += 1
        ev = SimpleNamespace(
            seq=self.seq,
            occurred_at=at,
            actor_id=actor_id,
            actor_role=role,
            entity_type="application",
            entity_id=app_id,
            application_id=app_id,
            action=action,
            from_state=from_state,
            to_state=to_state,
            reason=None,
            data={},
            data_hash=None,
        )
        digest = event_digest(ev, self.prev)  # type: ignore[arg-type]
        out.append(
            (
                builder._next("audit_events"),
                self.seq,
                at,
                actor_id,
                role,
                "application",
                app_id,
                app_id,
                action,
                from_state,
                to_state,
                None,
                "{}",
                None,
                self.prev,
                digest,
            )
        )
        self.prev = digest

    def save(self) -> None:
        params = {"s": self.seq, "h": self.prev}
        if self.exists:
            sql = "UPDATE audit_chain_head SET last_seq = :s, last_hash = :h WHERE id = 1"
        else:
            sql = "INSERT INTO audit_chain_head (id, last_seq, last_hash) VALUES (1, :s, :h)"
        self.conn.execute(text(sql), params)
