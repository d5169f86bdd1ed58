"""Guards defer a rollback, they never swallow it: the production engine on a fake clock."""

from __future__ import annotations

from watchdog.rollback import manual

from tests.harness import DEFAULT_TARGET, Harness
from tests.fixtures.rules import ERROR_RULE

def held(h: Harness) -> float:
    value = h.metrics.registry.get_sample_value("model_watchdog_target_held", {"target": "fraud-model"})
    return -1.0 if value is None else value


def decided_at(h: Harness) -> list[float]:
    return [d.created_at for d in reversed(h.store.decisions(target="fraud-model")) if d.status != "skipped"]


def test_resume_while_the_rule_still_fires_rolls_back_on_the_next_tick(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    manual.pause(h.loaded, h.store, "fraud-model", "alice", "migration", h.clock.now())
    h.source.set("error_ratio", 0.2)
    h.run_for(300)
    assert h.rollbacks() == 0
    (blocked,) = h.alerts(kind="rollback_blocked")  # one page for the whole episode
    from watchdog.web.status import store_snapshot
    incident = store_snapshot(h.loaded, h.store)["targets"]["fraud-model"]["incident"]
    assert incident["phase"] == "blocked" and incident["guard"] == "paused" and "paused by alice" in incident["reason"]
    manual.resume(h.loaded, h.store, "fraud-model", "alice", "done", h.clock.now())
    resumed_at = h.clock.now()
    h.tick()
    assert h.rollbacks() == 1 and decided_at(h) == [resumed_at]
    (resolved,) = h.alerts(kind="rollback_blocked", status="resolved")
    assert resolved.dedup_key == blocked.dedup_key


def test_a_breach_inside_initial_delay_rolls_back_when_the_delay_ends(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    initial_delay: 5m\n")
    h.source.set("error_ratio", 0.01)
    h.run_for(30)
    h.version = "v3"  # bad from the moment it is deployed
    deployed = h.clock.now()
    h.source.set("error_ratio", 0.2)
    h.run_for(19 * 60)
    assert h.rollbacks() == 1
    assert decided_at(h) == [deployed + 300]  # the tick the delay ended, not the tick it fired
    assert [a.status for a in h.alerts(kind="rollback_blocked")] == ["firing", "resolved"]


def test_a_cooldown_that_ends_while_firing_rolls_back(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    cooldown: 10m\n")
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    first = decided_at(h)[0]
    h.version = "v1"  # the rollback worked
    h.source.set("error_ratio", 0.01)
    h.run_for(60)
    h.version = "v3"  # the next deploy is bad too, well inside the cooldown
    h.source.set("error_ratio", 0.2)
    h.run_for(15 * 60)
    assert h.rollbacks() == 2
    assert decided_at(h) == [first, first + 600]
    assert any("cooldown: last rollback" in e.message for e in h.store.history(kinds=["decision"], limit=200))


def test_a_rate_limit_window_that_moves_on_while_firing_rolls_back(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    max_rollbacks: {count: 1, window: 30m}\n")
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    first = decided_at(h)[0]
    h.version = "v1"
    h.source.set("error_ratio", 0.01)
    h.run_for(60)
    h.version = "v3"
    h.source.set("error_ratio", 0.2)
    h.run_for(40 * 60)
    assert decided_at(h) == [first, first + 1800]


def test_target_held_follows_the_hold_through_resume_recovery_and_escalation(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    verify_window: 2m\n")
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert held(h) == 1 and "fraud-model" in h.store.holds()
    # Recovery: the rolled-back-to version runs and the rule recovers.
    h.version = "v1"
    h.source.set("error_ratio", 0.01)
    h.run_for(30)
    assert held(h) == 0 and "fraud-model" not in h.store.holds()
    # Escalation: the next rollback does not restore health within verify_window.
    h.version = "v4"
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert held(h) == 1
    h.run_for(300)
    (ineffective,) = h.alerts(kind="rollback_ineffective")
    assert held(h) == 1 and "fraud-model" in h.store.holds()
    # Resume from the CLI (another process): the daemon's gauge follows on its next tick.
    manual.resume(h.loaded, h.store, "fraud-model", "alice", "fixed by hand", h.clock.now())
    h.source.set("error_ratio", 0.01)
    h.tick()
    assert held(h) == 0 and "fraud-model" not in h.store.holds()
    assert [a.dedup_key for a in h.alerts(kind="rollback_ineffective", status="resolved")] == [ineffective.dedup_key]


def test_an_incident_survives_a_restart(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    approve: required\n    approve_timeout: 5m\n")
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    (page,) = h.alerts(kind="approval_required")
    h.restart()
    h.run_for(60)
    assert h.alerts(kind="approval_required") == [page]  # still the same request, not a new one
    assert held(h) == 1
    h.run_for(240)
    assert [a.status for a in h.alerts(kind="approval_required")] == ["firing", "resolved", "firing"]


def test_alerts_queued_before_a_restart_are_delivered_after_it(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.2)
    for _ in range(4):  # fires and rolls back, but nothing is delivered before the "crash"
        h.engine.tick(h.clock.now())
        h.clock.advance(h.interval)
    assert h.alerter.sent == []
    h.restart()
    h.notifier.drain(timeout=0)
    assert {a.kind for a in h.alerter.sent} == {"rule", "rollback_completed"}


def test_a_hold_from_before_incidents_existed_is_respected(tmp_path):
    from watchdog.state.base import Hold
    h = Harness(tmp_path, ERROR_RULE)
    h.store.put_hold(Hold("fraud-model", h.clock.now(), "old-decision", "v2", "rollback old-decision (error-rate)"))
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert h.rollbacks() == 0 and held(h) == 1
    h.version = "v3"  # a new version lifts it, as it always did
    h.run_for(10)
    assert "fraud-model" not in h.store.holds() and held(h) == 0
