"""Reviewer queues: scoping by grants, filters, search, keyset pagination in both
directions, counts per stage, and a constant number of queries per page."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event

from workflow.engine import compiled
from workflow.models import Application, Review
from workflow.queues import QueueQuery, decode_cursor, encode_cursor, queue_page

TODAY = date(2026, 11, 20)
T0 = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)


def add_app(session, make, call, *, district="朝阳区", state="district_review", n=0, **kw):
    """An application row in a given state without walking the workflow (queue tests
    look at rows, not transitions)."""
    org = make.org(district=district, name=kw.pop("name", None))
    app = Application(
        organization_id=org.id,
        call_id=call.id,
        definition_id=call.definition_id,
        program_code=call.program_code,
        district=district,
        state=state,
        form_data={},
        snapshot={"form": {}},
        number=kw.pop("number", f"Q{call.id:03d}-{org.id:06d}"),
        submitted_at=kw.pop("submitted_at", T0 + timedelta(hours=n)),
        **kw,
    )
    session.add(app)
    session.flush()
    return app


@pytest.fixture
def cert_call(make):
    return make.call("certification_reward", params={"district_prereview": True})


def ids(page):
    return [a.id for a in page.items]


def test_district_officer_sees_only_their_district(session, make, cert_call):
    mine = add_app(session, make, cert_call, district="朝阳区", n=1)
    add_app(session, make, cert_call, district="南关区", n=2)
    add_app(session, make, cert_call, district="朝阳区", state="draft", n=3)
    officer = make.user("district_officer", district="朝阳区")
    page = queue_page(session, officer, QueueQuery(), TODAY)
    assert ids(page) == [mine.id]
    assert page.total == 1


def test_program_scoped_grant(session, make, cert_call):
    pledge = make.call("pledge_loan_subsidy")
    cert = add_app(session, make, cert_call, state="city_review", n=1)
    add_app(session, make, pledge, state="city_review", n=2)
    officer = make.user("city_officer", program="certification_reward")
    assert ids(queue_page(session, officer, QueueQuery(), TODAY)) == [cert.id]
    everyone = make.user("city_officer")
    assert len(queue_page(session, everyone, QueueQuery(), TODAY).items) == 2


def test_expert_sees_only_assigned_applications(session, make, cert_call):
    a = add_app(session, make, cert_call, state="city_review", n=1)
    b = add_app(session, make, cert_call, state="city_review", n=2)
    c = add_app(session, make, cert_call, state="city_review", n=3)
    expert = make.user("expert")
    session.add(Review(application_id=a.id, reviewer_id=expert.id, stage="x", kind="expert"))
    session.add(
        Review(
            application_id=b.id,
            reviewer_id=expert.id,
            stage="x",
            kind="expert",
            status="recused",
        )
    )
    other = make.user("expert")
    session.add(Review(application_id=c.id, reviewer_id=other.id, stage="x", kind="expert"))
    session.flush()
    assert ids(queue_page(session, expert, QueueQuery(), TODAY)) == [a.id]


def test_applicant_sees_nothing(session, make, cert_call):
    add_app(session, make, cert_call)
    assert queue_page(session, make.applicant(), QueueQuery(), TODAY).items == []


def test_filters(session, make, cert_call):
    officer = make.user("city_officer")
    late = add_app(session, make, cert_call, n=1, deadline_on=TODAY - timedelta(days=1))
    add_app(session, make, cert_call, n=2, deadline_on=TODAY)
    held = add_app(session, make, cert_call, n=3, state="city_review", assigned_to_id=officer.id)
    south = add_app(session, make, cert_call, n=4, district="南关区", state="approval")

    def run(**kw):
        return ids(queue_page(session, officer, QueueQuery(**kw), TODAY))

    assert run(overdue=True) == [late.id]
    assert run(mine=True) == [held.id]
    assert run(district="南关区") == [south.id]
    assert run(state="city_review") == [held.id]
    assert run(stage="approval") == [south.id]
    assert run(stage="eligibility") == [held.id]
    assert run(stage="expert") == []
    assert len(run(call_id=cert_call.id)) == 4
    assert run(call_id=cert_call.id + 999) == []
    assert run(program="pledge_loan_subsidy") == []


def test_search_by_name_code_and_number_escapes_wildcards(session, make, cert_call):
    officer = make.user("city_officer")
    a = add_app(
        session, make, cert_call, n=1, name="长春光华精密仪器有限公司", number="GB2026-000001"
    )
    b = add_app(
        session, make, cert_call, n=2, name="吉林北方100%电子有限公司", number="GB2026-000002"
    )

    def run(q):
        return ids(queue_page(session, officer, QueueQuery(q=q), TODAY))

    assert run("光华") == [a.id]
    assert run("gb2026-000002") == [b.id]
    assert run(a.organization.credit_code.lower()) == [a.id]
    assert run("100%") == [b.id]
    assert run("%") == [b.id]  # a literal percent sign, not "anything"
    assert run("_") == []
    assert run("GB2026_000001") == []


@pytest.mark.parametrize(
    "sort,descending",
    [
        ("submitted", False),
        ("submitted", True),
        ("award", False),
        ("deadline", False),
        ("deadline", True),
        ("number", True),
    ],
)
def test_keyset_pages_walk_forward_and_back(session, make, cert_call, sort, descending):
    officer = make.user("city_officer")
    apps = []
    for n in range(23):
        apps.append(
            add_app(
                session,
                make,
                cert_call,
                n=n % 7,  # ties on submitted_at: the id breaks them
                award_fen=None if n % 5 == 0 else (n % 4) * 1000,
                deadline_on=None if n % 3 == 0 else TODAY + timedelta(days=n % 4),
            )
        )
    column = {
        "submitted": "submitted_at",
        "award": "award_fen",
        "deadline": "deadline_on",
        "number": "number",
    }[sort]

    def key(a):
        v = getattr(a, column)
        return (v is None, v if v is not None else 0, a.id)

    present = sorted(
        (a for a in apps if getattr(a, column) is not None), key=key, reverse=descending
    )
    absent = sorted(
        (a for a in apps if getattr(a, column) is None), key=lambda a: a.id, reverse=descending
    )
    expected = [a.id for a in present + absent]

    seen, pages = [], []
    query = QueueQuery(sort=sort, descending=descending, per_page=5)
    while True:
        page = queue_page(session, officer, query, TODAY)
        pages.append(page)
        seen += ids(page)
        if not page.next_cursor:
            break
        query = QueueQuery(sort=sort, descending=descending, per_page=5, cursor=page.next_cursor)
    assert seen == expected
    assert len(pages) == 5 and pages[0].prev_cursor is None
    # ...and back from the last page to the first.
    back = []
    page = pages[-1]
    while page.prev_cursor:
        page = queue_page(
            session,
            officer,
            QueueQuery(sort=sort, descending=descending, per_page=5, cursor=page.prev_cursor),
            TODAY,
        )
        back = ids(page) + back
    assert back == expected[: len(back)] and len(back) == 20


def test_bad_cursor_gives_first_page(session, make, cert_call):
    officer = make.user("city_officer")
    for n in range(3):
        add_app(session, make, cert_call, n=n)
    first = queue_page(session, officer, QueueQuery(per_page=2), TODAY)
    for cursor in ("garbage!!", "e30", first.next_cursor[:-3] + "AAA"):
        page = queue_page(session, officer, QueueQuery(per_page=2, cursor=cursor), TODAY)
        assert page.bad_cursor and ids(page) == ids(first)
    # A cursor made for another sort is refused too.
    other = queue_page(
        session, officer, QueueQuery(per_page=2, cursor=first.next_cursor, sort="number"), TODAY
    )
    assert other.bad_cursor


def test_cursor_round_trip(session, make, cert_call):
    app = add_app(session, make, cert_call, deadline_on=TODAY)
    for sort in ("submitted", "deadline", "number", "award"):
        q = QueueQuery(sort=sort)
        key, row_id, backward = decode_cursor(q, encode_cursor(q, app, backward=True))
        assert row_id == app.id and backward is True


def test_counts_per_stage(session, make, cert_call):
    officer = make.user("city_officer")
    for state in ("district_review", "district_review", "city_review", "approval", "rejected"):
        add_app(session, make, cert_call, state=state)
    page = queue_page(session, officer, QueueQuery(stage="approval"), TODAY)
    # Open work is counted on every page; history (here the rejected one) only when its
    # own stage is looked at.
    assert page.counts == {"district": 2, "eligibility": 1, "approval": 1}
    assert len(page.items) == 1 and page.total == 4
    everything = queue_page(session, officer, QueueQuery(), TODAY)
    assert len(everything.items) == 4 and "rejected" not in {a.state for a in everything.items}
    closed = queue_page(session, officer, QueueQuery(stage="closed"), TODAY)
    assert closed.counts["closed"] == 1 and [a.state for a in closed.items] == ["rejected"]
    assert closed.total == 4  # "all open work" stays what it is
    # A state filter lists that state, open or not.
    rejected = queue_page(session, officer, QueueQuery(state="rejected"), TODAY)
    assert [a.state for a in rejected.items] == ["rejected"]


def test_stage_follows_the_state_at_every_flush(session, make, cert_call):
    app = add_app(session, make, cert_call, state="district_review")
    assert app.stage == "district"
    app.state = "public_notice"
    session.flush()
    assert app.stage == "notice"
    app.state = "paid"
    session.flush()
    assert app.stage == "payment"
    session.expire(app)
    assert app.stage == "payment"  # written, not only set in memory


@contextmanager
def count_queries(session):
    statements: list[str] = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    conn = session.connection()
    event.listen(conn, "before_cursor_execute", listener)
    try:
        yield statements
    finally:
        event.remove(conn, "before_cursor_execute", listener)


def test_constant_number_of_queries_per_page(session, make, cert_call):
    compiled(session, cert_call.definition_id)  # definitions are cached once per process
    officer = make.user("city_officer")
    holder = make.user("city_officer")
    for n in range(120):
        add_app(session, make, cert_call, n=n, assigned_to_id=holder.id if n % 2 else None)
    session.expire_all()
    officer = session.get(type(officer), officer.id)
    _ = officer.grants

    def queries(per_page, page_number):
        query = QueueQuery(per_page=per_page)
        for _ in range(page_number - 1):
            query = QueueQuery(
                per_page=per_page, cursor=queue_page(session, officer, query, TODAY).next_cursor
            )
        session.expire_all()
        _ = officer.grants
        with count_queries(session) as statements:
            page = queue_page(session, officer, query, TODAY)
            for app in page.items:  # what the queue template reads
                _ = (
                    app.organization.name,
                    app.call.title,
                    app.assigned_to.name if app.assigned_to else None,
                )
        assert len(page.items) == per_page
        return len(statements)

    counts = {queries(5, 1), queries(5, 3), queries(50, 1), queries(50, 2)}
    assert len(counts) == 1, counts
    assert counts.pop() <= 3
