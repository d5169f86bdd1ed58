"""Guards between a firing rule and an actuator, and the operator commands around them."""

from __future__ import annotations

import pytest

from watchdog.rollback import manual
from watchdog.rollback.pauses import ALL

from tests.harness import DEFAULT_TARGET, Harness
from tests.fixtures.rules import ERROR_RULE


def breach_then_recover(h: Harness, breach_for: float = 60, recover_for: float = 20) -> None:
    h.source.set("error_ratio", 0.2)
    h.run_for(breach_for)
    h.source.set("error_ratio", 0.01)
    h.run_for(recover_for)


def last_decision_message(h: Harness) -> str:
    return h.store.history(kinds=["decision"], limit=1)[0].message


def test_a_paused_target_alerts_but_never_acts_until_resumed(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    manual.pause(h.loaded, h.store, "fraud-model", "alice", "feature store migration", h.clock.now())
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert h.rollbacks() == 0
    assert [a.kind for a in h.alerts(status="firing")] == ["rule", "rollback_blocked"]
    assert "paused by alice" in last_decision_message(h) and "feature store migration" in last_decision_message(h)
    manual.resume(h.loaded, h.store, "fraud-model", "alice", "migration done", h.clock.now())
    h.source.set("error_ratio", 0.01)
    h.run_for(20)
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert h.rollbacks() == 1
    kinds = [e.kind for e in h.store.history(target="fraud-model", limit=100)]
    assert "pause" in kinds and "resume" in kinds


def test_a_timed_pause_of_everything_expires_by_itself(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    manual.pause(h.loaded, h.store, ALL, "bob", "load test", h.clock.now(), duration=100)
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert h.rollbacks() == 0
    h.source.set("error_ratio", 0.01)
    h.run_for(60)
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert h.rollbacks() == 1


def test_shadow_mode_records_what_it_would_have_done(tmp_path):
    h = Harness(tmp_path, ERROR_RULE + "  mode: shadow\n")
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert h.rollbacks() == 0
    assert last_decision_message(h).startswith("shadow mode: would roll back")
    assert "fraud-model" not in h.store.holds()


def test_initial_delay_holds_back_actions_on_a_fresh_version(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    initial_delay: 5m\n")
    h.source.set("error_ratio", 0.01)
    h.run_for(30)
    h.version = "v3"
    h.source.set("error_ratio", 0.2)
    h.run_for(120)
    assert h.rollbacks() == 0 and "initial delay" in last_decision_message(h)
    h.source.set("error_ratio", 0.01)
    h.run_for(200)
    h.source.set("error_ratio", 0.2)
    h.run_for(60)  # past the delay: guarding continues for as long as the version runs
    assert h.rollbacks() == 1


def test_rollback_rate_limit_stops_a_loop(tmp_path):
    target = DEFAULT_TARGET + "    max_rollbacks: {count: 2, window: 1h}\n"
    h = Harness(tmp_path, ERROR_RULE, target=target)
    for version in ("v3", "v4", "v5"):
        breach_then_recover(h)
        h.version = version  # each rollback "works", then the new version regresses again
        h.run_for(20)
    assert h.rollbacks() == 2
    assert "rate limit: 2 rollbacks by target fraud-model" in last_decision_message(h)


def test_cooldown_between_rollbacks(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    cooldown: 10m\n")
    breach_then_recover(h)
    h.version = "v3"
    h.run_for(20)
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert h.rollbacks() == 1
    assert "cooldown: last rollback" in last_decision_message(h)


def test_never_roll_back_to_a_version_marked_bad(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.version = "v1"
    h.run_for(10)
    h.version = "v2"
    h.run_for(10)
    h.store.mark_bad("fraud-model", "v1", "known broken")
    breach_then_recover(h)
    # v1 is bad and nothing else is known: previous_version is unknown, the receiver decides.
    assert h.actuators["first"].calls[0].previous_version is None
    manual.resume(h.loaded, h.store, "fraud-model", "alice", "", h.clock.now())
    with pytest.raises(manual.OperatorError, match="v1 is marked bad"):
        manual.manual_rollback(h.loaded, h.store, "fraud-model", "alice", "try v1", h.clock.now(), to_version="v1")


def test_approval_required_waits_for_a_human(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    approve: required\n")
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert h.rollbacks() == 0
    (page,) = h.alerts(kind="approval_required")
    assert f"model-watchdog approve {page.decision_id}" in page.summary
    manual.approve(h.loaded, h.store, page.decision_id, "carol", h.clock.now())
    h.tick()
    assert h.rollbacks() == 1 and h.actuators["first"].calls[0].decision_id == page.decision_id
    assert [v.version for v in h.store.versions("fraud-model") if v.bad] == ["v2"]


def test_a_rejected_approval_lifts_the_hold_and_does_nothing(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    approve: required\n")
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    (page,) = h.alerts(kind="approval_required")
    manual.reject(h.loaded, h.store, page.decision_id, "carol", "known noisy metric", h.clock.now())
    h.run_for(60)
    assert h.rollbacks() == 0 and "fraud-model" not in h.store.holds()
    assert h.store.get_decision(page.decision_id).status == "skipped"


def test_an_unanswered_approval_times_out_and_a_still_firing_rule_asks_again(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    approve: required\n    approve_timeout: 5m\n")
    h.source.set("error_ratio", 0.2)
    h.run_for(400)
    assert h.rollbacks() == 0
    first, second = h.alerts(kind="approval_required", status="firing")
    (timed_out,) = h.alerts(kind="approval_required", status="resolved")
    assert timed_out.dedup_key == first.dedup_key and "timed out" in timed_out.summary
    # Asked again on the tick the first request expired, with a new decision.
    assert second.decision_id != first.decision_id and second.at == timed_out.at
    assert h.store.get_decision(first.decision_id).status == "skipped"
    manual.approve(h.loaded, h.store, second.decision_id, "carol", h.clock.now())
    h.tick()
    assert h.rollbacks() == 1 and h.actuators["first"].calls[0].decision_id == second.decision_id


def test_a_manual_rollback_goes_through_the_journal(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.version = "v1"
    h.run_for(10)
    h.version = "v2"
    h.source.set("error_ratio", 0.01)
    h.run_for(10)
    done = manual.manual_rollback(h.loaded, h.store, "fraud-model", "dave", "customer complaints", h.clock.now())
    h.tick()
    (call,) = h.actuators["first"].calls
    assert call.decision_id == done.decision_id and call.previous_version == "v1"
    assert call.extra == {"from_version": "v2", "to_version": "v1"}
    assert "manual rollback by dave: customer complaints" in call.reason
    assert h.store.get_decision(done.decision_id).status == "succeeded"
    with pytest.raises(manual.OperatorError, match="held"):
        manual.manual_rollback(h.loaded, h.store, "fraud-model", "dave", "again", h.clock.now())


def test_an_actuator_that_sees_the_change_already_made_skips_its_write(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.version = "v1"
    h.run_for(10)
    h.version = "v2"
    h.actuators["first"].current = "v1"  # another replica already rolled this component back
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert h.actuators["first"].calls == [] and len(h.actuators["second"].calls) == 1
    decision = h.store.decisions(target="fraud-model")[0]
    steps = h.store.steps(decision.id)
    assert [s.status for s in steps] == ["skipped", "succeeded"] and "already runs v1" in steps[0].message
