"""Parsing rule expressions: what an SRE writes, what we read, what we refuse and where."""

from __future__ import annotations

import math
import re
from typing import Callable

import pytest

from watchdog.errors import PromQLError
from watchdog.promql import parse
from watchdog.promql.ast import (
    Aggregation,
    Binary,
    Call,
    Matcher,
    MatrixSelector,
    NumberLiteral,
    Unary,
    VectorMatching,
    VectorSelector,
)


def n(value: float) -> NumberLiteral:
    return NumberLiteral(value)


def sel(name: str) -> VectorSelector:
    return VectorSelector(name)


# --- what a rule author writes, and the canonical form we print back -------------------------


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ('sum(rate(requests_total{status="error"}[1m])) / sum(rate(requests_total[1m]))',
         'sum(rate(requests_total{status="error"}[1m])) / sum(rate(requests_total[1m]))'),
        ("histogram_quantile(0.99, sum by (le) (rate(latency_seconds_bucket[5m])))",
         "histogram_quantile(0.99, sum by (le) (rate(latency_seconds_bucket[5m])))"),
        ("sum(rate(x_bucket[1m])) by (le)", "sum by (le) (rate(x_bucket[1m]))"),
        ("SUM WITHOUT(instance)(up)", "sum without (instance) (up)"),
        ("{job='api', code=~`5..`}", '{job="api", code=~"5.."}'),
        ('up{job="api",}', 'up{job="api"}'),
        ("x > BOOL 0.5", "x > bool 0.5"),
        ("errors / ignoring(status) requests", "errors / ignoring (status) requests"),
        ("a AND on(job) b", "a and on (job) b"),
        ("1e3 + 0x10 + .5", "1000 + 16 + 0.5"),
        ("nan != bool inf", "NaN != bool Inf"),
        ("(((up)))", "up"),
        ("up # is the target alive?", "up"),
        ("rate(x[1m30s])", "rate(x[1m30s])"),
        ("rate(x[90s])", "rate(x[1m30s])"),
        ("max_over_time(x[500ms])", "max_over_time(x[500ms])"),
    ],
)
def test_canonical_form_is_what_we_print(written: str, canonical: str) -> None:
    expr = parse(written)
    assert str(expr) == canonical
    assert parse(canonical) == expr


def test_selector_keeps_name_and_matchers_apart() -> None:
    expr = parse('http_requests_total{code!="200", path=~"/api/.*"}')
    assert expr == VectorSelector(
        "http_requests_total", (Matcher("code", "!=", "200"), Matcher("path", "=~", "/api/.*"))
    )


def test_both_grouping_positions_mean_the_same() -> None:
    assert parse("sum by (le) (x)") == parse("sum(x) by (le)") == Aggregation("sum", sel("x"), ("le",))
    assert parse("avg without (pod) (x)") == Aggregation("avg", sel("x"), ("pod",), without=True)


def test_keywords_can_still_be_label_names() -> None:
    # `on`, `by` and `bool` are keywords only where an operator modifier may stand.
    expr = parse('sum by (on, bool) (x{by="a"})')
    assert isinstance(expr, Aggregation)
    assert expr.grouping == ("on", "bool")


# --- precedence, exactly as Prometheus --------------------------------------------------------


def test_multiplication_binds_tighter_than_addition() -> None:
    assert parse("1 + 2 * 3") == Binary("+", n(1), Binary("*", n(2), n(3)))


def test_power_is_right_associative_and_beats_unary_minus() -> None:
    # Prometheus: -2 ^ 2 == -(2 ^ 2) == -4, and 2 ^ 3 ^ 2 == 2 ^ 9.
    assert parse("-2 ^ 2") == Unary("-", Binary("^", n(2), n(2)))
    assert parse("2 ^ 3 ^ 2") == Binary("^", n(2), Binary("^", n(3), n(2)))
    assert parse("2 ^ -1") == Binary("^", n(2), Unary("-", n(1)))


def test_comparison_below_arithmetic_and_set_operators_below_that() -> None:
    expr = parse("a > 1 + 1 and b or c")
    assert expr == Binary(
        "or", Binary("and", Binary(">", sel("a"), Binary("+", n(1), n(1))), sel("b")), sel("c")
    )


def test_same_level_operators_are_left_associative() -> None:
    assert parse("a - b - c") == Binary("-", Binary("-", sel("a"), sel("b")), sel("c"))
    assert str(parse("a - (b - c)")) == "a - (b - c)"


def test_printer_adds_only_needed_parentheses() -> None:
    assert str(parse("(a + b) * c")) == "(a + b) * c"
    assert str(parse("(-2) ^ 2")) == "(-2) ^ 2"
    assert str(parse("a * (b * c)")) == "a * (b * c)"
    assert str(parse("(a or b) and c")) == "(a or b) and c"


def test_modifiers_are_kept() -> None:
    expr = parse("a > bool on (job, instance) b")
    assert expr == Binary(">", sel("a"), sel("b"), return_bool=True, matching=VectorMatching(True, ("job", "instance")))


def test_numbers() -> None:
    assert parse("NaN") == parse("nan")  # NaN literals compare equal as syntax
    value = parse("-Inf")
    assert isinstance(value, Unary) and value.expr == n(math.inf)
    assert parse("1.5e-3") == n(0.0015)


# --- max_range: how much history the engine must keep ----------------------------------------


@pytest.mark.parametrize(
    ("query", "seconds"),
    [
        ("up", 0.0),
        ("1 + 1", 0.0),
        ("rate(x[5m])", 300.0),
        ("rate(a[5m]) / rate(b[1h])", 3600.0),
        ("histogram_quantile(0.9, sum by (le) (increase(x_bucket[1m30s])))", 90.0),
        ("max_over_time(x[500ms]) > bool 1", 0.5),
        ("sum_over_time(x[1d])", 86400.0),
    ],
)
def test_max_range(query: str, seconds: float) -> None:
    assert parse(query).max_range() == seconds


def test_ast_nodes_build_and_print_by_hand() -> None:
    expr = Call("rate", (MatrixSelector(VectorSelector("x", (Matcher("job", "=", 'a"b'),)), 60.0),))
    assert str(expr) == 'rate(x{job="a\\"b"}[1m])'
    assert parse(str(expr)) == expr


# --- what we refuse, and that the message says what and where ---------------------------------

UNSUPPORTED = [
    # (query, words the message must contain, the text the position must point at)
    ("predict_linear(x[1h], 3600)", "unsupported function 'predict_linear' (supported: rate,", "predict_linear"),
    ("rate(x[5m] offset 1h)", "offset modifier is not supported", "offset"),
    ("x OFFSET -5m", "offset modifier is not supported", "OFFSET"),
    ("max_over_time(rate(x[1m])[10m:1m])", "subqueries are not supported", "[10m:"),
    ("x[5m:]", "subqueries are not supported", "["),
    ("x @ 1700000000", "the '@' modifier is not supported", "@"),
    ("rate(x[5m] @ end())", "the '@' modifier is not supported", "@"),
    ("topk(5, x)", "aggregation 'topk' is not supported", "topk"),
    ('count_values("code", x)', "aggregation 'count_values' is not supported", "count_values"),
    ("quantile(0.9, x)", "aggregation 'quantile' is not supported", "quantile"),
    ("a * on(job) group_left(team) b", "group_left is not supported", "group_left"),
    ("a / ignoring(x) group_right b", "group_right is not supported", "group_right"),
    ("a atan2 b", "operator 'atan2' is not supported", "atan2"),
    ("x[5m]", "range vector selector is only allowed as argument of rate, increase", "x[5m]"),
    ("sum(x[5m])", "range vector selector is only allowed as argument of", "x[5m]"),
    ("x[5m] > 1", "range vector selector is only allowed as argument of", "x[5m]"),
    ("abs(x[5m])", "range vector selector is only allowed as argument of", "x[5m]"),
    ("rate(x)", "rate() needs a range vector like x[5m]", "x)"),
    ("increase(sum(x))", "increase() needs a range vector like x[5m]", "sum(x)"),
    ("rate(x[5m])[10m]", "subqueries are not supported", "[10m]"),
    ("label_replace(x, 'a', 'b', 'c', 'd')", "unsupported function 'label_replace'", "label_replace"),
    ("foo(x)", "unknown function 'foo'", "foo"),
    ("abs(x) by (job)", "'by' is only allowed with an aggregation", "by"),
    ("irate(x[5m])", "unsupported function 'irate'", "irate"),
    ("time()", "unsupported function 'time'", "time"),
]


@pytest.mark.parametrize(("query", "words", "points_at"), UNSUPPORTED)
def test_unsupported_construct_is_named_with_its_position(query: str, words: str, points_at: str) -> None:
    with pytest.raises(PromQLError) as info:
        parse(query)
    assert words in info.value.message
    assert info.value.position == query.index(points_at)


MISTAKES = [
    # Things Prometheus itself rejects: we must too, with a useful hint.
    ("1 > 2", "comparisons between scalars must use the bool modifier", ">"),
    ("x + bool y", "bool modifier can only be used on comparison operators", "+"),
    ("x and 1", "set operator 'and' is only allowed between instant vectors", "and"),
    ("1 + on(job) x", "vector matching (on/ignoring) is only allowed between instant vectors", "+"),
    ('{job=~".*"}', "at least one matcher that does not match the empty string", "{"),
    ("{}", "at least one matcher that does not match the empty string", "{"),
    ('up{__name__="down"}', "metric name must not be set twice", "up"),
    ('x{code=~"5(.."}', "invalid regular expression", '"5(.."'),
    ('x{path=~"\\d+"}', "unknown escape sequence", '"'),
    ("x[0s]", "range must be greater than 0s", "0s"),
    ("x[5m1h]", "units must go from largest to smallest", "5m1h"),
    ("x > 5m", "durations like 5m are only allowed inside a range", "m"),
    ("x = 1", "use '==' to compare", "="),
    ('"error"', "string literal", '"'),
    ("histogram_quantile(x, y)", "expects a scalar as argument 1", "x,"),
    ("clamp_min(x)", "clamp_min() takes 2 arguments, got 1", "clamp_min"),
    ("count(1)", "count() expects an instant vector, got a scalar", "1"),
    ("sum(x, y)", "sum() takes exactly 1 argument, got 2", "sum"),
    ("sum by (a) (x) by (b)", "give 'by'/'without' once", "by (b)"),
    ("rate(x[5m]", "unexpected end of input", None),
    ('x{job="a"', "unexpected end of input", None),
    ("", "empty query", None),
    ("x{job='a}", "unterminated string", "'"),
]


@pytest.mark.parametrize(("query", "words", "points_at"), MISTAKES)
def test_mistakes_get_actionable_messages(query: str, words: str, points_at: str | None) -> None:
    with pytest.raises(PromQLError) as info:
        parse(query)
    assert words in info.value.message
    expected = len(query) if points_at is None else query.index(points_at)
    assert info.value.position == expected


def test_regex_flags_are_accepted_as_in_re2() -> None:
    expr = parse('log_lines{level=~"(?i)error"}')
    assert isinstance(expr, VectorSelector)
    assert expr.matchers[0].matches("ERROR")
    assert not expr.matchers[0].matches("ERRORS")  # anchored at both ends


def _matcher(regex: str) -> Matcher:
    expr = parse(f"x{{env=~`{regex}`}}")  # a raw string: the regex reaches RE2 as written
    assert isinstance(expr, VectorSelector)
    return expr.matchers[0]


@pytest.mark.parametrize(("regex", "matching", "not_matching"), [
    ("((?i)PRO).*", ["prod", "PROD", "Production"], ["dev", "xprod"]),  # a flag inside a group (RE2)
    ("(?i:dev)|prod", ["DEV", "prod"], ["PROD"]),
    ("prod|dev", ["prod", "dev"], ["production"]),  # alternatives anchored as a whole
    ("a.b", ["a\nb", "axb"], ["ab"]),  # `.` matches a newline (?s), as Prometheus wraps it
    ("[[:digit:]]+", ["2026"], ["v1"]),  # POSIX classes are RE2 syntax, not Python's
    (r"\Qa.b\E", ["a.b"], ["axb"]),  # \Q…\E quotes a literal in RE2
])
def test_label_regexes_have_re2_semantics(regex: str, matching: list[str], not_matching: list[str]) -> None:
    matcher = _matcher(regex)
    assert [v for v in matching if not matcher.matches(v)] == []
    assert [v for v in not_matching if matcher.matches(v)] == []


@pytest.mark.parametrize("regex", ["(?<=a)b", r"(a)\1", "a{1001}", "(?P=name)", "a)|(b"])
def test_regexes_re2_refuses_are_refused(regex: str) -> None:
    # Look-arounds and back-references need backtracking; RE2 and so Prometheus reject them.
    with pytest.raises(PromQLError, match="invalid regular expression"):
        parse(f"x{{env=~`{regex}`}}")


def test_a_label_value_that_is_not_valid_unicode_is_matched_not_a_crash() -> None:
    # Go reads an invalid UTF-8 sequence as U+FFFD; a lone surrogate can only come from hostile JSON.
    assert _matcher("a.b").matches("a\udcffb")
    assert not _matcher("a.").matches("a\udcff\udcff")


def test_unquote_without_a_backslash_is_the_escape_path_on_random_literals() -> None:
    """Differential: `unquote`'s shortcut for a literal without a backslash (most of a fleet's
    matcher values) gives what the escape-sequence path (the old `unquote`, copied here) gives,
    errors included."""
    import random

    from watchdog.promql import literals

    def reference(token: str) -> str:
        quote, body = token[0], token[1:-1]
        if quote == "`":
            return body

        def replace(m: re.Match[str]) -> str:
            esc = m.group(1)
            if esc[0] in "xuU" and len(esc) > 1:
                if int(esc[1:], 16) > 0x10FFFF:
                    raise ValueError(f"escape sequence '\\{esc}' in string {token} is not a valid character")
                return chr(int(esc[1:], 16))
            if esc[0] in "01234567" and len(esc) == 3:
                return chr(int(esc, 8))
            if esc in literals._ESCAPES and (esc not in "'\"" or esc == quote):
                return literals._ESCAPES[esc]
            raise ValueError(f"unknown escape sequence '\\{esc}' in string {token}: "
                             f"write '\\\\{esc}' or use a `raw` string")

        return literals._ESCAPE_RE.sub(replace, body)

    def outcome(f: Callable[[str], str], token: str) -> object:
        try:
            return f(token)
        except ValueError as exc:
            return ("error", str(exc))

    rng = random.Random(7)
    alphabet = ["a", "Z", "0", ":", ".", " ", "é", "\u2603", '"', "'", "`", "\\", "\\n", "\\x41", "\\u00e9",
                "\\U0010FFFF", "\\U00110000", "\\q", "\\101", "\n"]
    for _ in range(5000):
        quote = rng.choice("\"'`")
        token = quote + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) + quote
        assert outcome(literals.unquote, token) == outcome(reference, token), token
