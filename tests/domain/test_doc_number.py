"""Tests for 发文字号 and 成文日期 helpers (programs.md §8)."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from workflow.domain import (
    format_chinese_date,
    format_doc_number,
    normalize_doc_number,
    parse_doc_number,
)


@pytest.mark.parametrize(
    ("prefix", "year", "seq", "expected"),
    [
        ("长市监知字", 2026, 12, "长市监知字〔2026〕12号"),
        ("长市监议字", 2020, 20, "长市监议字〔2020〕20号"),
        ("国知办函运字", 2022, 985, "国知办函运字〔2022〕985号"),
        ("长府发", 2020, 10, "长府发〔2020〕10号"),
        ("乐市监", 2022, 4, "乐市监〔2022〕4号"),
        ("大知联", 2020, 1, "大知联〔2020〕1号"),
    ],
)
def test_format_doc_number(prefix: str, year: int, seq: int, expected: str) -> None:
    assert format_doc_number(prefix, year, seq) == expected
    assert parse_doc_number(expected) == (prefix, year, seq)


@pytest.mark.parametrize(
    ("prefix", "year", "seq"),
    [
        ("", 2026, 1),
        ("ABC", 2026, 1),
        ("长市监 知字", 2026, 1),
        ("长市监知字1", 2026, 1),
        (None, 2026, 1),
        ("长市监知字", 26, 1),
        ("长市监知字", 20260, 1),
        ("长市监知字", "2026", 1),
        ("长市监知字", 2026, 0),
        ("长市监知字", 2026, -3),
        ("长市监知字", 2026, "01"),
        ("长市监知字", 2026, True),
    ],
)
def test_format_doc_number_rejects(prefix: object, year: object, seq: object) -> None:
    with pytest.raises(ValueError):
        format_doc_number(prefix, year, seq)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("长市监议字〔2020〕20号", ("长市监议字", 2020, 20)),
        ("长市监议字[2025]18号", ("长市监议字", 2025, 18)),  # S1 seed copy
        ("吉市监议字(2021)12号", ("吉市监议字", 2021, 12)),
        ("吉办发（2020）28号", ("吉办发", 2020, 28)),
        ("鲁市监知促字【2024】92号", ("鲁市监知促字", 2024, 92)),
        ("国知发运字［2021］17号", ("国知发运字", 2021, 17)),
        ("国知办函规字﹝2016﹞124号", ("国知办函规字", 2016, 124)),
        ("  财办建〔2020〕40号\n", ("财办建", 2020, 40)),
        ("\u3000大政办发〔2020〕4号\u3000", ("大政办发", 2020, 4)),
        ("长府发〔２０２０〕１０号", ("长府发", 2020, 10)),  # full-width digits
    ],
)
def test_parse_doc_number(text: str, expected: tuple[str, int, int]) -> None:
    assert parse_doc_number(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("长市监议字〔2020〕01号", "leading zeros"),
        ("长市监议字〔2020〕001号", "leading zeros"),
        ("长市监议字〔2020〕0号", "≥ 1"),
        ("长市监议字〔2020〕第20号", "第"),
        ("长市监议字〔2020〕20", "号"),
        ("长市监议字〔2020〕20号号", "look like"),
        ("长市监议字〔20〕20号", "4 digits"),
        ("长市监议字〔20200〕20号", "4 digits"),
        ("长市监议字〔2020]20号", "mismatched"),
        ("长市监议字(2020〕20号", "mismatched"),
        ("长市监议字2020〕20号", "look like"),
        ("长市监议字〔2020〕字20号", "look like"),
        ("长市监议字 〔2020〕 20号", "spaces"),
        ("〔2020〕20号", "look like"),
        ("CSJ〔2020〕20号", "look like"),
        ("长市监议字<2020>20号", "look like"),
        ("长市监议字〔2020〕二十号", "look like"),
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_parse_doc_number_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_doc_number(text)


def test_parse_doc_number_rejects_non_string() -> None:
    with pytest.raises(ValueError):
        parse_doc_number(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("长市监议字[2025]18号", "长市监议字〔2025〕18号"),
        (" 吉市监议字（2021）12号 ", "吉市监议字〔2021〕12号"),
        ("国知办函运字【2022】985号", "国知办函运字〔2022〕985号"),
        ("长市监议字〔2020〕20号", "长市监议字〔2020〕20号"),
    ],
)
def test_normalize_doc_number(text: str, expected: str) -> None:
    assert normalize_doc_number(text) == expected


@pytest.mark.parametrize(
    ("d", "expected"),
    [
        (date(2026, 3, 8), "2026年3月8日"),
        (date(2024, 5, 8), "2024年5月8日"),
        (date(2020, 4, 6), "2020年4月6日"),
        (date(2025, 12, 31), "2025年12月31日"),
        (datetime(2026, 10, 1, 9, 30), "2026年10月1日"),
    ],
)
def test_format_chinese_date(d: date, expected: str) -> None:
    assert format_chinese_date(d) == expected


def test_format_chinese_date_rejects_strings() -> None:
    with pytest.raises(TypeError):
        format_chinese_date("2026-03-08")  # type: ignore[arg-type]
