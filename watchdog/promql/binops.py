"""Binary operators between scalars and instant vectors (Prometheus engine semantics).

Arithmetic drops `__name__`; a comparison filters (keeping the name) unless
`bool` turns it into 0/1; vector/vector pairs match one-to-one on all labels
but the name, or on/ignoring the listed ones.
"""

from __future__ import annotations

from collections.abc import Callable

from watchdog.errors import PromQLError
from watchdog.samples import NAME, Labels, Sample, format_labels, without_name

from .ast import VectorMatching
from .catalogue import ARITHMETIC_OPS
from .numeric import div, mod, pow_

_ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": div,
    "%": mod,
    "^": pow_,
}
_COMPARISON: dict[str, Callable[[float, float], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}


def apply(op: str, a: float, b: float) -> tuple[float, bool]:
    """(value, keep) like Prometheus `vectorElemBinop`: comparisons keep `a` when true."""
    if op in _ARITHMETIC:
        return _ARITHMETIC[op](a, b), True
    return a, _COMPARISON[op](a, b)


def scalar_scalar(op: str, a: float, b: float) -> float:
    value, keep = apply(op, a, b)
    return value if op in ARITHMETIC_OPS else float(keep)  # comparisons here always carry `bool`


def vector_scalar(op: str, vector: list[Sample], scalar: float, scalar_left: bool, return_bool: bool) -> list[Sample]:
    out = []
    for s in vector:
        a, b = (scalar, s.value) if scalar_left else (s.value, scalar)
        value, keep = apply(op, a, b)
        if op not in ARITHMETIC_OPS:
            value = s.value  # a comparison always yields the vector's value, whichever side it is on
        if return_bool:
            value, keep = float(keep), True
        if keep:
            drop = op in ARITHMETIC_OPS or return_bool
            out.append(Sample(without_name(s.labels) if drop else s.labels, value))
    return out


def signature(labels: Labels, matching: VectorMatching | None) -> Labels:
    """The labels two samples must share to be paired."""
    if matching is not None and matching.on:
        return tuple(p for p in labels if p[0] in matching.labels)
    ignored = matching.labels if matching is not None else ()
    return tuple(p for p in labels if p[0] != NAME and p[0] not in ignored)


def vector_vector(
    op: str, lhs: list[Sample], rhs: list[Sample], matching: VectorMatching | None, return_bool: bool, pos: int
) -> list[Sample]:
    if not lhs or not rhs:
        return []
    right = _unique_right(rhs, matching, pos)
    out = []
    matched: set[Labels] = set()
    for ls in lhs:
        sig = signature(ls.labels, matching)
        rs = right.get(sig)
        if rs is None:
            continue
        value, keep = apply(op, ls.value, rs.value)
        if return_bool:
            value, keep = float(keep), True
        if not keep:
            continue
        if sig in matched:
            raise PromQLError(
                f"multiple matches for labels {format_labels(sig)}: many-to-one matching must be explicit "
                "(group_left/group_right, which are not supported)",
                pos,
            )
        matched.add(sig)
        out.append(Sample(_result_labels(ls.labels, op, matching, return_bool), value))
    return out


def _unique_right(rhs: list[Sample], matching: VectorMatching | None, pos: int) -> dict[Labels, Sample]:
    right: dict[Labels, Sample] = {}
    for rs in rhs:
        sig = signature(rs.labels, matching)
        if sig in right:
            raise PromQLError(
                f"found duplicate series for the match group {format_labels(sig)} on the right hand-side "
                f"of the operation: [{format_labels(rs.labels)}, {format_labels(right[sig].labels)}]; "
                "many-to-many matching not allowed: matching labels must be unique on one side",
                pos,
            )
        right[sig] = rs
    return right


def _result_labels(labels: Labels, op: str, matching: VectorMatching | None, return_bool: bool) -> Labels:
    if op in ARITHMETIC_OPS or return_bool:
        labels = without_name(labels)
    if matching is not None:
        if matching.on:
            labels = tuple(p for p in labels if p[0] in matching.labels)
        else:
            labels = tuple(p for p in labels if p[0] not in matching.labels)
    return labels


def set_operation(op: str, lhs: list[Sample], rhs: list[Sample], matching: VectorMatching | None) -> list[Sample]:
    """and / or / unless: many-to-many, labels and names pass through unchanged."""
    right = {signature(s.labels, matching) for s in rhs}
    if op == "and":
        return [s for s in lhs if signature(s.labels, matching) in right]
    if op == "unless":
        return [s for s in lhs if signature(s.labels, matching) not in right]
    left = {signature(s.labels, matching) for s in lhs}
    return lhs + [s for s in rhs if signature(s.labels, matching) not in left]
