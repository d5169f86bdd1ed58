"""Faults against the real daemon process: a source that times out, SIGTERM while a scrape
is in flight, and a malformed rule file pushed at reload (SIGHUP)."""

from __future__ import annotations

import signal
import threading
import time

import pytest
import requests

from watchdog.demo.model_server import SimulatedModelServer

from tests.http_receiver import Receiver, Reply, Request
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
    daemon.wait_evaluations(6)  # longer than `for: 4s` of timeouts: as a breach it would have fired
    assert requests.get(model.url + "/rollbacks", timeout=5).json() == []
    assert requests.get(daemon.url + "/healthz", timeout=5).status_code == 200


def test_sigterm_while_a_scrape_is_in_flight_exits_cleanly_within_10s(tmp_path):
    # A proxy in front of the model server holds a /metrics request once asked to, so the
    # signal is sent while a scrape is provably in flight (the request is not answered yet).
    hold, in_flight, release = threading.Event(), threading.Event(), threading.Event()
    with SimulatedModelServer() as model, Receiver() as alerts:
        def forward(request: Request) -> Reply:
            if request.path.startswith("/metrics") and hold.is_set():
                in_flight.set()
                release.wait(30)
            answer = requests.request(request.method, model.url + request.path, data=request.body, timeout=10)
            return Reply(answer.status_code, answer.content, {"Content-Type": answer.headers.get("Content-Type", "")})

        with Receiver(default=forward) as proxy:
            daemon = DaemonProcess(tmp_path, proxy.url(""), alerts.url("/alert"), ERROR_RATE_RULE)
            try:
                daemon.start()
                hold.set()
                assert in_flight.wait(20), "no scrape reached the proxy"
                code, took = daemon.terminate()
                assert not release.is_set()  # the scrape was still unanswered when the signal came
                release.set()
                assert code == 0 and took < 10
                log = daemon.log.read_text()
                assert "finishing the evaluation in progress" in log and "stopped" in log
                assert daemon.cli("status").returncode == 0  # the state store is intact
            finally:
                release.set()
                daemon.close()


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
