"""kill -9 in the middle of a rollback: after a restart, exactly one effective rollback.

The decision is committed before the actuator runs; the restarted daemon finds it unfinished
and re-sends the step with the same idempotency key (the decision id), which the receiver
de-duplicates. The history tells the whole story and the target stays held.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from watchdog.demo.model_server import SimulatedModelServer

from tests.http_receiver import Receiver
from tests.integration.daemon_process import ACCURACY_RULE as RULE, decisions, DaemonProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]



def test_kill_9_while_the_rollback_webhook_is_in_flight(tmp_path):
    with SimulatedModelServer() as model, Receiver() as alerts:
        requests.post(model.url + "/control", json={"rollback_delay": 30}, timeout=5)
        daemon = DaemonProcess(tmp_path, model.url, alerts.url("/alert"), RULE, with_version=False)
        try:
            daemon.start()
            requests.post(model.url + "/control", json={"mode": "degraded"}, timeout=5)
            wait_until(lambda: requests.get(model.url + "/rollbacks", timeout=5).json(), 30, what="the webhook call")
            daemon.kill()  # SIGKILL while the webhook waits for its (delayed) answer
            ((decision_id, status),) = decisions(tmp_path / "state.db")
            assert status == "running"

            requests.post(model.url + "/control", json={"rollback_delay": 0}, timeout=5)
            daemon.start()
            wait_until(lambda: decisions(tmp_path / "state.db")[0][1] == "succeeded", 30, what="the resumed rollback")
            calls = requests.get(model.url + "/rollbacks", timeout=5).json()
            assert [c["idempotency_key"] for c in calls] == [decision_id, decision_id]
            assert [c["effective"] for c in calls] == [True, False]
            assert daemon.status()["targets"]["fraud-model"]["held"]
            history = daemon.cli("history", "--limit", "100").stdout
            assert history.count("rollback decided") == 1
            assert f"carrying out rollback {decision_id}" in history and "rollback completed" in history
        finally:
            daemon.close()


SCRIPT = """\
import os, sys, time
marker = os.path.join(sys.argv[1], os.environ["WATCHDOG_DECISION_ID"])
if not os.path.exists(marker):          # idempotent by decision id
    with open(os.path.join(sys.argv[1], "effects"), "a") as f:
        f.write(os.environ["WATCHDOG_DECISION_ID"] + "\\n")
    open(marker, "w").close()
with open(os.path.join(sys.argv[1], "runs"), "a") as f:
    f.write(os.environ["WATCHDOG_DECISION_ID"] + "\\n")
time.sleep(float(open(os.path.join(sys.argv[1], "sleep")).read()))
"""


def test_kill_9_while_a_rollback_command_sleeps(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "sleep").write_text("60")
    (tmp_path / "rollback.py").write_text(SCRIPT)
    with SimulatedModelServer() as model, Receiver() as alerts:
        daemon = DaemonProcess(tmp_path, model.url, alerts.url("/alert"), RULE, with_version=False)
        daemon.roll_back_by_command([sys.executable, str(tmp_path / "rollback.py"), str(work)])
        try:
            daemon.start()
            requests.post(model.url + "/control", json={"mode": "degraded"}, timeout=5)
            wait_until(lambda: (work / "runs").exists(), 30, what="the rollback command to start")
            daemon.kill()
            (work / "sleep").write_text("0")
            daemon.start()
            wait_until(lambda: decisions(tmp_path / "state.db")[0][1] == "succeeded", 30, what="the resumed rollback")
            runs = (work / "runs").read_text().split()
            assert len(runs) == 2 and runs[0] == runs[1]  # re-run with the same decision id...
            assert (work / "effects").read_text().split() == runs[:1]  # ...and the effect happened once
        finally:
            daemon.close()
            subprocess.run(["pkill", "-f", str(tmp_path / "rollback.py")], check=False)
