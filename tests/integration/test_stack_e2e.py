"""End to end, whole stack: the real daemon rolls back a three-component release (schema,
features, model — each a real symlink switched by the `file` actuator) where only two
components changed: exactly those two move, dependents first, each verified by reading the
link back; releases are recorded through the real CLI; the history tells it all."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import requests

from watchdog.demo.model_server import SimulatedModelServer

from tests.integration.daemon_process import DaemonProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

CONFIG = """\
interval: 1s
state: state.db
listen: 127.0.0.1:{port}
rule_files: [rules.yaml]
sources:
  model: {{type: scrape, url: "{model}/metrics", timeout: 1s}}
actuators:
  schema-link: {{type: file, path: "{root}/current/schema", target_template: "{root}/schema/{{{{to_version}}}}"}}
  features-link: {{type: file, path: "{root}/current/features", target_template: "{root}/features/{{{{to_version}}}}"}}
  model-link: {{type: file, path: "{root}/current/model", target_template: "{root}/model/{{{{to_version}}}}"}}
targets:
  fraud-model:
    bake: 3s
    verify_window: 30s
    components:
      schema: {{actuator: schema-link}}
      features: {{actuator: features-link, depends_on: [schema]}}
      model: {{actuator: model-link, depends_on: [features]}}
"""

RULE = """\
- {name: accuracy, source: model, query: model_accuracy, below: 0.9, for: 2s, action: rollback}
"""

R1 = {"schema": "v13", "features": "fp-1", "model": "m6"}
R2 = {"schema": "v14", "features": "fp-2", "model": "m6"}


def deploy(root, components) -> None:  # type: ignore[no-untyped-def]
    """What a deploy pipeline does: switch the links, then record the release."""
    for name, version in components.items():
        link = root / "current" / name
        if link.is_symlink():
            link.unlink()
        os.symlink(root / name / version, link)


def links(root) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {name: os.path.basename(os.readlink(root / "current" / name)) for name in ("schema", "features", "model")}


def test_a_three_component_stack_rolls_back_exactly_the_changed_components(tmp_path):
    root = tmp_path / "stack"
    for name, versions in (("schema", ["v13", "v14"]), ("features", ["fp-1", "fp-2"]), ("model", ["m6"])):
        for version in versions:
            (root / name / version).mkdir(parents=True)
    (root / "current").mkdir()
    with SimulatedModelServer() as model:
        daemon = DaemonProcess(tmp_path, model.url, model.url + "/nowhere", RULE)
        daemon.config.write_text(CONFIG.format(port=daemon.port, model=model.url, root=root))
        try:
            daemon.start()
            cli = lambda *args: subprocess.run([sys.executable, "-m", "watchdog.cli", *args, "-c", str(daemon.config)],  # noqa: E731
                                               capture_output=True, text=True, timeout=60)
            deploy(root, R1)
            assert cli("release", "fraud-model", *[f"--component={k}={v}" for k, v in R1.items()]).returncode == 0
            wait_until(lambda: "healthy" in cli("releases", "fraud-model").stdout, 20, what="release #1 to bake")
            deploy(root, R2)
            assert cli("release", "fraud-model", *[f"--component={k}={v}" for k, v in R2.items()]).returncode == 0
            time.sleep(2)
            requests.post(model.url + "/control", json={"mode": "degraded"}, timeout=5)
            wait_until(lambda: links(root)["schema"] == "v13", 30, what="the stack rollback")
            wait_until(lambda: "rollback completed" in cli("history", "--limit", "50").stdout, 10, what="completion")
            assert links(root) == R1
            history = cli("history", "--limit", "100").stdout
            steps = [line for line in history.splitlines() if " step " in line]
            # newest first: schema (step 2) after features (step 1); the model was not touched
            assert "step 2 (schema v14→v13 via schema-link) succeeded" in steps[0]
            assert "step 1 (features fp-2→fp-1 via features-link) succeeded" in steps[1]
            assert len(steps) == 2 and all("(model " not in s for s in steps)
            assert "verified" in steps[0] and "components now: features=fp-1, model=m6, schema=v13" in history
            releases = cli("releases", "fraud-model", "--json").stdout
            assert '"state": "bad"' in releases and '"origin": "rollback"' in releases
        finally:
            daemon.close()
