"""Every vendor alerter type configured in a `watchdog.yaml`, loaded as `validate` loads it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.needs import require_module
from watchdog import redact
from watchdog.config import plugins
from watchdog.config.loader import load
from watchdog.errors import ConfigError

pytestmark = pytest.mark.timeout(30)

CONFIG = """\
interval: 15s
state: ./state.db
rule_files: [rules/*.yaml]
sources:
  model: {type: scrape, url: "http://127.0.0.1:8080/metrics"}
alerters:
  chat:
    type: slack
    webhook_url: ${SLACK_WEBHOOK_URL}
    channel: "#ml-oncall"
    username: model-watchdog
    timeout: 5s
    retries: 2
    backoff: 500ms
  pager:
    type: pagerduty
    routing_key_file: secrets/pagerduty
    source: watchdog@prod
  genie:
    type: opsgenie
    api_key: ${OPSGENIE_API_KEY}
    url: https://api.eu.opsgenie.com
    tags: [team:ml]
  am:
    type: alertmanager
    url: http://alertmanager:9093
    labels: {team: ml}
    firing_ttl: 12h
    generator_url: http://watchdog:8080/
  mail:
    type: email
    host: smtp.example.com
    port: 587
    starttls: true
    ssl: false
    username: watchdog
    password_file: secrets/smtp
    from: watchdog@example.com
    to: [oncall@example.com]
    subject_prefix: "[ml]"
    timeout: 20s
targets:
  fraud-model:
    alert: [chat, pager, genie, am, mail]
"""

RULES = """\
target: fraud-model
rules:
  - name: error-rate
    source: model
    query: error_ratio
    above: 0.05
"""

ENV = {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/slack-secret-part",
       "OPSGENIE_API_KEY": "genie-secret-key-0123"}


def write(tmp_path: Path, config: str = CONFIG) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "fraud.yaml").write_text(RULES)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pagerduty").write_text("R0UT1NGKEY0123456789abcdefABCDEF\n")
    (tmp_path / "secrets" / "smtp").write_text("smtp-secret-password\n")
    path = tmp_path / "watchdog.yaml"
    path.write_text(textwrap.dedent(config))
    return path


def test_every_vendor_type_loads_with_its_options_and_secrets(tmp_path: Path) -> None:
    loaded = load(write(tmp_path), environ=ENV)

    alerters = loaded.config.alerters
    assert {name: spec.type for name, spec in alerters.items()} == {
        "chat": "slack", "pager": "pagerduty", "genie": "opsgenie", "am": "alertmanager", "mail": "email"}
    assert alerters["chat"].options.webhook_url == ENV["SLACK_WEBHOOK_URL"]
    assert alerters["chat"].options.backoff == 0.5
    assert alerters["pager"].options.routing_key == "R0UT1NGKEY0123456789abcdefABCDEF"
    assert alerters["genie"].options.tags == ["team:ml"]
    assert alerters["am"].options.firing_ttl == 12 * 3600
    assert alerters["mail"].options.from_ == "watchdog@example.com"
    assert alerters["mail"].options.password == "smtp-secret-password"
    for spec in alerters.values():  # and each one builds
        plugins.create(plugins.ALERTERS, spec)
    shown = redact.redact(" ".join(repr(spec) for spec in alerters.values()) + " " + " ".join(ENV.values()))
    assert "slack-secret-part" not in shown and "genie-secret-key" not in shown and "smtp-secret" not in shown


def test_unknown_keys_are_rejected_with_their_line(tmp_path: Path) -> None:
    config = (CONFIG.replace("    channel: \"#ml-oncall\"", "    chanel: \"#ml-oncall\"")
              .replace("    source: watchdog@prod", "    severity_map: {}")
              .replace("    firing_ttl: 12h", "    endsAt: 12h"))
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, config), environ=ENV)

    problems = [str(p) for p in info.value.problems]
    assert any(":10:5: config.alerters.chat: unknown key 'chanel' (did you mean 'channel'?)" in p for p in problems), problems
    assert any(":18:5: config.alerters.pager: unknown key 'severity_map'" in p for p in problems), problems
    assert any(":28:5: config.alerters.am: unknown key 'endsAt'" in p for p in problems), problems


def test_invalid_options_are_reported_at_the_alerter(tmp_path: Path) -> None:
    config = (CONFIG.replace("    starttls: true\n", "    starttls: false\n")
              .replace("routing_key_file: secrets/pagerduty", "routing_key: short"))
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, config), environ=ENV)

    text = str(info.value)
    assert "alerters.pager" in text and "32-character integration key" in text
    assert "alerters.mail" in text and "refusing to send the password unencrypted" in text
    assert "smtp-secret-password" not in text


def test_missing_required_options_are_named(tmp_path: Path) -> None:
    config = CONFIG.replace("    to: [oncall@example.com]\n", "").replace("    api_key: ${OPSGENIE_API_KEY}\n", "")
    with pytest.raises(ConfigError) as info:
        load(write(tmp_path, config), environ=ENV)

    text = str(info.value)
    assert "alerters.mail: missing required key 'to'" in text
    assert "alerters.genie: missing required key 'api_key'" in text


def test_the_json_schema_accepts_the_same_config_and_rejects_the_typo() -> None:
    jsonschema = require_module("jsonschema")
    from watchdog.config.jsonschema import config_schema
    from watchdog.config.yamlnodes import parse_yaml

    validator = jsonschema.Draft202012Validator(config_schema())

    def errors(text: str) -> list[str]:
        node, problems = parse_yaml(text, "watchdog.yaml")
        assert not problems and node is not None
        return [e.message for e in validator.iter_errors(node.plain())]

    assert errors(CONFIG) == []
    assert errors(CONFIG.replace("    channel: ", "    chanel: ")) != []
