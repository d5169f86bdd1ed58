"""The rule language beyond a single threshold: baselines, composites, templating, counting."""

from __future__ import annotations

import textwrap

import pytest

from watchdog.config.loader import load
from watchdog.errors import ConfigError
from watchdog.testing import series

from tests.harness import DEFAULT_TARGET, Harness


def test_compare_with_the_previous_version_records_both_values(tmp_path):
    rule = """\
- name: error-rate-vs-previous
  source: model
  query: error_ratio{version="{{version}}"}
  compare: {baseline: previous_version, max_increase: 50%}
  action: rollback
"""
    h = Harness(tmp_path, rule)
    h.source.set('error_ratio{version="v1"}', [series(0.02, version="v1")])
    h.source.set('error_ratio{version="v2"}', [series(0.025, version="v2")])
    h.version = "v1"
    h.run_for(10)
    h.version = "v2"
    h.run_for(30)
    assert h.rollbacks() == 0  # 0.025 ≤ 0.02 × 1.5
    h.source.set('error_ratio{version="v2"}', [series(0.05, version="v2")])
    h.run_for(10)
    assert h.rollbacks() == 1
    event = next(e for e in h.store.history(kinds=["state"], limit=20) if e.data.get("event") == "fired")
    assert "0.05 vs baseline 0.02 (previous_version); limit ≤ 0.03" in event.message


def test_compare_without_a_previous_version_is_not_judged(tmp_path):
    rule = """\
- name: vs-previous
  source: model
  query: error_ratio
  compare: {baseline: previous_version, max_increase: 0.01}
  action: rollback
"""
    h = Harness(tmp_path, rule)
    h.source.set("error_ratio", 0.5)
    h.run_for(60)
    assert h.rollbacks() == 0 and h.alerts() == []
    assert "no previous version known" in next(iter(h.engine.states.values())).reason


def test_compare_with_the_same_time_yesterday(tmp_path):
    rule = """\
- name: approval-rate-drop
  source: model
  query: approval_rate
  compare: {baseline: 1d, max_decrease: 0.05}
  action: alert
"""
    h = Harness(tmp_path, rule)
    start = h.clock.now()
    h.source.set("approval_rate", lambda at: 0.70 if at < start - 3600 else 0.60)  # yesterday 0.70, today 0.60
    h.run_for(10)
    (alert,) = h.alerts(kind="rule")
    assert alert.value == 0.60 and "vs baseline 0.7 (1d)" in alert.summary


def test_all_conditions_must_hold_and_unless_suppresses(tmp_path):
    rule = """\
- name: errors-under-real-traffic
  source: model
  all:
    - {query: error_ratio, above: 0.05}
    - {query: traffic, above: 10}
  unless:
    - {query: load_test_running, above: 0}
  for: 20s
  action: rollback
"""
    h = Harness(tmp_path, rule)
    h.source.set("error_ratio", 0.2)
    h.source.set("traffic", 5)
    h.source.set("load_test_running", 0)
    h.run_for(60)
    assert h.rollbacks() == 0  # errors, but hardly any traffic
    h.source.set("traffic", 50)
    h.source.set("load_test_running", 1)
    h.run_for(60)
    assert h.rollbacks() == 0  # a known load test
    assert "suppressed: unless [load_test_running] holds" in next(iter(h.engine.states.values())).reason
    h.source.set("load_test_running", None)  # the flag's absence does not suppress
    h.run_for(40)
    assert h.rollbacks() == 1


def test_any_condition_fires(tmp_path):
    rule = """\
- name: any-symptom
  source: model
  any:
    - {query: error_ratio, above: 0.05}
    - {query: p99, above: 0.5}
  action: alert
"""
    h = Harness(tmp_path, rule)
    h.source.set("error_ratio", 0.01)
    h.source.set("p99", 0.9)
    h.run_for(10)
    (alert,) = h.alerts(kind="rule")
    assert "any of:" in alert.summary and "[p99]" in alert.summary


def test_one_rule_file_serves_many_targets(tmp_path):
    rules = "  - name: errors\n    source: model\n    query: error_ratio{model=\"{{model_name}}\"}\n    above: 0.05\n    action: alert\n"
    (tmp_path / "watchdog.yaml").write_text(textwrap.dedent("""\
        rule_files: [rules.yaml]
        sources: {model: {type: scrape, url: "http://127.0.0.1:9/metrics"}}
        alerters: {ops: {type: log}}
        targets:
          fraud: {alert: [ops], variables: {model_name: fraud-v}}
          churn: {alert: [ops], variables: {model_name: churn-v}}
        """))
    (tmp_path / "rules.yaml").write_text("targets: [fraud, churn]\nrules:\n" + rules)
    loaded = load(tmp_path / "watchdog.yaml")
    assert [(lr.target, lr.rule.name) for lr in loaded.rules] == [("fraud", "errors"), ("churn", "errors")]
    (tmp_path / "rules.yaml").write_text("targets: [fraud, churn]\nrules:\n" + rules.replace("model_name", "modelname"))
    with pytest.raises(ConfigError, match=r"unknown placeholder \{\{modelname\}\}"):
        load(tmp_path / "watchdog.yaml")


def test_failure_limit_tolerates_isolated_bad_evaluations(tmp_path):
    rule = """\
- name: flaky-errors
  source: model
  query: error_ratio
  above: 0.05
  for: 1m
  failure_limit: 2
  action: rollback
"""
    h = Harness(tmp_path, rule)
    values = iter([0.2, 0.01, 0.01, 0.2, 0.01, 0.01, 0.01, 0.2, 0.01, 0.01, 0.2, 0.01, 0.2, 0.2])
    h.source.set("error_ratio", lambda now: next(values))
    h.run_for(110)
    assert h.rollbacks() == 0  # never more than two breaches within a minute
    h.run_for(30)
    assert h.rollbacks() == 1  # three within a minute


def test_shadow_target_never_acts(tmp_path):
    h = Harness(tmp_path, "- {name: r, source: model, query: error_ratio, above: 0.05, action: rollback}\n",
                target=DEFAULT_TARGET + "    mode: shadow\n")
    h.source.set("error_ratio", 0.2)
    h.run_for(30)
    assert h.rollbacks() == 0 and "would roll back" in h.store.history(kinds=["decision"], limit=1)[0].message


def test_impossible_and_incomplete_rules_are_rejected(tmp_path):
    (tmp_path / "watchdog.yaml").write_text(
        "rule_files: [rules.yaml]\nsources: {model: {type: scrape, url: 'http://127.0.0.1:9/metrics'}}\ntargets: {t: {}}\n")
    (tmp_path / "rules.yaml").write_text(textwrap.dedent("""\
        target: t
        rules:
          - {name: a, source: model, query: x, compare: {baseline: last week, max_increase: 10%}}
          - {name: b, source: model, query: x, compare: {baseline: 1d}}
          - {name: c, source: model, all: [{query: x}]}
          - {name: d, source: model, query: x, above: 1, failure_limit: 2}
        """))
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "watchdog.yaml")
    text = str(info.value)
    assert "compare.baseline must be 'previous_version', a time offset like 1d or an RFC 3339 time" in text
    assert "compare needs max_increase, max_decrease or both" in text
    assert 'rule "c": all[0]: needs a threshold' in text
    assert "failure_limit needs a positive 'for'" in text


def test_rule_labels_and_runbook_travel_with_the_alert(tmp_path):
    rule = """\
- name: accuracy
  source: model
  query: model_accuracy
  below: 0.9
  severity: page
  labels: {team: fraud-ml}
  runbook_url: https://runbooks.example/accuracy
  alert: [ops]
"""
    h = Harness(tmp_path, rule, target="    rollback: [first]\n")  # the target itself alerts nobody
    h.source.set("model_accuracy", 0.8)
    h.run_for(10)
    (alert,) = h.alerts(kind="rule")
    assert alert.labels == {"team": "fraud-ml"} and alert.severity == "page"
    assert alert.runbook_url == "https://runbooks.example/accuracy"


def test_the_previous_version_is_compared_as_it_was_when_it_last_ran(tmp_path):
    # A full replacement: v1's series are gone once v2 serves, so the baseline is v1's value
    # at the time v1 was last seen.
    rule = """\
- name: latency-vs-previous
  source: model
  query: mean_latency{version="{{version}}"}
  compare: {baseline: previous_version, max_increase: 20%}
  action: alert
"""
    h = Harness(tmp_path, rule)
    h.version = "v1"
    h.run_for(10)
    switched = h.clock.now()
    h.source.set('mean_latency{version="v1"}', lambda at: [series(0.100, version="v1")] if at < switched else None)
    h.source.set('mean_latency{version="v2"}', [series(0.150, version="v2")])
    h.version = "v2"
    h.run_for(10)
    (alert,) = h.alerts(kind="rule")
    assert "vs baseline 0.1 (previous_version)" in alert.summary


def test_a_sequential_test_on_a_windowed_query_is_rejected(tmp_path):
    (tmp_path / "watchdog.yaml").write_text(
        "rule_files: [rules.yaml]\nsources: {model: {type: scrape, url: 'http://127.0.0.1:9/metrics'}}\ntargets: {t: {}}\n")
    (tmp_path / "rules.yaml").write_text(textwrap.dedent("""\
        target: t
        rules:
          - name: seq
            source: model
            compare:
              baseline: previous_version
              test: sequential
              errors: sum(increase(errors_total[10m]))
              total: sum(requests_total)
              min_effect: 50%
        """))
    with pytest.raises(ConfigError, match="compare.errors for the sequential test must be a cumulative counter"):
        load(tmp_path / "watchdog.yaml")


def test_min_samples_applies_to_composites(tmp_path):
    rule = """\
- name: errors-and-latency
  source: model
  all:
    - {query: error_ratio, above: 0.05}
    - {query: p99, above: 0.5}
  min_samples: {query: request_count, at_least: 200}
  for: 20s
  action: rollback
"""
    h = Harness(tmp_path, rule)
    h.source.set("error_ratio", 0.5)
    h.source.set("p99", 0.9)
    h.source.set("request_count", 20)  # both breach, but on 20 requests: proves nothing
    h.run_for(60)
    assert h.rollbacks() == 0
    state = next(iter(h.engine.states.values()))
    assert state.outcome == "insufficient" and "insufficient samples: 20 < 200" in state.reason
    h.source.set("request_count", 1000)
    h.run_for(40)
    assert h.rollbacks() == 1


def test_a_fixed_time_baseline_runs(tmp_path):
    """`compare.baseline: "2026-11-20T12:00:00Z"` passed `validate` but made `run` exit 1."""
    rule = """\
- name: approval-rate-vs-launch
  source: model
  query: approval_rate
  compare: {baseline: "2026-11-20T12:00:00Z", max_decrease: "10%"}
  action: alert
"""
    h = Harness(tmp_path, rule)
    fixed = 1_795_176_000.0  # 2026-11-20T12:00:00Z
    h.clock.set(fixed + 86_400)
    h.source.set("approval_rate", lambda at: 0.70 if at <= fixed else 0.60)
    h.run_for(10)
    (alert,) = h.alerts(kind="rule")
    assert alert.value == 0.60 and "vs baseline 0.7 (2026-11-20T12:00:00Z)" in alert.summary
