"""Applications and what hangs off them: attachments, reviews, objections, public notices."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, JSONType, UTCDateTime, utcnow
from .people import Organization, User
from .programs import Call, ProgramDefinition

# Stages where an application waits for a reviewer (the queues' open work); the others are
# draft (the applicant's) and decided / payment / closed (history).
OPEN_STAGES = (
    "district",
    "eligibility",
    "supplement",
    "expert",
    "ranking",
    "approval",
    "notice",
    "objection",
)
_OPEN = text("stage IN (" + ", ".join(f"'{s}'" for s in OPEN_STAGES) + ")")


class Application(Base):
    """One organization's application to one call.

    ``state`` is the truth the state machine reads and writes; ``version`` is the
    optimistic lock (SQLAlchemy ``version_id_col``): two concurrent transitions of one
    application cannot both commit. One application per organization per call is a
    database constraint, so a double click or two tabs create one row, not two.
    """

    __tablename__ = "applications"
    __table_args__ = (
        UniqueConstraint("organization_id", "call_id"),
        Index("ix_applications_queue", "state", "call_id", "submitted_at", "id"),
        Index("ix_applications_district_state", "district", "state", "id"),
        # Reviewer queues (workflow/queues.py): a stage's queue, a district's stage queue,
        # and all open work, each in submission order, so a page is an index range scan.
        Index("ix_applications_stage_submitted", "stage", "submitted_at", "id"),
        Index(
            "ix_applications_district_stage_submitted", "district", "stage", "submitted_at", "id"
        ),
        Index(
            "ix_applications_open_submitted",
            "submitted_at",
            "id",
            postgresql_where=_OPEN,
            sqlite_where=_OPEN,
        ),
        Index(
            "ix_applications_open_district_submitted",
            "district",
            "submitted_at",
            "id",
            postgresql_where=_OPEN,
            sqlite_where=_OPEN,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str | None] = mapped_column(String(40), unique=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), index=True)
    definition_id: Mapped[int] = mapped_column(ForeignKey("program_definitions.id"))
    program_code: Mapped[str] = mapped_column(String(40), index=True)
    # Copied from the organization at creation so queues filter without a join.
    district: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(40), default="draft")
    # The state's stage family in its definition (draft, district, ..., closed), kept in
    # step with ``state`` at every flush (workflow/engine.py ``_keep_stage``) so queues
    # filter and count by stage on an index, whatever the program.
    stage: Mapped[str] = mapped_column(String(20), default="draft")
    form_data: Mapped[dict] = mapped_column(JSONType, default=dict)
    # The frozen JSON (about 12 KB per submitted application) is deferred: transitions
    # and queues do not read it; the first access loads all three in one statement.
    snapshot: Mapped[dict | None] = mapped_column(JSONType, deferred=True, deferred_group="frozen")
    eligibility: Mapped[list | None] = mapped_column(
        JSONType, deferred=True, deferred_group="frozen"
    )
    award_fen: Mapped[int | None] = mapped_column(BigInteger)
    award_trace: Mapped[dict | None] = mapped_column(
        JSONType, deferred=True, deferred_group="frozen"
    )
    score: Mapped[Decimal | None] = mapped_column(Numeric(8, 3))
    rank: Mapped[int | None] = mapped_column(Integer)
    # What the applicant must change while in a supplement state (补正).
    supplement_request: Mapped[dict | None] = mapped_column(JSONType)
    deadline_on: Mapped[date | None] = mapped_column(Date)
    assigned_to_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state_entered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __mapper_args__ = {"version_id_col": version}

    organization: Mapped[Organization] = relationship()
    call: Mapped[Call] = relationship()
    definition: Mapped[ProgramDefinition] = relationship()
    assigned_to: Mapped[User | None] = relationship(foreign_keys=[assigned_to_id])
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="application", order_by="Attachment.id"
    )


class Attachment(Base):
    """An uploaded material. Bytes live in the storage folder under ``storage_key``."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    kind: Mapped[str] = mapped_column(String(60))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(200), unique=True)
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    application: Mapped[Application] = relationship(back_populates="attachments")


class Review(Base):
    """A reviewer's work on one application at one stage: an eligibility check,
    a district opinion, or an expert's score sheet (with conflict declaration)."""

    __tablename__ = "reviews"
    __table_args__ = (UniqueConstraint("application_id", "reviewer_id", "stage", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    stage: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(20))  # eligibility, district, expert
    status: Mapped[str] = mapped_column(String(20), default="assigned")
    no_conflict_declared: Mapped[bool | None] = mapped_column(Boolean)
    recusal_reason: Mapped[str | None] = mapped_column(Text)
    scores: Mapped[dict | None] = mapped_column(JSONType)
    total: Mapped[Decimal | None] = mapped_column(Numeric(8, 3))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    reviewer: Mapped[User] = relationship()


class PublicNotice(Base):
    """A published list (公示) of one call's approved applications for N working days."""

    __tablename__ = "public_notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    application_ids: Mapped[list] = mapped_column(JSONType, default=list)
    pdf_storage_key: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="open")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Objection(Base):
    """An objection (异议) lodged by a named member of the public during a notice."""

    __tablename__ = "objections"

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    notice_id: Mapped[int | None] = mapped_column(ForeignKey("public_notices.id"))
    name: Mapped[str] = mapped_column(String(100))
    contact: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    evidence_storage_key: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decision_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
