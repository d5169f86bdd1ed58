"""The expression tree: frozen dataclasses that print back as canonical PromQL.

Parentheses are not nodes: the printer adds exactly those the precedence rules
need, so `parse(str(e)) == e` for every tree the parser builds. `pos` (0-based
offset into the query text) is kept for error messages and ignored by `==`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache

import re2

from watchdog.errors import PromQLError
from watchdog.samples import NAME

from .catalogue import FUNCTIONS, ValueType
from .literals import format_duration, format_number, quote

# Binding strength, loosest first, as in Prometheus. Unary minus binds tighter
# than `*` but looser than `^`: `-2 ^ 2` is -4.
PRECEDENCE: dict[str, int] = {
    "or": 1,
    "and": 2,
    "unless": 2,
    **dict.fromkeys(("==", "!=", ">", "<", ">=", "<="), 3),
    "+": 4,
    "-": 4,
    "*": 5,
    "/": 5,
    "%": 5,
    "^": 7,
}
UNARY = 6
ATOM = 8

MATCH_OPS = ("=", "!=", "=~", "!~")
_SURROGATE = re.compile("[\ud800-\udfff]")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error comes back as a PromQLError, not on stderr
_RE2_OPTIONS.max_mem = 8 << 20  # RE2's default, stated: a hostile pattern fails to compile instead of growing


def compile_label_regex(pattern: str) -> re2._Regexp:
    """Compile exactly like Prometheus: RE2 syntax, `^(?s:…)$` around the pattern.

    RE2 (the engine behind Go's regexp) rather than Python's `re`: the syntax Prometheus
    accepts and rejects is the same (`((?i)PRO).*` is fine, look-arounds and back-references
    are errors), and matching takes linear time, so no label value can make a rule hang.
    """
    try:
        re2.compile(pattern, _RE2_OPTIONS)  # alone first, as Prometheus parses it: `a)|(b` is an error
        return re2.compile(f"^(?s:{pattern})$", _RE2_OPTIONS)
    except re2.error as err:
        reason = err.args[0].decode(errors="replace") if err.args and isinstance(err.args[0], bytes) else str(err)
        raise PromQLError(f"invalid regular expression {quote(pattern)}: {reason}") from None


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher; a missing label matches as the empty string (as in Prometheus)."""

    name: str
    op: str
    value: str
    regex: re2._Regexp | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.op not in MATCH_OPS:
            raise PromQLError(f"unknown matcher operator {self.op!r} (use =, !=, =~ or !~)")
        if self.op in ("=~", "!~"):
            object.__setattr__(self, "regex", compile_label_regex(self.value))

    def matches(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self.regex is not None
        try:
            found = self.regex.search(value) is not None  # anchored by ^…$ as in Prometheus
        except UnicodeEncodeError:  # a lone surrogate (hostile JSON escapes): read it as Go reads bad UTF-8
            found = self.regex.search(_SURROGATE.sub("\ufffd", value)) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f"{self.name}{self.op}{quote(self.value)}"


@dataclass(frozen=True)
class VectorMatching:
    """`on (labels)` when `on` is true, else `ignoring (labels)`; one-to-one only."""

    on: bool
    labels: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{'on' if self.on else 'ignoring'} ({', '.join(self.labels)})"


@dataclass(frozen=True, slots=True)
class Expr:
    pos: int = field(default=0, compare=False, repr=False, kw_only=True)
    # max_range() is asked for every query of every tick and the tree does not change: computed
    # once, kept in a slot (-1: not yet) as the nodes have no __dict__ for a cached_property.
    _max_range: float = field(default=-1.0, init=False, compare=False, repr=False)

    @property
    def type(self) -> ValueType:
        raise NotImplementedError

    def children(self) -> tuple[Expr, ...]:
        return ()

    def max_range(self) -> float:
        """Longest range window (seconds) anywhere in the expression; 0.0 if none."""
        found = self._max_range
        if found < 0:
            found = max((c.max_range() for c in self.children()), default=0.0)
            object.__setattr__(self, "_max_range", found)
        return found

    def precedence(self) -> int:
        return ATOM


@dataclass(frozen=True, eq=False, slots=True)
class NumberLiteral(Expr):
    value: float

    @property
    def type(self) -> ValueType:
        return ValueType.SCALAR

    def precedence(self) -> int:
        return UNARY if math.copysign(1.0, self.value) < 0 and not math.isnan(self.value) else ATOM

    # NaN != NaN would make `parse("NaN") != parse("NaN")`; literals compare by spelling.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NumberLiteral):
            return NotImplemented
        both_nan = math.isnan(self.value) and math.isnan(other.value)
        return both_nan or self.value == other.value

    def __hash__(self) -> int:
        return hash(("number", "NaN" if math.isnan(self.value) else self.value))

    def __str__(self) -> str:
        return format_number(self.value)


@dataclass(frozen=True, slots=True)
class StringLiteral(Expr):
    """Parsed so the error can come from the right place; no supported function takes one."""

    value: str

    @property
    def type(self) -> ValueType:
        return ValueType.STRING

    def __str__(self) -> str:
        return quote(self.value)


@lru_cache(maxsize=4096)
def _name_matcher(name: str) -> Matcher:
    return Matcher(NAME, "=", name)


@dataclass(frozen=True, slots=True)
class VectorSelector(Expr):
    name: str | None
    matchers: tuple[Matcher, ...] = ()

    @property
    def type(self) -> ValueType:
        return ValueType.VECTOR

    # The matchers including `__name__="name"` for a written metric name (the name's matcher
    # shared by every selector of that name).
    all_matchers: tuple[Matcher, ...] = field(init=False, default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.name is not None:
            object.__setattr__(self, "all_matchers", (_name_matcher(self.name), *self.matchers))
        else:
            object.__setattr__(self, "all_matchers", self.matchers)

    def __str__(self) -> str:
        name = self.name or ""
        if self.matchers or not name:
            return name + "{" + ", ".join(str(m) for m in self.matchers) + "}"
        return name


@dataclass(frozen=True, slots=True)
class MatrixSelector(Expr):
    selector: VectorSelector
    range: float

    @property
    def type(self) -> ValueType:
        return ValueType.MATRIX

    def max_range(self) -> float:
        return self.range

    def __str__(self) -> str:
        return f"{self.selector}[{format_duration(self.range)}]"


@dataclass(frozen=True, slots=True)
class Call(Expr):
    func: str
    args: tuple[Expr, ...]

    @property
    def type(self) -> ValueType:
        spec = FUNCTIONS.get(self.func)
        return spec.return_type if spec else ValueType.VECTOR

    def children(self) -> tuple[Expr, ...]:
        return self.args

    def __str__(self) -> str:
        return f"{self.func}({', '.join(str(a) for a in self.args)})"


@dataclass(frozen=True, slots=True)
class Aggregation(Expr):
    op: str
    expr: Expr
    grouping: tuple[str, ...] = ()
    without: bool = False

    @property
    def type(self) -> ValueType:
        return ValueType.VECTOR

    def children(self) -> tuple[Expr, ...]:
        return (self.expr,)

    def __str__(self) -> str:
        if self.without or self.grouping:
            keyword = "without" if self.without else "by"
            return f"{self.op} {keyword} ({', '.join(self.grouping)}) ({self.expr})"
        return f"{self.op}({self.expr})"


@dataclass(frozen=True, slots=True)
class Unary(Expr):
    op: str
    expr: Expr

    @property
    def type(self) -> ValueType:
        return self.expr.type

    def children(self) -> tuple[Expr, ...]:
        return (self.expr,)

    def precedence(self) -> int:
        return UNARY

    def __str__(self) -> str:
        return self.op + _wrap(self.expr, self.expr.precedence() < UNARY)


@dataclass(frozen=True, slots=True)
class Binary(Expr):
    op: str
    lhs: Expr
    rhs: Expr
    return_bool: bool = False
    matching: VectorMatching | None = None

    @property
    def type(self) -> ValueType:
        scalars = self.lhs.type is ValueType.SCALAR and self.rhs.type is ValueType.SCALAR
        return ValueType.SCALAR if scalars else ValueType.VECTOR

    def children(self) -> tuple[Expr, ...]:
        return (self.lhs, self.rhs)

    def precedence(self) -> int:
        return PRECEDENCE[self.op]

    def __str__(self) -> str:
        mine = self.precedence()
        if self.op == "^":
            # Right-associative, and its left side must be an atom (`(-2) ^ 2`).
            left = _wrap(self.lhs, self.lhs.precedence() < ATOM)
            right = _wrap(self.rhs, self.rhs.precedence() < UNARY)
        else:
            left = _wrap(self.lhs, self.lhs.precedence() < mine)
            right = _wrap(self.rhs, self.rhs.precedence() <= mine)
        modifiers = (" bool" if self.return_bool else "") + (f" {self.matching}" if self.matching else "")
        return f"{left} {self.op}{modifiers} {right}"


def _wrap(expr: Expr, needed: bool) -> str:
    return f"({expr})" if needed else str(expr)
