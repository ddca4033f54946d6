"""Tests for the LPR table (programs.md §3.2) and definitions/tables/lpr.yaml."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from workflow.domain import LprTable, Month, default_lpr_table, previous_month
from workflow.domain.lpr import TABLES_DIR_ENV, tables_dir

ROWS = [
    {"month": "2024-08", "one_year": "3.35", "five_year": "3.85"},
    {"month": "2024-09", "one_year": "3.35", "five_year": "3.85"},
    {"month": "2024-10", "one_year": "3.10", "five_year": "3.60"},
    {"month": "2024-11", "one_year": "3.10", "five_year": "3.60"},
]


@pytest.fixture
def table() -> LprTable:
    return LprTable.from_rows(ROWS, source="test")


@pytest.mark.parametrize(
    ("when", "term", "expected"),
    [
        ("2024-10", "1y", "0.0310"),
        ("2024-10", "5y", "0.0360"),
        ("2024-09", "1y", "0.0335"),
        ("2024-08", "5y", "0.0385"),
        (date(2024, 10, 5), "1y", "0.0310"),  # a date means its month
        (datetime(2024, 9, 30, 12), "1y", "0.0335"),
        (Month(2024, 11), "1y", "0.0310"),
        ("2024-12", "1y", "0.0310"),  # 1 month after the last row: latest row
        ("2025-01", "5y", "0.0360"),  # 2 months after: still allowed by default
        (" 2024-10 ", "1y", "0.0310"),
    ],
)
def test_rate(table: LprTable, when: object, term: str, expected: str) -> None:
    rate = table.rate(when, term)  # type: ignore[arg-type]
    assert rate == Decimal(expected)
    assert str(rate) == expected  # keeps the published precision


def test_default_term_is_one_year(table: LprTable) -> None:
    assert table.rate("2024-10") == Decimal("0.0310")


@pytest.mark.parametrize("when", ["2024-07", date(2019, 1, 1)])
def test_before_the_table(table: LprTable, when: object) -> None:
    with pytest.raises(LookupError, match="starts at 2024-08"):
        table.rate(when)  # type: ignore[arg-type]


def test_stale_table(table: LprTable) -> None:
    with pytest.raises(LookupError, match="stale"):
        table.rate("2025-02")


def test_staleness_is_configurable() -> None:
    strict = LprTable.from_rows(ROWS, max_staleness_months=0)
    assert strict.rate("2024-11") == Decimal("0.0310")
    with pytest.raises(LookupError, match="stale"):
        strict.rate("2024-12")
    lenient = LprTable.from_rows(ROWS, max_staleness_months=12)
    assert lenient.rate("2025-11") == Decimal("0.0310")
    with pytest.raises(ValueError):
        LprTable.from_rows(ROWS, max_staleness_months=-1)


@pytest.mark.parametrize(
    ("when", "error"),
    [("2024/10", ValueError), ("2024-13", ValueError), ("202410", ValueError), (202410, TypeError)],
)
def test_bad_month(table: LprTable, when: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        table.rate(when)  # type: ignore[arg-type]


@pytest.mark.parametrize("term", ["1Y", "5", "10y", ""])
def test_bad_term(table: LprTable, term: str) -> None:
    with pytest.raises(ValueError, match="term"):
        table.rate("2024-10", term)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "no rows"),
        ([{**ROWS[0], "one_year": 3.35}], "quoted string"),  # YAML float
        ([{**ROWS[0], "one_year": "3.4"}], "2 decimals"),
        ([{**ROWS[0], "one_year": "335"}], "2 decimals"),
        ([{**ROWS[0], "one_year": "0.00"}], "implausible"),
        ([{"month": "2024-08", "one_year": "3.35"}], "missing"),
        ([{**ROWS[0], "month": "2024-8"}], "YYYY-MM"),
        ([{**ROWS[0], "month": date(2024, 8, 1)}], "YYYY-MM"),
        ([ROWS[0], ROWS[2]], "consecutive"),  # gap
        ([ROWS[1], ROWS[0]], "consecutive"),  # order
        ([ROWS[0], ROWS[0]], "consecutive"),  # duplicate
        (["2024-08"], "mapping"),
    ],
)
def test_from_rows_validates(rows: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LprTable.from_rows(rows)


def test_from_rows_accepts_decimal() -> None:
    t = LprTable.from_rows([{"month": "2024-10", "one_year": Decimal("3.10"), "five_year": "3.60"}])
    assert t.rate("2024-10") == Decimal("0.0310")


def test_load(tmp_path: Path) -> None:
    path = tmp_path / "lpr.yaml"
    path.write_text(
        yaml.safe_dump({"source": "NIFC", "updated": "2024-11-20", "rates": ROWS}),
        encoding="utf-8",
    )
    t = LprTable.load(path, max_staleness_months=1)
    assert (t.source, t.updated, t.max_staleness_months) == ("NIFC", "2024-11-20", 1)
    assert (str(t.first_month), str(t.last_month)) == ("2024-08", "2024-11")
    with pytest.raises(LookupError):
        t.rate("2025-01")


def test_load_rejects_unquoted_rates(tmp_path: Path) -> None:
    path = tmp_path / "lpr.yaml"
    path.write_text(
        "rates:\n  - {month: '2024-10', one_year: 3.10, five_year: '3.60'}\n", encoding="utf-8"
    )
    with pytest.raises(ValueError, match="quote"):
        LprTable.load(path)


@pytest.mark.parametrize("content", ["", "- 1\n", "rates: {}\n"])
def test_load_rejects_bad_shape(tmp_path: Path, content: str) -> None:
    path = tmp_path / "lpr.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match="rates"):
        LprTable.load(path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("2025-01", "2024-12"), (date(2024, 10, 21), "2024-09"), (Month(2024, 12), "2024-11")],
)
def test_previous_month(value: object, expected: str) -> None:
    assert str(previous_month(value)) == expected  # type: ignore[arg-type]


# --- the shipped table -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("month", "one_year", "five_year"),
    [
        ("2019-08", "0.0425", "0.0485"),
        ("2019-09", "0.0420", "0.0485"),
        ("2019-11", "0.0415", "0.0480"),
        ("2020-02", "0.0405", "0.0475"),
        ("2020-04", "0.0385", "0.0465"),
        ("2021-11", "0.0385", "0.0465"),
        ("2021-12", "0.0380", "0.0465"),
        ("2022-01", "0.0370", "0.0460"),
        ("2022-05", "0.0370", "0.0445"),
        ("2022-08", "0.0365", "0.0430"),
        ("2023-06", "0.0355", "0.0420"),
        ("2023-08", "0.0345", "0.0420"),
        ("2024-02", "0.0345", "0.0395"),
        ("2024-07", "0.0335", "0.0385"),
        ("2024-10", "0.0310", "0.0360"),
        ("2025-04", "0.0310", "0.0360"),
        ("2025-05", "0.0300", "0.0350"),
    ],
)
def test_shipped_table(month: str, one_year: str, five_year: str) -> None:
    t = default_lpr_table()
    assert t.rate(month, "1y") == Decimal(one_year)
    assert t.rate(month, "5y") == Decimal(five_year)


def test_shipped_table_shape() -> None:
    t = default_lpr_table()
    assert str(t.first_month) == "2019-08"
    assert t.source and "National Interbank Funding Center" in t.source
    assert t.updated
    assert len(t.rows) == t.last_month.index - t.first_month.index + 1
    with pytest.raises(LookupError, match="stale"):
        t.rate(Month(t.last_month.year + 1, t.last_month.month))


def test_default_table_is_cached() -> None:
    assert default_lpr_table() is default_lpr_table()


def test_tables_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lpr.yaml").write_text(
        yaml.safe_dump({"source": "custom", "updated": "2030-01-01", "rates": ROWS}),
        encoding="utf-8",
    )
    monkeypatch.setenv(TABLES_DIR_ENV, str(tmp_path))
    assert tables_dir() == tmp_path
    assert default_lpr_table().source == "custom"
    monkeypatch.delenv(TABLES_DIR_ENV)
    assert tables_dir() == Path(__file__).resolve().parents[2] / "definitions" / "tables"
    assert str(default_lpr_table().first_month) == "2019-08"
