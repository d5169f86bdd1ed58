"""The public plugin API (watchdog.plugin) and docs/plugins.md, which uses nothing else."""

from __future__ import annotations

import re
import sys
import textwrap
import threading
import types
from pathlib import Path

import pytest

import watchdog.plugin
from watchdog.config import plugins
from watchdog.config.loader import load
from watchdog.errors import ConfigError

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"

PUBLIC = ["Source", "QueryResult", "SourceHealth", "Sample", "labels_of",
          "Actuator", "ActionContext", "rollback_version",
          "Alerter", "Alert",
          "option",
          "WatchdogError", "QueryError", "SourceError", "ActuatorError", "AlerterError"]


def test_the_public_names_are_exactly_these():
    assert watchdog.plugin.__all__ == PUBLIC
    public = {name for name in vars(watchdog.plugin) if not name.startswith("_") and name != "annotations"}
    assert public == set(PUBLIC)


def test_each_public_name_is_the_one_the_watchdog_uses():
    from watchdog import errors, samples
    from watchdog.actuators import base as actuators
    from watchdog.alerters import base as alerters
    from watchdog.sources import base as sources

    homes = [sources, actuators, alerters, samples, errors]
    for name in PUBLIC:
        if name in ("option", "rollback_version"):
            continue
        assert any(getattr(home, name, None) is getattr(watchdog.plugin, name) for home in homes), name


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", DOC.read_text(), re.M | re.S)


def test_the_document_imports_from_watchdog_plugin_only():
    code = "\n".join(_blocks("python"))
    imports = re.findall(r"^\s*(?:from|import)\s+(watchdog\S*)", code, re.M)
    assert imports and set(imports) == {"watchdog.plugin"}


@pytest.fixture
def documented(monkeypatch):
    """The document's example as a module, registered under the names its yaml uses."""
    module = types.ModuleType("documented_plugins")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile("\n".join(_blocks("python")), str(DOC), "exec"), module.__dict__)
    for group, name, cls in [(plugins.SOURCES, "constant", "ConstantSource"), (plugins.ACTUATORS, "memory", "MemoryActuator"),
                             (plugins.ALERTERS, "list", "ListAlerter")]:
        monkeypatch.setitem(plugins._BUILTIN[group], name, f"{module.__name__}:{cls}")
    plugins.available.cache_clear()
    plugins.plugin_class.cache_clear()
    yield module
    plugins.available.cache_clear()
    plugins.plugin_class.cache_clear()


def _config(tmp_path: Path, query: str = "value") -> Path:
    [yaml_block] = _blocks("yaml")
    (tmp_path / "rules.yaml").write_text(f"target: fraud-model\nrules:\n  - {{name: high, source: fixed, query: {query}, above: 0.5}}\n")
    (tmp_path / "watchdog.yaml").write_text(yaml_block + textwrap.dedent("""\
        rule_files: [rules.yaml]
        targets:
          fraud-model: {rollback: [deploy], alert: [kept]}
    """))
    return tmp_path / "watchdog.yaml"


def test_the_documented_plugins_load_and_work(documented, tmp_path):
    loaded = load(_config(tmp_path), environ={})
    source = plugins.create(plugins.SOURCES, loaded.config.sources["fixed"])
    actuator = plugins.create(plugins.ACTUATORS, loaded.config.actuators["deploy"])
    alerter = plugins.create(plugins.ALERTERS, loaded.config.alerters["kept"])

    [sample] = source.query("value", 0.0).samples
    assert (sample.value, sample.label("model")) == (0.25, "fraud")

    context = documented.ActionContext(decision_id="d1", target="fraud-model", rule="high", action="rollback", value=0.9,
                                       threshold={"above": 0.5}, labels={}, version="v2", previous_version="v1",
                                       fired_at="2026-01-01T00:00:00Z", reason="high")
    assert actuator.apply(context, threading.Event()) == "fraud-model set to v1"
    assert actuator.apply(context, threading.Event()) == "fraud-model already at v1"
    assert actuator.current_version(context) == "v1"

    alert = documented.Alert(status="firing", kind="rule", dedup_key="fraud-model/high", target="fraud-model", rule="high",
                             severity="critical", summary="high", at="2026-01-01T00:00:00Z")
    alerter.send(alert, threading.Event())
    assert alerter.sent == [alert]


def test_the_documented_source_refuses_a_query_at_load_time(documented, tmp_path):
    with pytest.raises(ConfigError, match="the constant source only answers 'value'"):
        load(_config(tmp_path, query="other"), environ={})
