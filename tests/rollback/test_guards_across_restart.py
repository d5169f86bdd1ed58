"""Guards that depend on when the running version appeared survive a daemon restart: the
initial delay of a version deployed just before the restart still holds after it (it used to
be forgotten, so the restarted daemon acted at once). Engine on fakes, fake clock."""

from __future__ import annotations

from watchdog.rollback.incident import Phase

from tests.harness import DEFAULT_TARGET, Harness
from tests.test_engine import ERROR_RULE

DELAYED = DEFAULT_TARGET + "    initial_delay: 5m\n"


def test_the_initial_delay_of_a_fresh_version_holds_across_a_restart(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DELAYED)
    h.source.set("error_ratio", 0.01)
    h.run_for(30)
    h.version = "v3"  # deployed at t0
    h.run_for(60)
    h.restart()  # one minute into the five-minute delay
    h.source.set("error_ratio", 0.2)
    h.run_for(120)  # fires after 30 s, still inside the delay
    assert h.rollbacks() == 0
    incident = h.engine.desk.load("fraud-model")
    assert incident.phase is Phase.BLOCKED and incident.guard == "initial_delay"
    h.run_for(150)  # the delay ends while the rule still fires: deferred, not dropped
    assert h.rollbacks() == 1
    assert h.actuators["first"].calls[0].version == "v3"


def test_a_version_that_ran_long_before_the_restart_is_not_delayed_again(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DELAYED)
    h.source.set("error_ratio", 0.01)
    h.run_for(30)
    h.version = "v3"
    h.run_for(600)  # past the delay
    h.restart()
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert h.rollbacks() == 1


def test_the_first_version_a_daemon_ever_sees_has_no_initial_delay_after_a_restart_either(tmp_path):
    h = Harness(tmp_path, ERROR_RULE, target=DELAYED)
    h.source.set("error_ratio", 0.01)
    h.run_for(30)  # v2 seen first: nothing changed, no delay (as before the restart)
    h.restart()
    h.source.set("error_ratio", 0.2)
    h.run_for(60)
    assert h.rollbacks() == 1
