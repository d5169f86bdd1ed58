"""Scheduled rollback drills inside the daemon (issue 15), driven by a fake clock: the
schedule, the record in the history, the gauges, the alert that fires on a failed drill and
resolves on the next one that passes, and `POST /api/v1/targets/{t}/drill`."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from watchdog.clock import FakeClock
from watchdog.config.loader import load
from watchdog.daemon import Daemon
from watchdog.testing import FakeAlerter

from tests.http_receiver import Reply, Receiver

TOKEN = "a-long-api-token-0123456789"
HOUR = 3600.0

CONFIG = """\
interval: 10s
state: state.db
listen: 127.0.0.1:0
rule_files: [rules.yaml]
api: {{token_file: token}}
{default}
sources:
  model: {{type: scrape, url: "http://127.0.0.1:9/metrics"}}
actuators:
  deploy: {{type: webhook, url: "{hook}/rollback", current_url: "{hook}/current", retries: 0}}
alerters:
  ops: {{type: log}}
targets:
  fraud-model:
    rollback: [deploy]
    alert: [ops]
{drill}
  other-model:
    rollback: [deploy]
    alert: [ops]
"""


@pytest.fixture
def hook():
    with Receiver() as receiver:
        receiver.default = Reply(200, {"version": "v1"})  # type: ignore[assignment]
        yield receiver


def daemon_on(tmp_path, hook, drill: str = "    drill: {every: 6h}", default: str = "",
              clock: FakeClock | None = None) -> tuple[Daemon, FakeClock]:
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "token").chmod(0o600)
    (tmp_path / "watchdog.yaml").write_text(CONFIG.format(hook=hook.url("").rstrip("/"), drill=drill, default=default))
    (tmp_path / "rules.yaml").write_text("target: fraud-model\nrules: []\n")
    # From the real time: replicas' liveness is compared with their wall-clock heartbeats.
    clock = clock or FakeClock(float(int(time.time()) // 10 * 10))  # on the 10 s tick grid
    daemon = Daemon(load(tmp_path / "watchdog.yaml"), clock=clock)
    alerter = FakeAlerter("ops")
    daemon.alerters["ops"] = alerter
    daemon.notifier.replace_alerters(daemon.alerters)
    daemon.test_alerter = alerter  # type: ignore[attr-defined]
    return daemon, clock


def ticks(daemon: Daemon, clock: FakeClock, seconds: float) -> None:
    for _ in range(int(seconds // 10)):
        daemon.run_once()
        assert daemon.drill_worker.wait(10)  # the drills due on that tick ran (off the tick thread)
        daemon.notifier.drain(timeout=0)
        clock.advance(10)


def drills(daemon: Daemon, target: str = "fraud-model") -> list:
    return [e for e in reversed(daemon.store.history(target, kinds=["drill"], limit=100))]


def gauge(daemon: Daemon, name: str, target: str = "fraud-model") -> float | None:
    return daemon.metrics.registry.get_sample_value(name, {"target": target})


def test_drills_run_on_schedule_are_recorded_and_exported(tmp_path, hook):
    daemon, clock = daemon_on(tmp_path, hook)
    try:
        start = clock.now()
        ticks(daemon, clock, 13 * HOUR)
        runs = drills(daemon)
        assert [e.at - start for e in runs] == [0, 6 * HOUR, 12 * HOUR]
        assert all("rollback drill by schedule: ready" in e.message for e in runs)
        assert drills(daemon, "other-model") == []  # no drill of its own, no default
        assert gauge(daemon, "model_watchdog_drill_ready") == 1
        assert gauge(daemon, "model_watchdog_drill_last_success_timestamp_seconds") == start + 12 * HOUR
        assert [r.path for r in hook.requests] == ["/current"] * 3  # read-back only: nothing rolled back
    finally:
        daemon.close()


def test_the_daemon_wide_default_and_a_restart_keep_the_schedule(tmp_path, hook):
    daemon, clock = daemon_on(tmp_path, hook, drill="", default="drill: {every: 24h}")
    start = clock.now()
    ticks(daemon, clock, HOUR)
    daemon.close()
    clock.advance(60)  # the stopped replica is no longer live (it would share the targets)
    daemon, _ = daemon_on(tmp_path, hook, drill="", default="drill: {every: 24h}", clock=clock)  # a restart
    try:
        ticks(daemon, clock, 23 * HOUR)
        assert [e.at - start for e in drills(daemon)] == [0, 24 * HOUR]  # not again at the restart
        assert [e.at - start for e in drills(daemon, "other-model")] == [0, 24 * HOUR]
    finally:
        daemon.close()


def test_a_failed_drill_alerts_once_and_the_next_passing_one_resolves_it(tmp_path, hook):
    daemon, clock = daemon_on(tmp_path, hook, drill="    drill: {every: 1h}")
    try:
        hook.script(Reply(503, "down"), Reply(503, "down"))
        ticks(daemon, clock, 2 * HOUR)  # two failed drills
        sent = [a for a in daemon.test_alerter.sent if a.kind == "drill_failed"]  # type: ignore[attr-defined]
        assert [(a.status, a.dedup_key) for a in sent] == [("firing", "fraud-model/drill")]
        assert "rollback drill failed" in sent[0].summary and gauge(daemon, "model_watchdog_drill_ready") == 0
        ticks(daemon, clock, HOUR)  # the read-back works again
        sent = [a for a in daemon.test_alerter.sent if a.kind == "drill_failed"]  # type: ignore[attr-defined]
        assert [(a.status, a.dedup_key) for a in sent] == [("firing", "fraud-model/drill"),
                                                          ("resolved", "fraud-model/drill")]
        assert gauge(daemon, "model_watchdog_drill_ready") == 1
    finally:
        daemon.close()


def test_post_drill_runs_one_now_with_the_token(tmp_path, hook):
    daemon, clock = daemon_on(tmp_path, hook, drill="")
    url = daemon.start()
    try:
        drill_url = url + "/api/v1/targets/fraud-model/drill"
        assert requests.post(drill_url, json={}, timeout=5).status_code == 401
        answer = requests.post(drill_url, json={}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert answer.status_code == 200 and answer.json()["ready"] is True
        assert answer.json()["steps"][0]["sees"] == "v1"
        (event,) = drills(daemon)
        assert "rollback drill by api: ready" in event.message
        assert gauge(daemon, "model_watchdog_drill_ready") == 1
        nope = requests.post(url + "/api/v1/targets/nope/drill", json={}, headers={"Authorization": f"Bearer {TOKEN}"},
                             timeout=5)
        assert nope.status_code == 400
    finally:
        daemon.shutdown()


def test_a_drill_that_failed_before_a_restart_is_resolved_by_the_next_passing_one(tmp_path, hook):
    daemon, clock = daemon_on(tmp_path, hook, drill="    drill: {every: 1h}")
    hook.script(Reply(503, "down"))
    ticks(daemon, clock, HOUR)  # one failed drill: alerted
    daemon.close()
    clock.advance(60)
    daemon, _ = daemon_on(tmp_path, hook, drill="    drill: {every: 1h}", clock=clock)  # a restart
    try:
        daemon.notifier.drain(timeout=0)
        assert [a for a in daemon.test_alerter.sent if a.kind == "drill_failed"] == []  # type: ignore[attr-defined]
        assert gauge(daemon, "model_watchdog_drill_ready") == 0  # read back at the start
        ticks(daemon, clock, HOUR)  # the next drill passes: the alert from before the restart resolves
        sent = [a for a in daemon.test_alerter.sent if a.kind == "drill_failed"]  # type: ignore[attr-defined]
        assert [(a.status, a.dedup_key) for a in sent] == [("resolved", "fraud-model/drill")]
    finally:
        daemon.close()


def blocking_current(hook) -> threading.Event:  # type: ignore[no-untyped-def]
    """The actuator's read-back (`/current`) hangs until the returned event is set."""
    release = threading.Event()

    def answer(request):  # type: ignore[no-untyped-def]
        if request.path == "/current":
            release.wait(30)
        return Reply(200, {"version": "v1"})

    hook.default = answer
    return release


def returns_within(seconds: float, call) -> bool:  # type: ignore[no-untyped-def]
    done = threading.Event()
    threading.Thread(target=lambda: (call(), done.set()), daemon=True).start()
    return done.wait(seconds)


def test_a_slow_actuator_read_in_a_scheduled_drill_does_not_delay_the_ticks(tmp_path, hook):
    daemon, clock = daemon_on(tmp_path, hook, drill="    drill: {every: 1h}")
    release = blocking_current(hook)
    try:
        assert returns_within(5, daemon.run_once)  # the tick that makes the drill due
        clock.advance(10)
        assert returns_within(5, daemon.run_once)  # the next tick, while the read still hangs
        assert daemon.last_tick == clock.now() and drills(daemon) == []
        release.set()
        assert daemon.drill_worker.wait(10)
        (event,) = drills(daemon)
        assert "rollback drill by schedule: ready" in event.message and event.at == clock.now() - 10
        assert gauge(daemon, "model_watchdog_drill_ready") == 1
    finally:
        release.set()
        daemon.close()


def test_a_slow_actuator_read_in_an_api_drill_does_not_hold_the_tick_lock(tmp_path, hook):
    daemon, clock = daemon_on(tmp_path, hook, drill="")
    release = blocking_current(hook)
    done: list = []
    worker = threading.Thread(target=lambda: done.append(daemon.drill_now("fraud-model", "api")), daemon=True)
    try:
        worker.start()
        hook.wait_for(1, timeout=5)  # the read-back has been asked
        assert returns_within(5, daemon.run_once)
        release.set()
        worker.join(10)
        assert done and done[0].ready and len(drills(daemon)) == 1
    finally:
        release.set()
        daemon.close()
