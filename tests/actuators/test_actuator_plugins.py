"""Actuators are plugins: the built-in ones are registered under their names, and a
third-party one (tests/plugins/example_actuator) is found through its entry point alone.

The example is registered the way pip would do it, but in a temporary folder: a `.dist-info`
with an `entry_points.txt` made from the example's own pyproject.toml, put on sys.path next
to the package's source. Nothing is installed into the virtual environment.
"""

from __future__ import annotations

import json
import sys
import textwrap
import threading
import tomllib
from pathlib import Path
from typing import Iterator

import pytest

from tests.actuators.kube_fixtures import make_context
from watchdog.config import plugins
from watchdog.config.loader import load
from watchdog.errors import ActuatorError, ConfigError

pytestmark = pytest.mark.timeout(30)
EXAMPLE = Path(__file__).resolve().parents[1] / "plugins" / "example_actuator"
BUILT_IN = {"webhook": "WebhookActuator", "command": "CommandActuator", "mlflow": "MlflowActuator",
            "kubernetes": "KubernetesActuator", "argo-rollouts": "ArgoRolloutsActuator",
            "kserve": "KServeActuator", "file": "FileActuator"}


def _clear_plugin_caches() -> None:
    plugins.available.cache_clear()
    plugins.plugin_class.cache_clear()


@pytest.fixture
def example_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    entry_points = project["entry-points"][plugins.ACTUATORS]
    dist_info = tmp_path / "site" / "model_watchdog_flagfile-0.1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (dist_info / "entry_points.txt").write_text(
        f"[{plugins.ACTUATORS}]\n" + "".join(f"{name} = {target}\n" for name, target in entry_points.items()))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    _clear_plugin_caches()
    yield
    _clear_plugin_caches()
    sys.modules.pop("model_watchdog_flagfile", None)


@pytest.mark.parametrize("name, cls", sorted(BUILT_IN.items()))
def test_built_in_actuators_are_registered(name: str, cls: str) -> None:
    assert plugins.plugin_class(plugins.ACTUATORS, name).__name__ == cls


def test_pyproject_declares_the_same_built_ins() -> None:
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    declared = pyproject["project"]["entry-points"][plugins.ACTUATORS]

    assert {name: target.rsplit(":", 1)[1] for name, target in declared.items()} == BUILT_IN
    assert {name: declared[name] for name in BUILT_IN} == plugins._BUILTIN[plugins.ACTUATORS]


def test_every_built_in_loads_from_yaml(tmp_path: Path) -> None:
    (tmp_path / "watchdog.yaml").write_text(textwrap.dedent("""\
        actuators:
          registry: {type: mlflow, tracking_uri: "https://mlflow.internal", model: fraud-detector}
          deploy: {type: kubernetes, namespace: ml, deployment: fraud, timeout: 5m, version_annotation: model-watchdog/version}
          canary: {type: argo-rollouts, rollout: fraud, mode: abort}
          isvc: {type: kserve, inference_service: fraud, poll_interval: 5s}
          link: {type: file, path: /srv/models/current, target_template: "/srv/models/{{to_version}}"}
          hook: {type: webhook, url: "https://deploy.internal/rollback", verify_url: "https://deploy.internal/{{target}}", verify_field: version}
          script: {type: command, argv: [deploy, "{{to_version}}"], verify_argv: [check, "{{to_version}}"]}
    """))

    loaded = load(tmp_path / "watchdog.yaml", environ={})

    specs = loaded.config.actuators
    assert {n: s.type for n, s in specs.items()} == {
        "registry": "mlflow", "deploy": "kubernetes", "canary": "argo-rollouts", "isvc": "kserve",
        "link": "file", "hook": "webhook", "script": "command"}
    assert specs["deploy"].options.timeout == 300.0
    assert specs["isvc"].options.poll_interval == 5.0


def test_a_built_in_option_error_is_reported_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "watchdog.yaml").write_text(
        "actuators:\n  link:\n    type: file\n    path: /srv/current\n    target_templat: /m\n")

    with pytest.raises(ConfigError) as err:
        load(tmp_path / "watchdog.yaml", environ={})

    message = str(err.value)
    assert "watchdog.yaml:5:5: " in message
    assert "actuators.link: unknown key 'target_templat' (did you mean 'target_template'?)" in message


def test_the_example_plugin_is_found_and_works(example_plugin: None, tmp_path: Path) -> None:
    flag = tmp_path / "deploy.json"
    (tmp_path / "watchdog.yaml").write_text(f"actuators:\n  flag: {{type: flag-file, path: {flag}}}\n")

    spec = load(tmp_path / "watchdog.yaml", environ={}).config.actuators["flag"]
    actuator = plugins.create(plugins.ACTUATORS, spec)

    assert type(actuator).__module__ == "model_watchdog_flagfile"
    assert actuator.plan(make_context("v6")) == f"write version v6 to {flag}"
    assert actuator.apply(make_context("v6"), threading.Event()) == f"wrote version v6 to {flag}"
    assert json.loads(flag.read_text()) == {"version": "v6", "decision_id": "dec-42"}
    assert "already names v6" in actuator.apply(make_context("v6"), threading.Event())
    assert actuator.verify(make_context("v6"), threading.Event()) == f"{flag} names v6"
    assert actuator.current_version(make_context()) == "v6"
    with pytest.raises(ActuatorError, match="no version to roll back to"):
        actuator.apply(make_context(None), threading.Event())


def test_the_example_plugins_option_check_reaches_validate(example_plugin: None, tmp_path: Path) -> None:
    (tmp_path / "watchdog.yaml").write_text("actuators:\n  flag: {type: flag-file, path: /tmp/deploy.txt}\n")

    with pytest.raises(ConfigError, match="actuators.flag: path must name a .json file"):
        load(tmp_path / "watchdog.yaml", environ={})


def test_without_the_entry_point_the_type_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "watchdog.yaml").write_text("actuators:\n  flag: {type: flag-file, path: /tmp/d.json}\n")

    with pytest.raises(ConfigError, match="unknown actuator type 'flag-file'"):
        load(tmp_path / "watchdog.yaml", environ={})
