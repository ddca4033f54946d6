"""Working days (工作日) in mainland China, including 调休 make-up workdays.

Deadlines such as "公示 5 个工作日" or "补正 5 个工作日" (programs.md §1.2) must follow the
State Council's yearly holiday arrangement (国务院办公厅关于…部分节假日安排的通知),
in which some weekdays are holidays and some weekends are make-up workdays. The data
comes from the maintained package ``chinesecalendar`` (import name ``chinese_calendar``).

Coverage
    The package only knows the years it ships data for (``chinesecalendar`` 1.11.0:
    2004–2026). For any date outside :func:`covered_years` — and outside years added with
    :func:`register_overrides` — every function raises :class:`CalendarNotCoveredError`
    instead of guessing "Monday to Friday".

Conventions
    * :func:`add_working_days` ``(d, n)`` is the date of the *n*-th working day **after**
      ``d`` (``d`` itself never counts): Friday + 1 → the next working day (usually
      Monday). ``n == 0`` returns ``d`` if it is a working day, else the next working day.
    * :func:`working_days_between` ``(start, end)`` counts working days in the half-open
      interval ``(start, end]``: ``start`` excluded, ``end`` included. So for ``n ≥ 1``,
      ``working_days_between(d, add_working_days(d, n)) == n``.

Updating the calendar
    1. Preferred: upgrade the package once it has the new year
       (``pip install -U chinesecalendar``; raise the minimum in ``pyproject.toml``).
    2. Before the package is released: at application start-up, call
       ``register_overrides({date: is_working_day, …}, years=[2027])`` with every holiday
       that falls on a weekday (``False``) and every make-up weekend workday (``True``) of
       the new year; listing the year in ``years`` declares the arrangement complete, which
       makes that year covered. Overrides also take precedence over the package for years
       it already covers (e.g. a corrected arrangement).
    3. Per call, ``overrides=`` adjusts single days (e.g. a local closure) but does not
       extend coverage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Final

import chinese_calendar
from chinese_calendar import constants as _calendar_data

Overrides = Mapping[date, bool]
"""``date → True`` (working day) / ``False`` (day off)."""

_PACKAGE_YEARS: Final = range(
    min(d.year for d in _calendar_data.holidays),
    max(d.year for d in _calendar_data.holidays) + 1,
)

_registered_overrides: dict[date, bool] = {}
_registered_years: set[int] = set()


class CalendarNotCoveredError(ValueError):
    """The date lies in a year whose official holiday arrangement is not known."""

    def __init__(self, d: date):
        self.date = d
        covered = covered_years()
        extra = sorted(set(_registered_years) - set(covered))
        extra_text = f" plus registered {extra}" if extra else ""
        super().__init__(
            f"no official holiday arrangement for {d.isoformat()} (year {d.year}); the "
            f"working-day calendar covers {covered.start}–{covered.stop - 1}{extra_text}. "
            "Upgrade chinesecalendar or call workflow.domain.workdays.register_overrides()."
        )

    def __reduce__(self) -> tuple[type[CalendarNotCoveredError], tuple[date]]:
        # Keep the exception picklable (e.g. when a background job fails with it).
        return (type(self), (self.date,))


def covered_years() -> range:
    """Years for which the installed ``chinesecalendar`` has the official arrangement.

    Years added with :func:`register_overrides` are covered as well but are not part of
    this range (they need not be contiguous); see :func:`is_year_covered`.
    """
    return _PACKAGE_YEARS


def is_year_covered(year: int) -> bool:
    """``True`` if working days can be computed for ``year``."""
    return year in _PACKAGE_YEARS or year in _registered_years


def register_overrides(overrides: Overrides, *, years: Iterable[int] = ()) -> None:
    """Add process-wide day overrides, optionally declaring whole years covered.

    ``overrides`` maps dates to ``True`` (working day) or ``False`` (day off) and wins over
    the package data. ``years`` lists years whose *complete* arrangement is contained in
    ``overrides`` (all weekday holidays and all make-up weekend workdays), which makes them
    covered. An override for a date in a year that is neither in the package nor in
    ``years`` (now or earlier) raises ``ValueError``: a partial arrangement must not pass
    for a complete one. Call it at application start-up; later calls add to earlier ones.
    """
    new_years = {int(y) for y in years}
    checked: dict[date, bool] = {}
    for day, working in overrides.items():
        day = _as_date(day)
        if not isinstance(working, bool):
            raise TypeError(f"override for {day} must be True/False, not {working!r}")
        if not (is_year_covered(day.year) or day.year in new_years):
            raise ValueError(
                f"override for {day} is in year {day.year}, which is not covered; pass "
                f"years=[{day.year}] if the mapping holds that year's full arrangement"
            )
        checked[day] = working
    _registered_overrides.update(checked)
    _registered_years.update(new_years)


def clear_overrides() -> None:
    """Remove every registered override and registered year (mainly for tests)."""
    _registered_overrides.clear()
    _registered_years.clear()


def _as_date(d: object) -> date:
    if isinstance(d, datetime):
        return d.date()
    if isinstance(d, date):
        return d
    raise TypeError(f"expected a date, not {type(d).__name__}")


def _is_working(d: date, overrides: Overrides | None) -> bool:
    """Working-day status of ``d``; the caller has already checked the type."""
    if not is_year_covered(d.year):
        raise CalendarNotCoveredError(d)
    if overrides and d in overrides:
        return bool(overrides[d])
    if d in _registered_overrides:
        return _registered_overrides[d]
    if d.year in _PACKAGE_YEARS:
        return bool(chinese_calendar.is_workday(d))
    # A registered year: its overrides hold all exceptions; otherwise Monday–Friday.
    return d.weekday() < 5


def is_working_day(d: date, overrides: Overrides | None = None) -> bool:
    """``True`` if ``d`` is a working day (make-up weekend workdays included).

    ``overrides`` (optional) takes precedence for individual dates. Raises
    :class:`CalendarNotCoveredError` outside the covered years.
    """
    return _is_working(_as_date(d), overrides)


def add_working_days(d: date, n: int, overrides: Overrides | None = None) -> date:
    """The ``n``-th working day after ``d`` (``d`` itself is not counted).

    ``add_working_days(friday, 1)`` is the next working day. ``n == 0`` returns ``d`` if it
    is a working day, otherwise the next working day. ``n`` must be ≥ 0. Raises
    :class:`CalendarNotCoveredError` if ``d`` or any day stepped over is outside the
    covered years.
    """
    day = _as_date(d)
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, not {type(n).__name__}")
    if n < 0:
        raise ValueError(f"n must be ≥ 0: {n}")
    if n == 0:
        while not _is_working(day, overrides):
            day += timedelta(days=1)
        return day
    if not is_year_covered(day.year):
        raise CalendarNotCoveredError(day)
    remaining = n
    while remaining:
        day += timedelta(days=1)
        if _is_working(day, overrides):
            remaining -= 1
    return day


def working_days_between(start: date, end: date, overrides: Overrides | None = None) -> int:
    """Number of working days in the half-open interval ``(start, end]``.

    ``start`` is excluded and ``end`` included, so ``working_days_between(d, d) == 0`` and
    ``working_days_between(thursday, friday) == 1``. ``end`` before ``start`` raises
    ``ValueError``. Raises :class:`CalendarNotCoveredError` if ``start`` or any day in the
    interval is outside the covered years.
    """
    first = _as_date(start)
    last = _as_date(end)
    if last < first:
        raise ValueError(f"end {last} is before start {first}")
    if not is_year_covered(first.year):
        raise CalendarNotCoveredError(first)
    count = 0
    day = first
    while day < last:
        day += timedelta(days=1)
        if _is_working(day, overrides):
            count += 1
    return count
