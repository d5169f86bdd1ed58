"""`yamlnodes.parse_yaml`'s conversion of composed nodes: a string scalar taken as it is, every
other scalar through the safe constructor, as before; and nothing kept after a document."""

from __future__ import annotations

import math
import random

import yaml

from watchdog.config import yamlnodes
from watchdog.config.yamlnodes import Node, parse_yaml

SCALARS = ["x", "'quoted: yes'", '"esc\\tape \\u2603"', "123", "0x1f", "1_000", "-1.5e3", ".inf", ".nan", "true", "No",
           "off", "null", "~", "", "2026-12-03", "2026-12-03T19:05:00Z", "!!str 123", "!!int '7'", "!!float '1'",
           "!!binary aGVsbG8=", "!!bool yes", "|\n    a block\n    text", ">\n    folded\n    text", "'it''s'",
           "0o17", "+12", "1:30", "=", "'='"]


def old_convert(node: yaml.Node) -> Node:
    """The conversion as it was: every scalar through construct_object (a fresh constructor
    each document, so its memo does not carry over)."""
    constructor = yaml.SafeLoader("")

    def convert(node: yaml.Node) -> Node:
        line, column = node.start_mark.line + 1, node.start_mark.column + 1
        if isinstance(node, yaml.MappingNode):
            constructor.flatten_mapping(node)
            return Node("map", [(convert(k), convert(v)) for k, v in node.value], line, column)
        if isinstance(node, yaml.SequenceNode):
            return Node("seq", [convert(item) for item in node.value], line, column)
        return Node("scalar", constructor.construct_object(node, deep=True), line, column)

    return convert(node)


def same(a: Node, b: Node) -> bool:
    if (a.kind, a.line, a.column) != (b.kind, b.line, b.column):
        return False
    if a.kind == "scalar":
        both_nan = isinstance(a.value, float) and isinstance(b.value, float) and math.isnan(a.value) and math.isnan(b.value)
        return type(a.value) is type(b.value) and (both_nan or a.value == b.value)
    if a.kind == "seq":
        return len(a.value) == len(b.value) and all(same(x, y) for x, y in zip(a.value, b.value))
    return len(a.value) == len(b.value) and all(same(k, x) and same(v, y) for (k, v), (x, y) in zip(a.value, b.value))


def document(rng: random.Random) -> str:
    lines = ["base: &base {a: 1, b: two}"]
    for i in range(rng.randint(1, 12)):
        scalar = rng.choice(SCALARS).replace("\n", "\n  ")
        kind = rng.random()
        if kind < 0.6:
            lines.append(f"k{i}: {scalar}")
        elif kind < 0.8:
            lines.append(f"k{i}:\n  - {scalar.replace(chr(10) + '  ', chr(10) + '    ')}\n  - *base")
        else:
            lines.append(f"k{i}:\n  <<: *base\n  c: {scalar.replace(chr(10) + '  ', chr(10) + '    ')}")
    return "\n".join(lines) + "\n"


def test_converted_documents_equal_the_old_conversion_and_nothing_is_kept() -> None:
    rng = random.Random(3)
    checked = 0
    for _ in range(300):
        text = document(rng)
        got, problems = parse_yaml(text, "f.yaml")
        assert not yamlnodes._constructor.constructed_objects  # nothing of it kept
        try:
            want = old_convert(yaml.compose(text, Loader=yaml.SafeLoader))
        except yaml.YAMLError:
            assert got is None and problems, text
            continue
        assert got is not None and not problems, (text, problems)
        assert same(got, want), text
        checked += 1
    assert checked > 200


def test_loading_a_file_again_keeps_none_of_its_nodes() -> None:
    """The shared constructor kept every scalar node it constructed (with its marks): each
    load and reload of a fleet's 120 KB config held ≈ 9,000 more."""
    text = "targets:\n" + "".join(f"  m{i}: {{url: 'http://10.0.0.{i % 250}:9100/metrics', n: {i}}}\n" for i in range(500))
    for _ in range(3):
        root, problems = parse_yaml(text, "watchdog.yaml")
        assert root is not None and not problems
    assert len(yamlnodes._constructor.constructed_objects) == 0

