"""Fault: the tick's one commit of rule states fails (a crash, a full disk, a lost lock) after
rules fired. What the tick reported must not outlive what it committed: the alerts of a tick
are queued in the same transaction as its states, so a restart neither repeats them nor
fires the rule a second time."""

from __future__ import annotations

import pytest

from watchdog.errors import StateError

from tests.harness import Harness

pytestmark = pytest.mark.timeout(60)

ALERT_RULE = """\
- name: error-rate
  source: model
  query: error_ratio
  above: 0.05
  for: 20s
  action: alert
  severity: warning
"""


def firing(h: Harness) -> list:  # type: ignore[type-arg]
    return [a for a in h.alerts(kind="rule", status="firing")]


def test_a_tick_whose_states_are_not_committed_sends_no_alert_and_the_restart_fires_once(tmp_path) -> None:
    h = Harness(tmp_path, ALERT_RULE)
    h.source.set("error_ratio", 0.2)
    h.run_for(20)  # pending, 10 s of the 20 s `for` seen
    assert h.phases("error-rate") == {"{}": "pending"} and not firing(h)

    save = h.store.save_rule_states

    def crash(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise StateError("the process died here (or the disk is full)")

    h.store.save_rule_states = crash  # type: ignore[method-assign]
    with pytest.raises(StateError):
        h.engine.tick(h.clock.now())  # the rule fires in this tick; its commit fails
    h.notifier.drain(timeout=0)
    assert not firing(h), "an alert went out for a firing the store never recorded"
    h.store.save_rule_states = save  # type: ignore[method-assign]

    h.restart()
    h.run_for(30)
    assert len(firing(h)) == 1, [a.summary for a in firing(h)]
    assert h.phases("error-rate") == {"{}": "firing"}
