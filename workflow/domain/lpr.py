"""Loan Prime Rate (LPR, 贷款市场报价利率) lookup from a data table.

The pledge-loan interest subsidy (programs.md §3.2) caps the counted rate at
``LPR_1y(contract_month − 1) × multiplier`` (Beijing style, P12) or pays a share of the
1-year LPR (Qingdao P13, Fujian P14). The LPR itself is **data**: the table lives in
``definitions/tables/lpr.yaml`` (one row per announcement month, percent as strings) and
must be extended every month from the National Interbank Funding Center announcements.

Month semantics: :meth:`LprTable.rate` answers "the LPR published for month M" — the
latest row whose month is on or before M. A ``date`` argument is reduced to its month, so
``date(2024, 10, 5)`` gets the October 2024 quote even though that quote was announced on
the 20th; callers who need "the month before contract signing" pass that month explicitly
(e.g. with :func:`previous_month`).

Staleness: a month more than ``max_staleness_months`` (default 2) after the last row
raises ``LookupError``, so a table nobody has extended is noticed instead of silently
reusing an old rate. A month before the first row also raises ``LookupError``.

:func:`default_lpr_table` loads ``<repo>/definitions/tables/lpr.yaml``, or
``$SHENBAO_TABLES_DIR/lpr.yaml`` when that environment variable is set.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

import yaml

TABLES_DIR_ENV: Final = "SHENBAO_TABLES_DIR"
LPR_FILENAME: Final = "lpr.yaml"
DEFAULT_MAX_STALENESS_MONTHS: Final = 2
TERMS: Final = {"1y": "one_year", "5y": "five_year"}
"""Accepted ``term`` values: ``'1y'`` (1-year LPR) and ``'5y'`` (over-5-year LPR)."""

_MONTH_RE: Final = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
_PERCENT_RE: Final = re.compile(r"[0-9]{1,2}\.[0-9]{2}")


@dataclass(frozen=True, slots=True, order=True)
class Month:
    """A calendar month; ``str(Month(2024, 10)) == '2024-10'``."""

    year: int
    month: int

    @classmethod
    def parse(cls, value: str | date | Month) -> Month:
        """Accept ``'YYYY-MM'``, a ``date``/``datetime`` (its month) or a ``Month``."""
        if isinstance(value, Month):
            return value
        if isinstance(value, date):
            return cls(value.year, value.month)
        if isinstance(value, str):
            match = _MONTH_RE.fullmatch(value.strip())
            if match:
                return cls(int(match[1]), int(match[2]))
            raise ValueError(f"month must look like 'YYYY-MM': {value!r}")
        raise TypeError(f"expected 'YYYY-MM', date or Month, not {type(value).__name__}")

    @property
    def index(self) -> int:
        """Months since year 0, so that differences are month counts."""
        return self.year * 12 + self.month - 1

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def previous_month(value: str | date | Month) -> Month:
    """The month before ``value`` (``'2025-01'`` → ``2024-12``)."""
    month = Month.parse(value)
    index = month.index - 1
    return Month(index // 12, index % 12 + 1)


@dataclass(frozen=True, slots=True)
class LprRow:
    """One announcement month; rates in **percent** (``Decimal('3.10')``)."""

    month: Month
    one_year: Decimal
    five_year: Decimal


def _percent(value: object, where: str) -> Decimal:
    """Parse a percent given as a string ``'3.10'`` (or ``Decimal``); floats are refused."""
    if isinstance(value, Decimal):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ValueError(
            f"{where}: rate must be a quoted string like '3.10', not {type(value).__name__} "
            f"{value!r} (quote it in YAML)"
        )
    if not _PERCENT_RE.fullmatch(text):
        raise ValueError(f"{where}: rate must be a percent with 2 decimals like '3.10': {text!r}")
    try:
        rate = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the regex already guarantees a number
        raise ValueError(f"{where}: not a number: {text!r}") from None
    if not Decimal("0") < rate < Decimal("20"):
        raise ValueError(f"{where}: implausible LPR {text}%")
    return rate


class LprTable:
    """The published LPR by month; build with :meth:`load` or :meth:`from_rows`."""

    def __init__(
        self,
        rows: Iterable[LprRow],
        *,
        source: str | None = None,
        updated: str | None = None,
        max_staleness_months: int = DEFAULT_MAX_STALENESS_MONTHS,
    ):
        ordered = tuple(rows)
        if not ordered:
            raise ValueError("LPR table has no rows")
        for before, after in zip(ordered, ordered[1:], strict=False):
            if after.month.index != before.month.index + 1:
                raise ValueError(
                    f"LPR table months must be consecutive: {before.month} is followed by "
                    f"{after.month} (one row per month, in order, no gaps or duplicates)"
                )
        if isinstance(max_staleness_months, bool) or not isinstance(max_staleness_months, int):
            raise TypeError("max_staleness_months must be an int")
        if max_staleness_months < 0:
            raise ValueError("max_staleness_months must be ≥ 0")
        self._rows = ordered
        self.source = source
        self.updated = updated
        self.max_staleness_months = max_staleness_months

    @classmethod
    def from_rows(
        cls,
        rows: Iterable[Mapping[str, Any]],
        *,
        source: str | None = None,
        updated: str | None = None,
        max_staleness_months: int = DEFAULT_MAX_STALENESS_MONTHS,
    ) -> LprTable:
        """Build from mappings ``{month: 'YYYY-MM', one_year: '3.10', five_year: '3.60'}``.

        Rates are percent strings (or ``Decimal``); floats are refused so that YAML
        ``3.10`` without quotes is caught. Months must be consecutive and ascending.
        """
        parsed: list[LprRow] = []
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, Mapping):
                raise ValueError(f"LPR row {number}: expected a mapping, got {row!r}")
            missing = {"month", "one_year", "five_year"} - set(row)
            if missing:
                raise ValueError(f"LPR row {number}: missing {sorted(missing)}")
            month_value = row["month"]
            if not isinstance(month_value, str):
                raise ValueError(f"LPR row {number}: month must be a 'YYYY-MM' string")
            month = Month.parse(month_value)
            where = f"LPR row {number} ({month})"
            parsed.append(
                LprRow(
                    month=month,
                    one_year=_percent(row["one_year"], where),
                    five_year=_percent(row["five_year"], where),
                )
            )
        return cls(
            parsed, source=source, updated=updated, max_staleness_months=max_staleness_months
        )

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, max_staleness_months: int | None = None
    ) -> LprTable:
        """Load a YAML file with keys ``source``, ``updated`` and ``rates`` (list of rows)."""
        file = Path(path)
        with file.open(encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        if not isinstance(data, Mapping) or not isinstance(data.get("rates"), list):
            raise ValueError(f"{file}: expected a mapping with a 'rates' list")
        updated = data.get("updated")
        return cls.from_rows(
            data["rates"],
            source=None if data.get("source") is None else str(data["source"]),
            updated=None if updated is None else str(updated),
            max_staleness_months=(
                DEFAULT_MAX_STALENESS_MONTHS
                if max_staleness_months is None
                else max_staleness_months
            ),
        )

    @property
    def rows(self) -> tuple[LprRow, ...]:
        return self._rows

    @property
    def first_month(self) -> Month:
        return self._rows[0].month

    @property
    def last_month(self) -> Month:
        return self._rows[-1].month

    def row_for(self, month_or_date: str | date | Month) -> LprRow:
        """The row in force for the month (latest row on or before it), with checks."""
        month = Month.parse(month_or_date)
        if month < self.first_month:
            raise LookupError(
                f"no LPR for {month}: the table starts at {self.first_month} "
                "(the reformed LPR was first published in 2019-08)"
            )
        behind = month.index - self.last_month.index
        if behind > self.max_staleness_months:
            raise LookupError(
                f"LPR table is stale for {month}: its last month is {self.last_month} "
                f"({behind} months earlier; at most {self.max_staleness_months} allowed). "
                f"Append the newer announcements to {LPR_FILENAME}."
            )
        if behind >= 0:
            return self._rows[-1]
        return self._rows[month.index - self.first_month.index]

    def rate(self, month_or_date: str | date | Month, term: str = "1y") -> Decimal:
        """The LPR for the month as a **fraction**: 3.10 % → ``Decimal('0.0310')``.

        ``term`` is ``'1y'`` or ``'5y'``. Raises ``LookupError`` before the first row or
        when the table is stale for that month, ``ValueError`` for an unknown term.
        """
        if term not in TERMS:
            raise ValueError(f"term must be one of {sorted(TERMS)}: {term!r}")
        percent: Decimal = getattr(self.row_for(month_or_date), TERMS[term])
        return percent.scaleb(-2)


def tables_dir() -> Path:
    """``$SHENBAO_TABLES_DIR`` if set, else ``<repository root>/definitions/tables``."""
    override = os.environ.get(TABLES_DIR_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "definitions" / "tables"


_cache: dict[tuple[str, int, int], LprTable] = {}


def default_lpr_table() -> LprTable:
    """Load ``lpr.yaml`` from :func:`tables_dir`; re-read when the file changes."""
    path = (tables_dir() / LPR_FILENAME).resolve()
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    table = _cache.get(key)
    if table is None:
        table = LprTable.load(path)
        _cache.clear()
        _cache[key] = table
    return table
