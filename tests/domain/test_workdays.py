"""Tests for the working-day calendar (programs.md §1.2), on real 2025/2026 arrangements.

2025 National Day + Mid-Autumn: 10-01..10-08 off; make-up workdays Sun 09-28 and Sat 10-11.
2026 New Year: 01-01..01-03 off; make-up workday Sun 01-04.
2026 Spring Festival: 02-15..02-23 off; make-up workdays Sat 02-14 and Sat 02-28.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import pytest
from chinese_calendar import constants as calendar_data

from workflow.domain import (
    CalendarNotCoveredError,
    add_working_days,
    clear_overrides,
    covered_years,
    is_working_day,
    register_overrides,
    working_days_between,
)
from workflow.domain.workdays import is_year_covered


@pytest.fixture(autouse=True)
def _no_registered_overrides() -> Iterator[None]:
    clear_overrides()
    yield
    clear_overrides()


@pytest.mark.parametrize(
    ("d", "working"),
    [
        (date(2025, 9, 26), True),  # Fri
        (date(2025, 9, 27), False),  # Sat
        (date(2025, 9, 28), True),  # Sun, make-up workday
        (date(2025, 9, 30), True),
        *[(date(2025, 10, day), False) for day in range(1, 9)],  # 10-01..10-08 off
        (date(2025, 10, 9), True),
        (date(2025, 10, 11), True),  # Sat, make-up workday
        (date(2025, 10, 12), False),  # Sun
        (date(2026, 1, 1), False),
        (date(2026, 1, 2), False),  # Fri, holiday
        (date(2026, 1, 4), True),  # Sun, make-up workday
        (date(2026, 2, 13), True),
        (date(2026, 2, 14), True),  # Sat, make-up workday
        *[(date(2026, 2, day), False) for day in range(15, 24)],  # 02-15..02-23 off
        (date(2026, 2, 24), True),
        (date(2026, 2, 28), True),  # Sat, make-up workday
        (date(2026, 3, 1), False),  # Sun
        (date(2026, 3, 2), True),  # ordinary Monday
    ],
)
def test_is_working_day(d: date, working: bool) -> None:
    assert is_working_day(d) is working


def test_datetime_is_accepted() -> None:
    assert is_working_day(datetime(2025, 9, 28, 23, 59)) is True


@pytest.mark.parametrize("bad", ["2025-10-01", None, 20251001])
def test_is_working_day_rejects_non_dates(bad: object) -> None:
    with pytest.raises(TypeError):
        is_working_day(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        (date(2025, 9, 26), 1, date(2025, 9, 28)),  # Fri + 1 → make-up Sunday
        (date(2025, 9, 30), 1, date(2025, 10, 9)),  # over National Day
        (date(2025, 9, 30), 3, date(2025, 10, 11)),  # 10-09, 10-10, Sat 10-11
        (date(2025, 9, 26), 5, date(2025, 10, 10)),  # 公示 5 个工作日
        (date(2025, 10, 3), 1, date(2025, 10, 9)),  # start on a holiday
        (date(2025, 11, 14), 1, date(2025, 11, 17)),  # ordinary Fri → Mon
        (date(2025, 11, 14), 5, date(2025, 11, 21)),
        (date(2025, 12, 31), 1, date(2026, 1, 4)),  # year boundary, make-up Sunday
        (date(2026, 2, 13), 1, date(2026, 2, 14)),
        (date(2026, 2, 14), 1, date(2026, 2, 24)),  # over Spring Festival
        (date(2026, 2, 13), 6, date(2026, 2, 28)),
        # n = 0: d if working, else the next working day
        (date(2025, 10, 9), 0, date(2025, 10, 9)),
        (date(2025, 10, 1), 0, date(2025, 10, 9)),
        (date(2025, 9, 27), 0, date(2025, 9, 28)),
        (date(2026, 2, 15), 0, date(2026, 2, 24)),
    ],
)
def test_add_working_days(start: date, n: int, expected: date) -> None:
    assert add_working_days(start, n) == expected


@pytest.mark.parametrize(("n", "error"), [(-1, ValueError), (True, TypeError), (1.0, TypeError)])
def test_add_working_days_rejects_bad_n(n: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        add_working_days(date(2025, 10, 9), n)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (date(2025, 9, 30), date(2025, 10, 9), 1),
        (date(2025, 9, 26), date(2025, 10, 10), 5),
        (date(2025, 9, 26), date(2025, 10, 12), 6),
        (date(2025, 10, 1), date(2025, 10, 8), 0),
        (date(2025, 10, 9), date(2025, 10, 9), 0),
        (date(2025, 10, 9), date(2025, 10, 10), 1),  # (start, end]: end counts
        (date(2025, 10, 8), date(2025, 10, 9), 1),
        (date(2026, 2, 13), date(2026, 2, 28), 6),
        (date(2025, 12, 31), date(2026, 1, 4), 1),
    ],
)
def test_working_days_between(start: date, end: date, expected: int) -> None:
    assert working_days_between(start, end) == expected


def test_working_days_between_rejects_reversed_interval() -> None:
    with pytest.raises(ValueError, match="before start"):
        working_days_between(date(2025, 10, 9), date(2025, 10, 8))


def test_between_inverts_add() -> None:
    start = date(2025, 9, 1)
    for offset in range(0, 180, 3):
        d = start + timedelta(days=offset)
        for n in (1, 2, 5, 10):
            assert working_days_between(d, add_working_days(d, n)) == n


def test_covered_years_match_the_package_data() -> None:
    years = covered_years()
    assert isinstance(years, range)
    assert 2025 in years and 2026 in years
    assert years.start == min(d.year for d in calendar_data.holidays)
    assert years.stop - 1 == max(d.year for d in calendar_data.holidays)


def test_uncovered_years_raise() -> None:
    after = date(covered_years().stop, 1, 4)
    before = date(covered_years().start - 1, 6, 1)
    for d in (after, before):
        with pytest.raises(CalendarNotCoveredError, match=str(d.year)):
            is_working_day(d)
    assert issubclass(CalendarNotCoveredError, ValueError)
    last = date(covered_years().stop - 1, 12, 31)
    with pytest.raises(CalendarNotCoveredError):
        add_working_days(last, 1)
    with pytest.raises(CalendarNotCoveredError):
        add_working_days(after, 0)
    with pytest.raises(CalendarNotCoveredError):
        working_days_between(last, after)
    with pytest.raises(CalendarNotCoveredError):
        working_days_between(before, before)


def test_per_call_overrides() -> None:
    closed = {date(2025, 10, 9): False}
    assert is_working_day(date(2025, 10, 9), overrides=closed) is False
    assert add_working_days(date(2025, 9, 30), 1, overrides=closed) == date(2025, 10, 10)
    assert working_days_between(date(2025, 9, 30), date(2025, 10, 10), overrides=closed) == 1
    # per-call overrides do not extend coverage
    next_year = covered_years().stop
    with pytest.raises(CalendarNotCoveredError):
        is_working_day(date(next_year, 1, 4), overrides={date(next_year, 1, 4): True})


def test_register_overrides_for_a_new_year() -> None:
    year = covered_years().stop  # first year the package does not know
    new_years_day = date(year, 1, 1)
    first_saturday = next(
        date(year, 1, day) for day in range(1, 8) if date(year, 1, day).weekday() == 5
    )
    register_overrides({new_years_day: False, first_saturday: True}, years=[year])
    assert is_year_covered(year)
    assert is_working_day(new_years_day) is False
    assert is_working_day(first_saturday) is True
    assert is_working_day(first_saturday + timedelta(days=1)) is False  # ordinary Sunday
    assert is_working_day(first_saturday + timedelta(days=2)) is True  # ordinary Monday
    last = date(year - 1, 12, 31)
    expected = min(d for d in (date(year, 1, 2), first_saturday) if is_working_day(d))
    assert add_working_days(last, 1) == expected
    clear_overrides()
    assert not is_year_covered(year)


def test_register_overrides_can_correct_a_covered_year() -> None:
    register_overrides({date(2025, 10, 10): False})
    assert is_working_day(date(2025, 10, 10)) is False
    assert add_working_days(date(2025, 9, 30), 2) == date(2025, 10, 11)


def test_register_overrides_refuses_partial_new_year() -> None:
    year = covered_years().stop
    with pytest.raises(ValueError, match=f"years=\\[{year}\\]"):
        register_overrides({date(year, 1, 1): False})
    assert not is_year_covered(year)


@pytest.mark.parametrize(
    ("overrides", "error"),
    [({date(2025, 10, 10): 0}, TypeError), ({"2025-10-10": False}, TypeError)],
)
def test_register_overrides_validates(overrides: dict, error: type[Exception]) -> None:
    with pytest.raises(error):
        register_overrides(overrides)


def test_error_is_picklable() -> None:
    error = CalendarNotCoveredError(date(covered_years().stop, 1, 1))
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
    assert isinstance(copy, CalendarNotCoveredError)
    assert copy.date == error.date and str(copy) == str(error)
