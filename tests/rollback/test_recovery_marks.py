"""The `recovered_at` timeline mark of a rollback is written once, however often the daemon
restarts afterwards: the audit history (and time_to_recover) must not grow a copy per restart."""

from __future__ import annotations

from tests.fixtures.rules import ERROR_RULE
from tests.harness import Harness


def marks(h: Harness, mark: str) -> list[str]:
    return [e.data["decision_id"] for e in h.store.history(limit=500, kinds=["timeline"]) if e.data.get("mark") == mark]


def test_a_held_target_that_recovered_is_marked_recovered_once_across_restarts(tmp_path) -> None:
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert h.rollbacks() == 1
    h.source.set("error_ratio", 0.01)
    h.run_for(400)
    assert "fraud-model" in h.store.holds()  # still held: the incident keeps its decision
    [decision] = marks(h, "recovered_at")
    recovered = h.metrics.registry.get_sample_value("model_watchdog_time_to_recover_seconds_count",
                                                    {"target": "fraud-model"})
    for _ in range(3):
        h.restart()
        h.run_for(30)
    assert marks(h, "recovered_at") == [decision]
    assert h.metrics.registry.get_sample_value("model_watchdog_time_to_recover_seconds_count",
                                               {"target": "fraud-model"}) in (None, 0.0)  # a fresh process: not again
    assert recovered == 1.0
