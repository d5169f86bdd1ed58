"""Many queries of one template evaluated as one: `evaluate_many`.

A rule templated for a thousand targets asks a thousand queries that differ only in one
label's matcher value — `rate(x{instance="10.0.0.7:8080"}[1m])` for each instance. Each
such query selects exactly the series whose label L equals its value v, so its answer is the
template's answer over the part of the store where L = v. `evaluate_many` evaluates the
template once over every requested part at the same time, each series carrying its part in a
hidden label H (named so that no query can name it, and sorting before every real label):

- selectors drop their `L="v"` matcher and keep the series whose L is one of the requested
  values, each labelled H = its L value;
- `by (…)` and `on (…)` get H added; `without`, `ignoring`, functions and arithmetic keep
  it already (they drop only the labels they name, `__name__`, or `le`);

so every operation works within each part exactly as it does on that part alone (sums add the
same values in the same order: a part's series come in the order the store selects them for
the single query), and the answer of query v is the series with H = v, H removed, sorted as
`evaluate` sorts. A query qualifies only when every selector has a metric name and exactly
one matcher on L, `L="v"` with the same non-empty v, L appears nowhere else in the query,
and it uses only per-series functions (not `vector`/`scalar`). When a grouped evaluation
fails (an error in any part, e.g. a many-to-many match in one), every query of the group is
evaluated alone, so each gets its own answer or error. tests/promql/test_grouped.py checks
the equality against `evaluate` on random stores and queries.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

from watchdog.errors import PromQLError, WatchdogError
from watchdog.samples import NAME, Labels, Sample, without_name

from .ast import Aggregation, Binary, Call, Expr, MatrixSelector, NumberLiteral, Unary, VectorMatching, VectorSelector
from .evaluator import _Evaluator
from .instantfuncs import Value
from .parser import Templated, as_tree, fill, find_holes, forget_origin, skeleton_origin
from .rangefuncs import RANGE_FUNCTIONS
from .store import SeriesStore
from .typecheck import check

GROUP = "\x00group"  # the hidden label: no query can name it, and it sorts before every label name
_PER_SERIES = frozenset({*RANGE_FUNCTIONS, "histogram_quantile", "abs", "clamp_min", "clamp_max"})
_MAX_CACHED = 50_000

Answer = list[Sample] | PromQLError


def evaluate_many(exprs: Sequence[Expr | Templated], store: SeriesStore, now: float) -> Iterator[tuple[int, Answer]]:
    """(index, answer) for every expression, in no particular order: the answer `evaluate`
    gives (its samples, or the PromQLError it raises). Queries of one template that differ
    only in one label's matcher value are evaluated together (see the module's text). An
    expression may be what `parse_kept` gave: a grouped one's tree is never built."""
    memo: dict[tuple[str, frozenset[str], Expr], Value] = {}  # subtrees shared by templates or queries
    candidates = [_candidates(e) for e in exprs]
    counts: dict[tuple[str, int], int] = {}  # templates are interned: counted by identity
    for found in candidates:
        for label, shape, _value in found:
            counts[(label, id(shape))] = counts.get((label, id(shape)), 0) + 1
    groups: dict[tuple[str, int], tuple[Expr, list[tuple[int, str]]]] = {}
    alone: list[int] = []
    for index, found in enumerate(candidates):
        best = max(((counts[(label, id(shape))], label, shape, value) for label, shape, value in found),
                   key=lambda c: c[0], default=None) if found else None
        if best is None or best[0] < 2:
            alone.append(index)
            continue
        group = groups.get((best[1], id(best[2])))
        if group is None:
            group = groups[(best[1], id(best[2]))] = (shape_of(best[2]), [])
        group[1].append((index, best[3]))
    shared = _Shared()  # subtrees asked for more than once in this batch: evaluated once
    for (label, _), (shape, members) in groups.items():
        shared.count(label, frozenset(value for _, value in members), shape)
    trees: dict[int, Expr] = {}  # the trees of the queries evaluated alone, for this batch only
    for index in alone:
        tree = _tree(exprs[index])
        if tree is not None:
            trees[index] = tree
            shared.count("", frozenset(), tree)
    memo.update(shared.memo)
    for (label, _), (shape, members) in groups.items():
        answers = _evaluate_group(exprs[members[0][0]], shape, label, members, store, now, memo)
        if answers is None:  # an error somewhere: each query alone gives its own answer or error
            alone.extend(index for index, _ in members)
            continue
        for index, value in members:
            yield index, answers.get(value, [])
    for index in alone:
        yield index, _alone(trees.get(index) or exprs[index], store, now, memo)


def _tree(expr: Expr | Templated) -> Expr | None:
    try:
        return as_tree(expr)
    except RecursionError:
        return None  # `_alone` says it


def _alone(expr: Expr | Templated, store: SeriesStore, now: float, memo: dict[tuple[str, frozenset[str], Expr], Value]) -> Answer:
    """What `evaluate` gives, with the subtrees equal to other queries' of the batch evaluated
    once (split_by queries: p50/p90/p99 over one histogram)."""
    try:
        expr = as_tree(expr)
        check(expr)
        value = _GroupedEvaluator(store, now, "", frozenset(), memo).eval(expr)
    except RecursionError:
        return PromQLError("expression is nested too deeply; split it into smaller rules", 0)
    except PromQLError as exc:
        return exc
    if isinstance(value, float):
        return [Sample((), value)]
    return sorted(value, key=lambda s: s.labels)


def _evaluate_group(first: Expr | Templated, shape: Expr, label: str, members: list[tuple[int, str]], store: SeriesStore,
                    now: float, memo: dict[tuple[str, frozenset[str], Expr], Value]) -> dict[str, list[Sample]] | None:
    try:
        check(as_tree(first))  # the members differ only in a matcher value: one check stands for all
        result = _GroupedEvaluator(store, now, label, frozenset(value for _, value in members), memo).eval(shape)
    except (PromQLError, RecursionError):
        return None
    if isinstance(result, float):  # cannot happen: a qualifying query selects series
        return None
    parts: dict[str, list[Sample]] = {}
    for sample in result:
        hidden, rest = sample.labels[0], sample.labels[1:]
        if hidden[0] != GROUP:
            return None
        parts.setdefault(hidden[1], []).append(Sample(rest, sample.value))
    for samples in parts.values():
        samples.sort(key=lambda s: s.labels)
    return parts


class _Shared:
    """Counts the subtrees of a batch's evaluations; `memo` gets a slot for each one asked for
    more than once: only those are kept (for the batch), not every subtree's value."""

    def __init__(self) -> None:
        self.uses: dict[tuple[str, frozenset[str], Expr], int] = {}
        self.memo: dict[tuple[str, frozenset[str], Expr], Value] = {}

    def count(self, label: str, values: frozenset[str], expr: Expr) -> None:
        if isinstance(expr, NumberLiteral):
            return
        key = (label, values, expr)
        self.uses[key] = self.uses.get(key, 0) + 1
        if self.uses[key] == 2:
            self.memo[key] = _UNSET
        if self.uses[key] == 1:
            for child in (expr.selector,) if isinstance(expr, MatrixSelector) else expr.children():
                self.count(label, values, child)


_UNSET: list[Sample] = []  # a memo slot not filled yet


class _GroupedEvaluator(_Evaluator):
    """Evaluates a template (see `_template`) over the parts L = each of `values`. Every
    subtree's value is kept in `memo` for the other templates of the batch: values are never
    changed in place (every operation builds new lists and samples), so sharing them is safe."""

    def __init__(self, store: SeriesStore, now: float, label: str, values: frozenset[str],
                 memo: dict[tuple[str, frozenset[str], Expr], Value]) -> None:
        super().__init__(store, now)
        self.label, self.values, self.memo = label, values, memo

    def eval(self, expr: Expr) -> Value:
        if isinstance(expr, NumberLiteral):
            return float(expr.value)
        key = (self.label, self.values, expr)
        found = self.memo.get(key)
        if found is not None and found is not _UNSET:
            return found
        if not self.label:  # a query evaluated alone: only the memo is added
            value = super().eval(expr)
        elif isinstance(expr, VectorSelector):
            value = [Sample(hidden, s.value) for s in self.store.instant(expr.all_matchers, self.now)
                     if (hidden := self._hidden(s.labels)) is not None]
        else:
            value = super().eval(expr)
        if found is _UNSET:
            self.memo[key] = value
        return value

    def _range_call(self, call: Call) -> list[Sample]:
        if not self.label:
            return super()._range_call(call)
        matrix = call.args[0]
        assert isinstance(matrix, MatrixSelector)
        func = RANGE_FUNCTIONS[call.func]
        out = []
        for labels, points in self.store.window(matrix.selector.all_matchers, self.now - matrix.range, self.now):
            hidden = self._hidden(labels)
            if hidden is None:
                continue
            value = func(points, self.now, matrix.range)
            if value is not None:
                out.append(Sample(without_name(hidden), value))
        return out

    def _hidden(self, labels: Labels) -> Labels | None:
        """`labels` with H = its L value first, or None when L is not a requested value."""
        label = self.label
        for k, v in labels:
            if k == label:
                if v not in self.values:
                    return None
                if labels[0][0] <= GROUP and any(k == GROUP for k, _ in labels):
                    # a series that names a label like H (a scraped page may): H would not be
                    # the only one of its name, and parts would split or join. Alone, each query.
                    raise PromQLError("a series has a label named like the hidden group label", 0)
                return ((GROUP, v), *labels)
        return None


# -- which queries qualify, and their template ------------------------------------------------------

class _NotGroupable(WatchdogError):
    """Internal: the query cannot be evaluated grouped (it is evaluated alone)."""


# (label L, template — a tree, or a pending one: `shape_of` — the query's value of L)
Candidates = tuple[tuple[str, "Expr | _Pending", str], ...]


def _candidates(expr: Expr | Templated) -> Candidates:
    """Each label L by which `expr` can be grouped, with its template and its value of L.
    Kept by the tree's identity (sources keep one tree per query text): hashing a tree by
    value walks it, which costs what the analysis saves; a `Templated` keeps its own."""
    if isinstance(expr, Templated):
        found = expr.grouping
        if found is None:
            found = _from_origin(expr.skeleton, expr.entry[0], expr.entry[1], expr.placeholders())
            if found is None:
                found = tuple(_analyse(expr.tree()))
            expr.grouping = found
        return found  # type: ignore[no-any-return]
    cached = _by_tree.get(id(expr))
    if cached is not None and cached[0] is expr:
        return cached[1]
    by_skeleton = _from_skeleton(expr)
    found = list(by_skeleton) if by_skeleton is not None else _analyse(expr)
    if len(_by_tree) > _MAX_CACHED:
        _by_tree.clear()
        _interned.clear()
        _by_skeleton.clear()
        _pending.clear()  # keyed by the ids of interned templates
    _by_tree[id(expr)] = (expr, tuple(found))  # the tree is kept: its id stays its own
    forget_origin(expr)  # not asked for again (after a clear above, `_analyse` gives the same)
    return tuple(found)


def _analyse(expr: Expr) -> list[tuple[str, Expr, str]]:
    """`_candidates` of `expr` from its tree (the reference path)."""
    found: list[tuple[str, Expr, str]] = []
    try:
        selectors = list(_selectors(expr))
        for label in _equal_labels(selectors) if selectors else ():
            value = next(m.value for m in selectors[0].matchers if m.name == label)
            if _named_elsewhere(expr, label):
                continue
            template = _template(expr, label)
            found.append((label, _interned.setdefault(template, template), value))
    except _NotGroupable:
        found = []
    return found


def _from_skeleton(expr: Expr) -> Candidates | None:
    """`_candidates` of a tree that `parse` built from a skeleton (a templated rule's thousand
    queries share one), from the analysis of the skeleton, done once per skeleton and pattern
    of equal values; None to analyse the tree itself.

    The analysis reads the query's strings (matcher values) only to compare them with each
    other and with "" (label and metric names are identifiers, never placeholders). So the
    skeleton's tree with each placeholder replaced by the first placeholder of equal value
    gives the same labels, the same templates (filled with the query's values where they keep
    a placeholder, then interned as `_analyse` does), and as L's value a placeholder whose value
    is the query's. tests/promql/test_grouped.py
    checks this against `_analyse` on the filled trees."""
    origin = skeleton_origin(expr)
    if origin is None:
        return None
    return _from_origin(*origin)


def _from_origin(skeleton: str, tree: Expr, holes: dict[int, tuple[Any, ...]], values: dict[str, str]) -> Candidates | None:
    """`_from_skeleton` of the query filled into `skeleton` with `values`."""
    first: dict[str, str] = {}
    canonical: dict[str, str] = {}
    for mark, value in values.items():
        if not value:
            return None
        canonical[mark] = first.setdefault(value, mark)
    key = (skeleton, tuple(canonical.values()))
    entry = _by_skeleton.get(key)
    if entry is None:
        found = _analyse(fill(tree, canonical, holes))
        if any(value not in values for _, _, value in found):
            entry = False
        else:  # a template that keeps other placeholders (`status="error"`) is filled for each query
            entry = tuple((label, template, mark, _holes_of(template, canonical)) for label, template, mark in found)
        _by_skeleton[key] = entry
    if entry is False:
        return None
    return tuple((label, template if kept is None else _filled(template, values, kept), values[mark])
                 for label, template, mark, kept in entry)


def _holes_of(template: Expr, canonical: dict[str, str]) -> tuple[dict[int, tuple[object, ...]], tuple[str, ...]] | None:
    """The holes of a template that keeps placeholders, and which ones it keeps; None if none."""
    holes: dict[int, tuple[object, ...]] = {}
    if not find_holes(template, holes):
        return None
    marks = set(canonical.values())
    kept: set[str] = set()
    _strings(template, marks, kept)
    return holes, tuple(sorted(kept))


def _strings(node: object, marks: set[str], out: set[str]) -> None:
    """Add to `out` every string of `node` (however deep) that is one of `marks`."""
    if isinstance(node, str):
        if node in marks:
            out.add(node)
    elif isinstance(node, (tuple, list)):
        for item in node:
            _strings(item, marks, out)
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            _strings(getattr(node, f.name), marks, out)


def _filled(template: Expr, values: dict[str, str], kept: tuple[dict[int, tuple[object, ...]], tuple[str, ...]]) -> _Pending:
    """`template` with this query's values where it keeps placeholders, filled when a group
    uses it (`shape_of`); queries with the same values there share it (one object: grouping
    counts templates by identity) — across skeletons too: `template` is interned, and the
    skeletons of one rule's queries differ by the length of their instance's literal."""
    holes, marks = kept
    own = tuple(values[mark] for mark in marks)
    key = (id(template), own)
    found = _pending.get(key)
    if found is None:
        found = _pending[key] = _Pending(template, {mark: values[mark] for mark in marks}, holes)
    return found


class _Pending:
    """A template that keeps placeholders of the query's own — `status="error"` when grouped
    by `instance`, or the instance when grouped by `status` — for given values of those. It is
    filled and interned (`shape_of`) only when two or more queries of a batch are grouped by
    it: a fleet's `increase(x{instance="…",status="error"}[1m])` is a candidate for grouping by
    `status` too, a template per instance that no other query shares, and filling a thousand
    of them on the first tick cost ≈ 0.02 s. One per interned template and values kept
    (`_filled`): the queries of one rule share it, whatever their skeletons. (Two different
    templates that fill to equal trees — written differently — are two groups, evaluated
    apart with the same answers, where the filled trees' interning made them one.)"""

    __slots__ = ("template", "values", "holes", "shape")

    def __init__(self, template: Expr, values: dict[str, str], holes: dict[int, tuple[object, ...]]) -> None:
        self.template, self.values, self.holes = template, values, holes
        self.shape: Expr | None = None


def shape_of(template: Expr | _Pending) -> Expr:
    """A candidate's template as a tree (filled and interned, once, if it was pending)."""
    if not isinstance(template, _Pending):
        return template
    if template.shape is None:
        template.shape = _intern(fill(template.template, template.values, template.holes))
    return template.shape


def _intern(template: Expr) -> Expr:
    return _interned.setdefault(template, template)


_by_tree: dict[int, tuple[Expr, Candidates]] = {}
_interned: dict[Expr, Expr] = {}  # one object per distinct template
# (skeleton text, its placeholders' canonical ones) -> candidates with a placeholder as L's value,
# or False: analyse each tree (`_from_skeleton`)
_by_skeleton: dict[tuple[str, tuple[str, ...]], tuple[tuple[str, Expr, str, Any], ...] | bool] = {}
# (id of an interned template keeping placeholders, the values it keeps) -> its _Pending
_pending: dict[tuple[int, tuple[str, ...]], _Pending] = {}


def _selectors(expr: Expr) -> Iterator[VectorSelector]:
    match expr:
        case NumberLiteral():
            return
        case VectorSelector():
            if expr.name is None:
                raise _NotGroupable
            yield expr
        case MatrixSelector():
            yield from _selectors(expr.selector)
        case Call():
            if expr.func not in _PER_SERIES:
                raise _NotGroupable
            for arg in expr.args:
                yield from _selectors(arg)
        case Aggregation() | Unary():
            yield from _selectors(expr.expr)
        case Binary():
            yield from _selectors(expr.lhs)
            yield from _selectors(expr.rhs)
        case _:
            raise _NotGroupable


def _equal_labels(selectors: list[VectorSelector]) -> list[str]:
    """Labels that every selector matches with exactly one matcher, `=` the same non-empty value."""
    def equal(sel: VectorSelector) -> dict[str, str]:
        on: dict[str, list[tuple[str, str]]] = {}
        for m in sel.matchers:
            on.setdefault(m.name, []).append((m.op, m.value))
        return {name: ms[0][1] for name, ms in on.items()
                if name != NAME and len(ms) == 1 and ms[0][0] == "=" and ms[0][1] != ""}

    first = equal(selectors[0])
    for sel in selectors[1:]:
        other = equal(sel)
        first = {k: v for k, v in first.items() if other.get(k) == v}
    return sorted(first)


def _named_elsewhere(expr: Expr, label: str) -> bool:
    match expr:
        case Aggregation():
            return label in expr.grouping or _named_elsewhere(expr.expr, label)
        case Binary():
            named = expr.matching is not None and label in expr.matching.labels
            return named or _named_elsewhere(expr.lhs, label) or _named_elsewhere(expr.rhs, label)
        case _:
            return any(_named_elsewhere(child, label) for child in expr.children())


def _template(expr: Expr, label: str) -> Expr:
    """`expr` without its `label="v"` matchers, with H added to every `by` and `on`."""
    match expr:
        case VectorSelector():
            kept = tuple(m for m in expr.matchers if m.name != label)
            return VectorSelector(expr.name, kept, pos=expr.pos)
        case MatrixSelector():
            return dataclasses.replace(expr, selector=_template(expr.selector, label))
        case Call():
            return dataclasses.replace(expr, args=tuple(_template(a, label) for a in expr.args))
        case Aggregation():
            grouping = expr.grouping if expr.without else (*expr.grouping, GROUP)
            return dataclasses.replace(expr, expr=_template(expr.expr, label), grouping=grouping)
        case Unary():
            return dataclasses.replace(expr, expr=_template(expr.expr, label))
        case Binary():
            matching = expr.matching
            if matching is not None and matching.on:
                matching = VectorMatching(True, (*matching.labels, GROUP))
            return dataclasses.replace(expr, lhs=_template(expr.lhs, label), rhs=_template(expr.rhs, label),
                                       matching=matching)
    return expr

