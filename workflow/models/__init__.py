"""Typed SQLAlchemy 2.0 models for the whole mission. Import models from here."""

from . import sqlite as _sqlite  # noqa: F401  (engine event listeners)
from .applications import Application, Attachment, Objection, PublicNotice, Review
from .base import Base, utcnow
from .decisions import Decision, DocNumberCounter
from .finance import (
    BatchNumberCounter,
    BudgetLedgerEntry,
    Clawback,
    DisbursementBatch,
    DisbursementLine,
)
from .people import ROLES, SYSTEM_ROLES, Organization, RoleGrant, User
from .programs import Call, ProgramDefinition
from .system import AuditChainHead, AuditEvent, JobRecord, Notification, OutboxJob

__all__ = [
    "ROLES",
    "SYSTEM_ROLES",
    "Application",
    "Attachment",
    "AuditChainHead",
    "AuditEvent",
    "Base",
    "BatchNumberCounter",
    "BudgetLedgerEntry",
    "Call",
    "Clawback",
    "Decision",
    "DisbursementBatch",
    "DisbursementLine",
    "DocNumberCounter",
    "JobRecord",
    "Notification",
    "Objection",
    "Organization",
    "OutboxJob",
    "ProgramDefinition",
    "PublicNotice",
    "Review",
    "RoleGrant",
    "User",
    "utcnow",
]
