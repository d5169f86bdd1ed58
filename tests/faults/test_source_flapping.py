"""Fault: a source that flaps between up and down. Never a rollback; at most one page per outage."""

from watchdog.errors import SourceError

from tests.harness import Harness
from tests.test_engine import ERROR_RULE


def test_a_flapping_source_neither_rolls_back_nor_pages(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    flip = iter(range(10_000))
    h.source.set("error_ratio", lambda now: SourceError("connection refused", "connection") if next(flip) % 2 else 0.01)
    h.run_for(600)
    assert h.rollbacks() == 0
    assert h.alerts() == []  # every outage is shorter than error_limit: nobody is paged
    assert h.engine.states[("fraud-model", "error-rate", "{}")].phase.value == "inactive"


def test_a_flapping_breach_does_not_fire_a_continuous_rule(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    flip = iter(range(10_000))
    h.source.set("error_ratio", lambda now: 0.3 if next(flip) % 2 else 0.01)  # bad, good, bad, good...
    h.run_for(600)
    assert h.rollbacks() == 0
