"""Fault: the wall clock steps back (NTP correction, VM resume) while a guard counts from a time
recorded before the step. That time lies in the new clock's future; it counts as the moment the
step was seen, so a guard defers a rollback at most its configured length after the step, never
the step's length more (docs/operations.md, "Wall-clock steps")."""

from __future__ import annotations

from tests.harness import DEFAULT_TARGET, Harness
from tests.fixtures.rules import ERROR_RULE

HOUR = 3600.0


def decided_at(h: Harness) -> list[float]:
    return [d.created_at for d in reversed(h.store.decisions(target="fraud-model")) if d.status != "skipped"]


def rolled_back_then_stepped(h: Harness, after: float) -> float:
    """One rollback, the rolled-back-to version healthy for `after` seconds, the clock steps
    back an hour, then the next deploy is bad. Returns the time of the step (new clock)."""
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert h.rollbacks() == 1
    h.version = "v1"
    h.source.set("error_ratio", 0.01)
    h.run_for(after)
    h.clock.advance(-HOUR)
    stepped = h.clock.now()
    h.version = "v3"
    h.source.set("error_ratio", 0.2)
    return stepped


def test_the_cooldown_ends_at_most_a_cooldown_after_a_backward_step(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    cooldown: 10m\n")
    stepped = rolled_back_then_stepped(h, after=120)
    h.run_for(15 * 60)
    assert h.rollbacks() == 2  # not an hour and 8 minutes later
    first, second = sorted(decided_at(h), reverse=True)  # (the first lies in the new clock's future)
    # the cooldown left at the step (10 min less the 2 min before it), give or take a tick: in real
    # time the two rollbacks are never closer than the cooldown
    assert first - HOUR + 600 <= second <= first - HOUR + 600 + 2 * h.interval
    assert second < stepped + 600


def test_the_rate_limit_window_moves_on_at_most_a_window_after_a_backward_step(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    max_rollbacks: {count: 1, window: 30m}\n")
    stepped = rolled_back_then_stepped(h, after=120)
    h.run_for(35 * 60)
    assert h.rollbacks() == 2
    first, second = sorted(decided_at(h), reverse=True)
    assert first - HOUR + 1800 <= second <= first - HOUR + 1800 + 2 * h.interval
    assert second < stepped + 1800


def test_the_initial_delay_ends_at_most_a_delay_after_a_backward_step(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    initial_delay: 5m\n")
    h.source.set("error_ratio", 0.01)
    h.run_for(30)
    h.version = "v3"  # bad from the moment it is deployed
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    h.clock.advance(-HOUR)
    stepped = h.clock.now()
    h.run_for(10 * 60)
    assert h.rollbacks() == 1
    assert stepped <= decided_at(h)[0] <= stepped + 300 + 10


def test_an_approval_expires_at_most_a_timeout_after_a_backward_step(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    approve: required\n    approve_timeout: 5m\n")
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert [a.status for a in h.alerts(kind="approval_required")] == ["firing"]
    h.clock.advance(-HOUR)
    stepped = h.clock.now()
    h.run_for(5 * 60 + 10)
    # the request expired (resolved) and was asked again, within the timeout from the step
    assert [a.status for a in h.alerts(kind="approval_required")] == ["firing", "resolved", "firing"]
    decisions = h.store.decisions(target="fraud-model", limit=50)
    assert sorted(d.status for d in decisions) == ["pending", "skipped"]
    assert max(decisions, key=lambda d: d.created_at).status == "skipped"  # the one asked before the step
    assert stepped < h.clock.now() <= stepped + 300 + 20


def test_a_verify_window_ends_at_most_a_window_after_a_backward_step(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    verify_window: 2m\n")
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert h.rollbacks() == 1
    h.clock.advance(-HOUR)  # the rollback did not restore health, and the clock steps back
    h.run_for(2 * 60 + 20)
    assert len(h.alerts(kind="rollback_ineffective")) == 1  # not an hour later


def test_a_step_back_before_a_restart_counts_from_the_first_tick_after_it(tmp_path):
    """The daemon did not see the step (it was down): a time in the future counts from the first
    tick that sees it (the incident's start lies ahead by at most the step), so the cooldown is
    at most the configured one after the restart, and not less than it in real time."""
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    cooldown: 10m\n")
    rolled_back_then_stepped(h, after=120)
    h.restart()
    restarted = h.clock.now()
    h.run_for(15 * 60)
    assert h.rollbacks() == 2
    first, second = sorted(decided_at(h), reverse=True)
    assert first - HOUR + 600 <= second <= restarted + 600


def test_a_pause_for_a_duration_ends_at_most_its_duration_after_a_backward_step(tmp_path):
    from watchdog.rollback import manual
    h = Harness(tmp_path, ERROR_RULE)
    paused = h.clock.now()
    manual.pause(h.loaded, h.store, "fraud-model", "alice", "migration", paused, duration=1800)
    h.source.set("error_ratio", 0.2)
    h.run_for(5 * 60)
    h.clock.advance(-HOUR)
    stepped = h.clock.now()
    h.run_for(30 * 60)
    assert h.rollbacks() == 1  # not an hour and 25 minutes later
    (decided,) = decided_at(h)
    assert paused - HOUR + 1800 <= decided <= paused - HOUR + 1800 + 2 * h.interval and decided < stepped + 1800


def test_a_manual_rollback_after_a_backward_step_sees_the_cooldown_left_at_the_step(tmp_path):
    """The CLI is a new process that saw no step: it learns it from the incident's start."""
    import pytest
    from watchdog.rollback import manual
    h = Harness(tmp_path, ERROR_RULE, target=DEFAULT_TARGET + "    cooldown: 10m\n")
    stepped = rolled_back_then_stepped(h, after=120)
    h.source.set("error_ratio", 0.01)
    h.run_for(60)  # v3 runs, healthy: the hold is lifted
    with pytest.raises(manual.OperatorError, match="cooldown"):
        manual.manual_rollback(h.loaded, h.store, "fraud-model", "alice", "looks bad", h.clock.now())
    h.clock.advance(stepped + 600 - h.clock.now())  # the 10 min cooldown is over, counted from the step
    done = manual.manual_rollback(h.loaded, h.store, "fraud-model", "alice", "looks bad", h.clock.now())
    assert done.decision_id
