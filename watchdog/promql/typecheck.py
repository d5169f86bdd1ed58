"""Static checks on a tree: types, arity and selector rules, with positions.

Run by the parser and again by `evaluate` (trees can also be built by hand), so
the evaluator may trust that every node is well-typed.
"""

from __future__ import annotations

import re

from watchdog.errors import PromQLError
from watchdog.samples import NAME

from .ast import Aggregation, Binary, Call, Expr, MatrixSelector, StringLiteral, Unary, VectorSelector
from .catalogue import COMPARISON_OPS, FUNCTIONS, RANGE_ONLY_IN, SET_OPS, ValueType

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def check(expr: Expr) -> None:
    """Raise PromQLError for the first problem found, top-down."""
    if expr.type is ValueType.MATRIX:
        raise PromQLError(RANGE_ONLY_IN, expr.pos)
    _walk(expr)
    if expr.type is not ValueType.SCALAR and expr.type is not ValueType.VECTOR:
        raise PromQLError(f"a query must yield a scalar or an instant vector, not {_article(expr.type)}", expr.pos)


def _walk(expr: Expr) -> None:
    match expr:
        case StringLiteral():
            raise PromQLError(
                f'string literal {expr} is only allowed as a label matcher value, e.g. x{{job="api"}}', expr.pos
            )
        case VectorSelector():
            _check_selector(expr)
        case MatrixSelector():
            if expr.range <= 0:
                raise PromQLError("range must be greater than 0s, e.g. x[5m]", expr.pos)
        case Call():
            _check_call(expr)
        case Aggregation():
            _check_aggregation(expr)
        case Unary():
            _no_range(expr.expr)
        case Binary():
            _check_binary(expr)
    for child in expr.children():
        _walk(child)


def _no_range(operand: Expr) -> None:
    if operand.type is ValueType.MATRIX:
        raise PromQLError(RANGE_ONLY_IN, operand.pos)


def _check_selector(sel: VectorSelector) -> None:
    for m in sel.matchers:
        _label_name(m.name, sel.pos)
    if sel.name is not None:
        for m in sel.matchers:
            if m.name == NAME:
                raise PromQLError(f"metric name must not be set twice: '{sel.name}' and {m}", sel.pos)
    elif not any(not m.matches("") for m in sel.matchers):
        # Prometheus refuses selectors that would match every series in the store.
        raise PromQLError(
            'vector selector must contain at least one matcher that does not match the empty string, e.g. {job="api"}',
            sel.pos,
        )


def _label_name(name: str, pos: int) -> None:
    if not _LABEL_NAME.fullmatch(name):
        raise PromQLError(f"invalid label name '{name}' (letters, digits and _ only)", pos)


def _article(t: ValueType) -> str:
    return f"an {t.value}" if t is ValueType.VECTOR else f"a {t.value}"


def _check_call(call: Call) -> None:
    spec = FUNCTIONS.get(call.func)
    if spec is None:
        raise PromQLError(f"unknown function '{call.func}'", call.pos)
    if len(call.args) != len(spec.arg_types):
        n = len(spec.arg_types)
        raise PromQLError(
            f"{call.func}() takes {n} argument{'s' if n != 1 else ''}, got {len(call.args)}", call.pos
        )
    for index, (arg, wanted) in enumerate(zip(call.args, spec.arg_types), start=1):
        got = arg.type
        if got is wanted:
            continue
        if wanted is ValueType.MATRIX:
            example = f"{arg}[5m]" if isinstance(arg, VectorSelector) else "x[5m]"
            raise PromQLError(f"{call.func}() needs a range vector like {example}, got {_article(got)}", arg.pos)
        _no_range(arg)
        raise PromQLError(
            f"{call.func}() expects {_article(wanted)} as argument {index}, got {_article(got)}", arg.pos
        )


def _check_aggregation(agg: Aggregation) -> None:
    for name in agg.grouping:
        _label_name(name, agg.pos)
    _no_range(agg.expr)
    if agg.expr.type is not ValueType.VECTOR:
        raise PromQLError(f"{agg.op}() expects an instant vector, got {_article(agg.expr.type)}", agg.expr.pos)


def _check_binary(op: Binary) -> None:
    _no_range(op.lhs)
    _no_range(op.rhs)
    has_scalar = ValueType.SCALAR in (op.lhs.type, op.rhs.type)
    if op.return_bool and op.op not in COMPARISON_OPS:
        raise PromQLError(f"the bool modifier can only be used on comparison operators, not '{op.op}'", op.pos)
    if op.op in SET_OPS and has_scalar:
        raise PromQLError(f"set operator '{op.op}' is only allowed between instant vectors", op.pos)
    if op.matching is not None:
        if has_scalar:
            raise PromQLError("vector matching (on/ignoring) is only allowed between instant vectors", op.pos)
        for name in op.matching.labels:
            _label_name(name, op.pos)
    if op.op in COMPARISON_OPS and op.type is ValueType.SCALAR and not op.return_bool:
        raise PromQLError(f"comparisons between scalars must use the bool modifier, e.g. 1 {op.op} bool 0", op.pos)
