"""Validation of form data against a definition, independent of any web form library.

``clean_form`` normalises what was typed (and never fails on missing values: drafts may
be incomplete); ``submission_errors`` is the full check run before submitting. Messages
are bilingual dicts so every caller (web, CLI, simulation) shows the user's language.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from .definitions.schema import FieldDef, Program, Section
from .domain import is_valid_credit_code
from .expressions import ExpressionError, Record, evaluate
from .values import typed_form

Message = dict[str, str]
PHONE_RE = re.compile(r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8}(-\d{1,6})?)$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[A-Za-z]{2,24}$")
MAX_TEXT = 2000


def _msg(zh: str, en: str) -> Message:
    return {"zh": zh, "en": en}


def clean_value(f: FieldDef, raw: Any) -> tuple[Any, Message | None]:
    """Normalise one raw value to its stored JSON form; returns (value, error)."""
    if raw is None:
        return None, None
    if isinstance(raw, str):
        raw = raw.strip()
        if raw == "":
            return None, None
    limit = f.max_length or (20000 if f.type == "textarea" else MAX_TEXT)
    if f.type in ("text", "textarea", "email", "phone", "credit_code"):
        value = str(raw)
        if "\x00" in value:
            return None, _msg("含有非法字符。", "Contains an invalid character.")
        if len(value) > limit:
            return value[:limit], _msg(f"不能超过{limit}个字符。", f"At most {limit} characters.")
        if f.type == "email" and not EMAIL_RE.match(value):
            return value, _msg("电子邮箱格式不正确。", "Not a valid e-mail address.")
        if f.type == "phone" and not PHONE_RE.match(value.replace(" ", "")):
            return value, _msg("电话号码格式不正确。", "Not a valid phone number.")
        if f.type == "credit_code" and not is_valid_credit_code(value):
            return value, _msg(
                "统一社会信用代码不正确（请核对校验位）。",
                "Invalid unified social credit code (check digit).",
            )
        if f.pattern and not re.fullmatch(f.pattern, value):
            msg = (
                f.pattern_message.model_dump()
                if f.pattern_message
                else _msg("格式不正确。", "Invalid format.")
            )
            return value, msg
        return value, None
    if f.type in ("integer", "decimal", "money", "percent"):
        text = str(raw).replace(",", "").replace("，", "").strip()
        if len(text) > 30:
            return None, _msg("数字太长。", "Number too long.")
        try:
            number = Decimal(text)
        except InvalidOperation:
            return None, _msg("请输入数字。", "Enter a number.")
        if not number.is_finite():
            return None, _msg("请输入数字。", "Enter a number.")
        if f.type == "integer" and number != number.to_integral_value():
            return None, _msg("请输入整数。", "Enter a whole number.")
        if f.type == "money" and number.as_tuple().exponent < -2:  # type: ignore[operator]
            return None, _msg("金额最多两位小数。", "At most two decimals for amounts.")
        if abs(number) >= Decimal("1e13"):
            return None, _msg("数值超出范围。", "Number out of range.")
        if f.min is not None and number < Decimal(f.min):
            return str(number), _msg(f"不能小于{f.min}。", f"Must be at least {f.min}.")
        if f.max is not None and number > Decimal(f.max):
            return str(number), _msg(f"不能大于{f.max}。", f"Must be at most {f.max}.")
        if f.type == "integer":
            return str(int(number)), None
        if f.type == "money":
            return str(number.quantize(Decimal("0.01"))), None
        return str(number), None
    if f.type == "date":
        try:
            return date.fromisoformat(str(raw)[:10]).isoformat(), None
        except ValueError:
            return None, _msg("请输入日期（年-月-日）。", "Enter a date (YYYY-MM-DD).")
    if f.type == "boolean":
        if isinstance(raw, bool):
            return raw, None
        return str(raw).lower() in ("1", "true", "yes", "y", "on"), None
    if f.type == "choice":
        allowed = {c.value for c in f.choices or []}
        value = str(raw)
        if value not in allowed:
            return None, _msg("请选择列表中的选项。", "Choose one of the listed options.")
        return value, None
    if f.type == "multichoice":
        allowed = {c.value for c in f.choices or []}
        values = raw if isinstance(raw, list) else [raw]
        values = [str(v) for v in values]
        if any(v not in allowed for v in values):
            return [v for v in values if v in allowed], _msg(
                "请选择列表中的选项。", "Choose from the listed options."
            )
        return values, None
    return raw, None


def clean_form(program: Program, raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Message]]:
    """Normalise all declared fields; unknown keys are dropped. Errors are keyed by
    ``field`` or ``section.row.field`` (rows counted from 1)."""
    data: dict[str, Any] = {}
    errors: dict[str, Message] = {}
    for section in program.form.sections:
        if section.repeatable:
            rows_in = raw.get(section.key) or []
            if not isinstance(rows_in, list):
                rows_in = []
            rows: list[dict[str, Any]] = []
            for i, row in enumerate(rows_in[: section.max_rows], start=1):
                if not isinstance(row, dict):
                    continue
                out_row: dict[str, Any] = {}
                for f in section.fields:
                    value, err = clean_value(f, row.get(f.key))
                    out_row[f.key] = value
                    if err:
                        errors[f"{section.key}.{i}.{f.key}"] = err
                if any(v not in (None, "", False, []) for v in out_row.values()):
                    rows.append(out_row)
            if len(rows_in) > section.max_rows:
                errors[section.key] = _msg(
                    f"最多{section.max_rows}行。", f"At most {section.max_rows} rows."
                )
            data[section.key] = rows
        else:
            for f in section.fields:
                value, err = clean_value(f, raw.get(f.key))
                data[f.key] = value
                if err:
                    errors[f.key] = err
    return data, errors


def _visible(expr: str | None, names: dict[str, Any]) -> bool:
    if not expr:
        return True
    try:
        return bool(evaluate(expr, names))
    except ExpressionError:
        return True


def submission_errors(
    program: Program,
    data: dict[str, Any],
    materials_present: dict[str, int],
    params: dict[str, Any] | None = None,
) -> dict[str, Message]:
    """Everything that must be fixed before submitting: field checks, required fields
    (visible ones only), row counts and required materials."""
    from .values import typed_params

    cleaned, errors = clean_form(program, data)
    typed = typed_form(program, cleaned)
    names = {
        "form": Record(typed, "form"),
        "params": Record(typed_params(program, params), "params"),
    }
    required = _msg("必填。", "Required.")
    for section in program.form.sections:
        if not _visible(section.visible_if, names):
            continue
        if section.repeatable:
            rows = cleaned.get(section.key) or []
            if len(rows) < section.min_rows:
                errors.setdefault(
                    section.key,
                    _msg(f"至少填写{section.min_rows}行。", f"At least {section.min_rows} row(s)."),
                )
            for i, row in enumerate(rows, start=1):
                row_names = dict(names)
                row_names["row"] = Record(typed[section.key][i - 1], "row")
                for f in section.fields:
                    key = f"{section.key}.{i}.{f.key}"
                    if (
                        f.required
                        and _empty(f, row.get(f.key))
                        and _visible(f.visible_if, row_names)
                    ):
                        errors.setdefault(key, required)
        else:
            _required_fields(section, cleaned, names, errors, required)
    for m in program.materials:
        needed = m.required
        if m.required_if:
            needed = _visible(m.required_if, names) and bool(_safe(m.required_if, names))
        if needed and not materials_present.get(m.kind):
            errors[f"material.{m.kind}"] = _msg("请上传该材料。", "Upload this material.")
    return errors


def _safe(expr: str, names: dict[str, Any]) -> Any:
    try:
        return evaluate(expr, names)
    except ExpressionError:
        return False


def _required_fields(
    section: Section,
    cleaned: dict[str, Any],
    names: dict[str, Any],
    errors: dict[str, Message],
    required: Message,
) -> None:
    for f in section.fields:
        if f.required and _empty(f, cleaned.get(f.key)) and _visible(f.visible_if, names):
            errors.setdefault(f.key, required)


def _empty(f: FieldDef, value: Any) -> bool:
    if f.type == "boolean":
        # A required checkbox is a declaration: it must be ticked.
        return value is not True
    return value is None or value == "" or value == []
