"""Reviewer queues (待办队列): which applications a reviewer sees, and one page of them.

Visibility is the SQL form of ``permissions.roles_for``: never drafts; a staff grant
covers the applications inside its program and district limits; an expert grant covers
only applications with a live (not recused) expert assignment for that user.

A queue shows open work: applications in an open stage (``OPEN_STAGES``: district review
to objection review). Decided, paid and closed applications are history; each of those
stages is a queue of its own when asked for. Filters, counts and pages use
``Application.stage`` (kept in step with the state at every flush), so the counts read only
open work and every page is a range scan of a queue index (see the model's indexes and
docs/PERFORMANCE.md), whatever the size of the history.

Pages use keyset pagination: the cursor is the last row's sort value and id, so page 1,000
costs what page 1 costs and rows inserted meanwhile never shift a page. A page costs a
constant number of queries (the counts per stage and the page itself, with organization,
call and holder loaded in the same statement), whatever its size or position.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, false, func, or_, select, true, tuple_
from sqlalchemy.orm import Session, contains_eager, joinedload, lazyload, load_only

from .engine import compiled
from .models import Application, Organization, Review, User
from .models.applications import OPEN_STAGES
from .permissions import STAFF_ROLES

# Stages after the decision: not work for a reviewer, listed when asked for.
HISTORY_STAGES = ("decided", "payment", "closed")
# Stages in the order an application meets them (the counts bar follows it).
STAGE_ORDER = OPEN_STAGES + HISTORY_STAGES
SORTS = {
    "submitted": Application.submitted_at,
    "deadline": Application.deadline_on,
    "number": Application.number,
    "award": Application.award_fen,
}
PER_PAGE_CHOICES = (10, 25, 50, 100)
DEFAULT_PER_PAGE = 25
_CURSOR_VERSION = 1


class BadCursor(ValueError):
    """A cursor that was not produced by this module (or for another sort)."""


@dataclass(frozen=True)
class QueueQuery:
    """What the reviewer asked for. Values are already validated by the caller."""

    program: str | None = None
    call_id: int | None = None
    district: str | None = None
    state: str | None = None
    stage: str | None = None
    overdue: bool = False
    mine: bool = False
    q: str | None = None
    sort: str = "submitted"
    descending: bool = False
    per_page: int = DEFAULT_PER_PAGE
    cursor: str | None = None

    def without_cursor(self) -> QueueQuery:
        return replace(self, cursor=None)


@dataclass
class Page:
    items: list[Application]
    counts: dict[str, int]
    total: int
    next_cursor: str | None = None
    prev_cursor: str | None = None
    bad_cursor: bool = False


# ---------------------------------------------------------------- visibility


def _scope(grant_program: str | None, grant_district: str | None) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if grant_program:
        conds.append(Application.program_code == grant_program)
    if grant_district:
        conds.append(Application.district == grant_district)
    return conds


def visible_clause(user: User) -> ColumnElement[bool]:
    """SQL for "``user`` may see this application in a queue" (see the module doc)."""
    if not isinstance(user, User) or not user.active:
        return false()
    alternatives: list[ColumnElement[bool]] = []
    for g in user.grants:
        if g.role == "expert":
            assigned = exists(
                select(Review.id).where(
                    Review.application_id == Application.id,
                    Review.reviewer_id == user.id,
                    Review.kind == "expert",
                    Review.status != "recused",
                )
            )
            alternatives.append(and_(assigned, *_scope(g.program_code, g.district)))
        elif g.role in STAFF_ROLES:
            conds = _scope(g.program_code, g.district)
            alternatives.append(and_(*conds) if conds else true())
    if not alternatives:
        return false()
    # ``stage`` rather than ``state``: the same rows (a draft's stage is "draft"), but a
    # column of the queue indexes, so counts are index-only scans.
    return and_(Application.stage != "draft", or_(*alternatives))


def _search_clause(q: str) -> ColumnElement[bool]:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"
    return or_(
        Organization.name.ilike(pattern, escape="\\"),
        Organization.credit_code.ilike(pattern, escape="\\"),
        Application.number.ilike(pattern, escape="\\"),
    )


def _filters(user: User, query: QueueQuery, today: date) -> list[ColumnElement[bool]]:
    """Every condition except the stage (the counts are computed across stages)."""
    conds = [visible_clause(user)]
    if query.program:
        conds.append(Application.program_code == query.program)
    if query.call_id is not None:
        conds.append(Application.call_id == query.call_id)
    if query.district:
        conds.append(Application.district == query.district)
    if query.state:
        conds.append(Application.state == query.state)
    if query.overdue:
        conds.append(Application.deadline_on < today)
    if query.mine:
        conds.append(Application.assigned_to_id == user.id)
    if query.q:
        conds.append(_search_clause(query.q))
    return conds


def _stage_scope(query: QueueQuery) -> ColumnElement[bool] | None:
    """Which stages the page lists: the one asked for, or all open work. A state filter
    names its own stage, so it needs none."""
    if query.stage:
        return Application.stage == query.stage
    if query.state:
        return None
    return Application.stage.in_(OPEN_STAGES)


def _with_search_join(stmt: Any, query: QueueQuery) -> Any:
    # The organization is needed only to search by its name or credit code.
    if query.q:
        return stmt.join(Organization, Organization.id == Application.organization_id)
    return stmt


# ---------------------------------------------------------------- counts


def stage_of(session: Session, definition_id: int, state: str) -> str:
    try:
        return compiled(session, definition_id).program.state(state).stage
    except KeyError:
        return "closed"


def stage_counts(session: Session, user: User, query: QueueQuery, today: date) -> dict[str, int]:
    """Applications per stage under the current filters (one GROUP BY query): every open
    stage, and the stage asked for if it is a closed one (history is counted only when
    it is looked at)."""
    stages = set(OPEN_STAGES) | ({query.stage} if query.stage else set())
    conds = _filters(user, query, today)
    if not query.state:
        conds.append(Application.stage.in_(sorted(stages)))
    stmt = _with_search_join(
        select(Application.stage, func.count()).select_from(Application), query
    )
    rows = session.execute(stmt.where(*conds).group_by(Application.stage)).all()
    counts = {stage: int(n) for stage, n in rows}
    ordered = {s: counts[s] for s in STAGE_ORDER if s in counts}
    ordered.update({s: n for s, n in counts.items() if s not in ordered})
    return ordered


# ---------------------------------------------------------------- cursors


def _dump_key(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _load_key(sort: str, raw: Any) -> Any:
    if raw is None:
        return None
    if sort == "submitted":
        if not isinstance(raw, str):
            raise BadCursor
        value = datetime.fromisoformat(raw)
        if value.tzinfo is None:
            raise BadCursor
        return value
    if sort == "deadline":
        if not isinstance(raw, str):
            raise BadCursor
        return date.fromisoformat(raw)
    if sort == "award":
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise BadCursor
        return raw
    if not isinstance(raw, str):
        raise BadCursor
    return raw


def encode_cursor(query: QueueQuery, row: Application, *, backward: bool) -> str:
    key = getattr(row, SORTS[query.sort].key)
    body = {
        "v": _CURSOR_VERSION,
        "s": query.sort,
        "d": "desc" if query.descending else "asc",
        "k": _dump_key(key),
        "i": row.id,
        "b": backward,
    }
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(query: QueueQuery, cursor: str) -> tuple[Any, int, bool]:
    """(sort value, id, backward) from an opaque cursor, or BadCursor."""
    try:
        if len(cursor) > 500:
            raise BadCursor
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body = json.loads(raw)
        if not isinstance(body, dict) or body.get("v") != _CURSOR_VERSION:
            raise BadCursor
        if body.get("s") != query.sort:
            raise BadCursor
        if body.get("d") != ("desc" if query.descending else "asc"):
            raise BadCursor
        row_id = body.get("i")
        if not isinstance(row_id, int) or isinstance(row_id, bool) or row_id < 1:
            raise BadCursor
        backward = body.get("b")
        if not isinstance(backward, bool):
            raise BadCursor
        return _load_key(query.sort, body.get("k")), row_id, backward
    except (binascii.Error, ValueError, UnicodeDecodeError, TypeError) as exc:
        raise BadCursor from exc


# ---------------------------------------------------------------- the page


def _keyset(
    column: Any, key: Any, row_id: int, *, descending: bool, after: bool
) -> ColumnElement[bool]:
    """Rows strictly after (or before) ``(key, row_id)`` in the order
    ``(key IS NULL, key, id)``, with NULL keys last whatever the direction."""
    forward = after != descending  # comparison sense for key and id

    def beyond(a: Any, b: Any) -> ColumnElement[bool]:
        return a > b if forward else a < b

    if key is None:
        if after:
            return and_(column.is_(None), beyond(Application.id, row_id))
        return or_(column.is_not(None), and_(column.is_(None), beyond(Application.id, row_id)))
    tail = or_(beyond(column, key), and_(column == key, beyond(Application.id, row_id)))
    if after:
        return or_(column.is_(None), and_(column.is_not(None), tail))
    return and_(column.is_not(None), tail)


def _order(column: Any, *, descending: bool, reverse: bool) -> list[Any]:
    nulls_last = case((column.is_(None), 1), else_=0)
    down = descending != reverse
    return [
        nulls_last.desc() if reverse else nulls_last.asc(),
        column.desc() if down else column.asc(),
        Application.id.desc() if down else Application.id.asc(),
    ]


def _submitted_order(*, descending: bool, reverse: bool) -> list[Any]:
    """Submission order straight off the queue indexes: a listed application has always
    been submitted, so ``submitted_at`` needs no NULL handling."""
    down = descending != reverse
    if down:
        return [Application.submitted_at.desc(), Application.id.desc()]
    return [Application.submitted_at.asc(), Application.id.asc()]


def _submitted_keyset(key: Any, row_id: int, *, descending: bool, after: bool) -> Any:
    if key is None:
        raise BadCursor
    pair, mark = tuple_(Application.submitted_at, Application.id), tuple_(key, row_id)
    return pair > mark if after != descending else pair < mark


# What a queue row shows; the frozen JSON (~12 KB per application) is never fetched.
_ROW_COLUMNS = (
    Application.number,
    Application.state,
    Application.stage,
    Application.program_code,
    Application.district,
    Application.organization_id,
    Application.call_id,
    Application.definition_id,
    Application.submitted_at,
    Application.deadline_on,
    Application.award_fen,
    Application.assigned_to_id,
    Application.version,
)


def queue_page(session: Session, user: User, query: QueueQuery, today: date) -> Page:
    """One page of the reviewer's queue, with counts per stage.

    A cursor that cannot be read (edited by hand, or made for another sort) gives the
    first page and ``bad_cursor=True`` so the caller can say so.
    """
    counts = stage_counts(session, user, query, today)
    conds = _filters(user, query, today)
    scope = _stage_scope(query)
    if scope is not None:
        conds.append(scope)
    by_submission = query.sort == "submitted"
    if by_submission:
        conds.append(Application.submitted_at.is_not(None))
    column = SORTS[query.sort]
    bad = False
    backward = False
    if query.cursor:
        try:
            key, row_id, backward = decode_cursor(query, query.cursor)
            if by_submission:
                keyset = _submitted_keyset(
                    key, row_id, descending=query.descending, after=not backward
                )
            else:
                keyset = _keyset(
                    column, key, row_id, descending=query.descending, after=not backward
                )
            conds.append(keyset)
        except BadCursor:
            bad, backward = True, False
    if by_submission:
        order = _submitted_order(descending=query.descending, reverse=backward)
    else:
        order = _order(column, descending=query.descending, reverse=backward)
    stmt = (
        select(Application)
        .join(Organization, Organization.id == Application.organization_id)
        .options(
            load_only(*_ROW_COLUMNS),
            contains_eager(Application.organization).load_only(
                Organization.name, Organization.credit_code, Organization.district
            ),
            joinedload(Application.call),
            joinedload(Application.assigned_to).options(
                load_only(User.name, User.email), lazyload(User.grants)
            ),
        )
        .where(*conds)
        .order_by(*order)
        .limit(query.per_page + 1)
    )
    rows = list(session.scalars(stmt).unique().all())
    more = len(rows) > query.per_page
    rows = rows[: query.per_page]
    if backward:
        rows.reverse()
    open_total = sum(n for stage, n in counts.items() if stage in OPEN_STAGES)
    page = Page(items=rows, counts=counts, total=open_total, bad_cursor=bad)
    if rows:
        has_next = more if not backward else True
        has_prev = (more if backward else True) if query.cursor and not bad else False
        if has_next:
            page.next_cursor = encode_cursor(query, rows[-1], backward=False)
        if has_prev:
            page.prev_cursor = encode_cursor(query, rows[0], backward=True)
    return page


def visible_applications(session: Session, user: User, ids: Iterable[int]) -> list[Application]:
    """The applications among ``ids`` that ``user`` may see (for batch actions), in the
    order given; unknown or invisible ids are simply absent."""
    wanted = list(dict.fromkeys(int(i) for i in ids))
    if not wanted:
        return []
    rows = session.scalars(
        select(Application)
        .join(Organization, Organization.id == Application.organization_id)
        .options(contains_eager(Application.organization), joinedload(Application.call))
        .where(Application.id.in_(wanted), visible_clause(user))
    ).all()
    by_id = {a.id: a for a in rows}
    return [by_id[i] for i in wanted if i in by_id]
