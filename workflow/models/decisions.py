"""Decisions (决定书) and the per-prefix, per-year document-number counters."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .applications import Application
from .base import Base, JSONType, UTCDateTime, utcnow


class DocNumberCounter(Base):
    """Last sequence number used for a document prefix in a year.

    Allocation is ``UPDATE ... SET last_seq = last_seq + 1 RETURNING last_seq`` inside the
    transaction that stores the decision, so numbers are unique and, because a rolled-back
    transaction also rolls back its increment, gapless.
    """

    __tablename__ = "doc_number_counters"

    prefix: Mapped[str] = mapped_column(String(40), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)


class Decision(Base):
    __tablename__ = "decisions"
    __table_args__ = (UniqueConstraint("doc_prefix", "doc_year", "doc_seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # approval, rejection, recognition
    doc_prefix: Mapped[str] = mapped_column(String(40))
    doc_year: Mapped[int] = mapped_column(Integer)
    doc_seq: Mapped[int] = mapped_column(Integer)
    doc_number: Mapped[str] = mapped_column(String(60), unique=True)
    amount_fen: Mapped[int | None] = mapped_column(BigInteger)
    template: Mapped[str] = mapped_column(String(100))
    # The plain data the PDF is rendered from, frozen: re-rendering uses exactly this.
    render_data: Mapped[dict] = mapped_column(JSONType, default=dict)
    pdf_sha256: Mapped[str | None] = mapped_column(String(64))
    pdf_storage_key: Mapped[str | None] = mapped_column(String(200))
    verification_code: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="issued")  # issued, void
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    application: Mapped[Application] = relationship()
