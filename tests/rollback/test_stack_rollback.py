"""Rolling back the whole stack: releases, dependency order, verification, escalation."""

from __future__ import annotations

from watchdog.rollback import manual

from tests.harness import Harness
from tests.fixtures.rules import ERROR_RULE, STACK, V1, V2

def stack(tmp_path, extra: str = "") -> Harness:  # type: ignore[no-untyped-def]
    h = Harness(tmp_path, ERROR_RULE, target=STACK + extra)
    h.version = None  # versions come from the release ledger here
    return h


def release(h: Harness, components: dict[str, str]) -> None:
    manual.record_release(h.loaded, h.store, "fraud-model", components, "ci", "", h.clock.now())


def calls(h: Harness) -> list[tuple[str, str, str, str]]:
    out = []
    for name, actuator in h.actuators.items():
        for c in actuator.calls:
            out.append((c.extra["component"], c.extra["from_version"], c.extra["to_version"], name))
    return out


def test_only_the_changed_components_roll_back_dependents_first(tmp_path):
    h = stack(tmp_path)
    release(h, V1)
    h.source.set("error_ratio", 0.01)
    h.run_for(660)  # V1 bakes: healthy
    release(h, V2)
    h.run_for(60)
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    # features depends on schema: features goes back first, then schema; model did not change.
    order = [(c.extra["component"], c.extra["to_version"]) for a in ("second", "first") for c in h.actuators[a].calls]
    assert order == [("features", "fp-1"), ("schema", "v13")]
    assert h.actuators["third"].calls == []
    decision = h.store.decisions(target="fraud-model")[0]
    steps = h.store.steps(decision.id)
    assert [(s.actuator, s.status) for s in steps] == [("second", "succeeded"), ("first", "succeeded")]
    assert all("verified" in s.message for s in steps)
    releases = h.store.releases("fraud-model")
    assert [r.state for r in releases] == ["healthy", "bad", "healthy"]
    assert releases[0].components == V1 and releases[0].origin == "rollback"
    completed = h.store.history(kinds=["decision"], limit=1)[0].message
    assert "components now: features=fp-1, model=fraud:6, schema=v13" in completed


def test_a_failing_middle_step_stops_holds_alerts_and_says_where_everything_is(tmp_path):
    h = stack(tmp_path)
    release(h, V1)
    h.source.set("error_ratio", 0.01)
    h.run_for(660)
    release(h, {"schema": "v14", "features": "fp-2", "model": "fraud:7"})  # all three changed
    h.run_for(60)
    h.actuators["second"].failures = 1  # features fails
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert [c.extra["component"] for c in h.actuators["third"].calls] == ["model"]
    assert [c.extra["component"] for c in h.actuators["second"].calls] == ["features"]
    assert h.actuators["first"].calls == []  # schema never reached
    (failed,) = h.alerts(kind="actuator_failed")
    assert failed.severity == "critical"
    assert "components now: features=fp-2, model=fraud:6, schema=v14" in failed.summary
    assert "fraud-model" in h.store.holds()


def test_restore_on_failure_puts_the_component_back(tmp_path):
    h2 = Harness(tmp_path, ERROR_RULE, target=STACK.replace(
        "features: {actuator: second, depends_on: [schema]}",
        "features: {actuator: second, depends_on: [schema], on_failure: restore}"))
    h2.version = None
    release(h2, V1)
    h2.source.set("error_ratio", 0.01)
    h2.run_for(660)
    release(h2, V2)
    h2.run_for(60)
    h2.actuators["second"].failures = 1
    h2.source.set("error_ratio", 0.2)
    h2.run_for(60)
    tries = [(c.extra["from_version"], c.extra["to_version"]) for c in h2.actuators["second"].calls]
    assert tries == [("fp-2", "fp-1"), ("fp-1", "fp-2")]  # the failed step, then its restore
    assert "features restored to fp-2" in h2.alerts(kind="actuator_failed")[0].summary


def test_no_healthy_release_means_alert_and_no_action(tmp_path):
    h = stack(tmp_path)
    release(h, V1)
    h.source.set("error_ratio", 0.01)
    h.run_for(60)  # not baked yet
    release(h, V2)
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert calls(h) == []
    (blocked,) = h.alerts(kind="rollback_blocked")
    assert "no healthy release before #2" in blocked.summary


def test_a_rollback_that_does_not_restore_health_escalates_once(tmp_path):
    h = stack(tmp_path)
    release(h, V1)
    h.source.set("error_ratio", 0.01)
    h.run_for(660)
    release(h, V2)
    h.run_for(60)
    h.source.set("error_ratio", 0.2)  # and it stays bad after the rollback
    h.run_for(400)
    assert len(h.store.decisions(target="fraud-model")) == 1  # no second automatic rollback
    (escalation,) = h.alerts(kind="rollback_ineffective")
    assert "did not restore health" in escalation.summary and "no further automatic rollback" in escalation.summary
    # The release it went back to is not healthy after all: never a way out again.
    releases = h.store.releases("fraud-model")
    assert [r.state for r in releases if r.components == V1] == ["bad", "bad"]


def test_max_depth_two_rolls_back_one_release_further(tmp_path):
    h = stack(tmp_path, "    max_depth: 2\n")
    v0 = {"schema": "v12", "features": "fp-0", "model": "fraud:5"}
    for components in (v0, V1):
        release(h, components)
        h.source.set("error_ratio", 0.01)
        h.run_for(660)
    release(h, V2)
    h.run_for(60)
    h.source.set("error_ratio", 0.2)
    h.run_for(400)
    decisions = h.store.decisions(target="fraud-model")
    assert len(decisions) == 2
    assert decisions[0].context.stack.to_components == v0 and decisions[0].context.depth == 2


def test_manual_rollback_to_a_named_release(tmp_path):
    h = stack(tmp_path)
    release(h, V1)
    release(h, V2)
    done = manual.manual_rollback(h.loaded, h.store, "fraud-model", "erin", "bad features", h.clock.now(), to_version="#1")
    h.tick()
    assert h.store.get_decision(done.decision_id).status == "succeeded"
    assert sorted(c[0] for c in calls(h)) == ["features", "schema"]
