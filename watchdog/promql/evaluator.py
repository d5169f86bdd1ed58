"""Instant-query evaluation of a checked tree against one SeriesStore."""

from __future__ import annotations

from watchdog.errors import PromQLError
from watchdog.samples import Labels, Sample, format_labels, without_name

from .aggregate import aggregate
from .ast import Aggregation, Binary, Call, Expr, MatrixSelector, NumberLiteral, Unary, VectorSelector
from .binops import scalar_scalar, set_operation, vector_scalar, vector_vector
from .catalogue import SET_OPS
from .typecheck import check
from .parser import Templated, as_tree
from .instantfuncs import INSTANT_FUNCTIONS, Value
from .rangefuncs import RANGE_FUNCTIONS
from .store import SeriesStore


def evaluate(expr: Expr | Templated, store: SeriesStore, now: float) -> list[Sample]:
    """Evaluate at time `now`; a scalar comes back as `[Sample((), value)]`. Sorted by labels.
    `expr` may be what `parse_kept` gave (its tree is built here, and not kept)."""
    try:
        expr = as_tree(expr)
        check(expr)
        value = _Evaluator(store, now).eval(expr)
    except RecursionError:
        raise PromQLError("expression is nested too deeply; split it into smaller rules", 0) from None
    if isinstance(value, float):
        return [Sample((), value)]
    return sorted(value, key=lambda s: s.labels)


class _Evaluator:
    def __init__(self, store: SeriesStore, now: float) -> None:
        self.store = store
        self.now = now

    def eval(self, expr: Expr) -> Value:
        match expr:
            case NumberLiteral():
                return float(expr.value)
            case VectorSelector():
                return self.store.instant(expr.all_matchers, self.now)
            case Call():
                return self._call(expr)
            case Aggregation():
                return aggregate(expr.op, self._vector(expr.expr), expr.grouping, expr.without)
            case Unary():
                return self._unary(expr)
            case Binary():
                return self._binary(expr)
        raise PromQLError(f"cannot evaluate {type(expr).__name__} here", expr.pos)

    def _vector(self, expr: Expr) -> list[Sample]:
        value = self.eval(expr)
        if isinstance(value, float):
            raise PromQLError("expected an instant vector, got a scalar", expr.pos)
        return value

    def _call(self, call: Call) -> Value:
        if call.func in RANGE_FUNCTIONS:
            return _unique(self._range_call(call), call.pos)
        result = INSTANT_FUNCTIONS[call.func]([self.eval(arg) for arg in call.args])
        return result if isinstance(result, float) else _unique(result, call.pos)

    def _range_call(self, call: Call) -> list[Sample]:
        matrix = call.args[0]
        if not isinstance(matrix, MatrixSelector):
            raise PromQLError(f"{call.func}() needs a range vector like x[5m]", matrix.pos)
        func = RANGE_FUNCTIONS[call.func]
        out = []
        windows = self.store.window(matrix.selector.all_matchers, self.now - matrix.range, self.now)
        for labels, points in windows:
            value = func(points, self.now, matrix.range)
            if value is not None:
                out.append(Sample(without_name(labels), value))
        return out

    def _unary(self, op: Unary) -> Value:
        value = self.eval(op.expr)
        if op.op == "+":
            return value
        if isinstance(value, float):
            return -value
        return _unique([Sample(without_name(s.labels), -s.value) for s in value], op.pos)

    def _binary(self, op: Binary) -> Value:
        lhs, rhs = self.eval(op.lhs), self.eval(op.rhs)
        if isinstance(lhs, float) and isinstance(rhs, float):
            return scalar_scalar(op.op, lhs, rhs)
        if isinstance(rhs, float):
            assert isinstance(lhs, list)
            out = vector_scalar(op.op, lhs, rhs, scalar_left=False, return_bool=op.return_bool)
        elif isinstance(lhs, float):
            out = vector_scalar(op.op, rhs, lhs, scalar_left=True, return_bool=op.return_bool)
        elif op.op in SET_OPS:
            out = set_operation(op.op, lhs, rhs, op.matching)
        else:
            out = vector_vector(op.op, lhs, rhs, op.matching, op.return_bool, op.pos)
        return _unique(out, op.pos)


def _unique(vector: list[Sample], pos: int) -> list[Sample]:
    """Dropping `__name__` can merge two series into one identity; Prometheus refuses that."""
    seen: set[Labels] = set()
    for s in vector:
        if s.labels in seen:
            raise PromQLError(
                f"vector cannot contain metrics with the same labelset {format_labels(s.labels)} "
                "(e.g. rate() over several metric names with equal labels)",
                pos,
            )
        seen.add(s.labels)
    return vector
