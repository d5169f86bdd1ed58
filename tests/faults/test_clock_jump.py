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
