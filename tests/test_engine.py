"""The engine's promises, told as the stories an SRE cares about (fake clock, 10 s ticks)."""

from __future__ import annotations

import math

from watchdog.errors import SourceError
from watchdog.testing import series

from tests.fixtures.rules import ERROR_RULE
from tests.harness import Harness



def test_a_healthy_model_is_left_alone(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.01)
    h.run_for(300)
    assert h.rollbacks() == 0
    assert h.alerts() == []
    assert h.phases("error-rate") == {"{}": "inactive"}


def test_a_sustained_breach_rolls_back_exactly_once(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.01)
    h.run_for(30)
    h.source.set("error_ratio", 0.20)
    reports = h.run_for(120)
    assert h.rollbacks() == 1
    # Both actuators ran, in order, with the same decision id.
    first, second = h.actuators["first"].calls[0], h.actuators["second"].calls[0]
    assert first.decision_id == second.decision_id
    assert first.value == 0.20 and first.threshold == {"above": 0.05}
    assert first.version == "v2" and first.rule == "error-rate" and first.action == "rollback"
    # Pending at the first breach, firing 30 s later: at the first tick where `for` has elapsed.
    fired_at = [r.at for r in reports if r.decisions]
    breach_start = reports[0].at
    assert fired_at == [breach_start + 30]
    assert h.store.holds()["fraud-model"].decision_id == first.decision_id
    assert [a.status for a in h.alerts(kind="rule")] == ["firing"]


def test_a_spike_shorter_than_for_does_not_roll_back(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.01)
    h.run_for(30)
    h.source.set("error_ratio", 0.30)
    h.run_for(20)  # two breaching ticks: pending for 10 s < 30 s
    assert h.phases("error-rate") == {"{}": "pending"}
    h.source.set("error_ratio", 0.01)
    h.run_for(60)
    assert h.rollbacks() == 0
    assert h.phases("error-rate") == {"{}": "inactive"}
    kinds = [e.data.get("event") for e in h.store.history(kinds=["state"], limit=10)]
    assert kinds[:2] == ["reset", "pending"]


def test_missing_data_never_rolls_back_but_alerts_once_and_resolves(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", SourceError("cannot connect to model: connection refused", "connection"))
    h.run_for(300)
    assert h.rollbacks() == 0
    assert [a.status for a in h.alerts(kind="no_data")] == ["firing"]
    h.source.set("error_ratio", 0.01)
    h.run_for(20)
    assert [a.status for a in h.alerts(kind="no_data")] == ["firing", "resolved"]


def test_nan_is_no_data_not_a_breach_nor_healthy(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.2)
    h.run_for(20)  # pending
    h.source.set("error_ratio", math.nan)
    h.run_for(100)
    assert h.rollbacks() == 0
    assert h.phases("error-rate") == {"{}": "inactive"}  # the breach was not observed throughout
    assert len(h.alerts(kind="no_data")) == 1


def test_on_no_data_rollback_treats_silence_as_a_breach(tmp_path):
    h = Harness(tmp_path, ERROR_RULE.replace("severity: critical", "severity: critical\n  on_no_data: rollback"))
    h.source.set("error_ratio", None)
    h.run_for(70)  # 4 silent ticks are tolerated (error_limit), then 30 s of `for`
    assert h.rollbacks() == 0
    h.run_for(20)
    assert h.rollbacks() == 1


def test_ignore_no_data_is_silent(tmp_path):
    h = Harness(tmp_path, ERROR_RULE.replace("severity: critical", "severity: critical\n  on_no_data: ignore"))
    h.source.set("error_ratio", None)
    h.run_for(100)
    assert h.rollbacks() == 0 and h.alerts() == []


def test_too_few_samples_are_not_judged_and_reset_the_timer(tmp_path):
    rule = ERROR_RULE + "  min_samples: {query: request_count, at_least: 200}\n"
    h = Harness(tmp_path, rule)
    h.source.set("error_ratio", 0.5)
    h.source.set("request_count", 1000)
    h.run_for(20)
    assert h.phases("error-rate") == {"{}": "pending"}
    h.source.set("request_count", 50)  # traffic dropped: 50% of 50 requests proves nothing
    h.run_for(100)
    assert h.rollbacks() == 0
    assert h.phases("error-rate") == {"{}": "inactive"}
    last = h.store.history(kinds=["state"], limit=1)[0]
    assert "insufficient samples: 50 < 200" in last.message


def test_each_series_is_judged_on_its_own_and_carries_its_labels(tmp_path):
    h = Harness(tmp_path, ERROR_RULE.replace("action: rollback", "action: alert"))
    h.source.set("error_ratio", [series(0.01, region="eu"), series(0.3, region="us")])
    h.run_for(60)
    assert h.phases("error-rate") == {'{"region":"eu"}': "inactive", '{"region":"us"}': "firing"}
    (alert,) = h.alerts(kind="rule")
    assert alert.labels == {"region": "us"} and alert.value == 0.3


def test_a_held_target_is_not_rolled_back_again_until_a_new_version_runs(tmp_path):
    rules = ERROR_RULE + ERROR_RULE.replace("error-rate", "latency").replace("error_ratio", "p99")
    h = Harness(tmp_path, rules)
    h.source.set("error_ratio", 0.2)
    h.source.set("p99", 0.01)
    h.run_for(60)
    assert h.rollbacks() == 1
    h.source.set("p99", 0.9)  # a second rule fires while the target is held: alert, no action
    h.run_for(60)
    assert h.rollbacks() == 1
    assert any(a.rule == "latency" and a.status == "firing" for a in h.alerts(kind="rule"))
    assert "rollback not repeated" in h.store.history(kinds=["decision"], limit=1)[0].message
    # The rollback took effect: v1 runs, the hold lifts, and a later regression acts again.
    h.version = "v1"
    h.source.set("error_ratio", 0.01)
    h.source.set("p99", 0.01)
    h.run_for(60)
    assert "fraud-model" not in h.store.holds()
    h.source.set("error_ratio", 0.3)
    h.run_for(60)
    assert h.rollbacks() == 2


def test_previous_version_is_the_last_good_one(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.version = "v1"
    h.source.set("error_ratio", 0.01)
    h.run_for(30)
    h.version = "v2"
    h.run_for(30)
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert h.actuators["first"].calls[0].previous_version == "v1"
    assert [v.version for v in h.store.versions("fraud-model") if v.bad] == ["v2"]


def test_resume_lifts_the_hold(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    from watchdog.rollback import manual
    manual.resume(h.loaded, h.store, "fraud-model", "alice", "looked at it", h.clock.now())
    assert "fraud-model" not in h.store.holds()
    h.source.set("error_ratio", 0.01)
    h.run_for(20)
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert h.rollbacks() == 2


def test_a_pending_timer_survives_a_restart(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.2)
    h.run_for(20)  # pending since t0, 10 s elapsed at the last tick
    pending_since = next(iter(h.engine.states.values())).pending_since
    h.restart()
    assert next(iter(h.engine.states.values())).pending_since == pending_since
    reports = h.run_for(30)
    assert h.rollbacks() == 1
    assert [r.at for r in reports if r.decisions] == [pending_since + 30]


def test_a_failing_actuator_stops_the_chain_alerts_and_is_recorded(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.actuators["first"].failures = 1
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert len(h.actuators["first"].calls) == 1 and h.actuators["second"].calls == []
    (failed,) = h.alerts(kind="actuator_failed")
    assert failed.severity == "critical" and "simulated failure" in failed.summary
    decision = h.store.decisions(target="fraud-model")[0]
    assert decision.status == "failed"
    assert [s.status for s in h.store.steps(decision.id)] == ["failed"]
    assert "fraud-model" in h.store.holds()  # still held: a human looks before anything else acts


def test_an_unfinished_rollback_is_resumed_with_the_same_key_after_a_crash(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.2)
    h.run_for(20)
    # Crash between the decision and its second step: the first step is done, the second started.
    from watchdog.rollback.coordinator import TargetView
    view = TargetView("fraud-model", "v2", None, None, {}, ())
    key, state = next(iter(h.engine.states.items()))
    request = h.engine.rollbacks.request(h.loaded.rules[0], key, state, view)
    decision_id = h.executor.decide(request, h.clock.now())
    h.store.start_step(decision_id, 0, "first", h.clock.now())
    h.store.finish_step(decision_id, 0, "succeeded", h.clock.now(), "ok")
    h.store.start_step(decision_id, 1, "second", h.clock.now())
    h.restart()
    h.tick()
    assert h.actuators["first"].calls == []  # done before the crash: not repeated
    assert [c.decision_id for c in h.actuators["second"].calls] == [decision_id]
    assert h.store.get_decision(decision_id).status == "succeeded"
    # The resumed step acts on the decision recorded before the crash, not on a fresh one.
    (resumed,) = h.actuators["second"].calls
    assert (resumed.rule, resumed.value, resumed.reason) == (request.rule, request.value, request.reason)


def test_rules_wait_for_their_window_to_hold_only_the_new_version(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.source.windows["error_ratio"] = 60.0
    h.source.set("error_ratio", 0.01)
    h.run_for(30)
    h.version = "v3"  # a deploy; the 60 s window still holds v2's requests for a while
    h.source.set("error_ratio", 0.2)
    h.run_for(50)
    assert h.rollbacks() == 0
    h.run_for(60)
    assert h.rollbacks() == 1


def test_journal_steps_carry_their_real_start_and_end_times(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    slow = h.actuators["first"]
    original = slow.apply

    def apply(context, stop):  # type: ignore[no-untyped-def]
        h.clock.advance(3)  # the first step takes 3 s
        return original(context, stop)

    slow.apply = apply  # type: ignore[method-assign]
    h.source.set("error_ratio", 0.2)
    reports = h.run_for(40)
    decided = next(r.at for r in reports if r.decisions)
    decision = h.store.decisions(target="fraud-model")[0]
    first, second = h.store.steps(decision.id)
    assert (first.started_at, first.finished_at) == (decided, decided + 3)
    assert second.started_at == decided + 3 and decision.finished_at == decided + 3


def test_the_inconclusive_alert_resolves_when_the_rule_is_judged_again(tmp_path):
    rule = ERROR_RULE + "  min_samples: {query: request_count, at_least: 200}\n  max_inconclusive: 1m\n"
    h = Harness(tmp_path, rule)
    h.source.set("error_ratio", 0.01)
    h.source.set("request_count", 10)
    h.run_for(120)
    (firing,) = h.alerts(kind="inconclusive")
    h.source.set("request_count", 1000)
    h.run_for(20)
    assert [a.status for a in h.alerts(kind="inconclusive")] == ["firing", "resolved"]
    assert h.alerts(kind="inconclusive")[1].dedup_key == firing.dedup_key


def test_the_inconclusive_alert_resolves_when_a_new_version_is_judged_afresh(tmp_path):
    rule = ERROR_RULE + "  min_samples: {query: request_count, at_least: 200}\n  max_inconclusive: 1m\n"
    h = Harness(tmp_path, rule)
    h.source.set("error_ratio", 0.01)
    h.source.set("request_count", 10)
    h.run_for(120)
    h.version = "v3"
    h.run_for(10)
    assert [a.status for a in h.alerts(kind="inconclusive")] == ["firing", "resolved"]
