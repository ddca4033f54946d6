"""Tests for RMB amount helpers (programs.md §1.4, §3.2 worked examples, §7)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from workflow.domain import fen, format_yuan, rmb_upper, round_fen, yuan
from workflow.domain.money import MAX_UPPER_YUAN


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        # §3.2 worked examples
        ("100121.53", "人民币壹拾万零壹佰贰拾壹元伍角叁分"),
        ("122427.09", "人民币壹拾贰万贰仟肆佰贰拾柒元零玖分"),
        # §2.2 / §4 award examples
        (25000, "人民币贰万伍仟元整"),
        (100000, "人民币壹拾万元整"),
        (500000, "人民币伍拾万元整"),
        # §7 rule 4 examples (整 always written after 角, rule 2)
        ("1409.50", "人民币壹仟肆佰零玖元伍角整"),
        ("6007.14", "人民币陆仟零柒元壹角肆分"),
        ("1680.32", "人民币壹仟陆佰捌拾元零叁角贰分"),  # optional 零: default on
        ("107000.53", "人民币壹拾万柒仟元零伍角叁分"),
        ("16409.02", "人民币壹万陆仟肆佰零玖元零贰分"),
        ("325.04", "人民币叁佰贰拾伍元零肆分"),
        # finance-style conventions
        (10, "人民币壹拾元整"),
        (0, "人民币零元整"),
        ("0.05", "人民币伍分"),
        ("0.50", "人民币伍角整"),
        ("0.53", "人民币伍角叁分"),
        ("0.00", "人民币零元整"),
        # sections and zero runs
        ("1000000000.01", "人民币壹拾亿元零壹分"),
        (10010000, "人民币壹仟零壹万元整"),
        (100000000, "人民币壹亿元整"),
        (100010001, "人民币壹亿零壹万零壹元整"),
        (100001000, "人民币壹亿零壹仟元整"),
        (101000000, "人民币壹亿零壹佰万元整"),
        (110000000, "人民币壹亿壹仟万元整"),
        (1010, "人民币壹仟零壹拾元整"),
        (1001, "人民币壹仟零壹元整"),
        (1100, "人民币壹仟壹佰元整"),
        (10001, "人民币壹万零壹元整"),
        (10100, "人民币壹万零壹佰元整"),
        (11000, "人民币壹万壹仟元整"),
        (15, "人民币壹拾伍元整"),
        (1, "人民币壹元整"),
        ("1.10", "人民币壹元壹角整"),
        ("20.30", "人民币贰拾元零叁角整"),
        ("20.03", "人民币贰拾元零叁分"),
        (999999999999, "人民币玖仟玖佰玖拾玖亿玖仟玖佰玖拾玖万玖仟玖佰玖拾玖元整"),
        (10**12, "人民币壹万亿元整"),
        (10**12 + 10**8, "人民币壹万零壹亿元整"),
        (
            MAX_UPPER_YUAN - 1,
            "人民币玖仟玖佰玖拾玖万玖仟玖佰玖拾玖亿玖仟玖佰玖拾玖万玖仟玖佰玖拾玖元整",
        ),
        # rounding half-up to the fen
        ("1.005", "人民币壹元零壹分"),
        ("1.004", "人民币壹元整"),
        ("0.004", "人民币零元整"),
        ("0.005", "人民币壹分"),
        ("99.995", "人民币壹佰元整"),
        # Decimal input, whitespace around strings
        (Decimal("100121.53"), "人民币壹拾万零壹佰贰拾壹元伍角叁分"),
        (Decimal("1E+5"), "人民币壹拾万元整"),
        ("  325.04 ", "人民币叁佰贰拾伍元零肆分"),
    ],
)
def test_rmb_upper(amount: Decimal | int | str, expected: str) -> None:
    assert rmb_upper(amount) == expected


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("1680.32", "壹仟陆佰捌拾元叁角贰分"),
        ("107000.53", "壹拾万柒仟元伍角叁分"),
        ("20.30", "贰拾元叁角整"),
        # the mandatory 零 (角 = 0, 分 ≠ 0) stays
        ("325.04", "叁佰贰拾伍元零肆分"),
    ],
)
def test_rmb_upper_optional_zero_off(amount: str, expected: str) -> None:
    assert rmb_upper(amount, prefix=False, zero_before_jiao=False) == expected


def test_rmb_upper_without_prefix() -> None:
    assert rmb_upper(100000, prefix=False) == "壹拾万元整"


@pytest.mark.parametrize(
    ("amount", "error"),
    [
        (-1, ValueError),
        ("-0.01", ValueError),
        (Decimal("-100"), ValueError),
        ("abc", ValueError),
        ("", ValueError),
        ("1,000.00", ValueError),
        ("¥100", ValueError),
        ("NaN", ValueError),
        ("Infinity", ValueError),
        (Decimal("Infinity"), ValueError),
        (MAX_UPPER_YUAN, ValueError),
        (1.5, TypeError),  # never floats
        (True, TypeError),
        (None, TypeError),
    ],
)
def test_rmb_upper_rejects(amount: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        rmb_upper(amount)  # type: ignore[arg-type]


def test_rmb_upper_uses_only_allowed_characters() -> None:
    allowed = set("零壹贰叁肆伍陆柒捌玖拾佰仟万亿元角分整人民币")
    for n in range(0, 200_000, 37):
        text = rmb_upper(Decimal(n).scaleb(-2) * 7)
        assert set(text) <= allowed, text
        assert "零零" not in text


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (Decimal("1.005"), Decimal("1.01")),
        (Decimal("1.0049"), Decimal("1.00")),
        (Decimal("-1.005"), Decimal("-1.01")),
        (Decimal("2.675"), Decimal("2.68")),
        (Decimal("100121.525"), Decimal("100121.53")),
        (7, Decimal("7.00")),
        ("0.125", Decimal("0.13")),
    ],
)
def test_round_fen(amount: Decimal | int | str, expected: Decimal) -> None:
    result = round_fen(amount)
    assert result == expected
    assert result.as_tuple().exponent == -2


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (Decimal("100121.53"), 10012153),
        (Decimal("1.005"), 101),
        ("0.01", 1),
        (100000, 10000000),
        (Decimal("-2.50"), -250),
        (Decimal("0"), 0),
    ],
)
def test_fen(amount: Decimal | int | str, expected: int) -> None:
    result = fen(amount)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    ("fen_amount", "expected"),
    [
        (10012153, "100121.53"),
        (1, "0.01"),
        (0, "0.00"),
        (-250, "-2.50"),
        (10**18, "10000000000000000.00"),
    ],
)
def test_yuan(fen_amount: int, expected: str) -> None:
    result = yuan(fen_amount)
    assert result == Decimal(expected)
    assert fen(result) == fen_amount


@pytest.mark.parametrize("bad", [1.5, "100", True, Decimal("1")])
def test_yuan_rejects_non_int(bad: object) -> None:
    with pytest.raises(TypeError):
        yuan(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (10000000, "¥100,000.00"),  # int = fen
        (Decimal("100000"), "¥100,000.00"),  # Decimal = yuan
        (Decimal("100121.525"), "¥100,121.53"),
        (0, "¥0.00"),
        (5, "¥0.05"),
        (123456789, "¥1,234,567.89"),
        (-1230, "-¥12.30"),
        (Decimal("-0.004"), "¥0.00"),
    ],
)
def test_format_yuan(amount: int | Decimal, expected: str) -> None:
    assert format_yuan(amount) == expected


@pytest.mark.parametrize("bad", [1.0, "100", None, False])
def test_format_yuan_rejects(bad: object) -> None:
    with pytest.raises(TypeError):
        format_yuan(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0.1, None, [1]])
def test_fen_rejects_non_decimal(bad: object) -> None:
    with pytest.raises(TypeError):
        fen(bad)  # type: ignore[arg-type]


def test_huge_exponent_is_a_clear_error():
    # Found by tests/test_fuzz.py: quantize overflowed with decimal.InvalidOperation.
    with pytest.raises(ValueError, match="out of range"):
        rmb_upper("1E100")
