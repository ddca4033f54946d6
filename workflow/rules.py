"""Eligibility rules and award formulas, evaluated with a trace for reviewers and letters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from .definitions.schema import AwardStep, Program
from .expressions import ExpressionError, Record, evaluate, to_jsonable


@dataclass
class RuleResult:
    id: str
    passed: bool
    severity: str
    applicant_message: dict[str, str]
    reviewer_message: dict[str, str]
    officer_confirms: bool = False
    error: str | None = None
    source: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_eligibility(
    program: Program, names: dict[str, Any], functions: dict[str, Any]
) -> list[RuleResult]:
    """Evaluate every rule. A rule that cannot be evaluated (a field is empty) fails with
    the evaluation error attached, so the applicant sees what is missing."""
    results = []
    for rule in program.eligibility:
        error = None
        try:
            passed = bool(evaluate(rule.expr, names, functions))
        except ExpressionError as exc:
            passed = False
            error = exc.message
        results.append(
            RuleResult(
                id=rule.id,
                passed=passed,
                severity=rule.severity,
                applicant_message=rule.applicant_message.model_dump(),
                reviewer_message=rule.reviewer_message.model_dump(),
                officer_confirms=rule.officer_confirms,
                error=error,
                source=rule.source,
            )
        )
    return results


def blocking_failures(results: list[RuleResult]) -> list[RuleResult]:
    return [r for r in results if not r.passed and r.severity == "error"]


@dataclass
class AwardResult:
    amount: Decimal | None
    trace: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def amount_fen(self) -> int | None:
        if self.amount is None:
            return None
        return int((self.amount * 100).quantize(Decimal("1"), rounding=ROUND_HALF_UP))

    def as_dict(self) -> dict[str, Any]:
        return {
            "amount": to_jsonable(self.amount) if self.amount is not None else None,
            "trace": self.trace,
            "error": self.error,
        }


def compute_award(
    program: Program, names: dict[str, Any], functions: dict[str, Any]
) -> AwardResult:
    """Run the award steps in order. Each step's value becomes a name for later steps; the
    trace records the expression, inputs and value of every step (per row for groups)."""
    scope = dict(names)
    trace: list[dict[str, Any]] = []
    try:
        _run_steps(program.award.steps, scope, functions, trace)
        amount = scope[program.award.result]
    except ExpressionError as exc:
        return AwardResult(None, trace, str(exc))
    except KeyError as exc:
        return AwardResult(None, trace, f"award result '{exc.args[0]}' was never computed")
    try:
        value = Decimal(amount)
    except (TypeError, ValueError, ArithmeticError):
        return AwardResult(None, trace, f"award result is not a number: {amount!r}")
    value = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if value < 0:
        value = Decimal("0.00")
    return AwardResult(value, trace)


def _run_steps(
    steps: list[AwardStep],
    scope: dict[str, Any],
    functions: dict[str, Any],
    trace: list[dict[str, Any]],
) -> None:
    for step in steps:
        label = step.label.model_dump() if step.label else None
        if step.for_each:
            rows = getattr(scope["form"], step.for_each)
            values = []
            row_traces = []
            for index, row in enumerate(rows):
                row_scope = dict(scope)
                row_scope["row"] = row if isinstance(row, Record) else Record(row, "row")
                sub: list[dict[str, Any]] = []
                _run_steps(step.steps or [], row_scope, functions, sub)
                values.append(row_scope[step.result])  # type: ignore[index]
                row_traces.append({"row": index + 1, "steps": sub})
            scope[step.name] = values
            trace.append(
                {
                    "name": step.name,
                    "label": label,
                    "for_each": step.for_each,
                    "rows": row_traces,
                    "value": to_jsonable(values),
                }
            )
        else:
            value = evaluate(step.expr or "", scope, functions)
            scope[step.name] = value
            trace.append(
                {"name": step.name, "label": label, "expr": step.expr, "value": to_jsonable(value)}
            )
