"""Start-up at fleet scale: a templated rule is validated once per template, not once per
target, and each plugin is built once (validation's instances are the daemon's)."""

from __future__ import annotations

import pytest

from watchdog.clock import FakeClock
from watchdog.config import plugins
from watchdog.config.loader import load
from watchdog.daemon import Daemon
from watchdog.errors import ConfigError

from tests.config.counting_plugins import EVENTS

HERE = "tests.config.counting_plugins"


@pytest.fixture
def counting(monkeypatch):
    for group, cls in ((plugins.SOURCES, "CountingSource"), (plugins.ACTUATORS, "CountingActuator"),
                       (plugins.ALERTERS, "CountingAlerter")):
        monkeypatch.setitem(plugins._BUILTIN[group], "counting", f"{HERE}:{cls}")
    plugins.available.cache_clear()
    plugins.plugin_class.cache_clear()
    EVENTS.clear()
    yield EVENTS
    plugins.available.cache_clear()
    plugins.plugin_class.cache_clear()


def write_fleet(tmp_path, targets: int, rules: int, query: str = "up{instance=\"{{instance}}\"}",
                extra_target: str = "") -> None:
    names = [f"m{i:04d}" for i in range(targets)]
    lines = ["interval: 15s", "state: state.db", "listen: 127.0.0.1:0", "rule_files: [rules.yaml]",
             "sources: {fleet: {type: counting}}", "actuators: {hook: {type: counting}}",
             "alerters: {log: {type: counting}}", "targets:"]
    lines += [f"  {n}: {{rollback: [hook], alert: [log], variables: {{instance: '10.0.{i // 250}.{i % 250}:9000'}}}}"
              for i, n in enumerate(names)]
    if extra_target:
        lines.append(f"  {extra_target}: {{rollback: [hook], alert: [log]}}")
        names.append(extra_target)
    (tmp_path / "watchdog.yaml").write_text("\n".join(lines) + "\n")
    rule_lines = [f"targets: [{', '.join(names)}]", "rules:"]
    for r in range(rules):
        rule_lines += [f"  - name: rule-{r}", "    source: fleet", f"    query: '{query}'", "    above: 1",
                       "    action: rollback"]
    (tmp_path / "rules.yaml").write_text("\n".join(rule_lines) + "\n")


def test_a_templated_rule_is_checked_once_per_template_not_per_target(tmp_path, counting):
    write_fleet(tmp_path, targets=1000, rules=10)
    loaded = load(tmp_path / "watchdog.yaml")
    assert len(loaded.rules) == 10_000
    assert counting["check_query"] <= 10  # was 10,000: once per target and rule


def test_a_problem_of_a_templated_rule_is_still_reported_for_each_target_it_concerns(tmp_path, counting):
    # the target without an `instance` variable cannot fill the query: only its rules are wrong
    write_fleet(tmp_path, targets=3, rules=2, extra_target="bare")
    with pytest.raises(ConfigError) as raised:
        load(tmp_path / "watchdog.yaml")
    problems = [p for p in raised.value.problems if "query" in p.message]
    assert len(problems) == 2 and all("instance" in p.message for p in problems)

    write_fleet(tmp_path, targets=3, rules=2, query="broken")  # as before: once per rule and target
    with pytest.raises(ConfigError) as raised:
        load(tmp_path / "watchdog.yaml")
    assert sorted(p.message for p in raised.value.problems) == ['rule "rule-0": query: broken query'] * 3 + \
        ['rule "rule-1": query: broken query'] * 3


def test_each_plugin_is_built_once_from_load_to_a_running_daemon_and_once_per_reload(tmp_path, counting):
    write_fleet(tmp_path, targets=5, rules=2)
    daemon = Daemon(load(tmp_path / "watchdog.yaml"), clock=FakeClock())
    try:
        assert (counting["source built"], counting["actuator built"], counting["alerter built"]) == (1, 1, 1)
        assert (counting["source closed"], counting["actuator closed"], counting["alerter closed"]) == (0, 0, 0)
        assert daemon.reload()[0] is True
        assert (counting["source built"], counting["actuator built"], counting["alerter built"]) == (2, 2, 2)
        assert (counting["source closed"], counting["actuator closed"], counting["alerter closed"]) == (1, 1, 1)
    finally:
        daemon.close()
    assert (counting["source closed"], counting["actuator closed"], counting["alerter closed"]) == (2, 2, 2)


def test_the_daemon_works_out_a_templated_rules_conditions_once_not_per_target(tmp_path, counting, monkeypatch):
    from watchdog.config.schema import Rule
    write_fleet(tmp_path, targets=200, rules=3)
    loaded = load(tmp_path / "watchdog.yaml")
    calls = []
    conditions = Rule.conditions
    monkeypatch.setattr(Rule, "conditions", lambda self: calls.append(self.name) or conditions(self))
    daemon = Daemon(loaded, clock=FakeClock())
    try:
        assert sorted(calls) == ["rule-0", "rule-1", "rule-2"]  # was 3 × 600: three walks of every target's rules
        engine = daemon.engine
        assert {engine._queries[id(lr.rule)][0] for lr in loaded.rules} == {("fleet", lr.rule.query) for lr in loaded.rules}
    finally:
        daemon.close()


def test_a_loaded_config_hands_its_plugins_to_one_daemon_only(tmp_path, counting):
    write_fleet(tmp_path, targets=2, rules=1)
    loaded = load(tmp_path / "watchdog.yaml")
    first = Daemon(loaded, clock=FakeClock())
    first.close()
    second = Daemon(loaded, clock=FakeClock())  # builds its own: the first closed the handed ones
    try:
        assert second.sources["fleet"] is not first.sources["fleet"]
        assert counting["source built"] == 2
    finally:
        second.close()


def test_a_rejected_config_closes_the_plugins_it_built(tmp_path, counting):
    write_fleet(tmp_path, targets=2, rules=1, query="broken")
    with pytest.raises(ConfigError):
        load(tmp_path / "watchdog.yaml")
    assert (counting["source built"], counting["actuator built"], counting["alerter built"]) == (1, 1, 1)
    assert (counting["source closed"], counting["actuator closed"], counting["alerter closed"]) == (1, 1, 1)


HEAVY = ("psycopg", "requests", "mlflow", "kubernetes", "scipy", "numpy", "jinja2", "matplotlib",
         "watchdog.state.postgres", "watchdog.sources.sql", "watchdog.web.statuspage", "watchdog.actuators.mlflow",
         "watchdog.stats", "watchdog.rules.statistical")
START = """
import sys
from watchdog.config.loader import load
from watchdog.daemon import Daemon
daemon = Daemon(load(sys.argv[1]))
daemon.api_server()
print(" ".join(sorted(m for m in {heavy!r} if m in sys.modules)))
daemon.close()
"""


def test_a_daemon_on_scrape_webhook_log_and_sqlite_imports_no_heavy_module(tmp_path):
    import subprocess
    import sys

    (tmp_path / "watchdog.yaml").write_text(
        "state: state.db\nlisten: 127.0.0.1:0\nsources: {model: {type: scrape, url: 'http://127.0.0.1:9/metrics'}}\n"
        "actuators: {hook: {type: webhook, url: 'http://127.0.0.1:9/rollback'}}\nalerters: {log: {type: log}}\n"
        "targets: {fraud-model: {rollback: [hook], alert: [log]}}\n")
    done = subprocess.run([sys.executable, "-c", START.format(heavy=HEAVY), str(tmp_path / "watchdog.yaml")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []  # the PostgreSQL driver, mlflow, the status page... only when used
