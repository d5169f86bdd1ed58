"""The YAML guard's event walk (`yamlnodes._check_expansion`: recursive aliases, expanded
size and depth) against the walk it replaced, on random documents: the same refusal, at the
same position, or none."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import yaml

from watchdog.config import yamlnodes
from watchdog.config.yamlnodes import MAX_DEPTH, MAX_NODES, _check_expansion, _Refused


@dataclass
class _Open:
    anchor: str | None
    nodes_before: int
    depth: int
    deepest: int


def reference(text: str, loader: type = yaml.SafeLoader) -> None:
    """The walk as it was (a dataclass per collection, a call per node)."""
    total = 0
    expanded: dict[str, tuple[int, int]] = {}
    stack: list[_Open] = []

    def reach(depth: int, mark: yaml.Mark) -> None:
        if depth > MAX_DEPTH:
            raise _Refused(mark, f"nested deeper than {MAX_DEPTH} levels (aliases expanded)")
        if stack:
            stack[-1].deepest = max(stack[-1].deepest, depth)

    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent):
            if any(o.anchor == event.anchor for o in stack):
                raise _Refused(event.start_mark, f"alias *{event.anchor} is inside its own anchor &{event.anchor}: "
                                                 "a recursive structure is not accepted")
            nodes, depth = expanded.get(event.anchor or "", (1, 1))
            total += nodes
            reach(len(stack) + depth, event.start_mark)
        elif isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            total += 1
            reach(len(stack) + 1, event.start_mark)
            if isinstance(event, yaml.CollectionStartEvent):
                stack.append(_Open(event.anchor, total - 1, len(stack) + 1, len(stack) + 1))
            elif event.anchor:
                expanded[event.anchor] = (1, 1)
        elif isinstance(event, yaml.CollectionEndEvent):
            done = stack.pop()
            if done.anchor:
                expanded[done.anchor] = (total - done.nodes_before, done.deepest - done.depth + 1)
            if stack:
                stack[-1].deepest = max(stack[-1].deepest, done.deepest)
        if total > MAX_NODES:
            raise _Refused(event.start_mark, f"more than {MAX_NODES} YAML nodes once aliases are expanded "
                                             "(an alias bomb?); not loaded")


def outcome(walk: object, text: str, loader: type) -> object:
    try:
        walk(text, loader)  # type: ignore[operator]
    except _Refused as exc:
        return ("refused", exc.mark.line, exc.mark.column, exc.message)
    except yaml.YAMLError as exc:
        return ("yaml", str(exc))
    return "ok"


def document(rng: random.Random) -> str:
    """Random nested lists and mappings (flow style) with anchors and aliases: some
    recursive, some expanding past MAX_NODES (aliases of aliases), some nested past
    MAX_DEPTH (directly or through aliases), most accepted. At most ≈ 300 nodes written."""
    anchors: list[str] = []
    budget = [300]
    deep = rng.choice([4, 8, 60, 110])

    def node(depth: int) -> str:
        budget[0] -= 1
        roll = rng.random()
        if anchors and roll < 0.2:
            return "*" + rng.choice(anchors)
        anchor = ""
        if rng.random() < 0.3:
            name = f"a{rng.randrange(10**6)}"
            anchor = f"&{name} "
            if rng.random() < 0.05:
                anchors.append(name)  # an alias to it inside itself: recursive
        if budget[0] <= 0 or depth >= deep or (roll < 0.4 and depth > 1 and deep < 50):
            return anchor + rng.choice(["x", "1", "'q'", '"s"', "null", "[]", "{}"])
        width = 1 if deep > 50 else rng.choice([1, 2, 3, 9])
        if rng.random() < 0.5:
            body = "[" + ", ".join(node(depth + 1) for _ in range(width)) + "]"
        else:
            body = "{" + ", ".join(f"k{i}: {node(depth + 1)}" for i in range(width)) + "}"
        if anchor and anchor[1:-1] not in anchors:
            anchors.append(anchor[1:-1])
        return anchor + body

    kind = rng.random()
    if kind < 0.2:  # the billion laughs, of a random size: under MAX_NODES or over it
        levels, width = rng.randint(2, 7), rng.randint(2, 12)
        lines = ["b0: &b0 [" + ",".join(["x"] * width) + "]"]
        lines += [f"b{i}: &b{i} [" + ",".join([f"*b{i - 1}"] * width) + "]" for i in range(1, levels)]
        return "\n".join(lines) + f"\nall: *b{levels - 1}\n"
    if kind < 0.3:  # deep through an alias: an anchored chain used inside another
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        return f"a: &c {'[' * a}x{']' * a}\nb: {'[' * b}*c{']' * b}\n"
    return "\n".join(f"top{i}: {node(0)}" for i in range(rng.randint(1, 6))) + "\n"


@pytest.mark.parametrize("loader", sorted({yaml.SafeLoader, yamlnodes._LOADER}, key=lambda c: c.__name__))
def test_the_guard_walk_refuses_what_the_old_walk_refused_at_the_same_place(loader: type) -> None:
    rng = random.Random(11)
    seen: set[object] = set()
    for _ in range(400 if loader is not yaml.SafeLoader else 80):  # the pure-Python parser is slow
        text = document(rng)
        want = outcome(reference, text, loader)
        assert outcome(_check_expansion, text, loader) == want, text
        seen.add(want if isinstance(want, str) else want[0] + (want[3].split()[0] if want[0] == "refused" else ""))
    bombs = ["a: &a [1,1,1,1,1,1,1,1,1]\n" + "".join(f"a{i}: &a{i} [{','.join(['*a' + ('' if i == 1 else str(i - 1))] * 9)}]\n"
                                                   for i in range(1, 7)),
             "r: &r [*r]\n", "d: " + "[" * 150 + "]" * 150 + "\n", "m: &m {a: [*m]}\n"]
    for text in bombs:
        want = outcome(reference, text, loader)
        assert want != "ok" and outcome(_check_expansion, text, loader) == want, text
    assert seen >= {"ok", "refusedalias", "refusedmore", "refusednested"}  # accepted, and each refusal
