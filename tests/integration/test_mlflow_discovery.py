"""Components discovered from an MLflow alias: the target's `version:` reads the registry
through the `http_json` source (GET /api/2.0/mlflow/registered-models/alias, MLflow REST API
2.0 — a real `mlflow server` here), and each change of the alias is recorded as a release."""

from __future__ import annotations

import textwrap

import pytest
import requests

from watchdog.config.loader import load
from watchdog.daemon import Daemon

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def api(url: str, method: str, path: str, body: dict) -> dict:  # type: ignore[type-arg]
    response = requests.request(method, f"{url}/api/2.0/mlflow{path}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_an_alias_change_in_mlflow_becomes_a_release(tmp_path, mlflow_server):
    name = "fraud-discovery"
    api(mlflow_server, "POST", "/registered-models/create", {"name": name})
    for i in (1, 2):
        api(mlflow_server, "POST", "/model-versions/create", {"name": name, "source": f"s3://models/{name}/{i}"})
    api(mlflow_server, "POST", "/registered-models/alias", {"name": name, "alias": "champion", "version": "1"})
    (tmp_path / "watchdog.yaml").write_text(textwrap.dedent(f"""\
        interval: 1s
        state: state.db
        listen: 127.0.0.1:0
        rule_files: [rules.yaml]
        sources:
          registry:
            type: http_json
            url: "{mlflow_server}/api/2.0/mlflow/registered-models/alias?name={name}&alias=champion"
        actuators:
          champion: {{type: mlflow, tracking_uri: "{mlflow_server}", model: {name}}}
        targets:
          fraud-model:
            version: {{source: registry, query: "[model_version.{{value: `1`, version: version}}]", label: version, component: model}}
            components:
              model: {{actuator: champion}}
        """))
    (tmp_path / "rules.yaml").write_text(textwrap.dedent("""\
        target: fraud-model
        rules:
          - {name: never, source: registry, query: "[model_version.{value: `1`}]", above: 10}
        """))
    daemon = Daemon(load(tmp_path / "watchdog.yaml"))
    try:
        daemon.run_once()
        api(mlflow_server, "POST", "/registered-models/alias", {"name": name, "alias": "champion", "version": "2"})
        daemon.run_once()
        releases = daemon.store.releases("fraud-model")
        assert [r.components for r in releases] == [{"model": "2"}, {"model": "1"}]
        assert all(r.origin == "discovered" for r in releases)
    finally:
        daemon.close()
