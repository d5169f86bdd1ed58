"""Security: secrets never leak into any output; hostile input never crashes the loader."""

from __future__ import annotations

import io
import json
import logging
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.fuzzing import examples

from watchdog.cli import main
from watchdog.config.loader import load
from watchdog.daemon import Daemon
from watchdog.demo.model_server import SimulatedModelServer
from watchdog.errors import ConfigError

from tests.http_receiver import Receiver, Reply

SECRET = "s3cr3t-Rollback-Token-9f8e7d"

CONFIG = """\
interval: 1s
state: state.db
listen: 127.0.0.1:0
rule_files: [rules.yaml]
sources:
  model: {{type: scrape, url: "{model}/metrics"}}
actuators:
  hook:
    type: webhook
    url: "{hook}"
    headers: {{Authorization: "Bearer ${{ROLLBACK_TOKEN}}"}}
    retries: 0
targets:
  fraud-model:
    rollback: [hook]
"""

RULES = """\
target: fraud-model
rules:
  - {name: accuracy, source: model, query: model_accuracy, below: 0.9, action: rollback}
"""


def run_cli(*argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    main(list(argv), out, err)
    return out.getvalue() + err.getvalue()


@pytest.mark.timeout(60)
def test_a_known_secret_never_appears_in_any_output(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("ROLLBACK_TOKEN", SECRET)
    with SimulatedModelServer(mode="degraded") as model, Receiver() as hook:
        # A hostile receiver: echoes the Authorization header back in a 400 error body.
        hook.script(lambda req: Reply(400, body=f"bad token {req.headers.get('Authorization')}"))
        (tmp_path / "watchdog.yaml").write_text(CONFIG.format(model=model.url, hook=hook.url("/rollback")))
        (tmp_path / "rules.yaml").write_text(RULES)
        caplog.set_level(logging.DEBUG)
        daemon = Daemon(load(tmp_path / "watchdog.yaml"))
        daemon.run_once()
        assert hook.requests and SECRET in hook.requests[0].headers["Authorization"]  # it was really sent
        status = json.dumps(daemon.status())
        daemon.close()
        config = str(tmp_path / "watchdog.yaml")
        outputs = [status, caplog.text,
                   run_cli("history", "-c", config, "--limit", "100"),
                   run_cli("history", "-c", config, "--json"),
                   run_cli("status", "-c", config, "--json"),
                   run_cli("check", "-c", config, "--gap", "0"),
                   run_cli("validate", "-c", config)]
        (tmp_path / "watchdog.yaml").write_text(CONFIG.format(model=model.url, hook=hook.url("/rollback"))
                                                 + "  bogus: ${ROLLBACK_TOKEN}\n")
        outputs.append(run_cli("validate", "-c", config))
    for text in outputs:
        assert SECRET not in text
    # The echoed header was there and was masked (not merely absent): in the log and in `history`.
    assert "400 Bad Request: bad token ***" in caplog.text
    assert "400 Bad Request: bad token ***" in outputs[2]


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)
keys = st.sampled_from(["interval", "state", "listen", "rule_files", "sources", "actuators", "alerters", "targets",
                        "api", "max_rollbacks", "type", "url", "rollback", "alert", "version", "x"])


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(keys, yaml_values, max_size=6))
def test_any_config_document_is_a_config_error_or_a_config(tmp_path, document):
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(document))
    try:
        load(path, environ={})
    except ConfigError:
        pass


rule_keys = st.sampled_from(["name", "source", "query", "above", "below", "for", "min_samples", "on_no_data",
                             "action", "compare", "all", "any", "unless", "drift", "failure_limit", "error_limit"])


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.dictionaries(rule_keys, yaml_values, max_size=6), max_size=3))
def test_any_rule_file_is_a_config_error_or_rules(tmp_path, rules):
    (tmp_path / "watchdog.yaml").write_text(textwrap.dedent("""\
        rule_files: [rules.yaml]
        sources: {model: {type: scrape, url: "http://127.0.0.1:9/metrics"}}
        actuators: {hook: {type: webhook, url: "http://127.0.0.1:9/"}}
        targets: {t: {rollback: [hook]}}
        """))
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"target": "t", "rules": rules}))
    try:
        load(tmp_path / "watchdog.yaml", environ={})
    except ConfigError:
        pass


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=200))
def test_any_text_as_a_rule_file_is_a_config_error_or_rules(tmp_path, text):
    (tmp_path / "watchdog.yaml").write_text(
        "rule_files: [rules.yaml]\nsources: {model: {type: scrape, url: 'http://127.0.0.1:9/'}}\ntargets: {t: {}}\n")
    (tmp_path / "rules.yaml").write_text(text)
    try:
        load(tmp_path / "watchdog.yaml", environ={})
    except ConfigError:
        pass
