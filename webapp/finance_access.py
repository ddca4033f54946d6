"""Who may do what in the finance area, as named predicates (on top of
``workflow.permissions.can_view_finance`` / ``can_manage_finance``).

* Finance staff (``can_manage_finance``) build, lock, export and settle batches, record
  clawbacks and see full bank details. They read decisions but never change applications
  other than through ``pay`` and ``clawback``, which the definitions give to them.
* Approvers and administrators (``can_view_finance``) see the overview, the batches, the
  reconciliation and the dashboards read-only, with account numbers masked.
* Everyone else gets 403.
"""

from __future__ import annotations

from typing import Any

from workflow.models import DisbursementBatch
from workflow.permissions import can_manage_finance, can_view_finance

__all__ = [
    "can_export_batch",
    "can_manage_finance",
    "can_see_bank_details",
    "can_view_finance",
    "mask_account",
]


def can_see_bank_details(user: Any) -> bool:
    """Full account numbers are for the people who pay, not for read-only viewers."""
    return can_manage_finance(user)


def can_export_batch(user: Any, batch: DisbursementBatch) -> bool:
    """Payment files leave the system only through finance staff (the batch state is
    checked separately: a draft answers 409, not 403)."""
    return can_manage_finance(user)


def mask_account(number: str | None) -> str:
    """``4200201109000012345`` → ``•••• 2345`` for read-only viewers."""
    number = (number or "").strip()
    return f"•••• {number[-4:]}" if len(number) > 4 else "••••"
