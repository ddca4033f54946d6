"""Creating and changing calls (a program's yearly round)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from ..audit import record_event
from ..definitions.loader import latest_definition
from ..engine import compiled
from ..errors import ValidationFailed
from ..models import Call, User


def create_call(
    session: Session,
    *,
    program_code: str,
    year: int,
    title: str,
    opens_on: date,
    closes_on: date,
    budget_yuan: Decimal | str,
    params: dict[str, Any] | None = None,
    actor: User | None = None,
) -> Call:
    """Open a call on the latest definition version. The full parameter set in force
    (defaults overlaid with ``params``) is stored on the call, so a later change of the
    definition's defaults never rewrites this call's rules."""
    definition = latest_definition(session, program_code)
    if definition is None:
        raise ValidationFailed("没有该项目的定义。", f"No definition for '{program_code}'.")
    program = compiled(session, definition.id).program
    unknown = set(params or {}) - set(program.parameters)
    if unknown:
        raise ValidationFailed(
            f"未知参数：{', '.join(sorted(unknown))}", f"Unknown parameters: {sorted(unknown)}"
        )
    if closes_on < opens_on:
        raise ValidationFailed("截止日期早于开始日期。", "The call closes before it opens.")
    merged = {**program.default_params(), **(params or {})}
    budget_fen = int((Decimal(str(budget_yuan)) * 100).to_integral_value())
    call = Call(
        program_code=program_code,
        definition_id=definition.id,
        year=year,
        title=title,
        opens_on=opens_on,
        closes_on=closes_on,
        budget_fen=budget_fen,
        committed_fen=0,
        params={k: (str(v) if isinstance(v, Decimal | date) else v) for k, v in merged.items()},
    )
    session.add(call)
    session.flush()
    record_event(
        session,
        action="call.create",
        entity_type="call",
        entity_id=call.id,
        actor_id=actor.id if actor else None,
        data={"program": program_code, "year": year, "budget_fen": budget_fen},
    )
    return call
