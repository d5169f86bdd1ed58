"""Fault: the wall clock jumps (NTP step, VM resume). No crash, no double action, no false fire."""

from tests.harness import Harness
from tests.fixtures.rules import ERROR_RULE


def test_a_backward_jump_neither_fires_early_nor_crashes(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.2)
    h.run_for(20)  # pending
    h.clock.advance(-3600)
    h.run_for(20)
    assert h.rollbacks() == 0  # an hour "before" the breach began proves nothing
    h.clock.advance(3600)
    h.run_for(20)
    assert h.rollbacks() == 0  # the jump back is a gap too: the breach is observed afresh
    h.run_for(20)
    assert h.rollbacks() == 1


def test_a_forward_jump_acts_once(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.2)
    h.run_for(10)
    h.clock.advance(7200)
    h.run_for(100)
    assert h.rollbacks() == 1


def test_no_early_fire_after_a_jump_forward(tmp_path):
    """One breaching tick, a two-hour jump, one more tick: the breach was not observed for
    `for: 30s`, so nothing fires until it has been, counted from after the jump."""
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.2)
    h.tick()
    h.clock.advance(7200)
    h.tick()
    assert h.rollbacks() == 0 and h.phases("error-rate") == {"{}": "pending"}
    assert "not evaluated for 2h" in h.store.history(kinds=["state"], limit=2)[1].message
    reports = h.run_for(30)
    assert h.rollbacks() == 1
    restarted = reports[0].at - h.interval
    assert [r.at for r in reports if r.decisions] == [restarted + 30]


def test_a_backward_jump_that_stays_does_not_delay_the_rollback_by_the_jump(tmp_path):
    """The clock stepped back an hour and stays there (it was an hour fast): the scheduler ticks
    on (runtime/scheduler.py), and the breach that goes on is acted on once observed for `for`
    on the new clock, not an hour later (pending_since lay an hour in the future, so
    `now - pending_since >= for` held only after the hour had passed again)."""
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.2)
    h.run_for(20)  # pending, 10 s of the 30 s seen
    h.clock.advance(-3600)
    reports = h.run_for(60)
    assert h.rollbacks() == 1
    stepped = reports[0].at
    assert [r.at for r in reports if r.decisions] == [stepped + 30]  # observed afresh from the step


def test_breaches_counted_before_a_backward_jump_do_not_count_for_an_hour(tmp_path):
    """failure_limit counts the breaches within `for`; those recorded before the clock stepped back
    lie in the future of the new clock and counted as recent for the whole hour."""
    rule = ERROR_RULE.replace("  for: 30s\n", "  for: 60s\n  failure_limit: 2\n")
    h = Harness(tmp_path, rule)
    h.source.set("error_ratio", 0.2)
    h.run_for(20)  # two breaches, the limit is more than 2
    h.source.set("error_ratio", 0.01)
    h.clock.advance(-3600)
    h.run_for(100)  # OK for 100 s on the new clock
    h.source.set("error_ratio", 0.2)
    h.run_for(10)  # one breach now: 1 within the last 60 s, not 3
    assert h.rollbacks() == 0
