"""YAML loading that keeps the line and column of every key and value.

Only `yaml.SafeLoader` is used: the document is composed into nodes (so positions are known)
and scalars are constructed by the safe constructor. Nothing here interprets values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from watchdog.errors import Problem


@dataclass
class Node:
    """A YAML value with its 1-based position. `value` is a scalar, a list of Node, or a
    list of (key Node, value Node) pairs for mappings."""

    kind: str  # "scalar" | "seq" | "map"
    value: Any
    line: int
    column: int

    def plain(self) -> Any:
        """The value as plain Python data (for rule-test inputs and the like)."""
        if self.kind == "scalar":
            return self.value
        if self.kind == "seq":
            return [item.plain() for item in self.value]
        return {k.plain(): v.plain() for k, v in self.value}

    def describe(self) -> str:
        if self.kind == "map":
            return "a mapping"
        if self.kind == "seq":
            return "a list"
        if self.value is None:
            return "nothing (null)"
        return f"{type(self.value).__name__} {self.value!r}"


_constructor = yaml.SafeLoader("")


def _convert(node: yaml.Node) -> Node:
    line, column = node.start_mark.line + 1, node.start_mark.column + 1
    if isinstance(node, yaml.MappingNode):
        _constructor.flatten_mapping(node)  # supports YAML merge keys (<<)
        return Node("map", [(_convert(k), _convert(v)) for k, v in node.value], line, column)
    if isinstance(node, yaml.SequenceNode):
        return Node("seq", [_convert(item) for item in node.value], line, column)
    return Node("scalar", _constructor.construct_object(node, deep=True), line, column)


def parse_yaml(text: str, filename: str) -> tuple[Node | None, list[Problem]]:
    """Parse one YAML document. Returns (None, [problem]) on a syntax error."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        return None, [Problem(filename, line, col, f"YAML syntax error: {reason}")]
    except yaml.YAMLError as exc:
        return None, [Problem(filename, 0, 0, f"YAML error: {exc}")]
    if root is None:
        return Node("map", [], 1, 1), []
    try:
        return _convert(root), []
    except yaml.MarkedYAMLError as exc:  # a scalar the safe constructor refuses (e.g. a bare `=`)
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        return None, [Problem(filename, line, col, f"YAML error: {exc.problem or exc}")]
