"""Load `watchdog.yaml` and its rule files into frozen objects, or fail with every problem.

Nothing is half-loaded: `load()` either returns a complete `LoadedConfig` or raises
`ConfigError` listing each problem as `file:line:column: reason`.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from watchdog import plugins
from watchdog.config.fields import BuildContext, Mark, PluginSpec, build, marks_field
from watchdog.config.schema import Config, LoadedRule, Rule
from watchdog.config.yamlnodes import Node, parse_yaml
from watchdog.errors import ConfigError, PluginError, Problem, QueryError, WatchdogError

ENV_CONFIG = "MODEL_WATCHDOG_CONFIG"


@dataclass(frozen=True)
class LoadedConfig:
    path: Path
    config: Config
    rules: list[LoadedRule]
    state_path: str
    rule_files: list[Path]

    def rules_of(self, target: str) -> list[Rule]:
        return [lr.rule for lr in self.rules if lr.target == target]


def default_config_path(explicit: str | None, environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(explicit or env.get(ENV_CONFIG) or "watchdog.yaml")


def load(path: Path | str, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    path = Path(path)
    problems: list[Problem] = []
    config = _load_config(path, problems, environ)
    if config is None:
        raise ConfigError(problems)
    base = path.resolve().parent
    files = _expand_rule_files(config, base, path, problems)
    rules: list[LoadedRule] = []
    unbuilt: list[_UnbuiltQuery] = []
    for file in files:
        rules.extend(_load_rule_file(file, problems, unbuilt))
    _check_references(config, rules, str(path), problems, unbuilt)
    if problems:
        raise ConfigError(problems)
    state = config.state
    if "://" not in state and not Path(state).is_absolute():
        state = str(base / state)
    return LoadedConfig(path=path, config=config, rules=rules, state_path=state, rule_files=files)


def _read(path: Path, problems: list[Problem]) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append(Problem(str(path), 0, 0, f"cannot read file: {exc.strerror or exc}"))
    except UnicodeDecodeError as exc:
        problems.append(Problem(str(path), 0, 0, f"not UTF-8 text: {exc.reason}"))
    return None


def _load_config(path: Path, problems: list[Problem], environ: Mapping[str, str] | None) -> Config | None:
    text = _read(path, problems)
    if text is None:
        return None
    root, syntax = parse_yaml(text, str(path))
    problems.extend(syntax)
    if root is None:
        return None
    ctx = BuildContext(str(path), interpolate_env=True, base_dir=path.resolve().parent,
                       environ=os.environ if environ is None else environ,
                       plugin_options=plugins.options_class)
    config = build(Config, root, ctx, "config")
    problems.extend(ctx.problems)
    return config if not ctx.problems else None


def _expand_rule_files(config: Config, base: Path, path: Path, problems: list[Problem]) -> list[Path]:
    files: list[Path] = []
    at = config.marks.get("rule_files", (0, 0))
    for pattern in config.rule_files:
        full = pattern if os.path.isabs(pattern) else str(base / pattern)
        matches = sorted(Path(p) for p in glob.glob(full, recursive=True))
        if not matches:
            problems.append(Problem(str(path), at[0], at[1], f"rule_files: '{pattern}' matches no file"))
        files.extend(m for m in matches if m not in files)
    return files


@dataclass(frozen=True)
class _UnbuiltQuery:
    """The query of a rule that failed to build: still checked, so every problem shows at once."""

    file: str
    source: str
    query: str
    marks: dict[str, Mark]
    where: str


def _unbuilt_query(node: Node, file: str, index: int) -> _UnbuiltQuery | None:
    if node.kind != "map":
        return None
    values = {k.value: v for k, v in node.value if isinstance(k.value, str)}
    source, query, name = values.get("source"), values.get("query"), values.get("name")
    if source is None or query is None or not isinstance(query.value, str):
        return None
    return _UnbuiltQuery(file, str(source.value), query.value,
                         {"@source": (source.line, source.column), "@query": (query.line, query.column)},
                         f'rule "{name.value if name else index}"')


def _load_rule_file(file: Path, problems: list[Problem], unbuilt: list[_UnbuiltQuery]) -> list[LoadedRule]:
    text = _read(file, problems)
    if text is None:
        return []
    root, syntax = parse_yaml(text, str(file))
    problems.extend(syntax)
    if root is None:
        return []
    ctx = BuildContext(str(file))
    head = build(_RuleFileHead, root, ctx, "rule file")
    rules: list[Rule] = []
    if head is not None:
        # Rules are built one by one so that one broken rule does not hide the others' problems.
        for i, node in enumerate(head.rules):
            rule = build(Rule, node, ctx, f"rule file.rules[{i}]")
            if rule is not None:
                rules.append(rule)
                _check_rule_shape(rule, str(file), problems)
            elif (partial := _unbuilt_query(node, str(file), i)) is not None:
                unbuilt.append(partial)
    problems.extend(ctx.problems)
    if head is None:
        return []
    return [LoadedRule(target=head.target, rule=rule, file=str(file)) for rule in rules]


@dataclass(frozen=True)
class _RuleFileHead:
    """A rule file with its rules still unbuilt (see RuleFile for the documented shape)."""

    target: str
    rules: list[Node]
    marks: dict[str, Mark] = marks_field()


def _problem(problems: list[Problem], file: str, mark: Mark | None, message: str) -> None:
    line, col = mark or (0, 0)
    problems.append(Problem(file, line, col, message))


def _check_rule_shape(rule: Rule, file: str, problems: list[Problem]) -> None:
    where = f'rule "{rule.name}"'
    if rule.above is None and rule.below is None:
        _problem(problems, file, rule.marks.get(""), f"{where}: needs a threshold: 'above', 'below' or both")
    if rule.above is not None and rule.below is not None and rule.below > rule.above:
        _problem(problems, file, rule.marks.get("below"),
                 f"{where}: below ({rule.below:g}) is greater than above ({rule.above:g}): no value could be healthy")
    if rule.min_samples is not None and rule.min_samples.at_least < 0:
        _problem(problems, file, rule.min_samples.marks.get("at_least"), f"{where}: min_samples.at_least must not be negative")


def _check_references(config: Config, rules: list[LoadedRule], cfg_file: str, problems: list[Problem],
                      unbuilt: list[_UnbuiltQuery]) -> None:
    sources = _instantiate(plugins.SOURCES, "sources", config.sources, cfg_file, problems)
    # Actuators and alerters check their own options (e.g. unknown {{placeholders}}) when built.
    _instantiate(plugins.ACTUATORS, "actuators", config.actuators, cfg_file, problems)
    _instantiate(plugins.ALERTERS, "alerters", config.alerters, cfg_file, problems)
    seen: dict[tuple[str, str], str] = {}
    for lr in rules:
        rule, file = lr.rule, lr.file
        where = f'rule "{rule.name}"'
        target = config.targets.get(lr.target)
        if target is None:
            _problem(problems, file, None, f"target '{lr.target}' is not defined in {cfg_file} (targets: {', '.join(config.targets) or 'none'})")
        key = (lr.target, rule.name)
        if key in seen:
            _problem(problems, file, rule.marks.get("name"), f"{where}: duplicate rule name for target '{lr.target}' (first defined in {seen[key]})")
        seen[key] = file
        if target is not None and rule.action == "rollback" and not target.rollback:
            _problem(problems, file, rule.marks.get("action"), f"{where}: action is rollback but target '{lr.target}' has no 'rollback' actuators")
        _check_query(sources, config, rule.source, rule.query, file, rule.marks, where, problems)
        if rule.min_samples is not None:
            _check_query(sources, config, rule.source, rule.min_samples.query, file,
                         rule.min_samples.marks, f"{where}: min_samples", problems)
    for name, target in config.targets.items():
        _check_target(name, target, config, sources, cfg_file, problems)
    for q in unbuilt:
        _check_query(sources, config, q.source, q.query, q.file, q.marks, q.where, problems)


def _check_target(name, target, config, sources, cfg_file, problems) -> None:  # type: ignore[no-untyped-def]
    where = f"targets.{name}"
    for actuator in target.rollback:
        if actuator not in config.actuators:
            _problem(problems, cfg_file, target.marks.get("rollback"), f"{where}.rollback: unknown actuator '{actuator}' (defined: {', '.join(config.actuators) or 'none'})")
    for alerter in target.alert:
        if alerter not in config.alerters:
            _problem(problems, cfg_file, target.marks.get("alert"), f"{where}.alert: unknown alerter '{alerter}' (defined: {', '.join(config.alerters) or 'none'})")
    if target.version is not None:
        _check_query(sources, config, target.version.source, target.version.query, cfg_file,
                     target.version.marks, f"{where}.version", problems)


def _instantiate(group: str, section: str, specs: dict[str, PluginSpec], cfg_file: str,
                 problems: list[Problem]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, spec in specs.items():
        try:
            plugin = plugins.create(group, spec)
        except PluginError as exc:
            _problem(problems, cfg_file, spec.marks.get("type"), f"{section}.{name}: {exc}")
            continue
        except (ValueError, WatchdogError) as exc:  # a plugin's constructor rejecting its options
            _problem(problems, cfg_file, spec.marks.get(""), f"{section}.{name}: {exc}")
            continue
        out[name] = plugin
        if group != plugins.SOURCES:
            plugin.close()
    return out


def _check_query(sources, config, source_name, query, file, marks, where, problems) -> None:  # type: ignore[no-untyped-def]
    if source_name not in config.sources:
        _problem(problems, file, marks.get("@source"), f"{where}: unknown source '{source_name}' (defined: {', '.join(config.sources) or 'none'})")
        return
    source = sources.get(source_name)
    if source is None:
        return
    try:
        source.check_query(query)
    except QueryError as exc:
        line, col = marks.get("@query", (0, 0))
        if exc.position is not None and line:
            col += exc.position  # point into the query (exact for plain, unquoted scalars)
        problems.append(Problem(file, line, col, f"{where}: query: {exc.message}"))
