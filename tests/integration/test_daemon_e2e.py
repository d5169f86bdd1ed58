"""End to end: the real `model-watchdog run` process against a simulated model server.

The model server's /rollback endpoint is the rollback webhook's receiver; it records every
call and switches back to the previous version once per idempotency key, like a well-behaved
deployment hook. Alerts go to a local HTTP receiver.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.daemon_process import (  # noqa: F401 (alerts, daemons, model: fixtures)
    ERROR_RATE_RULE, alerts, daemons, model, rollback_calls, set_mode, wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def daemon_factory(daemons):
    return daemons


def test_healthy_model_no_action_then_sustained_breach_rolls_back_exactly_once(daemon_factory, model, alerts):
    daemon = daemon_factory().start()
    daemon.wait_evaluations(8)  # longer than `for: 4s` at 1 s intervals
    assert rollback_calls(model) == []
    assert all(s["state"] == "inactive" for s in daemon.rule_series("error-rate"))

    set_mode(model, "degraded")
    wait_until(lambda: rollback_calls(model), 30, what="the rollback webhook")
    daemon.wait_evaluations(8)  # the rule stays firing for a while: nothing may be sent twice
    calls = rollback_calls(model)
    assert len(calls) == 1 and calls[0]["effective"]
    body = calls[0]["body"]
    assert calls[0]["idempotency_key"] == body["decision_id"]
    assert body["target"] == "fraud-model" and body["rule"] == "error-rate" and body["action"] == "rollback"
    assert body["version"] == "v2" and body["threshold"] == {"above": 0.05} and body["value"] > 0.05
    assert body["fired_at"].endswith("Z") and "error-rate" in body["reason"]

    # The model server now runs v1: the hold lifts and the rule recovers.
    wait_until(lambda: not daemon.status()["targets"]["fraud-model"]["held"], 20, what="the hold to lift")
    wait_until(lambda: all(s["state"] == "inactive" for s in daemon.rule_series("error-rate")), 20, what="recovery")
    history = daemon.cli("history", "--target", "fraud-model", "--limit", "100")
    assert history.returncode == 0
    assert "rollback decided" in history.stdout and "rollback completed" in history.stdout
    assert "version v1 is running" in history.stdout
    firing = [r.json for r in alerts.requests if r.json and r.json["kind"] == "rule"]
    assert [a["status"] for a in firing] == ["firing", "resolved"]
    assert 'model_watchdog_actions_total{actuator="rollback-hook",outcome="succeeded",target="fraud-model"} 1.0' in daemon.metrics()
    code, took = daemon.terminate()
    assert code == 0 and took < 10


def test_a_spike_shorter_than_for_does_not_roll_back(daemon_factory, model):
    daemon = daemon_factory(ERROR_RATE_RULE.replace("for: 4s", "for: 8s")).start()
    time.sleep(5)
    set_mode(model, "degraded")
    wait_until(lambda: any(s["state"] == "pending" for s in daemon.rule_series("error-rate")), 15, what="pending")
    set_mode(model, "healthy")
    daemon.wait_evaluations(12)  # past the time the spike would have needed to fire
    assert rollback_calls(model) == []
    assert all(s["state"] == "inactive" for s in daemon.rule_series("error-rate"))


@pytest.mark.parametrize("mode", ["down", "garbage", "html"])
def test_a_broken_source_never_causes_a_rollback(daemon_factory, model, alerts, mode):
    daemon = daemon_factory().start()
    time.sleep(4)
    set_mode(model, mode)
    wait_until(lambda: any(r.json and r.json["kind"] == "no_data" for r in alerts.requests), 20, what="a no-data alert")
    daemon.wait_evaluations(8)  # longer than `for: 4s`: counted as a breach it would have fired
    assert rollback_calls(model) == []
    source = daemon.status()["sources"]["model"]
    assert source["up"] is False and source["last_error"]
    assert "model_watchdog_source_errors_total{" in daemon.metrics()
    assert daemon.proc.poll() is None
    set_mode(model, "healthy")
    wait_until(lambda: daemon.status()["sources"]["model"]["up"], 15, what="the source to come back")


def test_a_held_target_waits_for_resume(daemon_factory, model):
    # Without `version:` nothing tells the daemon the rollback took effect: the hold stays.
    daemon = daemon_factory(with_version=False).start()
    time.sleep(4)
    set_mode(model, "degraded")
    wait_until(lambda: rollback_calls(model), 30, what="the first rollback")
    wait_until(lambda: all(s["state"] == "inactive" for s in daemon.rule_series("error-rate")), 20, what="recovery")
    set_mode(model, "degraded")  # regresses again while held: alert only
    wait_until(lambda: any(s["state"] == "firing" for s in daemon.rule_series("error-rate")), 20, what="firing again")
    daemon.wait_evaluations(5)  # each of them saw the rule firing on a held target
    assert len(rollback_calls(model)) == 1
    assert daemon.status()["targets"]["fraud-model"]["held"]

    resumed = daemon.cli("resume", "fraud-model", "--reason", "fixed the feature store")
    assert resumed.returncode == 0 and "hold lifted" in resumed.stdout
    set_mode(model, "healthy")
    wait_until(lambda: all(s["state"] == "inactive" for s in daemon.rule_series("error-rate")), 20, what="recovery")
    set_mode(model, "degraded")
    wait_until(lambda: len(rollback_calls(model)) == 2, 30, what="the second rollback")
    history = daemon.cli("history", "--limit", "200").stdout
    assert "rollback not repeated" in history and "fixed the feature store" in history


def test_a_pending_timer_restarts_after_a_restart_longer_than_two_intervals(daemon_factory, model):
    rule = """\
- name: accuracy
  source: model
  query: model_accuracy
  below: 0.9
  for: 12s
  action: rollback
"""
    daemon = daemon_factory(rule).start()
    time.sleep(3)
    set_mode(model, "degraded")
    series = wait_until(lambda: [s for s in daemon.rule_series("accuracy") if s["state"] == "pending"], 15, what="pending")
    pending_since = series[0]["pending_since"]
    time.sleep(4)
    code, _ = daemon.terminate()
    assert code == 0
    # Stopped 3 s: the first tick after the restart stands for the grid slot in progress, so
    # after 2 s and a start-up under half a second it stood for the slot two intervals after
    # the last one — exactly 2 × the interval, not a gap — and the test depended on start-up
    # taking longer than that.
    time.sleep(3)
    stopped_for = time.time()
    daemon.start()
    wait_until(lambda: rollback_calls(model), 30, what="the rollback after restart")
    (decision,) = daemon.status()["targets"]["fraud-model"]["decisions"]
    from datetime import datetime
    def ts(s: str) -> float:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    # The daemon did not observe the breach while it was stopped (far longer than 2 × the 1 s
    # interval): the 12 s `for` counts again from the first evaluation after the restart.
    assert ts(decision["created_at"]) - stopped_for >= 12 - 1
    assert ts(decision["created_at"]) - ts(pending_since) > 12 + 2
    history = daemon.cli("history", "--target", "fraud-model", "--limit", "200").stdout
    assert "the breach must be observed again" in history
    assert len(rollback_calls(model)) == 1


def test_validate_reports_broken_files_by_line(tmp_path, daemon_factory):
    daemon = daemon_factory()
    (tmp_path / "rules.yaml").write_text(
        "target: fraud-model\nrules:\n  - name: x\n    source: model\n    query: rate(foo)\n    abov: 1\n")
    result = daemon.cli("validate")
    assert result.returncode == 1
    rules = str(tmp_path / "rules.yaml")
    assert f"{rules}:6:5: rule file.rules[0]: unknown key 'abov' (did you mean 'above'?)" in result.stderr
    assert f"{rules}:5:" in result.stderr and "range vector" in result.stderr
    good = daemon_factory()
    assert good.cli("validate").returncode == 0


def test_a_manual_rollback_is_carried_out_by_the_running_daemon(daemon_factory, model):
    daemon = daemon_factory().start()
    time.sleep(2)
    result = daemon.cli("rollback", "fraud-model", "--to", "v1", "--reason", "customer reports", "--wait", "30")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded" in result.stdout
    (call,) = rollback_calls(model)
    assert call["body"]["previous_version"] in (None, "v1") and call["effective"]
    assert "manual rollback by" in call["body"]["reason"]
