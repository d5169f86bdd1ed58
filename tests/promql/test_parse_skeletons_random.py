"""The skeleton path of `parse` (only the parts of the tree that hold a string are rebuilt)
against the full parse, for random queries and random string values."""

from __future__ import annotations

import random

import pytest

from watchdog.errors import PromQLError
from watchdog.promql import parser

SHAPES = [
    'sum(rate(requests_total{{instance="{a}",status="{b}"}}[1m])) / sum(rate(requests_total{{instance="{a}"}}[1m]))',
    'histogram_quantile(0.99, sum by (le) (rate(request_latency_seconds_bucket{{instance="{a}"}}[1m])))',
    'avg_over_time(model_accuracy{{instance="{a}"}}[5m]) < 0.5 and on(instance) up{{job="{b}"}}',
    'label_replace(up{{instance=~"{a}"}}, "dst", "{b}", "instance", "(.*)")',
    'count by (version) (model_info{{instance="{a}", version!="{b}"}}) > 1',
    'max(up{{instance="{a}"}} offset 5m) or vector(0)',
    'sum(rate(x{{a="{a}"}}[1m])) by (b) / ignoring(c) group_left sum(y{{b=~"{b}"}})',
]
ALPHABET = "abc.:-_0123456789 ü☃\\\"'\n*+?()[]{}|^$"


def value(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 24)))


def quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def outcome(fn, query):  # type: ignore[no-untyped-def]
    try:
        expr = fn(query)
    except PromQLError as exc:
        return ("error", exc.message, exc.position)
    return ("ok", expr, str(expr), [n.pos for n in _nodes(expr)])


@pytest.mark.parametrize("seed", range(6))
def test_random_values_in_shared_skeletons_parse_as_the_full_parse(seed: int) -> None:
    rng = random.Random(seed)
    parser._SKELETONS.clear()
    for _ in range(150):
        shape = rng.choice(SHAPES)
        a, b = value(rng), value(rng)
        if rng.random() < 0.8:
            a, b = quoted(a), quoted(b)  # else: raw, often not a valid string literal
        query = shape.format(a=a, b=b)
        assert outcome(parser.parse, query) == outcome(parser._parse, query), query


def _nodes(expr):  # type: ignore[no-untyped-def]
    yield expr
    for child in expr.children():
        yield from _nodes(child)
