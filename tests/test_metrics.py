"""The daemon's incident metrics: time to detect / act / recover, decisions by outcome, and
rollback drills — on the production engine with a fake clock (10 s ticks)."""

from __future__ import annotations

from watchdog.clock import FakeClock
from watchdog.rollback.drill import DrillMetrics, run_drill
from watchdog.metrics import DaemonMetrics
from watchdog.state.base import HistoryEvent

from tests.harness import Harness
from tests.fixtures.rules import ERROR_RULE

TARGET = {"target": "fraud-model"}


def sample(h: Harness, name: str, labels: dict[str, str] = TARGET) -> float | None:
    return h.metrics.registry.get_sample_value(name, labels)


def test_a_rollback_observes_time_to_detect_act_and_recover(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.01)
    h.run_for(30)
    breach_start = h.clock.now()
    h.source.set("error_ratio", 0.20)
    h.run_for(40)  # pending at the first breach, fired and rolled back 30 s later (`for: 30s`)
    assert h.rollbacks() == 1
    assert sample(h, "model_watchdog_time_to_detect_seconds_count") == 1
    assert sample(h, "model_watchdog_time_to_detect_seconds_sum") == 30
    # The fake actuators finish at once, in the tick that decided.
    assert sample(h, "model_watchdog_time_to_act_seconds_count") == 1
    assert sample(h, "model_watchdog_time_to_act_seconds_sum") == 0
    assert sample(h, "model_watchdog_decisions_total", {**TARGET, "outcome": "succeeded"}) == 1
    assert sample(h, "model_watchdog_time_to_recover_seconds_count") in (None, 0)

    h.version = "v1"  # the rollback took effect, and the errors are gone
    h.source.set("error_ratio", 0.01)
    h.run_for(60)
    restored = [e for e in h.store.history("fraud-model", limit=200) if "restored health" in e.message]
    assert len(restored) == 1
    assert sample(h, "model_watchdog_time_to_recover_seconds_count") == 1
    assert sample(h, "model_watchdog_time_to_recover_seconds_sum") == restored[0].at - breach_start
    # Buckets: the 30 s detection is in le=30, not in le=15.
    assert sample(h, "model_watchdog_time_to_detect_seconds_bucket", {**TARGET, "le": "30.0"}) == 1
    assert sample(h, "model_watchdog_time_to_detect_seconds_bucket", {**TARGET, "le": "15.0"}) == 0


def test_a_failed_rollback_counts_as_a_failed_decision_and_not_as_acted(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.actuators["first"].failures = 5
    h.source.set("error_ratio", 0.20)
    h.run_for(60)
    assert sample(h, "model_watchdog_decisions_total", {**TARGET, "outcome": "failed"}) == 1
    assert sample(h, "model_watchdog_decisions_total", {**TARGET, "outcome": "succeeded"}) is None
    assert sample(h, "model_watchdog_time_to_act_seconds_count") in (None, 0)
    assert sample(h, "model_watchdog_time_to_detect_seconds_count") == 1


def test_a_shadow_rule_counts_a_shadow_decision(tmp_path):
    h = Harness(tmp_path, ERROR_RULE + "  mode: shadow\n")
    h.source.set("error_ratio", 0.20)
    h.run_for(60)
    assert h.rollbacks() == 0
    assert sample(h, "model_watchdog_decisions_total", {**TARGET, "outcome": "shadow"}) == 1


def test_a_blocked_episode_counts_once_and_the_deferred_rollback_then_succeeds(tmp_path):
    from watchdog.rollback import manual

    h = Harness(tmp_path, ERROR_RULE)
    manual.pause(h.loaded, h.store, "fraud-model", "alice", "migration", h.clock.now())
    breach_start = h.clock.now()
    h.source.set("error_ratio", 0.20)
    h.run_for(300)  # the guard is asked every tick: one blocked episode, counted once
    assert h.rollbacks() == 0
    assert sample(h, "model_watchdog_decisions_total", {**TARGET, "outcome": "blocked"}) == 1
    manual.resume(h.loaded, h.store, "fraud-model", "alice", "done", h.clock.now())
    decided = h.clock.now()
    h.tick()
    assert h.rollbacks() == 1
    assert sample(h, "model_watchdog_decisions_total", {**TARGET, "outcome": "succeeded"}) == 1
    # issue 15: detect = fired − breach started (`for: 30s`), act = last step done − fired:
    # the time the guard held the decision back is acting time, not detection time
    assert sample(h, "model_watchdog_time_to_detect_seconds_sum") == 30
    assert sample(h, "model_watchdog_time_to_act_seconds_sum") == decided - (breach_start + 30)


def test_an_expired_approval_counts_as_a_skipped_decision(tmp_path):
    from tests.harness import DEFAULT_TARGET

    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    approve: required\n    approve_timeout: 5m\n")
    h.source.set("error_ratio", 0.20)
    h.run_for(60)
    assert sample(h, "model_watchdog_time_to_detect_seconds_count") == 1  # decided, awaiting approval
    assert sample(h, "model_watchdog_decisions_total", {**TARGET, "outcome": "skipped"}) is None
    h.run_for(300)
    assert sample(h, "model_watchdog_decisions_total", {**TARGET, "outcome": "skipped"}) == 1
    assert h.rollbacks() == 0
    assert len(h.store.decisions(target="fraud-model")) == 2  # still firing: asked again at once...
    assert sample(h, "model_watchdog_time_to_detect_seconds_count") == 1  # ...but the breach was detected once


def test_drills_recorded_in_the_history_are_exported_newest_last(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    metrics = DaemonMetrics()
    drills = DrillMetrics(h.store, metrics)
    drills.refresh()
    assert metrics.registry.get_sample_value("model_watchdog_drill_ready", TARGET) is None

    clock = FakeClock()
    first = run_drill(h.loaded, h.store, "fraud-model", clock.now(), "alice")  # fake actuators: reachable
    assert first.ready
    drills.refresh()
    assert metrics.registry.get_sample_value("model_watchdog_drill_ready", TARGET) == 1
    assert metrics.registry.get_sample_value("model_watchdog_drill_last_success_timestamp_seconds", TARGET) == clock.now()

    # A later failed drill (recorded by another process): ready drops, the last success stays.
    h.store.append(HistoryEvent(None, clock.now() + 60, "fraud-model", None, {}, "drill", "rollback drill by bob: NOT ready",
                                {"drill": {"ready": False}}))
    drills.refresh()
    assert metrics.registry.get_sample_value("model_watchdog_drill_ready", TARGET) == 0
    assert metrics.registry.get_sample_value("model_watchdog_drill_last_success_timestamp_seconds", TARGET) == clock.now()
    drills.refresh()  # nothing new: nothing changes
    assert metrics.registry.get_sample_value("model_watchdog_drill_ready", TARGET) == 0


def test_rule_values_are_exported_next_to_their_thresholds(tmp_path):
    h = Harness(tmp_path, ERROR_RULE + """\
- name: throughput
  source: model
  query: requests_per_second
  below: 10
""")
    h.source.set("error_ratio", 0.02)
    h.source.set("requests_per_second", 50)
    h.run_for(10)
    rule = {**TARGET, "rule": "error-rate"}
    assert sample(h, "model_watchdog_rule_value", {**rule, "series": "{}"}) == 0.02
    assert sample(h, "model_watchdog_rule_threshold", {**rule, "bound": "above"}) == 0.05
    assert sample(h, "model_watchdog_rule_threshold", {**rule, "bound": "below"}) is None
    assert sample(h, "model_watchdog_rule_threshold", {**TARGET, "rule": "throughput", "bound": "below"}) == 10


DAEMON_CONFIG = """\
interval: 10s
state: state.db
listen: 127.0.0.1:0
sources:
  model: {type: scrape, url: "http://127.0.0.1:9/metrics"}
actuators:
  hook: {type: webhook, url: "http://127.0.0.1:9/rollback"}
targets:
  fraud-model: {rollback: [hook]}
  churn-model: {rollback: [hook]}
"""


def test_held_targets_are_exported_from_the_store_after_a_restart_and_a_resume_elsewhere(tmp_path):
    from watchdog.config.loader import load
    from watchdog.daemon import Daemon
    from watchdog.state.base import Hold
    from watchdog.state.sqlite import SQLiteStateStore

    (tmp_path / "watchdog.yaml").write_text(DAEMON_CONFIG)
    with SQLiteStateStore(str(tmp_path / "state.db")) as store:  # an earlier run held fraud-model
        store.put_hold(Hold("fraud-model", 1000.0, "dec-1", "v2", "rollback dec-1 (error-rate)"))
    daemon = Daemon(load(tmp_path / "watchdog.yaml"), clock=FakeClock())
    try:
        daemon.run_once()
        held = daemon.metrics.registry.get_sample_value
        assert held("model_watchdog_target_held", {"target": "fraud-model"}) == 1
        assert held("model_watchdog_target_held", {"target": "churn-model"}) == 0
        daemon.store.delete_hold("fraud-model")  # `model-watchdog resume` from the CLI, or another replica
        daemon.run_once()
        assert held("model_watchdog_target_held", {"target": "fraud-model"}) == 0
    finally:
        daemon.close()


RELOAD_CONFIG = DAEMON_CONFIG.replace("targets:", "rule_files: [rules.yaml]\ntargets:")
RELOAD_RULES = """\
targets: [fraud-model, churn-model]
rules:
  - {name: accuracy, source: model, query: model_accuracy, below: 0.9, action: alert}
  - {name: latency, source: model, query: latency_p99, above: 0.5, action: alert}
"""


def test_a_reload_drops_the_rule_metrics_of_removed_targets_and_rules(tmp_path):
    from watchdog.daemon import Daemon
    from watchdog.config.loader import load

    (tmp_path / "watchdog.yaml").write_text(RELOAD_CONFIG)
    (tmp_path / "rules.yaml").write_text(RELOAD_RULES)
    daemon = Daemon(load(tmp_path / "watchdog.yaml"), clock=FakeClock())
    try:
        daemon.run_once()
        value = daemon.metrics.registry.get_sample_value
        churn_latency = {"target": "churn-model", "rule": "latency", "bound": "above"}
        assert value("model_watchdog_rule_threshold", churn_latency) == 0.5
        (tmp_path / "watchdog.yaml").write_text(RELOAD_CONFIG.replace("  churn-model: {rollback: [hook]}\n", ""))
        (tmp_path / "rules.yaml").write_text(RELOAD_RULES.replace(", churn-model", "").split("  - {name: latency")[0])
        assert daemon.reload()[0] is True
        daemon.run_once()

        labelled = {s.labels.get("target") + "/" + s.labels.get("rule") for m in daemon.metrics.registry.collect()
                    if m.name.startswith("model_watchdog_rule_") for s in m.samples}
        assert labelled == {"fraud-model/accuracy"}
    finally:
        daemon.close()
