"""A third-party source plugin is added without touching model-watchdog: only an entry point.

The example package in tests/plugins/example_source is registered the way pip would do it,
but in a temporary folder: a `.dist-info` with its `entry_points.txt`, put on sys.path next
to the package's source. Nothing is installed into the virtual environment.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Iterator

import pytest

from watchdog.config import plugins
from watchdog.config.loader import load
from watchdog.errors import ConfigError, PluginError

EXAMPLE = Path(__file__).resolve().parents[1] / "plugins" / "example_source"


def _clear_plugin_caches() -> None:
    plugins.available.cache_clear()
    plugins.plugin_class.cache_clear()


@pytest.fixture
def example_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    dist_info = tmp_path / "site" / "model_watchdog_constant-0.1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: model-watchdog-constant\nVersion: 0.1.0\n")
    (dist_info / "entry_points.txt").write_text(
        '[model_watchdog.sources]\nconstant = model_watchdog_constant:ConstantSource\n')
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.syspath_prepend(str(EXAMPLE))
    _clear_plugin_caches()
    yield
    _clear_plugin_caches()


def test_the_plugin_is_found_through_its_entry_point_and_checked(example_plugin: None) -> None:
    cls = plugins.plugin_class(plugins.SOURCES, "constant")

    assert cls.__module__ == "model_watchdog_constant"
    assert "constant" in plugins.available(plugins.SOURCES)


def test_a_config_using_the_plugin_loads_and_its_source_answers(example_plugin: None, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(textwrap.dedent("""\
        target: fraud-model
        rules:
          - name: pinned
            source: fixed
            query: value
            above: 0.5
    """))
    (tmp_path / "watchdog.yaml").write_text(textwrap.dedent("""\
        rule_files: [rules.yaml]
        sources:
          fixed: {type: constant, value: 0.25, labels: {model: fraud}}
        targets:
          fraud-model: {}
    """))

    loaded = load(tmp_path / "watchdog.yaml", environ={})
    spec = loaded.config.sources["fixed"]
    source = plugins.create(plugins.SOURCES, spec)

    [sample] = source.query("value", 0.0).samples
    assert sample.value == 0.25 and sample.label("model") == "fraud"


def test_the_plugins_own_checks_and_option_errors_reach_validate(example_plugin: None, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("target: fraud-model\nrules:\n  - {name: r, source: fixed, query: other, above: 1}\n")
    (tmp_path / "watchdog.yaml").write_text(
        "rule_files: [rules.yaml]\nsources:\n  fixed: {type: constant, valu: 1}\ntargets:\n  fraud-model: {}\n")

    with pytest.raises(ConfigError) as err:
        load(tmp_path / "watchdog.yaml", environ={})

    assert "unknown key 'valu' (did you mean 'value'?)" in str(err.value)


def test_without_the_entry_point_the_type_is_unknown_and_the_error_names_what_exists() -> None:
    _clear_plugin_caches()
    with pytest.raises(PluginError, match=r"unknown source type 'constant' \(available: .*prometheus"):
        plugins.plugin_class(plugins.SOURCES, "constant")
