"""Checks that need more than one key: rule shapes, cross references, queries, placeholders.

Every problem is collected (never just the first) with the line of the offending key or value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from watchdog.config import plugins
from watchdog.config.fields import Mark, PluginSpec
from watchdog.config.schema import ApiConfig, Compare, Config, LoadedRule, Rule, TargetConfig
from watchdog.config.values import Baseline, Change
from watchdog.errors import PluginError, Problem, QueryError, WatchdogError
from watchdog.config.templating import BUILTIN, PLACEHOLDER, TemplateError, render


@dataclass(frozen=True)
class UnbuiltQuery:
    """The query of a rule that failed to build: still checked, so every problem shows at once."""

    file: str
    source: str
    query: str
    marks: dict[str, Mark]
    where: str


def problem(problems: list[Problem], file: str, mark: Mark | None, message: str) -> None:
    line, col = mark or (0, 0)
    problems.append(Problem(file, line, col, message))


# -- one rule on its own -------------------------------------------------------------------------

def check_rule_shape(rule: Rule, file: str, problems: list[Problem]) -> None:
    where = f'rule "{rule.name}"'
    at = rule.marks.get("")
    composite = rule.all is not None or rule.any is not None
    kinds = [k for k, present in (("query", rule.query is not None), ("all/any", composite),
                                  ("a statistical compare or drift", rule.is_statistical())) if present]
    if not kinds:
        problem(problems, file, at, f"{where}: needs a 'query', 'all'/'any' conditions, a statistical 'compare' or 'drift'")
    elif len(kinds) > 1:
        problem(problems, file, at, f"{where}: give only one of {' and '.join(kinds)}")
    if rule.query is not None and not rule.is_statistical():
        _check_threshold(rule.above, rule.below, rule.compare, rule.marks, file, where, problems)
    if rule.is_statistical():
        _check_statistical(rule, file, where, problems)
    for kind in ("all", "any", "unless"):
        conditions = getattr(rule, kind)
        if conditions is not None and not conditions:
            problem(problems, file, rule.marks.get(kind), f"{where}: '{kind}' needs at least one condition")
        for i, c in enumerate(conditions or []):
            _check_threshold(c.above, c.below, c.compare, c.marks, file, f"{where}: {kind}[{i}]", problems)
    if rule.min_samples is not None and rule.min_samples.at_least < 0:
        problem(problems, file, rule.min_samples.marks.get("at_least"), f"{where}: min_samples.at_least must not be negative")
    if rule.error_limit < 0:
        problem(problems, file, rule.marks.get("error_limit"), f"{where}: error_limit must not be negative")
    if rule.failure_limit is not None and (rule.failure_limit < 0 or rule.for_ <= 0):
        problem(problems, file, rule.marks.get("failure_limit"),
                f"{where}: failure_limit needs a positive 'for' (the window it counts in) and must not be negative")


def _check_threshold(above: float | None, below: float | None, compare: Compare | None, marks: dict[str, Mark],
                     file: str, where: str, problems: list[Problem]) -> None:
    if above is None and below is None and compare is None:
        problem(problems, file, marks.get(""), f"{where}: needs a threshold: 'above', 'below', both, or 'compare'")
    if above is not None and below is not None and below > above:
        problem(problems, file, marks.get("below"),
                f"{where}: below ({below:g}) is greater than above ({above:g}): no value could be healthy")
    if compare is not None:
        _check_compare(compare, file, where, problems)


def _check_baseline(value: str, key: str, marks: dict[str, Mark], file: str, where: str, problems: list[Problem]) -> None:
    try:
        Baseline.parse(value)
    except ValueError as exc:
        problem(problems, file, marks.get("@" + key.split(".")[-1]), f"{where}: {key} {exc}")


def _check_statistical(rule: Rule, file: str, where: str, problems: list[Problem]) -> None:
    if rule.drift is not None:
        d = rule.drift
        _check_baseline(d.reference, "drift.reference", d.marks, file, where, problems)
        if (d.histogram is None) == (d.classes is None):
            problem(problems, file, d.marks.get(""), f"{where}: drift needs exactly one of 'histogram' or 'classes'")
        if d.psi_above is None and d.ks_above is None:
            problem(problems, file, d.marks.get(""), f"{where}: drift needs psi_above, ks_above or both")
        if d.ks_above is not None and d.classes is not None:
            problem(problems, file, d.marks.get("ks_above"), f"{where}: ks_above needs an ordered 'histogram', not 'classes'")
    c = rule.compare
    if c is None or c.test == "threshold":
        return
    _check_baseline(c.baseline, "compare.baseline", c.marks, file, where, problems)
    if c.test == "mann_whitney":
        if (c.histogram is None) == (c.samples is None):
            problem(problems, file, c.marks.get(""), f"{where}: compare.test mann_whitney needs exactly one of "
                    "'histogram' (cumulative buckets) or 'samples' (raw observations)")
        if c.samples is not None:
            from watchdog.stats import scipy_available
            if not scipy_available():
                problem(problems, file, c.marks.get("@samples"), f"{where}: compare.samples needs scipy: "
                        "pip install 'model-watchdog[stats]'")
    else:
        for key in ("errors", "total"):
            if getattr(c, key) is None:
                problem(problems, file, c.marks.get(""), f"{where}: compare.test {c.test} needs '{key}' (a query)")
    if not 0.5 <= c.confidence < 1:
        problem(problems, file, c.marks.get("@confidence"), f"{where}: compare.confidence must be in [0.5, 1), e.g. 0.95")
    if c.test == "sequential" and c.min_effect is None:
        problem(problems, file, c.marks.get(""), f"{where}: the sequential test needs min_effect (e.g. 50%)")
    if c.min_effect is not None:
        try:
            Change.parse(c.min_effect)
        except ValueError as exc:
            problem(problems, file, c.marks.get("@min_effect"), f"{where}: compare.min_effect {exc}")


def _check_compare(compare: Compare, file: str, where: str, problems: list[Problem]) -> None:
    _check_baseline(compare.baseline, "compare.baseline", compare.marks, file, where, problems)
    if compare.max_increase is None and compare.max_decrease is None:
        problem(problems, file, compare.marks.get(""), f"{where}: compare needs max_increase, max_decrease or both")
    for key in ("max_increase", "max_decrease"):
        value = getattr(compare, key)
        if value is not None:
            try:
                Change.parse(value)
            except ValueError as exc:
                problem(problems, file, compare.marks.get("@" + key), f"{where}: compare.{key} {exc}")


# -- references across files --------------------------------------------------------------------

@dataclass
class BuiltPlugins:
    """The plugin instances validation built (a constructor checks its plugin's options, e.g.
    unknown {{placeholders}}; a source checks queries): the daemon that runs the configuration
    takes them (`LoadedConfig.take_plugins`) instead of building every plugin a second time."""

    sources: dict[str, Any]
    actuators: dict[str, Any]
    alerters: dict[str, Any]

    def close(self) -> None:
        for plugin in (*self.sources.values(), *self.actuators.values(), *self.alerters.values()):
            try:
                plugin.close()
            except Exception:  # noqa: BLE001 — closing is best effort
                pass


def check_references(config: Config, rules: list[LoadedRule], cfg_file: str, problems: list[Problem],
                     unbuilt: list[UnbuiltQuery]) -> BuiltPlugins:
    """Cross references and queries; returns the plugins built on the way (each exactly once)."""
    built = BuiltPlugins(_instantiate(plugins.SOURCES, "sources", config.sources, cfg_file, problems),
                         _instantiate(plugins.ACTUATORS, "actuators", config.actuators, cfg_file, problems),
                         _instantiate(plugins.ALERTERS, "alerters", config.alerters, cfg_file, problems))
    sources = built.sources
    seen: dict[tuple[str, str], str] = {}
    checked: dict[tuple[int, str, tuple[str, ...]], list[Problem]] = {}
    names: dict[str, tuple[str, ...]] = {}  # each target's variable names, sorted once (10 rules a target)
    for lr in rules:
        _check_loaded_rule(lr, config, sources, cfg_file, seen, problems, checked, names)
    for name, target in config.targets.items():
        _check_target(name, target, config, sources, cfg_file, problems)
    for q in unbuilt:
        _check_query(sources, config, q.source, q.query, q.file, q.marks, q.where, problems, {})
    check_api(config.api, cfg_file, problems)
    align = config.align_ticks
    if align is not None and getattr(config.sources.get(align.source), "type", None) != "prometheus":
        problem(problems, cfg_file, align.marks.get("source"), f"align_ticks: '{align.source}' is not a prometheus source")
    return built


def check_api(api: ApiConfig, cfg_file: str, problems: list[Problem]) -> None:
    """Token names and the HTTP limits (the token files themselves: watchdog.web.apitokens)."""
    names: set[str] = set()
    for i, entry in enumerate(api.tokens):
        if not entry.name.strip() or any(c.isspace() or not c.isprintable() for c in entry.name):
            problem(problems, cfg_file, entry.marks.get("@name"),
                    f"api.tokens[{i}].name: give a plain name without spaces, got {entry.name!r}")
        elif entry.name in names or entry.name == "api" and api.token_file:
            problem(problems, cfg_file, entry.marks.get("@name"), f"api.tokens[{i}].name: '{entry.name}' is used twice")
        names.add(entry.name)
    for key in ("max_body", "idle_timeout", "request_timeout", "max_connections", "handler_threads"):
        if getattr(api, key) <= 0:
            problem(problems, cfg_file, api.marks.get("@" + key), f"api.{key}: must be more than 0")


def _check_loaded_rule(lr: LoadedRule, config: Config, sources: dict[str, Any], cfg_file: str,
                       seen: dict[tuple[str, str], str], problems: list[Problem],
                       checked: dict[tuple[int, str, tuple[str, ...]], list[Problem]] | None = None,
                       names: dict[str, tuple[str, ...]] | None = None) -> None:
    """`names`: each target's sorted variable names, kept across the calls (10,000 rules of
    a fleet: 1,000 targets)."""
    rule, file = lr.rule, lr.file
    target = config.targets.get(lr.target)
    if target is None:
        problem(problems, file, None, f"target '{lr.target}' is not defined in {cfg_file} "
                f"(targets: {', '.join(config.targets) or 'none'})")
        return
    key = (lr.target, rule.name)
    if key in seen:
        problem(problems, file, rule.marks.get("name"),
                f'rule "{rule.name}": duplicate rule name for target \'{lr.target}\' (first defined in {seen[key]})')
    seen[key] = file
    if rule.action == "rollback" and not target.rollback and not target.components:
        problem(problems, file, rule.marks.get("action"), f'rule "{rule.name}": action is rollback but target '
                f"'{lr.target}' has neither 'rollback' actuators nor 'components'")
    if rule.alert:
        for alerter in rule.alert:
            if alerter not in config.alerters:
                problem(problems, file, rule.marks.get("alert"), f'rule "{rule.name}": unknown alerter \'{alerter}\'')
    # The queries are checked rendered with "x" for every variable: the same rule object (a
    # rule file's rule, shared by all its `targets:`) with the same variable names gives the
    # same problems, so a templated rule is checked once, not once per target.
    variables = names.get(lr.target) if names is not None else None
    if variables is None:
        variables = tuple(sorted(target.variables))
        if names is not None:
            names[lr.target] = variables
    found = checked.get((id(rule), file, variables)) if checked is not None else None
    if found is None:
        found = []
        _check_rule_queries(rule, file, f'rule "{rule.name}"', config, sources, target, found)
        if checked is not None:
            checked[(id(rule), file, variables)] = found
    problems.extend(found)


def _check_rule_queries(rule: Rule, file: str, where: str, config: Config, sources: dict[str, Any],
                        target: TargetConfig, problems: list[Problem]) -> None:
    values = {name: "x" for name in (*BUILTIN, *target.variables)}
    _check_sequential_counters(rule, sources, file, values, problems)
    for c in rule.conditions():
        _check_query(sources, config, c.source or rule.source, c.query, file, c.marks, where, problems, values)
    if rule.min_samples is not None and rule.min_samples.query is not None:
        _check_query(sources, config, rule.source, rule.min_samples.query, file,
                     rule.min_samples.marks, f"{where}: min_samples", problems, values)


def _check_sequential_counters(rule: Rule, sources: dict[str, Any], file: str, values: dict[str, str],
                               problems: list[Problem]) -> None:
    """The sequential test adds up what happened between evaluations: it needs cumulative
    counters, not windowed `increase(...[10m])`, or it would count the same events again."""
    c = rule.compare
    source = sources.get(rule.source)
    if c is None or c.test != "sequential" or source is None:
        return
    for key in ("errors", "total"):
        query = getattr(c, key)
        try:
            window = source.window_of(render(query, values)) if query else 0.0
        except (TemplateError, QueryError):
            continue
        if window > 0:
            problem(problems, file, c.marks.get("@" + key), f'rule "{rule.name}": compare.{key} for the sequential test '
                    "must be a cumulative counter (e.g. sum(requests_total{...})), not a windowed rate/increase")


def _check_target(name: str, target: TargetConfig, config: Config, sources: dict[str, Any], cfg_file: str,
                  problems: list[Problem]) -> None:
    where = f"targets.{name}"
    for actuator in target.rollback:
        if actuator not in config.actuators:
            problem(problems, cfg_file, target.marks.get("rollback"),
                    f"{where}.rollback: unknown actuator '{actuator}' (defined: {', '.join(config.actuators) or 'none'})")
    for alerter in target.alert:
        if alerter not in config.alerters:
            problem(problems, cfg_file, target.marks.get("alert"),
                    f"{where}.alert: unknown alerter '{alerter}' (defined: {', '.join(config.alerters) or 'none'})")
    _check_components(name, target, config, cfg_file, problems)
    if target.max_depth < 1:
        problem(problems, cfg_file, target.marks.get("max_depth"), f"{where}.max_depth must be at least 1")
    if target.max_rollbacks is not None and target.max_rollbacks.count < 1:
        problem(problems, cfg_file, target.max_rollbacks.marks.get("count"), f"{where}.max_rollbacks.count must be at least 1")
    if target.version is not None:
        _check_query(sources, config, target.version.source, target.version.query, cfg_file,
                     target.version.marks, f"{where}.version", problems, {})


def _check_components(name: str, target: TargetConfig, config: Config, cfg_file: str, problems: list[Problem]) -> None:
    where = f"targets.{name}.components"
    if target.components and target.rollback:
        problem(problems, cfg_file, target.marks.get("rollback"),
                f"targets.{name}: give either 'rollback' (a list of actuators) or 'components', not both")
    for component, spec in target.components.items():
        if spec.actuator not in config.actuators:
            problem(problems, cfg_file, spec.marks.get("@actuator"),
                    f"{where}.{component}: unknown actuator '{spec.actuator}' (defined: {', '.join(config.actuators) or 'none'})")
        for dependency in spec.depends_on:
            if dependency not in target.components:
                problem(problems, cfg_file, spec.marks.get("depends_on"),
                        f"{where}.{component}: depends on unknown component '{dependency}'")
    try:
        deploy_order({c: spec.depends_on for c, spec in target.components.items()})
    except CycleError as exc:
        problem(problems, cfg_file, target.marks.get("components"), f"{where}: {exc}")


class CycleError(WatchdogError, ValueError):
    pass


def deploy_order(depends_on: Mapping[str, list[str]]) -> list[str]:
    """Dependencies first; ties by name so plans are stable. Raises CycleError."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise CycleError("dependency cycle: " + " → ".join([*path, name]))
        state[name] = "visiting"
        for dependency in sorted(depends_on.get(name, [])):
            if dependency in depends_on:
                visit(dependency, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in sorted(depends_on):
        visit(name, [])
    return order


def _instantiate(group: str, section: str, specs: dict[str, PluginSpec], cfg_file: str,
                 problems: list[Problem]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, spec in specs.items():
        try:
            plugin = plugins.create(group, spec)
        except PluginError as exc:
            problem(problems, cfg_file, spec.marks.get("type"), f"{section}.{name}: {exc}")
            continue
        except (ValueError, WatchdogError) as exc:  # a plugin's constructor rejecting its options
            problem(problems, cfg_file, spec.marks.get(""), f"{section}.{name}: {exc}")
            continue
        out[name] = plugin
    return out


def _check_query(sources: dict[str, Any], config: Config, source_name: str, query: str, file: str,
                 marks: dict[str, Mark], where: str, problems: list[Problem], values: dict[str, str]) -> None:
    if source_name not in config.sources:
        problem(problems, file, marks.get("@source") or marks.get(""),
                f"{where}: unknown source '{source_name}' (defined: {', '.join(config.sources) or 'none'})")
        return
    source = sources.get(source_name)
    if source is None:
        return
    if not type(source).placeholders and PLACEHOLDER.search(query):
        _placeholder_problem(query, file, marks, where, config.sources[source_name].type, problems)
        return
    try:
        rendered = render(query, values)
    except TemplateError as exc:
        problem(problems, file, marks.get("@query"), f"{where}: query: {exc}")
        return
    try:
        source.check_query(rendered)
    except QueryError as exc:
        line, col = marks.get("@query", (0, 0))
        if exc.position is not None and line and rendered == query:
            col += exc.position  # point into the query (exact for plain, unquoted scalars)
        problems.append(Problem(file, line, col, f"{where}: query: {exc.message}"))


def _placeholder_problem(query: str, file: str, marks: dict[str, Mark], where: str, kind: str,
                         problems: list[Problem]) -> None:
    """A `{{placeholder}}` in the query of a source that binds parameters (SQL): pasting a
    value into the text would let it rewrite the query (a version label `x' UNION SELECT …`)."""
    m = PLACEHOLDER.search(query)
    assert m is not None
    start = marks.get("@query") or marks.get("") or (0, 0)
    first_line = next((text.strip() for text in query.splitlines() if text.strip()), "")
    line, col = _locate(file, _locate(file, start, first_line[:40]), m.group(0))  # the query, then its placeholder
    column = {"version": "model_version", "target": "model"}.get(m.group(1))
    hint = (f"use the bound parameter :{m.group(1)} instead (e.g. WHERE {column} = :{m.group(1)}, without quotes)"
            if column
            else "the query text must not depend on values: use the bound parameters :version and :target, or "
            "write the value into the query itself")
    problems.append(Problem(file, line, col, f"{where}: query: {{{{{m.group(1)}}}}} cannot be used in a {kind} "
                            f"query: a value pasted into query text can change the query; {hint}"))


def _locate(file: str, start: Mark, needle: str) -> Mark:
    """Where `needle` first appears in `file` at or after `start` (exact whatever the scalar's
    style: plain, quoted or block); `start` when it cannot be found."""
    line, col = start
    if not line:
        return start
    try:
        with open(file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError):
        return start
    for number in range(line, len(lines) + 1):
        found = lines[number - 1].find(needle, col - 1 if number == line else 0)
        if found >= 0:
            return number, found + 1
    return start
