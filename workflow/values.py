"""Typing of stored values: form data and call parameters are JSON (strings, booleans,
lists); expressions see Decimals, dates and booleans.

Percent values are written as percentages ("50" means 50 %) in forms, YAML and call
parameters, and appear in expressions as fractions (Decimal("0.5")).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from .definitions.schema import FieldDef, Parameter, Program


def typed_value(kind: str, raw: Any) -> Any:
    """Convert one stored value to what expressions use; None stays None."""
    if raw is None or raw == "":
        return None
    try:
        if kind in ("money", "decimal", "integer"):
            return raw if isinstance(raw, Decimal) else Decimal(str(raw))
        if kind == "percent":
            value = raw if isinstance(raw, Decimal) else Decimal(str(raw))
            return value / 100
        if kind == "date":
            return raw if isinstance(raw, date) else date.fromisoformat(str(raw))
        if kind == "boolean":
            if isinstance(raw, bool):
                return raw
            return str(raw).lower() in ("1", "true", "yes", "y", "on")
    except (InvalidOperation, ValueError):
        return None
    return raw


def typed_form(program: Program, data: dict[str, Any]) -> dict[str, Any]:
    """Every declared field present (None when empty), typed; repeatable groups as lists."""
    out: dict[str, Any] = {}
    for section in program.form.sections:
        if section.repeatable:
            rows = data.get(section.key) or []
            out[section.key] = [
                _typed_row(section.fields, row) for row in rows if isinstance(row, dict)
            ]
        else:
            for f in section.fields:
                out[f.key] = typed_value(f.type, data.get(f.key))
    return out


def _typed_row(fields: list[FieldDef], row: dict[str, Any]) -> dict[str, Any]:
    return {f.key: typed_value(f.type, row.get(f.key)) for f in fields}


def typed_params(program: Program, stored: dict[str, Any] | None) -> dict[str, Any]:
    """The call's parameter values over the definition's defaults, typed."""
    stored = stored or {}
    out = {}
    for key, p in program.parameters.items():
        out[key] = typed_param(p, stored.get(key, p.default))
    return out


def typed_param(p: Parameter, raw: Any) -> Any:
    return typed_value(p.type, raw)
