"""Loading configuration: all or nothing, and every problem pointed at its line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from watchdog.config.loader import load
from watchdog.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

GOOD_CONFIG = """\
interval: 15s
state: ./state.db
rule_files: [rules/*.yaml]
sources:
  model: {type: scrape, url: "http://127.0.0.1:8080/metrics"}
actuators:
  hook:
    type: webhook
    url: http://127.0.0.1:9000/rollback
    headers: {Authorization: "Bearer ${TEST_ROLLBACK_TOKEN}"}
alerters:
  ops: {type: log}
targets:
  fraud-model:
    rollback: [hook]
    alert: [ops]
"""

GOOD_RULES = """\
target: fraud-model
rules:
  - name: error-rate
    source: model
    query: sum(rate(requests_total{status="error"}[1m])) / sum(rate(requests_total[1m]))
    above: 0.05
    for: 1m30s
    action: rollback
"""


def write(tmp_path: Path, config: str = GOOD_CONFIG, rules: str = GOOD_RULES) -> Path:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "fraud.yaml").write_text(textwrap.dedent(rules))
    path = tmp_path / "watchdog.yaml"
    path.write_text(textwrap.dedent(config))
    return path


def problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(path, environ=environ if environ is not None else {"TEST_ROLLBACK_TOKEN": "s3cr3t-token"})
    return [str(p) for p in info.value.problems]


def test_the_example_config_and_rules_load():
    loaded = load(ROOT / "watchdog.example.yaml", environ={})
    assert [r.rule.name for r in loaded.rules] == ["error-rate", "p99-latency", "accuracy"]
    error_rate = loaded.rules[0].rule
    assert error_rate.for_ == 30 and error_rate.above == 0.05 and error_rate.min_samples.at_least == 200
    assert loaded.config.interval == 15


def test_relative_paths_are_resolved_from_the_config_folder(tmp_path, monkeypatch):
    path = write(tmp_path)
    monkeypatch.chdir("/")
    loaded = load(path, environ={"TEST_ROLLBACK_TOKEN": "x"})
    assert loaded.state_path == str(tmp_path.resolve() / "state.db")
    assert loaded.rule_files == [tmp_path.resolve() / "rules" / "fraud.yaml"]


def test_environment_variables_fill_in_secrets(tmp_path):
    loaded = load(write(tmp_path), environ={"TEST_ROLLBACK_TOKEN": "s3cr3t-token"})
    assert loaded.config.actuators["hook"].options.headers == {"Authorization": "Bearer s3cr3t-token"}


def test_a_missing_environment_variable_is_reported_where_it_is_used(tmp_path):
    found = problems(write(tmp_path), environ={})
    assert found == [f"{tmp_path / 'watchdog.yaml'}:10:30: config.actuators.hook.headers.Authorization: "
                     "environment variable TEST_ROLLBACK_TOKEN is not set (write ${TEST_ROLLBACK_TOKEN:-default} for a default)"]


def test_every_problem_is_reported_with_its_line_at_once(tmp_path):
    rules = """\
    target: fraud-model
    rules:
      - name: error-rate
        source: model
        query: sum(rate(requests_total[1m]))
        treshold: 0.05
        for: soon
      - name: band
        source: modle
        query: model_accuracy
        above: 0.9
        below: 0.95
      - name: future
        source: model
        query: predict_linear(model_accuracy[1h], 3600)
        below: 0.9
        on_no_data: panic
    """
    path = write(tmp_path, rules=rules)
    rule_file = tmp_path / "rules" / "fraud.yaml"
    found = problems(path)
    assert f"{rule_file}:6:5: rule file.rules[0]: unknown key 'treshold' (write 'above: X' or 'below: X' (both for a band))" in found
    assert any(p.startswith(f"{rule_file}:7:10: ") and "invalid duration 'soon'" in p for p in found)
    assert any(p.startswith(f"{rule_file}:9:13: ") and "unknown source 'modle'" in p for p in found)
    assert any(p.startswith(f"{rule_file}:12:5: ") and "below (0.95) is greater than above (0.9)" in p for p in found)
    assert any(p.startswith(f"{rule_file}:17:17: ") and "must be one of ignore, alert, rollback" in p for p in found)


def test_unsupported_promql_is_rejected_with_its_position(tmp_path):
    rules = GOOD_RULES.replace("sum(rate(requests_total{status=\"error\"}[1m])) / sum(rate(requests_total[1m]))",
                               "predict_linear(model_accuracy[1h], 3600)")
    found = problems(write(tmp_path, rules=rules))
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'rules' / 'fraud.yaml'}:5:12: ")
    assert "predict_linear" in found[0]


def test_a_yaml_syntax_error_names_file_and_line(tmp_path):
    found = problems(write(tmp_path, rules="target: fraud-model\nrules:\n  - name: [unclosed\n    above: 1\n"))
    assert len(found) == 1 and found[0].startswith(f"{tmp_path / 'rules' / 'fraud.yaml'}:") and "YAML syntax error" in found[0]


def test_references_to_undefined_things_are_errors(tmp_path):
    config = GOOD_CONFIG.replace("rollback: [hook]", "rollback: [hook, nope]").replace("alert: [ops]", "alert: [pager]")
    rules = GOOD_RULES.replace("target: fraud-model", "target: fraud-modle")
    found = problems(write(tmp_path, config=config, rules=rules))
    assert any(":15:5: targets.fraud-model.rollback: unknown actuator 'nope'" in p for p in found)
    assert any(":16:5: targets.fraud-model.alert: unknown alerter 'pager'" in p for p in found)
    assert any("target 'fraud-modle' is not defined" in p for p in found)


def test_an_unknown_plugin_type_suggests_the_closest(tmp_path):
    found = problems(write(tmp_path, config=GOOD_CONFIG.replace("type: scrape", "type: scrap")))
    assert any("unknown source type 'scrap' (did you mean 'scrape'?)" in p for p in found)


def test_duplicate_rule_names_are_rejected(tmp_path):
    rules = GOOD_RULES + GOOD_RULES.split("rules:\n", 1)[1]
    found = problems(write(tmp_path, rules=rules))
    assert any(":9:" in p and "duplicate rule name" in p for p in found)


def test_a_rule_without_threshold_is_rejected(tmp_path):
    found = problems(write(tmp_path, rules=GOOD_RULES.replace("    above: 0.05\n", "")))
    assert any(":3:5: " in p and "needs a threshold" in p for p in found)


def test_a_glob_that_matches_nothing_is_an_error_not_an_empty_rule_set(tmp_path):
    found = problems(write(tmp_path, config=GOOD_CONFIG.replace("rules/*.yaml", "rulez/*.yaml")))
    assert any(":3:1: rule_files: 'rulez/*.yaml' matches no file" in p for p in found)


def test_the_secret_is_not_in_any_problem_message(tmp_path):
    config = GOOD_CONFIG.replace("interval: 15s", "interval: fast")
    found = problems(write(tmp_path, config=config))
    assert all("s3cr3t-token" not in p for p in found)


def test_the_rules_checked_with_their_targets_variable_names_kept_give_each_rules_own_problems(tmp_path, monkeypatch):
    """Differential: check_references keeps each target's sorted variable names across its
    rules (a fleet: 10,000 rules, 1,000 targets); the problems are those of each rule checked
    on its own, with nothing kept, in the same order."""
    from watchdog.config import validate

    config = GOOD_CONFIG.replace("targets:\n", "targets:\n"
                                 "  plain: {}\n"
                                 "  with-vars: {variables: {job: api, zone: eu}}\n"
                                 "  other-vars: {variables: {zone: us, job: batch}}\n"
                                 "  one-var: {variables: {job: x}, alert: [ops]}\n")
    rules = textwrap.dedent("""\
        targets: [fraud-model, plain, with-vars, other-vars, one-var, nowhere]
        rules:
          - name: error-rate
            source: model
            query: sum(rate(requests_total{job="{{job}}"}[1m]))
            above: 0.05
            action: rollback
            alert: [ops, pager]
          - name: error-rate
            source: model
            query: up{zone="{{zone}}"} + nosuch(
            above: 1
          - name: plain
            source: model
            query: up{target="{{target}}"}
            below: 1
        """)
    path = write(tmp_path, config=config, rules=rules)
    kept = problems(path)
    real = validate._check_loaded_rule
    monkeypatch.setattr(validate, "_check_loaded_rule",
                        lambda lr, config, sources, cfg_file, seen, found, checked=None, names=None:
                        real(lr, config, sources, cfg_file, seen, found))
    alone = problems(path)
    assert kept == alone
    assert any("unknown placeholder {{job}}" in p for p in kept) and any("duplicate rule name" in p for p in kept)


def test_the_type_forms_convert_looks_up_once_are_typings() -> None:
    """Differential: `fields._origin_args` (kept per type) against typing's own, for every
    field type of the config's dataclasses and the plugins' options, asked twice, in a
    random order, with equal forms (`str | None`, `Optional[str]`) mixed in."""
    import dataclasses
    import typing

    from watchdog.config import fields, plugins, schema

    seen: list[object] = [typing.Optional[str], str | None, list[str], typing.List[str], dict[str, int], typing.Literal["a", 1]]
    todo = [c for c in vars(schema).values() if dataclasses.is_dataclass(c) and isinstance(c, type)]
    for group in (plugins.SOURCES, plugins.ACTUATORS, plugins.ALERTERS):
        for name in plugins.available(group):
            options, _ = plugins.options_class(group, name)
            if options is not None:
                todo.append(options)
    done: set[type] = set()
    while todo:
        cls = todo.pop()
        if cls in done:
            continue
        done.add(cls)
        for tp in typing.get_type_hints(cls).values():
            seen.append(tp)
            todo.extend(a for a in (tp, *typing.get_args(tp)) if dataclasses.is_dataclass(a) and isinstance(a, type))
    __import__("random").Random(1).shuffle(seen)
    for tp in seen + seen:
        assert fields._origin_args(tp) == (typing.get_origin(tp), typing.get_args(tp)) or (
            {fields._origin_args(tp)[0], typing.get_origin(tp)} <= {typing.Union, __import__("types").UnionType}
            and fields._origin_args(tp)[1] == typing.get_args(tp)), tp
    assert len(done) > 10
