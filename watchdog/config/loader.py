"""Load `watchdog.yaml` and its rule files into frozen objects, or fail with every problem.

Nothing is half-loaded: `load()` either returns a complete `LoadedConfig` or raises
`ConfigError` listing each problem as `file:line:column: reason`.
"""

from __future__ import annotations

import glob
import os
import re
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from watchdog.config import plugins
from watchdog.redact import Redactor, collecting
from watchdog.config.fields import BuildContext, Mark, build, marks_field
from watchdog.config.schema import Config, LoadedRule, Rule
from watchdog.config.yamlnodes import Node, parse_yaml, read_capped
from watchdog.config.validate import (BuiltPlugins, UnbuiltQuery, check_references, check_rule_shape,
                                      problem as _problem)
from watchdog.errors import ConfigError, Problem
from watchdog.config.templating import names_in

ENV_CONFIG = "MODEL_WATCHDOG_CONFIG"


@dataclass(frozen=True)
class LoadedConfig:
    path: Path
    config: Config
    rules: list[LoadedRule]
    state_path: str
    rule_files: list[Path]
    # The secrets found while loading (`*_file` values, secret options, `${VAR}`s that look secret):
    # also registered in the process's redactor at once; a daemon keeps them in its own.
    secrets: Redactor = field(default_factory=Redactor, compare=False, repr=False)
    # The plugin instances validation built: the first daemon to run this configuration takes them.
    plugins: "PluginHandoff" = field(default_factory=lambda: PluginHandoff(None), compare=False, repr=False)

    def rules_of(self, target: str) -> list[Rule]:
        return [lr.rule for lr in self.rules if lr.target == target]

    def take_plugins(self) -> BuiltPlugins | None:
        """The plugins built while validating, once (None after that, or if none were kept):
        the daemon uses them rather than building each plugin again."""
        return self.plugins.take()


class PluginHandoff:
    """Plugin instances handed from validation to the one daemon that runs the configuration."""

    def __init__(self, built: BuiltPlugins | None):
        self._built = built
        self._lock = threading.Lock()

    def take(self) -> BuiltPlugins | None:
        with self._lock:
            built, self._built = self._built, None
        return built


def default_config_path(explicit: str | None, environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(explicit or env.get(ENV_CONFIG) or "watchdog.yaml")


def load(path: Path | str, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    with collecting(Redactor()) as secrets:
        loaded = _load(Path(path), environ)
    return replace(loaded, secrets=secrets)


def _load(path: Path, environ: Mapping[str, str] | None) -> LoadedConfig:
    problems: list[Problem] = []
    config = _load_config(path, problems, environ)
    if config is None:
        raise ConfigError(problems)
    base = path.resolve().parent
    files = _expand_rule_files(config, base, path, problems)
    rules: list[LoadedRule] = []
    unbuilt: list[UnbuiltQuery] = []
    for file in files:
        rules.extend(load_rule_file(file, problems, unbuilt))
    built = check_references(config, rules, str(path), problems, unbuilt)
    if problems:
        built.close()
        raise ConfigError(problems)
    state = config.state
    if "://" not in state and not Path(state).is_absolute():
        state = str(base / state)
    return LoadedConfig(path=path, config=config, rules=rules, state_path=state, rule_files=files,
                        plugins=PluginHandoff(built))


def _read(path: Path, problems: list[Problem]) -> str | None:
    return read_capped(path, problems)


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


def _unbuilt_query(node: Node, file: str, index: int) -> UnbuiltQuery | None:
    if node.kind != "map":
        return None
    values = {k.value: v for k, v in node.value if isinstance(k.value, str)}
    source, query, name = values.get("source"), values.get("query"), values.get("name")
    if source is None or query is None or not isinstance(query.value, str):
        return None
    return UnbuiltQuery(file, str(source.value), query.value,
                         {"@source": (source.line, source.column), "@query": (query.line, query.column)},
                         f'rule "{name.value if name else index}"')


def load_rule_file(file: Path, problems: list[Problem], unbuilt: list[UnbuiltQuery] | None = None) -> list[LoadedRule]:
    """One rule file's rules (one per target it names); problems are appended, never raised."""
    unbuilt = [] if unbuilt is None else unbuilt
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
                check_rule_shape(rule, str(file), problems)
            elif (partial := _unbuilt_query(node, str(file), i)) is not None:
                unbuilt.append(partial)
    problems.extend(ctx.problems)
    if head is None:
        return []
    targets = ([head.target] if head.target else []) + list(head.targets or [])
    if bool(head.target) == bool(head.targets):
        _problem(problems, str(file), head.marks.get(""), "rule file: give either 'target: NAME' or 'targets: [NAME, ...]'")
    if head.split_by is not None:
        _check_split(head.split_by, rules, str(file), head.marks.get("split_by"), problems)
    return [LoadedRule(target=t, rule=rule, file=str(file), split_by=head.split_by) for t in targets for rule in rules]


_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _check_split(label: str, rules: list[Rule], file: str, mark: Mark | None, problems: list[Problem]) -> None:
    """A split file's query runs once for all its targets: nothing in it may differ by target."""
    if not _LABEL_NAME.fullmatch(label):
        _problem(problems, file, mark, f"split_by: {label!r} is not a label name")
    for rule in rules:
        for c in rule.conditions():
            if names_in(c.query):
                _problem(problems, file, c.marks.get("query", mark), f'rule "{rule.name}": query: '
                         f"{{{{{sorted(names_in(c.query))[0]}}}}} cannot be used with split_by: the query runs "
                         "once for every target; select all their series and let split_by route them")


@dataclass(frozen=True)
class _RuleFileHead:
    """A rule file with its rules still unbuilt (see RuleFile for the documented shape)."""

    target: str | None = None
    targets: list[str] | None = None
    split_by: str | None = None
    rules: list[Node] = field(default_factory=list)
    marks: dict[str, Mark] = marks_field()


