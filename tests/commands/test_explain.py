"""`explain`: one rule taken apart, on the engine's own verdicts, writing nothing."""

from __future__ import annotations

import pytest

from watchdog.commands.explain import ExplainError, explain_rule, find_rule, format_text
from watchdog.testing import series

from tests.harness import Harness

ERROR_RULE = """\
- name: error-rate
  source: model
  query: error_ratio
  above: 0.05
  for: 30s
  min_samples: {query: request_count, at_least: 100}
  action: rollback
"""

BY_CODE = """\
- name: by-code
  source: model
  query: errors_by_code
  above: 10
  min_samples: {query: requests_by_code, at_least: 100}
"""


def explain(h: Harness, rule: str) -> dict:  # type: ignore[type-arg]
    lr = find_rule(h.loaded, "fraud-model", rule)
    return explain_rule(h.loaded, lr, {"model": h.source}, h.store, h.clock.now())


def test_each_step_of_a_pending_breach(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.01)
    h.source.set("request_count", 500)
    h.run_for(30)
    h.source.set("error_ratio", 0.2)
    h.run_for(10)  # one breaching tick: pending, 20 s of `for` left after the next tick
    states, history = h.store.load_rule_states(), h.store.history(limit=1000)

    report = explain(h, "error-rate")

    assert [(q["source"], q["query"]) for q in report["queries"]] == [("model", "error_ratio"), ("model", "request_count")]
    assert report["queries"][0]["series"] == [{"labels": {}, "value": 0.2}]
    [step] = report["series"]
    assert step["samples"] == {"count": 500.0, "match": "count series with the same labels", "enough": True,
                               "at_least": 100}
    assert step["comparison"] == {"value": 0.2, "threshold": "> 0.05", "baseline": None, "breach": True}
    assert step["state"]["stored"] and step["state"]["previous"] == "pending" and step["state"]["next"] == "pending"
    assert step["state"]["for_remaining"] == 20.0
    # Nothing was written: not the rule state, not the history, and no actuator ran.
    assert h.store.load_rule_states() == states and len(h.store.history(limit=1000)) == len(history)
    assert h.rollbacks() == 0

    text = "\n".join(format_text(report))
    assert "1. queries sent: 2" in text and "source model: error_ratio" in text
    assert "{}: 500 (count series with the same labels) vs at least 100: enough" in text
    assert "{}: 0.2 > 0.05? yes: breach" in text
    assert "{}: pending → pending; fires in 20s if the breach holds" in text


def test_a_breach_that_would_fire_says_so(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.2)
    h.source.set("request_count", 500)
    h.run_for(30)  # pending since 0 s; the clock is now at 30 s
    [step] = explain(h, "error-rate")["series"]
    assert (step["state"]["previous"], step["state"]["next"], step["state"]["events"]) == ("pending", "firing", ["fired"])
    assert "would roll back" in "\n".join(format_text(explain(h, "error-rate")))
    assert h.rollbacks() == 0


def test_how_sample_counts_are_matched_to_series(tmp_path):
    h = Harness(tmp_path, BY_CODE)
    h.source.set("errors_by_code", [series(50, code="500"), series(1, code="503"), series(20, code="404")])
    h.source.set("requests_by_code", [series(500, code="500"), series(5, code="503")])
    steps = {s["labels"]["code"]: s for s in explain(h, "by-code")["series"]}
    assert steps["500"]["samples"]["match"] == "count series with the same labels"
    assert steps["500"]["outcome"] == "breach"
    assert steps["503"]["samples"]["enough"] is False and steps["503"]["outcome"] == "insufficient"
    assert steps["503"]["comparison"] is None
    assert steps["404"]["samples"]["match"] == "no count series with these labels"
    h.source.set("requests_by_code", 1000)  # one unlabelled count applies to every series
    steps = {s["labels"]["code"]: s for s in explain(h, "by-code")["series"]}
    assert {s["samples"]["match"] for s in steps.values()} == {"the one unlabelled count applies to every series"}


def test_no_data_and_a_held_target(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.2)
    h.source.set("request_count", 500)
    h.run_for(60)
    assert h.rollbacks() == 1
    h.source.set("error_ratio", None)
    report = explain(h, "error-rate")
    [step] = report["series"]
    assert step["outcome"] == "no_data" and step["comparison"] is None
    assert report["held"]["decision_id"] == h.store.holds()["fraud-model"].decision_id
    assert "is held since" in "\n".join(format_text(report))


def test_unknown_targets_and_rules_are_named(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    with pytest.raises(ExplainError, match="unknown target 'fraud-mode' \\(did you mean 'fraud-model'\\?\\)"):
        find_rule(h.loaded, "fraud-mode", "error-rate")
    with pytest.raises(ExplainError, match="has no rule 'error_rate' \\(did you mean 'error-rate'\\?\\)"):
        find_rule(h.loaded, "fraud-model", "error_rate")


def test_without_a_state_file_the_running_version_is_read_live(tmp_path):
    """Version-bound queries need {{version}}: `check` saw the breach, `explain` saw nothing."""
    rule = """\
- name: version-errors
  source: model
  query: 'errors{version="{{version}}"}'
  above: 0.05
  action: rollback
"""
    h = Harness(tmp_path, rule)
    h.source.set('errors{version="v2"}', 0.2)
    lr = find_rule(h.loaded, "fraud-model", "version-errors")
    report = explain_rule(h.loaded, lr, {"model": h.source}, None, h.clock.now())
    assert [q["query"] for q in report["queries"] if q["query"] != "model_info"] == ['errors{version="v2"}']
    assert report["series"][0]["comparison"]["breach"] is True
