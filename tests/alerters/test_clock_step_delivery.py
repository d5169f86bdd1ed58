"""A delivery waiting for a retry when the wall clock steps back (NTP, a VM resumed): its retry
time and its age (`alert_max_age`) were measured on the old clock. Neither may wait the step's
length more: a retry planned before the step is due at once, and the age counts on from the
step (docs/operations.md, "Wall-clock steps"). The production Notifier, a fake clock."""

from __future__ import annotations

import threading
from pathlib import Path

from tests.alerters.test_webhook_alerter import make_alert
from watchdog.clock import FakeClock, StepBack
from watchdog.metrics import DaemonMetrics
from watchdog.runtime.notify import RETRY_FIRST, Notifier
from watchdog.state.sqlite import SQLiteStateStore
from watchdog.testing import FakeAlerter

HOUR = 3600.0


class Setup:
    def __init__(self, tmp_path: Path, failures: int, max_age: float = 24 * HOUR, steps: StepBack | None = None):
        self.clock = FakeClock()
        self.store = SQLiteStateStore(str(tmp_path / "state.db"))
        self.metrics = DaemonMetrics()
        self.alerter = FakeAlerter("oncall", failures=failures)
        self.expired: list[str] = []
        self.notifier = Notifier({"oncall": self.alerter}, self.metrics, threading.Event(), store=self.store,
                                 clock=self.clock.now, max_age=max_age,
                                 on_expired=lambda _n, _a, why: self.expired.append(why), steps=steps)

    def at(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.notifier.drain(timeout=0)


def test_a_queued_retry_planned_before_a_step_back_is_not_deferred_by_the_step(tmp_path: Path) -> None:
    s = Setup(tmp_path, failures=1)
    s.notifier.notify(["oncall"], make_alert())
    s.at(0)  # fails: tried again in RETRY_FIRST
    assert s.alerter.sent == []
    s.clock.advance(-HOUR)
    s.at(1)
    assert [a.status for a in s.alerter.sent] == ["firing"]  # not an hour later


def test_alert_max_age_counts_on_from_a_step_back(tmp_path: Path) -> None:
    s = Setup(tmp_path, failures=1000, max_age=60)
    s.notifier.notify(["oncall"], make_alert())
    s.at(0)
    s.at(RETRY_FIRST)  # two attempts, 5 s old
    s.clock.advance(-HOUR)
    for _ in range(20):  # 100 s on the new clock
        s.at(RETRY_FIRST)
    assert len(s.expired) == 1 and "alert_max_age 1m" in s.expired[0]  # given up, not an hour later
    assert s.store.claim_alerts("check", s.clock.now() + 2 * HOUR) == []


def test_a_retry_from_memory_planned_before_a_step_back_is_not_deferred_by_the_step(tmp_path: Path) -> None:
    s = Setup(tmp_path, failures=1)
    s.notifier.detach_store()  # the store is lost: failed deliveries are retried from memory
    s.notifier.notify(["oncall"], make_alert())
    s.at(0)
    assert s.alerter.sent == []
    s.clock.advance(-HOUR)
    s.at(1)
    assert [a.status for a in s.alerter.sent] == ["firing"]


def test_alert_max_age_does_not_count_a_step_forward_the_daemon_saw(tmp_path: Path) -> None:
    """The daemon's StepBack (shared, fed by the scheduler's watcher): a step forward is not age."""
    steps = StepBack()
    s = Setup(tmp_path, failures=1000, max_age=120, steps=steps)
    s.notifier.notify(["oncall"], make_alert())
    s.at(0)
    s.at(RETRY_FIRST)  # two attempts, 5 s old
    s.clock.set(s.clock.now() + HOUR)
    steps.clock_stepped(HOUR, s.clock.now())  # what the watcher reports
    s.at(2 * RETRY_FIRST)
    assert s.expired == []  # 15 s old, not an hour
    for _ in range(30):
        s.at(RETRY_FIRST)
    assert len(s.expired) == 1 and "alert_max_age 2m" in s.expired[0]
