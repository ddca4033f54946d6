"""RMB amounts: exact conversions, rounding and the 大写 (capital-numeral) form.

Money is never a float here: amounts are ``Decimal`` yuan or ``int`` fen (分), and float
arguments are rejected with ``TypeError`` (programs.md §1.4: store integer fen, compute
with exact decimals, round half-up to the fen).

Argument conventions — note the one asymmetry:

* :func:`rmb_upper`, :func:`fen`, :func:`round_fen` take **yuan** as ``Decimal``, ``int``
  or a decimal ``str`` such as ``"100121.53"``;
* :func:`format_yuan` takes an ``int`` as **fen** (the storage unit) or a ``Decimal`` as
  yuan, and refuses ``str``;
* :func:`yuan` converts integer fen to ``Decimal`` yuan.

:func:`rmb_upper` follows programs.md §7 (source P25: 《正确填写票据和结算凭证的基本规定》
and 《会计基础工作规范》第五十二条), see its docstring for the exact rules.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Final

YuanAmount = Decimal | int | str
"""An amount in yuan: ``Decimal``, ``int`` (whole yuan) or a decimal string."""

FEN: Final = Decimal("0.01")
MAX_UPPER_YUAN: Final = 10**16
""":func:`rmb_upper` handles amounts below this (up to 9999万亿 and change)."""

_DIGITS: Final = "零壹贰叁肆伍陆柒捌玖"
_SECTION_UNITS: Final = ("仟", "佰", "拾", "")
_PREFIX: Final = "人民币"
_PRECISION: Final = 60  # Decimal digits used internally; far above any real amount.


def _to_decimal(amount: object, what: str = "amount") -> Decimal:
    """Convert a yuan amount (``Decimal``/``int``/``str``) to a finite ``Decimal``.

    Raises ``TypeError`` for floats, bools and other types, ``ValueError`` for strings
    that are not plain decimal numbers and for NaN/Infinity.
    """
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int | str):
        raise TypeError(
            f"{what} must be Decimal, int or str (never float), not {type(amount).__name__}"
        )
    if isinstance(amount, str):
        text = amount.strip()
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"{what} is not a decimal number: {amount!r}") from None
    else:
        value = Decimal(amount)
    if not value.is_finite():
        raise ValueError(f"{what} must be a finite number: {amount!r}")
    return value


def round_fen(amount: YuanAmount) -> Decimal:
    """Round a yuan amount to the fen (0.01), half-up (ties away from zero).

    ``round_fen(Decimal("1.005")) == Decimal("1.01")``; ``-1.005`` → ``-1.01``.
    """
    value = _to_decimal(amount)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        try:
            return value.quantize(FEN, rounding=ROUND_HALF_UP)
        except InvalidOperation:
            # e.g. "1E100": more digits than any amount this system can hold.
            raise ValueError(f"amount out of range: {amount!r}") from None


def fen(amount: YuanAmount) -> int:
    """Convert yuan (``Decimal``/``int``/``str``) to integer fen, rounding half-up."""
    return int(round_fen(amount).scaleb(2))


def yuan(fen_amount: int) -> Decimal:
    """Convert integer fen to ``Decimal`` yuan with two decimal places (12345 → 123.45)."""
    if isinstance(fen_amount, bool) or not isinstance(fen_amount, int):
        raise TypeError(f"fen must be an int, not {type(fen_amount).__name__}")
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return Decimal(fen_amount).scaleb(-2)


def format_yuan(amount: int | Decimal) -> str:
    """Format as the 小写 amount: ``¥100,000.00`` (``-¥12.30`` for negatives).

    An ``int`` is read as **fen** (the storage unit): ``format_yuan(10000000)`` →
    ``'¥100,000.00'``. A ``Decimal`` is read as **yuan** and rounded half-up to the fen:
    ``format_yuan(Decimal("100000"))`` → ``'¥100,000.00'``. Strings and floats are
    refused (``TypeError``) because their unit would be ambiguous.
    """
    if isinstance(amount, bool) or not isinstance(amount, int | Decimal):
        raise TypeError("format_yuan takes int fen or Decimal yuan, not " + type(amount).__name__)
    fen_amount = amount if isinstance(amount, int) else fen(amount)
    sign = "-" if fen_amount < 0 else ""
    whole, cents = divmod(abs(fen_amount), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"


def _section_words(n: int) -> str:
    """Words for 1 ≤ n ≤ 9999 with no leading 零: one 零 per internal run, trailing dropped.

    The 壹 before 拾 is always written (壹拾, not 拾).
    """
    words: list[str] = []
    pending_zero = False
    for digit_char, unit in zip(f"{n:04d}", _SECTION_UNITS, strict=True):
        digit = int(digit_char)
        if digit == 0:
            pending_zero = bool(words)
            continue
        if pending_zero:
            words.append("零")
            pending_zero = False
        words.append(_DIGITS[digit] + unit)
    return "".join(words)


def _below_yi_words(n: int) -> str:
    """Words for 1 ≤ n < 10⁸ (万 section + 个 section).

    Between the sections 零 is written only when the lower section is non-zero and below
    1000 (its 仟 digit is 0).
    """
    high, low = divmod(n, 10_000)
    if not high:
        return _section_words(low)
    text = _section_words(high) + "万"
    if low:
        text += ("零" if low < 1000 else "") + _section_words(low)
    return text


def _integer_words(n: int) -> str:
    """Words for 1 ≤ n < 10¹⁶: the part above 10⁸ is counted in 亿 (…万亿 = 万 of 亿).

    Between 亿 and the rest, 零 is written when the rest is non-zero and its leading digit
    (the 仟万 place) is zero — i.e. a whole zero section was skipped or the next
    section is below 1000.
    """
    high, low = divmod(n, 100_000_000)
    if not high:
        return _below_yi_words(low)
    text = _below_yi_words(high) + "亿"
    if low:
        text += ("零" if low < 10_000_000 else "") + _below_yi_words(low)
    return text


def rmb_upper(amount: YuanAmount, *, prefix: bool = True, zero_before_jiao: bool = True) -> str:
    """Write a yuan amount in 大写 form, e.g. ``'人民币壹拾万零壹佰贰拾壹元伍角叁分'``.

    ``amount`` is ``Decimal``, ``int`` (whole yuan) or a decimal ``str``; it is rounded
    half-up to the fen first. Negative amounts, floats and amounts ≥ 10¹⁶ yuan are refused.

    Rules (programs.md §7, source P25):

    * digits 零壹贰叁肆伍陆柒捌玖, units 拾佰仟万亿元角分; the 壹 before a leading 拾 is
      kept (10 → 壹拾元整, 100000 → 壹拾万元整);
    * 4-digit sections; inside a section one 零 per run of zeros, trailing zeros dropped;
      between sections 零 only when a whole zero section was skipped or the lower section
      is below 1000 (10010000 → 壹仟零壹万元整, 107000 → 壹拾万柒仟元);
    * ends at 元 → 整; ends at 角 → 整 as well (satisfies both source texts); has 分 →
      no 整;
    * 角 = 0 and 分 ≠ 0 → 零 after 元 (mandatory): 325.04 → 叁佰贰拾伍元零肆分;
    * 元位 = 0 and 角 ≠ 0 → 零 after 元 is optional; written by default
      (1680.32 → 壹仟陆佰捌拾元零叁角贰分), omitted with ``zero_before_jiao=False``;
    * zero → 零元整; below one yuan → no 元 part (0.05 → 伍分, 0.50 → 伍角整);
    * ``prefix=True`` puts 人民币 directly in front, with no gap.
    """
    value = _to_decimal(amount)
    if value < 0:
        raise ValueError(f"amount must not be negative: {amount!r}")
    total_fen = fen(value)
    yuan_part, cents = divmod(total_fen, 100)
    if yuan_part >= MAX_UPPER_YUAN:
        raise ValueError(f"amount too large for rmb_upper (must be < 10^16 yuan): {amount!r}")
    jiao, fen_digit = divmod(cents, 10)

    if total_fen == 0:
        text = "零元整"
    else:
        text = ""
        if yuan_part:
            text = _integer_words(yuan_part) + "元"
            mandatory_zero = jiao == 0 and fen_digit != 0  # 角 0, 分 ≠ 0
            optional_zero = jiao != 0 and yuan_part % 10 == 0 and zero_before_jiao  # 元位 0
            if mandatory_zero or optional_zero:
                text += "零"
        if jiao:
            text += _DIGITS[jiao] + "角"
        if fen_digit:
            text += _DIGITS[fen_digit] + "分"
        else:
            text += "整"
    return (_PREFIX if prefix else "") + text
