"""Text -> `Expr`: the lark grammar, a tree builder, and errors a user can act on."""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from watchdog.errors import PromQLError

from .ast import (
    Aggregation,
    Binary,
    Call,
    Expr,
    Matcher,
    MatrixSelector,
    NumberLiteral,
    StringLiteral,
    Unary,
    VectorMatching,
    VectorSelector,
)
from .catalogue import (
    AGGREGATIONS,
    FUNCTIONS,
    PROMETHEUS_ONLY_AGGREGATIONS,
    PROMETHEUS_ONLY_FUNCTIONS,
    supported_functions_text,
)
from .typecheck import check
from .literals import parse_duration, parse_number, unquote


_Filler = Callable[[dict[str, str]], Any]


@functools.cache
def _lark() -> Lark:
    """The parser: from the LALR tables shipped beside the grammar (promql.grammar_tables),
    or built from the grammar when they are not for this grammar and lark."""
    from . import grammar_tables

    grammar = resources.files(__package__).joinpath("grammar.lark").read_text(encoding="utf-8")
    return grammar_tables.load(grammar) or grammar_tables.build(grammar)


def parse(text: str) -> Expr:
    """Parse a PromQL expression of the supported subset (`_parse`), through a cache of
    skeletons: queries that differ only in their string literals (a templated rule for a
    thousand targets) are parsed once; each gets the skeleton's tree with its own strings.
    Anything unusual takes the full parse, so results and errors are the same."""
    if isinstance(text, str):
        expr = _from_skeleton(text)
        if expr is not None:
            return expr
    return _parse(text)


# A string literal exactly as the grammar's STRING token reads one.
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|`[^`]*`')
_MARK = "\x01"  # never in a real query's strings (and so never in a parsed tree's names)
# skeleton text -> (its tree, the ids of the tree's parts that hold a placeholder, whether
# `check` must judge each query's values (`_judges_values`), its filler (`_filler`), its
# placeholders in order, whether every query fills it without an error (`_fills_safely`), the
# skeleton text (one string for all its queries)), or None
_Skeleton = tuple[Expr, dict[int, tuple[Any, ...]], bool, _Filler, tuple[str, ...], bool, str]
_SKELETONS: dict[str, _Skeleton | None] = {}
_MAX_SKELETONS = 4096


def _from_skeleton(text: str) -> Expr | None:
    """The tree of `text` built from its skeleton's, or None to parse it in full."""
    found = _skeleton_of(text)
    if found is None:
        return None
    skeleton, entry, values = found
    try:
        expr = entry[3](values)
        if entry[2]:
            check(expr)
    except Exception:  # noqa: BLE001 — a value the skeleton did not have to judge: the full parse says it
        return None
    if len(_ORIGINS) >= _MAX_ORIGINS:
        _ORIGINS.clear()
    _ORIGINS[id(expr)] = (expr, skeleton, entry[0], entry[1], values)
    return expr


_STRINGS = re.compile(f"({_STRING.pattern})")  # re.split keeps the literals between the pieces
# (placeholder number, literal length) -> (the placeholder, it quoted), or (): the literal is kept
_MARKS: dict[tuple[int, int], tuple[str, str] | tuple[()]] = {}
_MAX_MARKS = 4096


def _mark(number: int, length: int) -> tuple[str, str] | tuple[()]:
    """The `number`th placeholder standing for a literal `length` characters long (quotes
    included), padded to its length, and it quoted; () when the literal is too short."""
    mark = f"{_MARK}{number}{_MARK}"
    if length < len(mark) + 2:
        return ()
    mark = mark.ljust(length - 2, _MARK)
    return mark, f'"{mark}"'


def _skeleton_text(text: str) -> tuple[str, dict[str, str]] | None:
    """`text` with each string literal long enough replaced by a placeholder of its length
    (numbered in order), and the placeholders' values; None when there is none, or `text`
    cannot be taken apart (a placeholder character in it, a literal with a bad escape)."""
    if _MARK in text:
        return None
    values: dict[str, str] = {}
    pieces = _STRINGS.split(text)  # the code between the literals, and the literals (odd indexes)
    marks = _MARKS
    for i in range(1, len(pieces), 2):
        literal = pieces[i]
        key = (len(values), len(literal))
        found = marks.get(key)
        if found is None:
            found = _mark(*key)
            if len(marks) >= _MAX_MARKS:
                marks.clear()
            marks[key] = found
        if not found:
            continue  # shorter than its placeholder would be: kept as it is
        try:
            values[found[0]] = unquote(literal)
        except ValueError:
            return None
        pieces[i] = found[1]
    if not values:
        return None
    return "".join(pieces), values


def _skeleton_of(text: str) -> tuple[str, _Skeleton, dict[str, str]] | None:
    """The skeleton of `text`, its entry and the values of its placeholders, or None to parse
    it in full. Each string literal of 8+ characters becomes a placeholder of the *same
    length*, so every node's position is the one the full parse would give."""
    found = _skeleton_text(text)
    if found is None:
        return None
    skeleton, values = found
    if skeleton not in _SKELETONS:
        if len(_SKELETONS) >= _MAX_SKELETONS:
            _SKELETONS.clear()
        try:
            tree = _parse(skeleton)
            holes: dict[int, tuple[Any, ...]] = {}
            _find_holes(tree, holes)
            _SKELETONS[skeleton] = (tree, holes, _judges_values(tree, holes), _filler(tree, holes),
                                    tuple(values), _fills_safely(tree, holes), skeleton)
        except (PromQLError, RecursionError):
            _SKELETONS[skeleton] = None
    entry = _SKELETONS[skeleton]
    if entry is None:
        return None
    return skeleton, entry, values


def parse_kept(text: str) -> Expr | Templated:
    """What a source keeps of a query it evaluates every tick: `parse(text)`, or, for a query
    filled into a skeleton whose every query is well formed (placeholders only as `=`/`!=`
    matcher values, no selector without a metric name: see `_fills_safely`), a `Templated`:
    the skeleton and the query's values, its tree built only when asked (`Templated.tree`).
    A fleet's 10,000 templated queries are then not 10,000 trees (≈ 0.7 KB each) built on the
    first tick and kept: promql.grouped evaluates them from the skeleton and the values, and
    `evaluate` builds the tree of a query asked alone. Errors are `parse`'s."""
    if isinstance(text, str):
        found = _skeleton_of(text)
        if found is not None and found[1][5]:
            _skeleton, entry, values = found
            return Templated(entry, tuple(values.values()))
    return parse(text)


class Templated:
    """A query `parse` builds from a skeleton, not built: the skeleton and the query's values
    (in the order of the skeleton's placeholders). `tree()` gives the tree `parse` gives."""

    __slots__ = ("entry", "values", "grouping")

    def __init__(self, entry: _Skeleton, values: tuple[str, ...]) -> None:
        self.entry, self.values = entry, values
        self.grouping: Any = None  # promql.grouped's analysis of it, kept by grouped

    @property
    def skeleton(self) -> str:
        return self.entry[6]  # the text the entry was made for: one string, not one per query

    def tree(self) -> Expr:
        return self.entry[3](self.placeholders())  # type: ignore[no-any-return]

    def placeholders(self) -> dict[str, str]:
        """Placeholder -> value, as `skeleton_origin` gives them."""
        return dict(zip(self.entry[4], self.values))

    def max_range(self) -> float:
        return self.entry[0].max_range()  # durations are never placeholders: the skeleton's


def as_tree(expr: Expr | Templated) -> Expr:
    """The tree of what `parse_kept` gave."""
    return expr.tree() if isinstance(expr, Templated) else expr


def _fills_safely(tree: Any, holes: dict[int, tuple[Any, ...]]) -> bool:
    """Whether every query filled into the skeleton `tree` is the filled tree, no error: its
    placeholders are only the values of `=` and `!=` matchers (a regex one compiles each value,
    and may fail), and `check` does not judge the values (`_judges_values`)."""
    if _judges_values(tree, holes):
        return False
    return _only_equality_holes(tree, holes)


def _only_equality_holes(node: Any, holes: dict[int, tuple[Any, ...]]) -> bool:
    if id(node) not in holes:
        return True
    inside, kind, _names = holes[id(node)]
    for key in inside:
        child = getattr(node, key) if kind == 2 else node[key]
        if isinstance(child, str):
            if not (type(node) is Matcher and key == "value" and node.op in ("=", "!=")):
                return False
        elif not _only_equality_holes(child, holes):
            return False
    return True


# id of a tree built from a skeleton -> (the tree, kept so that its id stays its own; the
# skeleton's text, tree and holes; the values filled in): `skeleton_origin`
_ORIGINS: dict[int, tuple[Expr, str, Expr, dict[int, tuple[Any, ...]], dict[str, str]]] = {}
_MAX_ORIGINS = 50_000


def skeleton_origin(expr: Expr) -> tuple[str, Expr, dict[int, tuple[Any, ...]], dict[str, str]] | None:
    """For a tree `parse` built from a skeleton: the skeleton's text, its tree (placeholders
    `\\x01…` where the query has its string values), its holes (for `fill`) and the values
    (placeholder -> value); None for any other tree. promql.grouped keys its analysis by it."""
    origin = _ORIGINS.get(id(expr))
    if origin is None or origin[0] is not expr:
        return None
    return origin[1], origin[2], origin[3], origin[4]


def forget_origin(expr: Expr) -> None:
    """Drop what `skeleton_origin` keeps of `expr` (promql.grouped, once it keeps its own
    analysis of the tree): ≈ 0.4 KB a query, 4 MB for the 10,000 queries of a fleet."""
    origin = _ORIGINS.get(id(expr))
    if origin is not None and origin[0] is expr:
        del _ORIGINS[id(expr)]


def fill(tree: Expr, values: dict[str, str], holes: dict[int, tuple[Any, ...]]) -> Expr:
    """The skeleton `tree` with its placeholders replaced as `values` says (`skeleton_origin`)."""
    return _fill(tree, values, holes)  # type: ignore[no-any-return]


def find_holes(node: Any, holes: dict[int, tuple[Any, ...]]) -> bool:
    """The holes of a tree holding placeholders (for `fill`), in `holes`; True if it has any."""
    return _find_holes(node, holes)


@functools.cache
def _init_fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


def _find_holes(node: Any, holes: dict[int, tuple[Any, ...]]) -> bool:
    """Map in `holes` the id of every list, tuple and node of the skeleton's tree that holds a
    placeholder string, however deep, to the fields (or indexes) that do; True if `node`
    holds one. `_fill` rebuilds those parts only."""
    if isinstance(node, str):
        return _MARK in node
    names: tuple[str, ...] = ()
    if isinstance(node, (tuple, list)):
        kind = 0 if isinstance(node, tuple) else 1
        inside: tuple[Any, ...] = tuple(i for i, item in enumerate(node) if _find_holes(item, holes))
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        kind, names = 2, _init_fields(type(node))
        inside = tuple(name for name in names if _find_holes(getattr(node, name), holes))
    else:
        return False
    if inside:
        holes[id(node)] = (inside, kind, names)  # what `_fill` needs, found once per skeleton
    return bool(inside)


def _judges_values(tree: Expr, holes: dict[int, tuple[Any, ...]]) -> bool:
    """Whether `check` of a query filled into the skeleton `tree` can differ from `check` of
    the skeleton (which passed): it reads the strings in a tree only through a selector without
    a metric name (`{a=~"…"}` must have a matcher that does not match ""); types, arity, label
    and metric names (identifiers, never placeholders) are the skeleton's. So only a skeleton
    with such a selector holding a placeholder has each query checked again."""
    if isinstance(tree, VectorSelector):
        return tree.name is None and id(tree) in holes
    if isinstance(tree, MatrixSelector):  # check does not look inside; judged all the same, to be safe
        return _judges_values(tree.selector, holes)
    return any(_judges_values(child, holes) for child in tree.children())


def _fill(node: Any, values: dict[str, str], holes: dict[int, tuple[Any, ...]]) -> Any:
    """`node` with every placeholder string replaced by its value (nodes rebuilt through their
    constructors, so a Matcher compiles its regex and checks its operator again). Only the
    parts that hold a placeholder (`holes`, from `_find_holes`) are rebuilt; the others are
    the skeleton's own, shared (the tree is immutable)."""
    if isinstance(node, str):
        return values.get(node, node)
    inside, kind, names = holes[id(node)]
    if kind == 2:  # a node: as dataclasses.replace, without its walk over every field's metadata at each call
        fields = {name: getattr(node, name) for name in names}
        for name in inside:
            value = fields[name]
            fields[name] = values.get(value, value) if isinstance(value, str) else _fill(value, values, holes)
        return type(node)(**fields)
    items = list(node)
    for i in inside:
        item = items[i]
        items[i] = values.get(item, item) if isinstance(item, str) else _fill(item, values, holes)
    return tuple(items) if kind == 0 else items


def _filler(node: Any, holes: dict[int, tuple[Any, ...]]) -> _Filler:
    """A function of the values that builds what `_fill(node, values, holes)` builds, the walk
    over the skeleton (which parts hold a placeholder, the fields kept as they are) done once
    here rather than for each query. tests/promql/test_parse_skeletons_random.py compares it
    with `_fill`."""
    inside, kind, names = holes[id(node)]
    # (field name or index, the placeholder string there, or the filler of the part there)
    parts = tuple((key, child, None) if isinstance(child, str) else (key, None, _filler(child, holes))
                  for key in inside for child in (getattr(node, key) if kind == 2 else node[key],))
    if kind == 2:
        cls = type(node)
        kept = {name: getattr(node, name) for name in names if name not in inside}

        def build(values: dict[str, str]) -> Any:
            fields = kept.copy()
            for name, mark, part in parts:
                fields[name] = values.get(mark, mark) if part is None else part(values)
            return cls(**fields)
        return build
    items = list(node)

    def build_items(values: dict[str, str]) -> Any:
        out = items.copy()
        for i, mark, part in parts:
            out[i] = values.get(mark, mark) if part is None else part(values)
        return tuple(out) if kind == 0 else out
    return build_items


def _parse(text: str) -> Expr:
    """Parse a PromQL expression of the supported subset.

    Raises PromQLError naming what is wrong or unsupported; its `position` is the
    0-based offset into `text` (the column, for a one-line query).
    """
    if not isinstance(text, str):
        raise PromQLError(f"a PromQL query must be a string, got {type(text).__name__}", 0)
    if not text.strip():
        raise PromQLError("empty query: write an expression such as rate(requests_total[5m])", 0)
    try:
        tree = _lark().parse(text)
        expr: Expr = _Builder(text).transform(tree)
        check(expr)
    except UnexpectedInput as err:
        raise _syntax_error(text, err) from None
    except VisitError as err:
        if isinstance(err.orig_exc, PromQLError):
            raise err.orig_exc from None
        if isinstance(err.orig_exc, RecursionError):
            raise _too_deep() from None
        raise
    except RecursionError:
        raise _too_deep() from None
    return expr


def _too_deep() -> PromQLError:
    return PromQLError("expression is nested too deeply; split it into smaller rules", 0)


@dataclass(frozen=True)
class _Braces:
    pos: int
    matchers: tuple[Matcher, ...]


@dataclass(frozen=True)
class _Grouping:
    pos: int
    keyword: str
    labels: tuple[str, ...]


def _at(token: Token) -> int:
    """A token's 0-based offset into the query (lark types it as optional)."""
    return token.start_pos or 0


_Modifiers = tuple[Token | None, VectorMatching | None]  # (`bool` keyword, on/ignoring)


@v_args(inline=True)
class _Builder(Transformer[Token, Expr]):
    """Builds AST nodes bottom-up; rejects unsupported constructs where they are written."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    def number(self, tok: Token) -> NumberLiteral:
        try:
            return NumberLiteral(parse_number(tok), pos=_at(tok))
        except ValueError as err:
            raise PromQLError(str(err), _at(tok)) from None

    def string(self, tok: Token) -> StringLiteral:
        # Not rejected here: the enclosing call may be the more useful error
        # (`count_values("v", x)` is about count_values, not about the string).
        try:
            return StringLiteral(unquote(tok), pos=_at(tok))
        except ValueError as err:
            raise PromQLError(str(err), _at(tok)) from None

    def matcher(self, name: Token, op: Token, value: Token) -> Matcher:
        try:
            return Matcher(str(name), str(op), unquote(value))
        except ValueError as err:
            raise PromQLError(str(err), _at(value)) from None
        except PromQLError as err:
            raise PromQLError(f"{err.message} in matcher {name}{op}{value}", _at(value)) from None

    def matchers(self, lbrace: Token, *items: Matcher | None) -> _Braces:
        return _Braces(_at(lbrace), tuple(m for m in items if m is not None))

    def selector(self, first: Token | _Braces, braces: _Braces | None = None) -> VectorSelector:
        if isinstance(first, _Braces):
            return VectorSelector(None, first.matchers, pos=first.pos)
        return VectorSelector(str(first), braces.matchers if braces else (), pos=_at(first))

    def range(self, expr: Expr, lsqb: Token, duration: Token) -> MatrixSelector:
        before = self._text[: _at(lsqb)].rstrip()
        if not isinstance(expr, VectorSelector) or before.endswith(")"):
            raise PromQLError(
                f"a range [{duration}] is only allowed right after a vector selector, e.g. x[{duration}] "
                "(subqueries are not supported)",
                _at(lsqb),
            )
        seconds = self._duration(duration)
        if seconds <= 0:
            raise PromQLError("range must be greater than 0s, e.g. x[5m]", _at(duration))
        return MatrixSelector(expr, seconds, pos=expr.pos)

    def subquery(self, _expr: Expr, lsqb: Token, *_rest: Any) -> Expr:
        raise PromQLError("subqueries are not supported (x[5m:1m]); use a range selector like x[5m]", _at(lsqb))

    def offset(self, _expr: Expr, keyword: Token, *_rest: Any) -> Expr:
        raise PromQLError("offset modifier is not supported: queries always look at the newest data", _at(keyword))

    def at_modifier(self, _expr: Expr, at: Token, _time: Any) -> Expr:
        raise PromQLError("the '@' modifier is not supported: queries are evaluated at the current time", _at(at))

    def at_time(self, *_parts: Any) -> None:
        return None

    def call_args(self, *args: Expr) -> list[Expr]:
        return list(args)

    def label_list(self, *names: Token | None) -> tuple[str, ...]:
        return tuple(str(n) for n in names if n is not None)

    def grouping(self, keyword: Token, labels: tuple[str, ...]) -> _Grouping:
        return _Grouping(_at(keyword), keyword.lower(), labels)

    def call(self, name: Token, pre: _Grouping | None, args: list[Expr], post: _Grouping | None) -> Expr:
        lowered = name.lower()
        if lowered in AGGREGATIONS:
            return _aggregation(lowered, _at(name), pre, args, post)
        if lowered in PROMETHEUS_ONLY_AGGREGATIONS:
            raise PromQLError(
                f"aggregation '{lowered}' is not supported (supported: {', '.join(AGGREGATIONS)})", _at(name)
            )
        for grouping in (pre, post):
            if grouping is not None:
                raise PromQLError(
                    f"'{grouping.keyword}' is only allowed with an aggregation ({', '.join(AGGREGATIONS)})",
                    grouping.pos,
                )
        if name in FUNCTIONS:
            return Call(str(name), tuple(args), pos=_at(name))
        kind = "unsupported" if name in PROMETHEUS_ONLY_FUNCTIONS else "unknown"
        raise PromQLError(f"{kind} function '{name}' (supported: {supported_functions_text()})", _at(name))

    def unary(self, op: Token, expr: Expr) -> Expr:
        return Unary(str(op), expr, pos=_at(op))

    def binary(self, lhs: Expr, op: Token, modifiers: _Modifiers, rhs: Expr) -> Expr:
        name = op.lower()
        if name == "atan2":
            raise PromQLError("operator 'atan2' is not supported", _at(op))
        bool_token, matching = modifiers
        return Binary(name, lhs, rhs, return_bool=bool_token is not None, matching=matching, pos=_at(op))

    def bin_mod(self, bool_token: Token | None, matching: VectorMatching | None) -> _Modifiers:
        return bool_token, matching

    def matching(self, keyword: Token, labels: tuple[str, ...], _group: None) -> VectorMatching:
        return VectorMatching(keyword.lower() == "on", labels)

    def group_mod(self, side: Token, _labels: Any) -> None:
        raise PromQLError(
            f"{side.lower()} is not supported: only one-to-one vector matching is, "
            "on identical labels or with on(...)/ignoring(...)",
            _at(side),
        )

    @staticmethod
    def _duration(tok: Token) -> float:
        try:
            return parse_duration(str(tok))
        except ValueError as err:
            raise PromQLError(str(err), _at(tok)) from None


def _aggregation(op: str, pos: int, pre: _Grouping | None, args: list[Expr], post: _Grouping | None) -> Aggregation:
    if pre is not None and post is not None:
        raise PromQLError(f"{op}: give 'by'/'without' once, before or after the parentheses", post.pos)
    if len(args) != 1:
        raise PromQLError(f"{op}() takes exactly 1 argument, got {len(args)}", pos)
    grouping = pre or post
    if grouping is None:
        return Aggregation(op, args[0], pos=pos)
    return Aggregation(op, args[0], grouping.labels, grouping.keyword == "without", pos=pos)


# Descriptions of the grammar's terminals for "expected ..." hints; None hides
# terminals that only exist to reject unsupported syntax.
_TERMINALS: dict[str, str | None] = {
    "IDENT": "a name",
    "NUMBER": "a number",
    "STRING": "a quoted string",
    "DURATION": "a duration like 5m",
    "LPAR": "'('",
    "RPAR": "')'",
    "RSQB": "']'",
    "RBRACE": "'}'",
    "COMMA": "','",
    "MATCH_OP": "one of = != =~ !~",
    "$END": "end of input",
    **dict.fromkeys(("CMP_OP", "ADD_OP", "MUL_OP", "POW", "OR", "SET_OP"), "an operator"),
    **dict.fromkeys(("LSQB", "COLON", "OFFSET", "AT", "GROUP_SIDE"), None),
}
_DURATION_UNIT = re.compile(r"(ms|[smhdwy])(\d|$)")


def _syntax_error(text: str, err: UnexpectedInput) -> PromQLError:
    pos = max(0, min(len(text), err.pos_in_stream if err.pos_in_stream is not None else len(text)))
    if isinstance(err, UnexpectedToken):
        at_end = err.token.type == "$END"
        return PromQLError(_unexpected_token(text, err.token, err.expected), len(text) if at_end else pos)
    if isinstance(err, UnexpectedCharacters):
        return PromQLError(_unexpected_character(text, pos, err.allowed), pos)
    return PromQLError("syntax error", pos)


def _unexpected_token(text: str, token: Token, expected: set[str]) -> str:
    if token.type == "$END":
        return f"unexpected end of input{_expected(expected)}"
    if token == "=":
        return "unexpected '=': use '==' to compare"
    start = _at(token)
    if token.type == "IDENT" and start > 0 and text[start - 1].isdigit() and _DURATION_UNIT.match(str(token)):
        return "durations like 5m are only allowed inside a range like x[5m]; write seconds as a number, e.g. 300"
    what = f"name '{token}'" if token.type == "IDENT" else f"'{token}'"
    return f"unexpected {what}{_expected(expected)}"


def _unexpected_character(text: str, pos: int, allowed: set[str] | None) -> str:
    char = text[pos] if pos < len(text) else ""
    if char in "\"'`":
        return f"unterminated string starting with {char}"
    if char == "=":
        return "unexpected '=': use '==' to compare"
    return f"unexpected character {char!r}{_expected(allowed)}"


def _expected(names: set[str] | None) -> str:
    described = {_TERMINALS.get(n, n) for n in names or ()}
    described.discard(None)
    if not described or len(described) > 3:
        return ""
    return "; expected " + " or ".join(sorted(str(d) for d in described))
