"""Tests for the unified social credit code helpers (programs.md §6)."""

from __future__ import annotations

import pytest

from workflow.domain import (
    CREDIT_CODE_ERRORS,
    CREDIT_CODE_WARNINGS,
    REGISTRATION_DEPARTMENTS,
    credit_code_problems,
    describe_credit_code,
    is_valid_credit_code,
    normalize_credit_code,
    org_code_check_ok,
)
from workflow.domain.credit_code import credit_code_check_char, org_code_check_char

# programs.md §6.2: "all valid both checks"
VALID = [
    "91110000600037341L",
    "91350200776049653A",
    "91440101MA5CJQ4N59",
    "913502000728319549",
    "123502001549897397",
    "9135021359498494XQ",
    "91350213678251743X",
    "91350100M000100Y43",
]


@pytest.mark.parametrize("code", VALID)
def test_valid_vectors_pass_both_checks(code: str) -> None:
    assert is_valid_credit_code(code)
    assert org_code_check_ok(code)
    assert credit_code_problems(code) == []


@pytest.mark.parametrize("code", VALID)
def test_check_char_is_recomputed(code: str) -> None:
    assert credit_code_check_char(code[:17]) == code[17]
    assert org_code_check_char(code[8:16]) == code[16]


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        (" 91110000600037341l ", "91110000600037341L"),
        ("\t91440101ma5cjq4n59\n", "91440101MA5CJQ4N59"),
        ("９１１１００００６０００３７３４１Ｌ", "91110000600037341L"),  # full-width
        ("\u300091350100M000100Y43\u3000", "91350100M000100Y43"),  # ideographic space
    ],
)
def test_normalisation(raw: str, normalized: str) -> None:
    assert normalize_credit_code(raw) == normalized
    assert is_valid_credit_code(raw)


def test_normalize_rejects_non_string() -> None:
    with pytest.raises(TypeError):
        normalize_credit_code(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "problems"),
    [
        ("91350100M000100Y44", ["check_digit"]),
        (None, ["format"]),
        (911100006000373410, ["format"]),
        ("", ["format"]),
        ("91110000600037341", ["format"]),  # 17 chars
        ("91110000600037341LL", ["format"]),  # 19 chars
        ("9111 0000600037341L", ["format"]),  # inner space
        ("91110000600037341-", ["format"]),
        ("91A10000600037341L", ["format"]),  # positions 3-8 must be digits
        # I, O, S, V, Z are not in the character set, wherever they appear
        ("91110000I00037341L", ["format"]),
        ("91110000O00037341L", ["format"]),
        ("91110000S00037341L", ["format"]),
        ("91110000V00037341L", ["format"]),
        ("91110000Z00037341L", ["format"]),
        ("9111000060003734IL", ["format"]),
        ("I1110000600037341L", ["format"]),
        ("91110000600037341O", ["format"]),
    ],
)
def test_invalid_codes(code: object, problems: list[str]) -> None:
    assert not is_valid_credit_code(code)
    assert credit_code_problems(code) == problems


def test_org_code_mismatch_is_only_a_warning() -> None:
    # Change char 17 of a valid code and repair char 18: still valid, but warned.
    base = "91110000600037341L"
    first17 = base[:16] + "9"
    code = first17 + credit_code_check_char(first17)
    assert is_valid_credit_code(code)
    assert not org_code_check_ok(code)
    assert credit_code_problems(code) == ["org_code_check"]
    assert set(credit_code_problems(code)) <= CREDIT_CODE_WARNINGS


def test_unknown_category_is_a_warning() -> None:
    first17 = "99110000600037341"  # department 9 has no category 9
    code = first17 + credit_code_check_char(first17)
    assert is_valid_credit_code(code)
    assert credit_code_problems(code) == ["unknown_category"]
    info = describe_credit_code(code)
    assert info.department == REGISTRATION_DEPARTMENTS["9"]["name"]
    assert info.category is None


def test_error_and_warning_sets_are_disjoint() -> None:
    assert CREDIT_CODE_ERRORS.isdisjoint(CREDIT_CODE_WARNINGS)
    assert {"format", "check_digit"} == CREDIT_CODE_ERRORS


@pytest.mark.parametrize(
    ("code", "department", "category", "division"),
    [
        ("91440101MA5CJQ4N59", "工商（现市场监管）", "企业", "440101"),
        ("123502001549897397", "机构编制", "事业单位", "350200"),
        ("91110000600037341L", "工商（现市场监管）", "企业", "110000"),
    ],
)
def test_describe(code: str, department: str, category: str, division: str) -> None:
    info = describe_credit_code(code)
    assert (info.department, info.category, info.division_code) == (
        department,
        category,
        division,
    )
    assert info.organization_code == code[8:17]
    assert info.code == code


def test_describe_normalises_and_rejects_invalid() -> None:
    assert describe_credit_code(" 91440101ma5cjq4n59 ").code == "91440101MA5CJQ4N59"
    with pytest.raises(ValueError, match="not a valid"):
        describe_credit_code("91350100M000100Y44")


@pytest.mark.parametrize("first17", ["9111000060003734", "9111000060003734I"])
def test_check_char_argument_errors(first17: str) -> None:
    with pytest.raises(ValueError):
        credit_code_check_char(first17)


@pytest.mark.parametrize(
    ("body", "check"),
    [
        ("07283195", "4"),
        ("59498494", "X"),  # 11 - (S mod 11) == 10 -> X (vector 9135021359498494XQ)
        ("00000000", "0"),  # 11 - (S mod 11) == 11 -> 0
        ("00000006", "X"),
        ("MA5CJQ4N", "5"),  # letters: A=10 ... Z=35
        ("M000100Y", "4"),
    ],
)
def test_org_code_check_char(body: str, check: str) -> None:
    assert org_code_check_char(body) == check


def test_org_code_check_char_rejects_bad_body() -> None:
    with pytest.raises(ValueError):
        org_code_check_char("1234567")


def test_tables_cover_programs_md() -> None:
    assert set(REGISTRATION_DEPARTMENTS) == set("123456789ANY")
    assert REGISTRATION_DEPARTMENTS["9"]["categories"] == {
        "1": "企业",
        "2": "个体工商户",
        "3": "农民专业合作社",
    }
    assert REGISTRATION_DEPARTMENTS["1"]["categories"]["2"] == "事业单位"
