"""Pure domain helpers: credit codes, RMB amounts, document numbers, working days, LPR.

No Flask, no database. Rules and their sources are in ``docs/DOMAIN_HELPERS.md``.
"""

from workflow.domain.credit_code import (
    CREDIT_CODE_ERRORS,
    CREDIT_CODE_WARNINGS,
    CreditCodeInfo,
    credit_code_problems,
    describe_credit_code,
    is_valid_credit_code,
    normalize_credit_code,
    org_code_check_ok,
)
from workflow.domain.credit_code_tables import REGISTRATION_DEPARTMENTS
from workflow.domain.doc_number import (
    format_chinese_date,
    format_doc_number,
    normalize_doc_number,
    parse_doc_number,
)
from workflow.domain.lpr import LprRow, LprTable, Month, default_lpr_table, previous_month
from workflow.domain.money import fen, format_yuan, rmb_upper, round_fen, yuan
from workflow.domain.workdays import (
    CalendarNotCoveredError,
    add_working_days,
    clear_overrides,
    covered_years,
    is_working_day,
    register_overrides,
    working_days_between,
)

__all__ = [
    "CREDIT_CODE_ERRORS",
    "CREDIT_CODE_WARNINGS",
    "REGISTRATION_DEPARTMENTS",
    "CalendarNotCoveredError",
    "CreditCodeInfo",
    "LprRow",
    "LprTable",
    "Month",
    "add_working_days",
    "clear_overrides",
    "covered_years",
    "credit_code_problems",
    "default_lpr_table",
    "describe_credit_code",
    "fen",
    "format_chinese_date",
    "format_doc_number",
    "format_yuan",
    "is_valid_credit_code",
    "is_working_day",
    "normalize_credit_code",
    "normalize_doc_number",
    "org_code_check_ok",
    "parse_doc_number",
    "previous_month",
    "register_overrides",
    "rmb_upper",
    "round_fen",
    "working_days_between",
    "yuan",
]
