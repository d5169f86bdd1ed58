"""The status page, as a person sees it: headless Chromium (Debian's `chromium`) loads it
from the running daemon while a rule is firing and the target is held."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

import pytest
import requests

from watchdog.config.loader import load
from watchdog.daemon import Daemon, wait_for
from watchdog.demo.model_server import SimulatedModelServer

from tests.http_receiver import Receiver
from tests.servers import require

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CONFIG = """\
interval: 500ms
state: state.db
listen: 127.0.0.1:0
rule_files: [rules.yaml]
sources:
  model: {{type: scrape, url: "{url}/metrics"}}
actuators:
  hook: {{type: webhook, url: "{hook}"}}
targets:
  fraud-model:
    rollback: [hook]
"""

RULES = """\
target: fraud-model
rules:
  - {name: accuracy, source: model, query: model_accuracy, below: 0.9, action: rollback, severity: critical}
  - {name: "<script>alert(1)</script>", source: model, query: model_accuracy, above: 2}
"""

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require(shutil.which("chromium") or "/usr/bin/chromium", "chromium")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=90)


def test_the_status_page_shows_a_held_target_and_its_firing_rule(tmp_path):
    # The hook answers 200 and changes nothing, so the model stays degraded and the rule firing.
    with SimulatedModelServer(mode="degraded") as model, Receiver() as hook:
        (tmp_path / "watchdog.yaml").write_text(CONFIG.format(url=model.url, hook=hook.url("/rollback")))
        (tmp_path / "rules.yaml").write_text(RULES)
        daemon = Daemon(load(tmp_path / "watchdog.yaml"))
        url = daemon.start()
        try:
            assert wait_for(lambda: daemon.store.holds(), 20)
            page = requests.get(url + "/", timeout=5)
            assert page.headers["Content-Type"].startswith("text/html")
            dom = chromium("--dump-dom", url + "/").stdout
            assert "fraud-model" in dom and "HELD" in dom
            assert "<span class=\"state firing\">firing</span>" in dom
            assert "succeeded" in dom  # the decision, with its status
            assert "<script>alert(1)</script>" not in dom  # rule names are escaped
            shot = tmp_path / "status.png"
            chromium(f"--screenshot={shot}", "--window-size=1200,800", url + "/")
            assert shot.exists() and shot.stat().st_size > 10_000
        finally:
            daemon.shutdown()
