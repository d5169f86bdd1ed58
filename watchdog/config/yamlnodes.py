"""YAML loading that keeps the line and column of every key and value.

Only the safe loader is used (libyaml's `CSafeLoader` when PyYAML has it: ten times faster on a
fleet's rule files; else `yaml.SafeLoader`): the document is composed into nodes (so positions are known)
and scalars are constructed by the safe constructor. Nothing here interprets values.

A YAML file is hostile input too. Before anything is composed, the event stream is checked:
an alias inside its own anchor (`rules: &r [*r]`, a structure without end) is refused, and
so is a document that, with every alias expanded, has more than MAX_NODES nodes (the
"billion laughs" alias bomb: 491 bytes that expand to gigabytes) or is nested deeper than
MAX_DEPTH. Files larger than MAX_FILE_BYTES are not read at all (`read_capped`). Each refusal
is a problem at `file:line:column`.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from watchdog.errors import Problem, WatchdogError


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


MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 100

_constructor = yaml.SafeLoader("")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_capped(path: Path, problems: list[Problem]) -> str | None:
    """The file's UTF-8 text, or None with a problem (unreadable, not UTF-8, or too large)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO or a device would block or never end
            problems.append(Problem(str(path), 0, 0, "cannot read file: not a regular file"))
            return None
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        problems.append(Problem(str(path), 0, 0, f"cannot read file: {exc.strerror or exc}"))
        return None
    if len(raw) > MAX_FILE_BYTES:
        line = raw.count(b"\n", 0, MAX_FILE_BYTES) + 1
        column = MAX_FILE_BYTES - (raw.rfind(b"\n", 0, MAX_FILE_BYTES) + 1) + 1
        problems.append(Problem(str(path), line, column, f"file is larger than {MAX_FILE_BYTES} bytes (5 MiB), "
                                "the most a config or rule file may be; split it"))
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(Problem(str(path), 0, 0, f"not UTF-8 text: {exc.reason}"))
        return None


class _Refused(WatchdogError):
    def __init__(self, mark: yaml.Mark, message: str):
        super().__init__(message)
        self.mark, self.message = mark, message


_SCALAR, _START, _END, _ALIAS, _OTHER = range(5)
_KINDS: dict[type, int] = {yaml.ScalarEvent: _SCALAR, yaml.SequenceStartEvent: _START, yaml.MappingStartEvent: _START,
                           yaml.SequenceEndEvent: _END, yaml.MappingEndEvent: _END, yaml.AliasEvent: _ALIAS}


def _kind(event: yaml.Event) -> int:
    """What `_check_expansion` does with an event of a class not in _KINDS (a subclass)."""
    for cls, kind in _KINDS.items():
        if isinstance(event, cls):
            return kind
    return _OTHER


def _check_expansion(text: str, loader: type = yaml.SafeLoader) -> None:
    """Walk the events once: refuse recursive aliases and documents whose expanded size or
    depth passes the limits. Raises _Refused (or a YAML syntax error).

    Each open collection is a list [anchor, nodes before it, its depth, the deepest depth
    under it]: no object and no call per node (a fleet's 120 KB watchdog.yaml has 17,000
    events; tests/config/test_yaml_guards.py checks this walk against the one it replaced)."""
    total = 0
    expanded: dict[str, tuple[int, int]] = {}  # anchor → (nodes, depth) of what it stands for
    stack: list[list[Any]] = []
    kinds = _KINDS
    for event in yaml.parse(text, Loader=loader):
        kind = kinds.get(event.__class__)
        if kind is None:
            kind = _kind(event)
        if kind <= _START:  # a scalar or a collection's start: one node
            total += 1
            depth = len(stack) + 1
            if depth > MAX_DEPTH:
                raise _Refused(event.start_mark, f"nested deeper than {MAX_DEPTH} levels (aliases expanded)")
            if stack and stack[-1][3] < depth:
                stack[-1][3] = depth
            if kind == _START:
                stack.append([event.anchor, total - 1, depth, depth])
            elif event.anchor:
                expanded[event.anchor] = (1, 1)
        elif kind == _END:
            done = stack.pop()
            if done[0]:
                expanded[done[0]] = (total - done[1], done[3] - done[2] + 1)
            if stack and stack[-1][3] < done[3]:
                stack[-1][3] = done[3]
        elif kind == _ALIAS:
            if any(o[0] == event.anchor for o in stack):
                raise _Refused(event.start_mark, f"alias *{event.anchor} is inside its own anchor &{event.anchor}: "
                                                 "a recursive structure is not accepted")
            nodes, depth = expanded.get(event.anchor or "", (1, 1))
            total += nodes
            depth += len(stack)
            if depth > MAX_DEPTH:
                raise _Refused(event.start_mark, f"nested deeper than {MAX_DEPTH} levels (aliases expanded)")
            if stack and stack[-1][3] < depth:
                stack[-1][3] = depth
        if total > MAX_NODES:
            raise _Refused(event.start_mark, f"more than {MAX_NODES} YAML nodes once aliases are expanded "
                                             "(an alias bomb?); not loaded")


_STR_TAG = "tag:yaml.org,2002:str"
# The safe constructor's string is the node's text (`construct_yaml_str` is `construct_scalar`):
# a string scalar — most of a fleet's 9,000 — is taken as it is, not through construct_object.
_STR_AS_IS = yaml.SafeLoader.yaml_constructors.get(_STR_TAG) is yaml.constructor.SafeConstructor.construct_yaml_str


def _convert(node: yaml.Node) -> Node:
    line, column = node.start_mark.line + 1, node.start_mark.column + 1
    if isinstance(node, yaml.MappingNode):
        _constructor.flatten_mapping(node)  # supports YAML merge keys (<<)
        return Node("map", [(_convert(k), _convert(v)) for k, v in node.value], line, column)
    if isinstance(node, yaml.SequenceNode):
        return Node("seq", [_convert(item) for item in node.value], line, column)
    if _STR_AS_IS and node.tag == _STR_TAG and isinstance(node, yaml.ScalarNode):
        return Node("scalar", node.value, line, column)
    return Node("scalar", _constructor.construct_object(node, deep=True), line, column)


def _converted(root: yaml.Node) -> Node:
    """`_convert(root)`; the shared constructor forgets the nodes it constructed (it keeps
    each in `constructed_objects` for aliases within one document: kept across documents,
    every load and reload held all the scalar nodes of every file it had read)."""
    try:
        return _convert(root)
    finally:
        _constructor.constructed_objects.clear()
        _constructor.recursive_objects.clear()


def parse_yaml(text: str, filename: str) -> tuple[Node | None, list[Problem]]:
    """Parse one YAML document. Returns (None, [problem]) on a syntax error."""
    if len(text) > MAX_FILE_BYTES:
        return None, [Problem(filename, 0, 0, f"file is larger than {MAX_FILE_BYTES} bytes (5 MiB)")]
    root, problems = _parse_with(text, filename, _LOADER)
    if problems and _LOADER is not yaml.SafeLoader:
        # A broken or hostile file: the pure-Python loader says exactly where and why (libyaml
        # has limits and wording of its own, e.g. its own nesting limit before ours).
        return _parse_with(text, filename, yaml.SafeLoader)
    return root, problems


def _parse_with(text: str, filename: str, loader: type) -> tuple[Node | None, list[Problem]]:
    try:
        _check_expansion(text, loader)
        root = yaml.compose(text, Loader=loader)
    except _Refused as exc:
        return None, [Problem(filename, exc.mark.line + 1, exc.mark.column + 1, exc.message)]
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
        return _converted(root), []
    except yaml.MarkedYAMLError as exc:  # a scalar the safe constructor refuses (e.g. a bare `=`)
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        return None, [Problem(filename, line, col, f"YAML error: {exc.problem or exc}")]
