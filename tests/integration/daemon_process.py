"""The real daemon as a child process, the config it runs on, and the model server and alert
receiver around it, for end-to-end tests.

The fixtures `model`, `alerts` and `daemons` are imported by the test modules that use them
(`from tests.integration.daemon_process import alerts, daemons, model  # noqa: F401`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from watchdog.demo.model_server import SimulatedModelServer

from tests.http_receiver import Receiver

CONFIG = """\
interval: 1s
state: state.db
listen: 127.0.0.1:{port}
rule_files: [rules.yaml]
sources:
  model: {{type: scrape, url: "{model_url}/metrics", timeout: 1s}}
actuators:
  rollback-hook: {{type: webhook, url: "{model_url}/rollback", timeout: 5s, backoff: 200ms}}
alerters:
  ops: {{type: webhook, url: "{alert_url}", timeout: 2s, retries: 1, backoff: 100ms}}
targets:
  fraud-model:
{version}    rollback: [rollback-hook]
    alert: [ops]
{target_extra}"""

VERSION = "    version: {source: model, query: model_info, label: version}\n"

ERROR_RATE_RULE = """\
- name: error-rate
  source: model
  query: sum(rate(requests_total{status="error"}[3s])) / sum(rate(requests_total[3s]))
  above: 0.05
  for: 4s
  min_samples: {query: "sum(increase(requests_total[3s]))", at_least: 100}
  action: rollback
  severity: critical
"""


ACCURACY_RULE = """\
- name: accuracy
  source: model
  query: model_accuracy
  below: 0.9
  for: 2s
  action: rollback
"""


def decisions(state_db: Path) -> list[tuple[str, str]]:
    """(id, status) of every rollback decision in a SQLite state file."""
    import sqlite3

    with sqlite3.connect(state_db) as db:
        return db.execute("SELECT id, status FROM decisions").fetchall()


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


class DaemonProcess:
    def __init__(self, directory: Path, model_url: str, alert_url: str, rules: str, with_version: bool = True,
                 target_extra: str = ""):
        self.dir = directory
        self.port = free_port()
        self.config = directory / "watchdog.yaml"
        self.config.write_text(CONFIG.format(port=self.port, model_url=model_url, alert_url=alert_url,
                                             version=VERSION if with_version else "",
                                             target_extra=textwrap.indent(textwrap.dedent(target_extra), "    ")))
        (directory / "rules.yaml").write_text("target: fraud-model\nrules:\n" + textwrap.indent(rules, "  "))
        self.proc: subprocess.Popen[str] | None = None
        self.log = directory / "daemon.log"

    def roll_back_by_command(self, argv: list[str], timeout: str = "2m") -> None:
        """Roll back through a `command` actuator running `argv` instead of the webhook."""
        self.config.write_text(self.config.read_text().replace(
            "  rollback-hook: {type: webhook",
            f"  rollback-cmd: {{type: command, argv: [{', '.join(argv)}], timeout: {timeout}}}\n"
            "  rollback-hook: {type: webhook").replace("rollback: [rollback-hook]", "rollback: [rollback-cmd]"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "DaemonProcess":
        self._log_file = open(self.log, "a")
        self.proc = subprocess.Popen([sys.executable, "-m", "watchdog.cli", "run", "-c", str(self.config)],
                                     stdout=self._log_file, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_until(self._ready, 30, what="the daemon to become ready")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log.read_text()}")
        try:
            return requests.get(self.url + "/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def status(self) -> dict[str, Any]:
        return requests.get(self.url + "/api/v1/status", timeout=5).json()

    def rule_series(self, rule: str) -> list[dict[str, Any]]:
        target = self.status()["targets"]["fraud-model"]
        return next(r["series"] for r in target["rules"] if r["rule"] == rule)

    def metrics(self) -> str:
        return requests.get(self.url + "/metrics", timeout=5).text

    def evaluations(self) -> float:
        """How many evaluations (ticks) the daemon has completed."""
        for line in self.metrics().splitlines():
            if line.startswith("model_watchdog_evaluations_total "):
                return float(line.split()[1])
        return 0.0

    def wait_evaluations(self, count: int, timeout: float = 60) -> None:
        """Block until `count` more evaluations ran: the window for a negative check ("nothing
        was sent twice") measured in chances to do it wrong, not in wall-clock seconds."""
        target = self.evaluations() + count
        wait_until(lambda: self.evaluations() >= target, timeout, what=f"{count} more evaluations")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "watchdog.cli", *args, "-c", str(self.config)],
                              capture_output=True, text=True, timeout=60)

    def terminate(self, timeout: float = 15) -> tuple[int, float]:
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        self.kill()
        if hasattr(self, "_log_file"):
            self._log_file.close()


# -- the model server, the alert receiver and the daemons of one test ----------------------------

@pytest.fixture
def model() -> Iterator[SimulatedModelServer]:
    with SimulatedModelServer(version="v2", previous_versions=("v1",)) as server:
        yield server


@pytest.fixture
def alerts() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.start()
    yield receiver
    receiver.close()


@pytest.fixture
def daemons(tmp_path: Path, model: SimulatedModelServer, alerts: Receiver) -> Iterator[Callable[..., DaemonProcess]]:
    """make(rules=ERROR_RATE_RULE, with_version=True, target_extra="") → a daemon on `model`
    alerting to `alerts`, not started yet; every one made is closed after the test."""
    made: list[DaemonProcess] = []

    def make(rules: str = ERROR_RATE_RULE, with_version: bool = True, target_extra: str = "") -> DaemonProcess:
        d = DaemonProcess(tmp_path, model.url, alerts.url("/alert"), rules, with_version, target_extra=target_extra)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def set_mode(model: SimulatedModelServer, mode: str) -> None:
    requests.post(model.url + "/control", json={"mode": mode}, timeout=5).raise_for_status()


def deploy(model: SimulatedModelServer, version: str) -> None:
    requests.post(model.url + "/deploy", json={"version": version}, timeout=5).raise_for_status()


def rollback_calls(model: SimulatedModelServer) -> list[dict[str, Any]]:
    return requests.get(model.url + "/rollbacks", timeout=5).json()
