"""Faults against the real daemon process: a source that times out, SIGTERM in the middle
of an evaluation, and a malformed rule file pushed at reload (SIGHUP)."""

from __future__ import annotations

import signal
import time

import pytest
import requests

from watchdog.demo.model_server import SimulatedModelServer

from tests.http_receiver import Receiver
from tests.integration.daemon_process import ERROR_RATE_RULE, DaemonProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def setup(tmp_path):
    with SimulatedModelServer() as model, Receiver() as alerts:
        daemon = DaemonProcess(tmp_path, model.url, alerts.url("/alert"), ERROR_RATE_RULE)
        yield daemon, model, alerts
        daemon.close()


def test_a_source_that_times_out_is_no_data_not_a_rollback(setup):
    daemon, model, alerts = setup
    daemon.start()
    requests.post(model.url + "/control", json={"mode": "degraded"}, timeout=5)
    time.sleep(1.5)
    requests.post(model.url + "/control", json={"mode": "slow"}, timeout=5)  # answers after 10 s; timeout is 1 s
    wait_until(lambda: 'kind="timeout"' in daemon.metrics(), 20, what="a counted timeout")
    time.sleep(3)
    assert requests.get(model.url + "/rollbacks", timeout=5).json() == []
    assert requests.get(daemon.url + "/healthz", timeout=5).status_code == 200


def test_sigterm_during_a_slow_evaluation_exits_cleanly_within_10s(setup):
    daemon, model, _ = setup
    daemon.start()
    requests.post(model.url + "/control", json={"mode": "slow"}, timeout=5)
    time.sleep(1.2)  # a scrape is in progress now
    code, took = daemon.terminate()
    assert code == 0 and took < 10
    assert daemon.cli("status").returncode == 0  # the state store is intact


def test_a_malformed_rule_file_at_reload_keeps_the_last_good_rules(setup):
    daemon, model, alerts = setup
    daemon.start()
    rules = daemon.dir / "rules.yaml"
    rules.write_text(rules.read_text().replace("above: 0.05", "above: [0.05"))  # broken YAML
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "model_watchdog_config_last_reload_successful 0.0" in daemon.metrics(), 20, what="a rejected reload")
    assert "YAML syntax error" in daemon.log.read_text()
    wait_until(lambda: any(r.json and r.json["kind"] == "config_reload_failed" for r in alerts.requests), 10,
               what="the reload alert")
    requests.post(model.url + "/control", json={"mode": "degraded"}, timeout=5)  # the old rules still guard
    wait_until(lambda: requests.get(model.url + "/rollbacks", timeout=5).json(), 30, what="a rollback by the old rules")
