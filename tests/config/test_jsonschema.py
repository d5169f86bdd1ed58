"""The JSON Schemas for editors: generated from the config dataclasses, checked against the examples."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import pytest

from tests.needs import require_module
from watchdog.config import plugins
from watchdog.config.jsonschema import config_schema, dump, rules_schema
from watchdog.config.yamlnodes import parse_yaml

jsonschema = require_module("jsonschema")

ROOT = Path(__file__).resolve().parents[2]


def plain(text: str) -> Any:
    node, problems = parse_yaml(text, "test.yaml")
    assert not problems and node is not None
    return node.plain()


def errors(schema: dict[str, Any], document: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return config_schema()


@pytest.fixture(scope="module")
def rules() -> dict[str, Any]:
    return rules_schema()


@pytest.mark.parametrize(("name", "make"), [("config.json", config_schema), ("rules.json", rules_schema)])
def test_the_generated_files_are_up_to_date(name, make):
    flag = " --rules" if name == "rules.json" else ""
    assert (ROOT / "docs" / "schema" / name).read_text(encoding="utf-8") == dump(make()), (
        f"docs/schema/{name} is stale; regenerate it with: model-watchdog schema{flag} > docs/schema/{name}")


def test_both_are_valid_draft_2020_12_schemas(config, rules):
    for schema in (config, rules):
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", ["watchdog.example.yaml", "rules/demo/watchdog.yaml"])
def test_the_example_configs_validate(config, path):
    assert errors(config, plain((ROOT / path).read_text(encoding="utf-8"))) == []


def test_every_example_rule_file_validates(rules):
    files = [Path(p) for p in sorted(glob.glob(str(ROOT / "rules" / "**" / "*.yaml"), recursive=True))
             if "/tests/" not in p and not p.endswith("watchdog.yaml")]
    assert ROOT / "rules" / "fraud-model.yaml" in files
    for file in files:
        assert errors(rules, plain(file.read_text(encoding="utf-8"))) == [], file


def test_the_rule_file_modeline_points_at_the_generated_schema():
    first = (ROOT / "rules" / "fraud-model.yaml").read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=../docs/schema/rules.json"
    assert (ROOT / "rules" / "../docs/schema/rules.json").is_file()


RULES = """\
target: fraud-model
rules:
  - name: error-rate
    source: model
    query: error_ratio
    above: 0.05
    for: 1m30s
    action: rollback
"""


def test_an_unknown_key_is_rejected(rules):
    assert errors(rules, plain(RULES)) == []
    found = errors(rules, plain(RULES.replace("    above: 0.05\n", "    treshold: 0.05\n")))
    assert any("treshold" in e and "rules/0" in e for e in found), found


def test_enums_types_and_durations_are_checked(rules):
    assert errors(rules, plain(RULES.replace("action: rollback", "action: reboot")))
    assert errors(rules, plain(RULES.replace("above: 0.05", "above: high")))
    assert errors(rules, plain(RULES.replace("for: 1m30s", "for: 90 seconds")))
    assert errors(rules, plain(RULES.replace("for: 1m30s", "for: 90"))) == []  # a number of seconds
    assert errors(rules, plain(RULES.replace("for: 1m30s", "for: 500ms"))) == []


def test_field_help_becomes_the_description(rules):
    rule = rules["$defs"]["Rule"]
    assert rule["additionalProperties"] is False
    assert "for" in rule["properties"] and "for_" not in rule["properties"]
    assert rule["properties"]["for"]["description"] == "breach must hold this long before firing"
    assert rule["properties"]["on_no_data"]["enum"] == ["ignore", "alert", "rollback"]
    assert set(rule["required"]) >= {"name", "source"}


CONFIG = """\
rule_files: [rules/*.yaml]
sources:
  model: {type: scrape, url: "http://127.0.0.1:8080/metrics", timeout: 2s}
actuators:
  hook: {type: webhook, url: "http://127.0.0.1:9000/rollback", headers: {Authorization: "Bearer ${TOKEN}"}}
alerters:
  ops: {type: log}
targets:
  fraud-model: {rollback: [hook], alert: [ops]}
"""


def test_plugins_are_told_apart_by_type(config):
    assert errors(config, plain(CONFIG)) == []
    assert errors(config, plain(CONFIG.replace("type: scrape", "type: scrap")))  # no such plugin
    assert errors(config, plain(CONFIG.replace("timeout: 2s", "timeout: 2s, method: GET")))  # not a scrape option
    assert errors(config, plain(CONFIG.replace("{type: log}", "{type: log, url: x}")))
    branches = config["properties"]["sources"]["additionalProperties"]["oneOf"]
    assert [b["title"] for b in branches] == sorted(plugins.available(plugins.SOURCES))


def test_durations_in_the_config_may_come_from_the_environment(config):
    assert errors(config, plain("interval: ${INTERVAL:-15s}\n")) == []
    assert errors(config, plain("interval: soon\n"))


def test_a_secret_may_come_from_a_file_but_not_both(config):
    found = [(group, name, secret) for group in (plugins.SOURCES, plugins.ACTUATORS, plugins.ALERTERS)
             for name in plugins.available(group) for secret in _secrets(_branch(config, group, name))]
    assert found, "no built-in plugin has a secret option: this test checks nothing"
    group, name, secret = found[0]
    section = group.rsplit(".", 1)[-1]
    branches = config["properties"][section]["additionalProperties"]["oneOf"]
    branch = next(b for b in branches if b["title"] == name)
    one = {"type": name, **{k: "x" for k in branch.get("required", []) if k != "type"}, f"{secret}_file": "/run/s"}
    assert not [e for e in errors(config, {section: {"p": one}}) if secret in e]
    assert errors(config, {section: {"p": {**one, secret: "inline"}}})


def _secrets(properties: dict[str, Any]) -> list[str]:
    return [p[:-5] for p in properties if p.endswith("_file") and p[:-5] in properties]


def _branch(config: dict[str, Any], group: str, name: str) -> dict[str, Any]:
    section = group.rsplit(".", 1)[-1]
    branches = config["properties"][section]["additionalProperties"]["oneOf"]
    return next(b for b in branches if b["title"] == name).get("properties", {})
