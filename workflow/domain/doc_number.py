"""发文字号 (document numbers) and 成文日期 (document dates) — GB/T 9704-2012 §7.2.5.

Rules (programs.md §8, source P26):

* structure 发文机关代字 + 〔年份〕 + 顺序号 + 号, e.g. ``长市监议字〔2020〕20号``;
* the year is 4 digits in 六角括号 ``〔〕`` (U+3014/U+3015) — on *output* always;
* the sequence is Arabic, with no leading zeros (不编虚位: 1, not 01/001) and no 第;
* a 字 at the end of the 代字 is part of the code (长市监议字, 国知办函运字), but nothing
  may be inserted between the parts (no ``〔2020〕第20号``, no ``〔2020〕字20号``).

Users type other brackets, so :func:`parse_doc_number` accepts ``〔〕 [] () （） 【】 ［］``
and the look-alike ``﹝﹞`` (a matching pair), full-width digits, and surrounding
whitespace; :func:`normalize_doc_number` re-emits the canonical ``〔〕`` form.

成文日期: Arabic numerals, full year, month and day not zero-padded (``2024年5月8日``).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Final

BRACKET_PAIRS: Final = {
    "〔": "〕",
    "[": "]",
    "(": ")",
    "（": "）",
    "【": "】",
    "［": "］",
    "﹝": "﹞",
}
"""Opening → closing brackets accepted around the year on input."""

_HAN_CLASS: Final = (
    "\u3400-\u4dbf"  # CJK Extension A
    "\u4e00-\u9fff"  # CJK Unified Ideographs
    "\uf900-\ufaff"  # CJK Compatibility Ideographs
    "\U00020000-\U0003134f"  # Extensions B–G
)
_PREFIX_RE: Final = re.compile(f"[{_HAN_CLASS}]+")
_OPEN: Final = re.escape("".join(BRACKET_PAIRS))
_CLOSE: Final = re.escape("".join(BRACKET_PAIRS.values()))
_DOC_RE: Final = re.compile(
    rf"(?P<prefix>[{_HAN_CLASS}]+)"
    rf"(?P<open>[{_OPEN}])(?P<year>[0-9]+)(?P<close>[{_CLOSE}])"
    rf"(?P<seq>[0-9]+)号"
)
_FULLWIDTH_DIGITS: Final = str.maketrans("０１２３４５６７８９", "0123456789")


def _check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"机关代字 (prefix) must be one or more Han characters: {prefix!r}")
    return prefix


def _check_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, not {type(value).__name__}: {value!r}")
    return value


def format_doc_number(prefix: str, year: int, seq: int) -> str:
    """Format a document number: ``format_doc_number("长市监知字", 2026, 12)`` →
    ``'长市监知字〔2026〕12号'``.

    ``prefix`` must be non-empty Han characters, ``year`` a 4-digit int (1000–9999),
    ``seq`` an int ≥ 1 (printed without leading zeros). Raises ``ValueError`` otherwise.
    """
    _check_prefix(prefix)
    year = _check_int(year, "year")
    seq = _check_int(seq, "sequence number")
    if not 1000 <= year <= 9999:
        raise ValueError(f"year must have exactly 4 digits: {year}")
    if seq < 1:
        raise ValueError(f"sequence number must be ≥ 1: {seq}")
    return f"{prefix}〔{year}〕{seq}号"


def parse_doc_number(text: str) -> tuple[str, int, int]:
    """Parse a document number into ``(prefix, year, seq)``.

    Lenient about the bracket style (see :data:`BRACKET_PAIRS`; the pair must match),
    full-width digits and surrounding whitespace; strict about everything else. Raises
    ``ValueError`` with the reason for: inner whitespace, 第 before the number, a
    missing 号, leading zeros in the sequence (不编虚位), a sequence of 0, a year that is
    not 4 digits, mismatched or missing brackets, and anything extra.
    """
    if not isinstance(text, str):
        raise ValueError(f"document number must be a str, not {type(text).__name__}")
    cleaned = text.strip().translate(_FULLWIDTH_DIGITS)
    if not cleaned:
        raise ValueError("document number is empty")
    if any(ch.isspace() for ch in cleaned):
        raise ValueError(f"document number must not contain spaces: {text!r}")
    if "第" in cleaned:
        raise ValueError(f"document number must not contain 第 (write 〔2020〕20号): {text!r}")
    if not cleaned.endswith("号"):
        raise ValueError(f"document number must end with 号: {text!r}")
    match = _DOC_RE.fullmatch(cleaned)
    if match is None:
        raise ValueError(
            "document number must look like 机关代字〔年份〕顺序号号, "
            f"e.g. 长市监议字〔2020〕20号: {text!r}"
        )
    if BRACKET_PAIRS[match["open"]] != match["close"]:
        raise ValueError(f"mismatched brackets around the year: {text!r}")
    if len(match["year"]) != 4:
        raise ValueError(f"year must have exactly 4 digits: {text!r}")
    seq_text = match["seq"]
    if seq_text.startswith("0"):
        if set(seq_text) == {"0"}:
            raise ValueError(f"sequence number must be ≥ 1: {text!r}")
        raise ValueError(f"sequence number must not have leading zeros (不编虚位): {text!r}")
    return match["prefix"], int(match["year"]), int(seq_text)


def normalize_doc_number(text: str) -> str:
    """Parse leniently (:func:`parse_doc_number`) and re-emit in canonical 〔〕 form."""
    return format_doc_number(*parse_doc_number(text))


def format_chinese_date(d: date) -> str:
    """Format a 成文日期: ``date(2026, 3, 8)`` → ``'2026年3月8日'`` (no zero padding)."""
    if not isinstance(d, date):
        raise TypeError(f"expected a date, not {type(d).__name__}")
    return f"{d.year}年{d.month}月{d.day}日"
