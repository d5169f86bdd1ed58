"""Incident timelines (issue 15): every rollback decision's moments, each recorded once, and
`model-watchdog incidents` — on the production engine with a fake clock (10 s ticks)."""

from __future__ import annotations

import io
import json

from watchdog.rollback import manual
from watchdog.cli import main
from watchdog.rollback.timeline import KEYS, incidents

from tests.harness import Harness
from tests.fixtures.rules import ERROR_RULE

SLOW_RULE = """\
- name: latency
  source: model
  query: latency
  above: 1
  for: 5m
  action: rollback
"""


def test_a_paused_rollback_has_every_moment_of_its_timeline(tmp_path):
    h = Harness(tmp_path, ERROR_RULE + SLOW_RULE)
    h.source.set("error_ratio", 0.01)
    h.source.set("latency", 0.5)
    h.run_for(30)
    manual.pause(h.loaded, h.store, "fraud-model", "alice", "migration", h.clock.now())
    breach = h.clock.now()
    h.source.set("error_ratio", 0.20)
    h.run_for(120)  # pending at once, fired 30 s later, held back by the pause
    manual.resume(h.loaded, h.store, "fraud-model", "alice", "done", h.clock.now())
    decided = h.clock.now()
    h.tick()
    assert h.rollbacks() == 1
    (item,) = incidents(h.store, "fraud-model")
    assert item["breach_started_at"] == item["pending_at"] == breach
    assert item["fired_at"] == breach + 30
    assert item["decided_at"] == item["actuated_at"] == decided
    assert item["verified_at"] is None and item["recovered_at"] is None
    assert (item["time_to_detect_s"], item["time_to_act_s"]) == (30, decided - breach - 30)

    h.version = "v1"  # rolled back; the errors are gone, but latency is pending now
    h.source.set("error_ratio", 0.01)
    h.source.set("latency", 2.0)
    verified = h.clock.now()
    h.run_for(60)
    (item,) = incidents(h.store, "fraud-model")
    assert item["verified_at"] == verified
    assert item["recovered_at"] is None  # a rollback rule of the target is still pending
    h.source.set("latency", 0.5)
    recovered = h.clock.now()
    h.run_for(30)
    (item,) = incidents(h.store, "fraud-model")
    assert item["recovered_at"] == recovered
    assert item["time_to_recover_s"] == recovered - breach
    assert h.metrics.registry.get_sample_value("model_watchdog_time_to_recover_seconds_sum",
                                               {"target": "fraud-model"}) == recovered - breach
    h.run_for(60)  # marked once
    assert [e.data["mark"] for e in h.store.history("fraud-model", kinds=["timeline"])] == ["recovered_at", "verified_at"]

    out = io.StringIO()
    assert main(["incidents", "-c", str(h.dir / "watchdog.yaml"), "fraud-model", "--json"], out=out) == 0
    (shown,) = json.loads(out.getvalue())
    assert tuple(shown) == KEYS
    assert set(shown) == {"decision_id", "target", "rule", "status", "breach_started_at", "pending_at", "fired_at",
                          "decided_at", "actuated_at", "verified_at", "recovered_at", "time_to_detect_s",
                          "time_to_act_s", "time_to_recover_s"}
    assert shown["rule"] == "error-rate" and shown["status"] == "succeeded" and shown["time_to_detect_s"] == 30
    assert shown["fired_at"].endswith("Z")
    out = io.StringIO()
    assert main(["incidents", "-c", str(h.dir / "watchdog.yaml")], out=out) == 0
    assert "fraud-model/error-rate decision" in out.getvalue() and "time to detect 30" in out.getvalue()
