"""Duplicate-funding check (重复资助核查) across programs and years.

A field marked ``dedupe_key: certificate`` (or ``loan_contract``, ``pledged_ip``,
``product``, ``patent``...) names something that may be funded only once. For one
application, every value of such a field (top-level fields and rows of repeatable
groups) is looked up in every other live application - any program, any call - whose
own definition declares the same dedupe key. Withdrawn and rejected applications and
drafts do not count: nothing was funded and nothing was asked of the reviewers.

The database narrows the candidates with a text match on the stored JSON; the exact
comparison (trimmed, case-insensitive) is done here on the parsed values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, cast, or_, select
from sqlalchemy.orm import Session, joinedload

from .definitions.schema import Program, Text
from .engine import compiled
from .models import Application, ProgramDefinition

EXCLUDED_STATES = ("draft", "withdrawn", "rejected")
MAX_VALUES = 200


@dataclass(frozen=True)
class DedupeField:
    dedupe_key: str
    section: str | None  # the repeatable group, or None for a top-level field
    field: str
    label: Text


@dataclass
class DuplicateWarning:
    dedupe_key: str
    label: Text
    value: str
    other_id: int
    other_number: str | None
    other_program: str
    other_program_name: Text
    other_year: int
    other_state: str
    other_state_label: Text


def dedupe_fields(program: Program) -> list[DedupeField]:
    out = []
    for section in program.form.sections:
        for f in section.fields:
            if f.dedupe_key:
                out.append(
                    DedupeField(
                        f.dedupe_key, section.key if section.repeatable else None, f.key, f.label
                    )
                )
    return out


def normalize(value: Any) -> str:
    return str(value).strip().casefold() if value is not None else ""


def values_by_key(program: Program, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{dedupe_key: {normalized value: (original value, field)}} found in ``data``."""
    found: dict[str, dict[str, Any]] = {}
    for df in dedupe_fields(program):
        if df.section is None:
            raw_values = [data.get(df.field)]
        else:
            rows = data.get(df.section) or []
            raw_values = [r.get(df.field) for r in rows if isinstance(r, dict)]
        for raw in raw_values:
            key = normalize(raw)
            if key:
                found.setdefault(df.dedupe_key, {}).setdefault(key, (str(raw).strip(), df))
    return found


def _form(app: Application) -> dict[str, Any]:
    snapshot = app.snapshot or {}
    form = snapshot.get("form")
    return form if isinstance(form, dict) else (app.form_data or {})


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _programs_with_keys(session: Session, keys: set[str]) -> dict[int, set[str]]:
    """Definition ids whose program declares any of ``keys`` -> the keys it declares."""
    out: dict[int, set[str]] = {}
    for definition_id in session.scalars(select(ProgramDefinition.id)).all():
        declared = {df.dedupe_key for df in dedupe_fields(compiled(session, definition_id).program)}
        if declared & keys:
            out[definition_id] = declared & keys
    return out


def find_duplicates(session: Session, app: Application) -> list[DuplicateWarning]:
    program = compiled(session, app.definition_id).program
    mine = values_by_key(program, _form(app))
    if not mine:
        return []
    definitions = _programs_with_keys(session, set(mine))
    if not definitions:
        return []
    needles: list[str] = []
    for values in mine.values():
        for original, _df in values.values():
            needles.append(original)
            encoded = json.dumps(original)[1:-1]  # how a JSON column may store it (\\uXXXX)
            if encoded != original:
                needles.append(encoded)
    needles = needles[:MAX_VALUES]
    text = cast(Application.snapshot, String)
    candidates = session.scalars(
        select(Application)
        .options(joinedload(Application.call))
        .where(
            Application.id != app.id,
            Application.definition_id.in_(sorted(definitions)),
            Application.state.not_in(EXCLUDED_STATES),
            or_(*(text.ilike(_like(n), escape="\\") for n in needles)),
        )
        .order_by(Application.id)
    ).all()
    warnings: list[DuplicateWarning] = []
    for other in candidates:
        other_program = compiled(session, other.definition_id).program
        theirs = values_by_key(other_program, _form(other))
        for key in definitions[other.definition_id]:
            for value in sorted(set(mine.get(key, {})) & set(theirs.get(key, {}))):
                original, df = mine[key][value]
                try:
                    state_label = other_program.state(other.state).label
                except KeyError:
                    state_label = Text(zh=other.state)
                warnings.append(
                    DuplicateWarning(
                        dedupe_key=key,
                        label=df.label,
                        value=original,
                        other_id=other.id,
                        other_number=other.number,
                        other_program=other.program_code,
                        other_program_name=other_program.name,
                        other_year=other.call.year,
                        other_state=other.state,
                        other_state_label=state_label,
                    )
                )
    return warnings
