"""Fault: a source that flaps between up and down. Never a rollback; at most one page per outage."""

import pytest

from watchdog.errors import SourceError

from tests.harness import Harness
from tests.fixtures.rules import ERROR_RULE


def test_a_flapping_source_neither_rolls_back_nor_pages(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    flip = iter(range(10_000))
    h.source.set("error_ratio", lambda now: SourceError("connection refused", "connection") if next(flip) % 2 else 0.01)
    h.run_for(600)
    assert h.rollbacks() == 0
    assert h.alerts() == []  # every outage is shorter than error_limit: nobody is paged
    assert h.engine.states[("fraud-model", "error-rate", "{}")].phase.value == "inactive"


def _outages(h: Harness, down: int, up: int) -> list[float]:
    """The source fails for `down` queries, answers healthy data for `up`, again and again.
    Returns the list the start time of each outage is appended to."""
    query = iter(range(10_000))
    starts: list[float] = []

    def answer(now: float):  # type: ignore[no-untyped-def]
        n = next(query) % (down + up)
        if n == 0:
            starts.append(now)
        return SourceError("connection refused", "connection") if n < down else 0.01

    h.source.set("error_ratio", answer)
    return starts


@pytest.mark.parametrize("error_limit", [4, 0])
def test_outages_longer_than_for_are_no_breach_whatever_the_error_limit(tmp_path, error_limit):
    # Each outage (4 ticks, 40 s) outlasts the rule's `for: 30s`: counted as a breach it would
    # fire and roll back. error_limit 4 tolerates it silently; with 0 nothing is tolerated,
    # so on_no_data (alert, the default) applies: one page per outage, resolved when data
    # returns — but still never a rollback.
    h = Harness(tmp_path, ERROR_RULE + f"  error_limit: {error_limit}\n")
    starts = _outages(h, down=4, up=2)
    h.run_for(600)
    assert len(starts) >= 9
    assert h.rollbacks() == 0
    assert h.alerts(kind="rule") == []
    if error_limit:
        assert h.alerts() == []
    else:
        assert len(h.alerts(kind="no_data", status="firing")) == len(starts)
        assert len(h.alerts(kind="no_data", status="resolved")) in (len(starts) - 1, len(starts))
    assert h.engine.states[("fraud-model", "error-rate", "{}")].phase.value == "inactive"


def test_a_flapping_breach_does_not_fire_a_continuous_rule(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    flip = iter(range(10_000))
    h.source.set("error_ratio", lambda now: 0.3 if next(flip) % 2 else 0.01)  # bad, good, bad, good...
    h.run_for(600)
    assert h.rollbacks() == 0
