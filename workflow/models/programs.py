"""Program definitions (one row per YAML version) and calls (a program's yearly round)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, JSONType, UTCDateTime, utcnow


class ProgramDefinition(Base):
    """One loaded version of a program's YAML. Never updated: a change is a new version."""

    __tablename__ = "program_definitions"
    __table_args__ = (
        UniqueConstraint("code", "version"),
        UniqueConstraint("code", "content_hash"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), index=True)
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    source_yaml: Mapped[str] = mapped_column(Text)
    loaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Call(Base):
    """A yearly round (批次) of a program: dates, budget and the parameters in force.

    ``committed_fen`` is reserved + paid money; the CHECK constraint is the database-level
    guarantee that approvals never over-commit the budget, whatever the concurrency.
    """

    __tablename__ = "calls"
    __table_args__ = (
        CheckConstraint("committed_fen >= 0", name="committed_nonnegative"),
        CheckConstraint("committed_fen <= budget_fen", name="within_budget"),
        UniqueConstraint("program_code", "year", "title"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    program_code: Mapped[str] = mapped_column(String(40), index=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("program_definitions.id"))
    year: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    notice_doc_number: Mapped[str | None] = mapped_column(String(60))
    opens_on: Mapped[date] = mapped_column(Date)
    closes_on: Mapped[date] = mapped_column(Date)
    budget_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    committed_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    params: Mapped[dict] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="published")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    definition: Mapped[ProgramDefinition] = relationship()

    def is_open(self, today: date) -> bool:
        return self.status == "published" and self.opens_on <= today <= self.closes_on
