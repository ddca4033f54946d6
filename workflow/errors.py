"""Errors the engine and operations raise, with a message in each UI language.

The web layer turns them into flash messages / status codes; the CLI prints them.
"""

from __future__ import annotations

from typing import Any


class WorkflowError(Exception):
    status = 400

    def __init__(self, zh: str, en: str, **details: Any):
        super().__init__(en)
        self.zh = zh
        self.en = en
        self.details = details

    def message(self, lang: str = "zh") -> str:
        return self.en if lang == "en" else self.zh


class NotFound(WorkflowError):
    status = 404


class PermissionDenied(WorkflowError):
    status = 403


class TransitionNotAllowed(WorkflowError):
    status = 409


class ConflictError(WorkflowError):
    """Someone else changed the record first (optimistic lock)."""

    status = 409

    def __init__(self) -> None:
        super().__init__(
            "该申报已被他人处理或修改，请刷新页面后重试。",
            "This application was changed by someone else in the meantime. "
            "Reload the page and try again.",
        )


class GuardFailed(WorkflowError):
    status = 422

    def __init__(self, failures: list[dict[str, Any]]):
        zh = "；".join(f["zh"] for f in failures)
        en = "; ".join(f["en"] or f["zh"] for f in failures)
        super().__init__(f"条件不满足：{zh}", f"Conditions not met: {en}", failures=failures)
        self.failures = failures


class ValidationFailed(WorkflowError):
    status = 422

    def __init__(self, zh: str, en: str, errors: dict[str, list[str]] | None = None):
        super().__init__(zh, en, errors=errors or {})
        self.errors = errors or {}


class BudgetExceeded(WorkflowError):
    status = 409
