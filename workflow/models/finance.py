"""Budget ledger, disbursement batches and their lines, clawbacks."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, JSONType, UTCDateTime, utcnow


class BudgetLedgerEntry(Base):
    """One movement of a call's committed money: reserve, release, clawback.

    The running total lives in ``calls.committed_fen`` (guarded by a CHECK constraint);
    the ledger is the explanation of that total and is append-only.
    """

    __tablename__ = "budget_ledger"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), index=True)
    application_id: Mapped[int | None] = mapped_column(ForeignKey("applications.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    amount_fen: Mapped[int] = mapped_column(BigInteger)  # signed: + reserves, - releases
    reason: Mapped[str | None] = mapped_column(Text)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DisbursementBatch(Base):
    __tablename__ = "disbursement_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="draft")  # draft, locked, settled
    filters: Mapped[dict] = mapped_column(JSONType, default=dict)
    total_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    # sha256 over the lines at lock time: a locked batch cannot change silently.
    lock_hash: Mapped[str | None] = mapped_column(String(64))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    locked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    lines: Mapped[list[DisbursementLine]] = relationship(
        back_populates="batch", order_by="DisbursementLine.id"
    )


class DisbursementLine(Base):
    __tablename__ = "disbursement_lines"
    __table_args__ = (UniqueConstraint("batch_id", "decision_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("disbursement_batches.id"), index=True)
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    payee: Mapped[dict] = mapped_column(JSONType, default=dict)  # frozen bank details
    status: Mapped[str] = mapped_column(String(20), default="pending")
    paid_on: Mapped[date | None] = mapped_column(Date)
    voucher_no: Mapped[str | None] = mapped_column(String(60))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    batch: Mapped[DisbursementBatch] = relationship(back_populates="lines")


class Clawback(Base):
    """Money recovered (追回) from a paid award, with its reason."""

    __tablename__ = "clawbacks"

    id: Mapped[int] = mapped_column(primary_key=True)
    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    recovered_on: Mapped[date | None] = mapped_column(Date)
    extra: Mapped[dict] = mapped_column(JSONType, default=dict)


class BatchNumberCounter(Base):
    """Per-year counter for disbursement batch numbers (ZF2026-0001)."""

    __tablename__ = "batch_number_counters"
    __table_args__ = (UniqueConstraint("year"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    year: Mapped[int] = mapped_column(Integer)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
