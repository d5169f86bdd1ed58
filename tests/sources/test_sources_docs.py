"""docs/sources.md documents every option of every built-in source; the shipped example loads."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from tests.needs import require_module
from watchdog.config import plugins
from watchdog.config.loader import load

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "docs" / "sources.md").read_text()


def section(name: str) -> str:
    start = DOCS.index(f"\n## {name}\n")
    end = DOCS.find("\n## ", start + 1)
    return DOCS[start:end]


@pytest.mark.parametrize("source_type", ["scrape", "prometheus", "http_json", "sql"])
def test_every_option_is_in_the_docs_table_of_its_source(source_type: str) -> None:
    options = plugins.plugin_class(plugins.SOURCES, source_type).Options  # type: ignore[attr-defined]
    text = section(source_type)

    missing = [f.name for f in dataclasses.fields(options) if f"| `{f.name}` |" not in text]

    assert missing == [], f"docs/sources.md, section {source_type}: options not documented: {missing}"


def test_the_delayed_labels_example_loads_with_a_sql_source(tmp_path: Path) -> None:
    require_module("psycopg", "'psycopg[binary]'")
    shutil.copy(ROOT / "rules" / "examples" / "delayed-labels.yaml", tmp_path / "rules.yaml")
    (tmp_path / "watchdog.yaml").write_text("""\
rule_files: [rules.yaml]
sources:
  labels-db:
    type: sql
    dsn: postgresql://watchdog@127.0.0.1:5432/ml
    window: 1h
    label_delay: 30m
actuators:
  deploy: {type: webhook, url: "http://127.0.0.1:9/rollback"}
targets:
  fraud-model: {rollback: [deploy]}
""")

    loaded = load(tmp_path / "watchdog.yaml", environ={})

    [rule] = [lr.rule for lr in loaded.rules]
    assert rule.name == "labelled-accuracy" and rule.min_samples is not None and rule.min_samples.query is None
