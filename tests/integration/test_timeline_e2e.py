"""An incident's timeline from the real `model-watchdog run` process: a simulated model
degrades, is rolled back by the webhook and recovers; `incidents --json`, the status page's
timeline plot and the time_to_* histograms all tell the same story."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
import requests

from watchdog.demo.model_server import SimulatedModelServer

from tests.http_receiver import Receiver
from tests.integration.daemon_process import ERROR_RATE_RULE, DaemonProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ORDER = ("breach_started_at", "pending_at", "fired_at", "decided_at", "actuated_at", "verified_at", "recovered_at")


def _incidents(daemon: DaemonProcess) -> list[dict]:
    done = daemon.cli("incidents", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_rollback_leaves_a_complete_timeline(tmp_path):
    with SimulatedModelServer(version="v2", previous_versions=("v1",)) as model, Receiver() as alerts:
        daemon = DaemonProcess(tmp_path, model.url, alerts.url("/alert"), ERROR_RATE_RULE)
        try:
            daemon.start()
            daemon.wait_evaluations(5)
            requests.post(model.url + "/control", json={"mode": "degraded"}, timeout=5).raise_for_status()
            wait_until(lambda: (items := _incidents(daemon)) and items[0]["recovered_at"], 60,
                       what="the incident's recovery")
            (item,) = _incidents(daemon)
            assert item["target"] == "fraud-model" and item["rule"] == "error-rate" and item["status"] == "succeeded"
            assert all(item[k] is not None for k in ORDER), json.dumps(item)
            times = [datetime.fromisoformat(item[k].replace("Z", "+00:00")) for k in ORDER]
            assert times == sorted(times), json.dumps(item)
            assert 4 <= item["time_to_detect_s"] < 15  # `for: 4s` at 1 s evaluations
            assert 0 <= item["time_to_act_s"] < 15
            assert item["time_to_detect_s"] <= item["time_to_recover_s"] < 60

            page = requests.get(daemon.url + "/", timeout=5).text
            assert "<h2>Incidents</h2>" in page and item["decision_id"] in page
            assert "<svg" in page and "<polyline" in page and "stroke-dasharray" in page  # values and threshold
            assert item["fired_at"] in page
            metrics = daemon.metrics()
            for name in ("detect", "act", "recover"):
                assert f'model_watchdog_time_to_{name}_seconds_count{{target="fraud-model"}} 1.0' in metrics
            assert abs(_sum(metrics, "detect") - item["time_to_detect_s"]) < 0.01
            assert abs(_sum(metrics, "recover") - item["time_to_recover_s"]) < 0.01
        finally:
            daemon.close()


def _sum(metrics: str, name: str) -> float:
    prefix = f'model_watchdog_time_to_{name}_seconds_sum{{target="fraud-model"}} '
    return float(next(line for line in metrics.splitlines() if line.startswith(prefix))[len(prefix):])
