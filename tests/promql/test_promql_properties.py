"""Properties over many generated queries: printing round-trips, garbage never crashes."""

from __future__ import annotations

from hypothesis import assume, HealthCheck, given, settings
from hypothesis import strategies as st
from tests.fuzzing import examples

from watchdog.errors import PromQLError
from watchdog.promql import SeriesStore, evaluate, parse
from watchdog.promql.catalogue import RANGE_FUNCTION_NAMES
from watchdog.samples import NAME, Sample, labels_of

Text = st.SearchStrategy[str]

METRICS = st.sampled_from(["up", "requests_total", "latency_seconds_bucket", "job:errors:rate5m", "x"])
LABELS = st.sampled_from(["job", "status", "le", "pod", "on", "by", "bool"])
PLAIN_VALUES = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6)
REGEXES = st.sampled_from([".+", "5..", "a|b", "(?i)err.*", "[0-9]+", "api-.*", ".*"])
DURATIONS = st.sampled_from(["30s", "1m", "5m", "1m30s", "500ms", "1h", "1d", "2w"])
COMPARISONS = st.sampled_from(["==", "!=", ">", "<", ">=", "<="])
NUMBERS = st.one_of(
    st.integers(0, 10**6).map(str),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["NaN", "Inf", "nan", "+Inf", "1e-3", "0x1f", ".5", "0.99"]),
)


def quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@st.composite
def matcher(draw: st.DrawFn) -> str:
    name = draw(LABELS)
    if draw(st.booleans()):
        return f"{name}{draw(st.sampled_from(['=~', '!~']))}{quoted(draw(REGEXES))}"
    return f"{name}{draw(st.sampled_from(['=', '!=']))}{quoted(draw(PLAIN_VALUES))}"


@st.composite
def selector(draw: st.DrawFn) -> str:
    matchers = draw(st.lists(matcher(), max_size=3))
    if draw(st.booleans()):
        return f'{{job="{draw(st.sampled_from(["api", "batch"]))}"' + "".join(f", {m}" for m in matchers) + "}"
    name = draw(METRICS)
    return name + ("{" + ", ".join(matchers) + "}" if matchers else "")


def paren(s: Text) -> Text:
    return st.one_of(s, s.map(lambda e: f"({e})"))


def scalar(depth: int) -> Text:
    leaf = st.one_of(NUMBERS, NUMBERS.map(lambda x: f"-{x}"))
    if depth == 0:
        return leaf
    sub, vec = scalar(depth - 1), vector(depth - 1)
    return paren(
        st.one_of(
            leaf,
            vec.map(lambda v: f"scalar({v})"),
            st.tuples(sub, st.sampled_from(["+", "-", "*", "/", "%", "^"]), sub).map(" ".join),
            st.tuples(sub, COMPARISONS, sub).map(lambda t: f"{t[0]} {t[1]} bool {t[2]}"),
            sub.map(lambda s: f"-{s}"),
        )
    )


def vector(depth: int) -> Text:
    ranged = st.tuples(
        st.sampled_from(RANGE_FUNCTION_NAMES),
        selector(),
        DURATIONS,
    ).map(lambda t: f"{t[0]}({t[1]}[{t[2]}])")
    leaf = st.one_of(selector(), ranged)
    if depth == 0:
        return leaf
    sub, num = vector(depth - 1), scalar(depth - 1)
    return paren(st.one_of(leaf, aggregation(sub), function(sub, num), binary(sub, num), sub.map(lambda v: f"-{v}")))


def aggregation(sub: Text) -> Text:
    grouping = st.tuples(st.sampled_from(["by", "without", "BY"]), st.lists(LABELS, max_size=2)).map(
        lambda t: f"{t[0]} ({', '.join(t[1])})"
    )
    op = st.sampled_from(["sum", "avg", "min", "max", "count", "SUM"])
    return st.one_of(
        st.tuples(op, sub).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(op, grouping, sub).map(lambda t: f"{t[0]} {t[1]} ({t[2]})"),
        st.tuples(op, sub, grouping).map(lambda t: f"{t[0]}({t[1]}) {t[2]}"),
    )


def function(sub: Text, num: Text) -> Text:
    return st.one_of(
        st.tuples(num, sub).map(lambda t: f"histogram_quantile({t[0]}, {t[1]})"),
        sub.map(lambda v: f"abs({v})"),
        st.tuples(st.sampled_from(["clamp_min", "clamp_max"]), sub, num).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        num.map(lambda s: f"vector({s})"),
    )


def binary(sub: Text, num: Text) -> Text:
    arith = st.sampled_from(["+", "-", "*", "/", "%", "^"])
    comparison = st.tuples(COMPARISONS, st.sampled_from(["", " bool"])).map("".join)
    matching = st.sampled_from(["", " on (pod)", " ignoring (status, le)", " on ()"])
    setop = st.sampled_from(["and", "or", "unless", "AND"])
    return st.one_of(
        st.tuples(sub, st.one_of(arith, comparison), matching, sub).map(lambda t: f"{t[0]} {t[1]}{t[2]} {t[3]}"),
        st.tuples(sub, setop, matching, sub).map(lambda t: f"{t[0]} {t[1]}{t[2]} {t[3]}"),
        st.tuples(sub, st.one_of(arith, comparison), num).map(" ".join),
        st.tuples(num, st.one_of(arith, comparison), sub).map(" ".join),
    )


QUERIES = st.one_of(vector(3), scalar(2))


def parse_generated(query: str):  # type: ignore[no-untyped-def]
    """The generator can combine valid parts into an invalid whole (e.g. `on()` next to a
    scalar, which Prometheus rejects too); those are the parser's business, not these tests'."""
    try:
        return parse(query)
    except PromQLError:
        assume(False)


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(QUERIES)
def test_printing_round_trips(query: str) -> None:
    expr = parse_generated(query)
    printed = str(expr)
    again = parse(printed)
    assert again == expr
    assert str(again) == printed
    assert again.max_range() == expr.max_range()


def small_store() -> SeriesStore:
    store = SeriesStore()
    for step in range(5):
        samples = [
            Sample(labels_of({NAME: "requests_total", "job": "api", "status": s, "pod": p}), step * 10.0 + i)
            for i, (s, p) in enumerate([("ok", "a"), ("error", "a"), ("ok", "b")])
        ]
        samples += [
            Sample(labels_of({NAME: "latency_seconds_bucket", "job": "api", "le": le}), step * c)
            for le, c in (("0.1", 1.0), ("1", 3.0), ("+Inf", 4.0))
        ]
        samples.append(Sample(labels_of({NAME: "up", "job": "batch"}), 1.0))
        store.append_scrape(1_700_000_000.0 + 15 * step, samples)
    return store


STORE = small_store()


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(QUERIES)
def test_evaluating_any_valid_query_gives_samples_or_a_promql_error(query: str) -> None:
    expr = parse_generated(query)
    try:
        result = evaluate(expr, STORE, 1_700_000_060.0)
    except PromQLError as err:
        assert "matching" in err.message or "labelset" in err.message
        return
    assert all(isinstance(s.value, float) for s in result)
    assert len({s.labels for s in result}) == len(result)  # a result never holds one series twice


GARBAGE_CHARS = list('abcxyz_:{}[]()=!~"\'`,+-*/%^<>@ 0123456789.#\n\\') + ["é", "\x00"]
TOKENS = [
    "rate", "sum", "by", "without", "on", "ignoring", "group_left", "bool", "offset", "and", "or",
    "unless", "x", "up", "{", "}", "(", ")", "[", "]", "5m", "1", "NaN", "Inf", '"a"', "=", "=~",
    "!=", "==", ">", "+", "-", "*", "/", "^", ",", ":", "@", "histogram_quantile", "topk", "le",
]


@settings(max_examples=examples(400), deadline=None)
@given(
    st.one_of(
        st.text(st.sampled_from(GARBAGE_CHARS), max_size=40),
        st.lists(st.sampled_from(TOKENS), max_size=12).map(" ".join),
        st.text(max_size=20),
    )
)
def test_garbage_raises_only_promql_error(text: str) -> None:
    try:
        expr = parse(text)
    except PromQLError as err:
        assert err.message
        assert err.position is not None and 0 <= err.position <= len(text)
        return
    # Whatever parsed must print to something that parses back the same.
    assert parse(str(expr)) == expr
