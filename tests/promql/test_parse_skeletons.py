"""Queries that differ only in their strings share one parse (a templated fleet rule): the
tree, its positions and its errors are exactly those of a full parse."""

from __future__ import annotations

import pytest

from watchdog.errors import PromQLError
from watchdog.promql import parser
from watchdog.promql.ast import Matcher

FLEET = [
    'sum(rate(requests_total{instance="127.0.1.1:18080",status="error"}[1m])) / sum(rate(requests_total{instance="127.0.1.1:18080"}[1m]))',
    'sum(rate(requests_total{instance="127.0.1.12:18080",status="error"}[1m])) / sum(rate(requests_total{instance="127.0.1.12:18080"}[1m]))',
    "histogram_quantile(0.99, sum by (le) (rate(request_latency_seconds_bucket{instance='127.0.2.200:18080'}[1m])))",
    'up{instance=~"127\\\\.0\\\\.1\\\\.[0-9]+:18080", job!~`fleet-.*-canary`}',
    'count_over_time(model_info{instance="127.0.1.1:18080", version!="1.0.0-rc1"}[5m]) > 0',
]


@pytest.mark.parametrize("query", FLEET)
def test_a_query_from_a_skeleton_equals_its_full_parse(query: str) -> None:
    parser._SKELETONS.clear()
    twin = query.replace("127.0.", "127.9.")  # same skeleton, other strings
    first, second = parser.parse(query), parser.parse(twin)

    assert first == parser._parse(query) and second == parser._parse(twin)
    assert str(second) == str(parser._parse(twin))
    assert [n.pos for n in _nodes(second)] == [n.pos for n in _nodes(parser._parse(twin))]


def test_the_second_query_of_a_skeleton_is_not_parsed_again() -> None:
    parser._SKELETONS.clear()
    parser.parse(FLEET[0])
    parsed: list[str] = []
    real = parser._parse
    parser._parse = lambda text: parsed.append(text) or real(text)  # type: ignore[assignment]
    try:
        expr = parser.parse(FLEET[0].replace("127.0.1.1:", "127.0.1.2:"))  # same lengths: same skeleton
    finally:
        parser._parse = real  # type: ignore[assignment]
    assert parsed == []
    assert '"127.0.1.2:18080"' in str(expr) and '"127.0.1.1:18080"' not in str(expr)


def test_a_regex_matcher_is_compiled_for_its_own_value() -> None:
    parser._SKELETONS.clear()
    parser.parse('up{instance=~"127\\\\.0\\\\.1\\\\..*"}')
    expr = parser.parse('up{instance=~"10\\\\.0\\\\.0\\\\.9.*"}')
    (matcher,) = [m for m in expr.matchers if isinstance(m, Matcher)]  # type: ignore[attr-defined]
    assert matcher.matches("10.0.0.91") and not matcher.matches("127.0.1.1")


@pytest.mark.parametrize("bad", [
    'up{instance=~"(unclosed-group-1"}',  # a bad regex in the second query of a skeleton
    'up{instance="a\\qbcdefghij"}',  # a bad escape
])
def test_an_error_in_a_later_query_is_the_full_parse_error(bad: str) -> None:
    parser._SKELETONS.clear()
    parser.parse('up{instance=~"(closed-group-12)"}')
    parser.parse('up{instance="abcdefghijkl"}')
    with pytest.raises(PromQLError) as fast:
        parser.parse(bad)
    with pytest.raises(PromQLError) as full:
        parser._parse(bad)
    assert (fast.value.message, fast.value.position) == (full.value.message, full.value.position)


def _nodes(expr):  # type: ignore[no-untyped-def]
    yield expr
    for child in expr.children():
        yield from _nodes(child)


@pytest.mark.parametrize("bad", [
    '{instance=~"(0.0.0.1:9100)?"}',  # a selector without a metric name that matches every series
    '{instance!="10.0.0.1:9100"}',
    'sum({job=~"(xyyyyyyyy)?"}) / up{job="xyyyyyyyy"}',
])
def test_a_value_that_makes_a_nameless_selector_match_everything_is_the_full_parse_error(bad: str) -> None:
    """A skeleton whose queries' values `check` must judge (a selector without a metric name):
    each filled query is checked again, so the error is the full parse's."""
    parser._SKELETONS.clear()
    good = bad.replace(")?", ")z").replace("!=", "=")
    assert parser.parse(good) == parser._parse(good)
    with pytest.raises(PromQLError) as fast:
        parser.parse(bad)
    with pytest.raises(PromQLError) as full:
        parser._parse(bad)
    assert (fast.value.message, fast.value.position) == (full.value.message, full.value.position)


def test_a_skeleton_with_metric_names_only_is_not_checked_again_per_query() -> None:
    parser._SKELETONS.clear()
    parser.parse('rate(x{instance="10.0.0.1:9100"}[1m]) / up{instance="10.0.0.1:9100"}')
    parser.parse('{instance="10.0.0.1:9100"} + {job=~"api-servers"}')
    judged = sorted(entry[2] for entry in parser._SKELETONS.values() if entry is not None)
    assert judged == [False, True]
