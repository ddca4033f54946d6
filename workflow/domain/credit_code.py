"""统一社会信用代码 (unified social credit code, USCC) validation — GB 32100-2015.

Rules (programs.md §6, sources C1, C2, C3):

* 18 characters: ``[1]`` 登记管理部门代码, ``[2]`` 机构类别代码, ``[3–8]`` 登记管理机关
  行政区划码 (GB/T 2260, 6 digits), ``[9–17]`` 主体标识码 (组织机构代码, GB 11714: 8 body
  characters + 1 check character), ``[18]`` 校验码.
* Character set (31 symbols): ``0123456789ABCDEFGHJKLMNPQRTUWXY`` — no I, O, S, V, Z.
* Check character 18: ``S = Σ value(c_i) × W_i`` with ``W_i = 3^(i-1) mod 31`` (i = 1..17);
  ``C18 = 31 − (S mod 31)``, 31 → 0. This is a **hard** check.
* Character 17 is the GB 11714 organisation-code check over characters 9–16 (weights
  ``3,7,9,10,5,8,4,2``, mod 11; 10 → ``X``, 11 → ``0``). Legacy data can fail it, so it is a
  **warning only** (programs.md §6.2 recommendation).

Normalisation: every public function first applies :func:`normalize_credit_code`, which
NFKC-folds the text (full-width ``９１`` → ``91``), strips surrounding whitespace and
upper-cases it. So ``" 91110000600037341l "`` is accepted as ``91110000600037341L``. Inner
whitespace or separators are *not* removed: ``"9111 0000…"`` is a format error.

Positions 3–8 are only a *hint* of locality: the code is issued once for life and does not
change when the entity moves (programs.md §1.3).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Final

from workflow.domain.credit_code_tables import REGISTRATION_DEPARTMENTS

CREDIT_CODE_CHARSET: Final = "0123456789ABCDEFGHJKLMNPQRTUWXY"
"""The 31 symbols allowed in a USCC; the index of a symbol is its value."""

CREDIT_CODE_WEIGHTS: Final = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
"""Weights for positions 1–17 (``3^i mod 31``)."""

ORG_CODE_WEIGHTS: Final = (3, 7, 9, 10, 5, 8, 4, 2)
"""GB 11714 weights for the 8 body characters of the organisation code (positions 9–16)."""

_FORMAT_RE: Final = re.compile(r"[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}")
_VALUES: Final = {ch: i for i, ch in enumerate(CREDIT_CODE_CHARSET)}

# Problem codes returned by credit_code_problems().
PROBLEM_FORMAT: Final = "format"
PROBLEM_CHECK_DIGIT: Final = "check_digit"
PROBLEM_ORG_CODE_CHECK: Final = "org_code_check"
PROBLEM_UNKNOWN_CATEGORY: Final = "unknown_category"

CREDIT_CODE_ERRORS: Final = frozenset({PROBLEM_FORMAT, PROBLEM_CHECK_DIGIT})
"""Problems that make a code invalid (hard fail)."""

CREDIT_CODE_WARNINGS: Final = frozenset({PROBLEM_ORG_CODE_CHECK, PROBLEM_UNKNOWN_CATEGORY})
"""Problems that should only be shown as warnings (legacy data, table gaps)."""


@dataclass(frozen=True, slots=True)
class CreditCodeInfo:
    """What can be read off a (format-valid) credit code.

    ``department``/``category`` are ``None`` when the code is not in
    :data:`~workflow.domain.credit_code_tables.REGISTRATION_DEPARTMENTS`.
    """

    code: str
    department_code: str
    department: str | None
    category_code: str
    category: str | None
    division_code: str
    """Positions 3–8: the registering authority's GB/T 2260 division code (a hint only)."""
    organization_code: str
    """Positions 9–17: the GB 11714 organisation code (8 body characters + check)."""


def normalize_credit_code(code: str) -> str:
    """Return ``code`` NFKC-folded, stripped of surrounding whitespace and upper-cased.

    Does not validate. Raises ``TypeError`` if ``code`` is not a ``str``.
    """
    if not isinstance(code, str):
        raise TypeError(f"credit code must be a str, not {type(code).__name__}")
    return unicodedata.normalize("NFKC", code).strip().upper()


def _normalized_or_none(code: object) -> str | None:
    """Normalise ``code`` and return it if it has the right format, else ``None``."""
    if not isinstance(code, str):
        return None
    normalized = normalize_credit_code(code)
    return normalized if _FORMAT_RE.fullmatch(normalized) else None


def credit_code_check_char(first17: str) -> str:
    """Compute the GB 32100 check character (position 18) for 17 normalised characters."""
    if len(first17) != 17 or any(ch not in _VALUES for ch in first17):
        raise ValueError(f"expected 17 characters from {CREDIT_CODE_CHARSET!r}: {first17!r}")
    total = sum(_VALUES[ch] * w for ch, w in zip(first17, CREDIT_CODE_WEIGHTS, strict=True))
    check = 31 - total % 31
    return CREDIT_CODE_CHARSET[0 if check == 31 else check]


def org_code_check_char(body: str) -> str:
    """Compute the GB 11714 check character for the 8-character organisation-code body.

    Digits count at face value, letters ``A``=10 … ``Z``=35.
    """
    if len(body) != 8 or not all(ch.isascii() and ch.isalnum() for ch in body):
        raise ValueError(f"expected 8 ASCII letters/digits: {body!r}")
    total = sum(int(ch, 36) * w for ch, w in zip(body.upper(), ORG_CODE_WEIGHTS, strict=True))
    check = 11 - total % 11
    if check == 10:
        return "X"
    if check == 11:
        return "0"
    return str(check)


def is_valid_credit_code(code: object) -> bool:
    """``True`` if ``code`` has the USCC format and a correct check character 18.

    Accepts lower case and surrounding whitespace (see :func:`normalize_credit_code`).
    Returns ``False`` — never raises — for ``None``, non-strings, wrong length or
    characters outside the 31-symbol set. The position-17 organisation-code check is
    *not* part of validity (it is a warning; see :func:`org_code_check_ok`).
    """
    normalized = _normalized_or_none(code)
    return normalized is not None and credit_code_check_char(normalized[:17]) == normalized[17]


def org_code_check_ok(code: object) -> bool:
    """``True`` if character 17 of a format-valid USCC matches the GB 11714 check.

    Takes the full 18-character credit code. ``False`` for anything not in USCC format.
    A ``False`` here on an otherwise valid code should be shown as a warning only.
    """
    normalized = _normalized_or_none(code)
    return normalized is not None and org_code_check_char(normalized[8:16]) == normalized[16]


def credit_code_problems(code: object) -> list[str]:
    """Machine-readable problems with ``code``; an empty list means no problems at all.

    * ``"format"`` — not a string, wrong length or characters (nothing else is checked);
    * ``"check_digit"`` — character 18 is wrong (hard error);
    * ``"org_code_check"`` — character 17 is wrong (warning, legacy data);
    * ``"unknown_category"`` — positions 1–2 are not in the code table (warning; the
      table is data and may lag behind new categories).

    :data:`CREDIT_CODE_ERRORS` and :data:`CREDIT_CODE_WARNINGS` classify the codes.
    """
    normalized = _normalized_or_none(code)
    if normalized is None:
        return [PROBLEM_FORMAT]
    problems: list[str] = []
    if credit_code_check_char(normalized[:17]) != normalized[17]:
        problems.append(PROBLEM_CHECK_DIGIT)
    if org_code_check_char(normalized[8:16]) != normalized[16]:
        problems.append(PROBLEM_ORG_CODE_CHECK)
    department = REGISTRATION_DEPARTMENTS.get(normalized[0])
    if department is None or normalized[1] not in department["categories"]:
        problems.append(PROBLEM_UNKNOWN_CATEGORY)
    return problems


def describe_credit_code(code: str) -> CreditCodeInfo:
    """Split a valid credit code into department, category and division code.

    Raises ``ValueError`` if the code is not valid (format or check character 18).
    Unknown department/category characters give ``None`` labels rather than an error.
    """
    if not is_valid_credit_code(code):
        raise ValueError(f"not a valid unified social credit code: {code!r}")
    normalized = normalize_credit_code(code)
    department = REGISTRATION_DEPARTMENTS.get(normalized[0])
    return CreditCodeInfo(
        code=normalized,
        department_code=normalized[0],
        department=department["name"] if department else None,
        category_code=normalized[1],
        category=department["categories"].get(normalized[1]) if department else None,
        division_code=normalized[2:8],
        organization_code=normalized[8:17],
    )
