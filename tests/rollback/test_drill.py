"""Rollback drills: rehearse what a rollback would do now, acting on nothing."""

from __future__ import annotations

import io
import json

from watchdog.rollback import manual
from watchdog.cli import main
from watchdog.rollback.drill import run_drill, unknown_version
from watchdog.rollback.drill_schedule import DrillSchedule

from tests.harness import DEFAULT_TARGET, Harness
from tests.fixtures.rules import ERROR_RULE
from tests.fixtures.rules import STACK, V1, V2


def test_a_drill_shows_the_plan_and_the_guards_and_acts_on_nothing(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.version = "v1"
    h.run_for(10)
    h.version = "v2"
    h.run_for(10)
    drill = run_drill(h.loaded, h.store, "fraud-model", h.clock.now(), "sre-oncall")
    assert drill.ready and drill.version == "v2" and drill.to == "v1"
    assert [s.actuator for s in drill.steps] == ["first", "second"]
    assert "POST http://127.0.0.1:9 " in drill.steps[0].plan
    assert drill.guard == "act"
    assert h.store.decisions(target="fraud-model") == [] and "fraud-model" not in h.store.holds()
    (event,) = h.store.history(kinds=["drill"])
    assert "rollback drill by sre-oncall: ready" in event.message


def test_a_stack_drill_without_a_healthy_release_is_not_ready(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=STACK)
    manual.record_release(h.loaded, h.store, "fraud-model", V1, "ci", "", h.clock.now())
    manual.record_release(h.loaded, h.store, "fraud-model", V2, "ci", "", h.clock.now())
    drill = run_drill(h.loaded, h.store, "fraud-model", h.clock.now(), "sre")
    assert not drill.ready and "no healthy release before #2" in drill.blocked
    h.store.set_release_state(1, "healthy")
    drill = run_drill(h.loaded, h.store, "fraud-model", h.clock.now(), "sre")
    assert drill.ready and [(s.component, s.to_version) for s in drill.steps] == [("features", "fp-1"), ("schema", "v13")]


def test_an_unreachable_actuator_makes_the_drill_fail_from_the_cli(tmp_path):
    (tmp_path / "watchdog.yaml").write_text(
        "state: state.db\nrule_files: [rules.yaml]\n"
        "sources: {model: {type: scrape, url: 'http://127.0.0.1:9/metrics'}}\n"
        "actuators: {champion: {type: mlflow, tracking_uri: 'http://127.0.0.1:9', model: fraud, retries: 0}}\n"
        "targets: {fraud-model: {rollback: [champion]}}\n")
    (tmp_path / "rules.yaml").write_text("target: fraud-model\nrules: []\n")
    out, err = io.StringIO(), io.StringIO()
    code = main(["drill", "fraud-model", "-c", str(tmp_path / "watchdog.yaml"), "--json"], out, err)
    report = json.loads(out.getvalue())
    assert code == 1 and not report["ready"]
    assert report["steps"][0]["problem"]  # cannot reach the registry: exactly what a drill is for


INVALID = "../../etc/passwd"


def on_an_invalid_version(h: Harness) -> None:
    h.version = "v1"
    h.run_for(10)
    h.version = "v2"
    h.run_for(10)
    h.version = INVALID  # recorded, alerted, ignored: what runs now is unknown
    h.run_for(10)


def test_a_drill_while_the_running_version_is_unknown_is_deferred_as_a_rollback_would_be(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    on_an_invalid_version(h)
    problem = h.engine.version_gate.invalid.get("fraud-model")
    assert problem

    drill = run_drill(h.loaded, h.store, "fraud-model", h.clock.now(), "sre", problem)

    assert not drill.ready and drill.steps == []  # nothing planned from the last valid version, nothing read
    assert "the running version is unknown" in drill.deferred and drill.guard.startswith("blocked")
    (event,) = h.store.history(kinds=["drill_deferred"])
    assert "rollback drill by sre deferred: the running version is unknown" in event.message
    assert event.data["guard"] == "version_unknown"
    assert h.store.history(kinds=["drill"]) == []  # not a drill that ran: gauges and the drill alert ignore it


def test_unknown_version_proceed_drills_from_the_last_valid_version(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    unknown_version: proceed\n")
    on_an_invalid_version(h)
    drill = run_drill(h.loaded, h.store, "fraud-model", h.clock.now(), "sre", h.engine.version_gate.invalid["fraud-model"])
    assert drill.ready and not drill.deferred and drill.version == "v2" and len(drill.steps) == 2


def test_the_cli_drill_learns_the_unknown_version_from_the_history(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    on_an_invalid_version(h)
    out, err = io.StringIO(), io.StringIO()
    code = main(["drill", "fraud-model", "-c", str(tmp_path / "watchdog.yaml")], out, err)
    assert code == 1 and "deferred: the running version is unknown" in out.getvalue()
    assert len(h.store.history(kinds=["drill_deferred"])) == 1
    h.version = "v2"  # valid again
    h.run_for(10)
    code = main(["drill", "fraud-model", "-c", str(tmp_path / "watchdog.yaml"), "--json"], out, err)
    assert code == 0 and unknown_version(h.store, "fraud-model") is None


def test_a_scheduled_drill_is_deferred_once_then_runs_on_the_tick_the_version_is_known_again(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    drill: {every: 1h}\n")
    on_an_invalid_version(h)
    schedule = DrillSchedule(h.loaded, h.store)
    for _ in range(3):  # due, deferred; due again each tick; the deferral recorded once
        schedule.run_due(h.clock.now(), ["fraud-model"], h.engine.version_gate.invalid.get)
        h.tick()
    assert len(h.store.history(kinds=["drill_deferred"])) == 1 and h.store.history(kinds=["drill"]) == []
    h.version = "v2"
    h.tick()
    (ran,) = schedule.run_due(h.clock.now(), ["fraud-model"], h.engine.version_gate.invalid.get)
    assert ran.ready and len(h.store.history(kinds=["drill"])) == 1
    assert schedule.run_due(h.clock.now() + 10, ["fraud-model"], h.engine.version_gate.invalid.get) == []  # 1 h on
