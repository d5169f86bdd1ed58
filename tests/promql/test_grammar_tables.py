"""The shipped LALR tables (`watchdog/promql/grammar.tables.json`) are those of the grammar
and lark in use, and the parser loaded from them reads every query as the one built from
the grammar does: the same trees, the same errors."""

from __future__ import annotations

import functools
import random
from importlib import resources
from typing import Any

import lark
import pytest
from lark import Token, Tree

from tests.promql.test_parse_skeletons_random import SHAPES
from tests.promql.test_promql_parser import MISTAKES, UNSUPPORTED
from watchdog.promql import grammar_tables, parser

REGENERATE = "regenerate them: .venv/bin/python -m watchdog.promql.grammar_tables"
WORDS = ["sum", "by", "(", ")", "{", "}", "[5m]", "[1m:30s]", "rate", "x", "up", "le", ",", "=", "=~", "!=",
         '"a"', "'b'", "`c`", "1", "0.5", "+", "-", "*", "/", "^", "%", "and", "or", "unless", "on", "ignoring",
         "group_left", "bool", ">", "<=", "==", "offset", "5m", "@", "without", "histogram_quantile", "#", "\n",
         "NaN", "Inf", "0x1f", "1e3", "topk", "count_values", "__name__", ":", "\\"]


def grammar() -> str:
    return resources.files("watchdog.promql").joinpath("grammar.lark").read_text(encoding="utf-8")


def test_the_shipped_tables_are_for_this_grammar_and_this_lark() -> None:
    tables = resources.files("watchdog.promql").joinpath(grammar_tables.TABLES).read_text(encoding="utf-8")
    assert f'"lark":"{lark.__version__}"' in tables, REGENERATE
    assert f'"grammar_sha256":"{grammar_tables._digest(grammar())}"' in tables, REGENERATE
    assert grammar_tables.load(grammar()) is not None, REGENERATE
    assert isinstance(parser._lark(), lark.Lark)


def test_tables_for_another_grammar_are_not_used() -> None:
    assert grammar_tables.load(grammar() + "\n// edited\n") is None


def queries() -> list[str]:
    rng = random.Random(13)
    found = [q for q, *_ in MISTAKES + UNSUPPORTED]
    found += [shape.format(a="x", b="y") for shape in SHAPES]
    for _ in range(1500):
        found.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9))))
    for _ in range(300):  # valid queries with one token dropped or added
        words = rng.choice(SHAPES).format(a="x", b="y").split(" ")
        at = rng.randrange(len(words))
        words[at:at + 1] = [] if rng.random() < 0.5 else [words[at], rng.choice(WORDS)]
        found.append(" ".join(words))
    return found


def outcome(parse: Any, query: str) -> Any:
    try:
        return "ok", shape(parse(query))
    except lark.exceptions.UnexpectedInput as err:
        expected = sorted(getattr(err, "expected", None) or getattr(err, "allowed", None) or ())
        token = getattr(err, "token", None)
        return type(err).__name__, err.pos_in_stream, err.line, err.column, expected, shape(token)


def shape(node: Any) -> Any:
    if isinstance(node, Tree):
        return node.data, [shape(child) for child in node.children]
    if isinstance(node, Token):
        return node.type, str(node), node.start_pos
    return node


@functools.cache
def parsers() -> tuple[lark.Lark, lark.Lark]:
    loaded, built = grammar_tables.load(grammar()), grammar_tables.build(grammar())
    assert loaded is not None
    return loaded, built


@pytest.mark.parametrize("query", queries()[:60])
def test_listed_queries_parse_the_same_from_the_tables(query: str) -> None:
    loaded, built = parsers()
    assert outcome(loaded.parse, query) == outcome(built.parse, query)


def test_random_queries_parse_the_same_from_the_tables() -> None:
    loaded, built = parsers()
    answers = [(outcome(loaded.parse, q), outcome(built.parse, q)) for q in queries()]
    assert all(a == b for a, b in answers)
    assert sum(a[0] == "ok" for a, _ in answers) > 50  # not only errors compared
