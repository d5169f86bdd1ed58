"""Expectations of a rule test: rule states and actions at a point in time, checked at load.

`RULE`, `TARGET/RULE`, `RULE{labels}` name what is expected; `KIND [RULE][{labels}] [via ALERTERS]`
names an action. Unknown rules, alerters, states and unreadable entries are problems with their line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from watchdog.config.fields import BuildContext, Mark, marks_field, option, suggest
from watchdog.config.schema import LoadedRule
from watchdog.config.yamlnodes import Node
from watchdog.rules.state import Phase
from watchdog.ruletest.notation import NotationError, parse_label_set
from watchdog.ruletest.synthetic import DEFAULT_ALERTER
from watchdog.samples import Labels


@dataclass(frozen=True)
class ExpectSpec:
    at: float = option(duration=True, help="time since the start of the test")
    rules: Node | None = option(None, help="RULE or RULE{labels} → inactive | pending | firing")
    actions: list[str] | None = option(None, help="what happened since the previous expectation; [] = nothing")
    marks: dict[str, Mark] = marks_field()


ACTION_KINDS_DOC = "rollback, alert, resolved, no_data, no_data_resolved, or another alert kind"
_ACTION = re.compile(r"(?P<kind>[a-z][a-z0-9_]*)(?:\s+(?P<rule>[^\s{]+)?(?P<labels>\{.*\})?)?\s*")
_VIA = re.compile(r"(?P<head>.*?)\s+via\s+(?P<via>[^\s{}]+)\s*")


@dataclass(frozen=True)
class RuleCheck:
    text: str
    target: str
    rule: str
    labels: Labels | None  # None: the rule as a whole (its most advanced series)
    phase: str


@dataclass(frozen=True)
class ActionPattern:
    text: str
    kind: str
    target: str | None
    rule: str | None
    labels: Labels | None
    via: frozenset[str] | None = None  # the alerters it went to; None: not checked

    def specificity(self) -> int:
        return (self.rule is not None) + (self.labels is not None) + (self.via is not None)


@dataclass(frozen=True)
class Expectation:
    at: float
    line: int
    rules: list[RuleCheck]
    actions: list[ActionPattern] | None



def expectation(spec: ExpectSpec, where: str, rules: list[LoadedRule], ctx: BuildContext) -> Expectation:
    checks: list[RuleCheck] = []
    if spec.rules is not None:
        if spec.rules.kind != "map":
            ctx.problem(spec.rules, f"{where}.rules: expected a mapping of rule → state, got {spec.rules.describe()}")
        else:
            for key, value in spec.rules.value:
                check = _rule_check(key, value, f"{where}.rules", rules, ctx)
                if check is not None:
                    checks.append(check)
    actions = None
    if spec.actions is not None:
        actions = [a for i, text in enumerate(spec.actions)
                   if (a := _action(text, spec, f"{where}.actions[{i}]", rules, ctx)) is not None]
    return Expectation(spec.at, spec.marks[""][0], checks, actions)


def _rule_check(key: Node, value: Node, where: str, rules: list[LoadedRule], ctx: BuildContext) -> RuleCheck | None:
    text = str(key.value)
    phases = [p.value for p in Phase]
    phase = str(value.value) if value.kind == "scalar" else value.describe()
    if phase not in phases:
        ctx.problem(value, f"{where}.{text}: must be one of {', '.join(phases)}, got {phase!r}{suggest(phase, phases)}")
        return None
    found = resolve(text, rules, lambda message: ctx.problem(key, f"{where}: {message}"))
    return None if found is None else RuleCheck(text, found[0], found[1], found[2], phase)


def alerter_names(rules: list[LoadedRule]) -> list[str]:
    """The alerters of a rule test: every target's, and those rules name in `alert:`."""
    return sorted({DEFAULT_ALERTER, *(name for lr in rules for name in lr.rule.alert or [])})


def _action(text: str, spec: ExpectSpec, where: str, rules: list[LoadedRule], ctx: BuildContext) -> ActionPattern | None:
    at = spec.marks.get("@actions", spec.marks[""])
    body, via = text.strip(), None
    if (v := _VIA.fullmatch(body)) is not None:
        body = v.group("head")
        via = frozenset(name for name in v.group("via").split(",") if name)
        known = alerter_names(rules)
        for name in sorted(via - set(known)):
            hint = suggest(name, known) or f" (alerters: {', '.join(known)})"
            ctx.problem(at, f"{where}: unknown alerter '{name}'{hint}")
            return None
    m = _ACTION.fullmatch(body)
    if m is None:
        ctx.problem(at, f"{where}: cannot read {text!r}: write KIND [RULE][{{labels}}] [via ALERTER,...], "
                        f"KIND one of {ACTION_KINDS_DOC}")
        return None
    if m.group("rule") is None and m.group("labels") is None:
        return ActionPattern(text, m.group("kind"), None, None, None, via)
    found = resolve((m.group("rule") or "") + (m.group("labels") or ""), rules,
                     lambda message: ctx.problem(at, f"{where}: {message}"))
    return None if found is None else ActionPattern(text, m.group("kind"), *found, via=via)


def resolve(text: str, rules: list[LoadedRule], problem: Callable[[str], None]) -> tuple[str, str, Labels | None] | None:
    """`[TARGET/]RULE[{labels}]` → (target, rule, labels or None)."""
    name, brace, rest = text.partition("{")
    labels: Labels | None = None
    if brace:
        try:
            labels = parse_label_set("{" + rest)
        except NotationError as exc:
            problem(f"{text}: {exc}")
            return None
    targets = {lr.target for lr in rules}
    target, slash, rule = name.strip().rpartition("/")
    if slash and target not in targets:
        problem(f"{text}: unknown target '{target}'{suggest(target, targets)}")
        return None
    owners = sorted({lr.target for lr in rules if lr.rule.name == rule and (not slash or lr.target == target)})
    if not owners:
        names = sorted({lr.rule.name for lr in rules})
        hint = suggest(rule, names) or f" (rules: {', '.join(names) or 'none'})"
        problem(f"{text}: unknown rule '{rule}'{hint}")
        return None
    if len(owners) > 1:
        problem(f"{text}: rule '{rule}' exists for targets {', '.join(owners)}; write TARGET/{rule}")
        return None
    return owners[0], rule, labels
