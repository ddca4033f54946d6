"""``flask definitions lint``: problems a schema cannot see.

Reports unreachable states, non-terminal dead ends, unknown roles, expressions that refer
to unknown fields, parameters or functions, guards that cannot parse, transitions nobody
can fire, and unknown document templates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..expressions import (
    FUNCTIONS,
    ROW_FUNCTIONS,
    ExpressionError,
    called_functions,
    referenced_names,
)
from ..models import ROLES, SYSTEM_ROLES
from .schema import AwardStep, Program

TABLE_FUNCTIONS = {"lpr", "add_working_days", "working_days_between"}
APP_FACTS = {
    "state",
    "district",
    "org_type",
    "award",
    "score",
    "rank",
    "has_number",
    "experts_assigned",
    "experts_submitted",
    "objections_pending",
    "objections_upheld",
    "eligible",
}
ORG_FACTS = {"district", "org_type", "credit_code"}
LITERALS = {"true", "false", "null", "True", "False", "None"}
TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "documents" / "templates"


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def lint_program(program: Program) -> list[Problem]:
    problems: list[Problem] = []
    problems += _lint_consistency(program)
    problems += _lint_graph(program)
    problems += _lint_roles(program)
    problems += _lint_expressions(program)
    problems += _lint_documents(program)
    return problems


def _lint_consistency(program: Program) -> list[Problem]:
    out = []
    triggers = {t.trigger for t in program.transitions}
    fe = program.four_eyes
    for name in [*fe.review_triggers, *fe.approval_triggers]:
        if name not in triggers:
            out.append(Problem("four_eyes", f"'{name}' is not a transition trigger"))
    has_documents = any(s.documents for s in program.states)
    if has_documents and "issuing_authority" not in program.parameters:
        out.append(Problem("parameters", "states produce documents: define 'issuing_authority'"))
    uses_eligible = any("app.eligible" in g for t in program.transitions for g in t.guards)
    if uses_eligible and not program.eligibility:
        out.append(Problem("transitions", "a guard uses app.eligible but there are no rules"))
    return out


def _lint_graph(program: Program) -> list[Problem]:
    out = []
    reachable = {program.initial}
    frontier = [program.initial]
    while frontier:
        s = frontier.pop()
        for t in program.transitions:
            if s in t.source and t.dest not in reachable:
                reachable.add(t.dest)
                frontier.append(t.dest)
    for s in program.states:
        if s.name not in reachable:
            out.append(Problem(f"states.{s.name}", "unreachable from the initial state"))
        outgoing = [t for t in program.transitions if s.name in t.source]
        if not s.terminal and not outgoing:
            out.append(Problem(f"states.{s.name}", "not terminal but has no way out (dead end)"))
        if s.terminal and outgoing and s.stage not in ("decided", "payment"):
            out.append(Problem(f"states.{s.name}", "terminal but has outgoing transitions"))
        if s.deadline_trigger and not any(
            t.trigger == s.deadline_trigger and s.name in t.source for t in program.transitions
        ):
            out.append(
                Problem(
                    f"states.{s.name}",
                    f"deadline_trigger '{s.deadline_trigger}' "
                    "is not a transition out of this state",
                )
            )
    return out


def _lint_roles(program: Program) -> list[Problem]:
    out = []
    known = set(ROLES) | set(SYSTEM_ROLES)
    for i, t in enumerate(program.transitions):
        for r in t.roles:
            if r not in known:
                out.append(Problem(f"transitions[{i}] ({t.trigger})", f"unknown role '{r}'"))
        if (
            isinstance(t.deadline_working_days, str)
            and t.deadline_working_days not in program.parameters
        ):
            out.append(
                Problem(
                    f"transitions[{i}] ({t.trigger})",
                    f"deadline parameter '{t.deadline_working_days}' is not defined",
                )
            )
    for t in program.transitions:
        if "expert" in t.roles and program.scoring is None:
            out.append(Problem(f"transitions ({t.trigger})", "expert role but no scoring rubric"))
    return out


def _lint_documents(program: Program) -> list[Problem]:
    out = []
    rejection_states = set()
    for s in program.states:
        for d in s.documents:
            if not (TEMPLATES_DIR / d.template).is_file():
                out.append(Problem(f"states.{s.name}.documents", f"no template '{d.template}'"))
            if d.kind == "rejection":
                rejection_states.add(s.name)
    # A rejection letter states its reason (行政决定须说明理由): every way into such a
    # state must ask for one or supply a default.
    for i, t in enumerate(program.transitions):
        if t.dest in rejection_states and not (t.reason_required or t.default_reason):
            out.append(
                Problem(
                    f"transitions[{i}] ({t.trigger})",
                    f"leads to '{t.dest}', which issues a rejection letter: set "
                    "reason_required or default_reason",
                )
            )
    return out


def _lint_expressions(program: Program) -> list[Problem]:
    out: list[Problem] = []
    fields = program.all_fields()
    groups = {s.key: {f.key for f in s.fields} for s in program.repeatable_sections()}
    params = set(program.parameters)
    functions = set(FUNCTIONS) | TABLE_FUNCTIONS | set(ROW_FUNCTIONS)

    def check(where: str, expr: str, extra: set[str] | None = None, row: str | None = None):
        try:
            paths = referenced_names(expr)
            calls = called_functions(expr)
        except ExpressionError as exc:
            out.append(Problem(where, f"invalid expression: {exc.message}"))
            return
        for fn in calls - functions:
            out.append(Problem(where, f"unknown function '{fn}'"))
        for path in paths:
            head = path[0]
            if head == "form":
                if len(path) < 2:
                    continue
                if path[1] not in fields and path[1] not in groups:
                    out.append(Problem(where, f"unknown field 'form.{path[1]}'"))
            elif head == "params":
                if len(path) >= 2 and path[1] not in params:
                    out.append(Problem(where, f"unknown parameter 'params.{path[1]}'"))
            elif head == "row":
                if row is None:
                    out.append(Problem(where, "'row' is only available inside for_each"))
                elif len(path) >= 2 and path[1] not in groups.get(row, set()):
                    out.append(Problem(where, f"unknown field 'row.{path[1]}' in group '{row}'"))
            elif head == "app":
                if len(path) >= 2 and path[1] not in APP_FACTS:
                    out.append(Problem(where, f"unknown fact 'app.{path[1]}'"))
            elif head == "org":
                if len(path) >= 2 and path[1] not in ORG_FACTS:
                    out.append(Problem(where, f"unknown fact 'org.{path[1]}'"))
            elif head in LITERALS or head == "today" or head in (extra or set()):
                continue
            elif head in fields:
                out.append(Problem(where, f"'{head}' must be written 'form.{head}'"))
            else:
                out.append(Problem(where, f"unknown name '{head}'"))
        # String arguments of pluck/count_where must name fields of the group.
        import ast

        for node in ast.walk(ast.parse(expr, mode="eval")):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("pluck", "count_where")
                and len(node.args) >= 2
                and isinstance(node.args[0], ast.Attribute)
                and isinstance(node.args[1], ast.Constant)
            ):
                group = node.args[0].attr
                name = node.args[1].value
                if group in groups and name not in groups[group]:
                    out.append(Problem(where, f"'{name}' is not a field of group '{group}'"))
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ROW_FUNCTIONS
            ):
                if (
                    len(node.args) != 2
                    or not isinstance(node.args[0], ast.Attribute)
                    or node.args[0].attr not in groups
                    or not isinstance(node.args[1], ast.Constant)
                    or not isinstance(node.args[1].value, str)
                ):
                    out.append(
                        Problem(
                            where, f"{node.func.id}() takes form.<group> and a quoted row condition"
                        )
                    )
                else:
                    inner = node.args[1].value
                    try:
                        nested = called_functions(inner) & set(ROW_FUNCTIONS)
                    except ExpressionError:
                        nested = set()
                    if nested:
                        out.append(
                            Problem(where, f"row functions cannot be nested ({sorted(nested)})")
                        )
                    check(
                        f"{where} ({node.func.id} row condition)",
                        inner,
                        extra=extra,
                        row=node.args[0].attr,
                    )

    def form_only(where: str, expr: str) -> None:
        # Forms are evaluated while typing: only form, params and row are known there.
        try:
            heads = {p[0] for p in referenced_names(expr)}
            calls = called_functions(expr)
        except ExpressionError:
            return
        for head in heads - {"form", "params", "row"} - LITERALS:
            out.append(Problem(where, f"'{head}' is not available in forms (only form, params)"))
        for fn in calls & (TABLE_FUNCTIONS | set(ROW_FUNCTIONS)):
            out.append(Problem(where, f"'{fn}' is not available in forms"))

    for s in program.form.sections:
        if s.visible_if:
            check(f"form.{s.key}.visible_if", s.visible_if)
            form_only(f"form.{s.key}.visible_if", s.visible_if)
        for f in s.fields:
            if f.visible_if:
                where = f"form.{s.key}.{f.key}.visible_if"
                check(where, f.visible_if, row=s.key if s.repeatable else None)
                form_only(where, f.visible_if)
    for m in program.materials:
        if m.required_if:
            check(f"materials.{m.kind}.required_if", m.required_if)
            form_only(f"materials.{m.kind}.required_if", m.required_if)
    for r in program.eligibility:
        check(f"eligibility.{r.id}", r.expr)

    def walk(steps: list[AwardStep], known: set[str], row: str | None, prefix: str) -> set[str]:
        for st in steps:
            if st.for_each:
                if st.for_each not in groups:
                    out.append(
                        Problem(
                            f"{prefix}.{st.name}",
                            f"for_each '{st.for_each}' is not a repeatable section",
                        )
                    )
                inner = walk(st.steps or [], set(known), st.for_each, f"{prefix}.{st.name}")
                if st.result not in inner:
                    out.append(Problem(f"{prefix}.{st.name}", f"result '{st.result}' not computed"))
            else:
                check(f"{prefix}.{st.name}", st.expr or "", extra=known, row=row)
            known.add(st.name)
        return known

    computed = walk(program.award.steps, set(), None, "award.steps")
    if program.award.result not in computed:
        out.append(Problem("award.result", f"'{program.award.result}' is not a step"))
    if program.award.allocation.order_by:
        check("award.allocation.order_by", program.award.allocation.order_by)
    for i, t in enumerate(program.transitions):
        for g in t.guards:
            check(f"transitions[{i}] ({t.trigger}).guards", g)
    if program.scoring:
        sc = program.scoring
        for p in (
            sc.pass_mark_param,
            sc.drop_extremes_param,
            sc.min_experts_param,
            sc.funded_count_param,
        ):
            if p and p not in params:
                out.append(Problem("scoring", f"parameter '{p}' is not defined"))
        keys = {c.key for c in sc.rubric}
        for k in sc.tie_breakers:
            if k not in keys:
                out.append(Problem("scoring.tie_breakers", f"'{k}' is not a rubric criterion"))
        if sc.tie_break_field:
            check("scoring.tie_break_field", sc.tie_break_field)
    return out
