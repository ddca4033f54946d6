"""The names an expression can see for one application: ``form``, ``params``, ``app``,
``org``, ``today`` and the table functions (``lpr``, working days)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

from .definitions.schema import Program
from .expressions import ExpressionError, Record
from .values import typed_form, typed_params


def table_functions() -> dict[str, Callable[..., Any]]:
    """Lookups of data tables and the working-day calendar, for expressions."""
    from .domain import add_working_days, default_lpr_table, working_days_between

    def lpr(when: Any, term: str = "1y") -> Decimal:
        try:
            return default_lpr_table().rate(when, term)
        except (LookupError, ValueError) as exc:
            # A month outside the table is a data problem the reviewer must see, not a crash.
            raise ExpressionError(f"LPR not available: {exc}") from None

    return {
        "lpr": lpr,
        "add_working_days": lambda d, n: add_working_days(d, int(n)),
        "working_days_between": lambda a, b: Decimal(working_days_between(a, b)),
    }


def build_names(
    program: Program,
    *,
    form_data: dict[str, Any],
    call_params: dict[str, Any] | None,
    app: dict[str, Any] | None = None,
    org: dict[str, Any] | None = None,
    today: date,
) -> dict[str, Any]:
    return {
        "form": Record(typed_form(program, form_data), "form"),
        "params": Record(typed_params(program, call_params), "params"),
        "app": Record(app or {}, "app"),
        "org": Record(org or {}, "org"),
        "today": today,
    }
