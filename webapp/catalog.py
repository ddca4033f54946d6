"""Read-side helpers shared by views: the programs on offer and their current calls."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select

from workflow.definitions.schema import Program
from workflow.engine import compiled
from workflow.models import Call

from .extensions import db


@dataclass
class ProgramCard:
    program: Program
    calls: list[Call]


def program_cards(today: date) -> list[ProgramCard]:
    """Every program with a call that is open or upcoming, newest definition first."""
    calls = db.session.scalars(
        select(Call)
        .where(Call.status == "published", Call.closes_on >= today)
        .order_by(Call.program_code, Call.opens_on)
    ).all()
    cards: dict[str, ProgramCard] = {}
    for call in calls:
        program = compiled(db.session, call.definition_id).program
        card = cards.setdefault(call.program_code, ProgramCard(program, []))
        card.calls.append(call)
    return list(cards.values())


def program_for_call(call: Call) -> Program:
    return compiled(db.session, call.definition_id).program
