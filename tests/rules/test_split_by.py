"""Fleet rules (`split_by`): one query per tick for all targets, each series routed to its target."""

from __future__ import annotations

import threading

import pytest

from watchdog.rollback.executor import RollbackExecutor
from watchdog.cli import main
from watchdog.clock import FakeClock
from watchdog.config.loader import load
from watchdog.engine import Engine
from watchdog.errors import ConfigError
from watchdog.metrics import DaemonMetrics
from watchdog.runtime.notify import Notifier
from watchdog.state.sqlite import SQLiteStateStore
from watchdog.testing import FakeAlerter, FakeSource, series

CONFIG = """\
interval: 10s
state: state.db
rule_files: [rules.yaml]
sources:
  model: {type: scrape, url: "http://127.0.0.1:9/metrics"}
alerters:
  ops: {type: log}
targets:
  fraud: {alert: [ops]}
  churn: {alert: [ops]}
  ads: {alert: [ops], variables: {model: ads-v2}}
"""

RULES = """\
targets: [fraud, churn, ads]
split_by: model
rules:
  - name: errors
    source: model
    query: sum by (model) (rate(errors_total[1m]))
    above: 1
"""

QUERY = "sum by (model) (rate(errors_total[1m]))"


def engine(tmp_path, rules: str = RULES):  # type: ignore[no-untyped-def]
    (tmp_path / "watchdog.yaml").write_text(CONFIG)
    (tmp_path / "rules.yaml").write_text(rules)
    loaded = load(tmp_path / "watchdog.yaml")
    source = FakeSource("model")
    store = SQLiteStateStore(str(tmp_path / "state.db"))
    metrics, stop = DaemonMetrics(), threading.Event()
    notifier = Notifier({"ops": FakeAlerter("ops")}, metrics, stop, store=store)
    executor = RollbackExecutor(store, {}, metrics, stop)
    return Engine(loaded, store, {"model": source}, executor, notifier, metrics, clock=FakeClock()), source


def test_one_query_per_tick_and_each_series_goes_to_its_target(tmp_path):
    eng, source = engine(tmp_path)
    source.set(QUERY, [series(5, model="fraud"), series(0.1, model="churn"), series(9, model="ads-v2"),
                       series(7, model="unknown"), series(3)])
    report = eng.tick(1000.0)
    assert [q for q, _ in source.queries] == [QUERY]  # once for the three targets
    routed = {(t, dict(v.labels).get("model"), v.value) for t, _, v, _ in report.verdicts}
    assert routed == {("fraud", "fraud", 5), ("churn", "churn", 0.1), ("ads", "ads-v2", 9)}
    phases = {k[0]: s.phase.value for k, s in eng.states.items()}
    assert phases == {"fraud": "firing", "churn": "inactive", "ads": "firing"}


def test_a_target_without_its_series_has_no_data(tmp_path):
    eng, source = engine(tmp_path)
    source.set(QUERY, [series(5, model="fraud")])
    report = eng.tick(1000.0)
    outcomes = {t: v.outcome.value for t, _, v, _ in report.verdicts}
    assert outcomes == {"fraud": "breach", "churn": "no_data", "ads": "no_data"}


def test_placeholders_are_refused_in_a_split_file(tmp_path):
    with pytest.raises(ConfigError, match=r"rules.yaml:\d+:\d+: .*\{\{target\}\} cannot be used with split_by"):
        engine(tmp_path, RULES.replace("rate(errors_total[1m])", 'rate(errors_total{job="{{target}}"}[1m])'))


def test_validate_explains_which_target_a_series_goes_to(tmp_path, capsys):
    (tmp_path / "watchdog.yaml").write_text(CONFIG)
    (tmp_path / "rules.yaml").write_text(RULES)
    assert main(["-c", str(tmp_path / "watchdog.yaml"), "validate"]) == 0
    out = capsys.readouterr().out
    assert "split_by model" in out
    assert 'model="fraud" → fraud' in out and 'model="ads-v2" → ads' in out
    assert "goes to no target" in out
