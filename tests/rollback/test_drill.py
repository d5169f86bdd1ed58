"""Rollback drills: rehearse what a rollback would do now, acting on nothing."""

from __future__ import annotations

import io
import json

from watchdog.rollback import manual
from watchdog.cli import main
from watchdog.rollback.drill import run_drill

from tests.harness import Harness
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
