"""An alert delivery that still fails after the alerter's own retries is kept in the state
store's queue and tried again with backoff until it goes out or is `alert_max_age` old; a
restart in between loses nothing, and a resolve never overtakes its firing. A real webhook
alerter against a local receiver, the production Notifier on a SQLite store, a fake clock."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tests.alerters.test_webhook_alerter import make_alert, make_alerter
from tests.http_receiver import Receiver, Reply
from watchdog.clock import FakeClock
from watchdog.config.loader import load
from watchdog.daemon import Daemon
from watchdog.metrics import DaemonMetrics
from watchdog.runtime.notify import RETRY_FIRST, Notifier
from watchdog.state.sqlite import SQLiteStateStore

pytestmark = pytest.mark.timeout(60)


class Setup:
    """A notifier and its store on `tmp_path/state.db`; `restart()` makes new ones (a new claimant)."""

    def __init__(self, tmp_path: Path, receiver: Receiver):
        self.path = str(tmp_path / "state.db")
        self.clock = FakeClock()
        self.receiver = receiver
        self.failures: list[str] = []
        self.start()

    def start(self) -> None:
        self.store = SQLiteStateStore(self.path)
        self.metrics = DaemonMetrics()
        alerter = make_alerter(self.receiver.url("/alerts"), retries=0)
        self.notifier = Notifier({"oncall": alerter}, self.metrics, threading.Event(), store=self.store,
                                 clock=self.clock.now, on_failure=lambda _n, a, m: self.failures.append(a.status))

    def restart(self) -> None:
        self.store.close()
        self.start()

    def at(self, seconds: float) -> None:
        """Move the clock on by `seconds` and let the notifier deliver what is due."""
        self.clock.advance(seconds)
        self.notifier.drain(timeout=0)

    def delivered(self) -> list[str]:
        """The statuses the receiver was sent, in order (answered or not)."""
        return [json.loads(r.body)["status"] for r in self.receiver.requests]

    def count(self, outcome: str) -> float | None:
        return self.metrics.registry.get_sample_value("model_watchdog_alerts_total",
                                                      {"alerter": "oncall", "outcome": outcome})


def test_a_receiver_that_fails_three_times_gets_the_alert_on_the_fourth_attempt_with_backoff(
        tmp_path: Path, receiver: Receiver) -> None:
    receiver.script(503, 503, 503)
    s = Setup(tmp_path, receiver)
    s.notifier.notify(["oncall"], make_alert())
    s.at(0)
    assert len(receiver.requests) == 1
    s.at(RETRY_FIRST - 1)
    assert len(receiver.requests) == 1  # not due yet
    s.at(1)  # 5 s after the first failure
    s.at(2 * RETRY_FIRST)  # 10 s after the second
    assert len(receiver.requests) == 3
    s.at(4 * RETRY_FIRST - 1)
    assert len(receiver.requests) == 3
    s.at(1)  # 20 s after the third: accepted
    assert s.delivered() == ["firing"] * 4
    assert s.store.claim_alerts("check", s.clock.now() + 3600) == []  # gone from the queue
    assert (s.count("failed"), s.count("sent")) == (3, 1)
    assert s.failures == ["firing"]  # the history hears of the first failure once


def test_a_restart_between_two_failures_loses_nothing_and_the_resolve_follows_its_firing(
        tmp_path: Path, receiver: Receiver) -> None:
    receiver.script(503, 503)
    s = Setup(tmp_path, receiver)
    s.notifier.notify(["oncall"], make_alert())
    s.at(0)  # firing fails
    s.notifier.notify(["oncall"], make_alert(status="resolved"))
    s.at(1)  # the incident resolves meanwhile: its resolve waits behind the firing
    assert s.delivered() == ["firing"]
    s.restart()
    s.at(RETRY_FIRST)  # the new daemon tries the firing again: fails
    assert s.delivered() == ["firing", "firing"]
    s.restart()
    s.at(2 * RETRY_FIRST)  # accepted, then the resolve
    assert s.delivered() == ["firing", "firing", "firing", "resolved"]
    s.at(3600)
    assert len(receiver.requests) == 4


DAEMON = """\
interval: 10s
state: state.db
alert_max_age: 1m
rule_files: [rules.yaml]
sources:
  model: {{type: scrape, url: "http://127.0.0.1:9/metrics"}}
actuators:
  deploy: {{type: webhook, url: "http://127.0.0.1:9/rollback"}}
alerters:
  oncall: {{type: webhook, url: "{url}", retries: 0}}
targets:
  fraud-model:
    rollback: [deploy]
    alert: [oncall]
"""


def test_a_delivery_older_than_alert_max_age_is_given_up_recorded_and_counted(tmp_path: Path) -> None:
    with Receiver(default=Reply(503, "down")) as receiver:
        (tmp_path / "watchdog.yaml").write_text(DAEMON.format(url=receiver.url("/alerts")))
        (tmp_path / "rules.yaml").write_text("target: fraud-model\nrules: []\n")
        clock = FakeClock(float(int(time.time())))
        daemon = Daemon(load(tmp_path / "watchdog.yaml"), clock=clock)
        try:
            daemon.notifier.notify(["oncall"], make_alert(target="fraud-model"))
            for _ in range(12):  # two minutes, a retry whenever one is due
                daemon.notifier.drain(timeout=0)
                clock.advance(10)
            attempts = len(receiver.requests)
            assert attempts == 4  # at 0, 10, 20 and 40 s (a retry on the first drain after it is due); the next would pass the minute
            (expired,) = daemon.store.history(kinds=["alert_expired"])
            assert "not delivered, given up after 4 attempts" in expired.message
            assert "alert_max_age 1m" in expired.message and "503" in expired.message
            assert expired.data["dedup_key"] == make_alert().dedup_key
            value = daemon.metrics.registry.get_sample_value("model_watchdog_alerts_total",
                                                             {"alerter": "oncall", "outcome": "expired"})
            assert value == 1
            clock.advance(3600)
            daemon.notifier.drain(timeout=0)
            assert len(receiver.requests) == attempts  # never again
        finally:
            daemon.close()
