"""Rule-test files: their typed shape, and loading them (with the rule files they name).

Loading goes the config loader's way: YAML through `parse_yaml` (line marks), typed
dataclasses through `fields.build` (strict keys, "did you mean"), and every problem of a file
reported at once as `file:line:column: reason`. See docs/rule-tests.md for the format.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from dataclasses import dataclass
from pathlib import Path

from watchdog.config.loader import load_rule_file
from watchdog.config.fields import BuildContext, Mark, build, marks_field, option, suggest
from watchdog.config.schema import LoadedRule, TargetConfig, VersionQuery
from watchdog.config.yamlnodes import Node, parse_yaml, read_capped
from watchdog.errors import ConfigError, Problem, QueryError
from watchdog.promql import parse
from watchdog.config.templating import BUILTIN, PLACEHOLDER, names_in
from watchdog.ruletest.expect import Expectation, ExpectSpec, expectation, resolve
from watchdog.ruletest.notation import NotationError, parse_label_set, parse_series, parse_values
from watchdog.ruletest.synthetic import DEFAULT_ACTUATOR, DEFAULT_ALERTER, InputSeries, ScriptedResult, query_pattern
from watchdog.samples import Labels

# -- the YAML shape ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesSpec:
    series: str = option(help='metric name and labels as in PromQL: requests_total{status="error"}')
    values: str = option(help="one value per interval: 0+10x40, 1-2x5, _ (gap), stale, NaN, Inf, 1x10")
    marks: dict[str, Mark] = marks_field()


@dataclass(frozen=True)
class ResultSpec:
    """What a query that is not PromQL (sql, http_json, …) answers: one entry per series."""

    values: str = option(help="its value at each interval: 0.95x10, _ or stale = no row")
    rule: str | None = option(None, help="[TARGET/]RULE whose query answers (or give 'query')")
    query: str | None = option(None, help="the query as written in the rule file (for conditions and counts)")
    series: str = option("{}", help='labels of the answered series: {version="v2"}; {} for none')
    samples: str | None = option(None, help="the sample counts the source reports with each value")
    marks: dict[str, Mark] = marks_field()


@dataclass(frozen=True)
class VersionChange:
    at: float = option(duration=True, help="from this time on (since the start of the test)")
    version: str = option(help="the running version")
    marks: dict[str, Mark] = marks_field()


@dataclass(frozen=True)
class TargetVersion:
    """The keys of a test's `target` that are not target settings."""

    version: str | None = option(None, help="the running version during the whole test")
    versions: list[VersionChange] = option(default_factory=list, help="the running version over time")
    marks: dict[str, Mark] = marks_field()


@dataclass(frozen=True)
class CaseSpec:
    name: str = option("", help="shown in the output")
    interval: float | None = option(None, duration=True, help="spacing of input samples (default: evaluation_interval)")
    target: Node | None = option(None, help="version / versions, and target settings such as cooldown or mode")
    targets: Node | None = option(None, help="per target of a multi-target rule file: the keys of 'target', over it")
    input_series: list[SeriesSpec] = option(default_factory=list, help="synthetic input, one entry per series")
    query_results: list[ResultSpec] = option(default_factory=list,
                                             help="answers of queries that are not PromQL (sql, http_json sources)")
    expect: list[ExpectSpec] = option(default_factory=list, help="checks at points in time, in time order")
    marks: dict[str, Mark] = marks_field()


@dataclass(frozen=True)
class FileSpec:
    rule_files: list[str] = option(help="rule files (globs), relative to this file")
    evaluation_interval: float = option(15.0, duration=True, help="how often the engine ticks")
    tests: list[Node] = option(default_factory=list, help="the test cases (see CaseSpec)")
    marks: dict[str, Mark] = marks_field()


# -- what a loaded file holds ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    name: str
    line: int
    interval: float
    series: list[InputSeries]
    results: list[ScriptedResult]
    targets: dict[str, TargetConfig]
    versions: dict[str, list[tuple[float, str]]]  # per target; no entry: the version is not known
    expect: list[Expectation]


@dataclass(frozen=True)
class RuleTestFile:
    path: Path
    rule_files: list[Path]
    rules: list[LoadedRule]
    evaluation_interval: float
    cases: list[Case]

    def sources(self) -> list[str]:
        return sources_of(self.rules)


# -- loading ---------------------------------------------------------------------------------------------


def load_test_file(path: Path | str) -> RuleTestFile:
    """Load a rule-test file and its rule files; raises ConfigError with every problem."""
    path = Path(path)
    problems: list[Problem] = []
    ctx = BuildContext(str(path))
    spec = _read_spec(path, ctx, problems)
    if spec is None:
        raise ConfigError(problems)
    files = _rule_files(path, spec, ctx)
    rules = [lr for file in files for lr in load_rule_file(file, problems)]
    _check_rules(rules, problems)
    # Cases are built one by one so that one broken case does not hide the others' problems.
    specs = [(i, build(CaseSpec, node, ctx, f"test file.tests[{i}]")) for i, node in enumerate(spec.tests)]
    cases = [_case(case_spec, i, spec, rules, ctx) for i, case_spec in specs if case_spec is not None]
    _check_queries(rules, scripted_queries([c for c in cases if c is not None]), problems)
    if not spec.tests:
        ctx.problem(spec.marks.get(""), "no tests: add a 'tests' list")
    if spec.evaluation_interval <= 0:
        ctx.problem(spec.marks.get("@evaluation_interval", (0, 0)), "evaluation_interval must be greater than 0")
    problems.extend(ctx.problems)
    if problems:
        raise ConfigError(problems)
    return RuleTestFile(path, files, rules, spec.evaluation_interval, [c for c in cases if c is not None])


def _read_spec(path: Path, ctx: BuildContext, problems: list[Problem]) -> FileSpec | None:
    text = read_capped(path, problems)
    if text is None:
        return None
    root, syntax = parse_yaml(text, str(path))
    problems.extend(syntax)
    if root is None:
        return None
    spec = build(FileSpec, root, ctx, "test file")
    problems.extend(ctx.problems)
    ctx.problems.clear()
    return spec


def _rule_files(path: Path, spec: FileSpec, ctx: BuildContext) -> list[Path]:
    files: list[Path] = []
    for pattern in spec.rule_files:
        full = pattern if os.path.isabs(pattern) else os.path.normpath(path.parent / pattern)
        matches = sorted(Path(p) for p in glob.glob(full, recursive=True))
        if not matches:
            ctx.problem(spec.marks.get("@rule_files", (0, 0)), f"rule_files: '{pattern}' matches no file")
        files.extend(m for m in matches if m not in files)
    return files


def _check_rules(rules: list[LoadedRule], problems: list[Problem]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for lr in rules:
        rule, where = lr.rule, f'rule "{lr.rule.name}"'
        if (lr.target, rule.name) in seen:
            _at(problems, lr.file, rule.marks.get("name"), f"{where}: duplicate rule name for target '{lr.target}'"
                                                           f" (first defined in {seen[(lr.target, rule.name)]})")
        seen[(lr.target, rule.name)] = lr.file



def _check_queries(rules: list[LoadedRule], scripted: set[str], problems: list[Problem]) -> None:
    checked: set[tuple[str, str]] = set()
    for lr in rules:  # a rule file for several targets is checked once
        if (lr.file, lr.rule.name) in checked:
            continue
        checked.add((lr.file, lr.rule.name))
        where = f'rule "{lr.rule.name}"'
        for condition in lr.rule.conditions():
            if condition.query is not None and condition.query not in scripted:
                _check_query(condition.query, condition.marks, lr.file, where, problems)
        if lr.rule.min_samples is not None and lr.rule.min_samples.query not in (None, *scripted):
            _check_query(lr.rule.min_samples.query, lr.rule.min_samples.marks, lr.file, f"{where}: min_samples", problems)


def _check_query(query: str, marks: dict[str, Mark], file: str, where: str, problems: list[Problem]) -> None:
    # Placeholders ({{target}}, {{version}}, target variables) are filled in by the engine.
    query = PLACEHOLDER.sub("x", query)
    try:
        parse(query)
    except QueryError as exc:
        line, col = marks.get("@query", (0, 0))
        _at(problems, file, (line, col + (exc.position or 0) if line else col),
            f"{where}: query: {exc.message} (rule tests answer PromQL from input_series; "
            "give other queries' answers in a test's query_results)")


def sources_of(rules: list[LoadedRule]) -> list[str]:
    return sorted({c.source or lr.rule.source for lr in rules for c in lr.rule.conditions()} |
                  {lr.rule.source for lr in rules})


def _at(problems: list[Problem], file: str, mark: Mark | None, message: str) -> None:
    line, col = mark or (0, 0)
    problems.append(Problem(file, line, col, message))


# -- one test case ----------------------------------------------------------------------------------------


def _case(spec: CaseSpec, index: int, file: FileSpec, rules: list[LoadedRule], ctx: BuildContext) -> Case | None:
    where = f"tests[{index}]"
    interval = spec.interval if spec.interval is not None else file.evaluation_interval
    if interval <= 0:
        ctx.problem(spec.marks.get("@interval", spec.marks[""]), f"{where}.interval must be greater than 0")
    series = _series(spec, where, ctx)
    results = _results(spec, where, rules, ctx)
    names = sorted({lr.target for lr in rules})
    common = _target(spec.target, f"{where}.target", ctx)
    per_target = _per_target(spec, where, names, ctx)
    targets: dict[str, TargetConfig] = {}
    versions: dict[str, list[tuple[float, str]]] = {}
    for name in names:
        settings, changes = _merge(common, per_target.get(name))
        targets[name] = _target_config(settings, name)
        if changes:
            versions[name] = changes
    _check_placeholders(spec, where, rules, targets, versions, ctx)
    expect = [expectation(e, f"{where}.expect[{i}]", rules, ctx) for i, e in enumerate(spec.expect)]
    for before, after in zip(spec.expect, spec.expect[1:]):
        if after.at < before.at:
            ctx.problem(after.marks.get("@at", after.marks[""]), f"{where}.expect: times must not go backwards")
    return Case(spec.name or f"#{index + 1}", spec.marks[""][0], interval, series, results, targets, versions, expect)


def _series(spec: CaseSpec, where: str, ctx: BuildContext) -> list[InputSeries]:
    out: list[InputSeries] = []
    for i, s in enumerate(spec.input_series):
        at = f"{where}.input_series[{i}]"
        labels: Labels = ()
        try:
            labels = parse_series(s.series)
        except NotationError as exc:
            ctx.problem(_shift(s.marks.get("@series"), exc.column), f"{at}.series: {exc}")
        try:
            values = parse_values(s.values)
        except NotationError as exc:
            ctx.problem(_shift(s.marks.get("@values"), exc.column), f"{at}.values: {exc}")
            continue
        if labels and any(o.labels == labels for o in out):
            ctx.problem(s.marks.get("@series", (0, 0)), f"{at}.series: {s.series} is given twice")
        if labels:
            out.append(InputSeries(labels, values))
    return out


def _results(spec: CaseSpec, where: str, rules: list[LoadedRule], ctx: BuildContext) -> list[ScriptedResult]:
    out: list[ScriptedResult] = []
    for i, r in enumerate(spec.query_results):
        at = f"{where}.query_results[{i}]"
        if (r.rule is None) == (r.query is None):
            ctx.problem(r.marks[""], f"{at}: give either 'rule' or 'query'")
            continue
        query = r.query
        if r.rule is not None:
            found = resolve(r.rule, rules, lambda message: ctx.problem(r.marks.get("@rule", r.marks[""]), f"{at}: {message}"))
            if found is None:
                continue
            query = next(lr.rule.query for lr in rules if (lr.target, lr.rule.name) == found[:2])
            if query is None:
                ctx.problem(r.marks.get("@rule", r.marks[""]), f"{at}: rule '{r.rule}' has conditions; give 'query'")
                continue
        assert query is not None
        try:
            labels = parse_label_set(r.series)
            values = parse_values(r.values)
            samples = parse_values(r.samples) if r.samples is not None else None
        except NotationError as exc:
            ctx.problem(r.marks[""], f"{at}: {exc}")
            continue
        out.append(ScriptedResult(query, query_pattern(query), labels, values, samples))
    return out


def scripted_queries(cases: list[Case]) -> set[str]:
    return {r.query for case in cases for r in case.results}


def _shift(mark: Mark | None, column: int) -> Mark:
    line, col = mark or (0, 0)
    return (line, col + column) if line else (0, 0)


@dataclass(frozen=True)
class _TargetSpec:
    """What a test's `target` (or one entry of its `targets`) says."""

    settings: TargetConfig | None
    given: frozenset[str]  # the TargetConfig fields it sets
    versions: list[tuple[float, str]] | None  # None: neither 'version' nor 'versions'


_NO_TARGET = _TargetSpec(None, frozenset(), None)


def _target(node: Node | None, where: str, ctx: BuildContext) -> _TargetSpec:
    if node is None:
        return _NO_TARGET
    if node.kind != "map":
        ctx.problem(node, f"{where}: expected a mapping, got {node.describe()}")
        return _NO_TARGET
    ours = {f.name for f in dataclasses.fields(TargetVersion)} - {"marks"}
    mine = [(k, v) for k, v in node.value if k.value in ours]
    rest = [(k, v) for k, v in node.value if k.value not in ours]
    for k, _ in rest:
        if k.value in ("rollback", "alert"):
            ctx.problem(k, f"{where}.{k.value}: set by the test runner (a recording actuator and alerter)")
    rest = [(k, v) for k, v in rest if k.value not in ("rollback", "alert")]
    version = build(TargetVersion, Node("map", mine, node.line, node.column), ctx, where)
    settings = build(TargetConfig, Node("map", rest, node.line, node.column), ctx, where)
    versions: list[tuple[float, str]] | None = None
    if version is not None and (version.version is not None or version.versions):
        if version.version is not None and version.versions:
            ctx.problem(node, f"{where}: give either 'version' or 'versions', not both")
        versions = sorted([(0.0, version.version)] if version.version is not None
                          else [(c.at, c.version) for c in version.versions])
    keys = {f.metadata.get("key") or f.name: f.name for f in dataclasses.fields(TargetConfig)}
    given = frozenset(keys[k.value] for k, _ in rest if k.value in keys)
    return _TargetSpec(settings, given, versions)


def _per_target(spec: CaseSpec, where: str, names: list[str], ctx: BuildContext) -> dict[str, _TargetSpec]:
    node = spec.targets
    if node is None:
        return {}
    if node.kind != "map":
        ctx.problem(node, f"{where}.targets: expected a mapping of target → settings, got {node.describe()}")
        return {}
    out: dict[str, _TargetSpec] = {}
    for key, value in node.value:
        name = str(key.value)
        if name not in names:
            hint = suggest(name, names) or f" (targets of the rule files: {', '.join(names) or 'none'})"
            ctx.problem(key, f"{where}.targets: unknown target '{name}'{hint}")
            continue
        out[name] = _target(value, f"{where}.targets.{name}", ctx)
    return out


def _merge(common: _TargetSpec, own: _TargetSpec | None) -> tuple[TargetConfig | None, list[tuple[float, str]]]:
    """A target's settings: those of `target`, with the keys its `targets` entry gives replaced."""
    settings = common.settings
    versions = common.versions
    if own is not None:
        if own.settings is not None:
            base = settings if settings is not None else TargetConfig()
            settings = dataclasses.replace(base, **{f: getattr(own.settings, f) for f in own.given})
        if own.versions is not None:
            versions = own.versions
    return settings, versions or []


def _check_placeholders(spec: CaseSpec, where: str, rules: list[LoadedRule], targets: dict[str, TargetConfig],
                        versions: dict[str, list[tuple[float, str]]], ctx: BuildContext) -> None:
    """Every {{placeholder}} of the rules must have a value in this test (as `validate` checks
    against watchdog.yaml), or the engine would only ever see "no data"."""
    at = spec.marks.get("targets") or spec.marks.get("target") or spec.marks[""]
    reported: set[tuple[str, str]] = set()
    for lr in rules:
        queries = [c.query for c in lr.rule.conditions()]
        if lr.rule.min_samples is not None and lr.rule.min_samples.query is not None:
            queries.append(lr.rule.min_samples.query)
        known = {*BUILTIN, *targets[lr.target].variables}
        for name in sorted(set().union(*(names_in(q) for q in queries if q))):
            if (lr.target, name) in reported:
                continue
            if name not in known:
                reported.add((lr.target, name))
                ctx.problem(at, f"{where}: rule '{lr.rule.name}' of target '{lr.target}' uses {{{{{name}}}}}, which has no "
                                f"value here: give it in target.variables (or targets.{lr.target}.variables)")
            elif name == "version" and not versions.get(lr.target):
                reported.add((lr.target, name))
                ctx.problem(at, f"{where}: rule '{lr.rule.name}' of target '{lr.target}' uses {{{{version}}}}: give the "
                                "running version (target: {version: v2} or versions: [{at: 0s, version: v1}, ...])")


VERSION_SOURCE = "ruletest-version"


def _target_config(settings: TargetConfig | None, name: str) -> TargetConfig:
    """The target as the engine sees it: its running version is read from the synthetic
    version source (the query is the target's name), rollbacks and alerts are recorded."""
    base = settings if settings is not None else TargetConfig()
    return dataclasses.replace(base, version=VersionQuery(source=VERSION_SOURCE, query=name, label="version"),
                               rollback=[DEFAULT_ACTUATOR], alert=[DEFAULT_ALERTER])
