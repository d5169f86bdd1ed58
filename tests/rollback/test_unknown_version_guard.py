"""While a target reports an invalid version, what runs is unknown: a rollback is deferred
(guard `version_unknown`), not dropped, and happens on the tick a valid version is reported
again if the rule still fires. `unknown_version: proceed` keeps rolling back from the last
valid version. The production engine on fakes and the fake clock (tests/harness.py)."""

from __future__ import annotations

from watchdog.rollback.incident import Phase

from tests.harness import DEFAULT_TARGET, Harness
from tests.test_engine import ERROR_RULE

INVALID = "../../etc/passwd"


def breach_on_an_invalid_version(h: Harness) -> None:
    h.source.set("error_ratio", 0.01)
    h.run_for(30)  # v2 runs, seen and valid
    h.version = INVALID
    h.source.set("error_ratio", 0.2)
    h.run_for(120)  # fires after 30 s; the target still reports garbage


def test_a_rollback_is_deferred_while_the_running_version_is_invalid(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    breach_on_an_invalid_version(h)
    assert h.rollbacks() == 0
    incident = h.engine.desk.load("fraud-model")
    assert incident.phase is Phase.BLOCKED and incident.guard == "version_unknown"
    assert "the running version is unknown" in incident.reason and "last valid one was v2" in incident.reason
    (blocked,) = h.alerts(kind="rollback_blocked")  # one alert for the whole episode, not one per tick
    assert blocked.status == "firing" and "version is unknown" in blocked.summary
    assert [a.status for a in h.alerts(kind="invalid_version")] == ["firing"]
    decisions = h.store.history(kinds=["decision"], limit=5)
    assert decisions and decisions[0].data["guard"] == "version_unknown"
    blocked_total = h.metrics.registry.get_sample_value("model_watchdog_decisions_total",
                                                        {"target": "fraud-model", "outcome": "blocked"})
    assert blocked_total == 1


def test_the_deferred_rollback_happens_when_a_valid_version_is_reported_and_the_rule_still_fires(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    breach_on_an_invalid_version(h)
    assert h.rollbacks() == 0
    h.version = "v2"  # the same valid version as before: the rule's evidence still stands
    report = h.tick()
    assert h.rollbacks() == 1 and report.decisions  # on that very tick
    call = h.actuators["first"].calls[0]
    assert call.version == "v2"
    assert [a.status for a in h.alerts(kind="rollback_blocked")] == ["firing", "resolved"]
    assert [a.status for a in h.alerts(kind="invalid_version")] == ["firing", "resolved"]


def test_a_deferred_rollback_is_dropped_if_the_rule_recovers_meanwhile(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    breach_on_an_invalid_version(h)
    h.source.set("error_ratio", 0.01)
    h.run_for(30)
    h.version = "v2"
    h.run_for(60)
    assert h.rollbacks() == 0
    assert h.engine.desk.load("fraud-model").phase is Phase.CLEAR
    assert [a.status for a in h.alerts(kind="rollback_blocked")] == ["firing", "resolved"]


def test_unknown_version_proceed_rolls_back_from_the_last_valid_version(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    unknown_version: proceed\n")
    breach_on_an_invalid_version(h)
    assert h.rollbacks() == 1
    assert h.actuators["first"].calls[0].version == "v2"
    assert h.alerts(kind="rollback_blocked") == []


def test_a_version_query_that_fails_does_not_defer(tmp_path):
    """Only an invalid *report* makes the version unknown: a version source that is down (as a
    model server often is when it breaches) must not stop rollbacks, `no_data: rollback` included."""
    from watchdog.errors import SourceError

    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.01)
    h.run_for(30)
    h.source.set("model_info", SourceError("connection refused", "connection"))
    h.source.set("error_ratio", 0.2)
    h.run_for(120)
    assert h.rollbacks() == 1


def test_a_new_valid_version_after_the_invalid_ones_is_judged_afresh_then_rolled_back(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    breach_on_an_invalid_version(h)
    h.version = "v3"  # what runs now is known again, and it is new: old evidence proves nothing about it
    h.tick()
    assert h.rollbacks() == 0
    h.run_for(40)  # still breaching: pending, then firing after `for` (30 s) on v3
    assert h.rollbacks() == 1
    call = h.actuators["first"].calls[0]
    assert call.version == "v3" and call.previous_version == "v2"
