"""Sandboxed expressions for guards, eligibility rules and award formulas.

Built on ``simpleeval`` (no ``eval``): names resolve only to the values we pass in,
attributes only to the fields of :class:`Record` objects, and the only callables are the
functions in :data:`FUNCTIONS`. On top of simpleeval we add:

* every numeric literal becomes a ``Decimal`` and ``/`` is exact Decimal division, so
  money is never a float;
* limits on source length, syntax-tree size, evaluation steps and wall-clock time, and
  no comprehensions or lambdas, so an expression cannot loop or allocate without bound;
* :func:`referenced_names` for the linter (which fields and parameters an expression uses).
"""

from __future__ import annotations

import ast
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from simpleeval import DEFAULT_OPERATORS, FeatureNotAvailable, InvalidExpression, SimpleEval

MAX_SOURCE_LENGTH = 2000
MAX_NODES = 400
MAX_STEPS = 20_000
MAX_SECONDS = 0.5
MAX_EXPONENT = 100
MAX_LIST = 10_000


class ExpressionError(Exception):
    """An expression is unsafe, malformed or failed while evaluating."""

    def __init__(self, message: str, expression: str | None = None):
        super().__init__(message)
        self.message = message
        self.expression = expression

    def __str__(self) -> str:
        if self.expression:
            return f"{self.message} (in: {self.expression})"
        return self.message


class Record:
    """Read-only attribute access to a mapping: ``form.loan_amount``.

    It deliberately has no public methods, so ``form.items`` or ``form.keys`` cannot
    reach dict methods; simpleeval refuses names starting with ``_``.
    """

    __slots__ = ("_data", "_name")

    def __init__(self, data: Mapping[str, Any], name: str = "record"):
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_name", name)

    def __getattr__(self, key: str) -> Any:
        data = object.__getattribute__(self, "_data")
        if key in data:
            return wrap(data[key], key)
        name = object.__getattribute__(self, "_name")
        raise ExpressionError(f"unknown field '{key}' in {name}")

    def __getitem__(self, key: str) -> Any:
        return self.__getattr__(key)

    def __setattr__(self, key: str, value: Any) -> None:
        raise ExpressionError("records are read-only")

    def __repr__(self) -> str:
        return f"Record({object.__getattribute__(self, '_name')})"


def wrap(value: Any, name: str = "record") -> Any:
    """Expose nested mappings as Records and lists of mappings as lists of Records."""
    if isinstance(value, Mapping):
        return Record(value, name)
    if isinstance(value, list | tuple):
        return [wrap(v, name) for v in value]
    return value


# ---------------------------------------------------------------- functions


def _dec(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            raise ExpressionError(f"not a number: {value!r}") from None
    if isinstance(value, float):
        return Decimal(repr(value))
    if value is None:
        raise ExpressionError("a number is missing (empty field)")
    raise ExpressionError(f"not a number: {value!r}")


def _to_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ExpressionError(f"not a date: {value!r}") from None
    if value is None:
        raise ExpressionError("a date is missing (empty field)")
    raise ExpressionError(f"not a date: {value!r}")


def fn_min(*args: Any) -> Any:
    values = _flatten(args)
    if not values:
        raise ExpressionError("min() of nothing")
    if all(isinstance(v, date) for v in values):
        return min(values)
    return min(_dec(v) for v in values)


def fn_max(*args: Any) -> Any:
    values = _flatten(args)
    if not values:
        raise ExpressionError("max() of nothing")
    if all(isinstance(v, date) for v in values):
        return max(values)
    return max(_dec(v) for v in values)


def fn_sum(*args: Any) -> Decimal:
    return sum((_dec(v) for v in _flatten(args)), Decimal(0))


def _flatten(args: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for a in args:
        if isinstance(a, list | tuple):
            out.extend(a)
        else:
            out.append(a)
    if len(out) > MAX_LIST:
        raise ExpressionError("list too long")
    return out


def fn_round_fen(value: Any) -> Decimal:
    """Round half-up to the fen (0.01 yuan)."""
    return _dec(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def fn_round_yuan(value: Any) -> Decimal:
    return _dec(value).quantize(Decimal("1"), rounding=ROUND_HALF_UP)


def fn_days_between(start: Any, end: Any) -> Decimal:
    """Calendar days from ``start`` to ``end`` (end - start)."""
    return Decimal((_to_date(end) - _to_date(start)).days)


def fn_count(values: Any, *_: Any) -> Decimal:
    if not isinstance(values, list | tuple):
        raise ExpressionError("count() needs a list (a repeatable group)")
    return Decimal(len(values))


def fn_count_where(values: Any, field: str, expected: Any = True) -> Decimal:
    """Rows of a repeatable group whose ``field`` equals ``expected``."""
    if not isinstance(values, list | tuple):
        raise ExpressionError("count_where() needs a list (a repeatable group)")
    n = 0
    for row in values:
        v = getattr(row, field) if isinstance(row, Record) else None
        if v == expected or (isinstance(expected, Decimal) and _safe_eq_number(v, expected)):
            n += 1
    return Decimal(n)


def _safe_eq_number(a: Any, b: Decimal) -> bool:
    try:
        return _dec(a) == b
    except ExpressionError:
        return False


def fn_pluck(values: Any, field: str) -> list[Any]:
    """The ``field`` of every row of a repeatable group, as a list."""
    if not isinstance(values, list | tuple):
        raise ExpressionError("pluck() needs a list (a repeatable group)")
    return [getattr(row, field) for row in values]


def fn_all(values: Any) -> bool:
    return all(bool(v) for v in _flatten([values]))


def fn_any(values: Any) -> bool:
    return any(bool(v) for v in _flatten([values]))


def fn_date(*args: Any) -> date:
    if len(args) == 1:
        return _to_date(args[0])
    y, m, d = (int(_dec(a)) for a in args)
    return date(y, m, d)


def fn_year(value: Any) -> Decimal:
    return Decimal(_to_date(value).year)


def fn_is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def fn_unique(values: Any) -> bool:
    """True when no value repeats (e.g. a patent listed twice)."""
    items = _flatten([values])
    seen = [v for v in items if not fn_is_empty(v)]
    return len(seen) == len(set(seen))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "min": fn_min,
    "max": fn_max,
    "sum": fn_sum,
    "round_fen": fn_round_fen,
    "round_yuan": fn_round_yuan,
    "days_between": fn_days_between,
    "count": fn_count,
    "count_where": fn_count_where,
    "pluck": fn_pluck,
    "all_of": fn_all,
    "any_of": fn_any,
    "date": fn_date,
    "year": fn_year,
    "is_empty": fn_is_empty,
    "unique": fn_unique,
    "decimal": _dec,
}


# ---------------------------------------------------------------- evaluator


def _div(a: Any, b: Any) -> Decimal:
    b = _dec(b)
    if b == 0:
        raise ExpressionError("division by zero")
    return _dec(a) / b


def _pow(a: Any, b: Any) -> Decimal:
    b = _dec(b)
    if abs(b) > MAX_EXPONENT:
        raise ExpressionError(f"exponent larger than {MAX_EXPONENT}")
    if b != b.to_integral_value():
        raise ExpressionError("only whole-number exponents are allowed")
    return _dec(a) ** int(b)


def _num_op(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(a: Any, b: Any) -> Any:
        if (
            isinstance(a, Decimal | int)
            and isinstance(b, Decimal | int)
            and not (isinstance(a, bool) or isinstance(b, bool))
        ):
            return op(_dec(a), _dec(b))
        if isinstance(a, date) or isinstance(b, date):
            raise ExpressionError("use days_between() for date arithmetic")
        return op(_dec(a), _dec(b))

    return apply


class _Evaluator(SimpleEval):
    def __init__(self, names: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]]):
        import operator

        ops = dict(DEFAULT_OPERATORS)
        ops[ast.Div] = _div
        ops[ast.Pow] = _pow
        ops[ast.FloorDiv] = lambda a, b: (_div(a, b)).to_integral_value(rounding="ROUND_FLOOR")
        ops[ast.Add] = _num_op(operator.add)
        ops[ast.Sub] = _num_op(operator.sub)
        ops[ast.Mult] = _num_op(operator.mul)
        ops[ast.Mod] = _num_op(operator.mod)
        ops.pop(ast.BitXor, None)
        ops.pop(ast.BitOr, None)
        ops.pop(ast.BitAnd, None)
        ops.pop(ast.LShift, None)
        ops.pop(ast.RShift, None)
        super().__init__(operators=ops, functions=dict(functions), names=dict(names))
        # Literal lists/tuples (for `x in ['a', 'b']`); comprehensions stay unavailable.
        self.nodes[ast.List] = self._eval_list
        self.nodes[ast.Tuple] = self._eval_tuple
        self._steps = 0
        self._deadline = 0.0

    def _eval(self, node: ast.AST) -> Any:
        self._steps += 1
        if self._steps > MAX_STEPS:
            raise ExpressionError("expression took too many steps")
        if self._steps % 256 == 0 and time.monotonic() > self._deadline:
            raise ExpressionError("expression took too long")
        return super()._eval(node)

    def _eval_constant(self, node: ast.Constant) -> Any:
        value = node.value
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float):
            return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        raise ExpressionError(f"unsupported literal {value!r}")

    def _eval_name(self, node: ast.Name) -> Any:
        if node.id in ("True", "true"):
            return True
        if node.id in ("False", "false"):
            return False
        if node.id in ("None", "null"):
            return None
        if node.id not in self.names:
            raise ExpressionError(f"unknown name '{node.id}'")
        return self.names[node.id]

    def _eval_list(self, node: ast.List) -> list[Any]:
        if len(node.elts) > 100:
            raise ExpressionError("list literal too long")
        return [self._eval(e) for e in node.elts]

    def _eval_tuple(self, node: ast.Tuple) -> tuple[Any, ...]:
        return tuple(self._eval(e) for e in node.elts)

    def run(self, tree: ast.AST) -> Any:
        self._steps = 0
        self._deadline = time.monotonic() + MAX_SECONDS
        return self._eval(tree)


_ALLOWED_NODES = (
    ast.Expression,
    ast.BoolOp,
    ast.BinOp,
    ast.UnaryOp,
    ast.IfExp,
    ast.Compare,
    ast.Call,
    ast.Constant,
    ast.Attribute,
    ast.Subscript,
    ast.Name,
    ast.Load,
    ast.List,
    ast.Tuple,
    ast.operator,
    ast.boolop,
    ast.unaryop,
    ast.cmpop,
)


def parse(source: str) -> ast.Expression:
    """Parse and vet an expression; raises ExpressionError for anything unsafe."""
    if not isinstance(source, str):
        raise ExpressionError("an expression must be text")
    if len(source) > MAX_SOURCE_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_SOURCE_LENGTH} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error: {exc.msg}", source) from None
    for count, node in enumerate(ast.walk(tree), start=1):
        if count > MAX_NODES:
            raise ExpressionError("expression too complex", source)
        if not isinstance(node, _ALLOWED_NODES):
            raise ExpressionError(f"'{type(node).__name__}' is not allowed", source)
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExpressionError(f"attribute '{node.attr}' is not allowed", source)
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            raise ExpressionError(f"name '{node.id}' is not allowed", source)
        if isinstance(node, ast.Call) and not isinstance(node.func, ast.Name):
            raise ExpressionError("only the built-in functions can be called", source)
        if isinstance(node, ast.Call) and node.keywords:
            raise ExpressionError("keyword arguments are not allowed", source)
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str | bytes)
            and len(node.value) > 200
        ):
            raise ExpressionError("string literal too long", source)
    return tree


_PARSE_CACHE: dict[str, ast.Expression] = {}


def _cached_parse(source: str) -> ast.Expression:
    tree = _PARSE_CACHE.get(source)
    if tree is None:
        tree = parse(source)
        if len(_PARSE_CACHE) < 5000:
            _PARSE_CACHE[source] = tree
    return tree


ROW_FUNCTIONS = ("count_if", "all_rows", "any_row")


def _row_functions(outer: _Evaluator) -> dict[str, Callable[..., Any]]:
    """Per-row predicates over a repeatable group: ``count_if(form.loans, "row.x > 0")``.

    The inner expression is a string literal evaluated once per row with ``row`` bound; it
    shares the outer evaluation's step and time budget and cannot nest another row function.
    """

    def rows_and_tree(name: str, rows: Any, expr: Any) -> tuple[list[Any], ast.Expression]:
        if not isinstance(rows, list | tuple):
            raise ExpressionError(f"{name}() needs a repeatable group as its first argument")
        if not isinstance(expr, str):
            raise ExpressionError(f"{name}() needs the row condition as a quoted string")
        if len(rows) > MAX_LIST:
            raise ExpressionError("list too long")
        return list(rows), _cached_parse(expr)

    def each(name: str, rows: Any, expr: Any) -> list[bool]:
        items, tree = rows_and_tree(name, rows, expr)
        inner_fns = {k: v for k, v in outer.functions.items() if k not in ROW_FUNCTIONS}
        results = []
        for row in items:
            names = dict(outer.names)
            names["row"] = row if isinstance(row, Record) else wrap(row, "row")
            inner = _Evaluator(names, inner_fns)
            inner._steps, inner._deadline = outer._steps, outer._deadline
            results.append(bool(inner._eval(tree.body)))
            outer._steps = inner._steps
        return results

    return {
        "count_if": lambda rows, expr: Decimal(sum(each("count_if", rows, expr))),
        "all_rows": lambda rows, expr: all(each("all_rows", rows, expr)),
        "any_row": lambda rows, expr: any(each("any_row", rows, expr)),
    }


def evaluate(
    source: str,
    names: Mapping[str, Any],
    functions: Mapping[str, Callable[..., Any]] | None = None,
) -> Any:
    """Evaluate ``source`` with only ``names`` and the safe functions in scope."""
    tree = _cached_parse(source)
    fns = dict(FUNCTIONS)
    if functions:
        fns.update(functions)
    evaluator = _Evaluator(names, fns)
    evaluator.functions.update(_row_functions(evaluator))
    try:
        return evaluator.run(tree.body)
    except ExpressionError as exc:
        if exc.expression is None:
            exc.expression = source
        raise
    except (FeatureNotAvailable, InvalidExpression) as exc:
        raise ExpressionError(str(exc), source) from None
    except (ArithmeticError, TypeError, ValueError, InvalidOperation) as exc:
        raise ExpressionError(f"{type(exc).__name__}: {exc}", source) from None
    except RecursionError:
        raise ExpressionError("expression nested too deeply", source) from None


def referenced_names(source: str) -> set[tuple[str, ...]]:
    """Dotted name paths used by an expression: ``form.loans`` -> ("form", "loans")."""
    tree = parse(source)
    paths: set[tuple[str, ...]] = set()
    called: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            called.add(id(node.func))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            parts: list[str] = [node.attr]
            cur: ast.AST = node.value
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name):
                parts.append(cur.id)
                paths.add(tuple(reversed(parts)))
        elif isinstance(node, ast.Name) and id(node) not in called:
            paths.add((node.id,))
    # Drop prefixes of longer paths (form is implied by form.x).
    return {p for p in paths if not any(q[: len(p)] == p and len(q) > len(p) for q in paths)}


def called_functions(source: str) -> set[str]:
    tree = parse(source)
    return {
        n.func.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }


def to_jsonable(value: Any) -> Any:
    """Trace values as JSON: Decimals as strings (exact), dates ISO, Records by name."""
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Record):
        return repr(value)
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value
