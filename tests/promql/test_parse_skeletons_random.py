"""The skeleton path of `parse` (only the parts of the tree that hold a string are rebuilt)
against the full parse, for random queries and random string values."""

from __future__ import annotations

import dataclasses
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
    '{{instance="{a}", job!="{b}"}}',
    'rate(x{{instance!="{a}"}}[1m]) * on(instance) y{{job="{b}", instance="{a}"}}',
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


@pytest.mark.parametrize("seed", range(6))
def test_what_a_source_keeps_is_the_full_parse_or_its_error(seed: int) -> None:
    """`parse_kept` (a `Templated` where every query of the skeleton fills without an error)
    gives, tree built, the full parse's tree, positions and text, or its error."""
    rng = random.Random(100 + seed)
    parser._SKELETONS.clear()
    kept = 0
    for _ in range(150):
        shape = rng.choice(SHAPES)
        a, b = value(rng), value(rng)
        if rng.random() < 0.8:
            a, b = quoted(a).ljust(10, "x"), quoted(b)  # long enough to be a placeholder, mostly
        query = shape.format(a=a, b=b)
        try:
            got = parser.parse_kept(query)
        except PromQLError:
            pass
        else:
            kept += isinstance(got, parser.Templated)
            if isinstance(got, parser.Templated):
                assert got.max_range() == parser._parse(query).max_range(), query
        assert outcome(lambda q: parser.as_tree(parser.parse_kept(q)), query) == outcome(parser._parse, query), query
    assert kept  # the handle was taken, not only the parse


def _nodes(expr):  # type: ignore[no-untyped-def]
    yield expr
    for child in expr.children():
        yield from _nodes(child)


@pytest.mark.parametrize("seed", range(4))
def test_a_skeletons_filler_builds_what_the_reference_fill_builds(seed: int) -> None:
    """`_filler` (the walk done once per skeleton) against `_fill` (the walk per query): equal
    trees, positions and texts, and the parts without a placeholder shared, not copied."""
    rng = random.Random(seed)
    parser._SKELETONS.clear()
    for _ in range(60):
        shape = rng.choice(SHAPES)
        a, b = quoted(value(rng)), quoted(value(rng))
        try:
            parser.parse(shape.format(a=a.ljust(12, "x"), b=b.ljust(12, "y")))
        except PromQLError:
            continue  # an unsupported shape or a bad regex: no skeleton, nothing to compare
    assert any(parser._SKELETONS.values())
    for entry in parser._SKELETONS.values():
        if entry is None:
            continue
        tree, holes, _, filler = entry[:4]
        marks = sorted({m for m in _strings(tree) if parser._MARK in m})
        for _ in range(10):
            values = {m: value(rng) for m in marks if rng.random() < 0.9}
            built, reference = filler(values), parser._fill(tree, values, holes)
            assert built == reference and str(built) == str(reference)
            assert [n.pos for n in _nodes(built)] == [n.pos for n in _nodes(reference)]
            assert _unchanged_ids(built, tree) == _unchanged_ids(reference, tree)


def _strings(node):  # type: ignore[no-untyped-def]
    if isinstance(node, str):
        yield node
    elif isinstance(node, (tuple, list)):
        for item in node:
            yield from _strings(item)
    elif dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            yield from _strings(getattr(node, f.name))


def _unchanged_ids(expr, skeleton):  # type: ignore[no-untyped-def]
    """Which of the skeleton's nodes the filled tree holds as they are (by position in a walk)."""
    ids = {id(n) for n in _nodes(skeleton)}
    return [id(n) in ids for n in _nodes(expr)]


def _old_skeleton_text(text: str) -> tuple[str, dict[str, str]] | None:
    """The skeleton text and values as `_skeleton_of` made them with `re.sub` and a callback
    per literal (the reference for its split-and-cached-placeholders path)."""
    values: dict[str, str] = {}

    class Full(Exception):
        pass

    def placeholder(match):  # type: ignore[no-untyped-def]
        literal = match.group()
        mark = f"{parser._MARK}{len(values)}{parser._MARK}"
        if len(literal) < len(mark) + 2:
            return literal
        try:
            value = parser.unquote(literal)
        except ValueError:
            raise Full from None
        mark = mark.ljust(len(literal) - 2, parser._MARK)
        values[mark] = value
        return f'"{mark}"'

    if parser._MARK in text:
        return None
    try:
        skeleton = parser._STRING.sub(placeholder, text)
    except Full:
        return None
    return (skeleton, values) if values else None


@pytest.mark.parametrize("seed", range(4))
def test_the_skeleton_of_a_query_is_the_one_the_substitution_made(seed: int) -> None:
    rng = random.Random(300 + seed)
    alphabet = ALPHABET + "`\x01"
    for n in range(400):
        shape = rng.choice(SHAPES)
        a, b = value(rng) + rng.choice(["", "\x01"] * 5 + ["\\q", "`"]), value(rng)
        if rng.random() < 0.8:
            a, b = quoted(a), quoted(b)
        query = shape.format(a=a, b=b)
        if n % 7 == 0:  # many literals, of every length, in one query (placeholder numbers past 9)
            query = " + ".join(f'x{{l="{"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))}"}}'
                               for _ in range(rng.randint(1, 14)))
        if n % 50 == 0:
            parser._MARKS.clear()
        assert parser._skeleton_text(query) == _old_skeleton_text(query), query
