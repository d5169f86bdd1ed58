"""Statistical and drift rules end to end through the engine (fake source, fake clock)."""

from __future__ import annotations

import json
import re

import pytest

from watchdog.testing import series

from tests.harness import Harness

PROPORTION = """\
- name: errors-vs-previous
  source: model
  compare:
    baseline: previous_version
    test: proportion
    errors: errors{version="{{version}}"}
    total: total{version="{{version}}"}
    confidence: 0.99
    min_effect: 20%
  action: rollback
"""


def deploy_v2_after_v1(h: Harness) -> None:
    h.version = "v1"
    h.run_for(10)
    h.version = "v2"


def test_a_significantly_worse_error_rate_rolls_back_with_the_numbers_recorded(tmp_path):
    h = Harness(tmp_path, PROPORTION)
    h.source.set('errors{version="v1"}', 100)
    h.source.set('total{version="v1"}', 10_000)  # 1 %
    h.source.set('errors{version="v2"}', 25)
    h.source.set('total{version="v2"}', 2_000)  # 1.25 %: not significant at 99 %
    deploy_v2_after_v1(h)
    h.run_for(30)
    assert h.rollbacks() == 0
    h.source.set('errors{version="v2"}', 80)  # 4 %
    h.run_for(10)
    assert h.rollbacks() == 1
    fired = next(e for e in h.store.history(kinds=["state"], limit=20) if e.data.get("event") == "fired")
    assert fired.data["value"] == 0.04 and fired.data["baseline"] == 0.01
    assert fired.data["test"]["name"].startswith("proportion") and fired.data["test"]["p_value"] < 0.01


def test_too_little_traffic_is_inconclusive_and_alerts_after_max_inconclusive(tmp_path):
    rule = PROPORTION.replace("  action: rollback", "  max_inconclusive: 1m\n  action: rollback")
    h = Harness(tmp_path, rule)
    h.source.set('errors{version="v1"}', 100)
    h.source.set('total{version="v1"}', 10_000)
    h.source.set('errors{version="v2"}', 3)
    h.source.set('total{version="v2"}', 10)  # 30 %, but ten requests prove nothing
    deploy_v2_after_v1(h)
    h.run_for(50)
    assert h.rollbacks() == 0 and h.alerts(kind="inconclusive") == []
    h.run_for(30)
    (alert,) = h.alerts(kind="inconclusive")
    assert "has not been able to judge" in alert.summary


SEQUENTIAL = """\
- name: errors-sequential
  source: model
  compare:
    baseline: previous_version
    test: sequential
    errors: errors_total{version="{{version}}"}
    total: requests_total{version="{{version}}"}
    min_effect: 100%
    min_total: 100
  action: rollback
"""


def test_the_sequential_test_accumulates_evidence_across_evaluations(tmp_path):
    h = Harness(tmp_path, SEQUENTIAL)
    h.source.set('errors_total{version="v1"}', 200)
    h.source.set('requests_total{version="v1"}', 20_000)  # baseline 1 %
    served = {"errors": 0.0, "total": 0.0}

    h.source.set('errors_total{version="v2"}', lambda now: served["errors"])
    h.source.set('requests_total{version="v2"}', lambda now: served["total"])
    deploy_v2_after_v1(h)
    for _ in range(40):  # 50 requests per tick at 4 % errors: evidence piles up tick by tick
        served["total"] += 50
        served["errors"] += 2
        h.tick()
        if h.rollbacks():
            break
    assert h.rollbacks() == 1
    state = next(s for k, s in h.engine.states.items() if k[1] == "errors-sequential")
    memory = json.loads(state.memory)
    assert memory["version"] == "v2" and memory["last"][1] == served["total"]
    assert served["total"] < 2000  # decided long before a fixed sample of this size


def test_prediction_drift_by_psi_on_a_histogram(tmp_path):
    rule = """\
- name: score-drift
  source: model
  drift:
    reference: previous_version
    histogram: score_bucket{version="{{version}}"}
    psi_above: 0.2
    ks_above: 0.1
  action: alert
"""
    h = Harness(tmp_path, rule)

    def histogram(version: str, counts: list[int]):  # type: ignore[no-untyped-def]
        edges = ["0.25", "0.5", "0.75", "+Inf"]
        total, out = 0, []
        for le, n in zip(edges, counts):
            total += n
            out.append(series(total, le=le, version=version))
        return out

    h.source.set('score_bucket{version="v1"}', histogram("v1", [250, 250, 250, 250]))
    h.source.set('score_bucket{version="v2"}', histogram("v2", [240, 260, 255, 245]))
    deploy_v2_after_v1(h)
    h.run_for(20)
    assert h.alerts(kind="rule") == []
    h.source.set('score_bucket{version="v2"}', histogram("v2", [50, 100, 250, 600]))  # scores shifted high
    h.run_for(10)
    (alert,) = h.alerts(kind="rule")
    # PSI of the shifted scores: the (50, 100, 250, 600) vs (250, 250, 250, 250) terms add up to ≈ 0.766.
    psi = re.search(r"score-drift: PSI (\d+\.\d{4}) \(noise level ≈ [\d.]+\);.*; > threshold 0\.2;", alert.summary)
    assert psi, alert.summary
    assert float(psi[1]) == pytest.approx(0.7657, abs=1e-4)


def test_class_count_drift(tmp_path):
    rule = """\
- name: label-mix
  source: model
  drift: {reference: 1h, classes: predictions_total, psi_above: 0.2}
  action: alert
"""
    h = Harness(tmp_path, rule)
    start = h.clock.now()
    h.source.set("predictions_total", lambda at: [series(500, label="fraud"), series(500, label="ok")] if at < start
                 else [series(900, label="fraud"), series(100, label="ok")])
    h.run_for(10)
    assert len(h.alerts(kind="rule")) == 1


def test_latency_samples_rank_test_against_the_previous_version(tmp_path):
    rule = """\
- name: latency-rank
  source: model
  compare:
    baseline: previous_version
    test: mann_whitney
    samples: latency_samples{version="{{version}}"}
    confidence: 0.99
    min_total: 20
  action: alert
"""
    h = Harness(tmp_path, rule)
    before = [series(0.05 + 0.001 * i, version="v1", i=str(i)) for i in range(40)]
    similar = [series(0.051 + 0.001 * i, version="v2", i=str(i)) for i in range(40)]
    slower = [series(0.09 + 0.001 * i, version="v2", i=str(i)) for i in range(40)]
    h.source.set('latency_samples{version="v1"}', before)
    h.source.set('latency_samples{version="v2"}', similar)
    deploy_v2_after_v1(h)
    h.run_for(20)
    assert h.alerts(kind="rule") == []
    h.source.set('latency_samples{version="v2"}', slower)
    h.run_for(10)
    (alert,) = h.alerts(kind="rule")
    assert "Cliff's delta +1.000" in alert.summary and "p=" in alert.summary


def test_drift_against_a_fixed_reference_window(tmp_path):
    rule = """\
- name: label-mix-vs-launch
  source: model
  drift: {reference: "2023-11-14T00:00:00Z", classes: predictions_total, psi_above: 0.2}
  action: alert
"""
    h = Harness(tmp_path, rule)
    launch = 1_699_920_000.0  # 2023-11-14T00:00:00Z
    h.source.set("predictions_total", lambda at: [series(500, label="fraud"), series(500, label="ok")] if at == launch
                 else [series(880, label="fraud"), series(120, label="ok")])
    h.run_for(10)
    assert len(h.alerts(kind="rule")) == 1
