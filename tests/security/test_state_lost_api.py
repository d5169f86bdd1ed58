"""A lost state store (file deleted or replaced under the daemon): the API changes nothing,
and the `state_lost` alert goes out from memory, tried again until the alerter takes it.
In process, on the fake clock; the API is driven through `ApiServer.dispatch`."""

from __future__ import annotations

import json
import os
import threading

import pytest

from watchdog.alerters.base import Alert
from watchdog.config.loader import load
from watchdog.daemon import Daemon
from watchdog.metrics import DaemonMetrics
from watchdog.runtime.notify import RETRY_FIRST, RETRY_MAX, Notifier
from watchdog.testing import FakeAlerter

from tests.harness import Harness
from tests.test_engine import ERROR_RULE

TOKEN = "lost-store-token-0123456789"
AUTH = {"authorization": f"Bearer {TOKEN}"}

# Every mutating endpoint of watchdog/web/api.py, with a body it would accept.
MUTATING = [
    ("/api/v1/targets/fraud-model/pause", {"reason": "maintenance"}),
    ("/api/v1/targets/fraud-model/resume", {"reason": "done"}),
    ("/api/v1/targets/fraud-model/rollback", {"reason": "by hand", "force": True}),
    ("/api/v1/targets/fraud-model/drill", {}),
    ("/api/v1/decisions/{decision}/approve", {}),
    ("/api/v1/decisions/{decision}/reject", {"reason": "no"}),
    ("/api/v1/reload", {}),
    ("/api/v1/targets/fraud-model/releases", {"components": {"model": "v3"}}),
]


@pytest.fixture
def daemon(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.01)
    h.store.close()
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "token").chmod(0o600)
    config = tmp_path / "watchdog.yaml"
    config.write_text(config.read_text().replace("rule_files:", "listen: 127.0.0.1:0\napi: {token_file: token}\n"
                                                 "rule_files:", 1))
    d = Daemon(load(config), clock=h.clock)
    d.engine.sources["model"] = d.sources["model"] = h.source
    d.alerter = FakeAlerter("ops")  # type: ignore[attr-defined]
    d.notifier.replace_alerters({"ops": d.alerter})  # type: ignore[attr-defined]
    assert d.run_once() is not None
    server = d.api_server()
    try:
        yield d, server, h
    finally:
        server.stop()
        d.close()


def post(server, path: str, body: dict):  # type: ignore[no-untyped-def]
    return server.dispatch("POST", path, dict(AUTH), json.dumps(body).encode())


def test_every_mutating_endpoint_refuses_with_503_once_the_state_file_is_gone(daemon, tmp_path):
    d, server, h = daemon
    decision = post(server, "/api/v1/targets/fraud-model/rollback", {"reason": "before", "force": True})
    assert decision.status == 202  # the store is there: writes are accepted
    decision_id = decision.body["decision_id"]
    status_before = d.store.get_decision(decision_id).status
    events_before = len(d.store.history(limit=1000))

    os.unlink(tmp_path / "state.db")  # between two ticks: no tick has seen it yet
    for path, body in MUTATING:
        answer = post(server, path.format(decision=decision_id), body)
        assert answer.status == 503, (path, answer.status, answer.body)
        assert answer.content_type == "application/json"
        assert answer.body["state_lost"] is True
        assert answer.body["error"].startswith("refused, nothing was changed: ")
        assert "state.db was deleted" in answer.body["error"]
    # Reads still answer (they show the past); /healthz says why the daemon is unhealthy.
    assert server.dispatch("GET", "/api/v1/status", {}, b"").status == 200
    health = server.dispatch("GET", "/healthz", {}, b"")
    assert health.status == 503 and "state.db was deleted" in health.body
    # The daemon's connection still reads the unlinked file: not one write reached it.
    after = d.store.history(limit=1000)
    assert len(after) == events_before, [e.message for e in after[: len(after) - events_before]]
    from watchdog.rollback.pauses import active_pause
    assert active_pause(d.store, "fraud-model", h.clock.now()) is None
    assert d.store.get_decision(decision_id).status == status_before
    # Noticed by the API, alerted once: the tick that follows neither acts nor alerts again.
    h.clock.advance(10)
    assert d.run_once() is None
    d.notifier.drain(timeout=0)
    assert [a.dedup_key for a in d.alerter.sent if a.kind == "state_lost"] == ["fraud-model/state_lost"]


def test_refusals_happen_only_while_the_store_is_lost(daemon):
    d, server, _ = daemon
    answer = post(server, "/api/v1/targets/fraud-model/pause", {"reason": "maintenance"})
    assert answer.status == 200 and "paused" in answer.body["message"]
    assert d.writes_refused() == ""


def test_the_state_lost_alert_is_tried_again_until_the_alerter_takes_it(daemon, tmp_path):
    d, _, h = daemon
    d.alerter.failures = 3  # the alerting endpoint is down when the store goes
    os.unlink(tmp_path / "state.db")
    h.clock.advance(10)
    assert d.run_once() is None
    d.notifier.drain(timeout=0)
    assert d.alerter.sent == [] and d.alerter.failures == 2
    waits = []
    for _ in range(2):  # 5 s, then 10 s: nothing before a retry is due
        wait = RETRY_FIRST * 2 ** len(waits)
        h.clock.advance(wait - 0.5)
        d.notifier.drain(timeout=0)
        assert d.alerter.failures == 2 - len(waits)
        h.clock.advance(0.5)
        d.notifier.drain(timeout=0)
        waits.append(wait)
    assert d.alerter.failures == 0 and d.alerter.sent == []
    h.clock.advance(RETRY_FIRST * 4)
    d.notifier.drain(timeout=0)
    (alert,) = d.alerter.sent
    assert alert.kind == "state_lost" and alert.severity == "critical"
    h.clock.advance(RETRY_MAX * 2)
    d.notifier.drain(timeout=0)
    assert len(d.alerter.sent) == 1  # delivered once, not again
    failed = d.metrics.registry.get_sample_value("model_watchdog_alerts_total", {"alerter": "ops", "outcome": "failed"})
    assert failed == 3


def test_retries_from_memory_run_in_the_worker_thread_and_stop_with_the_daemon():
    stop = threading.Event()
    alerter = FakeAlerter("ops", failures=1)
    now = [0.0]
    notifier = Notifier({"ops": alerter}, DaemonMetrics(), stop, clock=lambda: now[0])
    notifier.detach_store()
    notifier.start()
    try:
        notifier.notify(["ops"], Alert(status="firing", kind="state_lost", dedup_key="t/state_lost", target="t",
                                       rule="", severity="critical", summary="gone", at="2026-01-01T00:00:00Z"))
        from watchdog.daemon import wait_for
        assert wait_for(lambda: alerter.failures == 0, 5)
        now[0] += RETRY_FIRST
        assert wait_for(lambda: alerter.sent, 10)  # the worker wakes for the retry by itself
    finally:
        notifier.drain(timeout=5)


def test_the_next_daemon_on_the_state_file_resolves_the_state_lost_alerts(daemon, tmp_path):
    d, _, h = daemon
    os.unlink(tmp_path / "state.db")
    h.clock.advance(10)
    assert d.run_once() is None
    d.notifier.drain(timeout=0)
    marker = json.loads((tmp_path / "state.db.lost").read_text())
    assert marker["targets"] == ["fraud-model"] and "was deleted" in marker["reason"]
    d.close()

    # Restored (here: a fresh file) and restarted: the page "stopped guarding" is closed.
    again = Daemon(load(tmp_path / "watchdog.yaml"), clock=h.clock)
    try:
        alerter = FakeAlerter("ops")
        again.notifier.replace_alerters({"ops": alerter})
        again.notifier.drain(timeout=0)
        (resolved,) = alerter.sent
        assert (resolved.status, resolved.kind, resolved.dedup_key) == ("resolved", "state_lost", "fraud-model/state_lost")
        assert "guarding again" in resolved.summary and "was deleted" in resolved.summary
        assert not (tmp_path / "state.db.lost").exists()
    finally:
        again.close()
    third = Daemon(load(tmp_path / "watchdog.yaml"), clock=h.clock)  # once only
    try:
        alerter = FakeAlerter("ops")
        third.notifier.replace_alerters({"ops": alerter})
        third.notifier.drain(timeout=0)
        assert alerter.sent == []
    finally:
        third.close()


def test_cli_commands_that_write_refuse_while_the_daemon_has_lost_its_file(daemon, tmp_path):
    import io

    from watchdog.cli import main

    d, _, h = daemon
    os.unlink(tmp_path / "state.db")
    h.clock.advance(10)
    assert d.run_once() is None
    config = str(tmp_path / "watchdog.yaml")
    for argv in (["pause", "fraud-model", "--reason", "x"], ["resume", "fraud-model"], ["approve", "d1"],
                 ["reject", "d1"], ["rollback", "fraud-model", "--reason", "x"],
                 ["release", "fraud-model", "--component", "model=v3"], ["drill", "fraud-model"]):
        out, err = io.StringIO(), io.StringIO()
        assert main([*argv, "-c", config], out, err) == 2, argv
        assert "refused, nothing was changed: the daemon on" in err.getvalue() and "was deleted" in err.getvalue()
        assert not (tmp_path / "state.db").exists(), argv  # not even an empty file was made
    os.unlink(tmp_path / "state.db.lost")  # what the restarted daemon does
    out, err = io.StringIO(), io.StringIO()
    assert main(["pause", "fraud-model", "--reason", "x", "-c", config], out, err) == 0, err.getvalue()


def test_healthz_notices_the_lost_file_without_waiting_for_a_tick(daemon, tmp_path):
    d, server, _ = daemon
    assert d.health() == (True, "ok")
    os.replace(tmp_path / "state.db", tmp_path / "aside.db")
    health = server.dispatch("GET", "/healthz", {}, b"")
    assert health.status == 503 and "state.db was deleted" in health.body
    d.notifier.drain(timeout=0)
    assert [a.kind for a in d.alerter.sent] == ["state_lost"]
